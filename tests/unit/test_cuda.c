/* CUDA paths without a driver, and tb_tensor_copy between host kinds.
 * TENSORBUF_LIBCUDA points the loader at a library that does not exist, so
 * these run the same on a machine with a GPU: every CUDA call must refuse
 * with TB_ERR_UNSUPPORTED naming what is missing, and leave nothing behind. */
#include "tb_forge.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#define MISSING "/nonexistent/libcuda-for-tensorbuf-tests.so.1"

static void cuda_kinds_are_unavailable_and_say_why(void **state) {
  (void)state;
  assert_false(tb_memory_available(TB_MEMORY_CUDA));
  assert_false(tb_memory_available(TB_MEMORY_CUDA_HOST));
  const tb_memory kinds[] = {TB_MEMORY_CUDA, TB_MEMORY_CUDA_HOST};
  for (size_t i = 0; i < 2; i++) {
    tb_alloc_options opts = tb_test_options(kinds[i]);
    opts.device = 3;
    const int64_t shape[] = {4};
    tb_tensor *tensor = TB_SENTINEL(tb_tensor);
    TB_ASSERT_STATUS(tb_tensor_new(&tensor, TB_DTYPE_F32, 1, shape, &opts),
                     TB_ERR_UNSUPPORTED);
    assert_non_null(strstr(tb_last_error(), MISSING));
    assert_ptr_equal(tensor, TB_SENTINEL(tb_tensor));
  }
}

static void cuda_calls_refuse_other_memory(void **state) {
  (void)state;
  const int64_t shape[] = {4};
  tb_tensor *shm = tb_test_arange(TB_DTYPE_F32, 1, shape, TB_MEMORY_SHM);
  uint64_t address = 7;
  uint32_t device = 7;
  TB_ASSERT_STATUS(tb_tensor_device_ptr(&address, shm), TB_ERR_UNSUPPORTED);
  TB_ASSERT_STATUS(tb_tensor_cuda_device(&device, shm), TB_ERR_UNSUPPORTED);
  assert_int_equal(address, 7);
  assert_int_equal(device, 7);
  tb_tensor *dma = TB_SENTINEL(tb_tensor);
  TB_ASSERT_STATUS(tb_tensor_cuda_dma_buf(&dma, shm), TB_ERR_UNSUPPORTED);
  assert_ptr_equal(dma, TB_SENTINEL(tb_tensor));
  /* Nothing queued on non-CUDA memory: nothing to wait for. */
  TB_ASSERT_OK(tb_tensor_cuda_wait(shm, 1));
  TB_ASSERT_STATUS(tb_tensor_device_ptr(NULL, shm), TB_ERR_INVALID_ARGUMENT);
  TB_ASSERT_STATUS(tb_tensor_cuda_wait(NULL, 0), TB_ERR_INVALID_ARGUMENT);
  tb_tensor_unref(shm);
}

static void cuda_import_checks_arguments_then_needs_the_driver(void **state) {
  (void)state;
  const int64_t shape[] = {4};
  tb_tensor *tensor = TB_SENTINEL(tb_tensor);
  TB_ASSERT_STATUS(tb_tensor_import_cuda_fd(&tensor, -1, TB_MEMORY_CUDA, 0,
                                            TB_DTYPE_F32, 1, shape, 0),
                   TB_ERR_INVALID_ARGUMENT);
  TB_ASSERT_STATUS(tb_tensor_import_cuda_fd(NULL, 0, TB_MEMORY_CUDA, 0,
                                            TB_DTYPE_F32, 1, shape, 0),
                   TB_ERR_INVALID_ARGUMENT);
  TB_ASSERT_STATUS(tb_tensor_import_cuda_fd(&tensor, 0, TB_MEMORY_CUDA, 0,
                                            TB_DTYPE_INVALID, 1, shape, 0),
                   TB_ERR_DTYPE);
  TB_ASSERT_STATUS(tb_tensor_import_cuda_fd(&tensor, 0, TB_MEMORY_CUDA, 0,
                                            TB_DTYPE_F32, 1, shape, 0),
                   TB_ERR_UNSUPPORTED);
  assert_non_null(strstr(tb_last_error(), MISSING));
  assert_ptr_equal(tensor, TB_SENTINEL(tb_tensor));
}

static void fence_cuda_calls_check_arguments_then_need_the_driver(
    void **state) {
  (void)state;
  TB_ASSERT_STATUS(tb_fence_cuda_signal(NULL, 1, 0, 0),
                   TB_ERR_INVALID_ARGUMENT);
  TB_ASSERT_STATUS(tb_fence_cuda_wait(NULL, 1, 0, 0), TB_ERR_INVALID_ARGUMENT);
  tb_fence *fence = NULL;
  TB_ASSERT_OK(tb_fence_new(&fence, 5));
  /* A timeline never goes back, from a stream either: refused before the
   * driver is looked for. */
  TB_ASSERT_STATUS(tb_fence_cuda_signal(fence, 5, 0, 0), TB_ERR_OUT_OF_RANGE);
  TB_ASSERT_STATUS(tb_fence_cuda_signal(fence, 6, 0, 0), TB_ERR_UNSUPPORTED);
  assert_non_null(strstr(tb_last_error(), MISSING));
  TB_ASSERT_STATUS(tb_fence_cuda_wait(fence, 6, 0, 7), TB_ERR_UNSUPPORTED);
  assert_non_null(strstr(tb_last_error(), MISSING));
  assert_int_equal(tb_fence_value(fence), 5);
  /* A read-only fence can wait (here: would, with a driver), never signal. */
  int fd = -1;
  TB_ASSERT_OK(tb_fence_export_fd(&fd, fence));
  char path[64];
  snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
  int read_only_fd = open(path, O_RDONLY | O_CLOEXEC);
  assert_true(read_only_fd >= 0);
  tb_fence *waiter = NULL;
  TB_ASSERT_OK(tb_fence_import_fd(&waiter, read_only_fd));
  TB_ASSERT_STATUS(tb_fence_cuda_signal(waiter, 6, 0, 0), TB_ERR_READ_ONLY);
  TB_ASSERT_STATUS(tb_fence_cuda_wait(waiter, 6, 0, 0), TB_ERR_UNSUPPORTED);
  /* The refusals left the fence working on the CPU. */
  TB_ASSERT_OK(tb_fence_signal(fence, 6));
  TB_ASSERT_OK(tb_fence_wait(waiter, 6, 0));
  close(read_only_fd);
  close(fd);
  tb_fence_unref(waiter);
  tb_fence_unref(fence);
}

static void copy_between_host_kinds_follows_strides(void **state) {
  (void)state;
  const int64_t shape[] = {3, 4}, transposed[] = {4, 3};
  tb_tensor *src = tb_test_arange(TB_DTYPE_I32, 2, shape, TB_MEMORY_HEAP);
  tb_tensor *dst = tb_test_arange(TB_DTYPE_I32, 2, transposed, TB_MEMORY_SHM);
  /* dst viewed transposed: dst[j][i] = src[i][j]. */
  tb_buffer *buffer = tb_tensor_buffer(dst);
  const int64_t strides[] = {1, 3};
  tb_tensor *view = NULL;
  TB_ASSERT_OK(tb_tensor_from_buffer(&view, buffer, 0, TB_DTYPE_I32, 2, shape,
                                     strides));
  TB_ASSERT_OK(tb_tensor_copy(view, src, 0));
  for (int64_t i = 0; i < 3; i++) {
    for (int64_t j = 0; j < 4; j++) {
      int64_t got = -1;
      TB_ASSERT_OK(tb_tensor_get_i64(&got, dst, 2, (int64_t[]){j, i}));
      assert_int_equal(got, i * 4 + j);
    }
  }
  /* A strided source (every other column) into a contiguous tensor. */
  tb_tensor *columns = NULL, *packed = NULL;
  TB_ASSERT_OK(tb_tensor_slice(&columns, src, 1, 0, 4, 2));
  const int64_t half[] = {3, 2};
  tb_alloc_options opts = tb_test_options(TB_MEMORY_HEAP);
  TB_ASSERT_OK(tb_tensor_new(&packed, TB_DTYPE_I32, 2, half, &opts));
  TB_ASSERT_OK(tb_tensor_copy(packed, columns, 0));
  int64_t got = -1;
  TB_ASSERT_OK(tb_tensor_get_i64(&got, packed, 2, (int64_t[]){2, 1}));
  assert_int_equal(got, 2 * 4 + 2);
  tb_tensor_unref(columns);
  tb_tensor_unref(packed);
  tb_tensor_unref(view);
  tb_buffer_unref(buffer);
  tb_tensor_unref(dst);
  tb_tensor_unref(src);
}

static void copy_refuses_mismatches(void **state) {
  (void)state;
  const int64_t shape[] = {4}, other[] = {5};
  tb_tensor *a = tb_test_arange(TB_DTYPE_F32, 1, shape, TB_MEMORY_HEAP);
  tb_tensor *b = tb_test_arange(TB_DTYPE_I32, 1, shape, TB_MEMORY_HEAP);
  tb_tensor *c = tb_test_arange(TB_DTYPE_F32, 1, other, TB_MEMORY_HEAP);
  TB_ASSERT_STATUS(tb_tensor_copy(a, b, 0), TB_ERR_DTYPE);
  TB_ASSERT_STATUS(tb_tensor_copy(a, c, 0), TB_ERR_SHAPE);
  TB_ASSERT_STATUS(tb_tensor_copy(a, a, 0), TB_ERR_INVALID_ARGUMENT);
  TB_ASSERT_STATUS(tb_tensor_copy(NULL, a, 0), TB_ERR_INVALID_ARGUMENT);
  TB_ASSERT_STATUS(tb_tensor_copy(a, NULL, 0), TB_ERR_INVALID_ARGUMENT);
  float data[4] = {0};
  tb_buffer *frozen = NULL;
  TB_ASSERT_OK(tb_buffer_wrap(&frozen, data, sizeof data, TB_BUFFER_READ_ONLY,
                              NULL, NULL));
  tb_tensor *read_only = NULL;
  TB_ASSERT_OK(tb_tensor_from_buffer(&read_only, frozen, 0, TB_DTYPE_F32, 1,
                                     shape, NULL));
  TB_ASSERT_STATUS(tb_tensor_copy(read_only, a, 0), TB_ERR_READ_ONLY);
  assert_true(data[3] == 0.0f);
  tb_tensor_unref(read_only);
  tb_buffer_unref(frozen);
  tb_tensor_unref(a);
  tb_tensor_unref(b);
  tb_tensor_unref(c);
}

static void alloc_options_version_1_still_allocates(void **state) {
  (void)state;
  tb_alloc_options opts;
  memset(&opts, 0x5a, sizeof opts);
  TB_ASSERT_OK(tb_alloc_options_init(&opts, 1));
  assert_int_equal(opts.version, 1);
  assert_int_equal(opts.device, 0x5a5a5a5a); /* not part of version 1 */
  tb_buffer *buffer = NULL;
  TB_ASSERT_OK(tb_buffer_new(&buffer, 16, &opts));
  tb_buffer_unref(buffer);
  TB_ASSERT_OK(tb_alloc_options_init(&opts, 2));
  assert_int_equal(opts.device, 0);
}

/* ---- descriptions that name CUDA memory (wire version 3) ----------------
 * The forged description's 16x4 u8 tensor over a 4096-byte memfd, as
 * version 3 writes it: buffer entries (fd index, id, memory, device, bytes).
 * A receiver without a driver checks such an entry, then refuses to import
 * it: it must never take the fd for shared memory. */

typedef struct wire_entry_case {
  const char *entry; /* the buffer list, a(ityut) in GVariant text */
  tb_status expected;
  const char *says; /* in tb_last_error() */
} wire_entry_case;

static const wire_entry_case wire_entry_cases[] = {
    /* Kinds this library imports, on a machine without a driver. */
    {"[(0, 7, 4, 0, 4096)]", TB_ERR_UNSUPPORTED, "buffer 0 is cuda memory"},
    {"[(0, 7, 5, 0, 4096)]", TB_ERR_UNSUPPORTED,
     "buffer 0 is cuda_host memory"},
    {"[(0, 7, 4, 3, 4096)]", TB_ERR_UNSUPPORTED, MISSING},
    /* Kinds it does not import from a description. */
    {"[(0, 7, 0, 0, 4096)]", TB_ERR_PROTOCOL, "memory kind 0"},
    {"[(0, 7, 1, 0, 4096)]", TB_ERR_PROTOCOL, "memory kind 1"},
    {"[(0, 7, 7, 0, 4096)]", TB_ERR_PROTOCOL, "memory kind 7"},
    {"[(0, 7, 255, 0, 4096)]", TB_ERR_PROTOCOL, "memory kind 255"},
    /* Devices: none for host memory, an int ordinal for CUDA. */
    {"[(0, 7, 2, 1, 4096)]", TB_ERR_PROTOCOL, "shm memory on device 1"},
    {"[(0, 7, 4, 2147483648, 4096)]", TB_ERR_PROTOCOL,
     "device 2147483648, which is no CUDA device ordinal"},
    {"[(0, 7, 5, 4294967295, 4096)]", TB_ERR_PROTOCOL,
     "device 4294967295, which is no CUDA device ordinal"},
    /* The fd is not what the entry says, or smaller. */
    {"[(0, 7, 3, 0, 4096)]", TB_ERR_PROTOCOL, "said to be dma memory"},
    {"[(0, 7, 2, 0, 4097)]", TB_ERR_OUT_OF_RANGE, "4097"},
    /* Checked before anything is imported: a CUDA entry with a bad fd
     * index is a protocol error, not a missing driver. */
    {"[(1, 7, 4, 0, 4096)]", TB_ERR_PROTOCOL, "names fd 1"},
    {"[(0, 7, 4, 0, 4096), (-1, 8, 4, 2147483648, 4096)]", TB_ERR_PROTOCOL,
     "buffer 1"},
};

static GBytes *version_3_tensor(const char *entries) {
  g_autofree char *buffers = g_strdup_printf("@a(ityut) %s", entries);
  const tb_forge_edit edits[] = {{TB_FORGE_VERSION, "uint32 3"},
                                 {TB_FORGE_BUFFERS, buffers},
                                 {TB_FORGE_FIELDS, "@a(qay) []"}};
  return tb_forge_tensor(edits, G_N_ELEMENTS(edits));
}

static void descriptions_naming_cuda_memory_are_checked_then_refused(
    void **state) {
  (void)state;
  int memfd = tb_forge_memfd(TB_FORGE_FD_BYTES, MFD_ALLOW_SEALING);
  /* The same description naming SHM imports: only the entry differs. */
  g_autoptr(GBytes) shm = version_3_tensor("[(0, 7, 2, 0, 4096)]");
  gsize length;
  const uint8_t *bytes = g_bytes_get_data(shm, &length);
  tb_tensor *tensor = NULL;
  TB_ASSERT_OK(tb_tensor_import(&tensor, bytes, length, &memfd, 1));
  assert_int_equal(tb_tensor_memory(tensor), TB_MEMORY_SHM);
  assert_int_equal(tb_tensor_dim(tensor, 0), 16);
  tb_tensor_unref(tensor);
  for (size_t i = 0; i < G_N_ELEMENTS(wire_entry_cases); i++) {
    const wire_entry_case *c = &wire_entry_cases[i];
    print_message("buffers %s\n", c->entry);
    g_autoptr(GBytes) forged = version_3_tensor(c->entry);
    bytes = g_bytes_get_data(forged, &length);
    tensor = TB_SENTINEL(tb_tensor);
    TB_ASSERT_STATUS(tb_tensor_import(&tensor, bytes, length, &memfd, 1),
                     c->expected);
    assert_ptr_equal(tensor, TB_SENTINEL(tb_tensor));
    if (strstr(tb_last_error(), c->says) == NULL)
      fail_msg("\"%s\" does not say \"%s\"", tb_last_error(), c->says);
  }
  close(memfd);
}

/* Version 3's entries in a version-2 message, or version 2's in a version-3
 * one, are not the message's type. */
static void entries_must_be_their_versions(void **state) {
  (void)state;
  int memfd = tb_forge_memfd(TB_FORGE_FD_BYTES, MFD_ALLOW_SEALING);
  const tb_forge_edit old_entries[] = {{TB_FORGE_VERSION, "uint32 3"},
                                       {TB_FORGE_FIELDS, "@a(qay) []"}},
                      new_entries[] = {
                          {TB_FORGE_VERSION, "uint32 2"},
                          {TB_FORGE_BUFFERS, "@a(ityut) [(0, 7, 2, 0, 4096)]"},
                          {TB_FORGE_FIELDS, "@a(qay) []"}};
  g_autoptr(GBytes) a = tb_forge_tensor(old_entries, 2);
  g_autoptr(GBytes) b = tb_forge_tensor(new_entries, 3);
  GBytes *forged[] = {a, b};
  for (size_t i = 0; i < 2; i++) {
    gsize length;
    const uint8_t *bytes = g_bytes_get_data(forged[i], &length);
    tb_tensor *tensor = TB_SENTINEL(tb_tensor);
    TB_ASSERT_STATUS(tb_tensor_import(&tensor, bytes, length, &memfd, 1),
                     TB_ERR_PROTOCOL);
  }
  close(memfd);
}

/* Host memory is exported as version 1, which every release reads (CUDA
 * memory needs version 3: tests/gpu/cuda_channel.c). */
static void host_memory_exports_as_version_1(void **state) {
  (void)state;
  const int64_t shape[] = {4};
  tb_tensor *shm = tb_test_arange(TB_DTYPE_F32, 1, shape, TB_MEMORY_SHM);
  uint8_t descriptor[512];
  size_t length = 0, nfds = TB_DESCRIPTOR_MAX_FDS;
  int fds[TB_DESCRIPTOR_MAX_FDS];
  TB_ASSERT_OK(tb_tensor_export(descriptor, sizeof descriptor, &length, fds,
                                &nfds, shm, 0));
  assert_int_equal(nfds, 1);
  assert_memory_equal(descriptor, "\x01\x00\x00\x00T", 5);
  close(fds[0]);
  tb_tensor_unref(shm);
}

/* Over a channel that speaks version 3: a peer's tensor in CUDA memory is
 * refused by a receiver without a driver, its fd closed, and the channel
 * goes on with the next message. */
static void channel_refuses_cuda_memory_without_a_driver(void **state) {
  (void)state;
  int pair[2];
  assert_int_equal(
      socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, pair), 0);
  g_autoptr(GBytes) hello = tb_forge_hello(1, 3, NULL, 0);
  tb_forge_send_bytes(pair[1], hello, NULL, 0);
  tb_channel *channel = NULL;
  TB_ASSERT_OK(tb_channel_from_fd(&channel, pair[0]));
  close(pair[0]);
  int memfd = tb_forge_memfd(TB_FORGE_FD_BYTES, MFD_ALLOW_SEALING);
  g_autoptr(GBytes) cuda = version_3_tensor("[(0, 7, 4, 0, 4096)]");
  g_autoptr(GBytes) shm = version_3_tensor("[(0, 8, 2, 0, 4096)]");
  tb_forge_send_bytes(pair[1], cuda, &memfd, 1);
  tb_forge_send_bytes(pair[1], shm, &memfd, 1);
  close(memfd);
  tb_tensor *tensor = TB_SENTINEL(tb_tensor);
  TB_ASSERT_STATUS(tb_channel_recv(&tensor, channel, 5000),
                   TB_ERR_UNSUPPORTED);
  assert_non_null(strstr(tb_last_error(), MISSING));
  assert_ptr_equal(tensor, TB_SENTINEL(tb_tensor));
  TB_ASSERT_OK(tb_channel_recv(&tensor, channel, 5000));
  assert_int_equal(tb_tensor_memory(tensor), TB_MEMORY_SHM);
  tb_tensor_unref(tensor);
  tb_channel_unref(channel);
  close(pair[1]);
}

int main(void) {
  setenv("TENSORBUF_LIBCUDA", MISSING, 1);
  const struct CMUnitTest tests[] = {
      TB_TEST(cuda_kinds_are_unavailable_and_say_why),
      TB_TEST(cuda_calls_refuse_other_memory),
      TB_TEST(cuda_import_checks_arguments_then_needs_the_driver),
      TB_TEST(fence_cuda_calls_check_arguments_then_need_the_driver),
      TB_TEST(copy_between_host_kinds_follows_strides),
      TB_TEST(copy_refuses_mismatches),
      TB_TEST(alloc_options_version_1_still_allocates),
      TB_TEST(descriptions_naming_cuda_memory_are_checked_then_refused),
      TB_TEST(entries_must_be_their_versions),
      TB_TEST(host_memory_exports_as_version_1),
      TB_TEST(channel_refuses_cuda_memory_without_a_driver),
  };
  return TB_RUN_TESTS(tests);
}
