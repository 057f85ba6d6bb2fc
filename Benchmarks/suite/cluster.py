#!/usr/bin/env python3
"""The suite's cluster scenario (issue 13; Benchmarks/README.md, "Scenario 5:
groups across hosts"): one nats-server (JetStream, loopback, a temporary
store), the bare libnats anchor natsbare.c 1->1 and 1->N, the C FUSE
bridge natsfuse.c (the thinnest FUSE front end on libnats: the floor of
the record-view latency goal), and, given an mcastfs binary that takes
`-o cluster=`, N + 1 daemons on that server
(node 0 writes, nodes 1..N read), the record and framed views beside the
anchor in the same rounds. Prints one table; writes results/cluster-<UTC>.json
and, with --merge FILE, adds its rows and runs to FILE (results/bench.json of
the run just made).

    cluster.py [--merge RESULTS_JSON] [MCASTFS_BINARY]

Without a binary, or with one that refuses `cluster=` (an unknown option),
the mcastfs rows are skipped with one line saying so; the bare rows run.
Environment (optional): BENCH_SECONDS (1.0), BENCH_ROUNDS (3),
BENCH_CLUSTER_READERS (4: the fan-out of 1->N), BENCH_CLUSTER_SIZE (64),
BENCH_FRAMED_BATCH (64), BENCH_CLUSTER_WINDOW (1024: natsbare -w, the
libnats pipelining row); BENCH_ONLY, when set, must name `cluster`. Needs cc, libnats-dev, libfuse3-dev,
nats-server on PATH, and for the mcastfs and bridge rows FUSE mounts (root).
"""
import argparse
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import benchlib
from benchlib import CLK_TCK, Daemon, parse
from table import ROWS, compare, median, print_table, row

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(REPO, "tests", "cluster"))

from natscluster import NATSCluster  # noqa: E402

SECONDS = float(os.environ.get("BENCH_SECONDS", "1.0"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
FAN = int(os.environ.get("BENCH_CLUSTER_READERS", "4"))
SIZE = int(os.environ.get("BENCH_CLUSTER_SIZE", "64"))
BATCH = int(os.environ.get("BENCH_FRAMED_BATCH", "64"))
WINDOW = int(os.environ.get("BENCH_CLUSTER_WINDOW", "1024"))
CLIENT_TIMEOUT = 120
# Goals of issue 13.
FRAMED_GOAL = ("ratio >=", 0.8)
P99_GOAL = ("ratio <=", 1.5)
T0 = time.monotonic()


def log(msg):
    print(f"[{time.monotonic() - T0:6.1f}s] cluster: {msg}", file=sys.stderr, flush=True)


def build(bin_dir):
    """natsbare (libnats), natsfuse (libnats, libfuse3) and the record and
    framed clients, -O2."""
    os.makedirs(bin_dir, exist_ok=True)
    p = subprocess.run(["pkg-config", "--cflags", "--libs", "libnats"], capture_output=True, text=True)
    if p.returncode != 0:
        raise SystemExit("bench: cluster: pkg-config finds no libnats (apt-get install libnats-dev; "
                         "scripts/install-deps does it)")
    f = subprocess.run(["pkg-config", "--cflags", "--libs", "fuse3"], capture_output=True, text=True, check=True)
    for name, libs in (("natsbare", p.stdout.split()), ("natsfuse", p.stdout.split() + f.stdout.split()),
                       ("fanout", []), ("framed", [])):
        subprocess.run(["cc", "-O2", "-Wall", "-pthread", "-o", os.path.join(bin_dir, name),
                        os.path.join(HERE, name + ".c"), *libs], check=True)


def cpu_ticks(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


class System:
    """One way to carry the scenario's messages: argv for (mode, count);
    `nodes`: the mcastfs daemons whose CPU it costs (none for the anchor)."""

    def __init__(self, key, label, argv_fn, cal, nodes=()):
        self.key, self.label, self.argv_fn, self.cal, self.nodes = key, label, argv_fn, cal, list(nodes)

    def run(self, count):
        argv = self.argv_fn(count)
        pids = [SERVER_PID] + [d.pid for d in self.nodes]
        before = [cpu_ticks(p) for p in pids]
        try:
            p = subprocess.run(argv, capture_output=True, text=True, timeout=CLIENT_TIMEOUT)
        except subprocess.TimeoutExpired:
            raise SystemExit(f"bench: cluster: {' '.join(argv[:6])}... still running after {CLIENT_TIMEOUT} s")
        after = [cpu_ticks(p) for p in pids]
        if p.returncode != 0:
            raise SystemExit(f"bench: cluster: client failed ({p.returncode}): {' '.join(argv[:6])}...\n"
                             f"{p.stderr.strip()}")
        r = parse(p.stdout.strip().splitlines()[-1])
        msgs = r["count"] + r["warmup"]
        ticks = [b - a for a, b in zip(before, after)]
        # 10 ms ticks, warm-up included, as the suite's daemon CPU
        r["server_cpu_us_per_msg"] = round(ticks[0] / CLK_TCK * 1e6 / msgs, 2)
        if self.nodes:
            r["nodes_cpu_us_per_msg"] = round(sum(ticks[1:]) / CLK_TCK * 1e6 / msgs, 2)
        return r


def measure(scenario, systems):
    """Calibrates each system, then ROUNDS rounds, every system once per
    round in the same order, all with the same COUNT: the smallest that the
    calibrations size to about BENCH_SECONDS, so the slowest system's runs
    last that long."""
    counts = []
    for s in systems:
        r = s.run(s.cal)
        counts.append(int(max(300, r["msgs_per_s"] * SECONDS)))
    count = min(counts)
    runs = {}
    for rnd in range(ROUNDS):
        for s in systems:
            r = s.run(count)
            log(f"{scenario:<26} {s.label:<32} run {rnd + 1}: {r['msgs_per_s']:>8.0f} msgs/s  "
                f"p50 {r['p50_us']:>8.1f} µs  p99 {r['p99_us']:>8.1f} µs  server {r['server_cpu_us_per_msg']:>5.1f} µs/msg"
                f"  ({r['count']:.0f} msgs, {r['elapsed_s']} s)")
            runs.setdefault(s.key, []).append(r)
    return runs


# ---- the results (the table itself: table.py) -----------------------------------

RUNS = {}
SKIPPED = None  # why the mcastfs rows did not run


# ---- the nodes ---------------------------------------------------------------------

def mount_nodes(binary, option, work):
    """N + 1 daemons on the server, node k at WORK/nk with node=nk. None,
    after one line saying why, when the binary refuses `cluster=`."""
    global SKIPPED
    nodes = []
    for k in range(FAN + 1):
        mnt = os.path.join(work, f"n{k}")
        argv = [binary, f"cluster-n{k}", mnt, "-f", "-o", f"cluster={option},node=n{k}"]
        try:
            nodes.append(Daemon(f"mcastfs-n{k}", argv, mnt, work))
        except SystemExit as e:
            if k == 0 and "unknown option" in str(e):
                SKIPPED = f"{binary} refuses -o cluster= (unknown option): cluster mode not in this build"
                log(f"mcastfs rows skipped: {SKIPPED}")
                return None
            for d in nodes:
                d.stop()
            raise
    log(f"mounted {len(nodes)} nodes (pids {' '.join(str(d.pid) for d in nodes)})")
    return nodes


def wait_for(path, what, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            raise SystemExit(f"bench: cluster: {what} ({path}) not there after {timeout:g} s")
        time.sleep(0.02)


def wait_for_member(group_dir, name, node, timeout=10.0):
    deadline = time.monotonic() + timeout
    while True:
        with open(os.path.join(group_dir, "status")) as f:
            if any(line.startswith(f"member {name} ") and line.rstrip().endswith(f" node={node}") for line in f):
                return
        if time.monotonic() > deadline:
            raise SystemExit(f"bench: cluster: member {name} of node {node} not in {group_dir}/status after {timeout:g} s")
        time.sleep(0.02)


def mount_bridge(bin_dir, url, work, n):
    """The C FUSE bridge for 1->n: a writing node (it makes the stream) and n
    reading nodes, each with its own consumer. None, after one line, where
    FUSE mounts fail (not root)."""
    tag = f"{n}_{os.getpid()}"
    stream, subject = f"natsfuse_G{tag}", f"natsfuse.g.{tag}"
    daemons = []
    try:
        for k in range(n + 1):
            mnt = os.path.join(work, f"bridge{n}-n{k}")
            extra = ["-s", "65536"] if k == 0 else ["-c", f"n{k}_{tag}"]
            daemons.append(Daemon(f"natsfuse{n}-n{k}", [os.path.join(bin_dir, "natsfuse"), mnt, url, stream, subject,
                                                      *extra], mnt, work))
    except SystemExit as e:
        for d in daemons:
            d.stop()
        log(f"C FUSE bridge rows skipped: {str(e).splitlines()[0]}")
        return None
    return daemons


def make_group(nodes, n):
    """Group cN made on node 0, member r{k-1} on node k for k = 1..n. The
    writer (node 0) has no member: its node holds no consumer, as in the
    issue's shape (readers on other nodes)."""
    group = f"c{n}"
    os.mkdir(os.path.join(nodes[0].mnt, group))
    for k in range(1, n + 1):
        wait_for(os.path.join(nodes[k].mnt, group), f"group {group} on node n{k}")
        open(os.path.join(nodes[k].mnt, group, f"r{k - 1}"), "w").close()
    # Another node's members are in the writer's node's status (with node=),
    # not in its directory.
    for k in range(1, n + 1):
        wait_for_member(os.path.join(nodes[0].mnt, group), f"r{k - 1}", f"n{k}")
    return group


# ---- the scenario --------------------------------------------------------------------

def scenario(bin_dir, url, nodes, n):
    sc = f"cluster 1→{n} {SIZE} B"
    bare = os.path.join(bin_dir, "natsbare")

    def natsbare(mode, *flags):
        return lambda count: [bare, mode, url, str(SIZE), str(count), str(n), *flags]

    m_sys = {}
    bridge = mount_bridge(bin_dir, url, os.path.dirname(bin_dir), n)
    if bridge:
        m_sys["bridge_paced"] = System("bridge", "C FUSE bridge on libnats", lambda count: [
            os.path.join(bin_dir, "fanout"), "paced", "fs", str(SIZE), str(count), str(n), "-c",
            os.path.join(bridge[0].mnt, "send"), *[os.path.join(d.mnt, "r0") for d in bridge[1:]]], 300, bridge)
    if nodes:
        group = make_group(nodes, n)
        send, fsend = os.path.join(nodes[0].mnt, group, "send"), os.path.join(nodes[0].mnt, group, "frames", "send")
        reads = [os.path.join(nodes[k].mnt, group, f"r{k - 1}") for k in range(1, n + 1)]
        freads = [os.path.join(nodes[k].mnt, group, "frames", f"r{k - 1}") for k in range(1, n + 1)]
        fanout, framed = os.path.join(bin_dir, "fanout"), os.path.join(bin_dir, "framed")
        used = nodes[:n + 1]

        def record(mode):
            return System("record", "mcastfs record view", lambda count: [
                fanout, mode, "fs", str(SIZE), str(count), str(n), "-c", send, *reads], 300, used)

        def frames(mode):
            b = str(BATCH if mode == "stream" else 1)
            return System("framed", f"mcastfs framed ×{b}", lambda count: [
                framed, mode, str(SIZE), str(count), str(n), b, fsend, *freads], 2000 if mode == "stream" else 300,
                used)
        m_sys.update({"record_stream": record("stream"), "framed_stream": frames("stream"),
                      "record_paced": record("paced"), "framed_paced": frames("paced")})

    def with_mcastfs(*keys):
        return [m_sys[k] for k in keys if k in m_sys]

    batches = System("bare_batch", f"bare libnats, batches of {BATCH}", natsbare("stream", "-b", str(BATCH)), 2000)
    piped = System("bare_window", f"bare libnats, window {WINDOW}", natsbare("stream", "-w", str(WINDOW)), 2000)
    # nats.c's default write buffering (natsbare -B): what a connection
    # that does not set SendAsap gets
    batches_b = System("bare_batch_buffered", f"bare libnats, batches of {BATCH}, -B",
                       natsbare("stream", "-b", str(BATCH), "-B"), 2000)
    one = System("bare_one", "bare libnats, publish-and-wait", natsbare("stream", "-b", "1"), 300)
    paced = System("bare_paced", "bare libnats, paced", natsbare("paced"), 300)
    paced_b = System("bare_paced_buffered", "bare libnats, paced, -B", natsbare("paced", "-B"), 300)
    # Fetching the whole batch every time (what nodes did before they asked
    # for one message when none was pending)
    paced_f = System("bare_paced_fixed", "bare libnats, paced, -F", natsbare("paced", "-F"), 300)

    fast = measure(sc + " stream", with_mcastfs("framed_stream") + [batches, piped, batches_b])
    slow = measure(sc + " stream, one by one", with_mcastfs("record_stream") + [one])
    pc = measure(sc + " paced", with_mcastfs("record_paced", "framed_paced", "bridge_paced") + [paced, paced_b, paced_f])
    for d in bridge or []:
        d.stop()
    RUNS[sc] = {"stream": fast, "stream_one_by_one": slow, "paced": pc}

    def m(runs, key):
        return runs.get(key, [])

    compare(sc, f"msgs/s (framed ×{BATCH})", "msgs_per_s", m(fast, "framed"), fast["bare_batch"],
            batches.label, goal=FRAMED_GOAL)
    compare(sc, f"msgs/s (framed ×{BATCH})", "msgs_per_s", m(fast, "framed"), fast["bare_window"], piped.label)
    compare(sc, f"msgs/s (framed ×{BATCH})", "msgs_per_s", m(fast, "framed"), fast["bare_batch_buffered"],
            batches_b.label)
    compare(sc, "msgs/s (record view)", "msgs_per_s", m(slow, "record"), slow["bare_one"], one.label)
    compare(sc, "p50 µs (record view, paced)", "p50_us", m(pc, "record"), pc["bare_paced"], paced.label, "lower")
    compare(sc, "p99 µs (record view, paced)", "p99_us", m(pc, "record"), pc["bare_paced"], paced.label, "lower",
            P99_GOAL)
    # The floor of any FUSE front end: the thinnest one, in C, against the
    # same anchor and goal; and mcastfs against it.
    compare(sc, "p50 µs (C FUSE bridge, paced)", "p50_us", m(pc, "bridge"), pc["bare_paced"], paced.label, "lower")
    compare(sc, "p99 µs (C FUSE bridge, paced)", "p99_us", m(pc, "bridge"), pc["bare_paced"], paced.label, "lower",
            P99_GOAL)
    if m(pc, "bridge"):
        compare(sc, "p50 µs (record view, paced)", "p50_us", m(pc, "record"), pc["bridge"], "C FUSE bridge", "lower")
        compare(sc, "p99 µs (record view, paced)", "p99_us", m(pc, "record"), pc["bridge"], "C FUSE bridge", "lower")
    compare(sc, "p50 µs (record view, paced)", "p50_us", m(pc, "record"), pc["bare_paced_fixed"], paced_f.label, "lower")
    compare(sc, "p99 µs (record view, paced)", "p99_us", m(pc, "record"), pc["bare_paced_fixed"], paced_f.label, "lower")
    compare(sc, "p50 µs (record view, paced)", "p50_us", m(pc, "record"), pc["bare_paced_buffered"], paced_b.label,
            "lower")
    compare(sc, "p99 µs (record view, paced)", "p99_us", m(pc, "record"), pc["bare_paced_buffered"], paced_b.label,
            "lower")
    compare(sc, "p50 µs (framed, paced)", "p50_us", m(pc, "framed"), pc["bare_paced"], paced.label, "lower")
    compare(sc, "p99 µs (framed, paced)", "p99_us", m(pc, "framed"), pc["bare_paced"], paced.label, "lower")
    compare(sc, f"server CPU µs/msg (framed ×{BATCH})", "server_cpu_us_per_msg", m(fast, "framed"),
            fast["bare_batch"], batches.label, "lower")
    if m(fast, "framed"):
        row(sc, f"nodes' CPU µs/msg (framed ×{BATCH})", median([r["nodes_cpu_us_per_msg"] for r in fast["framed"]]),
            "—", None, "lower")
        row(sc, "nodes' CPU µs/msg (record view, paced)", median([r["nodes_cpu_us_per_msg"] for r in pc["record"]]),
            "—", None, "lower")


def machine():
    model = "unknown"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {"nproc": os.cpu_count(), "model_name": model, "kernel": platform.release(),
            "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "loadavg_at_start": open("/proc/loadavg").read().split()[:3]}


def nats_server_version():
    p = subprocess.run(["nats-server", "--version"], capture_output=True, text=True)
    return p.stdout.strip() or p.stderr.strip()


def merge(path, doc):
    """Adds this run's rows and runs to a suite result (results/bench.json),
    and to the stamped file it was written with, when that is the same."""
    with open(path) as f:
        before = f.read()
    suite = json.loads(before)
    suite["table"].extend(doc["table"])
    suite["runs"]["cluster"] = {k: doc[k] for k in ("settings", "nats_server", "mcastfs", "skipped", "runs")}
    text = json.dumps(suite, indent=1, ensure_ascii=False)
    targets = [path]
    for other in sorted(os.listdir(os.path.dirname(path) or "."), reverse=True):
        full = os.path.join(os.path.dirname(path), other)
        if other.startswith("bench-") and other.endswith(".json"):
            with open(full) as f:
                if f.read() == before:
                    targets.append(full)
            break
    for t in targets:
        with open(t, "w") as f:
            f.write(text)
    return targets


def main():
    global SERVER_PID
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("binary", nargs="?", help="an mcastfs binary (its rows are skipped without one)")
    ap.add_argument("--merge", metavar="RESULTS_JSON", help="add the rows to this suite result")
    args = ap.parse_args()
    only = os.environ.get("BENCH_ONLY")
    if only is not None and "cluster" not in only.split():
        print(f"bench: cluster scenario skipped: BENCH_ONLY={only!r} does not name it")
        return
    if shutil.which("nats-server") is None:
        print("bench: cluster scenario skipped: nats-server is not on PATH (apt-get install nats-server)")
        return
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    info = machine()
    work = tempfile.mkdtemp(prefix="mcastfs-cluster-bench.")
    nats, nodes = None, None
    global SKIPPED
    try:
        build(os.path.join(work, "bin"))
        nats = NATSCluster(size=1, base=work).start()
        SERVER_PID = nats.servers[0].proc.pid
        log(f"{nats_server_version()} at {nats.urls[0]} (pid {SERVER_PID}), store in {nats.dir}")
        binary = args.binary and os.path.abspath(args.binary)
        if binary is None:
            SKIPPED = "no mcastfs binary given"
            log(f"mcastfs rows skipped: {SKIPPED}")
        elif not os.access(binary, os.X_OK):
            SKIPPED = f"{binary}: {'not executable' if os.path.exists(binary) else 'no such file'}"
            log(f"mcastfs rows skipped: {SKIPPED}")
        else:
            nodes = mount_nodes(binary, nats.cluster_option, work)
        for n in (1, FAN):
            scenario(os.path.join(work, "bin"), nats.urls[0], nodes, n)
    finally:
        for d in nodes or []:
            d.stop()
        if nats is not None:
            nats.close()
        benchlib.cleanup(work)
    info["loadavg_at_end"] = open("/proc/loadavg").read().split()[:3]
    print_table(f"mcastfs rows skipped: {SKIPPED}" if SKIPPED else None)
    doc = {
        "benchmark": "cluster", "machine": info,
        "mcastfs_commit": subprocess.run(["git", "-C", REPO, "rev-parse", "--short", "HEAD"], capture_output=True,
                                         text=True).stdout.strip() or "unknown",
        "mcastfs": args.binary, "skipped": SKIPPED, "nats_server": nats_server_version(),
        "settings": {"seconds_per_run": SECONDS, "rounds": ROUNDS, "size": SIZE, "fan_out": FAN,
                     "framed_batch": BATCH, "natsbare_window": WINDOW, "figures": "median over rounds",
                     "ratio": "median over rounds of mcastfs / anchor, paired by round; `better` says which way is good"},
        "elapsed_s": round(time.monotonic() - T0, 1), "table": ROWS, "runs": RUNS,
    }
    os.makedirs(os.path.join(REPO, "results"), exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    out = os.path.join(REPO, "results", f"cluster-{stamp}.json")
    with open(out, "w") as f:
        json.dump(doc, f, indent=1, ensure_ascii=False)
    print(f"{info['nproc']} × {info['model_name']}, Linux {info['kernel']}, {info['date']}; "
          f"load {' '.join(info['loadavg_at_start'])} → {' '.join(info['loadavg_at_end'])}; {doc['elapsed_s']:.0f} s")
    def shown(path):
        rel = os.path.relpath(path, REPO)
        return path if rel.startswith("..") else rel

    print(f"JSON: {shown(out)}", end="")
    if args.merge:
        if os.path.exists(args.merge):
            print(" (rows added to " + ", ".join(shown(t) for t in merge(args.merge, doc)) + ")")
        else:
            print(f" ({args.merge} not found: nothing merged)")
    else:
        print()


SERVER_PID = None

if __name__ == "__main__":
    main()
