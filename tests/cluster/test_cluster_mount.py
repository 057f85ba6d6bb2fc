"""Groups across hosts, mounted: several mcastfs daemons, each its own node,
on nats-servers started on loopback (docs/contract.md, "Groups across hosts";
docs/cluster.md). Real processes do real syscalls on every mount point."""

import errno
import os
import signal
import threading
import time

import pytest

from helpers import wait_for  # the mounted suites' helpers (tests/lib/mcastfs_pytest.py puts them on the path)


def wait_until(predicate, timeout=3.0):
    try:
        wait_for(predicate, timeout=timeout)
        return True
    except AssertionError:
        return False


def node_mount(mount_factory, nats, node, extra=""):
    options = f"cluster={nats.cluster_option},node={node},cluster_timeout=2"
    return mount_factory(options=options + ("," + extra if extra else ""))


@pytest.fixture
def two_nodes(nats_server, mount_factory):
    return node_mount(mount_factory, nats_server, "a"), node_mount(mount_factory, nats_server, "b")


def appears(path, timeout=3.0):
    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def vanishes(path, timeout=3.0):
    deadline = time.monotonic() + timeout
    while os.path.exists(path):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def status_lines(group_dir):
    with open(os.path.join(group_dir, "status")) as f:
        return f.read().splitlines()


def member_line(group_dir, name):
    for line in status_lines(group_dir):
        words = line.split()
        if words[:2] == ["member", name]:
            return dict(w.split("=", 1) for w in words[2:])
    return None


def group_line(group_dir):
    words = status_lines(group_dir)[0].split()
    assert words[0] == "group", words
    return dict(w.split("=", 1) for w in words[2:])


def read_n(path, n, timeout=10.0):
    """n messages from a member file, blocking reads in a thread with a deadline."""
    got = []
    fd = os.open(path, os.O_RDONLY)
    done = threading.Event()

    def reader():
        try:
            while len(got) < n:
                got.append(os.read(fd, 65536))
        finally:
            done.set()

    t = threading.Thread(target=reader, daemon=True)
    t.start()
    done.wait(timeout)
    os.close(fd) if done.is_set() else None
    return got


class TestGroupsAreClusterWide:
    def test_a_group_made_on_one_node_appears_on_the_other_within_a_second(self, two_nodes):
        a, b = two_nodes
        os.mkdir(os.path.join(a.path, "chat"), 0o750)
        start = time.monotonic()
        assert appears(os.path.join(b.path, "chat"), timeout=2.0)
        took = time.monotonic() - start
        assert took < 1.5, took
        # Owner, mode and settings are the same everywhere.
        sa, sb = os.stat(os.path.join(a.path, "chat")), os.stat(os.path.join(b.path, "chat"))
        assert (sb.st_mode & 0o7777, sb.st_uid, sb.st_gid) == (sa.st_mode & 0o7777, sa.st_uid, sa.st_gid)
        assert status_lines(os.path.join(b.path, "chat"))[0] == status_lines(os.path.join(a.path, "chat"))[0]

    def test_mkdir_of_a_name_taken_on_another_node_is_EEXIST(self, two_nodes):
        a, b = two_nodes
        os.mkdir(os.path.join(a.path, "taken"))
        # b may not have heard yet: its mkdir must still be refused.
        with pytest.raises(FileExistsError):
            os.mkdir(os.path.join(b.path, "taken"))

    def test_rmdir_on_either_node_removes_it_everywhere(self, two_nodes):
        a, b = two_nodes
        os.mkdir(os.path.join(a.path, "brief"))
        assert appears(os.path.join(b.path, "brief"))
        os.rmdir(os.path.join(b.path, "brief"))
        assert vanishes(os.path.join(a.path, "brief"))

    def test_settings_set_on_one_node_apply_on_the_other(self, two_nodes):
        a, b = two_nodes
        os.mkdir(os.path.join(a.path, "tuned"))
        assert appears(os.path.join(b.path, "tuned"))
        with open(os.path.join(a.path, "tuned", "ctl"), "w") as f:
            f.write("set capacity=7 send=members")
        assert wait_until(lambda: "capacity=7" in status_lines(os.path.join(b.path, "tuned"))[0], timeout=3)
        assert "send=members" in status_lines(os.path.join(b.path, "tuned"))[0]

    def test_groups_outlive_the_daemons(self, nats_server, mount_factory):
        a = node_mount(mount_factory, nats_server, "a")
        os.mkdir(os.path.join(a.path, "kept"))
        assert a.stop() == 0
        b = node_mount(mount_factory, nats_server, "b")
        assert os.path.isdir(os.path.join(b.path, "kept"))


class TestMembers:
    def test_a_member_name_is_unique_across_nodes(self, two_nodes):
        a, b = two_nodes
        os.mkdir(os.path.join(a.path, "g"))
        assert appears(os.path.join(b.path, "g"))
        open(os.path.join(a.path, "g", "alice"), "w").close()
        with pytest.raises(OSError) as refused:
            os.close(os.open(os.path.join(b.path, "g", "alice"), os.O_CREAT | os.O_WRONLY, 0o644))
        assert refused.value.errno == errno.EEXIST
        # The refused name left nothing behind on b.
        assert "alice" not in os.listdir(os.path.join(b.path, "g"))

    def test_status_lists_every_member_with_its_node(self, two_nodes):
        a, b = two_nodes
        os.mkdir(os.path.join(a.path, "g"))
        assert appears(os.path.join(b.path, "g"))
        open(os.path.join(a.path, "g", "alice"), "w").close()
        open(os.path.join(b.path, "g", "bob"), "w").close()

        def both_seen(path):
            alice, bob = member_line(path, "alice"), member_line(path, "bob")
            return alice is not None and bob is not None and alice["node"] == "a" and bob["node"] == "b"

        assert wait_until(lambda: both_seen(os.path.join(a.path, "g")), timeout=3)
        assert wait_until(lambda: both_seen(os.path.join(b.path, "g")), timeout=3)
        assert "members=2" in status_lines(os.path.join(a.path, "g"))[0]

    def test_status_shows_the_counters_other_nodes_report(self, two_nodes):
        """docs/contract.md, "Groups across hosts": another node's members
        appear with the counters their node last reported (heartbeats, every
        cluster_timeout / 5 = 0.4 s here)."""
        a, b = two_nodes
        os.mkdir(os.path.join(a.path, "counted"))
        assert appears(os.path.join(b.path, "counted"))
        gb = os.path.join(b.path, "counted")
        open(os.path.join(gb, "bob"), "w").close()
        open(os.path.join(gb, "carol"), "w").close()
        with open(os.path.join(gb, "ctl"), "w") as ctl:
            ctl.write("member carol capacity=2 drop_when_full=1\n")
        ga = os.path.join(a.path, "counted")
        assert wait_until(lambda: member_line(ga, "carol") is not None and member_line(ga, "carol")["capacity"] == "2", timeout=3)
        with open(os.path.join(ga, "send"), "wb", buffering=0) as out:
            for i in range(5):
                out.write(b"m%d" % i)
        assert read_n(os.path.join(gb, "bob"), 2) == [b"m0", b"m1"]
        expected = {"bob": {"queued": "3", "queued_bytes": "6", "delivered": "5", "dropped": "0", "full": "0", "node": "b"},
                    "carol": {"queued": "2", "queued_bytes": "4", "delivered": "2", "dropped": "3", "full": "1", "node": "b"}}

        def reported(path):
            lines = {name: member_line(path, name) for name in expected}
            return all(lines[n] and all(lines[n][k] == v for k, v in want.items()) for n, want in expected.items())

        assert wait_until(lambda: reported(gb), timeout=3), status_lines(gb)
        assert wait_until(lambda: reported(ga), timeout=3), status_lines(ga)

    def test_rmdir_is_refused_while_a_member_exists_on_another_node(self, two_nodes):
        a, b = two_nodes
        os.mkdir(os.path.join(a.path, "busy"))
        assert appears(os.path.join(b.path, "busy"))
        open(os.path.join(b.path, "busy", "bob"), "w").close()
        with pytest.raises(OSError) as refused:
            os.rmdir(os.path.join(a.path, "busy"))
        assert refused.value.errno == errno.ENOTEMPTY
        os.unlink(os.path.join(b.path, "busy", "bob"))
        assert wait_until(lambda: _rmdir(os.path.join(a.path, "busy")), timeout=3)


def _rmdir(path):
    try:
        os.rmdir(path)
        return True
    except OSError:
        return False


class TestDelivery:
    def test_a_message_written_on_one_node_reaches_members_on_both(self, two_nodes):
        a, b = two_nodes
        os.mkdir(os.path.join(a.path, "g"))
        assert appears(os.path.join(b.path, "g"))
        open(os.path.join(a.path, "g", "alice"), "w").close()
        open(os.path.join(b.path, "g", "bob"), "w").close()
        with open(os.path.join(b.path, "g", "send"), "wb", buffering=0) as f:
            assert f.write(b"hello across") == 12
        assert read_n(os.path.join(a.path, "g", "alice"), 1) == [b"hello across"]
        assert read_n(os.path.join(b.path, "g", "bob"), 1) == [b"hello across"]

    def test_writers_on_both_nodes_one_order_for_every_member(self, two_nodes):
        a, b = two_nodes
        os.mkdir(os.path.join(a.path, "order"))
        assert appears(os.path.join(b.path, "order"))
        members = [os.path.join(a.path, "order", "a1"), os.path.join(a.path, "order", "a2"),
                   os.path.join(b.path, "order", "b1")]
        for m in members:
            open(m, "w").close()
        n = 200

        def write(root, tag):
            with open(os.path.join(root, "order", "send"), "wb", buffering=0) as f:
                for i in range(n):
                    f.write(f"{tag}{i}".encode())

        writers = [threading.Thread(target=write, args=(a.path, "A")), threading.Thread(target=write, args=(b.path, "B"))]
        for w in writers:
            w.start()
        results = [None] * len(members)

        def drain(k):
            results[k] = read_n(members[k], 2 * n, timeout=30)

        readers = [threading.Thread(target=drain, args=(k,)) for k in range(len(members))]
        for r in readers:
            r.start()
        for t in writers + readers:
            t.join(40)
        for got in results:
            assert len(got) == 2 * n
        # One order everywhere, and each writer's order within it.
        assert results[0] == results[1] == results[2]
        for tag in "AB":
            mine = [m for m in results[0] if m.startswith(tag.encode())]
            assert mine == [f"{tag}{i}".encode() for i in range(n)]

    def test_a_member_does_not_receive_its_own_writes_without_loopback(self, two_nodes):
        a, b = two_nodes
        os.mkdir(os.path.join(a.path, "loop"))
        assert appears(os.path.join(b.path, "loop"))
        alice = os.path.join(a.path, "loop", "alice")
        open(alice, "w").close()
        open(os.path.join(b.path, "loop", "bob"), "w").close()
        with open(alice, "wb", buffering=0) as f:
            f.write(b"from alice")
        assert read_n(os.path.join(b.path, "loop", "bob"), 1) == [b"from alice"]
        fd = os.open(alice, os.O_RDONLY | os.O_NONBLOCK)
        try:
            with pytest.raises(BlockingIOError):
                os.read(fd, 100)
        finally:
            os.close(fd)


class TestNodes:
    def test_a_second_daemon_with_a_node_name_in_use_fails_with_one_clear_line(self, nats_server, mount_factory,
                                                                               mcastfs_bin, workdir_base):
        node_mount(mount_factory, nats_server, "twin")
        import subprocess
        target = os.path.join(workdir_base, "twin2")
        os.makedirs(target, exist_ok=True)
        run = subprocess.run([mcastfs_bin, target, "-f", "-o", f"cluster={nats_server.cluster_option},node=twin"],
                             capture_output=True, timeout=30)
        assert run.returncode == 1
        lines = run.stderr.decode().strip().splitlines()
        assert len(lines) == 1, lines
        assert "node name twin is in use" in lines[0], lines[0]

    def test_an_unreachable_cluster_fails_the_mount_with_one_line(self, mcastfs_bin, workdir_base):
        import subprocess
        from natscluster import free_port
        target = os.path.join(workdir_base, "nowhere")
        os.makedirs(target, exist_ok=True)
        run = subprocess.run([mcastfs_bin, target, "-o", f"cluster=nats://127.0.0.1:{free_port()},node=x"],
                             capture_output=True, timeout=60)
        assert run.returncode == 1
        lines = run.stderr.decode().strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("mcastfs: cluster:"), lines

    def test_in_the_background_the_command_returns_once_the_mount_is_live(self, nats_server, mount_factory):
        m = mount_factory(options=f"cluster={nats_server.cluster_option},node=bg", foreground=False)
        os.mkdir(os.path.join(m.path, "live"))
        assert os.path.isdir(os.path.join(m.path, "live"))

    def test_cluster_options_without_cluster_are_refused(self, mcastfs_bin, workdir_base):
        import subprocess
        target = os.path.join(workdir_base, "lonely")
        os.makedirs(target, exist_ok=True)
        run = subprocess.run([mcastfs_bin, target, "-f", "-o", "node=x"], capture_output=True, timeout=30)
        assert run.returncode == 1
        assert b"need cluster=" in run.stderr

    def test_a_bad_cluster_url_is_refused(self, mcastfs_bin, workdir_base):
        import subprocess
        target = os.path.join(workdir_base, "badurl")
        os.makedirs(target, exist_ok=True)
        run = subprocess.run([mcastfs_bin, target, "-f", "-o", "cluster=http://x:1"], capture_output=True, timeout=30)
        assert run.returncode == 1
        assert b"bad option cluster=" in run.stderr


def write_in_thread(path, payloads):
    """Writes each payload on its own write(2) from a thread; returns the
    thread and the list that collects each write's result or errno."""
    results = []

    def run():
        with open(path, "wb", buffering=0) as f:
            for p in payloads:
                try:
                    results.append(f.write(p))
                except OSError as e:
                    results.append(e.errno)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t, results


def wait_stalled(results, count, settle=0.5, timeout=10.0):
    """Waits until `results` stops growing for `settle` seconds; its length."""
    deadline = time.monotonic() + timeout
    last, since = -1, time.monotonic()
    while time.monotonic() < deadline:
        if len(results) != last:
            last, since = len(results), time.monotonic()
        elif time.monotonic() - since >= settle:
            return last
        if len(results) >= count:
            return len(results)
        time.sleep(0.02)
    return len(results)


class TestFlowControl:
    """A full member on one node holds writers on another back once the
    group's stream holds cluster_backlog messages its node has not taken."""

    def start(self, nats_server, mount_factory):
        a = node_mount(mount_factory, nats_server, "a", "cluster_backlog=8")
        b = node_mount(mount_factory, nats_server, "b")
        os.mkdir(os.path.join(a.path, "flow"))
        with open(os.path.join(a.path, "flow", "ctl"), "w") as f:
            f.write("set capacity=2")
        open(os.path.join(a.path, "flow", "slow"), "w").close()
        assert appears(os.path.join(b.path, "flow"))
        assert wait_until(lambda: member_line(os.path.join(b.path, "flow"), "slow") is not None)
        return a, b

    def test_a_full_member_on_node_a_holds_a_writer_on_node_b_and_draining_releases_it(self, nats_server, mount_factory):
        a, b = self.start(nats_server, mount_factory)
        n = 40
        t, results = write_in_thread(os.path.join(b.path, "flow", "send"), [f"m{i}".encode() for i in range(n)])
        stalled = wait_stalled(results, n)
        # 2 in slow's queue, one delivery waiting at node a, 8 in the stream.
        assert stalled < n, f"the writer was never held back ({stalled} writes done)"
        assert 8 <= stalled <= 12, stalled
        assert all(r == 2 or r == 3 for r in results)  # every write done so far succeeded
        # The writer waits on b, for room in the stream; a holds a delivery, not a write.
        assert group_line(os.path.join(b.path, "flow"))["blocked_writers"] == "1"
        assert group_line(os.path.join(a.path, "flow"))["blocked_writers"] == "0"
        # Non-blocking writes from node b see the full stream.
        fd = os.open(os.path.join(b.path, "flow", "send"), os.O_WRONLY | os.O_NONBLOCK)
        try:
            with pytest.raises(BlockingIOError):
                os.write(fd, b"refused")
        finally:
            os.close(fd)
        got = read_n(os.path.join(a.path, "flow", "slow"), n, timeout=30)
        t.join(10)
        assert not t.is_alive() and len(results) == n
        assert got == [f"m{i}".encode() for i in range(n)]
        assert group_line(os.path.join(b.path, "flow"))["blocked_writers"] == "0"

    def test_removing_the_full_member_releases_writers_on_other_nodes(self, nats_server, mount_factory):
        a, b = self.start(nats_server, mount_factory)
        t, results = write_in_thread(os.path.join(b.path, "flow", "send"), [b"x"] * 40)
        assert wait_stalled(results, 40) < 40
        os.unlink(os.path.join(a.path, "flow", "slow"))
        t.join(15)
        assert not t.is_alive() and results == [1] * 40


class TestNodeFaults:
    def test_a_killed_daemons_members_leave_and_its_writers_hold_nobody(self, nats_server, mount_factory):
        a = node_mount(mount_factory, nats_server, "a", "cluster_backlog=4")
        b = node_mount(mount_factory, nats_server, "b")
        os.mkdir(os.path.join(a.path, "g"))
        assert appears(os.path.join(b.path, "g"))
        # alive (on a) with the default capacity; stuck (on b) holds one message.
        open(os.path.join(a.path, "g", "alive"), "w").close()
        with open(os.path.join(b.path, "g", "ctl"), "w") as f:
            f.write("set capacity=1")
        open(os.path.join(b.path, "g", "stuck"), "w").close()
        assert wait_until(lambda: member_line(os.path.join(a.path, "g"), "stuck") is not None)
        t, results = write_in_thread(os.path.join(a.path, "g", "send"), [b"y"] * 30)
        assert wait_stalled(results, 30) < 30
        killed = time.monotonic()
        b.kill()
        # cluster_timeout is 2 s: gone from a's status, and the writer released.
        assert wait_until(lambda: member_line(os.path.join(a.path, "g"), "stuck") is None, timeout=8)
        t.join(10)
        took = time.monotonic() - killed
        assert not t.is_alive() and results == [1] * 30
        assert took < 6, took
        assert len(read_n(os.path.join(a.path, "g", "alive"), 30)) == 30

    def test_with_its_server_gone_a_node_exits_at_once_and_the_next_of_its_name_removes_its_members(
            self, nats_server, mount_factory):
        """SIGTERM with nothing to reach: the node leaves its entries, as a
        crash does (before, every request of its cleanup waited out its
        timeout: 32 s to exit with one member). The next daemon of its name
        removes the members it left, which nobody else would here."""
        a = node_mount(mount_factory, nats_server, "a")
        g = os.path.join(a.path, "g")
        os.mkdir(g)
        open(os.path.join(g, "left"), "w").close()
        assert wait_until(lambda: member_line(g, "left") is not None)
        nats_server.kill(0)
        time.sleep(0.5)   # the daemon hears the connection go
        stopped = time.monotonic()
        assert a.stop(signal.SIGTERM, timeout=60) == 0
        took = time.monotonic() - stopped
        assert took < 10, f"{took:.1f} s to exit"
        assert "not connected to NATS: this node's members are left" in a.stderr_text()
        nats_server.restart(0)
        # The name is free once the dead holder's timeout (2 s) has passed.
        again = node_mount(mount_factory, nats_server, "a")
        g = os.path.join(again.path, "g")
        assert appears(g)
        assert member_line(g, "left") is None and "left" not in os.listdir(g)
        os.rmdir(g)

    def test_a_restarted_node_sees_every_group(self, nats_server, mount_factory):
        a = node_mount(mount_factory, nats_server, "a")
        os.mkdir(os.path.join(a.path, "one"))
        os.mkdir(os.path.join(a.path, "two"))
        b = node_mount(mount_factory, nats_server, "b")
        assert {"one", "two"} <= set(os.listdir(b.path))
        assert b.stop() == 0
        b2 = node_mount(mount_factory, nats_server, "b")
        assert {"one", "two"} <= set(os.listdir(b2.path))


class TestSharedChanges:
    def test_chmod_and_chown_of_a_group_apply_on_every_node(self, two_nodes):
        a, b = two_nodes
        os.mkdir(os.path.join(a.path, "owned"), 0o755)
        assert appears(os.path.join(b.path, "owned"))
        os.chmod(os.path.join(a.path, "owned"), 0o700)
        os.chown(os.path.join(b.path, "owned"), 65534, 65534)
        for root in (a.path, b.path):
            path = os.path.join(root, "owned")
            assert wait_until(lambda: (os.stat(path).st_mode & 0o7777, os.stat(path).st_uid, os.stat(path).st_gid)
                              == (0o700, 65534, 65534), timeout=4), (root, oct(os.stat(path).st_mode), os.stat(path).st_uid)

    def test_ctl_on_a_member_of_another_node_is_applied_by_its_node(self, two_nodes):
        a, b = two_nodes
        os.mkdir(os.path.join(a.path, "remote"))
        assert appears(os.path.join(b.path, "remote"))
        open(os.path.join(b.path, "remote", "bob"), "w").close()
        assert wait_until(lambda: member_line(os.path.join(a.path, "remote"), "bob") is not None)
        with open(os.path.join(a.path, "remote", "ctl"), "w") as f:
            f.write("member bob capacity=9 loopback=1")
        for root in (b.path, a.path):
            assert wait_until(lambda: (member_line(os.path.join(root, "remote"), "bob") or {}).get("capacity") == "9",
                              timeout=4), root
        assert member_line(os.path.join(b.path, "remote"), "bob")["loopback"] == "1"
        # A bad value is refused on the node that wrote it, as for a local member.
        with pytest.raises(OSError):
            with open(os.path.join(a.path, "remote", "ctl"), "w") as f:
                f.write("member bob capacity=0")
