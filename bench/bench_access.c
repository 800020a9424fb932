/* CPU access: maps, element reads and byte copies.
 *
 *   map+unmap           HEAP and SHM; SHM against the seed's way of mapping,
 *                       an mmap+munmap of the memfd on every map
 *   shm map+read+unmap  the same with a read of every page in between: a
 *                       fresh mapping faults every page in again
 *   get_f64             against a load through a map's pointer
 *   read_bytes          against memcpy of the same mapped bytes, in GB/s */
#define _GNU_SOURCE
#include "harness.h"

#include <tensorbuf/tensorbuf.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define MAP_TARGET "<= 100 ns"

typedef struct access_context {
  tb_tensor *tensor;
  size_t bytes;
  int fd;                /* SHM: the tensor's exported fd */
  const uint8_t *mapped; /* a map's pointer, for the peers that load */
  uint8_t *destination;  /* read_bytes and memcpy target */
} access_context;

static void tensor_map_unmap(void *context, uint64_t iterations) {
  access_context *c = context;
  for (uint64_t i = 0; i < iterations; i++) {
    tb_map *map;
    bench_check(tb_tensor_map(&map, c->tensor, TB_MAP_READ), "tb_tensor_map");
    bench_keep(tb_map_data(map));
    tb_map_free(map);
  }
}

static void tensor_map_read_unmap(void *context, uint64_t iterations) {
  access_context *c = context;
  for (uint64_t i = 0; i < iterations; i++) {
    tb_map *map;
    bench_check(tb_tensor_map(&map, c->tensor, TB_MAP_READ), "tb_tensor_map");
    bench_read_pages(tb_map_data(map), c->bytes);
    tb_map_free(map);
  }
}

static void *mmap_fd(const access_context *c) {
  void *data =
      mmap(NULL, c->bytes, PROT_READ | PROT_WRITE, MAP_SHARED, c->fd, 0);
  bench_check_system(data != MAP_FAILED, "mmap");
  return data;
}

static void mmap_munmap(void *context, uint64_t iterations) {
  access_context *c = context;
  for (uint64_t i = 0; i < iterations; i++) {
    void *data = mmap_fd(c);
    bench_keep(data);
    munmap(data, c->bytes);
  }
}

static void mmap_read_munmap(void *context, uint64_t iterations) {
  access_context *c = context;
  for (uint64_t i = 0; i < iterations; i++) {
    void *data = mmap_fd(c);
    bench_read_pages(data, c->bytes);
    munmap(data, c->bytes);
  }
}

/* The element get_f64 reads: the middle pixel's blue channel. */
static const int64_t probe_index[3] = {540, 960, 2};

static void tensor_get_f64(void *context, uint64_t iterations) {
  access_context *c = context;
  for (uint64_t i = 0; i < iterations; i++) {
    double value;
    bench_check(tb_tensor_get_f64(&value, c->tensor, 3, probe_index),
                "tb_tensor_get_f64");
    bench_keep(&value);
  }
}

static void load_through_map(void *context, uint64_t iterations) {
  access_context *c = context;
  const volatile uint8_t *data = c->mapped;
  int64_t offset = 0; /* u8 elements: strides are in bytes */
  for (size_t axis = 0; axis < 3; axis++)
    offset += probe_index[axis] * tb_tensor_stride(c->tensor, axis);
  for (uint64_t i = 0; i < iterations; i++) {
    double value = data[offset];
    bench_keep(&value);
  }
}

static void tensor_read_bytes(void *context, uint64_t iterations) {
  access_context *c = context;
  for (uint64_t i = 0; i < iterations; i++) {
    bench_check(tb_tensor_read_bytes(c->destination, c->bytes, c->tensor),
                "tb_tensor_read_bytes");
    bench_keep(c->destination);
  }
}

static void memcpy_mapped(void *context, uint64_t iterations) {
  access_context *c = context;
  for (uint64_t i = 0; i < iterations; i++) {
    memcpy(c->destination, c->mapped, c->bytes);
    bench_keep(c->destination);
  }
}

/* A tensor of `memory` whose pages are all present, as in a frame loop. */
static tb_tensor *frame_tensor(const bench_frame *frame, tb_memory memory) {
  tb_alloc_options options = TB_ALLOC_OPTIONS_INIT;
  options.memory = memory;
  tb_tensor *tensor;
  tb_map *map;
  bench_check(tb_tensor_new(&tensor, TB_DTYPE_U8, 3, frame->shape, &options),
              "tb_tensor_new");
  bench_check(tb_tensor_map(&map, tensor, TB_MAP_WRITE), "tb_tensor_map");
  memset(tb_map_data(map), 7, bench_frame_bytes(frame));
  tb_map_free(map);
  return tensor;
}

static void bench_maps(const bench_frame *frame, tb_memory memory) {
  const char *kind = tb_memory_name(memory);
  access_context context = {frame_tensor(frame, memory),
                            bench_frame_bytes(frame), -1, NULL, NULL};
  bench_op subject = {"tensorbuf", tensor_map_unmap, &context};
  char name[128];
  snprintf(name, sizeof name, "%s map+unmap %s", kind, frame->label);
  if (memory == TB_MEMORY_HEAP) {
    if (bench_selected(name)) {
      bench_timing timing = bench_measure(&subject, NULL);
      bench_report_time(name, timing.subject_ns, NULL, NAN, MAP_TARGET);
      if (frame == &bench_frames[1])
        bench_report_against_seed("seed: heap map+unmap 1080p",
                                  timing.subject_ns, 39);
    }
    tb_tensor_unref(context.tensor);
    return;
  }

  bench_check(tb_tensor_export_fd(&context.fd, context.tensor),
              "tb_tensor_export_fd");
  if (bench_selected(name)) {
    bench_op peer = {"mmap+munmap of the memfd (the seed's map)", mmap_munmap,
                     &context};
    bench_timing timing = bench_measure(&subject, &peer);
    bench_report_time(name, timing.subject_ns, peer.label, timing.peer_ns,
                      MAP_TARGET);
    if (frame == &bench_frames[1])
      bench_report_against_seed("seed: shm map+unmap 1080p", timing.subject_ns,
                                4.5e3);
  }
  snprintf(name, sizeof name, "%s map+read+unmap %s", kind, frame->label);
  if (bench_selected(name)) {
    bench_op reading = {"tensorbuf", tensor_map_read_unmap, &context};
    bench_op peer = {"mmap+read+munmap (faults every page)", mmap_read_munmap,
                     &context};
    bench_timing timing = bench_measure(&reading, &peer);
    bench_report_time(name, timing.subject_ns, peer.label, timing.peer_ns,
                      NULL);
  }
  close(context.fd);
  tb_tensor_unref(context.tensor);
}

static void bench_element_and_bytes(const bench_frame *frame) {
  access_context context = {frame_tensor(frame, TB_MEMORY_HEAP),
                            bench_frame_bytes(frame), -1, NULL, NULL};
  tb_map *map;
  bench_check(tb_tensor_map(&map, context.tensor, TB_MAP_READ),
              "tb_tensor_map");
  context.mapped = tb_map_data(map);
  context.destination = malloc(context.bytes);
  bench_check_system(context.destination != NULL, "malloc");
  memset(context.destination, 0, context.bytes); /* fault it in */

  char name[128];
  snprintf(name, sizeof name, "heap get_f64 %s", frame->label);
  if (bench_selected(name)) {
    bench_op subject = {"tensorbuf", tensor_get_f64, &context};
    bench_op peer = {"load through a map's pointer", load_through_map,
                     &context};
    bench_timing timing = bench_measure(&subject, &peer);
    bench_report_time(name, timing.subject_ns, peer.label, timing.peer_ns,
                      NULL);
  }
  snprintf(name, sizeof name, "heap read_bytes %s", frame->label);
  if (bench_selected(name)) {
    bench_op subject = {"tensorbuf", tensor_read_bytes, &context};
    bench_op peer = {"memcpy of the mapped bytes", memcpy_mapped, &context};
    bench_timing timing = bench_measure(&subject, &peer);
    bench_report_rate(name, context.bytes, timing.subject_ns, peer.label,
                      timing.peer_ns, NULL);
  }
  free(context.destination);
  tb_map_free(map);
  tb_tensor_unref(context.tensor);
}

int main(void) {
  bench_begin("bench_access");
  bool shm = tb_memory_available(TB_MEMORY_SHM);
  if (!shm)
    fprintf(stderr, "bench_access: SHM (memfd) is not available here; "
                    "skipping its benchmarks\n");
  for (size_t i = 0; i < BENCH_FRAME_COUNT; i++) {
    bench_maps(&bench_frames[i], TB_MEMORY_HEAP);
    if (shm)
      bench_maps(&bench_frames[i], TB_MEMORY_SHM);
  }
  bench_element_and_bytes(&bench_frames[1]);
  return bench_end();
}
