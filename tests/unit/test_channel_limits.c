/* Bounded receivers (issue 9, findings 3 and 4): each side of a channel
 * states in its hello how many buffers and mapped bytes it keeps of its
 * peer's; a tensorbuf sender keeps within them by telling the peer what to
 * forget, a sender that does not is refused, and a receive that failed
 * (out of fds) poisons nothing: the next send of the buffer carries its fd
 * again, because the receiver acknowledges every import. */
#include "tb_forge.h"
#include "tb_peer.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#define PATIENCE_MS 10000

static uint64_t page(void) { return (uint64_t)sysconf(_SC_PAGESIZE); }

static tb_channel_options limits(uint32_t max_buffers,
                                 uint64_t max_mapped_bytes) {
  tb_channel_options opts;
  TB_ASSERT_OK(tb_channel_options_init(&opts, TB_CHANNEL_OPTIONS_VERSION));
  opts.max_buffers = max_buffers;
  opts.max_mapped_bytes = max_mapped_bytes;
  return opts;
}

/* A u8 tensor of `bytes` bytes in new shared memory, filled with `value`. */
static tb_tensor *shm_tensor(int64_t bytes, uint8_t value) {
  tb_alloc_options opts = TB_ALLOC_OPTIONS_INIT;
  opts.memory = TB_MEMORY_SHM;
  tb_tensor *tensor = NULL;
  TB_ASSERT_OK(tb_tensor_new(&tensor, TB_DTYPE_U8, 1, &bytes, &opts));
  tb_map *map = NULL;
  TB_ASSERT_OK(tb_tensor_map(&map, tensor, TB_MAP_WRITE));
  memset(tb_map_data(map), value, (size_t)bytes);
  tb_map_free(map);
  return tensor;
}

static uint8_t first_byte(tb_tensor *tensor) {
  const int64_t index[] = {0};
  int64_t value = -1;
  TB_ASSERT_OK(tb_tensor_get_i64(&value, tensor, 1, index));
  return (uint8_t)value;
}

/* ---- limits stated and agreed ------------------------------------------ */

/* Defaults, and each side's own limits and the peer's as agreed. */
static void limits_are_stated_in_the_hello(void **state) {
  (void)state;
  tb_channel_options opts;
  TB_ASSERT_OK(tb_channel_options_init(&opts, 1));
  assert_int_equal(opts.version, 1);
  assert_int_equal(opts.max_buffers, TB_CHANNEL_DEFAULT_MAX_BUFFERS);
  assert_int_equal(opts.max_mapped_bytes, TB_CHANNEL_DEFAULT_MAX_MAPPED_BYTES);
  assert_int_equal(TB_CHANNEL_DEFAULT_MAX_BUFFERS, 1024);
  assert_true(TB_CHANNEL_DEFAULT_MAX_MAPPED_BYTES == (UINT64_C(8) << 30));

  int pair[2];
  assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, pair),
                   0);
  const tb_channel_options small = limits(5, 16 * page());
  tb_channel *a = NULL, *b = NULL;
  TB_ASSERT_OK(tb_channel_from_fd_with(&a, pair[0], &small));
  TB_ASSERT_OK(tb_channel_from_fd_with(&b, pair[1], NULL));
  close(pair[0]);
  close(pair[1]);
  uint32_t own_buffers = 0, peer_buffers = 0, version = 0;
  uint64_t own_bytes = 0, peer_bytes = 0;
  TB_ASSERT_OK(
      tb_channel_limits(a, &own_buffers, &own_bytes, &peer_buffers, &peer_bytes));
  assert_int_equal(own_buffers, 5);
  assert_int_equal(own_bytes, 16 * page());
  assert_int_equal(peer_buffers, TB_CHANNEL_DEFAULT_MAX_BUFFERS);
  assert_true(peer_bytes == TB_CHANNEL_DEFAULT_MAX_MAPPED_BYTES);
  TB_ASSERT_OK(tb_channel_limits(b, &own_buffers, NULL, &peer_buffers, NULL));
  assert_int_equal(own_buffers, TB_CHANNEL_DEFAULT_MAX_BUFFERS);
  assert_int_equal(peer_buffers, 5);
  TB_ASSERT_OK(tb_channel_version(a, &version));
  assert_int_equal(version, 3);
  TB_ASSERT_STATUS(tb_channel_limits(NULL, NULL, NULL, NULL, NULL),
                   TB_ERR_INVALID_ARGUMENT);
  TB_ASSERT_STATUS(tb_channel_version(NULL, &version),
                   TB_ERR_INVALID_ARGUMENT);
  tb_channel_unref(a);
  tb_channel_unref(b);
}

/* Options refused, each naming what is wrong; nothing is made. */
static void bad_options_are_refused(void **state) {
  (void)state;
  tb_channel_options opts;
  TB_ASSERT_STATUS(tb_channel_options_init(&opts, 0), TB_ERR_VERSION);
  TB_ASSERT_STATUS(tb_channel_options_init(&opts, 2), TB_ERR_VERSION);
  TB_ASSERT_STATUS(tb_channel_options_init(NULL, 1), TB_ERR_INVALID_ARGUMENT);
  const struct {
    uint32_t version, max_buffers;
    uint64_t max_mapped_bytes;
    tb_status expected;
    const char *names;
  } bad[] = {
      {2, 8, 1 << 20, TB_ERR_VERSION, "version"},
      {0, 8, 1 << 20, TB_ERR_VERSION, "version"},
      {1, 0, 1 << 20, TB_ERR_INVALID_ARGUMENT, "max_buffers"},
      {1, (1u << 20) + 1, 1 << 20, TB_ERR_INVALID_ARGUMENT, "max_buffers"},
      {1, 8, 0, TB_ERR_INVALID_ARGUMENT, "max_mapped_bytes"},
      {1, 8, 4095, TB_ERR_INVALID_ARGUMENT, "max_mapped_bytes"},
      {1, 8, UINT64_C(1) << 48, TB_ERR_INVALID_ARGUMENT, "max_mapped_bytes"},
      {1, 8, UINT64_MAX, TB_ERR_INVALID_ARGUMENT, "max_mapped_bytes"},
  };
  int pair[2];
  assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, pair),
                   0);
  for (size_t i = 0; i < G_N_ELEMENTS(bad); i++) {
    opts = limits(bad[i].max_buffers, bad[i].max_mapped_bytes);
    opts.version = bad[i].version;
    tb_channel *a = TB_SENTINEL(tb_channel), *b = TB_SENTINEL(tb_channel);
    TB_ASSERT_STATUS(tb_channel_pair_with(&a, &b, &opts), bad[i].expected);
    assert_non_null(strstr(tb_last_error(), "opts->"));
    assert_non_null(strstr(tb_last_error(), bad[i].names));
    TB_ASSERT_STATUS(tb_channel_from_fd_with(&a, pair[0], &opts),
                     bad[i].expected);
    TB_ASSERT_STATUS(tb_channel_connect_with(&a, "@tb-no-such", 0, &opts),
                     bad[i].expected);
    assert_ptr_equal(a, TB_SENTINEL(tb_channel));
    assert_ptr_equal(b, TB_SENTINEL(tb_channel));
    tb_listener_options listener_opts;
    TB_ASSERT_OK(tb_listener_options_init(&listener_opts,
                                          TB_LISTENER_OPTIONS_VERSION));
    listener_opts.channel_options = &opts;
    tb_listener *listener = TB_SENTINEL(tb_listener);
    TB_ASSERT_STATUS(
        tb_listener_listen_with(&listener, "@tb-limits", &listener_opts),
        bad[i].expected);
    assert_non_null(strstr(tb_last_error(), "opts->channel_options->"));
    assert_ptr_equal(listener, TB_SENTINEL(tb_listener));
  }
  close(pair[0]);
  close(pair[1]);
  /* Version 1 of the listener options has no channel options: the field
   * is not read. */
  tb_listener_options v1;
  TB_ASSERT_OK(tb_listener_options_init(&v1, 1));
  assert_int_equal(v1.version, 1);
}

/* An accepted channel states the listener's channel options. */
static void accepted_channels_take_the_listeners_options(void **state) {
  (void)state;
  const tb_channel_options small = limits(7, 32 * page());
  tb_listener_options opts;
  TB_ASSERT_OK(tb_listener_options_init(&opts, TB_LISTENER_OPTIONS_VERSION));
  opts.channel_options = &small;
  char name[64];
  snprintf(name, sizeof name, "@tb-limits-%d", (int)getpid());
  tb_listener *listener = NULL;
  TB_ASSERT_OK(tb_listener_listen_with(&listener, name, &opts));
  tb_channel *dialed = NULL, *accepted = NULL;
  TB_ASSERT_OK(tb_channel_connect(&dialed, name, PATIENCE_MS));
  TB_ASSERT_OK(tb_listener_accept(&accepted, listener, PATIENCE_MS));
  uint32_t own = 0, peer = 0;
  uint64_t own_bytes = 0;
  TB_ASSERT_OK(tb_channel_limits(accepted, &own, &own_bytes, &peer, NULL));
  assert_int_equal(own, 7);
  assert_int_equal(own_bytes, 32 * page());
  assert_int_equal(peer, TB_CHANNEL_DEFAULT_MAX_BUFFERS);
  TB_ASSERT_OK(tb_channel_limits(dialed, NULL, NULL, &peer, NULL));
  assert_int_equal(peer, 7);
  tb_channel_unref(dialed);
  tb_channel_unref(accepted);
  tb_listener_free(listener);
}

/* ---- a tensorbuf sender keeps within the peer's limits ----------------- */

#define MANY 2000
#define FEW 100

/* The child: sends MANY distinct tensors and keeps every one alive, so
 * that no buffer dies and nothing is forgotten for that reason. */
static void send_many(tb_peer_end *end, void *arg) {
  (void)arg;
  tb_tensor **kept = g_new0(tb_tensor *, MANY);
  for (size_t i = 0; i < MANY; i++) {
    kept[i] = shm_tensor(64, (uint8_t)i);
    TB_PEER_ASSERT_OK(tb_channel_send(end->channel, kept[i], 0));
  }
  tb_peer_expect_step(end, 1);
  for (size_t i = 0; i < MANY; i++)
    tb_tensor_unref(kept[i]);
  g_free(kept);
}

/* Finding 3: 2,000 distinct tensors from a sender that never forgets
 * explicitly; the receiver keeps FEW buffers, and its fds and live handles
 * never grow past that while every tensor arrives intact. */
static void a_sender_keeps_within_the_receivers_limits(void **state) {
  (void)state;
  tb_peer_end end;
  pid_t child = tb_peer_start(&end, TB_PEER_RAW, send_many, TB_PEER_CHANNEL,
                              NULL);
  const tb_channel_options opts = limits(FEW, 1 << 20);
  tb_channel *receiver = NULL;
  tb_test_snapshot before = tb_test_take_snapshot();
  TB_ASSERT_OK(tb_channel_from_fd_with(&receiver, end.socket, &opts));
  int most_fds = 0;
  int64_t most_live = 0;
  for (size_t i = 0; i < MANY; i++) {
    tb_tensor *tensor = NULL;
    TB_ASSERT_OK(tb_channel_recv(&tensor, receiver, PATIENCE_MS));
    assert_int_equal(first_byte(tensor), (uint8_t)i);
    tb_tensor_unref(tensor);
    if (i % 50 == 49) {
      tb_test_snapshot now = tb_test_take_snapshot();
      most_fds = MAX(most_fds, now.open_fds - before.open_fds);
      most_live = MAX(most_live, now.live_objects - before.live_objects);
    }
  }
  printf("%d tensors received with a limit of %d buffers: at most %d more "
         "fds and %lld more live handles\n",
         MANY, FEW, most_fds, (long long)most_live);
  /* The channel's own fd and handle, and its cached buffers. */
  assert_true(most_fds <= FEW + 1);
  assert_true(most_live <= FEW + 1);
  assert_true(most_fds >= FEW / 2); /* it did cache: a bound, not a leak */
  tb_peer_send_step(&end, 1);
  tb_peer_join(child);
  tb_channel_unref(receiver);
  tb_peer_end_close(&end);
}

/* A tensor alone over the peer's limits cannot be sent. */
static void a_tensor_over_the_peers_limits_is_refused(void **state) {
  (void)state;
  const tb_channel_options opts = limits(4, 2 * page());
  tb_channel *a = NULL, *b = NULL;
  TB_ASSERT_OK(tb_channel_pair_with(&a, &b, &opts));
  tb_tensor *big = shm_tensor((int64_t)(3 * page()), 1);
  TB_ASSERT_STATUS(tb_channel_send(a, big, 0), TB_ERR_OUT_OF_RANGE);
  assert_non_null(strstr(tb_last_error(), "limits"));
  tb_tensor *fits = shm_tensor((int64_t)page(), 2);
  TB_ASSERT_OK(tb_channel_send(a, fits, 0));
  tb_tensor *received = NULL;
  TB_ASSERT_OK(tb_channel_recv(&received, b, PATIENCE_MS));
  assert_int_equal(first_byte(received), 2);
  tb_tensor_unref(received);
  tb_tensor_unref(fits);
  tb_tensor_unref(big);
  tb_channel_unref(a);
  tb_channel_unref(b);
}

/* A forgotten buffer stays mapped while a received tensor uses it. */
static void a_forgotten_buffer_lives_on_in_its_tensors(void **state) {
  (void)state;
  const tb_channel_options opts = limits(1, 1 << 20);
  tb_channel *a = NULL, *b = NULL;
  TB_ASSERT_OK(tb_channel_pair_with(&a, &b, &opts));
  tb_tensor *first = shm_tensor(64, 7), *second = shm_tensor(64, 8);
  tb_tensor *got_first = NULL, *got_second = NULL;
  TB_ASSERT_OK(tb_channel_send(a, first, 0));
  TB_ASSERT_OK(tb_channel_recv(&got_first, b, PATIENCE_MS));
  TB_ASSERT_OK(tb_channel_send(a, second, 0)); /* forgets the first */
  TB_ASSERT_OK(tb_channel_recv(&got_second, b, PATIENCE_MS));
  assert_int_equal(first_byte(got_first), 7);
  assert_int_equal(first_byte(got_second), 8);
  /* And the first again: its fd goes again. */
  tb_tensor_unref(got_first);
  TB_ASSERT_OK(tb_channel_send(a, first, 0));
  TB_ASSERT_OK(tb_channel_recv(&got_first, b, PATIENCE_MS));
  assert_int_equal(first_byte(got_first), 7);
  tb_tensor_unref(got_first);
  tb_tensor_unref(got_second);
  tb_tensor_unref(first);
  tb_tensor_unref(second);
  tb_channel_unref(a);
  tb_channel_unref(b);
}

/* ---- a sender that ignores them is refused ----------------------------- */

/* A forged tensor message in buffer `id` with its fd. */
static void send_forged(int raw, uint64_t id, uint64_t fd_bytes) {
  char buffers[64];
  snprintf(buffers, sizeof buffers, "[(int32 0, uint64 %llu)]",
           (unsigned long long)id);
  const tb_forge_edit edit = {TB_FORGE_BUFFERS, buffers};
  g_autoptr(GBytes) message = tb_forge_tensor(&edit, 1);
  int fd = tb_forge_memfd(fd_bytes, MFD_ALLOW_SEALING);
  tb_forge_send_bytes(raw, message, &fd, 1);
  close(fd);
}

/* A hostile sender past the limits this side stated: TB_ERR_PROTOCOL, the
 * channel closed for good (the peer sees it closed), nothing leaked. Both
 * limits: buffers, then bytes. */
static void a_sender_past_the_limits_is_refused(void **state) {
  (void)state;
  for (int by_bytes = 0; by_bytes <= 1; by_bytes++) {
    int pair[2];
    assert_int_equal(
        socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, pair), 0);
    const tb_channel_options opts =
        by_bytes ? limits(100, 2 * page()) : limits(2, 1 << 20);
    tb_channel *channel = NULL;
    TB_ASSERT_OK(tb_channel_from_fd_with(&channel, pair[1], &opts));
    close(pair[1]);
    tb_forge_greet(pair[0]);
    uint64_t fd_bytes = by_bytes ? page() : TB_FORGE_FD_BYTES;
    tb_tensor *kept[2] = {NULL, NULL};
    for (uint64_t id = 1; id <= 2; id++) {
      send_forged(pair[0], id, fd_bytes);
      TB_ASSERT_OK(tb_channel_recv(&kept[id - 1], channel, PATIENCE_MS));
    }
    send_forged(pair[0], 3, fd_bytes);
    tb_tensor *refused = TB_SENTINEL(tb_tensor);
    TB_ASSERT_STATUS(tb_channel_recv(&refused, channel, PATIENCE_MS),
                     TB_ERR_PROTOCOL);
    assert_non_null(strstr(tb_last_error(), "limit"));
    assert_ptr_equal(refused, TB_SENTINEL(tb_tensor));
    /* Unusable from now on, for every call; the peer sees the close. */
    TB_ASSERT_STATUS(tb_channel_recv(&refused, channel, 0), TB_ERR_PROTOCOL);
    TB_ASSERT_STATUS(tb_channel_send(channel, kept[0], 0), TB_ERR_PROTOCOL);
    char byte;
    assert_int_equal(recv(pair[0], &byte, 1, 0), 0);
    /* What was received before stays valid. */
    assert_int_equal(tb_tensor_dim(kept[1], 0), 16);
    tb_tensor_unref(kept[0]);
    tb_tensor_unref(kept[1]);
    tb_channel_unref(channel);
    close(pair[0]);
  }
}

/* ---- map only what is needed ------------------------------------------- */

/* The process's address space (VmSize), in bytes. */
static uint64_t address_space(void) {
  g_autofree char *status = NULL;
  assert_true(g_file_get_contents("/proc/self/status", &status, NULL, NULL));
  const char *line = strstr(status, "VmSize:");
  assert_non_null(line);
  return g_ascii_strtoull(line + strlen("VmSize:"), NULL, 10) * 1024;
}

#define SPARSE_FILES 42
#define SPARSE_BYTES (UINT64_C(64) << 30)

/* Finding 3: 42 sparse 64 GiB memfds, each sent with a small tensor (half
 * of them 60 GiB into the file): the receiver maps the pages the tensors
 * use, so its address space grows by about their bytes, not by 2.7 TiB,
 * and each tensor reads the bytes at its offset in the file. */
static void sparse_files_cost_only_the_pages_used(void **state) {
  (void)state;
  int pair[2];
  assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, pair),
                   0);
  tb_channel *channel = NULL;
  TB_ASSERT_OK(tb_channel_from_fd(&channel, pair[1]));
  close(pair[1]);
  tb_forge_greet(pair[0]);
  tb_tensor *received[SPARSE_FILES];
  uint64_t before = address_space();
  for (int i = 0; i < SPARSE_FILES; i++) {
    uint64_t offset = i % 2 ? UINT64_C(60) << 30 : 0;
    int fd = memfd_create("sparse", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    assert_true(fd >= 0);
    assert_int_equal(ftruncate(fd, (off_t)SPARSE_BYTES), 0);
    const uint8_t mark = (uint8_t)(100 + i);
    assert_int_equal(pwrite(fd, &mark, 1, (off_t)(offset + 63)), 1);
    char buffers[64], at[64];
    snprintf(buffers, sizeof buffers, "[(int32 0, uint64 %d)]", 1000 + i);
    snprintf(at, sizeof at, "uint64 %llu", (unsigned long long)offset);
    const tb_forge_edit edits[] = {{TB_FORGE_BUFFERS, buffers},
                                   {TB_FORGE_OFFSET, at}};
    g_autoptr(GBytes) message = tb_forge_tensor(edits, 2);
    tb_forge_send_bytes(pair[0], message, &fd, 1);
    close(fd);
    TB_ASSERT_OK(tb_channel_recv(&received[i], channel, PATIENCE_MS));
    const int64_t index[] = {15, 3};
    int64_t value = 0;
    TB_ASSERT_OK(tb_tensor_get_i64(&value, received[i], 2, index));
    assert_int_equal(value, mark);
    assert_int_equal(tb_tensor_offset(received[i]), 0); /* in its window */
  }
  uint64_t grown = address_space() - before;
  printf("%d sparse %llu GiB memfds received: address space +%llu KiB\n",
         SPARSE_FILES, (unsigned long long)(SPARSE_BYTES >> 30),
         (unsigned long long)(grown >> 10));
  /* A page each, and room for the allocator's own growth. */
  assert_true(grown < SPARSE_FILES * page() + (UINT64_C(64) << 20));
  for (int i = 0; i < SPARSE_FILES; i++)
    tb_tensor_unref(received[i]);
  tb_channel_unref(channel);
  close(pair[0]);
}

/* A tensor in a window, sent on: the next receiver reads the same bytes
 * (descriptions give offsets in the file, not in the window). */
static void a_windowed_tensor_forwards_intact(void **state) {
  (void)state;
  tb_channel *a = NULL, *b = NULL, *c = NULL, *d = NULL;
  TB_ASSERT_OK(tb_channel_pair(&a, &b));
  TB_ASSERT_OK(tb_channel_pair(&c, &d));
  /* 3 pages; the tensor is the last 64 bytes: b maps the last page. */
  tb_tensor *whole = shm_tensor((int64_t)(3 * page()), 9);
  tb_tensor *tail = NULL;
  TB_ASSERT_OK(tb_tensor_slice(&tail, whole, 0, (int64_t)(3 * page() - 64),
                               (int64_t)(3 * page()), 1));
  TB_ASSERT_OK(tb_channel_send(a, tail, 0));
  tb_tensor *at_b = NULL, *at_d = NULL;
  TB_ASSERT_OK(tb_channel_recv(&at_b, b, PATIENCE_MS));
  tb_buffer *window = tb_tensor_buffer(at_b);
  assert_int_equal(tb_buffer_size(window), page());
  tb_buffer_unref(window);
  assert_int_equal(tb_tensor_offset(at_b), page() - 64);
  TB_ASSERT_OK(tb_channel_send(c, at_b, 0));
  TB_ASSERT_OK(tb_channel_recv(&at_d, d, PATIENCE_MS));
  assert_int_equal(tb_tensor_dim(at_d, 0), 64);
  assert_int_equal(first_byte(at_d), 9);
  /* And a description for a transport of the caller's says the same. */
  uint8_t descriptor[4096];
  size_t length = 0, nfds = 1;
  int fd = -1;
  TB_ASSERT_OK(tb_tensor_export(descriptor, sizeof descriptor, &length, &fd,
                                &nfds, at_b, 0));
  tb_tensor *imported = NULL;
  TB_ASSERT_OK(tb_tensor_import(&imported, descriptor, length, &fd, 1));
  close(fd);
  assert_int_equal(first_byte(imported), 9);
  tb_tensor_unref(imported);
  tb_tensor_unref(at_d);
  tb_tensor_unref(at_b);
  tb_tensor_unref(tail);
  tb_tensor_unref(whole);
  tb_channel_unref(a);
  tb_channel_unref(b);
  tb_channel_unref(c);
  tb_channel_unref(d);
}

/* ---- a failed receive poisons nothing (finding 4) ---------------------- */

/* A version-3 tensor message as a peer written by hand reads it. */
#define V3_TENSOR_TYPE                                                         \
  "(uya(ityut)utaxaxbmsm(xadax)m(uuua(utt))tata(qay))"

/* Receives one tensor message on a raw socket: the buffer id it names, the
 * serial its acknowledgement would name (0: none) and how many fds came
 * (closed here). */
static size_t receive_raw(int raw, uint64_t *id, uint64_t *serial) {
  int fds[4];
  size_t nfds = 0;
  uint8_t *bytes = g_malloc(65536);
  struct iovec iov = {.iov_base = bytes, .iov_len = 65536};
  union {
    struct cmsghdr header;
    char space[CMSG_SPACE(sizeof fds)];
  } control;
  struct msghdr msg = {.msg_iov = &iov,
                       .msg_iovlen = 1,
                       .msg_control = control.space,
                       .msg_controllen = sizeof control.space};
  ssize_t length = recvmsg(raw, &msg, 0);
  assert_true(length > 5 && bytes[4] == 'T');
  for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c != NULL;
       c = CMSG_NXTHDR(&msg, c))
    for (size_t i = 0; i < (c->cmsg_len - CMSG_LEN(0)) / sizeof(int); i++) {
      memcpy(&fds[nfds], CMSG_DATA(c) + i * sizeof(int), sizeof(int));
      close(fds[nfds++]);
    }
  g_autoptr(GVariant) message = g_variant_ref_sink(g_variant_new_from_data(
      G_VARIANT_TYPE(V3_TENSOR_TYPE), bytes, (gsize)length, FALSE, g_free,
      bytes));
  g_autoptr(GVariant) entries = g_variant_get_child_value(message, 2);
  g_variant_get_child(entries, 0, "(ityut)", NULL, id, NULL, NULL, NULL);
  g_autoptr(GVariant) extensions = g_variant_get_child_value(message, 13);
  *serial = 0;
  for (gsize i = 0; i < g_variant_n_children(extensions); i++) {
    guint16 tag;
    g_autoptr(GVariant) value = NULL;
    g_variant_get_child(extensions, i, "(q@ay)", &tag, &value);
    gsize n;
    const uint8_t *le = g_variant_get_fixed_array(value, &n, 1);
    if (tag == 1 && n == 8) {
      memcpy(serial, le, sizeof *serial);
      *serial = GUINT64_FROM_LE(*serial);
    }
  }
  return nfds;
}

/* Acknowledges, as a receiver, buffer `id` of the message of `serial`. */
static void send_ack(int raw, uint64_t serial, uint64_t id) {
  g_autofree char *text = g_strdup_printf(
      "(uint32 3, byte 0x41, uint64 %llu, [(uint64 %llu, uint64 0, uint64 "
      "%llu)], @a(qay) [])",
      (unsigned long long)serial, (unsigned long long)id,
      (unsigned long long)page());
  g_autoptr(GVariant) ack =
      g_variant_ref_sink(g_variant_parse(NULL, text, NULL, NULL, NULL));
  tb_forge_send(raw, g_variant_get_data(ack), g_variant_get_size(ack), NULL,
                0);
}

/* Version 3: until the receiver acknowledges a buffer, every send of it
 * carries its fd again (a receiver whose import failed is sent it again);
 * an ack of an older message does not count; once acknowledged, the fd
 * stays home. */
static void a_buffer_goes_with_its_fd_until_acknowledged(void **state) {
  (void)state;
  int pair[2];
  assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, pair),
                   0);
  tb_channel *channel = NULL;
  TB_ASSERT_OK(tb_channel_from_fd(&channel, pair[1]));
  close(pair[1]);
  uint8_t theirs[4096];
  assert_true(recv(pair[0], theirs, sizeof theirs, 0) >= 32);
  g_autoptr(GBytes) hello = tb_forge_hello(1, 3, NULL, 0);
  tb_forge_send_bytes(pair[0], hello, NULL, 0);
  tb_tensor *tensor = shm_tensor(64, 5);
  uint64_t id = 0, first = 0, second = 0, third = 0, none = 0;
  TB_ASSERT_OK(tb_channel_send(channel, tensor, 0));
  assert_int_equal(receive_raw(pair[0], &id, &first), 1);
  TB_ASSERT_OK(tb_channel_send(channel, tensor, 0));
  assert_int_equal(receive_raw(pair[0], &id, &second), 1);
  assert_true(first != 0 && second > first);
  send_ack(pair[0], first, id); /* stale: the fd went again since */
  TB_ASSERT_OK(tb_channel_send(channel, tensor, 0));
  assert_int_equal(receive_raw(pair[0], &id, &third), 1);
  send_ack(pair[0], third, id);
  TB_ASSERT_OK(tb_channel_send(channel, tensor, 0));
  assert_int_equal(receive_raw(pair[0], &id, &none), 0);
  assert_int_equal(none, 0); /* no fd: nothing to acknowledge */
  tb_tensor_unref(tensor);
  tb_channel_unref(channel);
  close(pair[0]);
}

/* The lowest fd number free now: an RLIMIT_NOFILE of it leaves no fd. */
static int lowest_free_fd(void) {
  int fd = fcntl(0, F_DUPFD_CLOEXEC, 0);
  assert_true(fd >= 0);
  close(fd);
  return fd;
}

/* With no fd free, one receive fails; once fds are back, the next send of
 * the same buffer carries its fd again and is received. */
static void a_receive_out_of_fds_is_retried_by_the_next_send(void **state) {
  (void)state;
  tb_channel *a = NULL, *b = NULL;
  TB_ASSERT_OK(tb_channel_pair(&a, &b));
  tb_tensor *tensor = shm_tensor(256, 42);
  TB_ASSERT_OK(tb_channel_send(a, tensor, 0));
  struct rlimit saved;
  assert_int_equal(getrlimit(RLIMIT_NOFILE, &saved), 0);
  struct rlimit none = {(rlim_t)lowest_free_fd(), saved.rlim_max};
  assert_int_equal(setrlimit(RLIMIT_NOFILE, &none), 0);
  tb_tensor *received = TB_SENTINEL(tb_tensor);
  tb_status status = tb_channel_recv(&received, b, PATIENCE_MS);
  assert_int_equal(setrlimit(RLIMIT_NOFILE, &saved), 0);
  printf("receive with no fd free: %s (%s)\n", tb_status_name(status),
         tb_last_error());
  assert_int_equal(status, TB_ERR_SYSTEM);
  assert_int_equal(tb_last_errno(), EMFILE);
  assert_ptr_equal(received, TB_SENTINEL(tb_tensor));
  /* The same buffer again: received, twice (the second time cached). */
  for (int i = 0; i < 2; i++) {
    TB_ASSERT_OK(tb_channel_send(a, tensor, 0));
    TB_ASSERT_OK(tb_channel_recv(&received, b, PATIENCE_MS));
    assert_int_equal(first_byte(received), 42);
    tb_tensor_unref(received);
  }
  tb_tensor_unref(tensor);
  tb_channel_unref(a);
  tb_channel_unref(b);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      TB_TEST(limits_are_stated_in_the_hello),
      TB_TEST(bad_options_are_refused),
      TB_TEST(accepted_channels_take_the_listeners_options),
      TB_TEST(a_sender_keeps_within_the_receivers_limits),
      TB_TEST(a_tensor_over_the_peers_limits_is_refused),
      TB_TEST(a_forgotten_buffer_lives_on_in_its_tensors),
      TB_TEST(a_sender_past_the_limits_is_refused),
      TB_TEST(sparse_files_cost_only_the_pages_used),
      TB_TEST(a_windowed_tensor_forwards_intact),
      TB_TEST(a_buffer_goes_with_its_fd_until_acknowledged),
      TB_TEST(a_receive_out_of_fds_is_retried_by_the_next_send),
  };
  return TB_RUN_TESTS(tests);
}
