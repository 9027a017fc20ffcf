"""Parsing: separators, BOM, character sets, escapes, malformed input."""

from __future__ import annotations

import types

import pytest

from fhirhub_plugins.hl7v2 import detect_format
from fhirhub_plugins.hl7v2 import map_inbound
from fhirhub_plugins.hl7v2.parse import parse_message
from hub.mapping import InboundMessage
from hub.mapping import MappingContext
from hub.outcomes import OperationOutcomeError

BASE = "MSH|^~\\&|HIS|H|HUB|HUB|20240101||ADT^A28|M1|P|2.5|||||CHN|{cs}\rPID|1||1^^^H^MR||{name}\r"


@pytest.mark.parametrize("sep", ["\r", "\n", "\r\n"])
def test_separators_and_bom(sep):
    body = (
        b"\xef\xbb\xbf" + BASE.format(cs="UNICODE UTF-8", name="张^三").replace("\r", sep).encode()
    )
    msg = parse_message(body)
    assert [s.name for s in msg.segments] == ["MSH", "PID"]
    assert msg.segment("PID").get(5, 2) == "三"


@pytest.mark.parametrize("charset", ["GB 18030-2000", "GBK", ""])
def test_gb18030(charset):
    site = types.SimpleNamespace(encoding="gb18030")
    body = BASE.format(cs=charset, name="𠮷^明").encode("gb18030")  # a rare character GBK lacks
    assert parse_message(body, site).segment("PID").get(5) == "𠮷"


def test_gb18030_bytes_labelled_utf8_are_rejected_with_position():
    body = BASE.format(cs="UNICODE UTF-8", name="张^三").encode("gb18030")
    with pytest.raises(OperationOutcomeError) as exc:
        parse_message(body)
    assert exc.value.status == 400
    assert exc.value.issues[0]["expression"] == ["PID-5"]


def test_escapes():
    name = "A\\F\\B\\S\\C\\T\\D\\R\\E\\E\\" + "\\.br\\" + "\\F\\" + "\\X41\\" + "^G"
    body = BASE.format(cs="", name=name).encode()
    assert parse_message(body).segment("PID").get(5) == "A|B^C&D~E\\\n|A"


def test_hex_escape_in_message_charset():
    hexed = "张".encode("gb18030").hex().upper()
    body = BASE.format(cs="GB18030", name=f"\\X{hexed}\\").encode("gb18030")
    assert parse_message(body).segment("PID").get(5) == "张"


def test_mllp_frame_and_repetitions():
    text = BASE.format(cs="", name="张^三~ZHANG^SAN").replace("1^^^H^MR", "1^^^H^MR~2^^^CHN^NNCHN")
    msg = parse_message(b"\x0b" + text.encode() + b"\x1c\r")
    pid = msg.segment("PID")
    assert [r.get(5) for r in pid.reps(3)] == ["MR", "NNCHN"]
    assert [r.location for r in pid.reps(5)] == ["PID-5[1]", "PID-5[2]"]


@pytest.mark.parametrize(
    ("body", "where"),
    [
        (b"", None),
        (b"PID|1\r", "segment 1"),
        (b"MSH|^~\\&|A|B|C|D|2024||ADT^A01||P|2.5\r", "MSH-10"),
        (b"MSH|^~\\&|A|B|C|D|2024|||1|P|2.5\r", "MSH-9"),
        (b"MSH|^~|A\r", "MSH-2"),
    ],
)
def test_malformed(body, where):
    with pytest.raises(OperationOutcomeError) as exc:
        parse_message(body)
    assert exc.value.status == 400
    assert exc.value.issues[0].get("expression", [None]) == [where]


def test_an_unknown_msh18_falls_back_to_the_sites_encoding_with_a_warning(township):
    body = "MSH|^~\\&|HIS|ZWSY|HUB|HUB|2024||ADT^A28|M1|P|2.4||||||NOPE-CHARSET\rPID|1||B1||王\r"
    msg = parse_message(body.encode("gb18030"), township)
    assert msg.charset == "gb18030" and msg.segment("PID").get(5) == "王"
    assert [where for _text, where in msg.warnings] == ["MSH-18"]
    assert "NOPE-CHARSET" in msg.warnings[0][0]
    with pytest.raises(OperationOutcomeError) as exc:  # a UTF-8 site: the bytes do not decode
        parse_message(body.encode("gb18030"))
    assert exc.value.issues[0]["expression"] == ["PID-5"]


def test_hook_detect_format():
    assert detect_format(body=b"\xef\xbb\xbf\r\nMSH|^~\\&|", content_type=None) == "hl7v2"
    assert detect_format(body=b"\x0bMSH|^~\\&|", content_type=None) == "hl7v2"
    assert detect_format(body=b"anything", content_type="application/hl7-v2") == "hl7v2"
    assert detect_format(body=b"<ClinicalDocument/>", content_type="application/xml") is None


def test_hook_map_inbound(county, code_maps):
    context = MappingContext(county, code_maps)
    body = BASE.format(cs="", name="张^三").encode()
    assert map_inbound(message=InboundMessage("cda", body, county), context=context) is None
    bundle = map_inbound(message=InboundMessage("hl7v2", body, county), context=context)
    assert bundle["type"] == "transaction"
    assert [e["resource"]["resourceType"] for e in bundle["entry"]] == [
        "Organization",
        "Patient",
        "Provenance",
    ]


def test_truncated_message_rejected_when_the_site_requires_terminators(township):
    body = "MSH|^~\\&|HIS|ZWSY|HUB|HUB|20240101||ADT^A28|M1|P|2.4\rPID|1||B1^^^ZWSY^MR||王".encode(
        "gb18030"
    )
    with pytest.raises(OperationOutcomeError) as exc:
        parse_message(body, township)
    assert exc.value.issues[0]["code"] == "incomplete"
    assert parse_message(body + b"\r", township).segment("PID").get(5) == "王"
    assert parse_message(b"\x0b" + body + b"\r\x1c\r", township).control_id == "M1"


def test_entry_point_registers_the_adapter(county, code_maps):
    from hub.plugins import get_plugin_manager

    pm = get_plugin_manager(only=["hl7v2"])
    assert pm.get_plugin("hl7v2") is not None
    body = BASE.format(cs="", name="张^三").encode()
    assert pm.hook.detect_format(body=body, content_type=None) == "hl7v2"
    bundle = pm.hook.map_inbound(
        message=InboundMessage("hl7v2", body, county), context=MappingContext(county, code_maps)
    )
    assert bundle["resourceType"] == "Bundle"
