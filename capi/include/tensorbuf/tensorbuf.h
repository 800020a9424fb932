/* tensorbuf — zero-copy tensor memory for Linux.
 *
 * The umbrella header: include this one. Pure C99, C++-clean; it includes
 * only <stddef.h>, <stdint.h> and <stdbool.h>. */
#ifndef TENSORBUF_H
#define TENSORBUF_H

#include "tensorbuf/buffer.h"
#include "tensorbuf/cuda.h"
#include "tensorbuf/dlpack.h"
#include "tensorbuf/export.h"
#include "tensorbuf/status.h"
#include "tensorbuf/tensor.h"
#include "tensorbuf/channel.h"
#include "tensorbuf/fence.h"
#include "tensorbuf/file.h"
#include "tensorbuf/image.h"
#include "tensorbuf/pool.h"
#include "tensorbuf/safetensors.h"
#include "tensorbuf/types.h"

#endif /* TENSORBUF_H */
