"""Injection without a child process: templates (`inject`), exports (`export`), the --mask redactor,
and the Python API example. Real store, real CLI (in-process), real files; nothing of ours is mocked.

Process-level behaviour of `exec` (environment, argv, signals, exit codes, masking, restarts) is in
test_inject_exec.py, which reuses the fixtures and helpers defined here.
"""

from __future__ import annotations

import base64
import importlib.util
import json
import os
import random
import re
import shutil
import stat
import subprocess
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from cli_support import Result

from meta_tokenvault.errors import InvalidInput
from meta_tokenvault.inject import StreamRedactor, dotenv_quote, parse_template
from meta_tokenvault.types import Secret, SecretKind, SecretRef, TokenSource, TokenStatus

REPO = Path(__file__).resolve().parent.parent
TOKEN = "EAAGinjectTestToken" + "a1B2c3D4" * 12 + "ZZ90"
TOKEN_V2 = "EAAGinjectRotated" + "Q9w8E7r6" * 12 + "YY42"
OTHER = "EAAGinjectOtherTok" + "m5N6b7V8" * 12 + "XX17"
SECRETS = (TOKEN, TOKEN_V2, OTHER)


# ---------------------------------------------------------------------------------------------- fixtures
def import_token(cli: Any, label: str, token: str, *extra: str) -> None:
    result = cli("token", "import", label, "--business", "acme", "--system-user", "1", "--scopes", "a",
                 "--no-verify", *extra, stdin=token + "\n")
    assert result.code == 0, result.err


@pytest.fixture
def ready(cli: Any, env_home: Path) -> Path:
    """An initialised home with business `acme` and token `prod` (TOKEN, WABA 444)."""
    assert cli("init").code == 0
    added = cli("business", "add", "acme", "--business-id", "111", "--app-id", "222",
                stdin="app-secret-xyz-123\nEAAadminTokenForInject9876\n")
    assert added.code == 0, added.err
    import_token(cli, "prod", TOKEN, "--waba", "444")
    return env_home


@pytest.fixture
def work(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty working folder (the current directory) for templates and outputs, outside the home."""
    folder = tmp_path / "work"
    folder.mkdir()
    monkeypatch.chdir(folder)
    return folder


def manager() -> Any:
    """A TokenManager on the test's home, configured from the environment exactly like the CLI."""
    from meta_tokenvault.config import Settings
    from meta_tokenvault.wiring import build_manager

    return build_manager(Settings.resolve({}))


def new_version(label: str, value: str) -> int:
    """What a successful rotation leaves behind, written through the service's ports (the Graph API,
    which rotation needs to mint, is not involved): the new version stored, promoted to current and
    active, the old one retired. Returns the new version number."""
    m = manager()
    try:
        record = m.store.get_token(label)
        number = record.version + 1
        secret = Secret(value)
        m.secrets.put(SecretRef(SecretKind.TOKEN, record.id, number, label), secret, {"fingerprint": "test"})
        m.store.add_version(record.id, number, {
            "status": TokenStatus.PENDING, "source": TokenSource.ROTATED,
            "system_user_id": record.provenance.system_user_id, "app_id": record.provenance.app_id,
            "scopes": list(record.provenance.scopes), "waba_ids": list(record.provenance.waba_ids),
            "fingerprint": m.fingerprint(secret), "last4": secret.last4, "created_at": datetime.now(UTC),
            "expires_at": None, "verified_at": None, "debug_summary": {}, "backend": m.secrets.name,
        }, make_current=False)
        m.store.promote(record.id, number, record.version, TokenStatus.RETIRED)
        m.audit("token.rotate", label, version=number)
        return number
    finally:
        m.store.close()


def set_status(label: str, status: TokenStatus) -> None:
    m = manager()
    try:
        record = m.store.get_token(label)
        m.store.update_version(record.id, record.version, status=status)
    finally:
        m.store.close()


def assert_clean_error(result: Result, code: int, *, hint: str | None = None) -> None:
    """One `error:` line (plus an optional `hint:` line), the contract's code, no secret anywhere."""
    assert result.code == code, (result.code, result.err)
    lines = [line for line in result.err.splitlines() if line.strip()]
    assert lines and lines[0].startswith("error: "), result.err
    assert len(lines) <= 2 and (len(lines) == 1 or lines[1].startswith("hint: ")), result.err
    if hint is not None:
        assert hint in result.err
    for secret in SECRETS:
        assert secret not in result.err and secret not in result.out


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# ---------------------------------------------------------------------------------------------- inject
TEMPLATE = """\
# app config -- {{ .Values.other }} and {{ not ours }} stay as they are
token: "{{ tokenvault://prod }}"
token_again: {{tokenvault://prod/token}}
waba: {{ tokenvault://prod/waba_id }}
business: {{ tokenvault://prod/business_id }} / {{ tokenvault://prod/business }}
version: {{ tokenvault://prod/version }}
literal: \\{{ tokenvault://prod }}
"""


def test_inject_renders_values_and_fields_into_a_private_file(cli: Any, ready: Path, work: Path) -> None:
    (work / "app.tmpl").write_text(TEMPLATE)
    out = work / "app.yaml"
    result = cli("inject", "-i", str(work / "app.tmpl"), "-o", str(out))
    assert result.code == 0, result.err
    assert mode(out) == 0o600
    assert out.read_text() == (
        "# app config -- {{ .Values.other }} and {{ not ours }} stay as they are\n"
        f'token: "{TOKEN}"\ntoken_again: {TOKEN}\nwaba: 444\nbusiness: 111 / acme\nversion: 1\n'
        "literal: {{ tokenvault://prod }}\n")
    assert TOKEN not in result.out + result.err
    assert sorted(p.name for p in work.iterdir()) == ["app.tmpl", "app.yaml"]  # no temp file left


def test_inject_replaces_an_existing_file_with_a_private_one(cli: Any, ready: Path, work: Path) -> None:
    (work / "t").write_text("x={{ tokenvault://prod }}\n")
    out = work / "out.env"
    out.write_text("old\n")
    out.chmod(0o644)
    result = cli("inject", "-i", str(work / "t"), "-o", str(out), "--json")
    assert result.code == 0, result.err
    assert out.read_text() == f"x={TOKEN}\n" and mode(out) == 0o600
    summary = result.json()
    assert summary["output"] == str(out) and summary["mode"] == "0600"
    assert summary["references"] == [{"label": "prod", "field": "token", "line": 1, "col": 3}]


def test_inject_to_stdout(cli: Any, ready: Path, work: Path) -> None:
    (work / "t").write_text("a {{ tokenvault://prod/last4 }} b {{ tokenvault://prod }}")
    result = cli("inject", "-i", str(work / "t"), "-o", "-")
    assert result.code == 0, result.err
    assert result.out == f"a ZZ90 b {TOKEN}"


def test_inject_reads_the_template_from_stdin(cli: Any, ready: Path) -> None:
    result = cli("inject", "-i", "-", "-o", "-", stdin="{{ tokenvault://prod/scopes }}\n")
    assert result.code == 0 and result.out == "a\n"


BAD_TEMPLATES = [
    pytest.param("ok {{ tokenvault://prod }}\nx: {{ tokenvault://missing }}\n", 3, "t:2:4", id="unknown-label"),
    pytest.param("{{ tokenvault://prod }} {{ tokenvault://prod/nope }}", 2, "t:1:25", id="unknown-field"),
    pytest.param("{{ tokenvault://prod }}\n\n  {{ tokenvault:/prod }}", 2, "t:3:3", id="malformed"),
    pytest.param("{{ tokenvault://prod", 2, "t:1:1", id="unterminated"),
    pytest.param("{{ tokenvault://-bad }}", 2, "t:1:1", id="invalid-label"),
    pytest.param("{{ tokenvault://prod }} {{ tokenvault://nowaba/waba_id }}", 2, "t:1:25", id="field-without-value"),
]


@pytest.mark.parametrize(("text", "code", "where"), BAD_TEMPLATES)
def test_a_bad_reference_writes_nothing_and_keeps_the_old_output(
        cli: Any, ready: Path, work: Path, text: str, code: int, where: str) -> None:
    import_token(cli, "nowaba", OTHER)
    (work / "t").write_text(text)
    out = work / "out.yaml"
    out.write_text("previous content\n")
    out.chmod(0o640)
    before = sorted(p.name for p in work.iterdir())
    result = cli("inject", "-i", "t", "-o", "out.yaml")
    assert_clean_error(result, code)
    assert where in result.err
    assert out.read_text() == "previous content\n" and mode(out) == 0o640
    assert sorted(p.name for p in work.iterdir()) == before
    fresh = cli("inject", "-i", "t", "-o", "new.yaml")
    assert fresh.code == code and not (work / "new.yaml").exists()
    to_stdout = cli("inject", "-i", "t", "-o", "-")
    assert to_stdout.code == code and to_stdout.out == ""


def test_inject_refuses_an_inactive_token_unless_allowed(cli: Any, ready: Path, work: Path) -> None:
    set_status("prod", TokenStatus.REVOKED)
    (work / "t").write_text("{{ tokenvault://prod }}")
    out = work / "o"
    refused = cli("inject", "-i", str(work / "t"), "-o", str(out))
    assert_clean_error(refused, 2, hint="--allow-inactive")
    assert "revoked" in refused.err and not out.exists()
    allowed = cli("inject", "-i", str(work / "t"), "-o", str(out), "--allow-inactive")
    assert allowed.code == 0 and out.read_text() == TOKEN


@pytest.mark.parametrize(("args", "code"), [
    pytest.param(["-i", "does-not-exist", "-o", "-"], 3, id="missing-template"),
    pytest.param(["-i", "t", "-o", "no/such/dir/out"], 2, id="missing-output-folder"),
    pytest.param(["-i", "t", "-o", "-", "--json"], 2, id="json-to-stdout"),
])
def test_inject_usage_errors(cli: Any, ready: Path, work: Path, args: list[str], code: int) -> None:
    Path("t").write_text("{{ tokenvault://prod }}")
    assert_clean_error(cli("inject", *args), code)


def test_template_syntax_and_escapes() -> None:
    parsed = parse_template("a\\\\{{ tokenvault://x }}b\\{{ tokenvault://y }}{{ other }}", name="n")
    kinds = [p if isinstance(p, str) else (p.label, p.field) for p in parsed.parts]
    assert kinds == ["a\\", ("x", "token"), "b", "{{", " tokenvault://y }}{{ other }}"]
    with pytest.raises(InvalidInput, match=r"n:2:3: unknown field 'secret'"):
        parse_template("\n  {{ tokenvault://x/secret }}", name="n")


# ---------------------------------------------------------------------------------------------- export
def test_export_dotenv(cli: Any, ready: Path) -> None:
    result = cli("export", "prod", "--format", "dotenv")
    assert result.code == 0, result.err
    lines = result.out.splitlines()
    assert lines[0].startswith("# tokenvault export of prod v1") and lines[1] == f"WHATSAPP_TOKEN={TOKEN}"
    named = cli("export", "prod", "-f", "dotenv", "--var", "WA_TOKEN")
    assert named.out.splitlines()[1] == f"WA_TOKEN={TOKEN}"


@pytest.mark.parametrize("value", [
    "EAAGplain123", "with space", "dollar$HOME and `cmd`", "quote'single", 'quote"double',
    "back\\slash", "all'\"$`\\ of it", "#hash", "~tilde", "", "semi;colon&amp", "*glob?",
], ids=["bare", "space", "dollar-backquote", "single-quote", "double-quote", "backslash", "everything",
        "hash", "tilde", "empty", "shell-operators", "glob"])
def test_dotenv_values_read_back_identically_by_sh(work: Path, value: str) -> None:
    line = f"V={dotenv_quote(value)}\n"
    (work / "env").write_text(line)
    read = subprocess.run(["sh", "-c", '. "$1"; printf %s "$V"', "sh", str(work / "env")],
                          capture_output=True, text=True, check=True, timeout=10, cwd=work)
    assert read.stdout == value, line
    if value and re.fullmatch(r"[A-Za-z0-9]+", value):
        assert line == f"V={value}\n"  # Meta tokens are written bare
    if "'" not in value and "\\" not in value and not re.fullmatch(r"[A-Za-z0-9_./:@%+,=-]+", value):
        assert line == f"V='{value}'\n"  # literal for sh, systemd, Compose and python-dotenv alike


def test_dotenv_refuses_a_newline() -> None:
    with pytest.raises(InvalidInput):
        dotenv_quote("two\nlines")


def test_export_json(cli: Any, ready: Path) -> None:
    result = cli("export", "prod", "--format", "json")
    assert result.code == 0, result.err
    doc = result.json()
    assert doc["token"] == TOKEN and doc["var"] == "WHATSAPP_TOKEN" and doc["label"] == "prod"
    assert doc["metadata"]["waba_ids"] == ["444"] and doc["metadata"]["version"] == 1
    assert cli("export", "prod", "--format", "json", "--json").json() == doc  # --json: the same document


def _k8s(cli: Any, *args: str) -> dict[str, Any]:
    yaml = pytest.importorskip("yaml")
    result = cli("export", "prod", "--format", "k8s-secret", *args)
    assert result.code == 0, result.err
    doc: dict[str, Any] = yaml.safe_load(result.out)
    return doc


def test_export_k8s_secret_is_valid_yaml_with_provenance(cli: Any, ready: Path) -> None:
    doc = _k8s(cli)
    assert (doc["apiVersion"], doc["kind"], doc["type"]) == ("v1", "Secret", "Opaque")
    assert doc["metadata"]["name"] == "prod"
    assert base64.b64decode(doc["data"]["WHATSAPP_TOKEN"], validate=True).decode() == TOKEN
    notes = doc["metadata"]["annotations"]
    assert notes["tokenvault.io/label"] == "prod" and notes["tokenvault.io/version"] == "1"
    assert notes["tokenvault.io/business-id"] == "111" and notes["tokenvault.io/waba-ids"] == "444"
    assert notes["tokenvault.io/system-user"] == "1" and notes["tokenvault.io/expires-at"] == "never"
    assert all(isinstance(v, str) for v in notes.values())  # annotations must be strings
    assert TOKEN not in json.dumps(doc["metadata"])
    assert doc["metadata"]["labels"] == {"app.kubernetes.io/managed-by": "tokenvault"}


def test_export_k8s_secret_options(cli: Any, ready: Path) -> None:
    doc = _k8s(cli, "--name", "wa-token", "-n", "shop", "--var", "TOKEN", "--string-data")
    assert doc["metadata"]["name"] == "wa-token" and doc["metadata"]["namespace"] == "shop"
    assert doc["stringData"] == {"TOKEN": TOKEN} and "data" not in doc
    bad = cli("export", "prod", "--format", "k8s-secret", "--name", "Not_Valid")
    assert_clean_error(bad, 2, hint="--name not-valid")


class _KubeDiscoveryStub:
    """Just enough of a Kubernetes API server for `kubectl apply --dry-run=client`: discovery of
    v1/secrets and a 404 for the object. kubectl itself parses, decodes and prints the Secret."""

    def __init__(self) -> None:
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        resources = {
            "/api": {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []},
            "/apis": {"kind": "APIGroupList", "apiVersion": "v1", "groups": []},
            "/api/v1": {"kind": "APIResourceList", "groupVersion": "v1", "resources": [
                {"name": "secrets", "singularName": "secret", "namespaced": True, "kind": "Secret",
                 "verbs": ["create", "get", "list", "patch", "update", "delete"]}]},
        }

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - the http.server API
                body = resources.get(self.path.split("?")[0])
                code = 200 if body else 404
                data = json.dumps(body or {"kind": "Status", "apiVersion": "v1", "status": "Failure",
                                           "reason": "NotFound", "code": 404}).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def kube_stub() -> Iterator[_KubeDiscoveryStub]:
    if shutil.which("kubectl") is None:
        pytest.skip("kubectl is not installed")
    stub = _KubeDiscoveryStub()
    yield stub
    stub.close()


@pytest.mark.parametrize("extra", [[], ["--string-data", "--namespace", "shop"]], ids=["data", "stringData"])
def test_kubectl_accepts_the_secret(cli: Any, ready: Path, work: Path, kube_stub: _KubeDiscoveryStub,
                                    extra: list[str]) -> None:
    exported = cli("export", "prod", "--format", "k8s-secret", *extra)
    assert exported.code == 0, exported.err
    env = {"PATH": os.environ["PATH"], "HOME": str(work), "KUBECONFIG": str(work / "none")}
    applied = subprocess.run(["kubectl", "--server", kube_stub.url, "apply", "--dry-run=client", "--validate=false",
                              "-f", "-", "-o", "json"], input=exported.out, capture_output=True, text=True,
                             env=env, timeout=30)
    assert applied.returncode == 0, applied.stderr
    obj = json.loads(applied.stdout)
    assert obj["kind"] == "Secret" and obj["type"] == "Opaque"
    assert obj["metadata"]["annotations"]["tokenvault.io/label"] == "prod"
    if extra:
        assert obj["stringData"]["WHATSAPP_TOKEN"] == TOKEN and obj["metadata"]["namespace"] == "shop"
    else:
        assert base64.b64decode(obj["data"]["WHATSAPP_TOKEN"]).decode() == TOKEN


def _parse_github_env(text: str) -> dict[str, str]:
    """GITHUB_ENV as the runner reads it: NAME=value lines and NAME<<DELIM ... DELIM blocks."""
    values: dict[str, str] = {}
    lines = iter(text.splitlines())
    for line in lines:
        if "<<" in line and ("=" not in line or line.index("<<") < line.index("=")):
            name, delimiter = line.split("<<", 1)
            body = []
            for inner in lines:
                if inner == delimiter:
                    break
                body.append(inner)
            else:
                raise AssertionError(f"unterminated block for {name}")
            values[name] = "\n".join(body)
        elif line:
            name, value = line.split("=", 1)
            values[name] = value
    return values


def test_export_github_env_masks_and_appends(cli: Any, ready: Path, work: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    github_env = work / "github_env"
    github_env.write_text("EARLIER=1\n")
    monkeypatch.setenv("GITHUB_ENV", str(github_env))
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    result = cli("export", "prod", "--format", "github-env", "--var", "WA_TOKEN")
    assert result.code == 0, result.err
    assert result.out.splitlines() == [f"::add-mask::{TOKEN}"]  # stdout: only the workflow command
    assert TOKEN not in result.err
    text = github_env.read_text()
    assert text.startswith("EARLIER=1\n")
    assert _parse_github_env(text) == {"EARLIER": "1", "WA_TOKEN": TOKEN}
    assert re.search(r"^WA_TOKEN<<ghadelimiter_[0-9a-f]{32}$", text, re.M)
    again = cli("export", "prod", "--format", "github-env")
    assert again.code == 0 and _parse_github_env(github_env.read_text())["WHATSAPP_TOKEN"] == TOKEN


def test_export_github_env_creates_a_private_file_and_needs_a_target(cli: Any, ready: Path, work: Path) -> None:
    assert_clean_error(cli("export", "prod", "--format", "github-env"), 2, hint="-o FILE")
    target = work / "env"
    assert cli("export", "prod", "--format", "github-env", "-o", str(target)).code == 0
    assert mode(target) == 0o600 and _parse_github_env(target.read_text()) == {"WHATSAPP_TOKEN": TOKEN}
    assert_clean_error(cli("export", "prod", "--format", "github-env", "--json"), 2)


@pytest.mark.parametrize("fmt", ["dotenv", "json", "k8s-secret"])
def test_export_to_a_file_is_private_and_atomic(cli: Any, ready: Path, work: Path, fmt: str) -> None:
    out = work / "secret.out"
    out.write_text("old")
    out.chmod(0o644)
    result = cli("export", "prod", "--format", fmt, "-o", str(out), "--json")
    assert result.code == 0, result.err
    assert mode(out) == 0o600 and ("old" not in out.read_text())
    assert result.json() == {"output": str(out), "format": fmt, "label": "prod", "version": 1,
                             "var": "WHATSAPP_TOKEN", "mode": "0600"}
    assert TOKEN not in result.out and sorted(p.name for p in work.iterdir()) == ["secret.out"]


def test_export_errors(cli: Any, ready: Path) -> None:
    assert_clean_error(cli("export", "nope", "--format", "dotenv"), 3)
    assert_clean_error(cli("export", "prod", "--format", "yaml"), 2, hint="dotenv | json | k8s-secret | github-env")
    assert_clean_error(cli("export", "prod", "--format", "dotenv", "--var", "1BAD"), 2)
    assert_clean_error(cli("export", "prod", "--format", "dotenv", "--json"), 2)
    set_status("prod", TokenStatus.COMPROMISED)
    refused = cli("export", "prod", "--format", "dotenv")
    assert_clean_error(refused, 2, hint="--allow-inactive")
    assert "compromised" in refused.err
    assert cli("export", "prod", "--format", "dotenv", "--allow-inactive").code == 0


def test_reads_are_audited(cli: Any, ready: Path, work: Path) -> None:
    cli("export", "prod", "--format", "json")
    cli("inject", "-i", "-", "-o", "-", stdin="{{ tokenvault://prod }}")
    events = cli("audit", "list", "--json")
    assert events.code == 0, events.err
    actions = [e["action"] for e in events.json()]
    assert "token.export" in actions and "token.inject" in actions
    assert TOKEN not in events.out


# ---------------------------------------------------------------------------------------------- --mask
REDACT_VALUES = {"a": Secret("EAAGsecretAAAA1111"), "b": Secret("EAAGsecretAAAA1111more"), "c": Secret("xyz")}


def _redact_whole(data: bytes) -> bytes:
    pattern = re.compile(b"|".join(re.escape(s.reveal().encode())
                                   for s in sorted(REDACT_VALUES.values(), key=lambda s: -len(s.reveal()))))
    lookup = {s.reveal().encode(): f"<redacted:{label}>".encode() for label, s in REDACT_VALUES.items()}
    return pattern.sub(lambda m: lookup[m.group()], data)


def _feed(chunks: list[bytes]) -> bytes:
    redactor = StreamRedactor(REDACT_VALUES)
    return b"".join(redactor.feed(c) for c in chunks) + redactor.flush()


STREAMS = [b"plain EAAGsecretAAAA1111 text", b"EAAGsecretAAAA1111more!", b"EAAGsecretAAAA1111",
           b"EEEAAGsecretAAAA1111m",
           b"xyzxyEAAGsecretAAAA1111EAAGsecretAAAA1111morexyz", b"EAAGsecretAAAA111 almost", b"\x00\xffbinary xyz\x00"]


@pytest.mark.parametrize("stream", STREAMS, ids=[f"s{i}" for i in range(len(STREAMS))])
def test_redactor_catches_values_at_every_split(stream: bytes) -> None:
    expected = _redact_whole(stream)
    for cut in range(len(stream) + 1):
        assert _feed([stream[:cut], stream[cut:]]) == expected, cut
    rng = random.Random(7)
    for _ in range(200):
        cuts = sorted(rng.sample(range(len(stream) + 1), k=min(4, len(stream) + 1)))
        chunks = [stream[i:j] for i, j in zip([0, *cuts], [*cuts, len(stream)], strict=True)]
        assert _feed(chunks) == expected, cuts


def test_redactor_releases_ordinary_output_at_once() -> None:
    redactor = StreamRedactor(REDACT_VALUES)
    assert redactor.feed(b"hello\n") == b"hello\n"
    assert redactor.feed(b"wait for E") == b"wait for "  # could be the start of a token: held...
    assert redactor.feed(b"nd\n") == b"End\n"  # ...until it cannot be
    assert redactor.feed(b"tail EAAG") == b"tail " and redactor.flush() == b"EAAG"


# ---------------------------------------------------------------------------------------------- Python API
def _load_example() -> Any:
    spec = importlib.util.spec_from_file_location("whatsapp_client_example", REPO / "docs/examples/whatsapp_client.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_python_api_example_sends_with_the_current_token_and_follows_a_rotation(ready: Path) -> None:
    import httpx

    from meta_tokenvault import TokenVault

    example = _load_example()
    seen: list[str] = []
    revoked = {TOKEN}

    def graph(request: httpx.Request) -> httpx.Response:
        token = request.headers["Authorization"].removeprefix("Bearer ")
        seen.append(token)
        assert token not in str(request.url)
        if token in revoked:
            return httpx.Response(401, json={"error": {"message": "Error validating access token", "code": 190}})
        body = json.loads(request.content)
        assert request.url.path == "/v24.0/1234/messages" and body["to"] == "15551234567"
        return httpx.Response(200, json={"messaging_product": "whatsapp", "messages": [{"id": "wamid.X"}]})

    http = httpx.Client(transport=httpx.MockTransport(graph))
    with TokenVault.open() as vault:
        live = vault.live("prod", check_every=3600)
        client = example.WhatsAppClient(live, "1234", http=http)
        revoked.clear()
        assert client.send_text("15551234567", "hi")["messages"][0]["id"] == "wamid.X"
        assert seen == [TOKEN]
        new_version("prod", TOKEN_V2)  # rotated by another process; Meta revoked v1
        revoked.add(TOKEN)
        assert client.send_text("15551234567", "again")["messages"][0]["id"] == "wamid.X"
        assert seen == [TOKEN, TOKEN, TOKEN_V2] and live.version == 2
        assert TOKEN_V2 not in repr(live) and TOKEN_V2 not in repr(vault)


def test_python_api_live_token_checks_the_store_at_most_every_interval(ready: Path) -> None:
    from meta_tokenvault.api import LiveToken

    now = [0.0]
    m = manager()
    try:
        live = LiveToken(m, "prod", check_every=10, clock=lambda: now[0])
        assert live.get().reveal() == TOKEN
        new_version("prod", TOKEN_V2)
        now[0] = 9.9
        assert live.get().reveal() == TOKEN  # not checked yet
        now[0] = 10.0
        assert live.get().reveal() == TOKEN_V2 and live.version == 2
        assert live.refresh() is False
    finally:
        m.store.close()


def test_example_main_reports_a_missing_label_without_a_traceback(ready: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    example = _load_example()
    code = example.main(["--label", "nope", "--phone-number-id", "1", "--to", "2", "--text", "x"])
    assert code == 3 and capsys.readouterr().err.startswith("error: No token labelled 'nope'")



# ---------------------------------------------------------------------------------------------- github-env hardening
@pytest.mark.parametrize("actions", ["", "false", "1"], ids=["unset", "false", "one"])
def test_export_github_env_prints_no_mask_line_outside_github_actions(cli: Any, ready: Path, work: Path,
                                                                      monkeypatch: pytest.MonkeyPatch,
                                                                      actions: str) -> None:
    # on another CI the ::add-mask:: line is not a command but the token itself, in the log
    monkeypatch.setenv("GITHUB_ACTIONS", actions)
    target = work / "env"
    result = cli("export", "prod", "--format", "github-env", "-o", str(target))
    assert result.code == 0, result.err
    assert TOKEN not in result.out and TOKEN not in result.err and result.out == ""
    assert _parse_github_env(target.read_text()) == {"WHATSAPP_TOKEN": TOKEN}


def test_export_github_env_masks_inside_github_actions(cli: Any, ready: Path, work: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    result = cli("export", "prod", "--format", "github-env", "-o", str(work / "env"))
    assert result.code == 0 and result.out == f"::add-mask::{TOKEN}\n"


def test_export_github_env_out_does_not_follow_a_symlink(cli: Any, ready: Path, work: Path) -> None:
    public = work / "public.log"
    public.write_text("")
    public.chmod(0o644)
    link = work / "env"
    link.symlink_to(public)
    assert_clean_error(cli("export", "prod", "--format", "github-env", "-o", str(link)), 2, hint="-o")
    assert public.read_text() == ""


def test_export_github_env_out_refuses_a_file_others_can_read(cli: Any, ready: Path, work: Path) -> None:
    target = work / "env"
    target.write_text("EARLIER=1\n")
    target.chmod(0o640)
    assert_clean_error(cli("export", "prod", "--format", "github-env", "-o", str(target)), 2, hint="chmod 600")
    assert target.read_text() == "EARLIER=1\n"
    target.chmod(0o600)
    assert cli("export", "prod", "--format", "github-env", "-o", str(target)).code == 0
    assert _parse_github_env(target.read_text()) == {"EARLIER": "1", "WHATSAPP_TOKEN": TOKEN}


def test_every_name_the_inject_package_exports_is_its_modules_own() -> None:
    # the package loads its modules on first use (exec needs only .run); each name is the defining module's
    import importlib

    import meta_tokenvault.inject as inject

    assert set(inject.__all__) == set(inject._HOME)
    for name in inject.__all__:
        home = importlib.import_module(inject._HOME[name], inject.__name__)
        assert getattr(inject, name) is getattr(home, name), name
    assert set(inject.__all__) <= set(dir(inject))
    with pytest.raises(AttributeError):
        _ = inject.no_such_name  # type: ignore[attr-defined]
