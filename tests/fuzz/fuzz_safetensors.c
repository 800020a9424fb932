/* libFuzzer target: the safetensors header parser on arbitrary file images.
 * Whatever the bytes, parsing must end in a header or an error with a
 * message, never a crash, a hang or a leak; a header it accepts must have
 * every tensor inside the data area. */
#include "formats/safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  GError *error = NULL;
  TbSafetensorsHeader *header = tb_safetensors_parse(data, size, &error);
  if (header == NULL) {
    if (error == NULL || error->message[0] == '\0')
      __builtin_trap(); /* a failure must say why */
    g_error_free(error);
    return 0;
  }
  for (guint i = 0; i < header->entries->len; i++) {
    const TbSafetensorsEntry *entry = header->entries->pdata[i];
    if (entry->begin > entry->end ||
        header->data_start + entry->end > (uint64_t)size)
      __builtin_trap();
  }
  tb_safetensors_header_free(header);
  return 0;
}
