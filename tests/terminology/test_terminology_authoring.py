"""``hub terminology load`` and ``unmapped``, following docs/terminology.md on both backends.

The table loaded is the CSV example of the documentation, so the example is run here.
"""

from __future__ import annotations

import re
from pathlib import Path

import openpyxl
import pytest
from click.testing import CliRunner

from hub.cli import cli
from hub.cli_context import make_hub
from hub.paths import PROJECT_DIR
from hub.storage.db import reading
from hub.terminology.authoring import read_table

DOC = PROJECT_DIR / "docs" / "terminology.md"
SITE = "township-hospital-b"
LAB = "urn:oid:2.16.156.10011.0.99.2002.9"
INPUT = PROJECT_DIR / "conformance/sites" / SITE / "cases/lab-result-local-codes/input.hl7"
SITE_MAP = f"urn:fhirhub:conceptmap:hl7v2-local-lab:{SITE}"


def _doc_block(lang: str) -> str:
    text = DOC.read_text(encoding="utf-8")
    return re.search(rf"```{lang}\n(.*?)```", text, re.S).group(1)


@pytest.fixture
def env(tmp_path, database_url, monkeypatch):
    monkeypatch.setenv("HUB_DATABASE_URL", database_url)
    monkeypatch.setenv("HUB_INSTANCE_PATH", str(tmp_path))
    return tmp_path


def _ingest(runner: CliRunner, folder: Path, n: int) -> None:
    """``n`` copies of the township lab message (CBC and PLT are not in its map)."""
    body = INPUT.read_bytes()
    for i in range(n):
        path = folder / f"lab-{folder.name}-{i}.hl7"
        path.write_bytes(body.replace(b"ZW-ORU-0001", f"ZW-ORU-{folder.name}{i}".encode()))
    out = runner.invoke(cli, ["ingest", "--site", SITE, str(folder)])
    assert out.exit_code == 0, out.output


def test_load_the_documented_table_and_close_the_gaps(env):
    runner = CliRunner()
    first = env / "a"
    first.mkdir()
    _ingest(runner, first, 2)

    out = runner.invoke(cli, ["terminology", "unmapped", SITE])
    assert out.exit_code == 0, out.output
    rows = [line.split() for line in out.stdout.splitlines()[1:]]
    assert rows == [["2", "hl7v2-local-lab", "CBC", LAB], ["2", "hl7v2-local-lab", "PLT", LAB]]

    table = env / "lab-codes.csv"
    table.write_text(_doc_block("csv"), encoding="utf-8")
    out = runner.invoke(cli, ["terminology", "load", SITE, str(table)])
    assert out.exit_code == 0, out.output
    assert (
        out.stdout.strip()
        == f"{SITE}: 4 local code(s), 3 mapped by hl7v2-local-lab (1 still unmapped)"
    )

    out = runner.invoke(cli, ["terminology", "unmapped", SITE, "--json"])
    assert [line for line in out.stdout.splitlines()] == [
        f'{{"map":"hl7v2-local-lab","system":"{LAB}","code":"CBC","count":2,"last_item":2}}'
    ]

    the_hub = make_hub()
    try:
        term = the_hub.terminology
        term.refresh()
        assert [m["concept"]["code"] for m in term.translate("PLT", LAB, SITE_MAP)] == ["777-3"]
        # $translate serves the map as the adapter uses it: the table over the site's files.
        assert [m["concept"]["code"] for m in term.translate("HBSAG", LAB, SITE_MAP)] == ["5196-1"]
        assert term.code_map("hl7v2-local-lab", the_hub.sites[SITE]).lookup("HBSAG").code == (
            "5196-1"
        )
        lookup = term.lookup(LAB, "PLT")
        assert {"name": "display", "valueString": "血小板计数"} in lookup["parameter"]
    finally:
        the_hub.close()

    # The site's next message is mapped with the loaded table.
    second = env / "b"
    second.mkdir()
    _ingest(runner, second, 1)
    the_hub = make_hub()
    try:
        with reading(the_hub.engine) as conn:
            found = the_hub.service.search_engine.search(
                conn, "Observation", [("code", "http://loinc.org|777-3")]
            )
        assert len(found.entries) == 1
    finally:
        the_hub.close()


def test_load_reads_xlsx_with_chinese_headings_and_a_target_system(env):
    book = openpyxl.Workbook()
    sheet = book.active
    sheet.append(["本地代码", "本地名称", "目标代码", "目标系统"])
    sheet.append(["GLU", "葡萄糖", "2345-7", "http://loinc.org"])
    sheet.append(["K", "钾", "2823-3", None])
    path = env / "table.xlsx"
    book.save(path)
    runner = CliRunner()
    out = runner.invoke(cli, ["terminology", "load", SITE, str(path), "--system", "urn:oid:1.2.3"])
    assert out.exit_code == 0, out.output
    the_hub = make_hub()
    try:
        term = the_hub.terminology
        term.refresh()
        site = the_hub.sites[SITE]
        assert term.code_map("hl7v2-local-lab", site).lookup("K").code == "2823-3"
        assert term.validate_in_system("urn:oid:1.2.3", "GLU")["result"] is True
        # The table replaces the site's override files for the entries it holds, keeps the rest.
        assert term.code_map("hl7v2-local-lab", site).lookup("HGB").code == "718-7"
    finally:
        the_hub.close()


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"", "empty"),
        (b"code,name\nA,x\n", "no column for target_code"),
        (b"code,display,target code\n,x,1\n", "line 2: no code"),
        (b"code,display,target code\nA,x,1\nA,y,2\n", "code 'A' again (line 2)"),
    ],
)
def test_bad_tables_are_refused_with_the_reason(body, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        read_table("t.csv", body)


def test_gb18030_tables_are_read():
    rows = read_table("t.csv", "code,display,target code\nHGB,血红蛋白,718-7\n".encode("gb18030"))
    assert [(r.code, r.display, r.target_code) for r in rows] == [("HGB", "血红蛋白", "718-7")]


def test_unknown_site_or_map_is_a_usage_error(env, tmp_path):
    table = tmp_path / "t.csv"
    table.write_text("code,display,target code\nA,x,1\n", encoding="utf-8")
    runner = CliRunner()
    out = runner.invoke(cli, ["terminology", "load", "nowhere", str(table)])
    assert out.exit_code == 2 and "no site 'nowhere'" in out.output
    out = runner.invoke(cli, ["terminology", "load", SITE, str(table), "--map", "nomap"])
    assert out.exit_code == 2 and "no code map 'nomap'" in out.output
    out = runner.invoke(cli, ["terminology", "unmapped", "nowhere"])
    assert out.exit_code == 2
