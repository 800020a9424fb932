/* Tensors: creation in every dtype and memory kind, shape and alignment
 * checks, views of a buffer, references, getters and names. */
#include "tb_test.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const tb_dtype all_dtypes[] = {
    TB_DTYPE_BOOL, TB_DTYPE_U8,  TB_DTYPE_I8,  TB_DTYPE_U16, TB_DTYPE_I16,
    TB_DTYPE_U32,  TB_DTYPE_I32, TB_DTYPE_U64, TB_DTYPE_I64, TB_DTYPE_F16,
    TB_DTYPE_BF16, TB_DTYPE_F32, TB_DTYPE_F64,
};
#define NDTYPES (sizeof all_dtypes / sizeof *all_dtypes)

static bool all_zero(const uint8_t *bytes, size_t size) {
  for (size_t i = 0; i < size; i++)
    if (bytes[i] != 0)
      return false;
  return true;
}

static void new_in_every_dtype_and_memory(void **state) {
  (void)state;
  const tb_memory kinds[] = {TB_MEMORY_HEAP, TB_MEMORY_SHM, TB_MEMORY_AUTO};
  const int64_t shape[] = {2, 3, 4};
  for (size_t k = 0; k < sizeof kinds / sizeof *kinds; k++) {
    tb_alloc_options opts = tb_test_options(kinds[k]);
    for (size_t d = 0; d < NDTYPES; d++) {
      tb_tensor *tensor = NULL;
      TB_ASSERT_OK(tb_tensor_new(&tensor, all_dtypes[d], 3, shape, &opts));
      size_t elem = tb_dtype_size(all_dtypes[d]);
      assert_int_equal(tb_tensor_dtype(tensor), all_dtypes[d]);
      assert_int_equal(tb_tensor_ndim(tensor), 3);
      assert_int_equal(tb_tensor_dim(tensor, 0), 2);
      assert_int_equal(tb_tensor_dim(tensor, 1), 3);
      assert_int_equal(tb_tensor_dim(tensor, 2), 4);
      assert_int_equal(tb_tensor_stride(tensor, 0), 12);
      assert_int_equal(tb_tensor_stride(tensor, 1), 4);
      assert_int_equal(tb_tensor_stride(tensor, 2), 1);
      assert_int_equal(tb_tensor_numel(tensor), 24);
      assert_int_equal(tb_tensor_nbytes(tensor), 24 * elem);
      assert_int_equal(tb_tensor_offset(tensor), 0);
      assert_true(tb_tensor_is_contiguous(tensor));
      assert_false(tb_tensor_read_only(tensor));
      assert_null(tb_tensor_name(tensor));
      assert_int_equal(tb_tensor_quantization_count(tensor), 0);
      if (kinds[k] != TB_MEMORY_AUTO)
        assert_int_equal(tb_tensor_memory(tensor), kinds[k]);
      else
        assert_true(tb_tensor_memory(tensor) != TB_MEMORY_AUTO);

      tb_buffer *buffer = tb_tensor_buffer(tensor);
      assert_non_null(buffer);
      assert_int_equal(tb_buffer_id(buffer), tb_tensor_buffer_id(tensor));
      assert_int_equal(tb_buffer_size(buffer), 24 * elem);
      assert_int_equal(tb_buffer_memory(buffer), tb_tensor_memory(tensor));
      tb_buffer_unref(buffer);

      uint8_t bytes[24 * 8];
      memset(bytes, 0xee, sizeof bytes);
      TB_ASSERT_OK(tb_tensor_read_bytes(bytes, sizeof bytes, tensor));
      assert_true(all_zero(bytes, 24 * elem));
      tb_tensor_unref(tensor);
    }
  }
}

static void new_in_unavailable_memory_is_unsupported(void **state) {
  (void)state;
  const tb_memory kinds[] = {TB_MEMORY_DMA, TB_MEMORY_CUDA,
                             TB_MEMORY_CUDA_HOST, TB_MEMORY_FILE};
  const int64_t shape[] = {16};
  for (size_t k = 0; k < sizeof kinds / sizeof *kinds; k++) {
    tb_alloc_options opts = tb_test_options(kinds[k]);
    tb_tensor *tensor = TB_SENTINEL(tb_tensor);
    if (tb_memory_available(kinds[k])) {
      print_message("%s memory is available here: expecting success\n",
                    tb_memory_name(kinds[k]));
      TB_ASSERT_OK(tb_tensor_new(&tensor, TB_DTYPE_U8, 1, shape, &opts));
      assert_int_equal(tb_tensor_memory(tensor), kinds[k]);
      tb_tensor_unref(tensor);
      continue;
    }
    TB_ASSERT_STATUS(tb_tensor_new(&tensor, TB_DTYPE_U8, 1, shape, &opts),
                     TB_ERR_UNSUPPORTED);
    assert_ptr_equal(tensor, TB_SENTINEL(tb_tensor));
  }
}

static void new_scalar(void **state) {
  (void)state;
  tb_tensor *scalar;
  TB_ASSERT_OK(tb_tensor_new(&scalar, TB_DTYPE_F64, 0, NULL, NULL));
  assert_int_equal(tb_tensor_ndim(scalar), 0);
  assert_int_equal(tb_tensor_numel(scalar), 1);
  assert_int_equal(tb_tensor_nbytes(scalar), 8);
  assert_int_equal(tb_tensor_dim(scalar, 0), 0);
  assert_true(tb_tensor_is_contiguous(scalar));
  TB_ASSERT_OK(tb_tensor_set_f64(scalar, 0, NULL, 2.5));
  double value = 0;
  TB_ASSERT_OK(tb_tensor_get_f64(&value, scalar, 0, NULL));
  TB_ASSERT_F64_EQUAL(value, 2.5);
  tb_tensor_unref(scalar);

  /* A shape pointer with ndim 0 is ignored. */
  const int64_t ignored[] = {-5};
  TB_ASSERT_OK(tb_tensor_new(&scalar, TB_DTYPE_U8, 0, ignored, NULL));
  assert_int_equal(tb_tensor_numel(scalar), 1);
  tb_tensor_unref(scalar);
}

static void new_with_zero_size_dims(void **state) {
  (void)state;
  const tb_memory kinds[] = {TB_MEMORY_HEAP, TB_MEMORY_SHM};
  const int64_t shapes[][3] = {{3, 0, 2}, {0, 1, 1}, {4, 5, 0}};
  for (size_t k = 0; k < sizeof kinds / sizeof *kinds; k++) {
    tb_alloc_options opts = tb_test_options(kinds[k]);
    for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++) {
      tb_tensor *empty;
      TB_ASSERT_OK(tb_tensor_new(&empty, TB_DTYPE_I32, 3, shapes[s], &opts));
      assert_int_equal(tb_tensor_numel(empty), 0);
      assert_int_equal(tb_tensor_nbytes(empty), 0);
      assert_true(tb_tensor_is_contiguous(empty));
      for (size_t d = 0; d < 3; d++)
        assert_int_equal(tb_tensor_dim(empty, d), shapes[s][d]);
      TB_ASSERT_OK(tb_tensor_read_bytes(NULL, 0, empty));
      TB_ASSERT_OK(tb_tensor_write_bytes(empty, NULL, 0));
      tb_map *map;
      TB_ASSERT_OK(tb_tensor_map(&map, empty, TB_MAP_READ | TB_MAP_WRITE));
      tb_map_free(map);
      tb_tensor_unref(empty);
    }
  }
}

static void new_with_sixteen_dims(void **state) {
  (void)state;
  int64_t shape[TB_MAX_DIMS];
  for (size_t i = 0; i < TB_MAX_DIMS; i++)
    shape[i] = i % 5 == 0 ? 2 : 1; /* dims 0, 5, 10, 15 are 2 */
  tb_tensor *tensor;
  TB_ASSERT_OK(tb_tensor_new(&tensor, TB_DTYPE_U16, TB_MAX_DIMS, shape, NULL));
  assert_int_equal(tb_tensor_ndim(tensor), TB_MAX_DIMS);
  assert_int_equal(tb_tensor_numel(tensor), 16);
  assert_int_equal(tb_tensor_stride(tensor, 15), 1);
  assert_int_equal(tb_tensor_stride(tensor, 10), 2);
  assert_int_equal(tb_tensor_stride(tensor, 5), 4);
  assert_int_equal(tb_tensor_stride(tensor, 0), 8);
  assert_int_equal(tb_tensor_dim(tensor, TB_MAX_DIMS), 0);
  int64_t last[TB_MAX_DIMS];
  for (size_t i = 0; i < TB_MAX_DIMS; i++)
    last[i] = shape[i] - 1;
  TB_ASSERT_OK(tb_tensor_set_i64(tensor, TB_MAX_DIMS, last, 65535));
  uint16_t bytes[16];
  TB_ASSERT_OK(tb_tensor_read_bytes(bytes, sizeof bytes, tensor));
  assert_int_equal(bytes[15], 65535);
  tb_tensor_unref(tensor);
}

static void new_rejects_bad_shapes(void **state) {
  (void)state;
  tb_tensor *tensor = TB_SENTINEL(tb_tensor);
  TB_ASSERT_STATUS(tb_tensor_new(&tensor, TB_DTYPE_U8, TB_MAX_DIMS + 1,
                                 tb_test_too_many_dims, NULL),
                   TB_ERR_SHAPE);
  TB_ASSERT_STATUS(tb_tensor_new(&tensor, TB_DTYPE_U8, SIZE_MAX,
                                 tb_test_too_many_dims, NULL),
                   TB_ERR_SHAPE);

  const int64_t negative[][3] = {{-1, 2, 3}, {2, -3, 3}, {2, 3, INT64_MIN}};
  for (size_t i = 0; i < 3; i++) {
    TB_ASSERT_STATUS(tb_tensor_new(&tensor, TB_DTYPE_U8, 3, negative[i], NULL),
                     TB_ERR_SHAPE);
    char where[16];
    snprintf(where, sizeof where, "shape[%zu]", i);
    assert_non_null(strstr(tb_last_error(), where));
  }

  TB_ASSERT_STATUS(tb_tensor_new(&tensor, TB_DTYPE_U8, 2, NULL, NULL),
                   TB_ERR_INVALID_ARGUMENT);
  TB_ASSERT_STATUS(
      tb_tensor_new(NULL, TB_DTYPE_U8, 1, (const int64_t[]){4}, NULL),
      TB_ERR_INVALID_ARGUMENT);
  assert_ptr_equal(tensor, TB_SENTINEL(tb_tensor));
}

static void new_rejects_bad_dtypes(void **state) {
  (void)state;
  tb_tensor *tensor = TB_SENTINEL(tb_tensor);
  const int64_t shape[] = {4};
  const int bad[] = {TB_DTYPE_INVALID, TB_DTYPE_F64 + 1, -1, 1000};
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
    TB_ASSERT_STATUS(tb_tensor_new(&tensor, (tb_dtype)bad[i], 1, shape, NULL),
                     TB_ERR_DTYPE);
  assert_ptr_equal(tensor, TB_SENTINEL(tb_tensor));
}

static void new_rejects_overflowing_shapes(void **state) {
  (void)state;
  const struct {
    tb_dtype dtype;
    size_t ndim;
    int64_t shape[3];
  } overflowing[] = {
      {TB_DTYPE_U8, 2, {INT64_MAX, 2}},
      /* The element count overflows uint64, wrapping to exactly 0. */
      {TB_DTYPE_U8, 2, {INT64_C(1) << 32, INT64_C(1) << 32}},
      {TB_DTYPE_U8, 3, {INT64_C(1) << 16, INT64_C(1) << 24, INT64_C(1) << 24}},
      {TB_DTYPE_U8, 3, {INT64_MAX, INT64_MAX, INT64_MAX}},
      /* 2^63 bytes: one more than a byte count can be. */
      {TB_DTYPE_U8, 3, {INT64_C(1) << 21, INT64_C(1) << 21, INT64_C(1) << 21}},
      /* The count fits; times the element size it does not. */
      {TB_DTYPE_F32, 1, {INT64_MAX / 4 + 1}},
      {TB_DTYPE_F64, 1, {INT64_MAX}},
      {TB_DTYPE_U16, 2, {INT64_C(1) << 31, INT64_C(1) << 31}},
  };
  for (size_t i = 0; i < sizeof overflowing / sizeof *overflowing; i++) {
    tb_tensor *tensor = TB_SENTINEL(tb_tensor);
    TB_ASSERT_STATUS(tb_tensor_new(&tensor, overflowing[i].dtype,
                                   overflowing[i].ndim, overflowing[i].shape,
                                   NULL),
                     TB_ERR_SHAPE);
    assert_ptr_equal(tensor, TB_SENTINEL(tb_tensor));
  }
}

static void zero_dim_makes_any_product_empty(void **state) {
  (void)state;
  const int64_t shapes[][3] = {{0, INT64_MAX, INT64_MAX},
                               {INT64_MAX, INT64_MAX, 0}};
  for (size_t i = 0; i < 2; i++) {
    tb_tensor *tensor;
    TB_ASSERT_OK(tb_tensor_new(&tensor, TB_DTYPE_F64, 3, shapes[i], NULL));
    assert_int_equal(tb_tensor_numel(tensor), 0);
    assert_int_equal(tb_tensor_nbytes(tensor), 0);
    assert_true(tb_tensor_is_contiguous(tensor));
    /* Views of it stay empty, whatever offsets its huge dims suggest. */
    tb_tensor *view;
    size_t huge_axis = shapes[i][0] == 0 ? 1 : 0;
    TB_ASSERT_OK(
        tb_tensor_slice(&view, tensor, huge_axis, 5, INT64_MAX - 1, 3));
    assert_int_equal(tb_tensor_numel(view), 0);
    TB_ASSERT_OK(tb_tensor_read_bytes(NULL, 0, view));
    tb_tensor_unref(view);
    const int64_t swapped[] = {INT64_MAX, 0, INT64_MAX};
    TB_ASSERT_OK(tb_tensor_reshape(&view, tensor, 3, swapped));
    assert_int_equal(tb_tensor_numel(view), 0);
    tb_tensor_unref(view);
    /* No index is inside an empty tensor. */
    const int64_t index[] = {0, 0, 0};
    double value = 7;
    TB_ASSERT_STATUS(tb_tensor_get_f64(&value, tensor, 3, index),
                     TB_ERR_OUT_OF_RANGE);
    TB_ASSERT_F64_EQUAL(value, 7);
    tb_tensor_unref(tensor);
  }
}

static void new_too_large_for_memory_is_no_memory(void **state) {
  (void)state;
  /* A legal shape of 2^63 - 1 bytes: no machine can back it. */
  const int64_t shape[] = {INT64_MAX};
  const tb_memory kinds[] = {TB_MEMORY_HEAP, TB_MEMORY_SHM};
  for (size_t k = 0; k < sizeof kinds / sizeof *kinds; k++) {
    tb_alloc_options opts = tb_test_options(kinds[k]);
    tb_tensor *tensor = TB_SENTINEL(tb_tensor);
    TB_ASSERT_STATUS(tb_tensor_new(&tensor, TB_DTYPE_U8, 1, shape, &opts),
                     TB_ERR_NO_MEMORY);
    assert_ptr_equal(tensor, TB_SENTINEL(tb_tensor));
  }
}

static uintptr_t mapped_address(tb_tensor *tensor) {
  tb_map *map;
  TB_ASSERT_OK(tb_tensor_map(&map, tensor, TB_MAP_READ | TB_MAP_WRITE));
  uintptr_t address = (uintptr_t)tb_map_data(map);
  tb_map_free(map);
  return address;
}

static void alignment_is_honoured(void **state) {
  (void)state;
  const struct {
    uint64_t alignment;
    uint32_t flags;
    uint64_t expected;
  } cases[] = {
      {0, 0, 64},
      {1, 0, 1},
      {64, 0, 64},
      {4096, 0, 4096},
      {UINT64_C(2) << 20, 0, UINT64_C(2) << 20},
      {0, TB_ALLOC_HUGE_PAGES, UINT64_C(2) << 20},
      {64, TB_ALLOC_HUGE_PAGES, UINT64_C(2) << 20},
      {UINT64_C(1) << 30, 0, UINT64_C(1) << 30},
  };
  const tb_memory kinds[] = {TB_MEMORY_HEAP, TB_MEMORY_SHM};
  /* Small blocks and blocks past the heap's switch to mmap. */
  const int64_t lengths[] = {100, 1 << 20};
  for (size_t k = 0; k < sizeof kinds / sizeof *kinds; k++)
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++)
      for (size_t l = 0; l < 2; l++) {
        tb_alloc_options opts = tb_test_options(kinds[k]);
        opts.alignment = cases[c].alignment;
        opts.flags = cases[c].flags;
        tb_tensor *tensor;
        TB_ASSERT_OK(
            tb_tensor_new(&tensor, TB_DTYPE_U8, 1, &lengths[l], &opts));
        uintptr_t address = mapped_address(tensor);
        if (address % cases[c].expected != 0)
          fail_msg("%s memory of %lld bytes, alignment %llu flags 0x%x: "
                   "address %p",
                   tb_memory_name(kinds[k]), (long long)lengths[l],
                   (unsigned long long)cases[c].alignment, cases[c].flags,
                   (void *)address);
        /* The whole block is usable. */
        const int64_t last[] = {lengths[l] - 1};
        TB_ASSERT_OK(tb_tensor_set_i64(tensor, 1, last, 255));
        tb_tensor_unref(tensor);
      }
}

static void alignment_and_flags_are_checked(void **state) {
  (void)state;
  const uint64_t bad_alignments[] = {3,
                                     48,
                                     4095,
                                     (UINT64_C(1) << 30) + 1,
                                     UINT64_C(1) << 31,
                                     UINT64_C(1) << 63,
                                     UINT64_MAX};
  const int64_t shape[] = {16};
  for (size_t i = 0; i < sizeof bad_alignments / sizeof *bad_alignments; i++) {
    tb_alloc_options opts = TB_ALLOC_OPTIONS_INIT;
    opts.alignment = bad_alignments[i];
    tb_tensor *tensor = TB_SENTINEL(tb_tensor);
    TB_ASSERT_STATUS(tb_tensor_new(&tensor, TB_DTYPE_U8, 1, shape, &opts),
                     TB_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(tb_last_error(), "alignment"));
    assert_ptr_equal(tensor, TB_SENTINEL(tb_tensor));
  }
  const uint32_t bad_flags[] = {0x4, TB_ALLOC_HUGE_PAGES | 0x8, 0x80000000u};
  for (size_t i = 0; i < sizeof bad_flags / sizeof *bad_flags; i++) {
    tb_alloc_options opts = TB_ALLOC_OPTIONS_INIT;
    opts.flags = bad_flags[i];
    tb_tensor *tensor = TB_SENTINEL(tb_tensor);
    TB_ASSERT_STATUS(tb_tensor_new(&tensor, TB_DTYPE_U8, 1, shape, &opts),
                     TB_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(tb_last_error(), "flags"));
    assert_ptr_equal(tensor, TB_SENTINEL(tb_tensor));
  }
  tb_alloc_options opts = TB_ALLOC_OPTIONS_INIT;
  opts.version = 7;
  tb_tensor *tensor = TB_SENTINEL(tb_tensor);
  TB_ASSERT_STATUS(tb_tensor_new(&tensor, TB_DTYPE_U8, 1, shape, &opts),
                   TB_ERR_VERSION);
  assert_ptr_equal(tensor, TB_SENTINEL(tb_tensor));
}

static void names_from_options_and_set_later(void **state) {
  (void)state;
  char source[] = "frames";
  tb_alloc_options opts = TB_ALLOC_OPTIONS_INIT;
  opts.name = source;
  const int64_t shape[] = {2};
  const tb_memory kinds[] = {TB_MEMORY_HEAP, TB_MEMORY_SHM};
  for (size_t k = 0; k < 2; k++) {
    opts.memory = kinds[k];
    tb_tensor *tensor;
    TB_ASSERT_OK(tb_tensor_new(&tensor, TB_DTYPE_U8, 1, shape, &opts));
    source[0] = 'F'; /* the name was copied */
    assert_string_equal(tb_tensor_name(tensor), "frames");
    source[0] = 'f';

    TB_ASSERT_OK(tb_tensor_set_name(tensor, "renamed"));
    assert_string_equal(tb_tensor_name(tensor), "renamed");
    /* Setting a tensor's own name string must not read freed memory. */
    TB_ASSERT_OK(tb_tensor_set_name(tensor, tb_tensor_name(tensor)));
    assert_string_equal(tb_tensor_name(tensor), "renamed");
    TB_ASSERT_OK(tb_tensor_set_name(tensor, ""));
    assert_string_equal(tb_tensor_name(tensor), "");
    TB_ASSERT_OK(tb_tensor_set_name(tensor, NULL));
    assert_null(tb_tensor_name(tensor));
    tb_tensor_unref(tensor);
  }
  TB_ASSERT_STATUS(tb_tensor_set_name(NULL, "x"), TB_ERR_INVALID_ARGUMENT);
  assert_null(tb_tensor_name(NULL));
}

/* A buffer of 12 f32 holding 0..11. */
static tb_buffer *buffer_of_twelve(void) {
  const int64_t shape[] = {12};
  tb_tensor *source = tb_test_arange(TB_DTYPE_F32, 1, shape, TB_MEMORY_HEAP);
  tb_buffer *buffer = tb_tensor_buffer(source);
  tb_tensor_unref(source);
  return buffer;
}

static double f64_at(tb_tensor *tensor, size_t nindex, const int64_t *index) {
  double value = -1;
  TB_ASSERT_OK(tb_tensor_get_f64(&value, tensor, nindex, index));
  return value;
}

static void from_buffer_with_explicit_strides(void **state) {
  (void)state;
  tb_buffer *buffer = buffer_of_twelve();
  /* Column-major view of a 3x4 row-major matrix: the transpose. */
  const int64_t shape[] = {4, 3}, strides[] = {1, 4};
  tb_tensor *t;
  TB_ASSERT_OK(
      tb_tensor_from_buffer(&t, buffer, 0, TB_DTYPE_F32, 2, shape, strides));
  assert_int_equal(tb_tensor_stride(t, 0), 1);
  assert_int_equal(tb_tensor_stride(t, 1), 4);
  assert_false(tb_tensor_is_contiguous(t));
  assert_int_equal(tb_tensor_buffer_id(t), tb_buffer_id(buffer));
  assert_int_equal(tb_tensor_memory(t), TB_MEMORY_HEAP);
  for (int64_t i = 0; i < 4; i++)
    for (int64_t j = 0; j < 3; j++) {
      const int64_t index[] = {i, j};
      TB_ASSERT_F64_EQUAL(f64_at(t, 2, index), (double)(i + 4 * j));
    }
  tb_tensor_unref(t);

  /* Row-major strides given explicitly are contiguous. */
  const int64_t rows[] = {3, 4}, row_major[] = {4, 1};
  TB_ASSERT_OK(
      tb_tensor_from_buffer(&t, buffer, 0, TB_DTYPE_F32, 2, rows, row_major));
  assert_true(tb_tensor_is_contiguous(t));
  tb_tensor_unref(t);
  tb_buffer_unref(buffer);
}

static void from_buffer_with_negative_and_zero_strides(void **state) {
  (void)state;
  tb_buffer *buffer = buffer_of_twelve();
  /* Reversed: element 0 is the last float. */
  const int64_t twelve[] = {12}, backwards[] = {-1};
  tb_tensor *t;
  TB_ASSERT_OK(tb_tensor_from_buffer(&t, buffer, 11 * 4, TB_DTYPE_F32, 1,
                                     twelve, backwards));
  assert_int_equal(tb_tensor_offset(t), 44);
  for (int64_t i = 0; i < 12; i++) {
    const int64_t index[] = {i};
    TB_ASSERT_F64_EQUAL(f64_at(t, 1, index), (double)(11 - i));
  }
  tb_tensor_unref(t);

  /* Broadcast: every row is the same four floats. */
  const int64_t shape[] = {1000, 4}, broadcast[] = {0, 1};
  TB_ASSERT_OK(tb_tensor_from_buffer(&t, buffer, 4 * 4, TB_DTYPE_F32, 2, shape,
                                     broadcast));
  const int64_t index[] = {999, 3};
  TB_ASSERT_F64_EQUAL(f64_at(t, 2, index), 7.0);
  assert_int_equal(tb_tensor_numel(t), 4000);
  tb_tensor_unref(t);

  /* An offset view. */
  const int64_t two[] = {2};
  TB_ASSERT_OK(
      tb_tensor_from_buffer(&t, buffer, 8, TB_DTYPE_F32, 1, two, NULL));
  const int64_t second[] = {1};
  TB_ASSERT_F64_EQUAL(f64_at(t, 1, second), 3.0);
  tb_tensor_unref(t);
  tb_buffer_unref(buffer);
}

static void from_buffer_rejects_elements_outside(void **state) {
  (void)state;
  tb_buffer *buffer = buffer_of_twelve(); /* 48 bytes */
  const struct {
    uint64_t offset;
    size_t ndim;
    int64_t shape[2];
    int64_t strides[2];
    bool row_major;
  } outside[] = {
      {0, 1, {13}, {0}, true},               /* one element too many */
      {4, 1, {12}, {0}, true},               /* shifted by one */
      {48, 1, {1}, {0}, true},               /* starts at the end */
      {49, 1, {0}, {0}, true},               /* offset beyond, even empty */
      {UINT64_MAX, 1, {1}, {0}, true},       /* offset wraps */
      {10 * 4, 1, {12}, {-1}, false},        /* reversed, runs off the front */
      {0, 2, {3, 4}, {5, 1}, false},         /* row pitch too long */
      {0, 2, {2, 2}, {INT64_MAX, 1}, false}, /* stride overflows */
      {44, 2, {2, 2}, {INT64_MIN, 1}, false},
  };
  for (size_t i = 0; i < sizeof outside / sizeof *outside; i++) {
    tb_tensor *t = TB_SENTINEL(tb_tensor);
    TB_ASSERT_STATUS(
        tb_tensor_from_buffer(&t, buffer, outside[i].offset, TB_DTYPE_F32,
                              outside[i].ndim, outside[i].shape,
                              outside[i].row_major ? NULL : outside[i].strides),
        TB_ERR_OUT_OF_RANGE);
    assert_ptr_equal(t, TB_SENTINEL(tb_tensor));
  }
  /* Empty views may sit at the very end. */
  tb_tensor *t;
  const int64_t none[] = {0};
  TB_ASSERT_OK(
      tb_tensor_from_buffer(&t, buffer, 48, TB_DTYPE_F32, 1, none, NULL));
  assert_int_equal(tb_tensor_numel(t), 0);
  tb_tensor_unref(t);
  tb_buffer_unref(buffer);
}

static void from_buffer_rejects_bad_arguments(void **state) {
  (void)state;
  tb_buffer *buffer = buffer_of_twelve();
  tb_tensor *t = TB_SENTINEL(tb_tensor);
  const int64_t shape[] = {4}, negative[] = {-4};
  TB_ASSERT_STATUS(
      tb_tensor_from_buffer(NULL, buffer, 0, TB_DTYPE_F32, 1, shape, NULL),
      TB_ERR_INVALID_ARGUMENT);
  TB_ASSERT_STATUS(
      tb_tensor_from_buffer(&t, NULL, 0, TB_DTYPE_F32, 1, shape, NULL),
      TB_ERR_INVALID_ARGUMENT);
  TB_ASSERT_STATUS(
      tb_tensor_from_buffer(&t, buffer, 0, TB_DTYPE_F32, 1, NULL, NULL),
      TB_ERR_INVALID_ARGUMENT);
  TB_ASSERT_STATUS(
      tb_tensor_from_buffer(&t, buffer, 0, TB_DTYPE_INVALID, 1, shape, NULL),
      TB_ERR_DTYPE);
  TB_ASSERT_STATUS(
      tb_tensor_from_buffer(&t, buffer, 0, TB_DTYPE_F32, 1, negative, NULL),
      TB_ERR_SHAPE);
  TB_ASSERT_STATUS(tb_tensor_from_buffer(&t, buffer, 0, TB_DTYPE_F32,
                                         TB_MAX_DIMS + 1, tb_test_too_many_dims,
                                         NULL),
                   TB_ERR_SHAPE);
  /* A product that wraps to exactly 0 is not an empty shape. */
  const int64_t wrapping[] = {INT64_C(1) << 32, INT64_C(1) << 32};
  TB_ASSERT_STATUS(
      tb_tensor_from_buffer(&t, buffer, 0, TB_DTYPE_F32, 2, wrapping, NULL),
      TB_ERR_SHAPE);
  assert_ptr_equal(t, TB_SENTINEL(tb_tensor));
  tb_buffer_unref(buffer);
}

static void from_buffer_holds_the_buffer(void **state) {
  (void)state;
  tb_buffer *buffer = buffer_of_twelve();
  uint64_t id = tb_buffer_id(buffer);
  const int64_t shape[] = {12};
  tb_tensor *t;
  TB_ASSERT_OK(
      tb_tensor_from_buffer(&t, buffer, 0, TB_DTYPE_F32, 1, shape, NULL));
  tb_buffer_unref(buffer);
  assert_true(tb_buffer_alive(id));
  const int64_t index[] = {11};
  TB_ASSERT_F64_EQUAL(f64_at(t, 1, index), 11.0);
  tb_tensor_unref(t);
  assert_false(tb_buffer_alive(id));
}

static void ref_unref_and_buffer_getter(void **state) {
  (void)state;
  assert_null(tb_tensor_ref(NULL));
  tb_tensor_unref(NULL);
  tb_tensor *t;
  const int64_t shape[] = {3};
  TB_ASSERT_OK(tb_tensor_new(&t, TB_DTYPE_I8, 1, shape, NULL));
  int64_t start = tb_live_objects();
  assert_ptr_equal(tb_tensor_ref(t), t);
  tb_buffer *buffer = tb_tensor_buffer(t);
  assert_int_equal(tb_live_objects(), start); /* refs, not new handles */
  tb_tensor_unref(t);
  tb_tensor_unref(t);
  /* The buffer reference outlives the tensor. */
  assert_int_equal(tb_live_objects(), start - 1);
  assert_true(tb_buffer_alive(tb_buffer_id(buffer)));
  tb_buffer_unref(buffer);
}

static void getters_of_null_and_of_axes_past_the_end(void **state) {
  (void)state;
  assert_int_equal(tb_tensor_dtype(NULL), TB_DTYPE_INVALID);
  assert_int_equal(tb_tensor_ndim(NULL), 0);
  assert_int_equal(tb_tensor_dim(NULL, 0), 0);
  assert_int_equal(tb_tensor_stride(NULL, 0), 0);
  assert_int_equal(tb_tensor_numel(NULL), 0);
  assert_int_equal(tb_tensor_nbytes(NULL), 0);
  assert_int_equal(tb_tensor_offset(NULL), 0);
  assert_false(tb_tensor_is_contiguous(NULL));
  assert_int_equal(tb_tensor_memory(NULL), TB_MEMORY_AUTO);
  assert_false(tb_tensor_read_only(NULL));
  assert_int_equal(tb_tensor_buffer_id(NULL), 0);
  assert_null(tb_tensor_buffer(NULL));
  assert_false(tb_tensor_shares_memory(NULL, NULL));
  assert_null(tb_tensor_name(NULL));
  assert_int_equal(tb_tensor_quantization_count(NULL), 0);
  assert_int_equal(tb_tensor_quantization_axis(NULL), -1);

  tb_tensor *t;
  const int64_t shape[] = {5, 6};
  TB_ASSERT_OK(tb_tensor_new(&t, TB_DTYPE_U8, 2, shape, NULL));
  assert_int_equal(tb_tensor_dim(t, 2), 0);
  assert_int_equal(tb_tensor_stride(t, 2), 0);
  assert_int_equal(tb_tensor_dim(t, SIZE_MAX), 0);
  assert_int_equal(tb_tensor_stride(t, SIZE_MAX), 0);
  tb_tensor_unref(t);
}

static void contiguity_ignores_unit_dims(void **state) {
  (void)state;
  tb_buffer *buffer = buffer_of_twelve();
  /* A dim of size 1 may carry any stride. */
  const int64_t shape[] = {3, 1, 4}, strides[] = {4, 99, 1};
  tb_tensor *t;
  TB_ASSERT_OK(
      tb_tensor_from_buffer(&t, buffer, 0, TB_DTYPE_F32, 3, shape, strides));
  assert_true(tb_tensor_is_contiguous(t));
  tb_tensor_unref(t);
  /* A broadcast dim is not contiguous. */
  const int64_t repeated[] = {2, 4}, broadcast[] = {0, 1};
  TB_ASSERT_OK(tb_tensor_from_buffer(&t, buffer, 0, TB_DTYPE_F32, 2, repeated,
                                     broadcast));
  assert_false(tb_tensor_is_contiguous(t));
  tb_tensor_unref(t);
  tb_buffer_unref(buffer);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      TB_TEST(new_in_every_dtype_and_memory),
      TB_TEST(new_in_unavailable_memory_is_unsupported),
      TB_TEST(new_scalar),
      TB_TEST(new_with_zero_size_dims),
      TB_TEST(new_with_sixteen_dims),
      TB_TEST(new_rejects_bad_shapes),
      TB_TEST(new_rejects_bad_dtypes),
      TB_TEST(new_rejects_overflowing_shapes),
      TB_TEST(zero_dim_makes_any_product_empty),
      TB_TEST(new_too_large_for_memory_is_no_memory),
      TB_TEST(alignment_is_honoured),
      TB_TEST(alignment_and_flags_are_checked),
      TB_TEST(names_from_options_and_set_later),
      TB_TEST(from_buffer_with_explicit_strides),
      TB_TEST(from_buffer_with_negative_and_zero_strides),
      TB_TEST(from_buffer_rejects_elements_outside),
      TB_TEST(from_buffer_rejects_bad_arguments),
      TB_TEST(from_buffer_holds_the_buffer),
      TB_TEST(ref_unref_and_buffer_getter),
      TB_TEST(getters_of_null_and_of_axes_past_the_end),
      TB_TEST(contiguity_ignores_unit_dims),
  };
  return TB_RUN_TESTS(tests);
}
