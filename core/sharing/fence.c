/* Timeline fences: a 64-bit counter in a sealed memfd page, woken by a
 * process-shared futex. The page is an ordinary SHM buffer, so creation,
 * import (classification, sealing, size checks) and export are the buffer's.
 *
 * The futex word is a wake sequence, not the counter (futexes are 32-bit):
 * a signal raises the counter, bumps the sequence and wakes sleepers; a
 * waiter samples the sequence before testing the counter, so a signal that
 * lands between the test and the sleep changes the word and the kernel
 * refuses to sleep. Waiters never write the page (a fence imported from a
 * read-only fd is mapped read-only), so a signal cannot know whether anyone
 * sleeps: it always issues the wake. */
#include "sharing/fence.h"

#include <errno.h>
#include <linux/futex.h>
#include <stdatomic.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define TB_FENCE_MAGIC UINT64_C(0x31454e4546425400) /* "\0TBFENE1" */
#define TB_FENCE_SIZE 4096u

typedef struct TbFencePage {
  uint64_t magic;
  _Atomic uint64_t value;
  _Atomic uint32_t wake_sequence;
} TbFencePage;

struct tb_fence {
  tb_buffer *page_buffer;
  TbFencePage *page;
};

G_STATIC_ASSERT(sizeof(TbFencePage) <= TB_FENCE_SIZE);

static tb_fence *fence_wrap(tb_buffer *buffer) {
  tb_fence *fence = g_atomic_rc_box_new0(tb_fence);
  fence->page_buffer = buffer;
  fence->page = buffer->data;
  tb_live_add(1);
  return fence;
}

tb_fence *tb_fence_create(uint64_t initial, GError **error) {
  const TbAllocParams params = {
      .memory = TB_MEMORY_SHM, .alignment = 64, .name = "tensorbuf-fence"};
  if (!tb_backend_for(TB_MEMORY_SHM)->available()) {
    g_set_error(error, TB_BACKEND_ERROR, TB_ERR_UNSUPPORTED,
                "fences need memfd shared memory, which this kernel lacks");
    return NULL;
  }
  tb_buffer *buffer = tb_buffer_alloc(TB_FENCE_SIZE, &params, error);
  if (buffer == NULL)
    return NULL;
  TbFencePage *page = buffer->data;
  atomic_store(&page->value, initial);
  page->magic = TB_FENCE_MAGIC;
  return fence_wrap(buffer);
}

tb_fence *tb_fence_open(int fd, GError **error) {
  /* The size is checked below, so that a short memfd is "not a fence"
   * (TB_ERR_BAD_FD) like any other wrong one. */
  tb_buffer *buffer = tb_buffer_import(fd, 0, error);
  if (buffer == NULL)
    return NULL;
  const TbFencePage *page = buffer->data;
  if (buffer->size != TB_FENCE_SIZE || page->magic != TB_FENCE_MAGIC) {
    g_set_error(error, TB_BUFFER_ERROR, TB_ERR_BAD_FD,
                "fd %d is shared memory but not a tensorbuf fence", fd);
    tb_buffer_unref(buffer);
    return NULL;
  }
  return fence_wrap(buffer);
}

int tb_fence_dup_fd(const tb_fence *fence, GError **error) {
  return tb_buffer_dup_fd(fence->page_buffer, error);
}

tb_fence *tb_fence_ref(tb_fence *fence) {
  return fence != NULL ? g_atomic_rc_box_acquire(fence) : NULL;
}

static void fence_clear(gpointer data) {
  tb_fence *fence = data;
  tb_buffer_unref(fence->page_buffer);
  tb_live_add(-1);
}

void tb_fence_unref(tb_fence *fence) {
  if (fence != NULL)
    g_atomic_rc_box_release_full(fence, fence_clear);
}

uint64_t tb_fence_value(const tb_fence *fence) {
  return fence != NULL ? atomic_load(&fence->page->value) : 0;
}

gboolean tb_fence_raise(tb_fence *fence, uint64_t value, GError **error) {
  if (fence->page_buffer->flags & TB_BUFFER_READ_ONLY) {
    g_set_error(error, TB_BUFFER_ERROR, TB_ERR_READ_ONLY,
                "this fence was imported read-only; it can wait, not signal");
    return FALSE;
  }
  TbFencePage *page = fence->page;
  uint64_t current = atomic_load(&page->value);
  do {
    if (value <= current) {
      g_set_error(error, TB_BUFFER_ERROR, TB_ERR_OUT_OF_RANGE,
                  "value is %" G_GUINT64_FORMAT
                  "; the fence is already at %" G_GUINT64_FORMAT
                  " and a timeline never goes back",
                  value, current);
      return FALSE;
    }
  } while (!atomic_compare_exchange_weak(&page->value, &current, value));
  atomic_fetch_add(&page->wake_sequence, 1);
  syscall(SYS_futex, &page->wake_sequence, FUTEX_WAKE, INT32_MAX, NULL, NULL,
          0);
  return TRUE;
}

gboolean tb_fence_await(tb_fence *fence, uint64_t value, int64_t timeout_ns,
                        GError **error) {
  TbFencePage *page = fence->page;
  struct timespec deadline;
  clock_gettime(CLOCK_MONOTONIC, &deadline);
  if (timeout_ns >= 0) {
    int64_t nsec = deadline.tv_nsec + timeout_ns % 1000000000;
    deadline.tv_sec += timeout_ns / 1000000000 + nsec / 1000000000;
    deadline.tv_nsec = nsec % 1000000000;
  }
  for (;;) {
    uint32_t sequence = atomic_load(&page->wake_sequence);
    if (atomic_load(&page->value) >= value)
      return TRUE;
    if (timeout_ns == 0)
      break;
    /* FUTEX_WAIT_BITSET takes an absolute CLOCK_MONOTONIC deadline, so
     * spurious wake-ups do not stretch the timeout. */
    long slept = syscall(SYS_futex, &page->wake_sequence, FUTEX_WAIT_BITSET,
                         sequence, timeout_ns >= 0 ? &deadline : NULL, NULL,
                         FUTEX_BITSET_MATCH_ANY);
    int errnum = errno;
    if (slept != 0 && errnum == ETIMEDOUT) {
      if (atomic_load(&page->value) >= value)
        return TRUE;
      break;
    }
  }
  g_set_error(error, TB_BUFFER_ERROR, TB_ERR_TIMEOUT,
              "the fence is at %" G_GUINT64_FORMAT ", below %" G_GUINT64_FORMAT
              ", after %" G_GINT64_FORMAT " ns",
              tb_fence_value(fence), value, timeout_ns);
  return FALSE;
}
