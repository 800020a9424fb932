/* HEAP: process-private memory. Small blocks come from posix_memalign, large
 * ones from mmap (zeroed lazily by the kernel); never g_malloc, which aborts
 * on OOM. Also the "wrapped" variant for caller-owned memory. */
#include "memory/buffer.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

/* Above this, mmap: page zeroing is deferred to first touch and freeing
 * returns the memory at once. */
#define TB_HEAP_MMAP_THRESHOLD (256u * 1024u)
/* From this size on, blocks are 2 MiB-aligned and hinted for transparent
 * huge pages: first-touch page faults dominate a fresh frame's cost, and
 * huge pages cut them 3-6x for 1080p and 4K frames (bench/bench_alloc). */
#define TB_HEAP_HUGE_THRESHOLD (2u << 20)

static gboolean heap_available(void) { return TRUE; }

static gboolean heap_alloc(tb_buffer *buffer, const TbAllocParams *params,
                           GError **error) {
  if (buffer->size == 0) {
    buffer->data = tb_empty_bytes;
    return TRUE;
  }
  if (buffer->size > SIZE_MAX / 2) {
    g_set_error(error, TB_BACKEND_ERROR, TB_ERR_NO_MEMORY,
                "cannot allocate %" G_GUINT64_FORMAT " bytes of heap memory",
                buffer->size);
    return FALSE;
  }
  size_t size = (size_t)buffer->size;
  if (size < TB_HEAP_MMAP_THRESHOLD && params->alignment <= 4096) {
    void *data = NULL;
    size_t alignment = MAX((size_t)params->alignment, sizeof(void *));
    if (posix_memalign(&data, alignment, size) != 0) {
      g_set_error(error, TB_BACKEND_ERROR, TB_ERR_NO_MEMORY,
                  "cannot allocate %zu bytes of heap memory", size);
      return FALSE;
    }
    memset(data, 0, size);
    buffer->data = data;
    return TRUE;
  }
  gboolean huge =
      (params->flags & TB_ALLOC_HUGE_PAGES) || size >= TB_HEAP_HUGE_THRESHOLD;
  uint64_t alignment =
      huge ? MAX(params->alignment, TB_HEAP_HUGE_THRESHOLD) : params->alignment;
  void *data = tb_mmap_aligned(size, alignment, PROT_READ | PROT_WRITE,
                               MAP_PRIVATE | MAP_ANONYMOUS, -1);
  if (data == MAP_FAILED) {
    g_set_error(error, TB_BACKEND_ERROR, TB_ERR_NO_MEMORY,
                "cannot map %zu bytes of heap memory: %s", size,
                g_strerror(errno));
    return FALSE;
  }
  if (huge)
    (void)madvise(data, size, MADV_HUGEPAGE); /* a hint; fine if refused */
  buffer->data = data;
  buffer->mapping = data;
  buffer->mapping_size = size;
  return TRUE;
}

static void heap_release(tb_buffer *buffer) {
  if (buffer->mapping != NULL)
    munmap(buffer->mapping, buffer->mapping_size);
  else if (buffer->data != tb_empty_bytes)
    free(buffer->data);
}

const TbBackend tb_backend_heap = {
    .memory = TB_MEMORY_HEAP,
    .name = "heap",
    .available = heap_available,
    .alloc = heap_alloc,
    .release = heap_release,
};

static void wrapped_release(tb_buffer *buffer) {
  if (buffer->destroy != NULL)
    buffer->destroy(buffer->user_data);
}

const TbBackend tb_backend_wrapped = {
    .memory = TB_MEMORY_HEAP,
    .name = "heap",
    .available = heap_available,
    .release = wrapped_release,
};
