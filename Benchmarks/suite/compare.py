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
import shlex
import statistics
import sys
import tempfile

from benchlib import Daemon, build, cleanup, run_client

ROUNDS = int(os.environ.get("ROUNDS", "4"))
REPEAT = int(os.environ.get("REPEAT", "1"))
CHOSEN = os.environ.get("SCENARIOS", "p16,s16,s1,p1").split(",")

# name: (fanout mode for mcastfs, mode for the bare anchor, readers, messages)
SCENARIOS = {
    "p16": ("paced", "paced", 16, 3000),
    "s16": ("stream", "stream", 16, 8000),
    "s1": ("stream", "stream", 1, 30000),
    "p1": ("paced", "pingpong", 1, 10000),
}


def usage(message):
    sys.exit(f"compare: {message}\nusage: {sys.argv[0]} NAME='COMMAND' [NAME='COMMAND' ...]")


def mcastfs_argv(work, mnt, scenario):
    mode, _, n, count = SCENARIOS[scenario]
    group = f"{mnt}/g{n}"
    return [f"{work}/bin/fanout", mode, "fs", "64", str(count), str(n), "-c", f"{group}/send",
            *[f"{group}/r{k}" for k in range(n)]]


def bare_argv(work, mnt, scenario):
    _, mode, n, count = SCENARIOS[scenario]
    if mode == "pingpong":
        return [f"{work}/bin/fanout", "pingpong", "fs", "64", str(count), "1", f"{mnt}/f", f"{mnt}/r0"]
    gate = ["-g"] if mode == "paced" else []
    return [f"{work}/bin/fanout", mode, "fs", "64", str(count), str(n), *gate, f"{mnt}/f",
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
    try:
        build(f"{work}/bin")
        bare_daemon = Daemon("bare", [f"{work}/bin/bare_fuse", bare], bare, work)
        try:
            for round_ in range(ROUNDS):
                for name, command in daemons.items():
                    daemon = Daemon(name, shlex.split(command) + [mc, "-f"], mc, work)
                    try:
                        for n in (1, 16):
                            os.mkdir(f"{mc}/g{n}")
                            for k in range(n):
                                open(f"{mc}/g{n}/r{k}", "w").close()
                        for _ in range(REPEAT):
                            for s in CHOSEN:
                                runs.setdefault(f"{name} {s}", []).append(
                                    run_client(mcastfs_argv(work, mc, s), daemon, timeout=600))
                    finally:
                        daemon.stop()
                for s in CHOSEN:
                    runs.setdefault(f"bare {s}", []).append(run_client(bare_argv(work, bare, s), bare_daemon,
                                                                       timeout=600))
                print(f"compare: round {round_ + 1} of {ROUNDS} done", file=sys.stderr)
        finally:
            bare_daemon.stop()
    finally:
        cleanup(work)
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
