/* tensorbuf_python.i — the Python side of tensorbuf.i (included from it under
 * #if defined(SWIGPYTHON)).
 *
 * It gives the low-level module tensorbuf_core (C names, C argument order)
 * the typemaps of the catalogue in tensorbuf.i, plus what only Python needs:
 * the exception classes, two C types that export the buffer protocol
 * (TensorBase, with __dlpack__, and MapBuffer) and DLPack capsules. The
 * pure-Python package bindings/python/tensorbuf/ builds the Pythonic API on
 * top, its Tensor and Map deriving from those two types.
 *
 * Typemaps and their ownership rules
 * ----------------------------------
 *   tb_status (out)          None, or raises the status's class (below)
 *   HANDLE ** (argout)       a new object owning one reference (SWIG
 *                            destructor: tb_*_unref / tb_map_free)
 *   tb_dtype *out, tb_memory *out, tb_pixel_format *out, int *out_fd,
 *   tb_read_mode *mode_out,
 *   double *out, int64_t *out, uint32_t *out, uint64_t *out, double *scale_out,
 *   int64_t *zero_point_out  returned ints / floats, in order (several: a
 *                            list); an fd is the caller's to close
 *   (size_t ndim, const int64_t *shape), (size_t nindex,
 *   const int64_t *index)    any sequence of ints (__index__), or None for
 *                            (0, NULL); copied for the call only
 *   tb_tensor_from_buffer    strides: None or a sequence of ndim ints
 *   tb_tensor_set_quantization
 *                            scales: sequence of floats (count = its
 *                            length, None = 0); zero_points: None or count
 *                            ints
 *   (void *dst, size_t size, tb_tensor *tensor)
 *                            the tensor in, a new bytes object out
 *   (const void *src, size_t size)
 *                            any C-contiguous buffer (bytes, bytearray,
 *                            memoryview, numpy array), or None; read during
 *                            the call only
 *   const tb_alloc_options *opts
 *                            None or a dict with any of version, memory
 *                            (name or int), alignment, name, flags (int)
 *   tb_alloc_options *opts (tb_alloc_options_init)
 *                            returned as such a dict (memory by name)
 *   const tb_listener_options *opts
 *                            None or a dict with any of version, mode,
 *                            uids (a sequence of ints), flags,
 *                            hello_timeout_ms, channel_options (a dict as
 *                            below)
 *   const tb_channel_options *opts
 *                            None or a dict with any of version,
 *                            max_buffers, max_mapped_bytes
 *   int64_t *pid, *uid, *gid returned ints (tb_channel_peer_credentials)
 *   uint32_t *version, *own_max_buffers, *peer_max_buffers,
 *   uint64_t *own_max_mapped_bytes, *peer_max_mapped_bytes
 *                            returned ints (tb_channel_version,
 *                            tb_channel_limits)
 *   (const uint8_t *descriptor, size_t length)
 *                            any C-contiguous buffer; read during the call
 *   (const int *fds, size_t nfds)
 *                            a sequence of at most TB_MAX_DIMS fds, borrowed
 *   tb_image_new_with_layout(width, height, format, offsets, strides,
 *                            dtype, opts)
 *                            offsets a sequence; strides None or one
 *                            entry per offset
 *   tb_image_import(width, height, format, fds, offsets, strides)
 *                            fds a sequence; offsets and strides None or
 *                            one entry per fd (0..2^64-1)
 *   tb_tensor_export(tensor, flags)
 *                            (descriptor bytes, [new fds]); the caller
 *                            closes the fds
 *   tb_buffer_wrap(data, flags)
 *                            data: any C-contiguous buffer or None; the
 *                            tb_buffer holds the Py_buffer (so the object)
 *                            until its destroy-notify runs, which takes the
 *                            GIL itself; a read-only buffer is always
 *                            wrapped TB_BUFFER_READ_ONLY
 *   void *tb_map_data        the address as an int (None for NULL)
 *
 * Errors: one class per TB_STATUS_MAP entry, generated at import from
 * tb_status_entries: tensorbuf.Error, then e.g. ShapeError(Error, ValueError)
 * with class attributes code and name; SystemError(Error, OSError) carries
 * errno = tb_last_errno(). The natural builtin of each status is in
 * tb_py_builtin_bases; a status missing there derives from Error alone.
 *
 * The GIL: calls that block (waits, receives, accepts, connects) release it.
 * Destroy-notifies that touch Python objects take it, and do nothing once the
 * interpreter is finalizing on another thread or gone. */

%begin %{
#define PY_SSIZE_T_CLEAN
%}

/* Built with -threads; only the calls listed further down release the GIL. */
%nothread;

%{
#include <ctype.h>
#include <limits.h>
#include <string.h>
#include <unistd.h>

/* Returned by the Python-specific wrappers below when they have raised a
 * Python exception themselves; never a library status. */
#define TB_PY_RAISED INT32_MIN

/* ---- errors ---------------------------------------------------------- */

static PyObject *tb_py_error_base;      /* tensorbuf.Error */
static PyObject *tb_py_error_classes;   /* {code: class} */

/* The builtin each status also derives from, by stable name. */
static const struct {
  const char *status;
  PyObject **builtin;
} tb_py_builtin_bases[] = {
    {"TB_ERR_INVALID_ARGUMENT", &PyExc_ValueError},
    {"TB_ERR_SHAPE", &PyExc_ValueError},
    {"TB_ERR_DTYPE", &PyExc_TypeError},
    {"TB_ERR_OUT_OF_RANGE", &PyExc_IndexError},
    {"TB_ERR_NO_MEMORY", &PyExc_MemoryError},
    {"TB_ERR_SYSTEM", &PyExc_OSError},
    {"TB_ERR_UNSUPPORTED", &PyExc_NotImplementedError},
    {"TB_ERR_BAD_FD", &PyExc_OSError},
    {"TB_ERR_READ_ONLY", &PyExc_PermissionError},
    {"TB_ERR_LAYOUT", &PyExc_ValueError},
    {"TB_ERR_VERSION", &PyExc_ValueError},
    {"TB_ERR_TIMEOUT", &PyExc_TimeoutError},
    {"TB_ERR_CLOSED", &PyExc_ConnectionError},
    {"TB_ERR_PROTOCOL", &PyExc_ValueError},
};

static PyObject *tb_py_builtin_base(const char *status) {
  for (size_t i = 0; i < sizeof tb_py_builtin_bases / sizeof *tb_py_builtin_bases;
       i++)
    if (strcmp(tb_py_builtin_bases[i].status, status) == 0)
      return *tb_py_builtin_bases[i].builtin;
  return NULL;
}

/* "TB_ERR_OUT_OF_RANGE" -> "OutOfRangeError". */
static void tb_py_class_name(char *out, size_t size, const char *status) {
  size_t n = 0;
  int upper = 1;
  for (const char *c = status + strlen("TB_ERR_"); *c != '\0' && n + 1 < size;
       c++) {
    if (*c == '_') {
      upper = 1;
      continue;
    }
    out[n++] = upper ? *c : (char)tolower((unsigned char)*c);
    upper = 0;
  }
  snprintf(out + n, size - n, "Error");
}

/* The class of `status` (borrowed), or NULL with an exception set. */
static PyObject *tb_py_error_class(tb_status status) {
  PyObject *code = PyLong_FromLong(status);
  PyObject *cls =
      code != NULL ? PyDict_GetItemWithError(tb_py_error_classes, code) : NULL;
  Py_XDECREF(code);
  if (cls == NULL && !PyErr_Occurred())
    cls = tb_py_error_base; /* a status newer than these bindings */
  return cls;
}

/* A class per status, module attributes named after them, and `errors`
 * ({code: class}). Returns 0 or -1 with an exception set. */
static int tb_py_make_errors(PyObject *module) {
  tb_py_error_base = PyErr_NewExceptionWithDoc(
      "tensorbuf.Error",
      "Base of every tensorbuf error; .code and .name identify the status.",
      PyExc_Exception, NULL);
  tb_py_error_classes = PyDict_New();
  if (tb_py_error_base == NULL || tb_py_error_classes == NULL)
    return -1;
  if (PyObject_SetAttrString(tb_py_error_base, "code", Py_None) < 0 ||
      PyObject_SetAttrString(tb_py_error_base, "name", Py_None) < 0 ||
      PyModule_AddObjectRef(module, "Error", tb_py_error_base) < 0)
    return -1;
  for (size_t i = 0; i < sizeof tb_status_entries / sizeof *tb_status_entries;
       i++) {
    const tb_status_entry *entry = &tb_status_entries[i];
    if (entry->code == TB_OK)
      continue;
    char name[64], qualified[80];
    tb_py_class_name(name, sizeof name, entry->name);
    snprintf(qualified, sizeof qualified, "tensorbuf.%s", name);
    PyObject *builtin = tb_py_builtin_base(entry->name);
    PyObject *bases = builtin != NULL
                          ? PyTuple_Pack(2, tb_py_error_base, builtin)
                          : PyTuple_Pack(1, tb_py_error_base);
    PyObject *attributes = Py_BuildValue("{s:i,s:s,s:s}", "code", entry->code,
                                         "name", entry->name, "__doc__",
                                         entry->text);
    PyObject *cls = bases && attributes ? PyErr_NewException(qualified, bases,
                                                             attributes)
                                        : NULL;
    Py_XDECREF(bases);
    Py_XDECREF(attributes);
    if (cls == NULL)
      return -1;
    PyObject *code = PyLong_FromLong(entry->code);
    int failed = code == NULL ||
                 PyDict_SetItem(tb_py_error_classes, code, cls) < 0 ||
                 PyModule_AddObjectRef(module, name, cls) < 0;
    Py_XDECREF(code);
    Py_DECREF(cls);
    if (failed)
      return -1;
  }
  return PyModule_AddObjectRef(module, "errors", tb_py_error_classes);
}

/* Raises the class of `status` with tb_last_error()'s message; a system
 * error also carries tb_last_errno() as errno. */
static void tb_py_raise(tb_status status) {
  PyObject *cls = tb_py_error_class(status);
  if (cls == NULL)
    return;
  PyObject *exc =
      status == TB_ERR_SYSTEM
          ? PyObject_CallFunction(cls, "is", tb_last_errno(), tb_last_error())
          : PyObject_CallFunction(cls, "s", tb_last_error());
  if (exc == NULL)
    return;
  PyErr_SetObject(cls, exc);
  Py_DECREF(exc);
}

/* Destroy-notifies may run on any thread, also while the interpreter shuts
 * down: then they leave the Python object alone (a leak at exit) rather than
 * take a GIL that no longer exists. */
#if PY_VERSION_HEX >= 0x030D0000
#define TB_PY_FINALIZING() Py_IsFinalizing()
#else
#define TB_PY_FINALIZING() _Py_IsFinalizing()
#endif

static int tb_py_can_take_gil(void) {
  return Py_IsInitialized() && !(TB_PY_FINALIZING() && !PyGILState_Check());
}

/* ---- sequences ---------------------------------------------------------- */

/* A sequence of Python ints as int64_t, inline up to TB_MAX_DIMS. */
typedef struct tb_py_int64s {
  int64_t *items;
  size_t count;
  int64_t inline_items[TB_MAX_DIMS];
} tb_py_int64s;

#define TB_PY_INT64S_INIT {NULL, 0, {0}}

/* None gives (NULL, 0); `is_unsigned` takes 0..2^64-1 (the bits of a
 * uint64_t array) instead of int64_t's range. Returns 0 with an exception set
 * on failure. */
static int tb_py_integers_from(tb_py_int64s *array, PyObject *sequence,
                               const char *argument, int is_unsigned) {
  array->items = NULL;
  array->count = 0;
  if (sequence == Py_None)
    return 1;
  /* A tuple, never the list itself (PySequence_Fast's choice): an item's
   * __index__ or __float__ can clear a list, freeing what the loop reads. */
  PyObject *fast = PySequence_Tuple(sequence);
  if (fast == NULL) {
    PyErr_Format(PyExc_TypeError, "%s must be a sequence of ints, not %.200s",
                 argument, Py_TYPE(sequence)->tp_name);
    return 0;
  }
  Py_ssize_t count = PyTuple_GET_SIZE(fast);
  array->items = count <= TB_MAX_DIMS ? array->inline_items
                                      : PyMem_New(int64_t, (size_t)count);
  if (array->items == NULL) {
    Py_DECREF(fast);
    PyErr_NoMemory();
    return 0;
  }
  array->count = (size_t)count;
  for (Py_ssize_t i = 0; i < count; i++) {
    PyObject *item = PyTuple_GET_ITEM(fast, i);
    PyObject *index = PyNumber_Index(item);
    long long value = -1;
    if (index != NULL && is_unsigned)
      value = (long long)PyLong_AsUnsignedLongLong(index);
    else if (index != NULL)
      value = PyLong_AsLongLong(index);
    Py_XDECREF(index);
    if (value == -1 && PyErr_Occurred()) {
      if (PyErr_ExceptionMatches(PyExc_TypeError)) {
        PyErr_Clear();
        PyErr_Format(PyExc_TypeError, "%s[%zd] must be an int, not %.200s",
                     argument, i, Py_TYPE(item)->tp_name);
      }
      Py_DECREF(fast);
      return 0;
    }
    array->items[i] = value;
  }
  Py_DECREF(fast);
  return 1;
}

static int tb_py_int64s_from(tb_py_int64s *array, PyObject *sequence,
                             const char *argument) {
  return tb_py_integers_from(array, sequence, argument, 0);
}

static void tb_py_int64s_clear(tb_py_int64s *array) {
  if (array->items != array->inline_items)
    PyMem_Free(array->items);
  array->items = NULL;
}

/* A sequence of floats; None gives (NULL, 0). The caller frees *out. */
static int tb_py_doubles_from(double **out, size_t *count, PyObject *sequence,
                              const char *argument) {
  *out = NULL;
  *count = 0;
  if (sequence == Py_None)
    return 1;
  /* A tuple, never the list itself (PySequence_Fast's choice): an item's
   * __index__ or __float__ can clear a list, freeing what the loop reads. */
  PyObject *fast = PySequence_Tuple(sequence);
  if (fast == NULL) {
    PyErr_Format(PyExc_TypeError, "%s must be a sequence of floats, not %.200s",
                 argument, Py_TYPE(sequence)->tp_name);
    return 0;
  }
  Py_ssize_t n = PyTuple_GET_SIZE(fast);
  double *values = PyMem_New(double, n > 0 ? (size_t)n : 1);
  if (values == NULL) {
    Py_DECREF(fast);
    PyErr_NoMemory();
    return 0;
  }
  for (Py_ssize_t i = 0; i < n; i++) {
    values[i] = PyFloat_AsDouble(PyTuple_GET_ITEM(fast, i));
    if (values[i] == -1.0 && PyErr_Occurred()) {
      PyMem_Free(values);
      Py_DECREF(fast);
      return 0;
    }
  }
  Py_DECREF(fast);
  *out = values;
  *count = (size_t)n;
  return 1;
}

/* A sequence of at most TB_MAX_DIMS fds into `fds` (the count in
 * array->count; an fd that does not fit an int is an OverflowError). */
static int tb_py_fds_from(tb_py_int64s *array, int *fds, PyObject *sequence,
                          const char *argument) {
  if (!tb_py_int64s_from(array, sequence, argument))
    return 0;
  if (array->count > TB_MAX_DIMS) {
    PyErr_Format(PyExc_ValueError, "%s has %zu entries; at most %d", argument,
                 array->count, TB_MAX_DIMS);
    return 0;
  }
  for (size_t i = 0; i < array->count; i++) {
    if (array->items[i] < INT_MIN || array->items[i] > INT_MAX) {
      PyErr_Format(PyExc_OverflowError, "%s[%zu] is not a C int", argument, i);
      return 0;
    }
    fds[i] = (int)array->items[i];
  }
  return 1;
}

/* ---- allocation options ------------------------------------------------- */

/* Fills *opts from a dict (defaults for missing keys); None gives NULL. */
static int tb_py_alloc_options_from(const tb_alloc_options **out,
                                    tb_alloc_options *opts, PyObject *dict) {
  *out = NULL;
  if (dict == Py_None)
    return 1;
  if (!PyDict_Check(dict)) {
    PyErr_Format(PyExc_TypeError, "opts must be a dict or None, not %.200s",
                 Py_TYPE(dict)->tp_name);
    return 0;
  }
  tb_alloc_options_init(opts, TB_ALLOC_OPTIONS_VERSION);
  PyObject *key, *value;
  Py_ssize_t position = 0;
  while (PyDict_Next(dict, &position, &key, &value)) {
    const char *field = PyUnicode_Check(key) ? PyUnicode_AsUTF8(key) : NULL;
    if (field == NULL) {
      PyErr_Clear();
      PyErr_SetString(PyExc_TypeError, "opts keys must be field names");
      return 0;
    }
    if (strcmp(field, "name") == 0) {
      opts->name = value == Py_None ? NULL : PyUnicode_AsUTF8(value);
      if (value != Py_None && opts->name == NULL)
        return 0;
    } else if (strcmp(field, "memory") == 0 && PyUnicode_Check(value)) {
      tb_memory memory;
      tb_status status = tb_memory_from_name(&memory, PyUnicode_AsUTF8(value));
      if (status != TB_OK) {
        tb_py_raise(status);
        return 0;
      }
      opts->memory = (uint32_t)memory;
    } else {
      unsigned long long number = PyLong_AsUnsignedLongLong(value);
      if (number == (unsigned long long)-1 && PyErr_Occurred())
        return 0;
      if (strcmp(field, "alignment") == 0)
        opts->alignment = number;
      else if (number > UINT32_MAX) {
        PyErr_Format(PyExc_OverflowError, "opts[\"%s\"] does not fit 32 bits",
                     field);
        return 0;
      } else if (strcmp(field, "version") == 0)
        opts->version = (uint32_t)number;
      else if (strcmp(field, "memory") == 0)
        opts->memory = (uint32_t)number;
      else if (strcmp(field, "flags") == 0)
        opts->flags = (uint32_t)number;
      else if (strcmp(field, "device") == 0)
        opts->device = (uint32_t)number;
      else {
        PyErr_Format(PyExc_TypeError, "opts has no field \"%s\"", field);
        return 0;
      }
    }
  }
  *out = opts;
  return 1;
}

static PyObject *tb_py_alloc_options_dict(const tb_alloc_options *opts) {
  const char *memory = tb_memory_name((tb_memory)opts->memory);
  PyObject *dict = Py_BuildValue(
      "{s:I,s:s,s:K,s:z,s:I}", "version", opts->version, "memory", memory,
      "alignment", (unsigned long long)opts->alignment, "name", opts->name,
      "flags", opts->flags);
  if (dict != NULL && opts->version >= 2) { /* the field version 2 added */
    PyObject *device = PyLong_FromUnsignedLong(opts->device);
    if (device == NULL || PyDict_SetItemString(dict, "device", device) != 0)
      Py_CLEAR(dict);
    Py_XDECREF(device);
  }
  return dict;
}

/* ---- listener options --------------------------------------------------- */

/* Fills *opts from a dict called `name` in messages (defaults for missing
 * keys); None gives NULL. */
static int tb_py_channel_options_from(const tb_channel_options **out,
                                      tb_channel_options *opts,
                                      const char *name, PyObject *dict) {
  *out = NULL;
  if (dict == Py_None)
    return 1;
  if (!PyDict_Check(dict)) {
    PyErr_Format(PyExc_TypeError, "%s must be a dict or None, not %.200s",
                 name, Py_TYPE(dict)->tp_name);
    return 0;
  }
  tb_channel_options_init(opts, TB_CHANNEL_OPTIONS_VERSION);
  PyObject *key, *value;
  Py_ssize_t position = 0;
  while (PyDict_Next(dict, &position, &key, &value)) {
    const char *field = PyUnicode_Check(key) ? PyUnicode_AsUTF8(key) : NULL;
    if (field == NULL) {
      PyErr_Clear();
      PyErr_Format(PyExc_TypeError, "%s keys must be field names", name);
      return 0;
    }
    unsigned long long number = PyLong_AsUnsignedLongLong(value);
    if (number == (unsigned long long)-1 && PyErr_Occurred())
      return 0;
    if (strcmp(field, "max_mapped_bytes") == 0)
      opts->max_mapped_bytes = number;
    else if (strcmp(field, "version") == 0 && number <= UINT32_MAX)
      opts->version = (uint32_t)number;
    else if (strcmp(field, "max_buffers") == 0 && number <= UINT32_MAX)
      opts->max_buffers = (uint32_t)number;
    else {
      PyErr_Format(PyExc_TypeError, "%s has no field \"%s\" (or it does not "
                   "fit)", name, field);
      return 0;
    }
  }
  *out = opts;
  return 1;
}

/* Most uids a listener's options list here. */
#define TB_PY_MAX_UIDS 64

/* Fills *opts from a dict (defaults for missing keys; "uids" a sequence of
 * ints, kept in `uids`; "channel_options" a dict, kept in `channel`); None
 * gives NULL. */
static int tb_py_listener_options_from(const tb_listener_options **out,
                                       tb_listener_options *opts,
                                       uint32_t *uids,
                                       tb_channel_options *channel,
                                       PyObject *dict) {
  *out = NULL;
  if (dict == Py_None)
    return 1;
  if (!PyDict_Check(dict)) {
    PyErr_Format(PyExc_TypeError, "opts must be a dict or None, not %.200s",
                 Py_TYPE(dict)->tp_name);
    return 0;
  }
  tb_listener_options_init(opts, TB_LISTENER_OPTIONS_VERSION);
  PyObject *key, *value;
  Py_ssize_t position = 0;
  while (PyDict_Next(dict, &position, &key, &value)) {
    const char *field = PyUnicode_Check(key) ? PyUnicode_AsUTF8(key) : NULL;
    if (field == NULL) {
      PyErr_Clear();
      PyErr_SetString(PyExc_TypeError, "opts keys must be field names");
      return 0;
    }
    if (strcmp(field, "uids") == 0) {
      PyObject *items = PySequence_Fast(value, "opts[\"uids\"] must be a sequence");
      if (items == NULL)
        return 0;
      Py_ssize_t n = PySequence_Fast_GET_SIZE(items);
      if (n > TB_PY_MAX_UIDS) {
        Py_DECREF(items);
        PyErr_Format(PyExc_ValueError, "opts[\"uids\"] lists %zd uids; at most %d",
                     n, TB_PY_MAX_UIDS);
        return 0;
      }
      for (Py_ssize_t i = 0; i < n; i++) {
        unsigned long uid =
            PyLong_AsUnsignedLong(PySequence_Fast_GET_ITEM(items, i));
        if ((uid == (unsigned long)-1 && PyErr_Occurred()) || uid > UINT32_MAX) {
          Py_DECREF(items);
          if (!PyErr_Occurred())
            PyErr_SetString(PyExc_OverflowError, "a uid does not fit 32 bits");
          return 0;
        }
        uids[i] = (uint32_t)uid;
      }
      Py_DECREF(items);
      opts->uids = n > 0 ? uids : NULL;
      opts->nuids = (size_t)n;
      continue;
    }
    if (strcmp(field, "channel_options") == 0) {
      if (!tb_py_channel_options_from(&opts->channel_options, channel,
                                      "opts[\"channel_options\"]", value))
        return 0;
      continue;
    }
    long long number = PyLong_AsLongLong(value);
    if (number == -1 && PyErr_Occurred())
      return 0;
    if (number < INT32_MIN || number > UINT32_MAX) {
      PyErr_Format(PyExc_OverflowError, "opts[\"%s\"] does not fit 32 bits",
                   field);
      return 0;
    }
    if (strcmp(field, "version") == 0)
      opts->version = (uint32_t)number;
    else if (strcmp(field, "mode") == 0)
      opts->mode = (uint32_t)number;
    else if (strcmp(field, "flags") == 0)
      opts->flags = (uint32_t)number;
    else if (strcmp(field, "hello_timeout_ms") == 0 && number <= INT32_MAX)
      opts->hello_timeout_ms = (int32_t)number;
    else {
      PyErr_Format(PyExc_TypeError, "opts has no field \"%s\" (or it does "
                   "not fit)", field);
      return 0;
    }
  }
  *out = opts;
  return 1;
}
%}

/* ---- typemaps ----------------------------------------------------------- */

%typemap(out) tb_status {
  if ($1 != TB_OK) {
    if ($1 != TB_PY_RAISED)
      tb_py_raise($1);
    SWIG_fail;
  }
  $result = SWIG_Py_Void();
}

%typemap(in, numinputs=0, noblock=1) SWIGTYPE ** ($*1_ltype handle = NULL) {
  $1 = &handle;
}
%typemap(argout, noblock=1) SWIGTYPE ** {
  %append_output(SWIG_NewPointerObj(SWIG_as_voidptr(*$1), $*1_descriptor,
                                    SWIG_POINTER_OWN));
}

%define TB_PY_VALUE_OUT(TYPE, NAME, TO_PYTHON)
%typemap(in, numinputs=0, noblock=1) TYPE *NAME (TYPE value = (TYPE)0) {
  $1 = &value;
}
%typemap(argout, noblock=1) TYPE *NAME { %append_output(TO_PYTHON(*$1)); }
%enddef
TB_PY_VALUE_OUT(tb_dtype, out, PyLong_FromLong)
TB_PY_VALUE_OUT(tb_memory, out, PyLong_FromLong)
TB_PY_VALUE_OUT(tb_pixel_format, out, PyLong_FromLong)
TB_PY_VALUE_OUT(int, out_fd, PyLong_FromLong)
TB_PY_VALUE_OUT(tb_read_mode, mode_out, PyLong_FromLong)
TB_PY_VALUE_OUT(double, out, PyFloat_FromDouble)
TB_PY_VALUE_OUT(int64_t, out, PyLong_FromLongLong)
TB_PY_VALUE_OUT(uint32_t, out, PyLong_FromUnsignedLong)
TB_PY_VALUE_OUT(uint64_t, out, PyLong_FromUnsignedLongLong)
TB_PY_VALUE_OUT(double, scale_out, PyFloat_FromDouble)
TB_PY_VALUE_OUT(int64_t, zero_point_out, PyLong_FromLongLong)
TB_PY_VALUE_OUT(int64_t, pid, PyLong_FromLongLong)
TB_PY_VALUE_OUT(int64_t, uid, PyLong_FromLongLong)
TB_PY_VALUE_OUT(int64_t, gid, PyLong_FromLongLong)
TB_PY_VALUE_OUT(uint32_t, version, PyLong_FromUnsignedLong)
TB_PY_VALUE_OUT(uint32_t, own_max_buffers, PyLong_FromUnsignedLong)
TB_PY_VALUE_OUT(uint64_t, own_max_mapped_bytes, PyLong_FromUnsignedLongLong)
TB_PY_VALUE_OUT(uint32_t, peer_max_buffers, PyLong_FromUnsignedLong)
TB_PY_VALUE_OUT(uint64_t, peer_max_mapped_bytes, PyLong_FromUnsignedLongLong)

%define TB_PY_INT64_ARRAY(COUNT, ARRAY)
%typemap(in) (size_t COUNT, const int64_t *ARRAY)
    (tb_py_int64s array = TB_PY_INT64S_INIT) {
  if (!tb_py_int64s_from(&array, $input, "$2_name"))
    SWIG_fail;
  $1 = array.count;
  $2 = array.items;
}
%typemap(freearg) (size_t COUNT, const int64_t *ARRAY) {
  tb_py_int64s_clear(&array$argnum);
}
%enddef
TB_PY_INT64_ARRAY(ndim, shape)
TB_PY_INT64_ARRAY(nindex, index)

%typemap(in) (void *dst, size_t size, tb_tensor *tensor) (PyObject *bytes = NULL) {
  void *pointer = NULL;
  int result = SWIG_ConvertPtr($input, &pointer, SWIGTYPE_p_tb_tensor, 0);
  if (!SWIG_IsOK(result))
    SWIG_exception_fail(SWIG_ArgError(result),
                        "in method '$symname', argument 1 must be a tb_tensor");
  $3 = (tb_tensor *)pointer;
  uint64_t nbytes = tb_tensor_nbytes($3);
  if (nbytes > PY_SSIZE_T_MAX) {
    PyErr_NoMemory();
    SWIG_fail;
  }
  bytes = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)nbytes);
  if (bytes == NULL)
    SWIG_fail;
  $1 = PyBytes_AS_STRING(bytes);
  $2 = (size_t)nbytes;
}
%typemap(argout, noblock=1) (void *dst, size_t size, tb_tensor *tensor) {
  %append_output(bytes$argnum);
  bytes$argnum = NULL;
}
%typemap(freearg) (void *dst, size_t size, tb_tensor *tensor) {
  Py_XDECREF(bytes$argnum);
}

%typemap(in) (const void *src, size_t size) (Py_buffer view = {0}) {
  if ($input != Py_None) {
    if (PyObject_GetBuffer($input, &view, PyBUF_C_CONTIGUOUS) < 0)
      SWIG_fail;
    $1 = view.buf;
    $2 = (size_t)view.len;
  } else {
    $1 = NULL;
    $2 = 0;
  }
}
%typemap(freearg) (const void *src, size_t size) {
  if (view$argnum.obj != NULL)
    PyBuffer_Release(&view$argnum);
}

%typemap(in) (const uint8_t *descriptor, size_t length) (Py_buffer view = {0}) {
  if ($input != Py_None) {
    if (PyObject_GetBuffer($input, &view, PyBUF_C_CONTIGUOUS) < 0)
      SWIG_fail;
    $1 = view.buf;
    $2 = (size_t)view.len;
  } else {
    $1 = NULL;
    $2 = 0;
  }
}
%typemap(freearg) (const uint8_t *descriptor, size_t length) {
  if (view$argnum.obj != NULL)
    PyBuffer_Release(&view$argnum);
}

%typemap(in) (const int *fds, size_t nfds)
    (tb_py_int64s array = TB_PY_INT64S_INIT, int values[TB_MAX_DIMS]) {
  if (!tb_py_fds_from(&array, values, $input, "fds"))
    SWIG_fail;
  $1 = array.count > 0 ? values : NULL;
  $2 = array.count;
}
%typemap(freearg) (const int *fds, size_t nfds) {
  tb_py_int64s_clear(&array$argnum);
}

%typemap(in) const tb_alloc_options *opts (tb_alloc_options options) {
  if (!tb_py_alloc_options_from((const tb_alloc_options **)&$1, &options,
                                $input))
    SWIG_fail;
}
/* Without this the init typemap below would also match the const type. */
%typemap(argout) const tb_alloc_options *opts ""
%typemap(in, numinputs=0, noblock=1) tb_alloc_options *opts
    (tb_alloc_options options) {
  $1 = &options;
}
%typemap(argout, noblock=1) tb_alloc_options *opts {
  %append_output(tb_py_alloc_options_dict($1));
}

%typemap(in) const tb_listener_options *opts
    (tb_listener_options options, uint32_t uids[TB_PY_MAX_UIDS],
     tb_channel_options channel) {
  if (!tb_py_listener_options_from((const tb_listener_options **)&$1,
                                   &options, uids, &channel, $input))
    SWIG_fail;
}
%typemap(in) const tb_channel_options *opts (tb_channel_options options) {
  if (!tb_py_channel_options_from((const tb_channel_options **)&$1, &options,
                                  "opts", $input))
    SWIG_fail;
}
%ignore tb_channel_options;
%ignore tb_channel_options_init;
%ignore TB_CHANNEL_OPTIONS_INIT;
/* Options are dicts: the struct and its init are not wrapped. */
%ignore tb_listener_options;
%ignore tb_listener_options_init;
%ignore TB_LISTENER_OPTIONS_INIT;

%typemap(out) void *tb_map_data {
  $result = $1 != NULL ? PyLong_FromVoidPtr($1) : SWIG_Py_Void();
}

/* ---- Python-specific replacements ---------------------------------------
 * Calls whose arrays depend on each other's lengths take whole Python
 * objects, check the lengths, then call the C function under its own name. */

%ignore tb_tensor_from_buffer;
%rename(tb_tensor_from_buffer) tb_py_tensor_from_buffer;
%ignore tb_tensor_set_quantization;
%rename(tb_tensor_set_quantization) tb_py_tensor_set_quantization;
%ignore tb_buffer_wrap;
%rename(tb_buffer_wrap) tb_py_buffer_wrap;
%ignore tb_image_import;
%rename(tb_image_import) tb_py_image_import;
%ignore tb_image_new_with_layout;
%rename(tb_image_new_with_layout) tb_py_image_new_with_layout;
%ignore tb_tensor_export;
%rename(tb_tensor_export) tb_py_tensor_export;

%inline %{
static tb_status tb_py_tensor_from_buffer(tb_tensor **out, tb_buffer *buffer,
                                          uint64_t byte_offset, tb_dtype dtype,
                                          PyObject *shape, PyObject *strides) {
  tb_py_int64s dims = TB_PY_INT64S_INIT, steps = TB_PY_INT64S_INIT;
  tb_status status = TB_PY_RAISED;
  if (tb_py_int64s_from(&dims, shape, "shape") &&
      tb_py_int64s_from(&steps, strides, "strides")) {
    if (strides != Py_None && steps.count != dims.count)
      PyErr_Format(PyExc_ValueError,
                   "strides has %zu entries but shape has %zu", steps.count,
                   dims.count);
    else
      status = tb_tensor_from_buffer(out, buffer, byte_offset, dtype,
                                     dims.count, dims.items, steps.items);
  }
  tb_py_int64s_clear(&dims);
  tb_py_int64s_clear(&steps);
  return status;
}

/* tb_image_import(width, height, format, fds, offsets, strides): offsets
 * and strides None or one entry per fd. */
static tb_status tb_py_image_import(tb_tensor **out, uint32_t width,
                                    uint32_t height, tb_pixel_format format,
                                    PyObject *fds, PyObject *offsets,
                                    PyObject *strides) {
  tb_py_int64s plane_fds = TB_PY_INT64S_INIT, plane_offsets = TB_PY_INT64S_INIT,
               plane_strides = TB_PY_INT64S_INIT;
  int fd_values[TB_MAX_DIMS];
  tb_status status = TB_PY_RAISED;
  if (tb_py_fds_from(&plane_fds, fd_values, fds, "fds") &&
      tb_py_integers_from(&plane_offsets, offsets, "offsets", 1) &&
      tb_py_integers_from(&plane_strides, strides, "strides", 1)) {
    if (offsets != Py_None && plane_offsets.count != plane_fds.count)
      PyErr_Format(PyExc_ValueError, "offsets has %zu entries; fds has %zu",
                   plane_offsets.count, plane_fds.count);
    else if (strides != Py_None && plane_strides.count != plane_fds.count)
      PyErr_Format(PyExc_ValueError, "strides has %zu entries; fds has %zu",
                   plane_strides.count, plane_fds.count);
    else
      status = tb_image_import(
          out, width, height, format, plane_fds.count,
          plane_fds.count > 0 ? fd_values : NULL,
          (const uint64_t *)plane_offsets.items,
          (const uint64_t *)plane_strides.items);
  }
  tb_py_int64s_clear(&plane_fds);
  tb_py_int64s_clear(&plane_offsets);
  tb_py_int64s_clear(&plane_strides);
  return status;
}

/* tb_image_new_with_layout(width, height, format, offsets, strides, dtype,
 * opts): nplanes from offsets; strides one entry per offset. */
static tb_status tb_py_image_new_with_layout(
    tb_tensor **out, uint32_t width, uint32_t height, tb_pixel_format format,
    PyObject *offsets, PyObject *strides, tb_dtype dtype,
    const tb_alloc_options *opts) {
  tb_py_int64s plane_offsets = TB_PY_INT64S_INIT,
               plane_strides = TB_PY_INT64S_INIT;
  tb_status status = TB_PY_RAISED;
  if (tb_py_integers_from(&plane_offsets, offsets, "offsets", 1) &&
      tb_py_integers_from(&plane_strides, strides, "strides", 1)) {
    if (strides != Py_None && plane_strides.count != plane_offsets.count)
      PyErr_Format(PyExc_ValueError, "strides has %zu entries; offsets has %zu",
                   plane_strides.count, plane_offsets.count);
    else
      status = tb_image_new_with_layout(
          out, width, height, format, plane_offsets.count,
          (const uint64_t *)plane_offsets.items,
          (const uint64_t *)plane_strides.items, dtype, opts);
  }
  tb_py_int64s_clear(&plane_offsets);
  tb_py_int64s_clear(&plane_strides);
  return status;
}

/* tb_py_safetensors_tensors(file) -> [(name, tensor), ...] in the header's
 * order: what safetensors.load needs, in one call rather than two calls
 * per tensor (the Python side of opening a file was as slow as all the
 * C). */
static PyObject *tb_py_safetensors_tensors(const tb_safetensors *file) {
  size_t count = tb_safetensors_count(file);
  PyObject *list = PyList_New((Py_ssize_t)count);
  for (size_t i = 0; list != NULL && i < count; i++) {
    const char *name = tb_safetensors_name(file, i);
    tb_tensor *tensor = NULL;
    tb_status status = tb_safetensors_tensor(&tensor, file, name);
    if (status != TB_OK) {
      tb_py_raise(status);
      Py_CLEAR(list);
      break;
    }
    /* The proxy owns the reference from here on, whatever fails next. */
    PyObject *proxy =
        SWIG_NewPointerObj(tensor, SWIGTYPE_p_tb_tensor, SWIG_POINTER_OWN);
    PyObject *item = proxy != NULL ? Py_BuildValue("(sN)", name, proxy) : NULL;
    if (item == NULL) {
      if (proxy == NULL)
        tb_tensor_unref(tensor);
      Py_CLEAR(list);
      break;
    }
    PyList_SET_ITEM(list, (Py_ssize_t)i, item);
  }
  return list;
}

/* tb_tensor_export(tensor, flags) -> (descriptor bytes, [fds]); the caller
 * sends both and closes the fds. */
static PyObject *tb_py_tensor_export(const tb_tensor *tensor, uint32_t flags) {
  /* A first try in a small buffer; *length then says what is needed. */
  uint8_t small[512];
  uint8_t *descriptor = small;
  size_t length = 0, nfds = TB_DESCRIPTOR_MAX_FDS; /* fds' capacity */
  int fds[TB_DESCRIPTOR_MAX_FDS];
  tb_status status = tb_tensor_export(descriptor, sizeof small, &length, fds,
                                      &nfds, tensor, flags);
  if (status == TB_ERR_OUT_OF_RANGE && length > sizeof small) {
    descriptor = PyMem_Malloc(length);
    if (descriptor == NULL)
      return PyErr_NoMemory();
    status = tb_tensor_export(descriptor, length, &length, fds, &nfds, tensor,
                              flags);
  }
  PyObject *result = NULL;
  if (status != TB_OK) {
    tb_py_raise(status);
  } else {
    PyObject *fd_list = PyList_New((Py_ssize_t)nfds);
    for (size_t i = 0; fd_list != NULL && i < nfds; i++)
      PyList_SET_ITEM(fd_list, (Py_ssize_t)i, PyLong_FromLong(fds[i]));
    result = fd_list != NULL ? Py_BuildValue("(y#N)", (const char *)descriptor,
                                             (Py_ssize_t)length, fd_list)
                             : NULL;
    if (result == NULL) /* the fds would be lost: close them */
      for (size_t i = 0; i < nfds; i++)
        close(fds[i]);
  }
  if (descriptor != small)
    PyMem_Free(descriptor);
  return result;
}

static tb_status tb_py_tensor_set_quantization(tb_tensor *tensor, int64_t axis,
                                               PyObject *scales,
                                               PyObject *zero_points) {
  double *values = NULL;
  size_t count = 0;
  tb_py_int64s points = TB_PY_INT64S_INIT;
  tb_status status = TB_PY_RAISED;
  if (tb_py_doubles_from(&values, &count, scales, "scales") &&
      tb_py_int64s_from(&points, zero_points, "zero_points")) {
    if (zero_points != Py_None && points.count != count)
      PyErr_Format(PyExc_ValueError,
                   "zero_points has %zu entries but scales has %zu",
                   points.count, count);
    else
      status = tb_tensor_set_quantization(tensor, axis, count, values,
                                          points.items);
  }
  PyMem_Free(values);
  tb_py_int64s_clear(&points);
  return status;
}
%}

%{
/* What a wrapped buffer holds: the exporter's view, released with the GIL. */
static void tb_py_release_view(void *data) {
  Py_buffer *view = data;
  if (!tb_py_can_take_gil())
    return;
  PyGILState_STATE gil = PyGILState_Ensure();
  PyBuffer_Release(view);
  PyMem_RawFree(view);
  PyGILState_Release(gil);
}
%}

%inline %{
static tb_status tb_py_buffer_wrap(tb_buffer **out, PyObject *data,
                                   uint32_t flags) {
  if (data == Py_None)
    return tb_buffer_wrap(out, NULL, 0, flags, NULL, NULL);
  Py_buffer *view = PyMem_RawMalloc(sizeof *view);
  if (view == NULL) {
    PyErr_NoMemory();
    return TB_PY_RAISED;
  }
  /* Ask for writable memory first; bytes and other immutable exporters give
   * read-only memory, wrapped read-only whatever the flags say. */
  if (PyObject_GetBuffer(data, view, PyBUF_C_CONTIGUOUS | PyBUF_WRITABLE) < 0) {
    PyErr_Clear();
    if (PyObject_GetBuffer(data, view, PyBUF_C_CONTIGUOUS) < 0) {
      PyMem_RawFree(view);
      return TB_PY_RAISED;
    }
    flags |= TB_BUFFER_READ_ONLY;
  }
  tb_status status = tb_buffer_wrap(out, view->buf, (uint64_t)view->len, flags,
                                    tb_py_release_view, view);
  if (status != TB_OK) {
    PyBuffer_Release(view);
    PyMem_RawFree(view);
  }
  return status;
}
%}

/* ---- blocking calls release the GIL (every other call keeps it) -------- */

%thread tb_fence_wait;
%thread tb_channel_recv;
%thread tb_channel_recv_fence;
%thread tb_channel_send;
%thread tb_channel_send_fence;
%thread tb_channel_connect;
%thread tb_listener_accept;
%thread tb_pool_acquire;

/* ---- DLPack capsules ---------------------------------------------------- */

%{
static const char tb_py_capsule_versioned[] = "dltensor_versioned";
static const char tb_py_capsule_legacy[] = "dltensor";
static const char tb_py_capsule_versioned_used[] = "used_dltensor_versioned";
static const char tb_py_capsule_legacy_used[] = "used_dltensor";

/* A capsule that no consumer renamed still owns its tensor. The deleters are
 * the library's own C code (they drop a map), so they need no GIL. */
static void tb_py_versioned_capsule_free(PyObject *capsule) {
  if (!PyCapsule_IsValid(capsule, tb_py_capsule_versioned))
    return;
  tb_dlpack_managed_tensor_versioned *managed =
      PyCapsule_GetPointer(capsule, tb_py_capsule_versioned);
  if (managed->deleter != NULL)
    managed->deleter(managed);
}

static void tb_py_legacy_capsule_free(PyObject *capsule) {
  if (!PyCapsule_IsValid(capsule, tb_py_capsule_legacy))
    return;
  tb_dlpack_managed_tensor *managed =
      PyCapsule_GetPointer(capsule, tb_py_capsule_legacy);
  if (managed->deleter != NULL)
    managed->deleter(managed);
}
%}

%inline %{
/* A "dltensor_versioned" capsule (DLPack 1.minor, minor <= 1) or, with
 * versioned false, a legacy "dltensor" one, sharing the tensor's memory.
 * read_only asks for a read-only export; copied marks it IS_COPIED. */
static PyObject *tb_py_to_dlpack(tb_tensor *tensor, bool versioned,
                                 uint32_t minor, bool read_only, bool copied) {
  if (tensor == NULL) {
    PyErr_SetString(PyExc_TypeError, "tensor must be a tb_tensor handle");
    return NULL;
  }
  if (!versioned) {
    tb_dlpack_managed_tensor *managed = NULL;
    tb_status status = tb_tensor_to_dlpack_legacy(&managed, tensor);
    if (status != TB_OK) {
      tb_py_raise(status);
      return NULL;
    }
    PyObject *capsule = PyCapsule_New(managed, tb_py_capsule_legacy,
                                      tb_py_legacy_capsule_free);
    if (capsule == NULL)
      managed->deleter(managed);
    return capsule;
  }
  tb_dlpack_managed_tensor_versioned *managed = NULL;
  tb_status status = tb_tensor_to_dlpack(
      &managed, tensor, read_only ? TB_DLPACK_EXPORT_READ_ONLY : 0);
  if (status != TB_OK) {
    tb_py_raise(status);
    return NULL;
  }
  /* Our tensors use nothing newer than what the consumer reads. */
  if (minor < managed->version.minor)
    managed->version.minor = minor;
  if (copied)
    managed->flags |= TB_DLPACK_FLAG_IS_COPIED;
  PyObject *capsule = PyCapsule_New(managed, tb_py_capsule_versioned,
                                    tb_py_versioned_capsule_free);
  if (capsule == NULL)
    managed->deleter(managed);
  return capsule;
}

/* Consumes a "dltensor_versioned" or "dltensor" capsule: a new tensor over
 * the producer's memory that calls its deleter when the memory's last
 * reference goes. The capsule is renamed "used_..." only on success; after a
 * failure it still owns its tensor and its destructor deletes it. */
static PyObject *tb_py_from_dlpack(PyObject *capsule) {
  if (!PyCapsule_CheckExact(capsule)) {
    PyErr_Format(PyExc_TypeError, "expected a DLPack capsule, not %.200s",
                 Py_TYPE(capsule)->tp_name);
    return NULL;
  }
  const char *name = PyCapsule_GetName(capsule);
  tb_tensor *tensor = NULL;
  tb_status status;
  const char *used;
  if (name != NULL && strcmp(name, tb_py_capsule_versioned) == 0) {
    status = tb_tensor_from_dlpack(
        &tensor, PyCapsule_GetPointer(capsule, tb_py_capsule_versioned));
    used = tb_py_capsule_versioned_used;
  } else if (name != NULL && strcmp(name, tb_py_capsule_legacy) == 0) {
    status = tb_tensor_from_dlpack_legacy(
        &tensor, PyCapsule_GetPointer(capsule, tb_py_capsule_legacy));
    used = tb_py_capsule_legacy_used;
  } else {
    PyErr_Format(PyExc_ValueError,
                 "the capsule is named \"%s\"; a DLPack capsule is "
                 "\"dltensor_versioned\" or \"dltensor\" (\"used_...\" once "
                 "consumed)",
                 name != NULL ? name : "");
    return NULL;
  }
  if (status != TB_OK) {
    tb_py_raise(status);
    return NULL;
  }
  /* Renaming a capsule with a valid name cannot fail in CPython. */
  PyCapsule_SetName(capsule, used);
  return SWIG_NewPointerObj(tensor, SWIGTYPE_p_tb_tensor, SWIG_POINTER_OWN);
}
%}

/* ---- the buffer protocol ------------------------------------------------
 * Two C types export a tensor's memory to memoryview, NumPy and every other
 * buffer consumer, with its shape, strides and format:
 *   TensorBase  the base of the package's Tensor: each export takes its own
 *               map of the tensor in `_handle` and drops it on release; it
 *               also implements __dlpack__ / __dlpack_device__ here, in C,
 *               because NumPy's and PyTorch's from_dlpack call them per use.
 *   MapBuffer(tensor, flags)
 *               one explicit map (the base of the package's Map); exports
 *               share it, and unmap() refuses while any is alive. */

%{
/* What one export keeps until its release. */
typedef struct tb_py_export {
  tb_map *map; /* owned by the export, or NULL (MapBuffer's own map) */
  Py_ssize_t shape[TB_MAX_DIMS];
  Py_ssize_t strides[TB_MAX_DIMS]; /* bytes */
} tb_py_export;

/* PEP 3118 format of each dtype; NULL where the struct module has none. */
static const char *tb_py_buffer_format(tb_dtype dtype) {
  switch (dtype) {
  case TB_DTYPE_BOOL: return "?";
  case TB_DTYPE_U8: return "B";
  case TB_DTYPE_I8: return "b";
  case TB_DTYPE_U16: return "H";
  case TB_DTYPE_I16: return "h";
  case TB_DTYPE_U32: return "I";
  case TB_DTYPE_I32: return "i";
  case TB_DTYPE_U64: return "Q";
  case TB_DTYPE_I64: return "q";
  case TB_DTYPE_F16: return "e";
  case TB_DTYPE_F32: return "f";
  case TB_DTYPE_F64: return "d";
  default: return NULL;
  }
}

/* Raises DtypeError unless the tensor's dtype has a buffer format. */
static int tb_py_check_format(tb_tensor *tensor) {
  tb_dtype dtype = tb_tensor_dtype(tensor);
  if (tb_py_buffer_format(dtype) != NULL)
    return 1;
  PyObject *cls = tb_py_error_class(TB_ERR_DTYPE);
  if (cls != NULL)
    PyErr_Format(cls,
                 "%s elements have no Python buffer format (NumPy and the "
                 "struct module lack them); copy them out with read_bytes or "
                 "hand the tensor over with DLPack",
                 tb_dtype_name(dtype));
  return 0;
}

/* Fills `view` for a consumer asking `flags`, from `map`; on success the
 * export owns `owned_map` (may be NULL) and `view` holds `exporter`. */
static int tb_py_fill_buffer(Py_buffer *view, PyObject *exporter, tb_map *map,
                             tb_map *owned_map, int flags) {
  tb_tensor *tensor = tb_map_tensor(map);
  if (tensor == NULL) {
    PyErr_SetString(PyExc_BufferError, "the map has been unmapped");
    return -1;
  }
  if (!tb_py_check_format(tensor))
    return -1;
  int writable = (tb_map_flags(map) & TB_MAP_WRITE) != 0;
  if ((flags & PyBUF_WRITABLE) && !writable) {
    PyErr_SetString(PyExc_BufferError,
                    tb_tensor_read_only(tensor)
                        ? "the tensor's memory is read-only"
                        : "the map is read-only; map it with \"rw\" to write");
    return -1;
  }
  size_t ndim = tb_tensor_ndim(tensor);
  int contiguous = tb_tensor_is_contiguous(tensor);
  int strided = (flags & PyBUF_STRIDES) == PyBUF_STRIDES;
  int c_order = (flags & PyBUF_C_CONTIGUOUS) == PyBUF_C_CONTIGUOUS ||
                (flags & PyBUF_ANY_CONTIGUOUS) == PyBUF_ANY_CONTIGUOUS;
  int f_order = (flags & PyBUF_F_CONTIGUOUS) == PyBUF_F_CONTIGUOUS && !c_order;
  if (!contiguous && (!strided || c_order || f_order)) {
    PyErr_SetString(PyExc_BufferError,
                    "the tensor is strided; this consumer needs contiguous "
                    "memory");
    return -1;
  }
  if (f_order && ndim > 1) {
    PyErr_SetString(PyExc_BufferError,
                    "the tensor is row-major; this consumer needs Fortran "
                    "order");
    return -1;
  }
  tb_py_export *export = PyMem_Malloc(sizeof *export);
  if (export == NULL) {
    PyErr_NoMemory();
    return -1;
  }
  export->map = owned_map;
  tb_dtype dtype = tb_tensor_dtype(tensor);
  size_t elem = tb_dtype_size(dtype);
  for (size_t i = 0; i < ndim; i++) {
    export->shape[i] = (Py_ssize_t)tb_tensor_dim(tensor, i);
    export->strides[i] = (Py_ssize_t)(tb_tensor_stride(tensor, i) * (int64_t)elem);
  }
  view->buf = tb_map_data(map);
  view->obj = Py_NewRef(exporter);
  view->len = (Py_ssize_t)tb_tensor_nbytes(tensor);
  view->readonly = !writable;
  view->itemsize = (Py_ssize_t)elem;
  view->format = (flags & PyBUF_FORMAT) ? (char *)tb_py_buffer_format(dtype)
                                        : NULL;
  int shaped = (flags & PyBUF_ND) == PyBUF_ND;
  view->ndim = shaped ? (int)ndim : 1;
  view->shape = shaped ? export->shape : NULL;
  view->strides = strided ? export->strides : NULL;
  view->suboffsets = NULL;
  view->internal = export;
  return 0;
}

static void tb_py_release_export(Py_buffer *view) {
  tb_py_export *export = view->internal;
  tb_map_free(export->map);
  PyMem_Free(export);
}

/* The tb_tensor of a handle object (a SWIG tb_tensor), or NULL with a
 * TypeError. */
static tb_tensor *tb_py_tensor_of(PyObject *handle) {
  void *pointer = NULL;
  if (handle == NULL ||
      !SWIG_IsOK(SWIG_ConvertPtr(handle, &pointer, SWIGTYPE_p_tb_tensor, 0)) ||
      pointer == NULL) {
    PyErr_SetString(PyExc_TypeError, "expected a tb_tensor handle");
    return NULL;
  }
  return pointer;
}

/* ---- TensorBase ---- */

typedef struct tb_py_tensor_base {
  PyObject_HEAD
  PyObject *handle;  /* `_handle`: the SWIG tb_tensor that owns a reference */
  tb_tensor *tensor; /* its pointer, converted once when `_handle` is set */
} tb_py_tensor_base;

static PyTypeObject tb_py_tensor_base_type;

static void tb_py_tensor_base_dealloc(tb_py_tensor_base *self) {
  Py_CLEAR(self->handle);
  Py_TYPE(self)->tp_free((PyObject *)self);
}

/* The tensor of an initialised TensorBase, or NULL with an exception. */
static tb_tensor *tb_py_tensor_base_tensor(tb_py_tensor_base *self) {
  if (self->tensor == NULL)
    PyErr_SetString(PyExc_AttributeError,
                    "the tensor has no _handle (not initialised)");
  return self->tensor;
}

static PyObject *tb_py_tensor_base_get_handle(tb_py_tensor_base *self,
                                              void *unused) {
  (void)unused;
  return tb_py_tensor_base_tensor(self) != NULL ? Py_NewRef(self->handle)
                                                : NULL;
}

static int tb_py_tensor_base_set_handle(tb_py_tensor_base *self,
                                        PyObject *handle, void *unused) {
  (void)unused;
  if (handle == NULL) {
    PyErr_SetString(PyExc_AttributeError, "_handle cannot be deleted");
    return -1;
  }
  tb_tensor *tensor = tb_py_tensor_of(handle);
  if (tensor == NULL)
    return -1;
  Py_XSETREF(self->handle, Py_NewRef(handle));
  self->tensor = tensor;
  return 0;
}

static int tb_py_tensor_base_get(tb_py_tensor_base *self, Py_buffer *view,
                                 int flags) {
  tb_tensor *tensor = tb_py_tensor_base_tensor(self);
  if (tensor == NULL)
    return -1;
  tb_map *map = NULL;
  tb_status status = tb_tensor_map(
      &map, tensor,
      tb_tensor_read_only(tensor) ? TB_MAP_READ : TB_MAP_READ | TB_MAP_WRITE);
  if (status != TB_OK) {
    tb_py_raise(status);
    return -1;
  }
  if (tb_py_fill_buffer(view, (PyObject *)self, map, map, flags) < 0) {
    tb_map_free(map);
    return -1;
  }
  return 0;
}

static void tb_py_tensor_base_release(tb_py_tensor_base *self,
                                      Py_buffer *view) {
  (void)self;
  tb_py_release_export(view);
}

/* (major, minor) of a max_version / dl_device argument. */
static int tb_py_int_pair(PyObject *pair, const char *argument, long *first,
                          long *second) {
  if (!PyTuple_Check(pair) || PyTuple_GET_SIZE(pair) != 2) {
    PyErr_Format(PyExc_TypeError, "%s must be a tuple of two ints", argument);
    return 0;
  }
  *first = PyLong_AsLong(PyTuple_GET_ITEM(pair, 0));
  *second = PyLong_AsLong(PyTuple_GET_ITEM(pair, 1));
  return !PyErr_Occurred();
}

/* The DLPack device of a tensor: (kDLCUDA, ordinal) for CUDA memory,
 * (kDLCUDAHost, 0) for pinned memory, else (kDLCPU, 0). */
static void tb_py_dlpack_device_of(const tb_tensor *tensor, long *type,
                                   long *id) {
  uint32_t ordinal = 0;
  *id = 0;
  switch (tb_tensor_memory(tensor)) {
  case TB_MEMORY_CUDA:
    *type = TB_DLPACK_DEVICE_CUDA;
    if (tb_tensor_cuda_device(&ordinal, tensor) == TB_OK)
      *id = (long)ordinal;
    break;
  case TB_MEMORY_CUDA_HOST:
    *type = TB_DLPACK_DEVICE_CUDA_HOST;
    break;
  default:
    *type = TB_DLPACK_DEVICE_CPU;
  }
}

/* The array API's stream rule for __dlpack__: the consumer names the
 * stream it will use (None: the legacy default stream, 1; 2: per-thread
 * default; -1: do not synchronise; 0 is ambiguous and refused), and the
 * producer orders its pending work (tensorbuf's asynchronous copies of the
 * memory) before that stream's next work. CPU tensors take only None. */
static bool tb_py_dlpack_stream(const tb_tensor *tensor, long device_type,
                                PyObject *stream) {
  if (device_type == TB_DLPACK_DEVICE_CPU) {
    if (stream != Py_None) {
      PyErr_SetString(PyExc_BufferError,
                      "stream must be None for a CPU tensor");
      return false;
    }
    return true;
  }
  long long handle = 1;
  if (stream != Py_None) {
    handle = PyLong_AsLongLong(stream);
    if (handle == -1 && PyErr_Occurred())
      return false;
  }
  if (handle == 0) {
    PyErr_SetString(PyExc_BufferError,
                    "stream 0 is ambiguous for CUDA; pass 1 (legacy default "
                    "stream), 2 (per-thread default), a stream handle, or -1 "
                    "(no synchronisation)");
    return false;
  }
  if (handle < -1) {
    PyErr_Format(PyExc_BufferError, "stream is %lld; not a CUDA stream",
                 handle);
    return false;
  }
  if (handle == -1)
    return true;
  tb_status status;
  Py_BEGIN_ALLOW_THREADS
  status = tb_tensor_cuda_wait(tensor, (uint64_t)handle);
  Py_END_ALLOW_THREADS
  if (status != TB_OK) {
    tb_py_raise(status);
    return false;
  }
  return true;
}

/* __dlpack__(*, stream=None, max_version=None, dl_device=None, copy=None)
 * of the Python array API: a versioned capsule when the consumer reads
 * DLPack 1.x, else a legacy one (which cannot mark memory read-only: a
 * read-only tensor raises BufferError then). copy=True exports a private
 * copy (self.copy()); otherwise the memory is shared. */
static PyObject *tb_py_tensor_base_dlpack(tb_py_tensor_base *self,
                                          PyObject *const *args,
                                          Py_ssize_t nargs,
                                          PyObject *kwnames) {
  /* Parsed by hand: consumers call this once per exchange, and the vector
   * call with no arguments (what NumPy 1.x makes) then costs nothing. */
  static const char *const keywords[] = {"stream", "max_version", "dl_device",
                                         "copy"};
  PyObject *values[] = {Py_None, Py_None, Py_None, Py_None};
  if (nargs != 0) {
    PyErr_Format(PyExc_TypeError,
                 "__dlpack__() takes keyword arguments only (%zd positional "
                 "given)",
                 nargs);
    return NULL;
  }
  Py_ssize_t nkeywords = kwnames != NULL ? PyTuple_GET_SIZE(kwnames) : 0;
  for (Py_ssize_t i = 0; i < nkeywords; i++) {
    PyObject *name = PyTuple_GET_ITEM(kwnames, i);
    size_t k = 0;
    while (k < 4 && PyUnicode_CompareWithASCIIString(name, keywords[k]) != 0)
      k++;
    if (k == 4) {
      PyErr_Format(PyExc_TypeError,
                   "__dlpack__() got an unexpected keyword argument '%U'",
                   name);
      return NULL;
    }
    values[k] = args[i];
  }
  PyObject *stream = values[0], *max_version = values[1],
           *dl_device = values[2], *copy = values[3];
  tb_tensor *own = tb_py_tensor_base_tensor(self);
  if (own == NULL)
    return NULL;
  long device_type, device_id;
  tb_py_dlpack_device_of(own, &device_type, &device_id);
  if (!tb_py_dlpack_stream(own, device_type, stream))
    return NULL;
  long first, second;
  if (dl_device != Py_None) {
    if (!tb_py_int_pair(dl_device, "dl_device", &first, &second))
      return NULL;
    if (first != device_type || second != device_id) {
      PyErr_Format(PyExc_BufferError,
                   "dl_device is (%ld, %ld); the tensor is on (%ld, %ld)",
                   first, second, device_type, device_id);
      return NULL;
    }
  }
  bool versioned = false;
  uint32_t minor = TB_DLPACK_MINOR_VERSION;
  if (max_version != Py_None) {
    if (!tb_py_int_pair(max_version, "max_version", &first, &second))
      return NULL;
    versioned = first >= 1;
    if (first == 1 && second >= 0 && second < TB_DLPACK_MINOR_VERSION)
      minor = (uint32_t)second;
  }
  int copied = copy == Py_None ? 0 : PyObject_IsTrue(copy);
  if (copied < 0)
    return NULL;
  PyObject *capsule;
  if (copied) {
    /* A copy on the tensor's own device: where the consumer looks. */
    PyObject *source = NULL;
    if (device_type == TB_DLPACK_DEVICE_CPU) {
      source = PyObject_CallMethod((PyObject *)self, "copy", NULL);
    } else {
      PyObject *method = PyObject_GetAttrString((PyObject *)self, "copy");
      PyObject *kwargs = Py_BuildValue(
          "{s:s,s:l}", "memory",
          device_type == TB_DLPACK_DEVICE_CUDA ? "cuda" : "cuda_host",
          "device", device_id);
      PyObject *no_args = PyTuple_New(0);
      if (method != NULL && kwargs != NULL && no_args != NULL)
        source = PyObject_Call(method, no_args, kwargs);
      Py_XDECREF(method);
      Py_XDECREF(kwargs);
      Py_XDECREF(no_args);
    }
    if (source == NULL)
      return NULL;
    tb_tensor *tensor = NULL;
    if (PyObject_TypeCheck(source, &tb_py_tensor_base_type))
      tensor = tb_py_tensor_base_tensor((tb_py_tensor_base *)source);
    else
      PyErr_SetString(PyExc_TypeError, "copy() did not return a tensor");
    capsule = tensor != NULL
                  ? tb_py_to_dlpack(tensor, versioned, minor, false, true)
                  : NULL;
    Py_DECREF(source);
  } else {
    tb_tensor *tensor = tb_py_tensor_base_tensor(self);
    capsule = tensor != NULL
                  ? tb_py_to_dlpack(tensor, versioned, minor, false, false)
                  : NULL;
  }
  if (capsule == NULL) {
    /* The protocol's error for what cannot be exported: a negative stride,
     * or read-only memory in a legacy capsule, which cannot say so. */
    PyObject *layout = tb_py_error_class(TB_ERR_LAYOUT);
    PyObject *read_only = tb_py_error_class(TB_ERR_READ_ONLY);
    if ((layout != NULL && PyErr_ExceptionMatches(layout)) ||
        (!versioned && read_only != NULL &&
         PyErr_ExceptionMatches(read_only))) {
      PyObject *type, *value, *traceback;
      PyErr_Fetch(&type, &value, &traceback);
      PyObject *text = value != NULL ? PyObject_Str(value) : NULL;
      PyErr_SetObject(PyExc_BufferError, text);
      Py_XDECREF(text);
      Py_XDECREF(type);
      Py_XDECREF(value);
      Py_XDECREF(traceback);
    }
  }
  return capsule;
}

/* (kDLCPU, 0), made once: consumers ask before every exchange. */
static PyObject *tb_py_cpu_device;

static PyObject *tb_py_tensor_base_dlpack_device(tb_py_tensor_base *self,
                                                 PyObject *unused) {
  (void)unused;
  tb_tensor *tensor = tb_py_tensor_base_tensor(self);
  if (tensor == NULL)
    return NULL;
  long type, id;
  tb_py_dlpack_device_of(tensor, &type, &id);
  if (type == TB_DLPACK_DEVICE_CPU)
    return Py_NewRef(tb_py_cpu_device);
  return Py_BuildValue("(ll)", type, id);
}

static PyMethodDef tb_py_tensor_base_methods[] = {
    {"__dlpack__", (PyCFunction)(void (*)(void))tb_py_tensor_base_dlpack,
     METH_FASTCALL | METH_KEYWORDS,
     "__dlpack__(*, stream=None, max_version=None, dl_device=None, "
     "copy=None)\n--\n\nA DLPack capsule sharing the tensor's memory."},
    {"__dlpack_device__", (PyCFunction)tb_py_tensor_base_dlpack_device,
     METH_NOARGS,
     "(device type, id): (kDLCPU, 0), (kDLCUDA, ordinal) or (kDLCUDAHost, 0)."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef tb_py_tensor_base_getset[] = {
    {"_handle", (getter)tb_py_tensor_base_get_handle,
     (setter)tb_py_tensor_base_set_handle,
     "The tb_tensor handle (tensorbuf_core) this object owns.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyBufferProcs tb_py_tensor_base_procs = {
    (getbufferproc)tb_py_tensor_base_get,
    (releasebufferproc)tb_py_tensor_base_release,
};

static PyTypeObject tb_py_tensor_base_type = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "tensorbuf_core.TensorBase",
    .tp_basicsize = sizeof(tb_py_tensor_base),
    .tp_dealloc = (destructor)tb_py_tensor_base_dealloc,
    .tp_as_buffer = &tb_py_tensor_base_procs,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE,
    .tp_doc = "Base of tensorbuf.Tensor: the buffer protocol and DLPack over "
              "the tb_tensor in _handle.",
    .tp_methods = tb_py_tensor_base_methods,
    .tp_getset = tb_py_tensor_base_getset,
    .tp_new = PyType_GenericNew,
};

/* ---- MapBuffer ---- */

typedef struct tb_py_map_buffer {
  PyObject_HEAD
  tb_map *map;
  Py_ssize_t exports;
} tb_py_map_buffer;

static PyObject *tb_py_map_buffer_new(PyTypeObject *type, PyObject *args,
                                      PyObject *kwargs) {
  static char *keywords[] = {"tensor", "flags", NULL};
  PyObject *handle;
  unsigned int flags;
  if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OI:MapBuffer", keywords,
                                   &handle, &flags))
    return NULL;
  tb_tensor *tensor = tb_py_tensor_of(handle);
  if (tensor == NULL)
    return NULL;
  tb_map *map = NULL;
  tb_status status = tb_tensor_map(&map, tensor, flags);
  if (status != TB_OK) {
    tb_py_raise(status);
    return NULL;
  }
  tb_py_map_buffer *self = (tb_py_map_buffer *)type->tp_alloc(type, 0);
  if (self == NULL) {
    tb_map_free(map);
    return NULL;
  }
  self->map = map;
  return (PyObject *)self;
}

static void tb_py_map_buffer_dealloc(tb_py_map_buffer *self) {
  tb_map_free(self->map);
  Py_TYPE(self)->tp_free((PyObject *)self);
}

static int tb_py_map_buffer_get(tb_py_map_buffer *self, Py_buffer *view,
                                int flags) {
  if (tb_py_fill_buffer(view, (PyObject *)self, self->map, NULL, flags) < 0)
    return -1;
  self->exports++;
  return 0;
}

static void tb_py_map_buffer_release(tb_py_map_buffer *self, Py_buffer *view) {
  tb_py_release_export(view);
  self->exports--;
}

static PyObject *tb_py_map_buffer_unmap(tb_py_map_buffer *self,
                                        PyObject *unused) {
  (void)unused;
  if (self->exports > 0) {
    PyErr_Format(PyExc_BufferError,
                 "cannot unmap: %zd memoryview(s) or array(s) still use the "
                 "memory",
                 self->exports);
    return NULL;
  }
  tb_map_unmap(self->map);
  Py_RETURN_NONE;
}

static PyObject *tb_py_map_buffer_address(tb_py_map_buffer *self,
                                          void *unused) {
  (void)unused;
  void *data = tb_map_data(self->map);
  return data != NULL ? PyLong_FromVoidPtr(data) : Py_NewRef(Py_None);
}

static PyObject *tb_py_map_buffer_flags(tb_py_map_buffer *self, void *unused) {
  (void)unused;
  return PyLong_FromUnsignedLong(tb_map_flags(self->map));
}

static PyObject *tb_py_map_buffer_mapped(tb_py_map_buffer *self,
                                         void *unused) {
  (void)unused;
  return PyBool_FromLong(tb_map_tensor(self->map) != NULL);
}

static PyMethodDef tb_py_map_buffer_methods[] = {
    {"unmap", (PyCFunction)tb_py_map_buffer_unmap, METH_NOARGS,
     "Ends CPU access (idempotent); refused while the memory is in use."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef tb_py_map_buffer_getset[] = {
    {"address", (getter)tb_py_map_buffer_address, NULL,
     "Address of element 0 (None once unmapped).", NULL},
    {"flags", (getter)tb_py_map_buffer_flags, NULL,
     "TB_MAP_* flags (0 once unmapped).", NULL},
    {"mapped", (getter)tb_py_map_buffer_mapped, NULL,
     "Whether the map is still mapped.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyBufferProcs tb_py_map_buffer_procs = {
    (getbufferproc)tb_py_map_buffer_get,
    (releasebufferproc)tb_py_map_buffer_release,
};

static PyTypeObject tb_py_map_buffer_type = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "tensorbuf_core.MapBuffer",
    .tp_basicsize = sizeof(tb_py_map_buffer),
    .tp_dealloc = (destructor)tb_py_map_buffer_dealloc,
    .tp_as_buffer = &tb_py_map_buffer_procs,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE,
    .tp_doc = "MapBuffer(tensor, flags): a CPU map of a tb_tensor handle that "
              "exports the buffer protocol.",
    .tp_methods = tb_py_map_buffer_methods,
    .tp_getset = tb_py_map_buffer_getset,
    .tp_new = tb_py_map_buffer_new,
};

static int tb_py_add_type(PyObject *module, const char *name,
                          PyTypeObject *type) {
  return PyType_Ready(type) < 0 ||
                 PyModule_AddObjectRef(module, name, (PyObject *)type) < 0
             ? -1
             : 0;
}
%}

%init %{
  tb_py_cpu_device = Py_BuildValue("(ii)", TB_DLPACK_DEVICE_CPU, 0);
  if (tb_py_cpu_device == NULL || tb_py_make_errors(m) < 0 ||
      tb_py_add_type(m, "TensorBase", &tb_py_tensor_base_type) < 0 ||
      tb_py_add_type(m, "MapBuffer", &tb_py_map_buffer_type) < 0)
    return NULL;
%}

/* The C module's own attributes, re-exported by the proxy module. */
%pythoncode %{
TensorBase = _tensorbuf_core.TensorBase
MapBuffer = _tensorbuf_core.MapBuffer
Error = _tensorbuf_core.Error
errors = _tensorbuf_core.errors
for _error in errors.values():
    globals()[_error.__name__] = _error
del _error
%}
