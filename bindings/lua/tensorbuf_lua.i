/* tensorbuf_lua.i — the Lua part of tensorbuf.i: typemaps, error objects and
 * the few C functions that tensorbuf.lua builds the idiomatic layer on.
 *
 * Lua types of the typemaps listed in tensorbuf.i:
 *   tb_status            raises an error object (below) on failure
 *   HANDLE **            a userdata owning one reference, released by __gc
 *   integers             Lua integers (math.type "integer"); a float with an
 *                        integral value is accepted as input. 64-bit unsigned
 *                        values travel as their two's complement, as in
 *                        Lua's own string.pack and math.ult; narrower types
 *                        are range-checked
 *   arrays               Lua sequences; nil is NULL with length 0
 *   bytes                Lua strings
 *   opts                 {version=, memory="shm" or an integer, alignment=,
 *                        name=, flags=}, or nil; unknown fields are refused
 *   tb_buffer_wrap       tb_buffer_wrap(string [, flags]): the buffer wraps a
 *                        private copy of the string (Lua strings are
 *                        immutable, so sharing one could only ever give
 *                        read-only memory); its destroy-notify frees the copy
 *
 * Errors: every failure, including a bad argument type caught by SWIG,
 * raises a table {code=, name=, message=, errno=} with metatable
 * tensorbuf_core.Error (its __tostring gives "NAME: message"). The message
 * starts with the C function's name, as tb_last_error()'s does. */

%header %{
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define TB_LUA_ERROR "tensorbuf.Error"
#define TB_LUA_SCRATCH "tensorbuf.scratch"

/* Pushes an error object. */
static void tb_lua_push_error(lua_State *L, int code, int errnum,
                              const char *message) {
  lua_createtable(L, 0, 4);
  lua_pushinteger(L, code);
  lua_setfield(L, -2, "code");
  lua_pushstring(L, tb_status_name(code));
  lua_setfield(L, -2, "name");
  lua_pushstring(L, message);
  lua_setfield(L, -2, "message");
  lua_pushinteger(L, errnum);
  lua_setfield(L, -2, "errno");
  luaL_setmetatable(L, TB_LUA_ERROR);
}

/* Pushes an error object whose message is formatted as lua_pushfstring. */
static void tb_lua_push_errorf(lua_State *L, int code, const char *format,
                               ...) {
  va_list args;
  va_start(args, format);
  const char *message = lua_pushvfstring(L, format, args);
  va_end(args);
  tb_lua_push_error(L, code, 0, message);
  lua_remove(L, -2);
}

/* Raises the error the library just returned. */
static int tb_lua_raise_status(lua_State *L, tb_status status) {
  tb_lua_push_error(L, status, status == TB_ERR_SYSTEM ? tb_last_errno() : 0,
                    tb_last_error());
  return lua_error(L);
}

/* "tb_tensor" for a handle class, SWIG's type string otherwise. */
static const char *tb_lua_class_name(const swig_type_info *type) {
  const swig_lua_class *class_info = type->clientdata;
  return class_info != NULL ? class_info->name : type->str;
}

/* What the value at `arg` is, for messages: the class of one of this
 * module's objects, else Lua's type name. Unlike SWIG_Lua_typename it never
 * reads another library's userdata as SWIG's. */
static const char *tb_lua_typename(lua_State *L, int arg) {
  if (lua_type(L, arg) == LUA_TUSERDATA &&
      lua_rawlen(L, arg) == sizeof(swig_lua_userdata)) {
    const swig_lua_userdata *object = lua_touserdata(L, arg);
    for (size_t i = 0; swig_types[i] != NULL; i++) {
      if (object->type == swig_types[i])
        return tb_lua_class_name(object->type);
    }
  }
  return luaL_typename(L, arg);
}

/* The handle of class `type` at `arg` (nil: NULL). This replaces SWIG's
 * conversion for handles: one pointer comparison instead of a type-name
 * lookup (getters are called in loops), and a userdata of another library
 * or a light userdata is refused instead of being read as a handle. */
static void *tb_lua_to_handle(lua_State *L, int arg, swig_type_info *type,
                              const char *func, const char *name) {
  /* lua_touserdata is NULL for a non-userdata, lua_rawlen 0 for a light one. */
  const swig_lua_userdata *object = lua_touserdata(L, arg);
  if (object != NULL && lua_rawlen(L, arg) == sizeof *object &&
      object->type == type)
    return object->ptr;
  if (lua_isnil(L, arg))
    return NULL;
  tb_lua_push_errorf(L, TB_ERR_INVALID_ARGUMENT,
                     "%s: %s is a %s; expected a %s or nil", func, name,
                     tb_lua_typename(L, arg), tb_lua_class_name(type));
  return (void *)(intptr_t)lua_error(L);
}

/* Pushes the error of a call with the wrong number of arguments. */
static void tb_lua_push_arity_error(lua_State *L, const char *func, int min,
                                    int max) {
  if (min == max)
    tb_lua_push_errorf(L, TB_ERR_INVALID_ARGUMENT,
                       "%s: takes %d argument(s), got %d", func, min,
                       lua_gettop(L));
  else
    tb_lua_push_errorf(L, TB_ERR_INVALID_ARGUMENT,
                       "%s: takes %d to %d arguments, got %d", func, min, max,
                       lua_gettop(L));
}

/* SWIG's own argument checks raise error objects too, not strings. */
#undef SWIG_fail_arg
#define SWIG_fail_arg(func_name, argnum, type)                                 \
  {                                                                            \
    tb_lua_push_errorf(L, TB_ERR_INVALID_ARGUMENT,                             \
                       "%s: argument %d is a %s; expected %s", func_name,      \
                       argnum, tb_lua_typename(L, argnum), type);              \
    goto fail;                                                                 \
  }
#undef SWIG_check_num_args
#define SWIG_check_num_args(func_name, min, max)                               \
  if ((unsigned)(lua_gettop(L) - (min)) > (unsigned)((max) - (min))) {         \
    tb_lua_push_arity_error(L, func_name, min, max);                           \
    goto fail;                                                                 \
  }

/* The integer at stack index `arg`, in [min, max]. `what` names it in
 * errors, with `[position]` appended when position > 0 (an array entry);
 * the name is only formatted on failure, as arrays are read per call. */
static lua_Integer tb_lua_check_integer_at(lua_State *L, int arg,
                                           const char *func, const char *what,
                                           lua_Integer position,
                                           lua_Integer min, lua_Integer max) {
  int is_integer = 0;
  lua_Integer value = 0;
  if (lua_type(L, arg) == LUA_TNUMBER)
    value = lua_tointegerx(L, arg, &is_integer);
  if (is_integer && value >= min && value <= max)
    return value;
  const char *shown = luaL_tolstring(L, arg, NULL);
  const char *name =
      position > 0 ? lua_pushfstring(L, "%s[%I]", what, position) : what;
  if (!is_integer)
    tb_lua_push_errorf(L, TB_ERR_INVALID_ARGUMENT,
                       "%s: %s is %s; expected an integer", func, name, shown);
  else
    tb_lua_push_errorf(L, TB_ERR_INVALID_ARGUMENT,
                       "%s: %s is %I; expected %I to %I", func, name, value,
                       min, max);
  return lua_error(L);
}

static lua_Integer tb_lua_check_integer(lua_State *L, int arg, const char *func,
                                        const char *what, lua_Integer min,
                                        lua_Integer max) {
  return tb_lua_check_integer_at(L, arg, func, what, 0, min, max);
}

/* `bytes` of scratch memory for arrays longer than the stack buffers. Each
 * slot is a userdata kept in the registry and grown as needed, so converting
 * an argument never leaks when a later one raises, and pushes nothing on the
 * stack (where SWIG counts optional arguments). */
static void *tb_lua_scratch(lua_State *L, int slot, size_t bytes) {
  lua_getfield(L, LUA_REGISTRYINDEX, TB_LUA_SCRATCH);
  lua_rawgeti(L, -1, slot);
  void *block = lua_touserdata(L, -1);
  if (block == NULL || lua_rawlen(L, -1) < bytes) {
    block = lua_newuserdatauv(L, bytes, 0);
    lua_rawseti(L, -3, slot);
  }
  lua_pop(L, 2);
  return block;
}

/* Scratch slots: one per array argument of a single call. */
enum { TB_LUA_SLOT_SHAPE = 1, TB_LUA_SLOT_STRIDES, TB_LUA_SLOT_SCALES };

/* Reads a sequence of integers at `arg` (nil: NULL, count 0), adding `bias`
 * to each (-1 turns Lua's 1-based indices into C's). Up to TB_MAX_DIMS
 * entries go to `small`, longer sequences to scratch `slot`. */
static int64_t *tb_lua_int64_array(lua_State *L, int arg, const char *func,
                                   const char *name, int64_t *small, int slot,
                                   lua_Integer bias, size_t *count) {
  *count = 0;
  if (lua_isnoneornil(L, arg))
    return NULL;
  if (!lua_istable(L, arg)) {
    tb_lua_push_errorf(L, TB_ERR_INVALID_ARGUMENT,
                       "%s: %s is a %s; expected a table of integers or nil",
                       func, name, luaL_typename(L, arg));
    lua_error(L);
  }
  size_t n = lua_rawlen(L, arg);
  int64_t *values =
      n <= TB_MAX_DIMS ? small : tb_lua_scratch(L, slot, n * sizeof *values);
  for (size_t i = 0; i < n; i++) {
    lua_rawgeti(L, arg, (lua_Integer)i + 1);
    values[i] =
        (int64_t)(tb_lua_check_integer_at(L, -1, func, name, (lua_Integer)i + 1,
                                          LUA_MININTEGER, LUA_MAXINTEGER) +
                  bias);
    lua_pop(L, 1);
  }
  *count = n;
  return values;
}

/* Reads a sequence of C ints (fds) at `arg`; at most TB_MAX_DIMS of them
 * (more planes or fds than any call takes are refused). */
static int *tb_lua_int_array(lua_State *L, int arg, const char *func,
                             const char *name, int *small, size_t *count) {
  int64_t values[TB_MAX_DIMS];
  size_t n;
  if (tb_lua_int64_array(L, arg, func, name, values, TB_LUA_SLOT_SCALES, 0,
                         &n) == NULL)
    return NULL;
  if (n > TB_MAX_DIMS) {
    tb_lua_push_errorf(L, TB_ERR_INVALID_ARGUMENT,
                       "%s: %s has %I entries; at most %d are taken", func,
                       name, (lua_Integer)n, TB_MAX_DIMS);
    lua_error(L);
  }
  for (size_t i = 0; i < n; i++) {
    if (values[i] < INT_MIN || values[i] > INT_MAX) {
      tb_lua_push_errorf(L, TB_ERR_INVALID_ARGUMENT,
                         "%s: %s[%I] is %I; not a file descriptor", func, name,
                         (lua_Integer)i + 1, (lua_Integer)values[i]);
      lua_error(L);
    }
    small[i] = (int)values[i];
  }
  *count = n;
  return small;
}

/* Reads a sequence of numbers at `arg` into scratch `slot`. */
static double *tb_lua_double_array(lua_State *L, int arg, const char *func,
                                   const char *name, int slot, size_t *count) {
  *count = 0;
  if (lua_isnoneornil(L, arg))
    return NULL;
  if (!lua_istable(L, arg)) {
    tb_lua_push_errorf(L, TB_ERR_INVALID_ARGUMENT,
                       "%s: %s is a %s; expected a table of numbers or nil",
                       func, name, luaL_typename(L, arg));
    lua_error(L);
  }
  size_t n = lua_rawlen(L, arg);
  double *values = tb_lua_scratch(L, slot, n * sizeof *values);
  for (size_t i = 0; i < n; i++) {
    lua_rawgeti(L, arg, (lua_Integer)i + 1);
    if (lua_type(L, -1) != LUA_TNUMBER) {
      tb_lua_push_errorf(L, TB_ERR_INVALID_ARGUMENT,
                         "%s: %s[%I] is a %s; expected a number", func, name,
                         (lua_Integer)i + 1, luaL_typename(L, -1));
      lua_error(L);
    }
    values[i] = lua_tonumber(L, -1);
    lua_pop(L, 1);
  }
  *count = n;
  return values;
}

/* A byte string at `arg` (nil: NULL, length 0). */
static const char *tb_lua_bytes(lua_State *L, int arg, const char *func,
                                const char *name, size_t *length) {
  *length = 0;
  if (lua_isnoneornil(L, arg))
    return NULL;
  if (lua_type(L, arg) != LUA_TSTRING) {
    tb_lua_push_errorf(L, TB_ERR_INVALID_ARGUMENT,
                       "%s: %s is a %s; expected a string or nil", func, name,
                       luaL_typename(L, arg));
    lua_error(L);
  }
  return lua_tolstring(L, arg, length);
}

/* Fills `options` from the table at `arg`; nil gives NULL (the defaults). */
static const tb_alloc_options *tb_lua_alloc_options(lua_State *L, int arg,
                                                    const char *func,
                                                    tb_alloc_options *options) {
  if (lua_isnoneornil(L, arg))
    return NULL;
  if (!lua_istable(L, arg)) {
    tb_lua_push_errorf(L, TB_ERR_INVALID_ARGUMENT,
                       "%s: opts is a %s; expected a table or nil", func,
                       luaL_typename(L, arg));
    lua_error(L);
  }
  tb_alloc_options_init(options, TB_ALLOC_OPTIONS_VERSION);
  for (lua_pushnil(L); lua_next(L, arg); lua_pop(L, 1)) {
    const char *field =
        lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : "";
    const char *what = lua_pushfstring(L, "opts.%s", field);
    lua_insert(L, -2);
    if (strcmp(field, "version") == 0) {
      options->version =
          (uint32_t)tb_lua_check_integer(L, -1, func, what, 0, UINT32_MAX);
    } else if (strcmp(field, "memory") == 0 && lua_type(L, -1) == LUA_TSTRING) {
      tb_memory memory;
      if (tb_memory_from_name(&memory, lua_tostring(L, -1)) != TB_OK) {
        tb_lua_push_errorf(L, TB_ERR_INVALID_ARGUMENT,
                           "%s: %s is \"%s\", not a memory kind name", func,
                           what, lua_tostring(L, -1));
        lua_error(L);
      }
      options->memory = memory;
    } else if (strcmp(field, "memory") == 0) {
      options->memory =
          (uint32_t)tb_lua_check_integer(L, -1, func, what, 0, UINT32_MAX);
    } else if (strcmp(field, "alignment") == 0) {
      options->alignment = (uint64_t)tb_lua_check_integer(
          L, -1, func, what, LUA_MININTEGER, LUA_MAXINTEGER);
    } else if (strcmp(field, "name") == 0) {
      /* The table keeps the string alive for the whole call. */
      options->name = tb_lua_bytes(L, -1, func, what, &(size_t){0});
    } else if (strcmp(field, "flags") == 0) {
      options->flags =
          (uint32_t)tb_lua_check_integer(L, -1, func, what, 0, UINT32_MAX);
    } else if (strcmp(field, "device") == 0) {
      options->device =
          (uint32_t)tb_lua_check_integer(L, -1, func, what, 0, UINT32_MAX);
    } else {
      tb_lua_push_errorf(L, TB_ERR_INVALID_ARGUMENT, "%s: opts has no field %s",
                         func, luaL_tolstring(L, -3, NULL));
      lua_error(L);
    }
    lua_remove(L, -2);
  }
  return options;
}

/* Fills `options` from the table at `arg`, called `name` in messages
 * (fields of tb_channel_options); nil gives NULL (the defaults). */
static const tb_channel_options *
tb_lua_channel_options(lua_State *L, int arg, const char *func,
                       const char *name, tb_channel_options *options) {
  arg = lua_absindex(L, arg);
  if (lua_isnoneornil(L, arg))
    return NULL;
  if (!lua_istable(L, arg)) {
    tb_lua_push_errorf(L, TB_ERR_INVALID_ARGUMENT,
                       "%s: %s is a %s; expected a table or nil", func, name,
                       luaL_typename(L, arg));
    lua_error(L);
  }
  tb_channel_options_init(options, TB_CHANNEL_OPTIONS_VERSION);
  for (lua_pushnil(L); lua_next(L, arg); lua_pop(L, 1)) {
    const char *field =
        lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : "";
    const char *what = lua_pushfstring(L, "%s.%s", name, field);
    lua_insert(L, -2);
    if (strcmp(field, "version") == 0)
      options->version =
          (uint32_t)tb_lua_check_integer(L, -1, func, what, 0, UINT32_MAX);
    else if (strcmp(field, "max_buffers") == 0)
      options->max_buffers =
          (uint32_t)tb_lua_check_integer(L, -1, func, what, 0, UINT32_MAX);
    else if (strcmp(field, "max_mapped_bytes") == 0)
      options->max_mapped_bytes =
          (uint64_t)tb_lua_check_integer(L, -1, func, what, 0, LUA_MAXINTEGER);
    else {
      tb_lua_push_errorf(L, TB_ERR_INVALID_ARGUMENT, "%s: %s has no field %s",
                         func, name, luaL_tolstring(L, -3, NULL));
      lua_error(L);
    }
    lua_remove(L, -2);
  }
  return options;
}

/* Most uids a listener's options list here. */
#define TB_LUA_MAX_UIDS 64

/* Fills `options` from the table at `arg` (uids: a sequence of integers,
 * kept in `uids`; channel_options: a table, kept in `channel`); nil gives
 * NULL (the defaults). */
static const tb_listener_options *
tb_lua_listener_options(lua_State *L, int arg, const char *func,
                        tb_listener_options *options, uint32_t *uids,
                        tb_channel_options *channel) {
  if (lua_isnoneornil(L, arg))
    return NULL;
  if (!lua_istable(L, arg)) {
    tb_lua_push_errorf(L, TB_ERR_INVALID_ARGUMENT,
                       "%s: opts is a %s; expected a table or nil", func,
                       luaL_typename(L, arg));
    lua_error(L);
  }
  tb_listener_options_init(options, TB_LISTENER_OPTIONS_VERSION);
  for (lua_pushnil(L); lua_next(L, arg); lua_pop(L, 1)) {
    const char *field =
        lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : "";
    const char *what = lua_pushfstring(L, "opts.%s", field);
    lua_insert(L, -2);
    if (strcmp(field, "version") == 0) {
      options->version =
          (uint32_t)tb_lua_check_integer(L, -1, func, what, 0, UINT32_MAX);
    } else if (strcmp(field, "mode") == 0) {
      options->mode =
          (uint32_t)tb_lua_check_integer(L, -1, func, what, 0, UINT32_MAX);
    } else if (strcmp(field, "flags") == 0) {
      options->flags =
          (uint32_t)tb_lua_check_integer(L, -1, func, what, 0, UINT32_MAX);
    } else if (strcmp(field, "hello_timeout_ms") == 0) {
      options->hello_timeout_ms = (int32_t)tb_lua_check_integer(
          L, -1, func, what, INT32_MIN, INT32_MAX);
    } else if (strcmp(field, "uids") == 0 && lua_istable(L, -1)) {
      lua_Integer n = luaL_len(L, -1);
      if (n > TB_LUA_MAX_UIDS) {
        tb_lua_push_errorf(L, TB_ERR_INVALID_ARGUMENT,
                           "%s: opts.uids lists %d uids; at most %d", func,
                           (int)n, TB_LUA_MAX_UIDS);
        lua_error(L);
      }
      for (lua_Integer i = 1; i <= n; i++) {
        lua_geti(L, -1, i);
        uids[i - 1] = (uint32_t)tb_lua_check_integer(L, -1, func, "a uid", 0,
                                                     UINT32_MAX);
        lua_pop(L, 1);
      }
      options->uids = n > 0 ? uids : NULL;
      options->nuids = (size_t)n;
    } else if (strcmp(field, "channel_options") == 0) {
      options->channel_options =
          tb_lua_channel_options(L, -1, func, what, channel);
    } else {
      tb_lua_push_errorf(L, TB_ERR_INVALID_ARGUMENT, "%s: opts has no field %s",
                         func, luaL_tolstring(L, -3, NULL));
      lua_error(L);
    }
    lua_remove(L, -2);
  }
  return options;
}

/* Pushes an options struct as a table (memory by name, as given to
 * tb_lua_alloc_options). */
static void tb_lua_push_alloc_options(lua_State *L,
                                      const tb_alloc_options *options) {
  lua_createtable(L, 0, 5);
  lua_pushinteger(L, options->version);
  lua_setfield(L, -2, "version");
  lua_pushstring(L, tb_memory_name((tb_memory)options->memory));
  lua_setfield(L, -2, "memory");
  lua_pushinteger(L, (lua_Integer)options->alignment);
  lua_setfield(L, -2, "alignment");
  lua_pushstring(L, options->name);
  lua_setfield(L, -2, "name");
  lua_pushinteger(L, options->flags);
  lua_setfield(L, -2, "flags");
  if (options->version >= 2) { /* the field version 2 added */
    lua_pushinteger(L, options->device);
    lua_setfield(L, -2, "device");
  }
}
%}

/* ---- integers ------------------------------------------------------------ */

%define TB_LUA_INTEGER(TYPE, MIN, MAX)
%typemap(in) TYPE
%{ $1 = ($1_ltype)tb_lua_check_integer(L, $input, "$symname", "$1_name", MIN, MAX); %}
%typemap(out) TYPE
%{ lua_pushinteger(L, (lua_Integer)$1); SWIG_arg++; %}
%enddef

TB_LUA_INTEGER(int8_t, INT8_MIN, INT8_MAX)
TB_LUA_INTEGER(uint8_t, 0, UINT8_MAX)
TB_LUA_INTEGER(int16_t, INT16_MIN, INT16_MAX)
TB_LUA_INTEGER(uint16_t, 0, UINT16_MAX)
TB_LUA_INTEGER(int32_t, INT32_MIN, INT32_MAX)
TB_LUA_INTEGER(uint32_t, 0, UINT32_MAX)
TB_LUA_INTEGER(int, INT_MIN, INT_MAX)
TB_LUA_INTEGER(unsigned int, 0, UINT_MAX)
TB_LUA_INTEGER(enum SWIGTYPE, INT_MIN, INT_MAX)
TB_LUA_INTEGER(tb_status, INT_MIN, INT_MAX)
/* 64-bit types: all of lua_Integer; unsigned ones as two's complement. */
TB_LUA_INTEGER(int64_t, LUA_MININTEGER, LUA_MAXINTEGER)
TB_LUA_INTEGER(uint64_t, LUA_MININTEGER, LUA_MAXINTEGER)
TB_LUA_INTEGER(size_t, LUA_MININTEGER, LUA_MAXINTEGER)
TB_LUA_INTEGER(long, LUA_MININTEGER, LUA_MAXINTEGER)
TB_LUA_INTEGER(unsigned long, LUA_MININTEGER, LUA_MAXINTEGER)
TB_LUA_INTEGER(long long, LUA_MININTEGER, LUA_MAXINTEGER)
TB_LUA_INTEGER(unsigned long long, LUA_MININTEGER, LUA_MAXINTEGER)

/* ---- status: raise on failure, return nothing on success ------------------ */

%typemap(out) tb_status
%{ if ($1 < 0) { tb_lua_raise_status(L, $1); } %}

/* ---- handles ----------------------------------------------------------------- */

%define TB_LUA_HANDLE_IN(TYPE)
%typemap(in) TYPE *, const TYPE *
%{ $1 = ($1_ltype)tb_lua_to_handle(L, $input, $descriptor, "$symname", "$1_name"); %}
%enddef

TB_LUA_HANDLE_IN(tb_buffer)
TB_LUA_HANDLE_IN(tb_tensor)
TB_LUA_HANDLE_IN(tb_map)
TB_LUA_HANDLE_IN(tb_fence)
TB_LUA_HANDLE_IN(tb_pool)
TB_LUA_HANDLE_IN(tb_channel)
TB_LUA_HANDLE_IN(tb_listener)
TB_LUA_HANDLE_IN(tb_safetensors)
TB_LUA_HANDLE_IN(tb_safetensors_writer)

/* ---- out-parameters -------------------------------------------------------- */

%define TB_LUA_OUT_HANDLE(TYPE)
%typemap(in, numinputs=0) TYPE ** (TYPE *handle = NULL)
%{ $1 = &handle; %}
%typemap(argout) TYPE **
%{ SWIG_NewPointerObj(L, *$1, $*1_descriptor, 1); SWIG_arg++; %}
%enddef

TB_LUA_OUT_HANDLE(tb_buffer)
TB_LUA_OUT_HANDLE(tb_tensor)
TB_LUA_OUT_HANDLE(tb_map)
TB_LUA_OUT_HANDLE(tb_fence)
TB_LUA_OUT_HANDLE(tb_pool)
TB_LUA_OUT_HANDLE(tb_channel)
TB_LUA_OUT_HANDLE(tb_listener)
TB_LUA_OUT_HANDLE(tb_safetensors)
TB_LUA_OUT_HANDLE(tb_safetensors_writer)

%define TB_LUA_OUT_VALUE(TYPE, NAME, PUSH)
%typemap(in, numinputs=0) TYPE *NAME (TYPE value = 0)
%{ $1 = &value; %}
%typemap(argout) TYPE *NAME
%{ PUSH(L, *$1); SWIG_arg++; %}
%enddef

TB_LUA_OUT_VALUE(tb_dtype, out, lua_pushinteger)
TB_LUA_OUT_VALUE(tb_memory, out, lua_pushinteger)
TB_LUA_OUT_VALUE(tb_pixel_format, out, lua_pushinteger)
TB_LUA_OUT_VALUE(int, out_fd, lua_pushinteger)
TB_LUA_OUT_VALUE(tb_read_mode, mode_out, lua_pushinteger)
TB_LUA_OUT_VALUE(int64_t, out, lua_pushinteger)
TB_LUA_OUT_VALUE(uint32_t, out, lua_pushinteger)
/* Device addresses stay below 2^63 (the canonical user half of the address
 * space), so Lua's signed integer holds them. */
TB_LUA_OUT_VALUE(uint64_t, out, lua_pushinteger)
TB_LUA_OUT_VALUE(int64_t, zero_point_out, lua_pushinteger)
TB_LUA_OUT_VALUE(double, out, lua_pushnumber)
TB_LUA_OUT_VALUE(double, scale_out, lua_pushnumber)
TB_LUA_OUT_VALUE(int64_t, pid, lua_pushinteger)
TB_LUA_OUT_VALUE(int64_t, uid, lua_pushinteger)
TB_LUA_OUT_VALUE(int64_t, gid, lua_pushinteger)
TB_LUA_OUT_VALUE(uint32_t, version, lua_pushinteger)
TB_LUA_OUT_VALUE(uint32_t, own_max_buffers, lua_pushinteger)
TB_LUA_OUT_VALUE(uint64_t, own_max_mapped_bytes, lua_pushinteger)
TB_LUA_OUT_VALUE(uint32_t, peer_max_buffers, lua_pushinteger)
TB_LUA_OUT_VALUE(uint64_t, peer_max_mapped_bytes, lua_pushinteger)

/* tb_alloc_options_init(version) returns the defaults as a table. */
%typemap(in, numinputs=0) tb_alloc_options *opts (tb_alloc_options options)
%{ $1 = &options; %}
%typemap(argout) tb_alloc_options *opts
%{ tb_lua_push_alloc_options(L, $1); SWIG_arg++; %}

/* ---- inputs -------------------------------------------------------------- */

%typemap(default) const tb_alloc_options *opts %{ $1 = NULL; %}
%typemap(in) const tb_alloc_options *opts (tb_alloc_options options)
%{ $1 = ($1_ltype)tb_lua_alloc_options(L, $input, "$symname", &options); %}
/* An input: not the output of tb_alloc_options_init above, which SWIG would
 * otherwise also apply to the const pointer. */
%typemap(argout) const tb_alloc_options *opts ""

%define TB_LUA_SHAPE(COUNT, ARRAY)
%typemap(in) (size_t COUNT, const int64_t *ARRAY) (int64_t small[TB_MAX_DIMS])
%{ $2 = tb_lua_int64_array(L, $input, "$symname", "ARRAY", small,
                          TB_LUA_SLOT_SHAPE, 0, &$1); %}
%enddef
TB_LUA_SHAPE(ndim, shape)
TB_LUA_SHAPE(nindex, index)

/* strides and zero_points must match the length of the array before them;
 * SWIG names the C arguments argN, so the check names that one (arg5: ndim
 * of tb_tensor_from_buffer, arg3: count of tb_tensor_set_quantization). */
%typemap(default) const int64_t *strides %{ $1 = NULL; %}
%typemap(in) const int64_t *strides (int64_t small[TB_MAX_DIMS], size_t count)
%{ $1 = tb_lua_int64_array(L, $input, "$symname", "strides", small,
                          TB_LUA_SLOT_STRIDES, 0, &count); %}
%typemap(check) const int64_t *strides
%{ if ($1 != NULL && count$argnum != arg5) {
    tb_lua_push_errorf(L, TB_ERR_INVALID_ARGUMENT,
                       "$symname: strides has %d entries; shape has %d",
                       (int)count$argnum, (int)arg5);
    SWIG_fail;
  } %}

/* tb_image_import: fds gives nplanes (arg5); offsets and strides follow.
 * tb_image_new_with_layout: offsets gives nplanes (arg5); strides follows. */
%typemap(in) (size_t nplanes, const int *fds) (int small[TB_MAX_DIMS])
%{ $2 = tb_lua_int_array(L, $input, "$symname", "fds", small, &$1); %}
%typemap(in) (size_t nplanes, const uint64_t *offsets)
  (int64_t small[TB_MAX_DIMS])
%{ $2 = (uint64_t *)tb_lua_int64_array(L, $input, "$symname", "offsets", small,
                                      TB_LUA_SLOT_SHAPE, 0, &$1); %}
/* offsets sets nplanes: nothing to check against (the single-argument check
 * below is for image_import's offsets, which follow fds). */
%typemap(check) (size_t nplanes, const uint64_t *offsets) ""
%define TB_LUA_PLANE_ARRAY(NAME, SLOT)
%typemap(in) const uint64_t *NAME (int64_t small[TB_MAX_DIMS], size_t count)
%{ $1 = (uint64_t *)tb_lua_int64_array(L, $input, "$symname", "NAME", small,
                                      SLOT, 0, &count); %}
%typemap(check) const uint64_t *NAME
%{ if ($1 != NULL && count$argnum != arg5) {
    tb_lua_push_errorf(L, TB_ERR_INVALID_ARGUMENT,
                       "$symname: NAME has %d entries; fds has %d",
                       (int)count$argnum, (int)arg5);
    SWIG_fail;
  } %}
%enddef
TB_LUA_PLANE_ARRAY(offsets, TB_LUA_SLOT_SHAPE)
TB_LUA_PLANE_ARRAY(strides, TB_LUA_SLOT_STRIDES)

%typemap(in) (size_t count, const double *scales)
%{ $2 = tb_lua_double_array(L, $input, "$symname", "scales",
                           TB_LUA_SLOT_SCALES, &$1); %}
%typemap(default) const int64_t *zero_points %{ $1 = NULL; %}
%typemap(in) const int64_t *zero_points (int64_t small[TB_MAX_DIMS], size_t count)
%{ $1 = tb_lua_int64_array(L, $input, "$symname", "zero_points", small,
                          TB_LUA_SLOT_STRIDES, 0, &count); %}
%typemap(check) const int64_t *zero_points
%{ if ($1 != NULL && count$argnum != arg3) {
    tb_lua_push_errorf(L, TB_ERR_INVALID_ARGUMENT,
                       "$symname: zero_points has %d entries; scales has %d",
                       (int)count$argnum, (int)arg3);
    SWIG_fail;
  } %}

%typemap(in) (const void *src, size_t size)
%{ $1 = (void *)tb_lua_bytes(L, $input, "$symname", "src", &$2); %}
%typemap(in) (const uint8_t *descriptor, size_t length)
%{ $1 = (uint8_t *)tb_lua_bytes(L, $input, "$symname", "descriptor", &$2); %}
%typemap(in) (const int *fds, size_t nfds) (int small[TB_MAX_DIMS])
%{ $1 = tb_lua_int_array(L, $input, "$symname", "fds", small, &$2); %}

/* tb_tensor_read_bytes(tensor) returns the tensor's bytes as a string. */
%typemap(in) (void *dst, size_t size, tb_tensor *tensor) (luaL_Buffer bytes)
%{ $3 = ($3_ltype)tb_lua_to_handle(L, $input, $3_descriptor, "$symname", "tensor");
  $2 = (size_t)tb_tensor_nbytes($3);
  $1 = luaL_buffinitsize(L, &bytes, $2); %}
%typemap(argout) (void *dst, size_t size, tb_tensor *tensor)
%{ luaL_pushresultsize(&bytes$argnum, $2); SWIG_arg++; %}

/* ---- functions written by hand --------------------------------------------- */

/* tb_buffer_wrap(string [, flags]) wraps a private copy of the string. */
%ignore tb_buffer_wrap(tb_buffer **, void *, uint64_t, uint32_t,
                      tb_destroy_notify, void *);
%native(tb_buffer_wrap) int tb_lua_buffer_wrap(lua_State *L);
/* tb_tensor_export(tensor [, flags]) -> descriptor string, {fds...}. */
%ignore tb_tensor_export(uint8_t *, size_t, size_t *, int *, size_t *,
                         const tb_tensor *, uint32_t);
%native(tb_tensor_export) int tb_lua_tensor_export(lua_State *L);
/* tensorbuf.lua's element access, its error constructor and metatables. */
%native(get) int tb_lua_get(lua_State *L);
%native(set) int tb_lua_set(lua_State *L);
%native(read) int tb_lua_read(lua_State *L);
%native(write) int tb_lua_write(lua_State *L);
%native(raise) int tb_lua_raise(lua_State *L);
%native(metatable) int tb_lua_metatable(lua_State *L);
%native(close_fd) int tb_lua_close_fd(lua_State *L);
%native(wrapped_alive) int tb_lua_wrapped_alive(lua_State *L);

/* The struct is a table in Lua (see the opts typemap). */
%ignore tb_alloc_options;
/* Listener options are tables: the struct and its init are not wrapped. */
%ignore tb_listener_options;
%ignore tb_listener_options_init;
%typemap(default) const tb_listener_options *opts %{ $1 = NULL; %}
%typemap(in) const tb_listener_options *opts
    (tb_listener_options options, uint32_t uids[TB_LUA_MAX_UIDS],
     tb_channel_options channel)
%{ $1 = ($1_ltype)tb_lua_listener_options(L, $input, "$symname", &options,
                                          uids, &channel); %}
/* Channel options are tables too. */
%ignore tb_channel_options;
%ignore tb_channel_options_init;
%typemap(default) const tb_channel_options *opts %{ $1 = NULL; %}
%typemap(in) const tb_channel_options *opts (tb_channel_options options)
%{ $1 = ($1_ltype)tb_lua_channel_options(L, $input, "$symname", "opts",
                                         &options); %}

%wrapper %{
/* Wrapped copies whose destroy-notify has not run yet. */
static _Atomic long tb_lua_wrapped_count;

static void tb_lua_wrapped_free(void *copy) {
  free(copy);
  tb_lua_wrapped_count--;
}

static int tb_lua_buffer_wrap(lua_State *L) {
  static const char func[] = "tb_buffer_wrap";
  size_t size;
  const char *data = tb_lua_bytes(L, 1, func, "data", &size);
  uint32_t flags =
      lua_isnoneornil(L, 2)
          ? 0
          : (uint32_t)tb_lua_check_integer(L, 2, func, "flags", 0, UINT32_MAX);
  void *copy = NULL;
  if (size > 0) {
    copy = malloc(size);
    if (copy == NULL) {
      tb_lua_push_errorf(L, TB_ERR_NO_MEMORY, "%s: no memory for %I bytes",
                         func, (lua_Integer)size);
      return lua_error(L);
    }
    memcpy(copy, data, size);
    tb_lua_wrapped_count++;
  }
  tb_buffer *buffer;
  tb_status status =
      tb_buffer_wrap(&buffer, copy, size, flags,
                     copy != NULL ? tb_lua_wrapped_free : NULL, copy);
  if (status != TB_OK) {
    if (copy != NULL)
      tb_lua_wrapped_free(copy);
    return tb_lua_raise_status(L, status);
  }
  SWIG_NewPointerObj(L, buffer, SWIGTYPE_p_tb_buffer, 1);
  return 1;
}

static int tb_lua_tensor_export(lua_State *L) {
  static const char func[] = "tb_tensor_export";
  const tb_tensor *tensor =
      tb_lua_to_handle(L, 1, SWIGTYPE_p_tb_tensor, func, "tensor");
  uint32_t flags =
      lua_isnoneornil(L, 2)
          ? 0
          : (uint32_t)tb_lua_check_integer(L, 2, func, "flags", 0, UINT32_MAX);
  /* A first try in a small buffer; *length then says what is needed. */
  uint8_t small[512];
  uint8_t *descriptor = small;
  size_t length = 0, nfds = TB_DESCRIPTOR_MAX_FDS; /* fds' capacity */
  int fds[TB_DESCRIPTOR_MAX_FDS];
  tb_status status = tb_tensor_export(descriptor, sizeof small, &length, fds,
                                      &nfds, tensor, flags);
  if (status == TB_ERR_OUT_OF_RANGE && length > sizeof small) {
    descriptor = lua_newuserdatauv(L, length, 0);
    status = tb_tensor_export(descriptor, length, &length, fds, &nfds, tensor,
                              flags);
  }
  if (status != TB_OK)
    return tb_lua_raise_status(L, status);
  lua_pushlstring(L, (const char *)descriptor, length);
  lua_createtable(L, (int)nfds, 0);
  for (size_t i = 0; i < nfds; i++) {
    lua_pushinteger(L, fds[i]);
    lua_rawseti(L, -2, (lua_Integer)i + 1);
  }
  return 2;
}

static int tb_lua_wrapped_alive(lua_State *L) {
  lua_pushinteger(L, tb_lua_wrapped_count);
  return 1;
}

/* The tensor an element access goes to: a tensor at index 1, or the tensor
 * of a map at index 1, which must be mapped with `access`. */
static tb_tensor *tb_lua_element_target(lua_State *L, const char *func,
                                        uint32_t access) {
  const swig_type_info *type = NULL;
  if (lua_type(L, 1) == LUA_TUSERDATA &&
      lua_rawlen(L, 1) == sizeof(swig_lua_userdata))
    type = ((const swig_lua_userdata *)lua_touserdata(L, 1))->type;
  if (type == SWIGTYPE_p_tb_tensor)
    return ((const swig_lua_userdata *)lua_touserdata(L, 1))->ptr;
  if (type != SWIGTYPE_p_tb_map) {
    tb_lua_push_errorf(L, TB_ERR_INVALID_ARGUMENT,
                       "%s: argument 1 is a %s; expected a tensor or a map",
                       func, tb_lua_typename(L, 1));
    lua_error(L);
  }
  tb_map *handle = ((const swig_lua_userdata *)lua_touserdata(L, 1))->ptr;
  uint32_t flags = tb_map_flags(handle);
  if (flags == 0) {
    tb_lua_push_errorf(L, TB_ERR_INVALID_ARGUMENT, "%s: the map is unmapped",
                       func);
    lua_error(L);
  }
  if (!(flags & access)) {
    tb_lua_push_errorf(
        L, access == TB_MAP_WRITE ? TB_ERR_READ_ONLY : TB_ERR_INVALID_ARGUMENT,
        "%s: the map was made without %s access", func,
        access == TB_MAP_WRITE ? "write" : "read");
    lua_error(L);
  }
  return tb_map_tensor(handle);
}

static bool tb_lua_is_float(tb_dtype dtype) {
  return dtype == TB_DTYPE_F16 || dtype == TB_DTYPE_BF16 ||
         dtype == TB_DTYPE_F32 || dtype == TB_DTYPE_F64;
}

/* get(tensor_or_map, index): the element at the 1-based `index`, as an
 * integer, a boolean (bool dtype) or a float, from the tensor's dtype. */
static int tb_lua_get(lua_State *L) {
  static const char func[] = "get";
  tb_tensor *tensor = tb_lua_element_target(L, func, TB_MAP_READ);
  int64_t small[TB_MAX_DIMS];
  size_t nindex;
  const int64_t *index = tb_lua_int64_array(L, 2, func, "index", small,
                                            TB_LUA_SLOT_SHAPE, -1, &nindex);
  tb_dtype dtype = tb_tensor_dtype(tensor);
  tb_status status;
  if (tb_lua_is_float(dtype)) {
    double value;
    status = tb_tensor_get_f64(&value, tensor, nindex, index);
    lua_pushnumber(L, value);
  } else {
    int64_t value;
    status = tb_tensor_get_i64(&value, tensor, nindex, index);
    if (dtype == TB_DTYPE_BOOL)
      lua_pushboolean(L, value != 0);
    else
      lua_pushinteger(L, value);
  }
  return status == TB_OK ? 1 : tb_lua_raise_status(L, status);
}

/* set(tensor_or_map, index, value): integers are stored exactly, floats
 * rounded by the library's rules, booleans as 1 and 0. */
static int tb_lua_set(lua_State *L) {
  static const char func[] = "set";
  tb_tensor *tensor = tb_lua_element_target(L, func, TB_MAP_WRITE);
  int64_t small[TB_MAX_DIMS];
  size_t nindex;
  const int64_t *index = tb_lua_int64_array(L, 2, func, "index", small,
                                            TB_LUA_SLOT_SHAPE, -1, &nindex);
  tb_status status;
  if (lua_isinteger(L, 3))
    status = tb_tensor_set_i64(tensor, nindex, index, lua_tointeger(L, 3));
  else if (lua_type(L, 3) == LUA_TNUMBER)
    status = tb_tensor_set_f64(tensor, nindex, index, lua_tonumber(L, 3));
  else if (lua_isboolean(L, 3))
    status = tb_tensor_set_i64(tensor, nindex, index, lua_toboolean(L, 3));
  else {
    tb_lua_push_errorf(L, TB_ERR_INVALID_ARGUMENT,
                       "%s: value is a %s; expected a number or a boolean",
                       func, luaL_typename(L, 3));
    return lua_error(L);
  }
  return status == TB_OK ? 0 : tb_lua_raise_status(L, status);
}

/* read(tensor_or_map): the elements' bytes, in row-major order, as a
 * string. */
static int tb_lua_read(lua_State *L) {
  tb_tensor *tensor = tb_lua_element_target(L, "read", TB_MAP_READ);
  size_t size = (size_t)tb_tensor_nbytes(tensor);
  luaL_Buffer bytes;
  tb_status status =
      tb_tensor_read_bytes(luaL_buffinitsize(L, &bytes, size), size, tensor);
  if (status != TB_OK)
    return tb_lua_raise_status(L, status);
  luaL_pushresultsize(&bytes, size);
  return 1;
}

/* write(tensor_or_map, bytes): replaces the elements with `bytes` (exactly
 * nbytes of them, in row-major order). */
static int tb_lua_write(lua_State *L) {
  tb_tensor *tensor = tb_lua_element_target(L, "write", TB_MAP_WRITE);
  size_t size;
  const char *bytes = tb_lua_bytes(L, 2, "write", "bytes", &size);
  tb_status status = tb_tensor_write_bytes(tensor, bytes, size);
  return status == TB_OK ? 0 : tb_lua_raise_status(L, status);
}

/* raise(code, message): raises an error object, for tensorbuf.lua. */
static int tb_lua_raise(lua_State *L) {
  int code = (int)luaL_checkinteger(L, 1);
  tb_lua_push_error(L, code, 0, luaL_checkstring(L, 2));
  return lua_error(L);
}

/* metatable(class): the metatable SWIG gives objects of a class ("tb_tensor"),
 * which tensorbuf.lua fills with methods. */
static int tb_lua_metatable(lua_State *L) {
  SWIG_Lua_get_class_metatable(L, luaL_checkstring(L, 1));
  return 1;
}

/* close_fd(fd): closes an fd that export_fd returned. */
static int tb_lua_close_fd(lua_State *L) {
  int fd = (int)tb_lua_check_integer(L, 1, "close_fd", "fd", INT_MIN, INT_MAX);
  if (close(fd) != 0) {
    int errnum = errno;
    const char *message =
        lua_pushfstring(L, "close_fd: fd %d: %s", fd, strerror(errnum));
    tb_lua_push_error(L, TB_ERR_SYSTEM, errnum, message);
    return lua_error(L);
  }
  return 0;
}

static int tb_lua_error_tostring(lua_State *L) {
  lua_getfield(L, 1, "name");
  lua_getfield(L, 1, "message");
  lua_pushfstring(L, "%s: %s", lua_tostring(L, -2), lua_tostring(L, -1));
  return 1;
}
%}

%init %{
  /* The module table is on top of the stack. */
  if (luaL_newmetatable(L, TB_LUA_ERROR)) {
    lua_pushcfunction(L, tb_lua_error_tostring);
    lua_setfield(L, -2, "__tostring");
  }
  lua_setfield(L, -2, "Error");

  /* statuses = {TB_OK = 0, TB_ERR_INVALID_ARGUMENT = -1, ...}, from
   * TB_STATUS_MAP through tb_status_entries. */
  lua_createtable(L, 0, sizeof tb_status_entries / sizeof *tb_status_entries);
  for (size_t i = 0; i < sizeof tb_status_entries / sizeof *tb_status_entries;
       i++) {
    lua_pushinteger(L, tb_status_entries[i].code);
    lua_setfield(L, -2, tb_status_entries[i].name);
  }
  lua_setfield(L, -2, "statuses");

  lua_newtable(L);
  lua_setfield(L, LUA_REGISTRYINDEX, TB_LUA_SCRATCH);

  /* SWIG also defines the globals swig_type and swig_equals; a module that
   * is require'd should define none. */
  lua_pushnil(L);
  lua_setglobal(L, "swig_type");
  lua_pushnil(L);
  lua_setglobal(L, "swig_equals");
%}
