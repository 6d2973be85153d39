"""The one signal of the fast read path (:mod:`meta_tokenvault.fastread`): "this cannot finish here, run the full path".

A leaf module (no imports), so that the light adapters the fast path uses (a SQL driver, the KV v2 reader of
:mod:`meta_tokenvault.adapters.hashicorp_light`) can raise it without importing :mod:`meta_tokenvault.fastread`.
"""

from __future__ import annotations


class FastPathUnavailable(Exception):  # noqa: N818 - a signal to the caller, never shown to anyone
    """The fast path cannot finish (a database error, anything but a plain answer from Vault): run the full
    path instead, which reports the problem the usual way. Raised only before anything was written."""


__all__ = ["FastPathUnavailable"]
