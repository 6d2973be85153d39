"""SQLite store, local backend, master key in the OS keyring (the desktop default).

A headless benchmark machine has no OS keyring, so the keyring is ``keyrings.alt``'s file-backed
``PlaintextKeyring`` chosen explicitly with ``PYTHON_KEYRING_BACKEND`` (what the tests use too): the cost
measured is tokenvault's and the ``keyring`` package's, not a desktop keyring daemon's (a D-Bus Secret
Service call adds its own round trip). ``reveal`` and ``exec -- true``, fast and full path, side by side
with ``python -c pass``. Goal (issue 16): <= 2.5x ``python -c pass``, as the file key provider.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from harness import Figure, base_env, compare, make_configured_home, read_commands, read_figures

SECTION = "keyring"


def run(quick: bool) -> list[Figure]:
    runs, warmup = (1, 0) if quick else (21, 2)
    with tempfile.TemporaryDirectory(prefix="tv-bench-keyring-") as tmp:
        base = Path(tmp)
        env = base_env(base / "home", TOKENVAULT_KEY_PROVIDER="keyring",
                       PYTHON_KEYRING_BACKEND="keyrings.alt.file.PlaintextKeyring",
                       XDG_DATA_HOME=str(base / "xdg-data"), XDG_CONFIG_HOME=str(base / "xdg-config"))
        label = make_configured_home(base, env)
        timings = compare(read_commands(env, label), runs=runs, warmup=warmup)
    return read_figures(SECTION, timings, goal_ratio=2.5, goal="<= 2.5x")


if __name__ == "__main__":  # pragma: no cover
    print(json.dumps([f.as_json() for f in run(quick=True)], indent=2))
