"""Bad usage is exit 2 with one `error:` line and a `hint:`, never "unexpected ... bug" (typer vendors click)."""

from __future__ import annotations

from typing import Any

import pytest
from cli_support import CliRunner


@pytest.mark.parametrize(("args", "message"), [
    (["token", "show"], "error: Missing argument 'label'."),
    (["--bogus"], "error: No such option: --bogus."),
    (["token", "generate", "x"], "error: Missing option '--business'."),
    (["exec", "--token", "x"], "error: Missing argument"),
    (["reminders", "ics", "not-a-number"], "error: Invalid value"),
], ids=["missing-argument", "unknown-option", "missing-option", "exec-without-command", "bad-int"])
def test_bad_usage_is_exit_2_with_one_error_line_and_a_hint(cli: CliRunner, args: list[str], message: str) -> None:
    res = cli(*args)
    assert res.code == 2, res.err
    lines = [line for line in res.err.splitlines() if line.strip()]
    assert lines[0].startswith(message), res.err
    assert len(lines) == 2 and lines[1].startswith("hint: Run `tokenvault") and "--help" in lines[1]
    assert "bug" not in res.err and "Traceback" not in res.err


def test_init_takes_the_key_provider_named_in_the_hint(cli: CliRunner, home: object,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOKENVAULT_HOME", str(home))
    res = cli("init", "--key-provider", "file", "--json")
    assert res.code == 0, res.err
    assert res.json()["key_provider"] == "file"
    assert cli("init", "--key-provider", "bogus").code == 2


def _leaf_commands() -> list[tuple[str, Any]]:
    import typer.main

    from meta_tokenvault.cli.app import app

    found: list[tuple[str, Any]] = []

    def walk(command: Any, path: str) -> None:  # typer vendors click: its classes are not `click`'s
        if hasattr(command, "commands"):
            for name, sub in command.commands.items():
                walk(sub, f"{path} {name}".strip())
        else:
            found.append((path, command))

    walk(typer.main.get_command(app), "")
    return found


def test_every_option_and_argument_of_every_command_says_what_it_is_for() -> None:
    """`--help` is the first documentation people read: no option (`--json` included) or argument left blank."""
    blank = [f"{path} {param.name}" for path, command in _leaf_commands()
             for param in command.params
             if not (getattr(param, "help", None) or "").strip() and param.name != "help"]
    assert len(_leaf_commands()) > 30
    assert not blank, f"options or arguments without help: {blank}"


@pytest.mark.parametrize(("args", "says"), [
    (["token", "list"], "No tokens yet"),
    (["system-users", "list"], "No system users recorded: `tokenvault system-users sync"),
    (["system-users", "journal"], "No provisioning runs yet"),
    (["reminders", "list"], "No open reminders"),
    (["reminders", "list", "--all"], "No reminders."),
    (["business", "list"], "No businesses yet: register one with `tokenvault business add"),
    (["audit", "list", "--label", "nope"], "No audit events for nope."),
])
def test_an_empty_list_says_so_and_what_to_do_instead_of_printing_bare_headers(
        cli: CliRunner, env_home: object, args: list[str], says: str) -> None:
    assert cli("init", "--key-provider", "file").code == 0
    res = cli(*args)
    assert res.code == 0, res.err
    assert res.out == "" and res.err.startswith(says), (res.out, res.err)
