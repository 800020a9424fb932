/* DMA: DMA-BUFs from a dma-heap (/dev/dma_heap/<name>) or, failing every
 * heap, from udmabuf over a sealed memfd; and foreign dma-bufs imported by
 * fd. A buffer is mapped once for its lifetime and every CPU access is
 * bracketed with DMA_BUF_IOCTL_SYNC START/END, so that the CPU's view is
 * coherent with the devices'. A dma-buf whose exporter refuses mmap (device
 * memory) imports without a CPU address: it can be shared and exported again,
 * and the core refuses to map it. */
#include "memory/buffer.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/dma-buf.h>
#include <linux/dma-heap.h>
#include <linux/udmabuf.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#define TB_DMA_HEAP_DIR "/dev/dma_heap/"
#define TB_UDMABUF_DEVICE "/dev/udmabuf"

/* The heap a deployment names comes from the environment rather than from
 * tb_alloc_options: which heap suits is a property of the board (its device
 * tree), not of one allocation, and a new options field would need a struct
 * version bump. It is tried before these, which go from physically
 * contiguous CMA (what most display and camera engines need) to the system
 * heap. */
#define TB_DMA_HEAP_ENV "TENSORBUF_DMA_HEAP"
static const char *const tb_dma_heaps[] = {"default_cma_region", "linux,cma",
                                           "reserved", "system"};

/* The heap devices to try, in order: a GPtrArray of paths. */
static GPtrArray *heap_paths(void) {
  GPtrArray *paths = g_ptr_array_new_with_free_func(g_free);
  const char *named = g_getenv(TB_DMA_HEAP_ENV);
  if (named != NULL && *named != '\0')
    g_ptr_array_add(paths, g_strconcat(TB_DMA_HEAP_DIR, named, NULL));
  for (size_t i = 0; i < G_N_ELEMENTS(tb_dma_heaps); i++)
    g_ptr_array_add(paths, g_strconcat(TB_DMA_HEAP_DIR, tb_dma_heaps[i], NULL));
  return paths;
}

static void note_failure(GString *tried, const char *what, int errnum) {
  g_string_append_printf(tried, "%s%s (%s)", tried->len > 0 ? ", " : "", what,
                         g_strerror(errnum));
}

/* Whether some allocator can be opened; if not, what was tried, kept for
 * the error of an explicit request for DMA memory. */
typedef struct TbDmaProbe {
  gboolean available;
  char *tried;
} TbDmaProbe;

static gboolean device_opens(const char *path, GString *tried) {
  int fd = open(path, O_RDWR | O_CLOEXEC);
  if (fd < 0) {
    note_failure(tried, path, errno);
    return FALSE;
  }
  close(fd);
  return TRUE;
}

static TbDmaProbe *dma_probe_run(void) {
  TbDmaProbe *probe = g_new0(TbDmaProbe, 1);
  g_autoptr(GPtrArray) paths = heap_paths();
  g_autoptr(GString) tried = g_string_new(NULL);
  for (unsigned i = 0; i < paths->len && !probe->available; i++)
    probe->available = device_opens(paths->pdata[i], tried);
  if (!probe->available)
    probe->available = device_opens(TB_UDMABUF_DEVICE, tried);
  probe->tried = g_strdup_printf("tried %s", tried->str);
  return probe;
}

static const TbDmaProbe *dma_probe(void) {
  static TbDmaProbe *probe;
  if (g_once_init_enter(&probe))
    g_once_init_leave(&probe, dma_probe_run());
  return probe;
}

static gboolean dma_available(void) { return dma_probe()->available; }

static const char *dma_unavailable_reason(void) { return dma_probe()->tried; }

/* ---- allocation ---------------------------------------------------------- */

/* A dma-buf of `length` bytes from the heap device at `path`; -1 with errno
 * set on failure. */
static int heap_alloc_fd(const char *path, uint64_t length) {
  int heap = open(path, O_RDWR | O_CLOEXEC);
  if (heap < 0)
    return -1;
  struct dma_heap_allocation_data request = {.len = length,
                                             .fd_flags = O_RDWR | O_CLOEXEC};
  int rc = ioctl(heap, DMA_HEAP_IOCTL_ALLOC, &request);
  int saved = errno;
  close(heap);
  errno = saved;
  return rc < 0 ? -1 : (int)request.fd;
}

/* A dma-buf over a new memfd of `length` (page-rounded) bytes, which udmabuf
 * needs sealed against shrinking; -1 with errno set and `*step` naming the
 * failing step on failure. */
static int udmabuf_alloc_fd(const char *name, uint64_t length,
                            const char **step) {
  *step = TB_UDMABUF_DEVICE;
  int device = open(TB_UDMABUF_DEVICE, O_RDWR | O_CLOEXEC);
  if (device < 0)
    return -1;
  int fd = -1;
  *step = "memfd for udmabuf";
  int memfd = tb_memfd_create(name, MFD_CLOEXEC | MFD_ALLOW_SEALING);
  if (memfd >= 0 && ftruncate(memfd, (off_t)length) == 0 &&
      fcntl(memfd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW) == 0) {
    *step = "UDMABUF_CREATE";
    struct udmabuf_create request = {.memfd = (uint32_t)memfd,
                                     .flags = UDMABUF_FLAGS_CLOEXEC,
                                     .offset = 0,
                                     .size = length};
    fd = ioctl(device, UDMABUF_CREATE, &request);
  }
  int saved = errno;
  if (memfd >= 0)
    close(memfd); /* the dma-buf holds the memfd's pages */
  close(device);
  errno = saved;
  return fd;
}

/* Names the dma-buf after the tensor, as /sys/kernel/debug/dma_buf shows it.
 * Only a debugging aid: kernels without DMA_BUF_SET_NAME just leave it
 * unnamed. */
static void dma_buf_name(int fd, const char *name) {
  g_autofree char *truncated = g_strndup(name, DMA_BUF_NAME_LEN - 1);
  (void)ioctl(fd, DMA_BUF_SET_NAME, truncated);
}

static gboolean dma_map(tb_buffer *buffer, int fd, size_t length,
                        uint64_t alignment, GError **error) {
  int prot = PROT_READ;
  if (!(buffer->flags & TB_BUFFER_READ_ONLY))
    prot |= PROT_WRITE;
  void *data = tb_mmap_aligned(length, alignment, prot, MAP_SHARED, fd, 0);
  if (data == MAP_FAILED) {
    tb_set_system_error(error, TB_BACKEND_ERROR, errno,
                        "mmap of %zu bytes of dma-buf %d", length, fd);
    return FALSE;
  }
  buffer->data = data;
  buffer->mapping = data;
  buffer->mapping_size = length;
  return TRUE;
}

static gboolean dma_alloc(tb_buffer *buffer, const TbAllocParams *params,
                          GError **error) {
  uint64_t page = (uint64_t)sysconf(_SC_PAGESIZE);
  if (buffer->size > (uint64_t)INT64_MAX - page) {
    g_set_error(error, TB_BACKEND_ERROR, TB_ERR_NO_MEMORY,
                "cannot allocate %" G_GUINT64_FORMAT " bytes of DMA memory",
                buffer->size);
    return FALSE;
  }
  /* Whole pages, and at least one: a heap refuses an empty allocation. */
  uint64_t length = MAX((buffer->size + page - 1) / page * page, page);
  if (!tb_size_mappable(length, "DMA memory", error))
    return FALSE;
  const char *name = params->name != NULL ? params->name : "tensorbuf";

  g_autoptr(GPtrArray) paths = heap_paths();
  g_autoptr(GString) tried = g_string_new(NULL);
  gboolean out_of_memory = FALSE;
  int fd = -1;
  for (unsigned i = 0; i < paths->len && fd < 0; i++) {
    fd = heap_alloc_fd(paths->pdata[i], length);
    int errnum = errno;
    if (fd < 0) {
      note_failure(tried, paths->pdata[i], errnum);
      out_of_memory |= errnum == ENOMEM;
    }
  }
  if (fd < 0) {
    const char *step;
    fd = udmabuf_alloc_fd(name, length, &step);
    int errnum = errno;
    if (fd < 0) {
      note_failure(tried, step, errnum);
      out_of_memory |= errnum == ENOMEM || errnum == ENOSPC;
    }
  }
  if (fd < 0) {
    g_set_error(error, TB_BACKEND_ERROR,
                out_of_memory ? TB_ERR_NO_MEMORY : TB_ERR_UNSUPPORTED,
                "cannot allocate %" G_GUINT64_FORMAT
                " bytes of DMA memory; tried %s",
                buffer->size, tried->str);
    return FALSE;
  }
  dma_buf_name(fd, name);
  if (!dma_map(buffer, fd, (size_t)length, params->alignment, error)) {
    close(fd);
    return FALSE;
  }
  buffer->fd = fd;
  return TRUE;
}

/* ---- import, access, release --------------------------------------------- */

static gboolean dma_import(tb_buffer *buffer, int fd, GError **error) {
  if (buffer->size == 0) {
    buffer->data = tb_empty_bytes;
  } else {
    if (!tb_size_mappable(buffer->size, "dma-buf", error))
      return FALSE;
    int prot = PROT_READ;
    if (!(buffer->flags & TB_BUFFER_READ_ONLY))
      prot |= PROT_WRITE;
    void *data = mmap(NULL, (size_t)buffer->size, prot, MAP_SHARED, fd,
                      (off_t)buffer->fd_offset);
    if (data == MAP_FAILED && errno == ENOMEM) {
      g_set_error(error, TB_BACKEND_ERROR, TB_ERR_NO_MEMORY,
                  "cannot map %" G_GUINT64_FORMAT " bytes of dma-buf %d",
                  buffer->size, fd);
      return FALSE;
    }
    /* Any other refusal comes from the exporter (device memory without CPU
     * access): the buffer stays without a CPU address. */
    if (data != MAP_FAILED) {
      buffer->data = data;
      buffer->mapping = data;
      buffer->mapping_size = (size_t)buffer->size;
    }
  }
  buffer->fd = fd;
  return TRUE;
}

/* The SYNC ioctl, retried while interrupted; 0 or an errno. */
static int dma_buf_sync_ioctl(int fd, uint32_t map_flags, gboolean start) {
  struct dma_buf_sync sync = {.flags = start ? DMA_BUF_SYNC_START
                                             : DMA_BUF_SYNC_END};
  if (map_flags & TB_MAP_READ)
    sync.flags |= DMA_BUF_SYNC_READ;
  if (map_flags & TB_MAP_WRITE)
    sync.flags |= DMA_BUF_SYNC_WRITE;
  while (ioctl(fd, DMA_BUF_IOCTL_SYNC, &sync) != 0) {
    if (errno != EINTR && errno != EAGAIN)
      return errno;
  }
  return 0;
}

gboolean tb_dma_buf_sync(int fd, uint32_t map_flags, gboolean start,
                         GError **error) {
  int errnum = dma_buf_sync_ioctl(fd, map_flags, start);
  if (errnum != 0) {
    tb_set_system_error(error, TB_BACKEND_ERROR, errnum,
                        "DMA_BUF_IOCTL_SYNC %s on fd %d",
                        start ? "START" : "END", fd);
    return FALSE;
  }
  return TRUE;
}

static gboolean dma_begin_access(tb_buffer *buffer, uint32_t map_flags,
                                 GError **error) {
  return tb_dma_buf_sync(buffer->fd, map_flags, TRUE, error);
}

/* An END that fails has no caller to tell (unmap cannot fail) and leaves
 * nothing to undo: the START it closes succeeded. */
static void dma_end_access(tb_buffer *buffer, uint32_t map_flags) {
  (void)dma_buf_sync_ioctl(buffer->fd, map_flags, FALSE);
}

static void dma_release(tb_buffer *buffer) {
  if (buffer->mapping != NULL)
    munmap(buffer->mapping, buffer->mapping_size);
  close(buffer->fd);
}

const TbBackend tb_backend_dma = {
    .memory = TB_MEMORY_DMA,
    .name = "dma",
    .available = dma_available,
    .unavailable_reason = dma_unavailable_reason,
    .alloc = dma_alloc,
    .import_fd = dma_import,
    .begin_access = dma_begin_access,
    .end_access = dma_end_access,
    .release = dma_release,
};
