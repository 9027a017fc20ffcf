"""Terminology service timings, in process: lookup, validate-code, translate, expand.

    python bench/terminology.py [--codes 10000] [--repeat 2000]

Builds the hub's terminology service (R4 core, the national tables, the code maps)
plus a generated hierarchical code system of ``--codes`` codes with Chinese displays and
English designations, then times (median and p95 of ``--repeat`` calls, after a warm-up):
``$validate-code`` against a code system and a value set, ``$translate`` through a code
map and in reverse, ``$lookup``, and ``$expand`` of the large system with a text filter
(Chinese and English), paged, and with an ``is-a`` filter.
"""

from __future__ import annotations

import argparse
import statistics
import time

from hub.mapping import load_code_maps
from hub.paths import MAPPINGS_DIR
from hub.sites import load_sites
from hub.terminology.content import Content
from hub.terminology.content import shared_content
from hub.terminology.service import TerminologyService

BIG = "http://example.org/fhir/CodeSystem/bench-lab"
BIG_VS = "http://example.org/fhir/ValueSet/bench-lab"
ORGANS = ["血液", "尿液", "肝功能", "肾功能", "血脂", "血糖", "甲状腺", "凝血", "电解质", "免疫"]
ORGANS_EN = [
    "blood",
    "urine",
    "liver",
    "kidney",
    "lipids",
    "glucose",
    "thyroid",
    "clotting",
    "electrolytes",
    "immunology",
]


def big_code_system(n: int) -> dict:
    """``n`` codes in ten groups (a two-level hierarchy), Chinese displays, English names."""
    groups = []
    per = max(1, n // len(ORGANS))
    for g, (zh, en) in enumerate(zip(ORGANS, ORGANS_EN, strict=True)):
        children = [
            {
                "code": f"L{g}{i:05d}",
                "display": f"{zh}检验项目{i}",
                "designation": [{"language": "en", "value": f"{en} test {i}"}],
            }
            for i in range(per - 1)
        ]
        groups.append({"code": f"G{g}", "display": f"{zh}检查", "concept": children})
    return {
        "resourceType": "CodeSystem",
        "url": BIG,
        "status": "active",
        "content": "complete",
        "concept": groups,
    }


def service(n: int) -> TerminologyService:
    shared = shared_content()
    content = Content(
        dict(shared.code_systems),
        dict(shared.value_sets),
        dict(shared.concept_maps),
        dict(shared.by_id),
    )
    content.add(big_code_system(n))
    content.add(
        {
            "resourceType": "ValueSet",
            "url": BIG_VS,
            "status": "active",
            "compose": {"include": [{"system": BIG}]},
        }
    )
    maps = load_code_maps([MAPPINGS_DIR])
    return TerminologyService(None, maps, load_sites(None, maps), content=content)


def timed(label: str, fn, repeat: int) -> None:
    for _ in range(min(repeat, 50)):
        fn()
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    times.sort()
    p50, p95 = statistics.median(times), times[int(len(times) * 0.95) - 1]
    unit, scale = ("µs", 1e6) if p95 < 1e-3 else ("ms", 1e3)
    print(f"{label:<58}{p50 * scale:>9.2f}{p95 * scale:>9.2f} {unit}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--codes", type=int, default=10_000)
    ap.add_argument("--repeat", type=int, default=2000)
    args = ap.parse_args()
    t = time.perf_counter()
    term = service(args.codes)
    print(f"content load and indexes: {(time.perf_counter() - t) * 1e3:.0f} ms")
    t = time.perf_counter()
    total = term.expand(BIG_VS, count=1)["expansion"]["total"]
    print(
        f"first expansion of the {total}-code value set: {(time.perf_counter() - t) * 1e3:.1f} ms"
    )
    gender = "http://hl7.org/fhir/administrative-gender"
    gender_vs = "http://hl7.org/fhir/ValueSet/administrative-gender"
    sex = "urn:oid:2.16.156.10011.2.3.3.4"
    heavy = max(20, args.repeat // 20)
    print(f"\n{'call':<58}{'p50':>9}{'p95':>9}")
    timed(
        "CodeSystem $validate-code (GB/T 2261.1)",
        lambda: term.validate_in_system(sex, "1"),
        args.repeat,
    )
    timed(
        f"CodeSystem $validate-code ({total}-code system, display)",
        lambda: term.validate_in_system(BIG, "L500010", "肝功能检验项目10"),
        args.repeat,
    )
    timed(
        "ValueSet $validate-code (administrative-gender)",
        lambda: term.validate_in_value_set(gender_vs, gender, "female"),
        args.repeat,
    )
    timed(
        f"ValueSet $validate-code ({total}-code value set)",
        lambda: term.validate_in_value_set(BIG_VS, BIG, "L900001"),
        args.repeat,
    )
    timed(
        "ConceptMap $translate (cda-sex, url given)",
        lambda: term.translate("1", sex, "urn:fhirhub:conceptmap:cda-sex"),
        args.repeat,
    )
    timed(
        "ConceptMap $translate (reverse)",
        lambda: term.translate("male", gender, "urn:fhirhub:conceptmap:cda-sex", reverse=True),
        args.repeat,
    )
    timed(
        "ConceptMap $translate (no url: every map from the system)",
        lambda: term.translate("20", "urn:oid:2.16.156.10011.2.3.3.5"),
        args.repeat,
    )
    timed(
        "adapter code map look-up (site override)",
        lambda: term.code_map("hl7v2-local-lab", term.sites["township-hospital-b"]).lookup("HGB"),
        args.repeat,
    )
    timed(
        "CodeSystem $lookup (GB 3304, designations)",
        lambda: term.lookup("urn:oid:2.16.156.10011.2.3.3.3", "04"),
        args.repeat,
    )
    timed(
        f"ValueSet $expand {total} codes, filter 肝功能 (Chinese)",
        lambda: term.expand(BIG_VS, text="肝功能"),
        heavy,
    )
    timed(
        f"ValueSet $expand {total} codes, filter 'kidney test 12'",
        lambda: term.expand(BIG_VS, text="kidney test 12"),
        heavy,
    )
    timed(
        f"ValueSet $expand {total} codes, count=50 offset=5000",
        lambda: term.expand(BIG_VS, count=50, offset=5000),
        heavy,
    )
    inline = {
        "resourceType": "ValueSet",
        "compose": {
            "include": [
                {"system": BIG, "filter": [{"property": "concept", "op": "is-a", "value": "G3"}]}
            ]
        },
    }
    timed(
        f"ValueSet $expand inline, is-a over {total} codes, filter",
        lambda: term.expand(value_set=inline, text="检验项目99"),
        heavy,
    )


if __name__ == "__main__":
    main()
