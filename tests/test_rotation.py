"""Minting, revoke-and-reissue rotation, compromised mode, the seven-day fallback and run-due,
with the real service, store and Graph client against the Graph API simulator (in-process transport)."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from graph_world import SCOPES, World, make_world, valid_minted

from meta_tokenvault.errors import Deferred, NotFound, RotationInProgress
from meta_tokenvault.types import TokenStatus


@pytest.fixture
def world(tmp_path: Path) -> World:
    return make_world(tmp_path)


def test_generate_picks_the_oldest_eligible_admin_and_records_provenance(world: World) -> None:
    m = world.manager()
    record = m.generate_token("prod", business="acme", scopes=SCOPES)
    assert record.status is TokenStatus.ACTIVE and record.version == 1
    assert record.provenance.system_user_id == world.ids.old_admin_id
    assert set(record.provenance.scopes) == set(SCOPES)
    assert world.ids.waba_id in record.provenance.waba_ids  # from debug_token's granular scopes
    assert record.verified_at is not None and record.expires_at is None  # never-expiring by default
    secret = m.reveal("prod")
    assert world.sim.token_state(secret.reveal()) == "valid"
    minted = [t for t in world.sim.minted if t.value == secret.reveal()]
    assert minted and minted[0].system_user_id == world.ids.old_admin_id


def test_generate_through_a_young_admin_asks_meta_first_and_mints(world: World) -> None:
    """Nothing authoritative says Meta's seven-day rule gates minting: tokenvault asks, and Meta (by default in
    the simulator) allows it, so nobody waits a week for nothing."""
    m = world.manager()
    record = m.generate_token("staging", business="acme", scopes=SCOPES, system_user_id=world.ids.new_admin_id)
    assert record.status is TokenStatus.ACTIVE and record.provenance.system_user_id == world.ids.new_admin_id
    assert m.reminders() == []
    assert [t.system_user_id for t in world.sim.minted] == [world.ids.new_admin_id]


def test_generate_through_a_named_employee_system_user_asks_meta(world: World) -> None:
    """Not refused locally for its role: Meta mints for an employee system user when the business admin token is
    the caller (what `provision --role employee` relies on too)."""
    m = world.manager()
    record = m.generate_token("emp", business="acme", scopes=SCOPES, system_user_id=world.ids.employee_id)
    assert record.provenance.system_user_id == world.ids.employee_id
    assert world.sim.token_state(m.reveal("emp").reveal()) == "valid"
    m.close()


def test_generate_through_a_young_admin_is_deferred_with_a_reminder_when_meta_refuses(world: World) -> None:
    world.sim.mint_requires_old_admin = True  # the seed's reading: Meta refuses minting through a young admin
    m = world.manager()
    with pytest.raises(Deferred) as info:
        m.generate_token("staging", business="acme", scopes=SCOPES, system_user_id=world.ids.new_admin_id)
    exc = info.value
    assert exc.exit_code == 7 and exc.opens_at is not None and exc.reminder_id is not None
    young = m.store.get_system_user(world.ids.new_admin_id)
    assert exc.opens_at == young.created_at + __import__("datetime").timedelta(days=7)
    reminders = m.reminders(open_only=True)
    assert [(r.label, r.action) for r in reminders] == [("staging", "generate")]
    assert world.sim.minted == []  # nothing was minted
    refused = [r for r in world.sim.requests if r.route.endswith("/access_tokens")]
    assert [r.status for r in refused] == [400]  # Meta was asked once, and said no
    with pytest.raises(NotFound):
        m.show_token("staging")


def test_deferred_generate_is_completed_exactly_once_when_the_window_opens(world: World) -> None:
    world.sim.mint_requires_old_admin = True
    m = world.manager()
    with pytest.raises(Deferred):
        m.generate_token("staging", business="acme", scopes=SCOPES, system_user_id=world.ids.new_admin_id)
    assert m.run_due().completed == []  # still six days and 23 hours away
    world.sim.clock.advance(days=7)
    first = m.run_due()
    second = m.run_due()
    assert first.completed == ["staging"] and second.completed == []
    assert len(world.sim.minted) == 1
    record = m.show_token("staging")
    assert record.status is TokenStatus.ACTIVE and record.provenance.system_user_id == world.ids.new_admin_id
    assert [r.status for r in m.reminders()] == ["done"]


def test_rotate_mints_promotes_then_revokes_the_old_token(world: World) -> None:
    m = world.manager()
    m.generate_token("prod", business="acme", scopes=SCOPES)
    old = m.reveal("prod")
    outcome = m.rotate("prod", reason="scheduled")
    assert (outcome.state, outcome.from_version, outcome.to_version) == ("done", 1, 2)
    new = m.reveal("prod")
    assert new != old
    assert world.sim.token_state(old.reveal()) == "revoked"
    assert world.sim.token_state(new.reveal()) == "valid"
    history = {v.version: v.status for v in m.show_token("prod").history}
    assert history == {1: TokenStatus.REVOKED, 2: TokenStatus.ACTIVE}
    # zero downtime: the new token was minted (and verified) before the old one was revoked
    paths = [r.path for r in world.sim.requests]
    mint_at = max(i for i, p in enumerate(paths) if p.endswith("/access_tokens"))
    revoke_at = max(i for i, p in enumerate(paths) if p.endswith("/oauth/revoke"))
    assert mint_at < revoke_at


def test_compromised_rotation_kills_the_leaked_token_before_minting(world: World) -> None:
    m = world.manager()
    m.generate_token("prod", business="acme", scopes=SCOPES)
    leaked = m.reveal("prod")
    minted_before = len(world.sim.minted)
    outcome = m.rotate("prod", compromised=True, reason="pasted in chat")
    assert outcome.state == "done" and outcome.compromised
    paths = [r.path for r in world.sim.requests]
    revoke_at = min(i for i, p in enumerate(paths) if p.endswith("/oauth/revoke"))
    mints = [i for i, p in enumerate(paths) if p.endswith("/access_tokens")]
    assert mints[minted_before] > revoke_at  # the new mint came after the revocation
    assert world.sim.token_state(leaked.reveal()) == "revoked"
    history = {v.version: v.status for v in m.show_token("prod").history}
    assert history == {1: TokenStatus.COMPROMISED, 2: TokenStatus.ACTIVE}


def test_compromised_rotation_deferred_is_loud_and_the_leak_is_still_dead(tmp_path: Path) -> None:
    world = make_world(tmp_path)
    world.sim.mint_requires_old_admin = True  # Meta refuses minting through the brand-new admin
    m = world.manager()
    m.generate_token("prod", business="acme", scopes=SCOPES)
    leaked = m.reveal("prod")
    # the old admin is compromised too and removed: only the brand-new admin remains
    m.store.upsert_system_user(m.store.get_business("acme").id, world.ids.old_admin_id, "old admin", "EMPLOYEE",
                               None, m.now())
    with pytest.raises(Deferred) as info:
        m.rotate("prod", compromised=True)
    assert info.value.exit_code == 7 and "NO working token" in info.value.message
    assert world.sim.token_state(leaked.reveal()) == "revoked"
    record = m.show_token("prod")
    assert record.status is TokenStatus.COMPROMISED
    assert [(r.label, r.action) for r in m.reminders(open_only=True)] == [("prod", "rotate")]
    world.sim.clock.advance(days=7)
    report = m.run_due()
    assert report.completed == ["prod"]
    record = m.show_token("prod")
    assert record.status is TokenStatus.ACTIVE and record.version == 2
    assert world.sim.token_state(m.reveal("prod").reveal()) == "valid"


def test_two_concurrent_rotations_mint_exactly_once(world: World) -> None:
    m0 = world.manager()
    m0.generate_token("prod", business="acme", scopes=SCOPES)
    world.sim.latency = 0.4  # a rotation takes > 1 s: both threads are inside it at the same time, even on a busy box
    minted_before = len(world.sim.minted)
    results: list[object] = []
    barrier = threading.Barrier(2)

    def rotate() -> None:
        m = world.manager()
        barrier.wait()
        try:
            results.append(m.rotate("prod"))
        except RotationInProgress as exc:
            results.append(exc)
        finally:
            m.store.close()

    threads = [threading.Thread(target=rotate) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert sum(isinstance(r, RotationInProgress) for r in results) == 1
    assert len(world.sim.minted) - minted_before == 1
    assert m0.show_token("prod").version == 2


def test_rotate_all_with_bounded_concurrency_reports_each_outcome(world: World) -> None:
    m = world.manager()
    for i in range(6):
        m.generate_token(f"t{i}", business="acme", scopes=SCOPES)
    seen: list[str] = []
    outcomes = m.rotate_many(m.labels_for(), concurrency=3, progress=lambda o: seen.append(o.label))
    assert sorted(seen) == [f"t{i}" for i in range(6)]
    assert {o.state for o in outcomes} == {"done"}
    assert all(m.show_token(f"t{i}").version == 2 for i in range(6))
    assert len(valid_minted(world.sim)) == 6  # the six old tokens are revoked, the six new ones live


def test_rotate_by_system_user_selects_only_its_tokens(world: World) -> None:
    m = world.manager()
    m.generate_token("a", business="acme", scopes=SCOPES)
    assert m.labels_for(system_user_id=world.ids.old_admin_id) == ["a"]
    assert m.labels_for(system_user_id=world.ids.new_admin_id) == []


def test_policy_rotation_by_max_age_runs_from_run_due(world: World) -> None:
    m = world.manager()
    m.generate_token("prod", business="acme", scopes=SCOPES, max_age_days=30)
    assert m.run_due().policy_rotated == []
    world.sim.clock.advance(days=30)
    assert m.run_due().policy_rotated == ["prod"]
    assert m.show_token("prod").version == 2
    assert m.run_due().policy_rotated == []  # the new version is young


def test_expiring_token_is_refreshed_before_expiry(world: World) -> None:
    m = world.manager()
    record = m.generate_token("exp", business="acme", scopes=SCOPES, expiring=True)
    assert record.expires_at is not None
    old = m.reveal("exp").reveal()
    world.sim.clock.advance(days=54)  # six days before the 60-day expiry: inside the margin
    report = m.run_due()
    assert report.refreshed == ["exp"] and report.policy_rotated == []  # refreshed, not re-minted
    renewed = m.show_token("exp")
    assert renewed.version == 2 and renewed.expires_at is not None and renewed.expires_at > record.expires_at
    assert renewed.source.value == "refreshed"
    assert world.sim.token_state(old) == "valid"  # the old one keeps working until its own expiry


def test_compromised_rotation_also_kills_an_older_version_a_refresh_left_working(world: World) -> None:
    """A refresh keeps the old token valid until its own expiry; whoever leaked the current token may hold that one
    too, so a compromised rotation revokes every older version Meta still accepts, not only the current one."""
    m = world.manager()
    m.generate_token("exp", business="acme", scopes=SCOPES, expiring=True)
    first = m.reveal("exp").reveal()
    world.sim.clock.advance(days=54)
    assert m.run_due().refreshed == ["exp"]
    second = m.reveal("exp").reveal()
    assert world.sim.token_state(first) == "valid" and world.sim.token_state(second) == "valid"
    assert m.rotate("exp", compromised=True, reason="pasted in chat").state == "done"
    third = m.reveal("exp").reveal()
    assert world.sim.token_state(first) == "revoked" and world.sim.token_state(second) == "revoked"
    assert world.sim.token_state(third) == "valid"
    history = {v.version: v for v in m.show_token("exp").history}
    assert history[3].status is TokenStatus.ACTIVE
    assert history[1].status is TokenStatus.COMPROMISED and history[1].revoked_at is not None
    assert history[2].status is TokenStatus.COMPROMISED and history[2].revoked_at is not None
    revoked = [e for e in m.audit_events() if e.action == "token.revoke"]
    assert [e.details.get("version") for e in revoked] == [1]
    m.close()


def test_transient_faults_are_retried_and_nothing_is_lost(world: World) -> None:
    m = world.manager()
    m.generate_token("prod", business="acme", scopes=SCOPES)
    world.sim.fail_next(2, kind="http503")
    world.sim.fail_next(1, kind="code2")
    outcome = m.rotate("prod")
    assert outcome.state == "done"
    assert valid_minted(world.sim) == [m.reveal("prod").reveal()]


def test_check_whatsapp_reads_the_phone_number_with_the_token_itself(world: World) -> None:
    from meta_tokenvault.errors import InvalidInput, NotFound, TokenInvalid

    m = world.manager()
    m.generate_token("prod", business="acme", scopes=SCOPES)
    fields = m.check_whatsapp("prod", world.ids.phone_number_id)
    assert fields["id"] == world.ids.phone_number_id and "display_phone_number" in fields
    call = world.sim.requests[-1]
    assert call.access_token == m.reveal("prod").reveal()  # the token under test made the call
    with pytest.raises(InvalidInput):
        m.check_whatsapp("prod", "+1 555")
    world.sim.revoke(m.reveal("prod").reveal())
    with pytest.raises(TokenInvalid):
        m.check_whatsapp("prod", world.ids.phone_number_id)
    with pytest.raises(NotFound):
        m.check_whatsapp("nope", world.ids.phone_number_id)


def test_a_long_rotation_keeps_its_lease_so_no_one_else_mints(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """Paced Graph calls can make one rotation outlast its lease: it is renewed as it goes, so a second
    rotation started after the lease would have expired still finds it held (exit 8) and mints nothing."""
    import time
    from datetime import timedelta

    from meta_tokenvault.usecases import rotate as rotation

    monkeypatch.setattr(rotation, "LEASE_TTL", timedelta(seconds=3))  # 10 minutes in production
    world = make_world(tmp_path, realtime=True)
    m0 = world.manager()
    m0.generate_token("prod", business="acme", scopes=SCOPES)
    # Three calls to Meta, 2 s each: the rotation takes at least 6 s, twice the lease; it renews the lease
    # before each call once a third of it is spent (at ~2 s and ~4 s).
    world.sim.latency = 2.0
    minted_before = len(world.sim.minted)
    results: list[object] = []

    def first() -> None:
        m = world.manager()
        try:
            results.append(m.rotate("prod"))
        finally:
            m.store.close()

    thread = threading.Thread(target=first)
    thread.start()
    # Past the first lease's expiry (3 s) for sure, and with 2.5 s to spare before the rotation can end (>= 6 s):
    # an honest margin, not a race.
    time.sleep(3.5)
    second = world.manager()
    with pytest.raises(RotationInProgress):
        second.rotate("prod")
    second.store.close()
    thread.join(timeout=60)
    assert [getattr(r, "state", r) for r in results] == ["done"]
    assert len(world.sim.minted) - minted_before == 1
    assert m0.show_token("prod").version == 2
