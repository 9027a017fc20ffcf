"""The index rows of every demo and conformance resource stay what they were.

Guards rewrites of the indexer for speed: a digest of each resource's rows
(table by table, rows in order, keys sorted) and patient compartment is kept
in ``tests/golden/search_index.json``. Regenerate deliberately with
``HUB_REGEN_GOLDEN=1`` when the rows are meant to change.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import orjson
from search_helpers import SYNTHEA
from search_helpers import synthea_resources
from search_samples import SAMPLES

from tests.golden import assert_golden

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = ROOT / "tests" / "golden" / "search_index.json"


def _bundle_resources(node) -> list[dict]:
    """The entries' resources of every Bundle in ``node`` (golden files wrap them)."""
    if not isinstance(node, dict):
        return []
    if node.get("resourceType") == "Bundle":
        return [
            e["resource"] for e in node.get("entry") or () if isinstance(e.get("resource"), dict)
        ]
    return [r for v in node.values() for r in _bundle_resources(v)]


def _sources() -> dict[str, list[dict]]:
    out = {"search_samples": SAMPLES}
    for path in SYNTHEA:
        name = path.relative_to(ROOT).as_posix()
        out[name] = synthea_resources(path)  # references made Type/id
        out[name + " (urn:uuid)"] = _bundle_resources(orjson.loads(path.read_bytes()))
    cases = [*ROOT.glob("conformance/sites/*/cases/*/expected.json")]
    cases += ROOT.glob("tests/golden/hl7v2/*/*.expected.json")
    for path in sorted(cases):
        out[path.relative_to(ROOT).as_posix()] = _bundle_resources(json.loads(path.read_bytes()))
    return out


def _digest(result) -> str:
    canonical = [
        (table, [sorted(row.items()) for row in rows])
        for table, rows in sorted(result.rows.items())
    ]
    return hashlib.sha256(repr((canonical, result.patient_id)).encode()).hexdigest()[:16]


def test_index_rows_match_the_golden_digests(indexer):
    digests = {
        source: {
            f"{i} {res.get('resourceType')}/{res.get('id')}": _digest(indexer.index(res))
            for i, res in enumerate(resources)
        }
        for source, resources in _sources().items()
    }
    assert sum(len(d) for d in digests.values()) > 800
    assert_golden(digests, GOLDEN)
