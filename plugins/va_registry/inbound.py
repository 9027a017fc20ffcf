"""One registry file -> one transaction Bundle of its good rows, plus row issues.

How problems are reported (the pipeline stores ``context.issues`` with the
ingest outcome):

- a rejected row: an ``error`` issue whose ``expression`` is the source
  position ``row 17, column 身份证号`` and whose diagnostics repeat it with the
  reason. The Bundle still holds every good row; an error issue next to a
  returned Bundle therefore means *partially accepted*, not *failed*;
- a loaded row with a data-quality problem: a ``warning`` issue, same location;
- a column the hub does not import: one ``information`` issue per file;
- a summary ``information`` issue: rows read, loaded and rejected.

A file that cannot be read at all (no header, missing identity columns, not
text) raises :class:`hub.outcomes.OperationOutcomeError`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from typing import Any

from hub.plugin_api import InboundMessage
from hub.plugin_api import MappingContext
from hub.plugin_api import issue

from .departures import current_patient_ids
from .departures import departures
from .read import Table
from .read import load_columns
from .read import read_table
from .to_fhir import DEFAULT_PROGRAMMES
from .to_fhir import RowError
from .to_fhir import RowMapper

if TYPE_CHECKING:
    from hub.plugin_api import Site

ADAPTER = "va_registry"


STATE_KEY = "registry_patient_ids"


def plugin_config(site: Site) -> dict[str, Any]:
    getter = getattr(site, "plugin_config", None)
    return dict(getter(ADAPTER) or {}) if callable(getter) else {}


def map_registry_file(message: InboundMessage, context: MappingContext) -> dict[str, Any]:
    """The transaction Bundle for one registry export (CSV or XLSX bytes)."""
    config = plugin_config(message.site or context.site)
    table = read_table(message.body, config.get("encoding"))
    bundle = map_table(table, context, config)
    # People in the previous import but not in this one left the registry:
    # mark them, never delete them. The pipeline keeps ``context.state`` per
    # site and saves it only when this file's data is stored.
    current = current_patient_ids(bundle)
    previous = context.state.get(STATE_KEY) or []
    if previous:
        bundle["entry"].extend(
            departures(previous, current, programmes=config.get("programmes") or DEFAULT_PROGRAMMES)
        )
    context.state[STATE_KEY] = current
    return bundle


def map_table(table: Table, context: MappingContext, config: dict[str, Any]) -> dict[str, Any]:
    mapper = RowMapper(context, config)
    headers = _header_names(table)
    entries: list[dict[str, Any]] = []
    seen: dict[str, int] = {}
    rejected = 0
    for row in table.rows:
        try:
            mapped = mapper.map_row(row)
            if mapped.patient_id in seen:
                raise RowError(
                    "resident_id",
                    f"the same person as row {seen[mapped.patient_id]} (same resident ID number)",
                    "duplicate",
                )
        except RowError as exc:
            rejected += 1
            where = _where(row.number, headers, exc.field)
            context.issues.append(
                issue("error", exc.code, f"{where}: {exc.text}; row not loaded", where)
            )
            continue
        seen[mapped.patient_id] = row.number
        for field, text in mapped.warnings:
            where = _where(row.number, headers, field)
            context.issues.append(issue("warning", "value", f"{where}: {text}", where))
        for resource in mapped.resources:
            entries.append(_put(resource))
    imported = {c.field for c in load_columns() if c.imported}
    for field, header in table.headers.items():
        if field not in imported:
            context.unused(
                f"column {header}", f"column {header} is not imported (data minimisation)"
            )
    for header in table.unknown_headers:
        context.unused(f"column {header}", f"column {header} is not a registry column; ignored")
    context.info(
        f"{len(table.rows)} rows read ({table.encoding}), {len(table.rows) - rejected} loaded, "
        f"{rejected} rejected"
    )
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


def _header_names(table: Table) -> dict[str, str]:
    names = {c.field: c.headers[0] for c in load_columns()}
    names.update(table.headers)
    return names


def _where(number: int, headers: dict[str, str], field: str) -> str:
    return f"row {number}, column {headers.get(field, field)}"


def _put(resource: dict[str, Any]) -> dict[str, Any]:
    url = f"{resource['resourceType']}/{resource['id']}"
    return {"fullUrl": url, "resource": resource, "request": {"method": "PUT", "url": url}}
