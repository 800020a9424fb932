"""Sharing between processes: channels that carry tensors and fences,
listeners, timeline fences and pools of recycled tensors.

Waiting calls take a timeout in seconds (None: no limit), release the GIL
while they wait, and return None (False for Fence.wait) when it passes.
"""

import math
from collections import namedtuple

from . import tensorbuf_core as _core
from .tensor import Tensor

__all__ = ["Channel", "Credentials", "Fence", "Listener", "Pool", "export_tensor", "import_tensor"]


Credentials = namedtuple("Credentials", "pid uid gid")
Credentials.__doc__ = "A channel peer's process, user and group ids."

Limits = namedtuple("Limits", "max_buffers max_mapped_bytes")
Limits.__doc__ = ("What one side of a channel keeps of the buffers its peer "
                  "sent: at most max_buffers buffers and max_mapped_bytes "
                  "bytes mapped (0 from a peer that states none).")


def _channel_options(max_buffers, max_mapped_bytes):
    """The channel options dict of the arguments given (None: default)."""
    opts = {}
    if max_buffers is not None:
        opts["max_buffers"] = max_buffers
    if max_mapped_bytes is not None:
        opts["max_mapped_bytes"] = max_mapped_bytes
    return opts


def _timeout(seconds, per_second, most):
    """A C timeout in units of 1/per_second (None: -1, no limit), rounded up
    so that a short wait never becomes a poll."""
    if seconds is None:
        return -1
    if seconds < 0:
        raise _core.InvalidArgumentError(
            f"timeout is {seconds}; give seconds >= 0, or None for no limit")
    return min(math.ceil(seconds * per_second), most)


def _milliseconds(seconds):
    return _timeout(seconds, 1000, 2**31 - 1)


def _until_timeout(wait, *args):
    """wait(*args), or None if it timed out."""
    try:
        return wait(*args)
    except _core.TimeoutError:
        return None


class _Handle:
    """An object owning one handle of tensorbuf_core."""

    __slots__ = ("_handle", "__weakref__")

    @classmethod
    def _wrap_handle(cls, handle):
        wrapper = cls.__new__(cls)
        wrapper._handle = handle
        return wrapper


class Fence(_Handle):
    """A timeline across processes: a 64-bit counter that only rises.

    ``Fence(value=0)`` makes one; ``Fence.import_fd(fd)`` opens another
    process's (from ``export_fd`` or a channel)."""

    __slots__ = ()

    def __init__(self, value=0):
        self._handle = _core.tb_fence_new(value)

    @classmethod
    def import_fd(cls, fd):
        return cls._wrap_handle(_core.tb_fence_import_fd(fd))

    def export_fd(self):
        """A new fd for the fence; the caller closes it."""
        return _core.tb_fence_export_fd(self._handle)

    @property
    def value(self):
        return _core.tb_fence_value(self._handle)

    def signal(self, value):
        """Raises the counter to ``value`` and wakes the waiters it satisfies."""
        _core.tb_fence_signal(self._handle, value)

    def wait(self, value, timeout=None):
        """Whether the counter reached ``value`` within ``timeout`` seconds."""
        nanoseconds = _timeout(timeout, 1_000_000_000, 2**63 - 1)
        try:
            _core.tb_fence_wait(self._handle, value, nanoseconds)
        except _core.TimeoutError:
            return False
        return True

    def cuda_signal(self, value, stream=0, *, device=0):
        """Queues a signal of ``value`` on CUDA stream ``stream`` of ``device``
        (a CUstream as an integer, e.g. ``torch.cuda.current_stream()
        .cuda_stream``; 0 the legacy default stream): the GPU raises the
        counter once the work queued before it is done, and CPU waiters, in
        any process, wake. Returns at once."""
        _core.tb_fence_cuda_signal(self._handle, value, device, stream)

    def cuda_wait(self, value, stream=0, *, device=0):
        """Makes ``stream`` of ``device`` wait, on the GPU, until the counter
        reaches ``value``; the work queued after it runs then. Returns at
        once."""
        _core.tb_fence_cuda_wait(self._handle, value, device, stream)

    def __repr__(self):
        return f"tensorbuf.Fence(value={self.value})"


class Channel(_Handle):
    """A Unix socket connection that carries tensors (their fds and
    description; the bytes are not copied) and fences.

    ``Channel.pair()`` gives two connected ends; ``Channel.connect(path)``
    reaches a ``Listener``; ``Channel.from_fd(fd)`` takes a connected
    seqpacket socket (dup'd).

    Each takes ``max_buffers`` and ``max_mapped_bytes``: how much of the
    buffers its peer sends the channel keeps (default 1024 buffers, 8 GiB),
    stated to the peer at connect; a peer's sender keeps within them."""

    __slots__ = ()

    @classmethod
    def pair(cls, *, max_buffers=None, max_mapped_bytes=None):
        a, b = _core.tb_channel_pair_with(
            _channel_options(max_buffers, max_mapped_bytes))
        return cls._wrap_handle(a), cls._wrap_handle(b)

    @classmethod
    def connect(cls, path, timeout=None, *, max_buffers=None,
                max_mapped_bytes=None):
        """Connects, retrying while the listener does not exist yet; None if
        ``timeout`` passes."""
        handle = _until_timeout(_core.tb_channel_connect_with, path,
                                _milliseconds(timeout),
                                _channel_options(max_buffers, max_mapped_bytes))
        return None if handle is None else cls._wrap_handle(handle)

    @classmethod
    def from_fd(cls, fd, *, max_buffers=None, max_mapped_bytes=None):
        return cls._wrap_handle(_core.tb_channel_from_fd_with(
            fd, _channel_options(max_buffers, max_mapped_bytes)))

    @property
    def version(self):
        """The protocol version both sides agreed at connect."""
        return _core.tb_channel_version(self._handle)

    @property
    def limits(self):
        """(own, peer): the Limits each side stated at connect."""
        own_buffers, own_bytes, peer_buffers, peer_bytes = \
            _core.tb_channel_limits(self._handle)
        return Limits(own_buffers, own_bytes), Limits(peer_buffers, peer_bytes)

    @property
    def fd(self):
        """The socket, for an event loop (readable: a message waits)."""
        return _core.tb_channel_fd(self._handle)

    @property
    def peer_credentials(self):
        """The peer's (pid, uid, gid) as the kernel recorded them at connect
        (SO_PEERCRED)."""
        return Credentials(*_core.tb_channel_peer_credentials(self._handle))

    def send(self, tensor, *, read_only=False):
        """Sends an SHM, DMA, CUDA or CUDA_HOST tensor (a CUDA tensor
        arrives on the same device ordinal); read_only=True makes the
        receiver's copy of the handle read-only."""
        _core.tb_channel_send(self._handle, tensor._handle,
                              _core.TB_SEND_READ_ONLY if read_only else 0)

    def recv(self, timeout=None):
        """The next tensor, or None if ``timeout`` passes."""
        handle = _until_timeout(_core.tb_channel_recv, self._handle,
                                _milliseconds(timeout))
        return None if handle is None else Tensor._wrap_handle(handle)

    def send_fence(self, fence):
        _core.tb_channel_send_fence(self._handle, fence._handle)

    def recv_fence(self, timeout=None):
        """The next fence, or None if ``timeout`` passes."""
        handle = _until_timeout(_core.tb_channel_recv_fence, self._handle,
                                _milliseconds(timeout))
        return None if handle is None else Fence._wrap_handle(handle)

    def __repr__(self):
        return f"<tensorbuf.Channel fd={self.fd}>"


class Listener(_Handle):
    """Listens on a Unix socket path ("@name" for an abstract name); the
    file it creates goes with it.

    Only ``uids`` may connect (default: this process's effective uid alone;
    ``any_uid=True``: everyone); a path socket's file gets ``mode`` (default
    0o600); ``hello_timeout`` (seconds) bounds how long ``accept`` waits for
    a connected peer's hello; accepted channels keep ``max_buffers`` and
    ``max_mapped_bytes`` of their peers' buffers (as ``Channel``)."""

    __slots__ = ()

    def __init__(self, path, *, mode=None, uids=None, any_uid=False,
                 hello_timeout=None, max_buffers=None, max_mapped_bytes=None):
        opts = {"channel_options": _channel_options(max_buffers,
                                                    max_mapped_bytes)}
        if mode is not None:
            opts["mode"] = mode
        if uids is not None:
            opts["uids"] = list(uids)
        if any_uid:
            opts["flags"] = _core.TB_LISTENER_ANY_UID
        if hello_timeout is not None:
            opts["hello_timeout_ms"] = _milliseconds(hello_timeout)
        self._handle = _core.tb_listener_listen_with(path, opts)

    @property
    def fd(self):
        return _core.tb_listener_fd(self._handle)

    def accept(self, timeout=None):
        """The next connection as a Channel, or None if ``timeout`` passes."""
        handle = _until_timeout(_core.tb_listener_accept, self._handle,
                                _milliseconds(timeout))
        return None if handle is None else Channel._wrap_handle(handle)


class Pool(_Handle):
    """``count`` tensors laid out like ``prototype``, recycled: a tensor
    returns to the pool when its last reference (here or, after a send, in
    the receiving process) goes."""

    __slots__ = ()

    def __init__(self, prototype, count):
        self._handle = _core.tb_pool_new(prototype._handle, count)

    def acquire(self, timeout=None):
        """A free tensor (its bytes are what its last user left), or None if
        ``timeout`` passes."""
        handle = _until_timeout(_core.tb_pool_acquire, self._handle,
                                _milliseconds(timeout))
        return None if handle is None else Tensor._wrap_handle(handle)

    @property
    def available(self):
        return _core.tb_pool_available(self._handle)

    def __len__(self):
        return _core.tb_pool_size(self._handle)

    def __repr__(self):
        return f"<tensorbuf.Pool {self.available}/{len(self)} free>"


def export_tensor(tensor, *, read_only=False):
    """The tensor's description and new fds, for a transport of your own
    (D-Bus, Wayland, ...): (bytes, [fd, ...]); the caller closes the fds."""
    return _core.tb_tensor_export(tensor._handle,
                                  _core.TB_SEND_READ_ONLY if read_only else 0)


def import_tensor(descriptor, fds):
    """The tensor an ``export_tensor`` result describes (the fds are dup'd:
    close yours)."""
    return Tensor._wrap_handle(_core.tb_tensor_import(descriptor, list(fds)))
