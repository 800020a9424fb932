/* The GPU programs' checks: a failed one prints where, what and
 * tb_last_error(), and counts; main() exits non-zero when any failed.
 * (cmocka is not on the GPU machine, so these programs carry their own.)
 * And the f32 ramps (base, base + 1, ...) of GPU_RAMP_N elements they write
 * into tensors of each memory kind and look for on the other side. */
#ifndef TB_GPU_CHECK_H
#define TB_GPU_CHECK_H

#include <stdio.h>
#include <tensorbuf/tensorbuf.h>

static int failures;

#define CHECK(cond, ...)                                                       \
  do {                                                                         \
    if (!(cond)) {                                                             \
      fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond);          \
      fprintf(stderr, __VA_ARGS__);                                            \
      fprintf(stderr, " (last error: %s)\n", tb_last_error());                 \
      failures++;                                                              \
    }                                                                          \
  } while (0)
#define OK(call) CHECK((call) == TB_OK, "%s", #call)

#define GPU_RAMP_N 4096

/* A new 1-D tensor of `n` elements of `dtype` in `memory`, or NULL
 * (counted). */
static inline tb_tensor *gpu_tensor_new(tb_memory memory, tb_dtype dtype,
                                        int64_t n) {
  tb_alloc_options opts = TB_ALLOC_OPTIONS_INIT;
  opts.memory = memory;
  const int64_t shape[] = {n};
  tb_tensor *t = NULL;
  OK(tb_tensor_new(&t, dtype, 1, shape, &opts));
  return t;
}

/* A tensor for a ramp: GPU_RAMP_N f32 elements in `memory`. */
static inline tb_tensor *gpu_ramp_new(tb_memory memory) {
  return gpu_tensor_new(memory, TB_DTYPE_F32, GPU_RAMP_N);
}

/* Writes base, base + 1, ... through a CPU map. */
static inline void gpu_ramp_fill(tb_tensor *t, float base) {
  tb_map *map = NULL;
  OK(tb_tensor_map(&map, t, TB_MAP_WRITE));
  if (map == NULL)
    return;
  float *data = tb_map_data(map);
  for (int i = 0; i < GPU_RAMP_N; i++)
    data[i] = base + (float)i;
  tb_map_free(map);
}

/* Whether the tensor holds base, base + 1, ... (read through a CPU map). */
static inline int gpu_ramp_holds(tb_tensor *t, float base) {
  tb_map *map = NULL;
  if (tb_tensor_map(&map, t, TB_MAP_READ) != TB_OK)
    return 0;
  const float *data = tb_map_data(map);
  int same = 1;
  for (int i = 0; i < GPU_RAMP_N && same; i++)
    same = data[i] == base + (float)i;
  tb_map_free(map);
  return same;
}

#endif
