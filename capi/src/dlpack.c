/* DLPack entry points: NULL checks here, everything else in core. */
#include "tensor/dlpack.h"
#include "boundary.h"

tb_status tb_tensor_to_dlpack(tb_dlpack_managed_tensor_versioned **out,
                              tb_tensor *tensor, uint32_t flags) {
  TB_REQUIRE(out);
  TB_REQUIRE(tensor);
  GError *error = NULL;
  TB_RETURN_HANDLE(out, tb_dlpack_export_versioned(tensor, flags, &error),
                   error);
}

tb_status tb_tensor_to_dlpack_legacy(tb_dlpack_managed_tensor **out,
                                     tb_tensor *tensor) {
  TB_REQUIRE(out);
  TB_REQUIRE(tensor);
  GError *error = NULL;
  TB_RETURN_HANDLE(out, tb_dlpack_export_legacy(tensor, &error), error);
}

tb_status tb_tensor_from_dlpack(tb_tensor **out,
                                tb_dlpack_managed_tensor_versioned *managed) {
  TB_REQUIRE(out);
  TB_REQUIRE(managed);
  GError *error = NULL;
  TB_RETURN_HANDLE(out, tb_dlpack_import_versioned(managed, &error), error);
}

tb_status tb_tensor_from_dlpack_legacy(tb_tensor **out,
                                       tb_dlpack_managed_tensor *managed) {
  TB_REQUIRE(out);
  TB_REQUIRE(managed);
  GError *error = NULL;
  TB_RETURN_HANDLE(out, tb_dlpack_import_legacy(managed, &error), error);
}
