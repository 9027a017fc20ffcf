"""Notification latency and throughput of rest-hook Subscriptions, with `hub worker` running.

usage: python bench/subscription_latency.py [--backend sqlite|postgres] [--writes 200]
       [--backlog 1000] [--subscriptions 20] [--interval 0.05]

A fresh hub (gunicorn, bench/serve.py) and one ``hub worker --interval INTERVAL`` beside it;
a local threaded HTTP receiver. ``--subscriptions`` active Subscriptions, one of which
matches the Observations written (the others, on other codes, are evaluated for every change).

* latency: one Observation at a time, from the 201 of its POST (the write committed) to the
  notification's arrival at the receiver; p50, p95 and max over ``--writes`` writes;
* throughput: with the worker stopped, ``--backlog`` Observations are written; then the
  worker starts and the notifications per second between the first and the last arrival
  are reported.
"""

from __future__ import annotations

import argparse
import http.server
import json
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import serve  # noqa: E402 - the benchmark's own helper beside it


class Receiver:
    def __init__(self):
        self.arrived: dict[str, float] = {}
        self.cond = threading.Condition()
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                at = time.perf_counter()
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with receiver.cond:
                    receiver.arrived.setdefault(json.loads(body)["id"], at)
                    receiver.cond.notify_all()
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait(self, ids, timeout: float = 600) -> None:
        with self.cond:
            if not self.cond.wait_for(lambda: all(i in self.arrived for i in ids), timeout):
                raise SystemExit(f"{sum(i not in self.arrived for i in ids)} never arrived")


def post(base: str, resource: dict) -> dict:
    req = urllib.request.Request(
        f"{base}/{resource['resourceType']}",
        data=json.dumps(resource).encode(),
        method="POST",
        headers={"Content-Type": "application/fhir+json", **serve.auth_headers()},
    )
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.loads(resp.read())


def observation(code: str) -> dict:
    return {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
        "valueQuantity": {"value": 72, "unit": "/min"},
    }


def start_worker(interval: float) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "hub.cli", "worker", "--interval", str(interval)],
        env=serve.ENV,
        stdout=subprocess.DEVNULL,
    )


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    proc.wait(timeout=30)


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--backend", default="sqlite", choices=("sqlite", "postgres"))
    ap.add_argument("--writes", type=int, default=200)
    ap.add_argument("--backlog", type=int, default=1000)
    ap.add_argument("--subscriptions", type=int, default=20)
    ap.add_argument("--interval", type=float, default=0.05)
    args = ap.parse_args()
    receiver = Receiver()
    # Without the example sites, whose outbound deliveries would share the worker's rounds.
    extra = {"HUB_SUBSCRIPTION_ENDPOINTS": receiver.url, "HUB_LOAD_EXAMPLE_SITES": "false"}
    with serve.hub_server(args.backend, workers=1, threads=4, extra_env=extra) as base:
        for i in range(args.subscriptions):
            code = "8867-4" if i == 0 else f"99{i:04d}-0"
            post(
                base,
                {
                    "resourceType": "Subscription",
                    "status": "requested",
                    "reason": "benchmark",
                    "criteria": f"Observation?code=http://loinc.org|{code}",
                    "channel": {
                        "type": "rest-hook",
                        "endpoint": receiver.url,
                        "payload": "application/fhir+json",
                    },
                },
            )
        worker = start_worker(args.interval)
        try:
            warm_up = post(base, observation("8867-4"))  # the worker is up and matching
            receiver.wait([warm_up["id"]])
            latencies = []
            for _ in range(args.writes):
                written = post(base, observation("8867-4"))
                committed = time.perf_counter()
                receiver.wait([written["id"]])
                latencies.append((receiver.arrived[written["id"]] - committed) * 1000)
        finally:
            stop(worker)
        backlog = [post(base, observation("8867-4"))["id"] for _ in range(args.backlog)]
        worker = start_worker(args.interval)
        try:
            receiver.wait(backlog)
        finally:
            stop(worker)
        times = sorted(receiver.arrived[i] for i in backlog)
        rate = (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 else float("nan")
    print(
        f"backend {args.backend}, {args.subscriptions} active Subscriptions, interval {args.interval}s"
    )
    print(
        f"latency over {len(latencies)} writes: p50 {statistics.median(latencies):.1f} ms,"
        f" p95 {pct(latencies, 95):.1f} ms, max {max(latencies):.1f} ms"
    )
    print(f"backlog of {args.backlog}: {rate:.0f} notifications/s")


if __name__ == "__main__":
    main()
