"""The Go, Rust, Node.js, Java, Ruby and Perl examples of examples/ (see
docs/clients.md), built with the toolchains on the machine and run against a
real mount, their output checked.

Every language's subscriber and publisher take the arguments of
subscriber.py and publisher.py and print the same lines, so one set of tests
runs them all. The builds (go build, rustc, javac) are cached in a directory
of the system's temp dir, keyed by the sources and the compiler's version. A
missing toolchain fails these tests, never skips them
(`scripts/install-deps --tests` installs what is missing). The last tests
check facts of docs/clients.md that rest on mcastfs itself.
"""

import hashlib
import os
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pytest

from helpers import Group, read_line, run, wait_for

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"
CACHE = Path(tempfile.gettempdir()) / f"mcastfs-client-examples-{os.getuid()}"

LANGS = ["go", "rust", "node", "java", "ruby", "perl"]
# What Ctrl-C leaves: the exit status (the JVM's is 128 + SIGINT after its
# shutdown hooks). Rust's std cannot catch a signal, so its subscriber is not
# in this table (docs/clients.md says so).
CTRL_C_STATUS = {"go": 0, "node": 0, "java": 130, "ruby": 0, "perl": 0}

_built: dict[str, tuple[list[str], list[str]]] = {}
_build_lock = threading.Lock()


def tool(name: str, *fallbacks: Path) -> str:
    found = shutil.which(name) or next((str(p) for p in fallbacks if os.access(p, os.X_OK)), None)
    if found is None:
        pytest.fail(f"{name} is not installed (scripts/install-deps --tests): the client example tests never skip",
                    pytrace=False)
    return found


def version(cmd: list[str]) -> str:
    res = run(cmd, timeout=60)
    return res.stdout + res.stderr


def cached_build(lang: str, sources: list[Path], compiler_version: str, build) -> Path:
    """build(out_dir) into CACHE/LANG-HASH unless a finished build is there."""
    digest = hashlib.sha256(compiler_version.encode())
    for s in sources:
        digest.update(s.name.encode() + b"\0" + s.read_bytes())
    out = CACHE / f"{lang}-{digest.hexdigest()[:16]}"
    if out.is_dir():
        return out
    CACHE.mkdir(mode=0o700, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f"{lang}-", dir=CACHE))
    res = build(tmp)
    if res.returncode != 0:
        shutil.rmtree(tmp, ignore_errors=True)
        pytest.fail(f"building the {lang} examples failed:\n{res.stdout}{res.stderr}", pytrace=False)
    try:
        tmp.rename(out)
    except OSError:  # another run finished the same build first
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def build_go():
    go = tool("go")
    sources = [EXAMPLES / "subscriber.go", EXAMPLES / "publisher.go"]
    env = {**os.environ, "GOCACHE": str(CACHE / "go-cache"), "GOPATH": str(CACHE / "go-path"), "GOENV": "off",
           "GOFLAGS": ""}

    def build(out):
        for s in sources:
            res = run([go, "build", "-o", str(out / s.stem), s.name], cwd=EXAMPLES, env=env, timeout=300)
            if res.returncode != 0:
                return res
        return res

    out = cached_build("go", sources, version([go, "version"]), build)
    return [str(out / "subscriber")], [str(out / "publisher")]


def build_rust():
    home = Path(os.environ.get("CARGO_HOME", Path.home() / ".cargo"))
    rustc = tool("rustc", home / "bin" / "rustc", Path("/root/.cargo/bin/rustc"))
    sources = [EXAMPLES / "subscriber.rs", EXAMPLES / "publisher.rs"]

    def build(out):
        for s in sources:
            # A debug build: a few seconds for both, where -O takes longer than the tests.
            res = run([rustc, "--edition", "2021", "-D", "warnings", "-o", str(out / s.stem), str(s)], timeout=300)
            if res.returncode != 0:
                return res
        return res

    out = cached_build("rust", sources, version([rustc, "--version"]), build)
    return [str(out / "subscriber")], [str(out / "publisher")]


def build_java():
    javac, java = tool("javac"), tool("java")
    sources = [EXAMPLES / "Subscriber.java", EXAMPLES / "Publisher.java"]
    out = cached_build("java", sources, version([javac, "-version"]), lambda out: run(
        [javac, "-Xlint:all", "-Werror", "-d", str(out), *map(str, sources)], timeout=300))
    return [java, "-cp", str(out), "Subscriber"], [java, "-cp", str(out), "Publisher"]


def scripts(interpreter: str, ext: str):
    exe = tool(interpreter)
    return [exe, str(EXAMPLES / f"subscriber.{ext}")], [exe, str(EXAMPLES / f"publisher.{ext}")]


BUILDERS = {
    "go": build_go,
    "rust": build_rust,
    "node": lambda: scripts("node", "js"),
    "java": build_java,
    "ruby": lambda: scripts("ruby", "rb"),
    "perl": lambda: scripts("perl", "pl"),
}


def commands(lang: str) -> tuple[list[str], list[str]]:
    with _build_lock:
        if lang not in _built:
            _built[lang] = BUILDERS[lang]()
        return _built[lang]


def subscriber(lang, mount, *args) -> list[str]:
    return [*commands(lang)[0], "-m", mount.path, *args]


def publisher(lang, mount, *args) -> list[str]:
    return [*commands(lang)[1], "-m", mount.path, *args]


def start(cmd) -> subprocess.Popen:
    # A session of its own, as a terminal's job: Ctrl-C goes to the group
    # (Node's reader children included), and stop() can end all of it.
    return subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)


def stop(proc: subprocess.Popen):
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    try:
        proc.communicate(timeout=5)
    except (subprocess.TimeoutExpired, ValueError):
        pass


def subscribed(proc, specs, timeout=20.0):
    line = read_line(proc.stderr, timeout)
    assert line.rstrip("\n") == f"[subscribed to {' '.join(specs)}]", line


def lines(proc, n, timeout=10.0) -> list[str]:
    return [read_line(proc.stdout, timeout).rstrip("\n") for _ in range(n)]


def ended(proc, timeout=15.0) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, err


# --- without a mount ----------------------------------------------------------


@pytest.mark.timeout(600)
@pytest.mark.parametrize("lang", LANGS)
def test_examples_build_or_parse_without_warnings(lang):
    sub, pub = commands(lang)  # go build, rustc -D warnings, javac -Werror
    checks = {"node": ["--check"], "ruby": ["-wc"], "perl": ["-wc"]}
    if lang in checks:
        for cmd in (sub, pub):
            res = run([cmd[0], *checks[lang], cmd[1]], timeout=30)
            assert res.returncode == 0 and "warning" not in res.stderr.lower(), res.stderr
    if lang in ("go", "rust"):
        assert os.access(sub[0], os.X_OK) and os.access(pub[0], os.X_OK)
    if lang == "java":
        assert (Path(sub[2]) / "Subscriber.class").exists() and (Path(pub[2]) / "Publisher.class").exists()


@pytest.mark.parametrize("name", ["subscriber.go", "publisher.go", "subscriber.rs", "publisher.rs",
                                  "subscriber.js", "publisher.js", "Subscriber.java", "Publisher.java",
                                  "subscriber.rb", "publisher.rb", "subscriber.pl", "publisher.pl"])
def test_each_example_opens_with_what_it_shows_and_its_output(name):
    text = (EXAMPLES / name).read_text()
    head = text[:4000]
    assert "What it shows:" in head, name
    assert "usage:" in head, name
    assert re.search(r"\[subscribed to |published \d+ messages to ", head), f"{name} shows no output"


# --- subscribers ----------------------------------------------------------------


@pytest.mark.parametrize("lang", LANGS)
def test_subscriber_reads_whole_messages_until_the_members_leave(mount, group, lang):
    group.member("x")
    group.member("y")
    x, y = f"{group.name}/x", f"{group.name}/y"
    proc = start(subscriber(lang, mount, "-t", "30", x, y))
    try:
        subscribed(proc, [x, y])
        group.send(b"both\n")
        group.send_as("x", b"from x")  # not to x itself
        assert sorted(lines(proc, 3)) == sorted([f"{x}: both", f"{y}: both", f"{y}: from x"])
        os.unlink(group.p("x"))
        assert lines(proc, 1) == [f"{x}: (left)"]
        big = b"B" * 1_044_480
        group.send(big)
        assert lines(proc, 1) == [f"{y}: " + "B" * 1_044_480], "the largest message in one read"
        os.unlink(group.p("y"))
        assert lines(proc, 1) == [f"{y}: (left)"]
        code, out, err = ended(proc)
        assert code == 0, err
        assert out == ""
    finally:
        stop(proc)


@pytest.mark.parametrize("lang", LANGS)
def test_subscriber_stops_after_count_and_leaves_the_rest_queued(mount, group, lang):
    group.member("m")
    for i in range(5):
        group.send(f"n{i}".encode())
    proc = start(subscriber(lang, mount, "-n", "3", f"{group.name}/m"))
    try:
        code, out, err = ended(proc, 30)
        assert code == 0, err
    finally:
        stop(proc)
    assert out.splitlines() == [f"{group.name}/m: n{i}" for i in range(3)]
    assert group.take("m") == [b"n3", b"n4"], "it read no further than it printed"


@pytest.mark.parametrize("lang", LANGS)
def test_subscriber_creates_its_member_and_leaves_after_the_timeout(mount, lang):
    g = Group(mount.path, f"create-{lang}-{os.getpid()}")
    spec = f"{g.name}/me"
    proc = start(subscriber(lang, mount, "--create", "-t", "1", spec))
    try:
        subscribed(proc, [spec])
        assert "me" in g.status().members
        g.send(b"first\n")
        assert lines(proc, 1) == [f"{spec}: first"]
        t0 = time.monotonic()
        code, out, err = ended(proc, 15)
        assert code == 0, err
        assert time.monotonic() - t0 < 10, "the blocked read was ended after 1 s without a message"
        assert "me" not in g.status().members, "it removed the member it made"
    finally:
        stop(proc)
    os.rmdir(g.p())


@pytest.mark.parametrize("lang", sorted(CTRL_C_STATUS))
def test_subscriber_ends_on_ctrl_c_and_leaves(mount, lang):
    g = Group(mount.path, f"ctrlc-{lang}-{os.getpid()}")
    spec = f"{g.name}/me"
    proc = start(subscriber(lang, mount, "--create", spec))
    try:
        subscribed(proc, [spec])
        g.send(b"one\n")
        assert lines(proc, 1) == [f"{spec}: one"]
        time.sleep(0.3)  # back in its wait for the next message
        os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C reaches the whole job
        code, out, err = ended(proc, 15)
        assert code == CTRL_C_STATUS[lang], err
        assert "me" not in g.status().members, "Ctrl-C removed the member it made"
    finally:
        stop(proc)
    os.rmdir(g.p())


@pytest.mark.parametrize("lang", LANGS)
def test_subscriber_is_not_held_up_by_idle_members(mount, new_group, lang):
    # Five members that get nothing, then one that does. A subscriber that
    # waited in a pool of four threads (Node's fs.read) would never read it.
    quiet, live = new_group(prefix="quiet"), new_group(prefix="live")
    specs = []
    for i in range(5):
        quiet.member(f"q{i}")
        specs.append(f"{quiet.name}/q{i}")
    live.member("m")
    specs.append(f"{live.name}/m")
    proc = start(subscriber(lang, mount, "-t", "30", *specs))
    try:
        subscribed(proc, specs)
        time.sleep(0.3)
        live.send(b"hello\n")
        assert lines(proc, 1, timeout=5) == [f"{live.name}/m: hello"]
        os.unlink(live.p("m"))
        assert lines(proc, 1) == [f"{live.name}/m: (left)"]
        for i in range(5):
            os.unlink(quiet.p(f"q{i}"))
        left = lines(proc, 5)
        assert sorted(left) == sorted(f"{s}: (left)" for s in specs[:5]), (left, ended(proc))
        code, _, err = ended(proc)
        assert code == 0, err
    finally:
        stop(proc)


# --- publishers -------------------------------------------------------------------


def published(out: str, n: int, what: str, dest: str):
    assert re.fullmatch(rf"published {n} {what} to {re.escape(dest)} in [0-9]+\.[0-9]{{2}} s\n", out), out


@pytest.mark.parametrize("lang", LANGS)
def test_publisher_sends_one_message_per_write(mount, group, lang):
    group.member("m")
    res = run(publisher(lang, mount, "-n", "5", group.name, "word"), timeout=30)
    assert res.returncode == 0, res.stderr
    published(res.stdout, 5, "messages", f"{group.name}/send")
    assert group.take("m") == [f"word {i}".encode() for i in range(5)]


@pytest.mark.parametrize("lang", LANGS)
def test_publisher_as_a_member(mount, group, lang):
    group.member("alice")
    group.member("bob")
    res = run(publisher(lang, mount, "-n", "3", "--as", "alice", group.name, "hi"), timeout=30)
    assert res.returncode == 0, res.stderr
    published(res.stdout, 3, "messages", f"{group.name}/alice")
    assert group.take("bob") == [b"hi 0", b"hi 1", b"hi 2"]
    assert group.take("alice") == [], "no loopback"


@pytest.mark.parametrize("lang", LANGS)
def test_publisher_of_a_missing_member_fails_and_makes_none(mount, group, lang):
    group.member("bob")
    res = run(publisher(lang, mount, "-n", "1", "--as", "nobody", group.name), timeout=30)
    assert res.returncode != 0
    assert "nobody" in res.stderr
    assert set(group.status().members) == {"bob"}, "the open did not create a member"
    assert group.take("bob") == []


@pytest.mark.parametrize("lang", LANGS)
def test_publisher_buffered_lines_are_one_message_each(mount, group, lang):
    n = 300  # more than one 4 KiB buffer of lines
    group.member("m", capacity=n)
    res = run(publisher(lang, mount, "--lines", "-n", str(n), group.name, "line"), timeout=30)
    assert res.returncode == 0, res.stderr
    published(res.stdout, n, "lines", f"{group.name}/send")
    status = group.status()
    assert status.group["message"] == "line"
    assert status.group["sent"] == n
    assert group.take("m") == [f"line {i}\n".encode() for i in range(n)]


@pytest.mark.parametrize("lang", LANGS)
def test_publisher_waits_for_a_full_member_and_loses_nothing(mount, group, lang):
    group.member("slow", capacity=1)
    group.member("fast")
    n = 30
    got = []

    def slow_reader():
        fd = group.open("slow")
        try:
            while len(got) < n:
                got.append(os.read(fd, 100))
                time.sleep(0.01)
        finally:
            os.close(fd)

    reader = threading.Thread(target=slow_reader, daemon=True)
    reader.start()
    res = run(publisher(lang, mount, "-n", str(n), group.name, "tick"), timeout=60)
    assert res.returncode == 0, res.stderr
    reader.join(30)
    expected = [f"tick {i}".encode() for i in range(n)]
    assert got == expected
    assert group.take("fast") == expected
    wait_for(lambda: group.status().group["blocked_writers"] == 0, what="no writer left waiting")


# --- facts docs/clients.md builds on ------------------------------------------------


def test_docs_name_only_examples_that_exist():
    doc = (REPO / "docs" / "clients.md").read_text()
    named = set(re.findall(r"examples/([A-Za-z_.-]+\.[a-z]+)", doc))
    assert named, "docs/clients.md points at the examples"
    assert {n for n in named if not (EXAMPLES / n).exists()} == set()
    for lang_file in ("subscriber.go", "publisher.rs", "subscriber.js", "Publisher.java", "subscriber.rb",
                      "publisher.pl"):
        assert lang_file in doc


def test_sendfile_into_a_line_group_sends_every_line(group, tmp_path):
    # Every runtime's copy call (shutil.copyfile, io::copy, IO.copy_stream,
    # FileChannel.transferTo) is sendfile: 64 KiB and then EMSGSIZE in the
    # record view, the whole file with line messages.
    group.set(message="line", capacity=30_000)
    group.member("m")
    n = 20_000
    src = tmp_path / "lines"
    src.write_text("".join(f"{i}\n" for i in range(n)))
    size = src.stat().st_size
    assert size > 65_536 * 1.5
    fd_in = os.open(src, os.O_RDONLY)
    fd_out = os.open(group.p("send"), os.O_WRONLY)
    try:
        sent = 0
        while sent < size:
            k = os.sendfile(fd_out, fd_in, None, size - sent)
            assert k > 0
            sent += k
    finally:
        os.close(fd_in)
        os.close(fd_out)
    assert group.take("m", 100) == [f"{i}\n".encode() for i in range(n)]


def test_bash_read_t_polls_a_member_but_does_not_time_out_on_it(group):
    group.member("m")
    script = f"""
        exec 3<{group.p("m")}
        read -t 0 -u 3; echo "empty: $?"
        echo hi > {group.p("send")}
        read -t 0 -u 3; echo "queued: $?"
        read -r -u 3 line; echo "read: $line"
        exec 4< <(exec cat {group.p("m")})
        read -r -t 0.2 -u 4 line; echo "on a pipe: $?"
        read -r -t 0.2 -u 3 line; echo "not reached"
    """
    res = subprocess.run(["timeout", "2", "bash", "-c", script], capture_output=True, text=True, timeout=10)
    # The last read ignores its -t on the regular file and waits until timeout(1) ends bash.
    assert res.returncode == 124, res.stderr
    assert res.stdout.splitlines() == ["empty: 1", "queued: 0", "read: hi", "on a pipe: 142"]
