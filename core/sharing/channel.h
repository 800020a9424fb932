/* Channels and listeners. */
#ifndef TB_CHANNEL_INTERNAL_H
#define TB_CHANNEL_INTERNAL_H

#include "sharing/descriptor.h"
#include "sharing/hello.h"
#include "sharing/fence.h"
#include "sharing/pool.h"

/* `opts` may be NULL (the defaults) here and below. */
gboolean tb_channel_make_pair(tb_channel **a, tb_channel **b,
                              const tb_channel_options *opts, GError **error);
tb_channel *tb_channel_adopt_fd(int fd, const tb_channel_options *opts,
                                GError **error);
tb_channel *tb_channel_dial(const char *path, int timeout_ms,
                            const tb_channel_options *opts, GError **error);
/* Bytes of a tb_channel_options of `version`; 0 for a version unknown. */
size_t tb_channel_options_size(uint32_t version);
/* The caller's options (`name` in messages; NULL: none) over the defaults,
 * checked. */
gboolean tb_channel_options_read(tb_channel_options *out,
                                 const tb_channel_options *opts,
                                 const char *name, GError **error);
/* What the hello agreed (see tensorbuf/channel.h), once it has been read. */
gboolean tb_channel_agreed(tb_channel *channel, uint32_t *version,
                           TbHello *own, TbHello *peer, GError **error);
/* `opts` may be NULL (the defaults). */
tb_listener *tb_listener_open(const char *path, const tb_listener_options *opts,
                              GError **error);
/* Bytes of a tb_listener_options of `version`; 0 for a version unknown. */
size_t tb_listener_options_size(uint32_t version);
/* The peer's SO_PEERCRED from connect; FALSE where the kernel gave none. */
gboolean tb_channel_peer(const tb_channel *channel, int64_t *pid, int64_t *uid,
                         int64_t *gid);
tb_channel *tb_listener_take(tb_listener *listener, int timeout_ms,
                             GError **error);
gboolean tb_channel_put(tb_channel *channel, tb_tensor *tensor, uint32_t flags,
                        GError **error);
/* Whether the peer holds our buffer `id` mapped over `window` (for a
 * read-only share: read-only), so that a message may name it without its
 * fd. Once the hello has been read. */
gboolean tb_channel_peer_holds(tb_channel *channel, uint64_t id,
                               TbWireWindow window, gboolean read_only);
tb_tensor *tb_channel_take(tb_channel *channel, int timeout_ms, GError **error);
gboolean tb_channel_put_fence(tb_channel *channel, tb_fence *fence,
                              GError **error);
tb_fence *tb_channel_take_fence(tb_channel *channel, int timeout_ms,
                                GError **error);

/* What went which way, for tests and benchmarks (counts since connect). */
typedef struct TbChannelStats {
  uint64_t ring_sent;       /* tensors sent as ring records */
  uint64_t socket_sent;     /* tensors sent as socket messages */
  uint64_t ring_received;   /* tensors built from ring records */
  uint64_t releases_queued; /* releases that found the ring full */
  uint64_t ring_sleeps;     /* futex waits on either ring */
  uint64_t ring_wakes;      /* futex wakes issued on either ring */
  uint64_t doorbells;       /* doorbell messages sent */
} TbChannelStats;
/* FALSE before the hello or below version 3 (no rings). */
gboolean tb_channel_stats(tb_channel *channel, TbChannelStats *out);

/* tb_tensor_export: the description of `tensor` for a transport of the
 * caller's, into `descriptor` (`capacity` bytes; *length gets its size,
 * also when it does not fit), and new fds into `fds` (*nfds in: their
 * capacity; out: the count, or the count needed when it is too small).
 * On failure no fd is left open. */
gboolean tb_tensor_describe(const tb_tensor *tensor, uint32_t flags,
                            uint8_t *descriptor, size_t capacity,
                            size_t *length, int *fds, size_t *nfds,
                            GError **error);
/* tb_tensor_import: the tensor a description and its fds (borrowed, each
 * imported by dup) describe. */
tb_tensor *tb_tensor_from_description(const uint8_t *descriptor, size_t length,
                                      const int *fds, size_t nfds,
                                      GError **error);

G_DEFINE_AUTOPTR_CLEANUP_FUNC(tb_channel, tb_channel_unref)

#endif
