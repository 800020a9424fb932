/* Tensor descriptions and channel messages on the wire (see descriptor.h).
 * Builders use the typed constructors, never format strings, and parsers
 * read children by position: both run on every handoff. */
#include "sharing/descriptor.h"
#include "memory/backend_cuda.h"
#include "memory/cuda_driver.h"

#include <string.h>
#include <unistd.h>

/* The messages' fields. Changing one changes the protocol: add a version
 * (descriptor.h says how). The tensor message's buffer entries are
 * (i fd index, t id), and from version 3 on (i fd index, t id, y memory,
 * u device, t bytes). */
#define TB_WIRE_TENSOR_FIELDS(ENTRY)                                           \
  "uya" ENTRY "utaxaxbmsm(xadax)m(uuua(utt))tat"
#define TB_WIRE_ENTRY "(it)"
#define TB_WIRE_ENTRY_KINDS "(ityut)"
#define TB_WIRE_FENCE_FIELDS "uy"
#define TB_WIRE_RELEASE_FIELDS "uyt"
#define TB_WIRE_DOORBELL_FIELDS "uy"
#define TB_WIRE_ACK_FIELDS "uyta(ttt)" /* version 3 on */
/* Version 2 appends an extension list to every message: (q tag, ay value)
 * pairs that a reader skips when it does not know the tag (descriptor.h
 * lists the tags). So a field can be added without a new version. */
#define TB_WIRE_EXTENSIONS "a(qay)"
#define TB_WIRE_VERSION_EXTENSIONS 2u

/* Positions of the tensor message's fields. */
enum {
  FIELD_BUFFERS = 2, /* a(it): (fd index or -1 = cached, sender's buffer id) */
  FIELD_DTYPE,
  FIELD_OFFSET,
  FIELD_SHAPE,
  FIELD_STRIDES,
  FIELD_READ_ONLY,
  FIELD_NAME,  /* ms */
  FIELD_QUANT, /* m(xadax): axis, scales, zero points */
  FIELD_IMAGE, /* m(uuua(utt)): format, width, height, planes (buffer index,
                  offset, stride) */
  FIELD_LEASE,
  FIELD_FORGET,
  FIELD_COUNT
};

/* The release message's lease field. */
#define FIELD_RELEASE_LEASE 2

/* Every message's first two fields: (u version, y kind). */
static void set_header(GVariant **fields, uint32_t version, TbWireKind kind) {
  fields[0] = g_variant_new_uint32(version);
  fields[1] = g_variant_new_byte((guchar)kind);
}

/* The message of `n` fields, with the extension list its version has:
 * `extension` (NULL: none) is its only record. `fields` has room for
 * n + 1. */
/* The message of `fields` with its extension list (version 2 on; the
 * floating `extensions` are taken either way, dropped before). */
static GVariant *message_with(uint32_t version, GVariant **fields, size_t n,
                              GVariant **extensions, size_t nextensions) {
  if (version >= TB_WIRE_VERSION_EXTENSIONS) {
    fields[n++] = g_variant_new_array(G_VARIANT_TYPE("(qay)"), extensions,
                                      nextensions);
  } else {
    for (size_t i = 0; i < nextensions; i++)
      g_variant_unref(g_variant_ref_sink(extensions[i]));
  }
  return g_variant_new_tuple(fields, n);
}

static GVariant *message_of(uint32_t version, GVariant **fields, size_t n) {
  return message_with(version, fields, n, NULL, 0);
}

/* An extension record of `size` bytes (a value, little-endian). */
static GVariant *extension(uint16_t tag, const void *bytes, size_t size) {
  GVariant *record[] = {
      g_variant_new_uint16(tag),
      g_variant_new_fixed_array(G_VARIANT_TYPE_BYTE, bytes, size, 1)};
  return g_variant_new_tuple(record, 2);
}

static GVariant *int64_array(const int64_t *values, size_t count) {
  return g_variant_new_fixed_array(G_VARIANT_TYPE_INT64, values, count,
                                   sizeof *values);
}

static GVariant *pair(GVariant *a, GVariant *b) {
  GVariant *fields[] = {a, b};
  return g_variant_new_tuple(fields, 2);
}

size_t tb_tensor_collect_buffers(const tb_tensor *tensor,
                                 tb_buffer *buffers[TB_WIRE_MAX_BUFFERS]) {
  size_t n = 0;
  buffers[n++] = tensor->buffer;
  const TbImage *image = tensor->image;
  for (size_t p = 0; image != NULL && p < image->nplanes; p++) {
    size_t i = 0;
    while (i < n && buffers[i] != image->planes[p].buffer)
      i++;
    if (i == n)
      buffers[n++] = image->planes[p].buffer;
  }
  return n;
}

/* ---- windows: what a receiver maps of each buffer ------------------------ */

/* A description's layout as it travels: offsets from the start of the
 * buffers' files; planes name their buffer by its index in the message. */
typedef struct TbWireLayout {
  tb_dtype dtype;
  uint64_t offset;
  size_t ndim;
  int64_t shape[TB_MAX_DIMS], strides[TB_MAX_DIMS];
  gboolean image;
  tb_pixel_format format;
  uint32_t width, height;
  size_t nplanes;
  uint32_t plane_buffer[TB_IMAGE_MAX_PLANES];
  uint64_t plane_offset[TB_IMAGE_MAX_PLANES];
  uint64_t plane_stride[TB_IMAGE_MAX_PLANES];
} TbWireLayout;

static uint64_t page_size(void) { return (uint64_t)sysconf(_SC_PAGESIZE); }

gboolean tb_wire_window_covers(TbWireWindow outer, TbWireWindow inner) {
  /* Subtractions only: a peer's window may be anything. */
  return inner.length == 0 ||
         (inner.offset >= outer.offset && inner.length <= outer.length &&
          inner.offset - outer.offset <= outer.length - inner.length);
}

static gboolean is_cuda_memory(tb_memory memory) {
  return memory == TB_MEMORY_CUDA || memory == TB_MEMORY_CUDA_HOST;
}

/* The window of a whole buffer of `size` bytes: how CUDA and CUDA_HOST
 * memory is imported (the driver maps all of it). */
static TbWireWindow whole_window(uint64_t size) {
  uint64_t page = page_size();
  return (TbWireWindow){0, size > G_MAXUINT64 - page
                               ? G_MAXUINT64 / page * page
                               : (size + page - 1) / page * page};
}

TbWireWindow tb_wire_window_of(const tb_buffer *buffer) {
  TbWireWindow window = whole_window(buffer->size);
  window.offset = buffer->fd_offset;
  return window;
}

/* Widens buffer `b`'s byte range [lo[b], hi[b]) (empty while lo > hi) to
 * [start, end). */
static void reach(uint64_t *lo, uint64_t *hi, uint32_t b, uint64_t start,
                  uint64_t end) {
  lo[b] = MIN(lo[b], start);
  hi[b] = MAX(hi[b], end);
}

/* The pages of each of `nbuffers` buffers that `layout` reaches. FALSE for
 * image planes that an image refuses (with its error). */
static gboolean layout_windows(const TbWireLayout *layout, size_t nbuffers,
                               TbWireWindow *windows, GError **error) {
  uint64_t lo[TB_WIRE_MAX_BUFFERS], hi[TB_WIRE_MAX_BUFFERS];
  for (size_t b = 0; b < nbuffers; b++) {
    lo[b] = G_MAXUINT64;
    hi[b] = 0;
  }
  /* The elements' bytes. A shape or extent the tensor refuses (its own
   * checks say why, with their status) reaches nothing. */
  gboolean empty = FALSE, bad = layout->offset > (uint64_t)INT64_MAX;
  for (size_t i = 0; i < layout->ndim; i++) {
    empty |= layout->shape[i] == 0;
    bad |= layout->shape[i] < 0;
  }
  int64_t first = 0, last = 0;
  if (!empty && !bad)
    bad = !tb_layout_extent(tb_dtype_size(layout->dtype), layout->ndim,
                            layout->shape, layout->strides, &first, &last) ||
          /* negated unsigned: first may be INT64_MIN */
          (first < 0 && 0 - (uint64_t)first > layout->offset) ||
          last > INT64_MAX - (int64_t)layout->offset;
  if (!bad)
    reach(lo, hi, 0, layout->offset + first, layout->offset + last);
  for (size_t p = 0; layout->image && p < layout->nplanes; p++) {
    uint64_t end;
    if (layout->plane_buffer[p] >= nbuffers) {
      g_set_error(error, TB_TENSOR_ERROR, TB_ERR_PROTOCOL,
                  "image plane %zu names buffer %u of %zu", p,
                  layout->plane_buffer[p], nbuffers);
      return FALSE;
    }
    if (!tb_image_plane_end(layout->format, layout->dtype, layout->width,
                            layout->height, p, layout->plane_offset[p],
                            layout->plane_stride[p], &end, error))
      return FALSE;
    reach(lo, hi, layout->plane_buffer[p], layout->plane_offset[p], end);
  }
  uint64_t page = page_size();
  for (size_t b = 0; b < nbuffers; b++) {
    uint64_t start = lo[b] <= hi[b] ? lo[b] / page * page : 0;
    uint64_t end = lo[b] <= hi[b] ? (hi[b] + page - 1) / page * page : 0;
    windows[b] = (TbWireWindow){start, end - start};
  }
  return TRUE;
}

void tb_wire_tensor_windows(uint32_t version, const tb_tensor *t,
                            tb_buffer *const *buffers, size_t nbuffers,
                            TbWireWindow *windows) {
  TbWireLayout layout = {.dtype = t->dtype,
                         .offset = t->offset + t->buffer->fd_offset,
                         .ndim = t->ndim,
                         .image = t->image != NULL};
  memcpy(layout.shape, t->shape, t->ndim * sizeof *t->shape);
  memcpy(layout.strides, t->strides, t->ndim * sizeof *t->strides);
  if (t->image != NULL) {
    layout.format = t->image->format;
    layout.width = t->image->width;
    layout.height = t->image->height;
    layout.nplanes = t->image->nplanes;
    for (size_t p = 0; p < t->image->nplanes; p++) {
      const TbImagePlane *plane = &t->image->planes[p];
      uint32_t index = 0;
      while (index < nbuffers && buffers[index] != plane->buffer)
        index++;
      layout.plane_buffer[p] = index;
      layout.plane_offset[p] = plane->offset + plane->buffer->fd_offset;
      layout.plane_stride[p] = plane->stride;
    }
  }
  /* A tensor's own layout is one its buffers hold: nothing to refuse. */
  gboolean valid = layout_windows(&layout, nbuffers, windows, NULL);
  g_assert(valid);
  /* As the receiver maps them: a buffer entry that says it is CUDA or
   * CUDA_HOST memory, whole. */
  for (size_t i = 0; i < nbuffers && version >= TB_WIRE_VERSION_KINDS; i++)
    if (is_cuda_memory(tb_buffer_memory(buffers[i])))
      windows[i] = whole_window(buffers[i]->size);
}

static GVariant *image_field(const TbImage *image, tb_buffer *const *buffers,
                             size_t nbuffers) {
  GVariant *planes[TB_IMAGE_MAX_PLANES];
  for (size_t p = 0; p < image->nplanes; p++) {
    uint32_t index = 0;
    while (index < nbuffers && buffers[index] != image->planes[p].buffer)
      index++;
    GVariant *plane[] = {
        g_variant_new_uint32(index),
        g_variant_new_uint64(image->planes[p].offset +
                             image->planes[p].buffer->fd_offset),
        g_variant_new_uint64(image->planes[p].stride)};
    planes[p] = g_variant_new_tuple(plane, 3);
  }
  GVariant *fields[] = {
      g_variant_new_uint32(image->format), g_variant_new_uint32(image->width),
      g_variant_new_uint32(image->height),
      g_variant_new_array(G_VARIANT_TYPE("(utt)"), planes, image->nplanes)};
  return g_variant_new_tuple(fields, G_N_ELEMENTS(fields));
}

uint32_t tb_wire_export_version(tb_buffer *const *buffers, size_t nbuffers) {
  for (size_t i = 0; i < nbuffers; i++)
    if (is_cuda_memory(tb_buffer_memory(buffers[i])))
      return TB_WIRE_VERSION_KINDS;
  return TB_WIRE_VERSION_MIN;
}

gboolean tb_wire_check_kinds(uint32_t version, tb_buffer *const *buffers,
                             size_t nbuffers, GError **error) {
  for (size_t i = 0; i < nbuffers && version < TB_WIRE_VERSION_KINDS; i++) {
    if (tb_buffer_memory(buffers[i]) == TB_MEMORY_CUDA) {
      g_set_error(error, TB_TENSOR_ERROR, TB_ERR_UNSUPPORTED,
                  "the peer speaks protocol version %u; cuda memory needs "
                  "version %u (a newer tensorbuf on the other side)",
                  version, TB_WIRE_VERSION_KINDS);
      return FALSE;
    }
  }
  return TRUE;
}

/* One buffer entry of a tensor message of `version`. */
static GVariant *buffer_entry(uint32_t version, const tb_buffer *buffer,
                              int32_t fd_index) {
  if (version < TB_WIRE_VERSION_KINDS)
    return pair(g_variant_new_int32(fd_index),
                g_variant_new_uint64(buffer->id));
  tb_memory memory = tb_buffer_memory(buffer);
  GVariant *fields[] = {
      g_variant_new_int32(fd_index), g_variant_new_uint64(buffer->id),
      g_variant_new_byte((guchar)memory),
      g_variant_new_uint32(is_cuda_memory(memory) ? buffer->cuda_device : 0),
      g_variant_new_uint64(buffer->fd_offset + buffer->size)};
  return g_variant_new_tuple(fields, G_N_ELEMENTS(fields));
}

GVariant *tb_wire_tensor(uint32_t version, const tb_tensor *t,
                         tb_buffer *const *buffers, const int32_t *fd_index,
                         size_t nbuffers, gboolean read_only, uint64_t lease,
                         const uint64_t *forget, size_t nforget,
                         uint64_t import_serial, uint32_t layout_id) {
  GVariant *fields[FIELD_COUNT + 1];
  set_header(fields, version, TB_WIRE_TENSOR);
  GVariant *entries[TB_WIRE_MAX_BUFFERS];
  for (size_t i = 0; i < nbuffers; i++)
    entries[i] = buffer_entry(version, buffers[i], fd_index[i]);
  fields[FIELD_BUFFERS] = g_variant_new_array(
      G_VARIANT_TYPE(version < TB_WIRE_VERSION_KINDS ? TB_WIRE_ENTRY
                                                     : TB_WIRE_ENTRY_KINDS),
      entries, nbuffers);
  fields[FIELD_DTYPE] = g_variant_new_uint32(t->dtype);
  fields[FIELD_OFFSET] = g_variant_new_uint64(t->offset + t->buffer->fd_offset);
  fields[FIELD_SHAPE] = int64_array(t->shape, t->ndim);
  fields[FIELD_STRIDES] = int64_array(t->strides, t->ndim);
  fields[FIELD_READ_ONLY] = g_variant_new_boolean(read_only);
  fields[FIELD_NAME] = g_variant_new_maybe(
      G_VARIANT_TYPE_STRING,
      t->name != NULL ? g_variant_new_string(t->name) : NULL);
  const TbQuantization *q = t->quantization;
  GVariant *quant = NULL;
  if (q != NULL) {
    GVariant *parts[] = {g_variant_new_int64(q->axis),
                         g_variant_new_fixed_array(G_VARIANT_TYPE_DOUBLE,
                                                   q->scales, q->count,
                                                   sizeof(double)),
                         int64_array(q->zero_points, q->count)};
    quant = g_variant_new_tuple(parts, G_N_ELEMENTS(parts));
  }
  fields[FIELD_QUANT] = g_variant_new_maybe(G_VARIANT_TYPE("(xadax)"), quant);
  fields[FIELD_IMAGE] = g_variant_new_maybe(
      G_VARIANT_TYPE("(uuua(utt))"),
      t->image != NULL ? image_field(t->image, buffers, nbuffers) : NULL);
  fields[FIELD_LEASE] = g_variant_new_uint64(lease);
  fields[FIELD_FORGET] = g_variant_new_fixed_array(
      G_VARIANT_TYPE_UINT64, forget, nforget, sizeof *forget);
  /* Built in one go: a message rebuilt to add an entry costs the
   * producer of a buffer's first trip several microseconds. */
  GVariant *extensions[2];
  size_t nextensions = 0;
  uint64_t serial_le = GUINT64_TO_LE(import_serial);
  uint32_t layout_le = GUINT32_TO_LE(layout_id);
  if (version >= TB_WIRE_VERSION_ACKS && import_serial != 0)
    extensions[nextensions++] =
        extension(TB_WIRE_TAG_IMPORT_SERIAL, &serial_le, sizeof serial_le);
  if (layout_id != 0)
    extensions[nextensions++] =
        extension(TB_WIRE_TAG_LAYOUT_ID, &layout_le, sizeof layout_le);
  return message_with(version, fields, FIELD_COUNT, extensions, nextensions);
}

GVariant *tb_wire_fence(uint32_t version) {
  GVariant *fields[3];
  set_header(fields, version, TB_WIRE_FENCE);
  return message_of(version, fields, 2);
}

GVariant *tb_wire_doorbell(uint32_t version) {
  GVariant *fields[3];
  set_header(fields, version, TB_WIRE_DOORBELL);
  return message_of(version, fields, 2);
}

gboolean tb_wire_find_extension(GVariant *message, uint16_t tag, void *value,
                                size_t size) {
  g_autoptr(GVariant) version = g_variant_get_child_value(message, 0);
  if (g_variant_get_uint32(version) < TB_WIRE_VERSION_EXTENSIONS)
    return FALSE;
  size_t n = g_variant_n_children(message);
  g_autoptr(GVariant) list = g_variant_get_child_value(message, n - 1);
  for (size_t i = 0; i < g_variant_n_children(list); i++) {
    g_autoptr(GVariant) entry = g_variant_get_child_value(list, i);
    g_autoptr(GVariant) key = g_variant_get_child_value(entry, 0);
    if (g_variant_get_uint16(key) != tag)
      continue;
    g_autoptr(GVariant) bytes = g_variant_get_child_value(entry, 1);
    gsize length;
    const void *data = g_variant_get_fixed_array(bytes, &length, 1);
    if (length != size)
      return FALSE;
    memcpy(value, data, size);
    return TRUE;
  }
  return FALSE;
}

GVariant *tb_wire_release(uint32_t version, uint64_t lease) {
  GVariant *fields[4];
  set_header(fields, version, TB_WIRE_RELEASE);
  fields[FIELD_RELEASE_LEASE] = g_variant_new_uint64(lease);
  return message_of(version, fields, 3);
}

GVariant *tb_wire_ack(uint32_t version, uint64_t serial, const TbWireAck *acks,
                      size_t n) {
  GVariant *entries[TB_WIRE_MAX_BUFFERS];
  g_assert(n <= TB_WIRE_MAX_BUFFERS && version >= TB_WIRE_VERSION_ACKS);
  for (size_t i = 0; i < n; i++) {
    GVariant *entry[] = {g_variant_new_uint64(acks[i].id),
                         g_variant_new_uint64(acks[i].window.offset),
                         g_variant_new_uint64(acks[i].window.length)};
    entries[i] = g_variant_new_tuple(entry, 3);
  }
  GVariant *fields[5];
  set_header(fields, version, TB_WIRE_ACK);
  fields[2] = g_variant_new_uint64(serial);
  fields[3] = g_variant_new_array(G_VARIANT_TYPE("(ttt)"), entries, n);
  return message_of(version, fields, 4);
}

gboolean tb_wire_ack_read(GVariant *message, uint64_t *serial,
                          TbWireAck acks[TB_WIRE_MAX_BUFFERS], size_t *n) {
  g_autoptr(GVariant) serial_value = g_variant_get_child_value(message, 2);
  g_autoptr(GVariant) list = g_variant_get_child_value(message, 3);
  gsize count;
  const TbWireAck *entries =
      g_variant_get_fixed_array(list, &count, sizeof *entries);
  if (count > TB_WIRE_MAX_BUFFERS)
    return FALSE;
  G_STATIC_ASSERT(sizeof(TbWireAck) == 24); /* (ttt) in normal form */
  memcpy(acks, entries, count * sizeof *entries);
  *serial = g_variant_get_uint64(serial_value);
  *n = count;
  return TRUE;
}

gboolean tb_wire_check_size(GVariant *message, GError **error) {
  gsize size = g_variant_get_size(message);
  if (size <= TB_WIRE_MAX_BYTES)
    return TRUE;
  g_set_error(error, TB_TENSOR_ERROR, TB_ERR_OUT_OF_RANGE,
              "the description takes %zu bytes; a receiver accepts at most %u "
              "(is the tensor's name that long?)",
              (size_t)size, TB_WIRE_MAX_BYTES);
  return FALSE;
}

GVariant *tb_wire_open(const uint8_t *bytes, size_t length, uint32_t expected,
                       TbWireKind *kind, GError **error) {
  /* (u version, y kind) are at fixed offsets 0 and 4 of every message. */
  uint32_t version = 0;
  if (length >= 5)
    memcpy(&version, bytes, sizeof version);
  version = GUINT32_FROM_LE(version);
  gboolean known = expected != 0 ? version == expected
                                 : version >= TB_WIRE_VERSION_MIN &&
                                       version <= TB_WIRE_VERSION_MAX;
  if (length < 5 || !known) {
    if (expected != 0)
      g_set_error(error, TB_TENSOR_ERROR, TB_ERR_PROTOCOL,
                  "a %zu-byte message of version %u; this channel speaks "
                  "version %u",
                  length, version, expected);
    else
      g_set_error(error, TB_TENSOR_ERROR, TB_ERR_PROTOCOL,
                  "a %zu-byte message of version %u; this library speaks "
                  "versions %u to %u",
                  length, version, TB_WIRE_VERSION_MIN, TB_WIRE_VERSION_MAX);
    return NULL;
  }
  /* The type by kind and version (1, 2 with extensions, 3 with kinds). */
#define TB_WIRE_TYPES(FIELDS, FIELDS_KINDS)                                    \
  {                                                                            \
    "(" FIELDS ")", "(" FIELDS TB_WIRE_EXTENSIONS ")",                         \
        "(" FIELDS_KINDS TB_WIRE_EXTENSIONS ")"                                \
  }
  static const char *const tensor_types[] =
      TB_WIRE_TYPES(TB_WIRE_TENSOR_FIELDS(TB_WIRE_ENTRY),
                    TB_WIRE_TENSOR_FIELDS(TB_WIRE_ENTRY_KINDS)),
                           *const fence_types[] = TB_WIRE_TYPES(
                               TB_WIRE_FENCE_FIELDS, TB_WIRE_FENCE_FIELDS),
                           *const release_types[] = TB_WIRE_TYPES(
                               TB_WIRE_RELEASE_FIELDS, TB_WIRE_RELEASE_FIELDS),
                           *const ack_types[] = TB_WIRE_TYPES(
                               TB_WIRE_ACK_FIELDS, TB_WIRE_ACK_FIELDS),
                           *const doorbell_types[] =
                               TB_WIRE_TYPES(TB_WIRE_DOORBELL_FIELDS,
                                             TB_WIRE_DOORBELL_FIELDS);
#undef TB_WIRE_TYPES
  G_STATIC_ASSERT(G_N_ELEMENTS(tensor_types) == TB_WIRE_VERSION_MAX);
  size_t at = version - 1;
  const char *type;
  switch (bytes[4]) {
  case TB_WIRE_TENSOR:
    type = tensor_types[at];
    break;
  case TB_WIRE_FENCE:
    type = fence_types[at];
    break;
  case TB_WIRE_RELEASE:
    type = release_types[at];
    break;
  case TB_WIRE_DOORBELL:
    if (version < TB_WIRE_VERSION_RING) {
      g_set_error(error, TB_TENSOR_ERROR, TB_ERR_PROTOCOL,
                  "a doorbell message in version %u, which has no rings",
                  version);
      return NULL;
    }
    type = doorbell_types[at];
    break;
  case TB_WIRE_ACK:
    if (version >= TB_WIRE_VERSION_ACKS) {
      type = ack_types[at];
      break;
    }
    G_GNUC_FALLTHROUGH;
  default:
    g_set_error(error, TB_TENSOR_ERROR, TB_ERR_PROTOCOL,
                "message kind 0x%02x is not one this library knows", bytes[4]);
    return NULL;
  }
  g_autoptr(GBytes) data = g_bytes_new(bytes, length);
  g_autoptr(GVariant) message = g_variant_ref_sink(
      g_variant_new_from_bytes(G_VARIANT_TYPE(type), data, FALSE));
  if (!g_variant_is_normal_form(message)) {
    g_set_error(error, TB_TENSOR_ERROR, TB_ERR_PROTOCOL,
                "a %zu-byte '%c' message is not a well-formed %s", length,
                bytes[4], type);
    return NULL;
  }
  *kind = (TbWireKind)bytes[4];
  return g_steal_pointer(&message);
}

uint64_t tb_wire_lease(GVariant *message) {
  g_autoptr(GVariant) kind = g_variant_get_child_value(message, 1);
  gsize field = g_variant_get_byte(kind) == TB_WIRE_TENSOR
                    ? FIELD_LEASE
                    : FIELD_RELEASE_LEASE;
  g_autoptr(GVariant) lease = g_variant_get_child_value(message, field);
  return g_variant_get_uint64(lease);
}

const uint64_t *tb_wire_forget(GVariant *message, size_t *count) {
  g_autoptr(GVariant) forget = g_variant_get_child_value(message, FIELD_FORGET);
  gsize n;
  /* The data belongs to `message`, which outlives this child. */
  const uint64_t *ids = g_variant_get_fixed_array(forget, &n, sizeof *ids);
  *count = n;
  return ids;
}

uint64_t tb_wire_import_serial(GVariant *message) {
  g_autoptr(GVariant) kind = g_variant_get_child_value(message, 1);
  g_autoptr(GVariant) version = g_variant_get_child_value(message, 0);
  if (g_variant_get_uint32(version) < TB_WIRE_VERSION_ACKS ||
      g_variant_get_byte(kind) != TB_WIRE_TENSOR)
    return 0;
  g_autoptr(GVariant) extensions =
      g_variant_get_child_value(message, FIELD_COUNT);
  for (gsize i = 0; i < g_variant_n_children(extensions); i++) {
    g_autoptr(GVariant) record = g_variant_get_child_value(extensions, i);
    g_autoptr(GVariant) tag = g_variant_get_child_value(record, 0);
    g_autoptr(GVariant) value = g_variant_get_child_value(record, 1);
    gsize length;
    const uint8_t *bytes = g_variant_get_fixed_array(value, &length, 1);
    if (g_variant_get_uint16(tag) == TB_WIRE_TAG_IMPORT_SERIAL &&
        length == sizeof(uint64_t)) {
      uint64_t serial;
      memcpy(&serial, bytes, sizeof serial);
      return GUINT64_FROM_LE(serial);
    }
  }
  return 0;
}

void tb_wire_imported_clear(TbWireImported *imported, size_t *nimported) {
  for (size_t i = 0; i < *nimported; i++)
    tb_buffer_unref(imported[i].buffer);
  *nimported = 0;
}

/* ---- parsing a tensor message ---------------------------------------------
 * Each helper reads one field; the message's type is already checked, so
 * only values need checking. */

static GVariant *field(GVariant *message, gsize index) {
  return g_variant_get_child_value(message, index);
}

static gboolean read_dims(GVariant *message, gsize index, const char *what,
                          int64_t *values, size_t *count, GError **error) {
  g_autoptr(GVariant) array = field(message, index);
  gsize n;
  const int64_t *elements =
      g_variant_get_fixed_array(array, &n, sizeof(int64_t));
  if (n > TB_MAX_DIMS) {
    g_set_error(error, TB_TENSOR_ERROR, TB_ERR_PROTOCOL,
                "the description's %s has %zu entries; at most %d", what,
                (size_t)n, TB_MAX_DIMS);
    return FALSE;
  }
  if (n > 0)
    memcpy(values, elements, n * sizeof *values);
  *count = n;
  return TRUE;
}

/* A buffer entry as read from the message. Before version 3 it says no
 * kind (`typed` FALSE): the fd's kind decides. */
typedef struct WireEntry {
  int32_t fd_index;
  uint64_t id;
  gboolean typed;
  tb_memory memory;
  uint32_t device;
  uint64_t bytes;
} WireEntry;

static WireEntry read_entry(GVariant *list, size_t i) {
  g_autoptr(GVariant) entry = g_variant_get_child_value(list, i);
  GVariant *values[5] = {NULL};
  size_t n = g_variant_n_children(entry);
  for (size_t k = 0; k < n; k++)
    values[k] = g_variant_get_child_value(entry, k);
  WireEntry out = {.fd_index = g_variant_get_int32(values[0]),
                   .id = g_variant_get_uint64(values[1]),
                   .typed = n > 2};
  if (out.typed) {
    out.memory = (tb_memory)g_variant_get_byte(values[2]);
    out.device = g_variant_get_uint32(values[3]);
    out.bytes = g_variant_get_uint64(values[4]);
  }
  for (size_t k = 0; k < n; k++)
    g_variant_unref(values[k]);
  return out;
}

/* What a version-3 entry may say: a kind this library imports, device 0
 * for host memory, a device ordinal CUDA can take (an int) for CUDA kinds.
 * Whether that device exists is asked of the driver at import. */
static gboolean check_entry(const WireEntry *entry, size_t i, GError **error) {
  if (!entry->typed)
    return TRUE;
  switch (entry->memory) {
  case TB_MEMORY_SHM:
  case TB_MEMORY_DMA:
  case TB_MEMORY_FILE:
    if (entry->device == 0)
      return TRUE;
    g_set_error(error, TB_TENSOR_ERROR, TB_ERR_PROTOCOL,
                "buffer %zu is %s memory on device %u; host memory has no "
                "device",
                i, tb_memory_name(entry->memory), entry->device);
    return FALSE;
  case TB_MEMORY_CUDA:
  case TB_MEMORY_CUDA_HOST:
    if (entry->device <= G_MAXINT)
      return TRUE;
    g_set_error(error, TB_TENSOR_ERROR, TB_ERR_PROTOCOL,
                "buffer %zu is %s memory of device %u, which is no CUDA "
                "device ordinal",
                i, tb_memory_name(entry->memory), entry->device);
    return FALSE;
  default:
    g_set_error(error, TB_TENSOR_ERROR, TB_ERR_PROTOCOL,
                "buffer %zu is in memory kind %u, which this library does not "
                "import from a description",
                i, (unsigned)entry->memory);
    return FALSE;
  }
}

/* Refuses a buffer that is not of the kind its entry says. */
static gboolean check_kind(tb_buffer *buffer, const WireEntry *entry, size_t i,
                           GError **error) {
  tb_memory memory = tb_buffer_memory(buffer);
  if (!entry->typed || entry->memory == memory)
    return TRUE;
  g_set_error(error, TB_TENSOR_ERROR, TB_ERR_PROTOCOL,
              "buffer %zu is said to be %s memory but is %s", i,
              tb_memory_name(entry->memory), tb_memory_name(memory));
  return FALSE;
}

/* A CUDA or CUDA_HOST buffer over `fd`, on the entry's device: needs the
 * driver, and a device this machine has. */
static tb_buffer *import_cuda(int fd, const WireEntry *entry, size_t i,
                              GError **error) {
  int count = tb_cuda_device_count(error);
  if (count < 0) {
    g_prefix_error(error,
                   "buffer %zu is %s memory, which cannot be imported: ", i,
                   tb_memory_name(entry->memory));
    return NULL;
  }
  if (entry->device >= (uint32_t)count) {
    g_set_error(error, TB_TENSOR_ERROR, TB_ERR_PROTOCOL,
                "buffer %zu is %s memory of device %u; this machine has %d "
                "CUDA device%s",
                i, tb_memory_name(entry->memory), entry->device, count,
                count == 1 ? "" : "s");
    return NULL;
  }
  return tb_cuda_buffer_import(fd, entry->memory, entry->device, entry->bytes,
                               error);
}

/* Imports buffer `i`'s fd as the kind its entry says: of host memory only
 * `window`. */
static tb_buffer *import_entry(int fd, const WireEntry *entry,
                               TbWireWindow window, size_t i, GError **error) {
  if (is_cuda_memory(entry->memory))
    return import_cuda(fd, entry, i, error);
  /* Sizes are checked against what the description needs later. */
  g_autoptr(tb_buffer) buffer = tb_buffer_import_window(
      fd, window.offset, window.length, entry->bytes, error);
  if (buffer == NULL || !check_kind(buffer, entry, i, error))
    return NULL;
  return g_steal_pointer(&buffer);
}

/* Resolves the message's buffers: each named fd exactly once (imported,
 * unless the cache has the buffer already), the rest from the cache; each
 * maps the window of it that `layout` uses. Indices and windows are all
 * checked before any fd is imported. */
static gboolean resolve_buffers(GVariant *message, const TbWireLayout *layout,
                                const int *fds, size_t nfds,
                                TbWireBufferLookup lookup, void *cache,
                                tb_buffer **buffers, size_t *nbuffers,
                                TbWireImported *imported, size_t *nimported,
                                GError **error) {
  g_autoptr(GVariant) list = field(message, FIELD_BUFFERS);
  size_t n = g_variant_n_children(list);
  WireEntry entries[TB_WIRE_MAX_BUFFERS];
  gboolean used[TB_WIRE_MAX_BUFFERS] = {FALSE};
  size_t nused = 0;
  if (n == 0 || n > TB_WIRE_MAX_BUFFERS) {
    g_set_error(error, TB_TENSOR_ERROR, TB_ERR_PROTOCOL,
                "the description names %zu buffers; 1 to %d", n,
                TB_WIRE_MAX_BUFFERS);
    return FALSE;
  }
  /* Each buffer names at most one fd; this also keeps every index that
   * passes the check below inside `used`. */
  if (nfds > TB_WIRE_MAX_BUFFERS) {
    g_set_error(error, TB_TENSOR_ERROR, TB_ERR_PROTOCOL,
                "%zu fds came with the message; a description names at "
                "most %d",
                nfds, TB_WIRE_MAX_BUFFERS);
    return FALSE;
  }
  for (size_t i = 0; i < n; i++) {
    entries[i] = read_entry(list, i);
    int32_t index = entries[i].fd_index;
    if (index < -1 || index >= (int32_t)nfds || (index >= 0 && used[index])) {
      g_set_error(error, TB_TENSOR_ERROR, TB_ERR_PROTOCOL,
                  "buffer %zu names fd %d of the %zu that came", i, index,
                  nfds);
      return FALSE;
    }
    if (!check_entry(&entries[i], i, error))
      return FALSE;
    if (index >= 0) {
      used[index] = TRUE;
      nused++;
    }
  }
  if (nused != nfds) {
    g_set_error(error, TB_TENSOR_ERROR, TB_ERR_PROTOCOL,
                "%zu fds came with the message but it names %zu", nfds, nused);
    return FALSE;
  }
  TbWireWindow windows[TB_WIRE_MAX_BUFFERS];
  if (!layout_windows(layout, n, windows, error))
    return FALSE;
  for (size_t i = 0; i < n; i++) /* device memory is mapped whole */
    if (is_cuda_memory(entries[i].memory))
      windows[i] = whole_window(entries[i].bytes);
  g_autoptr(GVariant) read_only = field(message, FIELD_READ_ONLY);
  *nimported = 0;
  for (*nbuffers = 0; *nbuffers < n; (*nbuffers)++) {
    size_t i = *nbuffers;
    const WireEntry *entry = &entries[i];
    if (entry->fd_index >= 0) {
      gboolean cached =
          lookup != NULL &&
          (buffers[i] = lookup(cache, entry->id, windows[i], TRUE,
                               g_variant_get_boolean(read_only), NULL)) != NULL;
      if (cached && !check_kind(buffers[i], entry, i, NULL)) {
        g_clear_pointer(&buffers[i], tb_buffer_unref);
        cached = FALSE;
      }
      if (!cached)
        buffers[i] =
            import_entry(fds[entry->fd_index], entry, windows[i], i, error);
      if (buffers[i] != NULL)
        imported[(*nimported)++] =
            (TbWireImported){entry->id, tb_buffer_ref(buffers[i]), cached};
    } else if (lookup != NULL) {
      buffers[i] = lookup(cache, entry->id, windows[i], FALSE, FALSE, error);
      if (buffers[i] != NULL && !check_kind(buffers[i], entry, i, error))
        g_clear_pointer(&buffers[i], tb_buffer_unref);
    } else {
      buffers[i] = NULL;
      g_set_error(error, TB_TENSOR_ERROR, TB_ERR_PROTOCOL,
                  "the description refers to a cached buffer, but there is "
                  "no cache here");
    }
    if (buffers[i] == NULL)
      return FALSE;
  }
  return TRUE;
}

/* Reads the image field into `layout` (layout_windows checks the buffers
 * its planes name). */
static gboolean read_image(GVariant *image, TbWireLayout *layout,
                           GError **error) {
  g_autoptr(GVariant) format = g_variant_get_child_value(image, 0);
  g_autoptr(GVariant) width = g_variant_get_child_value(image, 1);
  g_autoptr(GVariant) height = g_variant_get_child_value(image, 2);
  g_autoptr(GVariant) planes = g_variant_get_child_value(image, 3);
  size_t nplanes = g_variant_n_children(planes);
  if (nplanes > TB_IMAGE_MAX_PLANES) {
    g_set_error(error, TB_TENSOR_ERROR, TB_ERR_PROTOCOL,
                "the image has %zu planes; at most %d", nplanes,
                TB_IMAGE_MAX_PLANES);
    return FALSE;
  }
  layout->image = TRUE;
  layout->format = (tb_pixel_format)g_variant_get_uint32(format);
  layout->width = g_variant_get_uint32(width);
  layout->height = g_variant_get_uint32(height);
  layout->nplanes = nplanes;
  for (size_t p = 0; p < nplanes; p++) {
    g_autoptr(GVariant) plane = g_variant_get_child_value(planes, p);
    g_autoptr(GVariant) index = g_variant_get_child_value(plane, 0);
    g_autoptr(GVariant) offset = g_variant_get_child_value(plane, 1);
    g_autoptr(GVariant) stride = g_variant_get_child_value(plane, 2);
    layout->plane_buffer[p] = g_variant_get_uint32(index);
    layout->plane_offset[p] = g_variant_get_uint64(offset);
    layout->plane_stride[p] = g_variant_get_uint64(stride);
  }
  return TRUE;
}

/* An offset in a buffer's file as an offset in the buffer (which maps a
 * window of it); FALSE with TB_ERR_OUT_OF_RANGE before the window. */
static gboolean in_buffer(const tb_buffer *buffer, uint64_t file_offset,
                          uint64_t *offset, GError **error) {
  if (file_offset < buffer->fd_offset) {
    g_set_error(error, TB_TENSOR_ERROR, TB_ERR_OUT_OF_RANGE,
                "byte %" G_GUINT64_FORMAT
                " of a buffer mapped from byte %" G_GUINT64_FORMAT,
                file_offset, buffer->fd_offset);
    return FALSE;
  }
  *offset = file_offset - buffer->fd_offset;
  return TRUE;
}

/* The image the layout describes, over the buffers: its tensor layout
 * follows from the planes. */
static tb_tensor *build_image(const TbWireLayout *layout, tb_buffer **buffers,
                              GError **error) {
  tb_buffer *plane_buffers[TB_IMAGE_MAX_PLANES];
  uint64_t offsets[TB_IMAGE_MAX_PLANES];
  for (size_t p = 0; p < layout->nplanes; p++) {
    plane_buffers[p] = buffers[layout->plane_buffer[p]];
    if (!in_buffer(plane_buffers[p], layout->plane_offset[p], &offsets[p],
                   error))
      return NULL;
  }
  return tb_image_from_buffers(layout->width, layout->height, layout->format,
                               layout->dtype, layout->nplanes, plane_buffers,
                               offsets, layout->plane_stride, error);
}

static gboolean same_layout(const tb_tensor *t, uint64_t offset, size_t ndim,
                            const int64_t *shape, const int64_t *strides) {
  return t->offset == offset && t->ndim == ndim &&
         memcmp(t->shape, shape, ndim * sizeof *shape) == 0 &&
         memcmp(t->strides, strides, ndim * sizeof *strides) == 0;
}

static gboolean parse_quantization(GVariant *message, tb_tensor *tensor,
                                   GError **error) {
  g_autoptr(GVariant) maybe = field(message, FIELD_QUANT);
  g_autoptr(GVariant) quant = g_variant_get_maybe(maybe);
  if (quant == NULL)
    return TRUE;
  g_autoptr(GVariant) axis = g_variant_get_child_value(quant, 0);
  g_autoptr(GVariant) scales = g_variant_get_child_value(quant, 1);
  g_autoptr(GVariant) zero_points = g_variant_get_child_value(quant, 2);
  gsize count, zero_count;
  const double *s = g_variant_get_fixed_array(scales, &count, sizeof(double));
  const int64_t *z =
      g_variant_get_fixed_array(zero_points, &zero_count, sizeof(int64_t));
  if (count == 0 || count != zero_count) {
    g_set_error(error, TB_TENSOR_ERROR, TB_ERR_PROTOCOL,
                "quantization has %zu scales and %zu zero points",
                (size_t)count, (size_t)zero_count);
    return FALSE;
  }
  /* tb_tensor_quantize range-checks everything against the tensor. */
  return tb_tensor_quantize(tensor, g_variant_get_int64(axis), count, s, z,
                            error);
}

tb_tensor *tb_wire_parse_tensor(GVariant *message, const int *fds, size_t nfds,
                                TbWireBufferLookup lookup, void *cache,
                                TbWireImported *imported, size_t *nimported,
                                GError **error) {
  TbWireLayout layout = {0};
  size_t nstrides;
  *nimported = 0;
  if (!read_dims(message, FIELD_SHAPE, "shape", layout.shape, &layout.ndim,
                 error) ||
      !read_dims(message, FIELD_STRIDES, "strides", layout.strides, &nstrides,
                 error))
    return NULL;
  if (nstrides != layout.ndim) {
    g_set_error(error, TB_TENSOR_ERROR, TB_ERR_PROTOCOL,
                "the description has %zu dims but %zu strides", layout.ndim,
                nstrides);
    return NULL;
  }
  g_autoptr(GVariant) dtype_value = field(message, FIELD_DTYPE);
  g_autoptr(GVariant) offset_value = field(message, FIELD_OFFSET);
  g_autoptr(GVariant) image_maybe = field(message, FIELD_IMAGE);
  g_autoptr(GVariant) image = g_variant_get_maybe(image_maybe);
  layout.dtype = (tb_dtype)g_variant_get_uint32(dtype_value);
  layout.offset = g_variant_get_uint64(offset_value);
  if (image != NULL && !read_image(image, &layout, error))
    return NULL;
  tb_buffer *buffers[TB_WIRE_MAX_BUFFERS];
  size_t nbuffers = 0;
  gboolean resolved =
      resolve_buffers(message, &layout, fds, nfds, lookup, cache, buffers,
                      &nbuffers, imported, nimported, error);
  g_autoptr(tb_tensor) tensor = NULL;
  uint64_t offset = 0;
  if (resolved)
    resolved = in_buffer(buffers[0], layout.offset, &offset, error);
  if (resolved && image != NULL) {
    tensor = build_image(&layout, buffers, error);
    if (tensor != NULL && !same_layout(tensor, offset, layout.ndim,
                                       layout.shape, layout.strides)) {
      g_set_error(error, TB_TENSOR_ERROR, TB_ERR_PROTOCOL,
                  "the description's shape and strides are not its image's");
      g_clear_pointer(&tensor, tb_tensor_unref);
    }
  } else if (resolved) {
    /* tb_tensor_view checks dtype, dims and that every element the strides
     * reach lies inside the buffer. */
    tensor = tb_tensor_view(buffers[0], offset, layout.dtype, layout.ndim,
                            layout.shape, layout.strides, error);
  }
  g_autoptr(GVariant) read_only = field(message, FIELD_READ_ONLY);
  for (size_t i = 0; i < *nimported && tensor != NULL; i++)
    if (g_variant_get_boolean(read_only) && !imported[i].cached)
      imported[i].buffer->flags |= TB_BUFFER_READ_ONLY; /* ours alone */
  for (size_t i = 0; i < nbuffers; i++)
    tb_buffer_unref(buffers[i]); /* the tensor holds what it needs */
  if (tensor == NULL || !parse_quantization(message, tensor, error)) {
    tb_wire_imported_clear(imported, nimported);
    return NULL;
  }
  g_autoptr(GVariant) name_maybe = field(message, FIELD_NAME);
  g_autoptr(GVariant) name = g_variant_get_maybe(name_maybe);
  if (name != NULL)
    tensor->name = g_variant_dup_string(name, NULL);
  return g_steal_pointer(&tensor);
}
