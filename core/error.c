/* Error domains, system-error errno hand-over, live handle count. */
#include "core.h"

#include <stdatomic.h>
#include <string.h>

/* Every error domain is made once when the library loads: GLib's lazy
 * G_DEFINE_QUARK is first touched by whichever threads fail first, at once
 * (ThreadSanitizer reports the race on its static). */
static GQuark tb_quarks[5];

__attribute__((constructor)) static void tb_error_quarks_init(void) {
  static const char *const names[G_N_ELEMENTS(tb_quarks)] = {
      "tb-backend-error-quark", "tb-buffer-error-quark",
      "tb-tensor-error-quark", "tb-image-error-quark",
      "tb-dlpack-error-quark"};
  for (size_t i = 0; i < G_N_ELEMENTS(tb_quarks); i++)
    tb_quarks[i] = g_quark_from_static_string(names[i]);
}

GQuark tb_backend_error_quark(void) { return tb_quarks[0]; }
GQuark tb_buffer_error_quark(void) { return tb_quarks[1]; }
GQuark tb_tensor_error_quark(void) { return tb_quarks[2]; }
GQuark tb_image_error_quark(void) { return tb_quarks[3]; }
GQuark tb_dlpack_error_quark(void) { return tb_quarks[4]; }

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
