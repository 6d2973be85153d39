"""The AppriseNotifier against a real local HTTP endpoint (apprise's ``json://`` webhook target)."""

from __future__ import annotations

import json
import logging
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from meta_tokenvault.adapters.notify_apprise import AppriseNotifier
from meta_tokenvault.errors import InvalidInput

TOKEN = "EAA" + "Zx9" * 13 + "q"  # EAA + 40 alphanumerics: the shape of a Meta access token
assert len(TOKEN) == 43


@dataclass
class Webhook:
    """A local HTTP endpoint recording each request; answers ``status``."""

    port: int
    status: int = 200
    requests: list[dict[str, Any]] = field(default_factory=list)

    def url(self, path: str = "/hook") -> str:
        return f"json://127.0.0.1:{self.port}{path}"


@pytest.fixture
def webhook(monkeypatch: pytest.MonkeyPatch) -> Iterator[Webhook]:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(name, raising=False)  # a proxy from the CI environment must not intercept
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    hook = Webhook(port=0)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - the stdlib's name
            length = int(self.headers.get("Content-Length", "0"))
            hook.requests.append({"path": self.path, "content_type": self.headers.get("Content-Type", ""),
                                  "body": self.rfile.read(length).decode()})
            self.send_response(hook.status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet test server
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    hook.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield hook
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_notify_posts_title_and_body_to_the_webhook(webhook: Webhook) -> None:
    notifier = AppriseNotifier([webhook.url()])
    assert notifier.notify("tokenvault: rotation of prod deferred", "The window opens on 2025-03-08.") is True
    (request,) = webhook.requests
    assert request["path"] == "/hook"
    assert request["content_type"].startswith("application/json")
    payload = json.loads(request["body"])
    assert payload["title"] == "tokenvault: rotation of prod deferred"
    assert payload["message"] == "The window opens on 2025-03-08."


@pytest.mark.parametrize("where", ["body", "title", "both"], ids=["in-body", "in-title", "in-both"])
def test_a_token_shaped_string_is_redacted_before_it_leaves(webhook: Webhook, where: str) -> None:
    title = f"leak {TOKEN} here" if where in ("title", "both") else "a title"
    body = f"the old token {TOKEN} was revoked" if where in ("body", "both") else "a body"
    assert AppriseNotifier([webhook.url()]).notify(title, body) is True
    (request,) = webhook.requests
    assert TOKEN not in request["body"] and TOKEN[3:] not in request["body"]
    payload = json.loads(request["body"])
    if where in ("body", "both"):
        assert payload["message"] == "the old token <redacted> was revoked"
    if where in ("title", "both"):
        assert payload["title"] == "leak <redacted> here"


def test_every_configured_target_is_notified(webhook: Webhook) -> None:
    notifier = AppriseNotifier([webhook.url("/one"), webhook.url("/two")])
    assert notifier.notify("t", "b") is True
    assert sorted(r["path"] for r in webhook.requests) == ["/one", "/two"]
    assert repr(notifier) == "AppriseNotifier(targets=2)"


@pytest.mark.parametrize(
    "url",
    ["notaservice://example.com/x", "just some text", "json://"],
    ids=["unknown-scheme", "not-a-url", "no-host"],
)
def test_a_url_apprise_does_not_understand_is_invalid_input(url: str) -> None:
    with pytest.raises(InvalidInput) as info:
        AppriseNotifier(["json://127.0.0.1:9/ok", url])
    assert info.value.exit_code == 2
    assert "1 notification URL" in info.value.message
    assert url not in info.value.message  # a webhook URL can carry a secret: never echoed
    assert "TOKENVAULT_NOTIFY_URLS" in info.value.hint


def _closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_an_unreachable_target_returns_false_without_raising(webhook: Webhook,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    notifier = AppriseNotifier([f"json://127.0.0.1:{_closed_port()}/hook"])
    with caplog.at_level(logging.WARNING, logger="tokenvault.notify"):
        assert notifier.notify("title", f"body with {TOKEN}") is False
    assert any("not delivered" in r.getMessage() for r in caplog.records if r.name == "tokenvault.notify")
    assert TOKEN not in caplog.text


def test_a_refusing_endpoint_returns_false_without_raising(webhook: Webhook) -> None:
    webhook.status = 500
    assert AppriseNotifier([webhook.url()]).notify("title", "body") is False
    assert len(webhook.requests) == 1  # it was tried


def test_one_failing_target_does_not_stop_the_others(webhook: Webhook) -> None:
    notifier = AppriseNotifier([f"json://127.0.0.1:{_closed_port()}/down", webhook.url("/up")])
    assert notifier.notify("title", "body") is False  # not every target got it ...
    assert [r["path"] for r in webhook.requests] == ["/up"]  # ... but the reachable one did
