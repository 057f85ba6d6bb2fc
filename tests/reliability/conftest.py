"""Fixtures for the reliability tests.

The mounted tests' fixtures and hooks (`mount`, `mount_factory`, `cbin`,
`group`, the per-test time limits and the watchdog that kills the daemons of
a stuck test) come from the plugin the suites share,
tests/lib/mcastfs_pytest.py, so every suite mounts the daemon the same way.
Added here:

- `scale` (session): the Scale of this run, from $RELIABILITY_SCALE
  (`short`, the default, for CI; or `long`).
- `rbin` (session): the C helpers of tests/reliability/c/ (mcw, mcr, mcblock),
  compiled once into tests/reliability/bin/.
- `record` (function): record(**figures) prints the figures and appends them
  as one JSON line to <repo>/results/reliability.jsonl ($RELIABILITY_RESULTS
  names another file).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]

for _path in (str(HERE), str(REPO / "tests" / "lib")):
    if _path not in sys.path:
        sys.path.insert(0, _path)

import mcastfs_pytest  # noqa: E402
from scale import Scale, current_scale  # noqa: E402

RESULTS = Path(os.environ.get("RELIABILITY_RESULTS") or REPO / "results" / "reliability.jsonl")

rbin = mcastfs_pytest.c_helpers("rbin", HERE / "c")


def pytest_configure(config):
    mcastfs_pytest.register(config)


@pytest.fixture(scope="session")
def scale() -> Scale:
    return current_scale()


def _git_rev() -> str:
    try:
        res = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, timeout=5)
        rev = res.stdout.strip()
        dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--", "Sources"],
                               capture_output=True, text=True, timeout=5).stdout.strip()
        return rev + ("+dirty" if dirty else "")
    except (OSError, subprocess.TimeoutExpired):
        return "?"


@pytest.fixture
def record(request, scale):
    """record(**figures): print them and append one JSON line to results/reliability.jsonl."""

    def rec(**figures):
        line = {
            "test": request.node.nodeid,
            "scale": scale.name,
            "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "rev": _git_rev(),
            **figures,
        }
        print("\nFIGURES " + json.dumps(line, sort_keys=False))
        RESULTS.parent.mkdir(exist_ok=True)
        with open(RESULTS, "a") as f:
            f.write(json.dumps(line) + "\n")

    return rec
