"""Reports read from the database: the veterans bureau report (``hub export veterans-report``).

The rows are built by the registry adapter's pure
:func:`fhirhub_plugins.va_registry.report.build_veterans_report`; this module finds the
beneficiaries (a ``veteran-entitlement`` Observation, through the code index) and feeds it
their records in batches: Patient, entitlement, admissions with their diagnoses and
hospitals, five-colour Flags. Memory stays bounded by the batch, not the county.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import TYPE_CHECKING
from typing import Any

import orjson
import sqlalchemy as sa

from hub import codesystems as cs
from hub.lifetime.links import compartment_resources
from hub.storage import schema as s

if TYPE_CHECKING:
    from hub.kernel import Hub

BATCH = 200
_TYPES = ("Patient", "Observation", "Encounter", "Flag", "Condition")


def veteran_ids(conn: Any) -> list[str]:
    """Patients with a veterans-registry entitlement (ended ones too: the report decides)."""
    t = s.sp_token
    r = s.resource
    stmt = (
        sa.select(r.c.patient_id)
        .where(
            r.c.pk.in_(
                sa.select(t.c.resource_pk).where(
                    t.c.res_type == "Observation",
                    t.c.param == "code",
                    t.c.system == cs.VETERAN_STATUS,
                    t.c.code == "veteran-entitlement",
                )
            ),
            r.c.deleted == sa.false(),
            r.c.patient_id.is_not(None),
        )
        .distinct()
    )
    return sorted(row[0] for row in conn.execute(stmt))


def veterans_report(
    the_hub: Hub,
    since: dt.date,
    until: dt.date,
    *,
    unmask: bool = False,
    progress: Callable[[int], None] | None = None,
) -> list[dict[str, str]]:
    """The report rows for ``since <= date <= until``; ``progress(n)`` after each batch."""
    from fhirhub_plugins.va_registry.report import build_veterans_report

    rows: list[dict[str, str]] = []
    with the_hub.repo.reading() as conn:
        ids = veteran_ids(conn)
        for i in range(0, len(ids), BATCH):
            batch = ids[i : i + BATCH]
            resources = [orjson.loads(c) for _, _, c in compartment_resources(conn, batch, _TYPES)]
            orgs = {
                ref["reference"]
                for res in resources
                if res.get("resourceType") == "Encounter"
                for ref in [res.get("serviceProvider") or {}]
                if str(ref.get("reference", "")).startswith("Organization/")
            }
            keys = [tuple(ref.split("/", 1)) for ref in sorted(orgs)]
            for stored in the_hub.repo.read_many(keys, conn).values():
                if not stored.deleted:
                    resources.append(stored.resource())
            rows.extend(build_veterans_report(resources, since, until, unmask=unmask))
            if progress is not None:
                progress(len(batch))
    rows.sort(key=lambda r: (r["日期"], r["身份证号"], r["事件"], r["五色分类"]))
    return rows
