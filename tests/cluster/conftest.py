"""Fixtures of the cluster tests: NATS servers on loopback (natscluster.py),
and, through the plugin the mounted suites share (tests/lib/mcastfs_pytest.py:
`mount_factory`, time limits, the watchdog), the mcastfs daemons that will
join them.

- `nats_server` (function): one nats-server with JetStream, healthy.
- `nats_cluster` (function): three servers in one cluster, each healthy
  (current with an elected meta leader).
- `nats_factory` (function): make(size=N) for anything else; every cluster
  made is stopped and its stores removed at the end of the test.

nats-server missing fails the test (scripts/install-deps installs it).
"""

import sys
from pathlib import Path

import pytest

_HERE = str(Path(__file__).resolve().parent)
_LIB = str(Path(__file__).resolve().parents[1] / "lib")
for p in (_HERE, _LIB):
    if p not in sys.path:
        sys.path.insert(0, p)

import mcastfs_pytest  # noqa: E402
from natscluster import NATSCluster  # noqa: E402


def pytest_configure(config):
    mcastfs_pytest.register(config)


@pytest.fixture
def nats_factory():
    made = []

    def make(size: int = 1) -> NATSCluster:
        cluster = NATSCluster(size=size)
        made.append(cluster)
        return cluster.start()

    yield make
    for cluster in made:
        cluster.close()


@pytest.fixture
def nats_server(nats_factory) -> NATSCluster:
    return nats_factory(1)


@pytest.fixture
def nats_cluster(nats_factory) -> NATSCluster:
    return nats_factory(3)
