/* Messages with at most one fd (SCM_RIGHTS) on a Unix SOCK_SEQPACKET socket,
 * for the GPU programs that hand fds over by hand (tests/gpu/cuda_channel.c,
 * bench/gpu/cuda_handoff.c). */
#ifndef TB_GPU_SOCKET_H
#define TB_GPU_SOCKET_H

#include <string.h>
#include <sys/socket.h>
#include <sys/types.h>

/* Sends `length` bytes, with `fd` attached when it is >= 0. Returns what
 * sendmsg returns. */
static inline ssize_t gpu_send_fd(int sock, const void *bytes, size_t length,
                                  int fd) {
  struct iovec iov = {(void *)bytes, length};
  char control[CMSG_SPACE(sizeof(int))];
  memset(control, 0, sizeof control);
  struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1};
  if (fd >= 0) {
    msg.msg_control = control;
    msg.msg_controllen = sizeof control;
    struct cmsghdr *cmsg = CMSG_FIRSTHDR(&msg);
    cmsg->cmsg_level = SOL_SOCKET;
    cmsg->cmsg_type = SCM_RIGHTS;
    cmsg->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(cmsg), &fd, sizeof fd);
  }
  return sendmsg(sock, &msg, MSG_NOSIGNAL);
}

/* Receives one message of at most `capacity` bytes and its fd (*fd: -1 when
 * none; close-on-exec). Returns its length, or -1 (also for a message
 * whose fds did not fit). */
static inline ssize_t gpu_recv_fd(int sock, void *bytes, size_t capacity,
                                  int *fd) {
  struct iovec iov = {bytes, capacity};
  char control[CMSG_SPACE(sizeof(int))];
  struct msghdr msg = {.msg_iov = &iov,
                       .msg_iovlen = 1,
                       .msg_control = control,
                       .msg_controllen = sizeof control};
  *fd = -1;
  ssize_t got = recvmsg(sock, &msg, MSG_CMSG_CLOEXEC);
  struct cmsghdr *cmsg = CMSG_FIRSTHDR(&msg);
  if (got >= 0 && cmsg != NULL && cmsg->cmsg_level == SOL_SOCKET &&
      cmsg->cmsg_type == SCM_RIGHTS && cmsg->cmsg_len == CMSG_LEN(sizeof(int)))
    memcpy(fd, CMSG_DATA(cmsg), sizeof *fd);
  return (msg.msg_flags & MSG_CTRUNC) ? -1 : got;
}

#endif
