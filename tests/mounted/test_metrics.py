"""ROOT/.metrics (docs/contract.md, "Metrics").

A read-only file (0444) of the user who mounted, listed by `ls -a ROOT`,
under a name no group can take, holding a snapshot of every group and member
taken at open in the Prometheus text exposition format 0.0.4: the counters
and gauges of `status`, labelled `group` and `member`, with HELP and TYPE
lines, names prefixed `mcastfs_`, counters ending in `_total`. Reported size
0 and direct I/O, as /proc: every reader that reads to end of file gets the
whole snapshot.

Checked with the real tools: promtool (Debian's prometheus package), the
Prometheus text parser of prometheus_client, and the node exporter's textfile
collector (Debian's prometheus-node-exporter), which the tests run on a
loopback port. scripts/install-deps --tests installs all three; without them
these tests fail.
"""

import errno
import os
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import time
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from helpers import RESERVED, Call, Group, expect_errno, is_fuse_mount, read_file, run, sh, unmount_lazily, wait_for

METRICS = ".metrics"

# status key -> metric family, as docs/contract.md's "Metrics" lists them.
GROUP_METRICS = {
    "members": "mcastfs_group_members",
    "sent": "mcastfs_group_sent_messages_total",
    "blocked_writers": "mcastfs_group_blocked_writers",
}
MEMBER_METRICS = {
    "delivered": "mcastfs_member_delivered_messages_total",
    "dropped": "mcastfs_member_dropped_messages_total",
    "queued": "mcastfs_member_queued_messages",
    "queued_bytes": "mcastfs_member_queued_bytes",
    "full": "mcastfs_member_full",
    "capacity": "mcastfs_member_capacity_messages",
    "queue_bytes": "mcastfs_member_capacity_bytes",
}
COUNTERS = {"mcastfs_group_sent_messages_total", "mcastfs_member_delivered_messages_total",
            "mcastfs_member_dropped_messages_total"}
ALL_FAMILIES = {"mcastfs_groups", *GROUP_METRICS.values(), *MEMBER_METRICS.values()}

# Valid names (docs/contract.md, "Names") that the format must escape or
# carry as they are: quote, backslash, braces, comma, equals, hash, non-ASCII.
ODD_GROUP = 'q"uo\\te'
ODD_MEMBER = "é🙂{},=#\\\"x"


def metrics_path(mount) -> str:
    return os.path.join(mount.path, METRICS)


def samples(text: str) -> dict:
    """(sample name, frozenset of labels) -> value, parsed by prometheus_client."""
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            key = (s.name, frozenset(s.labels.items()))
            assert key not in out, f"sample {key} twice"
            out[key] = s.value
    return out


def families(text: str) -> dict:
    """Family name as written in its TYPE line -> (type, help)."""
    types, helps = {}, {}
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ", 3)
            types[name] = kind
        elif line.startswith("# HELP "):
            _, _, name, text_ = line.split(" ", 3)
            helps[name] = text_
    assert types.keys() == helps.keys(), "every family has both HELP and TYPE"
    return {name: (types[name], helps[name]) for name in types}


def group_value(parsed: dict, family: str, group: str):
    return parsed.get((family, frozenset({("group", group)})))


def member_value(parsed: dict, family: str, group: str, member: str):
    return parsed.get((family, frozenset({("group", group), ("member", member)})))


def assert_matches_status(parsed: dict, g: Group):
    st = g.status()
    for key, family in GROUP_METRICS.items():
        assert group_value(parsed, family, g.name) == st.group[key], f"{family} of {g.name!r}: status says {st.group[key]}"
    for name, values in st.members.items():
        for key, family in MEMBER_METRICS.items():
            assert member_value(parsed, family, g.name, name) == values[key], (
                f"{family} of {g.name!r}/{name!r}: status says {values[key]}"
            )


# --- the file ------------------------------------------------------------------


def test_a_read_only_file_of_the_mounting_user(mount):
    st = os.stat(metrics_path(mount))
    assert stat.S_ISREG(st.st_mode)
    assert stat.S_IMODE(st.st_mode) == 0o444
    assert (st.st_uid, st.st_gid) == (os.getuid(), os.getgid())
    assert st.st_size == 0, "size 0, as /proc: a size would describe another snapshot than the one read"
    assert st.st_nlink == 1


def test_listed_by_ls_a_not_by_ls(mount, group):
    assert METRICS in os.listdir(mount.path)
    with os.scandir(mount.path) as entries:
        kinds = {e.name: e.is_file(follow_symlinks=False) for e in entries}
    assert kinds[METRICS] is True, "readdir gives it as a regular file"
    assert kinds[group.name] is False
    assert METRICS in run(["ls", "-a", mount.path]).stdout.split("\n")
    assert METRICS not in run(["ls", mount.path]).stdout.split("\n")


def test_no_group_can_take_the_name(mount):
    path = metrics_path(mount)
    expect_errno(errno.EEXIST, os.mkdir, path)
    expect_errno(errno.EINVAL, os.mkdir, os.path.join(mount.path, ".metrics2"))
    expect_errno(errno.ENOTDIR, os.rmdir, path)
    expect_errno((errno.EPERM, errno.EACCES), os.unlink, path)
    expect_errno(errno.EPERM, os.rename, path, os.path.join(mount.path, "renamed"))
    assert stat.S_ISREG(os.stat(path).st_mode)


def test_writes_truncate_and_chmod_fail_for_root(mount):
    """Root passes the kernel's mode checks (CAP_DAC_OVERRIDE); the daemon
    refuses it as the mode says (EACCES), and its mode, owner and times are
    fixed (EPERM)."""
    path = metrics_path(mount)
    for flags in (os.O_WRONLY, os.O_RDWR, os.O_WRONLY | os.O_TRUNC, os.O_WRONLY | os.O_APPEND):
        expect_errno(errno.EACCES, os.open, path, flags)
    expect_errno(errno.EACCES, os.truncate, path, 0)
    assert sh(f"echo x > '{path}'").returncode != 0
    expect_errno(errno.EPERM, os.chmod, path, 0o644)
    expect_errno(errno.EPERM, os.chown, path, 65534, 65534)
    expect_errno(errno.EPERM, os.utime, path, (0, 0))
    st = os.stat(path)
    assert stat.S_IMODE(st.st_mode) == 0o444 and st.st_uid == os.getuid()
    fd = os.open(path, os.O_RDONLY)
    try:
        expect_errno(errno.EBADF, os.write, fd, b"x")
        expect_errno((errno.EINVAL, errno.EBADF), os.ftruncate, fd, 0)
    finally:
        os.close(fd)


@pytest.fixture(scope="module")
def shared_mount(module_mount_factory):
    """A mount by root with allow_other, for uid 65534 to try."""
    return module_mount_factory(options="allow_other")


def test_other_users_read_it_and_nothing_else(shared_mount, as_nobody):
    path = metrics_path(shared_mount)
    assert as_nobody("stat", path).out == "mode=444 uid=0 gid=0 type=reg"
    assert METRICS in as_nobody("ls", shared_mount.path).out.split("/")
    read = as_nobody("read", path)
    assert read.ok and bytes.fromhex(read.out).startswith(b"# HELP mcastfs_")
    for mode in ("w", "rw"):
        res = as_nobody("open", path, mode)
        assert not res.ok and res.errno == errno.EACCES, res
    res = as_nobody("chmod", path, "644")
    assert not res.ok and res.errno == errno.EPERM, res
    res = as_nobody("mkdir", path, "755")
    assert not res.ok and res.errno == errno.EEXIST, res


def test_owned_by_the_daemons_user_and_group(mcastfs_bin, workdir_base):
    """The owner is whoever runs the daemon. A non-root user cannot mount
    here (/dev/fuse is root's alone in this container, and mcastfs checks
    that it may open it), so root mounts with another group (setpriv
    --regid): .metrics takes that group, as the root directory does."""
    mnt = tempfile.mkdtemp(prefix="regid-", dir=workdir_base)
    proc = subprocess.Popen(["setpriv", "--regid=65534", "--clear-groups", "--", mcastfs_bin, mnt, "-f"],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True)
    try:
        wait_for(lambda: is_fuse_mount(mnt) or proc.poll() is not None, timeout=15, what="the mount")
        assert proc.poll() is None, proc.stderr.read().decode()
        # Without allow_other only the daemon's own uid and gid get in.
        res = run(["setpriv", "--regid=65534", "--clear-groups", "--", "stat", "-c", "%u %g %a %F",
                   os.path.join(mnt, METRICS), mnt])
        assert res.returncode == 0, res.stderr
        assert res.stdout.splitlines() == ["0 65534 444 regular empty file", "0 65534 755 directory"]
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        unmount_lazily(mnt)
        os.rmdir(mnt)
    assert proc.returncode == 0


# --- the content -----------------------------------------------------------------


def test_every_family_with_help_and_type(mount):
    text = read_file(metrics_path(mount)).decode()
    fams = families(text)
    assert ALL_FAMILIES <= fams.keys()
    for name, (kind, help_) in fams.items():
        assert name.startswith("mcastfs_"), name
        assert kind in ("counter", "gauge"), (name, kind)
        assert (kind == "counter") == name.endswith("_total"), f"{name} is a {kind}: counters, and only they, end in _total"
        assert help_.strip(), name
    assert {n for n, (k, _) in fams.items() if k == "counter"} == COUNTERS
    assert text.endswith("\n")


def test_content_matches_status_for_groups_and_members_with_odd_names(mount, new_group):
    chat = new_group(prefix="chat")
    chat.member("alice")
    chat.member("bob", drop_when_full=1, capacity=1)
    for i in range(3):
        chat.send(f"m{i}".encode())
    assert chat.take("alice")[:1] == [b"m0"]
    odd = mount.group(ODD_GROUP)
    try:
        odd.member(ODD_MEMBER, loopback=1)
        odd.member("ünïcödé")
        odd.send_as(ODD_MEMBER, b"hello")
        empty = new_group(prefix="empty")
        parsed = samples(read_file(metrics_path(mount)).decode())
        for g in (chat, odd, empty):
            assert_matches_status(parsed, g)
        assert member_value(parsed, "mcastfs_member_dropped_messages_total", chat.name, "bob") == 2
        assert member_value(parsed, "mcastfs_member_full", chat.name, "bob") == 1
        assert member_value(parsed, "mcastfs_member_queued_messages", ODD_GROUP, ODD_MEMBER) == 1
        assert group_value(parsed, "mcastfs_group_members", empty.name) == 0
        assert parsed[("mcastfs_groups", frozenset())] == len([n for n in os.listdir(mount.path) if n != METRICS])
    finally:
        for name in os.listdir(odd.path):
            if name not in RESERVED:
                os.unlink(odd.p(name))
        os.rmdir(odd.path)


def test_label_values_escaped_in_the_file_itself(mount):
    g = mount.group(ODD_GROUP)
    try:
        g.member(ODD_MEMBER)
        text = read_file(metrics_path(mount)).decode()
        assert 'mcastfs_group_sent_messages_total{group="q\\"uo\\\\te"} 0\n' in text
        assert 'mcastfs_member_full{group="q\\"uo\\\\te",member="é🙂{},=#\\\\\\"x"} 0\n' in text
    finally:
        os.unlink(g.p(ODD_MEMBER))
        os.rmdir(g.path)


def test_names_that_are_not_utf8_never_reach_the_file(mount):
    """Names are UTF-8 (docs/contract.md, "Names"): the label values are
    always valid text, as the format requires."""
    expect_errno(errno.EINVAL, os.mkdir, os.path.join(os.fsencode(mount.path), b"bad\xff"))
    read_file(metrics_path(mount)).decode("utf-8")


def test_blocked_writers_counted(mount, group):
    group.member("slow")
    group.fill("slow", capacity=1)
    writer = Call(group.send, b"waits", False)
    try:
        wait_for(lambda: group.status().group["blocked_writers"] == 1, what="a blocked writer")
        parsed = samples(read_file(metrics_path(mount)).decode())
        assert group_value(parsed, "mcastfs_group_blocked_writers", group.name) == 1
        assert_matches_status(parsed, group)
    finally:
        group.take("slow")
    writer.result(5)


# --- a snapshot at open -------------------------------------------------------------


def test_one_open_is_one_snapshot_read_piecewise_and_at_offsets(mount, group):
    group.member("m")
    group.send(b"before")
    fd = os.open(metrics_path(mount), os.O_RDONLY)
    try:
        first = os.read(fd, 100)
        for _ in range(5):
            group.send(b"after")  # not in this open's snapshot
        rest = b""
        while chunk := os.read(fd, 7):
            rest += chunk
        whole = first + rest
        parsed = samples(whole.decode())
        assert group_value(parsed, "mcastfs_group_sent_messages_total", group.name) == 1
        assert member_value(parsed, "mcastfs_member_queued_messages", group.name, "m") == 1
        assert os.pread(fd, 50, 10) == whole[10:60]
        assert os.lseek(fd, 0, os.SEEK_SET) == 0
        assert os.read(fd, len(whole) + 4096) == whole
        assert os.read(fd, 10) == b"", "end of file after the snapshot"
    finally:
        os.close(fd)
    again = samples(read_file(metrics_path(mount)).decode())
    assert group_value(again, "mcastfs_group_sent_messages_total", group.name) == 6


def test_consistent_while_traffic_flows(mount, new_group):
    """Many groups, a file larger than one read, senders busy: every open
    gives a well-formed file whose members never have delivered > sent."""
    groups = [new_group(prefix="busy") for _ in range(60)]
    for g in groups:
        for m in ("a", "b", "c"):
            g.member(m, drop_when_full=1)

    stop = time.monotonic() + 3.0

    def churn():
        n = 0
        while time.monotonic() < stop:
            for g in groups:
                g.send(b"x" * 100)
                n += 1
        return n

    sender = Call(churn)
    reads = 0
    while not sender.done():
        text = read_file(metrics_path(mount)).decode()
        assert len(text) > 65536, "more than one read request"
        parsed = samples(text)
        for g in groups:
            sent = group_value(parsed, "mcastfs_group_sent_messages_total", g.name)
            for m in ("a", "b", "c"):
                delivered = member_value(parsed, "mcastfs_member_delivered_messages_total", g.name, m)
                dropped = member_value(parsed, "mcastfs_member_dropped_messages_total", g.name, m)
                assert delivered + dropped == sent, f"{g.name}/{m}: one group's lines are one snapshot"
        reads += 1
    assert sender.result(10) > 0 and reads > 0


# --- readers ---------------------------------------------------------------------------


def test_readers_get_the_whole_file(mount, group, tmp_path):
    """cat, cp, Python open().read(), curl file:// and a 1-byte reader (dd
    bs=1) all read to end of file; the snapshots are the same while nothing
    changes."""
    group.member("m")
    path = metrics_path(mount)
    reference = read_file(path)
    assert run(["cat", path]).stdout.encode() == reference
    with open(path) as f:
        assert f.read().encode() == reference
    with open(path, "rb", buffering=0) as f:
        assert f.readall() == reference
    res = subprocess.run(["curl", "-sS", f"file://{path}"], capture_output=True, timeout=10)
    assert res.returncode == 0 and res.stdout == reference, res.stderr
    res = subprocess.run(["dd", f"if={path}", "bs=1", "status=none"], capture_output=True, timeout=30)
    assert res.returncode == 0 and res.stdout == reference
    assert run(["cp", path, str(tmp_path / "copy")]).returncode == 0
    assert (tmp_path / "copy").read_bytes() == reference


def test_promtool_check_metrics(mount, new_group):
    """`promtool check metrics` (the linter CI runs): no error, no warning,
    with groups and members of odd names and without any group."""
    promtool = shutil.which("promtool")
    assert promtool, "promtool is missing: scripts/install-deps --tests installs Debian's prometheus package"
    g = mount.group(ODD_GROUP)
    try:
        g.member(ODD_MEMBER)
        new_group().member("plain")
        text = read_file(metrics_path(mount))
        res = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, timeout=30)
        assert res.returncode == 0 and res.stdout.strip() == b"" and res.stderr.strip() == b"", (res.stdout, res.stderr)
    finally:
        os.unlink(g.p(ODD_MEMBER))
        os.rmdir(g.path)


def test_promtool_on_a_mount_without_groups(mount_factory):
    m = mount_factory()
    text = read_file(metrics_path(m))
    assert b"\nmcastfs_groups 0\n" in text
    res = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, timeout=30)
    assert res.returncode == 0 and res.stdout.strip() == b"" and res.stderr.strip() == b"", (res.stdout, res.stderr)


def test_scraped_as_the_textfile_collector_wants_it(mount, group, tmp_path):
    """The README's one-line scrape: copy to a temporary name in the
    collector's directory and rename, so that a reader never sees half a
    file; then parse it as Prometheus would."""
    group.member("m")
    group.send(b"one")
    textfile_dir = tmp_path / "textfile"
    textfile_dir.mkdir()
    line = f"cat '{metrics_path(mount)}' > '{textfile_dir}/mcastfs.prom.$$' && mv '{textfile_dir}/mcastfs.prom.$$' '{textfile_dir}/mcastfs.prom'"
    assert sh(line).returncode == 0
    assert sorted(os.listdir(textfile_dir)) == ["mcastfs.prom"]
    parsed = samples((textfile_dir / "mcastfs.prom").read_text())
    assert member_value(parsed, "mcastfs_member_delivered_messages_total", group.name, "m") == 1
    assert_matches_status(parsed, group)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def scrape_node_exporter(textfile_dir) -> str:
    """Runs Debian's node exporter with only the textfile collector, on a
    loopback port, and returns one scrape of /metrics."""
    exporter = shutil.which("prometheus-node-exporter") or shutil.which("node_exporter")
    assert exporter, "the node exporter is missing: scripts/install-deps --tests installs prometheus-node-exporter"
    port = free_port()
    proc = subprocess.Popen(
        [exporter, "--collector.disable-defaults", "--collector.textfile",
         f"--collector.textfile.directory={textfile_dir}", f"--web.listen-address=127.0.0.1:{port}"],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        def scrape():
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
                    return r.read().decode()
            except OSError:
                assert proc.poll() is None, proc.stderr.read().decode()
                return None
        return wait_for(scrape, timeout=15, interval=0.1, what="the node exporter")
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def test_the_node_exporter_textfile_collector_serves_it(mount, group, tmp_path):
    """What Prometheus would scrape: the textfile collector reads the copy,
    and a symlink to .metrics itself, live, with no scrape error."""
    group.member("m")
    group.send(b"one")
    copied = tmp_path / "copied"
    copied.mkdir()
    assert sh(f"cat '{metrics_path(mount)}' > '{copied}/mcastfs.prom.$$' && mv '{copied}/mcastfs.prom.$$' '{copied}/mcastfs.prom'").returncode == 0
    linked = tmp_path / "linked"
    linked.mkdir()
    os.symlink(metrics_path(mount), linked / "mcastfs.prom")
    for where in (copied, linked):
        text = scrape_node_exporter(where)
        parsed = samples(text)
        assert parsed.get(("node_textfile_scrape_error", frozenset())) == 0, text[-2000:]
        assert member_value(parsed, "mcastfs_member_delivered_messages_total", group.name, "m") == 1, where
        assert group_value(parsed, "mcastfs_group_sent_messages_total", group.name) == 1, where
