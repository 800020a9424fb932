/* safetensors: the header parser (untrusted input) and the writer. Above
 * tensor/ (it makes views), beside sharing/ (neither knows the other). */
#ifndef TB_SAFETENSORS_INTERNAL_H
#define TB_SAFETENSORS_INTERNAL_H

#include "tensor/tensor.h"

/* The format's own limit on the JSON header, as its reference
 * implementation enforces it. */
#define TB_SAFETENSORS_MAX_HEADER 100000000u

typedef struct TbSafetensorsEntry {
  char *name;
  tb_dtype dtype;
  size_t ndim;
  int64_t shape[TB_MAX_DIMS];
  uint64_t begin, end; /* data_offsets: bytes from the start of the data */
} TbSafetensorsEntry;

/* A parsed header: entries in the header's order, metadata likewise. */
typedef struct TbSafetensorsHeader {
  GPtrArray *entries;   /* TbSafetensorsEntry*, owned */
  GHashTable *by_name;  /* name -> entry, borrowed from entries */
  GPtrArray *meta_keys; /* char*, owned */
  GHashTable *meta;     /* key -> value, both owned */
  uint64_t data_start;  /* 8 + header length */
} TbSafetensorsHeader;

/* Parses and checks the header of a whole safetensors file image of `size`
 * bytes. Every failure names the tensor and the field. */
TbSafetensorsHeader *tb_safetensors_parse(const uint8_t *file, uint64_t size,
                                          GError **error);
void tb_safetensors_header_free(TbSafetensorsHeader *header);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(TbSafetensorsHeader, tb_safetensors_header_free)

/* The format's dtype name ("F32") of a tb_dtype. */
const char *tb_safetensors_dtype_name(tb_dtype dtype);

/* Writes `count` tensors under `names` (distinct, UTF-8, not
 * "__metadata__": the caller checked) and the metadata (NULL or key ->
 * value) to `path` by way of a temporary file in the same directory that
 * is renamed into place once complete. */
gboolean tb_safetensors_write(const char *path, size_t count,
                              const char *const *names,
                              tb_tensor *const *tensors, GHashTable *metadata,
                              GError **error);

#endif
