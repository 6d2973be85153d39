"""A KV v2 reader on the standard library's :mod:`http.client`, for the fast read path.

:class:`LightKvClient` offers the one call :meth:`HashicorpBackend.get
<meta_tokenvault.adapters.secrets_hashicorp.HashicorpBackend.get>` makes - ``client.secrets.kv.v2.read_secret_version``
- so the backend's own ``get`` (its paths, its version and ownership checks, its messages) runs on it
unchanged, without importing hvac or requests (~0.5 s of start-up).

It talks to the server the way :func:`~meta_tokenvault.adapters.hashicorp_client.build_client` makes hvac talk to it:
the same address, token (``X-Vault-Token``), namespace (``X-Vault-Namespace``), timeout, and TLS verification
- against ``TOKENVAULT_VAULT_CACERT`` (a bundle file or a directory) when set, else against the CA bundle
requests uses (certifi's), with the host name checked; no proxy and nothing from ``VAULT_*`` or the
environment. It answers only the plain case - HTTP 200 with a JSON body. Anything else (a 403, a 404,
a sealed server, a redirect, a refused connection, a TLS failure, a timeout) raises
:class:`~meta_tokenvault.fallback.FastPathUnavailable`: the full path (hvac) then makes the same request and reports
it through the one error table of :mod:`~meta_tokenvault.adapters.hashicorp_client`. Nothing is written either way.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from urllib.parse import quote, urlsplit

from ..fallback import FastPathUnavailable
from .hashicorp_client import DEFAULT_TIMEOUT
from .plain_url import plain_http_url

TYPE_CHECKING = False  # typing's constant without importing typing at run time (start-up); mypy reads it as True
if TYPE_CHECKING:
    from typing import Any

    from ..config import Settings


class _KvV2:
    def __init__(self, client: LightKvClient) -> None:
        self._client = client

    def read_secret_version(self, path: str, version: int | None = None, mount_point: str = "secret",
                            raise_on_deleted_version: bool = True) -> dict[str, Any]:
        """``GET /v1/<mount>/data/<path>?version=N``: the JSON body of a 200, else FastPathUnavailable
        (a deleted or destroyed version is a 404, so ``raise_on_deleted_version`` holds by construction)."""
        query = f"?version={int(version)}" if version is not None else ""
        return self._client.get(f"/v1/{quote(mount_point)}/data/{quote(path)}{query}")


class _Kv:
    def __init__(self, client: LightKvClient) -> None:
        self.v2 = _KvV2(client)


class _Secrets:
    def __init__(self, client: LightKvClient) -> None:
        self.kv = _Kv(client)


class LightKvClient:
    """The KV v2 read of an hvac client, over :mod:`http.client` (see the module doc). One connection, made
    on the first request and closed after each (a CLI reads one secret)."""

    def __init__(self, url: str, *, token: str, namespace: str | None = None, ca_cert: str | None = None,
                 timeout: float = DEFAULT_TIMEOUT) -> None:
        parts = urlsplit(url.rstrip("/"))
        self.url = url.rstrip("/")  # what hvac's client.url is: messages name the same address
        self._scheme, self._host, self._port = parts.scheme, parts.hostname or "", parts.port
        self._base = parts.path
        self._token = token
        self._namespace = namespace or None
        self._ca_cert = ca_cert or None
        self._timeout = timeout
        self.secrets = _Secrets(self)

    def __repr__(self) -> str:
        return f"LightKvClient({self.url!r})"

    @classmethod
    def from_settings(cls, settings: Settings, environ: Mapping[str, str]) -> LightKvClient | None:
        """A client for ``settings`` in the plain case - an ``http(s)://host[:port][/path]`` address and a
        token, no AppRole secret id - else None (the full path decides, and reports what is wrong)."""
        url, token = settings.vault_addr, settings.vault_token
        if not url or not token or environ.get("TOKENVAULT_VAULT_SECRET_ID"):
            return None
        if plain_http_url(url) is None:
            return None
        return cls(url, token=token, namespace=settings.vault_namespace, ca_cert=settings.vault_ca_cert)

    def _connection(self) -> Any:
        import http.client

        if self._scheme == "http":
            return http.client.HTTPConnection(self._host, self._port, timeout=self._timeout)
        import ssl

        if self._ca_cert and os.path.isdir(self._ca_cert):  # as requests: a directory is a CA path
            context = ssl.create_default_context(capath=self._ca_cert)
        else:
            context = ssl.create_default_context(cafile=self._ca_cert or _default_ca_bundle())
        return http.client.HTTPSConnection(self._host, self._port, timeout=self._timeout, context=context)

    def get(self, api_path: str) -> dict[str, Any]:
        headers = {"X-Vault-Token": self._token, "X-Vault-Request": "true", "Accept": "application/json"}
        if self._namespace:
            headers["X-Vault-Namespace"] = self._namespace
        try:
            conn = self._connection()
            try:
                conn.request("GET", self._base + api_path, headers=headers)
                response = conn.getresponse()
                body = response.read()
                status = response.status
            finally:
                conn.close()
        except (OSError, ValueError) as exc:  # refused, reset, TLS (ssl.SSLError is an OSError), timeout...
            raise FastPathUnavailable(f"Vault request failed: {type(exc).__name__}") from None
        if status != 200:
            raise FastPathUnavailable(f"Vault answered {status}")
        try:
            data = json.loads(body)
        except ValueError:
            raise FastPathUnavailable("Vault answered something other than JSON") from None
        if not isinstance(data, dict):
            raise FastPathUnavailable("Vault answered something other than a JSON object")
        return data


def _default_ca_bundle() -> str:
    """The CA bundle requests verifies with when hvac is given ``verify=True``: ``certifi.where()``.

    That is the ``cacert.pem`` file of certifi's package folder (``importlib.resources.files("certifi")``,
    a plain folder in any ordinary install), found here without importing certifi: on Python 3.11+ its
    ``where()`` goes through :mod:`importlib.resources` (~13 ms: ``typing``, ``zipfile``, ``tempfile``...) and
    registers an exit hook, which keeps the fast path from its quick exit (``cli.main._exit_now``). Where
    the file is not there (a zipped install...) certifi answers itself. ``tests/test_fastread_configs.py``
    checks that both name the same file."""
    from importlib.util import find_spec

    spec = find_spec("certifi")
    if spec is None:  # requests depends on certifi; without it the full path decides
        raise FastPathUnavailable("no certifi CA bundle")
    if spec.origin and spec.submodule_search_locations:
        bundle = os.path.join(os.path.dirname(spec.origin), "cacert.pem")
        if os.path.isfile(bundle):
            return bundle
    import certifi

    return str(certifi.where())


__all__ = ["LightKvClient"]
