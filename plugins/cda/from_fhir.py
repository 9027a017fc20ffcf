"""Outbound: a patient's FHIR resources -> one CDA shared document for the county platform.

:func:`build_document` writes the header (ids and OIDs of integration.md §C.4),
one section per section of the document type that has content, and one entry
per resource, with the same data elements the inbound side reads (the round
trip ``inbound(outbound(x))`` keeps what the adapter maps). Every document is
checked by :mod:`check` before it is returned.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from lxml import etree
from lxml.builder import ElementMaker

from fhirhub_plugins.cda import check
from fhirhub_plugins.cda import documents
from fhirhub_plugins.cda import ids
from fhirhub_plugins.cda import vocab
from fhirhub_plugins.cda.cdatypes import XSI_TYPE
from fhirhub_plugins.cda.cdatypes import fhir_to_ts
from fhirhub_plugins.cda.cdatypes import format_number
from fhirhub_plugins.cda.parse import V3
from fhirhub_plugins.cda.parse import XSI
from hub.plugin_api import OperationOutcomeError
from hub.plugin_api import OutboundMessage
from hub.plugin_api import issue
from hub.plugin_api import outcome

if TYPE_CHECKING:
    from hub.plugin_api import Site

E = ElementMaker(namespace=V3, nsmap={None: V3, "xsi": XSI})
_DE_NAME = "卫生信息数据元目录"
_GENDER_TO_GB = {"male": "1", "female": "2", "unknown": "0", "other": "9"}
_MARITAL_TO_GB = {"S": "10", "M": "20", "W": "30", "D": "40", "UNK": "90"}
_CLASS_TO_MODE = {"AMB": "1", "HH": "2", "VR": "3"}


def _fail(text: str, where: str = "Bundle") -> OperationOutcomeError:
    return OperationOutcomeError(outcome(issue("error", "processing", text, where)), 422)


def _attrs(**values) -> dict[str, str]:
    return {k: str(v) for k, v in values.items() if v not in (None, "")}


def _de_code(element: vocab.Element):
    return E.code(
        _attrs(
            code=element.de,
            codeSystem=vocab.OID_DE,
            codeSystemName=_DE_NAME,
            displayName=element.name,
        )
    )


def _coding_of(concept: dict | None, oid: str | None = None) -> dict | None:
    for coding in (concept or {}).get("coding", []):
        if oid is None or vocab.oid_of(coding.get("system")) == oid:
            return coding
    return None


def _has_coding(concept: dict | None, system: str, code: str) -> bool:
    return any(
        c.get("system") == system and c.get("code") == code
        for c in (concept or {}).get("coding", [])
    )


def _de_of(resource: dict) -> str | None:
    """The WS 363 data element a resource was read from (code or category coding)."""
    for concept in [resource.get("code")] + (
        resource.get("category")
        if isinstance(resource.get("category"), list)
        else [resource.get("category")]
    ):
        if isinstance(concept, dict):
            for coding in concept.get("coding", []):
                if coding.get("system") == vocab.DE_SYSTEM:
                    return coding.get("code")
    return None


class DocumentWriter:
    def __init__(
        self, doc_type: documents.DocType, resources: list[dict], site: Site, issues: list | None
    ):
        self.doc_type = doc_type
        self.site = site
        self.tz = getattr(site, "timezone", None) or "Asia/Shanghai"
        self.issues = issues if issues is not None else []
        self.by_type: dict[str, list[dict]] = {}
        self.by_ref: dict[str, dict] = {}
        for r in resources:
            self.by_type.setdefault(r.get("resourceType"), []).append(r)
            self.by_ref[f"{r.get('resourceType')}/{r.get('id')}"] = r
        patients = self.by_type.get("Patient", [])
        if len(patients) != 1:
            raise _fail(
                f"a {doc_type.title} document needs exactly one Patient; got {len(patients)}"
            )
        self.patient = patients[0]
        encounters = self.by_type.get("Encounter", [])
        self.encounter = encounters[0] if encounters else None
        if doc_type.encounter and self.encounter is None:
            raise _fail(f"a {doc_type.title} document needs the Encounter it records")
        self.placed: set[int] = set()
        # Resources by (type, data element), computed once: placement looks them up per element.
        self.by_de: dict[tuple[str, str | None], list[dict]] = {}
        for r in resources:
            self.by_de.setdefault((r.get("resourceType"), _de_of(r)), []).append(r)

    def resolve(self, reference: dict | None) -> dict | None:
        if not reference or not reference.get("reference"):
            return None
        return self.by_ref.get(reference["reference"])

    # -- values -------------------------------------------------------------
    def ts(self, value: str | None, tag: str = "effectiveTime"):
        return E(tag, value=fhir_to_ts(value)) if value else None

    def value_element(self, resource: dict):
        for key, value in resource.items():
            if not key.startswith("value"):
                continue
            kind = key[5:]
            if kind == "Quantity":
                el = E.value(_attrs(value=format_number(value["value"]), unit=value.get("unit")))
                el.set(XSI_TYPE, "PQ")
            elif kind == "CodeableConcept":
                el = self.cd(value, "value")
                el.set(XSI_TYPE, "CD")
            elif kind == "String":
                el = E.value(value)
                el.set(XSI_TYPE, "ST")
            elif kind == "Boolean":
                el = E.value(value="true" if value else "false")
                el.set(XSI_TYPE, "BL")
            elif kind == "DateTime":
                el = E.value(value=fhir_to_ts(value))
                el.set(XSI_TYPE, "TS")
            elif kind == "Integer":
                el = E.value(value=str(value))
                el.set(XSI_TYPE, "INT")
            else:
                continue
            return el
        return None

    def cd(self, concept: dict, tag: str, oid: str | None = None):
        coding = _coding_of(concept, oid) or {}
        el = E(
            tag,
            _attrs(
                code=coding.get("code"),
                codeSystem=vocab.oid_of(coding.get("system")),
                displayName=coding.get("display"),
            ),
        )
        if concept.get("text"):
            el.append(E.originalText(concept["text"]))
        return el

    def observation(self, element: vocab.Element, value, when: str | None = None, extra=()):
        obs = E.observation({"classCode": "OBS", "moodCode": "EVN"}, _de_code(element))
        effective = self.ts(when)
        if effective is not None:
            obs.append(effective)
        if value is not None:
            obs.append(value)
        for child in extra:
            obs.append(child)
        return obs

    def st(self, text: str):
        el = E.value(text)
        el.set(XSI_TYPE, "ST")
        return el

    def cd_value(self, concept: dict):
        el = self.cd(concept, "value")
        el.set(XSI_TYPE, "CD")
        return el

    # -- header ---------------------------------------------------------------
    def build(
        self,
        document_id: str,
        effective_time: str,
        set_id: str | None,
        version: int | None,
        replaces: list[str],
    ):
        doc_type = self.doc_type
        root = E.ClinicalDocument(
            E.realmCode(code="CN"),
            E.typeId(root=vocab.OID_TYPE_ID, extension="POCD_MT000040"),
            E.templateId(root=doc_type.template),
            E.id(root=vocab.OID_DOCUMENT, extension=document_id),
            E.code(
                code=doc_type.code,
                codeSystem=vocab.OID_DOC_TYPE,
                codeSystemName="卫生信息共享文档规范编码体系",
            ),
            E.title(doc_type.title),
            E.effectiveTime(value=fhir_to_ts(effective_time)),
            E.confidentialityCode(
                code=self.confidentiality(),
                codeSystem=vocab.OID_CONFIDENTIALITY,
                codeSystemName="Confidentiality",
            ),
            E.languageCode(code="zh-CN"),
        )
        if set_id:
            root.append(E.setId(root=vocab.OID_DOCUMENT, extension=set_id))
            root.append(E.versionNumber(value=str(version or 1)))
        root.append(self.record_target())
        root.append(self.author(effective_time))
        root.append(self.custodian())
        for participant in self.contacts():
            root.append(participant)
        for parent in replaces:
            root.append(
                E.relatedDocument(
                    {"typeCode": "RPLC"},
                    E.parentDocument(E.id(root=vocab.OID_DOCUMENT, extension=parent)),
                )
            )
        if doc_type.needs_encompassing_encounter and self.encounter is not None:
            root.append(self.component_of())
        root.append(E.component(self.body()))
        return root

    def confidentiality(self) -> str:
        # A sensitive document type is at least restricted, whatever its resources say.
        floor = "R" if self.doc_type.sensitivity else "N"
        for resources in self.by_type.values():
            for r in resources:
                for label in (r.get("meta") or {}).get("security", []):
                    if label.get("system") == vocab.CONFIDENTIALITY and label.get("code") in (
                        "R",
                        "V",
                    ):
                        return label["code"]
        return floor

    def record_target(self):
        patient = self.patient
        role = E.patientRole({"classCode": "PAT"})
        person = E.patient({"classCode": "PSN", "determinerCode": "INSTANCE"})
        for ident in patient.get("identifier", []):
            oid = vocab.oid_of(ident.get("system"))
            if not oid or not ident.get("value"):
                continue
            target = person if oid == vocab.OID_RESIDENT_ID else role
            target.append(E.id(root=oid, extension=ident["value"]))
        for address in patient.get("address", [])[:1]:
            role.append(self.addr(address))
        for telecom in patient.get("telecom", []):
            if (telecom.get("period") or {}).get("end"):
                continue  # replaced (kept as history), not a current number
            prefix = "mailto:" if telecom.get("system") == "email" else "tel:"
            role.append(E.telecom(value=prefix + telecom.get("value", "")))
        names = patient.get("name") or []
        for name in names:
            text = name.get("text") or "".join(
                [name.get("family") or "", *(name.get("given") or [])]
            )
            if text:
                person.append(E.name(text))
        sex = next(
            (
                e["valueCoding"].get("code")
                for e in patient.get("extension", [])
                if e.get("url") == vocab.EXT_SEX_CODE
            ),
            None,
        )
        sex = sex or _GENDER_TO_GB.get(patient.get("gender"), "0")
        person.append(
            E.administrativeGenderCode(
                code=sex, codeSystem=vocab.OID_SEX, codeSystemName="生理性别代码表(GB/T 2261.1)"
            )
        )
        if patient.get("birthDate"):
            person.append(E.birthTime(value=fhir_to_ts(patient["birthDate"])))
        marital = patient.get("maritalStatus")
        if marital:
            coding = _coding_of(marital, vocab.OID_MARITAL)
            code = (
                coding.get("code")
                if coding
                else _MARITAL_TO_GB.get((_coding_of(marital) or {}).get("code"))
            )
            if code:
                person.append(
                    E.maritalStatusCode(
                        _attrs(
                            code=code,
                            codeSystem=vocab.OID_MARITAL,
                            displayName=(coding or {}).get("display"),
                        )
                    )
                )
        for ext in patient.get("extension", []):
            if ext.get("url") == vocab.EXT_ETHNICITY:
                c = ext["valueCoding"]
                person.append(
                    E.ethnicGroupCode(
                        _attrs(
                            code=c.get("code"),
                            codeSystem=vocab.OID_ETHNICITY,
                            displayName=c.get("display"),
                        )
                    )
                )
        for ext in patient.get("extension", []):
            c = ext.get("valueCoding") or {}
            if ext.get("url") == vocab.EXT_EDUCATION:
                person.append(
                    E.educationLevelCode(
                        _attrs(
                            code=c.get("code"),
                            codeSystem=vocab.oid_of(c.get("system")),
                            displayName=c.get("display"),
                        )
                    )
                )
            elif ext.get("url") == vocab.EXT_OCCUPATION:
                person.append(
                    E.occupation(
                        E.occupationCode(
                            _attrs(
                                code=c.get("code"),
                                codeSystem=vocab.oid_of(c.get("system")),
                                displayName=c.get("display"),
                            )
                        )
                    )
                )
        role.append(person)
        return E.recordTarget({"typeCode": "RCT", "contextControlCode": "OP"}, role)

    def addr(self, address: dict):
        el = E.addr(use={"home": "H", "work": "WP", "temp": "TMP"}.get(address.get("use"), "H"))
        line = list(address.get("line") or [])
        parts = []
        if len(line) == 3:
            parts += [("houseNumber", line[2]), ("streetName", line[1]), ("township", line[0])]
        else:
            parts += [("streetAddressLine", text) for text in line]
        parts += [
            ("county", address.get("district")),
            ("city", address.get("city")),
            ("state", address.get("state")),
            ("postalCode", address.get("postalCode")),
        ]
        for tag, text in parts:
            if text:
                el.append(E(tag, text))
        return el

    def organization_element(self, tag: str, org: dict | None):
        org = org or {}
        identifiers = org.get("identifier")
        ident = (
            identifiers[0] if isinstance(identifiers, list) and identifiers else identifiers or {}
        )
        el = E(tag)
        root = vocab.oid_of(ident.get("system")) or vocab.OID_ORGANIZATION
        if ident.get("value"):
            el.append(E.id(root=root, extension=ident["value"]))
        else:
            el.append(E.id(nullFlavor="UNK"))
        if org.get("name"):
            el.append(E.name(org["name"]))
        return el

    def site_organization(self) -> dict:
        return getattr(self.site, "organization", None) or {}

    def author(self, effective_time: str):
        practitioner = None
        if self.encounter:
            for participant in self.encounter.get("participant", []):
                practitioner = self.resolve(participant.get("individual")) or practitioner
        practitioner = practitioner or next(iter(self.by_type.get("Practitioner", [])), None)
        when = (self.encounter or {}).get("period", {}).get("start") or effective_time
        assigned = E.assignedAuthor({"classCode": "ASSIGNED"})
        if practitioner and practitioner.get("identifier"):
            ident = practitioner["identifier"][0]
            assigned.append(
                E.id(
                    root=vocab.oid_of(ident.get("system")) or vocab.OID_AUTHOR,
                    extension=ident["value"],
                )
            )
            name = (practitioner.get("name") or [{}])[0].get("text")
            if name:
                assigned.append(E.assignedPerson(E.name(name)))
        else:
            org_ident = self.site_organization().get("identifier") or {}
            assigned.append(
                E.id(root=vocab.OID_ORGANIZATION, extension=org_ident.get("value", "UNK"))
            )
        assigned.append(
            self.organization_element("representedOrganization", self.site_organization())
        )
        return E.author(
            {"typeCode": "AUT", "contextControlCode": "OP"},
            E.time(value=fhir_to_ts(when)),
            assigned,
        )

    def custodian(self):
        org = self.organization_element(
            "representedCustodianOrganization", self.site_organization()
        )
        org.set("classCode", "ORG")
        org.set("determinerCode", "INSTANCE")
        return E.custodian({"typeCode": "CST"}, E.assignedCustodian({"classCode": "ASSIGNED"}, org))

    def contacts(self):
        for contact in self.patient.get("contact", []):
            entity = E.associatedEntity({"classCode": "ECON"})
            for relationship in contact.get("relationship", [])[:1]:
                coding = _coding_of(relationship, vocab.OID_RELATIONSHIP)
                if coding:
                    entity.append(
                        E.code(
                            _attrs(
                                code=coding.get("code"),
                                codeSystem=vocab.OID_RELATIONSHIP,
                                displayName=coding.get("display"),
                            )
                        )
                    )
            for telecom in contact.get("telecom", []):
                entity.append(E.telecom(value="tel:" + telecom.get("value", "")))
            if (contact.get("name") or {}).get("text"):
                entity.append(E.associatedPerson(E.name(contact["name"]["text"])))
            yield E.participant({"typeCode": "NOT"}, entity)

    def component_of(self):
        enc = self.encounter
        el = E.encompassingEncounter()
        patient_ids = {
            (i.get("system"), i.get("value")) for i in self.patient.get("identifier", [])
        }
        for ident in enc.get("identifier", []):
            oid = vocab.oid_of(ident.get("system"))
            if oid and (ident.get("system"), ident.get("value")) not in patient_ids:
                el.append(E.id(root=oid, extension=ident["value"]))
        period = enc.get("period") or {}
        effective = E.effectiveTime()
        if period.get("start"):
            effective.append(E.low(value=fhir_to_ts(period["start"])))
        if period.get("end"):
            effective.append(E.high(value=fhir_to_ts(period["end"])))
        el.append(effective)
        provider = self.resolve(enc.get("serviceProvider"))
        if provider:
            el.append(
                E.location(
                    E.healthCareFacility(
                        self.organization_element("serviceProviderOrganization", provider)
                    )
                )
            )
        return E.componentOf(el)

    # -- body -------------------------------------------------------------------
    def body(self):
        body = E.structuredBody()
        for key, items in self.doc_type.sections:
            entries: list = []
            narrative: list[str] = []
            section = vocab.SECTIONS[key]
            for item in items:
                for entry, text in self.entries_for(item):
                    entries.append(entry)
                    narrative.append(text)
            for entry, text in self.kept_as_is(section):
                entries.append(entry)
                narrative.append(text)
            if not entries:
                continue
            code = (
                E.code(
                    code=section.code,
                    codeSystem=vocab.OID_LOINC,
                    codeSystemName="LOINC",
                    displayName=section.title,
                )
                if section.code
                else E.code(displayName=section.title)
            )
            text = E.text(E.list(*[E.item(t) for t in narrative]))
            body.append(
                E.component(
                    E.section(code, E.title(section.title), text, *[E.entry(e) for e in entries])
                )
            )
        for resources in self.by_type.values():
            for r in resources:
                if id(r) not in self.placed and r.get("resourceType") not in _HEADER_TYPES:
                    self.issues.append(
                        issue(
                            "information",
                            "informational",
                            f"{r['resourceType']}/{r.get('id')} has no place in a {self.doc_type.title} document",
                            f"{r['resourceType']}/{r.get('id')}",
                        )
                    )
        return body

    def kept_as_is(self, section: vocab.Section):
        """Observations of data elements outside the catalogue (kept as sent), back in the
        first section of their category, with their own code."""
        category = vocab.SECTION_CATEGORIES.get(section.code or "")
        if category is None:
            return

        def kept(r: dict) -> bool:
            de = _de_of(r)
            return (
                de is not None
                and de not in vocab.ELEMENTS
                and any(_has_coding(c, vocab.OBS_CATEGORY, category) for c in r.get("category", []))
            )

        for r in self.take("Observation", kept):
            coding = _coding_of(r.get("code"), vocab.OID_DE) or {}
            code = E.code(
                _attrs(
                    code=coding.get("code"),
                    codeSystem=vocab.OID_DE,
                    codeSystemName=_DE_NAME,
                    displayName=coding.get("display"),
                )
            )
            obs = E.observation({"classCode": "OBS", "moodCode": "EVN"}, code)
            effective = self.ts(r.get("effectiveDateTime"))
            if effective is not None:
                obs.append(effective)
            value = self.value_element(r)
            if value is not None:
                obs.append(value)
            yield obs, f"{coding.get('display') or coding.get('code')}: {_text_of(r)}"

    def take(self, resource_type: str, predicate) -> list[dict]:
        found = [
            r
            for r in self.by_type.get(resource_type, [])
            if id(r) not in self.placed and predicate(r)
        ]
        for r in found:
            self.placed.add(id(r))
        return found

    def take_de(self, resource_type: str, de: str | None) -> list[dict]:
        found = [r for r in self.by_de.get((resource_type, de), []) if id(r) not in self.placed]
        for r in found:
            self.placed.add(id(r))
        return found

    def entries_for(self, item: str):
        if item == "bp":
            for r in self.take(
                "Observation", lambda r: _has_coding(r.get("code"), vocab.LOINC, "85354-9")
            ):
                yield self.bp_organizer(r)
            return
        if item == "medication":
            for r in self.take("MedicationStatement", lambda r: True):
                yield self.substance_administration(r)
            return
        if item == "procedure":
            for r in self.take_de("Procedure", None):
                coding = _coding_of(r.get("code")) or {}
                proc = E.procedure(
                    {"classCode": "PROC", "moodCode": "EVN"}, self.cd(r.get("code") or {}, "code")
                )
                effective = self.ts(r.get("performedDateTime"))
                if effective is not None:
                    proc.append(effective)
                yield proc, f"{coding.get('display') or coding.get('code')}"
            return
        element = vocab.ELEMENTS[item]
        kind = element.kind
        if kind.startswith("obs:"):
            for r in self.take_de("Observation", element.de):
                value = self.value_element(r)
                yield (
                    self.observation(element, value, r.get("effectiveDateTime")),
                    f"{element.name}: {_text_of(r)}",
                )
        elif kind == "coverage":
            for r in self.take("Coverage", lambda r: True):
                yield (
                    self.observation(element, self.cd_value(r.get("type") or {})),
                    f"{element.name}: {_concept_text(r.get('type'))}",
                )
        elif kind == "allergy":
            for r in self.take("AllergyIntolerance", lambda r: True):
                yield (
                    self.observation(
                        element, self.cd_value(r.get("code") or {}), r.get("recordedDate")
                    ),
                    f"{element.name}: {_concept_text(r.get('code'))}",
                )
        elif kind.startswith("condition:"):
            for r in self.take_de("Condition", element.de):
                value = (
                    self.cd_value(r["code"])
                    if element.value == "CD"
                    else self.st((r.get("code") or {}).get("text", ""))
                )
                yield (
                    self.observation(element, value, r.get("onsetDateTime")),
                    f"{element.name}: {_concept_text(r.get('code'))}",
                )
        elif kind.startswith("procedure:"):
            for r in self.take_de("Procedure", element.de):
                yield (
                    self.observation(
                        element,
                        self.st((r.get("code") or {}).get("text", "")),
                        r.get("performedDateTime"),
                    ),
                    f"{element.name}: {_concept_text(r.get('code'))}",
                )
        elif kind == "family":
            for r in self.take("FamilyMemberHistory", lambda r: True):
                yield self.family_organizer(r, element)
        elif kind == "encounter:followup" and self.encounter is not None:
            mode = None
            for concept in self.encounter.get("type", []):
                mode = _coding_of(concept, vocab.DOMAINS["followup-mode"].oid) or mode
            if mode is None:
                code = _CLASS_TO_MODE.get((self.encounter.get("class") or {}).get("code"))
                mode = {"system": vocab.urn(vocab.DOMAINS["followup-mode"].oid), "code": code}
            if mode.get("code"):
                value = self.cd_value({"coding": [mode]})
            else:  # mode unknown: say so rather than claim a face-to-face visit
                value = E.value(nullFlavor="UNK")
                value.set(XSI_TYPE, "CD")
            yield (
                self.observation(element, value, (self.encounter.get("period") or {}).get("start")),
                f"{element.name}: {mode.get('display') or mode.get('code')}",
            )
        elif kind == "risk-grade":
            for r in self.take_de("Observation", element.de):
                if isinstance(r.get("valueInteger"), int):
                    value = E.value(value=str(r["valueInteger"]))
                    value.set(XSI_TYPE, "INT")
                    yield (
                        self.observation(element, value, r.get("effectiveDateTime")),
                        f"{element.name}: {r['valueInteger']}",
                    )
        elif kind == "encounter:reason" and self.encounter is not None:
            for reason in self.encounter.get("reasonCode", [])[:1]:
                if reason.get("text"):
                    yield (
                        self.observation(element, self.st(reason["text"])),
                        f"{element.name}: {reason['text']}",
                    )
        elif kind == "appointment":
            for r in self.take(
                "Appointment", lambda r: r.get("status") in ("proposed", "pending", "booked")
            ):
                day = (r.get("requestedPeriod") or [{}])[0].get("start") or r.get("start")
                if day:
                    value = E.value(value=fhir_to_ts(day[:10]))
                    value.set(XSI_TYPE, "TS")
                    yield self.observation(element, value), f"{element.name}: {day[:10]}"

    def bp_organizer(self, r: dict):
        components = []
        site = _coding_of(r.get("bodySite"))
        parts = []
        for comp in r.get("component", []):
            de = next(
                (
                    c.get("code")
                    for c in comp.get("code", {}).get("coding", [])
                    if c.get("system") == vocab.DE_SYSTEM
                ),
                None,
            )
            if de is None:
                loinc = next(
                    (
                        c.get("code")
                        for c in comp.get("code", {}).get("coding", [])
                        if c.get("system") == vocab.LOINC
                    ),
                    None,
                )
                de = {"8480-6": "DE04.10.174.00", "8462-4": "DE04.10.176.00"}.get(loinc)
            if de not in vocab.ELEMENTS:
                continue
            element = vocab.ELEMENTS[de]
            extra = []
            if site:
                extra.append(
                    E.targetSiteCode(
                        _attrs(
                            code=site.get("code"),
                            codeSystem="2.16.840.1.113883.6.96",
                            displayName=site.get("display"),
                        )
                    )
                )
            components.append(
                E.component(self.observation(element, self.value_element(comp), None, extra))
            )
            parts.append(
                format_number(comp.get("valueQuantity", {}).get("value", ""))
                if comp.get("valueQuantity")
                else ""
            )
        organizer = E.organizer(
            {"classCode": "BATTERY", "moodCode": "EVN"},
            E.code(displayName="血压"),
            E.statusCode(code="completed"),
        )
        effective = self.ts(r.get("effectiveDateTime"))
        if effective is not None:
            organizer.append(effective)
        for c in components:
            organizer.append(c)
        where = f" ({site.get('display')})" if site and site.get("display") else ""
        return organizer, f"血压{where}: {'/'.join(parts)} mmHg"

    def family_organizer(self, r: dict, element: vocab.Element):
        relationship = _coding_of(r.get("relationship"), vocab.OID_RELATIONSHIP) or {}
        organizer = E.organizer(
            {"classCode": "CLUSTER", "moodCode": "EVN"},
            E.statusCode(code="completed"),
            E.subject(
                E.relatedSubject(
                    {"classCode": "PRS"},
                    E.code(
                        _attrs(
                            code=relationship.get("code"),
                            codeSystem=vocab.OID_RELATIONSHIP,
                            displayName=relationship.get("display"),
                        )
                    ),
                )
            ),
        )
        names = []
        for condition in r.get("condition", []):
            organizer.append(
                E.component(self.observation(element, self.cd_value(condition.get("code") or {})))
            )
            names.append(_concept_text(condition.get("code")))
        return organizer, f"{relationship.get('display') or ''}: {'、'.join(names)}"

    def substance_administration(self, r: dict):
        sa = E.substanceAdministration({"classCode": "SBADM", "moodCode": "EVN"})
        effective = self.ts(r.get("effectiveDateTime"))
        if effective is not None:
            sa.append(effective)
        dosage = (r.get("dosage") or [{}])[0]
        if dosage.get("route"):
            route = _coding_of(dosage["route"]) or {}
            sa.append(
                E.routeCode(
                    _attrs(
                        code=route.get("code"),
                        codeSystem=vocab.oid_of(route.get("system")) or vocab.OID_ROUTE,
                        displayName=route.get("display"),
                    )
                )
            )
        for dose_rate in dosage.get("doseAndRate", [])[:1]:
            dose = dose_rate.get("doseQuantity")
            if dose:
                sa.append(
                    E.doseQuantity(
                        _attrs(value=format_number(dose["value"]), unit=dose.get("unit"))
                    )
                )
        medication = r.get("medicationCodeableConcept") or {}
        drug = E.manufacturedLabeledDrug()
        coding = _coding_of(medication)
        if coding:
            drug.append(
                E.code(
                    _attrs(
                        code=coding.get("code"),
                        codeSystem=vocab.oid_of(coding.get("system")),
                        displayName=coding.get("display"),
                    )
                )
            )
        if medication.get("text"):
            drug.append(E.name(medication["text"]))
        sa.append(E.consumable(E.manufacturedProduct(drug)))
        if dosage.get("text"):
            freq = E.observation(
                {"classCode": "OBS", "moodCode": "EVN"},
                E.code(
                    code="DE06.00.133.00",
                    codeSystem=vocab.OID_DE,
                    codeSystemName=_DE_NAME,
                    displayName="药物使用频率",
                ),
                self.st(dosage["text"]),
            )
            sa.append(E.entryRelationship({"typeCode": "COMP"}, freq))
        return (
            sa,
            f"{medication.get('text') or (coding or {}).get('display') or ''} {dosage.get('text') or ''}".strip(),
        )


_HEADER_TYPES = {
    "Patient",
    "Encounter",
    "Organization",
    "Practitioner",
    "PractitionerRole",
    "DocumentReference",
    "Provenance",
}


def _concept_text(concept: dict | None) -> str:
    concept = concept or {}
    coding = _coding_of(concept) or {}
    return concept.get("text") or coding.get("display") or coding.get("code") or ""


def _text_of(r: dict) -> str:
    if "valueQuantity" in r:
        q = r["valueQuantity"]
        return f"{format_number(q['value'])} {q.get('unit', '')}".strip()
    if "valueCodeableConcept" in r:
        return _concept_text(r["valueCodeableConcept"])
    for key in ("valueString", "valueDateTime", "valueInteger"):
        if key in r:
            return str(r[key])
    if "valueBoolean" in r:
        return "是" if r["valueBoolean"] else "否"
    return ""


def build_document(
    doc_type: str,
    resources: list[dict],
    site: Site,
    *,
    document_id: str | None = None,
    effective_time: str | None = None,
    set_id: str | None = None,
    version: int | None = None,
    replaces: list[str] | None = None,
    encoding: str | None = None,
    issues: list | None = None,
) -> bytes:
    """One CDA document of ``doc_type`` (``HSDB04.01`` ...) from a patient's resources.

    :param resources: the Patient, the Encounter the document records (when the
        type has one), and the clinical resources to put in the body.
    :param site: the receiving site; ``site.organization`` is the author's
        organization and the custodian.
    :param document_id: the document serial (``id/@extension``); by default a
        stable id from the site, type, patient and encounter.
    :param effective_time: the document's time (FHIR dateTime); default now.
    :param encoding: ``UTF-8`` (default) or ``GB18030``; per site in
        ``plugin_config("cda")["encoding"]``.
    :param issues: a list that receives information issues (resources that
        have no place in this document type).
    :raises OperationOutcomeError: (422) the resources cannot make a document,
        or the generated document fails the structural check.
    """
    spec = documents.DOC_TYPES.get(doc_type)
    if spec is None:
        raise _fail(
            f"document type {doc_type!r} is not supported; known: {sorted(documents.DOC_TYPES)}"
        )
    writer = DocumentWriter(spec, resources, site, issues)
    config = {}
    getter = getattr(site, "plugin_config", None)
    if callable(getter):
        config = getter("cda") or {}
    encoding = (encoding or config.get("encoding") or "UTF-8").upper()
    if encoding not in ("UTF-8", "GB18030"):
        raise _fail(f"encoding {encoding!r} is not supported (UTF-8 or GB18030)")
    tz = ZoneInfo(getattr(site, "timezone", None) or "Asia/Shanghai")
    effective_time = effective_time or dt.datetime.now(tz).replace(microsecond=0).isoformat()
    if document_id is None:
        key = ids.resource_id(
            getattr(site, "name", ""),
            doc_type,
            writer.patient.get("id", ""),
            (writer.encounter or {}).get("id", ""),
            effective_time,
        )
        document_id = f"{doc_type}-{key}"
    root = writer.build(document_id, effective_time, set_id, version, replaces or [])
    problems = check.check_document(root)
    if problems:
        raise OperationOutcomeError(outcome(*problems), 422)
    return etree.tostring(root, xml_declaration=True, encoding=encoding, pretty_print=True)


def outbound_messages(resource: dict, event: str, site: Site, context) -> list:
    """``map_outbound``: a document Bundle for the platform -> one CDA message.

    The delivery queue assembles what goes into one document as a ``collection``
    Bundle tagged with the document type (``meta.tag`` system
    ``urn:oid:2.16.156.10011.2.4``); single resource changes produce nothing
    here, because a shared document is per event, not per resource.
    """
    if resource.get("resourceType") != "Bundle" or event == "delete":
        return []
    tag = next(
        (
            t
            for t in (resource.get("meta") or {}).get("tag", [])
            if t.get("system") == vocab.DOC_TYPE_SYSTEM
        ),
        None,
    )
    if tag is None:
        return []
    resources = [e["resource"] for e in resource.get("entry", []) if "resource" in e]
    body = build_document(
        tag["code"],
        resources,
        site,
        document_id=resource.get("id"),
        effective_time=resource.get("timestamp"),
    )
    return [
        OutboundMessage(
            body=body,
            content_type="application/xml",
            key=resource.get("id") or tag["code"],
            description=tag.get("display") or tag["code"],
        )
    ]
