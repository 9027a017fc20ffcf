"""``hub import``: NDJSON through the write path, per-line errors, resumable, on both backends."""

from __future__ import annotations

import io

import orjson
import pytest
from click.testing import CliRunner

from hub.bulk import importer
from hub.cli import cli
from hub.storage.jobs import JobStore

GOOD = [
    {"resourceType": "Patient", "id": "i1", "name": [{"family": "Wang"}]},
    {"resourceType": "Patient", "id": "i2", "name": [{"family": "Zhang"}]},
    {
        "resourceType": "Observation",
        "id": "io1",
        "status": "final",
        "code": {"text": "pulse"},
        "subject": {"reference": "Patient/i1"},
    },
    {"resourceType": "Patient", "name": [{"family": "NoId"}]},
]


def _lines() -> bytes:
    rows = [orjson.dumps(r) for r in GOOD[:2]]
    rows.append(b"{not json")
    rows.append(orjson.dumps({"resourceType": "Nonsense", "id": "x"}))
    rows.append(orjson.dumps({"resourceType": "Patient", "id": "bad", "birthDate": "soon"}))
    rows += [orjson.dumps(r) for r in GOOD[2:]]
    return b"\n".join(rows) + b"\n"


@pytest.fixture
def ndjson_file(tmp_path):
    path = tmp_path / "feed.ndjson"
    path.write_bytes(_lines())
    return path


def _count(hub, res_type: str) -> int:
    return hub.repo.history_count(res_type)


def test_import_reports_bad_lines_and_goes_on(hub, ndjson_file):
    out = io.BytesIO()
    result = importer.import_file(hub, ndjson_file, out)
    assert (result.lines, result.stored, result.errors) == (7, 4, 3)
    reports = [orjson.loads(line) for line in out.getvalue().splitlines()]
    assert [r["resourceType"] for r in reports] == ["OperationOutcome"] * 3
    assert [r["issue"][0]["expression"][0] for r in reports] == [
        "feed.ndjson:3",
        "feed.ndjson:4",
        "feed.ndjson:5",
    ]
    assert hub.repo.read("Patient", "i1") is not None
    assert hub.repo.read("Observation", "io1") is not None
    assert hub.repo.read("Patient", "bad") is None
    assert _count(hub, "Patient") == 3
    # Indexed like any write: the search engine finds what was imported.
    from hub.fhir.searching import search_bytes

    found = orjson.loads(search_bytes(hub.service, "Patient", [("name", "Zhang")], ""))
    assert [e["resource"]["id"] for e in found["entry"]] == ["i2"]


def test_an_interrupted_import_continues_where_it_stopped(hub, app, ndjson_file):
    app.config["BULK_IMPORT_BATCH"] = 2
    calls = []

    def stop_after_first_batch(n):
        calls.append(n)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        importer.import_file(hub, ndjson_file, io.BytesIO(), progress=stop_after_first_batch)
    progress = JobStore(hub.engine).import_progress(str(ndjson_file.resolve()))
    assert (progress["lines"], progress["stored"]) == (2, 2)
    out = io.BytesIO()
    again = importer.import_file(hub, ndjson_file, out)
    assert again.resumed_at == 2
    assert (again.lines, again.stored, again.errors) == (7, 4, 3)
    assert len(out.getvalue().splitlines()) == 3
    # Nothing was written twice: one version of each imported Patient.
    assert _count(hub, "Patient") == 3
    done = importer.import_file(hub, ndjson_file, io.BytesIO())
    assert done.resumed_at == 7 and _count(hub, "Patient") == 3


def test_hub_import_command(tmp_path, database_url, monkeypatch, ndjson_file):
    monkeypatch.setenv("HUB_DATABASE_URL", database_url)
    monkeypatch.setenv("HUB_INSTANCE_PATH", str(tmp_path))
    errors = tmp_path / "errors.ndjson"
    folder = tmp_path / "in"
    folder.mkdir()
    ndjson_file.rename(folder / "feed.ndjson")
    out = CliRunner().invoke(cli, ["import", str(folder), "--errors", str(errors)])
    assert out.exit_code == 1, out.output
    assert f"{folder / 'feed.ndjson'}: 4 stored, 3 refused" in out.stdout
    assert len(errors.read_bytes().splitlines()) == 3
    again = CliRunner().invoke(cli, ["import", str(folder), "--errors", str(errors)])
    assert "0 stored" not in again.stdout and "resumed at line 8" in again.stdout
