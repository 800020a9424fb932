"""Images: tensors with a pixel format, a width and a height, and planes
with their own offsets and row pitch (see tensorbuf/image.h for the shapes)."""

from . import tensorbuf_core as _core
from .tensor import Tensor, alloc_options, dtype_code

__all__ = ["PIXEL_FORMATS", "image", "import_image"]


def _pixel_formats():
    names, value = [], 1
    while _core.tb_pixel_format_name(value) is not None:
        names.append(_core.tb_pixel_format_name(value))
        value += 1
    return tuple(names)


#: Every pixel format name, in tb_pixel_format order ("rgb", "rgba", ...).
PIXEL_FORMATS = _pixel_formats()


def image(width, height, pixel_format="rgba", dtype="u8", *, planes=None,
          memory="auto", name=None, alignment=0):
    """A new zero-filled image with all its planes in one buffer. Without
    ``planes`` every row pitch and plane offset is a multiple of
    ``alignment`` (default 64); ``planes`` gives them instead, one
    ``(offset, stride)`` in bytes per plane (a wider pitch, a chroma plane
    at a page boundary), and ``alignment`` aligns only the buffer."""
    options = alloc_options(memory, name, alignment)
    code, dtype = _core.tb_pixel_format_from_name(pixel_format), dtype_code(dtype)
    if planes is None:
        return Tensor._wrap_handle(_core.tb_image_new(width, height, code, dtype,
                                                      options))
    planes = tuple(tuple(plane) for plane in planes)
    return Tensor._wrap_handle(_core.tb_image_new_with_layout(
        width, height, code, [offset for offset, _ in planes],
        [stride for _, stride in planes], dtype, options))


def import_image(width, height, pixel_format, planes):
    """An image over the planes of shared-memory or dma-buf fds, as V4L2 or
    a GPU hands them over: ``planes`` is one (fd, offset, stride) per plane
    (offset and row pitch in bytes). The fds are dup'd: close yours."""
    planes = list(planes)
    return Tensor._wrap_handle(_core.tb_image_import(
        width, height, _core.tb_pixel_format_from_name(pixel_format),
        [fd for fd, _, _ in planes], [offset for _, offset, _ in planes],
        [stride for _, _, stride in planes]))
