"""mypy strict on the package as it is installed: ``python tests/typecheck.py [mypy options]``.

setuptools maps two source folders into one package (vault/ is ``meta_tokenvault``, cli/ is
``meta_tokenvault.cli``); mypy resolves modules by path only, so this lays the package out as installed,
as symlinks under build/typecheck/meta_tokenvault (every entry of vault/, plus ``cli`` -> cli/), and runs
mypy with pyproject's settings (``mypy_path = "build/typecheck"``, ``packages = ["meta_tokenvault"]``).
mypy reports errors at the symlinked paths (build/typecheck/meta_tokenvault/... = vault/...).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LAYOUT = ROOT / "build" / "typecheck" / "meta_tokenvault"


def lay_out() -> Path:
    """(Re)create the symlinked layout; returns its package folder."""
    if LAYOUT.exists():
        shutil.rmtree(LAYOUT)
    LAYOUT.mkdir(parents=True)
    for entry in (ROOT / "vault").iterdir():
        if entry.name == "__pycache__":
            continue
        os.symlink(entry, LAYOUT / entry.name)
    os.symlink(ROOT / "cli", LAYOUT / "cli")
    return LAYOUT


def main(argv: list[str]) -> int:
    lay_out()
    return subprocess.run([sys.executable, "-m", "mypy", *argv], cwd=ROOT).returncode


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
