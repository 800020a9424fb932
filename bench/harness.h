/* The benchmark harness shared by the C benchmark programs.
 *
 * Timing: in process, CLOCK_MONOTONIC. Each side of a comparison is warmed up
 * and calibrated to batches of about TB_BENCH_BATCH_NS, then the subject and
 * its peer run alternately (A B A B ...) so that drift on a noisy machine hits
 * both alike; the figure reported is the median of the batch means.
 *
 * Output: bench/README.md describes the JSON records written to the file named
 * by TB_BENCH_OUT; the program also prints its own table. TB_BENCH_FILTER=text
 * runs only the benchmarks whose name contains `text` (for perf or strace). */
#ifndef TB_BENCH_HARNESS_H
#define TB_BENCH_HARNESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* Runs the measured operation `iterations` times. */
typedef void (*bench_batch_fn)(void *context, uint64_t iterations);

typedef struct bench_op {
  const char *label; /* the peer's name in the report */
  bench_batch_fn run;
  void *context;
} bench_op;

/* Median nanoseconds per operation of each side. */
typedef struct bench_timing {
  double subject_ns;
  double peer_ns;
} bench_timing;

/* Reads TB_BENCH_OUT and TB_BENCH_FILTER; call first. */
void bench_begin(const char *program);

/* Whether TB_BENCH_FILTER selects the benchmark called `name`. */
bool bench_selected(const char *name);

/* Times `subject` and, if `peer` is not NULL, `peer`, interleaved. */
bench_timing bench_measure(const bench_op *subject, const bench_op *peer);

/* The median of `count` values (sorts them in place), for a program that
 * times batches its own way (e.g. across processes). */
double bench_median(double *values, size_t count);

/* Records a time per operation (ns; the unit is chosen for readability).
 * `peer` NULL means no peer; `target` may be NULL ("<= 100 ns", "<= 1.5x"). */
void bench_report_time(const char *name, double value_ns, const char *peer,
                       double peer_ns, const char *target);

/* The seed library's figures (edgefirst-tensor 0.24), measured once on this
 * project's machine and written at the calls: quoted for comparison, not
 * re-measured here. A NAN value (a benchmark the
 * filter skipped) records nothing. */
void bench_report_against_seed(const char *name, double value_ns,
                               double seed_ns);

/* Records a throughput in GB/s from the time to move `bytes`. */
void bench_report_rate(const char *name, uint64_t bytes, double value_ns,
                       const char *peer, double peer_ns, const char *target);

/* Records any other measure in one of bench/README.md's units (e.g.
 * "frames/s", a string literal: it is kept, not copied); `peer` NULL means
 * no peer; `target` may be NULL. */
void bench_report(const char *name, double value, const char *unit,
                  const char *peer, double peer_value, const char *target);

/* Prints the table, writes TB_BENCH_OUT and checks that no tensorbuf handle
 * is left alive; returns the exit status. */
int bench_end(void);

/* Aborts the benchmark program with `what` and the library's last error:
 * a failing call means the figures would be meaningless. */
void bench_check(int status, const char *what);

/* Aborts with `what` and errno unless `ok`: for the floors' system calls. */
void bench_check_system(bool ok, const char *what);

/* The frames every benchmark runs on: RGBA u8 images, shape {H, W, 4}. */
typedef struct bench_frame {
  const char *label;
  int64_t shape[3];
} bench_frame;

#define BENCH_FRAME_COUNT 3
extern const bench_frame bench_frames[BENCH_FRAME_COUNT];

/* Bytes of a frame (H * W * 4). */
size_t bench_frame_bytes(const bench_frame *frame);

/* Touches one byte per page of [data, data + size): the first touch of each
 * page is what a fresh or freshly mmapped buffer pays for. */
void bench_write_pages(uint8_t *data, size_t size);
void bench_read_pages(const uint8_t *data, size_t size);

/* Keeps the compiler from discarding a value or a store it cannot see used. */
static inline void bench_keep(const void *pointer) {
  __asm__ volatile("" : : "r"(pointer) : "memory");
}

/* A new memfd of `bytes` (memfd_create + ftruncate); aborts on failure. */
int bench_new_memfd(size_t bytes);

/* The raw floor of a SHM allocation: memfd_create + ftruncate + mmap +
 * munmap + close of `bytes`, `iterations` times. */
void bench_memfd_floor(size_t bytes, uint64_t iterations);

/* One seqpacket message of `size` bytes carrying `fd` (SCM_RIGHTS), and its
 * receipt: the received fd (close-on-exec), the bytes into `payload`.
 * Abort on failure: these are the floors' own system calls. */
void bench_send_fd(int socket, int fd, const void *payload, size_t size);
int bench_receive_fd(int socket, void *payload, size_t size);

/* Starts /usr/bin/python3 `script` SOCKET_FD `args`... (NULL-terminated)
 * with one end of a new seqpacket socketpair as SOCKET_FD, pinned to `cpu`
 * (-1: not pinned; the pin is inherited by all its threads), and waits up
 * to `timeout_ms` for its first message, "ready". Returns this side's
 * socket, or -1 with why in `why` (no Python, an "error: ..." it sent, no
 * answer in time), the process then killed and reaped. */
int bench_start_python(const char *script, const char *const args[], int cpu,
                       int timeout_ms, pid_t *pid, char *why, size_t why_size);

#endif /* TB_BENCH_HARNESS_H */
