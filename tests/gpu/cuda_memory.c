/* CUDA and CUDA_HOST memory on a real GPU: allocation, staged map round
 * trips, copies between kinds, DLPack export and import, dma-buf export, and
 * cross-process sharing (a child process imports the parent's fds, checks
 * what the parent wrote and writes back).
 *   cuda_memory            the parent (runs every check)
 *   cuda_memory child FD1 FD2   the child (started by the parent)
 * Exit status: 0 passed, 1 failed, 77 skipped (no driver or GPU; the reason
 * on stderr). */
#include "tensorbuf/tensorbuf.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "gpu_check.h"

static int child(int cuda_fd, int host_fd) {
  const int64_t shape[] = {GPU_RAMP_N};
  tb_tensor *device = NULL, *host = NULL;
  OK(tb_tensor_import_cuda_fd(&device, cuda_fd, TB_MEMORY_CUDA, 0, TB_DTYPE_F32,
                              1, shape, 0));
  OK(tb_tensor_import_cuda_fd(&host, host_fd, TB_MEMORY_CUDA_HOST, 0,
                              TB_DTYPE_F32, 1, shape, 0));
  if (device == NULL || host == NULL)
    return 1;
  CHECK(gpu_ramp_holds(device, 1000.0f),
        "child reads what the parent wrote (cuda)");
  CHECK(gpu_ramp_holds(host, 2000.0f),
        "child reads what the parent wrote (host)");
  gpu_ramp_fill(device, 3000.0f);
  /* The GPU copies the pinned memory into the shared device memory... then
   * back: the parent sees 4000+ in both. */
  gpu_ramp_fill(host, 4000.0f);
  tb_tensor *scratch = gpu_ramp_new(TB_MEMORY_CUDA);
  OK(tb_tensor_copy(scratch, host, 0));
  CHECK(gpu_ramp_holds(scratch, 4000.0f),
        "device copy of imported pinned memory");
  tb_tensor_unref(scratch);
  tb_tensor_unref(device);
  tb_tensor_unref(host);
  return failures ? 1 : 0;
}

int main(int argc, char **argv) {
  if (argc == 4 && strcmp(argv[1], "child") == 0)
    return child(atoi(argv[2]), atoi(argv[3]));
  if (!tb_memory_available(TB_MEMORY_CUDA)) {
    tb_tensor *t = NULL;
    tb_alloc_options opts = TB_ALLOC_OPTIONS_INIT;
    opts.memory = TB_MEMORY_CUDA;
    (void)tb_tensor_new(&t, TB_DTYPE_U8, 0, NULL, &opts);
    fprintf(stderr, "SKIP cuda_memory: %s\n", tb_last_error());
    return 77;
  }
  /* allocation and staged map round trip */
  tb_tensor *device = gpu_ramp_new(TB_MEMORY_CUDA);
  uint64_t address = 0;
  uint32_t ordinal = 99;
  OK(tb_tensor_device_ptr(&address, device));
  OK(tb_tensor_cuda_device(&ordinal, device));
  CHECK(address != 0 && ordinal == 0, "address %llx device %u",
        (unsigned long long)address, ordinal);
  CHECK(gpu_ramp_holds(device, 0.0f) == 0 || GPU_RAMP_N == 0,
        "fresh memory is not a ramp");
  gpu_ramp_fill(device, 1.0f);
  CHECK(gpu_ramp_holds(device, 1.0f), "staged map round trip");
  double value = 0;
  const int64_t index[] = {7};
  OK(tb_tensor_get_f64(&value, device, 1, index));
  CHECK(value == 8.0, "element read %g", value);
  printf("PASS allocation and staged maps (device address 0x%llx)\n",
         (unsigned long long)address);

  /* copies between kinds */
  tb_tensor *pinned = gpu_ramp_new(TB_MEMORY_CUDA_HOST);
  tb_tensor *heap = gpu_ramp_new(TB_MEMORY_HEAP);
  OK(tb_tensor_device_ptr(&address, pinned));
  CHECK(address != 0, "pinned memory has a device address");
  gpu_ramp_fill(heap, 5.0f);
  OK(tb_tensor_copy(device, heap, 0));
  CHECK(gpu_ramp_holds(device, 5.0f), "heap -> cuda");
  OK(tb_tensor_copy(pinned, device, 0));
  CHECK(gpu_ramp_holds(pinned, 5.0f), "cuda -> cuda_host");
  tb_tensor *device2 = gpu_ramp_new(TB_MEMORY_CUDA);
  OK(tb_tensor_copy(device2, device, 0));
  CHECK(gpu_ramp_holds(device2, 5.0f), "cuda -> cuda");
  tb_tensor_unref(device2);
  printf("PASS copies heap/cuda/cuda_host\n");

  /* DLPack */
  tb_dlpack_managed_tensor_versioned *managed = NULL;
  OK(tb_tensor_to_dlpack(&managed, device, 0));
  if (managed != NULL) {
    uint64_t base = 0;
    tb_tensor_device_ptr(&base, device);
    CHECK(managed->dl_tensor.device.device_type == TB_DLPACK_DEVICE_CUDA &&
              (uint64_t)(uintptr_t)managed->dl_tensor.data == base,
          "kDLCUDA export at the device address");
    tb_tensor *back = NULL;
    OK(tb_tensor_from_dlpack(&back, managed));
    uint64_t again = 0;
    tb_tensor_device_ptr(&again, back);
    CHECK(tb_tensor_memory(back) == TB_MEMORY_CUDA && again == base,
          "kDLCUDA import shares the memory");
    CHECK(gpu_ramp_holds(back, 5.0f), "import reads the bytes");
    tb_tensor_unref(back);
  }
  OK(tb_tensor_to_dlpack(&managed, pinned, 0));
  if (managed != NULL) {
    CHECK(managed->dl_tensor.device.device_type == TB_DLPACK_DEVICE_CUDA_HOST,
          "kDLCUDAHost export");
    managed->deleter(managed);
  }
  printf("PASS DLPack kDLCUDA / kDLCUDAHost\n");

  /* dma-buf */
  tb_tensor *dma = NULL;
  tb_status status = tb_tensor_cuda_dma_buf(&dma, device);
  if (status == TB_OK) {
    CHECK(tb_tensor_memory(dma) == TB_MEMORY_DMA, "dma-buf tensor is DMA");
    int fd = -1;
    OK(tb_tensor_export_fd(&fd, dma));
    close(fd);
    tb_tensor_unref(dma);
    printf("PASS dma-buf export of device memory\n");
  } else {
    CHECK(status == TB_ERR_UNSUPPORTED, "dma-buf refusal is clean");
    printf("SKIP dma-buf export: %s\n", tb_last_error());
  }

  /* bad input */
  const int64_t shape[] = {GPU_RAMP_N};
  tb_tensor *bad = NULL;
  int heapless = -1;
  tb_tensor_export_fd(&heapless, pinned);
  CHECK(tb_tensor_import_cuda_fd(&bad, heapless, TB_MEMORY_CUDA, 0,
                                 TB_DTYPE_F32, 1, shape, 0) == TB_ERR_BAD_FD,
        "a memfd is not CUDA memory");
  CHECK(tb_tensor_import_cuda_fd(&bad, heapless, TB_MEMORY_CUDA_HOST, 999,
                                 TB_DTYPE_F32, 1, shape,
                                 0) == TB_ERR_INVALID_ARGUMENT,
        "no device 999");
  close(heapless);
  printf("PASS bad input refused\n");

  /* cross-process sharing */
  gpu_ramp_fill(device, 1000.0f);
  gpu_ramp_fill(pinned, 2000.0f);
  int cuda_fd = -1, host_fd = -1;
  OK(tb_tensor_export_fd(&cuda_fd, device));
  OK(tb_tensor_export_fd(&host_fd, pinned));
  fcntl(cuda_fd, F_SETFD, 0);
  fcntl(host_fd, F_SETFD, 0);
  char a[16], b[16];
  snprintf(a, sizeof a, "%d", cuda_fd);
  snprintf(b, sizeof b, "%d", host_fd);
  pid_t pid = fork();
  if (pid == 0) {
    execl("/proc/self/exe", argv[0], "child", a, b, (char *)NULL);
    _exit(127);
  }
  int wstatus = 0;
  waitpid(pid, &wstatus, 0);
  CHECK(WIFEXITED(wstatus) && WEXITSTATUS(wstatus) == 0, "child exit %d",
        wstatus);
  CHECK(gpu_ramp_holds(device, 3000.0f),
        "parent sees the child's write (cuda)");
  CHECK(gpu_ramp_holds(pinned, 4000.0f),
        "parent sees the child's write (host)");
  close(cuda_fd);
  close(host_fd);
  printf("PASS cross-process CUDA and CUDA_HOST sharing\n");

  tb_tensor_unref(device);
  tb_tensor_unref(pinned);
  tb_tensor_unref(heap);
  CHECK(tb_live_objects() == 0, "live objects %lld",
        (long long)tb_live_objects());
  printf("%s cuda_memory (%d failures)\n", failures ? "FAIL" : "PASS",
         failures);
  return failures ? 1 : 0;
}
