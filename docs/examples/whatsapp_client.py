"""A small WhatsApp Cloud API client that reads its token from tokenvault in-process.

No token in the environment, in argv or in a file: the process opens the store the way the CLI does
(TOKENVAULT_HOME, TOKENVAULT_KEY_PROVIDER... or config.toml) and asks for the label's current token.
A LiveToken follows rotations: when Meta answers 190 (token expired or revoked) the client checks the
store once and, if a newer version is there, repeats the request with it.

    python docs/examples/whatsapp_client.py --label prod-whatsapp --phone-number-id 1234567890 \\
        --to 15551234567 --text "Hello from tokenvault"

Meta's reference: https://developers.facebook.com/docs/whatsapp/cloud-api/reference/messages
"""

from __future__ import annotations

import argparse
import sys
from typing import Any, Protocol

import httpx

from meta_tokenvault import Secret, TokenVault, VaultError

GRAPH = "https://graph.facebook.com/v24.0"


class TokenSource(Protocol):
    """What the client needs: ``meta_tokenvault.api.LiveToken`` (or anything with the same two methods)."""

    def get(self) -> Secret: ...

    def refresh(self) -> bool: ...


class WhatsAppClient:
    """Sends messages through the Cloud API. ``http`` is injectable (tests pass an httpx.MockTransport)."""

    def __init__(self, token: TokenSource, phone_number_id: str, *, http: httpx.Client | None = None,
                 base_url: str = GRAPH) -> None:
        self._token = token
        self._phone_number_id = phone_number_id
        self._http = http or httpx.Client(timeout=30)
        self._base_url = base_url.rstrip("/")

    def send_text(self, to: str, body: str) -> dict[str, Any]:
        """Send a text message; returns Meta's answer (``{"messages": [{"id": "wamid..."}], ...}``)."""
        return self._post(f"{self._phone_number_id}/messages", {
            "messaging_product": "whatsapp", "recipient_type": "individual", "to": to,
            "type": "text", "text": {"preview_url": False, "body": body},
        })

    def _post(self, path: str, payload: dict[str, Any]) -> dict[str, Any]:
        response = self._request(path, payload)
        if _token_rejected(response) and self._token.refresh():  # rotated meanwhile: retry once with the new one
            response = self._request(path, payload)
        response.raise_for_status()
        data: dict[str, Any] = response.json()
        return data

    def _request(self, path: str, payload: dict[str, Any]) -> httpx.Response:
        # The token goes in a header, never in the URL (URLs end up in proxy and server logs).
        headers = {"Authorization": f"Bearer {self._token.get().reveal()}"}
        return self._http.post(f"{self._base_url}/{path}", json=payload, headers=headers)


def _token_rejected(response: httpx.Response) -> bool:
    if response.status_code not in (400, 401):
        return False
    try:
        return int(response.json().get("error", {}).get("code", 0)) == 190
    except (ValueError, AttributeError):
        return False


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--label", required=True, help="the tokenvault label, e.g. prod-whatsapp")
    parser.add_argument("--phone-number-id", required=True, help="the sending phone number's id")
    parser.add_argument("--to", required=True, help="the recipient, international format without +")
    parser.add_argument("--text", required=True)
    args = parser.parse_args(argv)
    try:
        with TokenVault.open() as vault:
            client = WhatsAppClient(vault.live(args.label), args.phone_number_id)
            answer = client.send_text(args.to, args.text)
    except VaultError as exc:  # message and hint never contain the token
        print(f"error: {exc.message}\nhint: {exc.hint}", file=sys.stderr)
        return exc.exit_code
    except httpx.HTTPStatusError as exc:
        print(f"error: the Cloud API answered {exc.response.status_code}: {exc.response.text}", file=sys.stderr)
        return 6
    print(answer["messages"][0]["id"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
