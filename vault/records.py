"""``@record``: :func:`dataclasses.dataclass` for the record types on the start-up path, without its import cost.

``tokenvault token reveal`` builds a handful of small value types (:mod:`meta_tokenvault.types`, the settings, an
audit link, a sealed blob...). As dataclasses they cost ~15 ms of every command: Python 3.11's
:mod:`dataclasses` imports :mod:`inspect` (and with it ``ast``, ``dis``, ``tokenize``) and compiles five or six
functions per class, each with its own ``exec``. :func:`record` makes the same class - ``__init__`` (positional
or keyword, defaults and ``default_factory``), ``__repr__`` (without ``repr=False`` fields), ``__eq__`` and, when
frozen, ``__hash__`` (each unless the class defines its own), assignment refused with
:class:`dataclasses.FrozenInstanceError`, ``__slots__``, ``__match_args__`` - from one ``exec`` per class.

They stay dataclasses for the rest of the code: :func:`dataclasses.fields`, :func:`dataclasses.replace`,
:func:`dataclasses.asdict` and :func:`dataclasses.is_dataclass` work on them, through a
``__dataclass_fields__`` built (by :mod:`dataclasses` itself) on first use. Only what the records use is
supported: no ``InitVar``, ``ClassVar``, ``kw_only``, ``__post_init__``, inheritance between records or
``order``; :func:`record` raises ``TypeError`` when it meets one. ``__init__`` is compiled when first used
(:class:`_LazyInit`). ``tests/test_records.py`` runs the same checks
on a record and on the equivalent dataclass.
"""

from __future__ import annotations

from collections.abc import Callable

TYPE_CHECKING = False  # typing's constant without importing typing at run time (start-up); mypy reads it as True
if TYPE_CHECKING:
    from typing import Any, TypeVar, dataclass_transform, overload

    _T = TypeVar("_T")
else:  # what typing's decorators do to a function at run time that matters here: nothing
    def overload(func: object) -> object:
        return func

    def dataclass_transform(**_spec: object) -> object:
        return lambda func: func

_MISSING: Any = type("_Missing", (), {"__repr__": lambda self: "<missing>"})()


class _Field:
    """What :func:`field` returns in a class body: a default, a factory, whether ``repr`` shows it."""

    __slots__ = ("default", "default_factory", "repr")

    def __init__(self, default: Any, default_factory: Any, repr: bool) -> None:  # noqa: A002 - dataclasses' name
        self.default, self.default_factory, self.repr = default, default_factory, repr


def field(*, default: Any = _MISSING, default_factory: Callable[[], Any] | Any = _MISSING, repr: bool = True) -> Any:  # noqa: A002
    """:func:`dataclasses.field`'s ``default``, ``default_factory`` and ``repr``, for :func:`record`."""
    if default is not _MISSING and default_factory is not _MISSING:
        raise ValueError("cannot specify both default and default_factory")
    return _Field(default, default_factory, repr)


class _LazyDataclassFields:
    """``__dataclass_fields__`` on first access: the fields of the same class declared as a dataclass."""

    def __get__(self, obj: object, owner: type | None = None) -> dict[str, Any]:
        import dataclasses

        cls = owner if owner is not None else type(obj)
        spec = cls.__record_spec__  # type: ignore[attr-defined]
        namespace: dict[str, Any] = {"__annotations__": {name: ann for name, ann, _f in spec}}
        for name, _ann, f in spec:
            if f.default is not _MISSING or f.default_factory is not _MISSING or not f.repr:
                namespace[name] = dataclasses.field(
                    default=dataclasses.MISSING if f.default is _MISSING else f.default,
                    default_factory=dataclasses.MISSING if f.default_factory is _MISSING else f.default_factory,
                    repr=f.repr)
        twin: Any = dataclasses.dataclass(frozen=cls.__record_frozen__)(  # type: ignore[attr-defined]
            type(cls.__name__, (), {**namespace, "__doc__": cls.__doc__, "__module__": cls.__module__}))
        fields: dict[str, Any] = twin.__dataclass_fields__
        type.__setattr__(cls, "__dataclass_fields__", fields)
        type.__setattr__(cls, "__dataclass_params__", twin.__dataclass_params__)
        return fields


class _LazyInit:
    """A record's ``__init__``, compiled on first use - the first instance, or a look at ``cls.__init__`` (e.g.
    ``inspect.signature``) - which then replaces this descriptor on the class: a process compiles the
    records it builds only (``token reveal`` imports 19 and builds about half; ~0.1 ms each)."""

    __slots__ = ("globs", "owner", "source")

    def __init__(self, source: str, globs: dict[str, Any]) -> None:
        self.source, self.globs = source, globs
        self.owner: type | None = None

    def __set_name__(self, owner: type, name: str) -> None:
        self.owner = owner

    def __get__(self, obj: object, owner: type | None = None) -> Any:
        cls = self.owner if self.owner is not None else owner
        assert cls is not None
        made: dict[str, Any] = {}
        exec(self.source, self.globs, made)  # noqa: S102 - our own source, as dataclasses does
        init = made["__init__"]
        init.__qualname__ = f"{cls.__qualname__}.__init__"
        type.__setattr__(cls, "__init__", init)
        return init.__get__(obj, owner)


def _frozen_setattr(self: Any, name: str, value: Any) -> None:
    from dataclasses import FrozenInstanceError

    raise FrozenInstanceError(f"cannot assign to field {name!r}")


def _frozen_delattr(self: Any, name: str) -> None:
    from dataclasses import FrozenInstanceError

    raise FrozenInstanceError(f"cannot delete field {name!r}")


def _getstate(self: Any) -> list[Any]:
    return [getattr(self, name) for name in self.__slots__]


def _setstate(self: Any, state: list[Any]) -> None:
    for name, value in zip(self.__slots__, state, strict=True):
        object.__setattr__(self, name, value)  # frozen: as dataclasses restores them


def _values(names: tuple[str, ...]) -> Callable[[Any], tuple[Any, ...]]:
    """The fields' values as a tuple (what dataclasses compares and hashes), by C attribute lookups."""
    from operator import attrgetter

    if len(names) > 1:
        return attrgetter(*names)
    if names:
        one = attrgetter(names[0])
        return lambda obj: (one(obj),)
    return lambda obj: ()


def _repr(shown: tuple[str, ...]) -> Callable[[Any], str]:
    def __repr__(self: Any) -> str:
        return f"{self.__class__.__qualname__}({', '.join(f'{n}={getattr(self, n)!r}' for n in shown)})"

    return __repr__


def _eq(values: Callable[[Any], tuple[Any, ...]]) -> Callable[[Any, object], Any]:
    def __eq__(self: Any, other: object) -> Any:
        if other.__class__ is self.__class__:
            return values(self) == values(other)
        return NotImplemented

    return __eq__


def _hash(values: Callable[[Any], tuple[Any, ...]]) -> Callable[[Any], int]:
    def __hash__(self: Any) -> int:
        return hash(values(self))

    return __hash__


@overload
def record(cls: type[_T], /) -> type[_T]: ...
@overload
def record(*, frozen: bool = False, slots: bool = False) -> Callable[[type[_T]], type[_T]]: ...  # noqa: F811


@dataclass_transform(field_specifiers=(field,))
def record(cls: type[_T] | None = None, /, *, frozen: bool = False, slots: bool = False) -> Any:  # noqa: F811
    """``@dataclass(frozen=..., slots=...)`` for the records of the start-up path (see the module doc)."""
    if cls is None:
        return lambda c: _make(c, frozen, slots)
    return _make(cls, frozen, slots)


def _make(cls: type[_T], frozen: bool, slots: bool) -> type[_T]:
    own = cls.__dict__
    if any(hasattr(base, "__record_spec__") or hasattr(base, "__dataclass_fields__") for base in cls.__mro__[1:]):
        raise TypeError(f"{cls.__name__}: @record does not support inheritance between records")
    if "__post_init__" in own:
        raise TypeError(f"{cls.__name__}: @record does not support __post_init__")
    spec: list[tuple[str, Any, _Field]] = []
    for name, ann in own.get("__annotations__", {}).items():
        text = ann if isinstance(ann, str) else getattr(ann, "__name__", "")
        if text.startswith(("ClassVar", "InitVar", "KW_ONLY", "typing.ClassVar", "dataclasses.")):
            raise TypeError(f"{cls.__name__}.{name}: @record does not support {text}")
        value = own.get(name, _MISSING)
        spec.append((name, ann, value if isinstance(value, _Field) else _Field(value, _MISSING, True)))
    names = [name for name, _ann, _f in spec]
    globs: dict[str, Any] = {"_MISSING": _MISSING, "_set": object.__setattr__}
    params, body = [], []
    seen_default = False
    for name, _ann, f in spec:
        if f.default_factory is not _MISSING:
            globs[f"_factory_{name}"] = f.default_factory
            params.append(f"{name}=_MISSING")
            value = f"_factory_{name}() if {name} is _MISSING else {name}"
            seen_default = True
        elif f.default is not _MISSING:
            globs[f"_default_{name}"] = f.default
            params.append(f"{name}=_default_{name}")
            value = name
            seen_default = True
        else:
            if seen_default:
                raise TypeError(f"non-default argument {name!r} follows default argument")
            params.append(name)
            value = name
        body.append(f"    _set(self, {name!r}, {value})" if frozen else f"    self.{name} = {value}")
    shown = tuple(name for name, _ann, f in spec if f.repr)
    # __init__ from our own source, as dataclasses does, compiled on first use; the others need no compiling
    made: dict[str, Any] = {"__init__": _LazyInit(
        "\n".join([f"def __init__(self, {', '.join(params)}) -> None:", *(body or ["    pass"])]), globs)}
    values = _values(tuple(names))
    made["__repr__"] = _repr(shown)
    made["__eq__"] = _eq(values)
    made["__hash__"] = _hash(values)
    namespace = dict(own)
    for name, _ann, f in spec:
        namespace.pop(name, None)  # defaults live in __init__ (and slots cannot have class attributes)
        if not slots and f.default is not _MISSING:
            namespace[name] = f.default  # as dataclasses leaves a plain default on the class
    namespace.pop("__dict__", None)
    namespace.pop("__weakref__", None)
    methods = {"__init__": made["__init__"], "__repr__": made["__repr__"], "__eq__": made["__eq__"]}
    for name, function in methods.items():
        if name not in own:
            if name != "__init__":  # _LazyInit names its function when it compiles it
                function.__qualname__ = f"{cls.__qualname__}.{name}"
            namespace[name] = function
    if not ("__hash__" in own and not (own["__hash__"] is None and "__eq__" in own)):
        # dataclass(eq=True): frozen gets a field hash, mutable is unhashable (unless the class defines one)
        namespace["__hash__"] = made["__hash__"] if frozen else None
    if frozen:
        namespace["__setattr__"], namespace["__delattr__"] = _frozen_setattr, _frozen_delattr
    if slots:
        namespace["__slots__"] = tuple(names)
        if frozen:
            namespace.setdefault("__getstate__", _getstate)
            namespace.setdefault("__setstate__", _setstate)
    namespace["__match_args__"] = tuple(names)
    namespace["__record_spec__"] = tuple(spec)
    namespace["__record_frozen__"] = frozen
    namespace["__dataclass_fields__"] = _LazyDataclassFields()
    meta: Any = type(cls)
    new: type[_T] = meta(cls.__name__, cls.__bases__, namespace)
    new.__qualname__ = cls.__qualname__
    return new


def record_fields(cls_or_obj: Any) -> tuple[str, ...]:
    """The field names of a record, in order (what ``[f.name for f in dataclasses.fields(x)]`` gives), without
    importing :mod:`dataclasses`."""
    return tuple(name for name, _ann, _f in cls_or_obj.__record_spec__)


def replace(obj: _T, /, **changes: Any) -> _T:
    """:func:`dataclasses.replace` for a record, without importing :mod:`dataclasses`."""
    for name in record_fields(obj):
        if name not in changes:
            changes[name] = getattr(obj, name)
    return type(obj)(**changes)


__all__ = ["field", "record", "record_fields", "replace"]
