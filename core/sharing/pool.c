/* Pools: fixed sets of equally laid-out tensors whose buffers come back
 * when the last tensor (or view) using them is dropped, here or — through a
 * release message — in another process. */
#include "sharing/pool.h"
#include "tensor/image.h"

#define TB_POOL_MAX 1024
/* While serving channels for a release, how often local returns (which
 * signal `returned`, not the sockets) are noticed. */
#define TB_POOL_SERVE_SLICE_MS 5

typedef struct TbPoolSlot {
  TbLease lease; /* first: the lease's address is the slot's */
  tb_buffer *buffer;
} TbPoolSlot;

struct tb_pool {
  tb_tensor *layout; /* over slot 0's buffer: only its description is used */
  size_t count;
  TbPoolSlot *slots;
  GMutex lock;
  GCond returned;
  GQueue free_slots;
  GPtrArray *channels; /* weak: channels carrying our tensors */
};

static void slot_release(TbLease *lease) {
  TbPoolSlot *slot = (TbPoolSlot *)lease;
  tb_pool *pool = lease->pool;
  g_mutex_lock(&pool->lock);
  g_queue_push_tail(&pool->free_slots, slot);
  g_cond_broadcast(&pool->returned);
  g_mutex_unlock(&pool->lock);
  tb_pool_unref(pool); /* the reference the lent tensor kept */
}

tb_pool *tb_pool_create(const tb_tensor *prototype, size_t count,
                        GError **error) {
  if (count == 0 || count > TB_POOL_MAX) {
    g_set_error(error, TB_TENSOR_ERROR, TB_ERR_INVALID_ARGUMENT,
                "count is %zu; a pool holds 1 to %d tensors", count,
                TB_POOL_MAX);
    return NULL;
  }
  if (prototype->image != NULL && !tb_image_single_buffer(prototype->image)) {
    g_set_error(error, TB_TENSOR_ERROR, TB_ERR_INVALID_ARGUMENT,
                "prototype is an image whose planes are in several buffers; "
                "a pool recycles one buffer per tensor");
    return NULL;
  }
  TbAllocParams params = {.memory = tb_buffer_memory(prototype->buffer),
                          .alignment = 64,
                          .name = prototype->name,
                          .device = prototype->buffer->cuda_device};
  TbPoolSlot *slots = g_new0(TbPoolSlot, count);
  for (size_t i = 0; i < count; i++) {
    slots[i].buffer = tb_buffer_alloc(prototype->buffer->size, &params, error);
    if (slots[i].buffer == NULL) {
      for (size_t j = 0; j < i; j++)
        tb_buffer_unref(slots[j].buffer);
      g_free(slots);
      return NULL;
    }
  }
  tb_pool *pool = g_atomic_rc_box_new0(tb_pool);
  pool->count = count;
  pool->slots = slots;
  pool->layout = tb_tensor_like(prototype, slots[0].buffer);
  g_mutex_init(&pool->lock);
  g_cond_init(&pool->returned);
  g_queue_init(&pool->free_slots);
  pool->channels = g_ptr_array_new();
  for (size_t i = 0; i < count; i++) {
    slots[i].lease.release = slot_release;
    slots[i].lease.pool = pool;
    g_queue_push_tail(&pool->free_slots, &slots[i]);
  }
  tb_live_add(1);
  return pool;
}

/* Reads the releases arriving on the channels carrying our tensors, until
 * `until`, on those that no other thread reads. FALSE when there was none
 * to read: their readers apply the releases and signal `returned`. Called
 * without the lock. */
static gboolean serve_channels(tb_pool *pool, gint64 until) {
  g_autoptr(GPtrArray) live =
      g_ptr_array_new_with_free_func((GDestroyNotify)tb_channel_unref);
  g_mutex_lock(&pool->lock);
  for (guint i = 0; i < pool->channels->len; i++) {
    tb_channel *channel = tb_channel_try_ref(pool->channels->pdata[i]);
    if (channel != NULL)
      g_ptr_array_add(live, channel);
  }
  g_mutex_unlock(&pool->lock);
  return tb_channel_serve_releases((tb_channel *const *)live->pdata, live->len,
                                   until);
}

tb_tensor *tb_pool_take(tb_pool *pool, int timeout_ms, GError **error) {
  gint64 deadline = timeout_ms < 0
                        ? G_MAXINT64
                        : g_get_monotonic_time() +
                              (gint64)timeout_ms * G_TIME_SPAN_MILLISECOND;
  gboolean served_once = FALSE; /* timeout 0 still reads what has come */
  g_mutex_lock(&pool->lock);
  while (g_queue_is_empty(&pool->free_slots)) {
    gint64 now = g_get_monotonic_time();
    if (served_once && now >= deadline) {
      g_mutex_unlock(&pool->lock);
      g_set_error(error, TB_TENSOR_ERROR, TB_ERR_TIMEOUT,
                  "no tensor of the pool's %zu came back within %d ms",
                  pool->count, timeout_ms);
      return NULL;
    }
    served_once = TRUE;
    gint64 until =
        MIN(deadline, now + TB_POOL_SERVE_SLICE_MS * G_TIME_SPAN_MILLISECOND);
    gboolean served = FALSE;
    if (pool->channels->len > 0) {
      g_mutex_unlock(&pool->lock);
      served = serve_channels(pool, until);
      g_mutex_lock(&pool->lock);
    }
    if (!served && g_queue_is_empty(&pool->free_slots))
      g_cond_wait_until(&pool->returned, &pool->lock, until);
  }
  TbPoolSlot *slot = g_queue_pop_head(&pool->free_slots);
  g_mutex_unlock(&pool->lock);
  g_atomic_ref_count_init(&slot->lease.holders);
  tb_pool_ref(pool); /* dropped by slot_release */
  tb_tensor *tensor = tb_tensor_like(pool->layout, slot->buffer);
  tensor->lease = &slot->lease;
  return tensor;
}

void tb_pool_watch(tb_pool *pool, tb_channel *channel) {
  g_mutex_lock(&pool->lock);
  if (!g_ptr_array_find(pool->channels, channel, NULL))
    g_ptr_array_add(pool->channels, channel);
  g_mutex_unlock(&pool->lock);
}

void tb_pool_unwatch(tb_pool *pool, tb_channel *channel) {
  g_mutex_lock(&pool->lock);
  g_ptr_array_remove_fast(pool->channels, channel);
  g_mutex_unlock(&pool->lock);
}

size_t tb_pool_available(const tb_pool *pool) {
  if (pool == NULL)
    return 0;
  g_mutex_lock((GMutex *)&pool->lock);
  size_t available = g_queue_get_length((GQueue *)&pool->free_slots);
  g_mutex_unlock((GMutex *)&pool->lock);
  return available;
}

size_t tb_pool_size(const tb_pool *pool) {
  return pool != NULL ? pool->count : 0;
}

tb_pool *tb_pool_ref(tb_pool *pool) {
  return pool != NULL ? g_atomic_rc_box_acquire(pool) : NULL;
}

static void pool_clear(gpointer data) {
  tb_pool *pool = data;
  /* Every slot is free here: a lent tensor holds a pool reference. */
  tb_tensor_unref(pool->layout);
  for (size_t i = 0; i < pool->count; i++)
    tb_buffer_unref(pool->slots[i].buffer);
  g_free(pool->slots);
  g_queue_clear(&pool->free_slots);
  g_ptr_array_unref(pool->channels);
  g_mutex_clear(&pool->lock);
  g_cond_clear(&pool->returned);
  tb_live_add(-1);
}

void tb_pool_unref(tb_pool *pool) {
  if (pool != NULL)
    g_atomic_rc_box_release_full(pool, pool_clear);
}
