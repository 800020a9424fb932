/* The bounded buffer caches of a channel: the receiver's, and the sender's
 * mirror of it.
 *
 * A receiver keeps the buffers its peer sent with their fds, by the
 * sender's buffer id, so that a later message can name one without its fd.
 * Each side states in its hello how much of that it keeps: at most
 * `max_buffers` buffers and `max_bytes` bytes mapped (each buffer counted
 * as the window of its file it maps, TbWireWindow: both sides work it out
 * from the description).
 *
 * The receiver never evicts on its own, so it never meets a reference to a
 * buffer it dropped: the sender does. It keeps a mirror of what the peer
 * holds, in the order it last sent each buffer, and before a message that
 * would take the peer past its limits lists the least recently sent ones
 * in that message's forget list. The receiver applies the forgets, then
 * refuses (TB_ERR_PROTOCOL) a message that would still take it past its
 * limits: only a sender that ignores them sends one.
 *
 * With acknowledgements (protocol version 3) a buffer counts as held only
 * once the receiver has said it imported it: until then every message that
 * names it carries its fd again (a receiver that holds it already closes
 * the extra fd), so an import that failed (out of fds, say) is retried by
 * the next send instead of poisoning the id. Each message that carries fds
 * has a serial; an acknowledgement names it, and only the one for the
 * latest message that carried a buffer's fd makes it held. Without
 * acknowledgements (versions 1 and 2) a buffer is held once sent.
 *
 * Neither structure locks: the channel holds its lock around every call. */
#ifndef TB_PEER_CACHE_H
#define TB_PEER_CACHE_H

#include "sharing/descriptor.h"

/* ---- the receiver's cache ------------------------------------------------ */

typedef struct TbPeerCache TbPeerCache;

TbPeerCache *tb_peer_cache_new(uint32_t max_buffers, uint64_t max_bytes);
void tb_peer_cache_free(TbPeerCache *cache);

/* A new reference to the buffer cached as `id`, or NULL. */
tb_buffer *tb_peer_cache_lookup(TbPeerCache *cache, uint64_t id);
/* Drops the entries of `ids` (ids not cached are ignored). A buffer a
 * received tensor still uses stays mapped by the tensor's reference. */
void tb_peer_cache_forget(TbPeerCache *cache, const uint64_t *ids, size_t n);
/* Whether caching `n` buffers (ids[i], taking bytes[i] mapped; an id that
 * is cached already is replaced) keeps the cache within its limits; FALSE
 * with TB_ERR_PROTOCOL naming the limit otherwise. Changes nothing. */
gboolean tb_peer_cache_admit(const TbPeerCache *cache, const uint64_t *ids,
                             const uint64_t *bytes, size_t n, GError **error);
/* Caches `buffer` (the cache takes the reference) as `id`, replacing any
 * entry of that id. Call after tb_peer_cache_admit. */
void tb_peer_cache_insert(TbPeerCache *cache, uint64_t id, tb_buffer *buffer,
                          uint64_t bytes);
size_t tb_peer_cache_count(const TbPeerCache *cache);
uint64_t tb_peer_cache_bytes(const TbPeerCache *cache);

/* ---- the sender's mirror ------------------------------------------------- */

typedef struct TbPeerMirror TbPeerMirror;

/* A mirror of a peer that stated these limits (0: none) and acknowledges
 * imports (`acked`) or not. */
TbPeerMirror *tb_peer_mirror_new(gboolean acked, uint32_t max_buffers,
                                 uint64_t max_bytes);
void tb_peer_mirror_free(TbPeerMirror *mirror);

/* Whether the peer holds buffer `id` so that a message may name it without
 * its fd: held (acknowledged, with acknowledgements), mapped over `window`
 * and, for a read-only share, mapped read-only. */
gboolean tb_peer_mirror_holds(const TbPeerMirror *mirror, uint64_t id,
                              TbWireWindow window, gboolean read_only);

/* One message's effect on the peer's cache, planned before it is sent. */
typedef struct TbMirrorPlan {
  size_t n;
  uint64_t ids[TB_WIRE_MAX_BUFFERS];
  TbWireWindow windows[TB_WIRE_MAX_BUFFERS]; /* what the peer will map */
  gboolean with_fd[TB_WIRE_MAX_BUFFERS];
  gboolean read_only;
  uint64_t serial; /* the message's, if it carries fds; else 0 */
  GArray *forget;  /* uint64_t ids for the peer to drop first */
} TbMirrorPlan;

/* Plans a message that names `n` distinct buffers (ids[i], of which it
 * uses windows[i]): which go with their fd, and which ids the peer must
 * forget first: those of buffers that have died, then, least recently sent
 * first, as many as keep the peer within its limits. Changes nothing;
 * FALSE with TB_ERR_OUT_OF_RANGE if the message alone is over the peer's
 * limits. */
gboolean tb_peer_mirror_plan(TbPeerMirror *mirror, const uint64_t *ids,
                             const TbWireWindow *windows, size_t n,
                             gboolean read_only, TbMirrorPlan *plan,
                             GError **error);
/* The planned message was sent: records it. */
void tb_peer_mirror_commit(TbPeerMirror *mirror, const TbMirrorPlan *plan);
void tb_peer_mirror_plan_clear(TbMirrorPlan *plan);
G_DEFINE_AUTO_CLEANUP_CLEAR_FUNC(TbMirrorPlan, tb_peer_mirror_plan_clear)
/* The peer says it imported buffer `id` from the message of `serial` and
 * holds `window` of it mapped. An acknowledgement of an older message (the
 * buffer's fd went again since), of a buffer forgotten since, or of more
 * than the plan would map, is ignored. */
void tb_peer_mirror_ack(TbPeerMirror *mirror, uint64_t serial, uint64_t id,
                        TbWireWindow window);
/* Whether an acknowledgement is awaited for any buffer. */
gboolean tb_peer_mirror_awaits_acks(const TbPeerMirror *mirror);
size_t tb_peer_mirror_count(const TbPeerMirror *mirror);
uint64_t tb_peer_mirror_bytes(const TbPeerMirror *mirror);

#endif
