"""Demo data for ``make run``: a synthetic county's raw feeds, residents and Synthea patients.

The first screen a newcomer sees is a county as its partners send it: the
raw files of ``tools/county_feeds.py`` (CDA documents, HL7 v2 messages, the
contract and registry exports) go through the ingestion pipeline, then the
completeness audit runs for the county and the last complete year, so the
dashboard opens on real figures (a mix of complete and incomplete records).
A few hand-made residents and three Synthea patients follow (the API examples
use them).

Every person here is invented; resident ID numbers are made up with valid
check characters so that the identity rules accept them.
"""

from __future__ import annotations

import datetime as dt
import importlib.util
import sys
import tempfile
from collections import Counter
from contextlib import nullcontext
from pathlib import Path
from typing import TYPE_CHECKING
from typing import Any

import orjson

from hub.fhir import bundles
from hub.fhir.service import WriteOptions
from hub.identity import HEALTH_RECORD_SYSTEM
from hub.identity import RESIDENT_ID_SYSTEM
from hub.identity.resident_id import check_character
from hub.paths import DATA_DIR
from hub.paths import PROJECT_DIR

if TYPE_CHECKING:
    from hub.kernel import Hub

# (name, family, given, sex, birth date, sequence, village, conditions as ICD-10)
RESIDENTS = [
    ("张伟", "张", "伟", "male", "1950-03-12", "101", "001", ["I10"]),
    ("王芳", "王", "芳", "female", "1957-08-02", "102", "001", ["E11.9"]),
    ("李娜", "李", "娜", "female", "1988-11-23", "104", "002", []),
    ("刘洋", "刘", "洋", "male", "1946-01-30", "105", "002", ["I10", "E11.9"]),
    ("欧阳建国", "欧阳", "建国", "male", "1949-10-01", "107", "003", ["F20.0"]),
    ("陈静", "陈", "静", "female", "2025-06-18", "108", "003", []),
]
RESIDENTS_COUNTY = "370203"  # a county-level division code (GB/T 2260 shape)
TOWNSHIP = "001"
COUNTY = "370283"  # the county of the raw feeds (tools/county_feeds.py): the demo manager's
COUNTY_PEOPLE = 120  # small enough for a fast ``make run``
COUNTY_SEED = 7


def resident_id(birth: str, seq: str) -> str:
    body = RESIDENTS_COUNTY + birth.replace("-", "") + seq
    return body + check_character(body)


def chinese_residents_bundle() -> dict[str, Any]:
    entries: list[dict[str, Any]] = []
    org_id = "demo-township-clinic"
    entries.append(
        {
            "resource": {
                "resourceType": "Organization",
                "id": org_id,
                "name": "示范镇卫生院",
                "identifier": [{"system": "urn:oid:2.16.156.10011.1.5", "value": "370203001"}],
            },
            "request": {"method": "PUT", "url": f"Organization/{org_id}"},
        }
    )
    for n, (name, family, given, sex, birth, seq, village, conditions) in enumerate(RESIDENTS, 1):
        pid = f"demo-{n}"
        record_no = RESIDENTS_COUNTY + TOWNSHIP + village + f"{n:05d}"
        patient = {
            "resourceType": "Patient",
            "id": pid,
            "identifier": [
                {"system": RESIDENT_ID_SYSTEM, "value": resident_id(birth, seq)},
                {"system": HEALTH_RECORD_SYSTEM, "value": record_no},
            ],
            "active": True,
            "name": [{"text": name, "family": family, "given": [given]}],
            "gender": sex,
            "birthDate": birth,
            "address": [{"text": f"示范县示范镇{village}村", "district": "示范县"}],
            "managingOrganization": {"reference": f"Organization/{org_id}"},
        }
        entries.append({"resource": patient, "request": {"method": "PUT", "url": f"Patient/{pid}"}})
        for k, code in enumerate(conditions):
            cid = f"{pid}-cond-{k}"
            entries.append(
                {
                    "resource": {
                        "resourceType": "Condition",
                        "id": cid,
                        "clinicalStatus": {
                            "coding": [
                                {
                                    "system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                                    "code": "active",
                                }
                            ]
                        },
                        "code": {
                            "coding": [{"system": "http://hl7.org/fhir/sid/icd-10", "code": code}]
                        },
                        "subject": {"reference": f"Patient/{pid}"},
                        "recordedDate": "2024-03-01",
                    },
                    "request": {"method": "PUT", "url": f"Condition/{cid}"},
                }
            )
        if "I10" in conditions:
            for q, (sys_bp, dia_bp) in enumerate(((152, 94), (138, 86)), 1):
                oid = f"{pid}-bp-{q}"
                when = dt.date(2025, 3 * q, 15).isoformat()
                entries.append(
                    {
                        "resource": _bp_observation(oid, pid, when, sys_bp, dia_bp),
                        "request": {"method": "PUT", "url": f"Observation/{oid}"},
                    }
                )
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


def _bp_observation(oid: str, pid: str, when: str, systolic: int, diastolic: int) -> dict[str, Any]:
    def component(code: str, display: str, value: int) -> dict[str, Any]:
        return {
            "code": {"coding": [{"system": "http://loinc.org", "code": code, "display": display}]},
            "valueQuantity": {
                "value": value,
                "unit": "mmHg",
                "system": "http://unitsofmeasure.org",
                "code": "mm[Hg]",
            },
        }

    return {
        "resourceType": "Observation",
        "id": oid,
        "status": "final",
        "category": [
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                        "code": "vital-signs",
                    }
                ]
            }
        ],
        "code": {
            "coding": [
                {"system": "http://loinc.org", "code": "85354-9", "display": "Blood pressure panel"}
            ]
        },
        "subject": {"reference": f"Patient/{pid}"},
        "effectiveDateTime": when,
        "component": [
            component("8480-6", "Systolic blood pressure", systolic),
            component("8462-4", "Diastolic blood pressure", diastolic),
        ],
    }


def demo_bundles() -> list[dict[str, Any]]:
    out = [chinese_residents_bundle()]
    for path in sorted((DATA_DIR / "demo" / "synthea").glob("*.json")):
        out.append(orjson.loads(path.read_bytes()))
    return out


def kit_messages(hub: Hub) -> list[tuple[str, bytes, str | None]]:
    """The example sites' accepted messages (cases with an expected Bundle), for the pipeline.

    Synthetic HL7 v2 messages, county-platform CDA documents and registry
    files: the demo exercises every adapter the way a partner would.
    """
    from hub.paths import SITES_DIR
    from hub.testing import discover_kits

    out = []
    for kit in discover_kits([SITES_DIR]):
        if kit.site.name not in hub.sites:
            continue
        for case in kit.cases:
            if (case.folder / "expected.json").is_file():
                path = case.input_path
                content_type = kit.site.content_types.get(path.suffix.lstrip("."))
                out.append((kit.site.name, path.read_bytes(), content_type))
    return out


def county_feeds():
    """The feed generator (``tools/county_feeds.py``, next to the package like ``mappings/``)."""
    name = "fhirhub_demo_county_feeds"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, PROJECT_DIR / "tools" / "county_feeds.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while the file runs
    spec.loader.exec_module(module)
    return module


# The sites whose folders of generated feeds are sent, in this order (every file is
# recognised by its content: the contract export by its header line).
_FEED_SITES = ("county-platform", "county-hospital-a", "veterans-registry")
_CONTENT_TYPES = {
    ".xml": "application/xml",
    ".hl7": "application/hl7-v2",
    ".csv": "text/csv",
    ".xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
}


def county_files(folder: Path, people: int, year: int) -> list[tuple[str, Path]]:
    """Generate the county's raw feeds in ``folder``: ``(site, file)`` in sending order."""
    feeds = county_feeds()
    feeds.generate(folder, people=people, seed=COUNTY_SEED, year=year)
    out = []
    for site in _FEED_SITES:
        out.extend((site, path) for path in sorted((folder / site).iterdir()))
    return out


def load_county(hub: Hub, progress=None, people: int = COUNTY_PEOPLE, year: int | None = None):
    """Ingest a generated county's raw feeds through the pipeline and audit the year."""
    from hub.completeness.batch import run_audit
    from hub.completeness.periods import Period

    year = year or dt.date.today().year - 1  # the last complete year
    counts: Counter = Counter()
    with tempfile.TemporaryDirectory() as tmp:
        files = county_files(Path(tmp), people, year)
        iterator = progress(files, "county feeds") if progress else nullcontext(files)
        with iterator as bar:
            for site, path in bar:
                result = hub.pipeline.ingest(
                    site,
                    path.read_bytes(),
                    content_type=_CONTENT_TYPES.get(path.suffix),
                )
                counts[f"{site} file(s) {result.status}"] += 1
    run = run_audit(hub.engine, Period.year(year), COUNTY, as_of=dt.date(year + 1, 1, 31))
    counts[f"audited people ({COUNTY}, {year})"] = run.people
    return counts


def load_demo(hub: Hub, progress=None) -> Counter:
    """Load the demo data; returns counts of what was loaded.

    A generated county's raw feeds go through the ingestion pipeline and are
    audited (:func:`load_county`); FHIR bundles go through the transaction
    code path (as a REST client's would); the example sites' messages go
    through the ingestion pipeline.
    """
    counts: Counter = load_county(hub, progress)
    opts = WriteOptions(prefer_return="minimal")
    items: list[Any] = [("bundle", b) for b in demo_bundles()]
    items += [("message", m) for m in kit_messages(hub)]
    iterator = progress(items, "demo data") if progress else nullcontext(items)
    with iterator as bar:
        for kind, item in bar:
            if kind == "bundle":
                bundles.process(hub.service, item, "", opts)
                for entry in item.get("entry", []):
                    counts[entry["resource"]["resourceType"]] += 1
            else:
                site, body, content_type = item
                result = hub.pipeline.ingest(site, body, content_type=content_type)
                counts[f"{site} message(s) {result.status}"] += 1
    return counts
