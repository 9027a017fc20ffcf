"""Group locks: a resource a group rewrites as it is stored is locked shared, not exclusively.

Every message of a feed names its site's Organization (MSH-4). When it is already
stored as the message says, the group only reads it: two workers' groups must then
run side by side instead of one waiting for the other's commit. A group that does
change it must still wait for the groups reading it (and they for it).
"""

from __future__ import annotations

import threading

import orjson
import pytest
from sqlalchemy import text

from hub.storage.write_locks import lock_resources
from hub.storage.write_locks import unchanged
from tests.fixtures import adt_a04

SITE = "county-hospital-a"


def message(n: int) -> bytes:
    return adt_a04(n, "L")


@pytest.fixture
def app_config(app_config):
    app_config["PLUGINS"] = ["fhirhub_plugins.hl7v2"]
    return app_config


def _organization(hub):
    """The site's Organization as the first message stored it: (key, content)."""
    assert hub.pipeline.ingest(SITE, message(0)).item.status == "done"
    org_id = hub.pipeline.site(SITE).organization["id"]
    stored = hub.repo.read("Organization", org_id)
    assert stored is not None
    return ("Organization", org_id), orjson.loads(stored.content)


def test_unchanged_forecasts_nothing_on_sqlite(hub, backend):
    key, resource = _organization(hub)
    with hub.repo.writing() as writer:
        found = unchanged(writer, {key: [resource]})
        assert lock_resources(writer.conn, [key], shared=found) == (
            1 if backend == "postgres" else 0
        )
    assert found == ({key} if backend == "postgres" else set())


@pytest.mark.parametrize("backend", [pytest.param("postgres", marks=pytest.mark.postgres)])
def test_unchanged_is_the_stored_content_only(hub):
    key, resource = _organization(hub)
    changed = {**resource, "name": resource.get("name", "") + " (renamed)"}
    with hub.repo.writing() as writer:
        assert unchanged(writer, {key: [resource]}) == {key}
        assert unchanged(writer, {key: [resource, changed]}) == set()
        assert unchanged(writer, {("Organization", "not-stored"): [resource]}) == set()


@pytest.mark.parametrize("backend", [pytest.param("postgres", marks=pytest.mark.postgres)])
def test_groups_reading_the_same_organization_run_side_by_side(hub):
    key, resource = _organization(hub)
    finished = threading.Event()
    errors: list[BaseException] = []

    def second_message():
        try:
            result = hub.pipeline.ingest(SITE, message(1))
            assert result.item.status == "done", result.item.outcome
        except BaseException as err:  # noqa: BLE001 - reported by the test thread
            errors.append(err)
        finally:
            finished.set()

    # A first group holds its locks on the unchanged Organization, as the pipeline takes them.
    with hub.repo.writing() as writer:
        same = unchanged(writer, {key: [resource]})
        lock_resources(writer.conn, [key], shared=same)
        writer.prefetch(same, shared=True)
        thread = threading.Thread(target=second_message)
        thread.start()
        # Before: the second message waited here for this transaction's commit.
        ran = finished.wait(timeout=30)
    thread.join(timeout=60)
    assert ran, "the second group waited for the first one's commit"
    assert not errors, errors


@pytest.mark.parametrize("backend", [pytest.param("postgres", marks=pytest.mark.postgres)])
def test_a_group_changing_the_organization_waits_for_its_readers(hub):
    key, resource = _organization(hub)
    with hub.repo.writing() as reader:
        same = unchanged(reader, {key: [resource]})
        lock_resources(reader.conn, [key], shared=same)
        reader.prefetch(same, shared=True)
        with hub.engine.connect() as other, other.begin():
            other.execute(text("SET LOCAL lock_timeout = '500ms'"))
            # Changed content: no forecast, so an exclusive lock, which must wait.
            with pytest.raises(Exception, match="lock timeout"):
                lock_resources(other, [key], shared=set())
