/* tensorbuf — status codes and per-thread error reporting.
 *
 * Every fallible call returns a tb_status: TB_OK (0) or a negative error.
 * The values are part of the ABI: they are never renumbered, and new ones are
 * only ever appended at the end of TB_STATUS_MAP. */
#ifndef TENSORBUF_STATUS_H
#define TENSORBUF_STATUS_H

#include "tensorbuf/export.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The one list of statuses: X(NAME, value, "static description").
 * The enum, tb_status_name(), tb_status_message() and the bindings' error
 * tables are all generated from it. */
#define TB_STATUS_MAP(X)                                                       \
  X(TB_OK, 0, "success")                                                       \
  X(TB_ERR_INVALID_ARGUMENT, -1, "invalid argument")                           \
  X(TB_ERR_SHAPE, -2, "invalid shape")                                         \
  X(TB_ERR_DTYPE, -3, "unsupported data type for this operation")              \
  X(TB_ERR_OUT_OF_RANGE, -4, "index, offset or value out of range")            \
  X(TB_ERR_NO_MEMORY, -5, "out of memory")                                     \
  X(TB_ERR_SYSTEM, -6, "system call failed (see tb_last_errno)")               \
  X(TB_ERR_UNSUPPORTED, -7, "not supported here")                              \
  X(TB_ERR_BAD_FD, -8, "file descriptor of the wrong kind or size")            \
  X(TB_ERR_READ_ONLY, -9, "memory is read-only")                               \
  X(TB_ERR_LAYOUT, -10, "tensor layout does not allow this operation")         \
  X(TB_ERR_VERSION, -11, "unknown options struct version")                   \
  X(TB_ERR_TIMEOUT, -12, "timed out")                                          \
  X(TB_ERR_CLOSED, -13, "the peer closed the connection")                      \
  X(TB_ERR_PROTOCOL, -14, "malformed or unexpected message from the peer")

typedef enum tb_status_code {
#define TB_STATUS_ENUM_(name, value, text) name = value,
  TB_STATUS_MAP(TB_STATUS_ENUM_)
#undef TB_STATUS_ENUM_
} tb_status_code;

/* A tb_status is an int so that every FFI can read it as one. */
typedef int tb_status;

/* Stable name of a status ("TB_ERR_SHAPE"); "TB_ERR_UNKNOWN" for a value that
 * is not in the list. Static storage, never NULL. Thread-safe. */
TB_API const char *tb_status_name(tb_status status);

/* Static one-line description of a status; never NULL. Thread-safe. */
TB_API const char *tb_status_message(tb_status status);

/* Message of the calling thread's most recent failed call, naming the
 * argument and value at fault. Valid only right after a call that returned an
 * error; "" if this thread has not failed yet. Never NULL. The storage belongs
 * to the thread and is overwritten by its next failure. */
TB_API const char *tb_last_error(void);

/* errno behind the calling thread's most recent TB_ERR_SYSTEM (0 otherwise). */
TB_API int tb_last_errno(void);

#ifdef __cplusplus
}
#endif

#endif /* TENSORBUF_STATUS_H */
