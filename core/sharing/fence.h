/* Timeline fences over a shared page. */
#ifndef TB_FENCE_INTERNAL_H
#define TB_FENCE_INTERNAL_H

#include "memory/buffer.h"
#include "tensorbuf/fence.h"

tb_fence *tb_fence_create(uint64_t initial, GError **error);
tb_fence *tb_fence_open(int fd, GError **error);
int tb_fence_dup_fd(const tb_fence *fence, GError **error);
gboolean tb_fence_raise(tb_fence *fence, uint64_t value, GError **error);
/* The counter in the shared page, for writers other than tb_fence_raise
 * (a GPU stream that writes it in place); call tb_fence_wake after such a
 * write reaches memory. */
_Atomic uint64_t *tb_fence_counter(const tb_fence *fence);
/* Wakes every process sleeping in tb_fence_await on this fence. */
void tb_fence_wake(tb_fence *fence);
/* Queue a signal / a wait on CUDA stream `stream` of `device`
 * (tb_fence_cuda_signal / tb_fence_cuda_wait). */
gboolean tb_fence_stream_signal(tb_fence *fence, uint64_t value,
                                uint32_t device, uint64_t stream,
                                GError **error);
gboolean tb_fence_stream_wait(tb_fence *fence, uint64_t value, uint32_t device,
                              uint64_t stream, GError **error);
gboolean tb_fence_await(tb_fence *fence, uint64_t value, int64_t timeout_ns,
                        GError **error);

G_DEFINE_AUTOPTR_CLEANUP_FUNC(tb_fence, tb_fence_unref)

#endif
