/* Buffers: allocation, wrapping caller memory, references, getters and the
 * id registry. */
#include "tb_test.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Whether every byte of the buffer is `value`, read through a u8 tensor. */
static bool buffer_all_bytes(tb_buffer *buffer, uint8_t value) {
  uint64_t size = tb_buffer_size(buffer);
  tb_tensor *bytes;
  const int64_t shape[] = {(int64_t)size};
  TB_ASSERT_OK(
      tb_tensor_from_buffer(&bytes, buffer, 0, TB_DTYPE_U8, 1, shape, NULL));
  tb_map *map;
  TB_ASSERT_OK(tb_tensor_map(&map, bytes, TB_MAP_READ));
  const uint8_t *data = tb_map_data(map);
  bool all = true;
  for (uint64_t i = 0; i < size && all; i++)
    all = data[i] == value;
  tb_map_free(map);
  tb_tensor_unref(bytes);
  return all;
}

static void new_buffers_are_zeroed_and_described(void **state) {
  (void)state;
  const tb_memory kinds[] = {TB_MEMORY_HEAP, TB_MEMORY_SHM};
  /* Sizes on both sides of the heap's switch to mmap. */
  const uint64_t sizes[] = {0, 1, 100, 4096, 256 * 1024, 3 << 20};
  for (size_t k = 0; k < sizeof kinds / sizeof *kinds; k++) {
    tb_alloc_options opts = tb_test_options(kinds[k]);
    for (size_t s = 0; s < sizeof sizes / sizeof *sizes; s++) {
      tb_buffer *buffer = NULL;
      TB_ASSERT_OK(tb_buffer_new(&buffer, sizes[s], &opts));
      assert_int_equal(tb_buffer_size(buffer), sizes[s]);
      assert_int_equal(tb_buffer_memory(buffer), kinds[k]);
      assert_false(tb_buffer_read_only(buffer));
      assert_true(tb_buffer_id(buffer) != 0);
      assert_true(tb_buffer_alive(tb_buffer_id(buffer)));
      assert_true(buffer_all_bytes(buffer, 0));
      tb_buffer_unref(buffer);
    }
  }
}

static void new_rejects_bad_arguments(void **state) {
  (void)state;
  tb_buffer *buffer = TB_SENTINEL(tb_buffer);
  TB_ASSERT_STATUS(tb_buffer_new(NULL, 16, NULL), TB_ERR_INVALID_ARGUMENT);

  tb_alloc_options opts = TB_ALLOC_OPTIONS_INIT;
  opts.alignment = 48;
  TB_ASSERT_STATUS(tb_buffer_new(&buffer, 16, &opts), TB_ERR_INVALID_ARGUMENT);
  opts.alignment = UINT64_C(1) << 31;
  TB_ASSERT_STATUS(tb_buffer_new(&buffer, 16, &opts), TB_ERR_INVALID_ARGUMENT);
  opts = (tb_alloc_options)TB_ALLOC_OPTIONS_INIT;
  opts.flags = 0x80;
  TB_ASSERT_STATUS(tb_buffer_new(&buffer, 16, &opts), TB_ERR_INVALID_ARGUMENT);
  assert_ptr_equal(buffer, TB_SENTINEL(tb_buffer));
}

static void new_reports_impossible_sizes_as_no_memory(void **state) {
  (void)state;
  /* 2^62 bytes is more address space than x86-64 or arm64 user space has. */
  const uint64_t sizes[] = {UINT64_MAX, UINT64_C(1) << 62};
  const tb_memory kinds[] = {TB_MEMORY_HEAP, TB_MEMORY_SHM};
  for (size_t k = 0; k < sizeof kinds / sizeof *kinds; k++) {
    tb_alloc_options opts = tb_test_options(kinds[k]);
    for (size_t s = 0; s < sizeof sizes / sizeof *sizes; s++) {
      tb_buffer *buffer = TB_SENTINEL(tb_buffer);
      TB_ASSERT_STATUS(tb_buffer_new(&buffer, sizes[s], &opts),
                       TB_ERR_NO_MEMORY);
      assert_ptr_equal(buffer, TB_SENTINEL(tb_buffer));
    }
  }
}

typedef struct destroy_record {
  int calls;
  void *user_data;
  pthread_t thread;
} destroy_record;

static void record_destroy(void *user_data) {
  destroy_record *record = user_data;
  record->calls++;
  record->user_data = user_data;
  record->thread = pthread_self();
}

static void wrap_shares_caller_memory(void **state) {
  (void)state;
  uint8_t memory[32] = {0};
  destroy_record record = {0};
  tb_buffer *buffer = NULL;
  TB_ASSERT_OK(tb_buffer_wrap(&buffer, memory, sizeof memory, 0, record_destroy,
                              &record));
  assert_int_equal(tb_buffer_size(buffer), sizeof memory);
  assert_int_equal(tb_buffer_memory(buffer), TB_MEMORY_HEAP);
  assert_false(tb_buffer_read_only(buffer));
  assert_true(tb_buffer_alive(tb_buffer_id(buffer)));

  tb_tensor *tensor;
  const int64_t shape[] = {32};
  TB_ASSERT_OK(
      tb_tensor_from_buffer(&tensor, buffer, 0, TB_DTYPE_U8, 1, shape, NULL));
  /* No copy: writes through either side show on the other. */
  memory[5] = 42;
  int64_t value;
  const int64_t five[] = {5}, six[] = {6};
  TB_ASSERT_OK(tb_tensor_get_i64(&value, tensor, 1, five));
  assert_int_equal(value, 42);
  TB_ASSERT_OK(tb_tensor_set_i64(tensor, 1, six, 7));
  assert_int_equal(memory[6], 7);

  tb_buffer_unref(buffer);
  assert_int_equal(record.calls, 0); /* the tensor still holds it */
  tb_tensor_unref(tensor);
  assert_int_equal(record.calls, 1);
  assert_ptr_equal(record.user_data, &record);
}

static void wrap_without_destroy_or_data(void **state) {
  (void)state;
  uint8_t memory[8];
  tb_buffer *buffer;
  TB_ASSERT_OK(tb_buffer_wrap(&buffer, memory, sizeof memory, 0, NULL, NULL));
  tb_buffer_unref(buffer);

  /* NULL data is fine for an empty buffer. */
  destroy_record record = {0};
  TB_ASSERT_OK(tb_buffer_wrap(&buffer, NULL, 0, 0, record_destroy, &record));
  assert_int_equal(tb_buffer_size(buffer), 0);
  tb_buffer_unref(buffer);
  assert_int_equal(record.calls, 1);
}

static void wrap_failure_does_not_call_destroy(void **state) {
  (void)state;
  uint8_t memory[8];
  destroy_record record = {0};
  tb_buffer *buffer = TB_SENTINEL(tb_buffer);
  TB_ASSERT_STATUS(tb_buffer_wrap(&buffer, NULL, 8, 0, record_destroy, &record),
                   TB_ERR_INVALID_ARGUMENT);
  TB_ASSERT_STATUS(tb_buffer_wrap(&buffer, memory, sizeof memory, 0x2,
                                  record_destroy, &record),
                   TB_ERR_INVALID_ARGUMENT);
  TB_ASSERT_STATUS(tb_buffer_wrap(&buffer, memory, sizeof memory,
                                  TB_BUFFER_READ_ONLY | 0x100, record_destroy,
                                  &record),
                   TB_ERR_INVALID_ARGUMENT);
  TB_ASSERT_STATUS(
      tb_buffer_wrap(NULL, memory, sizeof memory, 0, record_destroy, &record),
      TB_ERR_INVALID_ARGUMENT);
  assert_int_equal(record.calls, 0);
  assert_ptr_equal(buffer, TB_SENTINEL(tb_buffer));
}

static void read_only_wrap_refuses_writes(void **state) {
  (void)state;
  const uint8_t memory[4] = {1, 2, 3, 4};
  tb_buffer *buffer;
  TB_ASSERT_OK(tb_buffer_wrap(&buffer, (void *)memory, sizeof memory,
                              TB_BUFFER_READ_ONLY, NULL, NULL));
  assert_true(tb_buffer_read_only(buffer));
  tb_tensor *tensor;
  const int64_t shape[] = {4};
  TB_ASSERT_OK(
      tb_tensor_from_buffer(&tensor, buffer, 0, TB_DTYPE_U8, 1, shape, NULL));
  assert_true(tb_tensor_read_only(tensor));

  tb_map *map = TB_SENTINEL(tb_map);
  TB_ASSERT_STATUS(tb_tensor_map(&map, tensor, TB_MAP_WRITE), TB_ERR_READ_ONLY);
  TB_ASSERT_STATUS(tb_tensor_map(&map, tensor, TB_MAP_READ | TB_MAP_WRITE),
                   TB_ERR_READ_ONLY);
  assert_ptr_equal(map, TB_SENTINEL(tb_map));
  const int64_t index[] = {0};
  TB_ASSERT_STATUS(tb_tensor_set_i64(tensor, 1, index, 9), TB_ERR_READ_ONLY);
  const uint8_t replacement[4] = {9, 9, 9, 9};
  TB_ASSERT_STATUS(tb_tensor_write_bytes(tensor, replacement, 4),
                   TB_ERR_READ_ONLY);
  assert_int_equal(memory[0], 1);

  /* Reading is fine. */
  TB_ASSERT_OK(tb_tensor_map(&map, tensor, TB_MAP_READ));
  assert_ptr_equal(tb_map_data(map), memory);
  tb_map_free(map);
  tb_tensor_unref(tensor);
  tb_buffer_unref(buffer);
}

static void *unref_in_thread(void *buffer) {
  tb_buffer_unref(buffer);
  return NULL;
}

static void
destroy_runs_on_the_thread_that_drops_the_last_reference(void **state) {
  (void)state;
  uint8_t memory[8];
  destroy_record record = {0};
  tb_buffer *buffer;
  TB_ASSERT_OK(tb_buffer_wrap(&buffer, memory, sizeof memory, 0, record_destroy,
                              &record));
  pthread_t thread;
  assert_int_equal(pthread_create(&thread, NULL, unref_in_thread, buffer), 0);
  assert_int_equal(pthread_join(thread, NULL), 0);
  assert_int_equal(record.calls, 1);
  assert_true(pthread_equal(record.thread, thread));
}

static void ref_and_unref(void **state) {
  (void)state;
  assert_null(tb_buffer_ref(NULL));
  tb_buffer_unref(NULL);

  int64_t start = tb_live_objects();
  tb_buffer *buffer;
  TB_ASSERT_OK(tb_buffer_new(&buffer, 8, NULL));
  uint64_t id = tb_buffer_id(buffer);
  assert_ptr_equal(tb_buffer_ref(buffer), buffer);
  assert_ptr_equal(tb_buffer_ref(buffer), buffer);
  tb_buffer_unref(buffer);
  tb_buffer_unref(buffer);
  assert_true(tb_buffer_alive(id));
  assert_int_equal(tb_live_objects(), start + 1);
  tb_buffer_unref(buffer);
  assert_false(tb_buffer_alive(id));
  assert_int_equal(tb_live_objects(), start);
}

enum { STRESS_THREADS = 4, STRESS_ROUNDS = 20000 };

static void *ref_unref_many_times(void *buffer) {
  for (int i = 0; i < STRESS_ROUNDS; i++)
    tb_buffer_unref(tb_buffer_ref(buffer));
  return NULL;
}

static void refs_are_thread_safe(void **state) {
  (void)state;
  destroy_record record = {0};
  uint8_t memory[8];
  tb_buffer *buffer;
  TB_ASSERT_OK(tb_buffer_wrap(&buffer, memory, sizeof memory, 0, record_destroy,
                              &record));
  pthread_t threads[STRESS_THREADS];
  for (int i = 0; i < STRESS_THREADS; i++)
    assert_int_equal(
        pthread_create(&threads[i], NULL, ref_unref_many_times, buffer), 0);
  for (int i = 0; i < STRESS_THREADS; i++)
    assert_int_equal(pthread_join(threads[i], NULL), 0);
  assert_int_equal(record.calls, 0);
  tb_buffer_unref(buffer);
  assert_int_equal(record.calls, 1);
}

static void getters_of_null(void **state) {
  (void)state;
  assert_int_equal(tb_buffer_size(NULL), 0);
  assert_int_equal(tb_buffer_memory(NULL), TB_MEMORY_AUTO);
  assert_int_equal(tb_buffer_id(NULL), 0);
  assert_false(tb_buffer_read_only(NULL));
}

static void ids_are_unique_and_die_with_the_last_reference(void **state) {
  (void)state;
  assert_false(tb_buffer_alive(0));
  assert_false(tb_buffer_alive(UINT64_MAX));

  enum { N = 16 };
  tb_buffer *buffers[N];
  uint64_t ids[N];
  for (int i = 0; i < N; i++) {
    TB_ASSERT_OK(tb_buffer_new(&buffers[i], 1, NULL));
    ids[i] = tb_buffer_id(buffers[i]);
    if (i > 0)
      assert_true(ids[i] > ids[i - 1]);
  }
  /* A tensor keeps its buffer, and so its id, alive. */
  tb_tensor *tensor;
  TB_ASSERT_OK(tb_tensor_from_buffer(&tensor, buffers[0], 0, TB_DTYPE_U8, 0,
                                     NULL, NULL));
  assert_int_equal(tb_tensor_buffer_id(tensor), ids[0]);
  for (int i = 0; i < N; i++)
    tb_buffer_unref(buffers[i]);
  assert_true(tb_buffer_alive(ids[0]));
  for (int i = 1; i < N; i++)
    assert_false(tb_buffer_alive(ids[i]));
  tb_tensor_unref(tensor);
  assert_false(tb_buffer_alive(ids[0]));

  /* Freed ids are never handed out again. */
  tb_buffer *later;
  TB_ASSERT_OK(tb_buffer_new(&later, 0, NULL));
  assert_true(tb_buffer_id(later) > ids[N - 1]);
  tb_buffer_unref(later);
}

/* Writes `value` to every byte of the buffer; returns its CPU address. */
static const void *buffer_fill(tb_buffer *buffer, uint8_t value) {
  tb_tensor *bytes;
  const int64_t shape[] = {(int64_t)tb_buffer_size(buffer)};
  TB_ASSERT_OK(
      tb_tensor_from_buffer(&bytes, buffer, 0, TB_DTYPE_U8, 1, shape, NULL));
  tb_map *map;
  TB_ASSERT_OK(tb_tensor_map(&map, bytes, TB_MAP_WRITE));
  void *data = tb_map_data(map);
  memset(data, value, (size_t)shape[0]);
  tb_map_free(map);
  tb_tensor_unref(bytes);
  return data;
}

/* Allocates a heap buffer of `size` bytes with `flags`. */
static tb_buffer *heap_buffer(uint64_t size, uint32_t flags) {
  tb_alloc_options opts = tb_test_options(TB_MEMORY_HEAP);
  opts.flags = flags;
  tb_buffer *buffer;
  TB_ASSERT_OK(tb_buffer_new(&buffer, size, &opts));
  return buffer;
}

static void reused_heap_blocks_are_zeroed(void **state) {
  (void)state;
  (void)tb_memory_trim();
  /* Below, at and above the huge-page threshold, and a smaller block taking
   * a larger one's place (only part of it may be written again). */
  const uint64_t sizes[] = {300 * 1024, 2 << 20, 3 << 20, (3 << 20) - 4096};
  for (size_t s = 0; s < sizeof sizes / sizeof *sizes; s++) {
    tb_buffer *first = heap_buffer(sizes[s], 0);
    const void *where = buffer_fill(first, 0xa5);
    tb_buffer_unref(first);
    tb_buffer *second = heap_buffer(sizes[s], 0);
    assert_ptr_equal(buffer_fill(second, 0), where); /* the cached block */
    tb_buffer_unref(second);
    tb_buffer *third = heap_buffer(sizes[s], 0);
    assert_true(buffer_all_bytes(third, 0));
    buffer_fill(third, 0x5a);
    tb_buffer_unref(third);
    tb_buffer *fourth = heap_buffer(sizes[s], 0);
    assert_true(buffer_all_bytes(fourth, 0));
    tb_buffer_unref(fourth);
  }
  /* A larger block written in full, then reused by a smaller request and
   * then by a larger one: the bytes the smaller one did not clear are
   * cleared by the next. */
  (void)tb_memory_trim();
  tb_buffer *large = heap_buffer(4 << 20, 0);
  buffer_fill(large, 0x11);
  tb_buffer_unref(large);
  tb_buffer *smaller = heap_buffer(3 << 20, TB_ALLOC_UNINITIALIZED);
  tb_buffer_unref(smaller);
  tb_buffer *again = heap_buffer(4 << 20, 0);
  assert_true(buffer_all_bytes(again, 0));
  tb_buffer_unref(again);
}

static void uninitialized_heap_blocks_are_not_cleared(void **state) {
  (void)state;
  (void)tb_memory_trim();
  const uint64_t sizes[] = {1 << 20, 8 << 20};
  for (size_t s = 0; s < sizeof sizes / sizeof *sizes; s++) {
    tb_buffer *first = heap_buffer(sizes[s], 0);
    const void *where = buffer_fill(first, 0x77);
    tb_buffer_unref(first);
    tb_buffer *reused = heap_buffer(sizes[s], TB_ALLOC_UNINITIALIZED);
    assert_true(buffer_all_bytes(reused, 0x77));
    assert_ptr_equal(buffer_fill(reused, 0x77), where);
    tb_buffer_unref(reused);
  }
  /* Other kinds accept the flag and stay zeroed. */
  tb_alloc_options opts = tb_test_options(TB_MEMORY_SHM);
  opts.flags = TB_ALLOC_UNINITIALIZED;
  tb_buffer *shm;
  TB_ASSERT_OK(tb_buffer_new(&shm, 1 << 20, &opts));
  assert_true(buffer_all_bytes(shm, 0));
  tb_buffer_unref(shm);
  (void)tb_memory_trim();
}

static void heap_cache_is_bounded_and_trimmed(void **state) {
  (void)state;
  (void)tb_memory_trim();
  assert_int_equal(tb_memory_trim(), 0);
  /* Twenty blocks freed: sixteen are kept. */
  enum { N = 20 };
  tb_buffer *buffers[N];
  for (int i = 0; i < N; i++)
    buffers[i] = heap_buffer(1 << 20, 0);
  for (int i = 0; i < N; i++)
    tb_buffer_unref(buffers[i]);
  assert_int_equal(tb_memory_trim(), 16u << 20);
  assert_int_equal(tb_memory_trim(), 0);
  /* Ten 20 MiB blocks: no more than 128 MiB is kept. */
  for (int i = 0; i < 10; i++)
    buffers[i] = heap_buffer(20 << 20, 0);
  for (int i = 0; i < 10; i++)
    tb_buffer_unref(buffers[i]);
  uint64_t kept = tb_memory_trim();
  assert_true(kept > 0 && kept <= 128u << 20);
  /* A block larger than the whole cache is not kept. */
  tb_buffer_unref(heap_buffer(129u << 20, 0));
  assert_int_equal(tb_memory_trim(), 0);
  /* Small blocks are the system allocator's. */
  tb_buffer_unref(heap_buffer(4096, 0));
  assert_int_equal(tb_memory_trim(), 0);
}

static void auto_falls_back_and_says_why(void **state) {
  (void)state;
  if (getenv("TENSORBUF_MEMORY") != NULL) {
    print_message("skipped: TENSORBUF_MEMORY forces one kind\n");
    skip();
  }
  /* Every kind fails: the error names each kind's failure in order. */
  tb_buffer *buffer = TB_SENTINEL(tb_buffer);
  TB_ASSERT_STATUS(tb_buffer_new(&buffer, UINT64_C(1) << 62, NULL),
                   TB_ERR_NO_MEMORY);
  assert_ptr_equal(buffer, TB_SENTINEL(tb_buffer));
  const char *message = tb_last_error();
  const char *dma = strstr(message, "dma: ");
  const char *shm = strstr(message, "shm: ");
  const char *heap = strstr(message, "heap: ");
  assert_true(dma != NULL && shm != NULL && heap != NULL);
  assert_true(dma < shm && shm < heap);
  assert_non_null(strstr(tb_memory_auto_skipped(), "heap: "));
  /* A size one kind can take: the query says what came before it. */
  TB_ASSERT_OK(tb_buffer_new(&buffer, 64, NULL));
  tb_memory got = tb_buffer_memory(buffer);
  const char *skipped = tb_memory_auto_skipped();
  if (got == TB_MEMORY_DMA)
    assert_string_equal(skipped, "");
  else
    assert_non_null(strstr(skipped, "dma: "));
  char label[16];
  snprintf(label, sizeof label, "; %s: ", tb_memory_name(got));
  assert_null(strstr(skipped, label));
  tb_buffer_unref(buffer);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      TB_TEST(new_buffers_are_zeroed_and_described),
      TB_TEST(new_rejects_bad_arguments),
      TB_TEST(new_reports_impossible_sizes_as_no_memory),
      TB_TEST(wrap_shares_caller_memory),
      TB_TEST(wrap_without_destroy_or_data),
      TB_TEST(wrap_failure_does_not_call_destroy),
      TB_TEST(read_only_wrap_refuses_writes),
      TB_TEST(destroy_runs_on_the_thread_that_drops_the_last_reference),
      TB_TEST(ref_and_unref),
      TB_TEST(refs_are_thread_safe),
      TB_TEST(getters_of_null),
      TB_TEST(ids_are_unique_and_die_with_the_last_reference),
      TB_TEST(reused_heap_blocks_are_zeroed),
      TB_TEST(uninitialized_heap_blocks_are_not_cleared),
      TB_TEST(heap_cache_is_bounded_and_trimmed),
      TB_TEST(auto_falls_back_and_says_why),
  };
  return TB_RUN_TESTS(tests);
}
