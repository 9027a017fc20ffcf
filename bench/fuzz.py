"""Fuzz the FHIR API from its OpenAPI description with schemathesis; no answer may be a 5xx.

    python bench/fuzz.py [--examples 20] [--max-time 120]

Starts a hub with a fresh SQLite database on a loopback port (in this
process, threaded), mints a full-scope token and runs ``schemathesis run``
against ``/fhir/openapi.json`` with the ``not_a_server_error`` check. Exits
non-zero when schemathesis found a server error. The document lists every type
(about 1,900 API operations), so ``--max-time`` bounds this run; the test suite's
bounded, derandomised run is ``tests/security/test_fuzz.py``.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

from werkzeug.serving import make_server


def run(examples: int = 20, max_time: int = 120, workers: int = 1) -> int:
    from hub.app import create_app
    from hub.app import get_hub

    with tempfile.TemporaryDirectory(prefix="hub-fuzz-") as tmp:
        app = create_app(
            {
                "DATABASE_URL": f"sqlite:///{Path(tmp) / 'fuzz.db'}",
                "LOAD_ENTRY_POINTS": False,
                "RATE_LIMIT_PER_SECOND": 0,
            }
        )
        hub = get_hub(app)
        token = hub.security.mint("fuzz", "system/*.cruds user/AuditEvent.rs", "user", grants=["*"])
        server = make_server("127.0.0.1", 0, app, threaded=True)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        url = f"http://127.0.0.1:{server.socket.getsockname()[1]}/fhir/openapi.json"
        try:
            st = Path(sys.executable).with_name("schemathesis")
            return subprocess.run(
                [
                    str(st) if st.exists() else "schemathesis",
                    "run",
                    url,
                    "--header",
                    f"Authorization: Bearer {token}",
                    "--checks",
                    "not_a_server_error",
                    "--max-examples",
                    str(examples),
                    "--max-time",
                    str(max_time),
                    "--workers",
                    str(workers),
                    "--phases",
                    "examples,coverage,fuzzing",
                    "--seed",
                    "1",
                ],
                check=False,
            ).returncode
        finally:
            server.shutdown()
            hub.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=20)
    parser.add_argument("--max-time", type=int, default=120)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    sys.exit(run(args.examples, args.max_time, args.workers))


if __name__ == "__main__":
    main()
