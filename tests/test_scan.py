"""`tokenvault scan`: the vault's own tokens found by fingerprint in files, folders, binaries, standard input and
git history (a file deleted since included), named by label, version and status; `--rotate` kills what was
found; bad input; the token itself never printed. Everything goes through the CLI against the Graph API
simulator served over HTTP."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cli_support import CliRunner, Result, served_business

import meta_tokenvault.usecases.scan as scan_module
from meta_tokenvault.testing.graph_sim import GraphSimulator

SCOPES = "whatsapp_business_management,whatsapp_business_messaging"


@pytest.fixture(autouse=True)
def _planted_tokens_removed(tmp_path: Path) -> Iterator[None]:
    """These tests plant live tokens in files on purpose: removed afterwards, so the session's leak scan
    (tests/plugins/leakscan.py) keeps its meaning for everything else."""
    yield
    shutil.rmtree(tmp_path, ignore_errors=True)


@dataclass
class Vault:
    sim: GraphSimulator
    world: object
    token: str  # the value of `prod` v1

    def unknown(self) -> str:
        """A Meta token the vault does not hold (issued by hand at Meta)."""
        return self.sim.issue_token(self.world.app_id, self.world.old_admin_id)  # type: ignore[attr-defined]


@pytest.fixture
def vault(env_home: Path, monkeypatch: pytest.MonkeyPatch, cli: CliRunner) -> Iterator[Vault]:
    with served_business(cli, monkeypatch) as (sim, world):
        res = cli("token", "generate", "prod", "--business", "acme", "--scopes", SCOPES)
        assert res.code == 0, res.err
        yield Vault(sim, world, cli("token", "reveal", "prod").out.strip())


def scan(cli: CliRunner, *args: str, stdin: str = "", secrets: tuple[str, ...] = ()) -> Result:
    res = cli("scan", *args, stdin=stdin)
    for value in secrets:
        assert value not in res.out and value not in res.err
    return res


def git(repo: Path, *args: str) -> str:
    env = {**os.environ, "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_SYSTEM": os.devnull,
           "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@example.com"}
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True,
                          env=env).stdout.strip()


# ---------------------------------------------------------------------------------------------- git history
def test_a_token_committed_then_deleted_is_found_in_history_with_its_label_and_commit(
        cli: CliRunner, vault: Vault, tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    (repo / "README.md").write_text("hello\n")
    (repo / "config").mkdir()
    (repo / "config" / "settings.py").write_text(f"DEBUG = True\nWHATSAPP_TOKEN = '{vault.token}'\n")
    stranger = vault.unknown()
    (repo / "notes.txt").write_text(f"someone else's: {stranger}\n")
    git(repo, "add", ".")
    git(repo, "commit", "-qm", "add settings")
    leaked_in = git(repo, "rev-parse", "HEAD")
    (repo / "config" / "settings.py").unlink()
    git(repo, "commit", "-qam", "remove the token")

    assert scan(cli, str(repo), "--json", secrets=(vault.token,)).json()["findings"] == []  # not in the checkout
    res = scan(cli, "--git", str(repo), "--json", secrets=(vault.token, stranger))
    assert res.code == 9, res.err
    doc = res.json()
    assert {"findings", "unknown", "scanned_bytes", "seconds"} <= set(doc)
    assert doc["findings"] == [{"label": "prod", "version": 1, "status": "active", "path": "config/settings.py",
                                "line": 2, "commit": leaked_in, "last4": vault.token[-4:]}]
    assert doc["unknown"] == [{"path": "notes.txt", "line": 1, "commit": leaked_in, "last4": stranger[-4:]}]
    assert doc["scanned_bytes"] > 0

    people = scan(cli, "--git", str(repo), secrets=(vault.token, stranger))
    assert people.code == 9
    assert "prod" in people.out and leaked_in[:12] in people.out and "live token(s) found: prod" in people.err


def test_history_of_every_ref_is_scanned(cli: CliRunner, vault: Vault, tmp_path: Path) -> None:
    """A token only on another branch (never merged) is found too."""
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    (repo / "a.txt").write_text("a\n")
    git(repo, "add", ".")
    git(repo, "commit", "-qm", "one")
    git(repo, "checkout", "-qb", "experiment")
    (repo / "b.env").write_text(f"TOKEN={vault.token}\n")
    git(repo, "add", ".")
    git(repo, "commit", "-qm", "two")
    branch_commit = git(repo, "rev-parse", "HEAD")
    git(repo, "checkout", "-q", "main")
    doc = scan(cli, "--git", str(repo), "--json", secrets=(vault.token,)).json()
    assert [(f["label"], f["path"], f["commit"]) for f in doc["findings"]] == [("prod", "b.env", branch_commit)]


def test_scan_rotate_revokes_the_leaked_token_at_meta_and_activates_a_new_version(
        cli: CliRunner, vault: Vault, tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    (repo / "app.py").write_text(f"TOKEN = '{vault.token}'\n")
    git(repo, "add", ".")
    git(repo, "commit", "-qm", "oops")
    git(repo, "rm", "-q", "app.py")
    git(repo, "commit", "-qm", "remove it")

    res = scan(cli, "--git", str(repo), "--rotate", "--json", secrets=(vault.token,))
    assert res.code == 9, res.err  # it had leaked: attention, even though it is now revoked
    doc = res.json()
    assert (doc["rotation"]["total"], doc["rotation"]["done"], doc["rotation"]["failed"]) == (1, 1, 0)
    assert vault.sim.token_state(vault.token) == "revoked"
    shown = cli("token", "show", "prod", "--json").json()
    assert (shown["version"], shown["status"]) == (2, "active")
    new_value = cli("token", "reveal", "prod").out.strip()
    assert new_value != vault.token and vault.sim.token_state(new_value) == "valid"
    assert {v["version"]: v["status"] for v in shown["history"]}[1] == "compromised"

    again = scan(cli, "--git", str(repo), "--json", secrets=(vault.token,))
    assert again.code == 0, again.err  # found, but revoked: nothing to do
    assert [(f["label"], f["version"], f["status"]) for f in again.json()["findings"]] == [("prod", 1, "compromised")]


def test_rotate_prints_progress_and_a_summary(cli: CliRunner, vault: Vault, tmp_path: Path) -> None:
    (tmp_path / "log.txt").write_text(f"GET /v24.0/me?access_token={vault.token} 200\n")
    res = scan(cli, str(tmp_path / "log.txt"), "--rotate", secrets=(vault.token,))
    assert res.code == 9
    assert "[1/1] prod: done" in res.err and "Rotation: 1 token(s)" in res.err and "1 done" in res.err
    assert vault.sim.token_state(vault.token) == "revoked"
    # what was rotated is said so, not the advice to rotate it (`Rotate them now`, `run this scan again`)
    assert "leaked token(s) found and revoked at Meta" in res.err and "prod" in res.err
    assert "Rotate them now" not in res.err and "again with --rotate" not in res.err


def test_an_older_version_is_named_after_a_normal_rotation(cli: CliRunner, vault: Vault, tmp_path: Path) -> None:
    assert cli("token", "rotate", "prod").code == 0
    current = cli("token", "reveal", "prod").out.strip()
    (tmp_path / "old.log").write_text(f"x {vault.token}\ny {current}\n")
    res = scan(cli, str(tmp_path), "--json", secrets=(vault.token, current))
    assert res.code == 9
    found = {(f["version"], f["status"], f["line"]) for f in res.json()["findings"]}
    assert found == {(1, "revoked", 1), (2, "active", 2)}


# ---------------------------------------------------------------------------------------------- files, stdin
def test_folders_text_binary_and_nesting(cli: CliRunner, vault: Vault, tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    (tree / "a" / "b").mkdir(parents=True)
    (tree / "a" / "b" / "deploy.log").write_text("start\n" * 10 + f"export WHATSAPP_TOKEN={vault.token}\n")
    (tree / "core.bin").write_bytes(os.urandom(5000) + b"\x00\x00" + vault.token.encode() + b"\x00" + os.urandom(99))
    (tree / "clean.txt").write_text("nothing here EAAshort\n")
    res = scan(cli, str(tree), "--json", secrets=(vault.token,))
    assert res.code == 9
    doc = res.json()
    where = sorted((Path(f["path"]).relative_to(tree).as_posix(), f["label"], f["commit"]) for f in doc["findings"])
    assert where == [("a/b/deploy.log", "prod", None), ("core.bin", "prod", None)]
    log = next(f for f in doc["findings"] if f["path"].endswith("deploy.log"))
    assert log["line"] == 11
    assert doc["unknown"] == [] and doc["files"] == 3
    assert doc["scanned_bytes"] == sum(p.stat().st_size for p in tree.rglob("*") if p.is_file())


def test_standard_input(cli: CliRunner, vault: Vault) -> None:
    stranger = vault.unknown()
    res = scan(cli, "-", "--json", stdin=f"line one\nAuthorization: Bearer {vault.token}\n{stranger}\n",
               secrets=(vault.token, stranger))
    assert res.code == 9
    doc = res.json()
    assert [(f["path"], f["line"], f["label"]) for f in doc["findings"]] == [("-", 2, "prod")]
    assert [(u["path"], u["line"], u["last4"]) for u in doc["unknown"]] == [("-", 3, stranger[-4:])]


def test_unknown_tokens_alone_leave_the_exit_code_at_0(cli: CliRunner, vault: Vault, tmp_path: Path) -> None:
    stranger = vault.unknown()
    (tmp_path / "f").write_text(stranger)
    res = scan(cli, str(tmp_path / "f"), secrets=(stranger,))
    assert res.code == 0 and "1 unknown" in res.err and stranger[-4:] in res.out


@pytest.mark.parametrize("shift", [-60, -3, -2, -1, 0, 1, 2, 100], ids=lambda s: f"shift{s:+d}")
def test_a_token_across_a_chunk_boundary_is_found_once(cli: CliRunner, vault: Vault, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch, shift: int) -> None:
    """Chunks of 4 KiB (the real size is 8 MiB): the token starts ``shift`` bytes from the boundary."""
    monkeypatch.setattr(scan_module, "CHUNK", 4096)
    start = 3 * 4096 + shift
    data = bytearray(b"0123456789abcde\n" * (6 * 4096 // 16))
    data[start - 1:start + len(vault.token) + 1] = b" " + vault.token.encode() + b" "
    path = tmp_path / "big.log"
    path.write_bytes(bytes(data))
    doc = scan(cli, str(path), "--json", secrets=(vault.token,)).json()
    assert [(f["label"], f["line"]) for f in doc["findings"]] == [("prod", data[:start].count(b"\n") + 1)]
    assert doc["unknown"] == [] and doc["scanned_bytes"] == len(data)


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-16-be"])
def test_a_token_saved_as_utf16_is_found_once_with_its_line(cli: CliRunner, vault: Vault, tmp_path: Path,
                                                            encoding: str) -> None:
    """PowerShell's ``>`` and many Windows editors write UTF-16 (NULs between the characters): found in either
    byte order, with or without a BOM, once each, on its line; an ASCII copy in the same file is found too."""
    stranger = vault.unknown()
    text = f"# deploy\r\n$env:WHATSAPP_TOKEN = \"{vault.token}\"\r\nother={stranger}\r\n"
    path = tmp_path / "env.ps1"
    path.write_bytes(text.encode(encoding) + f"\nascii copy {vault.token}\n".encode())
    doc = scan(cli, str(path), "--json", secrets=(vault.token, stranger)).json()
    assert sorted((f["label"], f["line"]) for f in doc["findings"]) == [("prod", 2), ("prod", 5)]
    assert [(u["line"], u["last4"]) for u in doc["unknown"]] == [(3, stranger[-4:])]


@pytest.mark.parametrize("shift", [-61, -6, -5, -1, 0, 1, 4, 101], ids=lambda s: f"shift{s:+d}")
def test_a_utf16_token_across_a_chunk_boundary_is_found_once(cli: CliRunner, vault: Vault, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch, shift: int) -> None:
    monkeypatch.setattr(scan_module, "CHUNK", 4096)
    token = vault.token.encode("utf-16-le")
    start = 3 * 4096 + shift
    data = bytearray("0123456789abcde\n".encode("utf-16-le") * (6 * 4096 // 32))
    data[start - 2:start + len(token) + 2] = " ".encode("utf-16-le") + token + " ".encode("utf-16-le")
    path = tmp_path / "big.log"
    path.write_bytes(bytes(data))
    doc = scan(cli, str(path), "--json", secrets=(vault.token,)).json()
    assert [(f["label"], f["line"]) for f in doc["findings"]] == [("prod", data[:start].count(b"\n") + 1)]
    assert doc["unknown"] == []


def test_symlinks_are_not_followed_out_of_the_tree(cli: CliRunner, vault: Vault, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text(vault.token)
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "to-file").symlink_to(outside / "secret.txt")
    (tree / "to-dir").symlink_to(outside, target_is_directory=True)
    (tree / "ok.txt").write_text("fine\n")
    res = scan(cli, str(tree), "--json", secrets=(vault.token,))
    assert res.code == 0 and res.json()["findings"] == [] and res.json()["files"] == 1


def test_unreadable_files_and_folders_are_reported_and_skipped(cli: CliRunner, vault: Vault, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    tree = tmp_path / "tree"
    (tree / "locked").mkdir(parents=True)
    (tree / "locked" / "inner.txt").write_text(vault.token)
    (tree / "secret.txt").write_text(vault.token)
    (tree / "fine.txt").write_text("fine\n")
    os.chmod(tree / "secret.txt", 0)
    os.chmod(tree / "locked", 0)
    with monkeypatch.context() as patch:
        if os.geteuid() == 0:  # root reads anything: refuse what a user could not read, as the kernel would
            real_open, real_scandir = os.open, os.scandir

            def no_access(path: object) -> None:
                if stat.S_IMODE(os.stat(path).st_mode) == 0:  # type: ignore[arg-type]
                    raise PermissionError(13, "Permission denied", str(path))

            patch.setattr(os, "open", lambda path, *a, **k: no_access(path) or real_open(path, *a, **k))
            patch.setattr(os, "scandir", lambda path=".": no_access(path) or real_scandir(path))
        try:
            res = scan(cli, str(tree), "--json", secrets=(vault.token,))
            assert res.code == 0, res.err  # unreadable is reported, not an error
            skipped = {Path(s["path"]).name: s["reason"] for s in res.json()["skipped"]}
            assert skipped == {"locked": "Permission denied", "secret.txt": "Permission denied"}
            people = scan(cli, str(tree))
            assert "skipped" in people.err and "secret.txt" in people.err
        finally:
            os.chmod(tree / "locked", 0o700)


@pytest.mark.parametrize(("args", "code", "words"), [
    (("scan", "{tmp}/missing"), 3, "No such file"),
    (("scan", "{tmp}/plain", "{tmp}/missing"), 3, "No such file"),
    (("scan", "--git", "{tmp}/plain"), 2, "not inside a git repository"),
    (("scan", "--git", "{tmp}/missing"), 3, "No such file"),
    (("scan",), 2, "Nothing to scan"),
    (("scan", "-", "--git"), 2, "cannot be scanned with --git"),
], ids=["missing", "one-missing", "git-not-a-repo", "git-missing", "nothing", "stdin-git"])
def test_bad_input(cli: CliRunner, vault: Vault, tmp_path: Path, args: tuple[str, ...], code: int,
                   words: str) -> None:
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "f.txt").write_text(vault.token)
    res = cli(*(a.replace("{tmp}", str(tmp_path)) for a in args))
    assert res.code == code, res.err
    assert res.err.startswith("error: ") and words in res.err and "Traceback" not in res.err
    assert vault.token not in res.err + res.out


def test_json_is_one_document_and_never_holds_a_token(cli: CliRunner, vault: Vault, tmp_path: Path) -> None:
    (tmp_path / "f").write_text(f"{vault.token}\n{vault.unknown()}\n")
    res = scan(cli, str(tmp_path), "--json", secrets=(vault.token,))
    doc = json.loads(res.out)
    assert "EAA" not in res.out and isinstance(doc["seconds"], float)


def test_the_pre_commit_hook_runs_scan_on_the_staged_files(cli: CliRunner, vault: Vault, tmp_path: Path) -> None:
    """.pre-commit-hooks.yaml: pre-commit runs ``entry`` + the staged file names; a live token fails it."""
    import yaml

    hooks = yaml.safe_load((Path(__file__).resolve().parent.parent / ".pre-commit-hooks.yaml").read_text())
    hook = next(h for h in hooks if h["id"] == "tokenvault-scan")
    assert hook["pass_filenames"] is True and hook["language"] == "python"
    program, *args = hook["entry"].split()
    assert program == "tokenvault"
    (tmp_path / "settings.py").write_text(f"TOKEN = '{vault.token}'\n")
    (tmp_path / "clean.py").write_text("print('hi')\n")
    staged = [str(tmp_path / "settings.py"), str(tmp_path / "clean.py")]
    res = cli(*args, *staged)
    assert res.code == 9 and "prod" in res.out and vault.token not in res.out + res.err
    assert cli(*args, staged[1]).code == 0


class _Generated:
    """A stream of ``size`` bytes made on demand (log lines), ``token`` at the very end; records the largest
    read asked for. Stands for a 10 GB file without writing one."""

    def __init__(self, size: int, token: bytes) -> None:
        self.left, self.token, self.largest = size, token, 0
        self.line = b"2026-11-29T10:00:00Z GET /v24.0/me/messages 200 latency_ms=12\n"

    def readinto(self, view: memoryview) -> int:
        self.largest = max(self.largest, len(view))
        n = min(len(view), self.left)
        if n == 0:
            return 0
        if self.left - n < len(self.token) + 1:  # the tail: filler, then the token
            n = self.left
            tail = (self.line * (n // len(self.line) + 1))[:n - len(self.token) - 1] + b"\n" + self.token
            view[:n] = tail
        else:
            view[:n] = (self.line * (n // len(self.line) + 1))[:n]
        self.left -= n
        return n


def test_a_huge_stream_is_read_in_chunks_never_whole(monkeypatch: pytest.MonkeyPatch) -> None:
    import hashlib
    import tracemalloc

    from meta_tokenvault.types import Secret
    from meta_tokenvault.usecases.scan import Scanner, StoredVersion

    monkeypatch.setattr(scan_module, "CHUNK", 1 << 20)
    value = "EAA" + "Zx9" * 60

    def fingerprint(secret: Secret) -> str:
        return hashlib.sha256(secret.reveal().encode()).hexdigest()[:32]

    stream = _Generated(64 << 20, value.encode())
    tracemalloc.start()
    try:
        scanner = Scanner([StoredVersion("big", 3, "active", fingerprint(Secret(value)), value[-4:])], fingerprint)
        report = scanner.scan(["-"], stdin=stream)  # type: ignore[arg-type]
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert [(f.label, f.version) for f in report.findings] == [("big", 3)]
    assert report.scanned_bytes == 64 << 20 and report.live_labels == ["big"]
    assert stream.largest <= 1 << 20  # never more than a chunk asked for at once
    assert peak < 8 << 20  # the buffer (1 MiB + overlap) and small change, not 64 MiB


@pytest.mark.parametrize("database", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_scan_reads_no_secret(tmp_path: Path, request: pytest.FixtureRequest, database: str) -> None:
    """Matching is by fingerprint (every version's, read in one query on either database): the secret backend
    is never asked for a token."""
    from graph_world import make_world

    from meta_tokenvault.types import Secret

    world = make_world(tmp_path, db_url=None if database == "sqlite" else request.getfixturevalue("pg_url"))
    manager = world.manager()
    try:
        manager.generate_token("prod", business="acme", scopes=["whatsapp_business_messaging"])
        value = manager.reveal("prod").reveal()
        (tmp_path / "f.txt").write_text(f"token={value}\n")

        class Refusing:
            name = "refusing"

            def get(self, *args: object, **kwargs: object) -> Secret:
                raise AssertionError("scan read a secret")

        manager.ctx.secrets = Refusing()  # type: ignore[assignment]
        report = manager.scan([str(tmp_path / "f.txt")])
        assert [(f.label, f.line, f.status) for f in report.findings] == [("prod", 1, "active")]
    finally:
        manager.close()


def test_a_named_pipe_given_by_name_is_read_once_with_its_lines(cli: CliRunner, vault: Vault, tmp_path: Path) -> None:
    """``tokenvault scan <(journalctl ...)``: a FIFO named on the command line is read (it cannot be read twice,
    so its lines are counted on the way)."""
    import threading

    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)

    def write() -> None:
        with open(fifo, "w") as out:
            out.write(f"one\ntwo\nthree {vault.token}\n")

    writer = threading.Thread(target=write)
    writer.start()
    try:
        doc = scan(cli, str(fifo), "--json", secrets=(vault.token,)).json()
    finally:
        writer.join(timeout=10)
    assert [(f["label"], f["line"]) for f in doc["findings"]] == [("prod", 3)]


def test_many_hits_tables_are_capped_and_json_counts_them_all(cli: CliRunner, vault: Vault, tmp_path: Path) -> None:
    import random
    import string

    rng = random.Random(7)
    values = ["EAA" + "".join(rng.choices(string.ascii_letters + string.digits, k=60)) for _ in range(250)]
    (tmp_path / "many.log").write_text("".join(f"t={v}\n" for v in values))
    people = scan(cli, str(tmp_path / "many.log"))
    assert people.code == 0 and "250 unknown (the tables list the first 200" in people.err
    doc = scan(cli, str(tmp_path / "many.log"), "--json").json()
    assert doc["unknown_total"] == len(doc["unknown"]) == 250
    assert [u["line"] for u in doc["unknown"]] == list(range(1, 251))


def test_rotate_revokes_a_leaked_older_version_that_still_works_and_leaves_the_current_one(
        cli: CliRunner, vault: Vault, tmp_path: Path) -> None:
    """A refresh leaves the previous token valid at Meta until its own expiry (status retired). When THAT one
    leaks, --rotate must kill it; rotating the label would revoke the current token (which did not leak) and
    leave the leaked one working."""
    w = vault.world
    old = vault.sim.issue_token(w.app_id, w.old_admin_id, SCOPES.split(","), expiring=True)  # type: ignore[attr-defined]
    assert cli("token", "import", "exp", "--business", "acme", stdin=old).code == 0
    assert cli("token", "refresh", "exp").code == 0
    current = cli("token", "reveal", "exp").out.strip()
    assert vault.sim.token_state(old) == "valid" and current != old
    (tmp_path / "leak.log").write_text(f"Authorization: Bearer {old}\n")
    res = scan(cli, str(tmp_path / "leak.log"), "--rotate", "--json", secrets=(old, current))
    assert res.code == 9, res.err
    assert res.json()["rotation"]["revoked_versions"] == [
        {"label": "exp", "version": 1, "state": "done", "message": ""}]
    assert vault.sim.token_state(old) == "revoked"  # the leaked one is dead at Meta
    assert vault.sim.token_state(current) == "valid"  # the current one, which did not leak, still works
    shown = cli("token", "show", "exp", "--json").json()
    assert shown["version"] == 2 and shown["status"] == "active"
    assert [(h["version"], h["status"]) for h in shown["history"]] == [(2, "active"), (1, "compromised")]
    again = scan(cli, str(tmp_path / "leak.log"), "--json", secrets=(old, current))
    assert again.code == 0, again.err


def test_token_revoke_version_kills_a_leaked_older_version(cli: CliRunner, vault: Vault) -> None:
    """Without --rotate, the warning's way to kill a leaked older version: `token revoke LABEL --version N`."""
    w = vault.world
    old = vault.sim.issue_token(w.app_id, w.old_admin_id, SCOPES.split(","), expiring=True)  # type: ignore[attr-defined]
    assert cli("token", "import", "exp", "--business", "acme", stdin=old).code == 0
    assert cli("token", "refresh", "exp").code == 0
    found = scan(cli, "-", stdin=f"{old}\n", secrets=(old,))
    assert found.code == 9 and "token revoke LABEL --version N" in found.err
    res = cli("token", "revoke", "exp", "--version", "1")
    assert res.code == 0, res.err
    assert vault.sim.token_state(old) == "revoked"
    assert cli("token", "show", "exp", "--json").json()["status"] == "active"
    assert scan(cli, "-", stdin=f"{old}\n", secrets=(old,)).code == 0
