/* Quantization metadata: per-tensor and per-axis parameters, validation,
 * and how views carry them. */
#include "tb_test.h"

#include <math.h>
#include <string.h>

static tb_tensor *new_tensor(tb_dtype dtype, size_t ndim,
                             const int64_t *shape) {
  tb_tensor *t;
  TB_ASSERT_OK(tb_tensor_new(&t, dtype, ndim, shape, NULL));
  return t;
}

static void assert_parameter(const tb_tensor *t, size_t index, double scale,
                             int64_t zero_point) {
  double got_scale = -1;
  int64_t got_zero_point = -1;
  TB_ASSERT_OK(
      tb_tensor_quantization_get(&got_scale, &got_zero_point, t, index));
  TB_ASSERT_F64_EQUAL(got_scale, scale);
  assert_int_equal(got_zero_point, zero_point);
}

static void per_tensor(void **state) {
  (void)state;
  const int64_t shape[] = {4, 4};
  tb_tensor *t = new_tensor(TB_DTYPE_I8, 2, shape);
  assert_int_equal(tb_tensor_quantization_count(t), 0);
  assert_int_equal(tb_tensor_quantization_axis(t), -1);

  const double scale = 0.25;
  const int64_t zero_point = -3;
  TB_ASSERT_OK(tb_tensor_set_quantization(t, -1, 1, &scale, &zero_point));
  assert_int_equal(tb_tensor_quantization_count(t), 1);
  assert_int_equal(tb_tensor_quantization_axis(t), -1);
  assert_parameter(t, 0, 0.25, -3);

  /* Replaced, with zero points defaulting to 0. */
  const double other = 3e-5;
  TB_ASSERT_OK(tb_tensor_set_quantization(t, -1, 1, &other, NULL));
  assert_parameter(t, 0, 3e-5, 0);

  /* count 0 removes it. */
  TB_ASSERT_OK(tb_tensor_set_quantization(t, -1, 0, NULL, NULL));
  assert_int_equal(tb_tensor_quantization_count(t), 0);
  assert_int_equal(tb_tensor_quantization_axis(t), -1);
  tb_tensor_unref(t);
}

static void per_axis(void **state) {
  (void)state;
  const int64_t shape[] = {3, 4};
  tb_tensor *t = new_tensor(TB_DTYPE_U8, 2, shape);
  const double scales[] = {0.5, 1.0, 1.5, 2.0};
  const int64_t zero_points[] = {0, 128, 255, 7};
  TB_ASSERT_OK(tb_tensor_set_quantization(t, 1, 4, scales, zero_points));
  assert_int_equal(tb_tensor_quantization_count(t), 4);
  assert_int_equal(tb_tensor_quantization_axis(t), 1);
  for (size_t i = 0; i < 4; i++)
    assert_parameter(t, i, scales[i], zero_points[i]);

  TB_ASSERT_OK(tb_tensor_set_quantization(t, 0, 3, scales, NULL));
  assert_int_equal(tb_tensor_quantization_axis(t), 0);
  assert_int_equal(tb_tensor_quantization_count(t), 3);
  assert_parameter(t, 2, 1.5, 0);
  tb_tensor_unref(t);
}

static void every_integer_dtype_and_its_zero_point_range(void **state) {
  (void)state;
  const struct {
    tb_dtype dtype;
    int64_t lowest, highest;
  } ranges[] = {
      {TB_DTYPE_U8, 0, 255},         {TB_DTYPE_I8, -128, 127},
      {TB_DTYPE_U16, 0, 65535},      {TB_DTYPE_I16, -32768, 32767},
      {TB_DTYPE_U32, 0, 4294967295}, {TB_DTYPE_I32, INT32_MIN, INT32_MAX},
      {TB_DTYPE_U64, 0, INT64_MAX},  {TB_DTYPE_I64, INT64_MIN, INT64_MAX},
  };
  const int64_t shape[] = {2};
  const double scale = 1.0;
  for (size_t i = 0; i < sizeof ranges / sizeof *ranges; i++) {
    tb_tensor *t = new_tensor(ranges[i].dtype, 1, shape);
    TB_ASSERT_OK(
        tb_tensor_set_quantization(t, -1, 1, &scale, &ranges[i].lowest));
    TB_ASSERT_OK(
        tb_tensor_set_quantization(t, -1, 1, &scale, &ranges[i].highest));
    if (ranges[i].lowest > INT64_MIN) {
      const int64_t below = ranges[i].lowest - 1;
      TB_ASSERT_STATUS(tb_tensor_set_quantization(t, -1, 1, &scale, &below),
                       TB_ERR_OUT_OF_RANGE);
    }
    if (ranges[i].highest < INT64_MAX) {
      const int64_t above = ranges[i].highest + 1;
      TB_ASSERT_STATUS(tb_tensor_set_quantization(t, -1, 1, &scale, &above),
                       TB_ERR_OUT_OF_RANGE);
    }
    /* The failures left the last good parameters in place. */
    assert_parameter(t, 0, 1.0, ranges[i].highest);
    tb_tensor_unref(t);
  }
}

static void non_integer_dtypes_are_refused(void **state) {
  (void)state;
  const tb_dtype refused[] = {TB_DTYPE_F16, TB_DTYPE_BF16, TB_DTYPE_F32,
                              TB_DTYPE_F64, TB_DTYPE_BOOL};
  const int64_t shape[] = {2};
  const double scale = 0.5;
  for (size_t i = 0; i < sizeof refused / sizeof *refused; i++) {
    tb_tensor *t = new_tensor(refused[i], 1, shape);
    TB_ASSERT_STATUS(tb_tensor_set_quantization(t, -1, 1, &scale, NULL),
                     TB_ERR_DTYPE);
    assert_int_equal(tb_tensor_quantization_count(t), 0);
    /* Removing what is not there is fine on any dtype. */
    TB_ASSERT_OK(tb_tensor_set_quantization(t, -1, 0, NULL, NULL));
    tb_tensor_unref(t);
  }
}

static void bad_parameters_are_refused(void **state) {
  (void)state;
  const int64_t shape[] = {3, 4};
  tb_tensor *t = new_tensor(TB_DTYPE_I16, 2, shape);
  const double good = 0.5;
  const int64_t good_zero = 5;
  TB_ASSERT_OK(tb_tensor_set_quantization(t, -1, 1, &good, &good_zero));

  const double scales[] = {1, 1, 1, 1, 1};
  /* Axes outside -1..ndim-1. */
  TB_ASSERT_STATUS(tb_tensor_set_quantization(t, -2, 1, scales, NULL),
                   TB_ERR_OUT_OF_RANGE);
  TB_ASSERT_STATUS(tb_tensor_set_quantization(t, 2, 1, scales, NULL),
                   TB_ERR_OUT_OF_RANGE);
  TB_ASSERT_STATUS(tb_tensor_set_quantization(t, INT64_MIN, 1, scales, NULL),
                   TB_ERR_OUT_OF_RANGE);
  /* Counts that do not match. */
  TB_ASSERT_STATUS(tb_tensor_set_quantization(t, -1, 2, scales, NULL),
                   TB_ERR_OUT_OF_RANGE);
  TB_ASSERT_STATUS(tb_tensor_set_quantization(t, 0, 4, scales, NULL),
                   TB_ERR_OUT_OF_RANGE);
  TB_ASSERT_STATUS(tb_tensor_set_quantization(t, 1, 5, scales, NULL),
                   TB_ERR_OUT_OF_RANGE);
  /* Scales that are not finite and positive, anywhere in the array. */
  const double bad_scales[] = {0.0, -0.5, -0.0, NAN, INFINITY, -INFINITY};
  for (size_t i = 0; i < sizeof bad_scales / sizeof *bad_scales; i++) {
    const double per_axis[] = {1.0, 1.0, bad_scales[i]};
    TB_ASSERT_STATUS(tb_tensor_set_quantization(t, -1, 1, &bad_scales[i], NULL),
                     TB_ERR_INVALID_ARGUMENT);
    TB_ASSERT_STATUS(tb_tensor_set_quantization(t, 0, 3, per_axis, NULL),
                     TB_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(tb_last_error(), "scales[2]"));
  }
  /* A zero point out of range, in a per-axis array. */
  const int64_t zero_points[] = {0, 32768, 0};
  TB_ASSERT_STATUS(tb_tensor_set_quantization(t, 0, 3, scales, zero_points),
                   TB_ERR_OUT_OF_RANGE);
  assert_non_null(strstr(tb_last_error(), "zero_points[1]"));
  /* NULL arguments. */
  TB_ASSERT_STATUS(tb_tensor_set_quantization(t, -1, 1, NULL, NULL),
                   TB_ERR_INVALID_ARGUMENT);
  TB_ASSERT_STATUS(tb_tensor_set_quantization(NULL, -1, 1, scales, NULL),
                   TB_ERR_INVALID_ARGUMENT);

  /* Nothing above changed the parameters. */
  assert_int_equal(tb_tensor_quantization_count(t), 1);
  assert_int_equal(tb_tensor_quantization_axis(t), -1);
  assert_parameter(t, 0, 0.5, 5);
  tb_tensor_unref(t);
}

static void scalars_take_only_per_tensor(void **state) {
  (void)state;
  tb_tensor *t = new_tensor(TB_DTYPE_U8, 0, NULL);
  const double scale = 2.0;
  TB_ASSERT_STATUS(tb_tensor_set_quantization(t, 0, 1, &scale, NULL),
                   TB_ERR_OUT_OF_RANGE);
  TB_ASSERT_OK(tb_tensor_set_quantization(t, -1, 1, &scale, NULL));
  assert_parameter(t, 0, 2.0, 0);
  tb_tensor_unref(t);
}

static void get_checks_its_arguments(void **state) {
  (void)state;
  const int64_t shape[] = {2};
  tb_tensor *t = new_tensor(TB_DTYPE_I32, 1, shape);
  double scale = 42;
  int64_t zero_point = 42;
  /* Not quantized: no index is valid. */
  TB_ASSERT_STATUS(tb_tensor_quantization_get(&scale, &zero_point, t, 0),
                   TB_ERR_OUT_OF_RANGE);
  const double scales[] = {1, 2};
  TB_ASSERT_OK(tb_tensor_set_quantization(t, 0, 2, scales, NULL));
  TB_ASSERT_STATUS(tb_tensor_quantization_get(&scale, &zero_point, t, 2),
                   TB_ERR_OUT_OF_RANGE);
  TB_ASSERT_STATUS(tb_tensor_quantization_get(&scale, &zero_point, t, SIZE_MAX),
                   TB_ERR_OUT_OF_RANGE);
  TB_ASSERT_STATUS(tb_tensor_quantization_get(NULL, &zero_point, t, 0),
                   TB_ERR_INVALID_ARGUMENT);
  TB_ASSERT_STATUS(tb_tensor_quantization_get(&scale, NULL, t, 0),
                   TB_ERR_INVALID_ARGUMENT);
  TB_ASSERT_STATUS(tb_tensor_quantization_get(&scale, &zero_point, NULL, 0),
                   TB_ERR_INVALID_ARGUMENT);
  TB_ASSERT_F64_EQUAL(scale, 42);
  assert_int_equal(zero_point, 42);
  tb_tensor_unref(t);
}

static void reshape_keeps_per_tensor_and_drops_per_axis(void **state) {
  (void)state;
  const int64_t shape[] = {2, 3}, flat[] = {6};
  tb_tensor *t = new_tensor(TB_DTYPE_I8, 2, shape);
  const double scale = 0.1;
  const int64_t zero_point = 10;
  TB_ASSERT_OK(tb_tensor_set_quantization(t, -1, 1, &scale, &zero_point));
  tb_tensor *view;
  TB_ASSERT_OK(tb_tensor_reshape(&view, t, 1, flat));
  assert_int_equal(tb_tensor_quantization_count(view), 1);
  assert_int_equal(tb_tensor_quantization_axis(view), -1);
  assert_parameter(view, 0, 0.1, 10);
  /* The view's parameters are its own. */
  TB_ASSERT_OK(tb_tensor_set_quantization(view, -1, 0, NULL, NULL));
  assert_int_equal(tb_tensor_quantization_count(t), 1);
  tb_tensor_unref(view);

  const double scales[] = {1, 2, 3};
  TB_ASSERT_OK(tb_tensor_set_quantization(t, 1, 3, scales, NULL));
  TB_ASSERT_OK(tb_tensor_reshape(&view, t, 1, flat));
  assert_int_equal(tb_tensor_quantization_count(view), 0);
  assert_int_equal(tb_tensor_quantization_axis(view), -1);
  tb_tensor_unref(view);
  tb_tensor_unref(t);
}

static void slice_carries_and_slices_parameters(void **state) {
  (void)state;
  const int64_t shape[] = {4, 6};
  tb_tensor *t = new_tensor(TB_DTYPE_U8, 2, shape);
  const double scales[] = {0.5, 1, 1.5, 2, 2.5, 3};
  const int64_t zero_points[] = {10, 11, 12, 13, 14, 15};
  TB_ASSERT_OK(tb_tensor_set_quantization(t, 1, 6, scales, zero_points));

  /* Slicing the quantized axis slices the parameters, step included. */
  tb_tensor *view;
  TB_ASSERT_OK(tb_tensor_slice(&view, t, 1, 1, 6, 2));
  assert_int_equal(tb_tensor_quantization_axis(view), 1);
  assert_int_equal(tb_tensor_quantization_count(view), 3);
  assert_parameter(view, 0, 1, 11);
  assert_parameter(view, 1, 2, 13);
  assert_parameter(view, 2, 3, 15);
  tb_tensor_unref(view);

  /* Slicing another axis keeps them whole. */
  TB_ASSERT_OK(tb_tensor_slice(&view, t, 0, 1, 3, 1));
  assert_int_equal(tb_tensor_quantization_axis(view), 1);
  assert_int_equal(tb_tensor_quantization_count(view), 6);
  for (size_t i = 0; i < 6; i++)
    assert_parameter(view, i, scales[i], zero_points[i]);
  tb_tensor_unref(view);

  /* An empty slice of the quantized axis has no parameters left. */
  TB_ASSERT_OK(tb_tensor_slice(&view, t, 1, 3, 3, 1));
  assert_int_equal(tb_tensor_quantization_count(view), 0);
  tb_tensor_unref(view);

  /* Per-tensor parameters survive any slice. */
  const double scale = 4;
  TB_ASSERT_OK(tb_tensor_set_quantization(t, -1, 1, &scale, NULL));
  TB_ASSERT_OK(tb_tensor_slice(&view, t, 1, 0, 6, 5));
  assert_int_equal(tb_tensor_quantization_count(view), 1);
  assert_int_equal(tb_tensor_quantization_axis(view), -1);
  assert_parameter(view, 0, 4, 0);
  tb_tensor_unref(view);
  tb_tensor_unref(t);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      TB_TEST(per_tensor),
      TB_TEST(per_axis),
      TB_TEST(every_integer_dtype_and_its_zero_point_range),
      TB_TEST(non_integer_dtypes_are_refused),
      TB_TEST(bad_parameters_are_refused),
      TB_TEST(scalars_take_only_per_tensor),
      TB_TEST(get_checks_its_arguments),
      TB_TEST(reshape_keeps_per_tensor_and_drops_per_axis),
      TB_TEST(slice_carries_and_slices_parameters),
  };
  return TB_RUN_TESTS(tests);
}
