/* tensorbuf.i — the one SWIG interface of tensorbuf, shared by every language.
 *
 * It wraps the public C ABI one to one as the low-level module
 * `tensorbuf_core` (C names, C argument order, 0-based indices); each
 * language adds an idiomatic layer on top (Lua: bindings/lua/tensorbuf.lua).
 * Language-specific typemaps and helpers live in one file per language,
 * included below under #if defined(SWIG<LANG>).
 *
 * Ownership, for every language
 * -----------------------------
 * - Every handle a wrapper returns (tb_buffer, tb_tensor, tb_map, tb_fence,
 *   tb_pool, tb_channel, tb_listener) owns exactly one reference (or, for
 *   tb_map and tb_listener, the handle), released by the class destructor
 *   when the language drops the object: _unref for refcounted handles,
 *   tb_map_free and tb_listener_free for the others. The _unref / _free
 *   calls are therefore not wrapped; _ref is, and returns a second,
 *   separately owned object.
 * - Borrowed C results are turned into owned ones: tb_map_tensor takes a
 *   reference before returning. tb_tensor_buffer already returns a new one.
 * - Handles passed in are borrowed for the call; the library takes its own
 *   reference where it keeps one. nil / None passes NULL.
 * - tb_status results never reach the caller: TB_OK gives nothing (or the
 *   out-parameters), an error raises the language's error carrying the
 *   code, the stable name (TB_ERR_SHAPE) and tb_last_error()'s message.
 *
 * Typemap catalogue (what each language file must provide; Lua's
 * implementation and its exact Lua types are in lua/tensorbuf_lua.i)
 * -----------------------------------------------------------------
 *   tb_status (out)                      error on < 0, else no value
 *   HANDLE ** (argout, any name)         new owned handle (see above)
 *   tb_dtype *out, tb_memory *out,
 *   tb_pixel_format *out, int *out_fd,
 *   tb_read_mode *mode_out, double *out,
 *   int64_t *out, double *scale_out,
 *   int64_t *zero_point_out,
 *   uint32_t *out, uint64_t *out (argout)
 *                                        returned values, in order; an fd
 *                                        is the caller's to close
 *   integer types (in/out)               native integers, never floats;
 *                                        narrower types range-checked
 *   (size_t ndim, const int64_t *shape),
 *   (size_t nindex, const int64_t *index)
 *                                        one sequence of integers (copied;
 *                                        nothing kept after the call)
 *   const int64_t *strides               sequence with ndim entries, or nil
 *   (size_t nplanes, const int *fds),
 *   const uint64_t *offsets,
 *   const uint64_t *strides (image_import)
 *                                        sequences, nplanes from fds; the
 *                                        others must have nplanes entries
 *   (size_t count, const double *scales),
 *   const int64_t *zero_points           sequences, count from scales;
 *                                        zero_points nil or count entries
 *   (void *dst, size_t size,
 *    tb_tensor *tensor) (read_bytes)     the tensor in, its bytes out as a
 *                                        byte string (copied)
 *   (const void *src, size_t size),
 *   (const uint8_t *descriptor,
 *    size_t length)                      a byte string (copied by the call)
 *   (const int *fds, size_t nfds)        a sequence of fds, borrowed
 *   tb_tensor_export                     returns the descriptor as a byte
 *                                        string and a sequence of new fds,
 *                                        which the caller closes
 *   const tb_alloc_options *opts         a table/dict of the fields, or nil
 *   tb_alloc_options *opts (init)        returned as a table/dict
 *   tb_buffer_wrap (data, flags)         the language's own bytes, kept
 *                                        alive (or, where they are
 *                                        immutable, copied: Lua) until the
 *                                        buffer's destroy-notify runs
 *   void *tb_map_data                    an opaque address for other C code
 *
 * Status table: tb_status_entries below is expanded from TB_STATUS_MAP, the
 * list the C enum and tb_status_name() come from, so every language builds
 * its error names and classes from it and nothing is kept in sync by hand.
 */
%module tensorbuf_core

%{
#include "tensorbuf/tensorbuf.h"

typedef struct tb_status_entry {
  const char *name;
  int code;
  const char *text;
} tb_status_entry;

static const tb_status_entry tb_status_entries[] = {
#define TB_STATUS_ENTRY_(name, value, text) {#name, value, text},
    TB_STATUS_MAP(TB_STATUS_ENTRY_)
#undef TB_STATUS_ENTRY_
};
%}

%include <stdint.i>

/* Opaque handles become classes whose destructor drops the reference the
 * wrapper object owns; nothing can construct one except the API's calls. */
%define TB_HANDLE(TYPE, RELEASE)
%nodefaultctor TYPE;
struct TYPE {};
%extend TYPE {
  ~TYPE() { RELEASE($self); }
}
%ignore RELEASE;
%enddef

TB_HANDLE(tb_buffer, tb_buffer_unref)
TB_HANDLE(tb_tensor, tb_tensor_unref)
TB_HANDLE(tb_map, tb_map_free)
TB_HANDLE(tb_fence, tb_fence_unref)
TB_HANDLE(tb_pool, tb_pool_unref)
TB_HANDLE(tb_channel, tb_channel_unref)
TB_HANDLE(tb_listener, tb_listener_free)
TB_HANDLE(tb_safetensors, tb_safetensors_close)
TB_HANDLE(tb_safetensors_writer, tb_safetensors_writer_free)

%newobject tb_buffer_ref;
%newobject tb_tensor_ref;
%newobject tb_fence_ref;
%newobject tb_pool_ref;
%newobject tb_channel_ref;
%newobject tb_tensor_buffer;

/* tb_map_tensor returns a borrowed pointer; the wrapper takes its own
 * reference so that the object it returns owns one like every other. */
%newobject tb_map_tensor;
%exception tb_map_tensor %{
  $action
  result = tb_tensor_ref(result);
%}

/* Compile-time constants that are C initialisers, not values. */
%ignore TB_ALLOC_OPTIONS_INIT;

#if defined(SWIGLUA)
%include "lua/tensorbuf_lua.i"
#endif
#if defined(SWIGPYTHON)
%include "python/tensorbuf_python.i"
#endif

%include "tensorbuf/export.h"
%include "tensorbuf/status.h"
%include "tensorbuf/types.h"
%include "tensorbuf/buffer.h"
%include "tensorbuf/tensor.h"
%include "tensorbuf/cuda.h"
%include "tensorbuf/image.h"
%include "tensorbuf/fence.h"
%include "tensorbuf/pool.h"
%include "tensorbuf/channel.h"
%include "tensorbuf/file.h"
%include "tensorbuf/safetensors.h"
/* tensorbuf/dlpack.h is left to the languages that have DLPack consumers:
 * its structs and deleters are for C code such as NumPy and PyTorch. */
