"""Build ``hub/data/fhir-r4-terminology.json.gz``: the R4 code systems and value sets served.

The terminology service serves every CodeSystem, ValueSet and ConceptMap of the official
``hl7.fhir.r4.core#4.0.1`` package (CC0-1.0, HL7 FHIR specification content). The
validation extract (:mod:`hub.validation.build_data`) keeps only code lists; the
service needs displays, designations, properties and the hierarchy, the
ValueSets' ``compose`` and the ConceptMaps' groups. Narrative, definitions and publishing metadata are left
out. Run it again only to rebuild the extract deliberately::

    python -m hub.terminology.build_core path/to/hl7.fhir.r4.core-4.0.1.tgz
"""

from __future__ import annotations

import gzip
import json
import sys
import tarfile
from pathlib import Path

from hub.paths import DATA_DIR

OUTPUT = DATA_DIR / "fhir-r4-terminology.json.gz"

LICENCE_NOTE = (
    "Extract of the HL7 FHIR R4 core package hl7.fhir.r4.core#4.0.1 (http://hl7.org/fhir/R4), "
    "licensed CC0-1.0 (public domain dedication) by HL7 International. Only the CodeSystems' "
    "concepts (code, display, designations, properties, hierarchy), the ValueSets' "
    "compose and expansion and the ConceptMaps' groups are kept."
)

_CS_KEYS = (
    "resourceType",
    "id",
    "url",
    "version",
    "name",
    "title",
    "status",
    "content",
    "caseSensitive",
    "hierarchyMeaning",
    "valueSet",
    "property",
    "filter",
    "count",
    "supplements",
)
_VS_KEYS = ("resourceType", "id", "url", "version", "name", "title", "status", "compose")
_CM_KEYS = (
    "resourceType",
    "id",
    "url",
    "version",
    "name",
    "title",
    "status",
    "sourceUri",
    "sourceCanonical",
    "targetUri",
    "targetCanonical",
    "group",
)


def _concept(c: dict) -> dict:
    out = {k: c[k] for k in ("code", "display") if k in c}
    for key in ("designation", "property"):
        if key in c:
            out[key] = [{k: v for k, v in d.items() if k != "extension"} for d in c[key]]
    if "concept" in c:
        out["concept"] = [_concept(x) for x in c["concept"]]
    return out


def compact_code_system(cs: dict) -> dict:
    out = {k: cs[k] for k in _CS_KEYS if k in cs}
    if "concept" in cs:
        out["concept"] = [_concept(c) for c in cs["concept"]]
    return out


def compact_value_set(vs: dict) -> dict:
    out = {k: vs[k] for k in _VS_KEYS if k in vs}
    if "compose" not in vs and "expansion" in vs:
        out["expansion"] = {"contains": vs["expansion"].get("contains", [])}
    return out


def build(tgz: Path) -> dict:
    code_systems, value_sets, concept_maps = [], [], []
    with tarfile.open(tgz) as tar:
        for member in sorted(tar.getmembers(), key=lambda m: m.name):
            name = member.name.rsplit("/", 1)[-1]
            if not member.isfile() or not name.endswith(".json"):
                continue
            if name.startswith("CodeSystem-"):
                code_systems.append(compact_code_system(json.load(tar.extractfile(member))))
            elif name.startswith("ValueSet-"):
                value_sets.append(compact_value_set(json.load(tar.extractfile(member))))
            elif name.startswith("ConceptMap-"):
                cm = json.load(tar.extractfile(member))
                concept_maps.append({k: cm[k] for k in _CM_KEYS if k in cm})
    return {
        "licence": LICENCE_NOTE,
        "package": "hl7.fhir.r4.core#4.0.1",
        "codeSystems": code_systems,
        "valueSets": value_sets,
        "conceptMaps": concept_maps,
    }


def main(argv: list[str]) -> None:
    if len(argv) != 2:
        raise SystemExit("usage: python -m hub.terminology.build_core hl7.fhir.r4.core-4.0.1.tgz")
    data = build(Path(argv[1]))
    raw = json.dumps(data, ensure_ascii=False, separators=(",", ":"), sort_keys=True).encode()
    # mtime=0 keeps the output byte-identical between runs.
    with open(OUTPUT, "wb") as fh, gzip.GzipFile(fileobj=fh, mode="wb", mtime=0) as gz:
        gz.write(raw)
    print(
        f"{OUTPUT.name}: {len(data['codeSystems'])} CodeSystems, {len(data['valueSets'])} "
        f"ValueSets, {len(data['conceptMaps'])} ConceptMaps, {len(raw)} bytes of JSON, {OUTPUT.stat().st_size} compressed"
    )


if __name__ == "__main__":
    main(sys.argv)
