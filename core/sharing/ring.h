/* Rings: the steady-state path of a channel, two single-producer /
 * single-consumer queues of fixed 32-byte records in one sealed memfd, that
 * make no system call while both sides are running.
 *
 * How a channel uses a ring
 * -------------------------
 * - The sending side of a connection creates the ring (tb_ring_create) at
 *   connect time and sends the memfd it returns over the socket (SCM_RIGHTS,
 *   with the hello), then closes its copy. The receiving side attaches
 *   (tb_ring_attach), which checks the fd (tmpfs memfd, sealed against
 *   shrinking and growing and for good, exactly the size its header claims,
 *   magic, version, record size, capacity) and then closes nothing: the
 *   caller still owns the fd and closes it. Neither side keeps an fd.
 * - The socket keeps what needs the kernel: the hello, a buffer's first trip
 *   and its fd, new layouts, fences, closing. Once the receiver knows a
 *   buffer (token) and a layout (id), each handoff is one TB_RING_TENSOR
 *   record pushed by the sender and popped by the receiver.
 * - Releases flow back on the same ring: when a received pooled tensor is
 *   dropped, the receiver pushes a TB_RING_RELEASE record (token and
 *   generation); the sender pops it wherever it services the channel and
 *   hands the buffer back to its pool. A push that finds the ring full with
 *   deadline 0 fails with TB_ERR_TIMEOUT and never waits, so an unref can
 *   keep the release in a bounded local queue instead and retry later.
 * - The ring carries only numbers. Whether a token, generation or layout
 *   id is one the channel knows is the channel's check; the ring checks
 *   everything about the records themselves (kind, sequence, flags).
 * - Waiting: tb_ring_push and tb_ring_pop take an absolute CLOCK_MONOTONIC
 *   deadline in ns (tb_ring_deadline turns a relative timeout into one; 0
 *   polls, TB_RING_FOREVER never gives up). A waiter sleeps on a futex in the
 *   shared page and announces it there; the other side issues FUTEX_WAKE only
 *   when it sees that announcement, so while both run nobody calls into the
 *   kernel. A waiter polls for up to 20 µs before it sleeps when it may
 *   run on more than one CPU, or when its peer last ran on another CPU
 *   than its own (each side notes its CPU in the ring), so a stream whose
 *   sides run side by side makes no system call. EINTR never extends a
 *   deadline.
 * - Event loops: give the ring a doorbell (tb_ring_set_doorbell): a socket
 *   that the ring sends a short message on, with MSG_DONTWAIT, whenever it
 *   publishes to a peer that had armed itself. Before sleeping in
 *   poll/epoll on its end of that socket, the peer calls tb_ring_arm: FALSE
 *   means records (or a hang-up) are already there, so pop instead of
 *   sleeping. After waking, drain the doorbell message(s) and pop until
 *   TB_ERR_TIMEOUT with deadline 0. The doorbell may be the channel's own
 *   connection (then its fd is readable exactly when the ring has work,
 *   and the doorbell message is one the wire parser recognises) or a
 *   dedicated socketpair; either way the send never blocks, whatever the
 *   peer does to its end.
 * - Death: tb_ring_close says "no more records" from this side and wakes
 *   every waiter on both sides; records pushed before it are still popped
 *   before TB_ERR_CLOSED. Call it also when the socket reports a hang-up:
 *   a peer that died cannot close the ring itself, and this wakes this
 *   process's own waiters. Waiters that nobody wakes end at their deadline.
 * - Hostile peers: every index and record the peer can write is copied out
 *   and checked (indices only ever move forward, by at most the capacity).
 *   Anything wrong fails with TB_ERR_PROTOCOL and kills the ring: every
 *   later call fails the same way, and the channel should close.
 *
 * Thread-safety: one thread may push while another pops (one producer and
 * one consumer per lane); two threads pushing, or two popping, must be
 * serialised by the caller. tb_ring_close may be called from any thread.
 */
#ifndef TB_RING_INTERNAL_H
#define TB_RING_INTERNAL_H

#include "core.h"

GQuark tb_ring_error_quark(void);
#define TB_RING_ERROR (tb_ring_error_quark())

typedef struct TbRing TbRing;

/* What a record says; each lane carries one kind. */
typedef enum TbRingKind {
  TB_RING_TENSOR = 1,  /* creator -> attacher: a known buffer, handed over */
  TB_RING_RELEASE = 2, /* attacher -> creator: the buffer is free again */
} TbRingKind;

/* Record flags the ring accepts; any other bit is a protocol error. */
#define TB_RING_FLAG_READ_ONLY 1u /* the receiver must not write the buffer */
/* The tensor is a full message on the socket, which follows this record:
 * so tensors keep their order across the two paths. Token, generation and
 * layout are 0. */
#define TB_RING_FLAG_SOCKET 2u
#define TB_RING_FLAGS_KNOWN (TB_RING_FLAG_READ_ONLY | TB_RING_FLAG_SOCKET)

/* One record as the caller sees it. */
typedef struct TbRingRecord {
  uint64_t token;      /* the buffer, as the channel named it */
  uint32_t generation; /* this handoff of the buffer: the channel's lease
                          number (0: not pooled), echoed in the release */
  uint32_t layout;     /* the layout id (0 in releases) */
  uint32_t flags;      /* TB_RING_FLAGS_KNOWN bits */
} TbRingRecord;

/* Capacity limits (records per lane; a power of two). */
#define TB_RING_MIN_CAPACITY 1u
#define TB_RING_MAX_CAPACITY 4096u

/* Deadlines: absolute CLOCK_MONOTONIC ns. */
#define TB_RING_FOREVER INT64_MAX
int64_t tb_ring_now(void);
/* now + timeout_ns, or TB_RING_FOREVER for a negative timeout. */
int64_t tb_ring_deadline(int64_t timeout_ns);

/* A new ring of `capacity` records each way (a power of two within the
 * limits); *fd_out gets the memfd to send, which the caller closes. This
 * side pushes TB_RING_TENSOR records and pops TB_RING_RELEASE ones. Errors:
 * TB_ERR_INVALID_ARGUMENT (capacity), TB_ERR_NO_MEMORY, TB_ERR_SYSTEM. */
TbRing *tb_ring_create(uint32_t capacity, int *fd_out, GError **error);

/* Maps the ring behind `fd` (a peer's tb_ring_create) after checking it;
 * the caller keeps and closes `fd`. This side pops TB_RING_TENSOR records
 * and pushes TB_RING_RELEASE ones. Errors: TB_ERR_BAD_FD (not a sealed
 * tmpfs memfd opened read-write), TB_ERR_PROTOCOL (size, header or indices
 * wrong), TB_ERR_NO_MEMORY, TB_ERR_SYSTEM. */
TbRing *tb_ring_attach(int fd, GError **error);

/* Pushes `record` to the peer (kind chosen by this side's role), waiting
 * for space until `deadline`. Errors: TB_ERR_INVALID_ARGUMENT (unknown
 * flags), TB_ERR_TIMEOUT (still full), TB_ERR_CLOSED (either side closed),
 * TB_ERR_PROTOCOL (the peer scribbled), TB_ERR_SYSTEM. */
gboolean tb_ring_push(TbRing *ring, const TbRingRecord *record,
                      int64_t deadline, GError **error);

/* tb_ring_push without the futex wake-up: the record is published (a
 * running peer sees it, an armed peer's doorbell rings at once, before
 * anything the caller sends next), but a peer asleep on the ring's futex
 * is not woken until tb_ring_wake_peer. For a record that announces
 * something still to be sent elsewhere (a socket message): waking the
 * peer after that send costs it one wake-up instead of two. Call
 * tb_ring_wake_peer after every push_quiet that succeeded, whatever
 * happens in between. */
gboolean tb_ring_push_quiet(TbRing *ring, const TbRingRecord *record,
                            int64_t deadline, GError **error);

/* Wakes the peer if it sleeps on the ring or armed its doorbell (a no-op,
 * with no system call, otherwise). Producer side. */
void tb_ring_wake_peer(TbRing *ring);

/* Pops the peer's next record into *out, waiting until `deadline`. Records
 * pushed before the peer closed come before TB_ERR_CLOSED. Errors:
 * TB_ERR_TIMEOUT (none yet), TB_ERR_CLOSED, TB_ERR_PROTOCOL, TB_ERR_SYSTEM. */
gboolean tb_ring_pop(TbRing *ring, TbRingRecord *out, int64_t deadline,
                     GError **error);

/* Whether a pop would not wait (a record, a close or a scribble: the pop
 * says which), making no system call and no error. With `spin`, polls for
 * a few microseconds first (where this process may run on more than one
 * CPU): for a caller about to sleep elsewhere (poll), so that a peer that
 * is running costs neither side a wake-up. Consumer side. */
gboolean tb_ring_ready(TbRing *ring, gboolean spin);

/* Event loops: after this, publishing to a peer that armed itself sends the
 * `size` bytes of `message` (1..16) on the socket `fd` with MSG_DONTWAIT
 * (a full socket means the peer has been told already). The ring does not
 * own `fd`; -1 stops the doorbell. Not thread-safe against push. */
void tb_ring_set_doorbell(TbRing *ring, int fd, const void *message,
                          size_t size);

/* Announces that this side will sleep until the peer's doorbell rings.
 * FALSE: do not sleep, a record, a close or a protocol error is waiting
 * (pop says which). */
gboolean tb_ring_arm(TbRing *ring);

/* This side pushes no more; wakes every waiter on both sides. Idempotent. */
void tb_ring_close(TbRing *ring);

/* Unmaps the ring, without closing it: a forked copy of this process may
 * share the mapping and go on using it (a channel pair made before fork,
 * each end dropped on one side). Call tb_ring_close first to say that
 * nothing more comes; a peer sees the end of a dropped channel on its
 * socket. NULL is a no-op. */
void tb_ring_free(TbRing *ring);

/* How often this process slept and woke the peer, for tests and benches. */
typedef struct TbRingStats {
  uint64_t sleeps; /* futex waits started */
  uint64_t wakes;  /* futex wakes issued */
  uint64_t rings;  /* doorbell messages sent */
} TbRingStats;
void tb_ring_stats(const TbRing *ring, TbRingStats *out);

G_DEFINE_AUTOPTR_CLEANUP_FUNC(TbRing, tb_ring_free)

#endif
