/* Wire descriptions of tensors and channel messages.
 *
 * Every message is a GVariant tuple in normal form whose first two fields
 * are (u version, y kind): fixed-size, so the kind can be read before the
 * whole message is typed. Fields are found by position, not by name: a
 * dictionary lookup walks the serialised data and made a tensor message cost
 * ~45 µs to parse (bench/bench_handoff), a tuple costs a few. What arrives
 * from a peer is untrusted: parsing checks normal form, the exact type, every
 * range, and the sizes against the fds, before anything is mapped. */
#ifndef TB_DESCRIPTOR_H
#define TB_DESCRIPTOR_H

#include "tensor/image.h"

/* Protocol versions this library speaks. Version policy: each side states
 * its range in the hello at connect (sharing/hello.h) and both speak the
 * highest version in both ranges; every message carries that version. A
 * new version is added when a message changes shape; a release keeps
 * speaking the older versions its peers may still speak, and drops one only
 * by raising TB_WIRE_VERSION_MIN (peers that speak nothing newer are then
 * refused at connect, with TB_ERR_PROTOCOL, instead of failing later).
 *
 *   1  the fields below.
 *   2  every message ends with an extension list a(qay): (tag, value)
 *      pairs, each skipped by a reader that does not know its tag. A field
 *      added later goes there (with its tag documented here), not into the
 *      tuple, and needs no new version; a peer that does not know it
 *      ignores it. Tags:
 *        1  TB_WIRE_TAG_IMPORT_SERIAL (version 3, below).
 *        2  u32 (little-endian) on a tensor message: the layout id under
 *           which the receiver caches this message's layout (version 3).
 *   3  - a buffer entry says its memory kind and where it lies:
 *      (i fd index, t id, y memory, u device, t bytes). `memory` is a
 *      tb_memory value: SHM, DMA or FILE (the fd must be of that kind;
 *      device 0), CUDA (a CUDA shareable fd, mapped on CUDA device
 *      `device`) or CUDA_HOST (a memfd, registered with CUDA device
 *      `device`); `bytes` is where the buffer ends in its file (its
 *      size, plus its fd offset for a window a receiver mapped), which the
 *      fd must hold (a CUDA fd does not tell its size: the receiver maps
 *      that many). Not an
 *      extension, which an older reader would skip and then import a CUDA
 *      fd as shared memory; a reader refuses a kind it does not know.
 *      Entries that name a cached buffer must name its kind.
 *      - imports are acknowledged (sharing/peer_cache.h): a tensor message
 *      that carries fds has extension TB_WIRE_TAG_IMPORT_SERIAL, and the
 *      receiver answers each one it imported with an ack message
 *      (u version, y 'A', t serial, a(ttt) (buffer id, offset and length
 *      of the window it maps, in pages), a(qay) extensions). A sender
 *      sends a buffer's fd until its import is acknowledged; with versions
 *      1 and 2 it sends the fd once.
 *      - the steady state goes through a shared-memory ring per direction
 *      (sharing/ring.h), whose memfd each side sends with its hello: a
 *      tensor whose buffer and layout the peer holds is one ring record
 *      (buffer id, lease, layout id); anything else is a tensor message on
 *      the socket announced by a ring record (TB_RING_FLAG_SOCKET), so
 *      tensors arrive in order. Releases go back as ring records. A 'D'
 *      message (doorbell) on the socket says a ring has work. Layout ids
 *      run from 1 to the receiver's hello limit (TB_HELLO_TAG_MAX_LAYOUTS);
 *      a message that names another is refused. */
#define TB_WIRE_VERSION_MIN 1u
#define TB_WIRE_VERSION_MAX 3u
/* The first version whose buffer entries say their memory kind. */
#define TB_WIRE_VERSION_KINDS 3u
/* The first version with acknowledgements. */
#define TB_WIRE_VERSION_ACKS 3u
/* The first version with rings and layout ids. */
#define TB_WIRE_VERSION_RING 3u
/* Extension tags (descriptor.h's version list says which messages have
 * them). TB_WIRE_TAG_IMPORT_SERIAL: u64 little-endian, the serial a tensor
 * message's acknowledgement names. TB_WIRE_TAG_LAYOUT_ID: u32
 * little-endian, the layout id a tensor message's layout is cached under. */
#define TB_WIRE_TAG_IMPORT_SERIAL 1u
#define TB_WIRE_TAG_LAYOUT_ID 2u
/* In every version, offsets in descriptions count from the start of the
 * buffer's file (a receiver maps only the pages a description uses of it:
 * TbWireWindow). */
/* The version of descriptions made for the caller's own transport
 * (tb_tensor_export), which has no hello: the oldest that can say every
 * buffer's kind. That is TB_WIRE_VERSION_MIN, which every release reads,
 * for host memory (the fd says what it is), and TB_WIRE_VERSION_KINDS as
 * soon as a buffer is CUDA or CUDA_HOST memory. */
uint32_t tb_wire_export_version(tb_buffer *const *buffers, size_t nbuffers);
/* Largest message accepted; a descriptor is a few hundred bytes. */
#define TB_WIRE_MAX_BYTES 65536u
/* Most buffers (and so fds) a tensor message names: one per image plane. */
#define TB_WIRE_MAX_BUFFERS TB_IMAGE_MAX_PLANES

typedef enum TbWireKind {
  TB_WIRE_TENSOR = 'T',
  TB_WIRE_FENCE = 'F',
  TB_WIRE_RELEASE = 'R',
  TB_WIRE_ACK = 'A',      /* version 3 on */
  TB_WIRE_DOORBELL = 'D', /* version 3: a ring has records */
} TbWireKind;

/* The distinct buffers a tensor's bytes live in: its own first, then those
 * of its image planes that differ. Gives the count. */
size_t tb_tensor_collect_buffers(const tb_tensor *tensor,
                                 tb_buffer *buffers[TB_WIRE_MAX_BUFFERS]);

/* A tensor message: `fd_index[i]` is the position of buffers[i]'s fd among
 * the message's fds, or -1 when the receiver has it cached. `lease` is 0 or
 * the token the receiver sends back in a release; `forget` lists buffer ids
 * the receiver drops from its cache before it reads the buffers;
 * `import_serial` (version 3 on; 0: none) is what its acknowledgement
 * names; `layout_id` (0: none) the id under which the receiver caches its
 * layout (extension TB_WIRE_TAG_LAYOUT_ID). Floating. */
GVariant *tb_wire_tensor(uint32_t version, const tb_tensor *tensor,
                         tb_buffer *const *buffers, const int32_t *fd_index,
                         size_t nbuffers, gboolean read_only, uint64_t lease,
                         const uint64_t *forget, size_t nforget,
                         uint64_t import_serial, uint32_t layout_id);
/* Refuses buffers that a message of `version` cannot describe: CUDA memory
 * before TB_WIRE_VERSION_KINDS (a CUDA_HOST buffer then goes as the memfd
 * it is, and arrives as SHM). TB_ERR_UNSUPPORTED naming the version. */
gboolean tb_wire_check_kinds(uint32_t version, tb_buffer *const *buffers,
                             size_t nbuffers, GError **error);
GVariant *tb_wire_fence(uint32_t version);
GVariant *tb_wire_release(uint32_t version, uint64_t lease);
GVariant *tb_wire_doorbell(uint32_t version);

/* The value of the first extension entry of `tag` in an opened message, if
 * it has exactly `size` bytes; FALSE otherwise (or before version 2). */
gboolean tb_wire_find_extension(GVariant *message, uint16_t tag, void *value,
                                size_t size);

/* A range of a buffer's file, in whole pages: what a receiver maps of a
 * buffer (and counts against its limits), so that a small tensor in a huge
 * file costs a page, not the file. */
typedef struct TbWireWindow {
  uint64_t offset; /* bytes from the file's start */
  uint64_t length; /* 0: nothing mapped */
} TbWireWindow;

/* Whether `outer` holds every byte of `inner`. */
gboolean tb_wire_window_covers(TbWireWindow outer, TbWireWindow inner);
/* The window a buffer maps: its bytes in its file, rounded up to pages. */
TbWireWindow tb_wire_window_of(const tb_buffer *buffer);
/* The windows a tensor message of `version` for `tensor` (its buffers as
 * tb_tensor_collect_buffers gives them) makes its receiver map: the pages
 * its elements and image planes reach in each buffer (CUDA and CUDA_HOST
 * memory whole, from the version on whose entries say so). */
void tb_wire_tensor_windows(uint32_t version, const tb_tensor *tensor,
                            tb_buffer *const *buffers, size_t nbuffers,
                            TbWireWindow *windows);

/* One buffer an ack message says was imported. */
typedef struct TbWireAck {
  uint64_t id;         /* the sender's buffer id */
  TbWireWindow window; /* what the receiver holds mapped of it */
} TbWireAck;

/* An ack message (version 3 on) for the tensor message of `serial`. */
GVariant *tb_wire_ack(uint32_t version, uint64_t serial, const TbWireAck *acks,
                      size_t n);
/* An opened ack message's serial and entries (at most TB_WIRE_MAX_BUFFERS,
 * as many as a tensor message names; FALSE for more). */
gboolean tb_wire_ack_read(GVariant *message, uint64_t *serial,
                          TbWireAck acks[TB_WIRE_MAX_BUFFERS], size_t *n);

/* Refuses a message larger than a receiver accepts. */
gboolean tb_wire_check_size(GVariant *message, GError **error);

/* Checks a received message (length, version, kind, exact type, normal
 * form) and returns it with its kind. Its version must be `expected` (the
 * channel's), or with 0 any this library speaks (a description for
 * tb_tensor_import). */
GVariant *tb_wire_open(const uint8_t *bytes, size_t length, uint32_t expected,
                       TbWireKind *kind, GError **error);

/* Fields of opened messages. */
uint64_t tb_wire_lease(GVariant *message); /* tensor or release message */
/* The ids a tensor message says to forget (a borrowed array). */
const uint64_t *tb_wire_forget(GVariant *message, size_t *count);
/* A tensor message's TB_WIRE_TAG_IMPORT_SERIAL, or 0 without one. */
uint64_t tb_wire_import_serial(GVariant *message);

/* Finds a cached buffer by the sender's id (a new reference) that maps
 * `window`. For a buffer that came with its fd (`with_fd`) NULL, without
 * an error, means that the fd is to be imported: nothing usable is cached
 * (for a read-only message, nothing read-only). For one without, NULL
 * comes with an error. */
typedef tb_buffer *(*TbWireBufferLookup)(void *cache, uint64_t sender_id,
                                         TbWireWindow window, gboolean with_fd,
                                         gboolean read_only, GError **error);

/* A buffer that arrived with its fd, for the receiver to cache. */
typedef struct TbWireImported {
  uint64_t sender_id;
  tb_buffer *buffer; /* a reference of the caller's: the tensor need not
                        use every buffer the message lists */
  gboolean cached;   /* the fd was closed: the lookup had the buffer */
} TbWireImported;

/* Builds the tensor a tensor message describes. `fds` are borrowed (each is
 * imported by dup, mapping only the window the description needs); every
 * one must be named by exactly one buffer. On
 * success `imported` (room for TB_WIRE_MAX_BUFFERS) lists the buffers that
 * came with fds, each with a reference that the caller drops with
 * tb_wire_imported_clear; on failure it is empty. `lookup` may be NULL:
 * then cached references are refused. */
tb_tensor *tb_wire_parse_tensor(GVariant *message, const int *fds, size_t nfds,
                                TbWireBufferLookup lookup, void *cache,
                                TbWireImported *imported, size_t *nimported,
                                GError **error);

void tb_wire_imported_clear(TbWireImported *imported, size_t *nimported);

#endif
