"""A compact structural checker for generated documents (CDA R2 + the CN templates).

The CDA XSD is not shipped, so the structure the platform checks is encoded
here: the order and cardinality of the ``ClinicalDocument`` header (POCD_MT000040),
the China realm constraints (template, OIDs, GB/T 2261.1 sex, resident ID
number), the body's section and entry shapes, typed values, and each document
type's required sections and data elements (``documents.DocType``).
``check_document`` returns OperationOutcome issues; an empty list means pass.
"""

from __future__ import annotations

import re

from fhirhub_plugins.cda import documents
from fhirhub_plugins.cda import vocab
from fhirhub_plugins.cda.cdatypes import number
from fhirhub_plugins.cda.cdatypes import xsi_type
from fhirhub_plugins.cda.parse import NS
from fhirhub_plugins.cda.parse import V3
from hub.plugin_api import issue
from hub.plugin_api import resident_id

# POCD_MT000040.ClinicalDocument children: (name, min, max) in schema order.
HEADER = (
    ("realmCode", 1, None),  # CN realm: required by WS/T 482
    ("typeId", 1, 1),
    ("templateId", 1, None),
    ("id", 1, 1),
    ("code", 1, 1),
    ("title", 1, 1),
    ("effectiveTime", 1, 1),
    ("confidentialityCode", 1, 1),
    ("languageCode", 0, 1),
    ("setId", 0, 1),
    ("versionNumber", 0, 1),
    ("copyTime", 0, 1),
    ("recordTarget", 1, 1),
    ("author", 1, None),
    ("dataEnterer", 0, 1),
    ("informant", 0, None),
    ("custodian", 1, 1),
    ("informationRecipient", 0, None),
    ("legalAuthenticator", 0, 1),
    ("authenticator", 0, None),
    ("participant", 0, None),
    ("inFulfillmentOf", 0, None),
    ("documentationOf", 0, None),
    ("relatedDocument", 0, None),
    ("authorization", 0, None),
    ("componentOf", 0, 1),
    ("component", 1, 1),
)
_ORDER = {name: i for i, (name, _min, _max) in enumerate(HEADER)}
_TS = re.compile(r"^\d{4}(\d{2}(\d{2}(\d{2}(\d{2}(\d{2}(\.\d+)?)?)?)?)?)?([+-]\d{4})?$")
_DE = re.compile(r"^DE\d{2}\.\d{2}\.\d{3}\.\d{2}(\.\d+)?$")
_VALUE_TYPES = {"PQ", "CD", "CE", "CV", "CO", "ST", "BL", "TS", "INT", "IVL_TS", "ED", "REAL", "SC"}
_ENTRY_KINDS = {
    "observation",
    "organizer",
    "substanceAdministration",
    "procedure",
    "act",
    "encounter",
    "supply",
}
_SEX = {"0", "1", "2", "9"}


def _local(element) -> str:
    return element.tag.split("}")[-1] if isinstance(element.tag, str) else ""


class _Checker:
    def __init__(self):
        self.issues: list[dict] = []

    def error(self, code: str, text: str, where: str) -> None:
        self.issues.append(issue("error", code, text, where))

    def need(self, element, path: str, where: str, what: str | None = None):
        found = element.find(path, NS) if element is not None else None
        if found is None:
            self.error("required", f"{what or path.replace('v3:', '')} is required", where)
        return found

    def ts(self, element, where: str, required: bool = True) -> None:
        if element is None:
            if required:
                self.error("required", "a time is required", where)
            return
        value = element.get("value")
        if value is None and element.get("nullFlavor") is None and len(element) == 0:
            self.error("required", "time without a value", where)
        elif value is not None and not _TS.match(value):
            self.error("value", f"{value!r} is not a CDA TS (yyyyMMdd[HHmmss][+zzzz])", where)

    # -- header -------------------------------------------------------------
    def header(self, root) -> documents.DocType | None:
        if root.tag != f"{{{V3}}}ClinicalDocument":
            self.error("structure", "root must be ClinicalDocument in urn:hl7-org:v3", "/")
            return None
        counts: dict[str, int] = {}
        last = -1
        for child in root:
            name = _local(child)
            if not name:
                continue
            if name not in _ORDER:
                self.error(
                    "structure",
                    f"{name} is not a ClinicalDocument element",
                    f"ClinicalDocument/{name}",
                )
                continue
            if _ORDER[name] < last:
                self.error(
                    "structure",
                    f"{name} is out of order (CDA R2 sequence)",
                    f"ClinicalDocument/{name}",
                )
            last = max(last, _ORDER[name])
            counts[name] = counts.get(name, 0) + 1
        for name, low, high in HEADER:
            n = counts.get(name, 0)
            if n < low:
                self.error(
                    "required", f"ClinicalDocument/{name} is required", f"ClinicalDocument/{name}"
                )
            if high is not None and n > high:
                self.error(
                    "structure",
                    f"ClinicalDocument/{name} appears {n} times (max {high})",
                    f"ClinicalDocument/{name}",
                )
        realm = root.find("v3:realmCode", NS)
        if realm is not None and realm.get("code") != "CN":
            self.error("value", "realmCode must be CN", "ClinicalDocument/realmCode")
        type_id = root.find("v3:typeId", NS)
        if type_id is not None and (
            type_id.get("root") != vocab.OID_TYPE_ID or type_id.get("extension") != "POCD_MT000040"
        ):
            self.error(
                "value",
                "typeId must be 2.16.840.1.113883.1.3 / POCD_MT000040",
                "ClinicalDocument/typeId",
            )
        doc_id = root.find("v3:id", NS)
        if doc_id is not None and (
            not (doc_id.get("root") or "").startswith(vocab.OID_DOCUMENT)
            or not doc_id.get("extension")
        ):
            self.error(
                "value",
                f"id needs root {vocab.OID_DOCUMENT} and an extension",
                "ClinicalDocument/id",
            )
        code = root.find("v3:code", NS)
        templates = [t.get("root") for t in root.findall("v3:templateId", NS)]
        doc_type = None
        if code is not None:
            if code.get("codeSystem") != vocab.OID_DOC_TYPE:
                self.error(
                    "value",
                    f"code/@codeSystem must be {vocab.OID_DOC_TYPE}",
                    "ClinicalDocument/code",
                )
            doc_type = documents.DOC_TYPES.get(code.get("code"))
            if doc_type is None:
                self.error(
                    "code-invalid",
                    f"unknown document type {code.get('code')!r}",
                    "ClinicalDocument/code",
                )
            elif doc_type.template not in templates:
                self.error(
                    "value",
                    f"templateId {doc_type.template} is required for {doc_type.code}",
                    "ClinicalDocument/templateId",
                )
        self.ts(root.find("v3:effectiveTime", NS), "ClinicalDocument/effectiveTime")
        conf = root.find("v3:confidentialityCode", NS)
        if conf is not None and (
            conf.get("codeSystem") != vocab.OID_CONFIDENTIALITY
            or conf.get("code") not in ("N", "R", "V")
        ):
            self.error(
                "value",
                "confidentialityCode must be N, R or V in 2.16.840.1.113883.5.25",
                "ClinicalDocument/confidentialityCode",
            )
        self.record_target(root)
        for k, author in enumerate(root.findall("v3:author", NS), 1):
            where = f"ClinicalDocument/author[{k}]"
            self.ts(author.find("v3:time", NS), f"{where}/time")
            assigned = self.need(author, "v3:assignedAuthor", where)
            self.need(assigned, "v3:id", f"{where}/assignedAuthor")
        org = self.need(
            root,
            "v3:custodian/v3:assignedCustodian/v3:representedCustodianOrganization",
            "ClinicalDocument/custodian",
        )
        self.need(
            org,
            "v3:id",
            "ClinicalDocument/custodian/assignedCustodian/representedCustodianOrganization",
        )
        for k, rel in enumerate(root.findall("v3:relatedDocument", NS), 1):
            if rel.get("typeCode") not in ("RPLC", "APND", "XFRM"):
                self.error(
                    "value",
                    "relatedDocument/@typeCode must be RPLC, APND or XFRM",
                    f"ClinicalDocument/relatedDocument[{k}]",
                )
            self.need(rel, "v3:parentDocument/v3:id", f"ClinicalDocument/relatedDocument[{k}]")
        if doc_type is not None and doc_type.needs_encompassing_encounter:
            enc = self.need(
                root, "v3:componentOf/v3:encompassingEncounter", "ClinicalDocument/componentOf"
            )
            if enc is not None:
                self.ts(
                    enc.find("v3:effectiveTime", NS),
                    "ClinicalDocument/componentOf/encompassingEncounter/effectiveTime",
                )
        return doc_type

    def record_target(self, root) -> None:
        where = "ClinicalDocument/recordTarget/patientRole"
        role = self.need(root, "v3:recordTarget/v3:patientRole", "ClinicalDocument/recordTarget")
        if role is None:
            return
        patient = self.need(role, "v3:patient", where)
        ids = role.findall("v3:id", NS) + (
            patient.findall("v3:id", NS) if patient is not None else []
        )
        if not ids:
            self.error(
                "required",
                "the patient needs an id (resident ID number, health-record number or HIS number)",
                f"{where}/id",
            )
        for el in ids:
            if el.get("root") == vocab.OID_RESIDENT_ID:
                try:
                    resident_id.parse(el.get("extension") or "")
                except resident_id.InvalidResidentId as exc:
                    self.error(
                        "value", str(exc), f"{where}/patient/id[@root='{vocab.OID_RESIDENT_ID}']"
                    )
        if patient is None:
            return
        self.need(patient, "v3:name", f"{where}/patient")
        sex = self.need(patient, "v3:administrativeGenderCode", f"{where}/patient")
        if sex is not None and (
            sex.get("code") not in _SEX or sex.get("codeSystem") != vocab.OID_SEX
        ):
            self.error(
                "code-invalid",
                f"administrativeGenderCode must be a GB/T 2261.1 code in {vocab.OID_SEX}",
                f"{where}/patient/administrativeGenderCode",
            )
        self.ts(patient.find("v3:birthTime", NS), f"{where}/patient/birthTime")

    # -- body ---------------------------------------------------------------
    def body(self, root, doc_type: documents.DocType | None) -> None:
        body = self.need(root, "v3:component/v3:structuredBody", "ClinicalDocument/component")
        if body is None:
            return
        sections_seen: set[str] = set()
        elements_seen: set[str] = set()
        components = body.findall("v3:component", NS)
        if not components:
            self.error(
                "required",
                "structuredBody needs at least one section",
                "ClinicalDocument/component/structuredBody",
            )
        for i, comp in enumerate(components, 1):
            where = f"ClinicalDocument/component/structuredBody/component[{i}]/section"
            section = self.need(comp, "v3:section", where.rsplit("/", 1)[0])
            if section is None:
                continue
            code = section.find("v3:code", NS)
            title = section.find("v3:title", NS)
            if code is None and title is None:
                self.error("required", "a section needs a code or a title", where)
            if section.find("v3:text", NS) is None:
                self.error("required", "a section needs text (narrative)", where)
            if doc_type is not None:
                key = documents.section_key(
                    code.get("code") if code is not None else None,
                    code.get("displayName")
                    if code is not None and code.get("code") is None
                    else (title.text if title is not None else None),
                    doc_type,
                )
                if key:
                    sections_seen.add(key)
            for j, entry in enumerate(section.findall("v3:entry", NS), 1):
                kids = [c for c in entry if _local(c)]
                if len(kids) != 1 or _local(kids[0]) not in _ENTRY_KINDS:
                    self.error(
                        "structure",
                        "an entry holds exactly one clinical statement",
                        f"{where}/entry[{j}]",
                    )
                    continue
                self.statement(kids[0], f"{where}/entry[{j}]/{_local(kids[0])}", elements_seen)
        if doc_type is not None:
            for key in doc_type.required_sections:
                if key not in sections_seen:
                    section = vocab.SECTIONS[key]
                    self.error(
                        "required",
                        f"{doc_type.title} requires the section {section.code or ''} {section.title}".replace(
                            "  ", " "
                        ),
                        "ClinicalDocument/component/structuredBody",
                    )
            for de in doc_type.required_elements:
                if de not in elements_seen:
                    self.error(
                        "required",
                        f"{doc_type.title} requires data element {de} {vocab.ELEMENTS[de].name if de in vocab.ELEMENTS else ''}".strip(),
                        "ClinicalDocument/component/structuredBody",
                    )

    def statement(self, element, where: str, seen: set[str]) -> None:
        kind = _local(element)
        if kind == "observation":
            self.observation(element, where, seen)
        elif kind == "organizer":
            for k, comp in enumerate(element.findall("v3:component", NS), 1):
                for child in comp:
                    if _local(child) in _ENTRY_KINDS:
                        self.statement(child, f"{where}/component[{k}]/{_local(child)}", seen)
        elif kind == "substanceAdministration":
            if element.find("v3:consumable/v3:manufacturedProduct", NS) is None:
                self.error(
                    "required",
                    "substanceAdministration needs consumable/manufacturedProduct",
                    where,
                )
        elif kind == "procedure":
            code = self.need(element, "v3:code", where)
            if code is not None and not code.get("code"):
                self.error("required", "procedure/code needs a code", f"{where}/code")

    def observation(self, obs, where: str, seen: set[str]) -> None:
        if obs.get("classCode") is None or obs.get("moodCode") is None:
            self.error("required", "observation needs classCode and moodCode", where)
        code = self.need(obs, "v3:code", where)
        if code is not None:
            if code.get("codeSystem") == vocab.OID_DE:
                if not _DE.match(code.get("code") or ""):
                    self.error(
                        "code-invalid",
                        f"{code.get('code')!r} is not a WS 363 data-element code",
                        f"{where}/code",
                    )
                else:
                    seen.add(code.get("code")[:14])
            elif code.get("code") and not code.get("codeSystem"):
                self.error("required", "code needs a codeSystem", f"{where}/code")
        self.ts(obs.find("v3:effectiveTime", NS), f"{where}/effectiveTime", required=False)
        for value in obs.findall("v3:value", NS):
            vwhere = f"{where}/value"
            kind = xsi_type(value)
            if kind is None:
                self.error("required", "value needs xsi:type", vwhere)
                continue
            if kind not in _VALUE_TYPES:
                self.error("value", f"xsi:type {kind} is not a CDA data type used here", vwhere)
            if (
                kind == "PQ"
                and value.get("nullFlavor") is None
                and number(value.get("value")) is None
            ):
                self.error("value", f"PQ value {value.get('value')!r} is not a number", vwhere)
            if (
                kind in ("CD", "CE", "CV", "CO")
                and value.get("code")
                and not value.get("codeSystem")
            ):
                self.error("required", "a coded value needs a codeSystem", vwhere)
            if kind == "TS":
                self.ts(value, vwhere)
            if (
                kind == "BL"
                and value.get("value") not in ("true", "false")
                and value.get("nullFlavor") is None
            ):
                self.error("value", "BL value must be true or false", vwhere)
        for k, rel in enumerate(obs.findall("v3:entryRelationship", NS), 1):
            for child in rel:
                if _local(child) in _ENTRY_KINDS:
                    self.statement(child, f"{where}/entryRelationship[{k}]/{_local(child)}", seen)


def check_document(root) -> list[dict]:
    """Structural issues of a ``ClinicalDocument`` element (empty when it passes)."""
    checker = _Checker()
    doc_type = checker.header(root)
    checker.body(root, doc_type)
    return checker.issues
