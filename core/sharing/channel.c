/* Channels: tensors, fences and releases over a Unix seqpacket socket
 * and, from wire version 3, two shared-memory rings (sharing/ring.h).
 *
 * Two paths (version 3). Each side sends the memfd of the ring it pushes
 * into with its hello. A tensor whose buffer the peer holds (acknowledged,
 * over the window it needs) and whose layout it caches (sharing/layouts.h)
 * is one ring record; anything else is a message on the socket, announced
 * by a ring record first, so that the ring orders every tensor. Releases
 * go back as ring records (a full ring: a bounded local queue that the
 * channel's next call flushes). A receiver consumes the ring in one thread
 * at a time (`ring_reading`), never holding the socket while it waits, so
 * fence receivers go on; it spins, then sleeps on the ring's futex in
 * slices that look at the socket for a hang-up. Before a receive returns
 * empty-handed it arms the ring, whose doorbell ('D' messages on our own
 * socket) then makes tb_channel_fd readable when a record comes.
 *
 * Sender state: a mirror of the buffers the peer holds (so a recycled
 * buffer goes without fd, and the peer is told what to forget before it
 * passes its limits: sharing/peer_cache.h), and the leases of pooled
 * tensors the peer still holds, by token. Receiver state: the buffers
 * received, by the sender's id (so a recycled buffer is not mapped again),
 * bounded by the limits this side stated in its hello.
 *
 * Nothing is read ahead: the socket is the only queue. One thread at a time
 * reads it (the reader); it peeks at the next message's kind and takes it
 * only if it is a release (applied at once) or of the kind it wants, and
 * imports it before letting the next reader in, so that messages are taken
 * in order and a buffer is cached before a later message refers to it.
 * Other threads wait on `changed` with their own deadlines. So memory and
 * fds never grow with what the peer sends, the socket stays readable while
 * a message waits, and a peer that floods us only fills its socket. */
#include "sharing/channel.h"
#include "sharing/hello.h"
#include "sharing/layouts.h"
#include "sharing/peer_cache.h"
#include "sharing/ring.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#ifndef F_SEAL_FUTURE_WRITE
#define F_SEAL_FUTURE_WRITE 0x0010
#endif

/* Fds accepted in one message; more are closed and the message refused. */
#define TB_WIRE_MAX_FDS 8

typedef struct TbMessage {
  GVariant *body;
  TbWireKind kind;
  int fds[TB_WIRE_MAX_FDS];
  size_t nfds;
} TbMessage;

struct tb_channel {
  atomic_int refs;
  int fd;
  GMutex lock;                  /* the tables, `reading` and `taken` */
  GCond changed;                /* the reader left, or a message was taken */
  unsigned waiting;             /* threads waiting on `changed` */
  gboolean reading;             /* a thread is reading the socket */
  uint64_t taken;               /* messages taken so far: the head changed */
  uint64_t releases_blocked_at; /* `taken` when a pool's serve found a
                                   message that is not a release at the head */
  GMutex send_lock;             /* one send at a time: plans, sends, commits */
  TbPeerMirror *mirror; /* what the peer holds (`lock`); from the hello */
  TbPeerCache *cache;   /* what we hold of the peer's (`lock`) */
  GPtrArray *acks_out;  /* ack messages a receive could not send at once
                           (`lock`) */
  GError *failure;      /* why the channel was closed on our side (`lock`) */
  GHashTable *leases;   /* token -> TbLease held for the peer */
  uint64_t next_token;
  GPtrArray *pools;     /* pools that watch us (strong) */
  atomic_bool hung_up;  /* the peer has gone: nothing more will arrive */
  atomic_bool failed;   /* `failure` is set */
  GArray *releases_out; /* TbPendingRelease a drop could not send at once
                           (`release_lock`) */
  GMutex release_lock;  /* releases_out, and pushes of releases into `rx` */
  struct ucred peer;    /* SO_PEERCRED at connect; -1s where none */
  /* The hello: a dialed or adopted channel reads its peer's hello in its
   * first operation (the peer may be in this thread, not yet accepting),
   * by `hello_deadline`; until then `greeted` is false. */
  GMutex hello_lock; /* the fields below but `greeted` */
  GCond hello_read;  /* a thread has finished reading the hello */
  gboolean hello_reading;
  atomic_bool greeted;
  gint64 hello_deadline; /* monotonic, µs */
  GError *hello_error;   /* why the hello failed, for every later call */
  uint32_t version;      /* the protocol version both speak */
  TbHello hello;         /* ours: the limits we keep */
  TbHello peer_hello;
  /* Version 3 (set with `greeted`): the rings, NULL before. */
  TbRing *tx;                  /* we push tensors and pop releases */
  TbRing *rx;                  /* we pop tensors and push releases */
  GMutex serve_lock;           /* one popper of `tx`'s releases */
  TbLayoutIds *layout_ids;     /* the peer's layouts (`send_lock`) */
  TbLayoutCache *layout_cache; /* ours, filled by the ring's consumer */
  gboolean ring_reading;       /* (`lock`) a thread consumes `rx` */
  unsigned socket_owed; /* (`lock`) tensors the ring said are on the socket */
  struct {
    _Atomic uint64_t ring_sent, socket_sent, ring_received, releases_queued;
  } stats; /* tb_channel_stats */
  /* The fork generation (fork_generation) of the process that last sent or
   * received on this channel; G_MAXUINT: none yet. */
  atomic_uint used_in;
};

/* Records each way in a ring: room for every tensor of a large pool in
 * flight, with releases as fast as they come. */
#define TB_CHANNEL_RING_CAPACITY 256u
/* Longest sleep on a ring before looking at the socket for a hang-up: a
 * peer that died cannot wake us. */
#define TB_CHANNEL_RING_SLICE_MS 20

/* Forks this process has been through (incremented in each child): a
 * channel closes its rings on its last unref only if it was used since
 * this process's latest fork. The rings' memory is shared with forked
 * copies of the process: a pair made before fork, each end dropped on one
 * side, must not close the end the other side uses. */
static atomic_uint fork_generation;

static void count_fork(void) { atomic_fetch_add(&fork_generation, 1); }

static void note_use(tb_channel *channel) {
  atomic_store_explicit(
      &channel->used_in,
      atomic_load_explicit(&fork_generation, memory_order_relaxed),
      memory_order_relaxed);
}

/* A release a drop could not hand over at once. */
typedef struct TbPendingRelease {
  uint64_t token;  /* the lease */
  uint64_t buffer; /* the sender's buffer id (version 3) */
} TbPendingRelease;

/* Releases waiting for room in the socket; past this a release is dropped
 * (a peer that reads nothing gets nothing back). */
#define TB_CHANNEL_MAX_RELEASES 4096
/* Acknowledgements likewise: one dropped costs the peer an fd sent again. */
#define TB_CHANNEL_MAX_ACKS 1024

/* A received pooled tensor: dropping it sends the release back. */
typedef struct TbRemoteLease {
  TbLease lease; /* first */
  tb_channel *channel;
  uint64_t token;
  uint64_t buffer; /* the sender's id of the buffer */
} TbRemoteLease;

static void message_free(TbMessage *message) {
  for (size_t i = 0; i < message->nfds; i++)
    close(message->fds[i]);
  if (message->body != NULL)
    g_variant_unref(message->body);
  g_free(message);
}

G_DEFINE_AUTOPTR_CLEANUP_FUNC(TbMessage, message_free)

/* What this side states in its hello: every version it speaks, and the
 * limits of its cache of the peer's buffers. */
static TbHello hello_of(const tb_channel_options *opts) {
  return (TbHello){.min_version = TB_WIRE_VERSION_MIN,
                   .max_version = TB_WIRE_VERSION_MAX,
                   .max_buffers = opts->max_buffers,
                   .max_bytes = opts->max_mapped_bytes,
                   .max_layouts = TB_LAYOUTS_DEFAULT_LIMIT};
}

static tb_channel *channel_wrap(int fd, const TbHello *hello) {
  tb_channel *channel = g_new0(tb_channel, 1);
  atomic_init(&channel->refs, 1);
  channel->fd = fd;
  g_mutex_init(&channel->lock);
  g_cond_init(&channel->changed);
  g_mutex_init(&channel->send_lock);
  channel->releases_blocked_at = G_MAXUINT64;
  channel->hello = *hello;
  channel->cache = tb_peer_cache_new(hello->max_buffers, hello->max_bytes);
  channel->acks_out =
      g_ptr_array_new_with_free_func((GDestroyNotify)g_variant_unref);
  channel->leases = g_hash_table_new_full(g_int64_hash, g_int64_equal, g_free,
                                          (GDestroyNotify)tb_lease_drop);
  channel->next_token = 1;
  channel->releases_out = g_array_new(FALSE, FALSE, sizeof(TbPendingRelease));
  g_mutex_init(&channel->release_lock);
  g_mutex_init(&channel->serve_lock);
  channel->pools =
      g_ptr_array_new_with_free_func((GDestroyNotify)tb_pool_unref);
  atomic_init(&channel->used_in, G_MAXUINT);
  static gsize fork_counted = 0;
  if (g_once_init_enter(&fork_counted))
    g_once_init_leave(&fork_counted,
                      pthread_atfork(NULL, NULL, count_fork) == 0 ? 1 : 2);
  channel->peer = (struct ucred){.pid = -1, .uid = (uid_t)-1, .gid = (gid_t)-1};
  socklen_t length = sizeof channel->peer;
  if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &channel->peer, &length) != 0)
    channel->peer = (struct ucred){-1, (uid_t)-1, (gid_t)-1};
  g_mutex_init(&channel->hello_lock);
  g_cond_init(&channel->hello_read);
  tb_live_add(1);
  return channel;
}

static uint64_t *id_key(uint64_t id) { return g_memdup2(&id, sizeof id); }

tb_channel *tb_channel_ref(tb_channel *channel) {
  if (channel != NULL)
    atomic_fetch_add(&channel->refs, 1);
  return channel;
}

tb_channel *tb_channel_try_ref(tb_channel *channel) {
  int refs = atomic_load(&channel->refs);
  do {
    if (refs == 0)
      return NULL;
  } while (!atomic_compare_exchange_weak(&channel->refs, &refs, refs + 1));
  return channel;
}

/* Gives back every lease the peer held: it can no longer release them. */
static void drop_peer_leases(tb_channel *channel) {
  g_mutex_lock(&channel->lock);
  GHashTable *leases = g_steal_pointer(&channel->leases);
  channel->leases = g_hash_table_new_full(g_int64_hash, g_int64_equal, g_free,
                                          (GDestroyNotify)tb_lease_drop);
  g_mutex_unlock(&channel->lock);
  g_hash_table_unref(leases); /* outside the lock: releases take pool locks */
}

void tb_channel_unref(tb_channel *channel) {
  if (channel == NULL || atomic_fetch_sub(&channel->refs, 1) != 1)
    return;
  for (guint i = 0; i < channel->pools->len; i++)
    tb_pool_unwatch(channel->pools->pdata[i], channel);
  g_hash_table_unref(channel->leases);
  g_ptr_array_unref(channel->pools);
  tb_peer_mirror_free(channel->mirror);
  tb_peer_cache_free(channel->cache);
  g_ptr_array_unref(channel->acks_out);
  g_clear_error(&channel->failure);
  g_array_unref(channel->releases_out);
  /* Closed (the peer's waiters wake at once) only where this process has
   * used the channel since its latest fork: a forked copy of this process
   * may use the same end. Either way the peer sees the end on the socket. */
  if (channel->tx != NULL &&
      atomic_load(&channel->used_in) == atomic_load(&fork_generation)) {
    tb_ring_close(channel->tx);
    tb_ring_close(channel->rx);
  }
  tb_ring_free(channel->tx);
  tb_ring_free(channel->rx);
  tb_layout_ids_free(channel->layout_ids);
  tb_layout_cache_free(channel->layout_cache);
  g_mutex_clear(&channel->release_lock);
  g_mutex_clear(&channel->serve_lock);
  close(channel->fd);
  g_mutex_clear(&channel->send_lock);
  g_mutex_clear(&channel->lock);
  g_cond_clear(&channel->changed);
  g_mutex_clear(&channel->hello_lock);
  g_cond_clear(&channel->hello_read);
  g_clear_error(&channel->hello_error);
  g_free(channel);
  tb_live_add(-1);
}

int tb_channel_fd(const tb_channel *channel) {
  return channel != NULL ? channel->fd : -1;
}

/* ---- connecting --------------------------------------------------------- */

static int seqpacket_socket(GError **error) {
  int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
  if (fd < 0)
    tb_set_system_error(error, TB_TENSOR_ERROR, errno, "socket");
  return fd;
}

/* Milliseconds from now to a monotonic deadline (µs), for poll. */
static int ms_until(gint64 deadline) {
  gint64 left_us = deadline - g_get_monotonic_time();
  return left_us <= 0 ? 0 : (int)MIN((left_us + 999) / 1000, G_MAXINT);
}

/* The monotonic time `timeout_ms` from now; -1 (no deadline) for a
 * negative timeout. */
static gint64 deadline_in(int timeout_ms) {
  return timeout_ms < 0 ? -1
                        : g_get_monotonic_time() +
                              (gint64)timeout_ms * G_TIME_SPAN_MILLISECOND;
}

/* Polls `fds` until one is ready or `deadline` (-1: none) passes; a signal
 * (EINTR) never extends the wait. Gives poll's result. */
static int poll_until(struct pollfd *fds, nfds_t n, gint64 deadline) {
  int ready;
  for (;;) {
    int left_ms = -1;
    if (deadline >= 0) {
      gint64 left_us = deadline - g_get_monotonic_time();
      left_ms = left_us <= 0 ? 0 : (int)MIN((left_us + 999) / 1000, G_MAXINT);
    }
    ready = poll(fds, n, left_ms);
    if (ready >= 0 || errno != EINTR)
      return ready;
  }
}

/* Waits for `fd` to be readable; FALSE with TB_ERR_TIMEOUT otherwise. */
static gboolean wait_readable(int fd, int timeout_ms, const char *what,
                              GError **error) {
  struct pollfd p = {.fd = fd, .events = POLLIN};
  int ready = poll_until(&p, 1, deadline_in(timeout_ms));
  if (ready < 0) {
    tb_set_system_error(error, TB_TENSOR_ERROR, errno, "poll");
    return FALSE;
  }
  if (ready == 0) {
    g_set_error(error, TB_TENSOR_ERROR, TB_ERR_TIMEOUT, "no %s within %d ms",
                what, timeout_ms);
    return FALSE;
  }
  return TRUE;
}

/* Sends one message of `length` bytes with `nfds` fds (SCM_RIGHTS),
 * retrying on EINTR; sendmsg's result, with errno. */
static ssize_t send_with_fds(int fd, const void *bytes, size_t length,
                             const int *fds, size_t nfds, int flags) {
  struct iovec iov = {.iov_base = (void *)bytes, .iov_len = length};
  union {
    struct cmsghdr header;
    char space[CMSG_SPACE(sizeof(int) * TB_WIRE_MAX_FDS)];
  } control;
  struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1};
  if (nfds > 0) {
    memset(&control, 0, sizeof control); /* CMSG_SPACE's padding included */
    msg.msg_control = control.space;
    msg.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
    struct cmsghdr *cmsg = CMSG_FIRSTHDR(&msg);
    cmsg->cmsg_level = SOL_SOCKET;
    cmsg->cmsg_type = SCM_RIGHTS;
    cmsg->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
    memcpy(CMSG_DATA(cmsg), fds, sizeof(int) * nfds);
  }
  ssize_t sent;
  do
    sent = sendmsg(fd, &msg, MSG_NOSIGNAL | flags);
  while (sent < 0 && errno == EINTR);
  return sent;
}

/* Sends our hello, with the memfd of the ring we will push into (version
 * 3): *tx gets it. An older peer closes the fd unread; then the ring is
 * dropped once the version is agreed. */
static gboolean send_hello(int fd, const TbHello *hello, TbRing **tx,
                           GError **error) {
  uint8_t bytes[TB_HELLO_WRITE_BYTES];
  size_t length = tb_hello_write(hello, bytes);
  int ring_fd = -1;
  GError *ring_error = NULL;
  *tx = tb_ring_create(TB_CHANNEL_RING_CAPACITY, &ring_fd, &ring_error);
  if (*tx == NULL) {
    g_set_error(error, TB_TENSOR_ERROR, ring_error->code, "%s",
                ring_error->message);
    g_error_free(ring_error);
    return FALSE;
  }
  /* A new connection has room: never waits. */
  ssize_t sent = send_with_fds(fd, bytes, length, &ring_fd, 1, MSG_DONTWAIT);
  int errnum = errno;
  close(ring_fd);
  if (sent == (ssize_t)length)
    return TRUE;
  if (sent < 0 && (errnum == EPIPE || errnum == ECONNRESET)) {
    /* *tx is kept: a caller that still makes the channel reads what the
     * peer sent before it left (greet_later). */
    g_set_error(error, TB_TENSOR_ERROR, TB_ERR_CLOSED,
                "the peer closed the connection before the hello");
    return FALSE;
  }
  g_clear_pointer(tx, tb_ring_free);
  tb_set_system_error(error, TB_TENSOR_ERROR, errnum, "sending the hello");
  return FALSE;
}

/* Attaches the ring whose memfd came with a version 3 hello. */
static gboolean attach_ring(int ring_fd, uint32_t version, TbRing **rx,
                            GError **error) {
  *rx = NULL;
  /* A peer that sends no ring (one written by hand) gets the socket path
   * both ways, as before version 3. */
  if (version < TB_WIRE_VERSION_RING || ring_fd < 0)
    return TRUE;
  GError *ring_error = NULL;
  *rx = tb_ring_attach(ring_fd, &ring_error);
  if (*rx == NULL) {
    g_set_error(error, TB_TENSOR_ERROR, TB_ERR_PROTOCOL,
                "the ring that came with the peer's hello: %s",
                ring_error->message);
    g_error_free(ring_error);
  }
  return *rx != NULL;
}

/* The hello that recvmsg gave: `received` bytes of `bytes`, or errno `errnum`.
 */
/* Takes the message at the head of `fd` without waiting, with the fds
 * that came with it (at most TB_WIRE_MAX_FDS, into `fds`: the kernel
 * closes any beyond and sets MSG_CTRUNC in *msg_flags). ECONNRESET says
 * the peer closed with messages of ours unread: it is reported once,
 * before what the peer sent earlier, which is still queued and is read
 * instead (everything sent before a death arrives before the end). Gives
 * recvmsg's result, with errno set where it is negative. */
static ssize_t recv_with_fds(int fd, void *bytes, size_t size, int *fds,
                             size_t *nfds, int *msg_flags) {
  struct iovec iov = {.iov_base = bytes, .iov_len = size};
  union {
    struct cmsghdr header;
    char space[CMSG_SPACE(sizeof(int) * TB_WIRE_MAX_FDS)];
  } control;
  struct msghdr msg = {.msg_iov = &iov,
                       .msg_iovlen = 1,
                       .msg_control = control.space,
                       .msg_controllen = sizeof control.space};
  ssize_t received;
  do
    received = recvmsg(fd, &msg, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
  while (received < 0 && (errno == EINTR || errno == ECONNRESET));
  *nfds = 0;
  *msg_flags = received < 0 ? 0 : msg.msg_flags;
  for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); received >= 0 && c != NULL;
       c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
      continue;
    size_t n = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    for (size_t i = 0; i < n && *nfds < TB_WIRE_MAX_FDS; i++)
      memcpy(&fds[(*nfds)++], CMSG_DATA(c) + i * sizeof(int), sizeof(int));
  }
  return received;
}

static gboolean read_hello_bytes(int msg_flags, ssize_t received, int errnum,
                                 const uint8_t *bytes, const TbHello *ours,
                                 TbHello *peer, uint32_t *version,
                                 GError **error) {
  if (received < 0) {
    tb_set_system_error(error, TB_TENSOR_ERROR, errnum, "reading the hello");
    return FALSE;
  }
  if (received <= 0) {
    g_set_error(error, TB_TENSOR_ERROR, TB_ERR_CLOSED,
                "the peer closed the connection before its hello (a "
                "listener that refused this uid closes at once)");
    return FALSE;
  }
  if (msg_flags & (MSG_TRUNC | MSG_CTRUNC)) {
    g_set_error(error, TB_TENSOR_ERROR, TB_ERR_PROTOCOL,
                "the peer's hello is over %u bytes or came with fds",
                TB_HELLO_MAX_BYTES);
    return FALSE;
  }
  return tb_hello_parse(bytes, (size_t)received, peer, error) &&
         tb_hello_agree(ours, peer, version, error);
}

/* Reads the peer's hello by `deadline`, agrees on a version and, from
 * version 3, attaches the ring that came with it (*rx). Other fds are
 * closed. */
static gboolean read_hello(int fd, gint64 deadline, const TbHello *ours,
                           TbHello *peer, uint32_t *version, TbRing **rx,
                           GError **error) {
  *rx = NULL;
  if (!wait_readable(fd, ms_until(deadline), "hello from the peer", error))
    return FALSE;
  uint8_t bytes[TB_HELLO_MAX_BYTES];
  int fds[TB_WIRE_MAX_FDS];
  size_t nfds = 0;
  int msg_flags = 0;
  ssize_t received =
      recv_with_fds(fd, bytes, sizeof bytes, fds, &nfds, &msg_flags);
  int errnum = errno;
  int ring_fd = nfds > 0 ? fds[0] : -1; /* the first fd; any other is closed */
  for (size_t i = 1; i < nfds; i++)
    close(fds[i]);
  gboolean read = read_hello_bytes(msg_flags, received, errnum, bytes, ours,
                                   peer, version, error);
  read = read && attach_ring(ring_fd, *version, rx, error);
  if (ring_fd >= 0)
    close(ring_fd);
  return read;
}

/* The message a ring sends on the socket when it publishes to a peer that
 * sleeps in poll: a doorbell, which any reader of the socket drops. */
static void set_doorbells(tb_channel *channel) {
  g_autoptr(GVariant) doorbell =
      g_variant_ref_sink(tb_wire_doorbell(channel->version));
  tb_ring_set_doorbell(channel->tx, channel->fd, g_variant_get_data(doorbell),
                       g_variant_get_size(doorbell));
  tb_ring_set_doorbell(channel->rx, channel->fd, g_variant_get_data(doorbell),
                       g_variant_get_size(doorbell));
}

/* The peer's hello is read: from now on the mirror of its cache follows
 * the limits it stated, with acknowledgements from the version on that
 * has them; from version 3 on, the rings (tx is ours, rx the peer's) carry
 * the steady state. */
static void set_greeted(tb_channel *channel, const TbHello *peer,
                        uint32_t version, TbRing *rx) {
  channel->peer_hello = *peer;
  channel->version = version;
  channel->mirror = tb_peer_mirror_new(version >= TB_WIRE_VERSION_ACKS,
                                       peer->max_buffers, peer->max_bytes);
  if (rx == NULL) {
    g_clear_pointer(&channel->tx, tb_ring_free);
  } else {
    channel->rx = rx;
    channel->layout_ids = tb_layout_ids_new(peer->max_layouts);
    channel->layout_cache = tb_layout_cache_new(channel->hello.max_layouts);
    set_doorbells(channel);
    tb_ring_arm(channel->rx); /* the first record rings */
  }
  atomic_store(&channel->greeted, true);
}

/* Sends our hello and reads the peer's by `deadline`: the channel, or
 * NULL with `fd` closed. */
static tb_channel *greet_now(int fd, const TbHello *hello, gint64 deadline,
                             GError **error) {
  TbHello peer;
  uint32_t version;
  TbRing *tx = NULL, *rx = NULL;
  if (!send_hello(fd, hello, &tx, error) ||
      !read_hello(fd, deadline, hello, &peer, &version, &rx, error)) {
    tb_ring_free(tx);
    close(fd);
    return NULL;
  }
  tb_channel *channel = channel_wrap(fd, hello);
  channel->tx = tx;
  set_greeted(channel, &peer, version, rx);
  return channel;
}

/* Sends our hello; the peer's is read by the channel's first operation. A
 * peer that has already left (a child that said hello, sent its messages
 * and exited) still makes a channel: what it sent is read before
 * TB_ERR_CLOSED. */
static tb_channel *greet_later(int fd, const TbHello *hello, GError **error) {
  TbRing *tx = NULL;
  GError *failure = NULL;
  if (!send_hello(fd, hello, &tx, &failure) && failure->code != TB_ERR_CLOSED) {
    g_propagate_error(error, failure);
    close(fd);
    return NULL;
  }
  g_clear_error(&failure);
  tb_channel *channel = channel_wrap(fd, hello);
  channel->tx = tx;
  channel->hello_deadline =
      g_get_monotonic_time() +
      (gint64)TB_LISTENER_DEFAULT_HELLO_TIMEOUT_MS * G_TIME_SPAN_MILLISECOND;
  return channel;
}

/* FALSE with the error that closed the channel on our side. */
static gboolean channel_failure(tb_channel *channel, GError **error) {
  g_mutex_lock(&channel->lock);
  if (error != NULL && *error == NULL)
    *error = g_error_copy(channel->failure);
  g_mutex_unlock(&channel->lock);
  return FALSE;
}

/* Closes the channel on our side because of what the peer sent: every
 * later call fails with `why`, and the peer sees the channel closed. */
static void channel_fail(tb_channel *channel, const GError *why) {
  g_mutex_lock(&channel->lock);
  if (channel->failure == NULL)
    channel->failure = g_error_copy(why);
  g_mutex_unlock(&channel->lock);
  atomic_store(&channel->failed, true);
  shutdown(channel->fd, SHUT_RDWR);
}

/* Makes sure the peer's hello has been read, waiting up to timeout_ms
 * (negative: until the hello deadline). One thread reads it; the others
 * wait for it by their own deadlines. A failed hello fails every later
 * call alike; a wait that ends before the hello deadline fails only this
 * call, with TB_ERR_TIMEOUT. */
static gboolean await_hello(tb_channel *channel, int timeout_ms,
                            GError **error) {
  if (atomic_load(&channel->greeted))
    return !atomic_load(&channel->failed) || channel_failure(channel, error);
  gint64 deadline = channel->hello_deadline;
  if (timeout_ms >= 0)
    deadline = MIN(deadline, g_get_monotonic_time() +
                                 (gint64)timeout_ms * G_TIME_SPAN_MILLISECOND);
  GError *failure = NULL;
  g_mutex_lock(&channel->hello_lock);
  while (channel->hello_reading && !atomic_load(&channel->greeted) &&
         channel->hello_error == NULL)
    if (!g_cond_wait_until(&channel->hello_read, &channel->hello_lock,
                           deadline)) {
      g_set_error(&failure, TB_TENSOR_ERROR, TB_ERR_TIMEOUT,
                  "no hello from the peer within %d ms", timeout_ms);
      break;
    }
  gboolean greeted = atomic_load(&channel->greeted);
  if (!greeted && failure == NULL && channel->hello_error != NULL)
    failure = g_error_copy(channel->hello_error);
  if (!greeted && failure == NULL) {
    channel->hello_reading = TRUE;
    g_mutex_unlock(&channel->hello_lock);
    TbHello peer;
    uint32_t version;
    TbRing *rx = NULL;
    greeted = read_hello(channel->fd, deadline, &channel->hello, &peer,
                         &version, &rx, &failure);
    g_mutex_lock(&channel->hello_lock);
    if (greeted)
      set_greeted(channel, &peer, version, rx);
    else if (failure->code != TB_ERR_TIMEOUT ||
             g_get_monotonic_time() >= channel->hello_deadline)
      channel->hello_error = g_error_copy(failure);
    channel->hello_reading = FALSE;
    g_cond_broadcast(&channel->hello_read);
  }
  g_mutex_unlock(&channel->hello_lock);
  if (failure != NULL)
    g_propagate_error(error, failure);
  return greeted;
}

/* The end of each options struct version's last field (as
 * tb_alloc_options_sizes). */
#define TB_CHANNEL_OPTIONS_END(field)                                          \
  (offsetof(tb_channel_options, field) +                                       \
   sizeof(((tb_channel_options *)0)->field))
static const size_t tb_channel_options_sizes[] = {
    [1] = TB_CHANNEL_OPTIONS_END(max_mapped_bytes),
};
G_STATIC_ASSERT(G_N_ELEMENTS(tb_channel_options_sizes) ==
                TB_CHANNEL_OPTIONS_VERSION + 1);
G_STATIC_ASSERT(TB_CHANNEL_OPTIONS_END(max_mapped_bytes) ==
                sizeof(tb_channel_options));

size_t tb_channel_options_size(uint32_t version) {
  return version < G_N_ELEMENTS(tb_channel_options_sizes)
             ? tb_channel_options_sizes[version]
             : 0;
}

/* The most a channel may be told to keep: more buffers than a process may
 * have fds (the kernel's ceiling on RLIMIT_NOFILE), more bytes than a
 * process's address space (47 bits on x86-64), are no limit at all. */
#define TB_CHANNEL_MAX_MAX_BUFFERS (1u << 20)
#define TB_CHANNEL_MAX_MAX_MAPPED_BYTES (UINT64_C(1) << 47)

gboolean tb_channel_options_read(tb_channel_options *out,
                                 const tb_channel_options *opts,
                                 const char *name, GError **error) {
  static const tb_channel_options defaults = TB_CHANNEL_OPTIONS_INIT;
  *out = defaults;
  if (opts == NULL)
    return TRUE;
  size_t size = tb_channel_options_size(opts->version);
  if (size == 0) {
    g_set_error(error, TB_TENSOR_ERROR, TB_ERR_VERSION,
                "%s->version is %u; this library knows versions 1 to %u", name,
                opts->version, TB_CHANNEL_OPTIONS_VERSION);
    return FALSE;
  }
  memcpy(out, opts, size);
  uint64_t page = (uint64_t)sysconf(_SC_PAGESIZE);
  if (out->max_buffers == 0 || out->max_buffers > TB_CHANNEL_MAX_MAX_BUFFERS)
    g_set_error(error, TB_TENSOR_ERROR, TB_ERR_INVALID_ARGUMENT,
                "%s->max_buffers is %u; 1 to %u", name, out->max_buffers,
                TB_CHANNEL_MAX_MAX_BUFFERS);
  else if (out->max_mapped_bytes == 0 || out->max_mapped_bytes % page != 0 ||
           out->max_mapped_bytes > TB_CHANNEL_MAX_MAX_MAPPED_BYTES)
    g_set_error(error, TB_TENSOR_ERROR, TB_ERR_INVALID_ARGUMENT,
                "%s->max_mapped_bytes is %" G_GUINT64_FORMAT
                "; a whole number of %" G_GUINT64_FORMAT
                "-byte pages, at least one and at most %" G_GUINT64_FORMAT,
                name, out->max_mapped_bytes, page,
                TB_CHANNEL_MAX_MAX_MAPPED_BYTES);
  else
    return TRUE;
  return FALSE;
}

gboolean tb_channel_make_pair(tb_channel **a, tb_channel **b,
                              const tb_channel_options *caller_opts,
                              GError **error) {
  tb_channel_options opts;
  if (!tb_channel_options_read(&opts, caller_opts, "opts", error))
    return FALSE;
  TbHello hello = hello_of(&opts);
  int fds[2];
  if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, fds) != 0) {
    tb_set_system_error(error, TB_TENSOR_ERROR, errno, "socketpair");
    return FALSE;
  }
  /* Both hellos are sent before either is read: nothing waits. */
  TbRing *tx = NULL, *rx = NULL;
  if (!send_hello(fds[1], &hello, &tx, error)) {
    tb_ring_free(tx);
    close(fds[0]);
    close(fds[1]);
    return FALSE;
  }
  gint64 now = g_get_monotonic_time();
  *a = greet_now(fds[0], &hello, now, error);
  if (*a == NULL) {
    tb_ring_free(tx);
    close(fds[1]);
    return FALSE;
  }
  TbHello peer;
  uint32_t version;
  if (!read_hello(fds[1], now, &hello, &peer, &version, &rx, error)) {
    g_clear_pointer(a, tb_channel_unref);
    tb_ring_free(tx);
    close(fds[1]);
    return FALSE;
  }
  *b = channel_wrap(fds[1], &hello);
  (*b)->tx = tx;
  set_greeted(*b, &peer, version, rx);
  return TRUE;
}

tb_channel *tb_channel_adopt_fd(int fd, const tb_channel_options *caller_opts,
                                GError **error) {
  tb_channel_options opts;
  if (!tb_channel_options_read(&opts, caller_opts, "opts", error))
    return NULL;
  TbHello hello = hello_of(&opts);
  int type = 0, domain = 0;
  socklen_t length = sizeof type;
  gboolean is_socket =
      getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &length) == 0 &&
      (length = sizeof domain,
       getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &length) == 0);
  if (!is_socket || type != SOCK_SEQPACKET || domain != AF_UNIX) {
    g_set_error(error, TB_TENSOR_ERROR, TB_ERR_BAD_FD,
                "fd %d is not a Unix seqpacket socket", fd);
    return NULL;
  }
  int own = fcntl(fd, F_DUPFD_CLOEXEC, 3);
  if (own < 0) {
    tb_set_system_error(error, TB_TENSOR_ERROR, errno, "dup of fd %d", fd);
    return NULL;
  }
  return greet_later(own, &hello, error);
}

struct tb_listener {
  int fd;
  char *path;   /* the file to remove, or NULL for abstract names */
  GArray *uids; /* uid_t allowed to connect; NULL: any */
  int hello_timeout_ms;
  TbHello hello; /* of the channels it accepts */
};

static gboolean socket_address(const char *path, struct sockaddr_un *address,
                               socklen_t *length, GError **error) {
  size_t n = strlen(path);
  if (n == 0 || n >= sizeof address->sun_path) {
    g_set_error(error, TB_TENSOR_ERROR, TB_ERR_INVALID_ARGUMENT,
                "path \"%s\" must have 1 to %zu bytes", path,
                sizeof address->sun_path - 1);
    return FALSE;
  }
  memset(address, 0, sizeof *address);
  address->sun_family = AF_UNIX;
  memcpy(address->sun_path, path, n);
  if (path[0] == '@')
    address->sun_path[0] = '\0'; /* abstract: no file, gone with the socket */
  *length = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n +
                        (path[0] == '@' ? 0 : 1));
  return TRUE;
}

/* The end of each options struct version's last field (as
 * tb_alloc_options_sizes). */
#define TB_LISTENER_OPTIONS_END(field)                                         \
  (offsetof(tb_listener_options, field) +                                      \
   sizeof(((tb_listener_options *)0)->field))
#define TB_LISTENER_OPTIONS_LAST channel_options
static const size_t tb_listener_options_sizes[] = {
    [1] = TB_LISTENER_OPTIONS_END(hello_timeout_ms),
    [2] = TB_LISTENER_OPTIONS_END(channel_options),
};
G_STATIC_ASSERT(G_N_ELEMENTS(tb_listener_options_sizes) ==
                TB_LISTENER_OPTIONS_VERSION + 1);
G_STATIC_ASSERT((TB_LISTENER_OPTIONS_END(TB_LISTENER_OPTIONS_LAST) +
                 G_ALIGNOF(tb_listener_options) - 1) /
                    G_ALIGNOF(tb_listener_options) *
                    G_ALIGNOF(tb_listener_options) ==
                sizeof(tb_listener_options));

size_t tb_listener_options_size(uint32_t version) {
  return version < G_N_ELEMENTS(tb_listener_options_sizes)
             ? tb_listener_options_sizes[version]
             : 0;
}

/* The caller's options over the defaults, checked; *channel gets the
 * accepted channels' options. */
static gboolean read_listener_options(tb_listener_options *out,
                                      tb_channel_options *channel,
                                      const tb_listener_options *opts,
                                      GError **error) {
  static const tb_listener_options defaults = TB_LISTENER_OPTIONS_INIT;
  *out = defaults;
  if (opts == NULL)
    return tb_channel_options_read(channel, NULL, NULL, error);
  size_t size = tb_listener_options_size(opts->version);
  if (size == 0) {
    g_set_error(error, TB_TENSOR_ERROR, TB_ERR_VERSION,
                "opts->version is %u; this library knows versions 1 to %u",
                opts->version, TB_LISTENER_OPTIONS_VERSION);
    return FALSE;
  }
  memcpy(out, opts, size);
  const char *bad = NULL;
  if (out->mode & ~0777u)
    bad = "opts->mode has bits beyond 0777";
  else if (out->flags & ~TB_LISTENER_ANY_UID)
    bad = "opts->flags has unknown bits";
  else if (out->uids == NULL && out->nuids > 0)
    bad = "opts->uids is NULL with opts->nuids > 0";
  else if ((out->flags & TB_LISTENER_ANY_UID) && out->nuids > 0)
    bad = "opts->flags has TB_LISTENER_ANY_UID and opts->uids lists uids";
  else if (out->hello_timeout_ms <= 0)
    bad = "opts->hello_timeout_ms is not positive";
  if (bad != NULL) {
    g_set_error(error, TB_TENSOR_ERROR, TB_ERR_INVALID_ARGUMENT, "%s", bad);
    return FALSE;
  }
  return tb_channel_options_read(channel, out->channel_options,
                                 "opts->channel_options", error);
}

tb_listener *tb_listener_open(const char *path,
                              const tb_listener_options *caller_opts,
                              GError **error) {
  tb_listener_options opts;
  tb_channel_options channel_opts;
  struct sockaddr_un address;
  socklen_t length;
  if (!read_listener_options(&opts, &channel_opts, caller_opts, error) ||
      !socket_address(path, &address, &length, error))
    return NULL;
  int fd = seqpacket_socket(error);
  if (fd < 0)
    return NULL;
  /* The mode is set between bind and listen: no connection is taken while
   * the file has the process umask's bits. */
  const char *what = "listening on";
  gboolean ok = bind(fd, (struct sockaddr *)&address, length) == 0;
  gboolean bound = ok;
  if (ok && path[0] != '@')
    ok = (what = "setting the mode of", chmod(path, opts.mode) == 0);
  if (ok)
    ok = (what = "listening on", listen(fd, 16) == 0);
  if (!ok) {
    tb_set_system_error(error, TB_TENSOR_ERROR, errno, "%s \"%s\"", what, path);
    if (bound && path[0] != '@')
      unlink(path);
    close(fd);
    return NULL;
  }
  tb_listener *listener = g_new0(tb_listener, 1);
  tb_live_add(1);
  listener->fd = fd;
  listener->path = path[0] == '@' ? NULL : g_strdup(path);
  listener->hello_timeout_ms = opts.hello_timeout_ms;
  listener->hello = hello_of(&channel_opts);
  if (!(opts.flags & TB_LISTENER_ANY_UID)) {
    listener->uids = g_array_new(FALSE, FALSE, sizeof(uid_t));
    uid_t own = geteuid();
    if (opts.nuids == 0)
      g_array_append_val(listener->uids, own);
    for (size_t i = 0; i < opts.nuids; i++) {
      uid_t uid = (uid_t)opts.uids[i];
      g_array_append_val(listener->uids, uid);
    }
  }
  return listener;
}

static gboolean uid_allowed(const tb_listener *listener, uid_t uid) {
  if (listener->uids == NULL)
    return TRUE;
  for (guint i = 0; i < listener->uids->len; i++)
    if (g_array_index(listener->uids, uid_t, i) == uid)
      return TRUE;
  return FALSE;
}

tb_channel *tb_listener_take(tb_listener *listener, int timeout_ms,
                             GError **error) {
  gint64 now = g_get_monotonic_time();
  gint64 deadline = timeout_ms < 0
                        ? G_MAXINT64
                        : now + (gint64)timeout_ms * G_TIME_SPAN_MILLISECOND;
  unsigned refused = 0;
  uid_t refused_uid = 0;
  for (;;) {
    int left_ms = deadline == G_MAXINT64 ? -1 : ms_until(deadline);
    GError *waited = NULL;
    if (!wait_readable(listener->fd, left_ms, "connection", &waited)) {
      if (refused > 0 && waited->code == TB_ERR_TIMEOUT)
        g_prefix_error(&waited,
                       "%u connection(s) refused (last from uid %u, not "
                       "allowed by the listener's options); ",
                       refused, (unsigned)refused_uid);
      g_propagate_error(error, waited);
      return NULL;
    }
    int fd = accept4(listener->fd, NULL, NULL, SOCK_CLOEXEC);
    if (fd < 0 && (errno == EAGAIN || errno == ECONNABORTED || errno == EINTR))
      continue; /* the connection went away before it was taken */
    if (fd < 0) {
      tb_set_system_error(error, TB_TENSOR_ERROR, errno, "accept");
      return NULL;
    }
    struct ucred peer = {0};
    socklen_t length = sizeof peer;
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &peer, &length) != 0 ||
        !uid_allowed(listener, peer.uid)) {
      /* Closed before reading anything the peer sent. */
      refused++;
      refused_uid = peer.uid;
      close(fd);
      continue;
    }
    gint64 hello_deadline = MIN(
        deadline, g_get_monotonic_time() + (gint64)listener->hello_timeout_ms *
                                               G_TIME_SPAN_MILLISECOND);
    return greet_now(fd, &listener->hello, hello_deadline, error);
  }
}

int tb_listener_fd(const tb_listener *listener) {
  return listener != NULL ? listener->fd : -1;
}

void tb_listener_free(tb_listener *listener) {
  if (listener == NULL)
    return;
  close(listener->fd);
  if (listener->path != NULL)
    unlink(listener->path);
  g_free(listener->path);
  if (listener->uids != NULL)
    g_array_unref(listener->uids);
  g_free(listener);
  tb_live_add(-1);
}

tb_channel *tb_channel_dial(const char *path, int timeout_ms,
                            const tb_channel_options *caller_opts,
                            GError **error) {
  tb_channel_options opts;
  struct sockaddr_un address;
  socklen_t length;
  if (!tb_channel_options_read(&opts, caller_opts, "opts", error) ||
      !socket_address(path, &address, &length, error))
    return NULL;
  TbHello hello = hello_of(&opts);
  gint64 deadline =
      g_get_monotonic_time() + (gint64)timeout_ms * G_TIME_SPAN_MILLISECOND;
  for (;;) {
    int fd = seqpacket_socket(error);
    if (fd < 0)
      return NULL;
    if (connect(fd, (struct sockaddr *)&address, length) == 0)
      return greet_later(fd, &hello, error);
    int errnum = errno;
    close(fd);
    /* A listener that does not exist yet may be starting up: retry. */
    gboolean retry = errnum == ENOENT || errnum == ECONNREFUSED;
    if (!retry) {
      tb_set_system_error(error, TB_TENSOR_ERROR, errnum,
                          "connecting to \"%s\"", path);
      return NULL;
    }
    if (timeout_ms >= 0 && g_get_monotonic_time() >= deadline) {
      g_set_error(error, TB_TENSOR_ERROR, TB_ERR_TIMEOUT,
                  "nothing listened on \"%s\" within %d ms", path, timeout_ms);
      return NULL;
    }
    g_usleep(2 * G_TIME_SPAN_MILLISECOND);
  }
}

gboolean tb_channel_agreed(tb_channel *channel, uint32_t *version, TbHello *own,
                           TbHello *peer, GError **error) {
  if (!await_hello(channel, -1, error))
    return FALSE;
  *version = channel->version;
  *own = channel->hello;
  *peer = channel->peer_hello;
  return TRUE;
}

gboolean tb_channel_peer(const tb_channel *channel, int64_t *pid, int64_t *uid,
                         int64_t *gid) {
  if (channel->peer.pid <= 0)
    return FALSE;
  *pid = channel->peer.pid;
  *uid = channel->peer.uid;
  *gid = channel->peer.gid;
  return TRUE;
}

/* ---- messages ----------------------------------------------------------- */

/* Sends one message; with MSG_DONTWAIT in `flags`, *would_block says
 * whether it failed for want of room. */
static gboolean send_message(tb_channel *channel, GVariant *message,
                             const int *fds, size_t nfds, int flags,
                             gboolean *would_block, GError **error) {
  g_autoptr(GVariant) owned = g_variant_ref_sink(message);
  if (!tb_wire_check_size(owned, error))
    return FALSE;
  ssize_t sent = send_with_fds(channel->fd, g_variant_get_data(owned),
                               g_variant_get_size(owned), fds, nfds, flags);
  if (would_block != NULL)
    *would_block = sent < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
  if (sent >= 0)
    return TRUE;
  if (errno == EPIPE || errno == ECONNRESET || errno == ENOTCONN)
    g_set_error(error, TB_TENSOR_ERROR, TB_ERR_CLOSED,
                "the peer closed the channel");
  else
    tb_set_system_error(error, TB_TENSOR_ERROR, errno, "sendmsg");
  return FALSE;
}

/* Whether the peer has gone: a seqpacket recvmsg returns 0 both at the end
 * of the connection and for an empty message, and only the first may give
 * the peer's pool buffers back. */
static gboolean peer_hung_up(int fd) {
  struct pollfd p = {.fd = fd, .events = POLLRDHUP};
  return poll(&p, 1, 0) == 1 && (p.revents & (POLLHUP | POLLRDHUP));
}

/* The peer has gone: nothing more will arrive, and it can no longer
 * release what it held. */
static void note_hang_up(tb_channel *channel, GError **error) {
  g_set_error(error, TB_TENSOR_ERROR, TB_ERR_CLOSED,
              "the peer closed the channel");
  atomic_store(&channel->hung_up, true);
  drop_peer_leases(channel);
}

/* Whether this process has no fd free: then the kernel drops the fds of
 * a message it delivers (MSG_CTRUNC), and the sender, not having our ack,
 * sends them again with the buffers' next message. */
static gboolean out_of_fds(int fd) {
  int probe = fcntl(fd, F_DUPFD_CLOEXEC, 0);
  if (probe >= 0) {
    close(probe);
    return FALSE;
  }
  return errno == EMFILE;
}

/* Reads the message at the head of the socket (the caller is the reader
 * and has peeked at it). Every fd that arrives is owned by the message (and
 * closed with it), whatever else is wrong with it. */
static TbMessage *read_message(tb_channel *channel, GError **error) {
  g_autofree uint8_t *bytes = g_malloc(TB_WIRE_MAX_BYTES);
  g_autoptr(TbMessage) message = g_new0(TbMessage, 1);
  int msg_flags = 0;
  ssize_t received =
      recv_with_fds(channel->fd, bytes, TB_WIRE_MAX_BYTES, message->fds,
                    &message->nfds, &msg_flags);
  if (received < 0) {
    tb_set_system_error(error, TB_TENSOR_ERROR, errno, "recvmsg");
    return NULL;
  }
  if (received <= 0 && peer_hung_up(channel->fd)) {
    note_hang_up(channel, error);
    return NULL;
  }
  if (received <= 0) {
    g_set_error(error, TB_TENSOR_ERROR, TB_ERR_PROTOCOL,
                "the peer sent an empty message");
    return NULL;
  }
  if ((msg_flags & MSG_CTRUNC) && out_of_fds(channel->fd)) {
    tb_set_system_error(error, TB_TENSOR_ERROR, EMFILE,
                        "receiving a message's fds (the kernel dropped "
                        "them: no fd is free)");
    return NULL;
  }
  if (msg_flags & (MSG_TRUNC | MSG_CTRUNC)) {
    g_set_error(error, TB_TENSOR_ERROR, TB_ERR_PROTOCOL,
                "a message over %u bytes or %d fds was refused",
                TB_WIRE_MAX_BYTES, TB_WIRE_MAX_FDS);
    return NULL;
  }
  message->body = tb_wire_open(bytes, (size_t)received, channel->version,
                               &message->kind, error);
  return message->body != NULL ? g_steal_pointer(&message) : NULL;
}

static void flush_releases(tb_channel *channel);
/* How long serve_ring_releases looks for releases. */
typedef enum TbServe {
  SERVE_NOW,  /* pops what is there */
  SERVE_WAIT, /* and, if nothing, spins a little (a peer running beside us
                 releases within microseconds, and neither side makes a
                 system call), then arms the ring so that the next release
                 rings the socket: for a caller about to poll it */
} TbServe;

static unsigned serve_ring_releases(tb_channel *channel, TbServe how);

static void give_back_lease(tb_channel *channel, uint64_t token);
static unsigned pop_releases(tb_channel *channel);
static void break_channel(tb_channel *channel);

static void send_acks(tb_channel *channel, GVariant *ack);

/* An ack: the peer imported buffers it now holds. A malformed one (from a
 * hostile peer) is ignored: its buffers' fds go again. */
static void handle_ack(tb_channel *channel, TbMessage *message) {
  uint64_t serial;
  TbWireAck acks[TB_WIRE_MAX_BUFFERS];
  size_t n;
  if (!tb_wire_ack_read(message->body, &serial, acks, &n))
    return;
  g_mutex_lock(&channel->lock);
  for (size_t i = 0; i < n; i++)
    tb_peer_mirror_ack(channel->mirror, serial, acks[i].id, acks[i].window);
  g_mutex_unlock(&channel->lock);
}

static void handle_release(tb_channel *channel, TbMessage *message) {
  if (message->kind == TB_WIRE_ACK) {
    handle_ack(channel, message);
    return;
  }
  give_back_lease(channel, tb_wire_lease(message->body));
}

/* What waits at the head of the socket: nothing, the end, a message whose
 * kind cannot be read (any receive takes it and says what is wrong), or a
 * message's TbWireKind. */
enum { HEAD_NOTHING = 0, HEAD_CLOSED = 1, HEAD_UNREADABLE = 2 };

/* Peeks at the next message's (u version, y kind) header without taking
 * it (no control buffer: its fds stay in the socket). */
static int peek_head(tb_channel *channel) {
  uint8_t header[5];
  ssize_t n;
  /* ECONNRESET is reported once, before what the peer sent earlier. */
  do
    n = recv(channel->fd, header, sizeof header, MSG_PEEK | MSG_DONTWAIT);
  while (n < 0 && (errno == EINTR || errno == ECONNRESET));
  if (n < 0)
    return errno == EAGAIN || errno == EWOULDBLOCK ? HEAD_NOTHING
                                                   : HEAD_UNREADABLE;
  if (n == 0 && peer_hung_up(channel->fd))
    return HEAD_CLOSED;
  if (n < (ssize_t)sizeof header)
    return HEAD_UNREADABLE;
  switch (header[4]) {
  case TB_WIRE_ACK:
    return TB_WIRE_RELEASE; /* taken, and applied, as releases are */
  case TB_WIRE_TENSOR:
  case TB_WIRE_FENCE:
  case TB_WIRE_RELEASE:
  case TB_WIRE_DOORBELL:
    return header[4];
  default:
    return HEAD_UNREADABLE;
  }
}

/* Peeks at the next message (or the end), waiting up to `deadline` for
 * one if none is there yet: a message that is there already costs no
 * poll. */
static int wait_head(tb_channel *channel, gint64 deadline) {
  int head = peek_head(channel);
  if (head != HEAD_NOTHING)
    return head;
  struct pollfd p = {.fd = channel->fd, .events = POLLIN};
  return poll_until(&p, 1, deadline) > 0 ? peek_head(channel) : HEAD_NOTHING;
}

/* Whether a message of this kind is taken by whichever reader finds it
 * at the head: releases and acks (applied) and doorbells (dropped). */
static gboolean is_housekeeping(int head) {
  return head == TB_WIRE_RELEASE || head == TB_WIRE_ACK ||
         head == TB_WIRE_DOORBELL;
}

/* Takes the release, ack or doorbell at the head; a release gives its
 * lease back, an ack marks its buffers held. */
static gboolean take_housekeeping(tb_channel *channel, GError **error) {
  g_autoptr(TbMessage) message = read_message(channel, error);
  if (message != NULL && message->kind != TB_WIRE_DOORBELL)
    handle_release(channel, message); /* a release or an ack */
  return message != NULL;
}

/* Releases taken past a receive's deadline before it gives up: under a
 * flood of releases the deadline still holds, and a receive with timeout 0
 * still reaches a message queued behind a few releases. */
#define TB_CHANNEL_LATE_RELEASES 64

/* Builds what a receive returns from its message; runs while the caller is
 * the reader, so that messages are imported in the order they came. */
typedef gpointer (*TbFinish)(tb_channel *channel, TbMessage *message,
                             GError **error);

/* Waits on `changed` up to `deadline`; FALSE once it has passed. */
static gboolean wait_changed(tb_channel *channel, gint64 deadline) {
  gboolean woken = TRUE;
  channel->waiting++;
  if (deadline < 0)
    g_cond_wait(&channel->changed, &channel->lock);
  else
    woken = g_cond_wait_until(&channel->changed, &channel->lock, deadline);
  channel->waiting--;
  return woken;
}

/* Wakes the threads waiting on `changed` (the caller holds `lock`). GLib's
 * broadcast is a system call even with nobody waiting: skipped then. */
static void announce_change(tb_channel *channel) {
  if (channel->waiting > 0)
    g_cond_broadcast(&channel->changed);
}

/* The next message of `kind` on the socket, as `finish` makes it, by
 * `deadline` (monotonic µs, -1 none; `timeout_ms` names it in errors),
 * taking the releases and doorbells before it. A message of another kind
 * at the head is left for its receiver: this one waits for it to be
 * taken. */
static gpointer receive(tb_channel *channel, TbWireKind kind, TbFinish finish,
                        gint64 deadline, int timeout_ms, GError **error) {
  uint64_t blocked_at = G_MAXUINT64; /* `taken` when the head was not ours */
  unsigned late = 0;
  gpointer result = NULL;
  gboolean done = FALSE;
  g_mutex_lock(&channel->lock);
  while (!done) {
    if (channel->reading || channel->taken == blocked_at) {
      if (!wait_changed(channel, deadline)) {
        g_set_error(error, TB_TENSOR_ERROR, TB_ERR_TIMEOUT,
                    "no message within %d ms", timeout_ms);
        break;
      }
      continue;
    }
    channel->reading = TRUE;
    g_mutex_unlock(&channel->lock);
    int head = wait_head(channel, deadline);
    gboolean took =
        is_housekeeping(head) || head == (int)kind || head == HEAD_UNREADABLE;
    if (head == HEAD_NOTHING) {
      g_set_error(error, TB_TENSOR_ERROR, TB_ERR_TIMEOUT,
                  "no message within %d ms", timeout_ms);
      done = TRUE;
    } else if (head == HEAD_CLOSED) {
      note_hang_up(channel, error);
      done = TRUE;
    } else if (is_housekeeping(head)) {
      done = !take_housekeeping(channel, error);
      if (!done && deadline >= 0 && g_get_monotonic_time() >= deadline &&
          ++late > TB_CHANNEL_LATE_RELEASES) {
        g_set_error(error, TB_TENSOR_ERROR, TB_ERR_TIMEOUT,
                    "no message within %d ms", timeout_ms);
        done = TRUE;
      }
    } else if (took) {
      g_autoptr(TbMessage) message = read_message(channel, error);
      if (message != NULL && message->kind != kind)
        g_set_error(error, TB_TENSOR_ERROR, TB_ERR_PROTOCOL,
                    "expected a '%c' message; a '%c' message arrived", kind,
                    message->kind);
      else if (message != NULL)
        result = finish(channel, message, error);
      done = TRUE;
    }
    g_mutex_lock(&channel->lock);
    channel->reading = FALSE;
    if (took)
      channel->taken++;
    else if (!done)
      blocked_at = channel->taken;
    announce_change(channel);
  }
  g_mutex_unlock(&channel->lock);
  return result;
}

gboolean tb_channel_hung_up(tb_channel *channel) {
  return atomic_load(&channel->hung_up);
}

/* Most releases one channel's serve takes in a row before the pool looks
 * at its free tensors again. */
#define TB_CHANNEL_RELEASE_BATCH 64

/* Takes the releases at the head of a channel whose reader we are; stops
 * at anything else, which is left for a receive. Gives how many it took,
 * and in *blocked whether a message of another kind stopped it. */
static unsigned serve_one(tb_channel *channel, gboolean *blocked) {
  unsigned took = 0;
  *blocked = FALSE;
  while (took < TB_CHANNEL_RELEASE_BATCH) {
    int head = peek_head(channel);
    if (head == HEAD_CLOSED)
      note_hang_up(channel, NULL);
    if (!is_housekeeping(head)) {
      *blocked = head != HEAD_NOTHING && head != HEAD_CLOSED;
      break;
    }
    take_housekeeping(channel, NULL); /* a malformed one is dropped */
    took++;
  }
  return took;
}

/* Version 3's releases on `channels`' rings: applied if any have come;
 * else the rings are armed (serve_ring_releases, SERVE_WAIT). Gives how
 * many were applied. */
static unsigned serve_rings(tb_channel *const *channels, size_t n) {
  unsigned applied = 0;
  for (size_t i = 0; i < n; i++)
    if (await_hello(channels[i], 0, NULL))
      applied += serve_ring_releases(channels[i], SERVE_NOW);
  for (size_t i = 0; applied == 0 && i < n; i++)
    if (atomic_load(&channels[i]->greeted))
      applied += serve_ring_releases(channels[i], SERVE_WAIT);
  return applied;
}

/* A pool that waits on one channel of version 3 sleeps on the ring's
 * release lane until `deadline` (a futex: the peer's release wakes it with
 * one system call, where a doorbell costs a message, a poll and a read).
 * FALSE if another thread pops the releases. */
static gboolean wait_ring_release(tb_channel *channel, gint64 deadline) {
  if (!g_mutex_trylock(&channel->serve_lock))
    return FALSE;
  TbRingRecord record;
  GError *ring_error = NULL;
  int64_t until = deadline >= G_MAXINT64 / 1000 ? TB_RING_FOREVER
                                                : (int64_t)deadline * 1000;
  if (tb_ring_pop(channel->tx, &record, until, &ring_error)) {
    give_back_lease(channel, record.generation);
    pop_releases(channel);
  } else {
    if (ring_error->code == TB_ERR_PROTOCOL)
      break_channel(channel);
    /* A peer that died cannot wake us: its socket says so. */
    gboolean gone =
        ring_error->code == TB_ERR_CLOSED ||
        (ring_error->code == TB_ERR_TIMEOUT && peer_hung_up(channel->fd));
    g_error_free(ring_error);
    g_mutex_unlock(&channel->serve_lock);
    if (gone)
      note_hang_up(channel, NULL);
    return TRUE;
  }
  g_mutex_unlock(&channel->serve_lock);
  return TRUE;
}

/* Serves a channel whose reader we are (if `ready`: something waits), then
 * lets the next reader in. */
static void serve_claimed(tb_channel *channel, gboolean ready) {
  gboolean blocked = FALSE;
  unsigned took = ready ? serve_one(channel, &blocked) : 0;
  serve_ring_releases(channel, SERVE_NOW);
  g_mutex_lock(&channel->lock);
  channel->reading = FALSE;
  channel->taken += took;
  if (blocked)
    channel->releases_blocked_at = channel->taken;
  announce_change(channel);
  g_mutex_unlock(&channel->lock);
}

gboolean tb_channel_serve_releases(tb_channel *const *channels, size_t n,
                                   gint64 deadline) {
  if (n == 1 && await_hello(channels[0], 0, NULL) && channels[0]->tx != NULL &&
      !tb_channel_hung_up(channels[0]))
    return wait_ring_release(channels[0], deadline);
  if (serve_rings(channels, n) > 0)
    return TRUE;
  g_autofree struct pollfd *fds = g_new0(struct pollfd, MAX(n, 1));
  g_autofree tb_channel **claimed = g_new0(tb_channel *, MAX(n, 1));
  nfds_t count = 0;
  for (size_t i = 0; i < n; i++) {
    tb_channel *channel = channels[i];
    if (tb_channel_hung_up(channel))
      continue; /* readable for ever, with no release left to bring */
    if (!await_hello(channel, 0, NULL))
      continue; /* the peer's hello is not here yet: nothing to serve */
    g_mutex_lock(&channel->lock);
    gboolean free_to_read =
        !channel->reading && channel->taken != channel->releases_blocked_at;
    if (free_to_read)
      channel->reading = TRUE;
    g_mutex_unlock(&channel->lock);
    if (!free_to_read)
      continue;
    claimed[count] = channel;
    fds[count++] = (struct pollfd){.fd = channel->fd, .events = POLLIN};
  }
  if (count == 0)
    return FALSE;
  gboolean ready = poll_until(fds, count, deadline) > 0;
  for (nfds_t i = 0; i < count; i++)
    serve_claimed(claimed[i], ready && fds[i].revents != 0);
  return TRUE;
}

/* A sender that waits for acks takes the releases and acks at the head
 * of the channel, unless another thread reads it. Never waits. */
static void take_acks(tb_channel *channel) {
  g_mutex_lock(&channel->lock);
  gboolean free_to_read =
      !channel->reading && channel->taken != channel->releases_blocked_at;
  if (free_to_read)
    channel->reading = TRUE;
  g_mutex_unlock(&channel->lock);
  if (free_to_read)
    serve_claimed(channel, TRUE);
}

/* ---- tensors ------------------------------------------------------------ */

/* Whether the buffer's fd is a memfd: SHM, or CUDA_HOST (a memfd the GPU
 * has registered) with an fd. */
static gboolean is_memfd(const tb_buffer *buffer) {
  return buffer->backend == &tb_backend_memfd ||
         (buffer->backend == &tb_backend_cuda_host && buffer->fd >= 0);
}

/* Makes the buffer's fd refuse writable mappings from now on, for a
 * read-only share; the sender's existing mapping keeps writing. */
static gboolean seal_read_only(tb_buffer *buffer, GError **error) {
  if (!is_memfd(buffer)) {
    g_set_error(error, TB_TENSOR_ERROR, TB_ERR_UNSUPPORTED,
                "a read-only share of %s memory cannot be enforced (only "
                "memfds can be sealed against writing); share it writable",
                buffer->backend->name);
    return FALSE;
  }
  /* Sealed by an earlier share: a peer may since have added F_SEAL_SEAL,
   * which would refuse even a seal that is already there. */
  int seals = fcntl(buffer->fd, F_GET_SEALS);
  if (seals >= 0 && (seals & F_SEAL_FUTURE_WRITE))
    return TRUE;
  if (fcntl(buffer->fd, F_ADD_SEALS, F_SEAL_FUTURE_WRITE) != 0) {
    g_set_error(error, TB_TENSOR_ERROR, TB_ERR_UNSUPPORTED,
                "cannot seal this shared memory against writing for a "
                "read-only share: %s",
                g_strerror(errno));
    return FALSE;
  }
  return TRUE;
}

/* A writable share of a memfd that an earlier read-only share sealed
 * cannot be honoured (the peer could map it read-only only): refused
 * rather than made read-only behind the caller's back. */
static gboolean check_writable(tb_buffer *buffer, GError **error) {
  if (!is_memfd(buffer))
    return TRUE;
  int seals = fcntl(buffer->fd, F_GET_SEALS);
  if (seals < 0 || !(seals & F_SEAL_FUTURE_WRITE))
    return TRUE;
  g_set_error(error, TB_TENSOR_ERROR, TB_ERR_UNSUPPORTED,
              "this buffer was shared read-only before, which sealed it "
              "against new writable mappings; share it with "
              "TB_SEND_READ_ONLY");
  return FALSE;
}

static gboolean check_send_flags(uint32_t flags, GError **error) {
  if (flags & ~TB_SEND_READ_ONLY) {
    g_set_error(error, TB_TENSOR_ERROR, TB_ERR_INVALID_ARGUMENT,
                "flags is 0x%x; unknown bits 0x%x", flags,
                flags & ~TB_SEND_READ_ONLY);
    return FALSE;
  }
  return TRUE;
}

/* Dups the fds of the buffers marked in `with_fd` (sealing them first for a
 * read-only share) and numbers them in `fd_index` (-1 for the others). On
 * failure nothing is left open. */
static gboolean attach_fds(tb_buffer *const *buffers, const gboolean *with_fd,
                           size_t n, gboolean read_only, int32_t *fd_index,
                           int *fds, size_t *nfds, GError **error) {
  *nfds = 0;
  for (size_t i = 0; i < n; i++) {
    fd_index[i] = -1;
    if (!with_fd[i])
      continue;
    int fd = -1;
    if (buffers[i]->fd < 0)
      g_set_error(error, TB_TENSOR_ERROR, TB_ERR_UNSUPPORTED,
                  "%s memory has no fd to send; allocate with memory shm",
                  buffers[i]->backend->name);
    else if (read_only ? seal_read_only(buffers[i], error)
                       : check_writable(buffers[i], error))
      fd = tb_buffer_dup_fd(buffers[i], error);
    if (fd < 0) {
      for (size_t j = 0; j < *nfds; j++)
        close(fds[j]);
      return FALSE;
    }
    fd_index[i] = (int32_t)*nfds;
    fds[(*nfds)++] = fd;
  }
  return TRUE;
}

/* The description and new fds of `tensor`, for tb_tensor_export. */
static GVariant *describe(const tb_tensor *tensor, uint32_t flags, int *fds,
                          size_t *nfds, GError **error) {
  if (!check_send_flags(flags, error))
    return NULL;
  tb_buffer *buffers[TB_WIRE_MAX_BUFFERS];
  gboolean with_fd[TB_WIRE_MAX_BUFFERS];
  int32_t fd_index[TB_WIRE_MAX_BUFFERS];
  size_t n = tb_tensor_collect_buffers(tensor, buffers);
  gboolean read_only = (flags & TB_SEND_READ_ONLY) != 0;
  for (size_t i = 0; i < n; i++)
    with_fd[i] = TRUE;
  if (!attach_fds(buffers, with_fd, n, read_only, fd_index, fds, nfds, error))
    return NULL;
  return tb_wire_tensor(tb_wire_export_version(buffers, n), tensor, buffers,
                        fd_index, n, read_only, 0, NULL, 0, 0, 0);
}

gboolean tb_tensor_describe(const tb_tensor *tensor, uint32_t flags,
                            uint8_t *descriptor, size_t capacity,
                            size_t *length, int *fds, size_t *nfds,
                            GError **error) {
  int made[TB_WIRE_MAX_BUFFERS];
  size_t nmade = 0;
  g_autoptr(GVariant) message = describe(tensor, flags, made, &nmade, error);
  if (message == NULL)
    return FALSE;
  g_variant_ref_sink(message);
  size_t size = g_variant_get_size(message);
  gboolean fits = tb_wire_check_size(message, error);
  if (fits && size > capacity) {
    g_set_error(error, TB_TENSOR_ERROR, TB_ERR_OUT_OF_RANGE,
                "capacity is %zu; the descriptor needs %zu bytes", capacity,
                size);
    fits = FALSE;
  } else if (fits && nmade > *nfds) {
    g_set_error(error, TB_TENSOR_ERROR, TB_ERR_OUT_OF_RANGE,
                "*nfds (the capacity of fds) is %zu; the tensor needs %zu fds",
                *nfds, nmade);
    fits = FALSE;
  }
  *length = size;
  if (!fits) {
    for (size_t i = 0; i < nmade; i++)
      close(made[i]);
    if (nmade > *nfds)
      *nfds = nmade;
    return FALSE;
  }
  memcpy(descriptor, g_variant_get_data(message), size);
  memcpy(fds, made, nmade * sizeof *made);
  *nfds = nmade;
  return TRUE;
}

tb_tensor *tb_tensor_from_description(const uint8_t *descriptor, size_t length,
                                      const int *fds, size_t nfds,
                                      GError **error) {
  if (length > TB_WIRE_MAX_BYTES) {
    g_set_error(error, TB_TENSOR_ERROR, TB_ERR_PROTOCOL,
                "length is %zu; descriptors are at most %u bytes", length,
                TB_WIRE_MAX_BYTES);
    return NULL;
  }
  TbWireKind kind;
  g_autoptr(GVariant) message =
      tb_wire_open(descriptor, length, 0, &kind, error);
  if (message == NULL)
    return NULL;
  if (kind != TB_WIRE_TENSOR) {
    g_set_error(error, TB_TENSOR_ERROR, TB_ERR_PROTOCOL,
                "descriptor is a '%c' message, not a tensor", kind);
    return NULL;
  }
  TbWireImported imported[TB_WIRE_MAX_BUFFERS];
  size_t nimported;
  tb_tensor *tensor = tb_wire_parse_tensor(message, fds, nfds, NULL, NULL,
                                           imported, &nimported, error);
  tb_wire_imported_clear(imported, &nimported);
  return tensor;
}

gboolean tb_channel_peer_holds(tb_channel *channel, uint64_t id,
                               TbWireWindow window, gboolean read_only) {
  g_mutex_lock(&channel->lock);
  gboolean held = tb_peer_mirror_holds(channel->mirror, id, window, read_only);
  g_mutex_unlock(&channel->lock);
  return held;
}

/* Plans a tensor message's effect on the peer's cache (the caller holds
 * `send_lock` until it commits or drops the plan): which buffers go with
 * their fd, and what the peer forgets first. */
static gboolean plan_buffers(tb_channel *channel, const tb_tensor *tensor,
                             tb_buffer *const *buffers, size_t n,
                             gboolean read_only, TbMirrorPlan *plan,
                             GError **error) {
  /* Acknowledgements that have come make their buffers go without fd. */
  g_mutex_lock(&channel->lock);
  gboolean awaiting = tb_peer_mirror_awaits_acks(channel->mirror);
  g_mutex_unlock(&channel->lock);
  if (awaiting)
    take_acks(channel);
  uint64_t ids[TB_WIRE_MAX_BUFFERS];
  TbWireWindow windows[TB_WIRE_MAX_BUFFERS];
  for (size_t i = 0; i < n; i++)
    ids[i] = buffers[i]->id;
  tb_wire_tensor_windows(channel->version, tensor, buffers, n, windows);
  g_mutex_lock(&channel->lock);
  gboolean planned = tb_peer_mirror_plan(channel->mirror, ids, windows, n,
                                         read_only, plan, error);
  g_mutex_unlock(&channel->lock);
  return planned;
}

/* A lease number not in use (the caller holds `lock`): 1 to G_MAXUINT32,
 * the width of a ring record's generation. */
static uint64_t next_lease(tb_channel *channel) {
  uint64_t token;
  do {
    token = channel->next_token;
    channel->next_token = token >= G_MAXUINT32 ? 1 : token + 1;
  } while (g_hash_table_contains(channel->leases, &token));
  return token;
}

/* A ring's error as the channel's. */
static void ring_error_to_channel(GError *ring_error, GError **error) {
  g_set_error_literal(error, TB_TENSOR_ERROR, ring_error->code,
                      ring_error->message);
  g_error_free(ring_error);
}

/* The peer wrote garbage into a ring (or a message the ring announced
 * never came): closed both ways, so the peer sees the end and every later
 * call here fails. */
static void break_channel(tb_channel *channel) {
  tb_ring_close(channel->tx);
  tb_ring_close(channel->rx);
  GError *why = g_error_new_literal(
      TB_TENSOR_ERROR, TB_ERR_PROTOCOL,
      "the peer wrote invalid data into a ring, or a message a ring "
      "announced never came: the channel is closed");
  channel_fail(channel, why);
  g_error_free(why);
}

/* A ring deadline (ns) for a channel deadline (µs, -1 none), cut to one
 * slice: a peer that died cannot wake a ring sleeper, its socket can. */
static int64_t ring_slice(gint64 deadline) {
  int64_t slice = tb_ring_now() + (int64_t)TB_CHANNEL_RING_SLICE_MS *
                                      G_GINT64_CONSTANT(1000000);
  return deadline < 0 ? slice : MIN(slice, deadline * 1000);
}

/* Pushes a record into `tx`, waiting for room while the peer lives (a put
 * has no timeout; the peer's socket says when it has gone). `quiet`: the
 * peer is not woken yet (tb_ring_push_quiet; the caller wakes it). */
static gboolean push_tensor_record(tb_channel *channel,
                                   const TbRingRecord *record, gboolean quiet,
                                   GError **error) {
  for (;;) {
    GError *ring_error = NULL;
    if (quiet ? tb_ring_push_quiet(channel->tx, record, ring_slice(-1),
                                   &ring_error)
              : tb_ring_push(channel->tx, record, ring_slice(-1), &ring_error))
      return TRUE;
    if (ring_error->code == TB_ERR_TIMEOUT) {
      g_error_free(ring_error);
      if (peer_hung_up(channel->fd))
        tb_ring_close(channel->tx); /* the next push says CLOSED */
      continue;
    }
    if (ring_error->code == TB_ERR_PROTOCOL)
      break_channel(channel);
    if (ring_error->code == TB_ERR_CLOSED) {
      g_error_free(ring_error);
      g_set_error(error, TB_TENSOR_ERROR, TB_ERR_CLOSED,
                  "the peer closed the channel");
      return FALSE;
    }
    ring_error_to_channel(ring_error, error);
    return FALSE;
  }
}

/* Sends `tensor` as a message on the socket with the fds and forgets of
 * `plan` (the caller holds `send_lock`). With `layout` (version 3), the
 * message says under which id the peer caches its layout, and a ring
 * record announces it first, so that tensors keep their order. */
static gboolean put_message(tb_channel *channel, tb_tensor *tensor,
                            tb_buffer *const *buffers, size_t n,
                            gboolean read_only, uint64_t token,
                            const TbMirrorPlan *plan, uint32_t layout,
                            GError **error) {
  int32_t fd_index[TB_WIRE_MAX_BUFFERS];
  int fds[TB_WIRE_MAX_BUFFERS];
  size_t nfds;
  if (!attach_fds(buffers, plan->with_fd, n, read_only, fd_index, fds, &nfds,
                  error))
    return FALSE;
  g_autoptr(GVariant) message = g_variant_ref_sink(
      tb_wire_tensor(channel->version, tensor, buffers, fd_index, n, read_only,
                     token, (const uint64_t *)(void *)plan->forget->data,
                     plan->forget->len, plan->serial, layout));
  gboolean sent = tb_wire_check_size(message, error);
  gboolean announced = FALSE;
  if (sent && channel->tx != NULL) {
    /* Announced quietly, woken once the message is on the socket: a peer
     * asleep on the ring wakes once, to a message it can read, rather
     * than once for the record and again in poll for the message. */
    const TbRingRecord announce = {.flags = TB_RING_FLAG_SOCKET};
    sent = announced = push_tensor_record(channel, &announce, TRUE, error);
  }
  if (sent) {
    sent = send_message(channel, g_variant_ref(message), fds, nfds, 0, NULL,
                        error);
    if (!sent && channel->tx != NULL)
      break_channel(channel); /* the peer waits for what was announced */
  }
  if (announced)
    tb_ring_wake_peer(channel->tx);
  for (size_t i = 0; i < nfds; i++)
    close(fds[i]);
  if (sent && channel->tx != NULL)
    atomic_fetch_add(&channel->stats.socket_sent, 1);
  return sent;
}

/* Version 3 (the caller holds `send_lock`): a tensor whose buffer the
 * peer holds (`plan` sends no fd and forgets nothing) and whose layout it
 * caches goes as one ring record; anything else as a message, which gives
 * its layout an id. */
static gboolean put_ring(tb_channel *channel, tb_tensor *tensor,
                         tb_buffer *const *buffers, size_t n,
                         gboolean read_only, uint64_t token,
                         const TbMirrorPlan *plan, GError **error) {
  uint32_t layout = tb_layout_ids_find(channel->layout_ids, tensor);
  if (layout != 0 && n == 1 && !plan->with_fd[0] && plan->forget->len == 0) {
    const TbRingRecord record = {.token = buffers[0]->id,
                                 .generation = (uint32_t)token,
                                 .layout = layout,
                                 .flags =
                                     read_only ? TB_RING_FLAG_READ_ONLY : 0};
    if (!push_tensor_record(channel, &record, FALSE, error))
      return FALSE;
    atomic_fetch_add(&channel->stats.ring_sent, 1);
    return TRUE;
  }
  if (layout == 0)
    layout = tb_layout_ids_assign(channel->layout_ids, tensor);
  if (put_message(channel, tensor, buffers, n, read_only, token, plan, layout,
                  error))
    return TRUE;
  tb_layout_ids_forget(channel->layout_ids, layout);
  return FALSE;
}

gboolean tb_channel_put(tb_channel *channel, tb_tensor *tensor, uint32_t flags,
                        GError **error) {
  if (!check_send_flags(flags, error) || !await_hello(channel, -1, error))
    return FALSE;
  note_use(channel);
  flush_releases(channel);
  serve_ring_releases(channel, SERVE_NOW);
  gboolean read_only = (flags & TB_SEND_READ_ONLY) != 0;
  tb_buffer *buffers[TB_WIRE_MAX_BUFFERS];
  size_t n = tb_tensor_collect_buffers(tensor, buffers);
  if (!tb_wire_check_kinds(channel->version, buffers, n, error))
    return FALSE;

  g_mutex_lock(&channel->send_lock);
  g_auto(TbMirrorPlan) plan = {0};
  if (!plan_buffers(channel, tensor, buffers, n, read_only, &plan, error)) {
    g_mutex_unlock(&channel->send_lock);
    return FALSE;
  }
  g_mutex_lock(&channel->lock);
  uint64_t token = tensor->lease != NULL ? next_lease(channel) : 0;
  if (token != 0) /* held before sending: the release may come at once */
    g_hash_table_insert(channel->leases, id_key(token),
                        tb_lease_hold(tensor->lease));
  g_mutex_unlock(&channel->lock);

  gboolean sent = channel->tx != NULL
                      ? put_ring(channel, tensor, buffers, n, read_only, token,
                                 &plan, error)
                      : put_message(channel, tensor, buffers, n, read_only,
                                    token, &plan, 0, error);

  g_mutex_lock(&channel->lock);
  if (sent)
    tb_peer_mirror_commit(channel->mirror, &plan);
  g_mutex_unlock(&channel->send_lock);
  if (!sent && token != 0)
    g_hash_table_remove(channel->leases, &token);
  tb_pool *pool = tensor->lease != NULL ? tensor->lease->pool : NULL;
  gboolean watch =
      sent && pool != NULL && !g_ptr_array_find(channel->pools, pool, NULL);
  if (watch)
    g_ptr_array_add(channel->pools, tb_pool_ref(pool));
  g_mutex_unlock(&channel->lock);
  if (watch)
    tb_pool_watch(pool, channel);
  return sent;
}

static tb_buffer *cache_lookup(void *data, uint64_t sender_id,
                               TbWireWindow window, gboolean with_fd,
                               gboolean read_only, GError **error) {
  tb_channel *channel = data;
  g_mutex_lock(&channel->lock);
  tb_buffer *buffer = tb_peer_cache_lookup(channel->cache, sender_id);
  g_mutex_unlock(&channel->lock);
  gboolean held = buffer != NULL;
  /* An fd for more than we map of it, or for a writable mapping we hold in
   * a read-only share: mapped again. */
  if (buffer != NULL &&
      (!tb_wire_window_covers(tb_wire_window_of(buffer), window) ||
       (with_fd && read_only && !(buffer->flags & TB_BUFFER_READ_ONLY))))
    g_clear_pointer(&buffer, tb_buffer_unref);
  if (buffer == NULL && !with_fd)
    g_set_error(error, TB_TENSOR_ERROR, TB_ERR_PROTOCOL,
                "message refers to %s of buffer %" G_GUINT64_FORMAT
                " than it sent with its fd",
                held ? "more" : "bytes", sender_id);
  return buffer;
}

/* Hands a release to the peer without waiting: a ring record (version
 * 3) or a message. FALSE if there was no room. A peer that is gone (or
 * broke the ring) has taken its buffers back itself. The caller holds
 * `release_lock` (one pusher at a time). */
static gboolean try_release(tb_channel *channel,
                            const TbPendingRelease *release) {
  if (channel->rx != NULL) {
    const TbRingRecord record = {.token = release->buffer,
                                 .generation = (uint32_t)release->token};
    GError *ring_error = NULL;
    if (tb_ring_push(channel->rx, &record, 0, &ring_error))
      return TRUE;
    gboolean full = ring_error->code == TB_ERR_TIMEOUT;
    g_error_free(ring_error);
    return !full;
  }
  gboolean would_block = FALSE;
  send_message(channel, tb_wire_release(channel->version, release->token), NULL,
               0, MSG_DONTWAIT, &would_block, NULL);
  return !would_block;
}

/* Keeps a release for the channel's next operation (the caller holds
 * `release_lock`); past the bound it is dropped: a peer that reads
 * nothing gets nothing back. */
static void queue_release(tb_channel *channel,
                          const TbPendingRelease *release) {
  atomic_fetch_add(&channel->stats.releases_queued, 1);
  if (channel->releases_out->len < TB_CHANNEL_MAX_RELEASES)
    g_array_append_vals(channel->releases_out, release, 1);
}

/* Hands over the releases that found no room before, as far as there is
 * room now. Every operation of the channel begins with it. */
static void flush_releases(tb_channel *channel) {
  send_acks(channel, NULL);
  g_mutex_lock(&channel->release_lock);
  guint done = 0;
  while (done < channel->releases_out->len &&
         try_release(channel, &g_array_index(channel->releases_out,
                                             TbPendingRelease, done)))
    done++;
  if (done > 0)
    g_array_remove_range(channel->releases_out, 0, done);
  g_mutex_unlock(&channel->release_lock);
}

/* Dropping a received pooled tensor: never waits for the peer (which may
 * have stopped reading), so an unref cannot block. */
static void remote_release(TbLease *lease) {
  TbRemoteLease *remote = (TbRemoteLease *)lease;
  tb_channel *channel = remote->channel;
  const TbPendingRelease release = {remote->token, remote->buffer};
  g_mutex_lock(&channel->release_lock);
  if (channel->releases_out->len > 0 || !try_release(channel, &release))
    queue_release(channel, &release);
  g_mutex_unlock(&channel->release_lock);
  tb_channel_unref(channel);
  g_free(remote);
}

/* Gives back the lease the peer released; an unknown token (released
 * twice, or never lent) is ignored. */
static void give_back_lease(tb_channel *channel, uint64_t token) {
  g_mutex_lock(&channel->lock);
  gpointer stolen_key = NULL, lease = NULL;
  gboolean found =
      g_hash_table_steal_extended(channel->leases, &token, &stolen_key, &lease);
  g_mutex_unlock(&channel->lock);
  if (found) {
    g_free(stolen_key);
    tb_lease_drop(lease); /* outside the lock: it takes the pool's */
  }
}

/* Pops every release in `tx` (the caller holds `serve_lock`). */
static unsigned pop_releases(tb_channel *channel) {
  unsigned took = 0;
  TbRingRecord record;
  GError *ring_error = NULL;
  /* Asked first: an empty ring is the common case, and costs no error. */
  while (tb_ring_ready(channel->tx, FALSE) &&
         tb_ring_pop(channel->tx, &record, 0, &ring_error)) {
    give_back_lease(channel, record.generation);
    took++;
  }
  if (ring_error != NULL && ring_error->code == TB_ERR_PROTOCOL)
    break_channel(channel);
  g_clear_error(&ring_error);
  return took;
}

/* Applies the releases the peer pushed into `tx` (version 3); while
 * another thread pops them, leaves them to it (it applies them). Gives how
 * many it applied. */
static unsigned serve_ring_releases(tb_channel *channel, TbServe how) {
  if (channel->tx == NULL || !g_mutex_trylock(&channel->serve_lock))
    return 0;
  unsigned took = pop_releases(channel);
  if (took == 0 && how == SERVE_WAIT && tb_ring_ready(channel->tx, TRUE))
    took = pop_releases(channel);
  if (took == 0 && how == SERVE_WAIT && !tb_ring_arm(channel->tx))
    took = pop_releases(channel);
  g_mutex_unlock(&channel->serve_lock);
  return took;
}

/* A received tensor's lease: dropping the tensor releases it to the peer
 * as `token` (and, in a ring record, `buffer`, the peer's id of it). */
static void lend_remote(tb_channel *channel, tb_tensor *tensor, uint64_t token,
                        uint64_t buffer) {
  TbRemoteLease *remote = g_new0(TbRemoteLease, 1);
  g_atomic_ref_count_init(&remote->lease.holders);
  remote->lease.release = remote_release;
  remote->channel = tb_channel_ref(channel);
  remote->token = token;
  remote->buffer = buffer;
  tensor->lease = &remote->lease;
}

static void forget_buffers(tb_channel *channel, GVariant *message) {
  size_t n;
  const uint64_t *ids = tb_wire_forget(message, &n);
  g_mutex_lock(&channel->lock);
  tb_peer_cache_forget(channel->cache, ids, n);
  g_mutex_unlock(&channel->lock);
}

/* Sends an ack without waiting; FALSE if the socket has no room. */
static gboolean try_ack(tb_channel *channel, GVariant *ack) {
  gboolean would_block = FALSE;
  /* send_message sinks what it is given: a held ack gains a reference,
   * which it drops. */
  send_message(channel, ack, NULL, 0, MSG_DONTWAIT, &would_block, NULL);
  return !would_block;
}

/* Sends the acks that found no room before, as far as there is room now,
 * then `ack` (NULL: none); what finds no room waits for the next call,
 * up to TB_CHANNEL_MAX_ACKS (more are dropped: the peer sends those
 * buffers' fds again). Takes `ack`. */
static void send_acks(tb_channel *channel, GVariant *ack) {
  g_mutex_lock(&channel->lock);
  if (ack == NULL && channel->acks_out->len == 0) {
    g_mutex_unlock(&channel->lock);
    return;
  }
  GPtrArray *pending = channel->acks_out;
  channel->acks_out =
      g_ptr_array_new_with_free_func((GDestroyNotify)g_variant_unref);
  g_mutex_unlock(&channel->lock);
  if (ack != NULL)
    g_ptr_array_add(pending, g_variant_ref_sink(ack));
  guint sent = 0;
  while (sent < pending->len && try_ack(channel, pending->pdata[sent]))
    sent++;
  g_mutex_lock(&channel->lock);
  for (guint i = sent; i < pending->len; i++)
    if (channel->acks_out->len < TB_CHANNEL_MAX_ACKS)
      g_ptr_array_add(channel->acks_out, g_variant_ref(pending->pdata[i]));
  g_mutex_unlock(&channel->lock);
  g_ptr_array_unref(pending);
}

/* Caches the buffers that came with their fds, if that keeps within our
 * limits (else closes the channel: the peer ignored them), and
 * acknowledges them from version 3 on. Takes the references. */
static gboolean cache_imported(tb_channel *channel, GVariant *body,
                               TbWireImported *imported, size_t nimported,
                               GError **error) {
  uint64_t ids[TB_WIRE_MAX_BUFFERS], bytes[TB_WIRE_MAX_BUFFERS];
  TbWireAck acks[TB_WIRE_MAX_BUFFERS];
  for (size_t i = 0; i < nimported; i++) {
    ids[i] = imported[i].sender_id;
    acks[i] = (TbWireAck){ids[i], tb_wire_window_of(imported[i].buffer)};
    bytes[i] = acks[i].window.length;
  }
  GError *refused = NULL;
  g_mutex_lock(&channel->lock);
  gboolean admitted =
      tb_peer_cache_admit(channel->cache, ids, bytes, nimported, &refused);
  for (size_t i = 0; admitted && i < nimported; i++)
    tb_peer_cache_insert(channel->cache, ids[i], imported[i].buffer, bytes[i]);
  g_mutex_unlock(&channel->lock);
  if (!admitted) {
    tb_wire_imported_clear(imported, &nimported);
    channel_fail(channel, refused);
    g_propagate_error(error, refused);
    return FALSE;
  }
  uint64_t serial = tb_wire_import_serial(body);
  if (serial != 0 && nimported > 0)
    send_acks(channel, tb_wire_ack(channel->version, serial, acks, nimported));
  return TRUE;
}

/* The tensor a tensor message describes: the buffers that came with fds go
 * to the cache, and a lease goes back to the sender when it is dropped. */
static tb_tensor *tensor_from_message(tb_channel *channel, TbMessage *message,
                                      GError **error) {
  forget_buffers(channel, message->body);
  TbWireImported imported[TB_WIRE_MAX_BUFFERS];
  size_t nimported = 0;
  g_autoptr(tb_tensor) tensor =
      tb_wire_parse_tensor(message->body, message->fds, message->nfds,
                           cache_lookup, channel, imported, &nimported, error);
  if (tensor == NULL ||
      !cache_imported(channel, message->body, imported, nimported, error))
    return NULL;
  uint64_t token = tb_wire_lease(message->body);
  if (token != 0)
    lend_remote(channel, tensor, token, 0);
  return g_steal_pointer(&tensor);
}

/* A tensor message made into its tensor; from version 3, its layout is
 * cached under the id it names, for the ring records that follow. */
static gpointer finish_tensor(tb_channel *channel, TbMessage *message,
                              GError **error) {
  uint32_t layout = 0;
  if (channel->layout_cache != NULL &&
      tb_wire_find_extension(message->body, TB_WIRE_TAG_LAYOUT_ID, &layout,
                             sizeof layout)) {
    layout = GUINT32_FROM_LE(layout);
    if (!tb_layout_cache_check(channel->layout_cache, layout, error))
      return NULL;
  }
  tb_tensor *tensor = tensor_from_message(channel, message, error);
  if (tensor != NULL && layout != 0 &&
      !tb_layout_cache_store(channel->layout_cache, layout, tensor, error))
    g_clear_pointer(&tensor, tb_tensor_unref);
  return tensor;
}

/* The tensor a ring record names: a buffer and a layout the peer sent
 * before, both checked (the record is the peer's to forge). */
static tb_tensor *tensor_from_record(tb_channel *channel,
                                     const TbRingRecord *record,
                                     GError **error) {
  g_mutex_lock(&channel->lock);
  tb_buffer *buffer = tb_peer_cache_lookup(channel->cache, record->token);
  g_mutex_unlock(&channel->lock);
  if (buffer == NULL) {
    g_set_error(error, TB_TENSOR_ERROR, TB_ERR_PROTOCOL,
                "a ring record names buffer %" G_GUINT64_FORMAT
                ", which this side does not hold",
                record->token);
    return NULL;
  }
  tb_tensor *tensor = tb_layout_cache_build(channel->layout_cache,
                                            record->layout, buffer, error);
  tb_buffer_unref(buffer); /* the tensor holds its own */
  if (tensor != NULL && record->generation != 0)
    lend_remote(channel, tensor, record->generation, record->token);
  return tensor;
}

/* Before a receive returns empty-handed: drops the doorbells and releases
 * at the head of the socket (unless another thread reads it) and arms the
 * ring, so that the socket turns readable exactly when a record comes.
 * 1: armed; 0: a record came meanwhile (or the ring closed), pop again;
 * -1: the socket holds a message no ring record announced (the peer
 * announces each before sending it), refused. */
static int arm_for_event_loop(tb_channel *channel, GError **error) {
  g_mutex_lock(&channel->lock);
  gboolean free_to_read = !channel->reading;
  if (free_to_read)
    channel->reading = TRUE;
  g_mutex_unlock(&channel->lock);
  int armed = 1;
  if (free_to_read) {
    unsigned took = 0;
    int head;
    while (is_housekeeping(head = peek_head(channel)) &&
           take_housekeeping(channel, NULL))
      took++;
    gboolean stray = head == HEAD_UNREADABLE || head == TB_WIRE_TENSOR;
    armed = tb_ring_arm(channel->rx);
    if (armed && stray) {
      g_autoptr(TbMessage) message = read_message(channel, error);
      if (message != NULL)
        g_set_error(error, TB_TENSOR_ERROR, TB_ERR_PROTOCOL,
                    "a '%c' message came on the socket that no ring record "
                    "announced",
                    message->kind);
      took++;
      armed = -1;
    }
    g_mutex_lock(&channel->lock);
    channel->reading = FALSE;
    channel->taken += took;
    announce_change(channel);
    g_mutex_unlock(&channel->lock);
  } else {
    armed = tb_ring_arm(channel->rx);
  }
  return armed;
}

/* Version 3: the next tensor, from the ring, or from the socket where the
 * ring says it is. One thread consumes the ring at a time (others wait for
 * it by their own deadlines); it never holds the socket while it waits, so
 * fence receivers go on. */
static tb_tensor *take_ring(tb_channel *channel, int timeout_ms,
                            GError **error) {
  gint64 deadline = deadline_in(timeout_ms);
  g_mutex_lock(&channel->lock);
  while (channel->ring_reading)
    if (!wait_changed(channel, deadline)) {
      g_mutex_unlock(&channel->lock);
      g_set_error(error, TB_TENSOR_ERROR, TB_ERR_TIMEOUT,
                  "no message within %d ms", timeout_ms);
      return NULL;
    }
  channel->ring_reading = TRUE;
  unsigned owed = channel->socket_owed;
  g_mutex_unlock(&channel->lock);
  tb_tensor *tensor = NULL;
  GError *failure = NULL;
  for (;;) {
    if (owed > 0) {
      tensor = receive(channel, TB_WIRE_TENSOR, finish_tensor, deadline,
                       timeout_ms, &failure);
      if (tensor != NULL || failure->code != TB_ERR_TIMEOUT)
        owed--;
      if (failure != NULL && failure->code == TB_ERR_CLOSED)
        owed = 0;
      break;
    }
    TbRingRecord record;
    GError *ring_error = NULL;
    if (tb_ring_pop(channel->rx, &record, ring_slice(deadline), &ring_error)) {
      if (record.flags & TB_RING_FLAG_SOCKET) {
        owed++;
        continue;
      }
      tensor = tensor_from_record(channel, &record, &failure);
      if (tensor == NULL)
        break_channel(channel);
      else
        atomic_fetch_add(&channel->stats.ring_received, 1);
      break;
    }
    int code = ring_error->code;
    if (code == TB_ERR_TIMEOUT) {
      g_error_free(ring_error);
      if (peer_hung_up(channel->fd)) {
        tb_ring_close(channel->rx); /* what is left, then CLOSED */
        continue;
      }
      if (deadline < 0 || g_get_monotonic_time() < deadline)
        continue;
      int armed = arm_for_event_loop(channel, &failure);
      if (armed == 0)
        continue;
      if (armed > 0)
        g_set_error(&failure, TB_TENSOR_ERROR, TB_ERR_TIMEOUT,
                    "no message within %d ms", timeout_ms);
      break;
    }
    if (code == TB_ERR_CLOSED) {
      g_error_free(ring_error);
      note_hang_up(channel, &failure);
      break;
    }
    if (code == TB_ERR_PROTOCOL)
      break_channel(channel);
    ring_error_to_channel(ring_error, &failure);
    break;
  }
  /* An event loop's receive (timeout 0) that got a tensor arms the ring
   * too (no system call): a record that comes after it rings, so a loop
   * that takes one tensor per wake-up is woken for the next. Records that
   * are queued already rang before, or are found by the receive that
   * comes back empty-handed, which arms the ring after draining. */
  if (tensor != NULL && timeout_ms == 0)
    (void)tb_ring_arm(channel->rx);
  g_mutex_lock(&channel->lock);
  channel->socket_owed = owed;
  channel->ring_reading = FALSE;
  announce_change(channel);
  g_mutex_unlock(&channel->lock);
  if (failure != NULL)
    g_propagate_error(error, failure);
  return tensor;
}

tb_tensor *tb_channel_take(tb_channel *channel, int timeout_ms,
                           GError **error) {
  if (!await_hello(channel, timeout_ms, error))
    return NULL;
  note_use(channel);
  flush_releases(channel);
  if (channel->rx != NULL) {
    serve_ring_releases(channel, SERVE_NOW);
    return take_ring(channel, timeout_ms, error);
  }
  return receive(channel, TB_WIRE_TENSOR, finish_tensor,
                 deadline_in(timeout_ms), timeout_ms, error);
}

gboolean tb_channel_stats(tb_channel *channel, TbChannelStats *out) {
  if (!atomic_load(&channel->greeted) || channel->rx == NULL)
    return FALSE;
  TbRingStats tx, rx;
  tb_ring_stats(channel->tx, &tx);
  tb_ring_stats(channel->rx, &rx);
  *out = (TbChannelStats){
      .ring_sent = atomic_load(&channel->stats.ring_sent),
      .socket_sent = atomic_load(&channel->stats.socket_sent),
      .ring_received = atomic_load(&channel->stats.ring_received),
      .releases_queued = atomic_load(&channel->stats.releases_queued),
      .ring_sleeps = tx.sleeps + rx.sleeps,
      .ring_wakes = tx.wakes + rx.wakes,
      .doorbells = tx.rings + rx.rings};
  return TRUE;
}

/* ---- fences ------------------------------------------------------------- */

gboolean tb_channel_put_fence(tb_channel *channel, tb_fence *fence,
                              GError **error) {
  if (!await_hello(channel, -1, error))
    return FALSE;
  int fd = tb_fence_dup_fd(fence, error);
  if (fd < 0)
    return FALSE;
  gboolean sent = send_message(channel, tb_wire_fence(channel->version), &fd, 1,
                               0, NULL, error);
  close(fd);
  return sent;
}

static gpointer finish_fence(tb_channel *channel, TbMessage *message,
                             GError **error) {
  (void)channel;
  if (message->nfds != 1) {
    g_set_error(error, TB_TENSOR_ERROR, TB_ERR_PROTOCOL,
                "a fence message came with %zu fds; expected 1", message->nfds);
    return NULL;
  }
  return tb_fence_open(message->fds[0], error);
}

tb_fence *tb_channel_take_fence(tb_channel *channel, int timeout_ms,
                                GError **error) {
  if (!await_hello(channel, timeout_ms, error))
    return NULL;
  note_use(channel);
  flush_releases(channel);
  serve_ring_releases(channel, SERVE_NOW);
  return receive(channel, TB_WIRE_FENCE, finish_fence, deadline_in(timeout_ms),
                 timeout_ms, error);
}
