"""nats-server processes for the cluster tests: one server, or a cluster of
three, on loopback ports, with JetStream in temporary store directories.

    with NATSCluster(size=3) as cluster:
        cluster.urls            # ["nats://127.0.0.1:P1", ...]
        cluster.cluster_option  # "nats://127.0.0.1:P1+nats://..." for -o cluster=
        cluster.kill(1)         # SIGKILL, the store stays
        cluster.restart(1)      # same ports and store; returns once current

A server is ready when its monitoring endpoint /healthz answers 200: JetStream
is up and, in a cluster, the server is current with an elected meta leader
and with every stream and consumer it holds a replica of. (A restarted server
with a replica of a consumer that sees no traffic can stay "not current" for
a long time on 2.9.10; give clusters under test some traffic, as mcastfs
nodes always have.) nats-server comes from PATH (scripts/install-deps
installs it); its absence fails, it does not skip.

The Swift tests start servers the same way: Tests/NATSSupport/NATSServers.swift.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

NATS_SERVER = "nats-server"


class NATSError(RuntimeError):
    pass


def free_port() -> int:
    """A loopback port that was free a moment ago (the kernel's pick)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def require_nats_server() -> str:
    path = shutil.which(NATS_SERVER)
    if path is None:
        raise NATSError(f"{NATS_SERVER} is not on PATH: scripts/install-deps installs it (Debian package nats-server)")
    return path


@dataclass
class Server:
    name: str
    store: Path
    client_port: int = 0
    cluster_port: int = 0
    monitor_port: int = 0
    proc: subprocess.Popen | None = None
    host: str = "127.0.0.1"
    log: Path = field(init=False)

    def __post_init__(self):
        self.log = self.store.with_suffix(".log")

    @property
    def url(self) -> str:
        return f"nats://{self.host}:{self.client_port}"

    def pick_ports(self):
        self.client_port, self.cluster_port, self.monitor_port = free_port(), free_port(), free_port()


class NATSCluster:
    def __init__(self, size: int = 1, base: str | os.PathLike | None = None, name: str = "mcastfs-test",
                 host: str = "127.0.0.1", netns: str | None = None):
        """host: the address the servers listen on; netns: a network namespace
        to run them in (`ip netns exec`), reached at host from this one."""
        if size < 1:
            raise ValueError("size must be at least 1")
        self.size = size
        self.name = name
        self.host = host
        self.netns = netns
        self.dir = Path(tempfile.mkdtemp(prefix="mcastfs-nats-", dir=base))
        self.servers = [Server(f"s{i + 1}", self.dir / f"s{i + 1}", host=host) for i in range(size)]
        for s in self.servers:
            s.store.mkdir()

    # --- lifecycle ------------------------------------------------------------

    def start(self, timeout: float = 15.0) -> "NATSCluster":
        """Starts every server and waits until each is healthy. A port picked
        free may be taken before the server binds it: then again, on new ports."""
        require_nats_server()
        for attempt in range(3):
            for s in self.servers:
                s.pick_ports()
            for i in range(self.size):
                self._spawn(i)
            try:
                for i in range(self.size):
                    self.wait_healthy(i, timeout)
                return self
            except NATSError:
                in_use = any("address already in use" in self._log_tail(s) for s in self.servers)
                self._stop_processes()
                if not in_use or attempt == 2:
                    self.close()
                    raise
        raise AssertionError("unreachable")

    def _args(self, s: Server) -> list[str]:
        args = [NATS_SERVER, "-js", "-a", self.host, "-p", str(s.client_port), "--http_port", str(s.monitor_port),
                "-n", s.name, "-sd", str(s.store), "-l", str(s.log)]
        if self.size > 1:
            routes = ",".join(f"nats://{self.host}:{o.cluster_port}" for o in self.servers)
            args += ["--cluster_name", self.name, "--cluster", f"nats://{self.host}:{s.cluster_port}", "--routes", routes]
        return (["ip", "netns", "exec", self.netns] if self.netns else []) + args

    def _spawn(self, i: int):
        s = self.servers[i]
        s.proc = subprocess.Popen(self._args(s), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def kill(self, i: int):
        """SIGKILL server i: it stops mid-whatever; its store stays."""
        s = self.servers[i]
        if s.proc is not None and s.proc.poll() is None:
            s.proc.send_signal(signal.SIGKILL)
            s.proc.wait(10)
        s.proc = None

    def stop(self, i: int, timeout: float = 10.0):
        """SIGTERM server i (a clean shutdown), waiting for it to exit."""
        s = self.servers[i]
        if s.proc is not None and s.proc.poll() is None:
            s.proc.send_signal(signal.SIGTERM)
            try:
                s.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                s.proc.kill()
                s.proc.wait(10)
        s.proc = None

    def restart(self, i: int, timeout: float = 15.0):
        """Starts server i again on its ports and store; returns once healthy."""
        if self.alive(i):
            raise NATSError(f"{self.servers[i].name} is running")
        self._spawn(i)
        self.wait_healthy(i, timeout)

    def alive(self, i: int) -> bool:
        p = self.servers[i].proc
        return p is not None and p.poll() is None

    def _stop_processes(self):
        for i in range(self.size):
            self.stop(i)

    def close(self):
        """Stops every server and removes the stores."""
        self._stop_processes()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> "NATSCluster":
        return self.start()

    def __exit__(self, *exc):
        self.close()

    # --- addresses ------------------------------------------------------------

    @property
    def urls(self) -> list[str]:
        return [s.url for s in self.servers]

    @property
    def cluster_option(self) -> str:
        """The servers as mcastfs's `-o cluster=` takes them (docs/cluster.md):
        URLs joined by '+', since ',' separates mount options."""
        return "+".join(self.urls)

    # --- monitoring -----------------------------------------------------------

    def _get(self, i: int, path: str, timeout: float = 2.0) -> tuple[int, str]:
        url = f"http://{self.host}:{self.servers[i].monitor_port}{path}"
        try:
            with urllib.request.urlopen(url, timeout=timeout) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()

    def healthz(self, i: int) -> tuple[int, dict]:
        status, body = self._get(i, "/healthz")
        return status, json.loads(body or "{}")

    def jsz(self, i: int, query: str = "") -> dict:
        return json.loads(self._get(i, "/jsz" + query)[1])

    def varz(self, i: int) -> dict:
        return json.loads(self._get(i, "/varz")[1])

    def routez(self, i: int) -> dict:
        return json.loads(self._get(i, "/routez")[1])

    def meta_leader(self, i: int) -> str | None:
        """The JetStream meta leader as server i sees it (None: none yet, or a
        single server, which has no meta group)."""
        meta = self.jsz(i).get("meta_cluster") or {}
        return meta.get("leader") or None

    def wait_healthy(self, i: int, timeout: float = 15.0):
        """Until server i answers /healthz with 200; raises NATSError with the
        last answer (or the log) when it does not within `timeout`."""
        s = self.servers[i]
        deadline = time.monotonic() + timeout
        last = "no answer"
        while time.monotonic() < deadline:
            if s.proc is None or s.proc.poll() is not None:
                raise NATSError(f"{s.name} exited: {self._log_tail(s)}")
            try:
                status, body = self.healthz(i)
                if status == 200:
                    return
                last = body.get("error", str(body))
            except (OSError, ValueError) as e:
                last = str(e)
            time.sleep(0.02)
        raise NATSError(f"{s.name} not healthy within {timeout} s: {last}")

    @staticmethod
    def _log_tail(s: Server, lines: int = 5) -> str:
        try:
            return " | ".join(s.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"
