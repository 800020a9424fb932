/* tensorbuf — buffers: refcounted blocks of bytes of one memory kind.
 *
 * A buffer has an identity (a uint64 id minted per allocation or import and
 * never reused in the process) and, for SHM and DMA, a file descriptor.
 * Heap and SHM buffers are mapped once for their whole lifetime. */
#ifndef TENSORBUF_BUFFER_H
#define TENSORBUF_BUFFER_H

#include "tensorbuf/types.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct tb_buffer tb_buffer;

/* Called once when a wrapped buffer's last reference goes. */
typedef void (*tb_destroy_notify)(void *user_data);

/* Buffer flags. */
#define TB_BUFFER_READ_ONLY 0x1u

/* Allocates `size` zeroed bytes (0 is allowed; TB_ALLOC_UNINITIALIZED in
 * opts->flags skips the clearing where it costs time). The new buffer has one
 * reference, owned by the caller.
 * Errors: TB_ERR_INVALID_ARGUMENT (NULL out; bad alignment, flags or memory
 * value in opts; bad TENSORBUF_MEMORY), TB_ERR_VERSION, TB_ERR_NO_MEMORY,
 * TB_ERR_UNSUPPORTED (memory kind not available here), TB_ERR_SYSTEM. */
TB_API tb_status tb_buffer_new(tb_buffer **out, uint64_t size,
                               const tb_alloc_options *opts);

/* Wraps caller memory without a copy, as a HEAP buffer. `destroy` (may be
 * NULL) is called with `user_data` when the last reference goes, from
 * whichever thread drops it. If this call fails, `destroy` is not called.
 * flags: TB_BUFFER_READ_ONLY refuses write maps.
 * Errors: TB_ERR_INVALID_ARGUMENT (NULL out, NULL data with size > 0, unknown
 * flags). */
TB_API tb_status tb_buffer_wrap(tb_buffer **out, void *data, uint64_t size,
                                uint32_t flags, tb_destroy_notify destroy,
                                void *user_data);

/* Adds a reference and returns `buffer`; NULL-safe. Thread-safe. */
TB_API tb_buffer *tb_buffer_ref(tb_buffer *buffer);
/* Drops a reference; frees on the last one. NULL is a no-op. Thread-safe. */
TB_API void tb_buffer_unref(tb_buffer *buffer);

/* Getters; a NULL buffer gives 0 / TB_MEMORY_AUTO / false. */
TB_API uint64_t tb_buffer_size(const tb_buffer *buffer);
TB_API tb_memory tb_buffer_memory(const tb_buffer *buffer);
TB_API uint64_t tb_buffer_id(const tb_buffer *buffer);
TB_API bool tb_buffer_read_only(const tb_buffer *buffer);

/* The buffer's own fd (SHM and DMA), borrowed: no dup, valid while the
 * buffer lives, and never to be closed by the caller (dup it to keep it;
 * tb_tensor_export_fd does). -1 for memory without an fd or a NULL buffer.
 * Thread-safe. */
TB_API int tb_buffer_fd(const tb_buffer *buffer);
/* Where the buffer's byte 0 lies in its fd's file: 0, except for a buffer
 * received over a channel, which maps only the pages of the file its
 * tensors use. Whoever maps the fd (or passes it on) adds it to offsets in
 * the buffer. 0 for NULL. Thread-safe. */
TB_API uint64_t tb_buffer_fd_offset(const tb_buffer *buffer);

/* A key for caches of per-memory objects (an EGLImage, an engine binding)
 * that is the same for every buffer over the same underlying file: two
 * imports of one dma-buf or memfd, in this process, give equal keys, where
 * their ids differ. Made from the file's device and inode. 0 for memory
 * without an fd (use tb_buffer_id) or a NULL buffer. Thread-safe. */
TB_API uint64_t tb_buffer_key(const tb_buffer *buffer);

/* Whether the buffer that had this id is still alive: a cache keyed by
 * buffer id uses it to tell stale entries. Thread-safe. */
TB_API bool tb_buffer_alive(uint64_t id);

/* Gives the heap's cache of freed large blocks back to the system; returns
 * the bytes unmapped. Freed heap buffers of 256 KiB or more are kept mapped
 * (at most 16 blocks, 128 MiB) so the next allocation of a like size skips
 * the page faults of fresh memory; call this on memory pressure. The cache
 * is emptied at exit too. Thread-safe. */
TB_API uint64_t tb_memory_trim(void);

#ifdef __cplusplus
}
#endif

#endif /* TENSORBUF_BUFFER_H */
