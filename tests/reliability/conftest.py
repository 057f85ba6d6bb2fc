"""Fixtures for the reliability tests.

The mounted tests' fixtures and hooks (tests/mounted/conftest.py: `mount`,
`mount_factory`, `cbin`, `group`, the per-test time limits and the watchdog
that kills the daemons of a stuck test) are loaded from that file under the
module name `mounted_conftest` and re-exported here, so both suites mount the
daemon the same way. Added here:

- `scale` (session): the Scale of this run, from $RELIABILITY_SCALE
  (`short`, the default, for CI; or `long`).
- `rbin` (session): the C helpers of tests/reliability/c/ (mcw, mcr, mcblock),
  compiled once into tests/reliability/bin/.
- `record` (function): record(**figures) prints the figures and appends them
  as one JSON line to <repo>/results/reliability.jsonl ($RELIABILITY_RESULTS
  names another file).
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
MOUNTED = REPO / "tests" / "mounted"

sys.path.insert(0, str(HERE))
sys.path.insert(0, str(MOUNTED))  # helpers.py of the mounted tests

_spec = importlib.util.spec_from_file_location("mounted_conftest", MOUNTED / "conftest.py")
mounted_conftest = importlib.util.module_from_spec(_spec)
sys.modules["mounted_conftest"] = mounted_conftest
_spec.loader.exec_module(mounted_conftest)

# Re-exported: pytest takes fixtures and hooks from this module's namespace.
from mounted_conftest import (  # noqa: E402,F401
    cbin,
    group,
    mcastfs_bin,
    module_mount_factory,
    mount,
    mount_factory,
    new_group,
    pytest_collection_modifyitems,
    pytest_configure,
    pytest_runtest_makereport,
    pytest_runtest_protocol,
    workdir_base,
)

from scale import Scale, current_scale  # noqa: E402

C_DIR = HERE / "c"
BIN_DIR = HERE / "bin"
RESULTS = Path(os.environ.get("RELIABILITY_RESULTS") or REPO / "results" / "reliability.jsonl")


@pytest.fixture(scope="session")
def scale() -> Scale:
    return current_scale()


@pytest.fixture(scope="session")
def rbin() -> dict[str, str]:
    """Compile tests/reliability/c/*.c once; name -> executable path."""
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.fail("no C compiler (cc) for the reliability helpers", pytrace=False)
    BIN_DIR.mkdir(mode=0o755, exist_ok=True)
    headers = list(C_DIR.glob("*.h"))
    newest_header = max((h.stat().st_mtime for h in headers), default=0)
    out = {}
    for src in sorted(C_DIR.glob("*.c")):
        exe = BIN_DIR / src.stem
        if not exe.exists() or exe.stat().st_mtime < max(src.stat().st_mtime, newest_header):
            res = subprocess.run([cc, "-O2", "-pthread", "-Wall", "-o", str(exe), str(src)],
                                 capture_output=True, text=True, timeout=120)
            if res.returncode != 0:
                pytest.fail(f"compiling {src.name} failed:\n{res.stderr}", pytrace=False)
        out[src.stem] = str(exe)
    return out


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
