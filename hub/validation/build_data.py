"""Build ``hub/data/fhir-r4-core.json.gz``, the compact extract of the official R4 definitions.

The hub validates against the official ``hl7.fhir.r4.core#4.0.1`` package (CC0-1.0, HL7 FHIR
specification content). Shipping the 8 MB package is unnecessary: the validator needs only the
snapshot elements of the StructureDefinitions (path, cardinality, types, bindings, fixed and
pattern values, constraints, slicing) and the expansions of the ValueSets that core elements bind
with ``required`` or ``extensible`` strength. This script keeps exactly that and writes one
gzip-compressed JSON document; run it again only to rebuild the extract deliberately::

    python -m hub.validation.build_data path/to/hl7.fhir.r4.core-4.0.1.tgz

Expansions are computed here, once: ``{"system": [codes]}`` per ValueSet, ``null`` for a code
system the package does not define in full (LOINC, SNOMED CT, UCUM, BCP-47...): codes from those
systems are not checked.
"""

from __future__ import annotations

import gzip
import json
import sys
import tarfile
from pathlib import Path

from hub.paths import DATA_DIR
from hub.validation.terminology import Terminology
from hub.validation.terminology import all_codes

OUTPUT = DATA_DIR / "fhir-r4-core.json.gz"

LICENCE_NOTE = (
    "Extract of the HL7 FHIR R4 core package hl7.fhir.r4.core#4.0.1 (http://hl7.org/fhir/R4), "
    "licensed CC0-1.0 (public domain dedication) by HL7 International. Only snapshot elements, "
    "constraints and ValueSet expansions needed for validation are kept."
)

# Element keys the validator and the snapshot generator read; everything else is documentation.
_ELEMENT_KEYS = (
    "id",
    "path",
    "sliceName",
    "slicing",
    "min",
    "max",
    "base",
    "type",
    "contentReference",
    "binding",
    "constraint",
    "maxLength",
)
_ELEMENT_PREFIXES = ("fixed", "pattern", "minValue", "maxValue")
_FHIR_TYPE_EXT = "http://hl7.org/fhir/StructureDefinition/structuredefinition-fhir-type"
_REGEX_EXT = "http://hl7.org/fhir/StructureDefinition/regex"


def _compact_type(t: dict) -> dict:
    out = {k: t[k] for k in ("code", "profile", "targetProfile") if k in t}
    for ext in t.get("extension", ()):
        if ext.get("url") == _FHIR_TYPE_EXT:
            out["extension"] = [{"url": _FHIR_TYPE_EXT, "valueUrl": ext["valueUrl"]}]
        elif ext.get("url") == _REGEX_EXT:
            out.setdefault("_regex", ext["valueString"])
    return out


def compact_element(e: dict) -> dict:
    out = {}
    for k, v in e.items():
        if k in _ELEMENT_KEYS or k.startswith(_ELEMENT_PREFIXES):
            out[k] = v
    if "base" in e:
        out["base"] = {k: e["base"][k] for k in ("path", "min", "max")}
    if "type" in e:
        out["type"] = [_compact_type(t) for t in e["type"]]
    if "binding" in e:
        out["binding"] = {k: e["binding"][k] for k in ("strength", "valueSet") if k in e["binding"]}
    if "constraint" in e:
        out["constraint"] = [
            {k: c[k] for k in ("key", "severity", "human", "expression", "source") if k in c}
            for c in e["constraint"]
        ]
    return out


def compact_structure_definition(sd: dict) -> dict:
    keep = ("resourceType", "id", "url", "name", "kind", "abstract", "type", "baseDefinition")
    out = {k: sd[k] for k in keep if k in sd}
    out["derivation"] = sd.get("derivation", "specialization")
    if "context" in sd:
        out["context"] = sd["context"]
    out["snapshot"] = {"element": [compact_element(e) for e in sd["snapshot"]["element"]]}
    if out["derivation"] == "constraint" and "differential" in sd:
        # kept so that the snapshot generator can be tested against the official snapshots
        out["differential"] = {
            "element": [compact_element(e) for e in sd["differential"]["element"]]
        }
    return out


def build(tgz: Path) -> dict:
    sds, value_sets, code_systems = [], {}, {}
    with tarfile.open(tgz) as tar:
        for member in tar.getmembers():
            name = member.name.rsplit("/", 1)[-1]
            if not member.isfile() or not name.endswith(".json"):
                continue
            if not name.startswith(("StructureDefinition-", "ValueSet-", "CodeSystem-")):
                continue
            res = json.load(tar.extractfile(member))
            rt = res.get("resourceType")
            if rt == "StructureDefinition" and res.get("kind") != "logical":
                sds.append(res)
            elif rt == "ValueSet":
                value_sets[res["url"]] = res
            elif rt == "CodeSystem":
                code_systems[res["url"]] = res
    term = Terminology(value_sets, code_systems)
    bound: set[str] = set()
    compact = []
    for sd in sorted(sds, key=lambda s: s["url"]):
        if "snapshot" not in sd:
            continue
        c = compact_structure_definition(sd)
        compact.append(c)
        for e in c["snapshot"]["element"]:
            b = e.get("binding")
            if b and b.get("strength") in ("required", "extensible") and b.get("valueSet"):
                bound.add(b["valueSet"].split("|")[0])
    expansions = {}
    for url in sorted(bound):
        exp = term.expand(url)
        if exp is not None:
            expansions[url] = exp
    # Code systems held in full: a code from one of them that the system does not define is wrong
    # whatever the binding strength, so keep their code lists (only for systems used in bindings).
    held = {}
    for exp in expansions.values():
        for system in exp:
            cs = code_systems.get(system)
            if cs and cs.get("content") == "complete" and system not in held:
                held[system] = sorted(all_codes(cs))
    return {
        "licence": LICENCE_NOTE,
        "package": "hl7.fhir.r4.core#4.0.1",
        "structureDefinitions": compact,
        "valueSets": expansions,
        "codeSystems": held,
    }


def main(argv: list[str]) -> None:
    if len(argv) != 2:
        raise SystemExit("usage: python -m hub.validation.build_data hl7.fhir.r4.core-4.0.1.tgz")
    data = build(Path(argv[1]))
    raw = json.dumps(data, ensure_ascii=False, separators=(",", ":"), sort_keys=True).encode()
    # mtime=0 keeps the output byte-identical between runs.
    with open(OUTPUT, "wb") as fh, gzip.GzipFile(fileobj=fh, mode="wb", mtime=0) as gz:
        gz.write(raw)
    print(
        f"{OUTPUT.name}: {len(data['structureDefinitions'])} StructureDefinitions, "
        f"{len(data['valueSets'])} ValueSet expansions, {len(data['codeSystems'])} CodeSystems, "
        f"{len(raw)} bytes of JSON, {OUTPUT.stat().st_size} compressed"
    )


if __name__ == "__main__":
    main(sys.argv)
