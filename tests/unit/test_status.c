/* Status codes, the per-thread last error and errno, versions and the live
 * handle count. */
#include "tb_test.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

/* The values are ABI: written out here, not taken from the map, so that a
 * renumbering fails this test. */
static const struct {
  tb_status value;
  const char *name;
} pinned_statuses[] = {
    {0, "TB_OK"},
    {-1, "TB_ERR_INVALID_ARGUMENT"},
    {-2, "TB_ERR_SHAPE"},
    {-3, "TB_ERR_DTYPE"},
    {-4, "TB_ERR_OUT_OF_RANGE"},
    {-5, "TB_ERR_NO_MEMORY"},
    {-6, "TB_ERR_SYSTEM"},
    {-7, "TB_ERR_UNSUPPORTED"},
    {-8, "TB_ERR_BAD_FD"},
    {-9, "TB_ERR_READ_ONLY"},
    {-10, "TB_ERR_LAYOUT"},
    {-11, "TB_ERR_VERSION"},
    {-12, "TB_ERR_TIMEOUT"},
    {-13, "TB_ERR_CLOSED"},
    {-14, "TB_ERR_PROTOCOL"},
};

static void status_values_are_pinned(void **state) {
  (void)state;
  size_t count = sizeof pinned_statuses / sizeof *pinned_statuses;
  for (size_t i = 0; i < count; i++)
    assert_string_equal(tb_status_name(pinned_statuses[i].value),
                        pinned_statuses[i].name);
  /* The map only ever grows at its end: 0, -1, -2, ... without gaps. */
  int expected = 0;
#define CHECK_APPENDED_(name, value, text)                                     \
  assert_int_equal(value, expected);                                           \
  expected--;
  TB_STATUS_MAP(CHECK_APPENDED_)
#undef CHECK_APPENDED_
  assert_true((size_t)-expected >= count);
}

static void status_names_and_messages_come_from_the_map(void **state) {
  (void)state;
#define CHECK_STATUS_(name, value, text)                                       \
  assert_int_equal(name, value);                                               \
  assert_string_equal(tb_status_name(value), #name);                           \
  assert_string_equal(tb_status_message(value), text);
  TB_STATUS_MAP(CHECK_STATUS_)
#undef CHECK_STATUS_
}

static void status_unknown_values_have_a_name_and_message(void **state) {
  (void)state;
  tb_status lowest = 0;
#define FIND_LOWEST_(name, value, text)                                        \
  lowest = value < lowest ? value : lowest;
  TB_STATUS_MAP(FIND_LOWEST_)
#undef FIND_LOWEST_
  const tb_status unknown[] = {1, 42, lowest - 1, -1000, INT_MIN, INT_MAX};
  for (size_t i = 0; i < sizeof unknown / sizeof *unknown; i++) {
    assert_string_equal(tb_status_name(unknown[i]), "TB_ERR_UNKNOWN");
    const char *message = tb_status_message(unknown[i]);
    assert_non_null(message);
    assert_true(message[0] != '\0');
#define DIFFERS_FROM_KNOWN_(name, value, text)                                 \
  assert_string_not_equal(message, text);
    TB_STATUS_MAP(DIFFERS_FROM_KNOWN_)
#undef DIFFERS_FROM_KNOWN_
  }
}

static void last_error_names_function_and_argument(void **state) {
  (void)state;
  tb_dtype dtype = TB_DTYPE_U8;
  TB_ASSERT_STATUS(tb_dtype_from_name(&dtype, "complex64"), TB_ERR_DTYPE);
  assert_non_null(strstr(tb_last_error(), "complex64"));
  assert_int_equal(dtype, TB_DTYPE_U8);

  TB_ASSERT_STATUS(tb_dtype_from_name(NULL, "u8"), TB_ERR_INVALID_ARGUMENT);
  assert_non_null(strstr(tb_last_error(), "out"));
  assert_int_equal(tb_last_errno(), 0);
}

/* The thread side of last_error_is_per_thread. */
static void *fail_in_fresh_thread(void *arg) {
  char *seen_first = arg;
  /* Captured before this thread fails: must be the empty string. */
  snprintf(seen_first, 256, "%s", tb_last_error());
  tb_memory memory;
  if (tb_memory_from_name(&memory, "vram") != TB_ERR_INVALID_ARGUMENT ||
      strstr(tb_last_error(), "tb_memory_from_name") == NULL ||
      tb_last_errno() != 0)
    return "the thread's own failure was not recorded";
  return NULL;
}

static void last_error_is_per_thread(void **state) {
  (void)state;
  tb_dtype dtype;
  TB_ASSERT_STATUS(tb_dtype_from_name(&dtype, "main-thread"), TB_ERR_DTYPE);
  char main_message[256];
  snprintf(main_message, sizeof main_message, "%s", tb_last_error());

  char thread_first[256] = "not run";
  pthread_t thread;
  assert_int_equal(
      pthread_create(&thread, NULL, fail_in_fresh_thread, thread_first), 0);
  void *thread_result;
  assert_int_equal(pthread_join(thread, &thread_result), 0);
  if (thread_result != NULL)
    fail_msg("%s", (const char *)thread_result);
  assert_string_equal(thread_first, "");
  /* The thread's failure did not touch this thread's message. */
  assert_string_equal(tb_last_error(), main_message);
}

static void last_errno_is_set_only_by_system_errors(void **state) {
  (void)state;
  if (!tb_memory_available(TB_MEMORY_SHM)) {
    TB_SKIP("no memfd in this process, nothing to provoke");
  }
  tb_alloc_options opts = tb_test_options(TB_MEMORY_SHM);
  tb_buffer *buffer = TB_SENTINEL(tb_buffer);
  tb_tensor *tensor = TB_SENTINEL(tb_tensor);
  const int64_t shape[] = {16};

  tb_test_fd_exhaustion exhaustion;
  tb_test_fds_exhaust(&exhaustion);
  TB_ASSERT_STATUS(tb_buffer_new(&buffer, 4096, &opts), TB_ERR_SYSTEM);
  int buffer_errno = tb_last_errno();
  char buffer_message[256];
  snprintf(buffer_message, sizeof buffer_message, "%s", tb_last_error());
  TB_ASSERT_STATUS(tb_tensor_new(&tensor, TB_DTYPE_F32, 1, shape, &opts),
                   TB_ERR_SYSTEM);
  int tensor_errno = tb_last_errno();
  tb_test_fds_restore(&exhaustion);

  assert_int_equal(buffer_errno, EMFILE);
  assert_int_equal(tensor_errno, EMFILE);
  assert_non_null(strstr(buffer_message, "memfd_create"));
  assert_ptr_equal(buffer, TB_SENTINEL(tb_buffer));
  assert_ptr_equal(tensor, TB_SENTINEL(tb_tensor));

  /* The next, non-system failure clears the errno. */
  TB_ASSERT_STATUS(tb_buffer_new(NULL, 1, NULL), TB_ERR_INVALID_ARGUMENT);
  assert_int_equal(tb_last_errno(), 0);

  /* With fds back, the same request succeeds. */
  TB_ASSERT_OK(tb_buffer_new(&buffer, 4096, &opts));
  assert_int_equal(tb_buffer_memory(buffer), TB_MEMORY_SHM);
  tb_buffer_unref(buffer);
}

static void version_matches_the_headers(void **state) {
  (void)state;
  assert_int_equal(tb_version_number(), TB_VERSION_NUMBER);
  assert_int_equal(tb_version_number(), TB_VERSION_MAJOR * 10000 +
                                            TB_VERSION_MINOR * 100 +
                                            TB_VERSION_PATCH);
  assert_string_equal(tb_version_string(), TB_VERSION_STRING);
  char expected[32];
  snprintf(expected, sizeof expected, "%d.%d.%d", TB_VERSION_MAJOR,
           TB_VERSION_MINOR, TB_VERSION_PATCH);
  assert_string_equal(tb_version_string(), expected);
}

static void live_objects_counts_every_handle(void **state) {
  (void)state;
  int64_t start = tb_live_objects();
  tb_buffer *buffer;
  TB_ASSERT_OK(tb_buffer_new(&buffer, 8, NULL));
  assert_int_equal(tb_live_objects(), start + 1);
  tb_buffer_ref(buffer); /* references are not handles */
  assert_int_equal(tb_live_objects(), start + 1);

  tb_tensor *tensor;
  const int64_t shape[] = {8};
  TB_ASSERT_OK(
      tb_tensor_from_buffer(&tensor, buffer, 0, TB_DTYPE_U8, 1, shape, NULL));
  assert_int_equal(tb_live_objects(), start + 2);
  tb_map *map;
  TB_ASSERT_OK(tb_tensor_map(&map, tensor, TB_MAP_READ));
  assert_int_equal(tb_live_objects(), start + 3);

  tb_map_free(map);
  tb_tensor_unref(tensor);
  tb_buffer_unref(buffer);
  assert_int_equal(tb_live_objects(), start + 1);
  tb_buffer_unref(buffer);
  assert_int_equal(tb_live_objects(), start);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      TB_TEST(status_values_are_pinned),
      TB_TEST(status_names_and_messages_come_from_the_map),
      TB_TEST(status_unknown_values_have_a_name_and_message),
      TB_TEST(last_error_names_function_and_argument),
      TB_TEST(last_error_is_per_thread),
      TB_TEST(last_errno_is_set_only_by_system_errors),
      TB_TEST(version_matches_the_headers),
      TB_TEST(live_objects_counts_every_handle),
  };
  return TB_RUN_TESTS(tests);
}
