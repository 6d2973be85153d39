"""Faults, counted. Graph 5xx storms, timeouts and rate limits against the Graph API simulator (in-process
transport, and its HTTP server where the wire differs); Vault/OpenBao sealed or down in the middle of a
rotation with TOKENVAULT_BACKEND=vault; `backend migrate` SIGKILLed after each step.

After every fault the same three things are checked:

* every token has exactly one active version and it works at the simulator (or the outcome is a clear,
  one-line failure and the token that was active is still active and working);
* nothing minted is lost: every token the simulator still accepts is one tokenvault holds;
* `run-due` (or running the same command again) finishes what was left, minting exactly once.

Each test records its figures (attempts, faults injected, retried, surfaced, recovered) with the
``figures`` fixture of tests/reliability.py; docs/reliability.md quotes them.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from graph_world import SCOPES, World, _tune_graph, make_world, seed, valid_minted
from reliability import Recorder, figures_fixture
from test_vault_integration import TOKEN_V1, TOKEN_V2, add_second_version, opened, setup_cli
from test_vault_integration import venv as venv  # noqa: F401 - the fixture (TOKENVAULT_* for the session OpenBao)

from meta_tokenvault.adapters.graph_httpx import USER_AGENT, HttpxGraphApi, RateGate
from meta_tokenvault.adapters.graph_wire import HttpxSender, StdlibSender, build_httpx_client
from meta_tokenvault.adapters.secrets_hashicorp import HashicorpBackend
from meta_tokenvault.config import Settings
from meta_tokenvault.errors import AlreadyExists, NotFound, RateLimited, Transient, VaultUnavailable
from meta_tokenvault.service import TokenManager
from meta_tokenvault.testing.graph_sim import GraphSimulator, SimClock
from meta_tokenvault.testing.graph_sim.wire import WireRequest, WireResponse
from meta_tokenvault.types import SecretKind, SecretRef, TokenStatus
from meta_tokenvault.wiring import build_manager

ROOT = Path(__file__).resolve().parent.parent
LABELS = [f"wa-{i:02d}" for i in range(20)]


# ============================================================================== helpers
figures = figures_fixture()


@pytest.fixture
def world(tmp_path: Path) -> World:
    return make_world(tmp_path)


def adapter(m: TokenManager) -> HttpxGraphApi:
    graph = m.graph
    assert isinstance(graph, HttpxGraphApi)
    return graph


def http_manager(world: World, url: str, *, client: httpx.Client | None = None, **options: Any) -> TokenManager:
    """A manager that talks HTTP to the simulator's server at ``url``: the production client path (the
    http.client sender tokenvault builds when no proxy is set), or ``client`` (the caller closes it)."""
    m = build_manager(world.settings().with_overrides(graph_url=url), clock=world.sim.clock, environ={},
                      graph_client=client)
    assert isinstance(adapter(m).sender, HttpxSender if client is not None else StdlibSender)
    _tune_graph(m, {"base_delay": 0.001, **options})
    return m


def value_of(m: TokenManager, label: str, version: int | None = None) -> str:
    record = m.store.get_token(label)
    return m.secrets.get(SecretRef(SecretKind.TOKEN, record.id, version or record.version, label)).reveal()


def held(m: TokenManager) -> set[str]:
    """Every token value tokenvault holds, any label, any version."""
    values = set()
    for token in m.store.list_tokens():
        record = m.store.get_token(token.label, with_history=True)
        for version in record.history:
            try:
                values.add(value_of(m, token.label, version.version))
            except NotFound:
                pass
    return values


def assert_one_active_working(world: World, m: TokenManager, label: str) -> str:
    record = m.show_token(label)
    active = [v.version for v in record.history if v.status is TokenStatus.ACTIVE]
    assert active == [record.version] and record.status is TokenStatus.ACTIVE, (label, record.history)
    value = value_of(m, label)
    assert world.sim.token_state(value) == "valid", label
    return value


def lost(world: World, m: TokenManager) -> set[str]:
    """Tokens Meta (the simulator) still accepts that tokenvault does not hold: must stay empty."""
    return set(valid_minted(world.sim)) - held(m)


def one_line(text: str, *secrets: str) -> None:
    assert text and "\n" not in text, text
    for value in secrets:
        assert value not in text


def count(requests: list[Any], fragment: str) -> int:
    return sum(fragment in r.path for r in requests)


# ============================================================================== Graph 5xx storms
@pytest.mark.parametrize("kind", ["http503", "code1"])
def test_a_5xx_storm_during_a_bulk_rotation_loses_nothing_and_run_due_finishes(
        world: World, kind: str, figures: Recorder) -> None:
    """20 tokens rotated 4 at a time while 70% of Graph calls fail: each fault is retried or surfaces once."""
    m = world.manager()
    for label in LABELS:
        m.generate_token(label, business="acme", scopes=SCOPES)
    before = {label: value_of(m, label) for label in LABELS}
    graph = adapter(m)
    attempts0, retries0, start = graph.attempts, graph.retries, len(world.sim.requests)

    world.sim.fault_kind, world.sim.fault_rate = kind, 0.7
    outcomes = m.rotate_many(LABELS, concurrency=4)
    world.sim.fault_rate = 0.0

    storm = world.sim.requests[start:]
    injected = sum(r.status != 200 for r in storm)
    attempts, retries = graph.attempts - attempts0, graph.retries - retries0
    failed = [o for o in outcomes if o.state == "failed"]
    assert {o.state for o in outcomes} <= {"done", "failed"}
    assert attempts == len(storm)  # every attempt reached Meta and was counted
    assert injected == retries + len(failed)  # each injected fault was retried, or surfaced once
    assert failed, "a 70% storm defeats some calls' five attempts"
    for outcome in failed:
        one_line(outcome.message, *before.values())
    # right after the storm: one active working version per token; a failed one kept or promoted its token
    for label in LABELS:
        current = assert_one_active_working(world, m, label)
        if m.show_token(label).version == 1:
            assert current == before[label]
    assert not lost(world, m)

    report = m.run_due()
    assert sorted(report.resumed) == sorted(o.label for o in failed) and report.failed == []
    currents = set()
    for label in LABELS:
        currents.add(assert_one_active_working(world, m, label))
        assert m.show_token(label).version == 2 and world.sim.token_state(before[label]) == "revoked"
    assert set(valid_minted(world.sim)) == currents  # nothing minted lost, nothing left over
    assert len(world.sim.minted) == 2 * len(LABELS)  # one mint per rotation: no retry minted twice
    figures("graph-5xx-storm", kind=kind, tokens=len(LABELS), fault_rate=0.7, attempts=attempts,
            faults_injected=injected, retried=retries, surfaced=len(failed), resumed_by_run_due=len(report.resumed),
            rotations_done=len(LABELS), mints=len(world.sim.minted) - len(LABELS), lost=0)


# ============================================================================== timeouts
@pytest.fixture(params=["transport", "server", "server-httpx"])
def via(request: pytest.FixtureRequest, world: World) -> Iterator[Callable[[], TokenManager]]:
    """A manager factory on the in-process transport (timeout = httpx.ReadTimeout) or over HTTP to the
    simulator's server (timeout = the connection closed with no answer: RemoteProtocolError), through the
    http.client sender (``server``) or the httpx client (``server-httpx``)."""
    made: list[TokenManager] = []
    # the httpx client tokenvault builds when a proxy is set (here without one)
    client = build_httpx_client(15.0, USER_AGENT) if request.param == "server-httpx" else None

    def make() -> TokenManager:
        made.append(world.manager() if request.param == "transport" else
                    http_manager(world, server.url, client=client))
        return made[-1]

    with world.sim.serve() as server:
        yield make
        for m in made:
            m.close()
    if client is not None:
        client.close()


def test_timeouts_on_reads_and_revocations_are_retried(world: World, via: Callable[[], TokenManager],
                                                        request: pytest.FixtureRequest, figures: Recorder) -> None:
    m = via()
    m.generate_token("prod", business="acme", scopes=SCOPES)
    old = value_of(m, "prod")
    graph, start = adapter(m), len(world.sim.requests)
    retries0 = graph.retries
    world.sim.fail_next(2, kind="timeout", path_contains="debug_token")
    world.sim.fail_next(1, kind="timeout", path_contains="oauth/revoke")
    assert m.rotate("prod").state == "done"
    calls = world.sim.requests[start:]
    assert (count(calls, "access_tokens"), count(calls, "debug_token"), count(calls, "oauth/revoke")) == (1, 3, 2)
    assert graph.retries - retries0 == 3
    assert world.sim.token_state(old) == "revoked" and not lost(world, m)
    assert_one_active_working(world, m, "prod")
    figures("timeouts-reads", via=request.node.callspec.params["via"], faults_injected=3, retried=3, surfaced=0)


def test_a_mint_whose_answer_timed_out_is_not_repeated_and_the_rotation_resumes(
        world: World, via: Callable[[], TokenManager], request: pytest.FixtureRequest, figures: Recorder) -> None:
    m = via()
    m.generate_token("prod", business="acme", scopes=SCOPES)
    old = value_of(m, "prod")
    start = len(world.sim.requests)
    world.sim.fail_next(1, kind="timeout", path_contains="access_tokens")
    with pytest.raises(Transient) as info:
        m.rotate("prod")
    one_line(info.value.message, old)
    assert "may have been minted" in info.value.message and "Business Settings" in info.value.message
    assert count(world.sim.requests[start:], "access_tokens") == 1  # not repeated: a second token could be minted
    rotation = m.store.open_rotation(m.store.get_token("prod").id)
    assert rotation is not None and (rotation.step, rotation.state) == ("minting", "running")
    assert assert_one_active_working(world, m, "prod") == old  # the old token still serves
    report = m.run_due()
    assert report.resumed == ["prod"]
    assert m.show_token("prod").version == 2 and world.sim.token_state(old) == "revoked"
    assert valid_minted(world.sim) == [assert_one_active_working(world, m, "prod")]
    figures("timeouts-mint", via=request.node.callspec.params["via"], faults_injected=1, retried=0, surfaced=1,
            resumed_by_run_due=1, lost=0)


class AnswerLost(httpx.BaseTransport):
    """The simulator did the work, then the answer was lost: the next ``n`` requests whose path contains
    ``fragment`` are handled and their answers replaced by a read timeout (what a mint that reached Meta
    and timed out on the way back looks like)."""

    def __init__(self, inner: httpx.BaseTransport, fragment: str, n: int = 1) -> None:
        self.inner, self.fragment, self.remaining = inner, fragment, n

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self.inner.handle_request(request)
        if self.remaining and self.fragment in request.url.path:
            self.remaining -= 1
            raise httpx.ReadTimeout("answer lost on the way back", request=request)
        return response


def test_a_mint_answer_lost_after_meta_minted_leaves_exactly_one_token_for_the_operator(
        world: World, figures: Recorder) -> None:
    """What is NOT guaranteed, measured: Meta minted, the answer never came. tokenvault does not ask again
    (which would leave two), says so, and finishes the rotation; the one token at Meta is the operator's."""
    m = world.manager()
    m.generate_token("prod", business="acme", scopes=SCOPES)
    m.store.close()
    client = httpx.Client(transport=AnswerLost(world.sim.transport(), "access_tokens"))
    m = build_manager(world.settings(), graph_client=client, clock=world.sim.clock, environ={})
    _tune_graph(m, {"base_delay": 0.001})
    with pytest.raises(Transient, match="review the system user's tokens in Business Settings"):
        m.rotate("prod")
    orphans = lost(world, m)
    assert len(orphans) == 1  # exactly one, not two: the mint was not repeated
    assert m.run_due().resumed == ["prod"]
    assert_one_active_working(world, m, "prod")
    assert lost(world, m) == orphans
    (orphan,) = orphans
    world.sim.revoke(orphan)  # the operator revokes it out of band (Business Settings)
    assert not lost(world, m)
    figures("answer-lost-after-mint", mints_lost_at_meta=1, repeated_mints=0, resumed_by_run_due=1)


def test_generate_over_an_existing_label_mints_nothing(world: World) -> None:
    m = world.manager()
    m.generate_token("prod", business="acme", scopes=SCOPES)
    minted = len(world.sim.minted)
    with pytest.raises(AlreadyExists, match="nothing was minted"):
        m.generate_token("prod", business="acme", scopes=SCOPES)
    assert len(world.sim.minted) == minted and not lost(world, m)


# ============================================================================== rate limits
class VirtualTime:
    """Sleeping moves the simulator's clock instead of waiting: minutes of waits take no time, and the
    simulator's rate-limit window (counted on its clock) reopens exactly as it would. Threads sleeping
    at once overlap, as real sleeps do: each moves the clock to *its* wake-up time at most."""

    def __init__(self, clock: SimClock) -> None:
        self.clock, self.slept, self._lock = clock, 0.0, threading.Lock()

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.slept += seconds
            wake = self.clock.now().timestamp() + seconds
            if wake > self.monotonic():
                self.clock.set(datetime.fromtimestamp(wake, UTC))

    def monotonic(self) -> float:
        return self.clock.now().timestamp()


def virtual_manager(world: World) -> tuple[TokenManager, VirtualTime]:
    """The production retry settings (0.5 s base delay, 5 attempts, 120 s bound) on virtual time,
    with the jitter factor fixed at 1.0."""
    vt = VirtualTime(world.sim.clock)
    m = world.manager(base_delay=0.5, _sleep=vt.sleep, _rng=lambda: 0.5, gate=RateGate(clock=vt.monotonic))
    return m, vt


@pytest.mark.parametrize("kind", ["code4", "code80008"])
def test_a_rate_limit_waits_what_meta_says_within_the_bound(world: World, kind: str, figures: Recorder) -> None:
    m, vt = virtual_manager(world)
    m.generate_token("prod", business="acme", scopes=SCOPES)
    world.sim.fault_regain_minutes = 1
    world.sim.fail_next(2, kind=kind, path_contains=world.ids.phone_number_id)
    start = len(world.sim.requests)
    fields = m.check_whatsapp("prod", world.ids.phone_number_id)
    assert fields["id"] == world.ids.phone_number_id  # no failure surfaced
    assert [r.status for r in world.sim.requests[start:]] == [400, 400, 200]
    assert vt.slept == 120.0  # 2 x estimated_time_to_regain_access (1 minute): exactly the 120 s bound
    figures("rate-limit-usage-headers", kind=kind, faults_injected=2, retried=2, surfaced=0, waited_s=vt.slept)


def test_a_rate_limit_wait_beyond_the_bound_is_not_slept(world: World) -> None:
    m, vt = virtual_manager(world)
    m.generate_token("prod", business="acme", scopes=SCOPES)
    world.sim.fault_regain_minutes = 3  # 180 s > the 120 s bound
    world.sim.fail_next(1, kind="code80008", path_contains=world.ids.phone_number_id)
    with pytest.raises(RateLimited) as info:
        m.check_whatsapp("prod", world.ids.phone_number_id)
    assert info.value.retry_after == 180.0 and info.value.exit_code == 6 and vt.slept == 0.0


def test_a_bulk_rotation_under_a_rate_limit_pauses_and_surfaces_no_failure(world: World, figures: Recorder) -> None:
    m, vt = virtual_manager(world)
    for label in LABELS:
        m.generate_token(label, business="acme", scopes=SCOPES)
    before = {label: value_of(m, label) for label in LABELS}
    world.sim.rate_limit = (10, 2.0)  # 10 calls in any 2 s of simulated time, per app
    graph, start, clock0 = adapter(m), len(world.sim.requests), vt.monotonic()
    retries0 = graph.retries
    outcomes = m.rotate_many(LABELS, concurrency=4)
    calls = world.sim.requests[start:]
    refused = sum(r.status == 400 for r in calls)
    assert [o.state for o in outcomes] == ["done"] * len(LABELS)
    assert refused > 0 and refused == graph.retries - retries0
    for label in LABELS:
        assert_one_active_working(world, m, label)
        assert world.sim.token_state(before[label]) == "revoked"
    assert not lost(world, m) and len(world.sim.minted) == 2 * len(LABELS)
    accepted = len(calls) - refused
    elapsed = vt.monotonic() - clock0
    floor = (accepted - 10) / 10 * 2.0  # the first 10 go at once; then 10 per 2 s
    assert elapsed >= floor
    figures("rate-limit-bulk", tokens=len(LABELS), concurrency=4, limit="10 calls / 2 s", calls=accepted,
            refused_code4=refused, retried=refused, surfaced=0, simulated_seconds=round(elapsed, 2),
            floor_seconds=round(floor, 2))


# ============================================================================== Vault sealed / down
class HookedSimulator(GraphSimulator):
    """The simulator plus one-shot hooks run right after it answered a Graph request: Meta did the work,
    then the world changes (Vault is sealed, the network to it goes down)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.hooks: list[tuple[str, Callable[[], None]]] = []

    def after(self, fragment: str, action: Callable[[], None]) -> None:
        self.hooks.append((fragment, action))

    def handle(self, request: WireRequest) -> WireResponse:
        response = super().handle(request)
        for hook in list(self.hooks):
            if hook[0] in request.path and response.status == 200:
                self.hooks.remove(hook)
                hook[1]()
        return response


class TcpProxy:
    """127.0.0.1:port -> a server; :meth:`stop` refuses new connections and cuts the open ones (the
    server is "down" for its clients), :meth:`start` serves again on the same port (it is back)."""

    def __init__(self, target_port: int) -> None:
        self.target = ("127.0.0.1", target_port)
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._listener: socket.socket | None = None
        self._open: list[socket.socket] = []
        self.start()

    def start(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(16)
        listener.settimeout(0.05)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def stop(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.close()
        for sock in self._open:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()
        self._open.clear()

    def _accept(self, listener: socket.socket) -> None:
        while self._listener is listener:
            try:
                client, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            client.settimeout(None)
            upstream = socket.create_connection(self.target)
            self._open += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        for sock in (src, dst):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


@dataclass
class VaultWorld(World):
    """A world whose token values live in KV v2 on OpenBao (TOKENVAULT_BACKEND=vault)."""

    vault_url: str = ""
    vault_token: str = ""
    prefix: str = ""

    def settings(self) -> Settings:
        return Settings(home=self.home, key_provider="file", backend="vault", vault_addr=self.vault_url,
                        vault_token=self.vault_token, vault_prefix=self.prefix)

    def env(self, graph_url: str) -> dict[str, str]:
        env = super().env(graph_url)
        env.update(TOKENVAULT_BACKEND="vault", TOKENVAULT_VAULT_ADDR=self.vault_url,
                   TOKENVAULT_VAULT_TOKEN=self.vault_token, TOKENVAULT_VAULT_PREFIX=self.prefix)
        return env

    @property
    def hooked(self) -> HookedSimulator:
        assert isinstance(self.sim, HookedSimulator)
        return self.sim


def make_vault_world(tmp_path: Path, server: Any, url: str, *, start: datetime | None = None) -> VaultWorld:
    sim, ids = HookedSimulator.demo_world(clock=SimClock(start or datetime(2026, 1, 1, tzinfo=UTC)))
    world = VaultWorld(sim, ids, tmp_path / "home", vault_url=url, vault_token=server.root_token,
                       prefix=f"tv-faults-{uuid.uuid4().hex[:8]}")
    seed(world)
    return world


def unseal(server: Any) -> None:
    """Unseal a dev server with the unseal key it printed, and wait until KV answers again."""
    found = re.search(r"Unseal Key: (\S+)", server.log_path.read_text())
    assert found, server.log_tail()
    client = server.client()
    client.sys.submit_unseal_key(found.group(1))
    deadline = time.monotonic() + 10
    while client.sys.read_seal_status()["sealed"] or not _kv_ready(client):
        assert time.monotonic() < deadline, "OpenBao did not come back after unsealing"
        time.sleep(0.05)


def _kv_ready(client: Any) -> bool:
    try:
        client.secrets.kv.v2.list_secrets("", mount_point="secret")
    except Exception as exc:  # noqa: BLE001 - InvalidPath (nothing listed) is "ready" too
        return type(exc).__name__ == "InvalidPath"
    return True


def assert_consistent_with_vault(m: TokenManager, label: str) -> None:
    """Local metadata and Vault agree: every version row is a live KV version with that fingerprint, and
    KV's latest version is the store's newest."""
    backend = m.secrets
    assert isinstance(backend, HashicorpBackend)
    record = m.store.get_token(label, with_history=True)
    for version in record.history:
        ref = SecretRef(SecretKind.TOKEN, record.id, version.version, label)
        assert backend.exists(ref), (label, version.version)
        assert m.fingerprint(backend.get(ref)) == version.fingerprint
    meta = backend.client.secrets.kv.v2.read_secret_metadata(backend.path_for(ref), mount_point=backend.mount)
    assert meta["data"]["current_version"] == max(v.version for v in record.history)
    assert backend.read_custom_metadata(ref)["tokenvault_version"] == str(meta["data"]["current_version"])


VAULT_FAULTS = [
    # (id, compromised, the Graph answer after which Vault goes, how it goes, where the rotation stops)
    ("sealed-after-mint", False, "access_tokens", "seal", "minting"),
    ("down-after-mint", False, "access_tokens", "down", "minting"),
    ("sealed-after-verify", False, "debug_token", "seal", "promoted"),
    ("down-after-verify", False, "debug_token", "down", "promoted"),
    ("compromised-sealed-after-revoke", True, "oauth/revoke", "seal", "minting"),
]


@pytest.mark.openbao
@pytest.mark.parametrize(("compromised", "after", "how", "stops_at"), [f[1:] for f in VAULT_FAULTS],
                         ids=[f[0] for f in VAULT_FAULTS])
def test_vault_sealed_or_down_mid_rotation_then_run_due_resumes(
        tmp_path: Path, openbao_throwaway: Any, compromised: bool, after: str, how: str, stops_at: str,
        request: pytest.FixtureRequest, figures: Recorder) -> None:
    server = openbao_throwaway
    proxy = TcpProxy(server.port)
    try:
        world = make_vault_world(tmp_path, server, proxy.url)
        m = world.manager()
        m.generate_token("prod", business="acme", scopes=SCOPES)
        old = value_of(m, "prod")
        world.hooked.after(after, server.seal if how == "seal" else proxy.stop)
        with pytest.raises(VaultUnavailable) as info:
            m.rotate("prod", compromised=compromised)
        exc = info.value
        assert exc.exit_code == 5 and ("sealed" in exc.message if how == "seal" else "unreachable" in exc.message)
        one_line(exc.message, old, *valid_minted(world.sim))
        one_line(exc.hint, old)
        discarded = after == "access_tokens"
        if discarded:  # Meta minted, Vault could not take it: revoked at once rather than left at Meta
            assert "revoked it at Meta" in exc.message
            assert [e.action for e in m.audit_events(label="prod")][-1] == "mint.discarded"
        record = m.store.get_token("prod")
        rotation = m.store.open_rotation(record.id)
        assert rotation is not None and (rotation.step, rotation.state) == (stops_at, "running")
        if compromised:  # loud gap: the leaked token is dead, no working token until Vault is back
            assert record.status is TokenStatus.COMPROMISED and world.sim.token_state(old) == "revoked"
        else:  # zero downtime: exactly one active version, and it works at Meta
            assert record.status is TokenStatus.ACTIVE
            assert [v.status for v in m.show_token("prod").history].count(TokenStatus.ACTIVE) == 1
            assert world.sim.token_state(old) == "valid"
        m.close()

        if how == "seal":
            unseal(server)
        else:
            proxy.start()
        m = world.manager()
        report = m.run_due()
        assert report.resumed == ["prod"] and report.failed == []
        current = assert_one_active_working(world, m, "prod")
        assert m.show_token("prod").version == 2 and world.sim.token_state(old) == "revoked"
        assert set(valid_minted(world.sim)) == {current}  # nothing minted lost
        assert len(world.sim.minted) == 2 + discarded
        assert_consistent_with_vault(m, "prod")
        assert m.verify_audit() > 0
        m.close()
        figures("vault-mid-rotation", case=request.node.callspec.id, stopped_at=stops_at, exit_code=exc.exit_code,
                minted_then_revoked=int(discarded), resumed_by_run_due=1, lost=0)
    finally:
        proxy.stop()


@pytest.mark.openbao
def test_generate_with_vault_sealed_after_mint_leaves_nothing_behind(tmp_path: Path, openbao_throwaway: Any) -> None:
    world = make_vault_world(tmp_path, openbao_throwaway, openbao_throwaway.url)
    m = world.manager()
    world.hooked.after("access_tokens", openbao_throwaway.seal)
    with pytest.raises(VaultUnavailable, match="revoked it at Meta"):
        m.generate_token("prod", business="acme", scopes=SCOPES)
    with pytest.raises(NotFound):
        m.show_token("prod")  # no half-made label blocks the retry
    assert valid_minted(world.sim) == []  # the one minted token is dead at Meta
    unseal(openbao_throwaway)
    m.generate_token("prod", business="acme", scopes=SCOPES)
    assert valid_minted(world.sim) == [assert_one_active_working(world, m, "prod")]
    assert_consistent_with_vault(m, "prod")
    m.close()


@pytest.mark.slow
@pytest.mark.openbao
def test_cli_rotate_with_vault_sealed_after_mint_is_exit_5_one_line_and_run_due_resumes(
        tmp_path: Path, openbao_throwaway: Any, figures: Recorder) -> None:
    server = openbao_throwaway
    world = make_vault_world(tmp_path, server, server.url, start=datetime.now(UTC))  # the CLI uses the real clock
    with world.sim.serve() as graph:
        m = world.manager()
        m.generate_token("prod", business="acme", scopes=SCOPES)
        old = value_of(m, "prod")
        m.close()
        world.hooked.after("access_tokens", server.seal)

        def tokenvault(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run([sys.executable, "-m", "meta_tokenvault.cli.main", *args],
                                  env=world.env(graph.url), cwd=ROOT,
                                  capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)

        rotated = tokenvault("token", "rotate", "prod")
        assert rotated.returncode == 5, rotated.stderr
        lines = rotated.stderr.strip().splitlines()
        assert [line.split(":")[0] for line in lines] == ["error", "hint"], rotated.stderr
        assert f"Vault at {server.url} is sealed." in lines[0] and "revoked it at Meta" in lines[0]
        for value in (old, server.root_token, *[t.value for t in world.sim.tokens]):
            assert value not in rotated.stdout + rotated.stderr
        unseal(server)
        resumed = tokenvault("run-due", "--json")
        assert resumed.returncode == 0, resumed.stderr
        assert json.loads(resumed.stdout)["resumed"] == ["prod"]
    m = world.manager()
    current = assert_one_active_working(world, m, "prod")
    assert world.sim.token_state(old) == "revoked" and set(valid_minted(world.sim)) == {current}
    assert_consistent_with_vault(m, "prod")
    m.close()
    figures("vault-mid-rotation-cli", exit_code=rotated.returncode, stderr_lines=len(lines), resumed_by_run_due=1,
            lost=0)


# ============================================================================== backend migrate, SIGKILLed
# 2 business secrets + 3 token versions: 5 copies, 3 relabels, the switch, 5 purges (14 points in all).
# Items within a phase run the same code; the first and the last of each phase, and the switch, are killed.
MIGRATE_POINTS = ["migrate.copied:1", "migrate.copied:5", "migrate.relabelled:1", "migrate.relabelled:3",
                  "migrate.switched", "migrate.purged:1", "migrate.purged:5"]
EXPECTED = [("prod", 1, TOKEN_V1), ("prod", 2, TOKEN_V2)]


@pytest.mark.slow
@pytest.mark.openbao
@pytest.mark.parametrize("point", MIGRATE_POINTS)
def test_backend_migrate_sigkilled_at_each_step_then_run_again_finishes(
        cli: Any, venv: dict[str, str], openbao: Any, openbao_scope: Any, point: str, figures: Recorder) -> None:
    from test_vault_integration import OTHER, kv_read

    setup_cli(cli, tokens=("prod", "staging"))
    with opened() as manager:
        add_second_version(manager, "prod", TOKEN_V2)
    expected = [*EXPECTED, ("staging", 1, OTHER)]
    env = {**os.environ, "TOKENVAULT_TEST_MODE": "1", "TOKENVAULT_TEST_CRASH_AFTER": point}
    crashed = subprocess.run([sys.executable, "-m", "meta_tokenvault.cli.main", "backend", "migrate", "--to", "vault",
                              "--purge-source"], env=env, cwd=ROOT, capture_output=True, text=True, timeout=60,
                             stdin=subprocess.DEVNULL)
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr

    # killed: every version is still readable through whatever the store now records
    for label, version, value in expected:
        assert cli("token", "reveal", label, "--version", str(version)).out == value + "\n", (point, label, version)
    # the same command again (no waiting for the dead process's lease) finishes the job
    again = cli("backend", "migrate", "--to", "vault", "--purge-source", "--json")
    assert again.code == 0, again.err
    status = cli("backend", "status", "--json").json()
    assert status["recorded"] == status["in_use"] == "vault" and status["problems"] == []
    assert status["versions_per_backend"] == {"vault": 3}
    for label, version, value in expected:
        assert cli("token", "reveal", label, "--version", str(version)).out == value + "\n"
        assert kv_read(openbao, openbao_scope.prefix, label, version)["data"]["data"] == {"token": value}
    with opened() as manager:
        for token in manager.store.list_tokens():
            record = manager.store.get_token(token.label, with_history=True)
            assert all(manager.store.get_blob("token", record.id, v.version) is None for v in record.history)
        assert [e.action for e in manager.audit_events()].count("backend.migrate") == 1
        assert manager.verify_audit() > 0
    figures("backend-migrate-sigkill", point=point, killed=1, rerun_exit=again.code, versions_readable=3, lost=0)
