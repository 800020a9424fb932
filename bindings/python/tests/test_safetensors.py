"""tensorbuf.safetensors: load/save, zero copy into NumPy and PyTorch, and a
file written by tensorbuf read back by an independent reader written here
from the format's description (struct + json)."""

import json
import struct

import numpy
import pytest

import tensorbuf
from tensorbuf import safetensors

NUMPY_OF = {"BOOL": numpy.bool_, "U8": numpy.uint8, "I8": numpy.int8,
            "U16": numpy.uint16, "I16": numpy.int16, "U32": numpy.uint32,
            "I32": numpy.int32, "U64": numpy.uint64, "I64": numpy.int64,
            "F16": numpy.float16, "F32": numpy.float32, "F64": numpy.float64}


def independent_read(path):
    """{name: (dtype, shape, bytes)}, metadata: read with struct and json."""
    with open(path, "rb") as f:
        blob = f.read()
    (n,) = struct.unpack("<Q", blob[:8])
    assert n % 8 == 0, "the header is padded to a multiple of 8"
    header = json.loads(blob[8:8 + n].decode("utf-8"))
    assert blob[8:8 + n].decode().endswith(" ") or n == len(
        blob[8:8 + n].rstrip(b" "))
    data = blob[8 + n:]
    meta = header.pop("__metadata__", {})
    out = {}
    end = 0
    for name, entry in header.items():
        begin, stop = entry["data_offsets"]
        assert begin == end, "no holes: tensors follow each other"
        end = stop
        out[name] = (entry["dtype"], entry["shape"], data[begin:stop])
    assert end == len(data)
    return out, meta


def test_saved_file_reads_independently(tmp_path):
    rng = numpy.random.default_rng(7)
    tensors = {}
    for code, np_type in NUMPY_OF.items():
        array = (rng.integers(0, 100, size=(2, 3)) % (2 if code == "BOOL" else 100)).astype(np_type)
        tensors[f"t_{code}"] = tensorbuf.from_numpy(array)
    tensors["scalar"] = tensorbuf.from_numpy(numpy.array(3.5, dtype=numpy.float32))
    tensors["empty"] = tensorbuf.from_numpy(numpy.zeros((0, 4), dtype=numpy.int64))
    path = tmp_path / "m.safetensors"
    safetensors.save(path, tensors, metadata={"format": "pt", "note": "ü"})
    read, meta = independent_read(path)
    assert meta == {"format": "pt", "note": "ü"}
    assert set(read) == set(tensors)
    for name, tensor in tensors.items():
        dtype, shape, raw = read[name]
        want = numpy.asarray(tensor)
        assert tuple(shape) == want.shape
        got = numpy.frombuffer(raw, dtype=NUMPY_OF[dtype]).reshape(shape)
        assert got.dtype == want.dtype or dtype == "BOOL"
        numpy.testing.assert_array_equal(got, want)


def test_load_is_zero_copy_into_numpy_and_torch(tmp_path):
    path = tmp_path / "w.safetensors"
    weights = numpy.arange(12, dtype=numpy.float32).reshape(3, 4)
    safetensors.save(path, {"w": tensorbuf.from_numpy(weights)})
    loaded = safetensors.load(path)
    assert list(loaded) == ["w"]
    w = loaded["w"]
    assert w.memory == "file"
    a = numpy.asarray(w)
    numpy.testing.assert_array_equal(a, weights)
    assert not a.flags.writeable
    b = numpy.asarray(w)
    assert a.ctypes.data == b.ctypes.data  # the same mapping, not copies
    torch = pytest.importorskip("torch")
    if not hasattr(torch.Tensor, "__dlpack_c_exchange_api__") and \
            tuple(int(x) for x in torch.__version__.split(".")[:2]) < (2, 1):
        # torch < 2.1 speaks only legacy DLPack, which cannot say
        # "read-only": the library refuses rather than hand out writable
        # file pages.
        with pytest.raises(BufferError, match="read-only"):
            torch.from_dlpack(w)
        return
    t = torch.from_dlpack(w)
    assert t.data_ptr() == a.ctypes.data
    assert t.tolist() == weights.tolist()


def test_sealed_copy_and_metadata(tmp_path):
    path = tmp_path / "s.safetensors"
    safetensors.save(path, {"x": tensorbuf.from_numpy(numpy.ones(5, numpy.int16))},
                     metadata={"k": "v"})
    assert safetensors.load(path, sealed_copy=True)["x"].memory == "shm"
    assert safetensors.metadata(path) == {"k": "v"}
    assert safetensors.map_file(path).memory == "file"


def test_unknown_dtype_names_the_tensor(tmp_path):
    path = tmp_path / "bad.safetensors"
    header = json.dumps({"w": {"dtype": "F8_E4M3", "shape": [1],
                               "data_offsets": [0, 1]}}).encode()
    path.write_bytes(struct.pack("<Q", len(header)) + header + b"\0")
    before = tensorbuf.live_objects()
    with pytest.raises(tensorbuf.Error) as caught:
        safetensors.load(path)
    assert caught.value.name == "TB_ERR_DTYPE"
    assert 'tensor "w"' in str(caught.value)
    assert tensorbuf.live_objects() == before
