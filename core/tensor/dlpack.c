/* DLPack: tensors handed to and taken from other libraries without a copy.
 *
 * An export is one allocation holding the managed struct, the shape and
 * strides it points at, and a reference to the tensor inside an open CPU
 * access bracket (what a map does, without a map handle: an export is taken
 * per consumer call, so it stays one allocation), until the consumer calls
 * the deleter.
 *
 * CUDA tensors go out as kDLCUDA by their device address (the GPU owns
 * them: no CPU access is opened), CUDA_HOST ones as kDLCUDAHost.
 *
 * An import wraps the bytes the producer's layout reaches as a buffer
 * (HEAP for the CPU, CUDA or CUDA_HOST for those devices) whose
 * destroy-notify calls the producer's deleter, and views it with the
 * producer's shape and strides. */
#include "tensor/dlpack.h"
#include "memory/backend_cuda.h"

#include <string.h>

TB_DEFINE_QUARK(tb - dlpack - error - quark, tb_dlpack_error)
#define TB_DLPACK_ERROR (tb_dlpack_error_quark())

/* The DLPack type of every tb_dtype, both ways. */
static const struct {
  tb_dtype dtype;
  uint8_t code;
  uint8_t bits;
} tb_dlpack_types[] = {
    {TB_DTYPE_BOOL, TB_DLPACK_CODE_BOOL, 8},
    {TB_DTYPE_U8, TB_DLPACK_CODE_UINT, 8},
    {TB_DTYPE_I8, TB_DLPACK_CODE_INT, 8},
    {TB_DTYPE_U16, TB_DLPACK_CODE_UINT, 16},
    {TB_DTYPE_I16, TB_DLPACK_CODE_INT, 16},
    {TB_DTYPE_U32, TB_DLPACK_CODE_UINT, 32},
    {TB_DTYPE_I32, TB_DLPACK_CODE_INT, 32},
    {TB_DTYPE_U64, TB_DLPACK_CODE_UINT, 64},
    {TB_DTYPE_I64, TB_DLPACK_CODE_INT, 64},
    {TB_DTYPE_F16, TB_DLPACK_CODE_FLOAT, 16},
    {TB_DTYPE_BF16, TB_DLPACK_CODE_BFLOAT, 16},
    {TB_DTYPE_F32, TB_DLPACK_CODE_FLOAT, 32},
    {TB_DTYPE_F64, TB_DLPACK_CODE_FLOAT, 64},
};

/* ---- export ------------------------------------------------------------- */

typedef struct TbDlpackExport {
  union {
    tb_dlpack_managed_tensor_versioned versioned;
    tb_dlpack_managed_tensor legacy;
  } managed;
  tb_tensor *tensor;
  uint32_t access; /* TB_MAP_* flags of the open access bracket */
  int64_t shape[TB_MAX_DIMS];
  int64_t strides[TB_MAX_DIMS];
} TbDlpackExport;

static tb_dlpack_dtype dlpack_dtype(tb_dtype dtype) {
  for (size_t i = 0; i < G_N_ELEMENTS(tb_dlpack_types); i++) {
    if (tb_dlpack_types[i].dtype == dtype)
      return (tb_dlpack_dtype){tb_dlpack_types[i].code, tb_dlpack_types[i].bits,
                               1};
  }
  g_assert_not_reached(); /* a tensor always has a valid dtype */
}

/* Where a DLPack consumer finds the tensor: device memory by its device
 * address, everything else by its CPU address inside an open access
 * bracket (`access`, 0 when none was opened). */
static gboolean export_place(tb_tensor *tensor, uint32_t access,
                             tb_dlpack_device *device, void **data,
                             GError **error) {
  tb_memory memory = tb_tensor_memory(tensor);
  gboolean empty = tb_tensor_numel(tensor) == 0;
  if (memory == TB_MEMORY_CUDA) {
    uint64_t address = 0;
    if (!empty && !tb_tensor_device_address(tensor, &address, error))
      return FALSE;
    *device = (tb_dlpack_device){TB_DLPACK_DEVICE_CUDA,
                                 (int32_t)tensor->buffer->cuda_device};
    *data = (void *)(uintptr_t)address;
    return TRUE;
  }
  if (!tb_tensor_begin_access(tensor, access, error))
    return FALSE;
  /* Pinned memory is host memory the GPU also reaches: DLPack's
   * kDLCUDAHost, whose device id is always 0. */
  *device = (tb_dlpack_device){memory == TB_MEMORY_CUDA_HOST
                                   ? TB_DLPACK_DEVICE_CUDA_HOST
                                   : TB_DLPACK_DEVICE_CPU,
                               0};
  *data = empty ? NULL : tb_tensor_base(tensor);
  return TRUE;
}

/* Opens access to the tensor and describes it; the caller fills in the
 * managed struct. */
static TbDlpackExport *export_new(tb_tensor *tensor, gboolean read_only,
                                  tb_dlpack_tensor *dl_tensor, GError **error) {
  /* DLPack allows negative strides, but PyTorch aborts the process on one
   * (seen with torch 2.11) and ONNX Runtime refuses them: a clean refusal
   * here is better than a crash there. */
  for (size_t i = 0; i < tensor->ndim; i++) {
    if (tensor->strides[i] < 0 && tensor->shape[i] > 1) {
      g_set_error(error, TB_DLPACK_ERROR, TB_ERR_LAYOUT,
                  "strides[%zu] is %" G_GINT64_FORMAT
                  "; DLPack consumers do not take negative strides: export a "
                  "copy instead",
                  i, tensor->strides[i]);
      return NULL;
    }
  }
  uint32_t access = read_only ? TB_MAP_READ : TB_MAP_READ | TB_MAP_WRITE;
  tb_dlpack_device device;
  void *data;
  if (!export_place(tensor, access, &device, &data, error))
    return NULL;
  TbDlpackExport *export = g_new(TbDlpackExport, 1);
  export->tensor = tb_tensor_ref(tensor);
  export->access = device.device_type == TB_DLPACK_DEVICE_CUDA ? 0 : access;
  memcpy(export->shape, tensor->shape, tensor->ndim * sizeof *tensor->shape);
  memcpy(export->strides, tensor->strides,
         tensor->ndim * sizeof *tensor->strides);
  /* data points at element 0 and byte_offset is 0: what NumPy, PyTorch and
   * CuPy produce and expect; DLPack asks for NULL when empty. */
  *dl_tensor = (tb_dlpack_tensor){
      .data = data,
      .device = device,
      .ndim = (int32_t)tensor->ndim,
      .dtype = dlpack_dtype(tensor->dtype),
      .shape = export->shape,
      .strides = export->strides,
      .byte_offset = 0,
  };
  return export;
}

static void export_free(TbDlpackExport *export) {
  if (export->access != 0)
    tb_tensor_end_access(export->tensor, export->access);
  tb_tensor_unref(export->tensor);
  g_free(export);
}

static void versioned_deleter(tb_dlpack_managed_tensor_versioned *self) {
  export_free(self->manager_ctx);
}

static void legacy_deleter(tb_dlpack_managed_tensor *self) {
  export_free(self->manager_ctx);
}

tb_dlpack_managed_tensor_versioned *
tb_dlpack_export_versioned(tb_tensor *tensor, uint32_t flags, GError **error) {
  if (flags & ~TB_DLPACK_EXPORT_READ_ONLY) {
    g_set_error(error, TB_DLPACK_ERROR, TB_ERR_INVALID_ARGUMENT,
                "flags is 0x%x; unknown bits 0x%x", flags,
                flags & ~TB_DLPACK_EXPORT_READ_ONLY);
    return NULL;
  }
  gboolean read_only =
      tb_tensor_read_only(tensor) || (flags & TB_DLPACK_EXPORT_READ_ONLY);
  tb_dlpack_tensor dl_tensor;
  TbDlpackExport *export = export_new(tensor, read_only, &dl_tensor, error);
  if (export == NULL)
    return NULL;
  tb_dlpack_managed_tensor_versioned *managed = &export->managed.versioned;
  managed->version =
      (tb_dlpack_version){TB_DLPACK_MAJOR_VERSION, TB_DLPACK_MINOR_VERSION};
  managed->manager_ctx = export;
  managed->deleter = versioned_deleter;
  managed->flags = read_only ? TB_DLPACK_FLAG_READ_ONLY : 0;
  managed->dl_tensor = dl_tensor;
  return managed;
}

tb_dlpack_managed_tensor *tb_dlpack_export_legacy(tb_tensor *tensor,
                                                  GError **error) {
  if (tb_tensor_read_only(tensor)) {
    g_set_error(error, TB_DLPACK_ERROR, TB_ERR_READ_ONLY,
                "the tensor is read-only and a legacy DLPack tensor cannot say "
                "so; export it with tb_tensor_to_dlpack");
    return NULL;
  }
  tb_dlpack_tensor dl_tensor;
  TbDlpackExport *export = export_new(tensor, FALSE, &dl_tensor, error);
  if (export == NULL)
    return NULL;
  tb_dlpack_managed_tensor *managed = &export->managed.legacy;
  managed->manager_ctx = export;
  managed->deleter = legacy_deleter;
  managed->dl_tensor = dl_tensor;
  return managed;
}

/* ---- import ------------------------------------------------------------- */

static gboolean tb_dtype_from_dlpack(tb_dlpack_dtype type, tb_dtype *out,
                                     GError **error) {
  if (type.lanes == 1) {
    for (size_t i = 0; i < G_N_ELEMENTS(tb_dlpack_types); i++) {
      if (tb_dlpack_types[i].code == type.code &&
          tb_dlpack_types[i].bits == type.bits) {
        *out = tb_dlpack_types[i].dtype;
        return TRUE;
      }
    }
  }
  g_set_error(error, TB_DLPACK_ERROR, TB_ERR_DTYPE,
              "dl_tensor.dtype is {code %u, bits %u, lanes %u}; tensorbuf "
              "takes one lane of bool, (u)int 8-64, float 16-64 or bfloat16",
              type.code, type.bits, type.lanes);
  return FALSE;
}

/* The address of element 0 and the byte range [lo, hi) around it that the
 * layout reaches, all checked to lie inside the address space. */
static gboolean import_extent(const tb_dlpack_tensor *dl, size_t elem,
                              uintptr_t *first, int64_t *lo, int64_t *hi,
                              GError **error) {
  gboolean empty = FALSE;
  for (int32_t i = 0; i < dl->ndim; i++) {
    if (dl->shape[i] < 0) {
      g_set_error(error, TB_DLPACK_ERROR, TB_ERR_SHAPE,
                  "dl_tensor.shape[%d] is %" G_GINT64_FORMAT
                  "; dims must be >= 0",
                  i, dl->shape[i]);
      return FALSE;
    }
    empty |= dl->shape[i] == 0;
  }
  *first = 0;
  *lo = *hi = 0;
  if (empty)
    return TRUE;
  if (dl->data == NULL) {
    g_set_error(error, TB_DLPACK_ERROR, TB_ERR_INVALID_ARGUMENT,
                "dl_tensor.data is NULL but the tensor has elements");
    return FALSE;
  }
  int64_t row_major[TB_MAX_DIMS];
  const int64_t *strides = dl->strides;
  if (strides == NULL) {
    int64_t stride = 1;
    gboolean overflow = FALSE;
    for (int32_t i = dl->ndim; i-- > 0;) {
      row_major[i] = stride;
      overflow |= __builtin_mul_overflow(stride, dl->shape[i], &stride);
    }
    strides = overflow ? NULL : row_major;
  }
  if (strides == NULL ||
      !tb_layout_extent(elem, (size_t)dl->ndim, dl->shape, strides, lo, hi)) {
    g_set_error(error, TB_DLPACK_ERROR, TB_ERR_SHAPE,
                "dl_tensor's shape and strides span more than 2^63 bytes");
    return FALSE;
  }
  uintptr_t base = (uintptr_t)dl->data;
  if (dl->byte_offset > UINTPTR_MAX - base ||
      base + dl->byte_offset < (uint64_t)0 - (uint64_t)*lo ||
      base + dl->byte_offset > UINTPTR_MAX - (uint64_t)*hi) {
    g_set_error(error, TB_DLPACK_ERROR, TB_ERR_INVALID_ARGUMENT,
                "dl_tensor's data %p + byte_offset %" G_GUINT64_FORMAT
                " with its shape and strides wraps around the address space",
                dl->data, dl->byte_offset);
    return FALSE;
  }
  *first = base + dl->byte_offset;
  return TRUE;
}

static tb_tensor *import_tensor(const tb_dlpack_tensor *dl,
                                uint32_t buffer_flags,
                                tb_destroy_notify release, void *managed,
                                GError **error) {
  tb_memory memory;
  switch (dl->device.device_type) {
  case TB_DLPACK_DEVICE_CPU:
    memory = TB_MEMORY_HEAP;
    break;
  case TB_DLPACK_DEVICE_CUDA:
    memory = TB_MEMORY_CUDA;
    break;
  case TB_DLPACK_DEVICE_CUDA_HOST:
    memory = TB_MEMORY_CUDA_HOST;
    break;
  default:
    g_set_error(error, TB_DLPACK_ERROR, TB_ERR_UNSUPPORTED,
                "dl_tensor.device is {type %d, id %d}; tensorbuf imports CPU "
                "(%d), CUDA (%d) and CUDA host (%d) memory",
                dl->device.device_type, dl->device.device_id,
                TB_DLPACK_DEVICE_CPU, TB_DLPACK_DEVICE_CUDA,
                TB_DLPACK_DEVICE_CUDA_HOST);
    return NULL;
  }
  if (dl->device.device_id < 0 ||
      (memory != TB_MEMORY_CUDA && dl->device.device_id != 0)) {
    g_set_error(error, TB_DLPACK_ERROR, TB_ERR_INVALID_ARGUMENT,
                "dl_tensor.device.device_id is %d for device type %d",
                dl->device.device_id, dl->device.device_type);
    return NULL;
  }
  tb_dtype dtype;
  if (!tb_dtype_from_dlpack(dl->dtype, &dtype, error))
    return NULL;
  if (dl->ndim < 0 || dl->ndim > TB_MAX_DIMS) {
    g_set_error(error, TB_DLPACK_ERROR, TB_ERR_SHAPE,
                "dl_tensor.ndim is %d; a tensor has 0 to %d dims", dl->ndim,
                TB_MAX_DIMS);
    return NULL;
  }
  if (dl->ndim > 0 && dl->shape == NULL) {
    g_set_error(error, TB_DLPACK_ERROR, TB_ERR_INVALID_ARGUMENT,
                "dl_tensor.shape is NULL but ndim is %d", dl->ndim);
    return NULL;
  }
  uintptr_t first;
  int64_t lo, hi;
  if (!import_extent(dl, tb_dtype_size(dtype), &first, &lo, &hi, error))
    return NULL;
  /* The deleter is attached only once the tensor exists, so that a failure
   * below releases the buffer without deleting the producer's tensor. */
  if (!tb_backend_usable(memory)) {
    g_set_error(error, TB_DLPACK_ERROR, TB_ERR_UNSUPPORTED,
                "dl_tensor.device is {type %d, id %d}: %s",
                dl->device.device_type, dl->device.device_id,
                tb_backend_unusable_reason(memory));
    return NULL;
  }
  uint64_t size = (uint64_t)hi - (uint64_t)lo;
  void *start = hi > lo ? (void *)(first + (uintptr_t)lo) : NULL;
  g_autoptr(tb_buffer) buffer =
      memory == TB_MEMORY_HEAP
          ? tb_buffer_wrap_memory(start, size, buffer_flags, NULL, NULL, error)
          : tb_cuda_buffer_wrap((uint64_t)(uintptr_t)start, size, memory,
                                (uint32_t)dl->device.device_id, buffer_flags,
                                error);
  if (buffer == NULL)
    return NULL;
  tb_tensor *tensor =
      tb_tensor_view(buffer, (uint64_t)0 - (uint64_t)lo, dtype,
                     (size_t)dl->ndim, dl->shape, dl->strides, error);
  if (tensor == NULL)
    return NULL;
  buffer->destroy = release;
  buffer->user_data = managed;
  return tensor;
}

static void release_versioned(void *data) {
  tb_dlpack_managed_tensor_versioned *managed = data;
  if (managed->deleter != NULL)
    managed->deleter(managed);
}

static void release_legacy(void *data) {
  tb_dlpack_managed_tensor *managed = data;
  if (managed->deleter != NULL)
    managed->deleter(managed);
}

tb_tensor *
tb_dlpack_import_versioned(tb_dlpack_managed_tensor_versioned *managed,
                           GError **error) {
  if (managed->version.major != TB_DLPACK_MAJOR_VERSION) {
    g_set_error(error, TB_DLPACK_ERROR, TB_ERR_VERSION,
                "managed->version is %u.%u; tensorbuf reads DLPack %d.x",
                managed->version.major, managed->version.minor,
                TB_DLPACK_MAJOR_VERSION);
    return NULL;
  }
  uint32_t flags =
      (managed->flags & TB_DLPACK_FLAG_READ_ONLY) ? TB_BUFFER_READ_ONLY : 0;
  return import_tensor(&managed->dl_tensor, flags, release_versioned, managed,
                       error);
}

tb_tensor *tb_dlpack_import_legacy(tb_dlpack_managed_tensor *managed,
                                   GError **error) {
  return import_tensor(&managed->dl_tensor, 0, release_legacy, managed, error);
}
