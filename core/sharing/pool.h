/* Pools and the channels that hand their tensors on. */
#ifndef TB_POOL_INTERNAL_H
#define TB_POOL_INTERNAL_H

#include "tensor/tensor.h"
#include "tensorbuf/channel.h"

tb_pool *tb_pool_create(const tb_tensor *prototype, size_t count,
                        GError **error);
tb_tensor *tb_pool_take(tb_pool *pool, int timeout_ms, GError **error);

/* A channel that carries this pool's tensors announces itself, so that an
 * acquire waiting for a free tensor reads the releases arriving on it. The
 * pool keeps a weak pointer; the channel unwatches before it dies. */
void tb_pool_watch(tb_pool *pool, tb_channel *channel);
void tb_pool_unwatch(tb_pool *pool, tb_channel *channel);

/* Channel side of that (channel.c): a reference unless the channel is
 * already dying, and reading what has arrived without blocking. */
tb_channel *tb_channel_try_ref(tb_channel *channel);
void tb_channel_pump(tb_channel *channel);
/* Whether the peer has gone (a pump saw the end): such a channel is
 * readable for ever, and has no release left to bring. */
gboolean tb_channel_hung_up(tb_channel *channel);

G_DEFINE_AUTOPTR_CLEANUP_FUNC(tb_pool, tb_pool_unref)

#endif
