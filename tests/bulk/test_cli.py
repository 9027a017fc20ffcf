"""``hub export list`` / ``hub export show`` and ``hub worker`` running a bulk job."""

from __future__ import annotations

import orjson
from click.testing import CliRunner

from hub.cli import cli
from tests.bulk.test_export import _patient
from tests.bulk.test_export import _put
from tests.bulk.test_export import kick


def test_worker_runs_jobs_and_export_commands_show_them(
    live_server, hub, app_config, tmp_path, monkeypatch
):
    monkeypatch.setenv("HUB_DATABASE_URL", app_config["DATABASE_URL"])
    monkeypatch.setenv("HUB_INSTANCE_PATH", str(tmp_path))
    http = live_server.session()
    _put(http, live_server.fhir, _patient("x1"))
    url = kick(http, f"{live_server.fhir}/$export?_type=Patient")
    job_id = url.rsplit("/", 1)[1]
    runner = CliRunner()
    listed = runner.invoke(cli, ["export", "list"])
    assert listed.exit_code == 0, listed.output
    assert job_id in listed.stdout and "queued" in listed.stdout
    worked = runner.invoke(cli, ["worker", "--once"])
    assert worked.exit_code == 0, worked.output
    assert "1 bulk job(s) run" in worked.stdout
    shown = runner.invoke(cli, ["export", "show", job_id])
    assert shown.exit_code == 0, shown.output
    job = orjson.loads(shown.stdout)
    assert job["status"] == "done" and job["owner"] == "user:test"
    assert job["manifest"]["output"] == [
        {"type": "Patient", "file": "Patient-1.ndjson", "count": 1}
    ]
    assert http.get(url).json()["output"][0]["count"] == 1
    missing = runner.invoke(cli, ["export", "show", "nope"])
    assert missing.exit_code == 1 and "does not exist" in missing.output
