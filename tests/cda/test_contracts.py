"""The platform's family-doctor contract export -> EpisodeOfCare + CareTeam."""

from __future__ import annotations

import pytest

from fhirhub_plugins import cda
from fhirhub_plugins.cda import contracts
from hub.identity.ids import patient_id_for_resident_id
from hub.mapping import MappingContext
from hub.outcomes import OperationOutcomeError
from hub.validation.structure import check_structure
from tests.golden import assert_golden

from .conftest import GOLDEN
from .conftest import resources

EXPORT = GOLDEN / "contracts" / "export.csv"


def run(body, site, code_maps):
    context = MappingContext(site, code_maps)
    return contracts.contracts_bundle(body, context, site), context.issues


def test_contract_export_matches_golden(site, code_maps):
    bundle, issues = run(EXPORT.read_bytes(), site, code_maps)
    assert_golden(bundle, EXPORT.with_suffix(".expected.json"))
    assert_golden(issues, EXPORT.with_suffix(".issues.json"))
    for entry in bundle["entry"]:
        check_structure(entry["resource"])


def test_contract_resources(site, code_maps):
    bundle, issues = run(EXPORT.read_bytes(), site, code_maps)
    episodes = {e["identifier"][0]["value"]: e for e in resources(bundle, "EpisodeOfCare")}
    assert sorted(episodes) == [
        "QY370283-2023-000871",
        "QY370283-2024-000153",
        "QY370283-2024-000155",
    ]
    wang = episodes["QY370283-2024-000153"]
    assert wang["status"] == "active"
    assert wang["period"] == {"start": "2024-01-10", "end": "2025-01-09"}
    assert wang["patient"] == {
        "reference": f"urn:uuid:{patient_id_for_resident_id('370283195803121235')}"
    }
    packages = [
        (e["valueCoding"]["code"], e["valueCoding"]["display"])
        for e in wang["extension"]
        if e["url"].endswith("service-package")
    ]
    # The codes the contract rules read; the export's names stay as displays.
    assert packages == [("basic", "基础包"), ("personalised", "高血压个性化包")]
    assert episodes["QY370283-2023-000871"]["status"] == "finished"
    assert episodes["QY370283-2024-000155"]["status"] == "planned"
    (team_3,) = [t for t in resources(bundle, "CareTeam") if t["name"] == "同和街道第三团队"]
    assert len(team_3["participant"]) == 2  # 赵志强 and 钱玉兰, each once
    patient_entries = [e for e in bundle["entry"] if e["resource"]["resourceType"] == "Patient"]
    assert all(
        e["request"]["method"] == "POST"
        and e["request"]["ifNoneExist"].startswith("identifier=urn:oid:2.16.156.10011.1.3|")
        for e in patient_entries
    )
    bad = [i for i in issues if i["severity"] == "warning"]
    assert [i["expression"] for i in bad] == [["row 4"]]
    assert "check character" in bad[0]["diagnostics"]


def test_missing_columns_refused(site, code_maps):
    with pytest.raises(OperationOutcomeError) as err:
        run("签约编号,姓名\nA,B\n".encode(), site, code_maps)
    assert err.value.status == 400


def test_no_loadable_row_is_an_error(site, code_maps):
    text = EXPORT.read_text(encoding="utf-8-sig").splitlines()
    with pytest.raises(OperationOutcomeError) as err:
        run(("\n".join([text[0], text[3]]) + "\n").encode(), site, code_maps)
    assert err.value.status == 422


def test_gbk_export_is_read(site, code_maps):
    bundle, _ = run(EXPORT.read_text(encoding="utf-8-sig").encode("gb18030"), site, code_maps)
    assert len(resources(bundle, "EpisodeOfCare")) == 3


def test_detects_contract_export():
    assert contracts.looks_like_contracts(EXPORT.read_bytes())
    assert not contracts.looks_like_contracts(b"<ClinicalDocument/>")


def test_unknown_package_name_is_kept_as_text_with_a_warning(site, code_maps):
    text = EXPORT.read_text(encoding="utf-8-sig").replace("基础包", "老年人套餐", 1)
    bundle, issues = run(text.encode(), site, code_maps)
    coded = [
        ext["valueCoding"]
        for episode in resources(bundle, "EpisodeOfCare")
        for ext in episode.get("extension", ())
        if ext["url"] == "urn:fhirhub:extension:service-package"
    ]
    assert {"display": "老年人套餐"} in coded
    (warning,) = [i for i in issues if "老年人套餐" in i.get("diagnostics", "")]
    assert warning["severity"] == "warning" and warning["expression"] == ["row 2"]


def _cut_inside_a_character(encoding: str) -> bytes:
    """The export padded so that its 400th byte (the sniffed prefix) ends inside a character."""
    text = EXPORT.read_bytes().decode("utf-8-sig")
    for pad in range(64):
        body = text.replace("王建国", "王建国" + " " * pad, 1).encode(encoding)
        try:
            body[:400].decode(encoding)
        except UnicodeDecodeError:
            return body
    raise AssertionError("no padding cuts a character at byte 400")


@pytest.mark.parametrize("encoding", ["utf-8-sig", "gb18030"])
def test_detected_when_a_character_straddles_the_sniffed_prefix(encoding):
    """A multi-byte character cut by the sniffed prefix does not hide the header."""
    body = _cut_inside_a_character(encoding)
    assert contracts.looks_like_contracts(body)
    assert cda.detect_format(body=body, content_type="text/csv") == "cda-contracts"
