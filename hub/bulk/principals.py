"""The principal of a bulk job, kept with the job so the worker exports as the caller.

A worker runs long after the request that kicked the job off; it rebuilds the caller's
:class:`~hub.security.principal.Principal` from these fields, so the scopes, label grants,
jurisdiction and patient context that filter a search filter every exported line too.
"""

from __future__ import annotations

from typing import Any

from hub.security.principal import Principal
from hub.security.scopes import compile_scopes


def dump(p: Principal | None) -> dict[str, Any] | None:
    if p is None:
        return None
    return {
        "subject": p.subject,
        "kind": p.kind,
        "scopes": p.scopes.text,
        "grants": sorted(p.grants),
        "site": p.site,
        "purpose": p.purpose,
        "patient": p.patient,
        "roles": list(p.roles),
        "jurisdiction": p.jurisdiction,
        "client_id": p.client_id,
    }


def load(data: dict[str, Any] | None) -> Principal | None:
    if not data:
        return None
    return Principal(
        subject=data["subject"],
        kind=data["kind"],
        scopes=compile_scopes(data.get("scopes") or ""),
        grants=frozenset(data.get("grants") or ()),
        site=data.get("site"),
        purpose=data.get("purpose") or "TREAT",
        patient=data.get("patient"),
        roles=tuple(data.get("roles") or ()),
        jurisdiction=data.get("jurisdiction"),
        client_id=data.get("client_id"),
    )


def owner(p: Principal | None) -> str:
    """Who owns a job: only the same client (or user) may poll it and read its files."""
    return "" if p is None else f"{p.kind}:{p.subject}"
