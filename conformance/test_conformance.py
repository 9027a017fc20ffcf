"""Every site kit in ``conformance/sites``: one test per case, with id ``site/case``.

A case passes when its input maps to its golden files (the adapter's Bundle in
``expected.json``, the rejection or the warnings in ``expected-outcome.json``)
and the hub's ingestion stores it (or refuses it) as those files say. Sites add
folders, never Python. Run one site with ``pytest conformance -k SITE`` or
``hub conformance run SITE``; rewrite goldens deliberately with
``HUB_REGEN_GOLDEN=1`` (or ``hub conformance run --update``).
"""

from pathlib import Path

import pytest

from hub.conformance.runner import map_case
from hub.conformance.runner import store_problem
from hub.testing import assert_matches_golden
from hub.testing import discover_kits

KITS = discover_kits([Path(__file__).parent / "sites"])
CASES = [pytest.param(kit, case, id=case.id) for kit in KITS for case in kit.cases]


@pytest.fixture(autouse=True)
def development_identity_key(monkeypatch):
    # Golden ids are made with the development identity key.
    monkeypatch.delenv("HUB_IDENTITY_KEY", raising=False)


@pytest.mark.parametrize(("kit", "case"), CASES)
def test_case(kit, case, kit_hub):
    assert_matches_golden(map_case(kit_hub.pipeline, kit, case), case.folder)
    assert store_problem(kit_hub.pipeline, kit, case) is None
