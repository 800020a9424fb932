"""Channels, listeners, fences, pools and descriptors."""

import os
import subprocess
import sys
import threading
import time

import pytest

import tensorbuf


@pytest.fixture(autouse=True)
def needs_shm(shm):
    """Tensors travel by fd: every test here needs shared memory."""


def test_channel_pair_carries_tensors_without_a_copy():
    a, b = tensorbuf.Channel.pair()
    t = tensorbuf.Tensor((2, 3), "f32", memory="shm", name="frame")
    t[1, 2] = 1.5
    a.send(t)
    r = b.recv(timeout=5)
    assert r.shape == (2, 3) and r.dtype == "f32" and r.name == "frame"
    assert r[1, 2] == 1.5 and not r.read_only
    r[0, 0] = 7.0
    assert t[0, 0] == 7.0  # the same bytes
    assert a.fd >= 0 and b.fd >= 0 and "Channel" in repr(a)


def test_channel_read_only_send_and_timeouts():
    a, b = tensorbuf.Channel.pair()
    assert b.recv(timeout=0.01) is None
    a.send(tensorbuf.Tensor((4,), "u8", memory="shm"), read_only=True)
    r = b.recv(timeout=5)
    assert r.read_only
    with pytest.raises(tensorbuf.ReadOnlyError):
        r[0] = 1
    with pytest.raises(tensorbuf.InvalidArgumentError):
        b.recv(timeout=-1)


def test_channel_errors():
    a, b = tensorbuf.Channel.pair()
    with pytest.raises(tensorbuf.UnsupportedError):
        a.send(tensorbuf.Tensor((4,), "u8", memory="heap"))
    del a
    with pytest.raises(tensorbuf.ClosedError):
        b.recv(timeout=5)


def test_fences():
    f = tensorbuf.Fence(3)
    assert f.value == 3 and repr(f) == "tensorbuf.Fence(value=3)"
    assert f.wait(2, timeout=0) and not f.wait(4, timeout=0.01)
    f.signal(4)
    assert f.wait(4)
    with pytest.raises(tensorbuf.OutOfRangeError):
        f.signal(1)  # a timeline only rises
    fd = f.export_fd()
    try:
        g = tensorbuf.Fence.import_fd(fd)
    finally:
        os.close(fd)
    g.signal(9)
    assert f.value == 9


def test_fences_travel_on_channels():
    a, b = tensorbuf.Channel.pair()
    f = tensorbuf.Fence()
    a.send_fence(f)
    g = b.recv_fence(timeout=5)
    assert b.recv_fence(timeout=0) is None
    f.signal(2)
    assert g.value == 2


def test_waiting_releases_the_gil():
    f = tensorbuf.Fence()
    outcome = []
    waiter = threading.Thread(target=lambda: outcome.append(f.wait(1, timeout=5)))
    waiter.start()
    time.sleep(0.1)  # Python runs here while the other thread waits in C
    f.signal(1)
    waiter.join(10)
    assert outcome == [True]


def test_listener_and_connect():
    path = f"@tensorbuf-python-test-{os.getpid()}"
    listener = tensorbuf.Listener(path)
    assert listener.fd >= 0 and listener.accept(timeout=0) is None
    client = tensorbuf.Channel.connect(path, timeout=5)
    server = listener.accept(timeout=5)
    client.send(tensorbuf.Tensor((3,), "i16", memory="shm"))
    assert server.recv(timeout=5).shape == (3,)
    assert tensorbuf.Channel.connect("@tensorbuf-nobody-listens", timeout=0.05) is None


def test_peer_credentials_and_allowed_uids():
    a, b = tensorbuf.Channel.pair()
    me = (os.getpid(), os.geteuid(), os.getegid())
    assert a.peer_credentials == me and b.peer_credentials.pid == os.getpid()
    path = f"@tensorbuf-python-uids-{os.getpid()}"
    # Only another uid may connect: ours is closed unread, accept times out.
    refusing = tensorbuf.Listener(path, uids=[os.geteuid() + 1], hello_timeout=1)
    client = tensorbuf.Channel.connect(path, timeout=5)
    assert refusing.accept(timeout=0.2) is None
    with pytest.raises(tensorbuf.ClosedError):
        client.recv(timeout=5)
    del refusing, client
    listener = tensorbuf.Listener(path, uids=[os.geteuid() + 1, os.geteuid()])
    client = tensorbuf.Channel.connect(path, timeout=5)
    server = listener.accept(timeout=5)
    assert server.peer_credentials == me and client.peer_credentials == me
    with pytest.raises(tensorbuf.InvalidArgumentError):
        tensorbuf.Listener(path + "-bad", mode=0o7777)


def test_limits_stated_and_kept():
    a, b = tensorbuf.Channel.pair(max_buffers=2, max_mapped_bytes=1 << 20)
    assert a.version == 3
    own, peer = a.limits
    assert own == (2, 1 << 20) and peer == tensorbuf.Limits(2, 1 << 20)
    # The sender keeps within the receiver's 2 buffers: it makes the
    # receiver forget the oldest, which live on in their tensors.
    sent = [tensorbuf.Tensor((4,), "u8", memory="shm") for _ in range(5)]
    received = []
    for i, tensor in enumerate(sent):
        tensor[0] = i
        a.send(tensor)
        received.append(b.recv(timeout=5))
    assert [int(t[0]) for t in received] == list(range(5))
    default, _ = tensorbuf.Channel.pair()
    assert default.limits[0] == (1024, 8 << 30)
    path = f"@tensorbuf-python-limits-{os.getpid()}"
    listener = tensorbuf.Listener(path, max_buffers=7)
    client = tensorbuf.Channel.connect(path, timeout=5, max_mapped_bytes=1 << 16)
    server = listener.accept(timeout=5)
    assert server.limits == ((7, 8 << 30), (1024, 1 << 16))
    with pytest.raises(tensorbuf.InvalidArgumentError, match="max_buffers"):
        tensorbuf.Channel.pair(max_buffers=0)
    with pytest.raises(tensorbuf.InvalidArgumentError, match="max_mapped_bytes"):
        tensorbuf.Channel.pair(max_mapped_bytes=4095)
    with pytest.raises(TypeError):
        tensorbuf.Channel.pair(max_buffers=1 << 40)


CHILD = r"""
import sys, tensorbuf
channel = tensorbuf.Channel.connect(sys.argv[1], timeout=10)
frame = channel.recv(timeout=10)
done = channel.recv_fence(timeout=10)
frame[1, 1] = 42
done.signal(1)
"""


def test_another_process_writes_into_a_sent_tensor():
    path = f"@tensorbuf-python-child-{os.getpid()}"
    listener = tensorbuf.Listener(path)
    child = subprocess.Popen([sys.executable, "-c", CHILD, path],
                             env=dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path)))
    try:
        channel = listener.accept(timeout=10)
        assert channel is not None
        frame = tensorbuf.Tensor((2, 2), "u8", memory="shm")
        done = tensorbuf.Fence()
        channel.send(frame)
        channel.send_fence(done)
        assert done.wait(1, timeout=10)
        assert frame[1, 1] == 42
    finally:
        assert child.wait(timeout=10) == 0


def test_pools_recycle():
    prototype = tensorbuf.Tensor((4, 4), "u8", memory="shm")
    pool = tensorbuf.Pool(prototype, 2)
    assert len(pool) == 2 and pool.available == 2
    first, second = pool.acquire(), pool.acquire(timeout=1)
    assert first.shape == (4, 4) and pool.available == 0
    assert pool.acquire(timeout=0) is None
    first_id = first.buffer_id
    del first
    again = pool.acquire(timeout=1)
    assert again.buffer_id == first_id  # the same buffer, recycled
    assert "0/2 free" in repr(pool)
    del second, again
    with pytest.raises(tensorbuf.InvalidArgumentError):
        tensorbuf.Pool(prototype, 0)


def test_descriptors_for_other_transports():
    t = tensorbuf.Tensor((2, 2), "u16", memory="shm", name="described")
    t[1, 0] = 513
    descriptor, fds = tensorbuf.export_tensor(t)
    try:
        u = tensorbuf.import_tensor(descriptor, fds)
    finally:
        for fd in fds:
            os.close(fd)
    assert isinstance(descriptor, bytes) and len(fds) == 1
    assert u[1, 0] == 513 and u.name == "described"
    with pytest.raises(tensorbuf.ProtocolError):
        tensorbuf.import_tensor(b"\x00" * 8, [])


@pytest.mark.skipif(tensorbuf.memory_available("cuda"), reason="a CUDA driver is loaded")
def test_fence_cuda_calls_without_a_driver():
    fence = tensorbuf.Fence(2)
    with pytest.raises(tensorbuf.OutOfRangeError):
        fence.cuda_signal(2)
    with pytest.raises(tensorbuf.UnsupportedError, match="CUDA"):
        fence.cuda_signal(3, stream=0)
    with pytest.raises(tensorbuf.UnsupportedError, match="CUDA"):
        fence.cuda_wait(3, stream=5, device=0)
    assert fence.value == 2
