"""Which Patient records are one person: ``Patient.link`` in both directions, transitively.

A person's records are linked by ``Patient.link`` (``replaced-by``/``replaces`` after a merge,
``seealso``/``refer`` for records an archive manager or the matcher tied together). A link
is followed whichever side wrote it: the outgoing links are read from the Patients
themselves, the incoming ones from the ``link`` search index (``sp_reference``), one query
per hop for the whole frontier.
"""

from __future__ import annotations

from collections.abc import Iterable

import orjson
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from hub.storage import schema as s

# A person rarely has more than a handful of records; a runaway chain of links is a data
# problem, not a reason to read the whole table.
MAX_LINKED = 100


def linked_patient_ids(conn: Connection, patient_id: str, limit: int = MAX_LINKED) -> list[str]:
    """``patient_id`` first, then every Patient linked to it (any link type), in id order."""
    return linked_sets(conn, [patient_id], limit)[patient_id]


def linked_sets(
    conn: Connection, patient_ids: Iterable[str], limit: int = MAX_LINKED
) -> dict[str, list[str]]:
    """For each id, the ids of its linked records (itself first)."""
    out: dict[str, list[str]] = {}
    for pid in dict.fromkeys(patient_ids):
        if pid in out:
            continue
        seen = {pid}
        frontier = [pid]
        while frontier and len(seen) < limit:
            found = _neighbours(conn, frontier) - seen
            frontier = sorted(found)[: max(0, limit - len(seen))]
            seen.update(frontier)
        out[pid] = [pid] + sorted(seen - {pid})
    return out


def _neighbours(conn: Connection, ids: list[str]) -> set[str]:
    r = s.resource
    found: set[str] = set()
    rows = conn.execute(
        sa.select(r.c.content).where(
            r.c.res_type == "Patient", r.c.res_id.in_(ids), r.c.deleted == sa.false()
        )
    )
    for (content,) in rows:
        for link in orjson.loads(content).get("link") or ():
            target = _patient_id((link.get("other") or {}).get("reference"))
            if target:
                found.add(target)
    ref = s.sp_reference
    incoming = conn.execute(
        sa.select(r.c.res_id)
        .join(ref, ref.c.resource_pk == r.c.pk)
        .where(
            ref.c.res_type == "Patient",
            ref.c.param == "link",
            ref.c.target_type == "Patient",
            ref.c.target_id.in_(ids),
            r.c.deleted == sa.false(),
        )
    )
    found.update(row[0] for row in incoming)
    return found


def _patient_id(reference: str | None) -> str | None:
    if not reference:
        return None
    parts = reference.split("/")
    # "Patient/123", "Patient/123/_history/2" or an absolute URL ending in either.
    for i in range(len(parts) - 1):
        if parts[i] == "Patient" and parts[i + 1]:
            return parts[i + 1]
    return None


def compartment_resources(
    conn: Connection, patient_ids: Iterable[str], types: Iterable[str] = ()
) -> list[tuple[str, str, str]]:
    """``(type, id, json)`` of the current resources in the Patients' compartments, in pk order."""
    ids = list(patient_ids)
    if not ids:
        return []
    r = s.resource
    c = s.compartment
    sub = sa.select(c.c.resource_pk).where(c.c.comp_type == "Patient", c.c.comp_id.in_(ids))
    types = list(types)
    if types:
        sub = sub.where(c.c.res_type.in_(types))
    stmt = (
        sa.select(r.c.res_type, r.c.res_id, r.c.content)
        .where(r.c.pk.in_(sub), r.c.deleted == sa.false())
        .order_by(r.c.pk)
    )
    return [tuple(row) for row in conn.execute(stmt)]


def compartments_by_patient(
    conn: Connection,
    patient_ids: Iterable[str],
    types: Iterable[str] = (),
    observation_systems: Iterable[str] = (),
) -> dict[str, list[str]]:
    """The JSON of the current resources in each Patient's compartment (one query per 200).

    ``observation_systems``: only Observations coded in one of these systems (through the
    ``code`` index), so that a person's thousand lab results are not read to find two items.
    """
    ids = list(dict.fromkeys(patient_ids))
    out: dict[str, list[str]] = {pid: [] for pid in ids}
    r = s.resource
    c = s.compartment
    types = list(types)
    systems = list(observation_systems)
    for i in range(0, len(ids), 200):
        stmt = (
            sa.select(c.c.comp_id, r.c.content)
            .join(r, r.c.pk == c.c.resource_pk)
            .where(
                c.c.comp_type == "Patient",
                c.c.comp_id.in_(ids[i : i + 200]),
                r.c.deleted == sa.false(),
            )
            .order_by(r.c.pk)
        )
        if types:
            stmt = stmt.where(c.c.res_type.in_(types))
        if systems:
            tok = s.sp_token.alias("tok")
            coded = (
                sa.select(tok.c.resource_pk)
                .where(
                    tok.c.resource_pk == r.c.pk,
                    tok.c.param == "code",
                    tok.c.system.in_(systems),
                )
                .exists()
            )
            stmt = stmt.where(sa.or_(c.c.res_type != "Observation", coded))
        for comp_id, content in conn.execute(stmt):
            out[comp_id].append(content)
    return out
