/* The libffi conformance runner: dlopens libtensorbuf.so.0 and makes every
 * library call through ffi_call, from the table of signatures below (data,
 * not prototypes). It includes no tensorbuf header and links no tensorbuf
 * library: it is the proof that any FFI can drive the ABI. Constants that C
 * callers get from macros (flag bits, the options struct layout) are data
 * here, as they are for any FFI binding.
 *
 * usage: conformance-ffi CASES_DIR SKIP_FILE RESULTS_FILE [CASE_NAME...]
 * The case format is conformance/README.md. */
#define _GNU_SOURCE
#include "../common/json_match.h"
#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <ffi.h>
#include <json-glib/json-glib.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

/* ---- the signature table ------------------------------------------------- */

typedef enum Kind {
  K_VOID,
  K_STATUS, /* int, compared by name */
  K_INT,
  K_U32,
  K_I64,
  K_U64,
  K_SIZE,
  K_F64,
  K_BOOL,
  K_DTYPE,  /* enum, by name */
  K_MEMORY, /* enum, by name */
  K_FORMAT, /* tb_pixel_format, by name */
  K_LAYOUT, /* tb_pixel_layout (returned), by name */
  K_STRING,
  /* Handles, written "<handle type>" with a prefix (see handle_types):
   * "tensor" a handle the call borrows (or, returned, lends), "new_tensor"
   * a returned handle that owns a reference, "drop_tensor" an argument
   * whose reference the call consumes, "out_tensor" an out-parameter. */
  K_HANDLE,
  K_NEW_HANDLE,
  K_DROP_HANDLE,
  K_OUT_HANDLE, /* out-parameters (to K_OUT_FDS): the step's result */
  K_OUT_I64,
  K_OUT_U32,
  K_OUT_U64,
  K_OUT_F64,
  K_OUT_FD,
  K_OUT_DTYPE,
  K_OUT_MEMORY,
  K_OUT_FORMAT,
  K_OUT_OPTS,
  K_OUT_BYTES,  /* a byte array the call fills; sized by its length */
  K_OUT_WIRE,   /* a descriptor the call writes: sized by its capacity, as
                   long as its count says */
  K_OUT_FDS,    /* fds the call writes (at most 4), as many as its count */
  K_OUT_COUNT,  /* the size_t count of the out array `of`: not a result */
  K_OUT_NEEDED, /* a count that TB_ERR_OUT_OF_RANGE sets to what is needed */
  K_I64S,       /* const int64_t * / const double * arrays */
  K_F64S,
  K_INTS,          /* const int * (fds) */
  K_BYTES,         /* const void *, from hex */
  K_LENGTH,        /* the length of the array `of`; defaults to its length */
  K_CAPACITY,      /* the size of the out array `of`; defaults to 65536 */
  K_OPTS,          /* const tb_alloc_options *, from an object */
  K_LISTENER_OPTS, /* const tb_listener_options *, from an object */
  K_CHANNEL_OPTS,  /* const tb_channel_options *, from an object */
  K_MAP_FLAGS,
  K_BUFFER_FLAGS,
  K_SEND_FLAGS,
  K_DESTROY,   /* tb_destroy_notify: this runner's closure */
  K_USER_DATA, /* its user_data: the wrapped block */
  K_ADDRESS,   /* a returned void * */
} Kind;

/* The handle types: a tag that marks what a variable holds, and the call
 * that releases one. */
typedef struct HandleType {
  const char *name;
  char tag;
  const char *release;
} HandleType;

static const HandleType handle_types[] = {
    {"tensor", 't', "tensor_unref"},
    {"buffer", 'b', "buffer_unref"},
    {"map", 'm', "map_free"},
    {"channel", 'c', "channel_unref"},
    {"listener", 'l', "listener_free"},
    {"fence", 'e', "fence_unref"},
    {"pool", 'p', "pool_unref"},
    {"safetensors", 's', "safetensors_close"},
};

typedef struct Param {
  char *name;
  Kind kind;
  char handle; /* K_*HANDLE: the handle type's tag */
  char *of;    /* lengths, counts: their array; arrays: what sizes them */
} Param;

#define MAX_PARAMS 10
typedef struct Signature {
  char *name; /* without "tb_" */
  Kind ret;
  char ret_handle; /* a handle result: its type's tag */
  Param params[MAX_PARAMS];
} Signature;

/* Every call, as "<return> <name>(<type> <parameter>, ...)" with the C
 * parameter names (without the tb_ prefix). A type's "(x)" names the length
 * or capacity parameter that sizes an array, or the array a length, capacity
 * or count belongs to. */
static const char *const signature_table[] = {
    "u32 version_number()",
    "string version_string()",
    "i64 live_objects()",
    "string status_name(int status)",
    "string status_message(int status)",
    "string last_error()",
    "int last_errno()",
    "size dtype_size(dtype dtype)",
    "string dtype_name(dtype dtype)",
    "status dtype_from_name(out_dtype out, string name)",
    "string memory_name(memory memory)",
    "status memory_from_name(out_memory out, string name)",
    "bool memory_available(memory memory)",
    "string memory_auto_skipped()",
    "status alloc_options_init(out_opts opts, u32 version)",
    "status buffer_new(out_buffer out, u64 size, opts opts)",
    "status buffer_wrap(out_buffer out, bytes(size) data, length(data) size, "
    "buffer_flags flags, destroy destroy, user_data user_data)",
    "new_buffer buffer_ref(buffer buffer)",
    "void buffer_unref(drop_buffer buffer)",
    "u64 buffer_size(buffer buffer)",
    "memory buffer_memory(buffer buffer)",
    "u64 buffer_id(buffer buffer)",
    "u64 buffer_key(buffer buffer)",
    "int buffer_fd(buffer buffer)",
    "bool buffer_read_only(buffer buffer)",
    "bool buffer_alive(u64 id)",
    "status tensor_new(out_tensor out, dtype dtype, length(shape) ndim, "
    "i64s(ndim) shape, opts opts)",
    "status tensor_from_buffer(out_tensor out, buffer buffer, u64 byte_offset, "
    "dtype dtype, length(shape) ndim, i64s(ndim) shape, i64s(ndim) strides)",
    "status tensor_import_fd(out_tensor out, int fd, dtype dtype, "
    "length(shape) ndim, i64s(ndim) shape, u64 byte_offset)",
    "status tensor_export_fd(out_fd out_fd, tensor tensor)",
    "new_tensor tensor_ref(tensor tensor)",
    "void tensor_unref(drop_tensor tensor)",
    "dtype tensor_dtype(tensor tensor)",
    "size tensor_ndim(tensor tensor)",
    "i64 tensor_dim(tensor tensor, size axis)",
    "i64 tensor_stride(tensor tensor, size axis)",
    "u64 tensor_numel(tensor tensor)",
    "u64 tensor_nbytes(tensor tensor)",
    "u64 tensor_offset(tensor tensor)",
    "bool tensor_is_contiguous(tensor tensor)",
    "memory tensor_memory(tensor tensor)",
    "bool tensor_read_only(tensor tensor)",
    "u64 tensor_buffer_id(tensor tensor)",
    "new_buffer tensor_buffer(tensor tensor)",
    "bool tensor_shares_memory(tensor a, tensor b)",
    "string tensor_name(tensor tensor)",
    "int tensor_fd(tensor tensor)",
    "status tensor_set_name(tensor tensor, string name)",
    "status tensor_reshape(out_tensor out, tensor tensor, length(shape) ndim, "
    "i64s(ndim) shape)",
    "status tensor_slice(out_tensor out, tensor tensor, size axis, i64 start, "
    "i64 stop, i64 step)",
    "status tensor_set_quantization(tensor tensor, i64 axis, "
    "length(scales) count, f64s(count) scales, i64s(count) zero_points)",
    "size tensor_quantization_count(tensor tensor)",
    "i64 tensor_quantization_axis(tensor tensor)",
    "status tensor_quantization_get(out_f64 scale_out, out_i64 zero_point_out, "
    "tensor tensor, size index)",
    "status tensor_get_f64(out_f64 out, tensor tensor, length(index) nindex, "
    "i64s(nindex) index)",
    "status tensor_get_i64(out_i64 out, tensor tensor, length(index) nindex, "
    "i64s(nindex) index)",
    "status tensor_set_f64(tensor tensor, length(index) nindex, "
    "i64s(nindex) index, f64 value)",
    "status tensor_set_i64(tensor tensor, length(index) nindex, "
    "i64s(nindex) index, i64 value)",
    "status tensor_read_bytes(out_bytes(size) dst, length(dst) size, "
    "tensor tensor)",
    "status tensor_write_bytes(tensor tensor, bytes(size) src, "
    "length(src) size)",
    "status tensor_map(out_map out, tensor tensor, map_flags flags)",
    "address map_data(map map)",
    "u32 map_flags(map map)",
    "tensor map_tensor(map map)",
    "void map_unmap(map map)",
    "void map_free(drop_map map)",
    "string pixel_format_name(format format)",
    "status pixel_format_from_name(out_format out, string name)",
    "u32 pixel_format_to_fourcc(format format)",
    "status pixel_format_from_fourcc(out_format out, u32 fourcc)",
    "layout pixel_format_layout(format format)",
    "u32 pixel_format_channels(format format)",
    "bool pixel_format_is_yuv(format format)",
    "bool pixel_format_has_alpha(format format)",
    "u32 pixel_format_plane_count(format format)",
    "u32 pixel_format_bits(format format)",
    "u32 pixel_format_plane_hsub(format format, size plane)",
    "u32 pixel_format_plane_vsub(format format, size plane)",
    "bool pixel_format_supports_dtype(format format, dtype dtype)",
    "status image_new(out_tensor out, u32 width, u32 height, format format, "
    "dtype dtype, opts opts)",
    "status image_new_with_layout(out_tensor out, u32 width, u32 height, "
    "format format, length(offsets) nplanes, i64s(nplanes) offsets, "
    "i64s(nplanes) strides, dtype dtype, opts opts)",
    "status image_import(out_tensor out, u32 width, u32 height, "
    "format format, length(fds) nplanes, ints(nplanes) fds, "
    "i64s(nplanes) offsets, i64s(nplanes) strides)",
    "status image_set_format(tensor tensor, format format)",
    "format image_format(tensor tensor)",
    "u32 image_width(tensor tensor)",
    "u32 image_height(tensor tensor)",
    "size image_plane_count(tensor tensor)",
    "u64 image_plane_offset(tensor tensor, size plane)",
    "u64 image_plane_stride(tensor tensor, size plane)",
    "u64 image_plane_buffer_id(tensor tensor, size plane)",
    "status image_plane(out_tensor out, tensor image, size plane)",
    "status image_export_plane_fd(out_fd out_fd, tensor image, size plane)",
    "status channel_pair(out_channel out_a, out_channel out_b)",
    "status channel_pair_with(out_channel out_a, out_channel out_b, "
    "channel_opts opts)",
    "status channel_connect_with(out_channel out, string path, "
    "int timeout_ms, channel_opts opts)",
    "status channel_version(channel channel, out_u32 version)",
    "status channel_limits(channel channel, out_u32 own_max_buffers, "
    "out_u64 own_max_mapped_bytes, out_u32 peer_max_buffers, "
    "out_u64 peer_max_mapped_bytes)",
    "status listener_listen(out_listener out, string path)",
    "status listener_options_init(address opts, u32 version)",
    "status channel_options_init(address opts, u32 version)",
    "status listener_listen_with(out_listener out, string path, "
    "listener_opts opts)",
    "status channel_peer_credentials(channel channel, out_i64 pid, "
    "out_i64 uid, out_i64 gid)",
    "status listener_accept(out_channel out, listener listener, "
    "int timeout_ms)",
    "int listener_fd(listener listener)",
    "void listener_free(drop_listener listener)",
    "status channel_connect(out_channel out, string path, int timeout_ms)",
    "status channel_from_fd(out_channel out, int fd)",
    "int channel_fd(channel channel)",
    "new_channel channel_ref(channel channel)",
    "void channel_unref(drop_channel channel)",
    "status channel_send(channel channel, tensor tensor, send_flags flags)",
    "status channel_recv(out_tensor out, channel channel, int timeout_ms)",
    "status channel_send_fence(channel channel, fence fence)",
    "status channel_recv_fence(out_fence out, channel channel, "
    "int timeout_ms)",
    "status tensor_export(out_wire(capacity) descriptor, "
    "capacity(descriptor) capacity, out_needed(descriptor) length, "
    "out_fds fds, out_count(fds) nfds, tensor tensor, send_flags flags)",
    "status tensor_import(out_tensor out, bytes(length) descriptor, "
    "length(descriptor) length, ints(nfds) fds, length(fds) nfds)",
    "status fence_new(out_fence out, u64 initial)",
    "status fence_import_fd(out_fence out, int fd)",
    "status fence_export_fd(out_fd out_fd, fence fence)",
    "new_fence fence_ref(fence fence)",
    "void fence_unref(drop_fence fence)",
    "u64 fence_value(fence fence)",
    "status fence_signal(fence fence, u64 value)",
    "status fence_wait(fence fence, u64 value, i64 timeout_ns)",
    "status fence_cuda_signal(fence fence, u64 value, u32 device, u64 stream)",
    "status fence_cuda_wait(fence fence, u64 value, u32 device, u64 stream)",
    "status tensor_copy(tensor dst, tensor src, u64 stream)",
    "status tensor_cuda_wait(tensor tensor, u64 stream)",
    "status tensor_import_cuda_fd(out_tensor out, int fd, memory memory, "
    "u32 device, dtype dtype, length(shape) ndim, i64s(ndim) shape, "
    "u64 byte_offset)",
    "status pool_new(out_pool out, tensor prototype, size count)",
    "status pool_acquire(out_tensor out, pool pool, int timeout_ms)",
    "size pool_available(pool pool)",
    "size pool_size(pool pool)",
    "new_pool pool_ref(pool pool)",
    "void pool_unref(drop_pool pool)",
    "status buffer_map_file(out_buffer out, string path, int fd, u32 flags)",
    "status safetensors_open(out_safetensors out, string path, u32 flags)",
    "void safetensors_close(drop_safetensors file)",
    "size safetensors_count(safetensors file)",
    "string safetensors_name(safetensors file, size index)",
    "status safetensors_tensor(out_tensor out, safetensors file, string name)",
    "size safetensors_metadata_count(safetensors file)",
    "string safetensors_metadata_key(safetensors file, size index)",
    "string safetensors_metadata_value(safetensors file, string key)",
};

static const char *const kind_names[] = {
    [K_VOID] = "void",
    [K_STATUS] = "status",
    [K_INT] = "int",
    [K_U32] = "u32",
    [K_I64] = "i64",
    [K_U64] = "u64",
    [K_SIZE] = "size",
    [K_F64] = "f64",
    [K_BOOL] = "bool",
    [K_DTYPE] = "dtype",
    [K_MEMORY] = "memory",
    [K_FORMAT] = "format",
    [K_LAYOUT] = "layout",
    [K_STRING] = "string",
    [K_OUT_I64] = "out_i64",
    [K_OUT_U32] = "out_u32",
    [K_OUT_U64] = "out_u64",
    [K_OUT_F64] = "out_f64",
    [K_OUT_FD] = "out_fd",
    [K_OUT_DTYPE] = "out_dtype",
    [K_OUT_MEMORY] = "out_memory",
    [K_OUT_FORMAT] = "out_format",
    [K_OUT_OPTS] = "out_opts",
    [K_OUT_BYTES] = "out_bytes",
    [K_OUT_WIRE] = "out_wire",
    [K_OUT_FDS] = "out_fds",
    [K_OUT_COUNT] = "out_count",
    [K_OUT_NEEDED] = "out_needed",
    [K_I64S] = "i64s",
    [K_F64S] = "f64s",
    [K_INTS] = "ints",
    [K_BYTES] = "bytes",
    [K_LENGTH] = "length",
    [K_CAPACITY] = "capacity",
    [K_OPTS] = "opts",
    [K_LISTENER_OPTS] = "listener_opts",
    [K_CHANNEL_OPTS] = "channel_opts",
    [K_MAP_FLAGS] = "map_flags",
    [K_BUFFER_FLAGS] = "buffer_flags",
    [K_SEND_FLAGS] = "send_flags",
    [K_DESTROY] = "destroy",
    [K_USER_DATA] = "user_data",
    [K_ADDRESS] = "address",
};

static Signature signatures[G_N_ELEMENTS(signature_table)];

/* "type" or "type(of)" to its kind (and a handle type's tag in *handle);
 * exits on a typo in the table. */
static Kind parse_kind(const char *type, char **of, char *handle) {
  g_auto(GStrv) parts = g_strsplit_set(type, "()", -1);
  *of = parts[1] != NULL ? g_strdup(parts[1]) : NULL;
  static const struct {
    const char *prefix;
    Kind kind;
  } handle_kinds[] = {{"new_", K_NEW_HANDLE},
                      {"drop_", K_DROP_HANDLE},
                      {"out_", K_OUT_HANDLE},
                      {"", K_HANDLE}};
  for (size_t k = 0; k < G_N_ELEMENTS(handle_kinds); k++) {
    const char *rest = parts[0] + strlen(handle_kinds[k].prefix);
    if (!g_str_has_prefix(parts[0], handle_kinds[k].prefix))
      continue;
    for (size_t h = 0; h < G_N_ELEMENTS(handle_types); h++) {
      if (g_str_equal(rest, handle_types[h].name)) {
        *handle = handle_types[h].tag;
        return handle_kinds[k].kind;
      }
    }
  }
  for (size_t k = 0; k < G_N_ELEMENTS(kind_names); k++) {
    if (kind_names[k] != NULL && g_str_equal(parts[0], kind_names[k]))
      return (Kind)k;
  }
  fprintf(stderr, "conformance[ffi]: unknown type \"%s\"\n", type);
  exit(2);
}

/* Parses the table once; the strings live as long as the process. */
static void parse_signatures(void) {
  for (size_t i = 0; i < G_N_ELEMENTS(signature_table); i++) {
    Signature *sig = &signatures[i];
    char *open = strchr(signature_table[i], '(');
    g_autofree char *head =
        g_strndup(signature_table[i], (size_t)(open - signature_table[i]));
    g_autofree char *body = g_strndup(open + 1, strlen(open + 1) - 1);
    char *space = strchr(head, ' ');
    *space = '\0';
    char *ignored;
    sig->ret = parse_kind(head, &ignored, &sig->ret_handle);
    sig->name = g_strdup(space + 1);
    g_auto(GStrv) params = g_strsplit(body, ", ", MAX_PARAMS);
    for (int p = 0; p < MAX_PARAMS && params[p] != NULL && *params[p]; p++) {
      char *split = strrchr(params[p], ' ');
      *split = '\0';
      sig->params[p].kind =
          parse_kind(params[p], &sig->params[p].of, &sig->params[p].handle);
      sig->params[p].name = g_strdup(split + 1);
    }
  }
}

/* Macro constants, as data. */
typedef struct Flag {
  const char *name;
  uint32_t bit;
} Flag;
static const Flag map_flags[] = {{"read", 0x1}, {"write", 0x2}, {0}};
static const Flag buffer_flags[] = {{"read_only", 0x1}, {0}};
static const Flag send_flags[] = {{"read_only", 0x1}, {0}};
static const Flag alloc_flags[] = {
    {"huge_pages", 0x1}, {"uninitialized", 0x2}, {0}};
static const Flag seals[] = {{"seal", F_SEAL_SEAL},
                             {"shrink", F_SEAL_SHRINK},
                             {"grow", F_SEAL_GROW},
                             {"write", F_SEAL_WRITE},
                             {"future_write", F_SEAL_FUTURE_WRITE},
                             {0}};
#define TB_OK 0
#define TB_ERR_OUT_OF_RANGE (-4)
#define TB_ERR_SYSTEM (-6)
/* TB_DESCRIPTOR_MAX_FDS, and the descriptor buffer when a step gives no
 * capacity: the most that tb_tensor_import accepts. */
#define DESCRIPTOR_MAX_FDS 4
#define DESCRIPTOR_CAPACITY 65536

/* tb_alloc_options: {uint32 version, uint32 memory, uint64 alignment,
 * const char *name, uint32 flags}, laid out by libffi. */
enum { OPT_VERSION, OPT_MEMORY, OPT_ALIGNMENT, OPT_NAME, OPT_FLAGS, OPT_COUNT };
static ffi_type *opts_fields[] = {&ffi_type_uint32, &ffi_type_uint32,
                                  &ffi_type_uint64, &ffi_type_pointer,
                                  &ffi_type_uint32, NULL};
static ffi_type opts_type = {0, 0, FFI_TYPE_STRUCT, opts_fields};
static size_t opts_offsets[OPT_COUNT];

/* tb_listener_options (version 2): {uint32 version, uint32 mode,
 * const uint32_t *uids, size_t nuids, uint32 flags, int32 hello_timeout_ms,
 * const tb_channel_options *channel_options}, laid out by libffi. */
enum {
  LOPT_VERSION,
  LOPT_MODE,
  LOPT_UIDS,
  LOPT_NUIDS,
  LOPT_FLAGS,
  LOPT_HELLO_TIMEOUT,
  LOPT_CHANNEL_OPTIONS,
  LOPT_COUNT
};
static ffi_type *listener_opts_fields[] = {
    &ffi_type_uint32, &ffi_type_uint32, &ffi_type_pointer, &ffi_type_uint64,
    &ffi_type_uint32, &ffi_type_sint32, &ffi_type_pointer, NULL};
static ffi_type listener_opts_type = {0, 0, FFI_TYPE_STRUCT,
                                      listener_opts_fields};
static size_t listener_opts_offsets[LOPT_COUNT];

/* tb_channel_options: {uint32 version, uint32 max_buffers,
 * uint64 max_mapped_bytes}, laid out by libffi. */
enum { COPT_VERSION, COPT_MAX_BUFFERS, COPT_MAX_MAPPED_BYTES, COPT_COUNT };
static ffi_type *channel_opts_fields[] = {&ffi_type_uint32, &ffi_type_uint32,
                                          &ffi_type_uint64, NULL};
static ffi_type channel_opts_type = {0, 0, FFI_TYPE_STRUCT,
                                     channel_opts_fields};
static size_t channel_opts_offsets[COPT_COUNT];

/* ---- calling through libffi ---------------------------------------------- */

static void *library;

static const Signature *signature(const char *name) {
  for (size_t i = 0; i < G_N_ELEMENTS(signatures); i++) {
    if (g_str_equal(signatures[i].name, name))
      return &signatures[i];
  }
  return NULL;
}

static ffi_type *ffi_type_of(Kind kind) {
  switch (kind) {
  case K_VOID:
    return &ffi_type_void;
  case K_STATUS:
  case K_INT:
  case K_DTYPE: /* C enums with int values */
  case K_MEMORY:
  case K_FORMAT:
  case K_LAYOUT:
    return &ffi_type_sint;
  case K_U32:
  case K_MAP_FLAGS:
  case K_BUFFER_FLAGS:
  case K_SEND_FLAGS:
    return &ffi_type_uint32;
  case K_I64:
    return &ffi_type_sint64;
  case K_U64:
    return &ffi_type_uint64;
  case K_SIZE:
  case K_LENGTH:
  case K_CAPACITY:
    return sizeof(size_t) == 8 ? &ffi_type_uint64 : &ffi_type_uint32;
  case K_F64:
    return &ffi_type_double;
  case K_BOOL:
    return &ffi_type_uint8;
  default: /* handles, arrays, strings, out-parameters, the callback */
    return &ffi_type_pointer;
  }
}

/* One argument or return value. */
typedef union Slot {
  ffi_arg word; /* a return value narrower than a register widens to this */
  ffi_sarg sword;
  int32_t i32;
  uint32_t u32;
  int64_t i64;
  uint64_t u64;
  double f64;
  uint8_t u8;
  void *ptr;
} Slot;

/* Stores a size_t argument in the width ffi_type_of(K_SIZE) says. */
static void set_size(Slot *slot, uint64_t value) {
  if (sizeof(size_t) == 8)
    slot->u64 = value;
  else
    slot->u32 = (uint32_t)value;
}

/* Calls tb_<sig->name> with `values` (one pointer per parameter). */
static void ffi_invoke(const Signature *sig, void **values, Slot *ret) {
  ffi_type *types[MAX_PARAMS];
  unsigned n = 0;
  while (n < MAX_PARAMS && sig->params[n].name != NULL) {
    types[n] = ffi_type_of(sig->params[n].kind);
    n++;
  }
  ffi_cif cif;
  if (ffi_prep_cif(&cif, FFI_DEFAULT_ABI, n, ffi_type_of(sig->ret), types) !=
      FFI_OK) {
    fprintf(stderr, "conformance[ffi]: ffi_prep_cif(tb_%s) failed\n",
            sig->name);
    exit(2);
  }
  g_autofree char *symbol = g_strconcat("tb_", sig->name, NULL);
  void *fn = dlsym(library, symbol);
  if (fn == NULL) {
    fprintf(stderr, "conformance[ffi]: %s\n", dlerror());
    exit(2);
  }
  memset(ret, 0, sizeof *ret);
  ffi_call(&cif, FFI_FN(fn), ret, values);
}

/* A library call the runner itself needs (names, nbytes, option defaults). */
static Slot helper(const char *name, ...) {
  const Signature *sig = signature(name);
  void *values[MAX_PARAMS];
  va_list args;
  va_start(args, name);
  for (unsigned i = 0; i < MAX_PARAMS && sig->params[i].name != NULL; i++)
    values[i] = va_arg(args, void *);
  va_end(args);
  Slot ret;
  ffi_invoke(sig, values, &ret);
  return ret;
}

static const char *status_name(int status) {
  return helper("status_name", &status).ptr;
}
static const char *dtype_name(int dtype) {
  const char *name = helper("dtype_name", &dtype).ptr;
  return name != NULL ? name : "invalid";
}
static const char *memory_name(int memory) {
  return helper("memory_name", &memory).ptr;
}
static const char *pixel_format_name(int format) {
  const char *name = helper("pixel_format_name", &format).ptr;
  return name != NULL ? name : "invalid";
}
/* tb_pixel_layout has no name function: its names are data, like flags. */
static const char *pixel_layout_name(int layout) {
  static const char *const names[] = {"invalid", "packed", "planar",
                                      "semi_planar"};
  return layout >= 0 && layout < (int)G_N_ELEMENTS(names) ? names[layout]
                                                          : NULL;
}
static int64_t live_objects(void) { return helper("live_objects").i64; }

/* ---- case state ---------------------------------------------------------- */

/* A step's result, and a bound name. Handles are JSON strings
 * "@<address>", so comparing two handles is comparing strings. */
typedef struct Var {
  JsonNode *value; /* NULL: the call gives none */
  char release;    /* what the case must do at its end: a handle type's tag
                      (release the handle), 'f' close fd, 'F' close fds, 0
                      nothing */
  void *handle;
  int fd;
  GArray *fds;
  /* A result of several out-parameters: name -> Var*, each owning its
   * part; `value` is then an object of their values. */
  GHashTable *members;
} Var;

static void var_free(gpointer data) {
  Var *var = data;
  if (var->value != NULL)
    json_node_unref(var->value);
  if (var->fds != NULL)
    g_array_unref(var->fds);
  if (var->members != NULL)
    g_hash_table_unref(var->members);
  g_free(var);
}

/* A buffer_wrap'ed block and how often its destroy-notify ran. */
typedef struct Block {
  int destroyed;
  bool wrapped;
  uint8_t bytes[];
} Block;

typedef struct Run {
  GHashTable *vars;  /* name -> Var */
  GPtrArray *blocks; /* Block*, freed after the leak check */
  GHashTable *saved_env;
  int64_t live_start;
  void *destroy_code; /* the closure's entry point, as tb_destroy_notify */
} Run;

static void release(Var *var) {
  if (var->members != NULL) {
    GHashTableIter iter;
    gpointer member;
    g_hash_table_iter_init(&iter, var->members);
    while (g_hash_table_iter_next(&iter, NULL, &member))
      release(member);
  }
  if (var->release == 'f')
    close(var->fd);
  for (guint i = 0; var->release == 'F' && i < var->fds->len; i++)
    close(g_array_index(var->fds, int, i));
  for (size_t h = 0; h < G_N_ELEMENTS(handle_types); h++) {
    if (var->release == handle_types[h].tag) {
      Slot ignored;
      void *values[] = {&var->handle};
      ffi_invoke(signature(handle_types[h].release), values, &ignored);
    }
  }
  var->release = 0;
}

/* Whether releasing the var would release anything. */
static bool owns(Var *var) {
  if (var->release != 0)
    return true;
  GHashTableIter iter;
  gpointer member;
  if (var->members != NULL) {
    g_hash_table_iter_init(&iter, var->members);
    while (g_hash_table_iter_next(&iter, NULL, &member))
      if (owns(member))
        return true;
  }
  return false;
}

/* ---- decoding arguments -------------------------------------------------- */

typedef struct Step {
  Run *run;
  JsonObject *args;
  char *error;
} Step;

static void fail(Step *s, const char *format, ...) G_GNUC_PRINTF(2, 3);
static void fail(Step *s, const char *format, ...) {
  if (s->error != NULL)
    return;
  va_list args;
  va_start(args, format);
  s->error = g_strdup_vprintf(format, args);
  va_end(args);
}

static bool is_text(JsonNode *n) {
  return n != NULL && JSON_NODE_HOLDS_VALUE(n) &&
         json_node_get_value_type(n) == G_TYPE_STRING;
}

/* Follows a "$name" to its bound value; other nodes are themselves. */
static JsonNode *deref(Step *s, JsonNode *n, Var **var_out) {
  if (!is_text(n) || json_node_get_string(n)[0] != '$')
    return n;
  Var *var = g_hash_table_lookup(s->run->vars, json_node_get_string(n) + 1);
  if (var == NULL) {
    fail(s, "%s is not bound", json_node_get_string(n));
    return NULL;
  }
  if (var_out != NULL)
    *var_out = var;
  return var->value;
}

static int64_t to_integer(Step *s, JsonNode *n, const char *what) {
  n = deref(s, n, NULL);
  if (n != NULL && JSON_NODE_HOLDS_VALUE(n) &&
      json_node_get_value_type(n) == G_TYPE_INT64)
    return json_node_get_int(n);
  if (is_text(n)) {
    const char *text = json_node_get_string(n);
    char *end;
    errno = 0;
    int64_t v = text[0] == '-' ? strtoll(text, &end, 10)
                               : (int64_t)strtoull(text, &end, 10);
    if (errno == 0 && end != text && *end == '\0')
      return v;
  }
  fail(s, "%s is not an integer", what);
  return 0;
}

static double to_double(Step *s, JsonNode *n, const char *what) {
  static const struct {
    const char *text;
    double value;
  } specials[] = {{"nan", NAN}, {"inf", INFINITY}, {"-inf", -INFINITY}};
  for (size_t i = 0; is_text(n) && i < G_N_ELEMENTS(specials); i++) {
    if (g_str_equal(json_node_get_string(n), specials[i].text))
      return specials[i].value;
  }
  if (n != NULL && JSON_NODE_HOLDS_VALUE(n) && !is_text(n))
    return json_node_get_double(n);
  fail(s, "%s is not a number", what);
  return 0;
}

static uint32_t to_flags(Step *s, JsonNode *n, const Flag *table,
                         const char *what) {
  if (!is_text(n))
    return (uint32_t)to_integer(s, n, what);
  uint32_t bits = 0;
  g_auto(GStrv) names = g_strsplit(json_node_get_string(n), "|", -1);
  for (char **name = names; *name != NULL; name++) {
    const Flag *f = table;
    while (f->name != NULL && !g_str_equal(f->name, *name))
      f++;
    if (f->name == NULL)
      fail(s, "%s: unknown flag %s", what, *name);
    bits |= f->bit;
  }
  return bits;
}

/* An enum given by name goes through the library's own parser. */
static int to_enum(Step *s, JsonNode *n, const char *parser, const char *what) {
  if (!is_text(n))
    return (int)to_integer(s, n, what);
  int value = 0;
  const char *text = json_node_get_string(n);
  void *out = &value;
  if (helper(parser, &out, &text).sword != TB_OK)
    fail(s, "%s \"%s\" is not a known name", what, text);
  return value;
}

/* Lower-case hex, or a "$name" bound to it, to bytes (g_free'd by the
 * caller). */
static uint8_t *to_bytes(Step *s, JsonNode *n, const char *what, size_t *len) {
  n = deref(s, n, NULL);
  const char *text = is_text(n) ? json_node_get_string(n) : "";
  size_t digits = strlen(text);
  uint8_t *bytes = g_malloc(digits / 2 + 1);
  *len = digits / 2;
  for (size_t i = 0; i < digits; i++) {
    int v = g_ascii_xdigit_value(text[i]);
    if (v < 0 || g_ascii_isupper(text[i]) || digits % 2 != 0 || !is_text(n)) {
      fail(s, "%s is not lower-case hex", what);
      break;
    }
    if (i % 2 == 0)
      bytes[i / 2] = (uint8_t)(v << 4);
    else
      bytes[i / 2] |= (uint8_t)v;
  }
  return bytes;
}

/* The handle a "$name" argument names; the var through var_out. */
static void *to_handle(Step *s, JsonNode *n, char type, Var **var_out,
                       const char *what) {
  if (JSON_NODE_HOLDS_NULL(n))
    return NULL;
  Var *var = NULL;
  deref(s, n, &var);
  if (var == NULL || var->handle == NULL || var->release != type) {
    fail(s, "%s does not name a live handle of the right type", what);
    return NULL;
  }
  *var_out = var;
  return var->handle;
}

/* Storage and ffi values for one call of a signature. */
typedef struct Call {
  const Signature *sig;
  Slot slots[MAX_PARAMS]; /* the argument values */
  Slot outs[MAX_PARAMS];  /* what out-parameters point at */
  void *values[MAX_PARAMS];
  size_t lengths[MAX_PARAMS]; /* arrays' entries; lengths' values */
  Var *dropped;               /* the variable a K_DROP_* argument consumes */
  Block *block;               /* buffer_wrap's block */
  GPtrArray *keep;            /* storage to free after the call */
} Call;

static int param_index(const Signature *sig, const char *name) {
  for (int i = 0; i < MAX_PARAMS && sig->params[i].name != NULL; i++) {
    if (g_str_equal(sig->params[i].name, name))
      return i;
  }
  return -1;
}

static void *keep(Call *c, void *p) {
  g_ptr_array_add(c->keep, p);
  return p;
}

static bool is_out(Kind kind) {
  return kind >= K_OUT_HANDLE && kind <= K_OUT_NEEDED;
}

/* A tb_channel_options from an object: the defaults, then its fields. */
static void *channel_opts(Step *s, Call *c, JsonNode *n) {
  uint8_t *opts = keep(c, g_malloc0(channel_opts_type.size));
  uint32_t version = 1;
  void *out = opts;
  helper("channel_options_init", &out, &version); /* the defaults */
  JsonObject *o = json_node_get_object(n);
  JsonNode *f;
  if ((f = json_object_get_member(o, "version")) != NULL)
    *(uint32_t *)(opts + channel_opts_offsets[COPT_VERSION]) =
        (uint32_t)to_integer(s, f, "opts.version");
  if ((f = json_object_get_member(o, "max_buffers")) != NULL)
    *(uint32_t *)(opts + channel_opts_offsets[COPT_MAX_BUFFERS]) =
        (uint32_t)to_integer(s, f, "opts.max_buffers");
  if ((f = json_object_get_member(o, "max_mapped_bytes")) != NULL)
    *(uint64_t *)(opts + channel_opts_offsets[COPT_MAX_MAPPED_BYTES]) =
        (uint64_t)to_integer(s, f, "opts.max_mapped_bytes");
  return opts;
}

/* Fills one argument that does not depend on another. */
static void decode(Step *s, Call *c, int i) {
  const Param *p = &c->sig->params[i];
  Slot *slot = &c->slots[i];
  JsonNode *n = json_object_get_member(s->args, p->name);
  bool given = n != NULL && !JSON_NODE_HOLDS_NULL(n);
  c->values[i] = slot;
  if (is_out(p->kind)) {
    /* Poisoned, so that a failed call that writes it is caught. */
    memset(&c->outs[i], 0xa5, sizeof c->outs[i]);
    slot->ptr = n != NULL && JSON_NODE_HOLDS_NULL(n) ? NULL : &c->outs[i];
    if (p->kind == K_OUT_OPTS && slot->ptr != NULL)
      slot->ptr =
          memset(keep(c, g_malloc(opts_type.size)), 0xa5, opts_type.size);
    if (p->kind == K_OUT_FDS && slot->ptr != NULL) {
      /* Room for twice the most the call writes, poisoned like the rest. */
      c->lengths[i] = 2 * DESCRIPTOR_MAX_FDS * sizeof(int);
      slot->ptr = memset(keep(c, g_malloc(c->lengths[i])), 0xa5, c->lengths[i]);
    }
    return;
  }
  if (n == NULL && p->kind != K_LENGTH && p->kind < K_HANDLE)
    fail(s, "argument %s is missing", p->name);
  Var *var = NULL;
  switch (p->kind) {
  case K_INT:
    slot->i32 = n != NULL ? (int32_t)to_integer(s, n, p->name) : 0;
    break;
  case K_U32:
    slot->u32 = n != NULL ? (uint32_t)to_integer(s, n, p->name) : 0;
    break;
  case K_I64:
  case K_U64:
    slot->i64 = n != NULL ? to_integer(s, n, p->name) : 0;
    break;
  case K_SIZE:
    set_size(slot, n != NULL ? (uint64_t)to_integer(s, n, p->name) : 0);
    break;
  case K_F64:
    if (n != NULL)
      slot->f64 = to_double(s, n, p->name);
    break;
  case K_DTYPE:
    if (n != NULL)
      slot->i32 = to_enum(s, n, "dtype_from_name", p->name);
    break;
  case K_MEMORY:
    if (n != NULL)
      slot->i32 = to_enum(s, n, "memory_from_name", p->name);
    break;
  case K_FORMAT:
    if (n != NULL)
      slot->i32 = to_enum(s, n, "pixel_format_from_name", p->name);
    break;
  case K_MAP_FLAGS:
    if (n != NULL)
      slot->u32 = to_flags(s, n, map_flags, p->name);
    break;
  case K_BUFFER_FLAGS:
    slot->u32 = n != NULL ? to_flags(s, n, buffer_flags, p->name) : 0;
    break;
  case K_SEND_FLAGS:
    if (n != NULL)
      slot->u32 = to_flags(s, n, send_flags, p->name);
    break;
  case K_STRING: {
    JsonNode *text = given ? deref(s, n, NULL) : NULL;
    slot->ptr = is_text(text) ? (void *)json_node_get_string(text) : NULL;
    if (given && !is_text(text))
      fail(s, "%s is not a string", p->name);
    break;
  }
  case K_HANDLE:
  case K_DROP_HANDLE:
    slot->ptr = n != NULL ? to_handle(s, n, p->handle, &var, p->name) : NULL;
    break;
  case K_I64S:
  case K_F64S:
  case K_INTS: {
    slot->ptr = NULL;
    JsonNode *list = given ? deref(s, n, NULL) : NULL;
    if (list == NULL)
      break;
    if (!JSON_NODE_HOLDS_ARRAY(list)) {
      fail(s, "%s is not an array", p->name);
      break;
    }
    JsonArray *array = json_node_get_array(list);
    c->lengths[i] = json_array_get_length(array);
    double *f = keep(c, g_new0(double, c->lengths[i] + 1));
    int64_t *v = (int64_t *)f;
    int *ints = (int *)f;
    for (guint k = 0; k < c->lengths[i]; k++) {
      JsonNode *e = json_array_get_element(array, k);
      if (p->kind == K_F64S)
        f[k] = to_double(s, e, p->name);
      else if (p->kind == K_INTS)
        ints[k] = (int)to_integer(s, e, p->name);
      else
        v[k] = to_integer(s, e, p->name);
    }
    slot->ptr = f;
    break;
  }
  case K_BYTES: {
    slot->ptr = NULL;
    if (!given)
      break;
    slot->ptr = keep(c, to_bytes(s, n, p->name, &c->lengths[i]));
    break;
  }
  case K_OPTS: {
    slot->ptr = NULL;
    if (!given)
      break;
    uint8_t *opts = keep(c, g_malloc0(opts_type.size));
    uint32_t version = 1;
    void *out = opts;
    helper("alloc_options_init", &out, &version); /* the defaults */
    JsonObject *o = json_node_get_object(n);
    JsonNode *f;
    if ((f = json_object_get_member(o, "version")) != NULL)
      *(uint32_t *)(opts + opts_offsets[OPT_VERSION]) =
          (uint32_t)to_integer(s, f, "opts.version");
    if ((f = json_object_get_member(o, "memory")) != NULL)
      *(uint32_t *)(opts + opts_offsets[OPT_MEMORY]) =
          (uint32_t)to_enum(s, f, "memory_from_name", "opts.memory");
    if ((f = json_object_get_member(o, "alignment")) != NULL)
      *(uint64_t *)(opts + opts_offsets[OPT_ALIGNMENT]) =
          (uint64_t)to_integer(s, f, "opts.alignment");
    if ((f = json_object_get_member(o, "name")) != NULL)
      *(const char **)(opts + opts_offsets[OPT_NAME]) =
          JSON_NODE_HOLDS_NULL(f) ? NULL : json_node_get_string(f);
    if ((f = json_object_get_member(o, "flags")) != NULL)
      *(uint32_t *)(opts + opts_offsets[OPT_FLAGS]) =
          to_flags(s, f, alloc_flags, "opts.flags");
    slot->ptr = opts;
    break;
  }
  case K_CHANNEL_OPTS:
    slot->ptr = given ? channel_opts(s, c, n) : NULL;
    break;
  case K_LISTENER_OPTS: {
    slot->ptr = NULL;
    if (!given)
      break;
    uint8_t *opts = keep(c, g_malloc0(listener_opts_type.size));
    uint32_t version = 2;
    void *out = opts;
    helper("listener_options_init", &out, &version); /* the defaults */
    JsonObject *o = json_node_get_object(n);
    JsonNode *f;
    static const struct {
      const char *name;
      int field;
    } u32_fields[] = {{"version", LOPT_VERSION},
                      {"mode", LOPT_MODE},
                      {"flags", LOPT_FLAGS},
                      {"hello_timeout_ms", LOPT_HELLO_TIMEOUT}};
    for (size_t k = 0; k < G_N_ELEMENTS(u32_fields); k++)
      if ((f = json_object_get_member(o, u32_fields[k].name)) != NULL)
        *(uint32_t *)(opts + listener_opts_offsets[u32_fields[k].field]) =
            (uint32_t)to_integer(s, f, u32_fields[k].name);
    if ((f = json_object_get_member(o, "uids")) != NULL &&
        JSON_NODE_HOLDS_ARRAY(f)) {
      JsonArray *list = json_node_get_array(f);
      guint n_uids = json_array_get_length(list);
      uint32_t *uids = keep(c, g_malloc0((n_uids + 1) * sizeof *uids));
      for (guint k = 0; k < n_uids; k++)
        uids[k] = (uint32_t)to_integer(s, json_array_get_element(list, k),
                                       "opts.uids");
      *(uint32_t **)(opts + listener_opts_offsets[LOPT_UIDS]) = uids;
      *(uint64_t *)(opts + listener_opts_offsets[LOPT_NUIDS]) = n_uids;
    }
    if ((f = json_object_get_member(o, "channel_options")) != NULL &&
        !JSON_NODE_HOLDS_NULL(f))
      *(void **)(opts + listener_opts_offsets[LOPT_CHANNEL_OPTIONS]) =
          channel_opts(s, c, f);
    slot->ptr = opts;
    break;
  }
  case K_DESTROY:
    slot->ptr = s->run->destroy_code;
    break;
  default: /* K_LENGTH and K_USER_DATA depend on others: see finish_args */
    break;
  }
  if (var != NULL && p->kind == K_DROP_HANDLE)
    c->dropped = var;
}

/* Lengths (explicit, or their array's), the wrapped block and dst bytes. */
static void finish_args(Step *s, Call *c) {
  const Signature *sig = c->sig;
  for (int i = 0; i < MAX_PARAMS && sig->params[i].name; i++) {
    const Param *p = &sig->params[i];
    if (p->kind != K_LENGTH && p->kind != K_CAPACITY)
      continue;
    JsonNode *n = json_object_get_member(s->args, p->name);
    int of = param_index(sig, p->of);
    if (n != NULL)
      c->lengths[i] = (size_t)to_integer(s, n, p->name);
    else if (p->kind == K_CAPACITY)
      c->lengths[i] = DESCRIPTOR_CAPACITY;
    else if (sig->params[of].kind == K_OUT_BYTES) /* default: nbytes */
      c->lengths[i] =
          helper("tensor_nbytes", &c->slots[param_index(sig, "tensor")]).u64;
    else
      c->lengths[i] = c->lengths[of];
    set_size(&c->slots[i], c->lengths[i]);
  }
  for (int i = 0; i < MAX_PARAMS && sig->params[i].name; i++) {
    const Param *p = &sig->params[i];
    int length = p->of != NULL ? param_index(sig, p->of) : -1;
    if ((p->kind == K_OUT_BYTES || p->kind == K_OUT_WIRE) &&
        c->slots[i].ptr != NULL) {
      size_t size = c->lengths[length];
      c->slots[i].ptr = memset(keep(c, g_malloc(size + 1)), 0xa5, size + 1);
      c->lengths[i] = size;
    } else if ((p->kind == K_I64S || p->kind == K_F64S || p->kind == K_INTS ||
                p->kind == K_BYTES) &&
               c->slots[i].ptr != NULL && c->lengths[i] < c->lengths[length])
      fail(s, "%s has fewer entries than %s", p->name, p->of);
  }
  int data = param_index(sig, "user_data");
  if (data >= 0) {
    /* buffer_wrap: the block outlives the call; freed after the leak check */
    int bytes = param_index(sig, "data");
    size_t len = c->lengths[bytes];
    c->block = g_malloc0(sizeof(Block) + len);
    if (c->slots[bytes].ptr != NULL) {
      memcpy(c->block->bytes, c->slots[bytes].ptr, len);
      c->slots[bytes].ptr = c->block->bytes;
    }
    g_ptr_array_add(s->run->blocks, c->block);
    c->slots[data].ptr = c->block;
  }
}

/* ---- results ------------------------------------------------------------- */

static JsonNode *int_node(int64_t v) {
  JsonNode *n = json_node_new(JSON_NODE_VALUE);
  json_node_set_int(n, v);
  return n;
}
static JsonNode *text_node(const char *text) {
  JsonNode *n = json_node_new(text != NULL ? JSON_NODE_VALUE : JSON_NODE_NULL);
  if (text != NULL)
    json_node_set_string(n, text);
  return n;
}
static JsonNode *u64_node(uint64_t v) {
  if (v <= INT64_MAX)
    return int_node((int64_t)v);
  g_autofree char *text = g_strdup_printf("%" G_GUINT64_FORMAT, v);
  return text_node(text);
}
static JsonNode *handle_node(void *handle) {
  if (handle == NULL)
    return text_node(NULL);
  g_autofree char *text = g_strdup_printf("@%p", handle);
  return text_node(text);
}

static char *hex(const uint8_t *bytes, size_t len) {
  GString *text = g_string_new(NULL);
  for (size_t i = 0; i < len; i++)
    g_string_append_printf(text, "%02x", bytes[i]);
  return g_string_free(text, FALSE);
}

/* The value an out count gives for the out array `i` (its `of`). */
static size_t count_of(Call *c, int i) {
  for (int j = 0; j < MAX_PARAMS && c->sig->params[j].name; j++) {
    const Param *p = &c->sig->params[j];
    if ((p->kind == K_OUT_COUNT || p->kind == K_OUT_NEEDED) &&
        g_str_equal(p->of, c->sig->params[i].name))
      return sizeof(size_t) == 8 ? (size_t)c->outs[j].u64 : c->outs[j].u32;
  }
  return 0;
}

/* The JSON form of a value of `kind` held in `slot` (returned or pointed
 * at by an out-parameter); owned handles and fds also go to `r`. */
static JsonNode *encode(Call *c, Kind kind, char handle, int i,
                        const Slot *slot, Var *r) {
  switch (kind) {
  case K_INT:
    return int_node(slot->sword);
  case K_U32:
    return int_node((uint32_t)slot->word);
  case K_I64:
  case K_OUT_I64:
    return int_node(slot->i64);
  case K_OUT_U32:
    return int_node(slot->u32);
  case K_OUT_U64:
    return u64_node(slot->u64);
  case K_U64:
    return u64_node(slot->u64);
  case K_SIZE: /* returned: widened to ffi_arg */
    return u64_node((size_t)slot->word);
  case K_ADDRESS:
    return u64_node((uintptr_t)slot->ptr);
  case K_OUT_F64: {
    JsonNode *n = json_node_new(JSON_NODE_VALUE);
    json_node_set_double(n, slot->f64);
    return n;
  }
  case K_BOOL: {
    JsonNode *n = json_node_new(JSON_NODE_VALUE);
    json_node_set_boolean(n, (uint8_t)slot->word != 0);
    return n;
  }
  case K_STRING:
    return text_node(slot->ptr);
  case K_DTYPE:
    return text_node(dtype_name((int)slot->sword));
  case K_OUT_DTYPE:
    return text_node(dtype_name(slot->i32));
  case K_MEMORY:
    return text_node(memory_name((int)slot->sword));
  case K_OUT_MEMORY:
    return text_node(memory_name(slot->i32));
  case K_FORMAT:
    return text_node(pixel_format_name((int)slot->sword));
  case K_OUT_FORMAT:
    return text_node(pixel_format_name(slot->i32));
  case K_LAYOUT:
    return text_node(pixel_layout_name((int)slot->sword));
  case K_OUT_FD:
    r->release = 'f';
    r->fd = slot->i32;
    return int_node(slot->i32);
  case K_HANDLE: /* borrowed */
    return handle_node(slot->ptr);
  case K_NEW_HANDLE:
  case K_OUT_HANDLE:
    r->handle = slot->ptr;
    r->release = slot->ptr != NULL ? handle : 0;
    return handle_node(slot->ptr);
  case K_OUT_OPTS: {
    const uint8_t *o = c->slots[i].ptr;
    JsonObject *obj = json_object_new();
    json_object_set_int_member(obj, "version",
                               *(uint32_t *)(o + opts_offsets[OPT_VERSION]));
    json_object_set_member(obj, "memory",
                           text_node(memory_name((int)*(
                               uint32_t *)(o + opts_offsets[OPT_MEMORY]))));
    json_object_set_member(
        obj, "alignment",
        u64_node(*(uint64_t *)(o + opts_offsets[OPT_ALIGNMENT])));
    json_object_set_member(obj, "name",
                           text_node(*(char **)(o + opts_offsets[OPT_NAME])));
    json_object_set_int_member(obj, "flags",
                               *(uint32_t *)(o + opts_offsets[OPT_FLAGS]));
    JsonNode *n = json_node_new(JSON_NODE_OBJECT);
    json_node_take_object(n, obj);
    return n;
  }
  case K_OUT_BYTES: {
    uint64_t nbytes =
        helper("tensor_nbytes", &c->slots[param_index(c->sig, "tensor")]).u64;
    g_autofree char *text =
        hex(c->slots[i].ptr, MIN(nbytes, (uint64_t)c->lengths[i]));
    return text_node(text);
  }
  case K_OUT_WIRE: {
    g_autofree char *text =
        hex(c->slots[i].ptr, MIN(count_of(c, i), c->lengths[i]));
    return text_node(text);
  }
  case K_OUT_FDS: {
    size_t n = MIN(count_of(c, i), c->lengths[i] / sizeof(int));
    r->release = 'F';
    r->fds = g_array_sized_new(FALSE, FALSE, sizeof(int), (guint)n);
    g_array_append_vals(r->fds, c->slots[i].ptr, (guint)n);
    JsonArray *list = json_array_sized_new((guint)n);
    for (size_t k = 0; k < n; k++)
      json_array_add_int_element(list, g_array_index(r->fds, int, k));
    JsonNode *node = json_node_new(JSON_NODE_ARRAY);
    json_node_take_array(node, list);
    return node;
  }
  default:
    return NULL;
  }
}

/* Whether a failed call left every out-parameter as it was (but the
 * count that says what was needed, which TB_ERR_OUT_OF_RANGE sets). */
static bool outs_untouched(Call *c, int status) {
  Slot poison;
  memset(&poison, 0xa5, sizeof poison);
  for (int i = 0; i < MAX_PARAMS && c->sig->params[i].name; i++) {
    Kind kind = c->sig->params[i].kind;
    const uint8_t *p = c->slots[i].ptr;
    size_t size =
        kind == K_OUT_OPTS ? opts_type.size
        : kind == K_OUT_BYTES || kind == K_OUT_WIRE || kind == K_OUT_FDS
            ? c->lengths[i]
            : sizeof poison;
    if (kind == K_OUT_NEEDED && status == TB_ERR_OUT_OF_RANGE)
      continue;
    for (size_t k = 0; is_out(kind) && p != NULL && k < size; k++) {
      if (p[k] != 0xa5)
        return false;
    }
  }
  return true;
}

/* Makes the call: its status in *status, its result in r. */
static void call_library(Step *s, const Signature *sig, Var *r, bool *fallible,
                         int *status) {
  Call c = {.sig = sig, .keep = g_ptr_array_new_with_free_func(g_free)};
  for (int i = 0; i < MAX_PARAMS && sig->params[i].name; i++)
    decode(s, &c, i);
  if (s->error == NULL)
    finish_args(s, &c);
  if (s->error == NULL) {
    Slot ret;
    ffi_invoke(sig, c.values, &ret);
    *fallible = sig->ret == K_STATUS;
    *status = *fallible ? (int)ret.sword : TB_OK;
    if (c.block != NULL)
      c.block->wrapped = *status == TB_OK;
    if (c.dropped != NULL) {
      c.dropped->release = 0; /* the call consumed the reference */
      c.dropped->handle = NULL;
    }
    /* The out-parameters that make the result (counts are the lengths of
     * the arrays they count). */
    int outs[MAX_PARAMS], nouts = 0;
    for (int i = 0; i < MAX_PARAMS && sig->params[i].name; i++) {
      Kind k = sig->params[i].kind;
      if (is_out(k) && k != K_OUT_COUNT && k != K_OUT_NEEDED)
        outs[nouts++] = i;
    }
    if (*status != TB_OK) {
      if (!outs_untouched(&c, *status))
        fail(s, "the failed call wrote an out-parameter");
    } else if (nouts == 1) {
      const Param *p = &sig->params[outs[0]];
      r->value = encode(&c, p->kind, p->handle, outs[0], &c.outs[outs[0]], r);
    } else if (nouts > 1) {
      /* An object of the values; each member owns its part. */
      JsonObject *obj = json_object_new();
      r->members =
          g_hash_table_new_full(g_str_hash, g_str_equal, NULL, var_free);
      for (int k = 0; k < nouts; k++) {
        const Param *p = &sig->params[outs[k]];
        Var *member = g_new0(Var, 1);
        member->value =
            encode(&c, p->kind, p->handle, outs[k], &c.outs[outs[k]], member);
        json_object_set_member(obj, p->name, json_node_copy(member->value));
        g_hash_table_insert(r->members, p->name, member);
      }
      r->value = json_node_new(JSON_NODE_OBJECT);
      json_node_take_object(r->value, obj);
    } else if (sig->ret != K_VOID && sig->ret != K_STATUS) {
      r->value = encode(&c, sig->ret, sig->ret_handle, -1, &ret, r);
    }
  }
  g_ptr_array_free(c.keep, TRUE);
}

/* ---- pseudo-steps -------------------------------------------------------- */

static void give_fd(Var *r, int fd) {
  r->value = int_node(fd);
  r->release = 'f';
  r->fd = fd;
}

static void make_memfd(Step *s, Var *r) {
  JsonObject *a = s->args;
  JsonNode *size = json_object_get_member(a, "size");
  JsonNode *data = json_object_get_member(a, "data");
  JsonNode *seal = json_object_get_member(a, "seals");
  bool sealable =
      json_object_get_boolean_member_with_default(a, "allow_sealing", true);
  bool read_only =
      json_object_get_boolean_member_with_default(a, "read_only", false);
  off_t length = size != NULL ? (off_t)to_integer(s, size, "size") : -1;
  size_t len = 0;
  g_autofree uint8_t *bytes =
      data != NULL ? to_bytes(s, data, "data", &len) : NULL;
  uint32_t bits = seal != NULL ? to_flags(s, seal, seals, "seals") : 0;
  if (length < 0)
    fail(s, "argument size is missing");
  if (s->error != NULL)
    return;
  int fd = memfd_create("conformance-ffi",
                        MFD_CLOEXEC | (sealable ? MFD_ALLOW_SEALING : 0));
  bool made = fd >= 0 && ftruncate(fd, length) == 0 &&
              pwrite(fd, bytes, len, 0) == (ssize_t)len &&
              (bits == 0 || fcntl(fd, F_ADD_SEALS, bits) == 0);
  if (made && read_only) {
    g_autofree char *path = g_strdup_printf("/proc/self/fd/%d", fd);
    int reopened = open(path, O_RDONLY | O_CLOEXEC);
    close(fd);
    fd = reopened;
    made = fd >= 0;
  }
  if (!made) {
    fail(s, "making the memfd: %s", g_strerror(errno));
    if (fd >= 0)
      close(fd);
    return;
  }
  give_fd(r, fd);
}

static void make_pipe(Step *s, Var *r) {
  int ends[2];
  if (pipe2(ends, O_CLOEXEC) != 0) {
    fail(s, "pipe2: %s", g_strerror(errno));
    return;
  }
  close(ends[1]);
  give_fd(r, ends[0]);
}

static void make_tmpfile(Step *s, Var *r) {
  JsonNode *size = json_object_get_member(s->args, "size");
  JsonNode *data = json_object_get_member(s->args, "data");
  off_t length = size != NULL ? (off_t)to_integer(s, size, "size") : 0;
  size_t len = 0;
  g_autofree uint8_t *bytes =
      data != NULL ? to_bytes(s, data, "data", &len) : NULL;
  const char *dir = g_getenv("TMPDIR") != NULL ? g_getenv("TMPDIR") : "/tmp";
  int fd =
      s->error == NULL ? open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600) : -1;
  if (fd >= 0 && ftruncate(fd, length) == 0 &&
      pwrite(fd, bytes, len, 0) == (ssize_t)len) {
    give_fd(r, fd);
    return;
  }
  fail(s, "a temporary file in %s: %s", dir, g_strerror(errno));
  if (fd >= 0)
    close(fd);
}

static void open_fixed(Step *s, Var *r, const char *path, int flags) {
  int fd = open(path, flags | O_CLOEXEC);
  if (fd < 0)
    fail(s, "open %s: %s", path, g_strerror(errno));
  else
    give_fd(r, fd);
}
static void open_devnull(Step *s, Var *r) {
  open_fixed(s, r, "/dev/null", O_RDWR);
}
static void open_directory(Step *s, Var *r) {
  open_fixed(s, r, "/", O_RDONLY | O_DIRECTORY);
}

/* "/proc/self/fd/N" for the argument fd: the path that opens its file
 * again, even an unlinked one. NULL (the step failed) without it. */
static char *fd_argument_path(Step *s) {
  JsonNode *n = json_object_get_member(s->args, "fd");
  int fd = n != NULL ? (int)to_integer(s, n, "fd") : -1;
  if (n == NULL)
    fail(s, "argument fd is missing");
  return s->error == NULL ? g_strdup_printf("/proc/self/fd/%d", fd) : NULL;
}

static void reopen_read_only(Step *s, Var *r) {
  g_autofree char *path = fd_argument_path(s);
  if (path != NULL)
    open_fixed(s, r, path, O_RDONLY);
}

static void fd_path(Step *s, Var *r) {
  g_autofree char *path = fd_argument_path(s);
  if (path != NULL)
    r->value = text_node(path);
}

/* An abstract socket name no other process uses: the pid and a count. */
static void make_socket_name(Step *s, Var *r) {
  (void)s;
  static unsigned count;
  g_autofree char *name =
      g_strdup_printf("@tensorbuf-conf-%d-%u", (int)getpid(), ++count);
  r->value = text_node(name);
}

static void close_fd(Step *s, Var *r) {
  (void)r;
  JsonNode *n = json_object_get_member(s->args, "fd");
  Var *var = NULL;
  int fd = n != NULL ? (int)to_integer(s, deref(s, n, &var), "fd") : -1;
  if (s->error != NULL)
    return;
  if (close(fd) != 0)
    fail(s, "close(%d): %s", fd, g_strerror(errno));
  else if (var != NULL)
    var->release = 0;
}

static void set_env(Step *s, Var *r) {
  (void)r;
  const char *name =
      json_object_get_string_member_with_default(s->args, "name", NULL);
  JsonNode *value = json_object_get_member(s->args, "value");
  if (name == NULL) {
    fail(s, "argument name is missing");
    return;
  }
  if (!g_hash_table_contains(s->run->saved_env, name))
    g_hash_table_insert(s->run->saved_env, g_strdup(name),
                        g_strdup(g_getenv(name)));
  if (value != NULL && is_text(value))
    setenv(name, json_node_get_string(value), 1);
  else
    unsetenv(name);
}

static void count_live(Step *s, Var *r) {
  r->value = int_node(live_objects() - s->run->live_start);
}

/* The map's bytes: map_data and map_tensor through libffi. */
static uint8_t *mapped(Step *s, uint64_t *nbytes) {
  JsonNode *n = json_object_get_member(s->args, "map");
  Var *var = NULL;
  void *map = n != NULL ? to_handle(s, n, 'm', &var, "map") : NULL;
  if (s->error != NULL)
    return NULL;
  void *tensor = helper("map_tensor", &map).ptr;
  *nbytes = helper("tensor_nbytes", &tensor).u64;
  return helper("map_data", &map).ptr;
}

static void read_map(Step *s, Var *r) {
  uint64_t nbytes = 0;
  uint8_t *data = mapped(s, &nbytes);
  if (s->error != NULL)
    return;
  g_autofree char *text = hex(data, nbytes);
  r->value = text_node(text);
}

static void write_map(Step *s, Var *r) {
  (void)r;
  uint64_t nbytes = 0;
  uint8_t *data = mapped(s, &nbytes);
  JsonNode *n = json_object_get_member(s->args, "data");
  size_t len = 0;
  g_autofree uint8_t *bytes = n != NULL ? to_bytes(s, n, "data", &len) : NULL;
  if (len > nbytes)
    fail(s, "data is larger than the mapped tensor");
  if (s->error == NULL)
    memcpy(data, bytes, len);
}

typedef struct Pseudo {
  const char *name;
  void (*run)(Step *s, Var *r);
} Pseudo;

static const Pseudo pseudo_steps[] = {
    {"make_memfd", make_memfd},
    {"make_pipe", make_pipe},
    {"make_tmpfile", make_tmpfile},
    {"fd_path", fd_path},
    {"open_devnull", open_devnull},
    {"open_directory", open_directory},
    {"reopen_read_only", reopen_read_only},
    {"make_socket_name", make_socket_name},
    {"close_fd", close_fd},
    {"set_env", set_env},
    {"live_objects", count_live},
    {"read_map", read_map},
    {"write_map", write_map},
};

/* ---- expectations -------------------------------------------------------- */

static void check(Step *s, const char *call, JsonObject *expect, bool fallible,
                  int status, Var *r) {
  const char *want =
      expect != NULL
          ? json_object_get_string_member_with_default(expect, "status", NULL)
          : NULL;
  if (want != NULL && !fallible) {
    fail(s, "expects a status, but the call returns none");
    return;
  }
  if (fallible) {
    const char *got = status_name(status);
    const char *message = helper("last_error").ptr;
    if (!g_str_equal(got, want != NULL ? want : "TB_OK")) {
      fail(s, "returned %s, expected %s%s%s", got,
           want != NULL ? want : "TB_OK", status != TB_OK ? "; " : "",
           status != TB_OK ? message : "");
      return;
    }
    if (status != TB_OK) {
      g_autofree char *prefix = g_strdup_printf("tb_%s: ", call);
      int errnum = helper("last_errno").sword;
      if (!g_str_has_prefix(message, prefix))
        fail(s, "last_error \"%s\" does not start \"%s\"", message, prefix);
      else if (status != TB_ERR_SYSTEM && errnum != 0)
        fail(s, "last_errno is %d after %s", errnum, got);
      return;
    }
  }
  if (expect == NULL)
    return;
  double approx =
      json_object_get_double_member_with_default(expect, "approx", 0);
  static const char *const keys[] = {"value", "not"};
  for (int k = 0; k < 2; k++) {
    JsonNode *n = json_object_get_member(expect, keys[k]);
    if (n == NULL)
      continue;
    if (r->value == NULL) {
      fail(s, "expects a value, but the call gives none");
      return;
    }
    if ((r->members != NULL && owns(r)) || r->release == 'F') {
      fail(s, "a result that owns handles or fds is bound, not compared");
      return;
    }
    JsonNode *target = deref(s, n, NULL);
    if (target == NULL)
      return;
    if (tb_conf_json_matches(target, r->value, approx) != (k == 0)) {
      g_autofree char *got = json_to_string(r->value, FALSE);
      g_autofree char *text = json_to_string(n, FALSE);
      fail(s, "gave %s, %s %s", got, k == 0 ? "expected" : "must not be", text);
    }
  }
}

/* ---- cases --------------------------------------------------------------- */

/* Binds `name` to `var`, which the case then owns; FALSE if it cannot. */
static bool bind_var(Step *s, const char *name, Var *var) {
  if (var->value == NULL)
    fail(s, "binds %s, but the call gives no result", name);
  else if (g_hash_table_contains(s->run->vars, name))
    fail(s, "%s is already bound", name);
  else
    g_hash_table_insert(s->run->vars, g_strdup(name), var);
  return s->error == NULL;
}

/* The member `key` of an object result, taken out of it; NULL if none. */
static Var *take_member(Var *result, const char *key) {
  gpointer member = NULL;
  if (result->members != NULL &&
      g_hash_table_steal_extended(result->members, key, NULL, &member))
    return member;
  if (result->value == NULL || !JSON_NODE_HOLDS_OBJECT(result->value) ||
      !json_object_has_member(json_node_get_object(result->value), key))
    return NULL;
  Var *copy = g_new0(Var, 1);
  copy->value = json_node_copy(
      json_object_get_member(json_node_get_object(result->value), key));
  return copy;
}

/* "bind": {"member": "name", ...}: each member of an object result becomes
 * a variable of its own. */
static void bind_members(Step *s, Var *result, JsonObject *names) {
  GList *keys = json_object_get_members(names);
  for (GList *k = keys; k != NULL && s->error == NULL; k = k->next) {
    JsonNode *name = json_object_get_member(names, k->data);
    Var *member = is_text(name) ? take_member(result, k->data) : NULL;
    if (!is_text(name))
      fail(s, "bind: member %s is not given a name", (const char *)k->data);
    else if (member == NULL)
      fail(s, "binds member %s, which the result lacks", (const char *)k->data);
    else if (!bind_var(s, json_node_get_string(name), member)) {
      release(member);
      var_free(member);
    }
  }
  g_list_free(keys);
}

/* Runs one step; its error (or NULL). */
static char *run_step(Run *run, JsonObject *step) {
  const char *call =
      json_object_get_string_member_with_default(step, "call", "");
  JsonNode *args = json_object_get_member(step, "args");
  JsonNode *expect = json_object_get_member(step, "expect");
  g_autoptr(JsonObject) none = json_object_new();
  Step s = {.run = run,
            .args = args != NULL && JSON_NODE_HOLDS_OBJECT(args)
                        ? json_node_get_object(args)
                        : none};
  Var r = {0};
  bool fallible = false;
  int status = TB_OK;
  const Signature *sig = signature(call);
  const Pseudo *pseudo = NULL;
  for (size_t i = 0; i < G_N_ELEMENTS(pseudo_steps); i++) {
    if (g_str_equal(pseudo_steps[i].name, call))
      pseudo = &pseudo_steps[i];
  }
  if (pseudo != NULL)
    pseudo->run(&s, &r);
  else if (sig != NULL)
    call_library(&s, sig, &r, &fallible, &status);
  else
    fail(&s, "unknown call \"%s\"", call);
  if (s.error == NULL)
    check(&s, call, expect != NULL ? json_node_get_object(expect) : NULL,
          fallible, status, &r);

  JsonNode *bind = json_object_get_member(step, "bind");
  Var *var = g_memdup2(&r, sizeof r);
  if (bind != NULL && s.error == NULL && status == TB_OK) {
    if (JSON_NODE_HOLDS_OBJECT(bind))
      bind_members(&s, var, json_node_get_object(bind));
    else if (!is_text(bind))
      fail(&s, "bind is neither a name nor an object of names");
    else if (var->members != NULL && owns(var))
      fail(&s, "the result owns several things: bind its members");
    else if (bind_var(&s, json_node_get_string(bind), var))
      return s.error;
  }
  release(var); /* what is left unbound is released at once */
  var_free(var);
  return s.error;
}

static int count_fds(void) {
  int count = 0;
  DIR *dir = opendir("/proc/self/fd");
  for (struct dirent *e; dir != NULL && (e = readdir(dir)) != NULL;)
    count += e->d_name[0] != '.';
  if (dir != NULL)
    closedir(dir);
  return count;
}

static void restore(gpointer name, gpointer value, gpointer unused) {
  (void)unused;
  if (value != NULL)
    setenv(name, value, 1);
  else
    unsetenv(name);
}

/* "passed", "failed" or "skipped"; *why says why not passed. */
static const char *run_case(JsonObject *kase, void *destroy_code, char **why) {
  JsonArray *requires = json_object_has_member(kase, "requires")
                            ? json_object_get_array_member(kase, "requires")
                            : NULL;
  for (guint i = 0; requires != NULL && i < json_array_get_length(requires);
       i++) {
    const char *term = json_array_get_string_element(requires, i);
    bool want = term[0] != '!';
    const char *kind = want ? term : term + 1;
    int memory = 0;
    void *out = &memory;
    bool known = helper("memory_from_name", &out, &kind).sword == TB_OK;
    if (!known ||
        ((uint8_t)helper("memory_available", &memory).word != 0) != want) {
      *why = g_strdup_printf("requires %s", term);
      return "skipped";
    }
  }

  Run run = {
      .vars = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, var_free),
      .blocks = g_ptr_array_new_with_free_func(g_free),
      .saved_env =
          g_hash_table_new_full(g_str_hash, g_str_equal, g_free, g_free),
      .live_start = live_objects(),
      .destroy_code = destroy_code,
  };
  int fds = count_fds();
  JsonArray *steps = json_object_get_array_member(kase, "steps");
  for (guint i = 0; *why == NULL && i < json_array_get_length(steps); i++) {
    JsonObject *step = json_array_get_object_element(steps, i);
    g_autofree char *error = run_step(&run, step);
    if (error != NULL)
      *why = g_strdup_printf(
          "step %u (%s): %s", i + 1,
          json_object_get_string_member_with_default(step, "call", "?"), error);
  }

  /* Cleanup, maps first, then the leak checks. */
  GList *vars = g_hash_table_get_values(run.vars);
  for (GList *v = vars; v != NULL; v = v->next) {
    if (((Var *)v->data)->release == 'm')
      release(v->data);
  }
  for (GList *v = vars; v != NULL; v = v->next)
    release(v->data);
  g_list_free(vars);
  g_hash_table_destroy(run.vars);
  g_hash_table_foreach(run.saved_env, restore, NULL);
  g_hash_table_destroy(run.saved_env);

  GString *leaks = g_string_new(NULL);
  if (live_objects() != run.live_start)
    g_string_append_printf(leaks, "; %" G_GINT64_FORMAT " handles leaked",
                           live_objects() - run.live_start);
  if (count_fds() != fds)
    g_string_append_printf(leaks, "; %d fds leaked", count_fds() - fds);
  for (guint i = 0; i < run.blocks->len; i++) {
    Block *block = g_ptr_array_index(run.blocks, i);
    if (block->destroyed != (block->wrapped ? 1 : 0))
      g_string_append_printf(leaks, "; a wrapped block was destroyed %d times",
                             block->destroyed);
  }
  g_ptr_array_free(run.blocks, TRUE);
  if (leaks->len > 0) {
    char *text =
        g_strconcat(*why != NULL ? *why : "at the end", leaks->str, NULL);
    g_free(*why);
    *why = text;
  }
  g_string_free(leaks, TRUE);
  return *why != NULL ? "failed" : "passed";
}

/* ---- main ---------------------------------------------------------------- */

/* tb_destroy_notify, reached through a libffi closure. */
static void on_destroy(ffi_cif *cif, void *ret, void **args, void *data) {
  (void)cif;
  (void)ret;
  (void)data;
  Block *block = *(Block **)args[0];
  block->destroyed++;
}

static GHashTable *load_skips(const char *path) {
  g_autofree char *text = NULL;
  if (!g_file_get_contents(path, &text, NULL, NULL)) {
    fprintf(stderr, "conformance[ffi]: cannot read %s\n", path);
    exit(2);
  }
  GHashTable *skips =
      g_hash_table_new_full(g_str_hash, g_str_equal, g_free, g_free);
  g_auto(GStrv) lines = g_strsplit(text, "\n", -1);
  for (char **line = lines; *line != NULL; line++) {
    g_auto(GStrv) words = g_strsplit_set(g_strstrip(*line), " \t", 2);
    if (words[0] != NULL && words[0][0] != '\0' && words[0][0] != '#')
      g_hash_table_insert(
          skips, g_strdup(words[0]),
          g_strdup(words[1] != NULL ? g_strstrip(words[1]) : ""));
  }
  return skips;
}

static int by_name(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

int main(int argc, char **argv) {
  if (argc < 4) {
    fprintf(stderr, "usage: %s CASES_DIR SKIP_FILE RESULTS_FILE [CASE...]\n",
            argv[0]);
    return 2;
  }
  parse_signatures();
  library = dlopen("libtensorbuf.so.0", RTLD_NOW | RTLD_LOCAL);
  if (library == NULL) {
    fprintf(stderr, "conformance[ffi]: %s\n", dlerror());
    return 2;
  }
  if (ffi_get_struct_offsets(FFI_DEFAULT_ABI, &opts_type, opts_offsets) !=
          FFI_OK ||
      ffi_get_struct_offsets(FFI_DEFAULT_ABI, &listener_opts_type,
                             listener_opts_offsets) != FFI_OK ||
      ffi_get_struct_offsets(FFI_DEFAULT_ABI, &channel_opts_type,
                             channel_opts_offsets) != FFI_OK)
    return 2;
  ffi_cif destroy_cif;
  ffi_type *destroy_args[] = {&ffi_type_pointer};
  void *destroy_code = NULL;
  ffi_closure *closure = ffi_closure_alloc(sizeof(ffi_closure), &destroy_code);
  if (closure == NULL ||
      ffi_prep_cif(&destroy_cif, FFI_DEFAULT_ABI, 1, &ffi_type_void,
                   destroy_args) != FFI_OK ||
      ffi_prep_closure_loc(closure, &destroy_cif, on_destroy, NULL,
                           destroy_code) != FFI_OK) {
    fprintf(stderr, "conformance[ffi]: cannot make the destroy closure\n");
    return 2;
  }

  g_autoptr(GHashTable) skips = load_skips(argv[2]);
  FILE *results = fopen(argv[3], "w");
  if (results == NULL) {
    perror(argv[3]);
    return 2;
  }
  g_autoptr(GPtrArray) paths = g_ptr_array_new_with_free_func(g_free);
  g_autoptr(GDir) dir = g_dir_open(argv[1], 0, NULL);
  for (const char *name; dir != NULL && (name = g_dir_read_name(dir));) {
    if (g_str_has_suffix(name, ".json"))
      g_ptr_array_add(paths, g_build_filename(argv[1], name, NULL));
  }
  qsort(paths->pdata, paths->len, sizeof(char *), by_name);

  unsigned passed = 0, failed = 0, skipped = 0;
  for (guint f = 0; f < paths->len; f++) {
    g_autoptr(JsonParser) parser = json_parser_new();
    g_autoptr(GError) error = NULL;
    if (!json_parser_load_from_file(parser, paths->pdata[f], &error)) {
      fprintf(stderr, "conformance[ffi]: %s\n", error->message);
      return 2;
    }
    JsonArray *cases = json_object_get_array_member(
        json_node_get_object(json_parser_get_root(parser)), "cases");
    for (guint i = 0; i < json_array_get_length(cases); i++) {
      JsonObject *kase = json_array_get_object_element(cases, i);
      const char *name = json_object_get_string_member(kase, "name");
      bool chosen = argc == 4;
      for (int a = 4; a < argc; a++)
        chosen = chosen || g_str_equal(argv[a], name);
      if (!chosen)
        continue;
      g_autofree char *why = NULL;
      const char *outcome;
      if (g_hash_table_contains(skips, name)) {
        why = g_strdup(g_hash_table_lookup(skips, name));
        outcome = "skipped";
      } else {
        outcome = run_case(kase, destroy_code, &why);
      }
      if (g_str_equal(outcome, "passed")) {
        passed++;
        printf("PASS %s\n", name);
      } else {
        bool skip = g_str_equal(outcome, "skipped");
        skipped += skip;
        failed += !skip;
        printf("%s %s: %s\n", skip ? "SKIP" : "FAIL", name, why);
      }
      fprintf(results, "%s\t%s\n", name, outcome);
      fflush(results);
    }
  }
  fclose(results);
  ffi_closure_free(closure);
  printf("conformance[ffi]: %u passed, %u failed, %u skipped\n", passed, failed,
         skipped);
  /* 77 when every case selected skipped: ctest reports the run as skipped. */
  return failed > 0 ? 1 : passed == 0 && skipped > 0 ? 77 : 0;
}
