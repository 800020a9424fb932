/* The heap's cache of freed large blocks (heap_cache.h). A fixed array under
 * one mutex: sixteen entries are searched faster than any index is kept. */
#include "memory/heap_cache.h"

#include <string.h>
#include <sys/mman.h>

static GMutex tb_cache_lock;
static TbHeapBlock tb_cache[TB_HEAP_CACHE_MAX_BLOCKS];
static unsigned tb_cache_count;
static size_t tb_cache_bytes;

gboolean tb_heap_cache_take(size_t size, uint64_t alignment,
                            TbHeapBlock *block) {
  g_mutex_lock(&tb_cache_lock);
  unsigned best = tb_cache_count;
  for (unsigned i = 0; i < tb_cache_count; i++) {
    const TbHeapBlock *entry = &tb_cache[i];
    if (entry->mapping_size < size || entry->mapping_size / 2 > size ||
        ((uintptr_t)entry->mapping & (alignment - 1)) != 0)
      continue;
    if (best == tb_cache_count ||
        entry->mapping_size < tb_cache[best].mapping_size)
      best = i;
  }
  gboolean found = best < tb_cache_count;
  if (found) {
    *block = tb_cache[best];
    tb_cache_bytes -= block->mapping_size;
    tb_cache[best] = tb_cache[--tb_cache_count];
  }
  g_mutex_unlock(&tb_cache_lock);
  return found;
}

void tb_heap_cache_give(const TbHeapBlock *block) {
  TbHeapBlock evicted[TB_HEAP_CACHE_MAX_BLOCKS + 1];
  unsigned n_evicted = 0;
  g_mutex_lock(&tb_cache_lock);
  if (block->mapping_size > TB_HEAP_CACHE_MAX_BYTES) {
    evicted[n_evicted++] = *block;
  } else {
    /* Make room by dropping the oldest blocks (the front of the array):
     * recently freed sizes are the ones a frame loop asks for again. */
    unsigned drop = 0;
    size_t dropped = 0;
    while (tb_cache_count - drop == TB_HEAP_CACHE_MAX_BLOCKS ||
           tb_cache_bytes - dropped + block->mapping_size >
               TB_HEAP_CACHE_MAX_BYTES) {
      dropped += tb_cache[drop].mapping_size;
      evicted[n_evicted++] = tb_cache[drop++];
    }
    if (drop > 0)
      memmove(tb_cache, tb_cache + drop,
              (tb_cache_count - drop) * sizeof *tb_cache);
    tb_cache_count -= drop;
    tb_cache_bytes -= dropped;
    tb_cache[tb_cache_count++] = *block;
    tb_cache_bytes += block->mapping_size;
  }
  g_mutex_unlock(&tb_cache_lock);
  /* Unmapped outside the lock: munmap of a large block takes a while. */
  for (unsigned i = 0; i < n_evicted; i++)
    munmap(evicted[i].mapping, evicted[i].mapping_size);
}

uint64_t tb_memory_trim(void) {
  TbHeapBlock evicted[TB_HEAP_CACHE_MAX_BLOCKS];
  g_mutex_lock(&tb_cache_lock);
  unsigned count = tb_cache_count;
  memcpy(evicted, tb_cache, count * sizeof *tb_cache);
  size_t bytes = tb_cache_bytes;
  tb_cache_count = 0;
  tb_cache_bytes = 0;
  g_mutex_unlock(&tb_cache_lock);
  for (unsigned i = 0; i < count; i++)
    munmap(evicted[i].mapping, evicted[i].mapping_size);
  return (uint64_t)bytes;
}

/* Nothing outlives the library: a leak checker at exit sees no block. */
__attribute__((destructor)) static void heap_cache_release_at_exit(void) {
  (void)tb_memory_trim();
}
