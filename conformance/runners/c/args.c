/* Decoding a step's JSON arguments into C values, and encoding results. */
#include "runner.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

const FlagName map_flag_names[] = {
    {"read", TB_MAP_READ}, {"write", TB_MAP_WRITE}, {NULL, 0}};
const FlagName buffer_flag_names[] = {{"read_only", TB_BUFFER_READ_ONLY},
                                      {NULL, 0}};
const FlagName send_flag_names[] = {{"read_only", TB_SEND_READ_ONLY},
                                    {NULL, 0}};
static const FlagName alloc_flag_names[] = {
    {"huge_pages", TB_ALLOC_HUGE_PAGES},
    {"uninitialized", TB_ALLOC_UNINITIALIZED},
    {NULL, 0}};

/* The runner's own name tables: they check the library's names rather than
 * reuse them. */
static const char *const dtype_names[] = {
    [TB_DTYPE_INVALID] = "invalid", [TB_DTYPE_BOOL] = "bool",
    [TB_DTYPE_U8] = "u8",           [TB_DTYPE_I8] = "i8",
    [TB_DTYPE_U16] = "u16",         [TB_DTYPE_I16] = "i16",
    [TB_DTYPE_U32] = "u32",         [TB_DTYPE_I32] = "i32",
    [TB_DTYPE_U64] = "u64",         [TB_DTYPE_I64] = "i64",
    [TB_DTYPE_F16] = "f16",         [TB_DTYPE_BF16] = "bf16",
    [TB_DTYPE_F32] = "f32",         [TB_DTYPE_F64] = "f64",
};
static const char *const memory_names[] = {
    [TB_MEMORY_AUTO] = "auto", [TB_MEMORY_HEAP] = "heap",
    [TB_MEMORY_SHM] = "shm",   [TB_MEMORY_DMA] = "dma",
    [TB_MEMORY_CUDA] = "cuda", [TB_MEMORY_CUDA_HOST] = "cuda_host",
    [TB_MEMORY_FILE] = "file",
};

static const char *const pixel_format_names[] = {
    [TB_PIXEL_FORMAT_INVALID] = "invalid",
    [TB_PIXEL_FORMAT_RGB] = "rgb",
    [TB_PIXEL_FORMAT_RGBA] = "rgba",
    [TB_PIXEL_FORMAT_BGRA] = "bgra",
    [TB_PIXEL_FORMAT_RGBX] = "rgbx",
    [TB_PIXEL_FORMAT_BGRX] = "bgrx",
    [TB_PIXEL_FORMAT_GREY] = "grey",
    [TB_PIXEL_FORMAT_YUYV] = "yuyv",
    [TB_PIXEL_FORMAT_VYUY] = "vyuy",
    [TB_PIXEL_FORMAT_UYVY] = "uyvy",
    [TB_PIXEL_FORMAT_NV12] = "nv12",
    [TB_PIXEL_FORMAT_NV21] = "nv21",
    [TB_PIXEL_FORMAT_NV16] = "nv16",
    [TB_PIXEL_FORMAT_NV24] = "nv24",
    [TB_PIXEL_FORMAT_I420] = "i420",
    [TB_PIXEL_FORMAT_P010] = "p010",
    [TB_PIXEL_FORMAT_PLANAR_RGB] = "planar_rgb",
    [TB_PIXEL_FORMAT_PLANAR_RGBA] = "planar_rgba",
};
static const char *const pixel_layout_names[] = {
    [TB_PIXEL_LAYOUT_INVALID] = "invalid",
    [TB_PIXEL_LAYOUT_PACKED] = "packed",
    [TB_PIXEL_LAYOUT_PLANAR] = "planar",
    [TB_PIXEL_LAYOUT_SEMI_PLANAR] = "semi_planar",
};

const char *pixel_format_result_name(tb_pixel_format format) {
  return (unsigned)format < G_N_ELEMENTS(pixel_format_names)
             ? pixel_format_names[format]
             : NULL;
}

const char *pixel_layout_result_name(tb_pixel_layout layout) {
  return (unsigned)layout < G_N_ELEMENTS(pixel_layout_names)
             ? pixel_layout_names[layout]
             : NULL;
}

const char *dtype_result_name(tb_dtype dtype) {
  return (unsigned)dtype < G_N_ELEMENTS(dtype_names) ? dtype_names[dtype]
                                                     : NULL;
}

bool memory_by_name(const char *name, tb_memory *out) {
  for (unsigned i = 0; i < G_N_ELEMENTS(memory_names); i++) {
    if (g_str_equal(name, memory_names[i])) {
      *out = (tb_memory)i;
      return true;
    }
  }
  return false;
}

static void *scratch_alloc(Step *s, size_t size) {
  void *p = g_malloc0(MAX(size, 1));
  g_ptr_array_add(s->scratch, p);
  return p;
}

JsonNode *arg_node(Step *s, const char *name) {
  return json_object_get_member(s->args, name);
}

bool arg_is_null(Step *s, const char *name) {
  JsonNode *node = arg_node(s, name);
  return node != NULL && JSON_NODE_HOLDS_NULL(node);
}

static JsonNode *required(Step *s, const char *name) {
  JsonNode *node = arg_node(s, name);
  if (node == NULL)
    step_fail(s, "argument %s is missing", name);
  return node;
}

/* A bound variable named by a "$name" string, or NULL. */
static Value *bound(Step *s, const char *ref) {
  Value *v = g_hash_table_lookup(s->kase->vars, ref + 1);
  if (v == NULL)
    step_fail(s, "%s is not bound", ref);
  return v;
}

static bool is_ref(JsonNode *node) {
  return JSON_NODE_HOLDS_VALUE(node) &&
         json_node_get_value_type(node) == G_TYPE_STRING &&
         json_node_get_string(node)[0] == '$';
}

/* An integer JSON value, a decimal string, or a "$var" bound to one. Values
 * beyond int64 are taken as uint64 bit patterns by the u64 reader. */
static bool node_integer(Step *s, JsonNode *node, const char *what,
                         int64_t *out, bool as_unsigned) {
  if (is_ref(node)) {
    Value *v = bound(s, json_node_get_string(node));
    if (v == NULL)
      return false;
    if (v->kind == VALUE_FD) {
      *out = v->fd;
      return true;
    }
    if (v->kind != VALUE_JSON)
      goto bad;
    node = v->json;
  }
  if (JSON_NODE_HOLDS_VALUE(node) &&
      json_node_get_value_type(node) == G_TYPE_INT64) {
    *out = json_node_get_int(node);
    return true;
  }
  if (JSON_NODE_HOLDS_VALUE(node) &&
      json_node_get_value_type(node) == G_TYPE_STRING) {
    const char *text = json_node_get_string(node);
    char *end;
    errno = 0;
    *out = as_unsigned && text[0] != '-' ? (int64_t)strtoull(text, &end, 10)
                                         : strtoll(text, &end, 10);
    if (errno == 0 && end != text && *end == '\0')
      return true;
  }
bad:
  step_fail(s, "%s is not an integer", what);
  return false;
}

int64_t arg_i64(Step *s, const char *name) {
  int64_t v = 0;
  JsonNode *node = required(s, name);
  if (node != NULL)
    node_integer(s, node, name, &v, false);
  return v;
}

uint64_t arg_u64(Step *s, const char *name) {
  int64_t v = 0;
  JsonNode *node = required(s, name);
  if (node != NULL)
    node_integer(s, node, name, &v, true);
  return (uint64_t)v;
}

static bool node_double(Step *s, JsonNode *node, const char *what,
                        double *out) {
  if (JSON_NODE_HOLDS_VALUE(node)) {
    GType type = json_node_get_value_type(node);
    if (type == G_TYPE_INT64 || type == G_TYPE_DOUBLE) {
      *out = json_node_get_double(node);
      return true;
    }
    if (type == G_TYPE_STRING) {
      const char *text = json_node_get_string(node);
      if (g_str_equal(text, "nan"))
        *out = NAN;
      else if (g_str_equal(text, "inf"))
        *out = INFINITY;
      else if (g_str_equal(text, "-inf"))
        *out = -INFINITY;
      else
        goto bad;
      return true;
    }
  }
bad:
  step_fail(s, "%s is not a number", what);
  return false;
}

double arg_f64(Step *s, const char *name) {
  double v = 0;
  JsonNode *node = required(s, name);
  if (node != NULL)
    node_double(s, node, name, &v);
  return v;
}

bool arg_bool(Step *s, const char *name, bool fallback) {
  JsonNode *node = arg_node(s, name);
  if (node == NULL)
    return fallback;
  if (JSON_NODE_HOLDS_VALUE(node) &&
      json_node_get_value_type(node) == G_TYPE_BOOLEAN)
    return json_node_get_boolean(node);
  step_fail(s, "%s is not a boolean", name);
  return fallback;
}

const char *arg_string(Step *s, const char *name) {
  JsonNode *node = arg_node(s, name);
  if (node == NULL || JSON_NODE_HOLDS_NULL(node))
    return NULL;
  if (is_ref(node)) {
    Value *v = bound(s, json_node_get_string(node));
    if (v == NULL)
      return NULL;
    node = v->kind == VALUE_JSON ? v->json : NULL;
  }
  if (node != NULL && JSON_NODE_HOLDS_VALUE(node) &&
      json_node_get_value_type(node) == G_TYPE_STRING)
    return json_node_get_string(node);
  step_fail(s, "%s is not a string", name);
  return NULL;
}

/* The array argument `name`, or NULL when omitted or null. */
static JsonArray *array_arg(Step *s, const char *name) {
  JsonNode *node = arg_node(s, name);
  if (node == NULL || JSON_NODE_HOLDS_NULL(node))
    return NULL;
  if (JSON_NODE_HOLDS_ARRAY(node))
    return json_node_get_array(node);
  step_fail(s, "%s is not an array", name);
  return NULL;
}

/* An array of 64-bit integers, read as signed or (is_unsigned) unsigned. */
static I64Array integer_array(Step *s, const char *name, bool is_unsigned) {
  I64Array a = {NULL, 0};
  JsonArray *array = array_arg(s, name);
  if (array == NULL)
    return a;
  a.len = json_array_get_length(array);
  a.data = scratch_alloc(s, a.len * sizeof *a.data);
  for (size_t i = 0; i < a.len; i++)
    node_integer(s, json_array_get_element(array, (guint)i), name, &a.data[i],
                 is_unsigned);
  return a;
}

I64Array arg_i64_array(Step *s, const char *name) {
  return integer_array(s, name, false);
}

I64Array arg_u64_array(Step *s, const char *name) {
  return integer_array(s, name, true);
}

IntArray arg_int_array(Step *s, const char *name) {
  JsonNode *node = arg_node(s, name);
  if (node != NULL && is_ref(node)) {
    Value *v = bound(s, json_node_get_string(node));
    if (v == NULL || v->kind != VALUE_FDS) {
      step_fail(s, "%s does not name a list of fds", name);
      return (IntArray){NULL, 0};
    }
    IntArray list = {scratch_alloc(s, v->fds->len * sizeof(int)), v->fds->len};
    memcpy(list.data, v->fds->data, list.len * sizeof(int));
    return list;
  }
  I64Array wide = arg_i64_array(s, name);
  IntArray a = {NULL, wide.len};
  if (wide.data == NULL)
    return a;
  a.data = scratch_alloc(s, a.len * sizeof *a.data);
  for (size_t i = 0; i < a.len; i++)
    a.data[i] = (int)wide.data[i];
  return a;
}

F64Array arg_f64_array(Step *s, const char *name) {
  F64Array a = {NULL, 0};
  JsonArray *array = array_arg(s, name);
  if (array == NULL)
    return a;
  a.len = json_array_get_length(array);
  a.data = scratch_alloc(s, a.len * sizeof *a.data);
  for (size_t i = 0; i < a.len; i++)
    node_double(s, json_array_get_element(array, (guint)i), name, &a.data[i]);
  return a;
}

Bytes arg_bytes(Step *s, const char *name) {
  Bytes b = {NULL, 0};
  const char *hex = arg_string(s, name);
  if (hex == NULL)
    return b;
  size_t digits = strlen(hex);
  b.len = digits / 2;
  b.data = scratch_alloc(s, b.len);
  for (size_t i = 0; i < b.len; i++) {
    int hi = g_ascii_xdigit_value(hex[2 * i]);
    int lo = g_ascii_xdigit_value(hex[2 * i + 1]);
    if (hi < 0 || lo < 0)
      break;
    b.data[i] = (uint8_t)(hi << 4 | lo);
  }
  for (size_t i = 0; i < digits; i++) {
    if (digits % 2 != 0 || !g_ascii_isxdigit(hex[i]) ||
        g_ascii_isupper(hex[i])) {
      step_fail(s, "%s is not lower-case hex", name);
      break;
    }
  }
  return b;
}

size_t arg_length(Step *s, const char *name, size_t implied) {
  return arg_node(s, name) != NULL ? (size_t)arg_u64(s, name) : implied;
}

/* An enum argument: a name from `names`, or a raw integer. */
static unsigned enum_arg(Step *s, const char *name, const char *const *names,
                         unsigned count) {
  JsonNode *node = required(s, name);
  if (node == NULL)
    return 0;
  const char *text = JSON_NODE_HOLDS_VALUE(node) &&
                             json_node_get_value_type(node) == G_TYPE_STRING
                         ? json_node_get_string(node)
                         : NULL;
  if (text == NULL) {
    int64_t raw = 0;
    node_integer(s, node, name, &raw, false);
    return (unsigned)raw;
  }
  for (unsigned i = 0; i < count; i++) {
    if (names[i] != NULL && g_str_equal(text, names[i]))
      return i;
  }
  step_fail(s, "%s \"%s\" is not a known name", name, text);
  return 0;
}

tb_dtype arg_dtype(Step *s, const char *name) {
  return (tb_dtype)enum_arg(s, name, dtype_names, G_N_ELEMENTS(dtype_names));
}

tb_pixel_format arg_pixel_format(Step *s, const char *name) {
  return (tb_pixel_format)enum_arg(s, name, pixel_format_names,
                                   G_N_ELEMENTS(pixel_format_names));
}

tb_memory arg_memory(Step *s, const char *name) {
  return (tb_memory)enum_arg(s, name, memory_names, G_N_ELEMENTS(memory_names));
}

static uint32_t flags_node(Step *s, JsonNode *node, const char *what,
                           const FlagName *names) {
  if (!(JSON_NODE_HOLDS_VALUE(node) &&
        json_node_get_value_type(node) == G_TYPE_STRING)) {
    int64_t raw = 0;
    node_integer(s, node, what, &raw, false);
    return (uint32_t)raw;
  }
  uint32_t flags = 0;
  g_auto(GStrv) words = g_strsplit(json_node_get_string(node), "|", -1);
  for (char **word = words; *word != NULL; word++) {
    const FlagName *f = names;
    while (f->name != NULL && !g_str_equal(f->name, *word))
      f++;
    if (f->name == NULL)
      step_fail(s, "%s: unknown flag \"%s\"", what, *word);
    flags |= f->value;
  }
  return flags;
}

uint32_t arg_flags(Step *s, const char *name, const FlagName *names) {
  JsonNode *node = required(s, name);
  return node != NULL ? flags_node(s, node, name, names) : 0;
}

/* The variable a handle argument names; NULL for null or a problem. */
static Value *handle_var(Step *s, const char *name, HandleType type) {
  JsonNode *node = arg_node(s, name);
  if (node == NULL || JSON_NODE_HOLDS_NULL(node))
    return NULL;
  if (!is_ref(node)) {
    step_fail(s, "%s is not a \"$name\" reference", name);
    return NULL;
  }
  Value *v = bound(s, json_node_get_string(node));
  if (v != NULL && (v->kind != VALUE_HANDLE || v->handle_type != type)) {
    step_fail(s, "%s does not name a handle of the right type", name);
    return NULL;
  }
  return v;
}

void *arg_handle(Step *s, const char *name, HandleType type) {
  Value *v = handle_var(s, name, type);
  return v != NULL ? v->handle : NULL;
}

void *arg_release(Step *s, const char *name, HandleType type) {
  Value *v = handle_var(s, name, type);
  if (v == NULL || s->error != NULL)
    return NULL;
  void *handle = v->handle;
  /* The variable is dead from here on: a later use is a case error. */
  g_hash_table_remove(s->kase->vars,
                      json_node_get_string(arg_node(s, name)) + 1);
  return handle;
}

int arg_fd(Step *s, const char *name) { return (int)arg_i64(s, name); }

/* Options arguments are objects whose fields the argument readers decode:
 * makes the object `name` the current arguments (*outer gets the previous
 * ones, to put back). FALSE where it is absent or null (NULL options) or
 * not an object (the step fails). */
static gboolean enter_object(Step *s, const char *name, JsonObject **outer) {
  JsonNode *node = arg_node(s, name);
  if (node == NULL || JSON_NODE_HOLDS_NULL(node))
    return FALSE;
  if (!JSON_NODE_HOLDS_OBJECT(node)) {
    step_fail(s, "%s is not an object", name);
    return FALSE;
  }
  *outer = s->args;
  s->args = json_node_get_object(node);
  return TRUE;
}

const tb_alloc_options *arg_opts(Step *s, const char *name,
                                 tb_alloc_options *storage) {
  JsonObject *outer;
  if (!enter_object(s, name, &outer))
    return NULL;
  tb_alloc_options defaults = TB_ALLOC_OPTIONS_INIT;
  *storage = defaults;
  if (arg_node(s, "version") != NULL)
    storage->version = (uint32_t)arg_u64(s, "version");
  if (arg_node(s, "memory") != NULL)
    storage->memory = arg_memory(s, "memory");
  if (arg_node(s, "alignment") != NULL)
    storage->alignment = arg_u64(s, "alignment");
  storage->name = arg_string(s, "name");
  if (arg_node(s, "flags") != NULL)
    storage->flags = arg_flags(s, "flags", alloc_flag_names);
  s->args = outer;
  return storage;
}

const tb_channel_options *arg_channel_opts(Step *s, const char *name,
                                           tb_channel_options *storage) {
  JsonObject *outer;
  if (!enter_object(s, name, &outer))
    return NULL;
  tb_channel_options defaults = TB_CHANNEL_OPTIONS_INIT;
  *storage = defaults;
  if (arg_node(s, "version") != NULL)
    storage->version = (uint32_t)arg_u64(s, "version");
  if (arg_node(s, "max_buffers") != NULL)
    storage->max_buffers = (uint32_t)arg_u64(s, "max_buffers");
  if (arg_node(s, "max_mapped_bytes") != NULL)
    storage->max_mapped_bytes = arg_u64(s, "max_mapped_bytes");
  s->args = outer;
  return storage;
}

const tb_listener_options *arg_listener_opts(Step *s, const char *name,
                                             tb_listener_options *storage) {
  JsonObject *outer;
  if (!enter_object(s, name, &outer))
    return NULL;
  tb_listener_options defaults = TB_LISTENER_OPTIONS_INIT;
  *storage = defaults;
  if (arg_node(s, "version") != NULL)
    storage->version = (uint32_t)arg_u64(s, "version");
  if (arg_node(s, "mode") != NULL)
    storage->mode = (uint32_t)arg_u64(s, "mode");
  I64Array uids = arg_u64_array(s, "uids");
  if (uids.len > 0) {
    uint32_t *narrow = scratch_alloc(s, uids.len * sizeof *narrow);
    for (size_t i = 0; i < uids.len; i++)
      narrow[i] = (uint32_t)uids.data[i];
    storage->uids = narrow;
    storage->nuids = uids.len;
  }
  if (arg_node(s, "flags") != NULL)
    storage->flags = (uint32_t)arg_u64(s, "flags");
  if (arg_node(s, "hello_timeout_ms") != NULL)
    storage->hello_timeout_ms = (int32_t)arg_i64(s, "hello_timeout_ms");
  if (arg_node(s, "channel_options") != NULL) {
    tb_channel_options *channel = scratch_alloc(s, sizeof *channel);
    storage->channel_options =
        arg_channel_opts(s, "channel_options", channel);
  }
  s->args = outer;
  return storage;
}

bool out_wanted(Step *s, const char *name) { return !arg_is_null(s, name); }

/* ---- results ------------------------------------------------------------- */

void result_json(Step *s, JsonNode *node) {
  s->result.kind = VALUE_JSON;
  s->result.json = node;
}

void result_i64(Step *s, int64_t v) {
  JsonNode *node = json_node_new(JSON_NODE_VALUE);
  json_node_set_int(node, v);
  result_json(s, node);
}

void result_u64(Step *s, uint64_t v) {
  if (v <= INT64_MAX) {
    result_i64(s, (int64_t)v);
    return;
  }
  g_autofree char *text = g_strdup_printf("%" G_GUINT64_FORMAT, v);
  result_string(s, text);
}

void result_f64(Step *s, double v) {
  JsonNode *node = json_node_new(JSON_NODE_VALUE);
  json_node_set_double(node, v);
  result_json(s, node);
}

void result_bool(Step *s, bool v) {
  JsonNode *node = json_node_new(JSON_NODE_VALUE);
  json_node_set_boolean(node, v);
  result_json(s, node);
}

void result_string(Step *s, const char *v) {
  JsonNode *node = json_node_new(v != NULL ? JSON_NODE_VALUE : JSON_NODE_NULL);
  if (v != NULL)
    json_node_set_string(node, v);
  result_json(s, node);
}

void result_hex(Step *s, const void *data, size_t len) {
  GString *hex = g_string_sized_new(2 * len);
  for (size_t i = 0; i < len; i++)
    g_string_append_printf(hex, "%02x", ((const uint8_t *)data)[i]);
  result_string(s, hex->str);
  g_string_free(hex, TRUE);
}

void result_handle(Step *s, HandleType type, void *handle, bool owned) {
  s->result.kind = VALUE_HANDLE;
  s->result.handle_type = type;
  s->result.handle = handle;
  s->result.owned = owned && handle != NULL;
}

void result_fd(Step *s, int fd) {
  s->result.kind = VALUE_FD;
  s->result.fd = fd;
  s->result.owned = true;
}

void result_member(Step *s, const char *name, Value member) {
  if (s->result.kind != VALUE_OBJECT) {
    s->result.kind = VALUE_OBJECT;
    s->result.members =
        g_hash_table_new_full(g_str_hash, g_str_equal, g_free, value_free);
  }
  g_hash_table_insert(s->result.members, g_strdup(name),
                      g_memdup2(&member, sizeof member));
}

void value_free(gpointer value) {
  Value *v = value;
  if (v->json != NULL)
    json_node_unref(v->json);
  if (v->fds != NULL)
    g_array_unref(v->fds);
  if (v->members != NULL)
    g_hash_table_unref(v->members);
  g_free(v);
}
