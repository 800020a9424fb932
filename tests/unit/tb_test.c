/* Shared helpers of the cmocka unit tests (see tb_test.h). */
#include "tb_test.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/dma-heap.h>
#include <linux/udmabuf.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <unistd.h>

char tb_test_sentinel_byte;
size_t tb_test_skipped;

int tb_test_exit_status(int failed, size_t tests) {
  if (failed == 0 && tests > 0 && tb_test_skipped == tests)
    return 77;
  return failed;
}

/* /proc/self/fd stays open for the whole run and is re-read with rewinddir,
 * so counting needs no new fd (and still works while fds are exhausted). */
static DIR *fd_dir;

int tb_test_open_fds(void) {
  if (fd_dir == NULL) {
    fd_dir = opendir("/proc/self/fd");
    if (fd_dir == NULL)
      return -1;
  }
  rewinddir(fd_dir);
  int count = 0;
  const struct dirent *entry;
  while ((entry = readdir(fd_dir)) != NULL)
    if (entry->d_name[0] != '.')
      count++;
  return count;
}

tb_test_snapshot tb_test_take_snapshot(void) {
  return (tb_test_snapshot){tb_live_objects(), tb_test_open_fds()};
}

static tb_test_snapshot test_start;

int tb_test_group_setup(void **state) {
  (void)state;
  if (tb_test_open_fds() < 0) {
    print_error("cannot read /proc/self/fd: %s\n", strerror(errno));
    return -1;
  }
  return 0;
}

int tb_test_group_teardown(void **state) {
  (void)state;
  int64_t live = tb_live_objects();
  if (fd_dir != NULL)
    closedir(fd_dir);
  fd_dir = NULL;
  if (live != 0) {
    print_error("%lld tensorbuf handles still live after the last test\n",
                (long long)live);
    return -1;
  }
  return 0;
}

int tb_test_setup(void **state) {
  (void)state;
  test_start = tb_test_take_snapshot();
  return 0;
}

int tb_test_teardown(void **state) {
  (void)state;
  tb_test_snapshot end = tb_test_take_snapshot();
  if (end.live_objects != test_start.live_objects ||
      end.open_fds != test_start.open_fds) {
    print_error("leak: live handles %lld -> %lld, open fds %d -> %d\n",
                (long long)test_start.live_objects, (long long)end.live_objects,
                test_start.open_fds, end.open_fds);
    return -1;
  }
  return 0;
}

void tb_test_assert_ok(tb_status status, const char *expr, const char *file,
                       int line) {
  if (status == TB_OK)
    return;
  print_error("%s returned %s (%d): %s\n", expr, tb_status_name(status), status,
              tb_last_error());
  _fail(file, line);
}

/* The function a TB_ASSERT_STATUS expression calls: its leading identifier. */
static size_t called_function(const char *expr, const char **name) {
  while (isspace((unsigned char)*expr))
    expr++;
  size_t length = 0;
  while (isalnum((unsigned char)expr[length]) || expr[length] == '_')
    length++;
  *name = expr;
  return length;
}

tb_test_snapshot tb_test_prime(const char *expr, const char *file, int line) {
  const char *name;
  size_t length = called_function(expr, &name);
  if (length == 0) {
    print_error("TB_ASSERT_STATUS needs a direct call, not \"%s\"\n", expr);
    _fail(file, line);
  }
  /* Leave another function's message behind, so that only a failure that
   * records its own error passes the check that follows. */
  static const char other[] = "tb_dtype_from_name";
  if (length == sizeof other - 1 && memcmp(name, other, length) == 0)
    (void)tb_alloc_options_init(NULL, TB_ALLOC_OPTIONS_VERSION);
  else
    (void)tb_dtype_from_name(NULL, NULL);
  return tb_test_take_snapshot();
}

void tb_test_assert_status(tb_status status, tb_status expected,
                           const char *expr, tb_test_snapshot before,
                           const char *file, int line) {
  tb_test_snapshot after = tb_test_take_snapshot();
  const char *message = tb_last_error();
  const char *name;
  size_t length = called_function(expr, &name);
  if (status != expected) {
    print_error("%s returned %s (%d), expected %s (%d); last error: %s\n", expr,
                tb_status_name(status), status, tb_status_name(expected),
                expected, message);
    _fail(file, line);
  }
  if (message == NULL || strncmp(message, name, length) != 0 ||
      strncmp(message + length, ": ", 2) != 0 || message[length + 2] == '\0') {
    print_error("%s: last error \"%s\" does not name %.*s\n", expr,
                message != NULL ? message : "(NULL)", (int)length, name);
    _fail(file, line);
  }
  if ((expected == TB_ERR_SYSTEM) != (tb_last_errno() != 0)) {
    print_error("%s: tb_last_errno() is %d after %s\n", expr, tb_last_errno(),
                tb_status_name(expected));
    _fail(file, line);
  }
  if (after.live_objects != before.live_objects ||
      after.open_fds != before.open_fds) {
    print_error("%s failed but left live handles %lld -> %lld, open fds "
                "%d -> %d\n",
                expr, (long long)before.live_objects,
                (long long)after.live_objects, before.open_fds, after.open_fds);
    _fail(file, line);
  }
}

void tb_test_assert_f64_equal(double actual, double expected, const char *expr,
                              const char *file, int line) {
  if (actual == expected || (isnan(actual) && isnan(expected)))
    return;
  print_error("%s is %.17g, expected %.17g\n", expr, actual, expected);
  _fail(file, line);
}

void tb_test_fds_exhaust(tb_test_fd_exhaustion *exhaustion) {
  enum { limit = 32 };
  struct rlimit rl;
  assert_int_equal(getrlimit(RLIMIT_NOFILE, &rl), 0);
  exhaustion->saved_soft_limit = (unsigned long)rl.rlim_cur;
  exhaustion->nfillers = 0;
  rl.rlim_cur = limit;
  assert_int_equal(setrlimit(RLIMIT_NOFILE, &rl), 0);
  int fd;
  while ((fd = open("/dev/null", O_RDONLY | O_CLOEXEC)) >= 0) {
    assert_true(exhaustion->nfillers < (int)(sizeof exhaustion->fillers /
                                             sizeof *exhaustion->fillers));
    exhaustion->fillers[exhaustion->nfillers++] = fd;
  }
  assert_int_equal(errno, EMFILE);
}

void tb_test_fds_restore(tb_test_fd_exhaustion *exhaustion) {
  for (int i = 0; i < exhaustion->nfillers; i++)
    close(exhaustion->fillers[i]);
  exhaustion->nfillers = 0;
  struct rlimit rl;
  assert_int_equal(getrlimit(RLIMIT_NOFILE, &rl), 0);
  rl.rlim_cur = exhaustion->saved_soft_limit;
  assert_int_equal(setrlimit(RLIMIT_NOFILE, &rl), 0);
}

const int64_t tb_test_too_many_dims[TB_MAX_DIMS + 1] = {
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1};

tb_alloc_options tb_test_options(tb_memory memory) {
  tb_alloc_options opts = TB_ALLOC_OPTIONS_INIT;
  opts.memory = memory;
  return opts;
}

int tb_test_memfd(uint64_t size, unsigned memfd_flags) {
  int fd = memfd_create("tb-test", MFD_CLOEXEC | memfd_flags);
  assert_true(fd >= 0);
  for (uint64_t i = 0; i < size; i++) {
    uint8_t byte = (uint8_t)i;
    assert_int_equal(pwrite(fd, &byte, 1, (off_t)i), 1);
  }
  return fd;
}

static int dma_heap_buf(uint64_t size) {
  static const char *const heaps[] = {
      "/dev/dma_heap/system", "/dev/dma_heap/linux,cma",
      "/dev/dma_heap/default_cma_region", "/dev/dma_heap/reserved"};
  for (size_t i = 0; i < sizeof heaps / sizeof *heaps; i++) {
    int heap = open(heaps[i], O_RDWR | O_CLOEXEC);
    if (heap < 0)
      continue;
    struct dma_heap_allocation_data request = {.len = size,
                                               .fd_flags = O_RDWR | O_CLOEXEC};
    int rc = ioctl(heap, DMA_HEAP_IOCTL_ALLOC, &request);
    close(heap);
    if (rc == 0)
      return (int)request.fd;
  }
  return -1;
}

static int udmabuf_over_memfd(uint64_t size, uint64_t first_word) {
  int device = open("/dev/udmabuf", O_RDWR | O_CLOEXEC);
  if (device < 0)
    return -1;
  int memfd = memfd_create("tb-test-udmabuf", MFD_CLOEXEC | MFD_ALLOW_SEALING);
  assert_true(memfd >= 0);
  assert_int_equal(ftruncate(memfd, (off_t)size), 0);
  assert_int_equal(pwrite(memfd, &first_word, sizeof first_word, 0),
                   (ssize_t)sizeof first_word);
  assert_int_equal(fcntl(memfd, F_ADD_SEALS, F_SEAL_SHRINK), 0);
  struct udmabuf_create create = {
      .memfd = (uint32_t)memfd, .flags = UDMABUF_FLAGS_CLOEXEC, .size = size};
  int fd = ioctl(device, UDMABUF_CREATE, &create);
  close(memfd);
  close(device);
  return fd;
}

int tb_test_dma_buf(uint64_t size, uint64_t first_word) {
  int fd = dma_heap_buf(size);
  if (fd < 0)
    return udmabuf_over_memfd(size, first_word);
  void *data = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  assert_true(data != MAP_FAILED);
  memcpy(data, &first_word, sizeof first_word);
  munmap(data, size);
  return fd;
}

tb_tensor *tb_test_arange(tb_dtype dtype, size_t ndim, const int64_t *shape,
                          tb_memory memory) {
  tb_alloc_options opts = tb_test_options(memory);
  tb_tensor *tensor = NULL;
  TB_ASSERT_OK(tb_tensor_new(&tensor, dtype, ndim, shape, &opts));
  /* Walk the indices in row-major order. */
  int64_t index[TB_MAX_DIMS] = {0};
  uint64_t numel = tb_tensor_numel(tensor);
  uint64_t modulus = dtype == TB_DTYPE_BOOL ? 2 : 100;
  for (uint64_t i = 0; i < numel; i++) {
    TB_ASSERT_OK(
        tb_tensor_set_i64(tensor, ndim, index, (int64_t)(i % modulus)));
    for (size_t d = ndim; d-- > 0;) {
      if (++index[d] < shape[d])
        break;
      index[d] = 0;
    }
  }
  return tensor;
}
