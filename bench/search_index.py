"""Micro benchmark: microseconds per resource to compute all its search-index rows.

    python bench/search_index.py [BUNDLE_DIR] [--repeat N]

BUNDLE_DIR holds Synthea transaction bundles (default: the three demo bundles
shipped in hub/data/demo/synthea). Prints, per resource type, the mean time of
``Indexer.index`` and the rows it produced, then the overall figures.
"""

from __future__ import annotations

import argparse
import collections
import pathlib
import statistics
import time

import orjson

import hub
from hub.search.indexer import Indexer
from hub.search.registry import SearchRegistry

DEMO = pathlib.Path(hub.__file__).parent / "data" / "demo" / "synthea"


def load(folder: pathlib.Path) -> list[dict]:
    out = []
    for path in sorted(folder.glob("*.json")):
        bundle = orjson.loads(path.read_bytes())
        out.extend(e["resource"] for e in bundle.get("entry", ()))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folder", nargs="?", type=pathlib.Path, default=DEMO)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()

    t0 = time.perf_counter()
    registry = SearchRegistry.load()
    indexer = Indexer(registry)
    print(f"registry load: {(time.perf_counter() - t0) * 1e3:.1f} ms")
    resources = load(args.folder)
    t0 = time.perf_counter()
    for res in resources:  # first pass compiles the extractors
        indexer.index(res)
    print(f"first pass (compiles extractors): {(time.perf_counter() - t0) * 1e3:.0f} ms")

    times: dict[str, list[float]] = collections.defaultdict(list)
    rows: dict[str, int] = collections.Counter()
    for _ in range(args.repeat):
        for res in resources:
            t = time.perf_counter()
            result = indexer.index(res)
            times[res["resourceType"]].append(time.perf_counter() - t)
            rows[res["resourceType"]] += result.count()
    print(f"\n{'type':<24}{'count':>7}{'mean µs':>10}{'p50 µs':>10}{'rows':>7}")
    for rtype, ts in sorted(times.items(), key=lambda kv: -len(kv[1])):
        n = len(ts) // args.repeat
        print(
            f"{rtype:<24}{n:>7}{statistics.mean(ts) * 1e6:>10.1f}"
            f"{statistics.median(ts) * 1e6:>10.1f}{rows[rtype] / len(ts):>7.1f}"
        )
    every = [t for ts in times.values() for t in ts]
    print(
        f"\nall {len(resources)} resources: mean {statistics.mean(every) * 1e6:.1f} µs, "
        f"p50 {statistics.median(every) * 1e6:.1f} µs, "
        f"{len(resources) / (sum(every) / args.repeat):,.0f} resources/s"
    )


if __name__ == "__main__":
    main()
