"""``transactionTime`` never passes a write that is not committed yet (both backends)."""

from __future__ import annotations

import datetime as dt
import threading

from hub.storage.jobs import transaction_time


def test_transaction_time_waits_for_or_precedes_writes_in_flight(hub):
    result: list[tuple[dt.datetime, bool]] = []

    def instant_then_look():
        tt = transaction_time(hub.engine)
        result.append((tt, hub.repo.read("Patient", "in-flight") is not None))

    with hub.repo.writing() as writer:
        writer.create({"resourceType": "Patient"}, "in-flight")
        stamp = writer.now
        if hub.engine.dialect.name == "postgresql":
            # Another session: the write is open, so the instant is before its stamp.
            assert transaction_time(hub.engine) < stamp
            thread = None
        else:
            # SQLite: the instant is read under the write lock, so only once this write
            # committed: by then the write is visible.
            thread = threading.Thread(target=instant_then_look)
            thread.start()
    if thread is not None:
        thread.join()
        tt, visible = result[0]
        assert visible and tt > stamp
    assert transaction_time(hub.engine) > stamp
