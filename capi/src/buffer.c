/* Buffer entry points. */
#include "memory/buffer.h"
#include "boundary.h"

tb_status tb_buffer_new(tb_buffer **out, uint64_t size,
                        const tb_alloc_options *opts) {
  TB_REQUIRE(out);
  GError *error = NULL;
  TbAllocParams params;
  if (!tb_buffer_params(&params, opts, &error))
    return tb_fail_with(__func__, error);
  TB_RETURN_HANDLE(out, tb_buffer_alloc(size, &params, &error), error);
}

tb_status tb_buffer_wrap(tb_buffer **out, void *data, uint64_t size,
                         uint32_t flags, tb_destroy_notify destroy,
                         void *user_data) {
  TB_REQUIRE(out);
  GError *error = NULL;
  TB_RETURN_HANDLE(
      out, tb_buffer_wrap_memory(data, size, flags, destroy, user_data, &error),
      error);
}
