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
