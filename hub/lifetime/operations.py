"""The lifetime operations as the hub serves them (registered with the built-in operations).

``Patient/{id}/$everything``, ``Patient/{id}/$lifetime-file``, ``Patient/{id}/$colours``,
``Patient/$match``, ``Patient/$merge`` and ``Patient/$unmerge``. Handlers only read the
parameters and call the modules that do the work; every answer passes through the caller's
:class:`~hub.lifetime.visibility.Visibility`.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from typing import TYPE_CHECKING
from typing import Any

from hub import outcomes
from hub.config import setting
from hub.fhir.service import Result
from hub.identity import matching as scoring
from hub.lifetime import colours as live_colours
from hub.lifetime import document
from hub.lifetime import everything as everything_mod
from hub.lifetime import matching
from hub.lifetime import merge as merging
from hub.lifetime.visibility import Visibility
from hub.lifetime.visibility import for_call
from hub.operations import Operation
from hub.operations import OperationCall
from hub.operations import parameter
from hub.search.bundle import searchset_bytes
from hub.security import labels
from hub.storage.repository import format_instant
from hub.validation.structure import check_structure

if TYPE_CHECKING:
    from hub.kernel import Hub

HTML_TYPE = "text/html; charset=utf-8"


def everything(call: OperationCall) -> Result:
    """``Patient/{id}/$everything``: the person's records across every linked Patient."""
    the_hub = call.hub
    params = list(call.params) + _body_params(call)
    with the_hub.repo.standalone_reads() as conn:
        page = everything_mod.everything(
            conn,
            call.res_id,
            params,
            base=call.base,
            tz=_tz(the_hub),
            default_count=int(setting(the_hub.config, "EVERYTHING_COUNT")),
            max_count=int(setting(the_hub.config, "MAX_COUNT")),
            visibility=for_call(call),
        )
    return Result(200, searchset_bytes(page, call.base))


def all_records(the_hub: Hub, patient_id: str, visibility: Visibility) -> list[dict[str, Any]]:
    """Every page of ``$everything`` for one person, parsed (the document's input)."""
    out: list[dict[str, Any]] = []
    params: list[tuple[str, str]] = []
    with the_hub.repo.standalone_reads() as conn:
        while True:
            page = everything_mod.everything(
                conn, patient_id, params, base="", tz=_tz(the_hub), visibility=visibility
            )
            out.extend(e.resource() for e in page.entries)
            if page.next_cursor is None:
                return out
            params = [("_cursor", page.next_cursor)]


def lifetime_file(call: OperationCall):
    """``Patient/{id}/$lifetime-file``: the resident health record as a document Bundle,
    or as a printable page with ``_format=html``."""
    bundle = build_document(call.hub, call.res_id, call.base, for_call(call))
    if _wants_html(call):
        from hub.lifetime import html

        # A non-FHIR payload with its own Content-Type: the web layer sends it as is.
        return Result(200, html.render(bundle).encode("utf-8"), {"Content-Type": HTML_TYPE})
    return Result(200, bundle)


def build_document(the_hub: Hub, patient_id: str, base: str, visibility: Visibility) -> dict:
    resources = all_records(the_hub, patient_id, visibility)
    subject = [r for r in resources if r.get("resourceType") == "Patient" and r["id"] == patient_id]
    others = [r for r in resources if r not in subject]
    when = format_instant(dt.datetime.now(dt.UTC))
    return document.build(patient_id, subject + others, base=base, when=when)


def colours(call: OperationCall) -> Result:
    """``Patient/{id}/$colours``: the current five-colour classification and its evidence."""
    visibility = for_call(call)
    with call.hub.repo.standalone_reads() as conn:
        call.hub.service.read("Patient", call.res_id, conn)
        result = live_colours.current(conn, call.res_id)
    if visibility.restricted:
        shown = visibility.filter(
            [
                f
                for f in result.flags
                if not labels.hides(
                    (
                        (sec.get("system"), sec.get("code"))
                        for sec in (f.get("meta") or {}).get("security") or ()
                    ),
                    visibility.hidden_labels,
                )
            ]
        )
        kept = {f["id"] for f in shown}
        lost = {_flag_colour(f) for f in result.flags if f["id"] not in kept}
        result.flags = shown
        result.colours = [c for c in result.colours if c not in lost]
        result.evidence = [e for e in result.evidence if e.colour not in lost]
        result.displayed = result.colours[0] if result.colours else None
    return Result(200, live_colours.classification_parameters(call.res_id, result))


def match(call: OperationCall) -> Result:
    """``Patient/$match``: scored candidates for the Patient in the ``resource`` parameter."""
    patient = call.resource_param("resource")
    if not isinstance(patient, dict) or patient.get("resourceType") != "Patient":
        raise outcomes.bad_request(
            "$match needs a Patient in the resource parameter", "Parameters.parameter[resource]"
        )
    # It need not be complete, but the matcher reads it: it must be well formed.
    check_structure(patient)
    only_certain = str(call.param("onlyCertainMatches", "false")).lower() == "true"
    count = call.param("count")
    if count is not None and not str(count).isdecimal():
        raise outcomes.bad_request(f"count must be a whole number, not {count!r}", "count")
    the_hub = call.hub
    with the_hub.repo.standalone_reads() as conn:
        bundle = matching.match(
            the_hub.service.search_engine,
            conn,
            patient,
            only_certain=only_certain,
            count=int(count) if count is not None else None,
            thresholds=scoring.Thresholds.from_settings(the_hub.config),
            base_url=call.base,
            visibility=for_call(call),
        )
    return Result(200, bundle)


def merge(call: OperationCall) -> Result:
    """``Patient/$merge``: source-patient into target-patient (both References)."""
    source = _patient_param(call, "source-patient")
    target = _patient_param(call, "target-patient")
    reason = call.param("reason")
    prov = call.hub.repo.write(lambda w: merging.merge(w, source, target, reason=reason))
    result = call.hub.service.read("Patient", target).stored.resource()
    text = (
        f"Patient/{source} merged into Patient/{target}; "
        f"{len(prov['target'])} resource version(s) written"
        if prov
        else f"Patient/{source} was already merged into Patient/{target}; nothing changed"
    )
    params = [
        {"name": "outcome", "resource": outcomes.ok(text)},
        {"name": "result", "resource": result},
    ]
    if prov:
        params.append({"name": "provenance", "resource": prov})
    return Result(200, {"resourceType": "Parameters", "parameter": params})


def unmerge(call: OperationCall) -> Result:
    """``Patient/$unmerge``: undo a merge, by its Provenance or by the two Patients."""
    prov_ref = _ref_param(call, "provenance")
    prov_id = prov_ref.split("/")[-1] if prov_ref else None
    source = _patient_param(call, "source-patient", required=False)
    target = _patient_param(call, "target-patient", required=False)
    prov = call.hub.repo.write(
        lambda w: merging.unmerge(w, prov_id, source_id=source, target_id=target)
    )
    return Result(
        200,
        {
            "resourceType": "Parameters",
            "parameter": [
                {
                    "name": "outcome",
                    "resource": outcomes.ok(
                        f"merge undone; {len(prov['target'])} resource version(s) written"
                    ),
                },
                {"name": "provenance", "resource": prov},
            ],
        },
    )


# -- parameters -----------------------------------------------------------------------


def _body_params(call: OperationCall) -> list[tuple[str, str]]:
    """A POSTed ``Parameters`` body as (name, value) pairs (``$everything`` by POST)."""
    if not call.body or call.body.get("resourceType") != "Parameters":
        return []
    out = []
    for p in call.body.get("parameter") or ():
        for key, value in p.items():
            if key.startswith("value"):
                out.append((p.get("name", ""), str(value)))
    return out


def _ref_param(call: OperationCall, name: str) -> str | None:
    for key, value in call.params:
        if key == name:
            return value
    if call.body and call.body.get("resourceType") == "Parameters":
        for p in call.body.get("parameter") or ():
            if p.get("name") != name:
                continue
            if isinstance(p.get("valueReference"), dict):
                return p["valueReference"].get("reference")
            for key in ("valueString", "valueId", "valueUri"):
                if p.get(key):
                    return p[key]
    return None


def _patient_param(call: OperationCall, name: str, required: bool = True) -> str | None:
    ref = _ref_param(call, name)
    if not ref:
        if required:
            raise outcomes.bad_request(f"${call.name} needs {name} (a Patient reference)", name)
        return None
    parts = ref.rstrip("/").split("/")
    if len(parts) >= 2 and parts[-2] == "Patient":
        return parts[-1]
    if len(parts) == 1:
        return parts[0]
    raise outcomes.bad_request(f"{name} must refer to a Patient, not {ref!r}", name)


def _wants_html(call: OperationCall) -> bool:
    req = call.request
    fmt = req.args.get("_format", "") if req is not None else ""
    return fmt.lower() in ("html", "text/html")


def _tz(the_hub: Hub) -> dt.tzinfo:
    return zoneinfo.ZoneInfo(setting(the_hub.config, "TIMEZONE"))


def _flag_colour(flag: dict[str, Any]) -> str | None:
    for coding in (flag.get("code") or {}).get("coding") or ():
        return coding.get("code")
    return None


def operations() -> list[Operation]:
    patient = ("Patient",)
    return [
        Operation(
            "everything",
            everything,
            levels=("instance",),
            types=patient,
            definition="http://hl7.org/fhir/OperationDefinition/Patient-everything",
            documentation="Every record of a person across linked Patient records "
            "(_since, _type, start, end, _count)",
        ),
        Operation(
            "lifetime-file",
            lifetime_file,
            levels=("instance",),
            types=patient,
            documentation="The resident health record (居民健康档案) as a FHIR document; "
            "_format=html for a printable page",
            parameters=(parameter("return", "Bundle", use="out", min_=1),),
        ),
        Operation(
            "colours",
            colours,
            levels=("instance",),
            types=patient,
            documentation="The current five-colour classification (五色分类) and its evidence",
            parameters=(parameter("return", "Parameters", use="out", min_=1),),
        ),
        Operation(
            "match",
            match,
            levels=("type",),
            types=patient,
            methods=("POST",),
            definition="http://hl7.org/fhir/OperationDefinition/Patient-match",
            documentation="Scored candidate records for a Patient (onlyCertainMatches, count)",
        ),
        Operation(
            "merge",
            merge,
            levels=("type",),
            types=patient,
            methods=("POST",),
            affects_state=True,
            documentation="Merge source-patient into target-patient (reversible: see $unmerge)",
            parameters=(
                parameter("source-patient", "Reference", min_=1),
                parameter("target-patient", "Reference", min_=1),
                parameter("reason", "string"),
                parameter("outcome", "OperationOutcome", use="out", min_=1),
                parameter("result", "Patient", use="out", min_=1),
                parameter("provenance", "Provenance", use="out"),
            ),
        ),
        Operation(
            "unmerge",
            unmerge,
            levels=("type",),
            types=patient,
            methods=("POST",),
            affects_state=True,
            documentation="Undo a merge from its Provenance (provenance, or the two Patients)",
            parameters=(
                parameter("provenance", "Reference"),
                parameter("source-patient", "Reference"),
                parameter("target-patient", "Reference"),
                parameter("outcome", "OperationOutcome", use="out", min_=1),
                parameter("provenance", "Provenance", use="out", min_=1),
            ),
        ),
    ]
