/* Streaming reads of a file's byte range into a tensor: pread, with O_DIRECT
 * where the alignment allows, so that weights can be streamed through a few
 * aligned slots without mapping the file or filling the page cache. */
#include "tensor/tensor.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

/* What O_DIRECT asks of the address, offset and length. 4096 covers every
 * logical block size up to 4 KiB, which is what disks and NVMe drives use. */
#define TB_DIRECT_ALIGNMENT 4096u

/* A second open file description of `fd` with O_DIRECT, so that the caller's
 * own descriptor keeps its flags. -1 where the file system refuses it. */
static int open_direct(int fd) {
  char path[64];
  g_snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
  return open(path, O_RDONLY | O_DIRECT | O_CLOEXEC);
}

/* Reads exactly `size` bytes at `offset`. Returns 0, an errno value, or -1
 * for an end of file before the last byte. */
static int pread_all(int fd, uint8_t *dst, uint64_t size, uint64_t offset) {
  while (size > 0) {
    size_t chunk = (size_t)MIN(size, (uint64_t)1 << 30);
    ssize_t got = pread(fd, dst, chunk, (off_t)offset);
    if (got < 0 && errno == EINTR)
      continue;
    if (got < 0)
      return errno;
    if (got == 0)
      return -1;
    dst += got;
    offset += (uint64_t)got;
    size -= (uint64_t)got;
  }
  return 0;
}

/* Reads with O_DIRECT where `mode` allows it, else (or if the file system or
 * device refuses it) through the page cache; sets `mode` to what was done. */
static int read_range(int fd, uint8_t *dst, uint64_t size, uint64_t offset,
                      tb_read_mode *mode) {
  if (*mode == TB_READ_DIRECT) {
    int direct = open_direct(fd);
    if (direct >= 0) {
      int result = pread_all(direct, dst, size, offset);
      close(direct);
      /* EINVAL: the device wants more alignment than 4096; read through
       * the cache rather than fail. */
      if (result != EINVAL)
        return result;
    }
    *mode = TB_READ_NO_DIRECT_HERE;
  }
  return pread_all(fd, dst, size, offset);
}

gboolean tb_tensor_read_file_at(tb_tensor *tensor, int fd, uint64_t offset,
                                uint32_t flags, tb_read_mode *mode_out,
                                GError **error) {
  if (flags & ~TB_READ_NO_DIRECT) {
    g_set_error(error, TB_TENSOR_ERROR, TB_ERR_INVALID_ARGUMENT,
                "flags is 0x%x; unknown bits 0x%x", flags,
                flags & ~TB_READ_NO_DIRECT);
    return FALSE;
  }
  if (!tb_tensor_is_contiguous(tensor)) {
    g_set_error(error, TB_TENSOR_ERROR, TB_ERR_LAYOUT,
                "tensor is not contiguous; read into a contiguous one");
    return FALSE;
  }
  struct stat st;
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    g_set_error(error, TB_TENSOR_ERROR, TB_ERR_BAD_FD,
                "fd %d is not an open regular file", fd);
    return FALSE;
  }
  uint64_t size = tb_tensor_nbytes(tensor), end;
  if (!tb_add_u64(offset, size, &end) || end > (uint64_t)st.st_size) {
    g_set_error(error, TB_TENSOR_ERROR, TB_ERR_OUT_OF_RANGE,
                "offset %" G_GUINT64_FORMAT " + %" G_GUINT64_FORMAT
                " bytes goes past the end of fd %d (%" G_GINT64_FORMAT
                " bytes)",
                offset, size, fd, (gint64)st.st_size);
    return FALSE;
  }
  if (!tb_tensor_begin_access(tensor, TB_MAP_WRITE, error))
    return FALSE;
  uint8_t *dst = tb_tensor_base(tensor);
  gboolean aligned = (uintptr_t)dst % TB_DIRECT_ALIGNMENT == 0 &&
                     offset % TB_DIRECT_ALIGNMENT == 0 &&
                     size % TB_DIRECT_ALIGNMENT == 0;
  tb_read_mode mode = (flags & TB_READ_NO_DIRECT) ? TB_READ_BUFFERED
                      : aligned                   ? TB_READ_DIRECT
                                                  : TB_READ_UNALIGNED;
  int result = read_range(fd, dst, size, offset, &mode);
  tb_tensor_end_access(tensor, TB_MAP_WRITE);
  if (result == -1) {
    g_set_error(error, TB_TENSOR_ERROR, TB_ERR_OUT_OF_RANGE,
                "fd %d ended before byte %" G_GUINT64_FORMAT
                " (it shrank while it was read)",
                fd, end);
    return FALSE;
  }
  if (result != 0) {
    tb_set_system_error(error, TB_TENSOR_ERROR, result,
                        "pread of %" G_GUINT64_FORMAT " bytes of fd %d", size,
                        fd);
    return FALSE;
  }
  if (mode_out != NULL)
    *mode_out = mode;
  return TRUE;
}
