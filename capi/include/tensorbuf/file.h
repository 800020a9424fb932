/* tensorbuf — tensors over files: mapped model weights and streaming reads.
 *
 * tb_buffer_map_file maps a whole regular file read-only as one buffer of
 * memory kind TB_MEMORY_FILE; tensors over it are made with
 * tb_tensor_from_buffer and work like any other read-only tensor (views,
 * maps for reading, DLPack, fd export). Every process that maps the same
 * file shares its pages in the page cache.
 *
 * WARNING: a regular file cannot be sealed. Its size is checked when it is
 * mapped, but whoever can write the file can still truncate it later, and
 * then every reader of the lost pages is killed by SIGBUS. Map only files
 * that no untrusted process can truncate; to share bytes with untrusted
 * processes, pass TB_FILE_SEALED_COPY, which copies the file into a memfd
 * sealed against every change (TB_MEMORY_SHM, read-only).
 *
 * tb_tensor_read_file streams a byte range of a file into an existing
 * tensor (for example a slot of a tb_pool) with pread, bypassing the page
 * cache with O_DIRECT when the alignment allows, and says which it did. */
#ifndef TENSORBUF_FILE_H
#define TENSORBUF_FILE_H

#include "tensorbuf/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* tb_buffer_map_file flags. */
#define TB_FILE_SEALED_COPY                                                    \
  0x1u /* copy into a sealed memfd instead of mapping the file */

/* Maps the whole regular file named by `path`, or open as `fd` (give exactly
 * one: path NULL or fd -1), read-only as a new buffer (one reference, owned
 * by the caller). The buffer keeps its own descriptor of the file; the
 * caller's fd is neither closed nor moved. A zero-length file gives an empty
 * buffer. With TB_FILE_SEALED_COPY the bytes are copied into a sealed memfd
 * and the buffer is TB_MEMORY_SHM; otherwise it is TB_MEMORY_FILE.
 * Thread-safe.
 * Errors: TB_ERR_INVALID_ARGUMENT (NULL out, both or neither of path and fd,
 * unknown flags), TB_ERR_BAD_FD (not a regular file, not open, or it shrank
 * while it was mapped), TB_ERR_NO_MEMORY, TB_ERR_SYSTEM (open, mmap or the
 * copy failed; tb_last_errno says why, e.g. ENOENT). */
TB_API tb_status tb_buffer_map_file(tb_buffer **out, const char *path, int fd,
                                    uint32_t flags);

/* How tb_tensor_read_file read. Values are ABI. */
typedef enum tb_read_mode {
  TB_READ_DIRECT = 1,    /* O_DIRECT: the page cache was bypassed */
  TB_READ_BUFFERED = 2,  /* through the page cache, as TB_READ_NO_DIRECT asks */
  TB_READ_UNALIGNED = 3, /* through the page cache: the tensor's address, the
                            offset or the length is not a multiple of 4096 */
  TB_READ_NO_DIRECT_HERE = 4 /* through the page cache: the file system
                                refused O_DIRECT (tmpfs, for one) */
} tb_read_mode;

/* tb_tensor_read_file flags. */
#define TB_READ_NO_DIRECT 0x1u /* never O_DIRECT */

/* Reads tb_tensor_nbytes(tensor) bytes of the regular file `fd`, starting
 * at byte `offset`, into the contiguous, writable `tensor`, with pread (the
 * fd's file position is not used or moved). O_DIRECT is used when the
 * tensor's address, `offset` and the length are multiples of 4096 (a pool
 * or tensor with alignment 4096 and a length in whole pages gives that) and
 * the file system allows it; `*mode_out` (may be NULL) says which path read.
 * On failure the tensor's bytes are unspecified. Thread-safe as long as no
 * one else accesses the tensor's bytes meanwhile.
 * Errors: TB_ERR_INVALID_ARGUMENT (NULL tensor, negative fd, unknown
 * flags), TB_ERR_BAD_FD (not a regular file), TB_ERR_LAYOUT (tensor not
 * contiguous), TB_ERR_READ_ONLY, TB_ERR_OUT_OF_RANGE (the range goes past
 * the end of the file), TB_ERR_SYSTEM (the read failed). */
TB_API tb_status tb_tensor_read_file(tb_read_mode *mode_out, tb_tensor *tensor,
                                     int fd, uint64_t offset, uint32_t flags);

#ifdef __cplusplus
}
#endif

#endif /* TENSORBUF_FILE_H */
