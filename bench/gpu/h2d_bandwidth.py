"""Host-to-device bandwidth of 64 MiB: a tensorbuf CUDA_HOST tensor copied
into a tensorbuf CUDA tensor (tb_tensor_copy), against PyTorch's pinned
memory and pageable memory (tensor.copy_), and a tensorbuf SHM tensor
(pageable), all in one run. Also the one-time cost of making 64 MiB
cuda_host memory (allocation + cuMemHostRegister), paid once per pooled
buffer, not per frame. Prints a table and writes JSON.

    python3 bench/gpu/h2d_bandwidth.py PACKAGE_DIR OUT.json
"""
import json
import statistics
import sys
import time

sys.path.insert(0, sys.argv[1])
import tensorbuf  # noqa: E402
import torch  # noqa: E402

N = 64 << 20
REPEATS = 50
device = torch.empty(N, dtype=torch.uint8, device="cuda")
tb_device = tensorbuf.Tensor((N,), "u8", memory="cuda")


def bandwidth(copy):
    for _ in range(5):
        copy()
    torch.cuda.synchronize()
    samples = []
    for _ in range(REPEATS):
        start = time.perf_counter()
        copy()
        torch.cuda.synchronize()
        samples.append(time.perf_counter() - start)
    return N / statistics.median(samples) / 1e9


start = time.perf_counter()
tb_pinned = tensorbuf.Tensor((N,), "u8", memory="cuda_host")
register_ms = (time.perf_counter() - start) * 1e3
tb_pinned_huge = tensorbuf.Tensor((N,), "u8", memory="cuda_host", huge_pages=True)
tb_shm = tensorbuf.Tensor((N,), "u8", memory="shm")
torch_pinned = torch.empty(N, dtype=torch.uint8).pin_memory()
torch_pageable = torch.empty(N, dtype=torch.uint8)
for t in (tb_shm,):
    t.numpy()[:] = 1
tb_pinned.numpy()[:] = 1
tb_pinned_huge.numpy()[:] = 1
torch_pinned.fill_(1)
torch_pageable.fill_(1)

rows = {
    "tensorbuf cuda_host -> cuda (tb_tensor_copy)": bandwidth(lambda: tb_device.copy_from(tb_pinned)),
    "tensorbuf cuda_host huge_pages -> cuda (tb_tensor_copy)": bandwidth(lambda: tb_device.copy_from(tb_pinned_huge)),
    "torch pinned -> cuda (copy_)": bandwidth(lambda: device.copy_(torch_pinned)),
    "torch pageable -> cuda (copy_)": bandwidth(lambda: device.copy_(torch_pageable)),
    "tensorbuf shm -> cuda (tb_tensor_copy, pageable)": bandwidth(lambda: tb_device.copy_from(tb_shm)),
}
pinned = rows["torch pinned -> cuda (copy_)"]
print(f"H2D 64 MiB on {torch.cuda.get_device_name()}, median of {REPEATS}")
print(f"{'path':52s} {'GB/s':>8s} {'vs torch pinned':>16s}")
for name, gbps in rows.items():
    print(f"{name:52s} {gbps:8.2f} {gbps / pinned:15.2f}x")
print(f"one-time cuda_host allocation + registration of 64 MiB: {register_ms:.1f} ms")
json.dump({"device": torch.cuda.get_device_name(), "bytes": N, "repeats": REPEATS,
           "gbps": rows, "ratio_cuda_host_vs_torch_pinned":
           rows["tensorbuf cuda_host -> cuda (tb_tensor_copy)"] / pinned,
           "cuda_host_alloc_register_ms": register_ms},
          open(sys.argv[2], "w"), indent=1)
