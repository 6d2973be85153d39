"""The knobs: plain attributes of the simulator, each playing one variant of a point the reference marks
unconfirmed (docs/simulator.md). Here: their names, how a JSON value is checked, and reading/setting them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .faults import check_kind

SEVEN_DAY_ERRORS = ("code100", "code200", "code1")


def _bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"expected true/false, got {value!r}")
    return value


def _number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise ValueError(f"expected a number >= 0, got {value!r}")
    return float(value)


def _choice(*choices: Any) -> Callable[[Any], Any]:
    def check(value: Any) -> Any:
        if value not in choices:
            raise ValueError(f"expected one of {choices}, got {value!r}")
        return value
    return check


def _rate_limit(value: Any) -> tuple[int, float] | None:
    if value is None:
        return None
    if not isinstance(value, list | tuple) or len(value) != 2 or int(value[0]) < 1 or float(value[1]) <= 0:
        raise ValueError(f"rate_limit must be null or [calls, per_seconds], got {value!r}")
    return int(value[0]), float(value[1])


def _fault_kind(value: Any) -> str:
    return check_kind(str(value))


def _int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"expected an integer >= 0, got {value!r}")
    return value


def _optional_str(value: Any) -> str | None:
    if value is not None and not isinstance(value, str):
        raise ValueError(f"expected a string or null, got {value!r}")
    return value


def _fault_rate(value: Any) -> float:
    rate = _number(value)
    if rate > 1:
        raise ValueError("fault_rate is a probability between 0 and 1")
    return rate


KNOBS: dict[str, Callable[[Any], Any]] = {
    "created_time_in_list": _bool,
    "created_time_in_list_error": _bool,
    "created_time_on_node": _bool,
    "seven_day_rule_on_mint": _bool,
    "seven_day_rule_on_create": _bool,
    "seven_day_error": _choice(*SEVEN_DAY_ERRORS),
    "latency": _number,
    "rate_limit": _rate_limit,
    "fault_rate": _fault_rate,
    "fault_kind": _fault_kind,
    "fault_regain_minutes": _int,
    "require_business_management": _bool,
    "target_ids_when_unrestricted": _bool,
    "debug_token_type": _optional_str,
    "never_expires_as": _choice("zero", "absent"),
    "revoke_via_post": _bool,
    "revoke_success_value": _choice("true", True),
}


def knob_values(sim: object) -> dict[str, Any]:
    return {name: getattr(sim, name) for name in KNOBS}


def knobs_json(sim: object) -> dict[str, Any]:
    """Every knob's value as JSON (tuples as lists)."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in knob_values(sim).items()}


def set_knob(sim: object, name: str, value: Any) -> None:
    """Set a knob from JSON, checking its type (used by ``POST /_sim/knobs`` and by ``load``)."""
    if name not in KNOBS:
        raise ValueError(f"unknown knob {name!r}; one of {sorted(KNOBS)}")
    setattr(sim, name, KNOBS[name](value))
