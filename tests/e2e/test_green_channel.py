"""The green channel end to end: a registry file in, the exact ADT^A31 a hospital's HIS gets.

Two registry exports (CSV as the bureau sends them: UTF-8 with BOM, CRLF) go in
through ``hub ingest``; ``hub worker --once`` dispatches and delivers to two
hospitals listening on real MLLP sockets. ``partner-hospital`` (the example
manifest of docs/green-channel.md) has a client with the ``veteran-status``
grant; ``other-hospital`` asks for entitlements too but its client has no
grant, so it must hear of Patients only. The bytes each HIS received are
compared with golden files (``tests/golden/green-channel``; MSH-7 and EVN-2,
the times of sending and of the change, are masked). Regenerate deliberately
with ``HUB_REGEN_GOLDEN=1``.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from hub.api.context import get_hub
from hub.app import create_app
from hub.cli import cli
from hub.identity.ids import patient_id_for_resident_id
from tests.fixtures import authed_client

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "docs" / "examples" / "green-channel" / "partner-hospital"
REGISTRY = ROOT / "conformance" / "sites" / "veterans-registry"
GOLDEN = ROOT / "tests" / "golden" / "green-channel"

HEADER = "姓名,性别,身份证号,出生日期,优抚类别,伤残等级,伤残性质,户籍地址,联系电话,所属区市,抚恤定补标准(元/月),状态,待遇开始日期,待遇停止日期,优抚证号"
WANG = "王建国,男,370202195003120834,1950-03-12,残疾军人,六级,因战,青岛市市南区香港中路1号,13800000001,市南区,2150,{status},2023-01-01,{end},鲁优字0001"
LI = "李秀兰,女,370203194811020147,1948-11-02,烈士遗属,,,青岛市市北区辽宁路2号,13800000002,市北区,2680,正常,2022-07-29,,鲁优字0002"
ZHAO = "赵德胜,男,370212195506070819,1955-06-07,退役军人,,,青岛市崂山区海尔路3号,13800000003,崂山区,,暂停,2021-05-01,,鲁优字0003"


def registry_file(path: Path, *rows: str) -> Path:
    path.write_bytes(("\r\n".join([HEADER, *rows]) + "\r\n").encode("utf-8-sig"))
    return path


@pytest.fixture
def his():
    """Two test HIS endpoints: each records the bytes it gets and answers AA."""
    from fhirhub_plugins.hl7v2 import MLLPServer
    from fhirhub_plugins.hl7v2 import make_ack

    servers = []
    for _ in range(2):
        got: list[bytes] = []

        def handle(raw: bytes, got=got) -> bytes:
            got.append(raw)
            return make_ack(raw, "AA")

        server = MLLPServer(("127.0.0.1", 0), handle).start()
        server.received = got
        servers.append(server)
    yield servers
    for server in servers:
        server.stop()


def sites_folder(tmp_path: Path, partner_port: int, other_port: int) -> Path:
    """The registry's site, the documented example hospital, and a hospital without the grant."""
    folder = tmp_path / "sites"
    shutil.copytree(REGISTRY, folder / "veterans-registry")
    manifest = (EXAMPLE / "site.yaml").read_text(encoding="utf-8")
    assert "port: 2576" in manifest
    (folder / "partner-hospital").mkdir()
    (folder / "partner-hospital" / "site.yaml").write_text(
        manifest.replace("port: 2576", f"port: {partner_port}"), encoding="utf-8"
    )
    other = (
        manifest.replace("partner-hospital", "other-hospital")
        .replace("PARTNER_HIS", "OTHER_HIS")
        .replace("port: 2576", f"port: {other_port}")
    )
    (folder / "other-hospital").mkdir()
    (folder / "other-hospital" / "site.yaml").write_text(other, encoding="utf-8")
    return folder


def masked(message: bytes) -> str:
    """The message as text, one segment a line, with MSH-7 and EVN-2 (times) masked."""
    lines = []
    for segment in message.decode("utf-8").split("\r"):
        if not segment:
            continue
        fields = segment.split("|")
        if fields[0] == "MSH":
            fields[6] = "<MSH-7>"
        elif fields[0] == "EVN":
            fields[2] = "<EVN-2>"
        lines.append("|".join(fields))
    return "\n".join(lines) + "\n"


def check_golden(name: str, messages: list[bytes]) -> None:
    text = "\n".join(masked(m) for m in messages)
    path = GOLDEN / f"{name}.hl7"
    if os.environ.get("HUB_REGEN_GOLDEN") == "1" or not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    assert text == path.read_text(encoding="utf-8")


def run(env: dict[str, str], *args: str) -> str:
    result = CliRunner().invoke(cli, list(args), env=env)
    assert result.exit_code == 0, result.output
    return result.output


def segment(message: bytes, name: str) -> list[str]:
    return next(
        (seg.split("|") for seg in message.decode().split("\r") if seg.startswith(name + "|")), []
    )


def test_registry_files_to_the_hospital_his(his, database_url, tmp_path):
    partner, other = his
    env = {
        "HUB_DATABASE_URL": database_url,
        "HUB_INSTANCE_PATH": str(tmp_path),
        "HUB_SITES_DIR": str(sites_folder(tmp_path, partner.port, other.port)),
        "HUB_LOAD_EXAMPLE_SITES": "false",
        "HUB_LOAD_PLUGINS": "hl7v2,va_registry",
    }
    run(env, "clients", "add", "partner-his", "--site", "partner-hospital",
        "--scopes", "system/Patient.rs", "--grant-label", "veteran-status")  # fmt: skip
    run(env, "clients", "add", "other-his", "--site", "other-hospital",
        "--scopes", "system/Patient.rs system/Observation.rs")  # fmt: skip

    # 1. The first export: two people entitled, one suspended (no priority, nothing to say).
    first = registry_file(
        tmp_path / "registry-2024-01.csv", WANG.format(status="正常", end=""), LI, ZHAO
    )
    run(env, "ingest", "--site", "veterans-registry", str(first))
    out = run(env, "worker", "--once")
    assert "0 dead" in out and "0 to retry" in out, out

    entitled = [m for m in partner.received if segment(m, "ZVE")]
    assert len(entitled) == 2
    wang = patient_id_for_resident_id("370202195003120834")
    li = patient_id_for_resident_id("370203194811020147")
    pid = segment(entitled[0], "PID")
    assert pid[3] == "370202195003120834^^^CHN^NNCHN"
    assert pid[27] == "disabled-serviceman^残疾军人^99VETCAT"
    assert segment(entitled[0], "ZVE") == [
        "ZVE", "1", "disabled-serviceman^残疾军人^99VETCAT", "A", "20230101", "", "鲁优字0001",
    ]  # fmt: skip
    assert segment(entitled[1], "PID")[27] == "martyr-survivor^烈士遗属^99VETCAT"
    check_golden("first-import", partner.received)
    # The hospital without the grant heard of the people, never of their status.
    assert other.received and all(len(segment(m, "PID")) < 28 for m in other.received)
    assert not any(segment(m, "ZVE") for m in other.received)
    assert len(other.received) == len(partner.received) - 2

    # 2. The next export: 王建国's entitlement ended (注销, with its stop date).
    partner.received.clear()
    other.received.clear()
    second = registry_file(
        tmp_path / "registry-2024-02.csv", WANG.format(status="注销", end="2024-01-31"), LI, ZHAO
    )
    run(env, "ingest", "--site", "veterans-registry", str(second))
    run(env, "worker", "--once")
    cleared = [m for m in partner.received if segment(m, "ZVE")]
    assert len(cleared) == 1  # 李秀兰 and 赵德胜 are unchanged: nothing to tell
    assert segment(cleared[0], "PID")[3] == "370202195003120834^^^CHN^NNCHN"
    assert segment(cleared[0], "PID")[27] == '""'
    assert segment(cleared[0], "ZVE")[3:6] == ["E", "20230101", "20240131"]
    check_golden("entitlement-ended", partner.received)
    assert not any(segment(m, "ZVE") for m in other.received)

    # 3. A site connected later gets the entitlements in force by a replay (李秀兰's only);
    # the partner had that very message already, so nothing is queued twice for it.
    sites = Path(env["HUB_SITES_DIR"])
    late = (sites / "other-hospital" / "site.yaml").read_text(encoding="utf-8")
    (sites / "late-hospital").mkdir()
    (sites / "late-hospital" / "site.yaml").write_text(
        late.replace("other-hospital", "late-hospital")
        .replace("OTHER_HIS", "LATE_HIS")
        .replace(f"port: {other.port}", f"port: {partner.port}"),
        encoding="utf-8",
    )
    run(env, "clients", "add", "late-his", "--site", "late-hospital",
        "--scopes", "system/Patient.rs", "--grant-label", "veteran-status")  # fmt: skip
    partner.received.clear()
    out = run(env, "site", "replay", "late-hospital", "--type", "Observation")
    assert out.strip() == "Observation: 1 message(s) queued for late-hospital"
    for site, count in (("partner-hospital", 0), ("other-hospital", 0)):
        out = run(env, "site", "replay", site, "--type", "Observation")
        assert out.strip() == f"Observation: {count} message(s) queued for {site}"
    run(env, "worker", "--once")
    (replayed,) = partner.received  # late-hospital's HIS listens on the same test port
    assert segment(replayed, "MSH")[4] == "LATE_HIS"
    assert segment(replayed, "PID")[3] == "370203194811020147^^^CHN^NNCHN"
    assert segment(replayed, "PID")[27] == "martyr-survivor^烈士遗属^99VETCAT"

    # Each disclosure is audited: the entitlement, the person and the site it went to,
    # found as an auditor finds them (docs/green-channel.md).
    app = create_app({"DATABASE_URL": database_url, "INSTANCE_PATH": str(tmp_path),
                      "TESTING": True, "LOAD_ENTRY_POINTS": False})  # fmt: skip
    auditor = authed_client(app, "user/AuditEvent.rs")
    try:
        found = auditor.get("/fhir/AuditEvent?site=partner-hospital&subtype=export")
        assert found.status_code == 200, found.data
        events = [e["resource"] for e in found.get_json().get("entry", [])]
        late = auditor.get("/fhir/AuditEvent?site=late-hospital&subtype=export").get_json()
        other = auditor.get("/fhir/AuditEvent?site=other-hospital&subtype=export")
        assert other.get_json().get("entry", []) == []
    finally:
        get_hub(app).close()
    assert len(events) == 3 and len(late.get("entry", [])) == 1
    refs = [sorted(e["what"]["reference"] for e in ev["entity"]) for ev in events]
    assert all(re.fullmatch(r"Observation/[\w-]+/_history/\d+", r[0]) for r in refs)
    assert sorted(r[1] for r in refs) == sorted([f"Patient/{wang}"] * 2 + [f"Patient/{li}"])
    assert all(ev["source"]["observer"]["display"] == "partner-hospital" for ev in events)
