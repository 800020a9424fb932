/* The handoff of a 1080p RGBA u8 frame between two processes: tensorbuf,
 * its peers and the physical floors, measured side by side in one run, with
 * producer and consumer pinned to different CPUs and again both on one CPU.
 *
 * Each round runs every implementation once in each placement (round 1:
 * 2 CPUs then 1 CPU, every implementation in turn; round 2 the same...), so
 * that drift on a loaded machine hits all alike. Latency: the p50 and p99 of
 * the one-way times of all rounds together (the first WARM_UP handoffs of
 * each run are left out); frames/s: the median of the rounds' rates.
 *
 * One-way latency (the producer stamps CLOCK_MONOTONIC into what it hands
 * over; the consumer, asleep until it arrives, reads the stamp out of the
 * frame and subtracts it from its clock; rounds are acknowledged, so every
 * handoff finds the consumer asleep):
 *
 *   pooled      tensorbuf: a tb_pool of 4 SHM frames, the buffer already
 *               known to the consumer; acquire, map, stamp, tb_channel_send;
 *               tb_channel_recv, map, read, drop (the release goes back)
 *   first       tensorbuf: a new SHM tensor each time, so its fd travels and
 *               the consumer imports and maps it (allocation outside the
 *               timed span, as for the SCM_RIGHTS floor)
 *   iceoryx     iceoryx 2.0 (iceoryx_peer.c) through its C binding, with a
 *               RouDi this program starts: loan, stamp, publish; take (asleep
 *               in a wait set), read, release
 *   python      multiprocessing.shared_memory with the segment attached
 *               before the run (_handoff_peer.py): the slot number over a
 *               seqpacket socket, the stamp read through an np.ndarray
 *   futex wake  floor: the stamp in shared memory and a FUTEX_WAKE of the
 *               consumer asleep in FUTEX_WAIT
 *   message     floor: the stamp in a 16-byte seqpacket message to a
 *               consumer blocked in recv
 *   SCM memfd   floor of the first handoff: a new memfd of the frame's size
 *               (made, sized, mapped and stamped before the clock is read)
 *               over SCM_RIGHTS, then recvmsg, mmap and a read of its first
 *               page
 *
 * Sustained frames/s with up to 4 frames in flight (no acknowledgement; the
 * producer writes a sequence number, the consumer checks it):
 *
 *   pooled      tensorbuf: the pool of 4 bounds what is in flight
 *   iceoryx     a subscriber queue of 2 that blocks the publisher when full
 *               (with the chunk on loan and the one the subscriber holds,
 *               4 in flight)
 *   python      4 slots, each reused once the peer's answer freed it
 *   futex ring  floor: a 4-slot single-producer, single-consumer ring in
 *               shared memory; a side that finds it empty or full spins
 *               briefly, then sleeps on a futex, and is woken only when it
 *               said it sleeps
 *
 * iceoryx or Python that cannot run here is skipped loudly, with the reason.
 * TB_BENCH_QUICK=1: one round, few iterations, 2 CPUs only (the smoke
 * tests). TB_BENCH_FILTER selects records by name, and runs only the
 * implementations they need; if it selects nothing that can run here, the
 * program says why and exits 77 (ctest's skip). */
#define _GNU_SOURCE
#include "harness.h"

#ifdef TB_BENCH_ICEORYX
#include "iceoryx_peer.h"
#endif

#include <tensorbuf/tensorbuf.h>

#include <fcntl.h>
#include <linux/futex.h>
#include <math.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define FRAME (&bench_frames[1]) /* 1080p */
#define ROUNDS 5
#define WARM_UP 16
#define LATENCY_SAMPLES 1000 /* per run, after the warm-up */
/* Fewer first handoffs: before issue 9 the receiver keeps every buffer a
 * sender sent, one fd each. */
#define FIRST_SAMPLES 200
#define STREAM_FRAMES 4000
#define RING_ITEMS 40000
#define QUICK_LATENCY_SAMPLES 40
#define QUICK_STREAM_FRAMES 200
#define IN_FLIGHT 4 /* the pool's size, Python's slots, the ring's slots */
/* iceoryx: the chunk on loan, the queue, the chunk the subscriber holds. */
#define ICEORYX_QUEUE (IN_FLIGHT - 2)
#define SPINS_BEFORE_SLEEP 256
#define PEER_START_TIMEOUT_MS 30000
#define PEER_RUN_TIMEOUT_MS 120000
#define PYTHON_PEER TB_BENCH_SOURCE_DIR "/_handoff_peer.py"
#define PLACEMENTS 2
#define REASON_BYTES 4096

typedef struct shared {
  _Atomic uint32_t pong; /* acknowledged rounds; a futex word */
  _Atomic uint32_t ping; /* the futex wake floor's rounds */
  _Atomic int64_t stamp; /* the futex wake floor's clock reading */
  _Atomic int64_t stream_start, stream_end;
  _Atomic uint32_t head, tail; /* the ring's counters, also futex words */
  _Atomic uint32_t consumer_sleeps, producer_sleeps;
  uint64_t slots[IN_FLIGHT];
  _Atomic int64_t one_way[WARM_UP + LATENCY_SAMPLES];
} shared;

typedef enum kind {
  POOLED,
  FIRST,
  ICEORYX,
  PYTHON_SHM,
  FLOOR_WAKE,
  FLOOR_MESSAGE,
  FLOOR_SCM_MEMFD,
  POOLED_STREAM,
  ICEORYX_STREAM,
  PYTHON_STREAM,
  FLOOR_RING,
  KIND_COUNT
} kind;

/* Every implementation's figures, per placement, over all rounds. */
typedef struct implementation {
  const char *label;
  bool stream;
  bool wanted;
  const char *skipped; /* why it does not run here, or NULL */
  double *samples[PLACEMENTS];
  size_t sample_count[PLACEMENTS];
  double rates[PLACEMENTS][ROUNDS];
  size_t rate_count[PLACEMENTS];
} implementation;

typedef struct placement {
  const char *name;
  int producer_cpu, consumer_cpu;
} placement;

typedef struct bench_state {
  shared *s;
  tb_pool *pool;
  tb_alloc_options shm;
  size_t frame_bytes;
  uint32_t latency_samples, first_samples, stream_frames, ring_items;
  uint32_t run_number; /* names each iceoryx run's service instance */
  bool roudi_running;
  int socket; /* this process's ends of the current run */
  tb_channel *channel;
  char python_segment[64];
  uint8_t *python_frames; /* IN_FLIGHT frames, back to back */
  implementation kinds[KIND_COUNT];
  char reasons[KIND_COUNT][REASON_BYTES];
} bench_state;

static int64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void futex_wait(_Atomic uint32_t *word, uint32_t expected) {
  syscall(SYS_futex, word, FUTEX_WAIT, expected, NULL, NULL, 0);
}

static void futex_wake(_Atomic uint32_t *word) {
  syscall(SYS_futex, word, FUTEX_WAKE, 1, NULL, NULL, 0);
}

static void pin(int cpu) {
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  bench_check_system(sched_setaffinity(0, sizeof set, &set) == 0,
                     "sched_setaffinity");
}

/* For a child: dies with the benchmark, so a failed run leaves nothing. */
static void die_with_parent(void) { prctl(PR_SET_PDEATHSIG, SIGKILL); }

static void acknowledge(shared *s, uint32_t round) {
  atomic_store(&s->pong, round + 1);
  futex_wake(&s->pong);
}

static void wait_for_acknowledgement(shared *s, uint32_t round) {
  while (atomic_load(&s->pong) == round)
    futex_wait(&s->pong, round);
}

static void check_sequence(const char *what, int64_t got, int64_t expected) {
  if (got == expected)
    return;
  fprintf(stderr, "bench_floors: %s: item %lld came as %lld\n", what,
          (long long)expected, (long long)got);
  exit(EXIT_FAILURE);
}

static int64_t read_stamp(const void *bytes) {
  int64_t stamp;
  memcpy(&stamp, bytes, sizeof stamp);
  return stamp;
}

static void write_stamp(void *bytes, int64_t stamp) {
  memcpy(bytes, &stamp, sizeof stamp);
}

/* ---- the floors ---------------------------------------------------------- */

static void consume_wakes(bench_state *b, uint32_t rounds) {
  shared *s = b->s;
  for (uint32_t round = 0; round < rounds; round++) {
    while (atomic_load(&s->ping) == round)
      futex_wait(&s->ping, round);
    atomic_store(&s->one_way[round], now_ns() - atomic_load(&s->stamp));
    acknowledge(s, round);
  }
}

static void produce_wakes(bench_state *b, uint32_t rounds) {
  shared *s = b->s;
  for (uint32_t round = 0; round < rounds; round++) {
    atomic_store(&s->stamp, now_ns());
    atomic_store(&s->ping, round + 1);
    futex_wake(&s->ping);
    wait_for_acknowledgement(s, round);
  }
}

static void consume_messages(bench_state *b, uint32_t rounds) {
  shared *s = b->s;
  int socket = b->socket;
  for (uint32_t round = 0; round < rounds; round++) {
    int64_t message[2];
    bench_check_system(recv(socket, message, sizeof message, 0) ==
                           (ssize_t)sizeof message,
                       "recv of a 16-byte message");
    atomic_store(&s->one_way[round], now_ns() - message[0]);
    acknowledge(s, round);
  }
}

static void produce_messages(bench_state *b, uint32_t rounds) {
  shared *s = b->s;
  int socket = b->socket;
  for (uint32_t round = 0; round < rounds; round++) {
    int64_t message[2] = {now_ns(), round};
    bench_check_system(send(socket, message, sizeof message, MSG_NOSIGNAL) ==
                           (ssize_t)sizeof message,
                       "send of a 16-byte message");
    wait_for_acknowledgement(s, round);
  }
}

static void *map_memfd(int fd, size_t bytes, int protection) {
  void *data = mmap(NULL, bytes, protection, MAP_SHARED, fd, 0);
  bench_check_system(data != MAP_FAILED, "mmap of a memfd");
  return data;
}

static void consume_memfds(bench_state *b, uint32_t rounds) {
  shared *s = b->s;
  int socket = b->socket;
  size_t bytes = b->frame_bytes;
  for (uint32_t round = 0; round < rounds; round++) {
    char byte;
    int fd = bench_receive_fd(socket, &byte, 1);
    void *data = map_memfd(fd, bytes, PROT_READ);
    atomic_store(&s->one_way[round], now_ns() - read_stamp(data));
    munmap(data, bytes);
    close(fd);
    acknowledge(s, round);
  }
}

static void produce_memfds(bench_state *b, uint32_t rounds) {
  shared *s = b->s;
  int socket = b->socket;
  size_t bytes = b->frame_bytes;
  for (uint32_t round = 0; round < rounds; round++) {
    int fd = bench_new_memfd(bytes);
    void *data = map_memfd(fd, bytes, PROT_READ | PROT_WRITE);
    memset(data, 0, sizeof(int64_t)); /* the page in, as a producer's fill */
    write_stamp(data, now_ns());
    char byte = 0;
    bench_send_fd(socket, fd, &byte, 1);
    wait_for_acknowledgement(s, round);
    munmap(data, bytes);
    close(fd);
  }
}

/* Waits while `word` equals `value`: spins a little (a running peer answers
 * within that), then sleeps, having said so in `sleeps`. */
static void sleep_while(_Atomic uint32_t *word, uint32_t value,
                        _Atomic uint32_t *sleeps) {
  for (int spin = 0; spin < SPINS_BEFORE_SLEEP; spin++) {
    if (atomic_load(word) != value)
      return;
    __builtin_ia32_pause();
  }
  while (atomic_load(word) == value) {
    atomic_store(sleeps, 1);
    if (atomic_load(word) == value)
      futex_wait(word, value);
    atomic_store(sleeps, 0);
  }
}

static void wake_if_sleeping(_Atomic uint32_t *word, _Atomic uint32_t *sleeps) {
  if (atomic_load(sleeps))
    futex_wake(word);
}

static void consume_ring(bench_state *b, uint32_t items) {
  shared *s = b->s;
  for (uint32_t tail = 0; tail < items; tail++) {
    sleep_while(&s->head, tail, &s->consumer_sleeps);
    check_sequence("futex ring", (int64_t)s->slots[tail % IN_FLIGHT], tail);
    atomic_store(&s->tail, tail + 1);
    wake_if_sleeping(&s->tail, &s->producer_sleeps);
  }
  atomic_store(&s->stream_end, now_ns());
}

static void produce_ring(bench_state *b, uint32_t items) {
  shared *s = b->s;
  atomic_store(&s->stream_start, now_ns());
  for (uint32_t head = 0; head < items; head++) {
    if (head >= IN_FLIGHT)
      sleep_while(&s->tail, head - IN_FLIGHT, &s->producer_sleeps);
    s->slots[head % IN_FLIGHT] = head;
    atomic_store(&s->head, head + 1);
    wake_if_sleeping(&s->head, &s->consumer_sleeps);
  }
}

/* ---- tensorbuf ----------------------------------------------------------- */

/* The stamp (or sequence number) in a received frame's first 8 bytes. */
static int64_t receive_stamp(tb_channel *channel) {
  tb_tensor *tensor = NULL;
  bench_check(tb_channel_recv(&tensor, channel, -1), "tb_channel_recv");
  tb_map *map = NULL;
  bench_check(tb_tensor_map(&map, tensor, TB_MAP_READ), "tb_tensor_map");
  int64_t stamp = read_stamp(tb_map_data(map));
  tb_map_free(map);
  tb_tensor_unref(tensor);
  return stamp;
}

static void consume_tensors(bench_state *b, uint32_t rounds) {
  shared *s = b->s;
  tb_channel *channel = b->channel;
  for (uint32_t round = 0; round < rounds; round++) {
    int64_t stamp = receive_stamp(channel);
    atomic_store(&s->one_way[round], now_ns() - stamp);
    acknowledge(s, round);
  }
}

static void consume_tensor_stream(bench_state *b, uint32_t frames) {
  shared *s = b->s;
  tb_channel *channel = b->channel;
  for (uint32_t frame = 0; frame < frames; frame++)
    check_sequence("pooled stream", receive_stamp(channel), frame);
  atomic_store(&s->stream_end, now_ns());
}

/* Stamps the clock (or `sequence`) into `tensor` and sends it. */
static void send_tensor(tb_channel *channel, tb_tensor *tensor, bool clock,
                        int64_t sequence) {
  tb_map *map = NULL;
  bench_check(tb_tensor_map(&map, tensor, TB_MAP_WRITE), "tb_tensor_map");
  memset(tb_map_data(map), 0, sizeof(int64_t)); /* a new buffer's page in */
  write_stamp(tb_map_data(map), clock ? now_ns() : sequence);
  tb_map_free(map);
  bench_check(tb_channel_send(channel, tensor, 0), "tb_channel_send");
  tb_tensor_unref(tensor);
}

static tb_tensor *acquire(tb_pool *pool) {
  tb_tensor *tensor = NULL;
  bench_check(tb_pool_acquire(&tensor, pool, -1), "tb_pool_acquire");
  return tensor;
}

static void produce_pooled(bench_state *b, uint32_t rounds) {
  tb_channel *channel = b->channel;
  for (uint32_t round = 0; round < rounds; round++) {
    send_tensor(channel, acquire(b->pool), true, 0);
    wait_for_acknowledgement(b->s, round);
  }
}

static void produce_first(bench_state *b, uint32_t rounds) {
  tb_channel *channel = b->channel;
  for (uint32_t round = 0; round < rounds; round++) {
    tb_tensor *tensor = NULL;
    bench_check(tb_tensor_new(&tensor, TB_DTYPE_U8, 3, FRAME->shape, &b->shm),
                "tb_tensor_new");
    send_tensor(channel, tensor, true, 0);
    wait_for_acknowledgement(b->s, round);
  }
}

static void produce_pooled_stream(bench_state *b, uint32_t frames) {
  tb_channel *channel = b->channel;
  atomic_store(&b->s->stream_start, now_ns());
  for (uint32_t frame = 0; frame < frames; frame++)
    send_tensor(channel, acquire(b->pool), false, frame);
}

/* ---- iceoryx (each side a child of its own: see iceoryx_peer.h) --------- */

#ifdef TB_BENCH_ICEORYX
static void consume_iceoryx(bench_state *b, const char *instance, bool stream,
                            uint32_t count) {
  char name[64];
  snprintf(name, sizeof name, "tb-bench-sub-%ld", (long)getpid());
  iceoryx_subscriber *subscriber =
      iceoryx_subscribe(name, instance, ICEORYX_QUEUE);
  for (uint32_t i = 0; i < count; i++) {
    const void *chunk = iceoryx_take(subscriber);
    int64_t stamp = read_stamp(chunk);
    if (stream) {
      check_sequence("iceoryx stream", stamp, i);
    } else {
      atomic_store(&b->s->one_way[i], now_ns() - stamp);
    }
    iceoryx_release(subscriber, chunk);
    if (!stream)
      acknowledge(b->s, i);
  }
  if (stream)
    atomic_store(&b->s->stream_end, now_ns());
  iceoryx_subscriber_free(subscriber);
}

static void produce_iceoryx(bench_state *b, const char *instance, bool stream,
                            uint32_t count) {
  char name[64];
  snprintf(name, sizeof name, "tb-bench-pub-%ld", (long)getpid());
  iceoryx_publisher *publisher = iceoryx_offer(name, instance);
  if (!iceoryx_wait_for_subscriber(publisher, PEER_START_TIMEOUT_MS)) {
    fprintf(stderr, "bench_floors: no iceoryx subscriber within %d s\n",
            PEER_START_TIMEOUT_MS / 1000);
    _exit(EXIT_FAILURE);
  }
  if (stream)
    atomic_store(&b->s->stream_start, now_ns());
  for (uint32_t i = 0; i < count; i++) {
    void *chunk = iceoryx_loan(publisher, b->frame_bytes);
    write_stamp(chunk, stream ? (int64_t)i : now_ns());
    iceoryx_publish(publisher, chunk);
    if (!stream)
      wait_for_acknowledgement(b->s, i);
  }
  iceoryx_publisher_free(publisher);
}
#endif

/* ---- Python multiprocessing.shared_memory, pre-attached ----------------- */

typedef struct python_answer {
  int64_t now, stamp;
} python_answer;

static bool python_exchange(int socket, int64_t slot, python_answer *answer) {
  if (send(socket, &slot, sizeof slot, MSG_NOSIGNAL) != (ssize_t)sizeof slot)
    return false;
  return recv(socket, answer, sizeof *answer, 0) == (ssize_t)sizeof *answer;
}

static bool produce_python(bench_state *b, int socket, uint32_t rounds) {
  for (uint32_t round = 0; round < rounds; round++) {
    python_answer answer;
    write_stamp(b->python_frames, now_ns());
    if (!python_exchange(socket, 0, &answer))
      return false;
    atomic_store(&b->s->one_way[round], answer.now - answer.stamp);
  }
  return true;
}

/* Up to IN_FLIGHT slots are out; the answer for frame i frees slot
 * i % IN_FLIGHT. The end is the producer's reading of the last answer. */
static bool produce_python_stream(bench_state *b, int socket, uint32_t frames) {
  atomic_store(&b->s->stream_start, now_ns());
  for (uint32_t frame = 0; frame < frames + IN_FLIGHT; frame++) {
    if (frame >= IN_FLIGHT) {
      python_answer answer;
      if (recv(socket, &answer, sizeof answer, 0) != (ssize_t)sizeof answer)
        return false;
      check_sequence("python stream", answer.stamp, frame - IN_FLIGHT);
    }
    if (frame >= frames)
      continue;
    int64_t slot = frame % IN_FLIGHT;
    write_stamp(b->python_frames + slot * b->frame_bytes, frame);
    if (send(socket, &slot, sizeof slot, MSG_NOSIGNAL) != (ssize_t)sizeof slot)
      return false;
  }
  atomic_store(&b->s->stream_end, now_ns());
  return true;
}

/* Starts the Python peer pinned to `cpu`, attached to the segment; returns
 * its socket, or -1 having written why into `why`. */
static int start_python(bench_state *b, int cpu, pid_t *pid, char *why) {
  char height[24], width[24], channels[24], slots[16];
  snprintf(height, sizeof height, "%lld", (long long)FRAME->shape[0]);
  snprintf(width, sizeof width, "%lld", (long long)FRAME->shape[1]);
  snprintf(channels, sizeof channels, "%lld", (long long)FRAME->shape[2]);
  snprintf(slots, sizeof slots, "%d", IN_FLIGHT);
  const char *args[] = {height, width, channels, b->python_segment,
                        slots,  NULL};
  return bench_start_python(PYTHON_PEER, args, cpu, PEER_START_TIMEOUT_MS, pid,
                            why, REASON_BYTES);
}

/* ---- one run of one implementation in one placement --------------------- */

/* Waits for `child` until `deadline_ns`; true if it exited with status 0.
 * Past the deadline it is killed. */
static bool child_succeeded(pid_t child, int64_t deadline_ns) {
  int status = 0;
  pid_t done;
  while ((done = waitpid(child, &status, WNOHANG)) == 0) {
    if (now_ns() >= deadline_ns) {
      kill(child, SIGKILL);
      waitpid(child, &status, 0);
      return false;
    }
    struct timespec pause = {0, 5000000};
    nanosleep(&pause, NULL);
  }
  return done == child && WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

static uint32_t run_count(const bench_state *b, kind k) {
  if (k == FLOOR_RING)
    return b->ring_items;
  if (b->kinds[k].stream)
    return b->stream_frames;
  return WARM_UP + (k == FIRST ? b->first_samples : b->latency_samples);
}

/* The two sides of the kinds this process produces for (the others:
 * NULL). */
typedef void (*side_fn)(bench_state *b, uint32_t count);
static const struct {
  side_fn consume, produce;
} sides[KIND_COUNT] = {
    [FLOOR_WAKE] = {consume_wakes, produce_wakes},
    [FLOOR_MESSAGE] = {consume_messages, produce_messages},
    [FLOOR_SCM_MEMFD] = {consume_memfds, produce_memfds},
    [FLOOR_RING] = {consume_ring, produce_ring},
    [POOLED] = {consume_tensors, produce_pooled},
    [FIRST] = {consume_tensors, produce_first},
    [POOLED_STREAM] = {consume_tensor_stream, produce_pooled_stream},
};

/* tensorbuf and the floors: the consumer is a child, this process the
 * producer. */
static void run_here(bench_state *b, kind k, const placement *p,
                     uint32_t count) {
  tb_channel *producer_end = NULL, *consumer_end = NULL;
  bench_check(tb_channel_pair(&producer_end, &consumer_end), "tb_channel_pair");
  int sockets[2];
  bench_check_system(
      socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sockets) == 0,
      "socketpair");
  fflush(NULL);
  pid_t child = fork();
  bench_check_system(child >= 0, "fork");
  if (child == 0) {
    die_with_parent();
    close(sockets[0]);
    tb_channel_unref(producer_end);
    pin(p->consumer_cpu);
    b->socket = sockets[1];
    b->channel = consumer_end;
    sides[k].consume(b, count);
    tb_channel_unref(consumer_end);
    _exit(EXIT_SUCCESS);
  }
  close(sockets[1]);
  tb_channel_unref(consumer_end);
  pin(p->producer_cpu);
  b->socket = sockets[0];
  b->channel = producer_end;
  sides[k].produce(b, count);
  bench_check_system(
      child_succeeded(child, now_ns() + PEER_RUN_TIMEOUT_MS * (int64_t)1000000),
      "the consumer process");
  close(sockets[0]);
  if (k == POOLED || k == POOLED_STREAM) {
    /* Every frame home before the channel goes (the releases are on it). */
    tb_tensor *all[IN_FLIGHT];
    for (int i = 0; i < IN_FLIGHT; i++)
      bench_check(tb_pool_acquire(&all[i], b->pool, 10000), "tb_pool_acquire");
    for (int i = 0; i < IN_FLIGHT; i++)
      tb_tensor_unref(all[i]);
  }
  tb_channel_unref(producer_end);
}

#ifdef TB_BENCH_ICEORYX
/* iceoryx: publisher and subscriber are both children (a process that
 * registered with RouDi must not fork). False, with why, if one failed. */
static bool run_iceoryx(bench_state *b, kind k, const placement *p,
                        uint32_t count, char *why) {
  bool stream = k == ICEORYX_STREAM;
  char instance[32];
  snprintf(instance, sizeof instance, "run%u", b->run_number++);
  pid_t children[2];
  const int cpus[2] = {p->consumer_cpu, p->producer_cpu};
  for (int side = 0; side < 2; side++) {
    fflush(NULL);
    children[side] = fork();
    bench_check_system(children[side] >= 0, "fork");
    if (children[side] == 0) {
      die_with_parent();
      pin(cpus[side]);
      if (side == 0)
        consume_iceoryx(b, instance, stream, count);
      else
        produce_iceoryx(b, instance, stream, count);
      _exit(EXIT_SUCCESS);
    }
  }
  int64_t deadline = now_ns() + PEER_RUN_TIMEOUT_MS * (int64_t)1000000;
  bool consumer_ok = child_succeeded(children[0], deadline);
  if (!consumer_ok)
    kill(children[1], SIGKILL);
  bool producer_ok = child_succeeded(children[1], deadline);
  if (consumer_ok && producer_ok)
    return true;
  snprintf(why, REASON_BYTES,
           "an iceoryx %s process failed or ran past %d s (its messages are "
           "above)",
           consumer_ok ? "publisher" : "subscriber",
           PEER_RUN_TIMEOUT_MS / 1000);
  return false;
}
#endif

static bool run_python(bench_state *b, kind k, const placement *p,
                       uint32_t count, char *why) {
  pid_t peer;
  int socket = start_python(b, p->consumer_cpu, &peer, why);
  if (socket < 0)
    return false;
  pin(p->producer_cpu);
  bool ok = k == PYTHON_STREAM ? produce_python_stream(b, socket, count)
                               : produce_python(b, socket, count);
  close(socket); /* the peer's cue to finish */
  ok = child_succeeded(peer,
                       now_ns() + PEER_START_TIMEOUT_MS * (int64_t)1000000) &&
       ok;
  if (!ok)
    snprintf(why, REASON_BYTES, "the Python peer failed mid-run");
  return ok;
}

/* Runs `k` once in placement `index`, and keeps its figures. */
static void run_kind(bench_state *b, kind k, const placement *p, int index) {
  implementation *impl = &b->kinds[k];
  if (!impl->wanted || impl->skipped != NULL)
    return;
  memset(b->s, 0, sizeof *b->s);
  uint32_t count = run_count(b, k);
  bool ok = true;
  if (k == PYTHON_SHM || k == PYTHON_STREAM) {
    ok = run_python(b, k, p, count, b->reasons[k]);
#ifdef TB_BENCH_ICEORYX
  } else if (k == ICEORYX || k == ICEORYX_STREAM) {
    ok = run_iceoryx(b, k, p, count, b->reasons[k]);
#endif
  } else {
    run_here(b, k, p, count);
  }
  if (!ok) {
    impl->skipped = b->reasons[k];
    fprintf(stderr, "bench_floors: SKIPPING %s from now on: %s\n", impl->label,
            impl->skipped);
    return;
  }
  if (impl->stream) {
    double elapsed = (double)(atomic_load(&b->s->stream_end) -
                              atomic_load(&b->s->stream_start));
    impl->rates[index][impl->rate_count[index]++] = count * 1e9 / elapsed;
    return;
  }
  for (uint32_t i = WARM_UP; i < count; i++)
    impl->samples[index][impl->sample_count[index]++] =
        (double)atomic_load(&b->s->one_way[i]);
}

/* ---- the records --------------------------------------------------------- */

/* A comparison: `subject` against `peer` (both latency kinds or both
 * streams); `target` (the issue's, on p50 and frames/s) or NULL. */
typedef struct comparison {
  const char *name; /* "%s": the measure, then the placement */
  kind subject, peer;
  const char *target;
} comparison;

static const comparison comparisons[] = {
    {"handoff pooled 1080p %s (%s) vs iceoryx", POOLED, ICEORYX, "<= 1x"},
    {"handoff pooled 1080p %s (%s) vs python shared_memory", POOLED, PYTHON_SHM,
     NULL},
    {"handoff pooled 1080p %s (%s) vs futex wake", POOLED, FLOOR_WAKE, NULL},
    {"handoff pooled 1080p %s (%s) vs 16-byte message", POOLED, FLOOR_MESSAGE,
     NULL},
    {"handoff first 1080p %s (%s) vs SCM_RIGHTS memfd+mmap", FIRST,
     FLOOR_SCM_MEMFD, "<= 2x"},
    {"iceoryx 1080p %s (%s) vs futex wake", ICEORYX, FLOOR_WAKE, NULL},
    {"python shared_memory 1080p %s (%s) vs futex wake", PYTHON_SHM, FLOOR_WAKE,
     NULL},
    {"floor 16-byte message %s (%s) vs futex wake", FLOOR_MESSAGE, FLOOR_WAKE,
     NULL},
    {"handoff pooled 1080p %s (%s) vs iceoryx", POOLED_STREAM, ICEORYX_STREAM,
     ">= 1x"},
    {"handoff pooled 1080p %s (%s) vs python shared_memory", POOLED_STREAM,
     PYTHON_STREAM, NULL},
    {"handoff pooled 1080p %s (%s) vs futex ring", POOLED_STREAM, FLOOR_RING,
     NULL},
    {"iceoryx 1080p %s (%s) vs futex ring", ICEORYX_STREAM, FLOOR_RING, NULL},
};

#define COMPARISONS (sizeof comparisons / sizeof comparisons[0])

/* What a comparison reports: latency at two quantiles, or a stream's
 * frames/s. The first measure carries the target. */
typedef struct measure {
  const char *name;
  double fraction; /* the quantile; 0 for a stream's rate */
} measure;

static const measure latency_measures[] = {{"one-way p50", 0.5},
                                           {"one-way p99", 0.99}};
static const measure stream_measures[] = {{"frames/s, 4 in flight", 0}};

static const placement placements[PLACEMENTS] = {{"2 CPUs", 0, 0},
                                                 {"1 CPU", 0, 0}};

static size_t measures_of(const bench_state *b, const comparison *c,
                          const measure **measures) {
  bool stream = b->kinds[c->subject].stream;
  *measures = stream ? stream_measures : latency_measures;
  return stream ? 1 : 2;
}

/* Marks the implementations the selected records need. */
static void choose(bench_state *b) {
  char name[192];
  for (size_t i = 0; i < COMPARISONS; i++) {
    const comparison *c = &comparisons[i];
    const measure *measures;
    size_t count = measures_of(b, c, &measures);
    for (int p = 0; p < PLACEMENTS; p++)
      for (size_t m = 0; m < count; m++) {
        snprintf(name, sizeof name, c->name, measures[m].name,
                 placements[p].name);
        if (bench_selected(name))
          b->kinds[c->subject].wanted = b->kinds[c->peer].wanted = true;
      }
  }
}

static double percentile(implementation *impl, int p, double fraction) {
  size_t count = impl->sample_count[p];
  if (count == 0)
    return NAN;
  double median = bench_median(impl->samples[p], count); /* sorts them */
  if (fraction == 0.5)
    return median;
  return impl->samples[p][(size_t)(fraction * (double)(count - 1))];
}

static double rate(implementation *impl, int p) {
  return impl->rate_count[p] == 0
             ? NAN
             : bench_median(impl->rates[p], impl->rate_count[p]);
}

static double figure(implementation *impl, int p, const measure *m) {
  return impl->stream ? rate(impl, p) : percentile(impl, p, m->fraction);
}

/* Reports every selected comparison whose sides both ran; returns how
 * many. */
static int report(bench_state *b) {
  int reported = 0;
  char name[192];
  for (int p = 0; p < PLACEMENTS; p++)
    for (size_t i = 0; i < COMPARISONS; i++) {
      const comparison *c = &comparisons[i];
      implementation *subject = &b->kinds[c->subject],
                     *peer = &b->kinds[c->peer];
      const measure *measures;
      size_t count = measures_of(b, c, &measures);
      for (size_t m = 0; m < count; m++) {
        snprintf(name, sizeof name, c->name, measures[m].name,
                 placements[p].name);
        double value = figure(subject, p, &measures[m]);
        double peer_value = figure(peer, p, &measures[m]);
        if (!bench_selected(name) || isnan(value) || isnan(peer_value))
          continue;
        const char *target = m == 0 ? c->target : NULL;
        if (subject->stream)
          bench_report(name, value, "frames/s", peer->label, peer_value,
                       target);
        else
          bench_report_time(name, value, peer->label, peer_value, target);
        reported++;
      }
    }
  return reported;
}

/* Every implementation's own figures, one row each. */
static void print_summary(bench_state *b) {
  printf("\nbench_floors: 1080p RGBA u8, one-way p50 / p99 (us) or frames/s\n");
  printf("%-44s | %-24s | %-24s\n", "implementation", placements[0].name,
         placements[1].name);
  for (int k = 0; k < KIND_COUNT; k++) {
    implementation *impl = &b->kinds[k];
    if (!impl->wanted)
      continue;
    printf("%-44s", impl->label);
    for (int p = 0; p < PLACEMENTS; p++) {
      char cell[64];
      if (impl->stream)
        snprintf(cell, sizeof cell, "%.0f frames/s", rate(impl, p));
      else
        snprintf(cell, sizeof cell, "%.1f / %.1f",
                 percentile(impl, p, 0.5) / 1e3,
                 percentile(impl, p, 0.99) / 1e3);
      printf(" | %-24s",
             impl->sample_count[p] || impl->rate_count[p] ? cell : "-");
    }
    printf("%s%s\n", impl->skipped ? "  SKIPPED: " : "",
           impl->skipped ? impl->skipped : "");
  }
  printf("\n");
}

/* ---- setting up ---------------------------------------------------------- */

static void create_python_segment(bench_state *b) {
  snprintf(b->python_segment, sizeof b->python_segment, "tb-bench-floors-%ld",
           (long)getpid());
  char path[sizeof b->python_segment + 1];
  snprintf(path, sizeof path, "/%s", b->python_segment);
  int fd = shm_open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  bench_check_system(fd >= 0, "shm_open");
  size_t bytes = IN_FLIGHT * b->frame_bytes;
  bench_check_system(ftruncate(fd, (off_t)bytes) == 0, "ftruncate");
  b->python_frames =
      mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  bench_check_system(b->python_frames != MAP_FAILED, "mmap");
  close(fd);
  bench_write_pages(b->python_frames, bytes); /* as a producer's fill */
}

static void remove_python_segment(bench_state *b) {
  munmap(b->python_frames, IN_FLIGHT * b->frame_bytes);
  char path[sizeof b->python_segment + 1];
  snprintf(path, sizeof path, "/%s", b->python_segment);
  shm_unlink(path);
}

static void init_kinds(bench_state *b, bool quick) {
  static const struct {
    kind k;
    const char *label;
    bool stream;
  } labels[] = {
      {POOLED, "tensorbuf pooled", false},
      {FIRST, "tensorbuf first handoff (new buffer)", false},
      {ICEORYX, "iceoryx 2.0", false},
      {PYTHON_SHM, "python shared_memory (pre-attached)", false},
      {FLOOR_WAKE, "futex wake floor", false},
      {FLOOR_MESSAGE, "16-byte message floor", false},
      {FLOOR_SCM_MEMFD, "SCM_RIGHTS new memfd+mmap+read floor", false},
      {POOLED_STREAM, "tensorbuf pooled, 4 in flight", true},
      {ICEORYX_STREAM, "iceoryx 2.0, 4 in flight (queue of 2)", true},
      {PYTHON_STREAM, "python shared_memory, 4 slots", true},
      {FLOOR_RING, "4-slot futex ring floor", true},
  };
  for (size_t i = 0; i < sizeof labels / sizeof labels[0]; i++) {
    implementation *impl = &b->kinds[labels[i].k];
    impl->label = labels[i].label;
    impl->stream = labels[i].stream;
  }
  b->latency_samples = quick ? QUICK_LATENCY_SAMPLES : LATENCY_SAMPLES;
  b->first_samples = quick ? QUICK_LATENCY_SAMPLES : FIRST_SAMPLES;
  b->stream_frames = quick ? QUICK_STREAM_FRAMES : STREAM_FRAMES;
  b->ring_items = quick ? QUICK_STREAM_FRAMES * 10 : RING_ITEMS;
  for (int k = 0; k < KIND_COUNT; k++)
    for (int p = 0; p < PLACEMENTS; p++) {
      b->kinds[k].samples[p] =
          malloc(sizeof(double) * ROUNDS * (b->latency_samples + WARM_UP));
      bench_check_system(b->kinds[k].samples[p] != NULL, "malloc");
    }
}

static void skip(bench_state *b, kind k, const char *why) {
  snprintf(b->reasons[k], REASON_BYTES, "%s", why);
  b->kinds[k].skipped = b->reasons[k];
}

static void start_peers(bench_state *b) {
  if (b->kinds[ICEORYX].wanted || b->kinds[ICEORYX_STREAM].wanted) {
#ifdef TB_BENCH_ICEORYX
    char why[REASON_BYTES];
    b->roudi_running = iceoryx_roudi_start(why, sizeof why);
    if (!b->roudi_running) {
      skip(b, ICEORYX, why);
      skip(b, ICEORYX_STREAM, why);
    }
#else
    const char *why = "built without iceoryx (the Debian package "
                      "libiceoryx-binding-c-dev was not found at configure "
                      "time)";
    skip(b, ICEORYX, why);
    skip(b, ICEORYX_STREAM, why);
#endif
    if (b->kinds[ICEORYX].skipped != NULL)
      fprintf(stderr, "bench_floors: SKIPPING iceoryx: %s\n",
              b->kinds[ICEORYX].skipped);
  }
  if (b->kinds[PYTHON_SHM].wanted || b->kinds[PYTHON_STREAM].wanted)
    create_python_segment(b);
}

static void stop_peers(bench_state *b) {
#ifdef TB_BENCH_ICEORYX
  if (b->roudi_running)
    iceoryx_roudi_stop();
#endif
  if (b->python_frames != NULL)
    remove_python_segment(b);
}

int main(void) {
  bench_begin("bench_floors");
  if (!tb_memory_available(TB_MEMORY_SHM)) {
    fprintf(stderr, "bench_floors: SKIPPING everything: SHM (memfd) is not "
                    "available here, and channels carry fds\n");
    return 77;
  }
  static bench_state state;
  bench_state *b = &state;
  bool quick = getenv("TB_BENCH_QUICK") != NULL;
  init_kinds(b, quick);
  choose(b);
  b->frame_bytes = bench_frame_bytes(FRAME);
  b->shm = (tb_alloc_options)TB_ALLOC_OPTIONS_INIT;
  b->shm.memory = TB_MEMORY_SHM;
  b->s = mmap(NULL, sizeof(shared), PROT_READ | PROT_WRITE,
              MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  bench_check_system(b->s != MAP_FAILED, "mmap of the shared page");

  cpu_set_t allowed;
  bench_check_system(sched_getaffinity(0, sizeof allowed, &allowed) == 0,
                     "sched_getaffinity");
  int first = -1, second = -1;
  for (int cpu = 0; cpu < CPU_SETSIZE && second < 0; cpu++)
    if (CPU_ISSET(cpu, &allowed)) {
      if (first < 0)
        first = cpu;
      else
        second = cpu;
    }
  placement where[PLACEMENTS] = {placements[0], placements[1]};
  where[0].producer_cpu = first;
  where[0].consumer_cpu = second;
  where[1].producer_cpu = where[1].consumer_cpu = first;
  bool run_placement[PLACEMENTS] = {second >= 0, !quick || second < 0};
  if (second < 0)
    fprintf(stderr, "bench_floors: one CPU allowed; no 2-CPU placement\n");

  tb_tensor *prototype = NULL;
  bench_check(tb_tensor_new(&prototype, TB_DTYPE_U8, 3, FRAME->shape, &b->shm),
              "tb_tensor_new");
  bench_check(tb_pool_new(&b->pool, prototype, IN_FLIGHT), "tb_pool_new");
  tb_tensor_unref(prototype);

  start_peers(b);
  int rounds = quick ? 1 : ROUNDS;
  for (int round = 0; round < rounds; round++)
    for (int p = 0; p < PLACEMENTS; p++)
      if (run_placement[p])
        for (int k = 0; k < KIND_COUNT; k++)
          run_kind(b, (kind)k, &where[p], p);
  stop_peers(b);

  print_summary(b);
  int reported = report(b);
  tb_pool_unref(b->pool);
  munmap(b->s, sizeof(shared));
  int status = bench_end();
  for (int k = 0; k < KIND_COUNT; k++)
    for (int p = 0; p < PLACEMENTS; p++)
      free(b->kinds[k].samples[p]);
  if (status == EXIT_SUCCESS && reported == 0) {
    fprintf(stderr, "bench_floors: SKIPPED: nothing the filter selects can "
                    "run here (the reasons are above)\n");
    return 77;
  }
  return status;
}
