"""What the ingestion pipeline does for the lifetime file, in the transaction that stores a message.

* **Merges.** A Patient arriving retired (``active: false``) with a ``replaced-by`` link is a
  merge notice (HL7 v2 ``ADT^A40`` maps to exactly that; so may a CDA or registry adapter).
  :func:`merge_requests` finds them in the mapped Bundle after the identity stage (so the
  survivor's id is already the hub's), and :func:`apply_merges` applies
  :func:`hub.lifetime.merge.merge` to each: the same re-pointing and Provenance as
  ``Patient/$merge``, reversible with ``$unmerge``.
* **Colours and Groups.** The people whose evidence the message touched (:func:`touched`) get
  their five-colour Flags recomputed, and changed Patients their household and village Groups
  (:func:`refresh`, once per committed group of messages), so what ``$ingest`` answers is
  already consistent. (``hub worker``'s consumer does the same for every other write.)
"""

from __future__ import annotations

from collections.abc import Set
from typing import Any

from hub.lifetime import colours as live_colours
from hub.lifetime import groups
from hub.lifetime import merge as merging
from hub.storage.repository import Writer


def merge_requests(bundle: dict[str, Any]) -> list[tuple[str, str]]:
    """(source, target) Patient ids of the retired Patients in ``bundle``."""
    out = []
    for entry in bundle.get("entry") or ():
        res = entry.get("resource") or {}
        if res.get("resourceType") != "Patient" or res.get("active") is not False:
            continue
        for link in res.get("link") or ():
            ref = (link.get("other") or {}).get("reference", "")
            if link.get("type") == "replaced-by" and ref.startswith("Patient/"):
                target = ref.split("/")[1]
                if res.get("id") and target != res["id"]:
                    out.append((res["id"], target))
    return out


# ``birth_dates``' mark of a Patient with no live stored version.
NOT_STORED = object()


def birth_dates(writer: Writer, bundle: dict[str, Any]) -> dict[str, Any]:
    """The stored ``birthDate`` of each Patient ``bundle`` writes, read before it is written.

    Of a Patient, :func:`hub.colours.classify` reads only the birth date (age rules), so a
    stored Patient rewritten with the same one changes no colour (see :func:`touched`).
    :data:`NOT_STORED` marks a Patient not stored (or deleted): writing it can. The Patients
    were read (and locked) by the identity stage, so this costs no query.
    """
    out: dict[str, Any] = {}
    for entry in bundle.get("entry") or ():
        res = entry.get("resource") or {}
        if res.get("resourceType") == "Patient" and isinstance(res.get("id"), str):
            stored = writer.current("Patient", res["id"])
            live = stored is not None and not stored.deleted
            out[res["id"]] = stored.resource().get("birthDate") if live else NOT_STORED
    return out


def touched(
    bundle: dict[str, Any],
    written: Set[tuple[str, str]] | None = None,
    born: dict[str, Any] | None = None,
) -> tuple[set[str], set[str]]:
    """(people whose evidence the Bundle writes, Patients it writes).

    ``written``: the (type, id) the transaction actually wrote; entries whose
    write was a no-op (a re-sent Patient, unchanged) are left out. Observations
    count only when coded as evidence (lab results never change a colour).
    ``born``: :func:`birth_dates` read before the write; a stored Patient written
    with the same birth date is then no evidence (its Groups are still refreshed).
    """
    evidence: set[str] = set()
    patients: set[str] = set()
    for entry in bundle.get("entry") or ():
        res = entry.get("resource") or {}
        kind = res.get("resourceType")
        if written is not None and (kind, res.get("id")) not in written:
            continue
        if kind == "Patient" and res.get("id"):
            patients.add(res["id"])
            before = NOT_STORED if born is None else born.get(res["id"], NOT_STORED)
            if before is NOT_STORED or before != res.get("birthDate"):
                evidence.add(res["id"])
        elif kind in live_colours.EVIDENCE_TYPES:
            if kind == "Observation" and not _evidence_observation(res):
                continue
            for key in ("subject", "patient"):
                ref = (
                    (res.get(key) or {}).get("reference", "")
                    if isinstance(res.get(key), dict)
                    else ""
                )
                if ref.startswith("Patient/"):
                    evidence.add(ref.split("/")[1])
    return evidence, patients


def _evidence_observation(res: dict[str, Any]) -> bool:
    code = res.get("code")
    codings = code.get("coding") if isinstance(code, dict) else None
    return any(
        isinstance(c, dict) and c.get("system") in live_colours.EVIDENCE_OBSERVATION_SYSTEMS
        for c in codings or ()
    )


def apply_merges(
    writer: Writer, merges: list[tuple[str, str]], agent: dict | None = None
) -> set[str]:
    """Apply merge notices; returns the Patients whose colours and Groups need a refresh."""
    affected: set[str] = set()
    for source, target in merges:
        merging.merge(
            writer, source, target, reason="merge notice from the source system", agent=agent
        )
        affected.update((source, target))
    return affected


def refresh(writer: Writer, evidence: set[str], patients: set[str]) -> None:
    """Recompute the colours of ``evidence`` and the Groups of ``patients``."""
    if evidence:
        live_colours.refresh(writer, sorted(evidence))
    if patients:
        groups.refresh(writer, sorted(patients))
