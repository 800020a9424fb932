/* Fence entry points. */
#include "sharing/fence.h"
#include "boundary.h"
#include "tensorbuf/cuda.h"

tb_status tb_fence_new(tb_fence **out, uint64_t initial) {
  TB_REQUIRE(out);
  GError *error = NULL;
  TB_RETURN_HANDLE(out, tb_fence_create(initial, &error), error);
}

tb_status tb_fence_import_fd(tb_fence **out, int fd) {
  TB_REQUIRE(out);
  if (fd < 0)
    return tb_fail(__func__, TB_ERR_INVALID_ARGUMENT, "fd is %d", fd);
  GError *error = NULL;
  TB_RETURN_HANDLE(out, tb_fence_open(fd, &error), error);
}

tb_status tb_fence_export_fd(int *out_fd, const tb_fence *fence) {
  TB_REQUIRE(out_fd);
  TB_REQUIRE(fence);
  GError *error = NULL;
  TB_RETURN_FD(out_fd, tb_fence_dup_fd(fence, &error), error);
}

tb_status tb_fence_signal(tb_fence *fence, uint64_t value) {
  TB_REQUIRE(fence);
  GError *error = NULL;
  TB_RETURN(tb_fence_raise(fence, value, &error), error);
}

tb_status tb_fence_wait(tb_fence *fence, uint64_t value, int64_t timeout_ns) {
  TB_REQUIRE(fence);
  GError *error = NULL;
  TB_RETURN(tb_fence_await(fence, value, timeout_ns, &error), error);
}

tb_status tb_fence_cuda_signal(tb_fence *fence, uint64_t value,
                               uint32_t device, uint64_t stream) {
  TB_REQUIRE(fence);
  GError *error = NULL;
  TB_RETURN(tb_fence_stream_signal(fence, value, device, stream, &error),
            error);
}

tb_status tb_fence_cuda_wait(tb_fence *fence, uint64_t value, uint32_t device,
                             uint64_t stream) {
  TB_REQUIRE(fence);
  GError *error = NULL;
  TB_RETURN(tb_fence_stream_wait(fence, value, device, stream, &error),
            error);
}
