/* dtype facts: sizes and names. */
#include "core.h"

static const char *const tb_dtype_names[] = {
    [TB_DTYPE_BOOL] = "bool", [TB_DTYPE_U8] = "u8",     [TB_DTYPE_I8] = "i8",
    [TB_DTYPE_U16] = "u16",   [TB_DTYPE_I16] = "i16",   [TB_DTYPE_U32] = "u32",
    [TB_DTYPE_I32] = "i32",   [TB_DTYPE_U64] = "u64",   [TB_DTYPE_I64] = "i64",
    [TB_DTYPE_F16] = "f16",   [TB_DTYPE_BF16] = "bf16", [TB_DTYPE_F32] = "f32",
    [TB_DTYPE_F64] = "f64",
};

const char *tb_dtype_name(tb_dtype dtype) {
  return (unsigned)dtype < G_N_ELEMENTS(tb_dtype_names) ? tb_dtype_names[dtype]
                                                        : NULL;
}

size_t tb_dtype_size(tb_dtype dtype) {
  switch (dtype) {
  case TB_DTYPE_BOOL:
  case TB_DTYPE_U8:
  case TB_DTYPE_I8:
    return 1;
  case TB_DTYPE_U16:
  case TB_DTYPE_I16:
  case TB_DTYPE_F16:
  case TB_DTYPE_BF16:
    return 2;
  case TB_DTYPE_U32:
  case TB_DTYPE_I32:
  case TB_DTYPE_F32:
    return 4;
  case TB_DTYPE_U64:
  case TB_DTYPE_I64:
  case TB_DTYPE_F64:
    return 8;
  case TB_DTYPE_INVALID:
    break;
  }
  return 0;
}

gboolean tb_dtype_is_integer(tb_dtype dtype) {
  return dtype >= TB_DTYPE_U8 && dtype <= TB_DTYPE_I64;
}
