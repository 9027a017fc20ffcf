"""The identity stage: one Patient per person, whichever site the data came from.

Runs on every mapped Bundle before it is stored:

1. A Patient carrying a valid resident ID number (GB 11643) gets the id derived
   from that number (``hub.identity.ids.patient_id_for_resident_id``), so the
   same person from a hospital, the county platform and the registry lands in
   one Patient.
2. Without one, the adapter's site-scoped id (from the site MRN) stands; if no
   Patient has it yet, candidates with the same birth date are scored
   (``hub.identity.matching``): above the auto-link threshold the record joins
   the best candidate; in the review band a ``Task`` (code ``link-review``)
   asks an archive manager to decide.
3. An incoming Patient never overwrites what other sources stored: it is
   merged into the existing one (identifiers, addresses and contacts
   accumulate; single-valued elements take the newest value). Two values are
   not simply the newest:

   - ``telecom``: a number the message sends is current; a current number of
     the same system (and ``use``, when both give one) that it does not send any
     more is kept with ``period.end`` (it was replaced), never left standing as
     current beside the new one;
   - ``managingOrganization``: the institution that registered the person keeps
     it, whichever site sends last; only an active family-doctor contract in
     the same Bundle (an ``EpisodeOfCare`` of type ``family-doctor-contract``
     for this Patient) moves it, to the contract's institution, and so does a
     move (the new record's institution);
   - the health-record number: a new one (the person moved county) supersedes
     the stored one, kept as ``use: old`` with ``period.end`` and never current
     again (``_identifiers``).
4. Every reference to the Patient's old id in the Bundle is rewritten.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import orjson

from hub import codesystems as cs
from hub.identity import HEALTH_RECORD_SYSTEM
from hub.identity import RESIDENT_ID_SYSTEM
from hub.identity import is_current
from hub.identity import resident_id
from hub.identity.ids import patient_id_for_resident_id
from hub.identity.ids import stable_id

# Repeating Patient elements that accumulate across sources. (Names are not
# among them: a corrected name replaces the old one; telecoms: see _telecoms.)
_LISTS = (
    "identifier",
    "address",
    "contact",
    "communication",
    "link",
    "extension",
    "photo",
)
REVIEW_TASK_CODE = {
    "system": "urn:fhirhub:codesystem:task-code",
    "code": "link-review",
    "display": "Review a possible duplicate person",
}


def resident_number(patient: dict[str, Any]) -> str | None:
    for ident in patient.get("identifier") or ():
        if ident.get("system") == RESIDENT_ID_SYSTEM and ident.get("value"):
            try:
                return resident_id.normalise(ident["value"])
            except resident_id.InvalidResidentId:
                return None
    return None


def merge_patient(
    old: dict[str, Any], new: dict[str, Any], now: str | None = None
) -> dict[str, Any]:
    """``new`` laid over ``old``: lists accumulate without duplicates, scalars are replaced.

    Telecoms no longer sent end (``period.end`` = ``now``, default the current
    time); a stored ``managingOrganization`` is kept (module docstring).
    """
    merged = {k: v for k, v in old.items() if k not in ("meta",)}
    ended = now or dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    moved = _moved(old, new)
    for key, value in new.items():
        if key in ("id", "meta", "resourceType"):
            continue
        if key == "managingOrganization" and old.get(key) and not moved:
            continue  # the registering institution keeps it (a new record's takes over)
        if key == "telecom" and isinstance(value, list):
            merged[key] = _telecoms(old.get(key) or [], value, ended)
        elif key == "identifier" and isinstance(value, list):
            merged[key] = _identifiers(old.get(key) or [], value, ended)
        elif key in _LISTS and isinstance(value, list):
            merged[key] = _union(old.get(key) or [], value, key)
        else:
            merged[key] = value
    meta_old, meta_new = old.get("meta") or {}, new.get("meta") or {}
    meta = {k: v for k, v in meta_old.items() if k not in ("versionId", "lastUpdated")}
    for key in ("tag", "security", "profile"):
        if meta_old.get(key) or meta_new.get(key):
            meta[key] = _union(meta_old.get(key) or [], meta_new.get(key) or [], key)
    for key in ("source", "extension"):  # the newest source's provenance marks
        if meta_new.get(key):
            meta[key] = meta_new[key]
    if meta:
        merged["meta"] = meta
    merged["resourceType"] = "Patient"
    return merged


def _telecoms(old: list, new: list, ended: str) -> list:
    """Stored contact points and the incoming ones: what is sent is current, what it replaces ends.

    A stored current point of the same ``system`` as an incoming one (and the same
    ``use`` when both give one) that the message does not send again gets
    ``period.end``; it stays, as history. A point sent again replaces its stored copy
    (so a number that comes back is current again).
    """

    def same_slot(a: dict, b: dict) -> bool:
        return a.get("system") == b.get("system") and (
            not a.get("use") or not b.get("use") or a["use"] == b["use"]
        )

    sent = {(t.get("system"), t.get("value")) for t in new if isinstance(t, dict)}
    out = []
    for point in old:
        if not isinstance(point, dict):
            continue
        if (point.get("system"), point.get("value")) in sent:
            continue  # the incoming copy stands for it
        period = point.get("period") or {}
        if not period.get("end") and any(same_slot(point, n) for n in new if isinstance(n, dict)):
            point = {**point, "period": {**period, "end": ended}}
        out.append(point)
    return out + [t for t in new if isinstance(t, dict)]


def _record_numbers(identifiers: list) -> tuple[set[str], set[str]]:
    """(current, superseded) health-record numbers among ``identifiers``."""
    current, superseded = set(), set()
    for ident in identifiers:
        if isinstance(ident, dict) and ident.get("system") == HEALTH_RECORD_SYSTEM:
            (current if is_current(ident) else superseded).add(ident.get("value"))
    return current, superseded


def _sent_numbers(old: list, new: list) -> set[str]:
    """The current health-record numbers ``new`` sends that ``old`` has not superseded."""
    _current, superseded = _record_numbers(old)
    sent, _ = _record_numbers(new)
    return sent - superseded


def _moved(old: dict, new: dict) -> bool:
    """Whether ``new`` brings a health-record number that supersedes the stored current one."""
    current, _ = _record_numbers(old.get("identifier") or [])
    sent = _sent_numbers(old.get("identifier") or [], new.get("identifier") or [])
    return bool(current) and bool(sent) and not (sent & current)


def _identifiers(old: list, new: list, ended: str) -> list:
    """Stored identifiers and the incoming ones; a new health-record number supersedes.

    A person who moves gets the new county's record number (DOMAIN 2.1: one
    record, one jurisdiction); the number it replaces stays as history with
    ``use: old`` and ``period.end``. A superseded number is never current again:
    documents made before the move keep arriving and still quote it.
    """
    sent = _sent_numbers(old, new)
    merged = _union(old, new, "identifier")
    stored = {(i.get("system"), i.get("value")): i for i in old if isinstance(i, dict)}
    out = []
    for ident in merged:
        if not isinstance(ident, dict) or ident.get("system") != HEALTH_RECORD_SYSTEM:
            out.append(ident)
            continue
        before = stored.get((ident.get("system"), ident.get("value")))
        if before is not None and not is_current(before):
            ident = before  # superseded stays superseded
        elif sent and is_current(ident) and ident.get("value") not in sent:
            ident = {**ident, "use": "old", "period": {**(ident.get("period") or {}), "end": ended}}
        out.append(ident)
    return out


def _contract_organizations(bundle: dict[str, Any]) -> dict[str, dict]:
    """Patient reference -> managingOrganization of an active family-doctor contract in ``bundle``."""
    out: dict[str, dict] = {}
    for entry in bundle.get("entry") or ():
        episode = entry.get("resource") or {}
        if episode.get("resourceType") != "EpisodeOfCare" or episode.get("status") != "active":
            continue
        if not any(
            c.get("system") == cs.CARE_PROGRAMME and c.get("code") == cs.FAMILY_DOCTOR_CONTRACT
            for t in episode.get("type") or ()
            for c in t.get("coding") or ()
        ):
            continue
        patient = (episode.get("patient") or {}).get("reference")
        if patient and episode.get("managingOrganization"):
            out[patient] = episode["managingOrganization"]
    return out


def _union(old: list, new: list, key: str) -> list:
    def ident(item: Any) -> Any:
        if key == "identifier" and isinstance(item, dict):
            return (item.get("system"), item.get("value"))
        if key in ("tag", "security") and isinstance(item, dict):
            return (item.get("system"), item.get("code"))
        return repr(sorted(item.items())) if isinstance(item, dict) else repr(item)

    out: dict[Any, Any] = {ident(i): i for i in old}
    for item in new:
        out[ident(item)] = item  # the newer copy of the same item wins
    return list(out.values())


def resolve(
    service: Any, bundle: dict[str, Any], thresholds: Any, writer: Any
) -> list[dict[str, Any]]:
    """Apply the identity stage to ``bundle`` in place; returns review Tasks to add.

    The stored Patients are read through ``writer``, in the transaction that
    will write the merged ones (locked on PostgreSQL, so two messages about one
    person cannot lose each other's update); staged writes of earlier messages
    in the same group are seen.
    """
    read = writer.current
    renames: dict[str, str] = {}
    tasks: list[dict[str, Any]] = []
    stale: list[dict[str, Any]] = []
    contracts = _contract_organizations(bundle)
    for entry in bundle.get("entry") or ():
        resource = entry.get("resource") or {}
        request = entry.get("request") or {}
        if resource.get("resourceType") != "Patient" or request.get("method") not in (
            "PUT",
            "POST",
        ):
            continue
        old_id = resource.get("id")
        number = resident_number(resource)
        target = patient_id_for_resident_id(number) if number else old_id
        existing = read("Patient", target) if target else None
        if (existing is None or existing.deleted) and number is None:
            linked, task = _match(service, resource, thresholds, writer)
            if linked:
                target, existing = linked, read("Patient", linked)
            elif task:
                tasks.append(task)
        if target is None:
            continue
        if existing is not None and not existing.deleted:
            stored = existing.resource()
            if service.pm is not None and any(
                service.pm.hook.is_stale(incoming=resource, stored=stored)
            ):
                stale.append(entry)  # older than what we hold: keep the stored Patient
                continue
            resource = merge_patient(stored, resource)
        contract_org = next(
            (
                contracts[ref]
                for ref in (entry.get("fullUrl"), f"Patient/{old_id}", f"Patient/{target}")
                if ref in contracts
            ),
            None,
        )
        if contract_org is not None:
            resource["managingOrganization"] = contract_org  # the contract's institution
        resource["id"] = target
        entry["resource"] = resource
        entry["request"] = {"method": "PUT", "url": f"Patient/{target}"}
        if old_id and old_id != target:
            renames[f"Patient/{old_id}"] = f"Patient/{target}"
    for entry in stale:
        # Other entries may still point at the Patient: rename, do not rewrite it.
        old_id = entry["resource"].get("id")
        number = resident_number(entry["resource"])
        target = patient_id_for_resident_id(number) if number else old_id
        if old_id and target and old_id != target:
            renames[f"Patient/{old_id}"] = f"Patient/{target}"
        bundle["entry"].remove(entry)
    if renames:
        _rename_refs(bundle, renames)
    for task in tasks:
        task["for"]["reference"] = renames.get(task["for"]["reference"], task["for"]["reference"])
    return tasks


def _match(
    service: Any, patient: dict[str, Any], thresholds: Any, writer: Any
) -> tuple[str | None, dict | None]:
    """Score existing Patients born the same day; auto-link or queue a review."""
    if not patient.get("birthDate") or service.search_engine is None:
        return None, None
    from hub.identity import matching

    thresholds = thresholds or matching.Thresholds()
    params = [("birthdate", patient["birthDate"]), ("_count", "50")]
    surname = _surname_key(patient)
    if surname:
        # Same birth date and a surname that sounds the same (张 = Zhang): a
        # handful of candidates instead of everyone born that day.
        params.append(("phonetic", surname))
    writer.flush()  # the search must see Patients staged by earlier messages
    result = service.search_engine.search(writer.conn, "Patient", params, base_url="")

    scored = []
    for e in result.entries:
        if e.mode != "match" or e.res_id == patient.get("id"):
            continue
        score, reasons = matching.score(patient, e.resource())
        scored.append((score, e.res_id, reasons))
    if not scored:
        return None, None
    score, best, reasons = max(scored)
    decision = matching.decide(score, thresholds)
    if decision == "auto-link":
        return best, None
    if decision == "review" and patient.get("id"):
        task = {
            "resourceType": "Task",
            "id": stable_id("link-review", patient["id"], best),
            "status": "requested",
            "intent": "proposal",
            "code": {"coding": [REVIEW_TASK_CODE]},
            "for": {"reference": f"Patient/{patient['id']}"},
            "focus": {"reference": f"Patient/{best}"},
            "authoredOn": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "description": f"Possible same person (score {score:.2f}): " + "; ".join(reasons),
            "input": [
                {"type": {"text": "score"}, "valueDecimal": round(score, 3)},
                {"type": {"text": "candidate"}, "valueReference": {"reference": f"Patient/{best}"}},
            ],
        }
        return None, task
    return None, None


def _surname_key(patient: dict[str, Any]) -> str | None:
    """The surname's pinyin (``zhang`` for 张 or Zhang), the key candidates must share."""
    from hub.identity.names import pinyin_syllables
    from hub.identity.names import split_chinese_name

    for name in patient.get("name") or ():
        family = name.get("family")
        if not family and name.get("text"):
            family = split_chinese_name(name["text"])[0]
        if family:
            return "".join(pinyin_syllables(family)) or None
    return None


def _rename_refs(bundle: dict[str, Any], renames: dict[str, str]) -> None:
    """Point every ``reference`` equal to a key of ``renames`` at its value, in place.

    Done on the entries' JSON text, one C-level replace per rename instead of a
    Python walk over every node: ``"reference":"<old>"`` is exactly a
    ``reference`` member with that value in orjson's compact output (a quote
    inside a string is escaped, so the pattern cannot start inside one).
    """
    text = orjson.dumps(bundle.get("entry") or [])
    changed = False
    for old, new in renames.items():
        pattern = b'"reference":' + orjson.dumps(old)
        if pattern in text:
            text = text.replace(pattern, b'"reference":' + orjson.dumps(new))
            changed = True
    if changed:
        bundle["entry"] = orjson.loads(text)
    for key, value in bundle.items():
        if key != "entry" and isinstance(value, (dict, list)):
            _rename_nodes(value, renames)


def _rename_nodes(node: Any, renames: dict[str, str]) -> None:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "reference" and isinstance(value, str) and value in renames:
                node[key] = renames[value]
            elif isinstance(value, (dict, list)):
                _rename_nodes(value, renames)
    elif isinstance(node, list):
        for item in node:
            _rename_nodes(item, renames)
