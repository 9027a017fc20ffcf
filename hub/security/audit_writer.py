"""Audit events of reads, appended in batches off the request path.

A read answers without waiting for its AuditEvent: :meth:`AuditWriter.submit`
puts the event on a bounded queue, and one background thread per process
appends what has queued every ``AUDIT_FLUSH_INTERVAL`` seconds, all of it in
one transaction under one chain lock, so a batch costs one commit instead of
one per request. The hash chain is the same as for events appended one by one
(:func:`hub.audit.record` chains each row to the one before it).

What is kept where:

* Writes are not batched: a write's event is appended in the write's own
  transaction (:func:`hub.security.auditing.write_hook`), so a change and its
  audit commit or roll back together.
* A full queue makes the next request wait for room (back-pressure), so memory
  stays bounded and no event is dropped.
* :meth:`AuditWriter.flush` appends everything queued and returns when it is
  committed; the audit search and ``hub audit verify`` flush first, and a
  clean shutdown (``atexit``, :meth:`hub.kernel.Hub.close`) closes the writer,
  which flushes.
* A crash (the process killed, the machine lost) loses the events still queued:
  at most one flush interval's worth of reads already answered (docs/security.md).

``AUDIT_FLUSH_INTERVAL`` 0 appends each event before the answer, as before.
"""

from __future__ import annotations

import atexit
import logging
import os
import queue
import threading
import time
import weakref
from typing import Any

from hub import audit

log = logging.getLogger("hub.audit")

MAX_QUEUED = 10_000  # events waiting at most; a full queue makes requests wait
MAX_BATCH = 500  # events appended in one transaction at most


class AuditWriter:
    """Appends queued audit events to one engine's chain from a background thread."""

    def __init__(self, engine: Any, interval: float, max_queued: int = MAX_QUEUED):
        # Weak, so that a writer kept in the per-engine registry does not keep its engine.
        self._engine = weakref.ref(engine)
        self.interval = max(0.0, float(interval))
        self.max_queued = max_queued
        self._lock = threading.Lock()
        self._queue: queue.Queue | None = None
        self._thread: threading.Thread | None = None
        self._pid = 0
        self._closed = False
        self._stopping = threading.Event()
        self._wake = threading.Event()  # a flush or the stop: append without waiting

    # -- the request side ------------------------------------------------------------

    def submit(self, event: dict[str, Any]) -> None:
        """Queue ``event`` for the next batch (appended now when batching is off)."""
        if self.interval <= 0 or self._closed:
            audit.record_now(self._engine(), event)
            return
        self._started().put(event)

    def flush(self) -> None:
        """Return when every event submitted before the call is committed."""
        q = self._queue
        if q is not None and self._pid == os.getpid() and self._thread_alive():
            self._wake.set()
            q.join()

    def close(self) -> None:
        """Stop the thread after appending what is queued (clean shutdown; idempotent)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            q, thread, mine = self._queue, self._thread, self._pid == os.getpid()
        if q is None or not mine:
            return
        q.put(_STOP)
        self._stopping.set()
        self._wake.set()
        if thread is not None and thread.is_alive():
            thread.join()
        # Whatever the thread did not take (it died, or events came in after the stop).
        self._append(_drain(q))

    def _started(self) -> queue.Queue:
        # After a fork (gunicorn workers of a preloaded app) the parent's thread is not
        # there: each process starts its own, with a queue of its own.
        if self._pid == os.getpid() and self._thread_alive():
            return self._queue  # type: ignore[return-value]
        with self._lock:
            if self._pid != os.getpid() or not self._thread_alive():
                self._pid = os.getpid()
                self._queue = queue.Queue(self.max_queued)
                self._thread = threading.Thread(
                    target=self._run, args=(self._queue,), name="hub-audit-writer", daemon=True
                )
                self._thread.start()
            return self._queue

    def _thread_alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    # -- the writer thread -------------------------------------------------------------

    def _run(self, q: queue.Queue) -> None:
        while True:
            first = q.get()
            if first is _STOP:
                q.task_done()
                return
            # Let the batch fill for one interval, then append it in one transaction.
            if not self._stopping.is_set():
                self._wake.wait(self.interval)
                # Cleared before the drain: a flush that sets it later finds its events
                # either in this batch or still queued, and the next wait then ends at once.
                self._wake.clear()
            batch = [first, *_drain(q, MAX_BATCH - 1)]
            stop = _STOP in batch
            events = [e for e in batch if e is not _STOP]
            try:
                self._append(events)
            except Exception:  # noqa: BLE001 - the thread must outlive a database outage
                log.exception("audit events not appended; retrying one by one")
                self._append_singly(events)
            finally:
                for _ in batch:
                    q.task_done()
            if stop:
                return

    def _append(self, events: list[dict[str, Any]]) -> None:
        engine = self._engine()
        if not events or engine is None:
            return
        # Each row chains to the one before it; the head is read once for the batch and
        # the rows go in together (on PostgreSQL: two round trips for the whole batch).
        audit.record_batch(engine, events)

    def _append_singly(self, events: list[dict[str, Any]]) -> None:
        for event in events:
            for attempt in range(3):
                try:
                    audit.record_now(self._engine(), event)
                    break
                except Exception:  # noqa: BLE001
                    if attempt == 2:
                        log.exception("audit event %s lost", event.get("id"))
                    time.sleep(0.1 * (attempt + 1))


class _Stop:
    """The marker that ends the writer thread."""


_STOP = _Stop()


def _drain(q: queue.Queue, most: int | None = None) -> list:
    out: list = []
    while most is None or len(out) < most:
        try:
            out.append(q.get_nowait())
        except queue.Empty:
            break
    return out


# -- one writer per engine ------------------------------------------------------------

_WRITERS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def configure(engine: Any, interval: float) -> AuditWriter:
    """The writer of ``engine`` (the hub builds it with its engine); closed at exit."""
    writer = AuditWriter(engine, interval)
    _WRITERS[engine] = writer
    return writer


@atexit.register
def close_all() -> None:
    """Close every writer of this process (interpreter exit: nothing queued is lost)."""
    for writer in list(_WRITERS.values()):
        writer.close()


def writer_of(engine: Any) -> AuditWriter | None:
    return _WRITERS.get(engine)


def flush(engine: Any) -> None:
    """Commit the queued events of ``engine`` (before the audit log is read)."""
    writer = _WRITERS.get(engine)
    if writer is not None:
        writer.flush()
