"""NumPy: zero-copy views both ways, copies in, every dtype NumPy has."""

import pytest

import tensorbuf

np = pytest.importorskip("numpy")
NUMPY_VERSION = tuple(int(part) for part in np.__version__.split(".")[:2])
NUMPY_2 = NUMPY_VERSION >= (2, 0)
# NumPy reads DLPack's bool type (kDLBool) from 1.25 on.
NUMPY_DLPACK_BOOL = NUMPY_VERSION >= (1, 25)

# Every NumPy dtype tensorbuf has, with values that test its range.
NUMPY_DTYPES = {
    "bool": (np.bool_, [True, False, True]),
    "u8": (np.uint8, [0, 200, 255]),
    "i8": (np.int8, [-128, 5, 127]),
    "u16": (np.uint16, [0, 40000, 65535]),
    "i16": (np.int16, [-32768, 1, 32767]),
    "u32": (np.uint32, [0, 3_000_000_000, 2**32 - 1]),
    "i32": (np.int32, [-2**31, 7, 2**31 - 1]),
    "u64": (np.uint64, [0, 2**63 + 5, 2**64 - 1]),
    "i64": (np.int64, [-2**63, 9, 2**63 - 1]),
    "f16": (np.float16, [0.5, -65504.0, 3.140625]),
    "f32": (np.float32, [3.5, -0.001220703125, 2.0**100]),
    "f64": (np.float64, [1e300, -0.1, 5e-324]),
}


def address(array):
    return array.__array_interface__["data"][0]


def element0(tensor):
    with tensor.map() as m:
        return m.address


@pytest.mark.parametrize("dtype", sorted(NUMPY_DTYPES))
def test_round_trip_through_numpy(dtype, shm):
    numpy_type, values = NUMPY_DTYPES[dtype]
    source = np.array(values, dtype=numpy_type)
    t = tensorbuf.from_numpy(source, memory=shm)
    assert t.dtype == dtype and t.shape == (3,) and t.memory == "shm"
    assert [t[i] for i in range(3)] == values
    back = np.asarray(t)
    assert back.dtype == source.dtype
    np.testing.assert_array_equal(back, source)
    assert address(back) == element0(t)
    if dtype == "bool" and not NUMPY_DLPACK_BOOL:
        with pytest.raises(RuntimeError, match="Unsupported dtype"):
            np.from_dlpack(t)
        return
    via_dlpack = np.from_dlpack(t)
    assert via_dlpack.dtype == source.dtype
    np.testing.assert_array_equal(via_dlpack, source)
    assert address(via_dlpack) == element0(t)


@pytest.mark.parametrize("dtype", sorted(NUMPY_DTYPES))
def test_asarray_shares_memory_both_ways(dtype):
    numpy_type, values = NUMPY_DTYPES[dtype]
    t = tensorbuf.Tensor((2, 3), dtype)
    a = np.asarray(t)
    assert a.shape == (2, 3) and a.dtype == numpy_type
    assert a.flags.writeable and a.flags.c_contiguous
    a[1, :] = values
    assert [t[1, j] for j in range(3)] == values
    t[0, 2] = values[1]
    assert a[0, 2] == values[1]


def test_from_dlpack_shares_memory():
    t = tensorbuf.Tensor((4,), "i32")
    a = np.from_dlpack(t)
    assert address(a) == element0(t)
    t[2] = 17
    assert a[2] == 17
    if NUMPY_2:  # DLPack 1.x: writable unless flagged read-only
        a[3] = -4
        assert t[3] == -4
    else:  # NumPy 1.x marks every DLPack import read-only
        assert not a.flags.writeable


def test_strided_views_keep_their_strides():
    t = tensorbuf.from_numpy(np.arange(24, dtype=np.int16).reshape(4, 6))
    view = t[1:, ::-2]
    a = np.asarray(view)
    assert a.strides == (12, -4)
    np.testing.assert_array_equal(a, np.arange(24).reshape(4, 6)[1:, ::-2])
    # DLPack refuses what its consumers cannot take (torch aborts on a
    # negative stride); the buffer protocol above shares it fine.
    with pytest.raises(BufferError, match="negative strides"):
        np.from_dlpack(view)
    forward = t[1:, ::2]
    d = np.from_dlpack(forward)
    assert d.strides == (12, 4) and address(d) == element0(forward)


def test_read_only_tensors_come_out_read_only():
    t = tensorbuf.Tensor.from_buffer(tensorbuf.Buffer.wrap(b"\x01\x02\x03\x04"), (4,))
    a = np.asarray(t)
    assert not a.flags.writeable
    np.testing.assert_array_equal(a, [1, 2, 3, 4])
    with pytest.raises(ValueError):
        a[0] = 9
    if NUMPY_2:
        d = np.from_dlpack(t)  # versioned, with the read-only flag
        assert not d.flags.writeable and address(d) == address(a)
    else:
        with pytest.raises(BufferError):  # legacy DLPack cannot say read-only
            np.from_dlpack(t)


def test_bf16_is_refused_clearly():
    t = tensorbuf.Tensor((2,), "bf16")
    with pytest.raises(tensorbuf.DtypeError, match="bf16"):
        np.asarray(t)
    with pytest.raises(tensorbuf.DtypeError):
        memoryview(t)
    with pytest.raises(Exception):  # NumPy has no bfloat16 DLPack type
        np.from_dlpack(t)


@pytest.mark.parametrize("bad", ["complex64", "object", "U3", "datetime64[s]"])
def test_from_numpy_refuses_other_dtypes(bad):
    with pytest.raises(tensorbuf.DtypeError):
        tensorbuf.from_numpy(np.zeros(2, dtype=bad))


def test_from_numpy_copies_any_layout(shm):
    base = np.arange(60, dtype=np.float32).reshape(3, 4, 5)
    for source in (base[:, ::2, 1::2], base.T, base[::-1], base.astype(">f4"),
                   np.asfortranarray(base), base[1], base[0, 0, 0]):
        t = tensorbuf.from_numpy(source, memory=shm, name="copy")
        assert t.shape == source.shape and t.contiguous and t.name == "copy"
        np.testing.assert_array_equal(np.asarray(t), source)
        if source.ndim > 0:
            assert not np.shares_memory(np.asarray(t), base)
    assert tensorbuf.from_numpy([[1, 2], [3, 4]]).dtype == "i64"
    assert tensorbuf.from_numpy(np.zeros((0, 3), np.uint8)).shape == (0, 3)


def test_tensorbuf_from_dlpack_of_numpy_is_zero_copy():
    a = np.arange(6, dtype=np.float64).reshape(2, 3)
    t = tensorbuf.from_dlpack(a)
    assert t.shape == (2, 3) and t.dtype == "f64" and t.memory == "heap"
    assert element0(t) == address(a)
    t[1, 2] = -1.0
    assert a[1, 2] == -1.0
    a[0, 0] = 42.0
    assert t[0, 0] == 42.0
    view = tensorbuf.from_dlpack(a[:, ::-1])
    assert view.strides == (3, -1) and view[0, 0] == 2.0


def test_tensorbuf_from_dlpack_keeps_the_producer_alive():
    a = np.arange(1000, dtype=np.int64)
    t = tensorbuf.from_dlpack(a)
    del a
    assert t[999] == 999
    t[0] = 5
    assert np.asarray(t)[0] == 5


def test_tensorbuf_from_dlpack_copy():
    a = np.arange(4, dtype=np.uint8)
    t = tensorbuf.from_dlpack(a, copy=True)
    assert element0(t) != address(a)
    np.testing.assert_array_equal(np.asarray(t), a)


def test_numpy_read_only_arrays():
    a = np.arange(4, dtype=np.uint8)
    a.flags.writeable = False
    if NUMPY_2:
        t = tensorbuf.from_dlpack(a)
        assert t.read_only
        with pytest.raises(tensorbuf.ReadOnlyError):
            t[0] = 1
    else:
        with pytest.raises(BufferError):  # NumPy 1.x refuses to export them
            tensorbuf.from_dlpack(a)


def test_map_and_numpy():
    t = tensorbuf.Tensor((2, 2), "u16")
    with t.map("rw") as m:
        a = m.numpy()
        a[...] = [[1, 2], [3, 4]]
        del a
    assert t[1, 0] == 3
    with t.map("r") as m:
        a = np.asarray(m)
        assert not a.flags.writeable
        del a


def test_slice_assignment_through_numpy():
    t = tensorbuf.Tensor((3, 3), "f32")
    t[1:, ::2] = 7
    np.testing.assert_array_equal(np.asarray(t), [[0, 0, 0], [7, 0, 7], [7, 0, 7]])


def test_array_protocol_copy_and_dtype():
    t = tensorbuf.Tensor((2,), "u8")
    copied = t.__array__(copy=True)
    assert address(copied) != element0(t)
    assert t.__array__(dtype=np.float32).dtype == np.float32
    assert np.array(t, dtype=np.float64).dtype == np.float64
