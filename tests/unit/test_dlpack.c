/* DLPack: the struct layout, zero-copy export (versioned and legacy) and
 * import from a foreign producer, ownership of the deleter, every error. */
#include "tb_test.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>

/* ---- layout --------------------------------------------------------------
 * The offsets and sizes of dmlc/dlpack's dlpack.h (v1.1) on LP64 Linux: a
 * consumer casts our pointers to its own DLPack types, so these may never
 * move. */
#define TB_PIN(type, field, offset)                                            \
  _Static_assert(offsetof(type, field) == (offset), #type "." #field)
#define TB_PIN_SIZE(type, size)                                                \
  _Static_assert(sizeof(type) == (size), "sizeof " #type)

TB_PIN_SIZE(tb_dlpack_version, 8);
TB_PIN(tb_dlpack_version, major, 0);
TB_PIN(tb_dlpack_version, minor, 4);
TB_PIN_SIZE(tb_dlpack_device, 8);
TB_PIN(tb_dlpack_device, device_type, 0);
TB_PIN(tb_dlpack_device, device_id, 4);
TB_PIN_SIZE(tb_dlpack_dtype, 4);
TB_PIN(tb_dlpack_dtype, code, 0);
TB_PIN(tb_dlpack_dtype, bits, 1);
TB_PIN(tb_dlpack_dtype, lanes, 2);
TB_PIN_SIZE(tb_dlpack_tensor, 48);
TB_PIN(tb_dlpack_tensor, data, 0);
TB_PIN(tb_dlpack_tensor, device, 8);
TB_PIN(tb_dlpack_tensor, ndim, 16);
TB_PIN(tb_dlpack_tensor, dtype, 20);
TB_PIN(tb_dlpack_tensor, shape, 24);
TB_PIN(tb_dlpack_tensor, strides, 32);
TB_PIN(tb_dlpack_tensor, byte_offset, 40);
TB_PIN_SIZE(tb_dlpack_managed_tensor, 64);
TB_PIN(tb_dlpack_managed_tensor, dl_tensor, 0);
TB_PIN(tb_dlpack_managed_tensor, manager_ctx, 48);
TB_PIN(tb_dlpack_managed_tensor, deleter, 56);
TB_PIN_SIZE(tb_dlpack_managed_tensor_versioned, 80);
TB_PIN(tb_dlpack_managed_tensor_versioned, version, 0);
TB_PIN(tb_dlpack_managed_tensor_versioned, manager_ctx, 8);
TB_PIN(tb_dlpack_managed_tensor_versioned, deleter, 16);
TB_PIN(tb_dlpack_managed_tensor_versioned, flags, 24);
TB_PIN(tb_dlpack_managed_tensor_versioned, dl_tensor, 32);

static void constants_match_dlpack(void **state) {
  (void)state;
  /* DLPACK_MAJOR/MINOR_VERSION, DLPACK_FLAG_BITMASK_*, kDL* values. */
  assert_int_equal(TB_DLPACK_MAJOR_VERSION, 1);
  assert_int_equal(TB_DLPACK_MINOR_VERSION, 1);
  assert_int_equal(TB_DLPACK_FLAG_READ_ONLY, 1u << 0);
  assert_int_equal(TB_DLPACK_FLAG_IS_COPIED, 1u << 1);
  assert_int_equal(TB_DLPACK_DEVICE_CPU, 1);
  assert_int_equal(TB_DLPACK_DEVICE_CUDA, 2);
  assert_int_equal(TB_DLPACK_DEVICE_CUDA_HOST, 3);
  assert_int_equal(TB_DLPACK_CODE_INT, 0);
  assert_int_equal(TB_DLPACK_CODE_UINT, 1);
  assert_int_equal(TB_DLPACK_CODE_FLOAT, 2);
  assert_int_equal(TB_DLPACK_CODE_BFLOAT, 4);
  assert_int_equal(TB_DLPACK_CODE_BOOL, 6);
}

/* The DLPack type of every dtype. */
static const struct {
  tb_dtype dtype;
  uint8_t code;
  uint8_t bits;
} dlpack_types[] = {
    {TB_DTYPE_BOOL, TB_DLPACK_CODE_BOOL, 8},
    {TB_DTYPE_U8, TB_DLPACK_CODE_UINT, 8},
    {TB_DTYPE_I8, TB_DLPACK_CODE_INT, 8},
    {TB_DTYPE_U16, TB_DLPACK_CODE_UINT, 16},
    {TB_DTYPE_I16, TB_DLPACK_CODE_INT, 16},
    {TB_DTYPE_U32, TB_DLPACK_CODE_UINT, 32},
    {TB_DTYPE_I32, TB_DLPACK_CODE_INT, 32},
    {TB_DTYPE_U64, TB_DLPACK_CODE_UINT, 64},
    {TB_DTYPE_I64, TB_DLPACK_CODE_INT, 64},
    {TB_DTYPE_F16, TB_DLPACK_CODE_FLOAT, 16},
    {TB_DTYPE_BF16, TB_DLPACK_CODE_BFLOAT, 16},
    {TB_DTYPE_F32, TB_DLPACK_CODE_FLOAT, 32},
    {TB_DTYPE_F64, TB_DLPACK_CODE_FLOAT, 64},
};
#define NTYPES (sizeof dlpack_types / sizeof *dlpack_types)

/* Address of a tensor's element 0 as a read map gives it. */
static void *element0(tb_tensor *tensor) {
  tb_map *map = NULL;
  TB_ASSERT_OK(tb_tensor_map(&map, tensor, TB_MAP_READ));
  void *data = tb_map_data(map);
  tb_map_free(map);
  return data;
}

static void assert_dims(const tb_dlpack_tensor *dl, size_t ndim,
                        const int64_t *shape, const int64_t *strides) {
  assert_int_equal(dl->ndim, ndim);
  for (size_t i = 0; i < ndim; i++) {
    assert_int_equal(dl->shape[i], shape[i]);
    assert_int_equal(dl->strides[i], strides[i]);
  }
}

/* ---- export ------------------------------------------------------------- */

static void export_describes_every_dtype(void **state) {
  (void)state;
  const int64_t shape[] = {2, 3};
  const int64_t strides[] = {3, 1};
  for (size_t i = 0; i < NTYPES; i++) {
    tb_tensor *tensor =
        tb_test_arange(dlpack_types[i].dtype, 2, shape, TB_MEMORY_HEAP);
    tb_dlpack_managed_tensor_versioned *managed = NULL;
    TB_ASSERT_OK(tb_tensor_to_dlpack(&managed, tensor, 0));
    assert_int_equal(managed->version.major, 1);
    assert_int_equal(managed->version.minor, 1);
    assert_int_equal(managed->flags, 0);
    assert_non_null(managed->deleter);
    const tb_dlpack_tensor *dl = &managed->dl_tensor;
    assert_ptr_equal(dl->data, element0(tensor));
    assert_int_equal(dl->byte_offset, 0);
    assert_int_equal(dl->device.device_type, TB_DLPACK_DEVICE_CPU);
    assert_int_equal(dl->device.device_id, 0);
    assert_int_equal(dl->dtype.code, dlpack_types[i].code);
    assert_int_equal(dl->dtype.bits, dlpack_types[i].bits);
    assert_int_equal(dl->dtype.lanes, 1);
    assert_dims(dl, 2, shape, strides);
    managed->deleter(managed);
    tb_tensor_unref(tensor);
  }
}

static void export_keeps_the_memory_after_the_tensor_goes(void **state) {
  (void)state;
  const int64_t shape[] = {4};
  tb_tensor *tensor = tb_test_arange(TB_DTYPE_I32, 1, shape, TB_MEMORY_SHM);
  int64_t live = tb_live_objects();
  tb_dlpack_managed_tensor_versioned *managed = NULL;
  TB_ASSERT_OK(tb_tensor_to_dlpack(&managed, tensor, 0));
  tb_tensor_unref(tensor);
  assert_int_equal(tb_live_objects(), live); /* the export holds the tensor */
  const int32_t *data = managed->dl_tensor.data;
  for (int i = 0; i < 4; i++)
    assert_int_equal(data[i], i);
  managed->deleter(managed);
  assert_int_equal(tb_live_objects(), live - 2); /* tensor and buffer */
}

static void export_shares_the_bytes(void **state) {
  (void)state;
  const int64_t shape[] = {2, 2};
  tb_tensor *tensor = tb_test_arange(TB_DTYPE_F32, 2, shape, TB_MEMORY_HEAP);
  tb_dlpack_managed_tensor_versioned *managed = NULL;
  TB_ASSERT_OK(tb_tensor_to_dlpack(&managed, tensor, 0));
  float *data = managed->dl_tensor.data;
  data[3] = 42.5f;
  double value = 0;
  const int64_t index[] = {1, 1};
  TB_ASSERT_OK(tb_tensor_get_f64(&value, tensor, 2, index));
  TB_ASSERT_F64_EQUAL(value, 42.5);
  TB_ASSERT_OK(tb_tensor_set_f64(tensor, 2, index, -1.0));
  assert_true(data[3] == -1.0f);
  managed->deleter(managed);
  tb_tensor_unref(tensor);
}

static void export_keeps_view_strides(void **state) {
  (void)state;
  const int64_t shape[] = {4, 6};
  tb_tensor *tensor = tb_test_arange(TB_DTYPE_U16, 2, shape, TB_MEMORY_HEAP);
  tb_tensor *columns = NULL, *view = NULL;
  TB_ASSERT_OK(tb_tensor_slice(&columns, tensor, 1, 1, 6, 2));
  TB_ASSERT_OK(tb_tensor_slice(&view, columns, 0, 1, 4, 1));
  tb_dlpack_managed_tensor_versioned *managed = NULL;
  TB_ASSERT_OK(tb_tensor_to_dlpack(&managed, view, 0));
  const int64_t view_shape[] = {3, 3}, view_strides[] = {6, 2};
  assert_dims(&managed->dl_tensor, 2, view_shape, view_strides);
  const uint16_t *data = managed->dl_tensor.data;
  assert_ptr_equal(data, element0(view));
  assert_int_equal(data[0], 7); /* element [1, 1] of the arange */
  assert_int_equal(managed->dl_tensor.byte_offset, 0);
  managed->deleter(managed);
  tb_tensor_unref(view);
  tb_tensor_unref(columns);
  tb_tensor_unref(tensor);
}

static void export_keeps_zero_strides(void **state) {
  (void)state;
  int32_t values[] = {10, 11, 12, 13};
  tb_buffer *buffer = NULL;
  TB_ASSERT_OK(tb_buffer_wrap(&buffer, values, sizeof values, 0, NULL, NULL));
  /* A broadcast column: element [i, j] is values[i]. */
  const int64_t shape[] = {4, 5}, strides[] = {1, 0};
  tb_tensor *tensor = NULL;
  TB_ASSERT_OK(tb_tensor_from_buffer(&tensor, buffer, 0, TB_DTYPE_I32, 2, shape,
                                     strides));
  tb_dlpack_managed_tensor_versioned *managed = NULL;
  TB_ASSERT_OK(tb_tensor_to_dlpack(&managed, tensor, 0));
  assert_ptr_equal(managed->dl_tensor.data, &values[0]);
  assert_dims(&managed->dl_tensor, 2, shape, strides);
  managed->deleter(managed);
  tb_tensor_unref(tensor);
  tb_buffer_unref(buffer);
}

static void export_refuses_negative_strides(void **state) {
  (void)state;
  int32_t values[] = {10, 11, 12, 13};
  tb_buffer *buffer = NULL;
  TB_ASSERT_OK(tb_buffer_wrap(&buffer, values, sizeof values, 0, NULL, NULL));
  const int64_t shape[] = {4}, strides[] = {-1};
  tb_tensor *tensor = NULL;
  TB_ASSERT_OK(tb_tensor_from_buffer(&tensor, buffer, 3 * sizeof *values,
                                     TB_DTYPE_I32, 1, shape, strides));
  tb_dlpack_managed_tensor_versioned *managed =
      TB_SENTINEL(tb_dlpack_managed_tensor_versioned);
  TB_ASSERT_STATUS(tb_tensor_to_dlpack(&managed, tensor, 0), TB_ERR_LAYOUT);
  assert_ptr_equal(managed, TB_SENTINEL(tb_dlpack_managed_tensor_versioned));
  tb_dlpack_managed_tensor *legacy = TB_SENTINEL(tb_dlpack_managed_tensor);
  TB_ASSERT_STATUS(tb_tensor_to_dlpack_legacy(&legacy, tensor), TB_ERR_LAYOUT);
  tb_tensor_unref(tensor);
  tb_buffer_unref(buffer);
}

static void export_of_empty_and_scalar_tensors(void **state) {
  (void)state;
  const int64_t shape[] = {0, 3}, strides[] = {3, 1};
  tb_tensor *empty = tb_test_arange(TB_DTYPE_F64, 2, shape, TB_MEMORY_HEAP);
  tb_dlpack_managed_tensor_versioned *managed = NULL;
  TB_ASSERT_OK(tb_tensor_to_dlpack(&managed, empty, 0));
  assert_null(managed->dl_tensor.data); /* DLPack: NULL when empty */
  assert_dims(&managed->dl_tensor, 2, shape, strides);
  managed->deleter(managed);
  tb_tensor_unref(empty);

  tb_tensor *scalar = tb_test_arange(TB_DTYPE_I64, 0, NULL, TB_MEMORY_HEAP);
  TB_ASSERT_OK(tb_tensor_set_i64(scalar, 0, NULL, -7));
  TB_ASSERT_OK(tb_tensor_to_dlpack(&managed, scalar, 0));
  assert_int_equal(managed->dl_tensor.ndim, 0);
  assert_non_null(managed->dl_tensor.shape);
  assert_int_equal(*(const int64_t *)managed->dl_tensor.data, -7);
  managed->deleter(managed);
  tb_tensor_unref(scalar);
}

/* A tensor over read-only wrapped memory. */
static tb_tensor *read_only_tensor(const void *bytes, uint64_t size,
                                   tb_dtype dtype, int64_t count) {
  tb_buffer *buffer = NULL;
  TB_ASSERT_OK(tb_buffer_wrap(&buffer, (void *)bytes, size, TB_BUFFER_READ_ONLY,
                              NULL, NULL));
  tb_tensor *tensor = NULL;
  TB_ASSERT_OK(
      tb_tensor_from_buffer(&tensor, buffer, 0, dtype, 1, &count, NULL));
  tb_buffer_unref(buffer);
  return tensor;
}

static void export_marks_read_only_memory(void **state) {
  (void)state;
  static const uint8_t bytes[] = {1, 2, 3};
  tb_tensor *tensor = read_only_tensor(bytes, sizeof bytes, TB_DTYPE_U8, 3);
  tb_dlpack_managed_tensor_versioned *managed = NULL;
  TB_ASSERT_OK(tb_tensor_to_dlpack(&managed, tensor, 0));
  assert_int_equal(managed->flags, TB_DLPACK_FLAG_READ_ONLY);
  assert_ptr_equal(managed->dl_tensor.data, bytes);
  managed->deleter(managed);
  tb_tensor_unref(tensor);
}

static void export_read_only_on_request(void **state) {
  (void)state;
  const int64_t shape[] = {3};
  tb_tensor *tensor = tb_test_arange(TB_DTYPE_U8, 1, shape, TB_MEMORY_HEAP);
  tb_dlpack_managed_tensor_versioned *managed = NULL;
  TB_ASSERT_OK(
      tb_tensor_to_dlpack(&managed, tensor, TB_DLPACK_EXPORT_READ_ONLY));
  assert_int_equal(managed->flags, TB_DLPACK_FLAG_READ_ONLY);
  assert_false(tb_tensor_read_only(tensor)); /* the tensor stays writable */
  TB_ASSERT_OK(tb_tensor_set_i64(tensor, 1, (const int64_t[]){0}, 9));
  managed->deleter(managed);
  tb_tensor_unref(tensor);
}

static void export_rejects_bad_arguments(void **state) {
  (void)state;
  const int64_t shape[] = {2};
  tb_tensor *tensor = tb_test_arange(TB_DTYPE_U8, 1, shape, TB_MEMORY_HEAP);
  tb_dlpack_managed_tensor_versioned *managed =
      TB_SENTINEL(tb_dlpack_managed_tensor_versioned);
  TB_ASSERT_STATUS(tb_tensor_to_dlpack(NULL, tensor, 0),
                   TB_ERR_INVALID_ARGUMENT);
  TB_ASSERT_STATUS(tb_tensor_to_dlpack(&managed, NULL, 0),
                   TB_ERR_INVALID_ARGUMENT);
  TB_ASSERT_STATUS(tb_tensor_to_dlpack(&managed, tensor, 0x2),
                   TB_ERR_INVALID_ARGUMENT);
  assert_non_null(strstr(tb_last_error(), "flags"));
  TB_ASSERT_STATUS(tb_tensor_to_dlpack(&managed, tensor, 0x80000000u),
                   TB_ERR_INVALID_ARGUMENT);
  assert_ptr_equal(managed, TB_SENTINEL(tb_dlpack_managed_tensor_versioned));

  tb_dlpack_managed_tensor *legacy = TB_SENTINEL(tb_dlpack_managed_tensor);
  TB_ASSERT_STATUS(tb_tensor_to_dlpack_legacy(NULL, tensor),
                   TB_ERR_INVALID_ARGUMENT);
  TB_ASSERT_STATUS(tb_tensor_to_dlpack_legacy(&legacy, NULL),
                   TB_ERR_INVALID_ARGUMENT);
  assert_ptr_equal(legacy, TB_SENTINEL(tb_dlpack_managed_tensor));
  tb_tensor_unref(tensor);
}

static void export_of_cuda_memory_gives_its_device_address(void **state) {
  (void)state;
  if (!tb_memory_available(TB_MEMORY_CUDA)) {
    TB_SKIP("no CUDA driver or GPU in this process, so no memory without "
            "CPU access to export");
  }
  const int64_t shape[] = {2};
  tb_alloc_options opts = TB_ALLOC_OPTIONS_INIT;
  opts.memory = TB_MEMORY_CUDA;
  tb_tensor *tensor = NULL;
  TB_ASSERT_OK(tb_tensor_new(&tensor, TB_DTYPE_U8, 1, shape, &opts));
  uint64_t address = 0;
  TB_ASSERT_OK(tb_tensor_device_ptr(&address, tensor));
  tb_dlpack_managed_tensor_versioned *managed = NULL;
  TB_ASSERT_OK(tb_tensor_to_dlpack(&managed, tensor, 0));
  assert_int_equal(managed->dl_tensor.device.device_type,
                   TB_DLPACK_DEVICE_CUDA);
  assert_int_equal(managed->dl_tensor.device.device_id, 0);
  assert_int_equal((uintptr_t)managed->dl_tensor.data, address);
  managed->deleter(managed);
  tb_tensor_unref(tensor);
}

static void legacy_export_describes_the_tensor(void **state) {
  (void)state;
  const int64_t shape[] = {3, 2}, strides[] = {2, 1};
  tb_tensor *tensor = tb_test_arange(TB_DTYPE_BF16, 2, shape, TB_MEMORY_SHM);
  tb_dlpack_managed_tensor *managed = NULL;
  TB_ASSERT_OK(tb_tensor_to_dlpack_legacy(&managed, tensor));
  const tb_dlpack_tensor *dl = &managed->dl_tensor;
  assert_ptr_equal(dl->data, element0(tensor));
  assert_int_equal(dl->byte_offset, 0);
  assert_int_equal(dl->device.device_type, TB_DLPACK_DEVICE_CPU);
  assert_int_equal(dl->dtype.code, TB_DLPACK_CODE_BFLOAT);
  assert_int_equal(dl->dtype.bits, 16);
  assert_int_equal(dl->dtype.lanes, 1);
  assert_dims(dl, 2, shape, strides);
  tb_tensor_unref(tensor); /* the export holds the memory */
  managed->deleter(managed);
}

static void legacy_export_refuses_read_only_memory(void **state) {
  (void)state;
  static const uint8_t bytes[] = {1, 2};
  tb_tensor *tensor = read_only_tensor(bytes, sizeof bytes, TB_DTYPE_U8, 2);
  tb_dlpack_managed_tensor *managed = TB_SENTINEL(tb_dlpack_managed_tensor);
  TB_ASSERT_STATUS(tb_tensor_to_dlpack_legacy(&managed, tensor),
                   TB_ERR_READ_ONLY);
  assert_ptr_equal(managed, TB_SENTINEL(tb_dlpack_managed_tensor));
  tb_tensor_unref(tensor);
}

/* ---- import from a foreign producer -------------------------------------
 * A producer's managed tensor over caller memory whose deleter counts its
 * calls (and the thread it ran on). */
typedef struct producer {
  tb_dlpack_managed_tensor_versioned versioned;
  tb_dlpack_managed_tensor legacy;
  int64_t shape[TB_MAX_DIMS + 1];
  int64_t strides[TB_MAX_DIMS + 1];
  int deletions;
  pthread_t deleted_on;
} producer;

static void producer_delete_versioned(tb_dlpack_managed_tensor_versioned *m) {
  producer *p = m->manager_ctx;
  p->deletions++;
  p->deleted_on = pthread_self();
}

static void producer_delete_legacy(tb_dlpack_managed_tensor *m) {
  producer *p = m->manager_ctx;
  p->deletions++;
  p->deleted_on = pthread_self();
}

/* A CPU tensor of `dtype` at `data` with the given dims; strides NULL for
 * row-major. Both the versioned and the legacy struct describe it. */
static void producer_init(producer *p, void *data, tb_dtype dtype, int32_t ndim,
                          const int64_t *shape, const int64_t *strides) {
  memset(p, 0, sizeof *p);
  size_t type = 0;
  while (dlpack_types[type].dtype != dtype)
    type++;
  for (int32_t i = 0; i < ndim; i++) {
    p->shape[i] = shape[i];
    p->strides[i] = strides != NULL ? strides[i] : 0;
  }
  tb_dlpack_tensor dl = {
      .data = data,
      .device = {TB_DLPACK_DEVICE_CPU, 0},
      .ndim = ndim,
      .dtype = {dlpack_types[type].code, dlpack_types[type].bits, 1},
      .shape = p->shape,
      .strides = strides != NULL ? p->strides : NULL,
      .byte_offset = 0,
  };
  p->versioned = (tb_dlpack_managed_tensor_versioned){
      .version = {1, 1},
      .manager_ctx = p,
      .deleter = producer_delete_versioned,
      .dl_tensor = dl,
  };
  p->legacy = (tb_dlpack_managed_tensor){
      .dl_tensor = dl,
      .manager_ctx = p,
      .deleter = producer_delete_legacy,
  };
}

static void import_takes_every_dtype(void **state) {
  (void)state;
  uint64_t storage[6] = {0};
  const int64_t shape[] = {2, 3};
  for (size_t i = 0; i < NTYPES; i++) {
    producer p;
    producer_init(&p, storage, dlpack_types[i].dtype, 2, shape, NULL);
    tb_tensor *tensor = NULL;
    TB_ASSERT_OK(tb_tensor_from_dlpack(&tensor, &p.versioned));
    assert_int_equal(tb_tensor_dtype(tensor), dlpack_types[i].dtype);
    assert_int_equal(tb_tensor_ndim(tensor), 2);
    assert_int_equal(tb_tensor_dim(tensor, 0), 2);
    assert_int_equal(tb_tensor_dim(tensor, 1), 3);
    assert_int_equal(tb_tensor_stride(tensor, 0), 3);
    assert_int_equal(tb_tensor_stride(tensor, 1), 1);
    assert_int_equal(tb_tensor_memory(tensor), TB_MEMORY_HEAP);
    assert_false(tb_tensor_read_only(tensor));
    assert_ptr_equal(element0(tensor), storage);
    assert_int_equal(p.deletions, 0);
    tb_tensor_unref(tensor);
    assert_int_equal(p.deletions, 1);
  }
}

static void import_shares_the_bytes(void **state) {
  (void)state;
  float values[6] = {0, 1, 2, 3, 4, 5};
  const int64_t shape[] = {2, 3};
  producer p;
  producer_init(&p, values, TB_DTYPE_F32, 2, shape, NULL);
  tb_tensor *tensor = NULL;
  TB_ASSERT_OK(tb_tensor_from_dlpack(&tensor, &p.versioned));
  double value = 0;
  TB_ASSERT_OK(tb_tensor_get_f64(&value, tensor, 2, (const int64_t[]){1, 2}));
  TB_ASSERT_F64_EQUAL(value, 5.0);
  TB_ASSERT_OK(tb_tensor_set_f64(tensor, 2, (const int64_t[]){0, 1}, 8.5));
  assert_true(values[1] == 8.5f);
  tb_tensor_unref(tensor);
  assert_int_equal(p.deletions, 1);
}

static void import_follows_strides_and_byte_offset(void **state) {
  (void)state;
  int16_t values[12];
  for (int i = 0; i < 12; i++)
    values[i] = (int16_t)(100 + i);
  /* Columns 2, 1, 0 of a 3x4 matrix, rows repeated: [i, j] = values[2 - i],
   * reached through data = values and byte_offset = 2 elements. */
  const int64_t shape[] = {3, 2}, strides[] = {-1, 0};
  producer p;
  producer_init(&p, values, TB_DTYPE_I16, 2, shape, strides);
  p.versioned.dl_tensor.byte_offset = 2 * sizeof *values;
  tb_tensor *tensor = NULL;
  TB_ASSERT_OK(tb_tensor_from_dlpack(&tensor, &p.versioned));
  assert_int_equal(tb_tensor_stride(tensor, 0), -1);
  assert_int_equal(tb_tensor_stride(tensor, 1), 0);
  assert_ptr_equal(element0(tensor), &values[2]);
  for (int64_t i = 0; i < 3; i++) {
    for (int64_t j = 0; j < 2; j++) {
      int64_t value = 0;
      TB_ASSERT_OK(
          tb_tensor_get_i64(&value, tensor, 2, (const int64_t[]){i, j}));
      assert_int_equal(value, 102 - i);
    }
  }
  /* The buffer covers exactly the bytes the layout reaches. */
  tb_buffer *buffer = tb_tensor_buffer(tensor);
  assert_int_equal(tb_buffer_size(buffer), 3 * sizeof *values);
  tb_buffer_unref(buffer);
  tb_tensor_unref(tensor);
  assert_int_equal(p.deletions, 1);
}

static void import_of_empty_and_scalar_tensors(void **state) {
  (void)state;
  const int64_t shape[] = {4, 0};
  producer p;
  producer_init(&p, NULL, TB_DTYPE_U8, 2, shape, NULL);
  tb_tensor *tensor = NULL;
  TB_ASSERT_OK(tb_tensor_from_dlpack(&tensor, &p.versioned));
  assert_int_equal(tb_tensor_numel(tensor), 0);
  assert_int_equal(tb_tensor_dim(tensor, 0), 4);
  tb_tensor_unref(tensor);
  assert_int_equal(p.deletions, 1);

  double scalar = 2.25;
  producer_init(&p, &scalar, TB_DTYPE_F64, 0, NULL, NULL);
  p.versioned.dl_tensor.shape = NULL; /* allowed for ndim 0 */
  TB_ASSERT_OK(tb_tensor_from_dlpack(&tensor, &p.versioned));
  double value = 0;
  TB_ASSERT_OK(tb_tensor_get_f64(&value, tensor, 0, NULL));
  TB_ASSERT_F64_EQUAL(value, 2.25);
  tb_tensor_unref(tensor);
  assert_int_equal(p.deletions, 1);
}

static void import_honours_the_read_only_flag(void **state) {
  (void)state;
  uint32_t values[2] = {1, 2};
  const int64_t shape[] = {2};
  producer p;
  producer_init(&p, values, TB_DTYPE_U32, 1, shape, NULL);
  p.versioned.flags = TB_DLPACK_FLAG_READ_ONLY | TB_DLPACK_FLAG_IS_COPIED;
  tb_tensor *tensor = NULL;
  TB_ASSERT_OK(tb_tensor_from_dlpack(&tensor, &p.versioned));
  assert_true(tb_tensor_read_only(tensor));
  tb_map *map = TB_SENTINEL(tb_map);
  TB_ASSERT_STATUS(tb_tensor_map(&map, tensor, TB_MAP_WRITE), TB_ERR_READ_ONLY);
  TB_ASSERT_STATUS(tb_tensor_set_i64(tensor, 1, (const int64_t[]){0}, 5),
                   TB_ERR_READ_ONLY);
  assert_int_equal(values[0], 1);
  /* Re-exported, it stays read-only. */
  tb_dlpack_managed_tensor_versioned *again = NULL;
  TB_ASSERT_OK(tb_tensor_to_dlpack(&again, tensor, 0));
  assert_int_equal(again->flags, TB_DLPACK_FLAG_READ_ONLY);
  assert_ptr_equal(again->dl_tensor.data, values);
  tb_tensor_unref(tensor);
  assert_int_equal(p.deletions, 0); /* the re-export still holds it */
  again->deleter(again);
  assert_int_equal(p.deletions, 1);
}

static void import_accepts_newer_minor_versions(void **state) {
  (void)state;
  uint8_t byte = 3;
  const int64_t shape[] = {1};
  producer p;
  producer_init(&p, &byte, TB_DTYPE_U8, 1, shape, NULL);
  p.versioned.version = (tb_dlpack_version){1, 7};
  tb_tensor *tensor = NULL;
  TB_ASSERT_OK(tb_tensor_from_dlpack(&tensor, &p.versioned));
  tb_tensor_unref(tensor);
  assert_int_equal(p.deletions, 1);
}

static void import_deletes_when_the_last_reference_goes(void **state) {
  (void)state;
  int64_t values[8] = {0};
  const int64_t shape[] = {8};
  producer p;
  producer_init(&p, values, TB_DTYPE_I64, 1, shape, NULL);
  tb_tensor *tensor = NULL, *view = NULL;
  TB_ASSERT_OK(tb_tensor_from_dlpack(&tensor, &p.versioned));
  TB_ASSERT_OK(tb_tensor_slice(&view, tensor, 0, 2, 8, 3));
  tb_map *map = NULL;
  TB_ASSERT_OK(tb_tensor_map(&map, view, TB_MAP_READ | TB_MAP_WRITE));
  tb_tensor_unref(tensor);
  tb_tensor_unref(view);
  assert_int_equal(p.deletions, 0);
  ((int64_t *)tb_map_data(map))[3] = 77; /* element 1 of the view */
  assert_int_equal(values[5], 77);
  tb_map_free(map);
  assert_int_equal(p.deletions, 1);
}

static void *drop_tensor(void *tensor) {
  tb_tensor_unref(tensor);
  return NULL;
}

static void import_deletes_on_the_thread_that_drops_it(void **state) {
  (void)state;
  uint8_t bytes[4] = {0};
  const int64_t shape[] = {4};
  producer p;
  producer_init(&p, bytes, TB_DTYPE_U8, 1, shape, NULL);
  tb_tensor *tensor = NULL;
  TB_ASSERT_OK(tb_tensor_from_dlpack(&tensor, &p.versioned));
  pthread_t thread;
  assert_int_equal(pthread_create(&thread, NULL, drop_tensor, tensor), 0);
  assert_int_equal(pthread_join(thread, NULL), 0);
  assert_int_equal(p.deletions, 1);
  assert_true(pthread_equal(p.deleted_on, thread));
}

static void import_with_no_deleter(void **state) {
  (void)state;
  uint8_t bytes[2] = {5, 6};
  const int64_t shape[] = {2};
  producer p;
  producer_init(&p, bytes, TB_DTYPE_U8, 1, shape, NULL);
  p.versioned.deleter = NULL;
  p.legacy.deleter = NULL;
  tb_tensor *tensor = NULL;
  TB_ASSERT_OK(tb_tensor_from_dlpack(&tensor, &p.versioned));
  tb_tensor_unref(tensor);
  TB_ASSERT_OK(tb_tensor_from_dlpack_legacy(&tensor, &p.legacy));
  tb_tensor_unref(tensor);
  assert_int_equal(p.deletions, 0);
}

static void legacy_import_shares_and_deletes(void **state) {
  (void)state;
  uint16_t halves[3] = {0x3c00, 0x4000, 0x4200}; /* 1.0, 2.0, 3.0 in f16 */
  const int64_t shape[] = {3}, strides[] = {1};
  producer p;
  producer_init(&p, halves, TB_DTYPE_F16, 1, shape, strides);
  tb_tensor *tensor = NULL;
  TB_ASSERT_OK(tb_tensor_from_dlpack_legacy(&tensor, &p.legacy));
  assert_int_equal(tb_tensor_dtype(tensor), TB_DTYPE_F16);
  assert_false(tb_tensor_read_only(tensor));
  double value = 0;
  TB_ASSERT_OK(tb_tensor_get_f64(&value, tensor, 1, (const int64_t[]){2}));
  TB_ASSERT_F64_EQUAL(value, 3.0);
  tb_tensor_unref(tensor);
  assert_int_equal(p.deletions, 1);
}

/* Asserts that both imports of `p` fail with `status`, write nothing and
 * leave the deleter to the caller. */
static void assert_import_fails(producer *p, tb_status status) {
  tb_tensor *tensor = TB_SENTINEL(tb_tensor);
  TB_ASSERT_STATUS(tb_tensor_from_dlpack(&tensor, &p->versioned), status);
  p->legacy.dl_tensor = p->versioned.dl_tensor;
  TB_ASSERT_STATUS(tb_tensor_from_dlpack_legacy(&tensor, &p->legacy), status);
  assert_ptr_equal(tensor, TB_SENTINEL(tb_tensor));
  assert_int_equal(p->deletions, 0);
}

static void import_rejects_null_arguments(void **state) {
  (void)state;
  uint8_t byte = 0;
  const int64_t shape[] = {1};
  producer p;
  producer_init(&p, &byte, TB_DTYPE_U8, 1, shape, NULL);
  tb_tensor *tensor = TB_SENTINEL(tb_tensor);
  TB_ASSERT_STATUS(tb_tensor_from_dlpack(NULL, &p.versioned),
                   TB_ERR_INVALID_ARGUMENT);
  TB_ASSERT_STATUS(tb_tensor_from_dlpack(&tensor, NULL),
                   TB_ERR_INVALID_ARGUMENT);
  TB_ASSERT_STATUS(tb_tensor_from_dlpack_legacy(NULL, &p.legacy),
                   TB_ERR_INVALID_ARGUMENT);
  TB_ASSERT_STATUS(tb_tensor_from_dlpack_legacy(&tensor, NULL),
                   TB_ERR_INVALID_ARGUMENT);
  assert_ptr_equal(tensor, TB_SENTINEL(tb_tensor));
  assert_int_equal(p.deletions, 0);
}

static void import_rejects_other_major_versions(void **state) {
  (void)state;
  uint8_t byte = 0;
  const int64_t shape[] = {1};
  const uint32_t majors[] = {0, 2, UINT32_MAX};
  for (size_t i = 0; i < sizeof majors / sizeof *majors; i++) {
    producer p;
    producer_init(&p, &byte, TB_DTYPE_U8, 1, shape, NULL);
    p.versioned.version.major = majors[i];
    tb_tensor *tensor = TB_SENTINEL(tb_tensor);
    TB_ASSERT_STATUS(tb_tensor_from_dlpack(&tensor, &p.versioned),
                     TB_ERR_VERSION);
    assert_ptr_equal(tensor, TB_SENTINEL(tb_tensor));
    assert_int_equal(p.deletions, 0);
  }
}

static void import_rejects_other_devices(void **state) {
  (void)state;
  uint8_t byte = 0;
  const int64_t shape[] = {1};
  const int32_t devices[] = {0, 4, 14};
  for (size_t i = 0; i < sizeof devices / sizeof *devices; i++) {
    producer p;
    producer_init(&p, &byte, TB_DTYPE_U8, 1, shape, NULL);
    p.versioned.dl_tensor.device.device_type = devices[i];
    assert_import_fails(&p, TB_ERR_UNSUPPORTED);
    assert_non_null(strstr(tb_last_error(), "device"));
  }
  /* CUDA memory is refused without a driver, and a CPU address is never
   * taken for CUDA memory with one. */
  const int32_t cuda[] = {TB_DLPACK_DEVICE_CUDA, TB_DLPACK_DEVICE_CUDA_HOST};
  for (size_t i = 0; i < sizeof cuda / sizeof *cuda; i++) {
    producer p;
    producer_init(&p, &byte, TB_DTYPE_U8, 1, shape, NULL);
    p.versioned.dl_tensor.device.device_type = cuda[i];
    assert_import_fails(&p, tb_memory_available(TB_MEMORY_CUDA)
                                ? TB_ERR_INVALID_ARGUMENT
                                : TB_ERR_UNSUPPORTED);
  }
  /* A device id that does not exist for the kind. */
  producer p;
  producer_init(&p, &byte, TB_DTYPE_U8, 1, shape, NULL);
  p.versioned.dl_tensor.device =
      (tb_dlpack_device){TB_DLPACK_DEVICE_CUDA_HOST, 1};
  assert_import_fails(&p, TB_ERR_INVALID_ARGUMENT);
  assert_non_null(strstr(tb_last_error(), "device_id"));
}

static void import_rejects_other_types(void **state) {
  (void)state;
  uint64_t storage[2] = {0};
  const int64_t shape[] = {1};
  const tb_dlpack_dtype bad[] = {
      {TB_DLPACK_CODE_FLOAT, 32, 4}, /* vector lanes */
      {TB_DLPACK_CODE_FLOAT, 32, 0},
      {TB_DLPACK_CODE_FLOAT, 8, 1},
      {TB_DLPACK_CODE_INT, 128, 1},
      {TB_DLPACK_CODE_UINT, 1, 1},
      {TB_DLPACK_CODE_BFLOAT, 32, 1},
      {TB_DLPACK_CODE_BOOL, 1, 1},
      {TB_DLPACK_CODE_BOOL, 16, 1},
      {3, 64, 1}, /* opaque handle */
      {5, 64, 1}, /* complex64 */
      {7, 8, 1},  /* float8 e3m4 */
      {255, 8, 1},
  };
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    producer p;
    producer_init(&p, storage, TB_DTYPE_U8, 1, shape, NULL);
    p.versioned.dl_tensor.dtype = bad[i];
    assert_import_fails(&p, TB_ERR_DTYPE);
    assert_non_null(strstr(tb_last_error(), "dtype"));
  }
}

static void import_rejects_bad_shapes(void **state) {
  (void)state;
  uint8_t bytes[4] = {0};
  int64_t dims[TB_MAX_DIMS + 1];
  for (size_t i = 0; i < TB_MAX_DIMS + 1; i++)
    dims[i] = 1;
  producer p;

  producer_init(&p, bytes, TB_DTYPE_U8, TB_MAX_DIMS + 1, dims, NULL);
  assert_import_fails(&p, TB_ERR_SHAPE);
  assert_non_null(strstr(tb_last_error(), "ndim"));

  producer_init(&p, bytes, TB_DTYPE_U8, 1, dims, NULL);
  p.versioned.dl_tensor.ndim = -1;
  assert_import_fails(&p, TB_ERR_SHAPE);

  const int64_t negative[] = {2, -3};
  producer_init(&p, bytes, TB_DTYPE_U8, 2, negative, NULL);
  assert_import_fails(&p, TB_ERR_SHAPE);
  assert_non_null(strstr(tb_last_error(), "shape[1]"));

  /* Row-major strides of these dims overflow int64. */
  const int64_t huge[] = {INT64_MAX / 2, 3, 2};
  producer_init(&p, bytes, TB_DTYPE_U8, 3, huge, NULL);
  assert_import_fails(&p, TB_ERR_SHAPE);

  /* The layout's byte span overflows int64. */
  const int64_t span[] = {3}, far[] = {INT64_MAX / 2};
  producer_init(&p, bytes, TB_DTYPE_U16, 1, span, far);
  assert_import_fails(&p, TB_ERR_SHAPE);

  /* Dims whose element count overflows, though each stride is small. */
  const int64_t many[] = {INT64_MAX / 4, INT64_MAX / 4},
                zero[] = {0, 0}; /* broadcast: a span of one element */
  producer_init(&p, bytes, TB_DTYPE_U8, 2, many, zero);
  assert_import_fails(&p, TB_ERR_SHAPE);
}

static void import_rejects_missing_pointers(void **state) {
  (void)state;
  uint8_t bytes[4] = {0};
  const int64_t shape[] = {2, 2};
  producer p;
  producer_init(&p, bytes, TB_DTYPE_U8, 2, shape, NULL);
  p.versioned.dl_tensor.shape = NULL;
  assert_import_fails(&p, TB_ERR_INVALID_ARGUMENT);
  assert_non_null(strstr(tb_last_error(), "shape"));

  producer_init(&p, NULL, TB_DTYPE_U8, 2, shape, NULL);
  assert_import_fails(&p, TB_ERR_INVALID_ARGUMENT);
  assert_non_null(strstr(tb_last_error(), "data"));
}

static void import_rejects_layouts_that_wrap_around(void **state) {
  (void)state;
  const int64_t shape[] = {4}, backwards[] = {-1};
  producer p;
  /* Element 0 at address 16 with three u64 elements below it. */
  producer_init(&p, (void *)(uintptr_t)16, TB_DTYPE_U64, 1, shape, backwards);
  assert_import_fails(&p, TB_ERR_INVALID_ARGUMENT);
  assert_non_null(strstr(tb_last_error(), "address space"));

  /* Elements past the top of the address space. */
  producer_init(&p, (void *)(UINTPTR_MAX - 8), TB_DTYPE_U64, 1, shape, NULL);
  assert_import_fails(&p, TB_ERR_INVALID_ARGUMENT);

  /* byte_offset that overflows the data pointer. */
  uint8_t byte = 0;
  const int64_t one[] = {1};
  producer_init(&p, &byte, TB_DTYPE_U8, 1, one, NULL);
  p.versioned.dl_tensor.byte_offset = UINT64_MAX;
  assert_import_fails(&p, TB_ERR_INVALID_ARGUMENT);
}

/* ---- round trips ----------------------------------------------------------
 */

static void round_trip_is_zero_copy(void **state) {
  (void)state;
  const int64_t shape[] = {3, 4};
  tb_tensor *tensor = tb_test_arange(TB_DTYPE_F32, 2, shape, TB_MEMORY_SHM);
  int64_t live = tb_live_objects();
  tb_dlpack_managed_tensor_versioned *managed = NULL;
  TB_ASSERT_OK(tb_tensor_to_dlpack(&managed, tensor, 0));
  tb_tensor *back = NULL;
  TB_ASSERT_OK(tb_tensor_from_dlpack(&back, managed));
  assert_ptr_equal(element0(back), element0(tensor));
  assert_int_not_equal(tb_tensor_buffer_id(back), tb_tensor_buffer_id(tensor));
  TB_ASSERT_OK(tb_tensor_set_f64(back, 2, (const int64_t[]){2, 3}, 0.5));
  double value = 0;
  TB_ASSERT_OK(tb_tensor_get_f64(&value, tensor, 2, (const int64_t[]){2, 3}));
  TB_ASSERT_F64_EQUAL(value, 0.5);
  tb_tensor_unref(tensor);
  TB_ASSERT_OK(tb_tensor_get_f64(&value, back, 2, (const int64_t[]){1, 1}));
  TB_ASSERT_F64_EQUAL(value, 5.0);
  tb_tensor_unref(back); /* deletes the export, which drops the original */
  assert_int_equal(tb_live_objects(), live - 2); /* tensor and buffer */
}

static void legacy_round_trip_is_zero_copy(void **state) {
  (void)state;
  const int64_t shape[] = {5};
  tb_tensor *tensor = tb_test_arange(TB_DTYPE_BOOL, 1, shape, TB_MEMORY_HEAP);
  tb_dlpack_managed_tensor *managed = NULL;
  TB_ASSERT_OK(tb_tensor_to_dlpack_legacy(&managed, tensor));
  tb_tensor *back = NULL;
  TB_ASSERT_OK(tb_tensor_from_dlpack_legacy(&back, managed));
  assert_int_equal(tb_tensor_dtype(back), TB_DTYPE_BOOL);
  assert_ptr_equal(element0(back), element0(tensor));
  tb_tensor_unref(tensor);
  tb_tensor_unref(back);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      TB_TEST(constants_match_dlpack),
      TB_TEST(export_describes_every_dtype),
      TB_TEST(export_keeps_the_memory_after_the_tensor_goes),
      TB_TEST(export_shares_the_bytes),
      TB_TEST(export_keeps_view_strides),
      TB_TEST(export_keeps_zero_strides),
      TB_TEST(export_refuses_negative_strides),
      TB_TEST(export_of_empty_and_scalar_tensors),
      TB_TEST(export_marks_read_only_memory),
      TB_TEST(export_read_only_on_request),
      TB_TEST(export_rejects_bad_arguments),
      TB_TEST(export_of_cuda_memory_gives_its_device_address),
      TB_TEST(legacy_export_describes_the_tensor),
      TB_TEST(legacy_export_refuses_read_only_memory),
      TB_TEST(import_takes_every_dtype),
      TB_TEST(import_shares_the_bytes),
      TB_TEST(import_follows_strides_and_byte_offset),
      TB_TEST(import_of_empty_and_scalar_tensors),
      TB_TEST(import_honours_the_read_only_flag),
      TB_TEST(import_accepts_newer_minor_versions),
      TB_TEST(import_deletes_when_the_last_reference_goes),
      TB_TEST(import_deletes_on_the_thread_that_drops_it),
      TB_TEST(import_with_no_deleter),
      TB_TEST(legacy_import_shares_and_deletes),
      TB_TEST(import_rejects_null_arguments),
      TB_TEST(import_rejects_other_major_versions),
      TB_TEST(import_rejects_other_devices),
      TB_TEST(import_rejects_other_types),
      TB_TEST(import_rejects_bad_shapes),
      TB_TEST(import_rejects_missing_pointers),
      TB_TEST(import_rejects_layouts_that_wrap_around),
      TB_TEST(round_trip_is_zero_copy),
      TB_TEST(legacy_round_trip_is_zero_copy),
  };
  return TB_RUN_TESTS(tests);
}
