"""The entry point: the ONE error boundary that maps errors to exit codes, in front of the typer app.

``token reveal LABEL`` and ``exec --token LABEL -- CMD`` are first offered to :mod:`meta_tokenvault.cli.fast`, which
runs them without typer, SQLAlchemy or hvac when it can (see :mod:`meta_tokenvault.fastread`); everything else,
and every case the
fast path declines, goes to the typer app of :mod:`meta_tokenvault.cli.app`. Either way errors end here, as one line, a
hint and the contract's exit code. This module imports nothing heavy: start-up is part of every command.
"""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False  # typing's constant without importing typing at run time (start-up); mypy reads it as True
if TYPE_CHECKING:
    from typing import Any

#: Set to 0 to send every command through typer and SQLAlchemy (troubleshooting, benchmarks).
FAST_PATH_ENV = "TOKENVAULT_FAST_PATH"
#: Set by the shell completion scripts (:mod:`meta_tokenvault.cli.completion`) when they ask typer for candidates.
COMPLETE_VAR = "_TOKENVAULT_COMPLETE"
_COMPLETION_OPTIONS = ("--show-completion", "--install-completion")


def __getattr__(name: str) -> Any:  # ``from meta_tokenvault.cli.main import app`` works, without importing typer
    if name == "app":
        from .app import app

        return app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def run(argv: list[str] | None = None, *, fast: bool | None = None) -> int:
    """Entry point: run the command and turn every error into one line, a hint and the contract's exit code.

    ``fast``: offer the command to :mod:`meta_tokenvault.cli.fast` first (default: unless TOKENVAULT_FAST_PATH=0).
    """
    from meta_tokenvault.errors import VaultError

    use_fast = fast if fast is not None else os.environ.get(FAST_PATH_ENV, "1") != "0"
    args = sys.argv[1:] if argv is None else list(argv)
    if len(args) == 1 and args[0] in _COMPLETION_OPTIONS:  # bare: the shell is detected (typer's options need
        args[0] += "="                                    # a value; `--show-completion=` is the empty one)
    code = 0
    handled = None
    try:
        if use_fast and not os.environ.get(COMPLETE_VAR):
            if len(args) == 1:  # help.TOP_LEVEL's length (tested): the fast commands skip the help module
                from .help import serve

                if serve(args):  # the top-level help, rendered ahead by typer (see meta_tokenvault.cli.help)
                    handled = 0
            if handled is None:
                from .fast import dispatch

                handled = dispatch(args)
        code = handled if handled is not None else _run_app(args)
    except VaultError as exc:
        from .render import error

        error(exc.message, exc.hint)
        code = exc.exit_code
    except KeyboardInterrupt:
        sys.stderr.write("error: interrupted; nothing half-done was recorded as done "
                         "(interrupted rotations resume with `tokenvault run-due`)\n")
        code = 130
    except BrokenPipeError:
        code = 0
    except Exception as exc:  # noqa: BLE001 - the boundary: a bug, reported without locals or secrets
        # a library's message may quote a request URL: token-shaped values and secret query parameters go
        from meta_tokenvault.adapters.graph_httpx import redact_url

        from .render import safe

        sys.stderr.write(f"error: unexpected {type(exc).__name__}: {safe(redact_url(str(exc)))}\n"
                         "hint: this is a bug in tokenvault; please report it with the command you ran "
                         "(never include tokens).\n")
        if os.environ.get("TOKENVAULT_DEBUG") == "1":
            import traceback

            # no frames of its own (no locals); chained exceptions show code lines; every message redacted
            sys.stderr.write(safe(redact_url("".join(traceback.format_exception(type(exc), exc, None)))))
        code = 1
    finally:
        state = sys.modules.get(f"{__package__}.state")  # only the typer path builds a manager there
        if state is not None:
            state.state.reset()
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        pass
    if argv is None:
        if handled is not None:
            _exit_now(code)
        sys.exit(code)
    return code


def _exit_now(code: int) -> None:
    """End the process after a command the fast path (or the stored help) ran, without the interpreter's
    teardown: freeing every module and OpenSSL's exit handlers cost ~5 ms, a tenth of a ``token reveal``.

    Nothing is left to do by then: the store is closed, an ``exec`` child reaped, stdout flushed (above;
    stderr here). When something did ask to run at exit (an ``atexit`` callback, e.g. of a keyring backend)
    or a non-daemon thread is alive, the interpreter exits as usual (returns; the caller calls sys.exit)."""
    import atexit

    threading = sys.modules.get("threading")
    callbacks = getattr(atexit, "_ncallbacks", lambda: 1)()  # CPython's count; unknown: assume some
    if callbacks or (threading is not None and any(
            not t.daemon for t in threading.enumerate() if t is not threading.main_thread())):
        return
    try:
        sys.stderr.flush()
    except OSError:
        pass
    os._exit(code)


def _run_app(argv: list[str] | None) -> int:
    """The typer app; the framework's own outcomes (exit, abort, usage errors) become exit codes here."""
    from .app import app

    exits, aborts, usage_errors = _framework_exceptions()
    try:
        result = app(args=argv, prog_name="tokenvault", standalone_mode=False)
        return result if isinstance(result, int) else 0
    except SystemExit as exc:  # the completion protocol (COMPLETE_VAR) answers and exits
        return exc.code if isinstance(exc.code, int) else 0 if exc.code is None else 1
    except exits as exc:
        return int(getattr(exc, "exit_code", 0))
    except aborts:
        sys.stderr.write("error: aborted\n")
        return 2
    except usage_errors as exc:
        if type(exc).__name__ == "NoArgsIsHelpError":
            exc.show()  # type: ignore[attr-defined]  # a bare group: its help is the answer
            return 2
        from .render import error

        ctx = getattr(exc, "ctx", None)
        path = getattr(ctx, "command_path", None) or "tokenvault"
        message = exc.format_message()  # type: ignore[attr-defined]
        error(message.rstrip(".") + ".", f"Run `{path} --help` for its usage.")
        return 2  # the contract's "bad usage or bad input", whatever code the framework would pick


def _framework_exceptions() -> tuple[tuple[type[BaseException], ...], ...]:
    """(exit, abort, usage-error) classes of typer and of the click it runs on.

    typer >= 0.2x vendors click as ``typer._click`` (its exceptions are not ``click``'s); older
    typers raise click's own. Both families are caught, so a missing argument is exit 2, not a "bug".
    """
    import typer

    exits: list[type[BaseException]] = [typer.Exit]
    aborts: list[type[BaseException]] = [typer.Abort]
    usage: list[type[BaseException]] = []
    try:
        from typer._click.exceptions import ClickException as VendoredClickException

        usage.append(VendoredClickException)
    except ImportError:
        pass
    try:
        import click

        exits.append(click.exceptions.Exit)
        aborts.append(click.exceptions.Abort)
        usage.append(click.ClickException)
    except ImportError:
        pass
    return tuple(exits), tuple(aborts), tuple(usage)


if __name__ == "__main__":  # pragma: no cover
    run()
