/* SHM: sealed memfds. Created with MFD_CLOEXEC|MFD_ALLOW_SEALING, sized, then
 * sealed against SHRINK and GROW so no holder of the fd can truncate the
 * memory under another's mapping (which would SIGBUS it). Mapped once for
 * the buffer's lifetime. */
#include "memory/buffer.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

static gboolean memfd_probe(void) {
  int fd = memfd_create("tensorbuf-probe", MFD_CLOEXEC | MFD_ALLOW_SEALING);
  /* The answer is kept for the process, so only a kernel without sealed
   * memfds or a sandbox forbidding them makes SHM absent; running out of fds
   * or memory right now must not, and each allocation reports that itself. */
  if (fd < 0)
    return errno != ENOSYS && errno != EINVAL && errno != EPERM;
  close(fd);
  return TRUE;
}

static gboolean memfd_available(void) {
  static gsize state; /* 0 unknown, 1 absent, 2 present */
  if (g_once_init_enter(&state))
    g_once_init_leave(&state, memfd_probe() ? 2 : 1);
  return state == 2;
}

/* Maps `fd` for the buffer (size 0 needs no mapping). */
static gboolean memfd_map(tb_buffer *buffer, int fd, uint64_t alignment,
                          GError **error) {
  if (buffer->size == 0) {
    buffer->data = tb_empty_bytes;
    return TRUE;
  }
  if (!tb_size_mappable(buffer->size, "shared memory", error))
    return FALSE;
  int prot = PROT_READ;
  if (!(buffer->flags & TB_BUFFER_READ_ONLY))
    prot |= PROT_WRITE;
  void *data =
      tb_mmap_aligned((size_t)buffer->size, alignment, prot, MAP_SHARED, fd,
                      buffer->fd_offset);
  if (data == MAP_FAILED && errno == ENOMEM) {
    /* No address space for it: out of memory, as for the heap. */
    g_set_error(error, TB_BACKEND_ERROR, TB_ERR_NO_MEMORY,
                "cannot map %" G_GUINT64_FORMAT " bytes of memfd %d: %s",
                buffer->size, fd, g_strerror(ENOMEM));
    return FALSE;
  }
  if (data == MAP_FAILED) {
    tb_set_system_error(error, TB_BACKEND_ERROR, errno,
                        "mmap of %" G_GUINT64_FORMAT " bytes of memfd %d",
                        buffer->size, fd);
    return FALSE;
  }
  buffer->data = data;
  buffer->mapping = data;
  buffer->mapping_size = (size_t)buffer->size;
  return TRUE;
}

static gboolean memfd_alloc(tb_buffer *buffer, const TbAllocParams *params,
                            GError **error) {
  if (buffer->size > (uint64_t)INT64_MAX) {
    g_set_error(error, TB_BACKEND_ERROR, TB_ERR_NO_MEMORY,
                "cannot allocate %" G_GUINT64_FORMAT " bytes of shared memory",
                buffer->size);
    return FALSE;
  }
  int fd = tb_memfd_create(params->name, MFD_CLOEXEC | MFD_ALLOW_SEALING);
  if (fd < 0) {
    tb_set_system_error(error, TB_BACKEND_ERROR, errno, "memfd_create");
    return FALSE;
  }
  if (ftruncate(fd, (off_t)buffer->size) != 0) {
    int errnum = errno;
    close(fd);
    if (errnum == ENOMEM || errnum == ENOSPC || errnum == EFBIG)
      g_set_error(error, TB_BACKEND_ERROR, TB_ERR_NO_MEMORY,
                  "cannot size shared memory to %" G_GUINT64_FORMAT
                  " bytes: %s",
                  buffer->size, g_strerror(errnum));
    else
      tb_set_system_error(error, TB_BACKEND_ERROR, errnum, "ftruncate");
    return FALSE;
  }
  if (fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW) != 0) {
    tb_set_system_error(error, TB_BACKEND_ERROR, errno, "sealing memfd");
    close(fd);
    return FALSE;
  }
  if (!memfd_map(buffer, fd, params->alignment, error)) {
    close(fd);
    return FALSE;
  }
  if (params->flags & TB_ALLOC_HUGE_PAGES && buffer->mapping != NULL)
    (void)madvise(buffer->mapping, buffer->mapping_size, MADV_HUGEPAGE);
  buffer->fd = fd;
  return TRUE;
}

static gboolean memfd_import(tb_buffer *buffer, int fd, GError **error) {
  if (!memfd_map(buffer, fd, 1, error))
    return FALSE;
  buffer->fd = fd;
  return TRUE;
}

static void memfd_release(tb_buffer *buffer) {
  if (buffer->mapping != NULL)
    munmap(buffer->mapping, buffer->mapping_size);
  close(buffer->fd);
}

const TbBackend tb_backend_memfd = {
    .memory = TB_MEMORY_SHM,
    .name = "shm",
    .available = memfd_available,
    .alloc = memfd_alloc,
    .import_fd = memfd_import,
    .release = memfd_release,
};
