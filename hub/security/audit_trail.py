"""What anchors the audit chain outside the database: its key and its checkpoints.

* The key of the chain's HMAC comes from ``AUDIT_KEY`` (``HUB_AUDIT_KEY``) or
  from the file ``AUDIT_KEY_FILE`` (default ``<instance>/audit_key``, generated
  with mode 0600 on first use). It is never stored in the database, so someone
  who can write the database cannot compute a valid row hash.
* Checkpoints: every ``AUDIT_CHECKPOINT_EVENTS`` appends or
  ``AUDIT_CHECKPOINT_SECONDS`` (whichever comes first, checked at append time)
  the committed head of the chain ``{seq, hash, recorded, count, mac}`` is
  appended as a JSON line to ``AUDIT_CHECKPOINT_FILE`` (fsynced) and, when
  ``AUDIT_CHECKPOINT_URL`` is set, POSTed there. ``hub audit verify`` checks
  that each checkpointed row is still in the chain with the same hash, which
  detects deletion of the newest rows and a chain rebuilt after a checkpoint.

One :class:`Trail` per engine (:func:`configure`, called by the hub when it
builds its engine; :func:`trail_of` for the appenders).
"""

from __future__ import annotations

import dataclasses
import hmac
import logging
import os
import threading
import time
import urllib.error
import urllib.request
import weakref
from pathlib import Path
from typing import Any

import orjson

from hub.config import setting
from hub.security.hashing import instance_key
from hub.security.hashing import keyed_digest
from hub.storage.audit_log import AuditLogStore

log = logging.getLogger("hub.audit")

POST_TIMEOUT = 10  # seconds a checkpoint POST may take
# conn.info key: (weak reference to the root transaction, seq) of the last row this connection
# appended, so a checkpoint never records a row that its own transaction may still roll back.
_APPENDED = "hub_audit_appended"


@dataclasses.dataclass
class Checkpoint:
    line: int  # 1-based line number in the file
    seq: int
    hash: str
    signed: bool  # the line's mac is right (made with this key)


class Trail:
    """The key and checkpoint policy of one database's audit chain."""

    def __init__(
        self,
        key: bytes,
        checkpoint_file: Path,
        every: int = 1000,
        seconds: float = 300,
        url: str = "",
        clock=time.monotonic,
    ):
        self._keyed = hmac.new(key, digestmod="sha256")
        self.checkpoint_file = checkpoint_file
        self.every = max(1, int(every))
        self.seconds = float(seconds)
        self.url = url
        self._clock = clock
        self._lock = threading.Lock()
        self._since = 0
        self._last_at = clock()

    def digest(self, parts) -> str:
        return keyed_digest(self._keyed, parts)

    # -- writing checkpoints --------------------------------------------------------------

    def appended(self, conn: Any, head: Any, seq: int) -> None:
        """Called by the appender, under the chain lock, after inserting row ``seq``.

        ``head`` is the row before it: committed unless this same transaction
        appended it, and then the checkpoint waits for a later append.
        """
        # A weak reference, so no finished transaction (and its connection) is kept alive.
        txn = conn.get_transaction()
        mine = conn.info.get(_APPENDED)
        conn.info[_APPENDED] = (weakref.ref(txn), seq)
        with self._lock:
            self._since += 1
            due = self._since >= self.every or self._clock() - self._last_at >= self.seconds
            if not due or head is None or (mine and mine[0]() is txn and mine[1] == head.seq):
                return
            count, self._since, self._last_at = self._since, 0, self._clock()
        self.write(head.seq, head.hash, self.recorded(conn, head.seq), count, post="background")

    @staticmethod
    def recorded(conn: Any, seq: int) -> Any:
        """Row ``seq``'s ``recorded`` (read only for a checkpoint, not on every append)."""
        return AuditLogStore.recorded_at(conn, seq)

    def write(self, seq: int, hash_: str, recorded: Any, count: int, post: str = "now") -> dict:
        """Append a checkpoint line (fsynced) and send it to the endpoint, if one is set.

        ``post="now"`` (``hub audit checkpoint``) posts in this thread and raises
        ``OSError`` on any failure; ``"background"`` (an append made it due) posts
        in a thread of its own and only logs failures, as the append has to succeed.
        """
        mark = {"seq": seq, "hash": hash_, "recorded": _instant(recorded), "count": count}
        mark["mac"] = self.digest(_mark_parts(mark))
        line = orjson.dumps(mark) + b"\n"
        try:
            self.checkpoint_file.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.checkpoint_file, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.write(fd, line)
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as err:
            if post == "now":
                raise
            log.error(
                "audit checkpoint at seq %s not written to %s: %s", seq, self.checkpoint_file, err
            )
        if self.url:
            if post == "now":
                self.post(line)
            else:
                threading.Thread(target=self._post_logged, args=(line,), daemon=True).start()
        return mark

    def post(self, line: bytes) -> None:
        req = urllib.request.Request(
            self.url, data=line, method="POST", headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(req, timeout=POST_TIMEOUT) as resp:
            resp.read()

    def _post_logged(self, line: bytes) -> None:
        try:
            self.post(line)
        except (OSError, urllib.error.URLError) as err:
            log.error("audit checkpoint not sent to %s: %s", self.url, err)

    # -- reading them back ----------------------------------------------------------------

    def checkpoints(self) -> list[Checkpoint] | None:
        """The checkpoint file's lines, or ``None`` when there is no file yet."""
        try:
            raw = self.checkpoint_file.read_bytes()
        except FileNotFoundError:
            return None
        marks = []
        for number, line in enumerate(raw.splitlines(), 1):
            try:
                mark = orjson.loads(line)
                seq, hash_ = int(mark["seq"]), str(mark["hash"])
                signed = mark["mac"] == self.digest(_mark_parts(mark))
            except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
                seq, hash_, signed = 0, "", False
            marks.append(Checkpoint(number, seq, hash_, signed))
        return marks


def _mark_parts(mark: dict) -> list[str]:
    return ["checkpoint", str(mark["seq"]), mark["hash"], mark["recorded"], str(mark["count"])]


def _instant(value: Any) -> str:
    return value if isinstance(value, str) else value.isoformat(timespec="microseconds")


# -- one trail per engine -----------------------------------------------------------------

_TRAILS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def configure(
    engine: Any, config: dict, instance_path: str | os.PathLike, clock=time.monotonic
) -> Trail:
    """Build the trail of ``engine`` from ``config`` (the hub does this for its engine)."""
    folder = Path(instance_path)
    key = str(setting(config, "AUDIT_KEY"))
    if not key:
        key_file = Path(setting(config, "AUDIT_KEY_FILE") or folder / "audit_key")
        key = instance_key(key_file)
    trail = Trail(
        key.encode(),
        Path(setting(config, "AUDIT_CHECKPOINT_FILE") or folder / "audit-checkpoints.jsonl"),
        every=int(setting(config, "AUDIT_CHECKPOINT_EVENTS")),
        seconds=float(setting(config, "AUDIT_CHECKPOINT_SECONDS")),
        url=str(setting(config, "AUDIT_CHECKPOINT_URL")),
        clock=clock,
    )
    _TRAILS[engine] = trail
    return trail


def trail_of(engine: Any) -> Trail:
    try:
        return _TRAILS[engine]
    except KeyError:
        raise RuntimeError(
            "this engine has no audit trail: build it through hub.app.Hub"
            " (or call hub.security.audit_trail.configure)"
        ) from None
