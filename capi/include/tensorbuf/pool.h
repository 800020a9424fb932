/* tensorbuf — pools: a fixed set of equally described tensors, recycled.
 *
 * A frame loop acquires a tensor, fills it, hands it on and drops it; when
 * the last reference to it (and to every view of it) goes, its buffer
 * returns to the pool — also when it was sent on a channel: the receiver's
 * drop sends a release back, so a steady loop allocates nothing and maps
 * nothing on either side. Thread-safe. */
#ifndef TENSORBUF_POOL_H
#define TENSORBUF_POOL_H

#include "tensorbuf/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct tb_pool tb_pool;

/* `count` tensors laid out like `prototype` (dtype, shape, strides, offset,
 * name, quantization, memory kind and buffer size), each in its own buffer.
 * An image prototype keeps its image metadata; its planes must share one
 * buffer. Errors: TB_ERR_INVALID_ARGUMENT (NULL argument, count 0 or > 1024,
 * an image over several buffers), and
 * those of tb_buffer_new. */
TB_API tb_status tb_pool_new(tb_pool **out, const tb_tensor *prototype,
                             size_t count);

/* A free tensor of the pool, waiting up to timeout_ms (negative: no limit;
 * a monotonic deadline) for one to come back — from local drops or
 * releases arriving on the channels it was sent on. Those releases are
 * applied by whichever thread services the channel (see channel.h); when
 * none does, this call reads them itself, and never reads any other
 * message. The tensor's bytes are what its last user left.
 * Errors: TB_ERR_INVALID_ARGUMENT, TB_ERR_TIMEOUT. */
TB_API tb_status tb_pool_acquire(tb_tensor **out, tb_pool *pool,
                                 int timeout_ms);

/* Tensors free now. */
TB_API size_t tb_pool_available(const tb_pool *pool);
/* Tensors the pool holds in all. */
TB_API size_t tb_pool_size(const tb_pool *pool);

TB_API tb_pool *tb_pool_ref(tb_pool *pool); /* NULL-safe */
/* Drops a reference. Tensors still out keep their buffers alive. */
TB_API void tb_pool_unref(tb_pool *pool);

#ifdef __cplusplus
}
#endif

#endif /* TENSORBUF_POOL_H */
