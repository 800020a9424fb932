/* A second process for the tests of sharing (channels, fences, pools).
 *
 * tb_peer_start forks. Both processes get one end of a connected seqpacket
 * socket pair, each as a tb_channel or as the raw socket (for a test that
 * plays a hostile peer by hand), plus a control socket on which the two
 * exchange numbered steps ("mapped", "now truncate", ...).
 *
 * The child runs its body and exits 0 only if the body passed and the
 * child's live handles and open fds, counted when it started, are back where
 * they were. Inside a child, cmocka's asserts must not be used (they would
 * unwind into the child's copy of the test runner): use TB_PEER_ASSERT,
 * TB_PEER_ASSERT_OK and TB_PEER_ASSERT_STATUS, which print the reason and
 * exit the child with status 1 (in the parent they fail the test as cmocka's
 * do, so helpers shared by both processes use them). The parent checks the
 * exit with tb_peer_join. A child that outlives its test is killed by an
 * alarm, and with its parent. */
#ifndef TB_PEER_H
#define TB_PEER_H

#include "tb_test.h"

#include <stdbool.h>
#include <sys/types.h>

#include "tensorbuf/channel.h"

typedef enum tb_peer_kind {
  TB_PEER_CHANNEL, /* the end is a tb_channel */
  TB_PEER_RAW      /* the end is the socket itself */
} tb_peer_kind;

/* One process's end of the connection. */
typedef struct tb_peer_end {
  tb_channel *channel; /* TB_PEER_CHANNEL: the channel; else NULL */
  int socket;          /* TB_PEER_RAW: the socket; else -1 */
  int control;         /* steps to and from the other process */
} tb_peer_end;

typedef void (*tb_peer_body)(tb_peer_end *end, void *arg);

/* Forks a child that runs body(its end, arg) and exits; fills the parent's
 * end and returns the child's pid. */
pid_t tb_peer_start(tb_peer_end *parent_end, tb_peer_kind parent_kind,
                    tb_peer_body child_body, tb_peer_kind child_kind,
                    void *arg);
/* Closes an end (channel or socket, and the control socket). */
void tb_peer_end_close(tb_peer_end *end);

/* Waits (at most 20 s, then kills it) for the child and asserts that it
 * exited 0. Parent side. */
void tb_peer_join(pid_t pid);
/* Waits for the child to end and returns its wait status. Parent side. */
int tb_peer_reap(pid_t pid);

/* Sends step `step` to the other process. */
void tb_peer_send_step(const tb_peer_end *end, int step);
/* Waits for the other process's next step and checks that it is `step`; a
 * peer that died instead fails the caller (the test, or the child). */
void tb_peer_expect_step(const tb_peer_end *end, int step);

/* Whether the calling process is a peer child (its failures exit). */
bool tb_peer_in_child(void);

/* Live handles and open fds, counted with a fresh look at /proc/self/fd
 * (tb_test_open_fds keeps a directory of the parent open, which in a child
 * would still list the parent's fds). */
tb_test_snapshot tb_peer_snapshot(void);

/* Child-side asserts. */
#define TB_PEER_ASSERT(condition)                                              \
  tb_peer_check((condition), #condition, __FILE__, __LINE__)
#define TB_PEER_ASSERT_OK(expr)                                                \
  tb_peer_check_status((expr), TB_OK, #expr, __FILE__, __LINE__)
#define TB_PEER_ASSERT_STATUS(expr, status)                                    \
  tb_peer_check_status((expr), (status), #expr, __FILE__, __LINE__)

void tb_peer_check(bool condition, const char *expr, const char *file,
                   int line);
void tb_peer_check_status(tb_status status, tb_status expected,
                          const char *expr, const char *file, int line);
/* Fails the calling process: exits a child, fails the test in the parent. */
void tb_peer_fail(const char *file, int line, const char *format, ...)
    __attribute__((format(printf, 3, 4)));

/* Milliseconds of CLOCK_MONOTONIC, for loose timing checks. */
int64_t tb_peer_now_ms(void);

#endif /* TB_PEER_H */
