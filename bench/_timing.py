"""Alternating-batch timing shared by the Python benchmarks: each pair runs
in alternating batches of about BATCH_NS, and the figure is the median of
the batch means, so that a noisy neighbour hits both sides alike."""

import statistics
import time

BATCHES = 15
BATCH_NS = 3_000_000


def batch_size(run):
    """Operations per batch so that one batch takes about BATCH_NS."""
    run(4)  # warm up (and fill any cache, as a frame loop does)
    n = 4
    while True:
        start = time.perf_counter_ns()
        run(n)
        elapsed = time.perf_counter_ns() - start
        if elapsed >= BATCH_NS / 4 or n >= 1 << 24:
            return max(1, int(n * BATCH_NS / max(elapsed, 1)))
        n *= 4


def measure(subject, peer):
    """Median ns per operation of each, timed in alternating batches."""
    sizes = (batch_size(subject), batch_size(peer))
    means = ([], [])
    for _ in range(BATCHES):
        for side, run in enumerate((subject, peer)):
            start = time.perf_counter_ns()
            run(sizes[side])
            means[side].append((time.perf_counter_ns() - start) / sizes[side])
    return statistics.median(means[0]), statistics.median(means[1])
