"""tensorbuf CUDA tensors with PyTorch and CuPy on the GPU machine.

    python3 tests/gpu/python_cuda.py [PACKAGE_DIR]

Checks that torch.from_dlpack and cupy.from_dlpack of a "cuda" tensor share
its memory (same device pointer, writes visible both ways),
tensorbuf.from_dlpack of a torch CUDA tensor likewise, __dlpack_device__,
the __dlpack__ stream rules, a copy queued on a torch stream, fences
signalled and waited on from torch streams, and CUDA tensors (pooled too)
over a Channel to another process.
Exit status: 0 passed, 1 failed, 77 skipped (no GPU)."""
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else
                                   os.path.join(ROOT, "build-py", "gpu-python")))
import tensorbuf  # noqa: E402

if not tensorbuf.memory_available("cuda"):
    print("SKIP python_cuda: no CUDA driver or GPU", file=sys.stderr)
    sys.exit(77)
import cupy  # noqa: E402
import torch  # noqa: E402

failures = []


def check(cond, what):
    print(("PASS " if cond else "FAIL ") + what, flush=True)
    if not cond:
        failures.append(what)


t = tensorbuf.Tensor((4, 5), "f32", memory="cuda")
check(t.__dlpack_device__() == (2, 0), "__dlpack_device__ of cuda is (2, 0)")
tt = torch.from_dlpack(t)
check(tt.is_cuda and tt.data_ptr() == t.device_ptr, "torch shares the device pointer")
tt.fill_(3.0)
torch.cuda.synchronize()
check(t[1, 2] == 3.0, "tensorbuf reads torch's write")
t[0, 0] = 7.0
check(float(tt[0, 0]) == 7.0, "torch reads tensorbuf's write")
cc = cupy.from_dlpack(t)
check(cc.data.ptr == t.device_ptr, "cupy shares the device pointer")
cc[2, 3] = 9.0
cupy.cuda.runtime.deviceSynchronize()
check(t[2, 3] == 9.0 and float(tt[2, 3]) == 9.0, "cupy's write is seen by both")

src = torch.arange(12, dtype=torch.float32, device="cuda").reshape(3, 4)
back = tensorbuf.from_dlpack(src)
check(back.memory == "cuda" and back.device_ptr == src.data_ptr(),
      "tensorbuf.from_dlpack(torch cuda) shares the memory")
src[1, 1] = 42.0
torch.cuda.synchronize()
check(back[1, 1] == 42.0, "tensorbuf sees torch's later write")

try:
    t.__dlpack__(stream=0)
    check(False, "stream=0 is refused")
except BufferError:
    check(True, "stream=0 is refused")
stream = torch.cuda.Stream()
big = tensorbuf.Tensor((1 << 20,), "f32", memory="cuda")
host = tensorbuf.Tensor((1 << 20,), "f32", memory="cuda_host")
check(host.__dlpack_device__() == (3, 0), "__dlpack_device__ of cuda_host is (3, 0)")
host.numpy()[:] = 1.5
big.copy_from(host, stream=stream.cuda_stream)
with torch.cuda.stream(torch.cuda.Stream()) as _:
    consumer = torch.cuda.current_stream()
    view = torch.from_dlpack(big.__dlpack__(stream=consumer.cuda_stream))
    total = float(view.sum())
check(total == 1.5 * (1 << 20), f"consumer stream ordered after the async copy ({total})")
pinned_t = tensorbuf.Tensor((8,), "u8", memory="cuda_host")
check(pinned_t.device_ptr != 0, "cuda_host has a device pointer")

# Fences from torch streams: a torch fill, then a GPU signal, wakes a CPU
# wait; a GPU wait holds a torch stream's fill until the CPU signals.
import time  # noqa: E402

fence = tensorbuf.Fence(0)
filled = torch.zeros(1 << 20, device="cuda")
producer = torch.cuda.Stream()
with torch.cuda.stream(producer):
    filled.fill_(5.0)
fence.cuda_signal(1, producer.cuda_stream)
check(fence.wait(1, timeout=10) and float(filled.min()) == 5.0,
      "a GPU signal after a torch fill wakes the CPU wait, fill done")
held = torch.zeros(1 << 20, device="cuda")
waiter = torch.cuda.Stream()
fence.cuda_wait(2, waiter.cuda_stream)
with torch.cuda.stream(waiter):
    held.fill_(3.0)
filled_event = torch.cuda.Event()
filled_event.record(waiter)
time.sleep(0.2)
# Asked of the event, not by reading `held`: a read is GPU work that may
# share a hardware queue with the parked stream and wait behind it.
check(not filled_event.query(), "a torch stream waits on the GPU for the fence")
fence.signal(2)
waiter.synchronize()
check(float(held.min()) == 3.0, "the CPU signal releases the torch stream")

# A CUDA tensor over a Channel to another process (a child started fresh:
# a driver does not survive a fork): it arrives as cuda memory with a
# device pointer, torch reads the bytes there, and the child's torch write
# is seen here. Pooled, every tensor comes back to the pool.
import socket  # noqa: E402
import subprocess  # noqa: E402

CHILD = r"""
import sys
sys.path.insert(0, sys.argv[1])
import tensorbuf, torch
channel = tensorbuf.Channel.from_fd(int(sys.argv[2]))
for expected in (7, 8, 9):
    t = channel.recv(timeout=20)
    assert t.memory == "cuda" and t.device_ptr != 0, (t.memory, t.device_ptr)
    view = torch.from_dlpack(t)
    assert view.data_ptr() == t.device_ptr
    assert int(view[0, 0]) == expected and int(view[-1, -1]) == expected
    view.fill_(expected + 100)
    torch.cuda.synchronize()
    del view, t
    channel.send(tensorbuf.Tensor((1,), "u8", memory="shm"))  # the answer
"""
ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
child = subprocess.Popen([sys.executable, "-c", CHILD,
                          os.path.dirname(tensorbuf.__path__[0]),
                          str(theirs.fileno())], pass_fds=[theirs.fileno()])
theirs.close()
channel = tensorbuf.Channel.from_fd(ours.fileno())
ours.close()
sent = tensorbuf.Tensor((64, 64), "u8", memory="cuda")
torch.from_dlpack(sent).fill_(7)
torch.cuda.synchronize()
channel.send(sent)
check(channel.recv(timeout=30) is not None and sent[0, 0] == 107,
      "a cuda tensor over a Channel: the child's torch write is seen here")
pool = tensorbuf.Pool(sent, 2)
for value in (8, 9):
    frame = pool.acquire(timeout=10)
    torch.from_dlpack(frame).fill_(value)
    torch.cuda.synchronize()
    channel.send(frame)
    answer = channel.recv(timeout=30)
    check(answer is not None and frame[63, 63] == value + 100,
          f"a pooled cuda tensor over a Channel ({value})")
    del frame, answer
check(child.wait(timeout=60) == 0, "the child checked what arrived")
both = [pool.acquire(timeout=10), pool.acquire(timeout=10)]
check(None not in both, "pooled cuda tensors came back to the pool")
del both, pool, channel, sent

del tt, cc, view
print(("FAIL" if failures else "PASS") + f" python_cuda ({len(failures)} failures)")
sys.exit(1 if failures else 0)
