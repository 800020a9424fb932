/* One pool shared by several threads of a producer process, its tensors
 * received in a consumer process and dropped there by several threads, so
 * that acquires, sends, releases and drops run concurrently on both ends of
 * one channel (run under ThreadSanitizer by the tsan preset). */
#include "tb_peer.h"

#include <glib.h>

#define PATIENCE_MS 20000
enum {
  PRODUCERS = 4,
  DROPPERS = 3,
  FRAMES_EACH = 300,
  POOL_SIZE = 4,
  FRAME_LENGTH = 1024
};

/* Elements 0 and FRAME_LENGTH - 1 of a frame: who made it and which one. */
static int64_t stamp(int64_t producer, int64_t frame) {
  return producer * 1000000 + frame;
}

/* ---- producer (this process) --------------------------------------------- */

typedef struct producer_state {
  tb_pool *pool;
  tb_channel *channel;
  int index;
  tb_status failure;
} producer_state;

static gpointer produce(gpointer data) {
  producer_state *state = data;
  for (int64_t frame = 0; frame < FRAMES_EACH && state->failure == TB_OK;
       frame++) {
    tb_tensor *tensor = NULL;
    tb_status status = tb_pool_acquire(&tensor, state->pool, PATIENCE_MS);
    const int64_t first[] = {0}, last[] = {FRAME_LENGTH - 1};
    if (status == TB_OK)
      status = tb_tensor_set_i64(tensor, 1, first, stamp(state->index, frame));
    if (status == TB_OK)
      status = tb_tensor_set_i64(tensor, 1, last, stamp(state->index, frame));
    if (status == TB_OK)
      status = tb_channel_send(state->channel, tensor, 0);
    tb_tensor_unref(tensor);
    state->failure = status;
  }
  return NULL;
}

/* ---- consumer (the child) -------------------------------------------------
 */

typedef struct consumer_state {
  GMutex lock;
  GCond arrived;
  GQueue received; /* tensors for the droppers, then END_MARKs */
  int64_t next[PRODUCERS]; /* each producer's next frame, in channel order */
  int checked;
  bool bad_frame;
} consumer_state;

static char end_mark_byte; /* never a tensor: tells a dropper to stop */
#define END_MARK ((tb_tensor *)(void *)&end_mark_byte)

/* Checks a frame's two stamps and drops it (which sends it home). */
static gpointer drop_frames(gpointer data) {
  consumer_state *state = data;
  for (;;) {
    g_mutex_lock(&state->lock);
    while (g_queue_is_empty(&state->received))
      g_cond_wait(&state->arrived, &state->lock);
    tb_tensor *tensor = g_queue_pop_head(&state->received);
    g_mutex_unlock(&state->lock);
    if (tensor == END_MARK)
      return NULL;
    int64_t head = -1, tail = -2;
    const int64_t first[] = {0}, last[] = {FRAME_LENGTH - 1};
    bool ok = tb_tensor_get_i64(&head, tensor, 1, first) == TB_OK &&
              tb_tensor_get_i64(&tail, tensor, 1, last) == TB_OK &&
              head == tail;
    tb_tensor_unref(tensor);
    g_mutex_lock(&state->lock);
    state->bad_frame |= !ok;
    state->checked++;
    g_mutex_unlock(&state->lock);
  }
}

static void consume(tb_peer_end *end, void *arg) {
  (void)arg;
  consumer_state state = {0};
  g_mutex_init(&state.lock);
  g_cond_init(&state.arrived);
  g_queue_init(&state.received);
  GThread *droppers[DROPPERS];
  for (int i = 0; i < DROPPERS; i++)
    droppers[i] = g_thread_new("dropper", drop_frames, &state);
  for (int i = 0; i < PRODUCERS * FRAMES_EACH; i++) {
    tb_tensor *tensor = NULL;
    TB_PEER_ASSERT_OK(tb_channel_recv(&tensor, end->channel, PATIENCE_MS));
    /* One producer's frames arrive in the order it sent them. */
    int64_t head = -1;
    const int64_t first[] = {0};
    TB_PEER_ASSERT_OK(tb_tensor_get_i64(&head, tensor, 1, first));
    int64_t producer = head / 1000000, frame = head % 1000000;
    TB_PEER_ASSERT(producer >= 0 && producer < PRODUCERS);
    g_mutex_lock(&state.lock);
    bool in_order = state.next[producer] == frame;
    state.next[producer] = frame + 1;
    g_queue_push_tail(&state.received, tensor);
    g_cond_signal(&state.arrived);
    g_mutex_unlock(&state.lock);
    TB_PEER_ASSERT(in_order);
  }
  g_mutex_lock(&state.lock);
  for (int i = 0; i < DROPPERS; i++)
    g_queue_push_tail(&state.received, END_MARK);
  g_cond_broadcast(&state.arrived);
  g_mutex_unlock(&state.lock);
  for (int i = 0; i < DROPPERS; i++)
    g_thread_join(droppers[i]);
  TB_PEER_ASSERT(!state.bad_frame);
  TB_PEER_ASSERT(state.checked == PRODUCERS * FRAMES_EACH);
  g_cond_clear(&state.arrived);
  g_mutex_clear(&state.lock);
}

static void threads_share_one_pool_across_processes(void **state) {
  (void)state;
  const int64_t shape[] = {FRAME_LENGTH};
  tb_tensor *prototype = tb_test_arange(TB_DTYPE_I64, 1, shape, TB_MEMORY_SHM);
  tb_pool *pool = NULL;
  TB_ASSERT_OK(tb_pool_new(&pool, prototype, POOL_SIZE));
  tb_tensor_unref(prototype);
  tb_peer_end end;
  pid_t child =
      tb_peer_start(&end, TB_PEER_CHANNEL, consume, TB_PEER_CHANNEL, NULL);
  producer_state producers[PRODUCERS];
  GThread *threads[PRODUCERS];
  for (int i = 0; i < PRODUCERS; i++) {
    producers[i] = (producer_state){
        .pool = pool, .channel = end.channel, .index = i, .failure = TB_OK};
    threads[i] = g_thread_new("producer", produce, &producers[i]);
  }
  for (int i = 0; i < PRODUCERS; i++) {
    g_thread_join(threads[i]);
    assert_int_equal(producers[i].failure, TB_OK);
  }
  tb_peer_join(child);
  /* Every buffer came home: the pool can hand out all of them at once. */
  tb_tensor *all[POOL_SIZE];
  for (int i = 0; i < POOL_SIZE; i++)
    TB_ASSERT_OK(tb_pool_acquire(&all[i], pool, PATIENCE_MS));
  for (int i = 0; i < POOL_SIZE; i++)
    tb_tensor_unref(all[i]);
  assert_int_equal(tb_pool_available(pool), POOL_SIZE);
  tb_peer_end_close(&end);
  tb_pool_unref(pool);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      TB_TEST(threads_share_one_pool_across_processes),
  };
  return TB_RUN_TESTS(tests);
}
