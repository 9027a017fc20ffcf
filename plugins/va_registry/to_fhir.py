"""Registry rows -> FHIR: the person, their veteran status and programme enrolment.

Per row (DOMAIN 10.3, 5.4):

- ``Patient`` (id from :func:`hub.identity.ids.patient_id_for_resident_id`):
  resident ID number, name, gender, birth date, registered address, phone.
  Nothing about veteran status goes on the Patient, which is widely readable.
- ``Observation`` "veteran-entitlement" (category social-history): the
  beneficiary category as the value, benefit status, disability grade and
  nature, pension standard and responsible district as components; labelled
  ``R`` + ``veteran-status`` in ``meta.security`` (PIPL Art. 28 specific identity).
- ``EpisodeOfCare`` per programme in the site setting ``programmes``
  (default 荣军康养, ``rongjun-kangyang``), with the same labels: enrolment
  itself reveals the status.

A row that cannot identify its person or category raises :class:`RowError`
and is left out; problems that do not make the row wrong become warnings.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
from typing import Any

from hub.plugin_api import RESIDENT_ID_SYSTEM
from hub.plugin_api import CodeMap
from hub.plugin_api import MappingContext
from hub.plugin_api import codesystems as cs
from hub.plugin_api import patient_id_for_resident_id
from hub.plugin_api import resident_id
from hub.plugin_api import split_chinese_name
from hub.plugin_api import stable_id
from hub.plugin_api import with_content_hash

from .read import Row
from .read import cell_text
from .read import parse_date

DEFAULT_PROGRAMMES = ("rongjun-kangyang",)
PROGRAMME_DISPLAY = {"rongjun-kangyang": "荣军康养 (veterans' health and elderly care)"}
# benefit status -> EpisodeOfCare.status
EPISODE_STATUS = {"active": "active", "suspended": "onhold", "ended": "finished"}
SECURITY = [cs.RESTRICTED, cs.VETERAN_SENSITIVITY]
# Observation.identifier of the registry number (优抚证号) when the site names no system
# (``identifier_systems.registry_number`` in its manifest).
REGISTRY_NUMBER_SYSTEM = "urn:fhirhub:identifier:veteran-registry-number"

_PHONE_DIGITS = re.compile(r"[\s\-()（）]")
_MOBILE = re.compile(r"^(?:\+?86)?1\d{10}$")


class RowError(ValueError):
    """The row cannot be loaded; ``field`` names the column at fault."""

    def __init__(self, field: str, text: str, code: str = "value"):
        super().__init__(text)
        self.field = field
        self.text = text
        self.code = code


@dataclasses.dataclass
class MappedRow:
    patient_id: str
    resources: list[dict[str, Any]]
    warnings: list[tuple[str, str]]  # (field, text)


def veteran_status_id(patient_id: str) -> str:
    return stable_id("veteran-status", patient_id)


def episode_id(programme: str, patient_id: str) -> str:
    return stable_id("episode-of-care", programme, patient_id)


class RowMapper:
    """Maps rows of one file; code maps and site settings are resolved once."""

    def __init__(self, context: MappingContext, config: dict[str, Any] | None = None):
        config = config or {}
        self.sex: CodeMap = context.code_map("va-registry-sex")
        self.category: CodeMap = context.code_map("va-registry-category")
        self.grade: CodeMap = context.code_map("va-registry-disability-grade")
        self.nature: CodeMap = context.code_map("va-registry-disability-nature")
        self.status: CodeMap = context.code_map("va-registry-status")
        self.programmes = tuple(config.get("programmes", DEFAULT_PROGRAMMES))
        self.today = config.get("today") or dt.date.today()
        systems = getattr(context.site, "identifier_systems", None) or {}
        self.registry_number_system = systems.get("registry_number") or REGISTRY_NUMBER_SYSTEM
        org = getattr(context.site, "organization", None) or {}
        self.organization = {"reference": f"Organization/{org['id']}"} if org.get("id") else None

    def map_row(self, row: Row) -> MappedRow:
        v = row.values
        warnings: list[tuple[str, str]] = []

        # 姓名 name
        name = cell_text(v.get("name"))
        if not name:
            raise RowError("name", "the name is empty", "required")

        # 身份证号 resident ID number: the person's key, so a bad one rejects the row
        raw_id = cell_text(v.get("resident_id"))
        if not raw_id:
            raise RowError("resident_id", "the resident ID number is empty", "required")
        try:
            rid = resident_id.parse(raw_id, today=self.today)
        except resident_id.InvalidResidentId as exc:
            raise RowError("resident_id", str(exc)) from None
        if rid.converted_from_15:
            warnings.append(("resident_id", "15-digit resident ID number converted to 18 digits"))
        patient_id = patient_id_for_resident_id(rid.value)

        # 出生日期 birth date: the ID number's date wins; a disagreement is reported
        try:
            birth = parse_date(v.get("birth_date"))
        except ValueError as exc:
            raise RowError("birth_date", f"birth date {exc}") from None
        # 性别 sex
        sex_text = cell_text(v.get("sex"))
        gender = None
        if sex_text:
            found = self.sex.lookup(sex_text)
            if found is None:
                warnings.append(
                    ("sex", f"sex {sex_text!r} is not 男 or 女; taken from the ID number")
                )
            else:
                gender = found.code
        for problem in resident_id.consistency_issues(
            rid, birth.isoformat() if birth else None, gender
        ):
            warnings.append(("birth_date" if "birth" in problem else "sex", problem))

        # 优抚类别 beneficiary category
        category_text = cell_text(v.get("category"))
        if not category_text:
            raise RowError("category", "the beneficiary category is empty", "required")
        category = self.category.lookup(category_text)
        if category is None:
            raise RowError(
                "category", f"unknown beneficiary category {category_text!r}", "code-invalid"
            )

        # 伤残等级 disability grade, 伤残性质 nature
        grade = None
        grade_text = cell_text(v.get("disability_grade"))
        if grade_text:
            found = self.grade.lookup(grade_text.replace(" ", ""))
            if found is None:
                raise RowError(
                    "disability_grade",
                    f"disability grade {grade_text!r} is not one of 一级…十级",
                    "code-invalid",
                )
            grade = int(found.code)
        nature = None
        nature_text = cell_text(v.get("disability_nature"))
        if nature_text:
            nature = self.nature.lookup(nature_text)
            if nature is None:
                raise RowError(
                    "disability_nature",
                    f"disability nature {nature_text!r} is not 因战, 因公 or 因病",
                    "code-invalid",
                )
        if category.code == "disabled-serviceman" and grade is None:
            warnings.append(("disability_grade", "a disabled serviceman without a grade"))
        if nature is not None and nature.code == "illness" and grade is not None and grade > 6:
            # Illness-related disability is pensioned only at grades 1-6 (DOMAIN 5.2).
            warnings.append(
                (
                    "disability_grade",
                    f"grade {grade} with nature 因病 earns no pension (grades 1-6)",
                )
            )

        # 抚恤定补标准(元/月) pension standard
        pension = None
        pension_text = cell_text(v.get("pension"))
        if pension_text:
            try:
                pension = int(pension_text.replace(",", ""))
            except ValueError:
                raise RowError(
                    "pension", f"pension standard {pension_text!r} is not a whole number of yuan"
                ) from None
            if pension < 0:
                raise RowError("pension", f"pension standard {pension} is negative")

        # 状态 benefit status (empty: 正常)
        status_text = cell_text(v.get("status"))
        status = self.status.lookup(status_text or "正常")
        if status is None:
            raise RowError(
                "status", f"status {status_text!r} is not 正常, 暂停 or 注销", "code-invalid"
            )

        # 待遇开始/停止日期 valid period (optional columns)
        valid_from = _date_field(v, "valid_from")
        valid_to = _date_field(v, "valid_to")

        patient = self._patient(patient_id, rid, name, gender, birth, v)
        status_obs = self._veteran_status(
            patient_id,
            category,
            category_text,
            status,
            grade,
            nature,
            pension,
            v,
            valid_from,
            valid_to,
        )
        resources = [patient, status_obs]
        for programme in self.programmes:
            resources.append(
                self._episode(programme, patient_id, status.code, valid_from, valid_to)
            )
        for resource in resources:
            with_content_hash(resource)
        return MappedRow(patient_id, resources, warnings)

    # -- resources -----------------------------------------------------------

    def _patient(self, patient_id, rid, name, gender, birth, v) -> dict[str, Any]:
        human: dict[str, Any] = {"use": "official", "text": name}
        family, given = split_chinese_name(name)
        if family:
            human["family"] = family
            human["given"] = [given]
        patient: dict[str, Any] = {
            "resourceType": "Patient",
            "id": patient_id,
            "identifier": [{"use": "official", "system": RESIDENT_ID_SYSTEM, "value": rid.value}],
            "name": [human],
            "gender": gender or rid.sex,
            "birthDate": rid.birth_date.isoformat(),
        }
        phone = cell_text(v.get("phone"))  # 联系电话
        if phone:
            digits = _PHONE_DIGITS.sub("", phone)
            telecom = {"system": "phone", "value": digits}
            if _MOBILE.match(digits):
                telecom["use"] = "mobile"
            patient["telecom"] = [telecom]
        address = cell_text(v.get("address"))  # 户籍地址 registered address
        if address:
            patient["address"] = [{"use": "home", "type": "physical", "text": address}]
        return patient

    def _veteran_status(
        self,
        patient_id,
        category,
        category_text,
        status,
        grade,
        nature,
        pension,
        v,
        valid_from,
        valid_to,
    ) -> dict[str, Any]:
        components = [
            _component(
                "benefit-status",
                "优抚对象状态 (benefit status)",
                valueCodeableConcept=_concept(
                    cs.VETERAN_BENEFIT_STATUS, status.code, status.display
                ),
            )
        ]
        if grade is not None:
            components.append(
                _component(
                    "disability-grade", "伤残等级 (disability grade 1-10)", valueInteger=grade
                )
            )
        if nature is not None:
            components.append(
                _component(
                    "disability-nature",
                    "伤残性质 (disability nature)",
                    valueCodeableConcept=_concept(
                        cs.VETERAN_DISABILITY_NATURE, nature.code, nature.display
                    ),
                )
            )
        if pension is not None:
            components.append(
                _component(
                    "pension-standard",
                    "抚恤定补标准 (pension standard, yuan per month)",
                    valueQuantity={"value": pension, "unit": "元/月"},
                )
            )
        district = cell_text(v.get("district"))  # 所属区市 responsible district
        if district:
            components.append(
                _component("district", "所属区市 (responsible district)", valueString=district)
            )
        obs: dict[str, Any] = {
            "resourceType": "Observation",
            "id": veteran_status_id(patient_id),
            "meta": {"security": [dict(s) for s in SECURITY]},
            "status": "final",
            "category": [_concept(cs.OBSERVATION_CATEGORY, "social-history", "Social History")],
            "code": _concept(cs.VETERAN_STATUS, "veteran-entitlement", "优抚对象身份"),
            "subject": {"reference": f"Patient/{patient_id}"},
        }
        number = cell_text(v.get("registry_number"))  # 优抚证号
        if number:
            obs["identifier"] = [{"system": self.registry_number_system, "value": number}]
        period = _period(valid_from, valid_to)
        if period:
            obs["effectivePeriod"] = period
        value = _concept(cs.VETERAN_CATEGORY, category.code, None)
        value["text"] = category_text
        obs["valueCodeableConcept"] = value
        obs["component"] = components
        return obs

    def _episode(self, programme, patient_id, status_code, valid_from, valid_to) -> dict[str, Any]:
        episode: dict[str, Any] = {
            "resourceType": "EpisodeOfCare",
            "id": episode_id(programme, patient_id),
            "meta": {"security": [dict(s) for s in SECURITY]},
            "status": EPISODE_STATUS[status_code],
            "type": [_concept(cs.CARE_PROGRAMME, programme, PROGRAMME_DISPLAY.get(programme))],
            "patient": {"reference": f"Patient/{patient_id}"},
        }
        if self.organization:
            episode["managingOrganization"] = dict(self.organization)
        period = _period(valid_from, valid_to)
        if period:
            episode["period"] = period
        return episode


def _date_field(values: dict[str, Any], field: str) -> dt.date | None:
    try:
        return parse_date(values.get(field))
    except ValueError as exc:
        raise RowError(field, f"date {exc}") from None


def _concept(system: str, code: str, display: str | None) -> dict[str, Any]:
    coding = {"system": system, "code": code}
    if display:
        coding["display"] = display
    return {"coding": [coding]}


def _component(code: str, display: str, **value: Any) -> dict[str, Any]:
    return {"code": _concept(cs.VETERAN_STATUS, code, display), **value}


def _period(start: dt.date | None, end: dt.date | None) -> dict[str, str] | None:
    period = {}
    if start:
        period["start"] = start.isoformat()
    if end:
        period["end"] = end.isoformat()
    return period or None
