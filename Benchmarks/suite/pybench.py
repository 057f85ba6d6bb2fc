#!/usr/bin/env python3
"""One writer and N readers from Python: ZeroMQ PUB/SUB over ipc:// (pyzmq),
mcastfs's record view through os.write/os.read, or its framed view through
the project's client module (clients/python/mcastfs.py). See
Benchmarks/README.md.

    pybench.py zmq    MODE SIZE COUNT N IPC_PATH
    pybench.py fs     MODE SIZE COUNT N WRITE_PATH READ_PATH_1 .. READ_PATH_N
    pybench.py frames MODE SIZE COUNT N BATCH G/frames/send G/frames/NAME_1 .. G/frames/NAME_N

MODE is `stream` (the writer sends COUNT messages back to back, every reader
receives all COUNT; msgs/s = COUNT / time until the last reader has its last)
or `paced` (one message in flight: the writer sends, then waits until all N
readers have taken it; gives the write->read latency without queueing).

The writer is this process; each reader is its own process (fork), so the GIL
is not shared. Both systems use the same code around the one send and the one
receive:
  zmq  PUB binds IPC_PATH with SNDHWM=0, each SUB connects with RCVHWM=0 and
       subscribes to everything. HWM 0 means nothing is dropped (PUB/SUB has
       no flow control: at a finite HWM it would drop, not wait), so a stream
       run measures the rate at which every subscriber gets every message.
       Slow joiners: the writer sends marker messages every millisecond until
       every subscriber has seen one; readers ignore markers.
  fs   os.write(fd, msg) on WRITE_PATH, os.read(fd, 65536) on each member.
  frames  the writer collects BATCH messages and sends them with
       mcastfs.send_batch (one write(2) unless it comes back short); each
       reader takes mcastfs.read_frames(fd, 65536) and goes through the
       frames, also checking that each frame's group sequence number is one
       more than the previous one's. Paced: batches of one.
Every message carries its sequence number and time.monotonic_ns() taken just
before the send; 50 paced warm-up messages precede the timed part; readers
check that they get every message in order.

Output: one line of key=value pairs, like fanout.c's.
"""
import multiprocessing as mp
import os
import struct
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "clients", "python"))
import mcastfs  # noqa: E402

WARMUP = 50
MARKER = 1 << 63
HDR = struct.Struct("<QQ")
READ_SIZE = 65536


def reader(system, mode, size, count, n, index, target, ready, acks, results):
    total = WARMUP + count
    lat = [0] * count
    if system == "zmq":
        import zmq
        ctx = zmq.Context()
        sock = ctx.socket(zmq.SUB)
        sock.setsockopt(zmq.RCVHWM, 0)
        sock.setsockopt(zmq.RCVTIMEO, 20000)
        sock.setsockopt(zmq.SUBSCRIBE, b"")
        sock.connect(target)
        recv = sock.recv
        # wait for the first marker: the subscription is live
        while True:
            seq, _ = HDR.unpack_from(recv())
            if seq == MARKER:
                break
        with ready.get_lock():
            ready.value += 1
    else:
        fd = os.open(target, os.O_RDONLY)
        recv = lambda: os.read(fd, READ_SIZE)  # noqa: E731
        with ready.get_lock():
            ready.value += 1
    unpack, now, release = HDR.unpack_from, time.monotonic_ns, acks.release
    expect = 0
    if system == "frames":
        read_frames, group_seq = mcastfs.read_frames, None
        while expect < total:
            frames = read_frames(fd, READ_SIZE)
            t1 = now()
            if not frames:
                raise SystemExit(f"pybench reader {index}: end of stream at {expect}")
            for f in frames:
                payload = f.payload
                seq, t0 = unpack(payload)
                if seq != expect or len(payload) != size or (group_seq is not None and f.sequence != group_seq + 1):
                    raise SystemExit(f"pybench reader {index}: got seq {seq} ({len(payload)} bytes, frame "
                                     f"{f.sequence} after {group_seq}), expected {expect} ({size})")
                group_seq = f.sequence
                if seq >= WARMUP:
                    lat[seq - WARMUP] = t1 - t0
                if seq < WARMUP or mode == "paced":
                    release()
                expect += 1
        results.put((index, time.monotonic_ns(), lat))
        return
    while expect < total:
        msg = recv()
        t1 = now()
        seq, t0 = unpack(msg)
        if seq == MARKER:
            continue
        if seq != expect or len(msg) != size:
            raise SystemExit(f"pybench reader {index}: got seq {seq} ({len(msg)} bytes), expected {expect} ({size})")
        if seq >= WARMUP:
            lat[seq - WARMUP] = t1 - t0
        if seq < WARMUP or mode == "paced":
            release()
        expect += 1
    results.put((index, time.monotonic_ns(), lat))


def pct_us(values, p):
    if not values:
        return 0.0
    return values[int(p * (len(values) - 1) + 0.5)] / 1000.0


def main():
    if len(sys.argv) < 7:
        sys.exit(__doc__)
    system, mode = sys.argv[1], sys.argv[2]
    size, count, n = int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
    paths = sys.argv[6:]
    batch = 1
    if system == "frames":
        batch, paths = int(paths[0]), paths[1:]
    assert system in ("zmq", "fs", "frames") and mode in ("stream", "paced") and size >= 16 and batch >= 1
    ctx = mp.get_context("fork")
    ready = ctx.Value("i", 0)
    acks = ctx.Semaphore(0)
    results = ctx.Queue()
    if system == "zmq":
        targets = ["ipc://" + paths[0]] * n
    else:
        assert len(paths) == n + 1, "fs needs WRITE_PATH and N READ_PATHs"
        targets = paths[1:]
    procs = [ctx.Process(target=reader, args=(system, mode, size, count, n, k, targets[k], ready, acks, results))
             for k in range(n)]
    for p in procs:
        p.start()

    pad = bytes(size - HDR.size)
    if system == "zmq":
        import zmq
        zctx = zmq.Context()
        sock = zctx.socket(zmq.PUB)
        sock.setsockopt(zmq.SNDHWM, 0)
        sock.bind(targets[0])
        send = sock.send
        deadline = time.monotonic() + 20
        marker = HDR.pack(MARKER, 0) + pad
        while ready.value < n:
            if time.monotonic() > deadline:
                sys.exit("pybench: subscribers did not join")
            send(marker)
            time.sleep(0.001)
    else:
        fd = os.open(paths[0], os.O_WRONLY)
        send = lambda m: os.write(fd, m)  # noqa: E731
        while ready.value < n:
            time.sleep(0.001)

    pack, now, acquire = HDR.pack, time.monotonic_ns, acks.acquire
    if system == "frames":
        send_batch = mcastfs.send_batch
        send = lambda m: send_batch(fd, (m,))  # noqa: E731
    for i in range(WARMUP):
        send(pack(i, now()) + pad)
        for _ in range(n):
            acquire()
    t_start = now()
    if mode == "stream" and system == "frames":
        end = WARMUP + count
        for first in range(WARMUP, end, batch):
            send_batch(fd, [pack(i, now()) + pad for i in range(first, min(first + batch, end))])
    elif mode == "stream":
        for i in range(WARMUP, WARMUP + count):
            send(pack(i, now()) + pad)
    else:
        for i in range(WARMUP, WARMUP + count):
            send(pack(i, now()) + pad)
            for _ in range(n):
                acquire()
    got = [results.get(timeout=120) for _ in range(n)]
    for p in procs:
        p.join()
        if p.exitcode != 0:
            sys.exit(f"pybench: a reader failed ({p.exitcode})")
    t_end = max(g[1] for g in got)
    secs = (t_end - t_start) / 1e9
    every = sorted(v for g in got for v in g[2])
    last = sorted(max(g[2][i] for g in got) for i in range(count))
    print(f"mode={mode} system=py-{system} size={size} n={n} batch={batch} count={count} elapsed_s={secs:.3f} "
          f"msgs_per_s={count / secs:.0f} deliveries_per_s={count * n / secs:.0f} "
          f"p50_us={pct_us(every, 0.5):.1f} p99_us={pct_us(every, 0.99):.1f} max_us={every[-1] / 1000:.1f} "
          f"timed={len(every)} last_p50_us={pct_us(last, 0.5):.1f} last_p99_us={pct_us(last, 0.99):.1f} "
          f"warmup={WARMUP}")
    if system == "zmq":
        sock.close(0)
        zctx.term()


if __name__ == "__main__":
    main()
