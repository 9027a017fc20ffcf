"""Reports read from the database: the lifetime files of the patients who hold a code.

An adapter's report (the veterans bureau report of the registry adapter,
``hub export veterans-report``) finds its people with :func:`patients_with_code`
(through the code index, e.g. a ``veteran-entitlement`` Observation) and reads
their records with :func:`read_in_batches`: each batch is the patients'
compartment resources of the types asked for plus the organisations their
encounters name. Memory stays bounded by the batch, not the county. Both are in
the plugin API.
"""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Iterator
from typing import TYPE_CHECKING
from typing import Any

import orjson
import sqlalchemy as sa

from hub.lifetime.links import compartment_resources
from hub.storage import schema as s

if TYPE_CHECKING:
    from hub.kernel import Hub

BATCH = 200


def patients_with_code(conn: Any, res_type: str, system: str, code: str) -> list[str]:
    """Ids of the patients with a (not deleted) ``res_type`` resource coded ``system|code``."""
    t = s.sp_token
    r = s.resource
    stmt = (
        sa.select(r.c.patient_id)
        .where(
            r.c.pk.in_(
                sa.select(t.c.resource_pk).where(
                    t.c.res_type == res_type,
                    t.c.param == "code",
                    t.c.system == system,
                    t.c.code == code,
                )
            ),
            r.c.deleted == sa.false(),
            r.c.patient_id.is_not(None),
        )
        .distinct()
    )
    return sorted(row[0] for row in conn.execute(stmt))


def read_in_batches(
    the_hub: Hub,
    patient_ids: list[str],
    types: tuple[str, ...],
    *,
    progress: Callable[[int], None] | None = None,
) -> Iterator[list[dict]]:
    """The resources of ``patient_ids``, ``BATCH`` patients at a time; ``progress(n)`` after each.

    Each batch holds the compartment resources of ``types`` and the Organizations
    the batch's Encounters name as ``serviceProvider`` (hospitals are outside the
    compartment).
    """
    with the_hub.repo.reading() as conn:
        for i in range(0, len(patient_ids), BATCH):
            batch = patient_ids[i : i + BATCH]
            resources = [orjson.loads(c) for _, _, c in compartment_resources(conn, batch, types)]
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
            yield resources
            if progress is not None:
                progress(len(batch))
