/* tb_tensor_copy: elements from one tensor into another of the same dtype
 * and shape, across memory kinds. The CPU copies host memory (any strides);
 * the GPU copies whenever device memory is involved (contiguous tensors). */
#include "memory/backend_cuda.h"
#include "tensor/tensor.h"

#include <string.h>

/* Copies a strided layout row by row; a row whose elements are adjacent on
 * both sides is one memcpy. */
static void strided_copy(uint8_t *dst, const int64_t *dst_strides,
                         const uint8_t *src, const int64_t *src_strides,
                         size_t ndim, const int64_t *shape, size_t elem) {
  if (ndim == 0) {
    memcpy(dst, src, elem);
    return;
  }
  size_t inner = ndim - 1;
  int64_t n = shape[inner];
  int64_t dst_step = dst_strides[inner] * (int64_t)elem;
  int64_t src_step = src_strides[inner] * (int64_t)elem;
  gboolean adjacent = dst_step == (int64_t)elem && src_step == (int64_t)elem;
  int64_t index[TB_MAX_DIMS] = {0};
  for (;;) {
    int64_t dst_at = 0, src_at = 0;
    for (size_t d = 0; d < inner; d++) {
      dst_at += index[d] * dst_strides[d] * (int64_t)elem;
      src_at += index[d] * src_strides[d] * (int64_t)elem;
    }
    if (adjacent) {
      memcpy(dst + dst_at, src + src_at, (size_t)n * elem);
    } else {
      for (int64_t j = 0; j < n; j++)
        memcpy(dst + dst_at + j * dst_step, src + src_at + j * src_step, elem);
    }
    size_t d = inner;
    while (d > 0 && ++index[d - 1] == shape[d - 1])
      index[--d] = 0;
    if (d == 0)
      return;
  }
}

static gboolean host_copy(tb_tensor *dst, tb_tensor *src, GError **error) {
  if (!tb_tensor_begin_access(src, TB_MAP_READ, error))
    return FALSE;
  if (!tb_tensor_begin_access(dst, TB_MAP_WRITE, error)) {
    tb_tensor_end_access(src, TB_MAP_READ);
    return FALSE;
  }
  strided_copy(tb_tensor_base(dst), dst->strides, tb_tensor_base(src),
               src->strides, src->ndim, src->shape, tb_dtype_size(src->dtype));
  tb_tensor_end_access(dst, TB_MAP_WRITE);
  tb_tensor_end_access(src, TB_MAP_READ);
  return TRUE;
}

/* The address the driver copies from or to: device memory's device address,
 * else the CPU address inside an open access bracket (closed by the
 * caller). */
static gboolean copy_address(tb_tensor *tensor, uint32_t access,
                             uint64_t *address, gboolean *opened,
                             GError **error) {
  *opened = FALSE;
  if (tb_tensor_memory(tensor) == TB_MEMORY_CUDA) {
    if (!tb_cuda_buffer_address(tensor->buffer, address, error))
      return FALSE;
    *address += tensor->offset;
    return TRUE;
  }
  if (!tb_tensor_begin_access(tensor, access, error))
    return FALSE;
  *opened = TRUE;
  *address = (uint64_t)(uintptr_t)tb_tensor_base(tensor);
  return TRUE;
}

static gboolean device_copy(tb_tensor *dst, tb_tensor *src, uint64_t stream,
                            GError **error) {
  if (!tb_tensor_is_contiguous(dst) || !tb_tensor_is_contiguous(src)) {
    g_set_error(error, TB_TENSOR_ERROR, TB_ERR_LAYOUT,
                "a copy to or from CUDA device memory needs contiguous "
                "tensors; %s is strided",
                tb_tensor_is_contiguous(dst) ? "src" : "dst");
    return FALSE;
  }
  tb_buffer *device_side = tb_tensor_memory(dst) == TB_MEMORY_CUDA
                               ? dst->buffer
                               : src->buffer;
  /* Host memory whose access needs a closing bracket (a dma-buf's cache
   * sync) cannot wait for an asynchronous copy: copy it synchronously. */
  if ((tb_tensor_memory(dst) != TB_MEMORY_CUDA &&
       dst->buffer->backend->end_access != NULL) ||
      (tb_tensor_memory(src) != TB_MEMORY_CUDA &&
       src->buffer->backend->end_access != NULL))
    stream = 0;
  uint64_t to = 0, from = 0;
  gboolean dst_open, src_open;
  if (!copy_address(src, TB_MAP_READ, &from, &src_open, error))
    return FALSE;
  gboolean ok = copy_address(dst, TB_MAP_WRITE, &to, &dst_open, error) &&
                tb_cuda_copy(to, from, tb_tensor_nbytes(src),
                             device_side->cuda_device, stream, dst->buffer,
                             src->buffer, error);
  if (dst_open)
    tb_tensor_end_access(dst, TB_MAP_WRITE);
  if (src_open)
    tb_tensor_end_access(src, TB_MAP_READ);
  return ok;
}

gboolean tb_tensor_copy_into(tb_tensor *dst, tb_tensor *src, uint64_t stream,
                             GError **error) {
  if (dst->dtype != src->dtype) {
    g_set_error(error, TB_TENSOR_ERROR, TB_ERR_DTYPE,
                "dst is %s but src is %s", tb_dtype_name(dst->dtype),
                tb_dtype_name(src->dtype));
    return FALSE;
  }
  if (dst->ndim != src->ndim ||
      memcmp(dst->shape, src->shape, dst->ndim * sizeof *dst->shape) != 0) {
    g_set_error(error, TB_TENSOR_ERROR, TB_ERR_SHAPE,
                "dst and src have different shapes (%zu and %zu dims)",
                dst->ndim, src->ndim);
    return FALSE;
  }
  if (tb_tensor_read_only(dst)) {
    g_set_error(error, TB_TENSOR_ERROR, TB_ERR_READ_ONLY,
                "dst is read-only");
    return FALSE;
  }
  if (tb_tensor_shares_memory(dst, src)) {
    g_set_error(error, TB_TENSOR_ERROR, TB_ERR_INVALID_ARGUMENT,
                "dst and src overlap in one buffer");
    return FALSE;
  }
  if (tb_tensor_numel(src) == 0)
    return TRUE;
  if (tb_tensor_memory(dst) == TB_MEMORY_CUDA ||
      tb_tensor_memory(src) == TB_MEMORY_CUDA)
    return device_copy(dst, src, stream, error);
  return host_copy(dst, src, error);
}
