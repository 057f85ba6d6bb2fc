"""The examples in examples/, run against a real mount, with their output checked.

The first tests need no mount: the examples must at least parse and compile.
"""

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from helpers import Call, Group, read_line, wait_for

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
BIN_DIR = Path(__file__).resolve().parent / "bin"


def env_for(mount):
    env = dict(os.environ)
    env["MCASTFS"] = mount.path
    return env


def stop(proc):
    if proc.poll() is None:
        proc.kill()
    try:
        proc.communicate(timeout=5)
    except (subprocess.TimeoutExpired, ValueError):
        pass


# --- without a mount ----------------------------------------------------------


@pytest.mark.parametrize("script", ["chat.sh", "log-fanout.sh"])
def test_shell_examples_parse(script):
    res = subprocess.run(["sh", "-n", str(EXAMPLES / script)], capture_output=True, text=True, timeout=10)
    assert res.returncode == 0, res.stderr
    assert (EXAMPLES / script).read_text().startswith("#!/bin/sh\n")


@pytest.mark.parametrize("script", ["subscriber.py", "publisher.py"])
def test_python_examples_compile(script):
    source = (EXAMPLES / script).read_text()
    compile(source, str(EXAMPLES / script), "exec")
    res = subprocess.run([sys.executable, str(EXAMPLES / script), "--help"], capture_output=True, text=True,
                         timeout=10)
    assert res.returncode == 0, res.stderr


@pytest.fixture(scope="session")
def epoll_subscriber():
    BIN_DIR.mkdir(exist_ok=True)
    exe = BIN_DIR / "epoll_subscriber"
    res = subprocess.run(["cc", "-O2", "-Wall", "-Wextra", "-Werror", "-o", str(exe),
                          str(EXAMPLES / "epoll_subscriber.c")], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    return str(exe)


def test_c_example_compiles_without_warnings(epoll_subscriber):
    assert os.access(epoll_subscriber, os.X_OK)


def test_readme_lists_every_example():
    readme = (EXAMPLES / "README.md").read_text()
    for f in sorted(EXAMPLES.iterdir()):
        if f.name != "README.md":
            assert f.name in readme, f"{f.name} missing from examples/README.md"


# --- chat.sh ------------------------------------------------------------------


def start_chat(mount, group, name):
    proc = subprocess.Popen(["sh", str(EXAMPLES / "chat.sh"), name, group.name], env=env_for(mount),
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    line = read_line(proc.stderr, 10)
    assert line.startswith(f"[{name} joined {group.name}"), line
    return proc


def say(proc, text):
    proc.stdin.write(text.encode() + b"\n")
    proc.stdin.flush()


def test_chat(mount, group):
    bob = start_chat(mount, group, "bob")
    alice = None
    try:
        alice = start_chat(mount, group, "alice")
        assert read_line(bob.stdout).rstrip("\n") == "* alice joined"
        say(alice, "hi bob")
        assert read_line(bob.stdout).rstrip("\n") == "alice: hi bob"
        say(bob, "hello alice")
        assert read_line(alice.stdout).rstrip("\n") == "bob: hello alice"

        taken = subprocess.run(["sh", str(EXAMPLES / "chat.sh"), "bob", group.name], env=env_for(mount),
                               input=b"", capture_output=True, timeout=10)
        assert taken.returncode != 0, "a name in use is refused"
        assert b"taken" in taken.stderr

        alice.stdin.close()
        assert alice.wait(10) == 0
        assert "[alice left" in Call(alice.stderr.read).result(5).decode()
        assert read_line(bob.stdout).rstrip("\n") == "* alice left"
        bob.stdin.close()
        assert bob.wait(10) == 0
        assert group.status().members == {}
    finally:
        stop(bob)
        if alice is not None:
            stop(alice)


def test_chat_makes_the_group(mount):
    name = f"chat-new-{os.getpid()}"
    res = subprocess.run(["sh", str(EXAMPLES / "chat.sh"), "solo", name], env=env_for(mount), input=b"hello\n",
                         capture_output=True, timeout=15)
    assert res.returncode == 0, res.stderr
    assert os.path.isdir(os.path.join(mount.path, name))
    assert os.listdir(os.path.join(mount.path, name)) and "solo" not in os.listdir(os.path.join(mount.path, name))
    os.rmdir(os.path.join(mount.path, name))


# --- log-fanout.sh -------------------------------------------------------------


def test_log_fanout_demo(mount, group):
    env = env_for(mount)
    env["GROUP"] = group.name
    res = subprocess.run(["sh", str(EXAMPLES / "log-fanout.sh")], env=env, capture_output=True, text=True,
                         timeout=30, stdin=subprocess.DEVNULL)
    assert res.returncode == 0, res.stderr
    out = res.stdout
    expected_all = ["INFO  service started", "INFO  accepted connection", "ERROR disk full", "WARN  retrying",
                    "ERROR retry failed"]
    lines = out.split("\n")
    i = lines.index("all: 5 lines")
    assert [s.strip() for s in lines[i + 1 : i + 6]] == [s.strip() for s in expected_all]
    j = lines.index("errors: 2 lines")
    assert [s.strip() for s in lines[j + 1 : j + 3]] == ["ERROR disk full", "ERROR retry failed"]
    k = lines.index("status:")
    assert lines[k + 1].strip().startswith(f"group {group.name} ")
    assert "sent=5" in lines[k + 1]
    assert group.status().members == {}, "the consumers left"


def test_log_fanout_follows_a_file(mount, group, tmp_path):
    env = env_for(mount)
    env["GROUP"] = group.name
    log = tmp_path / "app.log"
    log.write_text("old line, not sent\n")
    proc = subprocess.Popen(["sh", str(EXAMPLES / "log-fanout.sh"), str(log)], env=env, cwd=tmp_path,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)
    try:
        wait_for(lambda: {"all", "errors"} <= set(group.status().members), what="the consumers to join")
        time.sleep(1.0)  # tail -F starts at the end of the file
        with open(log, "a") as f:
            f.write("INFO  one\nERROR two\nINFO  three\n")
        wait_for(lambda: (tmp_path / "all.log").exists()
                 and (tmp_path / "all.log").read_text().count("\n") == 3, timeout=10, what="all.log to fill")
        os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C
        proc.wait(15)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        stop(proc)
    assert (tmp_path / "all.log").read_text() == "INFO  one\nERROR two\nINFO  three\n"
    assert (tmp_path / "errors.log").read_text() == "ERROR two\n"
    assert group.status().members == {}, "Ctrl-C removes the consumers' members"


# --- subscriber.py and publisher.py ---------------------------------------------


def py(script, *args, mount):
    return [sys.executable, str(EXAMPLES / script), "-m", mount.path, *args]


def test_publisher_and_subscriber_across_groups(mount, new_group):
    a, b = new_group(prefix="pub-a"), new_group(prefix="pub-b")
    a.member("sub")
    b.member("sub")
    n = 20
    sub = subprocess.Popen(py("subscriber.py", "-n", str(2 * n), "-t", "20", f"{a.name}/sub", f"{b.name}/sub",
                              mount=mount), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert read_line(sub.stderr, 10).startswith("[subscribed to")
        for g, word in ((a, "alpha"), (b, "beta")):
            res = subprocess.run(py("publisher.py", "-n", str(n), g.name, word, mount=mount), capture_output=True,
                                 text=True, timeout=30)
            assert res.returncode == 0, res.stderr
            assert res.stdout.startswith(f"published {n} messages to {g.name}/send in ")
        out, err = sub.communicate(timeout=20)
        assert sub.returncode == 0, err
    finally:
        stop(sub)
    lines = out.splitlines()
    assert [x for x in lines if x.startswith(f"{a.name}/sub: ")] == [f"{a.name}/sub: alpha {i}" for i in range(n)]
    assert [x for x in lines if x.startswith(f"{b.name}/sub: ")] == [f"{b.name}/sub: beta {i}" for i in range(n)]


def test_subscriber_creates_member_and_ends_when_it_leaves(mount):
    gname = f"sub-create-{os.getpid()}"
    sub = subprocess.Popen(py("subscriber.py", "--create", "-t", "30", f"{gname}/me", mount=mount),
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert read_line(sub.stderr, 10).startswith("[subscribed to")
        g = Group(mount.path, gname)
        assert "me" in g.status().members
        g.send(b"first\n")
        assert read_line(sub.stdout, 5).rstrip("\n") == f"{gname}/me: first"
        os.unlink(g.p("me"))
        assert read_line(sub.stdout, 5).rstrip("\n") == f"{gname}/me: (left)"
        assert sub.wait(10) == 0
    finally:
        stop(sub)
    os.rmdir(os.path.join(mount.path, gname))


def test_publisher_waits_for_pollout_and_loses_nothing(mount, group):
    group.member("slow", capacity=1)
    group.member("fast")
    n = 40

    def slow_reader():
        fd = group.open("slow")
        got = []
        try:
            while len(got) < n:
                got.append(os.read(fd, 100))
                time.sleep(0.01)
        finally:
            os.close(fd)
        return got

    reader = Call(slow_reader)
    res = subprocess.run(py("publisher.py", "-n", str(n), group.name, "tick", mount=mount), capture_output=True,
                         text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    waits = int(re.search(r"\((\d+) waits for room\)", res.stdout).group(1))
    print(res.stdout.strip())
    assert waits > 0, "the publisher met a full queue and waited for POLLOUT"
    expected = [f"tick {i}".encode() for i in range(n)]
    assert reader.result(30) == expected
    assert group.take("fast") == expected


def test_publisher_as_member(mount, group):
    group.member("alice")
    group.member("bob")
    res = subprocess.run(py("publisher.py", "-n", "3", "--as", "alice", group.name, "hi", mount=mount),
                         capture_output=True, text=True, timeout=30)
    assert res.returncode == 0, res.stderr
    assert f"to {group.name}/alice" in res.stdout
    assert group.take("bob") == [b"hi 0", b"hi 1", b"hi 2"]
    assert group.take("alice") == []


def test_publisher_rate(mount, group):
    group.member("m")
    res = subprocess.run(py("publisher.py", "-n", "5", "-r", "20", group.name, mount=mount), capture_output=True,
                         text=True, timeout=30)
    assert res.returncode == 0, res.stderr
    elapsed = float(re.search(r" in ([0-9.]+) s ", res.stdout).group(1))
    assert elapsed >= 0.19, f"5 messages at 20/s take at least 0.2 s, took {elapsed}"
    assert len(group.take("m")) == 5


# --- epoll_subscriber.c --------------------------------------------------------


def test_epoll_subscriber(mount, group, epoll_subscriber):
    group.member("x")
    group.member("y")
    relative = f"{group.name}/x"
    absolute = group.p("y")
    proc = subprocess.Popen([epoll_subscriber, relative, absolute], env=env_for(mount), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        assert read_line(proc.stderr, 10).startswith("[subscribed to 2 members")
        group.send(b"both\n")
        group.send_as("x", b"from x")
        first = sorted(read_line(proc.stdout, 5).rstrip("\n") for _ in range(3))
        assert first == sorted([f"{relative}: both", f"{absolute}: both", f"{absolute}: from x"])
        os.unlink(group.p("x"))
        assert read_line(proc.stdout, 5).rstrip("\n") == f"{relative}: (left)"
        big = b"B" * 1_044_480
        group.send(big)
        line = read_line(proc.stdout, 5).rstrip("\n")
        assert line == f"{absolute}: " + "B" * 1_044_480, "the largest message arrives in one read"
        os.unlink(group.p("y"))
        assert read_line(proc.stdout, 5).rstrip("\n") == f"{absolute}: (left)"
        assert proc.wait(10) == 0
    finally:
        stop(proc)


def test_epoll_subscriber_count(mount, group, epoll_subscriber):
    group.member("m")
    for i in range(5):
        group.send(f"n{i}".encode())
    res = subprocess.run([epoll_subscriber, "-n", "3", group.p("m")], capture_output=True, text=True, timeout=10)
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines() == [f"{group.p('m')}: n{i}" for i in range(3)]
    assert group.take("m") == [b"n3", b"n4"]
