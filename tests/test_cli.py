"""The ``hub`` command, run as a user runs it (a subprocess with HUB_* settings)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

import hub


def run_hub(*args, env_extra=None, tmp_path=None):
    env = dict(os.environ, HUB_INSTANCE_PATH=str(tmp_path), **(env_extra or {}))
    return subprocess.run(
        [sys.executable, "-m", "hub.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_version(tmp_path):
    out = run_hub("--version", tmp_path=tmp_path)
    assert out.returncode == 0
    assert hub.__version__ in out.stdout


@pytest.mark.parametrize("backend", ["sqlite"])
def test_db_upgrade_demo_and_plugins(tmp_path, backend):
    env = {"HUB_DATABASE_URL": "sqlite:///instance/hub.db"}
    up = run_hub("db", "upgrade", env_extra=env, tmp_path=tmp_path)
    assert up.returncode == 0, up.stderr
    assert "0001" in up.stdout
    assert (tmp_path / "hub.db").exists()  # "instance/" means the instance folder
    first = run_hub("demo", "--if-empty", env_extra=env, tmp_path=tmp_path)
    assert first.returncode == 0, first.stderr
    assert "Patient loaded" in first.stdout or "Patient" in first.stdout
    again = run_hub("demo", "--if-empty", env_extra=env, tmp_path=tmp_path)
    assert again.returncode == 0 and "already present" in again.stdout
    plugins = run_hub("plugins", env_extra=env, tmp_path=tmp_path)
    assert plugins.returncode == 0, plugins.stderr
    names = {p["name"] for p in json.loads(plugins.stdout)}
    assert "hub.default_outcomes" in names


@pytest.fixture
def app_config(app_config):
    app_config["PLUGINS"] = [
        "fhirhub_plugins.hl7v2",
        "fhirhub_plugins.cda",
        "fhirhub_plugins.va_registry",
    ]
    return app_config


def test_demo_data_is_readable_through_the_api(app, client):
    from hub.app import get_hub
    from hub.demo import load_demo

    counts = load_demo(get_hub(app))
    assert counts["Patient"] >= 9
    messages = {k: n for k, n in counts.items() if "message(s)" in k}
    assert messages and not any(k.endswith(("failed", "quarantined")) for k in messages)
    patient = client.get("/fhir/Patient/demo-1").get_json()
    assert patient["name"][0]["text"] == "张伟"
    ids = {i["system"]: i["value"] for i in patient["identifier"]}
    from hub.identity.resident_id import is_valid

    assert is_valid(ids["urn:oid:2.16.156.10011.1.3"])


def test_ingest_files_in_groups(tmp_path):
    """``hub ingest`` of a folder: groups of files, a summary, the failures named."""
    feed = tmp_path / "feed"
    feed.mkdir()
    for n in range(7):
        body = (
            f"MSH|^~\\&|WINNING_HIS|XRMYY|FHIRHUB|HUB|20240315083000||ADT^A04^ADT_A01|F-{n}"
            f"|P|2.5|||AL|NE|CHN|UNICODE UTF-8\rPID|1||MRN{n:04d}^^^XRMYY^MR||王^{n}||19700101|F"
            "\rPV1|1|O\r"
        )
        if n == 3:
            body = "MSH|^~\\&|WINNING_HIS|XRMYY\rPID|oops"  # no message type: refused
        (feed / f"{n:02d}.hl7").write_bytes(body.encode())
    env = {"HUB_DATABASE_URL": "sqlite:///instance/hub.db", "HUB_INGEST_GROUP_SIZE": "3"}
    out = run_hub(
        "ingest", "--site", "county-hospital-a", str(feed), env_extra=env, tmp_path=tmp_path
    )
    assert out.returncode == 1, out.stderr
    assert out.stdout.strip().splitlines()[0] == "6 done, 1 failed"
    assert "03.hl7: inbox item 4 failed" in out.stderr
    again = run_hub(
        "ingest", "--site", "county-hospital-a", str(feed), env_extra=env, tmp_path=tmp_path
    )
    assert again.stdout.strip().splitlines()[0] == "7 duplicate"
    listed = run_hub("inbox", "list", "--json", env_extra=env, tmp_path=tmp_path)
    items = json.loads(listed.stdout)
    assert sorted(i["status"] for i in items) == ["done"] * 6 + ["failed"]
