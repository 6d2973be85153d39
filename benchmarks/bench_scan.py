"""Leak scan: `tokenvault scan` against `detect-secrets scan` on the same generated tree.

The tree (about 210 MB; 2 MB with ``--quick``): log-like and source-like text files of many sizes (a few KB to
40 MB, so some tokens sit across tokenvault's 8 MiB read boundary), and binaries (random bytes, like core files
or ``.pyc``). 50 Meta-token-shaped values are planted in it at random places, text and binary: 10 are stored in
the vault (a home with 1,000 other tokens), 40 are not. Measured, one after the other on the same tree:

* ``tokenvault scan TREE --json``: wall time, MB/s, peak memory (resident set of the process tree, sampled),
  and whether all 10 stored tokens were found *and named* (their labels) and the 40 others listed as unknown;
* ``detect-secrets scan --all-files TREE`` (PyPI ``detect-secrets``, the benchmark extra): the same figures,
  and how many results it reported. It is skipped (figures NaN) when not installed.

Goal: tokenvault takes less time than detect-secrets. The page cache is warmed by one unmeasured read of the
tree first, so both read from memory; tokenvault runs ``RUNS`` times (1 with --quick), median kept;
detect-secrets once (it takes minutes on the full tree; ``BENCH_SCAN_SKIP_DETECT=1`` leaves it out), from
inside the tree (see :func:`run`). One AWS example key is planted as detect-secrets' positive control: its
result count proves it read the files.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import statistics
import string
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from harness import Figure, base_env, make_home, run_once, tool

SECTION = "scan"
STORED, UNKNOWN = 10, 40
RUNS = 3
_ALNUM = string.ascii_letters + string.digits
_WORDS = ("GET", "POST", "/v24.0/me/messages", "200", "429", "user", "session", "started", "finished", "worker",
          "INFO", "DEBUG", "WARN", "request_id", "latency_ms", "phone_number_id", "template", "delivered", "read",
          "def", "return", "import", "class", "self", "None", "True", "for", "in", "if", "else", "value", "config")


def _token(rng: random.Random) -> str:
    return "EAA" + "".join(rng.choices(_ALNUM, k=rng.randint(175, 190)))


def _text_block(rng: random.Random, size: int) -> bytes:
    lines, total = [], 0
    while total < size:
        words = " ".join(rng.choices(_WORDS, k=rng.randint(4, 14)))
        line = f"2026-11-29T{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:{rng.randint(0, 59):02d}Z {words} " \
               f"id={rng.getrandbits(48):012x}\n"
        lines.append(line)
        total += len(line)
    return "".join(lines).encode()


def make_tree(root: Path, total_mb: int, rng: random.Random, tokens: Sequence[str]) -> dict[str, Any]:
    """Write the tree; plant each token once (a third of them in binaries). Returns what was written."""
    blocks = [_text_block(rng, 1 << 20) for _ in range(6)]
    sizes: list[tuple[str, int]] = []
    budget = total_mb << 20
    big = [40 << 20, 24 << 20, 9 << 20] if total_mb >= 100 else [1 << 20]
    for i, size in enumerate(big):
        sizes.append((f"logs/big-{i}.log", size))
        budget -= size
    binary_budget = budget // 10
    n = 0
    while binary_budget > 0:
        size = min(binary_budget, rng.choice([64 << 10, 512 << 10, 2 << 20]))
        sizes.append((f"bin/blob-{n:03d}.{rng.choice(['core', 'pyc', 'bin'])}", size))
        binary_budget -= size
        budget -= size
        n += 1
    n = 0
    while budget > 0:
        size = min(budget, rng.choice([4 << 10, 40 << 10, 300 << 10, 1 << 20, 3 << 20]))
        sizes.append((f"src/pkg{n % 17:02d}/mod{n:04d}.{rng.choice(['py', 'txt', 'log', 'json'])}", size))
        budget -= size
        n += 1
    planted: dict[str, list[str]] = {}
    for token in tokens:
        path, _size = rng.choice([s for s in sizes if s[0].startswith("bin/")] if rng.random() < 0.33 else sizes)
        planted.setdefault(path, []).append(token)
    # one stored token right across the 8 MiB read boundary of the biggest file
    boundary = (8 << 20) - 50
    for rel, size in sizes:
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if rel.startswith("bin/"):
            data = bytearray(rng.randbytes(size))
        else:
            parts, length = [], 0
            while length < size:
                block = blocks[rng.randrange(len(blocks))]
                start = rng.randrange(len(block) // 2)
                parts.append(block[start:start + size - length])
                length += len(parts[-1])
            data = bytearray(b"".join(parts))
        used: list[int] = []
        for token in planted.get(rel, []):
            at = boundary if rel == "logs/big-0.log" and size > boundary + 400 and token == tokens[0] else -1
            while at < 0 or any(abs(at - other) < 400 for other in used):  # planted values never overlap
                at = rng.randrange(0, max(1, size - 400))
            used.append(at)
            line = f"\nWHATSAPP_TOKEN={token}\n".encode()
            data[at:at + len(line)] = line
        path.write_bytes(bytes(data[:size]))
    # a positive control for detect-secrets (its AWS key plugin flags this documented example key)
    (root / "src" / "settings.py").write_text('AWS_ACCESS_KEY_ID = "AKIAIOSFODNN7EXAMPLE"\n')
    return {"files": len(sizes), "bytes": sum(s for _r, s in sizes), "binaries": sum(r.startswith("bin/")
                                                                                      for r, _s in sizes)}


def measure(argv: Sequence[str], env: dict[str, str], cwd: Path | None = None,
            ) -> tuple[float, int, subprocess.CompletedProcess[bytes]]:
    """Wall time, peak resident memory of the process and its children (sampled every 20 ms), the result."""
    import psutil

    started = time.perf_counter()
    proc = subprocess.Popen(list(argv), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=cwd)
    peak = [0]
    stop = threading.Event()

    def sample() -> None:
        try:
            parent = psutil.Process(proc.pid)
            while not stop.is_set():
                try:
                    total = parent.memory_info().rss + sum(c.memory_info().rss for c in parent.children(True))
                except psutil.Error:
                    total = 0
                peak[0] = max(peak[0], total)
                stop.wait(0.02)
        except psutil.Error:
            pass

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out, err = proc.communicate(timeout=3600)
    elapsed = time.perf_counter() - started
    stop.set()
    sampler.join()
    return elapsed, peak[0], subprocess.CompletedProcess(list(argv), proc.returncode, out, err)


def run(quick: bool) -> list[Figure]:
    total_mb = 2 if quick else 210
    runs = 1 if quick else RUNS
    detect_runs = 1  # detect-secrets reads about 0.2-1 MB/s: one run of it on the full tree is minutes
    rng = random.Random(20261129)
    stored = {f"leak-{i:02d}": _token(rng) for i in range(STORED)}
    others = [_token(rng) for _ in range(UNKNOWN)]
    tv = tool("tokenvault")
    try:
        detect = None if os.environ.get("BENCH_SCAN_SKIP_DETECT") == "1" else tool("detect-secrets")
    except FileNotFoundError:
        detect = None
    with tempfile.TemporaryDirectory(prefix="tv-bench-scan-") as tmp:
        base = Path(tmp)
        home, _labels = make_home(base, 10 if quick else 1000)
        env = base_env(home)
        for label, value in stored.items():
            run_once([tv, "token", "import", label, "--business", "acme", "--system-user", "3003", "--scopes",
                      "whatsapp_business_messaging", "--no-verify"], env, stdin=value + "\n")
        tree = base / "tree"
        planted = [*stored.values(), *others]
        rng.shuffle(planted)
        planted.remove(stored["leak-00"])
        planted.insert(0, stored["leak-00"])  # the one across the read boundary
        shape = make_tree(tree, total_mb, rng, planted)
        for path in tree.rglob("*"):  # warm the page cache: both tools read from memory
            if path.is_file():
                path.read_bytes()
        tv_samples: list[tuple[float, int]] = []
        tv_inside: list[float] = []  # the report's own seconds: the scan without the process start-up
        ds_samples: list[tuple[float, int]] = []
        tv_doc: dict[str, Any] = {}
        ds_results = 0
        for _ in range(runs):
            seconds, peak, done = measure([tv, "scan", str(tree), "--json"], env)
            if done.returncode != 9:
                raise RuntimeError(f"tokenvault scan exited {done.returncode}: {done.stderr.decode()[-2000:]}")
            tv_samples.append((seconds, peak))
            tv_doc = json.loads(done.stdout)
            tv_inside.append(tv_doc["seconds"])
            if detect is not None and len(ds_samples) < detect_runs:
                # run from inside the tree: given an absolute path outside its working folder, detect-secrets
                # 1.5 scans nothing (0 results in a second); the AWS key planted below proves it scanned
                seconds, peak, done = measure([detect, "scan", "--all-files", "."], dict(env, HOME=str(base)),
                                              cwd=tree)
                if done.returncode != 0:
                    raise RuntimeError(f"detect-secrets exited {done.returncode}: {done.stderr.decode()[-2000:]}")
                ds_samples.append((seconds, peak))
                ds_results = sum(len(v) for v in json.loads(done.stdout).get("results", {}).values())
        shutil.rmtree(tree, ignore_errors=True)
    found = {f["label"] for f in tv_doc["findings"]}
    last4 = {f["last4"] for f in tv_doc["findings"]}
    named = found == set(stored) and last4 == {v[-4:] for v in stored.values()}
    mb = shape["bytes"] / 1e6
    tv_time = statistics.median(s for s, _p in tv_samples)
    tv_peak = max(p for _s, p in tv_samples) / 1e6
    load = [round(x, 2) for x in os.getloadavg()]
    figures = [
        Figure(SECTION, f"tokenvault scan, {mb:.0f} MB tree", round(mb / tv_time, 1), "MB/s",
               detail={"seconds": round(tv_time, 2), "runs": len(tv_samples), "tree": shape,
                       "load_average": load}),
        Figure(SECTION, "tokenvault scan: the scan alone (start-up excluded)",
               round(mb / statistics.median(tv_inside), 1), "MB/s",
               detail={"seconds": round(statistics.median(tv_inside), 3)}),
        Figure(SECTION, "tokenvault scan: peak memory", round(tv_peak, 1), "MB"),
        Figure(SECTION, f"tokenvault scan: stored tokens found and named (of {STORED})", float(len(found)), "tokens",
               goal=f"{STORED} of {STORED}, named; {UNKNOWN} unknown",
               ok=named and len(found) == STORED and tv_doc["unknown_total"] == UNKNOWN,
               detail={"findings": tv_doc["findings_total"], "unknown": tv_doc["unknown_total"],
                       "unknown_expected": UNKNOWN}),
    ]
    if ds_samples:
        ds_time = statistics.median(s for s, _p in ds_samples)
        ds_peak = max(p for _s, p in ds_samples) / 1e6
        figures += [
            Figure(SECTION, f"detect-secrets scan --all-files, {mb:.0f} MB tree", round(mb / ds_time, 2), "MB/s",
                   detail={"seconds": round(ds_time, 2), "runs": len(ds_samples), "results": ds_results}),
            Figure(SECTION, "detect-secrets scan: peak memory", round(ds_peak, 1), "MB"),
            Figure(SECTION, "tokenvault scan time / detect-secrets time", round(tv_time, 2), "s",
                   round(tv_time / ds_time, 4), "detect-secrets scan --all-files", "< 1x", tv_time < ds_time),
        ]
    else:
        figures.append(Figure(SECTION, "detect-secrets scan --all-files (not run: BENCH_SCAN_SKIP_DETECT=1, or "
                                       "not installed: pip install '.[bench]')", float("nan"), "MB/s"))
    return figures


if __name__ == "__main__":  # pragma: no cover
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    print(json.dumps([f.as_json() for f in run(quick="--quick" in sys.argv)], indent=2))
