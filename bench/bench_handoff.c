/* Handing frames to another process, against the other ways of doing it.
 *
 * The receiver is a forked child (and, for the Python peer, a Python process
 * this program starts), so every figure crosses a process boundary.
 *
 * Handoff latency, 1080p RGBA, one way: the sender reads CLOCK_MONOTONIC,
 * writes the reading into the first bytes of what it hands over, and hands
 * it over; the receiver, once it can read the bytes, reads the stamp out of
 * them, reads the clock and reports the difference (one machine: one clock).
 * Then it drops what it received and acknowledges on a separate socket;
 * only then does the sender start the next handoff, so each one finds the
 * receiver waiting (blocked in the kernel, as a real consumer would be).
 * Allocation, filling, the acknowledgement and every teardown the receiver
 * does after reading are outside the measured time; teardown that a design
 * defers into the next receive is inside it.
 *
 *   first   a new SHM tensor each time: tb_channel_send -> tb_channel_recv
 *           (fd, import checks, mmap) + tb_tensor_map + first read
 *   pooled  tb_pool of 4: acquire -> send -> recv + map + read -> drop (the
 *           release goes back); after warm-up no fd and no mmap
 *   floor   a bare SCM_RIGHTS handoff: sendmsg of a memfd's fd (the stamp
 *           is the payload) on a seqpacket socketpair -> recvmsg -> close
 *   message the stamp alone on the same socketpair, no fd: what any handoff
 *           that wakes a waiting process costs at least (the pooled
 *           handoff's own floor)
 *   python  what Python users do today (bench/_handoff_peer.py): the segment
 *           name over a seqpacket socket -> multiprocessing.shared_memory
 *           SharedMemory(name=) + np.ndarray + read of one byte
 *   pipe    the frame's bytes written into a pipe (1 MiB pipe buffer, the
 *           unprivileged maximum) and read into a buffer on the other side
 *
 * All run in alternating batches (floor message first pooled pipe python,
 * again and again) so that drift hits all alike; the figure is the median
 * of the batch means.
 *
 * Pipeline throughput, 4K RGBA: frames/s of a producer -> consumer loop with
 * no acknowledgement per frame: the pooled channel (the producer writes a
 * sequence byte into each frame, the consumer checks it) against the pipe
 * copy (all bytes of each frame through the pipe). The producer does not
 * fill the frames in either loop: this measures the transport. */
#define _GNU_SOURCE
#include "harness.h"

#include <tensorbuf/tensorbuf.h>

#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define LATENCY_FRAME (&bench_frames[1])  /* 1080p */
#define PIPELINE_FRAME (&bench_frames[2]) /* 4K */
#define POOL_SIZE 4
#define PIPE_BUFFER_BYTES (1 << 20)
/* Latency batches: about this long each; 7..31 rounds of every kind,
 * rounds added until they took this long in all. */
#define LATENCY_BATCH_NS 20e6
#define LATENCY_MIN_ROUNDS 7
#define LATENCY_MAX_ROUNDS 31
#define LATENCY_BUDGET_NS 2.5e9
#define WARM_UP_HANDOFFS 16
#define PYTHON_PEER TB_BENCH_SOURCE_DIR "/_handoff_peer.py"
#define PYTHON_START_TIMEOUT_MS 30000

/* What the receiver is to take next; the child serves all but PYTHON. */
typedef enum handoff_kind {
  HANDOFF_FLOOR,
  HANDOFF_MESSAGE,
  HANDOFF_FIRST,
  HANDOFF_POOLED,
  HANDOFF_PIPE,
  HANDOFF_PYTHON,
  LATENCY_KINDS,
  PIPELINE_POOLED = LATENCY_KINDS,
  PIPELINE_PIPE,
} handoff_kind;

/* Sender -> receiver child, on the control socket, before each batch; the
 * child answers each latency handoff with its one-way nanoseconds (int64)
 * and each pipeline batch with 0 once it has checked the last frame. */
typedef struct command {
  uint32_t kind;
  uint32_t count;
} command;

/* One end of every transport; the sender and the child each hold one. */
typedef struct transports {
  int control;
  int floor_socket;
  int pipe; /* write end for the sender, read end for the child */
  tb_channel *first, *pooled, *pipeline;
} transports;

typedef struct python_peer {
  pid_t pid;
  int socket;
  char name[64]; /* the segment, as Python names it (no leading '/') */
  uint8_t *data;
  size_t bytes;
} python_peer;

typedef struct sender {
  transports ends;
  pid_t receiver;
  int floor_memfd;
  tb_alloc_options shm;
  tb_pool *latency_pool, *pipeline_pool;
  uint8_t *pipe_frame; /* the pipe's source: 4K bytes, 1080p uses a prefix */
  python_peer python;  /* socket -1: not running */
} sender;

static int64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* ---- small message helpers (seqpacket: one call, one message) ----------- */

static void send_value(int socket, int64_t value) {
  bench_check_system(send(socket, &value, sizeof value, MSG_NOSIGNAL) ==
                         (ssize_t)sizeof value,
                     "send of a stamp or an acknowledgement");
}

static int64_t receive_value(int socket) {
  int64_t value;
  ssize_t got = recv(socket, &value, sizeof value, 0);
  if (got == 0) {
    fprintf(stderr, "bench_handoff: the receiving process went away\n");
    exit(EXIT_FAILURE);
  }
  bench_check_system(got == (ssize_t)sizeof value,
                     "recv of a stamp or an acknowledgement");
  return value;
}

static void write_all(int fd, const uint8_t *bytes, size_t size) {
  while (size > 0) {
    ssize_t n = write(fd, bytes, size);
    bench_check_system(n > 0, "write to the pipe");
    bytes += n;
    size -= (size_t)n;
  }
}

static void read_all(int fd, uint8_t *bytes, size_t size) {
  while (size > 0) {
    ssize_t n = read(fd, bytes, size);
    bench_check_system(n > 0, "read from the pipe");
    bytes += n;
    size -= (size_t)n;
  }
}

/* A buffer for the pipe's bytes, written once so that every page is in.
 * Page-aligned: the kernel copies into and out of it with `rep movsb`, which
 * runs at a fraction of its speed on a misaligned destination (malloc's
 * large blocks start 16 bytes into a page): the pipe gets its best case. */
static uint8_t *pipe_buffer(size_t bytes) {
  size_t page = (size_t)sysconf(_SC_PAGESIZE);
  uint8_t *buffer = aligned_alloc(page, (bytes + page - 1) / page * page);
  bench_check_system(buffer != NULL, "aligned_alloc");
  memset(buffer, 1, bytes);
  return buffer;
}

static int64_t read_stamp(const uint8_t *bytes) {
  int64_t stamp;
  memcpy(&stamp, bytes, sizeof stamp);
  return stamp;
}

static void write_stamp(uint8_t *bytes) {
  int64_t stamp = now_ns();
  memcpy(bytes, &stamp, sizeof stamp);
}

/* ---- the receiving child ------------------------------------------------ */

static int64_t receive_fd(int socket) {
  int64_t stamp;
  close(bench_receive_fd(socket, &stamp, sizeof stamp));
  return now_ns() - stamp;
}

static int64_t receive_message(int socket) {
  int64_t stamp = receive_value(socket);
  return now_ns() - stamp;
}

static int64_t receive_tensor(tb_channel *channel) {
  tb_tensor *tensor;
  tb_map *map;
  bench_check(tb_channel_recv(&tensor, channel, -1), "tb_channel_recv");
  bench_check(tb_tensor_map(&map, tensor, TB_MAP_READ), "tb_tensor_map");
  int64_t stamp = read_stamp(tb_map_data(map)); /* the first read */
  int64_t latency = now_ns() - stamp;
  tb_map_free(map);
  tb_tensor_unref(tensor);
  return latency;
}

static int64_t receive_copy(int pipe, uint8_t *frame, size_t bytes) {
  read_all(pipe, frame, bytes);
  int64_t stamp = read_stamp(frame);
  return now_ns() - stamp;
}

static void check_sequence(uint8_t got, uint32_t expected) {
  if (got == (uint8_t)expected)
    return;
  fprintf(stderr, "bench_handoff: frame %u arrived with byte %u\n", expected,
          got);
  exit(EXIT_FAILURE);
}

static void consume_pooled(tb_channel *channel, uint32_t count) {
  for (uint32_t i = 0; i < count; i++) {
    tb_tensor *tensor;
    tb_map *map;
    bench_check(tb_channel_recv(&tensor, channel, -1), "tb_channel_recv");
    bench_check(tb_tensor_map(&map, tensor, TB_MAP_READ), "tb_tensor_map");
    check_sequence(*(const uint8_t *)tb_map_data(map), i);
    tb_map_free(map);
    tb_tensor_unref(tensor);
  }
}

static void consume_copies(int pipe, uint8_t *frame, size_t bytes,
                           uint32_t count) {
  for (uint32_t i = 0; i < count; i++) {
    read_all(pipe, frame, bytes);
    check_sequence(frame[0], i);
  }
}

/* One latency handoff of `kind`; its one-way nanoseconds. */
static int64_t receive_one(transports *ends, handoff_kind kind,
                           uint8_t *frame) {
  switch (kind) {
  case HANDOFF_FLOOR:
    return receive_fd(ends->floor_socket);
  case HANDOFF_MESSAGE:
    return receive_message(ends->floor_socket);
  case HANDOFF_FIRST:
    return receive_tensor(ends->first);
  case HANDOFF_POOLED:
    return receive_tensor(ends->pooled);
  case HANDOFF_PIPE:
    return receive_copy(ends->pipe, frame, bench_frame_bytes(LATENCY_FRAME));
  default:
    fprintf(stderr, "bench_handoff: no receiver for kind %d\n", (int)kind);
    exit(EXIT_FAILURE);
  }
}

static int receiver_main(transports *ends) {
  size_t frame_bytes = bench_frame_bytes(PIPELINE_FRAME);
  uint8_t *frame = pipe_buffer(frame_bytes);
  command next;
  ssize_t got;
  while ((got = recv(ends->control, &next, sizeof next, 0)) ==
         (ssize_t)sizeof next) {
    if (next.kind == PIPELINE_POOLED || next.kind == PIPELINE_PIPE) {
      if (next.kind == PIPELINE_POOLED)
        consume_pooled(ends->pipeline, next.count);
      else
        consume_copies(ends->pipe, frame, frame_bytes, next.count);
      send_value(ends->control, 0);
      continue;
    }
    for (uint32_t i = 0; i < next.count; i++)
      send_value(ends->control,
                 receive_one(ends, (handoff_kind)next.kind, frame));
  }
  bench_check_system(got == 0, "recv of a command");
  free(frame);
  tb_channel_unref(ends->first);
  tb_channel_unref(ends->pooled);
  tb_channel_unref(ends->pipeline);
  return EXIT_SUCCESS;
}

/* ---- setting up --------------------------------------------------------- */

static void seqpacket_pair(int fds[2]) {
  bench_check_system(
      socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, fds) == 0,
      "socketpair");
}

/* Makes both processes' ends and forks the receiver; the sender keeps
 * `ends`. Forks before the sender allocates anything else, so the child
 * holds nothing of the sender's. */
static void start_receiver(sender *s) {
  int control[2], floor_pair[2], pipe_fds[2];
  seqpacket_pair(control);
  seqpacket_pair(floor_pair);
  bench_check_system(pipe2(pipe_fds, O_CLOEXEC) == 0, "pipe2");
  /* The largest buffer an unprivileged pipe may have: the pipe's best. */
  bench_check_system(fcntl(pipe_fds[1], F_SETPIPE_SZ, PIPE_BUFFER_BYTES) >= 0,
                     "F_SETPIPE_SZ");
  transports child;
  bench_check(tb_channel_pair(&s->ends.first, &child.first), "tb_channel_pair");
  bench_check(tb_channel_pair(&s->ends.pooled, &child.pooled),
              "tb_channel_pair");
  bench_check(tb_channel_pair(&s->ends.pipeline, &child.pipeline),
              "tb_channel_pair");
  fflush(NULL);
  s->receiver = fork();
  bench_check_system(s->receiver >= 0, "fork");
  if (s->receiver == 0) {
    tb_channel_unref(s->ends.first);
    tb_channel_unref(s->ends.pooled);
    tb_channel_unref(s->ends.pipeline);
    close(control[0]);
    close(floor_pair[0]);
    close(pipe_fds[1]);
    child.control = control[1];
    child.floor_socket = floor_pair[1];
    child.pipe = pipe_fds[0];
    _exit(receiver_main(&child));
  }
  tb_channel_unref(child.first);
  tb_channel_unref(child.pooled);
  tb_channel_unref(child.pipeline);
  close(control[1]);
  close(floor_pair[1]);
  close(pipe_fds[0]);
  s->ends.control = control[0];
  s->ends.floor_socket = floor_pair[0];
  s->ends.pipe = pipe_fds[1];
}

static tb_pool *new_pool(const sender *s, const bench_frame *frame) {
  tb_tensor *prototype;
  bench_check(tb_tensor_new(&prototype, TB_DTYPE_U8, 3, frame->shape, &s->shm),
              "tb_tensor_new");
  tb_pool *pool;
  bench_check(tb_pool_new(&pool, prototype, POOL_SIZE), "tb_pool_new");
  tb_tensor_unref(prototype);
  return pool;
}

static void stop_python(python_peer *p) {
  close(p->socket);
  p->socket = -1;
  int status;
  waitpid(p->pid, &status, 0);
  munmap(p->data, p->bytes);
  char path[sizeof p->name + 1];
  snprintf(path, sizeof path, "/%s", p->name);
  shm_unlink(path);
}

/* Starts the Python peer and the POSIX shared-memory segment it attaches
 * to; on failure says why and leaves p->socket at -1. */
static void start_python(python_peer *p) {
  p->socket = -1;
  p->bytes = bench_frame_bytes(LATENCY_FRAME);
  snprintf(p->name, sizeof p->name, "tb-bench-handoff-%ld", (long)getpid());
  char path[sizeof p->name + 1];
  snprintf(path, sizeof path, "/%s", p->name);
  int fd = shm_open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  bench_check_system(fd >= 0, "shm_open");
  bench_check_system(ftruncate(fd, (off_t)p->bytes) == 0, "ftruncate");
  p->data = mmap(NULL, p->bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  bench_check_system(p->data != MAP_FAILED, "mmap");
  close(fd);
  memset(p->data, 0, sizeof(int64_t)); /* the stamp's page, faulted in */

  const int64_t *shape = LATENCY_FRAME->shape;
  char dims[3][24];
  for (int i = 0; i < 3; i++)
    snprintf(dims[i], sizeof dims[i], "%lld", (long long)shape[i]);
  const char *args[] = {dims[0], dims[1], dims[2], NULL};
  char why[512];
  p->socket = bench_start_python(PYTHON_PEER, args, -1, PYTHON_START_TIMEOUT_MS,
                                 &p->pid, why, sizeof why);
  if (p->socket < 0) {
    fprintf(stderr, "bench_handoff: SKIPPING the Python peer: %s\n", why);
    munmap(p->data, p->bytes);
    shm_unlink(path);
  }
}

/* ---- the sender's side of each latency handoff -------------------------- */

static int64_t handoff_floor(sender *s) {
  int64_t stamp = now_ns();
  bench_send_fd(s->ends.floor_socket, s->floor_memfd, &stamp, sizeof stamp);
  return receive_value(s->ends.control);
}

static int64_t handoff_message(sender *s) {
  send_value(s->ends.floor_socket, now_ns());
  return receive_value(s->ends.control);
}

/* Stamps and sends `tensor`; its first page was written before, as a
 * producer fills a frame before handing it on. */
static int64_t send_tensor(sender *s, tb_channel *channel, tb_tensor *tensor) {
  tb_map *map;
  bench_check(tb_tensor_map(&map, tensor, TB_MAP_WRITE), "tb_tensor_map");
  uint8_t *data = tb_map_data(map);
  memset(data, 0, sizeof(int64_t));
  write_stamp(data);
  bench_check(tb_channel_send(channel, tensor, 0), "tb_channel_send");
  int64_t latency = receive_value(s->ends.control);
  tb_map_free(map);
  tb_tensor_unref(tensor);
  return latency;
}

static int64_t handoff_first(sender *s) {
  tb_tensor *tensor;
  bench_check(
      tb_tensor_new(&tensor, TB_DTYPE_U8, 3, LATENCY_FRAME->shape, &s->shm),
      "tb_tensor_new");
  return send_tensor(s, s->ends.first, tensor);
}

static int64_t handoff_pooled(sender *s) {
  tb_tensor *tensor;
  bench_check(tb_pool_acquire(&tensor, s->latency_pool, -1), "tb_pool_acquire");
  return send_tensor(s, s->ends.pooled, tensor);
}

static int64_t handoff_pipe(sender *s) {
  write_stamp(s->pipe_frame);
  write_all(s->ends.pipe, s->pipe_frame, bench_frame_bytes(LATENCY_FRAME));
  return receive_value(s->ends.control);
}

static int64_t handoff_python(sender *s) {
  python_peer *p = &s->python;
  write_stamp(p->data);
  size_t length = strlen(p->name);
  bench_check_system(send(p->socket, p->name, length, MSG_NOSIGNAL) ==
                         (ssize_t)length,
                     "send to the Python peer");
  return receive_value(p->socket);
}

/* ---- latency: all kinds in alternating batches -------------------------- */

typedef int64_t (*handoff_fn)(sender *s);

typedef struct latency_side {
  const char *label;
  handoff_fn handoff;
  bool wanted;
  uint32_t batch; /* handoffs per batch */
  double means[LATENCY_MAX_ROUNDS];
  double median_ns;
} latency_side;

/* Runs `count` handoffs; returns the mean one-way nanoseconds. */
static double latency_batch(sender *s, handoff_kind kind, latency_side *side,
                            uint32_t count) {
  if (kind != HANDOFF_PYTHON) {
    command next = {kind, count};
    bench_check_system(send(s->ends.control, &next, sizeof next,
                            MSG_NOSIGNAL) == (ssize_t)sizeof next,
                       "send of a command");
  }
  int64_t sum = 0;
  for (uint32_t i = 0; i < count; i++)
    sum += side->handoff(s);
  return (double)sum / count;
}

/* Warms up (the pool's first round carries fds; page tables, caches) and
 * sizes the batches from how long a handoff takes, acknowledgement and
 * untimed work included. */
static void calibrate_latency(sender *s, handoff_kind kind,
                              latency_side *side) {
  int64_t start = now_ns();
  latency_batch(s, kind, side, WARM_UP_HANDOFFS);
  double each = (double)(now_ns() - start) / WARM_UP_HANDOFFS;
  double batch = LATENCY_BATCH_NS / fmax(each, 1.0);
  side->batch = batch < 1 ? 1 : batch > 4096 ? 4096 : (uint32_t)batch;
}

static void measure_latency(sender *s, latency_side sides[LATENCY_KINDS]) {
  for (int kind = 0; kind < LATENCY_KINDS; kind++)
    if (sides[kind].wanted)
      calibrate_latency(s, kind, &sides[kind]);
  size_t rounds = 0;
  int64_t start = now_ns();
  while (rounds < LATENCY_MAX_ROUNDS &&
         (rounds < LATENCY_MIN_ROUNDS ||
          (double)(now_ns() - start) < LATENCY_BUDGET_NS)) {
    for (int kind = 0; kind < LATENCY_KINDS; kind++)
      if (sides[kind].wanted)
        sides[kind].means[rounds] =
            latency_batch(s, kind, &sides[kind], sides[kind].batch);
    rounds++;
  }
  for (int kind = 0; kind < LATENCY_KINDS; kind++)
    sides[kind].median_ns =
        sides[kind].wanted ? bench_median(sides[kind].means, rounds) : NAN;
}

typedef struct latency_record {
  const char *name;
  handoff_kind subject, peer;
  const char *target;
} latency_record;

static const latency_record latency_records[] = {
    {"handoff first 1080p", HANDOFF_FIRST, HANDOFF_FLOOR, "<= 2x"},
    {"handoff pooled 1080p", HANDOFF_POOLED, HANDOFF_FLOOR, "<= 0.5x"},
    {"handoff pooled 1080p vs bare message", HANDOFF_POOLED, HANDOFF_MESSAGE,
     NULL},
    {"handoff first 1080p vs python", HANDOFF_FIRST, HANDOFF_PYTHON, NULL},
    {"handoff pooled 1080p vs python", HANDOFF_POOLED, HANDOFF_PYTHON, NULL},
    {"handoff pooled 1080p vs pipe copy", HANDOFF_POOLED, HANDOFF_PIPE, NULL},
};

static void bench_latency(sender *s) {
  latency_side sides[LATENCY_KINDS] = {
      [HANDOFF_FLOOR] = {"SCM_RIGHTS fd handoff (floor)", handoff_floor},
      [HANDOFF_MESSAGE] = {"seqpacket message, no fd", handoff_message},
      [HANDOFF_FIRST] = {"tensorbuf first handoff", handoff_first},
      [HANDOFF_POOLED] = {"tensorbuf pooled handoff", handoff_pooled},
      [HANDOFF_PIPE] = {"pipe copy (1 MiB pipe)", handoff_pipe},
      [HANDOFF_PYTHON] = {"python shared_memory attach+ndarray",
                          handoff_python},
  };
  size_t count = sizeof latency_records / sizeof latency_records[0];
  for (size_t i = 0; i < count; i++) {
    const latency_record *r = &latency_records[i];
    if (bench_selected(r->name))
      sides[r->subject].wanted = sides[r->peer].wanted = true;
  }
  bool any = false;
  for (int kind = 0; kind < LATENCY_KINDS; kind++)
    any = any || sides[kind].wanted;
  if (!any)
    return;
  if (sides[HANDOFF_PYTHON].wanted) {
    start_python(&s->python);
    sides[HANDOFF_PYTHON].wanted = s->python.socket >= 0;
  }
  measure_latency(s, sides);
  if (s->python.socket >= 0)
    stop_python(&s->python);
  for (size_t i = 0; i < count; i++) {
    const latency_record *r = &latency_records[i];
    const latency_side *subject = &sides[r->subject], *peer = &sides[r->peer];
    if (bench_selected(r->name) && subject->wanted && peer->wanted)
      bench_report_time(r->name, subject->median_ns, peer->label,
                        peer->median_ns, r->target);
  }
  /* Each side on its own too, so the table shows every figure. */
  for (int kind = 0; kind < LATENCY_KINDS; kind++)
    if (sides[kind].wanted)
      printf("bench_handoff: %-40s %9.2f us one way (median of batch means)\n",
             sides[kind].label, sides[kind].median_ns / 1e3);
}

/* ---- pipeline throughput ------------------------------------------------ */

static void start_pipeline(sender *s, handoff_kind kind, uint64_t frames) {
  command next = {kind, (uint32_t)frames};
  bench_check_system(send(s->ends.control, &next, sizeof next, MSG_NOSIGNAL) ==
                         (ssize_t)sizeof next,
                     "send of a command");
}

static void produce_pooled(void *context, uint64_t frames) {
  sender *s = context;
  start_pipeline(s, PIPELINE_POOLED, frames);
  for (uint64_t i = 0; i < frames; i++) {
    tb_tensor *tensor;
    tb_map *map;
    bench_check(tb_pool_acquire(&tensor, s->pipeline_pool, -1),
                "tb_pool_acquire");
    bench_check(tb_tensor_map(&map, tensor, TB_MAP_WRITE), "tb_tensor_map");
    *(uint8_t *)tb_map_data(map) = (uint8_t)i;
    tb_map_free(map);
    bench_check(tb_channel_send(s->ends.pipeline, tensor, 0),
                "tb_channel_send");
    tb_tensor_unref(tensor);
  }
  receive_value(s->ends.control);
}

static void produce_copies(void *context, uint64_t frames) {
  sender *s = context;
  start_pipeline(s, PIPELINE_PIPE, frames);
  for (uint64_t i = 0; i < frames; i++) {
    s->pipe_frame[0] = (uint8_t)i;
    write_all(s->ends.pipe, s->pipe_frame, bench_frame_bytes(PIPELINE_FRAME));
  }
  receive_value(s->ends.control);
}

static void bench_pipeline(sender *s) {
  const char *name = "pipeline 4K pooled";
  if (!bench_selected(name))
    return;
  bench_op pooled = {"tensorbuf", produce_pooled, s};
  bench_op copies = {"pipe copy (1 MiB pipe)", produce_copies, s};
  bench_timing timing = bench_measure(&pooled, &copies);
  bench_report(name, 1e9 / timing.subject_ns, "frames/s", copies.label,
               1e9 / timing.peer_ns, ">= 100x");
}

int main(void) {
  bench_begin("bench_handoff");
  if (!tb_memory_available(TB_MEMORY_SHM)) {
    fprintf(stderr, "bench_handoff: SKIPPING everything: SHM (memfd) is not "
                    "available here, and channels carry fds\n");
    return bench_end();
  }
  sender s = {.shm = TB_ALLOC_OPTIONS_INIT, .python = {.socket = -1}};
  s.shm.memory = TB_MEMORY_SHM;
  start_receiver(&s);

  s.floor_memfd = bench_new_memfd(bench_frame_bytes(LATENCY_FRAME));
  s.latency_pool = new_pool(&s, LATENCY_FRAME);
  s.pipeline_pool = new_pool(&s, PIPELINE_FRAME);
  s.pipe_frame = pipe_buffer(bench_frame_bytes(PIPELINE_FRAME));

  bench_latency(&s);
  bench_pipeline(&s);

  close(s.ends.control); /* the receiver's cue to finish */
  int status;
  bench_check_system(waitpid(s.receiver, &status, 0) == s.receiver, "waitpid");
  if (!WIFEXITED(status) || WEXITSTATUS(status) != EXIT_SUCCESS) {
    fprintf(stderr, "bench_handoff: the receiving process failed\n");
    return EXIT_FAILURE;
  }
  close(s.ends.floor_socket);
  close(s.ends.pipe);
  close(s.floor_memfd);
  free(s.pipe_frame);
  tb_channel_unref(s.ends.first);
  tb_channel_unref(s.ends.pooled);
  tb_channel_unref(s.ends.pipeline);
  tb_pool_unref(s.latency_pool);
  tb_pool_unref(s.pipeline_pool);
  return bench_end();
}
