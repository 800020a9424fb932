/* tensorbuf — CUDA: device memory, pinned shared memory, device addresses.
 *
 * The CUDA driver (libcuda.so.1) is loaded at run time on first use: nothing
 * of CUDA is needed to build or to run without a GPU. Where it cannot be
 * loaded (no driver, no GPU, too old), tb_memory_available(TB_MEMORY_CUDA)
 * and (TB_MEMORY_CUDA_HOST) are false and the calls below that need it
 * return TB_ERR_UNSUPPORTED with a message saying what is missing.
 *
 * TB_MEMORY_CUDA tensors (tb_tensor_new with opts.memory = TB_MEMORY_CUDA
 * and opts.device the ordinal) live in device memory allocated with
 * cuMemCreate, exportable as a POSIX fd (tb_tensor_export_fd). CPU maps and
 * element access stage through host memory: the first open access copies
 * the whole buffer device to host, each write access copies it back when it
 * ends. TB_MEMORY_CUDA_HOST tensors are sealed shared memory registered
 * with cuMemHostRegister: CPU and GPU reach the same bytes, and they are
 * shared by fd like SHM.
 *
 * Streams are CUstream handles passed as integers; 0 is the legacy default
 * stream. Every call is thread-safe; the primary context of each device
 * used is retained for the life of the process and made current on the
 * calling thread. */
#ifndef TENSORBUF_CUDA_H
#define TENSORBUF_CUDA_H

#include "tensorbuf/fence.h"
#include "tensorbuf/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The device ordinal of a CUDA or CUDA_HOST tensor (for CUDA_HOST the device
 * it was registered on; the registration is portable to every device).
 * Errors: TB_ERR_INVALID_ARGUMENT (NULL argument), TB_ERR_UNSUPPORTED (other
 * memory kinds). */
TB_API tb_status tb_tensor_cuda_device(uint32_t *out, const tb_tensor *tensor);

/* The device address of the tensor's element 0 (a CUdeviceptr), valid while
 * the tensor lives: device memory for CUDA, the device alias of the pinned
 * pages for CUDA_HOST.
 * Errors: TB_ERR_INVALID_ARGUMENT (NULL argument), TB_ERR_UNSUPPORTED (other
 * memory kinds). */
TB_API tb_status tb_tensor_device_ptr(uint64_t *out, const tb_tensor *tensor);

/* Row-major tensor over memory another process exported with
 * tb_tensor_export_fd: `memory` TB_MEMORY_CUDA takes a CUDA shareable fd and
 * maps it on `device`; TB_MEMORY_CUDA_HOST takes the memfd of a CUDA_HOST
 * tensor (checked and sealed as tb_tensor_import_fd does) and registers it.
 * The fd is dup'd: the caller keeps and closes its own.
 * Errors: TB_ERR_INVALID_ARGUMENT (NULL out/shape, negative fd, `memory` not
 * a CUDA kind, no such device), TB_ERR_DTYPE, TB_ERR_SHAPE, TB_ERR_BAD_FD
 * (not CUDA memory, or smaller than byte_offset + the tensor's bytes),
 * TB_ERR_OUT_OF_RANGE, TB_ERR_UNSUPPORTED (no driver), TB_ERR_SYSTEM. */
TB_API tb_status tb_tensor_import_cuda_fd(tb_tensor **out, int fd,
                                          tb_memory memory, uint32_t device,
                                          tb_dtype dtype, size_t ndim,
                                          const int64_t *shape,
                                          uint64_t byte_offset);

/* Makes `stream` wait (on the GPU, without blocking the caller) for the
 * last asynchronous tb_tensor_copy queued on the tensor's memory; nothing
 * to do for other memory or when none was queued. What a DLPack producer
 * does for its consumer's stream.
 * Errors: TB_ERR_INVALID_ARGUMENT (NULL tensor), TB_ERR_SYSTEM (the driver
 * refused). */
TB_API tb_status tb_tensor_cuda_wait(const tb_tensor *tensor, uint64_t stream);

/* A TB_MEMORY_DMA tensor over a dma-buf of the tensor's device memory
 * (cuMemGetHandleForAddressRange), laid out like it, for handing to other
 * devices and APIs. CPU maps of it are refused (the exporter has no mmap).
 * Errors: TB_ERR_INVALID_ARGUMENT (NULL argument), TB_ERR_UNSUPPORTED (not
 * CUDA memory, empty, or the driver, device or kernel cannot export
 * dma-bufs), TB_ERR_SYSTEM. */
TB_API tb_status tb_tensor_cuda_dma_buf(tb_tensor **out,
                                        const tb_tensor *tensor);

/* Fences on the GPU: a CUDA stream signals or waits on a tb_fence (any
 * fence, also one imported from another process) in stream order, without
 * the CPU. The stream works on the fence's counter page, which the first of
 * these calls on a fence registers with cuMemHostRegister (portable to every
 * device; read-only for a read-only fence) and tb_fence_unref unregisters.
 * The fence must therefore outlive the stream work these calls queue, as
 * any memory a stream uses must.
 *
 * tb_fence_cuda_signal queues, on `stream` of device `device`, a write of
 * `value` to the counter (cuStreamWriteValue64), ordered after everything
 * queued on the stream before it, whose memory writes are visible once the
 * counter is; then a host function (cuLaunchHostFunc) that wakes every CPU
 * waiter in tb_fence_wait, in any process, as tb_fence_signal does. A CPU
 * waiter therefore sleeps in the kernel and wakes shortly after the GPU
 * reaches the signal; the wake needs the signalling process alive (its
 * driver runs the host function). `value` must be above the counter at the
 * time of the call (signals queued on one stream are applied in order;
 * keeping them increasing across streams is the caller's part).
 *
 * tb_fence_cuda_wait makes `stream` of device `device` wait, on the GPU,
 * until the counter is >= `value` (cuStreamWaitValue64 GEQ, which compares
 * as (int64_t)(counter - value) >= 0: values within 2^63 of each other), then
 * go on with the work queued after it; the caller is not blocked. A GPU wait
 * has no timeout: a consumer whose producer may die should signal the fence
 * itself (from the CPU, after its own tb_fence_wait timeout) to release its
 * stream.
 *
 * `stream` is a CUstream of `device`'s primary context as an integer (0:
 * the legacy default stream); the calls make that context current on the
 * calling thread. Thread-safe.
 * Errors: TB_ERR_INVALID_ARGUMENT (NULL fence, no such device),
 * TB_ERR_READ_ONLY (signal on a fence imported read-only),
 * TB_ERR_OUT_OF_RANGE (signal of a value not above the counter),
 * TB_ERR_UNSUPPORTED (no driver, a driver older than CUDA 11.7, a device
 * without 64-bit stream memory operations; the message says which),
 * TB_ERR_SYSTEM (the driver refused). */
TB_API tb_status tb_fence_cuda_signal(tb_fence *fence, uint64_t value,
                                      uint32_t device, uint64_t stream);
TB_API tb_status tb_fence_cuda_wait(tb_fence *fence, uint64_t value,
                                    uint32_t device, uint64_t stream);

#ifdef __cplusplus
}
#endif

#endif /* TENSORBUF_CUDA_H */
