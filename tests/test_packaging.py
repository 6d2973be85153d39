"""The distribution is `meta-tokenvault`, and it installs one import package, `meta_tokenvault`, nothing else.

The wheel is built from this tree (setuptools maps vault/ to ``meta_tokenvault`` and cli/ to
``meta_tokenvault.cli``), then imported from the unpacked wheel alone, outside the repository.
"""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                           "-w", str(out), str(ROOT)], capture_output=True, text=True, timeout=300, cwd=out)
    assert proc.returncode == 0, proc.stderr
    (built,) = out.glob("*.whl")
    return built


def test_the_wheel_is_meta_tokenvault(wheel: Path) -> None:
    assert wheel.name.startswith("meta_tokenvault-")


def test_its_only_top_level_package_is_meta_tokenvault(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    top = {n.split("/")[0] for n in names}
    assert {t for t in top if not t.endswith(".dist-info")} == {"meta_tokenvault"}


def test_every_module_of_vault_and_cli_is_in_the_wheel(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = {f"meta_tokenvault/{p.relative_to(ROOT / 'vault')}" for p in (ROOT / "vault").rglob("*.py")}
    expected |= {f"meta_tokenvault/cli/{p.relative_to(ROOT / 'cli')}" for p in (ROOT / "cli").rglob("*.py")}
    expected |= {"meta_tokenvault/py.typed", "meta_tokenvault/cli/py.typed", "meta_tokenvault/cli/help_text.bin"}
    assert expected - names == set(), "add the missing packages (data: package-data) to [tool.setuptools] in " \
                                      "pyproject.toml"


def test_the_console_command_is_tokenvault(wheel: Path) -> None:
    zf = zipfile.ZipFile(wheel)
    (entry_points,) = [n for n in zf.namelist() if n.endswith(".dist-info/entry_points.txt")]
    text = zf.read(entry_points).decode()
    assert "tokenvault = meta_tokenvault.cli.main:run" in text


def test_the_unpacked_wheel_imports_as_meta_tokenvault_and_nothing_else(wheel: Path, tmp_path: Path) -> None:
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    code = (
        "import importlib.util, sys\n"
        "import meta_tokenvault, meta_tokenvault.cli.main\n"
        "assert meta_tokenvault.TokenVault.__name__ == 'TokenVault'\n"
        f"assert meta_tokenvault.__file__.startswith({str(site)!r}), meta_tokenvault.__file__\n"
        f"assert meta_tokenvault.cli.main.__file__.startswith({str(site)!r})\n"
        "import meta_tokenvault.cli.help as h\n"  # the stored help's data file came along
        "assert h.stored_help(80, h.TERMINAL).count('Usage: ') == 1\n"
        "assert importlib.util.find_spec('vault') is None, 'a top-level vault package is importable'\n"
        "assert importlib.util.find_spec('cli') is None, 'a top-level cli package is importable'\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=60,
                          env={"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr
