"""Synthetic registry rows (no real people) and writers for the three file shapes.

``python -m tests.va_registry.samples`` rewrites the conformance inputs of
``conformance/sites/veterans-registry``; the XLSX input is generated here too.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import random
from pathlib import Path

from hub.identity.resident_id import check_character

HEADERS = [
    "姓名", "性别", "身份证号", "出生日期", "优抚类别", "伤残等级", "伤残性质", "户籍地址",
    "联系电话", "所属区市", "入伍时间", "退役时间", "抚恤定补标准(元/月)", "状态",
]  # fmt: skip

GRADES = ["一级", "二级", "三级", "四级", "五级", "六级", "七级", "八级", "九级", "十级"]
SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗"
GIVEN = "伟芳娜敏静丽强磊军洋勇艳杰涛明超秀兰霞平刚桂英华建国志红"
CATEGORIES = ["退役士兵", "残疾军人", "烈士遗属", "复员军人", "带病回乡退伍军人", "军人家属"]


def resident_id(division: str, birth: dt.date, seq: int, male: bool) -> str:
    """A checksum-valid synthetic number (sequence parity follows the sex)."""
    seq = seq * 2 + (1 if male else 0)
    body = f"{division}{birth:%Y%m%d}{seq % 1000:03d}"
    return body + check_character(body)


# Fixed people for the conformance cases (divisions of Qingdao districts; people invented).
PEOPLE = [
    ["王建国", "男", resident_id("370202", dt.date(1950, 3, 12), 41, True), "1950-03-12",
     "残疾军人", "六级", "因战", "山东省青岛市市南区香港中路1号", "13800000001", "市南区",
     "1968-03", "1975-12", "2150", "正常"],
    ["李秀兰", "女", resident_id("370203", dt.date(1948, 11, 2), 7, False), "1948/11/02",
     "烈士遗属", "", "", "山东省青岛市市北区辽宁路2号", "0532-80000002", "市北区",
     "", "", "2680", "正常"],
    ["欧阳明", "男", resident_id("370211", dt.date(1962, 8, 30), 12, True), "19620830",
     "退役士兵", "", "", "山东省青岛市黄岛区长江路3号", "13800000003", "黄岛区",
     "1980-11", "1985-10", "", "暂停"],
    ["张伟", "男", resident_id("370212", dt.date(1958, 1, 15), 3, True).lower(), "1958-01-15",
     "带病回乡退伍军人", "", "", "山东省青岛市崂山区海尔路4号", "13800000004", "崂山区",
     "1976-02", "1980-01", "860", "正常"],
]  # fmt: skip

BAD_PEOPLE = [
    # bad checksum
    ["赵刚", "男", "370202195001010011", "1950-01-01", "退役士兵", "", "", "", "", "市南区",
     "", "", "", "正常"],
    # impossible birth date (02-30)
    ["孙丽", "女", resident_id("370203", dt.date(1960, 2, 1), 5, False), "1960-02-30",
     "军人家属", "", "", "", "", "市北区", "", "", "", "正常"],
    # empty name
    ["", "男", resident_id("370211", dt.date(1955, 5, 5), 9, True), "1955-05-05",
     "退役士兵", "", "", "", "", "黄岛区", "", "", "", "正常"],
    # unknown category
    ["周杰", "男", resident_id("370212", dt.date(1970, 7, 7), 21, True), "1970-07-07",
     "志愿者", "", "", "", "", "崂山区", "", "", "", "正常"],
    # grade outside 一级…十级
    ["吴勇", "男", resident_id("370213", dt.date(1966, 6, 6), 2, True), "1966-06-06",
     "残疾军人", "十一级", "因公", "", "", "李沧区", "", "", "1200", "正常"],
]  # fmt: skip


def legacy_15(number18: str) -> str:
    """The pre-1999 15-digit form of an 18-character number born in the 1900s."""
    return number18[:6] + number18[8:17]


def generated_rows(count: int, seed: int = 7) -> list[list[str]]:
    rng = random.Random(seed)
    rows = []
    for i in range(count):
        male = rng.random() < 0.8
        birth = dt.date(1930, 1, 1) + dt.timedelta(days=rng.randrange(0, 365 * 70))
        category = rng.choice(CATEGORIES)
        disabled = category == "残疾军人"
        rows.append(
            [
                rng.choice(SURNAMES) + rng.choice(GIVEN) + (rng.choice(GIVEN) if i % 2 else ""),
                "男" if male else "女",
                resident_id("3702" + f"{rng.randrange(2, 15):02d}", birth, i, male),
                birth.isoformat(),
                category,
                rng.choice(GRADES) if disabled else "",
                rng.choice(["因战", "因公", "因病"]) if disabled else "",
                f"山东省青岛市某区某路{i}号",
                f"138{i:08d}",
                "市南区",
                "1970-01",
                "1975-01",
                str(rng.randrange(500, 4000)),
                "正常",
            ]
        )
    return rows


def csv_bytes(rows: list[list[str]], encoding: str = "utf-8-sig") -> bytes:
    out = io.StringIO(newline="")
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(HEADERS)
    writer.writerows(rows)
    return out.getvalue().encode(encoding)


def xlsx_bytes(rows: list[list[str]]) -> bytes:
    """An XLSX as the bureau exports it: sheet 优抚对象, dates as date cells, IDs as text."""
    import openpyxl

    book = openpyxl.Workbook()
    sheet = book.active
    sheet.title = "优抚对象"
    sheet.append(HEADERS)
    for row in rows:
        cells: list = list(row)
        if cells[3]:
            text = cells[3].replace("/", "-")
            if len(text) == 8:
                text = f"{text[:4]}-{text[4:6]}-{text[6:]}"
            try:
                cells[3] = dt.datetime.fromisoformat(text)
            except ValueError:
                pass  # an impossible date stays text, as a careless export would leave it
        cells[12] = int(cells[12]) if cells[12] else None
        sheet.append(cells)
    for cell in sheet["C"]:
        cell.number_format = "@"
    buffer = io.BytesIO()
    book.save(buffer)
    return buffer.getvalue()


def write_conformance_inputs(root: Path) -> None:
    cases = root / "cases"
    good = [list(p) for p in PEOPLE]
    good_15 = [list(p) for p in PEOPLE]
    good_15[0][2] = legacy_15(good_15[0][2])
    files = {
        "csv-utf8-bom/input.csv": csv_bytes(good, "utf-8-sig"),
        "csv-gbk/input.csv": csv_bytes(good_15, "gbk"),
        "xlsx/input.xlsx": xlsx_bytes(good),
        "bad-rows/input.csv": csv_bytes(good[:2] + BAD_PEOPLE, "utf-8-sig"),
    }
    for name, data in files.items():
        path = cases / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


if __name__ == "__main__":
    write_conformance_inputs(
        Path(__file__).resolve().parents[2] / "conformance" / "sites" / "veterans-registry"
    )
