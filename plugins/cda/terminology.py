"""FHIR CodeSystems for the Chinese code tables the adapter reads (GB/T 2261.1, GB/T 2261.2,
GB 3304 and the WS 364 value domains of ``vocab.DOMAINS``).

The concepts come from the code maps in ``mappings/cda`` (a value-domain map
lists each code with its display) so the two cannot drift; the resulting
resources are stored as ``mappings/cda/CodeSystem-*.json`` for the terminology
service, and ``tests/cda/test_terminology.py`` fails when a stored file no
longer matches its map.
"""

from __future__ import annotations

from fhirhub_plugins.cda import vocab

# National tables whose code maps translate to FHIR codes: their own displays.
_NATIONAL = {
    vocab.OID_SEX: (
        "gbt-2261-1-sex",
        "GB/T 2261.1-2003 人的性别代码",
        {"0": "未知的性别", "1": "男性", "2": "女性", "9": "未说明的性别"},
    ),
    vocab.OID_MARITAL: (
        "gbt-2261-2-marital-status",
        "GB/T 2261.2-2003 婚姻状况代码",
        {
            "10": "未婚",
            "20": "已婚",
            "21": "初婚",
            "22": "再婚",
            "23": "复婚",
            "30": "丧偶",
            "40": "离婚",
            "90": "未说明的婚姻状况",
        },
    ),
}


def _resource(cs_id: str, oid: str, title: str, concepts: dict[str, str]) -> dict:
    return {
        "resourceType": "CodeSystem",
        "id": cs_id,
        "url": f"urn:oid:{oid}",
        "identifier": [{"system": "urn:ietf:rfc:3986", "value": f"urn:oid:{oid}"}],
        "name": "".join(
            part.capitalize() for part in cs_id.replace("-", " ").split() if part.isalnum()
        ),
        "title": title,
        "status": "active",
        "experimental": False,
        "caseSensitive": True,
        "content": "complete" if cs_id in _COMPLETE else "fragment",
        "concept": [{"code": code, "display": display} for code, display in concepts.items()],
    }


_COMPLETE = {"gbt-2261-1-sex", "gbt-2261-2-marital-status", "gb-3304-ethnicity"}


def code_systems(code_maps: dict) -> list[dict]:
    """CodeSystem resources for the national tables and every value domain with a code map."""
    out = []
    for oid, (cs_id, title, concepts) in _NATIONAL.items():
        out.append(_resource(cs_id, oid, title, concepts))
    ethnicity = code_maps["cda-ethnicity"]
    out.append(
        _resource(
            "gb-3304-ethnicity",
            vocab.OID_ETHNICITY,
            "GB 3304-1991 中国各民族名称的罗马字母拼写法和代码",
            {code: t.display for code, t in ethnicity.entries.items()},
        )
    )
    seen = set()
    for key, domain in vocab.DOMAINS.items():
        if domain.oid in seen or domain.code_map not in code_maps:
            continue
        seen.add(domain.oid)
        cmap = code_maps[domain.code_map]
        concepts = {code: t.display or code for code, t in cmap.entries.items()}
        out.append(_resource(f"ws364-{key}", domain.oid, f"{domain.name} ({domain.oid})", concepts))
    return out
