/* The C conformance runner: reads the cases with json-glib and calls the ABI
 * directly, through its declared prototypes. conformance/README.md defines
 * the case format this implements. */
#ifndef TB_CONFORMANCE_C_RUNNER_H
#define TB_CONFORMANCE_C_RUNNER_H

#include <json-glib/json-glib.h>
#include <stdbool.h>
#include <tensorbuf/tensorbuf.h>

typedef enum HandleType {
  HANDLE_BUFFER,
  HANDLE_TENSOR,
  HANDLE_MAP,
  HANDLE_CHANNEL,
  HANDLE_LISTENER,
  HANDLE_FENCE,
  HANDLE_POOL,
  HANDLE_SAFETENSORS,
} HandleType;

typedef enum ValueKind {
  VALUE_NONE,   /* no result (a call that only returns a status) */
  VALUE_JSON,   /* numbers, booleans, strings, null, objects */
  VALUE_HANDLE, /* a pointer of one of the handle types (NULL allowed) */
  VALUE_FD,     /* a file descriptor */
  VALUE_FDS,    /* a list of file descriptors (tensor_export's fds) */
  VALUE_OBJECT, /* named members that own handles or fds (channel_pair,
                   tensor_export): bound member by member, never compared */
} ValueKind;

typedef struct Value {
  ValueKind kind;
  JsonNode *json;
  HandleType handle_type;
  void *handle;
  int fd;
  GArray *fds;         /* VALUE_FDS: the ints */
  GHashTable *members; /* VALUE_OBJECT: member name -> Value* */
  /* The case holds a reference (handle) or the fd(s): the runner releases
   * it at the end of the case unless a step did. */
  bool owned;
} Value;

/* A memory block handed to tb_buffer_wrap, and how often its destroy-notify
 * ran (it must be once per successful wrap, never for a failed one). */
typedef struct WrapBlock {
  int destroyed;
  bool wrapped;
  uint8_t data[];
} WrapBlock;

/* State of the case being run. */
typedef struct Case {
  GHashTable *vars; /* name -> Value* */
  GPtrArray *wraps; /* WrapBlock*, freed after the leak checks */
  GHashTable *env;  /* variable -> original value ("" marks unset) */
  int64_t live_at_start;
} Case;

/* One step: its arguments in, its status and result out. */
typedef struct Step {
  Case *kase;
  const char *call;
  JsonObject *args;   /* never NULL (empty when the step has none) */
  GPtrArray *scratch; /* arrays decoded from args; freed after the step */
  char *error;        /* first problem (bad case data or a failed check) */
  bool fallible;      /* the call returned a tb_status */
  tb_status status;
  Value result;
} Step;

/* Records the step's first problem; later ones are dropped. */
void step_fail(Step *s, const char *format, ...) G_GNUC_PRINTF(2, 3);

/* ---- arguments (args.c). On bad case data they record the problem with
 * step_fail and return a harmless value; a call checks s->error before it
 * calls the library. */

typedef struct I64Array {
  int64_t *data; /* NULL for a null or omitted array */
  size_t len;
} I64Array;
typedef struct IntArray {
  int *data; /* NULL for a null or omitted array */
  size_t len;
} IntArray;
typedef struct F64Array {
  double *data;
  size_t len;
} F64Array;
typedef struct Bytes {
  uint8_t *data; /* NULL for null or omitted */
  size_t len;
} Bytes;
typedef struct FlagName {
  const char *name;
  uint32_t value;
} FlagName;

extern const FlagName map_flag_names[];
extern const FlagName buffer_flag_names[];
extern const FlagName send_flag_names[];

JsonNode *arg_node(Step *s, const char *name); /* NULL when omitted */
bool arg_is_null(Step *s, const char *name);   /* given as null */
int64_t arg_i64(Step *s, const char *name);
uint64_t arg_u64(Step *s, const char *name);
double arg_f64(Step *s, const char *name);
bool arg_bool(Step *s, const char *name, bool fallback);
/* A string, NULL for null or omitted, or the string a "$var" is bound to. */
const char *arg_string(Step *s, const char *name);
I64Array arg_i64_array(Step *s, const char *name);
/* uint64_t values (decimal strings up to 2^64 - 1) as their bit patterns. */
I64Array arg_u64_array(Step *s, const char *name);
/* fds: an array of "$fd" or numbers, or "$fds" naming a bound fd list. */
IntArray arg_int_array(Step *s, const char *name);
F64Array arg_f64_array(Step *s, const char *name);
Bytes arg_bytes(Step *s, const char *name);
/* An explicit length, or `implied` when omitted. */
size_t arg_length(Step *s, const char *name, size_t implied);
tb_dtype arg_dtype(Step *s, const char *name);
tb_memory arg_memory(Step *s, const char *name);
tb_pixel_format arg_pixel_format(Step *s, const char *name);
uint32_t arg_flags(Step *s, const char *name, const FlagName *names);
void *arg_handle(Step *s, const char *name, HandleType type);
/* As arg_handle, and marks the bound variable as released by this step. */
void *arg_release(Step *s, const char *name, HandleType type);
int arg_fd(Step *s, const char *name);
/* NULL when omitted or null, else `storage` filled from the object. */
const tb_alloc_options *arg_opts(Step *s, const char *name,
                                 tb_alloc_options *storage);
/* A channel options object (fields of tb_channel_options), or NULL for
 * null or a missing argument. */
const tb_channel_options *arg_channel_opts(Step *s, const char *name,
                                           tb_channel_options *storage);
/* A listener options object (fields of tb_listener_options; "uids" an
 * array), or NULL for null / omitted. */
const tb_listener_options *arg_listener_opts(Step *s, const char *name,
                                             tb_listener_options *storage);
/* Whether the out-parameter `name` is wanted (not written as null). */
bool out_wanted(Step *s, const char *name);

/* Name tables shared by arguments and results. */
const char *dtype_result_name(tb_dtype dtype);
const char *pixel_format_result_name(tb_pixel_format format);
const char *pixel_layout_result_name(tb_pixel_layout layout);
bool memory_by_name(const char *name, tb_memory *out);

/* ---- results (args.c) ---------------------------------------------------- */

void result_json(Step *s, JsonNode *node); /* takes the node */
void result_i64(Step *s, int64_t v);
void result_u64(Step *s, uint64_t v);
void result_f64(Step *s, double v);
void result_bool(Step *s, bool v);
void result_string(Step *s, const char *v); /* NULL gives null */
void result_hex(Step *s, const void *data, size_t len);
void result_handle(Step *s, HandleType type, void *handle, bool owned);
void result_fd(Step *s, int fd);
/* Adds a member to a VALUE_OBJECT result; it takes what `member` owns. */
void result_member(Step *s, const char *name, Value member);

/* Frees a value's storage (after value_release, for what it owned). */
void value_free(gpointer value);

/* ---- calls (calls.c) ----------------------------------------------------- */

typedef void (*CallFunc)(Step *s);
/* The function running `call`, or NULL if this runner does not know it. */
CallFunc call_lookup(const char *call);
/* Releases what a bound value owns (end of case). */
void value_release(Value *v);
/* Number of open file descriptors of this process. */
int open_fd_count(void);

#endif
