"""The lifetime-file document as one printable, self-contained HTML page.

Rendered from the document Bundle (:func:`hub.lifetime.document.build`), so the page and the
FHIR document always say the same thing. No scripts, no external files: the page prints on A4
with the section headings kept with their tables. Labels are Chinese with English subtitles.
"""

from __future__ import annotations

from html import escape
from typing import Any

from hub import codesystems as cs
from hub.identity import HEALTH_RECORD_SYSTEM
from hub.identity import RESIDENT_ID_SYSTEM
from hub.identity.resident_id import mask
from hub.lifetime.document import clinical_date
from hub.lifetime.document import describe

KINDS = {
    "Patient": "档案 Record",
    "RelatedPerson": "联系人 Relative",
    "Group": "家庭/村 Household/village",
    "AllergyIntolerance": "过敏 Allergy",
    "FamilyMemberHistory": "家族史 Family history",
    "Condition": "疾病 Condition",
    "Observation": "观察 Observation",
    "Encounter": "就诊 Encounter",
    "EpisodeOfCare": "管理项目 Programme",
    "CarePlan": "计划 Care plan",
    "Flag": "五色分类 Five colour",
    "DiagnosticReport": "报告 Report",
    "DocumentReference": "文档 Document",
    "Procedure": "操作 Procedure",
    "MedicationRequest": "用药 Medication",
    "MedicationStatement": "用药 Medication",
    "Immunization": "预防接种 Immunisation",
}
GENDER = {
    "male": "男 male",
    "female": "女 female",
    "other": "其他 other",
    "unknown": "未知 unknown",
}
COLOUR_CSS = {
    "red": "#c62828",
    "yellow": "#f9a825",
    "blue": "#1565c0",
    "orange": "#ef6c00",
    "green": "#2e7d32",
}

CSS = """
body { font-family: "Noto Sans CJK SC", "Source Han Sans SC", "Microsoft YaHei", sans-serif;
       margin: 2em auto; max-width: 60em; color: #222; font-size: 11pt; }
h1 { font-size: 20pt; margin: 0; } h1 small, h2 small { color: #666; font-weight: normal; }
h2 { font-size: 14pt; border-bottom: 2px solid #333; margin-top: 1.5em; page-break-after: avoid; }
table { border-collapse: collapse; width: 100%; } td, th { border: 1px solid #bbb; padding: 3px 6px;
 vertical-align: top; text-align: left; } th { background: #f0f0f0; }
.facts td:first-child { width: 12em; background: #fafafa; }
.colour { display: inline-block; padding: 1px 8px; border-radius: 3px; color: #fff; }
.empty { color: #888; font-style: italic; } .meta { color: #666; font-size: 9pt; }
@media print { body { margin: 0; max-width: none; font-size: 10pt; }
  @page { size: A4; margin: 15mm; } tr { page-break-inside: avoid; } a { color: inherit; } }
"""


def render(bundle: dict[str, Any]) -> str:
    """The page for a lifetime-file document Bundle."""
    entries = [e["resource"] for e in bundle.get("entry") or ()]
    composition = entries[0]
    by_key = {f"{r.get('resourceType')}/{r.get('id')}": r for r in entries}
    subject = by_key.get((composition.get("subject") or {}).get("reference", ""), {})
    flags = [
        r
        for r in entries
        if r.get("resourceType") == "Flag"
        and r.get("status") == "active"
        and any(c.get("system") == cs.FIVE_COLOUR for c in (r.get("code") or {}).get("coding", []))
    ]
    parts = [
        "<!DOCTYPE html>",
        '<html lang="zh-CN"><head><meta charset="utf-8">',
        f"<title>居民健康档案 {escape(_name(subject))}</title><style>{CSS}</style></head><body>",
        "<h1>居民健康档案 <small>Resident health record</small></h1>",
        f'<p class="meta">生成时间 Generated {escape(str(composition.get("date", "")))}</p>',
        _facts(subject, flags),
    ]
    for section in composition.get("section") or ():
        title = section.get("title", "")
        zh, _, en = title.partition(" ")
        parts.append(f"<h2>{escape(zh)} <small>{escape(en)}</small></h2>")
        items = [
            by_key[e["reference"]] for e in section.get("entry") or () if e["reference"] in by_key
        ]
        if not items:
            parts.append('<p class="empty">无记录 None recorded</p>')
            continue
        parts.append(
            "<table><thead><tr><th>日期 Date</th><th>类别 Kind</th>"
            "<th>内容 Details</th></tr></thead><tbody>"
        )
        for res in items:
            kind = res.get("resourceType", "")
            parts.append(
                f"<tr><td>{escape((clinical_date(res) or '')[:10])}</td>"
                f"<td>{escape(KINDS.get(kind, kind))}</td><td>{escape(describe(res))}</td></tr>"
            )
        parts.append("</tbody></table>")
    parts.append("</body></html>")
    return "\n".join(parts)


def _facts(patient: dict[str, Any], flags: list[dict[str, Any]]) -> str:
    rows = [
        ("姓名 Name", escape(_name(patient))),
        ("性别 Sex", escape(GENDER.get(patient.get("gender", ""), patient.get("gender", "")))),
        ("出生日期 Date of birth", escape(patient.get("birthDate", ""))),
        ("身份证号 Resident ID", escape(_identifier(patient, RESIDENT_ID_SYSTEM, masked=True))),
        ("健康档案编号 Record number", escape(_identifier(patient, HEALTH_RECORD_SYSTEM))),
    ]
    badges = []
    for flag in flags:
        coding = next(c for c in flag["code"]["coding"] if c.get("system") == cs.FIVE_COLOUR)
        colour = coding.get("code", "")
        badges.append(
            f'<span class="colour" style="background:{COLOUR_CSS.get(colour, "#555")}">'
            f"{escape(coding.get('display') or colour)}</span>"
        )
    rows.append(("五色分类 Five colour", " ".join(badges) or "—"))
    cells = "".join(f"<tr><td>{k}</td><td>{v}</td></tr>" for k, v in rows)
    return f'<table class="facts">{cells}</table>'


def _name(patient: dict[str, Any]) -> str:
    for name in patient.get("name") or ():
        if name.get("text"):
            return name["text"]
        family, given = name.get("family", ""), "".join(name.get("given") or ())
        if family or given:
            return f"{family}{given}"
    return ""


def _identifier(patient: dict[str, Any], system: str, masked: bool = False) -> str:
    for ident in patient.get("identifier") or ():
        if ident.get("system") == system and ident.get("value"):
            if masked:
                try:
                    return mask(ident["value"])
                except ValueError:
                    return "***"
            return ident["value"]
    return ""
