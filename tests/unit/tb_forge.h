/* Hand-made wire messages, for tests that play a hostile or hand-written
 * peer. The channel protocol sends one GVariant tuple in normal form per
 * message, its type fixed by the kind byte, with the fds attached by
 * SCM_RIGHTS:
 *
 *   tensor  (u version, y 'T', a(it) buffers: (fd index or -1 = cached,
 *            sender's buffer id), u dtype, t offset, ax shape, ax strides,
 *            b read-only, ms name, m(xadax) quantization: (axis, scales,
 *            zero points), m(uuua(utt)) image: (format, width, height,
 *            planes: (buffer index, offset, stride)), t lease, at forget)
 *   fence   (u version, y 'F')            with the fence's fd
 *   release (u version, y 'R', t lease)
 *
 * That is version 1. In version 2 (the version both sides agree on in the
 * hello, see tb_forge_hello) every message ends with one more field,
 * a(qay) extensions: (tag, value) pairs that a reader skips. In version 3
 * the buffers are a(ityut): (fd index, id, memory kind as a tb_memory,
 * CUDA device, bytes).
 *
 * A forged tensor message is the valid description of a 16x4 u8 tensor
 * over a 4096-byte memfd (fd 0, buffer id 7, read-write, nothing optional)
 * with some fields replaced, removed or added; tb_forge_cases lists those a
 * receiver must refuse, and with what status. The same list is fed to
 * tb_tensor_import and to tb_channel_recv.
 *
 * Every function here may be used in a tb_peer child too (failures go
 * through tb_peer_fail). */
#ifndef TB_FORGE_H
#define TB_FORGE_H

#include "tb_test.h"

#include <glib.h>

#define TB_FORGE_TENSOR_TYPE "(uya(it)utaxaxbmsm(xadax)m(uuua(utt))tat)"

/* Bytes of the memfd the valid description lies in. */
#define TB_FORGE_FD_BYTES 4096

/* Positions of the tensor message's fields. */
typedef enum tb_forge_field {
  TB_FORGE_VERSION,
  TB_FORGE_KIND,
  TB_FORGE_BUFFERS,
  TB_FORGE_DTYPE,
  TB_FORGE_OFFSET,
  TB_FORGE_SHAPE,
  TB_FORGE_STRIDES,
  TB_FORGE_READ_ONLY,
  TB_FORGE_NAME,
  TB_FORGE_QUANT,
  TB_FORGE_IMAGE,
  TB_FORGE_LEASE,
  TB_FORGE_FORGET,
  TB_FORGE_FIELDS /* as an edit's field: a field added at the end */
} tb_forge_field;

/* Value of an edit that removes its field. */
#define TB_FORGE_REMOVED ""

/* One change to the valid description: `field` gets `value`, a GVariant in
 * text form ("uint32 2", "[int64 -1, 4]"), or is removed. An edit whose
 * value is NULL changes nothing. */
typedef struct tb_forge_edit {
  tb_forge_field field;
  const char *value;
} tb_forge_edit;

#define TB_FORGE_MAX_EDITS 3

typedef struct tb_forge_case {
  const char *what;
  tb_forge_edit edits[TB_FORGE_MAX_EDITS];
  tb_status expected;
} tb_forge_case;

extern const tb_forge_case tb_forge_cases[];
extern const size_t tb_forge_case_count;

/* The valid description with up to `nedits` edits, serialized. */
GBytes *tb_forge_tensor(const tb_forge_edit *edits, size_t nedits);
/* A forged case's message. */
GBytes *tb_forge_case_message(const tb_forge_case *forged);
GBytes *tb_forge_fence(void);
GBytes *tb_forge_release(uint64_t lease);
/* The valid description changed in one bit so that it is no longer in
 * GVariant normal form: the kind of input a careless decoder would read. */
GBytes *tb_forge_non_normal(void);
/* A received message, typed by its kind byte ('T', 'F' or 'R'; others
 * fail) and checked to be in normal form. */
GVariant *tb_forge_open(GBytes *message);

/* Example tensors in shared memory, one for each shape of description:
 * a named i16 view with an offset, strides and per-axis quantization; a
 * per-tensor quantized u8 row; an f64 scalar; an empty f32 tensor; a u8 row
 * read backwards (negative stride); a 4-D f16 tensor; a bool matrix; a 5x3
 * NV12 image (two planes in one buffer, padded pitch); a 4x2 NV12 image
 * whose planes come from two memfds. Each call makes new tensors with the
 * same description and bytes, so that a child can make its own copy to
 * compare with what it receives. */
#define TB_FORGE_EXAMPLE_COUNT 9
tb_tensor *tb_forge_example(size_t index);

/* Asserts (in either process) that two tensors have the same dtype, shape,
 * strides, offset, name, quantization, image description and elements. */
void tb_forge_assert_same_tensor(tb_tensor *actual, tb_tensor *expected);

/* A memfd of `size` bytes made with `memfd_flags` (MFD_ALLOW_SEALING or 0),
 * holding 0, 1, 2, ... (mod 256). */
int tb_forge_memfd(uint64_t size, unsigned memfd_flags);

/* Fds that are not shareable memory, with what they are: a pipe, a regular
 * file, a socket, /dev/null, a directory, a memfd that cannot be sealed and
 * a read-only fd of an unsealed memfd (which cannot be sealed either). Fills
 * at most `capacity` and returns the count; the caller closes them. */
size_t tb_forge_wrong_fds(int *fds, const char **what, size_t capacity);

/* Sends one message with `nfds` fds on a raw seqpacket socket. */
void tb_forge_send(int socket, const void *bytes, size_t length, const int *fds,
                   size_t nfds);
void tb_forge_send_bytes(int socket, GBytes *message, const int *fds,
                         size_t nfds);

/* Receives one message on a raw socket (waiting at most 5 s), opened as
 * tb_forge_open does, and its fds (at most `capacity`; the caller closes
 * them). */
GVariant *tb_forge_receive(int socket, int *fds, size_t capacity, size_t *nfds);

/* The hello each side sends first (core/sharing/hello.h), written here by
 * hand: "TBHL", 'H', three zero bytes, then u32 lowest and highest version,
 * u32 capabilities, u32 buffers and u64 bytes cached (0: no limit), then
 * `extensions` (records of u16 tag, u16 length, bytes) as given. */
GBytes *tb_forge_hello(uint32_t min_version, uint32_t max_version,
                       const void *extensions, size_t extensions_length);
/* Plays the peer's side of the hello on a raw socket whose other end a
 * channel adopted (tb_channel_from_fd): checks and takes the channel's
 * hello, and sends a version-1 one. */
void tb_forge_greet(int socket);

#endif /* TB_FORGE_H */
