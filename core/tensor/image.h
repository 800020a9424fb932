/* Images: pixel-format facts and the per-plane metadata a tensor carries. */
#ifndef TB_IMAGE_INTERNAL_H
#define TB_IMAGE_INTERNAL_H

#include "tensor/tensor.h"

#define TB_IMAGE_ERROR (tb_image_error_quark())

typedef struct TbImagePlane {
  tb_buffer *buffer; /* a reference of the image's own */
  uint64_t offset;   /* bytes from the buffer's start to the first row */
  uint64_t stride;   /* bytes from one row to the next */
} TbImagePlane;

/* Owned by one tensor (tb_tensor.image); views never copy it. */
struct TbImage {
  tb_pixel_format format;
  uint32_t width;
  uint32_t height;
  size_t nplanes;
  TbImagePlane planes[TB_IMAGE_MAX_PLANES];
};

void tb_image_free(TbImage *image);
/* The same image with every plane in `buffer` instead (all of `image`'s
 * planes must share one buffer). */
TbImage *tb_image_copy_onto(const TbImage *image, tb_buffer *buffer);
/* Whether all of the image's planes live in one buffer. */
gboolean tb_image_single_buffer(const TbImage *image);

/* Lookups for capi: FALSE if no format has that name or DRM fourcc. */
gboolean tb_pixel_format_lookup_name(const char *name, tb_pixel_format *out);
gboolean tb_pixel_format_lookup_fourcc(uint32_t fourcc, tb_pixel_format *out);

tb_tensor *tb_image_create(uint32_t width, uint32_t height,
                           tb_pixel_format format, tb_dtype dtype,
                           const tb_alloc_options *opts, GError **error);
/* tb_image_create with every plane's offset and row pitch given. */
tb_tensor *tb_image_create_with_layout(uint32_t width, uint32_t height,
                                       tb_pixel_format format, size_t nplanes,
                                       const uint64_t *offsets,
                                       const uint64_t *strides, tb_dtype dtype,
                                       const tb_alloc_options *opts,
                                       GError **error);
tb_tensor *tb_image_import_planes(uint32_t width, uint32_t height,
                                  tb_pixel_format format, size_t nplanes,
                                  const int *fds, const uint64_t *offsets,
                                  const uint64_t *strides, GError **error);
gboolean tb_image_apply_format(tb_tensor *tensor, tb_pixel_format format,
                               GError **error);
tb_tensor *tb_image_plane_view(const tb_tensor *image, size_t plane,
                               GError **error);
/* Where plane `index` of a `format` image of width x height `dtype`
 * samples, at `offset` with rows `stride` bytes apart, ends: the bytes of
 * its buffer it needs (what a channel's receiver maps). FALSE, with the
 * error tb_image_from_buffers would give, for geometry it refuses. */
gboolean tb_image_plane_end(tb_pixel_format format, tb_dtype dtype,
                            uint32_t width, uint32_t height, size_t index,
                            uint64_t offset, uint64_t stride, uint64_t *end,
                            GError **error);
/* An image over planes in buffers already mapped (what a channel's
 * receiver holds): each plane is checked to fit in its buffer. */
tb_tensor *tb_image_from_buffers(uint32_t width, uint32_t height,
                                 tb_pixel_format format, tb_dtype dtype,
                                 size_t nplanes, tb_buffer *const *buffers,
                                 const uint64_t *offsets,
                                 const uint64_t *strides, GError **error);
/* A dup of plane `plane`'s buffer fd, or -1 with `error` set. */
int tb_image_dup_plane_fd(const tb_tensor *image, size_t plane, GError **error);

#endif
