"""HL7 v2 throughput of several ``hub worker`` processes sharing one PostgreSQL inbox.

    python bench/workers.py [--messages 600] [--workers 1 --workers 2 --workers 4] [--repeat 1]
        [--people N] [--warm N]

For each worker count: a fresh PostgreSQL schema, the generated messages of
``bench/hl7_throughput.py`` stored as pending inbox items, then that many
``hub worker --once`` processes started together (each claims a group at a
time with ``FOR UPDATE SKIP LOCKED`` until the inbox is empty, then exits).
Reported: messages/second from the first to the last item processed (the
span of ``processed_at``, so process start-up is not counted), over the
whole wall time including start-up, the workers' CPU milliseconds per
message, and how much the workers waited for each other's group locks
(``lock_waiting``: the share of samples, every 20 ms while they run, in which
a worker waited for a resource's advisory lock, and the mean number waiting;
on a loaded machine a less noisy sign of serialised groups than the rates). ``HUB_BENCH_SCHEMA_PREFIX`` names the schemas (dropped afterwards).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import hl7_throughput as h  # noqa: E402


def run_once(messages: list[bytes], workers: int, group: int, warm: list[bytes] = ()) -> dict:
    """One run; ``warm`` messages are stored first, in-process and not measured, so that the
    workers find the feed's reference data (Organization, Practitioners) already there."""
    from sqlalchemy import func
    from sqlalchemy import select

    from hub.storage import schema as s

    with h.fresh_database("postgres") as (url, tmp):
        hub = h.make_hub(url, tmp)
        try:
            env = dict(
                os.environ,
                HUB_DATABASE_URL=url,
                HUB_INSTANCE_PATH=tmp,
                HUB_INGEST_GROUP_SIZE=str(group),
                HUB_AUTO_MIGRATE="false",
                # libpq names the workers' sessions: the lock sampler counts only theirs.
                PGAPPNAME=f"hub-bench-workers-{os.getpid()}",
            )
            # The same workers over an empty inbox first: their start-up CPU, taken off below.
            idle_cpu, _, _ = _run_workers(env, workers)
            if warm:
                hub.config["INGEST_GROUP_SIZE"] = group
                hub.pipeline.ingest_many(h.SITE, list(warm))
            with hub.engine.connect() as conn:
                measured = conn.execute(select(func.coalesce(func.max(s.inbox.c.id), 0))).scalar()
            site = hub.pipeline.site(h.SITE)
            fmt = hub.pipeline.format_for(site, messages[0], None)
            hub.pipeline.inbox.receive_many(
                h.SITE,
                [(b, hub.pipeline.source_key(fmt, b, site)) for b in messages],
                fmt=fmt,
                claim=False,
            )
            with _LockSampler(url, env["PGAPPNAME"]) as waits:
                cpu, wall, contention = _run_workers(env, workers)
            with hub.engine.connect() as conn:
                first, last = conn.execute(
                    select(
                        func.min(s.inbox.c.processed_at), func.max(s.inbox.c.processed_at)
                    ).where(s.inbox.c.id > measured)
                ).one()
            counts = hub.pipeline.inbox.counts()
        finally:
            hub.close()
    span = (last - first).total_seconds()
    return {
        "msgs_per_s": round(len(messages) / span, 1) if span else None,
        "msgs_per_s_with_startup": round(len(messages) / wall, 1),
        # CPU of the worker processes less their start-up (PostgreSQL's not counted):
        # a lost race's retried work shows here.
        "worker_cpu_ms_per_msg": round((cpu - idle_cpu) * 1000 / len(messages), 2),
        "load_average": round(os.getloadavg()[0], 1),
        "lost_races": contention,
        "lock_waiting": waits.summary(),
        "inbox": counts,
    }


class _LockSampler:
    """Samples, every 20 ms, how many backends wait for a resource lock of the group locks.

    The group locks are advisory locks under ``hub.storage.write_locks.NAMESPACE``;
    only the backends of this run's workers (their ``application_name``) are counted.
    """

    QUERY = (
        "SELECT count(*) FROM pg_locks AS l JOIN pg_stat_activity AS a ON a.pid = l.pid"
        " WHERE l.locktype = 'advisory' AND NOT l.granted AND l.classid = :ns"
        " AND a.application_name = :app"
    )

    def __init__(self, url: str, app: str):
        self.url = url
        self.app = app  # the workers' application_name: other users of the server not counted
        self.samples: list[int] = []
        self._stop = threading.Event()

    def __enter__(self):
        from sqlalchemy import create_engine
        from sqlalchemy import text

        from hub.storage.write_locks import NAMESPACE

        self._engine = create_engine(self.url)
        query, params = text(self.QUERY), {"ns": NAMESPACE, "app": self.app}

        def sample():
            with self._engine.connect() as conn:
                while not self._stop.wait(0.02):
                    self.samples.append(conn.execute(query, params).scalar())
                    conn.rollback()

        self._thread = threading.Thread(target=sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self._engine.dispose()

    def summary(self) -> dict:
        n = len(self.samples) or 1
        return {
            "samples": len(self.samples),
            "share_waiting": round(sum(1 for s in self.samples if s) / n, 3),
            "mean_waiting": round(sum(self.samples) / n, 2),
        }


def _run_workers(env: dict, workers: int) -> tuple[float, float, dict]:
    """Start ``workers`` ``hub worker --once`` together: (CPU seconds, wall seconds, lost races)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "hub.cli", "worker", "--once"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        for _ in range(workers)
    ]
    logs = [proc.communicate()[1].decode(errors="replace") for proc in procs]
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    text = "".join(logs)
    # Lost races: a group's transaction run again, or the group stored one by one.
    contention = {
        "retries": text.count(": retried (attempt"),
        "one_by_one": text.count("; one by one"),
    }
    return cpu, wall, contention


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--messages", type=int, default=600)
    ap.add_argument("--workers", type=int, action="append")
    ap.add_argument("--group", type=int, default=50)
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument(
        "--warm",
        type=int,
        default=0,
        help="messages stored before the measured ones (not measured): reference data present",
    )
    ap.add_argument(
        "--people",
        type=int,
        help="people the messages are about (default a quarter of --messages; more people,"
        " fewer Patients shared by the workers' groups)",
    )
    args = ap.parse_args()
    every = h.make_messages(args.messages + args.warm, people=args.people)
    warm, messages = every[: args.warm], every[args.warm :]
    summary = {"command": " ".join(["python", *sys.argv]), "workers": {}}
    for n in args.workers or [1, 2, 4]:
        runs = [run_once(messages, n, args.group, warm) for _ in range(args.repeat)]
        rates = [r["msgs_per_s"] for r in runs]
        summary["workers"][n] = {"msgs_per_s": statistics.median(rates), "runs": runs}
        print(f"{n} worker(s): {summary['workers'][n]}", file=sys.stderr)
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
