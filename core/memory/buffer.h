/* Buffers: refcounted bytes of one memory kind with a process-unique id. */
#ifndef TB_BUFFER_INTERNAL_H
#define TB_BUFFER_INTERNAL_H

#include "memory/backend.h"

/* Default alignment of allocations, and of image rows (what GPUs ask for). */
#define TB_DEFAULT_ALIGNMENT 64u

struct tb_buffer {
  uint64_t id;
  uint64_t size;
  const TbBackend *backend;
  uint32_t flags; /* TB_BUFFER_READ_ONLY */
  void *data;     /* CPU address of byte 0; NULL without CPU access */
  int fd;         /* -1 for memory without an fd */
  void *mapping;  /* what munmap takes, or NULL */
  size_t mapping_size;
  size_t touched; /* heap mappings: bytes from the start that may hold data */
  uint64_t key;   /* tb_buffer_key: the fd's file, 0 without an fd */
  tb_destroy_notify destroy; /* wrapped memory */
  void *user_data;
  uint32_t cuda_device; /* CUDA kinds: the device ordinal */
  void *backend_data;   /* what the backend keeps beside the bytes */
  uint64_t fd_offset;   /* where byte 0 lies in the fd's file: 0 but for an
                           import of a window (tb_buffer_import_window) */
};

/* Bytes of tb_alloc_options that struct version `version` has (its last
 * field's end), or 0 for a version this library does not know. */
size_t tb_alloc_options_size(uint32_t version);
/* Fills *out with the defaults, then copies the fields of `opts`'s version
 * over them (never more bytes than that version's struct has). */
gboolean tb_alloc_options_read(tb_alloc_options *out,
                               const tb_alloc_options *opts, GError **error);
gboolean tb_buffer_params(TbAllocParams *params, const tb_alloc_options *opts,
                          GError **error);
tb_buffer *tb_buffer_alloc(uint64_t size, const TbAllocParams *params,
                           GError **error);
tb_buffer *tb_buffer_wrap_memory(void *data, uint64_t size, uint32_t flags,
                                 tb_destroy_notify destroy, void *user_data,
                                 GError **error);
/* What the kernel says an fd is, found before anything is mapped. */
typedef struct TbFdInfo {
  const TbBackend *backend; /* memfd or dma-buf */
  uint32_t flags;           /* TB_BUFFER_READ_ONLY */
  uint64_t size;            /* bytes of the file */
  gboolean size_final;      /* sealed against shrinking before it was read */
  uint64_t device, inode;   /* the file's identity: dups share it */
  uint32_t cuda_device;     /* CUDA_HOST imports: the device to register on */
} TbFdInfo;

/* What an import accepts beyond memfds and dma-bufs. */
#define TB_IMPORT_ACCEPT_FILE                                                  \
  0x1u /* a regular file, as read-only FILE                                    \
          memory (unsealable: opt-in only) */

/* Classifies `fd` and finds its size, changing nothing. A regular file is
 * refused unless `accept` has TB_IMPORT_ACCEPT_FILE. */
gboolean tb_fd_inspect_accepting(int fd, uint32_t accept, TbFdInfo *info,
                                 GError **error);
/* tb_fd_inspect_accepting with nothing more accepted. */
gboolean tb_fd_inspect(int fd, TbFdInfo *info, GError **error);
/* A buffer over a dup of `fd`, which `info` describes (tb_fd_inspect); seals
 * a memfd against shrinking first. */
tb_buffer *tb_buffer_adopt_fd(int fd, const TbFdInfo *info, GError **error);
/* Imports a memfd or dma-buf (dup'd) whose size must hold `needed` bytes;
 * also a regular file if `accept` has TB_IMPORT_ACCEPT_FILE. A receiver
 * passes that flag only when its options allow files: a file's sender can
 * truncate it and make every reader of the mapping fault. */
tb_buffer *tb_buffer_import_accepting(int fd, uint64_t needed, uint32_t accept,
                                      GError **error);
/* tb_buffer_import_accepting with nothing more accepted. */
tb_buffer *tb_buffer_import(int fd, uint64_t needed, GError **error);
/* Imports only bytes [offset, offset + length) of a memfd or dma-buf
 * (dup'd), `offset` a whole number of pages: a buffer of those bytes (fewer
 * where the file ends first), its fd_offset `offset`. So a receiver maps
 * what a description uses, not the whole file a peer sent. Fails with
 * TB_ERR_OUT_OF_RANGE if the file holds fewer than `needed` bytes or ends
 * before `offset`. */
tb_buffer *tb_buffer_import_window(int fd, uint64_t offset, uint64_t length,
                                   uint64_t needed, GError **error);
/* A read-only FILE buffer over the whole regular file at `path` or `fd`
 * (exactly one of them), or with TB_FILE_SEALED_COPY a sealed SHM copy. */
tb_buffer *tb_buffer_open_file(const char *path, int fd, uint32_t flags,
                               GError **error);
int tb_buffer_dup_fd(const tb_buffer *buffer, GError **error);

/* For backends that make buffers from something other than options or a
 * classified fd (CUDA imports, foreign device memory): a buffer of `size`
 * bytes of `backend`'s kind that is not live yet. Fill it, then publish it
 * (it becomes a live handle) or discard it (nothing is released). */
tb_buffer *tb_buffer_prepare(uint64_t size, const TbBackend *backend,
                             uint32_t flags);
tb_buffer *tb_buffer_publish(tb_buffer *buffer);
void tb_buffer_discard(tb_buffer *buffer);

G_DEFINE_AUTOPTR_CLEANUP_FUNC(tb_buffer, tb_buffer_unref)

#endif
