"""NumPy and DLPack interchange."""

from . import tensorbuf_core as _core
from .tensor import Tensor

__all__ = ["from_dlpack", "from_numpy"]

# NumPy dtype names (numpy.dtype(x).name) and their tensorbuf dtypes.
# "bfloat16" is the name ml_dtypes gives its type; NumPy itself has none.
_FROM_NUMPY = {
    "bool": "bool",
    "uint8": "u8",
    "int8": "i8",
    "uint16": "u16",
    "int16": "i16",
    "uint32": "u32",
    "int32": "i32",
    "uint64": "u64",
    "int64": "i64",
    "float16": "f16",
    "bfloat16": "bf16",
    "float32": "f32",
    "float64": "f64",
}


def numpy():
    """The numpy module, or an ImportError that says what needs it."""
    try:
        import numpy as np
    except ImportError as error:
        raise ImportError(
            "this tensorbuf call needs NumPy (pip install numpy, or "
            "apt-get install python3-numpy)"
        ) from error
    return np


def numpy_dtype_name(dtype):
    """The tensorbuf dtype name of a NumPy dtype (or scalar type)."""
    name = numpy().dtype(dtype).name
    try:
        return _FROM_NUMPY[name]
    except KeyError:
        raise _core.DtypeError(
            f"NumPy dtype {name} has no tensorbuf dtype; tensorbuf holds "
            "bool, (u)int8-64, float16/32/64 and bfloat16"
        ) from None


def from_numpy(array, *, memory="auto", name=None):
    """A new tensor of ``memory`` holding a copy of ``array`` (any layout,
    byte order or array-like); the tensor is row-major and writable."""
    np = numpy()
    array = np.asarray(array)
    dtype = numpy_dtype_name(array.dtype)
    tensor = Tensor(array.shape, dtype, memory=memory, name=name)
    if dtype == "bf16":  # no buffer format: copy the raw row-major bytes
        tensor.write_bytes(np.ascontiguousarray(array).tobytes())
    elif tensor.size:
        np.asarray(tensor)[...] = array
    return tensor


def from_dlpack(obj, *, device=None, copy=None):
    """A tensor over the memory of any DLPack producer (a NumPy array, a
    PyTorch CPU or CUDA tensor, a CuPy array, ...) or of a DLPack capsule,
    without a copy (unless ``copy=True``). CUDA memory gives a "cuda" tensor,
    pinned host memory a "cuda_host" one. The producer's memory stays alive
    as long as the tensor or any view or map of it does."""
    if not hasattr(obj, "__dlpack__"):
        return Tensor._wrap_handle(_core.tb_py_from_dlpack(obj))
    producer_device = (1, 0)
    if hasattr(obj, "__dlpack_device__"):
        producer_device = tuple(obj.__dlpack_device__())
    if device is not None and tuple(device) != producer_device:
        raise BufferError(
            f"device is {tuple(device)} but the memory is on {producer_device}; "
            "tensorbuf imports memory where it is (copy it with Tensor.copy)")
    if producer_device[0] not in (1, 2, 3):
        raise _core.UnsupportedError(
            f"from_dlpack: the memory is on DLPack device {producer_device}; "
            "tensorbuf imports CPU (1), CUDA (2) and CUDA host (3) memory"
        )
    if producer_device[0] != 1 and not _core.tb_memory_available(_core.TB_MEMORY_CUDA):
        raise _core.UnsupportedError(
            f"from_dlpack: the memory is on CUDA device {producer_device} and "
            "this process has no CUDA driver or GPU")
    versioned = {"max_version": (1, 1)}
    if producer_device[0] == 2:
        # tensorbuf's own device work (copies with stream 0) runs on the
        # legacy default stream: the producer orders its work before it.
        versioned["stream"] = 1
    if copy is not None:
        versioned["copy"] = copy
    try:
        capsule = obj.__dlpack__(**versioned)
        copied = False
    except TypeError:  # a producer older than DLPack 1.0 in Python
        legacy = {"stream": 1} if producer_device[0] == 2 else {}
        capsule = obj.__dlpack__(**legacy)
        copied = bool(copy)
    tensor = Tensor._wrap_handle(_core.tb_py_from_dlpack(capsule))
    if not copied:
        return tensor
    return tensor.copy(memory=tensor.memory if producer_device[0] != 1 else "heap",
                       device=producer_device[1] if producer_device[0] == 2 else 0)
