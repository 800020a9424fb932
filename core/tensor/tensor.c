/* Tensors: creation, validation of shapes and strides, views, metadata. */
#include "tensor/tensor.h"
#include "tensor/image.h"

#include <math.h>
#include <string.h>

static tb_tensor *tensor_alloc(void) {
  tb_tensor *tensor = g_atomic_rc_box_new0(tb_tensor);
  tb_live_add(1);
  return tensor;
}

static void quantization_free(TbQuantization *q) {
  if (q == NULL)
    return;
  g_free(q->scales);
  g_free(q->zero_points);
  g_free(q);
}

static TbQuantization *quantization_new(int64_t axis, size_t count,
                                        const double *scales,
                                        const int64_t *zero_points,
                                        size_t step) {
  TbQuantization *q = g_new0(TbQuantization, 1);
  q->axis = axis;
  q->count = count;
  q->scales = g_new(double, count);
  q->zero_points = g_new0(int64_t, count);
  for (size_t i = 0; i < count; i++) {
    q->scales[i] = scales[i * step];
    if (zero_points != NULL)
      q->zero_points[i] = zero_points[i * step];
  }
  return q;
}

static void tensor_clear(gpointer data) {
  tb_tensor *tensor = data;
  tb_buffer_unref(tensor->buffer);
  g_free(tensor->name);
  quantization_free(tensor->quantization);
  tb_lease_drop(tensor->lease);
  tb_image_free(tensor->image);
  tb_live_add(-1);
}

tb_tensor *tb_tensor_ref(tb_tensor *tensor) {
  return tensor != NULL ? g_atomic_rc_box_acquire(tensor) : NULL;
}

void tb_tensor_unref(tb_tensor *tensor) {
  if (tensor != NULL)
    g_atomic_rc_box_release_full(tensor, tensor_clear);
}

/* Checks dtype, ndim and dims; gives the element count. */
static gboolean check_shape(tb_dtype dtype, size_t ndim, const int64_t *shape,
                            uint64_t *numel_out, GError **error) {
  size_t elem = tb_dtype_size(dtype);
  if (elem == 0) {
    g_set_error(error, TB_TENSOR_ERROR, TB_ERR_DTYPE,
                "dtype is %d, not a tb_dtype", (int)dtype);
    return FALSE;
  }
  if (ndim > TB_MAX_DIMS) {
    g_set_error(error, TB_TENSOR_ERROR, TB_ERR_SHAPE,
                "ndim is %zu; a tensor has at most %d dims", ndim, TB_MAX_DIMS);
    return FALSE;
  }
  uint64_t numel = 1;
  gboolean overflow = FALSE, empty = FALSE;
  for (size_t i = 0; i < ndim; i++) {
    if (shape[i] < 0) {
      g_set_error(error, TB_TENSOR_ERROR, TB_ERR_SHAPE,
                  "shape[%zu] is %" G_GINT64_FORMAT "; dims must be >= 0", i,
                  shape[i]);
      return FALSE;
    }
    empty |= shape[i] == 0;
    overflow |= !tb_mul_u64(numel, (uint64_t)shape[i], &numel);
  }
  uint64_t bytes;
  /* A zero dim makes any product 0, so an overflow then is harmless. Ask the
   * dims, not the product: one that overflows can wrap to exactly 0. */
  if (!empty &&
      (overflow || !tb_mul_u64(numel, elem, &bytes) || bytes > INT64_MAX)) {
    g_set_error(error, TB_TENSOR_ERROR, TB_ERR_SHAPE,
                "shape has more than 2^63 bytes of %s elements",
                tb_dtype_name(dtype));
    return FALSE;
  }
  *numel_out = numel;
  return TRUE;
}

static void row_major_strides(size_t ndim, const int64_t *shape,
                              int64_t *strides) {
  int64_t stride = 1;
  for (size_t i = ndim; i-- > 0;) {
    strides[i] = stride;
    /* Only the dims of an empty tensor (whose strides are never followed)
     * can overflow this: {0, INT64_MAX, INT64_MAX} is a valid shape. */
    if (__builtin_mul_overflow(stride, shape[i] > 0 ? shape[i] : 1, &stride))
      stride = 0;
  }
}

/* Byte range [lo, hi) that the elements of a non-empty layout touch,
 * relative to element 0. FALSE if it does not fit in int64. */
gboolean tb_layout_extent(size_t elem, size_t ndim, const int64_t *shape,
                          const int64_t *strides, int64_t *lo, int64_t *hi) {
  int64_t low = 0, high = 0;
  for (size_t i = 0; i < ndim; i++) {
    int64_t reach;
    if (__builtin_mul_overflow(shape[i] - 1, strides[i], &reach) ||
        __builtin_mul_overflow(reach, (int64_t)elem, &reach))
      return FALSE;
    if (__builtin_add_overflow(reach < 0 ? low : high, reach,
                               reach < 0 ? &low : &high))
      return FALSE;
  }
  *lo = low;
  return !__builtin_add_overflow(high, (int64_t)elem, hi);
}

static tb_tensor *tensor_build(tb_buffer *buffer, uint64_t offset,
                               tb_dtype dtype, size_t ndim,
                               const int64_t *shape, const int64_t *strides) {
  tb_tensor *tensor = tensor_alloc();
  tensor->buffer = tb_buffer_ref(buffer);
  tensor->offset = offset;
  tensor->dtype = dtype;
  tensor->ndim = ndim;
  if (ndim > 0) {
    memcpy(tensor->shape, shape, ndim * sizeof *shape);
    if (strides != NULL)
      memcpy(tensor->strides, strides, ndim * sizeof *strides);
    else
      row_major_strides(ndim, shape, tensor->strides);
  }
  return tensor;
}

tb_tensor *tb_tensor_create(tb_dtype dtype, size_t ndim, const int64_t *shape,
                            const tb_alloc_options *opts, GError **error) {
  uint64_t numel;
  TbAllocParams params;
  if (!check_shape(dtype, ndim, shape, &numel, error) ||
      !tb_buffer_params(&params, opts, error))
    return NULL;
  g_autoptr(tb_buffer) buffer =
      tb_buffer_alloc(numel * tb_dtype_size(dtype), &params, error);
  if (buffer == NULL)
    return NULL;
  tb_tensor *tensor = tensor_build(buffer, 0, dtype, ndim, shape, NULL);
  tensor->name = g_strdup(params.name);
  return tensor;
}

tb_tensor *tb_tensor_view(tb_buffer *buffer, uint64_t offset, tb_dtype dtype,
                          size_t ndim, const int64_t *shape,
                          const int64_t *strides, GError **error) {
  uint64_t numel;
  if (!check_shape(dtype, ndim, shape, &numel, error))
    return NULL;
  if (offset > buffer->size) {
    g_set_error(error, TB_TENSOR_ERROR, TB_ERR_OUT_OF_RANGE,
                "byte_offset is %" G_GUINT64_FORMAT
                " but the buffer holds %" G_GUINT64_FORMAT " bytes",
                offset, buffer->size);
    return NULL;
  }
  /* Outside the block: tensor_build below reads the strides it points to. */
  int64_t row_major[TB_MAX_DIMS];
  if (numel > 0) {
    int64_t lo = 0, hi = 0;
    if (strides == NULL) {
      row_major_strides(ndim, shape, row_major);
      strides = row_major;
    }
    gboolean fits = tb_layout_extent(tb_dtype_size(dtype), ndim, shape, strides,
                                     &lo, &hi) &&
                    (lo >= 0 || -(uint64_t)lo <= offset) &&
                    (uint64_t)hi <= buffer->size - offset;
    if (!fits) {
      g_set_error(error, TB_TENSOR_ERROR, TB_ERR_OUT_OF_RANGE,
                  "shape and strides at byte_offset %" G_GUINT64_FORMAT
                  " reach bytes [%" G_GINT64_FORMAT ", %" G_GINT64_FORMAT
                  ") outside the buffer's %" G_GUINT64_FORMAT " bytes",
                  offset, (int64_t)offset + lo, (int64_t)offset + hi,
                  buffer->size);
      return NULL;
    }
  }
  return tensor_build(buffer, offset, dtype, ndim, shape, strides);
}

gboolean tb_tensor_bytes_at(tb_dtype dtype, size_t ndim, const int64_t *shape,
                            uint64_t offset, uint64_t *end, GError **error) {
  uint64_t numel;
  if (!check_shape(dtype, ndim, shape, &numel, error))
    return FALSE;
  if (!tb_add_u64(offset, numel * tb_dtype_size(dtype), end)) {
    g_set_error(error, TB_TENSOR_ERROR, TB_ERR_OUT_OF_RANGE,
                "byte_offset %" G_GUINT64_FORMAT " plus the tensor's bytes "
                "overflows",
                offset);
    return FALSE;
  }
  return TRUE;
}

tb_tensor *tb_tensor_open_fd(int fd, tb_dtype dtype, size_t ndim,
                             const int64_t *shape, uint64_t offset,
                             GError **error) {
  uint64_t needed;
  if (!tb_tensor_bytes_at(dtype, ndim, shape, offset, &needed, error))
    return NULL;
  g_autoptr(tb_buffer) buffer = tb_buffer_import(fd, needed, error);
  if (buffer == NULL)
    return NULL;
  return tensor_build(buffer, offset, dtype, ndim, shape, NULL);
}

/* ---- getters ------------------------------------------------------------ */

tb_dtype tb_tensor_dtype(const tb_tensor *t) {
  return t != NULL ? t->dtype : TB_DTYPE_INVALID;
}
size_t tb_tensor_ndim(const tb_tensor *t) { return t != NULL ? t->ndim : 0; }
int64_t tb_tensor_dim(const tb_tensor *t, size_t axis) {
  return t != NULL && axis < t->ndim ? t->shape[axis] : 0;
}
int64_t tb_tensor_stride(const tb_tensor *t, size_t axis) {
  return t != NULL && axis < t->ndim ? t->strides[axis] : 0;
}
uint64_t tb_tensor_numel(const tb_tensor *t) {
  if (t == NULL)
    return 0;
  uint64_t numel = 1;
  for (size_t i = 0; i < t->ndim; i++)
    numel *= (uint64_t)t->shape[i]; /* checked when the tensor was made */
  return numel;
}
uint64_t tb_tensor_nbytes(const tb_tensor *t) {
  return t != NULL ? tb_tensor_numel(t) * tb_dtype_size(t->dtype) : 0;
}
uint64_t tb_tensor_offset(const tb_tensor *t) {
  return t != NULL ? t->offset : 0;
}
tb_memory tb_tensor_memory(const tb_tensor *t) {
  return t != NULL ? tb_buffer_memory(t->buffer) : TB_MEMORY_AUTO;
}
bool tb_tensor_read_only(const tb_tensor *t) {
  return t != NULL && tb_buffer_read_only(t->buffer);
}
int tb_tensor_fd(const tb_tensor *t) {
  return t != NULL ? tb_buffer_fd(t->buffer) : -1;
}
uint64_t tb_tensor_buffer_id(const tb_tensor *t) {
  return t != NULL ? t->buffer->id : 0;
}
tb_buffer *tb_tensor_buffer(const tb_tensor *t) {
  return t != NULL ? tb_buffer_ref(t->buffer) : NULL;
}
const char *tb_tensor_name(const tb_tensor *t) {
  return t != NULL ? t->name : NULL;
}

bool tb_tensor_is_contiguous(const tb_tensor *t) {
  if (t == NULL)
    return false;
  if (tb_tensor_numel(t) == 0)
    return true;
  int64_t expected = 1;
  for (size_t i = t->ndim; i-- > 0;) {
    if (t->shape[i] != 1 && t->strides[i] != expected)
      return false;
    expected *= t->shape[i];
  }
  return true;
}

bool tb_tensor_shares_memory(const tb_tensor *a, const tb_tensor *b) {
  if (a == NULL || b == NULL || a->buffer != b->buffer ||
      tb_tensor_numel(a) == 0 || tb_tensor_numel(b) == 0)
    return false;
  int64_t alo = 0, ahi = 0, blo = 0, bhi = 0; /* for gcc -O2 -Werror */
  /* Both layouts were checked to fit when the tensors were made. */
  tb_layout_extent(tb_dtype_size(a->dtype), a->ndim, a->shape, a->strides, &alo,
                   &ahi);
  tb_layout_extent(tb_dtype_size(b->dtype), b->ndim, b->shape, b->strides, &blo,
                   &bhi);
  int64_t ao = (int64_t)a->offset, bo = (int64_t)b->offset;
  return ao + alo < bo + bhi && bo + blo < ao + ahi;
}

void tb_tensor_rename(tb_tensor *tensor, const char *name) {
  char *old = tensor->name;
  tensor->name = g_strdup(name); /* `name` may be the old name itself */
  g_free(old);
}

/* ---- views -------------------------------------------------------------- */

/* A view keeps the name but never the image metadata (tensor->image stays
 * NULL): the planes' geometry describes the source's shape, not the view's. */
static tb_tensor *view_of(const tb_tensor *src, uint64_t offset, size_t ndim,
                          const int64_t *shape, const int64_t *strides) {
  tb_tensor *tensor =
      tensor_build(src->buffer, offset, src->dtype, ndim, shape, strides);
  tensor->name = g_strdup(src->name);
  tensor->lease = tb_lease_hold(src->lease);
  return tensor;
}

tb_tensor *tb_tensor_like(const tb_tensor *prototype, tb_buffer *buffer) {
  tb_tensor *tensor =
      tensor_build(buffer, prototype->offset, prototype->dtype, prototype->ndim,
                   prototype->shape, prototype->strides);
  tensor->name = g_strdup(prototype->name);
  const TbQuantization *q = prototype->quantization;
  if (q != NULL)
    tensor->quantization =
        quantization_new(q->axis, q->count, q->scales, q->zero_points, 1);
  if (prototype->image != NULL)
    tensor->image = tb_image_copy_onto(prototype->image, buffer);
  return tensor;
}

tb_tensor *tb_tensor_reshaped(const tb_tensor *tensor, size_t ndim,
                              const int64_t *shape, GError **error) {
  if (!tb_tensor_is_contiguous(tensor)) {
    g_set_error(error, TB_TENSOR_ERROR, TB_ERR_LAYOUT,
                "reshape needs a contiguous tensor; this one has strides");
    return NULL;
  }
  if (ndim > TB_MAX_DIMS) {
    g_set_error(error, TB_TENSOR_ERROR, TB_ERR_SHAPE,
                "ndim is %zu; a tensor has at most %d dims", ndim, TB_MAX_DIMS);
    return NULL;
  }
  int64_t dims[TB_MAX_DIMS];
  size_t inferred = SIZE_MAX;
  uint64_t known = 1;
  for (size_t i = 0; i < ndim; i++) {
    dims[i] = shape[i];
    if (shape[i] == -1 && inferred == SIZE_MAX) {
      inferred = i;
      continue;
    }
    if (shape[i] < 0) {
      g_set_error(error, TB_TENSOR_ERROR, TB_ERR_SHAPE,
                  "shape[%zu] is %" G_GINT64_FORMAT
                  "; dims must be >= 0 (one may be -1)",
                  i, shape[i]);
      return NULL;
    }
    if (!tb_mul_u64(known, (uint64_t)shape[i], &known))
      known = UINT64_MAX; /* cannot match any real element count */
  }
  uint64_t numel = tb_tensor_numel(tensor);
  if (inferred != SIZE_MAX) {
    if (known == 0 || numel % known != 0) {
      g_set_error(error, TB_TENSOR_ERROR, TB_ERR_SHAPE,
                  "cannot infer shape[%zu]: %" G_GUINT64_FORMAT
                  " elements do not divide into the other dims",
                  inferred, numel);
      return NULL;
    }
    dims[inferred] = (int64_t)(numel / known);
    known = numel;
  }
  if (known != numel) {
    g_set_error(error, TB_TENSOR_ERROR, TB_ERR_SHAPE,
                "new shape has %" G_GUINT64_FORMAT
                " elements; the tensor has %" G_GUINT64_FORMAT,
                known, numel);
    return NULL;
  }
  tb_tensor *view = view_of(tensor, tensor->offset, ndim, dims, NULL);
  const TbQuantization *q = tensor->quantization;
  if (q != NULL && q->axis < 0)
    view->quantization = quantization_new(-1, 1, q->scales, q->zero_points, 1);
  return view;
}

tb_tensor *tb_tensor_sliced(const tb_tensor *tensor, size_t axis, int64_t start,
                            int64_t stop, int64_t step, GError **error) {
  if (axis >= tensor->ndim) {
    g_set_error(error, TB_TENSOR_ERROR, TB_ERR_OUT_OF_RANGE,
                "axis is %zu; the tensor has %zu dims", axis, tensor->ndim);
    return NULL;
  }
  int64_t dim = tensor->shape[axis];
  if (start < 0 || stop < start || stop > dim || step < 1) {
    g_set_error(error, TB_TENSOR_ERROR, TB_ERR_OUT_OF_RANGE,
                "slice [%" G_GINT64_FORMAT ":%" G_GINT64_FORMAT
                ":%" G_GINT64_FORMAT "] of axis %zu (size %" G_GINT64_FORMAT
                ") needs 0 <= start <= stop <= size and step >= 1",
                start, stop, step, axis, dim);
    return NULL;
  }
  int64_t shape[TB_MAX_DIMS], strides[TB_MAX_DIMS];
  memcpy(shape, tensor->shape, sizeof shape);
  memcpy(strides, tensor->strides, sizeof strides);
  /* Not (stop - start + step - 1) / step, which overflows for a huge step. */
  int64_t count = stop == start ? 0 : (stop - start - 1) / step + 1;
  uint64_t offset = tensor->offset;
  /* Then element `start` exists, so this stays inside the buffer; in an
   * empty tensor another dim is 0 and its strides may be anything. */
  if (count > 0 && tb_tensor_numel(tensor) > 0)
    offset += (uint64_t)(start * strides[axis] *
                         (int64_t)tb_dtype_size(tensor->dtype));
  shape[axis] = count;
  /* This overflows only where the stride is never followed (count <= 1, or
   * an empty tensor): keep the old one then. */
  if (__builtin_mul_overflow(strides[axis], step, &strides[axis]))
    strides[axis] = tensor->strides[axis];
  tb_tensor *view = view_of(tensor, offset, tensor->ndim, shape, strides);
  const TbQuantization *q = tensor->quantization;
  if (q != NULL && q->axis != (int64_t)axis)
    view->quantization =
        quantization_new(q->axis, q->count, q->scales, q->zero_points, 1);
  else if (q != NULL && count > 0)
    view->quantization =
        quantization_new(q->axis, (size_t)count, q->scales + start,
                         q->zero_points + start, (size_t)step);
  return view;
}

/* ---- quantization ----------------------------------------------------- */

gboolean tb_tensor_quantize(tb_tensor *tensor, int64_t axis, size_t count,
                            const double *scales, const int64_t *zero_points,
                            GError **error) {
  if (count == 0) {
    quantization_free(g_steal_pointer(&tensor->quantization));
    return TRUE;
  }
  if (!tb_dtype_is_integer(tensor->dtype)) {
    g_set_error(error, TB_TENSOR_ERROR, TB_ERR_DTYPE,
                "quantization needs an integer dtype; the tensor is %s",
                tb_dtype_name(tensor->dtype));
    return FALSE;
  }
  if (axis < -1 || axis >= (int64_t)tensor->ndim) {
    g_set_error(error, TB_TENSOR_ERROR, TB_ERR_OUT_OF_RANGE,
                "axis is %" G_GINT64_FORMAT "; expected -1 (per-tensor) or "
                "0..%zu",
                axis, tensor->ndim - 1);
    return FALSE;
  }
  uint64_t expected = axis < 0 ? 1 : (uint64_t)tensor->shape[axis];
  if (count != expected) {
    g_set_error(error, TB_TENSOR_ERROR, TB_ERR_OUT_OF_RANGE,
                "count is %zu; axis %" G_GINT64_FORMAT
                " needs %" G_GUINT64_FORMAT,
                count, axis, expected);
    return FALSE;
  }
  for (size_t i = 0; i < count; i++) {
    if (!isfinite(scales[i]) || scales[i] <= 0) {
      g_set_error(error, TB_TENSOR_ERROR, TB_ERR_INVALID_ARGUMENT,
                  "scales[%zu] is %g; scales must be finite and > 0", i,
                  scales[i]);
      return FALSE;
    }
    if (zero_points != NULL &&
        !tb_int_in_range(tensor->dtype, zero_points[i])) {
      g_set_error(error, TB_TENSOR_ERROR, TB_ERR_OUT_OF_RANGE,
                  "zero_points[%zu] is %" G_GINT64_FORMAT
                  "; it does not fit in %s",
                  i, zero_points[i], tb_dtype_name(tensor->dtype));
      return FALSE;
    }
  }
  quantization_free(tensor->quantization);
  tensor->quantization = quantization_new(axis, count, scales, zero_points, 1);
  return TRUE;
}

size_t tb_tensor_quantization_count(const tb_tensor *t) {
  return t != NULL && t->quantization != NULL ? t->quantization->count : 0;
}

int64_t tb_tensor_quantization_axis(const tb_tensor *t) {
  return t != NULL && t->quantization != NULL ? t->quantization->axis : -1;
}

gboolean tb_tensor_quantization_at(const tb_tensor *tensor, size_t index,
                                   double *scale, int64_t *zero_point,
                                   GError **error) {
  size_t count = tb_tensor_quantization_count(tensor);
  if (index >= count) {
    g_set_error(error, TB_TENSOR_ERROR, TB_ERR_OUT_OF_RANGE,
                "index is %zu; the tensor has %zu quantization parameters",
                index, count);
    return FALSE;
  }
  *scale = tensor->quantization->scales[index];
  *zero_point = tensor->quantization->zero_points[index];
  return TRUE;
}

/* ---- CPU access --------------------------------------------------------- */

gboolean tb_tensor_begin_access(tb_tensor *tensor, uint32_t flags,
                                GError **error) {
  tb_buffer *buffer = tensor->buffer;
  if ((flags & TB_MAP_WRITE) && (buffer->flags & TB_BUFFER_READ_ONLY)) {
    g_set_error(error, TB_TENSOR_ERROR, TB_ERR_READ_ONLY,
                "the tensor's %s memory is read-only; it cannot be written",
                buffer->backend->name);
    return FALSE;
  }
  if (buffer->data == NULL) {
    g_set_error(error, TB_TENSOR_ERROR, TB_ERR_UNSUPPORTED,
                "the tensor's %s memory cannot be accessed by the CPU",
                buffer->backend->name);
    return FALSE;
  }
  return buffer->backend->begin_access == NULL ||
         buffer->backend->begin_access(buffer, flags, error);
}

void tb_tensor_end_access(tb_tensor *tensor, uint32_t flags) {
  tb_buffer *buffer = tensor->buffer;
  if (buffer->backend->end_access != NULL)
    buffer->backend->end_access(buffer, flags);
}

uint8_t *tb_tensor_base(const tb_tensor *tensor) {
  return (uint8_t *)tensor->buffer->data + tensor->offset;
}
