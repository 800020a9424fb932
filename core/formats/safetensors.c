/* safetensors: an 8-byte little-endian header length N, N bytes of JSON
 * mapping each tensor name to {dtype, shape, data_offsets} (plus an optional
 * "__metadata__" of strings), then the data area the offsets index.
 *
 * The header is untrusted: it is bounded before it is parsed, parsed in one
 * pass with bounded nesting, and every number is range- and
 * overflow-checked before it is used. */
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

/* ---- the header parser ----------------------------------------------------
 * One pass over the JSON text, no document tree: json-glib's tree (a GObject
 * parser emitting a signal per member, a hash table per object) cost more
 * than the rest of opening a file, and more than NumPy's whole load. The
 * grammar is RFC 8259's; values the header does not use (unknown members of
 * a tensor) are checked and skipped, nested at most
 * TB_SAFETENSORS_MAX_NESTING deep so that the recursion is bounded. */

typedef struct Cursor {
  const char *at, *start, *end;
  GError **error;
} Cursor;

static gboolean syntax_error(Cursor *c, const char *what) {
  g_set_error(c->error, TB_FORMAT_ERROR, TB_ERR_INVALID_ARGUMENT,
              "header is not valid JSON: %s at byte %zu", what,
              (size_t)(c->at - c->start));
  return FALSE;
}

static void skip_space(Cursor *c) {
  while (c->at < c->end &&
         (*c->at == ' ' || *c->at == '\t' || *c->at == '\n' || *c->at == '\r'))
    c->at++;
}

/* Skips space, then consumes `ch` if it is next. */
static gboolean take(Cursor *c, char ch) {
  skip_space(c);
  if (c->at < c->end && *c->at == ch) {
    c->at++;
    return TRUE;
  }
  return FALSE;
}

static gboolean expect(Cursor *c, char ch, const char *what) {
  return take(c, ch) || syntax_error(c, what);
}

static int hex_digit(char ch) {
  return g_ascii_isxdigit(ch) ? g_ascii_xdigit_value(ch) : -1;
}

/* Four hex digits of a \u escape. */
static gboolean unicode_unit(Cursor *c, gunichar *unit) {
  if (c->end - c->at < 4)
    return syntax_error(c, "a short \\u escape");
  *unit = 0;
  for (int i = 0; i < 4; i++) {
    int digit = hex_digit(c->at[i]);
    if (digit < 0)
      return syntax_error(c, "a \\u escape that is not hexadecimal");
    *unit = *unit << 4 | (gunichar)digit;
  }
  c->at += 4;
  return TRUE;
}

/* One escape after its backslash, appended to `out` as UTF-8. */
static gboolean unescape(Cursor *c, GString *out) {
  if (c->at >= c->end)
    return syntax_error(c, "an unterminated string");
  char ch = *c->at++;
  static const char from[] = "\"\\/bfnrt", to[] = "\"\\/\b\f\n\r\t";
  const char *simple = ch != '\0' ? strchr(from, ch) : NULL;
  if (simple != NULL) {
    g_string_append_c(out, to[simple - from]);
    return TRUE;
  }
  if (ch != 'u')
    return syntax_error(c, "an unknown escape");
  gunichar unit;
  if (!unicode_unit(c, &unit))
    return FALSE;
  if (unit >= 0xdc00 && unit <= 0xdfff)
    return syntax_error(c, "a lone low surrogate");
  if (unit >= 0xd800 && unit <= 0xdbff) { /* a pair: \uD8xx\uDCxx */
    gunichar low;
    if (c->end - c->at < 2 || c->at[0] != '\\' || c->at[1] != 'u')
      return syntax_error(c, "a lone high surrogate");
    c->at += 2;
    if (!unicode_unit(c, &low))
      return FALSE;
    if (low < 0xdc00 || low > 0xdfff)
      return syntax_error(c, "a high surrogate without its low one");
    unit = 0x10000 + ((unit - 0xd800) << 10) + (low - 0xdc00);
  }
  if (unit == 0)
    return syntax_error(c, "a NUL character in a string");
  g_string_append_unichar(out, unit);
  return TRUE;
}

/* A string (the cursor on its opening quote) as new UTF-8, or NULL. */
static char *parse_string(Cursor *c) {
  if (!take(c, '"')) {
    syntax_error(c, "a string expected");
    return NULL;
  }
  g_autoptr(GString) text = NULL;
  const char *run = c->at; /* bytes not yet copied into text */
  for (;;) {
    while (c->at < c->end && *c->at != '"' && *c->at != '\\' &&
           (unsigned char)*c->at >= 0x20)
      c->at++;
    if (!g_utf8_validate_len(run, (gsize)(c->at - run), NULL)) {
      syntax_error(c, "a string that is not UTF-8");
      return NULL;
    }
    if (c->at >= c->end || (unsigned char)*c->at < 0x20) {
      syntax_error(c, c->at >= c->end ? "an unterminated string"
                                      : "a control character in a string");
      return NULL;
    }
    if (*c->at == '"')
      break;
    if (text == NULL)
      text = g_string_sized_new((gsize)(c->at - run) + 16);
    g_string_append_len(text, run, c->at - run);
    c->at++; /* the backslash */
    if (!unescape(c, text))
      return NULL;
    run = c->at;
  }
  const char *last = c->at++; /* past the closing quote */
  if (text == NULL)
    return g_strndup(run, (gsize)(last - run));
  g_string_append_len(text, run, last - run);
  return g_string_free(g_steal_pointer(&text), FALSE);
}

/* A number. `*count` is TRUE (and `*value` set) when it is an integer in
 * [0, 2^63) written without fraction or exponent: what dims and offsets
 * must be. */
static gboolean parse_number(Cursor *c, gboolean *count, int64_t *value) {
  skip_space(c);
  gboolean negative = c->at < c->end && *c->at == '-';
  if (negative)
    c->at++;
  const char *digits = c->at;
  while (c->at < c->end && g_ascii_isdigit(*c->at))
    c->at++;
  size_t ndigits = (size_t)(c->at - digits);
  if (ndigits == 0 || (ndigits > 1 && *digits == '0'))
    return syntax_error(c, "a malformed number");
  gboolean integral = TRUE;
  if (c->at < c->end && *c->at == '.') {
    integral = FALSE;
    const char *fraction = ++c->at;
    while (c->at < c->end && g_ascii_isdigit(*c->at))
      c->at++;
    if (c->at == fraction)
      return syntax_error(c, "a malformed number");
  }
  if (c->at < c->end && (*c->at == 'e' || *c->at == 'E')) {
    integral = FALSE;
    c->at++;
    if (c->at < c->end && (*c->at == '+' || *c->at == '-'))
      c->at++;
    const char *exponent = c->at;
    while (c->at < c->end && g_ascii_isdigit(*c->at))
      c->at++;
    if (c->at == exponent)
      return syntax_error(c, "a malformed number");
  }
  uint64_t n = 0;
  *count = integral && !negative;
  for (size_t i = 0; *count && i < ndigits; i++)
    *count = tb_mul_u64(n, 10, &n) &&
             tb_add_u64(n, (uint64_t)(digits[i] - '0'), &n) && n <= INT64_MAX;
  *value = (int64_t)n;
  return TRUE;
}

static gboolean skip_value(Cursor *c, int depth);

/* Skips the members of an object or the elements of an array whose opening
 * bracket was taken. */
static gboolean skip_container(Cursor *c, char close, int depth) {
  if (take(c, close))
    return TRUE;
  do {
    if (close == '}') {
      g_autofree char *key = parse_string(c);
      if (key == NULL || !expect(c, ':', "':' expected"))
        return FALSE;
    }
    if (!skip_value(c, depth))
      return FALSE;
  } while (take(c, ','));
  return expect(c, close,
                close == '}' ? "',' or '}' expected" : "',' or ']' expected");
}

static gboolean skip_word(Cursor *c, const char *word) {
  size_t length = strlen(word);
  if ((size_t)(c->end - c->at) < length || memcmp(c->at, word, length) != 0)
    return syntax_error(c, "a value expected");
  c->at += length;
  return TRUE;
}

static gboolean skip_value(Cursor *c, int depth) {
  skip_space(c);
  if (c->at >= c->end)
    return syntax_error(c, "a value expected");
  switch (*c->at) {
  case '{':
  case '[':
    if (depth >= TB_SAFETENSORS_MAX_NESTING) {
      g_set_error(c->error, TB_FORMAT_ERROR, TB_ERR_INVALID_ARGUMENT,
                  "header nests deeper than %d levels",
                  TB_SAFETENSORS_MAX_NESTING);
      return FALSE;
    }
    return skip_container(c, *c->at++ == '{' ? '}' : ']', depth + 1);
  case '"': {
    char *text = parse_string(c);
    g_free(text);
    return text != NULL;
  }
  case 't':
    return skip_word(c, "true");
  case 'f':
    return skip_word(c, "false");
  case 'n':
    return skip_word(c, "null");
  default: {
    gboolean count;
    int64_t value;
    return parse_number(c, &count, &value);
  }
  }
}

/* What one tensor's object held, checked once it is closed (its fields may
 * come in any order). */
typedef struct RawEntry {
  char *dtype;          /* NULL: missing or not a string */
  gboolean has_dtype;   /* present, of any type */
  gboolean shape_array; /* "shape" was an array */
  gboolean has_shape;
  size_t ndim;     /* elements seen (may exceed TB_MAX_DIMS) */
  ssize_t bad_dim; /* the first element that is not a count, or -1 */
  int64_t shape[TB_MAX_DIMS];
  gboolean offsets_ok; /* "data_offsets" was [count, count] */
  int64_t offsets[2];
} RawEntry;

/* An array of counts: up to `capacity` values kept, `*n` elements seen,
 * `*bad` the first that is not a count (-1: none). */
static gboolean parse_counts(Cursor *c, int depth, int64_t *values,
                             size_t capacity, size_t *n, ssize_t *bad) {
  *n = 0;
  *bad = -1;
  if (take(c, ']'))
    return TRUE;
  do {
    skip_space(c);
    gboolean count = FALSE;
    int64_t value = 0;
    if (c->at < c->end && (*c->at == '-' || g_ascii_isdigit(*c->at))) {
      if (!parse_number(c, &count, &value))
        return FALSE;
    } else if (!skip_value(c, depth)) {
      return FALSE;
    }
    if (!count && *bad < 0)
      *bad = (ssize_t)*n;
    if (*n < capacity)
      values[*n] = value;
    (*n)++;
  } while (take(c, ','));
  return expect(c, ']', "',' or ']' expected");
}

/* A member of a tensor's object whose key was read. */
static gboolean parse_field(Cursor *c, const char *key, RawEntry *raw) {
  skip_space(c);
  gboolean array = c->at < c->end && *c->at == '[';
  if (g_str_equal(key, "dtype")) {
    raw->has_dtype = TRUE;
    g_clear_pointer(&raw->dtype, g_free);
    if (c->at < c->end && *c->at == '"')
      return (raw->dtype = parse_string(c)) != NULL;
    return skip_value(c, 2);
  }
  if (g_str_equal(key, "shape")) {
    raw->has_shape = TRUE;
    raw->shape_array = array;
    if (!array)
      return skip_value(c, 2);
    c->at++;
    return parse_counts(c, 3, raw->shape, TB_MAX_DIMS, &raw->ndim,
                        &raw->bad_dim);
  }
  if (g_str_equal(key, "data_offsets")) {
    raw->offsets_ok = FALSE;
    if (!array)
      return skip_value(c, 2);
    c->at++;
    size_t n;
    ssize_t bad;
    if (!parse_counts(c, 3, raw->offsets, 2, &n, &bad))
      return FALSE;
    raw->offsets_ok = n == 2 && bad < 0;
    return TRUE;
  }
  return skip_value(c, 2); /* a member the format does not define */
}

static gboolean check_dtype(TbSafetensorsEntry *entry, const RawEntry *raw,
                            GError **error) {
  if (raw->dtype == NULL) {
    g_set_error(error, TB_FORMAT_ERROR, TB_ERR_INVALID_ARGUMENT,
                "tensor \"%s\": field \"dtype\" is %s, not a string",
                entry->name, raw->has_dtype ? "present" : "missing");
    return FALSE;
  }
  for (size_t i = 0; i < G_N_ELEMENTS(tb_safetensors_dtypes); i++) {
    if (g_str_equal(raw->dtype, tb_safetensors_dtypes[i].name)) {
      entry->dtype = tb_safetensors_dtypes[i].dtype;
      return TRUE;
    }
  }
  g_set_error(error, TB_FORMAT_ERROR, TB_ERR_DTYPE,
              "tensor \"%s\": field \"dtype\" is \"%s\", which tensorbuf has "
              "no dtype for",
              entry->name, raw->dtype);
  return FALSE;
}

/* The shape, and its byte size in `bytes` (overflow-checked). */
static gboolean check_shape(TbSafetensorsEntry *entry, const RawEntry *raw,
                            uint64_t *bytes, GError **error) {
  if (!raw->shape_array) {
    g_set_error(error, TB_FORMAT_ERROR, TB_ERR_SHAPE,
                "tensor \"%s\": field \"shape\" is %s, not an array",
                entry->name, raw->has_shape ? "present" : "missing");
    return FALSE;
  }
  if (raw->ndim > TB_MAX_DIMS) {
    g_set_error(error, TB_FORMAT_ERROR, TB_ERR_SHAPE,
                "tensor \"%s\": field \"shape\" has %zu dims; tensorbuf "
                "allows at most %d",
                entry->name, raw->ndim, TB_MAX_DIMS);
    return FALSE;
  }
  if (raw->bad_dim >= 0) {
    g_set_error(error, TB_FORMAT_ERROR, TB_ERR_SHAPE,
                "tensor \"%s\": field \"shape\"[%zd] is not an integer in "
                "[0, 2^63)",
                entry->name, raw->bad_dim);
    return FALSE;
  }
  uint64_t product = tb_dtype_size(entry->dtype);
  gboolean overflow = FALSE, empty = FALSE;
  for (size_t i = 0; i < raw->ndim; i++) {
    entry->shape[i] = raw->shape[i];
    empty |= raw->shape[i] == 0;
    overflow |= !tb_mul_u64(product, (uint64_t)raw->shape[i], &product);
  }
  if (!empty && (overflow || product > INT64_MAX)) {
    g_set_error(error, TB_FORMAT_ERROR, TB_ERR_SHAPE,
                "tensor \"%s\": field \"shape\" has more than 2^63 bytes",
                entry->name);
    return FALSE;
  }
  entry->ndim = raw->ndim;
  *bytes = empty ? 0 : product;
  return TRUE;
}

static gboolean check_offsets(TbSafetensorsEntry *entry, const RawEntry *raw,
                              uint64_t bytes, uint64_t data_size,
                              GError **error) {
  int64_t begin = raw->offsets[0], end = raw->offsets[1];
  if (!raw->offsets_ok) {
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

/* The tensor `name` (taken over), the cursor on its value. */
static TbSafetensorsEntry *parse_entry(Cursor *c, char *name,
                                       uint64_t data_size) {
  TbSafetensorsEntry *entry = g_new0(TbSafetensorsEntry, 1);
  entry->name = name;
  RawEntry raw = {.bad_dim = -1};
  gboolean ok = FALSE;
  if (!take(c, '{')) {
    /* A JSON error (or excess nesting) first, then the type. */
    if (skip_value(c, 1))
      g_set_error(c->error, TB_FORMAT_ERROR, TB_ERR_INVALID_ARGUMENT,
                  "tensor \"%s\" is not an object", name);
  } else if (take(c, '}')) {
    ok = TRUE;
  } else {
    do {
      g_autofree char *key = parse_string(c);
      ok = key != NULL && expect(c, ':', "':' expected") &&
           parse_field(c, key, &raw);
    } while (ok && take(c, ','));
    ok = ok && expect(c, '}', "',' or '}' expected");
  }
  uint64_t bytes = 0;
  ok = ok && check_dtype(entry, &raw, c->error) &&
       check_shape(entry, &raw, &bytes, c->error) &&
       check_offsets(entry, &raw, bytes, data_size, c->error);
  g_free(raw.dtype);
  if (!ok) {
    entry_free(entry);
    return NULL;
  }
  return entry;
}

static gboolean parse_metadata(Cursor *c, TbSafetensorsHeader *header) {
  if (!take(c, '{')) {
    g_set_error(c->error, TB_FORMAT_ERROR, TB_ERR_INVALID_ARGUMENT,
                "field \"__metadata__\" is not an object of strings");
    return FALSE;
  }
  if (take(c, '}'))
    return TRUE;
  do {
    g_autofree char *key = parse_string(c);
    if (key == NULL || !expect(c, ':', "':' expected"))
      return FALSE;
    skip_space(c);
    if (c->at >= c->end || *c->at != '"') {
      g_set_error(c->error, TB_FORMAT_ERROR, TB_ERR_INVALID_ARGUMENT,
                  "field \"__metadata__\": entry \"%s\" is not a string", key);
      return FALSE;
    }
    char *value = parse_string(c);
    if (value == NULL)
      return FALSE;
    if (g_hash_table_contains(header->meta, key)) {
      g_free(value);
      g_set_error(c->error, TB_FORMAT_ERROR, TB_ERR_INVALID_ARGUMENT,
                  "field \"__metadata__\": entry \"%s\" appears twice", key);
      return FALSE;
    }
    g_ptr_array_add(header->meta_keys, g_strdup(key));
    g_hash_table_insert(header->meta, g_steal_pointer(&key), value);
  } while (take(c, ','));
  return expect(c, '}', "',' or '}' expected");
}

/* The top-level object, the cursor past its '{'. */
static gboolean parse_members(Cursor *c, TbSafetensorsHeader *header,
                              uint64_t data_size) {
  if (take(c, '}'))
    return TRUE;
  gboolean seen_metadata = FALSE;
  do {
    char *name = parse_string(c);
    if (name == NULL || !expect(c, ':', "':' expected")) {
      g_free(name);
      return FALSE;
    }
    if (g_str_equal(name, "__metadata__")) {
      g_free(name);
      if (seen_metadata) {
        g_set_error(c->error, TB_FORMAT_ERROR, TB_ERR_INVALID_ARGUMENT,
                    "field \"__metadata__\" appears twice");
        return FALSE;
      }
      seen_metadata = TRUE;
      if (!parse_metadata(c, header))
        return FALSE;
      continue;
    }
    if (g_hash_table_contains(header->by_name, name)) {
      g_set_error(c->error, TB_FORMAT_ERROR, TB_ERR_INVALID_ARGUMENT,
                  "tensor \"%s\" appears twice", name);
      g_free(name);
      return FALSE;
    }
    TbSafetensorsEntry *entry = parse_entry(c, name, data_size);
    if (entry == NULL)
      return FALSE;
    g_ptr_array_add(header->entries, entry);
    g_hash_table_insert(header->by_name, entry->name, entry);
  } while (take(c, ','));
  return expect(c, '}', "',' or '}' expected");
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
  g_autoptr(TbSafetensorsHeader) header = g_new0(TbSafetensorsHeader, 1);
  header->entries = g_ptr_array_new_with_free_func(entry_free);
  header->by_name = g_hash_table_new(g_str_hash, g_str_equal);
  header->meta_keys = g_ptr_array_new_with_free_func(g_free);
  header->meta = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, g_free);
  header->data_start = 8 + length;
  const char *json = (const char *)file + 8;
  /* header_bounds saw the '{'. */
  Cursor c = {
      .at = json + 1, .start = json, .end = json + length, .error = error};
  if (!parse_members(&c, header, size - header->data_start))
    return NULL;
  skip_space(&c);
  if (c.at != c.end) {
    g_set_error(error, TB_FORMAT_ERROR, TB_ERR_INVALID_ARGUMENT,
                "header has bytes other than spaces after its object, at "
                "byte %zu",
                (size_t)(c.at - json));
    return NULL;
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
