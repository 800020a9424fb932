"""Tensors, buffers and maps: the Pythonic layer over tensorbuf_core.

Each object holds one owned handle of the C library (``_handle``); the
handle's SWIG destructor drops the C reference when the object goes, so
lifetimes follow Python's. Names (``"f32"``, ``"shm"``) stand for the C enums.
"""

from . import tensorbuf_core as _core

__all__ = ["Buffer", "Map", "Tensor"]


def _names(name_of, first):
    names = []
    value = first
    while name_of(value) is not None:
        names.append(name_of(value))
        value += 1
    return tuple(names)


#: Every dtype name, in tb_dtype order ("bool", "u8", ... "f64").
DTYPES = _names(_core.tb_dtype_name, 1)
#: Every memory kind name, in tb_memory order ("auto", "heap", "shm", ...).
MEMORY_KINDS = _names(_core.tb_memory_name, 0)

_DTYPE_CODES = {name: code for code, name in enumerate(DTYPES, 1)}
_INTEGER_DTYPES = frozenset(("u8", "i8", "u16", "i16", "u32", "i32", "u64", "i64"))
_MAP_MODES = {
    "r": _core.TB_MAP_READ,
    "w": _core.TB_MAP_WRITE,
    "rw": _core.TB_MAP_READ | _core.TB_MAP_WRITE,
}


def dtype_code(dtype):
    """The tb_dtype value of a name ("f32"), a NumPy dtype or scalar type."""
    if isinstance(dtype, str):
        code = _DTYPE_CODES.get(dtype)
        return code if code is not None else _core.tb_dtype_from_name(dtype)
    from .interop import numpy_dtype_name

    return _DTYPE_CODES[numpy_dtype_name(dtype)]


def alloc_options(memory="auto", name=None, alignment=0, huge_pages=False,
                  uninitialized=False, device=0):
    """The options dict tensorbuf_core takes, or None for the defaults.

    ``uninitialized=True`` gives bytes that may hold anything, as
    ``np.empty`` does: for outputs that are written in full before a read.
    ``device`` is the CUDA device ordinal of the CUDA memory kinds.
    """
    flags = (_core.TB_ALLOC_HUGE_PAGES if huge_pages else 0) | (
        _core.TB_ALLOC_UNINITIALIZED if uninitialized else 0)
    if (memory == "auto" and name is None and not alignment and not flags
            and not device):
        return None
    return {"memory": memory, "name": name, "alignment": alignment,
            "flags": flags, "device": device}


def _shape_tuple(shape):
    if isinstance(shape, int) or hasattr(shape, "__index__"):
        return (shape,)
    return tuple(shape)


class Buffer:
    """A refcounted block of bytes of one memory kind.

    ``Buffer(size, memory="auto", name=None, alignment=0, huge_pages=False,
    uninitialized=False)`` allocates zeroed bytes (or, uninitialized, bytes
    that may hold anything); ``Buffer.wrap(obj)`` wraps any C-contiguous Python
    buffer without a copy (read-only if the object is), keeping ``obj`` alive.
    """

    __slots__ = ("_handle", "__weakref__")

    def __init__(self, size, *, memory="auto", name=None, alignment=0,
                 huge_pages=False, uninitialized=False, device=0):
        self._handle = _core.tb_buffer_new(
            size, alloc_options(memory, name, alignment, huge_pages,
                                uninitialized, device)
        )

    @classmethod
    def _wrap_handle(cls, handle):
        buffer = cls.__new__(cls)
        buffer._handle = handle
        return buffer

    @classmethod
    def wrap(cls, data, *, read_only=False):
        """A HEAP buffer over ``data``'s memory (bytes, bytearray, array...)."""
        flags = _core.TB_BUFFER_READ_ONLY if read_only else 0
        return cls._wrap_handle(_core.tb_buffer_wrap(data, flags))

    @property
    def size(self):
        return _core.tb_buffer_size(self._handle)

    def __len__(self):
        return self.size

    @property
    def memory(self):
        return _core.tb_memory_name(_core.tb_buffer_memory(self._handle))

    @property
    def id(self):
        """Process-unique identity, never reused (see tensorbuf.buffer_alive)."""
        return _core.tb_buffer_id(self._handle)

    @property
    def read_only(self):
        return _core.tb_buffer_read_only(self._handle)

    @property
    def key(self):
        """Equal for buffers over the same dma-buf or memfd, even from two
        imports (0 without an fd): a key for per-memory caches."""
        return _core.tb_buffer_key(self._handle)

    @property
    def fd(self):
        """The buffer's own fd, borrowed (-1 without one): valid while the
        buffer lives; never close it."""
        return _core.tb_buffer_fd(self._handle)

    def __repr__(self):
        return (
            f"tensorbuf.Buffer(size={self.size}, memory={self.memory!r}, "
            f"id={self.id}{', read_only=True' if self.read_only else ''})"
        )


class Map(_core.MapBuffer):
    """CPU access to a tensor's memory: ``with tensor.map("rw") as m: ...``.

    A map exports the buffer protocol with the tensor's shape, strides and
    format, so ``memoryview(m)`` and ``numpy.asarray(m)`` see the memory
    itself. It keeps the tensor alive; ``unmap()`` (also on leaving the
    ``with`` block) ends access and is refused while a memoryview or array
    still uses the memory. Modes: "r", "w", "rw".
    """

    def __new__(cls, tensor, mode="r"):
        flags = _MAP_MODES.get(mode)
        if flags is None:
            raise _core.InvalidArgumentError(
                f"Map: mode is {mode!r}; expected 'r', 'w' or 'rw'"
            )
        self = super().__new__(cls, tensor._handle, flags)
        self.tensor = tensor
        return self

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.unmap()

    @property
    def mode(self):
        return {flags: mode for mode, flags in _MAP_MODES.items()}.get(self.flags)

    def numpy(self):
        """The mapped memory as a NumPy array (no copy)."""
        from .interop import numpy

        return numpy().asarray(self)

    def __repr__(self):
        state = f"mode={self.mode!r}" if self.mapped else "unmapped"
        return f"<tensorbuf.Map of {self.tensor!r}, {state}>"


class Tensor(_core.TensorBase):
    """A typed, refcounted view of a buffer.

    ``Tensor((2, 3), dtype="f32", memory="shm", name="frame")`` makes a new
    zero-filled, row-major tensor. ``shape``, ``strides`` (in elements),
    ``dtype``, ``memory``, ``nbytes``, ``name`` ... describe it; ``t[1, 2]``
    reads and ``t[1, 2] = 3.5`` writes one element; ``t[1]``, ``t[:, ::2]``
    and other basic indexing give views that share the memory. NumPy
    (``numpy.asarray(t)``, ``numpy.from_dlpack(t)``) and PyTorch
    (``torch.from_dlpack(t)``) see the same memory without a copy: the
    buffer protocol and ``__dlpack__`` / ``__dlpack_device__`` come from the
    C base class, each export holding its own map of the tensor.
    """

    __slots__ = ("__weakref__",)

    def __init__(self, shape, dtype="f32", *, memory="auto", name=None,
                 alignment=0, huge_pages=False, uninitialized=False, device=0):
        self._handle = _core.tb_tensor_new(
            dtype_code(dtype),
            _shape_tuple(shape),
            alloc_options(memory, name, alignment, huge_pages, uninitialized,
                          device),
        )

    @classmethod
    def _wrap_handle(cls, handle):
        tensor = cls.__new__(cls)
        tensor._handle = handle
        return tensor

    @classmethod
    def from_buffer(cls, buffer, shape, dtype="u8", *, offset=0, strides=None):
        """A view of ``buffer`` whose element 0 is at byte ``offset``."""
        return cls._wrap_handle(
            _core.tb_tensor_from_buffer(
                buffer._handle, offset, dtype_code(dtype), _shape_tuple(shape),
                None if strides is None else tuple(strides),
            )
        )

    @classmethod
    def import_fd(cls, fd, shape, dtype="u8", *, offset=0):
        """A row-major tensor over a memfd or dma-buf (the fd is dup'd)."""
        return cls._wrap_handle(
            _core.tb_tensor_import_fd(fd, dtype_code(dtype), _shape_tuple(shape), offset)
        )

    @classmethod
    def import_cuda_fd(cls, fd, shape, dtype="u8", *, memory="cuda", device=0, offset=0):
        """A row-major tensor over another process's CUDA memory (``memory``
        "cuda": a CUDA shareable fd mapped on ``device``) or pinned memory
        ("cuda_host": its memfd, registered here). The fd is dup'd."""
        return cls._wrap_handle(
            _core.tb_tensor_import_cuda_fd(
                fd, _core.tb_memory_from_name(memory), device, dtype_code(dtype),
                _shape_tuple(shape), offset)
        )

    # ---- description -------------------------------------------------------

    @property
    def dtype(self):
        return DTYPES[_core.tb_tensor_dtype(self._handle) - 1]

    @property
    def itemsize(self):
        return _core.tb_dtype_size(_core.tb_tensor_dtype(self._handle))

    @property
    def ndim(self):
        return _core.tb_tensor_ndim(self._handle)

    @property
    def shape(self):
        handle = self._handle
        return tuple(_core.tb_tensor_dim(handle, axis)
                     for axis in range(_core.tb_tensor_ndim(handle)))

    @property
    def strides(self):
        """Strides in elements (NumPy's are in bytes)."""
        handle = self._handle
        return tuple(_core.tb_tensor_stride(handle, axis)
                     for axis in range(_core.tb_tensor_ndim(handle)))

    @property
    def size(self):
        """Number of elements."""
        return _core.tb_tensor_numel(self._handle)

    @property
    def nbytes(self):
        return _core.tb_tensor_nbytes(self._handle)

    @property
    def offset(self):
        """Byte offset of element 0 in the buffer."""
        return _core.tb_tensor_offset(self._handle)

    @property
    def memory(self):
        return _core.tb_memory_name(_core.tb_tensor_memory(self._handle))

    @property
    def read_only(self):
        return _core.tb_tensor_read_only(self._handle)

    @property
    def device_ptr(self):
        """The device address of element 0 (CUDA and CUDA_HOST memory)."""
        return _core.tb_tensor_device_ptr(self._handle)

    @property
    def cuda_device(self):
        """The CUDA device ordinal (CUDA and CUDA_HOST memory)."""
        return _core.tb_tensor_cuda_device(self._handle)

    @property
    def contiguous(self):
        return _core.tb_tensor_is_contiguous(self._handle)

    @property
    def buffer_id(self):
        return _core.tb_tensor_buffer_id(self._handle)

    @property
    def buffer_key(self):
        """Equal for tensors over the same dma-buf or memfd, even from two
        imports (0 without an fd): a key for per-memory caches."""
        buffer = _core.tb_tensor_buffer(self._handle)
        return _core.tb_buffer_key(buffer)

    @property
    def fd(self):
        """The buffer's own fd, borrowed (-1 without one): valid while the
        tensor lives; never close it (export_fd gives one to keep)."""
        return _core.tb_tensor_fd(self._handle)

    @property
    def buffer(self):
        return Buffer._wrap_handle(_core.tb_tensor_buffer(self._handle))

    @property
    def name(self):
        return _core.tb_tensor_name(self._handle)

    @name.setter
    def name(self, value):
        _core.tb_tensor_set_name(self._handle, value)

    @property
    def quantization(self):
        """None, or (axis, scales, zero_points); axis -1 means per-tensor."""
        handle = self._handle
        count = _core.tb_tensor_quantization_count(handle)
        if count == 0:
            return None
        pairs = [_core.tb_tensor_quantization_get(handle, i) for i in range(count)]
        return (
            _core.tb_tensor_quantization_axis(handle),
            tuple(scale for scale, _ in pairs),
            tuple(zero_point for _, zero_point in pairs),
        )

    def set_quantization(self, scales, zero_points=None, *, axis=-1):
        """real = scale * (q - zero_point); per-tensor (axis -1) or per-axis.
        ``set_quantization(None)`` removes it."""
        if scales is not None and not hasattr(scales, "__len__"):
            scales = (scales,)
        if zero_points is not None and not hasattr(zero_points, "__len__"):
            zero_points = (zero_points,)
        _core.tb_tensor_set_quantization(self._handle, axis, scales, zero_points)

    def shares_memory(self, other):
        return _core.tb_tensor_shares_memory(self._handle, other._handle)

    def __len__(self):
        if _core.tb_tensor_ndim(self._handle) == 0:
            raise TypeError("len() of a 0-d tensor")
        return _core.tb_tensor_dim(self._handle, 0)

    def __bool__(self):
        return True  # an object, not a value: no NumPy-style ambiguity

    def __repr__(self):
        extra = f", name={self.name!r}" if self.name is not None else ""
        if self.pixel_format is not None:
            extra += (f", pixel_format={self.pixel_format!r}, "
                      f"width={self.width}, height={self.height}")
        if self.read_only:
            extra += ", read_only=True"
        return (
            f"tensorbuf.Tensor(shape={self.shape}, dtype={self.dtype!r}, "
            f"memory={self.memory!r}{extra})"
        )

    # ---- views -------------------------------------------------------------

    def reshape(self, *shape):
        """Same bytes, new shape (one dim may be -1); contiguous tensors only."""
        if len(shape) == 1 and not isinstance(shape[0], int):
            shape = tuple(shape[0])
        return Tensor._wrap_handle(_core.tb_tensor_reshape(self._handle, shape))

    def slice(self, axis, start, stop, step=1):
        """Elements start, start+step, ... < stop of ``axis``."""
        return Tensor._wrap_handle(
            _core.tb_tensor_slice(self._handle, axis, start, stop, step)
        )

    def _resolve(self, key):
        """Basic indexing: ("element", index) for a full integer index, else
        ("view", axes) where axes is [(dim, stride, start) or None to drop]."""
        if not isinstance(key, tuple):
            key = (key,)
        shape = self.shape
        ellipsis = Ellipsis in key
        if ellipsis:
            at = key.index(Ellipsis)
            if Ellipsis in key[at + 1:]:
                raise IndexError("an index can only have a single ellipsis")
            fill = len(shape) - (len(key) - 1)
            key = key[:at] + (slice(None),) * max(fill, 0) + key[at + 1:]
        if len(key) > len(shape):
            raise IndexError(
                f"too many indices: the tensor has {len(shape)} dims, "
                f"the index has {len(key)}"
            )
        if (not ellipsis and len(key) == len(shape)
                and all(not isinstance(k, slice) for k in key)):
            index = []
            for axis, (k, dim) in enumerate(zip(key, shape)):
                i = k.__index__() if hasattr(k, "__index__") else k
                if not isinstance(i, int):
                    raise TypeError(f"index {axis} must be an int or a slice, not "
                                    f"{type(k).__name__}")
                index.append(i + dim if i < 0 else i)
            return "element", index
        key = key + (slice(None),) * (len(shape) - len(key))
        return "view", key

    def _view(self, key):
        shape, strides = self.shape, self.strides
        if all(isinstance(k, slice) and (k.step is None or k.step > 0) for k in key):
            # Plain slices: the C views keep the name and quantization.
            view = self
            for axis, k in enumerate(key):
                start, stop, step = k.indices(shape[axis])
                if (start, stop, step) != (0, shape[axis], 1):
                    view = view.slice(axis, start, max(start, stop), step)
            return view if view is not self else Tensor._wrap_handle(
                _core.tb_tensor_ref(self._handle))
        offset = 0
        new_shape, new_strides = [], []
        for axis, k in enumerate(key):
            if isinstance(k, slice):
                start, stop, step = k.indices(shape[axis])
                count = len(range(start, stop, step))
                if count > 0:
                    offset += start * strides[axis]
                new_shape.append(count)
                new_strides.append(strides[axis] * step)
            else:
                if not hasattr(k, "__index__"):
                    raise TypeError(f"index {axis} must be an int, a slice or ..., "
                                    f"not {type(k).__name__}")
                i = k.__index__()
                if i < 0:
                    i += shape[axis]
                if not 0 <= i < shape[axis]:
                    raise IndexError(
                        f"index {k} is out of range for axis {axis} with size "
                        f"{shape[axis]}"
                    )
                offset += i * strides[axis]
        byte_offset = self.offset + offset * self.itemsize
        view = Tensor.from_buffer(self.buffer, new_shape, self.dtype,
                                  offset=byte_offset, strides=new_strides)
        if self.name is not None:
            view.name = self.name
        return view

    def _scalar(self, index):
        """A 0-d view of one element (validated by the C getters first)."""
        offset = sum(i * s for i, s in zip(index, self.strides))
        return Tensor.from_buffer(self.buffer, (), self.dtype,
                                  offset=self.offset + offset * self.itemsize)

    def __getitem__(self, key):
        kind, resolved = self._resolve(key)
        if kind == "view":
            return self._view(resolved)
        dtype = self.dtype
        handle = self._handle
        if dtype == "bool":
            return bool(_core.tb_tensor_get_i64(handle, resolved))
        if dtype not in _INTEGER_DTYPES:
            return _core.tb_tensor_get_f64(handle, resolved)
        try:
            return _core.tb_tensor_get_i64(handle, resolved)
        except _core.OutOfRangeError:
            if dtype != "u64":
                raise
            # A u64 above INT64_MAX: its bytes, read exactly.
            data = _core.tb_tensor_read_bytes(self._scalar(resolved)._handle)
            return int.from_bytes(data, "little")

    def __setitem__(self, key, value):
        kind, resolved = self._resolve(key)
        if kind == "view":
            from .interop import numpy

            numpy().asarray(self._view(resolved))[...] = value
            return
        dtype = self.dtype
        handle = self._handle
        if dtype in _INTEGER_DTYPES or dtype == "bool":
            if isinstance(value, float):
                _core.tb_tensor_set_f64(handle, resolved, value)
                return
            value = value.__index__() if hasattr(value, "__index__") else value
            if dtype == "u64" and isinstance(value, int) and (1 << 63) <= value < (1 << 64):
                _core.tb_tensor_get_f64(handle, resolved)  # checks the index
                _core.tb_tensor_write_bytes(self._scalar(resolved)._handle,
                                            value.to_bytes(8, "little"))
                return
            try:
                _core.tb_tensor_set_i64(handle, resolved, value)
            except OverflowError:
                raise _core.OutOfRangeError(
                    f"Tensor.__setitem__: {value} does not fit in {dtype}") from None
        else:
            _core.tb_tensor_set_f64(handle, resolved, float(value))

    def __iter__(self):
        for i in range(len(self)):
            yield self[i]

    # ---- images ----------------------------------------------------------------
    # (tensorbuf.image() and tensorbuf.import_image() make images.)

    @property
    def pixel_format(self):
        """The image's pixel format name ("nv12"), or None if not an image."""
        pixel_format = _core.tb_image_format(self._handle)
        return _core.tb_pixel_format_name(pixel_format) if pixel_format else None

    @pixel_format.setter
    def pixel_format(self, name):
        """Makes the tensor an image of that format (None: a plain tensor),
        reading width, height and pitch from its shape and strides."""
        _core.tb_image_set_format(
            self._handle, 0 if name is None else _core.tb_pixel_format_from_name(name))

    @property
    def width(self):
        return _core.tb_image_width(self._handle)

    @property
    def height(self):
        return _core.tb_image_height(self._handle)

    @property
    def plane_count(self):
        return _core.tb_image_plane_count(self._handle)

    def plane(self, index):
        """Plane ``index`` as a plain tensor sharing the image's bytes."""
        return Tensor._wrap_handle(_core.tb_image_plane(self._handle, index))

    def plane_layout(self, index):
        """(offset, stride, buffer_id) of plane ``index``: where its first
        row starts in its buffer, its row pitch in bytes, and the buffer."""
        handle = self._handle
        return (_core.tb_image_plane_offset(handle, index),
                _core.tb_image_plane_stride(handle, index),
                _core.tb_image_plane_buffer_id(handle, index))

    def export_plane_fd(self, index):
        """A new fd for plane ``index``'s buffer; the caller closes it."""
        return _core.tb_image_export_plane_fd(self._handle, index)

    # ---- bytes and maps ------------------------------------------------------

    def map(self, mode="r"):
        """A CPU map ("r", "w" or "rw"); use it as a context manager."""
        return Map(self, mode)

    def tobytes(self):
        """The elements in row-major order, copied."""
        return _core.tb_tensor_read_bytes(self._handle)

    def write_bytes(self, data):
        """Copies ``data`` (exactly nbytes, row-major) into the elements."""
        _core.tb_tensor_write_bytes(self._handle, data)

    def copy(self, *, memory="auto", name=None, device=0):
        """A new row-major tensor of ``memory`` holding the same elements."""
        copy = Tensor(self.shape, self.dtype, memory=memory,
                      name=self.name if name is None else name, device=device)
        copy.copy_from(self)
        return copy

    def copy_from(self, source, *, stream=0):
        """Copies ``source``'s elements (same dtype and shape) into this
        tensor, across memory kinds. ``stream`` (a CUstream as an integer,
        e.g. ``torch.cuda.current_stream().cuda_stream``) queues a device copy
        without waiting for it; 0 waits."""
        _core.tb_tensor_copy(self._handle, source._handle, stream)

    def export_fd(self):
        """A new fd for the buffer (SHM/DMA); the caller closes it."""
        return _core.tb_tensor_export_fd(self._handle)

    def numpy(self):
        """The tensor as a NumPy array sharing its memory."""
        from .interop import numpy

        return numpy().asarray(self)

    # ---- interchange ---------------------------------------------------------

    def __array__(self, dtype=None, copy=None):
        # NumPy reads the buffer protocol first; it calls this only for a
        # dtype without a buffer format (bf16: DtypeError) or with copy=.
        from .interop import numpy

        array = numpy().asarray(memoryview(self))
        if dtype is not None:
            return array.astype(dtype, copy=bool(copy))
        return array.copy() if copy else array
