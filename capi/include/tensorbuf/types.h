/* tensorbuf — element types, memory kinds and allocation options. */
#ifndef TENSORBUF_TYPES_H
#define TENSORBUF_TYPES_H

#include "tensorbuf/status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Most dimensions a tensor may have. This and the other array-size macros
 * (TB_IMAGE_MAX_PLANES, ...) size arrays in callers' code: they are frozen
 * for SONAME 0 and change only with a new SONAME. */
#define TB_MAX_DIMS 16

/* Element types. Values are ABI: explicit, never renumbered. 0 is never a
 * valid dtype, so a zeroed struct cannot silently mean "bool". */
typedef enum tb_dtype {
  TB_DTYPE_INVALID = 0,
  TB_DTYPE_BOOL = 1,
  TB_DTYPE_U8 = 2,
  TB_DTYPE_I8 = 3,
  TB_DTYPE_U16 = 4,
  TB_DTYPE_I16 = 5,
  TB_DTYPE_U32 = 6,
  TB_DTYPE_I32 = 7,
  TB_DTYPE_U64 = 8,
  TB_DTYPE_I64 = 9,
  TB_DTYPE_F16 = 10,
  TB_DTYPE_BF16 = 11,
  TB_DTYPE_F32 = 12,
  TB_DTYPE_F64 = 13
} tb_dtype;

/* Bytes per element; 0 for an invalid dtype. */
TB_API size_t tb_dtype_size(tb_dtype dtype);
/* Lower-case name ("f32", "bf16", "bool"); NULL for an invalid dtype. */
TB_API const char *tb_dtype_name(tb_dtype dtype);
/* Parses a name as tb_dtype_name() writes it.
 * Errors: TB_ERR_INVALID_ARGUMENT (NULL out or name), TB_ERR_DTYPE (unknown).
 */
TB_API tb_status tb_dtype_from_name(tb_dtype *out, const char *name);

/* Where a buffer's bytes live. Values are ABI. */
typedef enum tb_memory {
  TB_MEMORY_AUTO = 0,      /* best available: DMA, then SHM, then HEAP */
  TB_MEMORY_HEAP = 1,      /* process-private, aligned; not shareable */
  TB_MEMORY_SHM = 2,       /* sealed memfd, shareable by fd */
  TB_MEMORY_DMA = 3,       /* DMA-BUF: the dma-heap TENSORBUF_DMA_HEAP names,
                              then default_cma_region, linux,cma, reserved,
                              system; else udmabuf over a sealed memfd */
  TB_MEMORY_CUDA = 4,      /* CUDA device memory, exportable as an fd */
  TB_MEMORY_CUDA_HOST = 5, /* SHM pinned for the GPU */
  TB_MEMORY_FILE = 6       /* read-only mapping of a regular file; made by
                              tb_buffer_map_file (file.h), never allocated */
} tb_memory;

/* Lower-case name ("auto", "heap", "shm", "dma", "cuda", "cuda_host",
 * "file");
 * NULL for a value outside the enum. */
TB_API const char *tb_memory_name(tb_memory memory);
/* Errors: TB_ERR_INVALID_ARGUMENT (NULL argument or unknown name). */
TB_API tb_status tb_memory_from_name(tb_memory *out, const char *name);
/* Whether buffers of this kind can be allocated in this process now
 * (AUTO and HEAP: always; FILE: never, files are mapped, not allocated).
 * Probes once per kind; thread-safe. */
TB_API bool tb_memory_available(tb_memory memory);

/* Why the calling thread's last allocation with memory AUTO skipped kinds
 * ("dma: <why>; shm: <why>"), or "" when it took the first. AUTO tries DMA,
 * SHM, then HEAP, and falls back when a kind is unavailable or its
 * allocation fails (a dma-heap out of CMA). Valid until this thread's next
 * AUTO allocation; never NULL. */
TB_API const char *tb_memory_auto_skipped(void);

/* Allocation flags. */
#define TB_ALLOC_HUGE_PAGES                                                    \
  0x1u /* 2 MiB alignment and transparent huge pages */
/* The bytes may hold anything, as np.empty and torch.empty give: for output
 * buffers that are written in full before being read. Saves clearing a heap
 * block reused from the allocator's cache (small blocks and reused large
 * ones); memory of the other kinds, and fresh mappings, still come zeroed.
 * Never hands out another process's data: only this process's freed heap
 * memory is reused. */
#define TB_ALLOC_UNINITIALIZED 0x2u

#define TB_ALLOC_OPTIONS_VERSION 2

/* Options for every allocating call. NULL options mean the defaults below.
 * The struct only ever grows at its end; `version` says which fields the
 * caller knows about. */
typedef struct tb_alloc_options {
  uint32_t version;   /* TB_ALLOC_OPTIONS_VERSION */
  uint32_t memory;    /* a tb_memory; default TB_MEMORY_AUTO. The environment
                         variable TENSORBUF_MEMORY=heap|shm|dma overrides AUTO */
  uint64_t alignment; /* bytes, a power of two; 0 = 64 */
  const char *name;   /* tensor and memfd name (copied); may be NULL */
  uint32_t flags;     /* TB_ALLOC_* */
  /* Version 2: */
  uint32_t device; /* CUDA and CUDA_HOST: the device ordinal (cuDeviceGet);
                      default 0; other kinds ignore it */
} tb_alloc_options;

#define TB_ALLOC_OPTIONS_INIT                                                  \
  { TB_ALLOC_OPTIONS_VERSION, TB_MEMORY_AUTO, 0, NULL, 0, 0 }

/* Fills *opts with the defaults of the given struct version, for languages
 * that cannot expand TB_ALLOC_OPTIONS_INIT. Writes only the fields that
 * `version` has (a caller built against an older header passes a shorter
 * struct), and sets opts->version to `version`.
 * Errors: TB_ERR_INVALID_ARGUMENT (NULL opts), TB_ERR_VERSION. */
TB_API tb_status tb_alloc_options_init(tb_alloc_options *opts,
                                       uint32_t version);

#ifdef __cplusplus
}
#endif

#endif /* TENSORBUF_TYPES_H */
