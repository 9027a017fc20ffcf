"""HL7 v2 throughput: parse + map, the whole ingestion pipeline, and MLLP round trips.

    python bench/hl7_throughput.py [--backend sqlite] [--backend postgres]
        [--messages 1000] [--repeat 3] [--senders 8] [--skip-mllp] [--profile FILE]

The figures reported for the project come from

    python bench/hl7_throughput.py --messages 1000 --repeat 3 --breakdown

Three measures, each repeated ``--repeat`` times (the median is reported):

(a) ``parse_map``: :func:`parse_message` + :func:`to_bundle` in one process, no
    database, over a realistic mix of generated messages (ADT A01/A04/A08 and
    ORU R01 with 5-10 OBX; synthetic Chinese names, valid resident ID numbers,
    MRNs and birth dates), as messages/second; parse and map also apart.
(b) ``pipeline``: ``hub.pipeline.ingest(site, body)`` in-process on a fresh
    database per run (SQLite file, or a fresh PostgreSQL schema): inbox insert
    and commit, mapping, identity, validation, indexing, the transaction and the
    inbox status, as messages/second on one thread.
(c) ``mllp``: ``hub mllp serve`` started as its own process on a fresh
    database, ``--senders`` concurrent senders each keeping one connection and
    waiting for each ACK; ACK latency p50/p99 and messages/second.

``--profile FILE`` also writes a cProfile of one (b) run per backend
(``FILE.<backend>.prof``) and prints the top functions by cumulative time;
``--breakdown`` times the pipeline's stages (ms per message, inclusive: the
transaction holds the structure check, validation, indexing and its commit).
The summary is printed as JSON on stdout. The messages are generated with a
fixed seed, so runs compare like with like.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import io
import json
import os
import pstats
import random
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid

PG_URL = os.environ.get(
    "HUB_BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
SITE = "county-hospital-a"  # conformance/sites: MSH-3 WINNING_HIS, MSH-4 XRMYY, UTF-8

# ---------------------------------------------------------------------------
# Synthetic messages
# ---------------------------------------------------------------------------

SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘蒋蔡余杜叶程苏魏吕丁任沈姚卢"
COMPOUND = ["欧阳", "司马", "诸葛", "上官"]
GIVEN = "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂英华玉兰萍红鹏建国文辉力斌宇浩凯嘉怡欣然子轩梓涵一诺"
DIVISIONS = ["410102", "410105", "410122", "110101", "310104", "440106", "510107", "330106"]
WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
LABS = [
    ("2093-3", "Cholesterol", "NM", "mmol/L", "3.1-5.7", 3.0, 7.0),
    ("2571-8", "Triglyceride", "NM", "mmol/L", "0.5-1.7", 0.3, 3.0),
    ("2345-7", "Glucose", "NM", "mmol/L", "3.9-6.1", 3.0, 12.0),
    ("718-7", "Hemoglobin", "NM", "g/L", "120-160", 90, 180),
    ("6690-2", "WBC", "NM", "10*9/L", "4.0-10.0", 2.0, 15.0),
    ("777-3", "Platelets", "NM", "10*9/L", "100-300", 50, 450),
    ("2160-0", "Creatinine", "NM", "umol/L", "44-133", 30, 200),
    ("3094-0", "Urea nitrogen", "NM", "mmol/L", "2.9-8.2", 2.0, 12.0),
    ("1742-6", "ALT", "NM", "U/L", "0-40", 5, 120),
    ("1920-8", "AST", "NM", "U/L", "0-40", 5, 120),
    ("5196-1", "HBsAg", "ST", "", "阴性", 0, 0),
]


def check_character(first17: str) -> str:
    from hub.identity.resident_id import check_character as check

    return check(first17)


def make_people(rng: random.Random, count: int) -> list[dict]:
    people = []
    for n in range(count):
        surname = rng.choice(COMPOUND) if rng.random() < 0.03 else rng.choice(SURNAMES)
        given = "".join(rng.choice(GIVEN) for _ in range(rng.choice((1, 2, 2))))
        year, month, day = rng.randint(1935, 2020), rng.randint(1, 12), rng.randint(1, 28)
        birth = f"{year:04d}{month:02d}{day:02d}"
        male = rng.random() < 0.5
        seq = rng.randrange(0, 999)
        seq = seq - seq % 2 + (1 if male else 0)
        first17 = f"{rng.choice(DIVISIONS)}{birth}{seq % 1000:03d}"
        people.append(
            {
                "family": surname,
                "given": given,
                "birth": birth,
                "sex": "M" if male else "F",
                "rid": first17 + check_character(first17),
                "mrn": f"{100000 + n:07d}",
                "phone": f"13{rng.randrange(10**9):09d}",
            }
        )
    return people


def _msh(kind: str, control: str, when: str) -> str:
    return (
        f"MSH|^~\\&|WINNING_HIS|XRMYY|FHIRHUB|HUB|{when}||{kind}|{control}|P|2.5|||AL|NE|CHN|"
        "UNICODE UTF-8"
    )


def _pid(p: dict) -> str:
    return (
        f"PID|1||{p['mrn']}^^^XRMYY^MR~{p['rid']}^^^CHN^NNCHN||{p['family']}^{p['given']}^^^^^L"
        f"||{p['birth']}|{p['sex']}|||建设路\\S\\{int(p['mrn']) % 300}号^^郑州市^河南省^450000^CHN^H^^410102"
        f"||^PRN^CP^^^^^^^^^{p['phone']}|||M"
    )


def adt(rng: random.Random, p: dict, n: int, event: str) -> str:
    when = f"202403{rng.randint(1, 28):02d}{rng.randint(0, 23):02d}{rng.randint(0, 59):02d}00"
    klass = "O" if event == "A04" else "I"
    visit = f"V{int(p['mrn']) * 10 + n % 3:09d}"
    segs = [
        _msh(f"ADT^{event}^ADT_A01", f"ADT-{n:08d}", when),
        f"EVN|{event}|{when}",
        _pid(p),
        f"NK1|1|{rng.choice(SURNAMES)}^{rng.choice(GIVEN)}|SPO|||^PRN^CP^^^^^^^^^139{n:08d}",
        f"PV1|1|{klass}|内科^{300 + n % 20}^{1 + n % 4}^XRMYY||||D{n % 50:03d}^王^医生|||内科||||7|||"
        f"D{n % 50:03d}^王^医生||{visit}|||||||||||||||||||||||||{when}",
    ]
    if event != "A04":
        segs.append("PV2|||^高血压入院")
        segs.append("DG1|1||I10.x00x002^原发性高血压^ICD10CN||20240315|A")
    if rng.random() < 0.3:
        segs.append("AL1|1|DA|^青霉素|SV|皮疹")
    segs.append("IN1|1|310^城镇职工基本医疗保险|YB41|郑州市医疗保障局||||||||20240101|20241231")
    return "\r".join(segs) + "\r"


def oru(rng: random.Random, p: dict, n: int) -> str:
    when = f"202403{rng.randint(1, 28):02d}{rng.randint(0, 23):02d}{rng.randint(0, 59):02d}00"
    visit = f"V{int(p['mrn']) * 10 + n % 3:09d}"
    segs = [
        _msh("ORU^R01^ORU_R01", f"ORU-{n:08d}", when),
        f"PID|1||{p['mrn']}^^^XRMYY^MR~{p['rid']}^^^CHN^NNCHN||{p['family']}^{p['given']}||"
        f"{p['birth']}|{p['sex']}",
        f"PV1|1|I|内科^301^2||||||||||||||||{visit}",
        f"OBR|1|P{n:07d}|F{n:07d}|24331-1^Lipid panel^LN|||{when}|||||||||||||||{when}||CH|F",
    ]
    for i, lab in enumerate(rng.sample(LABS, rng.randint(5, 10)), start=1):
        code, name, vtype, unit, ref, low, high = lab
        if vtype == "NM":
            value = f"{rng.uniform(low, high):.1f}"
            segs.append(
                f"OBX|{i}|NM|{code}^{name}^LN||{value}|{unit}^{unit}^UCUM|{ref}|"
                f"{rng.choice(('N', 'N', 'H', 'L'))}|||F|||{when}"
            )
        else:
            segs.append(f"OBX|{i}|ST|{code}^{name}^LN||阴性||{ref}|N|||F")
    segs.append("NTE|1||空腹采血")
    return "\r".join(segs) + "\r"


def make_messages(count: int, seed: int = 20240315, people: int | None = None) -> list[bytes]:
    """``count`` messages: 20% A01, 15% A04, 15% A08, 50% ORU R01 (people re-appear).

    ``people``: how many people the messages are about (default a quarter of ``count``).
    """
    rng = random.Random(seed)
    people = make_people(rng, max(people or count // 4, 1))
    out = []
    for n in range(count):
        p = rng.choice(people)
        r = rng.random()
        if r < 0.20:
            text = adt(rng, p, n, "A01")
        elif r < 0.35:
            text = adt(rng, p, n, "A04")
        elif r < 0.50:
            text = adt(rng, p, n, "A08")
        else:
            text = oru(rng, p, n)
        out.append(text.encode("utf-8"))
    return out


# ---------------------------------------------------------------------------
# Databases and hubs
# ---------------------------------------------------------------------------


@contextlib.contextmanager
def fresh_database(backend: str):
    """A database URL for a fresh database; removed afterwards."""
    tmp = tempfile.mkdtemp(prefix="hub-hl7bench-")
    schema = admin = None
    try:
        if backend == "sqlite":
            yield f"sqlite:///{tmp}/bench.db", tmp
        else:
            from sqlalchemy import create_engine
            from sqlalchemy import text

            schema = (
                f"{os.environ.get('HUB_BENCH_SCHEMA_PREFIX', 'hl7perf')}_{uuid.uuid4().hex[:8]}"
            )
            admin = create_engine(PG_URL, isolation_level="AUTOCOMMIT")
            with admin.connect() as conn:
                conn.execute(text(f'CREATE SCHEMA "{schema}"'))
            yield f"{PG_URL}?options=-csearch_path%3D{schema}", tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if schema:
            from sqlalchemy import text

            with admin.connect() as conn:
                conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
            admin.dispose()


def make_hub(url: str, tmp: str):
    from hub.app import Hub
    from hub.config import DEFAULTS

    return Hub(dict(DEFAULTS, DATABASE_URL=url), tmp)


# ---------------------------------------------------------------------------
# Measures
# ---------------------------------------------------------------------------


def measure_parse_map(messages: list[bytes], repeat: int) -> dict:
    from fhirhub_plugins.hl7v2.messages import to_bundle
    from fhirhub_plugins.hl7v2.parse import parse_message
    from hub.mapping import MappingContext
    from hub.sites import load_sites

    hub_maps = _code_maps()
    from hub.paths import SITES_DIR

    site = load_sites([SITES_DIR], hub_maps)[SITE]
    both, parse_only, map_only, cpu = [], [], [], []
    for _ in range(repeat):
        n = len(messages)
        t0 = time.perf_counter()
        for m in messages:
            parse_message(m, site)
        t1 = time.perf_counter()
        for m in messages:
            msg = parse_message(m, site)
            to_bundle(msg, site, MappingContext(site, hub_maps))
        t2 = time.perf_counter()
        c0 = time.process_time()
        for m in messages:
            to_bundle(parse_message(m, site), site, MappingContext(site, hub_maps))
        t3 = time.perf_counter()
        cpu.append(n / (time.process_time() - c0))
        parse_only.append(n / (t1 - t0))
        map_only.append(n / ((t2 - t1) - (t1 - t0)))
        both.append(n / (t3 - t2))
    med = statistics.median
    return {
        "messages": len(messages),
        "msgs_per_s": round(med(both)),
        "msgs_per_cpu_s": round(med(cpu)),
        "parse_msgs_per_s": round(med(parse_only)),
        "ms_per_msg": round(1000 / med(both), 3),
        "parse_ms_per_msg": round(1000 / med(parse_only), 3),
        "map_ms_per_msg": round(1000 / med(map_only), 3),
        "runs": [round(x) for x in both],
    }


def _code_maps():
    from hub.mapping import load_code_maps
    from hub.paths import MAPPINGS_DIR

    return load_code_maps([MAPPINGS_DIR])


def _statuses(hub) -> dict:
    return hub.pipeline.inbox.counts()


def measure_pipeline(
    backend: str, messages: list[bytes], repeat: int, profile: str | None, group: int = 1
):
    """Messages/second through the pipeline: one ``ingest`` per message (``group=1``,
    a commit per message) or ``ingest_many`` over ``group`` messages at a time
    (group commit, as ``hub ingest`` and the MLLP listener under load)."""
    rates, cpu, statuses = [], [], {}
    # A profiled run is extra: ``repeat`` timed runs are always made.
    for run in range(repeat + (1 if profile else 0)):
        with fresh_database(backend) as (url, tmp):
            hub = make_hub(url, tmp)
            hub.config["INGEST_GROUP_SIZE"] = group
            try:
                prof = cProfile.Profile() if profile and run == 0 else None
                t0, c0 = time.perf_counter(), time.process_time()
                if prof:
                    prof.enable()
                if group == 1:
                    for body in messages:
                        hub.pipeline.ingest(SITE, body)
                else:
                    for i in range(0, len(messages), group):
                        hub.pipeline.ingest_many(SITE, messages[i : i + group])
                if prof:
                    prof.disable()
                elapsed = time.perf_counter() - t0
                cpu_used = time.process_time() - c0
                statuses = _statuses(hub)
                if prof:
                    path = f"{profile}.{backend}.prof"
                    prof.dump_stats(path)
                    _print_profile(prof, backend)
                else:
                    rates.append(len(messages) / elapsed)
                    cpu.append(len(messages) / cpu_used)
            finally:
                hub.close()
    return {
        "messages": len(messages),
        "msgs_per_s": round(statistics.median(rates), 1),
        "ms_per_msg": round(1000 / statistics.median(rates), 2),
        # CPU of this process only: the hub's own work (SQLite included, PostgreSQL not).
        "msgs_per_cpu_s": round(statistics.median(cpu), 1),
        "runs": [round(r, 1) for r in rates],
        "inbox": statuses,
    }


# Stages timed by --breakdown: (label, module, owner attribute or None, function name).
# Inclusive wall times: "transaction" holds structure, validation, index and its commit.
STAGES = [
    ("inbox_receive", "hub.ingest.inbox", "Inbox", "receive"),
    ("inbox_receive_many", "hub.ingest.inbox", "Inbox", "receive_many"),
    ("inbox_reads", "hub.ingest.inbox", "Inbox", "get"),
    ("site_state", "hub.ingest.pipeline", "Pipeline", "_load_state"),
    ("parse", "fhirhub_plugins.hl7v2", None, "parse_message"),
    ("map", "fhirhub_plugins.hl7v2", None, "to_bundle"),
    ("identity", "hub.ingest.identity", None, "resolve"),
    ("transaction", "hub.ingest.pipeline", "Pipeline", "_store"),
    ("message_in_transaction", "hub.ingest.pipeline", "Pipeline", "_store_one"),
    ("lifetime_refresh", "hub.lifetime.ingest", None, "refresh"),
    ("flush", "hub.storage.repository", "Writer", "flush"),
    ("structure_check", "hub.validation.structure", None, "check_structure"),
    ("profile_validation", "hub.fhir.service", "FhirService", "check_resource"),
    ("index", "hub.search.indexer", "Indexer", "index"),
    ("db_commit", "sqlalchemy.engine.default", "DefaultDialect", "do_commit"),
    ("db_checkout", "sqlalchemy.pool.base", "_ConnectionFairy", "_checkout"),
]


@contextlib.contextmanager
def stage_timers():
    """Wrap the STAGES functions with wall-clock accumulators; yields {label: [seconds, calls]}."""
    import functools
    import importlib

    totals: dict[str, list] = {}
    undo = []
    for label, module_name, owner_name, name in STAGES:
        module = importlib.import_module(module_name)
        owner = getattr(module, owner_name) if owner_name else module
        original = owner.__dict__[name] if owner_name else getattr(module, name)
        is_class_method = isinstance(original, classmethod)
        func = original.__func__ if is_class_method else original
        slot = totals.setdefault(label, [0.0, 0])

        def timed(*args, _func=func, _slot=slot, **kwargs):
            t0 = time.perf_counter()
            try:
                return _func(*args, **kwargs)
            finally:
                _slot[0] += time.perf_counter() - t0
                _slot[1] += 1

        wrapped = functools.wraps(func)(timed)
        setattr(owner, name, classmethod(wrapped) if is_class_method else wrapped)
        undo.append((owner, name, original))
    try:
        yield totals
    finally:
        for owner, name, original in reversed(undo):
            setattr(owner, name, original)


def measure_breakdown(backend: str, messages: list[bytes], group: int) -> dict:
    """Milliseconds per message in each stage (one run, fresh database)."""
    with fresh_database(backend) as (url, tmp):
        hub = make_hub(url, tmp)
        hub.config["INGEST_GROUP_SIZE"] = group
        try:
            with stage_timers() as totals:
                t0 = time.perf_counter()
                for i in range(0, len(messages), group):
                    hub.pipeline.ingest_many(SITE, messages[i : i + group])
                elapsed = time.perf_counter() - t0
        finally:
            hub.close()
    n = len(messages)
    out = {"total": round(elapsed * 1000 / n, 2)}
    for label, (seconds, calls) in totals.items():
        out[label] = round(seconds * 1000 / n, 2)
        out[label + "_calls"] = round(calls / n, 1)
    return out


def _print_profile(prof: cProfile.Profile, backend: str) -> None:
    out = io.StringIO()
    pstats.Stats(prof, stream=out).sort_stats("cumulative").print_stats(45)
    print(f"--- profile ({backend}), by cumulative time ---", file=sys.stderr)
    print(out.getvalue(), file=sys.stderr)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _sender(port: int, bodies: list[bytes], latencies: list[float], acks: dict) -> None:
    from fhirhub_plugins.hl7v2.mllp import FrameReader
    from fhirhub_plugins.hl7v2.mllp import frame

    with socket.create_connection(("127.0.0.1", port), timeout=120) as sock:
        reader = FrameReader()
        for body in bodies:
            t0 = time.perf_counter()
            sock.sendall(frame(body))
            got: list[bytes] = []
            while not got:
                data = sock.recv(65536)
                if not data:
                    raise ConnectionError("the listener closed the connection")
                got = reader.feed(data)
            latencies.append(time.perf_counter() - t0)
            code = got[0].split(b"\rMSA|", 1)[1][:2].decode() if b"\rMSA|" in got[0] else "??"
            acks[code] = acks.get(code, 0) + 1


def measure_mllp(backend: str, messages: list[bytes], repeat: int, senders: int) -> dict:
    rates, p50s, p99s, cpu, acks = [], [], [], [], {}
    for _ in range(repeat):
        with fresh_database(backend) as (url, tmp):
            env = dict(os.environ, HUB_INSTANCE_PATH=tmp, HUB_DATABASE_URL=url)
            subprocess.run(
                [sys.executable, "-m", "hub.cli", "db", "upgrade"],
                env=env,
                check=True,
                capture_output=True,
            )
            env["HUB_AUTO_MIGRATE"] = "false"
            port = _free_port()
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            proc = subprocess.Popen(
                [sys.executable, "-m", "hub.cli", "mllp", "serve", "--port", str(port)],
                env=env,
                stderr=subprocess.PIPE,
            )
            try:
                _wait_listening(port, proc)
                latencies: list[float] = []
                acks = {}
                shares = [messages[i::senders] for i in range(senders)]
                threads = [
                    threading.Thread(target=_sender, args=(port, share, latencies, acks))
                    for share in shares
                ]
                t0 = time.perf_counter()
                for t in threads:
                    t.start()
                for t in threads:
                    t.join()
                elapsed = time.perf_counter() - t0
            finally:
                proc.terminate()
                proc.wait(timeout=30)
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            used = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
            cpu.append(used)
            latencies.sort()
            rates.append(len(latencies) / elapsed)
            p50s.append(latencies[len(latencies) // 2] * 1000)
            p99s.append(latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000)
    med = statistics.median
    return {
        "messages": len(messages),
        "senders": senders,
        "msgs_per_s": round(med(rates), 1),
        "ack_p50_ms": round(med(p50s), 1),
        "ack_p99_ms": round(med(p99s), 1),
        # The listener process's CPU seconds per message (start-up included).
        "server_cpu_ms_per_msg": round(med(cpu) * 1000 / len(messages), 2),
        "runs": [round(r, 1) for r in rates],
        "acks": acks,
    }


def _wait_listening(port: int, proc: subprocess.Popen) -> None:
    deadline = time.time() + 60
    while time.time() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"hub mllp serve exited: {proc.stderr.read().decode()[-2000:]}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
            return
        time.sleep(0.1)
    raise SystemExit("hub mllp serve did not start listening")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--backend", action="append", choices=["sqlite", "postgres"])
    parser.add_argument("--messages", type=int, default=1000)
    parser.add_argument("--parse-messages", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--senders", type=int, default=8)
    parser.add_argument("--skip-parse", action="store_true")
    parser.add_argument("--skip-pipeline", action="store_true")
    parser.add_argument("--skip-mllp", action="store_true")
    parser.add_argument("--profile", help="write a cProfile of one pipeline run per backend")
    parser.add_argument(
        "--group",
        type=int,
        default=50,
        help="messages per group commit for the grouped pipeline figure (default 50)",
    )
    parser.add_argument(
        "--breakdown", action="store_true", help="time the pipeline's stages (one more run)"
    )
    args = parser.parse_args()
    backends = args.backend or ["sqlite", "postgres"]
    messages = make_messages(args.messages)
    summary: dict = {"command": " ".join(["python", *sys.argv])}
    if not args.skip_parse:
        summary["parse_map"] = measure_parse_map(make_messages(args.parse_messages), args.repeat)
        print(f"parse_map: {summary['parse_map']}", file=sys.stderr)
    for backend in backends:
        if not args.skip_pipeline:
            result = measure_pipeline(backend, messages, args.repeat, None)
            summary.setdefault("pipeline", {})[backend] = result
            print(f"pipeline {backend}: {result}", file=sys.stderr)
            result = measure_pipeline(backend, messages, args.repeat, args.profile, args.group)
            summary.setdefault("pipeline_grouped", {})[backend] = result
            print(f"pipeline grouped {backend}: {result}", file=sys.stderr)
        if args.breakdown:
            result = measure_breakdown(backend, messages, args.group)
            summary.setdefault("breakdown_ms_per_msg", {})[backend] = result
            print(f"breakdown {backend}: {result}", file=sys.stderr)
        if not args.skip_mllp:
            result = measure_mllp(backend, messages, args.repeat, args.senders)
            summary.setdefault("mllp", {})[backend] = result
            print(f"mllp {backend}: {result}", file=sys.stderr)
    print(json.dumps(summary, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
