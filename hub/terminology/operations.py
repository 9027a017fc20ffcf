"""The R4 terminology operations over REST, and the TerminologyCapabilities statement.

``CodeSystem/$lookup``, ``CodeSystem/$validate-code``, ``CodeSystem/$subsumes``,
``ValueSet/$expand``, ``ValueSet/$validate-code`` and ``ConceptMap/$translate``, at
type and instance level, by GET (query parameters) or POST (a ``Parameters`` body).
Each handler reads its parameters, asks the hub's :class:`TerminologyService` and
writes the answer as the R4 operation definition says; a missing or malformed
parameter is a 400, an unknown code system, value set or map a 404.
"""

from __future__ import annotations

from datetime import UTC
from datetime import datetime
from typing import TYPE_CHECKING
from typing import Any

from hub import outcomes
from hub.fhir.service import Result
from hub.operations import Operation
from hub.operations import OperationCall
from hub.validation.structure import check_structure
from hub.version import __version__

if TYPE_CHECKING:
    from hub.kernel import Hub
    from hub.terminology.service import TerminologyService

R4 = "http://hl7.org/fhir/OperationDefinition/"


# -- parameters -------------------------------------------------------------------------


def _values(call: OperationCall, name: str) -> list[Any]:
    """Every value of parameter ``name``: query-string values, then the body's ``value[x]``
    (or ``resource``) of each Parameters entry with that name."""
    out: list[Any] = [v for k, v in call.params if k == name]
    body = call.body
    if body and body.get("resourceType") == "Parameters":
        for p in body.get("parameter") or ():
            if isinstance(p, dict) and p.get("name") == name:
                if "resource" in p:
                    out.append(p["resource"])
                out.extend(v for k, v in p.items() if k.startswith("value"))
    return out


def _text(call: OperationCall, name: str) -> str | None:
    for value in _values(call, name):
        if isinstance(value, str):
            return value
        if isinstance(value, bool | int):
            return str(value).lower()
        raise outcomes.bad_request(f"parameter {name} must be a primitive value", name)
    return None


def _integer(call: OperationCall, name: str) -> int | None:
    raw = _text(call, name)
    if raw is None:
        return None
    try:
        value = int(raw)
    except ValueError:
        raise outcomes.bad_request(
            f"parameter {name} must be an integer, not {raw!r}", name
        ) from None
    if value < 0:
        raise outcomes.bad_request(f"parameter {name} must not be negative", name)
    return value


def _boolean(call: OperationCall, name: str) -> bool:
    raw = _text(call, name)
    if raw not in (None, "true", "false"):
        raise outcomes.bad_request(f"parameter {name} must be true or false, not {raw!r}", name)
    return raw == "true"


def _complex(call: OperationCall, name: str) -> dict[str, Any] | None:
    for value in _values(call, name):
        if isinstance(value, dict):
            return value
        if isinstance(value, str) and name in ("coding", "codingA", "codingB"):
            system, sep, code = value.rpartition("|")  # GET form: system|code
            if sep:
                return {"system": system, "code": code}
        raise outcomes.bad_request(f"parameter {name} must be a {name[0].upper()}...", name)
    return None


def _codings(call: OperationCall, single: str = "coding") -> list[dict[str, Any]]:
    """The codings asked about: ``code`` (+ ``system``/``display``), ``coding`` or the
    codings of ``codeableConcept``."""
    code = _text(call, "code")
    if code is not None:
        coding = {"code": code}
        for key, param in (("system", "system"), ("display", "display")):
            value = _text(call, param)
            if value is not None:
                coding[key] = value
        return [coding]
    coding = _complex(call, single)
    if coding is not None:
        return [coding]
    concept = _complex(call, "codeableConcept")
    if concept is not None:
        return [c for c in concept.get("coding") or () if isinstance(c, dict)]
    raise outcomes.bad_request(f"${call.name} needs code, {single} or codeableConcept", "code")


def _terminology(call: OperationCall) -> TerminologyService:
    service = call.hub.terminology
    service.refresh()
    return service


def _instance_url(call: OperationCall, service: TerminologyService) -> str | None:
    """The canonical URL of the instance an instance-level call names (stored or served)."""
    if not call.res_id:
        return None
    res = service.resource(call.res_type or "", call.res_id)
    if res is None:
        raise outcomes.not_found(f"{call.res_type}/{call.res_id} is not known")
    if not res.get("url"):
        raise outcomes.unprocessable(f"{call.res_type}/{call.res_id} has no url", "url")
    return res["url"]


def _parameters(*pairs: tuple[str, Any]) -> dict[str, Any]:
    out = []
    for name, value in pairs:
        if value is None:
            continue
        if isinstance(value, bool):
            out.append({"name": name, "valueBoolean": value})
        elif isinstance(value, dict) and "resourceType" in value:
            out.append({"name": name, "resource": value})
        else:
            out.append({"name": name, "valueString": value})
    return {"resourceType": "Parameters", "parameter": out}


# -- CodeSystem -------------------------------------------------------------------------


def lookup(call: OperationCall) -> Result:
    """``CodeSystem/$lookup``: display, designations, properties, parent and child codes."""
    service = _terminology(call)
    coding = _codings(call)[0]
    system = _instance_url(call, service) or coding.get("system")
    if not system or not coding.get("code"):
        raise outcomes.bad_request("$lookup needs system and code (or coding)", "system")
    wanted = [v for v in _values(call, "property") if isinstance(v, str)]
    return Result(200, service.lookup(system, coding["code"], wanted))


def validate_code_in_system(call: OperationCall) -> Result:
    """``CodeSystem/$validate-code``: is the code one of the system's (and the display right)?"""
    service = _terminology(call)
    url = _instance_url(call, service) or _text(call, "url")
    verdicts = []
    for coding in _codings(call):
        system = url or coding.get("system")
        if not system or not coding.get("code"):
            raise outcomes.bad_request("$validate-code needs url (or system) and code", "url")
        verdicts.append(service.validate_in_system(system, coding["code"], coding.get("display")))
    return Result(200, _verdict(verdicts))


def subsumes(call: OperationCall) -> Result:
    """``CodeSystem/$subsumes``: equivalent, subsumes, subsumed-by or not-subsumed."""
    service = _terminology(call)
    a = _text(call, "codeA") or (_complex(call, "codingA") or {}).get("code")
    b = _text(call, "codeB") or (_complex(call, "codingB") or {}).get("code")
    system = (
        _instance_url(call, service)
        or _text(call, "system")
        or (_complex(call, "codingA") or {}).get("system")
    )
    if not system:
        raise outcomes.bad_request("$subsumes needs system", "system")
    if not a or not b:
        raise outcomes.bad_request("$subsumes needs codeA and codeB (or codingA and codingB)")
    outcome = service.subsumes(system, a, b)
    return Result(
        200,
        {"resourceType": "Parameters", "parameter": [{"name": "outcome", "valueCode": outcome}]},
    )


# -- ValueSet ---------------------------------------------------------------------------


def _value_set_arg(call: OperationCall, service) -> tuple[str | None, dict | None]:
    url = _instance_url(call, service) or _text(call, "url")
    value_set = None
    if url is None:
        given = [v for v in _values(call, "valueSet") if isinstance(v, dict)]
        if given:
            value_set = given[0]
            if value_set.get("resourceType") != "ValueSet":
                raise outcomes.bad_request("parameter valueSet must be a ValueSet", "valueSet")
            check_structure(value_set)  # a 400 for a malformed one, as on a write
    if url is None and value_set is None:
        raise outcomes.bad_request(f"${call.name} needs url or a valueSet", "url")
    return url, value_set


def expand(call: OperationCall) -> Result:
    """``ValueSet/$expand`` with ``filter``, ``count``, ``offset`` and ``includeDesignations``."""
    service = _terminology(call)
    url, value_set = _value_set_arg(call, service)
    out = service.expand(
        url,
        value_set,
        text=_text(call, "filter"),
        count=_integer(call, "count"),
        offset=_integer(call, "offset") or 0,
        include_designations=_boolean(call, "includeDesignations"),
        display_language=_text(call, "displayLanguage"),
    )
    return Result(200, out)


def validate_code_in_value_set(call: OperationCall) -> Result:
    """``ValueSet/$validate-code``: is the code (any coding of a concept) in the value set?"""
    service = _terminology(call)
    url, value_set = _value_set_arg(call, service)
    if url is None:
        # An inline value set: expand it once for this call.
        members = service.expand(None, value_set)["expansion"]["contains"]
        pairs = {(m.get("system"), m["code"]) for m in members}
        verdicts = [
            {"result": (c.get("system"), c.get("code")) in pairs}
            if c.get("system")
            else {"result": any(code == c.get("code") for _, code in pairs)}
            for c in _codings(call)
        ]
        return Result(200, _verdict(verdicts))
    verdicts = [
        service.validate_in_value_set(url, c.get("system"), c.get("code") or "", c.get("display"))
        for c in _codings(call)
    ]
    return Result(200, _verdict(verdicts))


def _verdict(verdicts: list[dict]) -> dict[str, Any]:
    """One answer for one or more codings: true when any is valid (a CodeableConcept)."""
    good = next((v for v in verdicts if v["result"]), None)
    chosen = good or (verdicts[0] if verdicts else {"result": False, "message": "no coding"})
    return _parameters(
        ("result", chosen["result"]),
        ("message", chosen.get("message")),
        ("display", chosen.get("display")),
    )


# -- ConceptMap -------------------------------------------------------------------------


def translate(call: OperationCall) -> Result:
    """``ConceptMap/$translate`` (``reverse=true`` reads the map from target to source)."""
    service = _terminology(call)
    url = _instance_url(call, service) or _text(call, "url")
    reverse = _boolean(call, "reverse")
    target_system = _text(call, "targetsystem")
    matches: list[dict] = []
    for coding in _codings(call):
        if not coding.get("code"):
            raise outcomes.bad_request("$translate needs a code", "code")
        matches += service.translate(
            coding["code"], coding.get("system"), url, target_system, reverse
        )
    params: list[dict[str, Any]] = [{"name": "result", "valueBoolean": bool(matches)}]
    if not matches:
        params.append({"name": "message", "valueString": "no translation found"})
    for m in matches:
        parts = [
            {"name": "equivalence", "valueCode": m["equivalence"]},
            {"name": "concept", "valueCoding": m["concept"]},
            {"name": "source", "valueUri": m["source"]},
        ]
        params.append({"name": "match", "part": parts})
    return Result(200, {"resourceType": "Parameters", "parameter": params})


# -- registration -----------------------------------------------------------------------


def operations() -> list[Operation]:
    def op(name: str, handler, res_type: str, definition: str, doc: str) -> Operation:
        return Operation(
            name,
            handler,
            levels=("type", "instance"),
            types=(res_type,),
            definition=R4 + definition,
            documentation=doc,
        )

    return [
        op("lookup", lookup, "CodeSystem", "CodeSystem-lookup", "Details of a code"),
        op(
            "validate-code",
            validate_code_in_system,
            "CodeSystem",
            "CodeSystem-validate-code",
            "Is a code one of a code system's",
        ),
        op(
            "subsumes",
            subsumes,
            "CodeSystem",
            "CodeSystem-subsumes",
            "The hierarchical relation of two codes",
        ),
        op("expand", expand, "ValueSet", "ValueSet-expand", "The codes of a value set"),
        op(
            "validate-code",
            validate_code_in_value_set,
            "ValueSet",
            "ValueSet-validate-code",
            "Is a code in a value set",
        ),
        op(
            "translate",
            translate,
            "ConceptMap",
            "ConceptMap-translate",
            "Translate a code through a concept map",
        ),
    ]


def terminology_capabilities(the_hub: Hub, base: str) -> dict[str, Any]:
    """``GET /metadata?mode=terminology``: the code systems held and what the operations do."""
    service = the_hub.terminology
    service.refresh()
    systems = []
    for cs in sorted(service.code_systems(), key=lambda c: c.url):
        entry: dict[str, Any] = {"uri": cs.url}
        if cs.version:
            entry["version"] = [{"code": cs.version}]
        entry["subsumption"] = cs.hierarchical
        systems.append(entry)
    return {
        "resourceType": "TerminologyCapabilities",
        "status": "active",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "kind": "instance",
        "software": {"name": "fhirhub", "version": __version__},
        "implementation": {"description": "fhirhub terminology service", "url": base},
        "lockedDate": False,
        "codeSearch": "all",
        "codeSystem": systems,
        "expansion": {
            "hierarchical": False,
            "paging": True,
            "incomplete": False,
            "parameter": [
                {"name": name}
                for name in (
                    "filter",
                    "count",
                    "offset",
                    "includeDesignations",
                    "displayLanguage",
                    "valueSet",
                )
            ],
            "textFilter": "Matches codes whose code, display or a designation contains the"
            " filter text (Chinese or English), case-insensitively",
        },
        "validateCode": {"translations": False},
        "translation": {"needsMap": False},
        "closure": {"translation": False},
    }
