/* Fences on the GPU across processes (tb_fence_cuda_signal /
 * tb_fence_cuda_wait), with the data they order written by kernel-free
 * stream operations:
 *
 *   parent stream: GPU wait F>=1 | memset D to 0xA5A5A5A5 | GPU signal F=2
 *   child (CPU):   waits F>=2 (woken by the signal's host function), checks D
 *   parent (CPU):  checks F is 0 and D untouched (the GPU waited), signals 1,
 *                  waits F>=2, fills the pinned H, signals 3
 *   child stream:  GPU wait F>=3 | copy H -> D | GPU signal F=4
 *   parent (CPU):  waits F>=4 (signalled by the child's GPU), checks D == H
 *
 * A CPU wait that the GPU signal did not wake would sleep to its timeout:
 * each wait is timed against a bound far below it.
 *   cuda_fence                      the parent
 *   cuda_fence child F D H          the child (started by the parent)
 * Exit status: 0 passed, 1 failed, 77 skipped (no driver or GPU, or no
 * stream memory operations; the reason on stderr). */
#include "tensorbuf/tensorbuf.h"

#include <dlfcn.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define N (16u << 20) /* u32 elements: 64 MiB, a memset the CPU can outrun */
#define SECOND INT64_C(1000000000)
#define WAIT_LIMIT (20 * SECOND) /* what a missing wake would cost */
#define WAKE_BOUND (5 * SECOND)  /* what a woken wait must stay under */
#define PATTERN 0xA5A5A5A5u

#include "gpu_check.h"

/* ---- the few stream calls of the CUDA driver the test makes itself -------- */

typedef int CUresult;
typedef struct CUstream_st *CUstream;
typedef unsigned long long CUdeviceptr;
#define CU_STREAM_NON_BLOCKING 0x1u
#define CUDA_ERROR_NOT_READY 600

static struct {
  CUresult (*stream_create)(CUstream *, unsigned int);
  CUresult (*stream_destroy)(CUstream);
  CUresult (*stream_synchronize)(CUstream);
  CUresult (*memset_d32_async)(CUdeviceptr, unsigned int, size_t, CUstream);
  CUresult (*memcpy_async)(CUdeviceptr, CUdeviceptr, size_t, CUstream);
  CUresult (*stream_query)(CUstream);
} cu;

static const char *load_streams(void) {
  void *lib = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
  if (lib == NULL)
    return "libcuda.so.1";
  static const struct {
    const char *name;
    size_t offset;
  } symbols[] = {
      {"cuStreamCreate", offsetof(__typeof__(cu), stream_create)},
      {"cuStreamDestroy_v2", offsetof(__typeof__(cu), stream_destroy)},
      {"cuStreamSynchronize", offsetof(__typeof__(cu), stream_synchronize)},
      {"cuMemsetD32Async", offsetof(__typeof__(cu), memset_d32_async)},
      {"cuMemcpyAsync", offsetof(__typeof__(cu), memcpy_async)},
      {"cuStreamQuery", offsetof(__typeof__(cu), stream_query)},
  };
  for (size_t i = 0; i < sizeof symbols / sizeof *symbols; i++) {
    void *entry = dlsym(lib, symbols[i].name);
    if (entry == NULL)
      return symbols[i].name;
    memcpy((char *)&cu + symbols[i].offset, &entry, sizeof entry);
  }
  return NULL;
}

/* A non-blocking stream: the staged CPU maps copy on the legacy stream,
 * which must not wait behind a stream parked on a fence. */
static CUstream new_stream(void) {
  CUstream stream = NULL;
  CHECK(cu.stream_create(&stream, CU_STREAM_NON_BLOCKING) == 0,
        "cuStreamCreate");
  return stream;
}

/* ---- helpers --------------------------------------------------------------- */

static int64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * SECOND + ts.tv_nsec;
}

/* Waits on the CPU and checks the wake came well before the timeout. */
static void timed_wait(tb_fence *fence, uint64_t value, const char *what) {
  int64_t start = now_ns();
  OK(tb_fence_wait(fence, value, WAIT_LIMIT));
  int64_t waited = now_ns() - start;
  CHECK(waited < WAKE_BOUND, "%s: woken after %.3f s", what,
        (double)waited / 1e9);
  printf("  %s: woken after %.3f ms\n", what, (double)waited / 1e6);
}

/* Elements of `t` that differ from `expected` (PATTERN, or the ramp i ^
 * PATTERN where `ramp`). */
static size_t mismatches(tb_tensor *t, int ramp, uint32_t constant) {
  tb_map *map = NULL;
  if (tb_tensor_map(&map, t, TB_MAP_READ) != TB_OK)
    return N;
  const uint32_t *data = tb_map_data(map);
  size_t wrong = 0;
  for (uint32_t i = 0; i < N; i++)
    wrong += data[i] != (ramp ? i ^ PATTERN : constant);
  tb_map_free(map);
  return wrong;
}

static uint64_t address(const tb_tensor *t) {
  uint64_t ptr = 0;
  OK(tb_tensor_device_ptr(&ptr, t));
  return ptr;
}

/* ---- the child: CPU consumer, then GPU consumer and producer ---------------- */

static int child(int fence_fd, int device_fd, int host_fd) {
  const int64_t shape[] = {N};
  tb_fence *fence = NULL;
  tb_tensor *device = NULL, *host = NULL;
  OK(tb_fence_import_fd(&fence, fence_fd));
  OK(tb_tensor_import_cuda_fd(&device, device_fd, TB_MEMORY_CUDA, 0,
                              TB_DTYPE_U32, 1, shape, 0));
  OK(tb_tensor_import_cuda_fd(&host, host_fd, TB_MEMORY_CUDA_HOST, 0,
                              TB_DTYPE_U32, 1, shape, 0));
  if (fence == NULL || device == NULL || host == NULL)
    return 1;
  timed_wait(fence, 2, "child CPU waits for the parent's GPU signal 2");
  size_t wrong = mismatches(device, 0, PATTERN);
  CHECK(wrong == 0, "%zu elements the memset before the signal missed",
        wrong);

  CUstream stream = new_stream();
  OK(tb_fence_cuda_wait(fence, 3, 0, (uint64_t)(uintptr_t)stream));
  CHECK(cu.memcpy_async(address(device), address(host), (size_t)N * 4,
                        stream) == 0,
        "cuMemcpyAsync");
  OK(tb_fence_cuda_signal(fence, 4, 0, (uint64_t)(uintptr_t)stream));
  /* The wake of 4 is this process's host function: stay until it ran. */
  OK(tb_fence_wait(fence, 4, WAIT_LIMIT));
  CHECK(cu.stream_synchronize(stream) == 0, "cuStreamSynchronize");
  cu.stream_destroy(stream);
  tb_tensor_unref(device);
  tb_tensor_unref(host);
  tb_fence_unref(fence);
  return failures ? 1 : 0;
}

/* ---- the parent ------------------------------------------------------------ */

static int skip(const char *why) {
  fprintf(stderr, "SKIP cuda_fence: %s\n", why);
  return 77;
}

int main(int argc, char **argv) {
  alarm(120); /* a GPU wait that never ends must not hang the suite */
  const char *missing = load_streams();
  if (argc == 5 && strcmp(argv[1], "child") == 0)
    return missing ? 1 : child(atoi(argv[2]), atoi(argv[3]), atoi(argv[4]));
  if (!tb_memory_available(TB_MEMORY_CUDA)) {
    tb_tensor *t = NULL;
    tb_alloc_options opts = TB_ALLOC_OPTIONS_INIT;
    opts.memory = TB_MEMORY_CUDA;
    (void)tb_tensor_new(&t, TB_DTYPE_U8, 0, NULL, &opts);
    return skip(tb_last_error());
  }
  if (missing != NULL)
    return skip(missing);
  tb_fence *fence = NULL;
  OK(tb_fence_new(&fence, 0));
  /* A wait for what is reached already: registers the page, or says why
   * this device cannot. */
  tb_status status = tb_fence_cuda_wait(fence, 0, 0, 0);
  if (status == TB_ERR_UNSUPPORTED) {
    int code = skip(tb_last_error());
    tb_fence_unref(fence);
    return code;
  }
  CHECK(status == TB_OK, "a GPU wait for 0");

  tb_tensor *device = gpu_tensor_new(TB_MEMORY_CUDA, TB_DTYPE_U32, N);
  tb_tensor *host = gpu_tensor_new(TB_MEMORY_CUDA_HOST, TB_DTYPE_U32, N);
  CUstream stream = new_stream();
  uint64_t handle = (uint64_t)(uintptr_t)stream;
  OK(tb_fence_cuda_wait(fence, 1, 0, handle));
  CHECK(cu.memset_d32_async(address(device), PATTERN, N, stream) == 0,
        "cuMemsetD32Async");
  OK(tb_fence_cuda_signal(fence, 2, 0, handle));
  CHECK(tb_fence_cuda_signal(fence, 0, 0, handle) == TB_ERR_OUT_OF_RANGE,
        "a GPU signal never takes the timeline back");

  int fds[3] = {-1, -1, -1};
  OK(tb_fence_export_fd(&fds[0], fence));
  OK(tb_tensor_export_fd(&fds[1], device));
  OK(tb_tensor_export_fd(&fds[2], host));
  char args[3][16];
  for (int i = 0; i < 3; i++) {
    fcntl(fds[i], F_SETFD, 0);
    snprintf(args[i], sizeof args[i], "%d", fds[i]);
  }
  pid_t pid = fork();
  if (pid == 0) {
    execl("/proc/self/exe", argv[0], "child", args[0], args[1], args[2],
          (char *)NULL);
    _exit(127);
  }

  /* The GPU waits for 1: nothing after its wait has run. */
  usleep(200 * 1000);
  CHECK(tb_fence_value(fence) == 0, "fence at %llu before the CPU signal",
        (unsigned long long)tb_fence_value(fence));
  /* Asked without queueing GPU work: a read of the memory would be GPU
   * work too, and may share a hardware queue with the parked stream. */
  CUresult pending = cu.stream_query(stream);
  CHECK(pending == CUDA_ERROR_NOT_READY,
        "the stream parked on the fence reports %d, not NOT_READY", pending);
  printf("PASS the GPU waits for a CPU signal (fence 0, stream still "
         "parked after 200 ms)\n");
  OK(tb_fence_signal(fence, 1));
  timed_wait(fence, 2, "parent CPU waits for its own GPU signal 2");
  printf("PASS GPU signal after a memset wakes CPU waiters\n");

  tb_map *map = NULL;
  OK(tb_tensor_map(&map, host, TB_MAP_WRITE));
  uint32_t *pinned = tb_map_data(map);
  for (uint32_t i = 0; i < N; i++)
    pinned[i] = i ^ PATTERN;
  tb_map_free(map);
  OK(tb_fence_signal(fence, 3));
  timed_wait(fence, 4, "parent CPU waits for the child's GPU signal 4");
  size_t wrong = mismatches(device, 1, 0);
  CHECK(wrong == 0, "%zu elements the child's copy before its signal missed",
        wrong);
  printf("PASS a GPU in another process waits for a CPU signal, copies, "
         "signals\n");

  int wstatus = 0;
  waitpid(pid, &wstatus, 0);
  CHECK(WIFEXITED(wstatus) && WEXITSTATUS(wstatus) == 0, "child exit %d",
        wstatus);
  printf("%s the child's CPU wait for the parent's GPU signal\n",
         WIFEXITED(wstatus) && WEXITSTATUS(wstatus) == 0 ? "PASS" : "FAIL");
  CHECK(cu.stream_synchronize(stream) == 0, "cuStreamSynchronize");
  cu.stream_destroy(stream);
  for (int i = 0; i < 3; i++)
    close(fds[i]);
  tb_tensor_unref(device);
  tb_tensor_unref(host);
  tb_fence_unref(fence);
  CHECK(tb_live_objects() == 0, "live objects %lld",
        (long long)tb_live_objects());
  printf("%s cuda_fence (%d failures)\n", failures ? "FAIL" : "PASS",
         failures);
  return failures ? 1 : 0;
}
