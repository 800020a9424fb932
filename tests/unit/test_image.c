/* Images: pixel-format facts, image layouts for every format (odd sizes
 * included), plane views, formats set on existing tensors, and import of
 * planes from one or several fds with their round trip through export. */
#include "tb_test.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define NFORMATS 17

#define FOURCC(a, b, c, d)                                                     \
  ((uint32_t)(a) | (uint32_t)(b) << 8 | (uint32_t)(c) << 16 |                  \
   (uint32_t)(d) << 24)

/* ---- format facts -------------------------------------------------------- */

typedef struct format_facts {
  tb_pixel_format format;
  const char *name;
  uint32_t fourcc;
  tb_pixel_layout layout;
  uint32_t channels, planes, bits;
  uint32_t hsub[3], vsub[3];
} format_facts;

// clang-format off
static const format_facts facts[NFORMATS] = {
    {TB_PIXEL_FORMAT_RGB,         "rgb",         FOURCC('B', 'G', '2', '4'), TB_PIXEL_LAYOUT_PACKED,      3, 1, 8,  {1},       {1}},
    {TB_PIXEL_FORMAT_RGBA,        "rgba",        FOURCC('A', 'B', '2', '4'), TB_PIXEL_LAYOUT_PACKED,      4, 1, 8,  {1},       {1}},
    {TB_PIXEL_FORMAT_BGRA,        "bgra",        FOURCC('A', 'R', '2', '4'), TB_PIXEL_LAYOUT_PACKED,      4, 1, 8,  {1},       {1}},
    {TB_PIXEL_FORMAT_RGBX,        "rgbx",        FOURCC('X', 'B', '2', '4'), TB_PIXEL_LAYOUT_PACKED,      4, 1, 8,  {1},       {1}},
    {TB_PIXEL_FORMAT_BGRX,        "bgrx",        FOURCC('X', 'R', '2', '4'), TB_PIXEL_LAYOUT_PACKED,      4, 1, 8,  {1},       {1}},
    {TB_PIXEL_FORMAT_GREY,        "grey",        FOURCC('R', '8', ' ', ' '), TB_PIXEL_LAYOUT_PACKED,      1, 1, 8,  {1},       {1}},
    {TB_PIXEL_FORMAT_YUYV,        "yuyv",        FOURCC('Y', 'U', 'Y', 'V'), TB_PIXEL_LAYOUT_PACKED,      3, 1, 8,  {2},       {1}},
    {TB_PIXEL_FORMAT_VYUY,        "vyuy",        FOURCC('V', 'Y', 'U', 'Y'), TB_PIXEL_LAYOUT_PACKED,      3, 1, 8,  {2},       {1}},
    {TB_PIXEL_FORMAT_UYVY,        "uyvy",        FOURCC('U', 'Y', 'V', 'Y'), TB_PIXEL_LAYOUT_PACKED,      3, 1, 8,  {2},       {1}},
    {TB_PIXEL_FORMAT_NV12,        "nv12",        FOURCC('N', 'V', '1', '2'), TB_PIXEL_LAYOUT_SEMI_PLANAR, 3, 2, 8,  {1, 2},    {1, 2}},
    {TB_PIXEL_FORMAT_NV21,        "nv21",        FOURCC('N', 'V', '2', '1'), TB_PIXEL_LAYOUT_SEMI_PLANAR, 3, 2, 8,  {1, 2},    {1, 2}},
    {TB_PIXEL_FORMAT_NV16,        "nv16",        FOURCC('N', 'V', '1', '6'), TB_PIXEL_LAYOUT_SEMI_PLANAR, 3, 2, 8,  {1, 2},    {1, 1}},
    {TB_PIXEL_FORMAT_NV24,        "nv24",        FOURCC('N', 'V', '2', '4'), TB_PIXEL_LAYOUT_SEMI_PLANAR, 3, 2, 8,  {1, 1},    {1, 1}},
    {TB_PIXEL_FORMAT_I420,        "i420",        FOURCC('Y', 'U', '1', '2'), TB_PIXEL_LAYOUT_PLANAR,      3, 3, 8,  {1, 2, 2}, {1, 2, 2}},
    {TB_PIXEL_FORMAT_P010,        "p010",        FOURCC('P', '0', '1', '0'), TB_PIXEL_LAYOUT_SEMI_PLANAR, 3, 2, 10, {1, 2},    {1, 2}},
    {TB_PIXEL_FORMAT_PLANAR_RGB,  "planar_rgb",  0,                          TB_PIXEL_LAYOUT_PLANAR,      3, 3, 8,  {1, 1, 1}, {1, 1, 1}},
    {TB_PIXEL_FORMAT_PLANAR_RGBA, "planar_rgba", 0,                          TB_PIXEL_LAYOUT_PLANAR,      4, 4, 8,  {1, 1, 1}, {1, 1, 1}},
};
// clang-format on

static void every_format_states_its_facts(void **state) {
  (void)state;
  for (size_t i = 0; i < NFORMATS; i++) {
    const format_facts *f = &facts[i];
    assert_int_equal(f->format, (tb_pixel_format)(i + 1)); /* explicit values */
    assert_string_equal(tb_pixel_format_name(f->format), f->name);
    tb_pixel_format parsed = TB_PIXEL_FORMAT_INVALID;
    TB_ASSERT_OK(tb_pixel_format_from_name(&parsed, f->name));
    assert_int_equal(parsed, f->format);
    assert_int_equal(tb_pixel_format_to_fourcc(f->format), f->fourcc);
    if (f->fourcc != 0) {
      parsed = TB_PIXEL_FORMAT_INVALID;
      TB_ASSERT_OK(tb_pixel_format_from_fourcc(&parsed, f->fourcc));
      assert_int_equal(parsed, f->format);
    }
    assert_int_equal(tb_pixel_format_layout(f->format), f->layout);
    assert_int_equal(tb_pixel_format_channels(f->format), f->channels);
    assert_int_equal(tb_pixel_format_plane_count(f->format), f->planes);
    assert_int_equal(tb_pixel_format_bits(f->format), f->bits);
    for (size_t p = 0; p < TB_IMAGE_MAX_PLANES; p++) {
      uint32_t hsub = p < f->planes ? (p < 3 ? f->hsub[p] : 1) : 0;
      uint32_t vsub = p < f->planes ? (p < 3 ? f->vsub[p] : 1) : 0;
      assert_int_equal(tb_pixel_format_plane_hsub(f->format, p), hsub);
      assert_int_equal(tb_pixel_format_plane_vsub(f->format, p), vsub);
    }
  }
}

static void invalid_formats_have_no_facts(void **state) {
  (void)state;
  const tb_pixel_format invalid[] = {TB_PIXEL_FORMAT_INVALID,
                                     (tb_pixel_format)18, (tb_pixel_format)-1};
  for (size_t i = 0; i < sizeof invalid / sizeof *invalid; i++) {
    assert_null(tb_pixel_format_name(invalid[i]));
    assert_int_equal(tb_pixel_format_to_fourcc(invalid[i]), 0);
    assert_int_equal(tb_pixel_format_layout(invalid[i]),
                     TB_PIXEL_LAYOUT_INVALID);
    assert_int_equal(tb_pixel_format_channels(invalid[i]), 0);
    assert_int_equal(tb_pixel_format_plane_count(invalid[i]), 0);
    assert_int_equal(tb_pixel_format_bits(invalid[i]), 0);
    assert_int_equal(tb_pixel_format_plane_hsub(invalid[i], 0), 0);
    assert_false(tb_pixel_format_supports_dtype(invalid[i], TB_DTYPE_U8));
  }
}

static void format_lookups_refuse_bad_input(void **state) {
  (void)state;
  tb_pixel_format out = (tb_pixel_format)77;
  TB_ASSERT_STATUS(tb_pixel_format_from_name(&out, "NV12"),
                   TB_ERR_INVALID_ARGUMENT); /* names are lower-case */
  TB_ASSERT_STATUS(tb_pixel_format_from_name(&out, ""),
                   TB_ERR_INVALID_ARGUMENT);
  TB_ASSERT_STATUS(tb_pixel_format_from_name(&out, NULL),
                   TB_ERR_INVALID_ARGUMENT);
  TB_ASSERT_STATUS(tb_pixel_format_from_name(NULL, "nv12"),
                   TB_ERR_INVALID_ARGUMENT);
  /* DRM has no planar RGB: 0 is no format's fourcc. */
  TB_ASSERT_STATUS(tb_pixel_format_from_fourcc(&out, 0), TB_ERR_UNSUPPORTED);
  TB_ASSERT_STATUS(
      tb_pixel_format_from_fourcc(&out, FOURCC('G', 'R', 'E', 'Y')),
      TB_ERR_UNSUPPORTED); /* V4L2's code, not DRM's */
  TB_ASSERT_STATUS(
      tb_pixel_format_from_fourcc(NULL, FOURCC('N', 'V', '1', '2')),
      TB_ERR_INVALID_ARGUMENT);
  assert_int_equal(out, 77);
}

static void dtypes_per_format(void **state) {
  (void)state;
  for (size_t i = 0; i < NFORMATS; i++) {
    tb_pixel_format f = facts[i].format;
    bool wide = f == TB_PIXEL_FORMAT_GREY || f == TB_PIXEL_FORMAT_RGBA ||
                f == TB_PIXEL_FORMAT_PLANAR_RGB ||
                f == TB_PIXEL_FORMAT_PLANAR_RGBA;
    for (int d = 0; d <= 14; d++) {
      bool expected = false;
      if (f == TB_PIXEL_FORMAT_P010)
        expected = d == TB_DTYPE_U16;
      else if (d == TB_DTYPE_U8)
        expected = true;
      else if (d == TB_DTYPE_F16 || d == TB_DTYPE_F32)
        expected = wide;
      else if (d == TB_DTYPE_U16)
        expected = f == TB_PIXEL_FORMAT_GREY;
      assert_int_equal(tb_pixel_format_supports_dtype(f, (tb_dtype)d),
                       expected);
    }
  }
}

/* ---- layouts of new images ----------------------------------------------- */

typedef struct plane_layout {
  uint64_t offset, stride;
  size_t ndim;
  int64_t shape[3];
} plane_layout;

typedef struct image_layout {
  tb_pixel_format format;
  tb_dtype dtype;
  size_t ndim;
  int64_t shape[3], strides[3];
  plane_layout planes[4];
} image_layout;

/* A 5x3 image at the default 64-byte alignment: every subsampled dimension
 * is odd, so chroma rounds up (3 columns, 2 rows for 4:2:0). YUYV's 3
 * macropixels make 6 columns of 2 bytes. NV24's chroma rows (5 UV pairs) sit
 * at twice the luma pitch; I420's luma pitch is aligned to 128 so that its
 * half-pitch chroma stays aligned to 64. Planes: offset, pitch, view shape. */
// clang-format off
static const image_layout odd_layouts[NFORMATS] = {
    {TB_PIXEL_FORMAT_RGB,  TB_DTYPE_U8, 3, {3, 5, 3}, {64, 3, 1}, {{0, 64, 3, {3, 5, 3}}}},
    {TB_PIXEL_FORMAT_RGBA, TB_DTYPE_U8, 3, {3, 5, 4}, {64, 4, 1}, {{0, 64, 3, {3, 5, 4}}}},
    {TB_PIXEL_FORMAT_BGRA, TB_DTYPE_U8, 3, {3, 5, 4}, {64, 4, 1}, {{0, 64, 3, {3, 5, 4}}}},
    {TB_PIXEL_FORMAT_RGBX, TB_DTYPE_U8, 3, {3, 5, 4}, {64, 4, 1}, {{0, 64, 3, {3, 5, 4}}}},
    {TB_PIXEL_FORMAT_BGRX, TB_DTYPE_U8, 3, {3, 5, 4}, {64, 4, 1}, {{0, 64, 3, {3, 5, 4}}}},
    {TB_PIXEL_FORMAT_GREY, TB_DTYPE_U8, 3, {3, 5, 1}, {64, 1, 1}, {{0, 64, 3, {3, 5, 1}}}},
    {TB_PIXEL_FORMAT_YUYV, TB_DTYPE_U8, 3, {3, 6, 2}, {64, 2, 1}, {{0, 64, 3, {3, 6, 2}}}},
    {TB_PIXEL_FORMAT_VYUY, TB_DTYPE_U8, 3, {3, 6, 2}, {64, 2, 1}, {{0, 64, 3, {3, 6, 2}}}},
    {TB_PIXEL_FORMAT_UYVY, TB_DTYPE_U8, 3, {3, 6, 2}, {64, 2, 1}, {{0, 64, 3, {3, 6, 2}}}},
    {TB_PIXEL_FORMAT_NV12, TB_DTYPE_U8, 2, {5, 5}, {64, 1},
     {{0, 64, 2, {3, 5}}, {192, 64, 3, {2, 3, 2}}}},
    {TB_PIXEL_FORMAT_NV21, TB_DTYPE_U8, 2, {5, 5}, {64, 1},
     {{0, 64, 2, {3, 5}}, {192, 64, 3, {2, 3, 2}}}},
    {TB_PIXEL_FORMAT_NV16, TB_DTYPE_U8, 2, {6, 5}, {64, 1},
     {{0, 64, 2, {3, 5}}, {192, 64, 3, {3, 3, 2}}}},
    {TB_PIXEL_FORMAT_NV24, TB_DTYPE_U8, 2, {9, 5}, {64, 1},
     {{0, 64, 2, {3, 5}}, {192, 128, 3, {3, 5, 2}}}},
    {TB_PIXEL_FORMAT_I420, TB_DTYPE_U8, 2, {5, 5}, {128, 1},
     {{0, 128, 2, {3, 5}}, {384, 64, 2, {2, 3}}, {512, 64, 2, {2, 3}}}},
    {TB_PIXEL_FORMAT_P010, TB_DTYPE_U16, 2, {5, 5}, {32, 1},
     {{0, 64, 2, {3, 5}}, {192, 64, 3, {2, 3, 2}}}},
    {TB_PIXEL_FORMAT_PLANAR_RGB, TB_DTYPE_U8, 3, {3, 3, 5}, {192, 64, 1},
     {{0, 64, 2, {3, 5}}, {192, 64, 2, {3, 5}}, {384, 64, 2, {3, 5}}}},
    {TB_PIXEL_FORMAT_PLANAR_RGBA, TB_DTYPE_U8, 3, {4, 3, 5}, {192, 64, 1},
     {{0, 64, 2, {3, 5}}, {192, 64, 2, {3, 5}}, {384, 64, 2, {3, 5}}, {576, 64, 2, {3, 5}}}},
};
// clang-format on

static void assert_shape(const tb_tensor *t, size_t ndim,
                         const int64_t *shape) {
  assert_int_equal(tb_tensor_ndim(t), ndim);
  for (size_t d = 0; d < ndim; d++)
    assert_int_equal(tb_tensor_dim(t, d), shape[d]);
}

static void assert_layout(const tb_tensor *image, const image_layout *want,
                          uint32_t width, uint32_t height) {
  assert_int_equal(tb_image_format(image), want->format);
  assert_int_equal(tb_image_width(image), width);
  assert_int_equal(tb_image_height(image), height);
  assert_int_equal(tb_tensor_dtype(image), want->dtype);
  assert_shape(image, want->ndim, want->shape);
  for (size_t d = 0; d < want->ndim; d++)
    assert_int_equal(tb_tensor_stride(image, d), want->strides[d]);
  size_t nplanes = tb_pixel_format_plane_count(want->format);
  assert_int_equal(tb_image_plane_count(image), nplanes);
  for (size_t p = 0; p < nplanes; p++) {
    const plane_layout *plane = &want->planes[p];
    assert_int_equal(tb_image_plane_offset(image, p), plane->offset);
    assert_int_equal(tb_image_plane_stride(image, p), plane->stride);
    assert_int_equal(tb_image_plane_buffer_id(image, p),
                     tb_tensor_buffer_id(image));
    tb_tensor *view = NULL;
    TB_ASSERT_OK(tb_image_plane(&view, image, p));
    assert_shape(view, plane->ndim, plane->shape);
    assert_int_equal(tb_tensor_offset(view), plane->offset);
    assert_int_equal(tb_tensor_stride(view, 0) *
                         (int64_t)tb_dtype_size(want->dtype),
                     (int64_t)plane->stride);
    assert_int_equal(tb_tensor_stride(view, plane->ndim - 1), 1);
    assert_true(tb_tensor_shares_memory(view, image));
    tb_tensor_unref(view);
  }
  assert_int_equal(tb_image_plane_offset(image, nplanes), 0);
  assert_int_equal(tb_image_plane_stride(image, nplanes), 0);
  assert_int_equal(tb_image_plane_buffer_id(image, nplanes), 0);
}

static void every_format_at_an_odd_size(void **state) {
  (void)state;
  for (size_t i = 0; i < NFORMATS; i++) {
    const image_layout *want = &odd_layouts[i];
    tb_tensor *image = NULL;
    TB_ASSERT_OK(tb_image_new(&image, 5, 3, want->format, want->dtype, NULL));
    assert_layout(image, want, 5, 3);
    tb_tensor_unref(image);
  }
}

/* The last plane ends where the buffer does, and every plane starts on the
 * alignment: tb_image_new wastes nothing beyond the row padding. */
static void planes_are_aligned_and_fill_the_buffer(void **state) {
  (void)state;
  const uint64_t alignments[] = {0, 1, 16, 256};
  for (size_t a = 0; a < sizeof alignments / sizeof *alignments; a++) {
    for (size_t i = 0; i < NFORMATS; i++) {
      tb_alloc_options opts = TB_ALLOC_OPTIONS_INIT;
      opts.alignment = alignments[a];
      uint64_t alignment = alignments[a] ? alignments[a] : 64;
      tb_tensor *image = NULL;
      TB_ASSERT_OK(tb_image_new(&image, 7, 5, facts[i].format,
                                odd_layouts[i].dtype, &opts));
      size_t nplanes = tb_image_plane_count(image);
      uint64_t end = 0;
      for (size_t p = 0; p < nplanes; p++) {
        assert_int_equal(tb_image_plane_offset(image, p) % alignment, 0);
        assert_int_equal(tb_image_plane_stride(image, p) % alignment, 0);
        tb_tensor *view = NULL;
        TB_ASSERT_OK(tb_image_plane(&view, image, p));
        end =
            tb_image_plane_offset(image, p) +
            tb_image_plane_stride(image, p) * (uint64_t)tb_tensor_dim(view, 0);
        tb_tensor_unref(view);
      }
      tb_buffer *buffer = tb_tensor_buffer(image);
      assert_int_equal(tb_buffer_size(buffer), end);
      tb_buffer_unref(buffer);
      tb_tensor_unref(image);
    }
  }
}

/* Without row alignment the rows are tight; NV12's odd width then makes the
 * chroma rows (3 UV pairs) longer than the luma's 5 bytes, so both planes
 * take the 6-byte pitch and stay stacked. */
static void tight_rows_with_alignment_one(void **state) {
  (void)state;
  tb_alloc_options opts = TB_ALLOC_OPTIONS_INIT;
  opts.alignment = 1;
  tb_tensor *image = NULL;
  TB_ASSERT_OK(
      tb_image_new(&image, 5, 3, TB_PIXEL_FORMAT_RGB, TB_DTYPE_U8, &opts));
  assert_int_equal(tb_image_plane_stride(image, 0), 15);
  assert_true(tb_tensor_is_contiguous(image));
  tb_tensor_unref(image);

  TB_ASSERT_OK(
      tb_image_new(&image, 5, 3, TB_PIXEL_FORMAT_NV12, TB_DTYPE_U8, &opts));
  const image_layout nv12 = {TB_PIXEL_FORMAT_NV12,
                             TB_DTYPE_U8,
                             2,
                             {5, 5},
                             {6, 1},
                             {{0, 6, 2, {3, 5}}, {18, 6, 3, {2, 3, 2}}}};
  assert_layout(image, &nv12, 5, 3);
  tb_tensor_unref(image);

  TB_ASSERT_OK(
      tb_image_new(&image, 5, 3, TB_PIXEL_FORMAT_I420, TB_DTYPE_U8, &opts));
  const image_layout i420 = {
      TB_PIXEL_FORMAT_I420,
      TB_DTYPE_U8,
      2,
      {5, 5},
      {6, 1},
      {{0, 6, 2, {3, 5}}, {18, 3, 2, {2, 3}}, {24, 3, 2, {2, 3}}}};
  assert_layout(image, &i420, 5, 3);
  tb_tensor_unref(image);
}

/* The seed library's shapes: NV12 is [H * 3/2, W], contiguous when the width
 * is already aligned. */
static void full_hd_and_4k_nv12(void **state) {
  (void)state;
  const uint32_t sizes[][2] = {{1920, 1080}, {3840, 2160}};
  for (size_t i = 0; i < 2; i++) {
    uint32_t w = sizes[i][0], h = sizes[i][1];
    tb_tensor *image = NULL;
    TB_ASSERT_OK(
        tb_image_new(&image, w, h, TB_PIXEL_FORMAT_NV12, TB_DTYPE_U8, NULL));
    const int64_t shape[] = {h * 3 / 2, w};
    assert_shape(image, 2, shape);
    assert_true(tb_tensor_is_contiguous(image));
    assert_int_equal(tb_image_plane_offset(image, 1), (uint64_t)w * h);
    assert_int_equal(tb_tensor_nbytes(image), (uint64_t)w * h * 3 / 2);
    tb_tensor_unref(image);

    TB_ASSERT_OK(
        tb_image_new(&image, w, h, TB_PIXEL_FORMAT_NV16, TB_DTYPE_U8, NULL));
    const int64_t nv16[] = {h * 2, w};
    assert_shape(image, 2, nv16);
    tb_tensor_unref(image);
  }
}

/* Planar RGB in f32 is a model input: [3, H, W], contiguous at a 640 width;
 * GREY and RGBA in f16/f32 are the GPU texture formats. */
static void float_images(void **state) {
  (void)state;
  tb_tensor *image = NULL;
  TB_ASSERT_OK(tb_image_new(&image, 640, 480, TB_PIXEL_FORMAT_PLANAR_RGB,
                            TB_DTYPE_F32, NULL));
  const int64_t chw[] = {3, 480, 640};
  assert_shape(image, 3, chw);
  assert_true(tb_tensor_is_contiguous(image));
  assert_int_equal(tb_image_plane_stride(image, 0), 640 * 4);
  assert_int_equal(tb_image_plane_offset(image, 2), 2u * 640 * 4 * 480);
  const int64_t index[] = {2, 479, 639};
  TB_ASSERT_OK(tb_tensor_set_f64(image, 3, index, 0.25));
  tb_tensor *blue = NULL;
  TB_ASSERT_OK(tb_image_plane(&blue, image, 2));
  double value = 0;
  TB_ASSERT_OK(tb_tensor_get_f64(&value, blue, 2, index + 1));
  TB_ASSERT_F64_EQUAL(value, 0.25);
  tb_tensor_unref(blue);
  tb_tensor_unref(image);

  TB_ASSERT_OK(
      tb_image_new(&image, 3, 2, TB_PIXEL_FORMAT_RGBA, TB_DTYPE_F16, NULL));
  const int64_t hwc[] = {2, 3, 4};
  assert_shape(image, 3, hwc);
  assert_int_equal(tb_tensor_stride(image, 0), 32); /* 64 bytes of f16 */
  tb_tensor_unref(image);

  TB_ASSERT_OK(
      tb_image_new(&image, 33, 2, TB_PIXEL_FORMAT_GREY, TB_DTYPE_F32, NULL));
  assert_int_equal(tb_image_plane_stride(image, 0), 192); /* 132 -> 192 */
  tb_tensor_unref(image);
}

static void image_options(void **state) {
  (void)state;
  tb_alloc_options opts = TB_ALLOC_OPTIONS_INIT;
  opts.memory = TB_MEMORY_HEAP;
  opts.name = "camera0";
  opts.flags = TB_ALLOC_HUGE_PAGES;
  tb_tensor *image = NULL;
  TB_ASSERT_OK(
      tb_image_new(&image, 100, 10, TB_PIXEL_FORMAT_NV12, TB_DTYPE_U8, &opts));
  assert_int_equal(tb_tensor_memory(image), TB_MEMORY_HEAP);
  assert_string_equal(tb_tensor_name(image), "camera0");
  /* Huge pages align the buffer, not the rows. */
  assert_int_equal(tb_image_plane_stride(image, 0), 128);
  tb_tensor *chroma = NULL;
  TB_ASSERT_OK(tb_image_plane(&chroma, image, 1));
  assert_string_equal(tb_tensor_name(chroma), "camera0");
  tb_tensor_unref(chroma);
  /* Heap memory has no fd to give. */
  int fd = 1234;
  TB_ASSERT_STATUS(tb_image_export_plane_fd(&fd, image, 0), TB_ERR_UNSUPPORTED);
  assert_int_equal(fd, 1234);
  tb_tensor_unref(image);

  opts.memory = TB_MEMORY_SHM;
  opts.flags = 0;
  TB_ASSERT_OK(
      tb_image_new(&image, 4, 4, TB_PIXEL_FORMAT_RGBA, TB_DTYPE_U8, &opts));
  assert_int_equal(tb_tensor_memory(image), TB_MEMORY_SHM);
  tb_tensor_unref(image);
}

static void image_new_refuses_bad_input(void **state) {
  (void)state;
  tb_tensor *image = TB_SENTINEL(tb_tensor);
  TB_ASSERT_STATUS(
      tb_image_new(NULL, 4, 4, TB_PIXEL_FORMAT_RGB, TB_DTYPE_U8, NULL),
      TB_ERR_INVALID_ARGUMENT);
  TB_ASSERT_STATUS(
      tb_image_new(&image, 0, 4, TB_PIXEL_FORMAT_RGB, TB_DTYPE_U8, NULL),
      TB_ERR_SHAPE);
  TB_ASSERT_STATUS(
      tb_image_new(&image, 4, 0, TB_PIXEL_FORMAT_RGB, TB_DTYPE_U8, NULL),
      TB_ERR_SHAPE);
  TB_ASSERT_STATUS(
      tb_image_new(&image, 4, 4, TB_PIXEL_FORMAT_INVALID, TB_DTYPE_U8, NULL),
      TB_ERR_INVALID_ARGUMENT);
  TB_ASSERT_STATUS(
      tb_image_new(&image, 4, 4, (tb_pixel_format)99, TB_DTYPE_U8, NULL),
      TB_ERR_INVALID_ARGUMENT);
  TB_ASSERT_STATUS(
      tb_image_new(&image, 4, 4, TB_PIXEL_FORMAT_RGB, (tb_dtype)99, NULL),
      TB_ERR_DTYPE);
  TB_ASSERT_STATUS(
      tb_image_new(&image, 4, 4, TB_PIXEL_FORMAT_NV12, TB_DTYPE_F32, NULL),
      TB_ERR_DTYPE);
  TB_ASSERT_STATUS(
      tb_image_new(&image, 4, 4, TB_PIXEL_FORMAT_P010, TB_DTYPE_U8, NULL),
      TB_ERR_DTYPE);
  TB_ASSERT_STATUS(tb_image_new(&image, UINT32_MAX, UINT32_MAX,
                                TB_PIXEL_FORMAT_PLANAR_RGBA, TB_DTYPE_F32,
                                NULL),
                   TB_ERR_SHAPE);
  tb_alloc_options opts = TB_ALLOC_OPTIONS_INIT;
  opts.version = 99;
  TB_ASSERT_STATUS(
      tb_image_new(&image, 4, 4, TB_PIXEL_FORMAT_RGB, TB_DTYPE_U8, &opts),
      TB_ERR_VERSION);
  opts.version = TB_ALLOC_OPTIONS_VERSION;
  opts.alignment = 48;
  TB_ASSERT_STATUS(
      tb_image_new(&image, 4, 4, TB_PIXEL_FORMAT_RGB, TB_DTYPE_U8, &opts),
      TB_ERR_INVALID_ARGUMENT);
  assert_ptr_equal(image, TB_SENTINEL(tb_tensor));
}

/* ---- plane views and metadata rules -------------------------------------- */

static void plane_views_share_the_bytes(void **state) {
  (void)state;
  tb_tensor *image = NULL;
  TB_ASSERT_OK(
      tb_image_new(&image, 4, 2, TB_PIXEL_FORMAT_NV12, TB_DTYPE_U8, NULL));
  tb_tensor *luma = NULL, *chroma = NULL;
  TB_ASSERT_OK(tb_image_plane(&luma, image, 0));
  TB_ASSERT_OK(tb_image_plane(&chroma, image, 1));
  const uint8_t y[8] = {1, 2, 3, 4, 5, 6, 7, 8}, uv[4] = {9, 10, 11, 12};
  TB_ASSERT_OK(tb_tensor_write_bytes(luma, y, sizeof y));
  TB_ASSERT_OK(tb_tensor_write_bytes(chroma, uv, sizeof uv));
  /* The image tensor is [3, 4] rows at a 64-byte pitch: luma then chroma. */
  uint8_t all[12];
  TB_ASSERT_OK(tb_tensor_read_bytes(all, sizeof all, image));
  const uint8_t expected[12] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};
  assert_memory_equal(all, expected, sizeof all);
  assert_false(tb_tensor_shares_memory(luma, chroma));
  /* Plane views are plain tensors. */
  assert_int_equal(tb_image_format(luma), TB_PIXEL_FORMAT_INVALID);
  assert_int_equal(tb_image_plane_count(chroma), 0);
  assert_int_equal(tb_tensor_buffer_id(luma), tb_tensor_buffer_id(image));
  /* They keep the bytes alive after the image is gone. */
  tb_tensor_unref(image);
  int64_t index[] = {0, 1, 1};
  int64_t value = 0;
  TB_ASSERT_OK(tb_tensor_get_i64(&value, chroma, 3, index));
  assert_int_equal(value, 12);
  tb_tensor_unref(luma);
  tb_tensor_unref(chroma);
}

static void plane_view_refuses_bad_input(void **state) {
  (void)state;
  tb_tensor *image = NULL;
  TB_ASSERT_OK(
      tb_image_new(&image, 4, 2, TB_PIXEL_FORMAT_NV12, TB_DTYPE_U8, NULL));
  const int64_t shape[] = {2, 2};
  tb_tensor *plain = NULL;
  TB_ASSERT_OK(tb_tensor_new(&plain, TB_DTYPE_U8, 2, shape, NULL));
  tb_tensor *view = TB_SENTINEL(tb_tensor);
  TB_ASSERT_STATUS(tb_image_plane(&view, image, 2), TB_ERR_OUT_OF_RANGE);
  TB_ASSERT_STATUS(tb_image_plane(&view, image, SIZE_MAX), TB_ERR_OUT_OF_RANGE);
  TB_ASSERT_STATUS(tb_image_plane(&view, plain, 0), TB_ERR_INVALID_ARGUMENT);
  TB_ASSERT_STATUS(tb_image_plane(&view, NULL, 0), TB_ERR_INVALID_ARGUMENT);
  TB_ASSERT_STATUS(tb_image_plane(NULL, image, 0), TB_ERR_INVALID_ARGUMENT);
  assert_ptr_equal(view, TB_SENTINEL(tb_tensor));
  int fd = 1234;
  TB_ASSERT_STATUS(tb_image_export_plane_fd(&fd, image, 2),
                   TB_ERR_OUT_OF_RANGE);
  TB_ASSERT_STATUS(tb_image_export_plane_fd(&fd, plain, 0),
                   TB_ERR_INVALID_ARGUMENT);
  TB_ASSERT_STATUS(tb_image_export_plane_fd(&fd, NULL, 0),
                   TB_ERR_INVALID_ARGUMENT);
  TB_ASSERT_STATUS(tb_image_export_plane_fd(NULL, image, 0),
                   TB_ERR_INVALID_ARGUMENT);
  assert_int_equal(fd, 1234);
  tb_tensor_unref(plain);
  tb_tensor_unref(image);
}

static void getters_of_non_images(void **state) {
  (void)state;
  assert_int_equal(tb_image_format(NULL), TB_PIXEL_FORMAT_INVALID);
  assert_int_equal(tb_image_width(NULL), 0);
  assert_int_equal(tb_image_height(NULL), 0);
  assert_int_equal(tb_image_plane_count(NULL), 0);
  assert_int_equal(tb_image_plane_offset(NULL, 0), 0);
  assert_int_equal(tb_image_plane_stride(NULL, 0), 0);
  assert_int_equal(tb_image_plane_buffer_id(NULL, 0), 0);
  const int64_t shape[] = {2, 2};
  tb_tensor *plain = NULL;
  TB_ASSERT_OK(tb_tensor_new(&plain, TB_DTYPE_U8, 2, shape, NULL));
  assert_int_equal(tb_image_format(plain), TB_PIXEL_FORMAT_INVALID);
  assert_int_equal(tb_image_width(plain), 0);
  assert_int_equal(tb_image_plane_count(plain), 0);
  assert_int_equal(tb_image_plane_stride(plain, 0), 0);
  tb_tensor_unref(plain);
}

static void views_drop_image_metadata(void **state) {
  (void)state;
  tb_tensor *image = NULL;
  TB_ASSERT_OK(
      tb_image_new(&image, 64, 4, TB_PIXEL_FORMAT_NV12, TB_DTYPE_U8, NULL));
  tb_tensor *view = NULL;
  const int64_t flat[] = {-1};
  TB_ASSERT_OK(tb_tensor_reshape(&view, image, 1, flat));
  assert_int_equal(tb_image_format(view), TB_PIXEL_FORMAT_INVALID);
  assert_int_equal(tb_image_plane_count(view), 0);
  tb_tensor_unref(view);
  TB_ASSERT_OK(tb_tensor_slice(&view, image, 0, 0, 4, 1));
  assert_int_equal(tb_image_format(view), TB_PIXEL_FORMAT_INVALID);
  tb_tensor_unref(view);
  tb_buffer *buffer = tb_tensor_buffer(image);
  const int64_t shape[] = {6, 64};
  TB_ASSERT_OK(
      tb_tensor_from_buffer(&view, buffer, 0, TB_DTYPE_U8, 2, shape, NULL));
  assert_int_equal(tb_image_format(view), TB_PIXEL_FORMAT_INVALID);
  tb_tensor_unref(view);
  tb_buffer_unref(buffer);
  /* The image itself keeps its metadata. */
  assert_int_equal(tb_image_format(image), TB_PIXEL_FORMAT_NV12);
  tb_tensor_unref(image);
}

/* ---- a format on an existing tensor -------------------------------------- */

static tb_tensor *new_tensor(tb_dtype dtype, size_t ndim,
                             const int64_t *shape) {
  tb_tensor *t = NULL;
  TB_ASSERT_OK(tb_tensor_new(&t, dtype, ndim, shape, NULL));
  return t;
}

static void set_format_reads_the_shape(void **state) {
  (void)state;
  /* The seed library's contiguous NV12. */
  const int64_t nv12[] = {1080 * 3 / 2, 1920};
  tb_tensor *t = new_tensor(TB_DTYPE_U8, 2, nv12);
  TB_ASSERT_OK(tb_image_set_format(t, TB_PIXEL_FORMAT_NV12));
  assert_int_equal(tb_image_width(t), 1920);
  assert_int_equal(tb_image_height(t), 1080);
  assert_int_equal(tb_image_plane_offset(t, 1), 1920 * 1080);
  assert_int_equal(tb_image_plane_stride(t, 1), 1920);
  /* Another format replaces it; INVALID removes it. */
  const int64_t as_grey[] = {1620, 1920, 1};
  tb_tensor *grey = NULL;
  TB_ASSERT_OK(tb_tensor_reshape(&grey, t, 3, as_grey));
  TB_ASSERT_OK(tb_image_set_format(grey, TB_PIXEL_FORMAT_GREY));
  assert_int_equal(tb_image_height(grey), 1620);
  tb_tensor_unref(grey);
  TB_ASSERT_OK(tb_image_set_format(t, TB_PIXEL_FORMAT_INVALID));
  assert_int_equal(tb_image_format(t), TB_PIXEL_FORMAT_INVALID);
  assert_int_equal(tb_image_plane_count(t), 0);
  tb_tensor_unref(t);

  const int64_t chw[] = {3, 4, 6};
  t = new_tensor(TB_DTYPE_F32, 3, chw);
  TB_ASSERT_OK(tb_image_set_format(t, TB_PIXEL_FORMAT_PLANAR_RGB));
  assert_int_equal(tb_image_width(t), 6);
  assert_int_equal(tb_image_height(t), 4);
  assert_int_equal(tb_image_plane_offset(t, 2), 2 * 24 * 4);
  assert_int_equal(tb_image_plane_stride(t, 2), 24);
  tb_tensor_unref(t);

  /* An odd height: 5 luma rows and 3 chroma rows. */
  const int64_t odd[] = {8, 6};
  t = new_tensor(TB_DTYPE_U8, 2, odd);
  TB_ASSERT_OK(tb_image_set_format(t, TB_PIXEL_FORMAT_NV12));
  assert_int_equal(tb_image_height(t), 5);
  assert_int_equal(tb_image_plane_offset(t, 1), 30);
  tb_tensor_unref(t);
}

/* Every format, set on its own image tensor, gives back the same metadata. */
static void set_format_inverts_image_new(void **state) {
  (void)state;
  for (size_t i = 0; i < NFORMATS; i++) {
    tb_tensor *image = NULL;
    TB_ASSERT_OK(tb_image_new(&image, 6, 4, facts[i].format,
                              odd_layouts[i].dtype, NULL));
    uint64_t offsets[4], strides[4];
    size_t nplanes = tb_image_plane_count(image);
    for (size_t p = 0; p < nplanes; p++) {
      offsets[p] = tb_image_plane_offset(image, p);
      strides[p] = tb_image_plane_stride(image, p);
    }
    TB_ASSERT_OK(tb_image_set_format(image, TB_PIXEL_FORMAT_INVALID));
    TB_ASSERT_OK(tb_image_set_format(image, facts[i].format));
    assert_int_equal(tb_image_width(image), 6);
    assert_int_equal(tb_image_height(image), 4);
    assert_int_equal(tb_image_plane_count(image), nplanes);
    for (size_t p = 0; p < nplanes; p++) {
      assert_int_equal(tb_image_plane_offset(image, p), offsets[p]);
      assert_int_equal(tb_image_plane_stride(image, p), strides[p]);
    }
    tb_tensor_unref(image);
  }
}

static void set_format_refuses_mismatched_tensors(void **state) {
  (void)state;
  const int64_t rgb[] = {4, 6, 3};
  tb_tensor *t = new_tensor(TB_DTYPE_U8, 3, rgb);
  TB_ASSERT_OK(tb_image_set_format(t, TB_PIXEL_FORMAT_RGB));
  /* Every failure leaves the RGB metadata as it was. */
  TB_ASSERT_STATUS(tb_image_set_format(t, TB_PIXEL_FORMAT_RGBA), TB_ERR_SHAPE);
  TB_ASSERT_STATUS(tb_image_set_format(t, TB_PIXEL_FORMAT_NV12), TB_ERR_SHAPE);
  TB_ASSERT_STATUS(tb_image_set_format(t, TB_PIXEL_FORMAT_PLANAR_RGB),
                   TB_ERR_SHAPE); /* [4, 6, 3] is not 3 planes */
  TB_ASSERT_STATUS(tb_image_set_format(t, TB_PIXEL_FORMAT_P010), TB_ERR_DTYPE);
  TB_ASSERT_STATUS(tb_image_set_format(t, (tb_pixel_format)99),
                   TB_ERR_INVALID_ARGUMENT);
  TB_ASSERT_STATUS(tb_image_set_format(NULL, TB_PIXEL_FORMAT_RGB),
                   TB_ERR_INVALID_ARGUMENT);
  assert_int_equal(tb_image_format(t), TB_PIXEL_FORMAT_RGB);
  assert_int_equal(tb_image_width(t), 6);

  /* Every other column is not rows of whole pixels. */
  tb_tensor *strided = NULL;
  TB_ASSERT_OK(tb_tensor_slice(&strided, t, 1, 0, 6, 2));
  TB_ASSERT_STATUS(tb_image_set_format(strided, TB_PIXEL_FORMAT_RGB),
                   TB_ERR_LAYOUT);
  tb_tensor_unref(strided);
  tb_tensor_unref(t);

  /* YUYV rows hold whole macropixels: an even width dim. */
  const int64_t yuyv[] = {2, 5, 2};
  t = new_tensor(TB_DTYPE_U8, 3, yuyv);
  TB_ASSERT_STATUS(tb_image_set_format(t, TB_PIXEL_FORMAT_YUYV), TB_ERR_SHAPE);
  tb_tensor_unref(t);

  /* No height gives NV12 4 stacked rows (3 luma + 2 chroma is 5). */
  const int64_t four[] = {4, 8};
  t = new_tensor(TB_DTYPE_U8, 2, four);
  TB_ASSERT_STATUS(tb_image_set_format(t, TB_PIXEL_FORMAT_NV12), TB_ERR_SHAPE);
  tb_tensor_unref(t);

  /* A tight 5-byte pitch cannot hold NV12's 6-byte chroma rows; an odd pitch
   * cannot be halved for I420's chroma. */
  const int64_t tight[] = {5, 5};
  t = new_tensor(TB_DTYPE_U8, 2, tight);
  TB_ASSERT_STATUS(tb_image_set_format(t, TB_PIXEL_FORMAT_NV12), TB_ERR_LAYOUT);
  TB_ASSERT_STATUS(tb_image_set_format(t, TB_PIXEL_FORMAT_I420), TB_ERR_LAYOUT);
  assert_int_equal(tb_image_format(t), TB_PIXEL_FORMAT_INVALID);
  tb_tensor_unref(t);

  /* A 6-byte pitch fits the rows, but the last chroma row would end one
   * byte past this 29-byte buffer. */
  tb_buffer *buffer = NULL;
  TB_ASSERT_OK(tb_buffer_new(&buffer, 29, NULL));
  const int64_t strides[] = {6, 1};
  TB_ASSERT_OK(
      tb_tensor_from_buffer(&t, buffer, 0, TB_DTYPE_U8, 2, tight, strides));
  TB_ASSERT_STATUS(tb_image_set_format(t, TB_PIXEL_FORMAT_NV12),
                   TB_ERR_OUT_OF_RANGE);
  tb_tensor_unref(t);
  tb_buffer_unref(buffer);

  /* Planes that overlap. */
  const int64_t chw[] = {3, 4, 4};
  const int64_t overlapping[] = {4, 4, 1};
  TB_ASSERT_OK(tb_buffer_new(&buffer, 64, NULL));
  TB_ASSERT_OK(
      tb_tensor_from_buffer(&t, buffer, 0, TB_DTYPE_U8, 3, chw, overlapping));
  TB_ASSERT_STATUS(tb_image_set_format(t, TB_PIXEL_FORMAT_PLANAR_RGB),
                   TB_ERR_LAYOUT);
  tb_tensor_unref(t);
  tb_buffer_unref(buffer);
}

/* ---- import ------------------------------------------------------------ */

/* Fills a plane view with bytes that say where they are: (row * 16 + column
 * + plane * 100) mod 251, so that a byte read from the wrong place shows. */
static void fill_plane(tb_tensor *image, size_t plane) {
  tb_tensor *view = NULL;
  TB_ASSERT_OK(tb_image_plane(&view, image, plane));
  size_t n = (size_t)tb_tensor_nbytes(view);
  size_t row = n / (size_t)tb_tensor_dim(view, 0);
  uint8_t *bytes = malloc(n);
  for (size_t i = 0; i < n; i++)
    bytes[i] = (uint8_t)(((i / row) * 16 + i % row + plane * 100) % 251);
  TB_ASSERT_OK(tb_tensor_write_bytes(view, bytes, n));
  free(bytes);
  tb_tensor_unref(view);
}

/* Asserts that plane `plane` of both images holds the same bytes. */
static void assert_same_plane(tb_tensor *a, tb_tensor *b, size_t plane) {
  tb_tensor *va = NULL, *vb = NULL;
  TB_ASSERT_OK(tb_image_plane(&va, a, plane));
  TB_ASSERT_OK(tb_image_plane(&vb, b, plane));
  size_t n = (size_t)tb_tensor_nbytes(va);
  assert_int_equal(tb_tensor_nbytes(vb), n);
  uint8_t *ba = malloc(n), *bb = malloc(n);
  TB_ASSERT_OK(tb_tensor_read_bytes(ba, n, va));
  TB_ASSERT_OK(tb_tensor_read_bytes(bb, n, vb));
  assert_memory_equal(ba, bb, n);
  free(ba);
  free(bb);
  tb_tensor_unref(va);
  tb_tensor_unref(vb);
}

/* Exports every plane's fd and imports them again; closes the fds. */
static tb_tensor *round_trip(tb_tensor *image) {
  size_t nplanes = tb_image_plane_count(image);
  int fds[4];
  uint64_t offsets[4], strides[4];
  for (size_t p = 0; p < nplanes; p++) {
    TB_ASSERT_OK(tb_image_export_plane_fd(&fds[p], image, p));
    offsets[p] = tb_image_plane_offset(image, p);
    strides[p] = tb_image_plane_stride(image, p);
  }
  tb_tensor *copy = NULL;
  TB_ASSERT_OK(tb_image_import(&copy, tb_image_width(image),
                               tb_image_height(image), tb_image_format(image),
                               nplanes, fds, offsets, strides));
  for (size_t p = 0; p < nplanes; p++)
    close(fds[p]);
  return copy;
}

static void assert_round_trip(tb_tensor *image) {
  tb_tensor *copy = round_trip(image);
  assert_int_equal(tb_image_format(copy), tb_image_format(image));
  assert_int_equal(tb_image_width(copy), tb_image_width(image));
  assert_int_equal(tb_image_height(copy), tb_image_height(image));
  size_t nplanes = tb_image_plane_count(image);
  assert_int_equal(tb_image_plane_count(copy), nplanes);
  for (size_t p = 0; p < nplanes; p++) {
    assert_int_equal(tb_image_plane_offset(copy, p),
                     tb_image_plane_offset(image, p));
    assert_int_equal(tb_image_plane_stride(copy, p),
                     tb_image_plane_stride(image, p));
    /* Planes that shared a buffer share one again. */
    assert_int_equal(tb_image_plane_buffer_id(copy, p) ==
                         tb_image_plane_buffer_id(copy, 0),
                     tb_image_plane_buffer_id(image, p) ==
                         tb_image_plane_buffer_id(image, 0));
    assert_same_plane(image, copy, p);
  }
  /* The same tensor shape, too. */
  assert_int_equal(tb_tensor_ndim(copy), tb_tensor_ndim(image));
  for (size_t d = 0; d < tb_tensor_ndim(image); d++) {
    assert_int_equal(tb_tensor_dim(copy, d), tb_tensor_dim(image, d));
    assert_int_equal(tb_tensor_stride(copy, d), tb_tensor_stride(image, d));
  }
  tb_tensor_unref(copy);
}

static void every_format_round_trips_through_fds(void **state) {
  (void)state;
  tb_alloc_options opts = TB_ALLOC_OPTIONS_INIT;
  opts.memory = TB_MEMORY_SHM;
  for (size_t i = 0; i < NFORMATS; i++) {
    tb_tensor *image = NULL;
    TB_ASSERT_OK(tb_image_new(&image, 7, 5, facts[i].format,
                              odd_layouts[i].dtype, &opts));
    for (size_t p = 0; p < tb_image_plane_count(image); p++)
      fill_plane(image, p);
    assert_round_trip(image);
    tb_tensor_unref(image);
  }
}

/* A single-fd NV12 with padded rows (as a capture driver lays it out: a
 * 1000-byte pitch for a 993-pixel width), imported from the caller's memfd,
 * round-trips through export and import with both planes' bytes intact. */
static void single_fd_nv12_with_padded_rows(void **state) {
  (void)state;
  const uint32_t w = 993, h = 31;
  const uint64_t pitch = 1000, rows = 31 + 16;
  int fd = tb_test_memfd(pitch * rows, MFD_ALLOW_SEALING);
  const int fds[] = {fd, fd};
  const uint64_t offsets[] = {0, pitch * h}, strides[] = {pitch, pitch};
  tb_tensor *image = NULL;
  TB_ASSERT_OK(tb_image_import(&image, w, h, TB_PIXEL_FORMAT_NV12, 2, fds,
                               offsets, strides));
  close(fd); /* the image holds its own dup */
  assert_int_equal(tb_tensor_memory(image), TB_MEMORY_SHM);
  /* Stacked at one pitch: the whole image as [H + ceil(H/2), W]. */
  const int64_t shape[] = {47, 993};
  assert_shape(image, 2, shape);
  assert_int_equal(tb_tensor_stride(image, 0), 1000);
  assert_int_equal(tb_image_plane_buffer_id(image, 1),
                   tb_image_plane_buffer_id(image, 0));
  /* The bytes are the memfd's: byte k holds k mod 256. */
  tb_tensor *chroma = NULL;
  TB_ASSERT_OK(tb_image_plane(&chroma, image, 1));
  const int64_t chroma_shape[] = {16, 497, 2};
  assert_shape(chroma, 3, chroma_shape);
  const int64_t index[] = {15, 496, 1}; /* the last byte of the last row */
  int64_t value = 0;
  TB_ASSERT_OK(tb_tensor_get_i64(&value, chroma, 3, index));
  assert_int_equal(value, (int64_t)((pitch * (h + 15) + 993) % 256));
  tb_tensor_unref(chroma);
  assert_round_trip(image);
  tb_tensor_unref(image);
}

/* V4L2 multi-planar: luma and chroma in two fds, each at offset 0. */
static void two_fd_nv12_as_v4l2_gives_it(void **state) {
  (void)state;
  const uint32_t w = 6, h = 4;
  int luma = tb_test_memfd(8 * 4, MFD_ALLOW_SEALING);
  int chroma = tb_test_memfd(8 * 2 + 100, MFD_ALLOW_SEALING);
  const int fds[] = {luma, chroma};
  const uint64_t offsets[] = {0, 100}, strides[] = {8, 8};
  tb_tensor *image = NULL;
  TB_ASSERT_OK(tb_image_import(&image, w, h, TB_PIXEL_FORMAT_NV12, 2, fds,
                               offsets, strides));
  close(luma);
  close(chroma);
  /* No single layout spans two buffers: the tensor is plane 0. */
  const int64_t shape[] = {4, 6};
  assert_shape(image, 2, shape);
  assert_int_not_equal(tb_image_plane_buffer_id(image, 1),
                       tb_image_plane_buffer_id(image, 0));
  assert_int_equal(tb_image_plane_buffer_id(image, 0),
                   tb_tensor_buffer_id(image));
  tb_tensor *uv = NULL;
  TB_ASSERT_OK(tb_image_plane(&uv, image, 1));
  uint8_t bytes[12];
  TB_ASSERT_OK(tb_tensor_read_bytes(bytes, sizeof bytes, uv));
  const uint8_t expected[12] = {100, 101, 102, 103, 104, 105,
                                108, 109, 110, 111, 112, 113};
  assert_memory_equal(bytes, expected, sizeof bytes);
  tb_tensor_unref(uv);
  /* Two fds out, two buffers in, every byte the same. */
  fill_plane(image, 0);
  fill_plane(image, 1);
  assert_round_trip(image);
  tb_tensor_unref(image);
}

/* A layout tb_image_new would not make: the chroma plane page-aligned after
 * a gap. One fd, one buffer, but the tensor is plane 0. */
static void single_fd_planes_with_a_gap(void **state) {
  (void)state;
  int fd = tb_test_memfd(8192, MFD_ALLOW_SEALING);
  const int fds[] = {fd, fd, fd};
  const uint64_t offsets[] = {0, 4096, 6144}, strides[] = {64, 32, 32};
  tb_tensor *image = NULL;
  TB_ASSERT_OK(tb_image_import(&image, 64, 8, TB_PIXEL_FORMAT_I420, 3, fds,
                               offsets, strides));
  close(fd);
  const int64_t shape[] = {8, 64};
  assert_shape(image, 2, shape);
  assert_int_equal(tb_image_plane_buffer_id(image, 2),
                   tb_image_plane_buffer_id(image, 0));
  tb_tensor *v = NULL;
  TB_ASSERT_OK(tb_image_plane(&v, image, 2));
  assert_int_equal(tb_tensor_offset(v), 6144);
  tb_tensor_unref(v);
  assert_round_trip(image);
  tb_tensor_unref(image);
}

/* Dups of one memfd are one file: one buffer. */
static void dups_of_one_file_share_a_buffer(void **state) {
  (void)state;
  int fd = tb_test_memfd(3 * 64 * 4, MFD_ALLOW_SEALING);
  int dup1 = dup(fd), dup2 = dup(fd);
  const int fds[] = {fd, dup1, dup2};
  const uint64_t offsets[] = {0, 256, 512}, strides[] = {64, 64, 64};
  tb_tensor *image = NULL;
  TB_ASSERT_OK(tb_image_import(&image, 60, 4, TB_PIXEL_FORMAT_PLANAR_RGB, 3,
                               fds, offsets, strides));
  const int64_t shape[] = {3, 4, 60};
  assert_shape(image, 3, shape);
  assert_int_equal(tb_tensor_stride(image, 0), 256);
  assert_int_equal(tb_image_plane_buffer_id(image, 2),
                   tb_tensor_buffer_id(image));
  close(fd);
  close(dup1);
  close(dup2);
  tb_tensor_unref(image);
}

/* An odd-sized NV12 with tight rows: 5-byte luma rows, 6-byte chroma rows
 * (3 UV pairs), 2 chroma rows; 27 bytes in all. */
static void odd_nv12_with_tight_rows(void **state) {
  (void)state;
  int fd = tb_test_memfd(27, MFD_ALLOW_SEALING);
  const int fds[] = {fd, fd};
  const uint64_t offsets[] = {0, 15}, strides[] = {5, 6};
  tb_tensor *image = NULL;
  TB_ASSERT_OK(tb_image_import(&image, 5, 3, TB_PIXEL_FORMAT_NV12, 2, fds,
                               offsets, strides));
  tb_tensor *uv = NULL;
  TB_ASSERT_OK(tb_image_plane(&uv, image, 1));
  const int64_t shape[] = {2, 3, 2};
  assert_shape(uv, 3, shape);
  uint8_t bytes[12];
  TB_ASSERT_OK(tb_tensor_read_bytes(bytes, sizeof bytes, uv));
  for (int i = 0; i < 12; i++)
    assert_int_equal(bytes[i], 15 + i);
  tb_tensor_unref(uv);
  assert_round_trip(image);
  tb_tensor_unref(image);
  /* One byte short of the last chroma row. */
  int short_fd = tb_test_memfd(26, MFD_ALLOW_SEALING);
  const int short_fds[] = {short_fd, short_fd};
  image = TB_SENTINEL(tb_tensor);
  TB_ASSERT_STATUS(tb_image_import(&image, 5, 3, TB_PIXEL_FORMAT_NV12, 2,
                                   short_fds, offsets, strides),
                   TB_ERR_OUT_OF_RANGE);
  assert_ptr_equal(image, TB_SENTINEL(tb_tensor));
  close(short_fd);
  close(fd);
}

static void read_only_fd_imports_read_only(void **state) {
  (void)state;
  int fd = tb_test_memfd(64 * 4, MFD_ALLOW_SEALING);
  assert_int_equal(fcntl(fd, F_ADD_SEALS, F_SEAL_WRITE), 0);
  const int fds[] = {fd};
  const uint64_t offsets[] = {0}, strides[] = {64};
  tb_tensor *image = NULL;
  TB_ASSERT_OK(tb_image_import(&image, 16, 4, TB_PIXEL_FORMAT_RGBA, 1, fds,
                               offsets, strides));
  assert_true(tb_tensor_read_only(image));
  tb_map *map = TB_SENTINEL(tb_map);
  TB_ASSERT_STATUS(tb_tensor_map(&map, image, TB_MAP_WRITE), TB_ERR_READ_ONLY);
  tb_tensor_unref(image);
  close(fd);
}

static void import_refuses_bad_planes(void **state) {
  (void)state;
  int fd = tb_test_memfd(4096, MFD_ALLOW_SEALING);
  int small = tb_test_memfd(128, MFD_ALLOW_SEALING);
  int pipe_fds[2];
  assert_int_equal(pipe(pipe_fds), 0);
  int closed = dup(fd);
  close(closed);
  const uint32_t w = 16, h = 8;
  const int fds[] = {fd, fd};
  const uint64_t offsets[] = {0, 256}, strides[] = {32, 32};
  tb_tensor *image = TB_SENTINEL(tb_tensor);
  TB_ASSERT_STATUS(tb_image_import(&image, w, h, TB_PIXEL_FORMAT_NV12, 1, fds,
                                   offsets, strides),
                   TB_ERR_INVALID_ARGUMENT);
  TB_ASSERT_STATUS(tb_image_import(&image, w, h, TB_PIXEL_FORMAT_NV12, 5, fds,
                                   offsets, strides),
                   TB_ERR_INVALID_ARGUMENT);
  TB_ASSERT_STATUS(tb_image_import(&image, w, h, TB_PIXEL_FORMAT_NV12, 2, NULL,
                                   offsets, strides),
                   TB_ERR_INVALID_ARGUMENT);
  TB_ASSERT_STATUS(tb_image_import(&image, w, h, TB_PIXEL_FORMAT_NV12, 2, fds,
                                   NULL, strides),
                   TB_ERR_INVALID_ARGUMENT);
  TB_ASSERT_STATUS(tb_image_import(&image, w, h, TB_PIXEL_FORMAT_NV12, 2, fds,
                                   offsets, NULL),
                   TB_ERR_INVALID_ARGUMENT);
  TB_ASSERT_STATUS(tb_image_import(NULL, w, h, TB_PIXEL_FORMAT_NV12, 2, fds,
                                   offsets, strides),
                   TB_ERR_INVALID_ARGUMENT);
  TB_ASSERT_STATUS(tb_image_import(&image, 0, h, TB_PIXEL_FORMAT_NV12, 2, fds,
                                   offsets, strides),
                   TB_ERR_SHAPE);
  TB_ASSERT_STATUS(tb_image_import(&image, w, h, (tb_pixel_format)0, 2, fds,
                                   offsets, strides),
                   TB_ERR_INVALID_ARGUMENT);
  const int negative[] = {fd, -1};
  TB_ASSERT_STATUS(tb_image_import(&image, w, h, TB_PIXEL_FORMAT_NV12, 2,
                                   negative, offsets, strides),
                   TB_ERR_INVALID_ARGUMENT);
  /* A stride shorter than a row; one too large to be a tensor stride. */
  const uint64_t short_rows[] = {32, 15};
  TB_ASSERT_STATUS(tb_image_import(&image, w, h, TB_PIXEL_FORMAT_NV12, 2, fds,
                                   offsets, short_rows),
                   TB_ERR_LAYOUT);
  const uint64_t huge[] = {32, UINT64_MAX};
  TB_ASSERT_STATUS(tb_image_import(&image, w, h, TB_PIXEL_FORMAT_NV12, 2, fds,
                                   offsets, huge),
                   TB_ERR_OUT_OF_RANGE);
  const uint64_t far[] = {0, UINT64_MAX - 8};
  TB_ASSERT_STATUS(
      tb_image_import(&image, w, h, TB_PIXEL_FORMAT_NV12, 2, fds, far, strides),
      TB_ERR_OUT_OF_RANGE);
  /* The second plane ends past the first fd's 4096 bytes. */
  const uint64_t past[] = {0, 4000};
  TB_ASSERT_STATUS(tb_image_import(&image, w, h, TB_PIXEL_FORMAT_NV12, 2, fds,
                                   past, strides),
                   TB_ERR_OUT_OF_RANGE);
  /* A second fd too small for its plane: refused before the first is
   * mapped (TB_ASSERT_STATUS checks that no handle or fd was left). */
  const int two[] = {fd, small};
  const uint64_t at_zero[] = {0, 0}, wide[] = {32, 64};
  TB_ASSERT_OK(tb_image_import(&image, w, h, TB_PIXEL_FORMAT_NV12, 2, two,
                               at_zero, strides)); /* 4 rows of 32 fit */
  tb_tensor_unref(image);
  image = TB_SENTINEL(tb_tensor);
  TB_ASSERT_STATUS(tb_image_import(&image, w, h, TB_PIXEL_FORMAT_NV12, 2, two,
                                   at_zero, wide),
                   TB_ERR_OUT_OF_RANGE);
  /* Fds of the wrong kind. */
  const int with_pipe[] = {fd, pipe_fds[0]};
  TB_ASSERT_STATUS(tb_image_import(&image, w, h, TB_PIXEL_FORMAT_NV12, 2,
                                   with_pipe, at_zero, strides),
                   TB_ERR_BAD_FD);
  const int with_closed[] = {closed, fd};
  TB_ASSERT_STATUS(tb_image_import(&image, w, h, TB_PIXEL_FORMAT_NV12, 2,
                                   with_closed, at_zero, strides),
                   TB_ERR_BAD_FD);
  /* P010's samples are 2 bytes: odd strides and offsets split them. */
  const uint64_t odd_stride[] = {33, 32}, odd_offset[] = {0, 257};
  TB_ASSERT_STATUS(tb_image_import(&image, w, h, TB_PIXEL_FORMAT_P010, 2, fds,
                                   offsets, odd_stride),
                   TB_ERR_LAYOUT);
  TB_ASSERT_STATUS(tb_image_import(&image, w, h, TB_PIXEL_FORMAT_P010, 2, fds,
                                   odd_offset, strides),
                   TB_ERR_LAYOUT);
  assert_ptr_equal(image, TB_SENTINEL(tb_tensor));
  close(pipe_fds[0]);
  close(pipe_fds[1]);
  close(small);
  close(fd);
}

/* A regular file is neither shared memory nor a dma-buf. */
static void one_row_pitch_that_overflows_is_refused(void **state) {
  (void)state;
  /* A one-row tensor never steps over its row stride, so the tensor layer
   * lets it be anything; in bytes it must still fit. */
  tb_buffer *buffer;
  TB_ASSERT_OK(tb_buffer_new(&buffer, 64, NULL));
  const int64_t shape[] = {1, 2, 4};
  const int64_t strides[] = {(INT64_C(1) << 62) - 1, 4, 1};
  tb_tensor *t;
  TB_ASSERT_OK(
      tb_tensor_from_buffer(&t, buffer, 0, TB_DTYPE_F32, 3, shape, strides));
  TB_ASSERT_STATUS(tb_image_set_format(t, TB_PIXEL_FORMAT_RGBA), TB_ERR_LAYOUT);
  assert_int_equal(tb_image_format(t), TB_PIXEL_FORMAT_INVALID);
  tb_tensor_unref(t);
  /* Planar: the plane step and the pitch alike. */
  const int64_t planar_shape[] = {3, 1, 2};
  const int64_t planar_strides[] = {2, (INT64_C(1) << 62) - 1, 1};
  TB_ASSERT_OK(tb_tensor_from_buffer(&t, buffer, 0, TB_DTYPE_F32, 3,
                                     planar_shape, planar_strides));
  TB_ASSERT_STATUS(tb_image_set_format(t, TB_PIXEL_FORMAT_PLANAR_RGB),
                   TB_ERR_LAYOUT);
  tb_tensor_unref(t);
  tb_buffer_unref(buffer);
}

static void import_refuses_regular_files(void **state) {
  (void)state;
  FILE *file = tmpfile();
  assert_non_null(file);
  int fd = fileno(file);
  assert_int_equal(ftruncate(fd, 4096), 0);
  const int fds[] = {fd};
  const uint64_t offsets[] = {0}, strides[] = {64};
  tb_tensor *image = TB_SENTINEL(tb_tensor);
  TB_ASSERT_STATUS(tb_image_import(&image, 16, 4, TB_PIXEL_FORMAT_RGBA, 1, fds,
                                   offsets, strides),
                   TB_ERR_BAD_FD);
  assert_ptr_equal(image, TB_SENTINEL(tb_tensor));
  fclose(file);
}

/* ---- images with a caller's layout (tb_image_new_with_layout) ------------ */

static uint64_t buffer_size_of(const tb_tensor *t) {
  tb_buffer *buffer = tb_tensor_buffer(t);
  uint64_t size = tb_buffer_size(buffer);
  tb_buffer_unref(buffer);
  return size;
}

/* edgefirst-tensor's image_with_stride: a packed image at a pitch wider than
 * its rows (a 4 KiB pitch for a 1000-pixel RGBA row). */
static void layout_with_a_wide_pitch(void **state) {
  (void)state;
  const uint64_t offsets[] = {0}, strides[] = {4096};
  tb_tensor *image = NULL;
  TB_ASSERT_OK(tb_image_new_with_layout(&image, 1000, 3, TB_PIXEL_FORMAT_RGBA,
                                        1, offsets, strides, TB_DTYPE_U8,
                                        NULL));
  const int64_t shape[] = {3, 1000, 4};
  assert_shape(image, 3, shape);
  assert_int_equal(tb_tensor_stride(image, 0), 4096);
  assert_int_equal(tb_image_plane_stride(image, 0), 4096);
  assert_int_equal(buffer_size_of(image), 3 * 4096);
  tb_tensor_unref(image);
  /* f32 GREY: the pitch is in bytes, the tensor's stride in elements. */
  const uint64_t float_strides[] = {256};
  TB_ASSERT_OK(tb_image_new_with_layout(&image, 10, 2, TB_PIXEL_FORMAT_GREY, 1,
                                        offsets, float_strides, TB_DTYPE_F32,
                                        NULL));
  assert_int_equal(tb_tensor_stride(image, 0), 64);
  tb_tensor_unref(image);
}

/* The chroma plane page-aligned after a gap, as some encoders want it: the
 * image tensor is plane 0, the planes are where they were asked to be, the
 * buffer ends at the chroma plane's last padded row, and writing one plane
 * leaves the other alone. */
static void layout_with_plane_offsets(void **state) {
  (void)state;
  const uint64_t offsets[] = {0, 4096}, strides[] = {128, 128};
  tb_tensor *image = NULL;
  TB_ASSERT_OK(tb_image_new_with_layout(&image, 100, 10, TB_PIXEL_FORMAT_NV12,
                                        2, offsets, strides, TB_DTYPE_U8,
                                        NULL));
  const int64_t shape[] = {10, 100};
  assert_shape(image, 2, shape);
  assert_int_equal(tb_image_plane_offset(image, 1), 4096);
  assert_int_equal(tb_image_plane_stride(image, 1), 128);
  assert_int_equal(tb_image_plane_buffer_id(image, 1),
                   tb_tensor_buffer_id(image));
  assert_int_equal(buffer_size_of(image), 4096 + 5 * 128);
  tb_tensor *uv = NULL;
  TB_ASSERT_OK(tb_image_plane(&uv, image, 1));
  const int64_t uv_shape[] = {5, 50, 2};
  assert_shape(uv, 3, uv_shape);
  assert_int_equal(tb_tensor_offset(uv), 4096);
  fill_plane(image, 1);
  uint8_t luma[10 * 100], zeros[10 * 100] = {0};
  TB_ASSERT_OK(tb_tensor_read_bytes(luma, sizeof luma, image));
  assert_memory_equal(luma, zeros, sizeof luma);
  tb_tensor_unref(uv);
  tb_tensor_unref(image);
}

/* tb_image_new is tb_image_new_with_layout with its own layout: the same
 * offsets and pitches give the same tensor, for every format. */
static void image_new_is_its_own_layout(void **state) {
  (void)state;
  for (size_t i = 0; i < NFORMATS; i++) {
    tb_dtype dtype =
        facts[i].format == TB_PIXEL_FORMAT_P010 ? TB_DTYPE_U16 : TB_DTYPE_U8;
    tb_tensor *made = NULL, *laid = NULL;
    TB_ASSERT_OK(tb_image_new(&made, 7, 5, facts[i].format, dtype, NULL));
    uint64_t offsets[TB_IMAGE_MAX_PLANES], strides[TB_IMAGE_MAX_PLANES];
    for (size_t p = 0; p < facts[i].planes; p++) {
      offsets[p] = tb_image_plane_offset(made, p);
      strides[p] = tb_image_plane_stride(made, p);
    }
    TB_ASSERT_OK(tb_image_new_with_layout(&laid, 7, 5, facts[i].format,
                                          facts[i].planes, offsets, strides,
                                          dtype, NULL));
    assert_int_equal(tb_tensor_ndim(laid), tb_tensor_ndim(made));
    for (size_t d = 0; d < tb_tensor_ndim(made); d++) {
      assert_int_equal(tb_tensor_dim(laid, d), tb_tensor_dim(made, d));
      assert_int_equal(tb_tensor_stride(laid, d), tb_tensor_stride(made, d));
    }
    assert_int_equal(buffer_size_of(laid), buffer_size_of(made));
    tb_tensor_unref(made);
    tb_tensor_unref(laid);
  }
}

/* Tight chroma rows right after the luma plane's last row: planes that
 * touch but do not overlap; the planar-RGB planes may come in any order. */
static void layout_planes_may_touch_in_any_order(void **state) {
  (void)state;
  const uint64_t offsets[] = {0, 15}, strides[] = {5, 6};
  tb_tensor *image = NULL;
  TB_ASSERT_OK(tb_image_new_with_layout(&image, 5, 3, TB_PIXEL_FORMAT_NV12, 2,
                                        offsets, strides, TB_DTYPE_U8, NULL));
  assert_int_equal(buffer_size_of(image), 27);
  tb_tensor_unref(image);
  const uint64_t bgr[] = {2 * 32, 32, 0}, pitches[] = {8, 8, 8};
  TB_ASSERT_OK(tb_image_new_with_layout(&image, 8, 4,
                                        TB_PIXEL_FORMAT_PLANAR_RGB, 3, bgr,
                                        pitches, TB_DTYPE_U8, NULL));
  assert_int_equal(tb_image_plane_offset(image, 0), 64);
  assert_int_equal(tb_tensor_ndim(image), 2); /* plane 0 alone */
  tb_tensor_unref(image);
}

typedef struct BadLayout {
  const char *what;
  uint32_t width, height;
  tb_pixel_format format;
  size_t nplanes;
  uint64_t offsets[2], strides[2];
  tb_dtype dtype;
  tb_status status;
  const char *message; /* a part the message must hold */
} BadLayout;

#define NV12 TB_PIXEL_FORMAT_NV12
#define P010 TB_PIXEL_FORMAT_P010
// clang-format off
static const BadLayout bad_layouts[] = {
    {"one plane of two", 100, 10, NV12, 1, {0, 4096}, {128, 128}, TB_DTYPE_U8, TB_ERR_INVALID_ARGUMENT, "nplanes"},
    {"no pixels", 0, 10, NV12, 2, {0, 4096}, {128, 128}, TB_DTYPE_U8, TB_ERR_SHAPE, "width"},
    {"a float nv12", 100, 10, NV12, 2, {0, 4096}, {128, 128}, TB_DTYPE_F32, TB_ERR_DTYPE, "dtype"},
    {"no such format", 100, 10, (tb_pixel_format)99, 2, {0, 4096}, {128, 128}, TB_DTYPE_U8, TB_ERR_INVALID_ARGUMENT, "format"},
    /* 99 < 100 luma samples */
    {"a narrow pitch", 100, 10, NV12, 2, {0, 4096}, {128, 99}, TB_DTYPE_U8, TB_ERR_LAYOUT, "strides[1]"},
    /* 16-bit samples: offsets and pitches in whole samples */
    {"a half-sample offset", 100, 10, P010, 2, {0, 4097}, {256, 256}, TB_DTYPE_U16, TB_ERR_LAYOUT, "offsets[1]"},
    {"a half-sample pitch", 100, 10, P010, 2, {0, 4096}, {257, 256}, TB_DTYPE_U16, TB_ERR_LAYOUT, "strides[0]"},
    /* the chroma plane starting inside the luma plane's last row, and the
       other way round */
    {"chroma inside luma", 100, 10, NV12, 2, {0, 9 * 128 + 99}, {128, 128}, TB_DTYPE_U8, TB_ERR_LAYOUT, "offsets[1]"},
    {"luma inside chroma", 100, 10, NV12, 2, {4 * 128, 0}, {128, 128}, TB_DTYPE_U8, TB_ERR_LAYOUT, "overlaps"},
    /* sums and products beyond 2^63 and 2^64 */
    {"an offset near 2^64", 100, 10, NV12, 2, {0, UINT64_MAX - 64}, {128, 128}, TB_DTYPE_U8, TB_ERR_OUT_OF_RANGE, "2^63"},
    {"a pitch near 2^62", 100, 10, NV12, 2, {0, 4096}, {UINT64_MAX / 4, 128}, TB_DTYPE_U8, TB_ERR_OUT_OF_RANGE, "2^63"},
    /* one row whose samples fit below 2^63 but whose padded row does not */
    {"a padded row past 2^63", 1000, 1, TB_PIXEL_FORMAT_RGBA, 1, {(uint64_t)INT64_MAX - 4000}, {4096}, TB_DTYPE_U8, TB_ERR_OUT_OF_RANGE, "padding"},
};
// clang-format on
#undef NV12
#undef P010

static void layout_refuses_bad_input(void **state) {
  (void)state;
  const uint64_t offsets[] = {0, 4096}, strides[] = {128, 128};
  tb_tensor *image = TB_SENTINEL(tb_tensor);
  TB_ASSERT_STATUS(tb_image_new_with_layout(NULL, 100, 10, TB_PIXEL_FORMAT_NV12,
                                            2, offsets, strides, TB_DTYPE_U8,
                                            NULL),
                   TB_ERR_INVALID_ARGUMENT);
  TB_ASSERT_STATUS(tb_image_new_with_layout(&image, 100, 10,
                                            TB_PIXEL_FORMAT_NV12, 2, NULL,
                                            strides, TB_DTYPE_U8, NULL),
                   TB_ERR_INVALID_ARGUMENT);
  assert_non_null(strstr(tb_last_error(), "offsets"));
  TB_ASSERT_STATUS(tb_image_new_with_layout(&image, 100, 10,
                                            TB_PIXEL_FORMAT_NV12, 2, offsets,
                                            NULL, TB_DTYPE_U8, NULL),
                   TB_ERR_INVALID_ARGUMENT);
  assert_non_null(strstr(tb_last_error(), "strides"));
  for (size_t i = 0; i < sizeof bad_layouts / sizeof *bad_layouts; i++) {
    const BadLayout *bad = &bad_layouts[i];
    print_message("case: %s\n", bad->what);
    TB_ASSERT_STATUS(tb_image_new_with_layout(&image, bad->width, bad->height,
                                              bad->format, bad->nplanes,
                                              bad->offsets, bad->strides,
                                              bad->dtype, NULL),
                     bad->status);
    if (strstr(tb_last_error(), bad->message) == NULL)
      fail_msg("%s: \"%s\" lacks \"%s\"", bad->what, tb_last_error(),
               bad->message);
  }
  assert_ptr_equal(image, TB_SENTINEL(tb_tensor));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      TB_TEST(one_row_pitch_that_overflows_is_refused),
      TB_TEST(every_format_states_its_facts),
      TB_TEST(invalid_formats_have_no_facts),
      TB_TEST(format_lookups_refuse_bad_input),
      TB_TEST(dtypes_per_format),
      TB_TEST(every_format_at_an_odd_size),
      TB_TEST(planes_are_aligned_and_fill_the_buffer),
      TB_TEST(tight_rows_with_alignment_one),
      TB_TEST(full_hd_and_4k_nv12),
      TB_TEST(float_images),
      TB_TEST(image_options),
      TB_TEST(image_new_refuses_bad_input),
      TB_TEST(plane_views_share_the_bytes),
      TB_TEST(plane_view_refuses_bad_input),
      TB_TEST(getters_of_non_images),
      TB_TEST(views_drop_image_metadata),
      TB_TEST(set_format_reads_the_shape),
      TB_TEST(set_format_inverts_image_new),
      TB_TEST(set_format_refuses_mismatched_tensors),
      TB_TEST(every_format_round_trips_through_fds),
      TB_TEST(single_fd_nv12_with_padded_rows),
      TB_TEST(two_fd_nv12_as_v4l2_gives_it),
      TB_TEST(single_fd_planes_with_a_gap),
      TB_TEST(dups_of_one_file_share_a_buffer),
      TB_TEST(odd_nv12_with_tight_rows),
      TB_TEST(read_only_fd_imports_read_only),
      TB_TEST(import_refuses_bad_planes),
      TB_TEST(import_refuses_regular_files),
      TB_TEST(layout_with_a_wide_pitch),
      TB_TEST(layout_with_plane_offsets),
      TB_TEST(image_new_is_its_own_layout),
      TB_TEST(layout_planes_may_touch_in_any_order),
      TB_TEST(layout_refuses_bad_input),
  };
  return TB_RUN_TESTS(tests);
}
