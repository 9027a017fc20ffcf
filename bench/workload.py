"""The comparable workload (``../shared/bench/fhir_workload.py``) against a fresh hub per backend.

    python bench/workload.py --backend sqlite --backend postgres [--out-dir bench/out]

Starts the hub as ``bench/serve.py`` does (gunicorn, 2 workers x 4 threads,
fresh database, a bench client's token), runs the shared workload script
unchanged (ingest of the 100 Synthea bundles, the fixed search mix with 1 and 8
clients, the mixed run) and keeps its JSON summary per backend, with the
resident memory of each web worker after the run (``hub_worker_rss_mib``).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import serve  # noqa: E402

WORKLOAD = Path(__file__).resolve().parents[2] / "shared" / "bench" / "fhir_workload.py"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backend", action="append", choices=["sqlite", "postgres"])
    ap.add_argument("--out-dir", type=Path, default=Path("bench/out"))
    ap.add_argument("--workload", type=Path, default=WORKLOAD)
    args, extra = ap.parse_known_args()
    args.out_dir.mkdir(parents=True, exist_ok=True)
    for backend in args.backend or ["sqlite", "postgres"]:
        with serve.hub_server(backend) as base:
            with tempfile.NamedTemporaryFile("w", suffix=".token", delete=False) as f:
                f.write(serve.TOKEN)
            out = args.out_dir / f"workload-{backend}.json"
            cmd = [
                sys.executable,
                str(args.workload),
                base,
                "--token-file",
                f.name,
                "--out",
                str(out),
                *extra,
            ]
            print("$ " + " ".join(cmd), file=sys.stderr)
            subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
            # The web workers' memory after the whole workload (aim: at most 300 MiB each).
            summary = json.loads(out.read_text())
            summary["hub_worker_rss_mib"] = serve.worker_rss_mib()
            out.write_text(json.dumps(summary, indent=1))
            print(f"{backend}: {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
