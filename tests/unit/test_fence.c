/* Fences: timelines that only grow, waited on and signalled across
 * processes (by fd and on a channel). */
#include "tb_peer.h"

#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#define MS_NS INT64_C(1000000)

/* Checks that a wait of `timeout_ms` times out, and took about that long:
 * not early, and not more than two seconds late on a loaded machine. */
static void assert_wait_times_out(tb_fence *fence, uint64_t value,
                                  int64_t timeout_ms) {
  int64_t start = tb_peer_now_ms();
  TB_ASSERT_STATUS(tb_fence_wait(fence, value, timeout_ms * MS_NS),
                   TB_ERR_TIMEOUT);
  int64_t elapsed = tb_peer_now_ms() - start;
  if (elapsed < timeout_ms - 1 || elapsed > timeout_ms + 2000) {
    print_error("a %lld ms wait took %lld ms\n", (long long)timeout_ms,
                (long long)elapsed);
    fail();
  }
}

/* A read-only fd of the same memfd, as a peer given only read access has. */
static int reopen_read_only(int fd) {
  char path[64];
  snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
  int read_only = open(path, O_RDONLY | O_CLOEXEC);
  assert_true(read_only >= 0);
  return read_only;
}

static void counts_up_and_never_back(void **state) {
  (void)state;
  tb_fence *fence = NULL;
  TB_ASSERT_OK(tb_fence_new(&fence, 5));
  assert_int_equal(tb_fence_value(fence), 5);
  TB_ASSERT_OK(tb_fence_wait(fence, 0, 0));
  TB_ASSERT_OK(tb_fence_wait(fence, 5, 0));
  TB_ASSERT_STATUS(tb_fence_wait(fence, 6, 0), TB_ERR_TIMEOUT);
  TB_ASSERT_OK(tb_fence_signal(fence, 6));
  assert_int_equal(tb_fence_value(fence), 6);
  TB_ASSERT_OK(tb_fence_wait(fence, 6, -1));
  TB_ASSERT_STATUS(tb_fence_signal(fence, 6), TB_ERR_OUT_OF_RANGE);
  TB_ASSERT_STATUS(tb_fence_signal(fence, 2), TB_ERR_OUT_OF_RANGE);
  TB_ASSERT_STATUS(tb_fence_signal(fence, 0), TB_ERR_OUT_OF_RANGE);
  assert_int_equal(tb_fence_value(fence), 6);
  TB_ASSERT_OK(tb_fence_signal(fence, UINT64_MAX));
  TB_ASSERT_OK(tb_fence_wait(fence, UINT64_MAX, 0));
  TB_ASSERT_STATUS(tb_fence_signal(fence, UINT64_MAX), TB_ERR_OUT_OF_RANGE);

  assert_ptr_equal(tb_fence_ref(fence), fence);
  tb_fence_unref(fence);
  tb_fence_unref(fence);
}

static void rejects_bad_arguments(void **state) {
  (void)state;
  tb_fence *fence = TB_SENTINEL(tb_fence);
  int fd = -7;
  TB_ASSERT_STATUS(tb_fence_new(NULL, 0), TB_ERR_INVALID_ARGUMENT);
  TB_ASSERT_STATUS(tb_fence_import_fd(NULL, 0), TB_ERR_INVALID_ARGUMENT);
  TB_ASSERT_STATUS(tb_fence_import_fd(&fence, -1), TB_ERR_INVALID_ARGUMENT);
  TB_ASSERT_STATUS(tb_fence_export_fd(&fd, NULL), TB_ERR_INVALID_ARGUMENT);
  TB_ASSERT_STATUS(tb_fence_signal(NULL, 1), TB_ERR_INVALID_ARGUMENT);
  TB_ASSERT_STATUS(tb_fence_wait(NULL, 1, 0), TB_ERR_INVALID_ARGUMENT);
  assert_ptr_equal(fence, TB_SENTINEL(tb_fence));
  assert_int_equal(fd, -7);

  tb_fence *real = NULL;
  TB_ASSERT_OK(tb_fence_new(&real, 0));
  TB_ASSERT_STATUS(tb_fence_export_fd(NULL, real), TB_ERR_INVALID_ARGUMENT);
  tb_fence_unref(real);

  assert_int_equal(tb_fence_value(NULL), 0);
  assert_null(tb_fence_ref(NULL));
  tb_fence_unref(NULL);
}

static void export_and_import_share_the_counter(void **state) {
  (void)state;
  tb_fence *fence = NULL, *imported = NULL;
  TB_ASSERT_OK(tb_fence_new(&fence, 10));
  int fd = -1;
  TB_ASSERT_OK(tb_fence_export_fd(&fd, fence));
  assert_true(fcntl(fd, F_GETFD) & FD_CLOEXEC);
  TB_ASSERT_OK(tb_fence_import_fd(&imported, fd));
  close(fd); /* the import holds its own */
  assert_int_equal(tb_fence_value(imported), 10);
  TB_ASSERT_OK(tb_fence_signal(imported, 11));
  assert_int_equal(tb_fence_value(fence), 11);
  TB_ASSERT_OK(tb_fence_signal(fence, 12));
  TB_ASSERT_OK(tb_fence_wait(imported, 12, 0));
  tb_fence_unref(fence);
  /* The page lives while any process or handle holds it. */
  TB_ASSERT_OK(tb_fence_signal(imported, 13));
  assert_int_equal(tb_fence_value(imported), 13);
  tb_fence_unref(imported);
}

static void import_refuses_what_is_not_a_fence(void **state) {
  (void)state;
  tb_fence *fence = TB_SENTINEL(tb_fence);
  /* Shared memory of the fence's size, but zeros or bytes, not a fence. */
  int zeros = memfd_create("zeros", MFD_CLOEXEC | MFD_ALLOW_SEALING);
  assert_int_equal(ftruncate(zeros, 4096), 0);
  const int fds[] = {zeros,
                     tb_test_memfd(4096, MFD_ALLOW_SEALING),
                     tb_test_memfd(100, MFD_ALLOW_SEALING),
                     tb_test_memfd(8192, MFD_ALLOW_SEALING),
                     tb_test_memfd(0, MFD_ALLOW_SEALING),
                     tb_test_memfd(4096, 0) /* cannot be sealed */};
  for (size_t i = 0; i < sizeof fds / sizeof *fds; i++) {
    TB_ASSERT_STATUS(tb_fence_import_fd(&fence, fds[i]), TB_ERR_BAD_FD);
    close(fds[i]);
  }

  /* A tensor's shared memory is not a fence either. */
  const int64_t shape[] = {4096};
  tb_tensor *tensor = tb_test_arange(TB_DTYPE_U8, 1, shape, TB_MEMORY_SHM);
  int tensor_fd = -1;
  TB_ASSERT_OK(tb_tensor_export_fd(&tensor_fd, tensor));
  TB_ASSERT_STATUS(tb_fence_import_fd(&fence, tensor_fd), TB_ERR_BAD_FD);
  close(tensor_fd);
  tb_tensor_unref(tensor);

  int pipe_fds[2];
  assert_int_equal(pipe2(pipe_fds, O_CLOEXEC), 0);
  TB_ASSERT_STATUS(tb_fence_import_fd(&fence, pipe_fds[0]), TB_ERR_BAD_FD);
  close(pipe_fds[0]);
  close(pipe_fds[1]);
  int regular = open("/proc/self/exe", O_RDONLY | O_CLOEXEC);
  assert_true(regular >= 0);
  TB_ASSERT_STATUS(tb_fence_import_fd(&fence, regular), TB_ERR_BAD_FD);
  /* Now closed: no file at all behind the number. */
  close(regular);
  TB_ASSERT_STATUS(tb_fence_import_fd(&fence, regular), TB_ERR_BAD_FD);
  assert_ptr_equal(fence, TB_SENTINEL(tb_fence));
}

static void timeout_zero_only_tests(void **state) {
  (void)state;
  tb_fence *fence = NULL;
  TB_ASSERT_OK(tb_fence_new(&fence, 3));
  int64_t start = tb_peer_now_ms();
  for (int i = 0; i < 1000; i++) {
    TB_ASSERT_STATUS(tb_fence_wait(fence, 4, 0), TB_ERR_TIMEOUT);
    TB_ASSERT_OK(tb_fence_wait(fence, 3, 0));
  }
  /* 2000 polls that never sleep take well under a second. */
  assert_true(tb_peer_now_ms() - start < 1000);
  assert_wait_times_out(fence, 4, 100);
  tb_fence_unref(fence);
}

/* ---- across processes ---------------------------------------------------- */

typedef struct fence_fds {
  int fd;       /* the fence, as the child imports it */
  int reply_fd; /* a second fence the child signals back on */
} fence_fds;

enum { ROUNDS = 200 };

/* Child: waits for each value on one fence and answers it on the other. */
static void echo_fence(tb_peer_end *end, void *arg) {
  const fence_fds *fds = arg;
  tb_fence *ping = NULL, *pong = NULL;
  TB_PEER_ASSERT_OK(tb_fence_import_fd(&ping, fds->fd));
  TB_PEER_ASSERT_OK(tb_fence_import_fd(&pong, fds->reply_fd));
  tb_peer_send_step(end, 1);
  for (uint64_t round = 1; round <= ROUNDS; round++) {
    TB_PEER_ASSERT_OK(tb_fence_wait(ping, round, 10000 * MS_NS));
    TB_PEER_ASSERT_OK(tb_fence_signal(pong, round));
  }
  tb_fence_unref(ping);
  tb_fence_unref(pong);
}

static void signal_in_one_process_wakes_the_other(void **state) {
  (void)state;
  tb_fence *ping = NULL, *pong = NULL;
  TB_ASSERT_OK(tb_fence_new(&ping, 0));
  TB_ASSERT_OK(tb_fence_new(&pong, 0));
  fence_fds fds;
  TB_ASSERT_OK(tb_fence_export_fd(&fds.fd, ping));
  TB_ASSERT_OK(tb_fence_export_fd(&fds.reply_fd, pong));
  tb_peer_end end;
  pid_t child =
      tb_peer_start(&end, TB_PEER_CHANNEL, echo_fence, TB_PEER_CHANNEL, &fds);
  close(fds.fd);
  close(fds.reply_fd);
  tb_peer_expect_step(&end, 1);
  /* Each round sleeps in the futex until the other process signals: a
   * lost wake-up would stall a round for the full timeout. */
  int64_t start = tb_peer_now_ms();
  for (uint64_t round = 1; round <= ROUNDS; round++) {
    TB_ASSERT_OK(tb_fence_signal(ping, round));
    TB_ASSERT_OK(tb_fence_wait(pong, round, 10000 * MS_NS));
  }
  assert_true(tb_peer_now_ms() - start < 10000);
  tb_peer_join(child);
  tb_peer_end_close(&end);
  tb_fence_unref(ping);
  tb_fence_unref(pong);
}

/* Child: imports the fence, says so, and waits to be killed. */
static void import_and_hang(tb_peer_end *end, void *arg) {
  const fence_fds *fds = arg;
  tb_fence *fence = NULL;
  TB_PEER_ASSERT_OK(tb_fence_import_fd(&fence, fds->fd));
  tb_peer_send_step(end, 1);
  pause();
}

static void waiter_times_out_when_the_signaller_dies(void **state) {
  (void)state;
  tb_fence *fence = NULL;
  TB_ASSERT_OK(tb_fence_new(&fence, 0));
  fence_fds fds = {.reply_fd = -1};
  TB_ASSERT_OK(tb_fence_export_fd(&fds.fd, fence));
  tb_peer_end end;
  pid_t child = tb_peer_start(&end, TB_PEER_CHANNEL, import_and_hang,
                              TB_PEER_CHANNEL, &fds);
  close(fds.fd);
  tb_peer_expect_step(&end, 1);
  assert_int_equal(kill(child, SIGKILL), 0);
  int status = tb_peer_reap(child);
  assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
  assert_wait_times_out(fence, 1, 200);
  assert_int_equal(tb_fence_value(fence), 0);
  tb_peer_end_close(&end);
  tb_fence_unref(fence);
}

/* Child: holds a read-only import, which cannot signal but can sleep until
 * the parent signals. */
static void wait_read_only(tb_peer_end *end, void *arg) {
  const fence_fds *fds = arg;
  tb_fence *fence = NULL;
  TB_PEER_ASSERT_OK(tb_fence_import_fd(&fence, fds->fd));
  TB_PEER_ASSERT_STATUS(tb_fence_signal(fence, 1), TB_ERR_READ_ONLY);
  TB_PEER_ASSERT_STATUS(tb_fence_wait(fence, 1, 0), TB_ERR_TIMEOUT);
  TB_PEER_ASSERT_STATUS(tb_fence_wait(fence, 1, 20 * MS_NS), TB_ERR_TIMEOUT);
  tb_peer_send_step(end, 1);
  TB_PEER_ASSERT_OK(tb_fence_wait(fence, 1, 10000 * MS_NS));
  TB_PEER_ASSERT_OK(tb_fence_wait(fence, 2, -1));
  TB_PEER_ASSERT(tb_fence_value(fence) >= 2);
  TB_PEER_ASSERT_STATUS(tb_fence_signal(fence, 3), TB_ERR_READ_ONLY);
  tb_fence_unref(fence);
}

static void read_only_import_waits_but_cannot_signal(void **state) {
  (void)state;
  tb_fence *fence = NULL;
  TB_ASSERT_OK(tb_fence_new(&fence, 0));
  int fd = -1;
  TB_ASSERT_OK(tb_fence_export_fd(&fd, fence));
  fence_fds fds = {.fd = reopen_read_only(fd), .reply_fd = -1};
  close(fd);
  tb_peer_end end;
  pid_t child = tb_peer_start(&end, TB_PEER_CHANNEL, wait_read_only,
                              TB_PEER_CHANNEL, &fds);
  close(fds.fd);
  tb_peer_expect_step(&end, 1);
  usleep(20000); /* let the child fall asleep in the futex */
  TB_ASSERT_OK(tb_fence_signal(fence, 1));
  usleep(20000);
  TB_ASSERT_OK(tb_fence_signal(fence, 2));
  tb_peer_join(child);
  assert_int_equal(tb_fence_value(fence), 2);
  tb_peer_end_close(&end);
  tb_fence_unref(fence);
}

/* Child: takes a fence from the channel, waits for 1 and signals 2. */
static void receive_fence_and_answer(tb_peer_end *end, void *arg) {
  (void)arg;
  tb_fence *fence = NULL;
  TB_PEER_ASSERT_OK(tb_channel_recv_fence(&fence, end->channel, 10000));
  TB_PEER_ASSERT(tb_fence_value(fence) == 0);
  tb_peer_send_step(end, 1);
  TB_PEER_ASSERT_OK(tb_fence_wait(fence, 1, 10000 * MS_NS));
  TB_PEER_ASSERT_OK(tb_fence_signal(fence, 2));
  tb_fence_unref(fence);
}

static void fences_travel_on_channels(void **state) {
  (void)state;
  tb_peer_end end;
  pid_t child = tb_peer_start(&end, TB_PEER_CHANNEL, receive_fence_and_answer,
                              TB_PEER_CHANNEL, NULL);
  tb_fence *fence = NULL;
  TB_ASSERT_OK(tb_fence_new(&fence, 0));
  TB_ASSERT_OK(tb_channel_send_fence(end.channel, fence));
  tb_peer_expect_step(&end, 1);
  TB_ASSERT_OK(tb_fence_signal(fence, 1));
  TB_ASSERT_OK(tb_fence_wait(fence, 2, 10000 * MS_NS));
  tb_peer_join(child);
  tb_peer_end_close(&end);
  tb_fence_unref(fence);
}

static void channels_keep_fences_and_tensors_apart(void **state) {
  (void)state;
  tb_channel *a = NULL, *b = NULL;
  TB_ASSERT_OK(tb_channel_pair(&a, &b));
  tb_fence *fence = NULL, *received = TB_SENTINEL(tb_fence);
  tb_tensor *tensor = TB_SENTINEL(tb_tensor);
  TB_ASSERT_OK(tb_fence_new(&fence, 0));
  TB_ASSERT_STATUS(tb_channel_recv_fence(&received, b, 0), TB_ERR_TIMEOUT);
  TB_ASSERT_STATUS(tb_channel_recv_fence(&received, b, 30), TB_ERR_TIMEOUT);

  /* A fence where a tensor is expected, and the other way round, is a
   * protocol error that consumes the message and leaks nothing. */
  TB_ASSERT_OK(tb_channel_send_fence(a, fence));
  TB_ASSERT_STATUS(tb_channel_recv(&tensor, b, 1000), TB_ERR_PROTOCOL);
  const int64_t shape[] = {8};
  tb_tensor *sent = tb_test_arange(TB_DTYPE_U8, 1, shape, TB_MEMORY_SHM);
  TB_ASSERT_OK(tb_channel_send(a, sent, 0));
  /* The tensor is received and dropped: its buffer stays cached (a live
   * handle and an fd) because the sender's later sends of it carry no fd. */
  assert_int_equal(tb_channel_recv_fence(&received, b, 1000), TB_ERR_PROTOCOL);
  assert_ptr_equal(received, TB_SENTINEL(tb_fence));
  assert_ptr_equal(tensor, TB_SENTINEL(tb_tensor));
  TB_ASSERT_OK(tb_channel_send(a, sent, 0));
  TB_ASSERT_OK(tb_channel_recv(&tensor, b, 1000));
  tb_tensor_unref(tensor);

  TB_ASSERT_STATUS(tb_channel_send_fence(NULL, fence), TB_ERR_INVALID_ARGUMENT);
  TB_ASSERT_STATUS(tb_channel_send_fence(a, NULL), TB_ERR_INVALID_ARGUMENT);
  TB_ASSERT_STATUS(tb_channel_recv_fence(NULL, b, 0), TB_ERR_INVALID_ARGUMENT);
  TB_ASSERT_STATUS(tb_channel_recv_fence(&received, NULL, 0),
                   TB_ERR_INVALID_ARGUMENT);

  /* The peer gone: sending and receiving say so. */
  tb_channel_unref(a);
  TB_ASSERT_STATUS(tb_channel_recv_fence(&received, b, 1000), TB_ERR_CLOSED);
  TB_ASSERT_STATUS(tb_channel_send_fence(b, fence), TB_ERR_CLOSED);
  tb_tensor_unref(sent);
  tb_fence_unref(fence);
  tb_channel_unref(b);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      TB_TEST(counts_up_and_never_back),
      TB_TEST(rejects_bad_arguments),
      TB_TEST(export_and_import_share_the_counter),
      TB_TEST(import_refuses_what_is_not_a_fence),
      TB_TEST(timeout_zero_only_tests),
      TB_TEST(signal_in_one_process_wakes_the_other),
      TB_TEST(waiter_times_out_when_the_signaller_dies),
      TB_TEST(read_only_import_waits_but_cannot_signal),
      TB_TEST(fences_travel_on_channels),
      TB_TEST(channels_keep_fences_and_tensors_apart),
  };
  return TB_RUN_TESTS(tests);
}
