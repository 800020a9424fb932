/* One function per API call and pseudo-step: decode the arguments, call the
 * declared prototype, hand back status and result. A failed call must leave
 * its out-parameter as it was, so every out-parameter starts as a sentinel
 * that is checked after a failure. */
#define _GNU_SOURCE
#include "runner.h"

#include <dirent.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define SENTINEL_PTR ((void *)(uintptr_t)0x5e5e5e5e)
#define SENTINEL_INT (-0x5e5e5e5e)
#define SENTINEL_F64 (-5.25e55)

static void finish_status(Step *s, tb_status status) {
  s->fallible = true;
  s->status = status;
}

static void finish_handle(Step *s, tb_status status, HandleType type,
                          void *out) {
  finish_status(s, status);
  if (status == TB_OK)
    result_handle(s, type, out, true);
  else if (out != SENTINEL_PTR)
    step_fail(s, "the failed call wrote its out-parameter");
}

static void finish_i64(Step *s, tb_status status, int64_t out) {
  finish_status(s, status);
  if (status == TB_OK)
    result_i64(s, out);
  else if (out != SENTINEL_INT)
    step_fail(s, "the failed call wrote its out-parameter");
}

static void finish_fd(Step *s, tb_status status, int fd) {
  finish_status(s, status);
  if (status == TB_OK)
    result_fd(s, fd);
  else if (fd != SENTINEL_INT)
    step_fail(s, "the failed call wrote its out-parameter");
}

static void finish_f64(Step *s, tb_status status, double out) {
  finish_status(s, status);
  if (status == TB_OK)
    result_f64(s, out);
  else if (memcmp(&out, &(double){SENTINEL_F64}, sizeof out) != 0)
    step_fail(s, "the failed call wrote its out-parameter");
}

/* `release` consumes the handle `argument`: its variable is dead after. */
#define RELEASING_CALL(call, argument, type, ctype, release)                   \
  static void call_##call(Step *s) {                                           \
    ctype *argument = arg_release(s, #argument, type);                         \
    if (s->error == NULL)                                                      \
      release(argument);                                                       \
  }

/* ---- library ------------------------------------------------------------- */

static void call_version_number(Step *s) { result_u64(s, tb_version_number()); }
static void call_version_string(Step *s) {
  result_string(s, tb_version_string());
}
static void call_live_objects(Step *s) {
  result_i64(s, tb_live_objects() - s->kase->live_at_start);
}
static void call_status_name(Step *s) {
  tb_status status = (tb_status)arg_i64(s, "status");
  if (s->error == NULL)
    result_string(s, tb_status_name(status));
}
static void call_status_message(Step *s) {
  tb_status status = (tb_status)arg_i64(s, "status");
  if (s->error == NULL)
    result_string(s, tb_status_message(status));
}

/* ---- dtypes, memory kinds, options --------------------------------------- */

static void call_dtype_size(Step *s) {
  tb_dtype dtype = arg_dtype(s, "dtype");
  if (s->error == NULL)
    result_u64(s, tb_dtype_size(dtype));
}
static void call_dtype_name(Step *s) {
  tb_dtype dtype = arg_dtype(s, "dtype");
  if (s->error == NULL)
    result_string(s, tb_dtype_name(dtype));
}
static void call_dtype_from_name(Step *s) {
  const char *name = arg_string(s, "name");
  if (s->error != NULL)
    return;
  tb_dtype out = (tb_dtype)SENTINEL_INT;
  tb_status status =
      tb_dtype_from_name(out_wanted(s, "out") ? &out : NULL, name);
  finish_status(s, status);
  if (status == TB_OK)
    result_string(s, dtype_result_name(out));
  else if (out != (tb_dtype)SENTINEL_INT)
    step_fail(s, "the failed call wrote its out-parameter");
}
static void call_memory_name(Step *s) {
  tb_memory memory = arg_memory(s, "memory");
  if (s->error == NULL)
    result_string(s, tb_memory_name(memory));
}
static void call_memory_from_name(Step *s) {
  const char *name = arg_string(s, "name");
  if (s->error != NULL)
    return;
  tb_memory out = (tb_memory)SENTINEL_INT;
  tb_status status =
      tb_memory_from_name(out_wanted(s, "out") ? &out : NULL, name);
  finish_status(s, status);
  if (status == TB_OK)
    result_string(s, tb_memory_name(out));
  else if (out != (tb_memory)SENTINEL_INT)
    step_fail(s, "the failed call wrote its out-parameter");
}
static void call_memory_auto_skipped(Step *s) {
  result_string(s, tb_memory_auto_skipped());
}
static void call_memory_available(Step *s) {
  tb_memory memory = arg_memory(s, "memory");
  if (s->error == NULL)
    result_bool(s, tb_memory_available(memory));
}
static void call_alloc_options_init(Step *s) {
  uint32_t version = (uint32_t)arg_u64(s, "version");
  if (s->error != NULL)
    return;
  tb_alloc_options opts, before;
  memset(&opts, 0x5e, sizeof opts);
  before = opts;
  tb_status status =
      tb_alloc_options_init(out_wanted(s, "opts") ? &opts : NULL, version);
  finish_status(s, status);
  if (status != TB_OK) {
    if (memcmp(&opts, &before, sizeof opts) != 0)
      step_fail(s, "the failed call wrote its out-parameter");
    return;
  }
  JsonBuilder *b = json_builder_new();
  json_builder_begin_object(b);
  json_builder_set_member_name(b, "version");
  json_builder_add_int_value(b, opts.version);
  json_builder_set_member_name(b, "memory");
  json_builder_add_string_value(b, tb_memory_name((tb_memory)opts.memory));
  json_builder_set_member_name(b, "alignment");
  json_builder_add_int_value(b, (int64_t)opts.alignment);
  json_builder_set_member_name(b, "name");
  if (opts.name != NULL)
    json_builder_add_string_value(b, opts.name);
  else
    json_builder_add_null_value(b);
  json_builder_set_member_name(b, "flags");
  json_builder_add_int_value(b, opts.flags);
  json_builder_end_object(b);
  result_json(s, json_builder_get_root(b));
  g_object_unref(b);
}

/* ---- buffers ------------------------------------------------------------- */

static void call_buffer_new(Step *s) {
  uint64_t size = arg_u64(s, "size");
  tb_alloc_options storage;
  const tb_alloc_options *opts = arg_opts(s, "opts", &storage);
  if (s->error != NULL)
    return;
  tb_buffer *out = SENTINEL_PTR;
  tb_status status =
      tb_buffer_new(out_wanted(s, "out") ? &out : NULL, size, opts);
  finish_handle(s, status, HANDLE_BUFFER, out);
}

static void wrap_destroyed(void *user_data) {
  ((WrapBlock *)user_data)->destroyed++;
}

static void call_buffer_wrap(Step *s) {
  Bytes data = arg_bytes(s, "data");
  uint64_t size = arg_length(s, "size", data.len);
  uint32_t flags = arg_node(s, "flags") != NULL
                       ? arg_flags(s, "flags", buffer_flag_names)
                       : 0;
  if (s->error != NULL)
    return;
  /* The block outlives the buffer; it is freed after the leak checks. */
  WrapBlock *block = g_malloc0(sizeof *block + data.len);
  memcpy(block->data, data.data != NULL ? data.data : block->data, data.len);
  g_ptr_array_add(s->kase->wraps, block);
  tb_buffer *out = SENTINEL_PTR;
  tb_status status = tb_buffer_wrap(out_wanted(s, "out") ? &out : NULL,
                                    data.data != NULL ? block->data : NULL,
                                    size, flags, wrap_destroyed, block);
  block->wrapped = status == TB_OK;
  finish_handle(s, status, HANDLE_BUFFER, out);
}

static void call_buffer_ref(Step *s) {
  tb_buffer *buffer = arg_handle(s, "buffer", HANDLE_BUFFER);
  if (s->error == NULL)
    result_handle(s, HANDLE_BUFFER, tb_buffer_ref(buffer), true);
}
RELEASING_CALL(buffer_unref, buffer, HANDLE_BUFFER, tb_buffer, tb_buffer_unref)
static void call_buffer_size(Step *s) {
  tb_buffer *buffer = arg_handle(s, "buffer", HANDLE_BUFFER);
  if (s->error == NULL)
    result_u64(s, tb_buffer_size(buffer));
}
static void call_buffer_memory(Step *s) {
  tb_buffer *buffer = arg_handle(s, "buffer", HANDLE_BUFFER);
  if (s->error == NULL)
    result_string(s, tb_memory_name(tb_buffer_memory(buffer)));
}
static void call_buffer_id(Step *s) {
  tb_buffer *buffer = arg_handle(s, "buffer", HANDLE_BUFFER);
  if (s->error == NULL)
    result_u64(s, tb_buffer_id(buffer));
}
static void call_buffer_key(Step *s) {
  tb_buffer *buffer = arg_handle(s, "buffer", HANDLE_BUFFER);
  if (s->error == NULL)
    result_u64(s, tb_buffer_key(buffer));
}
static void call_buffer_fd(Step *s) {
  tb_buffer *buffer = arg_handle(s, "buffer", HANDLE_BUFFER);
  if (s->error == NULL)
    result_i64(s, tb_buffer_fd(buffer));
}
static void call_buffer_read_only(Step *s) {
  tb_buffer *buffer = arg_handle(s, "buffer", HANDLE_BUFFER);
  if (s->error == NULL)
    result_bool(s, tb_buffer_read_only(buffer));
}
static void call_buffer_alive(Step *s) {
  uint64_t id = arg_u64(s, "id");
  if (s->error == NULL)
    result_bool(s, tb_buffer_alive(id));
}

/* ---- tensors: creation and sharing --------------------------------------- */

static void call_tensor_new(Step *s) {
  tb_dtype dtype = arg_dtype(s, "dtype");
  I64Array shape = arg_i64_array(s, "shape");
  size_t ndim = arg_length(s, "ndim", shape.len);
  tb_alloc_options storage;
  const tb_alloc_options *opts = arg_opts(s, "opts", &storage);
  if (s->error != NULL)
    return;
  tb_tensor *out = SENTINEL_PTR;
  tb_status status = tb_tensor_new(out_wanted(s, "out") ? &out : NULL, dtype,
                                   ndim, shape.data, opts);
  finish_handle(s, status, HANDLE_TENSOR, out);
}

static void call_tensor_from_buffer(Step *s) {
  tb_buffer *buffer = arg_handle(s, "buffer", HANDLE_BUFFER);
  uint64_t byte_offset = arg_u64(s, "byte_offset");
  tb_dtype dtype = arg_dtype(s, "dtype");
  I64Array shape = arg_i64_array(s, "shape");
  I64Array strides = arg_i64_array(s, "strides");
  size_t ndim = arg_length(s, "ndim", shape.len);
  if (strides.data != NULL && strides.len != shape.len)
    step_fail(s, "strides and shape differ in length");
  if (s->error != NULL)
    return;
  tb_tensor *out = SENTINEL_PTR;
  tb_status status =
      tb_tensor_from_buffer(out_wanted(s, "out") ? &out : NULL, buffer,
                            byte_offset, dtype, ndim, shape.data, strides.data);
  finish_handle(s, status, HANDLE_TENSOR, out);
}

static void call_tensor_import_fd(Step *s) {
  int fd = arg_fd(s, "fd");
  tb_dtype dtype = arg_dtype(s, "dtype");
  I64Array shape = arg_i64_array(s, "shape");
  size_t ndim = arg_length(s, "ndim", shape.len);
  uint64_t byte_offset = arg_u64(s, "byte_offset");
  if (s->error != NULL)
    return;
  tb_tensor *out = SENTINEL_PTR;
  tb_status status = tb_tensor_import_fd(out_wanted(s, "out") ? &out : NULL, fd,
                                         dtype, ndim, shape.data, byte_offset);
  finish_handle(s, status, HANDLE_TENSOR, out);
}

static void call_tensor_export_fd(Step *s) {
  const tb_tensor *tensor = arg_handle(s, "tensor", HANDLE_TENSOR);
  if (s->error != NULL)
    return;
  int fd = SENTINEL_INT;
  tb_status status =
      tb_tensor_export_fd(out_wanted(s, "out_fd") ? &fd : NULL, tensor);
  finish_fd(s, status, fd);
}

static void call_tensor_ref(Step *s) {
  tb_tensor *tensor = arg_handle(s, "tensor", HANDLE_TENSOR);
  if (s->error == NULL)
    result_handle(s, HANDLE_TENSOR, tb_tensor_ref(tensor), true);
}
RELEASING_CALL(tensor_unref, tensor, HANDLE_TENSOR, tb_tensor, tb_tensor_unref)

/* ---- tensors: description ------------------------------------------------ */

/* A getter of one handle `argument` of C type `ctype`: decode it, then
 * report with `report(s, ...)`. */
#define HANDLE_GETTER(call, argument, type, ctype, report, ...)                \
  static void call_##call(Step *s) {                                           \
    ctype *argument = arg_handle(s, #argument, type);                          \
    if (s->error == NULL)                                                      \
      report(s, __VA_ARGS__);                                                  \
  }
#define TENSOR_GETTER(call, report, expr)                                      \
  HANDLE_GETTER(call, tensor, HANDLE_TENSOR, tb_tensor, report, expr)

TENSOR_GETTER(tensor_dtype, result_string,
              dtype_result_name(tb_tensor_dtype(tensor)))
TENSOR_GETTER(tensor_ndim, result_u64, tb_tensor_ndim(tensor))
TENSOR_GETTER(tensor_numel, result_u64, tb_tensor_numel(tensor))
TENSOR_GETTER(tensor_nbytes, result_u64, tb_tensor_nbytes(tensor))
TENSOR_GETTER(tensor_offset, result_u64, tb_tensor_offset(tensor))
TENSOR_GETTER(tensor_is_contiguous, result_bool,
              tb_tensor_is_contiguous(tensor))
TENSOR_GETTER(tensor_memory, result_string,
              tb_memory_name(tb_tensor_memory(tensor)))
TENSOR_GETTER(tensor_read_only, result_bool, tb_tensor_read_only(tensor))
TENSOR_GETTER(tensor_buffer_id, result_u64, tb_tensor_buffer_id(tensor))
TENSOR_GETTER(tensor_name, result_string, tb_tensor_name(tensor))
TENSOR_GETTER(tensor_fd, result_i64, tb_tensor_fd(tensor))
TENSOR_GETTER(tensor_quantization_count, result_u64,
              tb_tensor_quantization_count(tensor))
TENSOR_GETTER(tensor_quantization_axis, result_i64,
              tb_tensor_quantization_axis(tensor))

static void call_tensor_buffer(Step *s) {
  tb_tensor *tensor = arg_handle(s, "tensor", HANDLE_TENSOR);
  if (s->error == NULL)
    result_handle(s, HANDLE_BUFFER, tb_tensor_buffer(tensor), true);
}
static void call_tensor_dim(Step *s) {
  tb_tensor *tensor = arg_handle(s, "tensor", HANDLE_TENSOR);
  size_t axis = (size_t)arg_u64(s, "axis");
  if (s->error == NULL)
    result_i64(s, tb_tensor_dim(tensor, axis));
}
static void call_tensor_stride(Step *s) {
  tb_tensor *tensor = arg_handle(s, "tensor", HANDLE_TENSOR);
  size_t axis = (size_t)arg_u64(s, "axis");
  if (s->error == NULL)
    result_i64(s, tb_tensor_stride(tensor, axis));
}
static void call_tensor_shares_memory(Step *s) {
  tb_tensor *a = arg_handle(s, "a", HANDLE_TENSOR);
  tb_tensor *b = arg_handle(s, "b", HANDLE_TENSOR);
  if (s->error == NULL)
    result_bool(s, tb_tensor_shares_memory(a, b));
}
static void call_tensor_set_name(Step *s) {
  tb_tensor *tensor = arg_handle(s, "tensor", HANDLE_TENSOR);
  const char *name = arg_string(s, "name");
  if (s->error == NULL)
    finish_status(s, tb_tensor_set_name(tensor, name));
}

/* ---- views and quantization ---------------------------------------------- */

static void call_tensor_reshape(Step *s) {
  tb_tensor *tensor = arg_handle(s, "tensor", HANDLE_TENSOR);
  I64Array shape = arg_i64_array(s, "shape");
  size_t ndim = arg_length(s, "ndim", shape.len);
  if (s->error != NULL)
    return;
  tb_tensor *out = SENTINEL_PTR;
  tb_status status = tb_tensor_reshape(out_wanted(s, "out") ? &out : NULL,
                                       tensor, ndim, shape.data);
  finish_handle(s, status, HANDLE_TENSOR, out);
}

static void call_tensor_slice(Step *s) {
  tb_tensor *tensor = arg_handle(s, "tensor", HANDLE_TENSOR);
  size_t axis = (size_t)arg_u64(s, "axis");
  int64_t start = arg_i64(s, "start");
  int64_t stop = arg_i64(s, "stop");
  int64_t step = arg_i64(s, "step");
  if (s->error != NULL)
    return;
  tb_tensor *out = SENTINEL_PTR;
  tb_status status = tb_tensor_slice(out_wanted(s, "out") ? &out : NULL, tensor,
                                     axis, start, stop, step);
  finish_handle(s, status, HANDLE_TENSOR, out);
}

static void call_tensor_set_quantization(Step *s) {
  tb_tensor *tensor = arg_handle(s, "tensor", HANDLE_TENSOR);
  int64_t axis = arg_i64(s, "axis");
  F64Array scales = arg_f64_array(s, "scales");
  I64Array zero_points = arg_i64_array(s, "zero_points");
  size_t count = arg_length(s, "count", scales.len);
  if (zero_points.data != NULL && zero_points.len < count)
    step_fail(s, "zero_points has fewer than count entries");
  if (s->error == NULL)
    finish_status(s, tb_tensor_set_quantization(tensor, axis, count,
                                                scales.data, zero_points.data));
}

static void call_tensor_quantization_get(Step *s) {
  tb_tensor *tensor = arg_handle(s, "tensor", HANDLE_TENSOR);
  size_t index = (size_t)arg_u64(s, "index");
  if (s->error != NULL)
    return;
  double scale = SENTINEL_F64;
  int64_t zero_point = SENTINEL_INT;
  tb_status status = tb_tensor_quantization_get(
      out_wanted(s, "scale_out") ? &scale : NULL,
      out_wanted(s, "zero_point_out") ? &zero_point : NULL, tensor, index);
  finish_status(s, status);
  if (status != TB_OK) {
    if (scale != SENTINEL_F64 || zero_point != SENTINEL_INT)
      step_fail(s, "the failed call wrote an out-parameter");
    return;
  }
  JsonBuilder *b = json_builder_new();
  json_builder_begin_object(b);
  json_builder_set_member_name(b, "scale_out");
  json_builder_add_double_value(b, scale);
  json_builder_set_member_name(b, "zero_point_out");
  json_builder_add_int_value(b, zero_point);
  json_builder_end_object(b);
  result_json(s, json_builder_get_root(b));
  g_object_unref(b);
}

/* ---- element and byte access --------------------------------------------- */

static void call_tensor_get_f64(Step *s) {
  tb_tensor *tensor = arg_handle(s, "tensor", HANDLE_TENSOR);
  I64Array index = arg_i64_array(s, "index");
  size_t nindex = arg_length(s, "nindex", index.len);
  if (s->error != NULL)
    return;
  double out = SENTINEL_F64;
  tb_status status = tb_tensor_get_f64(out_wanted(s, "out") ? &out : NULL,
                                       tensor, nindex, index.data);
  finish_f64(s, status, out);
}

static void call_tensor_get_i64(Step *s) {
  tb_tensor *tensor = arg_handle(s, "tensor", HANDLE_TENSOR);
  I64Array index = arg_i64_array(s, "index");
  size_t nindex = arg_length(s, "nindex", index.len);
  if (s->error != NULL)
    return;
  int64_t out = SENTINEL_INT;
  tb_status status = tb_tensor_get_i64(out_wanted(s, "out") ? &out : NULL,
                                       tensor, nindex, index.data);
  finish_i64(s, status, out);
}

static void call_tensor_set_f64(Step *s) {
  tb_tensor *tensor = arg_handle(s, "tensor", HANDLE_TENSOR);
  I64Array index = arg_i64_array(s, "index");
  size_t nindex = arg_length(s, "nindex", index.len);
  double value = arg_f64(s, "value");
  if (s->error == NULL)
    finish_status(s, tb_tensor_set_f64(tensor, nindex, index.data, value));
}

static void call_tensor_set_i64(Step *s) {
  tb_tensor *tensor = arg_handle(s, "tensor", HANDLE_TENSOR);
  I64Array index = arg_i64_array(s, "index");
  size_t nindex = arg_length(s, "nindex", index.len);
  int64_t value = arg_i64(s, "value");
  if (s->error == NULL)
    finish_status(s, tb_tensor_set_i64(tensor, nindex, index.data, value));
}

static void call_tensor_read_bytes(Step *s) {
  tb_tensor *tensor = arg_handle(s, "tensor", HANDLE_TENSOR);
  size_t size = arg_length(s, "size", tb_tensor_nbytes(tensor));
  if (s->error != NULL)
    return;
  /* Exactly nbytes are written: the rest of dst must keep its filler. */
  size_t nbytes = tb_tensor_nbytes(tensor);
  g_autofree uint8_t *dst = g_malloc(MAX(size, 1));
  memset(dst, 0xa5, MAX(size, 1));
  tb_status status =
      tb_tensor_read_bytes(out_wanted(s, "dst") ? dst : NULL, size, tensor);
  finish_status(s, status);
  size_t written = status == TB_OK ? MIN(nbytes, size) : 0;
  for (size_t i = written; i < size; i++) {
    if (dst[i] != 0xa5) {
      step_fail(s, "byte %zu of dst was written", i);
      return;
    }
  }
  if (status == TB_OK)
    result_hex(s, dst, written);
}

static void call_tensor_write_bytes(Step *s) {
  tb_tensor *tensor = arg_handle(s, "tensor", HANDLE_TENSOR);
  Bytes src = arg_bytes(s, "src");
  size_t size = arg_length(s, "size", src.len);
  if (src.data != NULL && size > src.len)
    step_fail(s, "size is larger than src");
  if (s->error == NULL)
    finish_status(s, tb_tensor_write_bytes(tensor, src.data, size));
}

/* ---- maps ---------------------------------------------------------------- */

static void call_tensor_map(Step *s) {
  tb_tensor *tensor = arg_handle(s, "tensor", HANDLE_TENSOR);
  uint32_t flags = arg_flags(s, "flags", map_flag_names);
  if (s->error != NULL)
    return;
  tb_map *out = SENTINEL_PTR;
  tb_status status =
      tb_tensor_map(out_wanted(s, "out") ? &out : NULL, tensor, flags);
  finish_handle(s, status, HANDLE_MAP, out);
}
static void call_map_flags(Step *s) {
  tb_map *map = arg_handle(s, "map", HANDLE_MAP);
  if (s->error == NULL)
    result_u64(s, tb_map_flags(map));
}
static void call_map_tensor(Step *s) {
  tb_map *map = arg_handle(s, "map", HANDLE_MAP);
  if (s->error == NULL)
    result_handle(s, HANDLE_TENSOR, tb_map_tensor(map), false);
}
static void call_map_unmap(Step *s) {
  tb_map *map = arg_handle(s, "map", HANDLE_MAP);
  if (s->error == NULL)
    tb_map_unmap(map);
}
RELEASING_CALL(map_free, map, HANDLE_MAP, tb_map, tb_map_free)

/* tb_map_data's portable form: the mapped tensor's bytes, as hex. */
static void call_read_map(Step *s) {
  tb_map *map = arg_handle(s, "map", HANDLE_MAP);
  if (s->error == NULL)
    result_hex(s, tb_map_data(map), tb_tensor_nbytes(tb_map_tensor(map)));
}
static void call_write_map(Step *s) {
  tb_map *map = arg_handle(s, "map", HANDLE_MAP);
  Bytes data = arg_bytes(s, "data");
  if (data.len > tb_tensor_nbytes(tb_map_tensor(map)))
    step_fail(s, "data is larger than the mapped tensor");
  if (s->error == NULL)
    memcpy(tb_map_data(map), data.data, data.len);
}

/* ---- pixel formats and images -------------------------------------------- */

static void finish_pixel_format(Step *s, tb_status status,
                                tb_pixel_format out) {
  finish_status(s, status);
  if (status == TB_OK)
    result_string(s, pixel_format_result_name(out));
  else if (out != (tb_pixel_format)SENTINEL_INT)
    step_fail(s, "the failed call wrote its out-parameter");
}

static void call_pixel_format_name(Step *s) {
  tb_pixel_format format = arg_pixel_format(s, "format");
  if (s->error == NULL)
    result_string(s, tb_pixel_format_name(format));
}
static void call_pixel_format_from_name(Step *s) {
  const char *name = arg_string(s, "name");
  if (s->error != NULL)
    return;
  tb_pixel_format out = (tb_pixel_format)SENTINEL_INT;
  tb_status status =
      tb_pixel_format_from_name(out_wanted(s, "out") ? &out : NULL, name);
  finish_pixel_format(s, status, out);
}
static void call_pixel_format_to_fourcc(Step *s) {
  tb_pixel_format format = arg_pixel_format(s, "format");
  if (s->error == NULL)
    result_u64(s, tb_pixel_format_to_fourcc(format));
}
static void call_pixel_format_from_fourcc(Step *s) {
  uint32_t fourcc = (uint32_t)arg_u64(s, "fourcc");
  if (s->error != NULL)
    return;
  tb_pixel_format out = (tb_pixel_format)SENTINEL_INT;
  tb_status status =
      tb_pixel_format_from_fourcc(out_wanted(s, "out") ? &out : NULL, fourcc);
  finish_pixel_format(s, status, out);
}
static void call_pixel_format_layout(Step *s) {
  tb_pixel_format format = arg_pixel_format(s, "format");
  if (s->error == NULL)
    result_string(s, pixel_layout_result_name(tb_pixel_format_layout(format)));
}
static void call_pixel_format_channels(Step *s) {
  tb_pixel_format format = arg_pixel_format(s, "format");
  if (s->error == NULL)
    result_u64(s, tb_pixel_format_channels(format));
}
static void call_pixel_format_is_yuv(Step *s) {
  tb_pixel_format format = arg_pixel_format(s, "format");
  if (s->error == NULL)
    result_bool(s, tb_pixel_format_is_yuv(format));
}
static void call_pixel_format_has_alpha(Step *s) {
  tb_pixel_format format = arg_pixel_format(s, "format");
  if (s->error == NULL)
    result_bool(s, tb_pixel_format_has_alpha(format));
}
static void call_pixel_format_plane_count(Step *s) {
  tb_pixel_format format = arg_pixel_format(s, "format");
  if (s->error == NULL)
    result_u64(s, tb_pixel_format_plane_count(format));
}
static void call_pixel_format_bits(Step *s) {
  tb_pixel_format format = arg_pixel_format(s, "format");
  if (s->error == NULL)
    result_u64(s, tb_pixel_format_bits(format));
}
static void call_pixel_format_plane_hsub(Step *s) {
  tb_pixel_format format = arg_pixel_format(s, "format");
  size_t plane = (size_t)arg_u64(s, "plane");
  if (s->error == NULL)
    result_u64(s, tb_pixel_format_plane_hsub(format, plane));
}
static void call_pixel_format_plane_vsub(Step *s) {
  tb_pixel_format format = arg_pixel_format(s, "format");
  size_t plane = (size_t)arg_u64(s, "plane");
  if (s->error == NULL)
    result_u64(s, tb_pixel_format_plane_vsub(format, plane));
}
static void call_pixel_format_supports_dtype(Step *s) {
  tb_pixel_format format = arg_pixel_format(s, "format");
  tb_dtype dtype = arg_dtype(s, "dtype");
  if (s->error == NULL)
    result_bool(s, tb_pixel_format_supports_dtype(format, dtype));
}

static void call_image_new(Step *s) {
  uint32_t width = (uint32_t)arg_u64(s, "width");
  uint32_t height = (uint32_t)arg_u64(s, "height");
  tb_pixel_format format = arg_pixel_format(s, "format");
  tb_dtype dtype = arg_dtype(s, "dtype");
  tb_alloc_options storage;
  const tb_alloc_options *opts = arg_opts(s, "opts", &storage);
  if (s->error != NULL)
    return;
  tb_tensor *out = SENTINEL_PTR;
  tb_status status = tb_image_new(out_wanted(s, "out") ? &out : NULL, width,
                                  height, format, dtype, opts);
  finish_handle(s, status, HANDLE_TENSOR, out);
}

static void call_image_new_with_layout(Step *s) {
  uint32_t width = (uint32_t)arg_u64(s, "width");
  uint32_t height = (uint32_t)arg_u64(s, "height");
  tb_pixel_format format = arg_pixel_format(s, "format");
  I64Array offsets = arg_u64_array(s, "offsets");
  I64Array strides = arg_u64_array(s, "strides");
  size_t nplanes = arg_length(s, "nplanes", offsets.len);
  tb_dtype dtype = arg_dtype(s, "dtype");
  tb_alloc_options storage;
  const tb_alloc_options *opts = arg_opts(s, "opts", &storage);
  if (strides.data != NULL && strides.len != offsets.len)
    step_fail(s, "offsets and strides differ in length");
  if (s->error != NULL)
    return;
  tb_tensor *out = SENTINEL_PTR;
  tb_status status = tb_image_new_with_layout(
      out_wanted(s, "out") ? &out : NULL, width, height, format, nplanes,
      (const uint64_t *)offsets.data, (const uint64_t *)strides.data, dtype,
      opts);
  finish_handle(s, status, HANDLE_TENSOR, out);
}

static void call_image_import(Step *s) {
  uint32_t width = (uint32_t)arg_u64(s, "width");
  uint32_t height = (uint32_t)arg_u64(s, "height");
  tb_pixel_format format = arg_pixel_format(s, "format");
  IntArray fds = arg_int_array(s, "fds");
  I64Array offsets = arg_u64_array(s, "offsets");
  I64Array strides = arg_u64_array(s, "strides");
  size_t nplanes = arg_length(s, "nplanes", fds.len);
  if ((offsets.data != NULL && offsets.len != fds.len) ||
      (strides.data != NULL && strides.len != fds.len))
    step_fail(s, "fds, offsets and strides differ in length");
  if (s->error != NULL)
    return;
  tb_tensor *out = SENTINEL_PTR;
  tb_status status = tb_image_import(
      out_wanted(s, "out") ? &out : NULL, width, height, format, nplanes,
      fds.data, (const uint64_t *)offsets.data, (const uint64_t *)strides.data);
  finish_handle(s, status, HANDLE_TENSOR, out);
}

static void call_image_set_format(Step *s) {
  tb_tensor *tensor = arg_handle(s, "tensor", HANDLE_TENSOR);
  tb_pixel_format format = arg_pixel_format(s, "format");
  if (s->error == NULL)
    finish_status(s, tb_image_set_format(tensor, format));
}

static void call_image_format(Step *s) {
  tb_tensor *tensor = arg_handle(s, "tensor", HANDLE_TENSOR);
  if (s->error == NULL)
    result_string(s, pixel_format_result_name(tb_image_format(tensor)));
}
static void call_image_width(Step *s) {
  tb_tensor *tensor = arg_handle(s, "tensor", HANDLE_TENSOR);
  if (s->error == NULL)
    result_u64(s, tb_image_width(tensor));
}
static void call_image_height(Step *s) {
  tb_tensor *tensor = arg_handle(s, "tensor", HANDLE_TENSOR);
  if (s->error == NULL)
    result_u64(s, tb_image_height(tensor));
}
static void call_image_plane_count(Step *s) {
  tb_tensor *tensor = arg_handle(s, "tensor", HANDLE_TENSOR);
  if (s->error == NULL)
    result_u64(s, tb_image_plane_count(tensor));
}
static void call_image_plane_offset(Step *s) {
  tb_tensor *tensor = arg_handle(s, "tensor", HANDLE_TENSOR);
  size_t plane = (size_t)arg_u64(s, "plane");
  if (s->error == NULL)
    result_u64(s, tb_image_plane_offset(tensor, plane));
}
static void call_image_plane_stride(Step *s) {
  tb_tensor *tensor = arg_handle(s, "tensor", HANDLE_TENSOR);
  size_t plane = (size_t)arg_u64(s, "plane");
  if (s->error == NULL)
    result_u64(s, tb_image_plane_stride(tensor, plane));
}
static void call_image_plane_buffer_id(Step *s) {
  tb_tensor *tensor = arg_handle(s, "tensor", HANDLE_TENSOR);
  size_t plane = (size_t)arg_u64(s, "plane");
  if (s->error == NULL)
    result_u64(s, tb_image_plane_buffer_id(tensor, plane));
}

static void call_image_plane(Step *s) {
  tb_tensor *image = arg_handle(s, "image", HANDLE_TENSOR);
  size_t plane = (size_t)arg_u64(s, "plane");
  if (s->error != NULL)
    return;
  tb_tensor *out = SENTINEL_PTR;
  tb_status status =
      tb_image_plane(out_wanted(s, "out") ? &out : NULL, image, plane);
  finish_handle(s, status, HANDLE_TENSOR, out);
}

static void call_image_export_plane_fd(Step *s) {
  tb_tensor *image = arg_handle(s, "image", HANDLE_TENSOR);
  size_t plane = (size_t)arg_u64(s, "plane");
  if (s->error != NULL)
    return;
  int fd = SENTINEL_INT;
  tb_status status = tb_image_export_plane_fd(
      out_wanted(s, "out_fd") ? &fd : NULL, image, plane);
  finish_fd(s, status, fd);
}

/* ---- channels and listeners ---------------------------------------------- */

static Value handle_value(HandleType type, void *handle) {
  return (Value){.kind = VALUE_HANDLE,
                 .handle_type = type,
                 .handle = handle,
                 .owned = true};
}

/* The end of a call that makes a pair of channels. */
static void finish_pair(Step *s, tb_status status, tb_channel *a,
                        tb_channel *b) {
  finish_status(s, status);
  if (status != TB_OK) {
    if (a != SENTINEL_PTR || b != SENTINEL_PTR)
      step_fail(s, "the failed call wrote an out-parameter");
    return;
  }
  result_member(s, "out_a", handle_value(HANDLE_CHANNEL, a));
  result_member(s, "out_b", handle_value(HANDLE_CHANNEL, b));
}

static void call_channel_pair(Step *s) {
  tb_channel *a = SENTINEL_PTR, *b = SENTINEL_PTR;
  tb_status status = tb_channel_pair(out_wanted(s, "out_a") ? &a : NULL,
                                     out_wanted(s, "out_b") ? &b : NULL);
  finish_pair(s, status, a, b);
}

static void call_channel_pair_with(Step *s) {
  tb_channel_options storage;
  const tb_channel_options *opts = arg_channel_opts(s, "opts", &storage);
  if (s->error != NULL)
    return;
  tb_channel *a = SENTINEL_PTR, *b = SENTINEL_PTR;
  tb_status status = tb_channel_pair_with(out_wanted(s, "out_a") ? &a : NULL,
                                          out_wanted(s, "out_b") ? &b : NULL,
                                          opts);
  finish_pair(s, status, a, b);
}

static void call_channel_connect_with(Step *s) {
  const char *path = arg_string(s, "path");
  int timeout_ms = (int)arg_i64(s, "timeout_ms");
  tb_channel_options storage;
  const tb_channel_options *opts = arg_channel_opts(s, "opts", &storage);
  if (s->error != NULL)
    return;
  tb_channel *out = SENTINEL_PTR;
  tb_status status = tb_channel_connect_with(out_wanted(s, "out") ? &out : NULL,
                                             path, timeout_ms, opts);
  finish_handle(s, status, HANDLE_CHANNEL, out);
}

static void call_channel_version(Step *s) {
  tb_channel *channel = arg_handle(s, "channel", HANDLE_CHANNEL);
  if (s->error != NULL)
    return;
  uint32_t version = SENTINEL_INT;
  tb_status status = tb_channel_version(channel, &version);
  finish_status(s, status);
  if (status == TB_OK)
    result_i64(s, version);
  else if (version != (uint32_t)SENTINEL_INT)
    step_fail(s, "the failed call wrote an out-parameter");
}

static void call_channel_limits(Step *s) {
  tb_channel *channel = arg_handle(s, "channel", HANDLE_CHANNEL);
  if (s->error != NULL)
    return;
  uint32_t own_buffers = SENTINEL_INT, peer_buffers = SENTINEL_INT;
  uint64_t own_bytes = SENTINEL_INT, peer_bytes = SENTINEL_INT;
  tb_status status = tb_channel_limits(channel, &own_buffers, &own_bytes,
                                       &peer_buffers, &peer_bytes);
  finish_status(s, status);
  if (status != TB_OK) {
    if (own_buffers != (uint32_t)SENTINEL_INT ||
        own_bytes != (uint64_t)SENTINEL_INT)
      step_fail(s, "the failed call wrote an out-parameter");
    return;
  }
  JsonBuilder *b = json_builder_new();
  json_builder_begin_object(b);
  json_builder_set_member_name(b, "own_max_buffers");
  json_builder_add_int_value(b, own_buffers);
  json_builder_set_member_name(b, "own_max_mapped_bytes");
  json_builder_add_int_value(b, (int64_t)own_bytes);
  json_builder_set_member_name(b, "peer_max_buffers");
  json_builder_add_int_value(b, peer_buffers);
  json_builder_set_member_name(b, "peer_max_mapped_bytes");
  json_builder_add_int_value(b, (int64_t)peer_bytes);
  json_builder_end_object(b);
  result_json(s, json_builder_get_root(b));
  g_object_unref(b);
}

static void call_listener_listen_with(Step *s) {
  const char *path = arg_string(s, "path");
  tb_listener_options storage;
  const tb_listener_options *opts = arg_listener_opts(s, "opts", &storage);
  if (s->error != NULL)
    return;
  tb_listener *out = SENTINEL_PTR;
  tb_status status =
      tb_listener_listen_with(out_wanted(s, "out") ? &out : NULL, path, opts);
  finish_handle(s, status, HANDLE_LISTENER, out);
}

static void call_channel_peer_credentials(Step *s) {
  tb_channel *channel = arg_handle(s, "channel", HANDLE_CHANNEL);
  if (s->error != NULL)
    return;
  int64_t pid = SENTINEL_INT, uid = SENTINEL_INT, gid = SENTINEL_INT;
  tb_status status = tb_channel_peer_credentials(channel, &pid, &uid, &gid);
  finish_status(s, status);
  if (status != TB_OK) {
    if (pid != SENTINEL_INT || uid != SENTINEL_INT || gid != SENTINEL_INT)
      step_fail(s, "the failed call wrote an out-parameter");
    return;
  }
  JsonBuilder *b = json_builder_new();
  json_builder_begin_object(b);
  json_builder_set_member_name(b, "pid");
  json_builder_add_int_value(b, pid);
  json_builder_set_member_name(b, "uid");
  json_builder_add_int_value(b, uid);
  json_builder_set_member_name(b, "gid");
  json_builder_add_int_value(b, gid);
  json_builder_end_object(b);
  result_json(s, json_builder_get_root(b));
  g_object_unref(b);
}

static void call_listener_listen(Step *s) {
  const char *path = arg_string(s, "path");
  if (s->error != NULL)
    return;
  tb_listener *out = SENTINEL_PTR;
  tb_status status =
      tb_listener_listen(out_wanted(s, "out") ? &out : NULL, path);
  finish_handle(s, status, HANDLE_LISTENER, out);
}

static void call_listener_accept(Step *s) {
  tb_listener *listener = arg_handle(s, "listener", HANDLE_LISTENER);
  int timeout_ms = (int)arg_i64(s, "timeout_ms");
  if (s->error != NULL)
    return;
  tb_channel *out = SENTINEL_PTR;
  tb_status status = tb_listener_accept(out_wanted(s, "out") ? &out : NULL,
                                        listener, timeout_ms);
  finish_handle(s, status, HANDLE_CHANNEL, out);
}

HANDLE_GETTER(listener_fd, listener, HANDLE_LISTENER, tb_listener, result_i64,
              tb_listener_fd(listener))
RELEASING_CALL(listener_free, listener, HANDLE_LISTENER, tb_listener,
               tb_listener_free)

static void call_channel_connect(Step *s) {
  const char *path = arg_string(s, "path");
  int timeout_ms = (int)arg_i64(s, "timeout_ms");
  if (s->error != NULL)
    return;
  tb_channel *out = SENTINEL_PTR;
  tb_status status =
      tb_channel_connect(out_wanted(s, "out") ? &out : NULL, path, timeout_ms);
  finish_handle(s, status, HANDLE_CHANNEL, out);
}

static void call_channel_from_fd(Step *s) {
  int fd = arg_fd(s, "fd");
  if (s->error != NULL)
    return;
  tb_channel *out = SENTINEL_PTR;
  tb_status status = tb_channel_from_fd(out_wanted(s, "out") ? &out : NULL, fd);
  finish_handle(s, status, HANDLE_CHANNEL, out);
}

HANDLE_GETTER(channel_fd, channel, HANDLE_CHANNEL, tb_channel, result_i64,
              tb_channel_fd(channel))
HANDLE_GETTER(channel_ref, channel, HANDLE_CHANNEL, tb_channel, result_handle,
              HANDLE_CHANNEL, tb_channel_ref(channel), true)
RELEASING_CALL(channel_unref, channel, HANDLE_CHANNEL, tb_channel,
               tb_channel_unref)

static void call_channel_send(Step *s) {
  tb_channel *channel = arg_handle(s, "channel", HANDLE_CHANNEL);
  tb_tensor *tensor = arg_handle(s, "tensor", HANDLE_TENSOR);
  uint32_t flags = arg_flags(s, "flags", send_flag_names);
  if (s->error == NULL)
    finish_status(s, tb_channel_send(channel, tensor, flags));
}

static void call_channel_recv(Step *s) {
  tb_channel *channel = arg_handle(s, "channel", HANDLE_CHANNEL);
  int timeout_ms = (int)arg_i64(s, "timeout_ms");
  if (s->error != NULL)
    return;
  tb_tensor *out = SENTINEL_PTR;
  tb_status status =
      tb_channel_recv(out_wanted(s, "out") ? &out : NULL, channel, timeout_ms);
  finish_handle(s, status, HANDLE_TENSOR, out);
}

static void call_channel_send_fence(Step *s) {
  tb_channel *channel = arg_handle(s, "channel", HANDLE_CHANNEL);
  tb_fence *fence = arg_handle(s, "fence", HANDLE_FENCE);
  if (s->error == NULL)
    finish_status(s, tb_channel_send_fence(channel, fence));
}

static void call_channel_recv_fence(Step *s) {
  tb_channel *channel = arg_handle(s, "channel", HANDLE_CHANNEL);
  int timeout_ms = (int)arg_i64(s, "timeout_ms");
  if (s->error != NULL)
    return;
  tb_fence *out = SENTINEL_PTR;
  tb_status status = tb_channel_recv_fence(out_wanted(s, "out") ? &out : NULL,
                                           channel, timeout_ms);
  finish_handle(s, status, HANDLE_FENCE, out);
}

/* ---- descriptors --------------------------------------------------------- */

/* The descriptor buffer when a step gives no capacity: the most that
 * tb_tensor_import accepts, so any descriptor fits. */
#define DESCRIPTOR_CAPACITY 65536
#define SENTINEL_SIZE ((size_t)0x5e5e5e5e)

static void call_tensor_export(Step *s) {
  const tb_tensor *tensor = arg_handle(s, "tensor", HANDLE_TENSOR);
  uint32_t flags = arg_flags(s, "flags", send_flag_names);
  size_t capacity = arg_length(s, "capacity", DESCRIPTOR_CAPACITY);
  if (s->error != NULL)
    return;
  /* Everything starts as filler, so that any write can be seen. */
  g_autofree uint8_t *descriptor = g_malloc(capacity + 1);
  memset(descriptor, 0xa5, capacity + 1);
  size_t length = SENTINEL_SIZE, nfds = TB_DESCRIPTOR_MAX_FDS; /* capacity */
  int fds[TB_DESCRIPTOR_MAX_FDS];
  for (size_t i = 0; i < G_N_ELEMENTS(fds); i++)
    fds[i] = SENTINEL_INT;
  tb_status status =
      tb_tensor_export(out_wanted(s, "descriptor") ? descriptor : NULL,
                       capacity, out_wanted(s, "length") ? &length : NULL,
                       out_wanted(s, "fds") ? fds : NULL,
                       out_wanted(s, "nfds") ? &nfds : NULL, tensor, flags);
  finish_status(s, status);
  size_t written = status == TB_OK ? length : 0;
  size_t nwritten = status == TB_OK ? nfds : 0;
  if (written > capacity || nwritten > TB_DESCRIPTOR_MAX_FDS) {
    step_fail(s, "it reports %zu bytes and %zu fds", length, nfds);
    return; /* nothing sensible to close */
  }
  for (size_t i = written; i <= capacity; i++) {
    if (descriptor[i] != 0xa5) {
      step_fail(s, "byte %zu of descriptor was written", i);
      break;
    }
  }
  for (size_t i = nwritten; i < G_N_ELEMENTS(fds); i++) {
    if (fds[i] != SENTINEL_INT)
      step_fail(s, "fds[%zu] was written", i);
  }
  if (status != TB_OK) {
    /* *length may say what was needed, and then it must be more. */
    bool length_ok = length == SENTINEL_SIZE ||
                     (status == TB_ERR_OUT_OF_RANGE && length > capacity);
    /* *nfds (in: the capacity of fds) may say how many were needed, and
     * then it must be more. */
    bool nfds_ok =
        nfds == TB_DESCRIPTOR_MAX_FDS ||
        (status == TB_ERR_OUT_OF_RANGE && nfds > TB_DESCRIPTOR_MAX_FDS);
    if (!length_ok || !nfds_ok)
      step_fail(s, "the failed call wrote length %zu, nfds %zu", length, nfds);
    return;
  }
  result_hex(s, descriptor, length);
  Value hex = s->result;
  s->result = (Value){.kind = VALUE_NONE};
  result_member(s, "descriptor", hex);
  GArray *list = g_array_sized_new(FALSE, FALSE, sizeof(int), (guint)nfds);
  g_array_append_vals(list, fds, (guint)nfds);
  result_member(s, "fds",
                (Value){.kind = VALUE_FDS, .fds = list, .owned = true});
}

static void call_tensor_import(Step *s) {
  Bytes descriptor = arg_bytes(s, "descriptor");
  size_t length = arg_length(s, "length", descriptor.len);
  IntArray fds = arg_int_array(s, "fds");
  size_t nfds = arg_length(s, "nfds", fds.len);
  if (descriptor.data != NULL && length > descriptor.len)
    step_fail(s, "length is larger than descriptor");
  if (fds.data != NULL && nfds > fds.len)
    step_fail(s, "nfds is larger than fds");
  if (s->error != NULL)
    return;
  tb_tensor *out = SENTINEL_PTR;
  tb_status status = tb_tensor_import(out_wanted(s, "out") ? &out : NULL,
                                      descriptor.data, length, fds.data, nfds);
  finish_handle(s, status, HANDLE_TENSOR, out);
}

/* ---- fences -------------------------------------------------------------- */

static void call_fence_new(Step *s) {
  uint64_t initial = arg_u64(s, "initial");
  if (s->error != NULL)
    return;
  tb_fence *out = SENTINEL_PTR;
  tb_status status = tb_fence_new(out_wanted(s, "out") ? &out : NULL, initial);
  finish_handle(s, status, HANDLE_FENCE, out);
}

static void call_fence_import_fd(Step *s) {
  int fd = arg_fd(s, "fd");
  if (s->error != NULL)
    return;
  tb_fence *out = SENTINEL_PTR;
  tb_status status = tb_fence_import_fd(out_wanted(s, "out") ? &out : NULL, fd);
  finish_handle(s, status, HANDLE_FENCE, out);
}

static void call_fence_export_fd(Step *s) {
  const tb_fence *fence = arg_handle(s, "fence", HANDLE_FENCE);
  if (s->error != NULL)
    return;
  int fd = SENTINEL_INT;
  tb_status status =
      tb_fence_export_fd(out_wanted(s, "out_fd") ? &fd : NULL, fence);
  finish_fd(s, status, fd);
}

HANDLE_GETTER(fence_ref, fence, HANDLE_FENCE, tb_fence, result_handle,
              HANDLE_FENCE, tb_fence_ref(fence), true)
RELEASING_CALL(fence_unref, fence, HANDLE_FENCE, tb_fence, tb_fence_unref)
HANDLE_GETTER(fence_value, fence, HANDLE_FENCE, tb_fence, result_u64,
              tb_fence_value(fence))

static void call_fence_signal(Step *s) {
  tb_fence *fence = arg_handle(s, "fence", HANDLE_FENCE);
  uint64_t value = arg_u64(s, "value");
  if (s->error == NULL)
    finish_status(s, tb_fence_signal(fence, value));
}

static void call_fence_wait(Step *s) {
  tb_fence *fence = arg_handle(s, "fence", HANDLE_FENCE);
  uint64_t value = arg_u64(s, "value");
  int64_t timeout_ns = arg_i64(s, "timeout_ns");
  if (s->error == NULL)
    finish_status(s, tb_fence_wait(fence, value, timeout_ns));
}

static void call_fence_cuda_signal(Step *s) {
  tb_fence *fence = arg_handle(s, "fence", HANDLE_FENCE);
  uint64_t value = arg_u64(s, "value");
  uint32_t device = (uint32_t)arg_u64(s, "device");
  uint64_t stream = arg_u64(s, "stream");
  if (s->error == NULL)
    finish_status(s, tb_fence_cuda_signal(fence, value, device, stream));
}

static void call_fence_cuda_wait(Step *s) {
  tb_fence *fence = arg_handle(s, "fence", HANDLE_FENCE);
  uint64_t value = arg_u64(s, "value");
  uint32_t device = (uint32_t)arg_u64(s, "device");
  uint64_t stream = arg_u64(s, "stream");
  if (s->error == NULL)
    finish_status(s, tb_fence_cuda_wait(fence, value, device, stream));
}

/* ---- CUDA and copies ------------------------------------------------------ */

static void call_tensor_copy(Step *s) {
  tb_tensor *dst = arg_handle(s, "dst", HANDLE_TENSOR);
  const tb_tensor *src = arg_handle(s, "src", HANDLE_TENSOR);
  uint64_t stream = arg_u64(s, "stream");
  if (s->error == NULL)
    finish_status(s, tb_tensor_copy(dst, src, stream));
}

static void call_tensor_cuda_wait(Step *s) {
  const tb_tensor *tensor = arg_handle(s, "tensor", HANDLE_TENSOR);
  uint64_t stream = arg_u64(s, "stream");
  if (s->error == NULL)
    finish_status(s, tb_tensor_cuda_wait(tensor, stream));
}

static void call_tensor_import_cuda_fd(Step *s) {
  int fd = arg_fd(s, "fd");
  tb_memory memory = arg_memory(s, "memory");
  uint32_t device = (uint32_t)arg_u64(s, "device");
  tb_dtype dtype = arg_dtype(s, "dtype");
  I64Array shape = arg_i64_array(s, "shape");
  size_t ndim = arg_length(s, "ndim", shape.len);
  uint64_t byte_offset = arg_u64(s, "byte_offset");
  if (s->error != NULL)
    return;
  tb_tensor *out = SENTINEL_PTR;
  tb_status status =
      tb_tensor_import_cuda_fd(out_wanted(s, "out") ? &out : NULL, fd, memory,
                               device, dtype, ndim, shape.data, byte_offset);
  finish_handle(s, status, HANDLE_TENSOR, out);
}

/* ---- pools --------------------------------------------------------------- */

static void call_pool_new(Step *s) {
  const tb_tensor *prototype = arg_handle(s, "prototype", HANDLE_TENSOR);
  size_t count = (size_t)arg_u64(s, "count");
  if (s->error != NULL)
    return;
  tb_pool *out = SENTINEL_PTR;
  tb_status status =
      tb_pool_new(out_wanted(s, "out") ? &out : NULL, prototype, count);
  finish_handle(s, status, HANDLE_POOL, out);
}

static void call_pool_acquire(Step *s) {
  tb_pool *pool = arg_handle(s, "pool", HANDLE_POOL);
  int timeout_ms = (int)arg_i64(s, "timeout_ms");
  if (s->error != NULL)
    return;
  tb_tensor *out = SENTINEL_PTR;
  tb_status status =
      tb_pool_acquire(out_wanted(s, "out") ? &out : NULL, pool, timeout_ms);
  finish_handle(s, status, HANDLE_TENSOR, out);
}

HANDLE_GETTER(pool_available, pool, HANDLE_POOL, tb_pool, result_u64,
              tb_pool_available(pool))
HANDLE_GETTER(pool_size, pool, HANDLE_POOL, tb_pool, result_u64,
              tb_pool_size(pool))
HANDLE_GETTER(pool_ref, pool, HANDLE_POOL, tb_pool, result_handle, HANDLE_POOL,
              tb_pool_ref(pool), true)
RELEASING_CALL(pool_unref, pool, HANDLE_POOL, tb_pool, tb_pool_unref)

/* ---- files and safetensors ----------------------------------------------- */

static void call_buffer_map_file(Step *s) {
  const char *path = arg_string(s, "path");
  int fd = arg_fd(s, "fd");
  uint32_t flags = (uint32_t)arg_u64(s, "flags");
  if (s->error != NULL)
    return;
  tb_buffer *out = SENTINEL_PTR;
  tb_status status =
      tb_buffer_map_file(out_wanted(s, "out") ? &out : NULL, path, fd, flags);
  finish_handle(s, status, HANDLE_BUFFER, out);
}

static void call_safetensors_open(Step *s) {
  const char *path = arg_string(s, "path");
  uint32_t flags = (uint32_t)arg_u64(s, "flags");
  if (s->error != NULL)
    return;
  tb_safetensors *out = SENTINEL_PTR;
  tb_status status =
      tb_safetensors_open(out_wanted(s, "out") ? &out : NULL, path, flags);
  finish_handle(s, status, HANDLE_SAFETENSORS, out);
}
RELEASING_CALL(safetensors_close, file, HANDLE_SAFETENSORS, tb_safetensors,
               tb_safetensors_close)
HANDLE_GETTER(safetensors_count, file, HANDLE_SAFETENSORS, tb_safetensors,
              result_u64, tb_safetensors_count(file))
HANDLE_GETTER(safetensors_metadata_count, file, HANDLE_SAFETENSORS,
              tb_safetensors, result_u64, tb_safetensors_metadata_count(file))
static void call_safetensors_name(Step *s) {
  const tb_safetensors *file = arg_handle(s, "file", HANDLE_SAFETENSORS);
  size_t index = (size_t)arg_u64(s, "index");
  if (s->error == NULL)
    result_string(s, tb_safetensors_name(file, index));
}
static void call_safetensors_metadata_key(Step *s) {
  const tb_safetensors *file = arg_handle(s, "file", HANDLE_SAFETENSORS);
  size_t index = (size_t)arg_u64(s, "index");
  if (s->error == NULL)
    result_string(s, tb_safetensors_metadata_key(file, index));
}
static void call_safetensors_metadata_value(Step *s) {
  const tb_safetensors *file = arg_handle(s, "file", HANDLE_SAFETENSORS);
  const char *key = arg_string(s, "key");
  if (s->error == NULL)
    result_string(s, tb_safetensors_metadata_value(file, key));
}
static void call_safetensors_tensor(Step *s) {
  const tb_safetensors *file = arg_handle(s, "file", HANDLE_SAFETENSORS);
  const char *name = arg_string(s, "name");
  if (s->error != NULL)
    return;
  tb_tensor *out = SENTINEL_PTR;
  tb_status status =
      tb_safetensors_tensor(out_wanted(s, "out") ? &out : NULL, file, name);
  finish_handle(s, status, HANDLE_TENSOR, out);
}

/* ---- file descriptors and the environment -------------------------------- */

static void call_make_memfd(Step *s) {
  uint64_t size = arg_u64(s, "size");
  Bytes data = arg_bytes(s, "data");
  bool sealing = arg_bool(s, "allow_sealing", true);
  bool read_only = arg_bool(s, "read_only", false);
  static const FlagName seal_names[] = {
      {"shrink", F_SEAL_SHRINK}, {"grow", F_SEAL_GROW},
      {"write", F_SEAL_WRITE},   {"future_write", F_SEAL_FUTURE_WRITE},
      {"seal", F_SEAL_SEAL},     {NULL, 0}};
  uint32_t seals =
      arg_node(s, "seals") != NULL ? arg_flags(s, "seals", seal_names) : 0;
  if (s->error != NULL)
    return;
  int fd = memfd_create("conformance",
                        MFD_CLOEXEC | (sealing ? MFD_ALLOW_SEALING : 0));
  if (fd < 0 || ftruncate(fd, (off_t)size) != 0 ||
      pwrite(fd, data.data, data.len, 0) != (ssize_t)data.len ||
      (seals != 0 && fcntl(fd, F_ADD_SEALS, seals) != 0)) {
    step_fail(s, "making the memfd failed: %s", g_strerror(errno));
    if (fd >= 0)
      close(fd);
    return;
  }
  if (read_only) {
    g_autofree char *path = g_strdup_printf("/proc/self/fd/%d", fd);
    int ro = open(path, O_RDONLY | O_CLOEXEC);
    close(fd);
    if (ro < 0) {
      step_fail(s, "reopening the memfd read-only failed: %s",
                g_strerror(errno));
      return;
    }
    fd = ro;
  }
  result_fd(s, fd);
}

static void call_make_pipe(Step *s) {
  int ends[2];
  if (pipe2(ends, O_CLOEXEC) != 0) {
    step_fail(s, "pipe2 failed: %s", g_strerror(errno));
    return;
  }
  close(ends[1]);
  result_fd(s, ends[0]);
}

static void call_make_tmpfile(Step *s) {
  uint64_t size = arg_u64(s, "size");
  Bytes data = arg_bytes(s, "data");
  if (s->error != NULL)
    return;
  const char *dir = g_getenv("TMPDIR") != NULL ? g_getenv("TMPDIR") : "/tmp";
  int fd = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
  if (fd < 0 || ftruncate(fd, (off_t)size) != 0 ||
      pwrite(fd, data.data, data.len, 0) != (ssize_t)data.len) {
    step_fail(s, "making a temporary file in %s failed: %s", dir,
              g_strerror(errno));
    if (fd >= 0)
      close(fd);
    return;
  }
  result_fd(s, fd);
}

static void call_fd_path(Step *s) {
  int fd = arg_fd(s, "fd");
  if (s->error != NULL)
    return;
  g_autofree char *path = g_strdup_printf("/proc/self/fd/%d", fd);
  result_string(s, path);
}

static void open_path(Step *s, const char *path, int flags) {
  int fd = open(path, flags | O_CLOEXEC);
  if (fd < 0)
    step_fail(s, "opening %s failed: %s", path, g_strerror(errno));
  else
    result_fd(s, fd);
}
static void call_open_devnull(Step *s) { open_path(s, "/dev/null", O_RDWR); }
static void call_reopen_read_only(Step *s) {
  int fd = arg_fd(s, "fd");
  if (s->error != NULL)
    return;
  g_autofree char *path = g_strdup_printf("/proc/self/fd/%d", fd);
  open_path(s, path, O_RDONLY);
}

/* An abstract socket name no other process uses: the pid and a count. */
static void call_make_socket_name(Step *s) {
  static unsigned count;
  g_autofree char *name =
      g_strdup_printf("@tensorbuf-conf-%d-%u", (int)getpid(), ++count);
  result_string(s, name);
}
static void call_open_directory(Step *s) {
  open_path(s, "/", O_RDONLY | O_DIRECTORY);
}

static void call_close_fd(Step *s) {
  JsonNode *node = arg_node(s, "fd");
  int fd = arg_fd(s, "fd");
  if (s->error != NULL)
    return;
  if (close(fd) != 0) {
    step_fail(s, "close(%d) failed: %s", fd, g_strerror(errno));
    return;
  }
  if (JSON_NODE_HOLDS_VALUE(node) &&
      json_node_get_value_type(node) == G_TYPE_STRING)
    ((Value *)g_hash_table_lookup(s->kase->vars,
                                  json_node_get_string(node) + 1))
        ->owned = false;
}

static void call_set_env(Step *s) {
  const char *name = arg_string(s, "name");
  const char *value = arg_string(s, "value");
  if (name == NULL)
    step_fail(s, "argument name is missing");
  if (s->error != NULL)
    return;
  if (!g_hash_table_contains(s->kase->env, name)) {
    const char *original = g_getenv(name);
    /* NULL cannot be stored as a value: mark "was unset" with the key. */
    g_hash_table_insert(s->kase->env, g_strdup(name),
                        original != NULL ? g_strdup(original) : NULL);
  }
  if (value != NULL)
    g_setenv(name, value, TRUE);
  else
    g_unsetenv(name);
}

/* ---- the table ----------------------------------------------------------- */

typedef struct Call {
  const char *name;
  CallFunc func;
} Call;

#define CALL(name)                                                             \
  { #name, call_##name }
static const Call calls[] = {
    CALL(version_number),
    CALL(version_string),
    CALL(live_objects),
    CALL(status_name),
    CALL(status_message),
    CALL(dtype_size),
    CALL(dtype_name),
    CALL(dtype_from_name),
    CALL(memory_name),
    CALL(memory_from_name),
    CALL(memory_available),
    CALL(memory_auto_skipped),
    CALL(alloc_options_init),
    CALL(buffer_new),
    CALL(buffer_wrap),
    CALL(buffer_ref),
    CALL(buffer_unref),
    CALL(buffer_size),
    CALL(buffer_memory),
    CALL(buffer_id),
    CALL(buffer_key),
    CALL(buffer_fd),
    CALL(buffer_read_only),
    CALL(buffer_alive),
    CALL(tensor_new),
    CALL(tensor_from_buffer),
    CALL(tensor_import_fd),
    CALL(tensor_export_fd),
    CALL(tensor_ref),
    CALL(tensor_unref),
    CALL(tensor_dtype),
    CALL(tensor_ndim),
    CALL(tensor_dim),
    CALL(tensor_stride),
    CALL(tensor_numel),
    CALL(tensor_nbytes),
    CALL(tensor_offset),
    CALL(tensor_is_contiguous),
    CALL(tensor_memory),
    CALL(tensor_read_only),
    CALL(tensor_buffer_id),
    CALL(tensor_buffer),
    CALL(tensor_shares_memory),
    CALL(tensor_name),
    CALL(tensor_fd),
    CALL(tensor_set_name),
    CALL(tensor_reshape),
    CALL(tensor_slice),
    CALL(tensor_set_quantization),
    CALL(tensor_quantization_count),
    CALL(tensor_quantization_axis),
    CALL(tensor_quantization_get),
    CALL(tensor_get_f64),
    CALL(tensor_get_i64),
    CALL(tensor_set_f64),
    CALL(tensor_set_i64),
    CALL(tensor_read_bytes),
    CALL(tensor_write_bytes),
    CALL(tensor_map),
    CALL(map_flags),
    CALL(map_tensor),
    CALL(map_unmap),
    CALL(map_free),
    CALL(read_map),
    CALL(write_map),
    CALL(pixel_format_name),
    CALL(pixel_format_from_name),
    CALL(pixel_format_to_fourcc),
    CALL(pixel_format_from_fourcc),
    CALL(pixel_format_layout),
    CALL(pixel_format_channels),
    CALL(pixel_format_is_yuv),
    CALL(pixel_format_has_alpha),
    CALL(pixel_format_plane_count),
    CALL(pixel_format_bits),
    CALL(pixel_format_plane_hsub),
    CALL(pixel_format_plane_vsub),
    CALL(pixel_format_supports_dtype),
    CALL(image_new),
    CALL(image_new_with_layout),
    CALL(image_import),
    CALL(image_set_format),
    CALL(image_format),
    CALL(image_width),
    CALL(image_height),
    CALL(image_plane_count),
    CALL(image_plane_offset),
    CALL(image_plane_stride),
    CALL(image_plane_buffer_id),
    CALL(image_plane),
    CALL(image_export_plane_fd),
    CALL(channel_pair),
    CALL(channel_pair_with),
    CALL(channel_connect_with),
    CALL(channel_version),
    CALL(channel_limits),
    CALL(channel_peer_credentials),
    CALL(listener_listen),
    CALL(listener_listen_with),
    CALL(listener_accept),
    CALL(listener_fd),
    CALL(listener_free),
    CALL(channel_connect),
    CALL(channel_from_fd),
    CALL(channel_fd),
    CALL(channel_ref),
    CALL(channel_unref),
    CALL(channel_send),
    CALL(channel_recv),
    CALL(channel_send_fence),
    CALL(channel_recv_fence),
    CALL(tensor_export),
    CALL(tensor_import),
    CALL(fence_new),
    CALL(fence_import_fd),
    CALL(fence_export_fd),
    CALL(fence_ref),
    CALL(fence_unref),
    CALL(fence_value),
    CALL(fence_signal),
    CALL(fence_wait),
    CALL(fence_cuda_signal),
    CALL(fence_cuda_wait),
    CALL(tensor_copy),
    CALL(tensor_cuda_wait),
    CALL(tensor_import_cuda_fd),
    CALL(pool_new),
    CALL(pool_acquire),
    CALL(pool_available),
    CALL(pool_size),
    CALL(pool_ref),
    CALL(pool_unref),
    CALL(buffer_map_file),
    CALL(safetensors_open),
    CALL(safetensors_close),
    CALL(safetensors_count),
    CALL(safetensors_name),
    CALL(safetensors_tensor),
    CALL(safetensors_metadata_count),
    CALL(safetensors_metadata_key),
    CALL(safetensors_metadata_value),
    CALL(make_memfd),
    CALL(make_pipe),
    CALL(make_tmpfile),
    CALL(fd_path),
    CALL(open_devnull),
    CALL(open_directory),
    CALL(reopen_read_only),
    CALL(make_socket_name),
    CALL(close_fd),
    CALL(set_env),
};

CallFunc call_lookup(const char *call) {
  for (size_t i = 0; i < G_N_ELEMENTS(calls); i++) {
    if (g_str_equal(calls[i].name, call))
      return calls[i].func;
  }
  return NULL;
}

void value_release(Value *v) {
  if (v->kind == VALUE_OBJECT) {
    GHashTableIter iter;
    gpointer member;
    g_hash_table_iter_init(&iter, v->members);
    while (g_hash_table_iter_next(&iter, NULL, &member))
      value_release(member);
    return;
  }
  if (!v->owned)
    return;
  v->owned = false;
  if (v->kind == VALUE_FD) {
    close(v->fd);
    return;
  }
  if (v->kind == VALUE_FDS) {
    for (guint i = 0; i < v->fds->len; i++)
      close(g_array_index(v->fds, int, i));
    return;
  }
  switch (v->handle_type) {
  case HANDLE_MAP:
    tb_map_free(v->handle);
    break;
  case HANDLE_TENSOR:
    tb_tensor_unref(v->handle);
    break;
  case HANDLE_BUFFER:
    tb_buffer_unref(v->handle);
    break;
  case HANDLE_CHANNEL:
    tb_channel_unref(v->handle);
    break;
  case HANDLE_LISTENER:
    tb_listener_free(v->handle);
    break;
  case HANDLE_FENCE:
    tb_fence_unref(v->handle);
    break;
  case HANDLE_POOL:
    tb_pool_unref(v->handle);
    break;
  case HANDLE_SAFETENSORS:
    tb_safetensors_close(v->handle);
    break;
  }
}

int open_fd_count(void) {
  DIR *dir = opendir("/proc/self/fd");
  if (dir == NULL)
    return -1;
  int count = 0;
  while (readdir(dir) != NULL)
    count++;
  closedir(dir);
  return count;
}
