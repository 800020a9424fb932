/* DMA-BUF memory: allocation (dma-heaps, then udmabuf), the fallback when
 * neither exists, the SYNC bracket around CPU access and its failure, and
 * dma-bufs without CPU access. Where no dma-buf can be made here, the tests
 * that need one say so and skip; the backend's own paths still run against
 * fds that are not dma-bufs (hence the static link and core headers). */
#include "tb_test.h"

#include "memory/buffer.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/magic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/vfs.h>
#include <unistd.h>

/* A heap name set before the first probe, so that the messages must name
 * it: the environment's heap is tried first. */
#define TEST_HEAP "tb-test-heap"

static const char *const heap_devices[] = {
    "/dev/dma_heap/" TEST_HEAP, "/dev/dma_heap/default_cma_region",
    "/dev/dma_heap/linux,cma",  "/dev/dma_heap/reserved",
    "/dev/dma_heap/system",     "/dev/udmabuf"};

/* Whether any DMA-BUF allocator can be opened here; prints the verdict. */
static bool dma_devices_here(void) {
  for (size_t i = 0; i < sizeof heap_devices / sizeof *heap_devices; i++) {
    int fd = open(heap_devices[i], O_RDWR | O_CLOEXEC);
    if (fd >= 0) {
      close(fd);
      return true;
    }
  }
  print_message("no /dev/dma_heap/{" TEST_HEAP ",default_cma_region,linux,cma,"
                "reserved,system} and no /dev/udmabuf can be opened here\n");
  return false;
}

static bool is_dma_buf(int fd) {
  struct statfs fs;
  return fstatfs(fd, &fs) == 0 && fs.f_type == DMA_BUF_MAGIC;
}

static void availability_follows_the_devices(void **state) {
  (void)state;
  assert_int_equal(tb_memory_available(TB_MEMORY_DMA), dma_devices_here());
}

/* Without an allocator, asking for DMA fails with a message that lists
 * every device tried; with one, it allocates a dma-buf. */
static void explicit_dma_request(void **state) {
  (void)state;
  tb_alloc_options opts = TB_ALLOC_OPTIONS_INIT;
  opts.memory = TB_MEMORY_DMA;
  opts.name = "frame";
  const int64_t shape[] = {1000};
  tb_tensor *t = TB_SENTINEL(tb_tensor);
  if (!dma_devices_here()) {
    TB_ASSERT_STATUS(tb_tensor_new(&t, TB_DTYPE_U8, 1, shape, &opts),
                     TB_ERR_UNSUPPORTED);
    for (size_t i = 0; i < sizeof heap_devices / sizeof *heap_devices; i++)
      assert_non_null(strstr(tb_last_error(), heap_devices[i]));
    TB_ASSERT_STATUS(
        tb_image_new(&t, 64, 64, TB_PIXEL_FORMAT_NV12, TB_DTYPE_U8, &opts),
        TB_ERR_UNSUPPORTED);
    assert_ptr_equal(t, TB_SENTINEL(tb_tensor));
    return;
  }
  TB_ASSERT_OK(tb_tensor_new(&t, TB_DTYPE_U8, 1, shape, &opts));
  assert_int_equal(tb_tensor_memory(t), TB_MEMORY_DMA);
  int fd = -1;
  TB_ASSERT_OK(tb_tensor_export_fd(&fd, t));
  assert_true(is_dma_buf(fd));
  /* Zeroed, writable through a synced map, and visible through the fd. */
  tb_map *map = NULL;
  TB_ASSERT_OK(tb_tensor_map(&map, t, TB_MAP_READ | TB_MAP_WRITE));
  uint8_t *bytes = tb_map_data(map);
  for (int i = 0; i < 1000; i++)
    assert_int_equal(bytes[i], 0);
  bytes[999] = 42;
  tb_map_free(map);
  tb_tensor *again = NULL;
  TB_ASSERT_OK(tb_tensor_import_fd(&again, fd, TB_DTYPE_U8, 1, shape, 0));
  assert_int_equal(tb_tensor_memory(again), TB_MEMORY_DMA);
  const int64_t last[] = {999};
  int64_t value = 0;
  TB_ASSERT_OK(tb_tensor_get_i64(&value, again, 1, last));
  assert_int_equal(value, 42);
  tb_tensor_unref(again);
  close(fd);
  tb_tensor_unref(t);
}

static void environment_forces_dma(void **state) {
  (void)state;
  setenv("TENSORBUF_MEMORY", "dma", 1);
  const int64_t shape[] = {16};
  tb_tensor *t = TB_SENTINEL(tb_tensor);
  if (dma_devices_here()) {
    TB_ASSERT_OK(tb_tensor_new(&t, TB_DTYPE_U8, 1, shape, NULL));
    assert_int_equal(tb_tensor_memory(t), TB_MEMORY_DMA);
    tb_tensor_unref(t);
  } else {
    TB_ASSERT_STATUS(tb_tensor_new(&t, TB_DTYPE_U8, 1, shape, NULL),
                     TB_ERR_UNSUPPORTED);
    assert_non_null(strstr(tb_last_error(), "/dev/udmabuf"));
    assert_ptr_equal(t, TB_SENTINEL(tb_tensor));
  }
  unsetenv("TENSORBUF_MEMORY");
}

static void auto_falls_through_to_shm(void **state) {
  (void)state;
  const int64_t shape[] = {16};
  tb_tensor *t = NULL;
  TB_ASSERT_OK(tb_tensor_new(&t, TB_DTYPE_U8, 1, shape, NULL));
  assert_int_equal(tb_tensor_memory(t),
                   dma_devices_here() ? TB_MEMORY_DMA : TB_MEMORY_SHM);
  tb_tensor_unref(t);
}

/* The SYNC ioctl on an fd that is not a dma-buf fails, naming the step. */
static void sync_needs_a_dma_buf(void **state) {
  (void)state;
  int memfd = tb_test_memfd(64, MFD_ALLOW_SEALING);
  GError *error = NULL;
  assert_false(tb_dma_buf_sync(memfd, TB_MAP_READ, TRUE, &error));
  assert_int_equal(error->code, TB_ERR_SYSTEM);
  assert_non_null(strstr(error->message, "DMA_BUF_IOCTL_SYNC START"));
  assert_int_equal(tb_core_take_errno(), ENOTTY);
  g_clear_error(&error);
  assert_false(tb_dma_buf_sync(memfd, TB_MAP_WRITE, FALSE, &error));
  assert_non_null(strstr(error->message, "DMA_BUF_IOCTL_SYNC END"));
  g_clear_error(&error);
  close(memfd);
  assert_false(tb_dma_buf_sync(memfd, TB_MAP_READ, TRUE, &error));
  assert_int_equal(tb_core_take_errno(), EBADF);
  g_clear_error(&error);
}

/* A DMA buffer over a memfd: it maps, but the SYNC that must bracket every
 * CPU access fails, and so does every access. */
static void failing_sync_fails_the_map(void **state) {
  (void)state;
  int memfd = tb_test_memfd(4096, MFD_ALLOW_SEALING);
  const TbFdInfo info = {
      .backend = &tb_backend_dma, .size = 4096, .size_final = TRUE};
  GError *error = NULL;
  tb_buffer *buffer = tb_buffer_adopt_fd(memfd, &info, &error);
  assert_null(error);
  close(memfd);
  assert_int_equal(tb_buffer_memory(buffer), TB_MEMORY_DMA);
  const int64_t shape[] = {4096};
  tb_tensor *t = NULL;
  TB_ASSERT_OK(
      tb_tensor_from_buffer(&t, buffer, 0, TB_DTYPE_U8, 1, shape, NULL));
  tb_buffer_unref(buffer);
  tb_map *map = TB_SENTINEL(tb_map);
  TB_ASSERT_STATUS(tb_tensor_map(&map, t, TB_MAP_READ), TB_ERR_SYSTEM);
  assert_int_equal(tb_last_errno(), ENOTTY);
  assert_non_null(strstr(tb_last_error(), "DMA_BUF_IOCTL_SYNC START"));
  TB_ASSERT_STATUS(tb_tensor_map(&map, t, TB_MAP_WRITE), TB_ERR_SYSTEM);
  assert_ptr_equal(map, TB_SENTINEL(tb_map));
  double value = -1;
  const int64_t index[] = {0};
  TB_ASSERT_STATUS(tb_tensor_get_f64(&value, t, 1, index), TB_ERR_SYSTEM);
  TB_ASSERT_F64_EQUAL(value, -1);
  uint8_t bytes[4096];
  TB_ASSERT_STATUS(tb_tensor_read_bytes(bytes, sizeof bytes, t), TB_ERR_SYSTEM);
  /* Sharing needs no CPU access: the fd still exports. */
  int fd = -1;
  TB_ASSERT_OK(tb_tensor_export_fd(&fd, t));
  close(fd);
  tb_tensor_unref(t);
}

/* Device memory whose exporter refuses mmap (a pipe stands in for it here:
 * mmap refuses it the same way) imports without a CPU address, exports its
 * fd again, and refuses every CPU access with TB_ERR_UNSUPPORTED. */
static void dma_buf_without_cpu_access(void **state) {
  (void)state;
  int pipe_fds[2];
  assert_int_equal(pipe2(pipe_fds, O_CLOEXEC), 0);
  const TbFdInfo info = {
      .backend = &tb_backend_dma, .size = 1 << 20, .size_final = TRUE};
  GError *error = NULL;
  tb_buffer *buffer = tb_buffer_adopt_fd(pipe_fds[0], &info, &error);
  assert_null(error);
  const int64_t shape[] = {1 << 20};
  tb_tensor *t = NULL;
  TB_ASSERT_OK(
      tb_tensor_from_buffer(&t, buffer, 0, TB_DTYPE_U8, 1, shape, NULL));
  tb_buffer_unref(buffer);
  assert_int_equal(tb_tensor_memory(t), TB_MEMORY_DMA);
  tb_map *map = TB_SENTINEL(tb_map);
  TB_ASSERT_STATUS(tb_tensor_map(&map, t, TB_MAP_READ), TB_ERR_UNSUPPORTED);
  assert_ptr_equal(map, TB_SENTINEL(tb_map));
  const int64_t index[] = {0};
  TB_ASSERT_STATUS(tb_tensor_set_f64(t, 1, index, 1.0), TB_ERR_UNSUPPORTED);
  int fd = -1;
  TB_ASSERT_OK(tb_tensor_export_fd(&fd, t));
  close(fd);
  tb_tensor_unref(t);
  close(pipe_fds[0]);
  close(pipe_fds[1]);
}

static void foreign_dma_buf_import(void **state) {
  (void)state;
  int fd = dma_devices_here() ? tb_test_dma_buf(8192, 0) : -1;
  if (fd < 0) {
    TB_SKIP("no dma-buf can be made in this process");
  }
  const int64_t too_big[] = {8193}, shape[] = {2, 4096};
  tb_tensor *t = TB_SENTINEL(tb_tensor);
  TB_ASSERT_STATUS(tb_tensor_import_fd(&t, fd, TB_DTYPE_U8, 1, too_big, 0),
                   TB_ERR_OUT_OF_RANGE);
  TB_ASSERT_OK(tb_tensor_import_fd(&t, fd, TB_DTYPE_U8, 2, shape, 0));
  assert_int_equal(tb_tensor_memory(t), TB_MEMORY_DMA);
  const int64_t index[] = {1, 2047}; /* byte 6143: the chroma's last below */
  TB_ASSERT_OK(tb_tensor_set_i64(t, 2, index, 7));
  int again = -1;
  TB_ASSERT_OK(tb_tensor_export_fd(&again, t));
  assert_true(is_dma_buf(again));
  /* Planes of an image in one dma-buf. */
  const int fds[] = {fd, again};
  const uint64_t offsets[] = {0, 4096}, strides[] = {64, 64};
  tb_tensor *image = NULL;
  TB_ASSERT_OK(tb_image_import(&image, 64, 64, TB_PIXEL_FORMAT_NV12, 2, fds,
                               offsets, strides));
  assert_int_equal(tb_tensor_memory(image), TB_MEMORY_DMA);
  assert_int_equal(tb_image_plane_buffer_id(image, 1),
                   tb_tensor_buffer_id(image));
  tb_tensor *chroma = NULL;
  TB_ASSERT_OK(tb_image_plane(&chroma, image, 1));
  const int64_t last[] = {31, 31, 1};
  int64_t value = 0;
  TB_ASSERT_OK(tb_tensor_get_i64(&value, chroma, 3, last));
  assert_int_equal(value, 7);
  tb_tensor_unref(chroma);
  tb_tensor_unref(image);
  close(again);
  tb_tensor_unref(t);
  close(fd);
}

int main(void) {
  /* Before anything probes DMA memory: the probe reads it once. */
  setenv("TENSORBUF_DMA_HEAP", TEST_HEAP, 1);
  unsetenv("TENSORBUF_MEMORY");
  const struct CMUnitTest tests[] = {
      TB_TEST(availability_follows_the_devices),
      TB_TEST(explicit_dma_request),
      TB_TEST(environment_forces_dma),
      TB_TEST(auto_falls_through_to_shm),
      TB_TEST(sync_needs_a_dma_buf),
      TB_TEST(failing_sync_fails_the_map),
      TB_TEST(dma_buf_without_cpu_access),
      TB_TEST(foreign_dma_buf_import),
  };
  return TB_RUN_TESTS(tests);
}
