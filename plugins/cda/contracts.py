"""The county platform's family-doctor contract export (DOMAIN §10.4) -> FHIR.

WS/T 483 has no contract document, so the platform exports contracts as a CSV
table with Chinese headers. Each row becomes (DOMAIN §2.6):

- ``EpisodeOfCare`` (type family-doctor-contract): the contract, with the
  contract number as identifier, the effective..expiry dates as ``period``, the
  status, the signing doctor as ``careManager``, the team, the institution and
  the service packages and signing date as extensions;
- ``CareTeam`` for the family-doctor team of an institution (shared by rows);
- ``Practitioner`` for the signing doctor (identified by institution + name:
  the export carries no staff number);
- ``Organization`` for the signing institution;
- the ``Patient``, created only if none has the resident ID number yet
  (conditional create), so the export never overwrites demographics that
  richer sources wrote.

Rows with errors (bad ID checksum, impossible dates, unknown status) are
reported with their row number and skipped; the other rows load.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
from typing import TYPE_CHECKING

from fhirhub_plugins.cda import ids
from fhirhub_plugins.cda import vocab
from hub.plugin_api import OperationOutcomeError
from hub.plugin_api import codesystems as cs
from hub.plugin_api import issue
from hub.plugin_api import outcome
from hub.plugin_api import resident_id

if TYPE_CHECKING:
    from hub.plugin_api import Site

COLUMNS = (
    "签约编号",
    "姓名",
    "身份证号",
    "健康档案编号",
    "签约机构代码",
    "签约机构",
    "家庭医生团队",
    "签约医生",
    "服务包",
    "签约日期",
    "生效日期",
    "到期日期",
    "签约状态",
)
REQUIRED = ("签约编号", "身份证号", "签约机构代码", "签约医生", "生效日期", "到期日期", "签约状态")
STATUS = {"有效": "active", "已到期": "finished", "未生效": "planned", "已解约": "cancelled"}
EPISODE_TYPE = {
    "system": cs.CARE_PROGRAMME,
    "code": cs.FAMILY_DOCTOR_CONTRACT,
    "display": "家庭医生签约服务",
}
EXT_PACKAGE = cs.SERVICE_PACKAGE_EXTENSION
EXT_SIGNED = "urn:fhirhub:extension:contract-signed-date"
PACKAGE_SYSTEM = cs.SERVICE_PACKAGE
# 服务包 names of the export -> the service-package codes the contract rules read
# (mappings/completeness/family-doctor.yaml). Any "...个性化包" (a personalised package for
# a disease or group) is personalised; the export's own name stays as the display.
PACKAGES = {
    "基础包": cs.PACKAGE_BASIC,
    "中级包": cs.PACKAGE_INTERMEDIATE,
    "高级包": cs.PACKAGE_ADVANCED,
    "个性化包": cs.PACKAGE_PERSONALISED,
}
_SPLIT = re.compile(r"[、,，+；;]")


def _decode(body: bytes) -> str:
    try:
        return body.decode("utf-8-sig")
    except UnicodeDecodeError:
        return body.decode("gb18030")


# How much of a body is read to recognise the export by its header line.
SNIFF_BYTES = 4096


def looks_like_contracts(body: bytes) -> bool:
    """The export's header line names 签约编号 and 身份证号.

    Only the first line is decoded: a fixed-size prefix can end inside a
    multi-byte character, which must not hide the header. A newline byte never
    occurs inside a UTF-8 or GB18030 character, so cutting there is safe; a
    prefix with no newline is cut back to a character boundary.
    """
    head = body[:SNIFF_BYTES]
    line, newline, _rest = head.partition(b"\n")
    if not newline:
        line = _whole_characters(line)
    try:
        first = _decode(line)
    except UnicodeDecodeError:
        return False
    return "签约编号" in first and "身份证号" in first


def _whole_characters(prefix: bytes) -> bytes:
    """``prefix`` without a character cut at its end (up to 3 trailing bytes dropped)."""
    for drop in range(4):
        part = prefix[: len(prefix) - drop]
        for encoding in ("utf-8-sig", "gb18030"):
            try:
                part.decode(encoding)
            except UnicodeDecodeError:
                continue
            return part
    return prefix


def _date(text: str) -> str | None:
    text = (text or "").strip()
    for fmt in ("%Y-%m-%d", "%Y/%m/%d", "%Y%m%d"):
        try:
            return dt.datetime.strptime(text, fmt).date().isoformat()
        except ValueError:
            continue
    return None


def contracts_bundle(body: bytes, context, site: Site | None = None) -> dict:
    """A transaction Bundle for every valid row of the contract export."""
    site_name = getattr(site, "name", None) or "default"
    reader = csv.DictReader(io.StringIO(_decode(body)))
    header = [h.strip() for h in (reader.fieldnames or [])]
    missing = [c for c in REQUIRED if c not in header]
    if missing:
        raise OperationOutcomeError(
            outcome(
                issue("error", "structure", f"contract export lacks columns {missing}", "row 1")
            ),
            400,
        )
    systems = getattr(site, "identifier_systems", None) or {}
    contract_system = (
        systems.get("contract") or f"urn:fhirhub:site:{site_name}:family-doctor-contract"
    )
    entries: dict[str, dict] = {}
    loaded = 0
    for line, raw in enumerate(reader, 2):
        row = {k.strip(): (v or "").strip() for k, v in raw.items() if k}
        problems = []
        for column in REQUIRED:
            if not row.get(column):
                problems.append(f"{column} is empty")
        rid = None
        if row.get("身份证号"):
            try:
                rid = resident_id.parse(row["身份证号"])
            except resident_id.InvalidResidentId as exc:
                problems.append(f"身份证号: {exc}")
        start, end, signed = (
            _date(row.get("生效日期")),
            _date(row.get("到期日期")),
            _date(row.get("签约日期")),
        )
        if row.get("生效日期") and not start:
            problems.append(f"生效日期 {row['生效日期']!r} is not a date")
        if row.get("到期日期") and not end:
            problems.append(f"到期日期 {row['到期日期']!r} is not a date")
        if start and end and end < start:
            problems.append("到期日期 is before 生效日期")
        status = STATUS.get(row.get("签约状态", ""))
        if row.get("签约状态") and status is None:
            problems.append(f"签约状态 {row['签约状态']!r} is not one of {sorted(STATUS)}")
        if problems:
            for problem in problems:
                context.warn(f"row {line} skipped: {problem}", f"row {line}")
            continue
        patient = _patient(row, rid)
        org = {
            "resourceType": "Organization",
            "id": ids.organization_id(vocab.urn(vocab.OID_ORGANIZATION), row["签约机构代码"]),
            "identifier": [
                {"system": vocab.urn(vocab.OID_ORGANIZATION), "value": row["签约机构代码"]}
            ],
        }
        if row.get("签约机构"):
            org["name"] = row["签约机构"]
        doctor = {
            "resourceType": "Practitioner",
            "id": ids.resource_id(site_name, "Practitioner", row["签约机构代码"], row["签约医生"]),
            "name": [{"text": row["签约医生"]}],
        }
        members = [{"role": [{"text": "签约医生"}], "member": _ref(doctor)}]
        team = None
        if row.get("家庭医生团队"):
            team_id = ids.resource_id(
                site_name, "CareTeam", row["签约机构代码"], row["家庭医生团队"]
            )
            team = entries.get(f"CareTeam/{team_id}", {}).get("resource") or {
                "resourceType": "CareTeam",
                "id": team_id,
                "status": "active",
                "category": [{"coding": [EPISODE_TYPE]}],
                "name": row["家庭医生团队"],
                "managingOrganization": [_ref(org)],
                "participant": [],
            }
            if all(p["member"] != _ref(doctor) for p in team["participant"]):
                team["participant"].extend(members)
        episode = {
            "resourceType": "EpisodeOfCare",
            "id": ids.resource_id(site_name, "EpisodeOfCare", row["签约编号"]),
            "identifier": [{"system": contract_system, "value": row["签约编号"]}],
            "status": status,
            "type": [{"coding": [EPISODE_TYPE]}],
            "patient": {"reference": f"urn:uuid:{patient['id']}"},
            "managingOrganization": _ref(org),
            "period": {"start": start, "end": end},
            "careManager": _ref(doctor),
        }
        if team:
            episode["team"] = [_ref(team)]
        extensions = [
            {"url": EXT_PACKAGE, "valueCoding": _package(name.strip(), line, context)}
            for name in _SPLIT.split(row.get("服务包", ""))
            if name.strip()
        ]
        if signed:
            extensions.append({"url": EXT_SIGNED, "valueDate": signed})
        if extensions:
            episode["extension"] = extensions
        for resource in (org, doctor, team, episode):
            if resource is not None:
                entries[f"{resource['resourceType']}/{resource['id']}"] = _put(resource)
        entries[f"Patient/{patient['id']}"] = {
            "fullUrl": f"urn:uuid:{patient['id']}",
            "resource": patient,
            "request": {
                "method": "POST",
                "url": "Patient",
                "ifNoneExist": f"identifier={vocab.urn(vocab.OID_RESIDENT_ID)}|{rid.value}",
            },
        }
        loaded += 1
    if loaded == 0:
        raise OperationOutcomeError(
            outcome(
                *context.issues,
                issue("error", "processing", "no contract row could be loaded", "row 2"),
            ),
            422,
        )
    context.info(f"{loaded} contracts loaded")
    return {"resourceType": "Bundle", "type": "transaction", "entry": list(entries.values())}


def _package(name: str, line: int, context) -> dict:
    """The service-package coding of a 服务包 name; an unknown name is kept as display only."""
    code = PACKAGES.get(name) or (cs.PACKAGE_PERSONALISED if name.endswith("个性化包") else None)
    if code is None:
        context.warn(
            f"row {line}: 服务包 {name!r} is not one of {sorted(PACKAGES)} or a 个性化包: "
            "kept as text, not counted for package services",
            f"row {line}",
        )
        return {"display": name}
    return {"system": PACKAGE_SYSTEM, "code": code, "display": name}


def _patient(row: dict, rid) -> dict:
    identifiers = [{"system": vocab.urn(vocab.OID_RESIDENT_ID), "value": rid.value}]
    if row.get("健康档案编号"):
        identifiers.append(
            {"system": vocab.urn(vocab.OID_HEALTH_RECORD), "value": row["健康档案编号"]}
        )
    patient = {
        "resourceType": "Patient",
        "id": ids.patient_id(vocab.urn(vocab.OID_RESIDENT_ID), rid.value),
        "identifier": identifiers,
        "gender": rid.sex,
        "birthDate": rid.birth_date.isoformat(),
    }
    if row.get("姓名"):
        patient["name"] = [{"text": row["姓名"]}]
    return patient


def _ref(resource: dict) -> dict:
    return {"reference": f"{resource['resourceType']}/{resource['id']}"}


def _put(resource: dict) -> dict:
    return {
        "fullUrl": f"urn:uuid:{resource['id']}",
        "resource": resource,
        "request": {"method": "PUT", "url": f"{resource['resourceType']}/{resource['id']}"},
    }
