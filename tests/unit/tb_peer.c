/* A second process for the tests of sharing (see tb_peer.h). */
#include "tb_peer.h"

#include <dirent.h>
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* Longest a test waits for the other process. */
#define TB_PEER_WAIT_MS 20000
/* Longest a child lives: long after its test has given up on it. */
#define TB_PEER_LIFETIME_S 60

static bool in_child;

bool tb_peer_in_child(void) { return in_child; }

int64_t tb_peer_now_ms(void) {
  struct timespec now;
  clock_gettime(CLOCK_MONOTONIC, &now);
  return (int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000;
}

void tb_peer_fail(const char *file, int line, const char *format, ...) {
  va_list args;
  va_start(args, format);
  char message[1024];
  vsnprintf(message, sizeof message, format, args);
  va_end(args);
  if (in_child) {
    fprintf(stderr, "peer %d: %s:%d: %s\n", (int)getpid(), file, line, message);
    _exit(1);
  }
  print_error("%s\n", message);
  _fail(file, line);
}

void tb_peer_check(bool condition, const char *expr, const char *file,
                   int line) {
  if (!condition)
    tb_peer_fail(file, line, "%s is false", expr);
}

void tb_peer_check_status(tb_status status, tb_status expected,
                          const char *expr, const char *file, int line) {
  if (status != expected)
    tb_peer_fail(file, line, "%s returned %s, expected %s; last error: %s",
                 expr, tb_status_name(status), tb_status_name(expected),
                 status != TB_OK ? tb_last_error() : "");
}

tb_test_snapshot tb_peer_snapshot(void) {
  int count = 0;
  DIR *dir = opendir("/proc/self/fd");
  if (dir == NULL)
    tb_peer_fail(__FILE__, __LINE__, "opendir /proc/self/fd: %s",
                 strerror(errno));
  const struct dirent *entry;
  while ((entry = readdir(dir)) != NULL)
    if (entry->d_name[0] != '.')
      count++;
  closedir(dir);
  return (tb_test_snapshot){tb_live_objects(), count - 1 /* dir itself */};
}

static void make_end(tb_peer_end *end, tb_peer_kind kind, int socket,
                     int control) {
  end->control = control;
  end->channel = NULL;
  end->socket = -1;
  if (kind == TB_PEER_RAW) {
    end->socket = socket;
    return;
  }
  tb_status status = tb_channel_from_fd(&end->channel, socket);
  close(socket);
  if (status != TB_OK)
    tb_peer_fail(__FILE__, __LINE__, "tb_channel_from_fd: %s", tb_last_error());
}

void tb_peer_end_close(tb_peer_end *end) {
  tb_channel_unref(end->channel);
  end->channel = NULL;
  if (end->socket >= 0)
    close(end->socket);
  end->socket = -1;
  if (end->control >= 0)
    close(end->control);
  end->control = -1;
}

static void run_child(tb_peer_body body, tb_peer_kind kind, int socket,
                      int control, void *arg) {
  in_child = true;
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  alarm(TB_PEER_LIFETIME_S);
  /* Counted around the whole end, whose channel keeps what it received
   * cached until it is closed; closing it closes the two sockets. */
  tb_test_snapshot start = tb_peer_snapshot();
  tb_peer_end end;
  make_end(&end, kind, socket, control);
  body(&end, arg);
  tb_peer_end_close(&end);
  tb_test_snapshot finish = tb_peer_snapshot();
  finish.open_fds += 2;
  if (finish.live_objects != start.live_objects ||
      finish.open_fds != start.open_fds)
    tb_peer_fail(__FILE__, __LINE__,
                 "leak in the child: live handles %lld -> %lld, open fds "
                 "(its two sockets aside) %d -> %d",
                 (long long)start.live_objects, (long long)finish.live_objects,
                 start.open_fds, finish.open_fds);
  _exit(0);
}

pid_t tb_peer_start(tb_peer_end *parent_end, tb_peer_kind parent_kind,
                    tb_peer_body child_body, tb_peer_kind child_kind,
                    void *arg) {
  int sockets[2], controls[2];
  assert_int_equal(
      socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sockets), 0);
  assert_int_equal(
      socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, controls), 0);
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    close(sockets[0]);
    close(controls[0]);
    run_child(child_body, child_kind, sockets[1], controls[1], arg);
  }
  close(sockets[1]);
  close(controls[1]);
  make_end(parent_end, parent_kind, sockets[0], controls[0]);
  return pid;
}

int tb_peer_reap(pid_t pid) {
  int64_t deadline = tb_peer_now_ms() + TB_PEER_WAIT_MS;
  int status;
  pid_t done;
  while ((done = waitpid(pid, &status, WNOHANG)) == 0 &&
         tb_peer_now_ms() < deadline)
    usleep(1000);
  if (done == 0) {
    kill(pid, SIGKILL);
    waitpid(pid, &status, 0);
    tb_peer_fail(__FILE__, __LINE__, "child %d still ran after %d ms", (int)pid,
                 TB_PEER_WAIT_MS);
  }
  assert_int_equal(done, pid);
  return status;
}

void tb_peer_join(pid_t pid) {
  int status = tb_peer_reap(pid);
  if (WIFSIGNALED(status))
    tb_peer_fail(__FILE__, __LINE__, "child %d died of signal %d (%s)",
                 (int)pid, WTERMSIG(status), strsignal(WTERMSIG(status)));
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
    tb_peer_fail(__FILE__, __LINE__,
                 "child %d exited with status %d (its reason is above)",
                 (int)pid, WEXITSTATUS(status));
}

void tb_peer_send_step(const tb_peer_end *end, int step) {
  unsigned char byte = (unsigned char)step;
  if (send(end->control, &byte, 1, MSG_NOSIGNAL) != 1)
    tb_peer_fail(__FILE__, __LINE__, "sending step %d: %s", step,
                 strerror(errno));
}

void tb_peer_expect_step(const tb_peer_end *end, int step) {
  struct pollfd ready = {.fd = end->control, .events = POLLIN};
  if (poll(&ready, 1, TB_PEER_WAIT_MS) != 1)
    tb_peer_fail(__FILE__, __LINE__, "no step %d within %d ms", step,
                 TB_PEER_WAIT_MS);
  unsigned char byte;
  ssize_t got = recv(end->control, &byte, 1, 0);
  if (got != 1)
    tb_peer_fail(__FILE__, __LINE__,
                 "waiting for step %d, the other process %s", step,
                 got == 0 ? "ended" : strerror(errno));
  if (byte != (unsigned char)step)
    tb_peer_fail(__FILE__, __LINE__, "expected step %d, got step %d", step,
                 byte);
}
