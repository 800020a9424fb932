/* The GPU programs' checks: a failed one prints where, what and
 * tb_last_error(), and counts; main() exits non-zero when any failed.
 * (cmocka is not on the GPU machine, so these programs carry their own.) */
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

#endif
