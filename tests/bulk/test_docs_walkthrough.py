"""docs/bulk.md's curl walk-through, run as written against a live hub."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.bulk.test_export import _obs
from tests.bulk.test_export import _patient
from tests.bulk.test_export import _put
from tests.bulk.test_export import run_jobs

DOC = Path(__file__).resolve().parents[2] / "docs" / "bulk.md"


def _blocks() -> list[str]:
    return re.findall(r"```sh\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S)


@pytest.mark.skipif(not (shutil.which("curl") and shutil.which("jq")), reason="needs curl and jq")
def test_the_partner_walkthrough_works(live_server, hub, tmp_path):
    http = live_server.session()
    for pid in ("w1", "w2"):
        _put(http, live_server.fhir, _patient(pid))
    _put(http, live_server.fhir, _obs("wo1", "w1"))
    kickoff, poll, download, since, cancel = _blocks()
    env = {"PATH": os.environ["PATH"], "FHIR": live_server.fhir, "TOKEN": live_server.token}

    def sh(script: str) -> str:
        done = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", script],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    sh(kickoff)
    assert (tmp_path / "status-url.txt").read_text().startswith(live_server.fhir + "/$bulk-status/")
    assert run_jobs(hub) == 1
    sh(poll)
    assert (tmp_path / "since.txt").read_text().strip()
    sh(download)
    assert len((tmp_path / "Patient.ndjson").read_text().splitlines()) == 2
    assert len((tmp_path / "Observation.ndjson").read_text().splitlines()) == 1
    sh(since)
    assert " 202" in (tmp_path / "kickoff-headers.txt").read_text().splitlines()[0]
    assert sh(cancel).strip() == "202"
