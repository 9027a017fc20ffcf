"""The shared workload, several times per backend, as a table against Medplum's reference figures.

    python bench/side_by_side.py [--runs 3] [--backend sqlite --backend postgres] [--out-dir DIR]
    python bench/side_by_side.py --summarise DIR   # the table again from runs already made

Runs ``bench/workload.py`` ``--runs`` times per backend, alternating backends so
that a change in the machine's load falls on both, then prints a Markdown table
of medians next to the reference run (``../shared/bench/medplum-5.0.10-run.json``):
p50 with 1 client, p50 and requests/second with 8 clients, the mixed run,
ingest and the web workers' resident memory. A ratio is hub : Medplum with
> 1 meaning the hub is faster (Medplum's p50 over the hub's; the hub's
requests/second over Medplum's). The load average at the start of each run is
listed under the table: figures are comparable only from a quiet machine.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
SHARED_BENCH = HERE.parents[1] / "shared" / "bench"
REFERENCE = SHARED_BENCH / "medplum-5.0.10-run.json"
REFERENCE_INGEST_4 = SHARED_BENCH / "medplum-5.0.10-ingest-4-clients.json"


def _runs(out_dir: Path, backend: str) -> list[dict]:
    return [
        json.loads(p.read_text()) for p in sorted(out_dir.glob(f"run*/workload-{backend}.json"))
    ]


def _median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def _cell(hub, ref, *, lower_is_better: bool, unit: str) -> str:
    if hub is None:
        return "n/a"
    ratio = (ref / hub) if lower_is_better else (hub / ref)
    return f"{hub:,.2f} {unit} ({ratio:.2f})" if unit == "ms" else f"{hub:,.0f} ({ratio:.2f})"


def summarise(out_dir: Path, backends: list[str]) -> str:
    ref = json.loads(REFERENCE.read_text())
    ref_rows = {row["query"]: row for row in ref["table"]}
    runs = {b: _runs(out_dir, b) for b in backends}
    head = ["Query", "Medplum p50 / 8 clients req/s"]
    for b in backends:
        n = len(runs[b])
        head += [f"{b} p50, 1 client (n={n})", f"{b} p50, 8 clients", f"{b} req/s, 8 clients"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for query, r in ref_rows.items():
        row = [f"`{query}`", f"{r['p50_ms_1']} ms / {r['rps_8']:,.0f}"]
        for b in backends:
            rows = [
                next((t for t in run.get("table", []) if t["query"] == query), {})
                for run in runs[b]
            ]
            for key, unit in (("p50_ms_1", "ms"), ("p50_ms_8", "ms"), ("rps_8", "")):
                hub = _median(t.get(key) for t in rows)
                row.append(_cell(hub, r[key], lower_is_better=unit == "ms", unit=unit))
        lines.append("| " + " | ".join(row) + " |")
    lines.append("")
    lines.append("| Whole run | Medplum | " + " | ".join(backends) + " |")
    lines.append("|---|---|" + "---|" * len(backends))
    mixed = [
        f"{_median(run['mixed']['rps'] for run in runs[b]) or 0:,.0f} "
        f"({(_median(run['mixed']['rps'] for run in runs[b]) or 0) / ref['mixed']['rps']:.2f})"
        for b in backends
    ]
    lines.append(
        f"| mixed, 8 clients, req/s | {ref['mixed']['rps']:,.0f} | " + " | ".join(mixed) + " |"
    )
    ingest = [
        f"{_median(run['ingest']['resources_per_s'] for run in runs[b]) or 0:,.0f} "
        f"({(_median(run['ingest']['resources_per_s'] for run in runs[b]) or 0) / ref['ingest']['resources_per_s']:.1f})"
        for b in backends
    ]
    lines.append(
        f"| ingest, 1 client, resources/s | {ref['ingest']['resources_per_s']:,.0f} | "
        + " | ".join(ingest)
        + " |"
    )
    rss = [
        " / ".join(f"{max(run.get('hub_worker_rss_mib') or [0]):.0f}" for run in runs[b])
        for b in backends
    ]
    lines.append(
        "| largest web worker RSS after the run, MiB (each run) | 660 | " + " | ".join(rss) + " |"
    )
    lines.append("")
    for b in backends:
        loads = ", ".join(run["host"]["loadavg_start"].split()[0] for run in runs[b])
        lines.append(f"Load average (1 min) at the start of each {b} run: {loads}.")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--backend", action="append", choices=["sqlite", "postgres"])
    ap.add_argument("--out-dir", type=Path, default=Path("bench/out/side-by-side"))
    ap.add_argument("--summarise", type=Path, help="only print the table of runs in this folder")
    args = ap.parse_args()
    backends = args.backend or ["postgres", "sqlite"]
    if args.summarise:
        print(summarise(args.summarise, backends))
        return
    for i in range(1, args.runs + 1):
        order = backends if i % 2 else list(reversed(backends))
        for backend in order:
            cmd = [
                sys.executable,
                str(HERE / "workload.py"),
                "--backend",
                backend,
                "--out-dir",
                str(args.out_dir / f"run{i}"),
            ]
            print("$ " + " ".join(cmd), file=sys.stderr)
            subprocess.run(cmd, check=True)
    print(summarise(args.out_dir, backends))


if __name__ == "__main__":
    main()
