"""Tokens that die outside tokenvault: Meta invalidates a token out of band (GitHub secret scanning found it in
public code, an admin revoked it in Business Settings, the session was reset). Every later use of the token
answers error 190 with the invalidation's subcode, and debug_token says ``is_valid: false`` with that error
(see docs/meta-graph-api.md §13). Steered by :meth:`~.state.SimState.invalidate` and ``POST /_sim/invalidate``.
"""

from __future__ import annotations

from .wire import GraphFailure, revoked_token

#: subcode -> Meta's message (190 subcodes seen: §13; 463 "expired" is the clock's, not an invalidation)
MESSAGES: dict[int, str] = {
    458: "Error validating access token: The user has not authorized application.",
    459: "Error validating access token: The user is enrolled in a blocking, logged-in checkpoint.",
    460: "Error validating access token: The session has been invalidated because the user changed their password "
         "or Facebook has changed the session for security reasons.",
    464: "Error validating access token: Sessions for the user are not allowed because the user is not a confirmed "
         "user.",
    466: "Error validating access token: The session was invalidated through an API call.",
    467: "Error validating access token: The session was invalidated explicitly using an API call.",
}
DEFAULT_SUBCODE = 460


def check_subcode(subcode: int) -> int:
    if subcode not in MESSAGES:
        raise ValueError(f"subcode must be one of {sorted(MESSAGES)}, not {subcode!r}")
    return subcode


def invalidated_failure(subcode: int | None) -> GraphFailure:
    """What Meta answers for a token it invalidated (``subcode`` None: revoked through ``/oauth/revoke``)."""
    if subcode is None:
        return revoked_token()
    return GraphFailure(190, MESSAGES[subcode], subcode=subcode)


__all__ = ["DEFAULT_SUBCODE", "MESSAGES", "check_subcode", "invalidated_failure"]
