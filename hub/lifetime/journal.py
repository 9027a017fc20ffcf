"""A record of what one operation wrote, so that a Provenance can list it and an undo restore it.

Every write goes through :meth:`Journal.update` / :meth:`Journal.create`, which note the
version before (``None`` for a new resource) and after. :meth:`Journal.provenance_lists`
turns that into ``Provenance.target`` (the versions written) and ``Provenance.entity``
(role ``revision``: the versions they replaced).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from hub.storage.repository import Writer


@dataclasses.dataclass
class Written:
    res_type: str
    res_id: str
    before: int | None  # the version replaced, None for a new resource
    after: int


class Journal:
    def __init__(self, writer: Writer):
        self.writer = writer
        self.written: list[Written] = []

    def update(self, resource: dict[str, Any], res_id: str) -> bool:
        """Write ``resource`` unless identical to the current version; True when written."""
        res_type = resource["resourceType"]
        prior = self.writer.current(res_type, res_id)
        before = prior.version if prior is not None and not prior.deleted else None
        stored, _ = self.writer.update(resource, res_id)
        if prior is not None and stored.version == prior.version:
            return False
        self._note(res_type, res_id, before, stored.version)
        return True

    def delete(self, res_type: str, res_id: str) -> bool:
        prior = self.writer.current(res_type, res_id)
        stored = self.writer.delete(res_type, res_id)
        if stored is None:
            return False
        self._note(res_type, res_id, prior.version if prior else None, stored.version)
        return True

    def _note(self, res_type: str, res_id: str, before: int | None, after: int) -> None:
        for w in self.written:
            if (w.res_type, w.res_id) == (res_type, res_id):
                w.after = after  # written twice: keep the first "before"
                return
        self.written.append(Written(res_type, res_id, before, after))

    def provenance_lists(self) -> tuple[list[dict], list[dict]]:
        targets = [
            {"reference": f"{w.res_type}/{w.res_id}/_history/{w.after}"} for w in self.written
        ]
        entities = [
            {
                "role": "revision",
                "what": {"reference": f"{w.res_type}/{w.res_id}/_history/{w.before}"},
            }
            for w in self.written
            if w.before is not None
        ]
        return targets, entities


def parse_versioned(reference: str) -> tuple[str, str, int] | None:
    """``("Condition", "1", 3)`` from ``Condition/1/_history/3``."""
    parts = reference.split("/")
    if len(parts) != 4 or parts[2] != "_history" or not parts[3].isdecimal():
        return None
    return parts[0], parts[1], int(parts[3])
