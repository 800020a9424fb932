/* The hello at connect (see hello.h). */
#include "sharing/hello.h"

#include <string.h>

static void put_u32(uint8_t *at, uint32_t value) {
  value = GUINT32_TO_LE(value);
  memcpy(at, &value, sizeof value);
}

static void put_u64(uint8_t *at, uint64_t value) {
  value = GUINT64_TO_LE(value);
  memcpy(at, &value, sizeof value);
}

static uint16_t get_u16(const uint8_t *at) {
  uint16_t value;
  memcpy(&value, at, sizeof value);
  return GUINT16_FROM_LE(value);
}

static uint32_t get_u32(const uint8_t *at) {
  uint32_t value;
  memcpy(&value, at, sizeof value);
  return GUINT32_FROM_LE(value);
}

static uint64_t get_u64(const uint8_t *at) {
  uint64_t value;
  memcpy(&value, at, sizeof value);
  return GUINT64_FROM_LE(value);
}

static void put_u16(uint8_t *at, uint16_t value) {
  value = GUINT16_TO_LE(value);
  memcpy(at, &value, sizeof value);
}

size_t tb_hello_write(const TbHello *hello, uint8_t out[TB_HELLO_WRITE_BYTES]) {
  memset(out, 0, TB_HELLO_WRITE_BYTES);
  put_u32(out, TB_HELLO_MAGIC);
  out[4] = TB_HELLO_KIND;
  put_u32(out + 8, hello->min_version);
  put_u32(out + 12, hello->max_version);
  put_u32(out + 16, hello->capabilities);
  put_u32(out + 20, hello->max_buffers);
  put_u64(out + 24, hello->max_bytes);
  if (hello->max_layouts == 0)
    return TB_HELLO_FIXED_BYTES;
  put_u16(out + TB_HELLO_FIXED_BYTES, TB_HELLO_TAG_MAX_LAYOUTS);
  put_u16(out + TB_HELLO_FIXED_BYTES + 2, 4);
  put_u32(out + TB_HELLO_FIXED_BYTES + 4, hello->max_layouts);
  return TB_HELLO_WRITE_BYTES;
}

static gboolean refuse(GError **error, const char *format, ...)
    G_GNUC_PRINTF(2, 3);

static gboolean refuse(GError **error, const char *format, ...) {
  va_list args;
  va_start(args, format);
  g_autofree char *what = g_strdup_vprintf(format, args);
  va_end(args);
  g_set_error(error, TB_TENSOR_ERROR, TB_ERR_PROTOCOL, "the peer's hello %s",
              what);
  return FALSE;
}

gboolean tb_hello_parse(const uint8_t *bytes, size_t length, TbHello *hello,
                        GError **error) {
  if (length < TB_HELLO_FIXED_BYTES || length > TB_HELLO_MAX_BYTES)
    return refuse(error, "has %zu bytes; %u to %u", length,
                  TB_HELLO_FIXED_BYTES, TB_HELLO_MAX_BYTES);
  uint8_t copy[TB_HELLO_MAX_BYTES]; /* checked here, never re-read there */
  memcpy(copy, bytes, length);
  if (get_u32(copy) != TB_HELLO_MAGIC || copy[4] != TB_HELLO_KIND)
    return refuse(error, "does not begin with \"TBHL\" 'H' (a peer that is "
                         "not tensorbuf, or one from before the hello)");
  TbHello h = {
      .min_version = get_u32(copy + 8),
      .max_version = get_u32(copy + 12),
      .capabilities = get_u32(copy + 16),
      .max_buffers = get_u32(copy + 20),
      .max_bytes = get_u64(copy + 24),
  };
  if (h.min_version == 0 || h.min_version > h.max_version)
    return refuse(error, "says it speaks versions %u to %u", h.min_version,
                  h.max_version);
  /* Each record must lie inside the message; unknown tags are skipped, and
   * a known tag of the wrong size is refused. */
  for (size_t at = TB_HELLO_FIXED_BYTES; at < length;) {
    if (length - at < 4)
      return refuse(error,
                    "ends inside an extension record's header, at "
                    "byte %zu of %zu",
                    at, length);
    size_t size = get_u16(copy + at + 2);
    if (size > length - at - 4)
      return refuse(error,
                    "has an extension record (tag %u) of %zu bytes "
                    "at byte %zu of %zu",
                    get_u16(copy + at), size, at, length);
    uint16_t tag = get_u16(copy + at);
    if (tag == TB_HELLO_TAG_MAX_LAYOUTS && size != 4)
      return refuse(error, "says how many layouts it caches in %zu bytes; 4",
                    size);
    if (tag == TB_HELLO_TAG_MAX_LAYOUTS)
      h.max_layouts = get_u32(copy + at + 4);
    else
      h.skipped_extensions++;
    at += 4 + size;
  }
  *hello = h;
  return TRUE;
}

gboolean tb_hello_agree(const TbHello *ours, const TbHello *theirs,
                        uint32_t *version, GError **error) {
  uint32_t high = MIN(ours->max_version, theirs->max_version);
  uint32_t low = MAX(ours->min_version, theirs->min_version);
  if (high < low) {
    g_set_error(error, TB_TENSOR_ERROR, TB_ERR_PROTOCOL,
                "the peer speaks protocol versions %u to %u; this library "
                "speaks %u to %u: no version in common",
                theirs->min_version, theirs->max_version, ours->min_version,
                ours->max_version);
    return FALSE;
  }
  *version = high;
  return TRUE;
}
