/* safetensors entry points: open, views, metadata, and the writer. */
#include "formats/safetensors.h"
#include "boundary.h"

struct tb_safetensors {
  tb_buffer *buffer;
  TbSafetensorsHeader *header;
};

struct tb_safetensors_writer {
  GPtrArray *names;   /* char*, owned */
  GPtrArray *tensors; /* tb_tensor*, referenced */
  GHashTable *metadata;
};

tb_status tb_safetensors_open(tb_safetensors **out, const char *path,
                              uint32_t flags) {
  TB_REQUIRE(out);
  TB_REQUIRE(path);
  GError *error = NULL;
  g_autoptr(tb_buffer) buffer = tb_buffer_open_file(path, -1, flags, &error);
  if (buffer == NULL)
    return tb_fail_with(__func__, error);
  TbSafetensorsHeader *header =
      tb_safetensors_parse(buffer->data, buffer->size, &error);
  if (header == NULL) {
    tb_status status = tb_fail(__func__, (tb_status)error->code, "\"%s\": %s",
                               path, error->message);
    g_error_free(error);
    return status;
  }
  tb_safetensors *file = g_new0(tb_safetensors, 1);
  file->buffer = g_steal_pointer(&buffer);
  file->header = header;
  tb_live_add(1);
  *out = file;
  return TB_OK;
}

void tb_safetensors_close(tb_safetensors *file) {
  if (file == NULL)
    return;
  tb_safetensors_header_free(file->header);
  tb_buffer_unref(file->buffer);
  g_free(file);
  tb_live_add(-1);
}

size_t tb_safetensors_count(const tb_safetensors *file) {
  return file != NULL ? file->header->entries->len : 0;
}

const char *tb_safetensors_name(const tb_safetensors *file, size_t index) {
  if (file == NULL || index >= file->header->entries->len)
    return NULL;
  return ((TbSafetensorsEntry *)file->header->entries->pdata[index])->name;
}

tb_status tb_safetensors_tensor(tb_tensor **out, const tb_safetensors *file,
                                const char *name) {
  TB_REQUIRE(out);
  TB_REQUIRE(file);
  TB_REQUIRE(name);
  const TbSafetensorsEntry *entry =
      g_hash_table_lookup(file->header->by_name, name);
  if (entry == NULL)
    return tb_fail(__func__, TB_ERR_INVALID_ARGUMENT,
                   "name is \"%s\", not a tensor of the file", name);
  GError *error = NULL;
  tb_tensor *tensor =
      tb_tensor_view(file->buffer, file->header->data_start + entry->begin,
                     entry->dtype, entry->ndim, entry->shape, NULL, &error);
  if (tensor == NULL)
    return tb_fail_with(__func__, error);
  tb_tensor_rename(tensor, entry->name);
  *out = tensor;
  return TB_OK;
}

size_t tb_safetensors_metadata_count(const tb_safetensors *file) {
  return file != NULL ? file->header->meta_keys->len : 0;
}

const char *tb_safetensors_metadata_key(const tb_safetensors *file,
                                        size_t index) {
  if (file == NULL || index >= file->header->meta_keys->len)
    return NULL;
  return file->header->meta_keys->pdata[index];
}

const char *tb_safetensors_metadata_value(const tb_safetensors *file,
                                          const char *key) {
  if (file == NULL || key == NULL)
    return NULL;
  return g_hash_table_lookup(file->header->meta, key);
}

tb_status tb_safetensors_writer_new(tb_safetensors_writer **out) {
  TB_REQUIRE(out);
  tb_safetensors_writer *writer = g_new0(tb_safetensors_writer, 1);
  writer->names = g_ptr_array_new_with_free_func(g_free);
  writer->tensors =
      g_ptr_array_new_with_free_func((GDestroyNotify)tb_tensor_unref);
  writer->metadata =
      g_hash_table_new_full(g_str_hash, g_str_equal, g_free, g_free);
  tb_live_add(1);
  *out = writer;
  return TB_OK;
}

void tb_safetensors_writer_free(tb_safetensors_writer *writer) {
  if (writer == NULL)
    return;
  g_ptr_array_unref(writer->names);
  g_ptr_array_unref(writer->tensors);
  g_hash_table_unref(writer->metadata);
  g_free(writer);
  tb_live_add(-1);
}

tb_status tb_safetensors_writer_add(tb_safetensors_writer *writer,
                                    const char *name, tb_tensor *tensor) {
  TB_REQUIRE(writer);
  TB_REQUIRE(name);
  TB_REQUIRE(tensor);
  gboolean repeated = FALSE;
  for (guint i = 0; i < writer->names->len; i++)
    repeated |= g_str_equal(writer->names->pdata[i], name);
  if (*name == '\0' || repeated || g_str_equal(name, "__metadata__") ||
      !g_utf8_validate(name, -1, NULL))
    return tb_fail(__func__, TB_ERR_INVALID_ARGUMENT,
                   "name \"%s\" is empty, repeated, reserved or not UTF-8",
                   name);
  g_ptr_array_add(writer->names, g_strdup(name));
  g_ptr_array_add(writer->tensors, tb_tensor_ref(tensor));
  return TB_OK;
}

tb_status tb_safetensors_writer_set_metadata(tb_safetensors_writer *writer,
                                             const char *key,
                                             const char *value) {
  TB_REQUIRE(writer);
  TB_REQUIRE(key);
  TB_REQUIRE(value);
  if (!g_utf8_validate(key, -1, NULL) || !g_utf8_validate(value, -1, NULL))
    return tb_fail(__func__, TB_ERR_INVALID_ARGUMENT,
                   "key or value of metadata \"%s\" is not UTF-8", key);
  g_hash_table_insert(writer->metadata, g_strdup(key), g_strdup(value));
  return TB_OK;
}

tb_status tb_safetensors_writer_save(tb_safetensors_writer *writer,
                                     const char *path) {
  TB_REQUIRE(writer);
  TB_REQUIRE(path);
  GError *error = NULL;
  TB_RETURN(tb_safetensors_write(path, writer->names->len,
                                 (const char *const *)writer->names->pdata,
                                 (tb_tensor *const *)writer->tensors->pdata,
                                 writer->metadata, &error),
            error);
}
