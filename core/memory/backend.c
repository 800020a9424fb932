/* Backend lookup, AUTO resolution and aligned mappings. */
#include "memory/backend.h"

#include <errno.h>
#include <sys/mman.h>
#include <unistd.h>

_Alignas(64) uint8_t tb_empty_bytes[64];

static const char *const tb_memory_names[] = {
    [TB_MEMORY_AUTO] = "auto", [TB_MEMORY_HEAP] = "heap",
    [TB_MEMORY_SHM] = "shm",   [TB_MEMORY_DMA] = "dma",
    [TB_MEMORY_CUDA] = "cuda", [TB_MEMORY_CUDA_HOST] = "cuda_host",
    [TB_MEMORY_FILE] = "file",
};

const char *tb_memory_name(tb_memory memory) {
  return (unsigned)memory < G_N_ELEMENTS(tb_memory_names)
             ? tb_memory_names[memory]
             : NULL;
}

const TbBackend *tb_backend_for(tb_memory memory) {
  switch (memory) {
  case TB_MEMORY_HEAP:
    return &tb_backend_heap;
  case TB_MEMORY_SHM:
    return &tb_backend_memfd;
  case TB_MEMORY_DMA:
    return &tb_backend_dma;
  case TB_MEMORY_FILE:
    return &tb_backend_file;
  case TB_MEMORY_CUDA:
    return &tb_backend_cuda;
  case TB_MEMORY_CUDA_HOST:
    return &tb_backend_cuda_host;
  case TB_MEMORY_AUTO:
    break;
  }
  return NULL;
}

const tb_memory tb_backend_auto_order[TB_BACKEND_AUTO_KINDS] = {
    TB_MEMORY_DMA, TB_MEMORY_SHM, TB_MEMORY_HEAP};

gboolean tb_backend_usable(tb_memory memory) {
  const TbBackend *backend = tb_backend_for(memory);
  return backend != NULL && backend->available();
}

const char *tb_backend_unusable_reason(tb_memory memory) {
  const TbBackend *backend = tb_backend_for(memory);
  if (backend == NULL)
    return "this build has no backend for it yet";
  if (backend->unavailable_reason != NULL)
    return backend->unavailable_reason();
  return "its probe failed";
}

bool tb_memory_available(tb_memory memory) {
  if (memory == TB_MEMORY_AUTO)
    return true;
  return tb_backend_usable(memory);
}

gboolean tb_backend_resolve(tb_memory requested, tb_memory *resolved,
                            gboolean *automatic, GError **error) {
  tb_memory memory = requested;
  *automatic = FALSE;
  if (memory == TB_MEMORY_AUTO) {
    const char *forced = g_getenv("TENSORBUF_MEMORY");
    if (forced != NULL && *forced != '\0') {
      if (g_str_equal(forced, "heap"))
        memory = TB_MEMORY_HEAP;
      else if (g_str_equal(forced, "shm"))
        memory = TB_MEMORY_SHM;
      else if (g_str_equal(forced, "dma"))
        memory = TB_MEMORY_DMA;
      else {
        g_set_error(error, TB_BACKEND_ERROR, TB_ERR_INVALID_ARGUMENT,
                    "TENSORBUF_MEMORY is \"%s\"; expected heap, shm or dma",
                    forced);
        return FALSE;
      }
    } else {
      *automatic = TRUE;
      memory = TB_MEMORY_HEAP;
      for (size_t i = 0; i < TB_BACKEND_AUTO_KINDS; i++) {
        if (tb_backend_usable(tb_backend_auto_order[i])) {
          memory = tb_backend_auto_order[i];
          break;
        }
      }
    }
  }
  if (!tb_backend_usable(memory)) {
    g_set_error(error, TB_BACKEND_ERROR, TB_ERR_UNSUPPORTED,
                "memory kind %s is not available in this process (%s)",
                tb_memory_name(memory), tb_backend_unusable_reason(memory));
    return FALSE;
  }
  *resolved = memory;
  return TRUE;
}

gboolean tb_size_mappable(uint64_t size, const char *what, GError **error) {
  if (size > SIZE_MAX) {
    g_set_error(error, TB_BACKEND_ERROR, TB_ERR_NO_MEMORY,
                "%s of %" G_GUINT64_FORMAT " bytes is larger than this "
                "process can map",
                what, size);
    return FALSE;
  }
  return TRUE;
}

/* The kernel's limit: NAME_MAX less the "memfd:" prefix it adds. */
#define TB_MEMFD_NAME_MAX 249

int tb_memfd_create(const char *name, unsigned flags) {
  g_autofree char *truncated =
      g_strndup(name != NULL ? name : "tensorbuf", TB_MEMFD_NAME_MAX);
  return memfd_create(truncated, flags);
}

void *tb_mmap_aligned(size_t length, uint64_t alignment, int prot, int flags,
                      int fd, uint64_t offset) {
  size_t page = (size_t)sysconf(_SC_PAGESIZE);
  if (alignment <= page)
    return mmap(NULL, length, prot, flags, fd, (off_t)offset);

  /* Reserve enough address space to find an aligned start, place the real
   * mapping there, and give back the slack on both sides. */
  if (alignment > SIZE_MAX - length) {
    errno = ENOMEM;
    return MAP_FAILED;
  }
  size_t reserve = length + (size_t)alignment;
  uint8_t *base = mmap(NULL, reserve, PROT_NONE,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (base == MAP_FAILED)
    return MAP_FAILED;
  uint8_t *start = (uint8_t *)(((uintptr_t)base + alignment - 1) &
                               ~(uintptr_t)(alignment - 1));
  void *mapped =
      mmap(start, length, prot, flags | MAP_FIXED, fd, (off_t)offset);
  if (mapped == MAP_FAILED) {
    int saved = errno;
    munmap(base, reserve);
    errno = saved;
    return MAP_FAILED;
  }
  size_t mapped_end =
      ((size_t)(start - base) + length + page - 1) & ~(page - 1);
  if (start > base)
    munmap(base, (size_t)(start - base));
  if (mapped_end < reserve)
    munmap(base + mapped_end, reserve - mapped_end);
  return mapped;
}
