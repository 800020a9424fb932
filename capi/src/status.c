/* Status names and messages (from TB_STATUS_MAP) and the per-thread error. */
#include "boundary.h"

#include "core.h"
#include <string.h>

#include <stdio.h>

const char *tb_status_name(tb_status status) {
  switch (status) {
#define TB_STATUS_NAME_(name, value, text)                                     \
  case value:                                                                  \
    return #name;
    TB_STATUS_MAP(TB_STATUS_NAME_)
#undef TB_STATUS_NAME_
  }
  return "TB_ERR_UNKNOWN";
}

const char *tb_status_message(tb_status status) {
  switch (status) {
#define TB_STATUS_TEXT_(name, value, text)                                     \
  case value:                                                                  \
    return text;
    TB_STATUS_MAP(TB_STATUS_TEXT_)
#undef TB_STATUS_TEXT_
  }
  return "unknown status";
}

static _Thread_local char tb_error_text[512];
static _Thread_local int tb_error_errno;

const char *tb_last_error(void) { return tb_error_text; }

int tb_last_errno(void) { return tb_error_errno; }

static tb_status record(const char *function, tb_status status,
                        const char *message) {
  snprintf(tb_error_text, sizeof tb_error_text, "%s: %s", function, message);
  tb_error_errno = status == TB_ERR_SYSTEM ? tb_core_take_errno() : 0;
  return status;
}

tb_status tb_fail(const char *function, tb_status status, const char *format,
                  ...) {
  va_list args;
  va_start(args, format);
  g_autofree char *message = g_strdup_vprintf(format, args);
  va_end(args);
  return record(function, status, message);
}

tb_status tb_fail_with(const char *function, GError *error) {
  if (error == NULL)
    return TB_OK;
  /* Every core domain uses tb_status values as its codes. */
  tb_status status = error->code < 0 ? error->code : TB_ERR_INVALID_ARGUMENT;
  record(function, status, error->message);
  g_error_free(error);
  return status;
}

tb_status tb_options_init(const char *function, void *opts,
                          const void *defaults, size_t size, uint32_t version,
                          uint32_t latest) {
  if (size == 0)
    return tb_fail(function, TB_ERR_VERSION,
                   "version is %u; this library knows versions 1 to %u",
                   version, latest);
  memcpy(opts, defaults, size);
  return TB_OK;
}
