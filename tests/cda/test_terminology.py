"""The stored CodeSystem files are exactly what the code maps generate."""

from __future__ import annotations

import pytest

from fhirhub_plugins.cda.terminology import code_systems
from hub.paths import MAPPINGS_DIR
from hub.validation.structure import check_structure
from tests.golden import assert_golden


def test_code_systems_match_their_maps(code_maps):
    generated = code_systems(code_maps)
    assert {cs["id"] for cs in generated} >= {
        "gbt-2261-1-sex",
        "gbt-2261-2-marital-status",
        "gb-3304-ethnicity",
        "ws364-followup-mode",
    }
    for cs in generated:
        check_structure(cs)
        assert_golden(cs, MAPPINGS_DIR / "cda" / f"CodeSystem-{cs['id']}.json")


@pytest.mark.parametrize("code", [f"{n:02d}" for n in range(1, 57)] + ["97", "98"])
def test_ethnicity_has_every_gb3304_code(code, code_maps):
    assert code_maps["cda-ethnicity"].lookup(code).display
