"""Ingest benchmark: the Synthea patient bundles as FHIR transactions over HTTP.

    python bench/ingest.py --backend sqlite --backend postgres [--data DIR] [--clients N]

Starts a fresh hub for each backend (gunicorn, loopback), POSTs every bundle
as a transaction with ``Prefer: return=minimal`` and reports resources/second
(resources answered 2xx / wall time), p50/p95 seconds per bundle and the CPU
seconds the hub's processes spent (gunicorn's master and workers, from
``/proc``; PostgreSQL's own are not counted), which vary less than wall time
on a shared machine. Results go to stdout as JSON; ``--out`` also writes them
to a file.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import statistics
import sys
import threading
import time
import urllib.parse
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import serve  # noqa: E402
from serve import auth_headers  # noqa: E402
from serve import hub_server  # noqa: E402

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "samples" / "synthea"


def server_cpu_seconds() -> float | None:
    """User + system CPU seconds of the running hub's gunicorn master and its workers."""
    if serve.PROC is None or not Path("/proc").is_dir():
        return None
    tick = os.sysconf("SC_CLK_TCK")
    pids = [serve.PROC.pid]
    children = Path(f"/proc/{serve.PROC.pid}/task/{serve.PROC.pid}/children")
    if children.exists():
        pids += [int(p) for p in children.read_text().split()]
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / tick


def post_bundles(base: str, bodies: list[bytes], clients: int) -> dict:
    url = urllib.parse.urlsplit(base)
    latencies: list[float] = []
    resources = 0
    failures = 0
    lock = threading.Lock()
    queue = list(enumerate(bodies))

    def worker():
        nonlocal resources, failures
        conn = http.client.HTTPConnection(url.hostname, url.port, timeout=300)
        while True:
            with lock:
                if not queue:
                    break
                _, body = queue.pop(0)
            t0 = time.perf_counter()
            conn.request(
                "POST",
                url.path,
                body=body,
                headers={
                    "Content-Type": "application/fhir+json",
                    "Prefer": "return=minimal",
                    **auth_headers(),
                },
            )
            resp = conn.getresponse()
            data = resp.read()
            dt = time.perf_counter() - t0
            with lock:
                latencies.append(dt)
                if resp.status == 200:
                    entries = json.loads(data)["entry"]
                    resources += sum(1 for e in entries if e["response"]["status"].startswith("2"))
                else:
                    failures += 1
                    print(f"bundle failed: {resp.status} {data[:300]!r}", file=sys.stderr)
        conn.close()

    cpu0 = server_cpu_seconds()
    t0 = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    cpu1 = server_cpu_seconds()
    cpu = None if cpu0 is None or cpu1 is None else cpu1 - cpu0
    latencies.sort()
    return {
        "bundles": len(bodies),
        "failed_bundles": failures,
        "resources": resources,
        "seconds": round(wall, 2),
        "resources_per_second": round(resources / wall, 1),
        "bundle_p50_ms": round(statistics.median(latencies) * 1000, 1),
        "bundle_p95_ms": round(latencies[int(len(latencies) * 0.95) - 1] * 1000, 1),
        "server_cpu_seconds": None if cpu is None else round(cpu, 2),
        "resources_per_server_cpu_second": round(resources / cpu, 1) if cpu else None,
        "load_average": round(os.getloadavg()[0], 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--backend", action="append", choices=["sqlite", "postgres"])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--clients", type=int, default=1)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    bodies = [p.read_bytes() for p in sorted(args.data.glob("*.json"))]
    if not bodies:
        raise SystemExit(f"no bundles in {args.data}")
    results = {}
    for backend in args.backend or ["sqlite", "postgres"]:
        with hub_server(backend, workers=args.workers) as base:
            print(f"{backend}: {len(bodies)} bundles to {base}", file=sys.stderr)
            results[backend] = post_bundles(base, bodies, args.clients)
            print(f"{backend}: {results[backend]}", file=sys.stderr)
    text = json.dumps(results, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
