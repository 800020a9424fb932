/* Run-time loading of the CUDA driver (libcuda.so.1). Nothing of CUDA is
 * linked or included: a machine without a driver runs everything else, and
 * the CUDA memory kinds say why they are absent. */
#include "memory/cuda_driver.h"

#include <dlfcn.h>
#include <stddef.h>
#include <string.h>

#define TB_CU_ERROR_OUT_OF_MEMORY 2

static TbCudaDriver tb_cuda;
static char *tb_cuda_missing; /* why loading failed; NULL once loaded */
static GMutex tb_cuda_devices_lock;
static GHashTable *tb_cuda_contexts; /* ordinal -> TbCuContext */

static const struct {
  const char *name;
  size_t offset;
  gboolean optional;
} tb_cuda_symbols[] = {
#define REQUIRED(field, name) {name, offsetof(TbCudaDriver, field), FALSE}
#define OPTIONAL(field, name) {name, offsetof(TbCudaDriver, field), TRUE}
    REQUIRED(init, "cuInit"),
    REQUIRED(get_error_name, "cuGetErrorName"),
    REQUIRED(device_get_count, "cuDeviceGetCount"),
    REQUIRED(device_get, "cuDeviceGet"),
    REQUIRED(device_get_attribute, "cuDeviceGetAttribute"),
    REQUIRED(primary_ctx_retain, "cuDevicePrimaryCtxRetain"),
    REQUIRED(ctx_set_current, "cuCtxSetCurrent"),
    REQUIRED(mem_get_allocation_granularity, "cuMemGetAllocationGranularity"),
    REQUIRED(mem_create, "cuMemCreate"),
    REQUIRED(mem_release, "cuMemRelease"),
    REQUIRED(mem_address_reserve, "cuMemAddressReserve"),
    REQUIRED(mem_address_free, "cuMemAddressFree"),
    REQUIRED(mem_map, "cuMemMap"),
    REQUIRED(mem_unmap, "cuMemUnmap"),
    REQUIRED(mem_set_access, "cuMemSetAccess"),
    REQUIRED(mem_export_to_shareable_handle, "cuMemExportToShareableHandle"),
    REQUIRED(mem_import_from_shareable_handle,
             "cuMemImportFromShareableHandle"),
    REQUIRED(memset_d8, "cuMemsetD8_v2"),
    REQUIRED(memcpy_async, "cuMemcpyAsync"),
    REQUIRED(stream_synchronize, "cuStreamSynchronize"),
    REQUIRED(event_create, "cuEventCreate"),
    REQUIRED(event_record, "cuEventRecord"),
    REQUIRED(event_destroy, "cuEventDestroy_v2"),
    REQUIRED(stream_wait_event, "cuStreamWaitEvent"),
    REQUIRED(mem_host_register, "cuMemHostRegister_v2"),
    REQUIRED(mem_host_unregister, "cuMemHostUnregister"),
    REQUIRED(mem_host_get_device_pointer, "cuMemHostGetDevicePointer_v2"),
    REQUIRED(pointer_get_attribute, "cuPointerGetAttribute"),
    OPTIONAL(mem_get_handle_for_address_range,
             "cuMemGetHandleForAddressRange"),
    /* The _v2 stream memory operations: the ones CUDA 12 headers call,
     * without the v1 ones' module-parameter requirement. */
    OPTIONAL(stream_write_value64, "cuStreamWriteValue64_v2"),
    OPTIONAL(stream_wait_value64, "cuStreamWaitValue64_v2"),
    OPTIONAL(launch_host_func, "cuLaunchHostFunc"),
#undef REQUIRED
#undef OPTIONAL
};

static const char *result_name(TbCuResult result) {
  const char *name = NULL;
  if (tb_cuda.get_error_name == NULL ||
      tb_cuda.get_error_name(result, &name) != TB_CU_SUCCESS || name == NULL)
    return "an unknown CUDA error";
  return name;
}

/* Fills tb_cuda, or returns why it cannot (the handle stays loaded: the
 * driver is process-wide state that is never unloaded). */
static char *load_driver(void) {
  const char *path = g_getenv("TENSORBUF_LIBCUDA");
  if (path == NULL || *path == '\0')
    path = "libcuda.so.1";
  void *library = dlopen(path, RTLD_NOW | RTLD_LOCAL);
  if (library == NULL)
    return g_strdup_printf("the CUDA driver %s could not be loaded: %s", path,
                           dlerror());
  for (size_t i = 0; i < G_N_ELEMENTS(tb_cuda_symbols); i++) {
    void *entry = dlsym(library, tb_cuda_symbols[i].name);
    if (entry == NULL && !tb_cuda_symbols[i].optional) {
      memset(&tb_cuda, 0, sizeof tb_cuda);
      return g_strdup_printf("the CUDA driver %s has no %s (too old)", path,
                             tb_cuda_symbols[i].name);
    }
    memcpy((char *)&tb_cuda + tb_cuda_symbols[i].offset, &entry, sizeof entry);
  }
  TbCuResult result = tb_cuda.init(0);
  if (result != TB_CU_SUCCESS)
    return g_strdup_printf("cuInit failed: %s", result_name(result));
  int count = 0;
  if (tb_cuda.device_get_count(&count) != TB_CU_SUCCESS || count == 0)
    return g_strdup("the CUDA driver sees no GPU");
  return NULL;
}

static gboolean driver_loaded(void) {
  static gsize state; /* 0 unknown, 1 absent, 2 present */
  if (g_once_init_enter(&state)) {
    tb_cuda_missing = load_driver();
    g_once_init_leave(&state, tb_cuda_missing == NULL ? 2 : 1);
  }
  return state == 2;
}

const TbCudaDriver *tb_cuda_driver(GError **error) {
  if (driver_loaded())
    return &tb_cuda;
  g_set_error(error, TB_BACKEND_ERROR, TB_ERR_UNSUPPORTED, "%s",
              tb_cuda_missing);
  return NULL;
}

const char *tb_cuda_unavailable_reason(void) {
  return driver_loaded() ? NULL : tb_cuda_missing;
}

void tb_cuda_set_error(GError **error, TbCuResult result, const char *what) {
  g_set_error(error, TB_BACKEND_ERROR,
              result == TB_CU_ERROR_OUT_OF_MEMORY ? TB_ERR_NO_MEMORY
                                                  : TB_ERR_SYSTEM,
              "%s: %s", what, result_name(result));
}

int tb_cuda_device_count(GError **error) {
  const TbCudaDriver *cu = tb_cuda_driver(error);
  if (cu == NULL)
    return -1;
  int count = 0;
  TbCuResult result = cu->device_get_count(&count);
  if (result != TB_CU_SUCCESS) {
    tb_cuda_set_error(error, result, "cuDeviceGetCount");
    return -1;
  }
  return count;
}

gboolean tb_cuda_use_device(uint32_t ordinal, GError **error) {
  const TbCudaDriver *cu = tb_cuda_driver(error);
  if (cu == NULL)
    return FALSE;
  g_mutex_lock(&tb_cuda_devices_lock);
  if (tb_cuda_contexts == NULL)
    tb_cuda_contexts = g_hash_table_new(NULL, NULL);
  TbCuContext context = g_hash_table_lookup(tb_cuda_contexts,
                                            GUINT_TO_POINTER(ordinal + 1));
  if (context == NULL) {
    int count = tb_cuda_device_count(error);
    if (count >= 0 && ordinal >= (uint32_t)count)
      g_set_error(error, TB_BACKEND_ERROR, TB_ERR_INVALID_ARGUMENT,
                  "device is %u; this machine has %d CUDA device%s", ordinal,
                  count, count == 1 ? "" : "s");
    if (count < 0 || ordinal >= (uint32_t)count) {
      g_mutex_unlock(&tb_cuda_devices_lock);
      return FALSE;
    }
    TbCuDevice device;
    TbCuResult result = cu->device_get(&device, (int)ordinal);
    if (result == TB_CU_SUCCESS)
      result = cu->primary_ctx_retain(&context, device);
    if (result != TB_CU_SUCCESS) {
      g_mutex_unlock(&tb_cuda_devices_lock);
      tb_cuda_set_error(error, result, "retaining the device's context");
      return FALSE;
    }
    g_hash_table_insert(tb_cuda_contexts, GUINT_TO_POINTER(ordinal + 1),
                        context);
  }
  g_mutex_unlock(&tb_cuda_devices_lock);
  TbCuResult result = cu->ctx_set_current(context);
  if (result != TB_CU_SUCCESS) {
    tb_cuda_set_error(error, result, "cuCtxSetCurrent");
    return FALSE;
  }
  return TRUE;
}
