/* Writes the fuzzer's seed corpus into the directory given: real messages,
 * made by the library at build time so that they always match the wire
 * format. Each file is the fd byte of fuzz_descriptor.c (0x00: no fd; 0x01:
 * one 4096-byte memfd; 0x02: two; 0x09: one fence) followed by a message:
 * descriptions from tb_tensor_export, and what tb_channel_send,
 * tb_channel_send_fence and a receiver's release put on the socket; each
 * also as GVariant text. */
#include "sharing/descriptor.h" /* the wire format, to print messages as text */
#include "sharing/hello.h"
#include "tensorbuf/channel.h"
#include "tensorbuf/pool.h"

#include <glib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

static const char *directory;
static int written;

static void check(tb_status status, const char *what) {
  if (status != TB_OK) {
    fprintf(stderr, "make_seeds: %s: %s\n", what, tb_last_error());
    exit(1);
  }
}

static void write_file(const char *name, uint8_t fd_byte, const uint8_t *bytes,
                       size_t length) {
  g_autofree uint8_t *seed = g_malloc(length + 1);
  seed[0] = fd_byte;
  memcpy(seed + 1, bytes, length);
  g_autofree char *path = g_build_filename(directory, name, NULL);
  GError *error = NULL;
  if (!g_file_set_contents(path, (const char *)seed, (gssize)length + 1,
                           &error)) {
    fprintf(stderr, "make_seeds: %s\n", error->message);
    exit(1);
  }
  written++;
}

/* Writes the message as it is, and as GVariant text (name.txt), the form
 * fuzz_descriptor also reads. */
static void write_seed(const char *name, uint8_t fd_byte, const uint8_t *bytes,
                       size_t length) {
  write_file(name, fd_byte, bytes, length);
  TbWireKind kind;
  GError *error = NULL;
  g_autoptr(GVariant) message = tb_wire_open(bytes, length, 0, &kind, &error);
  if (message == NULL) {
    fprintf(stderr, "make_seeds: %s: %s\n", name, error->message);
    exit(1);
  }
  g_autofree char *text = g_variant_print(message, TRUE);
  g_autofree char *text_name = g_strconcat(name, ".txt", NULL);
  write_file(text_name, fd_byte, (const uint8_t *)text, strlen(text));
}

/* Reads the next message off a raw socket into a seed with `fd_byte`
 * (closing the fds, whose count must be what the byte says). */
static void capture(int socket, const char *name, uint8_t fd_byte) {
  static uint8_t bytes[65536];
  union {
    struct cmsghdr header;
    char space[CMSG_SPACE(sizeof(int) * 8)];
  } control;
  struct iovec iov = {.iov_base = bytes, .iov_len = sizeof bytes};
  struct msghdr msg = {.msg_iov = &iov,
                       .msg_iovlen = 1,
                       .msg_control = control.space,
                       .msg_controllen = sizeof control.space};
  ssize_t length = recvmsg(socket, &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
  if (length <= 0) {
    fprintf(stderr, "make_seeds: no message for %s\n", name);
    exit(1);
  }
  unsigned nfds = 0;
  for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c != NULL;
       c = CMSG_NXTHDR(&msg, c))
    for (size_t i = 0; i < (c->cmsg_len - CMSG_LEN(0)) / sizeof(int); i++) {
      int fd;
      memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof fd);
      close(fd);
      nfds++;
    }
  if (nfds != (fd_byte & 3u)) {
    fprintf(stderr, "make_seeds: %s came with %u fds\n", name, nfds);
    exit(1);
  }
  write_seed(name, fd_byte, bytes, (size_t)length);
}

static tb_tensor *shm_tensor(tb_dtype dtype, size_t ndim,
                             const int64_t *shape) {
  tb_alloc_options opts = TB_ALLOC_OPTIONS_INIT;
  opts.memory = TB_MEMORY_SHM;
  tb_tensor *tensor = NULL;
  check(tb_tensor_new(&tensor, dtype, ndim, shape, &opts), "tb_tensor_new");
  return tensor;
}

static void export_seed(const char *name, const tb_tensor *tensor,
                        uint32_t flags) {
  uint8_t bytes[4096];
  size_t length = 0, nfds = TB_DESCRIPTOR_MAX_FDS; /* fds' capacity */
  int fds[TB_DESCRIPTOR_MAX_FDS];
  check(
      tb_tensor_export(bytes, sizeof bytes, &length, fds, &nfds, tensor, flags),
      name);
  for (size_t i = 0; i < nfds; i++)
    close(fds[i]);
  write_seed(name, (uint8_t)nfds, bytes, length);
}

/* Descriptions of tensors that fit the fuzzer's 4096-byte memfd. */
static void export_seeds(void) {
  const int64_t matrix[] = {16, 4}, grid[] = {6, 8}, empty[] = {3, 0, 2},
                row[] = {10};
  tb_tensor *plain = shm_tensor(TB_DTYPE_U8, 2, matrix);
  export_seed("u8-16x4", plain, 0);
  export_seed("u8-16x4-read-only", plain, TB_SEND_READ_ONLY);
  tb_tensor_unref(plain);

  tb_tensor *base = shm_tensor(TB_DTYPE_I16, 2, grid), *view = NULL;
  check(tb_tensor_slice(&view, base, 1, 1, 8, 2), "tb_tensor_slice");
  check(tb_tensor_set_name(view, "sliced"), "tb_tensor_set_name");
  const double scales[] = {0.5, 0.25, 0.125, 2.0};
  const int64_t zero_points[] = {-3, 0, 7, 9};
  check(tb_tensor_set_quantization(view, 1, 4, scales, zero_points),
        "tb_tensor_set_quantization");
  export_seed("i16-sliced-per-axis", view, 0);
  tb_tensor_unref(view);
  tb_tensor_unref(base);

  tb_tensor *quantized = shm_tensor(TB_DTYPE_U8, 1, row);
  const double scale = 0.1;
  const int64_t zero_point = 128;
  check(tb_tensor_set_quantization(quantized, -1, 1, &scale, &zero_point),
        "tb_tensor_set_quantization");
  export_seed("u8-per-tensor", quantized, 0);
  tb_tensor_unref(quantized);

  tb_alloc_options opts = TB_ALLOC_OPTIONS_INIT;
  opts.memory = TB_MEMORY_SHM;
  tb_tensor *image = NULL;
  check(tb_image_new(&image, 5, 3, TB_PIXEL_FORMAT_NV12, TB_DTYPE_U8, &opts),
        "tb_image_new");
  export_seed("nv12-one-buffer", image, 0);
  tb_tensor_unref(image);
  /* Planes from two memfds, as V4L2 multi-planar capture gives them. */
  const int fds[] = {memfd_create("luma", MFD_CLOEXEC | MFD_ALLOW_SEALING),
                     memfd_create("chroma", MFD_CLOEXEC | MFD_ALLOW_SEALING)};
  if (fds[0] < 0 || fds[1] < 0 || ftruncate(fds[0], 32) != 0 ||
      ftruncate(fds[1], 4) != 0)
    abort();
  const uint64_t offsets[] = {16, 0}, pitches[] = {8, 4};
  check(tb_image_import(&image, 4, 2, TB_PIXEL_FORMAT_NV12, 2, fds, offsets,
                        pitches),
        "tb_image_import");
  close(fds[0]);
  close(fds[1]);
  export_seed("nv12-two-fds", image, 0);
  tb_tensor_unref(image);

  tb_tensor *scalar = shm_tensor(TB_DTYPE_F64, 0, NULL);
  export_seed("f64-scalar", scalar, 0);
  tb_tensor_unref(scalar);
  tb_tensor *nothing = shm_tensor(TB_DTYPE_F32, 3, empty);
  export_seed("f32-empty", nothing, 0);
  tb_tensor_unref(nothing);
}

/* Plays the peer's side of the hello on a raw socket whose other end a
 * channel adopted: takes the channel's hello off and sends ours. */
static void greet(int raw) {
  uint8_t bytes[TB_HELLO_MAX_BYTES];
  if (recv(raw, bytes, sizeof bytes, MSG_DONTWAIT) <= 0)
    abort();
  /* The newest version without rings: every message goes on the socket,
   * where the seeds are read from. */
  const TbHello hello = {.min_version = TB_WIRE_VERSION_MIN,
                         .max_version = TB_WIRE_VERSION_RING - 1};
  size_t length = tb_hello_write(&hello, bytes);
  if (send(raw, bytes, length, MSG_NOSIGNAL) != (ssize_t)length)
    abort();
}

/* Acknowledges, as a receiver would, the import of the buffers of the
 * tensor message in seed `name`, on a raw socket; the ack is seed
 * "channel-ack" (the seeds' channels speak version 2, without acks). */
static void acknowledge(int raw, const char *name) {
  g_autofree char *path = g_build_filename(directory, name, NULL);
  g_autofree char *seed = NULL;
  gsize length = 0;
  if (!g_file_get_contents(path, &seed, &length, NULL))
    abort();
  TbWireKind kind;
  g_autoptr(GVariant) message =
      tb_wire_open((const uint8_t *)seed + 1, length - 1, 0, &kind, NULL);
  g_autoptr(GVariant) buffers = g_variant_get_child_value(message, 2);
  g_autoptr(GVariant) first = g_variant_get_child_value(buffers, 0);
  g_autoptr(GVariant) id = g_variant_get_child_value(first, 1);
  const TbWireAck ack = {g_variant_get_uint64(id), {0, 4096}};
  g_autoptr(GVariant) reply = g_variant_ref_sink(
      tb_wire_ack(TB_WIRE_VERSION_MAX, tb_wire_import_serial(message), &ack, 1));
  if (send(raw, g_variant_get_data(reply), g_variant_get_size(reply),
           MSG_NOSIGNAL) != (ssize_t)g_variant_get_size(reply))
    abort();
  write_seed("channel-ack", 0x00, g_variant_get_data(reply),
             g_variant_get_size(reply));
}

/* What channels put on the socket: a pooled tensor (with its lease and the
 * ids to forget), the same buffer again once the receiver acknowledged it
 * (no fd), a fence, and the ack and release a receiver sends back. */
static void channel_seeds(void) {
  int sender_pair[2], receiver_pair[2];
  if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sender_pair) != 0 ||
      socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, receiver_pair) != 0)
    abort();
  tb_channel *sender = NULL, *receiver = NULL;
  check(tb_channel_from_fd(&sender, sender_pair[0]), "tb_channel_from_fd");
  check(tb_channel_from_fd(&receiver, receiver_pair[1]), "tb_channel_from_fd");
  greet(sender_pair[1]);
  greet(receiver_pair[0]);

  const int64_t shape[] = {8, 8};
  tb_tensor *prototype = shm_tensor(TB_DTYPE_F32, 2, shape);
  tb_pool *pool = NULL;
  check(tb_pool_new(&pool, prototype, 1), "tb_pool_new");
  tb_tensor_unref(prototype);
  tb_tensor *frame = NULL;
  check(tb_pool_acquire(&frame, pool, 0), "tb_pool_acquire");
  check(tb_channel_send(sender, frame, 0), "tb_channel_send");
  capture(sender_pair[1], "channel-pooled", 0x01);
  acknowledge(sender_pair[1], "channel-pooled");
  check(tb_channel_send(sender, frame, 0), "tb_channel_send");
  capture(sender_pair[1], "channel-cached", 0x00);
  tb_tensor_unref(frame);

  tb_fence *fence = NULL;
  check(tb_fence_new(&fence, 3), "tb_fence_new");
  check(tb_channel_send_fence(sender, fence), "tb_channel_send_fence");
  capture(sender_pair[1], "channel-fence", 0x09);
  tb_fence_unref(fence);

  /* Replay the pooled message to a receiver, whose drop writes a release. */
  g_autofree char *pooled_path =
      g_build_filename(directory, "channel-pooled", NULL);
  g_autofree char *pooled = NULL;
  gsize pooled_length = 0;
  if (!g_file_get_contents(pooled_path, &pooled, &pooled_length, NULL))
    abort();
  tb_alloc_options opts = TB_ALLOC_OPTIONS_INIT;
  opts.memory = TB_MEMORY_SHM;
  tb_buffer *memory = NULL;
  check(tb_buffer_new(&memory, 4096, &opts), "tb_buffer_new");
  tb_tensor *bytes = NULL;
  const int64_t page[] = {4096};
  check(tb_tensor_from_buffer(&bytes, memory, 0, TB_DTYPE_U8, 1, page, NULL),
        "tb_tensor_from_buffer");
  int fd = -1;
  check(tb_tensor_export_fd(&fd, bytes), "tb_tensor_export_fd");
  union {
    struct cmsghdr header;
    char space[CMSG_SPACE(sizeof(int))];
  } control;
  struct iovec iov = {.iov_base = pooled + 1, .iov_len = pooled_length - 1};
  struct msghdr msg = {.msg_iov = &iov,
                       .msg_iovlen = 1,
                       .msg_control = control.space,
                       .msg_controllen = sizeof control.space};
  struct cmsghdr *header = CMSG_FIRSTHDR(&msg);
  header->cmsg_level = SOL_SOCKET;
  header->cmsg_type = SCM_RIGHTS;
  header->cmsg_len = CMSG_LEN(sizeof(int));
  memcpy(CMSG_DATA(header), &fd, sizeof fd);
  if (sendmsg(receiver_pair[0], &msg, 0) != (ssize_t)iov.iov_len)
    abort();
  close(fd);
  tb_tensor *received = NULL;
  check(tb_channel_recv(&received, receiver, 1000), "tb_channel_recv");
  tb_tensor_unref(received);
  capture(receiver_pair[0], "channel-release", 0x00);

  tb_tensor_unref(bytes);
  tb_buffer_unref(memory);
  tb_channel_unref(sender);
  tb_channel_unref(receiver);
  tb_pool_unref(pool);
  for (int i = 0; i < 2; i++) {
    close(sender_pair[i]);
    close(receiver_pair[i]);
  }
}

int main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: make_seeds DIRECTORY\n");
    return 2;
  }
  directory = argv[1];
  if (g_mkdir_with_parents(directory, 0755) != 0) {
    perror(directory);
    return 1;
  }
  export_seeds();
  channel_seeds();
  if (tb_live_objects() != 0) {
    fprintf(stderr, "make_seeds: %lld handles left\n",
            (long long)tb_live_objects());
    return 1;
  }
  printf("make_seeds: %d seeds in %s\n", written, directory);
  return 0;
}
