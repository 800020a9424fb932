/* Image and pixel-format entry points: NULL checks here, the rest in core. */
#include "tensor/image.h"
#include "boundary.h"

tb_status tb_pixel_format_from_name(tb_pixel_format *out, const char *name) {
  TB_REQUIRE(out);
  TB_REQUIRE(name);
  if (!tb_pixel_format_lookup_name(name, out))
    return tb_fail(__func__, TB_ERR_INVALID_ARGUMENT,
                   "name is \"%s\", not a pixel format name", name);
  return TB_OK;
}

tb_status tb_pixel_format_from_fourcc(tb_pixel_format *out, uint32_t fourcc) {
  TB_REQUIRE(out);
  if (!tb_pixel_format_lookup_fourcc(fourcc, out))
    return tb_fail(__func__, TB_ERR_UNSUPPORTED,
                   "fourcc is 0x%08x, not the DRM fourcc of a pixel format",
                   fourcc);
  return TB_OK;
}

tb_status tb_image_new(tb_tensor **out, uint32_t width, uint32_t height,
                       tb_pixel_format format, tb_dtype dtype,
                       const tb_alloc_options *opts) {
  TB_REQUIRE(out);
  GError *error = NULL;
  TB_RETURN_HANDLE(
      out, tb_image_create(width, height, format, dtype, opts, &error), error);
}

tb_status tb_image_new_with_layout(tb_tensor **out, uint32_t width,
                                   uint32_t height, tb_pixel_format format,
                                   size_t nplanes, const uint64_t *offsets,
                                   const uint64_t *strides, tb_dtype dtype,
                                   const tb_alloc_options *opts) {
  TB_REQUIRE(out);
  TB_REQUIRE_ARRAY(offsets, nplanes);
  TB_REQUIRE_ARRAY(strides, nplanes);
  GError *error = NULL;
  TB_RETURN_HANDLE(out,
                   tb_image_create_with_layout(width, height, format, nplanes,
                                               offsets, strides, dtype, opts,
                                               &error),
                   error);
}

tb_status tb_image_import(tb_tensor **out, uint32_t width, uint32_t height,
                          tb_pixel_format format, size_t nplanes,
                          const int *fds, const uint64_t *offsets,
                          const uint64_t *strides) {
  TB_REQUIRE(out);
  TB_REQUIRE_ARRAY(fds, nplanes);
  TB_REQUIRE_ARRAY(offsets, nplanes);
  TB_REQUIRE_ARRAY(strides, nplanes);
  if (nplanes > TB_IMAGE_MAX_PLANES)
    return tb_fail(__func__, TB_ERR_INVALID_ARGUMENT,
                   "nplanes is %zu; an image has at most %d planes", nplanes,
                   TB_IMAGE_MAX_PLANES);
  for (size_t i = 0; i < nplanes; i++)
    if (fds[i] < 0)
      return tb_fail(__func__, TB_ERR_INVALID_ARGUMENT, "fds[%zu] is %d", i,
                     fds[i]);
  GError *error = NULL;
  TB_RETURN_HANDLE(out,
                   tb_image_import_planes(width, height, format, nplanes, fds,
                                          offsets, strides, &error),
                   error);
}

tb_status tb_image_set_format(tb_tensor *tensor, tb_pixel_format format) {
  TB_REQUIRE(tensor);
  GError *error = NULL;
  TB_RETURN(tb_image_apply_format(tensor, format, &error), error);
}

tb_status tb_image_plane(tb_tensor **out, const tb_tensor *image,
                         size_t plane) {
  TB_REQUIRE(out);
  TB_REQUIRE(image);
  GError *error = NULL;
  TB_RETURN_HANDLE(out, tb_image_plane_view(image, plane, &error), error);
}

tb_status tb_image_export_plane_fd(int *out_fd, const tb_tensor *image,
                                   size_t plane) {
  TB_REQUIRE(out_fd);
  TB_REQUIRE(image);
  GError *error = NULL;
  TB_RETURN_FD(out_fd, tb_image_dup_plane_fd(image, plane, &error), error);
}
