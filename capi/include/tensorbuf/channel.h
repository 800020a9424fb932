/* tensorbuf — handing tensors to other processes.
 *
 * A channel is a Unix seqpacket connection that carries tensors. The
 * receiver's tensor maps the same bytes: nothing is copied. A buffer already
 * sent on a channel is not sent again: the receiver keeps its mapping, keyed
 * by the sender's buffer id, until the sender's buffer dies.
 *
 * Two paths. The socket carries what needs the kernel: the hello, a
 * buffer's first trip (a message with the whole description — dtype,
 * shape, strides, offset, name, quantization, image planes, the sender's
 * buffer identity — and the fds by SCM_RIGHTS), fences, and the end. From
 * protocol version 3 (both sides of this release) the steady state goes
 * through shared memory: each side sets up a ring at connect for what it
 * sends, and a tensor whose buffer the peer holds and whose layout it has
 * cached (each distinct layout gets a small id per channel, at most as
 * many as the receiver's hello allows) is one fixed-size ring record, with
 * no system call while both sides run. Images qualify when all their
 * planes lie in one buffer (as tb_image_new makes them); planes in several
 * buffers go as messages every time. A tensor that needs the socket is
 * announced in the ring first, so tensors come out in the order they were
 * sent. Releases of pooled tensors flow back the same way. What a peer
 * writes into a ring is copied out and checked; anything wrong is
 * TB_ERR_PROTOCOL and closes the channel.
 *
 * Everything received is untrusted: descriptors are parsed strictly, sizes
 * are checked against the fds before mapping, memfds arrive sealed against
 * shrinking, and unexpected fds are closed.
 *
 * Hello: at connect each side sends a hello (the protocol versions it
 * speaks, its limits, capabilities) and both then speak the highest
 * version both know. tb_channel_pair and tb_listener_accept read the
 * peer's hello before they return: a peer whose hello is malformed, or
 * that shares no version, is refused with TB_ERR_PROTOCOL, one that sends
 * none in time with TB_ERR_TIMEOUT, and no channel is made. A channel from
 * tb_channel_connect or tb_channel_from_fd sends its hello at once and
 * reads the peer's in its first operation (the peer may be in the same
 * thread, not accepting yet): within TB_LISTENER_DEFAULT_HELLO_TIMEOUT_MS
 * of the connect, else that operation and every later one fail with
 * TB_ERR_TIMEOUT, as they do with TB_ERR_PROTOCOL (or TB_ERR_CLOSED: a
 * listener that refused this uid) after a bad hello. A send waits for the
 * peer's hello up to that deadline. Both ends of a tb_channel_from_fd
 * socket must be channels of their own (each says hello once); a peer that
 * said hello, sent messages and left before the other end was made still
 * makes a channel, whose receives get what it sent, then TB_ERR_CLOSED.
 *
 * A channel may be used from several threads at once: sends, receives of
 * either kind, and pools waiting for releases. Messages are whole and taken
 * in the order they came; one thread at a time reads the socket, and the
 * others wait with their own deadlines, so a timed call returns by its
 * deadline even while another thread waits without limit. Tensors and
 * fences never take each other's messages: a message of the other kind at
 * the head of the channel waits for its own receive (and the messages
 * behind it wait too).
 *
 * Nothing is read ahead: what the peer sent stays in the socket (or its
 * ring) until a receive takes it, so a peer that sends more than we take
 * fills its own socket buffer or ring and blocks (backpressure), and our
 * fds and memory do not grow with it. Releases of pooled tensors are
 * applied by whichever call services the channel: any send or receive on
 * it, and tb_pool_acquire of the pool whose tensors it carries (when no
 * other thread is reading the channel, the waiting acquire reads the
 * releases itself; it stops at any other message, leaving it for a
 * receive). Dropping a received pooled tensor never waits for the peer:
 * its release goes into the ring, or, when the ring is full, into a
 * bounded queue that the channel's next call hands over.
 *
 * Death: everything a peer sent before it died or closed (socket messages
 * and ring records alike) is received before TB_ERR_CLOSED; the buffers
 * it held of our pools come back; a waiter on a peer that died wakes
 * within a few tens of milliseconds, or at its deadline.
 *
 * Channels are refcounted: tensors received from a channel with a pool
 * behind it hold a reference, so that dropping them can send the release
 * back.
 *
 * Limits: a receiver keeps the buffers it received (mapped, with their
 * fds) so that the next tensor in the same buffer costs no fd and no
 * mapping. Each side states in its hello how many buffers and how many
 * mapped bytes (each buffer counted as its mapping, rounded up to whole
 * pages) it keeps: tb_channel_options, by default
 * TB_CHANNEL_DEFAULT_MAX_BUFFERS and TB_CHANNEL_DEFAULT_MAX_MAPPED_BYTES.
 * The sender keeps within the peer's limits: before a tensor that would
 * take the peer past them, it tells the peer to forget the buffers it sent
 * least recently (they stay mapped while a received tensor uses them). A
 * tensor that is alone over the peer's limits is refused by tb_channel_send
 * with TB_ERR_OUT_OF_RANGE. A peer that sends past this side's limits is
 * refused with TB_ERR_PROTOCOL, and the channel is closed: every later call
 * fails with the same error. From protocol version 3 on (tb_channel_version)
 * the receiver acknowledges each buffer it imported, and the sender sends a
 * buffer's fd again until it has: a receive that failed (out of fds, say)
 * costs that receive only, and the next send of the buffer goes through. */
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

#define TB_CHANNEL_OPTIONS_VERSION 1
/* How many buffers, and how many bytes of them mapped, a channel keeps of
 * what its peer sent, by default. */
#define TB_CHANNEL_DEFAULT_MAX_BUFFERS 1024u
#define TB_CHANNEL_DEFAULT_MAX_MAPPED_BYTES (UINT64_C(8) << 30) /* 8 GiB */

/* Options of a channel: what it keeps of the buffers its peer sent (see
 * "Limits" above), stated to the peer in the hello. The struct only ever
 * grows at its end; `version` says which fields the caller knows about. */
typedef struct tb_channel_options {
  uint32_t version;          /* TB_CHANNEL_OPTIONS_VERSION */
  uint32_t max_buffers;      /* 1 or more; TB_CHANNEL_DEFAULT_MAX_BUFFERS */
  uint64_t max_mapped_bytes; /* a whole number of pages, at least one;
                                TB_CHANNEL_DEFAULT_MAX_MAPPED_BYTES */
} tb_channel_options;

#define TB_CHANNEL_OPTIONS_INIT                                                \
  {                                                                            \
    TB_CHANNEL_OPTIONS_VERSION, TB_CHANNEL_DEFAULT_MAX_BUFFERS,                \
        TB_CHANNEL_DEFAULT_MAX_MAPPED_BYTES                                    \
  }

/* Fills *opts with the defaults of the given struct version (only the
 * fields that version has) and sets opts->version.
 * Errors: TB_ERR_INVALID_ARGUMENT (NULL opts), TB_ERR_VERSION. */
TB_API tb_status tb_channel_options_init(tb_channel_options *opts,
                                         uint32_t version);

/* tb_channel_pair with options for both channels (NULL: the defaults).
 * Errors: as tb_channel_pair; TB_ERR_VERSION (opts->version unknown);
 * TB_ERR_INVALID_ARGUMENT (max_buffers 0, max_mapped_bytes 0 or not a
 * whole number of pages). */
TB_API tb_status tb_channel_pair_with(tb_channel **out_a, tb_channel **out_b,
                                      const tb_channel_options *opts);

/* Listens on a Unix socket path with the default options (see
 * tb_listener_options); a path starting with '@' is an abstract name (no
 * file). A file the listener created is removed when it is freed.
 * Errors: TB_ERR_INVALID_ARGUMENT (NULL or over-long path), TB_ERR_SYSTEM
 * (e.g. EADDRINUSE). */
TB_API tb_status tb_listener_listen(tb_listener **out, const char *path);

#define TB_LISTENER_OPTIONS_VERSION 2
/* How long tb_listener_accept waits, by default, for a connected peer's
 * hello, and a dialed or adopted channel for its peer's. */
#define TB_LISTENER_DEFAULT_HELLO_TIMEOUT_MS 5000
/* tb_listener_options.flags: any uid may connect (the uids list is then
 * empty). */
#define TB_LISTENER_ANY_UID 0x1u

/* Options of a listener. The struct only ever grows at its end; `version`
 * says which fields the caller knows about. */
typedef struct tb_listener_options {
  uint32_t version;     /* TB_LISTENER_OPTIONS_VERSION */
  uint32_t mode;        /* permission bits of a path socket's file, set before
                           it listens; default 0600 (abstract names: ignored) */
  const uint32_t *uids; /* uids allowed to connect (copied), `nuids` of
                           them; none (the default): the listener's own
                           effective uid alone. Root is allowed only when
                           listed (or the listener's own uid) */
  size_t nuids;
  uint32_t flags;           /* TB_LISTENER_ANY_UID */
  int32_t hello_timeout_ms; /* default TB_LISTENER_DEFAULT_HELLO_TIMEOUT_MS */
  /* Version 2: options of the channels it accepts (copied when it listens;
   * NULL, the default: the defaults). */
  const tb_channel_options *channel_options;
} tb_listener_options;

#define TB_LISTENER_OPTIONS_INIT                                               \
  {                                                                            \
    TB_LISTENER_OPTIONS_VERSION, 0600, NULL, 0, 0,                             \
        TB_LISTENER_DEFAULT_HELLO_TIMEOUT_MS, NULL                             \
  }

/* Fills *opts with the defaults of the given struct version (only the
 * fields that version has) and sets opts->version.
 * Errors: TB_ERR_INVALID_ARGUMENT (NULL opts), TB_ERR_VERSION. */
TB_API tb_status tb_listener_options_init(tb_listener_options *opts,
                                          uint32_t version);

/* tb_listener_listen with options (NULL: the defaults).
 * Errors: as tb_listener_listen; TB_ERR_VERSION (opts->version unknown);
 * TB_ERR_INVALID_ARGUMENT (mode bits beyond 0777, unknown flags, NULL uids
 * with nuids > 0, uids with TB_LISTENER_ANY_UID, hello_timeout_ms <= 0;
 * channel_options as tb_channel_pair_with refuses them, and
 * TB_ERR_VERSION for their version). */
TB_API tb_status tb_listener_listen_with(tb_listener **out, const char *path,
                                         const tb_listener_options *opts);

/* Waits up to timeout_ms (negative: no limit) for one connection from an
 * allowed uid, and its hello (up to the listener's hello_timeout_ms more,
 * within timeout_ms). A connection from a uid not allowed is closed before
 * anything it sent is read, and the wait goes on; a timeout's message
 * counts the refused ones.
 * Errors: TB_ERR_INVALID_ARGUMENT, TB_ERR_TIMEOUT (no connection, or no
 * hello in time), TB_ERR_PROTOCOL (a malformed hello, no common version),
 * TB_ERR_CLOSED (the peer left before its hello), TB_ERR_SYSTEM. */
TB_API tb_status tb_listener_accept(tb_channel **out, tb_listener *listener,
                                    int timeout_ms);
/* The listening socket, for an event loop (readable: a connection waits). */
TB_API int tb_listener_fd(const tb_listener *listener);
TB_API void tb_listener_free(tb_listener *listener); /* NULL is a no-op */

/* Connects to a listener, retrying while it does not exist yet, up to
 * timeout_ms (negative: no limit), and sends the hello (see above).
 * Errors: TB_ERR_INVALID_ARGUMENT, TB_ERR_TIMEOUT, TB_ERR_SYSTEM. */
TB_API tb_status tb_channel_connect(tb_channel **out, const char *path,
                                    int timeout_ms);
/* tb_channel_connect with options (NULL: the defaults). Errors: as
 * tb_channel_connect; those of tb_channel_pair_with for opts. */
TB_API tb_status tb_channel_connect_with(tb_channel **out, const char *path,
                                         int timeout_ms,
                                         const tb_channel_options *opts);
/* A channel over a connected seqpacket Unix socket (dup'd: the caller keeps
 * its own fd). Errors: TB_ERR_INVALID_ARGUMENT, TB_ERR_BAD_FD (not a
 * seqpacket Unix socket), TB_ERR_SYSTEM. */
TB_API tb_status tb_channel_from_fd(tb_channel **out, int fd);
/* tb_channel_from_fd with options (NULL: the defaults). Errors: as
 * tb_channel_from_fd; those of tb_channel_pair_with for opts. */
TB_API tb_status tb_channel_from_fd_with(tb_channel **out, int fd,
                                         const tb_channel_options *opts);
/* The socket, for an event loop. It turns readable when the channel has
 * something to do: a message waits that tb_channel_recv or
 * tb_channel_recv_fence (by its kind) would return, a release waits that
 * any call on the channel (or tb_pool_acquire of its pool, timeout 0)
 * would apply, or the peer has closed (a receive says TB_ERR_CLOSED). An
 * event loop that wakes on it calls the receive for the kind it expects,
 * with timeout 0, until that returns TB_ERR_TIMEOUT; a loop that only
 * sends pooled tensors calls tb_pool_acquire. Why until TB_ERR_TIMEOUT:
 * from protocol version 3 tensors whose buffer the peer already holds
 * come through shared memory, and only a receive with timeout 0 arms the
 * socket's wake-up for them; tensors queued while no such receive had
 * armed it (during a receive with a timeout, say) are found by the next
 * receive, not announced again. A wake-up may find nothing (the receive
 * says TB_ERR_TIMEOUT). -1 for NULL. */
TB_API int tb_channel_fd(const tb_channel *channel);

/* The peer's credentials as the kernel recorded them at connect
 * (SO_PEERCRED), kept for the channel's life: its process, user and group
 * ids. For tb_channel_connect the peer is the process that made the
 * listener; for a socketpair (tb_channel_pair, tb_channel_from_fd) the
 * process that made the pair. Any out-parameter may be NULL. Thread-safe.
 * Errors: TB_ERR_INVALID_ARGUMENT (NULL channel), TB_ERR_UNSUPPORTED (the
 * kernel gave none). */
TB_API tb_status tb_channel_peer_credentials(const tb_channel *channel,
                                             int64_t *pid, int64_t *uid,
                                             int64_t *gid);

/* What the hello at connect agreed: the protocol version both sides speak,
 * and the limits each side stated (see "Limits" above): this side's
 * (own_*) and the peer's (peer_*; 0 from a peer that states none, which
 * older versions may). Waits for the peer's hello as a send does. Any
 * out-parameter may be NULL. Thread-safe.
 * Errors: TB_ERR_INVALID_ARGUMENT (NULL channel); a failed hello's
 * (TB_ERR_TIMEOUT, TB_ERR_PROTOCOL, TB_ERR_CLOSED). */
TB_API tb_status tb_channel_version(tb_channel *channel,
                                    uint32_t *version);
TB_API tb_status tb_channel_limits(tb_channel *channel,
                                   uint32_t *own_max_buffers,
                                   uint64_t *own_max_mapped_bytes,
                                   uint32_t *peer_max_buffers,
                                   uint64_t *peer_max_mapped_bytes);

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

/* Sends `tensor` (SHM, DMA, CUDA or CUDA_HOST memory). Does not block on
 * the peer beyond the socket buffer or, from version 3, the ring's 256
 * records (a peer that has gone ends the wait: TB_ERR_CLOSED). CUDA memory
 * goes as its CUDA shareable fd and arrives as CUDA memory on the same
 * device ordinal (the receiver needs the CUDA driver and must see that
 * device under that ordinal); CUDA_HOST memory arrives registered on that
 * device, or as SHM at a peer whose protocol version is older than 3. A
 * read-only share of CUDA memory cannot be enforced (see above).
 * Errors: TB_ERR_INVALID_ARGUMENT (NULL argument, unknown flags),
 * TB_ERR_UNSUPPORTED (HEAP memory has no fd; a read-only share that cannot
 * be enforced, or a writable one after a read-only one: see above; CUDA
 * memory to a peer that speaks a protocol version older than 3),
 * TB_ERR_OUT_OF_RANGE (the
 * description is over the 64 KiB a receiver accepts: a name that long; the
 * tensor's buffers alone are over the peer's limits),
 * TB_ERR_PROTOCOL (this channel refused a message from the peer before),
 * TB_ERR_CLOSED (peer gone), TB_ERR_SYSTEM. */
TB_API tb_status tb_channel_send(tb_channel *channel, tb_tensor *tensor,
                                 uint32_t flags);
/* Receives the next tensor, waiting up to timeout_ms (negative: no limit; a
 * monotonic deadline, which signals do not extend). A fence at the head of
 * the channel is left for tb_channel_recv_fence: a tensor that came on the
 * socket after it waits behind it (one that came through the ring, from
 * version 3, does not).
 * Everything the peer sent before it closed is received before
 * TB_ERR_CLOSED.
 * Errors: TB_ERR_INVALID_ARGUMENT, TB_ERR_TIMEOUT, TB_ERR_CLOSED,
 * TB_ERR_PROTOCOL (malformed message, including one whose kind cannot be
 * read, a memory kind this library does not import, or a CUDA device this
 * machine does not have; a message past this side's limits, after which
 * the channel is closed), TB_ERR_BAD_FD, TB_ERR_OUT_OF_RANGE (sizes that
 * do not fit the fd), TB_ERR_SHAPE and TB_ERR_DTYPE (a description whose
 * values tb_tensor_import would refuse alike), TB_ERR_UNSUPPORTED (CUDA or
 * CUDA_HOST memory without a CUDA driver; the message says what is
 * missing), TB_ERR_SYSTEM. */
TB_API tb_status tb_channel_recv(tb_tensor **out, tb_channel *channel,
                                 int timeout_ms);

/* Sends / receives a fence (as tb_channel_send / tb_channel_recv; a tensor
 * at the head of the channel is left for tb_channel_recv). */
TB_API tb_status tb_channel_send_fence(tb_channel *channel, tb_fence *fence);
TB_API tb_status tb_channel_recv_fence(tb_fence **out, tb_channel *channel,
                                       int timeout_ms);

/* ---- for callers with their own transport (D-Bus, Wayland, PipeWire) ---- */

/* Most fds one tensor's description carries. */
#define TB_DESCRIPTOR_MAX_FDS 4

/* Writes the tensor's description into `descriptor` (`capacity` bytes;
 * *length gets the size used) and new fds (close-on-exec) into `fds`. *nfds
 * is in/out: in, the capacity of `fds` (TB_DESCRIPTOR_MAX_FDS always
 * suffices); out, the count written. The caller sends both and closes the
 * fds. flags: TB_SEND_READ_ONLY.
 * The description is of protocol version 1, which every release reads,
 * unless a buffer is CUDA or CUDA_HOST memory: then of version 3, which
 * names each buffer's memory kind and CUDA device, so that tb_tensor_import
 * maps the CUDA fd on that device (and registers CUDA_HOST memory there).
 * Errors: TB_ERR_INVALID_ARGUMENT (NULL argument; `fds` NULL with *nfds >
 * 0), TB_ERR_OUT_OF_RANGE (capacity too small: *length says what is needed;
 * *nfds too small: *nfds is set to the count needed; or the description is
 * over the 64 KiB that tb_tensor_import accepts, *length its size; no fd is
 * left open), TB_ERR_UNSUPPORTED (HEAP), TB_ERR_SYSTEM. */
TB_API tb_status tb_tensor_export(uint8_t *descriptor, size_t capacity,
                                  size_t *length, int *fds, size_t *nfds,
                                  const tb_tensor *tensor, uint32_t flags);
/* The tensor a description and its fds describe (fds are dup'd; the caller
 * closes its own). Errors: TB_ERR_INVALID_ARGUMENT, TB_ERR_PROTOCOL
 * (including a memory kind this library does not import, or a CUDA device
 * this machine does not have), TB_ERR_BAD_FD, TB_ERR_OUT_OF_RANGE,
 * TB_ERR_SHAPE, TB_ERR_DTYPE, TB_ERR_UNSUPPORTED (CUDA or CUDA_HOST memory
 * without a CUDA driver), TB_ERR_SYSTEM. */
TB_API tb_status tb_tensor_import(tb_tensor **out, const uint8_t *descriptor,
                                  size_t length, const int *fds, size_t nfds);

#ifdef __cplusplus
}
#endif

#endif /* TENSORBUF_CHANNEL_H */
