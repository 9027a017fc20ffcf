"""CDA data types read from and written to XML: TS, PQ, CD, ST, BL, INT.

Knows the v3 namespace and the time-zone rule (a TS without an offset is in
the site's time zone, DOMAIN §10.1), nothing about FHIR resources.
"""

from __future__ import annotations

import datetime as dt
import re
from functools import lru_cache
from zoneinfo import ZoneInfo

from fhirhub_plugins.cda.parse import V3
from fhirhub_plugins.cda.parse import XSI

XSI_TYPE = f"{{{XSI}}}type"
_TS = re.compile(r"^(\d{4})(\d{2})?(\d{2})?(\d{2})?(\d{2})?(\d{2})?(?:\.\d+)?([+-]\d{4})?$")

# Placeholders county systems put where a value is missing (integration.md §C.9).
PLACEHOLDERS = {"", "-", "/", "--", "无数据", "null", "NULL"}
NULL_DATES = {"19000101", "00000000"}


def q(tag: str) -> str:
    return f"{{{V3}}}{tag}"


@lru_cache(maxsize=8)
def _zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def ts_to_fhir(value: str | None, tz: str = "Asia/Shanghai") -> str | None:
    """CDA TS -> FHIR date/dateTime; ``None`` for absent, placeholder or malformed values.

    ``yyyyMMdd`` stays a date; with a time it gets the document's offset or the
    site's time zone (FHIR requires an offset when a time is given).
    """
    if not value or value in NULL_DATES:
        return None
    m = _TS.match(value.strip())
    if not m:
        return None
    year, month, day, hour, minute, second, offset = m.groups()
    try:
        if hour is None:
            dt.date(int(year), int(month or 1), int(day or 1))
            return "-".join(p for p in (year, month, day) if p)
        moment = dt.datetime(
            int(year), int(month), int(day), int(hour), int(minute or 0), int(second or 0)
        )
    except ValueError:
        return None
    if offset:
        sign = 1 if offset[0] == "+" else -1
        tzinfo = dt.timezone(sign * dt.timedelta(hours=int(offset[1:3]), minutes=int(offset[3:5])))
    else:
        tzinfo = _zone(tz)
    return moment.replace(tzinfo=tzinfo).isoformat()


def fhir_to_ts(value: str | None) -> str | None:
    """FHIR date/dateTime -> CDA TS (``yyyyMMdd`` or ``yyyyMMddHHmmss+zzzz``)."""
    if not value:
        return None
    if len(value) <= 10:
        return value.replace("-", "")
    moment = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    text = moment.strftime("%Y%m%d%H%M%S")
    if moment.utcoffset() is not None:
        text += moment.strftime("%z")
    return text


def instant(value: str | None, tz: str = "Asia/Shanghai") -> str | None:
    """A FHIR instant (full time with offset) from a FHIR date or dateTime."""
    if not value:
        return None
    if len(value) == 10:
        return dt.datetime.fromisoformat(value).replace(tzinfo=_zone(tz)).isoformat()
    return value


def xsi_type(element) -> str | None:
    raw = element.get(XSI_TYPE)
    if raw is None:
        return None
    return raw.rsplit(":", 1)[-1].upper()


def number(text: str | None) -> int | float | None:
    """A PQ/INT value as a JSON number, keeping integers integral (``120`` not ``120.0``)."""
    if text is None:
        return None
    text = text.strip()
    try:
        if re.fullmatch(r"[+-]?\d+", text):
            return int(text)
        return float(text)
    except ValueError:
        return None


def format_number(value: int | float) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return repr(value) if isinstance(value, float) else str(value)


def clean_text(text: str | None) -> str | None:
    if text is None:
        return None
    text = text.strip()
    return None if text in PLACEHOLDERS else text
