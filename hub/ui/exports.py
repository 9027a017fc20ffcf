"""List exports: CSV (UTF-8 with BOM, so spreadsheet programs detect the encoding) and XLSX."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable

from flask import Response
from openpyxl import Workbook

MIME = {
    "csv": "text/csv; charset=utf-8",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
}


def to_csv(header: list[str], rows: Iterable[list]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(header)
    for row in rows:
        writer.writerow(["" if v is None else v for v in row])
    return ("\ufeff" + out.getvalue()).encode("utf-8")


def to_xlsx(header: list[str], rows: Iterable[list], title: str = "export") -> bytes:
    book = Workbook(write_only=True)
    sheet = book.create_sheet(title[:31])
    sheet.append(header)
    for row in rows:
        sheet.append(list(row))
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def response(fmt: str, name: str, header: list[str], rows: Iterable[list]) -> Response:
    body = to_csv(header, rows) if fmt == "csv" else to_xlsx(header, rows, name)
    return Response(
        body,
        content_type=MIME[fmt],
        headers={"Content-Disposition": f'attachment; filename="{name}.{fmt}"'},
    )
