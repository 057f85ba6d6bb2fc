"""Signals (docs/contract.md, "Waiting, signals and poll").

A signal interrupts a blocked read or write within 100 ms: the call fails with
EINTR (or the process dies, for a fatal signal such as Ctrl-C on `cat`). An
interrupted write delivered nothing; an interrupted read consumed nothing. A
caught signal gives EINTR even under SA_RESTART. A reader killed at the
instant its message is handed over may take that message with it (at most
once).

Timing: the contract says 100 ms; the assertions allow 1 s so that a loaded
CI machine does not fail them, and every measured time is printed (run with
-s to see them).
"""

import errno
import os
import random
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from helpers import BlockOp, Call, drain, parse_kv, wait_blocked, wait_for

LIMIT_S = 1.0  # generous bound for "within 100 ms"


def blocked_writers(group):
    return group.status().group["blocked_writers"]


# --- fatal signals on a blocked cat -------------------------------------------


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL, signal.SIGTERM], ids=lambda s: s.name)
def test_signal_ends_blocked_cat_and_next_message_is_not_lost(group, sig):
    group.member("a")
    cat = subprocess.Popen(["cat", group.p("a")], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        wait_blocked(cat.pid, path=group.p("a"))
        t0 = time.monotonic()
        cat.send_signal(sig)
        try:
            cat.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pytest.fail(f"cat blocked in read still alive 5 s after {sig.name}")
        elapsed = time.monotonic() - t0
        print(f"cat ended {1000 * elapsed:.1f} ms after {sig.name}")
        assert cat.returncode == -sig
        assert elapsed < LIMIT_S
    finally:
        if cat.poll() is None:
            cat.kill()
        cat.communicate(timeout=5)
    assert group.member_status("a")["queued"] == 0
    group.send(b"after the signal\n")
    assert group.member_status("a")["queued"] == 1
    reader = subprocess.Popen(["cat", group.p("a")], stdout=subprocess.PIPE)
    try:
        wait_for(lambda: group.member_status("a")["queued"] == 0, what="the new cat to take the message")
        os.unlink(group.p("a"))
        out, _ = reader.communicate(timeout=5)
    finally:
        if reader.poll() is None:
            reader.kill()
            reader.wait(5)
    assert out == b"after the signal\n"


# --- caught signals: EINTR ----------------------------------------------------


@pytest.mark.parametrize("restart", [False, True], ids=["plain", "SA_RESTART"])
def test_caught_signal_interrupts_blocked_read_with_eintr(group, cbin, restart):
    group.member("a")
    op = BlockOp(cbin["blockop"], "read", group.p("a"), timer_ms=300, restart=restart)
    try:
        res = op.result(timeout=5.0)
    finally:
        op.close()
    print(f"read interrupted {res['late_ms']:.1f} ms after the signal (restart={restart})")
    assert res["ret"] == -1
    assert res["errno"] == errno.EINTR, f"errno {res['errno']}"
    assert res["late_ms"] < LIMIT_S * 1000
    # The interrupted read consumed nothing: the next message is there for the next read.
    group.send(b"next")
    assert group.take("a") == [b"next"]


def test_signal_sent_from_outside_interrupts_read(group, cbin):
    group.member("a")
    op = BlockOp(cbin["blockop"], "read", group.p("a"))
    try:
        op.wait_blocked()
        t0 = time.monotonic()
        os.kill(op.pid, signal.SIGUSR1)
        res = op.result(timeout=5.0)
        print(f"read returned {1000 * (time.monotonic() - t0):.1f} ms after SIGUSR1 (incl. process exit)")
    finally:
        op.close()
    assert (res["ret"], res["errno"]) == (-1, errno.EINTR)


@pytest.mark.parametrize("restart", [False, True], ids=["plain", "SA_RESTART"])
def test_caught_signal_interrupts_blocked_write_nothing_delivered(group, cbin, restart):
    group.member("a")
    group.member("b")
    group.fill("a")
    group.take("b")
    sent = group.status().group["sent"]
    op = BlockOp(cbin["blockop"], "write", group.p("send"), data="interrupted", timer_ms=300, restart=restart)
    try:
        wait_for(lambda: blocked_writers(group) == 1 or op.proc.poll() is not None, what="the write to block")
        res = op.result(timeout=5.0)
    finally:
        op.close()
    print(f"write interrupted {res['late_ms']:.1f} ms after the signal (restart={restart})")
    assert res["ret"] == -1
    assert res["errno"] == errno.EINTR
    assert res["late_ms"] < LIMIT_S * 1000
    st = group.status()
    assert st.group["sent"] == sent
    assert st.group["blocked_writers"] == 0
    assert st.member("b")["queued"] == 0
    assert group.take("b") == []
    assert group.take("a") == [b"fill-a-0"], "the interrupted message never arrives"


def test_caught_signal_interrupts_blocked_member_write(group, cbin):
    group.member("w")
    group.member("a")
    group.fill("a")
    group.take("w")
    op = BlockOp(cbin["blockop"], "write", group.p("w"), data="as w", timer_ms=200)
    try:
        res = op.result(timeout=5.0)
    finally:
        op.close()
    assert (res["ret"], res["errno"]) == (-1, errno.EINTR)
    assert group.take("a") == [b"fill-a-0"]


def test_python_handler_that_raises_interrupts_read(group):
    """Python retries reads after EINTR (PEP 475) unless the handler raises."""
    group.member("a")
    script = textwrap.dedent(
        f"""
        import os, signal, time
        class Interrupted(Exception):
            pass
        def handler(signum, frame):
            raise Interrupted()
        signal.signal(signal.SIGALRM, handler)
        fd = os.open({group.p("a")!r}, os.O_RDONLY)
        signal.setitimer(signal.ITIMER_REAL, 0.3)
        t0 = time.monotonic()
        try:
            os.read(fd, 100)
            print("returned")
        except Interrupted:
            print("interrupted", round((time.monotonic() - t0 - 0.3) * 1000, 1))
        """
    )
    res = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=10)
    assert res.returncode == 0, res.stderr
    word, *late = res.stdout.split()
    assert word == "interrupted"
    print(f"python read interrupted {late[0]} ms after SIGALRM")
    assert float(late[0]) < LIMIT_S * 1000


# --- killed blocked writers ---------------------------------------------------


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT, signal.SIGTERM], ids=lambda s: s.name)
def test_killed_blocked_writer_delivered_nothing(group, sig):
    group.member("a")  # full, not drop-when-full: holds the writer back
    group.member("b")
    group.fill("a")
    group.take("b")
    sent = group.status().group["sent"]
    writer = subprocess.Popen(["sh", "-c", f"printf 'never' > '{group.p('send')}'"])
    try:
        wait_for(lambda: blocked_writers(group) == 1, what="the writer to block")
        wait_blocked(writer.pid, path=group.p("send"), calls=("write",))
        t0 = time.monotonic()
        writer.send_signal(sig)
        writer.wait(timeout=5)
        elapsed = time.monotonic() - t0
        print(f"blocked writer ended {1000 * elapsed:.1f} ms after {sig.name}")
        assert writer.returncode == -sig
        assert elapsed < LIMIT_S
    finally:
        if writer.poll() is None:
            writer.kill()
            writer.wait(5)
    st = group.status()
    assert st.group["sent"] == sent
    assert st.group["blocked_writers"] == 0
    assert st.member("b")["queued"] == 0
    assert st.member("b")["delivered"] == 1  # only the fill message
    assert group.take("b") == []
    assert group.take("a") == [b"fill-a-0"]
    # And the group works on: the next write is delivered to both.
    group.send(b"afterwards")
    assert group.take("a") == [b"afterwards"]
    assert group.take("b") == [b"afterwards"]


def test_killed_blocked_writer_lets_the_next_writer_through(group, cbin):
    group.member("a")
    group.fill("a")
    first = BlockOp(cbin["blockop"], "write", group.p("send"), data="first")
    try:
        wait_for(lambda: blocked_writers(group) == 1, what="the first writer to block")
        first.kill(signal.SIGKILL)
        first.proc.wait(5)
    finally:
        first.close()
    wait_for(lambda: blocked_writers(group) == 0, what="the killed writer to be forgotten")
    group.take("a")
    second = Call(group.send, b"second", nonblock=False)
    assert second.result(2.0) == 6
    assert group.take("a") == [b"second"]


# --- at most once -------------------------------------------------------------


@pytest.mark.timeout(120)
def test_killed_readers_never_duplicate_messages(group):
    """Readers killed at random moments while messages flow: a message may be
    lost with a reader killed as it was handed over, but never arrives twice,
    and the survivors see the writer's order."""
    group.member("a", capacity=100000)
    total = 400
    stop = threading.Event()

    def produce():
        fd = group.open("send", os.O_WRONLY)
        try:
            for k in range(total):
                if stop.is_set():
                    return
                os.write(fd, f"{k}\n".encode())
                time.sleep(0.001)
        finally:
            os.close(fd)

    producer = Call(produce)
    outputs, kills = [], 0
    rng = random.Random(1234)
    try:
        while not producer.done():
            cat = subprocess.Popen(["cat", group.p("a")], stdout=subprocess.PIPE)
            time.sleep(rng.uniform(0.005, 0.05))
            cat.kill()
            kills += 1
            out, _ = cat.communicate(timeout=5)
            outputs.append(out)
        producer.result(30.0)
    finally:
        stop.set()
    fd = group.open_nb("a")
    try:
        rest = drain(fd)
    finally:
        os.close(fd)
    seen = [int(x) for out in outputs for x in out.split()] + [int(m) for m in rest]
    assert len(seen) == len(set(seen)), "a message arrived twice"
    assert seen == sorted(seen), "order broken across readers"
    missing = total - len(seen)
    print(f"{kills} readers killed, {missing} messages taken by dying readers")
    assert missing <= kills


# --- more than one caller on one file --------------------------------------------
#
# Linux takes the inode lock, exclusively and uninterruptibly, around a FUSE
# direct write that reaches past the size it caches for the file (0 here) and
# around O_TRUNC. A second caller on the inode of a writer blocked in the daemon
# would wait in that lock, deaf to signals. The daemon therefore gives every
# lookup of send or a member an inode of its own (so /proc/PID/fd may show
# "(deleted)" for an open member: the name's dentry was replaced); separate
# opens then never share the lock. Two threads writing through one open file
# do share it: that case is a kernel limit the contract does not promise away.


@pytest.mark.parametrize("how", ["second-write-short", "second-write-long", "o_trunc-open"])
def test_second_opener_of_a_file_with_a_blocked_writer_is_interruptible(group, cbin, how):
    group.member("a")
    group.fill("a")  # an 8-byte message written on send
    send = group.p("send")
    first = BlockOp(cbin["blockop"], "write", send, data="first")
    second = None
    try:
        wait_for(lambda: blocked_writers(group) == 1, what="the first writer to block")
        t0 = time.monotonic()
        if how.startswith("second-write"):
            data = "second" if how.endswith("short") else "L" * 4096  # shorter / longer than any earlier write
            op = BlockOp(cbin["blockop"], "write", send, data=data, timer_ms=300)
            second = op.proc
        else:
            second = subprocess.Popen(["sh", "-c", f"printf second > '{send}'"])
            time.sleep(0.3)
            second.send_signal(signal.SIGINT)
        try:
            second.wait(timeout=1.3)
            ended = True
        except subprocess.TimeoutExpired:
            ended = False
        finally:
            group.take_one("a")  # let the first writer through, so that everything ends
        print(f"{how}: ended={ended} after {1000 * (time.monotonic() - t0 - 0.3):.1f} ms past its signal")
        assert ended, "still blocked 1 s after its signal"
        if how.startswith("second-write"):
            res = parse_kv(second.stdout.read().decode().strip().splitlines()[-1])
            assert (res["ret"], res["errno"]) == (-1, errno.EINTR)
        assert first.result(2.0)["ret"] == 5, "the first writer is delivered once there is room"
        assert group.take("a") == [b"first"], "the interrupted writer delivered nothing"
    finally:
        first.close()
        if second is not None and second.poll() is None:
            second.kill()
        if second is not None:
            second.communicate(timeout=5)


@pytest.mark.xfail(
    reason="two threads writing through one open file share its inode, and Linux holds that inode's lock "
    "(exclusive, uninterruptible) while the first write waits in the daemon: the second never reaches it",
    strict=False,
)
def test_two_threads_writing_through_one_fd_both_reach_the_daemon(group):
    group.member("a")
    group.fill("a")
    fd = group.open("send", os.O_WRONLY)
    try:
        w1 = Call(os.write, fd, b"one")
        wait_for(lambda: blocked_writers(group) == 1, what="the first writer to block")
        w2 = Call(os.write, fd, b"two")
        try:
            wait_for(lambda: blocked_writers(group) == 2, timeout=2.0, what="the second writer in the daemon")
        finally:
            group.take_one("a")
            wait_for(lambda: group.take_one("a") is not None, what="one of the writes")
            w1.result(2.0)
            w2.result(2.0)
    finally:
        os.close(fd)
