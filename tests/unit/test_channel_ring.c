/* Channels over their shared-memory rings (wire version 3): the steady
 * state makes a ring record, not a socket message; tensors keep their
 * order across the two paths; layout ids are bounded by the receiver's
 * hello; a peer that scribbles on its ring gets TB_ERR_PROTOCOL and a
 * closed channel; releases never block an unref; the socket is readable
 * exactly when a receive has something (poll and a GLib main loop);
 * threads; a peer that dies with records queued.
 *
 * Linked statically: it reads the channels' counters (tb_channel_stats) and
 * plays a version 3 peer by hand with the library's own ring (ring.h). */
#include "tb_forge.h"
#include "tb_peer.h"

#include "sharing/channel.h"
#include "sharing/hello.h"
#include "sharing/layouts.h"
#include "sharing/ring.h"

#include <glib-unix.h>
#include <poll.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#define PATIENCE_MS 10000

static TbChannelStats stats_of(tb_channel *channel) {
  TbChannelStats stats;
  assert_true(tb_channel_stats(channel, &stats));
  return stats;
}

static gboolean readable(tb_channel *channel) {
  struct pollfd p = {.fd = tb_channel_fd(channel), .events = POLLIN};
  return poll(&p, 1, 0) == 1;
}

static tb_tensor *shm_u8(int64_t length) {
  const int64_t shape[] = {length};
  return tb_test_arange(TB_DTYPE_U8, 1, shape, TB_MEMORY_SHM);
}

static int64_t first_element(tb_tensor *tensor) {
  int64_t index[TB_MAX_DIMS] = {0}, value = -1;
  TB_ASSERT_OK(
      tb_tensor_get_i64(&value, tensor, tb_tensor_ndim(tensor), index));
  return value;
}

static void set_first_element(tb_tensor *tensor, int64_t value) {
  int64_t index[TB_MAX_DIMS] = {0};
  TB_ASSERT_OK(tb_tensor_set_i64(tensor, tb_tensor_ndim(tensor), index, value));
}

/* ---- the steady state -----------------------------------------------------
 */

/* A pool's tensors go once with their fds and layout; after that each
 * handoff is one ring record, with no doorbell while the receiver keeps
 * up, and no sleep on either side (one thread, nothing ever waits). */
static void steady_state_goes_through_the_ring(void **state) {
  (void)state;
  tb_channel *a = NULL, *b = NULL;
  TB_ASSERT_OK(tb_channel_pair(&a, &b));
  const int64_t shape[] = {64, 64, 4};
  tb_tensor *prototype = tb_test_arange(TB_DTYPE_U8, 3, shape, TB_MEMORY_SHM);
  tb_pool *pool = NULL;
  TB_ASSERT_OK(tb_pool_new(&pool, prototype, 4));
  for (int frame = 0; frame < 200; frame++) {
    tb_tensor *sent = NULL, *received = NULL;
    TB_ASSERT_OK(tb_pool_acquire(&sent, pool, PATIENCE_MS));
    set_first_element(sent, frame % 256);
    TB_ASSERT_OK(tb_channel_send(a, sent, 0));
    tb_tensor_unref(sent);
    TB_ASSERT_OK(tb_channel_recv(&received, b, PATIENCE_MS));
    assert_int_equal(first_element(received), frame % 256);
    assert_int_equal(tb_tensor_ndim(received), 3);
    tb_tensor_unref(received);
  }
  TbChannelStats sender = stats_of(a), receiver = stats_of(b);
  assert_int_equal(sender.socket_sent, 4); /* each buffer's first trip */
  assert_int_equal(sender.ring_sent, 196);
  assert_int_equal(receiver.ring_received, 196);
  assert_int_equal(sender.doorbells, 1); /* b was armed for the first */
  assert_int_equal(receiver.doorbells, 0);
  assert_int_equal(sender.ring_sleeps + receiver.ring_sleeps, 0);
  assert_int_equal(sender.ring_wakes + receiver.ring_wakes, 0);
  assert_int_equal(receiver.releases_queued, 0);
  tb_pool_unref(pool);
  tb_tensor_unref(prototype);
  tb_channel_unref(a);
  tb_channel_unref(b);
}

/* Images whose planes share the tensor's buffer (tb_image_new's, as a
 * camera pool makes them) get layout ids too: after each buffer's first
 * trip a frame is one ring record, and arrives as the same image (format,
 * size, every plane's offset and pitch, the pixels). */
static void single_buffer_images_go_through_the_ring(void **state) {
  (void)state;
  tb_channel *a = NULL, *b = NULL;
  TB_ASSERT_OK(tb_channel_pair(&a, &b));
  tb_alloc_options opts = TB_ALLOC_OPTIONS_INIT;
  opts.memory = TB_MEMORY_SHM;
  tb_tensor *prototype = NULL;
  TB_ASSERT_OK(tb_image_new(&prototype, 64, 48, TB_PIXEL_FORMAT_NV12,
                            TB_DTYPE_U8, &opts));
  tb_pool *pool = NULL;
  TB_ASSERT_OK(tb_pool_new(&pool, prototype, 2));
  for (int frame = 0; frame < 50; frame++) {
    tb_tensor *sent = NULL, *received = NULL;
    TB_ASSERT_OK(tb_pool_acquire(&sent, pool, PATIENCE_MS));
    set_first_element(sent, frame);
    TB_ASSERT_OK(tb_channel_send(a, sent, 0));
    TB_ASSERT_OK(tb_channel_recv(&received, b, PATIENCE_MS));
    assert_int_equal(tb_image_format(received), TB_PIXEL_FORMAT_NV12);
    assert_int_equal(tb_image_width(received), 64);
    assert_int_equal(tb_image_height(received), 48);
    assert_int_equal(tb_image_plane_count(received), 2);
    for (size_t p = 0; p < 2; p++) {
      assert_int_equal(tb_image_plane_offset(received, p),
                       tb_image_plane_offset(sent, p));
      assert_int_equal(tb_image_plane_stride(received, p),
                       tb_image_plane_stride(sent, p));
    }
    assert_int_equal(first_element(received), frame);
    tb_tensor_unref(sent);
    tb_tensor_unref(received);
  }
  TbChannelStats sender = stats_of(a);
  assert_int_equal(sender.socket_sent, 2); /* each buffer's first trip */
  assert_int_equal(sender.ring_sent, 48);
  tb_pool_unref(pool);
  tb_tensor_unref(prototype);
  tb_channel_unref(a);
  tb_channel_unref(b);
}

/* Tensors sent all at once, some as messages (a new buffer, a new layout)
 * and some as records, come out in the order they went in. */
static void order_holds_across_socket_and_ring(void **state) {
  (void)state;
  tb_channel *a = NULL, *b = NULL;
  TB_ASSERT_OK(tb_channel_pair(&a, &b));
  tb_tensor *x = shm_u8(16), *y = shm_u8(16), *x4 = NULL;
  set_first_element(y, 77);
  const int64_t square[] = {4, 4};
  TB_ASSERT_OK(tb_tensor_reshape(&x4, x, 2, square));
  tb_tensor *z = shm_u8(16);
  set_first_element(z, 99);
  /* x's buffer goes once and is acknowledged (its layouts cached): then
   * x and x4 are records, y and z (new buffers, not yet acknowledged while
   * nothing is received) messages, sent all at once. */
  tb_tensor *warm[] = {x, x4};
  for (size_t i = 0; i < G_N_ELEMENTS(warm); i++) {
    tb_tensor *received = NULL;
    TB_ASSERT_OK(tb_channel_send(a, warm[i], 0));
    TB_ASSERT_OK(tb_channel_recv(&received, b, PATIENCE_MS));
    tb_tensor_unref(received);
  }
  tb_tensor *order[] = {x, y, x4, z, x, y, x4, z, x};
  for (size_t i = 0; i < G_N_ELEMENTS(order); i++)
    TB_ASSERT_OK(tb_channel_send(a, order[i], 0));
  TbChannelStats sender = stats_of(a);
  assert_int_equal(sender.socket_sent, 2 + 4);
  assert_int_equal(sender.ring_sent, 5);
  for (size_t i = 0; i < G_N_ELEMENTS(order); i++) {
    tb_tensor *received = NULL;
    TB_ASSERT_OK(tb_channel_recv(&received, b, PATIENCE_MS));
    tb_forge_assert_same_tensor(received, order[i]);
    tb_tensor_unref(received);
  }
  tb_tensor *none = NULL;
  TB_ASSERT_STATUS(tb_channel_recv(&none, b, 0), TB_ERR_TIMEOUT);
  tb_tensor_unref(x);
  tb_tensor_unref(y);
  tb_tensor_unref(z);
  tb_tensor_unref(x4);
  tb_channel_unref(a);
  tb_channel_unref(b);
}

/* The sender keeps no more layouts than the receiver's hello allows: the
 * 65th gets the least recently used one's id, and the one that lost its
 * id goes in full again. */
static void layout_ids_stay_within_the_peers_limit(void **state) {
  (void)state;
  tb_channel *a = NULL, *b = NULL;
  TB_ASSERT_OK(tb_channel_pair(&a, &b));
  tb_tensor *base = shm_u8(4096);
  tb_buffer *buffer = tb_tensor_buffer(base);
  const int64_t shape[] = {16};
  tb_tensor *views[TB_LAYOUTS_DEFAULT_LIMIT + 1];
  for (size_t i = 0; i < G_N_ELEMENTS(views); i++) {
    views[i] = NULL;
    TB_ASSERT_OK(tb_tensor_from_buffer(&views[i], buffer, i, TB_DTYPE_U8, 1,
                                       shape, NULL));
  }
  /* Every layout once (65 messages, each received: the buffer's import
   * is acknowledged), then the newest again (a record) and the oldest,
   * whose id went to the 65th (a message). */
  for (size_t i = 0; i < G_N_ELEMENTS(views); i++) {
    tb_tensor *received = NULL;
    TB_ASSERT_OK(tb_channel_send(a, views[i], 0));
    TB_ASSERT_OK(tb_channel_recv(&received, b, PATIENCE_MS));
    tb_forge_assert_same_tensor(received, views[i]);
    tb_tensor_unref(received);
  }
  TB_ASSERT_OK(tb_channel_send(a, views[TB_LAYOUTS_DEFAULT_LIMIT], 0));
  TB_ASSERT_OK(tb_channel_send(a, views[0], 0));
  TbChannelStats sender = stats_of(a);
  assert_int_equal(sender.socket_sent, TB_LAYOUTS_DEFAULT_LIMIT + 2);
  assert_int_equal(sender.ring_sent, 1);
  const size_t last[] = {TB_LAYOUTS_DEFAULT_LIMIT, 0};
  for (size_t i = 0; i < G_N_ELEMENTS(last); i++) {
    tb_tensor *received = NULL;
    TB_ASSERT_OK(tb_channel_recv(&received, b, PATIENCE_MS));
    tb_forge_assert_same_tensor(received, views[last[i]]);
    tb_tensor_unref(received);
  }
  for (size_t i = 0; i < G_N_ELEMENTS(views); i++)
    tb_tensor_unref(views[i]);
  tb_buffer_unref(buffer);
  tb_tensor_unref(base);
  tb_channel_unref(a);
  tb_channel_unref(b);
}

/* ---- a version 3 peer by hand ---------------------------------------------
 * The test plays the peer on the raw end of a socketpair whose other end
 * is a channel: it reads the channel's hello and attaches its ring, and
 * sends its own hello with a ring it also maps, to scribble on. */

typedef struct Forger {
  int socket;
  TbRing *tx;     /* the forger pushes tensors into it */
  TbRing *rx;     /* the channel's ring */
  uint8_t *bytes; /* tx's mapping, to scribble on */
  size_t size;
  TbHello channel_hello;
} Forger;

static tb_channel *forger_connect(Forger *f) {
  int pair[2];
  assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, pair),
                   0);
  tb_channel *channel = NULL;
  TB_ASSERT_OK(tb_channel_from_fd(&channel, pair[0]));
  close(pair[0]);
  f->socket = pair[1];
  /* The channel's hello, with its ring. */
  uint8_t hello[TB_HELLO_MAX_BYTES];
  struct iovec iov = {.iov_base = hello, .iov_len = sizeof hello};
  union {
    struct cmsghdr header;
    char space[CMSG_SPACE(sizeof(int))];
  } control;
  struct msghdr msg = {.msg_iov = &iov,
                       .msg_iovlen = 1,
                       .msg_control = control.space,
                       .msg_controllen = sizeof control.space};
  ssize_t length = recvmsg(f->socket, &msg, MSG_CMSG_CLOEXEC);
  assert_true(length > 0);
  struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
  assert_non_null(c);
  int ring_fd;
  memcpy(&ring_fd, CMSG_DATA(c), sizeof ring_fd);
  GError *error = NULL;
  assert_true(tb_hello_parse(hello, (size_t)length, &f->channel_hello, &error));
  f->rx = tb_ring_attach(ring_fd, &error);
  assert_non_null(f->rx);
  close(ring_fd);
  /* Ours, with a ring of 8 records. */
  f->tx = tb_ring_create(8, &ring_fd, &error);
  assert_non_null(f->tx);
  struct stat st;
  assert_int_equal(fstat(ring_fd, &st), 0);
  f->size = (size_t)st.st_size;
  f->bytes =
      mmap(NULL, f->size, PROT_READ | PROT_WRITE, MAP_SHARED, ring_fd, 0);
  assert_true(f->bytes != MAP_FAILED);
  const TbHello ours = {.min_version = 1,
                        .max_version = TB_WIRE_VERSION_RING,
                        .max_layouts = TB_LAYOUTS_DEFAULT_LIMIT};
  uint8_t out[TB_HELLO_WRITE_BYTES];
  g_autoptr(GBytes) message = g_bytes_new(out, tb_hello_write(&ours, out));
  tb_forge_send_bytes(f->socket, message, &ring_fd, 1);
  close(ring_fd);
  return channel;
}

static void forger_close(Forger *f) {
  munmap(f->bytes, f->size);
  tb_ring_free(f->tx);
  tb_ring_free(f->rx);
  close(f->socket);
}

static void forger_push(Forger *f, uint64_t token, uint32_t generation,
                        uint32_t layout, uint32_t flags) {
  const TbRingRecord record = {.token = token,
                               .generation = generation,
                               .layout = layout,
                               .flags = flags};
  GError *error = NULL;
  assert_true(tb_ring_push(f->tx, &record, 0, &error));
}

/* The forged message's buffer in version 3: fd 0, id 7, SHM, device 0,
 * 4096 bytes. */
#define V3_BUFFER "@a(ityut) [(0, 7, 2, 0, 4096)]"

/* The forger's valid tensor message (buffer 7, u32 16x4, a memfd),
 * announced on the ring, under layout id `layout`. */
static void forger_send_tensor(Forger *f, uint32_t layout) {
  g_autofree char *extension = g_strdup_printf(
      "[(uint16 %u, [byte %u, %u, %u, %u])]", TB_WIRE_TAG_LAYOUT_ID,
      layout & 0xff, (layout >> 8) & 0xff, (layout >> 16) & 0xff, layout >> 24);
  const tb_forge_edit edits[] = {{TB_FORGE_VERSION, "uint32 3"},
                                 {TB_FORGE_BUFFERS, V3_BUFFER},
                                 {TB_FORGE_FIELDS, extension}};
  g_autoptr(GBytes) message = tb_forge_tensor(edits, G_N_ELEMENTS(edits));
  int memfd = tb_forge_memfd(TB_FORGE_FD_BYTES, MFD_ALLOW_SEALING);
  forger_push(f, 0, 0, 0, TB_RING_FLAG_SOCKET);
  tb_forge_send_bytes(f->socket, message, &memfd, 1);
  close(memfd);
}

/* After a refusal that closes the channel: the peer sees the end, and the
 * channel refuses every later receive. */
static void assert_channel_closed(Forger *f, tb_channel *channel) {
  struct pollfd p = {.fd = f->socket, .events = POLLRDHUP};
  assert_int_equal(poll(&p, 1, PATIENCE_MS), 1);
  assert_true(p.revents & (POLLHUP | POLLRDHUP));
  tb_tensor *none = NULL;
  tb_status again = tb_channel_recv(&none, channel, 0);
  assert_true(again == TB_ERR_PROTOCOL || again == TB_ERR_CLOSED);
}

/* The channel states its layout limit in its hello; a message that would
 * go past it (an id beyond it) is refused; one within it is cached and a
 * record can name it. */
static void layout_cache_refuses_ids_past_its_limit(void **state) {
  /* The refusal comes before anything is imported: TB_ASSERT_STATUS checks
   * that no handle or fd was left behind. */
  (void)state;
  Forger f;
  tb_channel *channel = forger_connect(&f);
  assert_int_equal(f.channel_hello.max_layouts, TB_LAYOUTS_DEFAULT_LIMIT);
  tb_tensor *tensor = NULL;
  forger_send_tensor(&f, TB_LAYOUTS_DEFAULT_LIMIT + 1);
  TB_ASSERT_STATUS(tb_channel_recv(&tensor, channel, PATIENCE_MS),
                   TB_ERR_PROTOCOL);
  forger_send_tensor(&f, TB_LAYOUTS_DEFAULT_LIMIT);
  TB_ASSERT_OK(tb_channel_recv(&tensor, channel, PATIENCE_MS));
  tb_tensor_unref(tensor);
  forger_push(&f, 7, 0, TB_LAYOUTS_DEFAULT_LIMIT, 0);
  TB_ASSERT_OK(tb_channel_recv(&tensor, channel, PATIENCE_MS));
  const int64_t index[] = {15, 3};
  int64_t value = 0;
  TB_ASSERT_OK(tb_tensor_get_i64(&value, tensor, 2, index));
  assert_int_equal(value, 63);
  tb_tensor_unref(tensor);
  tb_channel_unref(channel);
  forger_close(&f);
}

/* Ways a peer can forge what the ring carries, each after one valid
 * tensor (buffer 7, layout 1) and one valid record. */
typedef enum Scribble {
  UNKNOWN_BUFFER, /* a record naming a buffer never sent */
  UNKNOWN_LAYOUT, /* a record naming a layout never sent */
  TAIL_TOO_FAR,   /* the tail index runs more than a lap ahead */
  GARBAGE_RECORD, /* random bytes in the next slot */
  TAIL_GOES_BACK, /* the tail index moves backwards */
  SCRIBBLE_COUNT
} Scribble;

/* Where the forger's tensor lane begins in its mapping (ring.c's layout:
 * a 64-byte header, then the lane's tail word, sequence, closed; later
 * lines for the head and waiters; the slots after three cache lines). */
#define LANE0 64u
#define SLOTS0 (LANE0 + 3 * 64u)

static void scribbled_ring_is_a_protocol_error(void **state) {
  (void)state;
  for (int scribble = 0; scribble < SCRIBBLE_COUNT; scribble++) {
    Forger f;
    tb_channel *channel = forger_connect(&f);
    tb_tensor *tensor = NULL;
    forger_send_tensor(&f, 1);
    TB_ASSERT_OK(tb_channel_recv(&tensor, channel, PATIENCE_MS));
    tb_tensor_unref(tensor);
    forger_push(&f, 7, 0, 1, 0);
    TB_ASSERT_OK(tb_channel_recv(&tensor, channel, PATIENCE_MS));
    tb_tensor_unref(tensor);
    uint64_t tail;
    memcpy(&tail, f.bytes + LANE0, sizeof tail);
    assert_int_equal(tail, 2); /* the announcement, the record */
    switch ((Scribble)scribble) {
    case UNKNOWN_BUFFER:
      forger_push(&f, 8, 0, 1, 0);
      break;
    case UNKNOWN_LAYOUT:
      forger_push(&f, 7, 0, 2, 0);
      break;
    case TAIL_TOO_FAR:
      tail = 2 + 9;
      memcpy(f.bytes + LANE0, &tail, sizeof tail);
      break;
    case GARBAGE_RECORD:
      for (size_t i = 0; i < 32; i++)
        f.bytes[SLOTS0 + 2 * 32 + i] = (uint8_t)g_random_int();
      tail = 3;
      memcpy(f.bytes + LANE0, &tail, sizeof tail);
      break;
    case TAIL_GOES_BACK:
      tail = 1;
      memcpy(f.bytes + LANE0, &tail, sizeof tail);
      break;
    default:
      break;
    }
    TB_ASSERT_STATUS(tb_channel_recv(&tensor, channel, PATIENCE_MS),
                     TB_ERR_PROTOCOL);
    assert_channel_closed(&f, channel);
    tb_channel_unref(channel);
    forger_close(&f);
  }
}

/* A message on the socket that no ring record announced is refused: the
 * ring orders everything. */
static void unannounced_message_is_refused(void **state) {
  (void)state;
  Forger f;
  tb_channel *channel = forger_connect(&f);
  const tb_forge_edit edits[] = {{TB_FORGE_VERSION, "uint32 3"},
                                 {TB_FORGE_BUFFERS, V3_BUFFER},
                                 {TB_FORGE_FIELDS, "@a(qay) []"}};
  g_autoptr(GBytes) message = tb_forge_tensor(edits, G_N_ELEMENTS(edits));
  int memfd = tb_forge_memfd(TB_FORGE_FD_BYTES, MFD_ALLOW_SEALING);
  tb_forge_send_bytes(f.socket, message, &memfd, 1);
  close(memfd);
  tb_tensor *tensor = NULL;
  TB_ASSERT_STATUS(tb_channel_recv(&tensor, channel, 0), TB_ERR_PROTOCOL);
  tb_channel_unref(channel);
  forger_close(&f);
}

/* ---- releases -------------------------------------------------------------
 */

/* The sender stops servicing its channel: the receiver's drops fill the
 * ring (256 records) and the rest wait in the bounded local queue; no drop
 * waits. The sender's next acquire takes what the ring holds, and the
 * receiver's next call hands over the rest. */
static void releases_never_block_on_a_peer_that_stopped_reading(void **state) {
  (void)state;
  enum { COUNT = 300, RING = 256 };
  tb_channel *a = NULL, *b = NULL;
  TB_ASSERT_OK(tb_channel_pair(&a, &b));
  tb_tensor *prototype = shm_u8(16);
  tb_pool *pool = NULL;
  TB_ASSERT_OK(tb_pool_new(&pool, prototype, COUNT));
  tb_tensor *received[COUNT];
  for (int i = 0; i < COUNT; i++) {
    tb_tensor *sent = NULL;
    TB_ASSERT_OK(tb_pool_acquire(&sent, pool, 0));
    TB_ASSERT_OK(tb_channel_send(a, sent, 0));
    tb_tensor_unref(sent);
    TB_ASSERT_OK(tb_channel_recv(&received[i], b, PATIENCE_MS));
  }
  for (int i = 0; i < COUNT; i++)
    tb_tensor_unref(received[i]); /* a blocking drop would hang here */
  assert_int_equal(stats_of(b).releases_queued, COUNT - RING);
  assert_int_equal(tb_pool_available(pool), 0);
  tb_tensor *again = NULL;
  TB_ASSERT_OK(tb_pool_acquire(&again, pool, 0));
  assert_int_equal(tb_pool_available(pool), RING - 1);
  tb_tensor *none = NULL;
  TB_ASSERT_STATUS(tb_channel_recv(&none, b, 0), TB_ERR_TIMEOUT);
  tb_tensor_unref(again);
  TB_ASSERT_STATUS(tb_channel_recv(&none, a, 0), TB_ERR_TIMEOUT);
  assert_int_equal(tb_pool_available(pool), COUNT);
  tb_pool_unref(pool);
  tb_tensor_unref(prototype);
  tb_channel_unref(a);
  tb_channel_unref(b);
}

/* ---- event loops ----------------------------------------------------------
 */

/* The receiver's socket is readable exactly when a receive returns
 * something: a message, a record (through the doorbell) or the end. */
static void fd_is_readable_exactly_when_a_receive_has_something(void **state) {
  (void)state;
  tb_channel *a = NULL, *b = NULL;
  TB_ASSERT_OK(tb_channel_pair(&a, &b));
  tb_tensor *x = shm_u8(16), *received = NULL;
  assert_false(readable(b));
  for (int round = 0; round < 3; round++) { /* a message, then records */
    TB_ASSERT_OK(tb_channel_send(a, x, 0));
    assert_true(readable(b));
    TB_ASSERT_OK(tb_channel_recv(&received, b, 0));
    tb_tensor_unref(received);
    TB_ASSERT_STATUS(tb_channel_recv(&received, b, 0), TB_ERR_TIMEOUT);
    assert_false(readable(b));
  }
  assert_true(stats_of(a).ring_sent >= 2);
  tb_channel_unref(a);
  assert_true(readable(b));
  TB_ASSERT_STATUS(tb_channel_recv(&received, b, 0), TB_ERR_CLOSED);
  tb_tensor_unref(x);
  tb_channel_unref(b);
}

/* A loop that takes one tensor per wake-up, where the sender sends the
 * next only once this one was taken (request and answer), is woken for
 * every tensor: a receive with timeout 0 that returns a tensor arms the
 * ring, so the next record rings the doorbell. (cuda_handoff's consumer
 * hung on this.) */
static void one_receive_per_wakeup_is_woken_for_the_next(void **state) {
  (void)state;
  tb_channel *a = NULL, *b = NULL;
  TB_ASSERT_OK(tb_channel_pair(&a, &b));
  tb_tensor *x = shm_u8(16), *received = NULL;
  for (int round = 0; round < 6; round++) {
    set_first_element(x, round);
    TB_ASSERT_OK(tb_channel_send(a, x, 0));
    struct pollfd p = {.fd = tb_channel_fd(b), .events = POLLIN};
    assert_int_equal(poll(&p, 1, 2000), 1);
    TB_ASSERT_OK(tb_channel_recv(&received, b, 0));
    assert_int_equal(first_element(received), round);
    tb_tensor_unref(received);
  }
  assert_true(stats_of(a).ring_sent >= 3); /* records, not only messages */
  tb_tensor_unref(x);
  tb_channel_unref(a);
  tb_channel_unref(b);
}

typedef struct LoopState {
  tb_channel *channel;
  GMainLoop *loop;
  int received;
  int expected;
  int wakeups;
} LoopState;

static gboolean on_readable(gint fd, GIOCondition condition, gpointer data) {
  (void)fd;
  (void)condition;
  LoopState *s = data;
  s->wakeups++;
  tb_tensor *tensor = NULL;
  while (tb_channel_recv(&tensor, s->channel, 0) == TB_OK) {
    assert_int_equal(first_element(tensor), s->received % 100);
    tb_tensor_unref(tensor);
    s->received++;
  }
  if (s->received == s->expected)
    g_main_loop_quit(s->loop);
  return G_SOURCE_CONTINUE;
}

static gboolean give_up(gpointer data) {
  LoopState *s = data;
  print_error("the main loop saw %d of %d tensors\n", s->received, s->expected);
  g_main_loop_quit(s->loop);
  return G_SOURCE_REMOVE;
}

/* A GLib main loop watching the channel's fd gets every tensor sent, one
 * message per buffer and records after that: each is sent once the loop
 * has taken the one before, so a buffer is rewritten only after it was
 * read. */
static void main_loop_wakes_for_every_tensor(void **state) {
  (void)state;
  tb_channel *a = NULL, *b = NULL;
  TB_ASSERT_OK(tb_channel_pair(&a, &b));
  enum { COUNT = 100 };
  tb_tensor *tensors[4];
  for (int i = 0; i < 4; i++)
    tensors[i] = shm_u8(16);
  LoopState s = {.channel = b, .expected = COUNT};
  GMainContext *context = g_main_context_new();
  s.loop = g_main_loop_new(context, FALSE);
  GSource *watch = g_unix_fd_source_new(tb_channel_fd(b), G_IO_IN);
  g_source_set_callback(watch, (GSourceFunc)(void (*)(void))on_readable, &s,
                        NULL);
  g_source_attach(watch, context);
  GSource *timeout = g_timeout_source_new(PATIENCE_MS);
  g_source_set_callback(timeout, give_up, &s, NULL);
  g_source_attach(timeout, context);
  for (int i = 0; i < COUNT && !g_source_is_destroyed(timeout); i++) {
    set_first_element(tensors[i % 4], i % 100);
    TB_ASSERT_OK(tb_channel_send(a, tensors[i % 4], 0));
    while (s.received <= i && !g_source_is_destroyed(timeout))
      g_main_context_iteration(context, TRUE);
  }
  assert_int_equal(s.received, COUNT);
  assert_int_equal(s.wakeups, COUNT); /* one per tensor: none spurious */
  assert_int_equal(stats_of(a).ring_sent, COUNT - 4);
  g_source_destroy(watch);
  g_source_unref(watch);
  g_source_destroy(timeout);
  g_source_unref(timeout);
  g_main_loop_unref(s.loop);
  g_main_context_unref(context);
  for (int i = 0; i < 4; i++)
    tb_tensor_unref(tensors[i]);
  tb_channel_unref(a);
  tb_channel_unref(b);
}

/* ---- threads --------------------------------------------------------------
 */

enum { THREADED_COUNT = 2000, RECEIVERS = 4 };

typedef struct Receiver {
  tb_channel *channel;
  int seen[THREADED_COUNT];
  int nseen;
} Receiver;

static gpointer receive_until_closed(gpointer data) {
  Receiver *r = data;
  tb_tensor *tensor = NULL;
  tb_status status;
  while ((status = tb_channel_recv(&tensor, r->channel, PATIENCE_MS)) ==
         TB_OK) {
    int64_t index[] = {0}, low = 0, high = 0;
    TB_ASSERT_OK(tb_tensor_get_i64(&low, tensor, 1, index));
    index[0] = 1;
    TB_ASSERT_OK(tb_tensor_get_i64(&high, tensor, 1, index));
    r->seen[r->nseen++] = (int)(high * 256 + low);
    tb_tensor_unref(tensor);
  }
  assert_int_equal(status, TB_ERR_CLOSED);
  return NULL;
}

/* Several threads receive on one channel while records and messages
 * arrive: every tensor is taken exactly once, and each thread sees them
 * in the order they were sent. */
static void threads_share_one_ring(void **state) {
  (void)state;
  tb_channel *a = NULL, *b = NULL;
  TB_ASSERT_OK(tb_channel_pair(&a, &b));
  Receiver *receivers = g_new0(Receiver, RECEIVERS);
  GThread *threads[RECEIVERS];
  for (int i = 0; i < RECEIVERS; i++) {
    receivers[i].channel = b;
    threads[i] = g_thread_new("receiver", receive_until_closed, &receivers[i]);
  }
  /* Pooled tensors (records once each buffer has gone; a buffer is
   * rewritten only after its receiver dropped it), and every 50th a fresh
   * tensor (a message); each holds its number in bytes 0 and 1. */
  tb_tensor *prototype = shm_u8(16);
  tb_pool *pool = NULL;
  TB_ASSERT_OK(tb_pool_new(&pool, prototype, 8));
  for (int i = 0; i < THREADED_COUNT; i++) {
    tb_tensor *numbered = NULL;
    if (i % 50 == 0)
      numbered = shm_u8(16);
    else
      TB_ASSERT_OK(tb_pool_acquire(&numbered, pool, PATIENCE_MS));
    int64_t index[] = {0};
    TB_ASSERT_OK(tb_tensor_set_i64(numbered, 1, index, i % 256));
    index[0] = 1;
    TB_ASSERT_OK(tb_tensor_set_i64(numbered, 1, index, i / 256));
    TB_ASSERT_OK(tb_channel_send(a, numbered, 0));
    tb_tensor_unref(numbered);
  }
  /* Messages: the fresh ones, each first trip of the pool's 8, and the
   * send after a fresh one died (it says to forget it). */
  assert_true(stats_of(a).ring_sent >=
              THREADED_COUNT - 2 * (THREADED_COUNT / 50) - 8);
  tb_channel_unref(a);
  gboolean *taken = g_new0(gboolean, THREADED_COUNT);
  for (int i = 0; i < RECEIVERS; i++) {
    g_thread_join(threads[i]);
    for (int j = 0; j < receivers[i].nseen; j++) {
      int n = receivers[i].seen[j];
      assert_true(n >= 0 && n < THREADED_COUNT);
      assert_false(taken[n]);
      taken[n] = TRUE;
      if (j > 0)
        assert_true(n > receivers[i].seen[j - 1]);
    }
  }
  for (int n = 0; n < THREADED_COUNT; n++)
    assert_true(taken[n]);
  g_free(taken);
  g_free(receivers);
  tb_pool_unref(pool);
  tb_tensor_unref(prototype);
  tb_channel_unref(b);
}

/* ---- death ----------------------------------------------------------------
 */

/* The child sends records and messages and dies without closing anything
 * (its rings are never closed): everything it sent comes out in order
 * before TB_ERR_CLOSED. Its buffers go first and are acknowledged, so
 * that what follows is mostly records. */
static void die_with_records_queued(tb_peer_end *end, void *arg) {
  (void)arg;
  tb_tensor *x = shm_u8(16), *y = shm_u8(16), *z = shm_u8(16);
  int64_t index[] = {0};
  TB_PEER_ASSERT_OK(tb_tensor_set_i64(y, 1, index, 55));
  TB_PEER_ASSERT_OK(tb_tensor_set_i64(z, 1, index, 66));
  TB_PEER_ASSERT_OK(tb_channel_send(end->channel, x, 0));
  TB_PEER_ASSERT_OK(tb_channel_send(end->channel, y, 0));
  tb_peer_expect_step(end, 1); /* received: acknowledged */
  tb_tensor *order[] = {x, y, z, x, y};
  for (size_t i = 0; i < G_N_ELEMENTS(order); i++)
    TB_PEER_ASSERT_OK(tb_channel_send(end->channel, order[i], 0));
  tb_peer_send_step(end, 2);
  _exit(0);
}

static void death_delivers_queued_records_before_closed(void **state) {
  (void)state;
  tb_peer_end end;
  pid_t child = tb_peer_start(&end, TB_PEER_CHANNEL, die_with_records_queued,
                              TB_PEER_CHANNEL, NULL);
  const int64_t expected[] = {0, 55, 0, 55, 66, 0, 55};
  for (size_t i = 0; i < G_N_ELEMENTS(expected); i++) {
    if (i == 2) {
      tb_peer_send_step(&end, 1);
      tb_peer_expect_step(&end, 2);
      tb_peer_join(child);
    }
    tb_tensor *tensor = NULL;
    TB_ASSERT_OK(tb_channel_recv(&tensor, end.channel, PATIENCE_MS));
    assert_int_equal(first_element(tensor), expected[i]);
    tb_tensor_unref(tensor);
  }
  TbChannelStats stats = stats_of(end.channel);
  assert_int_equal(stats.ring_received, 4); /* all but z, new */
  tb_tensor *none = NULL;
  TB_ASSERT_STATUS(tb_channel_recv(&none, end.channel, PATIENCE_MS),
                   TB_ERR_CLOSED);
  tb_peer_end_close(&end);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      TB_TEST(steady_state_goes_through_the_ring),
      TB_TEST(single_buffer_images_go_through_the_ring),
      TB_TEST(order_holds_across_socket_and_ring),
      TB_TEST(layout_ids_stay_within_the_peers_limit),
      TB_TEST(layout_cache_refuses_ids_past_its_limit),
      TB_TEST(scribbled_ring_is_a_protocol_error),
      TB_TEST(unannounced_message_is_refused),
      TB_TEST(releases_never_block_on_a_peer_that_stopped_reading),
      TB_TEST(fd_is_readable_exactly_when_a_receive_has_something),
      TB_TEST(one_receive_per_wakeup_is_woken_for_the_next),
      TB_TEST(main_loop_wakes_for_every_tensor),
      TB_TEST(threads_share_one_ring),
      TB_TEST(death_delivers_queued_records_before_closed),
  };
  return TB_RUN_TESTS(tests);
}
