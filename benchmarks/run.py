"""Run tokenvault's benchmarks and print a table of figures; write them to benchmarks/results.json.

    .venv/bin/python benchmarks/run.py             # every section, full size (a few minutes)
    .venv/bin/python benchmarks/run.py --quick     # smoke run: small stores, one run of each (no figures to quote)
    .venv/bin/python benchmarks/run.py --only cold_start --only store_scale
    .venv/bin/python benchmarks/run.py --install editable   # this checkout's editable install, as it is

By default (``--install wheel``) the sections run in a throwaway virtualenv where tokenvault is installed
from its wheel, as users install it (:func:`harness.wheel_venv`): the editable install's import hook costs
every interpreter of this virtualenv ~8-10 ms, ``python -c pass`` included, which a user's never pays.
``--quick`` (the smoke run of the tests) uses the editable install unless ``--install`` says otherwise.

Sections are pluggable: every ``benchmarks/bench_<section>.py`` module exposing ``run(quick: bool) ->
list[Figure]`` (see :mod:`harness`) is a section, run in name order. Each figure is a ratio to something
measured in the same run; nothing here asserts timings (the goals are reported, met or not).
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import os
import platform
import signal
import sys
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from harness import INSTALL_ENV, TOOLS_ENV, Figure, installed_as, precompile, wheel_venv  # noqa: E402


def sections() -> dict[str, Path]:
    return {p.stem.removeprefix("bench_"): p for p in sorted(HERE.glob("bench_*.py"))}


def run_section(name: str, quick: bool) -> tuple[list[Figure], str | None]:
    module = importlib.import_module(f"bench_{name}")
    try:
        return list(module.run(quick)), None
    except Exception as exc:  # noqa: BLE001 - one broken section must not hide the others' figures
        traceback.print_exc()
        return [], f"{type(exc).__name__}: {exc}"


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "NO"
    if isinstance(value, float):
        if math.isnan(value):
            return "-"
        return f"{value:,.3g}" if abs(value) < 10 else f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.1f}"
    return str(value)


def table(figures: list[Figure]) -> str:
    header = ("section", "what", "figure", "ratio", "to", "goal", "met")
    rows = [header] + [(f.section, f.what, f"{_cell(f.value)} {f.unit}", _cell(f.ratio) + ("x" if f.ratio else ""),
                        f.baseline or "", f.goal, _cell(f.ok)) for f in figures]
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(header))]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small stores, one run of each (a smoke run)")
    parser.add_argument("--only", action="append", metavar="SECTION", help=f"one of {', '.join(sections())}")
    parser.add_argument("--output", type=Path, default=HERE / "results.json", help="where to write the JSON")
    parser.add_argument("--install", choices=("wheel", "editable"),
                        help="tokenvault from its wheel in a throwaway virtualenv (default), or this virtualenv's "
                             "editable install (default with --quick)")
    args = parser.parse_args(argv)
    install = args.install or ("editable" if args.quick else "wheel")
    if install == "wheel" and installed_as() != "wheel":
        return _in_wheel_venv(list(sys.argv[1:] if argv is None else argv))
    # SIGTERM unwinds like Ctrl-C: the sections' finally blocks stop the servers they started
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    available = sections()
    chosen = args.only or list(available)
    unknown = [name for name in chosen if name not in available]
    if unknown:
        parser.error(f"unknown section(s) {', '.join(unknown)}; available: {', '.join(available)}")
    precompile()
    figures: list[Figure] = []
    errors: dict[str, str] = {}
    started = time.perf_counter()
    for name in chosen:
        print(f"… {name}", file=sys.stderr, flush=True)
        section_started = time.perf_counter()
        got, error = run_section(name, args.quick)
        figures.extend(got)
        if error:
            errors[name] = error
        print(f"  {name}: {len(got)} figures in {time.perf_counter() - section_started:.1f} s", file=sys.stderr)
    print(table(figures))
    result = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "quick": args.quick,
        "machine": {"python": platform.python_version(), "platform": platform.platform(),
                    "processor": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
                    "load_average_at_end": [round(x, 2) for x in os.getloadavg()]},
        "install": installed_as(),
        "seconds": round(time.perf_counter() - started, 1),
        "figures": [_finite(f.as_json()) for f in figures],
        "errors": errors,
    }
    args.output.write_text(json.dumps(result, indent=2, allow_nan=False) + "\n")
    for name, error in errors.items():
        print(f"section {name} failed: {error}", file=sys.stderr)
    return 1 if errors else 0


def _in_wheel_venv(argv: list[str]) -> int:
    """Run these benchmarks again in a throwaway virtualenv with tokenvault installed from its wheel."""
    import shutil
    import subprocess
    import tempfile

    base = Path(tempfile.mkdtemp(prefix="tv-bench-wheel-"))
    try:
        print("… building the wheel and a virtualenv to install it in", file=sys.stderr, flush=True)
        python = wheel_venv(base)
        if "--output" not in argv:
            argv = [*argv, "--output", str(HERE / "results.json")]
        env = dict(os.environ, **{INSTALL_ENV: "wheel", TOOLS_ENV: str(Path(sys.executable).parent)})
        return subprocess.run([str(python), str(Path(__file__).resolve()), *argv], env=env).returncode
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _finite(value: Any) -> Any:
    """NaN (a figure that could not be measured) as null: results.json stays strict JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


if __name__ == "__main__":
    sys.exit(main())
