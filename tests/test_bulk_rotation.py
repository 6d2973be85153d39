"""Bulk rotation: `token rotate --all` through the CLI against the simulator's server with its rate limit on
(progress, one JSON document, every token rotated exactly once, no failure), and the parts that make it fast:
group commit, the store's transaction(), client-side pacing, the simulator's real-time clock.

Nothing here asserts a duration: the figures are benchmarks/bench_bulk_rotation.py's."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from cli_support import CliRunner, served_business

from meta_tokenvault.adapters.graph_httpx import RatePacer
from meta_tokenvault.adapters.store_sql import SqlStore
from meta_tokenvault.config import Settings, parse_rate_limit
from meta_tokenvault.errors import InvalidInput, NotFound
from meta_tokenvault.testing.graph_sim import GraphSimulator, SimClock
from meta_tokenvault.usecases.rotate import GroupCommit, _Signal

SCOPES = "whatsapp_business_management,whatsapp_business_messaging"
LABELS = [f"bulk-{i}" for i in range(8)]


# ---------------------------------------------------------------------------------------------- the CLI
@pytest.fixture
def limited(env_home: Path, monkeypatch: pytest.MonkeyPatch, cli: CliRunner) -> Iterator[GraphSimulator]:
    """The demo world served over HTTP on a clock that follows real time (so its rate-limit window reopens),
    a business with LABELS generated through the CLI, then a rate limit of 10 calls in any second."""
    with served_business(cli, monkeypatch, realtime=True) as (sim, _world):
        for label in LABELS:
            res = cli("token", "generate", label, "--business", "acme", "--scopes", SCOPES)
            assert res.code == 0, res.err
        sim.rate_limit = (10, 1.0)
        yield sim


def values(cli: CliRunner) -> dict[str, str]:
    return {label: cli("token", "reveal", label).out.strip() for label in LABELS}


def assert_rotated_once(cli: CliRunner, sim: GraphSimulator, before: dict[str, str]) -> None:
    after = values(cli)
    for label in LABELS:
        shown = cli("token", "show", label, "--json").json()
        assert shown["version"] == 2 and shown["status"] == "active"
        assert [v["status"] for v in shown["history"]].count("active") == 1
        assert sim.token_state(after[label]) == "valid" and sim.token_state(before[label]) == "revoked"
    assert len(sim.minted) == 2 * len(LABELS)  # one mint per rotation: a refused call is never a second mint


@pytest.mark.parametrize("paced", [True, False], ids=["paced", "unpaced"])
def test_rotate_all_under_a_rate_limit_rotates_every_token_once_and_reports_one_json_document(
        cli: CliRunner, limited: GraphSimulator, paced: bool) -> None:
    """Paced (--rate-limit: tokenvault keeps the limit) or not (it reacts to X-App-Usage and code 4):
    either way nothing fails."""
    before = values(cli)
    args = ["token", "rotate", "--all", "--concurrency", "4", "--json"] + (["--rate-limit", "10/1"] if paced else [])
    res = cli(*args)
    assert res.code == 0, res.err
    doc = res.json()
    assert set(doc) == {"total", "done", "deferred", "failed", "skipped", "seconds", "concurrency", "outcomes"}
    assert (doc["total"], doc["done"], doc["failed"], doc["deferred"], doc["skipped"]) == (len(LABELS),
                                                                                          len(LABELS), 0, 0, 0)
    assert doc["concurrency"] == 4
    assert [o["label"] for o in doc["outcomes"]] == LABELS  # the order asked for
    for outcome in doc["outcomes"]:
        assert set(outcome) == {"label", "state", "from_version", "to_version", "compromised", "message", "opens_at",
                                "reminder_id", "kind"}
        assert (outcome["state"], outcome["from_version"], outcome["to_version"]) == ("done", 1, 2)
        assert outcome["kind"] == "rotate"
    assert res.err == ""  # --json: the document is the report, no progress lines
    assert_rotated_once(cli, limited, before)


def test_rotate_all_shows_a_line_per_token_when_stderr_is_not_a_terminal(cli: CliRunner,
                                                                         limited: GraphSimulator) -> None:
    res = cli("token", "rotate", "--all", "--rate-limit", "10/1")
    assert res.code == 0, res.err
    lines = res.err.strip().splitlines()
    progress = sorted(line.split("] ")[1] for line in lines if line.startswith("["))
    assert progress == sorted(f"{label}: done" for label in LABELS)
    assert lines[-1].startswith(f"{len(LABELS)} token(s) in ") and lines[-1].endswith(f": {len(LABELS)} done.")
    assert all(label in res.out for label in LABELS)  # the table of outcomes, on stdout


def test_rotate_all_shows_a_progress_bar_on_a_terminal(cli: CliRunner, limited: GraphSimulator,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)
    res = cli("token", "rotate", "--all", "--rate-limit", "10/1")
    assert res.code == 0, res.err
    assert "rotating" in res.err and f"{len(LABELS)}/{len(LABELS)}" in res.err
    assert not any(line.startswith("[") for line in res.err.splitlines())


def test_an_invalid_rate_limit_is_refused_before_anything_happens(cli: CliRunner, limited: GraphSimulator) -> None:
    requests = len(limited.requests)
    res = cli("token", "rotate", "--all", "--rate-limit", "ten per second")
    assert res.code == 2 and "CALLS/SECONDS" in res.err
    assert len(limited.requests) == requests


@pytest.mark.parametrize(("text", "expected"), [("200/3600", (200, 3600.0)), (" 10 / 1.5 ", (10, 1.5))])
def test_rate_limit_setting(text: str, expected: tuple[int, float]) -> None:
    assert parse_rate_limit(text) == expected
    assert Settings.resolve({}, {"TOKENVAULT_HOME": "/tmp/x", "TOKENVAULT_GRAPH_RATE_LIMIT": text}).rate_limit \
        == expected


@pytest.mark.parametrize("text", ["", "10", "0/1", "10/0", "-1/5", "a/b", "10/inf", "10/nan"])
def test_rate_limit_setting_refuses_nonsense(text: str) -> None:
    with pytest.raises(InvalidInput):
        parse_rate_limit(text)


# ---------------------------------------------------------------------------------------------- pacing
class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_pacer_never_lets_more_than_the_limit_into_any_window() -> None:
    clock = FakeClock()
    pacer = RatePacer(5, 1.0, clock=clock, margin=0.0)
    sends = []
    for _ in range(23):
        sends.append(clock.now + pacer.reserve())  # each caller sends when its turn comes
        clock.now += 0.01
    assert sends[:5] == pytest.approx([100.0, 100.01, 100.02, 100.03, 100.04])  # the first five go at once
    for i in range(5, len(sends)):
        assert sends[i] - sends[i - 5] >= 1.0  # any 6 consecutive sends span more than the window
    assert sends == sorted(sends)  # first come, first served


def test_a_refusal_widens_the_pacers_margin_up_to_a_bound() -> None:
    clock = FakeClock()
    pacer = RatePacer(1, 10.0, clock=clock, margin=0.02)
    assert pacer.reserve() == 0.0
    assert pacer.reserve() == pytest.approx(10.2)
    absorbed = [pacer.refused() for _ in range(50)]
    assert absorbed[:16] == [True] * 16 and not any(absorbed[16:])  # 2% + 16 x 0.5% = 10%: then back off
    assert pacer.margin == pytest.approx(RatePacer.MAX_MARGIN)
    assert pacer.reserve() - 10.2 == pytest.approx(11.0)


# ---------------------------------------------------------------------------------------------- group commit
@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SqlStore]:
    url = f"sqlite:///{tmp_path / 'tv.db'}" if request.param == "sqlite" else request.getfixturevalue("pg_url")
    s = SqlStore.open(url, create=True)
    try:
        yield s
    finally:
        s.close()


def test_transaction_commits_once_and_a_savepoint_undoes_only_its_block(store: SqlStore) -> None:
    with store.transaction():
        store.set_setting("a", "1")
        with pytest.raises(NotFound), store.transaction():
            store.set_setting("b", "2")
            store.update_version(999, 1, status="active")  # NotFound: the savepoint rolls back "b" only
        store.set_setting("c", "3")
    assert [store.get_setting(k) for k in "abc"] == ["1", None, "3"]
    with pytest.raises(RuntimeError), store.transaction():
        store.set_setting("d", "4")
        raise RuntimeError("boom")
    assert store.get_setting("d") is None  # the whole transaction rolled back


def wait_until(condition: object, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.005)


def test_a_group_commit_signal_wakes_its_waiter_and_may_be_set_twice() -> None:
    signal, woke = _Signal(), threading.Event()
    waiter = threading.Thread(target=lambda: (signal.wait(), woke.set()))
    waiter.start()
    assert not woke.wait(0.05)  # blocked until set
    signal.set()
    waiter.join(10)
    assert woke.is_set()
    signal.set()  # set again (a waiter handed the lead is set once more when its write is committed)
    signal.wait()
    signal.wait()  # stays set


# driver_first: the failing write's first statements run through the driver (the store's _x), whose savepoint
# the Session would begin only at its first ORM use: they must be undone with it all the same
@pytest.mark.parametrize("driver_first", [False, True], ids=["orm-first", "driver-first"])
def test_writes_that_arrive_during_a_commit_share_the_next_one_and_fail_alone(store: SqlStore,
                                                                             driver_first: bool) -> None:
    group = GroupCommit(store)
    release = threading.Event()
    results: dict[str, object] = {}

    def first() -> str:
        store.set_setting("first", "1")
        release.wait(10)  # holds the commit open while the others queue up
        return "first"

    def write(key: str, fail: bool = False) -> str:
        if driver_first:
            store.append_audit("test", "write", key, {}, datetime.now(UTC))
            store.set_setting(key, "1")
        else:
            store.set_setting(key, "1")
            store.append_audit("test", "write", key, {}, datetime.now(UTC))
        if fail:
            raise NotFound(f"{key} fails")
        return key

    def call(name: str, work: object) -> None:
        try:
            results[name] = group.run(work)  # type: ignore[arg-type]
        except NotFound as exc:
            results[name] = exc

    threads = [threading.Thread(target=call, args=("first", first))]
    threads[0].start()
    wait_until(lambda: group._leading)
    for key in ("k1", "k2", "bad", "k3"):
        threads.append(threading.Thread(target=call, args=(key, lambda key=key: write(key, key == "bad"))))
        threads[-1].start()
    wait_until(lambda: len(group._queue) == 4)
    release.set()
    for t in threads:
        t.join(10)
    assert results["first"] == "first" and [results[k] for k in ("k1", "k2", "k3")] == ["k1", "k2", "k3"]
    assert isinstance(results["bad"], NotFound)
    assert (group.commits, group.writes) == (2, 5)  # the four that queued went in one commit
    # tried together first (no savepoints), then again one savepoint each because "bad" failed: nothing twice
    assert group.retried == 1
    assert [store.get_setting(k) for k in ("first", "k1", "k2", "bad", "k3")] == ["1", "1", "1", None, "1"]
    store.verify_audit()  # the chain holds: the audit head went back with the batch that was undone
    assert sorted(e.subject for e in store.list_audit() if e.action == "write") == ["k1", "k2", "k3"]


def test_write_behind_is_committed_in_order_then_drained_with_its_errors(store: SqlStore) -> None:
    group = GroupCommit(store)
    order: list[str] = []

    def chained() -> None:
        order.append("one durable")
        group.run_behind(lambda: store.set_setting("two", "2"), after=lambda: order.append("two durable"), tag="t")

    group.run_behind(lambda: store.set_setting("one", "1"), after=chained, tag="t")
    group.run_behind(lambda: store.update_version(999, 1, status="active"), tag="broken")
    errors = group.drain()
    assert order == ["one durable", "two durable"]
    assert [(tag, type(exc)) for tag, exc in errors] == [("broken", NotFound)]
    assert (store.get_setting("one"), store.get_setting("two")) == ("1", "2")
    assert group.drain() == []


# ---------------------------------------------------------------------------------------------- the simulator
def test_a_realtime_clock_moves_by_itself_and_still_jumps() -> None:
    clock = SimClock(datetime(2026, 1, 1, tzinfo=UTC), realtime=True)
    first = clock.now()
    time.sleep(0.02)
    assert clock.now() > first
    clock.advance(days=7)
    assert clock.now() >= first + timedelta(days=7)
    clock.run(False)  # stands still from here
    frozen = clock.now()
    time.sleep(0.02)
    assert clock.now() == frozen and not clock.realtime


def test_the_rate_limit_window_reopens_on_a_realtime_clock() -> None:
    """The window is counted on the simulator's clock, which runs with real time and also jumps: a 60 s window
    (three quick calls cannot outlast it) that reopens when the clock jumps past it, not after a sleep."""
    sim, world = GraphSimulator.demo_world(clock=SimClock(realtime=True))
    sim.rate_limit = (2, 60.0)
    client = httpx.Client(transport=sim.transport(), base_url="https://graph.facebook.com/v24.0")
    app_token = f"{world.app_id}|{world.app_secret}"

    def debug() -> int:
        return client.get("/debug_token", params={"input_token": world.admin_token, "access_token": app_token}
                          ).status_code

    assert [debug(), debug(), debug()] == [200, 200, 400] and sim.rate_limited == 1
    sim.clock.advance(seconds=61)  # the window has moved on
    assert debug() == 200
