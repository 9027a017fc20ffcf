"""The MLLP listener with the hub behind it, over real sockets: site encodings, ACK codes,
limits, lanes, stale claims; and refused oversize payloads kept as a digest."""

from __future__ import annotations

import datetime as dt
import threading

import pytest
from sqlalchemy import func
from sqlalchemy import select
from sqlalchemy import update

from hub import hookimpl
from hub.ingest.inbox import payload_hash
from hub.storage import schema as s
from hub.storage.db import writing
from tests.fixtures import authed_client

COUNTY = "county-hospital-a"
TOWNSHIP = "township-hospital-b"


def county_adt(control_id: str, family: str = "王", given: str = "芳", msh7="20240315083000"):
    return (
        f"MSH|^~\\&|WINNING_HIS|XRMYY|FHIRHUB|HUB|{msh7}||ADT^A04^ADT_A01|{control_id}"
        "|P|2.5|||AL|NE|CHN|UNICODE UTF-8\r"
        f"PID|1||M-{control_id}^^^XRMYY^MR||{family}^{given}||19700101|F\r"
        "PV1|1|O\r"
    ).encode()


def township_adt(control_id: str, name: str = "上官小明", msh18: str = "") -> bytes:
    """A township-hospital-b registration in GB 18030, MSH-18 empty unless given."""
    return (
        f"MSH|^~\\&|HIS|ZWSY|FHIRHUB|HUB|20240702083000||ADT^A28^ADT_A05|{control_id}|P|2.4"
        f"|||||CHN|{msh18}\r"
        "EVN|A28|20240702083000\r"
        f"PID|1||B{control_id}^^^ZWSY^MR||{name}||20200301|1|||东街村5组^^新郑市^河南省\r"
    ).encode("gb18030")


def county_oru(control_id: str, results: int) -> bytes:
    obx = "".join(
        f"OBX|{n}|NM|GLU^Glucose^L||{5 + n % 3}.1|mmol/L|3.9-6.1||||F\r"
        for n in range(1, results + 1)
    )
    return (
        f"MSH|^~\\&|WINNING_HIS|XRMYY|FHIRHUB|HUB|20240315083000||ORU^R01^ORU_R01|{control_id}"
        "|P|2.5|||AL|NE|CHN|UNICODE UTF-8\r"
        f"PID|1||M-{control_id}^^^XRMYY^MR||李^四||19600101|M\r"
        f"OBR|1||LAB-{control_id}|GLU^Glucose^L|||20240315080000||||||||||||||||||F\r" + obx
    ).encode()


@pytest.fixture
def app_config(app_config):
    app_config["PLUGINS"] = ["fhirhub_plugins.hl7v2", "fhirhub_plugins.cda"]
    return app_config


@pytest.fixture
def mllp_server(hub):
    from fhirhub_plugins.hl7v2 import MLLPServer
    from fhirhub_plugins.hl7v2.listener import make_handler

    server = MLLPServer(("127.0.0.1", 0), make_handler(hub)).start()
    yield server
    server.stop()


def send(server, body: bytes, timeout: float = 30):
    from fhirhub_plugins.hl7v2 import send as mllp_send
    from fhirhub_plugins.hl7v2.parse import parse_message

    return parse_message(mllp_send("127.0.0.1", server.port, body, timeout=timeout))


def errs(ack) -> list[dict]:
    return [
        {
            "where": "^".join(filter(None, (e.get(2, 1), e.get(2, 2), e.get(2, 3)))),
            "code": e.get(3, 1),
            "severity": e.get(4),
            "text": e.get(8),
        }
        for e in ack.all("ERR")
    ]


def inbox_rows(hub) -> list:
    with hub.engine.connect() as conn:
        return list(conn.execute(select(s.inbox).order_by(s.inbox.c.id)))


def count(hub, table, *where) -> int:
    with hub.engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(table).where(*where)).scalar_one()


# -- the site's encoding ------------------------------------------------------------


def test_gb18030_without_msh18_is_decoded_with_the_sites_encoding(mllp_server, hub):
    body = township_adt("ZW-1")
    with pytest.raises(UnicodeDecodeError):
        body.decode("utf-8")  # really GB 18030 bytes, not UTF-8
    ack = send(mllp_server, body)
    assert ack.segment("MSA").get(1) == "AA", errs(ack)
    assert ack.segment("MSA").get(2) == "ZW-1"
    (row,) = inbox_rows(hub)
    assert row.status == "done" and bytes(row.body) == body
    with hub.engine.connect() as conn:
        names = [
            c
            for (c,) in conn.execute(
                select(s.resource.c.content).where(s.resource.c.res_type == "Patient")
            )
        ]
    assert any("上官小明" in (n if isinstance(n, str) else n.decode()) for n in names)


def test_bytes_invalid_in_the_sites_encoding_name_the_real_problem(mllp_server, hub):
    # GB 18030 bytes sent to a UTF-8 site: refused, with a data type error, not "unsupported type".
    body = (
        "MSH|^~\\&|WINNING_HIS|XRMYY|FHIRHUB|HUB|20240315083000||ADT^A04^ADT_A01|CN-1|P|2.5\r"
        "PID|1||M1^^^XRMYY^MR||张^伟||19700101|F\r"
    ).encode("gb18030")
    ack = send(mllp_server, body)
    assert ack.segment("MSA").get(1) == "AR"
    assert ack.segment("MSA").get(2) == "CN-1"  # the control id, read from the raw MSH
    (err,) = errs(ack)
    assert err["code"] == "102" and err["where"] == "PID^1^5"
    assert "utf-8" in err["text"]
    assert inbox_rows(hub) == []


def test_unknown_sender_is_refused_as_an_unknown_key(mllp_server, hub):
    ack = send(mllp_server, county_adt("U-1").replace(b"WINNING_HIS|XRMYY", b"OTHER|NOWHERE"))
    assert ack.segment("MSA").get(1) == "AR"
    (err,) = errs(ack)
    assert err["code"] == "204" and err["where"] == "MSH^1^3"


def test_the_message_routed_is_the_message_mapped(mllp_server, hub, monkeypatch):
    """Parse once: the listener's parse is the one the adapter maps."""
    from fhirhub_plugins.hl7v2.parse import Message

    body = county_adt("ONCE-1")
    parses = []
    real_init = Message.__init__

    def counting_init(self, raw, *args, **kwargs):
        if bytes(raw) == body:  # not the ACK the test reads back
            parses.append(self)
        real_init(self, raw, *args, **kwargs)

    monkeypatch.setattr(Message, "__init__", counting_init)
    ack = send(mllp_server, body)
    assert ack.segment("MSA").get(1) == "AA"
    assert len(parses) == 1
    assert count(hub, s.inbox, s.inbox.c.status == "done") == 1


# -- ACKs -----------------------------------------------------------------------------


def test_accepted_with_warnings_is_aa_with_err_segments_of_severity_w(mllp_server, hub):
    ack = send(mllp_server, county_adt("W-1", msh7="20240315"))  # MSH-7 without a time
    assert ack.segment("MSA").get(1) == "AA"
    found = errs(ack)
    assert found and {e["severity"] for e in found} == {"W"}
    msh7 = next(e for e in found if e["where"] == "MSH^1^7")
    assert "midnight" in msh7["text"] and msh7["code"]
    assert count(hub, s.inbox, s.inbox.c.status == "done") == 1


class FlagEveryPatient:
    """A profile check that finds an error in every Patient."""

    @hookimpl
    def validate_resource(self, resource, site):
        if resource.get("resourceType") != "Patient":
            return None
        return [
            {
                "severity": "error",
                "code": "business-rule",
                "diagnostics": "a birth date after 2019 needs a guardian",
                "expression": ["Patient.birthDate"],
            }
        ]


@pytest.fixture
def flagging(app_config):
    app_config["PLUGINS"] = [*app_config["PLUGINS"], FlagEveryPatient()]


def test_errors_accepted_by_the_sites_policy_come_back_as_warnings(flagging, mllp_server, hub):
    # township-hospital-b's policy is accept-with-warnings: stored, and the sender is told.
    ack = send(mllp_server, township_adt("ZW-W1"))
    assert ack.segment("MSA").get(1) == "AA"
    (flag,) = [e for e in errs(ack) if "guardian" in (e["text"] or "")]
    assert flag["severity"] == "W" and flag["code"] == "207"
    assert flag["text"].startswith("Patient/")
    (row,) = inbox_rows(hub)
    assert row.status == "done" and b"guardian" in row.outcome.encode()


def test_plain_aa_has_no_err(mllp_server, hub):
    ack = send(mllp_server, county_adt("OK-1"))
    assert ack.segment("MSA").get(1) == "AA" and errs(ack) == []


@pytest.mark.parametrize("char", ["\x00", "\x07", "\x1b"])
def test_control_characters_are_refused_naming_the_field(mllp_server, hub, char):
    body = county_oru("NUL-1", 3).replace(b"OBX|2|NM|GLU^Glu", f"OBX|2|NM|GLU^Glu{char}".encode())
    assert char.encode() in body
    ack = send(mllp_server, body)
    assert ack.segment("MSA").get(1) == "AR"
    assert ack.segment("MSA").get(2) == "NUL-1"
    (err,) = errs(ack)
    assert err["where"] == "OBX^2^3" and err["code"] == "102"
    assert f"U+{ord(char):04X}" in err["text"]
    assert inbox_rows(hub) == []


# -- limits and lanes --------------------------------------------------------------------


@pytest.fixture
def limited(app_config):
    app_config["HL7V2_MAX_SEGMENTS"] = 50
    app_config["HL7V2_MAX_FIELD_LENGTH"] = 200
    app_config["INGEST_MAX_BYTES"] = 20_000
    return app_config


def test_a_message_over_the_segment_limit_is_refused(limited, mllp_server, hub):
    ack = send(mllp_server, county_oru("BIG-1", 60))
    assert ack.segment("MSA").get(1) == "AR"
    (err,) = errs(ack)
    assert err["code"] == "104" and "HL7V2_MAX_SEGMENTS" in err["text"] and "63" in err["text"]
    assert inbox_rows(hub) == []
    assert send(mllp_server, county_oru("SMALL-1", 5)).segment("MSA").get(1) == "AA"


def test_a_field_over_the_length_limit_is_refused_naming_it(limited, mllp_server, hub):
    body = county_adt("LONG-1", given="芳" * 300)
    ack = send(mllp_server, body)
    assert ack.segment("MSA").get(1) == "AR"
    (err,) = errs(ack)
    assert err["code"] == "104" and err["where"] == "PID^1^5"
    assert "HL7V2_MAX_FIELD_LENGTH" in err["text"]


def test_a_message_over_the_byte_limit_is_refused(limited, mllp_server, hub):
    body = county_oru("HUGE-1", 45) + b"NTE|1||" + b"x" * 150 + b"\r"
    body += b"".join(b"NTE|%d||%s\r" % (n, b"y" * 190) for n in range(2, 120))
    assert len(body) > 20_000
    ack = send(mllp_server, body)
    assert ack.segment("MSA").get(1) == "AR"
    (err,) = errs(ack)
    assert err["code"] == "104" and "INGEST_MAX_BYTES" in err["text"]


class HoldTheBigOne:
    """Holds the mapping of the message with control id BIG until the test lets it go."""

    def __init__(self):
        self.started = threading.Event()
        self.release = threading.Event()
        self.released_in_time: bool | None = None

    @hookimpl(wrapper=True)
    def map_inbound(self, message, context):
        if message.source_key == "BIG":
            self.started.set()
            # A guard against a hang (the answer is wrong if it runs out), not a timing.
            self.released_in_time = self.release.wait(60)
        return (yield)


@pytest.fixture
def hold(app_config):
    plugin = HoldTheBigOne()
    app_config["PLUGINS"] = [*app_config["PLUGINS"], plugin]
    app_config["MLLP_LARGE_MESSAGE_SEGMENTS"] = 20
    return plugin


def test_a_slow_large_message_does_not_hold_up_other_senders(hold, mllp_server, hub):
    acks: dict[str, object] = {}

    def big() -> None:
        acks["BIG"] = send(mllp_server, county_oru("BIG", 40), timeout=90)

    sender = threading.Thread(target=big)
    sender.start()
    try:
        assert hold.started.wait(60)  # the large message is being mapped, and held there
        small = send(mllp_server, county_adt("SMALL"), timeout=30)
        # The small message was stored and acknowledged while the large one was still held.
        assert small.segment("MSA").get(1) == "AA"
        done = s.inbox.c.status == "done"
        assert count(hub, s.inbox, s.inbox.c.source_key == "SMALL", done) == 1
        assert count(hub, s.inbox, s.inbox.c.source_key == "BIG", done) == 0
    finally:
        hold.release.set()
        sender.join(90)
    assert hold.released_in_time is True
    assert acks["BIG"].segment("MSA").get(1) == "AA"
    assert count(hub, s.inbox, s.inbox.c.status == "done") == 2


# -- a message whose processing died ---------------------------------------------------------


def test_resending_a_message_with_a_stale_claim_processes_it_now(mllp_server, hub):
    body = county_adt("STALE-1")
    # What a listener killed mid-message leaves: the row stored and claimed, never marked.
    item, _ = hub.pipeline.inbox.receive(
        COUNTY, body, source_key="STALE-1", fmt="hl7v2", claim=True
    )
    lease = int(hub.config.get("INBOX_LEASE_SECONDS", 300))
    with writing(hub.engine) as conn:
        conn.execute(
            update(s.inbox)
            .where(s.inbox.c.id == item.id)
            .values(processed_at=dt.datetime.now(dt.UTC) - dt.timedelta(seconds=lease + 60))
        )
    ack = send(mllp_server, body)
    assert ack.segment("MSA").get(1) == "AA", errs(ack)
    (row,) = inbox_rows(hub)
    assert row.id == item.id and row.status == "done" and row.attempts == 1
    assert count(hub, s.resource, s.resource.c.res_type == "Patient") == 1
    # Answered from that processing from now on.
    assert send(mllp_server, body).segment("MSA").get(1) == "AA"
    assert inbox_rows(hub)[0].attempts == 1


def test_ingest_takes_over_a_stale_claim_too(app, hub):
    body = county_adt("STALE-2")
    item, _ = hub.pipeline.inbox.receive(
        COUNTY, body, source_key="STALE-2", fmt="hl7v2", claim=True
    )
    with writing(hub.engine) as conn:
        conn.execute(
            update(s.inbox)
            .where(s.inbox.c.id == item.id)
            .values(processed_at=dt.datetime(2020, 1, 1, tzinfo=dt.UTC))
        )
    resp = authed_client(app).post(
        f"/fhir/$ingest?site={COUNTY}", data=body, content_type="application/hl7-v2"
    )
    assert resp.status_code == 200 and resp.headers["X-Inbox-Status"] == "done"
    assert resp.headers["X-Inbox-Item"] == str(item.id)


def test_a_message_still_being_processed_is_answered_locked(mllp_server, hub):
    body = county_adt("BUSY-1")
    hub.pipeline.inbox.receive(COUNTY, body, source_key="BUSY-1", fmt="hl7v2", claim=True)
    ack = send(mllp_server, body)
    assert ack.segment("MSA").get(1) == "AE"
    (err,) = errs(ack)
    assert err["code"] == "206"
    assert inbox_rows(hub)[0].status == "processing"


# -- refused oversize payloads ---------------------------------------------------------------


def test_an_oversize_payload_is_kept_as_its_digest_and_reason(app_config, app, hub):
    app_config_limit = 20_000
    hub.config["INGEST_MAX_BYTES"] = app_config_limit
    client = authed_client(app)
    body = county_oru("HUGE-2", 400)
    assert len(body) > app_config_limit
    resp = client.post(f"/fhir/$ingest?site={COUNTY}", data=body, content_type="application/hl7-v2")
    assert resp.status_code == 413
    assert "INGEST_MAX_BYTES" in resp.get_json()["issue"][0]["diagnostics"]
    (row,) = inbox_rows(hub)
    assert row.status == "failed" and bytes(row.body) == b""
    assert row.payload_hash == payload_hash(body) and row.source_key == "HUGE-2"
    # Sent again: answered from the record, still without the body.
    resp = client.post(f"/fhir/$ingest?site={COUNTY}", data=body, content_type="application/hl7-v2")
    assert resp.status_code == 413 and resp.headers["X-Duplicate"] == "true"
    assert client.post(f"/api/inbox/{row.id}/replay").status_code == 409
    assert hub.pipeline.replay(status="failed") == []  # nothing to replay it from
    # With the limit raised, the sender's next try is processed (and its body kept).
    hub.config["INGEST_MAX_BYTES"] = 10 * app_config_limit
    resp = client.post(f"/fhir/$ingest?site={COUNTY}", data=body, content_type="application/hl7-v2")
    assert resp.status_code == 200, resp.get_json()
    (row,) = inbox_rows(hub)
    assert row.status == "done" and bytes(row.body) == body


def test_an_adapter_refusing_a_body_as_too_large_keeps_its_digest_not_the_body(app, hub):
    client = authed_client(app)
    body = (
        b"<ClinicalDocument xmlns='urn:hl7-org:v3'>"
        + b" " * (6 * 1024 * 1024)
        + b"</ClinicalDocument>"
    )
    resp = client.post(
        "/fhir/$ingest?site=county-platform", data=body, content_type="application/xml"
    )
    assert resp.status_code == 413
    (row,) = inbox_rows(hub)
    assert row.status == "failed" and bytes(row.body) == b""
    assert row.payload_hash == payload_hash(body)
    assert "limit" in resp.get_json()["issue"][0]["diagnostics"]


# -- hub mllp send ------------------------------------------------------------------


def test_hub_mllp_send_prints_each_ack(mllp_server, hub, tmp_path):
    from click.testing import CliRunner

    from hub.cli import cli

    good = tmp_path / "good.hl7"
    # Saved with LF line ends, as editors do: sent with CR segment separators.
    good.write_bytes(county_adt("SEND-1").replace(b"\r", b"\n"))
    stranger = tmp_path / "stranger.hl7"
    stranger.write_bytes(county_adt("SEND-2").replace(b"WINNING_HIS|XRMYY", b"OTHER|NOWHERE"))
    args = ["mllp", "send", str(good), str(stranger), "--port", str(mllp_server.port)]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 1  # one message was refused
    assert f"{good}: AA\n" in result.output and "MSA|AA|SEND-1" in result.output
    assert f"{stranger}: AR\n" in result.output and "MSA|AR|SEND-2" in result.output
    assert [r.status for r in inbox_rows(hub)] == ["done"]
    assert CliRunner().invoke(cli, args[:3] + ["--port", str(mllp_server.port)]).exit_code == 0
