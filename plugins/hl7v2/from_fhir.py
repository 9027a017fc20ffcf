"""FHIR -> HL7 v2: Patient -> ``ADT^A31``, Observation / DiagnosticReport -> ``ORU^R01``.

Outbound messages use ``|^~\\&``, the site's character set (MSH-18) and code
styles (``sex_codes``, ``name_style``), and a MSH-10 derived from the
resource version so that a re-sent change carries the same control id.
Fields claimed (kept by a round trip through :mod:`to_fhir`): Patient
identifier (MRN, resident ID), name, gender, birthDate, telecom, address,
maritalStatus, deceased; Observation code, value (Quantity, string,
CodeableConcept), unit, status, effective, interpretation, referenceRange.
"""

from __future__ import annotations

import datetime as dt
import uuid
import zoneinfo
from typing import TYPE_CHECKING
from typing import Any

from fhirhub_plugins.hl7v2.ids import NAMESPACE
from hub.plugin_api import RESIDENT_ID_SYSTEM
from hub.plugin_api import MappingContext
from hub.plugin_api import OutboundMessage

if TYPE_CHECKING:
    from hub.plugin_api import Site

CONTENT_TYPE = "application/hl7-v2"
_ENC = "^~\\&"
_MSH18 = {
    "utf-8": "UNICODE UTF-8",
    "gb18030": "GB 18030-2000",
    "gbk": "GB 18030-2000",
    "ascii": "ASCII",
}


def esc(value: Any) -> str:
    """Escape a value for ``|^~\\&`` separators."""
    text = "" if value is None else str(value)
    text = text.replace("\\", "\\E\\")
    for ch, code in (("|", "F"), ("^", "S"), ("&", "T"), ("~", "R")):
        text = text.replace(ch, f"\\{code}\\")
    return text.replace("\r\n", "\n").replace("\n", "\\.br\\").replace("\r", "\\.br\\")


def comps(*values: Any) -> str:
    """Components joined with ``^``, each escaped, trailing empty ones dropped."""
    return "^".join(esc(v) for v in values).rstrip("^")


def _segment(name: str, fields: dict[int, str]) -> str:
    size = max(fields) if fields else 0
    return "|".join([name] + [fields.get(i, "") for i in range(1, size + 1)])


def fhir_to_ts(value: str | None, tz: str) -> str:
    """FHIR date/dateTime -> HL7 TS in the site's time zone (date precision kept)."""
    if not value:
        return ""
    if "T" not in value:
        return value.replace("-", "")
    moment = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    local = moment.astimezone(zoneinfo.ZoneInfo(tz))
    return local.strftime("%Y%m%d%H%M%S%z")


def _reverse(context: MappingContext, map_id: str, target: str | None) -> str | None:
    """The first source code that ``map_id`` translates to ``target``."""
    if not target:
        return None
    for code, translation in context.code_map(map_id).entries.items():
        if translation.code == target:
            return code
    return None


class Out:
    def __init__(self, site: Site, context: MappingContext):
        self.site = site
        self.context = context
        self.tz = getattr(site, "timezone", None) or "Asia/Shanghai"
        self.config = site.plugin_config("hl7v2") or {}
        self.encoding = getattr(site, "encoding", None) or "utf-8"
        systems = getattr(site, "identifier_systems", None) or {}
        self.mrn_system = systems.get("mrn")
        # The receiving site's own codes go back as local codes (CWE.3 L), as it sent them.
        self.local_system = systems.get("codesystem") or f"urn:fhirhub:site:{site.name}:codesystem"
        match = getattr(site, "match", None) or {}
        self.authority = (
            self.config.get("mrn_authority") or match.get("sending_facility") or site.name
        )
        self.receiver_app = match.get("sending_application") or ""
        self.receiver_fac = match.get("sending_facility") or ""

    def msh(self, message_type: str, control_id: str) -> str:
        now = dt.datetime.now(zoneinfo.ZoneInfo(self.tz)).strftime("%Y%m%d%H%M%S%z")
        charset = _MSH18.get(self.encoding.lower().replace("_", "-"), self.encoding.upper())
        fields = ["MSH", _ENC, "FHIRHUB", "HUB", esc(self.receiver_app), esc(self.receiver_fac), now, "",
                  message_type, control_id, "P", "2.5", "", "", "AL", "NE", "CHN", charset]  # fmt: skip
        return "|".join(fields)

    def pid(self, patient: dict, veterans_status: str | None = None) -> str:
        """PID from a Patient; ``veterans_status`` fills PID-27 (CE, or ``""`` to clear it)."""
        f: dict[int, str] = {1: "1"}
        reps = []
        for ident in patient.get("identifier", []):  # PID-3
            if ident.get("use") == "old":
                continue
            if ident.get("system") == RESIDENT_ID_SYSTEM:
                reps.append(comps(ident.get("value"), "", "", "CHN", "NNCHN"))
            elif self.mrn_system and ident.get("system") == self.mrn_system:
                reps.append(comps(ident.get("value"), "", "", self.authority, "MR"))
        if not reps and patient.get("id"):
            reps.append(comps(patient["id"], "", "", "FHIRHUB", "PI"))
        f[3] = "~".join(reps)
        names = []
        style = getattr(self.site, "name_style", "auto")
        for name in patient.get("name", []):  # PID-5
            family = name.get("family") or ""
            given = " ".join(name.get("given", []))
            if style == "single" and name.get("text"):
                names.append(comps(name["text"], "", "", "", "", "", _use(name)))
            else:
                names.append(comps(family, given, "", "", "", "", _use(name)))
        f[5] = "~".join(names)
        f[7] = fhir_to_ts(patient.get("birthDate"), self.tz)  # PID-7
        gender = patient.get("gender")
        if gender:  # PID-8
            gb = self.config.get("sex_codes", "auto") == "gb"
            f[8] = esc(
                _reverse(self.context, "hl7v2-gb-sex" if gb else "hl7v2-administrative-sex", gender)
                or ""
            )
        f[11] = "~".join(_address(a) for a in patient.get("address", []))  # PID-11
        phones = [  # current numbers only: a replaced one keeps its period.end as history
            t
            for t in patient.get("telecom", [])
            if t.get("system") in ("phone", None) and not (t.get("period") or {}).get("end")
        ]
        home = [t for t in phones if t.get("use") != "work"]
        work = [t for t in phones if t.get("use") == "work"]
        f[13] = "~".join(_phone(t) for t in home)  # PID-13
        f[14] = "~".join(_phone(t) for t in work)  # PID-14
        marital = patient.get("maritalStatus") or {}
        for coding in marital.get("coding", []):  # PID-16: the original code when we have it
            if coding.get("system") in (
                "http://terminology.hl7.org/CodeSystem/v2-0002",
                "urn:oid:2.16.156.10011.2.3.3.5",
            ):
                f[16] = esc(coding.get("code"))
                break
        if "deceasedDateTime" in patient:  # PID-29 / PID-30
            f[29] = fhir_to_ts(patient["deceasedDateTime"], self.tz)
            f[30] = "Y"
        elif "deceasedBoolean" in patient:
            f[30] = "Y" if patient["deceasedBoolean"] else "N"
        if veterans_status is not None:  # PID-27 (the green channel: entitlement.py)
            f[27] = veterans_status
        return _segment("PID", f)


def _use(name: dict) -> str:
    return {"official": "L", "usual": "D", "maiden": "M", "nickname": "N", "old": "C"}.get(
        name.get("use", ""), ""
    )


def _address(addr: dict) -> str:
    lines = addr.get("line", [])
    use = {"home": "H", "work": "O", "temp": "C", "billing": "BA"}.get(addr.get("use", ""), "")
    return comps(
        lines[0] if lines else "",
        lines[1] if len(lines) > 1 else "",
        addr.get("city"),
        addr.get("state"),
        addr.get("postalCode"),
        addr.get("country"),
        use,
        "",
        addr.get("district"),
    )


def _phone(telecom: dict) -> str:
    equipment = "CP" if telecom.get("use") == "mobile" else "PH"
    use = "WPN" if telecom.get("use") == "work" else "PRN"
    return comps("", use, equipment) + "^^^^^^^^^" + esc(telecom.get("value"))


def _control_id(resource: dict) -> str:
    version = (resource.get("meta") or {}).get("versionId")
    if version and resource.get("id"):
        seed = f"{resource['resourceType']}/{resource['id']}/_history/{version}"
        return uuid.uuid5(NAMESPACE, seed).hex[:20]
    return uuid.uuid4().hex[:20]


def patient_to_adt_a31(patient: dict, site: Site, context: MappingContext) -> bytes:
    """Patient -> ``ADT^A31^ADT_A05`` (update person information)."""
    out = Out(site, context)
    now = dt.datetime.now(zoneinfo.ZoneInfo(out.tz)).strftime("%Y%m%d%H%M%S%z")
    segments = [
        out.msh("ADT^A31^ADT_A05", _control_id(patient)),
        f"EVN|A31|{now}",
        out.pid(patient),
        "PV1|1|N",
    ]
    return ("\r".join(segments) + "\r").encode(out.encoding)


def _cwe(concept: dict | None, out: Out) -> str:
    if not concept:
        return ""
    codings = concept.get("coding") or []
    parts: list[Any] = []
    names = {"http://loinc.org": "LN", "http://unitsofmeasure.org": "UCUM", out.local_system: "L"}
    for coding in codings[:2]:
        system = coding.get("system")
        name = names.get(system or "", system or "")
        parts += [coding.get("code"), coding.get("display"), name]
    if not parts:
        parts = ["", concept.get("text"), ""]
    return comps(*parts)


def _obx(obs: dict, set_id: int, out: Out, context: MappingContext) -> str:
    f: dict[int, str] = {1: str(set_id)}
    f[3] = _cwe(obs.get("code"), out)
    if "valueQuantity" in obs:
        q = obs["valueQuantity"]
        f[2] = "NM" if not q.get("comparator") else "SN"
        f[5] = esc(q.get("value")) if f[2] == "NM" else comps(q["comparator"], q.get("value"))
        f[6] = comps(
            q.get("code") or q.get("unit"), q.get("unit"), "UCUM" if q.get("system") else ""
        )
    elif "valueString" in obs:
        f[2] = "ST"
        f[5] = esc(obs["valueString"])
    elif "valueCodeableConcept" in obs:
        f[2] = "CWE"
        f[5] = _cwe(obs["valueCodeableConcept"], out)
    elif "valueDateTime" in obs:
        f[2] = "DTM"
        f[5] = fhir_to_ts(obs["valueDateTime"], out.tz)
    ranges = obs.get("referenceRange") or []
    if ranges:
        rr = ranges[0]
        if rr.get("text"):
            f[7] = esc(rr["text"])
        elif rr.get("low") and rr.get("high"):
            f[7] = esc(f"{rr['low'].get('value')}-{rr['high'].get('value')}")
    flags = []
    for concept in obs.get("interpretation", []):  # OBX-8
        code = (concept.get("coding") or [{}])[0].get("code")
        if code:
            flags.append(esc(_reverse(context, "hl7v2-abnormal-flags", code) or code))
    f[8] = "~".join(flags)
    f[11] = _reverse(context, "hl7v2-observation-status", obs.get("status")) or "F"  # OBX-11
    f[14] = fhir_to_ts(obs.get("effectiveDateTime"), out.tz)  # OBX-14
    return _segment("OBX", f)


def observations_to_oru_r01(
    observations: list[dict], site: Site, context: MappingContext, report: dict | None = None,
    patient: dict | None = None,
) -> bytes:  # fmt: skip
    """Observations (of one report, if given) -> ``ORU^R01^ORU_R01``.

    ``patient`` fills PID when known; otherwise PID-3 carries the subject's hub id.
    """
    out = Out(site, context)
    first = report or (observations[0] if observations else {})
    if patient is None:
        ref = (first.get("subject") or {}).get("reference", "")
        patient = {"id": ref.split("/")[-1]} if ref else {}
    obr: dict[int, str] = {1: "1"}
    for ident in (report or {}).get("identifier", []):
        code = ((ident.get("type") or {}).get("coding") or [{}])[0].get("code")
        if code == "PLAC":
            obr[2] = esc(ident.get("value"))
        elif code == "FILL":
            obr[3] = esc(ident.get("value"))
    obr[4] = _cwe((report or first).get("code"), out)
    obr[7] = fhir_to_ts((report or first).get("effectiveDateTime"), out.tz)
    if report:
        obr[25] = _reverse(context, "hl7v2-report-status", report.get("status")) or "F"
    segments = [
        out.msh("ORU^R01^ORU_R01", _control_id(first)),
        out.pid(patient),
        _segment("OBR", obr),
    ]
    segments += [_obx(obs, i, out, context) for i, obs in enumerate(observations, start=1)]
    return ("\r".join(segments) + "\r").encode(out.encoding)


def _subject(resource: dict, read) -> dict | None:
    """The stored Patient a result is about (PID from its identifiers), when the hub can read it."""
    reference = (resource.get("subject") or {}).get("reference", "")
    if read is None or not reference.startswith("Patient/"):
        return None
    return read(reference)


def outbound_messages(
    resource: dict, event: str, site: Site, context: MappingContext
) -> list[OutboundMessage]:
    """The messages a change means for ``site`` (``map_outbound``)."""
    outbound = getattr(site, "outbound", None) or {}
    wanted = outbound.get("events") or ["Patient", "Observation", "DiagnosticReport"]
    rtype = resource.get("resourceType")
    if event == "delete" or rtype not in wanted:
        return []
    read = getattr(context, "read", None)
    if rtype == "Patient":
        body = patient_to_adt_a31(resource, site, context)
        kind = "ADT^A31"
    elif rtype == "Observation":
        body = observations_to_oru_r01([resource], site, context, patient=_subject(resource, read))
        kind = "ORU^R01"
    elif rtype == "DiagnosticReport":
        results = [
            r for r in resource.get("contained", []) if r.get("resourceType") == "Observation"
        ]
        if read is not None:  # results stored on their own, referenced from DiagnosticReport.result
            for ref in resource.get("result", []):
                reference = ref.get("reference", "")
                if reference.startswith("Observation/"):
                    found = read(reference)
                    if found is not None:
                        results.append(found)
        body = observations_to_oru_r01(
            results, site, context, report=resource, patient=_subject(resource, read)
        )
        kind = "ORU^R01"
    else:
        return []
    from fhirhub_plugins.hl7v2.parse import parse_message

    key = parse_message(body, site).control_id or ""
    return [OutboundMessage(body, CONTENT_TYPE, key, f"{kind} for {rtype}/{resource.get('id')}")]
