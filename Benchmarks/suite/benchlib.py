#!/usr/bin/env python3
"""What the benchmark's driver (driver.py) and compare.py share: building the
C programs, mounting a daemon and unmounting it, its CPU ticks and threads
while a client runs, the clients' output, and the cleanup that the suite's
EXIT trap runs. See Benchmarks/README.md.

    benchlib.py build BIN_DIR     compile fanout, framed, idle, anchors and bare_fuse into BIN_DIR
    benchlib.py cleanup WORK_DIR  stop every daemon with a pid file in WORK_DIR,
                                  unmount what is mounted below it, remove it
"""
import glob
import os
import shutil
import signal
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(REPO, "tests", "lib"))

from mounttable import is_fuse_mount, mounts_under, unmount_lazily  # noqa: E402

CLK_TCK = os.sysconf("SC_CLK_TCK")
MOUNT_TIMEOUT = 15
STOP_TIMEOUT = 8
PERF = shutil.which("perf")


def log(msg):
    print(f"bench: {msg}", file=sys.stderr, flush=True)


def build(bin_dir):
    """The C clients (fanout, framed, idle, anchors) and the bare libfuse anchor, with -O2."""
    os.makedirs(bin_dir, exist_ok=True)

    def pkg(name):
        return subprocess.run(["pkg-config", "--cflags", "--libs", name], capture_output=True, text=True,
                              check=True).stdout.split()

    for name, libs in (("fanout", []), ("framed", []), ("idle", []), ("anchors", pkg("libzmq")), ("bare_fuse", pkg("fuse3"))):
        subprocess.run(["cc", "-O2", "-Wall", "-pthread", "-o", os.path.join(bin_dir, name),
                        os.path.join(HERE, name + ".c"), *libs], check=True)


def parse(line):
    """A client's key=value line; numbers become floats."""
    out = {}
    for kv in line.split():
        k, _, v = kv.partition("=")
        try:
            out[k] = float(v) if "." in v or v.isdigit() else v
        except ValueError:
            out[k] = v
    return out


class Daemon:
    """A FUSE daemon in the foreground, mounted at mnt once this returns. Its
    output goes to WORK/NAME.log; WORK/NAME.pid names it until it is stopped,
    for cleanup() if this process dies first."""

    def __init__(self, name, argv, mnt, work):
        self.name, self.mnt = name, mnt
        os.makedirs(mnt, exist_ok=True)
        self.log_path = os.path.join(work, name + ".log")
        self.pid_path = os.path.join(work, name + ".pid")
        self.log = open(self.log_path, "w")
        # Its own session: a Ctrl-C reaches the driver, which unmounts, not the daemon.
        self.proc = subprocess.Popen(argv, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        self.pid = self.proc.pid
        with open(self.pid_path, "w") as f:
            f.write(str(self.pid))
        deadline = time.monotonic() + MOUNT_TIMEOUT
        while not is_fuse_mount(mnt):
            failed = self.proc.poll() is not None
            if failed or time.monotonic() > deadline:
                why = f"exited with {self.proc.returncode}" if failed else f"not mounted after {MOUNT_TIMEOUT} s"
                tail = self.log_tail()
                self.stop()
                raise SystemExit(f"bench: {' '.join(argv)}: {why}:\n{tail}")
            time.sleep(0.02)

    def log_tail(self, limit=2000):
        self.log.flush()
        with open(self.log_path, errors="replace") as f:
            return f.read()[-limit:]

    def status(self):
        out = {}
        with open(f"/proc/{self.pid}/status") as f:
            for line in f:
                k, _, v = line.partition(":")
                out[k] = v.split()
        return {"threads": int(out["Threads"][0]), "vmrss_kib": int(out["VmRSS"][0])}

    def cpu_ticks(self):
        """utime + stime, in CLK_TCK ticks."""
        with open(f"/proc/{self.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])

    def all_threads_asleep(self):
        for tid in os.listdir(f"/proc/{self.pid}/task"):
            try:
                with open(f"/proc/{self.pid}/task/{tid}/stat") as f:
                    if f.read().rsplit(")", 1)[1].split()[0] != "S":
                        return False
            except FileNotFoundError:
                pass
        return True

    def stop(self):
        """SIGTERM (SIGKILL after STOP_TIMEOUT s), then a lazy unmount if the
        mount outlived the daemon."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                log(f"{self.name} did not exit {STOP_TIMEOUT} s after SIGTERM; killing it")
                self.proc.kill()
                self.proc.wait()
        unmount_lazily(self.mnt)
        if os.path.exists(self.pid_path):
            os.unlink(self.pid_path)
        self.log.close()


class Sampler:
    """Samples a daemon's thread count every 20 ms while a client runs, and
    takes its CPU ticks before and after."""

    def __init__(self, daemon):
        self.daemon, self.max_threads, self.stop_flag = daemon, 0, threading.Event()
        self.thread = threading.Thread(target=self.loop, daemon=True)

    def loop(self):
        while not self.stop_flag.is_set():
            try:
                self.max_threads = max(self.max_threads, self.daemon.status()["threads"])
            except (FileNotFoundError, ProcessLookupError):
                return
            self.stop_flag.wait(0.02)

    def __enter__(self):
        self.ticks0 = self.daemon.cpu_ticks()
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop_flag.set()
        self.thread.join()
        self.ticks = self.daemon.cpu_ticks() - self.ticks0


def start_thread_counter(daemon, out):
    """perf stat on the software tracepoint task:task_newtask: how many
    threads the daemon creates while a client runs (None without perf)."""
    if not PERF:
        return None
    p = subprocess.Popen([PERF, "stat", "-x,", "-e", "task:task_newtask", "-p", str(daemon.pid), "-o", out],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.15)
    return p, out


def stop_thread_counter(counter):
    if counter is None:
        return None
    p, out = counter
    p.send_signal(signal.SIGINT)
    try:
        p.wait(timeout=10)
        with open(out) as f:
            for line in f:
                if "task_newtask" in line:
                    return int(line.split(",")[0])
    except (subprocess.TimeoutExpired, ValueError, OSError):
        p.kill()
    return None


def run_client(argv, daemon=None, timeout=90, count_threads_in=None):
    """Runs one client to its end; its key=value line as a dict. With a
    daemon, adds the daemon's CPU per message (every message the client sent,
    its warm-up included) and the most threads it had; with
    count_threads_in=FILE (and perf), the threads it created."""
    sampler = Sampler(daemon) if daemon else None
    counter = start_thread_counter(daemon, count_threads_in) if daemon and count_threads_in else None
    if sampler:
        sampler.__enter__()
    try:
        p = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    finally:
        if sampler:
            sampler.__exit__()
        created = stop_thread_counter(counter)
    if p.returncode != 0:
        raise SystemExit(f"bench: client failed ({p.returncode}): {' '.join(argv[:7])}...\n{p.stderr.strip()}")
    r = parse(p.stdout.strip().splitlines()[-1])
    if sampler:
        r["daemon_threads_max"] = sampler.max_threads
        msgs = r["count"] + r["warmup"]
        r["daemon_cpu_us_per_msg"] = round(sampler.ticks / CLK_TCK * 1e6 / msgs, 1)
        r["daemon_cpu_s"] = sampler.ticks / CLK_TCK
        if created is not None:
            r["daemon_threads_created"] = created
            r["daemon_threads_created_per_1k_msgs"] = round(created * 1000 / msgs, 2)
    return r


def cleanup(work):
    """The safety net for a driver that did not get to unmount: stops the
    daemons it left (pid files), lazily unmounts whatever is mounted below
    work, and removes work unless something is still mounted there. True
    when it is gone."""
    for pid_path in glob.glob(os.path.join(work, "*.pid")):
        with open(pid_path) as f:
            pid = int(f.read())
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            continue
        log(f"stopping daemon {pid} left running")
        for _ in range(100):
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.05)
        else:
            os.kill(pid, signal.SIGKILL)
    for mnt in mounts_under(work):
        log(f"unmounting {mnt}")
        unmount_lazily(mnt)
    if mounts_under(work):
        log(f"something is still mounted under {work}; left in place")
        return False
    shutil.rmtree(work, ignore_errors=True)
    return True


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "build":
        build(sys.argv[2])
    elif len(sys.argv) == 3 and sys.argv[1] == "cleanup":
        sys.exit(0 if cleanup(sys.argv[2]) else 1)
    else:
        sys.exit(f"usage: {sys.argv[0]} build BIN_DIR | cleanup WORK_DIR")


if __name__ == "__main__":
    main()
