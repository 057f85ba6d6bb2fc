#!/usr/bin/env python3
"""Independent streams through one mounted group, for the locking decision
(docs/locking.md, "Locking, measured again"): N writers on distinct topics
into one group's `send`, N members with a reader each; filtered, member rk
subscribes to stream.k alone, unfiltered every member receives everything.
Beside them one writer and one member (the 1-stream rows), so that the
table shows what N streams add over one: the daemon's CPU per delivery,
and whether the rate grows with the streams (the group lock is held
~0.1 µs per send; a FUSE request costs tens of µs).

    Benchmarks/suite/locking.py [MCASTFS_BINARY]

Scenarios: fN (N filtered streams, one group), uN (N writers, unfiltered),
sN (N streams in N groups of one filtered member each: nothing shared, the
ceiling of any lock design for one group), wN (as fN, but writer k writes to
its own member file wk, whose filter matches no stream, instead of `send`:
the same group and deliveries, no file shared by the writers).

Environment: ROUNDS (5), SECONDS (1.0, the length of one run), SCENARIOS
(f1,f2,f8,w8,s8,u1,u2,u8), SIZE (64), BUF (4096, the readers' buffer), PROFILE=1
(perf record the daemon during the 8-stream runs of the last round and
print where its CPU went), JSON=FILE (every run). Needs cc and
libfuse3-dev (scripts/install-deps); run as root, or where FUSE mounts work.
"""
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time

from benchlib import CLK_TCK, PERF, Daemon, Sampler, cleanup, parse

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
ROUNDS = int(os.environ.get("ROUNDS", "5"))
SECONDS = float(os.environ.get("SECONDS", "1.0"))
SCENARIOS = os.environ.get("SCENARIOS", "f1,f2,f8,w8,s8,u1,u2,u8").split(",")
SIZE = int(os.environ.get("SIZE", "64"))
BUF = int(os.environ.get("BUF", "4096"))
PROFILE = os.environ.get("PROFILE", "0") == "1"


def log(msg):
    print(f"locking: {msg}", file=sys.stderr, flush=True)


def loadavg():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def make_group(mnt, name):
    """Group NAME (f<N>: filtered, u<N>: unfiltered) with members r0 .. r<N-1>;
    s<N>: groups NAME.0 .. NAME.<N-1>, each with member r0 on stream.k."""
    n, filtered = int(name[1:]), name[0] != "u"
    group = f"{mnt}/{name}"
    if name[0] == "s":
        for k in range(n):
            os.mkdir(f"{group}.{k}")
            open(f"{group}.{k}/r0", "w").close()
            with open(f"{group}.{k}/ctl", "w") as f:
                f.write(f"member r0 subscribe=stream.{k}\n")
        return group
    os.mkdir(group)
    for k in range(n):
        open(f"{group}/r{k}", "w").close()
        if filtered:
            with open(f"{group}/ctl", "w") as f:
                f.write(f"member r{k} subscribe=stream.{k}\n")
        if name[0] == "w":
            open(f"{group}/w{k}", "w").close()
            with open(f"{group}/ctl", "w") as f:
                f.write(f"member w{k} subscribe=no.stream\n")
    return group


def run(binary, daemon, name, group, count, perf_out=None):
    n = int(name[1:])
    mode = {"f": [], "u": ["-u"], "s": ["-s"], "w": ["-w"]}[name[0]]
    argv = [binary, str(n), str(count), str(SIZE), *mode, "-b", str(BUF), group]
    perf = None
    if perf_out:
        perf = subprocess.Popen([PERF, "record", "-F", "4999", "-g", "-p", str(daemon.pid), "-o", perf_out],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(0.3)
    sampler = Sampler(daemon)
    sampler.__enter__()
    try:
        p = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    finally:
        sampler.__exit__()
        if perf:
            perf.send_signal(2)
            perf.wait()
    if p.returncode != 0:
        raise SystemExit(f"locking: {' '.join(argv)} failed ({p.returncode}):\n{p.stderr.strip()}")
    r = parse(p.stdout.strip().splitlines()[-1])
    r["daemon_cpu_us_per_delivery"] = sampler.ticks / CLK_TCK * 1e6 / r["deliveries"]
    r["daemon_threads_max"] = sampler.max_threads
    return r


def profile_summary(perf_out):
    """The daemon's samples by symbol (self), and their shares: the kernel,
    the delivery core (every DeliveryCore symbol: the work done under the
    group lock and around it), the pthread mutex calls (every lock, the
    group's among them, and the adaptive mutex's spinning), the futex wait
    of a contended mutex."""
    p = subprocess.run([PERF, "report", "-i", perf_out, "--no-children", "--sort", "symbol", "-g", "none",
                        "--stdio", "--percent-limit", "0"], capture_output=True, text=True)
    lines = [l for l in p.stdout.splitlines() if "%" in l and not l.startswith("#")]
    shares = {"kernel": 0.0, "DeliveryCore": 0.0, "pthread_mutex_lock/unlock": 0.0, "lll_lock_wait (contended)": 0.0}
    for l in lines:
        fields = l.split()
        try:
            pct = float(fields[0].rstrip("%"))
        except ValueError:
            continue
        symbol = " ".join(fields[2:])
        if fields[1] == "[k]":
            shares["kernel"] += pct
        elif "DeliveryCore" in symbol:
            shares["DeliveryCore"] += pct
        elif "pthread_mutex_lock" in symbol or "pthread_mutex_unlock" in symbol:
            shares["pthread_mutex_lock/unlock"] += pct
        elif "lll_lock_wait" in symbol:
            shares["lll_lock_wait (contended)"] += pct
    summary = ["shares of the daemon's samples: " + ", ".join(f"{k} {v:.1f}%" for k, v in shares.items())]
    return summary + lines[:25]


def main():
    # A SIGTERM unmounts too (the daemon runs in its own session).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    mcastfs = sys.argv[1] if len(sys.argv) > 1 else os.path.join(REPO, ".build", "release", "mcastfs")
    if not os.access(mcastfs, os.X_OK):
        sys.exit(f"locking: no {mcastfs} (swift build -c release --product mcastfs)")
    work = tempfile.mkdtemp(prefix="mcastfs-locking.")
    binary = os.path.join(work, "streams")
    subprocess.run(["cc", "-O2", "-Wall", "-pthread", "-o", binary, os.path.join(HERE, "streams.c")], check=True)
    mnt = os.path.join(work, "mnt")
    runs = {name: [] for name in SCENARIOS}
    loads = [loadavg()]
    daemon = Daemon("mcastfs", [mcastfs, mnt, "-f"], mnt, work)
    try:
        groups = {name: make_group(mnt, name) for name in SCENARIOS}
        counts = {}
        for name in SCENARIOS:
            n, filtered = int(name[1:]), name[0] != "u"
            r = run(binary, daemon, name, groups[name], 2000)
            per_writer_rate = r["deliveries_per_s"] / (n if filtered else n * n)
            counts[name] = max(500, int(per_writer_rate * SECONDS))
        for rnd in range(ROUNDS):
            for i in range(len(SCENARIOS)):
                name = SCENARIOS[(i + rnd) % len(SCENARIOS)]
                perf_out = None
                if PROFILE and rnd == ROUNDS - 1 and name[1:] == "8" and PERF:
                    perf_out = os.path.join(work, f"perf-{name}.data")
                r = run(binary, daemon, name, groups[name], counts[name], perf_out)
                r["load"] = loadavg()
                runs[name].append(r)
                log(f"round {rnd + 1} {name}: {r['deliveries_per_s']:>9.0f} deliveries/s, daemon "
                    f"{r['daemon_cpu_us_per_delivery']:.2f} µs/delivery, client {r['client_cpu_us_per_delivery']:.2f}, "
                    f"load {r['load']}")
                if perf_out:
                    runs[name][-1]["profile"] = profile_summary(perf_out)
            loads.append(loadavg())
    finally:
        daemon.stop()
        cleanup(work)

    print(f"# {ROUNDS} rounds, {SIZE} B messages, readers' buffer {BUF} B; load at start and after each round: "
          f"{' | '.join(loads)}")
    print(f"{'scenario':<26} {'deliveries/s median':>20} {'best':>10} {'spread':>19} {'vs 1 stream':>12} "
          f"{'daemon µs/delivery':>19}")
    for name in SCENARIOS:
        rates = [r["deliveries_per_s"] for r in runs[name]]
        one = f"{'u' if name[0] == 'u' else 'f'}1"
        ratio = ""
        if one in runs and one != name:
            ratio = f"{statistics.median(rates) / statistics.median(r['deliveries_per_s'] for r in runs[one]):.2f}"
        label = f"{name[1:]} " + {"f": "filtered streams", "u": "writers, unfiltered", "s": "streams, a group each",
                                  "w": "filtered, own write files"}[name[0]]
        cpu = statistics.median(r["daemon_cpu_us_per_delivery"] for r in runs[name])
        print(f"{label:<26} {statistics.median(rates):>20.0f} {max(rates):>10.0f} "
              f"{min(rates):>9.0f}–{max(rates):<9.0f} {ratio:>12} {cpu:>19.2f}")
    for name in SCENARIOS:
        for r in runs[name]:
            if "profile" in r:
                print(f"\n# daemon profile, {name} (perf, self samples by symbol)")
                print("\n".join(r["profile"]))
    if os.environ.get("JSON"):
        with open(os.environ["JSON"], "w") as f:
            json.dump({"runs": runs, "loads": loads}, f, indent=1)


if __name__ == "__main__":
    main()
