#!/usr/bin/python3
"""The Python peer of bench_handoff: how Python users take a frame from
another process today, with multiprocessing.shared_memory and NumPy.

bench_handoff starts it (bench/run does not: the leading underscore) as

    _handoff_peer.py SOCKET_FD HEIGHT WIDTH CHANNELS

SOCKET_FD is an inherited Unix seqpacket socket. The peer answers b"ready"
(or b"error: why" if it cannot run), then for each message — the name of a
POSIX shared-memory segment whose first 8 bytes hold the sender's
CLOCK_MONOTONIC stamp (native int64) — attaches with
SharedMemory(name=...), wraps the segment in an np.ndarray of the frame's
shape, reads one byte through it, reads the clock, detaches, and answers the
one-way nanoseconds (native int64). It exits when the socket closes.

The name travels as bare bytes, not pickled through a multiprocessing queue
as a Python program would usually send it: that keeps the transport the
same as the C floor's, so the figure is the attach recipe's own cost (a
lower bound for real Python code).
"""

import socket
import struct
import sys
import time

ANSWER = struct.Struct("=q")


def serve(sock, shape):
    from multiprocessing import resource_tracker, shared_memory

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
        # Python 3.11 registers attached segments with its resource
        # tracker, which would unlink the sender's segment at exit.
        resource_tracker.unregister(shm._name, "shared_memory")
        shm.close()
        sock.send(ANSWER.pack(now - stamp))


def main():
    fd, height, width, channels = (int(text) for text in sys.argv[1:5])
    sock = socket.socket(fileno=fd)
    try:
        serve(sock, (height, width, channels))
    except ImportError as error:
        sock.send(f"error: {error}".encode())
    finally:
        sock.close()


if __name__ == "__main__":
    main()
