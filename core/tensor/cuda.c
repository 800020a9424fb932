/* The tensor side of CUDA memory: device addresses, imports by fd, stream
 * ordering and dma-buf export, over core/memory/backend_cuda.c. */
#include "memory/backend_cuda.h"
#include "tensor/tensor.h"

#include <unistd.h>

static gboolean require_cuda_kind(const tb_tensor *tensor, GError **error) {
  tb_memory memory = tb_tensor_memory(tensor);
  if (memory == TB_MEMORY_CUDA || memory == TB_MEMORY_CUDA_HOST)
    return TRUE;
  g_set_error(error, TB_TENSOR_ERROR, TB_ERR_UNSUPPORTED,
              "the tensor is in %s memory; expected cuda or cuda_host",
              tb_memory_name(memory));
  return FALSE;
}

gboolean tb_tensor_cuda_device_of(const tb_tensor *tensor, uint32_t *device,
                                  GError **error) {
  if (!require_cuda_kind(tensor, error))
    return FALSE;
  *device = tensor->buffer->cuda_device;
  return TRUE;
}

gboolean tb_tensor_device_address(const tb_tensor *tensor, uint64_t *address,
                                  GError **error) {
  if (!tb_cuda_buffer_address(tensor->buffer, address, error))
    return FALSE;
  *address += tensor->offset;
  return TRUE;
}

tb_tensor *tb_tensor_open_cuda_fd(int fd, tb_memory memory, uint32_t device,
                                  tb_dtype dtype, size_t ndim,
                                  const int64_t *shape, uint64_t offset,
                                  GError **error) {
  uint64_t needed;
  if (!tb_tensor_bytes_at(dtype, ndim, shape, offset, &needed, error))
    return NULL;
  g_autoptr(tb_buffer) buffer =
      tb_cuda_buffer_import(fd, memory, device, needed, error);
  if (buffer == NULL)
    return NULL;
  return tb_tensor_view(buffer, offset, dtype, ndim, shape, NULL, error);
}

gboolean tb_tensor_cuda_order(const tb_tensor *tensor, uint64_t stream,
                              GError **error) {
  return tb_cuda_buffer_wait(tensor->buffer, stream, error);
}

tb_tensor *tb_tensor_dma_buf_of(const tb_tensor *tensor, GError **error) {
  int fd = tb_cuda_buffer_dma_buf(tensor->buffer, error);
  if (fd < 0)
    return NULL;
  g_autoptr(tb_buffer) buffer = tb_buffer_import(fd, tensor->buffer->size,
                                                 error);
  close(fd); /* the buffer holds its own dup */
  if (buffer == NULL)
    return NULL;
  return tb_tensor_view(buffer, tensor->offset, tensor->dtype, tensor->ndim,
                        tensor->shape, tensor->strides, error);
}
