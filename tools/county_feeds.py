"""A county's raw feeds, and the audit figures they should give (DOMAIN 10).

Writes, for one synthetic county and one audit year, the files the hub's
partners send:

- ``county-platform/``: WS/T 483 CDA documents (个人基本健康信息登记 HSDA00.01,
  高血压/2型糖尿病患者随访服务 HSDB04.01/HSDB04.02, 重性精神疾病患者随访服务
  HSDB04.04 with its risk grade, 成人健康体检 HSDC00.01) and
  the family-doctor contract export (CSV, DOMAIN 10.4);
- ``county-hospital-a/``: HL7 v2.5 messages, one per file, segments ended by
  ``\\r`` as they travel inside an MLLP frame (A04 visits with ICD-10 DG1
  diagnoses, A03 discharge on death, A40 merge of a duplicate MRN, A04 remote and
  home rounds and expert consultations of the veterans, booked under their services);
- ``veterans-registry/``: the bureau's registry export (CSV, UTF-8 with BOM, and XLSX);
- ``expected.json``: the figures ``hub audit completeness`` and
  ``hub audit indicators`` should report, and the round and consultation rows
  ``hub export veterans-report`` should give for the year.

The people and their events are planned first; the expected figures are
computed from the plan by the small rule implementation below, written from
the words of the National Basic Public Health Service Standards (3rd edition)
and the assessment rules, without the hub's code; the files are rendered last.
Everything is seeded: the same ``--seed`` and ``--people`` give the same bytes.

    python -m tools.county_feeds OUT_DIR [--people 300] [--seed 7] [--year 2025]

The awkward cases are planned on purpose: follow-ups by telephone (not face to
face), two follow-ups on one day, diagnoses in mid-year (pro rata), contracts
starting mid-year, people who moved to another county, deaths, and a hospital
record merged into the person's record (A40).
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import datetime as dt
import io
import json
import math
import random
import re
import zipfile
from pathlib import Path

COUNTY = "370283"  # 平度市 (GB/T 2260 shape)
OTHER_COUNTY = "370211"  # where movers go
TOWNSHIPS = {"102": "南村镇", "103": "同和街道"}
CLINICS = {
    "102": ("437028300015", "平度市南村镇卫生院"),
    "103": ("437028300002", "平度市同和街道社区卫生服务中心"),
}
HOSPITAL = "示例县人民医院"  # county-hospital-a, a partner hospital of the veterans programme
# Its HIS books the programme's rounds under services of their own (PV1-10), which the site's
# code map hl7v2-round-kind names: kind -> (service code, the event the report calls it).
ROUND_SERVICES = {
    "remote-round": ("YCXZ", "远程巡诊"),
    "home-round": ("RHXZ", "入户巡诊"),
    "expert-consultation": ("ZJHZ", "专家会诊"),
}
RESIDENT_POPULATION = 1000  # statistics the test configures as denominators (per 300 people)
SURNAMES = "王李张刘陈杨赵黄周吴徐孙马朱胡郭何高林罗"
GIVEN = "建国秀英桂兰玉珍志强海燕红梅国庆淑华明丽文军春生凤芝永刚"
HTN, DM = "hypertension", "diabetes"
SMD = "severe-mental-disorder"  # 严重精神障碍: >= 4 face-to-face follow-ups a year, no check
FACE_TO_FACE = {"1": "门诊", "2": "家庭"}  # WS 364 随访方式: 1 clinic, 2 home, 3 telephone
TELEPHONE = ("3", "电话")


# --- the plan ----------------------------------------------------------------------------


@dataclasses.dataclass
class FollowUp:
    programme: str
    day: dt.date
    mode: str  # "1" clinic, "2" home, "3" telephone
    systolic: int = 0
    diastolic: int = 0
    glucose: float = 0.0
    hba1c: float | None = None
    risk: int = 0  # 危险性分级 0-5 (severe mental disorder)


@dataclasses.dataclass
class Contract:
    number: str
    package: str  # 基础包 / 中级包
    signed: dt.date
    start: dt.date
    end: dt.date
    status: str  # 有效 / 已到期


@dataclasses.dataclass
class Person:
    n: int
    name: str
    sex: str  # "1" male, "2" female (GB/T 2261.1)
    birth: dt.date
    resident_id: str
    township: str
    village: str
    record_no: str
    phone: str | None
    registered: dt.date
    diagnoses: dict[str, dt.date] = dataclasses.field(default_factory=dict)
    follow_ups: list[FollowUp] = dataclasses.field(default_factory=list)
    checks: list[dt.date] = dataclasses.field(default_factory=list)
    contracts: list[Contract] = dataclasses.field(default_factory=list)
    died: dt.date | None = None
    moved: tuple[dt.date, str] | None = None  # (day, new record number in OTHER_COUNTY)
    merged_mrn: str | None = None  # an older hospital MRN without the ID number, merged by A40
    veteran: bool = False
    rounds: list[tuple[str, dt.date]] = dataclasses.field(default_factory=list)  # (kind, day)

    @property
    def mrn(self) -> str:
        return f"{self.n:07d}"


def check_character(body17: str) -> str:
    """GB 11643-1999 check character (ISO 7064 MOD 11-2)."""
    weights = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2]
    return "10X98765432"[sum(int(d) * w for d, w in zip(body17, weights, strict=True)) % 11]


def _day(rng: random.Random, start: dt.date, end: dt.date) -> dt.date:
    return start + dt.timedelta(days=rng.randrange((end - start).days + 1))


def plan(people: int = 300, seed: int = 7, year: int = 2025) -> list[Person]:
    rng = random.Random(seed)
    jan1, dec31 = dt.date(year, 1, 1), dt.date(year, 12, 31)
    out = []
    used: set[str] = set()
    for n in range(1, people + 1):
        elderly = rng.random() < 0.4
        age = rng.randint(65, 90) if elderly else rng.randint(30, 64)
        birth = dt.date(year - age, rng.randint(1, 12), rng.randint(1, 28))
        sex = rng.choice("12")
        # the sequence's last digit is odd for men, even for women (GB 11643)
        seq = (n % 500) * 2 + (1 if sex == "1" else 0)
        body = COUNTY + birth.strftime("%Y%m%d") + f"{seq:03d}"
        while body in used:  # big runs: one person per ID number
            birth += dt.timedelta(days=1)
            body = COUNTY + birth.strftime("%Y%m%d") + f"{seq:03d}"
        used.add(body)
        township = rng.choice(sorted(TOWNSHIPS))
        village = f"{rng.randint(1, 3):03d}"
        person = Person(
            n=n,
            name=rng.choice(SURNAMES) + rng.choice(GIVEN) + rng.choice(GIVEN),
            sex=sex,
            birth=birth,
            resident_id=body + check_character(body),
            township=township,
            village=village,
            record_no=COUNTY + township + village + f"{n:05d}",
            phone=None if rng.random() < 0.08 else f"139{rng.randint(0, 99999999):08d}",
            registered=_day(rng, dt.date(year - 8, 1, 1), dt.date(year - 1, 12, 31)),
        )
        for programme, share in ((HTN, 0.45 if elderly else 0.2), (DM, 0.2 if elderly else 0.1)):
            if rng.random() < share:
                mid_year = rng.random() < 0.15
                person.diagnoses[programme] = (
                    _day(rng, dt.date(year, 2, 1), dt.date(year, 10, 31))
                    if mid_year
                    else _day(rng, dt.date(year - 10, 1, 1), dt.date(year - 1, 12, 31))
                )
        if person.diagnoses and rng.random() < 0.08:
            # a death in the year, after the diagnoses (a record ends with the death)
            earliest = max(
                [dt.date(year, 4, 1)]
                + [d + dt.timedelta(days=30) for d in person.diagnoses.values()]
            )
            if earliest <= dt.date(year, 9, 30):
                person.died = _day(rng, earliest, dt.date(year, 9, 30))
        last = person.died or dec31
        for programme, since in person.diagnoses.items():
            start = max(since, jan1)
            for _ in range(rng.choice([0, 2, 3, 4, 4, 4, 5])):
                day = _day(rng, start, last)
                mode = rng.choices(["1", "2", "3"], weights=[6, 2, 2])[0]
                person.follow_ups.append(_reading(rng, programme, day, mode, person))
            if person.follow_ups and rng.random() < 0.1:  # a second visit on the same day
                first = person.follow_ups[-1]
                person.follow_ups.append(_reading(rng, programme, first.day, "1", person))
        if (elderly or person.diagnoses) and rng.random() < 0.7:
            person.checks.append(
                _day(rng, max(jan1, min(person.diagnoses.values(), default=jan1)), last)
            )
        if rng.random() < 0.45:
            diabetic_only = DM in person.diagnoses and HTN not in person.diagnoses
            package = "中级包" if diabetic_only and rng.random() < 0.5 else "基础包"
            start = _day(rng, dt.date(year - 1, 3, 1), dt.date(year, 9, 30))
            end = start.replace(year=start.year + 1) - dt.timedelta(days=1)
            person.contracts.append(
                Contract(
                    f"QY{COUNTY}-{start.year}-{n:06d}",
                    package,
                    start - dt.timedelta(days=3),
                    start,
                    end,
                    "有效" if end >= dec31 else "已到期",
                )
            )
        elif rng.random() < 0.1:  # a contract that ran out before the year: does not count
            start = _day(rng, dt.date(year - 3, 1, 1), dt.date(year - 2, 12, 31))
            end = start.replace(year=start.year + 1) - dt.timedelta(days=1)
            person.contracts.append(
                Contract(f"QY{COUNTY}-{start.year}-{n:06d}", "基础包", start, start, end, "已到期")
            )
        if not person.died and rng.random() < 0.02:
            person.moved = (
                _day(rng, dt.date(year, 3, 1), dt.date(year, 10, 31)),
                OTHER_COUNTY + "101001" + f"{n:05d}",
            )
        if person.moved:  # from the move on, the new county's platform sends their records
            person.follow_ups = [f for f in person.follow_ups if f.day < person.moved[0]]
            person.checks = [d for d in person.checks if d < person.moved[0]]
        person.veteran = elderly and rng.random() < 0.1
        out.append(person)
    # one hospital record made before the person's ID number was known, merged later (A40)
    for person in out:
        if HTN in person.diagnoses and person.diagnoses[HTN] < jan1 and not person.died:
            person.merged_mrn = f"9{person.n:06d}"
            break
    _plan_severe_mental_disorder(out, seed, year)
    _plan_veteran_rounds(out, seed, year)
    for person in out:
        person.follow_ups.sort(key=lambda f: (f.day, f.programme))
    return out


def _plan_severe_mental_disorder(people: list[Person], seed: int, year: int) -> None:
    """Patients with a severe mental disorder and their follow-ups (WS/T 483.15).

    Planned after everything else from a random stream of their own, so that adding
    them left the rest of the county as it was planned before.
    """
    rng = random.Random(seed * 1000 + 15)
    jan1, dec31 = dt.date(year, 1, 1), dt.date(year, 12, 31)
    for person in people:
        if rng.random() >= 0.08:
            continue
        # mid-year diagnoses only for people who stay and live (services owed from then on)
        stays = not person.died and not person.moved
        person.diagnoses[SMD] = (
            _day(rng, dt.date(year, 2, 1), dt.date(year, 8, 31))
            if stays and rng.random() < 0.2
            else _day(rng, dt.date(year - 12, 1, 1), dt.date(year - 1, 12, 31))
        )
        start = max(person.diagnoses[SMD], jan1)
        last = min(
            person.died or dec31, person.moved[0] - dt.timedelta(days=1) if person.moved else dec31
        )
        for _ in range(rng.choice([0, 2, 3, 4, 4, 4, 5])):
            mode = rng.choices(["1", "2", "3"], weights=[4, 4, 2])[0]
            person.follow_ups.append(
                FollowUp(SMD, _day(rng, start, last), mode, risk=rng.choice([0, 0, 0, 1, 1, 2, 3]))
            )
        smd = [f for f in person.follow_ups if f.programme == SMD]
        if smd and rng.random() < 0.15:  # a second visit on the same day (counted once)
            person.follow_ups.append(FollowUp(SMD, smd[-1].day, "2", risk=smd[-1].risk))


def _plan_veteran_rounds(people: list[Person], seed: int, year: int) -> None:
    """Remote and home rounds and expert consultations of the veterans (荣军康养), some in the
    year before (not in the year's report), from a random stream of their own."""
    rng = random.Random(seed * 1000 + 19)
    jan1 = dt.date(year, 1, 1)
    for person in people:
        if not person.veteran:
            continue
        last = person.died or dt.date(year, 12, 31)
        if person.moved:
            last = min(last, person.moved[0] - dt.timedelta(days=1))
        for _ in range(rng.choice([1, 2, 3, 4])):
            kind = rng.choice(sorted(ROUND_SERVICES))
            person.rounds.append((kind, _day(rng, jan1, last)))
        if rng.random() < 0.3:
            person.rounds.append(
                ("remote-round", _day(rng, dt.date(year - 1, 1, 1), jan1 - dt.timedelta(days=1)))
            )
        person.rounds.sort(key=lambda r: (r[1], r[0]))


def _reading(rng, programme, day, mode, person) -> FollowUp:
    f = FollowUp(programme, day, mode)
    if programme == HTN:
        f.systolic, f.diastolic = rng.randint(118, 168), rng.randint(70, 100)
    else:
        f.glucose = round(rng.uniform(5.0, 9.5), 1)
        if rng.random() < 0.5:
            f.hba1c = round(rng.uniform(5.8, 9.0), 1)
    return f


# --- the expected figures, from the standard's words ---------------------------------------


def _months(start: dt.date, end: dt.date) -> float:
    """Months from the start day to the end of the end day (a share of the year)."""
    whole = (end.year - start.year) * 12 + end.month - start.month
    days_in = (
        dt.date(end.year + end.month // 12, end.month % 12 + 1, 1) - dt.timedelta(days=1)
    ).day
    first_days = (
        dt.date(start.year + start.month // 12, start.month % 12 + 1, 1) - dt.timedelta(days=1)
    ).day
    return whole + end.day / days_in - (start.day - 1) / first_days


def _due(per_year: int, start: dt.date, end: dt.date, jan1: dt.date, dec31: dt.date) -> int:
    """Services owed at per_year a year between start and end: the share of the year, rounded up."""
    if (start, end) == (jan1, dec31):
        return per_year
    return max(1, math.ceil(round(per_year * _months(start, end) / 12, 6)))


def expected(people: list[Person], year: int = 2025) -> dict:
    """The audit figures for the county and the year, computed from the plan."""
    jan1, dec31 = dt.date(year, 1, 1), dt.date(year, 12, 31)
    c: dict[str, int] = {}

    def add(key: str) -> None:
        c[key] = c.get(key, 0) + 1

    for p in people:
        if p.moved and p.moved[0] <= dec31:
            continue  # the record moved to another county: it is that county's now
        age = year - p.birth.year - ((12, 31) < (p.birth.month, p.birth.day))
        cohorts = {name for name, since in p.diagnoses.items() if since <= dec31}
        if age >= 65:
            cohorts.add("elderly")
        add("people")
        add("record")
        # a dynamic record: a service or medical record dated in the year
        dated = [f.day for f in p.follow_ups] + p.checks
        dated += [since for since in p.diagnoses.values()]  # the hospital visit that diagnosed it
        dated += [p.died] if p.died else []
        dated += [p.registered]
        dated += [day for _kind, day in p.rounds]
        if any(jan1 <= d <= dec31 for d in dated):
            add("record-in-use")
        in_force = [k for k in p.contracts if k.start <= dec31 and k.end >= jan1]
        if in_force:
            add("contract")
        unmet = False
        # 个人基本信息表: every field the form requires
        add("rule:personal-information:applies")
        if p.phone:
            add("rule:personal-information:met")
        else:
            unmet = True
        end = min(dec31, p.died) if p.died else dec31
        # 老年人健康管理: one health check in the year from 65
        if "elderly" in cohorts:
            add("rule:elderly-health-check:applies")
            if any(jan1 <= d <= dec31 for d in p.checks):
                add("rule:elderly-health-check:met")
                add("rule:elderly-health-check:served")
            else:
                unmet = True
        # 严重精神障碍: >= 4 face-to-face follow-ups a year, owed from the diagnosis;
        # telephone follow-ups do not count; no health check is required (DOMAIN 2.4)
        if SMD in cohorts:
            start = max(jan1, p.diagnoses[SMD])
            add(f"rule:{SMD}:applies")
            days = {
                f.day
                for f in p.follow_ups
                if f.programme == SMD and f.mode in FACE_TO_FACE and start <= f.day <= end
            }
            met = len(days) >= _due(4, start, end, jan1, dec31)
            add(f"rule:{SMD}:{'met' if met else 'unmet'}")
            unmet |= not met
            if days:
                add(f"rule:{SMD}:served")
        # 高血压 / 2型糖尿病: >= 4 face-to-face follow-ups and 1 health check a year,
        # owed from the diagnosis when it falls in the year; control on the latest one
        for programme in (HTN, DM):
            if programme not in cohorts:
                continue
            start = max(jan1, p.diagnoses[programme])
            add(f"rule:{programme}:applies")
            face = sorted(
                (
                    f
                    for f in p.follow_ups
                    if f.programme == programme and f.mode in FACE_TO_FACE and start <= f.day <= end
                ),
                key=lambda f: f.day,
            )
            days = {f.day for f in face}
            checks = {d for d in p.checks if start <= d <= end}
            met = len(days) >= _due(4, start, end, jan1, dec31) and len(checks) >= _due(
                1, start, end, jan1, dec31
            )
            add(f"rule:{programme}:{'met' if met else 'unmet'}")
            unmet |= not met
            if days or checks:
                add(f"rule:{programme}:served")
            if face:
                latest = [f for f in face if f.day == face[-1].day][-1]
                if programme == HTN:
                    limit = 150 if age >= 65 else 140
                    ok = latest.systolic < limit and latest.diastolic < 90
                else:
                    ok = latest.glucose < 7.0
                if ok:
                    add(f"rule:{programme}:controlled")
        # 家庭医生签约: key-population members hold a contract; packages' services done
        add("rule:family-doctor:applies")
        fd_met = True
        if not in_force:
            fd_met = not cohorts  # only key-population members owe a contract
        for k in in_force:
            if k.package == "中级包" and DM in cohorts:
                w0, w1 = max(k.start, jan1), min(k.end, end)
                tests = {f.day for f in p.follow_ups if f.hba1c is not None and w0 <= f.day <= w1}
                fd_met &= len(tests) >= _due(2, w0, w1, jan1, dec31)
        add(f"rule:family-doctor:{'met' if fd_met else 'unmet'}")
        unmet |= not fd_met
        if unmet:
            add("with-gaps")
    return {
        "year": year,
        "jurisdiction": COUNTY,
        "counters": dict(sorted(c.items())),
        "veterans_report": veterans_report(people, year),
        "statistics": {
            "resident-population": RESIDENT_POPULATION * len(people) // 300,
            "residents-65-plus": RESIDENT_POPULATION * len(people) // 300 // 5,
        },
    }


def _masked(resident_id: str) -> str:
    """An ID number as the report shows it: the first 6 and the last 4 characters."""
    return resident_id[:6] + "*" * (len(resident_id) - 10) + resident_id[-4:]


def veterans_report(people: list[Person], year: int = 2025) -> list[dict[str, str]]:
    """The rounds and consultations of the year as the bureau's report lists them: one row per
    event with the veteran's counts of rounds (remote and home) and consultations in the year."""
    rows = []
    for p in people:
        held = [(kind, day) for kind, day in p.rounds if day.year == year]
        consultations = sum(1 for kind, _day in held if kind == "expert-consultation")
        for kind, day in held:
            rows.append(
                {
                    "姓名": p.name,
                    "身份证号": _masked(p.resident_id),
                    "事件": ROUND_SERVICES[kind][1],
                    "日期": day.isoformat(),
                    "医疗机构": HOSPITAL,
                    "巡诊次数": str(len(held) - consultations),
                    "会诊次数": str(consultations),
                }
            )
    return sorted(rows, key=lambda r: (r["日期"], r["身份证号"], r["事件"]))


# --- rendering ---------------------------------------------------------------------------

CDA_HEAD = """<?xml version="1.0" encoding="UTF-8"?>
<!-- Synthetic person: the resident ID number is made up (valid check character). -->
<ClinicalDocument xmlns="urn:hl7-org:v3" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
  <realmCode code="CN"/>
  <typeId root="2.16.840.1.113883.1.3" extension="POCD_MT000040"/>
  <templateId root="2.16.156.10011.2.1.1.{template}"/>
  <id root="2.16.156.10011.1.1" extension="{doc_id}"/>
  <code code="{doc_code}" codeSystem="2.16.156.10011.2.4" codeSystemName="卫生信息共享文档规范编码体系"/>
  <title>{title}</title>
  <effectiveTime value="{uploaded}"/>
  <confidentialityCode code="N" codeSystem="2.16.840.1.113883.5.25" codeSystemName="Confidentiality" displayName="正常访问保密级别"/>
  <languageCode code="zh-CN"/>
  <setId root="2.16.156.10011.1.1" extension="{set_id}"/>
  <versionNumber value="{version}"/>{related}
  <recordTarget typeCode="RCT" contextControlCode="OP">
    <patientRole classCode="PAT">
      <id root="2.16.156.10011.1.2" extension="{record_no}"/>
      <addr use="H">
        <houseNumber>{house}号</houseNumber>
        <streetName>{village}村</streetName>
        <township>{township}</township>
        <county>{county}</county>
        <city>青岛市</city>
        <state>山东省</state>
      </addr>{telecom}
      <patient classCode="PSN" determinerCode="INSTANCE">
        <id root="2.16.156.10011.1.3" extension="{resident_id}"/>
        <name>{name}</name>
        <administrativeGenderCode code="{sex}" codeSystem="2.16.156.10011.2.3.3.4" codeSystemName="生理性别代码表(GB/T 2261.1)"/>
        <birthTime value="{birth}"/>
      </patient>
    </patientRole>
  </recordTarget>
  <author typeCode="AUT" contextControlCode="OP">
    <time value="{authored}"/>
    <assignedAuthor classCode="ASSIGNED">
      <id root="2.16.156.10011.1.7" extension="D{org_code}"/>
      <assignedPerson><name>孙晓梅</name></assignedPerson>
      <representedOrganization>
        <id root="2.16.156.10011.1.5" extension="{org_code}"/>
        <name>{org_name}</name>
      </representedOrganization>
    </assignedAuthor>
  </author>
  <custodian typeCode="CST">
    <assignedCustodian classCode="ASSIGNED">
      <representedCustodianOrganization classCode="ORG" determinerCode="INSTANCE">
        <id root="2.16.156.10011.1.5" extension="{org_code}"/>
        <name>{org_name}</name>
      </representedCustodianOrganization>
    </assignedCustodian>
  </custodian>{encounter}
  <component>
    <structuredBody>
{sections}
    </structuredBody>
  </component>
</ClinicalDocument>
"""

DE = 'codeSystem="2.16.156.10011.2.2.1" codeSystemName="卫生信息数据元目录"'


def _obs(code: str, name: str, value: str, when: str = "") -> str:
    time = f'\n              <effectiveTime value="{when}"/>' if when else ""
    return f"""          <entry>
            <observation classCode="OBS" moodCode="EVN">
              <code code="{code}" {DE} displayName="{name}"/>{time}
              {value}
            </observation>
          </entry>"""


def _section(title: str, entries: list[str], loinc: str = "") -> str:
    code = (
        f'<code code="{loinc}" codeSystem="2.16.840.1.113883.6.1" codeSystemName="LOINC" displayName="{title}"/>'
        if loinc
        else f'<code displayName="{title}"/>'
    )
    body = "\n".join(entries)
    return f"""      <component>
        <section>
          {code}
          <title>{title}</title>
          <text/>
{body}
        </section>
      </component>"""


def _bp(systolic: int, diastolic: int) -> str:
    return f"""          <entry>
            <organizer classCode="BATTERY" moodCode="EVN">
              <code displayName="血压"/>
              <statusCode code="completed"/>
              <component>
                <observation classCode="OBS" moodCode="EVN">
                  <code code="DE04.10.174.00" {DE} displayName="收缩压"/>
                  <value xsi:type="PQ" value="{systolic}" unit="mmHg"/>
                </observation>
              </component>
              <component>
                <observation classCode="OBS" moodCode="EVN">
                  <code code="DE04.10.176.00" {DE} displayName="舒张压"/>
                  <value xsi:type="PQ" value="{diastolic}" unit="mmHg"/>
                </observation>
              </component>
            </organizer>
          </entry>"""


def _ts(day: dt.date, hour: int = 9) -> str:
    return day.strftime("%Y%m%d") + f"{hour:02d}0000"


def _cda(
    p: Person,
    template: str,
    code: str,
    title: str,
    doc_id: str,
    uploaded: dt.date,
    sections: list[str],
    *,
    encounter_day: dt.date | None = None,
    record_no: str | None = None,
    county: str = "平度市",
    version: int = 1,
    set_id: str | None = None,
) -> str:
    org_code, org_name = CLINICS[p.township]
    related = ""
    if version > 1:
        related = f'\n  <relatedDocument typeCode="RPLC"><parentDocument><id root="2.16.156.10011.1.1" extension="{set_id}"/><setId root="2.16.156.10011.1.1" extension="{set_id}"/><versionNumber value="{version - 1}"/></parentDocument></relatedDocument>'
    encounter = ""
    if encounter_day:
        encounter = f"""
  <componentOf>
    <encompassingEncounter>
      <effectiveTime><low value="{_ts(encounter_day, 8)}"/></effectiveTime>
    </encompassingEncounter>
  </componentOf>"""
    return CDA_HEAD.format(
        template=template,
        doc_id=doc_id,
        doc_code=code,
        title=title,
        uploaded=_ts(uploaded, 16),
        set_id=set_id or doc_id,
        version=version,
        related=related,
        record_no=record_no or p.record_no,
        house=p.n,
        village=p.village,
        township=TOWNSHIPS[p.township],
        county=county,
        telecom=f'\n      <telecom value="tel:{p.phone}"/>' if p.phone else "",
        resident_id=p.resident_id,
        name=p.name,
        sex=p.sex,
        birth=p.birth.strftime("%Y%m%d"),
        authored=_ts(encounter_day or uploaded),
        org_code=org_code,
        org_name=org_name,
        encounter=encounter,
        sections="\n".join(sections),
    )


def registration(p: Person, uploaded: dt.date, **kw) -> str:
    entries = [
        _obs(
            "DE04.50.001.00",
            "ABO血型代码",
            '<value xsi:type="CD" code="1" codeSystem="2.16.156.10011.2.3.1.85" displayName="A型"/>',
        )
    ]
    return _cda(
        p,
        "1",
        "HSDA00.01",
        "个人基本健康信息登记",
        kw.pop("doc_id", f"HSDA0001-{COUNTY}-{p.n:06d}"),
        uploaded,
        [_section("基本信息", entries)],
        **kw,
    )


def follow_up(p: Person, f: FollowUp, k: int) -> str:
    mode_name = FACE_TO_FACE.get(f.mode) or TELEPHONE[1]
    visit = [
        _obs(
            "DE06.00.108.00",
            "随访方式",
            f'<value xsi:type="CD" code="{f.mode}" codeSystem="2.16.156.10011.2.3.1.183" codeSystemName="随访方式代码表" displayName="{mode_name}"/>',
            f.day.strftime("%Y%m%d"),
        ),
    ]
    when = f.day.strftime("%Y%m%d")
    if f.programme == SMD:
        # WS/T 483.15: the visit, the risk grade in the problem list; sent as N by the
        # platform (the hub labels it mental-health all the same)
        code, template, title = "HSDB04.04", "15", "重性精神疾病患者随访服务"
        grade = [
            _obs("DE05.10.013.00", "危险性分级", f'<value xsi:type="INT" value="{f.risk}"/>', when)
        ]
        sections = [_section("随访", visit), _section("PROBLEM LIST", grade, "11450-4")]
    elif f.programme == HTN:
        code, template, title = "HSDB04.01", "12", "高血压患者随访服务"
        signs = [_bp(f.systolic, f.diastolic)]
        sections = [_section("随访", visit), _section("VITAL SIGNS", signs, "8716-3")]
    else:
        code, template, title = "HSDB04.02", "13", "2型糖尿病患者随访服务"
        labs = [
            _obs(
                "DE04.50.106.00",
                "空腹血糖值",
                f'<value xsi:type="PQ" value="{f.glucose}" unit="mmol/L"/>',
                when,
            )
        ]
        if f.hba1c is not None:
            labs.append(
                _obs(
                    "DE04.50.068.00",
                    "糖化血红蛋白值",
                    f'<value xsi:type="PQ" value="{f.hba1c}" unit="%"/>',
                    when,
                )
            )
        sections = [_section("随访", visit), _section("RESULTS", labs, "30954-2")]
    doc_id = f"{code.replace('.', '')}-{COUNTY}-{p.n:06d}-{k:02d}"
    return _cda(p, template, code, title, doc_id, f.day + dt.timedelta(days=2), sections)


def health_check(p: Person, day: dt.date) -> str:
    signs = [
        _bp(128, 80),
        _obs("DE04.10.188.00", "体重", '<value xsi:type="PQ" value="65" unit="kg"/>'),
    ]
    doc_id = f"HSDC0001-{COUNTY}-{p.n:06d}-{day:%Y%m%d}"
    return _cda(
        p,
        "16",
        "HSDC00.01",
        "成人健康体检",
        doc_id,
        day + dt.timedelta(days=1),
        [_section("VITAL SIGNS", signs, "8716-3")],
        encounter_day=day,
    )


def contracts_csv(people: list[Person]) -> bytes:
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\r\n")
    w.writerow(
        [
            "签约编号",
            "姓名",
            "身份证号",
            "健康档案编号",
            "签约机构代码",
            "签约机构",
            "家庭医生团队",
            "签约医生",
            "服务包",
            "签约日期",
            "生效日期",
            "到期日期",
            "签约状态",
        ]
    )
    for p in people:
        org_code, org_name = CLINICS[p.township]
        for k in p.contracts:
            w.writerow(
                [
                    k.number,
                    p.name,
                    p.resident_id,
                    p.record_no,
                    org_code,
                    org_name,
                    f"{TOWNSHIPS[p.township]}第一团队",
                    "孙晓梅",
                    k.package,
                    k.signed,
                    k.start,
                    k.end,
                    k.status,
                ]
            )
    return ("\ufeff" + out.getvalue()).encode("utf-8")


REGISTRY_HEADER = [
    "姓名",
    "性别",
    "身份证号",
    "出生日期",
    "优抚类别",
    "伤残等级",
    "伤残性质",
    "户籍地址",
    "联系电话",
    "所属区市",
    "入伍时间",
    "退役时间",
    "抚恤定补标准(元/月)",
    "状态",
]


def _registry_row(p: Person) -> list:
    address = f"山东省青岛市平度市{TOWNSHIPS[p.township]}{p.village}村"
    sex = "男" if p.sex == "1" else "女"
    served = (f"{p.birth.year + 18}-03", f"{p.birth.year + 22}-12")
    return [
        p.name,
        sex,
        p.resident_id,
        p.birth,
        "退役军人",
        "",
        "",
        address,
        p.phone or "",
        "平度市",
        *served,
        "",
        "正常",
    ]


def registry_csv(people: list[Person]) -> bytes:
    """The bureau's export as CSV: UTF-8 with BOM, CRLF (DOMAIN 10.3)."""
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\r\n")
    w.writerow(REGISTRY_HEADER)
    for p in people:
        row = _registry_row(p)
        row[3] = p.birth.isoformat()
        w.writerow(row)
    return ("\ufeff" + out.getvalue()).encode("utf-8")


def registry_xlsx(people: list[Person]) -> bytes:
    """The same export as XLSX: sheet 优抚对象, dates as date cells, ID numbers and phones as text."""
    import openpyxl

    book = openpyxl.Workbook()
    sheet = book.active
    sheet.title = "优抚对象"
    sheet.append(REGISTRY_HEADER)
    for p in people:
        sheet.append(_registry_row(p))
        row = sheet.max_row
        sheet.cell(row, 4).number_format = "yyyy-mm-dd"
        for col in (3, 9):
            sheet.cell(row, col).number_format = "@"
    book.properties.created = dt.datetime(2000, 1, 1)  # the same bytes for the same plan
    saved = io.BytesIO()
    book.save(saved)
    # the zip entries carry the time of writing: rewrite them with a fixed one
    out = io.BytesIO()
    with zipfile.ZipFile(saved) as src, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst:
        for item in src.infolist():
            fixed = zipfile.ZipInfo(item.filename, date_time=(2000, 1, 1, 0, 0, 0))
            fixed.compress_type = zipfile.ZIP_DEFLATED
            data = src.read(item.filename)
            if item.filename == "docProps/core.xml":  # openpyxl stamps the saving time
                data = re.sub(
                    rb"(<dcterms:modified[^>]*>)[^<]*", rb"\g<1>2000-01-01T00:00:00Z", data
                )
            dst.writestr(fixed, data)
    return out.getvalue()


def _hl7(msh_time: dt.datetime, kind: str, control: str, segments: list[str]) -> bytes:
    msh = f"MSH|^~\\&|WINNING_HIS|XRMYY|FHIRHUB|HUB|{msh_time:%Y%m%d%H%M%S}||{kind}|{control}|P|2.5|||AL|NE|CHN|UNICODE UTF-8"
    return ("\r".join([msh, *segments]) + "\r").encode("utf-8")


def _pid(p: Person, mrn: str, with_id: bool = True, death: dt.date | None = None) -> str:
    ids = f"{mrn}^^^XRMYY^MR" + (f"~{p.resident_id}^^^CHN^NNCHN" if with_id else "")
    family, given = p.name[0], p.name[1:]
    sex = "M" if p.sex == "1" else "F"
    dead = f"|{death:%Y%m%d}1200|Y" if death else ""
    pad = "|" * 12 if death else ""
    return f"PID|1||{ids}||{family}^{given}||{p.birth:%Y%m%d}|{sex}|||{TOWNSHIPS[p.township]}{p.village}村^^青岛市^山东省^^CHN^H^^{COUNTY}{pad}{dead}"


ICD = {
    HTN: ("I10.x00", "原发性高血压"),
    DM: ("E11.900", "2型糖尿病"),
    SMD: ("F20.000", "偏执型精神分裂症"),
}


def visit(
    p: Person, day: dt.date, programme: str, k: int, mrn: str | None = None, with_id: bool = True
) -> bytes:
    code, name = ICD[programme]
    when = dt.datetime.combine(day, dt.time(9, 30))
    return _hl7(
        when,
        "ADT^A04^ADT_A01",
        f"A04-{p.n:06d}-{k}",
        [
            f"EVN|A04|{when:%Y%m%d%H%M%S}",
            _pid(p, mrn or p.mrn, with_id),
            f"PV1|1|O|内科^^^XRMYY||||D001^王^医生|||内科|||||||||V{p.n:06d}{k}|||||||||||||||||||||||||{when:%Y%m%d%H%M%S}",
            f"DG1|1||{code}^{name}^ICD10CN||{day:%Y%m%d}|F",
        ],
    )


def round_visit(p: Person, kind: str, day: dt.date, k: int) -> bytes:
    """A04 of a round or consultation: the HIS books it under the programme's service (PV1-10),
    as an outpatient visit (PV1-2 O) with the doctor who held it (PV1-7)."""
    service = ROUND_SERVICES[kind][0]
    when = dt.datetime.combine(day, dt.time(14, 0))
    return _hl7(
        when,
        "ADT^A04^ADT_A01",
        f"A04-R-{p.n:06d}-{k}",
        [
            f"EVN|A04|{when:%Y%m%d%H%M%S}",
            _pid(p, p.mrn),
            f"PV1|1|O|荣军康养中心^^^XRMYY||||D015^赵^医生|||{service}||||1|||D015^赵^医生||R{p.n:06d}{k}"
            + "|" * 25  # PV1-20 ... PV1-43 empty; PV1-44 is the time of the round
            + f"{when:%Y%m%d%H%M%S}",
        ],
    )


def death(p: Person) -> bytes:
    admit = dt.datetime.combine(p.died - dt.timedelta(days=3), dt.time(8))
    out = dt.datetime.combine(p.died, dt.time(15, 30))
    return _hl7(
        out,
        "ADT^A03^ADT_A03",
        f"A03-{p.n:06d}",
        [
            f"EVN|A03|{out:%Y%m%d%H%M%S}",
            _pid(p, p.mrn, death=p.died),
            f"PV1|1|I|内科^301^2||||D001^王^医生||||||||||||V{p.n:06d}D|||||||||||||||||20||||||||{admit:%Y%m%d%H%M%S}|{out:%Y%m%d%H%M%S}",
        ],
    )


def merge(p: Person, day: dt.date) -> bytes:
    when = dt.datetime.combine(day, dt.time(12))
    return _hl7(
        when,
        "ADT^A40^ADT_A39",
        f"A40-{p.n:06d}",
        [
            f"EVN|A40|{when:%Y%m%d%H%M%S}",
            _pid(p, p.mrn),
            f"MRG|{p.merged_mrn}^^^XRMYY^MR||||||{p.name[0]}^{p.name[1:]}",
        ],
    )


def render(people: list[Person], out: Path, year: int = 2025) -> dict[str, int]:
    """Write the feeds below ``out`` (one folder per site); returns files per site."""
    platform, hospital, registry = (
        out / s for s in ("county-platform", "county-hospital-a", "veterans-registry")
    )
    for folder in (platform, hospital, registry):
        folder.mkdir(parents=True, exist_ok=True)
    counts = {"county-platform": 0, "county-hospital-a": 0, "veterans-registry": 0}

    def put(folder: Path, name: str, data: str | bytes) -> None:
        (folder / name).write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
        counts[folder.name] += 1

    # File names sort in the order the files are sent (hub ingest reads a folder sorted).
    for p in people:
        put(
            platform,
            f"{p.registered:%Y%m%d}-{p.n:06d}-registration.xml",
            registration(p, p.registered),
        )
        for k, f in enumerate(p.follow_ups):
            put(
                platform,
                f"{f.day + dt.timedelta(days=2):%Y%m%d}-{p.n:06d}-follow-up-{k:02d}.xml",
                follow_up(p, f, k),
            )
        for day in p.checks:
            put(
                platform,
                f"{day + dt.timedelta(days=1):%Y%m%d}-{p.n:06d}-health-check.xml",
                health_check(p, day),
            )
        if p.moved:
            day, new_no = p.moved
            doc_id = f"HSDA0001-{COUNTY}-{p.n:06d}"
            text = registration(
                p,
                day,
                doc_id=doc_id + "-2",
                record_no=new_no,
                county="市北区",
                version=2,
                set_id=doc_id,
            )
            put(platform, f"{day:%Y%m%d}-{p.n:06d}-registration-moved.xml", text)
        for k, (programme, since) in enumerate(sorted(p.diagnoses.items())):
            if p.merged_mrn and programme == HTN:
                # first seen without the ID number under an MRN later merged into this one
                put(
                    hospital,
                    f"{since:%Y%m%d}-{p.n:06d}-a04-{k}.hl7",
                    visit(p, since, programme, k, p.merged_mrn, with_id=False),
                )
                # the next day the HIS finds the duplicate and merges it into the person's MRN
                day = since + dt.timedelta(days=1)
                put(hospital, f"{day:%Y%m%d}-{p.n:06d}-a40.hl7", merge(p, day))
            else:
                put(
                    hospital, f"{since:%Y%m%d}-{p.n:06d}-a04-{k}.hl7", visit(p, since, programme, k)
                )
        for k, (kind, day) in enumerate(p.rounds):
            put(hospital, f"{day:%Y%m%d}-{p.n:06d}-round-{k}.hl7", round_visit(p, kind, day, k))
        if p.died:
            put(hospital, f"{p.died:%Y%m%d}-{p.n:06d}-a03.hl7", death(p))
    put(platform, f"{year}1231-zz-contracts.csv", contracts_csv(people))
    # The bureau exports its whole register each time, in either format: a later file
    # without someone means that person left (plugins/va_registry/departures.py). The CSV
    # (sent first) holds half of them, the XLSX (sent last) every one.
    veterans = [p for p in people if p.veteran]
    put(registry, f"{year}1231-registry.csv", registry_csv(veterans[::2]))
    put(registry, f"{year}1231-registry.xlsx", registry_xlsx(veterans))
    return counts


def generate(out: Path, people: int = 300, seed: int = 7, year: int = 2025) -> dict:
    """Plan, compute the expected figures, render the files; writes and returns expected.json."""
    planned = plan(people, seed, year)
    figures = expected(planned, year)
    figures["files"] = render(planned, out, year)
    (out / "expected.json").write_text(
        json.dumps(figures, ensure_ascii=False, indent=1), encoding="utf-8"
    )
    return figures


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--people", type=int, default=300)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--year", type=int, default=2025)
    args = parser.parse_args(argv)
    figures = generate(args.out, args.people, args.seed, args.year)
    print(
        json.dumps({"files": figures["files"], "counters": figures["counters"]}, ensure_ascii=False)
    )


if __name__ == "__main__":
    main()
