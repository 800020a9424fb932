/* Images against the floors, at 1080p and 4K:
 *
 *   image new+free (SHM, NV12 and RGBA)  vs memfd_create+ftruncate+mmap
 *                                           +munmap+close of the same bytes
 *   plane view (tb_image_plane+unref)    vs a bare tb_tensor_from_buffer
 *                                           +unref of the same plane layout
 *   image import (NV12, both planes in   vs fstat+mmap+munmap of that fd
 *   one fd; tb_image_import+unref)
 *   image import (NV12, luma and chroma  vs fstat+mmap+munmap of each fd
 *   in two fds, as V4L2 gives them)
 *
 * The target: a plane view in 200 ns or less. */
#define _GNU_SOURCE
#include "harness.h"

#include <tensorbuf/tensorbuf.h>

#include <stdio.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct image_size {
  const char *label;
  uint32_t width, height;
} image_size;

static const image_size sizes[] = {{"1080p", 1920, 1080}, {"4K", 3840, 2160}};

typedef struct image_context {
  const image_size *size;
  tb_pixel_format format;
  size_t bytes; /* of the whole image */
  tb_alloc_options options;
  tb_tensor *image;  /* plane view: the image; import: its source */
  tb_buffer *buffer; /* the image's buffer, for the bare view */
  int fds[2];        /* import: the planes' fds */
  uint64_t offsets[2], strides[2];
} image_context;

static void image_new_free(void *context, uint64_t iterations) {
  image_context *c = context;
  for (uint64_t i = 0; i < iterations; i++) {
    tb_tensor *image;
    bench_check(tb_image_new(&image, c->size->width, c->size->height, c->format,
                             TB_DTYPE_U8, &c->options),
                "tb_image_new");
    tb_tensor_unref(image);
  }
}

static void memfd_floor(void *context, uint64_t iterations) {
  bench_memfd_floor(((image_context *)context)->bytes, iterations);
}

static void plane_view(void *context, uint64_t iterations) {
  image_context *c = context;
  for (uint64_t i = 0; i < iterations; i++) {
    tb_tensor *plane;
    bench_check(tb_image_plane(&plane, c->image, 1), "tb_image_plane");
    tb_tensor_unref(plane);
  }
}

/* The chroma plane as tb_image_plane lays it out, made by hand. */
static void bare_view(void *context, uint64_t iterations) {
  image_context *c = context;
  const int64_t shape[] = {c->size->height / 2, c->size->width / 2, 2};
  const int64_t strides[] = {(int64_t)c->strides[1], 2, 1};
  for (uint64_t i = 0; i < iterations; i++) {
    tb_tensor *plane;
    bench_check(tb_tensor_from_buffer(&plane, c->buffer, c->offsets[1],
                                      TB_DTYPE_U8, 3, shape, strides),
                "tb_tensor_from_buffer");
    tb_tensor_unref(plane);
  }
}

static void image_import(void *context, uint64_t iterations) {
  image_context *c = context;
  for (uint64_t i = 0; i < iterations; i++) {
    tb_tensor *image;
    bench_check(tb_image_import(&image, c->size->width, c->size->height,
                                TB_PIXEL_FORMAT_NV12, 2, c->fds, c->offsets,
                                c->strides),
                "tb_image_import");
    tb_tensor_unref(image);
  }
}

/* What an import cannot do without: learn each distinct fd's size and map
 * it. */
static void fstat_mmap_floor(void *context, uint64_t iterations) {
  image_context *c = context;
  size_t nfds = c->fds[1] == c->fds[0] ? 1 : 2;
  for (uint64_t i = 0; i < iterations; i++) {
    for (size_t f = 0; f < nfds; f++) {
      struct stat st;
      bench_check_system(fstat(c->fds[f], &st) == 0, "fstat");
      void *data = mmap(NULL, (size_t)st.st_size, PROT_READ | PROT_WRITE,
                        MAP_SHARED, c->fds[f], 0);
      bench_check_system(data != MAP_FAILED, "mmap");
      munmap(data, (size_t)st.st_size);
    }
  }
}

static void compare(const char *name, bench_batch_fn subject,
                    const char *peer_label, bench_batch_fn peer,
                    image_context *context, const char *target) {
  if (!bench_selected(name))
    return;
  bench_op subject_op = {"tensorbuf", subject, context};
  bench_op peer_op = {peer_label, peer, context};
  bench_timing timing = bench_measure(&subject_op, &peer_op);
  bench_report_time(name, timing.subject_ns, peer_label, timing.peer_ns,
                    target);
}

static image_context new_context(const image_size *size,
                                 tb_pixel_format format) {
  image_context c = {.size = size,
                     .format = format,
                     .options = TB_ALLOC_OPTIONS_INIT,
                     .fds = {-1, -1}};
  c.options.memory = TB_MEMORY_SHM;
  bench_check(tb_image_new(&c.image, size->width, size->height, format,
                           TB_DTYPE_U8, &c.options),
              "tb_image_new");
  c.buffer = tb_tensor_buffer(c.image);
  c.bytes = (size_t)tb_buffer_size(c.buffer);
  for (size_t p = 0; p < tb_image_plane_count(c.image) && p < 2; p++) {
    c.offsets[p] = tb_image_plane_offset(c.image, p);
    c.strides[p] = tb_image_plane_stride(c.image, p);
  }
  return c;
}

static void free_context(image_context *c) {
  for (size_t f = 0; f < 2; f++)
    if (c->fds[f] >= 0 && (f == 0 || c->fds[1] != c->fds[0]))
      close(c->fds[f]);
  tb_buffer_unref(c->buffer);
  tb_tensor_unref(c->image);
}

/* A memfd of `bytes` zeroes that the import can seal, as a driver's is. */
static int plane_memfd(size_t bytes) {
  int fd = memfd_create("bench-plane", MFD_CLOEXEC | MFD_ALLOW_SEALING);
  bench_check_system(fd >= 0, "memfd_create");
  bench_check_system(ftruncate(fd, (off_t)bytes) == 0, "ftruncate");
  return fd;
}

static void bench_size(const image_size *size) {
  char name[128];
  const tb_pixel_format formats[] = {TB_PIXEL_FORMAT_NV12,
                                     TB_PIXEL_FORMAT_RGBA};
  for (size_t f = 0; f < 2; f++) {
    image_context c = new_context(size, formats[f]);
    snprintf(name, sizeof name, "image %s new+free %s",
             tb_pixel_format_name(formats[f]), size->label);
    compare(name, image_new_free, "memfd+ftruncate+mmap+munmap+close",
            memfd_floor, &c, NULL);
    free_context(&c);
  }

  image_context c = new_context(size, TB_PIXEL_FORMAT_NV12);
  snprintf(name, sizeof name, "image plane view nv12 %s", size->label);
  compare(name, plane_view, "tb_tensor_from_buffer+unref", bare_view, &c,
          "<= 200 ns");

  bench_check(tb_image_export_plane_fd(&c.fds[0], c.image, 0),
              "tb_image_export_plane_fd");
  c.fds[1] = c.fds[0];
  snprintf(name, sizeof name, "image import nv12 one fd %s", size->label);
  compare(name, image_import, "fstat+mmap+munmap", fstat_mmap_floor, &c, NULL);
  close(c.fds[0]);

  /* V4L2 multi-planar: each plane in a buffer of its own, at offset 0. */
  c.fds[0] = plane_memfd(c.offsets[1]);
  c.fds[1] = plane_memfd(c.bytes - c.offsets[1]);
  uint64_t chroma_offset = c.offsets[1];
  c.offsets[1] = 0;
  snprintf(name, sizeof name, "image import nv12 two fds %s", size->label);
  compare(name, image_import, "2x fstat+mmap+munmap", fstat_mmap_floor, &c,
          NULL);
  c.offsets[1] = chroma_offset;
  free_context(&c);
}

int main(void) {
  bench_begin("bench_image");
  for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++)
    bench_size(&sizes[i]);
  return bench_end();
}
