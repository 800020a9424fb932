/* Rings (core/sharing/ring.c): the shared-memory path of a channel.
 *
 * Linked statically: the ring is internal, so the tests call core directly.
 * Several tests fork; a child never uses cmocka's asserts (CHILD_CHECK exits
 * it with status 1 and the reason instead) and is killed by an alarm if it
 * outlives its test. Shared-memory offsets below are the ring's layout as
 * ring.c documents it: a test that plays the scribbler writes them by hand. */
#include "tb_test.h"

#include "sharing/ring.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#define MS_NS INT64_C(1000000)
#define HEADER_BYTES 64u
#define LANE_BYTES 192u /* three cache lines before the slots */
#define SLOT_BYTES 32u
#define TAIL_OFFSET 0u
#define HEAD_OFFSET 64u

#define CHILD_CHECK(condition)                                                 \
  do {                                                                         \
    if (!(condition)) {                                                        \
      fprintf(stderr, "child, %s:%d: check failed: %s\n", __FILE__, __LINE__,  \
              #condition);                                                     \
      _exit(1);                                                                \
    }                                                                          \
  } while (0)

/* ---- helpers ------------------------------------------------------------ */

/* Asserts that a ring call failed with `status`, and frees the error. */
static void assert_ring_error(gboolean ok, GError **error, tb_status status) {
  if (ok || *error == NULL || (*error)->code != (int)status) {
    print_error("expected %s, got %s: %s\n", tb_status_name(status),
                ok ? "success" : tb_status_name((*error)->code),
                *error != NULL ? (*error)->message : "(no error)");
    fail();
  }
  g_clear_error(error);
}

static void assert_ring_ok(gboolean ok, GError **error) {
  if (!ok) {
    print_error("ring call failed: %s\n", (*error)->message);
    fail();
  }
}

static TbRingRecord record_number(uint64_t i) {
  return (TbRingRecord){.token = i * 3 + 1,
                        .generation = (uint32_t)(i * 7),
                        .layout = (uint32_t)(i % 5) + 1,
                        .flags = (uint32_t)(i % 2)};
}

static gboolean same_record(const TbRingRecord *a, const TbRingRecord *b) {
  return a->token == b->token && a->generation == b->generation &&
         a->layout == b->layout && a->flags == b->flags;
}

static TbRingRecord release_of(const TbRingRecord *record) {
  return (TbRingRecord){.token = record->token,
                        .generation = record->generation};
}

/* A ring of `capacity` and its attached other end, both in this process;
 * the fd stays open for the caller (close it). */
typedef struct ring_pair {
  TbRing *producer, *consumer;
  int fd;
} ring_pair;

static ring_pair pair_new(uint32_t capacity) {
  GError *error = NULL;
  ring_pair pair = {0};
  pair.producer = tb_ring_create(capacity, &pair.fd, &error);
  assert_ring_ok(pair.producer != NULL, &error);
  pair.consumer = tb_ring_attach(pair.fd, &error);
  assert_ring_ok(pair.consumer != NULL, &error);
  return pair;
}

static void pair_free(ring_pair *pair) {
  tb_ring_free(pair->producer);
  tb_ring_free(pair->consumer);
  close(pair->fd);
}

/* The ring's memory, mapped once more: what a scribbling peer writes. */
static uint8_t *map_ring(int fd, size_t *size) {
  off_t end = lseek(fd, 0, SEEK_END);
  assert_true(end > 0);
  *size = (size_t)end;
  void *bytes = mmap(NULL, *size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  assert_true(bytes != MAP_FAILED);
  return bytes;
}

static size_t lane_offset(uint32_t capacity, unsigned lane) {
  size_t slots = ((size_t)capacity * SLOT_BYTES + 63) / 64 * 64;
  return HEADER_BYTES + lane * (LANE_BYTES + slots);
}

static void poke_u64(uint8_t *bytes, size_t offset, uint64_t value) {
  memcpy(bytes + offset, &value, sizeof value);
}

static void poke_u32(uint8_t *bytes, size_t offset, uint32_t value) {
  memcpy(bytes + offset, &value, sizeof value);
}

static void poke_u16(uint8_t *bytes, size_t offset, uint16_t value) {
  memcpy(bytes + offset, &value, sizeof value);
}

static void child_alarm(void) {
  alarm(60); /* a child that hangs dies, and its test fails */
}

static void join_child(pid_t child) {
  int status;
  assert_int_equal(waitpid(child, &status, 0), child);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    print_error("child ended with status 0x%x\n", status);
    fail();
  }
}

/* ---- one process -------------------------------------------------------- */

static void records_travel_both_ways(void **state) {
  (void)state;
  GError *error = NULL;
  ring_pair pair = pair_new(4);
  TbRingRecord got;

  assert_ring_error(tb_ring_pop(pair.consumer, &got, 0, &error), &error,
                    TB_ERR_TIMEOUT);
  for (uint64_t i = 0; i < 4; i++) {
    TbRingRecord record = record_number(i);
    assert_ring_ok(tb_ring_push(pair.producer, &record, 0, &error), &error);
  }
  TbRingRecord one_more = record_number(4);
  assert_ring_error(tb_ring_push(pair.producer, &one_more, 0, &error), &error,
                    TB_ERR_TIMEOUT);
  for (uint64_t i = 0; i < 4; i++) {
    TbRingRecord expected = record_number(i);
    assert_ring_ok(tb_ring_pop(pair.consumer, &got, 0, &error), &error);
    assert_true(same_record(&got, &expected));
    TbRingRecord release = release_of(&got);
    assert_ring_ok(tb_ring_push(pair.consumer, &release, 0, &error), &error);
  }
  assert_ring_error(tb_ring_pop(pair.consumer, &got, 0, &error), &error,
                    TB_ERR_TIMEOUT);
  for (uint64_t i = 0; i < 4; i++) {
    TbRingRecord expected = record_number(i);
    assert_ring_ok(tb_ring_pop(pair.producer, &got, 0, &error), &error);
    assert_int_equal(got.token, expected.token);
    assert_int_equal(got.generation, expected.generation);
    assert_int_equal(got.layout, 0);
  }
  /* Laps around the ring keep working. */
  for (uint64_t i = 4; i < 100; i++) {
    TbRingRecord record = record_number(i);
    assert_ring_ok(tb_ring_push(pair.producer, &record, 0, &error), &error);
    assert_ring_ok(tb_ring_pop(pair.consumer, &got, 0, &error), &error);
    assert_true(same_record(&got, &record));
  }

  TbRingRecord bad_flags = {.token = 1, .flags = 0x80};
  assert_ring_error(tb_ring_push(pair.producer, &bad_flags, 0, &error), &error,
                    TB_ERR_INVALID_ARGUMENT);
  /* A refused push changed nothing. */
  assert_ring_error(tb_ring_pop(pair.consumer, &got, 0, &error), &error,
                    TB_ERR_TIMEOUT);
  pair_free(&pair);
}

static void create_refuses_bad_capacities(void **state) {
  (void)state;
  GError *error = NULL;
  int fd = -7;
  const uint32_t bad[] = {0, 3, 6, 8192, UINT32_MAX};
  for (size_t i = 0; i < G_N_ELEMENTS(bad); i++)
    assert_ring_error(tb_ring_create(bad[i], &fd, &error) != NULL, &error,
                      TB_ERR_INVALID_ARGUMENT);
  assert_int_equal(fd, -7);
  ring_pair smallest = pair_new(1), largest = pair_new(4096);
  pair_free(&smallest);
  pair_free(&largest);
}

/* A sealed memfd holding `size` bytes of `source`, then `patch` at
 * `offset`; `seals` are added after. */
static int forged_copy(const uint8_t *source, size_t size, size_t offset,
                       const void *patch, size_t patch_size, int seals) {
  int fd = memfd_create("forged-ring", MFD_CLOEXEC | MFD_ALLOW_SEALING);
  assert_true(fd >= 0);
  assert_int_equal(ftruncate(fd, (off_t)size), 0);
  assert_int_equal(pwrite(fd, source, size, 0), (ssize_t)size);
  if (patch_size > 0)
    assert_int_equal(pwrite(fd, patch, patch_size, (off_t)offset),
                     (ssize_t)patch_size);
  if (seals != 0)
    assert_int_equal(fcntl(fd, F_ADD_SEALS, seals), 0);
  return fd;
}

static void assert_attach_fails(int fd, tb_status status) {
  GError *error = NULL;
  assert_ring_error(tb_ring_attach(fd, &error) != NULL, &error, status);
  close(fd);
}

static void attach_refuses_what_is_not_a_ring(void **state) {
  (void)state;
  const int sealed = F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL;
  GError *error = NULL;
  int fd;
  TbRing *producer = tb_ring_create(8, &fd, &error);
  assert_ring_ok(producer != NULL, &error);
  size_t size;
  uint8_t *ring = map_ring(fd, &size);

  /* What the kernel says about the fd. */
  int ends[2];
  assert_int_equal(pipe2(ends, O_CLOEXEC), 0);
  close(ends[1]);
  assert_attach_fails(ends[0], TB_ERR_BAD_FD);
  assert_attach_fails(open("/dev/null", O_RDWR | O_CLOEXEC), TB_ERR_BAD_FD);
  assert_attach_fails(forged_copy(ring, size, 0, NULL, 0, 0), TB_ERR_BAD_FD);
  assert_attach_fails(
      forged_copy(ring, size, 0, NULL, 0, F_SEAL_SHRINK | F_SEAL_GROW),
      TB_ERR_BAD_FD);
  assert_attach_fails(
      forged_copy(ring, size, 0, NULL, 0, F_SEAL_FUTURE_WRITE | sealed),
      TB_ERR_BAD_FD);
  char path[64];
  snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
  assert_attach_fails(open(path, O_RDONLY | O_CLOEXEC), TB_ERR_BAD_FD);

  /* What the file holds. */
  uint8_t *longer = g_malloc0(size + 4096);
  memcpy(longer, ring, size);
  assert_attach_fails(forged_copy(longer, size + 4096, 0, NULL, 0, sealed),
                      TB_ERR_PROTOCOL);
  g_free(longer);
  assert_attach_fails(forged_copy(ring, 2048, 0, NULL, 0, sealed),
                      TB_ERR_PROTOCOL);
  const struct {
    size_t offset;
    uint32_t value;
  } patches[] = {
      {0, 0x12345678},      /* magic */
      {8, 1},               /* version: the one before FLAG_SOCKET */
      {12, 64},             /* record size */
      {16, 256},            /* capacity: a larger ring's */
      {16, 7},              /* capacity: not a power of two */
      {24, 8192},           /* total size */
      {lane_offset(8, 0) + TAIL_OFFSET, 9},  /* more than a lap pushed */
      {lane_offset(8, 0) + HEAD_OFFSET, 1},  /* popped before attaching */
      {lane_offset(8, 1) + TAIL_OFFSET, 1},  /* a release before attaching */
      {lane_offset(8, 1) + HEAD_OFFSET, 1},
  };
  for (size_t i = 0; i < G_N_ELEMENTS(patches); i++)
    assert_attach_fails(forged_copy(ring, size, patches[i].offset,
                                    &patches[i].value, sizeof(uint32_t),
                                    sealed),
                        TB_ERR_PROTOCOL);
  /* And the unchanged copy is a ring. */
  int copy = forged_copy(ring, size, 0, NULL, 0, sealed);
  TbRing *consumer = tb_ring_attach(copy, &error);
  assert_ring_ok(consumer != NULL, &error);
  tb_ring_free(consumer);
  close(copy);

  munmap(ring, size);
  tb_ring_free(producer);
  close(fd);
}

/* Every call after a protocol error fails with it too. */
static void assert_dead(ring_pair *pair, TbRing *victim) {
  GError *error = NULL;
  TbRingRecord record = {.token = 1};
  assert_ring_error(tb_ring_pop(victim, &record, 0, &error), &error,
                    TB_ERR_PROTOCOL);
  record = (TbRingRecord){.token = 1};
  assert_ring_error(tb_ring_push(victim, &record, tb_ring_deadline(0), &error),
                    &error, TB_ERR_PROTOCOL);
  assert_false(tb_ring_arm(victim));
  /* The victim closed: its peer learns of it. */
  TbRing *peer = victim == pair->consumer ? pair->producer : pair->consumer;
  assert_ring_error(tb_ring_push(peer, &record, 0, &error), &error,
                    TB_ERR_CLOSED);
}

typedef void (*scribble_fn)(uint8_t *ring, uint32_t capacity);

static void tail_runs_ahead(uint8_t *ring, uint32_t capacity) {
  /* one record popped: a tail a lap and one ahead of it */
  poke_u64(ring, lane_offset(capacity, 0) + TAIL_OFFSET, capacity + 2);
}
static void tail_goes_back(uint8_t *ring, uint32_t capacity) {
  poke_u64(ring, lane_offset(capacity, 0) + TAIL_OFFSET, 1);
}
static void tail_wraps(uint8_t *ring, uint32_t capacity) {
  poke_u64(ring, lane_offset(capacity, 0) + TAIL_OFFSET, UINT64_MAX);
}
static size_t next_slot(uint32_t capacity) {
  /* Two records were pushed and one popped by the setup below. */
  return lane_offset(capacity, 0) + LANE_BYTES + 1 * SLOT_BYTES;
}
static void wrong_sequence(uint8_t *ring, uint32_t capacity) {
  poke_u64(ring, next_slot(capacity) + 8, 7);
}
static void wrong_kind(uint8_t *ring, uint32_t capacity) {
  poke_u16(ring, next_slot(capacity) + 28, TB_RING_RELEASE);
}
static void unknown_flags(uint8_t *ring, uint32_t capacity) {
  poke_u32(ring, next_slot(capacity) + 24, 0x100);
}
static void reserved_set(uint8_t *ring, uint32_t capacity) {
  poke_u16(ring, next_slot(capacity) + 30, 1);
}

static void scribbled_records_kill_the_consumer(void **state) {
  (void)state;
  const scribble_fn scribbles[] = {tail_runs_ahead, tail_goes_back, tail_wraps,
                                   wrong_sequence,  wrong_kind,     unknown_flags,
                                   reserved_set};
  for (size_t i = 0; i < G_N_ELEMENTS(scribbles); i++) {
    GError *error = NULL;
    ring_pair pair = pair_new(4);
    size_t size;
    uint8_t *ring = map_ring(pair.fd, &size);
    TbRingRecord record = record_number(0), got;
    assert_ring_ok(tb_ring_push(pair.producer, &record, 0, &error), &error);
    record = record_number(1);
    assert_ring_ok(tb_ring_push(pair.producer, &record, 0, &error), &error);
    assert_ring_ok(tb_ring_pop(pair.consumer, &got, 0, &error), &error);
    scribbles[i](ring, 4);
    assert_dead(&pair, pair.consumer);
    munmap(ring, size);
    pair_free(&pair);
  }
}

static void scribbled_releases_kill_the_producer(void **state) {
  (void)state;
  for (int scribble = 0; scribble < 3; scribble++) {
    GError *error = NULL;
    ring_pair pair = pair_new(4);
    size_t size;
    uint8_t *ring = map_ring(pair.fd, &size);
    TbRingRecord record = record_number(0), got;
    assert_ring_ok(tb_ring_push(pair.producer, &record, 0, &error), &error);
    assert_ring_ok(tb_ring_pop(pair.consumer, &got, 0, &error), &error);
    TbRingRecord release = release_of(&got);
    assert_ring_ok(tb_ring_push(pair.consumer, &release, 0, &error), &error);
    size_t release_slot = lane_offset(4, 1) + LANE_BYTES;
    if (scribble == 0) /* a release that names a layout */
      poke_u32(ring, release_slot + 20, 3);
    else if (scribble == 1) /* the consumer popped what was never pushed */
      poke_u64(ring, lane_offset(4, 0) + HEAD_OFFSET, 2);
    else { /* the consumer's head went back, after the producer saw it */
      assert_ring_ok(tb_ring_push(pair.producer, &record, 0, &error), &error);
      poke_u64(ring, lane_offset(4, 0) + HEAD_OFFSET, 0);
    }
    if (scribble == 0)
      assert_ring_error(tb_ring_pop(pair.producer, &got, 0, &error), &error,
                        TB_ERR_PROTOCOL);
    else
      assert_ring_error(tb_ring_push(pair.producer, &record, 0, &error),
                        &error, TB_ERR_PROTOCOL);
    assert_dead(&pair, pair.producer);
    munmap(ring, size);
    pair_free(&pair);
  }
}

static void close_delivers_what_came_before(void **state) {
  (void)state;
  GError *error = NULL;
  ring_pair pair = pair_new(4);
  TbRingRecord got;
  for (uint64_t i = 0; i < 3; i++) {
    TbRingRecord record = record_number(i);
    assert_ring_ok(tb_ring_push(pair.producer, &record, 0, &error), &error);
  }
  tb_ring_close(pair.producer);
  tb_ring_close(pair.producer); /* idempotent */
  TbRingRecord record = record_number(3);
  assert_ring_error(tb_ring_push(pair.producer, &record, 0, &error), &error,
                    TB_ERR_CLOSED);
  for (uint64_t i = 0; i < 3; i++) {
    TbRingRecord expected = record_number(i);
    assert_ring_ok(tb_ring_pop(pair.consumer, &got, tb_ring_deadline(0),
                               &error),
                   &error);
    assert_true(same_record(&got, &expected));
  }
  assert_ring_error(tb_ring_pop(pair.consumer, &got, TB_RING_FOREVER, &error),
                    &error, TB_ERR_CLOSED);
  /* The consumer cannot release to a producer that has gone. */
  TbRingRecord release = release_of(&got);
  assert_ring_error(tb_ring_push(pair.consumer, &release, 0, &error), &error,
                    TB_ERR_CLOSED);
  pair_free(&pair);
}

/* ---- waiting, across threads and processes ------------------------------ */

typedef struct waiter {
  TbRing *ring;
  tb_status status;
} waiter;

static void *pop_forever(void *arg) {
  waiter *w = arg;
  GError *error = NULL;
  TbRingRecord got;
  w->status = tb_ring_pop(w->ring, &got, TB_RING_FOREVER, &error)
                  ? TB_OK
                  : (tb_status)error->code;
  g_clear_error(&error);
  return NULL;
}

/* A peer that died never closes; the channel sees the hang-up on its
 * socket and closes the ring here, which must wake this process's own
 * waiter. */
static void close_wakes_a_local_waiter(void **state) {
  (void)state;
  ring_pair pair = pair_new(2);
  waiter w = {.ring = pair.consumer, .status = TB_OK};
  pthread_t thread;
  assert_int_equal(pthread_create(&thread, NULL, pop_forever, &w), 0);
  usleep(50000);
  tb_ring_close(pair.consumer);
  assert_int_equal(pthread_join(thread, NULL), 0);
  assert_int_equal(w.status, TB_ERR_CLOSED);
  TbRingStats stats;
  tb_ring_stats(pair.consumer, &stats);
  assert_true(stats.sleeps >= 1);
  pair_free(&pair);
}

typedef struct child_report {
  TbRingStats stats;
  uint64_t count;
} child_report;

static void report_to_parent(int pipe_fd, const TbRing *ring, uint64_t count) {
  child_report report = {.count = count};
  tb_ring_stats(ring, &report.stats);
  CHILD_CHECK(write(pipe_fd, &report, sizeof report) == sizeof report);
}

static child_report read_report(int pipe_fd) {
  child_report report;
  assert_int_equal(read(pipe_fd, &report, sizeof report),
                   (ssize_t)sizeof report);
  return report;
}

/* Forks a child that attaches to `fd` and runs `body`; the child writes
 * its report on `*report_fd`'s other end. */
typedef void (*child_body)(TbRing *ring, int report_fd);

static pid_t fork_consumer(int fd, child_body body, int *report_fd) {
  int report[2];
  assert_int_equal(pipe2(report, O_CLOEXEC), 0);
  fflush(NULL);
  pid_t child = fork();
  assert_true(child >= 0);
  if (child == 0) {
    child_alarm();
    close(report[0]);
    GError *error = NULL;
    TbRing *ring = tb_ring_attach(fd, &error);
    CHILD_CHECK(ring != NULL);
    body(ring, report[1]);
    tb_ring_free(ring);
    _exit(0);
  }
  close(report[1]);
  *report_fd = report[0];
  return child;
}

/* A producer here and a forked consumer running `body`. */
typedef struct forked {
  TbRing *producer;
  int fd, report_fd;
  pid_t child;
} forked;

static forked fork_with_consumer(uint32_t capacity, child_body body) {
  GError *error = NULL;
  forked f;
  f.producer = tb_ring_create(capacity, &f.fd, &error);
  assert_ring_ok(f.producer != NULL, &error);
  f.child = fork_consumer(f.fd, body, &f.report_fd);
  return f;
}

static void forked_free(forked *f) {
  close(f->report_fd);
  tb_ring_free(f->producer);
  close(f->fd);
}

#define MILLION 1000000u
#define MILLION_CAPACITY 4u

static void consume_a_million(TbRing *ring, int report_fd) {
  GError *error = NULL;
  for (uint64_t i = 0; i < MILLION; i++) {
    TbRingRecord got, expected = record_number(i);
    CHILD_CHECK(tb_ring_pop(ring, &got, tb_ring_deadline(10000 * MS_NS),
                            &error));
    CHILD_CHECK(same_record(&got, &expected));
    TbRingRecord release = release_of(&got);
    CHILD_CHECK(tb_ring_push(ring, &release, tb_ring_deadline(10000 * MS_NS),
                             &error));
  }
  report_to_parent(report_fd, ring, MILLION);
}

/* Two processes, a million records, at most the capacity in flight (a
 * pool's way): every one arrives, in order, and every release comes back. */
static void a_million_records_between_processes(void **state) {
  (void)state;
  GError *error = NULL;
  forked f = fork_with_consumer(MILLION_CAPACITY, consume_a_million);
  uint64_t released = 0;
  for (uint64_t i = 0; i < MILLION; i++) {
    TbRingRecord got;
    if (i - released == MILLION_CAPACITY) {
      assert_ring_ok(tb_ring_pop(f.producer, &got,
                                 tb_ring_deadline(10000 * MS_NS), &error),
                     &error);
      TbRingRecord expected = record_number(released++);
      assert_int_equal(got.token, expected.token);
      assert_int_equal(got.generation, expected.generation);
    }
    TbRingRecord record = record_number(i);
    assert_ring_ok(tb_ring_push(f.producer, &record,
                                tb_ring_deadline(10000 * MS_NS), &error),
                   &error);
  }
  while (released < MILLION) {
    TbRingRecord got;
    assert_ring_ok(tb_ring_pop(f.producer, &got, tb_ring_deadline(10000 * MS_NS),
                               &error),
                   &error);
    assert_int_equal(got.token, record_number(released++).token);
  }
  child_report report = read_report(f.report_fd);
  assert_int_equal(report.count, MILLION);
  join_child(f.child);
  TbRingStats stats;
  tb_ring_stats(f.producer, &stats);
  print_message("a million records: f.producer slept %llu times and woke the "
                "consumer %llu times; consumer slept %llu, woke %llu\n",
                (unsigned long long)stats.sleeps,
                (unsigned long long)stats.wakes,
                (unsigned long long)report.stats.sleeps,
                (unsigned long long)report.stats.wakes);
  /* Fewer wakes than records: the fast path made no system call. */
  assert_true(stats.wakes < MILLION && report.stats.wakes < MILLION);
  forked_free(&f);
}

/* The consumer sleeps (empty ring) and the producer wakes it; then the
 * producer sleeps (full ring) and the consumer wakes it. */
static void sleep_on_empty_then_on_full(TbRing *ring, int report_fd) {
  GError *error = NULL;
  TbRingRecord got;
  CHILD_CHECK(tb_ring_pop(ring, &got, tb_ring_deadline(10000 * MS_NS), &error));
  CHILD_CHECK(got.token == 1);
  TbRingStats after_first;
  tb_ring_stats(ring, &after_first);
  CHILD_CHECK(after_first.sleeps >= 1);
  /* The producer now fills the ring and sleeps in its next push. */
  usleep(200000);
  CHILD_CHECK(tb_ring_pop(ring, &got, 0, &error));
  CHILD_CHECK(got.token == 2);
  CHILD_CHECK(tb_ring_pop(ring, &got, tb_ring_deadline(10000 * MS_NS), &error));
  CHILD_CHECK(got.token == 3);
  report_to_parent(report_fd, ring, 2);
}

static void sleepers_are_woken_both_ways(void **state) {
  (void)state;
  GError *error = NULL;
  forked f = fork_with_consumer(1, sleep_on_empty_then_on_full);
  usleep(200000); /* the consumer is asleep by now */
  TbRingRecord record = {.token = 1};
  assert_ring_ok(tb_ring_push(f.producer, &record, 0, &error), &error);
  usleep(50000);
  record.token = 2;
  assert_ring_ok(tb_ring_push(f.producer, &record, 0, &error), &error);
  record.token = 3; /* the ring holds one: this push sleeps */
  assert_ring_ok(
      tb_ring_push(f.producer, &record, tb_ring_deadline(10000 * MS_NS), &error),
      &error);
  child_report report = read_report(f.report_fd);
  join_child(f.child);
  TbRingStats stats;
  tb_ring_stats(f.producer, &stats);
  assert_true(stats.sleeps >= 1);       /* the full ring */
  assert_true(stats.wakes >= 1);        /* the empty ring's sleeper */
  assert_true(report.stats.sleeps >= 1);
  assert_true(report.stats.wakes >= 1);
  forked_free(&f);
}

static void wait_for_close(TbRing *ring, int report_fd) {
  GError *error = NULL;
  TbRingRecord got;
  uint64_t count = 0;
  while (tb_ring_pop(ring, &got, TB_RING_FOREVER, &error))
    CHILD_CHECK(got.token == ++count);
  CHILD_CHECK(error->code == TB_ERR_CLOSED);
  g_clear_error(&error);
  report_to_parent(report_fd, ring, count);
}

/* A consumer asleep with no deadline: the producer's close ends its wait,
 * after the records pushed before it. */
static void close_wakes_the_peer(void **state) {
  (void)state;
  GError *error = NULL;
  forked f = fork_with_consumer(4, wait_for_close);
  for (uint64_t token = 1; token <= 3; token++) {
    TbRingRecord record = {.token = token};
    assert_ring_ok(tb_ring_push(f.producer, &record, 0, &error), &error);
  }
  usleep(100000);
  tb_ring_close(f.producer);
  child_report report = read_report(f.report_fd);
  assert_int_equal(report.count, 3);
  join_child(f.child);
  forked_free(&f);
}

static void die_without_closing(TbRing *ring, int report_fd) {
  (void)ring;
  close(report_fd);
  _exit(0); /* the mapping goes with the process; nothing is closed */
}

/* A consumer that dies without a word: a waiting producer ends at its
 * deadline, and once the channel closes the ring, at once. */
static void a_dead_peer_costs_only_the_deadline(void **state) {
  (void)state;
  GError *error = NULL;
  forked f = fork_with_consumer(1, die_without_closing);
  join_child(f.child);
  TbRingRecord record = {.token = 1}, got;
  assert_ring_ok(tb_ring_push(f.producer, &record, 0, &error), &error);
  int64_t start = tb_ring_now();
  assert_ring_error(
      tb_ring_push(f.producer, &record, tb_ring_deadline(100 * MS_NS), &error),
      &error, TB_ERR_TIMEOUT);
  assert_ring_error(
      tb_ring_pop(f.producer, &got, tb_ring_deadline(100 * MS_NS), &error),
      &error, TB_ERR_TIMEOUT);
  int64_t elapsed = tb_ring_now() - start;
  assert_true(elapsed >= 200 * MS_NS && elapsed < 5000 * MS_NS);
  tb_ring_close(f.producer); /* as on the socket's hang-up */
  assert_ring_error(tb_ring_pop(f.producer, &got, TB_RING_FOREVER, &error),
                    &error, TB_ERR_CLOSED);
  assert_ring_error(tb_ring_push(f.producer, &record, TB_RING_FOREVER, &error),
                    &error, TB_ERR_CLOSED);
  forked_free(&f);
}

static volatile sig_atomic_t timer_ticks;

static void count_tick(int signal_number) {
  (void)signal_number;
  timer_ticks++;
}

/* Checks that a wait until 200 ms from now, interrupted every millisecond
 * by a signal without SA_RESTART, ends at that deadline. */
static void assert_deadline_kept(gboolean (*wait)(ring_pair *, int64_t,
                                                  GError **),
                                 ring_pair *pair) {
  GError *error = NULL;
  int ticks_before = timer_ticks;
  int64_t start = tb_ring_now();
  assert_ring_error(wait(pair, start + 200 * MS_NS, &error), &error,
                    TB_ERR_TIMEOUT);
  int64_t elapsed = tb_ring_now() - start;
  if (elapsed < 200 * MS_NS || elapsed > 2200 * MS_NS) {
    print_error("a 200 ms deadline ended after %lld ms\n",
                (long long)(elapsed / MS_NS));
    fail();
  }
  /* The signals did interrupt the wait (the timer is not coalesced away). */
  assert_true(timer_ticks - ticks_before >= 20);
}

static gboolean pop_empty(ring_pair *pair, int64_t deadline, GError **error) {
  TbRingRecord got;
  return tb_ring_pop(pair->consumer, &got, deadline, error);
}

static gboolean push_full(ring_pair *pair, int64_t deadline, GError **error) {
  TbRingRecord record = {.token = 9};
  return tb_ring_push(pair->producer, &record, deadline, error);
}

static void deadlines_hold_under_an_interval_timer(void **state) {
  (void)state;
  GError *error = NULL;
  ring_pair pair = pair_new(1);
  struct sigaction tick = {.sa_handler = count_tick}, saved;
  assert_int_equal(sigaction(SIGALRM, &tick, &saved), 0);
  const struct itimerval every_ms = {{0, 1000}, {0, 1000}}, off = {0};
  assert_int_equal(setitimer(ITIMER_REAL, &every_ms, NULL), 0);

  assert_deadline_kept(pop_empty, &pair);
  TbRingRecord record = {.token = 1};
  assert_ring_ok(tb_ring_push(pair.producer, &record, 0, &error), &error);
  assert_deadline_kept(push_full, &pair);

  assert_int_equal(setitimer(ITIMER_REAL, &off, NULL), 0);
  assert_int_equal(sigaction(SIGALRM, &saved, NULL), 0);
  pair_free(&pair);
}

/* ---- a scribbling peer --------------------------------------------------- */

#define SCRIBBLE_ROUNDS 30
#define SCRIBBLE_ROUND_NS (60 * MS_NS)
#define SCRIBBLE_CAPACITY 8u

/* Writes into the ring, forever: random bytes anywhere past the header,
 * and (to get past the first check) plausible indices and records. */
static void scribble_forever(int fd, unsigned seed) {
  child_alarm();
  off_t end = lseek(fd, 0, SEEK_END);
  CHILD_CHECK(end > 0);
  uint8_t *ring =
      mmap(NULL, (size_t)end, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  CHILD_CHECK(ring != MAP_FAILED);
  GRand *random = g_rand_new_with_seed(seed);
  size_t size = (size_t)end;
  for (uint64_t n = 0;; n++) {
    unsigned lane = g_rand_int_range(random, 0, 2);
    size_t lane_at = lane_offset(SCRIBBLE_CAPACITY, lane);
    uint64_t index;
    memcpy(&index, ring + lane_at + TAIL_OFFSET, sizeof index);
    switch (g_rand_int_range(random, 0, 4)) {
    case 0: { /* random bytes anywhere past the header */
      size_t at = (size_t)g_rand_int_range(random, HEADER_BYTES, (gint32)size);
      size_t length = MIN(size - at, (size_t)g_rand_int_range(random, 1, 33));
      for (size_t i = 0; i < length; i++)
        ring[at + i] = (uint8_t)g_rand_int(random);
      break;
    }
    case 1: /* an index moved a little, either way */
      poke_u64(ring,
               lane_at + (g_rand_boolean(random) ? TAIL_OFFSET : HEAD_OFFSET),
               index + (uint64_t)g_rand_int_range(random, -2,
                                                  SCRIBBLE_CAPACITY + 3));
      break;
    case 2: { /* a record that looks right but for one field, maybe */
      uint8_t slot[SLOT_BYTES] = {0};
      uint64_t sequence = index + (uint64_t)g_rand_int_range(random, -1, 2);
      uint16_t kind = lane == 0 ? TB_RING_TENSOR : TB_RING_RELEASE;
      uint64_t token = g_rand_int(random);
      memcpy(slot, &token, 8);
      memcpy(slot + 8, &sequence, 8);
      memcpy(slot + 28, &kind, 2);
      if (g_rand_int_range(random, 0, 4) == 0)
        slot[g_rand_int_range(random, 16, SLOT_BYTES)] ^= 1;
      memcpy(ring + lane_at + LANE_BYTES +
                 (sequence % SCRIBBLE_CAPACITY) * SLOT_BYTES,
             slot, sizeof slot);
      break;
    }
    default: /* waiter words and sequences: costs wake-ups, never safety */
      poke_u32(ring, lane_at + 8 + 64 * (size_t)g_rand_int_range(random, 0, 3),
               g_rand_int(random));
      break;
    }
    if (n % 64 == 0)
      sched_yield();
  }
}

/* A ring call's outcome; fails unless it is one a hostile peer may cause. */
static tb_status outcome(gboolean ok, GError **error, int64_t started) {
  tb_status status = ok ? TB_OK : (tb_status)(*error)->code;
  g_clear_error(error);
  if (status != TB_OK && status != TB_ERR_TIMEOUT && status != TB_ERR_CLOSED &&
      status != TB_ERR_PROTOCOL) {
    print_error("a ring call under a scribbler returned %s\n",
                tb_status_name(status));
    fail();
  }
  /* Each call's deadline is 1 ms away: far later is a hang. */
  if (tb_ring_now() - started > 1000 * MS_NS) {
    print_error("a ring call with a 1 ms deadline took %lld ms\n",
                (long long)((tb_ring_now() - started) / MS_NS));
    fail();
  }
  return status;
}

/* Once dead, a side stays dead. */
static void track(tb_status status, gboolean *dead) {
  if (*dead)
    assert_int_equal(status, TB_ERR_PROTOCOL);
  *dead = status == TB_ERR_PROTOCOL;
}

/* Both ends run here while a child writes random bytes into the ring:
 * each call returns a checked record, a timeout, a close, or
 * TB_ERR_PROTOCOL; never a crash, a hang or a leak (the fixture counts
 * fds; the sanitizer build counts memory). */
static void a_scribbler_cannot_crash_or_hang_us(void **state) {
  (void)state;
  uint64_t records = 0, protocol_errors = 0;
  for (unsigned round = 0; round < SCRIBBLE_ROUNDS; round++) {
    ring_pair pair = pair_new(SCRIBBLE_CAPACITY);
    fflush(NULL);
    pid_t child = fork();
    assert_true(child >= 0);
    if (child == 0)
      scribble_forever(pair.fd, round);
    GError *error = NULL;
    gboolean producer_dead = FALSE, consumer_dead = FALSE;
    int64_t round_end = tb_ring_now() + SCRIBBLE_ROUND_NS;
    for (uint64_t i = 0; tb_ring_now() < round_end; i++) {
      if (producer_dead && consumer_dead)
        break;
      TbRingRecord record = record_number(i), got;
      int64_t now = tb_ring_now();
      track(outcome(tb_ring_push(pair.producer, &record, now + MS_NS, &error),
                    &error, now),
            &producer_dead);
      now = tb_ring_now();
      tb_status popped = outcome(
          tb_ring_pop(pair.consumer, &got, now + MS_NS, &error), &error, now);
      track(popped, &consumer_dead);
      if (popped == TB_OK) {
        records++;
        assert_int_equal(got.flags & ~TB_RING_FLAGS_KNOWN, 0);
        TbRingRecord release = release_of(&got);
        now = tb_ring_now();
        track(outcome(tb_ring_push(pair.consumer, &release, now + MS_NS,
                                   &error),
                      &error, now),
              &consumer_dead);
      }
      now = tb_ring_now();
      tb_status released =
          outcome(tb_ring_pop(pair.producer, &got, 0, &error), &error, now);
      track(released, &producer_dead);
      if (released == TB_OK)
        assert_int_equal(got.layout, 0);
    }
    protocol_errors += (uint64_t)producer_dead + (uint64_t)consumer_dead;
    kill(child, SIGKILL);
    int status;
    assert_int_equal(waitpid(child, &status, 0), child);
    assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
    pair_free(&pair);
  }
  print_message("scribbler: %llu records passed the checks, %llu sides "
                "killed by protocol errors in %d rounds\n",
                (unsigned long long)records,
                (unsigned long long)protocol_errors, SCRIBBLE_ROUNDS);
  /* The scribbles were noticed (the test is not vacuous). */
  assert_true(protocol_errors > 0);
}

/* ---- event loops -------------------------------------------------------- */

static gboolean doorbell_rang(int fd) {
  struct pollfd ready = {.fd = fd, .events = POLLIN};
  if (poll(&ready, 1, 0) != 1)
    return FALSE;
  char message[16];
  ssize_t got = recv(fd, message, sizeof message, MSG_DONTWAIT);
  assert_int_equal(got, 2);
  assert_memory_equal(message, "r!", 2);
  return TRUE;
}

static void doorbell_rings_only_for_an_armed_peer(void **state) {
  (void)state;
  GError *error = NULL;
  ring_pair pair = pair_new(4);
  int bell[2];
  assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, bell),
                   0);
  tb_ring_set_doorbell(pair.producer, bell[0], "r!", 2);
  TbRingRecord record = {.token = 1}, got;

  /* Not armed: the push makes no system call, the doorbell stays quiet. */
  assert_ring_ok(tb_ring_push(pair.producer, &record, 0, &error), &error);
  assert_false(doorbell_rang(bell[1]));
  /* Something is waiting: arming says so instead of letting us sleep. */
  assert_false(tb_ring_arm(pair.consumer));
  assert_ring_ok(tb_ring_pop(pair.consumer, &got, 0, &error), &error);
  /* Armed on an empty ring: the next push rings, once. */
  assert_true(tb_ring_arm(pair.consumer));
  assert_ring_ok(tb_ring_push(pair.producer, &record, 0, &error), &error);
  assert_ring_ok(tb_ring_push(pair.producer, &record, 0, &error), &error);
  assert_true(doorbell_rang(bell[1]));
  assert_false(doorbell_rang(bell[1]));
  assert_ring_ok(tb_ring_pop(pair.consumer, &got, 0, &error), &error);
  assert_ring_ok(tb_ring_pop(pair.consumer, &got, 0, &error), &error);
  TbRingStats stats;
  tb_ring_stats(pair.producer, &stats);
  assert_int_equal(stats.rings, 1);
  assert_int_equal(stats.wakes, 0);

  /* A close rings too, and arming then says "look". */
  assert_true(tb_ring_arm(pair.consumer));
  tb_ring_close(pair.producer);
  assert_true(doorbell_rang(bell[1]));
  assert_false(tb_ring_arm(pair.consumer));

  /* A peer that stopped reading its end cannot block us. */
  tb_ring_set_doorbell(pair.consumer, bell[1], "r!", 2);
  int sent = 0;
  while (send(bell[1], "xx", 2, MSG_DONTWAIT) == 2)
    sent++;
  assert_true(sent > 0);
  tb_ring_close(pair.consumer); /* rings into a full socket: returns */

  close(bell[0]);
  close(bell[1]);
  pair_free(&pair);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      TB_TEST(records_travel_both_ways),
      TB_TEST(create_refuses_bad_capacities),
      TB_TEST(attach_refuses_what_is_not_a_ring),
      TB_TEST(scribbled_records_kill_the_consumer),
      TB_TEST(scribbled_releases_kill_the_producer),
      TB_TEST(close_delivers_what_came_before),
      TB_TEST(close_wakes_a_local_waiter),
      TB_TEST(a_million_records_between_processes),
      TB_TEST(sleepers_are_woken_both_ways),
      TB_TEST(close_wakes_the_peer),
      TB_TEST(a_dead_peer_costs_only_the_deadline),
      TB_TEST(deadlines_hold_under_an_interval_timer),
      TB_TEST(a_scribbler_cannot_crash_or_hang_us),
      TB_TEST(doorbell_rings_only_for_an_armed_peer),
  };
  return TB_RUN_TESTS(tests);
}
