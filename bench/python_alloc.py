"""Heap allocation from Python against NumPy (bench/README.md has the
protocol), at 360p, 1080p and 4K RGBA u8 frames:

- Tensor(memory="heap") + numpy view + fill against np.zeros + fill: a frame
  written in full. Target: <= 1.0x.
- Tensor(memory="heap", uninitialized=True) + fill against np.empty + fill.
  Target: <= 1.0x.
- Tensor(memory="heap") alone against np.zeros (no write).

Each pair runs in alternating batches (_timing.py), pinned to one CPU;
the figure is the median of the batch means.
"""

import json
import os

import numpy as np

import tensorbuf
from _timing import measure

FRAMES = {"360p": (360, 640, 4), "1080p": (1080, 1920, 4),
          "4K": (2160, 3840, 4)}
FILTER = os.environ.get("TB_BENCH_FILTER", "")


def tensor_fill(shape, uninitialized=False):
    asarray, Tensor = np.asarray, tensorbuf.Tensor

    def run(n):
        for _ in range(n):
            asarray(Tensor(shape, "u8", memory="heap",
                           uninitialized=uninitialized)).fill(1)
    return run


def numpy_fill(make, shape):
    def run(n):
        for _ in range(n):
            make(shape, np.uint8).fill(1)
    return run


def tensor_only(shape):
    def run(n):
        Tensor = tensorbuf.Tensor
        for _ in range(n):
            Tensor(shape, "u8", memory="heap")
    return run


def numpy_only(shape):
    def run(n):
        zeros = np.zeros
        for _ in range(n):
            zeros(shape, np.uint8)
    return run


def main():
    allowed = sorted(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {allowed[-1]})
    benchmarks = []
    for label, shape in FRAMES.items():
        benchmarks += [
            (f"python heap Tensor+fill {label}", tensor_fill(shape),
             "np.zeros+fill", numpy_fill(np.zeros, shape), "<= 1.0x"),
            (f"python heap Tensor uninitialized+fill {label}",
             tensor_fill(shape, True), "np.empty+fill",
             numpy_fill(np.empty, shape), "<= 1.0x"),
            (f"python heap Tensor {label}", tensor_only(shape), "np.zeros",
             numpy_only(shape), None),
        ]
    records = []
    for name, subject, peer_name, peer, target in benchmarks:
        if FILTER not in name:
            continue
        value, peer_value = measure(subject, peer)
        record = {
            "name": name, "value": round(value, 1), "unit": "ns",
            "peer": peer_name, "peer_value": round(peer_value, 1),
            "ratio": round(value / peer_value, 3),
        }
        if target is not None:
            record["target"] = target
        records.append(record)
    print(f"{'benchmark':46} {'tensorbuf':>12} {'peer':>12} {'ratio':>7}  target")
    for r in records:
        print(f"{r['name']:46} {r['value']:>9.0f} ns {r['peer_value']:>9.0f} ns "
              f"{r['ratio']:>7.2f}  {r.get('target', '-')}  (peer: {r['peer']})")
    out = os.environ.get("TB_BENCH_OUT")
    if out:
        with open(out, "w", encoding="utf-8") as file:
            json.dump(records, file, indent=1)
    tensorbuf.memory_trim()
    if tensorbuf.live_objects() != 0:
        raise SystemExit(f"{tensorbuf.live_objects()} tensorbuf handles leaked")


if __name__ == "__main__":
    main()
