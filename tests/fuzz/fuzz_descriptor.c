/* libFuzzer target: the wire descriptor parser, through both ways in.
 *
 * An input is one byte choosing the fds that come with the message, then the
 * message itself. Each input is fed to tb_tensor_import and, as a seqpacket
 * message with the fds attached, to tb_channel_recv and then (sent again)
 * to tb_channel_recv_fence. Whatever is accepted is read to its last byte.
 * After each input every handle must be gone and every fd closed again:
 * anything else aborts, so that libFuzzer reports the input.
 *
 * Fd byte: bits 0-1 give how many fds (0-3); bits 2-3, 4-5 and 6-7 the kind
 * of the first, second and third (see fd_kinds).
 *
 * A message that begins with '(' is also read as GVariant text (with type
 * annotations, as g_variant_print writes it), and if it parses, its
 * serialized form goes through the same two ways in: mutations of
 * "[int64 16, 4]" reach the checks behind the normal-form test far more often
 * than flipped bits of the binary form. */
#include "sharing/descriptor.h"
#include "sharing/hello.h"
#include "tensorbuf/channel.h"
#include "tensorbuf/image.h"

#include "fuzz_fds.h"

#include <fcntl.h>
#include <glib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

/* Kinds of fd a message may carry: shared memory of two sizes, a fence,
 * and something that is not shared memory at all. */
enum fd_kind { MEMFD_PAGE, MEMFD_SMALL, FENCE, PIPE };

static int make_fd(enum fd_kind kind) {
  int fd = -1;
  if (kind == PIPE) {
    int ends[2];
    if (pipe2(ends, O_CLOEXEC) != 0)
      abort();
    close(ends[1]);
    fd = ends[0];
  } else if (kind == FENCE) {
    tb_fence *fence = NULL;
    if (tb_fence_new(&fence, 1) != TB_OK ||
        tb_fence_export_fd(&fd, fence) != TB_OK)
      abort();
    tb_fence_unref(fence);
  } else {
    fd = memfd_create("fuzz", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    if (fd < 0 || ftruncate(fd, kind == MEMFD_SMALL ? 16 : 4096) != 0)
      abort();
  }
  return fd;
}

/* Reads every byte an accepted tensor's elements span, worked out here
 * from its public description (in 128 bits, so nothing wraps): a layout the
 * parser let through that the fd does not hold faults here. */
static void touch_elements(tb_tensor *tensor) {
  if (tb_tensor_numel(tensor) == 0)
    return;
  __int128 element = (__int128)tb_dtype_size(tb_tensor_dtype(tensor));
  __int128 low = 0, high = element;
  for (size_t d = 0; d < tb_tensor_ndim(tensor); d++) {
    __int128 reach = (__int128)(tb_tensor_dim(tensor, d) - 1) *
                     tb_tensor_stride(tensor, d) * element;
    if (reach < 0)
      low += reach;
    else
      high += reach;
  }
  tb_map *map = NULL;
  if (tb_tensor_map(&map, tensor, TB_MAP_READ) != TB_OK)
    abort();
  const volatile uint8_t *first = tb_map_data(map);
  uint8_t sum = 0;
  for (__int128 i = low; i < high; i++)
    sum += first[(ptrdiff_t)i];
  (void)sum;
  tb_map_free(map);
}

/* Touches an accepted tensor and, for an image, each of its planes. */
static void read_all(tb_tensor *tensor) {
  touch_elements(tensor);
  for (size_t p = 0; p < tb_image_plane_count(tensor); p++) {
    tb_tensor *plane = NULL;
    if (tb_image_plane(&plane, tensor, p) != TB_OK)
      abort();
    touch_elements(plane);
    tb_tensor_unref(plane);
  }
  tb_tensor_unref(tensor);
}

static void send_message(int socket, const uint8_t *bytes, size_t length,
                         const int *fds, size_t nfds) {
  struct iovec iov = {.iov_base = (void *)bytes, .iov_len = length};
  union {
    struct cmsghdr header;
    char space[CMSG_SPACE(sizeof(int) * 3)];
  } control;
  struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1};
  if (nfds > 0) {
    msg.msg_control = control.space;
    msg.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
    struct cmsghdr *header = CMSG_FIRSTHDR(&msg);
    header->cmsg_level = SOL_SOCKET;
    header->cmsg_type = SCM_RIGHTS;
    header->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
    memcpy(CMSG_DATA(header), fds, sizeof(int) * nfds);
  }
  if (sendmsg(socket, &msg, MSG_NOSIGNAL) != (ssize_t)length)
    abort();
}

/* The channel's way in: the message and its fds arrive on a socket. */
static void receive(const uint8_t *bytes, size_t length, const int *fds,
                    size_t nfds) {
  int pair[2];
  if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, pair) != 0)
    abort();
  tb_channel *channel = NULL;
  if (tb_channel_from_fd(&channel, pair[1]) != TB_OK)
    abort();
  close(pair[1]);
  /* The peer speaks the message's own version, where that is one of ours:
   * every version's parser is reached on this way in too. */
  uint32_t version = 0;
  if (length >= sizeof version)
    memcpy(&version, bytes, sizeof version);
  version = GUINT32_FROM_LE(version);
  /* Version 3 messages have version 2's shape; a version 3 peer would
   * have to send a ring with its hello (the ring's records are fuzzed by
   * test_ring's scribbler). */
  if (version < TB_WIRE_VERSION_MIN || version >= TB_WIRE_VERSION_RING)
    version = TB_WIRE_VERSION_RING - 1;
  const TbHello hello = {.min_version = version, .max_version = version};
  uint8_t hello_bytes[TB_HELLO_WRITE_BYTES];
  send_message(pair[0], hello_bytes, tb_hello_write(&hello, hello_bytes), NULL,
               0);
  send_message(pair[0], bytes, length, fds, nfds);
  send_message(pair[0], bytes, length, fds, nfds);
  tb_tensor *tensor = NULL;
  if (tb_channel_recv(&tensor, channel, 0) == TB_OK)
    read_all(tensor);
  tb_fence *fence = NULL;
  if (tb_channel_recv_fence(&fence, channel, 0) == TB_OK) {
    (void)tb_fence_value(fence);
    tb_fence_unref(fence);
  }
  close(pair[0]);
  tb_channel_unref(channel);
}

/* Both ways in, for one message. */
static void feed(const uint8_t *message, size_t length, const int *fds,
                 size_t nfds) {
  tb_tensor *tensor = NULL;
  if (tb_tensor_import(&tensor, message, length, fds, nfds) == TB_OK)
    read_all(tensor);
  receive(message, length, fds, nfds);
}

/* The message read as GVariant text, fed if it parses. */
static void feed_text(const uint8_t *message, size_t length, const int *fds,
                      size_t nfds) {
  if (length == 0 || message[0] != '(')
    return;
  char *text = g_strndup((const char *)message, length);
  GVariant *parsed = g_variant_parse(NULL, text, NULL, NULL, NULL);
  g_free(text);
  if (parsed == NULL)
    return;
  feed(g_variant_get_data(parsed), g_variant_get_size(parsed), fds, nfds);
  g_variant_unref(parsed);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  /* Longer messages are refused by their length alone; the socket would
   * need a larger buffer to carry them. */
  if (size < 1 || size > 65536 + 2)
    return -1;
  int fds_before = fuzz_open_fds();
  int64_t live_before = tb_live_objects();

  size_t nfds = data[0] & 3;
  int fds[3];
  for (size_t i = 0; i < nfds; i++)
    fds[i] = make_fd((enum fd_kind)((data[0] >> (2 + 2 * i)) & 3));
  const uint8_t *message = data + 1;
  size_t length = size - 1;

  feed(message, length, fds, nfds);
  feed_text(message, length, fds, nfds);

  for (size_t i = 0; i < nfds; i++)
    close(fds[i]);
  if (tb_live_objects() != live_before || fuzz_open_fds() != fds_before) {
    fprintf(stderr, "leak: live handles %lld -> %lld, open fds %d -> %d\n",
            (long long)live_before, (long long)tb_live_objects(), fds_before,
            fuzz_open_fds());
    abort();
  }
  return 0;
}
