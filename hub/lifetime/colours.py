"""Five-colour Flags as live data: recomputed from the evidence whenever it changes.

:func:`refresh` reads a person's evidence (Conditions, programme ``EpisodeOfCare``,
registration-form and registry ``Observation``, earlier Flags) from their compartment, runs
:func:`hub.colours.classify` and writes the Flags (deterministic ids) in the caller's
transaction. Unchanged Flags write nothing; when any Flag changes, a ``Provenance`` lists the
evidence. Called inline after ingestion and by the change-feed consumer of ``hub worker``
(:mod:`hub.lifetime.consumer`) after any other write.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import Any

import orjson

from hub import codesystems as cs
from hub import colours
from hub.lifetime.journal import Journal
from hub.lifetime.links import compartments_by_patient
from hub.storage.repository import Writer
from hub.storage.repository import format_instant

# The resource types whose change can change a person's colours.
EVIDENCE_TYPES = frozenset(("Patient", "Condition", "EpisodeOfCare", "Observation"))
_READ_TYPES = (*sorted(EVIDENCE_TYPES), "Flag")
# The Observations :func:`hub.colours.classify` reads: registration-form items and the
# veterans registry's entitlement (lab results and vital signs are never evidence).
EVIDENCE_OBSERVATION_SYSTEMS = (cs.HEALTH_RECORD_ITEM, cs.VETERAN_STATUS)


def current(conn: Any, patient_id: str, as_of: dt.date | None = None) -> colours.Classification:
    """The classification of one person from what is stored now (nothing is written)."""
    found = compartments_by_patient(
        conn, [patient_id], _READ_TYPES, observation_systems=EVIDENCE_OBSERVATION_SYSTEMS
    )
    return colours.classify(patient_id, [orjson.loads(c) for c in found[patient_id]], as_of=as_of)


def refresh(
    writer: Writer,
    patient_ids: Iterable[str],
    *,
    as_of: dt.date | None = None,
    journal: Journal | None = None,
) -> list[str]:
    """Recompute and write the Flags of each person; returns the ids whose Flags changed."""
    writer.flush()  # staged evidence must be visible to the compartment query
    journal = journal or Journal(writer)
    ids = list(dict.fromkeys(patient_ids))
    writer.prefetch(("Patient", pid) for pid in ids)
    # The Flags that may be written, in one query rather than one per Flag.
    writer.prefetch(("Flag", colours.flag_id_for(pid, c)) for pid in ids for c in colours.COLOURS)
    evidence = compartments_by_patient(
        writer.conn, ids, _READ_TYPES, observation_systems=EVIDENCE_OBSERVATION_SYSTEMS
    )
    changed = []
    for pid in ids:
        patient = writer.current("Patient", pid)
        if patient is None or patient.deleted:
            continue
        result = colours.classify(pid, [orjson.loads(c) for c in evidence[pid]], as_of=as_of)
        written = [f for f in result.flags if journal.update(dict(f), f["id"])]
        if written:
            when = format_instant(writer.now)
            prov = colours.provenance(result, pid, when)
            journal.update(prov, prov["id"])
            changed.append(pid)
    return changed


def classification_parameters(patient_id: str, result: colours.Classification) -> dict:
    """``$colours``: the current colours, the displayed one, the Flags and the evidence."""
    params: list[dict[str, Any]] = [
        {"name": "patient", "valueReference": {"reference": f"Patient/{patient_id}"}}
    ]
    if result.displayed:
        params.append(
            {
                "name": "displayed",
                "valueCoding": {
                    "system": cs.FIVE_COLOUR,
                    "code": result.displayed,
                    "display": colours.DISPLAY[result.displayed],
                },
            }
        )
    for colour in result.colours:
        parts = [
            {
                "name": "code",
                "valueCoding": {
                    "system": cs.FIVE_COLOUR,
                    "code": colour,
                    "display": colours.DISPLAY[colour],
                },
            }
        ]
        for ev in result.evidence:
            if ev.colour != colour:
                continue
            evidence = [
                {"name": "reference", "valueReference": {"reference": ev.reference}},
                {"name": "rule", "valueString": ev.rule},
                {"name": "reason", "valueString": ev.text},
            ]
            if ev.since:
                evidence.append({"name": "since", "valueString": ev.since})
            parts.append({"name": "evidence", "part": evidence})
        params.append({"name": "colour", "part": parts})
    for flag in result.flags:
        params.append({"name": "flag", "resource": flag})
    return {"resourceType": "Parameters", "parameter": params}
