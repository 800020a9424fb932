/* Rings: two SPSC lanes of 32-byte records in one sealed memfd (ring.h
 * says how a channel uses them).
 *
 * Layout of the memfd, all fields native-endian (both ends share a kernel):
 *
 *   0     header (64 bytes), written once by the creator before the fd goes
 *         out: magic, version, record size, capacity, total size
 *   64    lane 0 (creator -> attacher: TB_RING_TENSOR records)
 *         lane 1 (attacher -> creator: TB_RING_RELEASE records)
 *         each lane: a cache line its writer owns (tail, data sequence,
 *         closed), a line its reader owns (head, space sequence), two
 *         waiter words, then `capacity` record slots, padded to a
 *         cache line
 *   end   padding to the page; the file is exactly ring_size(capacity)
 *
 * Each side keeps its own copies of the indices it owns (the tail it
 * writes, the head it reads) and never reads them back from shared memory;
 * of the peer's indices it keeps the last one seen, so that every new
 * reading can be checked: it never goes back, and a tail is never more than
 * `capacity` ahead of our head (a head never passes our tail). A slot is
 * copied out, then checked: its kind is the lane's, its sequence is its
 * index, unknown flags and the reserved field are zero.
 *
 * Wake-ups follow an event-count: a waiter sets its waiter word, samples
 * the futex sequence, checks the indices once more and sleeps on the
 * sequence; the other side publishes its index, then reads the waiter word
 * (both sequentially consistent, so at least one sees the other) and only
 * if it is set clears it, bumps the sequence and issues FUTEX_WAKE. A peer
 * that scribbles on those words can only cost itself wake-ups or cost us
 * a sleep until our deadline. */
#include "sharing/ring.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/futex.h>
#include <linux/magic.h>
#include <sched.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

G_DEFINE_QUARK(tb - ring - error - quark, tb_ring_error)

#define RING_MAGIC UINT64_C(0x31474e4952425400) /* "\0TBRING1" */
/* 2: TB_RING_FLAG_SOCKET. */
#define RING_VERSION 2u
#define RING_CACHE_LINE 64u
#define RING_SEALS (F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL)
#define RING_DOORBELL_MAX 16u
/* How long a waiter polls the indices before it announces a sleep, when
 * it may run beside its peer: a peer that publishes within it costs
 * neither side a system call. A few futex wakes' cost: a stream whose
 * sides take turns of a few microseconds then never sleeps (5 µs gave a
 * pooled 1080p stream 218 k frames/s on a 2-vCPU VM, where both sides
 * slept and woke every frame; 20 µs gave 320 k), while a waiter whose
 * peer is idle burns at most this much CPU before it sleeps. */
#define RING_SPIN_NS 20000

/* Waiter word bits: how the reader (or writer) of a lane waits. */
#define WAIT_FUTEX 1u    /* asleep on the lane's futex sequence */
#define WAIT_DOORBELL 2u /* asleep in an event loop on the doorbell */

typedef struct RingHeader {
  uint64_t magic;
  uint32_t version;
  uint32_t record_size;
  uint32_t capacity;
  uint32_t reserved;
  uint64_t total_size;
  uint8_t padding[RING_CACHE_LINE - 32];
} RingHeader;

typedef struct RingLane {
  /* Written by the lane's writer. */
  _Alignas(RING_CACHE_LINE) _Atomic uint64_t tail;
  _Atomic uint32_t data_sequence; /* the reader sleeps on it */
  _Atomic uint32_t closed;        /* the writer pushes no more */
  _Atomic int32_t writer_cpu;     /* where the writer last ran; -1 unknown */
  /* Written by the lane's reader. */
  _Alignas(RING_CACHE_LINE) _Atomic uint64_t head;
  _Atomic uint32_t space_sequence; /* the writer sleeps on it */
  _Atomic int32_t reader_cpu;      /* where the reader last ran; -1 unknown */
  /* Set by a side before it sleeps, cleared by the side that wakes it. */
  _Alignas(RING_CACHE_LINE) _Atomic uint32_t reader_waiting;
  _Atomic uint32_t writer_waiting;
} RingLane;

/* A record as it lies in shared memory. */
typedef struct RingSlot {
  uint64_t token;
  uint64_t sequence; /* the slot's index in its lane */
  uint32_t generation;
  uint32_t layout;
  uint32_t flags;
  uint16_t kind;
  uint16_t reserved;
} RingSlot;

G_STATIC_ASSERT(sizeof(RingHeader) == RING_CACHE_LINE);
G_STATIC_ASSERT(sizeof(RingSlot) == 32);
G_STATIC_ASSERT(sizeof(RingLane) % RING_CACHE_LINE == 0);
G_STATIC_ASSERT(sizeof(_Atomic uint32_t) == 4 && sizeof(_Atomic uint64_t) == 8);

/* This process's view of one lane. */
typedef struct LaneView {
  RingLane *lane;
  RingSlot *slots;
  uint64_t position;      /* the index this side owns: tail or head */
  uint64_t peer_position; /* the peer's index, as last seen and checked */
} LaneView;

struct TbRing {
  void *mapping;
  size_t size;
  uint32_t capacity;
  LaneView out, in;
  uint16_t out_kind, in_kind;
  atomic_bool dead;   /* the peer scribbled: every call fails */
  atomic_bool closed; /* tb_ring_close was called here */
  atomic_int spin;    /* may run on more than one CPU: 1 yes, 0 no, -1 not
                         known (either role may ask first) */
  int doorbell_fd;
  uint8_t doorbell[RING_DOORBELL_MAX];
  size_t doorbell_size;
  _Atomic uint64_t sleeps, wakes, rings;
};

/* Bytes of one lane: its cache lines, then the slots, padded so that the
 * next lane starts on a cache line too. */
static size_t lane_size(uint32_t capacity) {
  size_t slots = (size_t)capacity * sizeof(RingSlot);
  return sizeof(RingLane) +
         (slots + RING_CACHE_LINE - 1) / RING_CACHE_LINE * RING_CACHE_LINE;
}

static size_t ring_size(uint32_t capacity) {
  size_t bytes = sizeof(RingHeader) + 2 * lane_size(capacity);
  size_t page = (size_t)sysconf(_SC_PAGESIZE);
  return (bytes + page - 1) / page * page;
}

static gboolean capacity_valid(uint32_t capacity) {
  return capacity >= TB_RING_MIN_CAPACITY && capacity <= TB_RING_MAX_CAPACITY &&
         (capacity & (capacity - 1)) == 0;
}

int64_t tb_ring_now(void) {
  struct timespec now;
  clock_gettime(CLOCK_MONOTONIC, &now);
  return (int64_t)now.tv_sec * 1000000000 + now.tv_nsec;
}

int64_t tb_ring_deadline(int64_t timeout_ns) {
  int64_t deadline;
  if (timeout_ns < 0 ||
      __builtin_add_overflow(tb_ring_now(), timeout_ns, &deadline))
    return TB_RING_FOREVER;
  return deadline;
}

/* Lane `index` of the mapping. */
static LaneView lane_view(void *mapping, uint32_t capacity, unsigned index) {
  uint8_t *lane =
      (uint8_t *)mapping + sizeof(RingHeader) + index * lane_size(capacity);
  return (LaneView){.lane = (RingLane *)lane,
                    .slots = (RingSlot *)(lane + sizeof(RingLane))};
}

static TbRing *ring_new(void *mapping, size_t size, uint32_t capacity,
                        gboolean creator) {
  TbRing *ring = g_new0(TbRing, 1);
  ring->mapping = mapping;
  ring->size = size;
  ring->capacity = capacity;
  LaneView forward = lane_view(mapping, capacity, 0);
  LaneView back = lane_view(mapping, capacity, 1);
  ring->out = creator ? forward : back;
  ring->in = creator ? back : forward;
  ring->out_kind = creator ? TB_RING_TENSOR : TB_RING_RELEASE;
  ring->in_kind = creator ? TB_RING_RELEASE : TB_RING_TENSOR;
  ring->doorbell_fd = -1;
  atomic_init(&ring->spin, -1);
  return ring;
}

TbRing *tb_ring_create(uint32_t capacity, int *fd_out, GError **error) {
  if (!capacity_valid(capacity)) {
    g_set_error(error, TB_RING_ERROR, TB_ERR_INVALID_ARGUMENT,
                "capacity %u is not a power of two from %u to %u", capacity,
                TB_RING_MIN_CAPACITY, TB_RING_MAX_CAPACITY);
    return NULL;
  }
  size_t size = ring_size(capacity);
  int fd = memfd_create("tensorbuf-ring", MFD_CLOEXEC | MFD_ALLOW_SEALING);
  if (fd < 0) {
    tb_set_system_error(error, TB_RING_ERROR, errno, "memfd_create");
    return NULL;
  }
  if (ftruncate(fd, (off_t)size) != 0) {
    int errnum = errno;
    close(fd);
    if (errnum == ENOMEM || errnum == ENOSPC)
      g_set_error(error, TB_RING_ERROR, TB_ERR_NO_MEMORY,
                  "cannot size a ring to %zu bytes: %s", size,
                  g_strerror(errnum));
    else
      tb_set_system_error(error, TB_RING_ERROR, errnum, "ftruncate");
    return NULL;
  }
  if (fcntl(fd, F_ADD_SEALS, RING_SEALS) != 0) {
    tb_set_system_error(error, TB_RING_ERROR, errno, "sealing the ring");
    close(fd);
    return NULL;
  }
  void *mapping = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (mapping == MAP_FAILED) {
    int errnum = errno;
    close(fd);
    if (errnum == ENOMEM)
      g_set_error(error, TB_RING_ERROR, TB_ERR_NO_MEMORY,
                  "cannot map a ring of %zu bytes", size);
    else
      tb_set_system_error(error, TB_RING_ERROR, errnum, "mmap of the ring");
    return NULL;
  }
  RingHeader *header = mapping;
  header->version = RING_VERSION;
  header->record_size = sizeof(RingSlot);
  header->capacity = capacity;
  header->total_size = size;
  for (unsigned i = 0; i < 2; i++) {
    LaneView lane = lane_view(mapping, capacity, i);
    atomic_store(&lane.lane->writer_cpu, -1);
    atomic_store(&lane.lane->reader_cpu, -1);
  }
  header->magic = RING_MAGIC;
  *fd_out = fd;
  return ring_new(mapping, size, capacity, TRUE);
}

/* The fd is what a ring must be: a tmpfs memfd, read-write, sealed. */
static gboolean attach_check_fd(int fd, struct stat *st, GError **error) {
  struct statfs fs;
  if (fstatfs(fd, &fs) != 0) {
    g_set_error(error, TB_RING_ERROR, TB_ERR_BAD_FD, "fd %d: fstatfs: %s", fd,
                g_strerror(errno));
    return FALSE;
  }
  if (fs.f_type != TMPFS_MAGIC) {
    g_set_error(error, TB_RING_ERROR, TB_ERR_BAD_FD,
                "fd %d is not a memfd on tmpfs (file system magic 0x%lx)", fd,
                (unsigned long)fs.f_type);
    return FALSE;
  }
  int access = fcntl(fd, F_GETFL);
  if (access < 0 || (access & O_ACCMODE) != O_RDWR) {
    g_set_error(error, TB_RING_ERROR, TB_ERR_BAD_FD,
                "ring fd %d is not open for reading and writing", fd);
    return FALSE;
  }
  int seals = fcntl(fd, F_GET_SEALS);
  if (seals < 0 || (seals & RING_SEALS) != RING_SEALS ||
      (seals & (F_SEAL_WRITE | F_SEAL_FUTURE_WRITE)) != 0) {
    g_set_error(error, TB_RING_ERROR, TB_ERR_BAD_FD,
                "ring fd %d is not a memfd sealed against shrinking, growing "
                "and further seals (seals 0x%x)",
                fd, seals);
    return FALSE;
  }
  if (fstat(fd, st) != 0 || !S_ISREG(st->st_mode)) {
    g_set_error(error, TB_RING_ERROR, TB_ERR_BAD_FD,
                "ring fd %d is not a regular file", fd);
    return FALSE;
  }
  if (st->st_size < (off_t)ring_size(TB_RING_MIN_CAPACITY) ||
      st->st_size > (off_t)ring_size(TB_RING_MAX_CAPACITY)) {
    g_set_error(error, TB_RING_ERROR, TB_ERR_PROTOCOL,
                "ring fd %d has %jd bytes, outside any ring's size", fd,
                (intmax_t)st->st_size);
    return FALSE;
  }
  return TRUE;
}

/* The header, copied out, describes this very file, and the lanes are
 * fresh (the creator may have pushed; nobody has popped). */
static gboolean attach_check_contents(const void *mapping, size_t size,
                                      uint32_t *capacity, GError **error) {
  RingHeader header;
  memcpy(&header, mapping, sizeof header);
  __asm__ volatile("" ::: "memory"); /* checks read the copy, not the page */
  if (header.magic != RING_MAGIC || header.version != RING_VERSION ||
      header.record_size != sizeof(RingSlot) ||
      !capacity_valid(header.capacity) || ring_size(header.capacity) != size ||
      header.total_size != size) {
    g_set_error(error, TB_RING_ERROR, TB_ERR_PROTOCOL,
                "not a version %u tensorbuf ring of %zu bytes (magic "
                "0x%016" G_GINT64_MODIFIER "x, version %u, record size %u, "
                "capacity %u, size %" G_GUINT64_FORMAT ")",
                RING_VERSION, size, header.magic, header.version,
                header.record_size, header.capacity, header.total_size);
    return FALSE;
  }
  LaneView forward = lane_view((void *)mapping, header.capacity, 0);
  LaneView back = lane_view((void *)mapping, header.capacity, 1);
  uint64_t pushed = atomic_load(&forward.lane->tail);
  if (pushed > header.capacity || atomic_load(&forward.lane->head) != 0 ||
      atomic_load(&back.lane->tail) != 0 ||
      atomic_load(&back.lane->head) != 0) {
    g_set_error(error, TB_RING_ERROR, TB_ERR_PROTOCOL,
                "the ring's indices are not those of a new ring");
    return FALSE;
  }
  *capacity = header.capacity;
  return TRUE;
}

TbRing *tb_ring_attach(int fd, GError **error) {
  struct stat st;
  if (!attach_check_fd(fd, &st, error))
    return NULL;
  size_t size = (size_t)st.st_size;
  void *mapping = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (mapping == MAP_FAILED) {
    if (errno == ENOMEM)
      g_set_error(error, TB_RING_ERROR, TB_ERR_NO_MEMORY,
                  "cannot map a ring of %zu bytes", size);
    else
      tb_set_system_error(error, TB_RING_ERROR, errno, "mmap of ring fd %d",
                          fd);
    return NULL;
  }
  uint32_t capacity;
  if (!attach_check_contents(mapping, size, &capacity, error)) {
    munmap(mapping, size);
    return NULL;
  }
  return ring_new(mapping, size, capacity, FALSE);
}

/* ---- waking and sleeping ------------------------------------------------ */

static void futex_wake(_Atomic uint32_t *word) {
  syscall(SYS_futex, word, FUTEX_WAKE, INT32_MAX, NULL, NULL, 0);
}

static void ring_doorbell(TbRing *ring) {
  if (ring->doorbell_fd < 0)
    return;
  /* A full socket or a vanished peer: the doorbell has rung already, or
   * nobody listens; neither is ours to report. */
  (void)send(ring->doorbell_fd, ring->doorbell, ring->doorbell_size,
             MSG_DONTWAIT | MSG_NOSIGNAL);
  atomic_fetch_add_explicit(&ring->rings, 1, memory_order_relaxed);
}

/* After publishing an index: wakes whoever announced a sleep on `waiting`,
 * by bumping `sequence`. */
static void wake_waiter(TbRing *ring, _Atomic uint32_t *waiting,
                        _Atomic uint32_t *sequence) {
  if (atomic_load(waiting) == 0)
    return;
  uint32_t how = atomic_exchange(waiting, 0);
  if (how == 0)
    return;
  atomic_fetch_add(sequence, 1);
  if (how & WAIT_FUTEX) {
    futex_wake(sequence);
    atomic_fetch_add_explicit(&ring->wakes, 1, memory_order_relaxed);
  }
  if (how & WAIT_DOORBELL)
    ring_doorbell(ring);
}

/* Sleeps while `*sequence` is `seen`, until `deadline`. FALSE only for a
 * futex error that retrying cannot cure; a wake, a change, a signal or the
 * deadline all return TRUE and the caller looks again. */
static gboolean sleep_until(TbRing *ring, _Atomic uint32_t *sequence,
                            uint32_t seen, int64_t deadline, GError **error) {
  struct timespec at = {.tv_sec = deadline / 1000000000,
                        .tv_nsec = deadline % 1000000000};
  atomic_fetch_add_explicit(&ring->sleeps, 1, memory_order_relaxed);
  /* FUTEX_WAIT_BITSET takes an absolute CLOCK_MONOTONIC time: EINTR and
   * spurious wake-ups cannot stretch the deadline. */
  long slept = syscall(SYS_futex, sequence, FUTEX_WAIT_BITSET, seen,
                       deadline == TB_RING_FOREVER ? NULL : &at, NULL,
                       FUTEX_BITSET_MATCH_ANY);
  if (slept == 0 || errno == EAGAIN || errno == EINTR || errno == ETIMEDOUT)
    return TRUE;
  tb_set_system_error(error, TB_RING_ERROR, errno, "futex wait on a ring");
  return FALSE;
}

/* ---- checks ------------------------------------------------------------- */

static gboolean ring_alive(const TbRing *ring, GError **error) {
  if (!atomic_load(&ring->dead))
    return TRUE;
  g_set_error(error, TB_RING_ERROR, TB_ERR_PROTOCOL,
              "the ring is dead: the peer wrote invalid data into it");
  return FALSE;
}

/* Records the peer's scribbling: the ring is dead from now on. */
static gboolean ring_kill(TbRing *ring, GError **error, const char *format, ...)
    G_GNUC_PRINTF(3, 4);
static gboolean ring_kill(TbRing *ring, GError **error, const char *format,
                          ...) {
  va_list args;
  va_start(args, format);
  g_autofree char *what = g_strdup_vprintf(format, args);
  va_end(args);
  g_set_error(error, TB_RING_ERROR, TB_ERR_PROTOCOL,
              "the peer wrote invalid data into the ring: %s", what);
  atomic_store(&ring->dead, true);
  tb_ring_close(ring);
  return FALSE;
}

/* Records the peer has published and we have not popped, or -1 (ring
 * killed) if its tail went back or ran more than a lap ahead. */
static int64_t records_waiting(TbRing *ring, GError **error) {
  LaneView *in = &ring->in;
  uint64_t tail = atomic_load_explicit(&in->lane->tail, memory_order_acquire);
  if (tail < in->peer_position || tail - in->position > ring->capacity) {
    ring_kill(ring, error,
              "tail %" G_GUINT64_FORMAT " after %" G_GUINT64_FORMAT
              " with head %" G_GUINT64_FORMAT " and capacity %u",
              tail, in->peer_position, in->position, ring->capacity);
    return -1;
  }
  in->peer_position = tail;
  return (int64_t)(tail - in->position);
}

/* Free slots in our out lane, or -1 (ring killed) if the peer's head went
 * back or passed our tail. */
static int64_t slots_free(TbRing *ring, GError **error) {
  LaneView *out = &ring->out;
  uint64_t head = atomic_load_explicit(&out->lane->head, memory_order_acquire);
  if (head < out->peer_position || head > out->position) {
    ring_kill(ring, error,
              "head %" G_GUINT64_FORMAT " after %" G_GUINT64_FORMAT
              " with tail %" G_GUINT64_FORMAT,
              head, out->peer_position, out->position);
    return -1;
  }
  out->peer_position = head;
  return (int64_t)ring->capacity - (int64_t)(out->position - head);
}

static gboolean peer_closed(const TbRing *ring) {
  return atomic_load(&ring->closed) || atomic_load(&ring->in.lane->closed);
}

static gboolean closed_error(GError **error) {
  g_set_error(error, TB_RING_ERROR, TB_ERR_CLOSED, "the ring is closed");
  return FALSE;
}

static gboolean timeout_error(GError **error, const char *what) {
  g_set_error(error, TB_RING_ERROR, TB_ERR_TIMEOUT,
              "the deadline passed with the ring %s", what);
  return FALSE;
}

/* ---- push and pop ------------------------------------------------------- */

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
  __asm__ volatile("pause");
#elif defined(__aarch64__)
  __asm__ volatile("yield");
#endif
}

/* Whether waiting for the peer should spin first. Spinning where we share
 * the CPU the peer needs would only delay it: a process that may run on
 * more than one CPU spins; one pinned to a single CPU spins only if the
 * peer last ran on another one (the peer writes `peer_cpu`: a lie costs it
 * only our spin or our sleep). */
static gboolean worth_spinning(TbRing *ring, const _Atomic int32_t *peer_cpu) {
  if (atomic_load_explicit(&ring->spin, memory_order_relaxed) < 0) {
    /* Asked at the first wait, not at creation, which may come before the
     * caller pins its threads. */
    cpu_set_t cpus;
    atomic_store_explicit(&ring->spin,
                          sched_getaffinity(0, sizeof cpus, &cpus) == 0 &&
                              CPU_COUNT(&cpus) > 1,
                          memory_order_relaxed);
  }
  if (atomic_load_explicit(&ring->spin, memory_order_relaxed))
    return TRUE;
  int32_t peer = atomic_load_explicit(peer_cpu, memory_order_relaxed);
  return peer >= 0 && peer != sched_getcpu();
}

/* Polls `ready` (records waiting or slots free) for up to RING_SPIN_NS,
 * before the deadline, if worth it: > 0 ready, 0 not yet, < 0 the ring was
 * killed. */
static int64_t spin_for(TbRing *ring, int64_t (*ready)(TbRing *, GError **),
                        const _Atomic int32_t *peer_cpu, int64_t deadline,
                        GError **error) {
  if (!worth_spinning(ring, peer_cpu))
    return 0;
  int64_t until = MIN(deadline, tb_ring_now() + RING_SPIN_NS);
  for (unsigned polls = 1;; polls++) {
    for (int i = 0; i < 32; i++)
      cpu_relax();
    int64_t found = ready(ring, error);
    if (found != 0 || peer_closed(ring) ||
        (polls % 8 == 0 && tb_ring_now() >= until))
      return found;
  }
}

gboolean tb_ring_push_quiet(TbRing *ring, const TbRingRecord *record,
                            int64_t deadline, GError **error) {
  if ((record->flags & ~TB_RING_FLAGS_KNOWN) != 0) {
    g_set_error(error, TB_RING_ERROR, TB_ERR_INVALID_ARGUMENT,
                "record flags 0x%x include unknown bits", record->flags);
    return FALSE;
  }
  LaneView *out = &ring->out;
  for (;;) {
    if (!ring_alive(ring, error))
      return FALSE;
    if (peer_closed(ring))
      return closed_error(error);
    int64_t free_slots = slots_free(ring, error);
    if (free_slots < 0)
      return FALSE;
    if (free_slots > 0)
      break;
    if (tb_ring_now() >= deadline)
      return timeout_error(error, "full");
    free_slots =
        spin_for(ring, slots_free, &out->lane->reader_cpu, deadline, error);
    if (free_slots < 0)
      return FALSE;
    if (free_slots > 0)
      break;
    atomic_fetch_or(&out->lane->writer_waiting, WAIT_FUTEX);
    uint32_t seen = atomic_load(&out->lane->space_sequence);
    free_slots = slots_free(ring, error);
    if (free_slots < 0)
      return FALSE;
    if (free_slots == 0 && !peer_closed(ring) &&
        !sleep_until(ring, &out->lane->space_sequence, seen, deadline, error))
      return FALSE;
  }
  const RingSlot slot = {.token = record->token,
                         .sequence = out->position,
                         .generation = record->generation,
                         .layout = record->layout,
                         .flags = record->flags,
                         .kind = ring->out_kind};
  memcpy(&out->slots[out->position & (ring->capacity - 1)], &slot, sizeof slot);
  out->position++;
  atomic_store_explicit(&out->lane->writer_cpu, sched_getcpu(),
                        memory_order_relaxed);
  atomic_store(&out->lane->tail, out->position);
  /* A peer armed in an event loop is told now: its doorbell must come
   * before whatever the caller sends next on the same socket, which the
   * peer reads in order. */
  if (atomic_load(&out->lane->reader_waiting) & WAIT_DOORBELL &&
      atomic_fetch_and(&out->lane->reader_waiting, ~WAIT_DOORBELL) &
          WAIT_DOORBELL)
    ring_doorbell(ring);
  return TRUE;
}

void tb_ring_wake_peer(TbRing *ring) {
  wake_waiter(ring, &ring->out.lane->reader_waiting,
              &ring->out.lane->data_sequence);
}

gboolean tb_ring_push(TbRing *ring, const TbRingRecord *record,
                      int64_t deadline, GError **error) {
  if (!tb_ring_push_quiet(ring, record, deadline, error))
    return FALSE;
  tb_ring_wake_peer(ring);
  return TRUE;
}

/* Copies the next slot out and checks it. */
static gboolean take_slot(TbRing *ring, TbRingRecord *out_record,
                          GError **error) {
  LaneView *in = &ring->in;
  RingSlot slot;
  memcpy(&slot, &in->slots[in->position & (ring->capacity - 1)], sizeof slot);
  __asm__ volatile("" ::: "memory"); /* checks read the copy, not the page */
  if (slot.kind != ring->in_kind || slot.sequence != in->position ||
      (slot.flags & ~TB_RING_FLAGS_KNOWN) != 0 || slot.reserved != 0 ||
      (slot.kind == TB_RING_RELEASE && slot.layout != 0))
    return ring_kill(ring, error,
                     "record %" G_GUINT64_FORMAT " has kind %u, sequence "
                     "%" G_GUINT64_FORMAT ", flags 0x%x, layout %u, "
                     "reserved %u",
                     in->position, slot.kind, slot.sequence, slot.flags,
                     slot.layout, slot.reserved);
  *out_record = (TbRingRecord){.token = slot.token,
                               .generation = slot.generation,
                               .layout = slot.layout,
                               .flags = slot.flags};
  in->position++;
  atomic_store_explicit(&in->lane->reader_cpu, sched_getcpu(),
                        memory_order_relaxed);
  atomic_store(&in->lane->head, in->position);
  wake_waiter(ring, &in->lane->writer_waiting, &in->lane->space_sequence);
  return TRUE;
}

gboolean tb_ring_pop(TbRing *ring, TbRingRecord *out, int64_t deadline,
                     GError **error) {
  LaneView *in = &ring->in;
  for (;;) {
    if (!ring_alive(ring, error))
      return FALSE;
    int64_t waiting = records_waiting(ring, error);
    if (waiting < 0)
      return FALSE;
    if (waiting > 0)
      return take_slot(ring, out, error);
    if (peer_closed(ring))
      return closed_error(error);
    if (tb_ring_now() >= deadline)
      return timeout_error(error, "empty");
    waiting =
        spin_for(ring, records_waiting, &in->lane->writer_cpu, deadline, error);
    if (waiting < 0)
      return FALSE;
    if (waiting > 0)
      continue;
    atomic_fetch_or(&in->lane->reader_waiting, WAIT_FUTEX);
    uint32_t seen = atomic_load(&in->lane->data_sequence);
    waiting = records_waiting(ring, error);
    if (waiting < 0)
      return FALSE;
    if (waiting == 0 && !peer_closed(ring) &&
        !sleep_until(ring, &in->lane->data_sequence, seen, deadline, error))
      return FALSE;
  }
}

gboolean tb_ring_ready(TbRing *ring, gboolean spin) {
  if (atomic_load(&ring->dead) || peer_closed(ring))
    return TRUE;
  GError *scribbled = NULL;
  int64_t found = records_waiting(ring, &scribbled);
  if (found == 0 && spin)
    found = spin_for(ring, records_waiting, &ring->in.lane->writer_cpu,
                     TB_RING_FOREVER, &scribbled);
  g_clear_error(&scribbled); /* the pop that follows reports it */
  return found != 0 || peer_closed(ring);
}

/* ---- event loops, closing ----------------------------------------------- */

void tb_ring_set_doorbell(TbRing *ring, int fd, const void *message,
                          size_t size) {
  g_return_if_fail(fd < 0 || (size >= 1 && size <= RING_DOORBELL_MAX));
  ring->doorbell_fd = fd;
  ring->doorbell_size = fd < 0 ? 0 : size;
  if (fd >= 0)
    memcpy(ring->doorbell, message, size);
}

gboolean tb_ring_arm(TbRing *ring) {
  atomic_fetch_or(&ring->in.lane->reader_waiting, WAIT_DOORBELL);
  if (atomic_load(&ring->dead) || peer_closed(ring))
    return FALSE;
  /* A scribbled tail counts as "something there": pop reports it. */
  uint64_t tail = atomic_load(&ring->in.lane->tail);
  return tail == ring->in.position;
}

void tb_ring_close(TbRing *ring) {
  if (atomic_exchange(&ring->closed, true))
    return;
  atomic_store(&ring->out.lane->closed, 1);
  /* Every sequence either side may sleep on, here or in the peer. */
  _Atomic uint32_t *sequences[] = {
      &ring->out.lane->data_sequence, &ring->out.lane->space_sequence,
      &ring->in.lane->data_sequence, &ring->in.lane->space_sequence};
  for (size_t i = 0; i < G_N_ELEMENTS(sequences); i++) {
    atomic_fetch_add(sequences[i], 1);
    futex_wake(sequences[i]);
  }
  ring_doorbell(ring);
}

void tb_ring_free(TbRing *ring) {
  if (ring == NULL)
    return;
  munmap(ring->mapping, ring->size);
  g_free(ring);
}

void tb_ring_stats(const TbRing *ring, TbRingStats *out) {
  *out = (TbRingStats){
      .sleeps = atomic_load_explicit(&ring->sleeps, memory_order_relaxed),
      .wakes = atomic_load_explicit(&ring->wakes, memory_order_relaxed),
      .rings = atomic_load_explicit(&ring->rings, memory_order_relaxed)};
}
