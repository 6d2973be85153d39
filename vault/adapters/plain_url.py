"""The one test of an address the light HTTP clients take (the Graph API over :mod:`http.client`, Vault's fast
read); anything else goes to the full client (httpx, hvac), which decides and reports what is wrong."""

from __future__ import annotations

from urllib.parse import SplitResult, urlsplit


def plain_http_url(url: str) -> SplitResult | None:
    """``url``'s parts when it is a plain ``http(s)://host[:port][/path]`` address: no query, fragment or user
    info, a valid port. Otherwise None."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a malformed port
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment \
            or parts.username is not None or parts.password is not None:
        return None
    return parts


__all__ = ["plain_http_url"]
