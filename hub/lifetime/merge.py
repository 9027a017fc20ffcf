"""Merging two records of one person, and undoing it.

:func:`merge` (``Patient/$merge``, and ADT A40 through the ingestion pipeline):

* the **source** Patient gets ``active: false`` and a ``replaced-by`` link to the target; it is
  kept, with all its data, so nothing of the merged record is lost;
* the **target** Patient gets a ``replaces`` link to the source and the source's identifiers
  (``use: old``) so searches by an old MRN still find the person;
* every resource in the source's compartment that refers to the source is re-pointed to the
  target, except Patients (their links say who is whom), Provenance and AuditEvent (they
  record what happened to the source) and derived data (five-colour Flags, household and
  village Groups: recomputed for both records instead);
* one ``Provenance`` (activity ``merge``) lists every version written (``target``) and the
  version each replaced (``entity`` role ``revision``): that is the undo record.

:func:`unmerge` (``Patient/$unmerge``) reads that Provenance and restores each resource's prior
version (a new version with the old content; resources the merge created are deleted). A
resource changed again since the merge is not overwritten: its references to the target are
turned back to the source instead. Everything happens in the caller's write transaction.
"""

from __future__ import annotations

import copy
from typing import Any

import orjson
import sqlalchemy as sa

from hub import codesystems as cs
from hub import outcomes
from hub.fhir.service import check_id
from hub.identity.ids import stable_id
from hub.lifetime import colours as live_colours
from hub.lifetime import groups
from hub.lifetime.journal import Journal
from hub.lifetime.journal import parse_versioned
from hub.lifetime.links import compartment_resources
from hub.storage import schema as s
from hub.storage.repository import Writer
from hub.storage.repository import format_instant

LIFECYCLE = "http://terminology.hl7.org/CodeSystem/iso-21089-lifecycle"
IDENTITY_ACTIVITY = "urn:fhirhub:codesystem:identity-activity"
EXT_SOURCE = "urn:fhirhub:extension:merge-source-patient"
EXT_TARGET = "urn:fhirhub:extension:merge-target-patient"
# Records of what happened: re-pointing them would rewrite history.
NOT_REPOINTED = frozenset(("Patient", "Provenance", "AuditEvent"))


def merge(
    writer: Writer,
    source_id: str,
    target_id: str,
    *,
    reason: str | None = None,
    agent: dict[str, Any] | None = None,
) -> dict[str, Any] | None:
    """Merge Patient ``source_id`` into ``target_id``; returns the merge Provenance
    (``None`` when they were merged already and nothing changed)."""
    check_id(source_id)
    check_id(target_id)
    if source_id == target_id:
        raise outcomes.unprocessable("source-patient and target-patient are the same Patient")
    source = _patient(writer, source_id, "source-patient")
    target = _patient(writer, target_id, "target-patient")
    elsewhere = _replaced_by(source) - {target_id}
    if elsewhere:
        raise outcomes.conflict(
            f"Patient/{source_id} was already merged into Patient/{sorted(elsewhere)[0]}"
        )
    if _replaced_by(target):
        raise outcomes.conflict(
            f"Patient/{target_id} was itself merged into Patient/{sorted(_replaced_by(target))[0]}; "
            "merge into the surviving record"
        )
    writer.flush()  # what this transaction staged (an A40's Patients) is part of the picture
    journal = Journal(writer)
    old_ref, new_ref = f"Patient/{source_id}", f"Patient/{target_id}"
    rows = compartment_resources(writer.conn, [source_id])
    writer.prefetch((t, i) for t, i, _ in rows)
    for res_type, res_id, content in rows:
        if res_type in NOT_REPOINTED:
            continue
        resource = orjson.loads(content)
        if _is_derived(resource):
            continue  # colours and households are recomputed below, not re-pointed
        if _repoint(resource, old_ref, new_ref):
            journal.update(resource, res_id)

    retired = copy.deepcopy(source)
    retired["active"] = False
    _add_link(retired, target_id, "replaced-by")
    journal.update(retired, source_id)
    survivor = copy.deepcopy(target)
    _add_link(survivor, source_id, "replaces")
    known = {(i.get("system"), i.get("value")) for i in survivor.get("identifier") or ()}
    for ident in source.get("identifier") or ():
        if (ident.get("system"), ident.get("value")) not in known:
            survivor.setdefault("identifier", []).append(dict(ident, use="old"))
    journal.update(survivor, target_id)
    live_colours.refresh(writer, [target_id, source_id], journal=journal)
    groups.refresh(writer, [source_id, target_id])

    if not journal.written:
        return None  # already merged, nothing left to move (a replayed A40)
    when = format_instant(writer.now)
    targets, entities = journal.provenance_lists()
    prov = {
        "resourceType": "Provenance",
        "id": stable_id("merge", source_id, target_id, when),
        "extension": [
            {"url": EXT_SOURCE, "valueReference": {"reference": old_ref}},
            {"url": EXT_TARGET, "valueReference": {"reference": new_ref}},
        ],
        "target": targets,
        "recorded": when,
        "activity": {
            "coding": [
                {"system": LIFECYCLE, "code": "merge", "display": "Merge Record Lifecycle Event"}
            ],
            "text": f"Patient/{source_id} merged into Patient/{target_id}",
        },
        "agent": [agent or {"who": {"display": "fhirhub"}}],
        "entity": entities,
    }
    if reason:
        prov["reason"] = [{"text": reason}]
    writer.create(prov, prov["id"])
    return prov


def unmerge(
    writer: Writer,
    provenance_id: str | None = None,
    *,
    source_id: str | None = None,
    target_id: str | None = None,
    agent: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Undo the merge recorded by Provenance ``provenance_id`` (or the latest merge of
    ``source_id`` into ``target_id``); returns the unmerge Provenance."""
    writer.flush()
    merge_prov = (
        _read_provenance(writer, provenance_id)
        if provenance_id
        else _latest_merge(writer, source_id, target_id)
    )
    source_ref, target_ref = _merge_parties(merge_prov)
    source_id, target_id = source_ref.split("/")[1], target_ref.split("/")[1]
    undo_id = stable_id("unmerge", merge_prov["id"])
    existing = writer.current("Provenance", undo_id)
    if existing is not None and not existing.deleted:
        raise outcomes.conflict(f"Provenance/{merge_prov['id']} was already undone")
    before = {}
    for ent in merge_prov.get("entity") or ():
        parsed = parse_versioned((ent.get("what") or {}).get("reference", ""))
        if parsed and ent.get("role") == "revision":
            before[(parsed[0], parsed[1])] = parsed[2]
    journal = Journal(writer)
    touched: list[tuple[str, str, int]] = []
    for tgt in merge_prov.get("target") or ():
        parsed = parse_versioned(tgt.get("reference", ""))
        if parsed:
            touched.append(parsed)
    writer.prefetch((t, i) for t, i, _ in touched)
    for res_type, res_id, after in touched:
        cur = writer.current(res_type, res_id)
        prior = before.get((res_type, res_id))
        if cur is not None and not cur.deleted and cur.version == after:
            if prior is None:
                journal.delete(res_type, res_id)
            else:
                journal.update(_version(writer, res_type, res_id, prior), res_id)
        elif cur is not None and not cur.deleted and res_type not in NOT_REPOINTED:
            # Changed since the merge: keep the new content, point it back at the source.
            resource = cur.resource()
            if _repoint(resource, target_ref, source_ref):
                journal.update(resource, res_id)
    # Whatever the restored versions say (an A40 wrote the source already retired), the
    # two records are separate again.
    _unlink(writer, journal, source_id, target_id, "replaced-by", reactivate=True)
    _unlink(writer, journal, target_id, source_id, "replaces")
    live_colours.refresh(writer, [source_id, target_id], journal=journal)
    groups.refresh(writer, [source_id, target_id])

    when = format_instant(writer.now)
    targets, entities = journal.provenance_lists()
    prov = {
        "resourceType": "Provenance",
        "id": undo_id,
        "extension": merge_prov.get("extension", []),
        "target": targets or [{"reference": source_ref}],
        "recorded": when,
        "activity": {
            "coding": [{"system": IDENTITY_ACTIVITY, "code": "unmerge", "display": "Unmerge"}],
            "text": f"merge of {source_ref} into {target_ref} undone",
        },
        "agent": [agent or {"who": {"display": "fhirhub"}}],
        "entity": [
            {"role": "source", "what": {"reference": f"Provenance/{merge_prov['id']}"}},
            *entities,
        ],
    }
    writer.create(prov, undo_id)
    return prov


# -- helpers --------------------------------------------------------------------------


def _patient(writer: Writer, patient_id: str, param: str) -> dict[str, Any]:
    stored = writer.current("Patient", patient_id)
    if stored is None or stored.deleted:
        raise outcomes.error(404, "not-found", f"{param}: Patient/{patient_id} is not known", param)
    return stored.resource()


def _replaced_by(patient: dict[str, Any]) -> set[str]:
    out = set()
    for link in patient.get("link") or ():
        ref = (link.get("other") or {}).get("reference", "")
        if link.get("type") == "replaced-by" and ref.startswith("Patient/"):
            out.add(ref.split("/")[1])
    return out


def _add_link(patient: dict[str, Any], other_id: str, link_type: str) -> None:
    links = patient.setdefault("link", [])
    ref = f"Patient/{other_id}"
    if not any(
        (lk.get("other") or {}).get("reference") == ref and lk.get("type") == link_type
        for lk in links
    ):
        links.append({"other": {"reference": ref}, "type": link_type})


def _unlink(writer, journal, patient_id, other_id, link_type, reactivate=False) -> None:
    stored = writer.current("Patient", patient_id)
    if stored is None or stored.deleted:
        return
    patient = stored.resource()
    ref = f"Patient/{other_id}"
    links = patient.get("link") or []
    kept = [
        lk
        for lk in links
        if not ((lk.get("other") or {}).get("reference") == ref and lk.get("type") == link_type)
    ]
    if len(kept) == len(links):
        return
    if kept:
        patient["link"] = kept
    else:
        patient.pop("link", None)
    if reactivate:
        patient["active"] = True
    journal.update(patient, patient_id)


def _is_derived(resource: dict[str, Any]) -> bool:
    """A five-colour Flag or a household/village Group: computed from the Patients' data."""
    kind = resource.get("resourceType")
    codings = (resource.get("code") or {}).get("coding") or ()
    if kind == "Flag":
        return any(c.get("system") == cs.FIVE_COLOUR for c in codings)
    if kind == "Group":
        return any(c.get("system") == cs.GROUP_KIND for c in codings)
    return False


def _repoint(node: Any, old: str, new: str) -> bool:
    """Turn references to ``old`` (``Patient/1``, ``Patient/1/_history/2``) into ``new``."""
    changed = False
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "reference" and isinstance(value, str):
                if value == old:
                    node[key] = new
                    changed = True
                elif value.startswith(old + "/_history/"):
                    node[key] = new  # the target's history is not the source's
                    changed = True
            elif isinstance(value, (dict, list)):
                changed = _repoint(value, old, new) or changed
    elif isinstance(node, list):
        for item in node:
            changed = _repoint(item, old, new) or changed
    return changed


def _version(writer: Writer, res_type: str, res_id: str, version: int) -> dict[str, Any]:
    h = s.resource_history
    row = writer.conn.execute(
        sa.select(h.c.content, h.c.deleted).where(
            h.c.res_type == res_type, h.c.res_id == res_id, h.c.version == version
        )
    ).first()
    if row is None or row.deleted:
        raise outcomes.conflict(f"{res_type}/{res_id} version {version} is not in the history")
    return orjson.loads(row.content)


def _read_provenance(writer: Writer, provenance_id: str) -> dict[str, Any]:
    stored = writer.current("Provenance", provenance_id)
    if stored is None or stored.deleted:
        raise outcomes.not_found(f"Provenance/{provenance_id} is not known")
    prov = stored.resource()
    codes = {c.get("code") for c in (prov.get("activity") or {}).get("coding") or ()}
    if "merge" not in codes:
        raise outcomes.unprocessable(f"Provenance/{provenance_id} does not record a merge")
    return prov


def _merge_parties(prov: dict[str, Any]) -> tuple[str, str]:
    ext = {
        e.get("url"): (e.get("valueReference") or {}).get("reference")
        for e in prov.get("extension") or ()
    }
    if not ext.get(EXT_SOURCE) or not ext.get(EXT_TARGET):
        raise outcomes.unprocessable(
            f"Provenance/{prov.get('id')} does not name the merged Patients"
        )
    return ext[EXT_SOURCE], ext[EXT_TARGET]


def _latest_merge(writer: Writer, source_id: str | None, target_id: str | None) -> dict[str, Any]:
    if not source_id or not target_id:
        raise outcomes.bad_request(
            "$unmerge needs the merge Provenance (provenance) or source-patient and target-patient"
        )
    found = []
    for _, _, content in compartment_resources(writer.conn, [source_id], ["Provenance"]):
        prov = orjson.loads(content)
        codes = {c.get("code") for c in (prov.get("activity") or {}).get("coding") or ()}
        if "merge" not in codes:
            continue
        try:
            parties = _merge_parties(prov)
        except outcomes.OperationOutcomeError:
            continue
        if parties == (f"Patient/{source_id}", f"Patient/{target_id}"):
            undone = writer.current("Provenance", stable_id("unmerge", prov["id"]))
            if undone is None or undone.deleted:
                found.append(prov)
    if not found:
        raise outcomes.not_found(
            f"No merge of Patient/{source_id} into Patient/{target_id} to undo"
        )
    return max(found, key=lambda p: p.get("recorded", ""))
