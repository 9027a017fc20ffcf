"""Who is asking: the :class:`Principal` of a request, and the per-request context.

The HTTP layer authenticates a request and sets its principal with
:func:`acting_as`; the FHIR service, the repository's write guard and the
search assembly read it with :func:`current`. Code running outside a request
(the CLI, ingestion workers, migrations) has no principal and acts as the hub
itself, unrestricted: every route that serves a remote caller sets one.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
from typing import Any

from hub import outcomes
from hub.security import labels as lbl
from hub.security.scopes import ScopeSet
from hub.security.scopes import compile_scopes

SITE_SOURCE_PREFIX = "urn:fhirhub:site:"
DEFAULT_PURPOSE = "TREAT"


@dataclasses.dataclass(frozen=True)
class Principal:
    """An authenticated caller: a client (system) or a person (user)."""

    subject: str  # client id or username
    kind: str  # "client", "user" or "system"
    scopes: ScopeSet
    grants: frozenset[str] = frozenset()  # label grants (hub.security.labels)
    site: str | None = None  # a site-bound client writes only as this site
    purpose: str = DEFAULT_PURPOSE  # purpose of use (v3-ActReason: TREAT, HPAYMT, HOPERAT...)
    patient: str | None = None  # the patient context of patient/ scopes
    roles: tuple[str, ...] = ()
    jurisdiction: str | None = None
    client_id: str | None = None  # the client a user's session or token came through
    # The patient compartment of patient/ scopes: the token's patient and the Patient records
    # linked to it (Patient.link, merges: hub.lifetime.links); empty means just ``patient``.
    linked: frozenset[str] = frozenset()
    consent: str | None = None  # the Consent a patient-facing app's token rests on

    # -- scopes ---------------------------------------------------------------

    def can(self, res_type: str, letter: str) -> bool:
        return self.scopes.allows(res_type, letter)

    def require(self, res_type: str, letter: str, what: str | None = None) -> None:
        """Raise 403 unless ``letter`` is granted on ``res_type``."""
        if not self.scopes.allows(res_type, letter):
            raise outcomes.error(
                403,
                "forbidden",
                f"The token's scopes do not allow {what or _VERB[letter]} {res_type}"
                f" (needs {res_type}.{letter} or *.{letter})",
            )

    # -- visibility -----------------------------------------------------------

    @property
    def all_labels(self) -> bool:
        return "*" in self.grants

    @property
    def patient_only(self) -> bool:
        """Only ``patient/`` scopes: limited to the token's patient compartment, read-only."""
        return self.scopes.contexts == frozenset(("patient",))

    def sees(self, resource: dict[str, Any]) -> bool:
        """Whether the labels (and the patient context) let this principal see ``resource``."""
        if not lbl.granted(lbl.required_grants(resource), self.grants):
            return False
        if not self.patient_only:
            return True
        return self.patient is not None and _in_patient(resource, self.compartment)

    @property
    def compartment(self) -> frozenset[str]:
        """The Patient ids of ``patient/`` scopes: the token's patient and its linked records."""
        if self.patient is None:
            return frozenset()
        return self.linked | {self.patient}

    def sees_json(self, content: str | bytes | None) -> bool:
        """:meth:`sees` on stored JSON text; unlabelled content is not parsed."""
        if content is None:
            return True
        if not self.patient_only:
            if self.all_labels:
                return True
            return lbl.granted(lbl.required_grants_json(content), self.grants)
        import orjson

        return self.sees(orjson.loads(content))

    def entitled(self, grant: str) -> bool:
        return "*" in self.grants or grant in self.grants

    # -- audit ----------------------------------------------------------------

    @property
    def display(self) -> str:
        return self.subject if self.kind != "client" else f"client {self.subject}"

    @property
    def site_source(self) -> str | None:
        return SITE_SOURCE_PREFIX + self.site if self.site else None


_VERB = {"c": "creating", "r": "reading", "u": "updating", "d": "deleting", "s": "searching"}


# Where resources without a subject or patient name their Patient (the R4 Patient compartment).
_ACTOR_PATHS = {
    "Appointment": ("participant", "actor"),
    "AppointmentResponse": (None, "actor"),
    "CareTeam": ("participant", "member"),
    "Coverage": (None, "beneficiary"),
    "Group": ("member", "entity"),
    "Schedule": ("actor", None),
}


def _in_patient(resource: dict[str, Any], patients: frozenset[str]) -> bool:
    """Whether ``resource`` is one of ``patients`` or refers to one as its subject/patient
    (or, for the types without either, as the actor of ``_ACTOR_PATHS``)."""
    from hub.storage.repository import fallback_patient_id

    found = fallback_patient_id(resource)
    if found is not None:
        return found in patients
    path = _ACTOR_PATHS.get(str(resource.get("resourceType")))
    if path is None:
        return False
    outer, inner = path
    items = resource.get(outer) if outer else [resource]
    for item in items if isinstance(items, list) else [items]:
        ref = item.get(inner) if isinstance(item, dict) and inner else item
        if isinstance(ref, dict):
            text = ref.get("reference")
            if isinstance(text, str) and text.startswith("Patient/"):
                if text.split("/")[1] in patients:
                    return True
    return False


SYSTEM = Principal("fhirhub", "system", compile_scopes("system/*.cruds"), lbl.ALL)

_current: contextvars.ContextVar[Principal | None] = contextvars.ContextVar(
    "hub_principal", default=None
)
_request: contextvars.ContextVar[dict | None] = contextvars.ContextVar(
    "hub_request_audit", default=None
)


def current() -> Principal | None:
    """The principal of the request being served, or ``None`` for the hub's own work."""
    return _current.get()


def request_info() -> dict | None:
    """Per-request audit facts (interaction, entities, whether a write already audited)."""
    return _request.get()


@contextlib.contextmanager
def acting_as(principal: Principal | None, info: dict | None = None):
    """Run the block as ``principal`` (tests, operations running on a caller's behalf)."""
    t1 = _current.set(principal)
    t2 = _request.set(info if info is not None else {})
    try:
        yield principal
    finally:
        _current.reset(t1)
        _request.reset(t2)


def set_current(principal: Principal | None, info: dict | None = None):
    """Set the principal for the rest of this context (the HTTP layer; undone on teardown)."""
    return _current.set(principal), _request.set(info if info is not None else {})


def reset_current(tokens) -> None:
    t1, t2 = tokens
    _current.reset(t1)
    _request.reset(t2)


def to_record(p: Principal | None) -> dict[str, Any] | None:
    """A principal as stored beside work done later in its name (a bulk job, a Subscription).

    A worker runs long after the request; :func:`from_record` rebuilds the principal so that
    its scopes, label grants, jurisdiction and patient context filter what the work reads.
    """
    if p is None:
        return None
    return {
        "subject": p.subject,
        "kind": p.kind,
        "scopes": p.scopes.text,
        "grants": sorted(p.grants),
        "site": p.site,
        "purpose": p.purpose,
        "patient": p.patient,
        "roles": list(p.roles),
        "jurisdiction": p.jurisdiction,
        "client_id": p.client_id,
    }


def from_record(data: dict[str, Any] | None) -> Principal | None:
    """The principal :func:`to_record` stored (None: the hub's own work, which sees everything)."""
    if not data:
        return None
    return Principal(
        subject=data["subject"],
        kind=data["kind"],
        scopes=compile_scopes(data.get("scopes") or ""),
        grants=frozenset(data.get("grants") or ()),
        site=data.get("site"),
        purpose=data.get("purpose") or "TREAT",
        patient=data.get("patient"),
        roles=tuple(data.get("roles") or ()),
        jurisdiction=data.get("jurisdiction"),
        client_id=data.get("client_id"),
    )
