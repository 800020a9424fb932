/* Images: the pixel-format table, plane geometry, image creation, import of
 * planes from fds, and plane views. */
#include "tensor/image.h"

TB_DEFINE_QUARK(tb - image - error - quark, tb_image_error)

/* How the image tensor is shaped (image.h gives the reasons). */
typedef enum TbImageShape {
  TB_SHAPE_HWC,  /* packed: [H, W, C] */
  TB_SHAPE_CHW,  /* planar RGB(A): [C, H, W] */
  TB_SHAPE_ROWS, /* multi-plane YUV: the planes' rows stacked, [R, W] */
} TbImageShape;

/* One plane's geometry. Its tensor has ceil(H / vsub) rows of `columns`
 * columns of `comps` elements, where columns = ceil(W' / col_px) and W' is W
 * rounded up to `width_align`. */
typedef struct TbPlaneInfo {
  uint8_t hsub, vsub;  /* subsampling reported by the getters */
  uint8_t col_px;      /* pixels one column covers */
  uint8_t comps;       /* elements per column */
  uint8_t width_align; /* 2 for 4:2:2 packings (whole macropixels) */
  int8_t pitch_shift;  /* stacked pitch: luma pitch << shift (>> -shift) */
} TbPlaneInfo;

typedef struct TbFormatInfo {
  const char *name;
  uint32_t fourcc; /* DRM; 0: DRM has none */
  tb_pixel_layout layout;
  TbImageShape shape;
  uint8_t channels;
  uint8_t bits;
  uint8_t nplanes;
  tb_dtype native; /* the dtype of an imported image */
  uint32_t dtypes; /* allowed dtypes, bit (1 << dtype) */
  TbPlaneInfo planes[TB_IMAGE_MAX_PLANES];
} TbFormatInfo;

#define FOURCC(a, b, c, d)                                                     \
  ((uint32_t)(a) | (uint32_t)(b) << 8 | (uint32_t)(c) << 16 |                  \
   (uint32_t)(d) << 24)
#define BIT(dtype) (1u << (dtype))

/* The plane shapes and the format table, one line each so that they read as
 * tables (clang-format would give every field a line of its own). */
// clang-format off
#define PLANE_FULL            {1, 1, 1, 1, 1, 0}     /* luma, grey, planar RGB */
#define PLANE_PIXELS(n)       {1, 1, 1, n, 1, 0}     /* packed n-sample pixels */
#define PLANE_YUV422_PACKED   {2, 1, 1, 2, 2, 0}     /* 2 bytes a pixel, whole macropixels */
#define PLANE_UV(h, v, shift) {h, v, h, 2, 1, shift} /* interleaved chroma */
#define PLANE_CHROMA_HALF     {2, 2, 2, 1, 1, -1}    /* I420's U and V */

#define U8_ONLY BIT(TB_DTYPE_U8)
#define U8_F16_F32 (BIT(TB_DTYPE_U8) | BIT(TB_DTYPE_F16) | BIT(TB_DTYPE_F32))
#define PACKED TB_PIXEL_LAYOUT_PACKED, TB_SHAPE_HWC
#define SEMI_PLANAR TB_PIXEL_LAYOUT_SEMI_PLANAR, TB_SHAPE_ROWS

static const TbFormatInfo tb_formats[] = {
  /*                        name    DRM fourcc                  layout, shape  ch bits n native        dtypes                           planes */
  [TB_PIXEL_FORMAT_RGB]  = {"rgb",  FOURCC('B', 'G', '2', '4'), PACKED,      3, 8,  1, TB_DTYPE_U8,  U8_ONLY,                         {PLANE_PIXELS(3)}},
  [TB_PIXEL_FORMAT_RGBA] = {"rgba", FOURCC('A', 'B', '2', '4'), PACKED,      4, 8,  1, TB_DTYPE_U8,  U8_F16_F32,                      {PLANE_PIXELS(4)}},
  [TB_PIXEL_FORMAT_BGRA] = {"bgra", FOURCC('A', 'R', '2', '4'), PACKED,      4, 8,  1, TB_DTYPE_U8,  U8_ONLY,                         {PLANE_PIXELS(4)}},
  [TB_PIXEL_FORMAT_RGBX] = {"rgbx", FOURCC('X', 'B', '2', '4'), PACKED,      4, 8,  1, TB_DTYPE_U8,  U8_ONLY,                         {PLANE_PIXELS(4)}},
  [TB_PIXEL_FORMAT_BGRX] = {"bgrx", FOURCC('X', 'R', '2', '4'), PACKED,      4, 8,  1, TB_DTYPE_U8,  U8_ONLY,                         {PLANE_PIXELS(4)}},
  [TB_PIXEL_FORMAT_GREY] = {"grey", FOURCC('R', '8', ' ', ' '), PACKED,      1, 8,  1, TB_DTYPE_U8,  U8_F16_F32 | BIT(TB_DTYPE_U16), {PLANE_PIXELS(1)}},
  [TB_PIXEL_FORMAT_YUYV] = {"yuyv", FOURCC('Y', 'U', 'Y', 'V'), PACKED,      3, 8,  1, TB_DTYPE_U8,  U8_ONLY,                         {PLANE_YUV422_PACKED}},
  [TB_PIXEL_FORMAT_VYUY] = {"vyuy", FOURCC('V', 'Y', 'U', 'Y'), PACKED,      3, 8,  1, TB_DTYPE_U8,  U8_ONLY,                         {PLANE_YUV422_PACKED}},
  [TB_PIXEL_FORMAT_UYVY] = {"uyvy", FOURCC('U', 'Y', 'V', 'Y'), PACKED,      3, 8,  1, TB_DTYPE_U8,  U8_ONLY,                         {PLANE_YUV422_PACKED}},
  [TB_PIXEL_FORMAT_NV12] = {"nv12", FOURCC('N', 'V', '1', '2'), SEMI_PLANAR, 3, 8,  2, TB_DTYPE_U8,  U8_ONLY,                         {PLANE_FULL, PLANE_UV(2, 2, 0)}},
  [TB_PIXEL_FORMAT_NV21] = {"nv21", FOURCC('N', 'V', '2', '1'), SEMI_PLANAR, 3, 8,  2, TB_DTYPE_U8,  U8_ONLY,                         {PLANE_FULL, PLANE_UV(2, 2, 0)}},
  [TB_PIXEL_FORMAT_NV16] = {"nv16", FOURCC('N', 'V', '1', '6'), SEMI_PLANAR, 3, 8,  2, TB_DTYPE_U8,  U8_ONLY,                         {PLANE_FULL, PLANE_UV(2, 1, 0)}},
  [TB_PIXEL_FORMAT_NV24] = {"nv24", FOURCC('N', 'V', '2', '4'), SEMI_PLANAR, 3, 8,  2, TB_DTYPE_U8,  U8_ONLY,                         {PLANE_FULL, PLANE_UV(1, 1, 1)}},
  [TB_PIXEL_FORMAT_I420] = {"i420", FOURCC('Y', 'U', '1', '2'), TB_PIXEL_LAYOUT_PLANAR, TB_SHAPE_ROWS,
                                                                             3, 8,  3, TB_DTYPE_U8,  U8_ONLY,                         {PLANE_FULL, PLANE_CHROMA_HALF, PLANE_CHROMA_HALF}},
  [TB_PIXEL_FORMAT_P010] = {"p010", FOURCC('P', '0', '1', '0'), SEMI_PLANAR, 3, 10, 2, TB_DTYPE_U16, BIT(TB_DTYPE_U16),               {PLANE_FULL, PLANE_UV(2, 2, 0)}},
  [TB_PIXEL_FORMAT_PLANAR_RGB] = {"planar_rgb", 0, TB_PIXEL_LAYOUT_PLANAR, TB_SHAPE_CHW,
                                                                             3, 8,  3, TB_DTYPE_U8,  U8_F16_F32,                      {PLANE_FULL, PLANE_FULL, PLANE_FULL}},
  [TB_PIXEL_FORMAT_PLANAR_RGBA] = {"planar_rgba", 0, TB_PIXEL_LAYOUT_PLANAR, TB_SHAPE_CHW,
                                                                             4, 8,  4, TB_DTYPE_U8,  U8_F16_F32,                      {PLANE_FULL, PLANE_FULL, PLANE_FULL, PLANE_FULL}},
};
// clang-format on

static const TbFormatInfo *format_info(tb_pixel_format format) {
  if ((unsigned)format >= G_N_ELEMENTS(tb_formats) ||
      tb_formats[format].name == NULL)
    return NULL;
  return &tb_formats[format];
}

static const TbPlaneInfo *plane_info(tb_pixel_format format, size_t plane) {
  const TbFormatInfo *info = format_info(format);
  return info != NULL && plane < info->nplanes ? &info->planes[plane] : NULL;
}

/* ---- format facts -------------------------------------------------------- */

const char *tb_pixel_format_name(tb_pixel_format format) {
  const TbFormatInfo *info = format_info(format);
  return info != NULL ? info->name : NULL;
}

uint32_t tb_pixel_format_to_fourcc(tb_pixel_format format) {
  const TbFormatInfo *info = format_info(format);
  return info != NULL ? info->fourcc : 0;
}

tb_pixel_layout tb_pixel_format_layout(tb_pixel_format format) {
  const TbFormatInfo *info = format_info(format);
  return info != NULL ? info->layout : TB_PIXEL_LAYOUT_INVALID;
}

uint32_t tb_pixel_format_channels(tb_pixel_format format) {
  const TbFormatInfo *info = format_info(format);
  return info != NULL ? info->channels : 0;
}

bool tb_pixel_format_is_yuv(tb_pixel_format format) {
  switch (format) {
  case TB_PIXEL_FORMAT_YUYV:
  case TB_PIXEL_FORMAT_VYUY:
  case TB_PIXEL_FORMAT_UYVY:
  case TB_PIXEL_FORMAT_NV12:
  case TB_PIXEL_FORMAT_NV21:
  case TB_PIXEL_FORMAT_NV16:
  case TB_PIXEL_FORMAT_NV24:
  case TB_PIXEL_FORMAT_I420:
  case TB_PIXEL_FORMAT_P010:
    return true;
  default:
    return false;
  }
}

bool tb_pixel_format_has_alpha(tb_pixel_format format) {
  return format == TB_PIXEL_FORMAT_RGBA || format == TB_PIXEL_FORMAT_BGRA ||
         format == TB_PIXEL_FORMAT_PLANAR_RGBA;
}

uint32_t tb_pixel_format_plane_count(tb_pixel_format format) {
  const TbFormatInfo *info = format_info(format);
  return info != NULL ? info->nplanes : 0;
}

uint32_t tb_pixel_format_bits(tb_pixel_format format) {
  const TbFormatInfo *info = format_info(format);
  return info != NULL ? info->bits : 0;
}

uint32_t tb_pixel_format_plane_hsub(tb_pixel_format format, size_t plane) {
  const TbPlaneInfo *p = plane_info(format, plane);
  return p != NULL ? p->hsub : 0;
}

uint32_t tb_pixel_format_plane_vsub(tb_pixel_format format, size_t plane) {
  const TbPlaneInfo *p = plane_info(format, plane);
  return p != NULL ? p->vsub : 0;
}

bool tb_pixel_format_supports_dtype(tb_pixel_format format, tb_dtype dtype) {
  const TbFormatInfo *info = format_info(format);
  return info != NULL && (unsigned)dtype < 32 && tb_dtype_size(dtype) != 0 &&
         (info->dtypes & BIT(dtype));
}

gboolean tb_pixel_format_lookup_name(const char *name, tb_pixel_format *out) {
  for (unsigned i = 0; i < G_N_ELEMENTS(tb_formats); i++) {
    if (tb_formats[i].name != NULL && g_str_equal(tb_formats[i].name, name)) {
      *out = (tb_pixel_format)i;
      return TRUE;
    }
  }
  return FALSE;
}

gboolean tb_pixel_format_lookup_fourcc(uint32_t fourcc, tb_pixel_format *out) {
  for (unsigned i = 0; fourcc != 0 && i < G_N_ELEMENTS(tb_formats); i++) {
    if (tb_formats[i].name != NULL && tb_formats[i].fourcc == fourcc) {
      *out = (tb_pixel_format)i;
      return TRUE;
    }
  }
  return FALSE;
}

/* ---- plane geometry ------------------------------------------------------ */

/* Rows of a plane: chroma subsampled by 2 covers ceil(H/2) rows. */
static uint64_t plane_rows(const TbPlaneInfo *p, uint32_t height) {
  return ((uint64_t)height + p->vsub - 1) / p->vsub;
}

/* Columns of a plane's tensor: ceil(W'/col_px) for W rounded up to whole
 * macropixels, so subsampled chroma covers ceil(W/2) columns. */
static uint64_t plane_columns(const TbPlaneInfo *p, uint32_t width) {
  uint64_t whole =
      ((uint64_t)width + p->width_align - 1) / p->width_align * p->width_align;
  return (whole + p->col_px - 1) / p->col_px;
}

/* Bytes of the samples of one row of a plane (below 2^38: no overflow). */
static uint64_t plane_row_bytes(const TbPlaneInfo *p, uint32_t width,
                                size_t elem) {
  return plane_columns(p, width) * p->comps * elem;
}

/* Pitch of a stacked plane given the luma pitch; FALSE on overflow or for
 * I420 with an odd luma pitch (its chroma pitch is half of it). */
static gboolean stacked_pitch(const TbPlaneInfo *p, uint64_t luma_pitch,
                              uint64_t *pitch) {
  if (p->pitch_shift < 0) {
    *pitch = luma_pitch / 2;
    return luma_pitch % 2 == 0;
  }
  return tb_mul_u64(luma_pitch, p->pitch_shift > 0 ? 2 : 1, pitch);
}

/* Offsets and pitches of the planes stacked one after the other from `base`
 * at pitches derived from `luma_pitch`: tb_image_new's layout, and the one
 * the stacked image tensors describe. `*end` is the end of the last plane.
 * FALSE on overflow or an odd I420 pitch. */
static gboolean stack_planes(const TbFormatInfo *info, uint32_t height,
                             uint64_t base, uint64_t luma_pitch,
                             TbImagePlane *planes, uint64_t *end) {
  uint64_t offset = base;
  for (size_t i = 0; i < info->nplanes; i++) {
    uint64_t bytes;
    if (!stacked_pitch(&info->planes[i], luma_pitch, &planes[i].stride) ||
        !tb_mul_u64(planes[i].stride, plane_rows(&info->planes[i], height),
                    &bytes))
      return FALSE;
    planes[i].offset = offset;
    if (!tb_add_u64(offset, bytes, &offset))
      return FALSE;
  }
  *end = offset;
  return TRUE;
}

/* Rows of the stacked image tensor of a `height`-row image: the planes' rows
 * counted in rows of the luma pitch (in halves: I420's chroma rows are
 * half-pitch rows). */
static uint64_t stacked_half_rows(const TbFormatInfo *info, uint32_t height) {
  uint64_t halves = 0;
  for (size_t i = 0; i < info->nplanes; i++)
    halves += plane_rows(&info->planes[i], height)
              << (info->planes[i].pitch_shift + 1);
  return halves;
}

/* ---- image metadata and the tensors that describe it --------------------- */

static TbImage *image_new(tb_pixel_format format, uint32_t width,
                          uint32_t height) {
  TbImage *image = g_new0(TbImage, 1);
  image->format = format;
  image->width = width;
  image->height = height;
  image->nplanes = format_info(format)->nplanes;
  return image;
}

static void image_set_plane(TbImage *image, size_t index, tb_buffer *buffer,
                            uint64_t offset, uint64_t stride) {
  TbImagePlane *plane = &image->planes[index];
  tb_buffer_unref(plane->buffer);
  plane->buffer = tb_buffer_ref(buffer);
  plane->offset = offset;
  plane->stride = stride;
}

void tb_image_free(TbImage *image) {
  if (image == NULL)
    return;
  for (size_t i = 0; i < image->nplanes; i++)
    tb_buffer_unref(image->planes[i].buffer);
  g_free(image);
}

G_DEFINE_AUTOPTR_CLEANUP_FUNC(TbImage, tb_image_free)

gboolean tb_image_single_buffer(const TbImage *image) {
  for (size_t i = 1; i < image->nplanes; i++)
    if (image->planes[i].buffer != image->planes[0].buffer)
      return FALSE;
  return TRUE;
}

TbImage *tb_image_copy_onto(const TbImage *image, tb_buffer *buffer) {
  TbImage *copy = image_new(image->format, image->width, image->height);
  for (size_t i = 0; i < image->nplanes; i++)
    image_set_plane(copy, i, buffer, image->planes[i].offset,
                    image->planes[i].stride);
  return copy;
}

/* A tensor layout: where it starts, its dims and strides (elements). */
typedef struct TbLayout {
  tb_buffer *buffer;
  uint64_t offset;
  size_t ndim;
  int64_t shape[3];
  int64_t strides[3];
} TbLayout;

/* Plane `index` as a tensor: [rows, columns] or [rows, columns, comps]. */
static void plane_layout(const TbFormatInfo *info, const TbImage *image,
                         size_t index, size_t elem, TbLayout *out) {
  const TbPlaneInfo *p = &info->planes[index];
  const TbImagePlane *plane = &image->planes[index];
  out->buffer = plane->buffer;
  out->offset = plane->offset;
  out->ndim = 2;
  out->shape[0] = (int64_t)plane_rows(p, image->height);
  out->shape[1] = (int64_t)plane_columns(p, image->width);
  out->strides[0] = (int64_t)(plane->stride / elem);
  out->strides[1] = 1;
  if (info->shape == TB_SHAPE_HWC || p->comps > 1) {
    out->ndim = 3;
    out->shape[2] = p->comps;
    out->strides[1] = p->comps;
    out->strides[2] = 1;
  }
}

/* Planar RGB as [C, H, W]: every plane in plane 0's buffer at plane 0's
 * pitch, equally spaced upwards. */
static gboolean channel_layout(const TbImage *image, size_t elem,
                               TbLayout *out) {
  const TbImagePlane *planes = image->planes;
  if (planes[1].offset <= planes[0].offset)
    return FALSE;
  uint64_t step = planes[1].offset - planes[0].offset;
  for (size_t i = 1; i < image->nplanes; i++) {
    if (planes[i].buffer != planes[0].buffer ||
        planes[i].stride != planes[0].stride ||
        planes[i].offset <= planes[i - 1].offset ||
        planes[i].offset - planes[i - 1].offset != step)
      return FALSE;
  }
  if (step % elem != 0)
    return FALSE;
  out->ndim = 3;
  out->shape[2] = out->shape[1];
  out->shape[1] = out->shape[0];
  out->shape[0] = (int64_t)image->nplanes;
  out->strides[2] = 1;
  out->strides[1] = out->strides[0];
  out->strides[0] = (int64_t)(step / elem);
  return TRUE;
}

/* Multi-plane YUV as [R, W]: the planes stacked as tb_image_new lays them
 * out, in plane 0's buffer. */
static gboolean row_layout(const TbFormatInfo *info, const TbImage *image,
                           size_t elem, TbLayout *out) {
  const TbImagePlane *planes = image->planes;
  TbImagePlane stacked[TB_IMAGE_MAX_PLANES];
  uint64_t end;
  if (!stack_planes(info, image->height, planes[0].offset, planes[0].stride,
                    stacked, &end))
    return FALSE;
  for (size_t i = 1; i < image->nplanes; i++) {
    if (planes[i].buffer != planes[0].buffer ||
        planes[i].offset != stacked[i].offset ||
        planes[i].stride != stacked[i].stride)
      return FALSE;
  }
  uint64_t rows = stacked_half_rows(info, image->height) / 2;
  /* With padded rows the last stacked row can reach past the last plane's
   * samples (NV24: its chroma rows are two stacked rows): the buffer must
   * hold it. */
  uint64_t reach;
  if (!tb_mul_u64(rows - 1, planes[0].stride, &reach) ||
      !tb_add_u64(reach, planes[0].offset, &reach) ||
      !tb_add_u64(reach, (uint64_t)out->shape[1] * elem, &reach) ||
      reach > planes[0].buffer->size)
    return FALSE;
  out->shape[0] = (int64_t)rows;
  return TRUE;
}

/* The image tensor's layout: image.h's shape for the format when the planes
 * allow it, else plane 0 alone. */
static void image_layout(const TbFormatInfo *info, const TbImage *image,
                         size_t elem, TbLayout *out) {
  plane_layout(info, image, 0, elem, out);
  TbLayout whole = *out;
  if ((info->shape == TB_SHAPE_CHW && channel_layout(image, elem, &whole)) ||
      (info->shape == TB_SHAPE_ROWS && row_layout(info, image, elem, &whole)))
    *out = whole;
}

/* The image tensor of `image`, which it takes over. */
static tb_tensor *image_tensor(TbImage *image, tb_dtype dtype, GError **error) {
  g_autoptr(TbImage) owned = image;
  TbLayout layout;
  image_layout(format_info(image->format), image, tb_dtype_size(dtype),
               &layout);
  tb_tensor *tensor =
      tb_tensor_view(layout.buffer, layout.offset, dtype, layout.ndim,
                     layout.shape, layout.strides, error);
  if (tensor != NULL)
    tensor->image = g_steal_pointer(&owned);
  return tensor;
}

/* ---- argument checks ----------------------------------------------------- */

static const TbFormatInfo *check_format(tb_pixel_format format,
                                        GError **error) {
  const TbFormatInfo *info = format_info(format);
  if (info == NULL)
    g_set_error(error, TB_IMAGE_ERROR, TB_ERR_INVALID_ARGUMENT,
                "format is %d, not a tb_pixel_format", (int)format);
  return info;
}

static gboolean check_size(uint32_t width, uint32_t height, GError **error) {
  if (width == 0 || height == 0) {
    g_set_error(error, TB_IMAGE_ERROR, TB_ERR_SHAPE,
                "width is %u and height is %u; an image has at least one "
                "pixel",
                width, height);
    return FALSE;
  }
  return TRUE;
}

static gboolean check_dtype(const TbFormatInfo *info, tb_dtype dtype,
                            GError **error) {
  if (tb_dtype_size(dtype) == 0) {
    g_set_error(error, TB_IMAGE_ERROR, TB_ERR_DTYPE,
                "dtype is %d, not a tb_dtype", (int)dtype);
    return FALSE;
  }
  if (!(info->dtypes & BIT(dtype))) {
    g_autoptr(GString) allowed = g_string_new(NULL);
    for (unsigned d = TB_DTYPE_BOOL; d <= TB_DTYPE_F64; d++)
      if (info->dtypes & BIT(d))
        g_string_append_printf(allowed, "%s%s", allowed->len ? ", " : "",
                               tb_dtype_name((tb_dtype)d));
    g_set_error(error, TB_IMAGE_ERROR, TB_ERR_DTYPE,
                "dtype is %s; %s images take %s", tb_dtype_name(dtype),
                info->name, allowed->str);
    return FALSE;
  }
  return TRUE;
}

static gboolean check_nplanes(const TbFormatInfo *info, size_t nplanes,
                              GError **error) {
  if (nplanes != info->nplanes) {
    g_set_error(error, TB_IMAGE_ERROR, TB_ERR_INVALID_ARGUMENT,
                "nplanes is %zu; %s images have %u planes", nplanes, info->name,
                info->nplanes);
    return FALSE;
  }
  return TRUE;
}

static gboolean check_plane(const TbFormatInfo *info, size_t i, uint32_t width,
                            uint32_t height, size_t elem, uint64_t offset,
                            uint64_t stride, uint64_t *needed, GError **error);

/* ---- creation ------------------------------------------------------------ */

tb_tensor *tb_image_create(uint32_t width, uint32_t height,
                           tb_pixel_format format, tb_dtype dtype,
                           const tb_alloc_options *opts, GError **error) {
  const TbFormatInfo *info = check_format(format, error);
  TbAllocParams params;
  if (info == NULL || !check_size(width, height, error) ||
      !check_dtype(info, dtype, error) ||
      !tb_buffer_params(&params, opts, error))
    return NULL;
  /* Rows align to what was asked, not to the huge-page alignment that
   * params.alignment may have become. */
  uint64_t alignment = opts != NULL && opts->alignment != 0
                           ? opts->alignment
                           : TB_DEFAULT_ALIGNMENT;
  size_t elem = tb_dtype_size(dtype);
  /* The smallest aligned luma pitch whose derived pitches hold every
   * plane's rows; I420's half-pitch chroma needs it aligned twice over. */
  uint64_t luma_pitch = 0, unit = alignment;
  for (size_t i = 0; i < info->nplanes; i++) {
    const TbPlaneInfo *p = &info->planes[i];
    uint64_t row = plane_row_bytes(p, width, elem);
    if (p->pitch_shift > 0)
      row = (row + 1) / 2;
    if (p->pitch_shift < 0) {
      row *= 2;
      unit = alignment * 2;
    }
    luma_pitch = MAX(luma_pitch, row);
  }
  luma_pitch = (luma_pitch + unit - 1) / unit * unit;
  TbImagePlane planes[TB_IMAGE_MAX_PLANES];
  uint64_t end;
  if (!stack_planes(info, height, 0, luma_pitch, planes, &end) ||
      end > INT64_MAX) {
    g_set_error(error, TB_IMAGE_ERROR, TB_ERR_SHAPE,
                "this %ux%u %s image of %s has more than 2^63 bytes", width,
                height, info->name, tb_dtype_name(dtype));
    return NULL;
  }
  uint64_t offsets[TB_IMAGE_MAX_PLANES], strides[TB_IMAGE_MAX_PLANES];
  for (size_t i = 0; i < info->nplanes; i++) {
    offsets[i] = planes[i].offset;
    strides[i] = planes[i].stride;
  }
  return tb_image_create_with_layout(width, height, format, info->nplanes,
                                     offsets, strides, dtype, opts, error);
}

tb_tensor *tb_image_create_with_layout(uint32_t width, uint32_t height,
                                       tb_pixel_format format, size_t nplanes,
                                       const uint64_t *offsets,
                                       const uint64_t *strides, tb_dtype dtype,
                                       const tb_alloc_options *opts,
                                       GError **error) {
  const TbFormatInfo *info = check_format(format, error);
  TbAllocParams params;
  if (info == NULL || !check_size(width, height, error) ||
      !check_dtype(info, dtype, error) ||
      !check_nplanes(info, nplanes, error) ||
      !tb_buffer_params(&params, opts, error))
    return NULL;
  size_t elem = tb_dtype_size(dtype);
  /* reach[i]: the end of plane i's last row of samples, what another plane
   * must not cross; the buffer also holds each plane's last row padding. */
  uint64_t reach[TB_IMAGE_MAX_PLANES], size = 0;
  for (size_t i = 0; i < nplanes; i++) {
    uint64_t end;
    if (!check_plane(info, i, width, height, elem, offsets[i], strides[i],
                     &reach[i], error))
      return NULL;
    if (!tb_mul_u64(strides[i], plane_rows(&info->planes[i], height), &end) ||
        !tb_add_u64(end, offsets[i], &end) || end > INT64_MAX) {
      g_set_error(error, TB_IMAGE_ERROR, TB_ERR_OUT_OF_RANGE,
                  "plane %zu at offsets[%zu] %" G_GUINT64_FORMAT
                  " with strides[%zu] %" G_GUINT64_FORMAT
                  " and its last row's padding reaches beyond 2^63 bytes",
                  i, i, offsets[i], i, strides[i]);
      return NULL;
    }
    size = MAX(size, end);
    for (size_t j = 0; j < i; j++) {
      if (offsets[i] < reach[j] && offsets[j] < reach[i]) {
        g_set_error(error, TB_IMAGE_ERROR, TB_ERR_LAYOUT,
                    "offsets[%zu] is %" G_GUINT64_FORMAT
                    ": plane %zu (bytes %" G_GUINT64_FORMAT
                    " to %" G_GUINT64_FORMAT ") overlaps plane %zu (bytes "
                    "%" G_GUINT64_FORMAT " to %" G_GUINT64_FORMAT ")",
                    i, offsets[i], i, offsets[i], reach[i], j, offsets[j],
                    reach[j]);
        return NULL;
      }
    }
  }
  g_autoptr(tb_buffer) buffer = tb_buffer_alloc(size, &params, error);
  if (buffer == NULL)
    return NULL;
  TbImage *image = image_new(format, width, height);
  for (size_t i = 0; i < nplanes; i++)
    image_set_plane(image, i, buffer, offsets[i], strides[i]);
  tb_tensor *tensor = image_tensor(image, dtype, error);
  if (tensor != NULL)
    tb_tensor_rename(tensor, params.name);
  return tensor;
}

/* Checks plane `i`'s stride and offset; `*needed` is the end of its last
 * row's samples in its fd. */
static gboolean check_plane(const TbFormatInfo *info, size_t i, uint32_t width,
                            uint32_t height, size_t elem, uint64_t offset,
                            uint64_t stride, uint64_t *needed, GError **error) {
  const TbPlaneInfo *p = &info->planes[i];
  uint64_t row = plane_row_bytes(p, width, elem);
  if (stride < row) {
    g_set_error(error, TB_IMAGE_ERROR, TB_ERR_LAYOUT,
                "strides[%zu] is %" G_GUINT64_FORMAT
                "; a row of plane %zu of this %ux%u %s image holds "
                "%" G_GUINT64_FORMAT " bytes",
                i, stride, i, width, height, info->name, row);
    return FALSE;
  }
  if (stride % elem != 0 || offset % elem != 0) {
    g_set_error(error, TB_IMAGE_ERROR, TB_ERR_LAYOUT,
                "strides[%zu] is %" G_GUINT64_FORMAT
                " and offsets[%zu] is %" G_GUINT64_FORMAT
                "; both must be multiples of the %zu-byte %s samples",
                i, stride, i, offset, elem, info->name);
    return FALSE;
  }
  uint64_t reach;
  if (stride > INT64_MAX ||
      !tb_mul_u64(stride, plane_rows(p, height) - 1, &reach) ||
      !tb_add_u64(reach, row, &reach) || !tb_add_u64(reach, offset, needed) ||
      *needed > INT64_MAX) {
    g_set_error(error, TB_IMAGE_ERROR, TB_ERR_OUT_OF_RANGE,
                "plane %zu at offsets[%zu] %" G_GUINT64_FORMAT
                " with strides[%zu] %" G_GUINT64_FORMAT
                " reaches beyond 2^63 bytes",
                i, i, offset, i, stride);
    return FALSE;
  }
  return TRUE;
}

tb_tensor *tb_image_import_planes(uint32_t width, uint32_t height,
                                  tb_pixel_format format, size_t nplanes,
                                  const int *fds, const uint64_t *offsets,
                                  const uint64_t *strides, GError **error) {
  const TbFormatInfo *info = check_format(format, error);
  if (info == NULL || !check_size(width, height, error) ||
      !check_nplanes(info, nplanes, error))
    return NULL;
  size_t elem = tb_dtype_size(info->native);
  uint64_t needed[TB_IMAGE_MAX_PLANES];
  for (size_t i = 0; i < nplanes; i++)
    if (!check_plane(info, i, width, height, elem, offsets[i], strides[i],
                     &needed[i], error))
      return NULL;

  /* Every fd is identified and every plane checked against its file before
   * anything is mapped. Planes in one file (the same fd, or dups of it)
   * share one buffer. */
  TbFdInfo files[TB_IMAGE_MAX_PLANES];
  int file_fd[TB_IMAGE_MAX_PLANES];
  size_t file_of[TB_IMAGE_MAX_PLANES], nfiles = 0;
  for (size_t i = 0; i < nplanes; i++) {
    size_t f = 0;
    while (f < nfiles && file_fd[f] != fds[i])
      f++;
    if (f == nfiles) { /* a new fd number: perhaps a dup of a known file */
      TbFdInfo file;
      if (!tb_fd_inspect(fds[i], &file, error)) {
        g_prefix_error(error, "fds[%zu]: ", i);
        return NULL;
      }
      f = 0;
      while (f < nfiles &&
             (files[f].device != file.device || files[f].inode != file.inode))
        f++;
      if (f == nfiles) {
        files[nfiles] = file;
        file_fd[nfiles++] = fds[i];
      }
    }
    file_of[i] = f;
    if (needed[i] > files[f].size) {
      g_set_error(error, TB_IMAGE_ERROR, TB_ERR_OUT_OF_RANGE,
                  "plane %zu needs bytes up to %" G_GUINT64_FORMAT
                  " of fds[%zu] (fd %d), which holds %" G_GUINT64_FORMAT,
                  i, needed[i], i, fds[i], files[f].size);
      return NULL;
    }
  }

  g_autoptr(TbImage) image = image_new(format, width, height);
  for (size_t f = 0; f < nfiles; f++) {
    g_autoptr(tb_buffer) buffer =
        tb_buffer_adopt_fd(file_fd[f], &files[f], error);
    if (buffer == NULL)
      return NULL;
    for (size_t i = 0; i < nplanes; i++)
      if (file_of[i] == f)
        image_set_plane(image, i, buffer, offsets[i], strides[i]);
  }
  return image_tensor(g_steal_pointer(&image), info->native, error);
}

/* ---- a format on an existing tensor -------------------------------------- */

static gboolean check_ndim(const tb_tensor *tensor, const TbFormatInfo *info,
                           size_t ndim, const char *shape, GError **error) {
  if (tensor->ndim != ndim) {
    g_set_error(error, TB_IMAGE_ERROR, TB_ERR_SHAPE,
                "the tensor has %zu dims; %s images are %s", tensor->ndim,
                info->name, shape);
    return FALSE;
  }
  return TRUE;
}

static gboolean size_from_dims(int64_t width, int64_t height, TbImage *image,
                               GError **error) {
  if (width < 1 || height < 1 || width > UINT32_MAX || height > UINT32_MAX) {
    g_set_error(error, TB_IMAGE_ERROR, TB_ERR_SHAPE,
                "the tensor's shape gives a %" G_GINT64_FORMAT
                "x%" G_GINT64_FORMAT
                " image; width and height must be 1 to 4294967295",
                width, height);
    return FALSE;
  }
  image->width = (uint32_t)width;
  image->height = (uint32_t)height;
  return TRUE;
}

/* `elements` (a tensor stride, positive) in bytes of `elem`-byte elements.
 * A one-row image's row stride is constrained by nothing else (the tensor
 * never steps over it), so it can be any int64: the product is checked. */
static gboolean pitch_in_bytes(int64_t elements, size_t elem, uint64_t *bytes,
                               GError **error) {
  if (!tb_mul_u64((uint64_t)elements, elem, bytes) || *bytes > INT64_MAX) {
    g_set_error(error, TB_IMAGE_ERROR, TB_ERR_LAYOUT,
                "the tensor's row stride %" G_GINT64_FORMAT
                " of %zu-byte elements is not a pitch in int64 bytes",
                elements, elem);
    return FALSE;
  }
  return TRUE;
}

/* [H, W, C]: rows of whole pixels at a pitch of strides[0]. */
static gboolean format_packed(const tb_tensor *t, const TbFormatInfo *info,
                              TbImage *image, GError **error) {
  const TbPlaneInfo *p = &info->planes[0];
  if (!check_ndim(t, info, 3, "[H, W, C]", error))
    return FALSE;
  if (t->shape[2] != p->comps || t->shape[1] % p->width_align != 0) {
    g_set_error(error, TB_IMAGE_ERROR, TB_ERR_SHAPE,
                "the tensor's shape is [%" G_GINT64_FORMAT ", %" G_GINT64_FORMAT
                ", %" G_GINT64_FORMAT "]; %s images have %u elements a pixel%s",
                t->shape[0], t->shape[1], t->shape[2], info->name, p->comps,
                p->width_align > 1 ? " and an even width dim" : "");
    return FALSE;
  }
  if (!size_from_dims(t->shape[1], t->shape[0], image, error))
    return FALSE;
  /* Rows of whole pixels, each row after the previous one's samples. */
  if (t->strides[2] != 1 || t->strides[1] != p->comps ||
      t->strides[0] < t->shape[1] * p->comps) {
    g_set_error(error, TB_IMAGE_ERROR, TB_ERR_LAYOUT,
                "the tensor's strides are [%" G_GINT64_FORMAT
                ", %" G_GINT64_FORMAT ", %" G_GINT64_FORMAT
                "]; %s images need [pitch >= %" G_GINT64_FORMAT ", %u, 1]",
                t->strides[0], t->strides[1], t->strides[2], info->name,
                t->shape[1] * p->comps, p->comps);
    return FALSE;
  }
  uint64_t pitch;
  if (!pitch_in_bytes(t->strides[0], tb_dtype_size(t->dtype), &pitch, error))
    return FALSE;
  image_set_plane(image, 0, t->buffer, t->offset, pitch);
  return TRUE;
}

/* [C, H, W]: planes strides[0] apart, rows strides[1] apart. */
static gboolean format_planar(const tb_tensor *t, const TbFormatInfo *info,
                              TbImage *image, GError **error) {
  if (!check_ndim(t, info, 3, "[C, H, W]", error))
    return FALSE;
  if (t->shape[0] != info->nplanes) {
    g_set_error(error, TB_IMAGE_ERROR, TB_ERR_SHAPE,
                "the tensor's dim 0 is %" G_GINT64_FORMAT
                "; %s images have %u planes",
                t->shape[0], info->name, info->nplanes);
    return FALSE;
  }
  if (!size_from_dims(t->shape[2], t->shape[1], image, error))
    return FALSE;
  int64_t step = t->strides[0], pitch = t->strides[1];
  /* Rows of W samples; planes of H rows that do not overlap. The tensor's
   * layout fits in int64 bytes, so these products cannot overflow. */
  if (t->strides[2] != 1 || pitch < t->shape[2] ||
      step < (t->shape[1] - 1) * pitch + t->shape[2]) {
    g_set_error(error, TB_IMAGE_ERROR, TB_ERR_LAYOUT,
                "the tensor's strides are [%" G_GINT64_FORMAT
                ", %" G_GINT64_FORMAT ", %" G_GINT64_FORMAT
                "]; %s images need [plane step, pitch >= W, 1] with "
                "planes that do not overlap",
                t->strides[0], t->strides[1], t->strides[2], info->name);
    return FALSE;
  }
  size_t elem = tb_dtype_size(t->dtype);
  uint64_t step_bytes, pitch_bytes;
  if (!pitch_in_bytes(pitch, elem, &pitch_bytes, error) ||
      !pitch_in_bytes(step, elem, &step_bytes, error))
    return FALSE;
  /* The tensor reaches its last plane, so these offsets fit. */
  for (size_t i = 0; i < info->nplanes; i++)
    image_set_plane(image, i, t->buffer, t->offset + step_bytes * i,
                    pitch_bytes);
  return TRUE;
}

/* [R, W]: the planes stacked at the pitch of strides[0]. */
static gboolean format_rows(const tb_tensor *t, const TbFormatInfo *info,
                            TbImage *image, GError **error) {
  if (!check_ndim(t, info, 2, "[R, W], its planes' rows stacked", error))
    return FALSE;
  /* The height whose stacked rows number shape[0] (they grow with it). */
  uint64_t want = (uint64_t)t->shape[0] * 2, low = 1, high = UINT32_MAX;
  while (low < high) {
    uint64_t mid = low + (high - low) / 2;
    if (stacked_half_rows(info, (uint32_t)mid) < want)
      low = mid + 1;
    else
      high = mid;
  }
  if (stacked_half_rows(info, (uint32_t)low) != want) {
    g_set_error(error, TB_IMAGE_ERROR, TB_ERR_SHAPE,
                "the tensor's dim 0 is %" G_GINT64_FORMAT
                "; no %s image has that many stacked rows",
                t->shape[0], info->name);
    return FALSE;
  }
  if (!size_from_dims(t->shape[1], (int64_t)low, image, error))
    return FALSE;
  size_t elem = tb_dtype_size(t->dtype);
  if (t->strides[1] != 1 || t->strides[0] < 1) {
    g_set_error(error, TB_IMAGE_ERROR, TB_ERR_LAYOUT,
                "the tensor's strides are [%" G_GINT64_FORMAT
                ", %" G_GINT64_FORMAT "]; %s images need [pitch, 1]",
                t->strides[0], t->strides[1], info->name);
    return FALSE;
  }
  TbImagePlane planes[TB_IMAGE_MAX_PLANES];
  uint64_t end;
  uint64_t luma_pitch;
  if (!pitch_in_bytes(t->strides[0], elem, &luma_pitch, error))
    return FALSE;
  if (!stack_planes(info, image->height, t->offset, luma_pitch, planes, &end)) {
    g_set_error(error, TB_IMAGE_ERROR, TB_ERR_LAYOUT,
                "the tensor's pitch is %" G_GUINT64_FORMAT
                " bytes; %s's half-pitch chroma rows need an even one",
                luma_pitch, info->name);
    return FALSE;
  }
  for (size_t i = 0; i < info->nplanes; i++) {
    const TbPlaneInfo *p = &info->planes[i];
    uint64_t row = plane_row_bytes(p, image->width, elem);
    if (row > planes[i].stride) {
      g_set_error(error, TB_IMAGE_ERROR, TB_ERR_LAYOUT,
                  "the tensor's pitch of %" G_GUINT64_FORMAT
                  " bytes gives plane %zu rows of %" G_GUINT64_FORMAT
                  " bytes; its rows hold %" G_GUINT64_FORMAT,
                  luma_pitch, i, planes[i].stride, row);
      return FALSE;
    }
    /* Below the planes' checked end, as row <= stride. */
    uint64_t reach = planes[i].offset +
                     planes[i].stride * (plane_rows(p, image->height) - 1) +
                     row;
    if (reach > t->buffer->size) {
      g_set_error(error, TB_IMAGE_ERROR, TB_ERR_OUT_OF_RANGE,
                  "plane %zu of the image reaches byte %" G_GUINT64_FORMAT
                  " of a buffer of %" G_GUINT64_FORMAT,
                  i, reach, t->buffer->size);
      return FALSE;
    }
    image_set_plane(image, i, t->buffer, planes[i].offset, planes[i].stride);
  }
  return TRUE;
}

gboolean tb_image_apply_format(tb_tensor *tensor, tb_pixel_format format,
                               GError **error) {
  if (format == TB_PIXEL_FORMAT_INVALID) {
    tb_image_free(g_steal_pointer(&tensor->image));
    return TRUE;
  }
  const TbFormatInfo *info = check_format(format, error);
  if (info == NULL || !check_dtype(info, tensor->dtype, error))
    return FALSE;
  g_autoptr(TbImage) image = image_new(format, 0, 0);
  gboolean ok = FALSE;
  switch (info->shape) {
  case TB_SHAPE_HWC:
    ok = format_packed(tensor, info, image, error);
    break;
  case TB_SHAPE_CHW:
    ok = format_planar(tensor, info, image, error);
    break;
  case TB_SHAPE_ROWS:
    ok = format_rows(tensor, info, image, error);
    break;
  }
  if (!ok)
    return FALSE;
  tb_image_free(tensor->image);
  tensor->image = g_steal_pointer(&image);
  return TRUE;
}

/* ---- planes -------------------------------------------------------------- */

/* The image metadata of `tensor` if it has plane `plane`. */
static const TbImage *image_with_plane(const tb_tensor *tensor, size_t plane,
                                       GError **error) {
  const TbImage *image = tensor->image;
  if (image == NULL) {
    g_set_error(error, TB_IMAGE_ERROR, TB_ERR_INVALID_ARGUMENT,
                "image is not an image: the tensor has no pixel format");
    return NULL;
  }
  if (plane >= image->nplanes) {
    g_set_error(error, TB_IMAGE_ERROR, TB_ERR_OUT_OF_RANGE,
                "plane is %zu; %s images have %zu planes", plane,
                format_info(image->format)->name, image->nplanes);
    return NULL;
  }
  return image;
}

tb_tensor *tb_image_plane_view(const tb_tensor *tensor, size_t plane,
                               GError **error) {
  const TbImage *image = image_with_plane(tensor, plane, error);
  if (image == NULL)
    return NULL;
  TbLayout layout;
  plane_layout(format_info(image->format), image, plane,
               tb_dtype_size(tensor->dtype), &layout);
  tb_tensor *view =
      tb_tensor_view(layout.buffer, layout.offset, tensor->dtype, layout.ndim,
                     layout.shape, layout.strides, error);
  if (view != NULL) {
    tb_tensor_rename(view, tensor->name);
    view->lease = tb_lease_hold(tensor->lease); /* as every view does */
  }
  return view;
}

int tb_image_dup_plane_fd(const tb_tensor *tensor, size_t plane,
                          GError **error) {
  const TbImage *image = image_with_plane(tensor, plane, error);
  return image != NULL ? tb_buffer_dup_fd(image->planes[plane].buffer, error)
                       : -1;
}

/* ---- getters ------------------------------------------------------------- */

static const TbImagePlane *plane_of(const tb_tensor *t, size_t plane) {
  return t != NULL && t->image != NULL && plane < t->image->nplanes
             ? &t->image->planes[plane]
             : NULL;
}

tb_pixel_format tb_image_format(const tb_tensor *t) {
  return t != NULL && t->image != NULL ? t->image->format
                                       : TB_PIXEL_FORMAT_INVALID;
}
uint32_t tb_image_width(const tb_tensor *t) {
  return t != NULL && t->image != NULL ? t->image->width : 0;
}
uint32_t tb_image_height(const tb_tensor *t) {
  return t != NULL && t->image != NULL ? t->image->height : 0;
}
size_t tb_image_plane_count(const tb_tensor *t) {
  return t != NULL && t->image != NULL ? t->image->nplanes : 0;
}
uint64_t tb_image_plane_offset(const tb_tensor *t, size_t plane) {
  const TbImagePlane *p = plane_of(t, plane);
  return p != NULL ? p->offset : 0;
}
uint64_t tb_image_plane_stride(const tb_tensor *t, size_t plane) {
  const TbImagePlane *p = plane_of(t, plane);
  return p != NULL ? p->stride : 0;
}
uint64_t tb_image_plane_buffer_id(const tb_tensor *t, size_t plane) {
  const TbImagePlane *p = plane_of(t, plane);
  return p != NULL ? p->buffer->id : 0;
}

/* ---- an image over buffers already at hand (a channel's receiver) -------- */

gboolean tb_image_plane_end(tb_pixel_format format, tb_dtype dtype,
                            uint32_t width, uint32_t height, size_t index,
                            uint64_t offset, uint64_t stride, uint64_t *end,
                            GError **error) {
  const TbFormatInfo *info = check_format(format, error);
  if (info != NULL && index >= info->nplanes) {
    g_set_error(error, TB_IMAGE_ERROR, TB_ERR_INVALID_ARGUMENT,
                "plane %zu of a %s image, which has %u planes", index,
                info->name, info->nplanes);
    return FALSE;
  }
  return info != NULL && check_size(width, height, error) &&
         check_dtype(info, dtype, error) &&
         check_plane(info, index, width, height, tb_dtype_size(dtype), offset,
                     stride, end, error);
}

tb_tensor *tb_image_from_buffers(uint32_t width, uint32_t height,
                                 tb_pixel_format format, tb_dtype dtype,
                                 size_t nplanes, tb_buffer *const *buffers,
                                 const uint64_t *offsets,
                                 const uint64_t *strides, GError **error) {
  const TbFormatInfo *info = check_format(format, error);
  if (info == NULL || !check_size(width, height, error) ||
      !check_dtype(info, dtype, error) || !check_nplanes(info, nplanes, error))
    return NULL;
  size_t elem = tb_dtype_size(dtype);
  g_autoptr(TbImage) image = image_new(format, width, height);
  for (size_t i = 0; i < nplanes; i++) {
    uint64_t needed;
    if (!check_plane(info, i, width, height, elem, offsets[i], strides[i],
                     &needed, error))
      return NULL;
    if (needed > buffers[i]->size) {
      g_set_error(error, TB_IMAGE_ERROR, TB_ERR_OUT_OF_RANGE,
                  "plane %zu needs bytes up to %" G_GUINT64_FORMAT
                  " of a buffer of %" G_GUINT64_FORMAT,
                  i, needed, buffers[i]->size);
      return NULL;
    }
    image_set_plane(image, i, buffers[i], offsets[i], strides[i]);
  }
  return image_tensor(g_steal_pointer(&image), dtype, error);
}
