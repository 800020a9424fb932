/* A real foreign dma-buf: CUDA device memory exported with
 * cuMemGetHandleForAddressRange(CU_MEM_RANGE_HANDLE_TYPE_DMA_BUF_FD) and
 * imported with tb_tensor_import_fd. Checks that it is classified as DMA,
 * that its size is enforced, that its fd exports again as the same dma-buf,
 * and that CPU access is either refused cleanly (TB_ERR_UNSUPPORTED: the
 * exporter has no mmap, as NVIDIA's does not) or, where the exporter allows
 * mmap, reads the bytes the GPU wrote. Then the same for an NV12 image whose
 * two planes lie in that dma-buf.
 *
 * libcuda.so.1 is loaded with dlopen and the few driver API declarations it
 * needs are written out here, so this builds without the CUDA toolkit.
 * Exit status: 0 passed, 1 failed, 77 skipped (no libcuda, no GPU, or no
 * dma-buf export on this driver), each skip with its reason on stderr. */
#include "tensorbuf/tensorbuf.h"

#include <dlfcn.h>
#include <inttypes.h>
#include <linux/magic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#define SKIP 77

/* ---- the CUDA driver API, declared as cuda.h does ------------------------ */

typedef int CUresult; /* CUDA_SUCCESS = 0 */
typedef int CUdevice;
typedef struct CUctx_st *CUcontext;
typedef unsigned long long CUdeviceptr;
#define CUDA_SUCCESS 0
#define CU_DEVICE_ATTRIBUTE_DMA_BUF_SUPPORTED 124
#define CU_MEM_RANGE_HANDLE_TYPE_DMA_BUF_FD 1

static struct {
  CUresult (*init)(unsigned int);
  CUresult (*device_get)(CUdevice *, int);
  CUresult (*device_attribute)(int *, int, CUdevice);
  CUresult (*primary_ctx_retain)(CUcontext *, CUdevice);
  CUresult (*primary_ctx_release)(CUdevice);
  CUresult (*ctx_set_current)(CUcontext);
  CUresult (*mem_alloc)(CUdeviceptr *, size_t);
  CUresult (*mem_free)(CUdeviceptr);
  CUresult (*memset_d8)(CUdeviceptr, unsigned char, size_t);
  CUresult (*handle_for_range)(void *, CUdeviceptr, size_t, int,
                               unsigned long long);
  CUresult (*error_string)(CUresult, const char **);
} cu;

/* Loads every entry point; NULL, or the name of the first one missing. */
static const char *load_cuda(void) {
  void *lib = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
  if (lib == NULL)
    return "libcuda.so.1";
  static const struct {
    const char *name;
    size_t offset;
  } symbols[] = {
#define SYMBOL(field, name) {name, offsetof(__typeof__(cu), field)}
      SYMBOL(init, "cuInit"),
      SYMBOL(device_get, "cuDeviceGet"),
      SYMBOL(device_attribute, "cuDeviceGetAttribute"),
      SYMBOL(primary_ctx_retain, "cuDevicePrimaryCtxRetain"),
      SYMBOL(primary_ctx_release, "cuDevicePrimaryCtxRelease_v2"),
      SYMBOL(ctx_set_current, "cuCtxSetCurrent"),
      SYMBOL(mem_alloc, "cuMemAlloc_v2"),
      SYMBOL(mem_free, "cuMemFree_v2"),
      SYMBOL(memset_d8, "cuMemsetD8_v2"),
      SYMBOL(handle_for_range, "cuMemGetHandleForAddressRange"),
      SYMBOL(error_string, "cuGetErrorString"),
#undef SYMBOL
  };
  for (size_t i = 0; i < sizeof symbols / sizeof *symbols; i++) {
    void *entry = dlsym(lib, symbols[i].name);
    if (entry == NULL)
      return symbols[i].name;
    memcpy((char *)&cu + symbols[i].offset, &entry, sizeof entry);
  }
  return NULL;
}

static const char *cu_error(CUresult rc) {
  const char *text = NULL;
  return cu.error_string(rc, &text) == CUDA_SUCCESS && text ? text : "?";
}

/* ---- checks -------------------------------------------------------------- */

static int failures;

#define CHECK(cond)                                                            \
  do {                                                                         \
    if (!(cond)) {                                                             \
      fprintf(stderr, "FAIL %s:%d: %s\n", __FILE__, __LINE__, #cond);          \
      failures++;                                                              \
    }                                                                          \
  } while (0)

/* `call` must return `want`; prints tb_last_error() when it does not. */
#define CHECK_STATUS(call, want)                                               \
  do {                                                                         \
    tb_status got_ = (call);                                                   \
    if (got_ != (want)) {                                                      \
      fprintf(stderr, "FAIL %s:%d: %s gave %s, expected %s: %s\n", __FILE__,   \
              __LINE__, #call, tb_status_name(got_), tb_status_name(want),     \
              tb_last_error());                                                \
      failures++;                                                              \
    }                                                                          \
  } while (0)

static int is_dma_buf(int fd) {
  struct statfs fs;
  return fstatfs(fd, &fs) == 0 && fs.f_type == DMA_BUF_MAGIC;
}

static int same_file(int a, int b) {
  struct stat sa, sb;
  return fstat(a, &sa) == 0 && fstat(b, &sb) == 0 && sa.st_dev == sb.st_dev &&
         sa.st_ino == sb.st_ino;
}

/* CPU access to `t`: a clean refusal, or (exporter with mmap) the bytes the
 * GPU wrote. */
static void check_cpu_access(tb_tensor *t, uint8_t written) {
  tb_map *map = NULL;
  tb_status status = tb_tensor_map(&map, t, TB_MAP_READ);
  if (status == TB_ERR_UNSUPPORTED) {
    printf("  CPU map refused: %s\n", tb_last_error());
    return;
  }
  CHECK_STATUS(status, TB_OK);
  if (status != TB_OK)
    return;
  printf("  the exporter allows mmap: checking the bytes the GPU wrote\n");
  const uint8_t *bytes = tb_map_data(map);
  uint64_t n = tb_tensor_nbytes(t);
  CHECK(bytes[0] == written && bytes[n - 1] == written);
  tb_map_free(map);
}

static void check_import(int fd, size_t size) {
  printf("tensor over the dma-buf (%zu bytes)\n", size);
  const int64_t shape[] = {(int64_t)size}, too_big[] = {(int64_t)size + 1};
  tb_tensor *t = NULL;
  CHECK_STATUS(tb_tensor_import_fd(&t, fd, TB_DTYPE_U8, 1, too_big, 0),
               TB_ERR_OUT_OF_RANGE);
  CHECK(t == NULL);
  CHECK_STATUS(tb_tensor_import_fd(&t, fd, TB_DTYPE_U8, 1, shape, 0), TB_OK);
  if (t == NULL)
    return;
  CHECK(tb_tensor_memory(t) == TB_MEMORY_DMA);
  int again = -1;
  CHECK_STATUS(tb_tensor_export_fd(&again, t), TB_OK);
  CHECK(again >= 0 && is_dma_buf(again) && same_file(again, fd));
  check_cpu_access(t, 0xA5);
  if (again >= 0) {
    /* The exported fd imports again, into a second buffer of the same
     * dma-buf. */
    tb_tensor *twin = NULL;
    CHECK_STATUS(tb_tensor_import_fd(&twin, again, TB_DTYPE_U8, 1, shape, 0),
                 TB_OK);
    CHECK(tb_tensor_memory(twin) == TB_MEMORY_DMA);
    tb_tensor_unref(twin);
    close(again);
  }
  tb_tensor_unref(t);
}

/* A 1024x512 NV12 image with both planes in the dma-buf. */
static void check_image_import(int fd) {
  printf("NV12 image over the dma-buf\n");
  const int fds[] = {fd, fd};
  const uint64_t offsets[] = {0, 1024 * 512}, strides[] = {1024, 1024};
  tb_tensor *image = NULL;
  CHECK_STATUS(tb_image_import(&image, 1024, 512, TB_PIXEL_FORMAT_NV12, 2, fds,
                               offsets, strides),
               TB_OK);
  if (image == NULL)
    return;
  CHECK(tb_tensor_memory(image) == TB_MEMORY_DMA);
  CHECK(tb_tensor_dim(image, 0) == 768 && tb_tensor_dim(image, 1) == 1024);
  tb_tensor *chroma = NULL;
  CHECK_STATUS(tb_image_plane(&chroma, image, 1), TB_OK);
  if (chroma != NULL)
    check_cpu_access(chroma, 0xA5);
  int plane_fd = -1;
  CHECK_STATUS(tb_image_export_plane_fd(&plane_fd, image, 1), TB_OK);
  CHECK(plane_fd >= 0 && same_file(plane_fd, fd));
  if (plane_fd >= 0)
    close(plane_fd);
  tb_tensor_unref(chroma);
  tb_tensor_unref(image);
}

int main(void) {
  const char *missing = load_cuda();
  if (missing != NULL) {
    fprintf(stderr, "SKIP: %s is not available\n", missing);
    return SKIP;
  }
  CUdevice device;
  CUcontext context;
  CUresult rc = cu.init(0);
  if (rc == CUDA_SUCCESS)
    rc = cu.device_get(&device, 0);
  if (rc != CUDA_SUCCESS) {
    fprintf(stderr, "SKIP: no CUDA device: %s\n", cu_error(rc));
    return SKIP;
  }
  int dma_buf_supported = 0;
  cu.device_attribute(&dma_buf_supported, CU_DEVICE_ATTRIBUTE_DMA_BUF_SUPPORTED,
                      device);
  if (!dma_buf_supported) {
    fprintf(stderr, "SKIP: CU_DEVICE_ATTRIBUTE_DMA_BUF_SUPPORTED is 0 (the "
                    "driver needs the open kernel modules)\n");
    return SKIP;
  }
  if (cu.primary_ctx_retain(&context, device) != CUDA_SUCCESS ||
      cu.ctx_set_current(context) != CUDA_SUCCESS) {
    fprintf(stderr, "FAIL: cannot make a CUDA context\n");
    return 1;
  }
  const size_t size = 2u << 20; /* page-aligned, as the export needs */
  CUdeviceptr memory = 0;
  rc = cu.mem_alloc(&memory, size);
  if (rc == CUDA_SUCCESS)
    rc = cu.memset_d8(memory, 0xA5, size);
  if (rc != CUDA_SUCCESS) {
    fprintf(stderr, "FAIL: cuMemAlloc/cuMemsetD8: %s\n", cu_error(rc));
    return 1;
  }
  int fd = -1;
  rc = cu.handle_for_range(&fd, memory, size,
                           CU_MEM_RANGE_HANDLE_TYPE_DMA_BUF_FD, 0);
  if (rc != CUDA_SUCCESS) {
    fprintf(stderr, "SKIP: cuMemGetHandleForAddressRange(DMA_BUF_FD): %s\n",
            cu_error(rc));
    cu.mem_free(memory);
    return SKIP;
  }
  CHECK(is_dma_buf(fd));
  int64_t live_before = tb_live_objects();
  check_import(fd, size);
  check_image_import(fd);
  CHECK(tb_live_objects() == live_before);
  close(fd);
  cu.mem_free(memory);
  cu.primary_ctx_release(device);
  printf("cuda_dmabuf: %s\n", failures ? "FAILED" : "passed");
  return failures ? 1 : 0;
}
