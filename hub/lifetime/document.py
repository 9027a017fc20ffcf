"""The resident health record (居民健康档案) as a FHIR document Bundle.

``Patient/{id}/$lifetime-file`` answers a ``document`` Bundle: a generated ``Composition``
first, then every resource it lists (and what they refer to). Its four sections follow the
four parts of the record in the National Basic Public Health Service Standards (3rd edition):

1. ``basic`` 个人基本信息 (personal basic information): the Patient records, relatives,
   household, allergies, past and current conditions, registration-form items;
2. ``examinations`` 健康体检 (health examinations): health-check encounters and what was
   recorded in them;
3. ``key-populations`` 重点人群健康管理记录 (key-population management): programme
   enrolments (hypertension, diabetes, severe mental disorder, elderly, maternal and
   child care), follow-up visits and what was recorded in them, care plans, five-colour
   Flags, the veterans registry's entitlement;
4. ``services`` 其他医疗卫生服务记录 (other medical services): outpatient and inpatient
   encounters, results, reports, documents, procedures, medication, immunisations.

:func:`section_of` decides; it is pure and the HTML page (:mod:`hub.lifetime.html`) uses the
same grouping.
"""

from __future__ import annotations

import html
import uuid
from collections.abc import Iterable
from typing import Any

from hub import codesystems as cs
from hub.identity import RESIDENT_ID_SYSTEM
from hub.identity.ids import stable_id
from hub.identity.resident_id import mask

PART_SYSTEM = "urn:fhirhub:codesystem:health-record-part"
SECTIONS = (
    ("basic", "个人基本信息", "Personal basic information"),
    ("examinations", "健康体检", "Health examinations"),
    ("key-populations", "重点人群健康管理记录", "Key-population health management records"),
    ("services", "其他医疗卫生服务记录", "Other medical and health services"),
)
DOCUMENT_TYPE = {
    "coding": [{"system": "http://loinc.org", "code": "11503-0", "display": "Medical records"}],
    "text": "居民健康档案 Resident health record",
}
_BASIC_TYPES = frozenset(
    ("Patient", "RelatedPerson", "AllergyIntolerance", "FamilyMemberHistory", "Condition", "Group")
)
_KEY_TYPES = frozenset(("EpisodeOfCare", "CarePlan", "Flag", "Goal"))
# Records about the record, not of care: kept out of the sections.
# A Binary is the content of a listed DocumentReference, not an item of its own.
_NOT_LISTED = frozenset(("Provenance", "AuditEvent", "Task", "Composition", "Bundle", "Binary"))
_EXAM_WORDS = ("体检", "health-check", "health check", "checkup", "HSDC00.01")
_FOLLOWUP_WORDS = ("随访", "follow-up", "followup", "HSDB04", "HSDB05", "HSDB02", "HSDB03")


def encounter_kind(encounter: dict[str, Any]) -> str | None:
    """``examinations`` for a health check, ``key-populations`` for a follow-up or a veterans'
    round or consultation, else None.

    The hub's own codes decide (what the adapters write and the audits read); the
    words are for records from elsewhere that carry only text or document codes.
    """
    codings = [c for t in encounter.get("type") or () for c in (t or {}).get("coding") or ()]
    systems = {(c.get("system"), c.get("code")) for c in codings}
    if (cs.ENCOUNTER_TYPE, cs.HEALTH_CHECK) in systems:
        return "examinations"
    if any(system == cs.CARE_PROGRAMME for system, _ in systems):
        return "key-populations"
    if any((cs.ENCOUNTER_TYPE, kind) in systems for kind in cs.ROUND_KINDS):
        return "key-populations"  # rounds and consultations of the veterans programmes
    words = _words(encounter.get("type")) + _words(encounter.get("serviceType"))
    text = " ".join(words).lower()
    if any(w.lower() in text for w in _EXAM_WORDS):
        return "examinations"
    if any(w.lower() in text for w in _FOLLOWUP_WORDS):
        return "key-populations"
    return None


def section_of(resource: dict[str, Any], encounter_kinds: dict[str, str | None]) -> str | None:
    """The section of one resource; ``encounter_kinds`` maps ``Encounter/id`` to its kind."""
    kind = resource.get("resourceType")
    if kind in _NOT_LISTED:
        return None
    if kind == "Encounter":
        return encounter_kinds.get(f"Encounter/{resource.get('id')}") or "services"
    encounter = _ref(resource.get("encounter")) or _ref(resource.get("context"))
    by_encounter = encounter_kinds.get(encounter) if encounter else None
    if by_encounter:
        return by_encounter
    if kind in ("DocumentReference", "Composition"):
        words = " ".join(_words(resource.get("type"))).lower()
        if any(w.lower() in words for w in _EXAM_WORDS):
            return "examinations"
        if any(w.lower() in words for w in _FOLLOWUP_WORDS):
            return "key-populations"
        return "services"
    if kind in _BASIC_TYPES:
        return "basic"
    if kind in _KEY_TYPES:
        return "key-populations"
    if kind == "Observation":
        systems = {c.get("system") for c in (resource.get("code") or {}).get("coding") or ()}
        if cs.HEALTH_RECORD_ITEM in systems:
            return "basic"  # 个人基本信息表 items (disability, past history ...)
        if cs.VETERAN_STATUS in systems:
            return "key-populations"
    if kind in ("Organization", "Practitioner", "PractitionerRole", "Location", "Medication"):
        return None  # referred to, not listed
    return "services"


def sections(resources: Iterable[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """The resources by section key, each in date order (newest first)."""
    resources = list(resources)
    kinds = {
        f"Encounter/{r.get('id')}": encounter_kind(r)
        for r in resources
        if r.get("resourceType") == "Encounter"
    }
    out: dict[str, list[dict[str, Any]]] = {key: [] for key, _, _ in SECTIONS}
    for res in resources:
        key = section_of(res, kinds)
        if key:
            out[key].append(res)
    for key, items in out.items():
        patients = [r for r in items if r.get("resourceType") == "Patient"]
        others = [r for r in items if r.get("resourceType") != "Patient"]
        others.sort(key=lambda r: clinical_date(r) or "", reverse=True)
        out[key] = patients + others
    return out


def build(
    patient_id: str, resources: list[dict[str, Any]], *, base: str, when: str
) -> dict[str, Any]:
    """The document Bundle for one person from their resources (``$everything``'s)."""
    grouped = sections(resources)
    comp_id = stable_id("lifetime-file", patient_id, when)
    composition: dict[str, Any] = {
        "resourceType": "Composition",
        "id": comp_id,
        "status": "final",
        "type": DOCUMENT_TYPE,
        "subject": {"reference": f"Patient/{patient_id}"},
        "date": when,
        "author": [{"display": "fhirhub"}],
        "title": "居民健康档案 Resident health record",
        "section": [],
    }
    for key, zh, en in SECTIONS:
        items = grouped[key]
        section: dict[str, Any] = {
            "title": f"{zh} {en}",
            "code": {"coding": [{"system": PART_SYSTEM, "code": key, "display": zh}], "text": en},
            "text": {"status": "generated", "div": _narrative(items)},
        }
        if items:
            section["entry"] = [{"reference": _key(r)} for r in items]
        else:
            section["emptyReason"] = {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/list-empty-reason",
                        "code": "nilknown",
                        "display": "Nil Known",
                    }
                ]
            }
        composition["section"].append(section)
    root = base.rstrip("/")
    entries = [{"fullUrl": _full_url(root, composition), "resource": composition}]
    for res in resources:
        if res.get("resourceType") in ("Composition", "Bundle") and res.get("id") == comp_id:
            continue
        entries.append({"fullUrl": _full_url(root, res), "resource": res})
    return {
        "resourceType": "Bundle",
        "id": comp_id,
        "identifier": {"system": "urn:ietf:rfc:3986", "value": f"urn:uuid:{uuid.uuid4()}"},
        "type": "document",
        "timestamp": when,
        "entry": entries,
    }


# -- one-line summaries (narrative and HTML) ------------------------------------------


def clinical_date(resource: dict[str, Any]) -> str | None:
    for key in (
        "effectiveDateTime",
        "onsetDateTime",
        "recordedDate",
        "authoredOn",
        "issued",
        "occurrenceDateTime",
        "performedDateTime",
        "date",
        "created",
        "authored",
    ):
        if isinstance(resource.get(key), str):
            return resource[key]
    for key in ("period", "effectivePeriod", "performedPeriod"):
        period = resource.get(key)
        if isinstance(period, dict) and (period.get("start") or period.get("end")):
            return period.get("start") or period.get("end")
    return None


def describe(resource: dict[str, Any]) -> str:
    """A short readable line for a resource (Chinese where the source gave Chinese)."""
    kind = resource.get("resourceType", "")
    if kind == "Patient":
        # The resident ID number is masked: the page and narrative get printed and passed on.
        numbers = [
            mask(i["value"]) if i.get("system") == RESIDENT_ID_SYSTEM else str(i["value"])
            for i in resource.get("identifier") or ()
            if i.get("value")
        ]
        status = " (已合并 merged)" if resource.get("active") is False else ""
        return ("档案 record " + " ".join(numbers))[:200] + status
    parts = []
    if kind == "RelatedPerson":
        names = [
            n.get("text") or n.get("family", "") + "".join(n.get("given") or ())
            for n in resource.get("name") or ()
        ]
        parts.extend(n for n in names[:1] if n)
    for key in (
        "relationship",
        "type",
        "code",
        "vaccineCode",
        "medicationCodeableConcept",
        "category",
        "class",
    ):
        value = resource.get(key)
        if isinstance(value, list):
            value = value[0] if value else None
        text = _concept_text(value)
        if text:
            parts.append(text)
            break
    value = _value_text(resource)
    if value:
        parts.append(value)
    status = resource.get("status")
    if isinstance(status, str) and kind in ("Flag", "EpisodeOfCare", "Encounter"):
        parts.append(f"({status})")
    if kind == "Group":
        parts.append(f"{resource.get('quantity', '')} 人 members")
    return " ".join(parts) or kind


def _value_text(resource: dict[str, Any]) -> str | None:
    q = resource.get("valueQuantity")
    if isinstance(q, dict) and "value" in q:
        return f"{q['value']} {q.get('unit') or q.get('code') or ''}".strip()
    for key in ("valueString", "valueInteger", "valueBoolean", "valueDateTime"):
        if key in resource:
            return str(resource[key])
    if isinstance(resource.get("valueCodeableConcept"), dict):
        return _concept_text(resource["valueCodeableConcept"])
    comps = resource.get("component") or ()
    texts = []
    for comp in comps[:3]:
        q = comp.get("valueQuantity")
        if isinstance(q, dict) and "value" in q:
            texts.append(f"{q['value']}")
    return "/".join(texts) or None


def _concept_text(concept: Any) -> str | None:
    if isinstance(concept, dict):
        if concept.get("text"):
            return str(concept["text"])
        for coding in concept.get("coding") or ():
            if coding.get("display") or coding.get("code"):
                return str(coding.get("display") or coding.get("code"))
        if concept.get("display") or concept.get("code"):  # a Coding (Encounter.class)
            return str(concept.get("display") or concept.get("code"))
    return None


def _narrative(items: list[dict[str, Any]]) -> str:
    if not items:
        return '<div xmlns="http://www.w3.org/1999/xhtml"><p>无记录 None recorded</p></div>'
    lines = []
    for res in items[:200]:
        date = (clinical_date(res) or "")[:10]
        lines.append(
            f"<li>{html.escape(date)} {html.escape(res.get('resourceType', ''))}: "
            f"{html.escape(describe(res))}</li>"
        )
    more = f"<p>… {len(items) - 200} more</p>" if len(items) > 200 else ""
    return f'<div xmlns="http://www.w3.org/1999/xhtml"><ul>{"".join(lines)}</ul>{more}</div>'


def _words(concepts: Any) -> list[str]:
    if isinstance(concepts, dict):
        concepts = [concepts]
    out = []
    for concept in concepts or ():
        if not isinstance(concept, dict):
            continue
        if concept.get("text"):
            out.append(str(concept["text"]))
        for coding in concept.get("coding") or ():
            out.extend(str(coding.get(k)) for k in ("code", "display") if coding.get(k))
    return out


def _ref(value: Any) -> str | None:
    if isinstance(value, dict) and isinstance(value.get("reference"), str):
        return value["reference"]
    if isinstance(value, list) and value:
        return _ref(value[0])
    return None


def _key(res: dict[str, Any]) -> str:
    return f"{res.get('resourceType')}/{res.get('id')}"


def _full_url(root: str, res: dict[str, Any]) -> str:
    return f"{root}/{_key(res)}" if root else f"urn:fhirhub:{_key(res)}"
