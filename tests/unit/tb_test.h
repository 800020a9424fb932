/* Shared helpers of the cmocka unit tests.
 *
 * Every test runs between tb_test_setup and tb_test_teardown (TB_TEST), which
 * assert that the test left no live tensorbuf handle and no open fd behind.
 * TB_ASSERT_OK and TB_ASSERT_STATUS are the cmocka counterparts of libgit2's
 * cl_git_pass: on failure they print the status name and tb_last_error(). */
#ifndef TB_TEST_H
#define TB_TEST_H

/* cmocka.h needs these first. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "tensorbuf/tensorbuf.h"

/* Asserts that `expr` returns TB_OK. */
#define TB_ASSERT_OK(expr) tb_test_assert_ok((expr), #expr, __FILE__, __LINE__)

/* Asserts that `expr`, a direct call of a tensorbuf function, fails with
 * `status`; that it left a fresh, non-empty last error that begins with that
 * function's name; that tb_last_errno() is set exactly for TB_ERR_SYSTEM; and
 * that the failed call changed neither the live handle count nor the number
 * of open fds. */
#define TB_ASSERT_STATUS(expr, status)                                         \
  do {                                                                         \
    tb_test_snapshot before_ = tb_test_prime(#expr, __FILE__, __LINE__);       \
    tb_test_assert_status((expr), (status), #expr, before_, __FILE__,          \
                          __LINE__);                                           \
  } while (0)

/* Exact comparison of doubles (NaN equals NaN), printing both on failure. */
#define TB_ASSERT_F64_EQUAL(actual, expected)                                  \
  tb_test_assert_f64_equal((actual), (expected), #actual, __FILE__, __LINE__)

/* A test run with the leak check around it. */
#define TB_TEST(f)                                                             \
  cmocka_unit_test_setup_teardown(f, tb_test_setup, tb_test_teardown)

/* Runs a file's tests with the group fixtures. The exit status is cmocka's
 * (the number of failed tests), or 77 when every test skipped, so that ctest
 * reports the whole file as skipped (SKIP_RETURN_CODE 77). */
#define TB_RUN_TESTS(tests)                                                    \
  tb_test_exit_status(cmocka_run_group_tests(tests, tb_test_group_setup,       \
                                             tb_test_group_teardown),          \
                      sizeof(tests) / sizeof((tests)[0]))

/* Skips the running test and says why, on a line "skipped: <why>" (printf
 * arguments; the first a string literal) that ./run's summary groups skips
 * by. */
#define TB_SKIP(...)                                                           \
  do {                                                                         \
    print_message("skipped: " __VA_ARGS__);                                    \
    print_message("\n");                                                       \
    tb_test_skipped++;                                                         \
    skip();                                                                    \
  } while (0)
extern size_t tb_test_skipped;
int tb_test_exit_status(int failed, size_t tests);

/* An address no tensorbuf call returns: out-parameters are preset to it so
 * that a test can tell that a failed call did not write them. */
extern char tb_test_sentinel_byte;
#define TB_SENTINEL(type) ((type *)(void *)&tb_test_sentinel_byte)

typedef struct tb_test_snapshot {
  int64_t live_objects;
  int open_fds;
} tb_test_snapshot;

int tb_test_group_setup(void **state);
int tb_test_group_teardown(void **state);
int tb_test_setup(void **state);
int tb_test_teardown(void **state);

/* Live handles and open fds now. Works while fds are exhausted. */
tb_test_snapshot tb_test_take_snapshot(void);
int tb_test_open_fds(void);

void tb_test_assert_ok(tb_status status, const char *expr, const char *file,
                       int line);
tb_test_snapshot tb_test_prime(const char *expr, const char *file, int line);
void tb_test_assert_status(tb_status status, tb_status expected,
                           const char *expr, tb_test_snapshot before,
                           const char *file, int line);
void tb_test_assert_f64_equal(double actual, double expected, const char *expr,
                              const char *file, int line);

/* Makes every further fd allocation fail with EMFILE by lowering
 * RLIMIT_NOFILE and occupying every free slot below it; undone by
 * tb_test_fds_restore. Fails the test if it cannot. */
typedef struct tb_test_fd_exhaustion {
  unsigned long saved_soft_limit;
  int fillers[64];
  int nfillers;
} tb_test_fd_exhaustion;
void tb_test_fds_exhaust(tb_test_fd_exhaustion *exhaustion);
void tb_test_fds_restore(tb_test_fd_exhaustion *exhaustion);

/* TB_MAX_DIMS + 1 dims of size 1: one dim too many for any call. */
extern const int64_t tb_test_too_many_dims[TB_MAX_DIMS + 1];

/* Default allocation options, asking for `memory`. */
tb_alloc_options tb_test_options(tb_memory memory);

/* A memfd of `size` bytes made with `memfd_flags` (MFD_ALLOW_SEALING or 0),
 * holding bytes 0, 1, 2, ... (mod 256). */
int tb_test_memfd(uint64_t size, unsigned memfd_flags);

/* A dma-buf of `size` bytes (a multiple of the page size) whose first eight
 * bytes hold `first_word`, as a foreign process would hand it over: from a
 * dma-heap, else from /dev/udmabuf over a sealed memfd; -1 where neither
 * can make one (the caller skips, saying so). */
int tb_test_dma_buf(uint64_t size, uint64_t first_word);

/* A new row-major tensor of `memory` whose element i (in row-major order)
 * holds i % 100 (i % 2 for bool): exact in every dtype. */
tb_tensor *tb_test_arange(tb_dtype dtype, size_t ndim, const int64_t *shape,
                          tb_memory memory);

#endif /* TB_TEST_H */
