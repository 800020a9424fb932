"""consumer.py: the Python consumer of the pipeline demo (producer.c says how
the three processes work together).

    python3 consumer.py SOCKET

Connects to the producer at SOCKET, receives the tensor its results go into
and the fence it signals, then digests each whole frame as it comes: the
checksum sum_j (j + 1) * b[j] mod 2^32 and the mean of the frame's bytes b in
row-major order. NumPy reads them in place, through an array over the
consumer's map of the frame: no byte of the frame is copied. Ends when the
producer closes the channel.
"""

import sys
import time

import numpy as np

import tensorbuf


def stamp(frame):
    """The frame's number and the producer's send time, from its name."""
    _, number, _, sent = frame.name.split()
    return int(number), int(sent)


def digest(frame, sent):
    """The frame's checksum and mean, and the hand-off latency: from the send
    to the moment this process had the frame mapped."""
    pixels = np.asarray(frame)  # the mapped frame itself
    latency = time.monotonic_ns() - sent
    if pixels.flags.owndata or pixels.flags.writeable:
        raise RuntimeError("expected a read-only view of the producer's frame")
    # Rows of bytes: a view, since the frame's rows are not padded.
    rows = pixels.reshape(pixels.shape[0], -1)
    if not np.shares_memory(rows, pixels):
        raise RuntimeError("the frame's rows are padded: reshape copied it")
    height, width = rows.shape
    # sum_j (j + 1) b[j] with j = r * width + c, split into row and column
    # sums: NumPy adds the mapped bytes where they are (widening them to 64
    # bits a small block at a time) and never makes an array of the frame's
    # size.
    row_sums = rows.sum(axis=1, dtype=np.uint64)
    column_sums = rows.sum(axis=0, dtype=np.uint64)
    weighted = (width * int(np.arange(height, dtype=np.uint64) @ row_sums)
                + int(np.arange(1, width + 1, dtype=np.uint64) @ column_sums))
    return weighted & 0xFFFFFFFF, int(row_sums.sum()) / rows.size, latency


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: python3 consumer.py SOCKET")
    socket = sys.argv[1]
    channel = tensorbuf.Channel.connect(socket, timeout=10)
    if channel is None:
        sys.exit(f"consumer.py: no producer at {socket}")
    try:
        results = channel.recv(timeout=10)
        acknowledged = channel.recv_fence(timeout=10)
    except tensorbuf.ClosedError:
        sys.exit("consumer.py: the producer went away before the first frame")
    if results is None or acknowledged is None:
        sys.exit("consumer.py: the producer sent no result tensor and fence")
    out = np.asarray(results)
    while True:
        try:
            frame = channel.recv()
        except tensorbuf.ClosedError:
            return
        number, sent = stamp(frame)
        checksum, mean, latency = digest(frame, sent)
        del frame  # the producer's pool gets the buffer back now
        out[:] = (number, checksum, mean, latency)
        acknowledged.signal(number + 1)


if __name__ == "__main__":
    main()
