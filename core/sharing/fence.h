/* Timeline fences over a shared page. */
#ifndef TB_FENCE_INTERNAL_H
#define TB_FENCE_INTERNAL_H

#include "memory/buffer.h"
#include "tensorbuf/fence.h"

tb_fence *tb_fence_create(uint64_t initial, GError **error);
tb_fence *tb_fence_open(int fd, GError **error);
int tb_fence_dup_fd(const tb_fence *fence, GError **error);
gboolean tb_fence_raise(tb_fence *fence, uint64_t value, GError **error);
gboolean tb_fence_await(tb_fence *fence, uint64_t value, int64_t timeout_ns,
                        GError **error);

G_DEFINE_AUTOPTR_CLEANUP_FUNC(tb_fence, tb_fence_unref)

#endif
