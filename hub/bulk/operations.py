"""``$export`` at system, Patient and Group level, as the hub registers them.

Their OperationDefinitions (served at ``/fhir/OperationDefinition/{id}``) name the Bulk
Data Access IG's definitions as their ``base``; the CapabilityStatement lists them and
``instantiates`` the IG's bulk data CapabilityStatement.
"""

from __future__ import annotations

from hub.bulk.kickoff import export_kickoff
from hub.fhir.service import Result
from hub.operations import Operation
from hub.operations import OperationCall
from hub.operations import parameter

IG = "http://hl7.org/fhir/uv/bulkdata"
CAPABILITY_STATEMENT = f"{IG}/CapabilityStatement/bulk-data"

_COMMON = (
    parameter(
        "_outputFormat",
        "string",
        documentation="application/fhir+ndjson (the default), application/ndjson or ndjson",
    ),
    parameter("_since", "instant", documentation="Only resources changed after this instant"),
    parameter("_type", "string", max_="*", documentation="Comma-separated resource types"),
    parameter(
        "_typeFilter",
        "string",
        max_="*",
        documentation="Searches (Type?name=value) a resource of that type must match",
    ),
)
_PATIENT = parameter(
    "patient", "Reference", max_="*", documentation="Only these Patients (POST Parameters)"
)


def system_export(call: OperationCall) -> Result:
    return export_kickoff(call, "system")


def patient_export(call: OperationCall) -> Result:
    return export_kickoff(call, "patient")


def group_export(call: OperationCall) -> Result:
    return export_kickoff(call, "group")


def operations() -> list[Operation]:
    note = (
        " (Bulk Data Access v2; needs 'Prefer: respond-async'; 202 and a status URL in"
        " Content-Location)"
    )
    return [
        Operation(
            "export",
            system_export,
            levels=("system",),
            definition=f"{IG}/OperationDefinition/export",
            instantiates=CAPABILITY_STATEMENT,
            documentation="Export every resource the caller may see as NDJSON files" + note,
            parameters=_COMMON,
        ),
        Operation(
            "export",
            patient_export,
            levels=("type",),
            types=("Patient",),
            definition=f"{IG}/OperationDefinition/patient-export",
            documentation="Export the Patient compartments' resources as NDJSON files" + note,
            parameters=(*_COMMON, _PATIENT),
        ),
        Operation(
            "export",
            group_export,
            levels=("instance",),
            types=("Group",),
            definition=f"{IG}/OperationDefinition/group-export",
            documentation="Export the resources of a Group's members' compartments (household"
            " and village Groups too) as NDJSON files" + note,
            parameters=(*_COMMON, _PATIENT),
        ),
    ]
