"""What a caller may see, as SQL: the filter every row a search touches passes.

A search touches rows of its own type, and of other types through chains
(``subject:Patient.name``), ``_has``, ``_list``, ``_include``/``_revinclude``
and the criteria of conditional operations. Each of those rows is filtered by
the same :func:`visible` clause, so a row the caller may not see never decides
what is matched, counted or returned (``docs/security.md``). Types the caller
holds no search scope for are refused (403) when a search would read them.

The security layer builds an :class:`Access` from the request's principal
(``hub.security.guard.search_access``); ``None`` is the hub's own work.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import sqlalchemy as sa

from hub import outcomes
from hub.identity import HEALTH_RECORD_SYSTEM
from hub.security.labels import CATEGORIES
from hub.storage import schema as S

# The health-record number (健康档案编号) is 17 digits; its leading 6/9/12 name the
# county/township/village (hub.completeness.jurisdiction, which the dashboard uses).
_RECORD_NO_LENGTH = 17


@dataclasses.dataclass(frozen=True)
class Access:
    """The rows a caller may see.

    ``hidden_labels``: security labels ``(system, code)`` without a grant
    (``hub.security.labels.hidden_labels``). ``can_search(type)``: whether the
    token may search that type (``None``: every type). ``jurisdiction``: a 6-, 9-
    or 12-digit division code or ``Organization/ID``; a Patient is inside when its
    health-record number starts with the code (or its managing organisation is the
    institution), every other resource follows the Patient of its compartment
    (``resource.patient_id``), and resources in no patient compartment stay visible.
    ``patient``: the patient of ``patient/`` scopes (only that compartment), and
    ``linked_patients`` the Patient records linked to it, whose compartments are the person's
    too.
    """

    hidden_labels: tuple[tuple[str, str], ...] = ()
    can_search: Callable[[str], bool] | None = None
    jurisdiction: str | None = None
    patient: str | None = None
    linked_patients: tuple[str, ...] = ()

    @property
    def filters_rows(self) -> bool:
        return bool(self.hidden_labels or self.jurisdiction or self.patient is not None)

    def require_search(self, res_type: str, key: str) -> None:
        """403 naming ``res_type`` when the token may not search it (``key``: the parameter)."""
        if self.can_search is not None and not self.can_search(res_type):
            raise outcomes.error(
                403,
                "forbidden",
                f"Search parameter '{key}' reads {res_type} resources: the token's scopes do"
                f" not allow searching {res_type} (needs {res_type}.s or *.s)",
                f"http.{key}",
            )


def visible(r, access: Access | None):
    """The condition on the resource alias ``r`` that keeps only rows ``access`` may see."""
    if access is None:
        return sa.true()
    tests = []
    if access.hidden_labels:
        tests.append(_visible(r, access.hidden_labels))
    if access.jurisdiction:
        tests.append(within_jurisdiction(r, access.jurisdiction))
    if access.patient is not None:
        if access.linked_patients:
            tests.append(r.c.patient_id.in_((access.patient, *access.linked_patients)))
        else:
            tests.append(r.c.patient_id == access.patient)
    return sa.and_(*tests) if tests else sa.true()


def jurisdiction_patients(code: str):
    """``SELECT res_id`` of the Patients inside jurisdiction ``code``."""
    p = S.resource.alias()
    if code.startswith("Organization/"):
        ref = S.sp_reference.alias()
        members = sa.select(ref.c.resource_pk).where(
            ref.c.res_type == "Patient",
            ref.c.param == "organization",
            ref.c.target_type == "Organization",
            ref.c.target_id == code.split("/", 1)[1],
        )
    else:
        t = S.sp_token.alias()
        members = sa.select(t.c.resource_pk).where(
            t.c.res_type == "Patient",
            t.c.param == "identifier",
            t.c.system == HEALTH_RECORD_SYSTEM,
            # Division codes are digits only: nothing to escape in the pattern.
            t.c.code.like(code + "%"),
            sa.func.length(t.c.code) == _RECORD_NO_LENGTH,
        )
    return sa.select(p.c.res_id).where(p.c.res_type == "Patient", p.c.pk.in_(members))


def within_jurisdiction(r, code: str):
    """Rows of ``r`` in no patient compartment, or whose Patient is inside ``code``."""
    return sa.or_(r.c.patient_id.is_(None), r.c.patient_id.in_(jurisdiction_patients(code)))


def _visible(r, labels):
    """Resources of ``r`` not hidden by the security ``labels`` (``hub.security.labels.hides``).

    A hidden category hides what carries it; a hidden confidentiality level
    (``R``/``V``) hides only what carries no category label at all.
    """
    categories = [label for label in labels if label in CATEGORIES]
    levels = [label for label in labels if label not in CATEGORIES]
    hidden = []
    if categories:
        t = S.sp_token.alias()
        hidden.append(
            sa.select(t.c.resource_pk).where(t.c.param == "_security", _labelled(t, categories))
        )
    if levels:
        t, c = S.sp_token.alias(), S.sp_token.alias()
        any_category = (
            sa.select(c.c.resource_pk)
            .where(
                c.c.resource_pk == t.c.resource_pk,
                c.c.param == "_security",
                _labelled(c, list(CATEGORIES)),
            )
            .exists()
        )
        hidden.append(
            sa.select(t.c.resource_pk).where(
                t.c.param == "_security", _labelled(t, levels), ~any_category
            )
        )
    if not hidden:
        return sa.true()
    return r.c.pk.not_in(hidden[0] if len(hidden) == 1 else sa.union_all(*hidden))


def _labelled(t, labels):
    return sa.or_(*[sa.and_(t.c.system == system, t.c.code == code) for system, code in labels])
