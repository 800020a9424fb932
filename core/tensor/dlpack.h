/* DLPack export and import (the public structs are in tensorbuf/dlpack.h). */
#ifndef TB_DLPACK_INTERNAL_H
#define TB_DLPACK_INTERNAL_H

#include "tensor/tensor.h"

/* Zero-copy exports that hold `tensor`, with CPU access open, until their
 * deleter. */
tb_dlpack_managed_tensor_versioned *
tb_dlpack_export_versioned(tb_tensor *tensor, uint32_t flags, GError **error);
tb_dlpack_managed_tensor *tb_dlpack_export_legacy(tb_tensor *tensor,
                                                  GError **error);

/* Tensors over a producer's memory that call its deleter when the memory's
 * last reference goes; on failure the deleter has not been called. */
tb_tensor *
tb_dlpack_import_versioned(tb_dlpack_managed_tensor_versioned *managed,
                           GError **error);
tb_tensor *tb_dlpack_import_legacy(tb_dlpack_managed_tensor *managed,
                                   GError **error);

#endif
