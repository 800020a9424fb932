/* tensorbuf — tensors: typed, refcounted views of a buffer.
 *
 * A tensor is a buffer + byte offset + dtype + shape + strides (+ optional
 * name and quantization). The dtype is a runtime value. Shapes are int64,
 * 0..TB_MAX_DIMS dims; zero-size dims are allowed and ndim 0 is a scalar.
 * Strides are counted in elements and may be negative or zero; a NULL
 * strides argument means row-major (C-contiguous). Views share the buffer.
 *
 * Thread-safety: ref/unref and every read-only call may be used from any
 * thread. Calls that change a tensor's metadata (set_name, set_quantization)
 * must not race with other calls on the same tensor. Element and byte access
 * is not synchronised: concurrent writers to the same bytes must coordinate. */
#ifndef TENSORBUF_TENSOR_H
#define TENSORBUF_TENSOR_H

#include "tensorbuf/buffer.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct tb_tensor tb_tensor;
typedef struct tb_map tb_map;

/* ---- creation ---------------------------------------------------------- */

/* New zero-filled, row-major tensor in a buffer of its own.
 * Errors: TB_ERR_INVALID_ARGUMENT (NULL out, NULL shape with ndim > 0, bad
 * opts), TB_ERR_DTYPE, TB_ERR_SHAPE (ndim > TB_MAX_DIMS, negative dim, byte
 * size overflows), TB_ERR_VERSION, TB_ERR_NO_MEMORY, TB_ERR_UNSUPPORTED,
 * TB_ERR_SYSTEM. */
TB_API tb_status tb_tensor_new(tb_tensor **out, tb_dtype dtype, size_t ndim,
                               const int64_t *shape,
                               const tb_alloc_options *opts);

/* View of `buffer` starting at `byte_offset` (the address of element 0).
 * Takes its own reference to the buffer. Every element the shape and strides
 * reach must lie inside the buffer.
 * Errors: TB_ERR_INVALID_ARGUMENT (NULL out/buffer/shape), TB_ERR_DTYPE,
 * TB_ERR_SHAPE, TB_ERR_OUT_OF_RANGE (an element outside the buffer). */
TB_API tb_status tb_tensor_from_buffer(tb_tensor **out, tb_buffer *buffer,
                                       uint64_t byte_offset, tb_dtype dtype,
                                       size_t ndim, const int64_t *shape,
                                       const int64_t *strides);

/* Row-major tensor over a shared-memory or dma-buf fd. The fd is dup'd: the
 * caller keeps and closes its own. The fd is classified by the kernel
 * (F_GET_SEALS: memfd/shmem; fstatfs: dma-buf) and its size checked with
 * fstat before anything is mapped. A memfd not yet sealed against shrinking
 * is sealed (F_SEAL_SHRINK), so no peer can truncate it under the mapping; a
 * file that cannot be sealed is refused. An fd opened read-only or sealed
 * against writing gives a read-only tensor. A dma-buf whose exporter refuses
 * mmap (device memory) still imports, as TB_MEMORY_DMA, and exports again;
 * maps and element access of it give TB_ERR_UNSUPPORTED.
 * Errors: TB_ERR_INVALID_ARGUMENT (NULL out/shape, negative fd),
 * TB_ERR_DTYPE, TB_ERR_SHAPE, TB_ERR_BAD_FD (closed fd, pipe, regular file,
 * directory, unsealable memfd), TB_ERR_OUT_OF_RANGE (offset + bytes beyond
 * the file), TB_ERR_NO_MEMORY (too large to map), TB_ERR_SYSTEM. */
TB_API tb_status tb_tensor_import_fd(tb_tensor **out, int fd, tb_dtype dtype,
                                     size_t ndim, const int64_t *shape,
                                     uint64_t byte_offset);

/* A new fd (close-on-exec) for the tensor's buffer; the caller closes it.
 * Pass it with tb_tensor_offset() plus tb_buffer_fd_offset() of the
 * tensor's buffer (not 0 for a received tensor, whose buffer maps part of
 * the file), dtype and shape to tb_tensor_import_fd.
 * Errors: TB_ERR_INVALID_ARGUMENT (NULL argument), TB_ERR_UNSUPPORTED (HEAP
 * memory has no fd), TB_ERR_SYSTEM. */
TB_API tb_status tb_tensor_export_fd(int *out_fd, const tb_tensor *tensor);

/* The fd of the tensor's buffer, borrowed as tb_buffer_fd gives it: valid
 * while the tensor (or its buffer) lives, never to be closed. -1 without an
 * fd or for NULL. */
TB_API int tb_tensor_fd(const tb_tensor *tensor);

/* Copies the elements of `src` into `dst` (same dtype and shape, any
 * strides, any two memory kinds). Host memory is copied by the CPU; where
 * either side is CUDA device memory the GPU copies, which needs both
 * tensors contiguous. `stream` (a CUstream, see tensorbuf/cuda.h) queues a
 * device copy asynchronously: the call returns at once and both tensors
 * must stay alive and unmapped until the stream has run it. With stream 0,
 * or without device memory, the copy is done when the call returns.
 * Errors: TB_ERR_INVALID_ARGUMENT (NULL argument, dst and src overlap),
 * TB_ERR_DTYPE (dtypes differ), TB_ERR_SHAPE (shapes differ),
 * TB_ERR_READ_ONLY (dst), TB_ERR_LAYOUT (a strided tensor in device
 * memory), TB_ERR_UNSUPPORTED (memory without CPU access, no CUDA driver),
 * TB_ERR_SYSTEM (the driver refused the copy). */
TB_API tb_status tb_tensor_copy(tb_tensor *dst, const tb_tensor *src,
                                uint64_t stream);

/* ---- references ---------------------------------------------------------- */

TB_API tb_tensor *tb_tensor_ref(tb_tensor *tensor); /* NULL-safe */
TB_API void tb_tensor_unref(tb_tensor *tensor);     /* NULL is a no-op */

/* ---- description --------------------------------------------------------
 * A NULL tensor or an axis >= ndim gives 0 (TB_DTYPE_INVALID, false, NULL). */

/* Element type, number of axes, and length of `axis`. */
TB_API tb_dtype tb_tensor_dtype(const tb_tensor *tensor);
TB_API size_t tb_tensor_ndim(const tb_tensor *tensor);
TB_API int64_t tb_tensor_dim(const tb_tensor *tensor, size_t axis);
/* Stride of `axis` in elements. */
TB_API int64_t tb_tensor_stride(const tb_tensor *tensor, size_t axis);
/* Number of elements (1 for a scalar, 0 if any dim is 0). */
TB_API uint64_t tb_tensor_numel(const tb_tensor *tensor);
/* numel * dtype size: the bytes of the elements, not of the buffer. */
TB_API uint64_t tb_tensor_nbytes(const tb_tensor *tensor);
/* Byte offset of element 0 in the buffer. */
TB_API uint64_t tb_tensor_offset(const tb_tensor *tensor);
TB_API bool tb_tensor_is_contiguous(const tb_tensor *tensor);
TB_API tb_memory tb_tensor_memory(const tb_tensor *tensor);
TB_API bool tb_tensor_read_only(const tb_tensor *tensor);
/* The buffer's identity: tensors with the same id view the same buffer. */
TB_API uint64_t tb_tensor_buffer_id(const tb_tensor *tensor);
/* A new reference to the tensor's buffer (caller unrefs), or NULL. */
TB_API tb_buffer *tb_tensor_buffer(const tb_tensor *tensor);
/* Whether the two tensors' element ranges overlap in one buffer. */
TB_API bool tb_tensor_shares_memory(const tb_tensor *a, const tb_tensor *b);

/* Name (from the alloc options or set later), or NULL if unnamed. Valid until
 * the name changes or the tensor dies. */
TB_API const char *tb_tensor_name(const tb_tensor *tensor);
/* Sets or (name NULL) clears the name; the string is copied.
 * Errors: TB_ERR_INVALID_ARGUMENT (NULL tensor). */
TB_API tb_status tb_tensor_set_name(tb_tensor *tensor, const char *name);

/* ---- views (share the buffer; metadata rules below) --------------------- */

/* Same bytes, new shape with the same element count; one dim may be -1 and
 * is inferred. Only for contiguous tensors. Keeps the name and per-tensor
 * quantization; drops per-axis quantization.
 * Errors: TB_ERR_INVALID_ARGUMENT (NULL argument), TB_ERR_SHAPE (count
 * differs, several -1, bad dims), TB_ERR_LAYOUT (not contiguous). */
TB_API tb_status tb_tensor_reshape(tb_tensor **out, const tb_tensor *tensor,
                                   size_t ndim, const int64_t *shape);

/* Elements start, start+step, ... < stop of `axis` (0 <= start <= stop <=
 * dim, step >= 1). Keeps the name and quantization (per-axis parameters of
 * the sliced axis are sliced with it).
 * Errors: TB_ERR_INVALID_ARGUMENT (NULL argument), TB_ERR_OUT_OF_RANGE
 * (axis, start, stop or step). */
TB_API tb_status tb_tensor_slice(tb_tensor **out, const tb_tensor *tensor,
                                 size_t axis, int64_t start, int64_t stop,
                                 int64_t step);

/* ---- quantization (integer dtypes only) --------------------------------- */

/* Sets real = scale * (q - zero_point). axis -1: per-tensor, count must be
 * 1; otherwise per-axis, count must equal dim(axis). zero_points may be NULL
 * (all 0). Scales must be finite and > 0; zero points must be representable
 * in the dtype. count 0 (scales NULL) removes the quantization.
 * Errors: TB_ERR_INVALID_ARGUMENT (NULL tensor, NULL scales with count > 0,
 * bad scale), TB_ERR_DTYPE (not an integer dtype), TB_ERR_OUT_OF_RANGE (axis,
 * count, zero point). */
TB_API tb_status tb_tensor_set_quantization(tb_tensor *tensor, int64_t axis,
                                            size_t count, const double *scales,
                                            const int64_t *zero_points);
/* Number of (scale, zero point) pairs: 0 = not quantized, 1 = per-tensor
 * when tb_tensor_quantization_axis() is -1. */
TB_API size_t tb_tensor_quantization_count(const tb_tensor *tensor);
/* Quantized axis, or -1 for per-tensor (and for none). */
TB_API int64_t tb_tensor_quantization_axis(const tb_tensor *tensor);
/* Errors: TB_ERR_INVALID_ARGUMENT (NULL argument), TB_ERR_OUT_OF_RANGE
 * (index >= count). */
TB_API tb_status tb_tensor_quantization_get(double *scale_out,
                                            int64_t *zero_point_out,
                                            const tb_tensor *tensor,
                                            size_t index);

/* ---- element and byte access -------------------------------------------
 * `index` has `nindex` == ndim entries, each 0 <= i < dim (NULL for a
 * scalar). These map and unmap internally (with the cache sync the memory
 * kind needs), so they are for scripting, not for inner loops. */

/* Any dtype; 64-bit integers above 2^53 round.
 * Errors: TB_ERR_INVALID_ARGUMENT (NULL out/tensor), TB_ERR_SHAPE (nindex !=
 * ndim), TB_ERR_OUT_OF_RANGE (index), TB_ERR_UNSUPPORTED (memory without CPU
 * access). */
TB_API tb_status tb_tensor_get_f64(double *out, tb_tensor *tensor,
                                   size_t nindex, const int64_t *index);
/* Integer and bool dtypes only (else TB_ERR_DTYPE); a u64 above INT64_MAX
 * gives TB_ERR_OUT_OF_RANGE. Other errors as tb_tensor_get_f64. */
TB_API tb_status tb_tensor_get_i64(int64_t *out, tb_tensor *tensor,
                                   size_t nindex, const int64_t *index);
/* Integer dtypes take only whole values in their range, bool only 0 and 1
 * (else TB_ERR_OUT_OF_RANGE); float dtypes take any value and round, but a
 * finite value beyond the dtype's largest gives TB_ERR_OUT_OF_RANGE.
 * Errors also: TB_ERR_READ_ONLY, and those of tb_tensor_get_f64. */
TB_API tb_status tb_tensor_set_f64(tb_tensor *tensor, size_t nindex,
                                   const int64_t *index, double value);
/* As tb_tensor_set_f64, with an exact integer for integer dtypes. */
TB_API tb_status tb_tensor_set_i64(tb_tensor *tensor, size_t nindex,
                                   const int64_t *index, int64_t value);

/* Copies the elements, in row-major order whatever the strides, into `dst`
 * (`size` must be >= nbytes; exactly nbytes are written).
 * Errors: TB_ERR_INVALID_ARGUMENT (NULL argument with nbytes > 0),
 * TB_ERR_OUT_OF_RANGE (size too small), TB_ERR_UNSUPPORTED. */
TB_API tb_status tb_tensor_read_bytes(void *dst, size_t size,
                                      tb_tensor *tensor);
/* Copies `size` == nbytes bytes from `src` into the elements, in row-major
 * order. Errors: as tb_tensor_read_bytes, TB_ERR_OUT_OF_RANGE when size !=
 * nbytes, TB_ERR_READ_ONLY. */
TB_API tb_status tb_tensor_write_bytes(tb_tensor *tensor, const void *src,
                                       size_t size);

/* ---- CPU maps ------------------------------------------------------------ */

#define TB_MAP_READ 0x1u
#define TB_MAP_WRITE 0x2u

/* Maps the tensor for CPU access. The map holds a reference to the tensor,
 * so its pointer stays valid until tb_map_unmap even if the caller drops the
 * tensor. Heap and SHM memory is mapped once per buffer: this call makes no
 * system call.
 * Errors: TB_ERR_INVALID_ARGUMENT (NULL out/tensor, flags not a non-empty
 * combination of TB_MAP_READ|TB_MAP_WRITE), TB_ERR_READ_ONLY (WRITE on
 * read-only memory), TB_ERR_UNSUPPORTED (memory without CPU access),
 * TB_ERR_NO_MEMORY. */
TB_API tb_status tb_tensor_map(tb_map **out, tb_tensor *tensor, uint32_t flags);

/* Address of element 0 (NULL after unmap or for a NULL map). With negative
 * strides some elements lie below it. */
TB_API void *tb_map_data(const tb_map *map);
/* The flags the map was made with (0 after unmap). */
TB_API uint32_t tb_map_flags(const tb_map *map);
/* The mapped tensor (borrowed; NULL after unmap). */
TB_API tb_tensor *tb_map_tensor(const tb_map *map);
/* Ends CPU access and releases the tensor. Idempotent; NULL-safe. */
TB_API void tb_map_unmap(tb_map *map);
/* Unmaps if still mapped and frees the handle. NULL is a no-op. */
TB_API void tb_map_free(tb_map *map);

#ifdef __cplusplus
}
#endif

#endif /* TENSORBUF_TENSOR_H */
