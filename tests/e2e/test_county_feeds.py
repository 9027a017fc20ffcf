"""From raw feeds to audits: a county's files through ``hub ingest``, then ``hub audit``.

``tools/county_feeds.py`` plans a county (people, diagnoses, follow-ups by
clinic, home visit and telephone, health checks, contracts, deaths, moves, a
merged hospital record), computes the figures the standard gives from that
plan without the hub's code, and writes the raw files. The hub ingests them
as a user would (``hub ingest`` per site, in a subprocess) and its
``hub audit completeness`` and ``hub audit indicators`` must give the same
figures, every one of them, and ``hub export veterans-report`` the rows of the
veterans' rounds and consultations the plan holds.
"""

from __future__ import annotations

import csv
import functools
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
from tests.fixtures import _truncate_all  # noqa: E402
from tools import county_feeds  # noqa: E402

PEOPLE = 120
YEAR = 2025

# Each indicator as the assessment rules define it: numerator and denominator,
# in the counters of the expected figures (or a configured statistic).
INDICATORS = {
    "record-creation-rate": ("record", "statistic:resident-population"),
    "electronic-record-rate": ("rule:personal-information:met", "statistic:resident-population"),
    "record-use-rate": ("record-in-use", "record"),
    "elderly-management-rate": ("rule:elderly-health-check:met", "statistic:residents-65-plus"),
    "hypertension-standard-management-rate": ("rule:hypertension:met", "rule:hypertension:served"),
    "diabetes-standard-management-rate": ("rule:diabetes:met", "rule:diabetes:served"),
    # DOMAIN 2.5: managed per the standard ÷ confirmed patients registered in the jurisdiction
    "severe-mental-disorder-standard-management-rate": (
        "rule:severe-mental-disorder:met",
        "rule:severe-mental-disorder:applies",
    ),
    "contract-rate": ("contract", "statistic:resident-population"),
}
RULES = (
    "personal-information",
    "elderly-health-check",
    "hypertension",
    "diabetes",
    "severe-mental-disorder",
    "family-doctor",
)


def run_hub(*args: str, instance: Path, database: str) -> str:
    env = dict(os.environ, HUB_INSTANCE_PATH=str(instance), HUB_DATABASE_URL=database)
    out = subprocess.run(
        [sys.executable, "-m", "hub.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, f"hub {' '.join(args)}: {out.stderr[-2000:]}"
    return out.stdout


def expected_figures(figures: dict) -> dict[str, float]:
    counters, stats = figures["counters"], figures["statistics"]
    out = {"people": counters.get("people", 0), "with-gaps": counters.get("with-gaps", 0)}
    for rule in RULES:
        out[f"rule {rule} applies"] = counters.get(f"rule:{rule}:applies", 0)
        out[f"rule {rule} met"] = counters.get(f"rule:{rule}:met", 0)
    for indicator, (num, den) in INDICATORS.items():
        out[f"{indicator} numerator"] = counters.get(num, 0)
        if den.startswith("statistic:"):
            out[f"{indicator} denominator"] = float(stats[den.split(":", 1)[1]])
        else:
            out[f"{indicator} denominator"] = float(counters.get(den, 0))
    return out


def actual_figures(completeness: dict, indicators: dict) -> dict[str, float]:
    out = {"people": completeness["people"], "with-gaps": completeness["with_gaps"]}
    rows = {r["rule"]: r for r in completeness["rows"]}
    for rule in RULES:
        out[f"rule {rule} applies"] = rows[rule]["applies"]
        out[f"rule {rule} met"] = rows[rule]["met"]
    for row in indicators["rows"]:
        if row["indicator"] in INDICATORS:
            out[f"{row['indicator']} numerator"] = row["numerator"]
            out[f"{row['indicator']} denominator"] = float(row["denominator"] or 0)
    return out


def differences(expected: dict[str, float], actual: dict[str, float]) -> list[str]:
    return [
        f"{key}: expected {expected[key]:g}, hub {actual.get(key, float('nan')):g}"
        for key in expected
        if actual.get(key) != expected[key]
    ]


def test_generator_is_deterministic(tmp_path):
    a = county_feeds.generate(tmp_path / "a", people=40, seed=3, year=YEAR)
    b = county_feeds.generate(tmp_path / "b", people=40, seed=3, year=YEAR)
    assert a == b
    for site in a["files"]:
        names = sorted(p.name for p in (tmp_path / "a" / site).iterdir())
        assert names == sorted(p.name for p in (tmp_path / "b" / site).iterdir())
        for name in names:
            assert (tmp_path / "a" / site / name).read_bytes() == (
                tmp_path / "b" / site / name
            ).read_bytes()


def test_generator_plans_the_awkward_cases():
    people = county_feeds.plan(PEOPLE, seed=7, year=YEAR)
    follow_ups = [f for p in people for f in p.follow_ups]
    assert any(f.mode == "3" for f in follow_ups)  # by telephone
    assert any(
        a.day == b.day and a.programme == b.programme
        for p in people
        for a, b in zip(p.follow_ups, p.follow_ups[1:], strict=False)
    )  # two on one day
    assert any(d.year == YEAR for p in people for d in p.diagnoses.values())  # mid-year
    assert any(k.start.year == YEAR for p in people for k in p.contracts)
    assert any(p.moved for p in people) and any(p.died for p in people)
    assert any(p.merged_mrn for p in people)
    smd = [f for f in follow_ups if f.programme == county_feeds.SMD]
    assert {f.mode for f in smd} == {"1", "2", "3"}  # clinic, home and telephone
    assert len({f.risk for f in smd}) > 1
    assert any(
        county_feeds.SMD in p.diagnoses and p.diagnoses[county_feeds.SMD].year == YEAR
        for p in people
    )  # diagnosed in mid-year: pro rata


def test_severe_mental_disorder_follow_ups_are_sent_as_ws_t_483_15(tmp_path):
    county_feeds.generate(tmp_path, people=PEOPLE, seed=7, year=YEAR)
    documents = [
        p.read_text(encoding="utf-8") for p in (tmp_path / "county-platform").glob("*.xml")
    ]
    smd = [d for d in documents if 'code="HSDB04.04"' in d]
    assert smd and all('templateId root="2.16.156.10011.2.1.1.15"' in d for d in smd)
    assert all('code="DE05.10.013.00"' in d for d in smd)  # the risk grade


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def county(request, tmp_path_factory):
    """The county's feeds ingested, audited: (expected figures, hub's figures, ingest totals)."""
    root = tmp_path_factory.mktemp("county")
    feeds, instance = root / "feeds", root / "instance"
    instance.mkdir()
    if request.param == "sqlite":
        database = f"sqlite:///{instance / 'hub.db'}"
    else:
        database = request.getfixturevalue("pg_schema_url")
        _truncate_all(database)
    hub = functools.partial(run_hub, instance=instance, database=database)
    figures = county_feeds.generate(feeds, people=PEOPLE, seed=7, year=YEAR)
    hub("db", "upgrade")
    platform = feeds / "county-platform"
    batches = [
        # the documents, then the contract export (recognised by its header line)
        ("county-platform documents", "county-platform", sorted(platform.glob("*.xml"))),
        ("county-platform contracts", "county-platform", sorted(platform.glob("*.csv"))),
        ("county-hospital-a", "county-hospital-a", [feeds / "county-hospital-a"]),
        ("veterans-registry", "veterans-registry", [feeds / "veterans-registry"]),
    ]
    totals = {}
    for batch, site, paths in batches:
        out = hub("ingest", "--site", site, "-q", *map(str, paths))
        totals[batch] = out.strip().splitlines()[-1]
    county = figures["jurisdiction"]
    for statistic, value in figures["statistics"].items():
        hub(
            "audit",
            "denominators",
            "set",
            "--jurisdiction",
            county,
            "--year",
            str(YEAR),
            "--indicator",
            statistic,
            "--value",
            str(value),
            "--source",
            "county statistical yearbook",
        )
    period = ["--jurisdiction", county, "--period", str(YEAR)]
    completeness = json.loads(
        hub(
            "audit",
            "completeness",
            *period,
            "--as-of",
            f"{YEAR + 1}-01-31",
            "--format",
            "json",
        )
    )
    indicators = json.loads(hub("audit", "indicators", *period, "--stored", "--format", "json"))
    report = root / "veterans-report.csv"
    year = ["--since", f"{YEAR}-01-01", "--until", f"{YEAR}-12-31"]
    hub("export", "veterans-report", *year, "--out", str(report))
    with open(report, encoding="utf-8-sig", newline="") as handle:
        rows = list(csv.DictReader(handle))
    return (
        expected_figures(figures),
        actual_figures(completeness, indicators),
        totals,
        (figures["veterans_report"], rows),
    )


def test_severe_mental_disorder_figures_are_not_empty(county):
    """The SMD rows compare something: patients who owe follow-ups, some met, some not."""
    expected, actual, _totals, _report = county
    assert (
        expected["rule severe-mental-disorder applies"]
        > expected["rule severe-mental-disorder met"]
        > 0
    )
    assert actual["severe-mental-disorder-standard-management-rate denominator"] == float(
        expected["rule severe-mental-disorder applies"]
    )


def test_every_feed_file_is_accepted(county):
    """Every generated file is stored and mapped: the totals lines say only "N done"."""
    _expected, _actual, totals, _report = county
    assert len(totals) == 4
    for batch, line in totals.items():
        assert line.endswith(" done") and "," not in line, f"{batch}: {line}"


def test_audit_figures_match_the_plan(county):
    expected, actual, _totals, _report = county
    diff = differences(expected, actual)
    assert not diff, "figures that differ:\n" + "\n".join(diff)


ROUND_EVENTS = {"远程巡诊", "入户巡诊", "专家会诊"}


def test_veterans_report_lists_and_counts_the_rounds(county):
    """From the registry export and the partner hospital's A04s to the bureau's report: each
    round or consultation of the year is a row with the veteran's counts, as planned."""
    _expected, _actual, _totals, (planned, rows) = county
    assert {r["事件"] for r in planned} == ROUND_EVENTS  # every kind is exercised
    got = [{key: r[key] for key in planned[0]} for r in rows if r["事件"] in ROUND_EVENTS]
    assert got == planned
    # the counts stand on every row of the veteran, beside admissions and colour changes
    counts = {(r["身份证号"], r["巡诊次数"], r["会诊次数"]) for r in planned}
    for r in rows:
        known = {(n, a, b) for n, a, b in counts if n == r["身份证号"]}
        assert not known or (r["身份证号"], r["巡诊次数"], r["会诊次数"]) in known
