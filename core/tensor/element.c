/* Element access by index and bulk byte copies, for scripting languages. */
#include "tensor/half.h"
#include "tensor/tensor.h"

#include <math.h>
#include <string.h>

gboolean tb_int_in_range(tb_dtype dtype, int64_t v) {
  switch (dtype) {
  case TB_DTYPE_BOOL:
    return v == 0 || v == 1;
  case TB_DTYPE_U8:
    return v >= 0 && v <= UINT8_MAX;
  case TB_DTYPE_I8:
    return v >= INT8_MIN && v <= INT8_MAX;
  case TB_DTYPE_U16:
    return v >= 0 && v <= UINT16_MAX;
  case TB_DTYPE_I16:
    return v >= INT16_MIN && v <= INT16_MAX;
  case TB_DTYPE_U32:
    return v >= 0 && v <= (int64_t)UINT32_MAX;
  case TB_DTYPE_I32:
    return v >= INT32_MIN && v <= INT32_MAX;
  case TB_DTYPE_U64:
    return v >= 0;
  case TB_DTYPE_I64:
    return TRUE;
  default:
    return FALSE;
  }
}

static gboolean is_float(tb_dtype dtype) {
  return dtype >= TB_DTYPE_F16 && dtype <= TB_DTYPE_F64;
}

/* Address of the element at `index`, range-checked. */
static uint8_t *element_at(tb_tensor *t, size_t nindex, const int64_t *index,
                           GError **error) {
  if (nindex != t->ndim) {
    g_set_error(error, TB_TENSOR_ERROR, TB_ERR_SHAPE,
                "index has %zu entries; the tensor has %zu dims", nindex,
                t->ndim);
    return NULL;
  }
  int64_t offset = 0;
  for (size_t i = 0; i < nindex; i++) {
    if (index[i] < 0 || index[i] >= t->shape[i]) {
      g_set_error(error, TB_TENSOR_ERROR, TB_ERR_OUT_OF_RANGE,
                  "index[%zu] is %" G_GINT64_FORMAT
                  "; dim %zu has size %" G_GINT64_FORMAT,
                  i, index[i], i, t->shape[i]);
      return NULL;
    }
    offset += index[i] * t->strides[i];
  }
  return tb_tensor_base(t) + offset * (int64_t)tb_dtype_size(t->dtype);
}

#define LOAD(type, p)                                                          \
  ({                                                                           \
    type v_;                                                                   \
    memcpy(&v_, (p), sizeof v_);                                               \
    v_;                                                                        \
  })
#define STORE(type, p, value)                                                  \
  do {                                                                         \
    type v_ = (type)(value);                                                   \
    memcpy((p), &v_, sizeof v_);                                               \
  } while (0)

static double load_f64(tb_dtype dtype, const uint8_t *p) {
  switch (dtype) {
  case TB_DTYPE_BOOL:
    return LOAD(uint8_t, p) != 0;
  case TB_DTYPE_U8:
    return LOAD(uint8_t, p);
  case TB_DTYPE_I8:
    return LOAD(int8_t, p);
  case TB_DTYPE_U16:
    return LOAD(uint16_t, p);
  case TB_DTYPE_I16:
    return LOAD(int16_t, p);
  case TB_DTYPE_U32:
    return LOAD(uint32_t, p);
  case TB_DTYPE_I32:
    return LOAD(int32_t, p);
  case TB_DTYPE_U64:
    return (double)LOAD(uint64_t, p);
  case TB_DTYPE_I64:
    return (double)LOAD(int64_t, p);
  case TB_DTYPE_F16:
    return tb_f16_to_f64(LOAD(uint16_t, p));
  case TB_DTYPE_BF16:
    return tb_bf16_to_f64(LOAD(uint16_t, p));
  case TB_DTYPE_F32:
    return LOAD(float, p);
  case TB_DTYPE_F64:
    return LOAD(double, p);
  default:
    return NAN;
  }
}

/* Integer and bool dtypes only; FALSE if a u64 does not fit in int64. */
static gboolean load_i64(tb_dtype dtype, const uint8_t *p, int64_t *out) {
  switch (dtype) {
  case TB_DTYPE_BOOL:
    *out = LOAD(uint8_t, p) != 0;
    return TRUE;
  case TB_DTYPE_U8:
    *out = LOAD(uint8_t, p);
    return TRUE;
  case TB_DTYPE_I8:
    *out = LOAD(int8_t, p);
    return TRUE;
  case TB_DTYPE_U16:
    *out = LOAD(uint16_t, p);
    return TRUE;
  case TB_DTYPE_I16:
    *out = LOAD(int16_t, p);
    return TRUE;
  case TB_DTYPE_U32:
    *out = LOAD(uint32_t, p);
    return TRUE;
  case TB_DTYPE_I32:
    *out = LOAD(int32_t, p);
    return TRUE;
  case TB_DTYPE_I64:
    *out = LOAD(int64_t, p);
    return TRUE;
  case TB_DTYPE_U64: {
    uint64_t v = LOAD(uint64_t, p);
    if (v > INT64_MAX)
      return FALSE;
    *out = (int64_t)v;
    return TRUE;
  }
  default:
    return FALSE;
  }
}

/* Stores an in-range integer. */
static void store_i64(tb_dtype dtype, uint8_t *p, int64_t v) {
  switch (dtype) {
  case TB_DTYPE_BOOL:
  case TB_DTYPE_U8:
    STORE(uint8_t, p, v);
    break;
  case TB_DTYPE_I8:
    STORE(int8_t, p, v);
    break;
  case TB_DTYPE_U16:
    STORE(uint16_t, p, v);
    break;
  case TB_DTYPE_I16:
    STORE(int16_t, p, v);
    break;
  case TB_DTYPE_U32:
    STORE(uint32_t, p, v);
    break;
  case TB_DTYPE_I32:
    STORE(int32_t, p, v);
    break;
  case TB_DTYPE_U64:
    STORE(uint64_t, p, v);
    break;
  case TB_DTYPE_I64:
    STORE(int64_t, p, v);
    break;
  default:
    break;
  }
}

/* Float dtypes: rounds `v`; FALSE if a finite value overflows to inf. */
static gboolean store_float(tb_dtype dtype, uint8_t *p, double v) {
  uint8_t rounded[sizeof(double)];
  double stored;
  switch (dtype) {
  case TB_DTYPE_F16: {
    uint16_t bits = tb_f16_from_f64(v);
    STORE(uint16_t, rounded, bits);
    stored = tb_f16_to_f64(bits);
    break;
  }
  case TB_DTYPE_BF16: {
    uint16_t bits = tb_bf16_from_f64(v);
    STORE(uint16_t, rounded, bits);
    stored = tb_bf16_to_f64(bits);
    break;
  }
  case TB_DTYPE_F32: {
    float f = (float)v;
    STORE(float, rounded, f);
    stored = f;
    break;
  }
  default:
    STORE(double, rounded, v);
    stored = v;
    break;
  }
  /* A refused value must leave the element as it was. */
  if (isinf(stored) != isinf(v))
    return FALSE;
  memcpy(p, rounded, tb_dtype_size(dtype));
  return TRUE;
}

/* Runs one element access between begin and end of CPU access. */
typedef gboolean (*ElementOp)(tb_tensor *t, uint8_t *p, void *arg,
                              GError **error);

static gboolean with_element(tb_tensor *t, uint32_t flags, size_t nindex,
                             const int64_t *index, ElementOp op, void *arg,
                             GError **error) {
  if (!tb_tensor_begin_access(t, flags, error))
    return FALSE;
  uint8_t *p = element_at(t, nindex, index, error);
  gboolean ok = p != NULL && op(t, p, arg, error);
  tb_tensor_end_access(t, flags);
  return ok;
}

static gboolean get_f64_op(tb_tensor *t, uint8_t *p, void *arg, GError **e) {
  (void)e;
  *(double *)arg = load_f64(t->dtype, p);
  return TRUE;
}

static gboolean get_i64_op(tb_tensor *t, uint8_t *p, void *arg, GError **e) {
  if (!tb_dtype_is_integer(t->dtype) && t->dtype != TB_DTYPE_BOOL) {
    g_set_error(e, TB_TENSOR_ERROR, TB_ERR_DTYPE,
                "get_i64 needs an integer or bool tensor; this one is %s "
                "(use get_f64)",
                tb_dtype_name(t->dtype));
    return FALSE;
  }
  if (!load_i64(t->dtype, p, arg)) {
    g_set_error(e, TB_TENSOR_ERROR, TB_ERR_OUT_OF_RANGE,
                "the u64 element %" G_GUINT64_FORMAT " exceeds INT64_MAX",
                LOAD(uint64_t, p));
    return FALSE;
  }
  return TRUE;
}

static gboolean set_f64_op(tb_tensor *t, uint8_t *p, void *arg, GError **e) {
  double v = *(double *)arg;
  if (is_float(t->dtype)) {
    if (store_float(t->dtype, p, v))
      return TRUE;
    g_set_error(e, TB_TENSOR_ERROR, TB_ERR_OUT_OF_RANGE,
                "value %g is beyond the largest %s", v,
                tb_dtype_name(t->dtype));
    return FALSE;
  }
  /* Whole values only, in range; 2^63 and 2^64 are the exclusive limits. */
  gboolean fits = v == trunc(v) && v >= -9223372036854775808.0 &&
                  v < (t->dtype == TB_DTYPE_U64 ? 18446744073709551616.0
                                                : 9223372036854775808.0);
  if (fits && t->dtype == TB_DTYPE_U64 && v >= 0) {
    STORE(uint64_t, p, (uint64_t)v);
    return TRUE;
  }
  if (fits && tb_int_in_range(t->dtype, (int64_t)v)) {
    store_i64(t->dtype, p, (int64_t)v);
    return TRUE;
  }
  g_set_error(e, TB_TENSOR_ERROR, TB_ERR_OUT_OF_RANGE,
              "value %.17g is not a whole number that fits in %s", v,
              tb_dtype_name(t->dtype));
  return FALSE;
}

static gboolean set_i64_op(tb_tensor *t, uint8_t *p, void *arg, GError **e) {
  int64_t v = *(int64_t *)arg;
  if (is_float(t->dtype)) {
    double d = (double)v;
    return set_f64_op(t, p, &d, e);
  }
  if (!tb_int_in_range(t->dtype, v)) {
    g_set_error(e, TB_TENSOR_ERROR, TB_ERR_OUT_OF_RANGE,
                "value %" G_GINT64_FORMAT " does not fit in %s", v,
                tb_dtype_name(t->dtype));
    return FALSE;
  }
  store_i64(t->dtype, p, v);
  return TRUE;
}

gboolean tb_tensor_get_f64_at(tb_tensor *t, size_t nindex, const int64_t *index,
                              double *out, GError **error) {
  return with_element(t, TB_MAP_READ, nindex, index, get_f64_op, out, error);
}

gboolean tb_tensor_get_i64_at(tb_tensor *t, size_t nindex, const int64_t *index,
                              int64_t *out, GError **error) {
  return with_element(t, TB_MAP_READ, nindex, index, get_i64_op, out, error);
}

gboolean tb_tensor_set_f64_at(tb_tensor *t, size_t nindex, const int64_t *index,
                              double value, GError **error) {
  return with_element(t, TB_MAP_WRITE, nindex, index, set_f64_op, &value,
                      error);
}

gboolean tb_tensor_set_i64_at(tb_tensor *t, size_t nindex, const int64_t *index,
                              int64_t value, GError **error) {
  return with_element(t, TB_MAP_WRITE, nindex, index, set_i64_op, &value,
                      error);
}

/* Copies between the tensor's elements and a row-major byte array. */
static void copy_elements(tb_tensor *t, uint8_t *linear, gboolean to_linear) {
  size_t elem = tb_dtype_size(t->dtype);
  uint64_t numel = tb_tensor_numel(t);
  uint8_t *base = tb_tensor_base(t);
  if (numel == 0)
    return;
  if (tb_tensor_is_contiguous(t)) {
    if (to_linear)
      memcpy(linear, base, numel * elem);
    else
      memcpy(base, linear, numel * elem);
    return;
  }
  /* A non-contiguous tensor has at least one dim: walk it row by row. */
  size_t last = t->ndim - 1;
  int64_t row_len = t->shape[last];
  int64_t step = t->strides[last] * (int64_t)elem;
  int64_t index[TB_MAX_DIMS] = {0};
  for (uint64_t row = 0; row < numel / (uint64_t)row_len; row++) {
    int64_t offset = 0;
    for (size_t d = 0; d < last; d++)
      offset += index[d] * t->strides[d] * (int64_t)elem;
    uint8_t *p = base + offset;
    for (int64_t j = 0; j < row_len; j++, p += step, linear += elem) {
      if (to_linear)
        memcpy(linear, p, elem);
      else
        memcpy(p, linear, elem);
    }
    for (size_t d = last; d-- > 0;) {
      if (++index[d] < t->shape[d])
        break;
      index[d] = 0;
    }
  }
}

gboolean tb_tensor_copy_out(tb_tensor *t, void *dst, size_t size,
                            GError **error) {
  uint64_t nbytes = tb_tensor_nbytes(t);
  if (size < nbytes) {
    g_set_error(error, TB_TENSOR_ERROR, TB_ERR_OUT_OF_RANGE,
                "size is %zu; the tensor has %" G_GUINT64_FORMAT " bytes", size,
                nbytes);
    return FALSE;
  }
  if (!tb_tensor_begin_access(t, TB_MAP_READ, error))
    return FALSE;
  copy_elements(t, dst, TRUE);
  tb_tensor_end_access(t, TB_MAP_READ);
  return TRUE;
}

gboolean tb_tensor_copy_in(tb_tensor *t, const void *src, size_t size,
                           GError **error) {
  uint64_t nbytes = tb_tensor_nbytes(t);
  if (size != nbytes) {
    g_set_error(error, TB_TENSOR_ERROR, TB_ERR_OUT_OF_RANGE,
                "size is %zu; the tensor has %" G_GUINT64_FORMAT " bytes", size,
                nbytes);
    return FALSE;
  }
  if (!tb_tensor_begin_access(t, TB_MAP_WRITE, error))
    return FALSE;
  copy_elements(t, (uint8_t *)src, FALSE);
  tb_tensor_end_access(t, TB_MAP_WRITE);
  return TRUE;
}
