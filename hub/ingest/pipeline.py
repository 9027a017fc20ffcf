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
import logging
from collections.abc import Callable
from collections.abc import Iterable
from collections.abc import Iterator
from collections.abc import MutableMapping
from typing import TYPE_CHECKING
from typing import Any

import orjson
from sqlalchemy import exc as sa_exc

from hub import outcomes
from hub.config import setting
from hub.fhir import bundles
from hub.fhir.service import Quarantined
from hub.fhir.service import WriteOptions
from hub.identity.ids import patient_id_for_resident_id
from hub.identity.matching import Thresholds
from hub.ingest import identity
from hub.ingest import provenance as ingest_provenance
from hub.ingest.inbox import REPLAYABLE
from hub.ingest.inbox import Inbox
from hub.ingest.inbox import InboxItem
from hub.ingest.inbox import payload_hash
from hub.lifetime import ingest as lifetime_ingest
from hub.mapping import InboundMessage
from hub.mapping import MappingContext
from hub.plugins import adapter_format
from hub.storage.site_state import SiteStateStore
from hub.storage.write_locks import lock_resources
from hub.storage.write_locks import unchanged

if TYPE_CHECKING:
    from hub.kernel import Hub
    from hub.sites import Site
    from hub.terminology.service import TerminologyService

log = logging.getLogger("hub.ingest")


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
    def __init__(self, hub: Hub):
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
        parsed: Any = None,
    ) -> IngestResult:
        """Store ``body`` for ``site_name`` and (by default) process it at once.

        A payload already received under the same key is not processed again;
        its earlier result is returned with ``duplicate=True`` (unless its
        processing died, see :meth:`_revive`). ``parsed`` is the adapter's
        parse of ``body`` when the caller made one (``InboundMessage.parsed``).
        A payload over ``INGEST_MAX_BYTES`` is refused (413) and only its
        digest and the reason are kept.
        """
        site = self.site(site_name)
        fmt = fmt or self.format_for(site, body, content_type)
        key = source_key or self.source_key(fmt, body, site)
        refused = self._oversize(body)
        item, duplicate = self.inbox.receive(
            site.name,
            body,
            source_key=key,
            fmt=fmt,
            content_type=content_type,
            claim=process,
            refused=refused,
        )
        if duplicate and process and not refused and self._revive(item, body):
            duplicate = False
        if duplicate or not process or refused:
            return IngestResult(item, duplicate)
        # The item was committed above; process it from memory (body included)
        # and answer with what was marked, without reading the row back.
        item.body = body
        item.parsed = parsed
        return IngestResult(self._process_items([item])[0], False)

    def ingest_many(
        self,
        site_name: str,
        bodies: list[bytes],
        *,
        content_type: str | None = None,
        source_keys: list[str | None] | None = None,
        fmt: str | None = None,
        parsed: list[Any] | None = None,
    ) -> list[IngestResult]:
        """:meth:`ingest` for many payloads of one site, with group commit.

        The payloads are stored in the inbox with one commit, then processed
        in groups of ``INGEST_GROUP_SIZE``, each group one database
        transaction (a failing message is taken out of its group and marked
        alone, so it costs the others nothing but a second try). The results
        are the same as ingesting one by one, in order; only the number of
        commits differs. ``parsed`` gives each payload's parse, as for :meth:`ingest`.
        """
        if not bodies:
            return []
        site = self.site(site_name)
        fmt = fmt or self.format_for(site, bodies[0], content_type)
        keys = source_keys or [self.source_key(fmt, body, site) for body in bodies]
        parses = parsed or [None] * len(bodies)
        refusals = [self._oversize(body) for body in bodies]
        keep = [n for n, refused in enumerate(refusals) if refused is None]
        received: list[tuple[InboxItem, bool] | None] = [None] * len(bodies)
        stored = self.inbox.receive_many(
            site.name,
            [(bodies[n], keys[n]) for n in keep],
            fmt=fmt,
            content_type=content_type,
            claim=True,
        )
        for n, pair in zip(keep, stored, strict=True):
            received[n] = pair
        for n, refused in enumerate(refusals):
            if refused is not None:  # rare: one at a time
                received[n] = self.inbox.receive(
                    site.name,
                    bodies[n],
                    source_key=keys[n],
                    fmt=fmt,
                    content_type=content_type,
                    refused=refused,
                )
        fresh, revived = [], set()
        for n, (item, duplicate) in enumerate(received):
            if refusals[n] is not None or item.id in revived:
                continue
            if not duplicate or self._revive(item, bodies[n]):
                if duplicate:
                    revived.add(item.id)
                item.body = bodies[n]
                item.parsed = parses[n]
                fresh.append(item)
        done = {item.id: item for item in self._process_items(fresh)}
        # A payload given twice in ``bodies`` is answered with its one processing.
        return [
            IngestResult(done.get(item.id, item), duplicate and item.id not in revived)
            for item, duplicate in received
        ]

    def process(self, item_id: int) -> InboxItem:
        """Map and store one inbox item; returns it with its new status."""
        return self.process_many([item_id])[0]

    def process_many(self, item_ids: list[int]) -> list[InboxItem]:
        """Map and store inbox items in order (grouped by site); returns them as marked."""
        found = self.inbox.get_many(item_ids, with_body=True)
        missing = [i for i in item_ids if i not in found]
        if missing:
            raise outcomes.not_found(f"inbox item {missing[0]} does not exist")
        # Returned as marked (the values written), without reading the rows back.
        return self._process_items([found[i] for i in item_ids])

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
                if http_status(i.outcome) != 413  # refused as too large: no body to replay
            ]
        found = self.inbox.get_many(item_ids)
        for item_id in item_ids:
            item = found.get(item_id)
            if item is None:
                raise outcomes.not_found(f"inbox item {item_id} does not exist")
            if item.status not in REPLAYABLE:
                raise outcomes.conflict(
                    f"inbox item {item_id} is {item.status}; only {', '.join(REPLAYABLE)} items are replayed"
                )
            if http_status(item.outcome) == 413:
                raise outcomes.conflict(
                    f"inbox item {item_id} was refused as too large and its body was not kept; "
                    "the sender must send it again (within the limits)"
                )
        return self.process_many(item_ids)

    def process_pending(self, limit: int = 1000) -> int:
        """Claim and process pending items oldest first (the worker loop); returns how many."""
        lease = int(setting(self.hub.config, "INBOX_LEASE_SECONDS"))
        # One group at a time: a large claim would keep other workers idle
        # while its tail waits here (and might outlive its lease).
        size = max(1, int(setting(self.hub.config, "INGEST_GROUP_SIZE")))
        done = 0
        while done < limit:
            ids = self.inbox.claim(min(size, limit - done), lease)
            if not ids:
                break
            self.process_many(ids)
            done += len(ids)
        return done

    def _oversize(self, body: bytes) -> dict | None:
        """The refusal (an outcome, 413) of a payload over ``INGEST_MAX_BYTES``, else None."""
        limit = int(setting(self.hub.config, "INGEST_MAX_BYTES"))
        if not limit or len(body) <= limit:
            return None
        oo = outcomes.outcome(
            outcomes.issue(
                "error",
                "too-long",
                f"the payload is {len(body)} bytes; the limit is {limit} (INGEST_MAX_BYTES)",
            ),
            _body_not_kept(body),
        )
        return _with_status(oo, 413)

    def _revive(self, item: InboxItem, body: bytes) -> bool:
        """Take over a re-sent payload whose first processing died; True if it is ours now.

        A sender re-sends what we did not acknowledge. When its inbox item is
        still ``processing`` under an expired claim (the process that took it
        was killed), or was refused as too large without keeping its body (the
        limits may have been raised since), the re-send takes it over and it is
        processed now, instead of being answered "processing" until a worker
        comes by.
        """
        stale = item.status == "processing"
        if not stale and not (item.status == "failed" and http_status(item.outcome) == 413):
            return False
        lease = int(setting(self.hub.config, "INBOX_LEASE_SECONDS"))
        claimed = self.inbox.take_over(item.id, body, lease)
        if claimed is None:
            return False
        item.processed_at = claimed
        log.info("inbox item %s: taken over by a re-send (%s)", item.id, item.status)
        item.status = "processing"
        return True

    # -- processing --------------------------------------------------------------

    def _process_items(self, items: list[InboxItem]) -> list[InboxItem]:
        """Process ``items`` in order, in groups of one site; returns them as marked."""
        size = max(1, int(setting(self.hub.config, "INGEST_GROUP_SIZE")))
        out: dict[int, InboxItem] = {}
        for group in runs(items, lambda item: item.site, size):
            for item in self._process_group(group):
                out[item.id] = item
        return [out[item.id] for item in items]

    def _process_group(self, items: list[InboxItem]) -> list[InboxItem]:
        """Map ``items`` (one site) and store them in one transaction; marks each.

        When a message of the group fails, the transaction rolls back and the
        group is run again in three parts: the messages before it (as a
        group), the failing one alone (marked failed or quarantined with its
        outcome) and the messages after it (as a group).
        """
        try:
            site = self.site(items[0].site)
        except outcomes.OperationOutcomeError as err:
            return [self._failed(item, err) for item in items]
        state = SiteState(lambda: self._load_state(site.name))
        self.hub.terminology.refresh()  # tables loaded since the last group (any process)
        prepared: list[tuple[InboxItem, dict, list[dict]]] = []
        marked: dict[int, InboxItem] = {}
        for item in items:
            try:
                bundle, issues = map_payload(
                    self.hub.pm,
                    self.hub.code_maps,
                    site,
                    item.body or b"",
                    terminology=self.hub.terminology,
                    fmt=item.format or "",
                    content_type=item.content_type,
                    source_key=item.source_key,
                    state=state,
                    parsed=item.parsed,
                    settings=self.hub.config,
                )
            except Exception as err:  # noqa: BLE001 - marked with its outcome below
                if state.loaded and len(items) > 1:
                    # The adapter's state may hold part of the failed message: no group.
                    return [marked.get(i.id) or self._process_group([i])[0] for i in items]
                marked[item.id] = self._failed(item, err)
                continue
            prepared.append((item, bundle, issues))
        if prepared:
            try:
                marks = self._store(site, state, prepared)
            except _ClaimLost as lost:
                # Another process owns these now (our lease expired): leave them to it.
                log.warning("inbox items %s: claim taken over; left to its owner", sorted(lost.ids))
                rest = [p[0] for p in prepared if p[0].id not in lost.ids]
                for item in [p[0] for p in prepared if p[0].id in lost.ids]:
                    marked[item.id] = dataclasses.replace(item, body=None, parsed=None)
                for item in self._process_group(rest) if rest else []:
                    marked[item.id] = item
            except _MessageFailed as failed:
                k = failed.index
                redo = [p[0] for p in prepared]
                for item in [
                    *(self._process_group(redo[:k]) if k else []),
                    self._process_group([redo[k]])[0],
                    *(self._process_group(redo[k + 1 :]) if k + 1 < len(redo) else []),
                ]:
                    marked[item.id] = item
            except Exception as err:  # noqa: BLE001 - marked with its outcome
                if len(prepared) > 1:
                    # The group's shared work failed, not one message: each alone, then.
                    log.warning("inbox group of %d failed (%s); one by one", len(prepared), err)
                    for item, _bundle, _issues in prepared:
                        marked[item.id] = self._process_group([item])[0]
                else:
                    item = prepared[0][0]
                    marked[item.id] = self._failed(item, err)
            else:
                for (item, _bundle, _issues), values in zip(prepared, marks, strict=True):
                    marked[item.id] = dataclasses.replace(
                        item, body=None, parsed=None, attempts=item.attempts + 1, **values
                    )
        return [marked[item.id] for item in items]

    def _failed(self, item: InboxItem, err: Exception) -> InboxItem:
        """Mark ``item`` failed (or quarantined) in a transaction of its own.

        A payload the adapter refused as too large (413) is kept as its digest
        and the reason, not its body (a replay could only refuse it again).
        """
        if isinstance(err, Quarantined):
            values = self.inbox.mark_alone(item.id, "quarantined", err.outcome)
        elif isinstance(err, outcomes.OperationOutcomeError) and err.status == 413:
            oo = outcomes.outcome(*err.issues, _body_not_kept(item.body or b""))
            values = self.inbox.mark_alone(
                item.id, "failed", _with_status(oo, 413), keep_body=False
            )
        elif isinstance(err, outcomes.OperationOutcomeError):
            values = self.inbox.mark_alone(item.id, "failed", _with_status(err.outcome, err.status))
        else:  # an adapter bug must not lose the message
            log.error("inbox item %s: unexpected error", item.id, exc_info=err)
            oo = outcomes.outcome(
                outcomes.issue(
                    "fatal", "exception", f"Unexpected error while processing: {type(err).__name__}"
                )
            )
            values = self.inbox.mark_alone(item.id, "failed", _with_status(oo, 500))
        return dataclasses.replace(
            item, body=None, parsed=None, attempts=item.attempts + 1, **values
        )

    def _store(
        self, site: Site, state: SiteState, prepared: list[tuple[InboxItem, dict, list[dict]]]
    ) -> list[dict[str, Any]]:
        """Store mapped messages in one transaction; returns the values each was marked with.

        Raises :class:`_MessageFailed` naming the message that failed when
        there are several (a lone message's error is raised as it is).
        """
        thresholds = Thresholds.from_settings(self.hub.config)
        inline = setting(self.hub.config, "LIFETIME_INLINE")
        org = getattr(site, "organization", None) or {}
        agent = {"who": {"display": org.get("name") or site.name}}
        opts = WriteOptions(prefer_return="minimal", site=site)
        group = len(prepared) > 1
        reads = list(
            dict.fromkeys(key for _item, mapped, _issues in prepared for key in _reads(mapped))
        )
        planned = _planned(mapped for _item, mapped, _issues in prepared)

        tries = [0]

        def attempt(writer):
            tries[0] += 1
            if tries[0] > 1:
                # A lost race (unique key, deadlock): with the locks below, another
                # writer outside them. Logged so that contention shows (bench/workers.py).
                log.warning("inbox group of %d: retried (attempt %d)", len(prepared), tries[0])
            # Items we claimed (a replay of failed items holds no claim).
            claims = {
                item.id: item.processed_at
                for item, _mapped, _issues in prepared
                if item.status == "processing"
            }
            lost = set(claims) - self.inbox.hold(writer.conn, claims)
            if lost:
                raise _ClaimLost(lost)
            marks = []
            evidence: set[str] = set()
            patients: set[str] = set()
            # The group's locks, all at once and in one order, before any row is read:
            # another worker's group writing the same resources waits for this one
            # instead of failing on a key or deadlocking (hub.storage.write_locks).
            # What it would rewrite as it is (the site's Organization in every
            # message) is locked shared, so that other groups reading it go on.
            same = unchanged(writer, planned)
            lock_resources(writer.conn, reads, shared=same)
            # What the group will read, in one query instead of one or two per message.
            writer.prefetch([key for key in reads if key not in same])
            writer.prefetch(same, shared=True)
            for n, (item, mapped, issues) in enumerate(prepared):
                try:
                    mark, ev, pt = self._store_one(
                        writer,
                        item,
                        site,
                        orjson.loads(orjson.dumps(mapped)),
                        issues,
                        opts,
                        thresholds,
                        agent,
                        inline,
                    )
                except sa_exc.SQLAlchemyError:
                    raise  # the repository retries lost races; anything else fails the group
                except Exception as err:
                    if group:
                        raise _MessageFailed(n) from err
                    raise
                marks.append(mark)
                evidence |= ev
                patients |= pt
            if inline:
                lifetime_ingest.refresh(writer, evidence, patients)
            self._save_state(writer.conn, site.name, state)
            return self.inbox.mark_many(writer.conn, marks)

        return self.hub.repo.write(attempt, site=site.name)

    def _store_one(
        self,
        writer: Any,
        item: InboxItem,
        site: Site,
        bundle: dict,
        issues: list[dict],
        opts: WriteOptions,
        thresholds: Thresholds,
        agent: dict,
        inline: bool,
    ) -> tuple[tuple, set[str], set[str]]:
        """One message's part of the group: identity, provenance, the transaction, merges."""
        writer.begin_segment()
        if not isinstance(bundle.get("entry", []), list):
            raise outcomes.bad_request("The adapter's Bundle.entry is not an array", "Bundle.entry")
        service = self.hub.service
        tasks = identity.resolve(service, bundle, thresholds, writer=writer)
        merges = lifetime_ingest.merge_requests(bundle)
        entries = bundle.setdefault("entry", [])
        for task in tasks:
            entries.append(
                {"resource": task, "request": {"method": "PUT", "url": f"Task/{task['id']}"}}
            )
        response: list[dict] = []
        evidence: set[str] = set()
        patients: set[str] = set()
        if entries:
            born = lifetime_ingest.birth_dates(writer, bundle) if inline else None
            self._add_provenance(item, site, entries)
            prepared = bundles.prepare_transaction(entries)
            response = bundles.run_transaction(service, writer, prepared, "", opts, copy=False)
            if inline:
                evidence, patients = lifetime_ingest.touched(bundle, writer.segment_keys, born)
                affected = lifetime_ingest.apply_merges(writer, merges, agent)
                evidence |= affected
                patients |= affected
        errors = [i for i in issues if i.get("severity") in ("error", "fatal")]
        issues = [*issues, *_accepted(response)]
        summary = _summary(response)
        oo = outcomes.outcome(
            outcomes.issue(
                "information",
                "informational",
                f"{summary['written']} resource(s) written from {item.source_key}",
            ),
            *issues,
        )
        mark = (item.id, "partial" if errors else "done", _with_status(oo, 200), summary)
        return mark, evidence, patients

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

    def format_for(self, site: Site, body: bytes, content_type: str | None) -> str:
        # The adapter's own format (``register_adapters``); a site's ``format`` setting overrides.
        fmt = getattr(site, "format", None) or adapter_format(self.hub.pm, site.adapter)
        if fmt:
            return fmt
        detected = self.hub.pm.hook.detect_format(body=body, content_type=content_type)
        if not detected:
            raise outcomes.error(415, "not-supported", "No adapter recognises this payload")
        return detected

    def source_key(self, fmt: str, body: bytes, site: Site) -> str | None:
        """The sender's key for the payload (``source_key`` hook), if the adapter knows one."""
        return self.hub.pm.hook.source_key(fmt=fmt, body=body, site=site)

    def map(
        self,
        site: Site,
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
        self.hub.terminology.refresh()
        return map_payload(
            self.hub.pm,
            self.hub.code_maps,
            site,
            body,
            fmt=fmt,
            terminology=self.hub.terminology,
            content_type=content_type,
            source_key=source_key,
            state=state,
            settings=self.hub.config,
        )

    def _add_provenance(self, item: InboxItem, site: Site, entries: list[dict]) -> None:
        """Name the source message in the adapter's Provenance, or add ours: one per person."""
        ours = ingest_provenance.for_message(item, site, entries)
        theirs = [
            e["resource"]
            for e in entries
            if (e.get("resource") or {}).get("resourceType") == "Provenance"
        ]
        if theirs:
            for prov in theirs:
                prov.setdefault("entity", []).extend(ours[0]["resource"]["entity"])
        else:
            entries.extend(ours)

    def _load_state(self, site: str) -> dict[str, Any]:
        return SiteStateStore(self.hub.engine).load(site)

    def _save_state(self, conn, site: str, state: SiteState) -> None:
        if not state.loaded:
            return  # the adapter never looked at it: nothing changed
        SiteStateStore.save(conn, site, state.items())


def runs(items: list, key: Callable[[Any], Any], size: int | None = None) -> list[list]:
    """``items`` cut, in order, into runs sharing ``key(item)`` of at most ``size`` each."""
    out: list[list] = []
    for item in items:
        if out and (size is None or len(out[-1]) < size) and key(out[-1][0]) == key(item):
            out[-1].append(item)
        else:
            out.append([item])
    return out


def map_payload(
    pm: Any,
    code_maps: dict,
    site: Site,
    body: bytes,
    *,
    fmt: str,
    content_type: str | None = None,
    source_key: str | None = None,
    state: dict[str, Any] | None = None,
    parsed: Any = None,
    settings: Any = None,
    terminology: TerminologyService | None = None,
) -> tuple[dict, list[dict]]:
    """Run the ``map_inbound`` hooks on one payload: ``(Bundle, issues)``.

    ``state`` is the adapter's per-site state; the caller saves it afterwards
    if it wants the adapter's changes kept (the pipeline does, kits do not).
    ``parsed`` is ``InboundMessage.parsed``; ``settings`` the hub's configuration.
    """
    context = MappingContext(site, code_maps, terminology)
    context.state = {} if state is None else state
    context.settings = settings if settings is not None else {}
    if parsed is None:  # the adapter's one parse (``parse`` hook), unless the receiver made it
        parsed = pm.hook.parse(fmt=fmt, body=body, site=site, settings=context.settings)
    message = InboundMessage(fmt, body, site, content_type, source_key, parsed=parsed)
    bundle = pm.hook.map_inbound(message=message, context=context)
    if bundle is None:
        raise outcomes.error(415, "not-supported", f"No adapter maps format {fmt!r}")
    return bundle, context.issues


def _reads(bundle: dict) -> Iterator[tuple[str, str]]:
    """The stored resources storing ``bundle`` will read: its targets and its people."""
    for entry in bundle.get("entry") or ():
        request = entry.get("request") or {}
        if request.get("method") in ("PUT", "PATCH", "DELETE"):
            res_type, _, res_id = (request.get("url") or "").partition("/")
            if res_id and "/" not in res_id and "?" not in res_id:
                yield res_type, res_id
        resource = entry.get("resource") or {}
        if resource.get("resourceType") == "Patient":
            number = identity.resident_number(resource)
            if number:
                yield "Patient", patient_id_for_resident_id(number)


def _planned(bundles: Iterable[dict]) -> dict[tuple[str, str], list[dict]]:
    """The contents the bundles ``PUT``, by resource; a resource also patched or deleted is left out."""
    planned: dict[tuple[str, str], list[dict]] = {}
    other: set[tuple[str, str]] = set()
    for bundle in bundles:
        for entry in bundle.get("entry") or ():
            request = entry.get("request") or {}
            res_type, _, res_id = (request.get("url") or "").partition("/")
            if not res_id or "/" in res_id or "?" in res_id:
                continue
            resource = entry.get("resource")
            if request.get("method") == "PUT" and isinstance(resource, dict):
                planned.setdefault((res_type, res_id), []).append(resource)
            elif request.get("method") in ("PATCH", "DELETE"):
                other.add((res_type, res_id))
    return {key: contents for key, contents in planned.items() if key not in other}


def _accepted(response_entries: list[dict]) -> list[dict]:
    """What validation flagged and the site's policy accepted, as warnings naming the resource.

    Under ``accept-with-warnings`` the errors are stored with the message, so
    they are warnings of its outcome (and of its ACK), not errors.
    """
    out = []
    for entry in response_entries:
        response = entry.get("response") or {}
        where = "/".join((response.get("location") or "").split("/_history")[0].split("/")[-2:])
        for found in (response.get("outcome") or {}).get("issue", ()):
            if found.get("severity") == "information":
                continue  # what a deletion answers, not a finding
            text = found.get("diagnostics") or found.get("code") or ""
            out.append({**found, "severity": "warning", "diagnostics": f"{where}: {text}"})
    return out


def _summary(response_entries: list[dict]) -> dict[str, Any]:
    written = [
        e["response"]["location"].split("/_history")[0].rsplit("/", 2)[-2:]
        for e in response_entries
        if (e.get("response") or {}).get("location")
    ]
    return {"written": len(written), "resources": ["/".join(w) for w in written]}


def http_status(oo: dict | None) -> int | None:
    """The HTTP status the pipeline recorded in an inbox outcome (``_with_status``)."""
    for ext in (oo or {}).get("extension", ()):
        if ext.get("url") == "urn:fhirhub:http-status":
            return ext.get("valueInteger")
    return None


def _body_not_kept(body: bytes) -> dict:
    """The issue saying a refused payload is kept as its digest only."""
    return outcomes.issue(
        "information",
        "informational",
        f"the payload ({len(body)} bytes, sha256 {payload_hash(body)}) is not kept; "
        "the sender must send it again",
    )


def _with_status(oo: dict, status: int) -> dict:
    out = dict(oo)
    out["extension"] = [{"url": "urn:fhirhub:http-status", "valueInteger": status}]
    return out


class _MessageFailed(Exception):
    """Message ``index`` of a group failed (the exception's cause says how)."""

    def __init__(self, index: int):
        super().__init__(index)
        self.index = index


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


class _ClaimLost(Exception):
    """Items of a group whose claim another process took over (``ids``)."""

    def __init__(self, ids: set[int]):
        super().__init__(sorted(ids))
        self.ids = ids
