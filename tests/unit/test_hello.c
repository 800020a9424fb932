/* The hello at connect, credentials and listener options (issue 9,
 * findings 13 and 14). Hostile and old peers are played by hand on raw
 * sockets (hellos written by tb_forge_hello, not by the library), against
 * a listener (which reads the hello before tb_listener_accept returns) and
 * against tb_channel_from_fd (which reads it in its first operation). */
#include "tb_forge.h"
#include "tb_peer.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#define PATIENCE_MS 5000

/* An abstract name no other test process uses. */
static char *socket_name(void) {
  static int serial;
  return g_strdup_printf("@tensorbuf-hello-%d-%d", (int)getpid(), serial++);
}

/* Connects a raw seqpacket socket to `name`, as a peer that speaks the wire
 * by hand would. */
static int raw_dial(const char *name) {
  struct sockaddr_un address = {.sun_family = AF_UNIX};
  size_t n = strlen(name);
  memcpy(address.sun_path, name, n);
  if (name[0] == '@')
    address.sun_path[0] = '\0';
  int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
  assert_true(fd >= 0);
  socklen_t length = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n +
                                 (name[0] == '@' ? 0 : 1));
  assert_int_equal(connect(fd, (struct sockaddr *)&address, length), 0);
  return fd;
}

static GBytes *bytes_of(const void *data, size_t length) {
  return g_bytes_new(data, length);
}

/* Hellos a receiver must refuse with TB_ERR_PROTOCOL. */
static GBytes *hostile_hello(size_t i, const char **what) {
  static const uint8_t past_the_end[] = {9, 0, 200, 0, 'x'};
  static const uint8_t half_a_header[] = {1, 0, 4};
  static const uint8_t tiles_then_garbage[] = {3,   0,    1,    0,
                                               'a', 0xff, 0xff, 0xff};
  g_autoptr(GBytes) valid = tb_forge_hello(1, 1, NULL, 0);
  gsize size;
  const uint8_t *good = g_bytes_get_data(valid, &size);
  uint8_t copy[32];
  memcpy(copy, good, sizeof copy);
  switch (i) {
  case 0:
    *what = "truncated: 20 of the 32 fixed bytes";
    return bytes_of(good, 20);
  case 1:
    *what = "one byte";
    return bytes_of(good, 1);
  case 2:
    *what = "wrong magic";
    copy[0] = 'X';
    return bytes_of(copy, sizeof copy);
  case 3:
    *what = "wrong kind";
    copy[4] = 'T';
    return bytes_of(copy, sizeof copy);
  case 4:
    *what = "no version in common (5 to 9)";
    return tb_forge_hello(5, 9, NULL, 0);
  case 5:
    *what = "reversed version range (1 to 0)";
    return tb_forge_hello(1, 0, NULL, 0);
  case 6:
    *what = "version range starting at 0";
    return tb_forge_hello(0, 0, NULL, 0);
  case 7:
    *what = "an extension record longer than the message";
    return tb_forge_hello(1, 1, past_the_end, sizeof past_the_end);
  case 8:
    *what = "the message ends inside an extension header";
    return tb_forge_hello(1, 1, half_a_header, sizeof half_a_header);
  case 9:
    *what = "garbage after a valid extension record";
    return tb_forge_hello(1, 1, tiles_then_garbage, sizeof tiles_then_garbage);
  case 10: {
    *what = "a huge hello (64 KiB)";
    g_autofree uint8_t *huge = g_malloc0(65536);
    memcpy(huge, good, 32);
    return bytes_of(huge, 65536);
  }
  case 11:
    *what = "a tensor message instead of a hello (a peer from before it)";
    return tb_forge_tensor(NULL, 0);
  default:
    return NULL;
  }
}

static void hostile_hellos_refused_at_accept(void **state) {
  (void)state;
  g_autofree char *name = socket_name();
  tb_listener *listener = NULL;
  TB_ASSERT_OK(tb_listener_listen(&listener, name));
  const char *what = NULL;
  GBytes *hello;
  for (size_t i = 0; (hello = hostile_hello(i, &what)) != NULL; i++) {
    print_message("hostile hello: %s\n", what);
    int raw = raw_dial(name);
    /* Sent with an fd too: it must be closed, not kept. */
    int memfd = tb_forge_memfd(64, 0);
    tb_forge_send_bytes(raw, hello, &memfd, 1);
    close(memfd);
    g_bytes_unref(hello);
    tb_channel *channel = TB_SENTINEL(tb_channel);
    TB_ASSERT_STATUS(tb_listener_accept(&channel, listener, PATIENCE_MS),
                     TB_ERR_PROTOCOL);
    assert_ptr_equal(channel, TB_SENTINEL(tb_channel));
    /* The refused connection is closed: the peer reads our hello, then the
     * end. */
    uint8_t bytes[64];
    assert_true(recv(raw, bytes, sizeof bytes, 0) >= 32);
    assert_int_equal(recv(raw, bytes, sizeof bytes, 0), 0);
    close(raw);
  }
  tb_listener_free(listener);
}

static void hostile_hellos_refused_on_adopted_channel(void **state) {
  (void)state;
  const char *what = NULL;
  GBytes *hello;
  for (size_t i = 0; (hello = hostile_hello(i, &what)) != NULL; i++) {
    print_message("hostile hello: %s\n", what);
    int pair[2];
    assert_int_equal(
        socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, pair), 0);
    tb_channel *channel = NULL;
    TB_ASSERT_OK(tb_channel_from_fd(&channel, pair[1]));
    close(pair[1]);
    tb_forge_send_bytes(pair[0], hello, NULL, 0);
    g_bytes_unref(hello);
    tb_tensor *tensor = NULL;
    TB_ASSERT_STATUS(tb_channel_recv(&tensor, channel, PATIENCE_MS),
                     TB_ERR_PROTOCOL);
    /* Every later operation fails alike; a good message does not help. */
    g_autoptr(GBytes) valid = tb_forge_tensor(NULL, 0);
    tb_forge_send_bytes(pair[0], valid, NULL, 0);
    TB_ASSERT_STATUS(tb_channel_recv(&tensor, channel, 0), TB_ERR_PROTOCOL);
    tb_fence *fence = NULL;
    TB_ASSERT_OK(tb_fence_new(&fence, 0));
    TB_ASSERT_STATUS(tb_channel_send_fence(channel, fence), TB_ERR_PROTOCOL);
    tb_fence_unref(fence);
    tb_channel_unref(channel);
    close(pair[0]);
  }
}

/* A peer that connects and says nothing: accept gives up at the listener's
 * hello deadline, not the caller's (unlimited) timeout. */
static void silent_peer_times_out(void **state) {
  (void)state;
  g_autofree char *name = socket_name();
  tb_listener_options opts;
  TB_ASSERT_OK(tb_listener_options_init(&opts, TB_LISTENER_OPTIONS_VERSION));
  opts.hello_timeout_ms = 200;
  tb_listener *listener = NULL;
  TB_ASSERT_OK(tb_listener_listen_with(&listener, name, &opts));
  int raw = raw_dial(name);
  tb_channel *channel = NULL;
  gint64 start = g_get_monotonic_time();
  TB_ASSERT_STATUS(tb_listener_accept(&channel, listener, -1), TB_ERR_TIMEOUT);
  gint64 waited_ms = (g_get_monotonic_time() - start) / 1000;
  assert_true(waited_ms >= 190 && waited_ms < 3000);
  assert_non_null(strstr(tb_last_error(), "hello"));
  close(raw);

  /* An adopted channel: a receive shorter than the hello deadline times out
   * alone, and the channel works once the hello comes. */
  int pair[2];
  assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, pair),
                   0);
  TB_ASSERT_OK(tb_channel_from_fd(&channel, pair[1]));
  close(pair[1]);
  tb_tensor *tensor = NULL;
  TB_ASSERT_STATUS(tb_channel_recv(&tensor, channel, 50), TB_ERR_TIMEOUT);
  tb_forge_greet(pair[0]);
  g_autoptr(GBytes) valid = tb_forge_tensor(NULL, 0);
  int memfd = tb_forge_memfd(TB_FORGE_FD_BYTES, MFD_ALLOW_SEALING);
  tb_forge_send_bytes(pair[0], valid, &memfd, 1);
  close(memfd);
  TB_ASSERT_OK(tb_channel_recv(&tensor, channel, PATIENCE_MS));
  assert_int_equal(tb_tensor_dim(tensor, 0), 16);
  tb_tensor_unref(tensor);
  tb_channel_unref(channel);
  close(pair[0]);
  tb_listener_free(listener);
}

typedef struct waiting_receive {
  tb_channel *channel;
  tb_status status;
  tb_tensor *tensor;
} waiting_receive;

static void *receive_for_long(void *arg) {
  waiting_receive *w = arg;
  w->status = tb_channel_recv(&w->tensor, w->channel, PATIENCE_MS);
  return NULL;
}

/* While one thread waits for the peer's hello, another thread's timed
 * receive returns by its own deadline; the first gets the tensor that
 * follows the hello. */
static void a_timed_call_does_not_wait_behind_the_hello(void **state) {
  (void)state;
  int pair[2];
  assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, pair),
                   0);
  waiting_receive w = {.status = TB_ERR_SYSTEM};
  TB_ASSERT_OK(tb_channel_from_fd(&w.channel, pair[1]));
  close(pair[1]);
  pthread_t thread;
  assert_int_equal(pthread_create(&thread, NULL, receive_for_long, &w), 0);
  g_usleep(50 * G_TIME_SPAN_MILLISECOND);
  tb_tensor *tensor = NULL;
  gint64 start = g_get_monotonic_time();
  TB_ASSERT_STATUS(tb_channel_recv(&tensor, w.channel, 100), TB_ERR_TIMEOUT);
  gint64 waited_ms = (g_get_monotonic_time() - start) / 1000;
  assert_true(waited_ms >= 90 && waited_ms < 1000);
  tb_forge_greet(pair[0]);
  g_autoptr(GBytes) valid = tb_forge_tensor(NULL, 0);
  int memfd = tb_forge_memfd(TB_FORGE_FD_BYTES, MFD_ALLOW_SEALING);
  tb_forge_send_bytes(pair[0], valid, &memfd, 1);
  close(memfd);
  assert_int_equal(pthread_join(thread, NULL), 0);
  assert_int_equal(w.status, TB_OK);
  assert_int_equal(tb_tensor_dim(w.tensor, 0), 16);
  tb_tensor_unref(w.tensor);
  tb_channel_unref(w.channel);
  close(pair[0]);
}

/* Peers written by hand: one of version 1 only, and a newer one (versions
 * 1 to 40) whose hello has extension records this release does not know.
 * And one of versions 1 to 2. Both sides speak the highest version in
 * common (1, 3, then 2), every message carries it, and the extension list
 * of versions 2 and 3 is skipped entry by entry, unknown tags and all. A
 * message of another version is refused. */
static void old_and_newer_peers_interoperate(void **state) {
  (void)state;
  static const uint8_t unknown[] = {0x34, 0x12, 3, 0, 'n', 'e',
                                    'w',  0x99, 0, 0, 0};
  g_autofree char *name = socket_name();
  tb_listener *listener = NULL;
  TB_ASSERT_OK(tb_listener_listen(&listener, name));
  static const uint32_t peer_max[] = {1, 40, 2};
  for (size_t peer = 0; peer < G_N_ELEMENTS(peer_max); peer++) {
    /* 3: the newest version this release speaks. */
    uint32_t version = MIN(peer_max[peer], 3u);
    int raw = raw_dial(name);
    g_autoptr(GBytes) hello =
        peer_max[peer] == 40 ? tb_forge_hello(1, 40, unknown, sizeof unknown)
                             : tb_forge_hello(1, peer_max[peer], NULL, 0);
    tb_forge_send_bytes(raw, hello, NULL, 0);
    tb_channel *channel = NULL;
    TB_ASSERT_OK(tb_listener_accept(&channel, listener, PATIENCE_MS));
    /* Our hello: "TBHL" 'H', versions from 1. */
    uint8_t ours[4096];
    ssize_t length = recv(raw, ours, sizeof ours, 0);
    assert_true(length >= 32);
    assert_memory_equal(ours, "TBHLH", 5);
    uint32_t low;
    memcpy(&low, ours + 8, sizeof low);
    assert_int_equal(GUINT32_FROM_LE(low), 1);
    /* A tensor message as the peer writes it: from version 2 on with
     * extension entries of tags nobody defined, in version 3 with buffer
     * entries that say their memory kind (SHM). */
    g_autofree char *version_text = g_strdup_printf("uint32 %u", version);
    const tb_forge_edit edits[] = {
        {TB_FORGE_VERSION, version_text},
        {TB_FORGE_FIELDS,
         "[(uint16 4660, [byte 1, 2, 3]), (uint16 7, @ay [])]"},
        {TB_FORGE_BUFFERS, "@a(ityut) [(0, 7, 2, 0, 4096)]"}};
    g_autoptr(GBytes) valid = tb_forge_tensor(edits, version == 1   ? 0
                                                     : version == 2 ? 2
                                                                    : 3);
    int memfd = tb_forge_memfd(TB_FORGE_FD_BYTES, MFD_ALLOW_SEALING);
    tb_forge_send_bytes(raw, valid, &memfd, 1);
    tb_tensor *tensor = NULL;
    TB_ASSERT_OK(tb_channel_recv(&tensor, channel, PATIENCE_MS));
    const int64_t index[] = {15, 3};
    int64_t value = 0;
    TB_ASSERT_OK(tb_tensor_get_i64(&value, tensor, 2, index));
    assert_int_equal(value, 63);
    /* And back: the peer reads a message of the version in common. */
    TB_ASSERT_OK(tb_channel_send(channel, tensor, 0));
    static uint8_t back[65536]; /* its fd, unasked for, is not installed */
    ssize_t back_length = recv(raw, back, sizeof back, 0);
    assert_true(back_length >= 5);
    uint32_t back_version;
    memcpy(&back_version, back, sizeof back_version);
    assert_int_equal(GUINT32_FROM_LE(back_version), version);
    /* A message of the other version is refused, its fd closed. */
    const tb_forge_edit other[] = {{TB_FORGE_VERSION, "uint32 2"},
                                   {TB_FORGE_FIELDS, "@a(qay) []"}};
    g_autoptr(GBytes) wrong = tb_forge_tensor(other, version == 1 ? 2 : 0);
    tb_forge_send_bytes(raw, wrong, &memfd, 1);
    close(memfd);
    tb_tensor *refused = TB_SENTINEL(tb_tensor);
    TB_ASSERT_STATUS(tb_channel_recv(&refused, channel, PATIENCE_MS),
                     TB_ERR_PROTOCOL);
    tb_tensor_unref(tensor);
    tb_channel_unref(channel);
    close(raw);
  }
  tb_listener_free(listener);
}

/* A peer that said hello, sent a tensor and left before we adopted our end
 * (a quick child): the channel is made all the same, and what the peer
 * sent arrives before TB_ERR_CLOSED. */
static void a_peer_that_already_left_is_still_read(void **state) {
  (void)state;
  int pair[2];
  assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, pair),
                   0);
  g_autoptr(GBytes) hello = tb_forge_hello(1, 1, NULL, 0);
  tb_forge_send_bytes(pair[0], hello, NULL, 0);
  g_autoptr(GBytes) valid = tb_forge_tensor(NULL, 0);
  int memfd = tb_forge_memfd(TB_FORGE_FD_BYTES, MFD_ALLOW_SEALING);
  tb_forge_send_bytes(pair[0], valid, &memfd, 1);
  close(memfd);
  close(pair[0]);
  tb_channel *channel = NULL;
  TB_ASSERT_OK(tb_channel_from_fd(&channel, pair[1]));
  close(pair[1]);
  tb_tensor *tensor = NULL;
  TB_ASSERT_OK(tb_channel_recv(&tensor, channel, PATIENCE_MS));
  assert_int_equal(tb_tensor_dim(tensor, 0), 16);
  tb_tensor_unref(tensor);
  TB_ASSERT_STATUS(tb_channel_recv(&tensor, channel, PATIENCE_MS),
                   TB_ERR_CLOSED);
  tb_channel_unref(channel);
}

/* A listener that allows only another uid closes our connection unread
 * and keeps waiting; the dialer sees the close. */
static void uid_not_allowed_is_refused(void **state) {
  (void)state;
  g_autofree char *name = socket_name();
  const uint32_t others[] = {(uint32_t)getuid() + 1, (uint32_t)getuid() + 2};
  tb_listener_options opts;
  TB_ASSERT_OK(tb_listener_options_init(&opts, TB_LISTENER_OPTIONS_VERSION));
  opts.uids = others;
  opts.nuids = 2;
  tb_listener *listener = NULL;
  TB_ASSERT_OK(tb_listener_listen_with(&listener, name, &opts));
  tb_channel *client = NULL, *server = NULL;
  TB_ASSERT_OK(tb_channel_connect(&client, name, PATIENCE_MS));
  TB_ASSERT_STATUS(tb_listener_accept(&server, listener, 200), TB_ERR_TIMEOUT);
  assert_non_null(strstr(tb_last_error(), "refused"));
  tb_tensor *tensor = NULL;
  TB_ASSERT_STATUS(tb_channel_recv(&tensor, client, PATIENCE_MS),
                   TB_ERR_CLOSED);
  tb_channel_unref(client);
  tb_listener_free(listener);

  /* Our own uid listed (or any uid) is let in. */
  const uint32_t mine[] = {(uint32_t)getuid() + 1, (uint32_t)geteuid()};
  opts.uids = mine;
  TB_ASSERT_OK(tb_listener_listen_with(&listener, name, &opts));
  TB_ASSERT_OK(tb_channel_connect(&client, name, PATIENCE_MS));
  TB_ASSERT_OK(tb_listener_accept(&server, listener, PATIENCE_MS));
  tb_channel_unref(server);
  tb_channel_unref(client);
  tb_listener_free(listener);
  TB_ASSERT_OK(tb_listener_options_init(&opts, TB_LISTENER_OPTIONS_VERSION));
  opts.flags = TB_LISTENER_ANY_UID;
  TB_ASSERT_OK(tb_listener_listen_with(&listener, name, &opts));
  TB_ASSERT_OK(tb_channel_connect(&client, name, PATIENCE_MS));
  TB_ASSERT_OK(tb_listener_accept(&server, listener, PATIENCE_MS));
  tb_channel_unref(server);
  tb_channel_unref(client);
  tb_listener_free(listener);
}

static void dial_and_check_credentials(tb_peer_end *end, void *arg) {
  (void)end;
  tb_channel *channel = NULL;
  TB_PEER_ASSERT_OK(tb_channel_connect(&channel, arg, PATIENCE_MS));
  int64_t pid = 0, uid = 0, gid = 0;
  TB_PEER_ASSERT_OK(tb_channel_peer_credentials(channel, &pid, &uid, &gid));
  /* The listener's maker: the parent. */
  TB_PEER_ASSERT(pid == getppid() && uid == geteuid() && gid == getegid());
  /* The parent closes its end when it has checked ours. */
  tb_tensor *tensor = NULL;
  TB_PEER_ASSERT_STATUS(tb_channel_recv(&tensor, channel, PATIENCE_MS),
                        TB_ERR_CLOSED);
  tb_channel_unref(channel);
}

static void credentials_of_a_forked_peer(void **state) {
  (void)state;
  g_autofree char *name = socket_name();
  tb_listener *listener = NULL;
  TB_ASSERT_OK(tb_listener_listen(&listener, name));
  tb_peer_end end;
  pid_t child = tb_peer_start(&end, TB_PEER_RAW, dial_and_check_credentials,
                              TB_PEER_RAW, name);
  tb_channel *channel = NULL;
  TB_ASSERT_OK(tb_listener_accept(&channel, listener, PATIENCE_MS));
  int64_t pid = 0, uid = 0, gid = 0;
  TB_ASSERT_OK(tb_channel_peer_credentials(channel, &pid, &uid, &gid));
  assert_int_equal(pid, child);
  assert_int_equal(uid, geteuid());
  assert_int_equal(gid, getegid());
  /* Kept after the peer is gone; NULL out-parameters are skipped. */
  tb_channel_unref(channel);
  tb_peer_join(child);
  tb_peer_end_close(&end);
  tb_listener_free(listener);

  tb_channel *a = NULL, *b = NULL;
  TB_ASSERT_OK(tb_channel_pair(&a, &b));
  TB_ASSERT_OK(tb_channel_peer_credentials(a, &pid, NULL, NULL));
  assert_int_equal(pid, getpid());
  TB_ASSERT_STATUS(tb_channel_peer_credentials(NULL, &pid, &uid, &gid),
                   TB_ERR_INVALID_ARGUMENT);
  tb_channel_unref(a);
  tb_channel_unref(b);
}

/* A filesystem socket gets mode 0600 by default, or the mode asked for. */
static void listener_file_mode(void **state) {
  (void)state;
  g_autofree char *dir = g_dir_make_tmp("tb-hello-XXXXXX", NULL);
  assert_non_null(dir);
  g_autofree char *path = g_build_filename(dir, "socket", NULL);
  tb_listener *listener = NULL;
  struct stat st;
  TB_ASSERT_OK(tb_listener_listen(&listener, path));
  assert_int_equal(stat(path, &st), 0);
  assert_int_equal(st.st_mode & 0777, 0600);
  tb_listener_free(listener);
  tb_listener_options opts;
  TB_ASSERT_OK(tb_listener_options_init(&opts, 1));
  assert_int_equal(opts.mode, 0600);
  assert_int_equal(opts.hello_timeout_ms, TB_LISTENER_DEFAULT_HELLO_TIMEOUT_MS);
  opts.mode = 0660;
  TB_ASSERT_OK(tb_listener_listen_with(&listener, path, &opts));
  assert_int_equal(stat(path, &st), 0);
  assert_int_equal(st.st_mode & 0777, 0660);
  tb_listener_free(listener);
  assert_int_equal(rmdir(dir), 0);
}

static void listener_options_errors(void **state) {
  (void)state;
  g_autofree char *name = socket_name();
  tb_listener_options opts;
  tb_listener *listener = TB_SENTINEL(tb_listener);
  TB_ASSERT_STATUS(tb_listener_options_init(&opts, 0), TB_ERR_VERSION);
  TB_ASSERT_STATUS(tb_listener_options_init(&opts, 3), TB_ERR_VERSION);
  TB_ASSERT_STATUS(tb_listener_options_init(NULL, 1), TB_ERR_INVALID_ARGUMENT);
  const uint32_t uid = 0;
  const struct {
    uint32_t version, mode, flags;
    const uint32_t *uids;
    size_t nuids;
    int32_t hello_timeout_ms;
    tb_status expected;
  } bad[] = {
      {3, 0600, 0, NULL, 0, 1000, TB_ERR_VERSION},
      {1, 01777, 0, NULL, 0, 1000, TB_ERR_INVALID_ARGUMENT},
      {1, 0600, 0x2, NULL, 0, 1000, TB_ERR_INVALID_ARGUMENT},
      {1, 0600, 0, NULL, 1, 1000, TB_ERR_INVALID_ARGUMENT},
      {1, 0600, TB_LISTENER_ANY_UID, &uid, 1, 1000, TB_ERR_INVALID_ARGUMENT},
      {1, 0600, 0, NULL, 0, 0, TB_ERR_INVALID_ARGUMENT},
  };
  for (size_t i = 0; i < G_N_ELEMENTS(bad); i++) {
    TB_ASSERT_OK(tb_listener_options_init(&opts, TB_LISTENER_OPTIONS_VERSION));
    opts.version = bad[i].version;
    opts.mode = bad[i].mode;
    opts.flags = bad[i].flags;
    opts.uids = bad[i].uids;
    opts.nuids = bad[i].nuids;
    opts.hello_timeout_ms = bad[i].hello_timeout_ms;
    TB_ASSERT_STATUS(tb_listener_listen_with(&listener, name, &opts),
                     bad[i].expected);
  }
  assert_ptr_equal(listener, TB_SENTINEL(tb_listener));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      TB_TEST(hostile_hellos_refused_at_accept),
      TB_TEST(hostile_hellos_refused_on_adopted_channel),
      TB_TEST(silent_peer_times_out),
      TB_TEST(a_timed_call_does_not_wait_behind_the_hello),
      TB_TEST(old_and_newer_peers_interoperate),
      TB_TEST(a_peer_that_already_left_is_still_read),
      TB_TEST(uid_not_allowed_is_refused),
      TB_TEST(credentials_of_a_forked_peer),
      TB_TEST(listener_file_mode),
      TB_TEST(listener_options_errors),
  };
  return TB_RUN_TESTS(tests);
}
