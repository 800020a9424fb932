/* Library-wide calls: version, live objects, dtype and memory names, option
 * defaults. */
#include "boundary.h"
#include "memory/buffer.h"

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
  for (unsigned i = 0; tb_memory_name((tb_memory)i) != NULL; i++) {
    if (g_str_equal(name, tb_memory_name((tb_memory)i))) {
      *out = (tb_memory)i;
      return TB_OK;
    }
  }
  return tb_fail(__func__, TB_ERR_INVALID_ARGUMENT,
                 "name is \"%s\", not a memory kind name", name);
}

tb_status tb_alloc_options_init(tb_alloc_options *opts, uint32_t version) {
  TB_REQUIRE(opts);
  tb_alloc_options defaults = TB_ALLOC_OPTIONS_INIT;
  defaults.version = version;
  return tb_options_init(__func__, opts, &defaults,
                         tb_alloc_options_size(version), version,
                         TB_ALLOC_OPTIONS_VERSION);
}
