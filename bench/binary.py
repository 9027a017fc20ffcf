"""Binary content: upload, raw and FHIR downloads, and a search page listing large Binaries.

    python bench/binary.py [--db URL] [--size MiB] [--count N] [--repeat R]

Builds a fresh app (default: a temporary SQLite file; PostgreSQL with
``--db postgresql+psycopg://...?options=-csearch_path%3Dbench``, whose schema must exist and
be empty), uploads N Binaries of ``--size`` MiB of random bytes as raw ``application/pdf``
bodies, then times, through the Flask test client (no network), p50 over R runs of: a raw
download, the FHIR JSON read (base64 ``data`` inline), and ``GET /fhir/Binary?_count=N``, the
search page listing all N, with its size in bytes. The page shows what keeping the bytes
apart from the JSON saves: with base64 in the JSON it would carry N x 4/3 x size.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time


def p50(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--db", default=None)
    ap.add_argument("--size", type=float, default=10.0)
    ap.add_argument("--count", type=int, default=20)
    ap.add_argument("--repeat", type=int, default=10)
    args = ap.parse_args()

    from hub.app import create_app
    from hub.app import get_hub

    tmp = tempfile.mkdtemp()
    app = create_app(
        {
            "DATABASE_URL": args.db or f"sqlite:///{tmp}/bench.db",
            "LOAD_ENTRY_POINTS": False,
            "TESTING": True,
            "RATE_LIMIT_PER_SECOND": 0,
            "BINARY_MAX_SIZE": int(args.size * 2**20) + 1,
        }
    )
    client = app.test_client()
    token = get_hub(app).security.mint("bench", "system/*.cruds", kind="user", grants=("*",))
    client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {token}"
    size = int(args.size * 2**20)
    ids, uploads = [], []
    for _ in range(args.count):
        body = os.urandom(size)
        t = time.perf_counter()
        resp = client.post(
            "/fhir/Binary",
            data=body,
            content_type="application/pdf",
            headers={"Prefer": "return=minimal"},
        )
        uploads.append((time.perf_counter() - t) * 1000)
        assert resp.status_code == 201, resp.data[:300]
        ids.append(resp.headers["Location"].split("/Binary/")[1].split("/")[0])
    first = ids[0]

    def raw():
        assert len(client.get(f"/fhir/Binary/{first}").data) == size

    def fhir_json():
        resp = client.get(f"/fhir/Binary/{first}", headers={"Accept": "application/fhir+json"})
        assert resp.status_code == 200 and len(resp.data) > size

    page_bytes = len(client.get(f"/fhir/Binary?_count={args.count}").data)

    def page():
        assert len(client.get(f"/fhir/Binary?_count={args.count}").data) == page_bytes

    backend = "PostgreSQL" if args.db else "SQLite"
    print(f"{backend}, {args.count} Binaries of {args.size:g} MiB")
    print(f"upload (raw, Prefer: return=minimal) p50: {statistics.median(uploads):.1f} ms")
    print(f"raw download p50: {p50(raw, args.repeat):.1f} ms")
    print(f"FHIR JSON read (base64 inline) p50: {p50(fhir_json, args.repeat):.1f} ms")
    print(
        f"search page of {args.count} p50: {p50(page, args.repeat):.1f} ms, {page_bytes} bytes"
        f" (inline base64 would be ~{args.count * size * 4 // 3 // 2**20} MiB)"
    )
    get_hub(app).close()


if __name__ == "__main__":
    main()
