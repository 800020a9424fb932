/* Hand-made wire messages (see tb_forge.h). */
#include "tb_forge.h"
#include "tb_peer.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

/* Seventeen dims (one more than TB_MAX_DIMS). */
#define SEVENTEEN "[int64 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1]"
#define QUANT(text)                                                            \
  { TB_FORGE_QUANT, "@m(xadax) just " text }
#define IMAGE(text)                                                            \
  { TB_FORGE_IMAGE, "@m(uuua(utt)) just " text }

/* The fields of the valid description, in order. */
static const char *const valid_fields[TB_FORGE_FIELDS] = {
    "uint32 1",    "byte 0x54",         "@a(it) [(0, 7)]",       "uint32 2",
    "uint64 0",    "[int64 16, 4]",     "[int64 4, 1]",          "false",
    "@ms nothing", "@m(xadax) nothing", "@m(uuua(utt)) nothing", "uint64 0",
    "@at []"};

const tb_forge_case tb_forge_cases[] = {
    /* The header, read before anything else. */
    {"version 2", {{TB_FORGE_VERSION, "uint32 2"}}, TB_ERR_PROTOCOL},
    {"version 0", {{TB_FORGE_VERSION, "uint32 0"}}, TB_ERR_PROTOCOL},
    {"no version", {{TB_FORGE_VERSION, TB_FORGE_REMOVED}}, TB_ERR_PROTOCOL},
    {"a version of 8 bytes", {{TB_FORGE_VERSION, "uint64 1"}}, TB_ERR_PROTOCOL},
    {"no kind", {{TB_FORGE_KIND, TB_FORGE_REMOVED}}, TB_ERR_PROTOCOL},
    {"unknown kind 'X'", {{TB_FORGE_KIND, "byte 0x58"}}, TB_ERR_PROTOCOL},
    {"kind 0", {{TB_FORGE_KIND, "byte 0"}}, TB_ERR_PROTOCOL},
    {"a tensor body sent as a fence",
     {{TB_FORGE_KIND, "byte 0x46"}},
     TB_ERR_PROTOCOL},
    {"a tensor body sent as a release",
     {{TB_FORGE_KIND, "byte 0x52"}},
     TB_ERR_PROTOCOL},
    /* Fields missing, added or of other sizes: the whole no longer has
     * the tensor message's type in normal form. (Not the last field: an
     * empty trailing array takes no bytes, so "no forget" is the same
     * message as "forget nothing".) */
    {"no buffers", {{TB_FORGE_BUFFERS, TB_FORGE_REMOVED}}, TB_ERR_PROTOCOL},
    {"no dtype", {{TB_FORGE_DTYPE, TB_FORGE_REMOVED}}, TB_ERR_PROTOCOL},
    {"no offset", {{TB_FORGE_OFFSET, TB_FORGE_REMOVED}}, TB_ERR_PROTOCOL},
    {"no shape", {{TB_FORGE_SHAPE, TB_FORGE_REMOVED}}, TB_ERR_PROTOCOL},
    {"no strides", {{TB_FORGE_STRIDES, TB_FORGE_REMOVED}}, TB_ERR_PROTOCOL},
    {"no read-only", {{TB_FORGE_READ_ONLY, TB_FORGE_REMOVED}}, TB_ERR_PROTOCOL},
    {"no name", {{TB_FORGE_NAME, TB_FORGE_REMOVED}}, TB_ERR_PROTOCOL},
    {"no image", {{TB_FORGE_IMAGE, TB_FORGE_REMOVED}}, TB_ERR_PROTOCOL},
    {"no lease", {{TB_FORGE_LEASE, TB_FORGE_REMOVED}}, TB_ERR_PROTOCOL},
    {"a field more", {{TB_FORGE_FIELDS, "uint32 0"}}, TB_ERR_PROTOCOL},
    {"buffers of type a(itt)",
     {{TB_FORGE_BUFFERS, "@a(itt) [(0, 7, 9)]"}},
     TB_ERR_PROTOCOL},
    {"a name that is not a string",
     {{TB_FORGE_NAME, "@mu just 5"}},
     TB_ERR_PROTOCOL},
    /* Buffers and fds. */
    {"no buffer", {{TB_FORGE_BUFFERS, "@a(it) []"}}, TB_ERR_PROTOCOL},
    {"five buffers",
     {{TB_FORGE_BUFFERS,
       "@a(it) [(0, 7), (-1, 8), (-1, 9), (-1, 10), (-1, 11)]"}},
     TB_ERR_PROTOCOL},
    {"fd index beyond the fds",
     {{TB_FORGE_BUFFERS, "@a(it) [(1, 7)]"}},
     TB_ERR_PROTOCOL},
    {"fd index -2", {{TB_FORGE_BUFFERS, "@a(it) [(-2, 7)]"}}, TB_ERR_PROTOCOL},
    {"fd index INT32_MIN",
     {{TB_FORGE_BUFFERS, "@a(it) [(-2147483648, 7)]"}},
     TB_ERR_PROTOCOL},
    {"a cached buffer, yet an fd attached",
     {{TB_FORGE_BUFFERS, "@a(it) [(-1, 7)]"}},
     TB_ERR_PROTOCOL},
    {"one fd for two buffers",
     {{TB_FORGE_BUFFERS, "@a(it) [(0, 7), (0, 8)]"}},
     TB_ERR_PROTOCOL},
    /* Element type. */
    {"dtype 0", {{TB_FORGE_DTYPE, "uint32 0"}}, TB_ERR_DTYPE},
    {"dtype 14", {{TB_FORGE_DTYPE, "uint32 14"}}, TB_ERR_DTYPE},
    {"dtype UINT32_MAX", {{TB_FORGE_DTYPE, "uint32 4294967295"}}, TB_ERR_DTYPE},
    /* Shape and strides against the fd's 4096 bytes. */
    {"negative dim", {{TB_FORGE_SHAPE, "[int64 -1, 4]"}}, TB_ERR_SHAPE},
    {"INT64_MIN dim",
     {{TB_FORGE_SHAPE, "[int64 -9223372036854775808, 4]"}},
     TB_ERR_SHAPE},
    {"INT64_MAX dim",
     {{TB_FORGE_SHAPE, "[int64 9223372036854775807, 4]"}},
     TB_ERR_SHAPE},
    {"shape beyond the fd's bytes",
     {{TB_FORGE_SHAPE, "[int64 1025, 4]"}},
     TB_ERR_OUT_OF_RANGE},
    {"ndim 17",
     {{TB_FORGE_SHAPE, SEVENTEEN}, {TB_FORGE_STRIDES, SEVENTEEN}},
     TB_ERR_PROTOCOL},
    {"fewer strides than dims",
     {{TB_FORGE_STRIDES, "[int64 4]"}},
     TB_ERR_PROTOCOL},
    {"more strides than dims",
     {{TB_FORGE_STRIDES, "[int64 4, 1, 1]"}},
     TB_ERR_PROTOCOL},
    {"17 strides for 2 dims", {{TB_FORGE_STRIDES, SEVENTEEN}}, TB_ERR_PROTOCOL},
    {"strides leave the fd",
     {{TB_FORGE_STRIDES, "[int64 1000, 1]"}},
     TB_ERR_OUT_OF_RANGE},
    {"strides reach below byte 0",
     {{TB_FORGE_STRIDES, "[int64 -4, 1]"}},
     TB_ERR_OUT_OF_RANGE},
    {"strides overflow int64",
     {{TB_FORGE_STRIDES, "[int64 9223372036854775807, 1]"}},
     TB_ERR_OUT_OF_RANGE},
    {"offset past the end",
     {{TB_FORGE_OFFSET, "uint64 4033"}},
     TB_ERR_OUT_OF_RANGE},
    {"offset UINT64_MAX",
     {{TB_FORGE_OFFSET, "uint64 18446744073709551615"}},
     TB_ERR_OUT_OF_RANGE},
    {"one element at byte 4096",
     {{TB_FORGE_OFFSET, "uint64 4096"},
      {TB_FORGE_SHAPE, "[int64 1]"},
      {TB_FORGE_STRIDES, "[int64 1]"}},
     TB_ERR_OUT_OF_RANGE},
    /* Quantization, checked against the tensor. */
    {"more scales than zero points",
     {QUANT("(int64 -1, [0.5, 0.25], [int64 0])")},
     TB_ERR_PROTOCOL},
    {"no scales at all",
     {QUANT("(int64 -1, @ad [], @ax [])")},
     TB_ERR_PROTOCOL},
    {"two scales per tensor",
     {QUANT("(int64 -1, [0.5, 0.25], [int64 0, 0])")},
     TB_ERR_OUT_OF_RANGE},
    {"per-axis count not the dim",
     {QUANT("(int64 0, [0.5, 0.25], [int64 0, 0])")},
     TB_ERR_OUT_OF_RANGE},
    {"quantized axis beyond ndim",
     {QUANT("(int64 2, [0.5], [int64 0])")},
     TB_ERR_OUT_OF_RANGE},
    {"negative scale",
     {QUANT("(int64 -1, [-0.5], [int64 0])")},
     TB_ERR_INVALID_ARGUMENT},
    {"zero point beyond u8",
     {QUANT("(int64 -1, [0.5], [int64 300])")},
     TB_ERR_OUT_OF_RANGE},
    {"quantized f32",
     {{TB_FORGE_DTYPE, "uint32 12"}, QUANT("(int64 -1, [0.5], [int64 0])")},
     TB_ERR_DTYPE},
    /* Images: the planes must fit the buffers and agree with the layout. */
    {"an image whose layout is not the description's",
     {IMAGE("(uint32 6, uint32 4, uint32 16, [(uint32 0, uint64 0, "
            "uint64 4)])")},
     TB_ERR_PROTOCOL},
    {"an image plane in a buffer that is not there",
     {IMAGE("(uint32 6, uint32 4, uint32 16, [(uint32 1, uint64 0, "
            "uint64 4)])")},
     TB_ERR_PROTOCOL},
    {"five image planes",
     {IMAGE("(uint32 6, uint32 4, uint32 16, [(uint32 0, uint64 0, uint64 4), "
            "(0, 0, 4), (0, 0, 4), (0, 0, 4), (0, 0, 4)])")},
     TB_ERR_PROTOCOL},
    {"an image plane past the fd's end",
     {IMAGE("(uint32 6, uint32 4, uint32 16, [(uint32 0, uint64 4090, "
            "uint64 4)])")},
     TB_ERR_OUT_OF_RANGE},
    {"pixel format 0",
     {IMAGE("(uint32 0, uint32 4, uint32 16, [(uint32 0, uint64 0, "
            "uint64 4)])")},
     TB_ERR_INVALID_ARGUMENT},
    {"pixel format 99",
     {IMAGE("(uint32 99, uint32 4, uint32 16, [(uint32 0, uint64 0, "
            "uint64 4)])")},
     TB_ERR_INVALID_ARGUMENT},
    {"an image 0 pixels wide",
     {IMAGE("(uint32 6, uint32 0, uint32 16, [(uint32 0, uint64 0, "
            "uint64 4)])")},
     TB_ERR_SHAPE},
};
const size_t tb_forge_case_count =
    sizeof tb_forge_cases / sizeof *tb_forge_cases;

static GVariant *parse(const char *text) {
  GError *error = NULL;
  GVariant *value = g_variant_parse(NULL, text, NULL, NULL, &error);
  if (value == NULL)
    tb_peer_fail(__FILE__, __LINE__, "\"%s\": %s", text, error->message);
  return value;
}

/* Serializes a tuple of `count` fields given as text. */
static GBytes *tuple_of(const char *const *texts, size_t count) {
  GVariant *fields[TB_FORGE_FIELDS + 1] = {NULL};
  g_assert(count <= G_N_ELEMENTS(fields));
  for (size_t i = 0; i < count; i++)
    fields[i] = parse(texts[i]);
  g_autoptr(GVariant) message =
      g_variant_ref_sink(g_variant_new_tuple(fields, count));
  for (size_t i = 0; i < count; i++)
    g_variant_unref(fields[i]);
  return g_variant_get_data_as_bytes(message);
}

GBytes *tb_forge_tensor(const tb_forge_edit *edits, size_t nedits) {
  const char *texts[TB_FORGE_FIELDS + 1];
  const char *extra = NULL;
  memcpy(texts, valid_fields, sizeof valid_fields);
  for (size_t i = 0; i < nedits; i++) {
    if (edits[i].value == NULL)
      continue;
    if (edits[i].field == TB_FORGE_FIELDS)
      extra = edits[i].value;
    else
      texts[edits[i].field] = edits[i].value;
  }
  size_t count = 0;
  for (size_t i = 0; i < TB_FORGE_FIELDS; i++)
    if (strcmp(texts[i], TB_FORGE_REMOVED) != 0)
      texts[count++] = texts[i];
  if (extra != NULL)
    texts[count++] = extra;
  return tuple_of(texts, count);
}

GBytes *tb_forge_case_message(const tb_forge_case *forged) {
  return tb_forge_tensor(forged->edits, TB_FORGE_MAX_EDITS);
}

GBytes *tb_forge_fence(void) {
  static const char *const fields[] = {"uint32 1", "byte 0x46"};
  return tuple_of(fields, 2);
}

GBytes *tb_forge_release(uint64_t lease) {
  g_autofree char *lease_text =
      g_strdup_printf("uint64 %" G_GUINT64_FORMAT, lease);
  const char *const fields[] = {"uint32 1", "byte 0x52", lease_text};
  return tuple_of(fields, 3);
}

GVariant *tb_forge_open(GBytes *message) {
  gsize length;
  const uint8_t *bytes = g_bytes_get_data(message, &length);
  TB_PEER_ASSERT(length >= 5);
  const char *type = bytes[4] == 'T'   ? TB_FORGE_TENSOR_TYPE
                     : bytes[4] == 'F' ? "(uy)"
                     : bytes[4] == 'R' ? "(uyt)"
                                       : NULL;
  TB_PEER_ASSERT(type != NULL);
  GVariant *opened = g_variant_ref_sink(
      g_variant_new_from_bytes(G_VARIANT_TYPE(type), message, FALSE));
  TB_PEER_ASSERT(g_variant_is_normal_form(opened));
  return opened;
}

GBytes *tb_forge_non_normal(void) {
  g_autoptr(GBytes) valid = tb_forge_tensor(NULL, 0);
  gsize length;
  const uint8_t *bytes = g_bytes_get_data(valid, &length);
  uint8_t *changed = g_memdup2(bytes, length);
  /* From the end, where the framing offsets are; the header stays valid. */
  for (gsize i = length; i-- > 5;) {
    changed[i] ^= 0x01;
    g_autoptr(GVariant) message = g_variant_ref_sink(
        g_variant_new_from_data(G_VARIANT_TYPE(TB_FORGE_TENSOR_TYPE), changed,
                                length, FALSE, NULL, NULL));
    if (!g_variant_is_normal_form(message))
      return g_bytes_new_take(changed, length);
    changed[i] ^= 0x01;
  }
  tb_peer_fail(__FILE__, __LINE__,
               "no one-bit change of the description is out of normal form");
  return NULL;
}

/* A new SHM tensor whose element i (row-major) holds i % 100 (i % 2 for
 * bool), like tb_test_arange, but usable in a child. */
static tb_tensor *arange(tb_dtype dtype, size_t ndim, const int64_t *shape) {
  tb_alloc_options opts = TB_ALLOC_OPTIONS_INIT;
  opts.memory = TB_MEMORY_SHM;
  tb_tensor *tensor = NULL;
  TB_PEER_ASSERT_OK(tb_tensor_new(&tensor, dtype, ndim, shape, &opts));
  uint64_t numel = tb_tensor_numel(tensor);
  int64_t index[TB_MAX_DIMS] = {0};
  for (uint64_t i = 0; i < numel; i++) {
    TB_PEER_ASSERT_OK(
        tb_tensor_set_i64(tensor, ndim, index,
                          (int64_t)(i % (dtype == TB_DTYPE_BOOL ? 2 : 100))));
    for (size_t d = ndim; d-- > 0 && ++index[d] == shape[d];)
      index[d] = 0;
  }
  return tensor;
}

static tb_tensor *sliced_quantized_view(void) {
  const int64_t shape[] = {6, 8};
  tb_tensor *base = arange(TB_DTYPE_I16, 2, shape);
  tb_tensor *rows = NULL, *view = NULL;
  TB_PEER_ASSERT_OK(tb_tensor_slice(&rows, base, 0, 1, 6, 1));
  TB_PEER_ASSERT_OK(tb_tensor_slice(&view, rows, 1, 1, 8, 2));
  tb_tensor_unref(rows);
  tb_tensor_unref(base);
  TB_PEER_ASSERT_OK(tb_tensor_set_name(view, "sliced view"));
  const double scales[] = {0.5, 0.25, 0.125, 2.0};
  const int64_t zero_points[] = {-3, 0, 7, -32768};
  TB_PEER_ASSERT_OK(
      tb_tensor_set_quantization(view, 1, 4, scales, zero_points));
  return view;
}

static tb_tensor *backwards_row(void) {
  const int64_t shape[] = {10}, backwards[] = {-1};
  tb_tensor *row = arange(TB_DTYPE_U8, 1, shape);
  tb_buffer *buffer = tb_tensor_buffer(row);
  tb_tensor *reversed = NULL;
  TB_PEER_ASSERT_OK(tb_tensor_from_buffer(&reversed, buffer, 9, TB_DTYPE_U8, 1,
                                          shape, backwards));
  tb_buffer_unref(buffer);
  tb_tensor_unref(row);
  return reversed;
}

/* Fills an image's planes (each one's rows, not its padding) with bytes
 * that differ from plane to plane. */
static void fill_planes(tb_tensor *image) {
  for (size_t p = 0; p < tb_image_plane_count(image); p++) {
    tb_tensor *plane = NULL;
    TB_PEER_ASSERT_OK(tb_image_plane(&plane, image, p));
    uint64_t nbytes = tb_tensor_nbytes(plane);
    g_autofree uint8_t *bytes = g_malloc(nbytes);
    for (uint64_t i = 0; i < nbytes; i++)
      bytes[i] = (uint8_t)(i * 7 + p * 101);
    TB_PEER_ASSERT_OK(tb_tensor_write_bytes(plane, bytes, nbytes));
    tb_tensor_unref(plane);
  }
}

/* A 5x3 NV12 image, both planes in one buffer at a padded pitch. */
static tb_tensor *nv12_image(void) {
  tb_alloc_options opts = TB_ALLOC_OPTIONS_INIT;
  opts.memory = TB_MEMORY_SHM;
  opts.name = "nv12 frame";
  tb_tensor *image = NULL;
  TB_PEER_ASSERT_OK(
      tb_image_new(&image, 5, 3, TB_PIXEL_FORMAT_NV12, TB_DTYPE_U8, &opts));
  fill_planes(image);
  return image;
}

/* A 4x2 NV12 image over two memfds, as V4L2 multi-planar capture gives:
 * the luma at byte 16 of one at pitch 8, the chroma at byte 0 of the other
 * at pitch 4. */
static tb_tensor *two_fd_image(void) {
  const int fds[] = {tb_forge_memfd(32, MFD_ALLOW_SEALING),
                     tb_forge_memfd(4, MFD_ALLOW_SEALING)};
  const uint64_t offsets[] = {16, 0}, strides[] = {8, 4};
  tb_tensor *image = NULL;
  TB_PEER_ASSERT_OK(tb_image_import(&image, 4, 2, TB_PIXEL_FORMAT_NV12, 2, fds,
                                    offsets, strides));
  close(fds[0]);
  close(fds[1]);
  fill_planes(image);
  return image;
}

tb_tensor *tb_forge_example(size_t index) {
  static const int64_t row[] = {10}, empty[] = {3, 0, 2},
                       four_d[] = {2, 3, 4, 5}, matrix[] = {3, 3};
  static const double scale = 0.1;
  static const int64_t zero_point = 128;
  tb_tensor *tensor = NULL;
  switch (index) {
  case 0:
    return sliced_quantized_view();
  case 1:
    tensor = arange(TB_DTYPE_U8, 1, row);
    TB_PEER_ASSERT_OK(
        tb_tensor_set_quantization(tensor, -1, 1, &scale, &zero_point));
    return tensor;
  case 2:
    return arange(TB_DTYPE_F64, 0, NULL);
  case 3:
    return arange(TB_DTYPE_F32, 3, empty);
  case 4:
    return backwards_row();
  case 5:
    return arange(TB_DTYPE_F16, 4, four_d);
  case 6:
    return arange(TB_DTYPE_BOOL, 2, matrix);
  case 7:
    return nv12_image();
  case 8:
    return two_fd_image();
  }
  tb_peer_fail(__FILE__, __LINE__, "no example %zu", index);
  return NULL;
}

static void assert_same_elements(tb_tensor *actual, tb_tensor *expected) {
  uint64_t nbytes = tb_tensor_nbytes(expected);
  TB_PEER_ASSERT(tb_tensor_nbytes(actual) == nbytes);
  g_autofree uint8_t *bytes_actual = g_malloc(nbytes + 1);
  g_autofree uint8_t *bytes_expected = g_malloc(nbytes + 1);
  TB_PEER_ASSERT_OK(tb_tensor_read_bytes(bytes_actual, nbytes, actual));
  TB_PEER_ASSERT_OK(tb_tensor_read_bytes(bytes_expected, nbytes, expected));
  TB_PEER_ASSERT(memcmp(bytes_actual, bytes_expected, nbytes) == 0);
}

void tb_forge_assert_same_tensor(tb_tensor *actual, tb_tensor *expected) {
  TB_PEER_ASSERT(tb_tensor_dtype(actual) == tb_tensor_dtype(expected));
  size_t ndim = tb_tensor_ndim(expected);
  TB_PEER_ASSERT(tb_tensor_ndim(actual) == ndim);
  for (size_t d = 0; d < ndim; d++) {
    TB_PEER_ASSERT(tb_tensor_dim(actual, d) == tb_tensor_dim(expected, d));
    TB_PEER_ASSERT(tb_tensor_stride(actual, d) ==
                   tb_tensor_stride(expected, d));
  }
  TB_PEER_ASSERT(tb_tensor_offset(actual) == tb_tensor_offset(expected));
  const char *name = tb_tensor_name(expected);
  TB_PEER_ASSERT(name == NULL ? tb_tensor_name(actual) == NULL
                              : tb_tensor_name(actual) != NULL &&
                                    strcmp(tb_tensor_name(actual), name) == 0);
  size_t count = tb_tensor_quantization_count(expected);
  TB_PEER_ASSERT(tb_tensor_quantization_count(actual) == count);
  TB_PEER_ASSERT(tb_tensor_quantization_axis(actual) ==
                 tb_tensor_quantization_axis(expected));
  for (size_t i = 0; i < count; i++) {
    double scale_actual, scale_expected;
    int64_t zero_actual, zero_expected;
    TB_PEER_ASSERT_OK(
        tb_tensor_quantization_get(&scale_actual, &zero_actual, actual, i));
    TB_PEER_ASSERT_OK(tb_tensor_quantization_get(&scale_expected,
                                                 &zero_expected, expected, i));
    TB_PEER_ASSERT(scale_actual == scale_expected);
    TB_PEER_ASSERT(zero_actual == zero_expected);
  }
  assert_same_elements(actual, expected);
  size_t nplanes = tb_image_plane_count(expected);
  TB_PEER_ASSERT(tb_image_format(actual) == tb_image_format(expected));
  TB_PEER_ASSERT(tb_image_width(actual) == tb_image_width(expected));
  TB_PEER_ASSERT(tb_image_height(actual) == tb_image_height(expected));
  TB_PEER_ASSERT(tb_image_plane_count(actual) == nplanes);
  for (size_t p = 0; p < nplanes; p++) {
    TB_PEER_ASSERT(tb_image_plane_offset(actual, p) ==
                   tb_image_plane_offset(expected, p));
    TB_PEER_ASSERT(tb_image_plane_stride(actual, p) ==
                   tb_image_plane_stride(expected, p));
    /* Planes that share a buffer there share one here. */
    for (size_t q = 0; q < p; q++)
      TB_PEER_ASSERT((tb_image_plane_buffer_id(actual, p) ==
                      tb_image_plane_buffer_id(actual, q)) ==
                     (tb_image_plane_buffer_id(expected, p) ==
                      tb_image_plane_buffer_id(expected, q)));
    tb_tensor *plane_actual = NULL, *plane_expected = NULL;
    TB_PEER_ASSERT_OK(tb_image_plane(&plane_actual, actual, p));
    TB_PEER_ASSERT_OK(tb_image_plane(&plane_expected, expected, p));
    assert_same_elements(plane_actual, plane_expected);
    tb_tensor_unref(plane_actual);
    tb_tensor_unref(plane_expected);
  }
}

int tb_forge_memfd(uint64_t size, unsigned memfd_flags) {
  int fd = memfd_create("tb-forge", MFD_CLOEXEC | memfd_flags);
  TB_PEER_ASSERT(fd >= 0);
  g_autofree uint8_t *bytes = g_malloc(size);
  for (uint64_t i = 0; i < size; i++)
    bytes[i] = (uint8_t)i;
  TB_PEER_ASSERT(pwrite(fd, bytes, size, 0) == (ssize_t)size);
  return fd;
}

size_t tb_forge_wrong_fds(int *fds, const char **what, size_t capacity) {
  TB_PEER_ASSERT(capacity >= 8);
  size_t n = 0;
  int pair[2];
  TB_PEER_ASSERT(pipe2(pair, O_CLOEXEC) == 0);
  what[n] = "the read end of a pipe";
  fds[n++] = pair[0];
  what[n] = "the write end of a pipe";
  fds[n++] = pair[1];
  what[n] = "a regular file";
  fds[n++] = open("/proc/self/exe", O_RDONLY | O_CLOEXEC);
  TB_PEER_ASSERT(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) == 0);
  close(pair[1]);
  what[n] = "a socket";
  fds[n++] = pair[0];
  what[n] = "/dev/null";
  fds[n++] = open("/dev/null", O_RDWR | O_CLOEXEC);
  what[n] = "a directory";
  fds[n++] = open("/", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  what[n] = "a memfd made without MFD_ALLOW_SEALING";
  fds[n++] = tb_forge_memfd(TB_FORGE_FD_BYTES, 0);
  int unsealed = tb_forge_memfd(TB_FORGE_FD_BYTES, MFD_ALLOW_SEALING);
  char path[64];
  snprintf(path, sizeof path, "/proc/self/fd/%d", unsealed);
  what[n] = "a read-only fd of an unsealed memfd";
  fds[n++] = open(path, O_RDONLY | O_CLOEXEC);
  close(unsealed);
  for (size_t i = 0; i < n; i++)
    TB_PEER_ASSERT(fds[i] >= 0);
  return n;
}

void tb_forge_send(int socket, const void *bytes, size_t length, const int *fds,
                   size_t nfds) {
  struct iovec iov = {.iov_base = (void *)bytes, .iov_len = length};
  struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1};
  g_autofree char *control = NULL;
  if (nfds > 0) {
    msg.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
    control = g_malloc0(msg.msg_controllen);
    msg.msg_control = control;
    struct cmsghdr *header = CMSG_FIRSTHDR(&msg);
    header->cmsg_level = SOL_SOCKET;
    header->cmsg_type = SCM_RIGHTS;
    header->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
    memcpy(CMSG_DATA(header), fds, sizeof(int) * nfds);
  }
  if (sendmsg(socket, &msg, MSG_NOSIGNAL) != (ssize_t)length)
    tb_peer_fail(__FILE__, __LINE__, "sendmsg of %zu bytes and %zu fds: %s",
                 length, nfds, strerror(errno));
}

void tb_forge_send_bytes(int socket, GBytes *message, const int *fds,
                         size_t nfds) {
  gsize length;
  const void *bytes = g_bytes_get_data(message, &length);
  tb_forge_send(socket, bytes, length, fds, nfds);
}

GVariant *tb_forge_receive(int socket, int *fds, size_t capacity,
                           size_t *nfds) {
  struct pollfd ready = {.fd = socket, .events = POLLIN};
  TB_PEER_ASSERT(poll(&ready, 1, 5000) == 1);
  uint8_t *bytes = g_malloc(65536);
  struct iovec iov = {.iov_base = bytes, .iov_len = 65536};
  union {
    struct cmsghdr header;
    char space[CMSG_SPACE(sizeof(int) * 16)];
  } control;
  struct msghdr msg = {.msg_iov = &iov,
                       .msg_iovlen = 1,
                       .msg_control = control.space,
                       .msg_controllen = sizeof control.space};
  ssize_t received = recvmsg(socket, &msg, MSG_CMSG_CLOEXEC);
  TB_PEER_ASSERT(received > 0);
  TB_PEER_ASSERT((msg.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) == 0);
  *nfds = 0;
  for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c != NULL;
       c = CMSG_NXTHDR(&msg, c)) {
    size_t n = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    TB_PEER_ASSERT(*nfds + n <= capacity);
    memcpy(fds + *nfds, CMSG_DATA(c), n * sizeof(int));
    *nfds += n;
  }
  g_autoptr(GBytes) message = g_bytes_new_take(bytes, (gsize)received);
  return tb_forge_open(message);
}

GBytes *tb_forge_hello(uint32_t min_version, uint32_t max_version,
                       const void *extensions, size_t extensions_length) {
  uint8_t fixed[32] = {'T', 'B', 'H', 'L', 'H'};
  const uint32_t versions[] = {GUINT32_TO_LE(min_version),
                               GUINT32_TO_LE(max_version)};
  memcpy(fixed + 8, versions, sizeof versions);
  GByteArray *hello = g_byte_array_new();
  g_byte_array_append(hello, fixed, sizeof fixed);
  if (extensions_length > 0)
    g_byte_array_append(hello, extensions, (guint)extensions_length);
  return g_byte_array_free_to_bytes(hello);
}

void tb_forge_greet(int socket) {
  struct pollfd ready = {.fd = socket, .events = POLLIN};
  TB_PEER_ASSERT(poll(&ready, 1, 5000) == 1);
  uint8_t theirs[4096];
  ssize_t received = recv(socket, theirs, sizeof theirs, 0);
  TB_PEER_ASSERT(received >= 32 && memcmp(theirs, "TBHLH", 5) == 0);
  g_autoptr(GBytes) ours = tb_forge_hello(1, 1, NULL, 0);
  tb_forge_send_bytes(socket, ours, NULL, 0);
}
