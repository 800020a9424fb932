#!/usr/bin/python3
"""The Python peer of bench_handoff and bench_floors: how Python users take
a frame from another process today, with multiprocessing.shared_memory and
NumPy.

The benchmarks start it (bench/run does not: the leading underscore) in one
of two ways.

    _handoff_peer.py SOCKET_FD HEIGHT WIDTH CHANNELS

attaches per frame (bench_handoff). SOCKET_FD is an inherited Unix seqpacket
socket. The peer answers b"ready" (or b"error: why" if it cannot run), then
for each message — the name of a POSIX shared-memory segment whose first 8
bytes hold the sender's CLOCK_MONOTONIC stamp (native int64) — attaches with
SharedMemory(name=...), wraps the segment in an np.ndarray of the frame's
shape, reads one byte through it, reads the clock, detaches, and answers the
one-way nanoseconds (native int64). It exits when the socket closes.

    _handoff_peer.py SOCKET_FD HEIGHT WIDTH CHANNELS SEGMENT SLOTS

is pre-attached (bench_floors): it attaches once to SEGMENT, which holds
SLOTS frames back to back, and answers b"ready". Then each message is a slot
index (native int64); the peer reads the slot's first 8 bytes (a clock stamp
or a sequence number, native int64) through the slot's np.ndarray, reads the
clock, and answers both (native int64 now, then the 8 bytes it read). The
answer also hands the slot back: the sender reuses a slot only after its
answer came.

The name or slot travels as bare bytes, not pickled through a
multiprocessing queue as a Python program would usually send it: that keeps
the transport the same as the C floor's, so the figure is the recipe's own
cost (a lower bound for real Python code).
"""

import socket
import struct
import sys
import time

ANSWER = struct.Struct("=q")
SLOT = struct.Struct("=q")
PRE_ATTACHED_ANSWER = struct.Struct("=qq")


def forget(shm):
    # Python 3.11 registers attached segments with its resource tracker,
    # which would unlink the sender's segment at exit.
    from multiprocessing import resource_tracker

    resource_tracker.unregister(shm._name, "shared_memory")


def serve_attach(sock, shape):
    from multiprocessing import shared_memory

    import numpy as np

    clock = time.CLOCK_MONOTONIC
    sock.send(b"ready")
    while True:
        name = sock.recv(256)
        if not name:
            return
        shm = shared_memory.SharedMemory(name=name.decode())
        frame = np.ndarray(shape, np.uint8, buffer=shm.buf)
        frame[0, 0, 0]  # the first read of the bytes
        now = time.clock_gettime_ns(clock)
        (stamp,) = ANSWER.unpack_from(shm.buf, 0)
        del frame
        forget(shm)
        shm.close()
        sock.send(ANSWER.pack(now - stamp))


def serve_pre_attached(sock, shape, segment, slots):
    from multiprocessing import shared_memory

    import numpy as np

    shm = shared_memory.SharedMemory(name=segment)
    forget(shm)
    frames = np.ndarray((slots,) + shape, np.uint8, buffer=shm.buf)
    # The first 8 bytes of each frame, as the int64 the sender wrote.
    stamps = frames.reshape(slots, -1)[:, :8].view(np.int64)
    clock = time.CLOCK_MONOTONIC
    sock.send(b"ready")
    while True:
        message = sock.recv(SLOT.size)
        if not message:
            break
        (slot,) = SLOT.unpack(message)
        stamp = int(stamps[slot, 0])
        now = time.clock_gettime_ns(clock)
        sock.send(PRE_ATTACHED_ANSWER.pack(now, stamp))
    del stamps, frames
    shm.close()


def main():
    fd, height, width, channels = (int(text) for text in sys.argv[1:5])
    shape = (height, width, channels)
    sock = socket.socket(fileno=fd)
    try:
        if len(sys.argv) == 7:
            serve_pre_attached(sock, shape, sys.argv[5], int(sys.argv[6]))
        else:
            serve_attach(sock, shape)
    except ImportError as error:
        sock.send(f"error: {error}".encode())
    finally:
        sock.close()


if __name__ == "__main__":
    main()
