"""Read a veterans registry export (DOMAIN 10.3) into rows of named fields.

Knows CSV and XLSX and the registry's Chinese headers; knows nothing of FHIR.
Row numbers are those a person sees in Excel: the header is row 1, the first
person is row 2.
"""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import functools
import io
import re
import zipfile
from pathlib import Path
from typing import Any

import yaml

from hub.plugin_api import MAPPINGS_DIR
from hub.plugin_api import error

COLUMNS_FILE = MAPPINGS_DIR / "va_registry" / "columns.yaml"
SHEET_NAME = "优抚对象"
UTF8_BOM = b"\xef\xbb\xbf"
XLSX_MAGIC = b"PK\x03\x04"


@dataclasses.dataclass(frozen=True)
class Column:
    field: str
    headers: tuple[str, ...]
    required: bool = False
    imported: bool = True


@dataclasses.dataclass
class Row:
    """One person's row: ``values`` by field name, ``headers`` the source header of each field."""

    number: int
    values: dict[str, Any]


@dataclasses.dataclass
class Table:
    rows: list[Row]
    headers: dict[str, str]  # field -> header as written in the file
    unknown_headers: list[str]
    encoding: str  # "utf-8-sig", "utf-8", "gb18030" or "xlsx"


def _header_key(text: str) -> str:
    # Exports differ in spaces and in half- or full-width brackets: "(元/月)" vs "（元/月）".
    return re.sub(r"\s+", "", str(text)).replace("（", "(").replace("）", ")").lower()


@functools.cache
def load_columns(path: Path = COLUMNS_FILE) -> tuple[Column, ...]:
    """The header table of ``mappings/va_registry/columns.yaml``."""
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    return tuple(
        Column(
            field,
            tuple(spec["headers"]),
            bool(spec.get("required", False)),
            bool(spec.get("import", True)),
        )
        for field, spec in data["columns"].items()
    )


@functools.cache
def _header_index(columns: tuple[Column, ...]) -> dict[str, str]:
    return {_header_key(h): c.field for c in columns for h in c.headers}


def is_registry_header(cells: list[Any], columns: tuple[Column, ...] | None = None) -> bool:
    """Whether a header row names every required registry column (used by detect_format)."""
    columns = columns or load_columns()
    index = _header_index(columns)
    found = {index.get(_header_key(c)) for c in cells if c is not None}
    return all(c.field in found for c in columns if c.required)


def decode_csv(body: bytes, encoding: str | None = None) -> tuple[str, str]:
    """Decode CSV bytes; returns ``(text, encoding)``.

    A UTF-8 BOM settles it. Without one, strict UTF-8 is tried first: GBK text
    almost never decodes as valid UTF-8 (its lead bytes 0x81-0xFE are followed
    by bytes UTF-8 forbids), while UTF-8 Chinese never decodes as GBK to the
    registry's headers. GB 18030 is used for GBK because it is a superset.
    ``encoding`` (the site setting) overrides detection.
    """
    if encoding:
        return body.decode(encoding), encoding
    if body.startswith(UTF8_BOM):
        return body[len(UTF8_BOM) :].decode("utf-8"), "utf-8-sig"
    try:
        return body.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        pass
    try:
        return body.decode("gb18030"), "gb18030"
    except UnicodeDecodeError as exc:
        raise error(
            400,
            "invalid",
            f"the file is neither UTF-8 nor GBK/GB 18030 text (byte {exc.start})",
            "file",
        ) from None


def sniff_csv_header(body: bytes) -> list[str] | None:
    """The first line of a CSV payload as cells, or ``None`` when it is not text."""
    head = body[:4096]
    try:
        text, _ = decode_csv(head)
    except Exception:  # noqa: BLE001 - a truncated multi-byte character at 4096; not ours to judge
        try:
            text = head.decode("gb18030", errors="ignore")
        except LookupError:
            return None
    first = text.splitlines()[0] if text else ""
    return next(csv.reader([first]), None)


def read_csv(body: bytes, encoding: str | None = None) -> Table:
    text, used = decode_csv(body, encoding)
    reader = csv.reader(io.StringIO(text, newline=""))
    return _table(reader, used)


def read_xlsx(body: bytes) -> Table:
    """Read the sheet ``优抚对象`` (or the first sheet) with openpyxl in read-only mode."""
    import openpyxl  # imported here: only XLSX uploads pay for it

    try:
        book = openpyxl.load_workbook(io.BytesIO(body), read_only=True, data_only=True)
    except (zipfile.BadZipFile, KeyError, ValueError, OSError) as exc:
        raise error(400, "invalid", f"the XLSX file cannot be read: {exc}", "file") from None
    try:
        sheet = book[SHEET_NAME] if SHEET_NAME in book.sheetnames else book.worksheets[0]
        return _table(sheet.iter_rows(values_only=True), "xlsx")
    finally:
        book.close()


def sniff_xlsx_header(body: bytes) -> list[Any] | None:
    """The first row of the registry sheet (or the first sheet), or ``None`` when unreadable."""
    import openpyxl

    try:
        book = openpyxl.load_workbook(io.BytesIO(body), read_only=True, data_only=True)
    except (zipfile.BadZipFile, KeyError, ValueError, OSError):
        return None
    try:
        sheet = book[SHEET_NAME] if SHEET_NAME in book.sheetnames else book.worksheets[0]
        return list(next(sheet.iter_rows(max_row=1, values_only=True), ()))
    finally:
        book.close()


def read_table(body: bytes, encoding: str | None = None) -> Table:
    """Read CSV or XLSX bytes (XLSX recognised by its ZIP signature)."""
    if body.startswith(XLSX_MAGIC):
        return read_xlsx(body)
    return read_csv(body, encoding)


def _table(rows, encoding: str) -> Table:
    columns = load_columns()
    index = _header_index(columns)
    iterator = iter(rows)
    header = next(iterator, None)
    if header is None:
        raise error(400, "required", "the file is empty: no header row", "row 1")
    positions: list[tuple[int, str]] = []
    headers: dict[str, str] = {}
    unknown: list[str] = []
    for i, cell in enumerate(header):
        if cell is None or str(cell).strip() == "":
            continue
        field = index.get(_header_key(cell))
        if field is None:
            unknown.append(str(cell).strip())
        elif field not in headers:
            headers[field] = str(cell).strip()
            positions.append((i, field))
    missing = [c.headers[0] for c in columns if c.required and c.field not in headers]
    if missing:
        raise error(
            422,
            "required",
            f"the header row lacks the column(s) {', '.join(missing)}",
            "row 1",
        )
    out: list[Row] = []
    for number, cells in enumerate(iterator, start=2):
        values: dict[str, Any] = {}
        for i, field in positions:
            value = cells[i] if i < len(cells) else None
            if isinstance(value, str):
                value = value.strip() or None
            values[field] = value
        if any(v is not None for v in values.values()):
            out.append(Row(number, values))
    return Table(out, headers, unknown, encoding)


# ---------------------------------------------------------------------------
# Cell values
# ---------------------------------------------------------------------------

_DATE = re.compile(r"^(\d{4})[-/.年]?(\d{1,2})[-/.月]?(\d{1,2})日?$")
_MONTH = re.compile(r"^(\d{4})[-/.年](\d{1,2})月?$")


def parse_date(value: Any) -> dt.date | None:
    """``YYYY-MM-DD``, ``YYYY/MM/DD``, ``YYYYMMDD`` or a date cell; ``None`` when empty.

    :raises ValueError: the text is not a date or names an impossible one (02-30).
    """
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    text = str(value).strip()
    match = _DATE.match(text)
    if not match or (len(text) == 8 and not text.isdigit()):
        raise ValueError(f"{text!r} is not a date (YYYY-MM-DD, YYYY/MM/DD or YYYYMMDD)")
    year, month, day = (int(g) for g in match.groups())
    try:
        return dt.date(year, month, day)
    except ValueError:
        raise ValueError(f"{text!r} is an impossible date") from None


def cell_text(value: Any) -> str | None:
    """A cell as text: numbers typed as numbers by Excel lose their ``.0``."""
    if value is None:
        return None
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip() or None
