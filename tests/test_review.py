"""`tokenvault review`: each check on records made for it (the pure use case), then the command end to end
against the Graph API simulator (--json, --format md, --business, exit codes)."""

from __future__ import annotations

import enum
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cli_support import CliRunner, served_business

from meta_tokenvault.testing.graph_sim import GraphSimulator
from meta_tokenvault.types import AgeSource, Provenance, SystemUserRecord, TokenRecord, TokenSource, TokenStatus
from meta_tokenvault.usecases.review import CODES, ReviewPolicy, is_generic_name, markdown, review

NOW = datetime(2026, 6, 1, tzinfo=UTC)
MESSAGING = ("whatsapp_business_messaging",)


def user(su_id: str = "100", name: str = "whatsapp-prod-sender", role: str = "ADMIN",
         business: str = "acme") -> SystemUserRecord:
    return SystemUserRecord(id=su_id, name=name, role=role, business_name=business, created_at=NOW - timedelta(days=60),
                            age_source=AgeSource.GRAPH, app_installed=True)


def token(label: str = "prod", su_id: str = "100", *, scopes: tuple[str, ...] = MESSAGING,
          wabas: tuple[str, ...] = ("555",), age_days: int = 10, verified_days_ago: int | None = 1,
          expires_in_days: int | None = None, status: object = TokenStatus.ACTIVE, max_age_days: int | None = None,
          business: str = "acme") -> TokenRecord:
    return TokenRecord(
        id=1, label=label, business_name=business, status=status, version=1,  # type: ignore[arg-type]
        source=TokenSource.GENERATED,
        provenance=Provenance(business_id="1", system_user_id=su_id, app_id="2", scopes=scopes, waba_ids=wabas),
        created_at=NOW - timedelta(days=age_days),
        expires_at=None if expires_in_days is None else NOW + timedelta(days=expires_in_days),
        fingerprint="f" * 32, last4="abcd",
        verified_at=None if verified_days_ago is None else NOW - timedelta(days=verified_days_ago),
        backend="local", max_age_days=max_age_days)


class FutureStatus(str, enum.Enum):
    """The `invalidated` status another branch adds to TokenStatus: review compares the string."""

    INVALIDATED = "invalidated"


def codes(tokens: list[TokenRecord], users: list[SystemUserRecord], **kw: object) -> list[tuple[str, str, str]]:
    return [(f.code, f.severity.value, f.subject) for f in review(tokens, users, now=NOW, **kw).findings]  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------- each check
def test_a_tidy_vault_has_no_findings() -> None:
    report = review([token()], [user()], now=NOW)
    assert report.findings == [] and not report.attention
    assert "No findings" in markdown(report, now=NOW)


@pytest.mark.parametrize(("tokens", "users", "expected"), [
    pytest.param([token()], [user(name="System User 2")],
                 [("generic-name", "warning", "system user System User 2 (100)")], id="generic-name"),
    pytest.param([token()], [user(), user("101", "wa-sender-b"), user("102", "wa-minter")],
                 [("admin-without-tokens", "warning", "system user wa-minter (102)"),
                  ("admin-without-tokens", "warning", "system user wa-sender-b (101)"),
                  ("many-admins", "warning", "business acme")], id="many-admins"),
    pytest.param([token()], [user(), user("101", "wa-spare-minter")],
                 [("admin-without-tokens", "warning", "system user wa-spare-minter (101)")],
                 id="admin-without-tokens"),
    pytest.param([token(scopes=(*MESSAGING, "business_management"))], [user()],
                 [("broad-scopes", "warning", "token prod")], id="broad-scopes"),
    pytest.param([token(scopes=("ads_read",))], [user()],
                 [("broad-scopes", "info", "token prod")], id="broad-scopes-not-messaging"),
    pytest.param([token(verified_days_ago=None)], [user()],
                 [("never-verified", "warning", "token prod")], id="never-verified"),
    pytest.param([token(verified_days_ago=45)], [user()],
                 [("stale-verification", "info", "token prod")], id="stale-verification"),
    pytest.param([token(age_days=91)], [user()], [("old-token", "warning", "token prod")], id="old-token"),
    pytest.param([token(age_days=31, max_age_days=30)], [user()], [("old-token", "warning", "token prod")],
                 id="old-token-own-max-age"),
    pytest.param([token(expires_in_days=5)], [user()], [("expiring", "warning", "token prod")], id="expiring"),
    pytest.param([token(expires_in_days=-1)], [user()], [("expiring", "critical", "token prod")], id="expired"),
    pytest.param([token(status=FutureStatus.INVALIDATED)], [user()],
                 [("admin-without-tokens", "warning", "system user whatsapp-prod-sender (100)"),
                  ("invalidated", "critical", "token prod")], id="invalidated"),
    pytest.param([token(wabas=())], [user()],
                 [("unassigned-assets", "warning", "system user whatsapp-prod-sender (100)")], id="unassigned-assets"),
    pytest.param([token(wabas=(), verified_days_ago=None)], [user()],
                 [("never-verified", "warning", "token prod")], id="unassigned-unknown-when-never-verified"),
])
def test_each_check(tokens: list[TokenRecord], users: list[SystemUserRecord],
                    expected: list[tuple[str, str, str]]) -> None:
    assert sorted(codes(tokens, users)) == sorted(expected)


def test_findings_come_worst_first_and_warnings_need_attention() -> None:
    report = review([token(expires_in_days=-1, verified_days_ago=40)], [user()], now=NOW)
    assert [(f.code, f.severity.value) for f in report.findings] == [("expiring", "critical"),
                                                                     ("stale-verification", "info")]
    assert report.attention
    info_only = review([token(verified_days_ago=40)], [user()], now=NOW)
    assert [f.severity.value for f in info_only.findings] == ["info"] and not info_only.attention


def test_assignments_known_elsewhere_win_over_token_provenance() -> None:
    """When WABA assignments are known (another branch records them), they decide `unassigned-assets`."""
    assert codes([token(wabas=("555",))], [user()], assignments=lambda su: []) == [
        ("unassigned-assets", "warning", "system user whatsapp-prod-sender (100)")]
    assert codes([token(wabas=())], [user()], assignments=lambda su: ["777"]) == []
    assert codes([token(wabas=())], [user()], assignments=lambda su: None)[0][0] == "unassigned-assets"


def test_business_filter_and_policy() -> None:
    tokens = [token(age_days=50), token("other", "200", business="globex", verified_days_ago=None)]
    users = [user(), user("200", "globex-sender", business="globex")]
    assert codes(tokens, users, business="acme") == []
    assert [c for c, _s, _subj in codes(tokens, users, business="globex")] == ["never-verified"]
    assert codes(tokens, users, business="acme", policy=ReviewPolicy(max_age_days=40)) == [
        ("old-token", "warning", "token prod")]


@pytest.mark.parametrize(("name", "generic"), [
    ("System User", True), ("system_user_3", True), ("Admin", True), ("api-bot", True), ("SystemUser1", True),
    ("prod", True), ("dev_server_2", True), ("Temp", True),
    ("whatsapp-prod-sender", False), ("crm-notifier", False), ("tokenvault-admin", False),
])
def test_generic_names(name: str, generic: bool) -> None:
    assert is_generic_name(name) is generic


def test_every_documented_code_is_produced_by_some_check() -> None:
    produced = {
        c for case in test_each_check.pytestmark[0].args[1]  # type: ignore[attr-defined]
        for c, _s, _subj in case.values[2]}
    assert produced == set(CODES)


def test_markdown_is_a_table_to_paste_into_a_ticket() -> None:
    report = review([token(scopes=(*MESSAGING, "ads_management")), token("b|c", verified_days_ago=None)],
                    [user()], now=NOW)
    text = markdown(report, now=NOW, business="acme")
    lines = text.splitlines()
    assert lines[0] == "## tokenvault review of acme — 2026-06-01 00:00 UTC"
    assert "| severity | code | subject | detail | fix |" in lines
    assert any(line.startswith("| warning | `broad-scopes` | token prod |") for line in lines)
    assert "token b\\|c" in text  # a pipe in a cell does not break the table


# ---------------------------------------------------------------------------------------------- the command
@pytest.fixture
def served(env_home: Path, monkeypatch: pytest.MonkeyPatch, cli: CliRunner) -> Iterator[tuple[GraphSimulator, object]]:
    with served_business(cli, monkeypatch) as (sim, world):
        yield sim, world


def test_review_json_reports_broad_scopes_and_never_verified(cli: CliRunner,
                                                             served: tuple[GraphSimulator, object]) -> None:
    sim, world = served
    res = cli("token", "generate", "marketing", "--business", "acme",
              "--scopes", "whatsapp_business_messaging,business_management")
    assert res.code == 0, res.err
    value = sim.issue_token(world.app_id, world.old_admin_id, waba_ids=[world.waba_id])  # type: ignore[attr-defined]
    res = cli("token", "import", "unchecked", "--business", "acme", "--system-user",
              world.old_admin_id, "--scopes", "whatsapp_business_messaging", "--no-verify",  # type: ignore[attr-defined]
              stdin=value + "\n")
    assert res.code == 0, res.err
    res = cli("review", "--json")
    assert res.code == 9, res.err
    findings = res.json()["findings"]
    assert all(set(f) == {"code", "severity", "subject", "detail", "fix"} for f in findings)
    by_code = {(f["code"], f["subject"]): f for f in findings}
    assert by_code[("broad-scopes", "token marketing")]["severity"] == "warning"
    assert "business_management" in by_code[("broad-scopes", "token marketing")]["detail"]
    assert by_code[("never-verified", "token unchecked")]["severity"] == "warning"
    assert ("never-verified", "token marketing") not in by_code  # generate verifies what it minted
    assert value not in res.out


def test_review_formats_and_bad_input(cli: CliRunner, served: tuple[GraphSimulator, object]) -> None:
    assert cli("token", "generate", "prod", "--business", "acme", "--scopes",
               "whatsapp_business_messaging").code == 0
    md = cli("review", "--format", "md", "--business", "acme")
    assert md.code == 9  # the demo world's spare admin has no token: a warning
    assert md.out.startswith("## tokenvault review of acme") and "`admin-without-tokens`" in md.out
    table = cli("review")
    assert table.code == 9 and "admin-without-tokens" in table.out and "warning" in table.err
    missing = cli("review", "--business", "nope")
    assert missing.code == 3 and missing.err.startswith("error: ")
    bad = cli("review", "--format", "html")
    assert bad.code == 2 and "Unknown format" in bad.err


def test_review_exits_0_without_warnings(cli: CliRunner, served: tuple[GraphSimulator, object]) -> None:
    res = cli("review", "--json")
    codes_found = {f["code"] for f in res.json()["findings"]}
    # the demo world: two admins without tokens (warnings); nothing else
    assert codes_found == {"admin-without-tokens"} and res.code == 9
    sim, world = served
    assert cli("token", "generate", "a", "--business", "acme", "--scopes", "whatsapp_business_messaging").code == 0
    sim.clock.advance(days=8)  # type: ignore[attr-defined]  # Meta's seven-day rule lets the new admin mint
    old = (datetime.now(UTC) - timedelta(days=8)).strftime("%Y-%m-%d")
    assert cli("system-users", "set-created", world.new_admin_id, old).code == 0  # type: ignore[attr-defined]
    assert cli("token", "generate", "b", "--business", "acme", "--scopes", "whatsapp_business_messaging",
               "--system-user", world.new_admin_id).code == 0  # type: ignore[attr-defined]
    res = cli("review", "--json")
    assert res.code == 0, res.out
    assert all(f["severity"] == "info" for f in res.json()["findings"])
