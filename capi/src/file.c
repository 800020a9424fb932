/* File entry points: mapped files and streaming reads. */
#include "boundary.h"
#include "tensor/tensor.h"

tb_status tb_buffer_map_file(tb_buffer **out, const char *path, int fd,
                             uint32_t flags) {
  TB_REQUIRE(out);
  GError *error = NULL;
  TB_RETURN_HANDLE(out, tb_buffer_open_file(path, fd, flags, &error), error);
}

tb_status tb_tensor_read_file(tb_read_mode *mode_out, tb_tensor *tensor, int fd,
                              uint64_t offset, uint32_t flags) {
  TB_REQUIRE(tensor);
  if (fd < 0)
    return tb_fail(__func__, TB_ERR_INVALID_ARGUMENT, "fd is %d", fd);
  GError *error = NULL;
  TB_RETURN(tb_tensor_read_file_at(tensor, fd, offset, flags, mode_out, &error),
            error);
}
