"""Figures for docs/reliability.md, measured by the tests that prove each claim.

A test module defines ``figures = reliability.figures_fixture()``; a test then calls
``figures("section", name=value, ...)``. Each call appends one JSON line
``{"section", "test", "figures"}`` to a file and prints it (visible with ``pytest -s``). The file is
``$TOKENVAULT_FIGURES`` when set (one file for a whole run, also under ``-n 2``: each line is one
``O_APPEND`` write), else ``reliability-figures.jsonl`` in the session's pytest temp folder::

    TOKENVAULT_FIGURES=/tmp/figures.jsonl .venv/bin/python -m pytest -q -p no:cacheprovider -s \\
        tests/test_faults.py tests/test_leak_scan.py
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

FIGURES_ENV = "TOKENVAULT_FIGURES"
# read at import (collection), before tests/conftest.py clears every TOKENVAULT_* variable for each test
FIGURES_FILE = os.environ.get(FIGURES_ENV)
Recorder = Callable[..., None]


def recorder(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Recorder:
    """``figures(section, **values)``: record measured figures of this test (JSON line + print)."""
    target = Path(FIGURES_FILE or tmp_path_factory.getbasetemp() / "reliability-figures.jsonl")

    def record(section: str, **values: object) -> None:
        line = json.dumps({"section": section, "test": request.node.name, "figures": values}, sort_keys=True)
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            os.write(fd, (line + "\n").encode())
        finally:
            os.close(fd)
        print(f"\n[figures] {line}")

    return record


def figures_fixture() -> Any:
    """The ``figures`` fixture, for a test module to bind to that name."""

    @pytest.fixture(name="figures")
    def _figures(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Recorder:
        return recorder(request, tmp_path_factory)

    return _figures
