/* The channel's shared-memory ring (core/sharing/ring.c) against the floors
 * of waking another process.
 *
 * The receiver is a forked child; the sender is pinned to CPU 0 and the
 * child to CPU 1 ("2 CPUs"), then both to CPU 0 ("1 CPU").
 *
 * One-way latency: the sender reads CLOCK_MONOTONIC and hands the reading
 * over; the receiver reads the clock once it has it and hands the
 * difference back, and only then does the sender hand over the next one,
 * so each handoff finds the receiver asleep or about to sleep.
 *   ring     tb_ring_push of a record carrying the stamp -> tb_ring_pop;
 *            the answer comes back as a release record
 *   message  a 16-byte message on a seqpacket socketpair, answered alike
 *   futex    the stamp in a shared page, a sequence bumped and FUTEX_WAKE
 *            (always, as a floor), the receiver in FUTEX_WAIT; answered
 *            alike: what any handoff that wakes a process costs at least
 *
 * Sustained rate, 4 in flight: the sender hands over as long as fewer than
 * 4 are unanswered, the receiver answers each (a pool of 4 buffers):
 *   ring     records one way, releases back, capacity 4
 *   message  16-byte messages one way, 16-byte answers back
 *   futex    a 4-slot counter ring in a shared page: a sequence bumped
 *            with FUTEX_WAKE each way for every handoff, no checks
 *
 * Each figure is the median of rounds (a fresh receiver each), the kinds
 * alternated round by round. */
#define _GNU_SOURCE
#include "harness.h"

#include "sharing/ring.h"

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
#include <unistd.h>

#define ROUNDS 5
#define LATENCY_HANDOFFS 2000
#define RATE_HANDOFFS 20000
#define IN_FLIGHT 4

typedef enum kind { RING, MESSAGE, FUTEX, KINDS } kind;
static const char *const kind_names[KINDS] = {"ring", "16-byte seqpacket message",
                                              "futex wake"};

typedef struct futex_page {
  _Atomic uint32_t forward, back;
  int64_t stamp, answer;
} futex_page;

static void pin(int cpu) {
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  bench_check_system(sched_setaffinity(0, sizeof set, &set) == 0,
                     "sched_setaffinity");
}

static void futex_wait_change(_Atomic uint32_t *word, uint32_t seen) {
  while (atomic_load(word) == seen)
    syscall(SYS_futex, word, FUTEX_WAIT, seen, NULL, NULL, 0);
}

static void futex_bump(_Atomic uint32_t *word) {
  atomic_fetch_add(word, 1);
  syscall(SYS_futex, word, FUTEX_WAKE, 1, NULL, NULL, 0);
}

static void ring_ok(gboolean ok, GError *error, const char *what) {
  if (ok)
    return;
  fprintf(stderr, "bench_ring: %s: %s\n", what, error->message);
  exit(EXIT_FAILURE);
}

static void push(TbRing *ring, uint64_t token) {
  GError *error = NULL;
  TbRingRecord record = {.token = token};
  ring_ok(tb_ring_push(ring, &record, TB_RING_FOREVER, &error), error,
          "tb_ring_push");
}

static uint64_t pop(TbRing *ring) {
  GError *error = NULL;
  TbRingRecord record;
  ring_ok(tb_ring_pop(ring, &record, TB_RING_FOREVER, &error), error,
          "tb_ring_pop");
  return record.token;
}

static void send16(int socket, int64_t value) {
  int64_t message[2] = {value, 0};
  bench_check_system(send(socket, message, sizeof message, 0) ==
                         (ssize_t)sizeof message,
                     "send");
}

static int64_t recv16(int socket) {
  int64_t message[2];
  bench_check_system(recv(socket, message, sizeof message, 0) ==
                         (ssize_t)sizeof message,
                     "recv");
  return message[0];
}

/* What both processes share for one round. */
typedef struct round_ends {
  TbRing *ring; /* the sender's; the child attaches to ring_fd */
  int ring_fd;
  int sockets[2];
  futex_page *page;
} round_ends;

/* The receiver: answers `count` handoffs (latency: with the one-way ns;
 * rate: with anything). */
static void receive(kind k, round_ends *ends, int count, bool latency) {
  GError *error = NULL;
  TbRing *ring = NULL;
  if (k == RING) {
    ring = tb_ring_attach(ends->ring_fd, &error);
    ring_ok(ring != NULL, error, "tb_ring_attach");
  }
  uint32_t seen = 0;
  for (int i = 0; i < count; i++) {
    int64_t stamp;
    if (k == RING)
      stamp = (int64_t)pop(ring);
    else if (k == MESSAGE)
      stamp = recv16(ends->sockets[1]);
    else {
      futex_wait_change(&ends->page->forward, seen++);
      stamp = ends->page->stamp;
    }
    int64_t answer = latency ? tb_ring_now() - stamp : 0;
    if (k == RING)
      push(ring, (uint64_t)answer);
    else if (k == MESSAGE)
      send16(ends->sockets[1], answer);
    else {
      ends->page->answer = answer;
      futex_bump(&ends->page->back);
    }
  }
  tb_ring_free(ring);
}

/* One round: a fresh receiver on `receiver_cpu`; returns the mean one-way
 * ns (latency) or the ns per handoff (rate). */
static double run_round(kind k, int receiver_cpu, bool latency) {
  round_ends ends = {.ring_fd = -1};
  GError *error = NULL;
  if (k == RING) {
    ends.ring = tb_ring_create(IN_FLIGHT, &ends.ring_fd, &error);
    ring_ok(ends.ring != NULL, error, "tb_ring_create");
  }
  bench_check_system(
      socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, ends.sockets) == 0,
      "socketpair");
  ends.page = mmap(NULL, sizeof *ends.page, PROT_READ | PROT_WRITE,
                   MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  bench_check_system(ends.page != MAP_FAILED, "mmap");
  int count = latency ? LATENCY_HANDOFFS : RATE_HANDOFFS;
  fflush(NULL);
  pid_t child = fork();
  bench_check_system(child >= 0, "fork");
  if (child == 0) {
    pin(receiver_cpu);
    receive(k, &ends, count, latency);
    _exit(0);
  }
  pin(0);
  int64_t start = tb_ring_now(), total = 0;
  uint32_t answered = 0;
  int in_flight = 0;
  for (int i = 0; i < count || in_flight > 0;) {
    bool hand_over = i < count && (latency ? in_flight == 0
                                           : in_flight < IN_FLIGHT);
    if (hand_over) {
      int64_t stamp = tb_ring_now();
      if (k == RING)
        push(ends.ring, (uint64_t)stamp);
      else if (k == MESSAGE)
        send16(ends.sockets[0], stamp);
      else {
        ends.page->stamp = stamp;
        futex_bump(&ends.page->forward);
      }
      i++;
      in_flight++;
      continue;
    }
    if (k == RING)
      total += (int64_t)pop(ends.ring);
    else if (k == MESSAGE)
      total += recv16(ends.sockets[0]);
    else {
      futex_wait_change(&ends.page->back, answered++);
      total += ends.page->answer;
    }
    in_flight--;
  }
  int64_t elapsed = tb_ring_now() - start;
  int status;
  bench_check_system(waitpid(child, &status, 0) == child, "waitpid");
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    fprintf(stderr, "bench_ring: the receiver failed (status 0x%x)\n", status);
    exit(EXIT_FAILURE);
  }
  tb_ring_free(ends.ring);
  if (ends.ring_fd >= 0)
    close(ends.ring_fd);
  close(ends.sockets[0]);
  close(ends.sockets[1]);
  munmap(ends.page, sizeof *ends.page);
  return latency ? (double)total / count : (double)elapsed / count;
}

/* Medians of each kind over alternated rounds. */
static void measure(int receiver_cpu, bool latency, int kinds,
                    double medians[KINDS]) {
  double values[KINDS][ROUNDS];
  for (int round = 0; round < ROUNDS; round++)
    for (int k = 0; k < kinds; k++)
      values[k][round] = run_round((kind)k, receiver_cpu, latency);
  for (int k = 0; k < kinds; k++)
    medians[k] = bench_median(values[k], ROUNDS);
}

int main(void) {
  bench_begin("bench_ring");
  const struct {
    const char *label;
    int receiver_cpu;
  } placements[] = {{"2 CPUs", 1}, {"1 CPU", 0}};
  bool two_cpus = sysconf(_SC_NPROCESSORS_ONLN) >= 2;
  if (!two_cpus)
    fprintf(stderr, "bench_ring: one CPU online: SKIPPING the 2-CPU runs\n");
  for (size_t p = two_cpus ? 0 : 1; p < 2; p++) {
    char name[96];
    double medians[KINDS];
    snprintf(name, sizeof name, "ring one-way latency, %s", placements[p].label);
    if (bench_selected(name)) {
      measure(placements[p].receiver_cpu, true, KINDS, medians);
      bench_report_time(name, medians[RING], kind_names[MESSAGE],
                        medians[MESSAGE], NULL);
      snprintf(name, sizeof name, "ring one-way latency vs futex, %s",
               placements[p].label);
      bench_report_time(name, medians[RING], kind_names[FUTEX], medians[FUTEX],
                        NULL);
    }
    snprintf(name, sizeof name, "ring rate 4 in flight, %s",
             placements[p].label);
    if (bench_selected(name)) {
      measure(placements[p].receiver_cpu, false, KINDS, medians);
      bench_report(name, 1e9 / medians[RING], "frames/s", kind_names[MESSAGE],
                   1e9 / medians[MESSAGE], NULL);
      snprintf(name, sizeof name, "ring rate 4 in flight vs futex, %s",
               placements[p].label);
      bench_report(name, 1e9 / medians[RING], "frames/s",
                   "4-slot futex ring", 1e9 / medians[FUTEX], NULL);
    }
  }
  return bench_end();
}
