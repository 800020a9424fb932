"""tensorbuf: zero-copy tensor memory for Linux.

Typed tensors whose bytes live in heap, shared or DMA-BUF memory, that NumPy
and PyTorch take without a copy, that other processes receive by fd over a
Channel, with Fences to say when they are ready::

    import numpy, tensorbuf
    t = tensorbuf.Tensor((1080, 1920, 4), dtype="u8", memory="shm", name="frame")
    a = numpy.asarray(t)           # the same memory
    t[0, 0, 3] = 255               # a[0, 0, 3] is 255 too
    fd = t.export_fd()             # hand it to another process

Errors are classes under tensorbuf.Error, one per library status, that also
derive from the natural builtin (ShapeError is a ValueError, ReadOnlyError a
PermissionError, ...); each has .code and .name. The C API itself is
tensorbuf.core (tensorbuf_core: C names and argument order).
"""

from . import safetensors
from . import tensorbuf_core as core
from .image import PIXEL_FORMATS, image, import_image
from .interop import from_dlpack, from_numpy
from .sharing import (Channel, Credentials, Fence, Limits, Listener, Pool, export_tensor,
                      import_tensor)
from .tensor import DTYPES, MEMORY_KINDS, Buffer, Map, Tensor

Error = core.Error
#: {status code: error class}, generated from the library's TB_STATUS_MAP.
errors = core.errors
globals().update({cls.__name__: cls for cls in errors.values()})

__version__ = core.tb_version_string()
version_number = core.tb_version_number()


def live_objects():
    """Live buffer, tensor and map handles in the process (for leak checks)."""
    return core.tb_live_objects()


def memory_available(memory):
    """Whether buffers of ``memory`` ("shm", "dma", ...) can be made here."""
    return core.tb_memory_available(core.tb_memory_from_name(memory))


def memory_trim():
    """Gives cached freed heap blocks back to the system; returns the bytes."""
    return core.tb_memory_trim()


def memory_auto_skipped():
    """Why this thread's last memory="auto" allocation skipped kinds, or ""."""
    return core.tb_memory_auto_skipped()


def buffer_alive(buffer_id):
    """Whether the buffer with this id (Buffer.id, Tensor.buffer_id) lives."""
    return core.tb_buffer_alive(buffer_id)


def import_fd(fd, shape, dtype="u8", *, offset=0):
    """A row-major tensor over a memfd or dma-buf fd (dup'd: close yours)."""
    return Tensor.import_fd(fd, shape, dtype, offset=offset)


__all__ = [
    "Buffer",
    "Channel",
    "Credentials",
    "DTYPES",
    "Error",
    "Fence",
    "Limits",
    "Listener",
    "MEMORY_KINDS",
    "Map",
    "PIXEL_FORMATS",
    "Pool",
    "Tensor",
    "buffer_alive",
    "core",
    "errors",
    "export_tensor",
    "from_dlpack",
    "from_numpy",
    "image",
    "import_fd",
    "import_image",
    "import_tensor",
    "live_objects",
    "memory_auto_skipped",
    "memory_available",
    "memory_trim",
    "safetensors",
]  # the error classes stay qualified: TimeoutError, SystemError shadow builtins
