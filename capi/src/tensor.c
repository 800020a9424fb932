/* Tensor and map entry points: NULL checks here, everything else in core. */
#include "tensor/tensor.h"
#include "boundary.h"

tb_status tb_tensor_new(tb_tensor **out, tb_dtype dtype, size_t ndim,
                        const int64_t *shape, const tb_alloc_options *opts) {
  TB_REQUIRE(out);
  TB_REQUIRE_ARRAY(shape, ndim);
  GError *error = NULL;
  TB_RETURN_HANDLE(out, tb_tensor_create(dtype, ndim, shape, opts, &error),
                   error);
}

tb_status tb_tensor_from_buffer(tb_tensor **out, tb_buffer *buffer,
                                uint64_t byte_offset, tb_dtype dtype,
                                size_t ndim, const int64_t *shape,
                                const int64_t *strides) {
  TB_REQUIRE(out);
  TB_REQUIRE(buffer);
  TB_REQUIRE_ARRAY(shape, ndim);
  GError *error = NULL;
  TB_RETURN_HANDLE(
      out,
      tb_tensor_view(buffer, byte_offset, dtype, ndim, shape, strides, &error),
      error);
}

tb_status tb_tensor_import_fd(tb_tensor **out, int fd, tb_dtype dtype,
                              size_t ndim, const int64_t *shape,
                              uint64_t byte_offset) {
  TB_REQUIRE(out);
  TB_REQUIRE_ARRAY(shape, ndim);
  if (fd < 0)
    return tb_fail(__func__, TB_ERR_INVALID_ARGUMENT, "fd is %d", fd);
  GError *error = NULL;
  TB_RETURN_HANDLE(
      out, tb_tensor_open_fd(fd, dtype, ndim, shape, byte_offset, &error),
      error);
}

tb_status tb_tensor_export_fd(int *out_fd, const tb_tensor *tensor) {
  TB_REQUIRE(out_fd);
  TB_REQUIRE(tensor);
  GError *error = NULL;
  TB_RETURN_FD(out_fd, tb_buffer_dup_fd(tensor->buffer, &error), error);
}

tb_status tb_tensor_set_name(tb_tensor *tensor, const char *name) {
  TB_REQUIRE(tensor);
  tb_tensor_rename(tensor, name);
  return TB_OK;
}

tb_status tb_tensor_reshape(tb_tensor **out, const tb_tensor *tensor,
                            size_t ndim, const int64_t *shape) {
  TB_REQUIRE(out);
  TB_REQUIRE(tensor);
  TB_REQUIRE_ARRAY(shape, ndim);
  GError *error = NULL;
  TB_RETURN_HANDLE(out, tb_tensor_reshaped(tensor, ndim, shape, &error), error);
}

tb_status tb_tensor_slice(tb_tensor **out, const tb_tensor *tensor, size_t axis,
                          int64_t start, int64_t stop, int64_t step) {
  TB_REQUIRE(out);
  TB_REQUIRE(tensor);
  GError *error = NULL;
  TB_RETURN_HANDLE(
      out, tb_tensor_sliced(tensor, axis, start, stop, step, &error), error);
}

tb_status tb_tensor_set_quantization(tb_tensor *tensor, int64_t axis,
                                     size_t count, const double *scales,
                                     const int64_t *zero_points) {
  TB_REQUIRE(tensor);
  TB_REQUIRE_ARRAY(scales, count);
  GError *error = NULL;
  TB_RETURN(
      tb_tensor_quantize(tensor, axis, count, scales, zero_points, &error),
      error);
}

tb_status tb_tensor_quantization_get(double *scale_out, int64_t *zero_point_out,
                                     const tb_tensor *tensor, size_t index) {
  TB_REQUIRE(scale_out);
  TB_REQUIRE(zero_point_out);
  TB_REQUIRE(tensor);
  GError *error = NULL;
  TB_RETURN(tb_tensor_quantization_at(tensor, index, scale_out, zero_point_out,
                                      &error),
            error);
}

tb_status tb_tensor_get_f64(double *out, tb_tensor *tensor, size_t nindex,
                            const int64_t *index) {
  TB_REQUIRE(out);
  TB_REQUIRE(tensor);
  TB_REQUIRE_ARRAY(index, nindex);
  GError *error = NULL;
  TB_RETURN(tb_tensor_get_f64_at(tensor, nindex, index, out, &error), error);
}

tb_status tb_tensor_get_i64(int64_t *out, tb_tensor *tensor, size_t nindex,
                            const int64_t *index) {
  TB_REQUIRE(out);
  TB_REQUIRE(tensor);
  TB_REQUIRE_ARRAY(index, nindex);
  GError *error = NULL;
  TB_RETURN(tb_tensor_get_i64_at(tensor, nindex, index, out, &error), error);
}

tb_status tb_tensor_set_f64(tb_tensor *tensor, size_t nindex,
                            const int64_t *index, double value) {
  TB_REQUIRE(tensor);
  TB_REQUIRE_ARRAY(index, nindex);
  GError *error = NULL;
  TB_RETURN(tb_tensor_set_f64_at(tensor, nindex, index, value, &error), error);
}

tb_status tb_tensor_set_i64(tb_tensor *tensor, size_t nindex,
                            const int64_t *index, int64_t value) {
  TB_REQUIRE(tensor);
  TB_REQUIRE_ARRAY(index, nindex);
  GError *error = NULL;
  TB_RETURN(tb_tensor_set_i64_at(tensor, nindex, index, value, &error), error);
}

tb_status tb_tensor_read_bytes(void *dst, size_t size, tb_tensor *tensor) {
  TB_REQUIRE(tensor);
  TB_REQUIRE_ARRAY(dst, size);
  GError *error = NULL;
  TB_RETURN(tb_tensor_copy_out(tensor, dst, size, &error), error);
}

tb_status tb_tensor_write_bytes(tb_tensor *tensor, const void *src,
                                size_t size) {
  TB_REQUIRE(tensor);
  TB_REQUIRE_ARRAY(src, size);
  GError *error = NULL;
  TB_RETURN(tb_tensor_copy_in(tensor, src, size, &error), error);
}

tb_status tb_tensor_map(tb_map **out, tb_tensor *tensor, uint32_t flags) {
  TB_REQUIRE(out);
  TB_REQUIRE(tensor);
  GError *error = NULL;
  TB_RETURN_HANDLE(out, tb_map_create(tensor, flags, &error), error);
}
