"""`tokenvault backend ...`: where secret values live, and moving them between local and Vault."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Annotated, Any

import typer

from .. import render
from ..state import read_vault_secret_id, state

if TYPE_CHECKING:
    from meta_tokenvault.ports.secrets import SecretBackend
    from meta_tokenvault.service import TokenManager

app = typer.Typer(help="Where token values live: status, and moving them between local and Vault.",
                  no_args_is_help=True)
JsonOpt = Annotated[bool, typer.Option("--json", help="One JSON document on stdout.")]


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="backend")


def _explicit() -> str | None:
    """The backend named on purpose (--backend, then TOKENVAULT_BACKEND), as wiring sees it."""
    flag = state.flags.get("backend")
    return str(flag) if flag else (os.environ.get("TOKENVAULT_BACKEND") or None)


def _manager() -> TokenManager:
    # the store's recorded backend, even when TOKENVAULT_BACKEND already names the other one:
    # these commands exist to resolve exactly that disagreement
    return state.manager(refuse_backend_contradiction=False)


def _other_backend(manager: TokenManager, name: str) -> SecretBackend:
    from meta_tokenvault.wiring import build_secret_backend, build_vault_client, shared_vault_client

    settings = state.settings()
    client = shared_vault_client(manager) or (lambda: build_vault_client(settings, secret_id=read_vault_secret_id))
    return build_secret_backend(settings.with_overrides(backend=name), manager.store, manager.keys,
                                vault_client=client)


@app.command("migrate")
def migrate(
    to: Annotated[str, typer.Option("--to", help="The backend to move every secret to: local | vault.")],
    purge_source: Annotated[bool, typer.Option(
        "--purge-source", help="After the switch, destroy the source copies (each re-checked first).")] = False,
    json_out: JsonOpt = False,
) -> None:
    """Copy every token version and business secret to TO, verify each, then switch. Safe to re-run.

    Nothing is switched until every secret reads back identical from TO; an interrupted run leaves
    the current backend configured and is finished by running it again.
    """
    from meta_tokenvault.config import BACKENDS
    from meta_tokenvault.errors import UsageError
    from meta_tokenvault.migrate import BackendMigrator

    if to not in BACKENDS:
        raise UsageError(f"Unknown secret backend {to!r}.", hint=f"Choose one of: {', '.join(BACKENDS)}.")
    manager = _manager()
    if manager.secrets.name == to:  # already switched: only relabel / purge the other one
        target, source = manager.secrets, _other_backend(manager, "vault" if to == "local" else "local")
    else:
        source, target = manager.secrets, _other_backend(manager, to)

    def progress(phase: str, done: int, total: int) -> None:
        if done == total or done % 25 == 0:
            render.info(f"{phase}: {done}/{total}")

    report = BackendMigrator(manager, source, target, progress=progress).run(purge_source=purge_source)
    explicit = _explicit()
    if json_out:
        render.emit_json({**report.as_json(), "recorded": to})
    elif report.was_current:
        render.ok(f"The store already uses {to}; {report.relabelled} version label(s) repaired"
                  + (f", {report.purged} {source.name} copies destroyed." if purge_source else "."))
    else:
        render.ok(f"Moved {report.total} secret(s) from {source.name} to {to} (copied {report.copied}, already "
                  f"there {report.already}); every one verified; the store now uses {to}"
                  + (f"; {report.purged} {source.name} copies destroyed." if purge_source else "."))
    if report.missing:
        render.info(f"warning: {len(report.missing)} secret(s) had no value in {source.name} (destroyed earlier), "
                    f"so nothing was moved for them: {', '.join(report.missing)}")
    if explicit and explicit != to:
        render.info(f"note: --backend/TOKENVAULT_BACKEND says {explicit}; set it to {to} or unset it "
                    "(other commands refuse the contradiction).")


@app.command("status")
def status(json_out: JsonOpt = False) -> None:
    """The configured and the recorded backend, and how many token versions each holds."""
    from meta_tokenvault.migrate import backend_counts, recorded_backend

    manager = _manager()
    settings = state.settings()
    explicit = _explicit()
    recorded = recorded_backend(manager)
    counts = backend_counts(manager)
    in_use = manager.secrets.name
    problems: list[str] = []
    if explicit and recorded and explicit != recorded:
        problems.append(f"--backend/TOKENVAULT_BACKEND says {explicit} but the store records {recorded}: "
                        f"other commands refuse to run; unset it or run `tokenvault backend migrate --to {explicit}`.")
    stale = {name: n for name, n in counts.items() if name != in_use}
    if stale:
        problems.append(f"{sum(stale.values())} token version(s) are labelled {', '.join(sorted(stale))} while the "
                        f"store uses {in_use}: an interrupted migration; run `tokenvault backend migrate --to "
                        f"{in_use}` to finish it (or the other backend to go back).")
    data: dict[str, Any] = {
        "configured": explicit or settings.backend, "explicit": explicit is not None, "recorded": recorded,
        "in_use": in_use, "versions_per_backend": counts,
        "business_secrets": 2 * len(manager.store.list_businesses()), "problems": problems,
    }
    if json_out:
        render.emit_json(data)
        return
    render.keyvalues([
        ("configured", f"{data['configured']} ({'explicit' if explicit else 'config.toml/default'})"),
        ("recorded", recorded or "(not recorded: a store from before migrations; the configured one is used)"),
        ("in use", in_use),
        ("token versions", ", ".join(f"{n} in {name}" for name, n in sorted(counts.items())) or "none"),
        ("business secrets", f"{data['business_secrets']} in {in_use}"),
    ])
    for problem in problems:
        render.info(f"warning: {problem}")
