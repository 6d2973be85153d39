"""``tokenvault demo``: the whole story, offline, in a throwaway home.

The real service, store, crypto and Graph API client run against the built-in simulator (an httpx
transport, no network); one simulated clock drives both sides so the seven-day window can be
crossed in a second. Each step is reported to a callback as a :class:`DemoStep`; the CLI renders
them. Nothing outside the throwaway home is touched, and the home is removed afterwards unless
the caller keeps it.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import Deferred
from .types import Secret, utcnow

if TYPE_CHECKING:
    import httpx

    from .testing.graph_sim import GraphSimulator

WHATSAPP_SCOPES = ("whatsapp_business_management", "whatsapp_business_messaging")


@dataclass(frozen=True)
class DemoStep:
    """One step of the story: a title, what happened (lines for people), and facts for --json."""

    title: str
    lines: tuple[str, ...] = ()
    facts: dict[str, Any] = field(default_factory=dict)


@dataclass
class DemoReport:
    home: str
    kept: bool
    steps: list[DemoStep] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {"home": self.home, "kept": self.kept,
                "steps": [{"title": s.title, "lines": list(s.lines), **s.facts} for s in self.steps]}


def run_demo(*, keep: bool = False, home: Path | None = None,
             on_step: Callable[[DemoStep], None] | None = None,
             simulator: GraphSimulator | None = None, graph_client: httpx.Client | None = None) -> DemoReport:
    """Run the demo; returns what happened. Raises only on a bug (every expected refusal is part of the story).

    ``simulator`` (a :meth:`GraphSimulator.demo_world`) and ``graph_client`` (an httpx client on its transport,
    e.g. wrapped to record every request) may be given by tests; the caller closes a client it gave.
    """
    import httpx

    from .config import Settings
    from .testing.graph_sim import GraphSimulator, SimClock
    from .wiring import build_manager

    base = Path(tempfile.mkdtemp(prefix="tokenvault-demo-")) if home is None else home
    report = DemoReport(home=str(base), kept=keep)

    def step(title: str, *lines: str, **facts: Any) -> None:
        s = DemoStep(title, tuple(lines), facts)
        report.steps.append(s)
        if on_step is not None:
            on_step(s)

    if simulator is None:
        sim, world = GraphSimulator.demo_world(clock=SimClock(utcnow()))
    else:
        if simulator.demo is None:
            raise ValueError("run_demo needs a simulator made by GraphSimulator.demo_world()")
        sim, world = simulator, simulator.demo
    client = graph_client if graph_client is not None else httpx.Client(transport=sim.transport())
    settings = Settings(home=base / "home", key_provider="file", backend="local",
                        graph_url="https://graph.facebook.com")
    manager = build_manager(settings, create=True, graph_client=client, clock=sim.clock, environ={})
    try:
        init = manager.initialize("file")
        step("1. init", f"home {settings.home} (0700), SQLite store (0600), master key {init['key_id']} in a 0600 "
             "key file", "(on a desktop the default key provider is the OS keyring)", key_id=init["key_id"])

        manager.add_business("acme", world.business_id, world.app_id, Secret(world.app_secret),
                             Secret(world.admin_token))
        step("2. business add acme", f"business {world.business_id}, app {world.app_id}; the app secret and the "
             "admin token were read from stdin and stored encrypted")

        views = manager.sync_system_users("acme")
        width = max(len(v.record.name) for v in views)
        lines = [f"{v.record.name:<{width}}  {v.record.role:<8}  created {v.record.created_at:%Y-%m-%d %H:%M} "
                 f"({v.record.age_source.value})  " + _verdict(v) for v in views]
        step("3. system-users sync", *lines, system_users=[v.as_json() for v in views])

        young = manager.generate_token("staging-whatsapp", business="acme", scopes=WHATSAPP_SCOPES,
                                       system_user_id=world.new_admin_id)
        lines4 = [f"token generate through the one-hour-old admin: minted (…{young.last4}); tokenvault asks Meta "
                  "instead of refusing on its own, and Meta allows it"]
        newco_waba = "3000000000043"
        _young_business(sim, manager, newco_waba)
        try:
            manager.provision("newco-whatsapp", business="newco", system_user="whatsapp_newco_sender",
                              waba_ids=[newco_waba])
            lines4.append("unexpected: Meta let a two-day-old admin create an admin system user")
            facts: dict[str, Any] = {}
        except Deferred as exc:
            lines4 += [f"provision newco-whatsapp in a two-day-old business: {exc.message}",
                       f"exit code {exc.exit_code}; reminder #{exc.reminder_id} recorded"]
            facts = {"exit_code": exc.exit_code, "reminder_id": exc.reminder_id,
                     "opens_at": exc.opens_at.isoformat() if exc.opens_at else None}
        step("4. Meta's seven-day rule, where Meta enforces it", *lines4, minted_young=young.as_json(), **facts)

        record = manager.generate_token("prod-whatsapp", business="acme", scopes=WHATSAPP_SCOPES)
        step("5. token generate prod-whatsapp", f"minted through the oldest admin "
             f"({record.provenance.system_user_id}), stored encrypted as v{record.version} (…{record.last4})",
             f"scopes {', '.join(record.provenance.scopes)}; WABAs {', '.join(record.provenance.waba_ids) or '-'}; "
             f"expires {'never' if record.expires_at is None else record.expires_at.isoformat()}",
             token=record.as_json())

        record, info = manager.verify("prod-whatsapp")
        step("6. token verify", f"debug_token: valid={info.is_valid}, app {info.app_id}, system user {info.user_id}, "
             f"type {info.type}", valid=info.is_valid)

        code, shown = _exec_child(manager)
        step("7. exec --mask", "a child process got WHATSAPP_TOKEN in its environment only (not argv, not ours) "
             f"and exited {code}", f"it printed the token; what reached the terminal: {shown!r}",
             child_exit=code, child_output=shown)

        old_secret = manager.reveal("prod-whatsapp", purpose="demo")
        outcome = manager.rotate("prod-whatsapp", reason="demo: scheduled rotation")
        step("8. token rotate", f"v{outcome.from_version} -> v{outcome.to_version} ({outcome.state}): minted, stored, "
             "verified, promoted, then the old token revoked at Meta",
             f"old token at the simulator: {sim.token_state(old_secret.reveal())}",
             outcome=outcome.as_json())

        leaked = manager.reveal("prod-whatsapp", purpose="demo")
        outcome = manager.rotate("prod-whatsapp", compromised=True, reason="demo: pasted in chat")
        step("9. token rotate --compromised", "the leaked token was revoked FIRST "
             f"(simulator: {sim.token_state(leaked.reveal())}), then v{outcome.to_version} was minted",
             outcome=outcome.as_json())

        sim.clock.advance(days=7)
        due = manager.run_due()
        newco = manager.show_token("newco-whatsapp") if "newco-whatsapp" in due.completed else None
        journal = [r for r in manager.provisionings("newco") if r.label == "newco-whatsapp"]
        from .usecases.provision import done_so_far

        step("10. seven days later: run-due", f"completed: {', '.join(due.completed) or '-'}; "
             f"still waiting: {', '.join(due.still_waiting) or '-'}",
             *(done_so_far(r) for r in journal),
             f"newco-whatsapp is v{newco.version} ({newco.status.value}, source {newco.source.value})" if newco
             else "newco-whatsapp was not provisioned", run_due=due.as_json())

        history = manager.show_token("prod-whatsapp")
        step("11. token show prod-whatsapp", *[f"v{v.version} {v.status.value:<11} {v.source.value:<9} "
                                               f"…{v.last4} by system user {v.system_user_id}"
                                               for v in history.history])

        count = manager.verify_audit()
        leaks = _scan_for_tokens(settings.home, [t.value for t in sim.tokens])
        step("12. audit verify and a leak scan", f"{count} events, hash chain intact",
             f"{len(sim.tokens)} token values searched in every file of the home (store, audit trail, key file): "
             + (f"FOUND in {', '.join(leaks)}" if leaks else "none found"), events=count, leaks=leaks)
    finally:
        manager.close()
        if graph_client is None:
            client.close()
        if not keep and home is None:
            shutil.rmtree(base, ignore_errors=True)
    return report


def _young_business(sim: Any, manager: Any, waba: str) -> None:
    """A second business, with WABA ``waba``, whose only admin system user is two days old (registered as newco)."""
    biz, app_id, secret = "1000000000041", "2000000000042", "n" * 32
    _admin, token = sim.add_young_business(biz, app_id, secret, waba, name="NewCo", slug="newco")
    manager.add_business("newco", biz, app_id, Secret(secret), Secret(token))
    manager.sync_system_users("newco")


def _verdict(view: Any) -> str:
    if view.eligible:
        return "past the seven-day window"
    if view.record.role.upper() != "ADMIN":
        return str(view.reason)
    return f"seven-day window predicted to open {view.eligible_from:%Y-%m-%d %H:%M} UTC"


def _exec_child(manager: Any) -> tuple[int, str]:
    """``tokenvault exec --mask``'s code path: a child prints its token; returns its status and what we saw."""
    import os

    from .inject import ExecOptions, parse_token_specs, resolve_specs, run_command

    specs = parse_token_specs(["prod-whatsapp"])
    probe = ("import os, sys; t = os.environ['WHATSAPP_TOKEN']; print('token:', t); "
             "sys.exit(0 if t not in ' '.join(sys.argv) else 3)")
    read_end, write_end = os.pipe()
    try:
        code = run_command([sys.executable, "-c", probe], lambda: resolve_specs(manager, specs),
                           options=ExecOptions(mask=True), base_env={"PATH": os.environ.get("PATH", "/usr/bin")},
                           stdout_fd=write_end, stderr_fd=write_end)
    finally:
        os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        shown = pipe.read().decode(errors="replace").strip()
    return code, shown


def _scan_for_tokens(home: Path, values: list[str]) -> list[str]:
    """Files under ``home`` whose raw bytes contain any of ``values`` (there should be none)."""
    found = []
    for path in sorted(home.rglob("*")):
        if path.is_file():
            data = path.read_bytes()
            if any(v.encode() in data for v in values):
                found.append(str(path.relative_to(home)))
    return found


__all__ = ["DemoReport", "DemoStep", "run_demo"]
