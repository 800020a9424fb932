/* The CUDA driver API, loaded at run time.
 *
 * libcuda.so.1 is dlopen'd on first use and every entry point below is
 * resolved once, so tensorbuf builds without the CUDA toolkit and runs
 * without a driver. The few types and constants are written out here with
 * the values of cuda.h (they are ABI of the driver and never change). */
#ifndef TB_CUDA_DRIVER_H
#define TB_CUDA_DRIVER_H

#include "core.h"

typedef int TbCuResult; /* CUresult; 0 is CUDA_SUCCESS */
typedef int TbCuDevice;
typedef struct TbCuContext *TbCuContext;
typedef struct TbCuStream *TbCuStream;
typedef struct TbCuEvent *TbCuEvent;
typedef unsigned long long TbCuDevicePtr;
typedef unsigned long long TbCuMemHandle; /* CUmemGenericAllocationHandle */

#define TB_CU_SUCCESS 0

/* CUmemLocation, CUmemAllocationProp, CUmemAccessDesc */
typedef struct TbCuMemLocation {
  int type; /* CU_MEM_LOCATION_TYPE_DEVICE = 1 */
  int id;
} TbCuMemLocation;

typedef struct TbCuMemAllocationProp {
  int type;                   /* CU_MEM_ALLOCATION_TYPE_PINNED = 1 */
  int requested_handle_types; /* CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR */
  TbCuMemLocation location;
  void *win32_handle_meta_data;
  struct {
    unsigned char compression_type;
    unsigned char gpu_direct_rdma_capable;
    unsigned short usage;
    unsigned char reserved[4];
  } alloc_flags;
} TbCuMemAllocationProp;

typedef struct TbCuMemAccessDesc {
  TbCuMemLocation location;
  int flags; /* CU_MEM_ACCESS_FLAGS_PROT_READWRITE = 3 */
} TbCuMemAccessDesc;

#define TB_CU_MEM_LOCATION_TYPE_DEVICE 1
#define TB_CU_MEM_ALLOCATION_TYPE_PINNED 1
#define TB_CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR 1
#define TB_CU_MEM_ACCESS_FLAGS_PROT_READWRITE 3
#define TB_CU_MEM_ALLOC_GRANULARITY_RECOMMENDED 1
#define TB_CU_MEMHOSTREGISTER_PORTABLE 0x01u
#define TB_CU_MEMHOSTREGISTER_DEVICEMAP 0x02u
#define TB_CU_MEMHOSTREGISTER_READ_ONLY 0x08u
#define TB_CU_DEVICE_ATTRIBUTE_VIRTUAL_MEMORY_MANAGEMENT_SUPPORTED 102
#define TB_CU_DEVICE_ATTRIBUTE_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR_SUPPORTED 103
#define TB_CU_DEVICE_ATTRIBUTE_DMA_BUF_SUPPORTED 124
#define TB_CU_POINTER_ATTRIBUTE_DEVICE_ORDINAL 9
#define TB_CU_MEM_RANGE_HANDLE_TYPE_DMA_BUF_FD 1
#define TB_CU_EVENT_DISABLE_TIMING 0x2u
/* The v2 memory operations' attribute (93 is the v1 one, 0 unless a
 * module parameter enables them). */
#define TB_CU_DEVICE_ATTRIBUTE_CAN_USE_64_BIT_STREAM_MEM_OPS_V2 122
#define TB_CU_STREAM_WAIT_VALUE_GEQ 0x0u
#define TB_CU_STREAM_WRITE_VALUE_DEFAULT 0x0u

/* The entry points, each with the signature cuda.h gives it. */
typedef struct TbCudaDriver {
  TbCuResult (*init)(unsigned int flags);
  TbCuResult (*get_error_name)(TbCuResult result, const char **name);
  TbCuResult (*device_get_count)(int *count);
  TbCuResult (*device_get)(TbCuDevice *device, int ordinal);
  TbCuResult (*device_get_attribute)(int *value, int attribute,
                                     TbCuDevice device);
  TbCuResult (*primary_ctx_retain)(TbCuContext *context, TbCuDevice device);
  TbCuResult (*ctx_set_current)(TbCuContext context);
  TbCuResult (*mem_get_allocation_granularity)(
      size_t *granularity, const TbCuMemAllocationProp *prop, int option);
  TbCuResult (*mem_create)(TbCuMemHandle *handle, size_t size,
                           const TbCuMemAllocationProp *prop,
                           unsigned long long flags);
  TbCuResult (*mem_release)(TbCuMemHandle handle);
  TbCuResult (*mem_address_reserve)(TbCuDevicePtr *ptr, size_t size,
                                    size_t alignment, TbCuDevicePtr address,
                                    unsigned long long flags);
  TbCuResult (*mem_address_free)(TbCuDevicePtr ptr, size_t size);
  TbCuResult (*mem_map)(TbCuDevicePtr ptr, size_t size, size_t offset,
                        TbCuMemHandle handle, unsigned long long flags);
  TbCuResult (*mem_unmap)(TbCuDevicePtr ptr, size_t size);
  TbCuResult (*mem_set_access)(TbCuDevicePtr ptr, size_t size,
                               const TbCuMemAccessDesc *desc, size_t count);
  TbCuResult (*mem_export_to_shareable_handle)(void *shareable,
                                               TbCuMemHandle handle,
                                               int handle_type,
                                               unsigned long long flags);
  TbCuResult (*mem_import_from_shareable_handle)(TbCuMemHandle *handle,
                                                 void *os_handle,
                                                 int handle_type);
  TbCuResult (*memset_d8)(TbCuDevicePtr ptr, unsigned char value, size_t n);
  TbCuResult (*memcpy_async)(TbCuDevicePtr dst, TbCuDevicePtr src,
                             size_t bytes, TbCuStream stream);
  TbCuResult (*stream_synchronize)(TbCuStream stream);
  TbCuResult (*event_create)(TbCuEvent *event, unsigned int flags);
  TbCuResult (*event_record)(TbCuEvent event, TbCuStream stream);
  TbCuResult (*event_destroy)(TbCuEvent event);
  TbCuResult (*stream_wait_event)(TbCuStream stream, TbCuEvent event,
                                  unsigned int flags);
  TbCuResult (*mem_host_register)(void *ptr, size_t bytes, unsigned int flags);
  TbCuResult (*mem_host_unregister)(void *ptr);
  TbCuResult (*mem_host_get_device_pointer)(TbCuDevicePtr *ptr, void *host,
                                            unsigned int flags);
  TbCuResult (*pointer_get_attribute)(void *data, int attribute,
                                      TbCuDevicePtr ptr);
  /* Optional (CUDA 11.7+): NULL where the driver lacks them. */
  TbCuResult (*mem_get_handle_for_address_range)(void *handle,
                                                 TbCuDevicePtr ptr,
                                                 size_t size, int handle_type,
                                                 unsigned long long flags);
  TbCuResult (*stream_write_value64)(TbCuStream stream, TbCuDevicePtr address,
                                     uint64_t value, unsigned int flags);
  TbCuResult (*stream_wait_value64)(TbCuStream stream, TbCuDevicePtr address,
                                    uint64_t value, unsigned int flags);
  TbCuResult (*launch_host_func)(TbCuStream stream, void (*fn)(void *data),
                                 void *data);
} TbCudaDriver;

/* The loaded driver with cuInit done, or NULL with a TB_ERR_UNSUPPORTED
 * error saying what is missing (no libcuda.so.1, an entry point, cuInit's
 * error). Loads once per process; thread-safe. The library
 * TENSORBUF_LIBCUDA names (a test driver) is loaded instead of libcuda.so.1
 * when set. */
const TbCudaDriver *tb_cuda_driver(GError **error);

/* Why the driver is not usable, or NULL once it loaded. */
const char *tb_cuda_unavailable_reason(void);

/* How many CUDA devices this process sees, or -1 with TB_ERR_UNSUPPORTED
 * (no driver) or TB_ERR_SYSTEM. */
int tb_cuda_device_count(GError **error);

/* Makes device `ordinal`'s primary context current on the calling thread,
 * retaining it the first time (kept for the life of the process). Fails with
 * TB_ERR_INVALID_ARGUMENT for an ordinal the machine does not have. */
gboolean tb_cuda_use_device(uint32_t ordinal, GError **error);

/* Sets a TB_ERR_SYSTEM error for a failed driver call: "<what>: <name>". */
void tb_cuda_set_error(GError **error, TbCuResult result, const char *what);

#endif /* TB_CUDA_DRIVER_H */
