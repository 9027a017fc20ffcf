"""Status polls, manifests, cancellation, file access, and the worker's step.

Only the principal that kicked a job off (the same client or user) may poll it, cancel
it or read its files: to anyone else the job does not exist (404), as a resource
without a label grant does not.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import os
import socket
import uuid
from pathlib import Path
from typing import TYPE_CHECKING
from typing import Any

from hub import outcomes
from hub.bulk import export
from hub.bulk import files
from hub.bulk import principals
from hub.bulk.kickoff import FILE_PATH
from hub.config import setting
from hub.fhir.service import Result
from hub.security.principal import Principal
from hub.storage.jobs import Job
from hub.storage.jobs import JobStore

if TYPE_CHECKING:
    from hub.kernel import Hub


def _own_job(hub: Hub, job_id: str, principal: Principal | None) -> Job:
    job = JobStore(hub.engine).get(job_id) if files.is_job_id(job_id) else None
    if job is None or job.owner != principals.owner(principal):
        raise outcomes.not_found(f"No bulk job {job_id} (finished jobs expire)")
    return job


def file_url(base: str, job_id: str, name: str) -> str:
    return f"{base}/{FILE_PATH}/{job_id}/{name}"


def manifest(job: Job, base: str) -> dict[str, Any]:
    """The job's manifest with the file URLs of this base."""
    stored = dict(job.manifest or {})
    out: dict[str, Any] = {
        "transactionTime": stored.get("transactionTime"),
        "request": stored.get("request", job.request),
        "requiresAccessToken": True,
    }
    for key in ("output", "deleted", "error"):
        items = stored.get(key)
        if items is None and key == "deleted":
            continue
        out[key] = [
            {"type": i["type"], "url": file_url(base, job.id, i["file"]), "count": i["count"]}
            for i in items or []
        ]
    return out


def poll(hub: Hub, job_id: str, principal: Principal | None, base: str) -> Result:
    """202 with ``X-Progress`` and ``Retry-After`` while it runs; 200 and the manifest when
    done; the job's OperationOutcome (and its status) when it failed."""
    job = _own_job(hub, job_id, principal)
    if job.status == "done":
        headers = {"Content-Type": "application/json"}
        if job.expires_at is not None:
            headers["Expires"] = email.utils.format_datetime(job.expires_at, usegmt=True)
        return Result(200, manifest(job, base), headers)
    if job.status == "failed":
        oo = dict(job.outcome or outcomes.outcome())
        status = next(
            (
                e.get("valueInteger")
                for e in oo.pop("extension", [])
                if e.get("url") == export.HTTP_STATUS_URL
            ),
            500,
        )
        raise outcomes.OperationOutcomeError(oo, status)
    progress = job.progress or ("queued" if job.status == "queued" else "running")
    return Result(
        202,
        outcomes.ok(f"Job {job.status}: {progress}"),
        {"X-Progress": progress[:100], "Retry-After": str(setting(hub.config, "BULK_RETRY_AFTER"))},
    )


def cancel(hub: Hub, job_id: str, principal: Principal | None) -> Result:
    """``DELETE`` on the status URL: the job and its files are removed (a worker running it
    stops at its next page); later polls answer 404."""
    job = _own_job(hub, job_id, principal)
    JobStore(hub.engine).remove(job.id)
    files.remove_job_dir(hub.config, job.id)
    return Result(202, outcomes.ok(f"Job {job.id} cancelled and its files deleted"))


def file_for(hub: Hub, job_id: str, name: str, principal: Principal | None) -> Path:
    """The path of one of a finished job's files, for its owner."""
    job = _own_job(hub, job_id, principal)
    stored = job.manifest or {}
    listed = {i["file"] for key in ("output", "deleted", "error") for i in stored.get(key) or []}
    path = files.file_path(hub.config, job.id, name)
    if job.status != "done" or name not in listed or path is None:
        raise outcomes.not_found(f"Job {job_id} has no file {name}")
    path = path.parent / f"attempt-{stored.get('attempt', job.attempts)}" / name
    if not path.is_file():
        raise outcomes.not_found(f"Job {job_id} has no file {name} any more")
    return path


# -- the worker ----------------------------------------------------------------


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def run_due(hub: Hub, worker: str | None = None) -> int:
    """One step of ``hub worker``: expire old jobs, then run one due job (0 or 1)."""
    store = JobStore(hub.engine)
    expire(hub, store)
    job = store.claim(worker or worker_name(), float(setting(hub.config, "BULK_LEASE_SECONDS")))
    if job is None:
        return 0
    export.run(hub, store, job)
    return 1


def expire(hub: Hub, store: JobStore | None = None, now: dt.datetime | None = None) -> int:
    """Delete finished jobs past ``BULK_EXPIRE_HOURS``, with their files."""
    store = store or JobStore(hub.engine)
    gone = 0
    for job_id in store.expired(now):
        files.remove_job_dir(hub.config, job_id)
        gone += store.remove(job_id)
    return gone
