"""Vault/OpenBao as a first-class backend, end to end: the service, the CLI, keys rotate, and
``backend migrate``/``status`` between the local store and KV v2 (real OpenBao: tests/plugins/openbao.py).

The only test double is :class:`FailingPuts`, a SecretBackend (a port) that stops after N puts.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import requests

from meta_tokenvault.adapters.secrets_hashicorp import HashicorpBackend
from meta_tokenvault.config import Settings
from meta_tokenvault.errors import BackendUnavailable, IntegrityError, UsageError, VaultUnavailable
from meta_tokenvault.migrate import BackendMigrator, recorded_backend
from meta_tokenvault.ports.keys import Availability
from meta_tokenvault.types import Secret, SecretKind, SecretRef, TokenSource, TokenStatus
from meta_tokenvault.wiring import build_manager

if TYPE_CHECKING:
    from cli_support import CliRunner

    from meta_tokenvault.ports.secrets import SecretBackend
    from meta_tokenvault.service import TokenManager

pytestmark = pytest.mark.openbao

TOKEN_V1 = "EAAGvaultIntegrationV1" + "k3" * 40 + "AAAA"
TOKEN_V2 = "EAAGvaultIntegrationV2" + "m7" * 40 + "BBBB"
OTHER = "EAAGvaultIntegrationOther" + "p9" * 40 + "CCCC"
APP_SECRET = "app-secret-value-0042"
ADMIN = "EAAadminTokenVault" + "z" * 30
SECRETS = (TOKEN_V1, TOKEN_V2, OTHER, APP_SECRET, ADMIN)


# ---------------------------------------------------------------------- fixtures and helpers
def vault_environ(home: Path, server: Any, scope: Any, **extra: str) -> dict[str, str]:
    return {"TOKENVAULT_HOME": str(home), "TOKENVAULT_KEY_PROVIDER": "vault-transit",
            "TOKENVAULT_VAULT_ADDR": server.url, "TOKENVAULT_VAULT_TOKEN": server.root_token,
            "TOKENVAULT_VAULT_PREFIX": scope.prefix, "TOKENVAULT_VAULT_TRANSIT_KEY": scope.transit_key, **extra}


@pytest.fixture
def venv(home: Path, openbao: Any, openbao_scope: Any, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """TOKENVAULT_* for the session OpenBao (Transit master key), backend left to the store/config."""
    values = vault_environ(home, openbao, openbao_scope)
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    return values


@contextmanager
def opened(environ: Mapping[str, str] | None = None, **kw: Any) -> Iterator[TokenManager]:
    """A manager as the CLI would build it from the (monkeypatched) environment; closed afterwards."""
    manager = build_manager(Settings.resolve(environ=environ), environ=environ, **kw)
    try:
        yield manager
    finally:
        manager.store.close()


def kv_read(server: Any, prefix: str, path: str, version: int | None = None) -> dict[str, Any]:
    """What a deployment sees: GET secret/data/<prefix>/<path> with a plain HTTP client."""
    url = f"{server.url}/v1/secret/data/{prefix}/{path}" + (f"?version={version}" if version else "")
    response = requests.get(url, headers={"X-Vault-Token": server.root_token}, timeout=5)
    return {"status": response.status_code, **(response.json() if response.content else {})}


def setup_cli(cli: CliRunner, *, tokens: tuple[str, ...] = ("prod",)) -> None:
    assert cli("init").code == 0
    added = cli("business", "add", "acme", "--business-id", "1001", "--app-id", "2002",
                stdin=f"{APP_SECRET}\n{ADMIN}\n")
    assert added.code == 0, added.err
    for label, value in zip(tokens, (TOKEN_V1, OTHER), strict=False):
        imported = cli("token", "import", label, "--business", "acme", "--system-user", "3003",
                       "--scopes", "whatsapp_business_messaging", "--waba", "4004", "--no-verify", stdin=value + "\n")
        assert imported.code == 0, imported.err


def add_second_version(manager: TokenManager, label: str, value: str) -> None:
    """A rotation's storage steps, as service.import_token does them: secrets.put, then store.add_version."""
    record = manager.store.get_token(label)
    secret = Secret(value)
    ref = SecretRef(SecretKind.TOKEN, record.id, 2, label)
    manager.secrets.put(ref, secret, {"business": record.business_name, "system_user_id": "3003"})
    manager.store.add_version(record.id, 2, {
        "status": TokenStatus.ACTIVE, "source": TokenSource.ROTATED, "system_user_id": "3003",
        "app_id": record.provenance.app_id, "scopes": ["whatsapp_business_messaging"], "waba_ids": ["4004"],
        "fingerprint": manager.fingerprint(secret), "last4": secret.last4, "created_at": manager.now(),
        "expires_at": None, "verified_at": None, "debug_summary": {}, "backend": manager.secrets.name,
    }, make_current=True)
    manager.store.update_version(record.id, 1, status=TokenStatus.RETIRED)


def one_error_line(err: str, *forbidden: str) -> None:
    lines = err.strip().splitlines()
    assert len([line for line in lines if line.startswith("error: ")]) == 1, err
    assert all(line.startswith(("error: ", "hint: ")) for line in lines), err
    for value in forbidden:
        assert value not in err


class FailingPuts:
    """A SecretBackend that delegates to ``inner`` and fails every put after the first ``allowed``."""

    def __init__(self, inner: SecretBackend, allowed: int) -> None:
        self.inner, self.allowed, self.puts = inner, allowed, 0
        self.name = inner.name

    def availability(self) -> Availability:
        return self.inner.availability()

    def put(self, ref: SecretRef, secret: Secret, metadata: Mapping[str, str] | None = None) -> None:
        if self.puts >= self.allowed:
            raise BackendUnavailable("simulated outage of the target backend")
        self.puts += 1
        self.inner.put(ref, secret, metadata)

    def get(self, ref: SecretRef) -> Secret:
        return self.inner.get(ref)

    def exists(self, ref: SecretRef) -> bool:
        return self.inner.exists(ref)

    def destroy(self, ref: SecretRef) -> None:
        self.inner.destroy(ref)


# ---------------------------------------------------------------------- (a) the service on Vault
def test_service_on_vault_backend_stable_path_and_provenance(venv: dict[str, str], openbao: Any,
                                                             openbao_scope: Any, home: Path) -> None:
    environ = {**venv, "TOKENVAULT_BACKEND": "vault"}
    with opened(environ, create=True) as manager:
        assert isinstance(manager.secrets, HashicorpBackend)
        manager.initialize("vault-transit")
        manager.add_business("acme", "1001", "2002", Secret(APP_SECRET), Secret(ADMIN))
        record = manager.import_token("prod", business="acme", secret=Secret(TOKEN_V1), system_user_id="3003",
                                      scopes=["whatsapp_business_messaging"], waba_ids=["4004"], verify=False)
        assert record.backend == "vault" and record.version == 1
        assert manager.reveal("prod") == Secret(TOKEN_V1)
        shown = manager.show_token("prod").as_json()
        assert (shown["backend"], shown["system_user_id"], shown["last4"]) == ("vault", "3003", "AAAA")
        assert recorded_backend(manager) == "vault"  # a new store remembers where its secrets are
        fingerprint = shown["fingerprint"]
    # a deployment reads the current token at the stable path, field `token`
    read = kv_read(openbao, openbao_scope.prefix, "prod")
    assert read["data"]["data"] == {"token": TOKEN_V1}
    meta = json.loads(openbao.bao("kv", "metadata", "get", "-format=json",
                                  f"secret/{openbao_scope.prefix}/prod").stdout)["data"]["custom_metadata"]
    assert meta["business"] == "acme" and meta["business_id"] == "1001" and meta["system_user_id"] == "3003"
    assert meta["scopes"] == "whatsapp_business_messaging" and meta["fingerprint"] == fingerprint
    assert not any(TOKEN_V1[-12:] in v for v in meta.values())
    assert kv_read(openbao, openbao_scope.prefix, "_business/acme/admin_token")["data"]["data"] == {"token": ADMIN}
    # with the Vault backend the local database holds no token value at all
    for path in home.rglob("*"):
        if path.is_file():
            assert not any(value.encode() in path.read_bytes() for value in SECRETS), path


# ---------------------------------------------------------------------- (b) the CLI on Vault
def test_cli_init_import_reveal_on_vault(cli: CliRunner, venv: dict[str, str], openbao: Any,
                                         openbao_scope: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TOKENVAULT_KEY_PROVIDER")
    monkeypatch.setenv("TOKENVAULT_BACKEND", "vault")
    first = cli("--key-provider", "vault-transit", "init", "--json")
    assert first.code == 0, first.err
    assert first.json()["key_provider"] == "vault-transit" and first.json()["backend"] == "vault"
    assert first.json()["key_id"] == f"transit:{openbao_scope.transit_key}:v1"
    setup_ok = cli("business", "add", "acme", "--business-id", "1001", "--app-id", "2002",
                   stdin=f"{APP_SECRET}\n{ADMIN}\n")
    assert setup_ok.code == 0, setup_ok.err
    imported = cli("token", "import", "prod", "--business", "acme", "--system-user", "3003",
                   "--scopes", "whatsapp_business_messaging", "--waba", "4004", "--no-verify",
                   stdin=TOKEN_V1 + "\n")
    assert imported.code == 0, imported.err
    revealed = cli("token", "reveal", "prod")
    assert (revealed.code, revealed.out) == (0, TOKEN_V1 + "\n")
    shown = cli("token", "show", "prod", "--json")
    assert shown.json()["backend"] == "vault"
    assert kv_read(openbao, openbao_scope.prefix, "prod")["data"]["data"] == {"token": TOKEN_V1}
    status = cli("backend", "status", "--json").json()
    assert status["recorded"] == status["in_use"] == "vault" and status["versions_per_backend"] == {"vault": 1}
    assert status["business_secrets"] == 2 and status["problems"] == []
    # the key provider came from config.toml / the store from now on; the backend from the store's record
    monkeypatch.delenv("TOKENVAULT_BACKEND")
    assert cli("token", "reveal", "prod").out == TOKEN_V1 + "\n"
    doctor = cli("doctor", "--json")
    checks = {c["name"]: c for c in doctor.json()["checks"]}
    assert checks["secret backend (vault)"]["ok"], checks
    assert "KV v2" in checks["secret backend (vault)"]["detail"]
    assert checks["key provider (vault-transit)"]["ok"], checks


# ---------------------------------------------------------------------- (c) keys rotate on Transit
def test_keys_rotate_with_transit_rewraps_and_everything_stays_readable(cli: CliRunner, venv: dict[str, str],
                                                                         openbao: Any, openbao_scope: Any) -> None:
    setup_cli(cli, tokens=("prod", "staging"))
    rotated = cli("keys", "rotate", "--json")
    assert rotated.code == 0, rotated.err
    key = openbao_scope.transit_key
    assert rotated.json() == {"key_id": f"transit:{key}:v2", "rewrapped": 4, "retired": [f"transit:{key}:v1"]}
    assert cli("token", "reveal", "prod").out == TOKEN_V1 + "\n"
    assert cli("token", "reveal", "staging").out == OTHER + "\n"
    transit = openbao.client().secrets.transit.read_key(key)["data"]
    assert transit["min_decryption_version"] == 2  # v1 can no longer decrypt anything
    again = cli("keys", "rotate", "--json")
    assert again.code == 0 and again.json()["rewrapped"] == 4 and again.json()["key_id"] == f"transit:{key}:v3"
    assert cli("token", "reveal", "prod").out == TOKEN_V1 + "\n"
    assert cli("audit", "verify").code == 0


# ---------------------------------------------------------------------- (d) migrate round trip
def test_migrate_to_vault_and_back_keeps_every_version(cli: CliRunner, venv: dict[str, str], openbao: Any,
                                                       openbao_scope: Any) -> None:
    setup_cli(cli, tokens=("prod", "staging"))
    with opened() as manager:
        assert recorded_backend(manager) == "local"
        add_second_version(manager, "prod", TOKEN_V2)

    moved = cli("backend", "migrate", "--to", "vault", "--json")
    assert moved.code == 0, moved.err
    report = moved.json()
    assert (report["total"], report["copied"], report["already_in_target"]) == (5, 5, 0)
    assert report["switched"] and report["versions_relabelled"] == 3 and report["missing_in_source"] == []
    assert "copy: 5/5" in moved.err
    for value in SECRETS:
        assert value not in moved.out + moved.err

    # no TOKENVAULT_BACKEND anywhere: the store's record sends every command to Vault
    assert cli("token", "reveal", "prod").out == TOKEN_V2 + "\n"
    assert cli("token", "reveal", "prod", "--version", "1").out == TOKEN_V1 + "\n"
    assert cli("token", "reveal", "staging").out == OTHER + "\n"
    prefix = openbao_scope.prefix
    assert kv_read(openbao, prefix, "prod")["data"]["data"] == {"token": TOKEN_V2}
    assert kv_read(openbao, prefix, "prod", 1)["data"]["data"] == {"token": TOKEN_V1}
    assert kv_read(openbao, prefix, "_business/acme/app_secret")["data"]["data"] == {"token": APP_SECRET}
    status = cli("backend", "status", "--json").json()
    assert status["recorded"] == status["in_use"] == "vault"
    assert status["versions_per_backend"] == {"vault": 3} and status["problems"] == []
    with opened() as manager:
        history = manager.show_token("prod").history
        assert [v.backend for v in history] == ["vault", "vault"]
        events = [e for e in manager.audit_events() if e.action == "backend.migrate"]
        assert len(events) == 1 and events[0].details == {"source": "local", "target": "vault", "total": 5,
                                                          "copied": 5, "already": 0, "missing": 0}
        assert isinstance(manager.secrets, HashicorpBackend)

    # and back, destroying the Vault copies once the local ones are verified
    back = cli("backend", "migrate", "--to", "local", "--purge-source", "--json")
    assert back.code == 0, back.err
    report = back.json()
    # the local copies were never purged: every one was already there and is verified, not rewritten
    assert (report["copied"], report["already_in_target"], report["purged"]) == (0, 5, 5)
    assert cli("token", "reveal", "prod").out == TOKEN_V2 + "\n"
    assert cli("token", "reveal", "prod", "--version", "1").out == TOKEN_V1 + "\n"
    assert cli("token", "reveal", "staging").out == OTHER + "\n"
    gone = kv_read(openbao, prefix, "prod", 1)
    assert gone["status"] == 404 or gone["data"]["metadata"]["destroyed"], gone
    assert cli("backend", "status", "--json").json()["versions_per_backend"] == {"local": 3}
    assert cli("audit", "verify").code == 0

    # running it again is a no-op that says so
    again = cli("backend", "migrate", "--to", "local", "--json")
    assert again.code == 0 and again.json()["already_on_target"] and not again.json()["switched"]


# ---------------------------------------------------------------------- (e) interrupted migration
@pytest.mark.parametrize("allowed", [0, 2, 4], ids=["before-first", "after-2", "after-4"])
def test_interrupted_migration_leaves_the_source_configured_and_resumes(
        cli: CliRunner, venv: dict[str, str], openbao: Any, openbao_scope: Any, allowed: int) -> None:
    setup_cli(cli, tokens=("prod", "staging"))
    with opened() as manager:
        add_second_version(manager, "prod", TOKEN_V2)
        vault = HashicorpBackend(manager.keys.client,  # type: ignore[attr-defined]
                                 prefix=openbao_scope.prefix)
        with pytest.raises(BackendUnavailable, match="simulated outage"):
            BackendMigrator(manager, manager.secrets, FailingPuts(vault, allowed)).run()
        assert recorded_backend(manager) == "local"
        assert {v.backend for v in manager.show_token("prod").history} == {"local"}
        assert not [e for e in manager.audit_events() if e.action == "backend.migrate"]
    # nothing switched: every command still reads the local store
    assert cli("token", "reveal", "prod").out == TOKEN_V2 + "\n"
    assert cli("token", "reveal", "prod", "--version", "1").out == TOKEN_V1 + "\n"
    assert cli("backend", "status", "--json").json()["in_use"] == "local"
    # the re-run finishes: what the first run stored is verified, not rewritten
    resumed = cli("backend", "migrate", "--to", "vault", "--json")
    assert resumed.code == 0, resumed.err
    assert (resumed.json()["copied"], resumed.json()["already_in_target"]) == (5 - allowed, allowed)
    assert cli("token", "reveal", "prod").out == TOKEN_V2 + "\n"
    assert cli("token", "reveal", "prod", "--version", "1").out == TOKEN_V1 + "\n"


def test_a_different_value_in_the_target_stops_before_switching(cli: CliRunner, venv: dict[str, str],
                                                                 openbao: Any, openbao_scope: Any) -> None:
    setup_cli(cli)
    with opened() as manager:
        vault = HashicorpBackend(manager.keys.client, prefix=openbao_scope.prefix)  # type: ignore[attr-defined]
        record = manager.store.get_token("prod")
        vault.put(SecretRef(SecretKind.TOKEN, record.id, 1, "prod"), Secret(OTHER), {})  # a stray writer
        with pytest.raises(IntegrityError, match="different value for token prod v1") as info:
            BackendMigrator(manager, manager.secrets, vault).run()
        assert OTHER not in str(info.value) and TOKEN_V1 not in info.value.hint
        assert recorded_backend(manager) == "local"
    refused = cli("backend", "migrate", "--to", "vault")
    assert refused.code == 4
    one_error_line(refused.err, TOKEN_V1, OTHER)
    assert cli("token", "reveal", "prod").out == TOKEN_V1 + "\n"


# ---------------------------------------------------------------------- (f) Vault stopped
def test_vault_stopped_mid_migration_switches_nothing(home: Path, openbao: Any, openbao_scope: Any,
                                                      openbao_throwaway: Any) -> None:
    """Master key on the session server, KV target on a server that dies after two secrets."""
    environ = vault_environ(home, openbao, openbao_scope)
    with opened(environ, create=True) as manager:
        manager.initialize("vault-transit")
        manager.add_business("acme", "1001", "2002", Secret(APP_SECRET), Secret(ADMIN))
        manager.import_token("prod", business="acme", secret=Secret(TOKEN_V1), system_user_id="3003", verify=False)
        target = HashicorpBackend(openbao_throwaway.client(), prefix=openbao_scope.prefix)

        def stop_after_two(phase: str, done: int, total: int) -> None:
            if done == 2:
                openbao_throwaway.stop()

        with pytest.raises(VaultUnavailable) as info:
            BackendMigrator(manager, manager.secrets, target, progress=stop_after_two).run()
        exc = info.value
        assert exc.exit_code == 5 and "unreachable" in exc.message
        assert "\n" not in exc.message + exc.hint and TOKEN_V1 not in exc.message + exc.hint
        assert recorded_backend(manager) == "local"
        assert manager.reveal("prod") == Secret(TOKEN_V1)
        assert manager.show_token("prod").backend == "local"
        assert manager.store.lease_holder("backend:migrate") is None  # released for the re-run


def test_cli_migrate_with_vault_down_is_exit_5_one_line(cli: CliRunner, home: Path, openbao_throwaway: Any,
                                                        openbao_scope: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in vault_environ(home, openbao_throwaway, openbao_scope).items():
        monkeypatch.setenv(name, value)
    setup_cli(cli)
    openbao_throwaway.stop()
    result = cli("backend", "migrate", "--to", "vault")
    assert result.code == 5, result.err
    one_error_line(result.err, TOKEN_V1, openbao_throwaway.root_token)
    assert "unreachable" in result.err
    with opened(create=False) as manager:  # the store alone still says local
        assert recorded_backend(manager) == "local"


# ---------------------------------------------------------------------- (g) contradicting settings
@pytest.mark.parametrize("how", ["env", "flag"])
def test_explicit_backend_contradicting_the_record_is_exit_2(cli: CliRunner, venv: dict[str, str],
                                                             monkeypatch: pytest.MonkeyPatch, how: str) -> None:
    setup_cli(cli)
    if how == "env":
        monkeypatch.setenv("TOKENVAULT_BACKEND", "vault")
        result = cli("token", "reveal", "prod")
    else:
        result = cli("--backend", "vault", "token", "reveal", "prod")
    assert result.code == 2 and result.out == ""
    one_error_line(result.err, TOKEN_V1)
    assert "'local' backend" in result.err and "tokenvault backend migrate --to vault" in result.err
    # the backend commands still run, and say what is wrong
    status = cli(*(("--backend", "vault") if how == "flag" else ()), "backend", "status", "--json")
    assert status.code == 0, status.err
    assert status.json()["recorded"] == "local" and status.json()["configured"] == "vault"
    assert status.json()["explicit"] and "refuse" in status.json()["problems"][0]
    # agreeing with the record is fine
    monkeypatch.setenv("TOKENVAULT_BACKEND", "local")
    assert cli("token", "reveal", "prod").out == TOKEN_V1 + "\n"


def test_wiring_refuses_directly_too(venv: dict[str, str]) -> None:
    with opened(create=True):
        pass
    environ = {**venv, "TOKENVAULT_BACKEND": "vault"}
    with pytest.raises(UsageError, match="secrets are in the 'local' backend") as info:
        build_manager(Settings.resolve(environ=environ), environ=environ)
    assert info.value.exit_code == 2 and "tokenvault backend migrate --to vault" in info.value.hint
    # the backend commands' mode: the record wins, nothing refused
    with opened(environ, refuse_backend_contradiction=False) as manager:
        assert manager.secrets.name == "local"
    # a caller that names the backend in code (a CLI flag) is explicit as well
    with pytest.raises(UsageError):
        build_manager(Settings.resolve(environ=venv), environ=venv, explicit_backend="vault")


# ---------------------------------------------------------------------- AppRole secret id from stdin
@pytest.fixture
def approle(openbao: Any, openbao_scope: Any) -> tuple[str, str]:
    """A role on the session server with a policy on this test's prefix and Transit key: (role_id, secret_id)."""
    root = openbao.client()
    if "approle/" not in root.sys.list_auth_methods()["data"]:
        try:
            root.sys.enable_auth_method("approle")
        except Exception as exc:  # another test of this worker enabled it in between
            if "path is already in use" not in str(exc):
                raise
    name = f"tv-{openbao_scope.transit_key}"
    prefix, key = openbao_scope.prefix, openbao_scope.transit_key
    root.sys.create_or_update_policy(name=name, policy=f"""
path "secret/data/{prefix}/*" {{ capabilities = ["create", "read", "update"] }}
path "secret/metadata/{prefix}/*" {{ capabilities = ["create", "read", "update", "delete"] }}
path "transit/keys/{key}" {{ capabilities = ["create", "read", "update"] }}
path "transit/encrypt/{key}" {{ capabilities = ["update"] }}
path "transit/decrypt/{key}" {{ capabilities = ["update"] }}
""")
    root.write(f"auth/approle/role/{name}", token_policies=[name], token_ttl="10m")
    role_id = root.read(f"auth/approle/role/{name}/role-id")["data"]["role_id"]
    secret_id = root.write(f"auth/approle/role/{name}/secret-id")["data"]["secret_id"]
    return role_id, secret_id


def test_approle_secret_id_is_read_from_stdin(cli: CliRunner, venv: dict[str, str], approle: tuple[str, str],
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    role_id, secret_id = approle
    monkeypatch.delenv("TOKENVAULT_VAULT_TOKEN")
    monkeypatch.setenv("TOKENVAULT_VAULT_ROLE_ID", role_id)
    monkeypatch.setenv("TOKENVAULT_BACKEND", "vault")
    first = cli("init", "--json", stdin=secret_id + "\n")
    assert first.code == 0, first.err
    # secrets the command reads come first; the secret id is read when Vault is first needed, after them
    added = cli("business", "add", "acme", "--business-id", "1001", "--app-id", "2002",
                stdin=f"{APP_SECRET}\n{ADMIN}\n{secret_id}\n")
    assert added.code == 0, added.err
    imported = cli("token", "import", "prod", "--business", "acme", "--system-user", "3003", "--no-verify",
                   "--scopes", "whatsapp_business_messaging", "--waba", "4004", stdin=f"{TOKEN_V1}\n{secret_id}\n")
    assert imported.code == 0, imported.err
    revealed = cli("token", "reveal", "prod", stdin=secret_id + "\n")
    assert (revealed.code, revealed.out) == (0, TOKEN_V1 + "\n")
    assert secret_id not in revealed.err
    wrong = cli("token", "reveal", "prod", stdin="0" * 36 + "\n")
    assert wrong.code == 5
    one_error_line(wrong.err, "0" * 36)
    assert "AppRole login" in wrong.err
    missing = cli("token", "reveal", "prod", stdin="")
    assert missing.code == 2 and "Vault AppRole secret id" in missing.err
    # the secret id in the environment needs no stdin
    monkeypatch.setenv("TOKENVAULT_VAULT_SECRET_ID", secret_id)
    assert cli("token", "reveal", "prod").out == TOKEN_V1 + "\n"


def test_import_without_waba_ids_on_vault(venv: dict[str, str]) -> None:
    with opened({**venv, "TOKENVAULT_BACKEND": "vault"}, create=True) as manager:
        manager.initialize("vault-transit")
        manager.add_business("acme", "1001", "2002", Secret(APP_SECRET), Secret(ADMIN))
        manager.import_token("bare", business="acme", secret=Secret(TOKEN_V1), system_user_id="3003", verify=False)
        assert manager.reveal("bare") == Secret(TOKEN_V1)


def test_docs_name_the_backend_commands() -> None:
    text = (Path(__file__).resolve().parents[1] / "docs" / "vault.md").read_text()
    for needle in ("tokenvault backend migrate --to vault", "tokenvault backend status", "--purge-source",
                   "TOKENVAULT_VAULT_SECRET_ID"):
        assert needle in text
    assert re.search(r"secret id.*stdin", text, flags=re.S)


def test_migrate_with_purge_leaves_no_local_copy_and_status_reads_well(cli: CliRunner, venv: dict[str, str]) -> None:
    setup_cli(cli)
    bogus = cli("backend", "migrate", "--to", "s3")
    assert bogus.code == 2 and "Choose one of: local, vault" in bogus.err
    moved = cli("backend", "migrate", "--to", "vault", "--purge-source")
    assert moved.code == 0, moved.err
    assert "the store now uses vault; 3 local copies destroyed" in moved.err
    with opened() as manager:
        record = manager.store.get_token("prod")
        assert manager.store.get_blob("token", record.id, 1) is None
        business = manager.store.get_business("acme")
        assert manager.store.get_blob("app_secret", business.id, 1) is None
    assert cli("token", "reveal", "prod").out == TOKEN_V1 + "\n"
    status = cli("backend", "status")
    assert status.code == 0, status.err
    assert re.search(r"recorded\s+vault", status.out) and re.search(r"token versions\s+1 in vault", status.out)
    assert "warning" not in status.err
    # purging again finds nothing left to destroy
    again = cli("backend", "migrate", "--to", "vault", "--purge-source", "--json")
    assert again.code == 0 and again.json()["purged"] == 0 and again.json()["already_on_target"]
