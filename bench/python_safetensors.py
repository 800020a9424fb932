"""safetensors and streaming reads against NumPy's and Python's own ways
(bench/README.md has the protocol). One file of TB_BENCH_ST_MIB MiB
(default 1024) with 256 F32 tensors, page cache warm:

- open + every tensor: tensorbuf.safetensors.load (one mapping, 256
  read-only views) against numpy.memmap with the offsets computed in Python
  from the header (struct + json). Target: <= 1.0x.
- the same against reading the whole file into memory (the physical floor
  of "load by copying"). Target: <= 0.01x (100x faster).
- time to first byte of one tensor: open + that tensor + its first element
  (core calls), against struct + json + numpy.memmap + a[0]. Reported.
- streaming 256 MiB through two 4 MiB slots aligned to 4096 (alternating,
  as double buffering does) with tb_tensor_read_file, buffered and
  O_DIRECT, against f.readinto of a bytearray (read() into a malloc'd
  buffer). Reported; O_DIRECT reads the disk, not the warm cache.

Pinned to one CPU with sched_setaffinity; repeats alternate subject and
peer and the figure is the median.
"""

import json
import os
import statistics
import struct
import tempfile
import time

import numpy as np

import tensorbuf
from tensorbuf import core, safetensors

MIB = 1 << 20
FILE_MIB = int(os.environ.get("TB_BENCH_ST_MIB", "1024"))
COUNT = 256
SLOT = 4 * MIB
STREAM = min(256, FILE_MIB) * MIB
REPEATS = 7
FILTER = os.environ.get("TB_BENCH_FILTER", "")


def make_file(path):
    per = FILE_MIB * MIB // COUNT // 4
    tensors = {f"layer.{i:03d}.weight": tensorbuf.from_numpy(
        np.full(per, i, dtype=np.float32)) for i in range(COUNT)}
    safetensors.save(path, tensors, metadata={"format": "pt"})


def memmap_load(path):
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
    header.pop("__metadata__", None)
    m = np.memmap(path, dtype=np.uint8, mode="r")
    start = 8 + n
    return {name: np.ndarray(e["shape"], dtype=np.float32, buffer=m,
                             offset=start + e["data_offsets"][0])
            for name, e in header.items()}


def tensorbuf_first_byte(path, name):
    handle = core.tb_safetensors_open(path, 0)
    tensor = core.tb_safetensors_tensor(handle, name)
    return core.tb_tensor_get_f64(tensor, (0,))


def memmap_first_byte(path, name):
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
    e = header[name]
    m = np.memmap(path, dtype=np.float32, mode="r",
                  offset=8 + n + e["data_offsets"][0], shape=tuple(e["shape"]))
    return float(m[0])


def read_all(path):
    with open(path, "rb") as f:
        return len(f.read())


def stream_tensorbuf(fd, slots, flags):
    modes = set()
    for i, offset in enumerate(range(0, STREAM, SLOT)):
        modes.add(core.tb_tensor_read_file(slots[i % 2]._handle, fd, offset, flags))
    return modes


def stream_read(path, buffer):
    with open(path, "rb", buffering=0) as f:
        view = memoryview(buffer)
        done = 0
        while done < STREAM:
            done += f.readinto(view)


def timed(fn, *args):
    start = time.perf_counter_ns()
    fn(*args)
    return time.perf_counter_ns() - start


def pair(fn_a, fn_b, repeats=REPEATS):
    fn_a()
    fn_b()
    a, b = [], []
    for _ in range(repeats):
        a.append(timed(fn_a))
        b.append(timed(fn_b))
    return statistics.median(a), statistics.median(b)


def record(name, value_ns, unit, peer, peer_ns, target=None):
    scale = {"us": 1e3, "ms": 1e6}[unit]
    r = {"name": name, "value": value_ns / scale, "unit": unit, "peer": peer,
         "peer_value": peer_ns / scale, "ratio": value_ns / peer_ns}
    if target:
        r["target"] = target
    return r


def main():
    os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[-1]})
    records = []
    with tempfile.TemporaryDirectory(dir=os.environ.get("TMPDIR", "/tmp")) as d:
        path = os.path.join(d, "model.safetensors")
        make_file(path)
        read_all(path)  # warm the page cache
        first = "layer.128.weight"
        if FILTER in "safetensors open+views":
            tb_ns, mm_ns = pair(lambda: safetensors.load(path), lambda: memmap_load(path))
            records.append(record(f"safetensors open+{COUNT} views {FILE_MIB} MiB",
                                  tb_ns, "us", "numpy.memmap", mm_ns, "<= 1.0x"))
            tb_ns, rd_ns = pair(lambda: safetensors.load(path), lambda: read_all(path), 3)
            records.append(record(f"safetensors open+{COUNT} views vs read {FILE_MIB} MiB",
                                  tb_ns, "us", "read() whole file", rd_ns, "<= 0.01x"))
        if FILTER in "safetensors time to first byte":
            tb_ns, mm_ns = pair(lambda: tensorbuf_first_byte(path, first),
                                lambda: memmap_first_byte(path, first))
            records.append(record("safetensors time to first byte", tb_ns, "us",
                                  "numpy.memmap", mm_ns))
        if FILTER in "stream 4 MiB slots":
            slots = [tensorbuf.Tensor((SLOT,), "u8", memory="heap", alignment=4096)
                     for _ in range(2)]
            buffer = bytearray(SLOT)
            fd = os.open(path, os.O_RDONLY)
            modes = {}
            for label, flags in (("buffered", core.TB_READ_NO_DIRECT), ("direct", 0)):
                tb_ns, rd_ns = pair(
                    lambda: modes.setdefault(label, stream_tensorbuf(fd, slots, flags)),
                    lambda: stream_read(path, buffer), 3)
                mode_names = {core.TB_READ_DIRECT: "O_DIRECT", core.TB_READ_BUFFERED: "buffered",
                              core.TB_READ_UNALIGNED: "unaligned",
                              core.TB_READ_NO_DIRECT_HERE: "no O_DIRECT here"}
                used = "/".join(sorted(mode_names[m] for m in modes[label]))
                records.append(record(f"stream {STREAM // MIB} MiB via 2x4 MiB slots {label} ({used})",
                                      tb_ns, "ms", "readinto bytearray", rd_ns))
            os.close(fd)
    print(f"{'benchmark':60} {'tensorbuf':>12} {'peer':>12} {'ratio':>8}")
    for r in records:
        print(f"{r['name']:60} {r['value']:10.1f}{r['unit']:>2} "
              f"{r['peer_value']:10.1f}{r['unit']:>2} {r['ratio']:8.3f}  ({r['peer']})")
    out = os.environ.get("TB_BENCH_OUT")
    if out:
        with open(out, "w") as f:
            json.dump(records, f, indent=1)


if __name__ == "__main__":
    main()
