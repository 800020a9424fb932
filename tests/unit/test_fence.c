/* Fences: timelines that only grow, waited on and signalled across
 * processes (by fd and on a channel). */
#include "tb_peer.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/filter.h>
#include <linux/futex.h>
#include <linux/seccomp.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#define MS_NS INT64_C(1000000)

/* The first eight bytes of a fence page ("\0TBFENE1"), as a peer forging
 * one by hand writes them. */
#define FENCE_MAGIC UINT64_C(0x31454e4546425400)
#define FENCE_SEALS (F_SEAL_SHRINK | F_SEAL_GROW)

/* A memfd of `size` bytes that starts with `magic`, with `seals` added. */
static int forged_page(uint64_t size, uint64_t magic, int seals) {
  int fd = tb_test_memfd(0, MFD_ALLOW_SEALING);
  assert_int_equal(ftruncate(fd, (off_t)size), 0);
  assert_int_equal(pwrite(fd, &magic, sizeof magic, 0), (ssize_t)sizeof magic);
  if (seals != 0)
    assert_int_equal(fcntl(fd, F_ADD_SEALS, seals), 0);
  return fd;
}

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

  /* Pages that carry the magic but are not what tb_fence_new makes: not
   * sealed (the import must not seal it either), sealed only against
   * shrinking, or of another size. */
  int unsealed = forged_page(4096, FENCE_MAGIC, 0);
  TB_ASSERT_STATUS(tb_fence_import_fd(&fence, unsealed), TB_ERR_BAD_FD);
  assert_non_null(strstr(tb_last_error(), "not sealed"));
  assert_int_equal(fcntl(unsealed, F_GET_SEALS), 0);
  close(unsealed);
  const int forged[] = {forged_page(4096, FENCE_MAGIC, F_SEAL_SHRINK),
                        forged_page(8192, FENCE_MAGIC, FENCE_SEALS),
                        forged_page(2048, FENCE_MAGIC, FENCE_SEALS),
                        forged_page(4096, ~FENCE_MAGIC, FENCE_SEALS)};
  for (size_t i = 0; i < sizeof forged / sizeof *forged; i++) {
    TB_ASSERT_STATUS(tb_fence_import_fd(&fence, forged[i]), TB_ERR_BAD_FD);
    close(forged[i]);
  }
  /* A tmpfs file that is not a memfd (POSIX shared memory) cannot be sealed. */
  int shm = open("/dev/shm", O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
  if (shm >= 0) {
    const uint64_t magic = FENCE_MAGIC;
    assert_int_equal(ftruncate(shm, 4096), 0);
    assert_int_equal(pwrite(shm, &magic, sizeof magic, 0), 8);
    TB_ASSERT_STATUS(tb_fence_import_fd(&fence, shm), TB_ERR_BAD_FD);
    close(shm);
  }
  /* A huge-page memfd is not on tmpfs. */
  int huge =
      memfd_create("huge", MFD_CLOEXEC | MFD_HUGETLB | MFD_ALLOW_SEALING);
  if (huge >= 0) {
    TB_ASSERT_STATUS(tb_fence_import_fd(&fence, huge), TB_ERR_BAD_FD);
    close(huge);
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

/* A page forged by hand exactly as tb_fence_new makes it is a fence: the
 * checks above refuse what differs, not what a peer wrote. */
static void import_accepts_a_forged_fence_page(void **state) {
  (void)state;
  int fd = forged_page(4096, FENCE_MAGIC, FENCE_SEALS);
  const uint64_t value = 41;
  assert_int_equal(pwrite(fd, &value, sizeof value, 8), 8);
  tb_fence *fence = NULL;
  TB_ASSERT_OK(tb_fence_import_fd(&fence, fd));
  close(fd);
  assert_int_equal(tb_fence_value(fence), 41);
  TB_ASSERT_OK(tb_fence_signal(fence, 42));
  TB_ASSERT_OK(tb_fence_wait(fence, 42, 0));
  tb_fence_unref(fence);
}

/* Finding 11: a dma-buf (which may have no CPU mapping at all) arriving where
 * a fence is expected, by fd or on a channel, is refused before anything
 * reads it. */
static void import_refuses_dma_bufs(void **state) {
  (void)state;
  int fd = tb_test_dma_buf(4096, FENCE_MAGIC);
  if (fd < 0)
    TB_SKIP("no dma-buf can be made in this process (no dma-heap, no "
            "/dev/udmabuf)");
  tb_fence *fence = TB_SENTINEL(tb_fence);
  TB_ASSERT_STATUS(tb_fence_import_fd(&fence, fd), TB_ERR_BAD_FD);
  assert_non_null(strstr(tb_last_error(), "dma-buf"));
  assert_ptr_equal(fence, TB_SENTINEL(tb_fence));
  close(fd);
}

/* Kills the futex waits of the calling process (FUTEX_WAIT_BITSET on shared
 * words, which only fences use) with ENOSYS. */
static void refuse_shared_futex_waits(void) {
  struct sock_filter code[] = {
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_futex, 0, 3),
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS,
               offsetof(struct seccomp_data, args[1])),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, FUTEX_WAIT_BITSET, 0, 1),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | ENOSYS),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
  };
  struct sock_fprog program = {.len = sizeof code / sizeof *code,
                               .filter = code};
  TB_PEER_ASSERT(prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0);
  TB_PEER_ASSERT(prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &program) == 0);
}

/* Child: waits on a fence with the futex refused by the kernel. */
static void wait_without_futex(tb_peer_end *end, void *arg) {
  (void)end;
  tb_fence *fence = arg;
  refuse_shared_futex_waits();
  int64_t start = tb_peer_now_ms();
  TB_PEER_ASSERT_STATUS(tb_fence_wait(fence, 1, 5000 * MS_NS), TB_ERR_SYSTEM);
  TB_PEER_ASSERT(tb_last_errno() == ENOSYS);
  TB_PEER_ASSERT_STATUS(tb_fence_wait(fence, 1, -1), TB_ERR_SYSTEM);
  /* A satisfied wait never sleeps, so it still succeeds. */
  TB_PEER_ASSERT_OK(tb_fence_wait(fence, 0, -1));
  TB_PEER_ASSERT(tb_peer_now_ms() - start < 2500);
}

/* Finding 11: a futex error other than EINTR, EAGAIN and ETIMEDOUT ends the
 * wait with TB_ERR_SYSTEM instead of spinning. */
static void futex_errors_are_system_errors(void **state) {
  (void)state;
  tb_fence *fence = NULL;
  TB_ASSERT_OK(tb_fence_new(&fence, 0));
  tb_peer_end end;
  pid_t child = tb_peer_start(&end, TB_PEER_CHANNEL, wait_without_futex,
                              TB_PEER_CHANNEL, fence);
  tb_peer_join(child);
  tb_peer_end_close(&end);
  tb_fence_unref(fence);
}

static volatile sig_atomic_t alarms;
static void count_alarm(int signum) {
  (void)signum;
  alarms++;
}

/* An interval timer interrupts the futex every millisecond (its handler
 * without SA_RESTART, so the wait sees EINTR): the deadline stays where the
 * call put it. */
static void interrupted_waits_keep_their_deadline(void **state) {
  (void)state;
  tb_fence *fence = NULL;
  TB_ASSERT_OK(tb_fence_new(&fence, 0));
  struct sigaction action = {.sa_handler = count_alarm}, saved;
  sigemptyset(&action.sa_mask);
  assert_int_equal(sigaction(SIGALRM, &action, &saved), 0);
  const struct itimerval every_ms = {{0, 1000}, {0, 1000}}, off = {0};
  alarms = 0;
  assert_int_equal(setitimer(ITIMER_REAL, &every_ms, NULL), 0);
  assert_wait_times_out(fence, 1, 200);
  assert_wait_times_out(fence, 1, 30);
  assert_int_equal(setitimer(ITIMER_REAL, &off, NULL), 0);
  assert_int_equal(sigaction(SIGALRM, &saved, NULL), 0);
  assert_true(alarms >= 20); /* the waits were in fact interrupted */
  tb_fence_unref(fence);
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

  /* A fence where a tensor is expected, and the other way round, waits
   * for its own receiver (issue 9, finding 9): neither takes the other's
   * message, and both stay in the socket (no fd or handle read ahead). */
  TB_ASSERT_OK(tb_channel_send_fence(a, fence));
  TB_ASSERT_STATUS(tb_channel_recv(&tensor, b, 30), TB_ERR_TIMEOUT);
  TB_ASSERT_OK(tb_channel_recv_fence(&received, b, 0));
  tb_fence_unref(received);
  received = TB_SENTINEL(tb_fence);
  const int64_t shape[] = {8};
  tb_tensor *sent = tb_test_arange(TB_DTYPE_U8, 1, shape, TB_MEMORY_SHM);
  TB_ASSERT_OK(tb_channel_send(a, sent, 0));
  TB_ASSERT_STATUS(tb_channel_recv_fence(&received, b, 30), TB_ERR_TIMEOUT);
  assert_ptr_equal(received, TB_SENTINEL(tb_fence));
  TB_ASSERT_OK(tb_channel_recv(&tensor, b, 0));
  tb_tensor_unref(tensor);
  tensor = TB_SENTINEL(tb_tensor);
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
      TB_TEST(import_accepts_a_forged_fence_page),
      TB_TEST(import_refuses_dma_bufs),
      TB_TEST(futex_errors_are_system_errors),
      TB_TEST(interrupted_waits_keep_their_deadline),
      TB_TEST(timeout_zero_only_tests),
      TB_TEST(signal_in_one_process_wakes_the_other),
      TB_TEST(waiter_times_out_when_the_signaller_dies),
      TB_TEST(read_only_import_waits_but_cannot_signal),
      TB_TEST(fences_travel_on_channels),
      TB_TEST(channels_keep_fences_and_tensors_apart),
  };
  return TB_RUN_TESTS(tests);
}
