"""The county-platform conformance kit: every case's expected files are what the adapter produces.

The hub's kit runner repeats this over HTTP; here the cases go through the
plugin hooks (``detect_format`` then ``map_inbound``) with the site as its
manifest declares it. ``HUB_REGEN_GOLDEN=1`` rewrites the expected files.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from hub.mapping import InboundMessage
from hub.mapping import MappingContext
from hub.outcomes import OperationOutcomeError
from hub.plugins import get_plugin_manager
from hub.sites import load_site
from tests.golden import assert_golden

KIT = Path(__file__).resolve().parents[2] / "conformance" / "sites" / "county-platform"
CASES = sorted(p for p in (KIT / "cases").iterdir() if p.is_dir())
REFUSED = {
    "xxe-external-entity",
    "billion-laughs",
    "wrong-encoding",
    "bad-id-checksum",
    "unknown-document-type",
    "truncated",
}


def kit_site():
    site = load_site(KIT)
    assert site.adapter == "cda"
    return site


@pytest.mark.parametrize("case", CASES, ids=lambda p: p.name)
def test_conformance_case_matches_expected(case, code_maps):
    pm = get_plugin_manager(load_entry_points=False, extra=["fhirhub_plugins.cda"])
    site = kit_site()
    source = next(case.glob("input.*"))
    body = source.read_bytes()
    detected = pm.hook.detect_format(body=body, content_type=None)
    assert detected == ("cda-contracts" if source.suffix == ".csv" else "cda")
    fmt = "cda"  # the site's adapter format, as the ingest pipeline uses it
    context = MappingContext(site, code_maps)
    try:
        bundle = pm.hook.map_inbound(message=InboundMessage(fmt, body, site), context=context)
    except OperationOutcomeError as err:
        assert case.name in REFUSED, f"{case.name}: {err.issues}"
        assert 400 <= err.status < 500
        assert_golden(err.outcome, case / "expected-outcome.json")
        assert not (case / "expected.json").exists()
        return
    assert case.name not in REFUSED
    assert_golden(bundle, case / "expected.json")
    problems = [i for i in context.issues if i["severity"] in ("error", "warning")]
    if problems or (case / "expected-outcome.json").exists():
        assert_golden(
            {"resourceType": "OperationOutcome", "issue": problems}, case / "expected-outcome.json"
        )
