/* tensorbuf — cross-process timeline fences.
 *
 * A fence is a 64-bit counter in a sealed shared-memory page that only ever
 * grows: a producer signals value N when its work N is done, consumers wait
 * until the counter reaches the value they need. Shared by fd (or sent on a
 * channel), it is the Linux counterpart of MTLSharedEvent and Vulkan
 * timeline semaphores. Waiting sleeps in the kernel (futex), no polling.
 * CUDA streams signal and wait on fences too (tb_fence_cuda_signal,
 * tb_fence_cuda_wait in tensorbuf/cuda.h). All calls are thread-safe. */
#ifndef TENSORBUF_FENCE_H
#define TENSORBUF_FENCE_H

#include "tensorbuf/status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct tb_fence tb_fence;

/* A new fence at value `initial`.
 * Errors: TB_ERR_INVALID_ARGUMENT (NULL out), TB_ERR_UNSUPPORTED (no memfd),
 * TB_ERR_NO_MEMORY, TB_ERR_SYSTEM. */
TB_API tb_status tb_fence_new(tb_fence **out, uint64_t initial);

/* Opens a fence from an fd made by tb_fence_export_fd (dup'd: the caller
 * keeps its own). A read-only fd gives a fence that can wait but not signal.
 * Only what tb_fence_new makes is accepted: a memfd on tmpfs, sealed against
 * shrinking and growing, exactly one 4096-byte page, starting with the fence
 * magic. Errors: TB_ERR_INVALID_ARGUMENT (NULL out, negative fd),
 * TB_ERR_BAD_FD (anything else: a dma-buf, an unsealed or hugetlbfs memfd, a
 * file of another size, a page without the magic), TB_ERR_SYSTEM. */
TB_API tb_status tb_fence_import_fd(tb_fence **out, int fd);

/* A new fd (close-on-exec) for the fence; the caller closes it.
 * Errors: TB_ERR_INVALID_ARGUMENT (NULL argument), TB_ERR_SYSTEM. */
TB_API tb_status tb_fence_export_fd(int *out_fd, const tb_fence *fence);

TB_API tb_fence *tb_fence_ref(tb_fence *fence); /* NULL-safe */
TB_API void tb_fence_unref(tb_fence *fence);    /* NULL is a no-op */

/* Current value (0 for a NULL fence). */
TB_API uint64_t tb_fence_value(const tb_fence *fence);

/* Raises the counter to `value` and wakes every waiter that it satisfies,
 * in any process.
 * Errors: TB_ERR_INVALID_ARGUMENT (NULL fence), TB_ERR_OUT_OF_RANGE (value
 * not above the current value: a timeline never goes back),
 * TB_ERR_READ_ONLY (imported read-only). */
TB_API tb_status tb_fence_signal(tb_fence *fence, uint64_t value);

/* Waits until the counter is >= `value`, at most `timeout_ns` nanoseconds
 * (negative: no limit; 0: just test), measured on CLOCK_MONOTONIC from the
 * call: signal handlers that interrupt the wait do not extend it. A waiter
 * whose signaller died is released by its timeout.
 * Errors: TB_ERR_INVALID_ARGUMENT (NULL fence), TB_ERR_TIMEOUT,
 * TB_ERR_SYSTEM (the kernel refused the futex wait; tb_last_errno says why). */
TB_API tb_status tb_fence_wait(tb_fence *fence, uint64_t value,
                               int64_t timeout_ns);

#ifdef __cplusplus
}
#endif

#endif /* TENSORBUF_FENCE_H */
