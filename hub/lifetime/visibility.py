"""What a caller may see, applied to every answer of the lifetime operations.

Two layers, both optional:

* ``hidden_labels``: ``(system, code)`` security labels the caller may not see. Applied in
  SQL (the same clause the search engine uses), so hidden resources never leave the
  database and paging counts stay right.
* ``visible``: a callable ``visible(resources) -> resources`` over parsed resources (the
  security layer's ``filter_visible(resources, principal)`` bound to the principal), for
  rules labels cannot express. Applied to every resource before it is returned.

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

    def filter(self, resources: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The resources the caller may see (all of them without a ``visible`` callable)."""
        if self.visible is None or not resources:
            return resources
        return list(self.visible(resources))

    @property
    def restricted(self) -> bool:
        return bool(self.hidden_labels) or self.visible is not None


EVERYTHING = Visibility()


def for_call(call: Any) -> Visibility:
    """The caller's visibility, from the hub's ``visibility_for`` hook when one is set."""
    getter = getattr(call.hub, "visibility_for", None)
    if getter is None:
        return EVERYTHING
    return getter(call) or EVERYTHING
