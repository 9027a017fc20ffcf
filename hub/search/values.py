"""Value normalisation shared by the indexer and the query side.

* strings fold case and accents (``normalise``) so ``name=muller`` finds "Müller";
  CJK text is kept as is (no case, no accents);
* dates become ``[low, high)`` ranges in naive UTC, from their precision
  (``2020`` is the whole year), with a default time zone for values that carry
  none;
* decimals carry their implicit precision (``100`` means ``[99.5, 100.5)``);
* common UCUM units convert to one canonical unit per dimension.
"""

from __future__ import annotations

import datetime as dt
import re
import unicodedata
from decimal import Decimal
from decimal import InvalidOperation
from zoneinfo import ZoneInfo

MIN_DT = dt.datetime(1, 1, 1)
MAX_DT = dt.datetime(9999, 12, 31, 23, 59, 59)
UTC = dt.UTC


# ASCII and the CJK Unified Ideographs: no decompositions, no combining marks.
_ASCII_HAN = re.compile(r"[\x00-\x7f\u4e00-\u9fff]*")


def normalise(text: str) -> str:
    """Case- and accent-insensitive form of ``text`` (max 512 characters)."""
    if text.isascii():  # NFKD and casefold leave ASCII as lower() does
        return text.lower()[:512]
    if _ASCII_HAN.fullmatch(text):  # most Chinese text: only case to fold
        return text.casefold()[:512]
    decomposed = unicodedata.normalize("NFKD", text)
    stripped = "".join(c for c in decomposed if not unicodedata.combining(c))
    return stripped.casefold()[:512]


def has_cjk(text: str) -> bool:
    """Whether ``text`` holds Han characters (incl. the supplementary planes' rare ones)."""
    return any(
        "\u2e80" <= c <= "\u9fff" or "\uf900" <= c <= "\ufaff" or "\U00020000" <= c <= "\U0003134f"
        for c in text
    )


# ---------------------------------------------------------------------------
# Dates
# ---------------------------------------------------------------------------

_DATE = re.compile(
    r"^(?P<y>\d{4})(?:-(?P<m>\d{2})(?:-(?P<d>\d{2})"
    r"(?:T(?P<H>\d{2})(?::(?P<M>\d{2})(?::(?P<S>\d{2})(?:\.(?P<f>\d+))?)?)?"
    r"(?P<tz>Z|[+-]\d{2}:?\d{2})?)?)?)?$"
)


_DAY = dt.timedelta(days=1)
_HOUR = dt.timedelta(hours=1)
_MINUTE = dt.timedelta(minutes=1)
_SECOND = dt.timedelta(seconds=1)


def _tz(tzs: str | None, default: dt.tzinfo) -> dt.tzinfo:
    if not tzs:
        return default
    if tzs == "Z":
        return UTC
    sign = -1 if tzs[0] == "-" else 1
    digits = tzs[1:].replace(":", "")
    return dt.timezone(dt.timedelta(minutes=sign * (60 * int(digits[:2]) + int(digits[2:]))))


def _add_months(d: dt.datetime, months: int) -> dt.datetime:
    y, m = divmod(d.month - 1 + months, 12)
    if d.year + y > 9999:
        return MAX_DT.replace(tzinfo=d.tzinfo)
    return d.replace(year=d.year + y, month=m + 1)


def date_range(text: str, default_tz: dt.tzinfo = UTC) -> tuple[dt.datetime, dt.datetime] | None:
    """``[low, high)`` in naive UTC for a FHIR date/dateTime/instant, or None if malformed."""
    m = _DATE.match(text.strip()) if isinstance(text, str) else None
    if not m:
        return None
    y, mo, d, hh, mm, ss, frac, tzs = m.groups()
    tz = _tz(tzs, default_tz)
    try:
        if mo is None:
            low = dt.datetime(int(y), 1, 1, tzinfo=tz)
            high = _add_months(low, 12)
        elif d is None:
            low = dt.datetime(int(y), int(mo), 1, tzinfo=tz)
            high = _add_months(low, 1)
        elif hh is None:
            low = dt.datetime(int(y), int(mo), int(d), tzinfo=tz)
            high = low + _DAY
        else:
            micro = int((frac + "000000")[:6]) if frac else 0
            low = dt.datetime(
                int(y),
                int(mo),
                int(d),
                int(hh),
                int(mm or 0),
                int(ss or 0),
                micro,
                tzinfo=tz,
            )
            if mm is None:
                step = _HOUR
            elif ss is None:
                step = _MINUTE
            elif not frac:
                step = _SECOND
            else:
                step = dt.timedelta(microseconds=max(1, 10 ** (6 - min(len(frac), 6))))
            high = low + step
    except (ValueError, OverflowError):
        return None
    return _naive_utc(low), _naive_utc(high)


def _naive_utc(d: dt.datetime) -> dt.datetime:
    try:
        return d.astimezone(UTC).replace(tzinfo=None)
    except OverflowError:
        return MIN_DT if d.year < 5000 else MAX_DT


def zone(name: str | None) -> dt.tzinfo:
    return ZoneInfo(name) if name and name != "UTC" else UTC


# ---------------------------------------------------------------------------
# Numbers
# ---------------------------------------------------------------------------


def decimal_range(text: str) -> tuple[float, float, float] | None:
    """``(value, low, high)`` for a decimal string with its implicit precision."""
    try:
        d = Decimal(text.strip())
    except (InvalidOperation, AttributeError):
        return None
    if not d.is_finite():
        return None
    exp = d.as_tuple().exponent
    half = Decimal(5).scaleb(exp - 1)
    return float(d), float(d - half), float(d + half)


def number_range(value) -> tuple[float, float, float] | None:
    """Index-side: a JSON number (or decimal text) with its precision range."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return float(value), value - 0.5, value + 0.5
    if isinstance(value, float):
        return decimal_range(repr(value))
    if isinstance(value, str):
        return decimal_range(value)
    return None


# ---------------------------------------------------------------------------
# UCUM: the common units, converted to one canonical unit per dimension
# ---------------------------------------------------------------------------

UCUM = "http://unitsofmeasure.org"

# code -> (canonical code, factor); temperatures are handled apart (offsets).
_UCUM_FACTORS: dict[str, tuple[str, float]] = {
    # mass -> g
    "kg": ("g", 1e3),
    "g": ("g", 1.0),
    "mg": ("g", 1e-3),
    "ug": ("g", 1e-6),
    "ng": ("g", 1e-9),
    "[lb_av]": ("g", 453.59237),
    "[oz_av]": ("g", 28.349523125),
    # length -> m
    "km": ("m", 1e3),
    "m": ("m", 1.0),
    "cm": ("m", 1e-2),
    "mm": ("m", 1e-3),
    "um": ("m", 1e-6),
    "[in_i]": ("m", 0.0254),
    "[ft_i]": ("m", 0.3048),
    # volume -> L
    "L": ("L", 1.0),
    "dL": ("L", 1e-1),
    "cL": ("L", 1e-2),
    "mL": ("L", 1e-3),
    "uL": ("L", 1e-6),
    # time -> s
    "s": ("s", 1.0),
    "min": ("s", 60.0),
    "h": ("s", 3600.0),
    "d": ("s", 86400.0),
    "wk": ("s", 604800.0),
    "mo": ("s", 2629800.0),
    "a": ("s", 31557600.0),
    # pressure -> mm[Hg]
    "mm[Hg]": ("mm[Hg]", 1.0),
    "kPa": ("mm[Hg]", 7.50061683),
    "Pa": ("mm[Hg]", 0.00750061683),
    # mass concentration -> g/L
    "g/L": ("g/L", 1.0),
    "g/dL": ("g/L", 10.0),
    "mg/dL": ("g/L", 1e-2),
    "mg/L": ("g/L", 1e-3),
    "ug/L": ("g/L", 1e-6),
    "ug/dL": ("g/L", 1e-5),
    "ng/mL": ("g/L", 1e-6),
    # substance concentration -> mol/L
    "mol/L": ("mol/L", 1.0),
    "mmol/L": ("mol/L", 1e-3),
    "umol/L": ("mol/L", 1e-6),
    "nmol/L": ("mol/L", 1e-9),
    # ratios
    "%": ("1", 1e-2),
    "1": ("1", 1.0),
    # rates
    "/min": ("/s", 1 / 60),
    "{beats}/min": ("/s", 1 / 60),
    "/s": ("/s", 1.0),
}


def canonical_quantity(value: float, code: str | None) -> tuple[float | None, str | None]:
    """``(value, code)`` in the canonical UCUM unit, or ``(None, None)`` if unknown."""
    if code is None:
        return None, None
    if code == "Cel":
        return value + 273.15, "K"
    if code == "[degF]":
        return (value - 32) * 5 / 9 + 273.15, "K"
    if code == "K":
        return value, "K"
    hit = _UCUM_FACTORS.get(code)
    if hit is None:
        return None, None
    return value * hit[1], hit[0]


def canonical_factor(code: str) -> tuple[str, float, float] | None:
    """``(canonical code, factor, offset)`` for converting a search value."""
    if code == "Cel":
        return "K", 1.0, 273.15
    if code == "[degF]":
        return "K", 5 / 9, 273.15 - 32 * 5 / 9
    if code == "K":
        return "K", 1.0, 0.0
    hit = _UCUM_FACTORS.get(code)
    return (hit[0], hit[1], 0.0) if hit else None
