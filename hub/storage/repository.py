"""The storage repository: versioned resources, history, change feed and indexes.

Reads return :class:`Stored` rows whose ``content`` is the JSON text exactly as
stored, so that a read can be answered without parsing. Writes go through a
:class:`Writer` inside one database transaction: the writer stages every
create, update and delete and :meth:`Writer.flush` writes them in bulk (one
multi-row statement per table), together with the history rows, the change-feed
rows and the search-index rows. Either all of it commits or none of it does.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import hashlib
import operator
import re
import time
import uuid
from collections.abc import Callable
from collections.abc import Iterable
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

import orjson
from sqlalchemy import and_
from sqlalchemy import delete
from sqlalchemy import exc as sa_exc
from sqlalchemy import insert
from sqlalchemy import or_
from sqlalchemy import select
from sqlalchemy import text
from sqlalchemy import tuple_
from sqlalchemy import update
from sqlalchemy.engine import Connection
from sqlalchemy.engine import Engine

from hub import outcomes
from hub.storage import schema as s
from hub.storage.db import standalone_reads

# Reads after the client's own write (docs/scaling.md#read-replicas): the API
# sets ``wanted_lsn`` from the request and reports ``written_lsn`` after a write.
wanted_lsn: ContextVar[str | None] = ContextVar("wanted_lsn", default=None)
written_lsn: ContextVar[str | None] = ContextVar("written_lsn", default=None)
_LSN = re.compile(r"[0-9A-F]{1,8}/[0-9A-F]{1,8}")

# How often a write transaction is retried after losing a race (a unique key
# taken by a concurrent writer, a serialization failure or a deadlock).
WRITE_RETRIES = 5


@dataclasses.dataclass
class Stored:
    """One stored version of a resource."""

    res_type: str
    res_id: str
    version: int
    last_updated: dt.datetime
    deleted: bool
    content: str | None  # JSON text; None for a deletion
    pk: int | None = None
    method: str | None = None

    @property
    def etag(self) -> str:
        return f'W/"{self.version}"'

    @property
    def last_updated_iso(self) -> str:
        return format_instant(self.last_updated)

    def resource(self) -> dict[str, Any]:
        if self.content is None:
            raise ValueError(f"{self.res_type}/{self.res_id} version {self.version} is a deletion")
        return orjson.loads(self.content)


def format_instant(value: dt.datetime) -> str:
    """A FHIR ``instant`` with millisecond precision in UTC: ``2026-12-01T10:00:00.123Z``."""
    return (
        value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.")
        + f"{value.microsecond // 1000:03d}Z"
    )


def new_id() -> str:
    return str(uuid.uuid4())


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


_CURRENT_COLS = (
    s.resource.c.pk,
    s.resource.c.res_type,
    s.resource.c.res_id,
    s.resource.c.version,
    s.resource.c.last_updated,
    s.resource.c.deleted,
    s.resource.c.content,
)
_HISTORY_COLS = (
    s.resource_history.c.resource_pk,
    s.resource_history.c.res_type,
    s.resource_history.c.res_id,
    s.resource_history.c.version,
    s.resource_history.c.last_updated,
    s.resource_history.c.deleted,
    s.resource_history.c.content,
    s.resource_history.c.method,
)


def _from_current(row) -> Stored:
    return Stored(
        row.res_type, row.res_id, row.version, row.last_updated, row.deleted, row.content, row.pk
    )


def _from_history(row) -> Stored:
    return Stored(
        row.res_type,
        row.res_id,
        row.version,
        row.last_updated,
        row.deleted,
        row.content,
        row.resource_pk,
        row.method,
    )


def fallback_patient_id(resource: dict[str, Any]) -> str | None:
    """The patient compartment of a resource when no search indexer is configured."""
    if resource.get("resourceType") == "Patient":
        return resource.get("id")
    for key in ("subject", "patient"):
        ref = (
            (resource.get(key) or {}).get("reference", "")
            if isinstance(resource.get(key), dict)
            else ""
        )
        if ref.startswith("Patient/"):
            return ref.split("/")[1]
    return None


class Repository:
    """Versioned FHIR resource storage over one SQLAlchemy engine.

    :param indexer: turns a resource into search-index rows and its patient
        compartment (``hub.search.indexer.Indexer``); ``None`` stores without
        search indexes.
    """

    def __init__(
        self,
        engine: Engine,
        indexer: Any = None,
        clock: Callable[[], dt.datetime] = _now,
        write_guard: Callable[..., None] | None = None,
        audit_hook: Callable[[Connection, list[Stored], str | None], None] | None = None,
        read_engine: Engine | None = None,
    ):
        self.engine = engine
        # A streaming replica for reads (READ_DATABASE_URL), or None; see read_engine_now.
        self.read_engine = read_engine
        self.indexer = indexer
        self.clock = clock
        # Given by the kernel (hub.security): ``write_guard(op, resource, existing, res_type)``
        # authorizes every staged create/update/delete (and may stamp the resource);
        # ``audit_hook(conn, written, site)`` records the transaction's audit event in it.
        self.write_guard = write_guard
        self.audit_hook = audit_hook

    # -- reads ---------------------------------------------------------------

    @contextmanager
    def reading(self):
        """A read transaction: one snapshot on SQLite; on PostgreSQL (READ COMMITTED) each
        statement sees what was committed when it began. For reads that need a
        transaction (server-side cursors, as exports stream); a request's reads use
        :meth:`standalone_reads`."""
        with self.read_engine_now().connect() as conn:
            yield conn

    @contextmanager
    def standalone_reads(self):
        """A read-only connection without a transaction on PostgreSQL (autocommit: no
        ``BEGIN``/``ROLLBACK`` round trips), :func:`hub.storage.db.standalone_reads`."""
        with standalone_reads(self.read_engine_now()) as conn:
            yield conn

    def read_engine_now(self) -> Engine:
        """Where this request's reads go: the replica, unless it has not yet replayed
        the client's own last write (``wanted_lsn``), then the primary."""
        if self.read_engine is None:
            return self.engine
        wanted = wanted_lsn.get()
        if wanted is None:
            return self.read_engine
        if not _LSN.fullmatch(wanted):
            return self.engine  # not an LSN we handed out: the primary is always current
        with standalone_reads(self.read_engine) as conn:
            caught_up = conn.execute(
                text("SELECT pg_last_wal_replay_lsn() >= CAST(:lsn AS pg_lsn)"), {"lsn": wanted}
            ).scalar()
        return self.read_engine if caught_up else self.engine

    def read(self, res_type: str, res_id: str, conn: Connection | None = None) -> Stored | None:
        """The current version (possibly a deletion tombstone), or ``None``."""
        stmt = select(*_CURRENT_COLS).where(
            s.resource.c.res_type == res_type, s.resource.c.res_id == res_id
        )
        if conn is not None:
            row = conn.execute(stmt).first()
        else:
            with standalone_reads(self.read_engine_now()) as c:
                row = c.execute(stmt).first()
        return _from_current(row) if row else None

    def read_many(
        self, keys: Iterable[tuple[str, str]], conn: Connection
    ) -> dict[tuple[str, str], Stored]:
        keys = list(dict.fromkeys(keys))
        out: dict[tuple[str, str], Stored] = {}
        for chunk in _chunks(keys, 400):
            stmt = select(*_CURRENT_COLS).where(
                tuple_(s.resource.c.res_type, s.resource.c.res_id).in_(chunk)
            )
            for row in conn.execute(stmt):
                out[(row.res_type, row.res_id)] = _from_current(row)
        return out

    def vread(self, res_type: str, res_id: str, version: int) -> Stored | None:
        h = s.resource_history
        stmt = select(*_HISTORY_COLS).where(
            h.c.res_type == res_type, h.c.res_id == res_id, h.c.version == version
        )
        with standalone_reads(self.engine) as conn:
            row = conn.execute(stmt).first()
        return _from_history(row) if row else None

    def history(
        self,
        res_type: str | None = None,
        res_id: str | None = None,
        since: dt.datetime | None = None,
        at: dt.datetime | None = None,
        count: int = 20,
        before: tuple[dt.datetime, str, str, int] | None = None,
    ) -> list[Stored]:
        """Versions newest first, ``count`` of them, older than the ``before`` cursor.

        The cursor is the (last_updated, type, id, version) of the last entry of
        the previous page, so pages stay stable while new versions arrive.
        """
        h = s.resource_history
        stmt = select(*_HISTORY_COLS)
        if res_type:
            stmt = stmt.where(h.c.res_type == res_type)
        if res_id:
            stmt = stmt.where(h.c.res_id == res_id)
        if since is not None:
            stmt = stmt.where(h.c.last_updated >= since)
        if at is not None:
            stmt = stmt.where(h.c.last_updated <= at)
        if before is not None:
            ts, btype, bid, bver = before
            stmt = stmt.where(
                or_(
                    h.c.last_updated < ts,
                    and_(
                        h.c.last_updated == ts,
                        tuple_(h.c.res_type, h.c.res_id, h.c.version) < tuple_(btype, bid, bver),
                    ),
                )
            )
        stmt = stmt.order_by(
            h.c.last_updated.desc(), h.c.res_type.desc(), h.c.res_id.desc(), h.c.version.desc()
        ).limit(count)
        with standalone_reads(self.engine) as conn:
            return [_from_history(r) for r in conn.execute(stmt)]

    def history_count(
        self, res_type: str | None = None, res_id: str | None = None, since=None
    ) -> int:
        from sqlalchemy import func

        h = s.resource_history
        stmt = select(func.count()).select_from(h)
        if res_type:
            stmt = stmt.where(h.c.res_type == res_type)
        if res_id:
            stmt = stmt.where(h.c.res_id == res_id)
        if since is not None:
            stmt = stmt.where(h.c.last_updated >= since)
        with standalone_reads(self.engine) as conn:
            return conn.execute(stmt).scalar_one()

    def changes(self, after_seq: int = 0, limit: int = 500) -> list[Any]:
        """Change-feed rows with ``seq > after_seq``, oldest first."""
        c = s.change
        stmt = select(c).where(c.c.seq > after_seq).order_by(c.c.seq).limit(limit)
        with self.engine.connect() as conn:
            return list(conn.execute(stmt))

    # -- writes --------------------------------------------------------------

    @contextmanager
    def writing(self, site: str | None = None):
        """One write transaction; yields a :class:`Writer`, flushes and commits on exit."""
        with self.engine.connect().execution_options(hub_write=True) as conn:
            with conn.begin():
                writer = Writer(self, conn, site)
                yield writer
                writer.flush()
                if self.audit_hook is not None and writer.written:
                    self.audit_hook(conn, writer.written, site)
            if self.read_engine is not None and conn.dialect.name == "postgresql":
                # Past the commit: a replica that replayed this far holds the write.
                written_lsn.set(
                    conn.execute(text("SELECT CAST(pg_current_wal_insert_lsn() AS text)")).scalar()
                )
                conn.rollback()

    def write(self, fn: Callable[[Writer], Any], site: str | None = None) -> Any:
        """Run ``fn(writer)`` in a write transaction, retrying lost races.

        ``fn`` must be safe to run again from scratch: a concurrent writer that
        took the same unique key (conditional create, update-as-create with the
        same id) makes the first attempt fail as a whole, and the retry then
        sees the winner's committed rows.
        """
        for attempt in range(WRITE_RETRIES):
            try:
                with self.writing(site) as writer:
                    result = fn(writer)
                return result
            except (sa_exc.IntegrityError, sa_exc.OperationalError) as err:
                if attempt == WRITE_RETRIES - 1 or not _is_retryable(err):
                    raise
                time.sleep(0.005 * (attempt + 1))
        raise AssertionError("unreachable")


def _is_retryable(err: Exception) -> bool:
    """Lost races: unique violations, serialization failures, deadlocks, SQLite busy."""
    orig = getattr(err, "orig", None)
    sqlstate = getattr(orig, "sqlstate", None)
    if sqlstate in ("23505", "40001", "40P01"):
        return True
    text = str(orig or err).lower()
    return "unique constraint" in text or "database is locked" in text


@dataclasses.dataclass
class _Pending:
    op: str  # create, update, delete
    method: str
    stored: Stored
    patient_id: str | None
    index_rows: dict[str, list[dict]]
    existing_pk: int | None  # None: a new row
    order: int = 0  # staging order: history and change-feed rows follow it


WRITE_FENCE = text("SELECT 1 FROM change WHERE false")


class Writer:
    """Stages writes within one transaction and flushes them in bulk."""

    def __init__(self, repo: Repository, conn: Connection, site: str | None):
        self.repo = repo
        self.conn = conn
        self.site = site
        if conn.dialect.name == "postgresql":
            # Start the transaction, holding a lock on the change feed, before the clock is
            # read: a bulk export's transactionTime then counts this write as in flight from
            # the instant it is stamped (hub.storage.jobs.transaction_time).
            conn.execute(WRITE_FENCE)
        self.now = repo.clock()
        self._now_text = format_instant(self.now)  # every version staged here: meta.lastUpdated
        self._known: dict[tuple[str, str], Stored | None] = {}
        self._pending: dict[tuple[str, str], _Pending] = {}
        # Versions staged by an earlier message of the group and replaced by a later
        # one before any flush: they go to the history and change feed only.
        self._superseded: list[_Pending] = []
        self._order = 0
        self._lock = conn.dialect.name == "postgresql"
        self._guard = repo.write_guard
        self.written: list[Stored] = []  # every version flushed in this transaction
        # Keys staged by the current segment (one message of a group), or None
        # outside group mode; see :meth:`begin_segment`.
        self._segment: set[tuple[str, str]] | None = None

    def begin_segment(self) -> None:
        """Start the next message of a group sharing this transaction (group commit).

        Within a segment, as within any transaction, a resource is written at
        most once. A later segment may write a resource an earlier one staged
        (the same Patient in two messages): each message still gets its own
        version, as when they commit apart. The earlier version is kept for
        the history and the change feed, and only the later one is written to
        the resource and index tables (no flush in the middle of the group).
        """
        self._segment = set()

    @property
    def segment_keys(self) -> set[tuple[str, str]]:
        """The (type, id) the current segment staged (no-op updates are not among them)."""
        return self._segment if self._segment is not None else set()

    def _claim_key(self, key: tuple[str, str], strict: bool = True) -> None:
        """Reserve ``key`` for the staging write about to happen."""
        if key in self._pending:
            if self._segment is None or key in self._segment:
                if not strict:
                    return
                raise outcomes.bad_request(f"{key[0]}/{key[1]} is written twice in one transaction")
            self._superseded.append(self._pending.pop(key))
        if self._segment is not None:
            self._segment.add(key)

    # -- lookups -------------------------------------------------------------

    def prefetch(self, keys: Iterable[tuple[str, str]], shared: bool = False) -> None:
        """Load (and on PostgreSQL lock) the current rows of ``keys`` in one query.

        ``shared``: lock them ``FOR SHARE`` (rows expected to be read, not
        written: other transactions may read them too; writing one still
        takes its exclusive lock then).
        """
        missing = [
            k for k in dict.fromkeys(keys) if k not in self._known and k not in self._pending
        ]
        for chunk in _chunks(missing, 400):
            stmt = select(*_CURRENT_COLS).where(
                tuple_(s.resource.c.res_type, s.resource.c.res_id).in_(chunk)
            )
            if self._lock:
                stmt = stmt.with_for_update(read=shared)
            found = {(r.res_type, r.res_id): _from_current(r) for r in self.conn.execute(stmt)}
            for key in chunk:
                self._known[key] = found.get(key)

    def current(self, res_type: str, res_id: str) -> Stored | None:
        """The current version as this transaction sees it (staged writes included)."""
        key = (res_type, res_id)
        if key in self._pending:
            return self._pending[key].stored
        if key not in self._known:
            self.prefetch([key])
        return self._known[key]

    # -- staging -------------------------------------------------------------

    def create(
        self,
        resource: dict[str, Any],
        res_id: str | None = None,
        method: str = "POST",
        fresh: bool = False,
    ) -> Stored:
        """Stage a new resource; the id is ``res_id`` or a new UUID.

        ``fresh=True`` says the id is a new UUID no one can have used, which
        saves the existence check (a query per resource in a large bundle).
        """
        res_type = resource["resourceType"]
        if res_id is None:
            res_id, fresh = new_id(), True
        if fresh:
            if self._guard is not None:
                self._guard("create", resource, None, res_type)
            return self._stage(resource, res_type, res_id, None, "create", method)
        existing = self.current(res_type, res_id)
        if self._guard is not None:
            self._guard("create", resource, existing, res_type)
        if existing is not None:
            if not existing.deleted:
                raise outcomes.conflict(f"{res_type}/{res_id} already exists")
            return self._stage(resource, res_type, res_id, existing, "create", method)
        return self._stage(resource, res_type, res_id, None, "create", method)

    def update(
        self,
        resource: dict[str, Any],
        res_id: str,
        if_match: int | None = None,
        method: str = "PUT",
        skip_identical: bool = True,
    ) -> tuple[Stored, bool]:
        """Stage a new version (update-as-create when absent). Returns (stored, created).

        An update whose content equals the current version's (ignoring
        ``meta.versionId``/``lastUpdated``) writes nothing and returns the
        current version, so replayed messages do not pile up versions.
        """
        res_type = resource["resourceType"]
        resource["id"] = res_id
        existing = self.current(res_type, res_id)
        if self._guard is not None:
            self._guard("update", resource, existing, res_type)
        if if_match is not None:
            if existing is None or existing.deleted:
                raise outcomes.precondition_failed(
                    f"If-Match version {if_match} given but {res_type}/{res_id} does not exist"
                )
            if existing.version != if_match:
                raise outcomes.precondition_failed(
                    f"{res_type}/{res_id} is at version {existing.version}, not {if_match}"
                )
        if existing is None or existing.deleted:
            return self._stage(resource, res_type, res_id, existing, "create", method), True
        if (
            skip_identical
            and existing.content is not None
            and same_content(existing.content, resource)
        ):
            return existing, False
        return self._stage(resource, res_type, res_id, existing, "update", method), False

    def delete(self, res_type: str, res_id: str, method: str = "DELETE") -> Stored | None:
        """Stage a deletion; returns the tombstone, or ``None`` when nothing was there."""
        existing = self.current(res_type, res_id)
        if self._guard is not None:
            self._guard("delete", None, existing, res_type)
        if existing is None or existing.deleted:
            return None
        key = (res_type, res_id)
        self._claim_key(key, strict=False)  # a deletion replaces what this segment staged
        version = existing.version + 1
        stored = Stored(res_type, res_id, version, self.now, True, None, existing.pk, method)
        self._pending[key] = _Pending(
            "delete", method, stored, None, {}, existing.pk, self._next_order()
        )
        return stored

    def _stage(
        self,
        resource: dict[str, Any],
        res_type: str,
        res_id: str,
        existing: Stored | None,
        op: str,
        method: str,
    ) -> Stored:
        self._claim_key((res_type, res_id))
        key = (res_type, res_id)
        version = existing.version + 1 if existing else 1
        meta = dict(resource.get("meta") or {})
        meta["versionId"] = str(version)
        meta["lastUpdated"] = self._now_text
        # resourceType, id and meta first, as FHIR JSON is conventionally written.
        resource = {
            "resourceType": res_type,
            "id": res_id,
            "meta": meta,
            **{k: v for k, v in resource.items() if k not in _HEAD_KEYS},
        }
        content = orjson.dumps(resource).decode()
        if self.repo.indexer is not None:
            result = self.repo.indexer.index(resource)
            rows, patient_id = result.rows, result.patient_id
        else:
            rows, patient_id = {}, fallback_patient_id(resource)
        stored = Stored(
            res_type,
            res_id,
            version,
            self.now,
            False,
            content,
            existing.pk if existing else None,
            method,
        )
        self._pending[key] = _Pending(
            op,
            method,
            stored,
            patient_id,
            rows,
            existing.pk if existing else None,
            self._next_order(),
        )
        return stored

    def _next_order(self) -> int:
        self._order += 1
        return self._order

    # -- conditional-create guard -------------------------------------------

    def claim_conditional_key(self, res_type: str, criteria: str, res_id: str) -> None:
        """Take the unique key for ``criteria`` now (not at flush).

        A concurrent creator with the same criteria blocks here until the
        first commits, then fails with a unique violation; :meth:`Repository.write`
        retries it and the retry finds the winner's resource.
        """
        key_hash = hashlib.sha256(criteria.encode()).hexdigest()
        ck = s.conditional_key
        self.conn.execute(
            delete(ck)
            .where(ck.c.res_type == res_type, ck.c.key_hash == key_hash)
            .where(
                ~select(s.resource.c.pk)
                .where(
                    s.resource.c.res_type == ck.c.res_type,
                    s.resource.c.res_id == ck.c.res_id,
                    s.resource.c.deleted.is_(False),
                )
                .exists()
            )
        )
        self.conn.execute(
            insert(ck).values(
                res_type=res_type,
                key_hash=key_hash,
                criteria=criteria,
                res_id=res_id,
                created_at=self.now,
            )
        )

    # -- flush ---------------------------------------------------------------

    @property
    def pending(self) -> list[Stored]:
        return [p.stored for p in self._pending.values()]

    def flush(self) -> None:
        """Write every staged change: resources, history, change feed, indexes."""
        if not self._pending:
            return
        pending = list(self._pending.values())
        conn = self.conn
        new = [p for p in pending if p.existing_pk is None]
        old = [p for p in pending if p.existing_pk is not None]
        postgres = conn.dialect.name == "postgresql"
        if new:
            result = conn.execute(
                insert(s.resource).returning(s.resource.c.pk, sort_by_parameter_order=True),
                [
                    {
                        "res_type": p.stored.res_type,
                        "res_id": p.stored.res_id,
                        "version": p.stored.version,
                        "last_updated": p.stored.last_updated,
                        "deleted": p.stored.deleted,
                        "patient_id": p.patient_id,
                        "content": p.stored.content,
                    }
                    for p in new
                ],
            )
            for p, row in zip(new, result.all(), strict=True):
                p.stored.pk = row.pk
        if old:
            conn.execute(
                update(s.resource)
                .where(s.resource.c.pk == _bp("b_pk"))
                .values(
                    version=_bp("b_version"),
                    last_updated=_bp("b_last_updated"),
                    deleted=_bp("b_deleted"),
                    patient_id=_bp("b_patient_id"),
                    content=_bp("b_content"),
                ),
                [
                    {
                        "b_pk": p.existing_pk,
                        "b_version": p.stored.version,
                        "b_last_updated": p.stored.last_updated,
                        "b_deleted": p.stored.deleted,
                        "b_patient_id": p.patient_id,
                        "b_content": p.stored.content,
                    }
                    for p in old
                ],
            )
            old_pks = [p.existing_pk for p in old]
            if postgres:
                # Every index table's old rows in one round trip.
                deletes = ", ".join(
                    f"d{n} AS (DELETE FROM {table.name} WHERE resource_pk = ANY(:pks))"
                    for n, table in enumerate(s.INDEX_TABLES.values())
                )
                conn.execute(text(f"WITH {deletes} SELECT 1"), {"pks": old_pks})
            else:
                for table in s.INDEX_TABLES.values():
                    for chunk in _chunks(old_pks, 500):
                        conn.execute(delete(table).where(table.c.resource_pk.in_(chunk)))
            deleted_ids = [(p.stored.res_type, p.stored.res_id) for p in old if p.op == "delete"]
            if deleted_ids:
                ck = s.conditional_key
                for chunk in _chunks(deleted_ids, 400):
                    conn.execute(delete(ck).where(tuple_(ck.c.res_type, ck.c.res_id).in_(chunk)))
        for p in self._superseded:
            p.stored.pk = self._pending[(p.stored.res_type, p.stored.res_id)].stored.pk
        versions = sorted([*self._superseded, *pending], key=lambda p: p.order)
        # History and change-feed rows are plain values like index rows: written by the driver
        # (executemany on SQLite, COPY on PostgreSQL), in staging order (the feed's seq).
        _insert_tuples(
            conn,
            s.resource_history,
            _HISTORY_KEYS,
            [
                (
                    p.stored.res_type,
                    p.stored.res_id,
                    p.stored.version,
                    p.stored.pk,
                    p.stored.last_updated,
                    p.method,
                    p.stored.deleted,
                    p.patient_id,
                    p.stored.content,
                )
                for p in versions
            ],
        )
        _insert_tuples(
            conn,
            s.change,
            _CHANGE_KEYS,
            [
                (
                    p.stored.last_updated,
                    p.stored.res_type,
                    p.stored.res_id,
                    p.stored.version,
                    p.op,
                    p.patient_id,
                    self.site,
                )
                for p in versions
            ],
        )
        # Each table's rows as tuples with the resource's key appended: the row dicts are
        # read by one itemgetter per table (every row of a table has the same keys).
        by_table: dict[str, list[tuple[int | None, list[dict]]]] = {}
        for p in pending:
            for table_name, rows in p.index_rows.items():
                if rows:
                    by_table.setdefault(table_name, []).append((p.stored.pk, rows))
        for table_name, groups in by_table.items():
            keys = tuple(groups[0][1][0])
            get = _getter(keys)
            data = [(*get(row), pk) for pk, rows in groups for row in rows]
            _insert_tuples(conn, s.INDEX_TABLES[table_name], (*keys, "resource_pk"), data)
        for key, p in self._pending.items():
            self._known[key] = p.stored
        self.written.extend(p.stored for p in versions)
        self._pending.clear()
        self._superseded.clear()


_HEAD_KEYS = frozenset(("resourceType", "id", "meta"))
_HISTORY_KEYS = (
    "res_type",
    "res_id",
    "version",
    "resource_pk",
    "last_updated",
    "method",
    "deleted",
    "patient_id",
    "content",
)
_CHANGE_KEYS = ("at", "res_type", "res_id", "version", "op", "patient_id", "site")


def lock_keys(conn: Connection, keys: Iterable[str]) -> None:
    """Hold transaction-scoped locks on ``keys`` until the transaction ends (PostgreSQL).

    Conditional operations whose criteria can match the same resource lock the
    same key before they search, so the second searches only after the first has
    committed (READ COMMITTED: each statement sees the latest commits) and finds
    what it created. Keys are taken in sorted order (no lock-order deadlocks);
    SQLite needs none, its write transactions already run one at a time.
    """
    if conn.dialect.name != "postgresql":
        return
    for key in sorted(set(keys)):
        digest = hashlib.sha256(key.encode()).digest()
        conn.execute(
            text("SELECT pg_advisory_xact_lock(:k)"),
            {"k": int.from_bytes(digest[:8], "big", signed=True)},
        )


def bulk_insert(conn: Connection, table, rows: list[dict[str, Any]]) -> None:
    """Insert many index rows fast: ``COPY`` on PostgreSQL, a driver ``executemany`` on SQLite.

    Index rows are plain values (text, numbers, UTC datetimes), so they skip
    SQLAlchemy's per-row parameter processing, which cost more than the insert
    itself for transactions of thousands of rows. Every row of one table has
    the same keys (the indexer guarantees it).
    """
    cols = tuple(rows[0])
    _insert_tuples(conn, table, cols, list(map(_getter(cols), rows)))


def _getter(keys: tuple[str, ...]) -> Callable[[dict], tuple]:
    """A function reading ``keys`` of a dict as a tuple (C-speed ``itemgetter``)."""
    get = operator.itemgetter(*keys)
    if len(keys) == 1:
        return lambda row: (get(row),)
    return get


def _insert_tuples(conn: Connection, table, cols: tuple[str, ...], data: list) -> None:
    """``bulk_insert`` of rows already given as value tuples in the order of ``cols``."""
    postgres = conn.dialect.name == "postgresql"
    dates = [i for i, c in enumerate(cols) if c in _utc_columns(table)]
    if dates:
        data = _with_db_datetimes(data, dates, postgres)
    names = ", ".join(cols)
    if postgres:
        raw = conn.connection.driver_connection
        statement = f"COPY {table.name} ({names}) FROM STDIN"
        try:
            with raw.cursor() as cur, cur.copy(statement) as copy:
                for row in data:
                    copy.write_row(row)
        except raw.IntegrityError as err:
            # As SQLAlchemy reports it, so that Repository.write retries a lost race.
            raise sa_exc.IntegrityError(statement, None, err) from err
    else:
        marks = ", ".join("?" for _ in cols)
        conn.exec_driver_sql(f"INSERT INTO {table.name} ({names}) VALUES ({marks})", data)


@functools.cache
def _utc_columns(table) -> frozenset[str]:
    return frozenset(c.name for c in table.c if isinstance(c.type, s.UTCDateTime))


def _with_db_datetimes(data: list, positions: list[int], postgres: bool) -> list:
    """``data`` with the datetimes at ``positions`` as the column stores them.

    The same instants recur across a transaction's rows (an encounter's period in each of its
    observations, the open ends of periods), so each distinct value is converted once.
    """
    done: dict = {}
    out = []
    for row in data:
        row = list(row)
        for i in positions:
            value = row[i]
            if value is None or (postgres and value.tzinfo is None):
                continue  # naive UTC already: PostgreSQL takes it as it is
            stored = done.get(value)
            if stored is None:
                stored = done[value] = _db_datetime(value, postgres)
            row[i] = stored
        out.append(tuple(row))  # the SQLite driver takes tuples only
    return out


def _db_datetime(value: Any, postgres: bool) -> Any:
    """A UTC datetime as the column stores it: naive UTC (PostgreSQL), SQLAlchemy's text (SQLite)."""
    if value is None:
        return None
    if value.tzinfo is not None:
        value = value.astimezone(dt.UTC).replace(tzinfo=None)
    if postgres:
        return value
    # SQLAlchemy's SQLite text form: "YYYY-MM-DD HH:MM:SS.ffffff", zero-padded years
    return value.isoformat(" ", "microseconds")


def _bp(name: str):
    from sqlalchemy import bindparam

    return bindparam(name)


def same_content(stored_json: str, resource: dict[str, Any]) -> bool:
    """Whether ``resource`` says what the stored JSON says, ``meta`` version and time aside."""
    old = orjson.loads(stored_json)
    return _strip_version(old) == _strip_version(resource)


def _strip_version(resource: dict[str, Any]) -> dict[str, Any]:
    out = dict(resource)
    meta = dict(out.get("meta") or {})
    meta.pop("versionId", None)
    meta.pop("lastUpdated", None)
    if meta:
        out["meta"] = meta
    else:
        out.pop("meta", None)
    return out


def _chunks(items: list, size: int):
    for i in range(0, len(items), size):
        yield items[i : i + size]
