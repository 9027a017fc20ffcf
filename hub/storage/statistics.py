"""Planner statistics of the search tables, kept fresh on PostgreSQL servers without autovacuum.

PostgreSQL chooses a search's indexes from the statistics ``ANALYZE`` gathers. A
server with autovacuum off keeps the ones taken when the tables were created
(empty) until someone runs ``hub db analyze``; with them the planner cannot tell
a code on a thousand rows from one on a single row, and it reads
``Observation?code&patient`` through the ``(res_type, param, system)`` index,
filtering every Observation of the code system (tens of milliseconds instead of
a fraction of one).

:class:`StatisticsKeeper` does for the search tables what autovacuum's analyze
would: at most every ``interval`` seconds, a search looks (in a background
thread, never delaying the answer) for tables changed by more than 10 % plus 50
rows since their last ``ANALYZE`` and analyses those. It does nothing where
autovacuum is on, on a read replica (statistics come from the primary), or on
SQLite (which plans from its indexes alone). ``SEARCH_ANALYZE_INTERVAL`` in
:mod:`hub.config`; 0 turns it off.
"""

from __future__ import annotations

import logging
import threading
import time

from sqlalchemy.engine import Engine

from hub.storage import schema as S

log = logging.getLogger(__name__)

# The tables a search plans over: resources and their index rows.
TABLES = ("resource", "compartment", *sorted(S.INDEX_TABLES))
# The index tables are analysed before the resource table: between the two, the planner
# would weigh resource rows it knows against index rows it still believes to be few.
# autovacuum_analyze_threshold and autovacuum_analyze_scale_factor's defaults.
_THRESHOLD = 50
_SCALE = 0.1
# One process of the hub analyses at a time (pg_try_advisory_lock's key: "hubANLZ").
_LOCK_KEY = 0x6875_6241_4E4C_5A

_STALE = f"""
SELECT s.relname FROM pg_stat_user_tables s JOIN pg_class c ON c.oid = s.relid
WHERE s.schemaname = current_schema() AND s.relname = ANY(%(names)s)
  AND s.n_mod_since_analyze > {_THRESHOLD} + {_SCALE} * GREATEST(c.reltuples, 0)
ORDER BY s.relname IN ('resource', 'compartment'), s.relname
"""


class StatisticsKeeper:
    """Analyses the search tables that changed much since their last ``ANALYZE``."""

    def __init__(self, interval: float = 10.0):
        self.interval = interval
        self._due = 0.0  # time.monotonic() of the next look
        self._lock = threading.Lock()
        self._off = interval <= 0
        self._thread: threading.Thread | None = None  # the look under way, if any

    def touch(self, engine: Engine) -> None:
        """Start a look in the background when one is due (cheap otherwise)."""
        if self._off or engine.dialect.name != "postgresql":
            return
        now = time.monotonic()
        if now < self._due:
            return
        with self._lock:
            if now < self._due:
                return
            self._due = now + self.interval
            self._thread = threading.Thread(
                target=self.refresh, args=(engine,), name="hub-search-analyze", daemon=True
            )
            self._thread.start()

    def close(self, timeout: float = 30.0) -> None:
        """No more looks; wait for one under way, so its connection goes back to the pool
        before the pool is disposed (``Hub.close``)."""
        with self._lock:
            self._off = True
            thread = self._thread
        if thread is not None:
            thread.join(timeout)

    def refresh(self, engine: Engine) -> list[str]:
        """Analyse the stale tables now; returns their names."""
        try:
            with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                autovacuum, replica = conn.exec_driver_sql(
                    "SELECT current_setting('autovacuum') = 'on', pg_is_in_recovery()"
                ).one()
                if autovacuum:
                    self._off = True  # the server keeps them itself
                    return []
                if replica:
                    return []  # a standby has the primary's statistics and cannot analyse
                if not conn.exec_driver_sql(
                    "SELECT pg_try_advisory_lock(%(k)s)", {"k": _LOCK_KEY}
                ).scalar():
                    return []  # another process of the hub is at it
                try:
                    stale = conn.exec_driver_sql(_STALE, {"names": list(TABLES)}).scalars().all()
                    for name in stale:
                        conn.exec_driver_sql(f'ANALYZE "{name}"')
                finally:
                    conn.exec_driver_sql("SELECT pg_advisory_unlock(%(k)s)", {"k": _LOCK_KEY})
                return list(stale)
        except Exception:  # statistics are an optimisation: never fail a search for them
            log.warning("refreshing the search tables' statistics failed", exc_info=True)
            return []
