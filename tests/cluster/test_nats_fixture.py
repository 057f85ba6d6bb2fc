"""The NATS fixture itself: what the cluster tests rely on when they start,
kill and restart servers."""

import json
import os
import socket
import time

import pytest

from natscluster import NATSCluster, NATSError, require_nats_server


def server_info(url: str) -> dict:
    """The INFO greeting a NATS server sends every client on connect."""
    host, port = url.removeprefix("nats://").split(":")
    with socket.create_connection((host, int(port)), timeout=2) as s:
        line = s.makefile("rb").readline().decode()
    assert line.startswith("INFO ")
    return json.loads(line[5:])


def wait_for(predicate, timeout=15.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


def test_nats_server_is_installed():
    assert require_nats_server()


def test_one_server_has_jetstream_on_loopback_in_a_temporary_store(nats_server):
    status, body = nats_server.healthz(0)
    assert status == 200 and body.get("status") == "ok"
    info = server_info(nats_server.urls[0])
    assert info["jetstream"] is True
    assert info["host"] == "127.0.0.1"
    store = nats_server.jsz(0)["config"]["store_dir"]
    assert store.startswith(str(nats_server.dir))
    assert nats_server.meta_leader(0) is None  # a single server has no meta group


def test_three_servers_form_one_cluster_with_one_meta_leader(nats_cluster):
    leaders = {nats_cluster.meta_leader(i) for i in range(3)}
    assert len(leaders) == 1 and leaders.pop() in {"s1", "s2", "s3"}
    for i in range(3):
        assert nats_cluster.routez(i)["num_routes"] == 2
        meta = nats_cluster.jsz(i)["meta_cluster"]
        assert meta["name"] == "mcastfs-test"
        assert meta["cluster_size"] == 3
    assert len(set(nats_cluster.urls)) == 3
    assert nats_cluster.cluster_option == "+".join(nats_cluster.urls)


def test_killing_one_of_three_leaves_a_quorum_and_a_restart_rejoins(nats_cluster):
    leader = nats_cluster.meta_leader(0)
    victim = int(leader[1:]) - 1  # the meta leader itself: the harder case
    nats_cluster.kill(victim)
    assert not nats_cluster.alive(victim)
    survivors = [i for i in range(3) if i != victim]
    # The two left elect a new meta leader among themselves and stay healthy.
    assert wait_for(lambda: all(nats_cluster.meta_leader(i) not in (None, leader) for i in survivors))
    for i in survivors:
        nats_cluster.wait_healthy(i)

    nats_cluster.restart(victim)
    assert nats_cluster.alive(victim)
    assert wait_for(lambda: nats_cluster.routez(victim)["num_routes"] == 2)
    new_leader = nats_cluster.meta_leader(survivors[0])
    assert nats_cluster.meta_leader(victim) == new_leader
    # Same ports as before the kill: clients reconnect to the URL they knew.
    assert server_info(nats_cluster.urls[victim])["server_name"] == f"s{victim + 1}"


def test_restart_of_a_running_server_is_refused(nats_server):
    with pytest.raises(NATSError):
        nats_server.restart(0)


def test_close_stops_every_server_and_removes_the_stores():
    cluster = NATSCluster(size=3).start()
    procs = [s.proc for s in cluster.servers]
    cluster.close()
    assert all(p.poll() is not None for p in procs)
    assert not os.path.exists(cluster.dir)
    with pytest.raises(OSError):
        server_info(cluster.urls[0])


def test_a_clean_stop_and_restart_keeps_the_store(nats_server):
    store = nats_server.jsz(0)["config"]["store_dir"]
    nats_server.stop(0)
    assert os.path.isdir(store)
    nats_server.restart(0)
    assert nats_server.jsz(0)["config"]["store_dir"] == store
