/* Timeline fences: a 64-bit counter in a sealed memfd page, woken by a
 * process-shared futex. The page is an ordinary SHM buffer, so creation and
 * export are the buffer's; import accepts only what creation makes.
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
#include <fcntl.h>
#include <linux/futex.h>
#include <linux/magic.h>
#include <stdatomic.h>
#include <sys/syscall.h>
#include <sys/vfs.h>
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

/* Refuses, before anything is mapped, every fd that is not what
 * tb_fence_create makes: a memfd on tmpfs (not hugetlbfs, not a dma-buf,
 * which may have no CPU mapping at all), sealed against shrinking and
 * growing, of exactly one fence page. Seals only ever accumulate, so the
 * size read after them is final. */
static gboolean fence_fd_check(int fd, TbFdInfo *info, GError **error) {
  if (!tb_fd_inspect(fd, info, error))
    return FALSE;
  const char *problem = NULL;
  struct statfs fs;
  int seals = fcntl(fd, F_GET_SEALS);
  if (info->backend != &tb_backend_memfd)
    problem = "is a dma-buf";
  else if (fstatfs(fd, &fs) != 0 || fs.f_type != TMPFS_MAGIC)
    problem = "is shared memory outside tmpfs";
  else if (seals < 0 || (seals & (F_SEAL_SHRINK | F_SEAL_GROW)) !=
                            (F_SEAL_SHRINK | F_SEAL_GROW))
    problem = "is not sealed against shrinking and growing";
  else if (info->size != TB_FENCE_SIZE)
    problem = "is not one page long";
  if (problem == NULL)
    return TRUE;
  g_set_error(error, TB_BUFFER_ERROR, TB_ERR_BAD_FD,
              "fd %d %s, so it is not a tensorbuf fence", fd, problem);
  return FALSE;
}

tb_fence *tb_fence_open(int fd, GError **error) {
  TbFdInfo info;
  if (!fence_fd_check(fd, &info, error))
    return NULL;
  tb_buffer *buffer = tb_buffer_adopt_fd(fd, &info, error);
  if (buffer == NULL)
    return NULL;
  /* The page is the peer's to write: the magic is read once, here. */
  const TbFencePage *page = buffer->data;
  if (page->magic != TB_FENCE_MAGIC) {
    g_set_error(error, TB_BUFFER_ERROR, TB_ERR_BAD_FD,
                "fd %d is a sealed page of shared memory without the fence "
                "magic, so it is not a tensorbuf fence",
                fd);
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

_Atomic uint64_t *tb_fence_counter(const tb_fence *fence) {
  return &fence->page->value;
}

void tb_fence_wake(tb_fence *fence) {
  atomic_fetch_add(&fence->page->wake_sequence, 1);
  syscall(SYS_futex, &fence->page->wake_sequence, FUTEX_WAKE, INT32_MAX, NULL,
          NULL, 0);
}

uint64_t tb_fence_value(const tb_fence *fence) {
  return fence != NULL ? atomic_load(tb_fence_counter(fence)) : 0;
}

gboolean tb_fence_raise(tb_fence *fence, uint64_t value, GError **error) {
  if (fence->page_buffer->flags & TB_BUFFER_READ_ONLY) {
    g_set_error(error, TB_BUFFER_ERROR, TB_ERR_READ_ONLY,
                "this fence was imported read-only; it can wait, not signal");
    return FALSE;
  }
  _Atomic uint64_t *counter = tb_fence_counter(fence);
  uint64_t current = atomic_load(counter);
  do {
    if (value <= current) {
      g_set_error(error, TB_BUFFER_ERROR, TB_ERR_OUT_OF_RANGE,
                  "value is %" G_GUINT64_FORMAT
                  "; the fence is already at %" G_GUINT64_FORMAT
                  " and a timeline never goes back",
                  value, current);
      return FALSE;
    }
  } while (!atomic_compare_exchange_weak(counter, &current, value));
  tb_fence_wake(fence);
  return TRUE;
}

gboolean tb_fence_await(tb_fence *fence, uint64_t value, int64_t timeout_ns,
                        GError **error) {
  TbFencePage *page = fence->page;
  /* One absolute CLOCK_MONOTONIC deadline, fixed here: FUTEX_WAIT_BITSET
   * takes it as is, so neither a spurious wake-up nor a signal handler
   * (EINTR) can stretch the wait. */
  struct timespec deadline;
  clock_gettime(CLOCK_MONOTONIC, &deadline);
  if (timeout_ns > 0) {
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
    long slept = syscall(SYS_futex, &page->wake_sequence, FUTEX_WAIT_BITSET,
                         sequence, timeout_ns > 0 ? &deadline : NULL, NULL,
                         FUTEX_BITSET_MATCH_ANY);
    if (slept == 0 || errno == EINTR || errno == EAGAIN)
      continue; /* woken, interrupted, or the sequence moved: test again */
    if (errno != ETIMEDOUT) {
      tb_set_system_error(error, TB_BUFFER_ERROR, errno,
                          "futex wait on the fence");
      return FALSE;
    }
    if (atomic_load(&page->value) >= value)
      return TRUE;
    break;
  }
  g_set_error(error, TB_BUFFER_ERROR, TB_ERR_TIMEOUT,
              "the fence is at %" G_GUINT64_FORMAT ", below %" G_GUINT64_FORMAT
              ", after %" G_GINT64_FORMAT " ns",
              tb_fence_value(fence), value, timeout_ns);
  return FALSE;
}
