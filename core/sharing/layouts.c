/* Layout ids (see layouts.h). */
#include "sharing/layouts.h"

#include "memory/buffer.h"
#include "tensor/image.h"

#include <string.h>

/* ---- the sender's ids ---------------------------------------------------- */

/* Whether `t`'s layout can have an id: a record names one buffer, so an
 * image needs every plane in the tensor's own buffer (as tb_image_new
 * makes them); planes from several fds go as full messages. */
static gboolean gets_id(const tb_tensor *t) {
  return t->image == NULL || (tb_image_single_buffer(t->image) &&
                              t->image->planes[0].buffer == t->buffer);
}

/* A layout as bytes, compared whole: everything tb_tensor_like copies,
 * an image's planes included. */
static GByteArray *layout_key(const tb_tensor *t) {
  GByteArray *key = g_byte_array_sized_new(64 + 16 * (guint)t->ndim);
  /* The offset in the buffer's file, as the message says it. */
  uint64_t head[] = {t->dtype, t->offset + t->buffer->fd_offset, t->ndim};
  g_byte_array_append(key, (const guint8 *)head, sizeof head);
  g_byte_array_append(key, (const guint8 *)t->shape,
                      (guint)(t->ndim * sizeof *t->shape));
  g_byte_array_append(key, (const guint8 *)t->strides,
                      (guint)(t->ndim * sizeof *t->strides));
  /* The name with its terminator, so "a" + quantization never equals a
   * longer name. */
  const char *name = t->name != NULL ? t->name : "";
  uint8_t has_name = t->name != NULL;
  g_byte_array_append(key, &has_name, 1);
  g_byte_array_append(key, (const guint8 *)name, (guint)strlen(name) + 1);
  const TbQuantization *q = t->quantization;
  if (q != NULL) {
    uint64_t quant[] = {(uint64_t)q->axis, q->count};
    g_byte_array_append(key, (const guint8 *)quant, sizeof quant);
    g_byte_array_append(key, (const guint8 *)q->scales,
                        (guint)(q->count * sizeof *q->scales));
    g_byte_array_append(key, (const guint8 *)q->zero_points,
                        (guint)(q->count * sizeof *q->zero_points));
  }
  const TbImage *image = t->image;
  if (image != NULL) {
    uint64_t geometry[] = {image->format, image->width, image->height,
                           image->nplanes};
    g_byte_array_append(key, (const guint8 *)geometry, sizeof geometry);
    for (size_t p = 0; p < image->nplanes; p++) {
      uint64_t plane[] = {
          image->planes[p].offset + image->planes[p].buffer->fd_offset,
          image->planes[p].stride};
      g_byte_array_append(key, (const guint8 *)plane, sizeof plane);
    }
  }
  return key;
}

typedef struct IdEntry {
  GByteArray *key; /* NULL: the id is free */
  uint64_t used;   /* `clock` at the last find or assign */
} IdEntry;

struct TbLayoutIds {
  uint32_t limit;
  IdEntry *entries; /* [id - 1] */
  uint64_t clock;
  uint32_t last; /* the id found last: most handoffs repeat it */
};

TbLayoutIds *tb_layout_ids_new(uint32_t limit) {
  TbLayoutIds *ids = g_new0(TbLayoutIds, 1);
  ids->limit = MIN(limit, TB_LAYOUTS_MAX_LIMIT);
  ids->entries = g_new0(IdEntry, MAX(ids->limit, 1));
  return ids;
}

void tb_layout_ids_free(TbLayoutIds *ids) {
  if (ids == NULL)
    return;
  for (uint32_t i = 0; i < ids->limit; i++)
    if (ids->entries[i].key != NULL)
      g_byte_array_unref(ids->entries[i].key);
  g_free(ids->entries);
  g_free(ids);
}

static gboolean key_is(const IdEntry *entry, const GByteArray *key) {
  return entry->key != NULL && entry->key->len == key->len &&
         memcmp(entry->key->data, key->data, key->len) == 0;
}

uint32_t tb_layout_ids_find(TbLayoutIds *ids, const tb_tensor *tensor) {
  if (ids->limit == 0 || !gets_id(tensor))
    return 0;
  g_autoptr(GByteArray) key = layout_key(tensor);
  uint32_t found = 0;
  if (ids->last != 0 && key_is(&ids->entries[ids->last - 1], key))
    found = ids->last;
  for (uint32_t i = 0; found == 0 && i < ids->limit; i++)
    if (key_is(&ids->entries[i], key))
      found = i + 1;
  if (found != 0) {
    ids->entries[found - 1].used = ++ids->clock;
    ids->last = found;
  }
  return found;
}

uint32_t tb_layout_ids_assign(TbLayoutIds *ids, const tb_tensor *tensor) {
  if (ids->limit == 0 || !gets_id(tensor))
    return 0;
  uint32_t victim = 0; /* a free id, else the least recently used */
  for (uint32_t i = 0; i < ids->limit; i++) {
    if (ids->entries[i].key == NULL) {
      victim = i;
      break;
    }
    if (ids->entries[i].used < ids->entries[victim].used)
      victim = i;
  }
  IdEntry *entry = &ids->entries[victim];
  if (entry->key != NULL)
    g_byte_array_unref(entry->key);
  entry->key = layout_key(tensor);
  entry->used = ++ids->clock;
  ids->last = victim + 1;
  return victim + 1;
}

void tb_layout_ids_forget(TbLayoutIds *ids, uint32_t id) {
  if (id == 0 || id > ids->limit || ids->entries[id - 1].key == NULL)
    return;
  g_clear_pointer(&ids->entries[id - 1].key, g_byte_array_unref);
  if (ids->last == id)
    ids->last = 0;
}

/* ---- the receiver's cache ------------------------------------------------ */

typedef struct CachedLayout {
  gboolean present;
  tb_dtype dtype;
  uint64_t offset; /* in the buffer's file (tb_buffer.fd_offset) */
  size_t ndim;
  int64_t shape[TB_MAX_DIMS];
  int64_t strides[TB_MAX_DIMS];
  char *name;
  TbQuantization quantization; /* count 0: none */
  gboolean image; /* the planes below, all in the one buffer */
  tb_pixel_format format;
  uint32_t width, height;
  size_t nplanes;
  uint64_t plane_offset[TB_IMAGE_MAX_PLANES]; /* in the buffer's file */
  uint64_t plane_stride[TB_IMAGE_MAX_PLANES];
} CachedLayout;

struct TbLayoutCache {
  uint32_t limit;
  CachedLayout *entries; /* [id - 1] */
};

TbLayoutCache *tb_layout_cache_new(uint32_t limit) {
  TbLayoutCache *cache = g_new0(TbLayoutCache, 1);
  cache->limit = limit;
  cache->entries = g_new0(CachedLayout, MAX(limit, 1));
  return cache;
}

static void layout_clear(CachedLayout *layout) {
  g_free(layout->name);
  g_free(layout->quantization.scales);
  g_free(layout->quantization.zero_points);
  memset(layout, 0, sizeof *layout);
}

void tb_layout_cache_free(TbLayoutCache *cache) {
  if (cache == NULL)
    return;
  for (uint32_t i = 0; i < cache->limit; i++)
    layout_clear(&cache->entries[i]);
  g_free(cache->entries);
  g_free(cache);
}

gboolean tb_layout_cache_check(const TbLayoutCache *cache, uint32_t id,
                               GError **error) {
  if (id != 0 && id <= cache->limit)
    return TRUE;
  g_set_error(error, TB_TENSOR_ERROR, TB_ERR_PROTOCOL,
              "a tensor message names layout id %u; this side caches ids 1 "
              "to %u (its hello said so)",
              id, cache->limit);
  return FALSE;
}

gboolean tb_layout_cache_store(TbLayoutCache *cache, uint32_t id,
                               const tb_tensor *tensor, GError **error) {
  if (!tb_layout_cache_check(cache, id, error))
    return FALSE;
  if (!gets_id(tensor)) {
    g_set_error(error, TB_TENSOR_ERROR, TB_ERR_PROTOCOL,
                "a tensor message names layout id %u for an image whose "
                "planes are in several buffers; such images get none",
                id);
    return FALSE;
  }
  CachedLayout *layout = &cache->entries[id - 1];
  layout_clear(layout);
  layout->present = TRUE;
  layout->dtype = tensor->dtype;
  layout->offset = tensor->offset + tensor->buffer->fd_offset;
  layout->ndim = tensor->ndim;
  memcpy(layout->shape, tensor->shape, tensor->ndim * sizeof *tensor->shape);
  memcpy(layout->strides, tensor->strides,
         tensor->ndim * sizeof *tensor->strides);
  layout->name = g_strdup(tensor->name);
  const TbQuantization *q = tensor->quantization;
  if (q != NULL) {
    layout->quantization = (TbQuantization){
        .axis = q->axis,
        .count = q->count,
        .scales = g_memdup2(q->scales, q->count * sizeof *q->scales),
        .zero_points =
            g_memdup2(q->zero_points, q->count * sizeof *q->zero_points)};
  }
  const TbImage *image = tensor->image;
  if (image != NULL) {
    layout->image = TRUE;
    layout->format = image->format;
    layout->width = image->width;
    layout->height = image->height;
    layout->nplanes = image->nplanes;
    for (size_t p = 0; p < image->nplanes; p++) {
      layout->plane_offset[p] =
          image->planes[p].offset + image->planes[p].buffer->fd_offset;
      layout->plane_stride[p] = image->planes[p].stride;
    }
  }
  return TRUE;
}

/* The image `layout` describes with every plane in `buffer`: its tensor
 * layout follows from the planes, which tb_image_from_buffers checks fit
 * in what this side maps. */
static tb_tensor *build_image(const CachedLayout *layout, tb_buffer *buffer,
                              GError **error) {
  tb_buffer *buffers[TB_IMAGE_MAX_PLANES];
  uint64_t offsets[TB_IMAGE_MAX_PLANES];
  for (size_t p = 0; p < layout->nplanes; p++) {
    if (layout->plane_offset[p] < buffer->fd_offset) {
      g_set_error(error, TB_TENSOR_ERROR, TB_ERR_OUT_OF_RANGE,
                  "plane %zu begins at byte %" G_GUINT64_FORMAT
                  " of the file, before the %" G_GUINT64_FORMAT
                  " this side maps from",
                  p, layout->plane_offset[p], buffer->fd_offset);
      return NULL;
    }
    buffers[p] = buffer;
    offsets[p] = layout->plane_offset[p] - buffer->fd_offset;
  }
  return tb_image_from_buffers(layout->width, layout->height, layout->format,
                               layout->dtype, layout->nplanes, buffers,
                               offsets, layout->plane_stride, error);
}

tb_tensor *tb_layout_cache_build(const TbLayoutCache *cache, uint32_t id,
                                 tb_buffer *buffer, GError **error) {
  if (id == 0 || id > cache->limit || !cache->entries[id - 1].present) {
    g_set_error(error, TB_TENSOR_ERROR, TB_ERR_PROTOCOL,
                "a ring record names layout id %u, which this side does not "
                "hold (ids 1 to %u)",
                id, cache->limit);
    return NULL;
  }
  const CachedLayout *layout = &cache->entries[id - 1];
  GError *wrong = NULL;
  /* Checks that the layout lies inside what this side maps of the buffer,
   * which need not be the one the layout came with. */
  g_autoptr(tb_tensor) tensor = NULL;
  if (layout->image)
    tensor = build_image(layout, buffer, &wrong);
  else if (layout->offset < buffer->fd_offset)
    g_set_error(&wrong, TB_TENSOR_ERROR, TB_ERR_OUT_OF_RANGE,
                "it begins at byte %" G_GUINT64_FORMAT
                " of the file, before the %" G_GUINT64_FORMAT
                " this side maps from",
                layout->offset, buffer->fd_offset);
  else
    tensor = tb_tensor_view(buffer, layout->offset - buffer->fd_offset,
                            layout->dtype, layout->ndim, layout->shape,
                            layout->strides, &wrong);
  const TbQuantization *q = &layout->quantization;
  if (tensor != NULL && q->count > 0)
    tb_tensor_quantize(tensor, q->axis, q->count, q->scales, q->zero_points,
                       &wrong);
  if (wrong != NULL) {
    g_set_error(error, TB_TENSOR_ERROR, TB_ERR_PROTOCOL,
                "a ring record puts layout %u on a buffer that cannot hold "
                "it: %s",
                id, wrong->message);
    g_error_free(wrong);
    return NULL;
  }
  tensor->name = g_strdup(layout->name);
  return g_steal_pointer(&tensor);
}
