/* Memory backends: a small vtable per memory kind. A backend knows bytes,
 * never tensors. Adding a kind (DMA, CUDA, Vulkan) is one new file plus its
 * entry in tb_backend_for(). */
#ifndef TB_BACKEND_H
#define TB_BACKEND_H

#include "core.h"

/* Validated allocation parameters (defaults applied). */
typedef struct TbAllocParams {
  tb_memory memory;   /* resolved: never AUTO */
  uint64_t alignment; /* power of two */
  const char *name;   /* may be NULL */
  uint32_t flags;     /* TB_ALLOC_* */
  /* AUTO was asked for: a failed allocation falls back to the next kind
   * (tb_backend_auto_order). */
  gboolean automatic;
  uint32_t device;    /* CUDA kinds: the device ordinal */
} TbAllocParams;

typedef struct TbBackend {
  tb_memory memory;
  const char *name;
  gboolean (*available)(void);
  /* Why available() is FALSE (what was tried), or NULL if it says nothing. */
  const char *(*unavailable_reason)(void);
  /* Fills buffer->data (and fd, mapping) for buffer->size bytes, zeroed. */
  gboolean (*alloc)(tb_buffer *buffer, const TbAllocParams *params,
                    GError **error);
  /* Takes ownership of `fd` (already classified and size-checked) and maps
   * buffer->size bytes of it from buffer->fd_offset. On failure the fd is
   * left open for the caller. */
  gboolean (*import_fd)(tb_buffer *buffer, int fd, GError **error);
  /* Bracket CPU access (cache sync); NULL where the memory needs none. */
  gboolean (*begin_access)(tb_buffer *buffer, uint32_t map_flags,
                           GError **error);
  void (*end_access)(tb_buffer *buffer, uint32_t map_flags);
  /* Releases what alloc/import acquired. */
  void (*release)(tb_buffer *buffer);
} TbBackend;

extern const TbBackend tb_backend_heap;
extern const TbBackend tb_backend_wrapped;
extern const TbBackend tb_backend_memfd;
extern const TbBackend tb_backend_dma;
extern const TbBackend tb_backend_file;
extern const TbBackend tb_backend_cuda;
extern const TbBackend tb_backend_cuda_host;

/* DMA_BUF_IOCTL_SYNC START (`start`) or END on a dma-buf for a CPU access of
 * `map_flags` (TB_MAP_READ/WRITE): the bracket the DMA backend puts around
 * every map. Fails with TB_ERR_SYSTEM on an fd that is not a dma-buf. */
gboolean tb_dma_buf_sync(int fd, uint32_t map_flags, gboolean start,
                         GError **error);

/* The backend of a concrete kind, or NULL if the kind has none yet. */
const TbBackend *tb_backend_for(tb_memory memory);

/* Resolves AUTO (and TENSORBUF_MEMORY) to a concrete, available kind;
 * `*automatic` says whether AUTO's preference chose it. */
gboolean tb_backend_resolve(tb_memory requested, tb_memory *resolved,
                            gboolean *automatic, GError **error);

/* AUTO's preference, best first: DMA, SHM, HEAP. */
#define TB_BACKEND_AUTO_KINDS 3
extern const tb_memory tb_backend_auto_order[TB_BACKEND_AUTO_KINDS];

/* Whether `memory` has a backend available in this process. */
gboolean tb_backend_usable(tb_memory memory);
/* Why it has not (what was tried), or a generic reason. */
const char *tb_backend_unusable_reason(tb_memory memory);

/* mmap of `fd` from `offset` (a whole number of pages) with an alignment
 * beyond the page size (by over-reserving and trimming). Returns MAP_FAILED
 * with errno set on failure. */
void *tb_mmap_aligned(size_t length, uint64_t alignment, int prot, int flags,
                      int fd, uint64_t offset);

/* Whether `size` bytes can be mapped at all: a 64-bit size must never be
 * truncated on its way to mmap (32-bit builds with 64-bit file offsets).
 * Sets TB_ERR_NO_MEMORY naming `what` if not. */
gboolean tb_size_mappable(uint64_t size, const char *what, GError **error);

/* memfd_create under `name` (NULL: "tensorbuf"), cut to the 249 bytes the
 * kernel takes, as dma-buf names are cut to DMA_BUF_NAME_LEN. */
int tb_memfd_create(const char *name, unsigned flags);

/* The empty buffers' data pointer: valid, aligned, never dereferenced. */
extern uint8_t tb_empty_bytes[];

#endif /* TB_BACKEND_H */
