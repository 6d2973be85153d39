"""Getting tokens into deployments: templates, exports and ``exec``.

Pure logic plus process plumbing, in three modules (:mod:`.templates`, :mod:`.exports`, :mod:`.run`)
sharing :mod:`.common` and :mod:`meta_tokenvault.redact`; no typer, no rich, nothing heavy at import time (``tokenvault
exec`` must start fast). Three ways out of the vault, from most to least contained:

* :func:`run_command` (``tokenvault exec``, :mod:`.run`): the token exists only in the environment of one
  child process. Never in any argv, never in our own ``os.environ``, never in a file.
* :func:`parse_template` / :func:`render_template` (``tokenvault inject``, :mod:`.templates`):
  ``{{ tokenvault://LABEL }}`` references in a config file; the caller writes the result 0600, atomically.
* ``export_*`` (``tokenvault export``, :mod:`.exports`): dotenv, JSON, a Kubernetes Secret, GitHub Actions'
  ``GITHUB_ENV``.
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing's constant without importing typing at run time (start-up); mypy reads it as True
if TYPE_CHECKING:
    from typing import Any

    from ..redact import StreamRedactor
    from .common import DEFAULT_VAR, TokenSource
    from .exports import (
        GithubEnv,
        append_private,
        dotenv_quote,
        export_dotenv,
        export_github_env,
        export_json,
        export_k8s_secret,
        k8s_name,
    )
    from .run import (
        FORWARDED_SIGNALS,
        VAULT_CREDENTIALS,
        CommandNotRunnable,
        ExecOptions,
        Injected,
        TokenSpec,
        child_environment,
        current_key,
        derived_var,
        exit_status,
        parse_token_specs,
        resolve_specs,
        run_command,
        version_key,
    )
    from .templates import FIELDS, TOKEN_FIELD, Reference, Template, parse_template, render_template

#: Where each name of ``__all__`` lives. Loaded on first use (``tokenvault exec`` needs only :mod:`.run`: the
#: template and export modules are not imported on its path); ``tests/test_inject.py`` checks every name.
_HOME = {
    "StreamRedactor": "..redact",
    **dict.fromkeys(("DEFAULT_VAR", "TokenSource"), ".common"),
    **dict.fromkeys(("GithubEnv", "append_private", "dotenv_quote", "export_dotenv", "export_github_env",
                     "export_json", "export_k8s_secret", "k8s_name"), ".exports"),
    **dict.fromkeys(("FORWARDED_SIGNALS", "VAULT_CREDENTIALS", "CommandNotRunnable", "ExecOptions", "Injected",
                     "TokenSpec", "child_environment", "current_key", "derived_var", "exit_status",
                     "parse_token_specs", "resolve_specs", "run_command", "version_key"), ".run"),
    **dict.fromkeys(("FIELDS", "TOKEN_FIELD", "Reference", "Template", "parse_template", "render_template"),
                    ".templates"),
}


def __getattr__(name: str) -> Any:
    home = _HOME.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from importlib import import_module

    value = getattr(import_module(home, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


__all__ = [
    "DEFAULT_VAR",
    "FIELDS",
    "FORWARDED_SIGNALS",
    "VAULT_CREDENTIALS",
    "CommandNotRunnable",
    "ExecOptions",
    "GithubEnv",
    "Injected",
    "Reference",
    "StreamRedactor",
    "Template",
    "TokenSource",
    "TOKEN_FIELD",
    "TokenSpec",
    "append_private",
    "child_environment",
    "current_key",
    "derived_var",
    "dotenv_quote",
    "exit_status",
    "export_dotenv",
    "export_github_env",
    "export_json",
    "export_k8s_secret",
    "k8s_name",
    "parse_template",
    "parse_token_specs",
    "render_template",
    "resolve_specs",
    "run_command",
    "version_key",
]
