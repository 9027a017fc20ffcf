"""Group commit: many inbox items stored in one transaction, with the results of one by one."""

from __future__ import annotations

import threading

import orjson
import pytest
from sqlalchemy import func
from sqlalchemy import select

from hub import hookimpl
from hub.identity.ids import patient_id_for_resident_id
from hub.storage import schema as s

SITE = "county-hospital-a"
RESIDENT = "410102198001010018"
BAD_FAMILY = "错"  # the family name RejectFamily refuses


def adt(control_id: str, event: str, family: str = "张", given: str = "伟", visit: str = "V1"):
    return (
        f"MSH|^~\\&|WINNING_HIS|XRMYY|FHIRHUB|HUB|20240315083000||ADT^{event}^ADT_A01|{control_id}"
        "|P|2.5|||AL|NE|CHN|UNICODE UTF-8\r"
        f"EVN|{event}|20240315083000\r"
        f"PID|1||0012345^^^XRMYY^MR~{RESIDENT}^^^CHN^NNCHN||{family}^{given}||19800101|M\r"
        f"PV1|1|I|内科^301^2||||||||||||||||{visit}\r"
    ).encode()


def other_person(control_id: str, n: int, family: str = "王") -> bytes:
    return (
        f"MSH|^~\\&|WINNING_HIS|XRMYY|FHIRHUB|HUB|20240315083000||ADT^A04^ADT_A01|{control_id}"
        "|P|2.5|||AL|NE|CHN|UNICODE UTF-8\r"
        f"PID|1||MRN{n:04d}^^^XRMYY^MR||{family}^{n}||19700101|F\r"
        "PV1|1|O\r"
    ).encode()


class RejectFamily:
    """Refuses a Patient whose family name is BAD_FAMILY (the site's policy is reject)."""

    @hookimpl
    def validate_resource(self, resource, site):
        if resource.get("resourceType") != "Patient":
            return None
        if any(n.get("family") == BAD_FAMILY for n in resource.get("name") or ()):
            return [
                {
                    "severity": "error",
                    "code": "business-rule",
                    "diagnostics": "family name refused",
                    "expression": ["Patient.name[0].family"],
                }
            ]
        return None


@pytest.fixture
def app_config(app_config):
    app_config["PLUGINS"] = ["fhirhub_plugins.hl7v2", RejectFamily()]
    return app_config


def rows(hub, table, *where) -> int:
    with hub.engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(table).where(*where)).scalar_one()


def contents(hub, res_type: str) -> list[dict]:
    with hub.engine.connect() as conn:
        found = conn.execute(select(s.resource.c.content).where(s.resource.c.res_type == res_type))
        return [orjson.loads(c) for (c,) in found]


def current(hub, res_type: str, res_id: str) -> dict:
    with hub.engine.connect() as conn:
        content = conn.execute(
            select(s.resource.c.content).where(
                s.resource.c.res_type == res_type, s.resource.c.res_id == res_id
            )
        ).scalar_one()
    return orjson.loads(content)


def test_one_person_across_a_group_gets_a_version_per_message(hub):
    pid = patient_id_for_resident_id(RESIDENT)
    results = hub.pipeline.ingest_many(
        SITE,
        [
            adt("G-1", "A01"),
            other_person("G-2", 1),
            adt("G-3", "A08", given="伟明"),  # a corrected name, same visit
            adt("G-4", "A08", given="伟明"),  # the same again: nothing to write
        ],
    )
    assert [r.status for r in results] == ["done"] * 4
    assert not any(r.duplicate for r in results)
    assert current(hub, "Patient", pid)["name"][0]["given"] == ["伟明"]
    # Each message that changed the person made its own version, as one by one.
    h = s.resource_history.c
    assert rows(hub, s.resource_history, h.res_type == "Patient", h.res_id == pid) == 2
    # Every message has its Provenance naming it.
    provenance = contents(hub, "Provenance")
    sources = {
        e["what"]["identifier"]["value"]
        for p in provenance
        for e in p.get("entity", ())
        if "identifier" in e.get("what", {})
    }
    assert {"G-1", "G-2", "G-3", "G-4"} <= sources
    # Every item is marked with its own outcome.
    for r in results:
        assert r.item.outcome["issue"][0]["diagnostics"].endswith(r.item.source_key)


def test_a_refused_message_is_taken_out_of_its_group(hub):
    bodies = [other_person(f"R-{n}", n, family=BAD_FAMILY if n == 2 else "王") for n in range(5)]
    results = hub.pipeline.ingest_many(SITE, bodies)
    assert [r.status for r in results] == ["done", "done", "failed", "done", "done"]
    refused = results[2].item.outcome
    assert refused["issue"][0]["expression"][0].startswith("Bundle.entry")
    assert "family name refused" in refused["issue"][0]["diagnostics"]
    # Nothing of the refused message was stored; everything of the others was.
    assert rows(hub, s.resource, s.resource.c.res_type == "Patient") == 4
    identifiers = {i["value"] for p in contents(hub, "Patient") for i in p["identifier"]}
    assert "MRN0002" not in identifiers and {"MRN0000", "MRN0004"} <= identifiers
    # The refused one waits in the inbox for a replay; it was tried once.
    item = hub.pipeline.inbox.get(results[2].item.id)
    assert item.status == "failed" and item.attempts == 1


def test_an_unparseable_message_fails_alone(hub):
    bodies = [
        other_person("P-0", 0),
        b"MSH|^~\\&|WINNING_HIS|XRMYY\rPID|oops",
        other_person("P-2", 2),
    ]
    results = hub.pipeline.ingest_many(SITE, bodies)
    assert [r.status for r in results] == ["done", "failed", "done"]
    assert results[1].item.outcome["issue"][0]["severity"] in ("error", "fatal")


def test_duplicates_within_and_across_calls(hub):
    body = other_person("D-1", 1)
    first = hub.pipeline.ingest_many(SITE, [body, other_person("D-2", 2), body])
    assert [r.duplicate for r in first] == [False, False, True]
    assert first[2].item.id == first[0].item.id and first[2].status == "done"
    versions = rows(hub, s.resource_history)
    again = hub.pipeline.ingest_many(SITE, [body, other_person("D-2", 2)])
    assert all(r.duplicate for r in again)
    assert [r.item.id for r in again] == [first[0].item.id, first[1].item.id]
    assert rows(hub, s.resource_history) == versions
    assert rows(hub, s.inbox) == 2


def test_a_failure_of_the_group_itself_falls_back_to_one_by_one(hub, monkeypatch):
    from hub.lifetime import ingest as lifetime_ingest

    real = lifetime_ingest.refresh
    calls = []

    def fails_once(writer, evidence, patients):
        calls.append(len(patients))
        if len(calls) == 1:
            raise RuntimeError("the group's colour refresh failed")
        return real(writer, evidence, patients)

    monkeypatch.setattr(lifetime_ingest, "refresh", fails_once)
    results = hub.pipeline.ingest_many(SITE, [other_person(f"X-{n}", n) for n in range(3)])
    assert [r.status for r in results] == ["done"] * 3
    assert calls == [3, 1, 1, 1]  # the group, then each message alone
    assert rows(hub, s.resource, s.resource.c.res_type == "Patient") == 3


def test_group_size_one_commits_each_message(hub):
    hub.config["INGEST_GROUP_SIZE"] = 1
    results = hub.pipeline.ingest_many(SITE, [other_person(f"S-{n}", n) for n in range(3)])
    assert [r.status for r in results] == ["done"] * 3


def test_worker_processes_pending_items_in_groups(hub):
    for n in range(6):
        hub.pipeline.ingest(
            SITE, other_person(f"W-{n}", n, "王" if n != 4 else BAD_FAMILY), process=False
        )
    assert hub.pipeline.process_pending() == 6
    statuses = [i.status for i in reversed(hub.pipeline.inbox.list())]
    assert statuses == ["done", "done", "done", "done", "failed", "done"]


def test_replay_after_a_fix(hub):
    results = hub.pipeline.ingest_many(SITE, [other_person("F-1", 1, BAD_FAMILY)])
    assert results[0].status == "failed"
    hub.pm.unregister(next(p for p in hub.pm.get_plugins() if isinstance(p, RejectFamily)))
    (replayed,) = hub.pipeline.replay()
    assert replayed.status == "done" and replayed.attempts == 2


# -- MLLP ---------------------------------------------------------------------------


@pytest.fixture
def mllp_server(hub):
    from fhirhub_plugins.hl7v2 import MLLPServer
    from fhirhub_plugins.hl7v2.listener import make_handler

    server = MLLPServer(("127.0.0.1", 0), make_handler(hub)).start()
    yield server
    server.stop()


def _msa(ack: bytes) -> tuple[str, str]:
    seg = next(x for x in ack.split(b"\r") if x.startswith(b"MSA"))
    fields = seg.decode().split("|")
    return fields[1], fields[2]


def test_mllp_senders_share_commits_and_each_gets_its_own_ack(mllp_server, hub):
    from fhirhub_plugins.hl7v2 import send

    acks: dict[str, str] = {}
    lock = threading.Lock()

    def sender(k: int) -> None:
        for m in range(6):
            n = k * 10 + m
            family = BAD_FAMILY if n == 23 else "王"
            code, control = _msa(
                send("127.0.0.1", mllp_server.port, other_person(f"M-{n}", n, family))
            )
            with lock:
                acks[control] = code

    threads = [threading.Thread(target=sender, args=(k,)) for k in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(acks) == 36
    assert acks.pop("M-23") == "AE"
    assert set(acks.values()) == {"AA"}
    assert rows(hub, s.inbox, s.inbox.c.status == "done") == 35
    assert rows(hub, s.resource, s.resource.c.res_type == "Patient") == 35


def test_two_writers_with_the_same_people_both_land(hub):
    """Two groups about the same people at once (two workers): every message stored, none lost."""
    bodies = [[adt(f"T{k}-{n}", "A08", given=f"伟{k}{n}") for n in range(5)] for k in range(2)]
    bodies = [b + [other_person(f"T{k}-P{n}", n) for n in range(5)] for k, b in enumerate(bodies)]
    results: dict[int, list] = {}

    def worker(k: int) -> None:
        results[k] = hub.pipeline.ingest_many(SITE, bodies[k])

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [r.status for k in (0, 1) for r in results[k]] == ["done"] * 20
    pid = patient_id_for_resident_id(RESIDENT)
    h = s.resource_history.c
    # Ten changes of one person: ten versions, whatever the interleaving.
    assert rows(hub, s.resource_history, h.res_type == "Patient", h.res_id == pid) == 10
    assert rows(hub, s.resource, s.resource.c.res_type == "Patient") == 6


def test_mllp_committer_survives_a_failed_group(mllp_server, hub, monkeypatch):
    """A group the hub cannot store at all (say, the database is gone) is answered AE, and the
    next message is stored as usual."""
    from fhirhub_plugins.hl7v2 import send

    real = hub.pipeline.ingest_many
    calls = []

    def broken_once(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("database unreachable")
        return real(*args, **kwargs)

    monkeypatch.setattr(hub.pipeline, "ingest_many", broken_once)
    ack = send("127.0.0.1", mllp_server.port, other_person("E-1", 1))
    assert _msa(ack) == ("AE", "E-1")
    assert b"RuntimeError" in ack
    assert rows(hub, s.inbox) == 0  # nothing stored, nothing acknowledged as stored
    ack = send("127.0.0.1", mllp_server.port, other_person("E-2", 2))
    assert _msa(ack) == ("AA", "E-2")
    assert rows(hub, s.inbox, s.inbox.c.status == "done") == 1
