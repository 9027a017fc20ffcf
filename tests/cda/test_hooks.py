"""The adapter's hookimpls, called through a plugin manager as the hub calls them."""

from __future__ import annotations

import pytest

from hub.mapping import InboundMessage
from hub.mapping import MappingContext
from hub.plugins import get_plugin_manager

from .conftest import GOLDEN
from .conftest import Site


@pytest.fixture
def pm():
    return get_plugin_manager(load_entry_points=False, extra=["fhirhub_plugins.cda"])


def test_hook_detect_format(pm):
    assert (
        pm.hook.detect_format(
            body=(GOLDEN / "HSDA00.01" / "registration.xml").read_bytes(),
            content_type="application/xml",
        )
        == "cda"
    )
    assert (
        pm.hook.detect_format(
            body=(GOLDEN / "contracts" / "export.csv").read_bytes(), content_type="text/csv"
        )
        == "cda-contracts"
    )
    assert pm.hook.detect_format(body=b"MSH|^~\\&|", content_type=None) is None


def test_hook_map_inbound(pm, code_maps):
    site = Site()
    body = (GOLDEN / "HSDB04.01" / "face-to-face.xml").read_bytes()
    bundle = pm.hook.map_inbound(
        message=InboundMessage("cda", body, site), context=MappingContext(site, code_maps)
    )
    assert bundle["type"] == "transaction"
    assert (
        pm.hook.map_inbound(
            message=InboundMessage("hl7v2", b"MSH", site), context=MappingContext(site, code_maps)
        )
        is None
    )


def test_hook_map_outbound(pm, code_maps):
    other = Site(adapter="hl7v2")
    assert (
        pm.hook.map_outbound(
            resource={"resourceType": "Patient"},
            event="update",
            site=other,
            context=MappingContext(other, code_maps),
        )
        is None
    )
    mine = Site()
    assert (
        pm.hook.map_outbound(
            resource={"resourceType": "Patient"},
            event="update",
            site=mine,
            context=MappingContext(mine, code_maps),
        )
        == []
    )


def test_hook_source_key(pm):
    body = (GOLDEN / "HSDC00.03" / "discharge-gb18030.xml").read_bytes()
    key = pm.hook.source_key(fmt="cda", body=body, site=Site())
    assert key == "HSDC0003-437028300001-ZY2024000317"
    assert pm.hook.source_key(fmt="cda", body=b"\x00garbage", site=Site()) is None
    assert pm.hook.source_key(fmt="hl7v2", body=body, site=Site()) is None
