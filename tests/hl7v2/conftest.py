"""Fixtures for the HL7 v2 adapter tests: the example sites and the code maps."""

from __future__ import annotations

from pathlib import Path

import pytest

from hub.mapping import load_code_maps
from hub.paths import MAPPINGS_DIR
from hub.paths import SITES_DIR
from hub.sites import load_sites

GOLDEN_DIR = Path(__file__).resolve().parents[1] / "golden" / "hl7v2"


@pytest.fixture(scope="session")
def code_maps():
    return load_code_maps([MAPPINGS_DIR])


@pytest.fixture(scope="session")
def sites(code_maps):
    return load_sites([SITES_DIR], code_maps)


@pytest.fixture(scope="session")
def county(sites):
    return sites["county-hospital-a"]


@pytest.fixture(scope="session")
def township(sites):
    return sites["township-hospital-b"]
