"""MLLP over a real localhost socket (ephemeral port): framing, concurrency, ACKs."""

from __future__ import annotations

import socket
import threading

import pytest

from fhirhub_plugins.hl7v2.mllp import FS
from fhirhub_plugins.hl7v2.mllp import VT
from fhirhub_plugins.hl7v2.mllp import FrameReader
from fhirhub_plugins.hl7v2.mllp import MLLPServer
from fhirhub_plugins.hl7v2.mllp import frame
from fhirhub_plugins.hl7v2.mllp import make_ack
from fhirhub_plugins.hl7v2.mllp import send
from fhirhub_plugins.hl7v2.parse import parse_message

MSG = "MSH|^~\\&|WINNING_HIS|XRMYY|FHIRHUB|HUB|20240315083000||ADT^A01^ADT_A01|{id}|P|2.5|||||CHN|UNICODE UTF-8\rPID|1||{id}^^^XRMYY^MR||张^伟\r"


def msg(control_id: str) -> bytes:
    return MSG.format(id=control_id).encode()


@pytest.fixture
def server():
    received: list[bytes] = []
    lock = threading.Lock()

    def handler(body: bytes) -> bytes:
        with lock:
            received.append(body)
        return make_ack(body, "AA")

    srv = MLLPServer(("127.0.0.1", 0), handler, max_frame=4096, idle_timeout=5).start()
    srv.received = received
    yield srv
    srv.stop()


def control_id_of(ack: bytes) -> str:
    return parse_message(ack).segment("MSA").get(2)


def test_send_returns_ack_for_the_message(server):
    ack = send("127.0.0.1", server.port, msg("C-1"), timeout=5)
    parsed = parse_message(ack)
    assert parsed.structure == "ACK_A01"
    assert parsed.segment("MSA").get(1) == "AA"
    assert parsed.segment("MSA").get(2) == "C-1"
    # the ACK goes back to the sender: MSH-5/6 are the message's MSH-3/4
    assert parsed.msh.get(5) == "WINNING_HIS" and parsed.msh.get(6) == "XRMYY"
    assert server.received == [msg("C-1")]


def test_concurrent_senders(server):
    results: dict[str, str] = {}

    def worker(n: int) -> None:
        cid = f"C-{n}"
        results[cid] = control_id_of(send("127.0.0.1", server.port, msg(cid), timeout=5))

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == {f"C-{n}": f"C-{n}" for n in range(20)}
    assert len(server.received) == 20


def recv_frames(sock: socket.socket, count: int) -> list[bytes]:
    reader, out = FrameReader(), []
    while len(out) < count:
        data = sock.recv(65536)
        assert data, "server closed early"
        out += reader.feed(data)
    return out


def test_split_frames_garbage_and_pipelining(server):
    payload = b"noise\r\n" + frame(msg("S-1")) + b"\x00\x00" + frame(msg("S-2"))
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        for i in range(0, len(payload), 7):  # dribble the bytes in 7-byte pieces
            sock.sendall(payload[i : i + 7])
        acks = recv_frames(sock, 2)
    assert [control_id_of(a) for a in acks] == ["S-1", "S-2"]
    assert server.received == [msg("S-1"), msg("S-2")]


def test_oversize_frame_gets_ar_and_close(server):
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(VT + b"MSH|" + b"x" * 5000)
        (ack,) = recv_frames(sock, 1)
        assert sock.recv(10) == b""  # closed
    parsed = parse_message(ack)
    assert parsed.segment("MSA").get(1) == "AR"
    assert "larger than 4096" in parsed.segment("ERR").get(8)
    assert server.received == []


def test_handler_exception_answers_ae():
    def broken(body: bytes) -> bytes:
        raise RuntimeError("boom")

    srv = MLLPServer(("127.0.0.1", 0), broken).start()
    try:
        ack = parse_message(send("127.0.0.1", srv.port, msg("E-1"), timeout=5))
    finally:
        srv.stop()
    assert ack.segment("MSA").get(1) == "AE"
    assert ack.segment("MSA").get(2) == "E-1"


def test_frame_reader_restarts_on_a_cut_frame():
    reader = FrameReader()
    assert reader.feed(VT + b"MSH|cut") == []
    assert reader.feed(VT + b"MSH|whole" + FS + b"\r") == [b"MSH|whole"]


def test_make_ack_error_carries_err_segment():
    parsed_msg = parse_message(msg("X-9"))
    ack = parse_message(make_ack(parsed_msg, "AE", "PID-7 '19801345' is not a valid date", "PID-7"))
    err = ack.segment("ERR")
    assert ack.segment("MSA").get(1) == "AE"
    assert ack.segment("MSA").get(2) == "X-9"
    assert err.get(2, 1) == "PID" and err.get(2, 3) == "7"  # ERR-2 location
    assert err.get(4) == "E"
    assert err.get(8) == "PID-7 '19801345' is not a valid date"


def test_make_ack_for_unparseable_bytes():
    ack = parse_message(make_ack(b"garbage", "AR", "not HL7"))
    assert ack.segment("MSA").get(1) == "AR"
    assert ack.segment("MSA").get(2) is None


def test_make_ack_err_segments_from_issues():
    from hub.outcomes import issue

    ack = parse_message(
        make_ack(
            parse_message(msg("X-10")),
            "AA",
            issues=[
                issue("warning", "code-invalid", "code 'X1' is not in code map lab", "OBX[2]-3"),
                issue("warning", "processing", "MSH-7 has no time of day", "MSH-7"),
                issue("error", "required", "PID-3 is required", "PID-3[2]"),
            ],
        )
    )
    assert ack.segment("MSA").get(1) == "AA" and ack.segment("MSA").get(3) is None
    found = [(e.get(2, 1), e.get(2, 2), e.get(2, 3), e.get(3), e.get(4)) for e in ack.all("ERR")]
    assert found == [
        ("OBX", "2", "3", "103", "W"),
        ("MSH", "1", "7", "207", "W"),
        ("PID", "1", "3", "101", "E"),
    ]
