"""The county-platform kit's inputs are recognised as what they are.

Whether each case maps to its golden files (and is refused with a 4xx when it
should be) is checked by the generic kit runner, ``conformance/test_conformance.py``
(``hub conformance run county-platform``); this module keeps the adapter's own
concern, format detection, over the same inputs.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from hub.plugins import get_plugin_manager

KIT = Path(__file__).resolve().parents[2] / "conformance" / "sites" / "county-platform"
CASES = sorted(p for p in (KIT / "cases").iterdir() if p.is_dir())


@pytest.mark.parametrize("case", CASES, ids=lambda p: p.name)
def test_kit_input_is_detected_by_its_format(case):
    pm = get_plugin_manager(load_entry_points=False, extra=["fhirhub_plugins.cda"])
    source = next(case.glob("input.*"))
    detected = pm.hook.detect_format(body=source.read_bytes(), content_type=None)
    assert detected == ("cda-contracts" if source.suffix == ".csv" else "cda")
