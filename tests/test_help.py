"""The top-level help served without typer (meta_tokenvault.cli.help) is, byte for byte, what typer and rich
print: at every stored width, in each form (terminal, NO_COLOR, pipe), for every colour setup served; in a real
pseudo-terminal; and typer prints it wherever the store does not apply."""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

import pytest
from help_support import DATA, FORM_ENV, SETUPS, Stdout, in_terminal, render, render_form, rendering_distributions

import meta_tokenvault.cli.help as help_
from meta_tokenvault.cli.help import NO_COLOR, PLAIN, TERMINAL, VARIANTS, WIDTHS, stored_help

WRITE = "run `python tests/test_startup.py --write-help`"


@pytest.mark.parametrize("form", VARIANTS)
def test_each_stored_form_is_what_typer_prints_at_every_width(form: str) -> None:
    differ = [width for width in WIDTHS if stored_help(width, VARIANTS.index(form)) != render_form(width, form)]
    assert differ == [], f"{form} differs at widths {differ}: {WRITE}"


#: Widths every setup is rendered at (the forms' own setups are checked at every width above); the setups of
#: one form differ only in how rich encodes a style, not in the layout, which depends on the width alone.
SAMPLED = sorted({*WIDTHS[::9], WIDTHS[0], 79, 80, 81, 120, WIDTHS[-1]})


@pytest.mark.parametrize("setup", SETUPS)
def test_every_setup_served_prints_its_stored_form(setup: str) -> None:
    form, tty, env = SETUPS[setup]
    differ = [width for width in SAMPLED if render(width, tty, env) != stored_help(width, VARIANTS.index(form))]
    assert differ == [], f"{setup} differs from the stored {form} form at widths {differ}"


def test_the_terminal_form_uses_only_styles_every_colour_system_prints_alike() -> None:
    # bold, dim and the 16 standard colours: rich encodes them the same for standard, 256 and truecolor
    # terminals (it downgrades colours, never upgrades them), so TERM/COLORTERM cannot change the bytes
    codes = {code for width in WIDTHS for form in (TERMINAL, NO_COLOR)
             for params in re.findall(r"\x1b\[([0-9;]*)m", stored_help(width, form) or "")
             for code in params.split(";")}
    assert codes and codes <= {"0", "1", "2", *map(str, range(30, 38)), *map(str, range(90, 98))}, codes
    no_color = {p for width in WIDTHS for p in re.findall(r"\x1b\[([0-9;]*)m", stored_help(width, NO_COLOR) or "")}
    assert no_color <= {"0", "1", "2", "1;2"}, no_color
    assert all("\x1b" not in (stored_help(width, PLAIN) or "x\x1b") for width in WIDTHS)


def test_the_store_names_the_typer_and_rich_it_was_rendered_with() -> None:
    names = DATA.read_bytes().split(b"\n", 1)[0].decode("ascii").split()
    assert names == rendering_distributions(), WRITE
    assert help_.rendered_by(names)
    assert stored_help(80, TERMINAL, as_installed=True) == stored_help(80, TERMINAL) is not None


@pytest.mark.parametrize("what", ["other-version", "no-dist-info", "not-installed", "shadowed"])
def test_another_typer_or_rich_than_the_stores_means_typer(what: str, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    names = rendering_distributions()
    site = tmp_path / "site"
    for dist in names:  # a site folder like the real one: each package with its .dist-info beside it
        package = site / dist.split("-")[0]
        package.mkdir(parents=True)
        (package / "__init__.py").write_text("")
        (site / dist).mkdir()
    monkeypatch.setattr(sys, "path", [str(site)])
    assert help_.rendered_by(names)
    rich = site / names[1]
    if what == "other-version":
        rich.rename(site / "rich-13.7.1.dist-info")
    elif what == "no-dist-info":
        rich.rmdir()
    elif what == "not-installed":
        (site / "rich" / "__init__.py").unlink()
    else:  # another rich earlier on the path is the one imported
        other = tmp_path / "first" / "rich"
        other.mkdir(parents=True)
        (other / "__init__.py").write_text("")
        monkeypatch.setattr(sys, "path", [str(tmp_path / "first"), str(site)])
    assert not help_.rendered_by(names)
    assert stored_help(80, TERMINAL, as_installed=True) is None and stored_help(80, TERMINAL) is not None


def test_widths_outside_the_store_are_not_served() -> None:
    assert stored_help(WIDTHS[0] - 1, TERMINAL) is None and stored_help(WIDTHS[-1] + 1, PLAIN) is None
    assert stored_help(80, TERMINAL) == render_form(80, "terminal")


_TERMS = [None, "xterm", "xterm-256color", "screen-16color", "xterm-kitty", "vt100", "", "dumb", "DUMB", "unknown"]


@pytest.mark.parametrize("tty", [True, False], ids=["terminal", "pipe"])
@pytest.mark.parametrize("term", _TERMS, ids=[repr(t) for t in _TERMS])
def test_the_form_chosen_is_the_one_rich_renders(tty: bool, term: str | None, monkeypatch: pytest.MonkeyPatch) -> None:
    import typer.rich_utils

    monkeypatch.setattr(sys, "stdout", Stdout(tty))
    for colorterm in (None, "truecolor", "24bit", "", "yes"):
        for no_color in (None, "", "1"):
            env = {k: v for k, v in (("TERM", term), ("COLORTERM", colorterm), ("NO_COLOR", no_color))
                   if v is not None}
            for name in ("TERM", "COLORTERM", "NO_COLOR"):
                monkeypatch.delenv(name, raising=False)
            for name, value in env.items():
                monkeypatch.setenv(name, value)
            console: Any = typer.rich_utils._get_rich_console()  # as typer builds it for the help
            form = help_.variant(env)
            where = f"{env} tty={tty}"
            if form is None:  # not served: only a dumb terminal here (rich: no styles, 80 columns)
                assert tty and console.is_dumb_terminal, where
            elif form == PLAIN:
                assert not tty and not console.is_terminal and console.color_system is None, where
            else:
                assert console.is_terminal and not console.is_dumb_terminal, where
                assert console.color_system in ("standard", "256", "truecolor"), where
                assert console.no_color == (form == NO_COLOR), where


@pytest.mark.parametrize("name", help_.CHANGES_OUTPUT)
def test_a_variable_that_changes_typers_output_means_typer(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    for tty in (True, False):
        monkeypatch.setattr(sys, "stdout", Stdout(tty))
        assert help_.variant({"TERM": "xterm"}) == (TERMINAL if tty else PLAIN)
        assert help_.variant({"TERM": "xterm", name: "1"}) is None


def test_an_encoding_other_than_utf8_means_typer(monkeypatch: pytest.MonkeyPatch) -> None:
    class Latin1(Stdout):
        encoding = "latin-1"  # type: ignore[assignment]

    monkeypatch.setattr(sys, "stdout", Latin1(True))
    assert help_.variant({"TERM": "xterm"}) is None


# --------------------------------------------------------------------------- in a real pseudo-terminal
@pytest.mark.slow
@pytest.mark.parametrize("args,width,setup", [
    (["--help"], 80, "xterm"),
    (["-h"], 97, "xterm"),
    (["--help"], WIDTHS[0], "no-TERM"),
    (["--help"], 133, "truecolor"),
    (["--help"], WIDTHS[-1], "NO_COLOR"),
    (["--help"], 120, "pipe"),
    (["-h"], 61, "pipe-xterm-NO_COLOR"),
], ids=["80", "h-97", "narrowest-no-TERM", "truecolor-133", "widest-NO_COLOR", "pipe-at-120", "h-pipe-61"])
def test_in_a_pseudo_terminal_the_help_is_typers_without_typer(args: list[str], width: int, setup: str) -> None:
    form, tty, env = SETUPS[setup]
    fast = in_terminal(args, width, env, tty=tty)
    typer = in_terminal(args, width, env, tty=tty, fast=False)
    assert typer[0] == 0 and typer[2], "the typer path ran typer"
    assert fast == (0, typer[1], False), "served without typer, the same bytes"
    assert fast[1].decode("utf-8") == stored_help(width, VARIANTS.index(form))
    assert FORM_ENV[form][0] == tty


@pytest.mark.slow
@pytest.mark.parametrize("width,env", [
    (WIDTHS[0] - 1, {"TERM": "xterm"}),
    (WIDTHS[-1] + 1, {"TERM": "xterm"}),
    (80, {"TERM": "dumb"}),
    (80, {"TERM": "xterm", "FORCE_COLOR": "1"}),
    (100, {"TERM": "xterm", "COLUMNS": "90"}),
], ids=["narrower", "wider", "dumb", "FORCE_COLOR", "COLUMNS"])
def test_in_a_pseudo_terminal_typer_prints_what_is_not_stored(width: int, env: dict[str, str]) -> None:
    fast = in_terminal(["--help"], width, env)
    typer = in_terminal(["--help"], width, env, fast=False)
    assert fast == typer and fast[0] == 0 and fast[2] and b"Usage" in fast[1]
