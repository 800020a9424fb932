/* A bounded cache of freed large heap blocks. A fresh anonymous mapping
 * faults in every page again on first write (about 10 µs a page on a VM),
 * while glibc reuses faulted memory for calloc; keeping a few freed blocks
 * mapped gives the heap the same reuse. Thread-safe. */
#ifndef TB_HEAP_CACHE_H
#define TB_HEAP_CACHE_H

#include "core.h"

/* At most this many blocks and bytes are kept. */
#define TB_HEAP_CACHE_MAX_BLOCKS 16u
#define TB_HEAP_CACHE_MAX_BYTES (128u << 20)

/* A mapped block: `touched` bytes from its start may hold old data; the
 * rest are still the kernel's zero pages. */
typedef struct TbHeapBlock {
  void *mapping;
  size_t mapping_size; /* whole pages */
  size_t touched;
} TbHeapBlock;

/* Takes the smallest cached block of at least `size` bytes (and at most
 * twice that, so a small tensor does not pin a large block) whose start is
 * aligned to `alignment`. FALSE if none fits. */
gboolean tb_heap_cache_take(size_t size, uint64_t alignment,
                            TbHeapBlock *block);
/* Keeps `block` for reuse, or unmaps it (or an older block) when the cache
 * is full. */
void tb_heap_cache_give(const TbHeapBlock *block);
/* tb_memory_trim() (buffer.h) unmaps every cached block. */

#endif /* TB_HEAP_CACHE_H */
