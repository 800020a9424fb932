/* CPU maps: modes, lifetime, idempotent unmap and the getters after it. */
#include "tb_test.h"

#include <string.h>

static const tb_memory kinds[] = {TB_MEMORY_HEAP, TB_MEMORY_SHM};

static tb_tensor *new_tensor(tb_memory memory) {
  tb_alloc_options opts = tb_test_options(memory);
  const int64_t shape[] = {4, 4};
  tb_tensor *t;
  TB_ASSERT_OK(tb_tensor_new(&t, TB_DTYPE_U32, 2, shape, &opts));
  return t;
}

static void every_mode_maps(void **state) {
  (void)state;
  const uint32_t modes[] = {TB_MAP_READ, TB_MAP_WRITE,
                            TB_MAP_READ | TB_MAP_WRITE};
  for (size_t k = 0; k < 2; k++) {
    tb_tensor *t = new_tensor(kinds[k]);
    for (size_t m = 0; m < 3; m++) {
      tb_map *map = NULL;
      TB_ASSERT_OK(tb_tensor_map(&map, t, modes[m]));
      assert_non_null(tb_map_data(map));
      assert_int_equal(tb_map_flags(map), modes[m]);
      assert_ptr_equal(tb_map_tensor(map), t);
      tb_map_free(map);
    }
    tb_tensor_unref(t);
  }
}

static void writes_through_a_map_are_the_tensor(void **state) {
  (void)state;
  for (size_t k = 0; k < 2; k++) {
    tb_tensor *t = new_tensor(kinds[k]);
    tb_map *map;
    TB_ASSERT_OK(tb_tensor_map(&map, t, TB_MAP_WRITE));
    uint32_t *data = tb_map_data(map);
    for (uint32_t i = 0; i < 16; i++)
      data[i] = i * 3;
    /* A second, concurrent map sees the same memory. */
    tb_map *reader;
    TB_ASSERT_OK(tb_tensor_map(&reader, t, TB_MAP_READ));
    assert_ptr_equal(tb_map_data(reader), data);
    tb_map_free(reader);
    tb_map_free(map);
    const int64_t at[] = {3, 3};
    int64_t value;
    TB_ASSERT_OK(tb_tensor_get_i64(&value, t, 2, at));
    assert_int_equal(value, 45);
    tb_tensor_unref(t);
  }
}

static void map_of_a_view_points_at_its_first_element(void **state) {
  (void)state;
  tb_tensor *t = new_tensor(TB_MEMORY_HEAP);
  tb_tensor *view;
  TB_ASSERT_OK(tb_tensor_slice(&view, t, 0, 2, 4, 1));
  tb_map *whole, *part;
  TB_ASSERT_OK(tb_tensor_map(&whole, t, TB_MAP_READ));
  TB_ASSERT_OK(tb_tensor_map(&part, view, TB_MAP_READ));
  assert_ptr_equal(tb_map_data(part), (uint8_t *)tb_map_data(whole) + 32);
  tb_map_free(part);
  tb_map_free(whole);
  tb_tensor_unref(view);
  tb_tensor_unref(t);
}

static void bad_modes_are_refused(void **state) {
  (void)state;
  tb_tensor *t = new_tensor(TB_MEMORY_HEAP);
  const uint32_t bad[] = {0, 0x4, TB_MAP_READ | 0x4, 0x80000000u, UINT32_MAX};
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    tb_map *map = TB_SENTINEL(tb_map);
    TB_ASSERT_STATUS(tb_tensor_map(&map, t, bad[i]), TB_ERR_INVALID_ARGUMENT);
    assert_ptr_equal(map, TB_SENTINEL(tb_map));
  }
  tb_map *map = TB_SENTINEL(tb_map);
  TB_ASSERT_STATUS(tb_tensor_map(NULL, t, TB_MAP_READ),
                   TB_ERR_INVALID_ARGUMENT);
  TB_ASSERT_STATUS(tb_tensor_map(&map, NULL, TB_MAP_READ),
                   TB_ERR_INVALID_ARGUMENT);
  assert_ptr_equal(map, TB_SENTINEL(tb_map));
  tb_tensor_unref(t);
}

static void map_keeps_the_tensor_alive(void **state) {
  (void)state;
  for (size_t k = 0; k < 2; k++) {
    int64_t start = tb_live_objects();
    tb_tensor *t = new_tensor(kinds[k]);
    uint64_t id = tb_tensor_buffer_id(t);
    tb_map *map;
    TB_ASSERT_OK(tb_tensor_map(&map, t, TB_MAP_READ | TB_MAP_WRITE));
    tb_tensor_unref(t);
    /* Buffer, tensor and map are all still there. */
    assert_int_equal(tb_live_objects(), start + 3);
    assert_true(tb_buffer_alive(id));
    uint32_t *data = tb_map_data(map);
    data[15] = 0xdeadbeef;
    assert_int_equal(data[15], 0xdeadbeef);
    tb_tensor *held = tb_map_tensor(map);
    assert_int_equal(tb_tensor_numel(held), 16);

    tb_map_unmap(map);
    /* The tensor went with the unmap; the handle stays until freed. */
    assert_false(tb_buffer_alive(id));
    assert_int_equal(tb_live_objects(), start + 1);
    tb_map_free(map);
    assert_int_equal(tb_live_objects(), start);
  }
}

static void unmap_is_idempotent(void **state) {
  (void)state;
  tb_tensor *t = new_tensor(TB_MEMORY_SHM);
  tb_map *map;
  TB_ASSERT_OK(tb_tensor_map(&map, t, TB_MAP_WRITE));
  tb_map_unmap(map);
  tb_map_unmap(map);
  assert_null(tb_map_data(map));
  assert_int_equal(tb_map_flags(map), 0);
  assert_null(tb_map_tensor(map));
  tb_map_unmap(map);
  tb_map_free(map);

  /* Free without unmap unmaps. */
  TB_ASSERT_OK(tb_tensor_map(&map, t, TB_MAP_READ));
  tb_map_free(map);
  tb_tensor_unref(t);
}

static void null_maps(void **state) {
  (void)state;
  tb_map_unmap(NULL);
  tb_map_free(NULL);
  assert_null(tb_map_data(NULL));
  assert_int_equal(tb_map_flags(NULL), 0);
  assert_null(tb_map_tensor(NULL));
}

static void maps_of_empty_tensors_and_scalars(void **state) {
  (void)state;
  for (size_t k = 0; k < 2; k++) {
    tb_alloc_options opts = tb_test_options(kinds[k]);
    const int64_t empty_shape[] = {0, 8};
    tb_tensor *empty, *scalar;
    TB_ASSERT_OK(tb_tensor_new(&empty, TB_DTYPE_F32, 2, empty_shape, &opts));
    TB_ASSERT_OK(tb_tensor_new(&scalar, TB_DTYPE_F32, 0, NULL, &opts));
    tb_map *map;
    TB_ASSERT_OK(tb_tensor_map(&map, empty, TB_MAP_READ | TB_MAP_WRITE));
    assert_int_equal(tb_map_flags(map), TB_MAP_READ | TB_MAP_WRITE);
    tb_map_free(map);
    TB_ASSERT_OK(tb_tensor_map(&map, scalar, TB_MAP_WRITE));
    *(float *)tb_map_data(map) = 1.5f;
    tb_map_free(map);
    double value;
    TB_ASSERT_OK(tb_tensor_get_f64(&value, scalar, 0, NULL));
    TB_ASSERT_F64_EQUAL(value, 1.5);
    tb_tensor_unref(scalar);
    tb_tensor_unref(empty);
  }
}

static void read_only_memory_maps_only_for_reading(void **state) {
  (void)state;
  const uint32_t memory[4] = {1, 2, 3, 4};
  tb_buffer *buffer;
  TB_ASSERT_OK(tb_buffer_wrap(&buffer, (void *)memory, sizeof memory,
                              TB_BUFFER_READ_ONLY, NULL, NULL));
  const int64_t shape[] = {4};
  tb_tensor *t;
  TB_ASSERT_OK(
      tb_tensor_from_buffer(&t, buffer, 0, TB_DTYPE_U32, 1, shape, NULL));
  tb_map *map = TB_SENTINEL(tb_map);
  TB_ASSERT_STATUS(tb_tensor_map(&map, t, TB_MAP_WRITE), TB_ERR_READ_ONLY);
  TB_ASSERT_STATUS(tb_tensor_map(&map, t, TB_MAP_READ | TB_MAP_WRITE),
                   TB_ERR_READ_ONLY);
  assert_ptr_equal(map, TB_SENTINEL(tb_map));
  TB_ASSERT_OK(tb_tensor_map(&map, t, TB_MAP_READ));
  assert_memory_equal(tb_map_data(map), memory, sizeof memory);
  tb_map_free(map);
  tb_tensor_unref(t);
  tb_buffer_unref(buffer);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      TB_TEST(every_mode_maps),
      TB_TEST(writes_through_a_map_are_the_tensor),
      TB_TEST(map_of_a_view_points_at_its_first_element),
      TB_TEST(bad_modes_are_refused),
      TB_TEST(map_keeps_the_tensor_alive),
      TB_TEST(unmap_is_idempotent),
      TB_TEST(null_maps),
      TB_TEST(maps_of_empty_tensors_and_scalars),
      TB_TEST(read_only_memory_maps_only_for_reading),
  };
  return TB_RUN_TESTS(tests);
}
