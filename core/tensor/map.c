/* CPU maps. A map holds a reference to its tensor, so the pointer it gives
 * cannot outlive the memory. Heap and memfd buffers stay mapped for their
 * lifetime, so mapping is bookkeeping only. */
#include "tensor/tensor.h"

struct tb_map {
  tb_tensor *tensor; /* NULL once unmapped */
  uint32_t flags;
};

tb_map *tb_map_create(tb_tensor *tensor, uint32_t flags, GError **error) {
  if (flags == 0 || (flags & ~(TB_MAP_READ | TB_MAP_WRITE))) {
    g_set_error(error, TB_TENSOR_ERROR, TB_ERR_INVALID_ARGUMENT,
                "flags is 0x%x; expected TB_MAP_READ, TB_MAP_WRITE or both",
                flags);
    return NULL;
  }
  if (!tb_tensor_begin_access(tensor, flags, error))
    return NULL;
  tb_map *map = g_new(tb_map, 1);
  map->tensor = tb_tensor_ref(tensor);
  map->flags = flags;
  tb_live_add(1);
  return map;
}

void *tb_map_data(const tb_map *map) {
  return map != NULL && map->tensor != NULL ? tb_tensor_base(map->tensor)
                                            : NULL;
}

uint32_t tb_map_flags(const tb_map *map) {
  return map != NULL && map->tensor != NULL ? map->flags : 0;
}

tb_tensor *tb_map_tensor(const tb_map *map) {
  return map != NULL ? map->tensor : NULL;
}

void tb_map_unmap(tb_map *map) {
  if (map == NULL || map->tensor == NULL)
    return;
  tb_tensor_end_access(map->tensor, map->flags);
  tb_tensor_unref(g_steal_pointer(&map->tensor));
}

void tb_map_free(tb_map *map) {
  if (map == NULL)
    return;
  tb_map_unmap(map);
  g_free(map);
  tb_live_add(-1);
}
