/* Views: reshape, slice and shares_memory. */
#include "tb_test.h"

#include <string.h>

/* A 2x3x4 i32 tensor holding 0..23. */
static tb_tensor *arange_234(void) {
  const int64_t shape[] = {2, 3, 4};
  return tb_test_arange(TB_DTYPE_I32, 3, shape, TB_MEMORY_HEAP);
}

static void assert_shape(const tb_tensor *t, size_t ndim,
                         const int64_t *shape) {
  assert_int_equal(tb_tensor_ndim(t), ndim);
  for (size_t i = 0; i < ndim; i++)
    assert_int_equal(tb_tensor_dim(t, i), shape[i]);
}

/* The elements in row-major order, as i32. */
static void assert_elements(tb_tensor *t, size_t count,
                            const int32_t *expected) {
  assert_int_equal(tb_tensor_numel(t), count);
  int32_t actual[64];
  assert_true(count <= 64);
  TB_ASSERT_OK(tb_tensor_read_bytes(actual, sizeof actual, t));
  assert_memory_equal(actual, expected, count * sizeof *expected);
}

static void reshape_keeps_the_bytes(void **state) {
  (void)state;
  tb_tensor *t = arange_234();
  TB_ASSERT_OK(tb_tensor_set_name(t, "cube"));
  const struct {
    size_t ndim;
    int64_t shape[4];
    int64_t expected[4];
  } cases[] = {
      {2, {6, 4}, {6, 4}},
      {1, {24}, {24}},
      {2, {-1, 4}, {6, 4}},
      {3, {2, -1, 2}, {2, 6, 2}},
      {4, {1, 24, 1, 1}, {1, 24, 1, 1}},
      {1, {-1}, {24}},
  };
  int32_t all[24];
  for (int i = 0; i < 24; i++)
    all[i] = i;
  for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
    tb_tensor *view = NULL;
    TB_ASSERT_OK(tb_tensor_reshape(&view, t, cases[c].ndim, cases[c].shape));
    assert_shape(view, cases[c].ndim, cases[c].expected);
    assert_true(tb_tensor_is_contiguous(view));
    assert_int_equal(tb_tensor_buffer_id(view), tb_tensor_buffer_id(t));
    assert_string_equal(tb_tensor_name(view), "cube");
    assert_elements(view, 24, all);
    tb_tensor_unref(view);
  }

  /* Writes through the view show in the source. */
  tb_tensor *flat;
  const int64_t flat_shape[] = {24};
  TB_ASSERT_OK(tb_tensor_reshape(&flat, t, 1, flat_shape));
  const int64_t at23[] = {23}, last[] = {1, 2, 3};
  TB_ASSERT_OK(tb_tensor_set_i64(flat, 1, at23, -7));
  int64_t value;
  TB_ASSERT_OK(tb_tensor_get_i64(&value, t, 3, last));
  assert_int_equal(value, -7);
  /* The name is copied, not shared. */
  TB_ASSERT_OK(tb_tensor_set_name(flat, "flat"));
  assert_string_equal(tb_tensor_name(t), "cube");
  tb_tensor_unref(flat);
  tb_tensor_unref(t);
}

static void reshape_to_and_from_scalars_and_empties(void **state) {
  (void)state;
  const int64_t one[] = {1, 1};
  tb_tensor *t;
  TB_ASSERT_OK(tb_tensor_new(&t, TB_DTYPE_F32, 2, one, NULL));
  tb_tensor *scalar;
  TB_ASSERT_OK(tb_tensor_reshape(&scalar, t, 0, NULL));
  assert_int_equal(tb_tensor_ndim(scalar), 0);
  tb_tensor *back;
  const int64_t inferred[] = {-1};
  TB_ASSERT_OK(tb_tensor_reshape(&back, scalar, 1, inferred));
  assert_int_equal(tb_tensor_dim(back, 0), 1);
  tb_tensor_unref(back);
  tb_tensor_unref(scalar);
  tb_tensor_unref(t);

  const int64_t empty_shape[] = {0, 3};
  TB_ASSERT_OK(tb_tensor_new(&t, TB_DTYPE_F32, 2, empty_shape, NULL));
  tb_tensor *view;
  const int64_t swapped[] = {3, 0, 5};
  TB_ASSERT_OK(tb_tensor_reshape(&view, t, 3, swapped));
  assert_int_equal(tb_tensor_numel(view), 0);
  tb_tensor_unref(view);
  /* -1 beside a 0 could be anything. */
  const int64_t ambiguous[] = {-1, 0};
  view = TB_SENTINEL(tb_tensor);
  TB_ASSERT_STATUS(tb_tensor_reshape(&view, t, 2, ambiguous), TB_ERR_SHAPE);
  assert_ptr_equal(view, TB_SENTINEL(tb_tensor));
  tb_tensor_unref(t);
}

static void reshape_rejects_bad_shapes(void **state) {
  (void)state;
  tb_tensor *t = arange_234();
  const struct {
    size_t ndim;
    int64_t shape[3];
  } bad[] = {
      {2, {5, 5}},    /* 25 elements, not 24 */
      {2, {-1, -1}},  /* two to infer */
      {2, {-1, 5}},   /* 24 does not divide by 5 */
      {2, {-2, -12}}, /* negative, not -1 */
      {2, {24, -3}},
      {3, {INT64_MAX, INT64_MAX, 2}},            /* product overflows */
      {2, {INT64_C(1) << 32, INT64_C(1) << 32}}, /* wraps to 0 */
      {1, {0}},
  };
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    tb_tensor *view = TB_SENTINEL(tb_tensor);
    TB_ASSERT_STATUS(tb_tensor_reshape(&view, t, bad[i].ndim, bad[i].shape),
                     TB_ERR_SHAPE);
    assert_ptr_equal(view, TB_SENTINEL(tb_tensor));
  }
  int64_t ones[TB_MAX_DIMS + 1];
  for (size_t i = 0; i < TB_MAX_DIMS + 1; i++)
    ones[i] = 1;
  ones[0] = 24;
  tb_tensor *view = TB_SENTINEL(tb_tensor);
  TB_ASSERT_STATUS(tb_tensor_reshape(&view, t, TB_MAX_DIMS + 1, ones),
                   TB_ERR_SHAPE);
  TB_ASSERT_OK(tb_tensor_reshape(&view, t, TB_MAX_DIMS, ones));
  tb_tensor_unref(view);

  view = TB_SENTINEL(tb_tensor);
  TB_ASSERT_STATUS(tb_tensor_reshape(NULL, t, 1, ones),
                   TB_ERR_INVALID_ARGUMENT);
  TB_ASSERT_STATUS(tb_tensor_reshape(&view, NULL, 1, ones),
                   TB_ERR_INVALID_ARGUMENT);
  TB_ASSERT_STATUS(tb_tensor_reshape(&view, t, 1, NULL),
                   TB_ERR_INVALID_ARGUMENT);
  assert_ptr_equal(view, TB_SENTINEL(tb_tensor));
  tb_tensor_unref(t);
}

static void reshape_needs_a_contiguous_tensor(void **state) {
  (void)state;
  tb_tensor *t = arange_234();
  tb_tensor *strided;
  TB_ASSERT_OK(tb_tensor_slice(&strided, t, 2, 0, 4, 2));
  assert_false(tb_tensor_is_contiguous(strided));
  tb_tensor *view = TB_SENTINEL(tb_tensor);
  const int64_t flat[] = {12};
  TB_ASSERT_STATUS(tb_tensor_reshape(&view, strided, 1, flat), TB_ERR_LAYOUT);
  assert_ptr_equal(view, TB_SENTINEL(tb_tensor));
  tb_tensor_unref(strided);

  /* A contiguous slice at an offset reshapes, keeping the offset. */
  tb_tensor *second;
  TB_ASSERT_OK(tb_tensor_slice(&second, t, 0, 1, 2, 1));
  assert_true(tb_tensor_is_contiguous(second));
  TB_ASSERT_OK(tb_tensor_reshape(&view, second, 1, flat));
  assert_int_equal(tb_tensor_offset(view), 12 * 4);
  const int32_t expected[] = {12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23};
  assert_elements(view, 12, expected);
  tb_tensor_unref(view);
  tb_tensor_unref(second);
  tb_tensor_unref(t);
}

static void slice_with_steps(void **state) {
  (void)state;
  tb_tensor *t = arange_234();
  TB_ASSERT_OK(tb_tensor_set_name(t, "cube"));

  tb_tensor *rows;
  TB_ASSERT_OK(tb_tensor_slice(&rows, t, 1, 1, 3, 1));
  const int64_t rows_shape[] = {2, 2, 4};
  assert_shape(rows, 3, rows_shape);
  assert_int_equal(tb_tensor_offset(rows), 4 * 4);
  assert_int_equal(tb_tensor_stride(rows, 1), 4);
  assert_string_equal(tb_tensor_name(rows), "cube");
  const int32_t rows_expected[] = {4,  5,  6,  7,  8,  9,  10, 11,
                                   16, 17, 18, 19, 20, 21, 22, 23};
  assert_elements(rows, 16, rows_expected);

  /* Every second column from 1: columns 1 and 3. */
  tb_tensor *columns;
  TB_ASSERT_OK(tb_tensor_slice(&columns, t, 2, 1, 4, 2));
  assert_int_equal(tb_tensor_dim(columns, 2), 2);
  assert_int_equal(tb_tensor_stride(columns, 2), 2);
  assert_int_equal(tb_tensor_offset(columns), 4);
  const int32_t columns_expected[] = {1,  3,  5,  7,  9,  11,
                                      13, 15, 17, 19, 21, 23};
  assert_elements(columns, 12, columns_expected);

  /* A slice of a slice. */
  tb_tensor *corner;
  TB_ASSERT_OK(tb_tensor_slice(&corner, columns, 0, 1, 2, 1));
  const int32_t corner_expected[] = {13, 15, 17, 19, 21, 23};
  assert_elements(corner, 6, corner_expected);
  /* A step beyond the dim keeps just the first, however large it is. */
  const int64_t big_steps[] = {3, 100, INT64_MAX};
  for (size_t i = 0; i < 3; i++) {
    tb_tensor *single;
    TB_ASSERT_OK(tb_tensor_slice(&single, t, 0, 1, 2, big_steps[i]));
    assert_int_equal(tb_tensor_dim(single, 0), 1);
    assert_int_equal(tb_tensor_offset(single), 12 * 4);
    const int64_t index[] = {0, 2, 3};
    int64_t value;
    TB_ASSERT_OK(tb_tensor_get_i64(&value, single, 3, index));
    assert_int_equal(value, 23);
    tb_tensor_unref(single);
    TB_ASSERT_OK(tb_tensor_slice(&single, t, 2, 0, 4, big_steps[i]));
    assert_int_equal(tb_tensor_dim(single, 2), big_steps[i] == 3 ? 2 : 1);
    tb_tensor_unref(single);
  }

  tb_tensor_unref(corner);
  tb_tensor_unref(columns);
  tb_tensor_unref(rows);
  tb_tensor_unref(t);
}

static void slice_can_be_empty(void **state) {
  (void)state;
  tb_tensor *t = arange_234();
  const int64_t starts[] = {0, 2, 4};
  for (size_t i = 0; i < 3; i++) {
    tb_tensor *empty;
    TB_ASSERT_OK(tb_tensor_slice(&empty, t, 2, starts[i], starts[i], 1));
    assert_int_equal(tb_tensor_dim(empty, 2), 0);
    assert_int_equal(tb_tensor_numel(empty), 0);
    TB_ASSERT_OK(tb_tensor_read_bytes(NULL, 0, empty));
    tb_tensor_unref(empty);
  }
  tb_tensor_unref(t);
}

static void slice_rejects_bad_bounds(void **state) {
  (void)state;
  tb_tensor *t = arange_234();
  const struct {
    size_t axis;
    int64_t start, stop, step;
  } bad[] = {
      {3, 0, 1, 1},                        /* axis past the end */
      {SIZE_MAX, 0, 1, 1},  {0, -1, 1, 1}, /* start < 0 */
      {0, 0, 3, 1},                        /* stop > dim */
      {0, 2, 1, 1},                        /* stop < start */
      {0, 0, 2, 0},                        /* step 0 */
      {0, 0, 2, -1},                       /* negative step */
      {0, 3, 3, 1},                        /* empty but past the end */
      {0, INT64_MIN, 0, 1}, {0, 0, INT64_MAX, 1}, {0, 0, 2, INT64_MIN},
  };
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    tb_tensor *view = TB_SENTINEL(tb_tensor);
    TB_ASSERT_STATUS(tb_tensor_slice(&view, t, bad[i].axis, bad[i].start,
                                     bad[i].stop, bad[i].step),
                     TB_ERR_OUT_OF_RANGE);
    assert_ptr_equal(view, TB_SENTINEL(tb_tensor));
  }
  tb_tensor *view = TB_SENTINEL(tb_tensor);
  TB_ASSERT_STATUS(tb_tensor_slice(NULL, t, 0, 0, 1, 1),
                   TB_ERR_INVALID_ARGUMENT);
  TB_ASSERT_STATUS(tb_tensor_slice(&view, NULL, 0, 0, 1, 1),
                   TB_ERR_INVALID_ARGUMENT);
  tb_tensor *scalar;
  TB_ASSERT_OK(tb_tensor_new(&scalar, TB_DTYPE_U8, 0, NULL, NULL));
  TB_ASSERT_STATUS(tb_tensor_slice(&view, scalar, 0, 0, 0, 1),
                   TB_ERR_OUT_OF_RANGE);
  assert_ptr_equal(view, TB_SENTINEL(tb_tensor));
  tb_tensor_unref(scalar);
  tb_tensor_unref(t);
}

static void slice_of_a_reversed_view(void **state) {
  (void)state;
  const int64_t shape[] = {10};
  tb_tensor *source = tb_test_arange(TB_DTYPE_I32, 1, shape, TB_MEMORY_HEAP);
  tb_buffer *buffer = tb_tensor_buffer(source);
  tb_tensor *reversed;
  const int64_t backwards[] = {-1};
  TB_ASSERT_OK(tb_tensor_from_buffer(&reversed, buffer, 9 * 4, TB_DTYPE_I32, 1,
                                     shape, backwards));
  tb_tensor *every_third;
  TB_ASSERT_OK(tb_tensor_slice(&every_third, reversed, 0, 1, 10, 3));
  const int32_t expected[] = {8, 5, 2};
  assert_elements(every_third, 3, expected);
  assert_int_equal(tb_tensor_stride(every_third, 0), -3);
  tb_tensor_unref(every_third);
  tb_tensor_unref(reversed);
  tb_buffer_unref(buffer);
  tb_tensor_unref(source);
}

static void shares_memory_compares_byte_ranges(void **state) {
  (void)state;
  const int64_t shape[] = {8};
  tb_tensor *t = tb_test_arange(TB_DTYPE_U16, 1, shape, TB_MEMORY_HEAP);
  tb_tensor *low, *high, *middle, *tail, *even, *odd;
  TB_ASSERT_OK(tb_tensor_slice(&low, t, 0, 0, 4, 1));
  TB_ASSERT_OK(tb_tensor_slice(&high, t, 0, 4, 8, 1));
  TB_ASSERT_OK(tb_tensor_slice(&middle, t, 0, 3, 5, 1));
  TB_ASSERT_OK(tb_tensor_slice(&tail, t, 0, 7, 8, 1));
  TB_ASSERT_OK(tb_tensor_slice(&even, t, 0, 0, 8, 2));
  TB_ASSERT_OK(tb_tensor_slice(&odd, t, 0, 1, 8, 2));

  assert_true(tb_tensor_shares_memory(t, t));
  assert_true(tb_tensor_shares_memory(t, low));
  assert_true(tb_tensor_shares_memory(low, middle));
  assert_true(tb_tensor_shares_memory(middle, high));
  assert_true(tb_tensor_shares_memory(high, tail));
  /* Adjacent is not overlapping, in either order. */
  assert_false(tb_tensor_shares_memory(low, high));
  assert_false(tb_tensor_shares_memory(high, low));
  assert_false(tb_tensor_shares_memory(low, tail));
  /* Interleaved views overlap as ranges even though no element is common:
   * the answer is about ranges (like numpy.may_share_memory). */
  assert_true(tb_tensor_shares_memory(even, odd));

  /* Different buffers never share, even with equal shapes. */
  tb_tensor *other = tb_test_arange(TB_DTYPE_U16, 1, shape, TB_MEMORY_HEAP);
  assert_false(tb_tensor_shares_memory(t, other));
  /* Empty views share nothing. */
  tb_tensor *empty;
  TB_ASSERT_OK(tb_tensor_slice(&empty, t, 0, 2, 2, 1));
  assert_false(tb_tensor_shares_memory(t, empty));
  assert_false(tb_tensor_shares_memory(empty, empty));
  assert_false(tb_tensor_shares_memory(t, NULL));
  assert_false(tb_tensor_shares_memory(NULL, t));

  tb_tensor_unref(empty);
  tb_tensor_unref(other);
  tb_tensor_unref(odd);
  tb_tensor_unref(even);
  tb_tensor_unref(tail);
  tb_tensor_unref(middle);
  tb_tensor_unref(high);
  tb_tensor_unref(low);
  tb_tensor_unref(t);
}

static void shares_memory_with_negative_strides_and_dtypes(void **state) {
  (void)state;
  tb_buffer *buffer;
  TB_ASSERT_OK(tb_buffer_new(&buffer, 64, NULL));
  /* Bytes [32, 64) walked backwards from its last f64... */
  const int64_t four[] = {4}, backwards[] = {-1};
  tb_tensor *reversed;
  TB_ASSERT_OK(tb_tensor_from_buffer(&reversed, buffer, 56, TB_DTYPE_F64, 1,
                                     four, backwards));
  /* ... against bytes [0, 32) and [28, 32) and [32, 33). */
  const int64_t thirty_two[] = {32}, one[] = {1};
  tb_tensor *front, *last_word, *first_after;
  TB_ASSERT_OK(tb_tensor_from_buffer(&front, buffer, 0, TB_DTYPE_U8, 1,
                                     thirty_two, NULL));
  TB_ASSERT_OK(tb_tensor_from_buffer(&last_word, buffer, 28, TB_DTYPE_F32, 1,
                                     one, NULL));
  TB_ASSERT_OK(tb_tensor_from_buffer(&first_after, buffer, 32, TB_DTYPE_U8, 1,
                                     one, NULL));
  assert_false(tb_tensor_shares_memory(reversed, front));
  assert_false(tb_tensor_shares_memory(reversed, last_word));
  assert_true(tb_tensor_shares_memory(reversed, first_after));
  assert_true(tb_tensor_shares_memory(front, last_word));
  tb_tensor_unref(first_after);
  tb_tensor_unref(last_word);
  tb_tensor_unref(front);
  tb_tensor_unref(reversed);
  tb_buffer_unref(buffer);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      TB_TEST(reshape_keeps_the_bytes),
      TB_TEST(reshape_to_and_from_scalars_and_empties),
      TB_TEST(reshape_rejects_bad_shapes),
      TB_TEST(reshape_needs_a_contiguous_tensor),
      TB_TEST(slice_with_steps),
      TB_TEST(slice_can_be_empty),
      TB_TEST(slice_rejects_bad_bounds),
      TB_TEST(slice_of_a_reversed_view),
      TB_TEST(shares_memory_compares_byte_ranges),
      TB_TEST(shares_memory_with_negative_strides_and_dtypes),
  };
  return TB_RUN_TESTS(tests);
}
