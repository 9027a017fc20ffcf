"""``hub audit``: completeness audits, indicators and their denominators.

Registered on the ``hub`` command in :mod:`hub.cli`. The figures are those of
the dashboard: both read the summary the audit job stores.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import sys

import click
import orjson

from hub.outcomes import OperationOutcomeError
from hub.storage.audit_summaries import AuditSummaryStore
from hub.storage.db import reading
from hub.storage.db import writing

FORMATS = click.Choice(["table", "json", "csv"])


def _hub():
    from hub.cli_context import make_hub

    return make_hub()


def _period(period, start, end):
    from hub.completeness.periods import Period

    return Period.parse(period, start, end)


def _fail(err: OperationOutcomeError):
    text = "; ".join(i.get("diagnostics", "") for i in err.outcome.get("issue", []))
    raise click.UsageError(text)


def period_options(fn):
    fn = click.option("--to", "end", help="Period end (YYYY-MM-DD), with --from.")(fn)
    fn = click.option("--from", "start", help="Period start (YYYY-MM-DD), with --to.")(fn)
    fn = click.option("--period", help="A calendar year, e.g. 2025.")(fn)
    fn = click.option(
        "--jurisdiction",
        default="",
        help="6/9/12-digit county, township or village code, or Organization/ID (default: all).",
    )(fn)
    return fn


@click.group("audit")
def audit():
    """Completeness audits, indicators and denominators (docs/completeness.md)."""


def _run(the_hub, jurisdiction, period, as_of):
    from hub.completeness.batch import count_patients
    from hub.completeness.batch import run_audit

    with reading(the_hub.engine) as conn:
        total = count_patients(conn, jurisdiction)
    with click.progressbar(length=total, label="people", file=sys.stderr, show_pos=True) as bar:
        done = [0]

        def progress(n):
            bar.update(n - done[0])
            done[0] = n

        return run_audit(the_hub.engine, period, jurisdiction, as_of=as_of, progress=progress)


@audit.command("completeness")
@period_options
@click.option("--as-of", help="Date that decides what is overdue (default today).")
@click.option("--format", "fmt", type=FORMATS, default="table", show_default=True)
def completeness(jurisdiction, period, start, end, as_of, fmt):
    """Evaluate the completeness rules for everyone in a jurisdiction and period."""
    from hub.completeness import jurisdiction as juris
    from hub.completeness.rulebook import load

    try:
        code = juris.check(jurisdiction)
        the_period = _period(period, start, end)
        as_of_day = dt.date.fromisoformat(as_of) if as_of else None
    except OperationOutcomeError as err:
        _fail(err)
    except ValueError as err:
        raise click.UsageError(f"--as-of: {err}") from None
    run = _run(_hub(), code, the_period, as_of_day)
    book = load()
    rows = []
    for rule in book.rules.values():
        applies = run.summary.get(f"rule:{rule.id}:applies", 0)
        met = run.summary.get(f"rule:{rule.id}:met", 0)
        rows.append(
            {
                "rule": rule.id,
                "label": rule.label["zh"],
                "applies": int(applies),
                "met": int(met),
                "with_gaps": int(applies - met),
                "overdue": int(run.summary.get(f"rule:{rule.id}:overdue", 0)),
                "complete_pct": round(100 * met / applies, 1) if applies else None,
            }
        )
    head = {
        "jurisdiction": code or "*",
        "period": the_period.key,
        "people": run.people,
        "with_gaps": int(run.summary.get("with-gaps", 0)),
    }
    _emit(fmt, head, rows)


@audit.command("indicators")
@period_options
@click.option(
    "--stored", is_flag=True, help="Use the stored summary of the last audit instead of re-running."
)
@click.option(
    "--format", "fmt", type=click.Choice(["table", "json", "csv", "fhir"]), default="table"
)
def indicators(jurisdiction, period, start, end, stored, fmt):
    """The national indicators (Measure ids in mappings/measures) for a jurisdiction and period."""
    from hub.completeness import indicators as ind
    from hub.completeness import jurisdiction as juris

    try:
        code = juris.check(jurisdiction)
        the_period = _period(period, start, end)
    except OperationOutcomeError as err:
        _fail(err)
    the_hub = _hub()
    if stored:
        summary = AuditSummaryStore(the_hub.engine).summary(the_period.key, code)
        if not summary:
            raise click.ClickException(f"no stored audit for {code or '*'} {the_period.key}")
    else:
        summary = _run(the_hub, code, the_period, None).summary
    with reading(the_hub.engine) as conn:
        figures = ind.figures(conn, summary, code, the_period)
    if fmt == "fhir":
        bundle = {
            "resourceType": "Bundle",
            "type": "collection",
            "entry": [{"resource": ind.measure_report(f, code, the_period)} for f in figures],
        }
        click.echo(orjson.dumps(bundle, option=orjson.OPT_INDENT_2).decode())
        return
    rows = [f.as_dict() for f in figures]
    if fmt == "table":
        # the definitions are long: the table keeps the figures, JSON/CSV carry both
        drop = ("numerator_definition", "denominator_definition", "standard", "missing_statistic")
        shown = [{k: v for k, v in r.items() if k not in drop} for r in rows]
    else:
        shown = rows
    _emit(fmt, {"jurisdiction": code or "*", "period": the_period.key}, shown)
    _warn_missing(figures, code, the_period)


def _warn_missing(figures, code: str, period) -> None:
    """Name, on stderr, each statistic a denominator needs and the hub lacks."""
    missing = sorted({f.missing_statistic for f in figures if f.missing_statistic})
    for statistic in missing:
        users = ", ".join(f.indicator.id for f in figures if f.missing_statistic == statistic)
        click.echo(
            f"denominator statistic {statistic} not configured for {code or '*'} "
            f"{period.start.year} ({users}): hub audit denominators set --jurisdiction "
            f"{code or '...'} --year {period.start.year} --indicator {statistic} --value N "
            '--source "..."',
            err=True,
        )


def _emit(fmt: str, head: dict, rows: list[dict]) -> None:
    if fmt == "json":
        click.echo(orjson.dumps({**head, "rows": rows}, option=orjson.OPT_INDENT_2).decode())
        return
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=list(rows[0]) if rows else [])
        writer.writeheader()
        writer.writerows(rows)
        click.echo(out.getvalue(), nl=False)
        return
    click.echo("  ".join(f"{k}={v}" for k, v in head.items()))
    if not rows:
        return
    cols = list(rows[0])
    widths = {c: max(len(c), *(_width(str(r[c])) for r in rows)) for c in cols}
    click.echo("  ".join(_pad(c, widths[c]) for c in cols))
    for r in rows:
        click.echo("  ".join(_pad("-" if r[c] is None else str(r[c]), widths[c]) for c in cols))


def _width(text: str) -> int:
    # CJK characters take two columns in a terminal.
    return sum(2 if ord(ch) > 0x2E80 else 1 for ch in text)


def _pad(text: str, width: int) -> str:
    return text + " " * (width - _width(text))


@audit.group("denominators")
def denominators_group():
    """Population statistics used as indicator denominators."""


@denominators_group.command("set")
@click.option("--jurisdiction", required=True)
@click.option("--year", required=True, type=int)
@click.option(
    "--indicator",
    required=True,
    help="An indicator id, or a statistic shared by indicators (resident-population, "
    "residents-65-plus).",
)
@click.option("--value", required=True, type=float)
@click.option("--source", help="Where the figure comes from (e.g. statistical yearbook 2025).")
def denominators_set(jurisdiction, year, indicator, value, source):
    """Set one denominator."""
    from hub.completeness import denominators

    the_hub = _hub()
    try:
        with writing(the_hub.engine) as conn:
            d = denominators.set_value(conn, jurisdiction, year, indicator, value, source)
    except OperationOutcomeError as err:
        _fail(err)
    click.echo(f"{d.jurisdiction} {d.year} {d.indicator} = {d.value:g}")


@denominators_group.command("load")
@click.argument("path", type=click.Path(exists=True, dir_okay=False))
def denominators_load(path):
    """Load denominators from a YAML file (format: hub.completeness.denominators)."""
    from hub.completeness import denominators

    the_hub = _hub()
    try:
        with writing(the_hub.engine) as conn:
            n = denominators.load_file(conn, path)
    except OperationOutcomeError as err:
        _fail(err)
    click.echo(f"{n} denominator(s) loaded")


@denominators_group.command("list")
@click.option("--jurisdiction", default=None)
@click.option("--format", "fmt", type=FORMATS, default="table")
def denominators_list(jurisdiction, fmt):
    """List configured denominators."""
    from hub.completeness import denominators

    with reading(_hub().engine) as conn:
        rows = [
            {
                "jurisdiction": d.jurisdiction,
                "year": d.year,
                "indicator": d.indicator,
                "value": d.value,
                "source": d.source,
            }
            for d in denominators.all_values(conn, jurisdiction)
        ]
    _emit(fmt, {"denominators": len(rows)}, rows)


@audit.command("rules")
def rules():
    """List the rule ids, their items and the indicator ids."""
    from hub.completeness import indicators as ind
    from hub.completeness.rulebook import load

    book = load()
    for rule in book.rules.values():
        items = [s.id for s in rule.services] + [f.id for f in rule.fields]
        items += sorted({s.id for p in rule.packages.values() for s in p})
        click.echo(f"rule {rule.id} ({rule.applies_to}): {rule.label['zh']} — {', '.join(items)}")
    for i in ind.load().values():
        click.echo(f"indicator {i.id}: {i.title}")
