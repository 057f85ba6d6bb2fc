"""Groups across hosts over a real network stack: the NATS server runs in a
network namespace that the test makes, reached over a veth pair, while the
mcastfs nodes run here. Traffic between the nodes crosses two network stacks
instead of loopback, and the test can cut the link."""

import os
import subprocess
import threading
import time

import pytest

from natscluster import NATSCluster
from test_cluster_mount import appears, read_n


def ip(*args, netns=None):
    cmd = (["ip", "netns", "exec", netns] if netns else []) + ["ip", *args]
    subprocess.run(cmd, check=True, capture_output=True, timeout=10)


@pytest.fixture
def remote_nats():
    """One nats-server in a fresh network namespace at 10.201.K.2, this side 10.201.K.1."""
    k = os.getpid() % 250 + 1
    ns, here, there = f"mcastfs-t{os.getpid()}", f"mcfh{os.getpid()}"[:15], f"mcfn{os.getpid()}"[:15]
    ip("netns", "add", ns)
    cluster = None
    try:
        ip("link", "add", here, "type", "veth", "peer", "name", there)
        ip("link", "set", there, "netns", ns)
        ip("addr", "add", f"10.201.{k}.1/30", "dev", here)
        ip("link", "set", here, "up")
        ip("addr", "add", f"10.201.{k}.2/30", "dev", there, netns=ns)
        ip("link", "set", there, "up", netns=ns)
        ip("link", "set", "lo", "up", netns=ns)
        cluster = NATSCluster(size=1, host=f"10.201.{k}.2", netns=ns).start()
        cluster.link = here
        yield cluster
    finally:
        if cluster is not None:
            cluster.close()
        subprocess.run(["ip", "link", "del", here], capture_output=True)
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)


def test_two_nodes_talk_through_a_server_behind_a_real_network_stack(remote_nats, mount_factory):
    option = f"cluster={remote_nats.cluster_option},cluster_timeout=2"
    a = mount_factory(options=option + ",node=near")
    b = mount_factory(options=option + ",node=far")
    os.mkdir(os.path.join(a.path, "wire"))
    assert appears(os.path.join(b.path, "wire"))
    open(os.path.join(b.path, "wire", "listener"), "w").close()
    messages = [f"over veth {i}".encode() for i in range(50)]
    got = []
    reader = threading.Thread(target=lambda: got.extend(read_n(os.path.join(b.path, "wire", "listener"), 50, 20)))
    reader.start()
    with open(os.path.join(a.path, "wire", "send"), "wb", buffering=0) as f:
        for m in messages:
            assert f.write(m) == len(m)
    reader.join(25)
    assert got == messages


def test_a_cut_link_fails_waiting_calls_with_EIO_and_the_node_comes_back_without_duplicates(remote_nats, mount_factory):
    """The link to the server goes down: the node notices (nats.c pings every
    2 s), a write waiting for room fails with EIO, calls that need the
    cluster fail with EIO; the link comes back: the node reconnects, and
    its members receive every stored message once, in order."""
    import errno

    option = f"cluster={remote_nats.cluster_option},cluster_timeout=30"
    a = mount_factory(options=option + ",node=cut,cluster_backlog=4")
    g = os.path.join(a.path, "cut")
    os.mkdir(g)
    with open(os.path.join(g, "ctl"), "w") as f:
        f.write("set capacity=1")
    open(os.path.join(g, "full"), "w").close()
    results = []

    def writer():
        with open(os.path.join(g, "send"), "wb", buffering=0) as f:
            for i in range(20):
                try:
                    results.append(f.write(f"w{i}".encode()))
                except OSError as e:
                    results.append(-e.errno)
                    return

    t = threading.Thread(target=writer, daemon=True)
    t.start()
    deadline = time.monotonic() + 10
    while len(results) < 5 and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)
    stored = len(results)
    assert 4 <= stored < 20, results
    subprocess.run(["ip", "link", "set", remote_nats.link, "down"], check=True)
    cut = time.monotonic()
    t.join(20)
    assert not t.is_alive(), "the waiting write was not failed after the link went down"
    assert results[-1] == -errno.EIO, results
    took = time.monotonic() - cut
    with pytest.raises(OSError) as refused:
        os.mkdir(os.path.join(a.path, "while-cut"))
    assert refused.value.errno == errno.EIO
    subprocess.run(["ip", "link", "set", remote_nats.link, "up"], check=True)
    deadline = time.monotonic() + 30
    while True:
        try:
            os.mkdir(os.path.join(a.path, "after"))
            break
        except OSError as e:
            assert e.errno == errno.EIO and time.monotonic() < deadline, e
            time.sleep(0.2)
    # Every write that succeeded, and only those, reaches the member, once, in order.
    accepted = [f"w{i}".encode() for i, r in enumerate(results) if r == 2]
    got = read_n(os.path.join(g, "full"), len(accepted), timeout=20)
    assert got == accepted, (got, accepted)
    fd = os.open(os.path.join(g, "full"), os.O_RDONLY | os.O_NONBLOCK)
    try:
        time.sleep(0.5)
        with pytest.raises(BlockingIOError):
            os.read(fd, 100)
    finally:
        os.close(fd)
    print(f"cut: the waiting write failed {took:.2f} s after the link went down")
