/* Pools and the channels that hand their tensors on. */
#ifndef TB_POOL_INTERNAL_H
#define TB_POOL_INTERNAL_H

#include "tensor/tensor.h"
#include "tensorbuf/channel.h"

tb_pool *tb_pool_create(const tb_tensor *prototype, size_t count,
                        GError **error);
tb_tensor *tb_pool_take(tb_pool *pool, int timeout_ms, GError **error);

/* A channel that carries this pool's tensors announces itself, so that an
 * acquire waiting for a free tensor gets the releases arriving on it. The
 * pool keeps a weak pointer; the channel unwatches before it dies. */
void tb_pool_watch(tb_pool *pool, tb_channel *channel);
void tb_pool_unwatch(tb_pool *pool, tb_channel *channel);

/* Channel side of that (channel.c): a reference unless the channel is
 * already dying; and, for a pool that waits, taking the releases at the
 * head of those `channels` that no other thread is reading, waiting for
 * them up to `deadline` (monotonic). A message of another kind stops it
 * there: it is left in the socket for a receive, never read ahead. FALSE
 * when every channel had another reader (which applies the releases) or
 * had stopped at such a message. */
tb_channel *tb_channel_try_ref(tb_channel *channel);
gboolean tb_channel_serve_releases(tb_channel *const *channels, size_t n,
                                   gint64 deadline);
/* Whether the peer has gone (a pump saw the end): such a channel is
 * readable for ever, and has no release left to bring. */
gboolean tb_channel_hung_up(tb_channel *channel);

G_DEFINE_AUTOPTR_CLEANUP_FUNC(tb_pool, tb_pool_unref)

#endif
