import datetime as dt

import pytest

from fhirhub_plugins.va_registry import read
from hub.outcomes import OperationOutcomeError
from tests.va_registry.samples import HEADERS
from tests.va_registry.samples import PEOPLE
from tests.va_registry.samples import csv_bytes
from tests.va_registry.samples import xlsx_bytes


@pytest.mark.parametrize(
    ("encoding", "expected"),
    [("utf-8-sig", "utf-8-sig"), ("utf-8", "utf-8"), ("gbk", "gb18030"), ("gb18030", "gb18030")],
)
def test_read_csv_detects_encoding(encoding, expected):
    table = read.read_table(csv_bytes([list(p) for p in PEOPLE], encoding))
    assert table.encoding == expected
    assert [r.values["name"] for r in table.rows] == [p[0] for p in PEOPLE]
    assert table.rows[0].number == 2  # the header is row 1, as in Excel


def test_read_csv_site_encoding_overrides_detection():
    body = csv_bytes([list(p) for p in PEOPLE], "gbk")
    assert read.read_csv(body, "gbk").rows[1].values["name"] == "李秀兰"


def test_read_csv_header_aliases_and_full_width_brackets():
    body = f"对象姓名,公民身份号码,人员类别,抚恤定补标准（元/月）\r\n王建国,{PEOPLE[0][2]},残疾军人,2150\r\n".encode()
    table = read.read_table(body)
    assert table.rows[0].values == {
        "name": "王建国",
        "resident_id": PEOPLE[0][2],
        "category": "残疾军人",
        "pension": "2150",
    }


def test_read_unknown_headers_are_listed():
    body = (f"姓名,身份证号,优抚类别,部队代号\r\n王建国,{PEOPLE[0][2]},残疾军人,12345\r\n").encode()
    assert read.read_table(body).unknown_headers == ["部队代号"]


def test_read_missing_required_column_is_422_at_row_1():
    body = "姓名,性别\r\n王建国,男\r\n".encode()
    with pytest.raises(OperationOutcomeError) as info:
        read.read_table(body)
    assert info.value.status == 422
    assert info.value.issues[0]["expression"] == ["row 1"]
    assert "身份证号" in info.value.issues[0]["diagnostics"]


def test_read_empty_file_is_400():
    with pytest.raises(OperationOutcomeError) as info:
        read.read_table(b"")
    assert info.value.status == 400


def test_read_not_text_is_400():
    with pytest.raises(OperationOutcomeError) as info:
        read.read_table(b"\xff\xfe\x00\x81\x30\xff\xff")
    assert info.value.status == 400


def test_read_skips_blank_rows():
    body = csv_bytes([list(PEOPLE[0]), [""] * len(HEADERS), list(PEOPLE[1])])
    assert [r.number for r in read.read_table(body).rows] == [2, 4]


def test_read_xlsx_date_cells_and_text_ids():
    table = read.read_table(xlsx_bytes([list(p) for p in PEOPLE]))
    assert table.encoding == "xlsx"
    first = table.rows[0].values
    assert read.parse_date(first["birth_date"]) == dt.date(1950, 3, 12)
    assert first["resident_id"] == PEOPLE[0][2]
    assert first["pension"] == 2150


def test_read_broken_xlsx_is_400():
    with pytest.raises(OperationOutcomeError) as info:
        read.read_table(read.XLSX_MAGIC + b"not a zip")
    assert info.value.status == 400


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1950-03-12", dt.date(1950, 3, 12)),
        ("1950/3/12", dt.date(1950, 3, 12)),
        ("19500312", dt.date(1950, 3, 12)),
        (None, None),
        (dt.datetime(1950, 3, 12), dt.date(1950, 3, 12)),
    ],
)
def test_parse_date_shapes(text, expected):
    assert read.parse_date(text) == expected


@pytest.mark.parametrize("text", ["1960-02-30", "19601301", "yesterday", "1950-03"])
def test_parse_date_rejects_impossible_or_malformed(text):
    with pytest.raises(ValueError):
        read.parse_date(text)
