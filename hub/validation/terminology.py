"""ValueSet expansion for the validator, by the terminology service's one evaluation of
``compose`` (:mod:`hub.terminology.expansion`).

An expansion is ``{system: [codes]}``; ``None`` in place of the code list means the system is
not held in full (LOINC, SNOMED CT, UCUM...) and its codes are not checked. A filter the
service does not evaluate makes the system unchecked too.
"""

from __future__ import annotations

from hub.terminology.expansion import Expander
from hub.terminology.model import CodeSystemIndex


def all_codes(cs: dict) -> list[str]:
    """Every code of a CodeSystem resource, hierarchy flattened."""
    out: list[str] = []

    def walk(concepts):
        for c in concepts:
            out.append(c["code"])
            walk(c.get("concept", ()))

    walk(cs.get("concept", ()))
    return out


class Terminology(Expander):
    """Expands ValueSets over the CodeSystems given (resources by canonical URL)."""

    def __init__(self, value_sets: dict, code_systems: dict):
        self.value_sets = value_sets
        self.code_systems = code_systems
        self._indexes: dict[str, CodeSystemIndex | None] = {}
        super().__init__(self._index, lambda url: self.value_sets.get(url.split("|")[0]))

    def _index(self, system: str) -> CodeSystemIndex | None:
        if system not in self._indexes:
            cs = self.code_systems.get(system)
            self._indexes[system] = None if cs is None else CodeSystemIndex(cs)
        return self._indexes[system]

    def expand(self, url: str) -> dict[str, list | None] | None:
        return self.codes(url)
