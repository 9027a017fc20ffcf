"""Site manifests: loading, precise errors, routing by MSH-3/MSH-4, scaffolding."""

from __future__ import annotations

import json

import pytest

from fhirhub_plugins.hl7v2 import convert
from fhirhub_plugins.hl7v2 import route
from fhirhub_plugins.hl7v2.parse import parse_message
from hub.scaffold import scaffold_site
from hub.sites import SiteError
from hub.sites import load_site

GOOD = """\
name: demo-site
adapter: hl7v2
organization: {id: demo-site, name: 示例医院, identifier: {system: "urn:oid:2.16.156.10011.1.5", value: "X1"}}
match: {sending_application: HIS, sending_facility: DEMO}
"""


def write(tmp_path, text, name="demo-site"):
    folder = tmp_path / name
    folder.mkdir()
    (folder / "site.yaml").write_text(text, encoding="utf-8")
    return folder


def test_defaults(tmp_path):
    site = load_site(write(tmp_path, GOOD))
    assert (site.encoding, site.timezone, site.validation, site.name_style) == (
        "utf-8",
        "Asia/Shanghai",
        "reject",
        "auto",
    )
    assert site.plugin_config("hl7v2") == {}


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ("validation: maybe\n", "validation: Must be one of"),
        ("timezone: Mars/Base\n", "timezone: unknown IANA time zone"),
        ("encoding: klingon\n", "encoding: unknown encoding"),
        ("outbound: {kind: mllp, host: h}\n", "outbound.port: required when kind is mllp"),
        ("colour: red\n", "colour: Unknown field"),
    ],
)
def test_errors_name_file_and_key(tmp_path, extra, message):
    folder = write(tmp_path, GOOD + extra)
    with pytest.raises(SiteError) as exc:
        load_site(folder)
    assert str(folder / "site.yaml") in str(exc.value)
    assert message in str(exc.value)


def test_missing_nested_key(tmp_path):
    text = GOOD.replace(', value: "X1"', "")
    with pytest.raises(SiteError, match=r"organization\.identifier\.value: Missing data"):
        load_site(write(tmp_path, text))


def test_name_must_match_folder(tmp_path):
    with pytest.raises(SiteError, match="differs from the folder name"):
        load_site(write(tmp_path, GOOD, name="other"))


def test_example_sites_load(sites, township):
    assert {"county-hospital-a", "township-hospital-b"} <= set(sites)
    assert township.encoding == "gb18030"
    assert "hl7v2-local-lab" in township.code_map_overrides
    assert township.plugin_config("hl7v2")["sex_codes"] == "gb"


def test_route_by_msh3_msh4(sites):
    msg = parse_message(b"MSH|^~\\&|HIS|ZWSY|HUB|HUB|20240101||ADT^A28|1|P|2.4\rPID|1\r")
    assert route(msg, sites).name == "township-hospital-b"
    other = parse_message(b"MSH|^~\\&|HIS|ELSEWHERE|HUB|HUB|20240101||ADT^A28|1|P|2.4\rPID|1\r")
    assert route(other, sites) is None


def test_scaffold_site_writes_a_passing_case(tmp_path, code_maps):
    folder = scaffold_site("new-hospital", "hl7v2", tmp_path)
    site = load_site(folder, code_maps)
    assert "match" in (folder / "site.yaml").read_text(encoding="utf-8")
    assert "MSH-3" in (folder / "README.md").read_text(encoding="utf-8")
    case = folder / "cases" / "register-person"
    bundle, _ = convert((case / "input.hl7").read_bytes(), site, code_maps)
    assert bundle == json.loads((case / "expected.json").read_text(encoding="utf-8"))
    with pytest.raises(SiteError, match="already exists"):
        scaffold_site("new-hospital", "hl7v2", tmp_path)
