"""Pages of the status tables (inbox, deliveries) for operators' screens and exports.

Both tables have an ``id`` (newer is larger), a ``site`` and a ``status``; the
screens list them newest first, filtered by status and site, with the count
of each status.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from sqlalchemy import Table
from sqlalchemy import func
from sqlalchemy import select
from sqlalchemy.engine import Engine


@dataclasses.dataclass
class StatusPage:
    rows: list[Any]  # rows of the listing's columns (attribute access)
    total: int  # rows matching the filter
    counts: dict[str, int]  # rows of each status, unfiltered


class StatusListing:
    """Listings of one status table over the columns ``columns``."""

    def __init__(self, engine: Engine, table: Table, columns: tuple[str, ...]):
        self.engine, self.table, self.columns = engine, table, columns

    def _query(self, statuses, site):
        c = self.table.c
        stmt = select(*(c[name] for name in self.columns))
        if statuses:
            stmt = stmt.where(c.status.in_(list(statuses)))
        if site:
            stmt = stmt.where(c.site == site)
        return stmt

    def page(self, statuses=None, site: str | None = None, page: int = 1, size: int = 50):
        """Page ``page`` (from 1) of ``size`` rows, newest first."""
        stmt, c = self._query(statuses, site), self.table.c
        with self.engine.connect() as conn:
            total = conn.execute(select(func.count()).select_from(stmt.subquery())).scalar_one()
            rows = conn.execute(
                stmt.order_by(c.id.desc()).limit(size).offset((page - 1) * size)
            ).all()
            counts = dict(conn.execute(select(c.status, func.count()).group_by(c.status)).all())
        return StatusPage(rows, total, counts)

    def all(self, statuses=None, site: str | None = None) -> list[Any]:
        """Every matching row, newest first (exports)."""
        stmt = self._query(statuses, site).order_by(self.table.c.id.desc())
        with self.engine.connect() as conn:
            return conn.execute(stmt).all()

    def row(self, row_id: int) -> Any | None:
        """One whole row (body included), or None."""
        with self.engine.connect() as conn:
            return conn.execute(select(self.table).where(self.table.c.id == row_id)).first()
