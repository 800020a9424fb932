/* safetensors (capi/include/tensorbuf/safetensors.h): a file built byte by
 * byte from the format's description, round trips of every dtype, zero-size
 * and scalar tensors and metadata, and every malformed header refused with
 * its status, naming tensor and field, leaking nothing (TB_ASSERT_STATUS
 * checks handles and fds). */
#include "tb_test.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char *scratch_path(void) {
  static char path[4096];
  snprintf(path, sizeof path, "%s/tb_st_%d.safetensors",
           getenv("TMPDIR") != NULL ? getenv("TMPDIR") : "/tmp", getpid());
  return path;
}

/* Writes a safetensors file: 8-byte little-endian length, the JSON, then
 * `data`. */
static const char *write_file(const char *json, const void *data,
                              size_t data_size) {
  const char *path = scratch_path();
  FILE *f = fopen(path, "wb");
  assert_non_null(f);
  uint64_t n = strlen(json);
  for (int i = 0; i < 8; i++)
    fputc((int)(n >> (8 * i)) & 0xff, f);
  fwrite(json, 1, n, f);
  if (data_size > 0)
    fwrite(data, 1, data_size, f);
  fclose(f);
  return path;
}

/* Names with JSON escapes (a surrogate pair among them) are decoded to
 * UTF-8, and members the format does not define are skipped, whatever
 * their type. */
static void escapes_and_unknown_members(void **state) {
  (void)state;
  const char *json =
      "{\"caf\\u00e9 \\ud83d\\ude00 \\\"q\\\"\":{\"extra\":[{\"x\":null},true,"
      "-1.5e3,\"s\"],\"dtype\":\"U8\",\"data_offsets\":[0,2],"
      "\"shape\":[2]}}   ";
  const uint8_t data[2] = {7, 9};
  const char *path = write_file(json, data, sizeof data);
  tb_safetensors *file = NULL;
  TB_ASSERT_OK(tb_safetensors_open(&file, path, 0));
  unlink(path);
  const char *name = "caf\xc3\xa9 \xf0\x9f\x98\x80 \"q\"";
  assert_string_equal(tb_safetensors_name(file, 0), name);
  tb_tensor *t = NULL;
  TB_ASSERT_OK(tb_safetensors_tensor(&t, file, name));
  int64_t value = 0;
  const int64_t i1[] = {1};
  TB_ASSERT_OK(tb_tensor_get_i64(&value, t, 1, i1));
  assert_int_equal(value, 9);
  tb_tensor_unref(t);
  tb_safetensors_close(file);
}

static void byte_by_byte_file_reads_correctly(void **state) {
  (void)state;
  /* "b" comes first in the header, "a" first in the data. */
  const char *json =
      "{\"b\":{\"dtype\":\"I16\",\"shape\":[3],\"data_offsets\":[8,14]},"
      "\"__metadata__\":{\"format\":\"pt\"},"
      "\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}";
  const uint8_t data[14] = {0x00, 0x00, 0x80, 0x3f, /* 1.0f */
                            0x00, 0x00, 0x20, 0xc0, /* -2.5f */
                            0x01, 0x00, 0xfe, 0xff, 0x00, 0x80};
  const char *path = write_file(json, data, sizeof data);
  tb_safetensors *file = NULL;
  TB_ASSERT_OK(tb_safetensors_open(&file, path, 0));
  unlink(path);
  assert_int_equal(tb_safetensors_count(file), 2);
  assert_string_equal(tb_safetensors_name(file, 0), "b");
  assert_string_equal(tb_safetensors_name(file, 1), "a");
  assert_null(tb_safetensors_name(file, 2));
  assert_int_equal(tb_safetensors_metadata_count(file), 1);
  assert_string_equal(tb_safetensors_metadata_key(file, 0), "format");
  assert_string_equal(tb_safetensors_metadata_value(file, "format"), "pt");
  assert_null(tb_safetensors_metadata_value(file, "missing"));

  tb_tensor *a = NULL, *b = NULL;
  TB_ASSERT_OK(tb_safetensors_tensor(&a, file, "a"));
  TB_ASSERT_OK(tb_safetensors_tensor(&b, file, "b"));
  tb_tensor *missing = TB_SENTINEL(tb_tensor);
  TB_ASSERT_STATUS(tb_safetensors_tensor(&missing, file, "c"),
                   TB_ERR_INVALID_ARGUMENT);
  tb_safetensors_close(file); /* the views keep the mapping */
  assert_int_equal(tb_tensor_memory(a), TB_MEMORY_FILE);
  assert_true(tb_tensor_read_only(a));
  assert_string_equal(tb_tensor_name(a), "a");
  double value = 0;
  const int64_t i1[] = {1};
  TB_ASSERT_OK(tb_tensor_get_f64(&value, a, 1, i1));
  TB_ASSERT_F64_EQUAL(value, -2.5);
  int64_t ints[3];
  for (int64_t i = 0; i < 3; i++)
    TB_ASSERT_OK(tb_tensor_get_i64(&ints[i], b, 1, &i));
  assert_int_equal(ints[0], 1);
  assert_int_equal(ints[1], -2);
  assert_int_equal(ints[2], -32768);
  tb_tensor_unref(a);
  tb_tensor_unref(b);
}

/* Every dtype, a scalar and a zero-size tensor, metadata: saved, opened,
 * the same bytes, shapes and dtypes; also from a sealed copy. */
static void every_dtype_round_trips(void **state) {
  (void)state;
  tb_safetensors_writer *writer = NULL;
  TB_ASSERT_OK(tb_safetensors_writer_new(&writer));
  tb_tensor *made[TB_DTYPE_F64 + 2];
  char names[TB_DTYPE_F64 + 2][16];
  const int64_t shape[] = {3, 5};
  for (int d = TB_DTYPE_BOOL; d <= TB_DTYPE_F64; d++) {
    made[d] = tb_test_arange((tb_dtype)d, 2, shape, TB_MEMORY_HEAP);
    snprintf(names[d], sizeof names[d], "t_%s", tb_dtype_name((tb_dtype)d));
    TB_ASSERT_OK(tb_safetensors_writer_add(writer, names[d], made[d]));
  }
  tb_tensor *scalar = tb_test_arange(TB_DTYPE_F32, 0, NULL, TB_MEMORY_HEAP);
  const int64_t empty_shape[] = {4, 0};
  tb_tensor *empty =
      tb_test_arange(TB_DTYPE_I64, 2, empty_shape, TB_MEMORY_HEAP);
  TB_ASSERT_OK(tb_safetensors_writer_add(writer, "scalar", scalar));
  TB_ASSERT_OK(tb_safetensors_writer_add(writer, "empty", empty));
  TB_ASSERT_STATUS(tb_safetensors_writer_add(writer, "empty", empty),
                   TB_ERR_INVALID_ARGUMENT);
  TB_ASSERT_STATUS(tb_safetensors_writer_add(writer, "__metadata__", empty),
                   TB_ERR_INVALID_ARGUMENT);
  TB_ASSERT_OK(tb_safetensors_writer_set_metadata(writer, "k", "v\"1"));
  const char *path = scratch_path();
  TB_ASSERT_OK(tb_safetensors_writer_save(writer, path));
  tb_safetensors_writer_free(writer);

  for (uint32_t flags = 0; flags <= TB_FILE_SEALED_COPY; flags++) {
    tb_safetensors *file = NULL;
    TB_ASSERT_OK(tb_safetensors_open(&file, path, flags));
    assert_int_equal(tb_safetensors_count(file), TB_DTYPE_F64 + 2);
    assert_string_equal(tb_safetensors_metadata_value(file, "k"), "v\"1");
    for (int d = TB_DTYPE_BOOL; d <= TB_DTYPE_F64; d++) {
      tb_tensor *t = NULL;
      TB_ASSERT_OK(tb_safetensors_tensor(&t, file, names[d]));
      assert_int_equal(tb_tensor_dtype(t), d);
      assert_int_equal(tb_tensor_ndim(t), 2);
      assert_int_equal(tb_tensor_dim(t, 1), 5);
      assert_int_equal(tb_tensor_memory(t),
                       flags ? TB_MEMORY_SHM : TB_MEMORY_FILE);
      uint8_t want[15 * 8], got[15 * 8];
      TB_ASSERT_OK(tb_tensor_read_bytes(want, sizeof want, made[d]));
      TB_ASSERT_OK(tb_tensor_read_bytes(got, sizeof got, t));
      assert_memory_equal(want, got, tb_tensor_nbytes(t));
      tb_tensor_unref(t);
    }
    tb_tensor *t = NULL;
    TB_ASSERT_OK(tb_safetensors_tensor(&t, file, "scalar"));
    assert_int_equal(tb_tensor_ndim(t), 0);
    tb_tensor_unref(t);
    TB_ASSERT_OK(tb_safetensors_tensor(&t, file, "empty"));
    assert_int_equal(tb_tensor_numel(t), 0);
    assert_int_equal(tb_tensor_dim(t, 0), 4);
    tb_tensor_unref(t);
    tb_safetensors_close(file);
  }
  unlink(path);
  for (int d = TB_DTYPE_BOOL; d <= TB_DTYPE_F64; d++)
    tb_tensor_unref(made[d]);
  tb_tensor_unref(scalar);
  tb_tensor_unref(empty);
}

/* The header is padded with spaces to a multiple of 8, and tensors come in
 * a stable order: larger elements first, then by name. */
static void saved_header_is_padded_and_ordered(void **state) {
  (void)state;
  tb_safetensors_writer *writer = NULL;
  TB_ASSERT_OK(tb_safetensors_writer_new(&writer));
  const int64_t shape[] = {3};
  tb_tensor *u8 = tb_test_arange(TB_DTYPE_U8, 1, shape, TB_MEMORY_HEAP);
  tb_tensor *f64 = tb_test_arange(TB_DTYPE_F64, 1, shape, TB_MEMORY_HEAP);
  TB_ASSERT_OK(tb_safetensors_writer_add(writer, "z", u8));
  TB_ASSERT_OK(tb_safetensors_writer_add(writer, "y", u8));
  TB_ASSERT_OK(tb_safetensors_writer_add(writer, "x", f64));
  const char *path = scratch_path();
  TB_ASSERT_OK(tb_safetensors_writer_save(writer, path));
  tb_safetensors_writer_free(writer);
  tb_tensor_unref(u8);
  tb_tensor_unref(f64);
  FILE *f = fopen(path, "rb");
  uint8_t head[8];
  assert_int_equal(fread(head, 1, 8, f), 8);
  uint64_t n = 0;
  for (int i = 7; i >= 0; i--)
    n = n << 8 | head[i];
  assert_int_equal(n % 8, 0);
  char *json = calloc(1, n + 1);
  assert_int_equal(fread(json, 1, n, f), n);
  fclose(f);
  assert_true(strstr(json, "\"x\"") < strstr(json, "\"y\""));
  assert_true(strstr(json, "\"y\"") < strstr(json, "\"z\""));
  assert_non_null(strstr(json, "[0,24]"));
  free(json);
  unlink(path);
}

typedef struct Malformed {
  const char *what;
  const char *json;
  size_t data_size;
  tb_status status;
  const char *message; /* a part the message must hold */
} Malformed;

static void malformed_headers_are_refused(void **state) {
  (void)state;
  static const Malformed cases[] = {
      {"not json", "{\"a\":", 0, TB_ERR_INVALID_ARGUMENT, "JSON"},
      {"bytes after the object", "{}[]", 0, TB_ERR_INVALID_ARGUMENT,
       "after its object"},
      {"not an object", "[1, 2]  ", 0, TB_ERR_INVALID_ARGUMENT, "'{'"},
      {"entry not an object", "{\"a\":3}", 0, TB_ERR_INVALID_ARGUMENT,
       "tensor \"a\""},
      {"unknown dtype",
       "{\"w\":{\"dtype\":\"F8_E4M3\",\"shape\":[1],\"data_offsets\":[0,1]}}",
       1, TB_ERR_DTYPE, "tensor \"w\": field \"dtype\""},
      {"dtype not a string",
       "{\"w\":{\"dtype\":4,\"shape\":[1],\"data_offsets\":[0,1]}}", 1,
       TB_ERR_INVALID_ARGUMENT, "field \"dtype\""},
      {"negative dim",
       "{\"w\":{\"dtype\":\"U8\",\"shape\":[-1],\"data_offsets\":[0,0]}}", 0,
       TB_ERR_SHAPE, "tensor \"w\": field \"shape\""},
      {"float dim",
       "{\"w\":{\"dtype\":\"U8\",\"shape\":[1.5],\"data_offsets\":[0,1]}}", 1,
       TB_ERR_SHAPE, "field \"shape\"[0]"},
      {"overflowing shape",
       "{\"w\":{\"dtype\":\"F64\",\"shape\":[4294967296,4294967296],"
       "\"data_offsets\":[0,8]}}",
       8, TB_ERR_SHAPE, "2^63"},
      {"too many dims",
       "{\"w\":{\"dtype\":\"U8\",\"shape\":[1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1],"
       "\"data_offsets\":[0,1]}}",
       1, TB_ERR_SHAPE, "dims"},
      {"missing shape", "{\"w\":{\"dtype\":\"U8\",\"data_offsets\":[0,1]}}", 1,
       TB_ERR_SHAPE, "field \"shape\""},
      {"offsets past the data",
       "{\"w\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4]}}", 3,
       TB_ERR_OUT_OF_RANGE, "tensor \"w\": field \"data_offsets\""},
      {"offsets of the wrong length",
       "{\"w\":{\"dtype\":\"U16\",\"shape\":[4],\"data_offsets\":[0,4]}}", 8,
       TB_ERR_OUT_OF_RANGE, "spans 4 bytes"},
      {"offsets reversed",
       "{\"w\":{\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[4,0]}}", 8,
       TB_ERR_OUT_OF_RANGE, "field \"data_offsets\""},
      {"offsets negative",
       "{\"w\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[-1,0]}}", 8,
       TB_ERR_INVALID_ARGUMENT, "field \"data_offsets\""},
      {"offsets of three",
       "{\"w\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1,2]}}", 8,
       TB_ERR_INVALID_ARGUMENT, "field \"data_offsets\""},
      {"overlap",
       "{\"a\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4]},"
       "\"b\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[2,6]}}",
       8, TB_ERR_OUT_OF_RANGE, "overlaps"},
      {"metadata not strings", "{\"__metadata__\":{\"k\":1}}", 0,
       TB_ERR_INVALID_ARGUMENT, "field \"__metadata__\": entry \"k\""},
      {"metadata not an object", "{\"__metadata__\":[]}", 0,
       TB_ERR_INVALID_ARGUMENT, "field \"__metadata__\""},
      {"tensor twice",
       "{\"w\":{\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[0,0]},"
       "\"w\":{\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[0,0]}}",
       0, TB_ERR_INVALID_ARGUMENT, "tensor \"w\" appears twice"},
      {"metadata key twice", "{\"__metadata__\":{\"k\":\"1\",\"k\":\"2\"}}", 0,
       TB_ERR_INVALID_ARGUMENT, "entry \"k\" appears twice"},
      {"name not UTF-8", "{\"\xff\":{}}", 0, TB_ERR_INVALID_ARGUMENT, "UTF-8"},
      {"lone surrogate", "{\"\\ud800\":{}}", 0, TB_ERR_INVALID_ARGUMENT,
       "surrogate"},
      {"control character", "{\"a\nb\":{}}", 0, TB_ERR_INVALID_ARGUMENT,
       "control character"},
      {"unknown escape", "{\"\\q\":{}}", 0, TB_ERR_INVALID_ARGUMENT, "escape"},
      {"leading zero", "{\"w\":{\"x\":01}}", 0, TB_ERR_INVALID_ARGUMENT,
       "number"},
      {"bad word", "{\"w\":{\"x\":nul}}", 0, TB_ERR_INVALID_ARGUMENT, "JSON"},
      {"missing colon", "{\"w\" {}}", 0, TB_ERR_INVALID_ARGUMENT, "':'"},
      {"trailing comma", "{\"__metadata__\":{},}", 0, TB_ERR_INVALID_ARGUMENT,
       "JSON"},
      {"deep nesting",
       "{\"a\":[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]"
       "}",
       0, TB_ERR_INVALID_ARGUMENT, "nests deeper"},
  };
  static uint8_t data[16];
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    print_message("case: %s\n", cases[i].what);
    const char *path = write_file(cases[i].json, data, cases[i].data_size);
    tb_safetensors *file = TB_SENTINEL(tb_safetensors);
    TB_ASSERT_STATUS(tb_safetensors_open(&file, path, 0), cases[i].status);
    assert_ptr_equal(file, TB_SENTINEL(tb_safetensors));
    if (strstr(tb_last_error(), cases[i].message) == NULL)
      fail_msg("%s: \"%s\" lacks \"%s\"", cases[i].what, tb_last_error(),
               cases[i].message);
    unlink(path);
  }
}

/* The 8-byte length itself: too short a file, beyond the format's limit,
 * beyond the file. */
static void header_length_is_bounded(void **state) {
  (void)state;
  const char *path = scratch_path();
  const struct {
    uint8_t bytes[12];
    size_t size;
  } files[] = {
      {{4, 0, 0}, 3},
      {{0x01, 0xe1, 0xf5, 0x05, 0, 0, 0, 0, '{', '}'}, 10}, /* 100000001 */
      {{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, '{', '}'}, 10},
      {{3, 0, 0, 0, 0, 0, 0, 0, '{', '}'}, 10},
  };
  const tb_status expected[] = {TB_ERR_INVALID_ARGUMENT, TB_ERR_OUT_OF_RANGE,
                                TB_ERR_OUT_OF_RANGE, TB_ERR_OUT_OF_RANGE};
  for (size_t i = 0; i < sizeof files / sizeof *files; i++) {
    FILE *f = fopen(path, "wb");
    fwrite(files[i].bytes, 1, files[i].size, f);
    fclose(f);
    tb_safetensors *file = TB_SENTINEL(tb_safetensors);
    TB_ASSERT_STATUS(tb_safetensors_open(&file, path, 0), expected[i]);
  }
  unlink(path);
  tb_safetensors *file = TB_SENTINEL(tb_safetensors);
  TB_ASSERT_STATUS(tb_safetensors_open(&file, path, 0), TB_ERR_SYSTEM);
  TB_ASSERT_STATUS(tb_safetensors_open(&file, path, 0x40),
                   TB_ERR_INVALID_ARGUMENT);
  TB_ASSERT_STATUS(tb_safetensors_open(&file, NULL, 0),
                   TB_ERR_INVALID_ARGUMENT);
}

/* A save that cannot be written leaves neither the file nor a temporary. */
static void failed_save_leaves_nothing(void **state) {
  (void)state;
  tb_safetensors_writer *writer = NULL;
  TB_ASSERT_OK(tb_safetensors_writer_new(&writer));
  TB_ASSERT_STATUS(
      tb_safetensors_writer_save(writer, "/nonexistent/dir/x.safetensors"),
      TB_ERR_SYSTEM);
  TB_ASSERT_STATUS(tb_safetensors_writer_save(writer, NULL),
                   TB_ERR_INVALID_ARGUMENT);
  tb_safetensors_writer_free(writer);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      TB_TEST(byte_by_byte_file_reads_correctly),
      TB_TEST(escapes_and_unknown_members),
      TB_TEST(every_dtype_round_trips),
      TB_TEST(saved_header_is_padded_and_ordered),
      TB_TEST(malformed_headers_are_refused),
      TB_TEST(header_length_is_bounded),
      TB_TEST(failed_save_leaves_nothing),
  };
  return TB_RUN_TESTS(tests);
}
