"""Documents per second through the CDA adapter: inbound (parse + map) and outbound (generate + check).

    python bench/cda_throughput.py [seconds-per-measure]

Uses the sample documents in tests/golden/cda (one per document type).
"""

from __future__ import annotations

import sys
import time
import types
from pathlib import Path

from fhirhub_plugins.cda import from_fhir
from fhirhub_plugins.cda import parse
from fhirhub_plugins.cda import to_fhir
from hub.mapping import MappingContext
from hub.mapping import load_code_maps
from hub.paths import MAPPINGS_DIR

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = sorted((ROOT / "tests" / "golden" / "cda").glob("*/*.xml"))


def site_for(body: bytes):
    root = parse.parse(body)
    org = root.find(
        "v3:custodian/v3:assignedCustodian/v3:representedCustodianOrganization", parse.NS
    )
    ident = org.find("v3:id", parse.NS)
    config = {"data_element_aliases": {"DE075.00": "DE05.10.075.00"}}
    return types.SimpleNamespace(
        name="county-platform",
        adapter="cda",
        timezone="Asia/Shanghai",
        organization={
            "name": org.find("v3:name", parse.NS).text,
            "identifier": {"system": "urn:oid:2.16.156.10011.1.5", "value": ident.get("extension")},
        },
        code_map_overrides={},
        plugin_config=lambda name: config,
    )


def rate(work, seconds: float) -> tuple[float, int]:
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        work()
        count += 1
    return count / (time.perf_counter() - start), count


def main() -> None:
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 1.0
    maps = load_code_maps([MAPPINGS_DIR])
    print(f"{'document':42} {'bytes':>7} {'in docs/s':>10} {'out docs/s':>11}")
    total_in = total_out = 0.0
    for path in SAMPLES:
        body = path.read_bytes()
        site = site_for(body)
        bundle = to_fhir.document_bundle(body, MappingContext(site, maps), site)
        doc = next(
            e["resource"]
            for e in bundle["entry"]
            if e["resource"]["resourceType"] == "DocumentReference"
        )
        res = [
            e["resource"]
            for e in bundle["entry"]
            if e["resource"]["resourceType"]
            not in ("DocumentReference", "Provenance", "Parameters")
        ]
        doc_type = doc["type"]["coding"][0]["code"]
        inbound, _ = rate(
            lambda b=body, s=site: to_fhir.document_bundle(b, MappingContext(s, maps), s), seconds
        )
        outbound, _ = rate(
            lambda t=doc_type, r=res, s=site, d=doc: from_fhir.build_document(
                t, r, s, document_id="bench", effective_time=d["date"]
            ),
            seconds,
        )
        total_in += inbound
        total_out += outbound
        print(
            f"{path.parent.name + '/' + path.name:42} {len(body):>7} {inbound:>10.0f} {outbound:>11.0f}"
        )
    n = len(SAMPLES)
    print(f"{'mean over document types':42} {'':>7} {total_in / n:>10.0f} {total_out / n:>11.0f}")


if __name__ == "__main__":
    main()
