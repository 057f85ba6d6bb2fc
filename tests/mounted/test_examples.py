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

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"
BIN_DIR = Path(__file__).resolve().parent / "bin"

sys.path.insert(0, str(REPO / "clients" / "python"))
import mcastfs  # noqa: E402


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


@pytest.mark.parametrize("script", ["chat.sh", "log-fanout.sh", "line-messages.sh", "peer-service.sh"])
def test_shell_examples_parse(script):
    res = subprocess.run(["sh", "-n", str(EXAMPLES / script)], capture_output=True, text=True, timeout=10)
    assert res.returncode == 0, res.stderr
    assert (EXAMPLES / script).read_text().startswith("#!/bin/sh\n")


@pytest.mark.parametrize("script", ["subscriber.py", "publisher.py", "framed_subscriber.py", "peer_service.py"])
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


@pytest.fixture(scope="session")
def framed_publisher():
    BIN_DIR.mkdir(exist_ok=True)
    exe = BIN_DIR / "framed_publisher"
    # The flags the header itself is held to (clients/README.md).
    res = subprocess.run(["cc", "-O2", "-Wall", "-Wextra", "-Werror", "-Wconversion", "-Wsign-conversion",
                          "-I", str(REPO / "clients" / "c"), "-o", str(exe), str(EXAMPLES / "framed_publisher.c")],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    return str(exe)


def test_c_examples_compile_without_warnings(epoll_subscriber, framed_publisher):
    assert os.access(epoll_subscriber, os.X_OK)
    assert os.access(framed_publisher, os.X_OK)


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


# --- framed_subscriber.py --------------------------------------------------------

# "GROUP/MEMBER #SEQ HH:MM:SS.micros from SENDER uid=U gid=G pid=P[ dropped=N]: TEXT"
FRAMED_LINE = re.compile(r"^(?P<spec>\S+) #(?P<seq>\d+) \d\d:\d\d:\d\d\.\d{6} from (?P<sender>\S+) "
                         r"uid=(?P<uid>\d+) gid=(?P<gid>\d+) pid=(?P<pid>\d+)(?: dropped=(?P<dropped>\d+))?: "
                         r"(?P<text>.*)$")


def framed_lines(text):
    """The subscriber's message lines, parsed, in order."""
    return [m.groupdict() for m in (FRAMED_LINE.match(x.strip()) for x in text.splitlines()) if m]


def write_from_child(path, data):
    """Writes data on path from a child process; returns the child's pid."""
    res = subprocess.run([sys.executable, "-c", "import os, sys\n"
                          "fd = os.open(sys.argv[1], os.O_WRONLY); os.write(fd, sys.argv[2].encode()); "
                          "print(os.getpid())", path, data], capture_output=True, text=True, timeout=10)
    assert res.returncode == 0, res.stderr
    return int(res.stdout)


def test_framed_subscriber_prints_each_message_with_its_metadata(mount, group):
    group.member("carol")
    group.member("alice")
    writer = write_from_child(group.p("send"), "hello\n")      # the record view, anonymous
    group.send_as("alice", b"hi from alice")                    # the record view, as alice
    out = os.open(group.p("frames/send"), os.O_WRONLY)          # one framed batch of two
    try:
        assert mcastfs.send_batch(out, [b"two\nlines", b"last"]) == 2
    finally:
        os.close(out)

    spec = f"{group.name}/carol"
    sub = subprocess.Popen(py("framed_subscriber.py", "-t", "20", spec, mount=mount), stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)
    try:
        assert read_line(sub.stderr, 10).startswith(f"[subscribed to {spec}]")
        got = [framed_lines(read_line(sub.stdout, 5))[0] for _ in range(4)]
        os.unlink(group.p("carol"))
        assert read_line(sub.stdout, 5).rstrip("\n") == f"{spec} (left)"
        out_rest, err = sub.communicate(timeout=10)
        assert sub.returncode == 0, err
    finally:
        stop(sub)
    me = str(os.getpid())  # send_as and send_batch ran on this, the main, thread
    uid, gid = str(os.getuid()), str(os.getgid())
    assert [(g["sender"], g["pid"], g["text"]) for g in got] == [
        ("-", str(writer), "hello"), ("alice", me, "hi from alice"), ("-", me, "two\\nlines"), ("-", me, "last")]
    assert {(g["spec"], g["uid"], g["gid"], g["dropped"]) for g in got} == {(spec, uid, gid, None)}
    seqs = [int(g["seq"]) for g in got]
    assert seqs == list(range(seqs[0], seqs[0] + 4)), "one sequence for both views, no gaps"
    # All four were queued before it started: its first read took them all.
    assert err.strip() == "[4 messages in 1 read]"
    assert out_rest == ""


def test_framed_subscriber_shows_dropped_and_creates_its_member(mount):
    gname = f"framed-create-{os.getpid()}"
    spec = f"{gname}/late"
    sub = subprocess.Popen(py("framed_subscriber.py", "--create", "-n", "1", "-t", "20", spec, mount=mount),
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert read_line(sub.stderr, 10).startswith(f"[subscribed to {spec}]")
        g = Group(mount.path, gname)
        assert "late" in g.status().members
        g.send(b"first")
        out, err = sub.communicate(timeout=10)
        assert sub.returncode == 0, err
        assert [x["text"] for x in framed_lines(out)] == ["first"]
        assert err.strip() == "[1 message in 1 read]"
        assert "late" not in g.status().members, "it removed the member it made"
    finally:
        stop(sub)

    # The drop count rides on the next message received after the drops.
    g.member("late2", capacity=1, drop_when_full=1)
    for word in (b"a", b"b", b"c", b"d"):
        g.send(word)
    fd = g.open("late2")
    try:
        os.read(fd, 100)  # "a"; b, c and d were dropped
    finally:
        os.close(fd)
    g.send(b"after")
    res = subprocess.run(py("framed_subscriber.py", "-n", "1", f"{gname}/late2", mount=mount), capture_output=True,
                         text=True, timeout=10)
    assert res.returncode == 0, res.stderr
    line = framed_lines(res.stdout)[0]
    assert (line["text"], line["dropped"]) == ("after", "3")
    os.unlink(g.p("late2"))
    os.rmdir(g.p())


# --- framed_publisher.c ----------------------------------------------------------


def test_framed_publisher_sends_stdin_lines_as_one_batch(mount, group, framed_publisher):
    group.member("m")
    # One write(2) of input, so the publisher's first read takes all of it.
    res = subprocess.run([framed_publisher, group.name], env=env_for(mount), input="one\ntwo\n\nthree\n", text=True,
                         capture_output=True, timeout=10)
    assert res.returncode == 0, res.stderr
    assert re.match(rf"sent 3 messages to {group.name}/frames/send in 1 batch, 1 write \(0 short\) in [0-9.]+ s$",
                    res.stdout.strip()), res.stdout
    assert group.take("m") == [b"one", b"two", b"three"], "one line, one message; the empty line skipped"

    res = subprocess.run([framed_publisher, group.name], env=env_for(mount), input="a\nno newline", text=True,
                         capture_output=True, timeout=10)
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith("sent 2 messages")
    assert group.take("m") == [b"a", b"no newline"]


def test_framed_publisher_as_a_member(mount, group, framed_publisher):
    group.member("alice")
    group.member("bob")
    res = subprocess.run([framed_publisher, "-n", "3", "-a", "alice", group.p(), "hi"], capture_output=True,
                         text=True, timeout=10)
    assert res.returncode == 0, res.stderr
    assert f"to {group.p()}/frames/alice in 1 batch" in res.stdout
    fd = group.open_nb("frames/bob")
    try:
        frames = mcastfs.read_frames(fd)
    finally:
        os.close(fd)
    assert [(f.sender, bytes(f.payload)) for f in frames] == [("alice", b"hi 0"), ("alice", b"hi 1"),
                                                              ("alice", b"hi 2")]
    assert group.take("alice") == [], "no loopback"


def test_framed_publisher_resends_after_short_writes_and_loses_nothing(mount, group, framed_publisher):
    group.member("slow", capacity=10)
    group.member("fast")  # nobody reads it: n stays below its capacity, 256
    n = 200

    def slow_reader():
        fd = group.open("slow")
        got = []
        try:
            while len(got) < n:
                got.append(os.read(fd, 100))
                time.sleep(0.002)
        finally:
            os.close(fd)
        return got

    reader = Call(slow_reader)
    res = subprocess.run([framed_publisher, "-n", str(n), "-b", "50", group.name, "tick"], env=env_for(mount),
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    print(res.stdout.strip())
    m = re.match(rf"sent {n} messages to {group.name}/frames/send in 4 batches, (\d+) writes \((\d+) short\)",
                 res.stdout)
    assert m, res.stdout
    writes, short = int(m.group(1)), int(m.group(2))
    assert short > 0, "a full member made the daemon deliver a prefix"
    assert writes == short + 4, "each batch ended with one complete write"
    expected = [f"tick {i}".encode() for i in range(n)]
    assert reader.result(30) == expected
    assert group.take("fast") == expected


def test_framed_publisher_fills_batches_up_to_one_write(mount, group, framed_publisher):
    group.member("m", capacity=100_000, queue_bytes=1 << 30)
    n = 100_000  # "x 0" .. "x 99999": 1,088,890 bytes of records, more than one write holds
    res = subprocess.run([framed_publisher, "-n", str(n), "-b", "0", group.name, "x"], env=env_for(mount),
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert f"sent {n} messages to {group.name}/frames/send in 2 batches, 2 writes (0 short)" in res.stdout
    fd = group.open_nb("frames/m")
    got = []
    try:
        while len(got) < n:
            got += [bytes(f.payload) for f in mcastfs.read_frames(fd)]
    finally:
        os.close(fd)
    assert got == [f"x {i}".encode() for i in range(n)]


# --- line-messages.sh --------------------------------------------------------------


def test_line_messages_demo(mount, group):
    env = env_for(mount)
    env["GROUP"] = group.name
    res = subprocess.run(["sh", str(EXAMPLES / "line-messages.sh")], env=env, capture_output=True, text=True,
                         timeout=30, stdin=subprocess.DEVNULL)
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    headers = [f"message=write: seq 3 | tee {group.name}/send", f"message=line: seq 3 | tee {group.name}/send",
               "message=line: printf 'half a '; printf 'line\\n'   (two writes)"]
    assert [x for x in lines if not x.startswith("  ")] == headers
    sections = "\n".join(lines).split("\n" + headers[1] + "\n")
    before, after = sections[0], sections[1].split("\n" + headers[2] + "\n")
    assert [g["text"] for g in framed_lines(before)] == ["1\\n2\\n3"], "tee's one write: one message"
    assert [g["text"] for g in framed_lines(after[0])] == ["1", "2", "3"], "message=line: one per line"
    assert [g["text"] for g in framed_lines(after[1])] == ["half a line"], "two writes, one line"
    assert [int(g["seq"]) for g in framed_lines(res.stdout)] == [1, 2, 3, 4, 5]
    status = group.status()
    assert status.group["message"] == "line"
    assert status.members == {}, "the script's member left"


def test_line_messages_follows_a_file(mount, group, tmp_path):
    env = env_for(mount)
    env["GROUP"] = group.name
    log = tmp_path / "app.log"
    log.write_text("old line, not sent\n")
    proc = subprocess.Popen(["sh", str(EXAMPLES / "line-messages.sh"), str(log)], env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        assert read_line(proc.stderr, 10).startswith(f"[subscribed to {group.name}/all]")
        time.sleep(1.0)  # tail -F starts at the end of the file
        with open(log, "a") as f:
            f.write("INFO  one\nERROR two\nthr")
            f.flush()
            time.sleep(0.5)  # tail passes "thr" on; it waits in tee's open file for its newline
            f.write("ee\n")
        got = [framed_lines(read_line(proc.stdout, 10))[0]["text"] for _ in range(3)]
        assert got == ["INFO  one", "ERROR two", "three"]
        os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C
        out, err = proc.communicate(timeout=15)
        assert proc.returncode == 0, err
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        stop(proc)
    assert out.strip() == f"{group.name}/all (left)"
    assert "[3 messages in" in err
    assert group.status().members == {}, "Ctrl-C removes the member"


# --- peer_service.py and peer-service.sh ---------------------------------------------

PEER_SERVICES = {
    "python": [sys.executable, str(EXAMPLES / "peer_service.py")],
    "shell": ["sh", str(EXAMPLES / "peer-service.sh")],
}
ASKERS = {"alice": ["hello", "how are you"], "bob": ["good day", "bye"], "carol": ["one", "two", "three"]}


def start_service(mount, group, kind):
    proc = subprocess.Popen(PEER_SERVICES[kind] + ["serve", group.name], env=env_for(mount), stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    line = read_line(proc.stderr, 10)
    assert line.startswith(f"[serving {group.name}: "), line
    return proc


def stop_service(proc):
    """Ctrl-C, and what it printed."""
    try:
        os.killpg(proc.pid, signal.SIGINT)
        out, err = proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        stop(proc)
    return out, err


@pytest.mark.parametrize("kind", sorted(PEER_SERVICES))
def test_peer_service_answers_each_client_privately(mount, group, kind):
    service = start_service(mount, group, kind)
    try:
        assert group.status().group["send_to_peer"] == 1
        clients = {name: subprocess.Popen(PEER_SERVICES[kind] + ["ask", group.name, name, *requests],
                                          env=env_for(mount), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                          stderr=subprocess.PIPE, text=True)
                   for name, requests in ASKERS.items()}
        for name, client in clients.items():
            out, err = client.communicate(timeout=30)
            assert client.returncode == 0, err
            # Each got its own answers, in order, whatever it heard of the others.
            assert out.splitlines() == [r.upper() for r in ASKERS[name]], (name, out, err)
        wait_for(lambda: not os.listdir(group.p("peers")), what="the clients left")
    finally:
        out, err = stop_service(service)
    lines = out.splitlines()
    for name, requests in ASKERS.items():
        mine = [x for x in lines if x.startswith(name + ": ") or x == f"{name} left"]
        assert mine == [f"{name}: {r} -> {r.upper()}" for r in requests] + [f"{name} left"], (name, out)
    if kind == "python":
        assert "[7 requests answered]" in err
    assert group.status().members == {}


def test_peer_service_keeps_reading_while_an_answer_waits_for_room(mount, group):
    """An answer to a client whose queue is full waits in the service's outbox
    until EPOLLOUT: the service does not block on it, and goes on reading."""
    service = start_service(mount, group, "python")
    try:
        group.member("slow", capacity=1)
        assert group.member_status("slow")["send_to_peer"] == 1, "the group default the service set"
        for i in range(3):
            group.send_as("slow", f"request {i}".encode(), nonblock=False)
        # All three read and answered while slow reads nothing: two answers wait.
        assert [read_line(service.stdout, 10).rstrip("\n") for _ in range(3)] == [
            f"slow: request {i} -> REQUEST {i}" for i in range(3)]
        assert group.member_status("slow")["full"] == 1
        got = []
        fd = group.open("frames/slow")
        try:
            while len(got) < 3:
                got += [f.payload for f in mcastfs.read_frames(fd) if f.private]
        finally:
            os.close(fd)
        assert got == [f"REQUEST {i}".encode() for i in range(3)]
        os.unlink(group.p("slow"))
        assert read_line(service.stdout, 10) == "slow left\n"
    finally:
        stop_service(service)


@pytest.mark.parametrize("kind", sorted(PEER_SERVICES))
def test_peer_service_serves_members_that_joined_before_it_and_names_used_again(mount, group, kind):
    group.member("early")  # before the service: it has send_to_peer=0 until the service finds it
    service = start_service(mount, group, kind)
    try:
        wait_for(lambda: group.member_status("early")["send_to_peer"] == 1, what="the service found early")
        group.send_as("early", b"late request\n")
        fd = group.open("frames/early")
        try:
            assert [f.payload for f in mcastfs.read_frames(fd) if f.private] == [b"LATE REQUEST\n"]
        finally:
            os.close(fd)
        os.unlink(group.p("early"))
        for _ in range(2):  # the same name, a new member each time
            res = subprocess.run(PEER_SERVICES[kind] + ["ask", group.name, "again", "x"], env=env_for(mount),
                                 capture_output=True, text=True, timeout=30)
            assert res.returncode == 0 and res.stdout == "X\n", res.stderr
    finally:
        out, _ = stop_service(service)
    assert out.splitlines().count("again: x -> X") == 2


def test_peer_service_client_without_a_service_says_so(mount, group):
    env = env_for(mount)
    env["WAIT"] = "1"
    for kind, extra in (("python", ["-w", "1"]), ("shell", [])):
        res = subprocess.run(PEER_SERVICES[kind] + ["ask", group.name, "lonely", "anyone?"] + extra, env=env,
                             capture_output=True, text=True, timeout=30)
        assert res.returncode == 1 and "no answer in 1" in res.stderr, (kind, res.stderr)
    assert group.status().members == {}, "the client left"
