/* tensorbuf — DLPack exchange: zero-copy hand-over of tensors to and from
 * NumPy, PyTorch, CuPy, JAX and any other DLPack producer or consumer.
 *
 * The structs below have the exact layout of DLPack 1.1 (dmlc/dlpack
 * dlpack.h: DLPackVersion, DLDevice, DLDataType, DLTensor, DLManagedTensor,
 * DLManagedTensorVersioned), with the same field names, under tb_dlpack_*
 * names so that they never clash with a dlpack.h the caller also includes.
 * A caller that uses the official header casts between the two, e.g.
 *
 *   tb_dlpack_managed_tensor_versioned *m;
 *   tb_tensor_to_dlpack(&m, tensor, 0);
 *   DLManagedTensorVersioned *dl = (DLManagedTensorVersioned *)m;
 *
 * The unit tests pin every size and offset to the DLPack layout. */
#ifndef TENSORBUF_DLPACK_H
#define TENSORBUF_DLPACK_H

#include "tensorbuf/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The DLPack version this header describes, and the one the library writes
 * into every versioned tensor it exports. */
#define TB_DLPACK_MAJOR_VERSION 1
#define TB_DLPACK_MINOR_VERSION 1

/* tb_dlpack_managed_tensor_versioned.flags (DLPACK_FLAG_BITMASK_*). */
#define TB_DLPACK_FLAG_READ_ONLY 0x1u /* the consumer must not write */
#define TB_DLPACK_FLAG_IS_COPIED 0x2u /* the producer made a private copy */

/* DLDeviceType values used here (the list in dlpack.h is longer). */
typedef enum tb_dlpack_device_type {
  TB_DLPACK_DEVICE_CPU = 1,
  TB_DLPACK_DEVICE_CUDA = 2,
  TB_DLPACK_DEVICE_CUDA_HOST = 3
} tb_dlpack_device_type;

/* DLDataTypeCode values used here. */
typedef enum tb_dlpack_type_code {
  TB_DLPACK_CODE_INT = 0,
  TB_DLPACK_CODE_UINT = 1,
  TB_DLPACK_CODE_FLOAT = 2,
  TB_DLPACK_CODE_BFLOAT = 4,
  TB_DLPACK_CODE_BOOL = 6
} tb_dlpack_type_code;

/* DLPackVersion. */
typedef struct tb_dlpack_version {
  uint32_t major;
  uint32_t minor;
} tb_dlpack_version;

/* DLDevice. DLPack declares device_type as an enum, which every ABI this
 * library targets stores as a 32-bit int; int32_t pins that. */
typedef struct tb_dlpack_device {
  int32_t device_type; /* a tb_dlpack_device_type */
  int32_t device_id;
} tb_dlpack_device;

/* DLDataType. */
typedef struct tb_dlpack_dtype {
  uint8_t code; /* a tb_dlpack_type_code */
  uint8_t bits;
  uint16_t lanes;
} tb_dlpack_dtype;

/* DLTensor. Element i sits at (char *)data + byte_offset + sum(i_k *
 * strides[k]) * element size. strides is in elements and may be NULL on input
 * (row-major); the library always writes it. */
typedef struct tb_dlpack_tensor {
  void *data;
  tb_dlpack_device device;
  int32_t ndim;
  tb_dlpack_dtype dtype;
  int64_t *shape;
  int64_t *strides;
  uint64_t byte_offset;
} tb_dlpack_tensor;

/* DLManagedTensor (DLPack < 1.0, the "dltensor" capsule): no version and no
 * read-only flag. */
typedef struct tb_dlpack_managed_tensor {
  tb_dlpack_tensor dl_tensor;
  void *manager_ctx;
  void (*deleter)(struct tb_dlpack_managed_tensor *self);
} tb_dlpack_managed_tensor;

/* DLManagedTensorVersioned (DLPack >= 1.0, the "dltensor_versioned"
 * capsule). */
typedef struct tb_dlpack_managed_tensor_versioned {
  tb_dlpack_version version;
  void *manager_ctx;
  void (*deleter)(struct tb_dlpack_managed_tensor_versioned *self);
  uint64_t flags; /* TB_DLPACK_FLAG_* */
  tb_dlpack_tensor dl_tensor;
} tb_dlpack_managed_tensor_versioned;

/* Flags of tb_tensor_to_dlpack. */
#define TB_DLPACK_EXPORT_READ_ONLY                                             \
  0x1u /* export read-only even if the tensor is writable */

/* ---- export ---------------------------------------------------------------
 * The exported tensor shares the tensor's memory (no copy) and holds a
 * reference to the tensor with CPU access open (as a map does), so the memory
 * stays valid, even after the caller drops the tensor, until the consumer
 * calls `deleter(self)` exactly once; the deleter may be called from any
 * thread and needs no lock. dl_tensor.data
 * is the address of element 0 (NULL for an empty tensor), byte_offset is 0,
 * strides are always set (in elements; zero strides are kept, negative ones
 * refused: PyTorch aborts on them and other consumers reject them),
 * the device is the CPU; for CUDA memory it is (kDLCUDA, ordinal) and data is
 * the device address (no CPU access is opened), for CUDA_HOST memory
 * (kDLCUDAHost, 0). Every tb_dtype has a DLPack type: bool is kDLBool/8,
 * bf16 is kDLBfloat/16. */

/* Versioned export (DLPack 1.1). flags: TB_DLPACK_EXPORT_READ_ONLY. The
 * result has TB_DLPACK_FLAG_READ_ONLY set when the tensor is read-only or the
 * flag asked for it; it is never IS_COPIED.
 * Errors: TB_ERR_INVALID_ARGUMENT (NULL out or tensor, unknown flags),
 * TB_ERR_LAYOUT (a negative stride), TB_ERR_UNSUPPORTED (memory without CPU
 * access, e.g. a dma-buf without mmap), TB_ERR_NO_MEMORY. */
TB_API tb_status tb_tensor_to_dlpack(tb_dlpack_managed_tensor_versioned **out,
                                     tb_tensor *tensor, uint32_t flags);

/* Legacy export (DLPack < 1.0) for consumers that do not speak 1.x. The
 * legacy struct cannot say "read-only", so a read-only tensor is refused
 * rather than handed over as writable memory.
 * Errors: TB_ERR_INVALID_ARGUMENT (NULL argument), TB_ERR_READ_ONLY,
 * TB_ERR_LAYOUT, TB_ERR_UNSUPPORTED, TB_ERR_NO_MEMORY. */
TB_API tb_status tb_tensor_to_dlpack_legacy(tb_dlpack_managed_tensor **out,
                                            tb_tensor *tensor);

/* ---- import ---------------------------------------------------------------
 * A new tensor (one reference, the caller's) over the producer's memory,
 * without a copy. On success the tensor owns `managed`: the library calls
 * managed->deleter(managed) (unless it is NULL) when the last tensor, view or
 * map of that memory goes, from whichever thread drops it. On failure the
 * library has not called the deleter: the caller still owns `managed` and
 * must delete it.
 * Accepted: devices kDLCPU, kDLCUDA (the data a device address of that
 * ordinal: a TB_MEMORY_CUDA tensor, CPU maps staged) and kDLCUDAHost (id 0,
 * pinned host memory: a TB_MEMORY_CUDA_HOST tensor); lanes 1 and the code/bits pairs of the 13 tb_dtype
 * values (kDLUInt/8 is u8, kDLBool/8 is bool); ndim 0..TB_MAX_DIMS; NULL
 * strides (row-major), negative or zero strides; NULL data only when the
 * tensor has no elements. The memory is wrapped (no fd): HEAP on the CPU.
 * Errors: TB_ERR_INVALID_ARGUMENT (NULL out or managed, NULL shape with ndim
 * > 0, NULL data with elements, a layout that wraps around the address
 * space), TB_ERR_VERSION (versioned: major version not 1),
 * TB_ERR_UNSUPPORTED (another device, or CUDA memory without a driver; a
 * CUDA address the driver does not know is TB_ERR_INVALID_ARGUMENT, as is
 * a device id other than 0 for CPU memory), TB_ERR_DTYPE (type not
 * listed above), TB_ERR_SHAPE (negative ndim or dim, ndim > TB_MAX_DIMS, size
 * overflows). */

/* Versioned import. TB_DLPACK_FLAG_READ_ONLY gives a read-only tensor. */
TB_API tb_status tb_tensor_from_dlpack(
    tb_tensor **out, tb_dlpack_managed_tensor_versioned *managed);

/* Legacy import; the tensor is writable. */
TB_API tb_status tb_tensor_from_dlpack_legacy(
    tb_tensor **out, tb_dlpack_managed_tensor *managed);

#ifdef __cplusplus
}
#endif

#endif /* TENSORBUF_DLPACK_H */
