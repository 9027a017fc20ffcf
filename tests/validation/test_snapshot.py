"""The snapshot generator against the official snapshots of the R4 core profiles.

The core extract keeps the differentials of the 439 constraint StructureDefinitions of
hl7.fhir.r4.core (profiles such as ``vitalsigns``/``bp`` and extensions); each is regenerated
over its base and compared with the snapshot HL7 published.
"""

from __future__ import annotations

import re

import pytest

from hub.validation.definitions import Definitions
from hub.validation.snapshot import SnapshotError
from hub.validation.snapshot import generate_snapshot

# The official generator names a renamed choice (valueQuantity) as a type slice
# "value[x]:valueQuantity"; this one constrains "value[x]" itself. Same meaning.
_TYPE_SLICE = re.compile(r"(\w+)\[x\]:\1[A-Z]\w*")


def _norm(eid: str) -> str:
    return _TYPE_SLICE.sub(lambda m: m.group(1) + "[x]", eid)


@pytest.fixture(scope="module")
def core_profiles():
    defs = Definitions()
    return defs, [
        sd
        for sd in defs.structures()
        if sd.get("derivation") == "constraint" and "differential" in sd
    ]


def test_every_core_differential_generates(core_profiles):
    defs, sds = core_profiles
    assert len(sds) == 439
    failures = []
    for sd in sds:
        try:
            generate_snapshot(sd, defs)
        except SnapshotError as exc:
            failures.append(str(exc))
    assert failures == []


def test_generated_snapshots_match_the_official_ones(core_profiles):
    defs, sds = core_profiles
    mismatches = []
    for sd in sds:
        mine = {e["id"]: e for e in generate_snapshot(sd, defs)}
        for off in sd["snapshot"]["element"]:
            eid = _norm(off["id"])
            if eid != off["id"]:
                continue  # the type slice itself: its constraints sit on value[x] here
            got = mine.get(eid)
            if got is None:
                mismatches.append((sd["url"], eid, "missing"))
                continue
            for key in ("min", "max"):
                if str(off.get(key)) != str(got.get(key)):
                    mismatches.append((sd["url"], eid, key))
            if [t["code"] for t in off.get("type", ())] != [t["code"] for t in got.get("type", ())]:
                if not any(
                    _norm(o["id"]) != o["id"] and _norm(o["id"]).startswith(eid)
                    for o in sd["snapshot"]["element"]
                ):
                    mismatches.append((sd["url"], eid, "type"))
            for key, value in off.items():
                if key.startswith(("fixed", "pattern")) and got.get(key) != value:
                    mismatches.append((sd["url"], eid, key))
    # known (10): the minimum of a renamed choice lands on value[x] rather than on a type
    # slice (bmi, devicemetricobservation); children of extension slices the official generator
    # unfolds from the extension's definition (elementdefinition-de)
    assert len(mismatches) <= 10, mismatches
