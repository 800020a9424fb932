/* safetensors: an 8-byte little-endian header length N, N bytes of JSON
 * mapping each tensor name to {dtype, shape, data_offsets} (plus an optional
 * "__metadata__" of strings), then the data area the offsets index.
 *
 * The header is untrusted: it is bounded before it is parsed, its nesting is
 * bounded before json-glib (a recursive parser) sees it, and every number is
 * range- and overflow-checked before it is used. */
#include "formats/safetensors.h"

#include <errno.h>
#include <fcntl.h>
#include <json-glib/json-glib.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* A valid header nests three deep (header, tensor, shape); allow some room
 * for extensions, but not enough to exhaust the stack of a recursive
 * parser. */
#define TB_SAFETENSORS_MAX_NESTING 16

static const struct {
  const char *name;
  tb_dtype dtype;
} tb_safetensors_dtypes[] = {
    {"BOOL", TB_DTYPE_BOOL}, {"U8", TB_DTYPE_U8},     {"I8", TB_DTYPE_I8},
    {"U16", TB_DTYPE_U16},   {"I16", TB_DTYPE_I16},   {"U32", TB_DTYPE_U32},
    {"I32", TB_DTYPE_I32},   {"U64", TB_DTYPE_U64},   {"I64", TB_DTYPE_I64},
    {"F16", TB_DTYPE_F16},   {"BF16", TB_DTYPE_BF16}, {"F32", TB_DTYPE_F32},
    {"F64", TB_DTYPE_F64},
};

const char *tb_safetensors_dtype_name(tb_dtype dtype) {
  for (size_t i = 0; i < G_N_ELEMENTS(tb_safetensors_dtypes); i++)
    if (tb_safetensors_dtypes[i].dtype == dtype)
      return tb_safetensors_dtypes[i].name;
  return NULL;
}

static void entry_free(gpointer data) {
  TbSafetensorsEntry *entry = data;
  g_free(entry->name);
  g_free(entry);
}

void tb_safetensors_header_free(TbSafetensorsHeader *header) {
  if (header == NULL)
    return;
  g_hash_table_unref(header->by_name);
  g_ptr_array_unref(header->entries);
  g_ptr_array_unref(header->meta_keys);
  g_hash_table_unref(header->meta);
  g_free(header);
}

/* Checks the bracket structure before json-glib sees it: nesting no
 * deeper than `limit` (json-glib recurses), and nothing but whitespace after
 * the object that closes first (json-glib 1.6 leaks its tree when it fails
 * on trailing bytes). FALSE with a message otherwise. */
static gboolean brackets_fit(const char *json, size_t length, int limit,
                             GError **error) {
  int depth = 0;
  gboolean in_string = FALSE;
  for (size_t i = 0; i < length; i++) {
    char c = json[i];
    if (in_string) {
      if (c == '\\')
        i++;
      else if (c == '"')
        in_string = FALSE;
    } else if (c == '"') {
      in_string = TRUE;
    } else if (c == '[' || c == '{') {
      if (++depth > limit) {
        g_set_error(error, TB_FORMAT_ERROR, TB_ERR_INVALID_ARGUMENT,
                    "header nests deeper than %d levels", limit);
        return FALSE;
      }
    } else if ((c == ']' || c == '}') && --depth == 0) {
      for (size_t j = i + 1; j < length; j++) {
        if (!g_ascii_isspace(json[j])) {
          g_set_error(error, TB_FORMAT_ERROR, TB_ERR_INVALID_ARGUMENT,
                      "header has bytes other than spaces after its object, "
                      "at byte %zu",
                      j);
          return FALSE;
        }
      }
      return TRUE;
    }
  }
  return TRUE; /* unterminated: json-glib says where */
}

/* A JSON integer that fits int64 and is >= 0; FALSE for anything else
 * (floats, strings, negatives, integers json-glib could not hold). */
static gboolean node_count(JsonNode *node, int64_t *out) {
  if (node == NULL || !JSON_NODE_HOLDS_VALUE(node) ||
      json_node_get_value_type(node) != G_TYPE_INT64)
    return FALSE;
  *out = json_node_get_int(node);
  return *out >= 0;
}

static gboolean parse_metadata(TbSafetensorsHeader *header, JsonNode *node,
                               GError **error) {
  if (!JSON_NODE_HOLDS_OBJECT(node)) {
    g_set_error(error, TB_FORMAT_ERROR, TB_ERR_INVALID_ARGUMENT,
                "field \"__metadata__\" is not an object of strings");
    return FALSE;
  }
  JsonObject *object = json_node_get_object(node);
  g_autoptr(GList) keys = json_object_get_members(object);
  for (GList *k = keys; k != NULL; k = k->next) {
    JsonNode *value = json_object_get_member(object, k->data);
    if (!JSON_NODE_HOLDS_VALUE(value) ||
        json_node_get_value_type(value) != G_TYPE_STRING) {
      g_set_error(error, TB_FORMAT_ERROR, TB_ERR_INVALID_ARGUMENT,
                  "field \"__metadata__\": entry \"%s\" is not a string",
                  (const char *)k->data);
      return FALSE;
    }
    char *key = g_strdup(k->data);
    g_ptr_array_add(header->meta_keys, key);
    g_hash_table_insert(header->meta, g_strdup(key),
                        g_strdup(json_node_get_string(value)));
  }
  return TRUE;
}

static gboolean parse_dtype(TbSafetensorsEntry *entry, JsonObject *object,
                            GError **error) {
  JsonNode *node = json_object_get_member(object, "dtype");
  if (node == NULL || !JSON_NODE_HOLDS_VALUE(node) ||
      json_node_get_value_type(node) != G_TYPE_STRING) {
    g_set_error(error, TB_FORMAT_ERROR, TB_ERR_INVALID_ARGUMENT,
                "tensor \"%s\": field \"dtype\" is %s, not a string",
                entry->name, node == NULL ? "missing" : "present");
    return FALSE;
  }
  const char *name = json_node_get_string(node);
  for (size_t i = 0; i < G_N_ELEMENTS(tb_safetensors_dtypes); i++) {
    if (g_str_equal(name, tb_safetensors_dtypes[i].name)) {
      entry->dtype = tb_safetensors_dtypes[i].dtype;
      return TRUE;
    }
  }
  g_set_error(error, TB_FORMAT_ERROR, TB_ERR_DTYPE,
              "tensor \"%s\": field \"dtype\" is \"%s\", which tensorbuf has "
              "no dtype for",
              entry->name, name);
  return FALSE;
}

/* The shape, and its byte size in `bytes` (overflow-checked). */
static gboolean parse_shape(TbSafetensorsEntry *entry, JsonObject *object,
                            uint64_t *bytes, GError **error) {
  JsonNode *node = json_object_get_member(object, "shape");
  if (node == NULL || !JSON_NODE_HOLDS_ARRAY(node)) {
    g_set_error(error, TB_FORMAT_ERROR, TB_ERR_SHAPE,
                "tensor \"%s\": field \"shape\" is %s, not an array",
                entry->name, node == NULL ? "missing" : "present");
    return FALSE;
  }
  JsonArray *array = json_node_get_array(node);
  guint ndim = json_array_get_length(array);
  if (ndim > TB_MAX_DIMS) {
    g_set_error(error, TB_FORMAT_ERROR, TB_ERR_SHAPE,
                "tensor \"%s\": field \"shape\" has %u dims; tensorbuf "
                "allows at most %d",
                entry->name, ndim, TB_MAX_DIMS);
    return FALSE;
  }
  uint64_t product = tb_dtype_size(entry->dtype);
  gboolean overflow = FALSE, empty = FALSE;
  for (guint i = 0; i < ndim; i++) {
    if (!node_count(json_array_get_element(array, i), &entry->shape[i])) {
      g_set_error(error, TB_FORMAT_ERROR, TB_ERR_SHAPE,
                  "tensor \"%s\": field \"shape\"[%u] is not an integer in "
                  "[0, 2^63)",
                  entry->name, i);
      return FALSE;
    }
    empty |= entry->shape[i] == 0;
    overflow |= !tb_mul_u64(product, (uint64_t)entry->shape[i], &product);
  }
  if (!empty && (overflow || product > INT64_MAX)) {
    g_set_error(error, TB_FORMAT_ERROR, TB_ERR_SHAPE,
                "tensor \"%s\": field \"shape\" has more than 2^63 bytes",
                entry->name);
    return FALSE;
  }
  entry->ndim = ndim;
  *bytes = empty ? 0 : product;
  return TRUE;
}

static gboolean parse_offsets(TbSafetensorsEntry *entry, JsonObject *object,
                              uint64_t bytes, uint64_t data_size,
                              GError **error) {
  JsonNode *node = json_object_get_member(object, "data_offsets");
  JsonArray *array = node != NULL && JSON_NODE_HOLDS_ARRAY(node)
                         ? json_node_get_array(node)
                         : NULL;
  int64_t begin, end;
  if (array == NULL || json_array_get_length(array) != 2 ||
      !node_count(json_array_get_element(array, 0), &begin) ||
      !node_count(json_array_get_element(array, 1), &end)) {
    g_set_error(error, TB_FORMAT_ERROR, TB_ERR_INVALID_ARGUMENT,
                "tensor \"%s\": field \"data_offsets\" is not an array of two "
                "integers in [0, 2^63)",
                entry->name);
    return FALSE;
  }
  if (begin > end || (uint64_t)end > data_size) {
    g_set_error(error, TB_FORMAT_ERROR, TB_ERR_OUT_OF_RANGE,
                "tensor \"%s\": field \"data_offsets\" is [%" G_GINT64_FORMAT
                ", %" G_GINT64_FORMAT
                "], outside the data area's %" G_GUINT64_FORMAT " bytes",
                entry->name, begin, end, data_size);
    return FALSE;
  }
  if ((uint64_t)(end - begin) != bytes) {
    g_set_error(error, TB_FORMAT_ERROR, TB_ERR_OUT_OF_RANGE,
                "tensor \"%s\": field \"data_offsets\" spans %" G_GINT64_FORMAT
                " bytes but dtype and shape make %" G_GUINT64_FORMAT,
                entry->name, end - begin, bytes);
    return FALSE;
  }
  entry->begin = (uint64_t)begin;
  entry->end = (uint64_t)end;
  return TRUE;
}

static TbSafetensorsEntry *parse_entry(const char *name, JsonNode *node,
                                       uint64_t data_size, GError **error) {
  if (!JSON_NODE_HOLDS_OBJECT(node)) {
    g_set_error(error, TB_FORMAT_ERROR, TB_ERR_INVALID_ARGUMENT,
                "tensor \"%s\" is not an object", name);
    return NULL;
  }
  JsonObject *object = json_node_get_object(node);
  TbSafetensorsEntry *entry = g_new0(TbSafetensorsEntry, 1);
  entry->name = g_strdup(name);
  uint64_t bytes = 0;
  if (!parse_dtype(entry, object, error) ||
      !parse_shape(entry, object, &bytes, error) ||
      !parse_offsets(entry, object, bytes, data_size, error)) {
    entry_free(entry);
    return NULL;
  }
  return entry;
}

static gint by_begin(gconstpointer a, gconstpointer b) {
  const TbSafetensorsEntry *x = *(TbSafetensorsEntry *const *)a;
  const TbSafetensorsEntry *y = *(TbSafetensorsEntry *const *)b;
  if (x->begin != y->begin)
    return x->begin < y->begin ? -1 : 1;
  return x->end < y->end ? -1 : x->end > y->end;
}

/* No two tensors may share a byte (empty ones hold none). */
static gboolean check_overlaps(GPtrArray *entries, GError **error) {
  g_autoptr(GPtrArray) sorted = g_ptr_array_copy(entries, NULL, NULL);
  g_ptr_array_set_free_func(sorted, NULL); /* the copy borrows them */
  g_ptr_array_sort(sorted, by_begin);
  const TbSafetensorsEntry *last = NULL;
  for (guint i = 0; i < sorted->len; i++) {
    const TbSafetensorsEntry *entry = sorted->pdata[i];
    if (entry->begin == entry->end)
      continue;
    if (last != NULL && entry->begin < last->end) {
      g_set_error(error, TB_FORMAT_ERROR, TB_ERR_OUT_OF_RANGE,
                  "tensor \"%s\": field \"data_offsets\" [%" G_GUINT64_FORMAT
                  ", %" G_GUINT64_FORMAT ") overlaps tensor \"%s\"",
                  entry->name, entry->begin, entry->end, last->name);
      return FALSE;
    }
    last = entry;
  }
  return TRUE;
}

/* Finds and bounds the header: FALSE unless N fits the limit and the file. */
static gboolean header_bounds(const uint8_t *file, uint64_t size,
                              uint64_t *length, GError **error) {
  if (size < 8) {
    g_set_error(error, TB_FORMAT_ERROR, TB_ERR_INVALID_ARGUMENT,
                "the file has %" G_GUINT64_FORMAT " bytes; a safetensors file "
                "starts with an 8-byte header length",
                size);
    return FALSE;
  }
  uint64_t n = 0;
  for (int i = 7; i >= 0; i--)
    n = n << 8 | file[i];
  if (n > TB_SAFETENSORS_MAX_HEADER || n > size - 8) {
    g_set_error(error, TB_FORMAT_ERROR, TB_ERR_OUT_OF_RANGE,
                "header length is %" G_GUINT64_FORMAT "; it must be at most %u "
                "(the format's limit) and %" G_GUINT64_FORMAT
                " (what the file holds after it)",
                n, TB_SAFETENSORS_MAX_HEADER, size - 8);
    return FALSE;
  }
  if (n < 2 || file[8] != '{') {
    g_set_error(error, TB_FORMAT_ERROR, TB_ERR_INVALID_ARGUMENT,
                "header does not start with '{'");
    return FALSE;
  }
  *length = n;
  return TRUE;
}

TbSafetensorsHeader *tb_safetensors_parse(const uint8_t *file, uint64_t size,
                                          GError **error) {
  uint64_t length;
  if (!header_bounds(file, size, &length, error))
    return NULL;
  const char *json = (const char *)file + 8;
  if (!brackets_fit(json, (size_t)length, TB_SAFETENSORS_MAX_NESTING, error))
    return NULL;
  g_autoptr(JsonParser) parser = json_parser_new_immutable();
  GError *json_error = NULL;
  if (!json_parser_load_from_data(parser, json, (gssize)length, &json_error)) {
    g_set_error(error, TB_FORMAT_ERROR, TB_ERR_INVALID_ARGUMENT,
                "header is not valid JSON: %s", json_error->message);
    g_error_free(json_error);
    return NULL;
  }
  JsonNode *root = json_parser_get_root(parser);
  if (root == NULL || !JSON_NODE_HOLDS_OBJECT(root)) {
    g_set_error(error, TB_FORMAT_ERROR, TB_ERR_INVALID_ARGUMENT,
                "header is not a JSON object");
    return NULL;
  }
  g_autoptr(TbSafetensorsHeader) header = g_new0(TbSafetensorsHeader, 1);
  header->entries = g_ptr_array_new_with_free_func(entry_free);
  header->by_name = g_hash_table_new(g_str_hash, g_str_equal);
  header->meta_keys = g_ptr_array_new_with_free_func(g_free);
  header->meta = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, g_free);
  header->data_start = 8 + length;
  uint64_t data_size = size - header->data_start;
  JsonObject *object = json_node_get_object(root);
  g_autoptr(GList) names = json_object_get_members(object);
  for (GList *n = names; n != NULL; n = n->next) {
    const char *name = n->data;
    JsonNode *node = json_object_get_member(object, name);
    if (g_str_equal(name, "__metadata__")) {
      if (!parse_metadata(header, node, error))
        return NULL;
      continue;
    }
    TbSafetensorsEntry *entry = parse_entry(name, node, data_size, error);
    if (entry == NULL)
      return NULL;
    g_ptr_array_add(header->entries, entry);
    g_hash_table_insert(header->by_name, entry->name, entry);
  }
  if (!check_overlaps(header->entries, error))
    return NULL;
  return g_steal_pointer(&header);
}

typedef struct WriteItem {
  const char *name;
  tb_tensor *tensor;
} WriteItem;

/* Larger elements first, then by name: every tensor then starts at a
 * multiple of its element size (the data area starts at a multiple of 8),
 * so views of the file are aligned, and the order never depends on the
 * caller's. */
static gint write_order(gconstpointer a, gconstpointer b) {
  const WriteItem *x = a, *y = b;
  size_t sx = tb_dtype_size(x->tensor->dtype);
  size_t sy = tb_dtype_size(y->tensor->dtype);
  if (sx != sy)
    return sx > sy ? -1 : 1;
  return strcmp(x->name, y->name);
}

static char *header_json(WriteItem *items, size_t count, GHashTable *metadata,
                         gsize *length) {
  g_autoptr(JsonBuilder) builder = json_builder_new();
  json_builder_begin_object(builder);
  if (metadata != NULL && g_hash_table_size(metadata) > 0) {
    json_builder_set_member_name(builder, "__metadata__");
    json_builder_begin_object(builder);
    g_autoptr(GList) keys = g_hash_table_get_keys(metadata);
    keys = g_list_sort(keys, (GCompareFunc)strcmp);
    for (GList *k = keys; k != NULL; k = k->next) {
      json_builder_set_member_name(builder, k->data);
      json_builder_add_string_value(builder,
                                    g_hash_table_lookup(metadata, k->data));
    }
    json_builder_end_object(builder);
  }
  uint64_t offset = 0;
  for (size_t i = 0; i < count; i++) {
    tb_tensor *t = items[i].tensor;
    json_builder_set_member_name(builder, items[i].name);
    json_builder_begin_object(builder);
    json_builder_set_member_name(builder, "dtype");
    json_builder_add_string_value(builder, tb_safetensors_dtype_name(t->dtype));
    json_builder_set_member_name(builder, "shape");
    json_builder_begin_array(builder);
    for (size_t d = 0; d < t->ndim; d++)
      json_builder_add_int_value(builder, t->shape[d]);
    json_builder_end_array(builder);
    uint64_t end = offset + tb_tensor_nbytes(t);
    json_builder_set_member_name(builder, "data_offsets");
    json_builder_begin_array(builder);
    json_builder_add_int_value(builder, (gint64)offset);
    json_builder_add_int_value(builder, (gint64)end);
    json_builder_end_array(builder);
    json_builder_end_object(builder);
    offset = end;
  }
  json_builder_end_object(builder);
  g_autoptr(JsonNode) root = json_builder_get_root(builder);
  g_autoptr(JsonGenerator) generator = json_generator_new();
  json_generator_set_root(generator, root);
  return json_generator_to_data(generator, length);
}

static gboolean write_all(int fd, const void *data, uint64_t size) {
  const uint8_t *p = data;
  while (size > 0) {
    ssize_t n = write(fd, p, (size_t)MIN(size, (uint64_t)1 << 30));
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0)
      return FALSE;
    p += n;
    size -= (uint64_t)n;
  }
  return TRUE;
}

/* Writes the tensor's elements in row-major order: straight from its
 * memory when contiguous, else gathered into a temporary copy. */
static gboolean write_tensor(int fd, tb_tensor *t, GError **error) {
  uint64_t size = tb_tensor_nbytes(t);
  if (size == 0)
    return TRUE;
  gboolean contiguous = tb_tensor_is_contiguous(t);
  g_autofree void *gathered = NULL;
  if (!contiguous) {
    gathered = g_try_malloc(size);
    if (gathered == NULL) {
      g_set_error(error, TB_FORMAT_ERROR, TB_ERR_NO_MEMORY,
                  "no memory to gather a strided tensor of %" G_GUINT64_FORMAT
                  " bytes",
                  size);
      return FALSE;
    }
    if (!tb_tensor_copy_out(t, gathered, size, error))
      return FALSE;
  } else if (!tb_tensor_begin_access(t, TB_MAP_READ, error)) {
    return FALSE;
  }
  gboolean ok = write_all(fd, contiguous ? tb_tensor_base(t) : gathered, size);
  int errnum = errno;
  if (contiguous)
    tb_tensor_end_access(t, TB_MAP_READ);
  if (!ok)
    tb_set_system_error(error, TB_FORMAT_ERROR, errnum, "write");
  return ok;
}

gboolean tb_safetensors_write(const char *path, size_t count,
                              const char *const *names,
                              tb_tensor *const *tensors, GHashTable *metadata,
                              GError **error) {
  g_autofree WriteItem *items = g_new0(WriteItem, MAX(count, 1));
  for (size_t i = 0; i < count; i++)
    items[i] = (WriteItem){names[i], tensors[i]};
  qsort(items, count, sizeof *items,
        (int (*)(const void *, const void *))write_order);
  gsize json_length = 0;
  g_autofree char *json = header_json(items, count, metadata, &json_length);
  /* The format pads the header with spaces to a multiple of 8 bytes. */
  uint64_t padded = (json_length + 7) & ~(uint64_t)7;
  g_autofree uint8_t *head = g_malloc(8 + padded);
  for (int i = 0; i < 8; i++)
    head[i] = (uint8_t)(padded >> (8 * i));
  memcpy(head + 8, json, json_length);
  memset(head + 8 + json_length, ' ', padded - json_length);

  g_autofree char *temp = g_strdup_printf("%s.XXXXXX", path);
  int fd = g_mkstemp_full(temp, O_WRONLY | O_CLOEXEC, 0644);
  if (fd < 0) {
    tb_set_system_error(error, TB_FORMAT_ERROR, errno,
                        "creating a temporary file next to \"%s\"", path);
    return FALSE;
  }
  gboolean ok = write_all(fd, head, 8 + padded);
  if (!ok)
    tb_set_system_error(error, TB_FORMAT_ERROR, errno, "write \"%s\"", temp);
  for (size_t i = 0; ok && i < count; i++)
    ok = write_tensor(fd, items[i].tensor, error);
  if (ok && fsync(fd) != 0) {
    tb_set_system_error(error, TB_FORMAT_ERROR, errno, "fsync \"%s\"", temp);
    ok = FALSE;
  }
  if (close(fd) != 0 && ok) {
    tb_set_system_error(error, TB_FORMAT_ERROR, errno, "close \"%s\"", temp);
    ok = FALSE;
  }
  if (ok && rename(temp, path) != 0) {
    tb_set_system_error(error, TB_FORMAT_ERROR, errno, "rename to \"%s\"",
                        path);
    ok = FALSE;
  }
  if (!ok)
    unlink(temp);
  return ok;
}
