#!/usr/bin/env python3
"""The benchmark suite's driver: mounts mcastfs and the bare libfuse anchor,
runs every scenario beside its anchors, prints one table and writes it as
JSON. Started by Benchmarks/suite/run (which installs, builds and cleans up);
see Benchmarks/README.md.

    driver.py WORK_DIR REPO_DIR

Environment (all optional):
  BENCH_SECONDS   length of one timed run, default 1.0
  BENCH_ROUNDS    rounds per scenario (medians reported), default 3
  BENCH_SIZES     message sizes, default "64 4096"
  BENCH_READERS   fan-out of the 1->N scenarios, default 16
  BENCH_IDLE      blocked readers in the idle scenario, default 10000
  BENCH_ONLY      subset of "record readbuf framed lines python idle core", default all
                  ("anchors" is taken for "framed")
  BENCH_FRAMED_BATCH  messages per batch write of the framed view (and its mmsg anchor), default 64
  BENCH_PROFILE=1 also profile mcastfs (perf, cpu-clock) in the 1->N stream and paced runs
  BENCH_COUNT_THREADS=0  do not count the daemons' thread creations (perf stat)
"""
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import time

import benchlib
from benchlib import Daemon, Sampler, parse
from table import ROWS, compare, median, print_table, row

WORK, REPO = sys.argv[1], sys.argv[2]
HERE = os.path.dirname(os.path.abspath(__file__))
BIN = os.path.join(WORK, "bin")
SECONDS = float(os.environ.get("BENCH_SECONDS", "1.0"))
CPUS = os.cpu_count() or 1
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
SIZES = [int(s) for s in os.environ.get("BENCH_SIZES", "64 4096").split()]
FAN = int(os.environ.get("BENCH_READERS", "16"))
IDLE_N = int(os.environ.get("BENCH_IDLE", "10000"))
ONLY = os.environ.get("BENCH_ONLY", "record readbuf framed lines python idle core").split()
ONLY = ["framed" if o == "anchors" else o for o in ONLY]
FRAMED_BATCH = int(os.environ.get("BENCH_FRAMED_BATCH", "64"))
# The framed readers' other buffers at 1->N, beside the 1 MiB of the main
# rows: about what 256 queued frames take (capacity 256), and between.
FRAMED_BUFS = {64: [16384, 65536], 4096: [65536, 262144]}
READ_BUFS = [4096, 65536, 131072, 1 << 20]  # the readbuf scenario: 128 KiB is what cat(1) uses
PROFILE = os.environ.get("BENCH_PROFILE", "0") == "1"
CLIENT_TIMEOUT = 90
MCASTFS = os.path.join(REPO, ".build", "release", "mcastfs")
CORE_BENCH = os.path.join(REPO, ".build", "release", "core-bench")
COUNT_THREADS = os.environ.get("BENCH_COUNT_THREADS", "1") == "1"
T0 = time.monotonic()


def log(msg):
    print(f"[{time.monotonic() - T0:6.1f}s] {msg}", file=sys.stderr, flush=True)


# ---- daemons ------------------------------------------------------------------

DAEMONS = []


def mount(name, argv, mnt):
    d = Daemon(name, argv, mnt, WORK)
    DAEMONS.append(d)
    return d


def unmount(d):
    d.stop()
    DAEMONS.remove(d)


# ---- clients -------------------------------------------------------------------

def run_client(argv, daemon=None):
    counting = os.path.join(WORK, "newtask.csv") if COUNT_THREADS else None
    return benchlib.run_client(argv, daemon, CLIENT_TIMEOUT, counting)


class System:
    """One way to carry messages: how to invoke a client for (mode, size, count)."""

    def __init__(self, key, label, argv_fn, daemon=None, cal=1000, cap=2_000_000):
        self.key, self.label, self.argv_fn, self.daemon, self.cal, self.cap = key, label, argv_fn, daemon, cal, cap

    def run(self, mode, size, count):
        return run_client(self.argv_fn(mode, size, count), self.daemon)


def measure(scenario, systems, mode, size):
    """Calibrates each system, then ROUNDS rounds; in each round every system
    runs once, back to back, in the same order. Returns {system: [run per
    round]}."""
    counts, runs = {}, {}
    for s in systems:
        r = s.run(mode, size, s.cal)
        counts[s.key] = int(min(s.cap, max(300, r["msgs_per_s"] * SECONDS)))
    for rnd in range(ROUNDS):
        for s in systems:
            r = s.run(mode, size, counts[s.key])
            log(f"{scenario:<28} {s.label:<22} run {rnd + 1}: {r['msgs_per_s']:>9.0f} msgs/s  "
                f"p50 {r['p50_us']:>9.1f} µs  p99 {r['p99_us']:>9.1f} µs  ({r['count']:.0f} msgs, {r['elapsed_s']} s)")
            runs.setdefault(s.key, []).append(r)
    return runs


# ---- the results (the table itself: table.py) -----------------------------------

RUNS = {}
PROFILE_TOP = []


def threads_created(scenario, mode, m_runs, a_runs):
    """Threads the daemon created per 1,000 messages (needs perf; no row
    without it). The ratio is left out when the anchor created none."""
    key = "daemon_threads_created_per_1k_msgs"
    if not all(key in r for r in m_runs + a_runs):
        return
    m, a = median([r[key] for r in m_runs]), median([r[key] for r in a_runs])
    ratios = [x[key] / y[key] for x, y in zip(m_runs, a_runs) if y[key]]
    row(scenario, f"daemon threads created /1k msgs ({mode})", m, "bare libfuse", a, "lower",
        ratio=median(ratios) if len(ratios) == len(m_runs) else None)


# ---- scenarios ---------------------------------------------------------------------

def fs_argv(mnt_send, read_paths, flags):
    def argv(mode, size, count):
        m = "pingpong" if mode == "pingpong" else mode
        return [os.path.join(BIN, "fanout"), m, "fs", str(size), str(count), str(len(read_paths)), *flags,
                mnt_send, *read_paths]
    return argv


def sock_argv(kind, n, flags=("-c",)):
    def argv(mode, size, count):
        return [os.path.join(BIN, "fanout"), mode, kind, str(size), str(count), str(n), *flags]
    return argv


def make_groups():
    """g1 (member r0) and gFAN (members r0 .. r{FAN-1}) on the mcastfs mount;
    for line messages gline (`set message=line`, member r0) and gline64k (the
    same with capacity 65536)."""
    for n in (1, FAN):
        g = f"{MC}/g{n}"
        os.mkdir(g)
        for k in range(n):
            open(f"{g}/r{k}", "w").close()
    for name, settings in (("gline", "message=line"), ("gline64k", "message=line capacity=65536")):
        os.mkdir(f"{MC}/{name}")
        with open(f"{MC}/{name}/ctl", "w") as f:
            f.write(f"set {settings}\n")
        open(f"{MC}/{name}/r0", "w").close()


def size_label(size):
    return f"{size} B" if size < 1024 else f"{size // 1024} KiB" if size < 1 << 20 else f"{size >> 20} MiB"


def record_path(mc, bare):
    mc_r = {n: [f"{MC}/g{n}/r{k}" for k in range(n)] for n in (1, FAN)}
    bare_r = {n: [f"{BARE}/r{k}" for k in range(n)] for n in (1, FAN)}
    fanout = os.path.join(BIN, "fanout")

    def mcastfs_sys(n, cal):
        return System("mcastfs", "mcastfs", fs_argv(f"{MC}/g{n}/send", mc_r[n], ["-c"]), mc, cal)

    for size in SIZES:
        sz = size_label(size)
        # 1 -> 1
        sc = f"1→1 {sz}"
        st = measure(sc + " stream", [
            mcastfs_sys(1, 1500),
            System("bare", "bare libfuse", fs_argv(f"{BARE}/f", bare_r[1], []), bare, 1500),
            System("pipe", "pipe", sock_argv("pipe", 1), cal=20000),
            System("dgram", "unix dgram", sock_argv("dgram", 1), cal=20000),
        ], "stream", size)
        pc = measure(sc + " paced", [
            mcastfs_sys(1, 1000),
            System("bare_rt", "bare round trip",
                   lambda mode, size, count: [fanout, "pingpong", "fs", str(size), str(count), "1", f"{BARE}/f",
                                              f"{BARE}/r0"], bare, 1000),
            System("pipe", "pipe", sock_argv("pipe", 1), cal=5000),
            System("dgram", "unix dgram", sock_argv("dgram", 1), cal=5000),
        ], "paced", size)
        RUNS[sc] = {"stream": st, "paced": pc}
        M = st["mcastfs"]
        compare(sc, "msgs/s", "msgs_per_s", M, st["bare"], "bare libfuse", goal=("ratio >=", 0.8))
        compare(sc, "daemon CPU µs/msg", "daemon_cpu_us_per_msg", M, st["bare"], "bare libfuse",
                "lower")
        threads_created(sc, "stream", M, st["bare"])
        compare(sc, "msgs/s", "msgs_per_s", M, st["pipe"], "pipe")
        compare(sc, "msgs/s", "msgs_per_s", M, st["dgram"], "unix dgram")
        M = pc["mcastfs"]
        compare(sc, "p50 µs", "p50_us", M, pc["bare_rt"], "bare round trip", "lower")
        compare(sc, "p99 µs", "p99_us", M, pc["bare_rt"], "bare round trip", "lower", ("ratio <=", 2))
        for k, lab in (("pipe", "pipe"), ("dgram", "unix dgram")):
            compare(sc, "p50 µs", "p50_us", M, pc[k], lab, "lower")
            compare(sc, "p99 µs", "p99_us", M, pc[k], lab, "lower")
        bare_rt = pc["bare_rt"]
        # 1 -> N
        sc = f"1→{FAN} {sz}"
        st = measure(sc + " stream", [
            mcastfs_sys(FAN, 200),
            System("bare", "bare libfuse", fs_argv(f"{BARE}/f", bare_r[FAN], []), bare, 200),
            System("dgram", "unix dgram", sock_argv("dgram", FAN), cal=2000),
        ], "stream", size)
        pc = measure(sc + " paced", [
            mcastfs_sys(FAN, 150),
            System("bare", "bare libfuse (gated)", fs_argv(f"{BARE}/f", bare_r[FAN], ["-g"]), bare, 150),
            System("dgram", "unix dgram", sock_argv("dgram", FAN), cal=1000),
        ], "paced", size)
        RUNS[sc] = {"stream": st, "paced": pc, "bare_round_trip_1to1": bare_rt}
        M = st["mcastfs"]
        compare(sc, "msgs/s", "msgs_per_s", M, st["bare"], "bare libfuse", goal=("ratio >=", 0.8))
        compare(sc, "deliveries/s", "deliveries_per_s", M, st["bare"], "bare libfuse")
        compare(sc, "daemon CPU µs/msg", "daemon_cpu_us_per_msg", M, st["bare"], "bare libfuse",
                "lower")
        threads_created(sc, "stream", M, st["bare"])
        compare(sc, "msgs/s", "msgs_per_s", M, st["dgram"], "unix dgram")
        M = pc["mcastfs"]
        threads_created(sc, "paced", M, pc["bare"])
        compare(sc, "p50 µs", "p50_us", M, pc["bare"], "bare libfuse (gated)", "lower")
        compare(sc, "p99 µs", "p99_us", M, pc["bare"], "bare libfuse (gated)", "lower",
                ("ratio <=", 2, "(same work)"))
        compare(sc, "p99 µs", "p99_us", M, bare_rt, "bare round trip (1→1)", "lower", ("ratio <=", 2))
        # What one paced message costs the client processes themselves (their
        # N FUSE reads and wake-ups), served by mcastfs or by bare libfuse;
        # over the machine's CPUs it bounds the period of the paced cycle,
        # and so the slowest reader's latency, from below (Benchmarks/README.md).
        compare(sc, "clients' CPU µs/msg (paced)", "client_cpu_us_per_msg", M, pc["bare"],
                "bare libfuse (gated)", "lower")
        floor = [dict(r, client_cpu_floor_us=r["client_cpu_us_per_msg"] / CPUS) for r in M]
        compare(sc, f"clients' CPU per msg ÷ {CPUS} CPUs, µs (paced)", "client_cpu_floor_us", floor,
                [dict(r, client_cpu_floor_us=r["p99_us"]) for r in bare_rt], "bare round trip (1→1) p99",
                "lower")
        compare(sc, "p50 µs", "p50_us", M, pc["dgram"], "unix dgram", "lower")
        compare(sc, "p99 µs", "p99_us", M, pc["dgram"], "unix dgram", "lower")
        if PROFILE and size == SIZES[0]:
            profile(mc, mcastfs_sys(FAN, 0), size, st["mcastfs"][0]["count"], "stream")
            profile(mc, mcastfs_sys(FAN, 0), size, pc["mcastfs"][0]["count"], "paced")


def read_buffers(mc, bare):
    """The 1->1 64 B stream of the record path with the reader's buffer at
    each of READ_BUFS, mcastfs beside bare libfuse reading with the same
    buffer. A direct-I/O read pins (and afterwards dirties and unpins) as
    many pages of the buffer as one request can take, whatever the reply's
    length: docs/fuse-notes.md, "What a read's buffer size costs"."""
    size = 64
    for buf in READ_BUFS:
        sc = f"1→1 {size} B, {size_label(buf)} reads"
        flags = ["-b", str(buf)]
        st = measure(sc + " stream", [
            System("mcastfs", "mcastfs", fs_argv(f"{MC}/g1/send", [f"{MC}/g1/r0"], ["-c", *flags]), mc, 1500),
            System("bare", "bare libfuse", fs_argv(f"{BARE}/f", [f"{BARE}/r0"], flags), bare, 1500),
        ], "stream", size)
        RUNS[sc] = {"stream": st, "read_buffer": buf}
        goal = ("ratio >=", 0.8) if buf == 65536 else None
        compare(sc, "msgs/s", "msgs_per_s", st["mcastfs"], st["bare"], f"bare libfuse, {size_label(buf)} reads",
                goal=goal)
        compare(sc, "clients' CPU µs/msg (stream)", "client_cpu_us_per_msg", st["mcastfs"], st["bare"],
                f"bare libfuse, {size_label(buf)} reads", "lower")


def anchor_systems(mode, size, n):
    """What the framed view is compared with, for one shape: libzmq
    PUB/SUB in C over ipc://, a Unix datagram socket pair per reader with one
    send(2) per message, and the same with sendmmsg/recvmmsg batches of
    FRAMED_BATCH, the framed writer's batch (stream only: a batch needs
    messages in flight). framed_scenarios() puts its own Systems into the
    same measure() call, so that its ratios are paired by round with these
    (Benchmarks/README.md, Scenario 1d)."""
    anchors = os.path.join(BIN, "anchors")
    ipc = os.path.join(WORK, "anchors.ipc")
    zmq = System("zmq_c", "libzmq PUB/SUB ipc (C)",
                 lambda mode, size, count: [anchors, mode, "zmq", str(size), str(count), str(n), ipc],
                 cal=20000 if n == 1 else 2000)
    if mode == "paced":
        return [zmq]
    mmsg = [System(f"mmsg{b}", f"unix dgram, mmsg ×{b}",
                   lambda mode, size, count, b=b: [anchors, mode, "mmsg", str(size), str(count), str(n), str(b)],
                   cal=20000 if n == 1 else 2000) for b in (FRAMED_BATCH,)]
    return [zmq, System("dgram", "unix dgram, send per msg", sock_argv("dgram", n), cal=20000 if n == 1 else 2000),
            *mmsg]


def framed_argv(n, buf=None):
    send = f"{MC}/g{n}/frames/send"
    reads = [f"{MC}/g{n}/frames/r{k}" for k in range(n)]
    flags = ["-b", str(buf)] if buf else []

    def argv(mode, size, count):
        return [os.path.join(BIN, "framed"), mode, str(size), str(count), str(n), str(FRAMED_BATCH), *flags, send,
                *reads]
    return argv


def daemon_ns_per_delivery(runs, n):
    """The daemon's CPU (utime + stime) per delivered message, warm-up
    included, in ns, one value per run."""
    return [dict(r, daemon_ns_per_delivery=r["daemon_cpu_s"] * 1e9 / ((r["count"] + r["warmup"]) * n)) for r in runs]


def framed_scenarios(mc):
    """The framed view with C clients (framed.c, clients/c/mcastfs.h) beside
    its anchors, paired by round; at 1->N also the readers' other buffer
    sizes (FRAMED_BUFS) against the 1 MiB of the main rows."""
    for size in SIZES:
        for n in (1, FAN):
            sz = size_label(size)
            sc = f"framed 1→{n} {sz}"
            cal = 20000 if n == 1 else 2000
            frames = System("frames", f"framed ×{FRAMED_BATCH}", framed_argv(n), mc, cal)
            bufs = [System(f"frames_b{b}", f"framed, {size_label(b)} reads", framed_argv(n, b), mc, cal)
                    for b in (FRAMED_BUFS.get(size, []) if n > 1 else [])]
            st = measure(sc + " stream", [frames, *bufs, *anchor_systems("stream", size, n)], "stream", size)
            pc = measure(sc + " paced", [System("frames", "framed", framed_argv(n), mc, 1000),
                                         *anchor_systems("paced", size, n)], "paced", size)
            RUNS[sc] = {"stream": st, "paced": pc, "batch": FRAMED_BATCH}
            M = st["frames"]
            first = size == 64 and n == 1
            compare(sc, "msgs/s", "msgs_per_s", M, st["zmq_c"], "libzmq PUB/SUB ipc (C)",
                    goal=("ratio >=", 1.0) if first else None)
            if n > 1:
                compare(sc, "deliveries/s", "deliveries_per_s", M, st["zmq_c"], "libzmq PUB/SUB ipc (C)",
                        goal=("ratio >=", 1.0))
            compare(sc, "msgs/s", "msgs_per_s", M, st["dgram"], "unix dgram, send per msg",
                    goal=("ratio >=", 3.0) if first else None)
            compare(sc, "msgs/s", "msgs_per_s", M, st[f"mmsg{FRAMED_BATCH}"], f"unix dgram, mmsg ×{FRAMED_BATCH}")
            ns = daemon_ns_per_delivery(M, n)
            row(sc, "daemon CPU ns/delivery (stream)", median([r["daemon_ns_per_delivery"] for r in ns]), "—", None,
                "lower", ("value <=", 150) if n > 1 else None)
            compare(sc, "clients' CPU µs/msg (stream)", "client_cpu_us_per_msg", M, st["zmq_c"],
                    "libzmq PUB/SUB ipc (C)", "lower")
            for b in bufs:
                reads = size_label(int(b.key.removeprefix("frames_b")))
                compare(sc, f"deliveries/s, {reads} reads", "deliveries_per_s", st[b.key], M, "framed, 1 MiB reads")
                compare(sc, f"clients' CPU µs/msg, {reads} reads", "client_cpu_us_per_msg", st[b.key], M,
                        "framed, 1 MiB reads", "lower")
            for field, metric in (("p50_us", "p50 µs"), ("p99_us", "p99 µs")):
                compare(sc, metric, field, pc["frames"], pc["zmq_c"], "libzmq PUB/SUB ipc (C)", "lower")
            if PROFILE and n > 1 and size == SIZES[0]:
                profile(mc, frames, size, st["frames"][0]["count"], "stream", "framed")


def line_scenario(mc):
    """`seq COUNT | tee G/send` into a group with message=line, read through
    G/frames/r0, against the same pipeline into a FIFO."""
    framed = os.path.join(BIN, "framed")
    fifo = os.path.join(WORK, "lines.fifo")
    if not os.path.exists(fifo):
        os.mkfifo(fifo)

    def fs(group):
        return lambda mode, size, count: [framed, "lines", "fs", str(count), f"{MC}/{group}/send",
                                          f"{MC}/{group}/frames/r0"]
    sc = "line messages: seq | tee"
    st = measure(sc, [
        System("lines", "mcastfs", fs("gline"), mc, 100000),
        System("lines64k", "mcastfs, capacity 65536", fs("gline64k"), mc, 100000),
        System("pipe", "seq | tee FIFO", lambda mode, size, count: [framed, "lines", "pipe", str(count), fifo, fifo],
               cal=1_000_000, cap=60_000_000),
    ], "lines", 0)
    RUNS[sc] = {"lines": st}
    compare(sc, "msgs/s (capacity 256)", "msgs_per_s", st["lines"], st["pipe"], "seq | tee FIFO")
    compare(sc, "msgs/s (capacity 65536)", "msgs_per_s", st["lines64k"], st["pipe"], "seq | tee FIFO")
    compare(sc, "clients' CPU µs/msg (reader)", "client_cpu_us_per_msg", st["lines"], st["pipe"], "seq | tee FIFO",
            "lower")


def profile(mc, system, size, count, mode, view="record"):
    perf_data = os.path.join(WORK, "perf.data")
    tag = f"1to{FAN}-{size}-{mode}" + ("" if view == "record" else f"-{view}")
    out = os.path.join(REPO, "results", f"perf-{tag}.txt")
    log(f"profiling mcastfs (pid {mc.pid}) during 1→{FAN} {mode}, {size} B, {view} view")
    perf = subprocess.Popen(["perf", "record", "-e", "cpu-clock", "-g", "-p", str(mc.pid), "-o", perf_data],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.3)
    r = system.run(mode, size, int(count) * 3)
    perf.send_signal(signal.SIGINT)
    perf.wait(timeout=30)
    rep = subprocess.run(["perf", "report", "-i", perf_data, "--stdio", "--no-children", "--percent-limit", "1",
                          "--sort", "dso,symbol", "-F", "overhead,dso,sym", "-g", "none"], capture_output=True, text=True)
    flat = subprocess.run(["perf", "report", "-i", perf_data, "--stdio", "--no-children", "--percent-limit", "0.5",
                           "--sort", "symbol", "-g", "caller,0.5,callee,function,percent", "--max-stack", "12"],
                          capture_output=True, text=True)
    dso = subprocess.run(["perf", "report", "-i", perf_data, "--stdio", "--no-children", "--sort", "dso", "-F", "overhead,dso",
                          "-g", "none"], capture_output=True, text=True)
    header = f"# mcastfs, {view} view, 1→{FAN} {mode}, {size} B, {r['msgs_per_s']:.0f} msgs/s under perf\n"

    def demangled(text):
        demangle = shutil.which("swift-demangle") or "/opt/swift/usr/bin/swift-demangle"
        if os.access(demangle, os.X_OK):
            text = subprocess.run([demangle, "--simplified"], input=text, capture_output=True, text=True).stdout or text
        return [re.sub(r"\s+-\s+-\s*$", "", line).rstrip() for line in text.splitlines()]

    def by_overhead(lines):
        rows = [" ".join(line.split()).removesuffix(" - -") for line in lines
                if line.strip() and not line.startswith("#")]
        rows = [r for r in rows if r.split()[0].endswith("%")]
        return sorted(rows, key=lambda r: -float(r.split()[0].rstrip("%")))

    by_dso = by_overhead(dso.stdout.splitlines())
    top = by_overhead(demangled(rep.stdout))[:15]
    text = header + "\n# by shared object\n" + "\n".join(by_dso) + "\n\n# by symbol (self time, >= 1 %)\n" + \
        "\n".join(by_overhead(demangled(rep.stdout))) + "\n\n# with call chains\n" + "\n".join(demangled(flat.stdout)) + "\n"
    with open(out, "w") as f:
        f.write(text)
    PROFILE_TOP.extend([f"{view} view, 1→{FAN} {mode}, {size} B ({out}):", "  by shared object:",
                        *("    " + line for line in by_dso[:6]), "  by symbol (self):", *("    " + line for line in top[:12])])
    RUNS.setdefault("profile", {})[tag] = {"file": out, "msgs_per_s_under_perf": r["msgs_per_s"],
                                            "threads_created": r.get("daemon_threads_created")}
    log(f"profile written to {out}")


def python_scenarios(mc):
    script = os.path.join(HERE, "pybench.py")
    py = sys.executable
    ipc = os.path.join(WORK, "zmq.ipc")
    for size in SIZES:
        sz = size_label(size)
        for n in (1, FAN):
            sc = f"Python 1→{n} {sz}"
            reads = [f"{MC}/g{n}/r{k}" for k in range(n)]
            cal = 2000 if n == 1 else 300
            zmq_sys = System("zmq", "pyzmq PUB/SUB ipc",
                             lambda mode, size, count, n=n: [py, script, "zmq", mode, str(size), str(count), str(n),
                                                             ipc], cal=cal * 4)
            mc_sys = System("mcastfs", "mcastfs (Python)",
                            lambda mode, size, count, n=n, reads=reads: [py, script, "fs", mode, str(size),
                                                                         str(count), str(n), f"{MC}/g{n}/send",
                                                                         *reads], mc, cal)
            fr_reads = [f"{MC}/g{n}/frames/r{k}" for k in range(n)]
            fr_sys = System("frames", "framed (Python)",
                            lambda mode, size, count, n=n, reads=fr_reads: [
                                py, script, "frames", mode, str(size), str(count), str(n), str(FRAMED_BATCH),
                                f"{MC}/g{n}/frames/send", *reads], mc, cal * 4)
            st = measure(sc + " stream", [mc_sys, fr_sys, zmq_sys], "stream", size)
            pc = measure(sc + " paced", [mc_sys, fr_sys, zmq_sys], "paced", size)
            RUNS[sc] = {"stream": st, "paced": pc}
            compare(sc, "msgs/s (record view)", "msgs_per_s", st["mcastfs"], st["zmq"], "pyzmq PUB/SUB ipc")
            compare(sc, "p50 µs (record view)", "p50_us", pc["mcastfs"], pc["zmq"], "pyzmq PUB/SUB ipc", "lower")
            compare(sc, "p99 µs (record view)", "p99_us", pc["mcastfs"], pc["zmq"], "pyzmq PUB/SUB ipc", "lower")
            compare(sc, f"msgs/s (framed ×{FRAMED_BATCH})", "msgs_per_s", st["frames"], st["zmq"],
                    "pyzmq PUB/SUB ipc", goal=("ratio >=", 2.0) if size == 64 and n == 1 else None)
            if n > 1:
                compare(sc, f"deliveries/s (framed ×{FRAMED_BATCH})", "deliveries_per_s", st["frames"], st["zmq"],
                        "pyzmq PUB/SUB ipc")
            compare(sc, "p50 µs (framed)", "p50_us", pc["frames"], pc["zmq"], "pyzmq PUB/SUB ipc", "lower")
            compare(sc, "p99 µs (framed)", "p99_us", pc["frames"], pc["zmq"], "pyzmq PUB/SUB ipc", "lower")


def idle_scenario():
    mnt = os.path.join(WORK, "idle")
    d = mount("mcastfs-idle", [MCASTFS, mnt, "-f"], mnt)
    try:
        os.mkdir(f"{mnt}/g")
        time.sleep(0.5)
        idle = d.status()
        p = subprocess.Popen([os.path.join(BIN, "idle"), f"{mnt}/g", str(IDLE_N)], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)
        sampler = Sampler(d).__enter__()

        def step(expect):
            line = p.stdout.readline()
            if not line.startswith(expect):
                raise SystemExit(f"bench: idle client: expected {expect!r}, got {line!r}")
            return parse(line)

        created = step("members")
        time.sleep(0.3)
        members = d.status()
        p.stdin.write("\n")
        p.stdin.flush()
        blocked = step("blocked")
        # the daemon has taken every request when all its threads sleep and
        # its memory stops moving
        prev = None
        for _ in range(100):
            cur = d.status()
            if d.all_threads_asleep() and prev == cur:
                break
            prev = cur
            time.sleep(0.1)
        with_readers = d.status()
        p.stdin.write("\n")
        p.stdin.flush()
        woken = step("woken")
        p.wait(timeout=60)
        sampler.__exit__()
    finally:
        if p.poll() is None:
            p.kill()
        unmount(d)
    sc = f"{IDLE_N:,} blocked readers"
    mib = lambda kib: kib / 1024  # noqa: E731
    row(sc, "daemon threads", with_readers["threads"], "same daemon idle", idle["threads"], "lower",
        ("value <=", 16))
    row(sc, "daemon threads, max (create, block, wake)", sampler.max_threads, "same daemon idle", idle["threads"], "lower")
    row(sc, "daemon VmRSS MiB", mib(with_readers["vmrss_kib"]), "same daemon idle", mib(idle["vmrss_kib"]), "lower",
        ("value <=", 64))
    row(sc, "wake all, ms (one write)", woken["wake_ms"], "—", None, "lower")
    RUNS[sc] = {
        "readers": IDLE_N,
        "idle": idle, "members_no_readers": members, "readers_blocked": with_readers,
        "daemon_threads_max_sampled": sampler.max_threads,
        "rss_bytes_per_member": (members["vmrss_kib"] - idle["vmrss_kib"]) * 1024 / IDLE_N,
        "rss_bytes_per_blocked_reader": (with_readers["vmrss_kib"] - members["vmrss_kib"]) * 1024 / IDLE_N,
        "create_members_s": created["created_s"], "block_readers_s": blocked["blocked_s"],
        "wake_all_ms": woken["wake_ms"],
    }


def core():
    out = os.path.join(WORK, "core.json")
    p = subprocess.run([CORE_BENCH, "--quick", "--json", out], capture_output=True, text=True, timeout=300)
    if p.returncode != 0:
        raise SystemExit(f"bench: core-bench failed:\n{p.stderr}")
    with open(out) as f:
        rows = json.load(f)["core"]
    for r in rows:
        better = "higher" if r["unit"] in ("M/s",) else "lower"
        row(f"core: {r['scenario']}", r["unit"], r["value"], r["anchor"], r["anchor_value"], better)
    RUNS["core"] = rows


def machine():
    model = "unknown"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as f:
        mem_kib = int(f.readline().split()[1])
    return {"nproc": os.cpu_count(), "model_name": model, "kernel": platform.release(),
            "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "mem_mib": mem_kib // 1024,
            "loadavg_at_start": open("/proc/loadavg").read().split()[:3]}


def git(*args):
    p = subprocess.run(["git", "-C", REPO, *args], capture_output=True, text=True)
    return p.stdout.strip()


MC = os.path.join(WORK, "mcastfs")
BARE = os.path.join(WORK, "bare")


def main():
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    info = machine()
    log(f"{info['nproc']} × {info['model_name']}, Linux {info['kernel']}, load {' '.join(info['loadavg_at_start'])}")
    try:
        if {"record", "readbuf", "framed", "lines", "python"} & set(ONLY):
            mc = mount("mcastfs", [MCASTFS, MC, "-f"], MC)
            bare = mount("bare", [os.path.join(BIN, "bare_fuse"), BARE], BARE)
            log(f"mounted mcastfs (pid {mc.pid}) and bare libfuse (pid {bare.pid})")
            make_groups()
            if "record" in ONLY:
                record_path(mc, bare)
            if "readbuf" in ONLY:
                read_buffers(mc, bare)
            if "framed" in ONLY:
                framed_scenarios(mc)
            if "lines" in ONLY:
                line_scenario(mc)
            if "python" in ONLY:
                python_scenarios(mc)
            unmount(bare)
            unmount(mc)
        if "idle" in ONLY:
            log(f"idle: {IDLE_N} members, one blocked reader each")
            idle_scenario()
        if "core" in ONLY:
            log("core-bench --quick")
            core()
    finally:
        for d in list(DAEMONS):
            unmount(d)
    info["loadavg_at_end"] = open("/proc/loadavg").read().split()[:3]
    print_table()
    if PROFILE_TOP:
        print("Profile of the mcastfs daemon (perf record -e cpu-clock -g -p PID; call chains in the files):")
        for line in PROFILE_TOP:
            print("  ", line[:150])
        print()
    os.makedirs(os.path.join(REPO, "results"), exist_ok=True)
    doc = {
        "benchmark": "suite", "machine": info,
        "mcastfs_commit": git("rev-parse", "--short", "HEAD") or "unknown",
        "mcastfs_worktree_dirty": bool(git("status", "--porcelain", "--untracked-files=no")),
        "settings": {"seconds_per_run": SECONDS, "rounds": ROUNDS, "sizes": SIZES, "fan_out": FAN,
                     "idle_readers": IDLE_N, "figures": "median over rounds",
                     "ratio": "median over rounds of mcastfs / anchor, paired by round; `better` says which way is good"},
        "elapsed_s": round(time.monotonic() - T0, 1),
        "table": ROWS, "runs": RUNS,
    }
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    for name in (f"bench-{stamp}.json", "bench.json"):
        with open(os.path.join(REPO, "results", name), "w") as f:
            json.dump(doc, f, indent=1, ensure_ascii=False)
    print(f"{info['nproc']} × {info['model_name']}, Linux {info['kernel']}, {info['date']}; "
          f"load {' '.join(info['loadavg_at_start'])} → {' '.join(info['loadavg_at_end'])}; "
          f"{doc['elapsed_s']:.0f} s")
    print(f"JSON: results/bench-{stamp}.json (and results/bench.json)")


if __name__ == "__main__":
    main()
