/* Channels: tensors, fences and releases over a Unix seqpacket socket.
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
#include "sharing/peer_cache.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
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
  gboolean reading;             /* a thread is reading the socket */
  uint64_t taken;               /* messages taken so far: the head changed */
  uint64_t releases_blocked_at; /* `taken` when a pool's serve found a
                                   message that is not a release at the head */
  GMutex send_lock;      /* one send at a time: plans, sends, commits */
  TbPeerMirror *mirror;  /* what the peer holds (`lock`); from the hello */
  TbPeerCache *cache;    /* what we hold of the peer's (`lock`) */
  GPtrArray *acks_out;   /* ack messages a receive could not send at once
                            (`lock`) */
  GError *failure;       /* why the channel was closed on our side (`lock`) */
  GHashTable *leases; /* token -> TbLease held for the peer */
  uint64_t next_token;
  GPtrArray *pools;     /* pools that watch us (strong) */
  atomic_bool hung_up;  /* the peer has gone: nothing more will arrive */
  atomic_bool failed;   /* `failure` is set */
  GArray *releases_out; /* tokens a drop could not send at once (`lock`) */
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
};

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
                   .max_bytes = opts->max_mapped_bytes};
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
  channel->acks_out = g_ptr_array_new_with_free_func(
      (GDestroyNotify)g_variant_unref);
  channel->leases = g_hash_table_new_full(g_int64_hash, g_int64_equal, g_free,
                                          (GDestroyNotify)tb_lease_drop);
  channel->next_token = 1;
  channel->releases_out = g_array_new(FALSE, FALSE, sizeof(uint64_t));
  channel->pools =
      g_ptr_array_new_with_free_func((GDestroyNotify)tb_pool_unref);
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

static gboolean send_hello(int fd, const TbHello *hello, GError **error) {
  uint8_t bytes[TB_HELLO_FIXED_BYTES];
  size_t length = tb_hello_write(hello, bytes);
  ssize_t sent;
  do /* a new connection has room: never waits */
    sent = send(fd, bytes, length, MSG_NOSIGNAL | MSG_DONTWAIT);
  while (sent < 0 && errno == EINTR);
  if (sent == (ssize_t)length)
    return TRUE;
  if (sent < 0 && (errno == EPIPE || errno == ECONNRESET))
    g_set_error(error, TB_TENSOR_ERROR, TB_ERR_CLOSED,
                "the peer closed the connection before the hello");
  else
    tb_set_system_error(error, TB_TENSOR_ERROR, errno, "sending the hello");
  return FALSE;
}

/* Reads the peer's hello by `deadline` and agrees on a version. Fds that
 * come with it are closed. */
static gboolean read_hello(int fd, gint64 deadline, const TbHello *ours,
                           TbHello *peer, uint32_t *version, GError **error) {
  if (!wait_readable(fd, ms_until(deadline), "hello from the peer", error))
    return FALSE;
  uint8_t bytes[TB_HELLO_MAX_BYTES];
  struct iovec iov = {.iov_base = bytes, .iov_len = sizeof bytes};
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
  while (received < 0 && errno == EINTR);
  for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); received >= 0 && c != NULL;
       c = CMSG_NXTHDR(&msg, c))
    if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS)
      for (size_t i = 0; i < (c->cmsg_len - CMSG_LEN(0)) / sizeof(int); i++) {
        int stray;
        memcpy(&stray, CMSG_DATA(c) + i * sizeof(int), sizeof stray);
        close(stray);
      }
  if (received < 0 && errno != ECONNRESET) {
    tb_set_system_error(error, TB_TENSOR_ERROR, errno, "reading the hello");
    return FALSE;
  }
  if (received <= 0) {
    g_set_error(error, TB_TENSOR_ERROR, TB_ERR_CLOSED,
                "the peer closed the connection before its hello (a "
                "listener that refused this uid closes at once)");
    return FALSE;
  }
  if (msg.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) {
    g_set_error(error, TB_TENSOR_ERROR, TB_ERR_PROTOCOL,
                "the peer's hello is over %u bytes or came with fds",
                TB_HELLO_MAX_BYTES);
    return FALSE;
  }
  return tb_hello_parse(bytes, (size_t)received, peer, error) &&
         tb_hello_agree(ours, peer, version, error);
}

/* The peer's hello is read: from now on the mirror of its cache follows
 * the limits it stated, with acknowledgements from the version on that
 * has them. */
static void set_greeted(tb_channel *channel, const TbHello *peer,
                        uint32_t version) {
  channel->peer_hello = *peer;
  channel->version = version;
  channel->mirror = tb_peer_mirror_new(version >= TB_WIRE_VERSION_ACKS,
                                       peer->max_buffers, peer->max_bytes);
  atomic_store(&channel->greeted, true);
}

/* Sends our hello and reads the peer's by `deadline`: the channel, or
 * NULL with `fd` closed. */
static tb_channel *greet_now(int fd, const TbHello *hello, gint64 deadline,
                             GError **error) {
  TbHello peer;
  uint32_t version;
  if (!send_hello(fd, hello, error) ||
      !read_hello(fd, deadline, hello, &peer, &version, error)) {
    close(fd);
    return NULL;
  }
  tb_channel *channel = channel_wrap(fd, hello);
  set_greeted(channel, &peer, version);
  return channel;
}

/* Sends our hello; the peer's is read by the channel's first operation. A
 * peer that has already left (a child that said hello, sent its messages
 * and exited) still makes a channel: what it sent is read before
 * TB_ERR_CLOSED. */
static tb_channel *greet_later(int fd, const TbHello *hello, GError **error) {
  GError *failure = NULL;
  if (!send_hello(fd, hello, &failure) && failure->code != TB_ERR_CLOSED) {
    g_propagate_error(error, failure);
    close(fd);
    return NULL;
  }
  g_clear_error(&failure);
  tb_channel *channel = channel_wrap(fd, hello);
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
    greeted = read_hello(channel->fd, deadline, &channel->hello, &peer,
                         &version, &failure);
    g_mutex_lock(&channel->hello_lock);
    if (greeted)
      set_greeted(channel, &peer, version);
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
  if (!send_hello(fds[1], &hello, error)) {
    close(fds[0]);
    close(fds[1]);
    return FALSE;
  }
  gint64 now = g_get_monotonic_time();
  *a = greet_now(fds[0], &hello, now, error);
  if (*a == NULL) {
    close(fds[1]);
    return FALSE;
  }
  TbHello peer;
  uint32_t version;
  if (!read_hello(fds[1], now, &hello, &peer, &version, error)) {
    g_clear_pointer(a, tb_channel_unref);
    close(fds[1]);
    return FALSE;
  }
  *b = channel_wrap(fds[1], &hello);
  set_greeted(*b, &peer, version);
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

gboolean tb_channel_agreed(tb_channel *channel, uint32_t *version,
                           TbHello *own, TbHello *peer, GError **error) {
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
  struct iovec iov = {.iov_base = (void *)g_variant_get_data(owned),
                      .iov_len = g_variant_get_size(owned)};
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
    sent = sendmsg(channel->fd, &msg, MSG_NOSIGNAL | flags);
  while (sent < 0 && errno == EINTR);
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
  struct iovec iov = {.iov_base = bytes, .iov_len = TB_WIRE_MAX_BYTES};
  union {
    struct cmsghdr header;
    char space[CMSG_SPACE(sizeof(int) * TB_WIRE_MAX_FDS)];
  } control;
  struct msghdr msg = {.msg_iov = &iov,
                       .msg_iovlen = 1,
                       .msg_control = control.space,
                       .msg_controllen = sizeof control.space};
  ssize_t received;
  /* ECONNRESET says the peer closed with messages of ours unread: it is
   * reported once, before what the peer sent earlier, which is still
   * queued and is read first (everything sent before a death arrives
   * before TB_ERR_CLOSED). */
  do
    received = recvmsg(channel->fd, &msg, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
  while (received < 0 && (errno == EINTR || errno == ECONNRESET));
  if (received < 0) {
    tb_set_system_error(error, TB_TENSOR_ERROR, errno, "recvmsg");
    return NULL;
  }
  g_autoptr(TbMessage) message = g_new0(TbMessage, 1);
  for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c != NULL;
       c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
      continue;
    size_t n = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    for (size_t i = 0; i < n && message->nfds < TB_WIRE_MAX_FDS; i++)
      memcpy(&message->fds[message->nfds++], CMSG_DATA(c) + i * sizeof(int),
             sizeof(int));
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
  if ((msg.msg_flags & MSG_CTRUNC) && out_of_fds(channel->fd)) {
    tb_set_system_error(error, TB_TENSOR_ERROR, EMFILE,
                        "receiving a message's fds (the kernel dropped "
                        "them: no fd is free)");
    return NULL;
  }
  if (msg.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) {
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
  uint64_t key = tb_wire_lease(message->body);
  g_mutex_lock(&channel->lock);
  gpointer stolen_key = NULL, lease = NULL;
  gboolean found =
      g_hash_table_steal_extended(channel->leases, &key, &stolen_key, &lease);
  g_mutex_unlock(&channel->lock);
  if (found) {
    g_free(stolen_key);
    tb_lease_drop(lease);
  }
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
    return header[4];
  default:
    return HEAD_UNREADABLE;
  }
}

/* Waits up to `deadline` for a message (or the end), then peeks at it. */
static int wait_head(tb_channel *channel, gint64 deadline) {
  struct pollfd p = {.fd = channel->fd, .events = POLLIN};
  return poll_until(&p, 1, deadline) > 0 ? peek_head(channel) : HEAD_NOTHING;
}

/* Takes the release at the head and gives its lease back (or the ack, and
 * applies it). */
static gboolean take_release(tb_channel *channel, GError **error) {
  g_autoptr(TbMessage) message = read_message(channel, error);
  if (message != NULL)
    handle_release(channel, message);
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
  if (deadline < 0) {
    g_cond_wait(&channel->changed, &channel->lock);
    return TRUE;
  }
  return g_cond_wait_until(&channel->changed, &channel->lock, deadline);
}

/* The next message of `kind`, as `finish` makes it, taking and applying
 * the releases before it. A message of the other kind at the head is left
 * for its receiver: this one waits for it to be taken. */
static gpointer receive(tb_channel *channel, TbWireKind kind, TbFinish finish,
                        int timeout_ms, GError **error) {
  if (!await_hello(channel, timeout_ms, error))
    return NULL;
  flush_releases(channel);
  gint64 deadline = deadline_in(timeout_ms);
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
        head == TB_WIRE_RELEASE || head == (int)kind || head == HEAD_UNREADABLE;
    if (head == HEAD_NOTHING) {
      g_set_error(error, TB_TENSOR_ERROR, TB_ERR_TIMEOUT,
                  "no message within %d ms", timeout_ms);
      done = TRUE;
    } else if (head == HEAD_CLOSED) {
      note_hang_up(channel, error);
      done = TRUE;
    } else if (head == TB_WIRE_RELEASE) {
      done = !take_release(channel, error);
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
    g_cond_broadcast(&channel->changed);
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
    if (head != TB_WIRE_RELEASE) {
      *blocked = head != HEAD_NOTHING && head != HEAD_CLOSED;
      break;
    }
    take_release(channel, NULL); /* a malformed one is dropped */
    took++;
  }
  return took;
}

/* Serves a channel whose reader we are (if `ready`: something waits), then
 * lets the next reader in. */
static void serve_claimed(tb_channel *channel, gboolean ready) {
  gboolean blocked = FALSE;
  unsigned took = ready ? serve_one(channel, &blocked) : 0;
  g_mutex_lock(&channel->lock);
  channel->reading = FALSE;
  channel->taken += took;
  if (blocked)
    channel->releases_blocked_at = channel->taken;
  g_cond_broadcast(&channel->changed);
  g_mutex_unlock(&channel->lock);
}

gboolean tb_channel_serve_releases(tb_channel *const *channels, size_t n,
                                   gint64 deadline) {
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

GVariant *tb_tensor_describe(const tb_tensor *tensor, uint32_t flags, int *fds,
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
                        fd_index, n, read_only, 0, NULL, 0, 0);
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

gboolean tb_channel_put(tb_channel *channel, tb_tensor *tensor, uint32_t flags,
                        GError **error) {
  if (!check_send_flags(flags, error) || !await_hello(channel, -1, error))
    return FALSE;
  flush_releases(channel);
  gboolean read_only = (flags & TB_SEND_READ_ONLY) != 0;
  tb_buffer *buffers[TB_WIRE_MAX_BUFFERS];
  int32_t fd_index[TB_WIRE_MAX_BUFFERS];
  int fds[TB_WIRE_MAX_BUFFERS];
  size_t nfds, n = tb_tensor_collect_buffers(tensor, buffers);
  if (!tb_wire_check_kinds(channel->version, buffers, n, error))
    return FALSE;

  g_mutex_lock(&channel->send_lock);
  g_auto(TbMirrorPlan) plan = {0};
  if (!plan_buffers(channel, tensor, buffers, n, read_only, &plan, error) ||
      !attach_fds(buffers, plan.with_fd, n, read_only, fd_index, fds, &nfds,
                  error)) {
    g_mutex_unlock(&channel->send_lock);
    return FALSE;
  }
  g_mutex_lock(&channel->lock);
  uint64_t token = tensor->lease != NULL ? channel->next_token++ : 0;
  g_mutex_unlock(&channel->lock);
  GVariant *message = tb_wire_tensor(
      channel->version, tensor, buffers, fd_index, n, read_only, token,
      (const uint64_t *)(void *)plan.forget->data, plan.forget->len,
      plan.serial);
  if (token != 0) { /* held before sending: the release may come at once */
    g_mutex_lock(&channel->lock);
    g_hash_table_insert(channel->leases, id_key(token),
                        tb_lease_hold(tensor->lease));
    g_mutex_unlock(&channel->lock);
  }
  gboolean sent = send_message(channel, message, fds, nfds, 0, NULL, error);
  for (size_t i = 0; i < nfds; i++)
    close(fds[i]);

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

/* Sends a release without waiting; FALSE if the socket has no room. A
 * peer that is gone has already taken its buffers back. */
static gboolean try_release(tb_channel *channel, uint64_t token) {
  gboolean would_block = FALSE;
  send_message(channel, tb_wire_release(channel->version, token), NULL, 0,
               MSG_DONTWAIT, &would_block, NULL);
  return !would_block;
}

/* Queues a release for the channel's next operation. */
static void queue_release(tb_channel *channel, uint64_t token) {
  g_mutex_lock(&channel->lock);
  if (channel->releases_out->len < TB_CHANNEL_MAX_RELEASES)
    g_array_append_val(channel->releases_out, token);
  g_mutex_unlock(&channel->lock);
}

/* Sends the releases that found no room before, as far as there is room
 * now. Every operation of the channel begins with it. */
static void flush_releases(tb_channel *channel) {
  send_acks(channel, NULL);
  g_mutex_lock(&channel->lock);
  GArray *pending = NULL;
  if (channel->releases_out->len > 0) {
    pending = channel->releases_out;
    channel->releases_out = g_array_new(FALSE, FALSE, sizeof(uint64_t));
  }
  g_mutex_unlock(&channel->lock);
  if (pending == NULL)
    return;
  for (guint i = 0; i < pending->len; i++)
    if (!try_release(channel, g_array_index(pending, uint64_t, i))) {
      for (; i < pending->len; i++)
        queue_release(channel, g_array_index(pending, uint64_t, i));
      break;
    }
  g_array_unref(pending);
}

/* Dropping a received pooled tensor: never waits for the peer (which may
 * have stopped reading), so an unref cannot block. */
static void remote_release(TbLease *lease) {
  TbRemoteLease *remote = (TbRemoteLease *)lease;
  tb_channel *channel = remote->channel;
  g_mutex_lock(&channel->lock);
  gboolean behind = channel->releases_out->len > 0;
  g_mutex_unlock(&channel->lock);
  if (behind || !try_release(channel, remote->token))
    queue_release(channel, remote->token);
  tb_channel_unref(channel);
  g_free(remote);
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
  channel->acks_out = g_ptr_array_new_with_free_func(
      (GDestroyNotify)g_variant_unref);
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
  if (token != 0) {
    TbRemoteLease *remote = g_new0(TbRemoteLease, 1);
    g_atomic_ref_count_init(&remote->lease.holders);
    remote->lease.release = remote_release;
    remote->channel = tb_channel_ref(channel);
    remote->token = token;
    tensor->lease = &remote->lease;
  }
  return g_steal_pointer(&tensor);
}

static gpointer finish_tensor(tb_channel *channel, TbMessage *message,
                              GError **error) {
  return tensor_from_message(channel, message, error);
}

tb_tensor *tb_channel_take(tb_channel *channel, int timeout_ms,
                           GError **error) {
  return receive(channel, TB_WIRE_TENSOR, finish_tensor, timeout_ms, error);
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
  return receive(channel, TB_WIRE_FENCE, finish_fence, timeout_ms, error);
}
