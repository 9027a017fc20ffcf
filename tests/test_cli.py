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
        "ingest",
        "--quiet",
        "--site",
        "county-hospital-a",
        str(feed),
        env_extra=env,
        tmp_path=tmp_path,
    )
    assert out.returncode == 1, out.stderr
    assert out.stdout.strip().splitlines() == ["6 done, 1 failed"]
    assert "03.hl7: inbox item 4 failed" in out.stderr
    again = run_hub(
        "ingest", "--site", "county-hospital-a", str(feed), env_extra=env, tmp_path=tmp_path
    )
    assert again.stdout.strip().splitlines()[-1] == "7 duplicate"
    assert f"{feed / '00.hl7'}: inbox item 1 done, duplicate: 4 written" in again.stdout
    listed = run_hub("inbox", "list", "--json", env_extra=env, tmp_path=tmp_path)
    items = json.loads(listed.stdout)
    assert sorted(i["status"] for i in items) == ["done"] * 6 + ["failed"]


KITS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "conformance")


def _kit_input(site: str, case: str, name: str) -> bytes:
    with open(os.path.join(KITS, "sites", site, "cases", case, name), "rb") as f:
        return f.read()


def test_ingest_prints_each_item_with_its_errors_and_warnings(tmp_path, database_url, monkeypatch):
    """``hub ingest``: per file its status and every error/warning with its location."""
    from click.testing import CliRunner

    from hub.cli import cli

    monkeypatch.setenv("HUB_DATABASE_URL", database_url)
    monkeypatch.setenv("HUB_INSTANCE_PATH", str(tmp_path))
    feed = tmp_path / "feed"
    feed.mkdir()
    (feed / "1-warn.hl7").write_bytes(
        _kit_input("county-hospital-a", "warn-bad-id-checksum", "input.hl7")
    )
    (feed / "2-broken.hl7").write_bytes(b"MSH|^~\\&|WINNING_HIS|XRMYY\rPID|oops")
    runner = CliRunner()
    out = runner.invoke(cli, ["ingest", "--site", "county-hospital-a", str(feed)])
    assert out.exit_code == 1, out.output
    lines = out.stdout.splitlines()
    warn = lines.index(f"{feed / '1-warn.hl7'}: inbox item 1 done: 5 written, 1 warning")
    assert lines[warn + 1].startswith("  warning [value] PID-3[2]: resident ID number check")
    broken = next(i for i, line in enumerate(lines) if line.startswith(f"{feed / '2-broken.hl7'}:"))
    assert lines[broken].endswith("inbox item 2 failed: 1 error")
    assert lines[broken + 1] == (
        "  error [required] MSH-9: MSH-9 message type and trigger event are required"
    )
    assert lines[-1] == "1 done, 1 failed"

    rows = tmp_path / "rows.csv"
    rows.write_bytes(_kit_input("veterans-registry", "bad-rows", "input.csv"))
    out = runner.invoke(cli, ["ingest", "--site", "veterans-registry", str(rows)])
    lines = out.stdout.splitlines()
    assert lines[0].startswith(f"{rows}: inbox item 3 partial: ")
    assert (
        "  error [value] row 4, column 身份证号: resident ID number check character"
        in "\n".join(lines)
    )
    assert lines[-1] == "1 partial"

    # --quiet: the totals line alone (failures still named on stderr), for scripts.
    out = runner.invoke(cli, ["ingest", "--quiet", "--site", "veterans-registry", str(rows)])
    assert out.stdout.splitlines() == ["1 duplicate"]
