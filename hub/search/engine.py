"""FHIR search -> SQL over the typed index tables -> :class:`SearchResult`.

Each search parameter becomes ``resource.pk IN (SELECT resource_pk FROM sp_x
WHERE res_type = ? AND param = ? AND <value test>)``; OR values share one
subquery, repeated parameters are ANDed. Chains nest the same construction on
the target type (``target_id IN (SELECT res_id ...)``), ``_has`` inverts it.

Paging is keyset-based: the cursor holds the sort values and ``pk`` of the
last row shown, and the next page is "rows after it" in the sort order, so
concurrent inserts, updates and deletes never repeat or skip a row.
"""

from __future__ import annotations

import base64
import datetime as dt
import time
from collections.abc import Iterable
from dataclasses import dataclass
from dataclasses import field
from urllib.parse import urlencode

import orjson
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Connection
from sqlalchemy.sql import visitors

from hub import outcomes
from hub.outcomes import OperationOutcomeError
from hub.outcomes import issue
from hub.search import values as V
from hub.search.access import Access
from hub.search.access import _visible  # noqa: F401 - hub.lifetime.everything uses it
from hub.search.access import visible
from hub.search.access import within_jurisdiction
from hub.search.elements import apply_elements
from hub.search.elements import apply_summary
from hub.search.indexer import parse_reference
from hub.search.params import PREFIXES
from hub.search.params import invalid
from hub.search.params import not_supported
from hub.search.params import split_escaped
from hub.search.params import split_or
from hub.search.params import split_prefix
from hub.search.params import token_forms
from hub.search.registry import SearchParam
from hub.search.registry import SearchRegistry
from hub.search.token_modifiers import related_codes
from hub.search.token_modifiers import value_set_members
from hub.storage import schema as S
from hub.storage.db import is_timeout
from hub.storage.db import statement_timeout
from hub.storage.statistics import StatisticsKeeper

DEFAULT_COUNT = 20
MAX_COUNT = 1000
MAX_INCLUDE_DEPTH = 4
# Links of one parameter's chains and nested ``_has`` together (``subject:Patient.name``
# is one, ``_has:A:x:_has:B:y:code`` two); SEARCH_MAX_CHAIN_DEPTH in hub.config.
# Each link nests a subquery; SQLite's parser overflows its stack at four ``_has``.
MAX_CHAIN_DEPTH = 3
# Untyped chains fan out over every target type of each reference; past this
# many target subqueries the client must name types (subject:Patient.name).
MAX_CHAIN_BRANCHES = 64

_CONTROL = {
    "_count",
    "_sort",
    "_include",
    "_revinclude",
    "_total",
    "_summary",
    "_elements",
    "_cursor",
    "_explain",
    "_type",
    "_format",
    "_pretty",
}
_UNSUPPORTED = {"_text", "_content", "_query", "_filter", "_contained", "_containedType"}
_TABLES = {
    "string": S.sp_string,
    "token": S.sp_token,
    "date": S.sp_date,
    "number": S.sp_number,
    "quantity": S.sp_quantity,
    "reference": S.sp_reference,
    "uri": S.sp_uri,
    "composite": S.sp_composite,
}
_SORT_COLUMN = {
    "string": "value",
    "token": "code",
    "date": "low",
    "number": "value",
    "quantity": "value",
    "reference": "target_id",
    "uri": "value",
}


@dataclass(slots=True)
class SearchEntry:
    """One resource of a search page, its stored JSON text kept unparsed until the edge."""

    res_type: str
    res_id: str
    content: str  # the stored JSON (or a _summary/_elements subset of it)
    mode: str  # match | include

    def resource(self) -> dict:
        return orjson.loads(self.content)


@dataclass
class SearchResult:
    """One page of a search: matches and includes, links relative to the base URL."""

    entries: list[SearchEntry] = field(default_factory=list)
    total: int | None = None
    self_link: str = ""
    next_link: str | None = None
    prev_link: str | None = None
    next_cursor: str | None = None  # the ``_cursor`` of the next page (None on the last)
    issues: list[dict] = field(default_factory=list)
    explain: dict | None = None


class _Ignored(Exception):
    """A parameter the engine cannot use (unknown, unsupported): warn or 400."""

    def __init__(self, key: str, message: str, code: str = "not-supported"):
        super().__init__(message)
        self.key, self.message, self.code = key, message, code


def _like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _not_deleted(r):
    return r.c.deleted == sa.false()


class SearchEngine:
    """Runs FHIR searches against the resource and index tables."""

    def __init__(
        self,
        registry: SearchRegistry,
        default_tz: dt.tzinfo = V.UTC,
        max_chain_depth: int = MAX_CHAIN_DEPTH,
        statement_timeout: float = 0,
        analyze_interval: float = 0,
    ):
        self.registry = registry
        self.tz = default_tz
        self.max_chain_depth = max_chain_depth
        # Seconds one search may run (0: no limit); SEARCH_TIMEOUT in hub.config.
        self.statement_timeout = statement_timeout
        # Planner statistics on servers without autovacuum; SEARCH_ANALYZE_INTERVAL.
        self.statistics = StatisticsKeeper(analyze_interval)

    # ------------------------------------------------------------------
    # Entry point
    # ------------------------------------------------------------------

    def search(
        self,
        conn: Connection,
        res_type: str | None,
        params: list[tuple[str, str]],
        *,
        compartment: tuple[str, str] | None = None,
        strict: bool = False,
        base_url: str = "",
        hidden_labels: Iterable[tuple[str, str]] = (),
        access: Access | None = None,
    ) -> SearchResult:
        """One page of results for ``params`` (see the module docstring).

        ``access`` says what the caller may see (:mod:`hub.search.access`): every
        row the search reads - matches, chain and ``_has`` targets, includes -
        passes its filter. ``hidden_labels`` alone is the short form of an
        ``Access`` with only security labels to hide. The whole search, however
        many statements it runs, is stopped after ``SEARCH_TIMEOUT`` seconds
        (:func:`hub.storage.db.statement_timeout`, no round trip to the server).
        """
        if res_type is not None and not self.registry.is_type(res_type):
            raise invalid("_type", f"unknown resource type '{res_type}'")
        self.statistics.touch(conn.engine)
        try:
            with statement_timeout(conn, self.statement_timeout):
                return self._search(
                    conn, res_type, params, compartment, strict, hidden_labels, access
                )
        except sa.exc.OperationalError as err:
            if is_timeout(err):
                raise too_costly(
                    f"The search ran longer than {self.statement_timeout:g} s and was"
                    " stopped; narrow it (more selective parameters, fewer chains or"
                    " _has, a smaller _count) or ask the operator about SEARCH_TIMEOUT",
                    503,
                ) from None
            if "parser stack overflow" in str(err.orig or err).lower():
                raise too_costly(
                    "The search is too complex for the database (nesting of chains, _has"
                    " and OR values); split it or use fewer chain links",
                    400,
                ) from None
            raise

    def _search(self, conn, res_type, params, compartment, strict, hidden_labels, access):
        if access is None and hidden_labels:
            access = Access(hidden_labels=tuple(hidden_labels))
        q = _Query(self, conn, strict)
        q.access = access
        r = _pooled_alias(S.resource, "r")  # the one alias of this name in a statement
        where = [_R_NOT_DELETED]
        if access is not None and access.filters_rows:
            where.append(visible(r, access))
        control: dict[str, list[str]] = {}
        filters = []
        for key, value in params:
            if key.split(":", 1)[0] in _CONTROL:
                control.setdefault(key, []).append(value)
            else:
                filters.append((key, value))
        types = [t for v in control.get("_type", ()) for t in v.split(",") if t]
        unknown = [t for t in types if not self.registry.is_type(t)]
        if unknown:
            raise invalid("_type", f"unknown resource type '{unknown[0]}'")
        for key, value in filters:
            try:
                where.append(q.clause(res_type, r, key, value))
            except _Ignored as ign:
                if res_type or not types or ign.code != "not-found":
                    q.ignore(ign)
                    continue
                # System level with _type: a parameter of the listed types.
                per_type = []
                for t in types:
                    try:
                        per_type.append(sa.and_(r.c.res_type == t, q.clause(t, r, key, value)))
                    except _Ignored:
                        continue
                if per_type:
                    where.append(sa.or_(*per_type))
                else:
                    q.ignore(ign)
        nested = any("." in k or k.startswith("_has:") for k, _ in filters)
        if not nested:
            where = _intersect_index_rows(q, r, where)
        if compartment:
            where.append(self._compartment_clause(q, r, res_type, compartment))
        if res_type and not (compartment or any(id(c) in q.positive for c in where)):
            # With a positive ``pk IN (index subquery)`` the type is already implied
            # (the subquery filters on it); leaving it out lets SQLite drive the
            # query from the index subquery instead of scanning the whole type.
            where.append(r.c.res_type == res_type)
        if types:
            where.append(r.c.res_type.in_(types))

        count = self._count(control)
        summary = _one(control, "_summary")
        if summary not in (None, "true", "false", "text", "data", "count"):
            raise invalid("_summary", f"unknown value '{summary}'")
        total_mode = _one(control, "_total")
        if total_mode not in (None, "none", "estimate", "accurate"):
            raise invalid("_total", f"unknown value '{total_mode}'")
        if summary == "count":
            count = 0
        if count == 0 and total_mode is None:
            total_mode = "accurate"  # _count=0 asks for the total only
        sort_keys = self._sort_keys(q, res_type, r, control.get("_sort", ()))
        cursor = _decode_cursor(_one(control, "_cursor"))

        stmt = sa.select(r.c.pk).where(*where)
        rows, has_next, has_prev, next_cursor, prev_cursor, page_stmt = self._page(
            conn, stmt, r, sort_keys, cursor, count, nested
        )
        result = SearchResult(issues=q.issues)
        if total_mode in ("accurate", "estimate") or (
            total_mode is None and not cursor and not has_next and count > 0
        ):
            if total_mode is None:
                result.total = len(rows)
            else:
                result.total = self._total(conn, r, where, total_mode)

        link_base = _link_base(res_type, compartment)
        kept = [(k, v) for k, v in params if k != "_cursor"]
        result.self_link = link_base + _query_string(params)
        if has_next:
            result.next_cursor = next_cursor
            result.next_link = link_base + _query_string([*kept, ("_cursor", next_cursor)])
        if has_prev:
            result.prev_link = link_base + _query_string([*kept, ("_cursor", prev_cursor)])

        entries = [SearchEntry(t, i, _text(c), "match") for _, t, i, c in rows]
        includes = self._includes(conn, q, rows, control)
        elements = [e for v in control.get("_elements", ()) for e in v.split(",") if e]
        if summary in ("true", "text", "data") or elements:
            for e in entries:
                e.content = _subset(e.content, summary, elements)
            for e in includes:
                e.content = _subset(e.content, summary, ())
        entries += includes
        result.entries = entries
        if _one(control, "_explain") == "true":
            from hub.search.explain import explain

            result.explain = explain(conn, page_stmt if page_stmt is not None else stmt)
        return result

    def visible_keys(
        self, conn: Connection, keys: Iterable[tuple[str, str]], access: Access | None
    ) -> set[tuple[str, str]]:
        """The ``(type, id)`` of ``keys`` whose current rows ``access`` lets through (reads and
        operations apply the search's row filter with this: one rule for every route)."""
        keys = list(dict.fromkeys(keys))
        if access is None or not access.filters_rows:
            return set(keys)
        r = S.resource.alias("r")
        out: set[tuple[str, str]] = set()
        for i in range(0, len(keys), 400):
            chunk = keys[i : i + 400]
            stmt = sa.select(r.c.res_type, r.c.res_id).where(
                sa.tuple_(r.c.res_type, r.c.res_id).in_(chunk), visible(r, access)
            )
            out.update((t, i_) for t, i_ in conn.execute(stmt))
        return out

    def visible_versions(
        self, conn: Connection, keys: Iterable[tuple[str, str, int]], access: Access
    ) -> set[tuple[str, str, int]]:
        """The ``(type, id, version)`` of ``keys`` inside ``access.jurisdiction``, each judged
        by the patient compartment of that version (history)."""
        keys = list(dict.fromkeys(keys))
        if not access.jurisdiction:
            return set(keys)
        h = S.resource_history.alias("h")
        out: set[tuple[str, str, int]] = set()
        for i in range(0, len(keys), 300):
            chunk = keys[i : i + 300]
            stmt = sa.select(h.c.res_type, h.c.res_id, h.c.version).where(
                sa.tuple_(h.c.res_type, h.c.res_id, h.c.version).in_(chunk),
                within_jurisdiction(h, access.jurisdiction),
            )
            out.update(tuple(row) for row in conn.execute(stmt))
        return out

    # ------------------------------------------------------------------
    # Paging, sorting, totals
    # ------------------------------------------------------------------

    def _count(self, control) -> int:
        raw = _one(control, "_count")
        if raw is None:
            return DEFAULT_COUNT
        try:
            n = int(raw)
        except ValueError:
            raise invalid("_count", f"'{raw}' is not a whole number") from None
        if n < 0:
            raise invalid("_count", "must not be negative")
        return min(n, MAX_COUNT)

    def _sort_keys(self, q, res_type, r, sorts) -> list:
        keys = []
        for spec in (s for v in sorts for s in v.split(",") if s):
            desc = spec.startswith("-")
            name = spec[1:] if desc else spec
            if name == "_id":
                col = r.c.res_id
            elif name == "_lastUpdated":
                col = r.c.last_updated
            else:
                p = self.registry.get(res_type, name)
                if p is None or p.type not in _SORT_COLUMN:
                    q.ignore(_Ignored("_sort", f"cannot sort by '{name}'"))
                    continue
                t = q.alias(_TABLES[p.type])
                col = _SORTS.get((t, r, name, desc))
                if col is None:  # built once per pooled alias, parameter and direction
                    column = t.c[_SORT_COLUMN[p.type]]
                    if p.type == "date" and desc:
                        column = t.c.high
                    agg = sa.func.max(column) if desc else sa.func.min(column)
                    col = (
                        sa.select(agg)
                        .where(t.c.resource_pk == r.c.pk, t.c.param == name)
                        .scalar_subquery()
                    )
                    if len(_SORTS) >= _ROWS_KEPT:
                        _SORTS.clear()
                    _SORTS[(t, r, name, desc)] = col
            keys.append((col, desc))
        return keys

    def _page(self, conn, stmt, r, sort_keys, cursor, count, nested=False):
        """One page by keyset: rows after (or before) the cursor's sort values and pk.

        The cursor holds the sort values and pk of the last (first) row shown, so
        inserts, updates and deletes elsewhere never shift or repeat rows.
        """
        if count == 0:
            return [], False, False, None, None, None
        exprs = [e for e, _ in sort_keys]
        # PostgreSQL: the page's pks first, then the JSON of those rows (_with_content).
        # SQLite keeps the JSON inline in pk order (it reads the matches in that order
        # and stops at the LIMIT), and its parser's stack has no room for the extra
        # level of nesting under three _has links; but a sort would carry every
        # match's JSON through SQLite's sorter, so a sorted page of a search without
        # chains or _has chooses its pks first there too.
        inline = conn.dialect.name != "postgresql" and (not sort_keys or nested)
        if inline:
            stmt = stmt.add_columns(r.c.res_type, r.c.res_id, r.c.content)
        # The page is ordered by these output columns: SQLite would evaluate a sort
        # subquery written again in ORDER BY a second time for every match. They come
        # back undecoded (NullType): only the first and last row's values make the
        # cursors, so only those are turned into Python values (``decode``), not a
        # timestamp per row of the page.
        labels = [
            sa.type_coerce(e, sa.types.NullType()).label(f"sort_{i}") for i, e in enumerate(exprs)
        ]
        stmt = stmt.add_columns(*labels)
        backwards = cursor.get("d") == "b"
        if "p" in cursor:
            values = cursor.get("v", [])
            if len(values) != len(sort_keys):
                raise invalid("_cursor", "the cursor does not match _sort")
            stmt = stmt.where(_keyset(sort_keys, values, r.c.pk, cursor["p"], backwards))
        order = []
        for label, (_, desc) in zip(labels, sort_keys, strict=True):
            if backwards:
                order.append((label.asc() if desc else label.desc()).nulls_first())
            else:
                order.append((label.desc() if desc else label.asc()).nulls_last())
        order.append(r.c.pk.desc() if backwards else r.c.pk.asc())
        page_stmt = stmt.order_by(*order).limit(count + 1)
        if not inline:
            page_stmt = _with_content(page_stmt, sort_keys, backwards)
        result = conn.execute(page_stmt)
        # The driver's type of each sort column picks its decoder, as SQLAlchemy would.
        described = result.cursor.description
        decoders = [
            e.type._cached_result_processor(conn.dialect, described[4 + i][1])
            for i, e in enumerate(exprs)
        ]
        rows = list(result)
        more = len(rows) > count
        rows = rows[:count]
        if backwards:
            rows.reverse()
            has_next, has_prev = True, more
        else:
            has_next, has_prev = more, "p" in cursor
        n = len(sort_keys)

        def mark(row, direction):
            values = [
                v if decode is None else decode(v)
                for v, decode in zip(row[4 : 4 + n], decoders, strict=True)
            ]
            return _encode_cursor(
                {"d": direction, "p": row[0], "v": [_json_value(v) for v in values]}
            )

        next_c = mark(rows[-1], "a") if rows and has_next else None
        prev_c = mark(rows[0], "b") if rows and has_prev else None
        rows = [tuple(row[:4]) for row in rows]
        return rows, bool(next_c), bool(prev_c), next_c, prev_c, page_stmt

    def _total(self, conn, r, where, mode) -> int:
        stmt = sa.select(sa.func.count()).select_from(r).where(*where)
        if mode == "estimate" and conn.dialect.name == "postgresql":
            compiled = stmt.compile(dialect=conn.dialect, compile_kwargs={"literal_binds": True})
            plan = conn.exec_driver_sql("EXPLAIN (FORMAT JSON) " + str(compiled)).scalar()
            plan = plan if isinstance(plan, list) else orjson.loads(plan)
            node = plan[0]["Plan"]
            while node.get("Plans") and node.get("Node Type") == "Aggregate":
                node = node["Plans"][0]
            return int(node.get("Plan Rows", 0))
        return int(conn.execute(stmt).scalar() or 0)

    # ------------------------------------------------------------------
    # Compartments, includes
    # ------------------------------------------------------------------

    def _compartment_clause(self, q, r, res_type, compartment):
        comp_type, comp_id = compartment
        c = q.alias(S.compartment)
        sub = sa.select(c.c.resource_pk).where(c.c.comp_type == comp_type, c.c.comp_id == comp_id)
        if res_type:
            sub = sub.where(c.c.res_type == res_type)
        return r.c.pk.in_(sub)

    def _includes(self, conn, q, rows, control) -> list[SearchEntry]:
        if not rows:
            return []
        seen = {(t, i) for _, t, i, _ in rows}
        out: list = []
        frontier = [(pk, t, i) for pk, t, i, _ in rows]
        specs = []
        for key, vals in control.items():
            name, _, mod = key.partition(":")
            if name not in ("_include", "_revinclude"):
                continue
            if mod not in ("", "iterate", "recurse"):
                raise invalid(key, f"unknown modifier ':{mod}'")
            for v in vals:
                specs.append((name == "_revinclude", bool(mod), v, key))
        if not specs:
            return []
        depth = 0
        first = True
        while frontier and depth < MAX_INCLUDE_DEPTH:
            found = []
            for rev, iterate, spec, key in specs:
                if not first and not iterate:
                    continue
                for pk, t, i, content in self._include_one(conn, q, frontier, rev, spec, key):
                    if (t, i) not in seen:
                        seen.add((t, i))
                        found.append((pk, t, i))
                        out.append(SearchEntry(t, i, _text(content), "include"))
            frontier = found
            first = False
            depth += 1
        return out

    def _include_one(self, conn, q, frontier, rev, spec, key):
        parts = spec.split(":")
        if spec == "*":
            src_type, pname, target = None, "*", None
        elif len(parts) in (2, 3):
            src_type, pname = parts[0], parts[1]
            target = parts[2] if len(parts) == 3 else None
        else:
            raise invalid(key, f"'{spec}' is not Type:parameter[:targetType]")
        if src_type and not self.registry.is_type(src_type):
            raise invalid(key, f"unknown resource type '{src_type}'")
        if pname == "*":
            pnames = None
        else:
            p = self.registry.get(src_type, pname)
            if p is None or p.type != "reference":
                raise invalid(key, f"'{pname}' is not a reference parameter of {src_type}")
            pnames = [pname]
        ref = S.sp_reference.alias()
        res = S.resource.alias()
        if not rev:
            pks = [pk for pk, t, _ in frontier if src_type in (None, t)]
            if not pks:
                return []
            sub = sa.select(ref.c.target_type, ref.c.target_id).where(
                ref.c.resource_pk.in_(pks), ref.c.target_id.is_not(None)
            )
            if src_type:
                sub = sub.where(ref.c.res_type == src_type)
            if pnames:
                sub = sub.where(ref.c.param.in_(pnames))
            if target:
                sub = sub.where(ref.c.target_type == target)
            targets: dict[str, set] = {}
            for tt, ti in conn.execute(sub):
                if tt:
                    targets.setdefault(tt, set()).add(ti)
            if not targets:
                return []
            cond = sa.or_(
                *[
                    sa.and_(res.c.res_type == tt, res.c.res_id.in_(sorted(ids)))
                    for tt, ids in targets.items()
                ]
            )
        else:
            by_type: dict[str, list] = {}
            for _, t, i in frontier:
                if target in (None, t):
                    by_type.setdefault(t, []).append(i)
            if not by_type:
                return []
            sub = sa.select(ref.c.resource_pk).where(
                sa.or_(
                    *[
                        sa.and_(ref.c.target_type == t, ref.c.target_id.in_(ids))
                        for t, ids in by_type.items()
                    ]
                )
            )
            if src_type:
                sub = sub.where(ref.c.res_type == src_type)
            if pnames:
                sub = sub.where(ref.c.param.in_(pnames))
            cond = res.c.pk.in_(sub)
        stmt = sa.select(res.c.pk, res.c.res_type, res.c.res_id, res.c.content).where(
            cond, _not_deleted(res), visible(res, q.access)
        )
        return list(conn.execute(stmt))


# ----------------------------------------------------------------------
# The clause builder (one per search request)
# ----------------------------------------------------------------------


class _Query:
    def __init__(self, engine: SearchEngine, conn: Connection, strict: bool):
        self.engine = engine
        self.registry = engine.registry
        self.conn = conn
        self.strict = strict
        self.issues: list[dict] = []
        # ids of clauses that are ``pk IN (rows of this type)`` (they imply the type),
        # each with its subquery of index rows
        self.positive: dict[int, sa.Select] = {}
        self.branches = 0
        self.access: Access | None = None
        self._aliases: dict[str, int] = {}

    def alias(self, table: sa.Table) -> sa.Alias:
        """An alias of ``table`` not used yet in this search's statement (see ``_pooled_alias``)."""
        n = self._aliases.get(table.name, 0)
        self._aliases[table.name] = n + 1
        return _pooled_alias(table, n)

    def _pk_in(self, r, sub):
        clause = r.c.pk.in_(sub)
        self.positive[id(clause)] = sub
        return clause

    def ignore(self, ign: _Ignored) -> None:
        if self.strict:
            raise not_supported(ign.key, ign.message)
        self.issues.append(
            issue(
                "warning",
                ign.code,
                f"Search parameter '{ign.key}' ignored: {ign.message}",
                f"http.{ign.key}",
            )
        )

    # -- dispatch -----------------------------------------------------------

    def clause(self, res_type: str | None, r, key: str, value: str):
        """The SQL condition on the resource alias ``r`` for one ``key=value``."""
        links = key.count(".") + key.count("_has:")
        if links > self.engine.max_chain_depth:
            raise invalid(
                key,
                f"{links} chained or _has links; this server allows at most"
                f" {self.engine.max_chain_depth} in one parameter",
            )
        if key.startswith("_has:"):
            return self._has(res_type, r, key, value)
        if "." in key:
            head, rest = key.split(".", 1)
            return self._chain(res_type, r, key, head, rest, value)
        name, _, modifier = key.partition(":")
        if name in _UNSUPPORTED:
            raise _Ignored(key, "not supported by this server")
        if name == "_id":
            return self._id(r, key, modifier, value)
        if name == "_lastUpdated":
            return self._last_updated(r, key, modifier, value)
        if name == "_list":
            return self._list(res_type, r, value)
        p = self.registry.get(res_type, name)
        if p is None:
            where = f"for {res_type}" if res_type else "at system level"
            raise _Ignored(key, f"unknown search parameter {where}", "not-found")
        if p.type == "special" or (not p.expression and p.type != "composite"):
            raise _Ignored(key, "not supported by this server")
        if modifier == "missing":
            if value not in ("true", "false"):
                raise invalid(key, "':missing' takes true or false")
            t = self.alias(_TABLES[p.type])
            sub = self._rows(t, res_type, p.code)
            return r.c.pk.not_in(sub) if value == "true" else r.c.pk.in_(sub)
        if modifier and modifier not in p.modifiers:
            if not (p.type == "reference" and self.registry.is_type(modifier)):
                raise not_supported(key, f"modifier ':{modifier}' is not supported")
        return self._values(res_type, r, key, p, modifier, value)

    def _rows(self, t, res_type, param):
        """``SELECT resource_pk FROM t WHERE param = ? [AND res_type = ?]``, built once per
        pooled alias, type and parameter (the parameter's value tests are added to it)."""
        key = (t, res_type, param)
        sub = _ROWS.get(key)
        if sub is None:
            sub = sa.select(t.c.resource_pk).where(t.c.param == param)
            if res_type:
                sub = sub.where(t.c.res_type == res_type)
            if len(_ROWS) >= _ROWS_KEPT:
                _ROWS.clear()
            _ROWS[key] = sub
        return sub

    def _values(self, res_type, r, key, p: SearchParam, modifier, value):
        ors = split_or(value)
        if not any(ors):
            raise invalid(key, "empty value")
        t = self.alias(_TABLES[p.type])
        param = p.code
        negate = False
        if p.type == "token":
            if modifier == "of-type":
                param = p.code + ":of-type"
            elif modifier in ("not", "not-in"):
                negate = True
            if modifier in ("", "not"):
                ors = [form for v in ors for form in token_forms(v)]
            tests = [self._token(t, key, modifier, v) for v in ors]
        elif p.type == "string":
            tests = [self._string(t, key, modifier, v) for v in ors]
        elif p.type == "date":
            tests = [self._date(t.c.low, t.c.high, key, v) for v in ors]
        elif p.type == "number":
            tests = [self._number(t.c.value, key, v) for v in ors]
        elif p.type == "quantity":
            tests = [self._quantity(t, key, v) for v in ors]
        elif p.type == "reference":
            tests = [self._reference(t, key, p, modifier, v) for v in ors]
        elif p.type == "uri":
            tests = [self._uri(t, key, modifier, v) for v in ors]
        elif p.type == "composite":
            tests = [self._composite(t, key, p, v) for v in ors]
        else:
            raise _Ignored(key, f"parameter type '{p.type}' is not supported")
        sub = self._rows(t, res_type, param).where(tests[0] if len(tests) == 1 else sa.or_(*tests))
        if negate:
            return r.c.pk.not_in(sub)
        return self._pk_in(r, sub) if res_type else r.c.pk.in_(sub)

    # -- per type -------------------------------------------------------------

    def _token(self, t, key, modifier, v):
        if modifier == "text":
            return t.c.text.like(_like_escape(V.normalise(v)) + "%", escape="\\")
        if modifier in ("in", "not-in"):
            return self._in_valueset(t, key, v)
        if modifier in ("above", "below"):
            return self._subsumption(t, key, modifier, v)
        if modifier == "of-type":
            parts = split_escaped(v, "|")
            if len(parts) != 3 or not parts[1] or not parts[2]:
                raise invalid(key, "':of-type' needs system|code|value")
            return sa.and_(
                t.c.system == parts[0] if parts[0] else sa.true(),
                t.c.code == f"{parts[1]}|{parts[2]}",
            )
        parts = split_escaped(v, "|", 1)
        if len(parts) == 1:
            return t.c.code == parts[0]
        system, code = parts
        if not system and not code:
            raise invalid(key, "'|' needs a system or a code")
        if not system:
            return sa.and_(t.c.system.is_(None), t.c.code == code)
        if not code:
            return t.c.system == system
        return sa.and_(t.c.code == code, t.c.system == system)

    def _subsumption(self, t, key, modifier, v):
        """``:below`` (the code or its descendants) and ``:above`` (it or its ancestors).

        The hierarchy is the nesting of ``concept`` in a CodeSystem stored in the hub.
        """
        parts = split_escaped(v, "|", 1)
        if len(parts) != 2 or not parts[0] or not parts[1]:
            raise invalid(key, f"':{modifier}' needs system|code")
        system, code = parts
        codes = related_codes(self.engine, system, code, modifier)
        if codes is not None:
            return sa.and_(t.c.system == system, t.c.code.in_(sorted(codes)))
        tree = _codesystem_parents(self.conn, system)
        if tree is None:
            raise invalid(key, f"CodeSystem '{system}' is not known to this server")
        if code not in tree:
            return sa.false()
        codes = {code}
        if modifier == "above":
            parent = tree[code]
            while parent is not None and parent not in codes:
                codes.add(parent)
                parent = tree.get(parent)
        else:
            grew = True
            while grew:
                more = {c for c, p in tree.items() if p in codes} - codes
                codes |= more
                grew = bool(more)
        return sa.and_(t.c.system == system, t.c.code.in_(sorted(codes)))

    def _in_valueset(self, t, key, url):
        found = value_set_members(self.engine, url)
        codes, systems = found if found is not None else _valueset_members(self.conn, url)
        if codes is None:
            raise invalid(key, f"ValueSet '{url}' is not known to this server")
        tests = [t.c.system == s for s in systems]
        by_system: dict = {}
        for s, c in codes:
            by_system.setdefault(s, []).append(c)
        for s, cs in by_system.items():
            tests.append(
                sa.and_(t.c.system == s if s else sa.true(), t.c.code.in_(sorted(set(cs))))
            )
        return sa.or_(*tests) if tests else sa.false()

    def _string(self, t, key, modifier, v):
        if modifier == "exact":
            return t.c.exact == v
        norm = V.normalise(v)
        if modifier == "contains":
            return t.c.value.like("%" + _like_escape(norm) + "%", escape="\\")
        if self.conn.dialect.name == "sqlite":
            # Values are already folded, so a binary range is the prefix test,
            # and SQLite can seek the index with it (it cannot for LIKE).
            return sa.and_(t.c.value >= norm, t.c.value < norm + "\U0010ffff")
        return t.c.value.like(_like_escape(norm) + "%", escape="\\")

    def _date(self, low, high, key, v):
        prefix, text = split_prefix(v.replace(" ", "+"))
        rng = V.date_range(text, self.engine.tz)
        if rng is None:
            raise invalid(key, f"'{v}' is not a valid date")
        qlo, qhi = rng
        if prefix == "eq":
            return sa.and_(low >= qlo, high <= qhi)
        if prefix == "ne":
            return sa.or_(low < qlo, high > qhi)
        if prefix == "gt":
            return high > qhi
        if prefix == "lt":
            return low < qlo
        # ge/le: the target range reaches into [search low, infinity) or
        # (-infinity, search high): overlap semantics, as HAPI and Blaze use.
        if prefix == "ge":
            return high > qlo
        if prefix == "le":
            return low < qhi
        if prefix == "sa":
            return low >= qhi
        if prefix == "eb":
            return high <= qlo
        # ap: within 10 % of the distance from now, at least a day
        now = dt.datetime.now(V.UTC).replace(tzinfo=None)
        slack = max(abs(now - qlo) * 0.1, dt.timedelta(days=1))
        return sa.and_(low < qhi + slack, high > qlo - slack)

    def _number(self, col, key, v):
        prefix, text = split_prefix(v)
        rng = V.decimal_range(text)
        if rng is None:
            raise invalid(key, f"'{v}' is not a number")
        return _compare_number(col, prefix, rng)

    def _quantity(self, t, key, v):
        parts = split_escaped(v, "|")
        if len(parts) not in (1, 3):
            raise invalid(key, "a quantity is number|system|code")
        prefix, text = split_prefix(parts[0])
        rng = V.decimal_range(text)
        if rng is None:
            raise invalid(key, f"'{parts[0]}' is not a number")
        system, code = (parts[1], parts[2]) if len(parts) == 3 else ("", "")
        if code and system in ("", V.UCUM):
            conv = V.canonical_factor(code)
            if conv:
                canon, factor, offset = conv
                crng = tuple(x * factor + offset for x in rng)
                return sa.and_(
                    t.c.canonical_code == canon,
                    _compare_number(t.c.canonical_value, prefix, crng),
                )
        tests = [_compare_number(t.c.value, prefix, rng)]
        if system:
            tests.append(t.c.system == system)
        if code:
            tests.append(t.c.code == code if system else sa.or_(t.c.code == code, t.c.unit == code))
        return sa.and_(*tests)

    def _reference(self, t, key, p: SearchParam, modifier, v):
        if modifier == "identifier":
            parts = split_escaped(v, "|", 1)
            if len(parts) == 1:
                return t.c.identifier_value == parts[0]
            if not parts[1]:
                return t.c.identifier_system == parts[0]
            return sa.and_(t.c.identifier_system == parts[0], t.c.identifier_value == parts[1])
        type_hint = modifier if modifier and modifier != "type" else None
        if v.startswith(("http:", "https:", "urn:")):
            url, _, version = v.partition("|")
            rtype, rid, _, _ = parse_reference(url)
            tests = [t.c.url == url]
            if version:
                tests = [sa.and_(t.c.url == url, t.c.target_version == version)]
            if rtype and rid and not url.startswith("urn:"):
                # An absolute URL on this server's base is the same as Type/id.
                tests.append(sa.and_(t.c.target_type == rtype, t.c.target_id == rid))
            return sa.or_(*tests)
        parts = v.split("/")
        if len(parts) == 2 and parts[0] and parts[1]:
            rtype, rid = parts
            if type_hint and type_hint != rtype:
                raise invalid(key, f"'{v}' does not match the type modifier ':{type_hint}'")
            return sa.and_(t.c.target_type == rtype, t.c.target_id == rid)
        if len(parts) == 4 and parts[2] == "_history":
            return sa.and_(
                t.c.target_type == parts[0],
                t.c.target_id == parts[1],
                t.c.target_version == parts[3],
            )
        if len(parts) != 1 or not v:
            raise invalid(key, f"'{v}' is not a reference (Type/id, id or URL)")
        if type_hint:
            return sa.and_(t.c.target_type == type_hint, t.c.target_id == v)
        return t.c.target_id == v

    def _uri(self, t, key, modifier, v):
        if modifier == "below":
            return t.c.value.like(_like_escape(v) + "%", escape="\\")
        if modifier == "above":
            return sa.literal(v, sa.String).like(t.c.value.concat("%"))
        return t.c.value == v

    def _composite(self, t, key, p: SearchParam, v):
        parts = split_escaped(v, "$")
        if len(parts) != 2 or len(p.components) < 2:
            raise invalid(key, "a composite value is first$second")
        second = self.registry.by_url.get(p.components[1].definition)
        tok = split_escaped(parts[0], "|", 1)
        if len(tok) == 1:
            first = t.c.c1_code == tok[0]
        else:
            first = sa.and_(
                t.c.c1_system == tok[0] if tok[0] else sa.true(),
                t.c.c1_code == tok[1] if tok[1] else sa.true(),
            )
        kind = second.type if second else "token"
        v2 = parts[1]
        if kind == "quantity":
            qp = split_escaped(v2, "|")
            prefix, text = split_prefix(qp[0])
            rng = V.decimal_range(text)
            if rng is None:
                raise invalid(key, f"'{qp[0]}' is not a number")
            tests = [_compare_number(t.c.c2_value, prefix, rng)]
            if len(qp) == 3:
                if qp[1]:
                    tests.append(t.c.c2_system == qp[1])
                if qp[2]:
                    tests.append(t.c.c2_code == qp[2])
            return sa.and_(first, *tests)
        if kind == "number":
            return sa.and_(first, self._number(t.c.c2_value, key, v2))
        if kind == "date":
            return sa.and_(first, self._date(t.c.c2_low, t.c.c2_high, key, v2))
        if kind == "string":
            return sa.and_(
                first, t.c.c2_code.like(_like_escape(V.normalise(v2)) + "%", escape="\\")
            )
        tok2 = split_escaped(v2, "|", 1)
        if len(tok2) == 1:
            return sa.and_(first, t.c.c2_code == tok2[0])
        return sa.and_(
            first,
            t.c.c2_system == tok2[0] if tok2[0] else sa.true(),
            t.c.c2_code == tok2[1] if tok2[1] else sa.true(),
        )

    # -- resource columns ------------------------------------------------------

    def _id(self, r, key, modifier, value):
        ids = [x for x in split_or(value) if x]
        if modifier == "missing":
            return sa.true() if value == "false" else sa.false()
        if modifier not in ("", "not"):
            raise not_supported(key, f"modifier ':{modifier}' is not supported")
        if not ids:
            raise invalid(key, "empty value")
        return r.c.res_id.not_in(ids) if modifier == "not" else r.c.res_id.in_(ids)

    def _last_updated(self, r, key, modifier, value):
        if modifier:
            raise not_supported(key, f"modifier ':{modifier}' is not supported")
        col = r.c.last_updated
        tests = []
        for v in split_or(value):
            prefix, text = split_prefix(v.replace(" ", "+"))
            rng = V.date_range(text, self.engine.tz)
            if rng is None:
                raise invalid(key, f"'{v}' is not a valid date")
            lo, hi = (x.replace(tzinfo=V.UTC) for x in rng)
            tests.append(_instant_test(col, prefix, lo, hi))
        return sa.or_(*tests)

    def _list(self, res_type, r, value):
        if not any(split_or(value)):
            raise invalid("_list", "empty value")
        if self.access is not None:
            self.access.require_search("List", "_list")
        ref = S.sp_reference.alias()
        lst = S.resource.alias()
        ids = sa.select(ref.c.target_id).where(
            ref.c.res_type == "List",
            ref.c.param == "item",
            ref.c.resource_pk.in_(
                sa.select(lst.c.pk).where(
                    lst.c.res_type == "List",
                    lst.c.res_id.in_(split_or(value)),
                    _not_deleted(lst),
                    visible(lst, self.access),
                )
            ),
        )
        if res_type:
            ids = ids.where(ref.c.target_type == res_type)
        return r.c.res_id.in_(ids)

    # -- chains -------------------------------------------------------------------

    def _chain(self, res_type, r, key, head, rest, value):
        name, _, type_hint = head.partition(":")
        p = self.registry.get(res_type, name)
        if p is None:
            raise _Ignored(key, f"unknown search parameter '{name}'", "not-found")
        if p.type != "reference":
            raise invalid(key, f"'{name}' is not a reference parameter; it cannot be chained")
        if type_hint:
            if not self.registry.is_type(type_hint):
                raise invalid(key, f"unknown resource type '{type_hint}'")
            targets = [type_hint]
        else:
            targets = list(p.target) or self.registry.all_types()
        next_name = rest.split(".", 1)[0].split(":", 1)[0]
        targets = [
            tt
            for tt in targets
            if next_name in ("_id", "_lastUpdated", "_has")
            or self.registry.get(tt, next_name) is not None
        ]
        if not targets:
            raise _Ignored(key, f"no target of '{name}' has a parameter '{next_name}'", "not-found")
        access = self.access
        if access is not None and access.can_search is not None:
            # Target types the token may not search are left out (their rows are
            # hidden, so they match nothing); none left: the chain itself is refused.
            allowed = [tt for tt in targets if access.can_search(tt)]
            if not allowed:
                access.require_search(targets[0], key)
            targets = allowed
        self.branches += len(targets)
        if self.branches > MAX_CHAIN_BRANCHES:
            raise invalid(
                key, "the chain is too broad; name the target types (subject:Patient.name)"
            )
        ref = self.alias(S.sp_reference)
        tests = []
        for tt in targets:
            inner = self.alias(S.resource)
            cond = self.clause(tt, inner, rest, value)
            ids = sa.select(inner.c.res_id).where(
                inner.c.res_type == tt, _not_deleted(inner), cond, visible(inner, access)
            )
            tests.append(sa.and_(ref.c.target_type == tt, self._member(ref.c.target_id, ids)))
        sub = self._rows(ref, res_type, name).where(sa.or_(*tests))
        return self._pk_in(r, sub) if res_type else r.c.pk.in_(sub)

    def _has(self, res_type, r, key, value):
        parts = key.split(":", 3)
        if len(parts) != 4 or not all(parts[1:]):
            raise invalid(key, "_has is _has:Type:reference:parameter")
        _, other, ref_param, rest = parts
        if not res_type:
            raise invalid(key, "_has needs a resource type")
        if not self.registry.is_type(other):
            raise invalid(key, f"unknown resource type '{other}'")
        p = self.registry.get(other, ref_param)
        if p is None or p.type != "reference":
            raise invalid(key, f"'{ref_param}' is not a reference parameter of {other}")
        if self.access is not None:
            self.access.require_search(other, key)
        inner = self.alias(S.resource)
        cond = self.clause(other, inner, rest, value)
        if _statistics_fresh(self.conn):
            return self._has_exists(res_type, r, other, ref_param, inner, cond)
        ref = self.alias(S.sp_reference)
        pks = sa.select(inner.c.pk).where(
            inner.c.res_type == other, _not_deleted(inner), cond, visible(inner, self.access)
        )
        ids = sa.select(ref.c.target_id).where(
            ref.c.res_type == other,
            ref.c.param == ref_param,
            ref.c.target_type == res_type,
            self._member(ref.c.resource_pk, pks),
        )
        return self._member(r.c.res_id, ids)

    def _has_exists(self, res_type, r, other, ref_param, inner, cond):
        """``_has`` as ``EXISTS`` over the reference index rows that point at ``r``.

        The planner then chooses: walk ``r`` in page order and probe each row's
        references (a common code: the page is found after a few rows), or start from
        the few index rows of a rare code. Only with statistics (``_statistics_fresh``):
        without them it estimates every step at one row and probes the wrong index for
        every reference.
        """
        ref = self.alias(S.sp_reference)
        links = [
            ref.c.target_type == res_type,
            ref.c.target_id == r.c.res_id,
            ref.c.res_type == other,
            ref.c.param == ref_param,
        ]
        access = self.access
        if _uses_only_pk(cond, inner) and not (access is not None and access.filters_rows):
            # The condition is ``pk IN (index rows)``: test the reference row's own
            # resource_pk. Index rows exist only for current, undeleted resources (a
            # write replaces them, a delete removes them), so the referring resource's
            # row need not be read.
            cond = visitors.replacement_traverse(
                cond, {}, lambda el: ref.c.resource_pk if el is inner.c.pk else None
            )
            return sa.exists(sa.select(ref.c.resource_pk).where(*links, cond))
        return sa.exists(
            sa.select(ref.c.resource_pk).where(
                *links,
                inner.c.pk == ref.c.resource_pk,
                inner.c.res_type == other,
                _not_deleted(inner),
                cond,
                visible(inner, access),
            )
        )

    def _member(self, col, sub):
        """``col IN (sub)`` for the links of chains and ``_has``.

        On PostgreSQL ``col = ANY((SELECT array_agg(...) ...))`` instead: the subquery
        is an InitPlan run once, and its values drive index lookups on ``col``. As a
        join (what ``IN`` becomes) the plan hinges on the planner's row estimates, and
        on tables never analysed they made it loop over every reference for every
        match (minutes instead of milliseconds).
        """
        if self.conn.dialect.name != "postgresql":
            return col.in_(sub)
        column = sub.selected_columns[0]
        agg = sub.with_only_columns(sa.func.array_agg(column)).scalar_subquery()
        # The cast makes ``ANY(...)`` take one array value, not the rows of a subquery.
        element = sa.BigInteger() if column.name in ("pk", "resource_pk") else sa.String()
        return col == sa.func.any(sa.cast(agg, postgresql.ARRAY(element)))


# Aliases of the resource and index tables, built once and shared by every search
# (``_Query.alias``): the n-th alias of a table in one statement is always the same
# object. Building an alias copies every column of its table, which was a fifth of
# the CPU of a simple search; the expressions are immutable once built, so searches
# on other threads may share them. Each statement still gets distinct aliases (a
# subquery on the alias of its enclosing query would correlate to it), and they
# stay anonymous so the compiler numbers them without colliding with others.
# The search's own resource alias is named ``r`` (plans and ``_explain`` show it).
_ALIASES: dict[tuple[str, int | str], sa.Alias] = {}


def _pooled_alias(table: sa.Table, n: int | str) -> sa.Alias:
    """The ``n``-th anonymous alias of ``table``, or its alias named ``n``."""
    found = _ALIASES.get((table.name, n))
    if found is None:
        found = table.alias(n if isinstance(n, str) else None)
        found.c  # noqa: B018 - builds the column collection before the alias is shared
        _ALIASES[(table.name, n)] = found
    return found


_R_NOT_DELETED = _not_deleted(_pooled_alias(S.resource, "r"))
# The index rows of one parameter (``_Query._rows``) by (alias, type, parameter): the
# registry bounds them; the bound only guards against a registry that keeps growing.
_ROWS: dict[tuple, sa.Select] = {}
# The sort subqueries of ``_sort_keys``, by (alias, resource alias, parameter, descending).
_SORTS: dict[tuple, sa.ScalarSelect] = {}
_ROWS_KEPT = 20_000


# Seconds a pooled connection trusts its answer of _statistics_fresh.
_STATISTICS_CHECK_INTERVAL = 60.0
# The tables a chain or _has reads; their statistics decide its SQL form.
_PLANNED_TABLES = ("resource", *S.INDEX_TABLES)


def _statistics_fresh(conn) -> bool:
    """Whether PostgreSQL has planner statistics for the resource and index tables.

    Fresh: every table analysed (or vacuumed) at least once and changed by fewer rows
    since than it held then (or 1,000). Without them the planner takes each step to
    return one row, and joins turn into loops over whole indexes (a ``_has`` over
    20,000 Observations: minutes), so ``_has`` then keeps its run-once InitPlan form.
    Autovacuum (or ``hub db analyze`` where it is off) keeps statistics fresh. The
    answer is kept on the pooled connection for ``_STATISTICS_CHECK_INTERVAL`` seconds.
    """
    if conn.dialect.name != "postgresql":
        return False
    info = conn.connection.info
    now = time.monotonic()
    cached = info.get("hub_statistics_fresh")
    if cached is not None and now - cached[0] < _STATISTICS_CHECK_INTERVAL:
        return cached[1]
    names = ", ".join(f"to_regclass('{name}')" for name in _PLANNED_TABLES)
    fresh = conn.exec_driver_sql(
        "SELECT coalesce(bool_and(c.reltuples >= 0 AND"
        " pg_stat_get_mod_since_analyze(c.oid) <= greatest(c.reltuples, 1000)), false)"
        f" FROM pg_class c WHERE c.oid IN ({names})"
    ).scalar()
    info["hub_statistics_fresh"] = (now, bool(fresh))
    return bool(fresh)


def _uses_only_pk(cond, alias) -> bool:
    """Whether ``cond`` reads no column of the resource ``alias`` but its pk."""
    return all(
        el is alias.c.pk
        for el in visitors.iterate(cond)
        if isinstance(el, sa.Column) and el.table is alias
    )


def _intersect_index_rows(q, r, where):
    """``pk IN (a) AND pk IN (b)`` as ``pk IN (a WHERE resource_pk IN (b))``.

    Each positive clause reads its matches' pks from an index table; ANDed side by
    side, SQLite reads the resource row of every pk of the first list (every
    Observation of a common code) before it tests the second, and PostgreSQL may
    too. Intersected among the index rows, only the pks in every list reach the
    resource table. (Chains and ``_has`` keep their clauses as they are: the extra
    nesting would overflow SQLite's parser stack sooner.)
    """
    positive = [c for c in where if id(c) in q.positive]
    if len(positive) < 2:
        return where
    first, *rest = (q.positive[id(c)] for c in positive)
    pk = first.selected_columns[0]
    merged = first.where(*[pk.in_(sub) for sub in rest])
    kept = [c for c in where if id(c) not in q.positive]
    return [*kept, q._pk_in(r, merged)]


def _with_content(page, sort_keys, backwards: bool):
    """The page's rows with their stored JSON, read for the page only.

    ``page`` selects the matches' pks (and sort values) in page order with its
    LIMIT: the database finds and orders the matches from the index tables and the
    resource rows' keys, and reads (and decompresses) the content of at most
    ``_count + 1`` resources, not of every match before it sorts them.
    """
    inner = page.subquery("page")
    res = _pooled_alias(S.resource, "rc")
    sorts = [inner.c[f"sort_{i}"] for i in range(len(sort_keys))]
    order = []
    for col, (_, desc) in zip(sorts, sort_keys, strict=True):
        if backwards:
            order.append((col.asc() if desc else col.desc()).nulls_first())
        else:
            order.append((col.desc() if desc else col.asc()).nulls_last())
    order.append(inner.c.pk.desc() if backwards else inner.c.pk.asc())
    return (
        sa.select(res.c.pk, res.c.res_type, res.c.res_id, res.c.content, *sorts)
        .select_from(inner.join(res, res.c.pk == inner.c.pk))
        .order_by(*order)
    )


def _instant_test(col, prefix, lo, hi):
    """A point in time (``_lastUpdated``) against the search range ``[lo, hi)``."""
    if prefix == "eq":
        return sa.and_(col >= lo, col < hi)
    if prefix == "ne":
        return sa.or_(col < lo, col >= hi)
    if prefix in ("gt", "sa"):
        return col >= hi
    if prefix in ("lt", "eb"):
        return col < lo
    if prefix == "ge":
        return col >= lo
    if prefix == "le":
        return col < hi
    return sa.and_(col >= lo - dt.timedelta(days=1), col < hi + dt.timedelta(days=1))


def _compare_number(col, prefix, rng):
    value, lo, hi = rng
    if prefix == "eq":
        return sa.and_(col >= lo, col < hi)
    if prefix == "ne":
        return sa.or_(col < lo, col >= hi)
    if prefix in ("gt", "sa"):
        return col > value
    if prefix in ("lt", "eb"):
        return col < value
    if prefix == "ge":
        return col >= value
    if prefix == "le":
        return col <= value
    slack = abs(value) * 0.1
    return sa.and_(col >= value - slack, col <= value + slack)


def _codesystem_parents(conn, url) -> dict | None:
    """``{code: parent code or None}`` of a CodeSystem stored in the hub, or None."""
    res = S.resource.alias()
    u = S.sp_uri.alias()
    stmt = sa.select(res.c.content).where(
        res.c.res_type == "CodeSystem",
        _not_deleted(res),
        res.c.pk.in_(
            sa.select(u.c.resource_pk).where(
                u.c.res_type == "CodeSystem", u.c.param == "url", u.c.value == url
            )
        ),
    )
    content = conn.execute(stmt.limit(1)).scalar()
    if content is None:
        return None
    parents: dict = {}

    def walk(concepts, parent):
        for c in concepts or ():
            if isinstance(c, dict) and c.get("code"):
                parents[c["code"]] = parent
                walk(c.get("concept"), c["code"])

    walk(orjson.loads(content).get("concept"), None)
    return parents


def _valueset_members(conn, url) -> tuple[list | None, list]:
    """``(system, code)`` pairs and whole systems of a ValueSet stored in the hub."""
    res = S.resource.alias()
    stmt = sa.select(res.c.content).where(res.c.res_type == "ValueSet", _not_deleted(res))
    if url.startswith("ValueSet/"):
        stmt = stmt.where(res.c.res_id == url.split("/", 1)[1])
    else:
        u = S.sp_uri.alias()
        stmt = stmt.where(
            res.c.pk.in_(
                sa.select(u.c.resource_pk).where(
                    u.c.res_type == "ValueSet", u.c.param == "url", u.c.value == url.split("|")[0]
                )
            )
        )
    content = conn.execute(stmt.limit(1)).scalar()
    if content is None:
        return None, []
    vs = orjson.loads(content)
    codes: list = []
    systems: list = []

    def walk(contains):
        for c in contains or ():
            if c.get("code"):
                codes.append((c.get("system"), c["code"]))
            walk(c.get("contains"))

    walk((vs.get("expansion") or {}).get("contains"))
    for inc in (vs.get("compose") or {}).get("include") or ():
        system = inc.get("system")
        concepts = inc.get("concept")
        if concepts:
            codes.extend((system, c["code"]) for c in concepts if c.get("code"))
        elif system and not inc.get("filter"):
            systems.append(system)
    excluded = {
        (ex.get("system"), c.get("code"))
        for ex in (vs.get("compose") or {}).get("exclude") or ()
        for c in ex.get("concept") or ()
    }
    return [c for c in codes if c not in excluded], systems


# ----------------------------------------------------------------------
# Small helpers
# ----------------------------------------------------------------------


def too_costly(message: str, status: int) -> OperationOutcomeError:
    """A search stopped for its cost (``too-costly``): 503 for a timeout, 400 for complexity."""
    return outcomes.error(status, "too-costly", message)


def _one(control, key):
    vals = control.get(key)
    return vals[-1] if vals else None


def _text(content) -> str:
    if isinstance(content, bytes | bytearray | memoryview):
        return bytes(content).decode()
    return content


def _subset(content, summary, elements) -> str:
    doc = orjson.loads(content)
    if elements:
        doc = apply_elements(doc, elements)
    elif summary:
        doc = apply_summary(doc, summary)
    return orjson.dumps(doc).decode()


def _link_base(res_type, compartment) -> str:
    if compartment:
        return f"{compartment[0]}/{compartment[1]}/{res_type or '*'}"
    return res_type or ""


def _query_string(params) -> str:
    return "?" + urlencode(params) if params else ""


def _json_value(v):
    if isinstance(v, dt.datetime):
        return {"t": v.isoformat()}
    return v


def _from_json_value(v):
    if isinstance(v, dict):
        return dt.datetime.fromisoformat(v["t"])
    return v


def _keyset(sort_keys, values, pk_col, pk, backwards):
    """Rows after (or before) the row with sort ``values`` and ``pk`` (nulls sort last)."""
    ors = []
    ties = []
    for (expr, desc), raw in zip(sort_keys, values, strict=True):
        v = _from_json_value(raw)
        if v is None:
            if backwards:  # every non-null value comes before a null
                ors.append(sa.and_(*ties, expr.is_not(None)))
            ties.append(expr.is_(None))
            continue
        if backwards:
            beyond = expr > v if desc else expr < v
        else:
            beyond = sa.or_(expr < v if desc else expr > v, expr.is_(None))
        ors.append(sa.and_(*ties, beyond))
        ties.append(expr == v)
    ors.append(sa.and_(*ties, pk_col < pk if backwards else pk_col > pk))
    return sa.or_(*ors)


def _encode_cursor(data: dict) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(data)).decode().rstrip("=")


def _decode_cursor(raw: str | None) -> dict:
    if not raw:
        return {}
    try:
        data = orjson.loads(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)))
        if (
            not isinstance(data, dict)
            or not isinstance(data.get("p"), int)
            or not 0 <= data["p"] < 2**63  # a row key: 64-bit on both backends
            or data.get("d") not in ("a", "b")
            or not isinstance(data.get("v"), list)
        ):
            raise ValueError
        for v in data["v"]:
            _from_json_value(v)
        return data
    except (ValueError, TypeError, KeyError, orjson.JSONDecodeError):
        raise invalid("_cursor", "not a cursor this server issued") from None


__all__ = ["SearchEngine", "SearchResult", "OperationOutcomeError", "PREFIXES"]
