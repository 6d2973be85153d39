"""Store scale: does reading one token stay as fast with 100,000 tokens stored as with 100, and how fast is
listing all of them?

Two homes are built (local backend, file key provider): one with 100 tokens, one with 100,000 (300 with
``--quick``), each token stored like ``token import`` stores it (token row, version row, sealed blob, audit
event). Measured side by side, interleaved:

* ``token show LABEL`` (a label in the middle) on both: goal large/small <= 1.2x;
* ``token reveal LABEL`` on both (decrypts and appends to the audit chain), for reference;
* ``token list --json`` on the large store: goal < 2 s, reported as rows per second; the small store's
  list, and the large one through the full path (``TOKENVAULT_FAST_PATH=0``: typer, SQLAlchemy), for
  reference;
* ``audit list --label LABEL --json`` on both (the trail has one event per token): an index, not a scan.

Before and after, in the same run: with ``TOKENVAULT_BENCH_REFERENCE`` set to another install's ``tokenvault``
(e.g. a virtualenv of an older commit, byte-compiled with ``python -m compileall``), its ``token list --json``
on the same store is interleaved with this tree's, its output checked to be byte for byte this tree's, and
the throughput of both is reported (wall and CPU).
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from harness import Figure, base_env, compare, make_home, ms, run_once, tool

SECTION = "store_scale"
SMALL = 100


def run(quick: bool) -> list[Figure]:
    large_n = 300 if quick else 100_000
    runs, list_runs, warmup = (1, 1, 0) if quick else (21, 7, 2)  # quick: a smoke run, one of each
    tv = tool("tokenvault")
    with tempfile.TemporaryDirectory(prefix="tv-bench-scale-") as tmp:
        base = Path(tmp)
        small_home, small_labels = make_home(base, SMALL)
        large_home, large_labels = make_home(base, large_n)
        small_env, large_env = base_env(small_home), base_env(large_home)
        small_label, large_label = small_labels[SMALL // 2], large_labels[large_n // 2]
        listed_text = run_once([tv, "token", "list", "--json"], large_env).stdout
        listed = json.loads(listed_text)
        if len(listed) != large_n:
            raise RuntimeError(f"token list --json returned {len(listed)} tokens, expected {large_n}")
        reference = os.environ.get("TOKENVAULT_BENCH_REFERENCE")
        if reference and run_once([reference, "token", "list", "--json"], large_env).stdout != listed_text:
            raise RuntimeError(f"{reference} token list --json does not print this tree's bytes")
        point = compare({
            "show small": ([tv, "token", "show", small_label], small_env),
            "show large": ([tv, "token", "show", large_label], large_env),
            "reveal small": ([tv, "token", "reveal", small_label], small_env),
            "reveal large": ([tv, "token", "reveal", large_label], large_env),
            "audit small": ([tv, "audit", "list", "--label", small_label, "--json"], small_env),
            "audit large": ([tv, "audit", "list", "--label", large_label, "--json"], large_env),
        }, runs=runs, warmup=warmup)
        lists = compare({
            "list small": ([tv, "token", "list", "--json"], small_env),
            "list large": ([tv, "token", "list", "--json"], large_env),
            "list large full": ([tv, "token", "list", "--json"], dict(large_env, TOKENVAULT_FAST_PATH="0")),
            **({"list large reference": ([reference, "token", "list", "--json"], large_env)} if reference else {}),
        }, runs=list_runs, warmup=min(warmup, 1))
    figures: list[Figure] = []
    for op, what in (("show", "token show"), ("reveal", "token reveal"), ("audit", "audit list --label")):
        small, large = point[f"{op} small"], point[f"{op} large"]
        ratio = large.median / small.median
        figures.append(Figure(SECTION, f"{what}, {SMALL} tokens", ms(small.median), "ms",
                              detail=small.summary()))
        figures.append(Figure(SECTION, f"{what}, {large_n:,} tokens", ms(large.median), "ms", round(ratio, 3),
                              f"{what}, {SMALL} tokens", "<= 1.2x" if op == "show" else "",
                              (ratio <= 1.2) if op == "show" else None, detail=large.summary()))
    small_list, large_list = lists["list small"], lists["list large"]
    figures.append(Figure(SECTION, f"token list --json, {SMALL} tokens", ms(small_list.median), "ms",
                          detail=small_list.summary()))
    figures.append(Figure(SECTION, f"token list --json, {large_n:,} tokens", ms(large_list.median), "ms",
                          round(large_list.median / small_list.median, 2), f"token list --json, {SMALL} tokens",
                          "< 2000 ms" if large_n >= 100_000 else "", (large_list.median < 2.0) if large_n >= 100_000
                          else None, detail=large_list.summary()))
    full_list = lists["list large full"]
    figures.append(Figure(SECTION, f"token list --json, {large_n:,} tokens (full path)", ms(full_list.median), "ms",
                          round(full_list.median / large_list.median, 2), f"token list --json, {large_n:,} tokens",
                          detail={**full_list.summary(), "env": "TOKENVAULT_FAST_PATH=0"}))
    figures.append(Figure(SECTION, f"token list --json, {large_n:,} tokens: CPU time", ms(large_list.cpu_median),
                          "ms", round(large_list.cpu_median / large_list.median, 2),
                          f"token list --json, {large_n:,} tokens", detail={"note": "user + system time of the "
                                                                             "process: what the machine's load adds "
                                                                             "to the wall time is not in it"}))
    rate = large_n / large_list.median
    big = large_n >= 100_000
    figures.append(Figure(SECTION, f"token list --json throughput, {large_n:,} tokens", round(rate), "rows/s",
                          goal=">= 100,000 rows/s" if big else "", ok=(rate >= 100_000) if big else None,
                          detail={"rows": large_n, "median_s": round(large_list.median, 3),
                                  "cpu_rows_per_s": round(large_n / large_list.cpu_median)}))
    if reference:
        ref = lists["list large reference"]
        figures.append(Figure(SECTION, f"token list --json throughput, {large_n:,} tokens, reference tree",
                              round(large_n / ref.median), "rows/s", round(ref.median / large_list.median, 2),
                              f"token list --json throughput, {large_n:,} tokens",
                              detail={**ref.summary(), "tokenvault": reference, "same_output": True,
                                      "cpu_rows_per_s": round(large_n / ref.cpu_median),
                                      "note": "ratio: this tree's throughput over the reference's (wall); "
                                              "CPU: " + f"{ref.cpu_median / large_list.cpu_median:.2f}x"}))
    return figures


if __name__ == "__main__":  # pragma: no cover
    print(json.dumps([f.as_json() for f in run(quick=True)], indent=2))
