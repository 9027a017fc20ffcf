"""The dashboard's pages (Blueprint ``ui`` at ``/ui``).

Archive managers: the jurisdiction overview (:func:`overview`), the list of
people with gaps (:func:`gaps`) and a person's lifetime record
(:func:`person`). Integration engineers: the inbox and its dead letters
(:func:`inbox`, :func:`inbox_item`) and outbound deliveries with theirs
(:func:`deliveries`, :func:`delivery_item`). Every page needs a login, is limited to
the user's jurisdiction and writes an AuditEvent.
"""

from __future__ import annotations

import datetime as dt
import functools
from typing import Any
from urllib.parse import urlencode

import orjson
from flask import Blueprint
from flask import abort
from flask import g
from flask import redirect
from flask import render_template
from flask import request
from flask import session
from flask import url_for

from hub import audit
from hub.completeness import batch
from hub.completeness import indicators as ind
from hub.completeness import jurisdiction as juris
from hub.completeness.facts import clinical_date
from hub.completeness.jurisdiction import place_of
from hub.completeness.periods import Period
from hub.completeness.rulebook import load as load_rules
from hub.identity import HEALTH_RECORD_SYSTEM
from hub.identity import RESIDENT_ID_SYSTEM
from hub.identity.resident_id import mask
from hub.outcomes import OperationOutcomeError
from hub.security import csrf as csrf_tokens
from hub.security.logmask import mask_text
from hub.storage.audit_summaries import GAP_SORTS
from hub.storage.audit_summaries import AuditSummaryStore
from hub.storage.audit_summaries import GapFilter
from hub.storage.db import committing
from hub.storage.db import reading
from hub.storage.deliveries import DeliveryStore
from hub.storage.inbox_store import InboxStore
from hub.ui import accounts
from hub.ui import charts
from hub.ui import exports
from hub.ui.messages import current_language
from hub.ui.messages import translate

bp = Blueprint(
    "ui", __name__, url_prefix="/ui", template_folder="templates", static_folder="static"
)
PAGE_SIZE = 50
INBOX_STATUSES = ("pending", "done", "partial", "failed", "quarantined")
DELIVERY_STATUSES = ("pending", "sent", "dead")
DEAD = ("failed", "quarantined")
COLOUR_KEYS = ("red", "yellow", "blue", "orange", "green", "none")
SORTS = GAP_SORTS


def _hub():
    from hub.api.context import get_hub

    return get_hub()


# ---------------------------------------------------------------------------
# Request set-up, login, audit
# ---------------------------------------------------------------------------


@bp.before_request
def _before():
    g.lang = current_language()
    user = session.get("user")
    g.user = (
        accounts.User(user["username"], tuple(user["roles"]), user["jurisdiction"])
        if user
        else None
    )
    if g.user is None and request.endpoint not in ("ui.login", "ui.static"):
        return redirect(url_for("ui.login", next=request.full_path))
    given = request.form.get(accounts.CSRF_FIELD) or request.headers.get(csrf_tokens.HEADER)
    if request.method == "POST" and not csrf_tokens.valid(given):
        abort(400, "CSRF token missing or wrong")
    return None


@bp.app_template_global()
def t(key: str, **values) -> str:
    return translate(key, g.get("lang", "zh"), **values)


@bp.app_template_global()
def csrf() -> str:
    return csrf_tokens.token()


@bp.app_template_global()
def url_with(**changes) -> str:
    """The current page's URL with some query parameters changed (None removes one)."""
    args = {k: v for k, v in request.args.items() if k not in changes}
    args.update({k: v for k, v in changes.items() if v is not None})
    return request.path + ("?" + urlencode(args) if args else "")


def _record(interaction: str, entity: list[str] | None = None, outcome: str = "0") -> None:
    who = g.user.username if g.get("user") else request.form.get("username") or "anonymous"
    event = audit.build_event(
        interaction=interaction,
        outcome=outcome,
        who=who,
        site="fhirhub dashboard",
        entity=entity,
        description=mask_text(f"{request.method} {request.full_path.rstrip('?')}"),
    )
    # A transaction of its own that takes the write lock first (the chain head must not change
    # between reading it and appending).
    audit.record_now(_hub().engine, event)


def requires(*roles: str):
    """Allow the view to users with one of ``roles`` (``admin`` may see everything)."""

    def wrap(fn):
        @functools.wraps(fn)
        def inner(*args, **kwargs):
            if not (set(g.user.roles) & (set(roles) | {"admin"})):
                _record("read", outcome="4")
                abort(403)
            return fn(*args, **kwargs)

        return inner

    return wrap


@bp.errorhandler(OperationOutcomeError)
def _outcome(err: OperationOutcomeError):
    texts = [i.get("diagnostics", "") for i in err.outcome.get("issue", [])]
    return render_template("error.html", messages=texts, status=err.status), err.status


@bp.errorhandler(403)
def _forbidden(_err):
    return render_template("error.html", messages=[t("forbidden")], status=403), 403


@bp.route("/login", methods=["GET", "POST"])
def login():
    error = None
    if request.method == "POST":
        try:
            with committing(_hub().engine) as conn:  # a failure's count (and lock) persists
                user = accounts.verify_password(
                    conn, request.form.get("username", ""), request.form.get("password", "")
                )
        except (accounts.InvalidLogin, accounts.LockedOut) as err:
            error = t("login.locked") if isinstance(err, accounts.LockedOut) else t("login.invalid")
            _record("login", outcome="4")
        else:
            session.clear()
            session["user"] = {
                "username": user.username,
                "roles": list(user.roles),
                "jurisdiction": user.jurisdiction or "",
            }
            g.user = accounts.User(user.username, tuple(user.roles), user.jurisdiction or "")
            _record("login")
            target = request.args.get("next") or ""
            # Only local paths under /ui: never an open redirect.
            if not target.startswith("/ui") or target.startswith("//"):
                target = url_for("ui.overview")
            return redirect(target)
    return render_template("login.html", error=error), (401 if error else 200)


@bp.post("/logout")
def logout():
    _record("logout")
    session.clear()
    return redirect(url_for("ui.login"))


# ---------------------------------------------------------------------------
# Jurisdiction and period of a request
# ---------------------------------------------------------------------------


def _jurisdiction() -> str:
    """The requested jurisdiction, which must lie within the user's own."""
    own = g.user.jurisdiction
    code = juris.check(request.args.get("jurisdiction", own))
    if own and not _within(code, own):
        _record("search", outcome="4")
        abort(403)
    return code


def _within(code: str, own: str) -> bool:
    if own.startswith("Organization/"):
        return code == own
    return bool(code) and code.isdigit() and code.startswith(own)


def _period(code: str) -> Period:
    text = request.args.get("period")
    if text:
        return Period.parse(text)
    with reading(_hub().engine) as conn:
        known = [Period.parse(k) for k in batch.summary_periods(conn, code)]
    if not known:
        return Period.year(dt.date.today().year)
    # the audited period that ends last (of two ending on the same day, the longer)
    return max(known, key=lambda p: (p.end, p.end - p.start))


def _label_of(code: str) -> str:
    return code or t("jurisdiction.all")


# ---------------------------------------------------------------------------
# Overview
# ---------------------------------------------------------------------------


@bp.get("/")
@requires("archive-manager")
def overview():
    code = _jurisdiction()
    period = _period(code)
    book = load_rules()
    lang = g.lang
    hub = _hub()
    with reading(hub.engine) as conn:
        summary = batch.read_summary(conn, period.key, code)
        at = batch.computed_at(conn, period.key)
        figures = ind.figures(conn, summary, code, period) if summary else []
        trend_periods = [p for p in batch.summary_periods(conn, code) if p.isdigit()]
        trend = []
        for key in trend_periods:
            past = batch.read_summary(conn, key, code)
            trend.append(
                {f.indicator.id: f.rate for f in ind.figures(conn, past, code, Period.parse(key))}
            )
        children = _children(conn, period, code)
    fmt = request.args.get("format")
    if fmt in ("csv", "xlsx"):
        _record("export", entity=[f"Group/jurisdiction-{code or 'all'}"])
        if request.args.get("list") == "children":
            header = [t("jurisdiction"), t("people"), t("kpi.with_gaps"), t("kpi.overdue")]
            data = [[c["code"], c["people"], c["with_gaps"], c["overdue"]] for c in children]
            return exports.response(
                fmt, f"jurisdictions-{code or 'all'}-{period.key}", header, data
            )
        header = [
            "id",
            t("indicator"),
            t("numerator"),
            t("denominator"),
            t("rate"),
            t("target"),
            t("source"),
        ]
        data = [
            [
                f.indicator.id,
                f.indicator.label(g.lang),
                int(f.numerator),
                f.denominator,
                f.rate,
                f.indicator.target,
                f.source,
            ]
            for f in figures
        ]
        return exports.response(fmt, f"indicators-{code or 'all'}-{period.key}", header, data)
    _record("search", entity=[f"Group/jurisdiction-{code or 'all'}"])
    base = {"jurisdiction": code, "period": period.key}

    def gaps_link(**extra):
        return url_for("ui.gaps", **base, **extra)

    completeness_rows, overdue_rows = [], []
    for rule in book.rules.values():
        applies = summary.get(f"rule:{rule.id}:applies", 0)
        met = summary.get(f"rule:{rule.id}:met", 0)
        if applies:
            pct = 100 * met / applies
            completeness_rows.append(
                (
                    rule.label[lang],
                    pct,
                    f"{pct:.1f}% ({int(met)}/{int(applies)})",
                    gaps_link(rule=rule.id),
                )
            )
    for metric, value in sorted(summary.items()):
        if metric.startswith("item:") and metric.endswith(":overdue") and value:
            rule_id, item = metric[5:-8].split("/", 1)
            rule = book.rules.get(rule_id)
            if rule is None:
                continue
            label = f"{rule.label[lang]} · {rule.item_label(item)[lang]}"
            overdue_rows.append(
                (label, value, str(int(value)), gaps_link(rule=rule_id, item=item, overdue=1))
            )
    overdue_rows.sort(key=lambda r: -r[1])
    colour_parts = [(k, t(f"colour.{k}"), summary.get(f"colour:{k}", 0)) for k in COLOUR_KEYS]
    people = summary.get("people", 0)
    with_gaps = summary.get("with-gaps", 0)
    series = [
        (f.indicator.label(lang), [row.get(f.indicator.id) for row in trend]) for f in figures
    ]
    return render_template(
        "overview.html",
        code=code,
        period=period,
        summary=summary,
        computed_at=at,
        figures=figures,
        children=children,
        kpi={
            "people": int(people),
            "with_gaps": int(with_gaps),
            "overdue": int(summary.get("with-overdue", 0)),
            "complete": f"{100 * (people - with_gaps) / people:.1f}%" if people else "—",
        },
        chart_completeness=charts.hbar(completeness_rows, t("chart.completeness"), maximum=100),
        chart_overdue=charts.hbar(overdue_rows, t("chart.overdue"), colour=charts.OVERDUE),
        chart_colours=charts.donut(colour_parts, t("chart.colours")),
        chart_trend=charts.lines(trend_periods, series, t("chart.trend"))
        if trend_periods
        else None,
        label=_label_of(code),
        parent=juris.parent(code) if code and not code.startswith("Organization/") else None,
    )


def _children(conn, period: Period, code: str) -> list[dict[str, Any]]:
    codes = batch.child_jurisdictions(conn, period.key, code)
    if not codes:
        return []
    found = AuditSummaryStore.metrics(
        conn, period.key, codes, ["people", "with-gaps", "with-overdue"]
    )
    out = []
    for jcode in codes:
        m = found[jcode]
        people = m.get("people", 0)
        out.append(
            {
                "code": jcode,
                "people": int(people),
                "with_gaps": int(m.get("with-gaps", 0)),
                "overdue": int(m.get("with-overdue", 0)),
                "complete": 100 * (people - m.get("with-gaps", 0)) / people if people else None,
            }
        )
    return out


@bp.post("/refresh")
@requires("archive-manager")
def refresh():
    """Re-run the audit for the jurisdiction and period (small jurisdictions; the CLI for big)."""
    code = _jurisdiction()
    period = _period(code)
    batch.run_audit(_hub().engine, period, code)
    _record("operation", entity=[f"Group/jurisdiction-{code or 'all'}"])
    return redirect(url_for("ui.overview", jurisdiction=code, period=period.key))


# ---------------------------------------------------------------------------
# People with gaps
# ---------------------------------------------------------------------------


def _gap_filter() -> GapFilter:
    """The request's filter of the list of people with gaps."""
    colour = request.args.get("colour") or ""
    return GapFilter(
        rule=request.args.get("rule") or "",
        item=request.args.get("item") or "",
        overdue=bool(request.args.get("overdue")),
        colour=colour if colour in COLOUR_KEYS else "",
        village=request.args.get("village") or "",
    )


def _gap_texts(detail: str | None, lang: str, rule_filter: str = "") -> list[dict[str, Any]]:
    book = load_rules()
    out = []
    data = orjson.loads(detail) if detail else {}
    for rule_id, outcome in (data.get("outcomes") or {}).items():
        if rule_filter and rule_id != rule_filter:
            continue
        rule = book.rules.get(rule_id)
        for gap in outcome.get("gaps") or ():
            label = rule.item_label(gap["item"])[lang] if rule else gap["item"]
            rule_label = rule.label[lang] if rule else rule_id
            if gap.get("slot", 1) > 1 or (
                outcome.get("counts", {}).get(gap["item"], [0, 1])[1] > 1
            ):
                label += " " + t("slot", n=gap["slot"])
            out.append(
                {
                    "rule": rule_label,
                    "item": label,
                    "due": gap.get("due"),
                    "overdue": gap.get("overdue"),
                }
            )
    return out


@bp.get("/gaps")
@requires("archive-manager")
def gaps():
    code = _jurisdiction()
    period = _period(code)
    lang = g.lang
    sort = request.args.get("sort", "overdue")
    if sort not in SORTS:
        sort = "overdue"
    where = _gap_filter()
    fmt = request.args.get("format")
    store = AuditSummaryStore(_hub().engine)
    if fmt in ("csv", "xlsx"):
        header = [
            t("name"),
            t("age"),
            t("gender"),
            t("village"),
            t("record_no"),
            t("colour"),
            t("gaps"),
            t("overdue"),
            t("next_due"),
            t("missing"),
        ]
        rows = store.people_with_gaps(period.key, code, where, sort)
        _record("export", entity=[f"Group/jurisdiction-{code or 'all'}"])
        data = (
            [
                r.name,
                r.age,
                t(f"gender.{r.gender}") if r.gender else "",
                r.village,
                r.record_no,
                t(f"colour.{r.colour or 'none'}"),
                r.gaps,
                r.overdue,
                r.next_due,
                "; ".join(
                    f"{x['rule']}: {x['item']}" + (f" ({x['due']})" if x["due"] else "")
                    for x in _gap_texts(r.detail, lang)
                ),
            ]
            for r in rows
        )
        return exports.response(fmt, f"gaps-{code or 'all'}-{period.key}", header, data)
    page = max(1, request.args.get("page", 1, type=int) or 1)
    total, rows = store.gaps_page(period.key, code, where, sort, page, PAGE_SIZE)
    _record("search", entity=[f"Patient/{r.patient_id}" for r in rows])
    book = load_rules()
    items = [(rule.id, "", rule.label[lang]) for rule in book.rules.values()]
    for rule in book.rules.values():
        names = [s_.id for s_ in rule.services] + [f.id for f in rule.fields]
        names += sorted({s_.id for p_ in rule.packages.values() for s_ in p_})
        if rule.kind == "contract":
            names.insert(0, "contract")
        for name in names:
            items.append((rule.id, name, f"{rule.label[lang]} · {rule.item_label(name)[lang]}"))
    people = [
        {
            "row": r,
            "gaps": _gap_texts(r.detail, lang, request.args.get("rule") or ""),
        }
        for r in rows
    ]
    return render_template(
        "gaps.html",
        code=code,
        period=period,
        people=people,
        total=total,
        page=page,
        pages=max(1, -(-total // PAGE_SIZE)),
        sort=sort,
        sorts=list(SORTS),
        items=items,
        colours=COLOUR_KEYS,
        label=_label_of(code),
    )


# ---------------------------------------------------------------------------
# One person's lifetime record
# ---------------------------------------------------------------------------


@bp.get("/person/<pid>")
@requires("archive-manager")
def person(pid: str):
    hub = _hub()
    with reading(hub.engine) as conn:
        stored = hub.repo.read("Patient", pid, conn)
        if stored is None or stored.deleted:
            abort(404)
        patient = orjson.loads(stored.content)
        place = place_of(patient)
        own = g.user.jurisdiction
        if own and not place.within(own):
            _record("read", entity=[f"Patient/{pid}"], outcome="4")
            abort(403)
        resources = batch.compartments(conn, [(pid, patient)])[pid][1:]
        latest = AuditSummaryStore.latest_of(conn, pid)
    fmt = request.args.get("format")
    _record("export" if fmt in ("csv", "xlsx") else "read", entity=[f"Patient/{pid}"])
    events = []
    for res in resources:
        day = clinical_date(res)
        events.append(
            {
                "date": day.isoformat() if day else "",
                "type": res.get("resourceType"),
                "text": _describe(res),
                "ref": f"{res.get('resourceType')}/{res.get('id')}",
            }
        )
    events.sort(key=lambda e: (e["date"], e["type"]), reverse=True)
    if fmt in ("csv", "xlsx"):
        header = [t("date"), t("type"), t("detail"), "reference"]
        data = [[e["date"], e["type"], e["text"], e["ref"]] for e in events]
        return exports.response(fmt, f"timeline-{pid}", header, data)
    ids = {i.get("system"): i.get("value") for i in patient.get("identifier") or ()}
    phones = [
        c.get("value", "") for c in patient.get("telecom") or () if c.get("system") == "phone"
    ]
    name = ""
    for n in patient.get("name") or ():
        name = n.get("text") or (n.get("family", "") + "".join(n.get("given") or ()))
        if name:
            break
    header = {
        "name": name,
        "gender": patient.get("gender"),
        "birth_date": patient.get("birthDate"),
        # Masked in the interface (DOMAIN 7.2 point 6).
        "resident_id": mask(ids.get(RESIDENT_ID_SYSTEM, "")) if ids.get(RESIDENT_ID_SYSTEM) else "",
        "record_no": ids.get(HEALTH_RECORD_SYSTEM, ""),
        "phone": _mask_phone(phones[0]) if phones else "",
        "address": ((patient.get("address") or [{}])[0]).get("text", ""),
    }
    return render_template(
        "person.html",
        pid=pid,
        header=header,
        events=events,
        audit_period=latest.period if latest else None,
        missing=_gap_texts(latest.detail, g.lang) if latest else [],
    )


def _mask_phone(value: str) -> str:
    return value[:3] + "****" + value[-4:] if len(value) >= 11 else "*" * len(value)


def _concept_text(concept: Any) -> str:
    if isinstance(concept, list):
        return ", ".join(filter(None, (_concept_text(c) for c in concept)))
    if not isinstance(concept, dict):
        return ""
    if concept.get("text"):
        return concept["text"]
    parts = []
    for c in concept.get("coding") or ():
        parts.append(c.get("display") or c.get("code") or "")
    return ", ".join(p for p in parts if p)


def _describe(res: dict[str, Any]) -> str:
    kind = res.get("resourceType")
    if kind == "Encounter":
        cls = (res.get("class") or {}).get("code", "")
        return f"{_concept_text(res.get('type'))} [{cls}]".strip()
    if kind == "Observation":
        text = _concept_text(res.get("code"))
        q = res.get("valueQuantity")
        if q:
            text += f": {q.get('value')} {q.get('unit', '')}"
        comps = [
            f"{(c.get('valueQuantity') or {}).get('value')}"
            for c in res.get("component") or ()
            if c.get("valueQuantity")
        ]
        if comps:
            text += ": " + "/".join(comps)
        return text
    if kind in ("Condition", "Procedure", "DiagnosticReport", "MedicationRequest", "Immunization"):
        return _concept_text(
            res.get("code") or res.get("medicationCodeableConcept") or res.get("vaccineCode")
        )
    if kind == "EpisodeOfCare":
        return _concept_text(res.get("type"))
    return _concept_text(res.get("code") or res.get("type"))


# ---------------------------------------------------------------------------
# Inbox and dead letters (read-only; the ingest pipeline fills the table)
# ---------------------------------------------------------------------------


@bp.get("/inbox")
@requires("integration-engineer")
def inbox():
    dead = request.args.get("dead") == "1"
    status = request.args.get("status") or ""
    site = request.args.get("site") or ""
    statuses = DEAD if dead else ([status] if status in INBOX_STATUSES else None)
    fmt = request.args.get("format")
    header = [
        "id",
        t("site"),
        t("source_key"),
        t("format"),
        t("status"),
        t("attempts"),
        t("received"),
        "processed",
    ]
    listing = InboxStore(_hub().engine).screen()
    if fmt in ("csv", "xlsx"):
        rows = listing.all(statuses, site)
        _record("export", entity=["Basic/inbox"])
        data = (
            [
                r.id,
                r.site,
                r.source_key,
                r.format,
                r.status,
                r.attempts,
                _iso(r.received_at),
                _iso(r.processed_at),
            ]
            for r in rows
        )
        return exports.response(fmt, "dead-letters" if dead else "inbox", header, data)
    page, found = _status_page(listing, statuses, site)
    _record("search", entity=["Basic/inbox"])
    return render_template(
        "inbox.html",
        rows=found.rows,
        total=found.total,
        page=page,
        pages=max(1, -(-found.total // PAGE_SIZE)),
        dead=dead,
        status=status,
        statuses=INBOX_STATUSES,
        counts=found.counts,
    )


def _iso(value: dt.datetime | None) -> str:
    return value.isoformat(timespec="seconds") if value else ""


@bp.get("/inbox/<int:item_id>")
@requires("integration-engineer")
def inbox_item(item_id: int):
    row = InboxStore(_hub().engine).screen().row(item_id)
    if row is None:
        abort(404)
    _record("read", entity=[f"Basic/inbox-{item_id}"])
    issues = []
    if row.outcome:
        outcome = orjson.loads(row.outcome)
        issues = outcome.get("issue", []) if isinstance(outcome, dict) else []
    body = bytes(row.body or b"")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        text = body.decode("gb18030", errors="replace")  # township HIS feeds
    limit = 64 * 1024
    return render_template(
        "inbox_item.html",
        row=row,
        issues=issues,
        body=text[:limit],
        truncated=len(text) > limit,
    )


# ---------------------------------------------------------------------------
# Outbound deliveries and their dead letters (read-only; hub.outbound fills the table)
# ---------------------------------------------------------------------------


@bp.get("/deliveries")
@requires("integration-engineer")
def deliveries():
    status = request.args.get("status") or ""
    site = request.args.get("site") or ""
    statuses = [status] if status in DELIVERY_STATUSES else None
    listing = DeliveryStore(_hub().engine).screen()
    fmt = request.args.get("format")
    if fmt in ("csv", "xlsx"):
        rows = listing.all(statuses, site)
        _record("export", entity=["Basic/deliveries"])
        header = [
            "id",
            t("site"),
            t("source_key"),
            t("detail"),
            t("status"),
            t("attempts"),
            "created",
            "sent",
            t("issues"),
        ]
        data = (
            [
                r.id,
                r.site,
                r.message_key,
                r.description,
                r.status,
                r.attempts,
                _iso(r.created_at),
                _iso(r.sent_at),
                r.last_error,
            ]
            for r in rows
        )
        return exports.response(fmt, f"deliveries-{status or 'all'}", header, data)
    page, found = _status_page(listing, statuses, site)
    _record("search", entity=["Basic/deliveries"])
    return render_template(
        "deliveries.html",
        rows=found.rows,
        total=found.total,
        page=page,
        pages=max(1, -(-found.total // PAGE_SIZE)),
        status=status,
        statuses=DELIVERY_STATUSES,
        counts=found.counts,
    )


def _status_page(listing, statuses, site):
    """The requested page of an inbox-like table (newest first), its size and status counts."""
    page = max(1, request.args.get("page", 1, type=int) or 1)
    return page, listing.page(statuses, site, page, PAGE_SIZE)


@bp.get("/deliveries/<int:item_id>")
@requires("integration-engineer")
def delivery_item(item_id: int):
    row = DeliveryStore(_hub().engine).screen().row(item_id)
    if row is None:
        abort(404)
    _record("read", entity=[f"Basic/delivery-{item_id}"])
    body = bytes(row.body or b"")
    text_ = body.decode("utf-8", errors="replace")
    limit = 64 * 1024
    return render_template(
        "delivery_item.html", row=row, body=text_[:limit], truncated=len(text_) > limit
    )
