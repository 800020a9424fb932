/* The bounded buffer caches of a channel (core/sharing/peer_cache.c): the
 * sender's mirror (which buffers go with fds, what the peer is told to
 * forget, acknowledgements) and the receiver's cache (its limits). */
#include "tb_test.h"
#include "sharing/peer_cache.h"

#include <string.h>
#include <unistd.h>

static uint64_t page(void) { return (uint64_t)sysconf(_SC_PAGESIZE); }

/* A live buffer of `pages` pages (its id counts as alive while it lives). */
static tb_buffer *buffer_of(uint64_t pages) {
  tb_alloc_options opts = TB_ALLOC_OPTIONS_INIT;
  opts.memory = TB_MEMORY_HEAP;
  tb_buffer *buffer = NULL;
  TB_ASSERT_OK(tb_buffer_new(&buffer, pages * page(), &opts));
  return buffer;
}

/* Plans and commits a message of one buffer; gives whether its fd went and
 * copies the forget list into `forgot` (up to 8; *nforgot the count). */
static gboolean send_one(TbPeerMirror *mirror, tb_buffer *buffer,
                         uint64_t *serial, uint64_t *forgot, size_t *nforgot) {
  const TbWireWindow window = tb_wire_window_of(buffer);
  g_auto(TbMirrorPlan) plan = {0};
  GError *error = NULL;
  assert_true(tb_peer_mirror_plan(mirror, &buffer->id, &window, 1, FALSE,
                                  &plan, &error));
  assert_null(error);
  tb_peer_mirror_commit(mirror, &plan);
  if (serial != NULL)
    *serial = plan.serial;
  if (nforgot != NULL) {
    *nforgot = plan.forget->len;
    for (guint i = 0; i < plan.forget->len && i < 8; i++)
      forgot[i] = g_array_index(plan.forget, uint64_t, i);
  }
  return plan.with_fd[0];
}

/* Versions 1 and 2: the fd goes once, the peer holds the buffer from then
 * on, and a share that turns read-only sends it again. */
static void without_acks_the_fd_goes_once(void **state) {
  (void)state;
  TbPeerMirror *mirror = tb_peer_mirror_new(FALSE, 0, 0);
  tb_buffer *buffer = buffer_of(1);
  assert_true(send_one(mirror, buffer, NULL, NULL, NULL));
  const TbWireWindow whole = tb_wire_window_of(buffer);
  assert_true(tb_peer_mirror_holds(mirror, buffer->id, whole, FALSE));
  assert_false(tb_peer_mirror_holds(mirror, buffer->id, whole, TRUE));
  assert_false(send_one(mirror, buffer, NULL, NULL, NULL));
  assert_false(tb_peer_mirror_awaits_acks(mirror));
  g_auto(TbMirrorPlan) plan = {0};
  assert_true(tb_peer_mirror_plan(mirror, &buffer->id, &whole, 1, TRUE, &plan,
                                  NULL));
  assert_true(plan.with_fd[0]);
  tb_buffer_unref(buffer);
  tb_peer_mirror_free(mirror);
}

/* Version 3: the fd goes until the import is acknowledged; only the ack
 * of the latest message that carried it counts. */
static void with_acks_the_fd_goes_until_acknowledged(void **state) {
  (void)state;
  TbPeerMirror *mirror = tb_peer_mirror_new(TRUE, 0, 0);
  tb_buffer *buffer = buffer_of(2);
  const TbWireWindow whole = tb_wire_window_of(buffer);
  uint64_t first, second, third;
  assert_true(send_one(mirror, buffer, &first, NULL, NULL));
  assert_true(tb_peer_mirror_awaits_acks(mirror));
  assert_false(tb_peer_mirror_holds(mirror, buffer->id, whole, FALSE));
  assert_true(send_one(mirror, buffer, &second, NULL, NULL));
  assert_true(second > first);
  /* The first import failed at the peer (say); its ack of an older
   * message, were one to come, must not make the buffer held. */
  tb_peer_mirror_ack(mirror, first, buffer->id, whole);
  assert_false(tb_peer_mirror_holds(mirror, buffer->id, whole, FALSE));
  tb_peer_mirror_ack(mirror, second, buffer->id + 1000, whole); /* unknown */
  /* More than planned, or a window that wraps around: not believed. */
  tb_peer_mirror_ack(mirror, second, buffer->id,
                     (TbWireWindow){0, 3 * page()});
  tb_peer_mirror_ack(mirror, second, buffer->id,
                     (TbWireWindow){G_MAXUINT64 - 10, 20});
  assert_false(tb_peer_mirror_holds(mirror, buffer->id, whole, FALSE));
  tb_peer_mirror_ack(mirror, second, buffer->id, whole);
  assert_true(tb_peer_mirror_holds(mirror, buffer->id, whole, FALSE));
  assert_false(tb_peer_mirror_awaits_acks(mirror));
  assert_int_equal(tb_peer_mirror_bytes(mirror), 2 * page());
  assert_false(send_one(mirror, buffer, &third, NULL, NULL));
  assert_int_equal(third, 0); /* no fd, no serial */
  tb_buffer_unref(buffer);
  tb_peer_mirror_free(mirror);
}

/* The peer keeps 3 buffers: the least recently sent is forgotten first,
 * and a buffer sent again counts as recent. */
static void the_least_recently_sent_is_forgotten(void **state) {
  (void)state;
  TbPeerMirror *mirror = tb_peer_mirror_new(FALSE, 3, 0);
  tb_buffer *b[5];
  for (size_t i = 0; i < 5; i++)
    b[i] = buffer_of(1);
  uint64_t forgot[8];
  size_t nforgot;
  for (size_t i = 0; i < 3; i++) {
    assert_true(send_one(mirror, b[i], NULL, forgot, &nforgot));
    assert_int_equal(nforgot, 0);
  }
  assert_false(send_one(mirror, b[0], NULL, forgot, &nforgot)); /* recent */
  assert_true(send_one(mirror, b[3], NULL, forgot, &nforgot));
  assert_int_equal(nforgot, 1);
  assert_int_equal(forgot[0], b[1]->id);
  assert_true(send_one(mirror, b[4], NULL, forgot, &nforgot));
  assert_int_equal(nforgot, 1);
  assert_int_equal(forgot[0], b[2]->id);
  assert_int_equal(tb_peer_mirror_count(mirror), 3);
  assert_false(
      tb_peer_mirror_holds(mirror, b[1]->id, tb_wire_window_of(b[1]), FALSE));
  /* A forgotten buffer goes with its fd again. */
  assert_true(send_one(mirror, b[1], NULL, forgot, &nforgot));
  assert_int_equal(forgot[0], b[0]->id);
  for (size_t i = 0; i < 5; i++)
    tb_buffer_unref(b[i]);
  tb_peer_mirror_free(mirror);
}

/* Buffers that died are forgotten with the next message, before any
 * live one is evicted; bytes limits evict as many as they need. */
static void dead_buffers_go_first_and_bytes_count(void **state) {
  (void)state;
  TbPeerMirror *mirror = tb_peer_mirror_new(FALSE, 0, 4 * page());
  tb_buffer *small[3] = {buffer_of(1), buffer_of(1), buffer_of(1)};
  uint64_t forgot[8];
  size_t nforgot;
  for (size_t i = 0; i < 3; i++)
    send_one(mirror, small[i], NULL, forgot, &nforgot);
  uint64_t dead = small[1]->id;
  g_clear_pointer(&small[1], tb_buffer_unref);
  tb_buffer *big = buffer_of(3); /* 1 + 1 + 3 pages: one more must go */
  assert_true(send_one(mirror, big, NULL, forgot, &nforgot));
  assert_int_equal(nforgot, 2);
  assert_int_equal(forgot[0], dead);
  assert_int_equal(forgot[1], small[0]->id);
  assert_int_equal(tb_peer_mirror_bytes(mirror), 4 * page());
  assert_int_equal(tb_peer_mirror_count(mirror), 2);
  tb_buffer_unref(small[0]);
  tb_buffer_unref(small[2]);
  tb_buffer_unref(big);
  tb_peer_mirror_free(mirror);
}

/* However many buffers died, one message forgets at most 2048 of them
 * (its size stays far below what a receiver accepts); the next message
 * forgets the rest. */
static void dead_buffers_are_forgotten_in_batches(void **state) {
  (void)state;
  enum { SENT = 2100 };
  TbPeerMirror *mirror = tb_peer_mirror_new(FALSE, 0, 0);
  tb_buffer **sent = g_new(tb_buffer *, SENT);
  for (int i = 0; i < SENT; i++) {
    sent[i] = buffer_of(1);
    send_one(mirror, sent[i], NULL, NULL, NULL);
  }
  for (int i = 0; i < SENT; i++)
    tb_buffer_unref(sent[i]);
  g_free(sent);
  tb_buffer *live = buffer_of(1);
  size_t nforgot;
  uint64_t forgot[8];
  send_one(mirror, live, NULL, forgot, &nforgot);
  assert_int_equal(nforgot, 2048);
  send_one(mirror, live, NULL, forgot, &nforgot);
  assert_int_equal(nforgot, SENT - 2048);
  assert_int_equal(tb_peer_mirror_count(mirror), 1);
  tb_buffer_unref(live);
  tb_peer_mirror_free(mirror);
}

/* A tensor alone over the peer's limits cannot be sent; nothing changes. */
static void a_message_alone_over_the_limits_is_refused(void **state) {
  (void)state;
  TbPeerMirror *mirror = tb_peer_mirror_new(TRUE, 8, 2 * page());
  tb_buffer *big = buffer_of(3);
  const TbWireWindow whole = tb_wire_window_of(big);
  TbMirrorPlan plan = {0};
  GError *error = NULL;
  assert_false(
      tb_peer_mirror_plan(mirror, &big->id, &whole, 1, FALSE, &plan, &error));
  assert_int_equal(error->code, TB_ERR_OUT_OF_RANGE);
  assert_non_null(strstr(error->message, "limits"));
  g_error_free(error);
  assert_null(plan.forget);
  assert_int_equal(tb_peer_mirror_count(mirror), 0);
  tb_buffer_unref(big);
  tb_peer_mirror_free(mirror);
}

/* Windows: the peer maps what messages use of a buffer. One that needs
 * pages the peer's window lacks sends the fd again, and the peer then maps
 * that message's window (its old one did not cover it); one within the
 * window goes without fd. Bytes count windows, not buffers. */
static void windows_decide_the_fd_and_the_bytes(void **state) {
  (void)state;
  TbPeerMirror *mirror = tb_peer_mirror_new(FALSE, 0, 0);
  tb_buffer *buffer = buffer_of(16);
  const uint64_t id = buffer->id;
  const TbWireWindow head = {0, 2 * page()}, first = {0, page()},
                     tail = {8 * page(), page()};
  g_auto(TbMirrorPlan) plan = {0};
  assert_true(tb_peer_mirror_plan(mirror, &id, &head, 1, FALSE, &plan, NULL));
  assert_true(plan.with_fd[0]);
  tb_peer_mirror_commit(mirror, &plan);
  assert_int_equal(tb_peer_mirror_bytes(mirror), 2 * page());
  tb_peer_mirror_plan_clear(&plan);
  assert_true(tb_peer_mirror_plan(mirror, &id, &first, 1, FALSE, &plan, NULL));
  assert_false(plan.with_fd[0]);
  tb_peer_mirror_commit(mirror, &plan);
  tb_peer_mirror_plan_clear(&plan);
  assert_true(tb_peer_mirror_plan(mirror, &id, &tail, 1, FALSE, &plan, NULL));
  assert_true(plan.with_fd[0]);
  tb_peer_mirror_commit(mirror, &plan);
  assert_int_equal(tb_peer_mirror_bytes(mirror), page());
  assert_false(tb_peer_mirror_holds(mirror, id, head, FALSE));
  assert_true(tb_peer_mirror_holds(mirror, id, tail, FALSE));
  assert_true(tb_wire_window_covers(head, first));
  assert_false(tb_wire_window_covers(first, head));
  assert_true(tb_wire_window_covers(first, (TbWireWindow){G_MAXUINT64, 0}));
  tb_buffer_unref(buffer);
  tb_peer_mirror_free(mirror);
}

/* The receiver's cache: refused past its limits (after forgets), an id
 * cached again replaces its entry, forgetting frees the entry. */
static void the_receivers_cache_keeps_its_limits(void **state) {
  (void)state;
  TbPeerCache *cache = tb_peer_cache_new(2, 3 * page());
  tb_buffer *a = buffer_of(1), *b = buffer_of(2), *c = buffer_of(1);
  uint64_t ids[] = {10, 11, 12}, bytes[] = {page(), 2 * page(), page()};
  GError *error = NULL;
  assert_true(tb_peer_cache_admit(cache, ids, bytes, 2, NULL));
  tb_peer_cache_insert(cache, ids[0], tb_buffer_ref(a), bytes[0]);
  tb_peer_cache_insert(cache, ids[1], tb_buffer_ref(b), bytes[1]);
  assert_false(tb_peer_cache_admit(cache, &ids[2], &bytes[2], 1, &error));
  assert_int_equal(error->code, TB_ERR_PROTOCOL);
  assert_non_null(strstr(error->message, "limit of 2 buffers"));
  g_clear_error(&error);
  /* The same id again replaces: no new entry, bytes by the difference. */
  assert_true(tb_peer_cache_admit(cache, &ids[1], &bytes[0], 1, NULL));
  tb_buffer *found = tb_peer_cache_lookup(cache, 11);
  assert_ptr_equal(found, b);
  tb_buffer_unref(found);
  tb_peer_cache_forget(cache, &ids[0], 1);
  assert_null(tb_peer_cache_lookup(cache, 10));
  assert_int_equal(tb_peer_cache_count(cache), 1);
  assert_int_equal(tb_peer_cache_bytes(cache), 2 * page());
  /* Bytes: 2 + 1 pages fit; 2 + 2 do not. */
  uint64_t two_pages = 2 * page();
  assert_true(tb_peer_cache_admit(cache, &ids[2], &bytes[2], 1, NULL));
  assert_false(tb_peer_cache_admit(cache, &ids[2], &two_pages, 1, &error));
  assert_non_null(strstr(error->message, "bytes"));
  g_clear_error(&error);
  tb_peer_cache_free(cache);
  tb_buffer_unref(a);
  tb_buffer_unref(b);
  tb_buffer_unref(c);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      TB_TEST(without_acks_the_fd_goes_once),
      TB_TEST(with_acks_the_fd_goes_until_acknowledged),
      TB_TEST(the_least_recently_sent_is_forgotten),
      TB_TEST(dead_buffers_go_first_and_bytes_count),
      TB_TEST(dead_buffers_are_forgotten_in_batches),
      TB_TEST(a_message_alone_over_the_limits_is_refused),
      TB_TEST(windows_decide_the_fd_and_the_bytes),
      TB_TEST(the_receivers_cache_keeps_its_limits),
  };
  return TB_RUN_TESTS(tests);
}
