"""Cross-process handoff of a 1080p RGBA u8 CUDA tensor, round trip (send,
the other side's device pointer usable, answer back), from Python:

  torch empty        torch.multiprocessing queues, a message without a tensor
  torch CUDA IPC     the same queues carrying a CUDA tensor (torch's CUDA IPC,
                     steady state: the receiver caches the opened handle)
  tensorbuf fresh    a Unix SOCK_SEQPACKET pair, the fd of tb_tensor_export_fd
                     sent each frame, Tensor.import_cuda_fd + device_ptr
  tensorbuf pooled   the same, each of 4 slots' fd sent once, then its number
  tensorbuf channel  what an application writes: Pool.acquire of a pool of 4
                     CUDA tensors, Channel.send, drop; the consumer's
                     Channel.recv maps each slot once, answers on the
                     socket above, and its drop sends the release back
  socket empty       the same socket, a message without a tensor

The ways run interleaved per iteration. With C_JSON (what cuda_handoff
wrote in the same run) the table also gives the C figures' ratios against
torch. Prints a table and writes JSON.

    python3 bench/gpu/cuda_handoff.py PACKAGE_DIR OUT.json [ITERATIONS] [C_JSON]
"""
import json
import os
import select
import socket
import statistics
import subprocess
import sys
import time

SHAPE = (1080, 1920, 4)
SLOTS = 4
WARMUP = 200


def percentiles(samples):
    ordered = sorted(samples)
    return (statistics.median(ordered),
            ordered[min(len(ordered) - 1, int(0.99 * (len(ordered) - 1) + 0.5))])


# ---- tensorbuf consumer (a subprocess: python3 this.py consume PACKAGE FD
# CHANNEL_FD) ----

def consume(package, fd, channel_fd):
    sys.path.insert(0, package)
    import tensorbuf

    sock = socket.socket(fileno=fd)
    channel = tensorbuf.Channel.from_fd(channel_fd)
    os.close(channel_fd)
    pool = {}
    while True:
        readable, _, _ = select.select([sock, channel.fd], [], [])
        if sock not in readable:
            try:  # until the channel says nothing more, as channel.h asks
                while (frame := channel.recv(timeout=0)) is not None:
                    sock.send(frame.device_ptr.to_bytes(8, "little"))
                    del frame  # after the answer: the release goes back
            except tensorbuf.Error:
                break  # closed
            continue
        message, fds, _, _ = socket.recv_fds(sock, 8, 1)
        if len(message) != 8:
            break
        kind, slot = int.from_bytes(message[:4], "little"), int.from_bytes(message[4:], "little")
        answer, fresh = 0, None
        if kind == 1 and fds:
            fresh = tensorbuf.Tensor.import_cuda_fd(fds[0], SHAPE, "u8")
            os.close(fds[0])
            answer = fresh.device_ptr
        elif kind == 2:
            if fds:
                pool[slot] = tensorbuf.Tensor.import_cuda_fd(fds[0], SHAPE, "u8")
                os.close(fds[0])
            answer = pool[slot].device_ptr
        elif kind != 0:
            break
        sock.send(answer.to_bytes(8, "little"))
        del fresh  # after the answer: off the round trip


# ---- torch consumer -------------------------------------------------------------

def torch_consumer(inbox, outbox):
    import torch

    torch.cuda.init()
    while True:
        item = inbox.get()
        if item is None:
            outbox.put(0)
        elif isinstance(item, str):
            break
        else:
            outbox.put(item.data_ptr())
            del item


def main():
    package, out = sys.argv[1], sys.argv[2]
    iterations = int(sys.argv[3]) if len(sys.argv) > 3 else 1000
    c_json = sys.argv[4] if len(sys.argv) > 4 else None
    sys.path.insert(0, package)
    import tensorbuf
    import torch
    import torch.multiprocessing as mp

    context = mp.get_context("spawn")
    inbox, outbox = context.Queue(), context.Queue()
    torch_peer = context.Process(target=torch_consumer, args=(inbox, outbox))
    torch_peer.start()
    torch_frame = torch.zeros(SHAPE, dtype=torch.uint8, device="cuda")
    torch.cuda.synchronize()

    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    channel_ours, channel_theirs = socket.socketpair(socket.AF_UNIX,
                                                     socket.SOCK_SEQPACKET)
    tb_peer = subprocess.Popen(
        [sys.executable, __file__, "consume", package, str(theirs.fileno()),
         str(channel_theirs.fileno())],
        pass_fds=[theirs.fileno(), channel_theirs.fileno()])
    theirs.close()
    channel_theirs.close()
    channel = tensorbuf.Channel.from_fd(channel_ours.fileno())  # dup'd
    channel_ours.close()
    tb_frame = tensorbuf.Tensor(SHAPE, "u8", memory="cuda")
    tb_pool = [tensorbuf.Tensor(SHAPE, "u8", memory="cuda") for _ in range(SLOTS)]
    channel_pool = tensorbuf.Pool(tb_frame, SLOTS)
    sent = [False] * SLOTS

    def torch_round(item):
        start = time.perf_counter()
        inbox.put(item)
        answer = outbox.get()
        took = time.perf_counter() - start
        assert item is None or answer != 0
        return took

    def socket_round(kind, slot):
        start = time.perf_counter()
        fds = []
        if kind == 1:
            fds = [tb_frame.export_fd()]
        elif kind == 2 and not sent[slot]:
            fds = [tb_pool[slot].export_fd()]
        message = kind.to_bytes(4, "little") + slot.to_bytes(4, "little")
        socket.send_fds(ours, [message], fds)
        for fd in fds:
            os.close(fd)
        answer = int.from_bytes(ours.recv(8), "little")
        took = time.perf_counter() - start
        if kind == 2:
            sent[slot] = True
        assert kind == 0 or answer != 0
        return took

    def channel_round():
        start = time.perf_counter()
        frame = channel_pool.acquire(timeout=10)
        channel.send(frame)
        del frame
        answer = int.from_bytes(ours.recv(8), "little")
        took = time.perf_counter() - start
        assert answer != 0
        return took

    ways = {
        "torch empty (mp.Queue)": lambda i: torch_round(None),
        "torch CUDA IPC (mp.Queue)": lambda i: torch_round(torch_frame),
        "socket empty": lambda i: socket_round(0, 0),
        "tensorbuf fresh import": lambda i: socket_round(1, 0),
        "tensorbuf pooled": lambda i: socket_round(2, i % SLOTS),
        "tensorbuf channel pooled": lambda i: channel_round(),
    }
    samples = {name: [] for name in ways}
    for i in range(WARMUP + iterations):
        for name, way in ways.items():
            took = way(i)
            if i >= WARMUP:
                samples[name].append(took * 1e6)
    inbox.put("quit")
    torch_peer.join()
    ours.send(b"\x03\0\0\0\0\0\0\0")
    tb_peer.wait()

    results = {name: percentiles(values) for name, values in samples.items()}
    torch_ipc = results["torch CUDA IPC (mp.Queue)"][0]
    c = {}
    if c_json:
        with open(c_json) as f:
            handoff = json.load(f)["handoff_us"]
        c = {f"C {way}": (handoff[way]["median"], handoff[way]["p99"])
             for way in ("empty", "fresh", "pooled", "channel_pooled")}
    name = torch.cuda.get_device_name()
    print(f"CUDA tensor handoff round trip, 1080p RGBA u8, {name}, "
          f"{iterations} iterations after {WARMUP} warm-up")
    print(f"{'way':34} {'median us':>10} {'p99 us':>10} {'vs torch IPC':>13}")
    for way, (median, p99) in list(results.items()) + list(c.items()):
        print(f"{way:34} {median:10.1f} {p99:10.1f} {median / torch_ipc:12.2f}x")
    with open(out, "w") as f:
        json.dump({"device": name, "torch": torch.__version__,
                   "iterations": iterations, "frame": "1080p rgba u8",
                   "round_trip_us": {way: {"median": m, "p99": p}
                                     for way, (m, p) in {**results, **c}.items()},
                   "target": "tensorbuf <= 0.25x torch CUDA IPC"}, f, indent=1)


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "consume":
        consume(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
    else:
        main()
