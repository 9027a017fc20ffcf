"""Test any FHIR R4 server against its own CapabilityStatement (``hub conformance check-endpoint``).

In the manner of Inferno's capability-driven tests and Touchstone's
TestScripts: the server's ``/metadata`` decides what is tested. For every
resource type it lists (and this kit can generate a minimal valid instance
of), each claimed interaction is exercised on a resource created for the run:
create, read, vread, update, patch, search-type, history-instance,
history-type and, last, delete. Every claimed search parameter is then
searched with a value taken from the created resource (``name=value&_id=id``
must find it) and with a value that must not match (it must not find it, which
shows the parameter is not silently ignored). A claimed type this kit cannot
generate is still searched, and each of its parameters sent with a value of its
type under ``Prefer: handling=strict`` (a parameter the server does not
support must not be accepted). Every claimed operation's OperationDefinition
must resolve and agree with the claim, and the operation is invoked at each
level it declares (on the created resource for instance level): it may refuse
the empty call (4xx) but must exist (no 404 ``not-supported``, 405, 501 or
5xx). When ``patchFormat`` claims ``application/fhir+json``, patch is also
tried as a FHIRPath Patch. Each check ends ``passed``, ``failed`` or
``skipped``, with a message.

All requests go through :class:`FhirHttp`, which adds the bearer token in one
place. Only the standard library is used for HTTP, so the command works
against remote servers without extra packages.
"""

from __future__ import annotations

import copy
import json
import secrets
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from typing import Any

from hub.conformance.runner import FAILED
from hub.conformance.runner import PASSED
from hub.conformance.runner import SKIPPED
from hub.conformance.runner import CheckResult

FHIR_JSON = "application/fhir+json"
JSON_PATCH = "application/json-patch+json"
CHECK_SYSTEM = "urn:fhirhub:conformance-check"
# Parameters that cannot be searched with a value taken from one resource.
UNTESTABLE_PARAMS = {"_text", "_content", "_list", "_has", "_query", "_filter", "_type"}
# Parameters whose values have a syntax of their own (not probed).
UNPROBED_PARAMS = {"_has", "_query", "_filter", "_type"}
# A syntactically valid value of each parameter type, for the strict "is it supported" probe.
PROBE_VALUES = {
    "token": "probe",
    "string": "probe",
    "date": "2000-01-01",
    "reference": "probe",
    "quantity": "1",
    "number": "1",
    "uri": "urn:probe",
}
FHIRPATH_PATCH = "application/fhir+json"


class EndpointError(Exception):
    """The server could not be reached or answered with something that is not FHIR."""


class Response:
    def __init__(self, status: int, headers: dict[str, str], body: bytes):
        self.status = status
        self.headers = {k.lower(): v for k, v in headers.items()}
        self.body = body

    def json(self) -> Any:
        try:
            return json.loads(self.body) if self.body else None
        except ValueError:
            return None

    def problem(self) -> str:
        """The first issue of an OperationOutcome body, for messages."""
        data = self.json() or {}
        issue = next(iter(data.get("issue") or []), {}) if isinstance(data, dict) else {}
        text = issue.get("diagnostics") or (issue.get("details") or {}).get("text") or ""
        return f"HTTP {self.status}" + (f": {text}" if text else "")


class FhirHttp:
    """A minimal FHIR JSON client; ``token`` is sent as ``Authorization: Bearer``."""

    def __init__(self, base: str, *, token: str | None = None, timeout: float = 30.0):
        self.base = base.rstrip("/")
        self.token = token
        self.timeout = timeout

    def headers(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        """Every request's headers: the one place credentials are added."""
        out = {"Accept": FHIR_JSON}
        if self.token:
            out["Authorization"] = f"Bearer {self.token}"
        out.update(extra or {})
        return out

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        content_type: str = FHIR_JSON,
        headers: dict[str, str] | None = None,
    ) -> Response:
        url = path if path.startswith(("http://", "https://")) else f"{self.base}/{path}"
        data = None
        extra = dict(headers or {})
        if body is not None:
            data = json.dumps(body).encode()
            extra["Content-Type"] = content_type
        req = urllib.request.Request(url, data=data, method=method, headers=self.headers(extra))
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:  # noqa: S310 - the user's URL
                return Response(resp.status, dict(resp.headers), resp.read())
        except urllib.error.HTTPError as err:
            return Response(err.code, dict(err.headers or {}), err.read() or b"")
        except (urllib.error.URLError, TimeoutError, ConnectionError) as err:
            reason = getattr(err, "reason", err)
            raise EndpointError(f"{method} {url}: {reason}") from None

    def get(self, path: str) -> Response:
        return self.request("GET", path)


# ---------------------------------------------------------------------------
# Generated resources
# ---------------------------------------------------------------------------


class Generator:
    """How to make a minimal valid instance of one type, and one change to it."""

    def __init__(
        self,
        build: Callable[[dict[str, Any]], dict],
        change: tuple[str, Any],
        needs_patient: bool = False,
        minimal: bool = False,
    ):
        self.build = build
        self.change = change  # (JSON Pointer of a top-level element, its new value)
        self.needs_patient = needs_patient
        self.minimal = minimal  # made from the StructureDefinition (hub.conformance.instances)


def _cc(system: str, code: str, display: str) -> dict:
    return {"coding": [{"system": system, "code": code, "display": display}], "text": display}


LOINC, SNOMED = "http://loinc.org", "http://snomed.info/sct"


def _patient(ctx: dict) -> dict:
    return {
        "resourceType": "Patient",
        "identifier": [{"system": CHECK_SYSTEM, "value": f"{ctx['run']}-patient"}],
        "active": True,
        "name": [
            {"family": f"Kit{ctx['run']}", "given": ["Check"], "text": f"Check Kit{ctx['run']}"}
        ],
        "telecom": [{"system": "phone", "value": "+86-532-0000-0000", "use": "home"}],
        "gender": "female",
        "birthDate": "1970-01-01",
        "address": [
            {"line": ["1 Test Road"], "city": "Qingdao", "postalCode": "266000", "country": "CN"}
        ],
    }


def _observation(ctx: dict) -> dict:
    return {
        "resourceType": "Observation",
        "identifier": [{"system": CHECK_SYSTEM, "value": f"{ctx['run']}-observation"}],
        "status": "final",
        "category": [
            _cc(
                "http://terminology.hl7.org/CodeSystem/observation-category",
                "vital-signs",
                "Vital Signs",
            )
        ],
        "code": _cc(LOINC, "8867-4", "Heart rate"),
        "subject": {"reference": ctx["patient"]},
        "effectiveDateTime": "2024-03-01T08:30:00+08:00",
        "issued": "2024-03-01T08:31:00+08:00",
        "valueQuantity": {
            "value": 72,
            "unit": "/min",
            "system": "http://unitsofmeasure.org",
            "code": "/min",
        },
    }


def _encounter(ctx: dict) -> dict:
    return {
        "resourceType": "Encounter",
        "identifier": [{"system": CHECK_SYSTEM, "value": f"{ctx['run']}-encounter"}],
        "status": "finished",
        "class": {
            "system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
            "code": "AMB",
            "display": "ambulatory",
        },
        "type": [_cc(SNOMED, "185349003", "Encounter for check up")],
        "subject": {"reference": ctx["patient"]},
        "period": {"start": "2024-03-01T08:00:00+08:00", "end": "2024-03-01T09:00:00+08:00"},
    }


def _condition(ctx: dict) -> dict:
    return {
        "resourceType": "Condition",
        "identifier": [{"system": CHECK_SYSTEM, "value": f"{ctx['run']}-condition"}],
        "clinicalStatus": _cc(
            "http://terminology.hl7.org/CodeSystem/condition-clinical", "active", "Active"
        ),
        "verificationStatus": _cc(
            "http://terminology.hl7.org/CodeSystem/condition-ver-status", "confirmed", "Confirmed"
        ),
        "category": [
            _cc(
                "http://terminology.hl7.org/CodeSystem/condition-category",
                "problem-list-item",
                "Problem List Item",
            )
        ],
        "code": _cc(SNOMED, "38341003", "Hypertensive disorder"),
        "subject": {"reference": ctx["patient"]},
        "onsetDateTime": "2020-05-01",
        "recordedDate": "2024-03-01",
    }


def _practitioner(ctx: dict) -> dict:
    return {
        "resourceType": "Practitioner",
        "identifier": [{"system": CHECK_SYSTEM, "value": f"{ctx['run']}-practitioner"}],
        "active": True,
        "name": [{"family": f"Doc{ctx['run']}", "given": ["Kit"]}],
        "gender": "male",
    }


def _organization(ctx: dict) -> dict:
    return {
        "resourceType": "Organization",
        "identifier": [{"system": CHECK_SYSTEM, "value": f"{ctx['run']}-organization"}],
        "active": True,
        "name": f"Check Clinic {ctx['run']}",
        "address": [{"city": "Qingdao", "country": "CN"}],
    }


def _procedure(ctx: dict) -> dict:
    return {
        "resourceType": "Procedure",
        "identifier": [{"system": CHECK_SYSTEM, "value": f"{ctx['run']}-procedure"}],
        "status": "completed",
        "code": _cc(SNOMED, "80146002", "Appendectomy"),
        "subject": {"reference": ctx["patient"]},
        "performedDateTime": "2023-06-01",
    }


def _allergy(ctx: dict) -> dict:
    return {
        "resourceType": "AllergyIntolerance",
        "identifier": [{"system": CHECK_SYSTEM, "value": f"{ctx['run']}-allergy"}],
        "clinicalStatus": _cc(
            "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical", "active", "Active"
        ),
        "code": _cc(SNOMED, "91936005", "Allergy to penicillin"),
        "patient": {"reference": ctx["patient"]},
        "recordedDate": "2024-03-01",
    }


def _immunization(ctx: dict) -> dict:
    return {
        "resourceType": "Immunization",
        "identifier": [{"system": CHECK_SYSTEM, "value": f"{ctx['run']}-immunization"}],
        "status": "completed",
        "vaccineCode": _cc("http://hl7.org/fhir/sid/cvx", "08", "Hep B, adolescent or pediatric"),
        "patient": {"reference": ctx["patient"]},
        "occurrenceDateTime": "2024-03-01",
        "primarySource": True,
    }


def _subscription(ctx: dict) -> dict:
    # ``off``: stored as given and never notified, so no server posts to the example endpoint.
    return {
        "resourceType": "Subscription",
        "status": "off",
        "reason": "Conformance check",
        "criteria": "Observation?status=final",
        "channel": {
            "type": "rest-hook",
            "endpoint": "https://partner.example/check",
            "payload": "application/fhir+json",
        },
    }


GENERATORS: dict[str, Generator] = {
    "Patient": Generator(_patient, ("/birthDate", "1971-02-03")),
    "Observation": Generator(_observation, ("/status", "amended"), needs_patient=True),
    "Encounter": Generator(_encounter, ("/status", "cancelled"), needs_patient=True),
    "Condition": Generator(_condition, ("/recordedDate", "2024-03-02"), needs_patient=True),
    "Practitioner": Generator(_practitioner, ("/gender", "female")),
    "Organization": Generator(_organization, ("/active", False)),
    "Procedure": Generator(_procedure, ("/status", "stopped"), needs_patient=True),
    "AllergyIntolerance": Generator(_allergy, ("/recordedDate", "2024-03-02"), needs_patient=True),
    "Immunization": Generator(_immunization, ("/status", "not-done"), needs_patient=True),
    "Subscription": Generator(_subscription, ("/reason", "Conformance check again")),
}


def _minimal_generator(res_type: str) -> Generator | None:
    """A generator of the type's minimal instance, when one can be made."""
    from hub.conformance.instances import minimal_instance

    if minimal_instance(res_type, "probe") is None:
        return None
    return Generator(
        lambda ctx: minimal_instance(res_type, ctx["run"]), ("/language", "zh-CN"), minimal=True
    )


# ---------------------------------------------------------------------------
# Search values from a resource
# ---------------------------------------------------------------------------


def search_values(param_type: str, element: Any, run: str) -> tuple[str, str | None] | None:
    """``(matching value, non-matching value)`` for one element, or None if none can be made.

    The non-matching value is None when none can be made safely.
    """
    if param_type == "token":
        if isinstance(element, bool):
            return str(element).lower(), str(not element).lower()
        if isinstance(element, str):
            return element, f"nomatch-{run}"
        if isinstance(element, dict):
            coding = (element.get("coding") or [None])[0] if "coding" in element else element
            if isinstance(coding, dict):
                code = coding.get("code") or coding.get("value")
                system = coding.get("system")
                if code is not None and "use" in coding and "value" in coding:
                    return str(coding["value"]), f"nomatch-{run}"  # ContactPoint
                if code is not None:
                    if system:
                        return f"{system}|{code}", f"{system}|nomatch-{run}"
                    return str(code), f"nomatch-{run}"
        return None
    if param_type == "string":
        text = _first_string(element)
        return (text, f"zzq{run}") if text else None
    if param_type == "date":
        if isinstance(element, dict):
            # A Period is a range: ``eq`` would need the search value to contain it.
            start = element.get("start")
            return (f"ge{start}", f"lt{start}") if start else None
        if isinstance(element, str) and element[:1].isdigit():
            return element, "1801-01-01"
        return None
    if param_type == "reference":
        ref = element.get("reference") if isinstance(element, dict) else None
        if ref and "/" in ref and not ref.startswith("#"):
            res_type = ref.split("/")[-2]
            return ref, f"{res_type}/nomatch-{run}"
        return None
    if param_type == "quantity":
        if isinstance(element, dict) and isinstance(element.get("value"), int | float):
            value = element["value"]
            unit = "|".join([element.get("system", ""), element.get("code", "")]).strip("|")
            tail = f"|{unit}" if unit else ""
            if unit and "|" not in unit:
                tail = f"||{unit}"
            return f"{value}{tail}", f"{value + 12345}{tail}"
        return None
    if param_type == "number":
        if isinstance(element, int | float) and not isinstance(element, bool):
            return str(element), str(element + 12345)
        return None
    if param_type == "uri":
        if isinstance(element, str):
            return element, f"urn:nomatch:{run}"
        return None
    return None


def _first_string(element: Any) -> str | None:
    if isinstance(element, str):
        return element
    if isinstance(element, dict):
        for key in ("family", "text", "city", "name", "value", "line", "given", "display"):
            if key in element:
                found = _first_string(element[key])
                if found:
                    return found
    if isinstance(element, list):
        for item in element:
            found = _first_string(item)
            if found:
                return found
    return None


# ---------------------------------------------------------------------------
# The checker
# ---------------------------------------------------------------------------


class EndpointChecker:
    """Runs the capability-driven checks; :meth:`run` returns every result."""

    def __init__(self, http: FhirHttp, types: list[str] | None = None):
        self.http = http
        self.types = types
        self.run_id = secrets.token_hex(4)
        self.results: list[CheckResult] = []
        self._cleanup: list[str] = []
        self._registry = None
        self._definitions: dict[str, Response] = {}
        self.patch_formats: set[str] = set()

    # -- results ---------------------------------------------------------------

    def _record(self, group: str, name: str, status: str, message: str = "", started=None):
        duration = time.perf_counter() - started if started else 0.0
        self.results.append(CheckResult(group, name, status, message, duration=duration))
        return status == PASSED

    def _check(self, group: str, name: str, fn: Callable[[], str | None]) -> bool:
        """Run ``fn``: None passes, a string fails with that message, ``Skip`` skips."""
        started = time.perf_counter()
        try:
            problem = fn()
        except Skip as skip:
            return self._record(group, name, SKIPPED, str(skip), started)
        except EndpointError as err:
            return self._record(group, name, FAILED, str(err), started)
        if problem:
            return self._record(group, name, FAILED, problem, started)
        return self._record(group, name, PASSED, "", started)

    # -- run -------------------------------------------------------------------

    def run(self) -> list[CheckResult]:
        try:
            capability = self._capability()
        except EndpointError as err:
            self._record("server", "metadata", FAILED, str(err))
            return self.results
        if capability is None:
            return self.results
        rest = next((r for r in capability.get("rest") or [] if r.get("mode") == "server"), None)
        if rest is None:
            self._record(
                "server", "rest", FAILED, "the CapabilityStatement has no rest.mode=server"
            )
            return self.results
        claimed = {r.get("type"): r for r in rest.get("resource") or []}
        self.patch_formats = set(capability.get("patchFormat") or ())
        wanted = self.types or sorted(claimed)
        ctx = {"run": self.run_id}
        try:
            for res_type in wanted:
                declared = claimed.get(res_type)
                if declared is None:
                    self._record(res_type, "declared", SKIPPED, "not in the CapabilityStatement")
                    continue
                gen = GENERATORS.get(res_type) or _minimal_generator(res_type)
                if gen is None:
                    self._check_claims_only(declared)
                    continue
                self._check_type(declared, claimed, ctx, gen)
            if not self.types:
                for op in rest.get("operation") or []:
                    self._check_operation(None, op, None)
        except EndpointError as err:
            self._record("server", "connection", FAILED, str(err))
        finally:
            self._delete_leftovers()
        return self.results

    def _capability(self) -> dict | None:
        started = time.perf_counter()
        resp = self.http.get("metadata")
        body = resp.json()
        if resp.status != 200 or not isinstance(body, dict):
            self._record("server", "metadata", FAILED, f"GET metadata: {resp.problem()}", started)
            return None
        if body.get("resourceType") != "CapabilityStatement":
            self._record(
                "server",
                "metadata",
                FAILED,
                f"GET metadata gave a {body.get('resourceType')}",
                started,
            )
            return None
        self._record("server", "metadata", PASSED, "", started)
        version = body.get("fhirVersion", "")
        self._record(
            "server",
            "fhirVersion",
            PASSED if version.startswith("4.0") else FAILED,
            f"fhirVersion {version or '(absent)'}"
            + ("" if version.startswith("4.0") else ", expected 4.0.x"),
        )
        return body

    def _support_patient(self, claimed: dict, ctx: dict) -> str | None:
        if "patient" in ctx:
            return ctx["patient"]
        patient = claimed.get("Patient")
        if patient is None or "create" not in _interactions(patient):
            ctx["patient"] = None
            return None
        resp = self.http.request("POST", "Patient", _patient(ctx))
        body = resp.json() or {}
        pid = body.get("id") or _id_from_location(resp.headers.get("location"))
        if resp.status not in (200, 201) or not pid:
            ctx["patient"] = None
            return None
        ctx["patient"] = f"Patient/{pid}"
        self._cleanup.append(ctx["patient"])
        return ctx["patient"]

    def _check_type(self, declared: dict, claimed: dict, ctx: dict, gen: Generator) -> None:
        res_type = declared["type"]
        interactions = _interactions(declared)
        if gen.needs_patient and not self._support_patient(claimed, ctx):
            self._record(
                res_type, "all", SKIPPED, "needs a Patient, and Patient create is not available"
            )
            return
        state: dict[str, Any] = {}
        resource = gen.build(ctx)
        # A tag marks what a run created (and lets ``_tag`` be tested).
        resource["meta"] = {"tag": [{"system": CHECK_SYSTEM, "code": self.run_id}]}

        def create() -> str | None:
            if "create" not in interactions:
                raise Skip("create not claimed")
            resp = self.http.request(
                "POST", res_type, resource, headers={"Prefer": "return=representation"}
            )
            if resp.status != 201 and gen.minimal and 400 <= resp.status < 500:
                # The kit's minimal instance ignores invariants: the server may rightly refuse it.
                raise Skip(f"POST {res_type} of the kit's minimal instance: {resp.problem()}")
            if resp.status != 201:
                return f"POST {res_type}: {resp.problem()}, expected 201"
            location = resp.headers.get("location", "")
            body = resp.json() or {}
            rid = body.get("id") or _id_from_location(location)
            if not rid:
                return "201 without a Location header or a resource id"
            state["id"] = rid
            self._cleanup.append(f"{res_type}/{rid}")
            if not location or f"{res_type}/{rid}" not in location:
                return f"Location header {location!r} does not name {res_type}/{rid}"
            return None

        if not self._check(res_type, "create", create) or "id" not in state:
            if gen.minimal:
                self._check_claims_only(declared)
            else:
                self._record(res_type, "rest", SKIPPED, "no resource was created")
            return
        ref = f"{res_type}/{state['id']}"

        def read() -> str | None:
            if "read" not in interactions:
                raise Skip("read not claimed")
            resp = self.http.get(ref)
            body = resp.json() or {}
            if resp.status != 200:
                return f"GET {ref}: {resp.problem()}"
            if body.get("resourceType") != res_type or body.get("id") != state["id"]:
                return f"GET {ref} gave {body.get('resourceType')}/{body.get('id')}"
            state["current"] = body
            state["version"] = (body.get("meta") or {}).get("versionId")
            return None

        self._check(res_type, "read", read)

        def vread() -> str | None:
            if "vread" not in interactions:
                raise Skip("vread not claimed")
            if not state.get("version"):
                raise Skip("the read resource has no meta.versionId")
            path = f"{ref}/_history/{state['version']}"
            resp = self.http.get(path)
            body = resp.json() or {}
            if resp.status != 200:
                return f"GET {path}: {resp.problem()}"
            if (body.get("meta") or {}).get("versionId") != state["version"]:
                return f"GET {path} gave version {(body.get('meta') or {}).get('versionId')}"
            return None

        self._check(res_type, "vread", vread)
        pointer, new_value = gen.change
        element = pointer.lstrip("/")

        def update() -> str | None:
            if "update" not in interactions:
                raise Skip("update not claimed")
            changed = copy.deepcopy(state.get("current") or {**resource, "id": state["id"]})
            changed[element] = new_value
            tags = (changed.get("meta") or {}).get("tag")
            changed["meta"] = {"tag": tags} if tags else {}
            if not changed["meta"]:
                del changed["meta"]
            resp = self.http.request(
                "PUT", ref, changed, headers={"Prefer": "return=representation"}
            )
            if resp.status != 200:
                return f"PUT {ref}: {resp.problem()}, expected 200"
            back = self.http.get(ref).json() or {}
            if back.get(element) != new_value:
                return f"after PUT, {element} is {back.get(element)!r}, expected {new_value!r}"
            version = (back.get("meta") or {}).get("versionId")
            if state.get("version") and version == state["version"]:
                return f"PUT did not change meta.versionId ({version})"
            state["current"], state["version"] = back, version
            state["versions"] = state.get("versions", 1) + 1
            return None

        self._check(res_type, "update", update)

        def patch() -> str | None:
            if "patch" not in interactions:
                raise Skip("patch not claimed")
            original = resource.get(element)
            ops = [
                {
                    "op": "replace" if element in (state.get("current") or {}) else "add",
                    "path": pointer,
                    "value": original,
                }
            ]
            resp = self.http.request("PATCH", ref, ops, content_type=JSON_PATCH)
            if resp.status != 200:
                return f"PATCH {ref} (JSON Patch): {resp.problem()}, expected 200"
            back = self.http.get(ref).json() or {}
            if back.get(element) != original:
                return f"after PATCH, {element} is {back.get(element)!r}, expected {original!r}"
            state["current"] = back
            state["versions"] = state.get("versions", 1) + 1
            return None

        self._check(res_type, "patch", patch)

        def fhirpath_patch() -> str | None:
            if "patch" not in interactions:
                raise Skip("patch not claimed")
            if FHIRPATH_PATCH not in self.patch_formats:
                raise Skip(f"patchFormat does not list {FHIRPATH_PATCH}")
            value = new_value  # the JSON Patch put the original back: change it again
            key = "valueBoolean" if isinstance(value, bool) else "valueString"
            ops = {
                "resourceType": "Parameters",
                "parameter": [
                    {
                        "name": "operation",
                        "part": [
                            {"name": "type", "valueCode": "replace"},
                            {"name": "path", "valueString": f"{res_type}.{element}"},
                            {"name": "value", key: value},
                        ],
                    }
                ],
            }
            resp = self.http.request("PATCH", ref, ops, content_type=FHIRPATH_PATCH)
            if resp.status != 200:
                return f"PATCH {ref} (FHIRPath Patch): {resp.problem()}, expected 200"
            back = self.http.get(ref).json() or {}
            if back.get(element) != value:
                return f"after PATCH, {element} is {back.get(element)!r}, expected {value!r}"
            state["current"] = back
            state["versions"] = state.get("versions", 1) + 1
            return None

        self._check(res_type, "patch (FHIRPath Patch)", fhirpath_patch)
        current = state.get("current") or self.http.get(ref).json() or {}

        def search_type() -> str | None:
            if "search-type" not in interactions:
                raise Skip("search-type not claimed")
            return self._expect_found(res_type, {"_id": state["id"]}, state["id"], True)

        searchable = self._check(res_type, "search-type", search_type)
        for param in declared.get("searchParam") or []:
            name = param.get("name", "")
            self._check(
                res_type,
                f"search {name}",
                lambda p=param: self._search_param(res_type, p, current, searchable),
            )

        def history_instance() -> str | None:
            if "history-instance" not in interactions:
                raise Skip("history-instance not claimed")
            resp = self.http.get(f"{ref}/_history")
            body = resp.json() or {}
            if resp.status != 200 or body.get("type") != "history":
                return f"GET {ref}/_history: {resp.problem()} ({body.get('type')})"
            want = state.get("versions", 1)
            if len(body.get("entry") or []) < want:
                return f"{len(body.get('entry') or [])} version(s) in the history, expected {want}"
            return None

        self._check(res_type, "history-instance", history_instance)

        def history_type() -> str | None:
            if "history-type" not in interactions:
                raise Skip("history-type not claimed")
            resp = self.http.get(f"{res_type}/_history?_count=50")
            body = resp.json() or {}
            if resp.status != 200 or body.get("type") != "history":
                return f"GET {res_type}/_history: {resp.problem()} ({body.get('type')})"
            ids = {((e.get("resource") or {}).get("id")) for e in body.get("entry") or []}
            ids |= {_id_from_location(e.get("fullUrl")) for e in body.get("entry") or []}
            if state["id"] not in ids:
                return f"{ref} is not in the newest 50 entries of the type history"
            return None

        self._check(res_type, "history-type", history_type)

        def conditional_create() -> str | None:
            if not declared.get("conditionalCreate") or "create" not in interactions:
                raise Skip("conditionalCreate not claimed")
            resp = self.http.request(
                "POST", res_type, resource, headers={"If-None-Exist": f"_id={state['id']}"}
            )
            body = resp.json() or {}
            rid = body.get("id") or _id_from_location(resp.headers.get("location"))
            if resp.status != 200:
                if resp.status == 201 and rid:
                    self._cleanup.append(f"{res_type}/{rid}")
                return f"POST {res_type} If-None-Exist: _id={state['id']}: {resp.problem()}"
            if rid and rid != state["id"]:
                return f"POST {res_type} If-None-Exist named {rid}, expected {state['id']}"
            return None

        self._check(res_type, "conditional create", conditional_create)

        def conditional_update() -> str | None:
            if not declared.get("conditionalUpdate") or "update" not in interactions:
                raise Skip("conditionalUpdate not claimed")
            current = self.http.get(ref).json() or {}
            resp = self.http.request("PUT", f"{res_type}?_id={state['id']}", current)
            if resp.status != 200:
                return f"PUT {res_type}?_id={state['id']}: {resp.problem()}, expected 200"
            return None

        self._check(res_type, "conditional update", conditional_update)
        for op in declared.get("operation") or []:
            self._check_operation(res_type, op, state["id"])

        def delete() -> str | None:
            if "delete" not in interactions:
                raise Skip("delete not claimed")
            resp = self.http.request("DELETE", ref)
            if resp.status not in (200, 202, 204):
                return f"DELETE {ref}: {resp.problem()}"
            self._cleanup.remove(ref)
            after = self.http.get(ref)
            if after.status not in (404, 410):
                return f"GET {ref} after DELETE gave HTTP {after.status}, expected 410 or 404"
            if "search-type" in interactions:
                return self._expect_found(res_type, {"_id": state["id"]}, state["id"], False)
            return None

        self._check(res_type, "delete", delete)

    def _check_claims_only(self, declared: dict) -> None:
        """A type the kit has no instance of: search it, probe its parameters, and check its
        operations at type level."""
        res_type = declared["type"]
        interactions = _interactions(declared)

        def search_type() -> str | None:
            if "search-type" not in interactions:
                raise Skip("search-type not claimed")
            resp = self.http.get(f"{res_type}?_count=1")
            body = resp.json() or {}
            if resp.status != 200 or body.get("resourceType") != "Bundle":
                return f"GET {res_type}?_count=1: {resp.problem()}, expected a Bundle"
            return None

        searchable = self._check(res_type, "search-type", search_type)
        for param in declared.get("searchParam") or []:
            name = param.get("name", "")
            self._check(
                res_type, f"search {name}", lambda p=param: self._probe(res_type, p, searchable)
            )
        for op in declared.get("operation") or []:
            self._check_operation(res_type, op, None)

    def _probe(self, res_type: str, param: dict, searchable: bool) -> str | None:
        """The server accepts the parameter under ``Prefer: handling=strict``."""
        if not searchable:
            raise Skip("search-type does not work, so parameters cannot be tested")
        name = param.get("name", "")
        ptype = param.get("type", "")
        if name in UNPROBED_PARAMS:
            raise Skip(f"{name} needs a value of its own syntax")
        if ptype in PROBE_VALUES:
            query = urllib.parse.urlencode({name: PROBE_VALUES[ptype], "_count": "1"})
        else:
            query = urllib.parse.urlencode({f"{name}:missing": "false", "_count": "1"})
        resp = self.http.request(
            "GET", f"{res_type}?{query}", headers={"Prefer": "handling=strict"}
        )
        body = resp.json() or {}
        if resp.status != 200 or body.get("resourceType") != "Bundle":
            return f"GET {res_type}?{query} (strict): {resp.problem()}, expected a Bundle"
        return None

    def _check_operation(self, res_type: str | None, op: dict, res_id: str | None) -> None:
        """The claimed operation's OperationDefinition resolves and matches the claim; the
        operation answers at each level it declares (``res_id``: an instance to call it on)."""
        name = op.get("name", "")
        group = res_type or "server"
        state: dict[str, Any] = {}

        def definition() -> str | None:
            url = op.get("definition") or ""
            if not url.startswith(self.http.base + "/"):
                raise Skip(f"the definition {url!r} is not served by this server")
            if url not in self._definitions:  # listed on many types: fetched once
                self._definitions[url] = self.http.get(url)
            resp = self._definitions[url]
            body = resp.json() or {}
            if resp.status != 200 or body.get("resourceType") != "OperationDefinition":
                return f"GET {url}: {resp.problem()}, expected an OperationDefinition"
            if body.get("url") != url:
                return f"{url} has url {body.get('url')!r}"
            if body.get("code") != name:
                return f"{url} defines ${body.get('code')}, the statement names ${name}"
            if res_type is None and not body.get("system"):
                return f"${name} is listed at system level, its definition says system=false"
            if res_type is not None:
                if not (body.get("type") or body.get("instance")):
                    return f"${name} is listed for {res_type}, its definition has no type level"
                resources = body.get("resource") or []
                if not {res_type, "Resource", "DomainResource"} & set(resources):
                    return f"${name} is listed for {res_type}, its definition is for {resources}"
            state["definition"] = body
            return None

        if not self._check(group, f"${name} definition", definition):
            return
        levels = ["system"] if res_type is None else ["type", "instance"] if res_id else ["type"]
        for level in levels:
            path = {
                "system": f"${name}",
                "type": f"{res_type}/${name}",
                "instance": f"{res_type}/{res_id}/${name}",
            }[level]
            self._check(
                group, f"${name} {level}", lambda p=path, lv=level: self._invoke(p, lv, state)
            )

    def _invoke(self, path: str, level: str, state: dict) -> str | None:
        definition = state.get("definition")
        if definition is None:
            raise Skip("its levels are unknown without a definition served here")
        if not definition.get(level):
            raise Skip(f"the definition does not declare the {level} level")
        # POST is allowed for every operation; an empty Parameters asks for nothing.
        resp = self.http.request("POST", path, {"resourceType": "Parameters"})
        data = resp.json()
        issues = (data.get("issue") or []) if isinstance(data, dict) else []
        first = issues[0] if issues and isinstance(issues[0], dict) else {}
        missing = resp.status == 404 and first.get("code") == "not-supported"
        if resp.status >= 500 or resp.status in (405, 501) or missing:
            return f"POST {path}: {resp.problem()}"
        return None

    def _search_param(
        self, res_type: str, param: dict, resource: dict, searchable: bool
    ) -> str | None:
        name = param.get("name", "")
        if not searchable:
            raise Skip("search-type does not work, so parameters cannot be tested")
        if name in UNTESTABLE_PARAMS:
            return self._probe(res_type, param, searchable)
        if name == "_id":
            return self._expect_found(res_type, {"_id": resource["id"]}, resource["id"], True)
        if name == "_lastUpdated":
            stamp = (resource.get("meta") or {}).get("lastUpdated")
            if not stamp:
                raise Skip("the resource has no meta.lastUpdated")
            return self._pair(res_type, name, f"ge{stamp}", f"lt{stamp}", resource["id"])
        definition = self._definition(res_type, param)
        if definition is None:
            return self._probe(res_type, param, searchable)  # no expression to take a value
        ptype = param.get("type") or definition.type
        if ptype in ("composite", "special"):
            return self._probe(res_type, param, searchable)
        try:
            elements = definition.extractor(res_type)(resource)
        except Exception as err:  # noqa: BLE001 - an expression this kit cannot evaluate
            raise Skip(f"cannot evaluate {definition.expression!r}: {err}") from None
        for element in elements or []:
            values = search_values(ptype, element, self.run_id)
            if values:
                return self._pair(res_type, name, values[0], values[1], resource["id"])
        # The generated resource has no value for it: at least the server must support it.
        return self._probe(res_type, param, searchable)

    def _pair(self, res_type: str, name: str, good: str, bad: str | None, rid: str) -> str | None:
        problem = self._expect_found(res_type, {name: good, "_id": rid}, rid, True)
        if problem or bad is None:
            return problem
        return self._expect_found(res_type, {name: bad, "_id": rid}, rid, False)

    def _expect_found(self, res_type: str, params: dict, rid: str, found: bool) -> str | None:
        query = urllib.parse.urlencode(params)
        resp = self.http.get(f"{res_type}?{query}")
        body = resp.json() or {}
        if resp.status != 200 or body.get("resourceType") != "Bundle":
            return f"GET {res_type}?{query}: {resp.problem()}"
        ids = {
            (e.get("resource") or {}).get("id")
            for e in body.get("entry") or []
            if (e.get("search") or {}).get("mode", "match") == "match"
        }
        if found and rid not in ids:
            return f"GET {res_type}?{query} did not find {res_type}/{rid}"
        if not found and rid in ids:
            return f"GET {res_type}?{query} found {res_type}/{rid}, which should not match"
        return None

    def _definition(self, res_type: str, param: dict):
        if self._registry is None:
            from hub.search.registry import SearchRegistry

            self._registry = SearchRegistry.load()
        url = param.get("definition")
        found = self._registry.by_url.get(url) if url else None
        if found is None:
            found = self._registry.get(res_type, param.get("name", ""))
        return found if found is not None and found.expression else None

    def _delete_leftovers(self) -> None:
        """Delete what the run created (newest first); failures here are not results."""
        for ref in reversed(self._cleanup):
            try:
                self.http.request("DELETE", ref)
            except EndpointError:
                pass
        self._cleanup.clear()


class Skip(Exception):
    """A check that does not apply (the message says why)."""


def _interactions(declared: dict) -> set[str]:
    return {i.get("code") for i in declared.get("interaction") or []}


def _id_from_location(location: str | None) -> str | None:
    if not location:
        return None
    parts = location.split("/_history")[0].rstrip("/").split("/")
    return parts[-1] if len(parts) >= 2 else None
