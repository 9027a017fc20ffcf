"""Search, as the REST layer and bundles call it: the engine plus Bundle assembly."""

from __future__ import annotations

from typing import Any

from hub import outcomes


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
    return searchset_bytes(result, base)
