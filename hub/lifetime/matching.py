"""``Patient/$match``: candidates for a Patient resource, scored by :mod:`hub.identity.matching`.

Candidates are gathered with a few index searches (same resident ID number, same birth date,
same phone, same family name; at most :data:`PER_SEARCH` each), then every candidate is
scored against the input. Retired records (merged away: ``replaced-by``) are left out, as
the surviving record stands for them.
"""

from __future__ import annotations

from typing import Any

from hub import outcomes
from hub.identity import RESIDENT_ID_SYSTEM
from hub.identity import matching
from hub.identity import resident_id
from hub.identity.ids import patient_id_for_resident_id
from hub.identity.names import is_chinese
from hub.identity.names import split_chinese_name
from hub.lifetime.visibility import EVERYTHING
from hub.lifetime.visibility import Visibility

PER_SEARCH = 100


def candidates(
    engine: Any, conn: Any, patient: dict[str, Any], visibility: Visibility = EVERYTHING
) -> list[dict[str, Any]]:
    """Stored Patients that may be the person ``patient`` describes."""
    searches: list[list[tuple[str, str]]] = []
    ids: list[str] = []
    for ident in patient.get("identifier") or ():
        if ident.get("system") == RESIDENT_ID_SYSTEM and ident.get("value"):
            try:
                ids.append(patient_id_for_resident_id(resident_id.normalise(ident["value"])))
            except resident_id.InvalidResidentId:
                pass
            searches.append([("identifier", f"{RESIDENT_ID_SYSTEM}|{ident['value']}")])
    if patient.get("birthDate"):
        searches.append([("birthdate", patient["birthDate"])])
    for telecom in patient.get("telecom") or ():
        if telecom.get("system") == "phone" and telecom.get("value"):
            searches.append([("phone", telecom["value"])])
    for family in _families(patient):
        searches.append([("family", family)])
    if ids:
        searches.append([("_id", ",".join(ids))])
    if not searches:
        raise outcomes.unprocessable(
            "The Patient has nothing to match on: give an identifier, birthDate, phone or name",
            "Parameters.parameter[resource]",
        )
    found: dict[str, dict[str, Any]] = {}
    for params in searches:
        result = engine.search(
            conn,
            "Patient",
            [*params, ("_count", str(PER_SEARCH)), ("_total", "none")],
            base_url="",
            hidden_labels=visibility.hidden_labels,
        )
        for e in result.entries:
            if e.mode == "match" and e.res_id not in found:
                found[e.res_id] = e.resource()
    out = [p for p in found.values() if not _retired(p)]
    return visibility.filter(out)


def match(
    engine: Any,
    conn: Any,
    patient: dict[str, Any],
    *,
    only_certain: bool = False,
    count: int | None = None,
    thresholds: matching.Thresholds | None = None,
    base_url: str = "",
    visibility: Visibility = EVERYTHING,
) -> dict[str, Any]:
    """The ``$match`` searchset Bundle: candidates scoring at least "possible", best first."""
    thresholds = thresholds or matching.Thresholds()
    scored = []
    for candidate in candidates(engine, conn, patient, visibility):
        value, _reasons = matching.score(patient, candidate)
        grade = matching.match_grade(value, thresholds)
        if grade == "certainly-not" or (only_certain and grade != "certain"):
            continue
        scored.append((candidate, value))
    if only_certain and len(scored) > 1:
        # "certain" must mean one: several certain candidates are for a person to decide.
        scored = []
    return matching.match_bundle(scored, thresholds=thresholds, base_url=base_url, count=count)


def _families(patient: dict[str, Any]) -> list[str]:
    out = []
    for name in patient.get("name") or ():
        if name.get("family"):
            out.append(name["family"])
        elif name.get("text") and is_chinese(name["text"]):
            family, _given = split_chinese_name(name["text"])
            if family:
                out.append(family)
    return list(dict.fromkeys(out))


def _retired(patient: dict[str, Any]) -> bool:
    return any(link.get("type") == "replaced-by" for link in patient.get("link") or ())
