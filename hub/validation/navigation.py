"""Where things are in an instance and in an element tree, by the short FHIRPath paths that
slicing discriminators use (``code``, ``$this.resource``, ``extension('url').value``)."""

from __future__ import annotations

from typing import Any

from hub.validation.model import Node


def node_at(node: Node, path: str) -> Node | None:
    """The element node at a discriminator ``path`` below ``node`` (``None`` if not there)."""
    path = strip_this(path)
    if path in ("$this", ""):
        return node
    cur = node
    for seg in path.split("."):
        if seg.startswith("ofType(") or seg == "resolve()":
            continue
        if seg.startswith("extension(") or seg.startswith("extension('"):
            url = seg[seg.index("(") + 1 : -1].strip("'\"")
            ext = cur.children.get("extension")
            found = None
            for s in ext.slices if ext else ():
                if any(url in t.profiles for t in s.types):
                    found = s
            if found is None:
                return None
            cur = found
            continue
        nxt = cur.children.get(seg)
        if nxt is None:
            for concrete, (n, _t) in cur.choices.items():
                if n.name == seg or concrete == seg:
                    nxt = n
                    break
        if nxt is None:
            return None
        cur = nxt
    return cur


def values_at(value: Any, path: str) -> list:
    """The instance values at a discriminator ``path`` below ``value`` (choices included)."""
    path = strip_this(path)
    if path in ("$this", ""):
        return [value]
    cur = [value]
    for seg in path.split("."):
        if seg == "resolve()" or seg.startswith("ofType("):
            continue
        nxt = []
        if seg.startswith("extension("):
            url = seg[seg.index("(") + 1 : -1].strip("'\"")
            for v in cur:
                if isinstance(v, dict):
                    nxt.extend(
                        e
                        for e in v.get("extension", ())
                        if isinstance(e, dict) and e.get("url") == url
                    )
            cur = nxt
            continue
        for v in cur:
            if not isinstance(v, dict):
                continue
            got = v.get(seg)
            if got is None:
                for k in v:
                    if k.startswith(seg) and k[len(seg) : len(seg) + 1].isupper():
                        got = v[k]
            if isinstance(got, list):
                nxt.extend(got)
            elif got is not None:
                nxt.append(got)
        cur = nxt
    return cur


def type_at(value: Any, path: str, ctype: str | None) -> set[str]:
    """Possible type names of the value at ``path`` (``valueString`` -> string/String)."""
    path = strip_this(path)
    if path == "$this":
        if isinstance(value, dict) and "resourceType" in value:
            return {value["resourceType"]}
        return {ctype} if ctype else set()
    found = values_at(value, path.replace(".resolve()", ""))
    if found and isinstance(found[0], dict) and "resourceType" in found[0]:
        return {found[0]["resourceType"]}
    parent = values_at(value, path.rsplit(".", 1)[0]) if "." in path else [value]
    stem = path.rsplit(".", 1)[-1]
    out: set[str] = set()
    for p in parent:
        if not isinstance(p, dict):
            continue
        for k in p:
            suffix = k[len(stem) :]
            if k.startswith(stem) and suffix[:1].isupper():
                out |= {suffix, suffix[0].lower() + suffix[1:]}
    return out


def strip_this(path: str) -> str:
    """``$this.resource`` -> ``resource``."""
    return path[6:] if path.startswith("$this.") else path


def absent(obj: dict, name: str) -> bool:
    """No ``name`` in ``obj``: neither the element, its ``_name`` nor a ``name[x]`` choice."""
    if name in obj or "_" + name in obj:
        return False
    n = len(name)
    return not any(k.startswith(name) and k[n : n + 1].isupper() for k in obj)
