/* tensorbuf's pooled handoff against the physical floors of a handoff
 * between two processes, in both placements (producer and consumer pinned
 * to different CPUs, then both on one CPU), in one run:
 *
 *   pooled      one-way: a tb_pool of 4 1080p RGBA u8 SHM frames; the
 *               producer acquires, stamps the clock into the first bytes,
 *               sends; the consumer, blocked in tb_channel_recv, maps and
 *               reads the stamp, then drops the frame (p50, p99; vs the
 *               futex wake floor)
 *   pooled 4    sustained frames/s with up to 4 frames in flight (vs the
 *               ring floor)
 *
 * The floors: what any design that wakes a sleeping peer, or streams
 * through shared memory, cannot beat on this machine.
 *
 *   futex wake  one-way: the producer stamps CLOCK_MONOTONIC into shared
 *               memory and FUTEX_WAKEs the consumer asleep in FUTEX_WAIT,
 *               which reads the clock when it runs (p50, p99)
 *   message     one-way: the stamp in a 16-byte seqpacket message to a
 *               consumer blocked in recv (p50, p99)
 *   futex ring  sustained items/s through a 4-slot single-producer,
 *               single-consumer ring in shared memory; a side that finds the
 *               ring empty or full spins briefly, then sleeps on a futex,
 *               and is woken only when it said it sleeps
 *
 * Latency rounds are acknowledged (the producer waits for the consumer's
 * answer) so that every round finds the consumer asleep. */
#define _GNU_SOURCE
#include "harness.h"

#include <tensorbuf/tensorbuf.h>

#include <linux/futex.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define ROUNDS 4000
#define RING_SLOTS 4
#define RING_ITEMS 200000
#define POOLED_FRAMES 20000
#define POOL_SIZE 4
#define SPINS_BEFORE_SLEEP 256

typedef struct shared {
  _Atomic uint32_t ping, pong; /* futex words of the wake round trip */
  _Atomic int64_t stamp;       /* the producer's clock reading */
  _Atomic int64_t one_way[ROUNDS];
  _Atomic uint32_t head, tail; /* the ring's counters, also futex words */
  _Atomic uint32_t consumer_sleeps, producer_sleeps;
  uint64_t slots[RING_SLOTS];
} shared;

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

static int compare_i64(const void *a, const void *b) {
  int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
  return (x > y) - (x < y);
}

/* p50 and p99 of the rounds' one-way times, in ns. */
static void percentiles(shared *s, double *p50, double *p99) {
  int64_t *sorted = malloc(sizeof(int64_t) * ROUNDS);
  bench_check_system(sorted != NULL, "malloc");
  for (int i = 0; i < ROUNDS; i++)
    sorted[i] = atomic_load(&s->one_way[i]);
  qsort(sorted, ROUNDS, sizeof *sorted, compare_i64);
  *p50 = (double)sorted[ROUNDS / 2];
  *p99 = (double)sorted[ROUNDS * 99 / 100];
  free(sorted);
}

/* ---- the consumers (the child) ------------------------------------------ */

static void consume_wakes(shared *s) {
  for (uint32_t round = 0; round < ROUNDS; round++) {
    while (atomic_load(&s->ping) == round)
      futex_wait(&s->ping, round);
    atomic_store(&s->one_way[round], now_ns() - atomic_load(&s->stamp));
    atomic_store(&s->pong, round + 1);
    futex_wake(&s->pong);
  }
}

static void consume_messages(shared *s, int socket) {
  for (int round = 0; round < ROUNDS; round++) {
    int64_t message[2];
    bench_check_system(recv(socket, message, sizeof message, 0) ==
                           (ssize_t)sizeof message,
                       "recv of a 16-byte message");
    atomic_store(&s->one_way[round], now_ns() - message[0]);
    bench_check_system(send(socket, message, sizeof message, MSG_NOSIGNAL) ==
                           (ssize_t)sizeof message,
                       "send of the acknowledgement");
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

static void consume_ring(shared *s) {
  for (uint32_t tail = 0; tail < RING_ITEMS; tail++) {
    sleep_while(&s->head, tail, &s->consumer_sleeps);
    if (s->slots[tail % RING_SLOTS] != tail) {
      fprintf(stderr, "bench_floors: ring item %u came as %llu\n", tail,
              (unsigned long long)s->slots[tail % RING_SLOTS]);
      exit(EXIT_FAILURE);
    }
    atomic_store(&s->tail, tail + 1);
    wake_if_sleeping(&s->tail, &s->producer_sleeps);
  }
}

/* The stamp in a received frame (its first 8 bytes). */
static int64_t read_stamp(tb_tensor *tensor) {
  tb_map *map = NULL;
  bench_check(tb_tensor_map(&map, tensor, TB_MAP_READ), "tb_tensor_map");
  int64_t stamp;
  memcpy(&stamp, tb_map_data(map), sizeof stamp);
  tb_map_free(map);
  return stamp;
}

static void consume_pooled(shared *s, tb_channel *channel) {
  for (uint32_t round = 0; round < ROUNDS; round++) {
    tb_tensor *tensor = NULL;
    bench_check(tb_channel_recv(&tensor, channel, -1), "tb_channel_recv");
    atomic_store(&s->one_way[round], now_ns() - read_stamp(tensor));
    tb_tensor_unref(tensor);
    atomic_store(&s->pong, round + 1);
    futex_wake(&s->pong);
  }
}

static void consume_pooled_stream(tb_channel *channel) {
  for (int64_t frame = 0; frame < POOLED_FRAMES; frame++) {
    tb_tensor *tensor = NULL;
    bench_check(tb_channel_recv(&tensor, channel, -1), "tb_channel_recv");
    if (read_stamp(tensor) != frame) {
      fprintf(stderr, "bench_floors: frame %lld out of order\n",
              (long long)frame);
      exit(EXIT_FAILURE);
    }
    tb_tensor_unref(tensor);
  }
}

/* ---- the producers ------------------------------------------------------- */

static void produce_wakes(shared *s) {
  for (uint32_t round = 0; round < ROUNDS; round++) {
    atomic_store(&s->stamp, now_ns());
    atomic_store(&s->ping, round + 1);
    futex_wake(&s->ping);
    while (atomic_load(&s->pong) == round)
      futex_wait(&s->pong, round);
  }
}

static void produce_messages(int socket) {
  for (int round = 0; round < ROUNDS; round++) {
    int64_t message[2] = {now_ns(), round};
    bench_check_system(send(socket, message, sizeof message, MSG_NOSIGNAL) ==
                           (ssize_t)sizeof message,
                       "send of a 16-byte message");
    bench_check_system(recv(socket, message, sizeof message, 0) ==
                           (ssize_t)sizeof message,
                       "recv of the acknowledgement");
  }
}

static void produce_ring(shared *s) {
  for (uint32_t head = 0; head < RING_ITEMS; head++) {
    if (head >= RING_SLOTS)
      sleep_while(&s->tail, head - RING_SLOTS, &s->producer_sleeps);
    s->slots[head % RING_SLOTS] = head;
    atomic_store(&s->head, head + 1);
    wake_if_sleeping(&s->head, &s->consumer_sleeps);
  }
}

/* Acquires a frame, writes the clock (or `sequence`, for a stream) into it
 * and sends it. */
static void send_frame(tb_pool *pool, tb_channel *channel, bool clock,
                       int64_t sequence) {
  tb_tensor *tensor = NULL;
  bench_check(tb_pool_acquire(&tensor, pool, -1), "tb_pool_acquire");
  tb_map *map = NULL;
  bench_check(tb_tensor_map(&map, tensor, TB_MAP_WRITE), "tb_tensor_map");
  int64_t stamp = clock ? now_ns() : sequence;
  memcpy(tb_map_data(map), &stamp, sizeof stamp);
  tb_map_free(map);
  bench_check(tb_channel_send(channel, tensor, 0), "tb_channel_send");
  tb_tensor_unref(tensor);
}

static void produce_pooled(shared *s, tb_pool *pool, tb_channel *channel) {
  for (uint32_t round = 0; round < ROUNDS; round++) {
    send_frame(pool, channel, true, 0);
    while (atomic_load(&s->pong) == round)
      futex_wait(&s->pong, round);
  }
}

static void produce_pooled_stream(tb_pool *pool, tb_channel *channel) {
  for (int64_t frame = 0; frame < POOLED_FRAMES; frame++)
    send_frame(pool, channel, false, frame);
}

/* ---- one placement ------------------------------------------------------- */

typedef enum floor_kind {
  FLOOR_WAKE,
  FLOOR_MESSAGE,
  FLOOR_RING,
  POOLED,
  POOLED_STREAM
} floor_kind;

/* Runs one floor with the consumer pinned to `consumer_cpu` and this process
 * to `producer_cpu`; returns the ring's wall time in ns (0 for the others). */
static double run_floor(floor_kind kind, shared *s, tb_pool *pool,
                        int producer_cpu, int consumer_cpu) {
  memset(s, 0, sizeof *s);
  tb_channel *producer_end = NULL, *consumer_end = NULL;
  bench_check(tb_channel_pair(&producer_end, &consumer_end), "tb_channel_pair");
  int sockets[2];
  bench_check_system(
      socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sockets) == 0,
      "socketpair");
  pid_t child = fork();
  bench_check_system(child >= 0, "fork");
  if (child == 0) {
    close(sockets[0]);
    tb_channel_unref(producer_end);
    pin(consumer_cpu);
    if (kind == FLOOR_WAKE)
      consume_wakes(s);
    else if (kind == FLOOR_MESSAGE)
      consume_messages(s, sockets[1]);
    else if (kind == FLOOR_RING)
      consume_ring(s);
    else if (kind == POOLED)
      consume_pooled(s, consumer_end);
    else
      consume_pooled_stream(consumer_end);
    tb_channel_unref(consumer_end);
    _exit(EXIT_SUCCESS);
  }
  close(sockets[1]);
  tb_channel_unref(consumer_end);
  pin(producer_cpu);
  int64_t start = now_ns();
  if (kind == FLOOR_WAKE)
    produce_wakes(s);
  else if (kind == FLOOR_MESSAGE)
    produce_messages(sockets[0]);
  else if (kind == FLOOR_RING)
    produce_ring(s);
  else if (kind == POOLED)
    produce_pooled(s, pool, producer_end);
  else
    produce_pooled_stream(pool, producer_end);
  int status = 0;
  bench_check_system(waitpid(child, &status, 0) == child, "waitpid");
  int64_t elapsed = now_ns() - start;
  bench_check_system(WIFEXITED(status) && WEXITSTATUS(status) == 0,
                     "the consumer process");
  close(sockets[0]);
  /* Every frame home before the channel goes (the releases are on it). */
  tb_tensor *all[POOL_SIZE];
  for (int i = 0; i < POOL_SIZE; i++)
    bench_check(tb_pool_acquire(&all[i], pool, 10000), "tb_pool_acquire");
  for (int i = 0; i < POOL_SIZE; i++)
    tb_tensor_unref(all[i]);
  tb_channel_unref(producer_end);
  return (double)elapsed;
}

static void report_placement(shared *s, tb_pool *pool, const char *placement,
                             int producer_cpu, int consumer_cpu) {
  double wake[2], message[2], pooled[2];
  run_floor(FLOOR_WAKE, s, pool, producer_cpu, consumer_cpu);
  percentiles(s, &wake[0], &wake[1]);
  run_floor(FLOOR_MESSAGE, s, pool, producer_cpu, consumer_cpu);
  percentiles(s, &message[0], &message[1]);
  run_floor(POOLED, s, pool, producer_cpu, consumer_cpu);
  percentiles(s, &pooled[0], &pooled[1]);
  double ring_ns = run_floor(FLOOR_RING, s, pool, producer_cpu, consumer_cpu);
  double stream_ns =
      run_floor(POOLED_STREAM, s, pool, producer_cpu, consumer_cpu);
  char name[128];
  const char *quantile[2] = {"p50", "p99"};
  for (int q = 0; q < 2; q++) {
    snprintf(name, sizeof name, "floor 16-byte message one-way %s (%s)",
             quantile[q], placement);
    bench_report_time(name, message[q], "futex wake floor", wake[q], NULL);
    snprintf(name, sizeof name,
             "handoff pooled 1080p one-way %s (%s) vs futex wake", quantile[q],
             placement);
    bench_report_time(name, pooled[q], "futex wake floor", wake[q], NULL);
    snprintf(name, sizeof name,
             "handoff pooled 1080p one-way %s (%s) vs 16-byte message",
             quantile[q], placement);
    bench_report_time(name, pooled[q], "16-byte message floor", message[q],
                      NULL);
  }
  snprintf(name, sizeof name,
           "handoff pooled 1080p frames/s, 4 in flight (%s) vs futex ring",
           placement);
  bench_report(name, POOLED_FRAMES * 1e9 / stream_ns, "frames/s",
               "4-slot futex ring floor", RING_ITEMS * 1e9 / ring_ns, NULL);
}

int main(void) {
  bench_begin("bench_floors");
  shared *s = mmap(NULL, sizeof(shared), PROT_READ | PROT_WRITE,
                   MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  bench_check_system(s != MAP_FAILED, "mmap of the shared page");
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
  const int64_t shape[] = {1080, 1920, 4};
  tb_alloc_options shm;
  tb_alloc_options_init(&shm, TB_ALLOC_OPTIONS_VERSION);
  shm.memory = TB_MEMORY_SHM;
  tb_tensor *prototype = NULL;
  bench_check(tb_tensor_new(&prototype, TB_DTYPE_U8, 3, shape, &shm),
              "tb_tensor_new");
  tb_pool *pool = NULL;
  bench_check(tb_pool_new(&pool, prototype, POOL_SIZE), "tb_pool_new");
  tb_tensor_unref(prototype);
  const char *quick = getenv("TB_BENCH_QUICK");
  if (second >= 0)
    report_placement(s, pool, "2 CPUs", first, second);
  else
    fprintf(stderr, "bench_floors: one CPU allowed; no 2-CPU placement\n");
  if (quick == NULL || second < 0)
    report_placement(s, pool, "1 CPU", first, first);
  tb_pool_unref(pool);
  munmap(s, sizeof(shared));
  return bench_end();
}
