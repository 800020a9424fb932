/* Allocation and fd import against the floors: what the same bytes cost when
 * asked of libc or of the kernel directly.
 *
 *   heap new+free      vs calloc+free (same contract: zeroed bytes), malloc
 *                      +free (not zeroed: a lower bound) and an anonymous
 *                      mmap+munmap (the mechanism behind a fresh block)
 *   heap new+memset+free vs calloc+memset+free: what a user pays for a
 *                      frame written in full (target <= 1.0x)
 *   heap new uninitialized+memset+free vs malloc+memset+free: the
 *                      TB_ALLOC_UNINITIALIZED flag (np.empty's contract)
 *   heap new+write+free vs calloc+write+free: the full cost once every page
 *                      has been touched, since the kernel zeroes lazily;
 *                      also against anonymous mmap+write+munmap, and with
 *                      TB_ALLOC_HUGE_PAGES
 *   shm new+free       vs memfd_create+ftruncate+mmap+munmap+close
 *   shm import_fd+map  vs fstat+mmap+munmap of the same fd */
#define _GNU_SOURCE
#include "harness.h"

#include <tensorbuf/tensorbuf.h>

#include <math.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct alloc_context {
  const bench_frame *frame;
  size_t bytes;
  tb_alloc_options options;
  int fd; /* import: an exported SHM tensor's fd */
} alloc_context;

/* What a cycle writes into the new block: nothing, one byte a page (the
 * first touch), or every byte (a producer filling a frame). */
typedef enum block_write { WRITE_NONE, WRITE_PAGES, WRITE_ALL } block_write;

static void write_block(void *data, size_t bytes, block_write write,
                        uint64_t i) {
  if (write == WRITE_PAGES)
    bench_write_pages(data, bytes);
  else if (write == WRITE_ALL)
    memset(data, (int)(i & 0xff), bytes);
  bench_keep(data);
}

/* tensorbuf's cycle: tb_tensor_new, a write through a map unless
 * WRITE_NONE, unref. */
static void tensor_cycle(const alloc_context *c, uint64_t iterations,
                         block_write write) {
  for (uint64_t i = 0; i < iterations; i++) {
    tb_tensor *tensor;
    bench_check(
        tb_tensor_new(&tensor, TB_DTYPE_U8, 3, c->frame->shape, &c->options),
        "tb_tensor_new");
    if (write != WRITE_NONE) {
      tb_map *map;
      bench_check(tb_tensor_map(&map, tensor, TB_MAP_WRITE), "tb_tensor_map");
      write_block(tb_map_data(map), c->bytes, write, i);
      tb_map_free(map);
    }
    tb_tensor_unref(tensor);
  }
}

static void tensor_new_free(void *context, uint64_t iterations) {
  tensor_cycle(context, iterations, WRITE_NONE);
}
static void tensor_new_write_free(void *context, uint64_t iterations) {
  tensor_cycle(context, iterations, WRITE_PAGES);
}
/* The whole frame written, as an image producer does. */
static void tensor_new_memset_free(void *context, uint64_t iterations) {
  tensor_cycle(context, iterations, WRITE_ALL);
}

/* The system allocator's cycle: calloc (zeroed) or malloc, a write, free. */
static void libc_cycle(const alloc_context *c, uint64_t iterations,
                       bool zeroed, block_write write) {
  for (uint64_t i = 0; i < iterations; i++) {
    void *data = zeroed ? calloc(1, c->bytes) : malloc(c->bytes);
    bench_check_system(data != NULL, zeroed ? "calloc" : "malloc");
    write_block(data, c->bytes, write, i);
    free(data);
  }
}

static void calloc_free(void *context, uint64_t iterations) {
  libc_cycle(context, iterations, true, WRITE_NONE);
}
static void calloc_write_free(void *context, uint64_t iterations) {
  libc_cycle(context, iterations, true, WRITE_PAGES);
}
static void calloc_memset_free(void *context, uint64_t iterations) {
  libc_cycle(context, iterations, true, WRITE_ALL);
}
static void malloc_free(void *context, uint64_t iterations) {
  libc_cycle(context, iterations, false, WRITE_NONE);
}
static void malloc_memset_free(void *context, uint64_t iterations) {
  libc_cycle(context, iterations, false, WRITE_ALL);
}

static void anonymous_mmap_munmap(void *context, uint64_t iterations) {
  alloc_context *c = context;
  for (uint64_t i = 0; i < iterations; i++) {
    void *data = mmap(NULL, c->bytes, PROT_READ | PROT_WRITE,
                      MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    bench_check_system(data != MAP_FAILED, "mmap");
    munmap(data, c->bytes);
  }
}

static void anonymous_mmap_write_munmap(void *context, uint64_t iterations) {
  alloc_context *c = context;
  for (uint64_t i = 0; i < iterations; i++) {
    void *data = mmap(NULL, c->bytes, PROT_READ | PROT_WRITE,
                      MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    bench_check_system(data != MAP_FAILED, "mmap");
    bench_write_pages(data, c->bytes);
    munmap(data, c->bytes);
  }
}

static void memfd_floor(void *context, uint64_t iterations) {
  bench_memfd_floor(((alloc_context *)context)->bytes, iterations);
}

static void tensor_import_map(void *context, uint64_t iterations) {
  alloc_context *c = context;
  for (uint64_t i = 0; i < iterations; i++) {
    tb_tensor *tensor;
    tb_map *map;
    bench_check(
        tb_tensor_import_fd(&tensor, c->fd, TB_DTYPE_U8, 3, c->frame->shape, 0),
        "tb_tensor_import_fd");
    bench_check(tb_tensor_map(&map, tensor, TB_MAP_READ), "tb_tensor_map");
    bench_keep(tb_map_data(map));
    tb_map_free(map);
    tb_tensor_unref(tensor);
  }
}

static void fstat_mmap_floor(void *context, uint64_t iterations) {
  alloc_context *c = context;
  for (uint64_t i = 0; i < iterations; i++) {
    struct stat st;
    bench_check_system(fstat(c->fd, &st) == 0, "fstat");
    void *data = mmap(NULL, (size_t)st.st_size, PROT_READ | PROT_WRITE,
                      MAP_SHARED, c->fd, 0);
    bench_check_system(data != MAP_FAILED, "mmap");
    munmap(data, (size_t)st.st_size);
  }
}

/* Times `subject` against `peer_run` and records the pair; returns the
 * subject's time (NAN if the filter skipped it). */
static double compare(const char *what, const bench_frame *frame,
                      const char *qualifier, bench_batch_fn subject,
                      const char *peer_label, bench_batch_fn peer_run,
                      alloc_context *context, const char *target) {
  char name[128];
  snprintf(name, sizeof name, "%s %s%s", what, frame->label, qualifier);
  if (!bench_selected(name))
    return NAN;
  bench_op subject_op = {"tensorbuf", subject, context};
  bench_op peer_op = {peer_label, peer_run, context};
  bench_timing timing = bench_measure(&subject_op, &peer_op);
  bench_report_time(name, timing.subject_ns, peer_label, timing.peer_ns,
                    target);
  return timing.subject_ns;
}

static void bench_heap(const bench_frame *frame) {
  alloc_context context = {frame, bench_frame_bytes(frame),
                           TB_ALLOC_OPTIONS_INIT, -1};
  context.options.memory = TB_MEMORY_HEAP;
  compare("heap new+free", frame, "", tensor_new_free, "calloc+free",
          calloc_free, &context, "<= 1.0x");
  compare("heap new+memset+free", frame, "", tensor_new_memset_free,
          "calloc+memset+free", calloc_memset_free, &context, "<= 1.0x");
  compare("heap new+free", frame, " vs malloc", tensor_new_free,
          "malloc+free (not zeroed)", malloc_free, &context, NULL);
  compare("heap new+free", frame, " vs mmap", tensor_new_free,
          "anonymous mmap+munmap", anonymous_mmap_munmap, &context, NULL);
  double full = compare("heap new+write+free", frame, "", tensor_new_write_free,
                        "calloc+write+free", calloc_write_free, &context, NULL);
  compare("heap new+write+free", frame, " vs mmap", tensor_new_write_free,
          "anonymous mmap+write+munmap", anonymous_mmap_write_munmap, &context,
          NULL);
  /* The seed zero-fills eagerly, so its new+free compares with ours
   * including the first write of every page. */
  if (frame == &bench_frames[1])
    bench_report_against_seed("seed: heap new+write+free 1080p", full, 150e3);
  if (frame == &bench_frames[2])
    bench_report_against_seed("seed: heap new+write+free 4K", full, 1.7e6);

  /* Transparent huge pages: one fault per 2 MiB instead of per 4 KiB. */
  context.options.flags = TB_ALLOC_HUGE_PAGES;
  compare("heap new+write+free", frame, " huge pages", tensor_new_write_free,
          "calloc+write+free", calloc_write_free, &context, NULL);

  context.options.flags = TB_ALLOC_UNINITIALIZED;
  compare("heap new uninitialized+memset+free", frame, "",
          tensor_new_memset_free, "malloc+memset+free", malloc_memset_free,
          &context, "<= 1.0x");
}

/* Pinned to the CPU it starts on: a migration mid-run would put a cold
 * cache on one side of a comparison only. */
static void pin_to_current_cpu(void) {
  int cpu = sched_getcpu();
  cpu_set_t set;
  CPU_ZERO(&set);
  if (cpu >= 0)
    CPU_SET(cpu, &set);
  if (cpu < 0 || sched_setaffinity(0, sizeof set, &set) != 0)
    fprintf(stderr, "bench_alloc: could not pin to one CPU; timings are "
                    "noisier\n");
}

static void bench_shm(const bench_frame *frame) {
  alloc_context context = {frame, bench_frame_bytes(frame),
                           TB_ALLOC_OPTIONS_INIT, -1};
  context.options.memory = TB_MEMORY_SHM;
  double created = compare("shm new+free", frame, "", tensor_new_free,
                           "memfd_create+ftruncate+mmap+munmap+close",
                           memfd_floor, &context, "<= 1.5x");

  tb_tensor *exported;
  bench_check(
      tb_tensor_new(&exported, TB_DTYPE_U8, 3, frame->shape, &context.options),
      "tb_tensor_new");
  bench_check(tb_tensor_export_fd(&context.fd, exported),
              "tb_tensor_export_fd");
  double imported =
      compare("shm import_fd+map", frame, "", tensor_import_map,
              "fstat+mmap+munmap", fstat_mmap_floor, &context, NULL);
  close(context.fd);
  tb_tensor_unref(exported);

  if (frame == &bench_frames[1]) {
    bench_report_against_seed("seed: shm new+free 1080p", created, 12.2e3);
    bench_report_against_seed("seed: shm import_fd+map 1080p", imported, 5.9e3);
  }
}

int main(void) {
  bench_begin("bench_alloc");
  pin_to_current_cpu();
  if (!tb_memory_available(TB_MEMORY_SHM))
    fprintf(stderr, "bench_alloc: SHM (memfd) is not available here; "
                    "skipping its benchmarks\n");
  for (size_t i = 0; i < BENCH_FRAME_COUNT; i++) {
    bench_heap(&bench_frames[i]);
    if (tb_memory_available(TB_MEMORY_SHM))
      bench_shm(&bench_frames[i]);
  }
  return bench_end();
}
