/* Buffers: allocation, wrapping, fd import with kernel classification, and
 * the registry of live ids. */
#include "memory/buffer.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/magic.h>
#include <stddef.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#ifndef F_SEAL_FUTURE_WRITE
#define F_SEAL_FUTURE_WRITE 0x0010
#endif

#define TB_MAX_ALIGNMENT (1u << 30)
#define TB_HUGE_PAGE_ALIGNMENT (2u << 20)

/* Ids are never reused; the registry maps live ids to their buffers so that
 * tb_buffer_alive() can answer for a cache keyed by id. The key points at
 * the buffer's own id field. */
static GMutex tb_registry_lock;
static GHashTable *tb_registry;
static uint64_t tb_next_id = 1;

static void registry_add(tb_buffer *buffer) {
  g_mutex_lock(&tb_registry_lock);
  if (tb_registry == NULL)
    tb_registry = g_hash_table_new(g_int64_hash, g_int64_equal);
  buffer->id = tb_next_id++;
  g_hash_table_add(tb_registry, &buffer->id);
  g_mutex_unlock(&tb_registry_lock);
}

static void registry_remove(tb_buffer *buffer) {
  g_mutex_lock(&tb_registry_lock);
  g_hash_table_remove(tb_registry, &buffer->id);
  g_mutex_unlock(&tb_registry_lock);
}

bool tb_buffer_alive(uint64_t id) {
  g_mutex_lock(&tb_registry_lock);
  bool alive =
      tb_registry != NULL && g_hash_table_contains(tb_registry, (gint64 *)&id);
  g_mutex_unlock(&tb_registry_lock);
  return alive;
}

/* The end of each struct version's last field: a caller built against an
 * older header has a struct only that long. A new version is one more line
 * here (its last field) and TB_OPTIONS_LAST naming that field; the
 * assertions keep both in step with the header. */
#define TB_OPTIONS_END(field)                                                  \
  (offsetof(tb_alloc_options, field) + sizeof(((tb_alloc_options *)0)->field))
#define TB_OPTIONS_LAST device
static const size_t tb_alloc_options_sizes[] = {
    [1] = TB_OPTIONS_END(flags),
    [2] = TB_OPTIONS_END(device),
};
G_STATIC_ASSERT(G_N_ELEMENTS(tb_alloc_options_sizes) ==
                TB_ALLOC_OPTIONS_VERSION + 1);
G_STATIC_ASSERT((TB_OPTIONS_END(TB_OPTIONS_LAST) +
                 G_ALIGNOF(tb_alloc_options) - 1) /
                    G_ALIGNOF(tb_alloc_options) *
                    G_ALIGNOF(tb_alloc_options) ==
                sizeof(tb_alloc_options));

size_t tb_alloc_options_size(uint32_t version) {
  return version < G_N_ELEMENTS(tb_alloc_options_sizes)
             ? tb_alloc_options_sizes[version]
             : 0;
}

gboolean tb_alloc_options_read(tb_alloc_options *out,
                               const tb_alloc_options *opts, GError **error) {
  static const tb_alloc_options defaults = TB_ALLOC_OPTIONS_INIT;
  *out = defaults;
  if (opts == NULL)
    return TRUE;
  size_t size = tb_alloc_options_size(opts->version);
  if (size == 0) {
    g_set_error(error, TB_BUFFER_ERROR, TB_ERR_VERSION,
                "opts->version is %u; this library knows versions 1 to %u",
                opts->version, TB_ALLOC_OPTIONS_VERSION);
    return FALSE;
  }
  memcpy(out, opts, size);
  return TRUE;
}

gboolean tb_buffer_params(TbAllocParams *params,
                          const tb_alloc_options *caller_opts,
                          GError **error) {
  tb_alloc_options read;
  if (!tb_alloc_options_read(&read, caller_opts, error))
    return FALSE;
  const tb_alloc_options *opts = &read;
  if (tb_memory_name((tb_memory)opts->memory) == NULL) {
    g_set_error(error, TB_BUFFER_ERROR, TB_ERR_INVALID_ARGUMENT,
                "opts->memory is %u, not a tb_memory", opts->memory);
    return FALSE;
  }
  uint64_t alignment = opts->alignment ? opts->alignment : TB_DEFAULT_ALIGNMENT;
  if ((alignment & (alignment - 1)) != 0 || alignment > TB_MAX_ALIGNMENT) {
    g_set_error(error, TB_BUFFER_ERROR, TB_ERR_INVALID_ARGUMENT,
                "opts->alignment is %" G_GUINT64_FORMAT
                "; it must be a power of two no larger than 1 GiB",
                opts->alignment);
    return FALSE;
  }
  const uint32_t known_flags = TB_ALLOC_HUGE_PAGES | TB_ALLOC_UNINITIALIZED;
  if (opts->flags & ~known_flags) {
    g_set_error(error, TB_BUFFER_ERROR, TB_ERR_INVALID_ARGUMENT,
                "opts->flags is 0x%x; unknown bits 0x%x", opts->flags,
                opts->flags & ~known_flags);
    return FALSE;
  }
  if (opts->flags & TB_ALLOC_HUGE_PAGES)
    alignment = MAX(alignment, TB_HUGE_PAGE_ALIGNMENT);
  if (!tb_backend_resolve((tb_memory)opts->memory, &params->memory,
                          &params->automatic, error))
    return FALSE;
  params->device = opts->device;
  params->alignment = alignment;
  params->name = opts->name;
  params->flags = opts->flags;
  return TRUE;
}

tb_buffer *tb_buffer_prepare(uint64_t size, const TbBackend *backend,
                             uint32_t flags) {
  tb_buffer *buffer = g_atomic_rc_box_new0(tb_buffer);
  buffer->size = size;
  buffer->backend = backend;
  buffer->flags = flags;
  buffer->fd = -1;
  return buffer;
}

/* The identity of the file behind `fd`: device in the high half, inode in
 * the low one, which is exact while both fit 32 bits (memfds and dma-bufs
 * live on kernel-internal mounts with small device numbers); beyond that
 * the halves are mixed, and a collision needs two live files. */
static uint64_t file_key(int fd) {
  struct stat st;
  if (fstat(fd, &st) != 0)
    return 0;
  uint64_t device = (uint64_t)st.st_dev, inode = (uint64_t)st.st_ino;
  if (device <= UINT32_MAX && inode <= UINT32_MAX)
    return device << 32 | inode;
  return (device * UINT64_C(0x9e3779b97f4a7c15)) ^ inode;
}

/* Registers a fully built buffer: from here on it is a live handle. */
tb_buffer *tb_buffer_publish(tb_buffer *buffer) {
  if (buffer->fd >= 0)
    buffer->key = file_key(buffer->fd);
  registry_add(buffer);
  tb_live_add(1);
  return buffer;
}

void tb_buffer_discard(tb_buffer *buffer) { g_atomic_rc_box_release(buffer); }

static tb_buffer *buffer_alloc_kind(uint64_t size, const TbAllocParams *params,
                                    GError **error) {
  const TbBackend *backend = tb_backend_for(params->memory);
  tb_buffer *buffer = tb_buffer_prepare(size, backend, 0);
  if (!backend->alloc(buffer, params, error)) {
    g_atomic_rc_box_release(buffer);
    return NULL;
  }
  return tb_buffer_publish(buffer);
}

/* Why the calling thread's last AUTO allocation skipped kinds. */
static _Thread_local char tb_auto_skipped[512];

const char *tb_memory_auto_skipped(void) { return tb_auto_skipped; }

/* AUTO: every kind in order of preference until one allocates (a dma-heap
 * that opens can still be out of CMA), noting why each was skipped. */
static tb_buffer *buffer_alloc_auto(uint64_t size, const TbAllocParams *params,
                                    GError **error) {
  g_autoptr(GString) skipped = g_string_new(NULL);
  GError *last = NULL;
  tb_buffer *buffer = NULL;
  for (size_t i = 0; i < TB_BACKEND_AUTO_KINDS && buffer == NULL; i++) {
    TbAllocParams kind = *params;
    kind.memory = tb_backend_auto_order[i];
    const char *why;
    g_clear_error(&last);
    if (!tb_backend_usable(kind.memory))
      why = tb_backend_unusable_reason(kind.memory);
    else if ((buffer = buffer_alloc_kind(size, &kind, &last)) != NULL)
      break;
    else
      why = last->message;
    g_string_append_printf(skipped, "%s%s: %s", skipped->len > 0 ? "; " : "",
                           tb_memory_name(kind.memory), why);
  }
  g_strlcpy(tb_auto_skipped, skipped->str, sizeof tb_auto_skipped);
  if (buffer == NULL) {
    g_set_error(error, last->domain, last->code,
                "no memory kind could allocate %" G_GUINT64_FORMAT
                " bytes (%s)",
                size, skipped->str);
    g_error_free(last);
  }
  return buffer;
}

tb_buffer *tb_buffer_alloc(uint64_t size, const TbAllocParams *params,
                           GError **error) {
  return params->automatic ? buffer_alloc_auto(size, params, error)
                           : buffer_alloc_kind(size, params, error);
}

tb_buffer *tb_buffer_wrap_memory(void *data, uint64_t size, uint32_t flags,
                                 tb_destroy_notify destroy, void *user_data,
                                 GError **error) {
  if (flags & ~TB_BUFFER_READ_ONLY) {
    g_set_error(error, TB_BUFFER_ERROR, TB_ERR_INVALID_ARGUMENT,
                "flags is 0x%x; unknown bits 0x%x", flags,
                flags & ~TB_BUFFER_READ_ONLY);
    return NULL;
  }
  if (data == NULL && size > 0) {
    g_set_error(error, TB_BUFFER_ERROR, TB_ERR_INVALID_ARGUMENT,
                "data is NULL but size is %" G_GUINT64_FORMAT, size);
    return NULL;
  }
  tb_buffer *buffer = tb_buffer_prepare(size, &tb_backend_wrapped, flags);
  buffer->data = data != NULL ? data : tb_empty_bytes;
  buffer->destroy = destroy;
  buffer->user_data = user_data;
  return tb_buffer_publish(buffer);
}

static const char *describe_file_type(mode_t mode) {
  if (S_ISFIFO(mode))
    return "a pipe";
  if (S_ISDIR(mode))
    return "a directory";
  if (S_ISSOCK(mode))
    return "a socket";
  if (S_ISCHR(mode))
    return "a character device";
  if (S_ISBLK(mode))
    return "a block device";
  if (S_ISREG(mode))
    return "a regular file";
  return "a special file";
}

/* A dma-buf's size: st_size where the kernel fills it in, else
 * lseek(SEEK_END), the way the dma-buf documentation gives. Moving the file
 * offset is harmless: a dma-buf has no read or write that would use it. */
static gboolean dma_buf_size(int fd, const struct stat *st, uint64_t *size,
                             GError **error) {
  if (st->st_size > 0) {
    *size = (uint64_t)st->st_size;
    return TRUE;
  }
  off_t end = lseek(fd, 0, SEEK_END);
  if (end < 0) {
    tb_set_system_error(error, TB_BUFFER_ERROR, errno,
                        "lseek to the end of dma-buf fd %d", fd);
    return FALSE;
  }
  *size = (uint64_t)end;
  return TRUE;
}

/* A regular file that `accept` lets through as FILE memory: read-only,
 * its size read now and never guaranteed. */
static gboolean inspect_as_file(const struct stat *st, uint32_t accept,
                                TbFdInfo *info) {
  if (!(accept & TB_IMPORT_ACCEPT_FILE) || !S_ISREG(st->st_mode))
    return FALSE;
  info->backend = &tb_backend_file;
  info->flags = TB_BUFFER_READ_ONLY;
  info->size = (uint64_t)st->st_size;
  info->size_final = FALSE;
  return TRUE;
}

/* Classifies `fd` by what the kernel says it is. The seals are read before
 * the size: a memfd already sealed against shrinking then has its final
 * size, and needs neither sealing nor a second look when it is adopted.
 * Changes nothing: a failed import must leave the caller's fd as it was, so
 * a seal goes on in adopt. */
gboolean tb_fd_inspect_accepting(int fd, uint32_t accept, TbFdInfo *info,
                                 GError **error) {
  int seals = fcntl(fd, F_GET_SEALS);
  struct stat st;
  if (fstat(fd, &st) != 0) {
    g_set_error(error, TB_BUFFER_ERROR, TB_ERR_BAD_FD,
                "fd %d is not an open file descriptor: %s", fd,
                g_strerror(errno));
    return FALSE;
  }
  info->device = (uint64_t)st.st_dev;
  info->cuda_device = 0;
  info->inode = (uint64_t)st.st_ino;
  int access = fcntl(fd, F_GETFL);
  gboolean opened_read_only = access >= 0 && (access & O_ACCMODE) == O_RDONLY;
  if (seals < 0) { /* not shmem: a dma-buf has no seals */
    struct statfs fs;
    if (fstatfs(fd, &fs) == 0 && fs.f_type == DMA_BUF_MAGIC) {
      info->backend = &tb_backend_dma;
      info->flags = opened_read_only ? TB_BUFFER_READ_ONLY : 0;
      info->size_final = TRUE; /* a dma-buf's size never changes */
      return dma_buf_size(fd, &st, &info->size, error);
    }
    if (inspect_as_file(&st, accept, info))
      return TRUE;
    g_set_error(error, TB_BUFFER_ERROR, TB_ERR_BAD_FD,
                "fd %d is %s, not a memfd or dma-buf", fd,
                describe_file_type(st.st_mode));
    return FALSE;
  }
  if (!(seals & F_SEAL_SHRINK) && ((seals & F_SEAL_SEAL) || opened_read_only)) {
    /* Adding a seal needs a writable fd and no F_SEAL_SEAL. A file on tmpfs
     * is shared memory that way too, and may still come in as a file. */
    if (inspect_as_file(&st, accept, info))
      return TRUE;
    g_set_error(error, TB_BUFFER_ERROR, TB_ERR_BAD_FD,
                "fd %d is shared memory that is not sealed against "
                "shrinking and cannot be sealed (made without "
                "MFD_ALLOW_SEALING, or opened read-only); a peer could "
                "truncate it under the mapping",
                fd);
    return FALSE;
  }
  /* Only shmem memfds: a hugetlbfs memfd also answers F_GET_SEALS, but a
   * hole punched in it while the huge page pool is empty raises SIGBUS in
   * whoever reads the mapping. */
  struct statfs fs;
  if (fstatfs(fd, &fs) != 0 || fs.f_type != TMPFS_MAGIC) {
    g_set_error(error, TB_BUFFER_ERROR, TB_ERR_BAD_FD,
                "fd %d is sealable memory that is not on tmpfs (%s); only "
                "shmem memfds and dma-bufs are imported",
                fd,
                fs.f_type == HUGETLBFS_MAGIC ? "hugetlbfs" : "another file "
                                                              "system");
    return FALSE;
  }
  info->backend = &tb_backend_memfd;
  info->flags = 0;
  if (opened_read_only || (seals & (F_SEAL_WRITE | F_SEAL_FUTURE_WRITE)))
    info->flags = TB_BUFFER_READ_ONLY;
  info->size = (uint64_t)st.st_size;
  info->size_final = (seals & F_SEAL_SHRINK) != 0;
  return TRUE;
}

gboolean tb_fd_inspect(int fd, TbFdInfo *info, GError **error) {
  return tb_fd_inspect_accepting(fd, 0, info, error);
}

/* Seals a memfd against shrinking, then checks that it still holds the size
 * inspected before: only from the seal on can that size be trusted. */
static gboolean seal_memfd(int fd, uint64_t size, GError **error) {
  int seals = fcntl(fd, F_GET_SEALS);
  if (seals < 0 || (!(seals & F_SEAL_SHRINK) &&
                    fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK) != 0)) {
    g_set_error(error, TB_BUFFER_ERROR, TB_ERR_BAD_FD,
                "fd %d could not be sealed against shrinking: %s", fd,
                g_strerror(errno));
    return FALSE;
  }
  struct stat st;
  if (fstat(fd, &st) != 0 || (uint64_t)st.st_size < size) {
    g_set_error(error, TB_BUFFER_ERROR, TB_ERR_OUT_OF_RANGE,
                "fd %d shrank below %" G_GUINT64_FORMAT " bytes while it was "
                "imported",
                fd, size);
    return FALSE;
  }
  return TRUE;
}

/* A buffer over a dup of `fd` (which `info` describes) that maps `size`
 * bytes of it from `offset`. */
static tb_buffer *adopt_range(int fd, const TbFdInfo *info, uint64_t offset,
                              uint64_t size, GError **error) {
  int own = fcntl(fd, F_DUPFD_CLOEXEC, 3);
  if (own < 0) {
    tb_set_system_error(error, TB_BUFFER_ERROR, errno, "dup of fd %d", fd);
    return NULL;
  }
  /* Sealed only after the dup, so that running out of fds leaves the
   * caller's memfd unsealed. A regular file has no seals: its backend
   * checks the size again once it is mapped. */
  if (info->backend == &tb_backend_memfd && !info->size_final &&
      !seal_memfd(fd, info->size, error)) {
    close(own);
    return NULL;
  }
  tb_buffer *buffer = tb_buffer_prepare(size, info->backend, info->flags);
  buffer->fd_offset = offset;
  buffer->cuda_device = info->cuda_device;
  if (!info->backend->import_fd(buffer, own, error)) {
    close(own);
    g_atomic_rc_box_release(buffer);
    return NULL;
  }
  return tb_buffer_publish(buffer);
}

tb_buffer *tb_buffer_adopt_fd(int fd, const TbFdInfo *info, GError **error) {
  return adopt_range(fd, info, 0, info->size, error);
}

tb_buffer *tb_buffer_import_window(int fd, uint64_t offset, uint64_t length,
                                   uint64_t needed, GError **error) {
  TbFdInfo info;
  if (!tb_fd_inspect(fd, &info, error))
    return NULL;
  if (offset > info.size || needed > info.size) {
    g_set_error(error, TB_BUFFER_ERROR, TB_ERR_OUT_OF_RANGE,
                "fd %d holds %" G_GUINT64_FORMAT " bytes but %"
                G_GUINT64_FORMAT " (and bytes from %" G_GUINT64_FORMAT
                ") are needed",
                fd, info.size, needed, offset);
    return NULL;
  }
  return adopt_range(fd, &info, offset, MIN(length, info.size - offset),
                     error);
}

tb_buffer *tb_buffer_import_accepting(int fd, uint64_t needed, uint32_t accept,
                                      GError **error) {
  TbFdInfo info;
  if (!tb_fd_inspect_accepting(fd, accept, &info, error))
    return NULL;
  if (needed > info.size) {
    g_set_error(error, TB_BUFFER_ERROR, TB_ERR_OUT_OF_RANGE,
                "fd %d holds %" G_GUINT64_FORMAT " bytes but %" G_GUINT64_FORMAT
                " are needed",
                fd, info.size, needed);
    return NULL;
  }
  return tb_buffer_adopt_fd(fd, &info, error);
}

tb_buffer *tb_buffer_import(int fd, uint64_t needed, GError **error) {
  return tb_buffer_import_accepting(fd, needed, 0, error);
}

int tb_buffer_dup_fd(const tb_buffer *buffer, GError **error) {
  if (buffer->fd < 0) {
    g_set_error(error, TB_BUFFER_ERROR, TB_ERR_UNSUPPORTED,
                "%s memory has no file descriptor to export",
                buffer->backend->name);
    return -1;
  }
  int fd = fcntl(buffer->fd, F_DUPFD_CLOEXEC, 3);
  if (fd < 0)
    tb_set_system_error(error, TB_BUFFER_ERROR, errno, "dup of buffer fd");
  return fd;
}

tb_buffer *tb_buffer_ref(tb_buffer *buffer) {
  return buffer != NULL ? g_atomic_rc_box_acquire(buffer) : NULL;
}

static void buffer_clear(gpointer data) {
  tb_buffer *buffer = data;
  registry_remove(buffer);
  buffer->backend->release(buffer);
  tb_live_add(-1);
}

void tb_buffer_unref(tb_buffer *buffer) {
  if (buffer != NULL)
    g_atomic_rc_box_release_full(buffer, buffer_clear);
}

uint64_t tb_buffer_size(const tb_buffer *buffer) {
  return buffer != NULL ? buffer->size : 0;
}

tb_memory tb_buffer_memory(const tb_buffer *buffer) {
  return buffer != NULL ? buffer->backend->memory : TB_MEMORY_AUTO;
}

uint64_t tb_buffer_id(const tb_buffer *buffer) {
  return buffer != NULL ? buffer->id : 0;
}

uint64_t tb_buffer_key(const tb_buffer *buffer) {
  return buffer != NULL ? buffer->key : 0;
}

int tb_buffer_fd(const tb_buffer *buffer) {
  return buffer != NULL ? buffer->fd : -1;
}

uint64_t tb_buffer_fd_offset(const tb_buffer *buffer) {
  return buffer != NULL ? buffer->fd_offset : 0;
}

bool tb_buffer_read_only(const tb_buffer *buffer) {
  return buffer != NULL && (buffer->flags & TB_BUFFER_READ_ONLY);
}
