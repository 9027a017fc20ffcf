"""The report back to the veterans bureau (DOMAIN 10.3, programme 荣军康养).

For the registered beneficiaries (a ``veteran-entitlement`` Observation whose
benefit status is not ``ended``): hospital admissions (``Encounter`` class
``IMP``), remote and home rounds and expert consultations (an ``Encounter``
typed with an encounter-type round code, profile ``veteran-round``) and
five-colour changes (a colour added or lifted; red is the major-disease flag)
within a period. Every row of a person also carries that person's counts of
rounds and of consultations in the period, the figure the programme reports. Only the columns the bureau needs; the
resident ID number is masked (``370283********123X``) unless the caller is
entitled to see it (``unmask=True``, decided and audited by the caller).

Pure :func:`build_veterans_report` plus two writers: CSV in UTF-8 with BOM and
CRLF (Excel opens it without asking) and XLSX.
"""

from __future__ import annotations

import csv
import datetime as dt
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from hub.plugin_api import RESIDENT_ID_SYSTEM
from hub.plugin_api import codesystems as cs
from hub.plugin_api import resident_id

COLUMNS = (
    "姓名",
    "身份证号",
    "优抚类别",
    "所属区市",
    "事件",
    "日期",
    "医疗机构",
    "诊断",
    "五色分类",
    "重大疾病",
    "巡诊次数",
    "会诊次数",
)
SHEET_TITLE = "优抚对象健康报告"
COLOUR_NAMES = {"red": "红", "yellow": "黄", "blue": "蓝", "orange": "橙", "green": "绿"}
EVENT_ADMISSION = "住院"
EVENT_COLOUR_ADDED = "五色分类新增"
EVENT_COLOUR_LIFTED = "五色分类解除"
# The kinds of round (Encounter.type, encounter-type) and the event each is reported as.
ROUND_EVENTS = {
    cs.REMOTE_ROUND: "远程巡诊",
    cs.HOME_ROUND: "入户巡诊",
    cs.EXPERT_CONSULTATION: "专家会诊",
}
# A round that did not (yet) take place is not reported.
_NOT_HELD = {"planned", "cancelled", "entered-in-error"}


def build_veterans_report(
    resources: Iterable[dict[str, Any]],
    since: dt.date,
    until: dt.date,
    unmask: bool = False,
) -> list[dict[str, str]]:
    """Report rows (dicts keyed by :data:`COLUMNS`) for events with since <= date <= until."""
    patients: dict[str, dict] = {}
    status: dict[str, dict] = {}
    encounters: list[dict] = []
    rounds: list[tuple[str, dict]] = []
    flags: list[dict] = []
    by_ref: dict[str, dict] = {}
    for res in resources:
        kind = res.get("resourceType")
        by_ref[f"{kind}/{res.get('id')}"] = res
        if kind == "Patient":
            patients[res["id"]] = res
        elif kind == "Observation" and _has_code(
            res.get("code"), cs.VETERAN_STATUS, "veteran-entitlement"
        ):
            if not _ended(res):
                status[_patient_id(res.get("subject"))] = res
        elif kind == "Encounter" and (res.get("class") or {}).get("code") == "IMP":
            encounters.append(res)
        elif kind == "Encounter" and _round_kind(res) and res.get("status") not in _NOT_HELD:
            rounds.append((_round_kind(res), res))
        elif kind == "Flag" and _colour(res):
            flags.append(res)

    red_now = {
        _patient_id(f.get("subject"))
        for f in flags
        if _colour(f) == "red" and f.get("status") == "active"
    }
    rows: list[dict[str, str]] = []
    held: dict[str, list[tuple[str, dict, dt.date]]] = {}
    for round_kind, enc in rounds:
        pid = _patient_id(enc.get("subject"))
        day = _date((enc.get("period") or {}).get("start"))
        if pid in status and day is not None and since <= day <= until:
            held.setdefault(pid, []).append((round_kind, enc, day))

    def person(pid: str) -> dict[str, str]:
        patient = patients.get(pid, {})
        obs = status[pid]
        number = _resident_id(patient)
        return {
            "姓名": _name(patient),
            "身份证号": number if unmask else resident_id.mask(number),
            "优抚类别": (obs.get("valueCodeableConcept") or {}).get("text", ""),
            "所属区市": _component_string(obs, "district"),
            "重大疾病": "是" if pid in red_now else "否",
            "巡诊次数": str(
                sum(1 for k, _e, _d in held.get(pid, ()) if k != cs.EXPERT_CONSULTATION)
            ),
            "会诊次数": str(
                sum(1 for k, _e, _d in held.get(pid, ()) if k == cs.EXPERT_CONSULTATION)
            ),
        }

    for enc in encounters:
        pid = _patient_id(enc.get("subject"))
        day = _date((enc.get("period") or {}).get("start"))
        if pid not in status or day is None or not (since <= day <= until):
            continue
        rows.append(
            person(pid)
            | {
                "事件": EVENT_ADMISSION,
                "日期": day.isoformat(),
                "医疗机构": _display(enc.get("serviceProvider"), by_ref),
                "诊断": _diagnosis(enc, by_ref),
                "五色分类": "",
            }
        )
    for pid, events in held.items():
        for round_kind, enc, day in events:
            rows.append(
                person(pid)
                | {
                    "事件": ROUND_EVENTS[round_kind],
                    "日期": day.isoformat(),
                    "医疗机构": _display(enc.get("serviceProvider"), by_ref),
                    "诊断": "",
                    "五色分类": "",
                }
            )
    for flag in flags:
        pid = _patient_id(flag.get("subject"))
        if pid not in status:
            continue
        period = flag.get("period") or {}
        for event, value in (
            (EVENT_COLOUR_ADDED, period.get("start")),
            (EVENT_COLOUR_LIFTED, period.get("end")),
        ):
            day = _date(value)
            if day is not None and since <= day <= until:
                rows.append(
                    person(pid)
                    | {
                        "事件": event,
                        "日期": day.isoformat(),
                        "医疗机构": "",
                        "诊断": "",
                        "五色分类": COLOUR_NAMES[_colour(flag)],
                    }
                )
    rows = [{c: row.get(c, "") for c in COLUMNS} for row in rows]
    rows.sort(key=lambda r: (r["日期"], r["身份证号"], r["事件"], r["五色分类"]))
    return rows


def write_csv(rows: Iterable[dict[str, str]], path: str | Path) -> None:
    """CSV in UTF-8 with BOM and CRLF, Chinese headers."""
    with open(path, "w", encoding="utf-8-sig", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS, lineterminator="\r\n")
        writer.writeheader()
        writer.writerows(rows)


def write_xlsx(rows: Iterable[dict[str, str]], path: str | Path) -> None:
    """XLSX with one sheet; every cell is text so ID numbers keep their digits."""
    import openpyxl
    from openpyxl.cell import WriteOnlyCell

    book = openpyxl.Workbook(write_only=True)
    sheet = book.create_sheet(SHEET_TITLE)
    sheet.append(list(COLUMNS))
    for row in rows:
        cells = []
        for column in COLUMNS:
            cell = WriteOnlyCell(sheet, value=row.get(column, ""))
            cell.number_format = "@"
            cells.append(cell)
        sheet.append(cells)
    book.save(str(path))


# ---------------------------------------------------------------------------
# Readers
# ---------------------------------------------------------------------------


def _has_code(concept: dict | None, system: str, code: str) -> bool:
    return any(
        c.get("system") == system and c.get("code") == code
        for c in (concept or {}).get("coding", [])
    )


def _round_kind(enc: dict) -> str | None:
    """The round code of an Encounter's type (remote-round ...), ``None`` for other visits."""
    for concept in enc.get("type") or ():
        for coding in (concept or {}).get("coding") or ():
            if coding.get("system") == cs.ENCOUNTER_TYPE and coding.get("code") in ROUND_EVENTS:
                return coding["code"]
    return None


def _ended(obs: dict) -> bool:
    for comp in obs.get("component", []):
        if _has_code(comp.get("code"), cs.VETERAN_STATUS, "benefit-status"):
            return _has_code(comp.get("valueCodeableConcept"), cs.VETERAN_BENEFIT_STATUS, "ended")
    return False


def _component_string(obs: dict, code: str) -> str:
    for comp in obs.get("component", []):
        if _has_code(comp.get("code"), cs.VETERAN_STATUS, code):
            return str(comp.get("valueString", ""))
    return ""


def _patient_id(ref: dict | None) -> str:
    text = (ref or {}).get("reference", "")
    return text.split("/", 1)[1] if text.startswith("Patient/") else ""


def _colour(flag: dict) -> str | None:
    for coding in (flag.get("code") or {}).get("coding", []):
        if coding.get("system") == cs.FIVE_COLOUR and coding.get("code") in COLOUR_NAMES:
            return coding["code"]
    return None


def _resident_id(patient: dict) -> str:
    for ident in patient.get("identifier", []):
        if ident.get("system") == RESIDENT_ID_SYSTEM:
            return ident.get("value", "")
    return ""


def _name(patient: dict) -> str:
    for name in patient.get("name", []):
        if name.get("text"):
            return name["text"]
        return (name.get("family") or "") + "".join(name.get("given") or [])
    return ""


def _display(ref: dict | None, by_ref: dict[str, dict]) -> str:
    if not ref:
        return ""
    if ref.get("display"):
        return ref["display"]
    return by_ref.get(ref.get("reference", ""), {}).get("name", "")


def _diagnosis(enc: dict, by_ref: dict[str, dict]) -> str:
    """The principal diagnosis: rank 1 (or the first) of Encounter.diagnosis, else reasonCode."""
    diagnoses = sorted(enc.get("diagnosis", []), key=lambda d: d.get("rank", 99))
    for diag in diagnoses:
        condition = by_ref.get((diag.get("condition") or {}).get("reference", ""))
        if condition:
            return _concept_text(condition.get("code"))
    for concept in enc.get("reasonCode", []):
        return _concept_text(concept)
    return ""


def _concept_text(concept: dict | None) -> str:
    concept = concept or {}
    for coding in concept.get("coding", []):
        label = coding.get("display") or concept.get("text") or ""
        return f"{coding.get('code', '')} {label}".strip()
    return concept.get("text", "")


def _date(value: str | None) -> dt.date | None:
    try:
        return dt.date.fromisoformat(str(value)[:10]) if value else None
    except ValueError:
        return None
