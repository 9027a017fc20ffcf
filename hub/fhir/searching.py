"""Search, as the REST layer and bundles call it: the engine plus Bundle assembly.

Authorization happens here for every search path (type, system, compartment,
bundle GET entries): the principal needs ``s`` on the searched type, and the
matches and ``_include``/``_revinclude`` results it may not read (scope or
security label) are left out of the Bundle.
"""

from __future__ import annotations

from typing import Any

from hub import outcomes
from hub.security import guard
from hub.security.principal import current
from hub.security.principal import request_info

MAX_AUDITED_REFS = 200


def search_bytes(
    service: Any,
    res_type: str | None,
    params: list[tuple[str, str]],
    base: str,
    compartment: tuple[str, str] | None = None,
    strict: bool = False,
    conn: Any = None,
) -> bytes:
    """A ``searchset`` Bundle as JSON bytes (stored resources spliced in unparsed)."""
    engine = service.search_engine
    principal = current()
    if principal is not None and principal.kind == "client":
        # Query plans are internals: for the web pages' engineers, not for site systems.
        params = [(k, v) for k, v in params if k != "_explain"]
    if res_type is not None:
        guard.require(res_type, "s")
    if compartment is not None:
        guard.require(compartment[0], "r", "searching the compartment of")
    if engine is None:
        raise outcomes.error(501, "not-supported", "Search is not available on this server")
    from hub.search.bundle import searchset_bytes

    if conn is not None:
        result = engine.search(
            conn, res_type, params, compartment=compartment, strict=strict, base_url=base
        )
    else:
        with service.repo.reading() as c:
            result = engine.search(
                c, res_type, params, compartment=compartment, strict=strict, base_url=base
            )
    if principal is not None:
        result.entries = guard.visible_entries(result.entries, principal)
        info = request_info()
        if info is not None:
            refs = info.setdefault("entities", [])
            refs.extend(f"{e[0]}/{e[1]}" for e in result.entries[:MAX_AUDITED_REFS])
    return searchset_bytes(result, base)
