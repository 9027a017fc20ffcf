"""The MLLP listener's message handler: route, parse, store, process, acknowledge.

A message is routed to its site on its raw MSH (MSH-3/MSH-4 are ASCII in every
feed), then decoded in that site's character set (MSH-18 when it names a known
one, else the manifest's ``encoding``, else UTF-8) and parsed, once: that
parse is the one the adapter maps. The acknowledgement is sent only after the
message is committed to the inbox:

* ``AA`` - stored and processed (``done`` or ``partial``), with an ``ERR``
  segment of severity ``W`` for each warning (what was flagged);
* ``AE`` + ``ERR`` - stored, but mapping or validation refused it (kept in
  the inbox as ``failed``/``quarantined``; an engineer can fix and replay);
  also (``206``) a copy still being processed elsewhere;
* ``AR`` + ``ERR`` - not routable to a site, not readable (bad bytes, control
  characters) or over the limits (nothing stored: the sender keeps it).

ERR-3 names the problem from HL7 table 0357
(:data:`.mllp.ERROR_CONDITIONS`), ERR-2 where it is.

A message re-sent after a lost ACK (same MSH-10, same bytes) is answered from
its first processing, never processed twice; if that processing died (the
claim expired), the re-send takes it over. Messages arriving together on
several connections share their commits (:class:`GroupCommitter`); each is
acknowledged only after the commit that holds it.
"""

from __future__ import annotations

import logging
import queue
import threading
from concurrent.futures import Future
from typing import TYPE_CHECKING
from typing import Any

from fhirhub_plugins.hl7v2.api import route
from fhirhub_plugins.hl7v2.mllp import make_ack
from fhirhub_plugins.hl7v2.parse import Limits
from fhirhub_plugins.hl7v2.parse import parse_message
from fhirhub_plugins.hl7v2.parse import read_header
from hub.plugin_api import OperationOutcomeError
from hub.plugin_api import http_status
from hub.plugin_api import ingest_many
from hub.plugin_api import issue
from hub.plugin_api import runs
from hub.plugin_api import setting

if TYPE_CHECKING:
    from hub.plugin_api import Hub

log = logging.getLogger("fhirhub.hl7v2.listener")

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

    def __init__(self, hub: Hub):
        self.hub = hub
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def submit(self, site: str, raw: bytes, msg: Any) -> Any:
        """Store and process one parsed message; returns its ``IngestResult`` once committed."""
        future: Future = Future()
        self._queue.put((site, raw, msg, future))
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._run, name="mllp-committer", daemon=True
                )
                self._thread.start()
        return future.result()

    def _run(self) -> None:
        size = max(1, int(setting(self.hub.config, "INGEST_GROUP_SIZE")))
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
                results = ingest_many(
                    self.hub,
                    run[0][0],
                    [m[1] for m in run],
                    source_keys=[m[2].control_id for m in run],
                    parsed=[m[2] for m in run],
                    fmt="hl7v2",
                )
            except Exception as err:  # noqa: BLE001 - handed to each waiting connection
                for m in run:
                    m[3].set_exception(err)
            else:
                for m, result in zip(run, results, strict=True):
                    m[3].set_result(result)


def make_handler(hub: Hub):
    """A ``handler(bytes) -> ack bytes`` for :class:`.mllp.MLLPServer`, storing into ``hub``."""
    # Two lanes, each a committer of its own. A large message (more than
    # MLLP_LARGE_MESSAGE_SEGMENTS segments: a long ORU takes seconds to map and store)
    # goes to the second, so it never holds up the small messages of other senders
    # queued behind it in the one committer; large messages wait only for each other.
    # Two committers are at most two writers, which SQLite still serialises on its own
    # lock, but only for the commits: parsing, mapping and checks run side by side.
    small, large = GroupCommitter(hub), GroupCommitter(hub)

    def handle(raw: bytes) -> bytes:
        header = read_header(raw)
        if header is None:
            return make_ack(
                raw,
                "AR",
                "an HL7 v2 message must start with an MSH segment",
                "segment 1",
                error_code="structure",
            )
        site = route(header, hub.sites)
        if site is None:
            text = (
                f"no site accepts MSH-3 {header.sending_application!r} / "
                f"MSH-4 {header.sending_facility!r}"
            )
            return make_ack(header, "AR", text, "MSH-3", error_code="not-found")
        try:
            msg = parse_message(raw, site, Limits.from_settings(hub.config))
        except OperationOutcomeError as err:
            return make_ack(header, "AR", issues=err.issues)
        threshold = int(setting(hub.config, "MLLP_LARGE_MESSAGE_SEGMENTS"))
        lane = large if threshold and len(msg.segments) > threshold else small
        try:
            result = lane.submit(site.name, raw, msg)
        except OperationOutcomeError as err:  # e.g. the inbox itself refused it
            return make_ack(msg, "AR", issues=err.issues)
        return answer(msg, result.item)

    return handle


def answer(msg: Any, item: Any) -> bytes:
    """The ACK for a message stored as inbox ``item`` (see the module's docstring)."""
    issues = (item.outcome or {}).get("issue", [])
    flagged = [i for i in issues if i.get("severity") in ("fatal", "error", "warning")]
    if item.status in ("done", "partial", "pending"):  # pending: stored; processing later
        return make_ack(msg, "AA", issues=flagged)
    if item.status == "processing":  # a copy sent earlier is being processed right now
        text = f"inbox item {item.id} is being processed; send it again later for its answer"
        return make_ack(msg, "AE", text, error_code="lock-error")
    if not flagged:
        flagged = [issue("error", "processing", item.status)]
    # Refused as too large: the sender must not send it again as it is.
    code = "AR" if http_status(item.outcome) == 413 else "AE"
    return make_ack(msg, code, issues=flagged)
