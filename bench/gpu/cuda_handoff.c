/* Cross-process handoff of a 1080p RGBA u8 CUDA tensor, round trip: the
 * producer sends the tensor, the consumer gets its device pointer
 * (tb_tensor_device_ptr), then answers with that pointer on a plain Unix
 * SOCK_SEQPACKET pair. Four ways, interleaved per iteration so that a noisy
 * machine hits them alike; the first three send on that same socket (the
 * fd of tb_tensor_export_fd by SCM_RIGHTS, imported with
 * tb_tensor_import_cuda_fd), the last through the library's channel:
 *   empty     a message without a tensor (the transport's floor)
 *   fresh     every frame sends an fd; the consumer imports, maps, answers,
 *             and drops its import after answering
 *   pooled    a pool of 4 device buffers: each slot's fd is sent once, then
 *             only the slot number; the consumer keeps its imports (what a
 *             pool over a channel does, and what torch's CUDA IPC cache does)
 *   channel   what an application writes: tb_pool_acquire of a pool of 4
 *             CUDA tensors, tb_channel_send, tb_tensor_unref; the consumer's
 *             tb_channel_recv maps each slot once (its receive cache), and
 *             its unref after answering sends the release back
 * Also the one-time cost of a pooled CUDA_HOST (pinned, registered) buffer
 * against a frame loop that would pay it every frame, and the time from
 * queueing a GPU fence signal on an idle stream to a CPU waiter's wake.
 *
 *   cuda_handoff [ITERATIONS [OUT.json]]
 * Pin it: taskset -c 2,3 (producer and consumer each get a CPU). Exit 77
 * without a GPU. */
#include "tensorbuf/tensorbuf.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "../../tests/gpu/gpu_socket.h"

enum { EMPTY, FRESH, POOLED, CHANNEL, QUIT, WAYS = QUIT };
enum { SLOTS = 4, WARMUP = 200 };
static const int64_t frame_shape[] = {1080, 1920, 4};

typedef struct Message {
  uint32_t kind;
  uint32_t slot; /* POOLED: 0..SLOTS-1 */
} Message;

static void check(tb_status status, const char *what) {
  if (status != TB_OK) {
    fprintf(stderr, "cuda_handoff: %s: %s\n", what, tb_last_error());
    exit(1);
  }
}

static double now_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

/* Sends `message`, with `fd` attached when it is >= 0. */
static void send_message(int sock, Message message, int fd) {
  if (gpu_send_fd(sock, &message, sizeof message, fd) !=
      (ssize_t)sizeof message) {
    perror("cuda_handoff: sendmsg");
    exit(1);
  }
}

/* Receives a message and the fd it carries (-1 when none). */
static Message recv_message(int sock, int *fd) {
  Message message = {QUIT, 0};
  if (gpu_recv_fd(sock, &message, sizeof message, fd) !=
      (ssize_t)sizeof message)
    return (Message){QUIT, 0};
  return message;
}

static tb_tensor *import_frame(int fd) {
  tb_tensor *frame = NULL;
  check(tb_tensor_import_cuda_fd(&frame, fd, TB_MEMORY_CUDA, 0, TB_DTYPE_U8, 3,
                                 frame_shape, 0),
        "tb_tensor_import_cuda_fd");
  close(fd);
  return frame;
}

/* A tensor from the channel: answers with its device pointer, then drops
 * it (its release goes back to the producer's pool). FALSE when the
 * channel is closed or broken. */
static int consume_channel(int sock, tb_channel *channel) {
  for (;;) { /* until the channel says nothing more, as channel.h asks */
    tb_tensor *frame = NULL;
    tb_status status = tb_channel_recv(&frame, channel, 0);
    if (status == TB_ERR_TIMEOUT)
      return 1;
    if (status != TB_OK)
      return 0;
    uint64_t answer = 0;
    check(tb_tensor_device_ptr(&answer, frame), "tb_tensor_device_ptr");
    int sent =
        send(sock, &answer, sizeof answer, MSG_NOSIGNAL) == sizeof answer;
    tb_tensor_unref(frame); /* after the answer: off the round trip */
    if (!sent)
      return 0;
  }
}

static int consumer(int sock, tb_channel *channel) {
  tb_tensor *pool[SLOTS] = {NULL};
  struct pollfd ready[2] = {{.fd = sock, .events = POLLIN},
                            {.fd = tb_channel_fd(channel), .events = POLLIN}};
  for (;;) {
    if (poll(ready, 2, -1) < 0 && errno != EINTR)
      break;
    if (!(ready[0].revents & POLLIN) && ready[1].revents != 0) {
      if (!consume_channel(sock, channel))
        break;
      continue;
    }
    int fd = -1;
    Message message = recv_message(sock, &fd);
    uint64_t answer = 0;
    tb_tensor *fresh = NULL;
    if (message.kind == FRESH && fd >= 0) {
      fresh = import_frame(fd);
      check(tb_tensor_device_ptr(&answer, fresh), "tb_tensor_device_ptr");
    } else if (message.kind == POOLED && message.slot < SLOTS) {
      if (fd >= 0) {
        tb_tensor_unref(pool[message.slot]);
        pool[message.slot] = import_frame(fd);
      }
      if (pool[message.slot] != NULL)
        check(tb_tensor_device_ptr(&answer, pool[message.slot]),
              "tb_tensor_device_ptr");
    } else if (message.kind != EMPTY) {
      if (fd >= 0)
        close(fd);
      break;
    }
    if (send(sock, &answer, sizeof answer, MSG_NOSIGNAL) != sizeof answer)
      break;
    tb_tensor_unref(fresh); /* after the answer: off the round trip */
  }
  for (int i = 0; i < SLOTS; i++)
    tb_tensor_unref(pool[i]);
  tb_channel_unref(channel);
  return tb_live_objects() == 0 ? 0 : 1;
}

static int compare_doubles(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

static double percentile(double *sorted, size_t count, double p) {
  size_t index = (size_t)(p * (double)(count - 1) + 0.5);
  return sorted[index];
}

typedef struct Series {
  const char *name;
  double *samples;
  double median, p99;
} Series;

static void summarise(Series *s, size_t count) {
  qsort(s->samples, count, sizeof *s->samples, compare_doubles);
  s->median = percentile(s->samples, count, 0.5);
  s->p99 = percentile(s->samples, count, 0.99);
}

/* Median of `count` runs of allocate (+ register) and free of a 1080p
 * tensor of `memory` kind, in microseconds; the first run alone in *first. */
static double new_free_us(tb_memory memory, size_t count, double *first) {
  double *samples = calloc(count, sizeof *samples);
  tb_alloc_options opts = TB_ALLOC_OPTIONS_INIT;
  opts.memory = memory;
  for (size_t i = 0; i < count; i++) {
    double start = now_us();
    tb_tensor *t = NULL;
    check(tb_tensor_new(&t, TB_DTYPE_U8, 3, frame_shape, &opts),
          "tb_tensor_new");
    tb_tensor_unref(t);
    samples[i] = now_us() - start;
  }
  if (first != NULL)
    *first = samples[0];
  qsort(samples, count, sizeof *samples, compare_doubles);
  double median = samples[count / 2];
  free(samples);
  return median;
}

int main(int argc, char **argv) {
  size_t iterations = argc > 1 ? strtoul(argv[1], NULL, 10) : 2000;
  const char *out = argc > 2 ? argv[2] : NULL;
  if (iterations < 100)
    iterations = 100;
  int pair[2];
  if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, pair) != 0) {
    perror("socketpair");
    return 1;
  }
  tb_channel *channel = NULL, *theirs = NULL;
  check(tb_channel_pair(&channel, &theirs), "tb_channel_pair");
  /* Fork before anything touches CUDA: a driver does not survive a fork. */
  pid_t pid = fork();
  if (pid == 0) {
    close(pair[0]);
    tb_channel_unref(channel); /* the fork's copy of the producer's end */
    _exit(consumer(pair[1], theirs));
  }
  close(pair[1]);
  tb_channel_unref(theirs);
  int sock = pair[0];
  if (!tb_memory_available(TB_MEMORY_CUDA)) {
    send_message(sock, (Message){QUIT, 0}, -1);
    waitpid(pid, NULL, 0);
    tb_channel_unref(channel);
    fprintf(stderr, "SKIP cuda_handoff: no CUDA device\n");
    return 77;
  }

  tb_alloc_options opts = TB_ALLOC_OPTIONS_INIT;
  opts.memory = TB_MEMORY_CUDA;
  tb_tensor *frame = NULL, *pool[SLOTS] = {NULL};
  check(tb_tensor_new(&frame, TB_DTYPE_U8, 3, frame_shape, &opts),
        "tb_tensor_new cuda");
  for (int i = 0; i < SLOTS; i++)
    check(tb_tensor_new(&pool[i], TB_DTYPE_U8, 3, frame_shape, &opts),
          "tb_tensor_new cuda");
  tb_pool *channel_pool = NULL;
  check(tb_pool_new(&channel_pool, frame, SLOTS), "tb_pool_new cuda");
  Series series[WAYS] = {{"empty message (socket floor)", NULL, 0, 0},
                         {"fresh import per frame", NULL, 0, 0},
                         {"pooled (fd once per slot)", NULL, 0, 0},
                         {"tb_channel, pooled (tb_pool)", NULL, 0, 0}};
  for (int k = 0; k < WAYS; k++)
    series[k].samples = calloc(iterations, sizeof(double));
  uint64_t pointers_seen = 0;
  int slot_sent[SLOTS] = {0};
  for (size_t i = 0; i < WARMUP + iterations; i++) {
    for (uint32_t kind = EMPTY; kind < WAYS; kind++) {
      uint32_t slot = (uint32_t)(i % SLOTS);
      double start = now_us();
      int fd = -1;
      if (kind == CHANNEL) {
        tb_tensor *lent = NULL;
        check(tb_pool_acquire(&lent, channel_pool, 10000), "tb_pool_acquire");
        check(tb_channel_send(channel, lent, 0), "tb_channel_send");
        tb_tensor_unref(lent);
      } else {
        if (kind == FRESH)
          check(tb_tensor_export_fd(&fd, frame), "tb_tensor_export_fd");
        else if (kind == POOLED && !slot_sent[slot])
          check(tb_tensor_export_fd(&fd, pool[slot]), "tb_tensor_export_fd");
        send_message(sock, (Message){kind, slot}, fd);
      }
      if (fd >= 0)
        close(fd);
      uint64_t answer = 0;
      if (recv(sock, &answer, sizeof answer, 0) != sizeof answer) {
        fprintf(stderr, "cuda_handoff: the consumer went away\n");
        return 1;
      }
      double took = now_us() - start;
      if (kind == POOLED)
        slot_sent[slot] = 1;
      if (kind != EMPTY && answer == 0) {
        fprintf(stderr, "cuda_handoff: the consumer had no device pointer\n");
        return 1;
      }
      pointers_seen += kind != EMPTY;
      if (i >= WARMUP)
        series[kind].samples[i - WARMUP] = took;
    }
  }
  send_message(sock, (Message){QUIT, 0}, -1);
  int wstatus = 0;
  waitpid(pid, &wstatus, 0);
  tb_pool_unref(channel_pool);
  tb_channel_unref(channel);
  for (int k = 0; k < WAYS; k++)
    summarise(&series[k], iterations);

  /* Registration of a pooled CUDA_HOST buffer: paid when the pool is made,
   * never in the frame loop (acquire + drop). */
  tb_alloc_options host_opts = TB_ALLOC_OPTIONS_INIT;
  host_opts.memory = TB_MEMORY_CUDA_HOST;
  tb_tensor *prototype = NULL;
  double first_us = 0;
  double host_new_us = new_free_us(TB_MEMORY_CUDA_HOST, 50, &first_us);
  double shm_new_us = new_free_us(TB_MEMORY_SHM, 50, NULL);
  check(tb_tensor_new(&prototype, TB_DTYPE_U8, 3, frame_shape, &host_opts),
        "tb_tensor_new cuda_host");
  double start = now_us();
  tb_pool *host_pool = NULL;
  check(tb_pool_new(&host_pool, prototype, SLOTS), "tb_pool_new");
  double pool_new_us = now_us() - start;
  double *acquire = calloc(iterations, sizeof *acquire);
  for (size_t i = 0; i < iterations; i++) {
    tb_tensor *t = NULL;
    start = now_us();
    check(tb_pool_acquire(&t, host_pool, 0), "tb_pool_acquire");
    tb_tensor_unref(t);
    acquire[i] = now_us() - start;
  }
  qsort(acquire, iterations, sizeof *acquire, compare_doubles);
  double acquire_us = percentile(acquire, iterations, 0.5);
  double acquire_p99 = percentile(acquire, iterations, 0.99);
  tb_pool_unref(host_pool);
  tb_tensor_unref(prototype);

  /* GPU signal -> CPU wake: tb_fence_cuda_signal on the idle legacy stream,
   * then tb_fence_wait sleeps until the signal's host function wakes it. */
  tb_fence *fence = NULL;
  check(tb_fence_new(&fence, 0), "tb_fence_new");
  double *wake = calloc(iterations, sizeof *wake);
  for (size_t i = 0; i < WARMUP + iterations; i++) {
    start = now_us();
    check(tb_fence_cuda_signal(fence, i + 1, 0, 0), "tb_fence_cuda_signal");
    check(tb_fence_wait(fence, i + 1, 1000000000), "tb_fence_wait");
    if (i >= WARMUP)
      wake[i - WARMUP] = now_us() - start;
  }
  qsort(wake, iterations, sizeof *wake, compare_doubles);
  double wake_us = percentile(wake, iterations, 0.5);
  double wake_p99 = percentile(wake, iterations, 0.99);
  tb_fence_unref(fence);

  printf("CUDA tensor handoff round trip, 1080p RGBA u8 (%zu iterations after "
         "%d warm-up, answers on Unix SOCK_SEQPACKET, C)\n",
         iterations, WARMUP);
  printf("%-34s %12s %12s %14s\n", "way", "median us", "p99 us",
         "vs empty msg");
  for (int k = 0; k < WAYS; k++)
    printf("%-34s %12.1f %12.1f %13.2fx\n", series[k].name, series[k].median,
           series[k].p99, series[k].median / series[0].median);
  printf("\nCUDA_HOST 1080p buffer (alloc + cuMemHostRegister):\n");
  printf("  first tb_tensor_new+unref            %10.1f us\n", first_us);
  printf("  tb_tensor_new+unref, median of 50    %10.1f us (shm: %.1f us)\n",
         host_new_us, shm_new_us);
  printf("  tb_pool_new of %d (registration once) %10.1f us (%.1f us each)\n",
         SLOTS, pool_new_us, pool_new_us / SLOTS);
  printf("  pooled acquire+drop per frame        %10.2f us median, %.2f p99\n",
         acquire_us, acquire_p99);
  printf("  per frame, unpooled / pooled          %10.0fx\n",
         host_new_us / acquire_us);
  printf("\nGPU fence signal queued -> CPU waiter woken: %.1f us median, "
         "%.1f p99\n",
         wake_us, wake_p99);

  if (out != NULL) {
    FILE *json = fopen(out, "w");
    if (json == NULL) {
      perror(out);
      return 1;
    }
    fprintf(json,
            "{\"frame\": \"1080p rgba u8\", \"iterations\": %zu,\n"
            " \"handoff_us\": {",
            iterations);
    static const char *keys[] = {"empty", "fresh", "pooled", "channel_pooled"};
    for (int k = 0; k < WAYS; k++)
      fprintf(json, "%s\"%s\": {\"median\": %.2f, \"p99\": %.2f}",
              k ? ", " : "", keys[k], series[k].median, series[k].p99);
    fprintf(json,
            "},\n \"cuda_host_register_us\": {\"first_new\": %.1f, "
            "\"new_free_median\": %.1f, \"shm_new_free_median\": %.1f, "
            "\"pool_new_%d\": %.1f, \"pooled_acquire_median\": %.3f, "
            "\"pooled_acquire_p99\": %.3f},\n"
            " \"fence_gpu_signal_to_cpu_wake_us\": {\"median\": %.2f, "
            "\"p99\": %.2f}}\n",
            first_us, host_new_us, shm_new_us, SLOTS, pool_new_us, acquire_us,
            acquire_p99, wake_us, wake_p99);
    fclose(json);
  }
  for (int k = 0; k < WAYS; k++)
    free(series[k].samples);
  free(acquire);
  free(wake);
  for (int i = 0; i < SLOTS; i++)
    tb_tensor_unref(pool[i]);
  tb_tensor_unref(frame);
  int ok = WIFEXITED(wstatus) && WEXITSTATUS(wstatus) == 0 &&
           tb_live_objects() == 0 && pointers_seen > 0;
  if (!ok)
    fprintf(stderr, "cuda_handoff: the consumer failed or leaked\n");
  return ok ? 0 : 1;
}
