/* Sharing by fd: export and import in one process, and every kind of
 * foreign fd a caller might pass. */
#include "tb_test.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

static tb_tensor *shm_arange(tb_dtype dtype, size_t ndim,
                             const int64_t *shape) {
  return tb_test_arange(dtype, ndim, shape, TB_MEMORY_SHM);
}

static bool fd_is_open(int fd) { return fcntl(fd, F_GETFD) != -1; }

static int export_fd(const tb_tensor *t) {
  int fd = -1;
  TB_ASSERT_OK(tb_tensor_export_fd(&fd, t));
  assert_true(fd >= 0);
  return fd;
}

static int64_t i64_at(tb_tensor *t, size_t nindex, const int64_t *index) {
  int64_t value = -1;
  TB_ASSERT_OK(tb_tensor_get_i64(&value, t, nindex, index));
  return value;
}

/* Asserts that importing `fd` fails with `expected` and leaves the fd as it
 * was (open or closed, same seals) and the out-parameter unwritten. */
static void assert_import_refused(int fd, tb_dtype dtype, size_t ndim,
                                  const int64_t *shape, uint64_t offset,
                                  tb_status expected) {
  bool was_open = fd_is_open(fd);
  int seals = fcntl(fd, F_GET_SEALS);
  tb_tensor *t = TB_SENTINEL(tb_tensor);
  TB_ASSERT_STATUS(tb_tensor_import_fd(&t, fd, dtype, ndim, shape, offset),
                   expected);
  assert_ptr_equal(t, TB_SENTINEL(tb_tensor));
  assert_int_equal(fd_is_open(fd), was_open);
  assert_int_equal(fcntl(fd, F_GET_SEALS), seals);
}

static void export_import_round_trip(void **state) {
  (void)state;
  const int64_t shape[] = {4, 4};
  tb_tensor *source = shm_arange(TB_DTYPE_U32, 2, shape);
  int fd = export_fd(source);
  assert_true(fcntl(fd, F_GETFD) & FD_CLOEXEC);
  int seals = fcntl(fd, F_GET_SEALS);
  assert_true(seals & F_SEAL_SHRINK);
  assert_true(seals & F_SEAL_GROW);
  struct stat st;
  assert_int_equal(fstat(fd, &st), 0);
  assert_int_equal(st.st_size, 64);

  tb_tensor *imported = NULL;
  TB_ASSERT_OK(tb_tensor_import_fd(&imported, fd, TB_DTYPE_U32, 2, shape,
                                   tb_tensor_offset(source)));
  /* The import has its own fd: closing the caller's changes nothing. */
  assert_true(fd_is_open(fd));
  close(fd);
  assert_int_equal(tb_tensor_memory(imported), TB_MEMORY_SHM);
  assert_false(tb_tensor_read_only(imported));
  assert_true(tb_tensor_buffer_id(imported) != tb_tensor_buffer_id(source));
  uint32_t a[16], b[16];
  TB_ASSERT_OK(tb_tensor_read_bytes(a, sizeof a, source));
  TB_ASSERT_OK(tb_tensor_read_bytes(b, sizeof b, imported));
  assert_memory_equal(a, b, sizeof a);

  /* Data is visible both ways. */
  const int64_t at[] = {2, 1};
  TB_ASSERT_OK(tb_tensor_set_i64(imported, 2, at, 123456));
  assert_int_equal(i64_at(source, 2, at), 123456);
  TB_ASSERT_OK(tb_tensor_set_i64(source, 2, at, 654321));
  assert_int_equal(i64_at(imported, 2, at), 654321);

  /* An imported tensor exports again. */
  int again = export_fd(imported);
  close(again);
  tb_tensor_unref(imported);
  /* The memory lives on in the source. */
  assert_int_equal(i64_at(source, 2, at), 654321);
  tb_tensor_unref(source);
}

static void exported_memfd_carries_the_name(void **state) {
  (void)state;
  tb_alloc_options opts = tb_test_options(TB_MEMORY_SHM);
  opts.name = "camera-0";
  const int64_t shape[] = {8};
  tb_tensor *t;
  TB_ASSERT_OK(tb_tensor_new(&t, TB_DTYPE_U8, 1, shape, &opts));
  int fd = export_fd(t);
  char path[64], target[256];
  snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
  ssize_t length = readlink(path, target, sizeof target - 1);
  close(fd);
  tb_tensor_unref(t);
  assert_true(length > 0);
  target[length] = '\0';
  assert_non_null(strstr(target, "memfd:camera-0"));
}

static void long_names_are_cut_for_the_memfd(void **state) {
  (void)state;
  /* memfd_create refuses names over 249 bytes; the tensor keeps its own. */
  char name[400];
  memset(name, 'n', sizeof name - 1);
  name[sizeof name - 1] = '\0';
  tb_alloc_options opts = tb_test_options(TB_MEMORY_SHM);
  opts.name = name;
  const int64_t shape[] = {8};
  tb_tensor *t;
  TB_ASSERT_OK(tb_tensor_new(&t, TB_DTYPE_U8, 1, shape, &opts));
  assert_string_equal(tb_tensor_name(t), name);
  int fd = export_fd(t);
  char path[64], target[512];
  snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
  ssize_t length = readlink(path, target, sizeof target - 1);
  close(fd);
  tb_tensor_unref(t);
  assert_true(length > 0);
  target[length] = '\0';
  assert_non_null(strstr(target, "memfd:nnnnnnnn"));
}

static void hugetlbfs_memfds_are_refused(void **state) {
  (void)state;
  int fd = memfd_create("tb-test-huge",
                        MFD_CLOEXEC | MFD_ALLOW_SEALING | MFD_HUGETLB);
  if (fd < 0) {
    print_message("skipped: no hugetlbfs memfd can be made here (%s)\n",
                  strerror(errno));
    skip();
  }
  /* Sizing needs huge pages reserved; an empty one is refused all the same. */
  long huge_page = 2 << 20;
  bool sized = ftruncate(fd, huge_page) == 0;
  const int64_t shape[] = {sized ? huge_page : 0};
  assert_import_refused(fd, TB_DTYPE_U8, 1, shape, 0, TB_ERR_BAD_FD);
  assert_non_null(strstr(tb_last_error(), "hugetlbfs"));
  close(fd);
}

static void borrowed_fds_are_the_buffers_own(void **state) {
  (void)state;
  tb_tensor *t = shm_arange(TB_DTYPE_U8, 1, (const int64_t[]){64});
  int fds_before = tb_test_open_fds();
  int fd = tb_tensor_fd(t);
  assert_true(fd >= 0);
  assert_int_equal(tb_tensor_fd(t), fd); /* the same fd, not a dup */
  assert_int_equal(tb_test_open_fds(), fds_before);
  tb_buffer *buffer = tb_tensor_buffer(t);
  assert_int_equal(tb_buffer_fd(buffer), fd);
  tb_buffer_unref(buffer);
  /* The fd an export gives is a dup of the same file. */
  int exported = export_fd(t);
  struct stat a, b;
  assert_int_equal(fstat(fd, &a), 0);
  assert_int_equal(fstat(exported, &b), 0);
  assert_true(exported != fd && a.st_ino == b.st_ino && a.st_dev == b.st_dev);
  close(exported);
  tb_tensor_unref(t);

  tb_tensor *heap = tb_test_arange(TB_DTYPE_U8, 1, (const int64_t[]){8},
                                   TB_MEMORY_HEAP);
  assert_int_equal(tb_tensor_fd(heap), -1);
  tb_tensor_unref(heap);
  assert_int_equal(tb_tensor_fd(NULL), -1);
  assert_int_equal(tb_buffer_fd(NULL), -1);
}

static void two_imports_of_one_file_share_a_key(void **state) {
  (void)state;
  const int64_t shape[] = {64};
  tb_tensor *t = shm_arange(TB_DTYPE_U8, 1, shape);
  int fd = export_fd(t);
  tb_tensor *a, *b;
  TB_ASSERT_OK(tb_tensor_import_fd(&a, fd, TB_DTYPE_U8, 1, shape, 0));
  TB_ASSERT_OK(tb_tensor_import_fd(&b, fd, TB_DTYPE_U8, 1, shape, 0));
  tb_buffer *buffers[3] = {tb_tensor_buffer(t), tb_tensor_buffer(a),
                           tb_tensor_buffer(b)};
  assert_true(tb_buffer_id(buffers[1]) != tb_buffer_id(buffers[2]));
  assert_true(tb_buffer_key(buffers[0]) != 0);
  assert_int_equal(tb_buffer_key(buffers[1]), tb_buffer_key(buffers[0]));
  assert_int_equal(tb_buffer_key(buffers[2]), tb_buffer_key(buffers[0]));
  /* Another file, another key; memory without an fd has none. */
  tb_tensor *other = shm_arange(TB_DTYPE_U8, 1, shape);
  tb_buffer *other_buffer = tb_tensor_buffer(other);
  assert_true(tb_buffer_key(other_buffer) != tb_buffer_key(buffers[0]));
  tb_buffer *heap;
  tb_alloc_options opts = tb_test_options(TB_MEMORY_HEAP);
  TB_ASSERT_OK(tb_buffer_new(&heap, 64, &opts));
  assert_int_equal(tb_buffer_key(heap), 0);
  assert_int_equal(tb_buffer_key(NULL), 0);
  tb_buffer_unref(heap);
  tb_buffer_unref(other_buffer);
  tb_tensor_unref(other);
  for (int i = 0; i < 3; i++)
    tb_buffer_unref(buffers[i]);
  tb_tensor_unref(a);
  tb_tensor_unref(b);
  tb_tensor_unref(t);
  close(fd);
}

static void import_at_an_offset(void **state) {
  (void)state;
  const int64_t sixteen[] = {16};
  tb_tensor *source = shm_arange(TB_DTYPE_U8, 1, sixteen);
  int fd = export_fd(source);
  const int64_t two[] = {2};
  tb_tensor *words;
  TB_ASSERT_OK(tb_tensor_import_fd(&words, fd, TB_DTYPE_U32, 1, two, 8));
  assert_int_equal(tb_tensor_offset(words), 8);
  uint32_t got[2];
  TB_ASSERT_OK(tb_tensor_read_bytes(got, sizeof got, words));
  const uint8_t expected[8] = {8, 9, 10, 11, 12, 13, 14, 15};
  assert_memory_equal(got, expected, sizeof got);
  tb_tensor_unref(words);

  /* An empty tensor may start at the very end. */
  const int64_t none[] = {0};
  tb_tensor *empty;
  TB_ASSERT_OK(tb_tensor_import_fd(&empty, fd, TB_DTYPE_U8, 1, none, 16));
  tb_tensor_unref(empty);

  /* A contiguous view travels as fd + tb_tensor_offset. */
  tb_tensor *view;
  TB_ASSERT_OK(tb_tensor_slice(&view, source, 0, 5, 9, 1));
  int view_fd = export_fd(view);
  const int64_t four[] = {4};
  tb_tensor *copy;
  TB_ASSERT_OK(tb_tensor_import_fd(&copy, view_fd, TB_DTYPE_U8, 1, four,
                                   tb_tensor_offset(view)));
  const int64_t first[] = {0};
  assert_int_equal(i64_at(copy, 1, first), 5);
  tb_tensor_unref(copy);
  close(view_fd);
  tb_tensor_unref(view);
  close(fd);
  tb_tensor_unref(source);
}

static void export_needs_an_fd_backed_tensor(void **state) {
  (void)state;
  tb_alloc_options opts = tb_test_options(TB_MEMORY_HEAP);
  const int64_t shape[] = {4};
  tb_tensor *heap;
  TB_ASSERT_OK(tb_tensor_new(&heap, TB_DTYPE_U8, 1, shape, &opts));
  int fd = -77;
  TB_ASSERT_STATUS(tb_tensor_export_fd(&fd, heap), TB_ERR_UNSUPPORTED);
  assert_int_equal(fd, -77);

  uint8_t memory[4];
  tb_buffer *buffer;
  TB_ASSERT_OK(tb_buffer_wrap(&buffer, memory, sizeof memory, 0, NULL, NULL));
  tb_tensor *wrapped;
  TB_ASSERT_OK(
      tb_tensor_from_buffer(&wrapped, buffer, 0, TB_DTYPE_U8, 1, shape, NULL));
  TB_ASSERT_STATUS(tb_tensor_export_fd(&fd, wrapped), TB_ERR_UNSUPPORTED);
  assert_int_equal(fd, -77);

  TB_ASSERT_STATUS(tb_tensor_export_fd(NULL, heap), TB_ERR_INVALID_ARGUMENT);
  TB_ASSERT_STATUS(tb_tensor_export_fd(&fd, NULL), TB_ERR_INVALID_ARGUMENT);
  assert_int_equal(fd, -77);
  tb_tensor_unref(wrapped);
  tb_buffer_unref(buffer);
  tb_tensor_unref(heap);
}

static const int64_t four_bytes[] = {4};

static void pipes_sockets_and_devices_are_refused(void **state) {
  (void)state;
  int pipe_fds[2];
  assert_int_equal(pipe2(pipe_fds, O_CLOEXEC), 0);
  int sockets[2];
  assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sockets),
                   0);
  int null_device = open("/dev/null", O_RDWR | O_CLOEXEC);
  assert_true(null_device >= 0);
  int directory = open("/", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  assert_true(directory >= 0);
  const int refused[] = {pipe_fds[0], pipe_fds[1], sockets[0], null_device,
                         directory};
  for (size_t i = 0; i < sizeof refused / sizeof *refused; i++)
    assert_import_refused(refused[i], TB_DTYPE_U8, 1, four_bytes, 0,
                          TB_ERR_BAD_FD);
  close(directory);
  close(null_device);
  close(sockets[0]);
  close(sockets[1]);
  close(pipe_fds[0]);
  close(pipe_fds[1]);
}

static void regular_files_are_refused(void **state) {
  (void)state;
  FILE *file = tmpfile();
  assert_non_null(file);
  assert_int_equal(fwrite("0123456789", 1, 10, file), 10);
  assert_int_equal(fflush(file), 0);
  assert_import_refused(fileno(file), TB_DTYPE_U8, 1, four_bytes, 0,
                        TB_ERR_BAD_FD);
  fclose(file);

  /* A tmpfs file is shared memory, but not a memfd: it cannot be sealed. */
  int shm_file = open("/dev/shm", O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
  if (shm_file < 0) {
    print_message("no tmpfs at /dev/shm (%s): that case is not run\n",
                  strerror(errno));
    return;
  }
  assert_int_equal(ftruncate(shm_file, 4096), 0);
  assert_import_refused(shm_file, TB_DTYPE_U8, 1, four_bytes, 0, TB_ERR_BAD_FD);
  close(shm_file);
}

static void closed_and_negative_fds_are_refused(void **state) {
  (void)state;
  int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
  assert_true(fd >= 0);
  close(fd);
  assert_import_refused(fd, TB_DTYPE_U8, 1, four_bytes, 0, TB_ERR_BAD_FD);
  assert_import_refused(INT_MAX, TB_DTYPE_U8, 1, four_bytes, 0, TB_ERR_BAD_FD);
  assert_import_refused(-1, TB_DTYPE_U8, 1, four_bytes, 0,
                        TB_ERR_INVALID_ARGUMENT);
  assert_import_refused(INT_MIN, TB_DTYPE_U8, 1, four_bytes, 0,
                        TB_ERR_INVALID_ARGUMENT);
}

static void import_checks_dtype_and_shape(void **state) {
  (void)state;
  int fd = tb_test_memfd(64, MFD_ALLOW_SEALING);
  assert_import_refused(fd, TB_DTYPE_INVALID, 1, four_bytes, 0, TB_ERR_DTYPE);
  const int64_t negative[] = {-4};
  assert_import_refused(fd, TB_DTYPE_U8, 1, negative, 0, TB_ERR_SHAPE);
  const int64_t overflowing[] = {INT64_MAX, INT64_MAX};
  assert_import_refused(fd, TB_DTYPE_U8, 2, overflowing, 0, TB_ERR_SHAPE);
  const int64_t wrapping[] = {INT64_C(1) << 32, INT64_C(1) << 32};
  assert_import_refused(fd, TB_DTYPE_U8, 2, wrapping, 0, TB_ERR_SHAPE);
  assert_import_refused(fd, TB_DTYPE_U8, TB_MAX_DIMS + 1, tb_test_too_many_dims,
                        0, TB_ERR_SHAPE);
  assert_import_refused(fd, TB_DTYPE_U8, 1, NULL, 0, TB_ERR_INVALID_ARGUMENT);
  TB_ASSERT_STATUS(tb_tensor_import_fd(NULL, fd, TB_DTYPE_U8, 1, four_bytes, 0),
                   TB_ERR_INVALID_ARGUMENT);
  close(fd);
}

static void memfd_too_small_is_refused(void **state) {
  (void)state;
  int fd = tb_test_memfd(10, MFD_ALLOW_SEALING);
  const int64_t sixteen[] = {16}, three[] = {3}, one[] = {1};
  assert_import_refused(fd, TB_DTYPE_U8, 1, sixteen, 0, TB_ERR_OUT_OF_RANGE);
  assert_import_refused(fd, TB_DTYPE_U32, 1, three, 0, TB_ERR_OUT_OF_RANGE);
  assert_import_refused(fd, TB_DTYPE_U8, 1, four_bytes, 8, TB_ERR_OUT_OF_RANGE);
  /* Offsets whose sum with the size overflows. */
  assert_import_refused(fd, TB_DTYPE_U8, 1, one, UINT64_MAX,
                        TB_ERR_OUT_OF_RANGE);
  assert_import_refused(fd, TB_DTYPE_U8, 1, four_bytes, UINT64_MAX - 2,
                        TB_ERR_OUT_OF_RANGE);
  const int64_t none[] = {0};
  assert_import_refused(fd, TB_DTYPE_U8, 1, none, UINT64_C(1) << 63,
                        TB_ERR_OUT_OF_RANGE);
  /* Exactly fitting is fine. */
  const int64_t ten[] = {10};
  tb_tensor *t;
  TB_ASSERT_OK(tb_tensor_import_fd(&t, fd, TB_DTYPE_U8, 1, ten, 0));
  tb_tensor_unref(t);
  const int64_t two[] = {2};
  TB_ASSERT_OK(tb_tensor_import_fd(&t, fd, TB_DTYPE_U8, 1, two, 8));
  const int64_t first[] = {0};
  assert_int_equal(i64_at(t, 1, first), 8);
  tb_tensor_unref(t);
  close(fd);
}

static void memfd_without_sealing_is_refused(void **state) {
  (void)state;
  int fd = tb_test_memfd(64, 0);
  assert_true(fcntl(fd, F_GET_SEALS) & F_SEAL_SEAL);
  assert_import_refused(fd, TB_DTYPE_U8, 1, four_bytes, 0, TB_ERR_BAD_FD);
  close(fd);

  /* Sealable once, but sealed shut before the shrink seal went on. */
  fd = tb_test_memfd(64, MFD_ALLOW_SEALING);
  assert_int_equal(fcntl(fd, F_ADD_SEALS, F_SEAL_SEAL), 0);
  assert_import_refused(fd, TB_DTYPE_U8, 1, four_bytes, 0, TB_ERR_BAD_FD);
  close(fd);
}

static void unsealed_memfd_is_sealed_by_import(void **state) {
  (void)state;
  int fd = tb_test_memfd(64, MFD_ALLOW_SEALING);
  assert_int_equal(fcntl(fd, F_GET_SEALS), 0);
  const int64_t shape[] = {8, 8};
  tb_tensor *t;
  TB_ASSERT_OK(tb_tensor_import_fd(&t, fd, TB_DTYPE_U8, 2, shape, 0));
  assert_int_equal(fcntl(fd, F_GET_SEALS), F_SEAL_SHRINK);
  assert_false(tb_tensor_read_only(t));
  /* No one can shrink it under the mapping now; growing is harmless. */
  assert_int_equal(ftruncate(fd, 32), -1);
  assert_int_equal(errno, EPERM);
  assert_int_equal(ftruncate(fd, 128), 0);

  const int64_t at[] = {7, 7};
  assert_int_equal(i64_at(t, 2, at), 63);
  TB_ASSERT_OK(tb_tensor_set_i64(t, 2, at, 200));
  uint8_t byte;
  assert_int_equal(pread(fd, &byte, 1, 63), 1);
  assert_int_equal(byte, 200);
  byte = 17;
  assert_int_equal(pwrite(fd, &byte, 1, 0), 1);
  const int64_t origin[] = {0, 0};
  assert_int_equal(i64_at(t, 2, origin), 17);
  tb_tensor_unref(t);
  close(fd);
}

static void memfd_already_sealed_shut_imports(void **state) {
  (void)state;
  int fd = tb_test_memfd(16, MFD_ALLOW_SEALING);
  assert_int_equal(
      fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL), 0);
  const int64_t shape[] = {16};
  tb_tensor *t;
  TB_ASSERT_OK(tb_tensor_import_fd(&t, fd, TB_DTYPE_U8, 1, shape, 0));
  assert_false(tb_tensor_read_only(t));
  tb_tensor_unref(t);
  close(fd);
}

/* Checks that `t` is a read-only view of bytes 0, 1, 2, ... */
static void assert_read_only_import(tb_tensor *t) {
  assert_true(tb_tensor_read_only(t));
  tb_map *map = TB_SENTINEL(tb_map);
  TB_ASSERT_STATUS(tb_tensor_map(&map, t, TB_MAP_WRITE), TB_ERR_READ_ONLY);
  TB_ASSERT_STATUS(tb_tensor_map(&map, t, TB_MAP_READ | TB_MAP_WRITE),
                   TB_ERR_READ_ONLY);
  assert_ptr_equal(map, TB_SENTINEL(tb_map));
  const int64_t at[] = {3};
  TB_ASSERT_STATUS(tb_tensor_set_i64(t, 1, at, 1), TB_ERR_READ_ONLY);
  TB_ASSERT_OK(tb_tensor_map(&map, t, TB_MAP_READ));
  assert_int_equal(((const uint8_t *)tb_map_data(map))[3], 3);
  tb_map_free(map);
}

static void write_sealed_memfd_imports_read_only(void **state) {
  (void)state;
  const int seals[] = {F_SEAL_SHRINK | F_SEAL_FUTURE_WRITE, F_SEAL_WRITE,
                       F_SEAL_FUTURE_WRITE};
  for (size_t i = 0; i < sizeof seals / sizeof *seals; i++) {
    int fd = tb_test_memfd(16, MFD_ALLOW_SEALING);
    if (fcntl(fd, F_ADD_SEALS, seals[i]) != 0) {
      close(fd);
      TB_SKIP("this kernel refuses seals 0x%x (%s)", seals[i], strerror(errno));
    }
    const int64_t shape[] = {16};
    tb_tensor *t;
    TB_ASSERT_OK(tb_tensor_import_fd(&t, fd, TB_DTYPE_U8, 1, shape, 0));
    assert_read_only_import(t);
    /* Its export stays read-only for the next importer too. */
    int again = export_fd(t);
    tb_tensor *copy;
    TB_ASSERT_OK(tb_tensor_import_fd(&copy, again, TB_DTYPE_U8, 1, shape, 0));
    assert_read_only_import(copy);
    tb_tensor_unref(copy);
    close(again);
    tb_tensor_unref(t);
    close(fd);
  }
}

static int reopen_read_only(int fd) {
  char path[64];
  snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
  int read_only = open(path, O_RDONLY | O_CLOEXEC);
  assert_true(read_only >= 0);
  return read_only;
}

static void read_only_reopen_imports_read_only(void **state) {
  (void)state;
  int fd = tb_test_memfd(16, MFD_ALLOW_SEALING);
  assert_int_equal(fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK), 0);
  int read_only = reopen_read_only(fd);
  const int64_t shape[] = {16};
  tb_tensor *t;
  TB_ASSERT_OK(tb_tensor_import_fd(&t, read_only, TB_DTYPE_U8, 1, shape, 0));
  assert_read_only_import(t);
  /* Writes by the owner of a writable fd show through. */
  uint8_t byte = 99;
  assert_int_equal(pwrite(fd, &byte, 1, 5), 1);
  const int64_t at[] = {5};
  assert_int_equal(i64_at(t, 1, at), 99);
  tb_tensor_unref(t);
  close(read_only);
  close(fd);
}

static void read_only_reopen_of_an_unsealed_memfd_is_refused(void **state) {
  (void)state;
  /* A read-only fd cannot add the shrink seal, so it cannot be trusted. */
  int fd = tb_test_memfd(16, MFD_ALLOW_SEALING);
  int read_only = reopen_read_only(fd);
  assert_import_refused(read_only, TB_DTYPE_U8, 1, four_bytes, 0,
                        TB_ERR_BAD_FD);
  assert_int_equal(fcntl(fd, F_GET_SEALS), 0);
  close(read_only);
  close(fd);
}

static void empty_memfd_imports(void **state) {
  (void)state;
  int fd = tb_test_memfd(0, MFD_ALLOW_SEALING);
  const int64_t none[] = {0};
  tb_tensor *t;
  TB_ASSERT_OK(tb_tensor_import_fd(&t, fd, TB_DTYPE_F32, 1, none, 0));
  assert_int_equal(tb_tensor_nbytes(t), 0);
  TB_ASSERT_OK(tb_tensor_read_bytes(NULL, 0, t));
  int again = export_fd(t);
  close(again);
  tb_tensor_unref(t);
  close(fd);
}

static void export_and_import_when_out_of_fds(void **state) {
  (void)state;
  const int64_t shape[] = {4};
  tb_tensor *source = shm_arange(TB_DTYPE_U8, 1, shape);
  int fd = export_fd(source);
  tb_test_fd_exhaustion exhaustion;
  tb_test_fds_exhaust(&exhaustion);
  int out = -77;
  TB_ASSERT_STATUS(tb_tensor_export_fd(&out, source), TB_ERR_SYSTEM);
  int export_errno = tb_last_errno();
  tb_tensor *t = TB_SENTINEL(tb_tensor);
  TB_ASSERT_STATUS(tb_tensor_import_fd(&t, fd, TB_DTYPE_U8, 1, shape, 0),
                   TB_ERR_SYSTEM);
  int import_errno = tb_last_errno();
  tb_test_fds_restore(&exhaustion);
  assert_int_equal(export_errno, EMFILE);
  assert_int_equal(import_errno, EMFILE);
  assert_int_equal(out, -77);
  assert_ptr_equal(t, TB_SENTINEL(tb_tensor));
  assert_true(fd_is_open(fd));
  close(fd);
  tb_tensor_unref(source);
}

static void dma_buf_import(void **state) {
  (void)state;
  int fd = tb_test_dma_buf(4096, 0);
  if (fd < 0) {
    TB_SKIP("no way to make a dma-buf in this process");
  }
  const int64_t shape[] = {4096};
  if (!tb_memory_available(TB_MEMORY_DMA)) {
    assert_import_refused(fd, TB_DTYPE_U8, 1, shape, 0, TB_ERR_UNSUPPORTED);
  } else {
    tb_tensor *t;
    TB_ASSERT_OK(tb_tensor_import_fd(&t, fd, TB_DTYPE_U8, 1, shape, 0));
    assert_int_equal(tb_tensor_memory(t), TB_MEMORY_DMA);
    tb_tensor_unref(t);
  }
  close(fd);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      TB_TEST(export_import_round_trip),
      TB_TEST(exported_memfd_carries_the_name),
      TB_TEST(long_names_are_cut_for_the_memfd),
      TB_TEST(hugetlbfs_memfds_are_refused),
      TB_TEST(borrowed_fds_are_the_buffers_own),
      TB_TEST(two_imports_of_one_file_share_a_key),
      TB_TEST(import_at_an_offset),
      TB_TEST(export_needs_an_fd_backed_tensor),
      TB_TEST(pipes_sockets_and_devices_are_refused),
      TB_TEST(regular_files_are_refused),
      TB_TEST(closed_and_negative_fds_are_refused),
      TB_TEST(import_checks_dtype_and_shape),
      TB_TEST(memfd_too_small_is_refused),
      TB_TEST(memfd_without_sealing_is_refused),
      TB_TEST(unsealed_memfd_is_sealed_by_import),
      TB_TEST(memfd_already_sealed_shut_imports),
      TB_TEST(write_sealed_memfd_imports_read_only),
      TB_TEST(read_only_reopen_imports_read_only),
      TB_TEST(read_only_reopen_of_an_unsealed_memfd_is_refused),
      TB_TEST(empty_memfd_imports),
      TB_TEST(export_and_import_when_out_of_fds),
      TB_TEST(dma_buf_import),
  };
  return TB_RUN_TESTS(tests);
}
