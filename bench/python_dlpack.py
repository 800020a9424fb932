"""The Python binding against NumPy's own ways (bench/README.md has the
protocol):

- DLPack round trip: numpy.from_dlpack(tensor) (export a capsule, import it,
  drop the array, which deletes the export) against numpy.from_dlpack of a
  NumPy array of the same 1080p RGBA frame. Target: within 1.5x.
- A shared 1080p RGBA frame seen from NumPy: a new SHM Tensor +
  numpy.asarray + release, against the usual recipe,
  multiprocessing.shared_memory.SharedMemory(create=True) + numpy.ndarray on
  its buffer + close + unlink. Target: faster (< 1x).

Each pair runs in alternating batches (_timing.py); the figure is the
median of the batch means.
"""

import json
import os
from multiprocessing import shared_memory

import numpy as np

import tensorbuf
from _timing import measure

SHAPE = (1080, 1920, 4)
FILTER = os.environ.get("TB_BENCH_FILTER", "")


def dlpack_round_trip(tensor):
    def run(n):
        from_dlpack = np.from_dlpack
        for _ in range(n):
            from_dlpack(tensor)
    return run


def shm_tensor_as_numpy(n):
    asarray, Tensor = np.asarray, tensorbuf.Tensor
    for _ in range(n):
        array = asarray(Tensor(SHAPE, "u8", memory="shm"))
        del array


def shared_memory_as_numpy(n):
    size = SHAPE[0] * SHAPE[1] * SHAPE[2]
    for _ in range(n):
        shm = shared_memory.SharedMemory(create=True, size=size)
        array = np.ndarray(SHAPE, np.uint8, buffer=shm.buf)
        del array
        shm.close()
        shm.unlink()


def main():
    frame = tensorbuf.Tensor(SHAPE, "u8", memory="heap")
    array = np.zeros(SHAPE, np.uint8)
    benchmarks = [
        ("python np.from_dlpack(Tensor) 1080p", dlpack_round_trip(frame),
         "np.from_dlpack(ndarray)", dlpack_round_trip(array), "<= 1.5x"),
    ]
    if tensorbuf.memory_available("shm"):
        benchmarks.append(
            ("python SHM Tensor + np.asarray 1080p", shm_tensor_as_numpy,
             "SharedMemory(create) + np.ndarray + unlink", shared_memory_as_numpy,
             "< 1x"))
    records = []
    for name, subject, peer_name, peer, target in benchmarks:
        if FILTER not in name:
            continue
        value, peer_value = measure(subject, peer)
        records.append({
            "name": name, "value": round(value, 1), "unit": "ns",
            "peer": peer_name, "peer_value": round(peer_value, 1),
            "ratio": round(value / peer_value, 3), "target": target,
        })
    del frame, benchmarks  # the closures hold the frame
    print(f"{'benchmark':40} {'tensorbuf':>12} {'peer':>12} {'ratio':>7}  target")
    for r in records:
        print(f"{r['name']:40} {r['value']:>9.0f} ns {r['peer_value']:>9.0f} ns "
              f"{r['ratio']:>7.2f}  {r['target']}  (peer: {r['peer']})")
    out = os.environ.get("TB_BENCH_OUT")
    if out:
        with open(out, "w", encoding="utf-8") as file:
            json.dump(records, file, indent=1)
    if tensorbuf.live_objects() != 0:
        raise SystemExit(f"{tensorbuf.live_objects()} tensorbuf handles leaked")


if __name__ == "__main__":
    main()
