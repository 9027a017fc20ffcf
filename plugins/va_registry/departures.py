"""People who left the registry: present in the previous import, absent now.

They are never deleted: their veteran status is marked ended and their
programme enrolment finished, with the date, so history and reports stay
right. The pipeline keeps, per site, the Patient ids of the last import
(``previous_ids``) and calls :func:`departures` after mapping a new file.

The entries are ``PATCH`` requests with a FHIRPath Patch ``Parameters`` body
(FHIR R4 §3.1.0.6.2): the patch touches only elements the adapter always
writes, so it needs no copy of the stored resource:

- Observation (veteran-entitlement): ``replace`` the ``benefit-status``
  component value with ``ended`` and ``add`` a ``departed`` component with the date;
- EpisodeOfCare (each programme): ``replace`` ``status`` with ``finished`` and
  ``add`` a ``statusHistory`` entry ``finished`` starting on the date.

A person who comes back in a later file is simply re-written by that file's
``PUT`` entries (active again).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import Any

from hub.plugin_api import codesystems as cs

from .to_fhir import DEFAULT_PROGRAMMES
from .to_fhir import episode_id
from .to_fhir import veteran_status_id


def departures(
    previous_ids: Iterable[str],
    current_ids: Iterable[str],
    *,
    on: dt.date | None = None,
    programmes: Iterable[str] = DEFAULT_PROGRAMMES,
) -> list[dict[str, Any]]:
    """Transaction entries marking each person in ``previous_ids`` but not in ``current_ids``.

    :param previous_ids: Patient ids of the site's previous import.
    :param current_ids: Patient ids of this import (the Bundle's Patient entries).
    :param on: the departure date (default today).
    :returns: ``PATCH`` entries, in a stable order (sorted by Patient id).
    """
    day = (on or dt.date.today()).isoformat()
    gone = sorted(set(previous_ids) - set(current_ids))
    entries: list[dict[str, Any]] = []
    for patient_id in gone:
        entries.append(_patch(f"Observation/{veteran_status_id(patient_id)}", _status_ops(day)))
        for programme in programmes:
            entries.append(
                _patch(f"EpisodeOfCare/{episode_id(programme, patient_id)}", _episode_ops(day))
            )
    return entries


def current_patient_ids(bundle: dict[str, Any]) -> list[str]:
    """The Patient ids a mapped registry Bundle writes (the next import's ``previous_ids``)."""
    return [
        e["resource"]["id"]
        for e in bundle.get("entry", [])
        if e.get("resource", {}).get("resourceType") == "Patient"
    ]


def _status_ops(day: str) -> list[dict[str, Any]]:
    ended = _coding(cs.VETERAN_BENEFIT_STATUS, "ended", "left the registry")
    departed = _coding(cs.VETERAN_STATUS, "departed", "left the registry on")
    return [
        _op(
            "replace",
            "Observation.component.where(code.coding.code = 'benefit-status').value",
            [{"name": "value", "valueCodeableConcept": ended}],
        ),
        # A backbone element is given as parts named after its children (FHIRPath Patch).
        _op(
            "add",
            "Observation",
            [
                {"name": "name", "valueString": "component"},
                {
                    "name": "value",
                    "part": [
                        {"name": "code", "valueCodeableConcept": departed},
                        {"name": "value", "valueDateTime": day},
                    ],
                },
            ],
        ),
    ]


def _episode_ops(day: str) -> list[dict[str, Any]]:
    return [
        _op("replace", "EpisodeOfCare.status", [{"name": "value", "valueCode": "finished"}]),
        _op(
            "add",
            "EpisodeOfCare",
            [
                {"name": "name", "valueString": "statusHistory"},
                {
                    "name": "value",
                    "part": [
                        {"name": "status", "valueCode": "finished"},
                        {"name": "period", "valuePeriod": {"start": day}},
                    ],
                },
            ],
        ),
    ]


def _coding(system: str, code: str, display: str) -> dict[str, Any]:
    return {"coding": [{"system": system, "code": code, "display": display}]}


def _op(kind: str, path: str, rest: list[dict[str, Any]]) -> dict[str, Any]:
    parts = [{"name": "type", "valueCode": kind}, {"name": "path", "valueString": path}]
    return {"name": "operation", "part": parts + rest}


def _patch(url: str, operations: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "fullUrl": url,
        "resource": {"resourceType": "Parameters", "parameter": operations},
        "request": {"method": "PATCH", "url": url},
    }
