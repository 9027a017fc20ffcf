"""HL7 v2 segments -> FHIR resources, one function per segment.

Field rules follow the HL7 V2-to-FHIR IG segment maps (``PID[Patient]``,
``PV1[Encounter]``, ``DG1[Condition]``, ``AL1[AllergyIntolerance]``,
``NK1[RelatedPerson]``, ``OBR[DiagnosticReport]``, ``OBX[Observation]``,
``IN1[Coverage]``), with the Chinese feed variations of DOMAIN 10.1: resident
ID numbers in PID-3, names in Chinese characters, GB/T 2261 sex and marital
codes, ICD-10 national clinical edition codes and local laboratory codes.

Each function reads the fields it names in ``*_FIELDS``; everything else that
is valued is reported through ``context.unused`` by :meth:`Env.done`.
"""

from __future__ import annotations

import dataclasses
import re
from typing import TYPE_CHECKING
from typing import Any

from fhirhub_plugins.hl7v2 import ids
from fhirhub_plugins.hl7v2.datatypes import coding_system
from fhirhub_plugins.hl7v2.datatypes import cwe_codings
from fhirhub_plugins.hl7v2.datatypes import cwe_to_concept
from fhirhub_plugins.hl7v2.datatypes import dt_to_date
from fhirhub_plugins.hl7v2.datatypes import ts_to_datetime
from fhirhub_plugins.hl7v2.datatypes import xad_to_address
from fhirhub_plugins.hl7v2.datatypes import xcn_display
from fhirhub_plugins.hl7v2.datatypes import xcn_to_name
from fhirhub_plugins.hl7v2.datatypes import xpn_to_name
from fhirhub_plugins.hl7v2.datatypes import xtn_to_telecom
from fhirhub_plugins.hl7v2.parse import Composite
from fhirhub_plugins.hl7v2.parse import Message
from fhirhub_plugins.hl7v2.parse import Segment
from fhirhub_plugins.hl7v2.parse import reject
from hub.plugin_api import HEALTH_CARD_SYSTEM
from hub.plugin_api import RESIDENT_ID_SYSTEM
from hub.plugin_api import MappingContext
from hub.plugin_api import OperationOutcomeError
from hub.plugin_api import codesystems as cs
from hub.plugin_api import issue
from hub.plugin_api import outcome
from hub.plugin_api import resident_id

if TYPE_CHECKING:
    from hub.plugin_api import Site

V2_0203 = "http://terminology.hl7.org/CodeSystem/v2-0203"
ICD10_CN = "urn:oid:2.16.156.10011.2.3.3.11"
ICD10_WHO = "http://hl7.org/fhir/sid/icd-10"
INVALID_RESIDENT_ID_SYSTEM = "urn:fhirhub:identifier:unverified-resident-id"
# Identifier type codes (CX.5) and authority names (CX.4) that mark a resident ID number.
RESIDENT_ID_TYPES = {"NNCHN", "ID", "NI", "CHNID", "SFZ"}
RESIDENT_ID_AUTHORITIES = {"CHN", "身份证", "居民身份证", "2.16.156.10011.1.3"}
MRN_TYPES = {"MR", "PI", "PT", "MRN", ""}
_ICD_SHAPE = re.compile(r"^([A-Z]\d{2})(?:\.(\w+))?$")


@dataclasses.dataclass
class Env:
    """What segment functions share while mapping one message."""

    msg: Message
    site: Site
    context: MappingContext
    entries: dict[str, dict] = dataclasses.field(default_factory=dict)
    patient_ref: str | None = None
    patient_key: str | None = None
    encounter_ref: str | None = None

    def __post_init__(self) -> None:
        self.site_name: str = self.site.name
        self.tz: str = getattr(self.site, "timezone", None) or "Asia/Shanghai"
        self.config: dict = self.site.plugin_config("hl7v2") or {}
        systems = getattr(self.site, "identifier_systems", None) or {}
        self.systems = systems
        self.mrn_system: str = systems.get("mrn") or f"urn:fhirhub:site:{self.site_name}:mrn"
        self.visit_system: str = systems.get("visit") or f"urn:fhirhub:site:{self.site_name}:visit"
        self.lab_system: str = systems.get("lab") or f"urn:fhirhub:site:{self.site_name}:lab"
        # The site's local code system: CE/CWE codings marked L/99zzz, or naming no known system.
        self.code_system: str = (
            systems.get("codesystem") or f"urn:fhirhub:site:{self.site_name}:codesystem"
        )
        self.coding_names: dict[str, str] = dict(self.config.get("coding_systems") or {})
        self.name_style: str = getattr(self.site, "name_style", None) or "auto"
        org = getattr(self.site, "organization", None) or {}
        self.org_ref: str | None = f"Organization/{org['id']}" if org.get("id") else None

    def add(self, resource: dict) -> str:
        """Add (or replace) a resource in the bundle; returns ``Type/id``."""
        ref = f"{resource['resourceType']}/{resource['id']}"
        self.entries[ref] = resource
        return ref

    def concept(self, rep: Composite | None) -> dict | None:
        """CWE/CE -> CodeableConcept; local codings get the site's code system."""
        return cwe_to_concept(rep, self.code_system, self.coding_names)

    def id_for(self, resource_type: str, *key: str | None) -> str:
        return ids.resource_id(self.site_name, resource_type, *key)

    def datetime(self, seg: Segment, field: int, component: int = 1) -> str | None:
        return ts_to_datetime(seg.get(field, component), self.tz, seg.loc(field))

    def done(self, seg: Segment, consumed: set[int]) -> None:
        """Report the valued fields of ``seg`` that no rule consumed."""
        for n in seg.valued():
            if n not in consumed:
                self.context.unused(
                    seg.loc(n), f"{seg.loc(n)} (segment #{seg.position}) was not mapped"
                )


def _clean(resource: dict) -> dict:
    """Drop empty values so resources carry only what the message said."""
    return {k: v for k, v in resource.items() if v not in (None, [], {}, "")}


# ---------------------------------------------------------------------------
# PID -> Patient
# ---------------------------------------------------------------------------

PID_FIELDS = {1, 3, 5, 7, 8, 11, 13, 14, 16, 29, 30}


def _authority(rep: Composite) -> tuple[str | None, str | None]:
    """CX.4 assigning authority: (namespace id, universal id)."""
    return rep.get(4, 1), rep.get(4, 2)


def is_resident_id(rep: Composite) -> bool:
    """True when a CX names the resident ID number (CX.5 type or CX.4 authority)."""
    id_type = (rep.get(5) or "").upper()  # CX.5 identifier type code
    namespace, universal = _authority(rep)  # CX.4 assigning authority
    if id_type in RESIDENT_ID_TYPES:
        return True
    # An authority alone decides only when no other type is given (CHN also issues passports).
    return not id_type and (
        (namespace or "") in RESIDENT_ID_AUTHORITIES or (universal or "") in RESIDENT_ID_AUTHORITIES
    )


def cx_to_identifier(rep: Composite, env: Env) -> dict[str, Any] | None:
    """CX -> Identifier: resident ID numbers checked, MRNs scoped by the site's authority."""
    value = rep.get(1)  # CX.1 id number
    if not value:
        return None
    if is_resident_id(rep):
        return _resident_identifier(value, rep.location, env)
    id_type = (rep.get(5) or "").upper()  # CX.5 identifier type code
    namespace, universal = _authority(rep)
    authorities = env.config.get("assigning_authorities") or {}
    if namespace and namespace in authorities:
        system = authorities[namespace]
    elif id_type in MRN_TYPES:
        system = env.mrn_system
    elif id_type == "HC":
        system = env.systems.get("health_card", HEALTH_CARD_SYSTEM)
    elif universal and re.fullmatch(r"[0-2](\.\d+)+", universal):
        system = f"urn:oid:{universal}"
    else:
        system = (
            env.systems.get(id_type.lower())
            or f"urn:fhirhub:site:{env.site_name}:{id_type.lower()}"
        )
    ident: dict[str, Any] = {}
    if id_type in MRN_TYPES:
        ident["use"] = "usual"
    ident["type"] = {"coding": [{"system": V2_0203, "code": id_type or "MR"}]}
    ident["system"] = system
    ident["value"] = value
    return ident


def _resident_identifier(value: str, location: str, env: Env) -> dict[str, Any]:
    """The resident ID number, normalised (15 -> 18 digits, ``x`` -> ``X``) or flagged."""
    try:
        rid = resident_id.parse(value)
    except resident_id.InvalidResidentId as exc:
        text = f"{location}: {exc}; kept as an unverified identifier and never used for linking"
        if env.config.get("invalid_resident_id", "warn") == "error":
            raise OperationOutcomeError(
                outcome(issue("error", "value", str(exc), location)), 422
            ) from None
        env.context.warn(text, location, code="value")
        return {
            "use": "secondary",
            "type": {"text": "居民身份证号（未通过校验）"},
            "system": INVALID_RESIDENT_ID_SYSTEM,
            "value": value,
        }
    if rid.converted_from_15:
        env.context.info(
            f"{location}: 15-digit resident ID number converted to 18 digits", location
        )
    return {
        "use": "official",
        "type": {"coding": [{"system": V2_0203, "code": "NNCHN"}], "text": "居民身份证号"},
        "system": RESIDENT_ID_SYSTEM,
        "value": rid.value,
    }


def patient_identity(pid: Segment, env: Env) -> tuple[list[dict], str]:
    """PID-3 identifiers and the key the Patient id derives from."""
    identifiers = []
    for rep in pid.reps(3):  # PID-3 patient identifier list
        ident = cx_to_identifier(rep, env)
        if ident:
            identifiers.append(ident)
    mrn = next((i for i in identifiers if i.get("use") == "usual"), None)
    rid = next((i for i in identifiers if i["system"] == RESIDENT_ID_SYSTEM), None)
    key = ids.patient_key(
        (mrn["system"], mrn["value"]) if mrn else None,
        rid["value"] if rid else None,
        f"{env.msg.control_id}:{pid.position}",
    )
    return identifiers, key


def _gender(pid: Segment, env: Env) -> str | None:
    code = pid.get(8)  # PID-8 administrative sex
    if not code:
        return None
    style = env.config.get("sex_codes", "auto")  # hl7 | gb | auto
    gb = style == "gb" or (style == "auto" and code.isdigit())
    found = env.context.translate(
        "hl7v2-gb-sex" if gb else "hl7v2-administrative-sex", code, "PID-8"
    )
    return found.code if found else None


def _marital(pid: Segment, env: Env) -> dict | None:
    code = pid.get(16)  # PID-16 marital status
    if not code:
        return None
    style = env.config.get("marital_codes", "auto")  # hl7 | gb | auto
    gb = style == "gb" or (style == "auto" and code.isdigit())
    map_id = "hl7v2-gb-marital-status" if gb else "hl7v2-marital-status"
    cmap = env.context.code_map(map_id)
    codings = [{"system": cmap.source, "code": code}]
    display = pid.get(16, 2)
    if display:
        codings[0]["display"] = display
    found = env.context.translate(map_id, code, "PID-16")
    if found and found.system != cmap.source:
        codings.append({"system": found.system, "code": found.code})
    return {"coding": codings}


def pid_to_patient(pid: Segment, env: Env) -> dict:
    """PID -> Patient (``PID[Patient]``); sets ``env.patient_ref``."""
    identifiers, key = patient_identity(pid, env)
    patient: dict[str, Any] = {
        "resourceType": "Patient",
        "id": env.id_for("Patient", key),
        "identifier": identifiers,
        "active": True,
        "name": [n for n in (xpn_to_name(r, env.name_style) for r in pid.reps(5)) if n],  # PID-5
        "telecom": [
            t
            for t in [xtn_to_telecom(r) for r in pid.reps(13)]  # PID-13 home phone
            + [
                dict(t, use=t.get("use", "work")) if t else None
                for t in (xtn_to_telecom(r) for r in pid.reps(14))  # PID-14 business phone
            ]
            if t
        ],
        "gender": _gender(pid, env),
        "birthDate": dt_to_date(pid.get(7), "PID-7"),  # PID-7 date/time of birth
        "address": [a for a in (xad_to_address(r) for r in pid.reps(11)) if a],  # PID-11
        "maritalStatus": _marital(pid, env),
        "managingOrganization": {"reference": env.org_ref} if env.org_ref else None,
    }
    death_time = env.datetime(pid, 29)  # PID-29 patient death date and time
    death_flag = pid.get(30)  # PID-30 patient death indicator
    if death_time:
        patient["deceasedDateTime"] = death_time
    elif death_flag in ("Y", "N"):
        patient["deceasedBoolean"] = death_flag == "Y"
    patient = _clean(patient)
    _check_consistency(patient, env)
    env.patient_ref = env.add(patient)
    env.patient_key = key
    env.done(pid, PID_FIELDS)
    return patient


def _check_consistency(patient: dict, env: Env) -> None:
    """Warn when the resident ID number disagrees with PID-7 or PID-8."""
    for ident in patient.get("identifier", []):
        if ident["system"] == RESIDENT_ID_SYSTEM:
            rid = resident_id.parse(ident["value"])
            for problem in resident_id.consistency_issues(
                rid, patient.get("birthDate"), patient.get("gender")
            ):
                env.context.warn(problem, "PID-3", code="business-rule")


def pd1_to_patient(pd1: Segment, patient: dict, env: Env) -> None:
    """PD1 -> Patient.generalPractitioner (PD1-4 primary care provider, display only)."""
    gps = [xcn_display(r) for r in pd1.reps(4)]  # PD1-4 patient primary care provider
    gps = [{"display": g} for g in gps if g]
    if gps:
        patient["generalPractitioner"] = gps
    env.done(pd1, {1, 4})


# ---------------------------------------------------------------------------
# NK1 -> RelatedPerson
# ---------------------------------------------------------------------------

NK1_FIELDS = {1, 2, 3, 4, 5, 6}


def nk1_to_related_person(nk1: Segment, env: Env) -> dict | None:
    """NK1 -> RelatedPerson (``NK1[RelatedPerson]``), linked to the patient."""
    names = [n for n in (xpn_to_name(r, env.name_style) for r in nk1.reps(2)) if n]  # NK1-2 name
    rel = nk1.first(3)  # NK1-3 relationship
    if not names and rel is None:
        env.done(nk1, set())
        return None
    relationship = None
    if rel is not None:
        found = env.context.translate("hl7v2-relationship", rel.get(1), "NK1-3")
        codings = [
            {"system": env.context.code_map("hl7v2-relationship").source, "code": rel.get(1)}
        ]
        if found and found.mapped:
            codings.append(
                _clean({"system": found.system, "code": found.code, "display": found.display})
            )
        relationship = [_clean({"coding": codings, "text": rel.get(2)})]
    key_name = (names[0].get("text") or names[0].get("family", "")) if names else ""
    person = _clean(
        {
            "resourceType": "RelatedPerson",
            "id": env.id_for(
                "RelatedPerson", env.patient_key, key_name, rel.get(1) if rel else None
            ),
            "patient": {"reference": env.patient_ref},
            "relationship": relationship,
            "name": names,
            "address": [a for a in (xad_to_address(r) for r in nk1.reps(4)) if a],  # NK1-4
            "telecom": [
                t
                for t in [xtn_to_telecom(r) for r in nk1.reps(5)]  # NK1-5 phone number
                + [xtn_to_telecom(r) for r in nk1.reps(6)]  # NK1-6 business phone
                if t
            ],
        }
    )
    env.add(person)
    env.done(nk1, NK1_FIELDS)
    return person


# ---------------------------------------------------------------------------
# PV1 / PV2 -> Encounter
# ---------------------------------------------------------------------------

PV1_FIELDS = {1, 2, 3, 6, 7, 8, 10, 14, 17, 19, 36, 44, 45}
# Encounter.status by trigger event (A03 and stays with PV1-45 are finished).
_STATUS = {
    "A01": "in-progress",
    "A02": "in-progress",
    "A03": "finished",
    "A04": "arrived",
    "A05": "planned",
    "A06": "in-progress",
    "A07": "in-progress",
    "A08": "in-progress",
    "A11": "cancelled",
    "A13": "in-progress",
}


def _location(pl: Composite | None) -> dict | None:
    """PL -> a location display: point of care, room, bed (PL.1-3)."""
    if pl is None:
        return None
    parts = [pl.get(i) for i in (1, 2, 3)]
    text = " ".join(p for p in parts if p)
    return {"location": {"display": text}} if text else None


def _practitioner(rep: Composite, env: Env, role: str, location: str) -> dict | None:
    """XCN -> a Practitioner resource (id from XCN.1 within the site) and a participant."""
    code = rep.get(1)  # XCN.1 id number
    display = xcn_display(rep)
    if not code and not display:
        return None
    pid = env.id_for("Practitioner", code or display)
    name = xcn_to_name(rep, env.name_style)
    practitioner = _clean(
        {
            "resourceType": "Practitioner",
            "id": pid,
            "identifier": [
                {
                    "system": env.systems.get("practitioner")
                    or f"urn:fhirhub:site:{env.site_name}:practitioner",
                    "value": code,
                }
            ]
            if code
            else None,
            "name": [name] if name else [{"text": display}],
        }
    )
    env.add(practitioner)
    return {
        "type": [
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType",
                        "code": role,
                    }
                ]
            }
        ],
        "individual": {"reference": f"Practitioner/{pid}", "display": display},
    }


def _followup_type(pv1: Segment, env: Env) -> list[dict] | None:
    """Encounter.type of a visit at a follow-up clinic: its programme (PV1-10 through the
    site's ``hl7v2-followup-programme`` map); ``None`` for any other visit."""
    found = env.context.translate("hl7v2-followup-programme", pv1.get(10), "PV1-10")
    if not found or not found.mapped:
        return None
    coding = _clean({"system": found.system, "code": found.code, "display": found.display})
    return [{"coding": [coding], "text": pv1.get(10)}]


# Where a round takes place (profile veteran-round): at the veteran's home for a home round,
# at a distance otherwise. PV1-2 says only "outpatient" for all of them, so the kind decides.
_ROUND_CLASS = {
    cs.HOME_ROUND: ("HH", "home health"),
    cs.REMOTE_ROUND: ("VR", "virtual"),
    cs.EXPERT_CONSULTATION: ("VR", "virtual"),
}


def _round(pv1: Segment, env: Env) -> tuple[list[dict], dict] | None:
    """Encounter.type and class of a round or consultation of the veterans programmes (PV1-10
    through the site's ``hl7v2-round-kind`` map: the HIS books rounds under their own
    services, e.g. 远程巡诊); ``None`` for any other visit."""
    found = env.context.translate("hl7v2-round-kind", pv1.get(10), "PV1-10")
    if not found or not found.mapped or found.code not in _ROUND_CLASS:
        return None
    coding = _clean({"system": found.system, "code": found.code, "display": found.display})
    code, display = _ROUND_CLASS[found.code]
    klass = {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": code}
    return [{"coding": [coding], "text": pv1.get(10)}], klass | {"display": display}


def pv1_to_encounter(pv1: Segment, env: Env, event: str) -> dict:
    """PV1 -> Encounter (``PV1[Encounter]``); sets ``env.encounter_ref``."""
    visit = pv1.first(19)  # PV1-19 visit number
    visit_number = visit.get(1) if visit else None
    key = ids.visit_key(env.visit_system, visit_number, f"{env.msg.control_id}:{pv1.position}")
    klass_code = pv1.get(2)  # PV1-2 patient class
    found = env.context.translate("hl7v2-patient-class", klass_code, "PV1-2")
    if found:
        klass = _clean({"system": found.system, "code": found.code, "display": found.display})
    elif klass_code:
        klass = {"system": "http://terminology.hl7.org/CodeSystem/v2-0004", "code": klass_code}
    else:
        klass = {"system": "http://terminology.hl7.org/CodeSystem/v3-NullFlavor", "code": "UNK"}
    kind = _round(pv1, env)
    if kind:
        klass = kind[1]
    start = env.datetime(pv1, 44)  # PV1-44 admit date/time
    end = env.datetime(pv1, 45)  # PV1-45 discharge date/time
    status = _STATUS.get(event, "in-progress")
    if end and status in ("in-progress", "arrived"):
        status = "finished"
    if event == "A13":
        end = None  # cancel discharge: the stay is open again
    locations = []
    current = _location(pv1.first(3))  # PV1-3 assigned patient location
    if current:
        current["status"] = "active" if status != "finished" else "completed"
        locations.append(current)
    prior = _location(pv1.first(6))  # PV1-6 prior patient location
    if prior and event == "A02":
        prior["status"] = "completed"
        locations.append(prior)
    participants = []
    for field, role in ((7, "ATND"), (8, "REF"), (17, "ADM")):  # PV1-7/8/17 doctors
        for rep in pv1.reps(field):
            part = _practitioner(rep, env, role, pv1.loc(field))
            if part:
                participants.append(part)
    hospitalization: dict[str, Any] = {}
    admit_source = pv1.get(14)  # PV1-14 admit source
    if admit_source:
        hospitalization["admitSource"] = {
            "coding": [
                {"system": "http://terminology.hl7.org/CodeSystem/v2-0023", "code": admit_source}
            ]
        }
    disposition = pv1.get(36)  # PV1-36 discharge disposition
    expired = False
    if disposition:
        found = env.context.translate("hl7v2-discharge-disposition", disposition, "PV1-36")
        coding = {"system": "http://terminology.hl7.org/CodeSystem/v2-0112", "code": disposition}
        codings = [coding]
        if found and found.mapped:
            codings.append(
                _clean({"system": found.system, "code": found.code, "display": found.display})
            )
            expired = found.code == "exp"
        hospitalization["dischargeDisposition"] = {"coding": codings}
    encounter = _clean(
        {
            "resourceType": "Encounter",
            "id": env.id_for("Encounter", key),
            "identifier": [{"use": "official", "system": env.visit_system, "value": visit_number}]
            if visit_number
            else None,
            "status": status,
            "class": klass,
            "type": kind[0] if kind else _followup_type(pv1, env),
            "serviceType": {"text": pv1.get(10)}
            if pv1.get(10)
            else None,  # PV1-10 hospital service
            "subject": {"reference": env.patient_ref} if env.patient_ref else None,
            "participant": participants,
            "period": _clean({"start": start, "end": end}),
            "hospitalization": hospitalization,
            "location": locations,
            "serviceProvider": {"reference": env.org_ref} if env.org_ref else None,
        }
    )
    env.encounter_ref = env.add(encounter)
    if expired and env.patient_ref:
        # Death on discharge: PV1-36 says expired; PV1-45 is the best time we have.
        patient = env.entries[env.patient_ref]
        if "deceasedDateTime" not in patient:
            patient.pop("deceasedBoolean", None)
            if end:
                patient["deceasedDateTime"] = end
            else:
                patient["deceasedBoolean"] = True
    env.done(pv1, PV1_FIELDS)
    return encounter


def pv2_to_encounter(pv2: Segment, encounter: dict, env: Env) -> None:
    """PV2 -> Encounter.reasonCode (PV2-3 admit reason)."""
    reason = env.concept(pv2.first(3))  # PV2-3 admit reason
    if reason:
        encounter["reasonCode"] = [reason]
    env.done(pv2, {3})


# ---------------------------------------------------------------------------
# DG1 -> Condition
# ---------------------------------------------------------------------------

DG1_FIELDS = {1, 3, 4, 5, 6, 19}


def diagnosis_codings(rep: Composite, env: Env) -> list[dict]:
    """DG1-3 codings; an ICD-10 clinical-edition code keeps its form and gains its WHO category.

    A code of ICD-10 shape without a known system is read as ICD-10; any other
    code without one is the site's local code.
    """
    codings = cwe_codings(rep, names=env.coding_names)
    out = []
    for coding in codings:
        code = coding["code"]
        system = coding.get("system")
        m = _ICD_SHAPE.match(code)
        if m and system in (None, ICD10_WHO, ICD10_CN):
            extension = m.group(2) or ""
            # The national clinical edition uses x, 3-digit subcodes and extension codes.
            clinical = bool(re.search(r"[a-z]", extension)) or len(extension) > 1
            if clinical or system == ICD10_CN:
                out.append(dict(coding, system=ICD10_CN))
                who = m.group(1) + (f".{extension[0]}" if extension[:1].isdigit() else "")
                out.append({"system": ICD10_WHO, "code": who})
                continue
            coding = dict(coding, system=ICD10_WHO)
        elif system is None:
            coding = {"system": env.code_system, **coding}
        out.append(coding)
    return out


def dg1_to_condition(dg1: Segment, env: Env) -> dict | None:
    """DG1 -> Condition (``DG1[Condition]``) as an encounter diagnosis."""
    rep = dg1.first(3)  # DG1-3 diagnosis code
    text = dg1.get(4)  # DG1-4 diagnosis description
    if rep is None and not text:
        env.done(dg1, set())
        return None
    codings = diagnosis_codings(rep, env) if rep else []
    code = _clean({"coding": codings, "text": (rep.get(2) if rep else None) or text})
    dtype = dg1.get(6)  # DG1-6 diagnosis type (A admitting, W working, F final)
    category = [
        {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/condition-category",
                    "code": "encounter-diagnosis",
                }
            ]
        }
    ]
    if dtype:
        category.append(
            {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0052", "code": dtype}]}
        )
    key_code = codings[0]["code"] if codings else text
    condition = _clean(
        {
            "resourceType": "Condition",
            "id": env.id_for("Condition", env.encounter_ref or env.patient_key, key_code),
            "clinicalStatus": {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                        "code": "active",
                    }
                ]
            },
            "verificationStatus": {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/condition-ver-status",
                        "code": "confirmed" if dtype == "F" else "provisional",
                    }
                ]
            },
            "category": category,
            "code": code,
            "subject": {"reference": env.patient_ref},
            "encounter": {"reference": env.encounter_ref} if env.encounter_ref else None,
            "onsetDateTime": env.datetime(dg1, 5),  # DG1-5 diagnosis date/time
            "recordedDate": env.datetime(dg1, 19),  # DG1-19 attestation date/time
        }
    )
    env.add(condition)
    env.done(dg1, DG1_FIELDS)
    return condition


# ---------------------------------------------------------------------------
# AL1 -> AllergyIntolerance
# ---------------------------------------------------------------------------

AL1_FIELDS = {1, 2, 3, 4, 5, 6}


def al1_to_allergy_intolerance(al1: Segment, env: Env) -> dict | None:
    """AL1 -> AllergyIntolerance (``AL1[AllergyIntolerance]``)."""
    code = env.concept(al1.first(3))  # AL1-3 allergen code/mnemonic/description
    if code is None:
        env.done(al1, set())
        return None
    category = env.context.translate(
        "hl7v2-allergy-category", al1.get(2), "AL1-2"
    )  # AL1-2 allergen type
    severity = env.context.translate(
        "hl7v2-allergy-severity", al1.get(4), "AL1-4"
    )  # AL1-4 severity
    reactions = [r.text(1) for r in al1.reps(5)]  # AL1-5 allergy reaction
    reaction = None
    if any(reactions) or severity:
        reaction = [
            _clean(
                {
                    "manifestation": [{"text": r} for r in reactions if r] or [{"text": "unknown"}],
                    "severity": severity.code if severity else None,
                }
            )
        ]
    key = (code.get("coding") or [{}])[0].get("code") or code.get("text")
    allergy = _clean(
        {
            "resourceType": "AllergyIntolerance",
            "id": env.id_for("AllergyIntolerance", env.patient_key, key),
            "clinicalStatus": {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical",
                        "code": "active",
                    }
                ]
            },
            "category": [category.code] if category else None,
            "code": code,
            "patient": {"reference": env.patient_ref},
            "onsetDateTime": dt_to_date(al1.get(6), "AL1-6"),  # AL1-6 identification date
            "reaction": reaction,
        }
    )
    env.add(allergy)
    env.done(al1, AL1_FIELDS)
    return allergy


# ---------------------------------------------------------------------------
# IN1 -> Coverage
# ---------------------------------------------------------------------------

IN1_FIELDS = {1, 2, 3, 4, 12, 13, 15, 36}


def in1_to_coverage(in1: Segment, env: Env) -> dict | None:
    """IN1 -> Coverage (``IN1[Coverage]``); the insurer stays a display on ``payor``."""
    plan = in1.first(2)  # IN1-2 health plan id
    company = in1.get(4)  # IN1-4 insurance company name
    company_id = in1.get(3)  # IN1-3 insurance company id
    policy = in1.get(36)  # IN1-36 policy number
    if not (plan or company or company_id or policy):
        env.done(in1, set())
        return None
    plan_type = in1.get(15)  # IN1-15 plan type
    coverage = _clean(
        {
            "resourceType": "Coverage",
            "id": env.id_for(
                "Coverage", env.patient_key, plan.get(1) if plan else None, policy, company_id
            ),
            "identifier": [{"value": policy}] if policy else None,
            "status": "active",
            "type": env.concept(plan) or ({"text": plan_type} if plan_type else None),
            "beneficiary": {"reference": env.patient_ref},
            "subscriberId": policy,
            "period": _clean(
                {
                    "start": dt_to_date(in1.get(12), "IN1-12"),
                    "end": dt_to_date(in1.get(13), "IN1-13"),
                }
            ),
            "payor": [_clean({"display": company or company_id})],
        }
    )
    env.add(coverage)
    env.done(in1, IN1_FIELDS)
    return coverage


# ---------------------------------------------------------------------------
# OBR -> DiagnosticReport, OBX -> Observation
# ---------------------------------------------------------------------------

OBR_FIELDS = {1, 2, 3, 4, 7, 22, 24, 25}
OBX_FIELDS = {1, 2, 3, 4, 5, 6, 7, 8, 11, 14}
LAB_CATEGORY = {
    "coding": [
        {
            "system": "http://terminology.hl7.org/CodeSystem/observation-category",
            "code": "laboratory",
        }
    ]
}


def obr_to_diagnostic_report(obr: Segment, env: Env) -> dict:
    """OBR -> DiagnosticReport (``OBR[DiagnosticReport]``); results are added by the caller."""
    placer = obr.get(2)  # OBR-2 placer order number
    filler = obr.get(3)  # OBR-3 filler order number
    key = ids.order_key(filler, placer, f"{env.msg.control_id}:{obr.position}")
    code = _lab_code(obr.first(4), env, "OBR-4") or {
        "text": "unknown"
    }  # OBR-4 universal service id
    status_code = obr.get(25)  # OBR-25 result status
    status = env.context.translate("hl7v2-report-status", status_code, "OBR-25")
    section = obr.get(24)  # OBR-24 diagnostic service section id
    category = [
        {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/v2-0074",
                    "code": section or "LAB",
                }
            ]
        }
    ]
    identifiers = []
    if placer:
        identifiers.append(
            {
                "type": {"coding": [{"system": V2_0203, "code": "PLAC"}]},
                "system": env.systems.get("order") or f"urn:fhirhub:site:{env.site_name}:placer",
                "value": placer,
            }
        )
    if filler:
        identifiers.append(
            {
                "type": {"coding": [{"system": V2_0203, "code": "FILL"}]},
                "system": env.systems.get("order") or f"urn:fhirhub:site:{env.site_name}:filler",
                "value": filler,
            }
        )
    report = _clean(
        {
            "resourceType": "DiagnosticReport",
            "id": env.id_for("DiagnosticReport", key),
            "identifier": identifiers,
            "status": status.code if status else "unknown",
            "category": category,
            "code": code,
            "subject": {"reference": env.patient_ref} if env.patient_ref else None,
            "encounter": {"reference": env.encounter_ref} if env.encounter_ref else None,
            "effectiveDateTime": env.datetime(obr, 7),  # OBR-7 observation date/time
            "issued": _instant(env.datetime(obr, 22)),  # OBR-22 results rpt/status chng
            "performer": [{"reference": env.org_ref}] if env.org_ref else None,
            "result": [],
        }
    )
    report["_key"] = key
    env.add(report)
    env.done(obr, OBR_FIELDS)
    return report


def _instant(value: str | None) -> str | None:
    """A dateTime widened to an instant (FHIR ``instant`` needs seconds and an offset)."""
    if not value or "T" in value:
        return value
    return None


def _lab_code(rep: Composite | None, env: Env, location: str) -> dict | None:
    """OBX-3 / OBR-4: LOINC kept, local codes kept under the site's lab system and
    translated to LOINC through ``hl7v2-local-lab`` (with the site's overrides)."""
    if rep is None:
        return None
    codings = cwe_codings(rep, env.lab_system, env.coding_names)
    has_loinc = any(c.get("system") == "http://loinc.org" for c in codings)
    if not has_loinc:
        for coding in list(codings):
            if coding.get("system") == env.lab_system:
                found = env.context.translate(
                    "hl7v2-local-lab", coding["code"], location, system=env.lab_system
                )
                if found and found.mapped:
                    codings.insert(
                        0,
                        _clean(
                            {"system": found.system, "code": found.code, "display": found.display}
                        ),
                    )
                break
    text = rep.get(9) or rep.get(2) or rep.get(5)
    return _clean({"coding": codings, "text": text})


_NUMBER = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)$")
_RANGE = re.compile(r"^\s*([+-]?\d*\.?\d+)\s*[-~－～]\s*([+-]?\d*\.?\d+)\s*$")
_BOUND = re.compile(r"^\s*(<=|>=|<|>|≤|≥)\s*([+-]?\d*\.?\d+)\s*$")


def _quantity(value: str, unit: Composite | None, comparator: str | None = None) -> dict:
    out: dict[str, Any] = {"value": _num(value)}
    if comparator:
        out["comparator"] = {"≤": "<=", "≥": ">="}.get(comparator, comparator)
    if unit is not None:
        code = unit.get(1)  # CWE.1 unit identifier
        text = unit.get(2) or code
        out["unit"] = text
        if (
            coding_system(unit.get(3)) == "http://unitsofmeasure.org"
            or (unit.get(3) or "").upper() == "ISO+"
        ):
            out["system"] = "http://unitsofmeasure.org"
            out["code"] = code
    return out


def _num(text: str) -> int | float:
    number = float(text)
    return int(number) if number.is_integer() and "." not in text else number


def _value(obx: Segment, env: Env) -> dict[str, Any]:
    """OBX-5 by OBX-2 value type -> value[x]."""
    vtype = (obx.get(2) or "ST").upper()  # OBX-2 value type
    reps = obx.reps(5)  # OBX-5 observation value
    if not reps:
        return {}
    unit = obx.first(6)  # OBX-6 units
    first = reps[0]
    if vtype == "NM":
        text = (first.get(1) or "").strip()
        if _NUMBER.match(text):
            return {"valueQuantity": _quantity(text, unit)}
        bound = _BOUND.match(text)
        if bound:
            return {"valueQuantity": _quantity(bound.group(2), unit, bound.group(1))}
        env.context.warn(
            f"OBX-5 {text!r} is not a number although OBX-2 is NM; kept as text",
            "OBX-5",
            code="value",
        )
        return {"valueString": text}
    if vtype == "SN":
        # SN: comparator ^ num1 ^ separator/suffix ^ num2
        comparator, num1, sep, num2 = first.get(1), first.get(2), first.get(3), first.get(4)
        if num1 and num2 and sep in ("-", "~"):
            return {"valueRange": {"low": _quantity(num1, unit), "high": _quantity(num2, unit)}}
        if num1 and num2 and sep in (":", "/"):
            return {
                "valueRatio": {
                    "numerator": {"value": _num(num1)},
                    "denominator": {"value": _num(num2)},
                }
            }
        whole = _BOUND.match(comparator or "")  # "<0.10" sent whole in SN.1
        if whole and not num1:
            return {"valueQuantity": _quantity(whole.group(2), unit, whole.group(1))}
        if num1 and _NUMBER.match(num1):
            return {
                "valueQuantity": _quantity(
                    num1, unit, comparator if comparator in ("<", ">", "<=", ">=") else None
                )
            }
        raise reject(
            f"OBX-5 {first.raw_component(1)!r} is not a structured numeric value",
            obx.loc(5),
            code="value",
        )
    if vtype in ("CWE", "CE", "CNE", "CF"):
        concept = env.concept(first)
        return {"valueCodeableConcept": concept} if concept else {}
    if vtype in ("DT", "TS", "DTM"):
        return {"valueDateTime": ts_to_datetime(first.get(1), env.tz, obx.loc(5))}
    if vtype in ("TX", "FT", "ST"):
        text = "\n".join(r.text(1) or "" for r in reps) if vtype != "ST" else first.text(1)
        return {"valueString": text}
    env.context.unused(obx.loc(5), f"OBX-5 of value type {vtype} is not mapped")
    return {}


def _reference_range(obx: Segment, unit: Composite | None) -> list[dict] | None:
    text = obx.get(7)  # OBX-7 references range
    if not text:
        return None
    m = _RANGE.match(text)
    if m:
        return [
            {"low": _quantity(m.group(1), unit), "high": _quantity(m.group(2), unit), "text": text}
        ]
    bound = _BOUND.match(text)
    if bound and bound.group(1) in ("<", "<=", "≤"):
        return [{"high": _quantity(bound.group(2), unit), "text": text}]
    if bound:
        return [{"low": _quantity(bound.group(2), unit), "text": text}]
    return [{"text": text}]


def obx_to_observation(
    obx: Segment,
    env: Env,
    report: dict | None,
    effective: str | None,
    category: dict | None = LAB_CATEGORY,
) -> dict | None:
    """OBX -> Observation (``OBX[Observation]``), a result of ``report`` when given."""
    code = _lab_code(obx.first(3), env, "OBX-3")  # OBX-3 observation identifier
    if code is None:
        env.context.warn(
            f"OBX #{obx.position} has no OBX-3 observation identifier; skipped", obx.loc(3)
        )
        return None
    sub_id = obx.get(4)  # OBX-4 observation sub-id
    code_key = (code.get("coding") or [{}])[-1].get("code") or code.get("text")
    parent = report["_key"] if report else f"{env.msg.control_id}"
    key = [parent, code_key, sub_id]
    oid = env.id_for("Observation", *key)
    if f"Observation/{oid}" in env.entries:
        # The same test twice in one order: the set id (OBX-1) tells them apart.
        oid = env.id_for("Observation", *key, obx.get(1) or str(obx.position))
    status_code = obx.get(11)  # OBX-11 observation result status
    status = env.context.translate("hl7v2-observation-status", status_code, "OBX-11")
    if not status_code:
        env.context.warn("OBX-11 result status is missing; status set to unknown", obx.loc(11))
    unit = obx.first(6)
    interpretation = []
    for rep in obx.reps(8):  # OBX-8 interpretation codes
        found = env.context.translate("hl7v2-abnormal-flags", rep.get(1), obx.loc(8))
        if found:
            interpretation.append(
                {
                    "coding": [
                        _clean(
                            {"system": found.system, "code": found.code, "display": found.display}
                        )
                    ]
                }
            )
    observation = _clean(
        {
            "resourceType": "Observation",
            "id": oid,
            "status": status.code if status else "unknown",
            "category": [category] if category else None,
            "code": code,
            "subject": {"reference": env.patient_ref} if env.patient_ref else None,
            "encounter": {"reference": env.encounter_ref} if env.encounter_ref else None,
            "effectiveDateTime": env.datetime(obx, 14)
            or effective,  # OBX-14 date/time of the observation
            **_value(obx, env),
            "interpretation": interpretation,
            "referenceRange": _reference_range(obx, unit),
        }
    )
    ref = env.add(observation)
    if report is not None:
        report.setdefault("result", []).append({"reference": ref})
    env.done(obx, OBX_FIELDS)
    return observation
