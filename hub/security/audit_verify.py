"""``hub audit verify``: which events of the audit chain are missing, altered or re-chained.

One pass over the chain in ``seq`` order checks each row (its content is an
AuditEvent with the row's id, ``recorded`` and search columns; its keyed hash
covers every column) and its link to the row before it. Then:

* the start: the oldest row must be event 1 with the genesis hash as its
  ``prev_hash``, or follow the signed anchor of the latest prune;
* the checkpoints: each signed checkpoint's row must still be there with the
  same hash (rows after the last checkpoint cannot be vouched for).

Findings are merged into ranges: ``events 1–10 missing``, ``event 1043:
content does not match its hash``, ``events 5001–5400: chain after
checkpoint at seq 5000 rewritten``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hmac
import re
from typing import Any

import orjson

from hub import audit
from hub.security import audit_writer
from hub.storage.audit_log import AuditLogStore
from hub.storage.db import reading

MISSING = "missing"
# The description of a prune recorded before prunes carried a signed anchor.
_OLD_PRUNE = re.compile(r"last pruned hash ([0-9a-f]{64})")


@dataclasses.dataclass
class Finding:
    first: int
    last: int
    text: str
    where: str | None = None  # instead of the event range (a checkpoint line)

    def __str__(self) -> str:
        where = self.where or _span(self.first, self.last)
        return f"{where} {self.text}" if self.text == MISSING else f"{where}: {self.text}"


@dataclasses.dataclass
class Verification:
    checked: int = 0  # rows read
    findings: list[Finding] = dataclasses.field(default_factory=list)
    notes: list[str] = dataclasses.field(default_factory=list)
    checkpoints: int = 0  # checkpoints found in the chain

    @property
    def ok(self) -> bool:
        return not self.findings

    @property
    def broken_at(self) -> int | None:
        """The ``seq`` of the first finding (``None`` when intact)."""
        return self.findings[0].first if self.findings else None

    @property
    def problem(self) -> str | None:
        return str(self.findings[0]) if self.findings else None

    def add(self, first: int, last: int, text: str, where: str | None = None) -> None:
        self.findings.append(Finding(first, last, text, where))

    def merged(self) -> None:
        """Sort findings by event and join adjacent or overlapping ranges of one kind."""
        out: list[Finding] = []
        for f in sorted(self.findings, key=lambda f: (f.first, f.last)):
            last = out[-1] if out else None
            if (
                last is not None
                and last.text == f.text
                and last.where is None
                and f.where is None
                and f.first <= last.last + 1
            ):
                last.last = max(last.last, f.last)
            else:
                out.append(f)
        self.findings = out


def _span(first: int, last: int) -> str:
    return f"event {first}" if first == last else f"events {first}–{last}"


def _row_problem(trail: Any, row: Any, keyed_before: bool) -> tuple[str | None, dict | None]:
    """What is wrong with ``row`` on its own (``None``), and its AuditEvent."""
    try:
        event = orjson.loads(row.content)
        recorded = event["recorded"]
        when = dt.datetime.fromisoformat(recorded.replace("Z", "+00:00"))
    except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError, ValueError):
        return "content is not an AuditEvent", None
    if event.get("id") != row.id:
        return "id differs from the content's id", event
    if row.recorded != when:
        return "recorded column differs from the content", event
    if any(getattr(row, k) != v for k, v in audit.search_columns(event).items()):
        return "search columns differ from the content", event
    if row.hash.startswith(audit.KEYED):
        expected = audit.row_hash(trail, row)
    elif keyed_before:
        return "unkeyed hash after the switch to keyed hashes", event
    else:
        expected = audit.chain_hash(row.prev_hash, row.id, recorded, row.content)
    if not hmac.compare_digest(expected, row.hash):
        return "content does not match its hash", event
    return None, event


def _prune_anchor(event: dict) -> tuple[int | None, str] | None:
    """``(last pruned seq, its hash)`` if ``event`` is a prune's (``seq`` None: old format)."""
    agent = (event.get("agent") or [{}])[0]
    if not isinstance(agent, dict) or (agent.get("who") or {}).get("display") != audit.PRUNER:
        return None
    details = {
        d.get("type"): d.get("valueString")
        for e in event.get("entity") or ()
        if isinstance(e, dict)
        for d in e.get("detail") or ()
        if isinstance(d, dict)
    }
    through = str(details.get(audit.PRUNED_THROUGH) or "")
    if through.isascii() and through.isdigit() and audit.PRUNED_HASH in details:
        return int(through), str(details[audit.PRUNED_HASH])
    old = _OLD_PRUNE.search(event.get("outcomeDesc") or "")
    return (None, old.group(1)) if old else None


def verify_chain(engine: Any, trail: Any, batch: int = 5000) -> Verification:
    result = Verification()
    marks = trail.checkpoints()
    wanted = {m.seq for m in marks or () if m.signed}
    hash_at: dict[int, str] = {}
    prev = first = None  # rows (first: the oldest, if it passed its own checks)
    first_seen = False
    keyed_before = False
    anchor: tuple[int, str] | None = None  # the latest signed prune anchor
    old_anchors: set[str] = set()  # hashes named by prunes of the unkeyed era
    unkeyed: list[int] = []  # first and last seq of unkeyed rows
    after = -1
    with reading(engine) as conn:
        while True:
            rows = AuditLogStore.batch_after(conn, after, batch)
            if not rows:
                break
            for row in rows:
                after = row.seq
                result.checked += 1
                keyed = row.hash.startswith(audit.KEYED)
                problem, event = _row_problem(trail, row, keyed_before)
                if not first_seen:
                    first_seen = True
                    first = row if problem is None else None
                if problem is not None:
                    result.add(row.seq, row.seq, problem)
                elif prev is not None:
                    gap = row.seq > prev.seq + 1
                    if gap and (keyed or row.prev_hash != prev.hash):
                        result.add(prev.seq + 1, row.seq - 1, MISSING)
                    elif row.prev_hash != prev.hash:
                        result.add(row.seq, row.seq, "does not link to the event before it")
                if problem is None and event is not None:
                    found = _prune_anchor(event)
                    if found is not None and found[0] is not None and keyed:
                        anchor = (found[0], found[1])
                    elif found is not None:
                        old_anchors.add(found[1])
                if keyed:
                    keyed_before = True
                else:
                    unkeyed[1:] = [row.seq] if unkeyed else [row.seq, row.seq]
                if row.seq in wanted:
                    hash_at[row.seq] = row.hash
                prev = row
    _check_start(result, first, anchor, old_anchors)
    if unkeyed:
        result.notes.append(
            f"{_span(unkeyed[0], unkeyed[-1])} use the unkeyed SHA-256 rule of earlier versions"
        )
    _check_checkpoints(result, marks, hash_at, prev.seq if prev else 0, anchor, trail)
    result.merged()
    return result


def _check_start(result: Verification, first: Any, anchor, old_anchors: set[str]) -> None:
    if first is None:
        return
    if anchor is not None:
        start, start_hash = anchor[0] + 1, anchor[1]
        result.notes.append(f"{_span(1, anchor[0])} pruned")
    else:
        start, start_hash = 1, audit.GENESIS
    if first.prev_hash == start_hash or (
        not first.hash.startswith(audit.KEYED) and first.prev_hash in old_anchors
    ):
        return
    if first.seq > start:
        result.add(start, first.seq - 1, MISSING)
    else:
        result.add(first.seq, first.seq, "does not link to the start of the chain")


def _check_checkpoints(result, marks, hash_at, last_seq: int, anchor, trail) -> None:
    if marks is None:
        result.notes.append(
            f"no checkpoint file ({trail.checkpoint_file}) yet: deletion of the newest events"
            " cannot be detected"
        )
        return
    pruned = anchor[0] if anchor else 0
    good = None  # the latest checkpoint found intact
    for m in marks:
        if not m.signed:
            result.add(m.seq, m.seq, "not signed with the audit key", f"checkpoint line {m.line}")
        elif m.seq <= pruned:
            continue
        elif m.seq > last_seq:
            result.add(last_seq + 1, m.seq, MISSING)
        elif m.seq not in hash_at:
            continue  # the row is gone from the middle: reported as missing already
        elif hash_at[m.seq] == m.hash:
            good = m.seq if good is None else max(good, m.seq)
            result.checkpoints += 1
        else:
            since = good if good is not None else pruned
            text = (
                f"chain after checkpoint at seq {good} rewritten"
                if good is not None
                else f"chain differs from the checkpoint at seq {m.seq}"
            )
            result.add(since + 1, m.seq, text)
    newest = max((m.seq for m in marks if m.signed), default=0)
    if last_seq > newest:
        result.notes.append(
            f"{_span(newest + 1, last_seq)} are newer than the last checkpoint: their deletion"
            " would not be detected"
        )


def verify(engine: Any, batch: int = 5000) -> Verification:
    """Check the whole chain of ``engine``'s audit trail (``hub audit verify``)."""
    audit_writer.flush(engine)  # this process's queued events belong to the chain too
    return verify_chain(engine, audit.trail_of(engine), batch)
