/* Descriptors for callers with their own transport: tb_tensor_export and
 * tb_tensor_import, with everything a forged or broken description can do
 * wrong. */
#include "tb_forge.h"
#include "tb_peer.h"

#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define DESCRIPTOR_CAPACITY 4096

/* A descriptor and its fds, as a caller's transport would carry them. */
typedef struct exported {
  uint8_t bytes[DESCRIPTOR_CAPACITY];
  size_t length;
  int fds[TB_DESCRIPTOR_MAX_FDS];
  size_t nfds;
} exported;

static void export_tensor(exported *out, const tb_tensor *tensor,
                          uint32_t flags) {
  out->nfds = TB_DESCRIPTOR_MAX_FDS;
  TB_ASSERT_OK(tb_tensor_export(out->bytes, sizeof out->bytes, &out->length,
                                out->fds, &out->nfds, tensor, flags));
  assert_true(out->nfds >= 1 && out->nfds <= TB_DESCRIPTOR_MAX_FDS);
  assert_true(out->length > 0 && out->length <= sizeof out->bytes);
  for (size_t i = 0; i < out->nfds; i++)
    assert_true(fcntl(out->fds[i], F_GETFD) & FD_CLOEXEC);
}

static void close_exported(exported *e) {
  for (size_t i = 0; i < e->nfds; i++)
    close(e->fds[i]);
  e->nfds = 0;
}

/* Found by fuzz.descriptor: a description whose strides put its first
 * element INT64_MIN bytes before element 0 is refused (it once negated
 * that extent, which is undefined). */
static void extreme_negative_extent_is_refused(void **state) {
  (void)state;
  static const uint8_t description[] = {
      0x01, 0x00, 0x00, 0x00, 0x54, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
      0x00, 0x00, 0x00, 0x00, 0x04, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
      0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
      0x00, 0x00, 0x00, 0x00, 0x05, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
      0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
      0x00, 0x00, 0x00, 0xe0, 0x3f, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
      0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x0a, 0x00, 0x00, 0x00,
      0x05, 0x00, 0x00, 0x00, 0x03, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
      0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
      0x00, 0x00, 0x00, 0x00, 0x40, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
      0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xc0, 0x00, 0x00, 0x00,
      0x00, 0x00, 0x00, 0x00, 0x40, 0x00, 0x80, 0x00, 0x00, 0x00, 0x00, 0x00,
      0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
      0x00, 0x00, 0x00, 0x00, 0x91, 0x50, 0x49, 0x48, 0x38, 0x18,
  };
  int fd = memfd_create("page", MFD_CLOEXEC | MFD_ALLOW_SEALING);
  assert_true(fd >= 0);
  assert_int_equal(ftruncate(fd, 4096), 0);
  tb_tensor *tensor = NULL;
  assert_int_not_equal(
      tb_tensor_import(&tensor, description, sizeof description, &fd, 1),
      TB_OK);
  assert_null(tensor);
  close(fd);
}

static void round_trip_keeps_the_description_and_shares_bytes(void **state) {
  (void)state;
  tb_tensor *view = tb_forge_example(0);
  assert_int_equal(tb_tensor_offset(view), (8 + 1) * 2);
  assert_int_equal(tb_tensor_stride(view, 1), 2);
  exported e;
  export_tensor(&e, view, 0);
  tb_tensor *imported = NULL;
  TB_ASSERT_OK(tb_tensor_import(&imported, e.bytes, e.length, e.fds, e.nfds));
  close_exported(&e); /* the import dup'd what it keeps */
  tb_forge_assert_same_tensor(imported, view);
  assert_int_equal(tb_tensor_memory(imported), TB_MEMORY_SHM);
  assert_false(tb_tensor_read_only(imported));
  assert_true(tb_tensor_buffer_id(imported) != tb_tensor_buffer_id(view));

  /* One memory: a write through either is seen through the other. */
  const int64_t index[] = {4, 3};
  TB_ASSERT_OK(tb_tensor_set_i64(imported, 2, index, -1234));
  int64_t value = 0;
  TB_ASSERT_OK(tb_tensor_get_i64(&value, view, 2, index));
  assert_int_equal(value, -1234);
  TB_ASSERT_OK(tb_tensor_set_i64(view, 2, index, 4321));
  TB_ASSERT_OK(tb_tensor_get_i64(&value, imported, 2, index));
  assert_int_equal(value, 4321);
  tb_tensor_unref(imported);
  tb_tensor_unref(view);
}

static void round_trip_of_every_example(void **state) {
  (void)state;
  for (size_t i = 0; i < TB_FORGE_EXAMPLE_COUNT; i++) {
    tb_tensor *original = tb_forge_example(i);
    exported e;
    export_tensor(&e, original, 0);
    tb_tensor *imported = NULL;
    TB_ASSERT_OK(tb_tensor_import(&imported, e.bytes, e.length, e.fds, e.nfds));
    close_exported(&e);
    tb_forge_assert_same_tensor(imported, original);
    tb_tensor_unref(imported);
    tb_tensor_unref(original);
  }
}

static void read_only_export_gives_a_read_only_import(void **state) {
  (void)state;
  const int64_t shape[] = {64};
  tb_tensor *tensor = tb_test_arange(TB_DTYPE_U8, 1, shape, TB_MEMORY_SHM);
  tb_map *writer = NULL;
  TB_ASSERT_OK(tb_tensor_map(&writer, tensor, TB_MAP_WRITE));
  exported e;
  export_tensor(&e, tensor, TB_SEND_READ_ONLY);
  /* The fd itself now refuses writable mappings. */
  assert_ptr_equal(
      mmap(NULL, 64, PROT_READ | PROT_WRITE, MAP_SHARED, e.fds[0], 0),
      MAP_FAILED);
  tb_tensor *imported = NULL;
  TB_ASSERT_OK(tb_tensor_import(&imported, e.bytes, e.length, e.fds, e.nfds));
  close_exported(&e);
  assert_true(tb_tensor_read_only(imported));
  tb_map *map = TB_SENTINEL(tb_map);
  TB_ASSERT_STATUS(tb_tensor_map(&map, imported, TB_MAP_WRITE),
                   TB_ERR_READ_ONLY);
  assert_ptr_equal(map, TB_SENTINEL(tb_map));
  /* The exporter's existing mapping still writes, and the reader sees it. */
  ((uint8_t *)tb_map_data(writer))[5] = 200;
  int64_t value = 0;
  const int64_t index[] = {5};
  TB_ASSERT_OK(tb_tensor_get_i64(&value, imported, 1, index));
  assert_int_equal(value, 200);
  tb_map_free(writer);
  tb_tensor_unref(imported);
  tb_tensor_unref(tensor);
}

static void too_small_a_capacity_says_what_is_needed(void **state) {
  (void)state;
  tb_tensor *view = tb_forge_example(0);
  uint8_t bytes[DESCRIPTOR_CAPACITY];
  size_t needed = 0, nfds = 99;
  int fds[TB_DESCRIPTOR_MAX_FDS] = {-7, -7, -7, -7};
  TB_ASSERT_STATUS(tb_tensor_export(NULL, 0, &needed, fds, &nfds, view, 0),
                   TB_ERR_OUT_OF_RANGE);
  assert_true(needed > 0 && needed < sizeof bytes);
  assert_int_equal(fds[0], -7);
  assert_int_equal(nfds, 99);
  size_t length = 0;
  TB_ASSERT_STATUS(
      tb_tensor_export(bytes, needed - 1, &length, fds, &nfds, view, 0),
      TB_ERR_OUT_OF_RANGE);
  assert_int_equal(length, needed);
  assert_int_equal(fds[0], -7);
  nfds = TB_DESCRIPTOR_MAX_FDS;
  TB_ASSERT_OK(tb_tensor_export(bytes, needed, &length, fds, &nfds, view, 0));
  assert_int_equal(length, needed);
  assert_int_equal(nfds, 1);
  close(fds[0]);
  tb_tensor_unref(view);
}

/* *nfds is the capacity of fds: too small, it says how many are needed and
 * no fd is left open (TB_ASSERT_STATUS counts them). */
static void too_few_fds_say_how_many_are_needed(void **state) {
  (void)state;
  tb_tensor *view = tb_forge_example(0);
  uint8_t bytes[DESCRIPTOR_CAPACITY];
  size_t length = 0, nfds = 0;
  int fds[TB_DESCRIPTOR_MAX_FDS] = {-7, -7, -7, -7};
  TB_ASSERT_STATUS(
      tb_tensor_export(bytes, sizeof bytes, &length, NULL, &nfds, view, 0),
      TB_ERR_OUT_OF_RANGE);
  assert_int_equal(nfds, 1);
  /* A NULL fds with room claimed is refused. */
  TB_ASSERT_STATUS(
      tb_tensor_export(bytes, sizeof bytes, &length, NULL, &nfds, view, 0),
      TB_ERR_INVALID_ARGUMENT);
  TB_ASSERT_OK(
      tb_tensor_export(bytes, sizeof bytes, &length, fds, &nfds, view, 0));
  assert_int_equal(nfds, 1);
  assert_int_equal(fds[1], -7);
  close(fds[0]);
  tb_tensor_unref(view);
}

static void export_refuses_what_import_would(void **state) {
  (void)state;
  /* A name so long that the description passes the 64 KiB that
   * tb_tensor_import (and a channel) accepts. */
  tb_tensor *tensor = tb_forge_example(1);
  char *name = test_malloc(70001);
  memset(name, 'n', 70000);
  name[70000] = '\0';
  TB_ASSERT_OK(tb_tensor_set_name(tensor, name));
  test_free(name);
  size_t capacity = 100000, length = 0, nfds = 99;
  uint8_t *bytes = test_malloc(capacity);
  int fds[TB_DESCRIPTOR_MAX_FDS] = {-7, -7, -7, -7};
  TB_ASSERT_STATUS(
      tb_tensor_export(bytes, capacity, &length, fds, &nfds, tensor, 0),
      TB_ERR_OUT_OF_RANGE);
  assert_true(length > 65536 && length < capacity);
  assert_int_equal(fds[0], -7);
  assert_int_equal(nfds, 99);
  test_free(bytes);
  tb_tensor_unref(tensor);
}

static void export_rejects_bad_arguments(void **state) {
  (void)state;
  const int64_t shape[] = {4};
  tb_tensor *heap = tb_test_arange(TB_DTYPE_U8, 1, shape, TB_MEMORY_HEAP);
  tb_tensor *shm = tb_test_arange(TB_DTYPE_U8, 1, shape, TB_MEMORY_SHM);
  uint8_t bytes[DESCRIPTOR_CAPACITY];
  size_t length = 0, nfds = TB_DESCRIPTOR_MAX_FDS;
  int fds[TB_DESCRIPTOR_MAX_FDS];
  TB_ASSERT_STATUS(
      tb_tensor_export(bytes, sizeof bytes, &length, fds, &nfds, heap, 0),
      TB_ERR_UNSUPPORTED);
  TB_ASSERT_STATUS(
      tb_tensor_export(bytes, sizeof bytes, &length, fds, &nfds, shm, 0x2),
      TB_ERR_INVALID_ARGUMENT);
  TB_ASSERT_STATUS(
      tb_tensor_export(bytes, sizeof bytes, &length, fds, &nfds, NULL, 0),
      TB_ERR_INVALID_ARGUMENT);
  TB_ASSERT_STATUS(
      tb_tensor_export(NULL, sizeof bytes, &length, fds, &nfds, shm, 0),
      TB_ERR_INVALID_ARGUMENT);
  TB_ASSERT_STATUS(
      tb_tensor_export(bytes, sizeof bytes, NULL, fds, &nfds, shm, 0),
      TB_ERR_INVALID_ARGUMENT);
  TB_ASSERT_STATUS(
      tb_tensor_export(bytes, sizeof bytes, &length, NULL, &nfds, shm, 0),
      TB_ERR_INVALID_ARGUMENT);
  TB_ASSERT_STATUS(
      tb_tensor_export(bytes, sizeof bytes, &length, fds, NULL, shm, 0),
      TB_ERR_INVALID_ARGUMENT);
  tb_tensor_unref(heap);
  tb_tensor_unref(shm);
}

static void import_rejects_bad_arguments_and_fd_counts(void **state) {
  (void)state;
  const int64_t shape[] = {4};
  tb_tensor *tensor = tb_test_arange(TB_DTYPE_U8, 1, shape, TB_MEMORY_SHM);
  exported e;
  export_tensor(&e, tensor, 0);
  tb_tensor *imported = TB_SENTINEL(tb_tensor);
  TB_ASSERT_STATUS(tb_tensor_import(NULL, e.bytes, e.length, e.fds, 1),
                   TB_ERR_INVALID_ARGUMENT);
  TB_ASSERT_STATUS(tb_tensor_import(&imported, NULL, e.length, e.fds, 1),
                   TB_ERR_INVALID_ARGUMENT);
  TB_ASSERT_STATUS(tb_tensor_import(&imported, e.bytes, e.length, NULL, 1),
                   TB_ERR_INVALID_ARGUMENT);
  /* The description names one fd: none, or two, is a protocol error. */
  TB_ASSERT_STATUS(tb_tensor_import(&imported, e.bytes, e.length, NULL, 0),
                   TB_ERR_PROTOCOL);
  const int two[] = {e.fds[0], e.fds[0]};
  TB_ASSERT_STATUS(tb_tensor_import(&imported, e.bytes, e.length, two, 2),
                   TB_ERR_PROTOCOL);
  /* A closed fd in its place. */
  const int closed[] = {999};
  assert_int_equal(fcntl(999, F_GETFD), -1);
  TB_ASSERT_STATUS(tb_tensor_import(&imported, e.bytes, e.length, closed, 1),
                   TB_ERR_BAD_FD);
  assert_ptr_equal(imported, TB_SENTINEL(tb_tensor));
  close_exported(&e);
  tb_tensor_unref(tensor);
}

static void import_refuses_garbage(void **state) {
  (void)state;
  int fd = tb_forge_memfd(TB_FORGE_FD_BYTES, MFD_ALLOW_SEALING);
  tb_tensor *imported = TB_SENTINEL(tb_tensor);
  static const uint8_t nothing[1];
  TB_ASSERT_STATUS(tb_tensor_import(&imported, nothing, 0, &fd, 1),
                   TB_ERR_PROTOCOL);
  GRand *rand = g_rand_new_with_seed(20240601);
  uint8_t bytes[512];
  for (int i = 0; i < 2000; i++) {
    size_t length = (size_t)g_rand_int_range(rand, 1, sizeof bytes);
    for (size_t j = 0; j < length; j++)
      bytes[j] = (uint8_t)g_rand_int(rand);
    TB_ASSERT_STATUS(tb_tensor_import(&imported, bytes, length, &fd, 1),
                     TB_ERR_PROTOCOL);
  }
  g_rand_free(rand);

  /* Longer than any descriptor may be, whatever it holds. */
  g_autoptr(GBytes) valid = tb_forge_tensor(NULL, 0);
  uint8_t *huge = test_calloc(70000, 1);
  memcpy(huge, g_bytes_get_data(valid, NULL), g_bytes_get_size(valid));
  TB_ASSERT_STATUS(tb_tensor_import(&imported, huge, 70000, &fd, 1),
                   TB_ERR_PROTOCOL);
  test_free(huge);
  assert_ptr_equal(imported, TB_SENTINEL(tb_tensor));
  close(fd);
}

static void import_refuses_forged_descriptions(void **state) {
  (void)state;
  int fd = tb_forge_memfd(TB_FORGE_FD_BYTES, MFD_ALLOW_SEALING);
  tb_tensor *imported = NULL;
  /* The unchanged description is valid: each case fails for its change. */
  g_autoptr(GBytes) valid = tb_forge_tensor(NULL, 0);
  TB_ASSERT_OK(tb_tensor_import(&imported, g_bytes_get_data(valid, NULL),
                                g_bytes_get_size(valid), &fd, 1));
  assert_int_equal(tb_tensor_dim(imported, 0), 16);
  tb_tensor_unref(imported);

  imported = TB_SENTINEL(tb_tensor);
  for (size_t i = 0; i < tb_forge_case_count; i++) {
    const tb_forge_case *forged = &tb_forge_cases[i];
    g_autoptr(GBytes) message = tb_forge_case_message(forged);
    print_message("forged: %s\n", forged->what);
    TB_ASSERT_STATUS(tb_tensor_import(&imported,
                                      g_bytes_get_data(message, NULL),
                                      g_bytes_get_size(message), &fd, 1),
                     forged->expected);
  }
  g_autoptr(GBytes) non_normal = tb_forge_non_normal();
  TB_ASSERT_STATUS(tb_tensor_import(&imported,
                                    g_bytes_get_data(non_normal, NULL),
                                    g_bytes_get_size(non_normal), &fd, 1),
                   TB_ERR_PROTOCOL);
  assert_ptr_equal(imported, TB_SENTINEL(tb_tensor));
  close(fd);
}

static void import_refuses_fds_that_are_not_shared_memory(void **state) {
  (void)state;
  g_autoptr(GBytes) valid = tb_forge_tensor(NULL, 0);
  int fds[8];
  const char *what[8];
  size_t n = tb_forge_wrong_fds(fds, what, 8);
  tb_tensor *imported = TB_SENTINEL(tb_tensor);
  for (size_t i = 0; i < n; i++) {
    print_message("fd: %s\n", what[i]);
    TB_ASSERT_STATUS(tb_tensor_import(&imported, g_bytes_get_data(valid, NULL),
                                      g_bytes_get_size(valid), &fds[i], 1),
                     TB_ERR_BAD_FD);
    close(fds[i]);
  }
  /* Shared memory, but shorter than the description says. */
  int short_fd = tb_forge_memfd(63, MFD_ALLOW_SEALING);
  TB_ASSERT_STATUS(tb_tensor_import(&imported, g_bytes_get_data(valid, NULL),
                                    g_bytes_get_size(valid), &short_fd, 1),
                   TB_ERR_OUT_OF_RANGE);
  close(short_fd);
  assert_ptr_equal(imported, TB_SENTINEL(tb_tensor));
}

static void import_seals_what_it_maps(void **state) {
  (void)state;
  /* An unsealed memfd is sealed against shrinking on import, so that the
   * holder of the other fd cannot truncate it under the mapping. */
  int fd = tb_forge_memfd(TB_FORGE_FD_BYTES, MFD_ALLOW_SEALING);
  assert_int_equal(fcntl(fd, F_GET_SEALS) & F_SEAL_SHRINK, 0);
  g_autoptr(GBytes) valid = tb_forge_tensor(NULL, 0);
  tb_tensor *imported = NULL;
  TB_ASSERT_OK(tb_tensor_import(&imported, g_bytes_get_data(valid, NULL),
                                g_bytes_get_size(valid), &fd, 1));
  assert_true(fcntl(fd, F_GET_SEALS) & F_SEAL_SHRINK);
  assert_int_equal(ftruncate(fd, 0), -1);
  uint8_t bytes[64];
  TB_ASSERT_OK(tb_tensor_read_bytes(bytes, sizeof bytes, imported));
  for (size_t i = 0; i < sizeof bytes; i++)
    assert_int_equal(bytes[i], i);
  tb_tensor_unref(imported);
  close(fd);
}

static void import_takes_the_edges_of_the_fd(void **state) {
  (void)state;
  int fd = tb_forge_memfd(TB_FORGE_FD_BYTES, MFD_ALLOW_SEALING);
  /* Each of these reaches exactly the last byte, or none. */
  static const struct {
    const char *what;
    tb_forge_edit edits[3];
  } edges[] = {
      {"the last 64 bytes", {{TB_FORGE_OFFSET, "uint64 4032"}}},
      {"all 4096 bytes", {{TB_FORGE_SHAPE, "[int64 1024, 4]"}}},
      {"backwards from the last byte",
       {{TB_FORGE_OFFSET, "uint64 4095"},
        {TB_FORGE_STRIDES, "[int64 -4, -1]"}}},
      {"no element, at the end",
       {{TB_FORGE_SHAPE, "[int64 0, 4]"}, {TB_FORGE_OFFSET, "uint64 4096"}}},
      {"a scalar in the last byte",
       {{TB_FORGE_SHAPE, "@ax []"},
        {TB_FORGE_STRIDES, "@ax []"},
        {TB_FORGE_OFFSET, "uint64 4095"}}},
      {"named, read-only",
       {{TB_FORGE_NAME, "@ms just 'a name'"}, {TB_FORGE_READ_ONLY, "true"}}},
  };
  for (size_t i = 0; i < sizeof edges / sizeof *edges; i++) {
    g_autoptr(GBytes) message = tb_forge_tensor(edges[i].edits, 3);
    tb_tensor *imported = NULL;
    print_message("edge: %s\n", edges[i].what);
    TB_ASSERT_OK(tb_tensor_import(&imported, g_bytes_get_data(message, NULL),
                                  g_bytes_get_size(message), &fd, 1));
    tb_tensor_unref(imported);
  }
  close(fd);
}

static void import_refuses_more_fds_than_buffers(void **state) {
  (void)state;
  /* Up to eight fds, of which the description names the last one: the
   * rest are unaccounted for, whatever their number. */
  int fds[8];
  for (size_t i = 0; i < 8; i++)
    fds[i] = tb_forge_memfd(TB_FORGE_FD_BYTES, MFD_ALLOW_SEALING);
  tb_tensor *imported = TB_SENTINEL(tb_tensor);
  for (size_t nfds = 2; nfds <= 8; nfds++) {
    g_autofree char *buffers = g_strdup_printf("@a(it) [(%zu, 7)]", nfds - 1);
    const tb_forge_edit edit = {TB_FORGE_BUFFERS, buffers};
    g_autoptr(GBytes) message = tb_forge_tensor(&edit, 1);
    print_message("%zu fds, naming the last\n", nfds);
    TB_ASSERT_STATUS(tb_tensor_import(&imported,
                                      g_bytes_get_data(message, NULL),
                                      g_bytes_get_size(message), fds, nfds),
                     TB_ERR_PROTOCOL);
  }
  assert_ptr_equal(imported, TB_SENTINEL(tb_tensor));
  for (size_t i = 0; i < 8; i++)
    close(fds[i]);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      TB_TEST(round_trip_keeps_the_description_and_shares_bytes),
      TB_TEST(extreme_negative_extent_is_refused),
      TB_TEST(round_trip_of_every_example),
      TB_TEST(read_only_export_gives_a_read_only_import),
      TB_TEST(too_small_a_capacity_says_what_is_needed),
      TB_TEST(too_few_fds_say_how_many_are_needed),
      TB_TEST(export_refuses_what_import_would),
      TB_TEST(export_rejects_bad_arguments),
      TB_TEST(import_rejects_bad_arguments_and_fd_counts),
      TB_TEST(import_refuses_garbage),
      TB_TEST(import_refuses_forged_descriptions),
      TB_TEST(import_refuses_fds_that_are_not_shared_memory),
      TB_TEST(import_seals_what_it_maps),
      TB_TEST(import_takes_the_edges_of_the_fd),
      TB_TEST(import_refuses_more_fds_than_buffers),
  };
  return TB_RUN_TESTS(tests);
}
