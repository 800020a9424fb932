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
#include "memory/cuda_driver.h"

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
  GMutex cuda_lock;           /* guards cuda_address */
  TbCuDevicePtr cuda_address; /* the registered page's device alias, or 0 */
};

G_STATIC_ASSERT(sizeof(TbFencePage) <= TB_FENCE_SIZE);

static tb_fence *fence_wrap(tb_buffer *buffer) {
  tb_fence *fence = g_atomic_rc_box_new0(tb_fence);
  fence->page_buffer = buffer;
  fence->page = buffer->data;
  g_mutex_init(&fence->cuda_lock);
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
  /* Only a fence that was used from a stream has a registration (and so a
   * loaded driver); the unregistration is the driver's to do. */
  if (fence->cuda_address != 0)
    (void)tb_cuda_driver(NULL)->mem_host_unregister(
        fence->page_buffer->mapping);
  g_mutex_clear(&fence->cuda_lock);
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

static void page_wake(TbFencePage *page) {
  atomic_fetch_add(&page->wake_sequence, 1);
  syscall(SYS_futex, &page->wake_sequence, FUTEX_WAKE, INT32_MAX, NULL, NULL,
          0);
}

void tb_fence_wake(tb_fence *fence) { page_wake(fence->page); }

uint64_t tb_fence_value(const tb_fence *fence) {
  return fence != NULL ? atomic_load(tb_fence_counter(fence)) : 0;
}

/* Refuses a signal of `value` that a read-only fence cannot make or that
 * would take the timeline back from `current`. */
static gboolean signal_check(const tb_fence *fence, uint64_t value,
                             uint64_t current, GError **error) {
  if (fence->page_buffer->flags & TB_BUFFER_READ_ONLY) {
    g_set_error(error, TB_BUFFER_ERROR, TB_ERR_READ_ONLY,
                "this fence was imported read-only; it can wait, not signal");
    return FALSE;
  }
  if (value <= current) {
    g_set_error(error, TB_BUFFER_ERROR, TB_ERR_OUT_OF_RANGE,
                "value is %" G_GUINT64_FORMAT
                "; the fence is already at %" G_GUINT64_FORMAT
                " and a timeline never goes back",
                value, current);
    return FALSE;
  }
  return TRUE;
}

gboolean tb_fence_raise(tb_fence *fence, uint64_t value, GError **error) {
  _Atomic uint64_t *counter = tb_fence_counter(fence);
  uint64_t current = atomic_load(counter);
  do {
    if (!signal_check(fence, value, current, error))
      return FALSE;
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

/* ---- GPU streams ----------------------------------------------------------
 *
 * A stream reaches the counter through the page's device alias: the page is
 * registered with cuMemHostRegister (portable, so every context may use it)
 * the first time a stream signals or waits on the fence, and unregistered
 * when the fence is freed. cuStreamWriteValue64 writes the counter, and a
 * host function queued after it (cuLaunchHostFunc) does what tb_fence_raise
 * does after its store: bump the wake sequence and wake the futex. That
 * callback holds a reference to the page buffer, never to the fence: the
 * driver forbids CUDA calls in it, and dropping the fence's last reference
 * there would unregister the page. cuStreamWaitValue64 polls the counter on
 * the GPU until it is >= the value. */

/* The device alias of the fence's page, registering it on first use, with
 * `device`'s context current. Fails with TB_ERR_UNSUPPORTED where the
 * driver or the device lacks 64-bit stream memory operations. */
static gboolean fence_cuda_address(tb_fence *fence, uint32_t device,
                                   TbCuDevicePtr *address, GError **error) {
  const TbCudaDriver *cu = tb_cuda_driver(error);
  if (cu == NULL)
    return FALSE;
  if (cu->stream_write_value64 == NULL || cu->stream_wait_value64 == NULL ||
      cu->launch_host_func == NULL) {
    g_set_error(error, TB_BACKEND_ERROR, TB_ERR_UNSUPPORTED,
                "the CUDA driver has no cuStreamWriteValue64_v2, "
                "cuStreamWaitValue64_v2 or cuLaunchHostFunc (CUDA 11.7 or "
                "newer is needed to use fences from streams)");
    return FALSE;
  }
  if (!tb_cuda_use_device(device, error))
    return FALSE;
  TbCuDevice handle;
  int supported = 0;
  TbCuResult result = cu->device_get(&handle, (int)device);
  if (result == TB_CU_SUCCESS)
    result = cu->device_get_attribute(
        &supported, TB_CU_DEVICE_ATTRIBUTE_CAN_USE_64_BIT_STREAM_MEM_OPS_V2,
        handle);
  if (result != TB_CU_SUCCESS) {
    tb_cuda_set_error(error, result, "cuDeviceGetAttribute");
    return FALSE;
  }
  if (!supported) {
    g_set_error(error, TB_BACKEND_ERROR, TB_ERR_UNSUPPORTED,
                "CUDA device %u has no 64-bit stream memory operations "
                "(CU_DEVICE_ATTRIBUTE_CAN_USE_64_BIT_STREAM_MEM_OPS_V2 is 0)",
                device);
    return FALSE;
  }
  g_mutex_lock(&fence->cuda_lock);
  if (fence->cuda_address == 0) {
    unsigned flags =
        TB_CU_MEMHOSTREGISTER_PORTABLE | TB_CU_MEMHOSTREGISTER_DEVICEMAP;
    if (fence->page_buffer->flags & TB_BUFFER_READ_ONLY)
      flags |= TB_CU_MEMHOSTREGISTER_READ_ONLY;
    void *mapping = fence->page_buffer->mapping;
    result = cu->mem_host_register(mapping, fence->page_buffer->mapping_size,
                                   flags);
    if (result != TB_CU_SUCCESS) {
      g_mutex_unlock(&fence->cuda_lock);
      tb_cuda_set_error(error, result, "cuMemHostRegister of the fence page");
      return FALSE;
    }
    TbCuDevicePtr page = 0;
    result = cu->mem_host_get_device_pointer(&page, mapping, 0);
    if (result != TB_CU_SUCCESS) {
      (void)cu->mem_host_unregister(mapping);
      g_mutex_unlock(&fence->cuda_lock);
      tb_cuda_set_error(error, result, "cuMemHostGetDevicePointer");
      return FALSE;
    }
    fence->cuda_address = page;
  }
  *address = fence->cuda_address + offsetof(TbFencePage, value);
  g_mutex_unlock(&fence->cuda_lock);
  return TRUE;
}

/* Runs on a driver thread once the stream has written the counter. */
static void wake_after_stream_write(void *data) {
  tb_buffer *page_buffer = data;
  page_wake(page_buffer->data);
  tb_buffer_unref(page_buffer);
}

gboolean tb_fence_stream_signal(tb_fence *fence, uint64_t value,
                                uint32_t device, uint64_t stream,
                                GError **error) {
  TbCuDevicePtr counter = 0;
  if (!signal_check(fence, value, tb_fence_value(fence), error) ||
      !fence_cuda_address(fence, device, &counter, error))
    return FALSE;
  const TbCudaDriver *cu = tb_cuda_driver(NULL);
  TbCuStream handle = (TbCuStream)(uintptr_t)stream;
  /* The default flags order the write after all earlier work of the stream
   * and make that work's memory writes visible first. */
  TbCuResult result = cu->stream_write_value64(
      handle, counter, value, TB_CU_STREAM_WRITE_VALUE_DEFAULT);
  if (result != TB_CU_SUCCESS) {
    tb_cuda_set_error(error, result, "cuStreamWriteValue64");
    return FALSE;
  }
  tb_buffer *page_buffer = tb_buffer_ref(fence->page_buffer);
  result = cu->launch_host_func(handle, wake_after_stream_write, page_buffer);
  if (result != TB_CU_SUCCESS) {
    tb_buffer_unref(page_buffer);
    tb_cuda_set_error(error, result,
                      "cuLaunchHostFunc (the counter will be written, but "
                      "CPU waiters only see it at their timeout)");
    return FALSE;
  }
  return TRUE;
}

gboolean tb_fence_stream_wait(tb_fence *fence, uint64_t value, uint32_t device,
                              uint64_t stream, GError **error) {
  TbCuDevicePtr counter = 0;
  if (!fence_cuda_address(fence, device, &counter, error))
    return FALSE;
  TbCuResult result = tb_cuda_driver(NULL)->stream_wait_value64(
      (TbCuStream)(uintptr_t)stream, counter, value,
      TB_CU_STREAM_WAIT_VALUE_GEQ);
  if (result != TB_CU_SUCCESS) {
    tb_cuda_set_error(error, result, "cuStreamWaitValue64");
    return FALSE;
  }
  return TRUE;
}
