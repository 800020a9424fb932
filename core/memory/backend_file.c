/* FILE: a read-only shared mapping of a regular file (model weights).
 *
 * A regular file cannot be sealed, so its size is only checked, never
 * guaranteed: whoever truncates it later makes readers of the lost pages
 * fault. The mapping is MAP_SHARED so that every process mapping the same
 * file shares the page cache instead of holding a private copy. Files are
 * mapped, never allocated: available() says FALSE, so tb_buffer_new refuses
 * the kind with the reason below. */
#include "memory/buffer.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/sendfile.h>
#include <sys/stat.h>
#include <unistd.h>

#ifndef F_SEAL_FUTURE_WRITE
#define F_SEAL_FUTURE_WRITE 0x0010
#endif

static gboolean file_available(void) { return FALSE; }

static const char *file_unavailable_reason(void) {
  return "file buffers are made by tb_buffer_map_file, not allocated";
}

static gboolean file_import(tb_buffer *buffer, int fd, GError **error) {
  if (buffer->size == 0) {
    buffer->data = tb_empty_bytes;
    buffer->fd = fd;
    return TRUE;
  }
  if (buffer->size > SIZE_MAX) {
    g_set_error(error, TB_BACKEND_ERROR, TB_ERR_NO_MEMORY,
                "cannot map %" G_GUINT64_FORMAT " bytes of file fd %d",
                buffer->size, fd);
    return FALSE;
  }
  void *data = mmap(NULL, (size_t)buffer->size, PROT_READ, MAP_SHARED, fd, 0);
  if (data == MAP_FAILED) {
    tb_set_system_error(error, TB_BACKEND_ERROR, errno,
                        "mmap of %" G_GUINT64_FORMAT " bytes of file fd %d",
                        buffer->size, fd);
    return FALSE;
  }
  /* The size was read before the mapping; a file that shrank in between
   * would fault on its first read, so look once more now. */
  struct stat st;
  if (fstat(fd, &st) != 0 || (uint64_t)st.st_size < buffer->size) {
    munmap(data, (size_t)buffer->size);
    g_set_error(error, TB_BACKEND_ERROR, TB_ERR_BAD_FD,
                "file fd %d shrank below %" G_GUINT64_FORMAT
                " bytes while it was mapped",
                fd, buffer->size);
    return FALSE;
  }
  buffer->data = data;
  buffer->mapping = data;
  buffer->mapping_size = (size_t)buffer->size;
  buffer->fd = fd;
  return TRUE;
}

static void file_release(tb_buffer *buffer) {
  if (buffer->mapping != NULL)
    munmap(buffer->mapping, buffer->mapping_size);
  close(buffer->fd);
}

const TbBackend tb_backend_file = {
    .memory = TB_MEMORY_FILE,
    .name = "file",
    .available = file_available,
    .unavailable_reason = file_unavailable_reason,
    .import_fd = file_import,
    .release = file_release,
};

/* Copies `size` bytes of `fd` into a new memfd sealed against every change,
 * and imports that: a peer can then trust the bytes and the size. */
static tb_buffer *sealed_copy(int fd, uint64_t size, GError **error) {
  int copy = memfd_create("tensorbuf-file", MFD_CLOEXEC | MFD_ALLOW_SEALING);
  if (copy < 0) {
    tb_set_system_error(error, TB_BACKEND_ERROR, errno, "memfd_create");
    return NULL;
  }
  if (size > (uint64_t)INT64_MAX || ftruncate(copy, (off_t)size) != 0) {
    g_set_error(error, TB_BACKEND_ERROR, TB_ERR_NO_MEMORY,
                "cannot size a memfd copy to %" G_GUINT64_FORMAT " bytes: %s",
                size, g_strerror(errno));
    close(copy);
    return NULL;
  }
  off_t in = 0;
  while ((uint64_t)in < size) {
    size_t chunk = (size_t)MIN(size - (uint64_t)in, (uint64_t)1 << 30);
    ssize_t sent = sendfile(copy, fd, &in, chunk);
    if (sent < 0 && errno == EINTR)
      continue;
    if (sent <= 0) {
      if (sent == 0)
        g_set_error(error, TB_BACKEND_ERROR, TB_ERR_BAD_FD,
                    "file fd %d ended at byte %" G_GINT64_FORMAT
                    " while %" G_GUINT64_FORMAT " were copied",
                    fd, (gint64)in, size);
      else
        tb_set_system_error(error, TB_BACKEND_ERROR, errno,
                            "copying file fd %d into a memfd", fd);
      close(copy);
      return NULL;
    }
  }
  if (fcntl(copy, F_ADD_SEALS,
            F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL) != 0) {
    tb_set_system_error(error, TB_BACKEND_ERROR, errno, "sealing the copy");
    close(copy);
    return NULL;
  }
  tb_buffer *buffer = tb_buffer_import(copy, size, error);
  close(copy);
  return buffer;
}

tb_buffer *tb_buffer_open_file(const char *path, int fd, uint32_t flags,
                               GError **error) {
  if (flags & ~TB_FILE_SEALED_COPY) {
    g_set_error(error, TB_BUFFER_ERROR, TB_ERR_INVALID_ARGUMENT,
                "flags is 0x%x; unknown bits 0x%x", flags,
                flags & ~TB_FILE_SEALED_COPY);
    return NULL;
  }
  if ((path == NULL) == (fd < 0)) {
    g_set_error(error, TB_BUFFER_ERROR, TB_ERR_INVALID_ARGUMENT,
                "give either path or fd: path is %s and fd is %d",
                path != NULL ? "set" : "NULL", fd);
    return NULL;
  }
  int opened = -1;
  if (path != NULL) {
    opened = open(path, O_RDONLY | O_CLOEXEC);
    if (opened < 0) {
      tb_set_system_error(error, TB_BUFFER_ERROR, errno, "open \"%s\"", path);
      return NULL;
    }
    fd = opened;
  }
  tb_buffer *buffer = NULL;
  struct stat st;
  if (fstat(fd, &st) != 0) {
    g_set_error(error, TB_BUFFER_ERROR, TB_ERR_BAD_FD,
                "fd %d is not an open file descriptor: %s", fd,
                g_strerror(errno));
  } else if (!S_ISREG(st.st_mode)) {
    g_set_error(error, TB_BUFFER_ERROR, TB_ERR_BAD_FD,
                "%s%s%s is not a regular file", path != NULL ? "path \"" : "fd",
                path != NULL ? path : "", path != NULL ? "\"" : "");
  } else if (flags & TB_FILE_SEALED_COPY) {
    buffer = sealed_copy(fd, (uint64_t)st.st_size, error);
  } else {
    TbFdInfo info = {.backend = &tb_backend_file,
                     .flags = TB_BUFFER_READ_ONLY,
                     .size = (uint64_t)st.st_size,
                     .size_final = FALSE,
                     .device = (uint64_t)st.st_dev,
                     .inode = (uint64_t)st.st_ino};
    buffer = tb_buffer_adopt_fd(fd, &info, error);
  }
  if (opened >= 0)
    close(opened);
  return buffer;
}
