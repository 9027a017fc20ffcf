"""ValueSet expansion: the one evaluation of ``compose`` the hub has.

Two shapes of the same evaluation:

* :meth:`Expander.members` gives the expansion itself (system, code, display,
  designations, in the order the code systems list them), for ``$expand``,
  ``ValueSet/$validate-code`` and the search modifiers; a part it cannot evaluate
  (an unknown code system, a filter it does not know) raises :class:`ExpansionError`;
* :meth:`Expander.codes` gives ``{system: [codes] | None}`` for the validator's
  binding checks, where ``None`` means "this system's codes are not checked" (a code
  system not held in full, a filter not evaluated): a binding check must never
  refuse a code only because the hub lacks the content to judge it.

``compose`` follows R4: within an ``include``, the system's selection and each
``valueSet`` are intersected; ``include``s are united and ``exclude``s removed.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from typing import Any

from hub.terminology.model import CodeSystemIndex
from hub.terminology.model import Concept


class ExpansionError(Exception):
    """A value set the hub cannot expand; ``code`` is the OperationOutcome issue code."""

    def __init__(self, message: str, code: str = "not-supported"):
        super().__init__(message)
        self.code = code


@dataclasses.dataclass(slots=True)
class Member:
    system: str | None
    code: str
    display: str | None
    concept: Concept | None = None
    version: str | None = None
    designations: list[dict[str, Any]] | None = None

    @property
    def text(self) -> str:
        if self.concept is not None and self.display == self.concept.display:
            return self.concept.text
        words = [self.code, self.display or ""]
        words += [d.get("value") or "" for d in self.designations or ()]
        return " ".join(words).lower()


# Filters on the concept itself (R4 filter-operator, property ``concept`` or ``code``).
_CONCEPT_PROPERTIES = ("concept", "code")


def filter_codes(cs: CodeSystemIndex, flt: dict[str, Any]) -> set[str]:
    """The codes of ``cs`` that one ``compose.include.filter`` selects."""
    prop, op, value = flt.get("property"), flt.get("op"), flt.get("value")
    if not isinstance(value, str):
        raise ExpansionError(f"filter {prop} {op} has no value", "invalid")
    if prop in _CONCEPT_PROPERTIES:
        if op == "is-a":
            return {value} | cs.descendants(value) if value in cs.concepts else set()
        if op == "descendent-of":
            return set(cs.descendants(value))
        if op == "is-not-a":
            below = {value} | cs.descendants(value)
            return {c for c in cs.concepts if c not in below}
        if op == "generalizes":
            return {value} | cs.ancestors(value) if value in cs.concepts else set()
        if op == "=":
            return {value} if value in cs.concepts else set()
        if op == "in":
            return {c for c in value.split(",") if c in cs.concepts}
        if op == "not-in":
            out = set(value.split(","))
            return {c for c in cs.concepts if c not in out}
        if op == "regex":
            pattern = _regex(value)
            return {c for c in cs.concepts if pattern.fullmatch(c)}
    elif prop == "display" and op in ("=", "regex"):
        if op == "=":
            return {c.code for c in cs.concepts.values() if c.display == value}
        pattern = _regex(value)
        return {c.code for c in cs.concepts.values() if pattern.fullmatch(c.display or "")}
    elif isinstance(prop, str) and op in ("=", "in", "exists", "regex"):
        if op == "exists":
            want = value == "true"
            return {
                c.code for c in cs.concepts.values() if bool(cs.property_value(c, prop)) == want
            }
        if op == "regex":
            pattern = _regex(value)
            return {
                c.code
                for c in cs.concepts.values()
                if any(pattern.fullmatch(v) for v in cs.property_value(c, prop))
            }
        wanted = {value} if op == "=" else set(value.split(","))
        return {c.code for c in cs.concepts.values() if wanted & set(cs.property_value(c, prop))}
    raise ExpansionError(f"the filter '{prop} {op}' is not supported on {cs.url}")


def _regex(value: str) -> re.Pattern:
    try:
        return re.compile(value)
    except re.error as exc:
        raise ExpansionError(f"the filter regex {value!r} is not valid: {exc}", "invalid") from exc


class Expander:
    """Evaluates ``compose`` over the code systems and value sets two resolvers give."""

    def __init__(
        self,
        code_system: Callable[[str], CodeSystemIndex | None],
        value_set: Callable[[str], dict[str, Any] | None],
    ):
        self.code_system = code_system
        self.value_set = value_set
        self._codes: dict[str, dict[str, list[str] | None] | None] = {}

    # -- the expansion ---------------------------------------------------------------------

    def members(self, vs: dict[str, Any], _stack: tuple[str, ...] = ()) -> list[Member]:
        url = vs.get("url")
        if url and url in _stack:
            raise ExpansionError(f"the value set {url} includes itself", "processing")
        stack = (*_stack, url) if url else _stack
        compose = vs.get("compose")
        if not isinstance(compose, dict):
            contains = (vs.get("expansion") or {}).get("contains")
            if contains is None:
                raise ExpansionError(f"the value set {url} has neither compose nor expansion")
            return list(_flatten(contains))
        found: dict[tuple[str | None, str], Member] = {}
        for inc in _dicts(compose.get("include")):
            for m in self._include(inc, stack):
                found.setdefault((m.system, m.code), m)
        for exc in _dicts(compose.get("exclude")):
            for m in self._include(exc, stack):
                found.pop((m.system, m.code), None)
        return list(found.values())

    def members_of(self, url: str, stack: tuple[str, ...] = ()) -> list[Member]:
        vs = self.value_set(url)
        if vs is None:
            raise ExpansionError(f"the value set {url} is not known to this server", "not-found")
        return self.members(vs, stack)

    def _include(self, inc: dict[str, Any], stack: tuple[str, ...]) -> list[Member]:
        system = inc.get("system")
        selected: list[Member] | None = None
        if isinstance(system, str) and system:
            cs = self.code_system(system)
            version = inc.get("version") or (cs.version if cs else None)
            if inc.get("concept"):
                selected = []
                for c in _dicts(inc["concept"]):
                    code = c.get("code")
                    if not isinstance(code, str):
                        continue
                    concept = cs.get(code) if cs else None
                    if cs is not None and cs.complete and concept is None:
                        continue  # not a code of the system: not in the value set
                    display = c.get("display") or (concept.display if concept else None)
                    designations = c.get("designation") or (
                        concept.designations if concept else None
                    )
                    selected.append(Member(system, code, display, concept, version, designations))
            else:
                if cs is None or not cs.concepts:
                    raise ExpansionError(
                        f"the code system {system} is not held in full by this server"
                        " (its codes cannot be listed)"
                    )
                codes: set[str] | None = None
                for flt in _dicts(inc.get("filter")):
                    got = filter_codes(cs, flt)
                    codes = got if codes is None else codes & got
                selected = [
                    Member(system, c.code, c.display, c, version, c.designations)
                    for c in cs.concepts.values()
                    if codes is None or c.code in codes
                ]
        for url in _strings(inc.get("valueSet")):
            sub = self.members_of(url.split("|")[0], stack)
            if selected is None:
                selected = sub
            else:
                keys = {(m.system, m.code) for m in sub}
                selected = [m for m in selected if (m.system, m.code) in keys]
        return selected or []

    # -- the validator's shape -------------------------------------------------------------

    def codes(self, url: str) -> dict[str, list[str] | None] | None:
        """``{system: sorted codes | None}`` of the value set at ``url``, or ``None`` when it
        cannot be judged at all (unknown, or it includes one that cannot)."""
        url = url.split("|")[0]
        if url in self._codes:
            return self._codes[url]
        self._codes[url] = None  # guards against cycles
        vs = self.value_set(url)
        if vs is None:
            return None
        got = self.codes_of(vs)
        self._codes[url] = got
        return got

    def codes_of(self, vs: dict[str, Any]) -> dict[str, list[str] | None] | None:
        compose = vs.get("compose")
        result: dict[str, set[str] | None] = {}
        if isinstance(compose, dict):
            for inc in _dicts(compose.get("include")):
                part = self._include_codes(inc)
                if part is None:
                    return None
                for s, codes in part.items():
                    _merge(result, s, codes)
            for exc in _dicts(compose.get("exclude")):
                for s, codes in (self._include_codes(exc) or {}).items():
                    if codes and result.get(s):
                        result[s] = result[s] - codes
        elif "expansion" in vs:
            for m in _flatten(vs["expansion"].get("contains") or ()):
                if m.system:
                    _merge(result, m.system, {m.code})
        else:
            return None
        return {s: (sorted(c) if c is not None else None) for s, c in result.items()}

    def _include_codes(self, inc: dict[str, Any]) -> dict[str, set[str] | None] | None:
        result: dict[str, set[str] | None] = {}
        system = inc.get("system")
        if isinstance(system, str) and system:
            cs = self.code_system(system)
            if inc.get("concept"):
                result[system] = {c["code"] for c in _dicts(inc["concept"]) if "code" in c}
            elif cs is None or not cs.complete:
                result[system] = None
            else:
                codes: set[str] | None = set(cs.concepts)
                for flt in _dicts(inc.get("filter")):
                    try:
                        codes = codes & filter_codes(cs, flt)
                    except ExpansionError:
                        codes = None  # a filter not evaluated: do not check this system
                        break
                result[system] = codes
        for vs_url in _strings(inc.get("valueSet")):
            sub = self.codes(vs_url)
            if sub is None:
                return None
            for s, codes in sub.items():
                _merge(result, s, None if codes is None else set(codes))
        return result


def _dicts(value: Any) -> list[dict[str, Any]]:
    """The objects of a JSON array (content from files and plugins is not checked on load)."""
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def _strings(value: Any) -> list[str]:
    return [v for v in value if isinstance(v, str)] if isinstance(value, list) else []


def _merge(result: dict, system: str, codes: set | None) -> None:
    if system in result:
        if result[system] is None or codes is None:
            result[system] = None
        else:
            result[system] = result[system] | codes
    else:
        result[system] = codes


def _flatten(contains) -> list[Member]:
    out: list[Member] = []
    for c in contains or ():
        if isinstance(c, dict) and isinstance(c.get("code"), str):
            out.append(Member(c.get("system"), c["code"], c.get("display"), None, c.get("version")))
        if isinstance(c, dict):
            out.extend(_flatten(c.get("contains")))
    return out
