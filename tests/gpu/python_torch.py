"""tensorbuf with PyTorch and NumPy 2 on the GPU machine (Python 3.12).

    python3 tests/gpu/python_torch.py [PACKAGE_DIR]

PACKAGE_DIR holds the tensorbuf package built for this interpreter by
tests/gpu/build_python_module.sh (default build-py/gpu-python). Checks, on
CPU tensors: torch.from_dlpack(tensor) shares the memory (data_ptr equal to
the tensor's address, writes visible both ways, the memory outlives the
tensorbuf object); tensorbuf.from_dlpack(torch tensor) likewise, strided
views included; NumPy 2's versioned DLPack (writable arrays, read-only
tensors read-only); a CUDA tensor is refused cleanly. Then it runs the
binding's pytest suite when pytest is installed (the NumPy 2 branches).

Prints one PASS / FAIL / SKIP line per check; exits 1 if any failed.
"""

import gc
import importlib.util
import os
import subprocess
import sys
import traceback

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PACKAGE_DIR = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "build-py",
                                                                 "gpu-python")
sys.path.insert(0, os.path.abspath(PACKAGE_DIR))

import numpy as np  # noqa: E402
import torch  # noqa: E402

import tensorbuf  # noqa: E402

failures = []


def report(outcome, name, detail=""):
    print(f"{outcome} {name}{': ' + detail if detail else ''}", flush=True)
    if outcome == "FAIL":
        failures.append(name)


def check(name):
    """Runs the decorated function as one check: PASS unless it raises
    (AssertionError or anything else: FAIL); it may return "SKIP: why"."""
    def run(function):
        try:
            outcome = function()
        except Exception as error:  # a failed check, whatever raised
            report("FAIL", name, f"{type(error).__name__}: {error}")
            traceback.print_exc(file=sys.stdout)
        else:
            if isinstance(outcome, str) and outcome.startswith("SKIP"):
                report("SKIP", name, outcome[len("SKIP: "):])
            else:
                report("PASS", name)
        gc.collect()
        return function
    return run


def address(tensor):
    with tensor.map() as m:
        return m.address


TORCH_DTYPES = {
    "bool": torch.bool, "u8": torch.uint8, "i8": torch.int8, "i16": torch.int16,
    "i32": torch.int32, "i64": torch.int64, "f16": torch.float16,
    "bf16": torch.bfloat16, "f32": torch.float32, "f64": torch.float64,
}
# Newer PyTorch has these unsigned types (with few operations).
for name, attribute in (("u16", "uint16"), ("u32", "uint32"), ("u64", "uint64")):
    if hasattr(torch, attribute):
        TORCH_DTYPES[name] = getattr(torch, attribute)

print(f"INFO python {sys.version.split()[0]}, torch {torch.__version__}, "
      f"numpy {np.__version__}, tensorbuf {tensorbuf.__version__} "
      f"({tensorbuf.__file__}), CUDA {torch.cuda.is_available()}")
START = tensorbuf.live_objects()


for dtype_name, torch_dtype in TORCH_DTYPES.items():
    @check(f"torch.from_dlpack(Tensor {dtype_name}) shares memory")
    def _(dtype_name=dtype_name, torch_dtype=torch_dtype):
        t = tensorbuf.Tensor((3, 4), dtype_name, memory="shm")
        try:
            x = torch.from_dlpack(t)
        except (RuntimeError, TypeError, BufferError) as error:
            if dtype_name in ("u16", "u32", "u64"):
                return f"SKIP: this torch does not import {dtype_name}: {error}"
            raise
        assert x.dtype == torch_dtype, x.dtype
        assert tuple(x.shape) == (3, 4) and x.stride() == (4, 1)
        assert x.data_ptr() == address(t), (hex(x.data_ptr()), hex(address(t)))
        value = True if dtype_name == "bool" else 3
        t[1, 2] = value
        assert x[1, 2].item() == value
        if dtype_name not in ("u16", "u32", "u64"):  # few ops on these
            x[2, 3] = value
            assert t[2, 3] == value


@check("torch.from_dlpack keeps the memory after the Tensor is dropped")
def _():
    t = tensorbuf.Tensor((1000,), "f32", memory="shm")
    t[999] = 2.5
    x = torch.from_dlpack(t)
    del t
    gc.collect()
    assert x[999].item() == 2.5
    x += 1
    assert x[999].item() == 3.5


@check("torch.from_dlpack of strided and reversed views")
def _():
    t = tensorbuf.from_numpy(np.arange(24, dtype=np.float32).reshape(4, 6))
    x = torch.from_dlpack(t[1:, ::2])
    assert x.stride() == (6, 2) and x.tolist() == np.arange(24).reshape(4, 6)[1:, ::2].tolist()
    # torch aborts the process on negative DLPack strides: tensorbuf must
    # refuse to export them (BufferError) rather than hand them over.
    try:
        torch.from_dlpack(t[::-1])
    except BufferError:
        pass
    else:
        raise AssertionError("a reversed view was exported to torch")


@check("torch.from_dlpack of a read-only tensor")
def _():
    t = tensorbuf.Tensor.from_buffer(tensorbuf.Buffer.wrap(b"\x01\x02\x03\x04"), (4,))
    try:
        x = torch.from_dlpack(t)
    except (RuntimeError, BufferError) as error:
        return f"SKIP: torch refuses read-only memory ({type(error).__name__}: {error})"
    assert x.tolist() == [1, 2, 3, 4]


@check("tensorbuf.from_dlpack(torch tensor) is zero-copy")
def _():
    x = torch.arange(12, dtype=torch.float32).reshape(3, 4)
    t = tensorbuf.from_dlpack(x)
    assert t.shape == (3, 4) and t.dtype == "f32" and t.strides == (4, 1)
    assert address(t) == x.data_ptr()
    t[2, 3] = -1.0
    assert x[2, 3].item() == -1.0
    x[0, 0] = 9.0
    assert t[0, 0] == 9.0
    del x
    gc.collect()
    assert t[0, 0] == 9.0  # the producer is kept alive


@check("tensorbuf.from_dlpack(torch views and dtypes)")
def _():
    x = torch.arange(20, dtype=torch.int64).reshape(4, 5)
    view = tensorbuf.from_dlpack(x.t())
    assert view.shape == (5, 4) and view.strides == (1, 5) and view[4, 3] == 19
    sliced = tensorbuf.from_dlpack(x[:, 1::2])
    assert sliced.strides == (5, 2) and sliced[3, 1] == 18
    for torch_dtype, name in ((torch.bfloat16, "bf16"), (torch.float16, "f16"),
                              (torch.bool, "bool"), (torch.uint8, "u8")):
        assert tensorbuf.from_dlpack(torch.zeros(3, dtype=torch_dtype)).dtype == name


@check("a CUDA tensor is refused by tensorbuf.from_dlpack")
def _():
    if not torch.cuda.is_available():
        return "SKIP: no CUDA device"
    x = torch.ones(4, device="cuda")
    try:
        tensorbuf.from_dlpack(x)
    except tensorbuf.UnsupportedError:
        pass
    else:
        raise AssertionError("a CUDA tensor was imported as CPU memory")
    assert x.sum().item() == 4.0  # torch's tensor is untouched


@check("numpy 2 from_dlpack(Tensor) is writable and shares memory")
def _():
    if int(np.__version__.split(".")[0]) < 2:
        return f"SKIP: numpy {np.__version__} is not 2.x"
    t = tensorbuf.Tensor((4,), "i32")
    a = np.from_dlpack(t)
    assert a.flags.writeable and a.__array_interface__["data"][0] == address(t)
    a[1] = 7
    assert t[1] == 7
    b = np.from_dlpack(tensorbuf.from_numpy(np.array([True, False])))
    assert b.dtype == np.bool_ and b.tolist() == [True, False]


@check("numpy 2 from_dlpack of a read-only Tensor is read-only")
def _():
    if int(np.__version__.split(".")[0]) < 2:
        return f"SKIP: numpy {np.__version__} is not 2.x"
    t = tensorbuf.Tensor.from_buffer(tensorbuf.Buffer.wrap(b"abcd"), (4,))
    a = np.from_dlpack(t)
    assert not a.flags.writeable and bytes(a) == b"abcd"


@check("no tensorbuf handle left alive")
def _():
    gc.collect()
    assert tensorbuf.live_objects() == START, tensorbuf.live_objects() - START


@check("the binding's pytest suite")
def _():
    if importlib.util.find_spec("pytest") is None:
        return "SKIP: pytest is not installed"
    tests = os.path.join(ROOT, "bindings", "python", "tests")
    environment = dict(os.environ, PYTHONPATH=os.path.abspath(PACKAGE_DIR))
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p",
                           "no:cacheprovider", tests], env=environment)
    assert done.returncode == 0, f"pytest exited {done.returncode}"


print(f"python_torch: {len(failures)} failed" + (f" ({', '.join(failures)})"
                                                 if failures else ""))
sys.exit(1 if failures else 0)
