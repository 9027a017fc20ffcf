"""URIs of the hub's own code systems, identifier systems and extensions.

Every system the hub defines is named here once, so adapters, the
classification and reports agree (DOMAIN 3.5: one table of system URIs).
The codes are documented in ``docs/five-colour.md`` and
``plugins/va_registry/README.md``.
"""

# Security labels (meta.security).
CONFIDENTIALITY = "http://terminology.hl7.org/CodeSystem/v3-Confidentiality"
SENSITIVITY = "urn:fhirhub:codesystem:sensitivity"  # hub sensitivity categories
RESTRICTED = {"system": CONFIDENTIALITY, "code": "R", "display": "restricted"}
VETERAN_SENSITIVITY = {
    "system": SENSITIVITY,
    "code": "veteran-status",
    "display": "特定身份：优抚对象/退役军人身份 (specific identity, PIPL Art. 28)",
}
MENTAL_HEALTH_SENSITIVITY = {
    "system": SENSITIVITY,
    "code": "mental-health",
    "display": "严重精神障碍 (severe mental disorder, Mental Health Law Art. 4)",
}
HIV_SENSITIVITY = {
    "system": SENSITIVITY,
    "code": "hiv",
    "display": "艾滋病 (HIV, AIDS regulations Art. 39)",
}

# Veteran status (plugins/va_registry).
VETERAN_STATUS = "urn:fhirhub:codesystem:veteran-status"  # Observation.code and component codes
VETERAN_CATEGORY = "urn:fhirhub:codesystem:veteran-category"
VETERAN_DISABILITY_NATURE = "urn:fhirhub:codesystem:veteran-disability-nature"
VETERAN_BENEFIT_STATUS = "urn:fhirhub:codesystem:veteran-benefit-status"

# Programmes and registers people are enrolled in (EpisodeOfCare.type) and the programme a
# follow-up Encounter belongs to (Encounter.type).
CARE_PROGRAMME = "urn:fhirhub:codesystem:care-programme"
FAMILY_DOCTOR_CONTRACT = "family-doctor-contract"  # its code for a signed family-doctor contract
PROGRAMME_HYPERTENSION = "hypertension"
PROGRAMME_DIABETES = "diabetes"
PROGRAMME_SEVERE_MENTAL_DISORDER = "severe-mental-disorder-register"

# Kinds of Encounter the audits count that no standard code names (Encounter.type).
ENCOUNTER_TYPE = "urn:fhirhub:codesystem:encounter-type"
HEALTH_CHECK = "health-check"  # 健康体检
# Rounds and consultations of the veterans programmes (远程/入户巡诊, 专家会诊; docs/rounds.md).
REMOTE_ROUND = "remote-round"
HOME_ROUND = "home-round"
EXPERT_CONSULTATION = "expert-consultation"
ROUND_KINDS = (REMOTE_ROUND, HOME_ROUND, EXPERT_CONSULTATION)

# Family-doctor service packages (EpisodeOfCare.extension[service-package].valueCoding).
SERVICE_PACKAGE = "urn:fhirhub:codesystem:service-package"
SERVICE_PACKAGE_EXTENSION = "urn:fhirhub:extension:service-package"
PACKAGE_BASIC = "basic"
PACKAGE_INTERMEDIATE = "intermediate"
PACKAGE_ADVANCED = "advanced"
PACKAGE_PERSONALISED = "personalised"

# Contracted services and newborn screens without a confirmed LOINC code (DOMAIN 2.8).
SERVICE_ITEM = "urn:fhirhub:codesystem:service-item"
NEWBORN_SCREENING = "urn:fhirhub:codesystem:newborn-screening"

# Five-colour classification (hub/colours.py).
FIVE_COLOUR = "urn:fhirhub:codesystem:five-colour"
FIVE_COLOUR_DISPLAYED = "urn:fhirhub:extension:five-colour-displayed"

# Binary content kept apart from the resource JSON (hub/fhir/binaries.py): the extension on
# Binary.data (``_data``) naming the SHA-256 of the bytes in the blob store.
BINARY_CONTENT_EXTENSION = "urn:fhirhub:extension:binary-content"

# Items of the personal basic information form without an ICD code (DOMAIN 2.2).
HEALTH_RECORD_ITEM = "urn:fhirhub:codesystem:health-record-item"

# Grouping (hub/identity/households.py).
GROUP_KIND = "urn:fhirhub:codesystem:group-kind"
VILLAGE_DIVISION = "urn:fhirhub:identifier:village-division"  # 12-digit statistical division code
HOUSEHOLD_NUMBER = "urn:fhirhub:identifier:household-number"

# Kinds of issue the ingest pipeline reports beyond the FHIR issue types
# (OperationOutcome.issue.details.coding): a local code no code map holds.
INGEST_ISSUE = "urn:fhirhub:codesystem:ingest-issue"
UNMAPPED_CODE = "unmapped-code"

OBSERVATION_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
ICD10_SYSTEMS = (
    "http://hl7.org/fhir/sid/icd-10",
    "http://hl7.org/fhir/sid/icd-10-cn",
    "urn:oid:2.16.156.10011.2.3.3.11",
    "urn:oid:2.16.156.10011.2.3.3.11.3",
)

# The codes of the hub's own systems that its code reads or writes, by system. Each system is
# defined once by a CodeSystem resource (profiles/fhirhub/CodeSystem-*.json,
# mappings/five-colour/CodeSystem-five-colour.json); tests/test_vocabulary.py checks this table,
# and every hub system and code named in the modules and data files, against those resources.
CODES: dict[str, tuple[str, ...]] = {
    SENSITIVITY: (
        VETERAN_SENSITIVITY["code"],
        MENTAL_HEALTH_SENSITIVITY["code"],
        HIV_SENSITIVITY["code"],
    ),
    CARE_PROGRAMME: (
        FAMILY_DOCTOR_CONTRACT,
        PROGRAMME_HYPERTENSION,
        PROGRAMME_DIABETES,
        PROGRAMME_SEVERE_MENTAL_DISORDER,
    ),
    ENCOUNTER_TYPE: (HEALTH_CHECK, *ROUND_KINDS),
    SERVICE_PACKAGE: (PACKAGE_BASIC, PACKAGE_INTERMEDIATE, PACKAGE_ADVANCED, PACKAGE_PERSONALISED),
    INGEST_ISSUE: (UNMAPPED_CODE,),
}

# OAuth clients (SMART apps, backend services) by client_id, e.g. the app a Consent permits.
OAUTH_CLIENT = "urn:fhirhub:identifier:oauth-client"
