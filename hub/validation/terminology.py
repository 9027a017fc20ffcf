"""ValueSet expansion over the CodeSystems the hub holds.

An expansion is ``{system: [codes]}``; ``None`` in place of the code list means the system is
not held in full (LOINC, SNOMED CT, UCUM...) and its codes are not checked. Filters other than
``concept is-a`` / ``descendent-of`` make the system unchecked too.
"""

from __future__ import annotations


def all_codes(cs: dict) -> list[str]:
    """Every code of a CodeSystem resource, hierarchy flattened."""
    out: list[str] = []

    def walk(concepts):
        for c in concepts:
            out.append(c["code"])
            walk(c.get("concept", ()))

    walk(cs.get("concept", ()))
    return out


class Terminology:
    """Expands ValueSets over the CodeSystems of the package."""

    def __init__(self, value_sets: dict, code_systems: dict):
        self.value_sets = value_sets
        self.code_systems = code_systems
        self._cache: dict[str, dict | None] = {}

    def _descendants(self, cs: dict, code: str, include_self: bool) -> list[str]:
        out: list[str] = []

        def find(concepts):
            for c in concepts:
                if c["code"] == code:
                    return c
                hit = find(c.get("concept", ()))
                if hit:
                    return hit
            return None

        def walk(concepts):
            for c in concepts:
                out.append(c["code"])
                walk(c.get("concept", ()))

        node = find(cs.get("concept", ()))
        if node is None:
            return out
        if include_self:
            out.append(code)
        walk(node.get("concept", ()))
        return out

    def _include(self, inc: dict) -> dict[str, set | None] | None:
        result: dict[str, set | None] = {}
        system = inc.get("system")
        if system:
            cs = self.code_systems.get(system)
            if "concept" in inc:
                result[system] = {c["code"] for c in inc["concept"]}
            elif cs is None or cs.get("content") not in ("complete", None):
                result[system] = None
            elif "filter" in inc:
                codes: set | None = None
                for f in inc["filter"]:
                    if f.get("property") == "concept" and f.get("op") in ("is-a", "descendent-of"):
                        got = set(self._descendants(cs, f["value"], f["op"] == "is-a"))
                    else:
                        got = None  # a filter this extract does not evaluate: do not check
                    if got is None:
                        codes = None
                        break
                    codes = got if codes is None else codes & got
                result[system] = codes
            else:
                result[system] = set(all_codes(cs))
        for vs_url in inc.get("valueSet", ()):
            sub = self.expand(vs_url)
            if sub is None:
                return None
            for s, codes in sub.items():
                _merge(result, s, None if codes is None else set(codes))
        return result

    def expand(self, url: str) -> dict[str, list | None] | None:
        url = url.split("|")[0]
        if url in self._cache:
            return self._cache[url]
        self._cache[url] = None  # guards against cycles
        vs = self.value_sets.get(url)
        if vs is None:
            return None
        compose = vs.get("compose")
        result: dict[str, set | None] = {}
        if compose:
            for inc in compose.get("include", ()):
                part = self._include(inc)
                if part is None:
                    return None
                for s, codes in part.items():
                    _merge(result, s, codes)
            for exc in compose.get("exclude", ()):
                part = self._include(exc) or {}
                for s, codes in part.items():
                    if codes and result.get(s):
                        result[s] -= codes
        elif "expansion" in vs:
            for c in vs["expansion"].get("contains", ()):
                _merge(result, c["system"], {c["code"]})
        else:
            return None
        out = {s: (sorted(c) if c is not None else None) for s, c in result.items()}
        self._cache[url] = out
        return out


def _merge(result: dict, system: str, codes: set | None) -> None:
    if system in result:
        if result[system] is None or codes is None:
            result[system] = None
        else:
            result[system] |= codes
    else:
        result[system] = codes
