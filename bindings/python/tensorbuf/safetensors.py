"""safetensors files: zero-copy read-only views in, atomic saves out.

    tensors = tensorbuf.safetensors.load("model.safetensors")
    w = numpy.asarray(tensors["w"])          # no copy: the file's pages
    tensorbuf.safetensors.save("out.safetensors", tensors, metadata={"k": "v"})

A loaded tensor is a read-only view of the file's one mapping, which lives
as long as any tensor of it; torch.from_dlpack and numpy.from_dlpack take
it without a copy. The file must not be truncated meanwhile (readers would
fault); pass sealed_copy=True to read from a sealed memfd copy instead.
"""

from . import tensorbuf_core as _core
from .tensor import Buffer, Tensor

__all__ = ["load", "map_file", "metadata", "save"]


def _open(path, sealed_copy):
    flags = _core.TB_FILE_SEALED_COPY if sealed_copy else 0
    return _core.tb_safetensors_open(str(path), flags)


def load(path, *, sealed_copy=False):
    """{name: read-only Tensor} in the file's header order."""
    wrap = Tensor._wrap_handle
    return {name: wrap(tensor) for name, tensor in
            _core.tb_py_safetensors_tensors(_open(path, sealed_copy))}


def metadata(path):
    """The file's "__metadata__" as a {str: str} dict."""
    handle = _open(path, False)
    keys = (
        _core.tb_safetensors_metadata_key(handle, i)
        for i in range(_core.tb_safetensors_metadata_count(handle))
    )
    return {key: _core.tb_safetensors_metadata_value(handle, key) for key in keys}


def save(path, tensors, metadata=None):
    """Writes {name: Tensor} (and {str: str} metadata) to ``path`` through a
    temporary file renamed into place."""
    writer = _core.tb_safetensors_writer_new()
    for name, tensor in tensors.items():
        _core.tb_safetensors_writer_add(writer, name, tensor._handle)
    for key, value in (metadata or {}).items():
        _core.tb_safetensors_writer_set_metadata(writer, key, value)
    _core.tb_safetensors_writer_save(writer, str(path))


def map_file(path, *, sealed_copy=False):
    """The whole file as one read-only Buffer (memory "file", or "shm" for a
    sealed copy)."""
    flags = _core.TB_FILE_SEALED_COPY if sealed_copy else 0
    return Buffer._wrap_handle(_core.tb_buffer_map_file(str(path), -1, flags))
