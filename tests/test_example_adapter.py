"""The example third-party adapter (examples/fhirhub-clinic-csv), installed like any plugin."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from click.testing import CliRunner

from hub.cli import cli

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "fhirhub-clinic-csv"


def test_the_example_adapter_passes_its_conformance_kit():
    result = CliRunner().invoke(
        cli, ["conformance", "run", "--sites-dir", str(EXAMPLE / "sites"), "town-clinic"]
    )
    assert result.exit_code == 0, result.output
    assert "town-clinic  2 passed" in result.output


@pytest.fixture
def app_config(app_config):
    app_config["PLUGINS"] = ["fhirhub_clinic_csv"]
    app_config["SITES_DIR"] = str(EXAMPLE / "sites")
    return app_config


def test_a_refused_row_makes_the_file_partial(hub):
    from hub.plugin_api import patient_id_for_resident_id

    body = (EXAMPLE / "sites/town-clinic/cases/one-bad-row/input.csv").read_bytes()
    item = hub.pipeline.ingest("town-clinic", body).item
    assert item.status == "partial"
    errors = [i for i in item.outcome["issue"] if i["severity"] == "error"]
    assert [i["expression"] for i in errors] == [["row 3"]]
    # The good rows are stored.
    for number in ("370202195003120834", "110101199003070038"):
        assert hub.repo.read("Patient", patient_id_for_resident_id(number)) is not None


def test_hub_plugins_lists_the_example_with_its_version():
    result = CliRunner().invoke(cli, ["plugins"])
    assert result.exit_code == 0, result.output
    info = {p["name"]: p for p in orjson.loads(result.output)}
    assert info["clinic_csv"]["version"] == "1.0.0"
    assert "register_adapters" in info["clinic_csv"]["hooks"]


def test_site_new_accepts_an_installed_plugin_adapter(tmp_path):
    result = CliRunner().invoke(
        cli, ["site", "new", "other-clinic", "--adapter", "clinic_csv", "--dir", str(tmp_path)]
    )
    assert result.exit_code == 0, result.output
    case = tmp_path / "other-clinic" / "cases" / "vaccinate"
    assert (case / "input.csv").is_file() and (case / "expected.json").is_file()
    refused = CliRunner().invoke(
        cli, ["site", "new", "x-clinic", "--adapter", "no_such", "--dir", str(tmp_path)]
    )
    assert refused.exit_code != 0
    assert "adapter 'no_such' is not installed; installed: cda, clinic_csv" in refused.output
