/* tensorbuf — images: pixel formats, planes, row pitch and plane offsets.
 *
 * An image is a tensor that carries image metadata: a pixel format, a width
 * and a height in pixels, and for each plane (up to TB_IMAGE_MAX_PLANES) the
 * buffer it lives in, the byte offset of its first row in that buffer and its
 * row pitch ("stride") in bytes. Every plane's rows may be padded: the pitch
 * is at least the bytes of a row's samples, never less.
 *
 * The tensor's own shape is the one the image's bytes naturally have:
 *
 *   packed formats (RGB, RGBA, ..., GREY, YUYV, VYUY, UYVY):
 *     [H, W, C], strides [pitch / e, C, 1], where e is the dtype size and C
 *     the elements per pixel (3 for RGB, 4 for RGBA/BGRA/RGBX/BGRX, 1 for
 *     GREY, 2 for the 4:2:2 packings, whose width dim is rounded up to even,
 *     see "odd sizes" below);
 *   PLANAR_RGB, PLANAR_RGBA:
 *     [C, H, W], strides [plane step / e, pitch / e, 1];
 *   the YUV formats with several planes (NV12, NV21, NV16, NV24, I420, P010):
 *     [R, W], strides [pitch / e, 1], the planes' rows stacked one after the
 *     other at the luma pitch, so that NV12 is the familiar [H * 3/2, W]. R is
 *     H + ceil(H/2) for the 4:2:0 formats (NV12, NV21, I420, P010), 2H for
 *     NV16 and 3H for NV24. The chroma planes' pitch is the luma pitch (NV12,
 *     NV21, NV16, P010), twice it (NV24: a chroma row holds 2W samples) or
 *     half of it (I420: a U or V row holds W/2 samples).
 *
 * The planar and multi-plane shapes need every plane in one buffer at the
 * pitches and offsets above (tb_image_new always makes such images). An
 * imported image whose planes come from several fds (V4L2 multi-planar) or
 * sit at other offsets has no single strided layout; its tensor is then
 * plane 0 alone (as tb_image_plane(.., 0) gives it): the tensor's buffer is
 * plane 0's, and the image metadata holds a reference to each other plane's
 * buffer, reached with tb_image_plane() and tb_image_export_plane_fd().
 *
 * Odd sizes. Chroma subsampled by 2 covers ceil(W/2) columns and ceil(H/2)
 * rows (the rule of V4L2 and DRM): a 5x3 NV12 image has a 3x2 chroma plane of
 * UV pairs, a 6-byte chroma row and 2 chroma rows. A 4:2:2 packed row holds
 * ceil(W/2) macropixels of 4 bytes, so its tensor's width dim is 2*ceil(W/2).
 *
 * Metadata rules. Views never carry image metadata: tb_tensor_reshape,
 * tb_tensor_slice, tb_tensor_from_buffer and tb_image_plane give plain
 * tensors, because the planes' geometry would not describe the new shape.
 *
 * Thread-safety: as tensor.h; tb_image_set_format changes metadata and must
 * not race with other calls on the same tensor. */
#ifndef TENSORBUF_IMAGE_H
#define TENSORBUF_IMAGE_H

#include "tensorbuf/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Most planes an image has. */
#define TB_IMAGE_MAX_PLANES 4

/* Pixel formats. Values are ABI: explicit, never renumbered. The memory
 * order of the samples is the one the name spells (RGBA: R at the lowest
 * address), for 8-bit samples. */
typedef enum tb_pixel_format {
  TB_PIXEL_FORMAT_INVALID = 0,
  TB_PIXEL_FORMAT_RGB = 1,         /* packed R, G, B */
  TB_PIXEL_FORMAT_RGBA = 2,        /* packed R, G, B, A */
  TB_PIXEL_FORMAT_BGRA = 3,        /* packed B, G, R, A */
  TB_PIXEL_FORMAT_RGBX = 4,        /* packed R, G, B, unused */
  TB_PIXEL_FORMAT_BGRX = 5,        /* packed B, G, R, unused */
  TB_PIXEL_FORMAT_GREY = 6,        /* one luminance sample */
  TB_PIXEL_FORMAT_YUYV = 7,        /* packed 4:2:2: Y0 U Y1 V */
  TB_PIXEL_FORMAT_VYUY = 8,        /* packed 4:2:2: V Y0 U Y1 */
  TB_PIXEL_FORMAT_UYVY = 9,        /* packed 4:2:2: U Y0 V Y1 */
  TB_PIXEL_FORMAT_NV12 = 10,       /* Y plane + UV plane, 4:2:0 */
  TB_PIXEL_FORMAT_NV21 = 11,       /* Y plane + VU plane, 4:2:0 */
  TB_PIXEL_FORMAT_NV16 = 12,       /* Y plane + UV plane, 4:2:2 */
  TB_PIXEL_FORMAT_NV24 = 13,       /* Y plane + UV plane, 4:4:4 */
  TB_PIXEL_FORMAT_I420 = 14,       /* Y, U, V planes, 4:2:0 */
  TB_PIXEL_FORMAT_P010 = 15,       /* NV12 with 16-bit samples, 10 bits used
                                      (the high ones) */
  TB_PIXEL_FORMAT_PLANAR_RGB = 16, /* R, G, B planes */
  TB_PIXEL_FORMAT_PLANAR_RGBA = 17 /* R, G, B, A planes */
} tb_pixel_format;

/* How a format arranges its samples. Values are ABI. */
typedef enum tb_pixel_layout {
  TB_PIXEL_LAYOUT_INVALID = 0,
  TB_PIXEL_LAYOUT_PACKED = 1,     /* one plane, a pixel's samples together */
  TB_PIXEL_LAYOUT_PLANAR = 2,     /* one plane per component */
  TB_PIXEL_LAYOUT_SEMI_PLANAR = 3 /* a luma plane and an interleaved chroma
                                     plane */
} tb_pixel_layout;

/* ---- format facts (infallible; 0 / NULL for an invalid format) ---------- */

/* Lower-case name: "rgb", "nv12", "planar_rgba". */
TB_API const char *tb_pixel_format_name(tb_pixel_format format);
/* Errors: TB_ERR_INVALID_ARGUMENT (NULL argument or unknown name). */
TB_API tb_status tb_pixel_format_from_name(tb_pixel_format *out,
                                           const char *name);

/* The DRM fourcc (drm_fourcc.h) with the same memory layout: RGBA is
 * DRM_FORMAT_ABGR8888 ('AB24'), RGB is DRM_FORMAT_BGR888 ('BG24'), GREY is
 * DRM_FORMAT_R8 ('R8  '), I420 is DRM_FORMAT_YUV420 ('YU12'). DRM has no
 * planar RGB formats: PLANAR_RGB and PLANAR_RGBA give 0. */
TB_API uint32_t tb_pixel_format_to_fourcc(tb_pixel_format format);
/* The format whose tb_pixel_format_to_fourcc is `fourcc`.
 * Errors: TB_ERR_INVALID_ARGUMENT (NULL out), TB_ERR_UNSUPPORTED (a fourcc
 * that is none of these formats). */
TB_API tb_status tb_pixel_format_from_fourcc(tb_pixel_format *out,
                                             uint32_t fourcc);

/* How the format lays out its planes (tb_pixel_layout). */
TB_API tb_pixel_layout tb_pixel_format_layout(tb_pixel_format format);
/* Colour components per pixel, padding and alpha included: RGB 3, RGBX 4,
 * GREY 1, the YUV formats 3 (Y, U, V). */
TB_API uint32_t tb_pixel_format_channels(tb_pixel_format format);
TB_API uint32_t tb_pixel_format_plane_count(tb_pixel_format format);
/* Whether samples are Y, U and V (the packed 4:2:2, NV and I420 formats and
 * P010); false for RGB, GREY and an invalid format. */
TB_API bool tb_pixel_format_is_yuv(tb_pixel_format format);
/* Whether one component is alpha (RGBA, BGRA, PLANAR_RGBA; RGBX and BGRX
 * only pad). */
TB_API bool tb_pixel_format_has_alpha(tb_pixel_format format);
/* Significant bits per sample: 8, or 10 for P010 (stored in 16). */
TB_API uint32_t tb_pixel_format_bits(tb_pixel_format format);
/* Subsampling of a plane: how many pixels of the image one sample of that
 * plane covers across (hsub) and down (vsub): 1 or 2. NV12's plane 1 is
 * 2 and 2; a packed 4:2:2 plane reports its chroma's 2 and 1. 0 for a plane
 * the format does not have. */
TB_API uint32_t tb_pixel_format_plane_hsub(tb_pixel_format format,
                                           size_t plane);
TB_API uint32_t tb_pixel_format_plane_vsub(tb_pixel_format format,
                                           size_t plane);
/* Whether images of this format may have elements of this dtype: u8 for
 * every 8-bit format; u16 for P010 and GREY; f16 and f32 for GREY, RGBA,
 * PLANAR_RGB and PLANAR_RGBA (textures and model inputs). */
TB_API bool tb_pixel_format_supports_dtype(tb_pixel_format format,
                                           tb_dtype dtype);

/* ---- creation ------------------------------------------------------------ */

/* A new zero-filled image with all its planes in one buffer. Every plane's
 * row pitch, and every plane's offset, is a multiple of opts->alignment
 * (default 64 bytes, what GPUs ask for; I420 aligns the luma pitch to twice
 * that, so that its half-pitch chroma rows stay aligned). Memory kind and
 * name come from opts as for tb_tensor_new.
 * Errors: TB_ERR_INVALID_ARGUMENT (NULL out, invalid format, bad opts),
 * TB_ERR_SHAPE (width or height 0, or the image's bytes overflow),
 * TB_ERR_DTYPE (a dtype the format does not allow), TB_ERR_VERSION,
 * TB_ERR_NO_MEMORY, TB_ERR_UNSUPPORTED, TB_ERR_SYSTEM. */
TB_API tb_status tb_image_new(tb_tensor **out, uint32_t width, uint32_t height,
                              tb_pixel_format format, tb_dtype dtype,
                              const tb_alloc_options *opts);

/* A new zero-filled image with all its planes in one buffer, laid out as
 * the caller says (what V4L2, an encoder or a GPU API asks for): plane i
 * starts at byte `offsets[i]` of the buffer and its rows are `strides[i]`
 * bytes apart. nplanes is the format's plane count. The buffer holds every
 * plane up to the end of its last row's padding (offset + stride * rows),
 * and nothing more. The image tensor has the shape above when the planes
 * sit where tb_image_new would put them relative to plane 0 (the stacked
 * rows, equally spaced planar planes); otherwise it is plane 0 alone, and
 * tb_image_plane gives the others. tb_image_new is this call with the
 * default layout. Memory kind and name come from opts as for tb_tensor_new;
 * opts->alignment aligns the buffer, not the planes.
 * Checks, each naming the argument: a stride at least a row's bytes
 * (ceil-subsampled as above, times the element size); strides and offsets
 * multiples of the element size; no plane's bytes (first byte of its first
 * row to last byte of its last row's samples) overlapping another's; every
 * sum and product checked against 2^63.
 * Errors: TB_ERR_INVALID_ARGUMENT (NULL out or array, invalid format,
 * nplanes not the format's plane count, bad opts), TB_ERR_SHAPE (width or
 * height 0), TB_ERR_DTYPE (a dtype the format does not allow),
 * TB_ERR_LAYOUT (a stride smaller than a row, a stride or offset not a
 * multiple of the element size, overlapping planes), TB_ERR_OUT_OF_RANGE
 * (a plane reaching beyond 2^63 bytes), TB_ERR_VERSION, TB_ERR_NO_MEMORY,
 * TB_ERR_UNSUPPORTED, TB_ERR_SYSTEM. */
TB_API tb_status tb_image_new_with_layout(
    tb_tensor **out, uint32_t width, uint32_t height, tb_pixel_format format,
    size_t nplanes, const uint64_t *offsets, const uint64_t *strides,
    tb_dtype dtype, const tb_alloc_options *opts);

/* An image over the planes of shared-memory or dma-buf fds, in the format's
 * own dtype (u8; u16 for P010): plane i is `strides[i]` bytes per row from
 * byte `offsets[i]` of `fds[i]`. Planes may share one fd (the same number or
 * dups of one file: they then share one buffer) or come from several fds.
 * Each fd is classified as tb_tensor_import_fd does, and every plane is
 * checked to fit inside its fd (offset + stride * (rows - 1) + the bytes of
 * a row, as DRM checks framebuffers) before anything is mapped. The fds are
 * dup'd: the caller keeps and closes its own.
 * Errors: TB_ERR_INVALID_ARGUMENT (NULL out or array, invalid format,
 * nplanes not the format's plane count, a negative fd), TB_ERR_SHAPE (width
 * or height 0), TB_ERR_LAYOUT (a stride smaller than a row's bytes, or a
 * stride or offset that is not a multiple of the element size),
 * TB_ERR_BAD_FD (a closed fd, or one that is not shared memory or a dma-buf),
 * TB_ERR_OUT_OF_RANGE (a plane that does not fit in its fd), TB_ERR_SYSTEM. */
TB_API tb_status tb_image_import(tb_tensor **out, uint32_t width,
                                 uint32_t height, tb_pixel_format format,
                                 size_t nplanes, const int *fds,
                                 const uint64_t *offsets,
                                 const uint64_t *strides);

/* Makes `tensor` an image of `format`, reading width, height and pitch from
 * its shape and strides as laid out above (packed [H, W, C], planar
 * [C, H, W], multi-plane YUV [R, W] with R as above); every plane is in the
 * tensor's buffer. TB_PIXEL_FORMAT_INVALID removes the image metadata. On
 * failure the tensor is unchanged.
 * Errors: TB_ERR_INVALID_ARGUMENT (NULL tensor, unknown format),
 * TB_ERR_DTYPE (a dtype the format does not allow), TB_ERR_SHAPE (wrong
 * ndim, channel dim, row count, or a width or height of 0 or above
 * UINT32_MAX), TB_ERR_LAYOUT (strides that are not rows of whole pixels with
 * a positive pitch large enough for every plane's rows, or I420 with an odd
 * pitch), TB_ERR_OUT_OF_RANGE (a chroma plane that would end past the
 * buffer: odd-width NV12 chroma rows reach one byte beyond the [R, W]
 * tensor's). */
TB_API tb_status tb_image_set_format(tb_tensor *tensor, tb_pixel_format format);

/* ---- description (infallible; 0 for a NULL tensor, a tensor that is not an
 * image, or a plane the image does not have) ------------------------------ */

/* The image's pixel format, width and height in pixels, number of planes. */
TB_API tb_pixel_format tb_image_format(const tb_tensor *tensor);
TB_API uint32_t tb_image_width(const tb_tensor *tensor);
TB_API uint32_t tb_image_height(const tb_tensor *tensor);
TB_API size_t tb_image_plane_count(const tb_tensor *tensor);
/* Byte offset of the plane's first row in the plane's buffer. */
TB_API uint64_t tb_image_plane_offset(const tb_tensor *tensor, size_t plane);
/* Row pitch of the plane in bytes. */
TB_API uint64_t tb_image_plane_stride(const tb_tensor *tensor, size_t plane);
/* Identity of the plane's buffer (tb_buffer_id): planes with the same id
 * share one buffer and one fd. */
TB_API uint64_t tb_image_plane_buffer_id(const tb_tensor *tensor, size_t plane);

/* ---- planes -------------------------------------------------------------- */

/* Plane `plane` as a plain tensor sharing the image's bytes (it keeps the
 * image's name, not its image metadata):
 *   packed: the image tensor's [H, W, C];
 *   a luma, single-component or planar-RGB plane: [rows, columns];
 *   an interleaved chroma plane (NV12's UV): [rows, columns, 2];
 * with rows and columns subsampled and rounded up as stated above.
 * Errors: TB_ERR_INVALID_ARGUMENT (NULL argument, tensor not an image),
 * TB_ERR_OUT_OF_RANGE (plane >= plane count). */
TB_API tb_status tb_image_plane(tb_tensor **out, const tb_tensor *image,
                                size_t plane);

/* A new fd (close-on-exec) for the buffer of plane `plane`; the caller
 * closes it. With tb_image_plane_offset and tb_image_plane_stride of every
 * plane it is what tb_image_import takes to rebuild the image elsewhere.
 * Errors: TB_ERR_INVALID_ARGUMENT (NULL argument, tensor not an image),
 * TB_ERR_OUT_OF_RANGE (plane >= plane count), TB_ERR_UNSUPPORTED (HEAP
 * memory has no fd), TB_ERR_SYSTEM. */
TB_API tb_status tb_image_export_plane_fd(int *out_fd, const tb_tensor *image,
                                          size_t plane);

#ifdef __cplusplus
}
#endif

#endif /* TENSORBUF_IMAGE_H */
