"""A hospital's local code table in, the gaps of its mapping out.

``hub terminology load SITE FILE`` reads a table (CSV or XLSX: ``code``, ``display``,
``target code`` and optionally ``target system``) and stores it, through the FHIR
service, as the site's CodeSystem of local codes and a ConceptMap
``urn:fhirhub:conceptmap:<map>:<site>``, which the site's adapter then uses in place
of the shared map's entries (a site override) and ``$translate`` serves.

``hub terminology unmapped SITE`` counts the local codes the site sent that no map
held: the adapters record each as a warning whose ``details.coding`` carries
``urn:fhirhub:codesystem:ingest-issue#unmapped-code`` and the code itself
(:func:`hub.mapping.unmapped_issue`); codes mapped since are left out.
"""

from __future__ import annotations

import csv
import dataclasses
import io
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING
from typing import Any

from hub.codesystems import INGEST_ISSUE
from hub.codesystems import UNMAPPED_CODE
from hub.storage.inbox_store import InboxStore
from hub.terminology.maps import map_url

if TYPE_CHECKING:
    from hub.kernel import Hub

# Column headings accepted for each field (lower-cased; Chinese headings as hospitals write them).
COLUMNS = {
    "code": ("code", "local code", "本地代码", "代码", "编码"),
    "display": ("display", "name", "本地名称", "名称"),
    "target_code": ("target code", "target_code", "target", "目标代码", "标准代码"),
    "target_system": ("target system", "target_system", "目标系统", "标准代码系统"),
}
# The ``identifier_systems`` key of a site manifest naming the system its adapter writes a
# map's local codes with (the HL7 v2 adapter keeps OBX-3 local codes under ``lab``).
LOCAL_SYSTEM_KEYS = {"hl7v2-local-lab": "lab"}


@dataclasses.dataclass
class Row:
    line: int
    code: str
    display: str
    target_code: str
    target_system: str | None


def read_table(name: str, body: bytes) -> list[Row]:
    """The rows of a CSV (UTF-8 or GB 18030) or XLSX table; ``ValueError`` says what is wrong."""
    if name.lower().endswith((".xlsx", ".xlsm")):
        rows = _xlsx_rows(body)
    else:
        rows = list(csv.reader(io.StringIO(_decode(body))))
    rows = [[str(c).strip() if c is not None else "" for c in r] for r in rows]
    rows = [r for r in rows if any(r)]
    if not rows:
        raise ValueError(f"{name}: the table is empty")
    header = [h.lower() for h in rows[0]]
    where: dict[str, int] = {}
    for field, names in COLUMNS.items():
        for i, h in enumerate(header):
            if h in names:
                where[field] = i
                break
    missing = [f for f in ("code", "display", "target_code") if f not in where]
    if missing:
        raise ValueError(
            f"{name}: no column for {', '.join(missing)} (the first row must name the columns:"
            " code, display, target code [, target system])"
        )
    out: list[Row] = []
    problems: list[str] = []
    seen: dict[str, Row] = {}

    def cell(r: list[str], field: str) -> str:
        i = where.get(field)
        return r[i] if i is not None and i < len(r) else ""

    for number, r in enumerate(rows[1:], start=2):
        row = Row(
            number,
            cell(r, "code"),
            cell(r, "display"),
            cell(r, "target_code"),
            cell(r, "target_system") or None,
        )
        if not row.code:
            problems.append(f"line {number}: no code")
            continue
        if row.code in seen:
            problems.append(f"line {number}: code {row.code!r} again (line {seen[row.code].line})")
            continue
        seen[row.code] = row
        out.append(row)
    if problems:
        raise ValueError(f"{name}: " + "; ".join(problems[:20]))
    return out


def _decode(body: bytes) -> str:
    try:
        return body.decode("utf-8-sig")
    except UnicodeDecodeError:
        return body.decode("gb18030")


def _xlsx_rows(body: bytes) -> list[list[Any]]:
    import openpyxl

    book = openpyxl.load_workbook(io.BytesIO(body), read_only=True, data_only=True)
    try:
        return [list(r) for r in book.worksheets[0].iter_rows(values_only=True)]
    finally:
        book.close()


def table_resources(
    the_hub: Hub, site_name: str, map_id: str, rows: list[Row], system: str | None = None
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The site's CodeSystem of local codes and its ConceptMap override of ``map_id``."""
    site = the_hub.sites.get(site_name)
    if site is None:
        raise ValueError(f"no site {site_name!r}; known: {sorted(the_hub.sites)}")
    base = the_hub.code_maps.get(map_id)
    if base is None:
        raise ValueError(f"no code map {map_id!r}; known: {sorted(the_hub.code_maps)}")
    key = LOCAL_SYSTEM_KEYS.get(map_id)
    system = (
        system
        or (site.identifier_systems.get(key) if key else None)
        or f"urn:fhirhub:site:{site_name}:{map_id}"
    )
    res_id = f"{map_id}.{site_name}"[:64]
    code_system = {
        "resourceType": "CodeSystem",
        "id": res_id,
        "url": system,
        "name": f"{site_name} {map_id}".replace("-", "_").replace(" ", "_"),
        "title": f"{site_name}: local codes of {map_id}",
        "status": "active",
        "content": "complete",
        "caseSensitive": True,
        "concept": [
            {"code": r.code, **({"display": r.display} if r.display else {})} for r in rows
        ],
    }
    groups: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        if not r.target_code:
            continue  # listed, not mapped yet
        element = {"code": r.code, "target": [{"code": r.target_code, "equivalence": "equivalent"}]}
        if r.display:
            element["display"] = r.display
        groups.setdefault(r.target_system or base.target or "", []).append(element)
    concept_map = {
        "resourceType": "ConceptMap",
        "id": res_id,
        "url": map_url(map_id, site_name),
        "name": code_system["name"],
        "title": f"{site_name}: {map_id}",
        "status": "active",
        "sourceUri": system,
        **({"targetUri": base.target} if base.target else {}),
        "group": [
            {"source": system, **({"target": t} if t else {}), "element": elements}
            for t, elements in groups.items()
        ],
    }
    return code_system, concept_map


def load_table(
    the_hub: Hub, site_name: str, map_id: str, path: Path, system: str | None = None
) -> dict[str, int]:
    """Store the table at ``path`` as the site's CodeSystem and ConceptMap (replacing the
    ones loaded before); returns how many codes it holds and how many are mapped."""
    from hub.fhir.service import WriteOptions

    rows = read_table(path.name, path.read_bytes())
    code_system, concept_map = table_resources(the_hub, site_name, map_id, rows, system)
    for res in (code_system, concept_map):
        the_hub.service.update(res["resourceType"], res["id"], res, WriteOptions(), "")
    the_hub.terminology.refresh()
    return {"codes": len(rows), "mapped": sum(1 for r in rows if r.target_code)}


@dataclasses.dataclass
class Unmapped:
    map_id: str | None
    system: str | None
    code: str
    count: int
    last_item: int


def unmapped(the_hub: Hub, site_name: str, page: int = 500) -> list[Unmapped]:
    """The local codes ``site_name`` sent that no map held, most frequent first; codes a
    map holds now (a table loaded since) are left out."""
    if site_name not in the_hub.sites:
        raise ValueError(f"no site {site_name!r}; known: {sorted(the_hub.sites)}")
    the_hub.terminology.refresh()
    counts: Counter[tuple[str | None, str | None, str]] = Counter()
    last: dict[tuple[str | None, str | None, str], int] = {}
    store = InboxStore(the_hub.engine)
    before: int | None = None
    while True:
        items = store.list(site=site_name, limit=page, before_id=before)
        for item in items:
            for found in _unmapped_codes(item.outcome):
                counts[found] += 1
                last[found] = max(last.get(found, 0), item.id)
        if len(items) < page:
            break
        before = items[-1].id
    site = the_hub.sites[site_name]
    out = []
    for (map_id, system, code), n in counts.most_common():
        if map_id and map_id in the_hub.code_maps:
            if the_hub.terminology.code_map(map_id, site).lookup(code) is not None:
                continue  # closed since
        out.append(Unmapped(map_id, system, code, n, last[(map_id, system, code)]))
    return out


def _unmapped_codes(oo: dict | None):
    for issue in (oo or {}).get("issue") or ():
        details = issue.get("details") or {}
        codings = details.get("coding") or []
        if len(codings) < 2 or codings[0].get("system") != INGEST_ISSUE:
            continue
        if codings[0].get("code") != UNMAPPED_CODE or not codings[1].get("code"):
            continue
        text = details.get("text") or ""
        map_id = text.removeprefix("unmapped in ") if text.startswith("unmapped in ") else None
        yield map_id, codings[1].get("system"), codings[1]["code"]
