"""What the README and docs/contract.md ("Limits from the kernel", "Waiting,
signals and poll") say happens when ordinary tools meet a member, checked on a
real mount.

The README used to say that `cp G/NAME FILE` copies nothing and that Ctrl-Z on
a blocked `cat` ends its read with EINTR. A user found otherwise: reads that
bypass read(2) (sendfile, splice, copy_file_range) do see end of file, so cp
and shutil.copyfile fall back to read(2) and become readers that take the
queued messages and block; and a stop signal does end a blocked call with
EINTR, but cat retries it and keeps receiving. These tests hold the text to
what happens.
"""

from __future__ import annotations

import errno
import mmap
import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time

import pytest

from helpers import parse_kv, read_file, read_line, task_state, wait_blocked, wait_for

STOP_SIGNALS = [signal.SIGSTOP, signal.SIGTSTP]

# One blocking read(2) or write(2) that installs no handler unless told to:
# the stop-signal tests need a program that catches nothing, and blockop (the
# shared helper) always catches SIGALRM and SIGUSR1.
RAWIO_C = r"""
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static void on_signal(int sig) { (void)sig; }

int main(int argc, char **argv)
{
    if (argc < 4) return 2;
    if (strcmp(argv[1], "none") != 0) {
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = on_signal;
        sa.sa_flags = strcmp(argv[1], "cont-restart") == 0 ? SA_RESTART : 0;
        sigaction(SIGCONT, &sa, NULL);
    }
    int writing = strcmp(argv[2], "write") == 0;
    int fd = open(argv[3], writing ? O_WRONLY : O_RDONLY);
    if (fd < 0) { printf("open errno=%d\n", errno); return 1; }
    printf("opened\n");
    fflush(stdout);
    static char buf[65536];
    ssize_t n = writing ? write(fd, argv[4], strlen(argv[4])) : read(fd, buf, sizeof buf);
    printf("ret=%zd errno=%d\n", n, n < 0 ? errno : 0);
    return 0;
}
"""


@pytest.fixture(scope="module")
def rawio(tmp_path_factory) -> str:
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.fail("no C compiler (cc) for the test helpers", pytrace=False)
    d = tmp_path_factory.mktemp("rawio")
    src, exe = d / "rawio.c", d / "rawio"
    src.write_text(RAWIO_C)
    res = subprocess.run([cc, "-O2", "-Wall", "-o", str(exe), str(src)], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    return str(exe)


def queued(group, name: str) -> int:
    return group.member_status(name)["queued"]


def blocked_writers(group) -> int:
    return group.status().group["blocked_writers"]


def finish(proc: subprocess.Popen):
    if proc.poll() is None:
        proc.kill()
    proc.communicate(timeout=5)


def wait_stopped(proc: subprocess.Popen):
    wait_for(lambda: task_state(proc.pid) == "T", what=f"pid {proc.pid} to stop")


def contents(path) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def errno_of(fn, *args) -> int:
    try:
        fn(*args)
    except OSError as e:
        return e.errno
    return 0


# --- reads that bypass read(2) ------------------------------------------------


def test_sendfile_splice_copy_file_range_from_a_member_consume_nothing(group, tmp_path):
    group.member("a")
    group.member("b")
    group.send(b"one")
    group.send(b"two")
    fd = group.open("a")
    out = os.open(tmp_path / "out", os.O_WRONLY | os.O_CREAT, 0o644)
    r, w = os.pipe()
    left, right = socket.socketpair()
    other = group.open("b", os.O_WRONLY)
    try:
        assert errno_of(os.sendfile, out, fd, None, 65536) == errno.EINVAL
        assert errno_of(os.sendfile, left.fileno(), fd, None, 65536) == errno.EINVAL
        assert errno_of(os.sendfile, out, fd, 0, 65536) == errno.ESPIPE
        assert os.sendfile(w, fd, None, 65536) == 0
        assert os.splice(fd, w, 65536) == 0
        assert errno_of(os.copy_file_range, fd, out, 65536) == errno.EXDEV
        assert os.copy_file_range(fd, other, 65536) == 0
    finally:
        for x in (fd, out, r, w, other):
            os.close(x)
        left.close()
        right.close()
    assert os.path.getsize(tmp_path / "out") == 0
    assert group.take("a") == [b"one", b"two"], "a bypassing read consumed a message"
    assert group.take("b") == [b"one", b"two"], "copy_file_range within the mount sent something"


# --- copying a member: cp and shutil.copyfile read it ------------------------------


def test_cp_takes_every_queued_message_then_blocks_until_the_member_leaves(group, tmp_path):
    group.member("a")
    messages = [f"m{i}\n".encode() for i in range(5)]
    for m in messages:
        group.send(m)
    dest = tmp_path / "copy"
    cp = subprocess.Popen(["cp", group.p("a"), str(dest)], stderr=subprocess.PIPE)
    try:
        wait_for(lambda: queued(group, "a") == 0, what="cp to take the queued messages")
        wait_blocked(cp.pid, path=group.p("a"), calls=("read",))
        assert cp.poll() is None, "cp ended instead of blocking"
        assert contents(dest) == b"".join(messages), "cp writes each message as it reads it"
        group.send(b"later\n")
        wait_for(lambda: contents(dest).endswith(b"later\n"), what="cp to copy a message sent while it waits")
        os.unlink(group.p("a"))
        assert cp.wait(timeout=5) == 0, cp.stderr.read()
    finally:
        finish(cp)
    assert contents(dest) == b"".join(messages) + b"later\n"


def test_cp_of_an_empty_member_blocks_and_ctrl_c_ends_it(group, tmp_path):
    group.member("a")
    dest = tmp_path / "copy"
    cp = subprocess.Popen(["cp", group.p("a"), str(dest)], stderr=subprocess.PIPE)
    try:
        wait_blocked(cp.pid, path=group.p("a"), calls=("read",))
        assert cp.poll() is None
        cp.send_signal(signal.SIGINT)
        assert cp.wait(timeout=5) == -signal.SIGINT
    finally:
        finish(cp)
    assert contents(dest) == b""
    group.send(b"after cp")
    assert group.take("a") == [b"after cp"], "the interrupted cp took nothing"


SHUTIL_COPY = textwrap.dedent(
    """
    import shutil, sys
    shutil.copyfile(sys.argv[1], sys.argv[2])
    print("copied", flush=True)
    """
)


def test_shutil_copyfile_takes_queued_messages_and_writes_them_at_end_of_file(group, tmp_path):
    group.member("a")
    messages = [f"m{i}\n".encode() for i in range(5)]
    for m in messages:
        group.send(m)
    dest = tmp_path / "copy"
    proc = subprocess.Popen([sys.executable, "-c", SHUTIL_COPY, group.p("a"), str(dest)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        wait_for(lambda: queued(group, "a") == 0, what="copyfile to take the queued messages")
        wait_blocked(proc.pid, path=group.p("a"), calls=("read",))
        assert proc.poll() is None, "shutil.copyfile ended instead of blocking"
        assert contents(dest) == b"", "copyfile holds what it read until 64 KiB or end of file"
        os.unlink(group.p("a"))
        out, err = proc.communicate(timeout=10)
        assert proc.returncode == 0, err
        assert out == b"copied\n"
    finally:
        finish(proc)
    assert contents(dest) == b"".join(messages)


def test_shutil_copyfile_interrupted_loses_what_it_took(group, tmp_path):
    group.member("a")
    for i in range(5):
        group.send(f"m{i}\n".encode())
    dest = tmp_path / "copy"
    proc = subprocess.Popen([sys.executable, "-c", SHUTIL_COPY, group.p("a"), str(dest)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        wait_for(lambda: queued(group, "a") == 0, what="copyfile to take the queued messages")
        wait_blocked(proc.pid, path=group.p("a"), calls=("read",))
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=10)
        assert proc.returncode != 0
        assert b"KeyboardInterrupt" in err
    finally:
        finish(proc)
    assert contents(dest) == b""
    assert group.take("a") == [], "the messages copyfile took are gone with it"


def test_cp_copies_status_and_shutil_copyfile_copies_nothing(group, tmp_path):
    group.member("a")
    snapshot = read_file(group.p("status"))
    res = subprocess.run(["cp", group.p("status"), str(tmp_path / "cp")], capture_output=True, timeout=10)
    assert res.returncode == 0, res.stderr
    assert contents(tmp_path / "cp") == snapshot
    shutil.copyfile(group.p("status"), tmp_path / "shutil")
    assert contents(tmp_path / "shutil") == b""


def test_cp_between_two_members_of_a_group_loops(group, tmp_path):
    """cp G/a G/b sends what a receives back into the group as b; a gets it again."""
    group.member("a")
    group.member("b")
    group.send(b"echo\n")
    cp = subprocess.Popen(["cp", group.p("a"), group.p("b")], stderr=subprocess.PIPE)
    try:
        wait_for(lambda: group.status().group["sent"] >= 100, timeout=10, what="the copy loop to resend")
        assert cp.poll() is None
    finally:
        finish(cp)


# --- writes that are not one write(2) ---------------------------------------------


def test_sendfile_and_splice_into_send_one_pipeful_then_emsgsize(group, tmp_path):
    group.member("a")
    data = bytes(range(256)) * 800  # 204,800 bytes
    src_path = tmp_path / "src"
    src_path.write_bytes(data)
    src = os.open(src_path, os.O_RDONLY)
    send = group.open("send", os.O_WRONLY)
    try:
        assert os.sendfile(send, src, 0, len(data)) == 65536
        assert group.take("a", size=len(data)) == [data[:65536]]
        assert errno_of(os.sendfile, send, src, 0, 100) == errno.EMSGSIZE
        r, w = os.pipe()
        try:
            os.write(w, b"through a pipe")
            assert errno_of(os.splice, r, send, 100) == errno.EMSGSIZE
            assert group.take("a") == [], "a refused sendfile or splice sent something"
            os.write(send, b"write(2) still works")
            assert group.take("a") == [b"write(2) still works"]
            fresh = group.open("send", os.O_WRONLY)
            try:
                assert os.splice(r, fresh, 100) == len(b"through a pipe")
            finally:
                os.close(fresh)
        finally:
            os.close(r)
            os.close(w)
        assert group.take("a") == [b"through a pipe"]
    finally:
        os.close(src)
        os.close(send)


def test_writev_with_more_segments_than_pages_is_cut(group):
    group.member("a")
    # Each segment at the start of its own page: one page slot each, exactly.
    pages = mmap.mmap(-1, 300 * mmap.PAGESIZE)
    view = memoryview(pages)
    try:
        for k in range(300):
            pages[k * mmap.PAGESIZE:k * mmap.PAGESIZE + 100] = bytes([k % 251]) * 100
        segments = [view[k * mmap.PAGESIZE:k * mmap.PAGESIZE + 100] for k in range(300)]
        fd = group.open("send", os.O_WRONLY)
        try:
            assert os.writev(fd, segments) == 256 * 100
        finally:
            os.close(fd)
        expected = b"".join(bytes(s) for s in segments[:256])
        segments.clear()
    finally:
        view.release()
        pages.close()
    assert group.take("a") == [expected]


# --- stop signals -------------------------------------------------------------------


@pytest.mark.parametrize("handler", ["none", "cont", "cont-restart"])
@pytest.mark.parametrize("sig", STOP_SIGNALS, ids=lambda s: s.name)
def test_stop_and_continue_give_eintr_to_a_blocked_read(group, rawio, sig, handler):
    group.member("a")
    # Its own process group in this session: a stop signal to a process in an
    # orphaned group (start_new_session) would be discarded.
    proc = subprocess.Popen([rawio, handler, "read", group.p("a")], stdout=subprocess.PIPE, process_group=0)
    try:
        assert read_line(proc.stdout).strip() == "opened"
        wait_blocked(proc.pid, path=group.p("a"), calls=("read",))
        proc.send_signal(sig)
        wait_stopped(proc)
        group.send(b"while stopped")
        proc.send_signal(signal.SIGCONT)
        res = parse_kv(read_line(proc.stdout))
        assert (res["ret"], res["errno"]) == (-1, errno.EINTR)
        assert proc.wait(timeout=5) == 0
    finally:
        finish(proc)
    assert group.take("a") == [b"while stopped"], "the interrupted read consumed nothing"


@pytest.mark.parametrize("sig", STOP_SIGNALS, ids=lambda s: s.name)
def test_stop_and_continue_give_eintr_to_a_blocked_write(group, rawio, sig):
    group.member("a")
    group.fill("a")
    proc = subprocess.Popen([rawio, "none", "write", group.p("send"), "stopped"], stdout=subprocess.PIPE,
                            process_group=0)
    try:
        assert read_line(proc.stdout).strip() == "opened"
        wait_for(lambda: blocked_writers(group) == 1, what="the write to block")
        proc.send_signal(sig)
        wait_stopped(proc)
        proc.send_signal(signal.SIGCONT)
        res = parse_kv(read_line(proc.stdout))
        assert (res["ret"], res["errno"]) == (-1, errno.EINTR)
    finally:
        finish(proc)
    assert blocked_writers(group) == 0
    assert group.take("a") == [b"fill-a-0"], "the interrupted write delivered nothing"


@pytest.mark.parametrize("sig", STOP_SIGNALS, ids=lambda s: s.name)
def test_cat_keeps_receiving_across_stop_and_continue(group, sig):
    group.member("a")
    cat = subprocess.Popen(["cat", group.p("a")], stdout=subprocess.PIPE, stderr=subprocess.PIPE, process_group=0)
    try:
        wait_blocked(cat.pid, path=group.p("a"), calls=("read",))
        cat.send_signal(sig)
        wait_stopped(cat)
        group.send(b"while stopped\n")
        time.sleep(0.2)
        assert queued(group, "a") == 1, "a stopped cat cannot have taken it"
        cat.send_signal(signal.SIGCONT)
        assert read_line(cat.stdout) == "while stopped\n"
        wait_blocked(cat.pid, path=group.p("a"), calls=("read",))
        group.send(b"after\n")
        assert read_line(cat.stdout) == "after\n"
        os.unlink(group.p("a"))
        out, err = cat.communicate(timeout=5)
        assert (cat.returncode, out, err) == (0, b"", b"")
    finally:
        finish(cat)


def test_python_read_keeps_waiting_across_stop_and_continue(group):
    group.member("a")
    script = textwrap.dedent(
        f"""
        import os
        fd = os.open({group.p("a")!r}, os.O_RDONLY)
        print(os.read(fd, 100).decode(), flush=True)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            process_group=0)
    try:
        wait_blocked(proc.pid, path=group.p("a"), calls=("read",))
        proc.send_signal(signal.SIGTSTP)
        wait_stopped(proc)
        proc.send_signal(signal.SIGCONT)
        wait_blocked(proc.pid, path=group.p("a"), calls=("read",))
        group.send(b"resumed")
        out, err = proc.communicate(timeout=5)
        assert (proc.returncode, out, err) == (0, b"resumed\n", b"")
    finally:
        finish(proc)


# (writer, whether it retries after EINTR). Each writes b"stopped" on send.
WRITERS = {
    "cat": True,          # coreutils: safe_write retries EINTR
    "dash-printf": True,  # dash retries the write
    "bash-printf": False,  # bash's builtin reports the error
}


@pytest.mark.parametrize("writer", list(WRITERS))
def test_shell_writers_across_stop_and_continue(group, tmp_path, writer):
    if shutil.which(writer.split("-")[0]) is None:
        pytest.fail(f"{writer.split('-')[0]} is not installed", pytrace=False)
    group.member("a")
    group.fill("a")
    send = group.p("send")
    if writer == "cat":
        (tmp_path / "in").write_bytes(b"stopped")
        with open(send, "wb") as out:
            proc = subprocess.Popen(["cat", str(tmp_path / "in")], stdout=out, stderr=subprocess.PIPE, process_group=0)
    else:
        shell = writer.split("-")[0]
        proc = subprocess.Popen([shell, "-c", f"printf stopped > '{send}'"], stderr=subprocess.PIPE, process_group=0)
    try:
        wait_for(lambda: blocked_writers(group) == 1, what="the write to block")
        wait_blocked(proc.pid, calls=("write",))
        proc.send_signal(signal.SIGTSTP)
        wait_stopped(proc)
        proc.send_signal(signal.SIGCONT)
        if WRITERS[writer]:
            wait_for(lambda: blocked_writers(group) == 1 and task_state(proc.pid) == "S",
                     what="the write to be retried")
            assert proc.poll() is None
            assert group.take_one("a") == b"fill-a-0"
            _, err = proc.communicate(timeout=5)
            assert (proc.returncode, err) == (0, b"")
            assert group.take("a") == [b"stopped"]
        else:
            _, err = proc.communicate(timeout=5)
            assert proc.returncode == 1
            assert b"Interrupted system call" in err
            assert blocked_writers(group) == 0
            assert group.take("a") == [b"fill-a-0"], "the interrupted write delivered nothing"
    finally:
        finish(proc)

