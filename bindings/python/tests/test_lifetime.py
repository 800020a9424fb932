"""Lifetimes: memory outlives its Python objects exactly as long as needed,
destroy-notifies take the GIL, nothing breaks at interpreter shutdown."""

import ctypes
import gc
import os
import subprocess
import sys
import threading
import time

import pytest

import tensorbuf
from tensorbuf import core

np = pytest.importorskip("numpy")


def test_numpy_array_outlives_the_tensor():
    start = tensorbuf.live_objects()
    t = tensorbuf.Tensor((1000,), "u32")
    t[999] = 7
    a = np.asarray(t)
    d = np.from_dlpack(t)
    view = memoryview(t)
    del t
    gc.collect()
    assert tensorbuf.live_objects() > start  # the exports hold the memory
    assert a[999] == 7 and d[999] == 7 and view[999] == 7
    a[0] = 3
    assert d[0] == 3
    del a, d
    view.release()
    gc.collect()
    assert tensorbuf.live_objects() == start


def test_map_outlives_the_tensor_object():
    t = tensorbuf.Tensor((4,), "u8")
    m = t.map("rw")
    del t
    memoryview(m)[2] = 5
    assert m.tensor[2] == 5
    m.unmap()


def test_views_keep_the_buffer():
    t = tensorbuf.Tensor((4, 4), "i16")
    t[3, 3] = -2
    row = t[3]
    reversed_row = t[3, ::-1]
    del t
    assert row[3] == -2 and reversed_row[0] == -2


def test_wrapped_python_memory_stays_alive():
    data = bytearray(b"\x01\x02\x03\x04")
    t = tensorbuf.Tensor.from_buffer(tensorbuf.Buffer.wrap(data), (4,))
    with pytest.raises(BufferError):
        data.append(5)  # the buffer holds an export of it
    del data
    assert t[3] == 4


def test_destroy_notify_takes_the_gil():
    """The last reference of wrapped Python memory dropped by C code that
    does not hold the GIL (ctypes releases it around foreign calls): the
    destroy-notify must take the GIL to release the Python buffer."""
    # The binding's module: dlsym finds the library's functions through it,
    # whether it links libtensorbuf.so.0 or holds libtensorbuf.a.
    library = ctypes.CDLL(core._tensorbuf_core.__file__)
    library.tb_tensor_unref.argtypes = [ctypes.c_void_p]
    data = bytearray(64)
    exports_before = sys.getrefcount(data)
    tensor = tensorbuf.Tensor.from_buffer(tensorbuf.Buffer.wrap(data), (64,))
    handle = core.tb_tensor_ref(tensor._handle)
    handle.thisown = False  # the C reference is ours to drop, below
    pointer = int(handle.this)
    del tensor, handle
    gc.collect()
    assert sys.getrefcount(data) > exports_before
    library.tb_tensor_unref(pointer)
    assert sys.getrefcount(data) == exports_before
    data.append(1)  # no export is left


def test_blocking_calls_release_the_gil():
    fence = core.tb_fence_new(0)
    outcome = []

    def wait():
        try:
            core.tb_fence_wait(fence, 1, 5_000_000_000)
            outcome.append("signalled")
        except tensorbuf.TimeoutError:
            outcome.append("timed out")

    waiter = threading.Thread(target=wait)
    waiter.start()
    time.sleep(0.1)  # Python code runs while the other thread waits in C
    core.tb_fence_signal(fence, 1)
    waiter.join(10)
    assert outcome == ["signalled"]


SHUTDOWN_SCRIPT = r"""
import numpy, tensorbuf
# Objects still alive when the interpreter exits, in every ownership shape.
array = numpy.arange(10.0)
imported = tensorbuf.from_dlpack(array)           # holds numpy's deleter
exported = numpy.asarray(tensorbuf.Tensor((4,), "u8"))
dlpack_array = numpy.from_dlpack(tensorbuf.Tensor((4,), "u8"))
capsule = tensorbuf.Tensor((2,), "u8").__dlpack__()  # never consumed
wrapped = tensorbuf.Tensor.from_buffer(tensorbuf.Buffer.wrap(bytearray(8)), (8,))
cycle = [imported]
cycle.append(cycle)
print("ok")
"""


def test_interpreter_shutdown_with_live_objects():
    environment = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    done = subprocess.run([sys.executable, "-c", SHUTDOWN_SCRIPT],
                          capture_output=True, text=True, timeout=60,
                          env=environment)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "ok\n" and done.stderr == ""
