"""Message structures -> FHIR transaction Bundles.

:data:`MESSAGES` dispatches on ``MSH-9.1_MSH-9.2`` (``ADT_A01``); each
function walks the segments it knows, calls the segment functions of
:mod:`to_fhir` and reports every other segment as unused. The Bundle's
entries are ``PUT Type/id`` with deterministic ids, so re-delivery updates.
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from typing import Any

from fhirhub_plugins.hl7v2 import ids
from fhirhub_plugins.hl7v2 import to_fhir
from fhirhub_plugins.hl7v2.datatypes import ts_to_datetime
from fhirhub_plugins.hl7v2.parse import Message
from fhirhub_plugins.hl7v2.parse import Segment
from fhirhub_plugins.hl7v2.parse import reject
from fhirhub_plugins.hl7v2.to_fhir import Env
from hub.plugin_api import MappingContext

if TYPE_CHECKING:
    from hub.plugin_api import Site

# Segments a message structure carries that need no mapping of their own.
_ENVELOPE = {"MSH", "EVN", "SFT", "UAC"}


def _provenance(env: Env, activity: dict, targets: list[str]) -> dict:
    """A Provenance for the message: MSH-7 recorded, the site's organization the agent."""
    msh = env.msg.msh
    evn = env.msg.segment("EVN")
    recorded = env.datetime(msh, 7) or (env.datetime(evn, 2) if evn else None)  # MSH-7 / EVN-2
    if not recorded:
        raise reject("MSH-7 date/time of message is required", "MSH-7", code="required")
    if "T" not in recorded:
        # A date alone: Provenance.recorded is an instant, so take midnight in the site zone.
        recorded = ts_to_datetime((msh.get(7) or "")[:8] + "0000", env.tz, "MSH-7")
        env.context.warn("MSH-7 has no time of day; Provenance.recorded set to midnight", "MSH-7")
    prov: dict[str, Any] = {
        "resourceType": "Provenance",
        "id": env.id_for(
            "Provenance", env.msg.sending_application, env.msg.sending_facility, env.msg.control_id
        ),
        "target": [{"reference": t} for t in targets],
        "recorded": recorded,
        "activity": activity,
        "agent": [
            {
                "type": {
                    "coding": [
                        {
                            "system": "http://terminology.hl7.org/CodeSystem/provenance-participant-type",
                            "code": "author",
                        }
                    ]
                },
                "who": {"reference": env.org_ref} if env.org_ref else {"display": env.site_name},
            }
        ],
        "entity": [
            {
                "role": "source",
                "what": {
                    "identifier": {
                        "system": f"urn:fhirhub:site:{env.site_name}:msh-10",
                        "value": env.msg.control_id,
                    },
                    "display": f"HL7 v2 {env.msg.message_type}^{env.msg.trigger} {env.msg.control_id}",
                },
            }
        ],
    }
    return prov


def _event_activity(msg: Message) -> dict:
    return {
        "coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0003", "code": msg.trigger}]
    }


def _organization(env: Env) -> dict | None:
    org = getattr(env.site, "organization", None) or {}
    if not org.get("id"):
        return None
    return to_fhir._clean(
        {
            "resourceType": "Organization",
            "id": org["id"],
            "identifier": [org["identifier"]] if org.get("identifier") else None,
            "active": True,
            "name": org.get("name"),
        }
    )


def bundle(env: Env, provenance: dict | None = None) -> dict:
    """The transaction Bundle of everything mapped, Organization first, Provenance last."""
    resources = []
    org = _organization(env)
    if org:
        resources.append(org)
    for resource in env.entries.values():
        resource.pop("_key", None)
        if resource.get("resourceType") == "DiagnosticReport" and not resource.get("result"):
            resource.pop("result", None)
        resources.append(resource)
    if provenance:
        resources.append(provenance)
    return {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": f"urn:uuid:{r['id']}"
                if len(r["id"]) == 36
                else f"urn:fhirhub:{r['resourceType']}:{r['id']}",
                "resource": r,
                "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"},
            }
            for r in resources
        ],
    }


def _require(msg: Message, *names: str) -> None:
    for name in names:
        if msg.segment(name) is None:
            raise reject(
                f"{msg.structure} without a {name} segment: the message is incomplete or truncated",
                name,
                code="required",
            )


def _unused_segment(env: Env, seg: Segment) -> None:
    env.context.unused(seg.name, f"segment {seg.name} (#{seg.position}) was not mapped")


# ---------------------------------------------------------------------------
# ADT
# ---------------------------------------------------------------------------

# Events about a person with no visit: PV1 is ignored even when present.
_PERSON_ONLY = {"A28", "A31"}


def adt(msg: Message, env: Env) -> dict:
    """ADT A01-A13, A28, A31: Patient, Encounter and what hangs off them."""
    _require(msg, "PID")
    event = msg.trigger
    pid = msg.segment("PID")
    patient = to_fhir.pid_to_patient(pid, env)
    encounter = None
    for seg in msg.segments:
        name = seg.name
        if name in _ENVELOPE or seg is pid:
            continue
        if name == "PID":
            _unused_segment(env, seg)
        elif name == "PD1":
            to_fhir.pd1_to_patient(seg, patient, env)
        elif name == "NK1":
            to_fhir.nk1_to_related_person(seg, env)
        elif name == "PV1":
            if event in _PERSON_ONLY or encounter is not None:
                _unused_segment(env, seg)
            else:
                encounter = to_fhir.pv1_to_encounter(seg, env, event)
        elif name == "PV2" and encounter is not None:
            to_fhir.pv2_to_encounter(seg, encounter, env)
        elif name == "DG1":
            to_fhir.dg1_to_condition(seg, env)
        elif name == "AL1":
            to_fhir.al1_to_allergy_intolerance(seg, env)
        elif name == "IN1":
            to_fhir.in1_to_coverage(seg, env)
        elif name == "OBX":
            # ADT OBX carry facts such as height and weight: no report, no lab category.
            to_fhir.obx_to_observation(seg, env, None, None, category=None)
        else:
            _unused_segment(env, seg)
    if event in ("A01", "A02", "A03", "A06", "A07", "A11", "A13") and encounter is None:
        raise reject(f"ADT^{event} needs a PV1 segment", "PV1", code="required")
    targets = [ref for ref in env.entries if not ref.startswith("Practitioner/")]
    return bundle(env, _provenance(env, _event_activity(msg), targets))


def adt_a40(msg: Message, env: Env) -> dict:
    """ADT A40 merge: PID is the survivor, MRG-1 the retired identifier.

    The retired Patient is written with ``active=false`` and a ``replaced-by``
    link; the survivor gains ``replaces`` and keeps the old MRN with
    ``use=old``; a Provenance (activity ``merge``) records who merged what.
    Clinical data is not re-pointed here: links let searches follow it.
    """
    _require(msg, "PID", "MRG")
    pid = msg.segment("PID")
    survivor = to_fhir.pid_to_patient(pid, env)
    mrg = msg.segment("MRG")
    old_identifiers = []
    for rep in mrg.reps(1):  # MRG-1 prior patient identifier list
        ident = to_fhir.cx_to_identifier(rep, env)
        if ident:
            old_identifiers.append(ident)
    if not old_identifiers:
        raise reject(
            "MRG-1 prior patient identifier is required for a merge", "MRG-1", code="required"
        )
    mrn = next((i for i in old_identifiers if i.get("use") == "usual"), None)
    rid = next((i for i in old_identifiers if i["system"] == to_fhir.RESIDENT_ID_SYSTEM), None)
    old_key = ids.patient_key(
        (mrn["system"], mrn["value"]) if mrn else None,
        rid["value"] if rid else None,
        f"{msg.control_id}:MRG",
    )
    old_id = env.id_for("Patient", old_key)
    if old_id == survivor["id"]:
        raise reject(
            "MRG-1 names the same patient as PID-3: nothing to merge", "MRG-1", code="business-rule"
        )
    old_names = [
        n for n in (to_fhir.xpn_to_name(r, env.name_style) for r in mrg.reps(7)) if n
    ]  # MRG-7
    retired = to_fhir._clean(
        {
            "resourceType": "Patient",
            "id": old_id,
            "identifier": [dict(i, use="old") for i in old_identifiers],
            "active": False,
            "name": old_names,
            "link": [{"other": {"reference": env.patient_ref}, "type": "replaced-by"}],
            "managingOrganization": {"reference": env.org_ref} if env.org_ref else None,
        }
    )
    survivor.setdefault("identifier", []).extend(
        dict(i, use="old") for i in old_identifiers if i not in survivor.get("identifier", [])
    )
    survivor["link"] = [{"other": {"reference": f"Patient/{old_id}"}, "type": "replaces"}]
    env.add(retired)
    env.done(mrg, {1, 7})
    for seg in msg.segments:
        if seg.name not in _ENVELOPE and seg.name not in ("PID", "MRG"):
            _unused_segment(env, seg)
    activity = {
        "coding": [
            {
                "system": "http://terminology.hl7.org/CodeSystem/iso-21089-lifecycle",
                "code": "merge",
            },
            {"system": "http://terminology.hl7.org/CodeSystem/v2-0003", "code": msg.trigger},
        ]
    }
    return bundle(env, _provenance(env, activity, [env.patient_ref, f"Patient/{old_id}"]))


# ---------------------------------------------------------------------------
# ORU
# ---------------------------------------------------------------------------


def oru_r01(msg: Message, env: Env) -> dict:
    """ORU R01: Patient (and Encounter), DiagnosticReport per OBR, Observation per OBX.

    With ``oru_context: reference`` (site setting) the Bundle leaves out the
    Patient and Encounter and only refers to them.
    """
    _require(msg, "PID", "OBR", "OBX")
    pid = msg.segment("PID")
    to_fhir.pid_to_patient(pid, env)
    report = None
    effective = None
    encounter_done = False
    for seg in msg.segments:
        name = seg.name
        if name in _ENVELOPE or seg is pid:
            continue
        if name == "PV1" and not encounter_done and seg.get(19):
            to_fhir.pv1_to_encounter(seg, env, "A08")
            encounter_done = True
        elif name == "OBR":
            report = to_fhir.obr_to_diagnostic_report(seg, env)
            effective = report.get("effectiveDateTime")
        elif name == "OBX":
            to_fhir.obx_to_observation(seg, env, report, effective)
        else:
            _unused_segment(env, seg)
    if env.config.get("oru_context", "write") == "reference":
        # The ADT feed owns Patient and Encounter: refer to them by their
        # deterministic ids instead of overwriting them with the ORU's thinner copy.
        for ref in [r for r in env.entries if r.split("/")[0] in _ADT_OWNED]:
            del env.entries[ref]
    targets = [ref for ref in env.entries if not ref.startswith("Practitioner/")]
    return bundle(env, _provenance(env, _event_activity(msg), targets))


_ADT_OWNED = {"Patient", "Encounter", "Practitioner"}

MESSAGES = {
    "ADT_A01": adt,
    "ADT_A02": adt,
    "ADT_A03": adt,
    "ADT_A04": adt,
    "ADT_A05": adt,
    "ADT_A06": adt,
    "ADT_A07": adt,
    "ADT_A08": adt,
    "ADT_A11": adt,
    "ADT_A13": adt,
    "ADT_A28": adt,
    "ADT_A31": adt,
    "ADT_A40": adt_a40,
    "ORU_R01": oru_r01,
}


def to_bundle(msg: Message, site: Site, context: MappingContext) -> dict:
    """Map a parsed message; an unsupported structure is rejected (AR) with MSH-9."""
    handler = MESSAGES.get(msg.structure)
    if handler is None:
        raise reject(
            f"message type {msg.message_type}^{msg.trigger} is not supported "
            f"(supported: {', '.join(sorted(MESSAGES))})",
            "MSH-9",
            code="not-supported",
        )
    env = Env(msg=msg, site=site, context=context)
    return handler(msg, env)
