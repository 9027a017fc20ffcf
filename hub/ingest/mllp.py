"""The MLLP listener's message handler: route, store, process, acknowledge.

The acknowledgement is sent only after the message is committed to the inbox:

* ``AA`` - stored and processed (``done`` or ``partial``);
* ``AE`` + ``ERR`` - stored, but mapping or validation refused it (kept in
  the inbox as ``failed``/``quarantined``; an engineer can fix and replay);
* ``AR`` + ``ERR`` - not even parseable or routable to a site (nothing stored:
  there is no site to keep it for; the sender keeps it).

A message re-sent after a lost ACK (same MSH-10, same bytes) is answered from
its first processing, never processed twice.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from typing import Any

from hub import outcomes

log = logging.getLogger("hub.mllp")


def make_handler(hub: Any):
    """A ``handler(bytes) -> ack bytes`` for ``fhirhub_plugins.hl7v2.MLLPServer``."""
    from fhirhub_plugins.hl7v2 import make_ack
    from fhirhub_plugins.hl7v2 import parse_message
    from fhirhub_plugins.hl7v2 import route

    # SQLite takes one writer at a time and makes the others retry with growing
    # sleeps (busy timeout): with several senders that retry, not the work, set
    # the tail latency. Queueing the connections' threads on a lock instead
    # hands the database over at once. PostgreSQL writers run side by side.
    one_writer = threading.Lock() if hub.engine.dialect.name == "sqlite" else None

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
            with one_writer or contextlib.nullcontext():
                result = hub.pipeline.ingest(site.name, raw, source_key=msg.control_id, fmt="hl7v2")
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
