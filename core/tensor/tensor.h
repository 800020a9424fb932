/* Tensors: typed views of a buffer. */
#ifndef TB_TENSOR_INTERNAL_H
#define TB_TENSOR_INTERNAL_H

#include "memory/buffer.h"
#include "tensorbuf/pool.h"

typedef struct TbQuantization {
  int64_t axis; /* -1: per-tensor */
  size_t count;
  double *scales;
  int64_t *zero_points;
} TbQuantization;

/* A lease ties tensors to something that wants to know when the last of
 * them is gone: a pool slot (to recycle its buffer) or a tensor received
 * from a channel (to send the release back). Every view of a leased tensor
 * holds the lease too. */
typedef struct TbLease TbLease;
struct TbLease {
  gatomicrefcount holders;
  void (*release)(TbLease *lease); /* runs when the last holder lets go */
  tb_pool *pool;                   /* the pool behind a slot lease, or NULL */
};

static inline TbLease *tb_lease_hold(TbLease *lease) {
  if (lease != NULL)
    g_atomic_ref_count_inc(&lease->holders);
  return lease;
}

static inline void tb_lease_drop(TbLease *lease) {
  if (lease != NULL && g_atomic_ref_count_dec(&lease->holders))
    lease->release(lease);
}

typedef struct TbImage TbImage; /* image.h */

struct tb_tensor {
  tb_buffer *buffer;
  uint64_t offset; /* bytes from buffer start to element 0 */
  tb_dtype dtype;
  size_t ndim;
  int64_t shape[TB_MAX_DIMS];
  int64_t strides[TB_MAX_DIMS]; /* elements */
  char *name;
  TbQuantization *quantization; /* NULL: not quantized */
  TbLease *lease;               /* NULL unless pooled or received */
  TbImage *image;               /* NULL: not an image */
};

tb_tensor *tb_tensor_create(tb_dtype dtype, size_t ndim, const int64_t *shape,
                            const tb_alloc_options *opts, GError **error);
tb_tensor *tb_tensor_view(tb_buffer *buffer, uint64_t offset, tb_dtype dtype,
                          size_t ndim, const int64_t *shape,
                          const int64_t *strides, GError **error);
/* Checks a row-major layout of `shape` and gives the end of its bytes when
 * it starts at `offset`: what a file must hold to import it. */
gboolean tb_tensor_bytes_at(tb_dtype dtype, size_t ndim, const int64_t *shape,
                            uint64_t offset, uint64_t *end, GError **error);
tb_tensor *tb_tensor_open_fd(int fd, tb_dtype dtype, size_t ndim,
                             const int64_t *shape, uint64_t offset,
                             GError **error);
/* A tensor laid out like `prototype` (dtype, shape, strides, offset, name,
 * quantization, image) over `buffer`, which must be at least as large; an
 * image prototype must have every plane in its own buffer. */
tb_tensor *tb_tensor_like(const tb_tensor *prototype, tb_buffer *buffer);
tb_tensor *tb_tensor_reshaped(const tb_tensor *tensor, size_t ndim,
                              const int64_t *shape, GError **error);
tb_tensor *tb_tensor_sliced(const tb_tensor *tensor, size_t axis, int64_t start,
                            int64_t stop, int64_t step, GError **error);
void tb_tensor_rename(tb_tensor *tensor, const char *name);
/* Byte range [lo, hi) that the elements of a non-empty layout (strides in
 * elements of `elem` bytes) touch, relative to element 0. FALSE if it does not
 * fit in int64. */
gboolean tb_layout_extent(size_t elem, size_t ndim, const int64_t *shape,
                          const int64_t *strides, int64_t *lo, int64_t *hi);
/* Whether an integer dtype can hold `value` (bool: 0 and 1). */
gboolean tb_int_in_range(tb_dtype dtype, int64_t value);
gboolean tb_tensor_quantize(tb_tensor *tensor, int64_t axis, size_t count,
                            const double *scales, const int64_t *zero_points,
                            GError **error);
gboolean tb_tensor_quantization_at(const tb_tensor *tensor, size_t index,
                                   double *scale, int64_t *zero_point,
                                   GError **error);

/* CPU access bracket for element and byte access (the map's own path). */
gboolean tb_tensor_begin_access(tb_tensor *tensor, uint32_t flags,
                                GError **error);
void tb_tensor_end_access(tb_tensor *tensor, uint32_t flags);
/* Address of element 0; only between begin and end of access. */
uint8_t *tb_tensor_base(const tb_tensor *tensor);

gboolean tb_tensor_get_f64_at(tb_tensor *tensor, size_t nindex,
                              const int64_t *index, double *out,
                              GError **error);
gboolean tb_tensor_get_i64_at(tb_tensor *tensor, size_t nindex,
                              const int64_t *index, int64_t *out,
                              GError **error);
gboolean tb_tensor_set_f64_at(tb_tensor *tensor, size_t nindex,
                              const int64_t *index, double value,
                              GError **error);
gboolean tb_tensor_set_i64_at(tb_tensor *tensor, size_t nindex,
                              const int64_t *index, int64_t value,
                              GError **error);
gboolean tb_tensor_copy_out(tb_tensor *tensor, void *dst, size_t size,
                            GError **error);
gboolean tb_tensor_copy_in(tb_tensor *tensor, const void *src, size_t size,
                           GError **error);

/* Reads the tensor's bytes from `fd` at `offset` (file_read.c). */
gboolean tb_tensor_read_file_at(tb_tensor *tensor, int fd, uint64_t offset,
                                uint32_t flags, tb_read_mode *mode_out,
                                GError **error);

/* copy.c */
gboolean tb_tensor_copy_into(tb_tensor *dst, tb_tensor *src, uint64_t stream,
                             GError **error);

/* cuda.c: CUDA and CUDA_HOST tensors (TB_ERR_UNSUPPORTED for others). */
gboolean tb_tensor_cuda_device_of(const tb_tensor *tensor, uint32_t *device,
                                  GError **error);
gboolean tb_tensor_device_address(const tb_tensor *tensor, uint64_t *address,
                                  GError **error);
tb_tensor *tb_tensor_open_cuda_fd(int fd, tb_memory memory, uint32_t device,
                                  tb_dtype dtype, size_t ndim,
                                  const int64_t *shape, uint64_t offset,
                                  GError **error);
gboolean tb_tensor_cuda_order(const tb_tensor *tensor, uint64_t stream,
                              GError **error);
tb_tensor *tb_tensor_dma_buf_of(const tb_tensor *tensor, GError **error);

tb_map *tb_map_create(tb_tensor *tensor, uint32_t flags, GError **error);

G_DEFINE_AUTOPTR_CLEANUP_FUNC(tb_tensor, tb_tensor_unref)

#endif
