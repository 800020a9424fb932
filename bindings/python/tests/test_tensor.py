"""Tensor, Buffer and Map: construction, properties, indexing, views, maps."""

import hashlib
import os

import pytest

import tensorbuf
from tensorbuf import core


def test_constructor_takes_keywords_and_names(shm):
    t = tensorbuf.Tensor((2, 3), dtype="f32", memory=shm, name="frame")
    assert t.shape == (2, 3)
    assert t.strides == (3, 1)
    assert t.dtype == "f32"
    assert t.itemsize == 4
    assert t.ndim == 2
    assert t.size == 6
    assert t.nbytes == 24
    assert t.offset == 0
    assert t.memory == "shm"
    assert t.name == "frame"
    assert not t.read_only
    assert t.contiguous
    assert t.buffer_id > 0
    assert len(t) == 2


def test_defaults_and_shapes():
    t = tensorbuf.Tensor(5)
    assert (t.shape, t.dtype) == ((5,), "f32")
    assert t.memory in tensorbuf.MEMORY_KINDS
    scalar = tensorbuf.Tensor((), "i64")
    assert scalar.shape == () and scalar.size == 1
    with pytest.raises(TypeError):
        len(scalar)
    empty = tensorbuf.Tensor((0, 4), "u8")
    assert empty.size == 0 and empty.nbytes == 0 and len(empty) == 0
    assert bool(empty) and bool(scalar)


def test_every_dtype_by_name():
    assert tensorbuf.DTYPES == ("bool", "u8", "i8", "u16", "i16", "u32", "i32",
                                "u64", "i64", "f16", "bf16", "f32", "f64")
    for dtype in tensorbuf.DTYPES:
        t = tensorbuf.Tensor((2,), dtype)
        assert t.dtype == dtype
        assert t.itemsize == core.tb_dtype_size(core.tb_dtype_from_name(dtype))


def test_alloc_options_reach_the_library(shm):
    t = tensorbuf.Tensor((3,), "u8", memory="heap", alignment=4096, name="x")
    assert t.memory == "heap"
    with t.map() as m:
        assert m.address % 4096 == 0
    assert tensorbuf.Tensor((3,), "u8", memory=shm, huge_pages=True).memory == "shm"


def test_name_can_be_set_and_cleared():
    t = tensorbuf.Tensor((1,), "u8")
    assert t.name is None
    t.name = "camera"
    assert t.name == "camera"
    t.name = None
    assert t.name is None


def test_repr():
    t = tensorbuf.Tensor((2, 3), "u16", memory="heap", name="x")
    assert repr(t) == ("tensorbuf.Tensor(shape=(2, 3), dtype='u16', "
                       "memory='heap', name='x')")
    r = tensorbuf.Tensor.from_buffer(tensorbuf.Buffer.wrap(b"ab"), (2,))
    assert repr(r).endswith("read_only=True)")


ELEMENTS = {
    "bool": [True, False],
    "u8": [0, 255],
    "i8": [-128, 127],
    "u16": [0, 65535],
    "i16": [-32768, 32767],
    "u32": [0, 2**32 - 1],
    "i32": [-2**31, 2**31 - 1],
    "u64": [0, 2**63 - 1, 2**63, 2**64 - 1],
    "i64": [-2**63, 2**63 - 1],
    "f16": [0.5, -65504.0],
    "bf16": [1.5, -2.0**100],
    "f32": [3.5, -2.0**100],
    "f64": [1e300, -0.1],
}


@pytest.mark.parametrize("dtype", sorted(ELEMENTS))
def test_elements_round_trip_exactly(dtype):
    values = ELEMENTS[dtype]
    t = tensorbuf.Tensor((len(values), 2), dtype)
    for i, value in enumerate(values):
        t[i, 1] = value
        t[i, -2] = value
    for i, value in enumerate(values):
        got = t[i, 1]
        assert got == value and t[i, 0] == value
        assert type(got) is type(value)


def test_element_index_errors():
    t = tensorbuf.Tensor((2, 3), "f32")
    with pytest.raises(tensorbuf.OutOfRangeError):
        t[2, 0]
    with pytest.raises(IndexError):
        t[0, -4]
    with pytest.raises(IndexError):
        t[0, 0, 0]
    with pytest.raises(TypeError):
        t[0, 1.5]
    with pytest.raises(tensorbuf.OutOfRangeError):
        tensorbuf.Tensor((2,), "u8")[0] = 256
    with pytest.raises(tensorbuf.OutOfRangeError):
        tensorbuf.Tensor((2,), "i32")[0] = 1.5
    with pytest.raises(tensorbuf.OutOfRangeError):
        tensorbuf.Tensor((1,), "u64")[0] = 2**64
    with pytest.raises(tensorbuf.OutOfRangeError):
        tensorbuf.Tensor((1,), "i64")[0] = 2**63


def test_scalar_indexing():
    t = tensorbuf.Tensor((), "f64")
    t[()] = 2.5
    assert t[()] == 2.5
    assert t[...].shape == ()


def test_views_share_memory():
    t = tensorbuf.Tensor((4, 6), "i32", name="grid")
    for i in range(4):
        for j in range(6):
            t[i, j] = 10 * i + j
    row = t[2]
    assert row.shape == (6,) and row[5] == 25
    assert row.buffer_id == t.buffer_id and row.shares_memory(t)
    assert row.name == "grid"
    column = t[:, 3]
    assert column.shape == (4,) and column.strides == (6,)
    assert [column[i] for i in range(4)] == [3, 13, 23, 33]
    every_other = t[1:, ::2]
    assert every_other.shape == (3, 3) and every_other.strides == (6, 2)
    assert every_other[0, 1] == 12
    backwards = t[::-1, ::-3]
    assert backwards.strides == (-6, -3)
    assert backwards[0, 0] == 35 and backwards[3, 1] == 2
    assert t[..., 1].shape == (4,) and t[1, ...].shape == (6,)
    assert t[5:2].shape == (0, 6)
    backwards[0, 0] = -1
    assert t[3, 5] == -1
    assert not every_other.contiguous and t[1:3].contiguous


def test_views_keep_quantization_for_plain_slices():
    t = tensorbuf.Tensor((4, 4), "i8")
    t.set_quantization(0.5, 3)
    assert t[1:3, ::2].quantization == (-1, (0.5,), (3,))


def test_iteration():
    t = tensorbuf.Tensor((3,), "u8")
    t[1] = 7
    assert list(t) == [0, 7, 0]
    rows = list(tensorbuf.Tensor((2, 2), "u8"))
    assert [r.shape for r in rows] == [(2,), (2,)]


def test_reshape_and_slice():
    t = tensorbuf.Tensor((2, 6), "u8")
    r = t.reshape(3, -1)
    assert r.shape == (3, 4) and r.buffer_id == t.buffer_id
    assert t.reshape((12,)).shape == (12,)
    with pytest.raises(tensorbuf.ShapeError):
        t.reshape(5, 5)
    s = t.slice(1, 1, 5, 2)
    assert s.shape == (2, 2) and s.strides == (6, 2)
    with pytest.raises(tensorbuf.LayoutError):
        s.reshape(4)
    with pytest.raises(tensorbuf.OutOfRangeError):
        t.slice(2, 0, 1)


def test_bytes_and_copy(shm):
    t = tensorbuf.Tensor((2, 2), "u16")
    t.write_bytes(bytes(range(8)))
    assert t.tobytes() == bytes(range(8))
    assert t[1, 0] == 0x0504
    view = t[:, 1]
    assert view.tobytes() == bytes([2, 3, 6, 7])
    copy = view.copy(memory=shm)
    assert copy.memory == "shm" and copy.contiguous
    assert copy.tobytes() == view.tobytes() and not copy.shares_memory(t)
    with pytest.raises(tensorbuf.OutOfRangeError):
        t.write_bytes(b"short")


def test_quantization():
    t = tensorbuf.Tensor((2, 3), "u8")
    assert t.quantization is None
    t.set_quantization([0.5, 0.25], [1, 2], axis=0)
    assert t.quantization == (0, (0.5, 0.25), (1, 2))
    t.set_quantization(None)
    assert t.quantization is None
    with pytest.raises(tensorbuf.DtypeError):
        tensorbuf.Tensor((2,), "f32").set_quantization(0.5)
    with pytest.raises(ValueError):
        t.set_quantization([0.5, 0.25], [1], axis=0)


def test_map_context_manager():
    t = tensorbuf.Tensor((2, 2), "u8")
    with t.map("rw") as m:
        assert m.mapped and m.mode == "rw" and m.tensor is t
        view = memoryview(m)
        assert view.shape == (2, 2) and view.format == "B" and not view.readonly
        view[1, 1] = 9
        view.release()
    assert not m.mapped and m.address is None and m.flags == 0
    assert t[1, 1] == 9
    with t.map() as m:
        view = memoryview(m)
        assert view.readonly
        with pytest.raises(BufferError):
            m.unmap()  # the memoryview is still alive
        view.release()
    assert "unmapped" in repr(m)


def test_map_refuses_writes_to_read_only_memory():
    t = tensorbuf.Tensor.from_buffer(tensorbuf.Buffer.wrap(b"abcd"), (4,))
    assert t.read_only
    with pytest.raises(tensorbuf.ReadOnlyError):
        t.map("w")
    with t.map("r") as m:
        assert bytes(m) == b"abcd"


def test_memoryview_of_a_tensor():
    t = tensorbuf.Tensor((2, 3), "f32")
    view = memoryview(t)
    assert view.shape == (2, 3) and view.strides == (12, 4) and view.format == "f"
    view[1, 2] = 4.5
    assert t[1, 2] == 4.5
    strided = memoryview(t[:, ::-2])
    assert strided.strides == (12, -8) and strided.tolist() == [[0, 0], [4.5, 0]]
    with pytest.raises(BufferError):
        hashlib.sha1(t[:, ::2])  # a consumer that needs contiguous memory
    view.release()
    strided.release()


def test_buffer_wrap_shares_python_memory():
    data = bytearray(8)
    b = tensorbuf.Buffer.wrap(data)
    assert b.size == len(b) == 8 and b.memory == "heap" and not b.read_only
    t = tensorbuf.Tensor.from_buffer(b, (2,), "u32", offset=0)
    t[1] = 0x01020304
    assert data[4:] == bytearray([4, 3, 2, 1])
    assert tensorbuf.Buffer.wrap(b"abc").read_only
    assert tensorbuf.Buffer.wrap(bytearray(2), read_only=True).read_only
    assert "Buffer(size=8" in repr(b)


def test_buffer_ids_and_alive():
    b = tensorbuf.Buffer(64, memory="heap")
    buffer_id = b.id
    t = tensorbuf.Tensor.from_buffer(b, (4, 4), "u8", strides=(1, 4))
    assert t.strides == (1, 4) and t.buffer_id == buffer_id
    assert t.buffer.id == buffer_id
    del b, t
    assert not tensorbuf.buffer_alive(buffer_id)
    with pytest.raises(ValueError):
        tensorbuf.Tensor.from_buffer(tensorbuf.Buffer(4), (2,), strides=(1, 1))


def test_fd_round_trip(shm):
    t = tensorbuf.Tensor((4,), "i16", memory=shm)
    t[3] = -5
    fd = t.export_fd()
    try:
        u = tensorbuf.import_fd(fd, (4,), "i16")
    finally:
        os.close(fd)
    assert u[3] == -5 and u.memory == "shm"
    u[0] = 8
    assert t[0] == 8


def test_memory_available():
    assert tensorbuf.memory_available("heap")
    with pytest.raises(tensorbuf.InvalidArgumentError):
        tensorbuf.memory_available("nowhere")


def test_version():
    assert tensorbuf.__version__ == core.tb_version_string()
    assert tensorbuf.version_number == core.TB_VERSION_NUMBER


SELF_CLEARING_LIST = """
import tensorbuf
from tensorbuf import core

class Clears:
    '''An int (or float) that empties the list it is read from.'''
    def __init__(self, items, value):
        self.items, self.value = items, value
    def __index__(self):
        self.items.clear()
        return self.value
    def __float__(self):
        self.items.clear()
        return float(self.value)

class Other:
    def __init__(self, value):
        self.value = value
    def __index__(self):
        return self.value
    def __float__(self):
        return float(self.value)

shape = []
shape += [Clears(shape, 2)] + [Other(1) for _ in range(7)]
t = core.tb_tensor_new(core.TB_DTYPE_U8, shape, None)
assert [core.tb_tensor_dim(t, i) for i in range(8)] == [2] + [1] * 7, "shape"

q = core.tb_tensor_new(core.TB_DTYPE_U8, (4, 3), None)
scales = []
scales += [Clears(scales, 2)] + [Other(3), Other(4)]
core.tb_tensor_set_quantization(q, 1, scales, None)
assert core.tb_tensor_quantization_get(q, 2)[0] == 4.0, "scales"
print("ok")
"""


def test_sequences_changed_by_their_items_are_read_as_they_were():
    # Run apart: before the fix this read freed memory and crashed.
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", SELF_CLEARING_LIST],
                          capture_output=True, text=True, timeout=60,
                          check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"


def test_memory_trim_and_auto_skipped():
    tensorbuf.memory_trim()
    tensorbuf.Tensor((1024, 1024), "u8", memory="heap")  # dropped: 1 MiB cached
    assert tensorbuf.memory_trim() == 1 << 20
    assert tensorbuf.memory_trim() == 0
    t = tensorbuf.Tensor((4,), "u8", uninitialized=True)
    skipped = tensorbuf.memory_auto_skipped()
    assert isinstance(skipped, str)
    if t.memory != "dma" and "TENSORBUF_MEMORY" not in os.environ:
        assert skipped.startswith("dma: ")


def test_fd_is_borrowed(shm):
    t = tensorbuf.Tensor((16,), "u8", memory=shm)
    assert t.fd >= 0 and t.fd == t.fd
    assert os.fstat(t.fd).st_size >= 16
    assert tensorbuf.Tensor((16,), "u8", memory="heap").fd == -1


def test_buffer_key_is_equal_for_two_imports(shm):
    t = tensorbuf.Tensor((16,), "u8", memory=shm)
    fd = t.export_fd()
    try:
        a = tensorbuf.import_fd(fd, (16,))
        b = tensorbuf.import_fd(fd, (16,))
    finally:
        os.close(fd)
    assert a.buffer_id != b.buffer_id
    assert a.buffer_key == b.buffer_key == t.buffer_key != 0
    assert a.buffer.key == t.buffer.key and t.buffer.fd == t.fd
    heap = tensorbuf.Tensor((16,), "u8", memory="heap")
    assert heap.buffer_key == 0 and heap.buffer.key == 0 and heap.buffer.fd == -1
