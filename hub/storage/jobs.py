"""The bulk job store: asynchronous requests (``$export``, async searches) and import progress.

A job is ``queued`` when a client kicks it off, ``running`` while a worker holds it,
then ``done`` (its manifest lists the files), ``failed`` (its outcome says why) or
gone (cancelled by ``DELETE`` on its status URL, or expired).

Several workers share the table: :meth:`JobStore.claim` takes one queued job (or one
whose claim went stale: its worker died) with ``FOR UPDATE SKIP LOCKED`` on PostgreSQL
and under SQLite's single writer (``BEGIN IMMEDIATE``) elsewhere; every later step of the
worker (:meth:`JobStore.renew`, :meth:`JobStore.finish`) names the claim it holds
(``claimed_by`` and the attempt), so a worker whose job was taken over or cancelled finds
out at its next step and stops.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

import orjson
from sqlalchemy import and_
from sqlalchemy import delete
from sqlalchemy import insert
from sqlalchemy import or_
from sqlalchemy import select
from sqlalchemy import text
from sqlalchemy import update
from sqlalchemy.engine import Connection
from sqlalchemy.engine import Engine

from hub.storage import schema as s

FINISHED = ("done", "failed")


@dataclasses.dataclass
class Job:
    id: str
    kind: str
    status: str
    owner: str
    principal: dict | None
    request: str
    params: dict
    created_at: dt.datetime
    claimed_at: dt.datetime | None = None
    claimed_by: str | None = None
    attempts: int = 0
    transaction_time: dt.datetime | None = None
    progress: str | None = None
    manifest: dict | None = None
    outcome: dict | None = None
    finished_at: dt.datetime | None = None
    expires_at: dt.datetime | None = None

    def summary(self) -> dict[str, Any]:
        """A JSON-ready view (``hub export show``)."""
        out = dataclasses.asdict(self)
        for key, value in out.items():
            if isinstance(value, dt.datetime):
                out[key] = value.isoformat()
        out.pop("principal", None)
        return out


def _json(text: str | None) -> Any:
    return orjson.loads(text) if text else None


def _job(row) -> Job:
    return Job(
        id=row.id,
        kind=row.kind,
        status=row.status,
        owner=row.owner,
        principal=_json(row.principal),
        request=row.request,
        params=_json(row.params) or {},
        created_at=row.created_at,
        claimed_at=row.claimed_at,
        claimed_by=row.claimed_by,
        attempts=row.attempts,
        transaction_time=row.transaction_time,
        progress=row.progress,
        manifest=_json(row.manifest),
        outcome=_json(row.outcome),
        finished_at=row.finished_at,
        expires_at=row.expires_at,
    )


def _dump(value: Any) -> str | None:
    return orjson.dumps(value).decode() if value is not None else None


class JobStore:
    """The ``bulk_job`` table (and ``import_progress``, the import's resume points)."""

    def __init__(self, engine: Engine):
        self.engine = engine

    def _write(self):
        return self.engine.connect().execution_options(hub_write=True)

    # -- jobs -----------------------------------------------------------------

    def create(
        self,
        job_id: str,
        kind: str,
        owner: str,
        principal: dict | None,
        request: str,
        params: dict,
    ) -> Job:
        now = dt.datetime.now(dt.UTC)
        values = {
            "id": job_id,
            "kind": kind,
            "status": "queued",
            "owner": owner,
            "principal": _dump(principal),
            "request": request,
            "params": _dump(params),
            "created_at": now,
            "attempts": 0,
        }
        with self._write() as conn, conn.begin():
            conn.execute(insert(s.bulk_job), values)
        return Job(job_id, kind, "queued", owner, principal, request, params, now)

    def get(self, job_id: str) -> Job | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(s.bulk_job).where(s.bulk_job.c.id == job_id)).first()
        return _job(row) if row else None

    def list(self, limit: int = 50, status: str | None = None) -> list[Job]:
        stmt = select(s.bulk_job)
        if status:
            stmt = stmt.where(s.bulk_job.c.status == status)
        stmt = stmt.order_by(s.bulk_job.c.created_at.desc(), s.bulk_job.c.id).limit(limit)
        with self.engine.connect() as conn:
            return [_job(r) for r in conn.execute(stmt)]

    def claim(self, worker: str, lease_seconds: float) -> Job | None:
        """Take the oldest queued job, or one whose claim is older than the lease; ``None``
        when there is none. The job comes back ``running`` with ``attempts`` counting this
        claim: the worker names (worker, attempts) in every later step."""
        now = dt.datetime.now(dt.UTC)
        c = s.bulk_job.c
        due = or_(
            c.status == "queued",
            and_(c.status == "running", c.claimed_at < now - dt.timedelta(seconds=lease_seconds)),
        )
        with self._write() as conn, conn.begin():
            query = select(c.id, c.attempts).where(due).order_by(c.created_at, c.id).limit(1)
            if conn.dialect.name == "postgresql":
                query = query.with_for_update(skip_locked=True)
            row = conn.execute(query).first()
            if row is None:
                return None
            taken = conn.execute(
                update(s.bulk_job)
                .where(c.id == row.id, c.attempts == row.attempts, due)
                .values(
                    status="running",
                    claimed_at=now,
                    claimed_by=worker,
                    attempts=row.attempts + 1,
                    progress="started",
                )
            ).rowcount
            if taken != 1:  # pragma: no cover - another claimer won between the two statements
                return None
            job = conn.execute(select(s.bulk_job).where(c.id == row.id)).first()
        return _job(job)

    def _mine(self, job: Job):
        c = s.bulk_job.c
        return and_(
            c.id == job.id,
            c.status == "running",
            c.claimed_by == job.claimed_by,
            c.attempts == job.attempts,
        )

    def renew(self, job: Job, progress: str, **values: Any) -> bool:
        """Renew the worker's claim and record its progress; False when the job is no
        longer the worker's (cancelled, or taken over after a stale lease): stop then."""
        now = dt.datetime.now(dt.UTC)
        with self._write() as conn, conn.begin():
            n = conn.execute(
                update(s.bulk_job)
                .where(self._mine(job))
                .values(claimed_at=now, progress=progress[:200], **values)
            ).rowcount
        return n == 1

    def finish(
        self,
        job: Job,
        status: str,
        expires_at: dt.datetime,
        manifest: dict | None = None,
        outcome: dict | None = None,
    ) -> bool:
        """Record the result of the worker's claim (``done`` or ``failed``); False when the
        job is no longer the worker's."""
        assert status in FINISHED
        now = dt.datetime.now(dt.UTC)
        with self._write() as conn, conn.begin():
            n = conn.execute(
                update(s.bulk_job)
                .where(self._mine(job))
                .values(
                    status=status,
                    manifest=_dump(manifest),
                    outcome=_dump(outcome),
                    finished_at=now,
                    expires_at=expires_at,
                    progress=status,
                )
            ).rowcount
        return n == 1

    def remove(self, job_id: str) -> bool:
        """Forget a job (cancelled or expired); a worker running it stops at its next step."""
        with self._write() as conn, conn.begin():
            n = conn.execute(delete(s.bulk_job).where(s.bulk_job.c.id == job_id)).rowcount
        return n == 1

    def expired(self, now: dt.datetime | None = None) -> list[str]:
        """Ids of finished jobs past their expiry."""
        now = now or dt.datetime.now(dt.UTC)
        c = s.bulk_job.c
        stmt = select(c.id).where(c.expires_at.is_not(None), c.expires_at < now)
        with self.engine.connect() as conn:
            return list(conn.execute(stmt).scalars())

    def ids(self) -> set[str]:
        with self.engine.connect() as conn:
            return set(conn.execute(select(s.bulk_job.c.id)).scalars())

    # -- import progress ---------------------------------------------------------

    def import_progress(self, source: str) -> dict[str, Any] | None:
        t = s.import_progress
        with self.engine.connect() as conn:
            row = conn.execute(select(t).where(t.c.source == source)).first()
        return dict(row._mapping) if row else None

    def save_import_progress(
        self, conn: Connection, source: str, digest: str, lines: int, stored: int, errors: int
    ) -> None:
        """Record, in the transaction that stored the lines, how far the file is done."""
        t = s.import_progress
        values = {
            "digest": digest,
            "lines": lines,
            "stored": stored,
            "errors": errors,
            "updated_at": dt.datetime.now(dt.UTC),
        }
        n = conn.execute(update(t).where(t.c.source == source).values(**values)).rowcount
        if n == 0:
            conn.execute(insert(t), {"source": source, **values})

    def reset_import_progress(self, source: str) -> None:
        t = s.import_progress
        with self._write() as conn, conn.begin():
            conn.execute(delete(t).where(t.c.source == source))


def transaction_time(engine: Engine, clock=None) -> dt.datetime:
    """The export's ``transactionTime``: an instant before which every write is committed.

    A write stamps ``lastUpdated`` inside its transaction and commits a little later, so
    the clock alone is not enough: a client that asks next time for ``_since`` this instant
    would miss a write stamped just before it that committed just after. On SQLite every
    write transaction holds the write lock from before its stamp (``BEGIN IMMEDIATE``), so
    the clock read under that lock is such an instant. On PostgreSQL every write transaction
    locks the change feed before its stamp (``repository.WRITE_FENCE``), so the instant is
    the earlier of the clock and the start of the oldest transaction holding that lock.
    Later writes may still be exported (their newer version); the next ``_since`` export
    repeats them, which is harmless.
    """
    clock = clock or (lambda: dt.datetime.now(dt.UTC))
    if engine.dialect.name != "postgresql":
        with engine.connect().execution_options(hub_write=True) as conn, conn.begin():
            return clock()
    with engine.connect() as conn:
        oldest = conn.execute(
            text(
                "SELECT min(a.xact_start) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid"
                " WHERE l.locktype = 'relation' AND l.relation = 'change'::regclass"
                " AND l.pid <> pg_backend_pid()"
            )
        ).scalar()
    now = clock()
    if oldest is not None:
        if oldest.tzinfo is None:
            oldest = oldest.replace(tzinfo=dt.UTC)
        now = min(now, oldest - dt.timedelta(milliseconds=1))
    return now
