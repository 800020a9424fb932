/* The capi boundary: argument checks and the conversion of core GErrors into
 * a tb_status plus the thread's last-error message. Every exported function
 * that returns tb_status lives in capi/src; infallible getters live in core
 * next to the struct they read. */
#ifndef TB_BOUNDARY_H
#define TB_BOUNDARY_H

#include "tensorbuf/tensorbuf.h"
#include <glib.h>

/* Records "<function>: <message>" for the calling thread; returns status. */
tb_status tb_fail(const char *function, tb_status status, const char *format,
                  ...) G_GNUC_PRINTF(3, 4);
/* Converts and frees a core error (NULL error: TB_OK). */
tb_status tb_fail_with(const char *function, GError *error);

/* The body of every tb_*_options_init: writes `defaults` (whose version
 * field the caller has set to `version`) into `opts`, but only the `size`
 * bytes that `version` of the struct has, since the caller's struct may be
 * an older, shorter one. `size` 0 means an unknown version. */
tb_status tb_options_init(const char *function, void *opts,
                          const void *defaults, size_t size, uint32_t version,
                          uint32_t latest);

/* Rejects a NULL pointer argument, naming it. */
#define TB_REQUIRE(arg)                                                        \
  do {                                                                         \
    if ((arg) == NULL)                                                         \
      return tb_fail(__func__, TB_ERR_INVALID_ARGUMENT, "%s is NULL", #arg);   \
  } while (0)

/* Rejects a NULL array whose length says it has entries. */
#define TB_REQUIRE_ARRAY(arg, count)                                           \
  do {                                                                         \
    if ((arg) == NULL && (count) > 0)                                          \
      return tb_fail(__func__, TB_ERR_INVALID_ARGUMENT,                        \
                     "%s is NULL but %s is %zu", #arg, #count,                 \
                     (size_t)(count));                                         \
  } while (0)

/* Ends a call that makes a handle: stores it in *out and returns TB_OK, or
 * returns the core error converted. A failed call never writes *out. */
#define TB_RETURN_HANDLE(out, made, error)                                     \
  do {                                                                         \
    __typeof__(*(out)) made_ = (made);                                         \
    if (made_ == NULL)                                                         \
      return tb_fail_with(__func__, error);                                    \
    *(out) = made_;                                                            \
    return TB_OK;                                                              \
  } while (0)

/* Ends a call that makes an fd (-1 on failure), likewise. */
#define TB_RETURN_FD(out_fd, made, error)                                      \
  do {                                                                         \
    int fd_ = (made);                                                          \
    if (fd_ < 0)                                                               \
      return tb_fail_with(__func__, error);                                    \
    *(out_fd) = fd_;                                                           \
    return TB_OK;                                                              \
  } while (0)

/* Ends a call: TB_OK, or the core error converted. */
#define TB_RETURN(ok, error) return (ok) ? TB_OK : tb_fail_with(__func__, error)

#endif
