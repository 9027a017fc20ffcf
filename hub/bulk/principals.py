"""The principal of a bulk job, kept with the job so the worker exports as the caller.

A worker runs long after the request that kicked the job off; it rebuilds the caller's
:class:`~hub.security.principal.Principal` from these fields, so the scopes, label grants,
jurisdiction and patient context that filter a search filter every exported line too.
"""

from __future__ import annotations

from typing import Any

from hub.security.principal import Principal
from hub.security.principal import from_record
from hub.security.principal import to_record


def dump(p: Principal | None) -> dict[str, Any] | None:
    return to_record(p)


def load(data: dict[str, Any] | None) -> Principal | None:
    return from_record(data)


def owner(p: Principal | None) -> str:
    """Who owns a job: only the same client (or user) may poll it and read its files."""
    return "" if p is None else f"{p.kind}:{p.subject}"
