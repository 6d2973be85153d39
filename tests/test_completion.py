"""Shell completion (meta_tokenvault.cli.completion): the scripts for bash, zsh and fish name tokenvault, the completion
protocol (_TOKENVAULT_COMPLETE=complete_<shell>) answers with command names through meta_tokenvault.cli.main.run - never
through the fast path - and --install-completion writes where the shell reads."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from cli_support import CliRunner

import meta_tokenvault.cli.fast
from meta_tokenvault.cli.main import run

BIN = Path(sys.executable).parent


@pytest.mark.parametrize("shell,marker", [
    ("bash", "complete -o default -F _tokenvault_completion tokenvault"),
    ("zsh", "#compdef tokenvault"),
    ("fish", "complete --command tokenvault"),
], ids=str)
def test_show_completion_prints_a_script_for_the_shell_named(cli: CliRunner, shell: str, marker: str) -> None:
    for args in (["--show-completion", shell], [f"--show-completion={shell}"]):
        result = cli(*args)
        assert result.code == 0, result.err
        assert marker in result.out and f"_TOKENVAULT_COMPLETE=complete_{shell}" in result.out


def test_show_completion_detects_the_shell_when_none_is_named(cli: CliRunner,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    import shellingham  # type: ignore[import-untyped]

    monkeypatch.setattr(shellingham, "detect_shell", lambda: ("zsh", "/bin/zsh"))
    result = cli("--show-completion")
    assert result.code == 0 and "#compdef tokenvault" in result.out


def test_an_unknown_or_undetectable_shell_is_bad_usage(cli: CliRunner, monkeypatch: pytest.MonkeyPatch) -> None:
    import shellingham

    result = cli("--show-completion", "tcsh")
    assert result.code == 2 and result.out == "" and result.err.startswith("error: Unknown shell 'tcsh'")

    def fail() -> tuple[str, str]:
        raise shellingham.ShellDetectionFailure()

    monkeypatch.setattr(shellingham, "detect_shell", fail)
    monkeypatch.setenv("SHELL", "/bin/tcsh")
    result = cli("--install-completion")
    assert result.code == 2 and "bash|zsh|fish" in result.err


@pytest.mark.parametrize("shell,env,expected", [
    ("bash", {"COMP_WORDS": "tokenvault tok", "COMP_CWORD": "1"}, "token"),
    ("bash", {"COMP_WORDS": "tokenvault token rev", "COMP_CWORD": "2"}, "reveal"),
    ("zsh", {"_TYPER_COMPLETE_ARGS": "tokenvault ex"}, '"exec"'),
    ("fish", {"_TYPER_COMPLETE_ARGS": "tokenvault token re", "_TYPER_COMPLETE_FISH_ACTION": "get-args"}, "reveal\t"),
], ids=["bash-command", "bash-subcommand", "zsh", "fish"])
def test_the_completion_protocol_completes_command_names(capfd: pytest.CaptureFixture[str],
                                                         monkeypatch: pytest.MonkeyPatch, shell: str,
                                                         env: dict[str, str], expected: str) -> None:
    monkeypatch.setenv("_TOKENVAULT_COMPLETE", f"complete_{shell}")
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    capfd.readouterr()
    assert run([]) == 0
    out = capfd.readouterr().out
    assert expected in out, out


def test_the_completion_protocol_never_takes_the_fast_path(env_home: Path,
                                                           capfd: pytest.CaptureFixture[str],
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    def no_fast(_args: list[str]) -> int | None:
        raise AssertionError("the fast path saw a completion request")

    monkeypatch.setattr(meta_tokenvault.cli.fast, "dispatch", no_fast)
    monkeypatch.setenv("_TOKENVAULT_COMPLETE", "complete_bash")
    monkeypatch.setenv("COMP_WORDS", "tokenvault token reveal ")
    monkeypatch.setenv("COMP_CWORD", "3")
    capfd.readouterr()
    # a command line the fast path would take, with the completion variable set: typer answers, nothing is read
    assert run(["token", "reveal", "prod"]) == 0
    assert "EAAG" not in capfd.readouterr().out


def test_install_completion_writes_the_script_where_the_shell_reads_it(cli: CliRunner, tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    result = cli("--install-completion", "bash")
    assert result.code == 0, result.err
    script = tmp_path / ".bash_completions" / "tokenvault.sh"
    assert "_TOKENVAULT_COMPLETE=complete_bash" in script.read_text()
    assert str(script) in (tmp_path / ".bashrc").read_text() or ".bash_completions/tokenvault.sh" in (
        tmp_path / ".bashrc").read_text()
    result = cli("--install-completion", "fish")
    assert result.code == 0
    assert "complete --command tokenvault" in (tmp_path / ".config/fish/completions/tokenvault.fish").read_text()


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_bash_completes_through_the_installed_command(tmp_path: Path) -> None:
    """The real thing: bash sources the script `tokenvault --show-completion bash` prints and completes."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TOKENVAULT_", "_TOKENVAULT"))}
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env["HOME"] = str(tmp_path)
    snippet = ('source <(tokenvault --show-completion bash); COMP_WORDS=(tokenvault tok); COMP_CWORD=1; '
               '_tokenvault_completion tokenvault; printf "%s\\n" "${COMPREPLY[@]}"')
    proc = subprocess.run(["bash", "-c", snippet], env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["token"]
