"""Extract the compact tables the search engine needs from the official R4 package.

Run once when the definitions change::

    python tools/build_search_data.py DEFINITIONS_DIR

``DEFINITIONS_DIR`` holds ``hl7.fhir.r4.core-4.0.1.tgz`` and ``search-parameters.json``
(both CC0, HL7 FHIR R4 4.0.1). It writes into ``hub/data/``:

* ``search-parameters.r4.json``: the official SearchParameter Bundle, copied as is;
* ``structure.r4.json``: per resource type, the top-level elements flagged ``isSummary``,
  the mandatory ones (``min > 0``) and the choice elements (``value[x]``), plus the names of
  every choice element in any resource or datatype (for the fast FHIRPath extractor);
* ``compartments.r4.json``: the five CompartmentDefinitions as ``{comp: {type: [params]}}``;
* ``operation-definitions.r4.json``: the standard OperationDefinitions (``$validate``,
  ``$everything``...) by canonical URL, without their narrative; the hub's own definitions of
  the standard operations it serves start from these (``hub.fhir.operation_definitions``).

Shipping these few hundred kilobytes avoids shipping the 4.5 MB package.
"""

from __future__ import annotations

import json
import pathlib
import shutil
import sys
import tarfile

OUT = pathlib.Path(__file__).resolve().parent.parent / "hub" / "data"


def main(definitions: str) -> None:
    src = pathlib.Path(definitions)
    shutil.copyfile(src / "search-parameters.json", OUT / "search-parameters.r4.json")
    structure: dict[str, dict] = {}
    choice_names: set[str] = set()
    compartments: dict[str, dict[str, list[str]]] = {}
    operations: dict[str, dict] = {}
    with tarfile.open(src / "hl7.fhir.r4.core-4.0.1.tgz") as tar:
        for member in tar.getmembers():
            name = member.name.rsplit("/", 1)[-1]
            if (
                name.startswith("CompartmentDefinition-")
                and name != "CompartmentDefinition-example.json"
            ):
                doc = json.load(tar.extractfile(member))
                compartments[doc["code"]] = {
                    r["code"]: r["param"] for r in doc.get("resource", []) if r.get("param")
                }
            if (
                name.startswith("OperationDefinition-")
                and name != "OperationDefinition-example.json"
            ):
                doc = json.load(tar.extractfile(member))
                doc.pop("text", None)
                operations[doc["url"]] = doc
            if not name.startswith("StructureDefinition-"):
                continue
            sd = json.load(tar.extractfile(member))
            if sd.get("derivation") != "specialization" or sd.get("kind") == "logical":
                continue
            elements = sd.get("snapshot", {}).get("element", [])
            for el in elements:
                if el["path"].endswith("[x]"):
                    choice_names.add(el["path"].rsplit(".", 1)[-1][:-3])
            if sd["kind"] != "resource" or sd.get("abstract"):
                continue
            summary, mandatory, choice = [], [], []
            for el in elements:
                parts = el["path"].split(".")
                if len(parts) != 2:
                    continue
                field = parts[1]
                if field.endswith("[x]"):
                    field = field[:-3]
                    choice.append(field)
                if el.get("isSummary"):
                    summary.append(field)
                if el.get("min", 0) > 0:
                    mandatory.append(field)
            structure[sd["type"]] = {"summary": summary, "mandatory": mandatory, "choice": choice}
    out = {"choice_names": sorted(choice_names), "types": dict(sorted(structure.items()))}
    (OUT / "structure.r4.json").write_text(json.dumps(out, separators=(",", ":")) + "\n")
    (OUT / "compartments.r4.json").write_text(json.dumps(compartments, indent=0) + "\n")
    ops = json.dumps(dict(sorted(operations.items())), separators=(",", ":"), ensure_ascii=False)
    (OUT / "operation-definitions.r4.json").write_text(ops + "\n", encoding="utf-8")


if __name__ == "__main__":
    main(sys.argv[1])
