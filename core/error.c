/* Error domains, system-error errno hand-over, live handle count. */
#include "core.h"

#include <stdatomic.h>
#include <string.h>

TB_DEFINE_QUARK(tb - backend - error - quark, tb_backend_error)
TB_DEFINE_QUARK(tb - buffer - error - quark, tb_buffer_error)
TB_DEFINE_QUARK(tb - tensor - error - quark, tb_tensor_error)
TB_DEFINE_QUARK(tb - format - error - quark, tb_format_error)

/* GError carries no errno, so the one behind a TB_ERR_SYSTEM waits here for
 * the boundary to collect it on the same thread. */
static _Thread_local int tb_pending_errno;

void tb_set_system_error(GError **error, GQuark domain, int errnum,
                         const char *format, ...) {
  va_list args;
  va_start(args, format);
  g_autofree char *what = g_strdup_vprintf(format, args);
  va_end(args);
  tb_pending_errno = errnum;
  g_set_error(error, domain, TB_ERR_SYSTEM, "%s: %s", what, g_strerror(errnum));
}

int tb_core_take_errno(void) {
  int errnum = tb_pending_errno;
  tb_pending_errno = 0;
  return errnum;
}

static atomic_int_least64_t tb_live_count;

void tb_live_add(int delta) {
  atomic_fetch_add_explicit(&tb_live_count, delta, memory_order_relaxed);
}

int64_t tb_live_get(void) {
  return atomic_load_explicit(&tb_live_count, memory_order_relaxed);
}
