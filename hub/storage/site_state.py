"""Site state: the small key/value memory an adapter keeps per site (e.g. a sequence).

Values are JSON documents. A save is an upsert (``ON CONFLICT DO UPDATE``,
spelt per backend) inside the transaction that stored the message's data, so
the state moves only with the data it describes.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import orjson
from sqlalchemy import select
from sqlalchemy.dialects import postgresql
from sqlalchemy.dialects import sqlite
from sqlalchemy.engine import Connection
from sqlalchemy.engine import Engine

from hub.storage import schema as s


class SiteStateStore:
    def __init__(self, engine: Engine):
        self.engine = engine

    def load(self, site: str) -> dict[str, Any]:
        """The state of ``site``, key to value (empty when it has none)."""
        stmt = select(s.site_state.c.key, s.site_state.c.value).where(s.site_state.c.site == site)
        with self.engine.connect() as conn:
            return {k: orjson.loads(v) for k, v in conn.execute(stmt)}

    @staticmethod
    def save(conn: Connection, site: str, items: Any) -> None:
        """Upsert ``(key, value)`` pairs of ``site`` inside the caller's transaction ``conn``."""
        now = dt.datetime.now(dt.UTC)
        dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
        for key, value in items:
            insert = dialect.insert(s.site_state)
            conn.execute(
                insert.values(
                    site=site, key=key, value=orjson.dumps(value).decode(), updated_at=now
                ).on_conflict_do_update(
                    index_elements=["site", "key"],
                    set_={"value": insert.excluded.value, "updated_at": now},
                )
            )
