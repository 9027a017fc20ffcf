"""The document types the adapter reads and writes, keyed by type code and template.

Each type names its template OID, its sections in document order, which data
elements (and resource kinds) sit in which section, and what the structural
checker requires of it. Dispatch inbound is by ``code/@code`` (document type),
falling back to ``templateId/@root``; outbound by the type code.
"""

from __future__ import annotations

import dataclasses

from fhirhub_plugins.cda import vocab
from hub.plugin_api import codesystems as cs


@dataclasses.dataclass(frozen=True)
class DocType:
    code: str  # HSDA00.01 ... (code system 2.16.156.10011.2.4)
    template: str  # templateId/@root
    title: str
    standard: str
    # section key -> data elements (DE codes) or resource kinds placed there, in order
    sections: tuple[tuple[str, tuple[str, ...]], ...]
    encounter: str | None = None  # None | "followup" | ActCode class (AMB, IMP)
    encounter_type: str | None = None
    # The hub code the audits read in Encounter.type (docs/completeness.md): the programme of
    # a follow-up (care-programme), the kind of a health check (encounter-type).
    encounter_coding: tuple[str, str] | None = None
    required_sections: tuple[str, ...] = ()
    required_elements: tuple[str, ...] = ()
    needs_encompassing_encounter: bool = False
    # A sensitivity category (hub.codesystems) every clinical resource of the document carries
    # whatever its confidentialityCode says, e.g. mental health (Mental Health Law Art. 4).
    sensitivity: dict | None = None

    def section_of(self, item: str) -> str | None:
        for key, items in self.sections:
            if item in items:
                return key
        return None


_VITALS = (
    "DE04.10.186.00",
    "DE04.10.118.00",
    "DE04.10.081.00",
    "bp",
    "DE04.10.167.00",
    "DE04.10.188.00",
    "DE04.10.122.00",
    "DE05.10.075.00",
    "DE04.10.206.00",
)
_LIFESTYLE = (
    "DE03.00.073.00",
    "DE03.00.053.00",
    "DE03.00.076.00",
    "DE03.00.054.00",
    "DE03.00.058.00",
    "DE03.00.056.00",
)
_LABS = (
    "DE04.50.049.00",
    "DE04.50.149.00",
    "DE04.50.115.00",
    "DE04.50.106.00",
    "DE04.50.068.00",
    "DE04.50.098.00",
    "DE04.50.132.00",
    "DE04.50.084.00",
    "DE04.50.083.00",
    "DE04.50.092.00",
    "DE04.50.093.00",
    "DE04.50.082.00",
)
_FOLLOWUP = (
    ("followup", ("DE06.00.108.00", "DE06.00.109.00")),
    ("symptoms", ("DE04.01.116.00",)),
    ("vitals", _VITALS),
    ("lifestyle", _LIFESTYLE),
    ("labs", _LABS),
    ("medications", ("medication",)),
    ("assessment", ("DE05.10.066.00",)),
)

DOC_TYPES: dict[str, DocType] = {
    d.code: d
    for d in (
        DocType(
            "HSDA00.01",
            "2.16.156.10011.2.1.1.1",
            "个人基本健康信息登记",
            "WS/T 483.1",
            (
                ("studies", ("DE04.50.001.00", "DE04.50.010.00")),
                ("payment", ("DE07.00.007.00",)),
                ("allergies", ("DE05.01.022.00",)),
                ("exposure", ("DE03.00.021.00",)),
                (
                    "past-illness",
                    ("DE02.10.021.00", "DE02.10.061.00", "DE02.10.068.00", "DE06.00.107.00"),
                ),
                ("family", ("DE02.10.095.00",)),
                ("hereditary", ("DE02.10.026.00",)),
                ("disability", ("DE05.10.006.00",)),
                (
                    "environment",
                    (
                        "DE03.00.006.00",
                        "DE03.00.050.00",
                        "DE03.00.082.00",
                        "DE03.00.005.00",
                        "DE03.00.049.00",
                    ),
                ),
            ),
            required_sections=(),
        ),
        DocType(
            "HSDB04.01",
            "2.16.156.10011.2.1.1.12",
            "高血压患者随访服务",
            "WS/T 483.12",
            _FOLLOWUP,
            encounter="followup",
            encounter_type="高血压患者随访",
            encounter_coding=(cs.CARE_PROGRAMME, cs.PROGRAMME_HYPERTENSION),
            required_sections=("followup", "vitals"),
            required_elements=("DE06.00.108.00", "DE04.10.174.00", "DE04.10.176.00"),
        ),
        DocType(
            "HSDB04.02",
            "2.16.156.10011.2.1.1.13",
            "2型糖尿病患者随访服务",
            "WS/T 483.13",
            _FOLLOWUP,
            encounter="followup",
            encounter_type="2型糖尿病患者随访",
            encounter_coding=(cs.CARE_PROGRAMME, cs.PROGRAMME_DIABETES),
            required_sections=("followup", "vitals"),
            required_elements=("DE06.00.108.00",),
        ),
        # WS/T 483.15 重性精神疾病患者随访服务 (严重精神障碍患者随访服务记录表). Neither its
        # type code nor its template is quoted by the standard texts at hand: the template
        # follows the part number as .12/.13/.16 do (2.16.156.10011.2.1.1.15), the type code
        # the HSDB04 series of the disease-management documents (HSDB04.01 hypertension,
        # .02 diabetes, .03 the severe-mental-disorder registration of 483.14, .04 this
        # follow-up; .03 and .04 as public platform code names them). Either identifies it.
        DocType(
            "HSDB04.04",
            "2.16.156.10011.2.1.1.15",
            "重性精神疾病患者随访服务",
            "WS/T 483.15",
            (
                ("followup", ("DE06.00.108.00", "DE06.00.109.00")),
                ("symptoms", (vocab.DE_SMD_RISK_GRADE,)),
                ("medications", ("medication",)),
                ("assessment", ("DE05.10.066.00",)),
            ),
            encounter="followup",
            encounter_type="严重精神障碍患者随访",
            encounter_coding=(cs.CARE_PROGRAMME, cs.PROGRAMME_SEVERE_MENTAL_DISORDER),
            required_sections=("followup", "symptoms"),
            required_elements=("DE06.00.108.00", vocab.DE_SMD_RISK_GRADE),
            sensitivity=cs.MENTAL_HEALTH_SENSITIVITY,
        ),
        DocType(
            "HSDC00.01",
            "2.16.156.10011.2.1.1.16",
            "成人健康体检",
            "WS/T 483.16",
            (
                ("symptoms", ("DE04.01.116.00",)),
                ("vitals", _VITALS),
                ("lifestyle", _LIFESTYLE),
                ("labs", _LABS),
                ("assessment", ("DE04.10.143.00",)),
            ),
            encounter="AMB",
            encounter_type="健康体检",
            encounter_coding=(cs.ENCOUNTER_TYPE, cs.HEALTH_CHECK),
            required_sections=("vitals",),
            needs_encompassing_encounter=True,
        ),
        DocType(
            "HSDC00.02",
            "2.16.156.10011.2.1.1.17",
            "门诊摘要",
            "WS/T 483.17",
            (
                ("complaint", ("DE04.01.119.00",)),
                ("diagnoses", ("DE05.01.024.00",)),
                ("procedures", ("procedure",)),
                ("medications", ("medication",)),
            ),
            encounter="AMB",
            encounter_type="门诊",
            required_sections=("diagnoses",),
            required_elements=("DE05.01.024.00",),
            needs_encompassing_encounter=True,
        ),
        DocType(
            "HSDC00.03",
            "2.16.156.10011.2.1.1.18",
            "住院摘要",
            "WS/T 483.18",
            (
                ("complaint", ("DE04.01.119.00",)),
                ("discharge-diagnoses", ("DE05.01.024.00",)),
                ("procedures", ("procedure",)),
                ("discharge-medications", ("medication",)),
            ),
            encounter="IMP",
            encounter_type="住院",
            required_sections=("discharge-diagnoses",),
            required_elements=("DE05.01.024.00",),
            needs_encompassing_encounter=True,
        ),
    )
}

BY_TEMPLATE = {d.template: d for d in DOC_TYPES.values()}


def identify(code: str | None, templates: list[str]) -> DocType | None:
    """The document type from ``code/@code``, else from any ``templateId/@root``."""
    if code and code in DOC_TYPES:
        return DOC_TYPES[code]
    for root in templates:
        if root in BY_TEMPLATE:
            return BY_TEMPLATE[root]
    return None


def section_key(code: str | None, title: str | None, doc_type: DocType) -> str | None:
    """The section key for a section's LOINC code (or title for uncoded CN sections)."""
    for key, _items in doc_type.sections:
        section = vocab.SECTIONS[key]
        if code and section.code == code:
            return key
        if not code and title and section.title == title:
            return key
    return None
