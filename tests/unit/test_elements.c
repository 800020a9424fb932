/* Element access (get/set as f64 and i64) and bulk byte copies. */
#include "tb_test.h"

#include <float.h>
#include <math.h>
#include <string.h>

static tb_tensor *new_vector(tb_dtype dtype, int64_t length, tb_memory memory) {
  tb_alloc_options opts = tb_test_options(memory);
  tb_tensor *t;
  TB_ASSERT_OK(tb_tensor_new(&t, dtype, 1, &length, &opts));
  return t;
}

static const int64_t first[] = {0};

static double get_f64(tb_tensor *t) {
  double value = -12345;
  TB_ASSERT_OK(tb_tensor_get_f64(&value, t, 1, first));
  return value;
}

static int64_t get_i64(tb_tensor *t) {
  int64_t value = -12345;
  TB_ASSERT_OK(tb_tensor_get_i64(&value, t, 1, first));
  return value;
}

static const struct {
  tb_dtype dtype;
  int64_t lowest, highest;
} integer_ranges[] = {
    {TB_DTYPE_BOOL, 0, 1},
    {TB_DTYPE_U8, 0, 255},
    {TB_DTYPE_I8, -128, 127},
    {TB_DTYPE_U16, 0, 65535},
    {TB_DTYPE_I16, -32768, 32767},
    {TB_DTYPE_U32, 0, 4294967295},
    {TB_DTYPE_I32, INT32_MIN, INT32_MAX},
    {TB_DTYPE_U64, 0, INT64_MAX},
    {TB_DTYPE_I64, INT64_MIN, INT64_MAX},
};
#define NINTEGERS (sizeof integer_ranges / sizeof *integer_ranges)

static void integers_hold_their_whole_range(void **state) {
  (void)state;
  for (size_t i = 0; i < NINTEGERS; i++) {
    tb_tensor *t = new_vector(integer_ranges[i].dtype, 1, TB_MEMORY_HEAP);
    const int64_t ends[] = {integer_ranges[i].lowest,
                            integer_ranges[i].highest};
    for (size_t e = 0; e < 2; e++) {
      TB_ASSERT_OK(tb_tensor_set_i64(t, 1, first, ends[e]));
      assert_int_equal(get_i64(t), ends[e]);
      TB_ASSERT_F64_EQUAL(get_f64(t), (double)ends[e]);
    }
    /* Through set_f64 as well, where the double is exact. */
    if (integer_ranges[i].dtype != TB_DTYPE_U64 &&
        integer_ranges[i].dtype != TB_DTYPE_I64) {
      for (size_t e = 0; e < 2; e++) {
        TB_ASSERT_OK(tb_tensor_set_f64(t, 1, first, (double)ends[e]));
        assert_int_equal(get_i64(t), ends[e]);
      }
    }
    tb_tensor_unref(t);
  }
}

static void integers_refuse_values_outside_their_range(void **state) {
  (void)state;
  for (size_t i = 0; i < NINTEGERS; i++) {
    tb_tensor *t = new_vector(integer_ranges[i].dtype, 1, TB_MEMORY_HEAP);
    TB_ASSERT_OK(tb_tensor_set_i64(t, 1, first, 1));
    if (integer_ranges[i].lowest > INT64_MIN) {
      int64_t below = integer_ranges[i].lowest - 1;
      TB_ASSERT_STATUS(tb_tensor_set_i64(t, 1, first, below),
                       TB_ERR_OUT_OF_RANGE);
      TB_ASSERT_STATUS(tb_tensor_set_f64(t, 1, first, (double)below),
                       TB_ERR_OUT_OF_RANGE);
    }
    if (integer_ranges[i].highest < INT64_MAX) {
      int64_t above = integer_ranges[i].highest + 1;
      TB_ASSERT_STATUS(tb_tensor_set_i64(t, 1, first, above),
                       TB_ERR_OUT_OF_RANGE);
      TB_ASSERT_STATUS(tb_tensor_set_f64(t, 1, first, (double)above),
                       TB_ERR_OUT_OF_RANGE);
    }
    /* Not whole numbers. */
    const double not_whole[] = {0.5, -0.5,     1.5,      1e-300,
                                NAN, INFINITY, -INFINITY};
    for (size_t v = 0; v < sizeof not_whole / sizeof *not_whole; v++)
      TB_ASSERT_STATUS(tb_tensor_set_f64(t, 1, first, not_whole[v]),
                       TB_ERR_OUT_OF_RANGE);
    /* Nothing above changed the element. */
    assert_int_equal(get_i64(t), 1);
    tb_tensor_unref(t);
  }
}

static void eight_bit_boundaries(void **state) {
  (void)state;
  tb_tensor *u8 = new_vector(TB_DTYPE_U8, 1, TB_MEMORY_HEAP);
  TB_ASSERT_OK(tb_tensor_set_i64(u8, 1, first, 255));
  TB_ASSERT_STATUS(tb_tensor_set_i64(u8, 1, first, 256), TB_ERR_OUT_OF_RANGE);
  TB_ASSERT_STATUS(tb_tensor_set_f64(u8, 1, first, 256.0), TB_ERR_OUT_OF_RANGE);
  TB_ASSERT_STATUS(tb_tensor_set_i64(u8, 1, first, -1), TB_ERR_OUT_OF_RANGE);
  TB_ASSERT_STATUS(tb_tensor_set_f64(u8, 1, first, 255.5), TB_ERR_OUT_OF_RANGE);
  assert_int_equal(get_i64(u8), 255);
  /* -0.0 is the whole number 0. */
  TB_ASSERT_OK(tb_tensor_set_f64(u8, 1, first, -0.0));
  assert_int_equal(get_i64(u8), 0);
  tb_tensor_unref(u8);

  tb_tensor *i8 = new_vector(TB_DTYPE_I8, 1, TB_MEMORY_HEAP);
  TB_ASSERT_OK(tb_tensor_set_i64(i8, 1, first, -128));
  TB_ASSERT_STATUS(tb_tensor_set_i64(i8, 1, first, -129), TB_ERR_OUT_OF_RANGE);
  TB_ASSERT_STATUS(tb_tensor_set_i64(i8, 1, first, 128), TB_ERR_OUT_OF_RANGE);
  assert_int_equal(get_i64(i8), -128);
  TB_ASSERT_F64_EQUAL(get_f64(i8), -128.0);
  tb_tensor_unref(i8);
}

static void sixty_four_bit_boundaries(void **state) {
  (void)state;
  const double two_63 = 9223372036854775808.0, two_64 = 18446744073709551616.0;
  tb_tensor *u64 = new_vector(TB_DTYPE_U64, 1, TB_MEMORY_HEAP);
  /* Above INT64_MAX: readable as f64, not as i64. */
  TB_ASSERT_OK(tb_tensor_set_f64(u64, 1, first, two_63));
  TB_ASSERT_F64_EQUAL(get_f64(u64), two_63);
  int64_t untouched = 99;
  TB_ASSERT_STATUS(tb_tensor_get_i64(&untouched, u64, 1, first),
                   TB_ERR_OUT_OF_RANGE);
  assert_int_equal(untouched, 99);
  const double largest_below_2_64 = 18446744073709549568.0;
  TB_ASSERT_OK(tb_tensor_set_f64(u64, 1, first, largest_below_2_64));
  TB_ASSERT_F64_EQUAL(get_f64(u64), largest_below_2_64);
  uint64_t raw;
  TB_ASSERT_OK(tb_tensor_read_bytes(&raw, sizeof raw, u64));
  assert_true(raw == UINT64_C(18446744073709549568));
  TB_ASSERT_STATUS(tb_tensor_set_f64(u64, 1, first, two_64),
                   TB_ERR_OUT_OF_RANGE);
  TB_ASSERT_STATUS(tb_tensor_set_i64(u64, 1, first, -1), TB_ERR_OUT_OF_RANGE);
  TB_ASSERT_STATUS(tb_tensor_set_f64(u64, 1, first, -1.0), TB_ERR_OUT_OF_RANGE);
  /* UINT64_MAX itself only through bytes. */
  raw = UINT64_MAX;
  TB_ASSERT_OK(tb_tensor_write_bytes(u64, &raw, sizeof raw));
  TB_ASSERT_F64_EQUAL(get_f64(u64), two_64);
  TB_ASSERT_STATUS(tb_tensor_get_i64(&untouched, u64, 1, first),
                   TB_ERR_OUT_OF_RANGE);
  tb_tensor_unref(u64);

  tb_tensor *i64 = new_vector(TB_DTYPE_I64, 1, TB_MEMORY_HEAP);
  TB_ASSERT_OK(tb_tensor_set_f64(i64, 1, first, -two_63));
  assert_int_equal(get_i64(i64), INT64_MIN);
  TB_ASSERT_STATUS(tb_tensor_set_f64(i64, 1, first, two_63),
                   TB_ERR_OUT_OF_RANGE);
  TB_ASSERT_STATUS(tb_tensor_set_f64(i64, 1, first, -two_63 * 2),
                   TB_ERR_OUT_OF_RANGE);
  /* Exact through i64, rounded through f64 beyond 2^53. */
  const int64_t odd = (INT64_C(1) << 53) + 1;
  TB_ASSERT_OK(tb_tensor_set_i64(i64, 1, first, odd));
  assert_int_equal(get_i64(i64), odd);
  TB_ASSERT_F64_EQUAL(get_f64(i64), 9007199254740992.0);
  tb_tensor_unref(i64);
}

static void bool_takes_zero_and_one(void **state) {
  (void)state;
  tb_tensor *t = new_vector(TB_DTYPE_BOOL, 1, TB_MEMORY_HEAP);
  TB_ASSERT_OK(tb_tensor_set_i64(t, 1, first, 1));
  assert_int_equal(get_i64(t), 1);
  TB_ASSERT_F64_EQUAL(get_f64(t), 1.0);
  TB_ASSERT_OK(tb_tensor_set_f64(t, 1, first, 0.0));
  assert_int_equal(get_i64(t), 0);
  TB_ASSERT_OK(tb_tensor_set_f64(t, 1, first, 1.0));
  TB_ASSERT_STATUS(tb_tensor_set_i64(t, 1, first, 2), TB_ERR_OUT_OF_RANGE);
  TB_ASSERT_STATUS(tb_tensor_set_i64(t, 1, first, -1), TB_ERR_OUT_OF_RANGE);
  TB_ASSERT_STATUS(tb_tensor_set_f64(t, 1, first, 2.0), TB_ERR_OUT_OF_RANGE);
  TB_ASSERT_STATUS(tb_tensor_set_f64(t, 1, first, 0.5), TB_ERR_OUT_OF_RANGE);
  assert_int_equal(get_i64(t), 1);
  /* Any non-zero byte reads as true. */
  const uint8_t two = 2;
  TB_ASSERT_OK(tb_tensor_write_bytes(t, &two, 1));
  assert_int_equal(get_i64(t), 1);
  TB_ASSERT_F64_EQUAL(get_f64(t), 1.0);
  tb_tensor_unref(t);
}

/* Stores `value` with set_f64 and returns what get_f64 reads back. */
static double round_trip(tb_tensor *t, double value) {
  TB_ASSERT_OK(tb_tensor_set_f64(t, 1, first, value));
  return get_f64(t);
}

static void f16_rounds_to_nearest_even(void **state) {
  (void)state;
  tb_tensor *t = new_vector(TB_DTYPE_F16, 1, TB_MEMORY_HEAP);
  TB_ASSERT_F64_EQUAL(round_trip(t, 1.0), 1.0);
  TB_ASSERT_F64_EQUAL(round_trip(t, 0.1), 0.0999755859375);    /* 0x2e66 */
  TB_ASSERT_F64_EQUAL(round_trip(t, 1.0 / 3), 0.333251953125); /* 0x3555 */
  TB_ASSERT_F64_EQUAL(round_trip(t, 2049), 2048);   /* tie: to even */
  TB_ASSERT_F64_EQUAL(round_trip(t, 2051), 2052);   /* tie: to even */
  TB_ASSERT_F64_EQUAL(round_trip(t, 2050.5), 2050); /* below half: down */
  TB_ASSERT_F64_EQUAL(round_trip(t, 65504), 65504); /* the largest */
  TB_ASSERT_F64_EQUAL(round_trip(t, 65519), 65504); /* rounds down to it */
  TB_ASSERT_F64_EQUAL(round_trip(t, -65504), -65504);
  /* Subnormals: 2^-24 is the smallest; half of it ties to 0. */
  TB_ASSERT_F64_EQUAL(round_trip(t, 0x1p-24), 0x1p-24);
  TB_ASSERT_F64_EQUAL(round_trip(t, 0x1p-25), 0.0);
  TB_ASSERT_F64_EQUAL(round_trip(t, 0x1.8p-25), 0x1p-24);
  TB_ASSERT_F64_EQUAL(round_trip(t, 1e-8), 0.0);
  TB_ASSERT_F64_EQUAL(round_trip(t, 0x1.ffcp-15), 0x1p-14); /* carries up */
  assert_true(signbit(round_trip(t, -0.0)));
  uint16_t bits;
  TB_ASSERT_OK(tb_tensor_set_f64(t, 1, first, 1.0 / 3));
  TB_ASSERT_OK(tb_tensor_read_bytes(&bits, sizeof bits, t));
  assert_int_equal(bits, 0x3555);
  /* Overflow is an error, not infinity; the element keeps its value. */
  TB_ASSERT_STATUS(tb_tensor_set_f64(t, 1, first, 70000), TB_ERR_OUT_OF_RANGE);
  TB_ASSERT_STATUS(tb_tensor_set_f64(t, 1, first, 65520), TB_ERR_OUT_OF_RANGE);
  TB_ASSERT_STATUS(tb_tensor_set_f64(t, 1, first, -1e10), TB_ERR_OUT_OF_RANGE);
  TB_ASSERT_STATUS(tb_tensor_set_i64(t, 1, first, 70000), TB_ERR_OUT_OF_RANGE);
  TB_ASSERT_F64_EQUAL(get_f64(t), 0.333251953125);
  TB_ASSERT_OK(tb_tensor_set_i64(t, 1, first, -2049));
  TB_ASSERT_F64_EQUAL(get_f64(t), -2048);
  tb_tensor_unref(t);
}

static void bf16_rounds_to_nearest_even(void **state) {
  (void)state;
  tb_tensor *t = new_vector(TB_DTYPE_BF16, 1, TB_MEMORY_HEAP);
  TB_ASSERT_F64_EQUAL(round_trip(t, 1.0), 1.0);
  TB_ASSERT_F64_EQUAL(round_trip(t, 0.1), 0.10009765625);   /* 0x3dcd */
  TB_ASSERT_F64_EQUAL(round_trip(t, 1.0 / 3), 0.333984375); /* 0x3eab */
  TB_ASSERT_F64_EQUAL(round_trip(t, 257), 256);             /* tie: to even */
  TB_ASSERT_F64_EQUAL(round_trip(t, 259), 260);             /* tie: to even */
  TB_ASSERT_F64_EQUAL(round_trip(t, 1e30), 1.0002555517425873e30);
  const double largest = 3.3895313892515355e38; /* 0x7f7f */
  TB_ASSERT_F64_EQUAL(round_trip(t, largest), largest);
  uint16_t bits;
  TB_ASSERT_OK(tb_tensor_read_bytes(&bits, sizeof bits, t));
  assert_int_equal(bits, 0x7f7f);
  TB_ASSERT_STATUS(tb_tensor_set_f64(t, 1, first, 3.4e38), TB_ERR_OUT_OF_RANGE);
  TB_ASSERT_STATUS(tb_tensor_set_f64(t, 1, first, FLT_MAX),
                   TB_ERR_OUT_OF_RANGE);
  TB_ASSERT_STATUS(tb_tensor_set_f64(t, 1, first, 1e39), TB_ERR_OUT_OF_RANGE);
  TB_ASSERT_F64_EQUAL(get_f64(t), largest);
  tb_tensor_unref(t);
}

static void f32_and_f64(void **state) {
  (void)state;
  tb_tensor *f32 = new_vector(TB_DTYPE_F32, 1, TB_MEMORY_HEAP);
  TB_ASSERT_F64_EQUAL(round_trip(f32, 0.1), (double)0.1f);
  TB_ASSERT_F64_EQUAL(round_trip(f32, FLT_MAX), FLT_MAX);
  TB_ASSERT_F64_EQUAL(round_trip(f32, 16777217), 16777216);
  TB_ASSERT_OK(tb_tensor_set_i64(f32, 1, first, 16777219));
  TB_ASSERT_F64_EQUAL(get_f64(f32), 16777220);
  TB_ASSERT_STATUS(tb_tensor_set_f64(f32, 1, first, 1e39), TB_ERR_OUT_OF_RANGE);
  TB_ASSERT_STATUS(tb_tensor_set_f64(f32, 1, first, -DBL_MAX),
                   TB_ERR_OUT_OF_RANGE);
  tb_tensor_unref(f32);

  tb_tensor *f64 = new_vector(TB_DTYPE_F64, 1, TB_MEMORY_HEAP);
  const double exact[] = {0.1, DBL_MAX, -DBL_MAX, DBL_MIN, 0x1p-1074, -0.0};
  for (size_t i = 0; i < sizeof exact / sizeof *exact; i++)
    TB_ASSERT_F64_EQUAL(round_trip(f64, exact[i]), exact[i]);
  TB_ASSERT_OK(tb_tensor_set_i64(f64, 1, first, INT64_MAX));
  TB_ASSERT_F64_EQUAL(get_f64(f64), 9223372036854775808.0);
  tb_tensor_unref(f64);
}

static void floats_store_nan_and_infinities(void **state) {
  (void)state;
  const tb_dtype floats[] = {TB_DTYPE_F16, TB_DTYPE_BF16, TB_DTYPE_F32,
                             TB_DTYPE_F64};
  for (size_t i = 0; i < sizeof floats / sizeof *floats; i++) {
    tb_tensor *t = new_vector(floats[i], 1, TB_MEMORY_HEAP);
    assert_true(isnan(round_trip(t, NAN)));
    assert_true(isnan(round_trip(t, -NAN)));
    TB_ASSERT_F64_EQUAL(round_trip(t, INFINITY), INFINITY);
    TB_ASSERT_F64_EQUAL(round_trip(t, -INFINITY), -INFINITY);
    /* Floats have no i64 reading. */
    int64_t untouched = 5;
    TB_ASSERT_STATUS(tb_tensor_get_i64(&untouched, t, 1, first), TB_ERR_DTYPE);
    assert_int_equal(untouched, 5);
    tb_tensor_unref(t);
  }
}

static void indices_are_checked(void **state) {
  (void)state;
  const int64_t shape[] = {2, 3};
  tb_tensor *t;
  TB_ASSERT_OK(tb_tensor_new(&t, TB_DTYPE_I16, 2, shape, NULL));
  const int64_t good[] = {1, 2, 0};
  TB_ASSERT_OK(tb_tensor_set_i64(t, 2, good, 5));

  double f = 42;
  int64_t i = 42;
  /* nindex must equal ndim, both ways. */
  TB_ASSERT_STATUS(tb_tensor_get_f64(&f, t, 1, good), TB_ERR_SHAPE);
  TB_ASSERT_STATUS(tb_tensor_get_i64(&i, t, 3, good), TB_ERR_SHAPE);
  TB_ASSERT_STATUS(tb_tensor_set_f64(t, 0, NULL, 1), TB_ERR_SHAPE);
  TB_ASSERT_STATUS(tb_tensor_set_i64(t, 3, good, 1), TB_ERR_SHAPE);

  const int64_t outside[][2] = {{2, 0},  {0, 3},         {-1, 0},
                                {0, -1}, {INT64_MAX, 0}, {0, INT64_MIN}};
  for (size_t k = 0; k < sizeof outside / sizeof *outside; k++) {
    TB_ASSERT_STATUS(tb_tensor_get_f64(&f, t, 2, outside[k]),
                     TB_ERR_OUT_OF_RANGE);
    TB_ASSERT_STATUS(tb_tensor_get_i64(&i, t, 2, outside[k]),
                     TB_ERR_OUT_OF_RANGE);
    TB_ASSERT_STATUS(tb_tensor_set_f64(t, 2, outside[k], 1),
                     TB_ERR_OUT_OF_RANGE);
    TB_ASSERT_STATUS(tb_tensor_set_i64(t, 2, outside[k], 1),
                     TB_ERR_OUT_OF_RANGE);
  }
  TB_ASSERT_STATUS(tb_tensor_get_f64(NULL, t, 2, good),
                   TB_ERR_INVALID_ARGUMENT);
  TB_ASSERT_STATUS(tb_tensor_get_i64(NULL, t, 2, good),
                   TB_ERR_INVALID_ARGUMENT);
  TB_ASSERT_STATUS(tb_tensor_get_f64(&f, NULL, 2, good),
                   TB_ERR_INVALID_ARGUMENT);
  TB_ASSERT_STATUS(tb_tensor_get_i64(&i, NULL, 2, good),
                   TB_ERR_INVALID_ARGUMENT);
  TB_ASSERT_STATUS(tb_tensor_get_f64(&f, t, 2, NULL), TB_ERR_INVALID_ARGUMENT);
  TB_ASSERT_STATUS(tb_tensor_get_i64(&i, t, 2, NULL), TB_ERR_INVALID_ARGUMENT);
  TB_ASSERT_STATUS(tb_tensor_set_f64(NULL, 2, good, 1),
                   TB_ERR_INVALID_ARGUMENT);
  TB_ASSERT_STATUS(tb_tensor_set_i64(NULL, 2, good, 1),
                   TB_ERR_INVALID_ARGUMENT);
  TB_ASSERT_STATUS(tb_tensor_set_f64(t, 2, NULL, 1), TB_ERR_INVALID_ARGUMENT);
  TB_ASSERT_STATUS(tb_tensor_set_i64(t, 2, NULL, 1), TB_ERR_INVALID_ARGUMENT);
  TB_ASSERT_F64_EQUAL(f, 42);
  assert_int_equal(i, 42);

  /* Only the element at `good` was ever written. */
  int16_t all[6];
  TB_ASSERT_OK(tb_tensor_read_bytes(all, sizeof all, t));
  const int16_t expected[6] = {0, 0, 0, 0, 0, 5};
  assert_memory_equal(all, expected, sizeof all);
  tb_tensor_unref(t);
}

static void strided_element_access(void **state) {
  (void)state;
  const int64_t shape[] = {3, 4};
  tb_tensor *base = tb_test_arange(TB_DTYPE_I32, 2, shape, TB_MEMORY_SHM);
  tb_buffer *buffer = tb_tensor_buffer(base);
  tb_tensor *transposed;
  const int64_t view_shape[] = {4, 3}, strides[] = {1, 4};
  TB_ASSERT_OK(tb_tensor_from_buffer(&transposed, buffer, 0, TB_DTYPE_I32, 2,
                                     view_shape, strides));
  const int64_t at[] = {3, 1}; /* element 3 + 4 of the base */
  int64_t value;
  TB_ASSERT_OK(tb_tensor_get_i64(&value, transposed, 2, at));
  assert_int_equal(value, 7);
  TB_ASSERT_OK(tb_tensor_set_i64(transposed, 2, at, -7));
  const int64_t base_at[] = {1, 3};
  TB_ASSERT_OK(tb_tensor_get_i64(&value, base, 2, base_at));
  assert_int_equal(value, -7);
  tb_tensor_unref(transposed);
  tb_buffer_unref(buffer);
  tb_tensor_unref(base);
}

static const tb_memory copy_kinds[] = {TB_MEMORY_HEAP, TB_MEMORY_SHM};

static void contiguous_byte_copies(void **state) {
  (void)state;
  for (size_t k = 0; k < 2; k++) {
    const int64_t shape[] = {2, 5};
    tb_alloc_options opts = tb_test_options(copy_kinds[k]);
    tb_tensor *t;
    TB_ASSERT_OK(tb_tensor_new(&t, TB_DTYPE_U16, 2, shape, &opts));
    uint16_t in[10], out[10];
    for (int i = 0; i < 10; i++)
      in[i] = (uint16_t)(1000 + i);
    TB_ASSERT_OK(tb_tensor_write_bytes(t, in, sizeof in));
    TB_ASSERT_OK(tb_tensor_read_bytes(out, sizeof out, t));
    assert_memory_equal(in, out, sizeof in);
    const int64_t at[] = {1, 4};
    int64_t value;
    TB_ASSERT_OK(tb_tensor_get_i64(&value, t, 2, at));
    assert_int_equal(value, 1009);
    tb_tensor_unref(t);
  }
}

static void strided_byte_copies(void **state) {
  (void)state;
  for (size_t k = 0; k < 2; k++) {
    const int64_t shape[] = {3, 4};
    tb_tensor *base = tb_test_arange(TB_DTYPE_I32, 2, shape, copy_kinds[k]);
    tb_buffer *buffer = tb_tensor_buffer(base);
    tb_tensor *transposed;
    const int64_t view_shape[] = {4, 3}, strides[] = {1, 4};
    TB_ASSERT_OK(tb_tensor_from_buffer(&transposed, buffer, 0, TB_DTYPE_I32, 2,
                                       view_shape, strides));
    int32_t out[12];
    TB_ASSERT_OK(tb_tensor_read_bytes(out, sizeof out, transposed));
    const int32_t read_expected[12] = {0, 4, 8, 1, 5, 9, 2, 6, 10, 3, 7, 11};
    assert_memory_equal(out, read_expected, sizeof out);

    /* Writing 0..11 in the view's row-major order puts view element (i, j)
     * = 3i + j at base position i + 4j. */
    int32_t in[12];
    for (int i = 0; i < 12; i++)
      in[i] = i;
    TB_ASSERT_OK(tb_tensor_write_bytes(transposed, in, sizeof in));
    TB_ASSERT_OK(tb_tensor_read_bytes(out, sizeof out, base));
    const int32_t write_expected[12] = {0, 3, 6, 9, 1, 4, 7, 10, 2, 5, 8, 11};
    assert_memory_equal(out, write_expected, sizeof out);

    /* A broadcast view reads its one row again and again. */
    tb_tensor *repeated;
    const int64_t repeated_shape[] = {3, 2}, broadcast[] = {0, 1};
    TB_ASSERT_OK(tb_tensor_from_buffer(&repeated, buffer, 2 * 4, TB_DTYPE_I32,
                                       2, repeated_shape, broadcast));
    int32_t six[6];
    TB_ASSERT_OK(tb_tensor_read_bytes(six, sizeof six, repeated));
    const int32_t repeated_expected[6] = {6, 9, 6, 9, 6, 9};
    assert_memory_equal(six, repeated_expected, sizeof six);
    tb_tensor_unref(repeated);
    tb_tensor_unref(transposed);
    tb_buffer_unref(buffer);
    tb_tensor_unref(base);
  }
}

static void strided_byte_copies_in_three_dims(void **state) {
  (void)state;
  const int64_t shape[] = {2, 3, 4};
  tb_tensor *base = tb_test_arange(TB_DTYPE_U8, 3, shape, TB_MEMORY_HEAP);
  tb_tensor *even_columns, *middle;
  TB_ASSERT_OK(tb_tensor_slice(&even_columns, base, 2, 0, 4, 2));
  TB_ASSERT_OK(tb_tensor_slice(&middle, even_columns, 1, 1, 2, 1));
  uint8_t out[12];
  TB_ASSERT_OK(tb_tensor_read_bytes(out, sizeof out, even_columns));
  const uint8_t even_expected[12] = {0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22};
  assert_memory_equal(out, even_expected, sizeof out);
  TB_ASSERT_OK(tb_tensor_read_bytes(out, 4, middle));
  const uint8_t middle_expected[4] = {4, 6, 16, 18};
  assert_memory_equal(out, middle_expected, 4);

  const uint8_t in[4] = {100, 101, 102, 103};
  TB_ASSERT_OK(tb_tensor_write_bytes(middle, in, sizeof in));
  uint8_t all[24];
  TB_ASSERT_OK(tb_tensor_read_bytes(all, sizeof all, base));
  const uint8_t all_expected[24] = {0,   1,  2,   3,  100, 5,  101, 7,
                                    8,   9,  10,  11, 12,  13, 14,  15,
                                    102, 17, 103, 19, 20,  21, 22,  23};
  assert_memory_equal(all, all_expected, sizeof all);
  tb_tensor_unref(middle);
  tb_tensor_unref(even_columns);
  tb_tensor_unref(base);
}

static void byte_copy_sizes_are_checked(void **state) {
  (void)state;
  const int64_t shape[] = {4};
  tb_tensor *t = tb_test_arange(TB_DTYPE_U32, 1, shape, TB_MEMORY_HEAP);
  uint8_t out[24];
  memset(out, 0xcc, sizeof out);
  TB_ASSERT_STATUS(tb_tensor_read_bytes(out, 15, t), TB_ERR_OUT_OF_RANGE);
  TB_ASSERT_STATUS(tb_tensor_read_bytes(out, 0, t), TB_ERR_OUT_OF_RANGE);
  TB_ASSERT_STATUS(tb_tensor_read_bytes(NULL, 0, t), TB_ERR_OUT_OF_RANGE);
  for (size_t i = 0; i < sizeof out; i++)
    assert_int_equal(out[i], 0xcc);
  /* A larger destination gets exactly nbytes. */
  TB_ASSERT_OK(tb_tensor_read_bytes(out, sizeof out, t));
  const uint32_t expected[4] = {0, 1, 2, 3};
  assert_memory_equal(out, expected, 16);
  for (size_t i = 16; i < sizeof out; i++)
    assert_int_equal(out[i], 0xcc);

  const uint32_t in[5] = {9, 9, 9, 9, 9};
  TB_ASSERT_STATUS(tb_tensor_write_bytes(t, in, 15), TB_ERR_OUT_OF_RANGE);
  TB_ASSERT_STATUS(tb_tensor_write_bytes(t, in, 17), TB_ERR_OUT_OF_RANGE);
  TB_ASSERT_STATUS(tb_tensor_write_bytes(t, in, sizeof in),
                   TB_ERR_OUT_OF_RANGE);
  TB_ASSERT_STATUS(tb_tensor_write_bytes(t, NULL, 0), TB_ERR_OUT_OF_RANGE);
  TB_ASSERT_STATUS(tb_tensor_write_bytes(t, NULL, 16), TB_ERR_INVALID_ARGUMENT);
  TB_ASSERT_STATUS(tb_tensor_read_bytes(NULL, 16, t), TB_ERR_INVALID_ARGUMENT);
  TB_ASSERT_STATUS(tb_tensor_write_bytes(NULL, in, 16),
                   TB_ERR_INVALID_ARGUMENT);
  TB_ASSERT_STATUS(tb_tensor_read_bytes(out, 16, NULL),
                   TB_ERR_INVALID_ARGUMENT);
  uint32_t now[4];
  TB_ASSERT_OK(tb_tensor_read_bytes(now, sizeof now, t));
  assert_memory_equal(now, expected, sizeof now);
  tb_tensor_unref(t);
}

static void scalar_byte_copies(void **state) {
  (void)state;
  tb_tensor *t;
  TB_ASSERT_OK(tb_tensor_new(&t, TB_DTYPE_F64, 0, NULL, NULL));
  const double in = -1.25;
  TB_ASSERT_OK(tb_tensor_write_bytes(t, &in, sizeof in));
  double out = 0;
  TB_ASSERT_OK(tb_tensor_read_bytes(&out, sizeof out, t));
  TB_ASSERT_F64_EQUAL(out, -1.25);
  double value;
  TB_ASSERT_OK(tb_tensor_get_f64(&value, t, 0, NULL));
  TB_ASSERT_F64_EQUAL(value, -1.25);
  tb_tensor_unref(t);
}

static void read_only_tensors_refuse_writes(void **state) {
  (void)state;
  const int16_t memory[2] = {-5, 6};
  tb_buffer *buffer;
  TB_ASSERT_OK(tb_buffer_wrap(&buffer, (void *)memory, sizeof memory,
                              TB_BUFFER_READ_ONLY, NULL, NULL));
  const int64_t shape[] = {2};
  tb_tensor *t;
  TB_ASSERT_OK(
      tb_tensor_from_buffer(&t, buffer, 0, TB_DTYPE_I16, 1, shape, NULL));
  assert_int_equal(get_i64(t), -5);
  TB_ASSERT_F64_EQUAL(get_f64(t), -5.0);
  int16_t out[2];
  TB_ASSERT_OK(tb_tensor_read_bytes(out, sizeof out, t));
  assert_memory_equal(out, memory, sizeof out);
  TB_ASSERT_STATUS(tb_tensor_set_i64(t, 1, first, 1), TB_ERR_READ_ONLY);
  TB_ASSERT_STATUS(tb_tensor_set_f64(t, 1, first, 1), TB_ERR_READ_ONLY);
  TB_ASSERT_STATUS(tb_tensor_write_bytes(t, out, sizeof out), TB_ERR_READ_ONLY);
  assert_int_equal(memory[0], -5);
  tb_tensor_unref(t);
  tb_buffer_unref(buffer);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      TB_TEST(integers_hold_their_whole_range),
      TB_TEST(integers_refuse_values_outside_their_range),
      TB_TEST(eight_bit_boundaries),
      TB_TEST(sixty_four_bit_boundaries),
      TB_TEST(bool_takes_zero_and_one),
      TB_TEST(f16_rounds_to_nearest_even),
      TB_TEST(bf16_rounds_to_nearest_even),
      TB_TEST(f32_and_f64),
      TB_TEST(floats_store_nan_and_infinities),
      TB_TEST(indices_are_checked),
      TB_TEST(strided_element_access),
      TB_TEST(contiguous_byte_copies),
      TB_TEST(strided_byte_copies),
      TB_TEST(strided_byte_copies_in_three_dims),
      TB_TEST(byte_copy_sizes_are_checked),
      TB_TEST(scalar_byte_copies),
      TB_TEST(read_only_tensors_refuse_writes),
  };
  return TB_RUN_TESTS(tests);
}
