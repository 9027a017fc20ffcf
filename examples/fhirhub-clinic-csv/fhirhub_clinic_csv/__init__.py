"""Example adapter: a vaccination clinic's CSV export (``身份证号,姓名,疫苗,接种日期``) -> FHIR.

Each good row becomes a Patient (keyed by the resident ID number) and an
Immunization; a row that cannot be mapped is refused on its own (an ``error``
issue located at its row) while the others are stored: the inbox item is then
``partial``. The whole file is refused only when it is not this format at all.

Everything of the hub comes from ``hub.plugin_api`` (docs/plugin_hooks.md).
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

from hub.plugin_api import RESIDENT_ID_SYSTEM
from hub.plugin_api import Adapter
from hub.plugin_api import OperationOutcomeError
from hub.plugin_api import hookimpl
from hub.plugin_api import issue
from hub.plugin_api import outcome
from hub.plugin_api import patient_id_for_resident_id
from hub.plugin_api import resident_id
from hub.plugin_api import split_chinese_name
from hub.plugin_api import stable_id

FORMAT = "clinic-csv"
COLUMNS = ("身份证号", "姓名", "疫苗", "接种日期")

_EXAMPLE = "身份证号,姓名,疫苗,接种日期\r\n370202195003120834,王建国,流感疫苗,2024-10-08\r\n"


@hookimpl
def register_adapters() -> list:
    """``adapter: clinic_csv`` in a site's manifest binds the site to this plugin."""
    return [
        Adapter(
            name="clinic_csv",
            format=FORMAT,
            input_extension="csv",
            example=("vaccinate", "input.csv", _EXAMPLE),
        )
    ]


@hookimpl
def register_code_maps() -> list:
    return [Path(__file__).parent / "mappings"]


@hookimpl
def detect_format(body: bytes, content_type: str | None) -> str | None:
    first = body.lstrip(b"\xef\xbb\xbf").split(b"\n", 1)[0].decode("utf-8", "replace")
    return FORMAT if first.strip().split(",") == list(COLUMNS) else None


@hookimpl
def map_inbound(message, context) -> dict | None:
    if message.format != FORMAT:
        return None  # not ours: the hub asks the next plugin
    try:
        text = message.body.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise OperationOutcomeError(
            outcome(issue("error", "invalid", f"not UTF-8: {err.reason}", f"byte {err.start}")),
            400,
        ) from None
    rows = list(csv.reader(io.StringIO(text)))
    if not rows or tuple(c.strip() for c in rows[0]) != COLUMNS:
        raise OperationOutcomeError(
            outcome(
                issue("error", "structure", f"the header must be {','.join(COLUMNS)}", "row 1")
            ),
            400,
        )
    entries: list[dict] = []
    for number, row in enumerate(rows[1:], start=2):
        if not any(cell.strip() for cell in row):
            continue
        try:
            entries.extend(_map_row(dict(zip(COLUMNS, row, strict=False)), number, context))
        except ValueError as err:
            # One row refused, the others stored: the ingest is ``partial``.
            context.issues.append(issue("error", "value", f"row {number}: {err}", f"row {number}"))
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


def _map_row(row: dict[str, str], number: int, context) -> list[dict]:
    try:
        rid = resident_id.parse(row.get("身份证号") or "")
    except resident_id.InvalidResidentId as err:
        raise ValueError(f"身份证号: {err}") from None
    date = (row.get("接种日期") or "").strip()
    if len(date) != 10:
        raise ValueError(f"接种日期 {date!r} is not YYYY-MM-DD")
    name = (row.get("姓名") or "").strip()
    family, given = split_chinese_name(name)
    human = {"text": name}
    if family:
        human.update(family=family, given=[given])
    patient_id = patient_id_for_resident_id(rid.value)
    patient = {
        "resourceType": "Patient",
        "id": patient_id,
        "identifier": [{"system": RESIDENT_ID_SYSTEM, "value": rid.value}],
        "name": [human],
        "gender": rid.sex,
        "birthDate": rid.birth_date.isoformat(),
    }
    vaccine = (row.get("疫苗") or "").strip()
    found = context.translate("clinic-csv-vaccine", vaccine, f"row {number}, column 疫苗")
    vaccine_code: dict = {"text": vaccine}  # an unmapped name stays as text (with a warning)
    if found is not None:
        coding = {"system": found.system, "code": found.code}
        if found.display:
            coding["display"] = found.display
        vaccine_code["coding"] = [coding]
    immunization = {
        "resourceType": "Immunization",
        "id": stable_id(patient_id, vaccine, date),
        "status": "completed",
        "vaccineCode": vaccine_code,
        "patient": {"reference": f"Patient/{patient_id}"},
        "occurrenceDateTime": date,
    }
    return [_put(patient), _put(immunization)]


def _put(resource: dict) -> dict:
    url = f"{resource['resourceType']}/{resource['id']}"
    return {"fullUrl": url, "resource": resource, "request": {"method": "PUT", "url": url}}
