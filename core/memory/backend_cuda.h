/* CUDA memory kinds (backend_cuda.c): device memory and pinned shared
 * memory, and the device-side operations the tensor layer needs on them. */
#ifndef TB_BACKEND_CUDA_H
#define TB_BACKEND_CUDA_H

#include "memory/buffer.h"

/* The device address of the buffer's byte 0: device memory for CUDA, the
 * registered memory's device alias for CUDA_HOST. Fails with
 * TB_ERR_UNSUPPORTED for other kinds. */
gboolean tb_cuda_buffer_address(const tb_buffer *buffer, uint64_t *address,
                                GError **error);

/* A buffer over another process's CUDA memory: for TB_MEMORY_CUDA `fd` is
 * a CUDA shareable fd (cuMemExportToShareableHandle) mapped on `device`;
 * for TB_MEMORY_CUDA_HOST a memfd, imported as SHM is, then registered
 * (read-only where the fd is). The fd is dup'd; `needed` bytes must fit. */
tb_buffer *tb_cuda_buffer_import(int fd, tb_memory memory, uint32_t device,
                                 uint64_t needed, GError **error);

/* A buffer over `size` bytes at device `address` that someone else owns
 * (DLPack): CUDA memory of `device`, or (`memory` CUDA_HOST) pinned host
 * memory at CPU address `address`. The caller sets buffer->destroy (called
 * on release) once nothing else can fail. */
tb_buffer *tb_cuda_buffer_wrap(uint64_t address, uint64_t size,
                               tb_memory memory, uint32_t device,
                               uint32_t flags, GError **error);

/* Copies `bytes` between two addresses the driver knows (device memory,
 * registered or pageable host memory) with `device` current, queued on
 * `stream`; with stream 0 it returns once the copy is done. The buffers,
 * when given, remember the stream so that tb_cuda_buffer_wait can order
 * later work after the copy. */
gboolean tb_cuda_copy(uint64_t dst, uint64_t src, uint64_t bytes,
                      uint32_t device, uint64_t stream, tb_buffer *dst_buffer,
                      tb_buffer *src_buffer, GError **error);

/* Makes `stream` wait for the last asynchronous copy queued on the buffer
 * (nothing when there is none). */
gboolean tb_cuda_buffer_wait(tb_buffer *buffer, uint64_t stream,
                             GError **error);

/* A dma-buf fd for the device memory (cuMemGetHandleForAddressRange), or -1
 * with TB_ERR_UNSUPPORTED where the driver or device has none. */
int tb_cuda_buffer_dma_buf(const tb_buffer *buffer, GError **error);

#endif /* TB_BACKEND_CUDA_H */
