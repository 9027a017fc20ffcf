"""Running a bulk job: what ``hub worker`` does with a job it claimed.

The worker acts as the principal that kicked the job off. Every type is read page by
page through the search engine's public ``search`` (keyset on the resource's key: one
short query per page, memory flat whatever the export's size), with the caller's
:class:`~hub.search.access.Access` (labels without a grant, jurisdiction, patient context:
filtered in SQL) and then ``guard.visible_entries`` (scopes and the rest), exactly the
rules of a search. ``_typeFilter`` queries are searches; ``_since`` is ``_lastUpdated=gt``.
Each line is written to the file as its page arrives.

After every page the worker renews its claim (``JobStore.renew``); when that fails the
job was cancelled or taken over, and the worker stops and removes its own files. Files
of one claim live in a folder of that attempt, so a worker that lost its claim never
touches the files of the one that took it over.
"""

from __future__ import annotations

import datetime as dt
import logging
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING
from typing import Any

import orjson
import sqlalchemy as sa

from hub import outcomes
from hub.bulk import files
from hub.bulk.kickoff import compartment_types
from hub.config import setting
from hub.lifetime import everything as everything_mod
from hub.lifetime.visibility import Visibility
from hub.lifetime.visibility import for_principal
from hub.search.access import within_jurisdiction
from hub.search.engine import SearchEntry
from hub.security import guard
from hub.security import principal as principal_record
from hub.security.principal import Principal
from hub.security.principal import acting_as
from hub.storage import schema as S
from hub.storage.jobs import Job
from hub.storage.jobs import JobStore
from hub.storage.jobs import transaction_time
from hub.storage.repository import format_instant

if TYPE_CHECKING:
    from hub.kernel import Hub

log = logging.getLogger("hub.bulk")


class Lost(Exception):
    """The job is no longer this worker's (cancelled, or taken over after a stale lease)."""


def attempt_dir(hub: Hub, job: Job) -> Path:
    return files.job_dir(hub.config, job.id) / f"attempt-{job.attempts}"


def run(hub: Hub, store: JobStore, job: Job) -> str:
    """Run a claimed job to its end; returns its final status (``done``, ``failed``, or
    ``lost`` when it stopped being this worker's)."""
    principal = principal_record.from_record(job.principal)
    folder = attempt_dir(hub, job)
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    expires = dt.datetime.now(dt.UTC) + dt.timedelta(
        hours=float(setting(hub.config, "BULK_EXPIRE_HOURS"))
    )
    try:
        with acting_as(principal, {"interaction": "export"}):
            if job.kind == "export":
                manifest = _export(hub, store, job, principal, folder)
            else:
                manifest = _bundle(hub, store, job, principal, folder)
        manifest["attempt"] = job.attempts
        if store.finish(job, "done", expires, manifest=manifest):
            return "done"
    except Lost:
        pass
    except outcomes.OperationOutcomeError as err:
        oo = {**err.outcome, "extension": [_status_extension(err.status)]}
        if store.finish(job, "failed", expires, outcome=oo):
            shutil.rmtree(folder, ignore_errors=True)
            return "failed"
    except Exception as err:  # noqa: BLE001 - a job's failure is recorded, the worker goes on
        log.exception("bulk job %s failed", job.id)
        oo = outcomes.outcome(
            outcomes.issue("error", "exception", f"The job stopped: {type(err).__name__}")
        )
        oo["extension"] = [_status_extension(500)]
        if store.finish(job, "failed", expires, outcome=oo):
            shutil.rmtree(folder, ignore_errors=True)
            return "failed"
    shutil.rmtree(folder, ignore_errors=True)
    if store.get(job.id) is None:  # cancelled: nothing of the job stays
        files.remove_job_dir(hub.config, job.id)
    return "lost"


HTTP_STATUS_URL = "urn:fhirhub:http-status"


def _status_extension(status: int) -> dict[str, Any]:
    return {"url": HTTP_STATUS_URL, "valueInteger": status}


class _Progress:
    """Renews the claim after each page and says how far the job got."""

    def __init__(self, store: JobStore, job: Job):
        self.store, self.job, self.count = store, job, 0

    def page(self, what: str, n: int) -> None:
        self.count += n
        if not self.store.renew(self.job, f"{what}: {self.count} resources written"):
            raise Lost


# -- $export ---------------------------------------------------------------------


def _export(hub: Hub, store: JobStore, job: Job, principal: Principal | None, folder: Path):
    p = job.params
    tt = transaction_time(hub.engine)
    if not store.renew(job, "started", transaction_time=tt):
        raise Lost
    progress = _Progress(store, job)
    max_bytes = int(setting(hub.config, "BULK_FILE_MAX_BYTES"))
    errors = files.NdjsonFiles(folder, "OperationOutcome", max_bytes)
    level = p["level"]
    patients: list[str] | None = None
    if level == "group":
        patients = _group_members(hub, p["group"], errors)
        if p.get("patients"):
            wanted = set(p["patients"])
            patients = [m for m in patients if m in wanted]
    elif p.get("patients"):
        patients = list(p["patients"])
    types = p.get("types") or _default_types(hub, level, principal)
    since = p.get("since")
    outputs: list[dict[str, Any]] = []
    for res_type in types:
        out = files.NdjsonFiles(folder, res_type, max_bytes)
        queries = p.get("type_filters", {}).get(res_type) or [[]]
        # Several queries of one type (an OR) or several patients' compartments can find
        # a resource twice: remember what was written (bounded by this type's output).
        seen: set[str] | None = set() if (len(queries) > 1 or patients) else None
        try:
            for entries in _pages(hub, res_type, queries, since, level, patients, principal):
                for e in entries:
                    if seen is not None:
                        if e.res_id in seen:
                            continue
                        seen.add(e.res_id)
                    out.write(e.content)
                progress.page(res_type, len(entries))
        except BaseException:
            out.abort()
            errors.abort()
            raise
        outputs += [{"type": res_type, "file": n, "count": c} for n, c in out.close()]
    deleted = []
    if since:
        deleted = _deleted(hub, folder, types, since, level, patients, principal, max_bytes)
    return {
        "transactionTime": format_instant(tt),
        "request": job.request,
        "requiresAccessToken": True,
        "output": outputs,
        "deleted": deleted,
        "error": [{"type": "OperationOutcome", "file": n, "count": c} for n, c in errors.close()],
    }


def _default_types(hub: Hub, level: str, principal: Principal | None) -> list[str]:
    """The types stored (and in the Patient compartment, below system level) that the
    caller may read."""
    r = S.resource
    with hub.repo.reading() as conn:
        stored = set(conn.execute(sa.select(r.c.res_type).distinct()).scalars())
    wanted = compartment_types() if level != "system" else sorted(stored)
    return [
        t
        for t in wanted
        if t in stored and (principal is None or principal.can(t, "r") or principal.can(t, "s"))
    ]


def _group_members(hub: Hub, group_id: str, errors: files.NdjsonFiles) -> list[str]:
    """The Patients of a Group (the hub's household and village Groups too), read as the
    caller; a member that is not a Patient is reported in the error file."""
    group = hub.service.read("Group", group_id).stored.resource()
    out: list[str] = []
    for member in group.get("member") or []:
        if member.get("inactive") is True:
            continue
        ref = str((member.get("entity") or {}).get("reference") or "")
        if ref.startswith("Patient/") and ref.count("/") == 1:
            out.append(ref.split("/", 1)[1])
        else:
            oo = outcomes.outcome(
                outcomes.issue(
                    "warning",
                    "not-supported",
                    f"Group/{group_id} member {ref!r} is not a Patient: left out",
                )
            )
            errors.write(orjson.dumps(oo))
    return list(dict.fromkeys(out))


def _pages(
    hub: Hub,
    res_type: str,
    queries: list[list],
    since: str | None,
    level: str,
    patients: list[str] | None,
    principal: Principal | None,
) -> Iterator[list[SearchEntry]]:
    """The visible matches of ``res_type``, a page at a time (one short read each)."""
    engine = hub.service.search_engine
    access = guard.search_access(principal)
    size = str(int(setting(hub.config, "BULK_PAGE_SIZE")))
    compartments: list[tuple[str, str] | None] = (
        [("Patient", pid) for pid in patients] if patients is not None else [None]
    )
    any_patient = level != "system" and patients is None and res_type != "Patient"
    for query in queries:
        base = [tuple(kv) for kv in query] + [("_count", size), ("_total", "none")]
        if since:
            base.append(("_lastUpdated", f"gt{since}"))
        for compartment in compartments:
            cursor = None
            while True:
                params = base + ([("_cursor", cursor)] if cursor else [])
                with hub.repo.reading() as conn:
                    result = engine.search(
                        conn, res_type, params, compartment=compartment, access=access, strict=True
                    )
                    entries = [e for e in result.entries if e.mode == "match"]
                    if any_patient and entries:
                        entries = _in_some_patient(conn, res_type, entries)
                yield guard.visible_entries(entries, principal)
                cursor = result.next_cursor
                if not cursor:
                    break


def _in_some_patient(conn, res_type: str, entries: list[SearchEntry]) -> list[SearchEntry]:
    """The entries in some Patient's compartment (a Patient-level export's resources)."""
    r, c = S.resource, S.compartment
    ids = [e.res_id for e in entries]
    stmt = sa.select(r.c.res_id).where(
        r.c.res_type == res_type,
        r.c.res_id.in_(ids),
        r.c.pk.in_(
            sa.select(c.c.resource_pk).where(c.c.comp_type == "Patient", c.c.res_type == res_type)
        ),
    )
    inside = set(conn.execute(stmt).scalars())
    return [e for e in entries if e.res_id in inside]


def _deleted(
    hub: Hub,
    folder: Path,
    types: list[str],
    since: str,
    level: str,
    patients: list[str] | None,
    principal: Principal | None,
    max_bytes: int,
) -> list[dict[str, Any]]:
    """The resources deleted since ``since`` (from the change feed), one transaction Bundle
    of a DELETE per line; judged visible by the version before the deletion."""
    c, r, h = S.change, S.resource, S.resource_history
    since_at = dt.datetime.fromisoformat(since.replace("Z", "+00:00"))
    where = [
        c.c.op == "delete",
        c.c.at > since_at,
        c.c.res_type.in_(types),
        r.c.deleted == sa.true(),
    ]
    access = guard.search_access(principal)
    if patients is not None:
        where.append(c.c.patient_id.in_(patients))
    elif level != "system":
        where.append(c.c.patient_id.is_not(None))
    if access is not None and access.patient is not None:
        where.append(c.c.patient_id == access.patient)
    if access is not None and access.jurisdiction:
        where.append(within_jurisdiction(c, access.jurisdiction))
    stmt = (
        sa.select(r.c.res_type, r.c.res_id, h.c.content)
        .select_from(
            c.join(r, sa.and_(r.c.res_type == c.c.res_type, r.c.res_id == c.c.res_id)).outerjoin(
                h,
                sa.and_(
                    h.c.res_type == r.c.res_type,
                    h.c.res_id == r.c.res_id,
                    h.c.version == r.c.version - 1,
                ),
            )
        )
        .where(*where)
        .distinct()
        .order_by(r.c.res_type, r.c.res_id)
    )
    out = files.NdjsonFiles(folder, "Bundle", max_bytes)
    with hub.repo.reading() as conn:
        for res_type, res_id, before in conn.execution_options(yield_per=1000).execute(stmt):
            if not guard.visible_content(res_type, before, principal):
                continue
            out.write(
                orjson.dumps(
                    {
                        "resourceType": "Bundle",
                        "type": "transaction",
                        "entry": [{"request": {"method": "DELETE", "url": f"{res_type}/{res_id}"}}],
                    }
                )
            )
    return [{"type": "Bundle", "file": n, "count": n_} for n, n_ in out.close()]


# -- asynchronous search and $everything ---------------------------------------------


def _bundle(hub: Hub, store: JobStore, job: Job, principal: Principal | None, folder: Path):
    """A search or ``$everything`` run to its last page, as one searchset Bundle file."""
    p = job.params
    tt = dt.datetime.now(dt.UTC)
    if not store.renew(job, "started", transaction_time=tt):
        raise Lost
    progress = _Progress(store, job)
    base = p.get("base", "")
    name = "Bundle-1.json"
    matches = 0
    with open(folder / name, "wb") as fh:
        fh.write(b'{"resourceType":"Bundle","type":"searchset","entry":[')
        first = True
        for entries in _result_pages(hub, job, principal):
            for e in entries:
                if not first:
                    fh.write(b",")
                first = False
                full = orjson.dumps(f"{base}/{e.res_type}/{e.res_id}")
                fh.write(b'{"fullUrl":' + full + b',"resource":')
                fh.write(e.content.encode() if isinstance(e.content, str) else e.content)
                fh.write(b',"search":{"mode":' + orjson.dumps(e.mode) + b"}}")
                matches += e.mode == "match"
            progress.page(job.kind, len(entries))
        fh.write(b'],"total":' + str(matches).encode() + b"}")
    return {
        "transactionTime": format_instant(tt),
        "request": job.request,
        "requiresAccessToken": True,
        "output": [{"type": "Bundle", "file": name, "count": 1}],
        "error": [],
    }


def _result_pages(hub: Hub, job: Job, principal: Principal | None) -> Iterator[list[SearchEntry]]:
    p = job.params
    size = str(int(setting(hub.config, "BULK_PAGE_SIZE")))
    params = [tuple(kv) for kv in p.get("params", []) if kv[0] not in ("_count", "_cursor")]
    cursor = None
    while True:
        page = [*params, ("_count", size)] + ([("_cursor", cursor)] if cursor else [])
        with hub.repo.reading() as conn:
            if job.kind == "everything":
                result = everything_mod.everything(
                    conn,
                    p["patient"],
                    page,
                    base=p.get("base", ""),
                    default_count=int(size),
                    max_count=int(size),
                    visibility=_visibility(hub, principal),
                )
                entries = result.entries
            else:
                compartment = tuple(p["compartment"]) if p.get("compartment") else None
                result = hub.service.search_engine.search(
                    conn,
                    p.get("res_type"),
                    page,
                    compartment=compartment,
                    access=guard.search_access(principal),
                    base_url=p.get("base", ""),
                    strict=bool(p.get("strict")),
                )
                entries = guard.visible_entries(result.entries, principal)
        yield entries
        cursor = result.next_cursor
        if not cursor:
            return


def _visibility(hub: Hub, principal: Principal | None) -> Visibility:
    """``$everything``'s visibility for the principal (as the kernel gives a request's)."""
    return for_principal(principal, hub.service.within_jurisdiction)
