"""OIDs, section codes and the data-element catalogue the adapter reads and writes.

Sources: research/integration.md §C (template OIDs, identifier OIDs, value-domain
OIDs) and DOMAIN.md §3-§4. Entries marked ``verify`` follow public implementer
code rather than the standard's text; confirm them with the platform vendor
(integration.md §C.10) and change them here, in one place.
"""

from __future__ import annotations

import dataclasses

# -- Identifier OIDs (id/@root) ------------------------------------------------
OID_DOCUMENT = "2.16.156.10011.1.1"  # 文档流水号
OID_HEALTH_RECORD = "2.16.156.10011.1.2"  # 健康档案标识号
OID_RESIDENT_ID = "2.16.156.10011.1.3"  # 公民身份号码
OID_SIGNER = "2.16.156.10011.1.4"  # 医务人员 (legalAuthenticator)
OID_ORGANIZATION = "2.16.156.10011.1.5"  # 医疗卫生机构
OID_ORGANIZATION_483 = "2.16.156.10011.1.6"  # custodian seen in WS/T 483 instances
OID_AUTHOR = "2.16.156.10011.1.7"  # 文档作者 / 建档者
OID_OUTPATIENT_NO = "2.16.156.10011.1.11"  # 门(急)诊号
OID_INPATIENT_NO = "2.16.156.10011.1.12"  # 住院号
OID_CASE_NO = "2.16.156.10011.1.13"  # 病案号
OID_HEALTH_CARD = "2.16.156.10011.1.19"  # 居民健康卡号

# -- Code systems --------------------------------------------------------------
OID_DOC_TYPE = "2.16.156.10011.2.4"  # 卫生信息共享文档规范编码体系
OID_DE = "2.16.156.10011.2.2.1"  # 卫生信息数据元目录 (WS 363)
OID_SEX = "2.16.156.10011.2.3.3.4"  # GB/T 2261.1
OID_MARITAL = "2.16.156.10011.2.3.3.5"  # GB/T 2261.2
OID_ETHNICITY = "2.16.156.10011.2.3.3.3"  # GB 3304
OID_EDUCATION = "2.16.156.10011.2.3.3.6"  # GB/T 4658
OID_OCCUPATION = "2.16.156.10011.2.3.3.7"  # GB/T 6565
OID_RELATIONSHIP = "2.16.156.10011.2.3.3.8"  # GB/T 4761 家庭关系
OID_ICD10 = "2.16.156.10011.2.3.3.11"  # ICD-10 (sub-arcs .11.1/.2/.3/.5 accepted)
OID_ICD9CM3 = "2.16.156.10011.2.3.3.12"  # ICD-9-CM-3 手术操作
OID_LOINC = "2.16.840.1.113883.6.1"
OID_CONFIDENTIALITY = "2.16.840.1.113883.5.25"
OID_TYPE_ID = "2.16.840.1.113883.1.3"
OID_ROUTE = "2.16.156.10011.2.3.1.158"  # 用药途径

DE_SYSTEM = f"urn:oid:{OID_DE}"
DOC_TYPE_SYSTEM = f"urn:oid:{OID_DOC_TYPE}"
LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
CONFIDENTIALITY = "http://terminology.hl7.org/CodeSystem/v3-Confidentiality"
ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
NULL_FLAVOR = "http://terminology.hl7.org/CodeSystem/v3-NullFlavor"
OBS_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
CONDITION_CATEGORY = "http://terminology.hl7.org/CodeSystem/condition-category"
ROLE_CODE = "http://terminology.hl7.org/CodeSystem/v3-RoleCode"


def urn(oid: str) -> str:
    return f"urn:oid:{oid}"


def oid_of(system: str | None) -> str | None:
    """``urn:oid:1.2.3`` -> ``1.2.3``; other system URIs map through ``SYSTEM_OIDS``."""
    if not system:
        return None
    if system.startswith("urn:oid:"):
        return system[8:]
    return SYSTEM_OIDS.get(system)


# Code systems with canonical FHIR URIs (C-CDA documents and LOINC/SNOMED in CN documents).
OID_SYSTEMS = {
    OID_LOINC: LOINC,
    "2.16.840.1.113883.6.96": "http://snomed.info/sct",
    "2.16.840.1.113883.6.88": "http://www.nlm.nih.gov/research/umls/rxnorm",
    "2.16.840.1.113883.12.292": "http://hl7.org/fhir/sid/cvx",
    "2.16.840.1.113883.6.59": "http://hl7.org/fhir/sid/cvx",  # the older CVX OID, still sent
    "2.16.840.1.113883.6.90": "http://hl7.org/fhir/sid/icd-10-cm",
    "2.16.840.1.113883.6.3": "http://hl7.org/fhir/sid/icd-10",
    "2.16.840.1.113883.6.103": "http://hl7.org/fhir/sid/icd-9-cm",
    "2.16.840.1.113883.6.104": "http://hl7.org/fhir/sid/icd-9-cm",
    "2.16.840.1.113883.6.12": "http://www.ama-assn.org/go/cpt",
    "2.16.840.1.113883.4.9": "http://fdasis.nlm.nih.gov",
    "2.16.840.1.113883.3.26.1.1": "http://ncithesaurus-stage.nci.nih.gov",
    "2.16.840.1.113883.6.8": UCUM,
    "2.16.840.1.113883.5.1": "http://terminology.hl7.org/CodeSystem/v3-AdministrativeGender",
    "2.16.840.1.113883.5.2": "http://terminology.hl7.org/CodeSystem/v3-MaritalStatus",
    "2.16.840.1.113883.5.4": ACT_CODE,
    "2.16.840.1.113883.5.83": "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation",
    "2.16.840.1.113883.5.111": ROLE_CODE,
    "2.16.840.1.113883.5.25": CONFIDENTIALITY,
    "2.16.840.1.113883.4.1": "http://hl7.org/fhir/sid/us-ssn",
}
SYSTEM_OIDS = {uri: oid for oid, uri in OID_SYSTEMS.items()}
SYSTEM_OIDS["http://hl7.org/fhir/sid/icd-9-cm"] = "2.16.840.1.113883.6.103"
SYSTEM_OIDS["http://hl7.org/fhir/sid/cvx"] = "2.16.840.1.113883.12.292"


def system_uri(oid: str) -> str:
    """The FHIR system URI for a code-system OID (``urn:oid:`` when it has no canonical URI)."""
    return OID_SYSTEMS.get(oid) or f"urn:oid:{oid}"


# Extensions the adapter writes (documented in plugins/cda/README.md).
EXT_SOURCE_TIME = "urn:fhirhub:extension:cda-document-time"  # meta: header effectiveTime
EXT_SOURCE_VERSION = "urn:fhirhub:extension:cda-document-version"  # meta: setId#versionNumber
EXT_ETHNICITY = "urn:fhirhub:extension:ethnicity"
EXT_EDUCATION = "urn:fhirhub:extension:education"
EXT_OCCUPATION = "urn:fhirhub:extension:occupation"
EXT_SEX_CODE = "urn:fhirhub:extension:gbt-2261-1-sex"
TAG_DOC_TYPE = DOC_TYPE_SYSTEM


@dataclasses.dataclass(frozen=True)
class ValueDomain:
    """A WS 364 / GB code table: its OID, the code map that names its codes."""

    oid: str
    code_map: str
    name: str


# Value domains (CD values).  ``verify``: OID taken from implementer code.
DOMAINS = {
    "abo": ValueDomain("2.16.156.10011.2.3.1.85", "cda-abo", "ABO血型代码表"),
    "rh": ValueDomain("2.16.156.10011.2.3.1.250", "cda-rh", "Rh(D)血型代码表"),
    "payment": ValueDomain(
        "2.16.156.10011.2.3.1.197", "cda-payment-method", "医疗费用支付方式代码表"
    ),
    "allergen": ValueDomain(
        "2.16.156.10011.2.3.1.15", "cda-drug-allergen", "药物过敏源代码表"
    ),  # verify
    "exposure": ValueDomain("2.16.156.10011.2.3.1.16", "cda-exposure", "暴露史代码表"),  # verify
    "past-disease": ValueDomain(
        "2.16.156.10011.2.3.1.12", "cda-past-disease", "既往常见疾病种类代码表"
    ),
    # 家族史 uses the same WS 364 table as 既往史 (a form's own option numbers: site override)
    "family-disease": ValueDomain(
        "2.16.156.10011.2.3.1.12", "cda-past-disease", "既往常见疾病种类代码表"
    ),
    "disability": ValueDomain("2.16.156.10011.2.3.1.139", "cda-disability", "残疾情况代码表"),
    "kitchen": ValueDomain(
        "2.16.156.10011.2.3.2.41", "cda-kitchen-exhaust", "厨房排风设施类别代码表"
    ),
    "fuel": ValueDomain("2.16.156.10011.2.3.2.42", "cda-fuel", "燃料类型类别代码表"),
    "water": ValueDomain("2.16.156.10011.2.3.2.43", "cda-water", "饮水类别代码表"),
    "toilet": ValueDomain("2.16.156.10011.2.3.2.44", "cda-toilet", "厕所类别代码表"),
    "livestock": ValueDomain(
        "2.16.156.10011.2.3.2.45", "cda-livestock-pen", "禽畜栏类别代码表"
    ),  # verify
    "followup-mode": ValueDomain("2.16.156.10011.2.3.1.183", "cda-followup-mode", "随访方式代码表"),
    "followup-class": ValueDomain(
        "2.16.156.10011.2.3.2.32", "cda-followup-class", "随访评价结果代码表"
    ),  # verify
    "symptom": ValueDomain("2.16.156.10011.2.3.2.35", "cda-symptom", "症状代码表"),  # verify
    "smoking": ValueDomain(
        "2.16.156.10011.2.3.1.19", "cda-smoking-status", "吸烟状况代码表"
    ),  # verify
    "drinking": ValueDomain(
        "2.16.156.10011.2.3.1.20", "cda-drinking-frequency", "饮酒频率代码表"
    ),  # verify
    "exercise": ValueDomain(
        "2.16.156.10011.2.3.1.21", "cda-exercise-frequency", "身体活动频率代码表"
    ),  # verify
    "salt": ValueDomain("2.16.156.10011.2.3.2.25", "cda-salt-intake", "摄盐量分级代码表"),
}
DOMAIN_BY_OID = {d.oid: d for d in DOMAINS.values()}


@dataclasses.dataclass(frozen=True)
class Section:
    key: str
    code: str | None  # LOINC section code, or None for the uncoded CN sections
    title: str


SECTIONS = {
    s.key: s
    for s in (
        Section("studies", "30954-2", "STUDIES SUMMARY"),
        Section("payment", "48768-6", "PAYMENT SOURCES"),
        Section("allergies", "48765-2", "Allergies, adverse reactions, alerts"),
        Section("exposure", "10161-8", "HISTORY OF OCCUPATION"),
        Section("past-illness", "11348-0", "HISTORY OF PAST ILLNESS"),
        Section("family", "10157-6", "HISTORY OF FAMILY MEMBER DISEASES"),
        Section("hereditary", None, "遗传病史"),
        Section("disability", "8671-0", "FUNCTIONAL STATUS"),  # verify code
        Section("environment", None, "生活环境"),
        Section("followup", None, "随访"),
        Section("symptoms", "11450-4", "PROBLEM LIST"),
        Section("vitals", "8716-3", "VITAL SIGNS"),
        Section("lifestyle", "29762-2", "SOCIAL HISTORY"),
        Section("labs", "30954-2", "RELEVANT DIAGNOSTIC TESTS AND/OR LABORATORY DATA"),
        Section("medications", "10160-0", "HISTORY OF MEDICATION USE"),
        Section("assessment", "51848-0", "ASSESSMENT"),
        Section("complaint", "10154-3", "CHIEF COMPLAINT"),
        Section("diagnoses", "29548-5", "DIAGNOSIS"),
        Section("discharge-diagnoses", "11535-2", "HOSPITAL DISCHARGE DX"),
        Section("procedures", "47519-4", "HISTORY OF PROCEDURES"),
        Section("discharge-medications", "10183-2", "HOSPITAL DISCHARGE MEDICATIONS"),
    )
}


# Section LOINC code -> the Observation category of entries kept as is (unknown data elements).
SECTION_CATEGORIES = {
    "30954-2": "laboratory",  # studies / laboratory data
    "8716-3": "vital-signs",
    "29762-2": "social-history",
    "10161-8": "social-history",  # occupational exposure
    "11450-4": "exam",  # symptoms
    "51848-0": "exam",  # assessment (physical examination findings)
    "8671-0": "survey",  # functional status
}


@dataclasses.dataclass(frozen=True)
class Element:
    """One WS 363 data element as an ``observation`` entry maps it.

    ``kind`` picks the FHIR target: ``obs:<category>`` an Observation of that
    category (its LOINC from the code map ``cda-data-element-loinc``), or a
    named resource handler (``condition``, ``procedure`` ...).
    ``domain`` names the value domain of a CD value, ``unit`` the unit a PQ is
    written with.
    """

    de: str
    name: str
    kind: str
    value: str  # CD | PQ | ST | BL | TS | INT
    domain: str | None = None
    unit: str | None = None
    item: str | None = None  # registration-form item (hub.codesystems.HEALTH_RECORD_ITEM)


def _e(*args, **kw) -> Element:
    return Element(*args, **kw)


# 危险性分级 (risk grade 0-5) of the severe-mental-disorder follow-up. Its WS 364 value
# domain is CV05.10.013 (重性精神疾病患者危险性分级代码表, as implementer code names it);
# the WS 363 element number is not in the sources at hand: read under the number of its
# domain (``verify``; a site that sends another sets ``data_element_aliases``).
DE_SMD_RISK_GRADE = "DE05.10.013.00"
SMD_RISK_GRADES = range(6)

ELEMENTS = {
    e.de: e
    for e in (
        # 483.1 registration
        _e("DE04.50.001.00", "ABO血型代码", "obs:laboratory", "CD", "abo"),
        _e("DE04.50.010.00", "Rh血型代码", "obs:laboratory", "CD", "rh"),
        _e("DE07.00.007.00", "医疗费用支付方式代码", "coverage", "CD", "payment"),
        _e("DE05.01.022.00", "药物过敏源", "allergy", "CD", "allergen"),
        _e("DE03.00.021.00", "环境危险因素暴露类别代码", "obs:social-history", "CD", "exposure"),
        _e("DE02.10.021.00", "既往患病种类代码", "condition:past", "CD", "past-disease"),
        _e("DE02.10.061.00", "手术史", "procedure:surgery", "ST"),
        _e("DE02.10.068.00", "外伤名称", "condition:trauma", "ST"),
        _e("DE06.00.107.00", "输血原因", "procedure:transfusion", "ST"),
        _e("DE02.10.095.00", "家族性疾病名称代码", "family", "CD", "family-disease"),
        _e("DE02.10.026.00", "遗传性疾病史", "condition:hereditary", "ST"),
        _e("DE05.10.006.00", "残疾情况代码", "obs:survey", "CD", "disability", item="disability"),
        _e("DE03.00.006.00", "家庭厨房排风设施类别代码", "obs:social-history", "CD", "kitchen"),
        _e("DE03.00.050.00", "家庭燃料类型类别代码", "obs:social-history", "CD", "fuel"),
        _e("DE03.00.082.00", "家庭饮水类别代码", "obs:social-history", "CD", "water"),
        _e("DE03.00.005.00", "家庭厕所类别代码", "obs:social-history", "CD", "toilet"),
        _e("DE03.00.049.00", "家庭禽畜栏类别", "obs:social-history", "CD", "livestock"),
        # follow-ups
        _e("DE06.00.108.00", "随访方式", "encounter:followup", "CD", "followup-mode"),
        _e("DE06.00.109.00", "下次随访日期", "appointment", "TS"),
        _e("DE04.01.116.00", "症状代码", "obs:exam", "CD", "symptom"),
        _e("DE05.10.066.00", "此次随访分类", "obs:survey", "CD", "followup-class"),
        _e(DE_SMD_RISK_GRADE, "危险性分级", "risk-grade", "INT"),
        # vital signs (organizers hold blood pressure)
        _e("DE04.10.174.00", "收缩压", "bp:systolic", "PQ", unit="mmHg"),
        _e("DE04.10.176.00", "舒张压", "bp:diastolic", "PQ", unit="mmHg"),
        _e("DE04.10.186.00", "体温", "obs:vital-signs", "PQ", unit="℃"),
        _e("DE04.10.118.00", "脉率", "obs:vital-signs", "PQ", unit="次/min"),
        _e("DE04.10.081.00", "呼吸频率", "obs:vital-signs", "PQ", unit="次/min"),
        _e("DE04.10.206.00", "心率", "obs:vital-signs", "PQ", unit="次/min"),
        _e("DE04.10.167.00", "身高", "obs:vital-signs", "PQ", unit="cm"),
        _e("DE04.10.188.00", "体重", "obs:vital-signs", "PQ", unit="kg"),
        _e("DE04.10.122.00", "腰围", "obs:vital-signs", "PQ", unit="cm"),
        _e("DE05.10.075.00", "体质指数", "obs:vital-signs", "PQ", unit="kg/m2"),
        _e("DE04.10.143.00", "其他阳性体征", "obs:exam", "ST"),
        # lifestyle
        _e("DE03.00.073.00", "吸烟状况代码", "obs:social-history", "CD", "smoking"),
        _e("DE03.00.053.00", "日吸烟量", "obs:social-history", "PQ", unit="支"),
        _e("DE03.00.076.00", "饮酒频率代码", "obs:social-history", "CD", "drinking"),
        _e("DE03.00.054.00", "日饮酒量", "obs:social-history", "PQ", unit="两"),
        _e("DE03.00.058.00", "身体活动频率代码", "obs:social-history", "CD", "exercise"),
        _e("DE03.00.056.00", "摄盐情况", "obs:social-history", "CD", "salt"),
        # laboratory
        _e("DE04.50.049.00", "血红蛋白值", "obs:laboratory", "PQ", unit="g/L"),
        _e("DE04.50.149.00", "白细胞计数值", "obs:laboratory", "PQ", unit="10^9/L"),
        _e("DE04.50.115.00", "血小板计数值", "obs:laboratory", "PQ", unit="10^9/L"),
        _e("DE04.50.106.00", "空腹血糖值", "obs:laboratory", "PQ", unit="mmol/L"),
        _e("DE04.50.068.00", "糖化血红蛋白值", "obs:laboratory", "PQ", unit="%"),
        _e("DE04.50.098.00", "血清总胆固醇值", "obs:laboratory", "PQ", unit="mmol/L"),
        _e("DE04.50.132.00", "甘油三酯值", "obs:laboratory", "PQ", unit="mmol/L"),
        _e("DE04.50.084.00", "血清低密度脂蛋白胆固醇值", "obs:laboratory", "PQ", unit="mmol/L"),
        _e("DE04.50.083.00", "血清高密度脂蛋白胆固醇值", "obs:laboratory", "PQ", unit="mmol/L"),
        _e("DE04.50.092.00", "血清谷丙转氨酶值", "obs:laboratory", "PQ", unit="U/L"),
        _e("DE04.50.093.00", "血清谷草转氨酶值", "obs:laboratory", "PQ", unit="U/L"),
        _e("DE04.50.082.00", "血肌酐值", "obs:laboratory", "PQ", unit="μmol/L"),
        # summaries
        _e("DE04.01.119.00", "主诉", "encounter:reason", "ST"),
        _e("DE05.01.024.00", "诊断代码", "condition:diagnosis", "CD"),
    )
}

# Form codes meaning "none" (无): recorded as an informational issue, not as a resource.
NONE_CODES = {"past-disease": "1", "family-disease": "1", "allergen": "1"}

# ICD-10 national clinical edition 2.0 shapes (DOMAIN §6.1): E11.900, I10.x00,
# I10.x00x032; WHO 3/4-character codes (E11, E11.9) are accepted too.
ICD10_SHAPE = r"^[A-Z][0-9]{2}(\.[0-9x]{1,3}(x[0-9]{3})?)?[+*†]?$"
ICD9CM3_SHAPE = r"^[0-9]{2}(\.[0-9x]{1,2}([0-9x]{1,3})?)?$"
