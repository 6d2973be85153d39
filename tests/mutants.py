#!/usr/bin/env python3
"""Mutants the suite must kill: deliberate bugs, each applied to a TEMPORARY COPY of the tree (never the real
one), each followed by the tests that should catch it. Any survivor fails (exit 1). Run by .ci/run.

    python tests/mutants.py              # all, 2 at a time
    python tests/mutants.py --list       # names and why
    python tests/mutants.py --check      # only: every edit still matches exactly once (fast; a test runs it)
    python tests/mutants.py --only NAME  # one or more, by name

How a mutant runs, and why the result can be trusted:
* the repository is copied (without .git, .venv and caches) to a temp dir, and each edit is an exact
  (file, old text, new text) replacement that must match exactly once: a mutant whose code moved fails loudly
  instead of silently testing nothing;
* pytest runs in a subprocess with cwd = the copy and the copy's import root first on PYTHONPATH (ahead of the
  editable install), with a guard plugin written into the copy that imports every mutated module and stops
  the run (exit 99, a harness error) unless the module's file is the copy's and holds the mutated text;
* before any mutant, the union of the targeted tests must pass on the unmutated copy (else a "kill" could be a
  failure that was there already);
* a mutated module that no longer imports counts as killed only when the mutant says ``breaks_import``;
  otherwise it is a harness error (fix the mutant).

Files are named by path (vault/..., cli/...); the copy gets the package laid out as installed (``_site/
meta_tokenvault``, symlinks into the copy's vault/ and cli/, like tests/typecheck.py), first on PYTHONPATH.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
IGNORE = shutil.ignore_patterns(".git", ".venv", "venv", "__pycache__", "*.pyc", "*.egg-info", ".mypy_cache",
                                "build", ".ruff_cache", ".pytest_cache", ".hypothesis", "node_modules")
GUARD_EXIT = 99
TIMEOUT = 240.0  # per mutant run (a hung run counts as killed, and is reported as such)


@dataclass(frozen=True)
class Edit:
    file: str
    old: str
    new: str


@dataclass(frozen=True)
class Mutant:
    name: str
    why: str
    edits: tuple[Edit, ...]
    tests: tuple[str, ...]
    breaks_import: bool = False


GRAPH = "vault/adapters/graph_httpx.py"
GRAPH_WIRE = "vault/adapters/graph_wire.py"
SIM_AUTH = "vault/testing/graph_sim/auth.py"
KAT = "tests/test_meta_known_answers.py"
ORACLE_DEMO = "tests/test_meta_oracle.py::test_every_request_of_the_demo_story_is_declared_by_meta"
CONTRACT = "tests/test_client_contract.py"

CLIENT_PROOF = Edit(GRAPH, "hmac.new(app_secret.reveal().encode(), access_token.reveal().encode(), hashlib.sha256)",
                    "hmac.new(access_token.reveal().encode(), app_secret.reveal().encode(), hashlib.sha256)")
SIM_PROOF = Edit(SIM_AUTH, "hmac.new(app_secret.encode(), access_token.encode(), hashlib.sha256)",
                 "hmac.new(access_token.encode(), app_secret.encode(), hashlib.sha256)")

MUTANTS: list[Mutant] = [
    Mutant("client-proof-key-message-swapped", "appsecret_proof = HMAC(key=token, msg=secret) in the client",
           (CLIENT_PROOF,), (KAT,)),
    Mutant("sim-proof-key-message-swapped", "the simulator checks HMAC(key=token, msg=secret)",
           (SIM_PROOF,), (KAT,)),
    Mutant("both-proofs-key-message-swapped", "the same swap in both: client and simulator agree, Meta refuses",
           (CLIENT_PROOF, SIM_PROOF), (KAT, ORACLE_DEMO)),
    Mutant("scopes-joined-with-spaces", "scope=a b instead of Meta's comma-separated list",
           (Edit(GRAPH, '"scope": ",".join(scopes)', '"scope": " ".join(scopes)'),), (ORACLE_DEMO,)),
    Mutant("proof-not-sent", "appsecret_proof computed but never sent",
           (Edit(GRAPH, '(form_data if form_data is not None else params)["appsecret_proof"] = proof',
                 "del proof"),), (ORACLE_DEMO,)),
    # also killed by the strict simulator (sim branch), which refuses a path without vNN.N
    Mutant("version-segment-dropped", "https://graph.facebook.com/{path} without /v24.0",
           (Edit(GRAPH, "return f\"{self.base_url}/{self.version}/{path.lstrip('/')}\"",
                 "return f\"{self.base_url}/{path.lstrip('/')}\""),), (ORACLE_DEMO,)),
    # also killed by the strict simulator (sim branch), which takes form-encoded bodies only
    Mutant("json-bodies", "POST parameters sent as JSON instead of form fields",
           (Edit(GRAPH_WIRE, "response = self.client.request(method, url, data=form, headers=headers)",
                 "response = self.client.request(method, url, json=form, headers=headers)"),), (ORACLE_DEMO,)),
    Mutant("caller-token-in-the-url", "the caller's token as ?access_token= instead of the Authorization header",
           (Edit(GRAPH, 'headers["Authorization"] = f"Bearer {token.reveal()}"',
                 'params["access_token"] = token.reveal()'),), (f"{CONTRACT}::test_no_token_travels_in_a_url",)),
    Mutant("verify-exits-0-on-an-invalid-token", "token verify reports an invalid token and exits 0",
           (Edit("cli/commands/tokens.py", "    if not info.is_valid:\n        raise TokenInvalid(",
                 "    if False:\n        raise TokenInvalid("),),
           (f"{CONTRACT}::test_verify_exits_6_when_meta_says_the_token_is_invalid",)),
    Mutant("pacing-off", "the adapter never waits for its turn under a configured rate limit",
           (Edit(GRAPH, "                turn = self.pacer.reserve()\n", "                turn = 0.0\n"),),
           (f"{CONTRACT}::test_the_adapter_waits_its_turn_under_a_rate_limit",)),
    Mutant("rate-limit-flag-ignored", "token rotate --rate-limit is parsed and then dropped",
           (Edit("cli/commands/tokens.py", '        state.flags["graph_rate_limit"] = rate_limit',
                 "        pass"),), (f"{CONTRACT}::test_rotate_rate_limit_paces_the_calls_to_meta",)),
    Mutant("revoke-as-post-without-revoke-token", "revocation sent as POST with no revoke_token",
           (Edit(GRAPH, 'body = self._call("GET", "oauth/revoke", what="Revoking a token",\n'
                        '                          params={"client_id": app.app_id, "client_secret": '
                        'app.app_secret.reveal(),\n'
                        '                                  "revoke_token": token.reveal()},',
                 'body = self._call("POST", "oauth/revoke", what="Revoking a token",\n'
                 '                          form={"client_id": app.app_id, "client_secret": '
                 'app.app_secret.reveal()},'),), (ORACLE_DEMO,)),
    Mutant("revoke-success-false-accepted", 'Meta\'s {"success": "false"} read as a confirmation',
           (Edit(GRAPH, 'return value.strip().lower() in ("true", "1", "yes")', "return bool(value)"),),
           (f"{CONTRACT}::test_a_revocation_meta_does_not_confirm_is_an_error",)),
    Mutant("mint-retried-after-a-lost-answer", "a mint whose answer was lost is sent again (a second token)",
           (Edit(GRAPH, '                if not idempotent and getattr(exc, "_answer_lost", False):\n',
                 "                if False:\n"),),
           (f"{CONTRACT}::test_a_mint_whose_answer_was_lost_is_not_sent_again",)),
    Mutant("never-expiring-read-as-1970", "debug_token's expires_at: 0 read as the epoch (expired)",
           (Edit(GRAPH, "return datetime.fromtimestamp(value, UTC) if value > 0 else None",
                 "return datetime.fromtimestamp(value, UTC)"),), (f"{CONTRACT}::test_expires_at_zero_means_never",)),
    Mutant("url-secrets-not-redacted-in-logs", "input_token=... logged by httpx's request line",
           (Edit(GRAPH, 'return _SECRET_PARAM_RE.sub(r"\\1<redacted>", redact_text(text))', "return text"),),
           (f"{CONTRACT}::test_query_string_secrets_are_redacted_from_httpx_logs",)),
    Mutant("expiring-flag-not-sent", "a token asked to expire in 60 days is minted never-expiring",
           (Edit(GRAPH, 'form["set_token_expires_in_60_days"] = "true"',
                 'form["set_token_expires_in_60_days"] = "false"'),),
           ("tests/test_meta_oracle.py::test_every_call_of_the_graph_port_is_declared_by_meta",)),
    Mutant("debug-token-valid-unless-false", "a debug_token answer without is_valid: true read as valid",
           (Edit(GRAPH, 'is_valid=data.get("is_valid") is True,', 'is_valid=data.get("is_valid") is not False,'),),
           (f"{CONTRACT}::test_a_token_is_valid_only_when_debug_token_says_is_valid_true",)),
    Mutant("paging-not-followed", "only the first page of system users is read",
           (Edit(GRAPH, "            after = _next_cursor(body)\n", "            after = None\n"),),
           (f"{CONTRACT}::test_every_page_of_system_users_is_read",)),
    Mutant("aes-gcm-aad-not-bound", "sealed secrets not bound to their record (AAD dropped on both sides)",
           (Edit("vault/crypto.py", "aesgcm()(key).encrypt(nonce, plaintext, aad)",
                 "aesgcm()(key).encrypt(nonce, plaintext, None)"),
            Edit("vault/crypto.py", "aesgcm()(key).decrypt(nonce, body, aad)",
                 "aesgcm()(key).decrypt(nonce, body, None)")),
           ("tests/test_crypto_properties.py",)),
    Mutant("audit-hash-not-checked", "audit verify trusts each event's stored hash",
           (Edit("vault/adapters/store_sql.py",
                 "if audit_hash(row.seq, row.prev_hash, at, row.actor, row.action, row.subject, row.details) "
                 "!= row.hash:",
                 "if False:"),), (f"{CONTRACT}::test_audit_verify_finds_an_edited_event",)),
    Mutant("private-files-world-readable", "files created 0644 instead of 0600",
           (Edit("vault/fileutil.py", "fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)",
                 "fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)"),),
           ("tests/test_cli_core.py::test_init_creates_a_private_home_and_is_idempotent",)),
    Mutant("never-expiring-refreshed", "a never-expiring token taken as due for a refresh (the exchange would make "
           "it a 60-day one)",
           (Edit("vault/policy.py", "return expires_at is not None and as_utc(expires_at) - as_utc(now) <= margin",
                 "return expires_at is None or as_utc(expires_at) - as_utc(now) <= margin"),),
           ("tests/test_token_health.py::test_a_never_expiring_token_is_never_refreshed",)),
    Mutant("on-invalid-alert-reissued", "a token whose policy is on_invalid=alert reissued anyway",
           (Edit("vault/usecases/refresh.py", 'if record.on_invalid == "alert":', "if False:"),
            Edit("vault/usecases/run_due.py", 'if record.on_invalid != "alert" and record.id not in busy:',
                 "if record.id not in busy:")),
           ("tests/test_token_health.py::test_on_invalid_alert_is_detected_and_notified_but_not_reissued",)),
    Mutant("verify-all-quiet-on-a-still-dead-token", "token verify --all exits 0 once a dead token was marked",
           (Edit("cli/commands/tokens.py", "if invalid or unchecked or still_dead:", "if invalid or unchecked:"),),
           ("tests/test_refresh.py::test_a_token_invalidated_at_meta_is_found_by_verify_all_and_reissued_by_run_due",)),
    Mutant("scan-rotate-spares-a-leaked-older-version", "scan --rotate rotates the label but leaves a leaked older "
           "version (still valid after a refresh) alive",
           (Edit("vault/usecases/scan.py", "                   if version != current[label])",
                 "                   if False)"),),
           ("tests/test_scan.py::test_rotate_revokes_a_leaked_older_version_that_still_works_and_leaves_the_current_one",)),
    Mutant("graph-adapter-does-not-import", "a syntax error: proves an import failure is told apart",
           (Edit(GRAPH, "class RateGate:", "class RateGate(:"),), (KAT,), breaks_import=True),
]


# ----- machinery ----------------------------------------------------------------------------------------------

GUARD = '''"""pytest plugin written by tests/mutants.py: the run must import the mutated copy, nothing else."""
import importlib
import os
from pathlib import Path

import pytest


def pytest_sessionstart(session):
    root = Path(os.environ["MUTANT_ROOT"]).resolve()
    for item in filter(None, os.environ.get("MUTANT_MODULES", "").split(";")):
        name, _, path = item.partition("=")
        module = importlib.import_module(name)
        where = Path(module.__file__).resolve()
        if where != Path(path).resolve() or root not in where.parents:
            pytest.exit(f"mutant guard: {name} was imported from {where}, not from the copy {path}", returncode=99)
'''


#: source folder -> the package it is installed as (pyproject.toml's package-dir)
PACKAGE_DIRS = {"vault": "meta_tokenvault", "cli": "meta_tokenvault.cli"}
#: in the copy: the package laid out as installed (symlinks into the copy's vault/ and cli/)
SITE = "_site"


def module_of(copy: Path, rel: str) -> tuple[str, Path] | None:
    """``(dotted name, import root)`` of a file of the package (vault/... or cli/...); None otherwise."""
    first, _, rest = rel.partition("/")
    if first not in PACKAGE_DIRS or not rest.endswith(".py"):
        return None
    parts = [*PACKAGE_DIRS[first].split("."), *Path(rest).with_suffix("").parts]
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts), copy / SITE


def make_copy(dest: Path) -> Path:
    from typecheck import lay_out

    copy = dest / "tree"
    shutil.copytree(REPO, copy, ignore=IGNORE, symlinks=True)
    lay_out(copy, copy / SITE / "meta_tokenvault")
    (copy / "_mutant_guard.py").write_text(GUARD, encoding="utf-8")
    return copy


def apply(copy: Path, edits: tuple[Edit, ...]) -> None:
    for edit in edits:
        path = copy / edit.file
        text = path.read_text(encoding="utf-8")
        count = text.count(edit.old)
        if count != 1:
            raise StaleMutant(f"{edit.file}: the text to replace occurs {count} times (must be exactly once): "
                              f"{edit.old[:80]!r}")
        path.write_text(text.replace(edit.old, edit.new), encoding="utf-8")


class StaleMutant(Exception):
    pass


def environment(copy: Path, files: list[str]) -> dict[str, str]:
    modules, roots = [], [str(copy)]
    for rel in files:
        found = module_of(copy, rel)
        if found is not None:
            modules.append(f"{found[0]}={copy / rel}")
            roots.insert(0, str(found[1]))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "COV_"))}
    env.update(PYTHONPATH=os.pathsep.join(dict.fromkeys(roots)), MUTANT_ROOT=str(copy),
               MUTANT_MODULES=";".join(modules), PYTHONDONTWRITEBYTECODE="1")
    return env


def pytest_cmd(tests: tuple[str, ...] | list[str], basetemp: Path) -> list[str]:
    """The inner run; its own ``--basetemp`` keeps it out of the per-user temp root other runs are using."""
    return [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", "-p", "_mutant_guard",
            f"--basetemp={basetemp}", *tests]


def imports(copy: Path, env: dict[str, str], files: list[str]) -> str | None:
    """None when every mutated module imports; else the error's last line."""
    names = [found[0] for rel in files if (found := module_of(copy, rel)) is not None]
    if not names:
        return None
    code = "import importlib, sys\nfor n in sys.argv[1:]: importlib.import_module(n)"
    result = subprocess.run([sys.executable, "-c", code, *names], cwd=copy, env=env, capture_output=True,
                            text=True, timeout=120)
    if result.returncode == 0:
        return None
    return (result.stderr.strip().splitlines() or ["?"])[-1]


@dataclass
class Outcome:
    mutant: Mutant
    verdict: str  # killed | SURVIVED | ERROR
    detail: str
    seconds: float


def run_one(mutant: Mutant, workdir: Path) -> Outcome:
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix=f"mutant-{mutant.name[:20]}-", dir=workdir) as tmp:
        copy = make_copy(Path(tmp))
        try:
            apply(copy, mutant.edits)
        except StaleMutant as exc:
            return Outcome(mutant, "ERROR", f"stale: {exc}", time.monotonic() - started)
        files = sorted({e.file for e in mutant.edits})
        env = environment(copy, files)
        broken = imports(copy, env, files)
        if mutant.breaks_import or broken:
            if mutant.breaks_import and broken:
                return Outcome(mutant, "killed", f"does not import, as meant: {broken}", time.monotonic() - started)
            what = "still imports" if mutant.breaks_import else f"does not import ({broken})"
            return Outcome(mutant, "ERROR", f"{what}: fix the mutant", time.monotonic() - started)
        try:
            result = subprocess.run(pytest_cmd(mutant.tests, Path(tmp) / "pytest"), cwd=copy, env=env,
                                    capture_output=True, text=True, timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            return Outcome(mutant, "killed", f"the tests hung (> {TIMEOUT:.0f} s)", time.monotonic() - started)
        last = (result.stdout.strip().splitlines() or ["(no output)"])[-1]
        if result.returncode == 1:
            return Outcome(mutant, "killed", last, time.monotonic() - started)
        if result.returncode == 0:
            return Outcome(mutant, "SURVIVED", last, time.monotonic() - started)
        tail = (result.stdout + result.stderr).strip().splitlines()[-5:]
        return Outcome(mutant, "ERROR", f"pytest exit {result.returncode}: " + " | ".join(tail),
                       time.monotonic() - started)


def baseline(mutants: list[Mutant], workdir: Path) -> str | None:
    """None when the targeted tests pass on the unmutated copy (imported from the copy); else why not."""
    tests = list(dict.fromkeys(t for m in mutants for t in m.tests))
    with tempfile.TemporaryDirectory(prefix="mutant-baseline-", dir=workdir) as tmp:
        copy = make_copy(Path(tmp))
        files = sorted({e.file for m in mutants for e in m.edits})
        env = environment(copy, files)
        result = subprocess.run(pytest_cmd(tests, Path(tmp) / "pytest"), cwd=copy, env=env, capture_output=True,
                                text=True, timeout=TIMEOUT * 2)
        if result.returncode != 0:
            return f"pytest exit {result.returncode}:\n" + (result.stdout + result.stderr)[-4000:]
    return None


def check(mutants: list[Mutant]) -> list[str]:
    """Every edit matches exactly once in the real tree; every targeted test file exists."""
    problems = []
    for m in mutants:
        for edit in m.edits:
            path = REPO / edit.file
            count = path.read_text(encoding="utf-8").count(edit.old) if path.exists() else -1
            if count != 1:
                problems.append(f"{m.name}: {edit.file}: text found {max(count, 0)} times (must be 1)")
        for test in m.tests:
            if not (REPO / test.partition("::")[0]).exists():
                problems.append(f"{m.name}: no test file {test}")
    names = [m.name for m in mutants]
    if len(set(names)) != len(names):
        problems.append("mutant names are not unique")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--list", action="store_true")
    parser.add_argument("--check", action="store_true")
    parser.add_argument("--only", nargs="+", metavar="NAME")
    parser.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1))
    parser.add_argument("--no-baseline", action="store_true", help="skip the run on the unmutated copy")
    args = parser.parse_args(argv)
    chosen = MUTANTS
    if args.only:
        unknown = set(args.only) - {m.name for m in MUTANTS}
        if unknown:
            parser.error(f"unknown mutant(s): {', '.join(sorted(unknown))}")
        chosen = [m for m in MUTANTS if m.name in args.only]
    if args.list:
        for m in chosen:
            print(f"{m.name:<40} {m.why}")
        return 0
    problems = check(chosen)
    if problems or args.check:
        print("\n".join(problems) or f"mutants: {len(chosen)} edits match exactly once")
        return 1 if problems else 0

    started = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix="tokenvault-mutants-"))
    try:
        if not args.no_baseline:
            red = baseline(chosen, workdir)
            if red:
                print(f"mutants: the targeted tests fail WITHOUT any mutant; fix that first.\n{red}")
                return 1
            print(f"baseline: the targeted tests pass on the unmutated copy ({time.monotonic() - started:.0f} s)")
        with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
            outcomes = list(pool.map(lambda m: run_one(m, workdir), chosen))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    for o in outcomes:
        print(f"{o.verdict:<8} {o.mutant.name:<40} {o.seconds:5.1f} s  {o.detail}")
    killed = sum(o.verdict == "killed" for o in outcomes)
    print(f"{len(outcomes)} mutants in {time.monotonic() - started:.0f} s: {killed} killed, "
          f"{sum(o.verdict == 'SURVIVED' for o in outcomes)} survived, {sum(o.verdict == 'ERROR' for o in outcomes)}"
          " harness errors")
    print(f"mutants: {killed} passed, {len(outcomes) - killed} failed")
    return 0 if killed == len(outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
