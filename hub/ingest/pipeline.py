"""The one inbound write path: inbox -> detect -> map -> identity -> validate -> store.

:meth:`Pipeline.ingest` stores the raw payload in the inbox (committed before
anything else happens), then :meth:`Pipeline.process` maps it with the site's
adapter plugin, joins its Patients to the people the hub already knows, adds a
``Provenance`` naming the site and the source message, and stores everything
as one FHIR transaction through the same code as a REST client's transaction.
The inbox row's status and outcome are written in that same database
transaction, so a message is either stored and marked done, or not stored and
marked failed (replayable), never half of each.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
from collections.abc import Callable
from collections.abc import Iterator
from collections.abc import MutableMapping
from typing import Any

import orjson
from sqlalchemy import select
from sqlalchemy.dialects import postgresql
from sqlalchemy.dialects import sqlite

from hub import outcomes
from hub.fhir import bundles
from hub.fhir.service import Quarantined
from hub.fhir.service import WriteOptions
from hub.identity.ids import stable_id
from hub.identity.matching import Thresholds
from hub.ingest import identity
from hub.ingest.inbox import REPLAYABLE
from hub.ingest.inbox import Inbox
from hub.ingest.inbox import InboxItem
from hub.lifetime import ingest as lifetime_ingest
from hub.mapping import InboundMessage
from hub.mapping import MappingContext
from hub.storage import schema as s

log = logging.getLogger("hub.ingest")

# The format each built-in adapter maps; a site's ``format`` setting overrides.
ADAPTER_FORMATS = {"hl7v2": "hl7v2", "cda": "cda", "va_registry": "va-registry"}


@dataclasses.dataclass
class IngestResult:
    item: InboxItem
    duplicate: bool

    @property
    def status(self) -> str:
        return self.item.status

    @property
    def outcome(self) -> dict | None:
        return self.item.outcome


class Pipeline:
    def __init__(self, hub: Any):
        self.hub = hub
        self.inbox = Inbox(hub.engine)

    # -- entry points --------------------------------------------------------

    def ingest(
        self,
        site_name: str,
        body: bytes,
        *,
        content_type: str | None = None,
        source_key: str | None = None,
        fmt: str | None = None,
        process: bool = True,
    ) -> IngestResult:
        """Store ``body`` for ``site_name`` and (by default) process it at once.

        A payload already received under the same key is not processed again;
        its earlier result is returned with ``duplicate=True``.
        """
        site = self.site(site_name)
        fmt = fmt or self.format_for(site, body, content_type)
        key = source_key or self.source_key(fmt, body, site)
        item, duplicate = self.inbox.receive(
            site.name, body, source_key=key, fmt=fmt, content_type=content_type, claim=process
        )
        if duplicate or not process:
            return IngestResult(item, duplicate)
        # The item was committed above; process it from memory (body included)
        # and answer with what was marked, without reading the row back.
        item.body = body
        return IngestResult(self._process_item(item), False)

    def process(self, item_id: int) -> InboxItem:
        """Map and store one inbox item; returns it with its new status."""
        item = self.inbox.get(item_id, with_body=True)
        if item is None:
            raise outcomes.not_found(f"inbox item {item_id} does not exist")
        self._process_item(item)
        return self.inbox.get(item.id)

    def _process_item(self, item: InboxItem) -> InboxItem:
        """Process ``item``, marking its inbox row; returns the item as marked."""
        try:
            marked = self._process(item)
        except Quarantined as err:
            marked = self.inbox.mark_alone(item.id, "quarantined", err.outcome)
        except outcomes.OperationOutcomeError as err:
            marked = self.inbox.mark_alone(item.id, "failed", _with_status(err.outcome, err.status))
        except Exception as err:  # noqa: BLE001 - an adapter bug must not lose the message
            log.exception("inbox item %s: unexpected error", item.id)
            oo = outcomes.outcome(
                outcomes.issue(
                    "fatal", "exception", f"Unexpected error while processing: {type(err).__name__}"
                )
            )
            marked = self.inbox.mark_alone(item.id, "failed", _with_status(oo, 500))
        return dataclasses.replace(item, body=None, attempts=item.attempts + 1, **marked)

    def replay(
        self, item_ids: list[int] | None = None, status: str | list[str] = ("failed",)
    ) -> list[InboxItem]:
        """Process again the given items, or every item with ``status``."""
        if item_ids is None:
            item_ids = [
                i.id
                for i in reversed(
                    self.inbox.list(
                        status=list(status) if not isinstance(status, str) else status, limit=100000
                    )
                )
            ]
        out = []
        for item_id in item_ids:
            item = self.inbox.get(item_id)
            if item is None:
                raise outcomes.not_found(f"inbox item {item_id} does not exist")
            if item.status not in REPLAYABLE:
                raise outcomes.conflict(
                    f"inbox item {item_id} is {item.status}; only {', '.join(REPLAYABLE)} items are replayed"
                )
            out.append(self.process(item_id))
        return out

    def process_pending(self, limit: int = 1000) -> int:
        """Claim and process pending items oldest first (the worker loop); returns how many."""
        lease = int(self.hub.config.get("INBOX_LEASE_SECONDS", 300))
        ids = self.inbox.claim(limit, lease)
        for item_id in ids:
            self.process(item_id)
        return len(ids)

    # -- helpers ---------------------------------------------------------------

    def site(self, name: str) -> Any:
        sites = getattr(self.hub, "sites", {}) or {}
        if name not in sites:
            raise outcomes.error(
                404,
                "not-found",
                f"Unknown site {name!r}; known sites: {', '.join(sorted(sites)) or 'none'}",
            )
        return sites[name]

    def format_for(self, site: Any, body: bytes, content_type: str | None) -> str:
        fmt = getattr(site, "format", None) or ADAPTER_FORMATS.get(site.adapter)
        if fmt:
            return fmt
        detected = self.hub.pm.hook.detect_format(body=body, content_type=content_type)
        if not detected:
            raise outcomes.error(415, "not-supported", "No adapter recognises this payload")
        return detected

    def source_key(self, fmt: str, body: bytes, site: Any) -> str | None:
        """The sender's key for the payload (``source_key`` hook), if the adapter knows one."""
        return self.hub.pm.hook.source_key(fmt=fmt, body=body, site=site)

    def map(
        self,
        site: Any,
        body: bytes,
        content_type: str | None = None,
        *,
        fmt: str | None = None,
        source_key: str | None = None,
        state: dict[str, Any] | None = None,
    ) -> tuple[dict, list[dict]]:
        """The mapping step alone: ``(transaction Bundle, issues)`` for one payload.

        Nothing is stored and no identity resolution happens, so the result is
        exactly what the site's adapter produces (what conformance kits
        compare). ``state`` is the site's adapter state (empty by default).
        Raises :class:`~hub.outcomes.OperationOutcomeError` when the adapter
        rejects the payload.
        """
        fmt = fmt or self.format_for(site, body, content_type)
        return map_payload(
            self.hub.pm,
            self.hub.code_maps,
            site,
            body,
            fmt=fmt,
            content_type=content_type,
            source_key=source_key,
            state=state,
        )

    def _process(self, item: InboxItem) -> dict[str, Any]:
        """Map, resolve and store ``item``; returns the values its inbox row was marked with."""
        site = self.site(item.site)
        state = SiteState(lambda: self._load_state(site.name))
        bundle, issues = map_payload(
            self.hub.pm,
            self.hub.code_maps,
            site,
            item.body or b"",
            fmt=item.format or "",
            content_type=item.content_type,
            source_key=item.source_key,
            state=state,
        )
        tasks = identity.resolve(
            self.hub.service, bundle, Thresholds.from_settings(self.hub.config)
        )
        merges = lifetime_ingest.merge_requests(bundle)
        entries = bundle.setdefault("entry", [])
        for task in tasks:
            entries.append(
                {"resource": task, "request": {"method": "PUT", "url": f"Task/{task['id']}"}}
            )
        if entries:
            self._add_provenance(item, site, entries)
        errors = [i for i in issues if i.get("severity") in ("error", "fatal")]
        status = "partial" if errors else "done"
        opts = WriteOptions(prefer_return="minimal", site=site)
        marked: dict[str, Any] = {}

        def finish(writer, response_entries):
            if self.hub.config.get("LIFETIME_INLINE", True):
                org = getattr(site, "organization", None) or {}
                agent = {"who": {"display": org.get("name") or site.name}}
                lifetime_ingest.after_store(writer, bundle, merges, agent)
            summary = _summary(response_entries)
            oo = outcomes.outcome(
                outcomes.issue(
                    "information",
                    "informational",
                    f"{summary['written']} resource(s) written from {item.source_key}",
                ),
                *issues,
            )
            self._save_state(writer.conn, site.name, state)
            # A retried attempt marks again: the last (committed) one is kept.
            marked.update(
                self.inbox.mark(writer.conn, item.id, status, _with_status(oo, 200), summary)
            )

        if entries:
            bundle["type"] = "transaction"
            bundles.process(self.hub.service, bundle, "", opts, within=finish)
        else:
            with self.hub.repo.writing(site.name) as writer:
                finish(writer, [])
        return marked

    def _add_provenance(self, item: InboxItem, site: Any, entries: list[dict]) -> None:
        """Name the source message in the adapter's Provenance, or add one that does."""
        ours = self._provenance(item, site, entries)
        theirs = [
            e["resource"]
            for e in entries
            if (e.get("resource") or {}).get("resourceType") == "Provenance"
        ]
        if theirs:
            for prov in theirs:
                prov.setdefault("entity", []).extend(ours["resource"]["entity"])
        else:
            entries.append(ours)

    def _provenance(self, item: InboxItem, site: Any, entries: list[dict]) -> dict:
        targets = []
        for e in entries:
            res = e.get("resource") or {}
            if e.get("fullUrl"):
                targets.append({"reference": e["fullUrl"]})
            elif res.get("id") and (e.get("request") or {}).get("method") in (
                "PUT",
                "POST",
                "PATCH",
            ):
                targets.append({"reference": f"{res['resourceType']}/{res['id']}"})
            elif (e.get("request") or {}).get("method") == "PATCH":
                targets.append({"reference": e["request"]["url"]})
        org = getattr(site, "organization", None) or {}
        agent = {"who": {"display": org.get("name") or site.name}}
        if org.get("identifier"):
            agent["who"]["identifier"] = org["identifier"]
        prov_id = stable_id("ingest", site.name, item.source_key, item.payload_hash)
        provenance = {
            "resourceType": "Provenance",
            "id": prov_id,
            "target": targets or [{"display": "nothing"}],
            "recorded": dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds"),
            "activity": {"text": f"ingested {item.format} message"},
            "agent": [agent],
            "entity": [
                {
                    "role": "source",
                    "what": {
                        "identifier": {
                            "system": f"urn:fhirhub:inbox:{site.name}",
                            "value": item.source_key,
                        },
                        "display": f"inbox item {item.id}",
                    },
                }
            ],
        }
        return {
            "resource": provenance,
            "request": {"method": "PUT", "url": f"Provenance/{prov_id}"},
        }

    def _load_state(self, site: str) -> dict[str, Any]:
        with self.hub.engine.connect() as conn:
            rows = conn.execute(
                select(s.site_state.c.key, s.site_state.c.value).where(s.site_state.c.site == site)
            )
            return {k: orjson.loads(v) for k, v in rows}

    def _save_state(self, conn, site: str, state: SiteState) -> None:
        if not state.loaded:
            return  # the adapter never looked at it: nothing changed
        now = dt.datetime.now(dt.UTC)
        for key, value in state.items():
            values = {
                "site": site,
                "key": key,
                "value": orjson.dumps(value).decode(),
                "updated_at": now,
            }
            insert = (postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert)(
                s.site_state
            )
            conn.execute(
                insert.values(**values).on_conflict_do_update(
                    index_elements=["site", "key"],
                    set_={"value": insert.excluded.value, "updated_at": now},
                )
            )


def map_payload(
    pm: Any,
    code_maps: dict,
    site: Any,
    body: bytes,
    *,
    fmt: str,
    content_type: str | None = None,
    source_key: str | None = None,
    state: dict[str, Any] | None = None,
) -> tuple[dict, list[dict]]:
    """Run the ``map_inbound`` hooks on one payload: ``(Bundle, issues)``.

    ``state`` is the adapter's per-site state; the caller saves it afterwards
    if it wants the adapter's changes kept (the pipeline does, kits do not).
    """
    context = MappingContext(site, code_maps)
    context.state = {} if state is None else state
    message = InboundMessage(fmt, body, site, content_type, source_key)
    bundle = pm.hook.map_inbound(message=message, context=context)
    if bundle is None:
        raise outcomes.error(415, "not-supported", f"No adapter maps format {fmt!r}")
    return bundle, context.issues


def _summary(response_entries: list[dict]) -> dict[str, Any]:
    written = [
        e["response"]["location"].split("/_history")[0].rsplit("/", 2)[-2:]
        for e in response_entries
        if (e.get("response") or {}).get("location")
    ]
    return {"written": len(written), "resources": ["/".join(w) for w in written]}


def _with_status(oo: dict, status: int) -> dict:
    out = dict(oo)
    out["extension"] = [{"url": "urn:fhirhub:http-status", "valueInteger": status}]
    return out


class SiteState(MutableMapping):
    """A site's state (``context.state``), read from the database on first use.

    Most adapters never use it; they do not pay a database round trip per
    message for it.
    """

    def __init__(self, load: Callable[[], dict[str, Any]]):
        self._load = load
        self._data: dict[str, Any] | None = None

    @property
    def loaded(self) -> bool:
        return self._data is not None

    @property
    def data(self) -> dict[str, Any]:
        if self._data is None:
            self._data = self._load()
        return self._data

    def __getitem__(self, key: str) -> Any:
        return self.data[key]

    def __setitem__(self, key: str, value: Any) -> None:
        self.data[key] = value

    def __delitem__(self, key: str) -> None:
        del self.data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.data)

    def __len__(self) -> int:
        return len(self.data)
