"""Inbound: one parsed CDA document -> a FHIR transaction Bundle.

The header gives the Patient, the author and custodian, the encounter and the
DocumentReference that keeps the original XML (the legal record). The body is
read entry by entry; each ``observation`` is looked up by its WS 363 data
element (``code/@code``) in ``vocab.ELEMENTS`` and mapped by its kind. An
observation whose data element is not in the catalogue is kept as is (an
Observation with its own code, typed value and its section's category, and a
warning); entries the adapter cannot read at all are refused and reported
with ``context.unused``. None is dropped silently: the outcome counts the
entries mapped, kept as is and refused.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import re
from typing import TYPE_CHECKING
from typing import Any

from fhirhub_plugins.cda import documents
from fhirhub_plugins.cda import ids
from fhirhub_plugins.cda import parse
from fhirhub_plugins.cda import vocab
from fhirhub_plugins.cda.cdatypes import clean_text
from fhirhub_plugins.cda.cdatypes import instant
from fhirhub_plugins.cda.cdatypes import number
from fhirhub_plugins.cda.cdatypes import q
from fhirhub_plugins.cda.cdatypes import ts_to_fhir
from fhirhub_plugins.cda.cdatypes import xsi_type
from fhirhub_plugins.cda.entries import KIND_HANDLERS
from fhirhub_plugins.cda.entries import OBS_CATEGORY_DISPLAY
from fhirhub_plugins.cda.entries import EntryMappers
from fhirhub_plugins.cda.entries import coding as _coding
from fhirhub_plugins.cda.entries import ref as _ref
from fhirhub_plugins.cda.parse import NS
from fhirhub_plugins.cda.parse import declared_encoding
from hub.plugin_api import OperationOutcomeError
from hub.plugin_api import issue
from hub.plugin_api import outcome
from hub.plugin_api import resident_id
from hub.plugin_api import with_content_hash

if TYPE_CHECKING:
    from hub.plugin_api import Site

_DE_SHAPE = re.compile(r"^DE\d{2}\.\d{2}\.\d{3}\.\d{2}")
_PATIENT_LOC = "ClinicalDocument/recordTarget/patientRole/patient"
_RID_LOC = f"{_PATIENT_LOC}/id[@root='{vocab.OID_RESIDENT_ID}']"
_BODY = "ClinicalDocument/component/structuredBody"

# Header children read by this module; any other is reported as unused.
_HEADER_READ = {
    q(t)
    for t in (
        "realmCode",
        "typeId",
        "templateId",
        "id",
        "code",
        "title",
        "effectiveTime",
        "confidentialityCode",
        "languageCode",
        "setId",
        "versionNumber",
        "recordTarget",
        "author",
        "custodian",
        "participant",
        "relatedDocument",
        "componentOf",
        "component",
    )
}
_ADDRESS_PARTS = {
    "state",
    "city",
    "county",
    "township",
    "streetName",
    "houseNumber",
    "postalCode",
    "streetAddressLine",
    "country",
}
_HIS_ID_ROOTS = {vocab.OID_OUTPATIENT_NO, vocab.OID_INPATIENT_NO, vocab.OID_CASE_NO}
# 个人基本健康信息登记: the document that registers a health record (WS/T 483.1)
REGISTRATION = "HSDA00.01"


def _fail(code: str, text: str, where: str, status: int = 422) -> OperationOutcomeError:
    return OperationOutcomeError(outcome(issue("error", code, text, where)), status)


def _site_name(site: Site) -> str:
    return getattr(site, "name", None) or "default"


def site_config(site: Site) -> dict:
    getter = getattr(site, "plugin_config", None)
    return (getter("cda") if callable(getter) else None) or {}


class DocumentReader(EntryMappers):
    """Reads one ClinicalDocument; ``bundle()`` returns the transaction."""

    type_system = vocab.DOC_TYPE_SYSTEM
    reads_any_type = False  # the C-CDA reader maps sections of any document type

    def __init__(self, root, body: bytes, context, site: Site | None = None):
        self.root = root
        self.body = body
        self.context = context
        self.site = site
        self.site_name = _site_name(site)
        self.tz = getattr(site, "timezone", None) or "Asia/Shanghai"
        self.config = site_config(site)
        self.aliases = dict(self.config.get("data_element_aliases") or {})
        self.resources: list[dict] = []
        self.extra_entries: list[dict] = []
        self.counters: dict[str, int] = {}
        self.patient: dict | None = None
        self.encounter: dict | None = None
        self.author: dict | None = None
        self.custodian: dict | None = None
        self.clinical_time: str | None = None
        self.author_time: str | None = None
        self.author_org: dict | None = None
        self.encounter_org: dict | None = None
        self.encounter_ids: list[dict] = []
        self.encounter_period: dict = {}
        self.replaces: list[str] = []
        self.parent_root = vocab.OID_DOCUMENT
        self._loose_bp: dict | None = None  # BP components outside an organizer, pairing up
        # Body entries by what became of them (the outcome's "entries:" line).
        self.tally = {"mapped": 0, "kept": 0, "refused": 0}
        self.section_category: dict | None = None  # category of entries kept as is

    # -- helpers -----------------------------------------------------------
    def find(self, element, path: str):
        return element.find(path, NS)

    def text(self, element, path: str) -> str | None:
        """The cleaned text of a child element (``None`` when absent or a placeholder)."""
        found = element.find(path, NS) if element is not None else None
        return clean_text(found.text) if found is not None else None

    def ts(self, element) -> str | None:
        if element is None:
            return None
        return ts_to_fhir(element.get("value"), self.tz)

    def next_key(self, kind: str) -> str:
        self.counters[kind] = self.counters.get(kind, 0) + 1
        return f"{kind}#{self.counters[kind]}"

    def new(self, resource_type: str, position: str, **fields) -> dict:
        resource = {
            "resourceType": resource_type,
            "id": ids.extracted_id(self.site_name, resource_type, self.doc_key, position),
        }
        resource.update({k: v for k, v in fields.items() if v not in (None, [], {})})
        self.resources.append(resource)
        return resource

    # -- entry point ----------------------------------------------------------
    def bundle(self) -> dict:
        self.read_header()
        if self.doc_type is None and not self.reads_any_type:
            self.context.unused(
                _BODY, f"body of unknown document type {self.type_code!r} was not mapped"
            )
        else:
            self.read_body()
        document_reference = self.document_reference()
        provenance = self.provenance(document_reference)
        for resource in self.resources:
            resource["meta"] = self.meta(resource["resourceType"])
            with_content_hash(resource)
        entries = [
            {
                "fullUrl": f"urn:uuid:{r['id']}",
                "resource": r,
                "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"},
            }
            for r in (*self.resources, document_reference, provenance)
        ]
        document_reference["meta"] = self.meta("DocumentReference")
        provenance["meta"] = self.meta("Provenance")
        return {
            "resourceType": "Bundle",
            "type": "transaction",
            "entry": entries + self.extra_entries,
        }

    # -- header ---------------------------------------------------------------
    def read_header(self) -> None:
        root = self.root
        doc_id = self.find(root, "v3:id")
        # id: 文档流水号 under 2.16.156.10011.1.1 (vendors add sub-arcs)
        if doc_id is None or not doc_id.get("extension"):
            raise _fail(
                "required",
                "the document has no id/@extension (document serial number)",
                "ClinicalDocument/id",
            )
        self.doc_root = doc_id.get("root") or vocab.OID_DOCUMENT
        self.doc_id = doc_id.get("extension")
        # code: document type (2.16.156.10011.2.4); templateId: the shared-document template
        code = self.find(root, "v3:code")
        self.type_code = code.get("code") if code is not None else None
        templates = [t.get("root") for t in root.findall("v3:templateId", NS)]
        self.doc_type = documents.identify(self.type_code, templates)
        if self.doc_type is None and self.config.get("unknown_documents") != "keep":
            raise _fail(
                "not-supported",
                f"document type {self.type_code!r} (templateId {templates}) is not supported",
                "ClinicalDocument/code",
            )
        self.read_versioning(set_id_root=False)
        for child in root:
            if isinstance(child.tag, str) and child.tag not in _HEADER_READ:
                self.context.unused(f"ClinicalDocument/{child.tag.split('}')[-1]}")
        self.read_custodian()
        self.read_author()
        self.read_patient()
        self.read_encompassing_encounter()
        self.read_related_documents()

    def read_versioning(self, set_id_root: bool) -> None:
        """Title, document time, confidentiality and the setId/version pair.

        ``set_id_root``: a setId given by ``root`` alone counts (C-CDA); the
        Chinese documents name the set by ``extension``.
        """
        root = self.root
        self.title = self.text(root, "v3:title")
        # effectiveTime: when the document was made/uploaded, not the clinical time (DOMAIN §10.2)
        self.document_time = self.ts(self.find(root, "v3:effectiveTime"))
        if not self.document_time:
            raise _fail(
                "required",
                "effectiveTime is missing or malformed",
                "ClinicalDocument/effectiveTime",
            )
        conf = self.find(root, "v3:confidentialityCode")
        self.confidentiality = conf.get("code") if conf is not None else "N"
        set_id = self.find(root, "v3:setId")
        self.set_id = None
        if set_id is not None:
            self.set_id = set_id.get("extension") or (set_id.get("root") if set_id_root else None)
        version = self.find(root, "v3:versionNumber")
        self.version = version.get("value") if version is not None else None
        self.doc_key = self.set_id or self.doc_id

    def organization(self, org, where: str) -> dict | None:
        if org is None:
            return None
        oid = self.find(org, "v3:id")
        name = self.text(org, "v3:name")
        if oid is None or not oid.get("extension"):
            if not name:
                return None
            self.context.warn(f"organization {name!r} has no id; not linked", where)
            return None
        system = vocab.urn(oid.get("root") or vocab.OID_ORGANIZATION)
        value = oid.get("extension")
        org_id = ids.organization_id(system, value)
        for existing in self.resources:
            if existing["id"] == org_id:
                return existing
        resource = {
            "resourceType": "Organization",
            "id": org_id,
            "identifier": [{"system": system, "value": value}],
        }
        if name:
            resource["name"] = name
        self.resources.append(resource)
        return resource

    def read_custodian(self) -> None:
        # custodian/assignedCustodian/representedCustodianOrganization: 1.5 (1.6 in WS/T 483 instances)
        org = self.find(
            self.root, "v3:custodian/v3:assignedCustodian/v3:representedCustodianOrganization"
        )
        self.custodian = self.organization(org, "ClinicalDocument/custodian")
        if self.custodian is None:
            self.context.warn(
                "the document names no custodian organization", "ClinicalDocument/custodian"
            )

    def read_author(self) -> None:
        author = self.find(self.root, "v3:author")
        if author is None:
            self.context.warn("the document has no author", "ClinicalDocument/author")
            return
        # author/time: when the record was created (fallback clinical time)
        self.author_time = self.ts(self.find(author, "v3:time"))
        assigned = self.find(author, "v3:assignedAuthor")
        if assigned is None:
            return
        # assignedAuthor/id 2.16.156.10011.1.7; assignedPerson/name
        aid = self.find(assigned, "v3:id")
        name = self.text(assigned, "v3:assignedPerson/v3:name")
        if aid is not None and aid.get("extension"):
            system = vocab.urn(aid.get("root") or vocab.OID_AUTHOR)
            self.author = {
                "resourceType": "Practitioner",
                "id": ids.practitioner_id(system, aid.get("extension")),
                "identifier": [{"system": system, "value": aid.get("extension")}],
            }
            if name:
                self.author["name"] = [{"text": name}]
            self.resources.append(self.author)
        self.author_org = self.organization(
            self.find(assigned, "v3:representedOrganization"),
            "ClinicalDocument/author/assignedAuthor",
        )

    def read_patient(self) -> None:
        role = self.find(self.root, "v3:recordTarget/v3:patientRole")
        if role is None:
            raise _fail(
                "required",
                "the document has no recordTarget/patientRole",
                "ClinicalDocument/recordTarget",
            )
        person = self.find(role, "v3:patient")
        identifiers: list[dict] = []
        rid_value = None
        for el in [
            *role.findall("v3:id", NS),
            *(person.findall("v3:id", NS) if person is not None else []),
        ]:
            root, ext = el.get("root"), clean_text(el.get("extension"))
            if not root or not ext:
                continue
            if root == vocab.OID_RESIDENT_ID:
                rid_value = ext
                continue
            ident = {"system": vocab.urn(root), "value": ext}
            if root in _HIS_ID_ROOTS and self.custodian is not None:
                ident["assigner"] = _ref(
                    self.custodian
                )  # hospital numbers are unique per hospital only
            identifiers.append(ident)
        rid = None
        if rid_value is not None:
            try:
                rid = resident_id.parse(rid_value)
            except resident_id.InvalidResidentId as exc:
                raise _fail("value", f"{exc} ({resident_id.mask(rid_value)})", _RID_LOC) from None
            identifiers.insert(0, {"system": vocab.urn(vocab.OID_RESIDENT_ID), "value": rid.value})
        if not identifiers:
            raise _fail(
                "required",
                "recordTarget carries neither a resident ID number nor another patient identifier",
                "ClinicalDocument/recordTarget/patientRole/id",
            )
        first = identifiers[0]
        patient = {
            "resourceType": "Patient",
            "id": ids.patient_id(first["system"], first["value"], self.site_name),
            "identifier": identifiers,
        }
        if person is not None:
            self.patient_demographics(patient, person, rid)
        self.patient_contact_details(patient, role)
        self.read_contacts(patient)
        if self.doc_type is not None and self.doc_type.code == REGISTRATION:
            # 个人基本健康信息登记: the author's organisation registered the record
            # (建档机构); it keeps it (docs/ingestion.md), the custodian when none is named.
            registrar = self.author_org or self.custodian
            if registrar is not None:
                patient["managingOrganization"] = _ref(registrar)
        self.patient = patient
        self.resources.append(patient)

    def patient_demographics(self, patient: dict, person, rid) -> None:
        # name: one plain-text name (no family/given split: compound surnames exist)
        names = [clean_text(n.text) for n in person.findall("v3:name", NS)]
        names = [n for n in names if n]
        if names:
            patient["name"] = [{"text": names[0]}]
            for extra in names[1:]:
                patient["name"].append({"use": "old", "text": extra})
        extensions = []
        # administrativeGenderCode: GB/T 2261.1
        gender = self.find(person, "v3:administrativeGenderCode")
        if gender is not None and gender.get("code"):
            code = gender.get("code")
            translated = self.context.translate(
                "cda-sex", code, f"{_PATIENT_LOC}/administrativeGenderCode"
            )
            if translated:
                patient["gender"] = translated.code
            extensions.append(
                {"url": vocab.EXT_SEX_CODE, "valueCoding": _coding(vocab.urn(vocab.OID_SEX), code)}
            )
        # birthTime
        birth = self.ts(self.find(person, "v3:birthTime"))
        if birth:
            patient["birthDate"] = birth[:10]
        if rid is not None:
            for problem in resident_id.consistency_issues(
                rid, patient.get("birthDate"), patient.get("gender")
            ):
                self.context.warn(problem, _RID_LOC)
        # maritalStatusCode: GB/T 2261.2
        marital = self.find(person, "v3:maritalStatusCode")
        if marital is not None and marital.get("code"):
            code = marital.get("code")
            concept = {
                "coding": [_coding(vocab.urn(vocab.OID_MARITAL), code, marital.get("displayName"))]
            }
            translated = self.context.translate(
                "cda-marital-status", code, f"{_PATIENT_LOC}/maritalStatusCode"
            )
            if translated:
                concept["coding"].append(
                    _coding(translated.system, translated.code, translated.display)
                )
            patient["maritalStatus"] = concept
        # ethnicGroupCode: GB 3304
        ethnic = self.find(person, "v3:ethnicGroupCode")
        if ethnic is not None and ethnic.get("code"):
            code = ethnic.get("code")
            translated = self.context.translate(
                "cda-ethnicity", code, f"{_PATIENT_LOC}/ethnicGroupCode"
            )
            display = translated.display if translated else ethnic.get("displayName")
            extensions.append(
                {
                    "url": vocab.EXT_ETHNICITY,
                    "valueCoding": _coding(vocab.urn(vocab.OID_ETHNICITY), code, display),
                }
            )
        # educationLevelCode (CN extension, GB/T 4658), occupation/occupationCode (GB/T 6565)
        for path, url, default in (
            ("v3:educationLevelCode", vocab.EXT_EDUCATION, vocab.OID_EDUCATION),
            ("v3:educationLevel/v3:educationLevelCode", vocab.EXT_EDUCATION, vocab.OID_EDUCATION),
            ("v3:occupation/v3:occupationCode", vocab.EXT_OCCUPATION, vocab.OID_OCCUPATION),
        ):
            el = self.find(person, path)
            if el is not None and el.get("code"):
                system = vocab.urn(el.get("codeSystem") or default)
                extensions.append(
                    {
                        "url": url,
                        "valueCoding": _coding(system, el.get("code"), el.get("displayName")),
                    }
                )
        for child in person:
            local = child.tag.split("}")[-1] if isinstance(child.tag, str) else None
            if local in (
                "age",
                "household",
                "patientType",
                "guardian",
                "birthplace",
                "languageCommunication",
            ):
                self.context.unused(f"{_PATIENT_LOC}/{local}")
        if extensions:
            patient["extension"] = extensions

    def patient_contact_details(self, patient: dict, role) -> None:
        # addr use="H": state(省) city county township streetName houseNumber postalCode
        addresses = []
        for addr in role.findall("v3:addr", NS):
            parts = {
                child.tag.split("}")[-1]: clean_text(child.text)
                for child in addr
                if isinstance(child.tag, str)
            }
            line = [parts[k] for k in ("township", "streetName", "houseNumber") if parts.get(k)]
            line += [
                clean_text(s.text)
                for s in addr.findall("v3:streetAddressLine", NS)
                if clean_text(s.text)
            ]
            for name in set(parts) - _ADDRESS_PARTS:
                self.context.unused(f"ClinicalDocument/recordTarget/patientRole/addr/{name}")
            address = {
                "use": {"H": "home", "WP": "work", "TMP": "temp"}.get(
                    addr.get("use") or "H", "home"
                ),
                "line": line,
                "district": parts.get("county"),
                "city": parts.get("city"),
                "state": parts.get("state"),
                "postalCode": parts.get("postalCode"),
                "country": "CN",
            }
            text = "".join([*(parts.get(k) or "" for k in ("state", "city", "county")), *line])
            if text:
                address["text"] = text
            addresses.append({k: v for k, v in address.items() if v})
        if addresses:
            patient["address"] = addresses
        telecom = [
            _telecom(t.get("value"))
            for t in role.findall("v3:telecom", NS)
            if clean_text(t.get("value"))
        ]
        if telecom:
            patient["telecom"] = telecom

    def read_contacts(self, patient: dict) -> None:
        # participant typeCode="NOT": 联系人, relationship code GB/T 4761
        contacts = []
        for part in self.root.findall("v3:participant", NS):
            if part.get("typeCode") != "NOT":
                self.context.unused(
                    "ClinicalDocument/participant",
                    f"participant typeCode={part.get('typeCode')} was not mapped",
                )
                continue
            entity = self.find(part, "v3:associatedEntity")
            if entity is None:
                continue
            contact: dict[str, Any] = {}
            code = self.find(entity, "v3:code")
            if code is not None and code.get("code"):
                concept = {
                    "coding": [
                        _coding(
                            vocab.urn(vocab.OID_RELATIONSHIP),
                            code.get("code"),
                            code.get("displayName"),
                        )
                    ]
                }
                translated = self.context.translate(
                    "cda-relationship",
                    code.get("code"),
                    "ClinicalDocument/participant/associatedEntity/code",
                )
                if translated:
                    concept["coding"].append(
                        _coding(translated.system, translated.code, translated.display)
                    )
                contact["relationship"] = [concept]
            name = self.text(entity, "v3:associatedPerson/v3:name")
            if name:
                contact["name"] = {"text": name}
            telecom = [
                _telecom(t.get("value"))
                for t in entity.findall("v3:telecom", NS)
                if clean_text(t.get("value"))
            ]
            if telecom:
                contact["telecom"] = telecom
            if contact:
                contacts.append(contact)
        if contacts:
            patient["contact"] = contacts

    def read_encompassing_encounter(self) -> None:
        enc = self.find(self.root, "v3:componentOf/v3:encompassingEncounter")
        if enc is not None:
            # encompassingEncounter/effectiveTime: the clinical time (low/high or value)
            eff = self.find(enc, "v3:effectiveTime")
            if eff is not None:
                start = self.ts(eff) or self.ts(self.find(eff, "v3:low"))
                end = self.ts(self.find(eff, "v3:high"))
                self.encounter_period = {k: v for k, v in (("start", start), ("end", end)) if v}
            for el in enc.findall("v3:id", NS):
                if el.get("root") and el.get("extension"):
                    self.encounter_ids.append(
                        {"system": vocab.urn(el.get("root")), "value": el.get("extension")}
                    )
            facility = self.find(
                enc, "v3:location/v3:healthCareFacility/v3:serviceProviderOrganization"
            )
            org = self.organization(
                facility, "ClinicalDocument/componentOf/encompassingEncounter/location"
            )
            self.encounter_org = org or self.custodian
        elif self.doc_type is not None and self.doc_type.needs_encompassing_encounter:
            self.context.warn(
                f"{self.doc_type.title} without componentOf/encompassingEncounter: clinical time unknown",
                "ClinicalDocument/componentOf",
            )
        self.clinical_time = self.encounter_period.get("start")
        if self.doc_type is not None and self.doc_type.encounter:
            self.make_encounter()

    def make_encounter(self) -> None:
        doc_type = self.doc_type
        # A follow-up's class comes from its 随访方式 entry; until then it is unknown, never
        # assumed face to face (only face-to-face visits count for standard management).
        cls = "UNK" if doc_type.encounter == "followup" else doc_type.encounter
        identifiers = list(self.encounter_ids)
        seen = {(i["system"], i["value"]) for i in identifiers}
        for ident in self.patient.get("identifier", []):
            oid = vocab.oid_of(ident["system"])
            if (
                oid in (vocab.OID_OUTPATIENT_NO, vocab.OID_INPATIENT_NO)
                and (ident["system"], ident["value"]) not in seen
            ):
                identifiers.append(dict(ident))
        provider = self.encounter_org or self.custodian
        status = "finished"
        if cls == "IMP" and not self.encounter_period.get("end"):
            status = "in-progress"  # no discharge time yet
        self.encounter = self.new(
            "Encounter",
            "encounter",
            identifier=identifiers,
            status=status,
            **{
                "class": {
                    "system": vocab.NULL_FLAVOR if cls == "UNK" else vocab.ACT_CODE,
                    "code": cls,
                }
            },
            type=[self.encounter_type_concept()],
            subject=_ref(self.patient),
            participant=[{"individual": _ref(self.author)}] if self.author else None,
            period=dict(self.encounter_period) or None,
            serviceProvider=_ref(provider) if provider else None,
        )

    def encounter_type_concept(self) -> dict:
        """Encounter.type: the hub code the audits read (if the type has one) and the title."""
        concept: dict = {"text": self.doc_type.encounter_type}
        if self.doc_type.encounter_coding:
            system, code = self.doc_type.encounter_coding
            concept = {"coding": [{"system": system, "code": code}], **concept}
        return concept

    def read_related_documents(self) -> None:
        # relatedDocument typeCode="RPLC": this version replaces the parent document
        for rel in self.root.findall("v3:relatedDocument", NS):
            parent_id = self.find(rel, "v3:parentDocument/v3:id")
            if parent_id is None or not parent_id.get("extension"):
                continue
            if rel.get("typeCode") == "RPLC":
                self.replaces.append(parent_id.get("extension"))
                self.parent_root = parent_id.get("root") or vocab.OID_DOCUMENT
            else:
                self.context.unused(
                    "ClinicalDocument/relatedDocument",
                    f"relatedDocument typeCode={rel.get('typeCode')} was not mapped",
                )

    # -- body -----------------------------------------------------------------
    def read_body(self) -> None:
        body = self.find(self.root, "v3:component/v3:structuredBody")
        if body is None:
            if self.find(self.root, "v3:component/v3:nonXMLBody") is not None:
                self.context.unused("ClinicalDocument/component/nonXMLBody")
                return
            raise _fail(
                "required", "the document has no structuredBody", "ClinicalDocument/component"
            )
        sections = [c.find("v3:section", NS) for c in body.findall("v3:component", NS)]
        # Clinical time for follow-ups: the follow-up entry's effectiveTime (随访日期)
        if not self.clinical_time:
            for obs in body.iterfind(".//v3:observation", NS):
                code = obs.find("v3:code", NS)
                if code is not None and code.get("code") == "DE06.00.108.00":
                    self.clinical_time = self.ts(obs.find("v3:effectiveTime", NS))
                    break
        if not self.clinical_time:
            self.clinical_time = self.author_time
        if self.encounter is not None and not self.encounter.get("period") and self.clinical_time:
            self.encounter["period"] = {"start": self.clinical_time}
        for i, section in enumerate(sections, 1):
            if section is None:
                continue
            where = f"{_BODY}/component[{i}]/section"
            self.section_category = _section_category(self.find(section, "v3:code"))
            for j, entry in enumerate(section.findall("v3:entry", NS), 1):
                loc = f"{where}/entry[{j}]"
                for child in entry:
                    if isinstance(child.tag, str):
                        self.read_entry(child, loc)
        if self.encounter is not None and self.encounter["class"]["code"] == "UNK":
            self.context.warn(
                "follow-up without 随访方式 (DE06.00.108.00): not counted as face to face",
                _BODY,
                code="required",
            )
        tally = self.tally
        self.context.info(
            f"entries: {tally['mapped']} mapped, {tally['kept']} kept as is, "
            f"{tally['refused']} refused",
            _BODY,
        )

    @contextlib.contextmanager
    def counted_entry(self):
        """Count one body entry as mapped unless it was refused or kept as is meanwhile."""
        before = (self.tally["refused"], self.tally["kept"])
        yield
        if (self.tally["refused"], self.tally["kept"]) == before:
            self.tally["mapped"] += 1

    def refuse(self, location: str, text: str) -> None:
        """A body entry the adapter cannot read: reported (``context.unused``) and counted."""
        self.tally["refused"] += 1
        self.context.unused(location, text)

    def read_entry(self, element, loc: str) -> None:
        local = element.tag.split("}")[-1]
        loc = f"{loc}/{local}"
        if local == "observation":
            self.read_observation(element, loc)
        elif local == "organizer":
            self.read_organizer(element, loc)
        elif local == "substanceAdministration":
            with self.counted_entry():
                self.read_medication(element, loc)
        elif local == "procedure":
            with self.counted_entry():
                self.read_procedure(element, loc)
        else:
            self.refuse(loc, f"{local} entries are not mapped")

    def data_element(self, code_el, loc: str) -> tuple[str | None, vocab.Element | None]:
        """The normalised DE code and its catalogue entry (aliases from the site table)."""
        raw = code_el.get("code") if code_el is not None else None
        if not raw:
            self.refuse(loc, "entry without a data-element code was not mapped")
            return None, None
        if raw in self.aliases:
            de = self.aliases[raw]
            self.context.info(
                f"data element {raw!r} read as {de} (site alias table)", f"{loc}/code"
            )
        else:
            m = _DE_SHAPE.match(raw)
            if not m:
                self.context.warn(
                    f"malformed data-element code {raw!r}", f"{loc}/code", code="code-invalid"
                )
                self.refuse(loc, f"entry with malformed data-element code {raw!r} was not mapped")
                return None, None
            de = m.group(0)  # vendor suffixes (DE02.01.039.00.178) are read as the base element
        # ``None`` for a well-formed code the catalogue lacks: the caller keeps it as is.
        return de, vocab.ELEMENTS.get(de)

    def value(self, value_el, element: vocab.Element, loc: str) -> tuple[str, Any] | None:
        """``(FHIR value[x] name, value)`` from a typed CDA ``value``; ``None`` when empty."""
        if value_el is None or value_el.get("nullFlavor"):
            return None
        kind = xsi_type(value_el) or element.value
        if kind == "PQ":
            amount = number(value_el.get("value"))
            if amount is None:
                if value_el.get("value"):
                    self.context.warn(
                        f"PQ value {value_el.get('value')!r} is not a number", f"{loc}/value"
                    )
                return None
            unit = value_el.get("unit") or element.unit
            quantity: dict[str, Any] = {"value": amount}
            if unit:
                quantity["unit"] = unit
                ucum = self.context.code_map("cda-unit-ucum").lookup(unit)
                if ucum:
                    quantity["system"] = vocab.UCUM
                    quantity["code"] = ucum.code
            return "valueQuantity", quantity
        if kind in ("CD", "CE", "CV", "CO"):
            concept = self.concept(value_el, element, f"{loc}/value")
            return ("valueCodeableConcept", concept) if concept else None
        if kind == "BL":
            raw = (value_el.get("value") or "").lower()
            if raw in ("true", "t", "1"):
                return "valueBoolean", True
            if raw in ("false", "f", "0"):
                return "valueBoolean", False
            return None
        if kind in ("TS", "IVL_TS"):
            moment = self.ts(value_el) or self.ts(self.find(value_el, "v3:low"))
            return ("valueDateTime", moment) if moment else None
        if kind == "INT":
            amount = number(value_el.get("value"))
            return ("valueInteger", int(amount)) if amount is not None else None
        text = clean_text(value_el.text)
        return ("valueString", text) if text else None

    def concept(self, value_el, element: vocab.Element | None, loc: str) -> dict | None:
        code = clean_text(value_el.get("code"))
        original = self.text(value_el, "v3:originalText")
        if not code:
            return {"text": original} if original else None
        system_oid = value_el.get("codeSystem")
        display = value_el.get("displayName")
        domain = vocab.DOMAINS.get(element.domain) if element and element.domain else None
        if domain is not None:
            if system_oid and system_oid != domain.oid:
                # Vendors copy OIDs across value domains (integration.md §C.9): trust the element
                self.context.warn(
                    f"codeSystem {system_oid} is not the value domain of {element.de} ({domain.oid}); read as {domain.name}",
                    loc,
                    code="code-invalid",
                )
            system_oid = domain.oid
            translated = self.context.translate(domain.code_map, code, loc)
            if translated and translated.display:
                display = translated.display
        concept = {
            "coding": [_coding(vocab.urn(system_oid) if system_oid else None, code, display)]
        }
        if original:
            concept["text"] = original
        return concept

    def effective(self, obs) -> str | None:
        eff = self.find(obs, "v3:effectiveTime")
        if eff is not None:
            moment = self.ts(eff) or self.ts(self.find(eff, "v3:low"))
            if moment:
                return moment
        return self.clinical_time

    def de_coding(self, element: vocab.Element) -> dict:
        return {"system": vocab.DE_SYSTEM, "code": element.de, "display": element.name}

    def read_observation(self, obs, loc: str, group: dict | None = None) -> None:
        with self.counted_entry():
            self.map_data_element(obs, loc, group)

    def map_data_element(self, obs, loc: str, group: dict | None) -> None:
        code_el = self.find(obs, "v3:code")
        de, element = self.data_element(code_el, loc)
        if de is None:
            return
        if element is None:
            self.keep_as_is(obs, code_el, de, loc)
            return
        kind = element.kind
        head = kind.split(":")[0]
        if head == "bp":
            self.bp_component(obs, element, loc, group)
            return
        handler = self.map_observation if head == "obs" else KIND_HANDLERS.get(kind)
        if handler is None:
            self.refuse(loc, f"{element.de} has no mapping of kind {kind}")
            return
        if head == "obs":
            handler(obs, element, loc)
        else:
            handler(self, obs, element, loc)
        for k, _rel in enumerate(obs.findall("v3:entryRelationship", NS), 1):
            self.context.unused(
                f"{loc}/entryRelationship[{k}]", "qualifier of " + element.de + " was not mapped"
            )

    def keep_as_is(self, obs, code_el, de: str, loc: str) -> None:
        """An entry whose data element is not in ``vocab.ELEMENTS``: an Observation as sent.

        Its own code (the DE code under its code system, the DE catalogue by
        default), its typed value (``xsi:type``) and its section's category, with
        a warning. A site maps it properly with a ``cda-data-element-loinc`` code
        map override (the LOINC coding is then added and the entry counts as mapped).
        """
        raw = code_el.get("code")
        name = clean_text(code_el.get("displayName")) or raw
        stand_in = vocab.Element(de, name, "obs:kept", "ST")
        value = self.value(self.find(obs, "v3:value"), stand_in, loc)
        if value is None:
            self.context.info(f"{raw} {name} has no value", loc)
            return
        system = code_el.get("codeSystem")
        codings = [_coding(vocab.urn(system) if system else vocab.DE_SYSTEM, raw, name)]
        loinc = self.context.code_map("cda-data-element-loinc").lookup(de)
        if loinc:
            codings.insert(0, _coding(vocab.LOINC, loinc.code, loinc.display))
        else:
            self.tally["kept"] += 1
            self.context.warn(
                f"data element {raw} ({name}) is not in the adapter's catalogue: kept as is",
                loc,
            )
        self.new(
            "Observation",
            self.next_key(de),
            status="final",
            category=[self.section_category] if self.section_category else None,
            code={"coding": codings, "text": name},
            subject=_ref(self.patient),
            encounter=_ref(self.encounter) if self.encounter else None,
            effectiveDateTime=self.effective(obs),
            **{value[0]: value[1]},
        )

    # -- the document itself ----------------------------------------------------
    def security(self, resource_type: str | None = None) -> list[dict]:
        """The labels of the document's resources (of one type; ``None``: the document's own).

        confidentialityCode R (restricted, e.g. mental illness) / V -> a v3-Confidentiality
        label on every resource. A document type with a sensitivity category (the
        severe-mental-disorder follow-up, Mental Health Law Art. 4) labels its clinical
        resources, the DocumentReference and the Provenance with the category and at least
        R even when the sender wrote N; the people and organisations it names are shared
        with every other document about them and keep the document's level only (labelling
        the Patient would hide the whole record, not the follow-up).
        """
        level = self.confidentiality if self.confidentiality in ("R", "V") else None
        sensitivity = self.doc_type.sensitivity if self.doc_type is not None else None
        labelled = sensitivity is not None and resource_type not in _SHARED_RESOURCES
        if labelled:
            level = level or "R"
        out = []
        if level:
            out.append(
                _coding(
                    vocab.CONFIDENTIALITY,
                    level,
                    {"R": "restricted", "V": "very restricted"}[level],
                )
            )
        if labelled:
            out.append(dict(sensitivity))
        return out

    def meta(self, resource_type: str | None = None) -> dict:
        meta: dict[str, Any] = {
            "extension": [
                {"url": vocab.EXT_SOURCE_TIME, "valueDateTime": self.document_time},
                {
                    "url": vocab.EXT_SOURCE_VERSION,
                    "valueString": f"{self.doc_key}#{self.version or '0'}",
                },
            ],
            "tag": [_coding(self.type_system, self.type_code, self.title)],
        }
        security = self.security(resource_type)
        if security:
            meta["security"] = security
        return meta

    def type_coding(self) -> dict:
        display = self.doc_type.title if self.doc_type else self.title
        return _coding(vocab.DOC_TYPE_SYSTEM, self.type_code, display)

    def document_reference(self) -> dict:
        codec = declared_encoding(self.body)
        authors = [_ref(r) for r in (self.author, self.author_org) if r]
        doc_type = self.doc_type
        type_display = doc_type.title if doc_type else self.title
        context: dict[str, Any] = {}
        if self.encounter:
            context["encounter"] = [_ref(self.encounter)]
        if self.clinical_time:
            context["period"] = {"start": self.clinical_time}
        if self.encounter and self.encounter.get("period"):
            context["period"] = dict(self.encounter["period"])
        identifiers = []
        if self.set_id:
            identifiers.append({"system": "urn:fhirhub:cda-set-id", "value": self.set_id})
        resource = {
            "resourceType": "DocumentReference",
            "id": ids.document_reference_id(self.site_name, self.doc_id),
            "masterIdentifier": (
                {"system": vocab.urn(self.doc_root), "value": self.doc_id}
                if self.doc_root
                else {"system": "urn:ietf:rfc:3986", "value": _instance_uri(self.doc_id)}
            ),
            "identifier": identifiers,
            "status": "current",
            "type": {"coding": [self.type_coding()]},
            "subject": _ref(self.patient),
            "date": instant(self.document_time, self.tz),
            "author": authors,
            "custodian": _ref(self.custodian) if self.custodian else None,
            "relatesTo": [
                {
                    "code": "replaces",
                    "target": {
                        "reference": f"DocumentReference/{ids.document_reference_id(self.site_name, parent)}"
                    },
                }
                for parent in self.replaces
            ],
            "securityLabel": [{"coding": self.security("DocumentReference")}]
            if self.security("DocumentReference")
            else None,
            "content": [
                {
                    "attachment": {
                        "contentType": f"application/xml; charset={codec.upper()}",
                        "language": "zh-CN",
                        "data": base64.b64encode(self.body).decode("ascii"),
                        "size": len(self.body),
                        "hash": base64.b64encode(hashlib.sha1(self.body).digest()).decode("ascii"),
                        "title": self.title or type_display,
                    },
                    "format": _coding(self.type_system, self.type_code),
                }
            ],
            "context": context,
        }
        for parent in self.replaces:
            # The replaced version becomes superseded. A conditional JSON Patch on its
            # masterIdentifier: when the parent has not arrived yet it matches nothing and
            # the transaction still succeeds (see README "Ids, re-sending, replacement").
            patch = [{"op": "replace", "path": "/status", "value": "superseded"}]
            self.extra_entries.append(
                {
                    "resource": {
                        "resourceType": "Binary",
                        "contentType": "application/json-patch+json",
                        "data": base64.b64encode(
                            json.dumps(patch, separators=(",", ":")).encode()
                        ).decode("ascii"),
                    },
                    "request": {
                        "method": "PATCH",
                        "url": f"DocumentReference?identifier={vocab.urn(self.parent_root)}|{parent}",
                        # The hub skips an optional conditional patch that matches nothing.
                        "extension": [
                            {"url": "urn:fhirhub:extension:optional-entry", "valueBoolean": True}
                        ],
                    },
                }
            )
        return {k: v for k, v in resource.items() if v not in (None, [], {})}

    def provenance(self, document_reference: dict) -> dict:
        agents = []
        if self.author:
            agents.append(
                {
                    "type": {
                        "coding": [
                            _coding(
                                "http://terminology.hl7.org/CodeSystem/provenance-participant-type",
                                "author",
                            )
                        ]
                    },
                    "who": _ref(self.author),
                }
            )
        if self.custodian:
            agents.append(
                {
                    "type": {
                        "coding": [
                            _coding(
                                "http://terminology.hl7.org/CodeSystem/provenance-participant-type",
                                "custodian",
                            )
                        ]
                    },
                    "who": _ref(self.custodian),
                }
            )
        if not agents:
            agents.append({"who": _ref(self.patient)})
        return {
            "resourceType": "Provenance",
            "id": ids.extracted_id(self.site_name, "Provenance", self.doc_id, "document"),
            "target": [
                _ref(r)
                for r in self.resources
                if r["resourceType"] not in ("Organization", "Practitioner")
            ],
            "recorded": instant(self.document_time, self.tz),
            "agent": agents,
            "entity": [{"role": "source", "what": _ref(document_reference)}],
        }


# Resources a document names but does not own: other documents write them too.
_SHARED_RESOURCES = frozenset({"Patient", "Practitioner", "PractitionerRole", "Organization"})


def _section_category(code_el) -> dict | None:
    """The Observation category of a section (by its LOINC code), for entries kept as is."""
    code = code_el.get("code") if code_el is not None else None
    category = vocab.SECTION_CATEGORIES.get(code or "")
    if category is None:
        return None
    return {"coding": [_coding(vocab.OBS_CATEGORY, category, OBS_CATEGORY_DISPLAY[category])]}


def _instance_uri(root: str) -> str:
    return (
        f"urn:oid:{root}" if root[:1].isdigit() and "-" not in root else f"urn:uuid:{root.lower()}"
    )


def _telecom(value: str) -> dict:
    value = value.strip()
    if value.startswith("mailto:"):
        return {"system": "email", "value": value[7:]}
    if value.startswith("tel:"):
        value = value[4:]
    return {"system": "phone", "value": value}


def document_bundle(body: bytes, context, site: Site | None = None) -> dict:
    """Parse (hardened) and map one CDA document to a transaction Bundle.

    Raises :class:`OperationOutcomeError` (4xx) for hostile, malformed or
    unsupported documents; nothing of such a document is mapped.
    """
    from fhirhub_plugins.cda import ccda

    config = site_config(site)
    root = parse.parse(
        body,
        max_bytes=int(config.get("max_bytes", parse.MAX_BYTES)),
        max_depth=int(config.get("max_depth", parse.MAX_DEPTH)),
    )
    templates = [t.get("root") for t in root.findall("v3:templateId", NS)]
    if ccda.is_ccda(templates):
        return ccda.CcdaReader(root, body, context, site).bundle()
    return DocumentReader(root, body, context, site).bundle()
