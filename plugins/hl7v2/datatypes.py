"""HL7 v2 data types -> FHIR data types (V2-to-FHIR IG data-type maps).

TS/DTM -> dateTime (``DTM[dateTime]``), DT -> date, CX -> Identifier,
XPN -> HumanName, XAD -> Address, XTN -> ContactPoint, CWE/CE -> CodeableConcept,
XCN -> a practitioner key and name. Functions take a :class:`Composite`
(one repetition) and return a JSON-ready dict, or ``None`` when empty.
"""

from __future__ import annotations

import re
import zoneinfo
from functools import lru_cache
from typing import Any

from fhirhub_plugins.hl7v2.parse import Composite
from fhirhub_plugins.hl7v2.parse import reject
from hub.plugin_api import split_chinese_name

# CWE-3 / CE-3 name of coding system -> FHIR system (HL7 table 0396 and local usage).
CODING_SYSTEMS = {
    "LN": "http://loinc.org",
    "LOINC": "http://loinc.org",
    "SNM": "http://snomed.info/sct",
    "SCT": "http://snomed.info/sct",
    "I9": "http://hl7.org/fhir/sid/icd-9-cm",
    "I9C": "http://hl7.org/fhir/sid/icd-9-cm",
    "I10": "http://hl7.org/fhir/sid/icd-10",
    "ICD10": "http://hl7.org/fhir/sid/icd-10",
    "ICD-10": "http://hl7.org/fhir/sid/icd-10",
    "I10C": "http://hl7.org/fhir/sid/icd-10-cm",
    "UCUM": "http://unitsofmeasure.org",
    "RXNORM": "http://www.nlm.nih.gov/research/umls/rxnorm",
    "CVX": "http://hl7.org/fhir/sid/cvx",
    # National clinical edition of ICD-10 (国家临床版 2.0)
    "ICD10CN": "urn:oid:2.16.156.10011.2.3.3.11",
    "ICD-10-CN": "urn:oid:2.16.156.10011.2.3.3.11",
    "GB/T14396": "urn:oid:2.16.156.10011.2.3.3.11",
}


def coding_system(name: str | None, names: dict[str, str] | None = None) -> str | None:
    """The FHIR system URI for a CWE-3 value: the site's ``names``, known names, HL7
    tables, OIDs and URIs; ``None`` for local (``L``, ``99zzz``) and unknown names."""
    if not name:
        return None
    key = name.strip()
    upper = key.upper()
    for candidate in (key, upper):
        if names and candidate in names:
            return names[candidate]
    if upper in CODING_SYSTEMS:
        return CODING_SYSTEMS[upper]
    if re.fullmatch(r"HL7\d{4}", upper):
        return f"http://terminology.hl7.org/CodeSystem/v2-{upper[3:]}"
    if re.fullmatch(r"[0-2](\.\d+)+", key):
        return f"urn:oid:{key}"
    if ":" in key:
        return key
    return None


# ---------------------------------------------------------------------------
# Time
# ---------------------------------------------------------------------------

_TS = re.compile(
    r"^(\d{4})(\d{2})?(\d{2})?(?:(\d{2})(\d{2})?(\d{2})?(?:\.(\d{1,4}))?)?([+-]\d{4})?$"
)


@lru_cache(maxsize=32)
def _zone(name: str) -> zoneinfo.ZoneInfo:
    return zoneinfo.ZoneInfo(name)


def ts_to_datetime(value: str | None, tz: str, location: str) -> str | None:
    """HL7 TS/DTM -> FHIR dateTime, taking the site time zone when no offset is given.

    Precision is kept (``2024`` stays a year); a time always carries an offset,
    as FHIR requires.
    """
    if not value:
        return None
    m = _TS.match(value.strip())
    if not m:
        raise reject(
            f"{value!r} is not an HL7 date/time (YYYYMMDD[HHMM[SS[.S]]][+/-ZZZZ])",
            location,
            code="value",
        )
    year, month, day, hour, minute, second, frac, offset = m.groups()
    _check_date(year, month, day, value, location)
    if hour is None:
        return "-".join(p for p in (year, month, day) if p)
    if int(hour) > 23 or int(minute or 0) > 59 or int(second or 0) > 59:
        raise reject(f"{value!r} has an impossible time of day", location, code="value")
    clock = f"{hour}:{minute or '00'}:{second or '00'}" + (f".{frac}" if frac else "")
    if offset is None:
        import datetime as dt

        local = dt.datetime(
            int(year), int(month), int(day), int(hour), int(minute or 0), tzinfo=_zone(tz)
        )
        delta = local.utcoffset()
        total = int(delta.total_seconds() // 60) if delta is not None else 0
        sign = "+" if total >= 0 else "-"
        offset_text = f"{sign}{abs(total) // 60:02d}:{abs(total) % 60:02d}"
    else:
        offset_text = f"{offset[:3]}:{offset[3:]}"
    return f"{year}-{month}-{day}T{clock}{offset_text}"


def dt_to_date(value: str | None, location: str) -> str | None:
    """HL7 DT (or the date part of a TS) -> FHIR date."""
    if not value:
        return None
    m = _TS.match(value.strip())
    if not m:
        raise reject(f"{value!r} is not an HL7 date (YYYY[MM[DD]])", location, code="value")
    year, month, day = m.group(1), m.group(2), m.group(3)
    _check_date(year, month, day, value, location)
    return "-".join(p for p in (year, month, day) if p)


def _check_date(year: str, month: str | None, day: str | None, value: str, location: str) -> None:
    import datetime as dt

    try:
        dt.date(int(year), int(month or 1), int(day or 1))
    except ValueError:
        raise reject(f"{value!r} is not a valid calendar date", location, code="value") from None


# ---------------------------------------------------------------------------
# Names, addresses, telecom
# ---------------------------------------------------------------------------

_NAME_USE = {
    "L": "official",
    "D": "usual",
    "M": "maiden",
    "A": "nickname",
    "N": "nickname",
    "C": "old",
}
_CJK = re.compile(r"[\u3400-\u9fff\U00020000-\U0002ffff]")


def _whole_name(name: dict[str, Any], whole: str) -> tuple[str | None, str | None]:
    """A whole name sent in one component: kept in ``text`` and, when Chinese, split
    into family and given by the hub's rules (``hub.identity.names``: compound
    surnames such as 欧阳; names with a middle dot are not split)."""
    name["text"] = whole
    if _CJK.search(whole):
        return split_chinese_name(whole)
    return whole, None


def xpn_to_name(rep: Composite, style: str) -> dict[str, Any] | None:
    """XPN -> HumanName. ``style``: ``split`` (XPN.1 family, XPN.2 given),
    ``single`` (the whole name in XPN.1) or ``auto`` (single when XPN.2 is empty
    and XPN.1 is Chinese)."""
    return _human_name(
        rep.get(1),  # XPN.1.1 family name
        rep.get(2),  # XPN.2 given name
        rep.get(3),  # XPN.3 further given names
        rep.get(4),  # XPN.4 suffix
        rep.get(5),  # XPN.5 prefix
        _NAME_USE.get(rep.get(7) or ""),  # XPN.7 name type code
        style,
    )


def xcn_to_name(rep: Composite, style: str) -> dict[str, Any] | None:
    """XCN -> HumanName, read the way :func:`xpn_to_name` reads patients' names.

    XCN.2 family, XCN.3 given. A Chinese XCN.2 with XCN.3 empty is a whole name
    (``D007^欧阳建国``) and is split whatever the site's ``name_style`` (``single``
    sites: every XCN.2 sent alone).
    """
    return _human_name(
        rep.get(2),  # XCN.2 family name
        rep.get(3),  # XCN.3 given name
        rep.get(4),  # XCN.4 further given names
        rep.get(5),  # XCN.5 suffix
        rep.get(6),  # XCN.6 prefix
        None,
        "single" if style == "single" else "auto",
    )


def _human_name(family, given, middle, suffix, prefix, use, style: str) -> dict[str, Any] | None:
    if not family and not given:
        return None
    name: dict[str, Any] = {}
    if use:
        name["use"] = use
    whole = style == "single" or (style == "auto" and not given and family and _CJK.search(family))
    if whole and family and not given:
        family, given = _whole_name(name, family)
    elif family and _CJK.search(family):
        name["text"] = family + (given or "")
    if family:
        name["family"] = family
    givens = [g for g in (given, middle) if g]
    if givens:
        name["given"] = givens
    if prefix:
        name["prefix"] = [prefix]
    if suffix:
        name["suffix"] = [suffix]
    return name


_ADDR_USE = {
    "H": "home",
    "O": "work",
    "B": "work",
    "C": "temp",
    "M": "home",
    "BA": "billing",
    "L": "home",
}


def xad_to_address(rep: Composite) -> dict[str, Any] | None:
    """XAD -> Address. XAD.9 county code: Chinese feeds put the 6-digit division code there."""
    line = [v for v in (rep.get(1), rep.get(2)) if v]  # XAD.1 street, XAD.2 other designation
    out: dict[str, Any] = {}
    if rep.get(7) and rep.get(7) in _ADDR_USE:  # XAD.7 address type
        out["use"] = _ADDR_USE[rep.get(7)]
    if line:
        out["line"] = line
    for key, comp in (
        ("city", 3),
        ("state", 4),
        ("postalCode", 5),
        ("country", 6),
        ("district", 9),
    ):
        value = rep.get(
            comp
        )  # XAD.3 city, .4 state/province, .5 postal code, .6 country, .9 county
        if value:
            out[key] = value
    return out or None


def xtn_to_telecom(rep: Composite) -> dict[str, Any] | None:
    """XTN -> ContactPoint (XTN.1 legacy number, XTN.4 e-mail, XTN.12 unformatted number)."""
    equipment = rep.get(3)  # XTN.3 telecommunication equipment type
    email = rep.get(4)
    number = rep.get(1) or rep.get(12) or rep.get(7)
    if email or equipment == "Internet":
        return {"system": "email", "value": email or number}
    if not number:
        return None
    system = "fax" if equipment == "FX" else "phone"
    use = {"PRN": "home", "WPN": "work", "ORN": "home", "NET": "home"}.get(rep.get(2) or "")
    out = {"system": system, "value": number}
    if equipment == "CP":
        out["use"] = "mobile"
    elif use:
        out["use"] = use
    return out


# ---------------------------------------------------------------------------
# Codes
# ---------------------------------------------------------------------------


def cwe_codings(
    rep: Composite, local_system: str | None = None, names: dict[str, str] | None = None
) -> list[dict[str, Any]]:
    """The codings of a CWE/CE: the primary triplet (1-3) and the alternate (4-6).

    A coding whose coding system (CWE-3/-6) is empty, local (``L``, ``99zzz``,
    HL7 table 0396) or not a name :func:`coding_system` knows gets ``local_system``
    (the site's code system), so no stored coding is without a system.
    """
    codings = []
    for code_c, text_c, sys_c in ((1, 2, 3), (4, 5, 6)):
        code = rep.get(code_c)
        if not code:
            continue
        system = coding_system(rep.get(sys_c), names) or local_system
        coding: dict[str, Any] = {}
        if system:
            coding["system"] = system
        coding["code"] = code
        if rep.get(text_c):
            coding["display"] = rep.get(text_c)
        codings.append(coding)
    return codings


def cwe_to_concept(
    rep: Composite | None, local_system: str | None = None, names: dict[str, str] | None = None
) -> dict[str, Any] | None:
    """CWE/CE -> CodeableConcept (text from CWE.9 original text, else CWE.2)."""
    if rep is None:
        return None
    codings = cwe_codings(rep, local_system, names)
    text = rep.get(9) or rep.get(2)
    if not codings and not text:
        return None
    out: dict[str, Any] = {}
    if codings:
        out["coding"] = codings
    if text:
        out["text"] = text
    return out


def xcn_display(rep: Composite, style: str = "auto") -> str | None:
    """XCN -> a display name: family (XCN.2) and given (XCN.3)."""
    family, given = rep.get(2), rep.get(3)
    if family and _CJK.search(family):
        return family + (given or "")
    parts = [p for p in (given, family) if p]
    return " ".join(parts) or rep.get(1)
