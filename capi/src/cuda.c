/* CUDA and copy entry points: NULL checks here, everything else in core. */
#include "tensor/tensor.h"
#include "boundary.h"

tb_status tb_tensor_copy(tb_tensor *dst, const tb_tensor *src,
                         uint64_t stream) {
  TB_REQUIRE(dst);
  TB_REQUIRE(src);
  GError *error = NULL;
  /* src is only read; its access bracket is the one thing that changes. */
  TB_RETURN(tb_tensor_copy_into(dst, (tb_tensor *)src, stream, &error),
            error);
}

tb_status tb_tensor_cuda_device(uint32_t *out, const tb_tensor *tensor) {
  TB_REQUIRE(out);
  TB_REQUIRE(tensor);
  GError *error = NULL;
  TB_RETURN(tb_tensor_cuda_device_of(tensor, out, &error), error);
}

tb_status tb_tensor_device_ptr(uint64_t *out, const tb_tensor *tensor) {
  TB_REQUIRE(out);
  TB_REQUIRE(tensor);
  GError *error = NULL;
  TB_RETURN(tb_tensor_device_address(tensor, out, &error), error);
}

tb_status tb_tensor_import_cuda_fd(tb_tensor **out, int fd, tb_memory memory,
                                   uint32_t device, tb_dtype dtype,
                                   size_t ndim, const int64_t *shape,
                                   uint64_t byte_offset) {
  TB_REQUIRE(out);
  TB_REQUIRE_ARRAY(shape, ndim);
  if (fd < 0)
    return tb_fail(__func__, TB_ERR_INVALID_ARGUMENT, "fd is %d", fd);
  GError *error = NULL;
  TB_RETURN_HANDLE(out,
                   tb_tensor_open_cuda_fd(fd, memory, device, dtype, ndim,
                                          shape, byte_offset, &error),
                   error);
}

tb_status tb_tensor_cuda_wait(const tb_tensor *tensor, uint64_t stream) {
  TB_REQUIRE(tensor);
  GError *error = NULL;
  TB_RETURN(tb_tensor_cuda_order(tensor, stream, &error), error);
}

tb_status tb_tensor_cuda_dma_buf(tb_tensor **out, const tb_tensor *tensor) {
  TB_REQUIRE(out);
  TB_REQUIRE(tensor);
  GError *error = NULL;
  TB_RETURN_HANDLE(out, tb_tensor_dma_buf_of(tensor, &error), error);
}
