/* tensorbuf core — shared internal declarations. Never installed.
 *
 * Every core function reports failure through a GError whose domain names
 * the module and whose code is the tb_status to return; the capi boundary
 * turns it into a status and the thread's last-error message. */
#ifndef TB_CORE_H
#define TB_CORE_H

#include "tensorbuf/tensorbuf.h"
#include <glib.h>

/* G_DEFINE_QUARK without its data race (a plain static read and written by
 * every first caller, which ThreadSanitizer reports): first callers may each
 * look the name up, and get the same quark. */
#define TB_DEFINE_QUARK(QN, q_n)                                               \
  GQuark q_n##_quark(void) {                                                   \
    static GQuark quark;                                                       \
    GQuark known = (GQuark)g_atomic_int_get(&quark);                           \
    if (G_UNLIKELY(known == 0)) {                                              \
      known = g_quark_from_static_string(#QN);                                 \
      g_atomic_int_set(&quark, known);                                         \
    }                                                                          \
    return known;                                                              \
  }

GQuark tb_backend_error_quark(void);
GQuark tb_buffer_error_quark(void);
GQuark tb_tensor_error_quark(void);
GQuark tb_image_error_quark(void);
GQuark tb_dlpack_error_quark(void);
GQuark tb_format_error_quark(void);
#define TB_BACKEND_ERROR (tb_backend_error_quark())
#define TB_BUFFER_ERROR (tb_buffer_error_quark())
#define TB_TENSOR_ERROR (tb_tensor_error_quark())
#define TB_FORMAT_ERROR (tb_format_error_quark())

/* Sets a TB_ERR_SYSTEM error with `errnum` remembered for tb_last_errno(). */
void tb_set_system_error(GError **error, GQuark domain, int errnum,
                         const char *format, ...) G_GNUC_PRINTF(4, 5);
/* errno recorded by the calling thread's last tb_set_system_error. */
int tb_core_take_errno(void);

/* Live handle count behind tb_live_objects(). */
void tb_live_add(int delta);
int64_t tb_live_get(void);

/* Integer dtypes (bool excluded). */
gboolean tb_dtype_is_integer(tb_dtype dtype);

/* Checked arithmetic: FALSE on overflow. */
static inline gboolean tb_mul_u64(uint64_t a, uint64_t b, uint64_t *out) {
  return !__builtin_mul_overflow(a, b, out);
}
static inline gboolean tb_add_u64(uint64_t a, uint64_t b, uint64_t *out) {
  return !__builtin_add_overflow(a, b, out);
}

#endif /* TB_CORE_H */
