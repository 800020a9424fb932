/* Pools: a fixed set of buffers recycled locally and across processes,
 * where a consumer's drop sends the buffer home. */
#include "tb_forge.h"
#include "tb_peer.h"

#include <signal.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define PATIENCE_MS 10000
enum { POOL_SIZE = 3, FRAMES = 60, FRAME_LENGTH = 1024 };

static tb_pool *new_pool(tb_memory memory, size_t count) {
  const int64_t shape[] = {FRAME_LENGTH};
  tb_tensor *prototype = tb_test_arange(TB_DTYPE_U32, 1, shape, memory);
  tb_pool *pool = NULL;
  TB_ASSERT_OK(tb_pool_new(&pool, prototype, count));
  tb_tensor_unref(prototype);
  return pool;
}

/* Whether `id` is among the first `count` of `ids`; appends it if not. */
static bool seen_before(uint64_t *ids, size_t *count, uint64_t id) {
  for (size_t i = 0; i < *count; i++)
    if (ids[i] == id)
      return true;
  ids[(*count)++] = id;
  return false;
}

/* Acquires every tensor of the pool at once (waiting for those still out to
 * come back), then drops them all. */
static void assert_all_come_home(tb_pool *pool) {
  size_t size = tb_pool_size(pool);
  tb_tensor **all = test_calloc(size, sizeof *all);
  for (size_t i = 0; i < size; i++)
    TB_ASSERT_OK(tb_pool_acquire(&all[i], pool, PATIENCE_MS));
  for (size_t i = 0; i < size; i++)
    tb_tensor_unref(all[i]);
  test_free(all);
  assert_int_equal(tb_pool_available(pool), size);
}

static void rejects_bad_arguments(void **state) {
  (void)state;
  const int64_t shape[] = {4};
  tb_tensor *prototype = tb_test_arange(TB_DTYPE_U8, 1, shape, TB_MEMORY_SHM);
  tb_pool *pool = TB_SENTINEL(tb_pool);
  TB_ASSERT_STATUS(tb_pool_new(NULL, prototype, 1), TB_ERR_INVALID_ARGUMENT);
  TB_ASSERT_STATUS(tb_pool_new(&pool, NULL, 1), TB_ERR_INVALID_ARGUMENT);
  TB_ASSERT_STATUS(tb_pool_new(&pool, prototype, 0), TB_ERR_INVALID_ARGUMENT);
  TB_ASSERT_STATUS(tb_pool_new(&pool, prototype, 1025),
                   TB_ERR_INVALID_ARGUMENT);
  assert_ptr_equal(pool, TB_SENTINEL(tb_pool));
  TB_ASSERT_OK(tb_pool_new(&pool, prototype, 1024));
  assert_int_equal(tb_pool_size(pool), 1024);
  tb_tensor *tensor = TB_SENTINEL(tb_tensor);
  TB_ASSERT_STATUS(tb_pool_acquire(NULL, pool, 0), TB_ERR_INVALID_ARGUMENT);
  TB_ASSERT_STATUS(tb_pool_acquire(&tensor, NULL, 0), TB_ERR_INVALID_ARGUMENT);
  assert_ptr_equal(tensor, TB_SENTINEL(tb_tensor));
  assert_int_equal(tb_pool_size(NULL), 0);
  assert_int_equal(tb_pool_available(NULL), 0);
  assert_null(tb_pool_ref(NULL));
  tb_pool_unref(NULL);
  assert_ptr_equal(tb_pool_ref(pool), pool);
  tb_pool_unref(pool);
  tb_pool_unref(pool);
  tb_tensor_unref(prototype);
}

static void buffers_come_back_when_dropped(void **state) {
  (void)state;
  tb_pool *pool = new_pool(TB_MEMORY_HEAP, POOL_SIZE);
  assert_int_equal(tb_pool_size(pool), POOL_SIZE);
  assert_int_equal(tb_pool_available(pool), POOL_SIZE);
  uint64_t ids[POOL_SIZE * 2];
  size_t distinct = 0;
  for (int round = 0; round < 20; round++) {
    tb_tensor *tensor = NULL;
    TB_ASSERT_OK(tb_pool_acquire(&tensor, pool, 0));
    assert_int_equal(tb_pool_available(pool), POOL_SIZE - 1);
    assert_int_equal(tb_tensor_numel(tensor), FRAME_LENGTH);
    assert_int_equal(tb_tensor_memory(tensor), TB_MEMORY_HEAP);
    seen_before(ids, &distinct, tb_tensor_buffer_id(tensor));
    /* What the last user left stays: nothing is cleared on the way. */
    const int64_t index[] = {0};
    int64_t value = 0;
    TB_ASSERT_OK(tb_tensor_get_i64(&value, tensor, 1, index));
    assert_int_equal(value, round < POOL_SIZE ? 0 : round - POOL_SIZE);
    TB_ASSERT_OK(tb_tensor_set_i64(tensor, 1, index, round));
    tb_tensor_unref(tensor);
    assert_int_equal(tb_pool_available(pool), POOL_SIZE);
  }
  /* The buffers go round in turn, and no new one is ever made. */
  assert_int_equal(distinct, POOL_SIZE);
  tb_pool_unref(pool);
}

static void acquire_times_out_when_all_are_out(void **state) {
  (void)state;
  tb_pool *pool = new_pool(TB_MEMORY_SHM, 2);
  tb_tensor *first = NULL, *second = NULL, *third = TB_SENTINEL(tb_tensor);
  TB_ASSERT_OK(tb_pool_acquire(&first, pool, 0));
  TB_ASSERT_OK(tb_pool_acquire(&second, pool, -1));
  assert_int_equal(tb_pool_available(pool), 0);
  TB_ASSERT_STATUS(tb_pool_acquire(&third, pool, 0), TB_ERR_TIMEOUT);
  int64_t start = tb_peer_now_ms();
  TB_ASSERT_STATUS(tb_pool_acquire(&third, pool, 80), TB_ERR_TIMEOUT);
  int64_t elapsed = tb_peer_now_ms() - start;
  assert_true(elapsed >= 79 && elapsed < 2080);
  assert_ptr_equal(third, TB_SENTINEL(tb_tensor));
  tb_tensor_unref(first);
  TB_ASSERT_OK(tb_pool_acquire(&third, pool, 0));
  tb_tensor_unref(second);
  tb_tensor_unref(third);
  tb_pool_unref(pool);
}

static void views_hold_the_buffer_out(void **state) {
  (void)state;
  /* A pool laid out like a view: offset, strides, name and quantization. */
  tb_tensor *prototype = tb_forge_example(0);
  tb_pool *pool = NULL;
  TB_ASSERT_OK(tb_pool_new(&pool, prototype, 2));
  tb_tensor *tensor = NULL;
  TB_ASSERT_OK(tb_pool_acquire(&tensor, pool, 0));
  assert_int_equal(tb_tensor_dtype(tensor), TB_DTYPE_I16);
  assert_int_equal(tb_tensor_offset(tensor), tb_tensor_offset(prototype));
  for (size_t d = 0; d < 2; d++) {
    assert_int_equal(tb_tensor_dim(tensor, d), tb_tensor_dim(prototype, d));
    assert_int_equal(tb_tensor_stride(tensor, d),
                     tb_tensor_stride(prototype, d));
  }
  assert_string_equal(tb_tensor_name(tensor), tb_tensor_name(prototype));
  assert_int_equal(tb_tensor_quantization_count(tensor), 4);
  assert_true(tb_tensor_buffer_id(tensor) != tb_tensor_buffer_id(prototype));
  tb_tensor_unref(prototype);

  /* Views and maps of a pooled tensor keep its buffer out of the pool. */
  tb_tensor *view = NULL, *reshaped = NULL;
  TB_ASSERT_OK(tb_tensor_slice(&view, tensor, 0, 1, 3, 1));
  tb_map *map = NULL;
  TB_ASSERT_OK(tb_tensor_map(&map, view, TB_MAP_READ));
  tb_tensor_unref(tensor);
  assert_int_equal(tb_pool_available(pool), 1);
  tb_tensor_unref(view);
  assert_int_equal(tb_pool_available(pool), 1);
  tb_map_free(map);
  assert_int_equal(tb_pool_available(pool), 2);

  /* A reshape of a contiguous pooled tensor, likewise. */
  const int64_t shape[] = {FRAME_LENGTH};
  tb_tensor *flat_prototype =
      tb_test_arange(TB_DTYPE_U32, 1, shape, TB_MEMORY_SHM);
  tb_pool *flat = NULL;
  TB_ASSERT_OK(tb_pool_new(&flat, flat_prototype, 1));
  tb_tensor_unref(flat_prototype);
  TB_ASSERT_OK(tb_pool_acquire(&tensor, flat, 0));
  const int64_t square[] = {32, 32};
  TB_ASSERT_OK(tb_tensor_reshape(&reshaped, tensor, 2, square));
  tb_tensor_unref(tensor);
  assert_int_equal(tb_pool_available(flat), 0);
  tb_tensor_unref(reshaped);
  assert_int_equal(tb_pool_available(flat), 1);
  tb_pool_unref(flat);
  tb_pool_unref(pool);
}

static void tensors_outlive_their_pool(void **state) {
  (void)state;
  tb_pool *pool = new_pool(TB_MEMORY_SHM, 2);
  tb_tensor *tensor = NULL;
  TB_ASSERT_OK(tb_pool_acquire(&tensor, pool, 0));
  tb_pool_unref(pool);
  const int64_t index[] = {FRAME_LENGTH - 1};
  TB_ASSERT_OK(tb_tensor_set_i64(tensor, 1, index, 77));
  tb_tensor_unref(tensor); /* the last reference: everything goes */
}

static void heap_pool_tensors_cannot_be_sent(void **state) {
  (void)state;
  tb_pool *pool = new_pool(TB_MEMORY_HEAP, 1);
  tb_channel *a = NULL, *b = NULL;
  TB_ASSERT_OK(tb_channel_pair(&a, &b));
  tb_tensor *tensor = NULL;
  TB_ASSERT_OK(tb_pool_acquire(&tensor, pool, 0));
  TB_ASSERT_STATUS(tb_channel_send(a, tensor, 0), TB_ERR_UNSUPPORTED);
  tb_tensor_unref(tensor);
  /* The refused send kept no hold on the buffer. */
  assert_int_equal(tb_pool_available(pool), 1);
  tb_channel_unref(a);
  tb_channel_unref(b);
  tb_pool_unref(pool);
}

/* ---- across processes ---------------------------------------------------- */

/* Child: reads each frame, leaves a mark in it, drops it; the buffers it
 * sees are the pool's few, mapped once. */
static void consume_frames(tb_peer_end *end, void *arg) {
  (void)arg;
  uint64_t ids[FRAMES];
  size_t distinct = 0;
  tb_test_snapshot settled = {0};
  for (uint32_t frame = 0; frame < FRAMES; frame++) {
    tb_tensor *tensor = NULL;
    TB_PEER_ASSERT_OK(tb_channel_recv(&tensor, end->channel, PATIENCE_MS));
    const int64_t first[] = {0}, second[] = {1};
    int64_t value = -1;
    TB_PEER_ASSERT_OK(tb_tensor_get_i64(&value, tensor, 1, first));
    TB_PEER_ASSERT(value == frame);
    TB_PEER_ASSERT_OK(tb_tensor_set_i64(tensor, 1, second, 1000 + frame));
    bool repeated = seen_before(ids, &distinct, tb_tensor_buffer_id(tensor));
    /* From the pool's size on, every frame reuses a mapping: no new fd
     * arrives, so nothing new is imported. */
    TB_PEER_ASSERT(repeated == (frame >= POOL_SIZE));
    tb_tensor_unref(tensor);
    if (frame == POOL_SIZE - 1)
      settled = tb_peer_snapshot();
  }
  TB_PEER_ASSERT(distinct == POOL_SIZE);
  tb_test_snapshot finish = tb_peer_snapshot();
  TB_PEER_ASSERT(finish.open_fds == settled.open_fds);
  TB_PEER_ASSERT(finish.live_objects == settled.live_objects);
}

static void frames_go_round_between_processes(void **state) {
  (void)state;
  tb_pool *pool = new_pool(TB_MEMORY_SHM, POOL_SIZE);
  tb_peer_end end;
  pid_t child = tb_peer_start(&end, TB_PEER_CHANNEL, consume_frames,
                              TB_PEER_CHANNEL, NULL);
  uint64_t ids[POOL_SIZE + 1];
  size_t distinct = 0;
  for (uint32_t frame = 0; frame < FRAMES; frame++) {
    tb_tensor *tensor = NULL;
    TB_ASSERT_OK(tb_pool_acquire(&tensor, pool, PATIENCE_MS));
    bool repeated = seen_before(ids, &distinct, tb_tensor_buffer_id(tensor));
    assert_int_equal(repeated, frame >= POOL_SIZE);
    const int64_t first[] = {0}, second[] = {1};
    if (frame >= POOL_SIZE) {
      /* The consumer's mark from this buffer's previous round. */
      int64_t mark = 0;
      TB_ASSERT_OK(tb_tensor_get_i64(&mark, tensor, 1, second));
      assert_int_equal(mark, 1000 + frame - POOL_SIZE);
    }
    TB_ASSERT_OK(tb_tensor_set_i64(tensor, 1, first, frame));
    TB_ASSERT_OK(tb_channel_send(end.channel, tensor, 0));
    tb_tensor_unref(tensor);
  }
  assert_int_equal(distinct, POOL_SIZE);
  tb_peer_join(child);
  /* The consumer is gone; every buffer comes home. */
  assert_all_come_home(pool);
  tb_peer_end_close(&end);
  tb_pool_unref(pool);
}

static void only_the_first_rounds_carry_fds(void **state) {
  (void)state;
  /* The consumer is played by hand on a raw socket, so the fds on each
   * message can be counted and the releases written. */
  int pair[2];
  assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, pair),
                   0);
  tb_channel *producer = NULL;
  TB_ASSERT_OK(tb_channel_from_fd(&producer, pair[0]));
  close(pair[0]);
  tb_forge_greet(pair[1]);
  tb_pool *pool = new_pool(TB_MEMORY_SHM, POOL_SIZE);
  for (uint32_t frame = 0; frame < 20; frame++) {
    tb_tensor *tensor = NULL;
    TB_ASSERT_OK(tb_pool_acquire(&tensor, pool, PATIENCE_MS));
    TB_ASSERT_OK(tb_channel_send(producer, tensor, 0));
    tb_tensor_unref(tensor);
    int fds[4];
    size_t nfds = 0;
    g_autoptr(GVariant) message = tb_forge_receive(pair[1], fds, 4, &nfds);
    assert_int_equal(nfds, frame < POOL_SIZE ? 1 : 0);
    for (size_t i = 0; i < nfds; i++)
      close(fds[i]);
    g_autoptr(GVariant) buffers =
        g_variant_get_child_value(message, TB_FORGE_BUFFERS);
    assert_int_equal(g_variant_n_children(buffers), 1);
    gint32 fd_index = 0;
    guint64 id = 0, lease = 0;
    g_variant_get_child(buffers, 0, "(it)", &fd_index, &id);
    assert_int_equal(fd_index, frame < POOL_SIZE ? 0 : -1);
    g_variant_get_child(message, TB_FORGE_LEASE, "t", &lease);
    assert_true(lease != 0);
    g_autoptr(GBytes) release_message = tb_forge_release(lease);
    tb_forge_send_bytes(pair[1], release_message, NULL, 0);
  }
  /* Releases are read when the pool runs dry. */
  assert_all_come_home(pool);
  close(pair[1]);
  tb_channel_unref(producer);
  tb_pool_unref(pool);
}

/* Child: receives `*take` frames and keeps them, says so, and waits to be
 * killed. */
static void hoard_frames(tb_peer_end *end, void *arg) {
  const int *take = arg;
  tb_tensor *hoard[POOL_SIZE];
  for (int i = 0; i < *take; i++)
    TB_PEER_ASSERT_OK(tb_channel_recv(&hoard[i], end->channel, PATIENCE_MS));
  tb_peer_send_step(end, 1);
  pause();
}

static void buffers_come_home_when_the_consumer_dies(void **state) {
  (void)state;
  /* The consumer dies holding every frame it read, or with frames it never
   * read still queued. */
  const int takes[] = {POOL_SIZE, 1};
  for (size_t t = 0; t < sizeof takes / sizeof *takes; t++) {
    tb_pool *pool = new_pool(TB_MEMORY_SHM, POOL_SIZE);
    tb_peer_end end;
    pid_t child = tb_peer_start(&end, TB_PEER_CHANNEL, hoard_frames,
                                TB_PEER_CHANNEL, (void *)&takes[t]);
    for (int i = 0; i < POOL_SIZE; i++) {
      tb_tensor *tensor = NULL;
      TB_ASSERT_OK(tb_pool_acquire(&tensor, pool, 0));
      TB_ASSERT_OK(tb_channel_send(end.channel, tensor, 0));
      tb_tensor_unref(tensor);
    }
    tb_peer_expect_step(&end, 1);
    tb_tensor *tensor = TB_SENTINEL(tb_tensor);
    TB_ASSERT_STATUS(tb_pool_acquire(&tensor, pool, 50), TB_ERR_TIMEOUT);
    assert_int_equal(kill(child, SIGKILL), 0);
    int status = tb_peer_reap(child);
    assert_true(WIFSIGNALED(status));
    assert_all_come_home(pool);
    tb_peer_end_close(&end);
    tb_pool_unref(pool);
  }
}

/* Child: makes a view of the frame, drops the frame, and drops the view
 * only when told. */
static void keep_a_view(tb_peer_end *end, void *arg) {
  (void)arg;
  tb_tensor *tensor = NULL, *view = NULL;
  TB_PEER_ASSERT_OK(tb_channel_recv(&tensor, end->channel, PATIENCE_MS));
  TB_PEER_ASSERT_OK(tb_tensor_slice(&view, tensor, 0, 10, 20, 2));
  tb_tensor_unref(tensor);
  tb_peer_send_step(end, 1);
  tb_peer_expect_step(end, 2);
  tb_tensor_unref(view);
  tb_peer_expect_step(end, 3);
}

static void a_remote_view_holds_the_buffer_out(void **state) {
  (void)state;
  tb_pool *pool = new_pool(TB_MEMORY_SHM, 1);
  tb_peer_end end;
  pid_t child =
      tb_peer_start(&end, TB_PEER_CHANNEL, keep_a_view, TB_PEER_CHANNEL, NULL);
  tb_tensor *tensor = NULL;
  TB_ASSERT_OK(tb_pool_acquire(&tensor, pool, 0));
  TB_ASSERT_OK(tb_channel_send(end.channel, tensor, 0));
  tb_tensor_unref(tensor);
  tb_peer_expect_step(&end, 1);
  /* The consumer dropped the frame but holds a view of it. */
  tensor = TB_SENTINEL(tb_tensor);
  TB_ASSERT_STATUS(tb_pool_acquire(&tensor, pool, 100), TB_ERR_TIMEOUT);
  tb_peer_send_step(&end, 2);
  TB_ASSERT_OK(tb_pool_acquire(&tensor, pool, PATIENCE_MS));
  tb_tensor_unref(tensor);
  tb_peer_send_step(&end, 3);
  tb_peer_join(child);
  tb_peer_end_close(&end);
  tb_pool_unref(pool);
}

/* ---- waiting on many channels (issue 9, finding 6) --------------------- */

enum { MANY_CHANNELS = 70 };

/* One tensor, sent on 70 channels, comes back only when all 70 releases
 * are read: acquire used to poll the first 64 channels alone. */
static void acquire_reads_releases_from_every_channel(void **state) {
  (void)state;
  tb_pool *pool = new_pool(TB_MEMORY_SHM, 1);
  tb_channel *senders[MANY_CHANNELS], *receivers[MANY_CHANNELS];
  tb_tensor *frame = NULL;
  TB_ASSERT_OK(tb_pool_acquire(&frame, pool, 0));
  for (int i = 0; i < MANY_CHANNELS; i++) {
    TB_ASSERT_OK(tb_channel_pair(&senders[i], &receivers[i]));
    TB_ASSERT_OK(tb_channel_send(senders[i], frame, 0));
  }
  tb_tensor_unref(frame);
  for (int i = 0; i < MANY_CHANNELS; i++) {
    tb_tensor *received = NULL;
    TB_ASSERT_OK(tb_channel_recv(&received, receivers[i], PATIENCE_MS));
    tb_tensor_unref(received); /* its release goes back to senders[i] */
  }
  TB_ASSERT_OK(tb_pool_acquire(&frame, pool, PATIENCE_MS));
  tb_tensor_unref(frame);
  for (int i = 0; i < MANY_CHANNELS; i++) {
    tb_channel_unref(senders[i]);
    tb_channel_unref(receivers[i]);
  }
  tb_pool_unref(pool);
}

/* CPU time of the calling thread, in ms. */
static int64_t thread_cpu_ms(void) {
  struct timespec now;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &now);
  return (int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000;
}

/* A channel whose peer has gone is readable for ever: an acquire waiting
 * for a tensor held here must sleep, not spin on it. */
static void acquire_does_not_spin_on_a_hung_up_channel(void **state) {
  (void)state;
  tb_pool *pool = new_pool(TB_MEMORY_SHM, 1);
  tb_channel *sender = NULL, *receiver = NULL;
  TB_ASSERT_OK(tb_channel_pair(&sender, &receiver));
  tb_tensor *frame = NULL;
  TB_ASSERT_OK(tb_pool_acquire(&frame, pool, 0));
  TB_ASSERT_OK(tb_channel_send(sender, frame, 0)); /* the pool watches */
  tb_channel_unref(receiver); /* gone: its lease returns, ours stays out */
  tb_tensor *none = TB_SENTINEL(tb_tensor);
  int64_t cpu = thread_cpu_ms(), start = tb_peer_now_ms();
  TB_ASSERT_STATUS(tb_pool_acquire(&none, pool, 1000), TB_ERR_TIMEOUT);
  int64_t spent = thread_cpu_ms() - cpu, waited = tb_peer_now_ms() - start;
  print_message("acquire(1000 ms) on a hung-up channel: %lld ms CPU in "
                "%lld ms\n",
                (long long)spent, (long long)waited);
  assert_true(waited >= 999);
  assert_true(spent < 200);
  tb_tensor_unref(frame);
  tb_channel_unref(sender);
  tb_pool_unref(pool);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      TB_TEST(rejects_bad_arguments),
      TB_TEST(buffers_come_back_when_dropped),
      TB_TEST(acquire_times_out_when_all_are_out),
      TB_TEST(views_hold_the_buffer_out),
      TB_TEST(tensors_outlive_their_pool),
      TB_TEST(heap_pool_tensors_cannot_be_sent),
      TB_TEST(frames_go_round_between_processes),
      TB_TEST(only_the_first_rounds_carry_fds),
      TB_TEST(buffers_come_home_when_the_consumer_dies),
      TB_TEST(a_remote_view_holds_the_buffer_out),
      TB_TEST(acquire_reads_releases_from_every_channel),
      TB_TEST(acquire_does_not_spin_on_a_hung_up_channel),
  };
  return TB_RUN_TESTS(tests);
}
