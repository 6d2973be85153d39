"""Top-level commands: init, doctor."""

from __future__ import annotations

import stat
from pathlib import Path
from typing import Annotated, Optional

import typer

from .. import render
from ..state import state

JsonOpt = Annotated[bool, typer.Option("--json", help="One JSON document on stdout.")]


def register(app: typer.Typer) -> None:
    app.command()(init)
    app.command()(doctor)


def init(
    key_provider: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option("--key-provider", help="keyring | file | env | vault-transit; recorded for later commands."),
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Create the home (0700), the store (0600) and the master key. Idempotent; never replaces a key.

    The key provider is the one named here (or by the global --key-provider / TOKENVAULT_KEY_PROVIDER),
    else the OS keyring when a real one exists; on a headless machine init stops and names the others.
    """
    from meta_tokenvault.config import write_config
    from meta_tokenvault.wiring import choose_key_provider

    if key_provider is not None:
        state.flags["key_provider"] = key_provider
        state._settings = None
    settings = state.settings()
    provider = choose_key_provider(settings, None)
    settings = settings.with_overrides(key_provider=provider)
    state._settings = settings
    manager = state.manager(create=True)
    result = manager.initialize(provider)
    if not settings.config_path.exists():
        write_config(settings.config_path, {"key_provider": provider, "backend": settings.backend})
    result.update(home=str(settings.home), database=manager.store.display_url, backend=settings.backend)
    _warn_if_shared(settings.home)
    if json_out:
        render.emit_json(result)
        return
    if result["created"]:
        render.ok(f"Initialised tokenvault in {settings.home} (key provider: {provider}, key {result['key_id']}).")
    else:
        render.ok(f"Already initialised in {settings.home}; the existing key {result['key_id']} was kept.")


def _warn_if_shared(home: Path) -> None:
    """A home that existed before init keeps its mode; say so if other users can enter it (never chmod behind
    the user's back: it may be a folder they share on purpose)."""
    try:
        mode = stat.S_IMODE(home.stat().st_mode)
    except OSError:
        return  # no local home (e.g. PostgreSQL and nothing written there)
    if mode & 0o077:
        render.info(f"warning: {home} existed already with mode {mode:o}: other users can list it. The files in it "
                    f"are 0600, but run `chmod 700 {home}` unless you share that folder on purpose.")


def doctor(json_out: JsonOpt = False) -> None:
    """What is configured, what is reachable, what is wrong and how to fix it. Exit 5 if anything fails."""
    from meta_tokenvault.errors import VaultError

    settings = state.settings()
    config = [("home", str(settings.home)), ("database", settings.database_url.split("@")[-1]),
              ("key provider", settings.key_provider or "(as recorded by init)"), ("backend", settings.backend),
              ("graph", f"{settings.graph_url}/{settings.graph_version}")]
    try:
        checks = state.manager().doctor()
    except VaultError as exc:
        from meta_tokenvault.service import DoctorCheck

        checks = [DoctorCheck("store", False, exc.message, exc.hint)]
    if json_out:
        render.emit_json({"config": dict(config),
                          "checks": [{"name": c.name, "ok": c.ok, "detail": c.detail, "fix": c.fix} for c in checks]})
    else:
        render.keyvalues(config)
        render.table(None, ["check", "", "detail", "fix"],
                     [(c.name, "ok" if c.ok else "FAIL", c.detail, c.fix) for c in checks], wrap=("detail", "fix"))
    if not all(c.ok for c in checks):
        raise typer.Exit(5)
