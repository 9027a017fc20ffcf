"""Which person each resource of an ingested message belongs to, for its Provenance.

A registry file of forty veterans, or a multi-person CSV from a plugin, is one message. The hub
records where its resources came from with one ``Provenance`` per person touched, so that a
person's records (and their ``$everything``) carry no Provenance naming other people's
resources; what belongs to nobody (an Organization, a Practitioner) has a Provenance of its own.

A resource belongs to the Patients it refers to (``Patient/<id>``, or the ``fullUrl`` of a
Patient entry of the same Bundle), a Patient to itself: the R4 patient compartment is defined by
such references, and a resource referring to two people is listed in both their Provenances.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable
from typing import TYPE_CHECKING
from typing import Any

import orjson

from hub.identity.ids import stable_id

if TYPE_CHECKING:
    from hub.sites import Site

WRITES = ("PUT", "POST", "PATCH")


def for_message(item: Any, site: Site, entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The hub's Provenance entries for an inbox ``item``: one per Patient it touches.

    A message of one person (or of nobody) keeps one Provenance with the id it always had; a
    message of several people gets one per person (ids from the message and the person) plus
    one for what belongs to nobody. Ids are deterministic, so re-delivery updates them.
    """
    groups = targets_by_person(entries)
    org = getattr(site, "organization", None) or {}
    agent = {"who": {"display": org.get("name") or site.name}}
    if org.get("identifier"):
        agent["who"]["identifier"] = org["identifier"]
    key = ("ingest", site.name, item.source_key, item.payload_hash)
    people = [p for p in groups if p is not None]
    if len(people) <= 1:
        # One person (or nobody): one Provenance for the whole message, as always.
        groups = {None: [t for targets in groups.values() for t in targets]}
    out = []
    for person, targets in groups.items():
        prov_id = stable_id(*key) if person is None else stable_id(*key, person)
        provenance = {
            "resourceType": "Provenance",
            "id": prov_id,
            "target": targets or [{"display": "nothing"}],
            "recorded": dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds"),
            "activity": {"text": f"ingested {item.format} message"},
            "agent": [agent],
            "entity": [
                {
                    "role": "source",
                    "what": {
                        "identifier": {
                            "system": f"urn:fhirhub:inbox:{site.name}",
                            "value": item.source_key,
                        },
                        "display": f"inbox item {item.id}",
                    },
                }
            ],
        }
        out.append(
            {
                "resource": provenance,
                "request": {"method": "PUT", "url": f"Provenance/{prov_id}"},
            }
        )
    return out


def target(entry: dict[str, Any]) -> dict[str, str] | None:
    """The reference a Provenance uses for what ``entry`` writes (``None``: it writes nothing)."""
    res = entry.get("resource") or {}
    request = entry.get("request") or {}
    if entry.get("fullUrl"):
        return {"reference": entry["fullUrl"]}
    if res.get("id") and request.get("method") in WRITES:
        return {"reference": f"{res['resourceType']}/{res['id']}"}
    if request.get("method") == "PATCH":
        return {"reference": request["url"]}
    return None


def targets_by_person(entries: list[dict[str, Any]]) -> dict[str | None, list[dict[str, str]]]:
    """The Provenance targets of ``entries`` by Patient id (``None``: in no person's records).

    Targets keep the order of the entries; the ``None`` group is present only when needed.
    """
    patients: dict[str, str] = {}  # reference or fullUrl of a Patient entry -> its id
    for entry in entries:
        res = entry.get("resource") or {}
        if res.get("resourceType") == "Patient" and isinstance(res.get("id"), str):
            patients[f"Patient/{res['id']}"] = res["id"]
            if entry.get("fullUrl"):
                patients[entry["fullUrl"]] = res["id"]
    groups: dict[str | None, list[dict[str, str]]] = {}
    for entry in entries:
        ref = target(entry)
        if ref is None:
            continue
        for person in _people(entry.get("resource") or {}, patients) or [None]:
            groups.setdefault(person, []).append(ref)
    return groups


def _people(res: dict[str, Any], patients: dict[str, str]) -> list[str]:
    if res.get("resourceType") == "Patient" and isinstance(res.get("id"), str):
        return [res["id"]]
    found = _people_in(_references_fast(res), patients)
    if len(found) > 1:
        # Several people: list them in the order of the walk below, as always.
        found = _people_in(_references(res), patients)
    return found


def _people_in(references: Iterable[str], patients: dict[str, str]) -> list[str]:
    found: list[str] = []
    for ref in references:
        person = patients.get(ref)
        if person is None and ref.startswith("Patient/") and ref.count("/") == 1:
            person = ref[len("Patient/") :]
        if person and person not in found:
            found.append(person)
    return found


# A ``reference`` member with a string value in orjson's compact output: a quote
# inside a string is escaped, so a match cannot start inside one.
_REFERENCE = re.compile(rb'"reference":"((?:[^"\\]|\\.)*)"')


def _references_fast(resource: dict[str, Any]) -> list[str]:
    """Every ``reference`` string in ``resource``, found in its JSON text (order aside)."""
    out = []
    for raw in _REFERENCE.findall(orjson.dumps(resource)):
        out.append(orjson.loads(b'"' + raw + b'"') if b"\\" in raw else raw.decode())
    return out


def _references(value: Any):
    """Every ``reference`` string anywhere in a resource."""
    if isinstance(value, dict):
        ref = value.get("reference")
        if isinstance(ref, str):
            yield ref
        for item in value.values():
            if isinstance(item, (dict, list)):
                yield from _references(item)
    elif isinstance(value, list):
        for item in value:
            yield from _references(item)
