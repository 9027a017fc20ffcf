"""Time limits on PostgreSQL work, enforced without a round trip to the server.

Setting ``statement_timeout`` costs a statement of its own (two when the old value
is put back): as much as the search it guards. Instead, a block of work on a
connection is registered with a deadline in this process's :class:`Watchdog`,
one background thread that sends the server a cancel request (``cancel_safe``,
on a connection of its own) for any block still running at its deadline. The
statement then fails with ``query_canceled`` (SQLSTATE 57014), as a
``statement_timeout`` would.

Why this is safe for the connection's next user:

* The server ignores a cancel that arrives while the connection is idle (between
  statements, or after the last one), so a cancel racing the block's end does no harm.
* A block leaves the watchdog (:meth:`Watchdog.guard` ends) under the lock the
  watchdog holds while it cancels, and before its connection goes back to the pool:
  once it has left, no cancel is sent for it, and a cancel sent before has reached
  the server's process (the cancel request completes only after the server signalled
  it), which takes it while idle and drops it.
* A block past its deadline whose cancel landed between two of its statements is
  cancelled again every :data:`RECANCEL_SECONDS` until it ends.

The limit is on the whole block (on SQLite the same: a progress handler), not on
each statement.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

log = logging.getLogger(__name__)

# A block still running this long after its cancel (it landed between two statements)
# is cancelled again.
RECANCEL_SECONDS = 0.1
# How long one cancel request may take before the watchdog gives up on it.
CANCEL_TIMEOUT = 5.0


class _Entry:
    __slots__ = ("conn", "deadline")

    def __init__(self, conn: Any, deadline: float):
        self.conn = conn  # the driver's connection (psycopg), cancelled at the deadline
        self.deadline = deadline


class Watchdog:
    """Cancels the registered blocks of work that run past their deadline."""

    def __init__(self, clock=time.monotonic):
        self._clock = clock
        self._pid = 0
        self._cond = threading.Condition(threading.Lock())
        self._entries: dict[int, _Entry] = {}
        self._next_key = 0
        # When the thread wakes next (inf: it waits for a registration).
        self._wake_at = float("inf")
        self._thread: threading.Thread | None = None

    @contextmanager
    def guard(self, driver_conn: Any, seconds: float) -> Iterator[None]:
        """Cancel what ``driver_conn`` runs in the block once it has run ``seconds``."""
        key = self._register(driver_conn, seconds)
        try:
            yield
        finally:
            with self._cond:
                self._entries.pop(key, None)

    def _register(self, driver_conn: Any, seconds: float) -> int:
        deadline = self._clock() + seconds
        if self._pid != os.getpid():
            self._start()
        with self._cond:
            key = self._next_key = self._next_key + 1
            self._entries[key] = _Entry(driver_conn, deadline)
            # The thread sleeps until the earliest deadline it knew of; wake it only for an
            # earlier one (a shorter limit, or none was pending), not on every block.
            if deadline < self._wake_at:
                self._cond.notify()
        return key

    def _start(self) -> None:
        with _STARTING:
            if self._pid == os.getpid():
                return
            # A new process (a gunicorn worker forked from a preloaded app) has no thread
            # of its parent's, and the parent's lock may have been held at the fork.
            self._cond = threading.Condition(threading.Lock())
            self._entries = {}
            self._wake_at = float("inf")
            self._thread = threading.Thread(
                target=self._run, args=(self._cond,), name="hub-deadlines", daemon=True
            )
            self._thread.start()
            self._pid = os.getpid()

    def _run(self, cond: threading.Condition) -> None:
        with cond:
            while True:
                now = self._clock()
                due = [e for e in self._entries.values() if e.deadline <= now]
                for entry in due:
                    # Under the lock: a block that ended has left, and one that is ending
                    # waits until its cancel has reached the server (see the module's notes).
                    _cancel(entry.conn)
                    entry.deadline = self._clock() + RECANCEL_SECONDS
                self._wake_at = min((e.deadline for e in self._entries.values()), default=None)
                if self._wake_at is None:
                    self._wake_at = float("inf")
                    cond.wait()
                else:
                    cond.wait(max(0.0, self._wake_at - self._clock()))


def _cancel(driver_conn: Any) -> None:
    try:
        driver_conn.cancel_safe(timeout=CANCEL_TIMEOUT)
    except Exception:  # noqa: BLE001 - a closed or broken connection has nothing to cancel
        log.warning("cancelling an overrunning statement failed", exc_info=True)


# Taken to start a process's thread; made anew in a child process, as the parent's may
# have been held by another thread at the fork.
_STARTING = threading.Lock()


def _after_fork() -> None:
    global _STARTING
    _STARTING = threading.Lock()


os.register_at_fork(after_in_child=_after_fork)

_WATCHDOG = Watchdog()


def guard(driver_conn: Any, seconds: float):
    """:meth:`Watchdog.guard` of this process's watchdog."""
    return _WATCHDOG.guard(driver_conn, seconds)
