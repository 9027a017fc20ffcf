"""Synthea transactions in process, for instruction counts (callgrind) and profiles.

    valgrind --tool=callgrind --collect-atstart=no --toggle-collect=functools_reduce \
        python bench/transaction_instructions.py [--bundles 6] [--warm 3] [--prefer return=minimal]

A fresh hub (SQLite in a temporary folder, or ``HUB_DATABASE_URL``) posts ``--warm`` bundles of
``--data`` through the Flask test client, then ``--bundles`` more inside ``functools.reduce``,
so that callgrind counts only those. Prints resources, wall and CPU seconds.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "samples" / "synthea"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--bundles", type=int, default=6)
    parser.add_argument("--warm", type=int, default=3)
    parser.add_argument("--prefer", default="return=minimal")
    args = parser.parse_args()
    tmp = tempfile.mkdtemp(prefix="hub-tx-")
    os.environ["HUB_RATE_LIMIT_PER_SECOND"] = "0"
    os.environ["HUB_INSTANCE_PATH"] = tmp
    os.environ.setdefault("HUB_DATABASE_URL", f"sqlite:///{tmp}/tx.db")

    def cli(*a: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "hub.cli", *a], check=True, capture_output=True, text=True
        )
        return done.stdout.strip()

    cli("db", "upgrade")
    cli("clients", "add", "bench", "--scopes", "system/*.cruds", "--grant-label", "*")
    token = cli("token", "bench", "--lifetime", "86400")
    from hub.app import create_app
    from hub.app import freeze_startup_objects

    app = create_app()
    freeze_startup_objects()  # as hub.wsgi does
    client = app.test_client()
    headers = {
        "Authorization": f"Bearer {token}",
        "Content-Type": "application/fhir+json",
        "Prefer": args.prefer,
    }
    paths = sorted(args.data.glob("*.json"))[: args.warm + args.bundles]
    if len(paths) <= args.warm:
        raise SystemExit(f"not enough bundles in {args.data}")
    bodies = [p.read_bytes() for p in paths]
    for body in bodies[: args.warm]:
        client.post("/fhir", data=body, headers=headers)
    measured = bodies[args.warm :]
    count = sum(len(json.loads(b)["entry"]) for b in measured)

    def post(_, body: bytes) -> None:
        resp = client.post("/fhir", data=body, headers=headers)
        assert resp.status_code == 200, resp.data[:500]

    t0, r0 = time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF)
    functools.reduce(post, measured, None)
    wall, r1 = time.perf_counter() - t0, resource.getrusage(resource.RUSAGE_SELF)
    cpu = r1.ru_utime - r0.ru_utime + r1.ru_stime - r0.ru_stime
    print(f"{count} resources, {wall:.2f} s wall, {cpu:.2f} s CPU, load {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
