"""Replacing a business's admin token or app secret: checked with Meta first, nothing changed when refused."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from cli_support import CliRunner, served_business

from meta_tokenvault.testing.graph_sim import GraphSimulator

SCOPES = "whatsapp_business_management,whatsapp_business_messaging"


@pytest.fixture
def served(env_home: Path, monkeypatch: pytest.MonkeyPatch, cli: CliRunner) -> Iterator[tuple[GraphSimulator, object]]:
    with served_business(cli, monkeypatch) as (sim, world):
        yield sim, world


def test_a_new_admin_token_is_used_for_minting_and_the_old_one_can_be_revoked(
        cli: CliRunner, served: tuple[GraphSimulator, object]) -> None:
    sim, world = served
    new_admin = sim.issue_token(world.app_id, world.old_admin_id)  # type: ignore[attr-defined]
    res = cli("business", "set-admin-token", "acme", "--revoke-old", "--json", stdin=new_admin + "\n")
    assert res.code == 0, res.err
    assert res.json() == {"name": "acme", "admin_token_version": 2, "old_revoked": True}
    assert sim.token_state(world.admin_token) == "revoked"  # type: ignore[attr-defined]
    assert cli("token", "generate", "prod", "--business", "acme", "--scopes", SCOPES).code == 0
    mint = [r for r in sim.requests if r.path.endswith("/access_tokens")][-1]
    assert mint.access_token == new_admin  # the new admin token was the caller
    assert new_admin not in res.out + res.err


def test_a_refused_admin_token_changes_nothing(cli: CliRunner, served: tuple[GraphSimulator, object]) -> None:
    sim, world = served
    dead = sim.issue_token(world.app_id, world.old_admin_id)  # type: ignore[attr-defined]
    sim.revoke(dead)
    res = cli("business", "set-admin-token", "acme", stdin=dead + "\n")
    assert res.code == 6 and "not valid" in res.err and "nothing was changed" in res.err
    assert sim.token_state(world.admin_token) == "valid"  # type: ignore[attr-defined]
    assert cli("token", "generate", "prod", "--business", "acme", "--scopes", SCOPES).code == 0
    mint = [r for r in sim.requests if r.path.endswith("/access_tokens")][-1]
    assert mint.access_token == world.admin_token  # type: ignore[attr-defined]
    assert cli("business", "set-admin-token", "acme", stdin="  \n").code == 2  # empty input
    assert cli("business", "set-admin-token", "nope", stdin=dead + "\n").code == 3


def test_app_secret_is_checked_before_it_replaces_the_old_one(cli: CliRunner,
                                                              served: tuple[GraphSimulator, object]) -> None:
    sim, world = served
    res = cli("business", "set-app-secret", "acme", stdin="0123456789abcdef0123456789abcdef\n")
    assert res.code == 6 and res.err.startswith("error: ")
    assert cli("token", "generate", "prod", "--business", "acme", "--scopes", SCOPES).code == 0  # old secret kept
    res = cli("business", "set-app-secret", "acme", "--json", stdin=world.app_secret + "\n")  # type: ignore[attr-defined]
    assert res.code == 0 and res.json()["app_secret_version"] == 2
    assert cli("token", "verify", "prod").code == 0
    events = [e["action"] for e in cli("audit", "list", "--json").json()]
    assert "business.app_secret.replace" in events
    assert cli("audit", "verify").code == 0
