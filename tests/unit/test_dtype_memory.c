/* dtypes, memory kinds, allocation options and the TENSORBUF_MEMORY
 * override of TB_MEMORY_AUTO. */
#include "tb_test.h"

#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

static const struct {
  tb_dtype dtype;
  size_t size;
  const char *name;
} dtypes[] = {
    {TB_DTYPE_BOOL, 1, "bool"}, {TB_DTYPE_U8, 1, "u8"},
    {TB_DTYPE_I8, 1, "i8"},     {TB_DTYPE_U16, 2, "u16"},
    {TB_DTYPE_I16, 2, "i16"},   {TB_DTYPE_U32, 4, "u32"},
    {TB_DTYPE_I32, 4, "i32"},   {TB_DTYPE_U64, 8, "u64"},
    {TB_DTYPE_I64, 8, "i64"},   {TB_DTYPE_F16, 2, "f16"},
    {TB_DTYPE_BF16, 2, "bf16"}, {TB_DTYPE_F32, 4, "f32"},
    {TB_DTYPE_F64, 8, "f64"},
};
#define NDTYPES (sizeof dtypes / sizeof *dtypes)

static const char *const memory_names[] = {"auto", "heap",      "shm", "dma",
                                           "cuda", "cuda_host", "file"};
#define NMEMORY (sizeof memory_names / sizeof *memory_names)

static void dtype_sizes_names_and_parsing(void **state) {
  (void)state;
  assert_int_equal(NDTYPES, 13);
  for (size_t i = 0; i < NDTYPES; i++) {
    assert_int_equal(tb_dtype_size(dtypes[i].dtype), dtypes[i].size);
    assert_string_equal(tb_dtype_name(dtypes[i].dtype), dtypes[i].name);
    tb_dtype parsed = TB_DTYPE_INVALID;
    TB_ASSERT_OK(tb_dtype_from_name(&parsed, dtypes[i].name));
    assert_int_equal(parsed, dtypes[i].dtype);
  }
}

static void dtype_invalid_values_have_no_size_or_name(void **state) {
  (void)state;
  const int invalid[] = {TB_DTYPE_INVALID, TB_DTYPE_F64 + 1, 255, -1};
  for (size_t i = 0; i < sizeof invalid / sizeof *invalid; i++) {
    assert_int_equal(tb_dtype_size((tb_dtype)invalid[i]), 0);
    assert_null(tb_dtype_name((tb_dtype)invalid[i]));
  }
}

static void dtype_from_name_rejects_other_names(void **state) {
  (void)state;
  const char *const bad[] = {"",     "F32", "float32", "f32 ",   " f32",
                             "u128", "f8",  "boolean", "invalid"};
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    tb_dtype parsed = (tb_dtype)77;
    TB_ASSERT_STATUS(tb_dtype_from_name(&parsed, bad[i]), TB_ERR_DTYPE);
    assert_int_equal(parsed, 77);
  }
  tb_dtype parsed = (tb_dtype)77;
  TB_ASSERT_STATUS(tb_dtype_from_name(&parsed, NULL), TB_ERR_INVALID_ARGUMENT);
  assert_int_equal(parsed, 77);
  TB_ASSERT_STATUS(tb_dtype_from_name(NULL, "u8"), TB_ERR_INVALID_ARGUMENT);
}

static void memory_names_and_parsing(void **state) {
  (void)state;
  for (size_t i = 0; i < NMEMORY; i++) {
    assert_string_equal(tb_memory_name((tb_memory)i), memory_names[i]);
    tb_memory parsed = (tb_memory)77;
    TB_ASSERT_OK(tb_memory_from_name(&parsed, memory_names[i]));
    assert_int_equal(parsed, i);
  }
  assert_null(tb_memory_name((tb_memory)NMEMORY));
  assert_null(tb_memory_name((tb_memory)-1));

  const char *const bad[] = {"", "HEAP", "gpu", "cuda-host", "shm ", "none"};
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    tb_memory parsed = (tb_memory)77;
    TB_ASSERT_STATUS(tb_memory_from_name(&parsed, bad[i]),
                     TB_ERR_INVALID_ARGUMENT);
    assert_int_equal(parsed, 77);
  }
  tb_memory parsed = (tb_memory)77;
  TB_ASSERT_STATUS(tb_memory_from_name(&parsed, NULL), TB_ERR_INVALID_ARGUMENT);
  TB_ASSERT_STATUS(tb_memory_from_name(NULL, "heap"), TB_ERR_INVALID_ARGUMENT);
  assert_int_equal(parsed, 77);
}

static bool memfd_works_here(void) {
  int fd = memfd_create("tb-test-probe", MFD_CLOEXEC | MFD_ALLOW_SEALING);
  if (fd < 0)
    return false;
  close(fd);
  return true;
}

static void memory_available_matches_allocation(void **state) {
  (void)state;
  assert_true(tb_memory_available(TB_MEMORY_AUTO));
  assert_true(tb_memory_available(TB_MEMORY_HEAP));
  assert_int_equal(tb_memory_available(TB_MEMORY_SHM), memfd_works_here());
  assert_false(tb_memory_available((tb_memory)NMEMORY));
  assert_false(tb_memory_available((tb_memory)-1));

  /* A kind is available exactly when a buffer of it can be made. */
  for (tb_memory memory = TB_MEMORY_HEAP; memory < NMEMORY; memory++) {
    tb_alloc_options opts = tb_test_options(memory);
    tb_buffer *buffer = TB_SENTINEL(tb_buffer);
    if (tb_memory_available(memory)) {
      TB_ASSERT_OK(tb_buffer_new(&buffer, 4096, &opts));
      assert_int_equal(tb_buffer_memory(buffer), memory);
      tb_buffer_unref(buffer);
    } else {
      print_message("%s memory is not available here: expecting "
                    "TB_ERR_UNSUPPORTED\n",
                    tb_memory_name(memory));
      TB_ASSERT_STATUS(tb_buffer_new(&buffer, 4096, &opts), TB_ERR_UNSUPPORTED);
      assert_ptr_equal(buffer, TB_SENTINEL(tb_buffer));
    }
  }
}

static bool options_equal(const tb_alloc_options *a,
                          const tb_alloc_options *b) {
  return a->version == b->version && a->memory == b->memory &&
         a->alignment == b->alignment && a->name == b->name &&
         a->flags == b->flags;
}

static void alloc_options_init_fills_the_defaults(void **state) {
  (void)state;
  const tb_alloc_options expected = TB_ALLOC_OPTIONS_INIT;
  tb_alloc_options opts;
  memset(&opts, 0xa5, sizeof opts);
  TB_ASSERT_OK(tb_alloc_options_init(&opts, TB_ALLOC_OPTIONS_VERSION));
  assert_true(options_equal(&opts, &expected));
  assert_int_equal(opts.version, TB_ALLOC_OPTIONS_VERSION);
  assert_int_equal(opts.memory, TB_MEMORY_AUTO);
  assert_int_equal(opts.alignment, 0);
  assert_null(opts.name);
  assert_int_equal(opts.flags, 0);
}

/* The end of each struct version's last field, as the headers of that
 * version had it: a new version adds one line. */
static const size_t options_version_end[] = {
    [1] = offsetof(tb_alloc_options, flags) + sizeof(uint32_t),
    [2] = offsetof(tb_alloc_options, device) + sizeof(uint32_t),
};

static void alloc_options_init_writes_only_its_version(void **state) {
  (void)state;
  enum { GUARD = 32 };
  for (uint32_t version = 1; version <= TB_ALLOC_OPTIONS_VERSION; version++) {
    size_t end = options_version_end[version];
    union {
      tb_alloc_options aligned;
      unsigned char bytes[GUARD + sizeof(tb_alloc_options) + GUARD];
    } storage;
    memset(storage.bytes, 0xa5, sizeof storage.bytes);
    /* GUARD is a multiple of the struct's alignment. */
    tb_alloc_options *opts = (tb_alloc_options *)(storage.bytes + GUARD);
    TB_ASSERT_OK(tb_alloc_options_init(opts, version));
    assert_int_equal(opts->version, version);
    assert_int_equal(opts->memory, TB_MEMORY_AUTO);
    for (size_t i = 0; i < GUARD; i++)
      assert_int_equal(storage.bytes[i], 0xa5);
    for (size_t i = GUARD + end; i < sizeof storage.bytes; i++)
      assert_int_equal(storage.bytes[i], 0xa5);
  }
  assert_int_equal(sizeof options_version_end / sizeof *options_version_end,
                   TB_ALLOC_OPTIONS_VERSION + 1);
}

static void alloc_options_init_rejects_bad_arguments(void **state) {
  (void)state;
  const uint32_t bad_versions[] = {0, TB_ALLOC_OPTIONS_VERSION + 1, UINT32_MAX};
  for (size_t i = 0; i < sizeof bad_versions / sizeof *bad_versions; i++) {
    tb_alloc_options opts, before;
    memset(&opts, 0x5a, sizeof opts);
    before = opts;
    TB_ASSERT_STATUS(tb_alloc_options_init(&opts, bad_versions[i]),
                     TB_ERR_VERSION);
    assert_memory_equal(&opts, &before, sizeof opts);
  }
  TB_ASSERT_STATUS(tb_alloc_options_init(NULL, TB_ALLOC_OPTIONS_VERSION),
                   TB_ERR_INVALID_ARGUMENT);
}

static void allocations_check_the_options(void **state) {
  (void)state;
  tb_buffer *buffer = TB_SENTINEL(tb_buffer);
  tb_alloc_options opts = TB_ALLOC_OPTIONS_INIT;
  opts.version = 0;
  TB_ASSERT_STATUS(tb_buffer_new(&buffer, 16, &opts), TB_ERR_VERSION);
  opts.version = TB_ALLOC_OPTIONS_VERSION + 1;
  TB_ASSERT_STATUS(tb_buffer_new(&buffer, 16, &opts), TB_ERR_VERSION);

  opts = tb_test_options((tb_memory)NMEMORY);
  TB_ASSERT_STATUS(tb_buffer_new(&buffer, 16, &opts), TB_ERR_INVALID_ARGUMENT);
  opts = tb_test_options((tb_memory)0xffffffffu);
  TB_ASSERT_STATUS(tb_buffer_new(&buffer, 16, &opts), TB_ERR_INVALID_ARGUMENT);
  assert_ptr_equal(buffer, TB_SENTINEL(tb_buffer));
}

/* Sets TENSORBUF_MEMORY for one test and puts back what was there. */
typedef struct saved_env {
  char *value; /* NULL: was unset */
} saved_env;

static saved_env env_save(void) {
  const char *value = getenv("TENSORBUF_MEMORY");
  return (saved_env){value != NULL ? strdup(value) : NULL};
}

static void env_restore(saved_env *saved) {
  if (saved->value != NULL)
    setenv("TENSORBUF_MEMORY", saved->value, 1);
  else
    unsetenv("TENSORBUF_MEMORY");
  free(saved->value);
}

/* The memory an AUTO allocation (NULL options and explicit AUTO) gets now;
 * fails the test if the two differ. */
static tb_memory auto_memory(void) {
  tb_tensor *tensor;
  const int64_t shape[] = {4};
  TB_ASSERT_OK(tb_tensor_new(&tensor, TB_DTYPE_U8, 1, shape, NULL));
  tb_memory from_null = tb_tensor_memory(tensor);
  tb_tensor_unref(tensor);
  tb_alloc_options opts = tb_test_options(TB_MEMORY_AUTO);
  TB_ASSERT_OK(tb_tensor_new(&tensor, TB_DTYPE_U8, 1, shape, &opts));
  tb_memory from_auto = tb_tensor_memory(tensor);
  tb_tensor_unref(tensor);
  assert_int_equal(from_null, from_auto);
  return from_auto;
}

static void auto_prefers_dma_then_shm_then_heap(void **state) {
  (void)state;
  saved_env saved = env_save();
  unsetenv("TENSORBUF_MEMORY");
  tb_memory expected = tb_memory_available(TB_MEMORY_DMA)   ? TB_MEMORY_DMA
                       : tb_memory_available(TB_MEMORY_SHM) ? TB_MEMORY_SHM
                                                            : TB_MEMORY_HEAP;
  tb_memory got = auto_memory();
  /* An empty value means unset. */
  setenv("TENSORBUF_MEMORY", "", 1);
  tb_memory got_empty = auto_memory();
  env_restore(&saved);
  assert_int_equal(got, expected);
  assert_int_equal(got_empty, expected);
}

static void environment_forces_auto(void **state) {
  (void)state;
  saved_env saved = env_save();
  setenv("TENSORBUF_MEMORY", "heap", 1);
  tb_memory forced_heap = auto_memory();
  setenv("TENSORBUF_MEMORY", "shm", 1);
  tb_memory forced_shm = auto_memory();
  env_restore(&saved);
  assert_int_equal(forced_heap, TB_MEMORY_HEAP);
  assert_int_equal(forced_shm, TB_MEMORY_SHM);
}

static void environment_dma_needs_dma(void **state) {
  (void)state;
  saved_env saved = env_save();
  setenv("TENSORBUF_MEMORY", "dma", 1);
  tb_tensor *tensor = TB_SENTINEL(tb_tensor);
  const int64_t shape[] = {4};
  if (tb_memory_available(TB_MEMORY_DMA)) {
    TB_ASSERT_OK(tb_tensor_new(&tensor, TB_DTYPE_U8, 1, shape, NULL));
    assert_int_equal(tb_tensor_memory(tensor), TB_MEMORY_DMA);
    tb_tensor_unref(tensor);
  } else {
    print_message("no DMA memory here: TENSORBUF_MEMORY=dma must fail\n");
    TB_ASSERT_STATUS(tb_tensor_new(&tensor, TB_DTYPE_U8, 1, shape, NULL),
                     TB_ERR_UNSUPPORTED);
    assert_ptr_equal(tensor, TB_SENTINEL(tb_tensor));
  }
  env_restore(&saved);
}

static void environment_rejects_unknown_values(void **state) {
  (void)state;
  saved_env saved = env_save();
  const char *const bad[] = {"garbage", "HEAP", "cuda", "auto", " heap"};
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    setenv("TENSORBUF_MEMORY", bad[i], 1);
    tb_tensor *tensor = TB_SENTINEL(tb_tensor);
    tb_buffer *buffer = TB_SENTINEL(tb_buffer);
    const int64_t shape[] = {4};
    TB_ASSERT_STATUS(tb_tensor_new(&tensor, TB_DTYPE_U8, 1, shape, NULL),
                     TB_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(tb_last_error(), "TENSORBUF_MEMORY"));
    TB_ASSERT_STATUS(tb_buffer_new(&buffer, 4, NULL), TB_ERR_INVALID_ARGUMENT);
    assert_ptr_equal(tensor, TB_SENTINEL(tb_tensor));
    assert_ptr_equal(buffer, TB_SENTINEL(tb_buffer));
  }
  env_restore(&saved);
}

static void environment_leaves_explicit_kinds_alone(void **state) {
  (void)state;
  saved_env saved = env_save();
  setenv("TENSORBUF_MEMORY", "shm", 1);
  tb_buffer *heap, *shm;
  tb_alloc_options opts = tb_test_options(TB_MEMORY_HEAP);
  TB_ASSERT_OK(tb_buffer_new(&heap, 4, &opts));
  setenv("TENSORBUF_MEMORY", "heap", 1);
  opts = tb_test_options(TB_MEMORY_SHM);
  TB_ASSERT_OK(tb_buffer_new(&shm, 4, &opts));
  /* Even a bad value: it only matters when AUTO is resolved. */
  setenv("TENSORBUF_MEMORY", "garbage", 1);
  tb_buffer *heap_again;
  opts = tb_test_options(TB_MEMORY_HEAP);
  TB_ASSERT_OK(tb_buffer_new(&heap_again, 4, &opts));
  env_restore(&saved);
  assert_int_equal(tb_buffer_memory(heap), TB_MEMORY_HEAP);
  assert_int_equal(tb_buffer_memory(shm), TB_MEMORY_SHM);
  assert_int_equal(tb_buffer_memory(heap_again), TB_MEMORY_HEAP);
  tb_buffer_unref(heap);
  tb_buffer_unref(shm);
  tb_buffer_unref(heap_again);
}

/* Runs in a fresh process (see main): the SHM probe must not take running
 * out of fds for a kernel without memfd and disable SHM for good. */
static void first_probe_while_out_of_fds(void **state) {
  (void)state;
  tb_alloc_options opts = tb_test_options(TB_MEMORY_SHM);
  tb_buffer *buffer = TB_SENTINEL(tb_buffer);
  tb_test_fd_exhaustion exhaustion;
  tb_test_fds_exhaust(&exhaustion);
  TB_ASSERT_STATUS(tb_buffer_new(&buffer, 64, &opts), TB_ERR_SYSTEM);
  int errnum = tb_last_errno();
  tb_test_fds_restore(&exhaustion);
  assert_int_equal(errnum, EMFILE);
  assert_ptr_equal(buffer, TB_SENTINEL(tb_buffer));

  assert_true(tb_memory_available(TB_MEMORY_SHM));
  TB_ASSERT_OK(tb_buffer_new(&buffer, 64, &opts));
  assert_int_equal(tb_buffer_memory(buffer), TB_MEMORY_SHM);
  tb_buffer_unref(buffer);
}

#define FRESH_PROCESS_ARG "--first-probe-while-out-of-fds"

static void shm_probe_survives_fd_exhaustion(void **state) {
  (void)state;
  if (!memfd_works_here()) {
    TB_SKIP("memfd_create does not work here");
  }
  pid_t child = fork();
  assert_true(child >= 0);
  if (child == 0) {
    execl("/proc/self/exe", "test_dtype_memory", FRESH_PROCESS_ARG,
          (char *)NULL);
    _exit(127);
  }
  int status;
  assert_int_equal(waitpid(child, &status, 0), child);
  assert_true(WIFEXITED(status));
  assert_int_equal(WEXITSTATUS(status), 0);
}

int main(int argc, char **argv) {
  if (argc == 2 && strcmp(argv[1], FRESH_PROCESS_ARG) == 0) {
    const struct CMUnitTest fresh[] = {TB_TEST(first_probe_while_out_of_fds)};
    return TB_RUN_TESTS(fresh);
  }
  const struct CMUnitTest tests[] = {
      TB_TEST(dtype_sizes_names_and_parsing),
      TB_TEST(dtype_invalid_values_have_no_size_or_name),
      TB_TEST(dtype_from_name_rejects_other_names),
      TB_TEST(memory_names_and_parsing),
      TB_TEST(memory_available_matches_allocation),
      TB_TEST(alloc_options_init_fills_the_defaults),
      TB_TEST(alloc_options_init_writes_only_its_version),
      TB_TEST(alloc_options_init_rejects_bad_arguments),
      TB_TEST(allocations_check_the_options),
      TB_TEST(auto_prefers_dma_then_shm_then_heap),
      TB_TEST(environment_forces_auto),
      TB_TEST(environment_dma_needs_dma),
      TB_TEST(environment_rejects_unknown_values),
      TB_TEST(environment_leaves_explicit_kinds_alone),
      TB_TEST(shm_probe_survives_fd_exhaustion),
  };
  return TB_RUN_TESTS(tests);
}
