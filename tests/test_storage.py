"""The repository below the API: change feed, rollback, history, identical updates."""

from __future__ import annotations

import pytest
from sqlalchemy import func
from sqlalchemy import select

from hub import outcomes
from hub.storage import schema as s


def count(hub, table):
    with hub.engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(table)).scalar_one()


def test_every_write_adds_history_and_a_change_row(hub):
    repo = hub.repo
    stored = repo.write(lambda w: w.create({"resourceType": "Patient"}))
    repo.write(lambda w: w.update({"resourceType": "Patient", "active": True}, stored.res_id))
    repo.write(lambda w: w.delete("Patient", stored.res_id))
    changes = repo.changes()
    assert [(c.op, c.version) for c in changes] == [("create", 1), ("update", 2), ("delete", 3)]
    assert count(hub, s.resource_history) == 3
    assert repo.read("Patient", stored.res_id).deleted


def test_a_failed_transaction_leaves_nothing(hub):
    repo = hub.repo

    def two_then_fail(w):
        w.create({"resourceType": "Patient"})
        w.create({"resourceType": "Patient"})
        w.flush()
        raise outcomes.bad_request("stop")

    with pytest.raises(outcomes.OperationOutcomeError):
        repo.write(two_then_fail)
    assert count(hub, s.resource) == 0
    assert count(hub, s.change) == 0
    assert count(hub, s.resource_history) == 0


def test_patient_compartment_key_is_recorded(hub):
    hub.repo.write(lambda w: w.update({"resourceType": "Patient"}, "p1"))
    hub.repo.write(
        lambda w: w.update(
            {
                "resourceType": "Observation",
                "status": "final",
                "code": {"text": "x"},
                "subject": {"reference": "Patient/p1"},
            },
            "o1",
        )
    )
    with hub.engine.connect() as conn:
        rows = dict(conn.execute(select(s.resource.c.res_type, s.resource.c.patient_id)).all())
    assert rows == {"Patient": "p1", "Observation": "p1"}


def test_change_feed_is_ordered_across_transactions(hub):
    for i in range(5):
        hub.repo.write(lambda w, i=i: w.update({"resourceType": "Patient"}, f"p{i}"))
    seqs = [c.seq for c in hub.repo.changes()]
    assert seqs == sorted(seqs) and len(seqs) == 5
    assert [c.res_id for c in hub.repo.changes(after_seq=seqs[2])] == ["p3", "p4"]


def test_a_resource_changed_by_two_messages_of_a_group_keeps_both_versions(hub, monkeypatch):
    """Group commit: the later message replaces the staged row; one flush writes both versions."""
    repo = hub.repo
    flushes = []

    def write(writer):
        real_flush = writer.flush

        def counted():
            flushes.append(len(writer.pending))
            real_flush()

        monkeypatch.setattr(writer, "flush", counted)
        writer.begin_segment()
        writer.create({"resourceType": "Patient", "name": [{"family": "甲"}]}, "seg-1")
        writer.begin_segment()
        writer.update({"resourceType": "Patient", "name": [{"family": "乙"}]}, "seg-1")
        writer.begin_segment()
        writer.delete("Patient", "seg-1")
        writer.begin_segment()
        writer.update({"resourceType": "Patient", "name": [{"family": "丙"}]}, "seg-1")

    repo.write(write)
    assert flushes == [1]  # the transaction's one flush, nothing in between
    current = repo.read("Patient", "seg-1")
    assert current.version == 4 and not current.deleted
    assert "丙" in current.content
    with hub.engine.connect() as conn:
        h = s.resource_history.c
        history = conn.execute(
            select(h.version, h.deleted, h.content, h.resource_pk)
            .where(h.res_type == "Patient", h.res_id == "seg-1")
            .order_by(h.version)
        ).all()
        c = s.change.c
        ops = conn.execute(select(c.op, c.version).where(c.res_id == "seg-1").order_by(c.seq)).all()
        t = s.sp_string.c
        families = (
            conn.execute(select(t.exact).where(t.resource_pk == current.pk, t.param == "family"))
            .scalars()
            .all()
        )
    assert [(v, d) for v, d, _c, _pk in history] == [(1, False), (2, False), (3, True), (4, False)]
    assert ["甲" in (history[0][2] or ""), "乙" in (history[1][2] or "")] == [True, True]
    assert {pk for *_rest, pk in history} == {current.pk}
    assert [tuple(r) for r in ops] == [("create", 1), ("update", 2), ("delete", 3), ("create", 4)]
    assert families == ["丙"]  # the search index holds the current version only
