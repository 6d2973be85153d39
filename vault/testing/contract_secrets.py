"""The SecretBackend contract suite: every backend (local, Vault KV v2, fakes) runs these tests.

Use it by subclassing and supplying a ``backend`` fixture::

    class TestVaultBackend(SecretBackendContract):
        @pytest.fixture
        def backend(self, openbao, openbao_scope):
            return HashicorpBackend(openbao.client(), prefix=openbao_scope.prefix)

The fixture must give each test an empty namespace (a fresh store, a unique prefix...). Refs
come from :meth:`SecretBackendContract.new_ref` (unique names and owner ids); versions are put
in order 1, 2, 3 as the service does. Override :meth:`visible_metadata` if the backend shows
metadata to its own tools, so the suite can check the value never lands there.

What is checked (the docstring of :class:`meta_tokenvault.ports.secrets.SecretBackend`): round trip,
versions independent, putting an existing ref is refused and leaves the value intact, missing
refs raise NotFound, destroy is idempotent, metadata and messages never contain the value,
unicode and long values survive, kinds are kept apart.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Mapping

import pytest

from ..errors import AlreadyExists, NotFound
from ..ports.secrets import SecretBackend
from ..types import Secret, SecretKind, SecretRef

_owner_ids = itertools.count(1_000_000)

TOKEN_A = "EAAContractTokenA" + "x1" * 40
TOKEN_B = "EAAContractTokenB" + "y2" * 40
PROVENANCE = {"business": "acme", "business_id": "1234567890", "system_user_id": "61550000000001",
              "app_id": "987654321", "scopes": "whatsapp_business_messaging,whatsapp_business_management",
              "fingerprint": "0f1e2d3c4b5a69788796a5b4c3d2e1f0"}

ODD_VALUES = [
    pytest.param("tök€n-🔑-ünïcødé-" + "ß" * 20, id="unicode"),
    pytest.param("EAA" + "Zz9" * 2000, id="long-6k"),
    pytest.param("line1\nline2\ttab \"quoted\" \\backslash {json}", id="control-and-quotes"),
]


class SecretBackendContract:
    """Base class of contract tests; subclasses provide the ``backend`` fixture."""

    @pytest.fixture
    def backend(self) -> SecretBackend:  # pragma: no cover - always overridden
        raise NotImplementedError("subclasses provide a `backend` fixture")

    # ------------------------------------------------------------------ hooks
    def new_ref(self, kind: SecretKind = SecretKind.TOKEN, version: int = 1, *, name: str | None = None,
                owner_id: int | None = None) -> SecretRef:
        """A ref no other test uses (override if the backend needs owners to exist first)."""
        return SecretRef(kind, owner_id if owner_id is not None else next(_owner_ids), version,
                         name or f"contract-{uuid.uuid4().hex[:12]}")

    def visible_metadata(self, backend: SecretBackend, ref: SecretRef) -> Mapping[str, str]:
        """What the backend shows its own tools as ``ref``'s metadata; {} if it shows none."""
        return {}

    @staticmethod
    def next_version(ref: SecretRef) -> SecretRef:
        return SecretRef(ref.kind, ref.owner_id, ref.version + 1, ref.name)

    # ------------------------------------------------------------------ tests
    def test_is_a_secret_backend(self, backend: SecretBackend) -> None:
        assert isinstance(backend, SecretBackend)
        assert isinstance(backend.name, str) and backend.name
        availability = backend.availability()
        assert availability.ok, availability.reason

    def test_round_trip(self, backend: SecretBackend) -> None:
        ref = self.new_ref()
        assert not backend.exists(ref)
        backend.put(ref, Secret(TOKEN_A), PROVENANCE)
        assert backend.exists(ref)
        assert backend.get(ref).reveal() == TOKEN_A

    def test_versions_are_independent(self, backend: SecretBackend) -> None:
        v1 = self.new_ref()
        v2 = self.next_version(v1)
        backend.put(v1, Secret(TOKEN_A), PROVENANCE)
        backend.put(v2, Secret(TOKEN_B), PROVENANCE)
        assert backend.get(v1).reveal() == TOKEN_A
        assert backend.get(v2).reveal() == TOKEN_B
        backend.destroy(v1)
        assert not backend.exists(v1)
        assert backend.get(v2).reveal() == TOKEN_B
        with pytest.raises(NotFound):
            backend.get(v1)

    def test_put_existing_is_refused_and_value_intact(self, backend: SecretBackend) -> None:
        ref = self.new_ref()
        backend.put(ref, Secret(TOKEN_A), PROVENANCE)
        with pytest.raises(AlreadyExists) as info:
            backend.put(ref, Secret(TOKEN_B), PROVENANCE)
        assert TOKEN_B not in str(info.value) and TOKEN_A not in str(info.value)
        assert TOKEN_B not in info.value.hint
        assert backend.get(ref).reveal() == TOKEN_A

    def test_put_existing_older_version_is_refused(self, backend: SecretBackend) -> None:
        v1 = self.new_ref()
        backend.put(v1, Secret(TOKEN_A), PROVENANCE)
        backend.put(self.next_version(v1), Secret(TOKEN_B), PROVENANCE)
        with pytest.raises(AlreadyExists):
            backend.put(v1, Secret("EAAsomethingElseEntirely0000"), PROVENANCE)
        assert backend.get(v1).reveal() == TOKEN_A
        assert backend.get(self.next_version(v1)).reveal() == TOKEN_B

    def test_get_missing_raises_not_found(self, backend: SecretBackend) -> None:
        ref = self.new_ref()
        with pytest.raises(NotFound):
            backend.get(ref)
        assert not backend.exists(ref)
        backend.put(ref, Secret(TOKEN_A), PROVENANCE)
        later = self.next_version(ref)
        with pytest.raises(NotFound):
            backend.get(later)
        assert not backend.exists(later)

    def test_destroy_is_idempotent(self, backend: SecretBackend) -> None:
        never = self.new_ref()
        backend.destroy(never)  # never stored: nothing to do, no error
        ref = self.new_ref()
        backend.put(ref, Secret(TOKEN_A), PROVENANCE)
        backend.destroy(ref)
        backend.destroy(ref)
        assert not backend.exists(ref)
        with pytest.raises(NotFound):
            backend.get(ref)

    def test_metadata_never_contains_the_value(self, backend: SecretBackend) -> None:
        ref = self.new_ref()
        backend.put(ref, Secret(TOKEN_A), PROVENANCE)
        shown = self.visible_metadata(backend, ref)
        for key, value in shown.items():
            assert TOKEN_A not in key and TOKEN_A not in value
            assert TOKEN_A[-12:] not in value
        for key, value in PROVENANCE.items():  # what the backend shows is the provenance it was given
            if shown:
                assert shown.get(key) == value
        assert TOKEN_A not in repr(backend)
        assert TOKEN_A not in repr(backend.get(ref))

    @pytest.mark.parametrize("value", ODD_VALUES)
    def test_unicode_and_long_values(self, backend: SecretBackend, value: str) -> None:
        ref = self.new_ref()
        backend.put(ref, Secret(value), PROVENANCE)
        assert backend.get(ref).reveal() == value

    def test_kinds_are_separated(self, backend: SecretBackend) -> None:
        owner, name = next(_owner_ids), f"contract-{uuid.uuid4().hex[:12]}"
        values = {kind: f"EAA-{kind.value}-" + uuid.uuid4().hex for kind in SecretKind}
        refs = {kind: self.new_ref(kind, name=name, owner_id=owner) for kind in SecretKind}
        for kind in SecretKind:
            backend.put(refs[kind], Secret(values[kind]), PROVENANCE)
        for kind in SecretKind:
            assert backend.get(refs[kind]).reveal() == values[kind]
        backend.destroy(refs[SecretKind.TOKEN])
        assert backend.get(refs[SecretKind.APP_SECRET]).reveal() == values[SecretKind.APP_SECRET]
        assert backend.get(refs[SecretKind.ADMIN_TOKEN]).reveal() == values[SecretKind.ADMIN_TOKEN]

    def test_records_are_separated(self, backend: SecretBackend) -> None:
        a, b = self.new_ref(), self.new_ref()
        backend.put(a, Secret(TOKEN_A), PROVENANCE)
        backend.put(b, Secret(TOKEN_B), PROVENANCE)
        assert backend.get(a).reveal() == TOKEN_A
        assert backend.get(b).reveal() == TOKEN_B


__all__ = ["ODD_VALUES", "PROVENANCE", "SecretBackendContract"]
