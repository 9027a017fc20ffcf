"""The stored CodeSystem, ValueSet and ConceptMap resources the terminology service serves.

The service keeps them in memory and reloads them when :func:`stamp` changes: a
write through any process moves the latest ``last_updated`` or the count of the
three types, so one indexed query tells a process whether its copy is current.
"""

from __future__ import annotations

from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from hub.storage import schema as S
from hub.storage.db import reading

TYPES = ("CodeSystem", "ValueSet", "ConceptMap")


def stamp(engine: Engine) -> tuple[Any, ...]:
    """What changes when any stored terminology resource is written or deleted."""
    r = S.resource
    stmt = (
        sa.select(r.c.res_type, sa.func.count(), sa.func.max(r.c.last_updated))
        .where(r.c.res_type.in_(TYPES))
        .group_by(r.c.res_type)
    )
    with reading(engine) as conn:
        rows = conn.execute(stmt).all()
    return tuple(sorted((t, n, str(at)) for t, n, at in rows))


def resources(engine: Engine) -> list[dict[str, Any]]:
    """Every live stored CodeSystem, ValueSet and ConceptMap, oldest first."""
    r = S.resource
    stmt = (
        sa.select(r.c.content)
        .where(r.c.res_type.in_(TYPES), r.c.deleted == sa.false())
        .order_by(r.c.pk)
    )
    with reading(engine) as conn:
        return [orjson.loads(content) for content in conn.execute(stmt).scalars() if content]
