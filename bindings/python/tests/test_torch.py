"""DLPack with PyTorch on the CPU (Debian's python3-torch): both directions
share the memory, with no copy, and the memory lives as long as either side
holds it. The GPU machine's tests/gpu/python_torch.py does the same on CUDA."""

import gc

import pytest

import tensorbuf

torch = pytest.importorskip(
    "torch", reason="PyTorch is not installed (Debian: python3-torch)")


def address_of(tensor):
    with tensor.map() as m:
        return m.address


@pytest.mark.parametrize("memory", ["heap", "shm"])
def test_torch_from_dlpack_shares_the_memory(memory):
    if not tensorbuf.memory_available(memory):
        pytest.skip(f"{memory} memory is not available in this process")
    t = tensorbuf.Tensor((2, 3), "f32", memory=memory)
    t[1, 2] = 1.5
    x = torch.from_dlpack(t)
    assert x.shape == (2, 3) and x.dtype == torch.float32
    assert x.device.type == "cpu"
    assert x.data_ptr() == address_of(t)
    assert x[1, 2].item() == 1.5
    x[0, 1] = 4.0  # torch writes, tensorbuf reads: the same bytes
    assert t[0, 1] == 4.0
    t[0, 0] = -2.0
    assert x[0, 0].item() == -2.0


# Not bool: Debian 12's torch 1.13 predates DLPack's kDLBool.
@pytest.mark.parametrize("dtype,torch_dtype", [
    ("u8", "uint8"), ("i8", "int8"), ("i16", "int16"), ("i32", "int32"),
    ("i64", "int64"), ("f16", "float16"), ("bf16", "bfloat16"),
    ("f32", "float32"), ("f64", "float64")])
def test_dtypes_travel_both_ways(dtype, torch_dtype):
    t = tensorbuf.Tensor((4,), dtype)
    x = torch.from_dlpack(t)
    assert x.dtype == getattr(torch, torch_dtype)
    back = tensorbuf.from_dlpack(x)
    assert back.dtype == dtype and back.shape == (4,)
    assert address_of(back) == address_of(t)


def test_views_keep_their_strides():
    t = tensorbuf.Tensor((3, 4), "i32")
    for i in range(3):
        for j in range(4):
            t[i, j] = 10 * i + j
    x = torch.from_dlpack(t[:, 1::2])
    assert x.shape == (3, 2) and x.stride() == (4, 2)
    assert x.tolist() == [[1, 3], [11, 13], [21, 23]]


def test_tensorbuf_from_torch_shares_the_memory():
    x = torch.arange(12, dtype=torch.float32).reshape(3, 4)
    t = tensorbuf.from_dlpack(x)
    assert t.shape == (3, 4) and t.dtype == "f32"
    assert address_of(t) == x.data_ptr()
    x[2, 3] = 100.0  # torch writes, tensorbuf reads
    assert t[2, 3] == 100.0
    t[0, 0] = -1.0
    assert x[0, 0].item() == -1.0


def test_tensorbuf_takes_a_transposed_torch_tensor_without_a_copy():
    x = torch.arange(6, dtype=torch.int64).reshape(2, 3).t()
    t = tensorbuf.from_dlpack(x)
    assert t.shape == (3, 2) and t.strides == (1, 3)
    assert not t.contiguous
    assert [[t[i, j] for j in range(2)] for i in range(3)] == x.tolist()


def test_torch_keeps_the_memory_after_the_tensor_goes():
    t = tensorbuf.Tensor((5,), "f64", memory="heap")
    t[4] = 7.25
    x = torch.from_dlpack(t)
    del t
    gc.collect()
    assert x[4].item() == 7.25
    x[4] = 1.0  # still writable: the export holds its own map
    assert x[4].item() == 1.0


def test_tensorbuf_keeps_the_torch_tensor_alive():
    x = torch.full((4,), 3, dtype=torch.int16)
    t = tensorbuf.from_dlpack(x)
    del x
    gc.collect()
    assert [t[i] for i in range(4)] == [3, 3, 3, 3]


def test_read_only_tensors_are_refused_to_torch():
    """torch takes only legacy capsules, which cannot mark memory read-only:
    a read-only tensor must not reach it writable."""
    t = tensorbuf.Tensor.from_buffer(tensorbuf.Buffer.wrap(bytes(8)), (2,), "f32")
    assert t.read_only
    with pytest.raises(BufferError):
        torch.from_dlpack(t)
