/* HEAP: process-private memory. Small blocks come from posix_memalign, large
 * ones from mmap, kept in a bounded cache when freed (heap_cache.h); never
 * g_malloc, which aborts on OOM. Also the "wrapped" variant for
 * caller-owned memory. */
#include "memory/buffer.h"
#include "memory/heap_cache.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

/* From this size on, mmap: the block's pages are the kernel's zero pages
 * until first touched, and freed blocks go to the cache. glibc's own
 * threshold starts here too. */
#define TB_HEAP_MMAP_THRESHOLD (256u * 1024u)
/* From this size on, blocks are 2 MiB-aligned and hinted for transparent
 * huge pages: first-touch page faults dominate a fresh frame's cost, and
 * huge pages cut them 3-6x for 1080p and 4K frames (bench/bench_alloc). The
 * hint belongs to the mapping, so a cached block keeps it. */
#define TB_HEAP_HUGE_THRESHOLD (2u << 20)

static gboolean heap_available(void) { return TRUE; }

static gboolean heap_alloc_small(tb_buffer *buffer, size_t size,
                                 const TbAllocParams *params, GError **error) {
  void *data = NULL;
  size_t alignment = MAX((size_t)params->alignment, sizeof(void *));
  if (posix_memalign(&data, alignment, size) != 0) {
    g_set_error(error, TB_BACKEND_ERROR, TB_ERR_NO_MEMORY,
                "cannot allocate %zu bytes of heap memory", size);
    return FALSE;
  }
  if (!(params->flags & TB_ALLOC_UNINITIALIZED))
    memset(data, 0, size);
  buffer->data = data;
  return TRUE;
}

static gboolean heap_alloc(tb_buffer *buffer, const TbAllocParams *params,
                           GError **error) {
  if (buffer->size == 0) {
    buffer->data = tb_empty_bytes;
    return TRUE;
  }
  size_t page = (size_t)sysconf(_SC_PAGESIZE);
  if (buffer->size > SIZE_MAX / 2) {
    g_set_error(error, TB_BACKEND_ERROR, TB_ERR_NO_MEMORY,
                "cannot allocate %" G_GUINT64_FORMAT " bytes of heap memory",
                buffer->size);
    return FALSE;
  }
  size_t size = (size_t)buffer->size;
  if (size < TB_HEAP_MMAP_THRESHOLD && params->alignment <= page)
    return heap_alloc_small(buffer, size, params, error);

  size_t mapping_size = (size + page - 1) & ~(page - 1);
  gboolean huge =
      (params->flags & TB_ALLOC_HUGE_PAGES) || size >= TB_HEAP_HUGE_THRESHOLD;
  uint64_t alignment =
      huge ? MAX(params->alignment, TB_HEAP_HUGE_THRESHOLD) : params->alignment;
  TbHeapBlock block;
  if (tb_heap_cache_take(size, alignment, &block)) {
    /* Only what an earlier holder may have written needs clearing; the
     * rest still maps the kernel's zero pages. */
    if (!(params->flags & TB_ALLOC_UNINITIALIZED))
      memset(block.mapping, 0, MIN(block.touched, size));
    buffer->data = block.mapping;
    buffer->mapping = block.mapping;
    buffer->mapping_size = block.mapping_size;
    buffer->touched = MAX(block.touched, size);
    return TRUE;
  }
  void *data = tb_mmap_aligned(mapping_size, alignment, PROT_READ | PROT_WRITE,
                               MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (data == MAP_FAILED) {
    g_set_error(error, TB_BACKEND_ERROR, TB_ERR_NO_MEMORY,
                "cannot map %zu bytes of heap memory: %s", size,
                g_strerror(errno));
    return FALSE;
  }
  if (huge)
    (void)madvise(data, mapping_size, MADV_HUGEPAGE); /* a hint */
  buffer->data = data;
  buffer->mapping = data;
  buffer->mapping_size = mapping_size;
  buffer->touched = size;
  return TRUE;
}

static void heap_release(tb_buffer *buffer) {
  if (buffer->mapping != NULL) {
    TbHeapBlock block = {.mapping = buffer->mapping,
                         .mapping_size = buffer->mapping_size,
                         .touched = buffer->touched};
    tb_heap_cache_give(&block);
  } else if (buffer->data != tb_empty_bytes) {
    free(buffer->data);
  }
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
