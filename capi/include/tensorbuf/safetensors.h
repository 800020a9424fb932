/* tensorbuf — safetensors files: open as zero-copy read-only views, save.
 *
 * A safetensors file is an 8-byte little-endian header length N, N bytes
 * of JSON giving each tensor's dtype, shape and data_offsets (plus optional
 * "__metadata__" strings), then the tensors' bytes. tb_safetensors_open maps
 * the file once (tb_buffer_map_file) and checks the whole header, which is
 * untrusted input, before anything is handed out; every tensor is then a
 * read-only view of the mapping. The warning of file.h applies: pass
 * TB_FILE_SEALED_COPY when an untrusted process can truncate the file. */
#ifndef TENSORBUF_SAFETENSORS_H
#define TENSORBUF_SAFETENSORS_H

#include "tensorbuf/file.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct tb_safetensors tb_safetensors;
typedef struct tb_safetensors_writer tb_safetensors_writer;

/* Opens and checks the file at `path`. flags: TB_FILE_SEALED_COPY (views
 * over a sealed memfd copy instead of the file). The handle is the caller's;
 * tensors taken from it stay valid after tb_safetensors_close.
 * Errors: TB_ERR_INVALID_ARGUMENT (NULL out or path, unknown flags; a header
 * that is not JSON, not an object, or has a field of the wrong type),
 * TB_ERR_DTYPE (a dtype tensorbuf does not have, e.g. F8_E4M3),
 * TB_ERR_SHAPE (a negative, non-integer or overflowing dim, > TB_MAX_DIMS),
 * TB_ERR_OUT_OF_RANGE (header length beyond 100000000 or the file;
 * data_offsets outside the data, of the wrong length, or overlapping),
 * TB_ERR_BAD_FD, TB_ERR_SYSTEM, TB_ERR_NO_MEMORY. Every message names the
 * tensor and the field. Thread-safe. */
TB_API tb_status tb_safetensors_open(tb_safetensors **out, const char *path,
                                     uint32_t flags);
/* Frees the handle; NULL is a no-op. */
TB_API void tb_safetensors_close(tb_safetensors *file);

/* Number of tensors (0 for NULL). */
TB_API size_t tb_safetensors_count(const tb_safetensors *file);
/* Name of tensor `index` in the header's order; NULL out of range. The
 * string belongs to the handle. */
TB_API const char *tb_safetensors_name(const tb_safetensors *file,
                                       size_t index);
/* A new read-only view (the caller's reference) of the tensor `name`,
 * named after it. Errors: TB_ERR_INVALID_ARGUMENT (NULL argument, no such
 * tensor). Thread-safe. */
TB_API tb_status tb_safetensors_tensor(tb_tensor **out,
                                       const tb_safetensors *file,
                                       const char *name);
/* "__metadata__": number of entries, key `index` in the header's order
 * (NULL out of range), value of `key` (NULL if absent). Strings belong to
 * the handle. */
TB_API size_t tb_safetensors_metadata_count(const tb_safetensors *file);
TB_API const char *tb_safetensors_metadata_key(const tb_safetensors *file,
                                               size_t index);
TB_API const char *tb_safetensors_metadata_value(const tb_safetensors *file,
                                                 const char *key);

/* A writer collects tensors and metadata, then saves them in one go. Not
 * thread-safe. Errors: TB_ERR_INVALID_ARGUMENT (NULL out). */
TB_API tb_status tb_safetensors_writer_new(tb_safetensors_writer **out);
/* Frees the writer and its references; NULL is a no-op. */
TB_API void tb_safetensors_writer_free(tb_safetensors_writer *writer);
/* Adds `tensor` (the writer takes a reference) under `name` (copied).
 * Errors: TB_ERR_INVALID_ARGUMENT (NULL argument; a name that is empty of
 * UTF-8, repeated or "__metadata__"). */
TB_API tb_status tb_safetensors_writer_add(tb_safetensors_writer *writer,
                                           const char *name, tb_tensor *tensor);
/* Sets metadata `key` to `value` (both copied, UTF-8; a later call for the
 * same key replaces the value). Errors: TB_ERR_INVALID_ARGUMENT. */
TB_API tb_status tb_safetensors_writer_set_metadata(
    tb_safetensors_writer *writer, const char *key, const char *value);
/* Writes the file: tensors sorted by element size (largest first) then by
 * name, so each starts aligned to its element size; the header padded with
 * spaces to a multiple of 8; written to a temporary file beside `path`,
 * fsync'd and renamed into place, so `path` never holds half a file.
 * Errors: TB_ERR_INVALID_ARGUMENT (NULL argument), TB_ERR_SYSTEM (I/O;
 * nothing is left under `path` or the temporary name), TB_ERR_NO_MEMORY,
 * TB_ERR_UNSUPPORTED (memory without CPU access). */
TB_API tb_status tb_safetensors_writer_save(tb_safetensors_writer *writer,
                                            const char *path);

#ifdef __cplusplus
}
#endif

#endif /* TENSORBUF_SAFETENSORS_H */
