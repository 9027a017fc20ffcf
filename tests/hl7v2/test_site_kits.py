"""The example hospital kits in ``conformance/sites`` pass with the adapter alone.

The generic kit runner drives them through the HTTP API; this test keeps the
expected files honest at the adapter level (``HUB_REGEN_GOLDEN=1`` rewrites them).
"""

from __future__ import annotations

import json
import os

import pytest

from fhirhub_plugins.hl7v2 import convert
from hub.outcomes import OperationOutcomeError
from hub.paths import SITES_DIR

CASES = sorted(SITES_DIR.glob("*/cases/*/input.hl7"))


@pytest.mark.parametrize("input_path", CASES, ids=[f"{p.parts[-4]}/{p.parent.name}" for p in CASES])
def test_kit_case(input_path, sites, code_maps):
    site = sites[input_path.parts[-4]]
    case = input_path.parent
    try:
        bundle, _ = convert(input_path.read_bytes(), site, code_maps)
        name, result = "expected.json", bundle
    except OperationOutcomeError as exc:
        name, result = "expected-outcome.json", exc.outcome
    path = case / name
    if os.environ.get("HUB_REGEN_GOLDEN") == "1" or not path.exists():
        path.write_text(json.dumps(result, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    other = case / ("expected-outcome.json" if name == "expected.json" else "expected.json")
    assert not other.exists(), f"{case}: the adapter produced {name} but {other.name} is expected"
    assert result == json.loads(path.read_text(encoding="utf-8"))
