"""National indicators as FHIR ``Measure`` definitions, evaluated into ``MeasureReport``s.

The Measures are data (``mappings/measures/Measure-*.json``). Each has one
group with an initial population, a denominator and a numerator; a
population's criteria is either

- ``text/x-fhirhub-metric``: a counter of the audit summary (``record``,
  ``rule:hypertension:met``, ...; see docs/completeness.md), or
- ``text/x-fhirhub-statistic``: a population statistic configured per
  jurisdiction and year (:mod:`.denominators`); when none is configured the
  Measure's ``denominator-fallback`` extension names a counter to use instead,
  and the report says so.

Each Measure also states the indicator as the standard defines it: the
numerator's and the denominator's ``description`` are the words of the
assessment rules (建档人数 ÷ 辖区内常住居民数, ...) and ``relatedArtifact``
names the source; how the hub counts each population is the Measure's
``description`` (docs/completeness.md, "Indicators").

Reports are computed from the stored summary of an audit run, so the CLI, the
dashboard and ``MeasureReport`` all show the same figures.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy.engine import Connection

from hub.completeness import denominators
from hub.completeness.periods import Period
from hub.paths import MAPPINGS_DIR
from hub.storage.repository import format_instant

MEASURES_DIR = MAPPINGS_DIR / "measures"
METRIC = "text/x-fhirhub-metric"
STATISTIC = "text/x-fhirhub-statistic"
EXT = "http://fhirhub.org/fhir/StructureDefinition/"
POPULATION = "http://terminology.hl7.org/CodeSystem/measure-population"


@dataclasses.dataclass(frozen=True)
class Indicator:
    id: str
    url: str
    label_zh: str
    title: str
    numerator: str
    denominator: tuple[str, str]  # (language, expression)
    fallback: str | None
    target: float | None
    measure: dict[str, Any]
    numerator_text: str = ""  # the standard's words for the numerator
    denominator_text: str = ""
    source_text: str = ""  # the standard (and part) the definition comes from

    def label(self, lang: str) -> str:
        if lang == "zh":
            return self.label_zh
        return self.title.split("(", 1)[-1].rstrip(")") if "(" in self.title else self.title


@dataclasses.dataclass
class Figure:
    indicator: Indicator
    numerator: float
    denominator: float | None
    source: str  # "statistics: <source>", "records", "fallback: records (no statistic configured)"
    statistic: str | None = None
    missing_statistic: str | None = None  # the statistic the denominator needs and lacks

    @property
    def rate(self) -> float | None:
        if not self.denominator:
            return None
        return round(100.0 * self.numerator / self.denominator, 2)

    def as_dict(self) -> dict[str, Any]:
        return {
            "indicator": self.indicator.id,
            "label": self.indicator.label_zh,
            "numerator": int(self.numerator),
            "denominator": None if self.denominator is None else round(self.denominator, 2),
            "rate": self.rate,
            "denominator_source": self.source,
            "target": self.indicator.target,
            "numerator_definition": self.indicator.numerator_text,
            "denominator_definition": self.indicator.denominator_text,
            "standard": self.indicator.source_text,
            "missing_statistic": self.missing_statistic,
        }


@functools.cache
def load(folder: Path = MEASURES_DIR) -> dict[str, Indicator]:
    out: dict[str, Indicator] = {}
    for path in sorted(Path(folder).glob("Measure-*.json")):
        measure = orjson.loads(path.read_bytes())
        populations = {p["code"]["coding"][0]["code"]: p for p in measure["group"][0]["population"]}
        pops = {code: p["criteria"] for code, p in populations.items()}
        ext = {e["url"].rsplit("/", 1)[-1]: e for e in measure.get("extension", ())}
        if pops["numerator"]["language"] != METRIC:
            raise ValueError(f"{path.name}: the numerator must be a {METRIC} criteria")
        out[measure["id"]] = Indicator(
            id=measure["id"],
            url=measure["url"],
            label_zh=ext.get("indicator-label", {}).get("valueString", measure["title"]),
            title=measure["title"],
            numerator=pops["numerator"]["expression"],
            denominator=(pops["denominator"]["language"], pops["denominator"]["expression"]),
            fallback=ext.get("denominator-fallback", {}).get("valueString"),
            target=ext.get("indicator-target", {}).get("valueDecimal"),
            measure=measure,
            numerator_text=populations["numerator"].get("description", ""),
            denominator_text=populations["denominator"].get("description", ""),
            source_text="; ".join(
                a.get("display") or a.get("citation") or ""
                for a in measure.get("relatedArtifact", ())
            ),
        )
    return out


def figures(
    conn: Connection, summary: dict[str, float], jurisdiction: str, period: Period
) -> list[Figure]:
    """Every indicator for one jurisdiction and period, from its stored summary."""
    out = []
    for ind in load().values():
        numerator = summary.get(ind.numerator, 0.0)
        language, expression = ind.denominator
        if language == METRIC:
            out.append(Figure(ind, numerator, summary.get(expression, 0.0), "records"))
            continue
        stat = denominators.lookup(conn, jurisdiction, period.start.year, [ind.id, expression])
        if stat is not None:
            source = "statistics" + (f": {stat.source}" if stat.source else "")
            out.append(Figure(ind, numerator, stat.value, source, stat.indicator))
        elif ind.fallback:
            out.append(
                Figure(
                    ind,
                    numerator,
                    summary.get(ind.fallback, 0.0),
                    f"records ({ind.fallback}); statistic {expression} not configured",
                    missing_statistic=expression,
                )
            )
        else:
            out.append(
                Figure(
                    ind,
                    numerator,
                    None,
                    f"statistic {expression} not configured",
                    missing_statistic=expression,
                )
            )
    return out


def measure_report(figure: Figure, jurisdiction: str, period: Period) -> dict[str, Any]:
    """A summary ``MeasureReport`` for one figure."""
    ind = figure.indicator

    def population(code: str, count: float | None, extra: list | None = None) -> dict[str, Any]:
        item: dict[str, Any] = {"code": {"coding": [{"system": POPULATION, "code": code}]}}
        if count is not None:
            item["count"] = int(count)
        if extra:
            item["extension"] = extra
        return item

    group: dict[str, Any] = {
        "population": [
            population("numerator", figure.numerator),
            population(
                "denominator",
                figure.denominator,
                [{"url": EXT + "denominator-source", "valueString": figure.source}],
            ),
        ]
    }
    if figure.rate is not None:
        group["measureScore"] = {
            "value": figure.rate,
            "unit": "%",
            "system": "http://unitsofmeasure.org",
            "code": "%",
        }
    return {
        "resourceType": "MeasureReport",
        "status": "complete",
        "type": "summary",
        "measure": ind.url,
        "date": format_instant(dt.datetime.now(dt.UTC)),
        "period": {"start": period.start.isoformat(), "end": period.end.isoformat()},
        "extension": [{"url": EXT + "jurisdiction", "valueString": jurisdiction or "*"}],
        "group": [group],
    }
