"""Denominators from population statistics, configured per jurisdiction and year.

Keys are a statistic name shared by several indicators (``resident-population``,
``residents-65-plus``) or one indicator's id (its own denominator wins over the
shared statistic). Values come from ``hub audit denominators set`` or a YAML
file (``hub audit denominators load FILE``)::

    source: 示范县统计年鉴 2025
    denominators:
      - {jurisdiction: "370203", year: 2025, indicator: resident-population, value: 52000}
      - {jurisdiction: "370203001", year: 2025, indicator: residents-65-plus, value: 1200}
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path

import yaml
from sqlalchemy import delete
from sqlalchemy import insert
from sqlalchemy import select
from sqlalchemy.engine import Connection

from hub import outcomes
from hub.completeness import jurisdiction as juris
from hub.storage import schema as s


@dataclasses.dataclass(frozen=True)
class Denominator:
    jurisdiction: str
    year: int
    indicator: str
    value: float
    source: str | None


def set_value(
    conn: Connection,
    jurisdiction: str,
    year: int,
    indicator: str,
    value: float,
    source: str | None = None,
) -> Denominator:
    """Insert or replace one denominator (400 for a negative value or bad jurisdiction)."""
    jurisdiction = juris.check(jurisdiction)
    if value is None or float(value) < 0:
        raise outcomes.bad_request(f"denominator must be a number >= 0, not {value!r}", "value")
    if not indicator:
        raise outcomes.bad_request("no indicator or statistic name given", "indicator")
    t = s.audit_denominator
    conn.execute(
        delete(t).where(
            t.c.jurisdiction == jurisdiction, t.c.year == int(year), t.c.indicator == indicator
        )
    )
    conn.execute(
        insert(t).values(
            jurisdiction=jurisdiction,
            year=int(year),
            indicator=indicator,
            value=float(value),
            source=source,
            updated_at=dt.datetime.now(dt.UTC),
        )
    )
    return Denominator(jurisdiction, int(year), indicator, float(value), source)


def load_file(conn: Connection, path: Path) -> int:
    """Load a YAML file of denominators (format in the module docstring); returns the count."""
    data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    default_source = data.get("source")
    items = data.get("denominators") or []
    for n, item in enumerate(items):
        try:
            set_value(
                conn,
                str(item["jurisdiction"]),
                int(item["year"]),
                str(item["indicator"]),
                float(item["value"]),
                item.get("source", default_source),
            )
        except (KeyError, TypeError, ValueError) as err:
            raise outcomes.bad_request(f"{path}: entry {n}: {err}", f"denominators[{n}]") from None
    return len(items)


def all_values(conn: Connection, jurisdiction: str | None = None) -> list[Denominator]:
    t = s.audit_denominator
    stmt = select(t.c.jurisdiction, t.c.year, t.c.indicator, t.c.value, t.c.source)
    if jurisdiction is not None:
        stmt = stmt.where(t.c.jurisdiction == jurisdiction)
    return [
        Denominator(*row)
        for row in conn.execute(stmt.order_by(t.c.jurisdiction, t.c.year, t.c.indicator))
    ]


def lookup(conn: Connection, jurisdiction: str, year: int, names: list[str]) -> Denominator | None:
    """The first of ``names`` configured for this jurisdiction and year."""
    t = s.audit_denominator
    rows = conn.execute(
        select(t.c.jurisdiction, t.c.year, t.c.indicator, t.c.value, t.c.source).where(
            t.c.jurisdiction == jurisdiction, t.c.year == year, t.c.indicator.in_(names)
        )
    ).all()
    found = {r.indicator: Denominator(*r) for r in rows}
    for name in names:
        if name in found:
            return found[name]
    return None
