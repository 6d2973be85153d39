"""meta_tokenvault.records' @record behaves as @dataclass for what the records use: the same checks on both."""

from __future__ import annotations

import copy
import dataclasses
import pickle
from typing import Any

import pytest

from meta_tokenvault import records
from meta_tokenvault.records import field, record


@record(frozen=True, slots=True)
class FrozenRec:
    """A frozen, slotted record."""

    a: int
    hidden: str = field(repr=False)
    c: tuple[str, ...] = ()
    d: list[int] = field(default_factory=list)


@dataclasses.dataclass(frozen=True, slots=True)
class FrozenDc:
    """The same as a dataclass."""

    a: int
    hidden: str = dataclasses.field(repr=False)
    c: tuple[str, ...] = ()
    d: list[int] = dataclasses.field(default_factory=list)


@record
class MutableRec:
    """A mutable record without slots."""

    a: int = 3
    b: str | None = field(default=None, repr=False)


@dataclasses.dataclass
class MutableDc:
    """The same as a dataclass."""

    a: int = 3
    b: str | None = dataclasses.field(default=None, repr=False)


@record(frozen=True, slots=True)
class OwnMethods:
    """Defines its own __eq__, __hash__ and __repr__ (as Secret does): they are kept."""

    value: str

    def __eq__(self, other: object) -> bool:
        return isinstance(other, OwnMethods) and other.value.lower() == self.value.lower()

    def __hash__(self) -> int:
        return hash(self.value.lower())

    def __repr__(self) -> str:
        return "OwnMethods(…)"


def _shape(x: Any) -> str:
    return repr(x).replace(type(x).__qualname__, "X")


@pytest.mark.parametrize("rec,dc", [(FrozenRec, FrozenDc), (MutableRec, MutableDc)], ids=["frozen", "mutable"])
def test_a_record_is_what_the_dataclass_is(rec: Any, dc: Any) -> None:
    args = (1, "s") if rec is FrozenRec else (5,)
    r, d = rec(*args), dc(*args)
    assert _shape(r) == _shape(d)
    assert r == rec(*args) and r != rec(7, *args[1:]) and (r == d) is False
    assert dataclasses.is_dataclass(r)
    assert [f.name for f in dataclasses.fields(r)] == [f.name for f in dataclasses.fields(d)]
    assert [f.repr for f in dataclasses.fields(r)] == [f.repr for f in dataclasses.fields(d)]
    assert dataclasses.asdict(r) == dataclasses.asdict(d)
    assert _shape(dataclasses.replace(r, a=9)) == _shape(dataclasses.replace(d, a=9))
    assert records.replace(r, a=9) == dataclasses.replace(r, a=9)
    assert records.record_fields(rec) == tuple(f.name for f in dataclasses.fields(d))
    assert rec.__match_args__ == dc.__match_args__
    assert (rec.__hash__ is None) == (dc.__hash__ is None)
    assert copy.copy(r) == r and copy.deepcopy(r) == r
    with pytest.raises(TypeError):
        rec(1, 2, 3, 4, 5)


def test_frozen_records_refuse_assignment_as_dataclasses_do() -> None:
    r, d = FrozenRec(1, "s"), FrozenDc(1, "s")
    assert hash(FrozenRec(1, "s", ("x",), None)) == hash(FrozenDc(1, "s", ("x",), None))  # type: ignore[arg-type]
    for obj in (r, d):
        with pytest.raises(dataclasses.FrozenInstanceError):
            obj.a = 2  # type: ignore[misc]
        with pytest.raises(dataclasses.FrozenInstanceError):
            del obj.a  # type: ignore[misc]
    with pytest.raises(AttributeError):  # (3.11's frozen slotted dataclass raises a TypeError from super())
        r.other = 1  # type: ignore[attr-defined]
    assert FrozenRec.__slots__ == FrozenDc.__slots__  # type: ignore[attr-defined]
    assert pickle.loads(pickle.dumps(r)) == r  # noqa: S301 - our own bytes


def test_defaults_are_not_shared_and_mutable_records_are_unhashable() -> None:
    first, second = FrozenRec(1, "s"), FrozenRec(1, "s")
    first.d.append(1)
    assert second.d == []
    m = MutableRec()
    m.a = 4
    assert m == MutableRec(4) and MutableRec.a == MutableDc.a == 3
    with pytest.raises(TypeError):
        hash(m)


def test_methods_the_class_defines_are_kept() -> None:
    assert OwnMethods("A") == OwnMethods("a") and hash(OwnMethods("A")) == hash(OwnMethods("a"))
    assert repr(OwnMethods("x")) == "OwnMethods(…)"


def test_what_record_does_not_support_is_refused() -> None:
    with pytest.raises(TypeError, match="follows default"):
        @record
        class Bad:
            a: int = 1
            b: int

    with pytest.raises(TypeError, match="__post_init__"):
        @record
        class Post:
            a: int

            def __post_init__(self) -> None: ...

    with pytest.raises(TypeError, match="inheritance"):
        @record
        class Child(FrozenRec):  # type: ignore[misc]
            e: int = 0


def test_the_shared_record_types_are_records() -> None:
    from meta_tokenvault import audit, config, crypto, policy, queries, types

    for cls in (types.Secret, types.TokenRecord, types.Provenance, config.Settings, audit.AuditLink,
                queries.BlobRecord, crypto.SealedSecret, policy.Renewal):
        assert hasattr(cls, "__record_spec__") and dataclasses.is_dataclass(cls), cls
    assert "_value" not in repr(types.Secret("EAAsecretvalue1234"))


def test_init_is_compiled_on_first_use_and_is_then_the_dataclass_one() -> None:
    import inspect

    def fresh() -> Any:
        @record(frozen=True, slots=True)
        class Lazy:
            a: int
            b: str = "x"
            c: list[int] = field(default_factory=list)

        return Lazy

    built = fresh()
    assert isinstance(built.__dict__["__init__"], records._LazyInit)  # nothing compiled yet
    one = built(1)
    assert inspect.isfunction(built.__dict__["__init__"]) and built.__init__.__qualname__.endswith("Lazy.__init__")
    assert (one.a, one.b, one.c) == (1, "x", []) and built(2, c=[3]).c == [3]
    looked_at = fresh()  # a look at the signature compiles it too, and sees the real one
    assert list(inspect.signature(looked_at).parameters) == ["a", "b", "c"]
    assert inspect.isfunction(looked_at.__dict__["__init__"])
    with pytest.raises(TypeError):
        fresh()()
