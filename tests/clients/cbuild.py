"""Where the C header is and how its tests compile it."""

from __future__ import annotations

import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
HEADER_DIR = REPO / "clients" / "c"
# The flags the header promises to build under (README), plus -pedantic.
C_FLAGS = ["-Wall", "-Wextra", "-Werror", "-std=c99", "-pedantic"]


def compile_c(source: Path, out: Path, *extra: str) -> None:
    subprocess.run(["cc", *C_FLAGS, *extra, "-I", str(HEADER_DIR), str(source), "-o", str(out)], check=True)
