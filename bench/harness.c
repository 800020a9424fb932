/* The benchmark harness: interleaved batches, medians, the report table and
 * the JSON records of bench/README.md. */
#define _GNU_SOURCE
#include "harness.h"

#include <tensorbuf/tensorbuf.h>

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define PYTHON "/usr/bin/python3"
#define PYTHON_MAX_ARGS 16

/* A batch this long (4 ms) is far above the clock's resolution and short
 * enough that 7..31 of them per side fit a comparison in about a second. */
#define BATCH_NS 4e6
#define MIN_BATCHES 7
#define MAX_BATCHES 31
/* Stop adding batches to a comparison once both sides together took this. */
#define COMPARISON_BUDGET_NS 1.2e9
#define MAX_RECORDS 128

typedef struct bench_record {
  char *name;
  double value;
  const char *unit;
  char *peer; /* NULL: no peer */
  double peer_value;
  char *target; /* NULL: no target */
} bench_record;

static const char *program_name;
static const char *out_path;
static const char *filter;
static bench_record records[MAX_RECORDS];
static size_t record_count;

void bench_begin(const char *program) {
  program_name = program;
  out_path = getenv("TB_BENCH_OUT");
  filter = getenv("TB_BENCH_FILTER");
  if (filter != NULL && *filter == '\0')
    filter = NULL;
}

bool bench_selected(const char *name) {
  return filter == NULL || strstr(name, filter) != NULL;
}

void bench_check(int status, const char *what) {
  if (status == TB_OK)
    return;
  fprintf(stderr, "%s: %s failed: %s (%s)\n", program_name, what,
          tb_status_name(status), tb_last_error());
  exit(EXIT_FAILURE);
}

void bench_check_system(bool ok, const char *what) {
  if (ok)
    return;
  fprintf(stderr, "%s: %s failed: %s\n", program_name, what, strerror(errno));
  exit(EXIT_FAILURE);
}

const bench_frame bench_frames[BENCH_FRAME_COUNT] = {
    {"360p", {360, 640, 4}},
    {"1080p", {1080, 1920, 4}},
    {"4K", {2160, 3840, 4}},
};

size_t bench_frame_bytes(const bench_frame *frame) {
  return (size_t)(frame->shape[0] * frame->shape[1] * frame->shape[2]);
}

static size_t page_size(void) {
  static size_t size;
  if (size == 0)
    size = (size_t)sysconf(_SC_PAGESIZE);
  return size;
}

void bench_write_pages(uint8_t *data, size_t size) {
  volatile uint8_t *bytes = data;
  for (size_t offset = 0; offset < size; offset += page_size())
    bytes[offset] = 1;
}

void bench_read_pages(const uint8_t *data, size_t size) {
  const volatile uint8_t *bytes = data;
  uint8_t sum = 0;
  for (size_t offset = 0; offset < size; offset += page_size())
    sum += bytes[offset];
  bench_keep(&sum);
}

static double now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static double run_batch(const bench_op *op, uint64_t iterations) {
  double start = now_ns();
  op->run(op->context, iterations);
  return now_ns() - start;
}

/* Finds how many iterations fill a batch; the runs it makes are the warm-up
 * (page tables, caches, allocator state, branch predictors). */
static uint64_t calibrate(const bench_op *op) {
  uint64_t iterations = 1;
  for (;;) {
    double elapsed = run_batch(op, iterations);
    if (elapsed >= BATCH_NS / 8 || iterations >= (UINT64_C(1) << 32)) {
      double scaled = (double)iterations * BATCH_NS / fmax(elapsed, 1.0);
      iterations = scaled < 1 ? 1 : (uint64_t)scaled;
      run_batch(op, iterations);
      return iterations;
    }
    iterations *= 4;
  }
}

static int compare_doubles(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

double bench_median(double *values, size_t count) {
  qsort(values, count, sizeof *values, compare_doubles);
  return count % 2 ? values[count / 2]
                   : (values[count / 2 - 1] + values[count / 2]) / 2;
}

bench_timing bench_measure(const bench_op *subject, const bench_op *peer) {
  uint64_t subject_iterations = calibrate(subject);
  uint64_t peer_iterations = peer != NULL ? calibrate(peer) : 0;
  double subject_means[MAX_BATCHES], peer_means[MAX_BATCHES];
  double spent = 0;
  size_t batches = 0;
  while (batches < MAX_BATCHES &&
         (batches < MIN_BATCHES || spent < COMPARISON_BUDGET_NS)) {
    double elapsed = run_batch(subject, subject_iterations);
    subject_means[batches] = elapsed / (double)subject_iterations;
    spent += elapsed;
    if (peer != NULL) {
      elapsed = run_batch(peer, peer_iterations);
      peer_means[batches] = elapsed / (double)peer_iterations;
      spent += elapsed;
    }
    batches++;
  }
  bench_timing timing = {bench_median(subject_means, batches), NAN};
  if (peer != NULL)
    timing.peer_ns = bench_median(peer_means, batches);
  return timing;
}

static char *copy_or_null(const char *text) {
  return text != NULL ? strdup(text) : NULL;
}

static void add_record(const char *name, double value, const char *unit,
                       const char *peer, double peer_value,
                       const char *target) {
  if (record_count == MAX_RECORDS) {
    fprintf(stderr, "%s: more than %d records; raise MAX_RECORDS\n",
            program_name, MAX_RECORDS);
    exit(EXIT_FAILURE);
  }
  records[record_count++] = (bench_record){
      .name = strdup(name),
      .value = value,
      .unit = unit,
      .peer = copy_or_null(peer),
      .peer_value = peer_value,
      .target = copy_or_null(target),
  };
}

void bench_report_time(const char *name, double value_ns, const char *peer,
                       double peer_ns, const char *target) {
  /* One unit for both sides, picked so the larger prints 1..9999. */
  double largest = peer != NULL ? fmax(value_ns, peer_ns) : value_ns;
  double scale = 1;
  const char *unit = "ns";
  if (largest >= 1e7) {
    scale = 1e6;
    unit = "ms";
  } else if (largest >= 1e4) {
    scale = 1e3;
    unit = "us";
  }
  add_record(name, value_ns / scale, unit, peer, peer_ns / scale, target);
}

void bench_report_against_seed(const char *name, double value_ns,
                               double seed_ns) {
  if (!isnan(value_ns))
    bench_report_time(name, value_ns, "edgefirst-tensor 0.24 (quoted figure)",
                      seed_ns, NULL);
}

void bench_report_rate(const char *name, uint64_t bytes, double value_ns,
                       const char *peer, double peer_ns, const char *target) {
  /* bytes per nanosecond is GB/s */
  add_record(name, (double)bytes / value_ns, "GB/s", peer,
             (double)bytes / peer_ns, target);
}

void bench_report(const char *name, double value, const char *unit,
                  const char *peer, double peer_value, const char *target) {
  add_record(name, value, unit, peer, peer_value, target);
}

static void write_json_string(FILE *file, const char *text) {
  fputc('"', file);
  for (const unsigned char *c = (const unsigned char *)text; *c; c++) {
    if (*c == '"' || *c == '\\')
      fprintf(file, "\\%c", *c);
    else if (*c < 0x20)
      fprintf(file, "\\u%04x", *c);
    else
      fputc(*c, file);
  }
  fputc('"', file);
}

static bool write_json(const char *path) {
  FILE *file = fopen(path, "w");
  if (file == NULL) {
    fprintf(stderr, "%s: cannot write %s: %s\n", program_name, path,
            strerror(errno));
    return false;
  }
  fputs("[\n", file);
  for (size_t i = 0; i < record_count; i++) {
    const bench_record *r = &records[i];
    fputs("  {\"name\": ", file);
    write_json_string(file, r->name);
    fprintf(file, ", \"value\": %.6g, \"unit\": \"%s\"", r->value, r->unit);
    if (r->peer != NULL) {
      fputs(", \"peer\": ", file);
      write_json_string(file, r->peer);
      fprintf(file, ", \"peer_value\": %.6g, \"ratio\": %.4g", r->peer_value,
              r->value / r->peer_value);
    }
    if (r->target != NULL) {
      fputs(", \"target\": ", file);
      write_json_string(file, r->target);
    }
    fputs(i + 1 < record_count ? "},\n" : "}\n", file);
  }
  fputs("]\n", file);
  return fclose(file) == 0;
}

static void print_table(void) {
  printf("\n%-44s %14s  %-40s %14s %8s  %s\n", program_name, "tensorbuf",
         "peer", "peer value", "ratio", "target");
  for (size_t i = 0; i < record_count; i++) {
    const bench_record *r = &records[i];
    printf("%-44s %9.4g %-4s", r->name, r->value, r->unit);
    if (r->peer != NULL)
      printf("  %-40s %9.4g %-4s %8.3g", r->peer, r->peer_value, r->unit,
             r->value / r->peer_value);
    else
      printf("  %-40s %14s %8s", "-", "-", "-");
    printf("  %s\n", r->target != NULL ? r->target : "-");
  }
}

int bench_end(void) {
  print_table();
  bool written = out_path == NULL || write_json(out_path);
  for (size_t i = 0; i < record_count; i++) {
    free(records[i].name);
    free(records[i].peer);
    free(records[i].target);
  }
  if (tb_live_objects() != 0) {
    fprintf(stderr, "%s: %lld tensorbuf handles still live\n", program_name,
            (long long)tb_live_objects());
    return EXIT_FAILURE;
  }
  return written ? EXIT_SUCCESS : EXIT_FAILURE;
}

int bench_new_memfd(size_t bytes) {
  int fd = memfd_create("bench-floor", MFD_CLOEXEC);
  bench_check_system(fd >= 0, "memfd_create");
  bench_check_system(ftruncate(fd, (off_t)bytes) == 0, "ftruncate");
  return fd;
}

void bench_memfd_floor(size_t bytes, uint64_t iterations) {
  for (uint64_t i = 0; i < iterations; i++) {
    int fd = bench_new_memfd(bytes);
    void *data = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    bench_check_system(data != MAP_FAILED, "mmap");
    munmap(data, bytes);
    close(fd);
  }
}

/* The control buffer of a message with one fd. */
typedef union one_fd_control {
  struct cmsghdr header;
  char space[CMSG_SPACE(sizeof(int))];
} one_fd_control;

static struct msghdr one_fd_message(struct iovec *iov,
                                    one_fd_control *control) {
  memset(control, 0, sizeof *control);
  return (struct msghdr){.msg_iov = iov,
                         .msg_iovlen = 1,
                         .msg_control = control->space,
                         .msg_controllen = sizeof control->space};
}

void bench_send_fd(int socket, int fd, const void *payload, size_t size) {
  struct iovec iov = {.iov_base = (void *)payload, .iov_len = size};
  one_fd_control control;
  struct msghdr msg = one_fd_message(&iov, &control);
  struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
  *c = (struct cmsghdr){.cmsg_len = CMSG_LEN(sizeof fd),
                        .cmsg_level = SOL_SOCKET,
                        .cmsg_type = SCM_RIGHTS};
  memcpy(CMSG_DATA(c), &fd, sizeof fd);
  bench_check_system(sendmsg(socket, &msg, MSG_NOSIGNAL) == (ssize_t)size,
                     "sendmsg of an fd");
}

int bench_receive_fd(int socket, void *payload, size_t size) {
  struct iovec iov = {.iov_base = payload, .iov_len = size};
  one_fd_control control;
  struct msghdr msg = one_fd_message(&iov, &control);
  bench_check_system(recvmsg(socket, &msg, MSG_CMSG_CLOEXEC) == (ssize_t)size,
                     "recvmsg of an fd");
  struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
  bench_check_system(c != NULL && c->cmsg_type == SCM_RIGHTS, "an fd arriving");
  int fd;
  memcpy(&fd, CMSG_DATA(c), sizeof fd);
  return fd;
}

int bench_start_python(const char *script, const char *const args[], int cpu,
                       int timeout_ms, pid_t *pid, char *why, size_t why_size) {
  if (access(PYTHON, X_OK) != 0) {
    snprintf(why, why_size, "no %s", PYTHON);
    return -1;
  }
  int pair[2];
  bench_check_system(
      socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, pair) == 0,
      "socketpair");
  char fd_text[16];
  snprintf(fd_text, sizeof fd_text, "%d", pair[1]);
  const char *argv[PYTHON_MAX_ARGS + 4] = {PYTHON, script, fd_text};
  for (size_t i = 0; i < PYTHON_MAX_ARGS && args[i] != NULL; i++)
    argv[3 + i] = args[i];
  fflush(NULL);
  *pid = fork();
  bench_check_system(*pid >= 0, "fork");
  if (*pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL); /* never outlive the benchmark */
    fcntl(pair[1], F_SETFD, 0);       /* the one fd Python inherits */
    if (cpu >= 0) {
      cpu_set_t set;
      CPU_ZERO(&set);
      CPU_SET(cpu, &set);
      sched_setaffinity(0, sizeof set, &set);
    }
    execv(PYTHON, (char *const *)argv);
    _exit(127);
  }
  close(pair[1]);
  struct pollfd ready = {.fd = pair[0], .events = POLLIN};
  char text[512];
  ssize_t got = -1;
  if (poll(&ready, 1, timeout_ms) == 1)
    got = recv(pair[0], text, sizeof text - 1, 0);
  text[got > 0 ? got : 0] = '\0';
  if (strcmp(text, "ready") == 0)
    return pair[0];
  snprintf(why, why_size, "%s %s did not start (%s)", PYTHON, script,
           got > 0    ? text
           : got == 0 ? "it exited without a word"
                      : "no answer within the time limit");
  close(pair[0]);
  kill(*pid, SIGKILL); /* it may hang in an import */
  waitpid(*pid, NULL, 0);
  return -1;
}
