"""`tokenvault scan`: find the vault's own tokens, any version, in files, directories, standard input and the
whole history of a git repository, without decrypting a single stored token.

How it works:

* Meta-token-shaped runs (:data:`CANDIDATE`, ``EAA`` and 20+ letters or digits) are found with a plain
  ``bytes.find`` for ``EAA`` and one compiled regular expression, over large chunks read straight into one
  reused buffer (no decoding, text and binary alike). A file of any size is streamed, never read whole; each
  chunk keeps the last :data:`OVERLAP` bytes of the previous one, so a token across a chunk boundary is found,
  and found once.
* Each candidate is fingerprinted with the store's keyed hash (the HMAC every stored version's fingerprint was
  made with) and looked up among the fingerprints of every version of every token. A match names the label,
  version and status; any other token-shaped run is ``unknown``.
* ``--git``: every blob reachable from any ref (``git rev-list --all --objects``), streamed through one
  ``git cat-file --batch``; each blob is scanned once, and the commit that introduced a blob with a hit is
  looked up afterwards in one pass of ``git log --raw``.

A candidate's value never leaves this module (findings carry its last four characters) and is never written
anywhere. Directory walks never follow symbolic links (a link's target inside the tree is scanned at its own
path; one outside the tree is not scanned) and skip ``.git`` folders (their objects are compressed: ``--git``
reads history properly). Unreadable files and folders are reported in :attr:`ScanReport.skipped` and the scan
goes on.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import IO, TYPE_CHECKING, Any

from ..errors import InvalidInput, NotFound, UsageError
from ..types import Secret

if TYPE_CHECKING:
    from ..context import VaultContext

#: The longest token-shaped run considered (Meta's tokens are about 200 characters; some reach ~400).
MAX_TOKEN = 1024
#: ``EAA`` + 20 or more ASCII letters/digits, as a whole run (not followed by another letter or digit).
CANDIDATE = re.compile(rb"EAA[A-Za-z0-9]{20,%d}(?![A-Za-z0-9])" % (MAX_TOKEN - 3))
#: The same run in UTF-16 (what PowerShell's ``>`` and many Windows editors write), either byte order: the
#: characters sit at every other byte from the ``E`` on, with NULs between them (little-endian: after each;
#: big-endian: before each, so the ``E`` is preceded by its NUL and the match starts on the ``E`` either way).
CANDIDATE_UTF16 = re.compile(rb"E\x00A\x00A(?:\x00[A-Za-z0-9]){20,%d}(?!\x00[A-Za-z0-9])" % (MAX_TOKEN - 3))
#: Bytes read at a time (the scanner's memory is about this, whatever the size of the file).
CHUNK = 8 * 1024 * 1024
#: Bytes of the previous chunk kept in front of the next one: longer than any candidate (UTF-16: two bytes a
#: character) and its lookahead.
OVERLAP = 4 * MAX_TOKEN
#: Findings and unknown runs listed (the totals are always counted): a log with the same token a million
#: times should not make a million-entry report.
MAX_LISTED = 10_000
_PREFIX = b"EAA"
_PREFIX_UTF16 = b"E\x00A\x00A"
#: Each form a token is searched in: its prefix (found with ``bytes.find``), its pattern, the step between the
#: bytes of its characters (the token is ``match[::step]``), and a byte without which the form cannot occur
#: (text files hold no NUL: one ``memchr`` spares them the UTF-16 search).
_FORMS = ((_PREFIX, CANDIDATE, 1, b""), (_PREFIX_UTF16, CANDIDATE_UTF16, 2, b"\x00"))
_CACHE_LIMIT = 100_000


@dataclass(frozen=True, slots=True)
class StoredVersion:
    """What the store knows of one version of one token: enough to name a match, never the value."""

    label: str
    version: int
    status: str
    fingerprint: str
    last4: str
    revoked: bool = False

    @property
    def live(self) -> bool:
        """Not revoked at Meta as far as the store knows (any status but ``revoked``, no revocation time)."""
        return not self.revoked and self.status != "revoked"


@dataclass(frozen=True, slots=True)
class Finding:
    """A stored token found: which label and version, where (path and line, or commit and path)."""

    label: str
    version: int
    status: str
    path: str
    line: int
    commit: str | None
    last4: str
    live: bool

    def as_json(self) -> dict[str, Any]:
        return {"label": self.label, "version": self.version, "status": self.status, "path": self.path,
                "line": self.line, "commit": self.commit, "last4": self.last4}


@dataclass(frozen=True, slots=True)
class Unknown:
    """A Meta-token-shaped run that is no version of any stored token."""

    path: str
    line: int
    commit: str | None
    last4: str

    def as_json(self) -> dict[str, Any]:
        return {"path": self.path, "line": self.line, "commit": self.commit, "last4": self.last4}


@dataclass(frozen=True, slots=True)
class Skipped:
    """A file or folder that could not be read, and why."""

    path: str
    reason: str

    def as_json(self) -> dict[str, str]:
        return {"path": self.path, "reason": self.reason}


@dataclass
class ScanReport:
    """What a scan found. ``findings``/``unknown`` list at most :data:`MAX_LISTED` each; the totals count all."""

    findings: list[Finding] = field(default_factory=list)
    unknown: list[Unknown] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    findings_total: int = 0
    unknown_total: int = 0
    scanned_bytes: int = 0
    files: int = 0
    seconds: float = 0.0
    live_labels: list[str] = field(default_factory=list)

    @property
    def attention(self) -> bool:
        """A stored token that is not revoked was found (the CLI exits 9)."""
        return bool(self.live_labels)

    def as_json(self) -> dict[str, Any]:
        return {
            "findings": [f.as_json() for f in self.findings],
            "unknown": [u.as_json() for u in self.unknown],
            "scanned_bytes": self.scanned_bytes,
            "seconds": round(self.seconds, 3),
            "files": self.files,
            "findings_total": self.findings_total,
            "unknown_total": self.unknown_total,
            "live_labels": list(self.live_labels),
            "skipped": [s.as_json() for s in self.skipped],
        }


#: ``progress(scanned_bytes, current_path)``: called after every chunk and every file.
Progress = Callable[[int, str], None]


class Scanner:
    """One scan. ``versions``: every stored version (:class:`StoredVersion`); ``fingerprint``: the store's keyed
    hash of a value (``TokenManager.fingerprint``); ``clock``: seconds, for the report's duration."""

    def __init__(self, versions: Iterable[StoredVersion], fingerprint: Callable[[Secret], str], *,
                 clock: Callable[[], float] = time.monotonic, progress: Progress | None = None) -> None:
        self._index: dict[str, list[StoredVersion]] = {}
        for version in versions:
            self._index.setdefault(version.fingerprint, []).append(version)
        self._fingerprint = fingerprint
        self._clock = clock
        self._progress = progress
        self._cache: dict[bytes, tuple[StoredVersion, ...]] = {}
        self._buf = bytearray(OVERLAP + CHUNK)
        self._live: dict[str, None] = {}
        self.report = ScanReport()

    # ------------------------------------------------------------------ entry points
    def scan(self, paths: Sequence[str], *, git: bool = False, stdin: IO[bytes] | None = None) -> ScanReport:
        """Scan ``paths`` (``-``: ``stdin``), or with ``git`` the history of the repositories at ``paths``.

        Raises :class:`NotFound` (exit 3) for a path that does not exist, before anything is scanned;
        :class:`UsageError` (exit 2) for ``--git`` on a folder outside any repository, for ``-`` with
        ``--git`` or without a ``stdin``, and for no path at all.
        """
        if not paths:
            raise UsageError("Nothing to scan.", hint="Name files or folders, `-` for standard input, "
                                                      "or `--git PATH` for a repository's history.")
        for path in paths:
            if path == "-":
                if git or stdin is None:
                    raise UsageError("`-` (standard input) cannot be scanned with --git." if git
                                     else "No standard input to scan.")
                continue
            if not os.path.lexists(path) or not os.path.exists(path):
                raise NotFound(f"No such file or directory: {path}.", hint="Check the path (a broken link counts "
                                                                          "as missing).")
        started = self._clock()
        try:
            if git:
                repos = [_git_repo(path) for path in paths]  # every one checked before any is scanned
                for repo, shown in zip(repos, paths, strict=True):
                    self._scan_git(repo, shown)
            else:
                for path in paths:
                    if path == "-":
                        assert stdin is not None
                        self._scan_reader(stdin, "-", None, None)
                        self.report.files += 1
                    else:
                        self._scan_path(path)
        finally:
            self.report.seconds = self._clock() - started
            self.report.live_labels = list(self._live)
        return self.report

    # ------------------------------------------------------------------ files and folders
    def _scan_path(self, path: str) -> None:
        """A named path: a folder is walked; a file (or a pipe the user named, e.g. ``<(cmd)``) is read."""
        try:
            info = os.stat(path)  # a link named on the command line is followed: the user chose it
        except OSError as exc:
            self._skip(path, exc)
            return
        if stat.S_ISDIR(info.st_mode):
            self._walk(path)
        elif stat.S_ISREG(info.st_mode):
            self._scan_file(path)
        elif stat.S_ISFIFO(info.st_mode):  # read once: lines are counted on the way
            self._scan_file(path, rereadable=False)
        else:
            self.report.skipped.append(Skipped(path, "not a regular file"))

    def _walk(self, root: str) -> None:
        stack = [root]
        while stack:
            folder = stack.pop()
            try:
                with os.scandir(folder) as entries:
                    listed = sorted(entries, key=lambda e: e.name)
            except OSError as exc:
                self._skip(folder, exc)
                continue
            subfolders = []
            for entry in listed:
                try:
                    if entry.is_symlink():
                        continue  # never followed: inside the tree its target is scanned at its own path
                    if entry.is_dir(follow_symlinks=False):
                        if entry.name != ".git":
                            subfolders.append(entry.path)
                    elif entry.is_file(follow_symlinks=False):
                        self._scan_file(entry.path)
                except OSError as exc:
                    self._skip(entry.path, exc)
            stack.extend(reversed(subfolders))

    def _scan_file(self, path: str, *, rereadable: bool = True) -> None:
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError as exc:
            self._skip(path, exc)
            return
        try:
            listed = len(self.report.findings), len(self.report.unknown)
            with open(fd, "rb", buffering=0, closefd=True) as raw:
                self._scan_reader(raw, path, None, None, count_lines=not rereadable)
            if rereadable and (len(self.report.findings), len(self.report.unknown)) != listed:
                self._offsets_to_lines(path, *listed)
            self.report.files += 1
        except OSError as exc:  # e.g. EIO, or a folder where a file was
            self._skip(path, exc)

    def _offsets_to_lines(self, path: str, first_finding: int, first_unknown: int) -> None:
        """The hits of ``path`` from ``first_finding``/``first_unknown`` on carry byte offsets in ``line``: read
        the file again, as far as the last one, counting newlines (only files with a hit pay for this)."""
        report = self.report
        offsets = sorted({f.line for f in report.findings[first_finding:]}
                         | {u.line for u in report.unknown[first_unknown:]})
        lines: dict[int, int] = {}
        with open(path, "rb", buffering=0) as raw:
            at, newlines = 0, 0
            for offset in offsets:
                while at < offset:
                    chunk = raw.read(min(CHUNK, offset - at))
                    if not chunk:
                        break
                    newlines += chunk.count(b"\n")
                    at += len(chunk)
                lines[offset] = newlines + 1
        for i in range(first_finding, len(report.findings)):
            report.findings[i] = replace(report.findings[i], line=lines[report.findings[i].line])
        for i in range(first_unknown, len(report.unknown)):
            report.unknown[i] = replace(report.unknown[i], line=lines[report.unknown[i].line])

    def _skip(self, path: str, exc: OSError) -> None:
        self.report.skipped.append(Skipped(path, exc.strerror or type(exc).__name__))

    # ------------------------------------------------------------------ the chunked scan
    def _scan_reader(self, reader: Any, path: str, commit: str | None, limit: int | None,
                     blob: str | None = None, *, count_lines: bool = True) -> None:
        """Scan what ``reader.readinto`` gives (``limit`` bytes, or up to end of file).

        ``buf[0:kept]`` holds the tail of the previous chunk; a candidate is taken only when it starts before
        ``cut`` (the last :data:`OVERLAP` bytes wait for the next chunk, unless this is the end), so every
        candidate is seen whole and once. Lines are counted incrementally (``bytes.count`` of the newlines);
        without ``count_lines`` (a file that can be read again) a hit's ``line`` is its byte offset, for
        :meth:`_offsets_to_lines`: counting every newline of every file costs as much as the search itself.
        """
        buf = self._buf
        view = memoryview(buf)
        kept = 0  # bytes of the previous chunk at buf[0:kept]
        resume = [0] * len(_FORMS)  # per form, where the search starts in buf (after a candidate that ran past
        #                             the previous cut)
        lines_before = 0  # newlines before buf[0] (count_lines), else the offset of buf[0]
        remaining = limit
        eof = False
        report = self.report
        try:
            while not eof:
                want = CHUNK if remaining is None else min(CHUNK, remaining)
                got = (reader.readinto(view[kept:kept + want]) or 0) if want else 0
                if remaining is not None:
                    remaining -= got
                    eof = remaining <= 0 or got == 0
                else:
                    eof = got == 0
                end = kept + got
                report.scanned_bytes += got
                cut = end if eof else max(0, end - OVERLAP)
                if cut > 0:
                    for i, (prefix, pattern, step, gate) in enumerate(_FORMS):
                        if cut <= resume[i] or (gate and buf.find(gate, resume[i], end) == -1):
                            continue
                        pos = buf.find(prefix, resume[i], min(cut + len(prefix) - 1, end))
                        if pos != -1:
                            resume[i] = self._candidates(buf, pos, cut, end, lines_before, count_lines, path,
                                                         commit, blob, prefix, pattern, step)
                    lines_before += buf.count(b"\n", 0, cut) if count_lines else cut
                    if not eof:
                        buf[0:end - cut] = buf[cut:end]
                    resume = [max(0, r - cut) for r in resume]
                    kept = end - cut
                else:
                    kept = end
                if self._progress is not None and got:
                    self._progress(report.scanned_bytes, path)
        finally:
            view.release()
        if remaining is not None and remaining > 0:
            raise OSError(f"{path}: {remaining} bytes missing at the end")

    def _candidates(self, buf: bytearray, pos: int, cut: int, end: int, before: int, count_lines: bool,
                    path: str, commit: str | None, blob: str | None, prefix: bytes, pattern: re.Pattern[bytes],
                    step: int) -> int:
        """Every candidate of one form (``prefix``, ``pattern``, ``step``: :data:`_FORMS`) starting in
        ``[pos, cut)``; returns where the last one ended (0 if none did). ``before``: the newlines before
        ``buf[0]`` (``count_lines``), else the offset of ``buf[0]``."""
        match = pattern.match
        line_at, line = 0, before + 1
        limit = min(cut + len(prefix) - 1, end)
        last_end = 0
        while pos != -1 and pos < cut:
            found = match(buf, pos, end)
            if found is None:
                pos = buf.find(prefix, pos + 1, limit)
                continue
            if count_lines:
                line += buf.count(b"\n", line_at, pos)
                line_at = pos
            else:
                line = before + pos
            last_end = found.end()
            self._hit(found.group()[::step], path, line, commit, blob)
            pos = buf.find(prefix, last_end, limit)
        return last_end

    def _hit(self, raw: bytes, path: str, line: int, commit: str | None, blob: str | None) -> None:
        matches = self._cache.get(raw)
        if matches is None:
            fp = self._fingerprint(Secret(raw.decode("ascii")))
            matches = tuple(self._index.get(fp, ()))
            if len(self._cache) >= _CACHE_LIMIT:
                self._cache.clear()
            self._cache[raw] = matches
        report = self.report
        last4 = raw[-4:].decode("ascii")
        if not matches:
            report.unknown_total += 1
            if len(report.unknown) < MAX_LISTED:
                report.unknown.append(Unknown(path, line, commit or blob, last4))
            return
        for version in matches:
            report.findings_total += 1
            if version.live:
                self._live.setdefault(version.label)
            if len(report.findings) < MAX_LISTED:
                report.findings.append(Finding(version.label, version.version, version.status, path, line,
                                               commit or blob, version.last4 or last4, version.live))

    # ------------------------------------------------------------------ git history
    def _scan_git(self, repo: str, shown: str) -> None:
        """Every blob reachable from any ref of ``repo``, once each; then the commit that introduced each blob
        with a hit. ``commit`` of those hits is the blob id until :func:`_introducing_commits` names it."""
        git = _git()
        first_finding, first_unknown = len(self.report.findings), len(self.report.unknown)
        blobs: list[tuple[str, str]] = []
        listing = subprocess.run([git, "-C", repo, "rev-list", "--all", "--objects", "--filter=object:type=blob"],
                                 capture_output=True, check=False)
        if listing.returncode != 0:
            raise InvalidInput(f"git could not list the objects of {shown}: "
                               f"{listing.stderr.decode(errors='replace').strip()[:200]}",
                               hint="tokenvault needs git 2.32 or newer for --git.")
        for raw_line in listing.stdout.splitlines():
            sha, sep, name = raw_line.partition(b" ")
            if sep:  # commits are listed without a path
                blobs.append((sha.decode("ascii"), name.decode("utf-8", errors="replace")))
        del listing
        if blobs:
            self._cat_blobs(git, repo, blobs)
        hits = {f.commit for f in self.report.findings[first_finding:]}
        hits |= {u.commit for u in self.report.unknown[first_unknown:]}
        hits.discard(None)
        if not hits:
            return
        commits = _introducing_commits(git, repo, {h for h in hits if h is not None})
        report = self.report
        for i in range(first_finding, len(report.findings)):
            f = report.findings[i]
            report.findings[i] = Finding(f.label, f.version, f.status, f.path, f.line,
                                         commits.get(f.commit or ""), f.last4, f.live)
        for i in range(first_unknown, len(report.unknown)):
            u = report.unknown[i]
            report.unknown[i] = Unknown(u.path, u.line, commits.get(u.commit or ""), u.last4)

    def _cat_blobs(self, git: str, repo: str, blobs: list[tuple[str, str]]) -> None:
        proc = subprocess.Popen([git, "-C", repo, "cat-file", "--batch"], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        assert proc.stdin is not None and proc.stdout is not None
        feed, out = proc.stdin, proc.stdout

        def write_ids() -> None:  # a thread: git's output would fill the pipe while we still write its input
            try:
                for sha, _name in blobs:
                    feed.write(sha.encode("ascii") + b"\n")
                feed.close()
            except (BrokenPipeError, OSError):
                pass

        writer = threading.Thread(target=write_ids, name="tokenvault-scan-git", daemon=True)
        writer.start()
        try:
            for sha, name in blobs:
                header = out.readline().split()
                if len(header) != 3 or header[0].decode("ascii", errors="replace") != sha:
                    if len(header) == 2 and header[1] == b"missing":
                        self.report.skipped.append(Skipped(f"{name} ({sha})", "object missing from the repository"))
                        continue
                    raise InvalidInput(f"git cat-file gave an unexpected answer for {sha} in {repo}.",
                                       hint="Run `git fsck` in the repository.")
                size = int(header[2])
                self._scan_reader(out, name, None, size, blob=sha)
                out.read(1)  # the newline after the content
                self.report.files += 1
        finally:
            writer.join(timeout=5)
            out.close()
            proc.kill()
            proc.wait()


def _git() -> str:
    git = shutil.which("git")
    if git is None:
        raise InvalidInput("--git needs the git command, and it was not found on PATH.",
                           hint="Install git (2.32 or newer), or scan a checkout without --git.")
    return git


def _git_repo(path: str) -> str:
    """The repository folder holding ``path``; :class:`UsageError` (exit 2) when it is in none."""
    folder = path if os.path.isdir(path) else os.path.dirname(path) or "."
    proc = subprocess.run([_git(), "-C", folder, "rev-parse", "--git-dir"], capture_output=True, check=False)
    if proc.returncode != 0:
        raise UsageError(f"{path} is not inside a git repository; --git scans a repository's history.",
                         hint="Name the repository's folder, or scan the files without --git.")
    return folder


def _introducing_commits(git: str, repo: str, blobs: set[str]) -> dict[str, str]:
    """blob id -> the first commit (oldest first) whose diff adds it: one pass of ``git log --raw``, stopped as
    soon as every blob is named. A blob only a merge introduced (merges show no raw diff) stays unnamed."""
    proc = subprocess.Popen([git, "-C", repo, "log", "--all", "--reverse", "--format=commit %H", "--raw",
                             "--no-abbrev", "--no-renames"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    assert proc.stdout is not None
    named: dict[str, str] = {}
    commit = ""
    try:
        for raw_line in proc.stdout:
            if raw_line.startswith(b"commit "):
                commit = raw_line[7:].strip().decode("ascii")
            elif raw_line.startswith(b":"):
                fields = raw_line.split(b"\t", 1)[0].split()
                if len(fields) >= 4:
                    new = fields[3].decode("ascii")
                    if new in blobs and new not in named:
                        named[new] = commit
                        if len(named) == len(blobs):
                            break
    finally:
        proc.stdout.close()
        proc.kill()
        proc.wait()
    return named


def scan_paths(ctx: VaultContext, paths: Sequence[str], *, git: bool = False, stdin: IO[bytes] | None = None,
               progress: Callable[[int, str], None] | None = None) -> ScanReport:
    """Find this vault's tokens (any version) in ``paths``, by keyed fingerprint. Reads no secret.

    The fingerprint key is unwrapped first, so a wrong master key fails before anything is read."""
    from .. import crypto

    key = ctx.fingerprint_key()
    versions = [StoredVersion(*row) for row in ctx.store.version_fingerprints()]
    return Scanner(versions, lambda secret: crypto.fingerprint(key, secret), progress=progress).scan(
        paths, git=git, stdin=stdin)


@dataclass(frozen=True)
class RevokedVersion:
    """The outcome of revoking one leaked older version (``state``: done | failed)."""

    label: str
    version: int
    state: str
    message: str = ""

    def as_json(self) -> dict[str, object]:
        return {"label": self.label, "version": self.version, "state": self.state, "message": self.message}


def leak_response(ctx: VaultContext, report: ScanReport) -> tuple[list[str], list[tuple[str, int]]]:
    """What ``scan --rotate`` does for each live label found: ``(labels to rotate as compromised, (label,
    version) older versions to revoke)``. A label is rotated when its current version leaked (or when the
    findings do not say which version did); each OLDER version that leaked and still works at Meta (a refresh
    leaves the previous token valid until its own expiry) is revoked itself: rotating the label would revoke
    the current token, which did not leak, and leave the leaked one alive."""
    current = {label: ctx.store.get_token(label).version for label in report.live_labels}
    leaked: dict[str, set[int]] = {}
    for finding in report.findings:
        if finding.live and finding.label in current:
            leaked.setdefault(finding.label, set()).add(finding.version)
    labels = [label for label in report.live_labels
              if current[label] in leaked.get(label, {current[label]})]
    older = sorted((label, version) for label, versions in leaked.items() for version in versions
                   if version != current[label])
    return labels, older


def revoke_leaked_versions(ctx: VaultContext, older: Sequence[tuple[str, int]], *,
                           progress: Callable[[RevokedVersion], None] | None = None) -> list[RevokedVersion]:
    """Revoke each ``(label, version)`` at Meta and mark it compromised; one result per version, failures kept
    (a failure stops nothing else)."""
    from ..errors import VaultError
    from ..types import TokenStatus
    from .tokens import revoke

    done: list[RevokedVersion] = []
    for label, version in older:
        try:
            revoke(ctx, label, version=version, status=TokenStatus.COMPROMISED)
            result = RevokedVersion(label, version, "done")
        except VaultError as exc:
            result = RevokedVersion(label, version, "failed", exc.message)
        done.append(result)
        if progress is not None:
            progress(result)
    return done


__all__ = ["CANDIDATE", "CHUNK", "Finding", "OVERLAP", "RevokedVersion", "ScanReport", "Scanner", "Skipped",
           "StoredVersion", "Unknown", "leak_response", "revoke_leaked_versions", "scan_paths"]
