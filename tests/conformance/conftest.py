"""Fixtures of the conformance tests.

They reuse the mounted tests' fixtures (tests/mounted/conftest.py: `mount`,
`mount_factory`, `module_mount_factory`, `group`, `as_nobody`, `cbin`, time
limits, the watchdog, the daemon's stderr on failure) by loading that
conftest under another module name and re-exporting what it defines, so that
tests/mounted stays untouched and both directories can run in one session.

Added here:
- `conf_bin` (session): the C helpers of tests/conformance/c/, compiled once
  into tests/conformance/bin/ (git-ignored); conf_bin["permbatch"] is a path.
- `RESULTS`: <repo>/results (git-ignored), where tables are written.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
MOUNTED = REPO / "tests" / "mounted"
RESULTS = REPO / "results"
C_DIR = HERE / "c"
BIN_DIR = HERE / "bin"

if str(MOUNTED) not in sys.path:
    sys.path.insert(0, str(MOUNTED))


def _load_mounted_conftest():
    name = "_mcastfs_mounted_conftest"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, MOUNTED / "conftest.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


_mounted = _load_mounted_conftest()

# Fixtures and hooks of the mounted tests, re-exported (pytest finds fixtures
# and pytest_* hooks among a conftest's attributes wherever they were defined).
for _name in dir(_mounted):
    _obj = getattr(_mounted, _name)
    if _name.startswith("pytest_") or hasattr(_obj, "_pytestfixturefunction") or type(_obj).__name__ == "FixtureFunctionDefinition":
        globals()[_name] = _obj

start_mount = _mounted.start_mount
finish_mount = _mounted.finish_mount


def _compile(cc: str, src: Path, exe: Path):
    from helpers import run

    if exe.exists() and exe.stat().st_mtime >= src.stat().st_mtime:
        return
    res = run([cc, "-O2", "-pthread", "-Wall", "-o", str(exe), str(src)], timeout=120)
    if res.returncode != 0:
        pytest.fail(f"compiling {src.name} failed:\n{res.stderr}", pytrace=False)


@pytest.fixture(scope="session")
def conf_bin() -> dict[str, str]:
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.fail("no C compiler (cc) for the test helpers", pytrace=False)
    BIN_DIR.mkdir(mode=0o755, exist_ok=True)
    out = {}
    for src in sorted(C_DIR.glob("*.c")):
        exe = BIN_DIR / src.stem
        _compile(cc, src, exe)
        out[src.stem] = str(exe)
    return out
