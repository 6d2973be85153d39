"""pytest plugin: a leak scan of the whole suite's temp folders, at the end of the session.

Every token a Graph API simulator mints or issues in this process is remembered (the simulator knows each
value it creates). When the session ends, every file left under the session's temp folder (databases and
their journals, homes, rendered files, logs, servers' data folders) is searched for those values: raw, in
hex, and inside base64 / urlsafe base64 text at any alignment. A hit fails the session with the file and
the form; the value itself is never printed.

Cheap and deterministic: one regular-expression pass per file (the values all look like ``EAA`` + letters
and digits, so candidates are found by shape and then looked up in a set), base64 decoding only of
base64-looking runs. Files that hold tokens by design are skipped: the simulator's own state files
(``"format": "tokenvault-graph-sim/1"``). tests/test_leak_scan.py is the thorough, per-artefact scan of
one CLI session; this one is the net under every other test.

Under pytest-xdist each worker scans its own temp folder (``getbasetemp()``) for the values it saw.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from meta_tokenvault.testing.graph_sim import GraphSimulator

SIM_STATE_MARKER = b'"format": "tokenvault-graph-sim/1"'
_RAW = re.compile(rb"EAA[A-Za-z0-9]{20,}")
_HEX = re.compile(rb"454141(?:[0-9a-fA-F]{2}){20,}")
_B64 = re.compile(rb"[A-Za-z0-9+/_-]{40,}")
MAX_FILE = 64 * 1024 * 1024

_seen: set[str] = set()


def _remembering(original: Callable[..., Any]) -> Callable[..., Any]:
    def create_token(self: GraphSimulator, *args: Any, **kwargs: Any) -> Any:
        record = original(self, *args, **kwargs)
        _seen.add(record.value)
        return record

    create_token.__wrapped__ = original  # type: ignore[attr-defined]
    return create_token


def _known(run: bytes, values: set[str]) -> str | None:
    """The known value ``run`` (a maximal ``EAA…`` run) is or starts with, if any."""
    text = run.decode("ascii", "replace")
    if text in values:
        return text
    for length in range(178, min(len(text), 194)):  # EAA + 175..190 characters, then something else
        if text[:length] in values:
            return text[:length]
    return None


def _decoded(data: bytes) -> Iterator[tuple[str, bytes]]:
    for match in _HEX.finditer(data):
        run = match.group()
        try:
            yield "hex", binascii.unhexlify(run[: len(run) // 2 * 2])
        except binascii.Error:
            pass
    for match in _B64.finditer(data):
        run = match.group()
        for name, decode in (("base64", base64.b64decode), ("urlsafe", base64.urlsafe_b64decode)):
            for shift in range(4):  # where the encoded value's groups start is not known: try each
                chunk = run[shift:]
                chunk = chunk[: len(chunk) - 1] if len(chunk) % 4 == 1 else chunk
                chunk += b"=" * (-len(chunk) % 4)  # the run stops before any padding: restore it
                try:
                    yield name, decode(chunk)
                except (binascii.Error, ValueError):
                    pass


def scan_file(path: Path, values: set[str]) -> list[str]:
    """The forms in which a known value occurs in ``path`` (``[]``: clean)."""
    try:
        if path.stat().st_size > MAX_FILE:
            return ["(too large to scan)"]
        data = path.read_bytes()
    except OSError:
        return []
    if SIM_STATE_MARKER in data:
        return []
    found = [f"raw …{v[-4:]}" for m in _RAW.finditer(data) if (v := _known(m.group(), values))]
    if b"4541" in data or _B64.search(data):
        for form, decoded in _decoded(data):
            found += [f"{form} …{v[-4:]}" for m in _RAW.finditer(decoded) if (v := _known(m.group(), values))]
    return sorted(set(found))


def scan_tree(root: Path, values: set[str], stats: dict[str, int] | None = None) -> dict[str, list[str]]:
    """``{file: forms}`` for every file under ``root`` holding a known value; ``stats`` gets files/bytes."""
    hits: dict[str, list[str]] = {}
    for path in root.rglob("*"):
        if path.is_file() and not path.is_symlink():
            found = scan_file(path, values)
            if stats is not None:
                stats["files"] = stats.get("files", 0) + 1
                stats["bytes"] = stats.get("bytes", 0) + path.stat().st_size
            if found:
                hits[str(path.relative_to(root))] = found
    return hits


@pytest.fixture(scope="session", autouse=True)
def _leak_scan_of_the_session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    original = GraphSimulator.create_token
    GraphSimulator.create_token = _remembering(original)  # type: ignore[method-assign]
    try:
        yield
    finally:
        GraphSimulator.create_token = original  # type: ignore[method-assign]
    if not _seen:
        return
    root = tmp_path_factory.getbasetemp()
    stats: dict[str, int] = {}
    hits = scan_tree(root, _seen, stats)
    _report(tmp_path_factory, {"distinct_values": len(_seen), "forms": 4, **stats, "hits": len(hits)})
    if hits:
        lines = "\n".join(f"  {name}: {', '.join(forms)}" for name, forms in sorted(hits.items()))
        pytest.fail(f"leak scan: {len(hits)} file(s) under {root} hold a token the simulator minted "
                    f"({len(_seen)} values searched):\n{lines}", pytrace=False)


def _report(tmp_path_factory: pytest.TempPathFactory, figures: dict[str, int]) -> None:
    """One JSON line for docs/reliability.md, where tests/reliability.py writes its figures."""
    import json
    import os

    from reliability import FIGURES_FILE

    target = Path(FIGURES_FILE or tmp_path_factory.getbasetemp() / "reliability-figures.jsonl")
    line = json.dumps({"section": "suite-leak-scan", "test": "session", "figures": figures}, sort_keys=True)
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        os.write(fd, (line + "\n").encode())
    finally:
        os.close(fd)
