"""Snapshot generation: a profile's differential applied over its base definition.

The algorithm works on element ids (``Patient.identifier:residentId.value``):

1. start from a copy of the base snapshot, re-rooted on the profile's type;
2. for each differential element, find the snapshot element with the same id; when it is
   missing, make it: a slice is a copy of the sliced element and its descendants (id suffix
   ``:sliceName``); a child of a complex element is created by unfolding the children of the
   element's (single) type from that type's snapshot; a renamed choice (``valueQuantity``)
   constrains ``value[x]`` to that type;
3. merge the differential's constraints onto it (cardinality, types, binding, fixed and pattern
   values, invariants appended, slicing, min/max values, max length).

Differentials that this does not cover (re-slicing, slices of choice types inside slices, profiles
on types unfolded through ``type.profile``) raise :class:`SnapshotError` so that a bad profile
fails at load, never at validation.
"""

from __future__ import annotations

import copy
import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from hub.validation.definitions import Definitions

# Differential keys that replace the base value; "constraint" is appended instead.
_REPLACE = (
    "min",
    "max",
    "type",
    "binding",
    "slicing",
    "maxLength",
    "mustSupport",
    "short",
    "definition",
    "comment",
    "sliceName",
    "contentReference",
)
_REPLACE_PREFIXES = ("fixed", "pattern", "minValue", "maxValue")

PRIMITIVE_NAME = re.compile(r"^[a-z]")


class SnapshotError(ValueError):
    """A differential the generator cannot apply; the message names the element."""


def _last_segment(eid: str) -> str:
    return _split_id(eid)[-1]


def _split_id(eid: str) -> list[str]:
    # slice names are tokens ([A-Za-z0-9-_/]), so ids split on every dot
    return eid.split(".")


def _path_of(eid: str) -> str:
    return ".".join(seg.split(":")[0] for seg in _split_id(eid))


class _Snapshot:
    def __init__(self, elements: list[dict], defs: Definitions, url: str):
        self.elements = elements
        self.defs = defs
        self.url = url
        # renamed choices met so far: "Observation.valueQuantity" -> "Observation.value[x]"
        self.aliases: dict[str, str] = {}
        self.prohibit: str | None = None  # id of the differential element with max 0

    def _unalias(self, eid: str) -> str:
        segs = _split_id(eid)
        for n in range(len(segs), 0, -1):
            prefix = ".".join(segs[:n])
            if prefix in self.aliases:
                return ".".join([self.aliases[prefix], *segs[n:]])
        return eid

    def index(self, eid: str) -> int | None:
        for i, e in enumerate(self.elements):
            if e.get("id") == eid:
                return i
        return None

    def end_of_subtree(self, i: int) -> int:
        """Index just past element ``i`` and all its descendants (and its slices)."""
        eid = self.elements[i]["id"]
        j = i + 1
        while j < len(self.elements):
            other = self.elements[j]["id"]
            if other.startswith(eid + ".") or other.startswith(eid + ":"):
                j += 1
            else:
                break
        return j

    def ensure(self, eid: str) -> int:
        eid = self._unalias(eid)
        i = self.index(eid)
        if i is not None:
            return i
        segs = _split_id(eid)
        if len(segs) == 1:
            raise SnapshotError(f"{self.url}: element {eid} does not match the base type")
        parent_id = ".".join(segs[:-1])
        last = segs[-1]
        pi = self.ensure(parent_id)
        name, _, slice_name = last.partition(":")
        if slice_name:
            base_i = self.ensure(parent_id + "." + name)
            return self._make_slice(base_i, slice_name)
        # a child of the parent: unfold the parent's type, or resolve a renamed choice
        if not self._has_children(pi):
            self._unfold(pi)
        i = self.index(eid)
        if i is not None:
            return i
        j = self._choice_rename(pi, parent_id, name, eid)
        if j >= 0:
            self.aliases[eid] = self.elements[j]["id"]
        return j

    def _has_children(self, i: int) -> bool:
        eid = self.elements[i]["id"]
        return i + 1 < len(self.elements) and self.elements[i + 1]["id"].startswith(eid + ".")

    def _choice_rename(self, pi: int, parent_id: str, name: str, eid: str) -> int:
        # valueQuantity -> value[x] restricted to Quantity
        for j in range(pi + 1, self.end_of_subtree(pi)):
            e = self.elements[j]
            seg = _last_segment(e["id"])
            if not seg.endswith("[x]") or ":" in seg or e["id"] != parent_id + "." + seg:
                continue
            stem = seg[:-3]
            if not name.startswith(stem):
                continue
            type_name = name[len(stem) :]
            for t in e.get("type", ()):
                code = t["code"]
                if code[0].upper() + code[1:] == type_name:
                    if self.prohibit == eid and len(e["type"]) > 1:
                        # valueQuantity with max 0: every type but Quantity stays allowed
                        e["type"] = [x for x in e["type"] if x is not t]
                        return -1
                    if len(e["type"]) > 1:
                        # R4 style: a renamed choice element is the [x] element with one type
                        e["type"] = [t]
                    return j
        raise SnapshotError(f"{self.url}: element {eid} is not in the base definition")

    def _unfold(self, i: int) -> None:
        e = self.elements[i]
        if "contentReference" in e:
            ref = e["contentReference"].split("#", 1)[1]
            src = self.index(ref)
            if src is None:
                raise SnapshotError(f"{self.url}: contentReference {ref} not found")
            children = [copy.deepcopy(c) for c in self.elements[src + 1 : self.end_of_subtree(src)]]
            old_id, old_path = self.elements[src]["id"], self.elements[src]["path"]
        else:
            types = e.get("type") or []
            codes = {t["code"] for t in types}
            if len(codes) != 1:
                raise SnapshotError(
                    f"{self.url}: cannot constrain children of {e['id']}: it has {len(codes)} types"
                )
            code = types[0]["code"]
            type_sd = self.defs.type_structure(code)
            if type_sd is None:
                raise SnapshotError(f"{self.url}: unknown type {code} at {e['id']}")
            elems = type_sd["snapshot"]["element"]
            children = [copy.deepcopy(c) for c in elems[1:]]
            old_id = old_path = elems[0]["path"]
        new_id, new_path = e["id"], e["path"]
        for c in children:
            c["id"] = new_id + c["id"][len(old_id) :]
            c["path"] = new_path + c["path"][len(old_path) :]
        self.elements[i + 1 : i + 1] = children

    def _make_slice(self, base_i: int, slice_name: str) -> int:
        base = self.elements[base_i]
        end = self.end_of_subtree(base_i)
        base_id = base["id"]
        new_id = base_id + ":" + slice_name
        copies = []
        for e in self.elements[base_i:end]:
            # the sliced element and its own children, not the other slices
            rest = e["id"][len(base_id) :]
            if rest.startswith(":"):
                continue
            c = copy.deepcopy(e)
            c["id"] = new_id + rest
            c.pop("slicing", None)
            copies.append(c)
        copies[0]["sliceName"] = slice_name
        copies[0]["min"] = 0
        self.elements[end:end] = copies
        return end


def _merge(target: dict, diff: dict) -> None:
    for k, v in diff.items():
        if k in ("id", "path"):
            continue
        if k == "constraint":
            have = {c.get("key") for c in target.get("constraint", ())}
            target["constraint"] = list(target.get("constraint", ())) + [
                copy.deepcopy(c) for c in v if c.get("key") not in have
            ]
        elif k in _REPLACE or k.startswith(_REPLACE_PREFIXES):
            target[k] = copy.deepcopy(v)


def generate_snapshot(sd: dict, defs: Definitions) -> list[dict]:
    """Snapshot elements for ``sd`` (a StructureDefinition with a differential)."""
    url = sd.get("url", "?")
    base_url = sd.get("baseDefinition")
    if not base_url:
        raise SnapshotError(f"{url}: no baseDefinition")
    base = defs.structure(base_url)
    if base is None:
        raise SnapshotError(f"{url}: base definition {base_url} is unknown")
    elements = copy.deepcopy(base["snapshot"]["element"])
    root_old = elements[0]["path"]
    root_new = sd.get("type") or root_old
    if root_old != root_new:
        for e in elements:
            e["id"] = root_new + e["id"][len(root_old) :]
            e["path"] = root_new + e["path"][len(root_old) :]
    snap = _Snapshot(elements, defs, url)
    slice_ids: dict[str, str] = {}
    for diff in sd.get("differential", {}).get("element", ()):
        eid = diff.get("id") or _infer_id(diff, slice_ids)
        snap.prohibit = eid if diff.get("max") == "0" else None
        i = snap.ensure(eid)
        if i < 0:
            continue  # a prohibited type of a choice: removed from the [x] element's types
        _merge(snap.elements[i], diff)
    return snap.elements


def _infer_id(diff: dict, slice_ids: dict[str, str]) -> str:
    """The id of a differential element given by path only (older profiles).

    Such differentials list a slice (``sliceName``) and then its children by plain path; the
    children belong to the most recent slice of each ancestor path.
    """
    path = diff["path"]
    segs = path.split(".")
    eid = segs[0]
    for i in range(1, len(segs)):
        prefix = ".".join(segs[: i + 1])
        eid += "." + segs[i]
        if i < len(segs) - 1 and prefix in slice_ids:
            eid = slice_ids[prefix]
    for key in [k for k in slice_ids if k.startswith(path + ".")]:
        del slice_ids[key]
    if diff.get("sliceName"):
        eid += ":" + diff["sliceName"]
        slice_ids[path] = eid
    else:
        slice_ids.pop(path, None)
    return eid
