#!/usr/bin/env python3
"""Compare mcastfs daemons (two builds, or one build with different options)
on the record path, interleaved, beside the bare libfuse anchor.

    Benchmarks/suite/compare.py NAME='COMMAND' [NAME='COMMAND' ...]

    Benchmarks/suite/compare.py \\
        before='/tmp/old/.build/release/mcastfs' \\
        after='.build/release/mcastfs' \\
        two='.build/release/mcastfs -o max_threads=2'

COMMAND is a daemon command line; MOUNTPOINT and -f are appended. Every
round mounts each daemon afresh, in the order given, runs every scenario on it
(REPEAT times in a row, on the same mount), and unmounts; then the bare
libfuse anchor runs the same scenarios once. The medians over all runs are
printed, one line per scenario and metric. This is how docs/locking.md and
docs/fuse-notes.md ("Worker threads") were measured: a change to the daemon
is judged against its predecessor in the same minutes, not against a figure
from another day.

Scenarios (SCENARIOS, comma-separated; 64-byte messages, C clients):
  p16  paced 1→16: p50, p99, daemon CPU µs per message
  s16  stream 1→16: msgs/s, daemon CPU µs per message
  s1   stream 1→1: msgs/s, daemon CPU µs per message
  p1   paced 1→1 (bare: its round trip): p50, p99, daemon CPU

Environment: ROUNDS (default 4), REPEAT (1), SCENARIOS (p16,s16,s1,p1),
JSON (write every run there). Needs cc and libfuse3-dev (scripts/install-deps).
"""
import json
import os
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROUNDS = int(os.environ.get("ROUNDS", "4"))
REPEAT = int(os.environ.get("REPEAT", "1"))
CHOSEN = os.environ.get("SCENARIOS", "p16,s16,s1,p1").split(",")
CLK_TCK = os.sysconf("SC_CLK_TCK")

# name: (fanout mode for mcastfs, mode for the bare anchor, readers, messages)
SCENARIOS = {
    "p16": ("paced", "paced", 16, 3000),
    "s16": ("stream", "stream", 16, 8000),
    "s1": ("stream", "stream", 1, 30000),
    "p1": ("paced", "pingpong", 1, 10000),
}


def usage(message):
    sys.exit(f"compare: {message}\nusage: {sys.argv[0]} NAME='COMMAND' [NAME='COMMAND' ...]")


def build(work):
    flags = subprocess.run(["pkg-config", "--cflags", "--libs", "fuse3"], capture_output=True, text=True,
                           check=True).stdout.split()
    subprocess.run(["cc", "-O2", "-Wall", "-pthread", "-o", f"{work}/fanout", f"{HERE}/fanout.c"], check=True)
    subprocess.run(["cc", "-O2", "-Wall", "-pthread", "-o", f"{work}/bare_fuse",
                    f"{HERE}/../record-path/bare_fuse.c", *flags], check=True)


def mounted(path):
    with open("/proc/mounts") as f:
        return any(line.split()[1] == path for line in f)


def mount(argv, path):
    os.makedirs(path, exist_ok=True)
    daemon = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 15
    while not mounted(path):
        if daemon.poll() is not None:
            usage(f"{' '.join(argv)} exited with {daemon.returncode}: {daemon.stderr.read().strip()}")
        if time.monotonic() > deadline:
            daemon.kill()
            usage(f"{' '.join(argv)} did not mount within 15 s")
        time.sleep(0.02)
    return daemon


def unmount(daemon, path):
    daemon.terminate()
    try:
        daemon.wait(10)
    except subprocess.TimeoutExpired:
        daemon.kill()
        daemon.wait()
    if mounted(path):
        subprocess.run(["fusermount3", "-u", "-z", path], stderr=subprocess.DEVNULL)


def cpu_ticks(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def run(argv, daemon_pid, count):
    before = cpu_ticks(daemon_pid)
    p = subprocess.run(argv, capture_output=True, text=True, timeout=600)
    after = cpu_ticks(daemon_pid)
    if p.returncode != 0:
        sys.exit(f"compare: {' '.join(argv[:6])}... failed: {p.stderr.strip()}")
    result = {k: float(v) for k, v in re.findall(r"(\w+)=([0-9.]+)", p.stdout)}
    result["daemon_cpu_us_per_msg"] = (after - before) / CLK_TCK * 1e6 / count
    return result


def mcastfs_argv(work, mnt, scenario):
    mode, _, n, count = SCENARIOS[scenario]
    group = f"{mnt}/g{n}"
    return [f"{work}/fanout", mode, "fs", "64", str(count), str(n), "-c", f"{group}/send",
            *[f"{group}/r{k}" for k in range(n)]]


def bare_argv(work, mnt, scenario):
    _, mode, n, count = SCENARIOS[scenario]
    if mode == "pingpong":
        return [f"{work}/fanout", "pingpong", "fs", "64", str(count), "1", f"{mnt}/f", f"{mnt}/r0"]
    gate = ["-g"] if mode == "paced" else []
    return [f"{work}/fanout", mode, "fs", "64", str(count), str(n), *gate, f"{mnt}/f",
            *[f"{mnt}/r{k}" for k in range(n)]]


def main():
    if len(sys.argv) < 2 or not all("=" in a for a in sys.argv[1:]):
        usage("name each daemon: NAME='COMMAND'")
    daemons = dict(a.split("=", 1) for a in sys.argv[1:])
    if "bare" in daemons:
        usage("'bare' is the anchor's name; choose another")
    unknown = [s for s in CHOSEN if s not in SCENARIOS]
    if unknown:
        usage(f"unknown scenario {unknown[0]} (known: {', '.join(SCENARIOS)})")
    work = tempfile.mkdtemp(prefix="mcastfs-compare.")
    mc, bare = f"{work}/mc", f"{work}/bare"
    runs = {}
    bare_daemon = None
    try:
        build(work)
        bare_daemon = mount([f"{work}/bare_fuse", bare], bare)
        for round_ in range(ROUNDS):
            for name, command in daemons.items():
                daemon = mount(shlex.split(command) + [mc, "-f"], mc)
                try:
                    for n in (1, 16):
                        os.mkdir(f"{mc}/g{n}")
                        for k in range(n):
                            open(f"{mc}/g{n}/r{k}", "w").close()
                    for _ in range(REPEAT):
                        for s in CHOSEN:
                            runs.setdefault(f"{name} {s}", []).append(
                                run(mcastfs_argv(work, mc, s), daemon.pid, SCENARIOS[s][3]))
                finally:
                    unmount(daemon, mc)
            for s in CHOSEN:
                runs.setdefault(f"bare {s}", []).append(run(bare_argv(work, bare, s), bare_daemon.pid,
                                                             SCENARIOS[s][3]))
            print(f"compare: round {round_ + 1} of {ROUNDS} done", file=sys.stderr)
    finally:
        if bare_daemon:
            unmount(bare_daemon, bare)
        if not mounted(mc) and not mounted(bare):
            shutil.rmtree(work, ignore_errors=True)
    names = [*daemons, "bare"]
    print(f"medians over {ROUNDS} rounds × {REPEAT} (bare: × 1); 64 B, C clients; nproc {os.cpu_count()}")
    for s in CHOSEN:
        metrics = ["msgs_per_s"] if SCENARIOS[s][0] == "stream" else ["p50_us", "p99_us"]
        for metric in metrics + ["daemon_cpu_us_per_msg"]:
            cells = [f"{n} {statistics.median(r[metric] for r in runs[f'{n} {s}']):,.1f}" for n in names]
            print(f"{s:4} {metric:22} " + " | ".join(cells))
    if os.environ.get("JSON"):
        with open(os.environ["JSON"], "w") as f:
            json.dump({"daemons": daemons, "rounds": ROUNDS, "repeat": REPEAT, "runs": runs}, f, indent=1)


if __name__ == "__main__":
    main()
