"""The MLLP listener's message handler: route, store, process, acknowledge.

The acknowledgement is sent only after the message is committed to the inbox:

* ``AA`` - stored and processed (``done`` or ``partial``);
* ``AE`` + ``ERR`` - stored, but mapping or validation refused it (kept in
  the inbox as ``failed``/``quarantined``; an engineer can fix and replay);
* ``AR`` + ``ERR`` - not even parseable or routable to a site (nothing stored:
  there is no site to keep it for; the sender keeps it).

A message re-sent after a lost ACK (same MSH-10, same bytes) is answered from
its first processing, never processed twice. Messages arriving together on
several connections share their commits (:class:`GroupCommitter`); each is
acknowledged only after the commit that holds it.
"""

from __future__ import annotations

import logging
import queue
import threading
from concurrent.futures import Future
from typing import Any

from hub import outcomes
from hub.ingest.pipeline import runs

log = logging.getLogger("hub.mllp")

# A committer thread with nothing to do for this long ends; the next message starts another.
IDLE_SECONDS = 5.0


class GroupCommitter:
    """Stores the messages of all connections in shared transactions (group commit).

    Each connection's thread hands its message over and waits. One committer
    thread takes whatever has arrived (up to ``INGEST_GROUP_SIZE``), stores it
    with :meth:`~hub.ingest.pipeline.Pipeline.ingest_many` (one inbox commit,
    one storing transaction per group) and wakes each waiting thread with its
    own result. A lone sender's message goes at once, in a group of one; the
    busier the senders, the larger the groups and the fewer the commits. The
    one committer is also the one writer SQLite wants.
    """

    def __init__(self, hub: Any):
        self.hub = hub
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def submit(self, site: str, raw: bytes, control_id: str | None) -> Any:
        """Store and process one message; returns its ``IngestResult`` once committed."""
        future: Future = Future()
        self._queue.put((site, raw, control_id, future))
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._run, name="mllp-committer", daemon=True
                )
                self._thread.start()
        return future.result()

    def _run(self) -> None:
        size = max(1, int(self.hub.config.get("INGEST_GROUP_SIZE", 50)))
        while True:
            try:
                first = self._queue.get(timeout=IDLE_SECONDS)
            except queue.Empty:
                with self._lock:
                    if self._queue.empty():
                        self._thread = None
                        return
                continue
            batch = [first]
            while len(batch) < size:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            self._commit(batch)

    def _commit(self, batch: list[tuple]) -> None:
        # One ingest_many per run of one site, in arrival order.
        for run in runs(batch, lambda m: m[0]):
            try:
                results = self.hub.pipeline.ingest_many(
                    run[0][0], [m[1] for m in run], source_keys=[m[2] for m in run], fmt="hl7v2"
                )
            except Exception as err:  # noqa: BLE001 - handed to each waiting connection
                for m in run:
                    m[3].set_exception(err)
            else:
                for m, result in zip(run, results, strict=True):
                    m[3].set_result(result)


def make_handler(hub: Any):
    """A ``handler(bytes) -> ack bytes`` for ``fhirhub_plugins.hl7v2.MLLPServer``."""
    from fhirhub_plugins.hl7v2 import make_ack
    from fhirhub_plugins.hl7v2 import parse_message
    from fhirhub_plugins.hl7v2 import route

    committer = GroupCommitter(hub)

    def handle(raw: bytes) -> bytes:
        try:
            msg = parse_message(raw)
        except outcomes.OperationOutcomeError as err:
            first = err.issues[0] if err.issues else {}
            return make_ack(
                raw, "AR", first.get("diagnostics"), (first.get("expression") or [None])[0]
            )
        site = route(msg, hub.sites)
        if site is None:
            text = f"no site accepts MSH-3 {msg.sending_application!r} / MSH-4 {msg.sending_facility!r}"
            return make_ack(msg, "AR", text, "MSH-3")
        try:
            result = committer.submit(site.name, raw, msg.control_id)
        except outcomes.OperationOutcomeError as err:  # e.g. the inbox itself refused it
            return make_ack(msg, "AR", err.issues[0].get("diagnostics") if err.issues else str(err))
        item = result.item
        if item.status in ("done", "partial"):
            return make_ack(msg, "AA")
        if item.status == "pending":  # stored; processing later (worker mode)
            return make_ack(msg, "AA")
        issues = [
            i
            for i in (item.outcome or {}).get("issue", [])
            if i.get("severity") in ("error", "fatal")
        ]
        first = issues[0] if issues else {}
        return make_ack(
            msg,
            "AE",
            first.get("diagnostics") or item.status,
            (first.get("expression") or [None])[0],
        )

    return handle
