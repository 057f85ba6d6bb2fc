"""Scale (docs/contract.md, "Waiting, signals and poll": a blocked read or
write is held by the daemon without a thread of its own; a thousand blocked
readers cost memory, not threads).

Blocked callers are pthreads of the manyblock C helper, each in one read(2) or
write(2) on its own file. The daemon's threads are counted in /proc/PID/task
while they are all blocked.
"""

import os
import subprocess
import time

import pytest

from helpers import Call, Group, blocked_tasks, parse_kv, read_line, wait_for

MAX_DAEMON_THREADS = 32

pytestmark = pytest.mark.slow


def finish(proc, timeout):
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


@pytest.mark.timeout(300)
def test_thousand_blocked_readers_few_daemon_threads_one_write_wakes_all(mount, group, cbin):
    n = 1000
    for i in range(n):
        group.member(f"r{i}")
    threads_idle = mount.threads()
    proc = subprocess.Popen([cbin["manyblock"], "read", group.path, "r", str(n), "wake-all", "240"],
                            stdout=subprocess.PIPE, text=True)
    try:
        ready = read_line(proc.stdout, 60)
        assert ready.strip() == f"ready {n}", ready
        wait_for(lambda: blocked_tasks(proc.pid, "read") >= n, timeout=60, interval=0.2,
                 what=f"{n} threads blocked in read")
        time.sleep(0.5)
        threads_blocked = mount.threads()
        print(f"daemon threads: {threads_idle} idle, {threads_blocked} with {n} blocked readers")
        assert threads_blocked <= MAX_DAEMON_THREADS
        assert blocked_tasks(proc.pid, "read") >= n, "the readers are still blocked"
        t0 = time.monotonic()
        group.send(b"wake-all")
        done = parse_kv(read_line(proc.stdout, 60))
        woke = time.monotonic() - t0
        print(f"one write woke {n} readers in {1000 * woke:.1f} ms (spread {done.get('spread_ms')} ms)")
        assert done.get("ok") == n, done
        assert done.get("match") == n, done
        assert done.get("err") == 0, done
        st = group.status()
        assert st.group["sent"] == 1
        assert all(m["delivered"] == 1 and m["queued"] == 0 for m in st.members.values())
    finally:
        finish(proc, 30)
    assert mount.threads() <= MAX_DAEMON_THREADS


@pytest.mark.timeout(300)
def test_hundreds_of_blocked_writers_few_daemon_threads(mount, group, cbin):
    """Writers on their own member files (one writer per file: the kernel
    serialises writes to one file), all held back by one full member."""
    n = 200
    group.member("x", capacity=1)
    for i in range(n):
        group.member(f"w{i}", drop_when_full=1, capacity=1)
    group.send(b"fills x")
    proc = subprocess.Popen([cbin["manyblock"], "write", group.path, "w", str(n), "held", "240"],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert read_line(proc.stdout, 60).strip() == f"ready {n}"
        wait_for(lambda: group.status().group["blocked_writers"] == n, timeout=60, interval=0.2,
                 what=f"blocked_writers={n}")
        threads = mount.threads()
        print(f"daemon threads with {n} blocked writers: {threads}")
        assert threads <= MAX_DAEMON_THREADS
        got = []
        fd = group.open_nb("x")
        try:
            deadline = time.monotonic() + 120
            while len(got) < n + 1 and time.monotonic() < deadline:
                try:
                    data = os.read(fd, 100)
                except BlockingIOError:
                    time.sleep(0.001)
                    continue
                got.append(data)
        finally:
            os.close(fd)
        assert got == [b"fills x"] + [b"held"] * n
        done = parse_kv(read_line(proc.stdout, 60))
        assert done.get("ok") == n and done.get("match") == n, done
        assert group.status().group["blocked_writers"] == 0
    finally:
        finish(proc, 30)


@pytest.mark.timeout(300)
def test_many_groups(mount):
    prefix = f"many-{os.getpid()}"
    groups = []
    for i in range(200):
        os.mkdir(os.path.join(mount.path, f"{prefix}-{i}"))
        groups.append(f"{prefix}-{i}")
    gs = [Group(mount.path, name) for name in groups]
    for g in gs:
        g.member("a")
        g.member("b")
    listed = set(os.listdir(mount.path))
    assert set(groups) <= listed
    for i, g in enumerate(gs):
        g.send(f"group {i}".encode())
    for i, g in enumerate(gs):
        assert g.take("a") == [f"group {i}".encode()]
        assert g.take("b") == [f"group {i}".encode()]
    for g in gs:
        os.unlink(g.p("a"))
        os.unlink(g.p("b"))
        os.rmdir(g.path)
    assert not (set(groups) & set(os.listdir(mount.path)))


@pytest.mark.timeout(300)
def test_throughput_with_concurrent_readers(mount, group):
    n = 5000
    readers = ["a", "b", "c"]
    for r in readers:
        group.member(r, capacity=64)

    def consume(name):
        fd = group.open(name)
        out = 0
        try:
            while out < n:
                if not os.read(fd, 4096):
                    break
                out += 1
        finally:
            os.close(fd)
        return out

    def produce():
        fd = group.open("send", os.O_WRONLY)
        try:
            for i in range(n):
                os.write(fd, b"%d" % i)
        finally:
            os.close(fd)

    t0 = time.monotonic()
    consumers = [Call(consume, r, name=r) for r in readers]
    producer = Call(produce)
    producer.result(240)
    counts = [c.result(60) for c in consumers]
    elapsed = time.monotonic() - t0
    print(f"{n} messages to {len(readers)} members in {elapsed:.2f} s: {n / elapsed:.0f} msg/s")
    assert counts == [n] * len(readers)
    assert mount.threads() <= MAX_DAEMON_THREADS
