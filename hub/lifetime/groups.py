"""Household (一户一档) and village (一村一卷) Groups, kept in step with the Patients.

The grouping itself is pure (:mod:`hub.identity.households`): a village is the first 12 digits
of the health-record number, a household the household number the creating system assigned.
Here the Groups are stored: :func:`refresh` recomputes only the Groups a set of changed
Patients belonged to or now belongs to (index look-ups, one read per Group), and
:func:`rebuild` recomputes all of them (``hub groups rebuild``). A Group left without members
is deleted. Retired records (``active: false``, merged away) are not members.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import orjson
import sqlalchemy as sa

from hub import codesystems as cs
from hub.identity import HEALTH_RECORD_SYSTEM
from hub.identity import households
from hub.identity.ids import stable_id
from hub.search.engine import _like_escape
from hub.storage import schema as s
from hub.storage.repository import Writer

KINDS = ("household", "village")


def refresh(writer: Writer, patient_ids: Iterable[str]) -> int:
    """Recompute the Groups of these Patients (old and new); returns how many were written."""
    writer.flush()
    keys: set[tuple[str, str]] = set()
    ids = list(dict.fromkeys(patient_ids))
    for pid in ids:
        stored = writer.current("Patient", pid)
        if stored is not None and not stored.deleted:
            keys.update(_keys_of(stored.resource()))
    keys.update(_groups_with_members(writer.conn, ids))
    written = 0
    for kind, key in sorted(keys):
        members = _patients_for(writer.conn, kind, key)
        made = (
            households.household_groups(members)
            if kind == "household"
            else households.village_groups(members)
        )
        made = [g for g in made if g["identifier"][0]["value"] == key]
        if made:
            _, _ = writer.update(made[0], made[0]["id"])
            written += 1
        elif writer.delete("Group", stable_id(kind, key)) is not None:
            written += 1
    return written


def rebuild(writer: Writer, batch: int = 2000) -> dict[str, int]:
    """Every household and village Group from every Patient; stale Groups are deleted."""
    r = s.resource
    patients: list[dict[str, Any]] = []
    stmt = sa.select(r.c.content).where(r.c.res_type == "Patient", r.c.deleted == sa.false())
    for (content,) in writer.conn.execute(stmt.execution_options(yield_per=batch)):
        patients.append(orjson.loads(content))
    groups = households.household_groups(patients) + households.village_groups(patients)
    wanted = {g["id"] for g in groups}
    counts = {"household": 0, "village": 0, "deleted": 0}
    existing = [
        row[0]
        for row in writer.conn.execute(
            sa.select(r.c.res_id).where(
                r.c.res_type == "Group",
                r.c.deleted == sa.false(),
                r.c.pk.in_(_kind_pks(KINDS)),
            )
        )
    ]
    for group in groups:
        writer.update(group, group["id"])
        counts[group["code"]["coding"][0]["code"]] += 1
    for gid in existing:
        if gid not in wanted and writer.delete("Group", gid) is not None:
            counts["deleted"] += 1
    return counts


def _keys_of(patient: dict[str, Any]) -> set[tuple[str, str]]:
    keys = set()
    household = households.household_number_of(patient)
    if household:
        keys.add(("household", household))
    number = households.record_number_of(patient)
    if number:
        keys.add(("village", number.village_code))
    return keys


def _kind_pks(kinds: Iterable[str]):
    t = s.sp_token
    return sa.select(t.c.resource_pk).where(
        t.c.res_type == "Group",
        t.c.param == "code",
        t.c.system == cs.GROUP_KIND,
        t.c.code.in_(list(kinds)),
    )


def _groups_with_members(conn, patient_ids: list[str]) -> set[tuple[str, str]]:
    """(kind, key) of the household and village Groups listing any of these Patients."""
    if not patient_ids:
        return set()
    r = s.resource
    ref = s.sp_reference
    stmt = sa.select(r.c.content).where(
        r.c.pk.in_(
            sa.select(ref.c.resource_pk).where(
                ref.c.res_type == "Group",
                ref.c.param == "member",
                ref.c.target_type == "Patient",
                ref.c.target_id.in_(patient_ids),
            )
        ),
        r.c.deleted == sa.false(),
    )
    out = set()
    for (content,) in conn.execute(stmt):
        group = orjson.loads(content)
        for coding in (group.get("code") or {}).get("coding") or ():
            if coding.get("system") == cs.GROUP_KIND and coding.get("code") in KINDS:
                out.add((coding["code"], group["identifier"][0]["value"]))
    return out


def _patients_for(conn, kind: str, key: str) -> list[dict[str, Any]]:
    t = s.sp_token
    r = s.resource
    if kind == "household":
        match = sa.and_(t.c.system == cs.HOUSEHOLD_NUMBER, t.c.code == key)
    else:
        match = sa.and_(
            t.c.system == HEALTH_RECORD_SYSTEM,
            t.c.code.like(_like_escape(key) + "%", escape="\\"),
        )
    stmt = sa.select(r.c.content).where(
        r.c.pk.in_(
            sa.select(t.c.resource_pk).where(
                t.c.res_type == "Patient", t.c.param == "identifier", match
            )
        ),
        r.c.deleted == sa.false(),
    )
    return [orjson.loads(c) for (c,) in conn.execute(stmt)]
