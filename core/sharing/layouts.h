/* Layout ids (wire version 3): a tensor's layout (dtype, offset, shape,
 * strides, name, quantization) travels in full once per channel, under an
 * id the receiver caches it by; later tensors of that layout name only the
 * id, in a ring record that no GVariant builds or parses.
 *
 * Ids run from 1 to the receiver's limit (its hello's
 * TB_HELLO_TAG_MAX_LAYOUTS). The sender keeps which layout each id holds
 * and, when every id is taken, gives the least recently used one to the
 * new layout: the receiver overwrites that entry when the full description
 * arrives, which comes after every record that used the old one (records
 * and messages are ordered). So the receiver's cache is a fixed array that
 * a peer cannot grow. Images get ids when every plane lies in the
 * tensor's own buffer (tb_image_new's); planes from several buffers need
 * more than a record's one buffer, and go as full messages. */
#ifndef TB_LAYOUTS_H
#define TB_LAYOUTS_H

#include "tensor/tensor.h"

/* Layouts this side caches for its peer, stated in the hello. */
#define TB_LAYOUTS_DEFAULT_LIMIT 64u
/* The most a peer may state; more is read as this. */
#define TB_LAYOUTS_MAX_LIMIT 4096u

/* ---- sender ---- */
typedef struct TbLayoutIds TbLayoutIds;

/* Ids for a peer that caches `limit` layouts (0: none; every find fails). */
TbLayoutIds *tb_layout_ids_new(uint32_t limit);
void tb_layout_ids_free(TbLayoutIds *ids);
/* The id the peer knows `tensor`'s layout by, or 0 (not sent yet, or one
 * that gets no id). Marks it used. */
uint32_t tb_layout_ids_find(TbLayoutIds *ids, const tb_tensor *tensor);
/* An id for `tensor`'s layout, which goes in full with it: a free one or
 * the least recently used one's; 0 if it gets none (an image over several
 * buffers, no limit). */
uint32_t tb_layout_ids_assign(TbLayoutIds *ids, const tb_tensor *tensor);
/* Undoes an assign whose message never left: the peer keeps the old one,
 * which this side no longer knows, so the id is left unused. */
void tb_layout_ids_forget(TbLayoutIds *ids, uint32_t id);

/* ---- receiver ---- */
typedef struct TbLayoutCache TbLayoutCache;

TbLayoutCache *tb_layout_cache_new(uint32_t limit);
void tb_layout_cache_free(TbLayoutCache *cache);
/* Whether a message may name layout `id`: FALSE with TB_ERR_PROTOCOL for
 * one beyond the limit (or 0), before the message is imported. */
gboolean tb_layout_cache_check(const TbLayoutCache *cache, uint32_t id,
                               GError **error);
/* Caches `tensor`'s layout under `id`, replacing what it held. FALSE with
 * TB_ERR_PROTOCOL for an id beyond the limit (or 0), or an image over
 * several buffers. */
gboolean tb_layout_cache_store(TbLayoutCache *cache, uint32_t id,
                               const tb_tensor *tensor, GError **error);
/* A tensor of layout `id` over `buffer` (checked to hold it). FALSE with
 * TB_ERR_PROTOCOL for an id not cached or a buffer too small. */
tb_tensor *tb_layout_cache_build(const TbLayoutCache *cache, uint32_t id,
                                 tb_buffer *buffer, GError **error);

G_DEFINE_AUTOPTR_CLEANUP_FUNC(TbLayoutIds, tb_layout_ids_free)
G_DEFINE_AUTOPTR_CLEANUP_FUNC(TbLayoutCache, tb_layout_cache_free)

#endif
