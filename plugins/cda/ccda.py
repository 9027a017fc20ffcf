"""Inbound C-CDA R2.1 (US realm) documents, CCD first: header and the common entry sections.

Not the county platform's format, but the same CDA R2 parser and document
pipeline: a C-CDA document (templateId ``2.16.840.1.113883.10.20.22.1.1`` US
Realm Header, ``…22.1.2`` CCD) becomes a Patient, the author and custodian,
the DocumentReference with the original, a Provenance, and one resource per
entry of the sections below. Other sections and entry shapes are reported with
``context.unused``. Checked against the CCD samples of Microsoft's
FHIR-Converter and HL7's C-CDA examples (tests/cda/test_ccda.py).

| section (LOINC) | entry | FHIR |
|---|---|---|
| 48765-2 allergies | act / observation / participant playingEntity | AllergyIntolerance |
| 11450-4 problems | act / observation value | Condition (problem-list-item) |
| 10160-0 medications | substanceAdministration / manufacturedMaterial | MedicationStatement |
| 30954-2 results | organizer / observation | Observation (laboratory) |
| 8716-3 vital signs | organizer / observation | Observation (vital-signs) |
| 11369-6 immunizations | substanceAdministration | Immunization |
| 46240-8 encounters | encounter | Encounter |
| 47519-4 procedures | procedure, observation, act | Procedure |
| 29762-2 social history | observation | Observation (social-history) |
"""

from __future__ import annotations

from typing import Any

from fhirhub_plugins.cda import ids
from fhirhub_plugins.cda import vocab
from fhirhub_plugins.cda.cdatypes import clean_text
from fhirhub_plugins.cda.cdatypes import number
from fhirhub_plugins.cda.cdatypes import xsi_type
from fhirhub_plugins.cda.parse import NS
from fhirhub_plugins.cda.to_fhir import DocumentReader
from fhirhub_plugins.cda.to_fhir import _coding
from fhirhub_plugins.cda.to_fhir import _fail
from fhirhub_plugins.cda.to_fhir import _ref
from fhirhub_plugins.cda.to_fhir import _telecom

US_REALM_HEADER = "2.16.840.1.113883.10.20.22.1.1"
CCD = "2.16.840.1.113883.10.20.22.1.2"
TEMPLATES = {US_REALM_HEADER, CCD}

_GENDER = {"M": "male", "F": "female", "UN": "unknown", "U": "unknown", "O": "other"}
_TELECOM_USE = {"HP": "home", "H": "home", "WP": "work", "MC": "mobile", "TMP": "temp"}
_ADDRESS_USE = {
    "HP": "home",
    "H": "home",
    "WP": "work",
    "TMP": "temp",
    "PHYS": "home",
    "PST": "home",
}
_ALLERGY_CATEGORY = {
    "419511003": "medication",
    "416098002": "medication",
    "59037007": "medication",
    "414285001": "food",
    "235719002": "food",
    "418471000": "food",
    "232347008": "environment",
    "426232007": "environment",
}
_ALLERGY_STATUS = {
    "active": "active",
    "suspended": "inactive",
    "completed": "resolved",
    "aborted": "resolved",
}
_MED_STATUS = {
    "active": "active",
    "completed": "completed",
    "suspended": "on-hold",
    "aborted": "stopped",
    "cancelled": "not-taken",
}
_SECTIONS = {
    "48765-2": "allergies",
    "11450-4": "problems",
    "10160-0": "medications",
    "30954-2": "results",
    "8716-3": "vitals",
    "11369-6": "immunizations",
    "46240-8": "encounters",
    "47519-4": "procedures",
    "29762-2": "social",
}


def is_ccda(templates: list[str]) -> bool:
    return any(t in TEMPLATES for t in templates)


class CcdaReader(DocumentReader):
    """A C-CDA document: US header conventions, LOINC-coded sections, template entries."""

    type_system = vocab.LOINC
    reads_any_type = True

    # -- header -----------------------------------------------------------------
    def read_header(self) -> None:
        root = self.root
        doc_id = self.find(root, "v3:id")
        if doc_id is None or not (doc_id.get("extension") or doc_id.get("root")):
            raise _fail("required", "the document has no id", "ClinicalDocument/id")
        # id: root alone is a UUID/OID instance identifier; root + extension a namespaced id
        self.doc_root = doc_id.get("root") if doc_id.get("extension") else None
        self.doc_id = doc_id.get("extension") or doc_id.get("root")
        code = self.find(root, "v3:code")
        self.type_code = code.get("code") if code is not None else None
        self.type_display = code.get("displayName") if code is not None else None
        self.doc_type = None
        self.read_versioning(set_id_root=True)
        self.read_custodian()
        self.read_author()
        self.read_patient()
        self.read_encompassing_encounter()
        self.read_related_documents()

    def read_author(self) -> None:
        author = self.find(self.root, "v3:author")
        self.author_time = self.ts(self.find(author, "v3:time")) if author is not None else None
        assigned = self.find(author, "v3:assignedAuthor") if author is not None else None
        self.author_org = None
        if assigned is None:
            return
        person = self.find(assigned, "v3:assignedPerson")
        identifier = _identifier(self.find(assigned, "v3:id"))
        if person is not None and identifier:
            self.author = {
                "resourceType": "Practitioner",
                "id": ids.practitioner_id(identifier["system"], identifier["value"]),
                "identifier": [identifier],
            }
            name = _human_name(self.find(person, "v3:name"))
            if name:
                self.author["name"] = [name]
            self.resources.append(self.author)
        self.author_org = self.organization(
            self.find(assigned, "v3:representedOrganization"), "ClinicalDocument/author"
        )

    def organization(self, org, where: str) -> dict | None:
        if org is None:
            return None
        identifier = next((i for i in map(_identifier, org.findall("v3:id", NS)) if i), None)
        name = self.text(org, "v3:name")
        if identifier is None:
            return None
        org_id = ids.organization_id(identifier["system"], identifier["value"])
        for existing in self.resources:
            if existing["id"] == org_id:
                return existing
        resource = {"resourceType": "Organization", "id": org_id, "identifier": [identifier]}
        if name:
            resource["name"] = name
        self.resources.append(resource)
        return resource

    def read_patient(self) -> None:
        role = self.find(self.root, "v3:recordTarget/v3:patientRole")
        if role is None:
            raise _fail(
                "required",
                "the document has no recordTarget/patientRole",
                "ClinicalDocument/recordTarget",
            )
        identifiers = [i for i in map(_identifier, role.findall("v3:id", NS)) if i]
        if not identifiers:
            raise _fail(
                "required",
                "recordTarget/patientRole has no id",
                "ClinicalDocument/recordTarget/patientRole/id",
            )
        first = identifiers[0]
        patient: dict[str, Any] = {
            "resourceType": "Patient",
            "id": ids.patient_id(first["system"], first["value"], self.site_name),
            "identifier": identifiers,
        }
        addresses = [a for a in map(_address, role.findall("v3:addr", NS)) if a]
        if addresses:
            patient["address"] = addresses
        telecom = [t for t in map(_contact_point, role.findall("v3:telecom", NS)) if t]
        if telecom:
            patient["telecom"] = telecom
        person = self.find(role, "v3:patient")
        if person is not None:
            names = [n for n in map(_human_name, person.findall("v3:name", NS)) if n]
            if names:
                patient["name"] = names
            gender = self.find(person, "v3:administrativeGenderCode")
            if gender is not None and gender.get("code") in _GENDER:
                patient["gender"] = _GENDER[gender.get("code")]
            birth = self.ts(self.find(person, "v3:birthTime"))
            if birth:
                patient["birthDate"] = birth[:10]
            marital = self.find(person, "v3:maritalStatusCode")
            if marital is not None and marital.get("code"):
                patient["maritalStatus"] = _concept(marital)
            for tag in (
                "raceCode",
                "ethnicGroupCode",
                "religiousAffiliationCode",
                "guardian",
                "birthplace",
                "languageCommunication",
            ):
                if self.find(person, f"v3:{tag}") is not None:
                    self.context.unused(f"ClinicalDocument/recordTarget/patientRole/patient/{tag}")
        self.patient = patient
        self.resources.append(patient)

    def make_encounter(
        self,
    ) -> None:  # encompassingEncounter in C-CDA: an ambulatory visit by default
        self.encounter = self.new(
            "Encounter",
            "encounter",
            identifier=list(self.encounter_ids),
            status="finished",
            **{"class": {"system": vocab.ACT_CODE, "code": "AMB"}},
            subject=_ref(self.patient),
            period=dict(self.encounter_period) or None,
            serviceProvider=_ref(self.custodian) if self.custodian else None,
        )

    def read_encompassing_encounter(self) -> None:
        super().read_encompassing_encounter()
        if self.find(self.root, "v3:componentOf/v3:encompassingEncounter") is not None:
            self.make_encounter()

    def type_coding(self) -> dict:
        return _coding(vocab.LOINC, self.type_code, self.type_display or self.title)

    # -- body -----------------------------------------------------------------
    def read_body(self) -> None:
        body = self.find(self.root, "v3:component/v3:structuredBody")
        if body is None:
            self.context.unused(
                "ClinicalDocument/component", "nonXMLBody or missing body was not mapped"
            )
            return
        self.clinical_time = self.clinical_time or self.author_time
        for i, comp in enumerate(body.findall("v3:component", NS), 1):
            section = self.find(comp, "v3:section")
            if section is None or section.get("nullFlavor"):
                continue
            where = f"ClinicalDocument/component/structuredBody/component[{i}]/section"
            code = self.find(section, "v3:code")
            kind = _SECTIONS.get(code.get("code") if code is not None else None)
            entries = section.findall("v3:entry", NS)
            if kind is None:
                if entries:
                    self.context.unused(
                        where,
                        f"section {code.get('code') if code is not None else '?'} was not mapped",
                    )
                continue
            for j, entry in enumerate(entries, 1):
                for child in entry:
                    if isinstance(child.tag, str):
                        local = child.tag.split("}")[-1]
                        getattr(self, f"ccda_{kind}")(child, local, f"{where}/entry[{j}]/{local}")

    def when(self, element) -> tuple[str | None, str | None]:
        """``(start, end)`` of an effectiveTime (value, or low/high)."""
        eff = self.find(element, "v3:effectiveTime")
        if eff is None:
            return None, None
        value = self.ts(eff)
        if value:
            return value, None
        return self.ts(self.find(eff, "v3:low")), self.ts(self.find(eff, "v3:high"))

    def inner_observations(self, act) -> list:
        return [
            rel.find("v3:observation", NS)
            for rel in act.findall("v3:entryRelationship", NS)
            if rel.find("v3:observation", NS) is not None
        ]

    def ccda_allergies(self, act, local: str, loc: str) -> None:
        status = self.find(act, "v3:statusCode") if local == "act" else None
        for obs in self.inner_observations(act) if local == "act" else [act]:
            if obs.get("negationInd") == "true":
                self.context.info("no known allergies", loc)
                continue
            entity = self.find(obs, "v3:participant/v3:participantRole/v3:playingEntity")
            code = self.find(entity, "v3:code") if entity is not None else None
            concept = _concept(code) if code is not None else None
            if not concept:
                name = self.text(entity, "v3:name") if entity is not None else None
                concept = {"text": name} if name else None
            if not concept:
                self.context.unused(loc, "allergy without a substance was not mapped")
                continue
            value = self.find(obs, "v3:value")
            clinical = _ALLERGY_STATUS.get(
                status.get("code") if status is not None else "active", "active"
            )
            start, end = self.when(obs)
            reactions = []
            for inner in self.inner_observations(obs):
                template = {t.get("root") for t in inner.findall("v3:templateId", NS)}
                if "2.16.840.1.113883.10.20.22.4.9" in template:
                    manifestation = _concept(self.find(inner, "v3:value"))
                    if manifestation:
                        reactions.append({"manifestation": [manifestation]})
            category = _ALLERGY_CATEGORY.get(value.get("code") if value is not None else None)
            self.new(
                "AllergyIntolerance",
                self.next_key("allergy"),
                clinicalStatus={
                    "coding": [
                        _coding(
                            "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical",
                            clinical,
                        )
                    ]
                },
                verificationStatus={
                    "coding": [
                        _coding(
                            "http://terminology.hl7.org/CodeSystem/allergyintolerance-verification",
                            "confirmed",
                        )
                    ]
                },
                category=[category] if category else None,
                code=concept,
                patient=_ref(self.patient),
                onsetDateTime=start,
                reaction=reactions or None,
            )

    def ccda_problems(self, act, local: str, loc: str) -> None:
        for obs in self.inner_observations(act) if local == "act" else [act]:
            if obs.get("negationInd") == "true":
                self.context.info("problem recorded as absent", loc)
                continue
            concept = _concept(self.find(obs, "v3:value"))
            if not concept:
                self.context.unused(loc, "problem without a value was not mapped")
                continue
            start, end = self.when(obs)
            self.new(
                "Condition",
                self.next_key("problem"),
                clinicalStatus={
                    "coding": [
                        _coding(
                            "http://terminology.hl7.org/CodeSystem/condition-clinical",
                            "resolved" if end else "active",
                        )
                    ]
                },
                verificationStatus={
                    "coding": [
                        _coding(
                            "http://terminology.hl7.org/CodeSystem/condition-ver-status",
                            "confirmed",
                        )
                    ]
                },
                category=[{"coding": [_coding(vocab.CONDITION_CATEGORY, "problem-list-item")]}],
                code=concept,
                subject=_ref(self.patient),
                onsetDateTime=start,
                abatementDateTime=end,
            )

    def material(self, sa) -> dict | None:
        code = self.find(sa, "v3:consumable/v3:manufacturedProduct/v3:manufacturedMaterial/v3:code")
        return _concept(code) if code is not None else None

    def ccda_medications(self, sa, local: str, loc: str) -> None:
        if local != "substanceAdministration":
            self.context.unused(loc)
            return
        medication = self.material(sa)
        if not medication:
            self.context.unused(loc, "medication without a code was not mapped")
            return
        start, end = self.when(sa)
        status = self.find(sa, "v3:statusCode")
        dosage: dict[str, Any] = {}
        route = self.find(sa, "v3:routeCode")
        if route is not None and _concept(route):
            dosage["route"] = _concept(route)
        dose = self.find(sa, "v3:doseQuantity")
        if dose is not None and number(dose.get("value")) is not None:
            quantity = {"value": number(dose.get("value"))}
            if dose.get("unit") and dose.get("unit") != "1":
                quantity.update(
                    {"unit": dose.get("unit"), "system": vocab.UCUM, "code": dose.get("unit")}
                )
            dosage["doseAndRate"] = [{"doseQuantity": quantity}]
        fields: dict[str, Any] = {}
        if start and end:
            fields["effectivePeriod"] = {"start": start, "end": end}
        elif start:
            fields["effectiveDateTime"] = start
        self.new(
            "MedicationStatement",
            self.next_key("medication"),
            status=_MED_STATUS.get(status.get("code") if status is not None else "", "unknown"),
            medicationCodeableConcept=medication,
            subject=_ref(self.patient),
            dosage=[dosage] if dosage else None,
            **fields,
        )

    def observation(self, obs, category: str, loc: str) -> None:
        code = self.find(obs, "v3:code")
        concept = _concept(code) if code is not None else None
        if not concept:
            self.context.unused(loc, "observation without a code was not mapped")
            return
        # Smoking status carries code ASSERTION; the template says what it is.
        templates = {t.get("root") for t in obs.findall("v3:templateId", NS)}
        if "2.16.840.1.113883.10.20.22.4.78" in templates:
            concept = {"coding": [_coding(vocab.LOINC, "72166-2", "Tobacco smoking status")]}
        start, end = self.when(obs)
        fields: dict[str, Any] = {}
        value = self.find(obs, "v3:value")
        if value is not None and not value.get("nullFlavor"):
            kind = xsi_type(value)
            if kind == "PQ" and number(value.get("value")) is not None:
                quantity = {"value": number(value.get("value"))}
                if value.get("unit") and value.get("unit") != "1":
                    quantity.update(
                        {"unit": value.get("unit"), "system": vocab.UCUM, "code": value.get("unit")}
                    )
                fields["valueQuantity"] = quantity
            elif kind in ("CD", "CE", "CV", "CO") and _concept(value):
                fields["valueCodeableConcept"] = _concept(value)
            elif kind == "ST" and clean_text(value.text):
                fields["valueString"] = clean_text(value.text)
            elif kind == "INT" and number(value.get("value")) is not None:
                fields["valueInteger"] = int(number(value.get("value")))
        interpretation = self.find(obs, "v3:interpretationCode")
        if interpretation is not None and _concept(interpretation):
            fields["interpretation"] = [_concept(interpretation)]
        if start and end:
            fields["effectivePeriod"] = {"start": start, "end": end}
        elif start:
            fields["effectiveDateTime"] = start
        self.new(
            "Observation",
            self.next_key(f"obs-{category}"),
            status="final",
            category=[{"coding": [_coding(vocab.OBS_CATEGORY, category)]}],
            code=concept,
            subject=_ref(self.patient),
            **fields,
        )

    def ccda_results(self, element, local: str, loc: str, category: str = "laboratory") -> None:
        if local == "organizer":
            for k, comp in enumerate(element.findall("v3:component", NS), 1):
                obs = self.find(comp, "v3:observation")
                if obs is not None:
                    self.observation(obs, category, f"{loc}/component[{k}]/observation")
        elif local == "observation":
            self.observation(element, category, loc)
        else:
            self.context.unused(loc)

    def ccda_vitals(self, element, local: str, loc: str) -> None:
        self.ccda_results(element, local, loc, "vital-signs")

    def ccda_social(self, element, local: str, loc: str) -> None:
        if local == "observation":
            self.observation(element, "social-history", loc)
        else:
            self.context.unused(loc)

    def ccda_immunizations(self, sa, local: str, loc: str) -> None:
        vaccine = self.material(sa) if local == "substanceAdministration" else None
        if not vaccine:
            self.context.unused(loc, "immunization without a vaccine code was not mapped")
            return
        start, _end = self.when(sa)
        fields = {"occurrenceDateTime": start} if start else {"occurrenceString": "unknown"}
        self.new(
            "Immunization",
            self.next_key("immunization"),
            status="not-done" if sa.get("negationInd") == "true" else "completed",
            vaccineCode=vaccine,
            patient=_ref(self.patient),
            **fields,
        )

    def ccda_encounters(self, enc, local: str, loc: str) -> None:
        if local != "encounter":
            self.context.unused(loc)
            return
        start, end = self.when(enc)
        code = self.find(enc, "v3:code")
        self.new(
            "Encounter",
            self.next_key("encounter"),
            status="finished",
            **{"class": {"system": vocab.ACT_CODE, "code": "AMB"}},
            type=[_concept(code)] if code is not None and _concept(code) else None,
            subject=_ref(self.patient),
            period={k: v for k, v in (("start", start), ("end", end)) if v} or None,
        )

    def ccda_procedures(self, element, local: str, loc: str) -> None:
        code = self.find(element, "v3:code")
        concept = _concept(code) if code is not None else None
        if not concept:
            self.context.unused(loc, "procedure without a code was not mapped")
            return
        start, end = self.when(element)
        status = self.find(element, "v3:statusCode")
        fields: dict[str, Any] = {}
        if start and end:
            fields["performedPeriod"] = {"start": start, "end": end}
        elif start:
            fields["performedDateTime"] = start
        state = status.get("code") if status is not None else "completed"
        self.new(
            "Procedure",
            self.next_key("procedure"),
            status={"active": "in-progress", "aborted": "stopped", "cancelled": "not-done"}.get(
                state, "completed"
            ),
            code=concept,
            subject=_ref(self.patient),
            **fields,
        )


def _identifier(el) -> dict | None:
    if el is None or el.get("nullFlavor"):
        return None
    root, ext = el.get("root"), clean_text(el.get("extension"))
    if root and ext:
        return {"system": vocab.system_uri(root), "value": ext}
    if root:
        return {
            "system": "urn:ietf:rfc:3986",
            "value": f"urn:oid:{root}" if root[0].isdigit() else f"urn:uuid:{root}",
        }
    return None


def _human_name(el) -> dict | None:
    if el is None:
        return None
    given = [clean_text(g.text) for g in el.findall("v3:given", NS) if clean_text(g.text)]
    family = clean_text(getattr(el.find("v3:family", NS), "text", None))
    name: dict[str, Any] = {}
    if el.get("use") in ("L", "C"):
        name["use"] = "official" if el.get("use") == "L" else "usual"
    if family:
        name["family"] = family
    if given:
        name["given"] = given
    for tag in ("prefix", "suffix"):
        parts = [clean_text(p.text) for p in el.findall(f"v3:{tag}", NS) if clean_text(p.text)]
        if parts:
            name[tag] = parts
    if not family and not given:
        text = clean_text("".join(el.itertext()))
        if text:
            name["text"] = text
    return name if len(name) > ("use" in name) else None


def _address(el) -> dict | None:
    if el is None or el.get("nullFlavor"):
        return None
    lines = [
        clean_text(s.text) for s in el.findall("v3:streetAddressLine", NS) if clean_text(s.text)
    ]
    out: dict[str, Any] = {}
    if el.get("use") in _ADDRESS_USE:
        out["use"] = _ADDRESS_USE[el.get("use")]
    if lines:
        out["line"] = lines
    for tag, key in (
        ("city", "city"),
        ("state", "state"),
        ("postalCode", "postalCode"),
        ("country", "country"),
        ("county", "district"),
    ):
        value = clean_text(getattr(el.find(f"v3:{tag}", NS), "text", None))
        if value:
            out[key] = value
    return out if len(out) > ("use" in out) else None


def _contact_point(el) -> dict | None:
    value = clean_text(el.get("value"))
    if not value:
        return None
    point = _telecom(value)
    if el.get("use") in _TELECOM_USE:
        point["use"] = _TELECOM_USE[el.get("use")]
    return point


def _concept(el) -> dict | None:
    """A CodeableConcept from a CD element and its translations (codes mapped to FHIR system URIs)."""
    if el is None:
        return None
    codings = []
    for code in [el, *el.findall("v3:translation", NS)]:
        if code.get("code") and not code.get("nullFlavor"):
            codings.append(
                _coding(
                    vocab.system_uri(code.get("codeSystem")) if code.get("codeSystem") else None,
                    code.get("code"),
                    code.get("displayName"),
                )
            )
    concept: dict[str, Any] = {}
    if codings:
        concept["coding"] = codings
    original = el.find("v3:originalText", NS)
    text = clean_text("".join(original.itertext())) if original is not None else None
    if text:
        concept["text"] = text
    return concept or None
