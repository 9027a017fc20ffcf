"""A real HTTP receiver for rest-hook notifications, and a hub allowed to post to it."""

from __future__ import annotations

import http.server
import threading

import pytest
from fhirpy import SyncFHIRClient

from hub.subscriptions import notify


class Receiver:
    """A tiny threaded HTTP server recording every POST (path, headers, body).

    ``fail`` > 0 answers that many POSTs with 503; ``hold`` (an Event) keeps each
    request waiting, after it is recorded, until it is set.
    """

    def __init__(self):
        self.posts: list[dict] = []
        self.fail = 0
        self.hold: threading.Event | None = None
        self.arrived = threading.Condition()
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                with receiver.arrived:
                    receiver.posts.append(
                        {"path": self.path, "headers": dict(self.headers), "body": body}
                    )
                    failing = receiver.fail > 0
                    if failing:
                        receiver.fail -= 1
                    receiver.arrived.notify_all()
                if receiver.hold is not None:
                    receiver.hold.wait(30)
                self.send_response(503 if failing else 200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def wait_for(self, count: int, timeout: float = 30) -> list[dict]:
        """The POSTs once ``count`` have arrived (fails after ``timeout`` seconds)."""
        with self.arrived:
            assert self.arrived.wait_for(lambda: len(self.posts) >= count, timeout), self.posts
            return list(self.posts)

    def close(self):
        if self.hold is not None:
            self.hold.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


@pytest.fixture
def app_config(app_config, receiver):
    app_config["SUBSCRIPTION_ENDPOINTS"] = receiver.url + "/hook"
    return app_config


@pytest.fixture
def fhir(live_server):
    """fhirpy against the live hub, with a full-scope token."""
    return SyncFHIRClient(
        live_server.fhir,
        authorization=f"Bearer {live_server.token}",
        extra_headers={"Accept": "application/fhir+json"},
    )


def subscription(
    endpoint: str, criteria: str = "Observation?code=http://loinc.org|8867-4", **channel
):
    return {
        "resourceType": "Subscription",
        "status": "requested",
        "reason": "Heart rate results for the ward dashboard",
        "criteria": criteria,
        "channel": {"type": "rest-hook", "endpoint": endpoint, **channel},
    }


def observation(code: str = "8867-4", **extra) -> dict:
    return {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
        "valueQuantity": {"value": 72, "unit": "/min"},
        **extra,
    }


def drain(hub) -> dict[str, int]:
    """Worker rounds until nothing more is matched or sent now (what ``hub worker`` does)."""
    total: dict[str, int] = {}
    while True:
        counts = notify.run(hub)
        for k, v in counts.items():
            total[k] = total.get(k, 0) + v
        if not (counts["queued"] or counts["sent"] or counts["dropped"]):
            return total
