"""Known answers for ``appsecret_proof``: the expected hex is written here, computed once outside the project with

    printf %s TOKEN | openssl dgst -sha256 -hmac SECRET

so the client and the simulator are checked against Meta's definition (HMAC-SHA256, key = the app secret,
message = the access token of the same call), not against each other. Meta's own SDK (facebook-business,
``FacebookSession``) is asked for the same values as a third witness."""

from __future__ import annotations

import hashlib
import hmac

import httpx
import pytest

from meta_tokenvault.adapters.graph_httpx import HttpxGraphApi
from meta_tokenvault.adapters.graph_httpx import appsecret_proof as client_proof
from meta_tokenvault.ports.graph import AppCredentials
from meta_tokenvault.testing.graph_sim import GraphSimulator, SimClock
from meta_tokenvault.testing.graph_sim import appsecret_proof as sim_proof
from meta_tokenvault.types import Secret

# (app secret, access token, HMAC-SHA256(key=secret, msg=token) hex) — from openssl, pasted.
KNOWN = [
    pytest.param("tokenvault-known-answer-secret-1", "EAAknownanswertoken1",
                 "f07e8e3eaa13431de6c9a3193048ccec222db94f9e8a284e71c9ee13537afcc4", id="plain"),
    pytest.param("0123456789abcdef0123456789abcdef", "EAABsbCS1iHgBAKZBZCZAsZCpjZBZA",
                 "3fb38dc96258245a264d29e7d7dab3f115493f1c36909b7e6cea118651f6260c", id="hex-secret"),
    pytest.param("s3cr3t", "EAAG", "76b12072e223c3f22c914d9d1bffde9b378ee80f20b04d850afbdc9e48e806e1",
                 id="short"),
    pytest.param("k" * 100, "EAAlongkeytoken", "96c20d008ef76c960a4c29319f9b479d596a822c644e491cce755e6a3f95bfd0",
                 id="key-longer-than-a-block"),
]
# The same pairs with key and message swapped (what a swapped implementation would send): never accepted.
SWAPPED = {
    "EAAknownanswertoken1": "c094a60be7596f6e9f7388fb2f3c63a7760d0dbbe85d6ec7e377480a4853e847",
    "EAABsbCS1iHgBAKZBZCZAsZCpjZBZA": "61801ba175550f65697830ee291cbd503f83bf9f1c900780863e97260e03945d",
    "EAAG": "26636605e7854c18180c51e7c41207347aa11e6c293ed4982f72129759951952",
}


@pytest.mark.parametrize(("secret", "token", "expected"), KNOWN)
def test_the_clients_proof_is_the_known_answer(secret: str, token: str, expected: str) -> None:
    assert client_proof(Secret(secret), Secret(token)) == expected


@pytest.mark.parametrize(("secret", "token", "expected"), KNOWN)
def test_the_simulators_proof_is_the_known_answer(secret: str, token: str, expected: str) -> None:
    assert sim_proof(secret, token) == expected


@pytest.mark.parametrize(("secret", "token", "expected"), KNOWN)
def test_metas_sdk_computes_the_same_known_answer(secret: str, token: str, expected: str) -> None:
    from facebook_business.session import FacebookSession

    session = FacebookSession(app_id="1", app_secret=secret, access_token=token)
    try:
        assert session.appsecret_proof == expected
    finally:
        session.requests.close()


@pytest.mark.parametrize(("secret", "token", "expected"), KNOWN[:3])
def test_the_client_sends_the_known_answer_on_the_wire(secret: str, token: str, expected: str) -> None:
    """What reaches the network, not only what the helper returns: a mint through a recording transport."""
    sent: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(200, json={"access_token": "EAAnew"})

    with httpx.Client(transport=httpx.MockTransport(answer)) as client:
        api = HttpxGraphApi(client)
        api.generate_token("5000000000005", AppCredentials("2000000000002", Secret(secret)), Secret(token),
                           ("whatsapp_business_management",))
    (request,) = sent
    form = dict(httpx.QueryParams(request.content.decode()))
    assert form["appsecret_proof"] == expected
    assert form["appsecret_proof"] != SWAPPED[token]
    assert request.headers["authorization"] == f"Bearer {token}"  # the proof is over the token of this call


def _reference(secret: str, token: str) -> str:
    """The definition, checked against the literal answers above by the test right below."""
    return hmac.new(secret.encode(), token.encode(), hashlib.sha256).hexdigest()


@pytest.mark.parametrize(("secret", "token", "expected"), KNOWN)
def test_the_reference_used_below_is_the_known_answer(secret: str, token: str, expected: str) -> None:
    assert _reference(secret, token) == expected


def _wrong_proofs(secret: str, token: str) -> dict[str, str]:
    return {
        "key and message swapped": hmac.new(token.encode(), secret.encode(), hashlib.sha256).hexdigest(),
        "sha1": hmac.new(secret.encode(), token.encode(), hashlib.sha1).hexdigest(),
        "plain sha256 of secret+token": hashlib.sha256((secret + token).encode()).hexdigest(),
        "over another token": _reference(secret, token + "x"),
        "with another secret": _reference(secret + "x", token),
        "truncated": _reference(secret, token)[:32],
        "empty-ish": "0" * 64,
    }


def test_the_simulator_accepts_only_metas_computation() -> None:
    sim, world = GraphSimulator.demo_world(clock=SimClock())
    with httpx.Client(transport=sim.transport(), base_url="https://graph.facebook.com/v24.0") as client:
        def status(token: str, proof: str) -> tuple[int, str]:
            res = client.get("/me", params={"access_token": token, "appsecret_proof": proof})
            return res.status_code, res.text

        good = _reference(world.app_secret, world.admin_token)
        assert status(world.admin_token, good)[0] == 200
        for name, proof in _wrong_proofs(world.app_secret, world.admin_token).items():
            code, body = status(world.admin_token, proof)
            assert code == 400 and "Invalid appsecret_proof" in body, name
        # an app access token's proof, when one is sent, is checked as well
        app_token = f"{world.app_id}|{world.app_secret}"
        assert status(app_token, _reference(world.app_secret, app_token))[0] == 200
        code, body = status(app_token, _wrong_proofs(world.app_secret, app_token)["key and message swapped"])
        assert code == 400 and "Invalid appsecret_proof" in body
