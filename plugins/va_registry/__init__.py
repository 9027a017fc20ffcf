"""Veterans registry adapter (优抚对象名册, DOMAIN 10.3): hookimpls only.

CSV (UTF-8 with or without BOM, GBK/GB 18030) or XLSX with the registry's
Chinese headers -> one transaction Bundle of Patient, veteran-status
Observation and programme EpisodeOfCare per good row. See README.md.
"""

from __future__ import annotations

from hub.plugin_api import hookimpl

from . import read
from .inbound import map_registry_file

FORMAT = "va-registry"
_CSV_TYPES = ("text/csv", "application/csv", "text/plain", "application/vnd.ms-excel")
_XLSX_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


@hookimpl
def detect_format(body, content_type):
    """``va-registry`` when the header row names the registry's required columns."""
    kind = (content_type or "").split(";")[0].strip().lower()
    if body.startswith(read.XLSX_MAGIC) and kind in ("", _XLSX_TYPE, "application/octet-stream"):
        cells = read.sniff_xlsx_header(body)
        return FORMAT if cells and read.is_registry_header(cells) else None
    if kind and kind not in _CSV_TYPES:
        return None
    cells = read.sniff_csv_header(body)
    return FORMAT if cells and read.is_registry_header(cells) else None


@hookimpl
def map_inbound(message, context):
    if message.format != FORMAT:
        return None
    return map_registry_file(message, context)


@hookimpl
def map_outbound(resource, event, site, context):
    """The bureau gets a periodic report (``report.build_veterans_report``), not per-change messages."""
    if getattr(site, "adapter", None) != "va_registry":
        return None
    return []


@hookimpl
def register_cli_commands() -> list:
    """``hub export veterans-report`` (:mod:`.export`)."""
    from .export import COMMANDS

    return COMMANDS


@hookimpl
def register_adapters() -> list:
    """The ``va_registry`` adapter: ``va-registry`` CSV/XLSX files."""
    from .scaffold import ADAPTER

    return [ADAPTER]
