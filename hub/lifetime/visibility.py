"""What a caller may see, applied to every answer of the lifetime operations.

Layers, all optional:

* ``hidden_labels``: ``(system, code)`` security labels the caller may not see, and
  ``jurisdiction``: the caller's division code or ``Organization/ID``. Applied in SQL (the
  same clauses the search engine uses, :mod:`hub.search.access`), so hidden resources never
  leave the database and paging counts stay right.
* ``visible``: a callable ``visible(resources) -> resources`` over parsed resources (the
  security layer's ``filter_visible(resources, principal)`` bound to the principal), for
  rules labels cannot express. Applied to every resource before it is returned.
* ``entries``: the same rules as ``visible`` (less what the SQL layers already apply) over
  stored JSON that is not parsed: a callable taking objects with ``res_type`` and
  ``content`` (search entries) and returning those the caller may see, in order, never a
  changed copy. ``$everything`` uses it instead of ``visible`` when it is set, so that a
  page of a thousand resources is not parsed and serialised again to be filtered.

The security layer plugs in by setting ``hub.visibility_for`` (a callable taking the
:class:`~hub.operations.OperationCall` and returning a :class:`Visibility`); without it
everything is visible, as for every other endpoint today.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any


@dataclasses.dataclass(frozen=True)
class Visibility:
    hidden_labels: tuple[tuple[str, str], ...] = ()
    visible: Callable[[list[dict[str, Any]]], list[dict[str, Any]]] | None = None
    jurisdiction: str | None = None
    entries: Callable[[list[Any]], list[Any]] | None = None

    def filter(self, resources: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The resources the caller may see (all of them without a ``visible`` callable)."""
        if self.visible is None or not resources:
            return resources
        return list(self.visible(resources))

    def filter_entries(self, entries: list[Any]) -> list[Any]:
        """The stored-JSON ``entries`` the caller may see (needs ``entries`` or no ``visible``)."""
        if self.entries is None or not entries:
            return entries
        return list(self.entries(entries))

    @property
    def restricted(self) -> bool:
        return bool(self.hidden_labels or self.jurisdiction) or self.visible is not None


EVERYTHING = Visibility()


def for_principal(principal: Any, within_jurisdiction: Callable[[list], list]) -> Visibility:
    """The visibility of a request's ``principal`` (``None``: the hub's own work, everything).

    Label categories without a grant and the jurisdiction are filtered in SQL; scopes, the
    R/V levels alone and the patient context by the security layer's ``filter_visible``
    (parsed resources) or ``visible_entries`` (stored JSON, parsed only when labelled or
    under ``patient/`` scopes). ``within_jurisdiction`` filters parsed resources for the
    callers of ``visible`` (the FHIR service's method). A principal who may see everything
    (every read scope, every label, no jurisdiction, no patient context) gets
    :data:`EVERYTHING`: nothing to filter.
    """
    from hub.security import guard
    from hub.security import labels

    if principal is None or guard.sees_everything(principal):
        return EVERYTHING
    return Visibility(
        hidden_labels=labels.hidden_labels(principal.grants),
        visible=lambda resources: within_jurisdiction(guard.filter_visible(resources, principal)),
        jurisdiction=principal.jurisdiction or None,
        entries=lambda entries: guard.visible_entries(entries, principal),
    )


def for_call(call: Any) -> Visibility:
    """The caller's visibility, from the hub's ``visibility_for`` hook when one is set."""
    getter = getattr(call.hub, "visibility_for", None)
    if getter is None:
        return EVERYTHING
    return getter(call) or EVERYTHING
