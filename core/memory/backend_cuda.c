/* CUDA and CUDA_HOST memory.
 *
 * CUDA: device memory from cuMemCreate with the POSIX-fd handle type, so
 * that it has an fd to hand to another process like SHM and DMA do. The
 * size is rounded up to the allocation granularity, reserved, mapped and
 * made readable and writable on the chosen device. The CPU reaches it
 * through a host staging copy: the first open access copies device to host,
 * every write access copies back when it ends, and the staging pages are
 * dropped when the last access closes.
 *
 * CUDA_HOST: a sealed memfd (the SHM backend's) registered with
 * cuMemHostRegister (portable, device-mapped; read-only where the memory
 * is), so the GPU copies it at full speed and kernels read it in place,
 * while it stays shareable by fd.
 *
 * Both also wrap memory someone else owns (DLPack imports). */
#include "memory/backend_cuda.h"
#include "memory/cuda_driver.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

typedef struct TbCudaMemory {
  TbCuDevicePtr address; /* device address of byte 0; 0 when empty */
  size_t mapped;         /* CUDA we allocated or imported: bytes mapped */
  TbCuMemHandle handle;  /* CUDA we allocated or imported, else 0 */
  gboolean registered;   /* CUDA_HOST we registered */
  GMutex lock;           /* guards the fields below */
  unsigned accesses;     /* open CPU accesses (CUDA staging) */
  uint64_t last_stream;  /* stream of the last asynchronous copy, or 0 */
} TbCudaMemory;

static gboolean cuda_available(void) {
  return tb_cuda_unavailable_reason() == NULL;
}

static TbCudaMemory *memory_new(void) {
  TbCudaMemory *memory = g_new0(TbCudaMemory, 1);
  g_mutex_init(&memory->lock);
  return memory;
}

static void memory_free(TbCudaMemory *memory) {
  g_mutex_clear(&memory->lock);
  g_free(memory);
}

/* ---- CUDA device memory ------------------------------------------------- */

static TbCuMemAllocationProp device_prop(uint32_t device) {
  TbCuMemAllocationProp prop = {0};
  prop.type = TB_CU_MEM_ALLOCATION_TYPE_PINNED;
  prop.requested_handle_types = TB_CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR;
  prop.location.type = TB_CU_MEM_LOCATION_TYPE_DEVICE;
  prop.location.id = (int)device;
  return prop;
}

/* Unmaps and releases what map_handle and the allocation acquired. */
static void device_unmap(const TbCudaDriver *cu, TbCudaMemory *memory) {
  if (memory->mapped > 0) {
    (void)cu->mem_unmap(memory->address, memory->mapped);
    (void)cu->mem_address_free(memory->address, memory->mapped);
  }
  if (memory->handle != 0)
    (void)cu->mem_release(memory->handle);
}

/* Reserves addresses for `mapped` bytes, maps `handle` there and lets
 * `device` read and write them. */
static gboolean map_handle(const TbCudaDriver *cu, TbCudaMemory *memory,
                           uint32_t device, size_t mapped, size_t granularity,
                           GError **error) {
  TbCuDevicePtr address = 0;
  TbCuResult result =
      cu->mem_address_reserve(&address, mapped, granularity, 0, 0);
  if (result != TB_CU_SUCCESS) {
    tb_cuda_set_error(error, result, "cuMemAddressReserve");
    return FALSE;
  }
  result = cu->mem_map(address, mapped, 0, memory->handle, 0);
  if (result != TB_CU_SUCCESS) {
    (void)cu->mem_address_free(address, mapped);
    tb_cuda_set_error(error, result, "cuMemMap");
    return FALSE;
  }
  memory->address = address;
  memory->mapped = mapped;
  TbCuMemAccessDesc access = {
      .location = {TB_CU_MEM_LOCATION_TYPE_DEVICE, (int)device},
      .flags = TB_CU_MEM_ACCESS_FLAGS_PROT_READWRITE};
  result = cu->mem_set_access(address, mapped, &access, 1);
  if (result != TB_CU_SUCCESS) {
    tb_cuda_set_error(error, result, "cuMemSetAccess");
    return FALSE;
  }
  return TRUE;
}

/* Rounds `size` up to the device's allocation granularity. */
static gboolean granular_size(const TbCudaDriver *cu, uint32_t device,
                              uint64_t size, size_t *rounded,
                              size_t *granularity, GError **error) {
  TbCuMemAllocationProp prop = device_prop(device);
  TbCuResult result = cu->mem_get_allocation_granularity(
      granularity, &prop, TB_CU_MEM_ALLOC_GRANULARITY_RECOMMENDED);
  if (result != TB_CU_SUCCESS) {
    tb_cuda_set_error(error, result, "cuMemGetAllocationGranularity");
    return FALSE;
  }
  if (*granularity == 0 || size > SIZE_MAX - *granularity) {
    g_set_error(error, TB_BACKEND_ERROR, TB_ERR_NO_MEMORY,
                "cannot allocate %" G_GUINT64_FORMAT " bytes of device memory",
                size);
    return FALSE;
  }
  *rounded = (size_t)((size + *granularity - 1) / *granularity * *granularity);
  return TRUE;
}

/* The host staging area the CPU sees (pages committed only when touched). */
static gboolean staging_map(tb_buffer *buffer, GError **error) {
  if (buffer->size == 0) {
    buffer->data = tb_empty_bytes;
    return TRUE;
  }
  void *data = mmap(NULL, (size_t)buffer->size, PROT_READ | PROT_WRITE,
                    MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (data == MAP_FAILED) {
    g_set_error(error, TB_BACKEND_ERROR, TB_ERR_NO_MEMORY,
                "cannot reserve %" G_GUINT64_FORMAT
                " bytes of host staging for device memory: %s",
                buffer->size, g_strerror(errno));
    return FALSE;
  }
  buffer->data = data;
  buffer->mapping = data;
  buffer->mapping_size = (size_t)buffer->size;
  return TRUE;
}

static gboolean cuda_alloc(tb_buffer *buffer, const TbAllocParams *params,
                           GError **error) {
  if (!tb_cuda_use_device(params->device, error))
    return FALSE;
  const TbCudaDriver *cu = tb_cuda_driver(NULL);
  buffer->cuda_device = params->device;
  TbCudaMemory *memory = memory_new();
  size_t mapped = 0, granularity = 0;
  TbCuResult result = TB_CU_SUCCESS;
  if (buffer->size > 0) {
    TbCuMemAllocationProp prop = device_prop(params->device);
    if (!granular_size(cu, params->device, buffer->size, &mapped, &granularity,
                       error))
      goto fail;
    result = cu->mem_create(&memory->handle, mapped, &prop, 0);
    if (result != TB_CU_SUCCESS) {
      memory->handle = 0;
      tb_cuda_set_error(error, result, "cuMemCreate");
      goto fail;
    }
    if (!map_handle(cu, memory, params->device, mapped, granularity, error))
      goto fail;
    /* Zeroed like every allocation; synchronised because the memset runs on
     * the legacy stream and a caller's non-blocking stream would not wait. */
    result = cu->memset_d8(memory->address, 0, mapped);
    if (result == TB_CU_SUCCESS)
      result = cu->stream_synchronize(NULL);
    if (result != TB_CU_SUCCESS) {
      tb_cuda_set_error(error, result, "zeroing the device memory");
      goto fail;
    }
    int fd = -1;
    result = cu->mem_export_to_shareable_handle(
        &fd, memory->handle, TB_CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR, 0);
    if (result != TB_CU_SUCCESS) {
      tb_cuda_set_error(error, result, "cuMemExportToShareableHandle");
      goto fail;
    }
    buffer->fd = fd;
  }
  if (!staging_map(buffer, error))
    goto fail;
  buffer->backend_data = memory;
  return TRUE;

fail:
  if (buffer->fd >= 0)
    close(buffer->fd);
  buffer->fd = -1;
  device_unmap(cu, memory);
  memory_free(memory);
  return FALSE;
}

/* The fd is a CUDA shareable handle dup'd by tb_cuda_buffer_import, and
 * buffer->cuda_device says where to map it. */
static gboolean cuda_import(tb_buffer *buffer, int fd, GError **error) {
  if (!tb_cuda_use_device(buffer->cuda_device, error))
    return FALSE;
  const TbCudaDriver *cu = tb_cuda_driver(NULL);
  TbCudaMemory *memory = memory_new();
  if (buffer->size > 0) {
    size_t mapped = 0, granularity = 0;
    if (!granular_size(cu, buffer->cuda_device, buffer->size, &mapped,
                       &granularity, error))
      goto fail;
    TbCuResult result = cu->mem_import_from_shareable_handle(
        &memory->handle, (void *)(intptr_t)fd,
        TB_CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR);
    if (result != TB_CU_SUCCESS) {
      memory->handle = 0;
      g_set_error(error, TB_BACKEND_ERROR, TB_ERR_BAD_FD,
                  "fd is not a CUDA memory handle (cuMemImportFromShareable"
                  "Handle: %d)",
                  result);
      goto fail;
    }
    GError *map_error = NULL;
    if (!map_handle(cu, memory, buffer->cuda_device, mapped, granularity,
                    &map_error)) {
      g_set_error(error, TB_BACKEND_ERROR, TB_ERR_BAD_FD,
                  "the CUDA memory behind the fd does not hold %" G_GSIZE_FORMAT
                  " bytes on device %u (%s)",
                  mapped, buffer->cuda_device, map_error->message);
      g_error_free(map_error);
      goto fail;
    }
  }
  if (!staging_map(buffer, error))
    goto fail;
  buffer->fd = fd;
  buffer->backend_data = memory;
  return TRUE;

fail:
  device_unmap(cu, memory);
  memory_free(memory);
  return FALSE;
}

static gboolean staging_copy(tb_buffer *buffer, gboolean to_host,
                             GError **error) {
  if (buffer->size == 0)
    return TRUE;
  TbCudaMemory *memory = buffer->backend_data;
  TbCuDevicePtr host = (TbCuDevicePtr)(uintptr_t)buffer->data;
  return tb_cuda_copy(to_host ? host : memory->address,
                      to_host ? memory->address : host, buffer->size,
                      buffer->cuda_device, 0, NULL, NULL, error);
}

static gboolean cuda_begin_access(tb_buffer *buffer, uint32_t map_flags,
                                  GError **error) {
  (void)map_flags; /* a write-only map still keeps the bytes it leaves */
  TbCudaMemory *memory = buffer->backend_data;
  g_mutex_lock(&memory->lock);
  gboolean ok = memory->accesses > 0 || staging_copy(buffer, TRUE, error);
  if (ok)
    memory->accesses++;
  g_mutex_unlock(&memory->lock);
  return ok;
}

static void cuda_end_access(tb_buffer *buffer, uint32_t map_flags) {
  TbCudaMemory *memory = buffer->backend_data;
  g_mutex_lock(&memory->lock);
  GError *error = NULL;
  if ((map_flags & TB_MAP_WRITE) && !staging_copy(buffer, FALSE, &error)) {
    /* end_access cannot fail; the writer learns nothing else either way. */
    g_warning("writing a map back to CUDA memory failed: %s", error->message);
    g_error_free(error);
  }
  if (--memory->accesses == 0 && buffer->mapping != NULL)
    (void)madvise(buffer->mapping, buffer->mapping_size, MADV_DONTNEED);
  g_mutex_unlock(&memory->lock);
}

static void cuda_release(tb_buffer *buffer) {
  TbCudaMemory *memory = buffer->backend_data;
  const TbCudaDriver *cu = tb_cuda_driver(NULL);
  if (buffer->mapping != NULL)
    munmap(buffer->mapping, buffer->mapping_size);
  if (buffer->fd >= 0)
    close(buffer->fd);
  device_unmap(cu, memory);
  memory_free(memory);
  if (buffer->destroy != NULL)
    buffer->destroy(buffer->user_data);
}

const TbBackend tb_backend_cuda = {
    .memory = TB_MEMORY_CUDA,
    .name = "cuda",
    .available = cuda_available,
    .unavailable_reason = tb_cuda_unavailable_reason,
    .alloc = cuda_alloc,
    .import_fd = cuda_import,
    .begin_access = cuda_begin_access,
    .end_access = cuda_end_access,
    .release = cuda_release,
};

/* ---- CUDA_HOST: registered shared memory --------------------------------- */

static gboolean host_register(tb_buffer *buffer, GError **error) {
  TbCudaMemory *memory = memory_new();
  buffer->backend_data = memory;
  if (buffer->size == 0)
    return TRUE;
  if (!tb_cuda_use_device(buffer->cuda_device, error))
    return FALSE;
  const TbCudaDriver *cu = tb_cuda_driver(NULL);
  unsigned flags =
      TB_CU_MEMHOSTREGISTER_PORTABLE | TB_CU_MEMHOSTREGISTER_DEVICEMAP;
  if (buffer->flags & TB_BUFFER_READ_ONLY)
    flags |= TB_CU_MEMHOSTREGISTER_READ_ONLY;
  TbCuResult result =
      cu->mem_host_register(buffer->mapping, buffer->mapping_size, flags);
  if (result != TB_CU_SUCCESS) {
    tb_cuda_set_error(error, result, "cuMemHostRegister");
    return FALSE;
  }
  memory->registered = TRUE;
  result = cu->mem_host_get_device_pointer(&memory->address, buffer->data, 0);
  if (result != TB_CU_SUCCESS) {
    tb_cuda_set_error(error, result, "cuMemHostGetDevicePointer");
    return FALSE;
  }
  return TRUE;
}

static void host_unregister(tb_buffer *buffer) {
  TbCudaMemory *memory = g_steal_pointer(&buffer->backend_data);
  if (memory == NULL)
    return;
  if (memory->registered)
    (void)tb_cuda_driver(NULL)->mem_host_unregister(buffer->mapping);
  memory_free(memory);
}

static gboolean cuda_host_alloc(tb_buffer *buffer, const TbAllocParams *params,
                                GError **error) {
  buffer->cuda_device = params->device;
  /* Registration pins whole pages; the memfd's mapping is page-aligned. */
  if (!tb_backend_memfd.alloc(buffer, params, error))
    return FALSE;
  if (!host_register(buffer, error)) {
    host_unregister(buffer);
    tb_backend_memfd.release(buffer);
    return FALSE;
  }
  return TRUE;
}

static gboolean cuda_host_import(tb_buffer *buffer, int fd, GError **error) {
  if (!tb_backend_memfd.import_fd(buffer, fd, error))
    return FALSE;
  if (!host_register(buffer, error)) {
    host_unregister(buffer);
    if (buffer->mapping != NULL)
      munmap(buffer->mapping, buffer->mapping_size);
    return FALSE; /* the fd stays the caller's */
  }
  return TRUE;
}

static void cuda_host_release(tb_buffer *buffer) {
  if (buffer->destroy != NULL) { /* wrapped: someone else's pinned memory */
    memory_free(buffer->backend_data);
    buffer->destroy(buffer->user_data);
    return;
  }
  host_unregister(buffer);
  tb_backend_memfd.release(buffer);
}

const TbBackend tb_backend_cuda_host = {
    .memory = TB_MEMORY_CUDA_HOST,
    .name = "cuda_host",
    .available = cuda_available,
    .unavailable_reason = tb_cuda_unavailable_reason,
    .alloc = cuda_host_alloc,
    .import_fd = cuda_host_import,
    .release = cuda_host_release,
};

/* ---- operations ---------------------------------------------------------- */

static gboolean is_cuda_kind(const tb_buffer *buffer) {
  return buffer->backend == &tb_backend_cuda ||
         buffer->backend == &tb_backend_cuda_host;
}

gboolean tb_cuda_buffer_address(const tb_buffer *buffer, uint64_t *address,
                                GError **error) {
  if (!is_cuda_kind(buffer)) {
    g_set_error(error, TB_BACKEND_ERROR, TB_ERR_UNSUPPORTED,
                "the tensor is in %s memory, which has no device address; "
                "use cuda or cuda_host memory, or tb_tensor_copy",
                buffer->backend->name);
    return FALSE;
  }
  const TbCudaMemory *memory = buffer->backend_data;
  *address = memory->address;
  return TRUE;
}

tb_buffer *tb_cuda_buffer_import(int fd, tb_memory memory, uint32_t device,
                                 uint64_t needed, GError **error) {
  if (tb_cuda_driver(error) == NULL)
    return NULL;
  if (memory == TB_MEMORY_CUDA_HOST) {
    TbFdInfo info;
    if (!tb_fd_inspect(fd, &info, error))
      return NULL;
    if (info.backend != &tb_backend_memfd) {
      g_set_error(error, TB_BACKEND_ERROR, TB_ERR_BAD_FD,
                  "fd %d is a dma-buf; cuda_host memory is a memfd", fd);
      return NULL;
    }
    if (needed > info.size) {
      g_set_error(error, TB_BACKEND_ERROR, TB_ERR_OUT_OF_RANGE,
                  "fd %d holds %" G_GUINT64_FORMAT
                  " bytes but %" G_GUINT64_FORMAT " are needed",
                  fd, info.size, needed);
      return NULL;
    }
    info.backend = &tb_backend_cuda_host;
    info.cuda_device = device;
    return tb_buffer_adopt_fd(fd, &info, error);
  }
  if (memory != TB_MEMORY_CUDA) {
    g_set_error(error, TB_BACKEND_ERROR, TB_ERR_INVALID_ARGUMENT,
                "memory is %s; expected cuda or cuda_host",
                tb_memory_name(memory) != NULL ? tb_memory_name(memory)
                                               : "not a tb_memory");
    return NULL;
  }
  int own = fcntl(fd, F_DUPFD_CLOEXEC, 3);
  if (own < 0) {
    g_set_error(error, TB_BACKEND_ERROR, TB_ERR_BAD_FD,
                "fd %d cannot be duplicated: %s", fd, g_strerror(errno));
    return NULL;
  }
  tb_buffer *buffer = tb_buffer_prepare(needed, &tb_backend_cuda, 0);
  buffer->cuda_device = device;
  if (!cuda_import(buffer, own, error)) {
    close(own);
    tb_buffer_discard(buffer);
    return NULL;
  }
  return tb_buffer_publish(buffer);
}

tb_buffer *tb_cuda_buffer_wrap(uint64_t address, uint64_t size,
                               tb_memory memory, uint32_t device,
                               uint32_t flags, GError **error) {
  if (!tb_cuda_use_device(device, error))
    return NULL;
  const TbCudaDriver *cu = tb_cuda_driver(NULL);
  TbCudaMemory *state = memory_new();
  tb_buffer *buffer = NULL;
  if (memory == TB_MEMORY_CUDA) {
    int ordinal = -1;
    if (size > 0 && (cu->pointer_get_attribute(
                         &ordinal, TB_CU_POINTER_ATTRIBUTE_DEVICE_ORDINAL,
                         address) != TB_CU_SUCCESS ||
                     ordinal != (int)device)) {
      g_set_error(error, TB_BACKEND_ERROR, TB_ERR_INVALID_ARGUMENT,
                  "address 0x%" G_GINT64_MODIFIER "x is not CUDA memory of "
                  "device %u",
                  address, device);
      memory_free(state);
      return NULL;
    }
    state->address = address;
    buffer = tb_buffer_prepare(size, &tb_backend_cuda, flags);
    if (!staging_map(buffer, error)) {
      memory_free(state);
      tb_buffer_discard(buffer);
      return NULL;
    }
  } else {
    TbCuResult result =
        size > 0 ? cu->mem_host_get_device_pointer(
                       &state->address, (void *)(uintptr_t)address, 0)
                 : TB_CU_SUCCESS;
    if (result != TB_CU_SUCCESS) {
      g_set_error(error, TB_BACKEND_ERROR, TB_ERR_INVALID_ARGUMENT,
                  "address 0x%" G_GINT64_MODIFIER "x is not pinned host "
                  "memory that CUDA knows",
                  address);
      memory_free(state);
      return NULL;
    }
    buffer = tb_buffer_prepare(size, &tb_backend_cuda_host, flags);
    buffer->data = size > 0 ? (void *)(uintptr_t)address : tb_empty_bytes;
  }
  buffer->cuda_device = device;
  buffer->backend_data = state;
  return tb_buffer_publish(buffer);
}

gboolean tb_cuda_copy(uint64_t dst, uint64_t src, uint64_t bytes,
                      uint32_t device, uint64_t stream, tb_buffer *dst_buffer,
                      tb_buffer *src_buffer, GError **error) {
  if (bytes == 0)
    return TRUE;
  if (!tb_cuda_use_device(device, error))
    return FALSE;
  const TbCudaDriver *cu = tb_cuda_driver(NULL);
  TbCuStream handle = (TbCuStream)(uintptr_t)stream;
  TbCuResult result = cu->memcpy_async(dst, src, (size_t)bytes, handle);
  if (result == TB_CU_SUCCESS && stream == 0)
    result = cu->stream_synchronize(NULL);
  if (result != TB_CU_SUCCESS) {
    tb_cuda_set_error(error, result, "cuMemcpyAsync");
    return FALSE;
  }
  tb_buffer *buffers[] = {dst_buffer, src_buffer};
  for (size_t i = 0; i < G_N_ELEMENTS(buffers); i++) {
    if (buffers[i] != NULL && is_cuda_kind(buffers[i])) {
      TbCudaMemory *memory = buffers[i]->backend_data;
      g_mutex_lock(&memory->lock);
      memory->last_stream = stream;
      g_mutex_unlock(&memory->lock);
    }
  }
  return TRUE;
}

gboolean tb_cuda_buffer_wait(tb_buffer *buffer, uint64_t stream,
                             GError **error) {
  if (!is_cuda_kind(buffer))
    return TRUE;
  TbCudaMemory *memory = buffer->backend_data;
  g_mutex_lock(&memory->lock);
  uint64_t last = memory->last_stream;
  g_mutex_unlock(&memory->lock);
  if (last == 0 || last == stream)
    return TRUE; /* nothing queued, or already in order on one stream */
  if (!tb_cuda_use_device(buffer->cuda_device, error))
    return FALSE;
  const TbCudaDriver *cu = tb_cuda_driver(NULL);
  TbCuEvent event = NULL;
  TbCuResult result = cu->event_create(&event, TB_CU_EVENT_DISABLE_TIMING);
  if (result == TB_CU_SUCCESS) {
    result = cu->event_record(event, (TbCuStream)(uintptr_t)last);
    if (result == TB_CU_SUCCESS)
      result =
          cu->stream_wait_event((TbCuStream)(uintptr_t)stream, event, 0);
    (void)cu->event_destroy(event); /* the wait keeps what it needs */
  }
  if (result != TB_CU_SUCCESS) {
    tb_cuda_set_error(error, result, "ordering the stream after the copy");
    return FALSE;
  }
  return TRUE;
}

int tb_cuda_buffer_dma_buf(const tb_buffer *buffer, GError **error) {
  if (buffer->backend != &tb_backend_cuda || buffer->size == 0) {
    g_set_error(error, TB_BACKEND_ERROR, TB_ERR_UNSUPPORTED,
                "a dma-buf is exported from non-empty cuda memory; the "
                "tensor's is %s",
                buffer->backend->name);
    return -1;
  }
  const TbCudaDriver *cu = tb_cuda_driver(error);
  if (cu == NULL || !tb_cuda_use_device(buffer->cuda_device, error))
    return -1;
  int supported = 0;
  TbCuDevice device;
  if (cu->mem_get_handle_for_address_range == NULL ||
      cu->device_get(&device, (int)buffer->cuda_device) != TB_CU_SUCCESS ||
      cu->device_get_attribute(&supported,
                               TB_CU_DEVICE_ATTRIBUTE_DMA_BUF_SUPPORTED,
                               device) != TB_CU_SUCCESS ||
      !supported) {
    g_set_error(error, TB_BACKEND_ERROR, TB_ERR_UNSUPPORTED,
                "CUDA device %u cannot export dma-bufs (the driver or the "
                "kernel lacks cuMemGetHandleForAddressRange support)",
                buffer->cuda_device);
    return -1;
  }
  const TbCudaMemory *memory = buffer->backend_data;
  int fd = -1;
  TbCuResult result = cu->mem_get_handle_for_address_range(
      &fd, memory->address, memory->mapped,
      TB_CU_MEM_RANGE_HANDLE_TYPE_DMA_BUF_FD, 0);
  if (result != TB_CU_SUCCESS) {
    tb_cuda_set_error(error, result, "cuMemGetHandleForAddressRange");
    return -1;
  }
  /* The driver's fd is not close-on-exec; ours always are. */
  (void)fcntl(fd, F_SETFD, FD_CLOEXEC);
  return fd;
}
