"""``hub import``: NDJSON files (a bulk export's, a partner's) through the hub's write path.

Every line is one resource, written by the FHIR service in a unit of work
(:meth:`~hub.fhir.service.FhirService.update_with` for a line with an id, so a file
imported twice stores nothing new; :meth:`~hub.fhir.service.FhirService.create_with`
without one): validated, indexed, on the change feed and audited like any write. Lines
are written ``BULK_IMPORT_BATCH`` per transaction; a line that fails is reported as an
OperationOutcome line (its issue's expression names the file and line) and the others
go on: a batch whose commit fails is written again one line per transaction.

The transaction that stores a batch also records how many lines of the file are done
(``import_progress``), so an import that was stopped continues, when run again, with the
first line not stored. A file whose beginning or size changed starts again from its top.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import IO
from typing import TYPE_CHECKING

import orjson

from hub import outcomes
from hub.config import setting
from hub.fhir.service import check_type
from hub.storage.jobs import JobStore

if TYPE_CHECKING:
    from hub.kernel import Hub


@dataclasses.dataclass
class FileResult:
    path: Path
    lines: int = 0  # lines done (stored or reported), this run and before
    stored: int = 0
    errors: int = 0
    resumed_at: int = 0  # the first line of this run (0: from the top)


def files_of(paths: list[Path]) -> list[Path]:
    """The NDJSON files named, or found in the folders named (sorted)."""
    out: list[Path] = []
    for path in paths:
        if path.is_dir():
            out += sorted(p for p in path.rglob("*") if p.suffix in (".ndjson", ".jsonl"))
        else:
            out.append(path)
    return out


def digest(path: Path) -> str:
    """What says "the same file": its size and its first 64 KiB."""
    h = hashlib.sha256(str(path.stat().st_size).encode())
    with open(path, "rb") as fh:
        h.update(fh.read(65536))
    return h.hexdigest()


def import_file(
    hub: Hub,
    path: Path,
    errors_out: IO[bytes],
    *,
    restart: bool = False,
    progress: Callable[[int], None] | None = None,
) -> FileResult:
    """Import one NDJSON file; ``progress(n)`` is called with the bytes done after each batch."""
    store = JobStore(hub.engine)
    source = str(path.resolve())
    mark = digest(path)
    result = FileResult(path)
    known = None if restart else store.import_progress(source)
    if known is not None and known["digest"] == mark:
        result.lines = result.resumed_at = int(known["lines"])
        result.stored, result.errors = int(known["stored"]), int(known["errors"])
    size = max(1, int(setting(hub.config, "BULK_IMPORT_BATCH")))
    batch: list[tuple[int, bytes]] = []
    with open(path, "rb") as fh:
        for number, line in enumerate(fh, start=1):
            if number <= result.resumed_at:
                if progress:
                    progress(len(line))
                continue
            batch.append((number, line))
            if len(batch) >= size:
                _store_batch(hub, store, source, mark, batch, result, errors_out)
                if progress:
                    progress(sum(len(b) for _, b in batch))
                batch = []
        if batch:
            _store_batch(hub, store, source, mark, batch, result, errors_out)
            if progress:
                progress(sum(len(b) for _, b in batch))
    return result


def _store_batch(hub, store, source, mark, batch, result: FileResult, errors_out) -> None:
    try:
        failed = hub.repo.write(
            lambda writer: _write_lines(hub, store, writer, source, mark, batch, result)
        )
    except Exception:  # noqa: BLE001 - the commit failed: each line alone finds the culprit
        for item in batch:
            try:
                failed = hub.repo.write(
                    lambda writer, item=item: _write_lines(
                        hub, store, writer, source, mark, [item], result
                    )
                )
            except outcomes.OperationOutcomeError as err:
                failed = [(item[0], err.outcome)]
                _record_failure(hub, store, source, mark, item[0], result)
            except Exception as err:  # noqa: BLE001 - reported per line, the import goes on
                failed = [(item[0], _outcome(f"not stored: {type(err).__name__}"))]
                _record_failure(hub, store, source, mark, item[0], result)
            _account(result, [item], failed, errors_out)
        return
    _account(result, batch, failed, errors_out)


def _account(result: FileResult, batch, failed, errors_out) -> None:
    for number, oo in failed:
        _report(errors_out, result.path, number, oo)
    result.lines = batch[-1][0]
    result.errors += len(failed)
    result.stored += len(batch) - len(failed)


def _write_lines(hub, store, writer, source, mark, batch, result: FileResult) -> list:
    """Stage each line's resource; returns ``[(line, outcome)]`` of those refused."""
    failed = []
    for number, raw in batch:
        try:
            resource = _parse(raw)
            res_type = resource["resourceType"]
            check_type(res_type)
            if resource.get("id"):
                hub.service.update_with(writer, res_type, resource["id"], resource)
            else:
                hub.service.create_with(writer, res_type, resource)
        except outcomes.OperationOutcomeError as err:
            failed.append((number, err.outcome))
    last = batch[-1][0]
    errors = result.errors + len(failed)
    stored = result.stored + len(batch) - len(failed)
    store.save_import_progress(writer.conn, source, mark, last, stored, errors)
    return failed


def _record_failure(hub, store, source, mark, number, result: FileResult) -> None:
    """A line refused at commit: recorded as done (reported) so a rerun does not retry it."""

    def save(writer):
        store.save_import_progress(
            writer.conn, source, mark, number, result.stored, result.errors + 1
        )

    hub.repo.write(save)


def _parse(raw: bytes) -> dict:
    text = raw.strip()
    if not text:
        raise outcomes.bad_request("empty line: NDJSON has one resource per line")
    try:
        resource = orjson.loads(text)
    except orjson.JSONDecodeError as err:
        raise outcomes.bad_request(f"not JSON: {err}") from None
    if not isinstance(resource, dict) or not isinstance(resource.get("resourceType"), str):
        raise outcomes.bad_request("not a FHIR resource (no resourceType)")
    return resource


def _outcome(text: str) -> dict:
    return outcomes.outcome(outcomes.issue("error", "exception", text))


def _report(out: IO[bytes], path: Path, number: int, oo: dict) -> None:
    """One OperationOutcome line naming the file and line it is about."""
    issues = []
    for issue in oo.get("issue") or []:
        issue = dict(issue)
        issue["expression"] = [f"{path.name}:{number}", *(issue.get("expression") or [])]
        issues.append(issue)
    out.write(orjson.dumps({"resourceType": "OperationOutcome", "issue": issues}) + b"\n")
    out.flush()
