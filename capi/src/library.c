/* Library-wide calls: version, live objects, dtype and memory names, option
 * defaults. */
#include "boundary.h"
#include "core.h"

#include <stddef.h>
#include <string.h>

uint32_t tb_version_number(void) { return TB_VERSION_NUMBER; }
const char *tb_version_string(void) { return TB_VERSION_STRING; }
int64_t tb_live_objects(void) { return tb_live_get(); }

tb_status tb_dtype_from_name(tb_dtype *out, const char *name) {
  TB_REQUIRE(out);
  TB_REQUIRE(name);
  for (unsigned i = 1; i < TB_DTYPE_F64 + 1u; i++) {
    if (g_str_equal(name, tb_dtype_name((tb_dtype)i))) {
      *out = (tb_dtype)i;
      return TB_OK;
    }
  }
  return tb_fail(__func__, TB_ERR_DTYPE, "name is \"%s\", not a dtype name",
                 name);
}

tb_status tb_memory_from_name(tb_memory *out, const char *name) {
  TB_REQUIRE(out);
  TB_REQUIRE(name);
  for (unsigned i = 0; i < TB_MEMORY_CUDA_HOST + 1u; i++) {
    if (g_str_equal(name, tb_memory_name((tb_memory)i))) {
      *out = (tb_memory)i;
      return TB_OK;
    }
  }
  return tb_fail(__func__, TB_ERR_INVALID_ARGUMENT,
                 "name is \"%s\", not a memory kind name", name);
}

/* The bytes of tb_alloc_options that each version has: a caller built with
 * an older header has a smaller struct, so only its part is written. */
static const size_t tb_alloc_options_sizes[] = {
    [1] = offsetof(tb_alloc_options, flags) + sizeof(uint32_t),
    [2] = offsetof(tb_alloc_options, device) + sizeof(uint32_t),
};

tb_status tb_alloc_options_init(tb_alloc_options *opts, uint32_t version) {
  TB_REQUIRE(opts);
  if (version < 1 || version > TB_ALLOC_OPTIONS_VERSION)
    return tb_fail(__func__, TB_ERR_VERSION,
                   "version is %u; this library knows versions 1 to %u",
                   version, TB_ALLOC_OPTIONS_VERSION);
  tb_alloc_options defaults = TB_ALLOC_OPTIONS_INIT;
  defaults.version = version;
  memcpy(opts, &defaults, tb_alloc_options_sizes[version]);
  return TB_OK;
}
