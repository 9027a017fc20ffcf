"""The FHIR R4 definition tables shipped in ``hub/data`` (read once per process)."""

from __future__ import annotations

import functools

import orjson

from hub.paths import DATA_DIR


@functools.cache
def official_search_parameters() -> tuple[dict, ...]:
    """The 1,375 official R4 SearchParameter resources."""
    bundle = orjson.loads((DATA_DIR / "search-parameters.r4.json").read_bytes())
    return tuple(e["resource"] for e in bundle.get("entry", []))


@functools.cache
def _structure() -> dict:
    return orjson.loads((DATA_DIR / "structure.r4.json").read_bytes())


def choice_names() -> frozenset[str]:
    """Names of every choice element (``value`` of ``value[x]``) in R4."""
    return _choice_names()


@functools.cache
def _choice_names() -> frozenset[str]:
    return frozenset(_structure()["choice_names"])


def structure(res_type: str) -> dict | None:
    """``{"summary": [...], "mandatory": [...], "choice": [...]}`` for a resource type."""
    return _structure()["types"].get(res_type)


def resource_types() -> list[str]:
    """Every concrete R4 resource type."""
    return list(_structure()["types"])


@functools.cache
def compartments() -> dict[str, dict[str, list[str]]]:
    """``{"Patient": {"Observation": ["subject", "performer"], ...}, ...}``."""
    return orjson.loads((DATA_DIR / "compartments.r4.json").read_bytes())
