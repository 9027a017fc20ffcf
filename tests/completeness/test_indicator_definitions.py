"""Each indicator states its numerator and denominator in the standard's words, with the source."""

from __future__ import annotations

import json

from hub.completeness import indicators
from tests.completeness.test_cli import env  # noqa: F401 (fixture)
from tests.test_cli import run_hub
from tests.ui.conftest import admin  # noqa: F401 (fixture)
from tests.ui.conftest import audited_hub  # noqa: F401 (fixture)
from tests.ui.conftest import cheap_hashes  # noqa: F401 (fixture)

# The formulas of the national basic public health service standard (3rd edition) and
# the family-doctor contracting guidance, as the assessment rules word them.
WORDS = {
    "record-creation-rate": ("建档人数", "辖区内常住居民数"),
    "electronic-record-rate": ("建立电子健康档案人数", "辖区内常住居民数"),
    "record-use-rate": ("档案中有动态记录的档案份数", "档案总份数"),
    "elderly-management-rate": ("年内接受健康管理人数", "年内辖区内65岁及以上常住居民数"),
    "hypertension-standard-management-rate": (
        "按照规范要求进行高血压患者健康管理的人数",
        "年内已管理的高血压患者人数",
    ),
    "diabetes-standard-management-rate": (
        "按照规范要求进行2型糖尿病患者健康管理的人数",
        "年内已管理的2型糖尿病患者人数",
    ),
    "severe-mental-disorder-standard-management-rate": (
        "年内辖区内按照规范要求进行管理的严重精神障碍患者人数",
        "年内辖区内登记在册的确诊严重精神障碍患者人数",
    ),
    "contract-rate": ("签约居民人数", "辖区内常住居民数"),
}


def test_every_measure_states_numerator_denominator_and_source():
    loaded = indicators.load()
    assert set(loaded) == set(WORDS)
    for ind in loaded.values():
        assert (ind.numerator_text, ind.denominator_text) == WORDS[ind.id], ind.id
        assert "服务规范" in ind.source_text or "家庭医生签约" in ind.source_text, ind.id


def test_indicators_json_carries_the_definitions_and_names_missing_statistics(env):  # noqa: F811
    extra, tmp_path = env
    out = run_hub(
        "audit",
        "indicators",
        "--jurisdiction",
        "370203",
        "--period",
        "2025",
        "--format",
        "json",
        env_extra=extra,
        tmp_path=tmp_path,
    )
    assert out.returncode == 0, out.stderr
    rows = {r["indicator"]: r for r in json.loads(out.stdout)["rows"]}
    for indicator, (numerator, denominator) in WORDS.items():
        assert rows[indicator]["numerator_definition"] == numerator
        assert rows[indicator]["denominator_definition"] == denominator
        assert rows[indicator]["standard"]
    # no statistic configured: the row and stderr say which one is missing
    assert rows["record-creation-rate"]["missing_statistic"] == "resident-population"
    assert rows["hypertension-standard-management-rate"]["missing_statistic"] is None
    assert "resident-population" in out.stderr and "hub audit denominators set" in out.stderr


def test_dashboard_shows_each_definition(admin):  # noqa: F811
    page = admin.get("/ui/?jurisdiction=370203&period=2025").text
    for numerator, denominator in WORDS.values():
        assert f"{numerator} ÷ {denominator}" in page
