/* Tensors over files (capi/include/tensorbuf/file.h): mapping a regular file
 * as FILE memory, the sealed-copy option, the core import that accepts files
 * only when asked, and streaming reads with pread and O_DIRECT. */
#include "tb_test.h"

#include "memory/buffer.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

/* A scratch file holding bytes 0, 1, 2, ... (mod 251, so that no page
 * repeats another); its path is in `path` (PATH_MAX). Returns an O_RDWR fd. */
static int scratch_file(char *path, uint64_t size) {
  snprintf(path, 4096, "%s/tb_file_XXXXXX",
           getenv("TMPDIR") != NULL ? getenv("TMPDIR") : "/tmp");
  int fd = mkostemp(path, O_CLOEXEC);
  assert_true(fd >= 0);
  uint8_t chunk[4096];
  for (uint64_t done = 0; done < size;) {
    size_t n =
        (size_t)(size - done < sizeof chunk ? size - done : sizeof chunk);
    for (size_t i = 0; i < n; i++)
      chunk[i] = (uint8_t)((done + i) % 251);
    assert_int_equal(pwrite(fd, chunk, n, (off_t)done), (ssize_t)n);
    done += n;
  }
  return fd;
}

static tb_buffer *map_path(const char *path, uint32_t flags) {
  tb_buffer *buffer = NULL;
  TB_ASSERT_OK(tb_buffer_map_file(&buffer, path, -1, flags));
  return buffer;
}

static void map_by_path_and_fd(void **state) {
  (void)state;
  char path[4096];
  int fd = scratch_file(path, 10000);
  tb_buffer *by_path = map_path(path, 0);
  tb_buffer *by_fd = NULL;
  TB_ASSERT_OK(tb_buffer_map_file(&by_fd, NULL, fd, 0));
  /* The caller's fd stays open and where it was. */
  assert_true(fcntl(fd, F_GETFD) != -1);
  assert_int_equal(lseek(fd, 0, SEEK_CUR), 0);
  close(fd);
  unlink(path);
  for (tb_buffer *b = by_path; b != NULL; b = b == by_path ? by_fd : NULL) {
    assert_int_equal(tb_buffer_memory(b), TB_MEMORY_FILE);
    assert_true(tb_buffer_read_only(b));
    assert_int_equal(tb_buffer_size(b), 10000);
  }
  assert_string_equal(tb_memory_name(TB_MEMORY_FILE), "file");
  tb_buffer_unref(by_path);
  tb_buffer_unref(by_fd);
}

/* Views over the mapping read the file's bytes; writing is refused; fd
 * export and DLPack work as on any read-only buffer. */
static void views_over_a_file(void **state) {
  (void)state;
  char path[4096];
  int fd = scratch_file(path, 8192);
  close(fd);
  tb_buffer *buffer = map_path(path, 0);
  unlink(path);
  const int64_t shape[] = {2, 3};
  tb_tensor *view = NULL;
  TB_ASSERT_OK(
      tb_tensor_from_buffer(&view, buffer, 1000, TB_DTYPE_U8, 2, shape, NULL));
  tb_buffer_unref(buffer);
  assert_int_equal(tb_tensor_memory(view), TB_MEMORY_FILE);
  assert_true(tb_tensor_read_only(view));
  const int64_t index[] = {1, 2};
  int64_t value = -1;
  TB_ASSERT_OK(tb_tensor_get_i64(&value, view, 2, index));
  assert_int_equal(value, (1000 + 5) % 251);
  tb_map *map = TB_SENTINEL(tb_map);
  TB_ASSERT_STATUS(tb_tensor_map(&map, view, TB_MAP_WRITE), TB_ERR_READ_ONLY);
  TB_ASSERT_OK(tb_tensor_map(&map, view, TB_MAP_READ));
  assert_int_equal(((const uint8_t *)tb_map_data(map))[0], 1000 % 251);
  tb_map_free(map);
  TB_ASSERT_STATUS(tb_tensor_set_i64(view, 2, index, 1), TB_ERR_READ_ONLY);

  int exported = -1;
  TB_ASSERT_OK(tb_tensor_export_fd(&exported, view));
  struct stat st;
  assert_int_equal(fstat(exported, &st), 0);
  assert_true(S_ISREG(st.st_mode));
  assert_int_equal(st.st_size, 8192);
  close(exported);

  tb_dlpack_managed_tensor_versioned *dl = NULL;
  TB_ASSERT_OK(tb_tensor_to_dlpack(&dl, view, 0));
  assert_true(dl->flags & TB_DLPACK_FLAG_READ_ONLY);
  assert_int_equal(((const uint8_t *)dl->dl_tensor.data)[0], 1000 % 251);
  dl->deleter(dl);
  tb_tensor_unref(view);
}

static void empty_file_maps_to_an_empty_buffer(void **state) {
  (void)state;
  char path[4096];
  close(scratch_file(path, 0));
  tb_buffer *buffer = map_path(path, 0);
  unlink(path);
  assert_int_equal(tb_buffer_size(buffer), 0);
  assert_int_equal(tb_buffer_memory(buffer), TB_MEMORY_FILE);
  tb_buffer_unref(buffer);
}

/* The copy is shared memory sealed against every change, holding the bytes
 * the file had when it was copied. */
static void sealed_copy_is_sealed_shm(void **state) {
  (void)state;
  char path[4096];
  int fd = scratch_file(path, 5000);
  tb_buffer *copy = map_path(path, TB_FILE_SEALED_COPY);
  /* A later write to the file is not seen by the copy. */
  assert_int_equal(pwrite(fd, "\xff", 1, 0), 1);
  close(fd);
  unlink(path);
  assert_int_equal(tb_buffer_memory(copy), TB_MEMORY_SHM);
  assert_true(tb_buffer_read_only(copy));
  assert_int_equal(tb_buffer_size(copy), 5000);
  tb_tensor *t = NULL;
  const int64_t shape[] = {5000};
  TB_ASSERT_OK(tb_tensor_from_buffer(&t, copy, 0, TB_DTYPE_U8, 1, shape, NULL));
  uint8_t bytes[5000];
  TB_ASSERT_OK(tb_tensor_read_bytes(bytes, sizeof bytes, t));
  for (size_t i = 0; i < sizeof bytes; i++)
    assert_int_equal(bytes[i], i % 251);
  int exported = -1;
  TB_ASSERT_OK(tb_tensor_export_fd(&exported, t));
  int seals = fcntl(exported, F_GET_SEALS);
  assert_int_equal(seals & (F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE),
                   F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE);
  close(exported);
  tb_tensor_unref(t);
  tb_buffer_unref(copy);
}

static void bad_arguments_are_refused(void **state) {
  (void)state;
  char path[4096];
  int fd = scratch_file(path, 100);
  tb_buffer *buffer = TB_SENTINEL(tb_buffer);
  TB_ASSERT_STATUS(tb_buffer_map_file(NULL, path, -1, 0),
                   TB_ERR_INVALID_ARGUMENT);
  TB_ASSERT_STATUS(tb_buffer_map_file(&buffer, path, fd, 0),
                   TB_ERR_INVALID_ARGUMENT);
  TB_ASSERT_STATUS(tb_buffer_map_file(&buffer, NULL, -1, 0),
                   TB_ERR_INVALID_ARGUMENT);
  TB_ASSERT_STATUS(tb_buffer_map_file(&buffer, path, -1, 0x80),
                   TB_ERR_INVALID_ARGUMENT);
  TB_ASSERT_STATUS(tb_buffer_map_file(&buffer, "/nonexistent/tb", -1, 0),
                   TB_ERR_SYSTEM);
  assert_int_equal(tb_last_errno(), ENOENT);
  TB_ASSERT_STATUS(tb_buffer_map_file(&buffer, "/", -1, 0), TB_ERR_BAD_FD);
  int pipe_fds[2];
  assert_int_equal(pipe(pipe_fds), 0);
  TB_ASSERT_STATUS(tb_buffer_map_file(&buffer, NULL, pipe_fds[0], 0),
                   TB_ERR_BAD_FD);
  close(pipe_fds[0]);
  close(pipe_fds[1]);
  assert_ptr_equal(buffer, TB_SENTINEL(tb_buffer));
  /* A file is not shared memory: the fd import still refuses it. */
  tb_tensor *t = TB_SENTINEL(tb_tensor);
  const int64_t shape[] = {4};
  TB_ASSERT_STATUS(tb_tensor_import_fd(&t, fd, TB_DTYPE_U8, 1, shape, 0),
                   TB_ERR_BAD_FD);
  close(fd);
  unlink(path);
}

/* The import under channels accepts a regular file only when asked. */
static void core_import_accepts_files_only_when_asked(void **state) {
  (void)state;
  char path[4096];
  int fd = scratch_file(path, 300);
  unlink(path);
  GError *error = NULL;
  assert_null(tb_buffer_import_accepting(fd, 0, 0, &error));
  assert_int_equal(error->code, TB_ERR_BAD_FD);
  assert_non_null(strstr(error->message, "regular file"));
  g_clear_error(&error);
  assert_null(
      tb_buffer_import_accepting(fd, 301, TB_IMPORT_ACCEPT_FILE, &error));
  assert_int_equal(error->code, TB_ERR_OUT_OF_RANGE);
  g_clear_error(&error);
  tb_buffer *buffer =
      tb_buffer_import_accepting(fd, 300, TB_IMPORT_ACCEPT_FILE, &error);
  g_assert_no_error(error);
  assert_int_equal(tb_buffer_memory(buffer), TB_MEMORY_FILE);
  assert_true(tb_buffer_read_only(buffer));
  assert_int_equal(((const uint8_t *)buffer->data)[299], 299 % 251);
  /* A memfd is still shared memory, not a file, with the flag given. */
  int memfd = tb_test_memfd(64, MFD_ALLOW_SEALING);
  tb_buffer *shm =
      tb_buffer_import_accepting(memfd, 64, TB_IMPORT_ACCEPT_FILE, &error);
  g_assert_no_error(error);
  assert_int_equal(tb_buffer_memory(shm), TB_MEMORY_SHM);
  close(memfd);
  tb_buffer_unref(shm);
  tb_buffer_unref(buffer);
  close(fd);
}

static tb_tensor *aligned_u8(int64_t size, uint64_t alignment) {
  tb_alloc_options opts = tb_test_options(TB_MEMORY_HEAP);
  opts.alignment = alignment;
  tb_tensor *t = NULL;
  TB_ASSERT_OK(tb_tensor_new(&t, TB_DTYPE_U8, 1, &size, &opts));
  return t;
}

static void assert_holds_file_bytes(tb_tensor *t, uint64_t offset) {
  uint64_t n = tb_tensor_nbytes(t);
  uint8_t *bytes = malloc(n);
  TB_ASSERT_OK(tb_tensor_read_bytes(bytes, n, t));
  for (uint64_t i = 0; i < n; i++)
    assert_int_equal(bytes[i], (offset + i) % 251);
  free(bytes);
}

/* Aligned reads go O_DIRECT where the file system allows it; unaligned
 * ones, and those asked to, go through the page cache, and say so. */
static void streaming_reads_say_how_they_read(void **state) {
  (void)state;
  char path[4096];
  int fd = scratch_file(path, 65536);
  unlink(path);
  tb_tensor *slot = aligned_u8(16384, 4096);
  tb_read_mode mode = 0;
  TB_ASSERT_OK(tb_tensor_read_file(&mode, slot, fd, 8192, 0));
  print_message("aligned read: mode %d\n", (int)mode);
  assert_true(mode == TB_READ_DIRECT || mode == TB_READ_NO_DIRECT_HERE);
  assert_holds_file_bytes(slot, 8192);
  TB_ASSERT_OK(tb_tensor_read_file(&mode, slot, fd, 100, 0));
  assert_int_equal(mode, TB_READ_UNALIGNED);
  assert_holds_file_bytes(slot, 100);
  TB_ASSERT_OK(tb_tensor_read_file(&mode, slot, fd, 4096, TB_READ_NO_DIRECT));
  assert_int_equal(mode, TB_READ_BUFFERED);
  assert_holds_file_bytes(slot, 4096);
  TB_ASSERT_OK(tb_tensor_read_file(NULL, slot, fd, 0, 0));
  assert_holds_file_bytes(slot, 0);
  /* The caller's file position is untouched. */
  assert_int_equal(lseek(fd, 0, SEEK_CUR), 0);

  tb_read_mode untouched = 77;
  TB_ASSERT_STATUS(tb_tensor_read_file(&untouched, slot, fd, 65536 - 100, 0),
                   TB_ERR_OUT_OF_RANGE);
  TB_ASSERT_STATUS(tb_tensor_read_file(&untouched, slot, fd, UINT64_MAX, 0),
                   TB_ERR_OUT_OF_RANGE);
  TB_ASSERT_STATUS(tb_tensor_read_file(&untouched, slot, -1, 0, 0),
                   TB_ERR_INVALID_ARGUMENT);
  TB_ASSERT_STATUS(tb_tensor_read_file(&untouched, NULL, fd, 0, 0),
                   TB_ERR_INVALID_ARGUMENT);
  TB_ASSERT_STATUS(tb_tensor_read_file(&untouched, slot, fd, 0, 0x10),
                   TB_ERR_INVALID_ARGUMENT);
  int pipe_fds[2];
  assert_int_equal(pipe(pipe_fds), 0);
  TB_ASSERT_STATUS(tb_tensor_read_file(&untouched, slot, pipe_fds[0], 0, 0),
                   TB_ERR_BAD_FD);
  close(pipe_fds[0]);
  close(pipe_fds[1]);
  tb_tensor *strided = NULL;
  TB_ASSERT_OK(tb_tensor_slice(&strided, slot, 0, 0, 16384, 2));
  TB_ASSERT_STATUS(tb_tensor_read_file(&untouched, strided, fd, 0, 0),
                   TB_ERR_LAYOUT);
  tb_tensor_unref(strided);
  assert_int_equal(untouched, 77);

  tb_buffer *mapped = NULL;
  TB_ASSERT_OK(tb_buffer_map_file(&mapped, NULL, fd, 0));
  tb_tensor *read_only = NULL;
  const int64_t shape[] = {10};
  TB_ASSERT_OK(tb_tensor_from_buffer(&read_only, mapped, 0, TB_DTYPE_U8, 1,
                                     shape, NULL));
  TB_ASSERT_STATUS(tb_tensor_read_file(&untouched, read_only, fd, 0, 0),
                   TB_ERR_READ_ONLY);
  tb_tensor_unref(read_only);
  tb_buffer_unref(mapped);
  tb_tensor_unref(slot);
  close(fd);
}

/* Sums a smaps_rollup field of this process, in KiB. */
static long rollup_kib(const char *field) {
  FILE *f = fopen("/proc/self/smaps_rollup", "r");
  assert_non_null(f);
  char line[256];
  long kib = -1;
  size_t len = strlen(field);
  while (fgets(line, sizeof line, f) != NULL)
    if (strncmp(line, field, len) == 0 && line[len] == ':')
      kib = strtol(line + len + 1, NULL, 10);
  fclose(f);
  assert_true(kib >= 0);
  return kib;
}

static unsigned touch_all(tb_buffer *buffer) {
  tb_tensor *t = NULL;
  int64_t size = (int64_t)tb_buffer_size(buffer);
  TB_ASSERT_OK(
      tb_tensor_from_buffer(&t, buffer, 0, TB_DTYPE_U8, 1, &size, NULL));
  tb_map *map = NULL;
  TB_ASSERT_OK(tb_tensor_map(&map, t, TB_MAP_READ));
  const volatile uint8_t *p = tb_map_data(map);
  unsigned sum = 0;
  for (int64_t i = 0; i < size; i += 4096)
    sum += p[i];
  tb_map_free(map);
  tb_tensor_unref(t);
  return sum;
}

/* A second process mapping the same file uses the same pages: its
 * anonymous memory does not grow, and its proportional share (Pss) of the
 * file is about half, because the first process maps the same pages. */
static void second_process_shares_the_pages(void **state) {
  (void)state;
  const uint64_t size = 64u << 20;
  char path[4096];
  close(scratch_file(path, size));
  tb_buffer *first = map_path(path, 0);
  touch_all(first);
  fflush(NULL);
  pid_t child = fork();
  assert_true(child >= 0);
  if (child == 0) {
    /* A fresh mapping in a fresh process: no page inherited by fork. */
    long anon_before = rollup_kib("Anonymous");
    long pss_before = rollup_kib("Pss");
    long rss_before = rollup_kib("Rss");
    tb_buffer *second = NULL;
    if (tb_buffer_map_file(&second, path, -1, 0) != TB_OK)
      _exit(2);
    touch_all(second);
    long anon = rollup_kib("Anonymous") - anon_before;
    long pss = rollup_kib("Pss") - pss_before;
    long rss = rollup_kib("Rss") - rss_before;
    long file_kib = (long)(size >> 10);
    fprintf(stderr,
            "child: Rss +%ld KiB, Pss +%ld KiB, Anonymous +%ld KiB for a "
            "%ld KiB file\n",
            rss, pss, anon, file_kib);
    tb_buffer_unref(second);
    _exit(anon < file_kib / 16 && pss < file_kib * 3 / 4 ? 0 : 1);
  }
  int status = 0;
  assert_int_equal(waitpid(child, &status, 0), child);
  unlink(path);
  tb_buffer_unref(first);
  assert_true(WIFEXITED(status));
  assert_int_equal(WEXITSTATUS(status), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      TB_TEST(map_by_path_and_fd),
      TB_TEST(views_over_a_file),
      TB_TEST(empty_file_maps_to_an_empty_buffer),
      TB_TEST(sealed_copy_is_sealed_shm),
      TB_TEST(bad_arguments_are_refused),
      TB_TEST(core_import_accepts_files_only_when_asked),
      TB_TEST(streaming_reads_say_how_they_read),
      TB_TEST(second_process_shares_the_pages),
  };
  return TB_RUN_TESTS(tests);
}
