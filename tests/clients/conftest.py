"""Fixtures of the client helpers' tests (clients/python, clients/c).

These tests need no mount: they check the helpers against the contract's
framed-view format with bytes built by hand (framebuilder.py).

- `mcastfs` is importable: clients/python goes first on sys.path, as it does
  for any client run from the project.
- `framestool` (session): tests/clients/c/framestool.c compiled with
  `cc -Wall -Wextra -Werror -std=c99 -pedantic` against clients/c/mcastfs.h,
  into a temporary directory. A compile failure fails the tests.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
HEADER_DIR = REPO / "clients" / "c"
C_FLAGS = ["-Wall", "-Wextra", "-Werror", "-std=c99", "-pedantic"]

for path in (str(REPO / "clients" / "python"), str(HERE)):
    if path not in sys.path:
        sys.path.insert(0, path)


@pytest.fixture(scope="session")
def framestool(tmp_path_factory) -> str:
    out = tmp_path_factory.mktemp("clients-c") / "framestool"
    subprocess.run(
        ["cc", *C_FLAGS, "-O1", "-I", str(HEADER_DIR), str(HERE / "c" / "framestool.c"), "-o", str(out)],
        check=True,
    )
    return str(out)
