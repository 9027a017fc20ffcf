"""The green channel (荣军康养/军休): a veteran's entitlement -> ``ADT^A31`` for a partner hospital.

Partner hospitals give entitled veterans priority at registration, which works
only when their HIS knows the entitlement. The registry's veteran-entitlement
Observation (``urn:fhirhub:codesystem:veteran-status#veteran-entitlement``,
labelled ``veteran-status``) becomes an A31 (update person information) whose
PID-27 (Veterans Military Status, CE) carries the beneficiary category, and,
when the site asks for it, a Z-segment with the category, the benefit status,
the entitlement period and the registry number.

A site opts in with ``plugins.hl7v2.send_entitlement: true``; the hub sends the
change only to a site whose client holds the ``veteran-status`` grant
(:mod:`hub.outbound`). The message says what the HIS should now hold:

* in force (benefit status ``active``): PID-27 = ``code^text^system``;
* ended, suspended, deleted, or moved to another Patient by a merge: PID-27 =
  ``""`` (the HL7 delete indicator), the Z-segment with the end date;
* nothing a hospital sees changed (a new pension standard, say): no message.

See docs/green-channel.md for the content field by field.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import re
import uuid
import zoneinfo
from typing import TYPE_CHECKING
from typing import Any

from fhirhub_plugins.hl7v2.from_fhir import CONTENT_TYPE
from fhirhub_plugins.hl7v2.from_fhir import Out
from fhirhub_plugins.hl7v2.from_fhir import comps
from fhirhub_plugins.hl7v2.from_fhir import esc
from fhirhub_plugins.hl7v2.from_fhir import fhir_to_ts
from fhirhub_plugins.hl7v2.ids import NAMESPACE
from hub.plugin_api import MappingContext
from hub.plugin_api import OutboundMessage
from hub.plugin_api import codesystems as cs

if TYPE_CHECKING:
    from hub.plugin_api import Site

log = logging.getLogger("fhirhub.hl7v2.entitlement")

CATEGORY_MAP = "hl7v2-veteran-category"
DEFAULT_CODING_SYSTEM = "99VETCAT"
# ZVE-3 benefit status: the registry's 正常 / 暂停 / 注销.
STATUS_CODES = {"active": "A", "suspended": "S", "ended": "E"}
Z_SEGMENT = re.compile(r"^Z[A-Z0-9]{2}$")
_NOT_IN_FORCE = ("entered-in-error", "cancelled")


def is_entitlement(resource: dict[str, Any] | None) -> bool:
    """Whether ``resource`` is a veteran-entitlement Observation (veteran-entitlement profile)."""
    if not resource or resource.get("resourceType") != "Observation":
        return False
    return any(
        c.get("system") == cs.VETERAN_STATUS and c.get("code") == "veteran-entitlement"
        for c in (resource.get("code") or {}).get("coding") or ()
        if isinstance(c, dict)
    )


def wanted(site: Site) -> bool:
    """The site asked for entitlements (``plugins.hl7v2.send_entitlement: true``)."""
    return (site.plugin_config("hl7v2") or {}).get("send_entitlement") is True


def segment_name(site: Site) -> str | None:
    """The Z-segment the site asked for (``plugins.hl7v2.entitlement_segment``), if any.

    A name that is not ``Z`` and two letters or digits is logged and left out: PID-27
    still tells the HIS, whereas refusing would leave the site with no message at all.
    """
    name = (site.plugin_config("hl7v2") or {}).get("entitlement_segment")
    if not name:
        return None
    name = str(name).upper()
    if not Z_SEGMENT.match(name):
        log.warning(
            "site %s: plugins.hl7v2.entitlement_segment %r is not a Z-segment name (Zxx); "
            "sending PID-27 without it",
            site.name,
            name,
        )
        return None
    return name


@dataclasses.dataclass(frozen=True)
class Entitlement:
    """What a hospital sees of one entitlement: everything else (pension, grade) stays home."""

    patient: str  # "Patient/<id>"
    category: str | None
    category_text: str | None
    status: str  # active, suspended, ended
    start: str | None
    end: str | None
    registry_number: str | None

    @property
    def in_force(self) -> bool:
        return self.status == "active"


def read_entitlement(obs: dict[str, Any] | None) -> Entitlement | None:
    """The entitlement an Observation states (``None``: not one, or no subject)."""
    if not is_entitlement(obs):
        return None
    patient = (obs.get("subject") or {}).get("reference") or ""
    if not patient.startswith("Patient/"):
        return None
    value = obs.get("valueCodeableConcept") or {}
    category = next(
        (
            c.get("code")
            for c in value.get("coding") or ()
            if c.get("system") == cs.VETERAN_CATEGORY
        ),
        None,
    )
    status, departed = "active", None
    for component in obs.get("component") or ():
        codes = {c.get("code") for c in (component.get("code") or {}).get("coding") or ()}
        if "benefit-status" in codes:
            coding = ((component.get("valueCodeableConcept") or {}).get("coding") or [{}])[0]
            status = coding.get("code") or status
        elif "departed" in codes:
            departed = component.get("valueDateTime")
    if obs.get("status") in _NOT_IN_FORCE:
        status = "ended"
    period = obs.get("effectivePeriod") or {}
    end = period.get("end") or (departed if status != "active" else None)
    number = next((i.get("value") for i in obs.get("identifier") or () if i.get("value")), None)
    return Entitlement(
        patient, category, value.get("text"), status, period.get("start"), end, number
    )


def _ended(ent: Entitlement, on: str) -> Entitlement:
    """``ent`` as it stands once it no longer applies to its Patient (deleted, merged away)."""
    return dataclasses.replace(ent, status="ended", end=ent.end or on)


def entitlement_messages(
    resource: dict[str, Any], event: str, site: Site, context: MappingContext
) -> list[OutboundMessage]:
    """The A31s one change of an entitlement Observation means for ``site`` (``map_outbound``)."""
    if not wanted(site):
        return []
    previous = read_entitlement(getattr(context, "previous", None))
    current = read_entitlement(resource) if event != "delete" else None
    today = dt.datetime.now(zoneinfo.ZoneInfo(site.timezone or "Asia/Shanghai")).date().isoformat()
    states: list[Entitlement] = []
    if previous is not None and (current is None or current.patient != previous.patient):
        if previous.in_force:  # deleted, or a merge moved it: the old record loses it
            states.append(_ended(previous, today))
    if current is not None:
        same_person = previous is not None and previous.patient == current.patient
        if current != (previous if same_person else None) and (current.in_force or same_person):
            states.append(current)
    version = (resource.get("meta") or {}).get("versionId") or ""
    seed = f"Observation/{resource.get('id')}/_history/{version}"
    return [_message(state, seed, resource, site, context) for state in states]


def _message(
    state: Entitlement, seed: str, resource: dict[str, Any], site: Site, context: MappingContext
) -> OutboundMessage:
    out = Out(site, context)
    read = getattr(context, "read", None)
    patient = (read(state.patient) if read is not None else None) or {
        "id": state.patient.split("/", 1)[1]
    }
    control_id = uuid.uuid5(NAMESPACE, f"{seed}|{state.patient}|entitlement").hex[:20]
    recorded = (resource.get("meta") or {}).get("lastUpdated")
    evn = fhir_to_ts(recorded, out.tz) if recorded else _now(out.tz)
    concept = category_ce(state, out, context)
    pid = out.pid(patient, veterans_status=concept if state.in_force else '""')
    segments = [out.msh("ADT^A31^ADT_A05", control_id), f"EVN|A31|{evn}", pid, "PV1|1|N"]
    name = segment_name(site)
    if name:
        segments.append(z_segment(name, state, concept))
    body = ("\r".join(segments) + "\r").encode(out.encoding)
    what = "entitlement" if state.in_force else "entitlement ended"
    return OutboundMessage(
        body,
        CONTENT_TYPE,
        control_id,
        f"ADT^A31 ({what}) for {state.patient} from Observation/{resource.get('id')}",
    )


def _now(tz: str) -> str:
    return dt.datetime.now(zoneinfo.ZoneInfo(tz)).strftime("%Y%m%d%H%M%S%z")


def category_ce(state: Entitlement, out: Out, context: MappingContext) -> str:
    """PID-27 / Z-2 as ``code^text^coding system``: the site's code for the category
    (code map ``hl7v2-veteran-category``, a site override wins) and its text."""
    if not state.category:
        return ""
    code, text = state.category, state.category_text
    for source, translation in context.code_map(CATEGORY_MAP).entries.items():
        if translation.code == state.category:  # the last entry wins: a site's own comes last
            code, text = source, translation.display or text
    system = out.config.get("entitlement_coding_system") or DEFAULT_CODING_SYSTEM
    return comps(code, text, system)


def z_segment(name: str, state: Entitlement, concept: str) -> str:
    """``Zxx|1|category|status|start|end|registry number`` (docs/green-channel.md)."""
    fields = [
        name,
        "1",
        concept,
        STATUS_CODES.get(state.status, "E"),
        _date(state.start),
        _date(state.end),
        esc(state.registry_number or ""),
    ]
    return "|".join(fields).rstrip("|")


def _date(value: str | None) -> str:
    """A FHIR date or dateTime -> HL7 DT (YYYYMMDD)."""
    return value[:10].replace("-", "") if value else ""
