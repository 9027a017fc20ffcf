"""Search, as the REST layer and bundles call it: the engine plus Bundle assembly.

Authorization happens here for every search path (type, system, compartment,
bundle GET entries): the principal needs ``s`` on the searched type, and the
matches and ``_include``/``_revinclude`` results it may not read (scope or
security label) are left out of the Bundle.
"""

from __future__ import annotations

from contextlib import nullcontext
from typing import Any

from hub import outcomes
from hub.fhir.limits import check_params
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
    check_params(params)
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

    # What the caller may not see (labels without a grant, outside the user's
    # jurisdiction or patient context) never leaves the database, so totals and
    # pages count only what the caller may see, and chains and _has match nothing
    # through it (hub.search.access).
    access = guard.search_access(principal)
    # A request's own search needs no transaction around it (no BEGIN/ROLLBACK round trips
    # on PostgreSQL); one inside a bundle reads in the bundle's.
    with nullcontext(conn) if conn is not None else service.repo.standalone_reads() as c:
        if _asks_linked(params):
            params = expand_linked(c, params)
        result = engine.search(
            c,
            res_type,
            params,
            compartment=compartment,
            strict=strict,
            base_url=base,
            access=access,
        )
    if principal is not None:
        result.entries = guard.visible_entries(result.entries, principal)
        info = request_info()
        if info is not None:
            refs = info.setdefault("entities", [])
            refs.extend(f"{e.res_type}/{e.res_id}" for e in result.entries[:MAX_AUDITED_REFS])
    return searchset_bytes(result, base)


def _asks_linked(params: list[tuple[str, str]]) -> bool:
    return any(k == "_linked" or k.endswith(":linked") for k, _ in params)


def expand_linked(conn: Any, params: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """Follow ``Patient.link`` in patient references, before the engine sees the search.

    ``subject:linked=Patient/1`` (any reference parameter, the ``:linked`` modifier) becomes
    ``subject=Patient/1,Patient/7,...``: every Patient record linked to ``Patient/1``
    (merged, replaced, see-also; :mod:`hub.lifetime.links`). ``_linked=true`` does the same
    for every parameter whose value names a Patient (``Patient/1``, or a bare id for
    ``patient``). The SQL the engine generates is unchanged: this is an OR of references.
    """
    from hub.lifetime.links import linked_patient_ids

    everywhere = False
    kept: list[tuple[str, str]] = []
    for key, value in params:
        if key == "_linked":
            if value not in ("true", "false"):
                raise outcomes.bad_request(f"_linked is true or false, not {value!r}", "_linked")
            everywhere = everywhere or value == "true"
        else:
            kept.append((key, value))
    out = []
    for key, value in kept:
        name, _, modifier = key.partition(":")
        if modifier == "linked":
            out.append((name, _expand(conn, value, name, linked_patient_ids, strict=True)))
        elif everywhere and not name.startswith("_") and modifier in ("", "Patient"):
            out.append((key, _expand(conn, value, name, linked_patient_ids, strict=False)))
        else:
            out.append((key, value))
    return out


def _expand(conn, value: str, name: str, linked, strict: bool) -> str:
    refs: list[str] = []
    for part in value.split(","):
        text = part.strip()
        if text.startswith("Patient/") and text.count("/") == 1:
            pid = text.split("/", 1)[1]
        elif "/" not in text and text and name == "patient":
            pid = text
        elif strict:
            raise outcomes.bad_request(
                f"{name}:linked takes Patient references (Patient/123), not {text!r}",
                f"{name}:linked",
            )
        else:
            refs.append(part)
            continue
        refs.extend(f"Patient/{i}" for i in linked(conn, pid))
    return ",".join(dict.fromkeys(refs))
