/* Bounded buffer caches of a channel (see peer_cache.h). */
#include "sharing/peer_cache.h"

#include <string.h>

/* Whether `count` buffers and `bytes` bytes are within limits (0: none). */
static gboolean within(uint32_t max_buffers, uint64_t max_bytes, uint64_t count,
                       uint64_t bytes) {
  return (max_buffers == 0 || count <= max_buffers) &&
         (max_bytes == 0 || bytes <= max_bytes);
}

/* ---- the receiver's cache ------------------------------------------------ */

typedef struct CacheEntry {
  tb_buffer *buffer;
  uint64_t bytes;
} CacheEntry;

struct TbPeerCache {
  uint32_t max_buffers;
  uint64_t max_bytes;
  GHashTable *entries; /* uint64_t id -> CacheEntry */
  uint64_t bytes;      /* the entries' sum */
};

static void cache_entry_free(CacheEntry *entry) {
  tb_buffer_unref(entry->buffer);
  g_free(entry);
}

TbPeerCache *tb_peer_cache_new(uint32_t max_buffers, uint64_t max_bytes) {
  TbPeerCache *cache = g_new0(TbPeerCache, 1);
  cache->max_buffers = max_buffers;
  cache->max_bytes = max_bytes;
  cache->entries = g_hash_table_new_full(g_int64_hash, g_int64_equal, g_free,
                                         (GDestroyNotify)cache_entry_free);
  return cache;
}

void tb_peer_cache_free(TbPeerCache *cache) {
  if (cache == NULL)
    return;
  g_hash_table_unref(cache->entries);
  g_free(cache);
}

tb_buffer *tb_peer_cache_lookup(TbPeerCache *cache, uint64_t id) {
  CacheEntry *entry = g_hash_table_lookup(cache->entries, &id);
  return entry != NULL ? tb_buffer_ref(entry->buffer) : NULL;
}

void tb_peer_cache_forget(TbPeerCache *cache, const uint64_t *ids, size_t n) {
  for (size_t i = 0; i < n; i++) {
    CacheEntry *entry = g_hash_table_lookup(cache->entries, &ids[i]);
    if (entry == NULL)
      continue;
    cache->bytes -= entry->bytes;
    g_hash_table_remove(cache->entries, &ids[i]);
  }
}

gboolean tb_peer_cache_admit(const TbPeerCache *cache, const uint64_t *ids,
                             const uint64_t *bytes, size_t n, GError **error) {
  uint64_t count = g_hash_table_size(cache->entries), total = cache->bytes;
  for (size_t i = 0; i < n; i++) {
    const CacheEntry *entry = g_hash_table_lookup(cache->entries, &ids[i]);
    if (entry != NULL)
      total -= entry->bytes;
    else
      count++;
    total = total > G_MAXUINT64 - bytes[i] ? G_MAXUINT64 : total + bytes[i];
  }
  if (within(cache->max_buffers, cache->max_bytes, count, total))
    return TRUE;
  g_set_error(error, TB_TENSOR_ERROR, TB_ERR_PROTOCOL,
              "the peer sent a message that would take this receiver's "
              "cache to %" G_GUINT64_FORMAT " buffers and %" G_GUINT64_FORMAT
              " bytes mapped; it stated a limit of %u buffers and %" G_GUINT64_FORMAT
              " bytes and the peer did not forget enough",
              count, total, cache->max_buffers, cache->max_bytes);
  return FALSE;
}

void tb_peer_cache_insert(TbPeerCache *cache, uint64_t id, tb_buffer *buffer,
                          uint64_t bytes) {
  tb_peer_cache_forget(cache, &id, 1);
  CacheEntry *entry = g_new(CacheEntry, 1);
  *entry = (CacheEntry){buffer, bytes};
  g_hash_table_insert(cache->entries, g_memdup2(&id, sizeof id), entry);
  cache->bytes += bytes;
}

size_t tb_peer_cache_count(const TbPeerCache *cache) {
  return g_hash_table_size(cache->entries);
}

uint64_t tb_peer_cache_bytes(const TbPeerCache *cache) { return cache->bytes; }

/* ---- the sender's mirror ------------------------------------------------- */

typedef struct MirrorEntry {
  GList link;     /* in `lru` (data: the entry), least recently sent first */
  uint64_t id;
  TbWireWindow window; /* mapped at the peer: its length counts */
  uint64_t serial;  /* of the last message that carried its fd */
  gboolean held;    /* the peer has it (acknowledged, or sent without acks) */
  gboolean read_only; /* the peer's mapping is read-only */
  uint64_t doomed;  /* the plan (by number) that forgets it */
} MirrorEntry;

/* Most dead buffers one message says to forget: 16 KiB of ids. */
#define TB_MIRROR_MAX_DEAD 2048

struct TbPeerMirror {
  gboolean acked;
  uint32_t max_buffers;
  uint64_t max_bytes;
  GHashTable *entries; /* &entry->id -> MirrorEntry */
  GQueue lru;
  uint64_t bytes;     /* the entries' sum */
  uint64_t plans;     /* plans made: numbers `doomed` */
  uint64_t serials;   /* serials given to messages that carry fds */
  size_t awaiting;    /* entries not held yet */
};

TbPeerMirror *tb_peer_mirror_new(gboolean acked, uint32_t max_buffers,
                                 uint64_t max_bytes) {
  TbPeerMirror *mirror = g_new0(TbPeerMirror, 1);
  mirror->acked = acked;
  mirror->max_buffers = max_buffers;
  mirror->max_bytes = max_bytes;
  mirror->entries =
      g_hash_table_new_full(g_int64_hash, g_int64_equal, NULL, g_free);
  g_queue_init(&mirror->lru);
  return mirror;
}

void tb_peer_mirror_free(TbPeerMirror *mirror) {
  if (mirror == NULL)
    return;
  g_hash_table_unref(mirror->entries);
  g_free(mirror);
}

static MirrorEntry *mirror_find(const TbPeerMirror *mirror, uint64_t id) {
  return g_hash_table_lookup(mirror->entries, &id);
}

static void mirror_remove(TbPeerMirror *mirror, MirrorEntry *entry) {
  g_queue_unlink(&mirror->lru, &entry->link);
  mirror->bytes -= entry->window.length;
  if (!entry->held)
    mirror->awaiting--;
  g_hash_table_remove(mirror->entries, &entry->id);
}

gboolean tb_peer_mirror_holds(const TbPeerMirror *mirror, uint64_t id,
                              TbWireWindow window, gboolean read_only) {
  const MirrorEntry *entry = mirror_find(mirror, id);
  return entry != NULL && entry->held &&
         tb_wire_window_covers(entry->window, window) &&
         (!read_only || entry->read_only);
}

/* The window the peer maps of an entry once a message that carries its fd
 * and uses `needed` of it is imported: the one it holds if that covers
 * `needed` (it keeps that, closing the fd), else `needed`. */
static TbWireWindow window_after(const MirrorEntry *entry,
                                 TbWireWindow needed) {
  return entry != NULL && tb_wire_window_covers(entry->window, needed)
             ? entry->window
             : needed;
}

static gboolean in_plan(const TbMirrorPlan *plan, uint64_t id) {
  for (size_t i = 0; i < plan->n; i++)
    if (plan->ids[i] == id)
      return TRUE;
  return FALSE;
}

static void doom(TbPeerMirror *mirror, TbMirrorPlan *plan, MirrorEntry *entry,
                 uint64_t *count, uint64_t *bytes) {
  entry->doomed = mirror->plans;
  g_array_append_val(plan->forget, entry->id);
  (*count)--;
  *bytes -= entry->window.length;
}

gboolean tb_peer_mirror_plan(TbPeerMirror *mirror, const uint64_t *ids,
                             const TbWireWindow *windows, size_t n,
                             gboolean read_only, TbMirrorPlan *plan,
                             GError **error) {
  g_assert(n <= TB_WIRE_MAX_BUFFERS);
  uint64_t alone = 0;
  for (size_t i = 0; i < n; i++)
    alone += windows[i].length; /* each under 2^63: no overflow */
  if (!within(mirror->max_buffers, mirror->max_bytes, n, alone)) {
    g_set_error(error, TB_TENSOR_ERROR, TB_ERR_OUT_OF_RANGE,
                "the tensor needs %zu buffers and %" G_GUINT64_FORMAT
                " bytes mapped at the peer, which keeps at most %u buffers "
                "and %" G_GUINT64_FORMAT " bytes (its limits)",
                n, alone, mirror->max_buffers, mirror->max_bytes);
    return FALSE;
  }
  *plan = (TbMirrorPlan){.n = n, .read_only = read_only};
  plan->forget = g_array_new(FALSE, FALSE, sizeof(uint64_t));
  memcpy(plan->ids, ids, n * sizeof *ids);
  mirror->plans++;
  uint64_t count = g_hash_table_size(mirror->entries), total = mirror->bytes;
  /* Buffers that have died: the peer can drop them (so many at most that
   * the message stays far below the size a receiver accepts; the rest go
   * with the next one). */
  for (GList *l = mirror->lru.head;
       l != NULL && plan->forget->len < TB_MIRROR_MAX_DEAD; l = l->next) {
    MirrorEntry *entry = l->data;
    if (!tb_buffer_alive(entry->id))
      doom(mirror, plan, entry, &count, &total);
  }
  gboolean any_fd = FALSE;
  for (size_t i = 0; i < n; i++) {
    const MirrorEntry *entry = mirror_find(mirror, ids[i]);
    /* The fd goes until the peer holds the buffer over what the message
     * uses, and again when a share turns read-only (the peer's old
     * mapping could write). */
    plan->with_fd[i] =
        !tb_peer_mirror_holds(mirror, ids[i], windows[i], read_only);
    any_fd |= plan->with_fd[i];
    plan->windows[i] = plan->with_fd[i] ? window_after(entry, windows[i])
                                        : entry->window;
    if (entry == NULL)
      count++;
    total = total - (entry != NULL ? entry->window.length : 0) +
            plan->windows[i].length;
  }
  /* Then the least recently sent, until the peer's limits hold. */
  for (GList *l = mirror->lru.head;
       l != NULL && !within(mirror->max_buffers, mirror->max_bytes, count,
                            total);
       l = l->next) {
    MirrorEntry *entry = l->data;
    if (entry->doomed != mirror->plans && !in_plan(plan, entry->id))
      doom(mirror, plan, entry, &count, &total);
  }
  plan->serial = any_fd ? mirror->serials + 1 : 0;
  return TRUE;
}

void tb_peer_mirror_commit(TbPeerMirror *mirror, const TbMirrorPlan *plan) {
  for (guint i = 0; i < plan->forget->len; i++) {
    MirrorEntry *entry =
        mirror_find(mirror, g_array_index(plan->forget, uint64_t, i));
    if (entry != NULL)
      mirror_remove(mirror, entry);
  }
  if (plan->serial != 0)
    mirror->serials = plan->serial;
  for (size_t i = 0; i < plan->n; i++) {
    MirrorEntry *entry = mirror_find(mirror, plan->ids[i]);
    if (entry == NULL) {
      entry = g_new0(MirrorEntry, 1);
      entry->id = plan->ids[i];
      entry->link.data = entry;
      entry->held = TRUE; /* made pending below */
      g_hash_table_insert(mirror->entries, &entry->id, entry);
    } else {
      g_queue_unlink(&mirror->lru, &entry->link);
    }
    g_queue_push_tail_link(&mirror->lru, &entry->link);
    if (!plan->with_fd[i])
      continue;
    mirror->bytes =
        mirror->bytes - entry->window.length + plan->windows[i].length;
    entry->window = plan->windows[i];
    entry->serial = plan->serial;
    entry->read_only = plan->read_only;
    gboolean held = !mirror->acked;
    if (entry->held && !held)
      mirror->awaiting++;
    else if (!entry->held && held)
      mirror->awaiting--;
    entry->held = held;
  }
}

void tb_peer_mirror_plan_clear(TbMirrorPlan *plan) {
  if (plan->forget != NULL)
    g_array_unref(plan->forget);
  plan->forget = NULL;
}

void tb_peer_mirror_ack(TbPeerMirror *mirror, uint64_t serial, uint64_t id,
                        TbWireWindow window) {
  MirrorEntry *entry = mirror_find(mirror, id);
  /* The acknowledged window is what the peer holds (it may have kept an
   * older one, or mapped just what this message needed if an earlier
   * import failed): never more than planned, the peer's word being all
   * there is of it. */
  if (entry == NULL || entry->held || entry->serial != serial ||
      !tb_wire_window_covers(entry->window, window))
    return;
  entry->held = TRUE;
  mirror->awaiting--;
  mirror->bytes = mirror->bytes - entry->window.length + window.length;
  entry->window = window;
}

gboolean tb_peer_mirror_awaits_acks(const TbPeerMirror *mirror) {
  return mirror->awaiting > 0;
}

size_t tb_peer_mirror_count(const TbPeerMirror *mirror) {
  return g_hash_table_size(mirror->entries);
}

uint64_t tb_peer_mirror_bytes(const TbPeerMirror *mirror) {
  return mirror->bytes;
}
