"""The metadata store on both databases it supports: SQLite (the default) and PostgreSQL (shared by
several hosts). The same service-level behaviour must hold on each, including between processes.

PostgreSQL comes from the ``postgres_server``/``pg_url`` fixtures of ``tests/plugins/postgres.py``
(one server per session or xdist worker, a fresh database per test).
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from meta_tokenvault import migrations
from meta_tokenvault.adapters.secrets_local import LocalBackend
from meta_tokenvault.adapters.store_sql import SqlStore
from meta_tokenvault.errors import AlreadyExists, AuditChainBroken, DatabaseUnavailable, RotationInProgress
from meta_tokenvault.service import TokenManager
from meta_tokenvault.testing.fakes import MemoryKeyProvider
from meta_tokenvault.types import Secret

TOKEN_A = "EAAGfakeSimTokenA" + "x1y2z3" * 25 + "AAAA"
TOKEN_B = "EAAGfakeSimTokenB" + "q7r8s9" * 25 + "BBBB"
T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
TTL = timedelta(minutes=10)
BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


@pytest.fixture(params=BACKENDS, ids=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The URL of an empty metadata database: a SQLite file path, or a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'home' / 'tokenvault.db'}"
    return str(request.getfixturevalue("pg_url"))


@pytest.fixture
def store(db_url: str) -> Iterator[SqlStore]:
    s = SqlStore.open(db_url, create=True)
    yield s
    s.close()


@pytest.fixture
def manager(store: SqlStore) -> TokenManager:
    keys = MemoryKeyProvider()
    m = TokenManager(store=store, secrets=LocalBackend(store, keys), keys=keys)
    m.initialize("memory")
    m.add_business("acme", "1001", "2002", Secret("app-secret-value-123"), Secret("EAAadminTokenValue9876"))
    return m


def _import(m: TokenManager, label: str, value: str) -> None:
    m.import_token(label, business="acme", secret=Secret(value), system_user_id="3003",
                   scopes=["whatsapp_business_messaging"], waba_ids=["4004"], verify=False)


def _sql(url: str, *statements: str) -> list[Any]:
    """Run statements on the database behind the store's back (the tamperer's view); last result rows."""
    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            rows: list[Any] = []
            for statement in statements:
                result = conn.execute(sa.text(statement))
                rows = list(result.all()) if result.returns_rows else []
            return rows
    finally:
        engine.dispose()


# --------------------------------------------------------------------------- migrations
def test_migrating_an_empty_database_records_the_schema_version(db_url: str) -> None:
    store = SqlStore.open(db_url, create=True)
    try:
        assert store.schema_version() == migrations.LATEST
        assert _sql(db_url, "SELECT max(version) FROM tv_schema_version") == [(migrations.LATEST,)]
        tables = set(sa.inspect(store.engine).get_table_names())
        assert {"tv_token", "tv_secret_blob", "tv_audit_event", "tv_lease", "tv_reminder"} <= tables
    finally:
        store.close()


def test_reopening_a_migrated_database_changes_nothing(db_url: str) -> None:
    first = SqlStore.open(db_url, create=True)
    first.set_setting("probe", "kept")
    first.close()
    for create in (False, True):
        again = SqlStore.open(db_url, create=create)
        assert again.schema_version() == migrations.LATEST
        assert again.get_setting("probe") == "kept"
        again.close()
    assert _sql(db_url, "SELECT count(*) FROM tv_schema_version") == [(len(migrations.MIGRATIONS),)]


def test_a_database_without_the_schema_says_run_init(db_url: str) -> None:
    if db_url.startswith("sqlite"):  # an empty SQLite *file* (PostgreSQL: the fresh database is empty)
        path = Path(db_url.removeprefix("sqlite:///"))
        path.parent.mkdir(mode=0o700)
        path.touch(mode=0o600)
    with pytest.raises(DatabaseUnavailable) as info:
        SqlStore.open(db_url)
    assert "tokenvault init" in info.value.hint
    assert info.value.exit_code == 5


@pytest.mark.parametrize(
    "create",
    [
        True,
        False,
    ],
    ids=["open-with-create", "open-existing"],
)
def test_a_newer_schema_is_refused(db_url: str, create: bool) -> None:
    SqlStore.open(db_url, create=True).close()
    newer = migrations.LATEST + 1
    _sql(db_url, f"INSERT INTO tv_schema_version (version, applied_at) VALUES ({newer}, '2030-01-01 00:00:00')")
    with pytest.raises(DatabaseUnavailable) as info:
        SqlStore.open(db_url, create=create).close()
    assert str(newer) in info.value.message and "newer" in info.value.message
    assert "Upgrade tokenvault" in info.value.hint
    assert _sql(db_url, "SELECT max(version) FROM tv_schema_version") == [(newer,)]  # nothing rolled back


# --------------------------------------------------------------------------- tokens through the service
def test_import_reveal_list_show(manager: TokenManager) -> None:
    _import(manager, "prod", TOKEN_A)
    _import(manager, "staging", TOKEN_B)
    assert manager.reveal("prod").reveal() == TOKEN_A
    assert manager.reveal("staging").reveal() == TOKEN_B
    assert [t.label for t in manager.list_tokens()] == ["prod", "staging"]
    data = manager.show_token("prod").as_json()
    assert (data["status"], data["version"], data["source"]) == ("active", 1, "imported")
    assert (data["business_id"], data["system_user_id"], data["app_id"]) == ("1001", "3003", "2002")
    assert data["scopes"] == ["whatsapp_business_messaging"] and data["waba_ids"] == ["4004"]
    assert data["last4"] == "AAAA" and data["fingerprint"] == manager.fingerprint(Secret(TOKEN_A))


def test_no_secret_value_is_stored_in_the_database(manager: TokenManager, db_url: str) -> None:
    _import(manager, "prod", TOKEN_A)
    dump = repr([_sql(db_url, f"SELECT * FROM {table}") for table in
                 ("tv_token", "tv_token_version", "tv_secret_blob", "tv_audit_event", "tv_setting")])
    for value in (TOKEN_A, TOKEN_A[-12:], "app-secret-value-123", "EAAadminTokenValue9876"):
        assert value not in dump


@pytest.mark.parametrize("what", ["token-label", "business-name"], ids=["token-label", "business-name"])
def test_a_duplicate_is_refused_and_nothing_is_overwritten(manager: TokenManager, what: str) -> None:
    _import(manager, "prod", TOKEN_A)
    with pytest.raises(AlreadyExists) as info:
        if what == "token-label":
            _import(manager, "prod", TOKEN_B)
        else:
            manager.add_business("acme", "9999", "8888", Secret("other-app-secret"), Secret("EAAotherAdmin12345"))
    assert info.value.exit_code == 2
    assert manager.reveal("prod").reveal() == TOKEN_A
    assert len(manager.list_tokens()) == 1
    assert [(b.business_id, b.app_id) for b in manager.list_businesses()] == [("1001", "2002")]


@pytest.mark.parametrize("db_url", [pytest.param("postgres", marks=pytest.mark.postgres)], ids=["postgres"],
                         indirect=True)
def test_datetimes_round_trip_whatever_the_server_time_zone(db_url: str) -> None:
    database = sa.engine.make_url(db_url).database
    _sql(db_url, f"ALTER DATABASE \"{database}\" SET timezone = 'America/New_York'")
    store = SqlStore.open(db_url, create=True)
    try:
        store.append_audit("tester", "probe", "tz", {}, T0)
        (event,) = store.list_audit()
        assert event.at == T0 and event.at.utcoffset() == timedelta(0)
        assert store.verify_audit() == 1  # the hash covers the time: a shifted read would break the chain
        assert store.acquire_lease("tz", "a", T0, TTL)
        assert store.lease_holder("tz") == ("a", T0 + TTL)
        assert not store.acquire_lease("tz", "b", T0 + TTL - timedelta(seconds=1), TTL)
        assert store.acquire_lease("tz", "b", T0 + TTL + timedelta(seconds=1), TTL)
    finally:
        store.close()


# --------------------------------------------------------------------------- audit trail
def test_audit_append_and_verify(manager: TokenManager) -> None:
    _import(manager, "prod", TOKEN_A)
    manager.reveal("prod")
    assert manager.verify_audit() == 4
    events = manager.audit_events()
    assert [e.action for e in events] == ["init", "business.add", "token.import", "token.reveal"]
    assert [e.id for e in events] == [1, 2, 3, 4]
    assert all(later.prev_hash == earlier.hash for earlier, later in zip(events, events[1:], strict=False))


def test_audit_events_in_one_transaction_are_the_events_appended_one_by_one(db_url: str, tmp_path: Path) -> None:
    """A transaction reads and checks the head once and writes it (with its MAC) once, at its end: its events,
    including around a savepoint that is rolled back, must be byte for byte those of one commit per event."""
    from meta_tokenvault.audit import head_key

    key = head_key(b"k" * 32)
    events = [("rotation.start", "prod", {"rotation": 1, "kind": "rotate"}), ("rotation.minting", "prod", {"n": 2}),
              ("rotation.stored", "other", {"é": "ü\u2028"}), ("rotation.done", "prod", {})]
    other_url = f"sqlite:///{tmp_path / 'other' / 'tokenvault.db'}"
    rows = []
    for url, together in ((db_url, True), (other_url, False)):
        store = SqlStore.open(url, create=True)
        try:
            store.append_audit("tv", "init", "", {}, T0, head_key=key)  # a keyed head to start from
            with store.transaction() if together else contextlib.nullcontext():
                for i, (action, subject, details) in enumerate(events):
                    store.append_audit("tv", action, subject, details, T0 + timedelta(seconds=i), head_key=key)
                    if together and i == 1:
                        with pytest.raises(AlreadyExists), store.transaction():  # undone: the head too
                            store.append_audit("tv", "undone", "prod", {}, T0, head_key=key)
                            store.put_wrapped_key("p", "a", b"x")
                            store.put_wrapped_key("p", "b", b"y")
            assert store.verify_audit(head_key=key) == 1 + len(events)
            rows.append(([(e.id, e.at, e.action, e.subject, e.details, e.prev_hash, e.hash)
                          for e in store.list_audit()], store.get_setting("audit_head")))
        finally:
            store.close()
    assert rows[0] == rows[1]
    assert json.loads(rows[0][1])["seq"] == 1 + len(events) and "mac" in json.loads(rows[0][1])
    # the head this store wrote last is taken as written by its next transaction; any other value is checked
    store = SqlStore.open(db_url)
    try:
        store.append_audit("tv", "again", "prod", {}, T0, head_key=key)  # the head a new store reads: checked
        with store.transaction():
            store.append_audit("tv", "again", "prod", {}, T0, head_key=key)
        head = json.loads(store.get_setting("audit_head") or "")
        _sql(db_url, "UPDATE tv_setting SET value = '" + json.dumps({**head, "mac": "ab" * 32}) + "' "
                     "WHERE key = 'audit_head'")
        with pytest.raises(AuditChainBroken), store.transaction():
            store.append_audit("tv", "after the edit", "prod", {}, T0, head_key=key)
    finally:
        store.close()


def test_each_transaction_reads_what_other_connections_committed(store: SqlStore, db_url: str) -> None:
    """SQLite's transactions share one kept connection and Session: rows read by one (the ORM keeps them) must
    not be served to the next one after another connection (another process) changed them."""
    store.set_setting("shared", "one")
    assert store.get_setting("shared") == "one"
    _sql(db_url, "UPDATE tv_setting SET value = 'two' WHERE key = 'shared'")
    assert store.get_setting("shared") == "two"
    with pytest.raises(AlreadyExists):  # a refused write rolls back; the next transaction goes on as usual
        store.put_wrapped_key("p", "a", b"x")
        store.put_wrapped_key("p", "b", b"y")
    store.set_setting("after", "ok")
    assert (store.get_wrapped_key("p"), store.get_setting("after")) == (("a", b"x"), "ok")


@pytest.mark.parametrize(
    ("tamper", "bad_event"),
    [
        (["UPDATE tv_audit_event SET subject='other' WHERE seq=2"], 2),
        (["UPDATE tv_audit_event SET details='{}' WHERE seq=3"], 3),
        (["UPDATE tv_audit_event SET at = at + interval '1 second' WHERE seq=4"], 4),
        (["DELETE FROM tv_audit_event WHERE seq=2"], 3),
        (["DELETE FROM tv_audit_event WHERE seq=4"], 4),
    ],
    ids=["edited-subject", "edited-details", "edited-time", "deleted-middle", "deleted-newest"],
)
def test_audit_tampering_by_sql_is_detected(manager: TokenManager, db_url: str, tamper: list[str],
                                            bad_event: int) -> None:
    _import(manager, "prod", TOKEN_A)
    manager.reveal("prod")
    statements = tamper
    if db_url.startswith("sqlite"):
        statements = [s.replace("at + interval '1 second'", "datetime(at, '+1 second')") for s in tamper]
    _sql(db_url, *statements)
    with pytest.raises(AuditChainBroken) as info:
        manager.verify_audit()
    assert info.value.exit_code == 4
    assert info.value.event_id == bad_event


# --------------------------------------------------------------------------- reminders
def test_reminders_add_reuse_and_claim_exactly_once(store: SqlStore) -> None:
    first = store.add_reminder("prod", "rotate", "acme", None, {"why": 1}, T0 + timedelta(days=7), "window", T0)
    again = store.add_reminder("prod", "rotate", "acme", "3003", {"why": 2}, T0 + timedelta(days=8), "later", T0)
    other = store.add_reminder("prod", "generate", "acme", None, {}, T0 + timedelta(days=1), "new", T0)
    assert again == first and other != first  # one open reminder per (label, action)
    (reminder,) = [r for r in store.list_reminders() if r.id == first]
    assert (reminder.payload, reminder.due_at, reminder.system_user_id) == ({"why": 2}, T0 + timedelta(days=8),
                                                                            "3003")
    assert [r.id for r in store.list_reminders(open_only=True)] == [other, first]  # by due date
    assert store.claim_reminder(first, "waiting", "running") is True
    assert store.claim_reminder(first, "waiting", "running") is False
    assert store.claim_reminder(first, "running", "done") is True
    assert [r.id for r in store.list_reminders(open_only=True)] == [other]
    assert store.list_reminders()[-1].as_json(T0)["status"] == "done"


# --------------------------------------------------------------------------- rotation journal and leases
def test_rotation_journal(manager: TokenManager) -> None:
    _import(manager, "prod", TOKEN_A)
    store, token_id = manager.store, manager.show_token("prod").id
    assert store.open_rotation(token_id) is None
    rid = store.start_rotation(token_id, "prod", 1, False, "scheduled", T0)
    store.update_rotation(rid, T0 + timedelta(seconds=5), step="minting", to_version=2)
    rotation = store.get_rotation(rid)
    assert (rotation.step, rotation.state, rotation.to_version, rotation.compromised) == ("minting", "running", 2,
                                                                                        False)
    assert (rotation.started_at, rotation.updated_at) == (T0, T0 + timedelta(seconds=5))
    assert store.open_rotation(token_id) == rotation and store.open_rotations() == [rotation]
    store.update_rotation(rid, T0 + timedelta(seconds=9), step="done", state="done")
    assert store.open_rotation(token_id) is None and store.open_rotations() == []


def test_leases_acquire_release_and_expiry_takeover(store: SqlStore) -> None:
    assert store.acquire_lease("rotate:1", "host-a|1|x", T0, TTL)
    assert not store.acquire_lease("rotate:1", "host-b|2|y", T0 + timedelta(minutes=9), TTL)
    assert store.acquire_lease("rotate:2", "host-b|2|y", T0, TTL)  # other resources are independent
    assert store.acquire_lease("rotate:1", "host-a|1|x", T0 + timedelta(minutes=5), TTL)  # renewal by the owner
    assert store.lease_holder("rotate:1") == ("host-a|1|x", T0 + timedelta(minutes=15))
    store.release_lease("rotate:1", "host-b|2|y")  # not the owner: no effect
    assert store.lease_holder("rotate:1") == ("host-a|1|x", T0 + timedelta(minutes=15))
    assert not store.acquire_lease("rotate:1", "host-b|2|y", T0 + timedelta(minutes=14), TTL)
    assert store.acquire_lease("rotate:1", "host-b|2|y", T0 + timedelta(minutes=16), TTL)  # expired: taken over
    assert store.lease_holder("rotate:1") == ("host-b|2|y", T0 + timedelta(minutes=26))
    store.release_lease("rotate:1", "host-b|2|y")
    assert store.lease_holder("rotate:1") is None
    assert store.acquire_lease("rotate:1", "host-a|1|x", T0 + timedelta(minutes=16), TTL)


def test_a_rotation_lease_held_on_another_host_stops_rotate_before_anything_is_minted(
        manager: TokenManager) -> None:
    _import(manager, "prod", TOKEN_A)
    token_id = manager.show_token("prod").id
    far = datetime.now(UTC)
    assert manager.store.acquire_lease(f"rotate:{token_id}", "other-host|4242|abcd", far, TTL)
    with pytest.raises(RotationInProgress) as info:
        manager.rotate("prod")
    assert info.value.exit_code == 8
    assert manager.store.open_rotation(token_id) is None  # nothing journaled, nothing minted
    assert manager.store.lease_holder(f"rotate:{token_id}")[0] == "other-host|4242|abcd"  # type: ignore[index]
    assert manager.show_token("prod").version == 1


# --------------------------------------------------------------------------- several processes
_WORKER = textwrap.dedent("""
    import json, sys
    from datetime import datetime, timedelta, timezone
    from meta_tokenvault.adapters.store_sql import SqlStore

    op, url, tag, arg = sys.argv[1:5]
    store = SqlStore.open(url)
    print("ready", flush=True)
    sys.stdin.readline()  # the start line: both processes go at once
    now = datetime.now(timezone.utc)
    if op == "audit":
        out = [store.append_audit(tag, "test.append", f"{tag}-{i}", {"i": i}, datetime.now(timezone.utc))
               for i in range(int(arg))]
    elif op == "lease":
        out = [store.acquire_lease(f"rotate:{i}", tag, now, timedelta(minutes=10)) for i in range(int(arg))]
    elif op == "claim":
        out = [rid for rid in json.loads(arg) if store.claim_reminder(rid, "waiting", "running")]
    store.close()
    print(json.dumps(out), flush=True)
""")


def _race(url: str, op: str, arg: str, processes: int = 2) -> dict[str, list[Any]]:
    """Run ``op`` in several OS processes released at the same moment; each one's JSON result by tag."""
    tags = [f"proc{n}|{os.getpid()}|{n}" for n in range(processes)]
    procs = [subprocess.Popen([sys.executable, "-c", _WORKER, op, url, tag, arg], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for tag in tags]
    try:
        for proc in procs:  # every process has imported and opened the store ...
            assert proc.stdout is not None
            line = proc.stdout.readline()
            assert line == "ready\n", f"worker did not start: {line!r} {proc.communicate()[1]}"
        results = {}
        for proc in procs:  # ... before any is released
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()
        for tag, proc in zip(tags, procs, strict=True):
            out, err = proc.communicate(timeout=120)
            assert proc.returncode == 0, f"{tag} failed:\n{err}"
            results[tag] = json.loads(out)
        return results
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()


@pytest.mark.slow
def test_two_processes_appending_audit_events_keep_one_unbroken_chain(store: SqlStore, db_url: str) -> None:
    store.append_audit("tester", "init", "store", {}, datetime.now(UTC))
    results = _race(db_url, "audit", "50")
    seqs = [seq for got in results.values() for seq in got]
    assert all(len(got) == 50 for got in results.values())
    assert sorted(seqs) == list(range(2, 102))  # no duplicate, no gap
    assert store.verify_audit() == 101
    events = store.list_audit()
    assert len({e.hash for e in events}) == 101
    for tag, got in results.items():  # each process's events are its own, in its order
        mine = [e for e in events if e.actor == tag]
        assert [e.id for e in mine] == got and [e.subject for e in mine] == [f"{tag}-{i}" for i in range(50)]


@pytest.mark.slow
def test_two_processes_racing_for_the_same_leases_never_both_win(store: SqlStore, db_url: str) -> None:
    results = _race(db_url, "lease", "30")
    (a, won_a), (b, won_b) = results.items()
    assert len(won_a) == len(won_b) == 30
    assert all(x != y for x, y in zip(won_a, won_b, strict=True)), "a lease was won by both or by neither"
    for i in range(30):
        assert store.lease_holder(f"rotate:{i}")[0] == (a if won_a[i] else b)  # type: ignore[index]


@pytest.mark.slow
def test_two_processes_claiming_the_same_reminders_claim_each_once(store: SqlStore, db_url: str) -> None:
    ids = [store.add_reminder(f"t{i}", "rotate", "acme", None, {}, T0, "due", T0) for i in range(30)]
    results = _race(db_url, "claim", json.dumps(ids))
    claimed = [rid for got in results.values() for rid in got]
    assert sorted(claimed) == sorted(ids)
    assert {r.status for r in store.list_reminders()} == {"running"}


# --------------------------------------------------------------------------- the plugin itself
@pytest.mark.postgres
def test_each_test_gets_its_own_empty_database(postgres_server: Any, pg_url: str) -> None:
    name = sa.engine.make_url(pg_url).database
    conn = postgres_server.connect()
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT datname FROM pg_database WHERE datname LIKE 'tv\\_%'")
            assert [row[0] for row in cur.fetchall()] == [name]  # earlier tests' databases were dropped
    finally:
        conn.close()
    assert _sql(pg_url, "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'") == [(0,)]


_INNER_TEST = textwrap.dedent("""
    import os, pathlib
    import pytest

    @pytest.mark.parametrize("n", range(4))
    def test_record(postgres_server, pg_url, n):
        worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
        conn = postgres_server.connect()
        with conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM pg_database WHERE datname LIKE 'tv%'")
            (count,) = cur.fetchone()
        conn.close()
        assert count == 1
        out = pathlib.Path(os.environ["PG_PLUGIN_OUT"]) / f"{worker}-{n}"
        out.write_text(f"{worker} {postgres_server.pid} {postgres_server.pgdata}")
""")


@pytest.mark.slow
@pytest.mark.postgres
def test_the_plugin_under_xdist_starts_one_server_per_worker_and_leaves_none_running(tmp_path: Path) -> None:
    import psutil

    tests_dir = Path(__file__).parent
    (tmp_path / "conftest.py").write_text('pytest_plugins = ["plugins.postgres"]\n')
    (tmp_path / "test_inner.py").write_text(_INNER_TEST)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tests_dir), os.environ.get("PYTHONPATH", "")]),
           "PG_PLUGIN_OUT": str(out_dir)}
    env.pop("PYTEST_XDIST_WORKER", None)
    env.pop("PYTEST_ADDOPTS", None)
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-n", "2", "-p", "no:cacheprovider",
                          "-W", "error", "--rootdir", str(tmp_path), "--basetemp", str(tmp_path / "bt"),
                          str(tmp_path)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=180)
    assert run.returncode == 0, run.stdout + run.stderr
    records = {tuple(p.read_text().split()) for p in out_dir.iterdir()}
    assert len(list(out_dir.iterdir())) == 4
    workers = {r[0] for r in records}
    pids = {int(r[1]) for r in records}
    assert workers <= {"gw0", "gw1"} and len(pids) == len(workers) == len({r[2] for r in records})
    for pid in pids:
        try:
            proc = psutil.Process(pid)
            alive = proc.status() != psutil.STATUS_ZOMBIE and proc.name() == "postgres"
        except psutil.NoSuchProcess:
            alive = False
        assert not alive, f"PostgreSQL pid {pid} still runs after the session ended"


@pytest.mark.postgres
def test_the_server_lives_outside_pytests_temp_root(postgres_server: Any,
                                                   tmp_path_factory: pytest.TempPathFactory) -> None:
    """Another pytest run re-secures its per-user temp root to 0700, which would lock out a server running as
    another user: the server's dir is its own mkdtemp, private (0700) and owned by whoever runs the server."""
    import os
    import pwd
    import stat

    base = postgres_server.pgdata.parent
    temp_root = tmp_path_factory.getbasetemp().parent
    assert not base.is_relative_to(temp_root) and base.name.startswith("tvpg-")
    info = base.stat()
    assert stat.S_IMODE(info.st_mode) == 0o700
    owner = pwd.getpwnam(postgres_server.system_user).pw_uid if postgres_server.system_user else os.getuid()
    assert info.st_uid == owner
