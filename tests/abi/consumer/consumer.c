/* A program outside the project that finds tensorbuf only through what
 * `cmake --install` put in a prefix: built by find_package and by pkg-config,
 * against the shared and the static library, by check_package.cmake. */
#include <tensorbuf/tensorbuf.h>

#include <inttypes.h>
#include <stdio.h>

int main(void) {
  if (tb_version_number() != TB_VERSION_NUMBER) {
    fprintf(stderr, "consumer: headers %s, library %s\n", TB_VERSION_STRING,
            tb_version_string());
    return 1;
  }
  const int64_t shape[] = {2, 3};
  tb_tensor *tensor = NULL;
  if (tb_tensor_new(&tensor, TB_DTYPE_U8, 2, shape, NULL) != TB_OK) {
    fprintf(stderr, "consumer: %s\n", tb_last_error());
    return 1;
  }
  const uint64_t nbytes = tb_tensor_nbytes(tensor);
  tb_tensor_unref(tensor);
  if (nbytes != 6 || tb_live_objects() != 0) {
    fprintf(stderr, "consumer: %" PRIu64 " bytes, %" PRId64 " live objects\n",
            nbytes, tb_live_objects());
    return 1;
  }
  printf("consumer: tensorbuf %s works\n", tb_version_string());
  return 0;
}
