"""The docs' runnable Python examples run as written (a stale example is a user's first error)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

DOCS = Path(__file__).resolve().parents[1] / "docs"


def python_blocks(markdown: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", markdown, flags=re.S)


def test_the_simulator_python_usage_example_runs() -> None:
    """docs/simulator.md, "Python usage": the young admin's mint meets the seven-day rule, then works a week later.
    Everything from the ``with sim.serve()`` line on is a sketch (``...``), so it runs up to there."""
    section = (DOCS / "simulator.md").read_text().split("## Python usage", 1)[1]
    runnable = python_blocks(section)[0].split("\nwith sim.serve()", 1)[0]
    ns: dict[str, Any] = {}
    exec(compile(runnable, "docs/simulator.md", "exec"), ns)  # noqa: S102 - our own docs
    demo = ns["demo"]
    again = ns["client"].post(f"/{demo.new_admin_id}/access_tokens", data={
        "business_app": demo.app_id, "scope": "whatsapp_business_management",
        "access_token": demo.admin_token, "appsecret_proof": ns["proof"]})
    assert "access_token" in again.json()  # seven days on, the same mint works
