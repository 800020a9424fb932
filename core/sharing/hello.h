/* The hello: the first message each side of a channel sends, at connect.
 *
 * A little-endian binary layout (not a GVariant, so that it can grow
 * without breaking older peers):
 *
 *    0  u32  magic "TBHL"
 *    4  u8   kind 'H' (every message has its kind at byte 4)
 *    5  3    reserved: written zero, ignored when read
 *    8  u32  lowest protocol version this side speaks
 *   12  u32  highest protocol version this side speaks
 *   16  u32  capabilities (bits; a bit this side does not know is ignored)
 *   20  u32  buffers of the peer's this side keeps cached (0: no limit)
 *   24  u64  bytes of the peer's this side keeps mapped (0: no limit)
 *   32  ...  extension area up to the end of the message: records of
 *            (u16 tag, u16 length, `length` bytes). A reader skips the
 *            tags it does not know; the records must tile the area exactly.
 *
 * Extension tags:
 *    1  u32  layouts of the peer's this side keeps cached (wire version 3's
 *            layout ids: the sender numbers them 1..this and never names
 *            more; 0 or absent: none, every tensor carries its layout)
 *
 * Fields added later go in the extension area, never in the fixed part, so
 * every release reads every later release's hello. Both sides then speak
 * the highest version both speak (tb_hello_agree). */
#ifndef TB_HELLO_H
#define TB_HELLO_H

#include "core.h"

#define TB_HELLO_MAGIC 0x4c484254u /* "TBHL" read as a little-endian u32 */
#define TB_HELLO_KIND 'H'
#define TB_HELLO_FIXED_BYTES 32u
#define TB_HELLO_TAG_MAX_LAYOUTS 1u
/* Most bytes tb_hello_write writes: the fixed part and each known tag. */
#define TB_HELLO_WRITE_BYTES (TB_HELLO_FIXED_BYTES + 8u)
/* Largest hello accepted, extensions included. */
#define TB_HELLO_MAX_BYTES 4096u

typedef struct TbHello {
  uint32_t min_version;
  uint32_t max_version;
  uint32_t capabilities;
  uint32_t max_buffers; /* 0: no limit */
  uint64_t max_bytes;   /* 0: no limit */
  uint32_t max_layouts; /* TB_HELLO_TAG_MAX_LAYOUTS; 0: none */
  /* Reading only: extension records skipped as unknown. */
  uint32_t skipped_extensions;
} TbHello;

/* Writes `hello` (its fixed part, and max_layouts as an extension when it
 * is not 0) into `out` and gives the size. */
size_t tb_hello_write(const TbHello *hello, uint8_t out[TB_HELLO_WRITE_BYTES]);

/* Reads a peer's hello: the bytes are copied out before anything is checked
 * (they may lie in memory the peer writes). FALSE with TB_ERR_PROTOCOL if
 * it is malformed: wrong size, magic or kind, an empty or reversed version
 * range, extension records that do not tile the area. */
gboolean tb_hello_parse(const uint8_t *bytes, size_t length, TbHello *hello,
                        GError **error);

/* The highest version both sides speak; FALSE with TB_ERR_PROTOCOL if the
 * ranges do not overlap. */
gboolean tb_hello_agree(const TbHello *ours, const TbHello *theirs,
                        uint32_t *version, GError **error);

#endif
