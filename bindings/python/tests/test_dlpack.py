"""The Python DLPack protocol: capsules, versions, flags, ownership."""

import ctypes

import pytest

import tensorbuf
from tensorbuf import core

# DLPack 1.1's structs, written from the spec, to read capsules from Python.


class DLDevice(ctypes.Structure):
    _fields_ = [("device_type", ctypes.c_int32), ("device_id", ctypes.c_int32)]


class DLDataType(ctypes.Structure):
    _fields_ = [("code", ctypes.c_uint8), ("bits", ctypes.c_uint8),
                ("lanes", ctypes.c_uint16)]


class DLTensor(ctypes.Structure):
    _fields_ = [("data", ctypes.c_void_p), ("device", DLDevice),
                ("ndim", ctypes.c_int32), ("dtype", DLDataType),
                ("shape", ctypes.POINTER(ctypes.c_int64)),
                ("strides", ctypes.POINTER(ctypes.c_int64)),
                ("byte_offset", ctypes.c_uint64)]


class DLManagedTensor(ctypes.Structure):
    _fields_ = [("dl_tensor", DLTensor), ("manager_ctx", ctypes.c_void_p),
                ("deleter", ctypes.c_void_p)]


class DLManagedTensorVersioned(ctypes.Structure):
    _fields_ = [("major", ctypes.c_uint32), ("minor", ctypes.c_uint32),
                ("manager_ctx", ctypes.c_void_p), ("deleter", ctypes.c_void_p),
                ("flags", ctypes.c_uint64), ("dl_tensor", DLTensor)]


READ_ONLY, IS_COPIED = 1 << 0, 1 << 1

_get_pointer = ctypes.pythonapi.PyCapsule_GetPointer
_get_pointer.restype = ctypes.c_void_p
_get_pointer.argtypes = [ctypes.py_object, ctypes.c_char_p]
_get_name = ctypes.pythonapi.PyCapsule_GetName
_get_name.restype = ctypes.c_char_p
_get_name.argtypes = [ctypes.py_object]


def capsule_name(capsule):
    return _get_name(capsule).decode()


def read_capsule(capsule):
    """The capsule's struct; valid only while the capsule lives."""
    name = capsule_name(capsule)
    struct = DLManagedTensorVersioned if name == "dltensor_versioned" else DLManagedTensor
    return struct.from_address(_get_pointer(capsule, name.encode()))


def element0(tensor):
    with tensor.map() as m:
        return m.address


def test_legacy_capsule_by_default():
    t = tensorbuf.Tensor((2, 3), "i16")
    capsule = t.__dlpack__()
    assert capsule_name(capsule) == "dltensor"
    dl = read_capsule(capsule).dl_tensor
    assert dl.data == element0(t) and dl.byte_offset == 0
    assert (dl.device.device_type, dl.device.device_id) == (1, 0)
    assert (dl.dtype.code, dl.dtype.bits, dl.dtype.lanes) == (0, 16, 1)
    assert dl.ndim == 2
    assert [dl.shape[i] for i in range(2)] == [2, 3]
    assert [dl.strides[i] for i in range(2)] == [3, 1]


@pytest.mark.parametrize("max_version,minor", [((1, 0), 0), ((1, 1), 1),
                                               ((1, 7), 1), ((2, 0), 1)])
def test_versioned_capsule_when_asked(max_version, minor):
    t = tensorbuf.Tensor((4,), "bf16")
    capsule = t.__dlpack__(max_version=max_version)
    assert capsule_name(capsule) == "dltensor_versioned"
    managed = read_capsule(capsule)
    assert (managed.major, managed.minor) == (1, minor)
    assert managed.flags == 0
    dl = managed.dl_tensor
    assert (dl.dtype.code, dl.dtype.bits) == (4, 16)  # kDLBfloat
    assert dl.data == element0(t)


def test_old_max_version_gets_legacy():
    capsule = tensorbuf.Tensor((1,), "u8").__dlpack__(max_version=(0, 8))
    assert capsule_name(capsule) == "dltensor"


def test_dtype_codes():
    expected = {"bool": (6, 8), "u8": (1, 8), "i8": (0, 8), "u16": (1, 16),
                "i16": (0, 16), "u32": (1, 32), "i32": (0, 32), "u64": (1, 64),
                "i64": (0, 64), "f16": (2, 16), "bf16": (4, 16), "f32": (2, 32),
                "f64": (2, 64)}
    assert set(expected) == set(tensorbuf.DTYPES)
    for dtype, (code, bits) in expected.items():
        capsule = tensorbuf.Tensor((1,), dtype).__dlpack__()
        dl = read_capsule(capsule).dl_tensor
        assert (dl.dtype.code, dl.dtype.bits, dl.dtype.lanes) == (code, bits, 1)


def test_read_only_flag_and_legacy_refusal():
    t = tensorbuf.Tensor.from_buffer(tensorbuf.Buffer.wrap(b"abcd"), (4,))
    managed = read_capsule(t.__dlpack__(max_version=(1, 0)))
    assert managed.flags == READ_ONLY
    with pytest.raises(BufferError, match="read-only"):
        t.__dlpack__()


def test_copy_exports_a_private_copy():
    t = tensorbuf.Tensor((3,), "f32")
    t[1] = 2.5
    capsule = t.__dlpack__(max_version=(1, 1), copy=True)
    managed = read_capsule(capsule)
    assert managed.flags == IS_COPIED
    assert managed.dl_tensor.data != element0(t)
    copied = tensorbuf.from_dlpack(capsule)
    assert copied[1] == 2.5
    copied[1] = 0
    assert t[1] == 2.5
    assert capsule_name(t.__dlpack__(copy=False)) == "dltensor"


def test_protocol_arguments_are_checked():
    t = tensorbuf.Tensor((1,), "u8")
    assert t.__dlpack_device__() == (1, 0)
    assert capsule_name(t.__dlpack__(dl_device=(1, 0))) == "dltensor"
    with pytest.raises(BufferError, match="stream"):
        t.__dlpack__(stream=1)
    with pytest.raises(BufferError, match="dl_device"):
        t.__dlpack__(dl_device=(2, 0))
    with pytest.raises(TypeError):
        t.__dlpack__(max_version=1)
    with pytest.raises(TypeError):
        t.__dlpack__(None)  # keyword-only
    with pytest.raises(TypeError):
        t.__dlpack__(colour=1)


def test_empty_and_scalar_tensors():
    capsule = tensorbuf.Tensor((0, 2), "u8").__dlpack__()
    dl = read_capsule(capsule).dl_tensor
    assert dl.data is None and dl.ndim == 2
    scalar = tensorbuf.Tensor((), "f64")
    scalar[()] = 1.5
    back = tensorbuf.from_dlpack(scalar.__dlpack__(max_version=(1, 1)))
    assert back.shape == () and back[()] == 1.5


def test_consumed_capsules_are_renamed_and_not_reused():
    t = tensorbuf.Tensor((2,), "u8")
    capsule = t.__dlpack__(max_version=(1, 1))
    back = tensorbuf.from_dlpack(capsule)
    assert capsule_name(capsule) == "used_dltensor_versioned"
    assert element0(back) == element0(t)
    with pytest.raises(ValueError, match="used_dltensor_versioned"):
        tensorbuf.from_dlpack(capsule)
    legacy = t.__dlpack__()
    tensorbuf.from_dlpack(legacy)
    assert capsule_name(legacy) == "used_dltensor"


def test_unconsumed_capsules_release_their_tensor():
    t = tensorbuf.Tensor((2,), "u8")
    start = tensorbuf.live_objects()
    capsules = [t.__dlpack__(), t.__dlpack__(max_version=(1, 1))]
    del t
    assert tensorbuf.live_objects() == start  # the capsules hold the tensor
    del capsules
    assert tensorbuf.live_objects() == start - 2  # tensor and buffer


def test_imported_tensor_owns_the_capsule_memory():
    t = tensorbuf.Tensor((3,), "i32")
    t[2] = 11
    back = tensorbuf.from_dlpack(t.__dlpack__(max_version=(1, 1)))
    del t
    assert back[2] == 11  # the export still holds the original tensor


def test_from_dlpack_refuses_what_it_cannot_take():
    with pytest.raises(TypeError, match="capsule"):
        tensorbuf.from_dlpack(42)
    with pytest.raises(BufferError):
        tensorbuf.from_dlpack(tensorbuf.Tensor((1,), "u8"), device=(2, 0))

    class OpenClProducer:
        def __dlpack_device__(self):
            return (4, 0)

        def __dlpack__(self, **kwargs):
            raise AssertionError("must not be called")

    with pytest.raises(tensorbuf.UnsupportedError):
        tensorbuf.from_dlpack(OpenClProducer())


@pytest.mark.skipif(tensorbuf.memory_available("cuda"), reason="a CUDA driver is loaded")
def test_from_dlpack_of_cuda_memory_without_a_driver():
    class GpuProducer:
        def __dlpack_device__(self):
            return (2, 0)

        def __dlpack__(self, **kwargs):
            raise AssertionError("must not be called")

    with pytest.raises(tensorbuf.UnsupportedError, match="CUDA"):
        tensorbuf.from_dlpack(GpuProducer())


def test_a_failed_import_leaves_the_capsule_to_its_producer():
    """A capsule tensorbuf refuses keeps its name, so its own destructor
    deletes the tensor: nothing leaks."""
    t = tensorbuf.Tensor((2,), "u8")
    capsule = t.__dlpack__(max_version=(1, 1))
    managed = read_capsule(capsule)
    managed.dl_tensor.device.device_type = 2  # pretend it is CUDA memory
    with pytest.raises(tensorbuf.UnsupportedError):
        tensorbuf.from_dlpack(capsule)
    assert capsule_name(capsule) == "dltensor_versioned"
    managed.major = 2  # a DLPack 2.x tensor
    managed.dl_tensor.device.device_type = 1
    with pytest.raises(tensorbuf.VersionError):
        tensorbuf.from_dlpack(capsule)
    del managed, capsule


def test_low_level_capsule_calls():
    t = tensorbuf.Tensor((2,), "u8")
    capsule = core.tb_py_to_dlpack(t._handle, True, 1, True, False)
    assert read_capsule(capsule).flags == READ_ONLY
    back = tensorbuf.Tensor._wrap_handle(core.tb_py_from_dlpack(capsule))
    assert back.read_only and not t.read_only
