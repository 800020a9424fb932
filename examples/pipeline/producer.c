/* pipeline_demo: a C producer hands camera frames to a Lua and a Python
 * process without copying them. This is what `./run demo` runs.
 *
 * The producer makes two pools of 1080p frames in shared memory (sealed
 * memfds), one of NV12 images and one of RGBA images, listens on an abstract
 * Unix socket named after its pid, and starts the two consumers, which
 * connect to it: consumer.lua (lua5.4) and consumer.py (Python with NumPy).
 * Then, for --seconds, it paints frames that alternate NV12 and RGBA — a
 * gradient that moves with the frame number — and sends each one to both
 * consumers, read-only. A frame travels as a small description (and, the
 * first time a pool buffer goes, its fd): both consumers map the producer's
 * pages, read them in place, and drop the frame, whose buffer then returns
 * to the pool. No frame byte is ever copied: the producer writes the pixels
 * once, into the shared memory, and the consumers read that memory through
 * their mappings (Lua element by element through a map, Python through a
 * NumPy array over the map).
 *
 * Each consumer computes a digest of every frame and reports it back: the
 * checksum is the position-weighted byte sum  sum_j (j + 1) * b[j * S]
 * mod 2^32 and the mean is sum_j b[j * S] / count, over the frame's bytes b
 * in row-major order, for j = 0 .. count - 1 with count = ceil(nbytes / S).
 * Python digests the whole frame (S = 1); Lua, which reads one element per
 * call, digests a sample, every LUA_SAMPLE_STRIDE-th byte. The producer
 * computes both digests of every frame from its own pages and compares.
 *
 * Results come back without messages: at the start the producer sends each
 * consumer a small writable f64 tensor (frame, checksum, mean, latency) and
 * a fence. A consumer fills the tensor for frame N, then signals the fence
 * to N + 1. The producer paints and sends frame N + 1 once both fences
 * reached N + 1, so the consumers are idle in recv when a frame comes, and
 * the latency they measure — CLOCK_MONOTONIC from the producer's send,
 * stamped in the frame's name, to the consumer holding the frame mapped —
 * is the hand-off itself (waking up, receiving the description, mapping),
 * not time spent in a queue or waiting for a core behind the painting. (With
 * fewer than three cores, the consumer woken second may still wait for one
 * behind the first, which shows in the p99.)
 *
 * It prints a progress line (at most 5 a second) and a summary:
 *   demo: N frames, X frames/s, 0 bytes copied, p50/p99 handoff latency
 *   A/B us, checksums agree
 * Exit status: 0 success, 1 failure (a digest that disagrees, a consumer
 * that fails, live objects left), 2 bad usage, 77 no shared memory here.
 *
 * Options: --seconds S (default 3); --lua-consumer FILE and
 * --python-consumer FILE run another consumer script (the tests run ones
 * that fail on purpose). The build compiles in where the interpreters, the
 * scripts and the build tree's Lua and Python modules are (PIPELINE_*). */
#define _GNU_SOURCE /* struct ucred */
#include <tensorbuf/tensorbuf.h>

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

enum {
  WIDTH = 1920,
  HEIGHT = 1080,
  /* Frames of each format: the one the consumers hold, and one more, so
   * that the next frame of a format never waits for the consumers' releases
   * of the last (sent, but read by a pool only when it runs dry). */
  POOL_SIZE = 2,
  /* Lua's sample: 1 byte in 251 (Lua reads one element per call, at about
   * 0.2 us). A prime, so that the sample visits every column and every RGBA
   * channel, where a power of two would see one channel of a few columns. */
  LUA_SAMPLE_STRIDE = 251,
  NUM_CONSUMERS = 2,
};

/* The fields of a consumer's result tensor (f64, exact for these values). */
enum { RESULT_FRAME, RESULT_CHECKSUM, RESULT_MEAN, RESULT_LATENCY_NS, RESULTS };

static const int64_t NS_PER_S = 1000000000;
/* The longest a consumer may take to connect or to digest one frame. */
static const int64_t CONSUMER_TIMEOUT_NS = 10 * NS_PER_S;
/* Waits are cut into slices this long, to notice a consumer that died. */
static const int SLICE_MS = 100;
static const int64_t PROGRESS_EVERY_NS = NS_PER_S / 2;

typedef struct digest {
  uint32_t checksum;
  double mean;
} digest;

typedef struct consumer {
  const char *name;       /* "lua", "python" */
  const char *what;       /* the bytes its digest covers */
  const char *how;        /* how it reads them */
  uint64_t sample_stride; /* S of its digest */
  pid_t pid;              /* 0 once reaped */
  int wait_status;        /* when reaped */
  tb_channel *channel;    /* to it */
  tb_tensor *results;     /* f64 [RESULTS], written by it */
  tb_map *results_map;    /* our read-only view of them */
  tb_fence *acknowledged; /* frames it has digested */
  int64_t *latencies_ns;  /* one per frame */
  size_t latencies_capacity;
  uint64_t mismatches; /* frames whose digest was not ours */
} consumer;

/* What the command line asks for. */
typedef struct command_line {
  double seconds;
  char *lua_script, *python_script;
} command_line;

/* ---- reporting ----------------------------------------------------------- */

__attribute__((format(printf, 1, 2))) static _Noreturn void
fail(const char *format, ...) {
  va_list args;
  va_start(args, format);
  fputs("\npipeline_demo: ", stderr);
  vfprintf(stderr, format, args);
  fputc('\n', stderr);
  va_end(args);
  exit(EXIT_FAILURE); /* which ends the consumers too: see start() */
}

static void check(tb_status status, const char *call) {
  if (status != TB_OK)
    fail("%s failed: %s: %s", call, tb_status_name(status), tb_last_error());
}

static int64_t monotonic_ns(void) {
  struct timespec now;
  clock_gettime(CLOCK_MONOTONIC, &now);
  return (int64_t)now.tv_sec * NS_PER_S + now.tv_nsec;
}

/* ---- frames -------------------------------------------------------------- */

/* Gradients that move with the frame number, a few pixels a frame. */
static void paint(tb_tensor *frame, uint8_t *bytes, uint64_t number) {
  const uint8_t shift = (uint8_t)(4 * number);
  const uint64_t pitch = tb_image_plane_stride(frame, 0);
  if (tb_image_format(frame) == TB_PIXEL_FORMAT_RGBA) {
    for (uint32_t y = 0; y < HEIGHT; y++) {
      uint8_t *row = bytes + y * pitch;
      for (uint32_t x = 0; x < WIDTH; x++) {
        row[4 * x + 0] = (uint8_t)(x - shift);     /* R moves right */
        row[4 * x + 1] = (uint8_t)(y - shift);     /* G moves down */
        row[4 * x + 2] = (uint8_t)(x + y + shift); /* B moves up-left */
        row[4 * x + 3] = 255;
      }
    }
    return;
  }
  /* NV12: a luma plane, then a plane of interleaved U, V at half size. */
  for (uint32_t y = 0; y < HEIGHT; y++) {
    uint8_t *row = bytes + y * pitch;
    for (uint32_t x = 0; x < WIDTH; x++)
      row[x] = (uint8_t)(x + 2 * y - shift); /* moves down-right */
  }
  const uint64_t chroma = tb_image_plane_offset(frame, 1);
  const uint64_t chroma_pitch = tb_image_plane_stride(frame, 1);
  for (uint32_t y = 0; y < HEIGHT / 2; y++) {
    uint8_t *row = bytes + chroma + y * chroma_pitch;
    for (uint32_t x = 0; x < WIDTH / 2; x++) {
      row[2 * x + 0] = (uint8_t)(x + shift); /* U moves left */
      row[2 * x + 1] = (uint8_t)(y + shift); /* V moves up */
    }
  }
}

/* The digest of every `stride`-th byte (see the top of this file). */
static digest digest_of(const uint8_t *bytes, uint64_t nbytes,
                        uint64_t stride) {
  uint64_t sum = 0, weighted = 0, count = 0;
  for (uint64_t i = 0; i < nbytes; i += stride) {
    count++;
    sum += bytes[i];
    weighted += count * bytes[i]; /* wraps mod 2^64: a multiple of 2^32 */
  }
  return (digest){.checksum = (uint32_t)weighted,
                  .mean = (double)sum / (double)count};
}

/* Takes a frame of the right format from its pool (waiting for a consumer
 * to release one if need be), paints it and computes what each consumer
 * should report. */
static tb_tensor *next_frame(tb_pool *const pools[2], uint64_t number,
                             const consumer *consumers,
                             digest expected[NUM_CONSUMERS]) {
  tb_tensor *frame = NULL;
  check(tb_pool_acquire(&frame, pools[number % 2],
                        (int)(CONSUMER_TIMEOUT_NS / 1000000)),
        "tb_pool_acquire");
  tb_map *map = NULL;
  check(tb_tensor_map(&map, frame, TB_MAP_READ | TB_MAP_WRITE),
        "tb_tensor_map");
  uint8_t *bytes = tb_map_data(map);
  paint(frame, bytes, number);
  for (int c = 0; c < NUM_CONSUMERS; c++)
    expected[c] =
        digest_of(bytes, tb_tensor_nbytes(frame), consumers[c].sample_stride);
  tb_map_free(map);
  return frame;
}

/* ---- consumers ----------------------------------------------------------- */

/* The build tree's modules: PIPELINE_LUA_BINDING_DIR holds tensorbuf.lua
 * and tensorbuf_core.so, PIPELINE_LUA_CLOCK_DIR pipeline_clock.so, and
 * PIPELINE_PYTHON_DIR the tensorbuf package. */
static void set_module_paths(void) {
  char lua_path[4096], lua_cpath[4096], python_path[4096];
  /* ";;" at the end: Lua's default path after ours. */
  snprintf(lua_path, sizeof lua_path, "%s/?.lua;;", PIPELINE_LUA_BINDING_DIR);
  snprintf(lua_cpath, sizeof lua_cpath, "%s/?.so;%s/?.so;;",
           PIPELINE_LUA_BINDING_DIR, PIPELINE_LUA_CLOCK_DIR);
  const char *inherited = getenv("PYTHONPATH");
  snprintf(python_path, sizeof python_path, "%s%s%s", PIPELINE_PYTHON_DIR,
           inherited != NULL && *inherited != '\0' ? ":" : "",
           inherited != NULL ? inherited : "");
  setenv("LUA_PATH", lua_path, 1);
  setenv("LUA_CPATH", lua_cpath, 1);
  setenv("PYTHONPATH", python_path, 1);
}

/* Starts a consumer: fork, then exec of argv. */
static pid_t start(char *const argv[]) {
  fflush(stdout); /* or the child would print our buffer again */
  const pid_t producer = getpid();
  const pid_t pid = fork();
  if (pid < 0)
    fail("fork: %s", strerror(errno));
  if (pid == 0) {
    /* A consumer ends with the producer, however the producer ends, even
     * before it has connected (later, its channel's closing ends it too).
     * In a process group of its own, it does not get the terminal's
     * Ctrl-C, which would make it print a traceback. */
    if (prctl(PR_SET_PDEATHSIG, SIGTERM) != 0 || getppid() != producer)
      _exit(127); /* the producer is already gone */
    setpgid(0, 0);
    set_module_paths();
    execv(argv[0], argv);
    fprintf(stderr, "pipeline_demo: exec %s: %s\n", argv[0], strerror(errno));
    _exit(127);
  }
  return pid;
}

/* Reaps the consumer if it has exited; fails if it exited while still
 * needed. */
static void check_alive(consumer *c) {
  if (c->pid == 0 || waitpid(c->pid, &c->wait_status, WNOHANG) != c->pid)
    return;
  c->pid = 0;
  if (WIFEXITED(c->wait_status))
    fail("the %s consumer exited early with status %d (its messages are "
         "above)",
         c->name, WEXITSTATUS(c->wait_status));
  fail("the %s consumer was killed by signal %d", c->name,
       WTERMSIG(c->wait_status));
}

/* Accepts both consumers' connections, telling them apart by the pid the
 * kernel gives for each socket's peer. */
static void accept_consumers(tb_listener *listener, consumer *consumers) {
  const int64_t deadline = monotonic_ns() + CONSUMER_TIMEOUT_NS;
  for (int accepted = 0; accepted < NUM_CONSUMERS;) {
    tb_channel *channel = NULL;
    tb_status status = tb_listener_accept(&channel, listener, SLICE_MS);
    for (int c = 0; c < NUM_CONSUMERS; c++)
      check_alive(&consumers[c]);
    if (status == TB_ERR_TIMEOUT) {
      if (monotonic_ns() > deadline)
        fail("the consumers did not connect within %" PRId64 " s",
             CONSUMER_TIMEOUT_NS / NS_PER_S);
      continue;
    }
    check(status, "tb_listener_accept");
    struct ucred peer;
    socklen_t length = sizeof peer;
    if (getsockopt(tb_channel_fd(channel), SOL_SOCKET, SO_PEERCRED, &peer,
                   &length) != 0)
      fail("getsockopt(SO_PEERCRED): %s", strerror(errno));
    consumer *c = NULL;
    for (int i = 0; i < NUM_CONSUMERS; i++)
      if (consumers[i].pid == peer.pid && consumers[i].channel == NULL)
        c = &consumers[i];
    if (c == NULL) { /* the name is unique to this run, but anyone can dial */
      fprintf(stderr, "pipeline_demo: ignoring a connection from pid %d\n",
              (int)peer.pid);
      tb_channel_unref(channel);
      continue;
    }
    c->channel = channel;
    accepted++;
  }
}

/* Gives the consumer the tensor its results go into and the fence it
 * signals. */
static void hand_result_slots(consumer *c) {
  tb_alloc_options options = TB_ALLOC_OPTIONS_INIT;
  options.memory = TB_MEMORY_SHM;
  options.name = "results";
  const int64_t shape[1] = {RESULTS};
  check(tb_tensor_new(&c->results, TB_DTYPE_F64, 1, shape, &options),
        "tb_tensor_new");
  check(tb_tensor_map(&c->results_map, c->results, TB_MAP_READ),
        "tb_tensor_map");
  check(tb_fence_new(&c->acknowledged, 0), "tb_fence_new");
  check(tb_channel_send(c->channel, c->results, 0), "tb_channel_send");
  check(tb_channel_send_fence(c->channel, c->acknowledged),
        "tb_channel_send_fence");
}

/* Sends the frame to the consumer, stamped with its number and the time. */
static void send_frame(consumer *c, tb_tensor *frame, uint64_t number) {
  char name[64];
  snprintf(name, sizeof name, "frame %" PRIu64 " sent %" PRId64, number,
           monotonic_ns());
  check(tb_tensor_set_name(frame, name), "tb_tensor_set_name");
  tb_status status = tb_channel_send(c->channel, frame, TB_SEND_READ_ONLY);
  if (status == TB_ERR_CLOSED) {
    check_alive(c);
    fail("the %s consumer closed its channel", c->name);
  }
  check(status, "tb_channel_send");
}

/* Waits for the consumer's result for frame `number` and compares it with
 * ours. */
static void collect_result(consumer *c, const digest *expected,
                           uint64_t number) {
  const int64_t deadline = monotonic_ns() + CONSUMER_TIMEOUT_NS;
  while (tb_fence_wait(c->acknowledged, number + 1,
                       (int64_t)SLICE_MS * 1000000) == TB_ERR_TIMEOUT) {
    check_alive(c);
    if (monotonic_ns() > deadline)
      fail("the %s consumer did not digest frame %" PRIu64 " within %" PRId64
           " s",
           c->name, number, CONSUMER_TIMEOUT_NS / NS_PER_S);
  }
  const double *result = tb_map_data(c->results_map);
  if (result[RESULT_FRAME] != (double)number)
    fail("the %s consumer acknowledged frame %" PRIu64
         " with the result of frame %.0f",
         c->name, number, result[RESULT_FRAME]);
  if (result[RESULT_CHECKSUM] != (double)expected->checksum ||
      result[RESULT_MEAN] != expected->mean) {
    if (c->mismatches++ == 0)
      fprintf(stderr,
              "\npipeline_demo: frame %" PRIu64 ": the %s consumer read "
              "checksum %.0f, mean %.17g; the producer wrote checksum %" PRIu32
              ", mean %.17g\n",
              number, c->name, result[RESULT_CHECKSUM], result[RESULT_MEAN],
              expected->checksum, expected->mean);
  }
  if (number >= c->latencies_capacity) {
    c->latencies_capacity = c->latencies_capacity * 2 + 1024;
    c->latencies_ns = realloc(c->latencies_ns,
                              c->latencies_capacity * sizeof *c->latencies_ns);
    if (c->latencies_ns == NULL)
      fail("out of memory");
  }
  c->latencies_ns[number] = (int64_t)result[RESULT_LATENCY_NS];
}

/* ---- statistics ---------------------------------------------------------- */

static int compare_int64(const void *a, const void *b) {
  const int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
  return (x > y) - (x < y);
}

/* The nearest-rank percentile of `sorted` (n > 0), in microseconds. */
static int64_t percentile_us(const int64_t *sorted, size_t n, double p) {
  size_t rank = (size_t)ceil(p / 100.0 * (double)n);
  return sorted[rank > 0 ? rank - 1 : 0] / 1000;
}

/* ---- the run ------------------------------------------------------------- */

static tb_pool *make_pool(tb_pixel_format format) {
  tb_alloc_options options = TB_ALLOC_OPTIONS_INIT;
  options.memory = TB_MEMORY_SHM;
  options.name = tb_pixel_format_name(format);
  tb_tensor *prototype = NULL;
  check(tb_image_new(&prototype, WIDTH, HEIGHT, format, TB_DTYPE_U8, &options),
        "tb_image_new");
  /* The consumers read a frame as its bytes in row-major order: that needs
   * rows without padding, which 1080p rows are (a multiple of 64 bytes). */
  if (!tb_tensor_is_contiguous(prototype))
    fail("a %s frame has padded rows", tb_pixel_format_name(format));
  tb_pool *pool = NULL;
  check(tb_pool_new(&pool, prototype, POOL_SIZE), "tb_pool_new");
  printf("  a pool of %d %s frames, %.1f MiB each, in %s memory\n", POOL_SIZE,
         tb_pixel_format_name(format),
         (double)tb_tensor_nbytes(prototype) / (1 << 20),
         tb_memory_name(tb_tensor_memory(prototype)));
  tb_tensor_unref(prototype);
  return pool;
}

static void print_progress(int64_t elapsed_ns, uint64_t frames,
                           const consumer *consumers) {
  /* One line each, no carriage return: readable in a log or CI output. */
  printf("  %4.1f s: %5" PRIu64 " frames, %6.1f frames/s, last hand-off "
         "%s %" PRId64 " us, %s %" PRId64 " us\n",
         (double)elapsed_ns / NS_PER_S, frames,
         (double)frames * NS_PER_S / (double)elapsed_ns, consumers[0].name,
         consumers[0].latencies_ns[frames - 1] / 1000, consumers[1].name,
         consumers[1].latencies_ns[frames - 1] / 1000);
  fflush(stdout);
}

/* Sends frames for `seconds`, each once both consumers are done with the
 * last; returns how many, and in *elapsed_ns how long they took. */
static uint64_t send_frames(tb_pool *const pools[2], consumer *consumers,
                            double seconds, int64_t *elapsed_ns) {
  const int64_t start_ns = monotonic_ns();
  const int64_t duration_ns = (int64_t)(seconds * NS_PER_S);
  int64_t progress_ns = 0;
  uint64_t frames = 0;
  for (bool done = false; !done;) {
    digest expected[NUM_CONSUMERS];
    tb_tensor *frame = next_frame(pools, frames, consumers, expected);
    for (int c = 0; c < NUM_CONSUMERS; c++)
      send_frame(&consumers[c], frame, frames);
    tb_tensor_unref(frame); /* it comes back when both consumers drop it */
    for (int c = 0; c < NUM_CONSUMERS; c++)
      collect_result(&consumers[c], &expected[c], frames);
    frames++;
    *elapsed_ns = monotonic_ns() - start_ns;
    done = *elapsed_ns >= duration_ns;
    if (done || *elapsed_ns - progress_ns >= PROGRESS_EVERY_NS) {
      print_progress(*elapsed_ns, frames, consumers);
      progress_ns = *elapsed_ns;
    }
  }
  return frames;
}

/* Closes the consumer's channel, which ends it, and waits for it to exit
 * (killing it if it does not); whether it exited with status 0. */
static bool stop(consumer *c) {
  tb_channel_unref(c->channel);
  c->channel = NULL;
  const int64_t deadline = monotonic_ns() + CONSUMER_TIMEOUT_NS;
  bool killed = false;
  pid_t reaped;
  while ((reaped = waitpid(c->pid, &c->wait_status, WNOHANG)) == 0) {
    if (!killed && monotonic_ns() > deadline) {
      fprintf(stderr, "pipeline_demo: the %s consumer did not exit\n", c->name);
      killed = kill(c->pid, SIGKILL) == 0;
    }
    usleep(10 * 1000);
  }
  c->pid = 0;
  if (reaped < 0 || !WIFEXITED(c->wait_status) ||
      WEXITSTATUS(c->wait_status) != 0) {
    fprintf(stderr, "pipeline_demo: the %s consumer failed (wait status %d)\n",
            c->name, c->wait_status);
    return false;
  }
  return true;
}

/* Prints what each consumer compared and the summary line; whether every
 * digest agreed. Sorts the latencies. */
static bool summarize(consumer *consumers, uint64_t frames,
                      int64_t elapsed_ns) {
  const size_t handoffs = NUM_CONSUMERS * frames;
  int64_t *all = malloc(handoffs * sizeof *all);
  if (all == NULL)
    fail("out of memory");
  uint64_t mismatches = 0;
  for (int c = 0; c < NUM_CONSUMERS; c++) {
    consumer *k = &consumers[c];
    qsort(k->latencies_ns, frames, sizeof *k->latencies_ns, compare_int64);
    memcpy(all + c * frames, k->latencies_ns, frames * sizeof *all);
    printf("  %-6s %s of %" PRIu64 " frames: %s, hand-off p50/p99 %" PRId64
           "/%" PRId64 " us\n",
           k->name, k->what, frames,
           k->mismatches == 0 ? "checksums and means agree"
                              : "CHECKSUMS OR MEANS DISAGREE",
           percentile_us(k->latencies_ns, frames, 50),
           percentile_us(k->latencies_ns, frames, 99));
    mismatches += k->mismatches;
  }
  qsort(all, handoffs, sizeof *all, compare_int64);
  printf("demo: %" PRIu64 " frames, %.1f frames/s, 0 bytes copied, p50/p99 "
         "handoff latency %" PRId64 "/%" PRId64 " us, %s\n",
         frames, (double)frames * NS_PER_S / (double)elapsed_ns,
         percentile_us(all, handoffs, 50), percentile_us(all, handoffs, 99),
         mismatches == 0 ? "checksums agree" : "CHECKSUMS DISAGREE");
  free(all);
  return mismatches == 0;
}

static int run(const command_line *args) {
  if (!tb_memory_available(TB_MEMORY_SHM)) {
    printf("pipeline_demo: skipped, shared memory (memfd) is not available\n");
    return 77;
  }
  printf("demo: a C producer hands 1080p camera frames to a Lua and a Python "
         "process for %g s, without copying them\n",
         args->seconds);
  char socket_name[64];
  snprintf(socket_name, sizeof socket_name, "@tensorbuf-demo-%d",
           (int)getpid());
  tb_listener *listener = NULL;
  check(tb_listener_listen(&listener, socket_name), "tb_listener_listen");
  printf("  producer (pid %d), listening on %s\n", (int)getpid(), socket_name);

  char stride[32], what_lua[32];
  snprintf(stride, sizeof stride, "%d", LUA_SAMPLE_STRIDE);
  snprintf(what_lua, sizeof what_lua, "1 byte in %d", LUA_SAMPLE_STRIDE);
  /* Frames go to Python first: it takes longer than Lua to wake and map a
   * frame, and being first (to the idle core) cut its p99 hand-off from
   * about 4 ms to 0.3 ms on a 2-core machine, and raised the frame rate by
   * some 15%, without lengthening Lua's. */
  consumer consumers[NUM_CONSUMERS] = {
      {.name = "python",
       .what = "every byte",
       .how = "with NumPy, over a read-only map",
       .sample_stride = 1},
      {.name = "lua",
       .what = what_lua,
       .how = "element by element through a read-only map",
       .sample_stride = LUA_SAMPLE_STRIDE},
  };
  char *const python_argv[] = {PIPELINE_PYTHON, args->python_script,
                               socket_name, NULL};
  char *const lua_argv[] = {PIPELINE_LUA, args->lua_script, socket_name, stride,
                            NULL};
  consumers[0].pid = start(python_argv);
  consumers[1].pid = start(lua_argv);
  accept_consumers(listener, consumers);
  tb_listener_free(listener); /* nobody else is expected */
  for (int c = 0; c < NUM_CONSUMERS; c++) {
    hand_result_slots(&consumers[c]);
    printf("  %s consumer (pid %d): digests %s of each frame, %s\n",
           consumers[c].name, (int)consumers[c].pid, consumers[c].what,
           consumers[c].how);
  }
  tb_pool *pools[2] = {make_pool(TB_PIXEL_FORMAT_NV12),
                       make_pool(TB_PIXEL_FORMAT_RGBA)};

  int64_t elapsed_ns = 0;
  const uint64_t frames =
      send_frames(pools, consumers, args->seconds, &elapsed_ns);
  bool consumers_ok = true;
  for (int c = 0; c < NUM_CONSUMERS; c++)
    consumers_ok = stop(&consumers[c]) && consumers_ok;
  const bool agreed = summarize(consumers, frames, elapsed_ns);

  for (int c = 0; c < NUM_CONSUMERS; c++) {
    tb_map_free(consumers[c].results_map);
    tb_tensor_unref(consumers[c].results);
    tb_fence_unref(consumers[c].acknowledged);
    free(consumers[c].latencies_ns);
  }
  tb_pool_unref(pools[0]);
  tb_pool_unref(pools[1]);
  const int64_t live = tb_live_objects();
  if (live != 0)
    fprintf(stderr, "pipeline_demo: %" PRId64 " objects still live\n", live);
  return agreed && consumers_ok && live == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}

static bool parse_command_line(command_line *out, int argc, char **argv) {
  static const struct option known[] = {
      {"seconds", required_argument, NULL, 's'},
      {"lua-consumer", required_argument, NULL, 'l'},
      {"python-consumer", required_argument, NULL, 'p'},
      {NULL, 0, NULL, 0}};
  *out = (command_line){.seconds = 3,
                        .lua_script = PIPELINE_LUA_SCRIPT,
                        .python_script = PIPELINE_PYTHON_SCRIPT};
  for (int option; (option = getopt_long(argc, argv, "", known, NULL)) != -1;) {
    char *end = NULL;
    switch (option) {
    case 's':
      out->seconds = strtod(optarg, &end);
      if (*end != '\0' || !(out->seconds > 0 && out->seconds <= 3600))
        return false;
      break;
    case 'l':
      out->lua_script = optarg;
      break;
    case 'p':
      out->python_script = optarg;
      break;
    default:
      return false;
    }
  }
  return optind == argc;
}

int main(int argc, char **argv) {
  command_line args;
  if (!parse_command_line(&args, argc, argv)) {
    fprintf(stderr,
            "usage: %s [--seconds S] [--lua-consumer FILE] "
            "[--python-consumer FILE]\n"
            "  S: how long to send frames, default 3, at most 3600\n"
            "  FILE: a consumer script to run instead of consumer.lua or "
            "consumer.py\n",
            argv[0]);
    return 2;
  }
  return run(&args);
}
