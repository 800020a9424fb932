#include <stdio.h>
#include <tensorbuf/tensorbuf.h>

int main(void) {
  const int64_t shape[] = {2, 3}; /* 2 rows of 3 floats */
  tb_tensor *tensor = NULL;
  tb_map *map = NULL;
  if (tb_tensor_new(&tensor, TB_DTYPE_F32, 2, shape, NULL) != TB_OK ||
      tb_tensor_map(&map, tensor, TB_MAP_WRITE) != TB_OK) {
    fprintf(stderr, "tensorbuf: %s\n", tb_last_error());
    tb_tensor_unref(tensor); /* NULL is a no-op */
    return 1;
  }
  float *data = tb_map_data(map);
  for (int i = 0; i < 6; i++)
    data[i] = 0.5f * (float)i;
  tb_map_free(map);

  double value = 0;
  const int64_t index[] = {1, 2};
  if (tb_tensor_get_f64(&value, tensor, 2, index) != TB_OK)
    fprintf(stderr, "tensorbuf: %s\n", tb_last_error());
  printf("%s tensor in %s memory: t[1][2] = %g\n",
         tb_dtype_name(tb_tensor_dtype(tensor)),
         tb_memory_name(tb_tensor_memory(tensor)), value);
  tb_tensor_unref(tensor);
  return tb_live_objects() == 0 ? 0 : 1;
}
