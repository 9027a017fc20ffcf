"""``Patient/{id}/$everything``: every record of a person, across all linked Patient records.

One page is two or three queries whatever its size: the resources of the linked Patients'
compartments (the ``compartment`` index table, keyset-paged by ``pk``), the resources they
refer to that are in no patient compartment (practitioners, organisations, medications:
``sp_reference`` then one read; never another person's records), and a count on the first
page only. The stored JSON is spliced into the Bundle unparsed: labels and jurisdiction are
filtered in SQL, the caller's other rules by the visibility's ``entries`` filter over the
stored text (a ``visible`` filter alone parses every resource). A Patient the caller may not
see answers 404 exactly as an unknown one.

Parameters (FHIR R4 ``Patient-everything``): ``_since`` (changed at or after an instant),
``_type`` (comma-separated resource types), ``start``/``end`` (clinical dates: resources with a
clinical date outside [start, end] are left out; resources without one, such as the Patient,
are kept), ``_count`` and the ``_cursor`` of the next link.
"""

from __future__ import annotations

import datetime as dt
import urllib.parse

import orjson
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from hub import outcomes
from hub.fhir.limits import count_param
from hub.fhir.limits import row_key_param
from hub.lifetime.links import linked_patient_ids
from hub.lifetime.visibility import EVERYTHING
from hub.lifetime.visibility import Visibility
from hub.search import values as V
from hub.search.engine import SearchEntry
from hub.search.engine import SearchResult
from hub.search.engine import _visible
from hub.search.engine import within_jurisdiction
from hub.storage import schema as s
from hub.validation.structure import known_type

# The search parameters holding a resource's clinical date (when the care happened, not when
# it was recorded in the hub), by name across the resource types of the patient compartment.
CLINICAL_DATE_PARAMS = (
    "date",  # Encounter, Observation, Procedure, DiagnosticReport, Immunization, CarePlan, Flag...
    "onset-date",  # Condition
    "authoredon",  # MedicationRequest
    "authored",  # ServiceRequest, QuestionnaireResponse
    "effective",  # MedicationStatement
    "effective-time",  # MedicationAdministration
    "whenhandedover",  # MedicationDispense
    "created",  # Claim, ExplanationOfBenefit
    "recorded",  # Provenance
    "sent",  # Communication
)
PARAMS = ("_since", "_type", "start", "end", "_count", "_cursor")


def everything(
    conn: Connection,
    patient_id: str,
    params: list[tuple[str, str]],
    *,
    base: str,
    tz: dt.tzinfo = dt.UTC,
    default_count: int = 1000,
    max_count: int = 1000,
    visibility: Visibility = EVERYTHING,
) -> SearchResult:
    """One page of ``$everything``: entries of stored JSON, total, next cursor.

    The REST layer serialises it (:func:`hub.search.bundle.searchset_bytes`, the stored JSON
    spliced unparsed); the lifetime file reads its entries and follows ``next_cursor``.
    """
    args = _args(params)
    _check_patient(conn, patient_id, visibility)
    ids = linked_patient_ids(conn, patient_id)
    r = s.resource.alias("r")
    c = s.compartment
    where = [
        r.c.pk.in_(
            sa.select(c.c.resource_pk).where(c.c.comp_type == "Patient", c.c.comp_id.in_(ids))
        ),
        r.c.deleted == sa.false(),
    ]
    since = _instant(args.get("_since"), "_since")
    if since is not None:
        where.append(r.c.last_updated >= since)
    types = _types(args.get("_type"))
    if types:
        where.append(r.c.res_type.in_(types))
    start = _date_bound(args.get("start"), "start", tz, 0)
    end = _date_bound(args.get("end"), "end", tz, 1)
    if start is not None or end is not None:
        where.append(_clinical_range(r, start, end))
    where.extend(_sql_visibility(r, visibility))
    count = _count(args.get("_count"), default_count, max_count)
    after = _cursor(args.get("_cursor"))

    stmt = sa.select(r.c.pk, r.c.res_type, r.c.res_id, r.c.content).where(*where)
    if after is not None:
        stmt = stmt.where(r.c.pk > after)
    rows = conn.execute(stmt.order_by(r.c.pk).limit(count + 1)).fetchall() if count else []
    more = len(rows) > count
    rows = rows[:count]
    total = None
    if after is None:
        if more or count == 0:
            total = conn.execute(sa.select(sa.func.count()).select_from(r).where(*where)).scalar()
        else:
            total = len(rows)
    includes = []
    if rows:
        # The page is exactly the rows of ``where`` between its first and last pk: the
        # reference index is read through that, not through a list of a thousand pks.
        page = sa.select(r.c.pk).where(*where, r.c.pk >= rows[0][0], r.c.pk <= rows[-1][0])
        includes = _referenced(conn, rows, page, types, visibility)
    entries = [SearchEntry(t, i, content, "match") for _, t, i, content in rows]
    entries += [SearchEntry(t, i, content, "include") for t, i, content in includes]
    if visibility.entries is not None:
        entries = visibility.filter_entries(entries)
    elif visibility.visible is not None:
        entries = _filter(entries, visibility)

    link = f"Patient/{patient_id}/$everything"
    kept = [(k, v) for k, v in params if k != "_cursor"]
    result = SearchResult(entries=entries, total=total, self_link=link + _query(params))
    if more:
        result.next_cursor = str(rows[-1][0])
        result.next_link = link + _query([*kept, ("_cursor", result.next_cursor)])
    return result


def _args(params: list[tuple[str, str]]) -> dict[str, str]:
    args: dict[str, str] = {}
    for key, value in params:
        if key not in PARAMS:
            raise outcomes.bad_request(
                f"$everything does not take the parameter {key!r} (it takes {', '.join(PARAMS)})",
                key,
            )
        if key == "_type" and key in args:
            args[key] += "," + value  # repeated _type: the union
        else:
            args[key] = value
    return args


def _check_patient(conn: Connection, patient_id: str, visibility: Visibility) -> None:
    """404 for an unknown Patient and, with the same text, for one the caller may not see."""
    r = s.resource
    stmt = sa.select(r.c.deleted, r.c.content).where(
        r.c.res_type == "Patient", r.c.res_id == patient_id
    )
    stmt = stmt.where(*_sql_visibility(r, visibility))
    row = conn.execute(stmt).first()
    if row is not None and row.deleted:
        raise outcomes.gone(f"Patient/{patient_id} was deleted")
    if row is None or not _sees(visibility, patient_id, row.content):
        raise outcomes.not_found(f"Patient/{patient_id} is not known")


def _sees(visibility: Visibility, patient_id: str, content: str) -> bool:
    """Whether the caller may see the Patient stored as ``content``."""
    if visibility.entries is not None:
        return bool(visibility.filter_entries([SearchEntry("Patient", patient_id, content, "")]))
    if visibility.visible is not None:
        return bool(visibility.filter([orjson.loads(content)]))
    return True


def _sql_visibility(r, visibility: Visibility) -> list:
    """The SQL conditions on the resource alias ``r`` for the labels and the jurisdiction."""
    where = []
    if visibility.hidden_labels:
        where.append(_visible(r, visibility.hidden_labels))
    if visibility.jurisdiction:
        where.append(within_jurisdiction(r, visibility.jurisdiction))
    return where


def _types(value: str | None) -> list[str]:
    if not value:
        return []
    types = [t.strip() for t in value.split(",") if t.strip()]
    for t in types:
        if not known_type(t):
            raise outcomes.bad_request(f"_type: unknown resource type {t!r}", "_type")
    return types


def _instant(value: str | None, name: str) -> dt.datetime | None:
    if not value:
        return None
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise outcomes.bad_request(
            f"{name} must be an instant such as 2026-01-31T10:00:00Z, not {value!r}", name
        ) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


def _date_bound(value: str | None, name: str, tz: dt.tzinfo, side: int) -> dt.datetime | None:
    """The start (``side`` 0) or exclusive end (1) of a date, in naive UTC."""
    if not value:
        return None
    rng = V.date_range(value, tz)
    if rng is None:
        raise outcomes.bad_request(f"{name} must be a date such as 2026-01-31, not {value!r}", name)
    return rng[side]


def _clinical_range(r, start: dt.datetime | None, end: dt.datetime | None):
    """Resources without a clinical date, or with one that overlaps [start, end).

    Correlated on ``resource_pk`` (indexed), so the cost follows the person's rows, not the
    size of the date index.
    """
    d = s.sp_date.alias("d")

    def dates():
        return sa.select(d.c.resource_pk).where(
            d.c.resource_pk == r.c.pk, d.c.param.in_(CLINICAL_DATE_PARAMS)
        )

    overlapping = dates()
    if start is not None:
        overlapping = overlapping.where(d.c.high > start)
    if end is not None:
        overlapping = overlapping.where(d.c.low < end)
    return sa.or_(~dates().exists(), overlapping.exists())


def _count(value: str | None, default: int, maximum: int) -> int:
    return count_param(value, "_count", default, maximum)


def _cursor(value: str | None) -> int | None:
    return row_key_param(value, "_cursor") if value else None


def _referenced(conn, rows, page, types: list[str], visibility: Visibility):
    """Resources the page refers to that are in no Patient's compartment at all.

    What the person's records point to outside every patient compartment (practitioners,
    organisations, medications, locations) comes along; what is in a compartment is either
    the person's own (already a match, or left out by ``_since``/``start``/``end``) or another
    person's, and another person's records are never included: a Provenance over a registry
    file of forty people, or a reference to a relative, does not open their files.
    """
    on_page = {(t, i) for _, t, i, _ in rows}
    ref = s.sp_reference
    stmt = (
        sa.select(ref.c.target_type, ref.c.target_id)
        .where(
            ref.c.resource_pk.in_(page),
            ref.c.target_id.is_not(None),
            # Every record names its Patient: those rows would only be dropped below.
            ref.c.target_type != "Patient",
        )
        .distinct()
    )
    targets: set[tuple[str, str]] = set()
    for target_type, target_id in conn.execute(stmt):
        key = (target_type, target_id)
        if target_type and target_type != "Patient" and key not in on_page:
            targets.add(key)
    # A document's content kept as a Binary (hub.fhir.binaries) is named by the attachment's
    # url, which no search parameter indexes: read from the page's DocumentReferences.
    for _, res_type, _, content in rows:
        if res_type == "DocumentReference" and '"Binary/' in content:
            targets.update(("Binary", i) for i in attached_binaries(orjson.loads(content)))
    if types:
        targets = {k for k in targets if k[0] in types}
    if not targets:
        return []
    r = s.resource.alias("r")
    c = s.compartment
    out = []
    for chunk in _chunks(sorted(targets), 400):
        stmt = sa.select(r.c.res_type, r.c.res_id, r.c.content).where(
            _keys_in(r, chunk),
            r.c.deleted == sa.false(),
            ~sa.select(c.c.resource_pk)
            # ``coalesce`` keeps SQLite on the ``resource_pk`` index: on the ``comp_type``
            # prefix of the other one it walked every Patient compartment row per target.
            .where(c.c.resource_pk == r.c.pk, sa.func.coalesce(c.c.comp_type, "") == "Patient")
            .exists(),
        )
        stmt = stmt.where(*_sql_visibility(r, visibility))
        out.extend(conn.execute(stmt.order_by(r.c.res_type, r.c.res_id)))
    return [tuple(row) for row in out]


def _keys_in(r, keys: list[tuple[str, str]]):
    """``(res_type, res_id) IN keys`` as one ``res_id IN`` per type: SQLite reads a row-value
    ``IN`` list without the ``(res_type, res_id)`` index (5 ms for a hundred keys)."""
    ids: dict[str, list[str]] = {}
    for res_type, res_id in keys:
        ids.setdefault(res_type, []).append(res_id)
    return sa.or_(*[sa.and_(r.c.res_type == t, r.c.res_id.in_(i)) for t, i in ids.items()])


def attached_binaries(document: dict) -> list[str]:
    """Ids of the Binaries a DocumentReference's attachments point at (``url: Binary/{id}``)."""
    out = []
    for content in document.get("content") or ():
        attachment = content.get("attachment") if isinstance(content, dict) else None
        url = attachment.get("url") if isinstance(attachment, dict) else None
        if isinstance(url, str) and url.startswith("Binary/") and url.count("/") == 1:
            out.append(url.split("/")[1])
    return out


def _filter(entries: list[SearchEntry], visibility: Visibility) -> list[SearchEntry]:
    """Entries the ``visible`` callable keeps; a redacted copy it returns replaces the original."""
    parsed = [e.resource() for e in entries]
    original = {id(res): entry for entry, res in zip(entries, parsed, strict=True)}
    modes = {(e.res_type, e.res_id): e.mode for e in entries}
    out = []
    for res in visibility.filter(parsed):
        entry = original.get(id(res))
        if entry is None:
            key = (res.get("resourceType"), res.get("id"))
            entry = SearchEntry(*key, orjson.dumps(res).decode(), modes.get(key, "match"))
        out.append(entry)
    return out


def _query(params: list[tuple[str, str]]) -> str:
    return "?" + urllib.parse.urlencode(params) if params else ""


def _chunks(items: list, size: int):
    for i in range(0, len(items), size):
        yield items[i : i + size]
