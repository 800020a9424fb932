/* tensorbuf — handing tensors to other processes.
 *
 * A channel is a Unix seqpacket connection that carries tensors: one message
 * per tensor with its whole description (dtype, shape, strides, offset, name,
 * quantization, the sender's buffer identity) and its fds by SCM_RIGHTS. The
 * receiver's tensor maps the same bytes: nothing is copied. A buffer already
 * sent on a channel is not sent again: the receiver keeps its mapping, keyed
 * by the sender's buffer id, until the sender's buffer dies.
 *
 * Everything received is untrusted: descriptors are parsed strictly, sizes
 * are checked against the fds before mapping, memfds arrive sealed against
 * shrinking, and unexpected fds are closed.
 *
 * A channel may be used from several threads; messages are whole and in
 * order. Channels are refcounted: tensors received from a channel with a
 * pool behind it hold a reference, so that dropping them can send the
 * release back. */
#ifndef TENSORBUF_CHANNEL_H
#define TENSORBUF_CHANNEL_H

#include "tensorbuf/fence.h"
#include "tensorbuf/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct tb_channel tb_channel;
typedef struct tb_listener tb_listener;

/* Two connected channels in this process (socketpair), e.g. for a child.
 * Errors: TB_ERR_INVALID_ARGUMENT (NULL out), TB_ERR_SYSTEM. */
TB_API tb_status tb_channel_pair(tb_channel **out_a, tb_channel **out_b);

/* Listens on a Unix socket path; a path starting with '@' is an abstract
 * name (no file). A file the listener created is removed when it is freed.
 * Errors: TB_ERR_INVALID_ARGUMENT (NULL or over-long path), TB_ERR_SYSTEM
 * (e.g. EADDRINUSE). */
TB_API tb_status tb_listener_listen(tb_listener **out, const char *path);
/* Waits up to timeout_ms (negative: no limit) for one connection.
 * Errors: TB_ERR_INVALID_ARGUMENT, TB_ERR_TIMEOUT, TB_ERR_SYSTEM. */
TB_API tb_status tb_listener_accept(tb_channel **out, tb_listener *listener,
                                    int timeout_ms);
/* The listening socket, for an event loop (readable: a connection waits). */
TB_API int tb_listener_fd(const tb_listener *listener);
TB_API void tb_listener_free(tb_listener *listener); /* NULL is a no-op */

/* Connects to a listener, retrying while it does not exist yet, up to
 * timeout_ms (negative: no limit).
 * Errors: TB_ERR_INVALID_ARGUMENT, TB_ERR_TIMEOUT, TB_ERR_SYSTEM. */
TB_API tb_status tb_channel_connect(tb_channel **out, const char *path,
                                    int timeout_ms);
/* A channel over a connected seqpacket Unix socket (dup'd: the caller keeps
 * its own fd). Errors: TB_ERR_INVALID_ARGUMENT, TB_ERR_BAD_FD (not a
 * seqpacket Unix socket), TB_ERR_SYSTEM. */
TB_API tb_status tb_channel_from_fd(tb_channel **out, int fd);
/* The socket, for an event loop: readable when a message (or the peer's
 * close) waits. -1 for NULL. */
TB_API int tb_channel_fd(const tb_channel *channel);

TB_API tb_channel *tb_channel_ref(tb_channel *channel); /* NULL-safe */
TB_API void tb_channel_unref(tb_channel *channel);      /* NULL: no-op */

/* Send flags.
 *
 * Read-only model: a read-only share seals the buffer's memfd against new
 * writable mappings (F_SEAL_FUTURE_WRITE), which the kernel enforces for
 * every process from then on. Mappings made before keep writing: the
 * sender's, and those of peers the buffer was shared with writable
 * earlier. So one buffer can be writable for one peer and read-only for
 * another when the writable share comes first; a writable share (of its fd)
 * after a read-only one is refused with TB_ERR_UNSUPPORTED, as is a
 * read-only share of memory that cannot be sealed (dma-bufs): neither is
 * made advisory. */
#define TB_SEND_READ_ONLY 0x1u

/* Sends `tensor` (SHM or DMA memory). Does not block on the peer beyond
 * the socket buffer.
 * Errors: TB_ERR_INVALID_ARGUMENT (NULL argument, unknown flags),
 * TB_ERR_UNSUPPORTED (HEAP memory has no fd; a read-only share that cannot
 * be enforced, or a writable one after a read-only one: see above),
 * TB_ERR_OUT_OF_RANGE (the
 * description is over the 64 KiB a receiver accepts: a name that long),
 * TB_ERR_CLOSED (peer gone), TB_ERR_SYSTEM. */
TB_API tb_status tb_channel_send(tb_channel *channel, tb_tensor *tensor,
                                 uint32_t flags);
/* Receives the next tensor, waiting up to timeout_ms (negative: no limit).
 * Errors: TB_ERR_INVALID_ARGUMENT, TB_ERR_TIMEOUT, TB_ERR_CLOSED,
 * TB_ERR_PROTOCOL (malformed message, or a fence where a tensor was
 * expected), TB_ERR_BAD_FD, TB_ERR_OUT_OF_RANGE (sizes that do not fit the
 * fd), TB_ERR_SHAPE and TB_ERR_DTYPE (a description whose values
 * tb_tensor_import would refuse alike), TB_ERR_SYSTEM. */
TB_API tb_status tb_channel_recv(tb_tensor **out, tb_channel *channel,
                                 int timeout_ms);

/* Sends / receives a fence (as tb_channel_send / tb_channel_recv). */
TB_API tb_status tb_channel_send_fence(tb_channel *channel, tb_fence *fence);
TB_API tb_status tb_channel_recv_fence(tb_fence **out, tb_channel *channel,
                                       int timeout_ms);

/* ---- for callers with their own transport (D-Bus, Wayland, PipeWire) ---- */

/* Most fds one tensor's description carries. */
#define TB_DESCRIPTOR_MAX_FDS 4

/* Writes the tensor's description into `descriptor` (`capacity` bytes;
 * *length gets the size used) and new fds (close-on-exec) into `fds` (*nfds
 * gets the count, at most TB_DESCRIPTOR_MAX_FDS); the caller sends both and
 * closes the fds. flags: TB_SEND_READ_ONLY.
 * Errors: TB_ERR_INVALID_ARGUMENT, TB_ERR_OUT_OF_RANGE (capacity too small;
 * *length says what is needed; or the description is over the 64 KiB that
 * tb_tensor_import accepts, *length its size), TB_ERR_UNSUPPORTED (HEAP),
 * TB_ERR_SYSTEM. */
TB_API tb_status tb_tensor_export(uint8_t *descriptor, size_t capacity,
                                  size_t *length, int *fds, size_t *nfds,
                                  const tb_tensor *tensor, uint32_t flags);
/* The tensor a description and its fds describe (fds are dup'd; the caller
 * closes its own). Errors: TB_ERR_INVALID_ARGUMENT, TB_ERR_PROTOCOL,
 * TB_ERR_BAD_FD, TB_ERR_OUT_OF_RANGE, TB_ERR_SHAPE, TB_ERR_DTYPE,
 * TB_ERR_SYSTEM. */
TB_API tb_status tb_tensor_import(tb_tensor **out, const uint8_t *descriptor,
                                  size_t length, const int *fds, size_t nfds);

#ifdef __cplusplus
}
#endif

#endif /* TENSORBUF_CHANNEL_H */
