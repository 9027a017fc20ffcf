"""A worker killed mid-matching, between matching and delivery, or mid-delivery:
every notification is queued exactly once and delivered at least once, under one id."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path

from hub.storage.subscriptions import SubscriptionStore
from hub.subscriptions import notify
from tests.subscriptions.conftest import observation
from tests.subscriptions.conftest import subscription

ROOT = Path(__file__).resolve().parents[2]


def _worker(mode: str, app_config: dict) -> subprocess.Popen:
    config = {
        k: app_config[k]
        for k in ("DATABASE_URL", "LOAD_ENTRY_POINTS", "INSTANCE_PATH", "SUBSCRIPTION_ENDPOINTS")
    }
    return subprocess.Popen(
        [sys.executable, "-m", "tests.subscriptions.child_worker", mode, json.dumps(config)],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )


def _said(proc: subprocess.Popen) -> str:
    line = proc.stdout.readline().strip()
    assert line, f"the worker ended early (exit {proc.wait()})"
    return line


def _kill(proc: subprocess.Popen) -> None:
    proc.kill()
    proc.wait()
    proc.stdin.close()
    proc.stdout.close()


def test_killed_workers_neither_lose_nor_double_notifications(client, hub, receiver, app_config):
    sub_id = client.post(
        "/fhir/Subscription", json=subscription(receiver.url + "/hook")
    ).get_json()["id"]
    for _ in range(3):
        assert client.post("/fhir/Observation", json=observation()).status_code == 201
    store = SubscriptionStore(hub.engine)

    # Killed inside the matching transaction: nothing of it stays, the cursor did not move.
    proc = _worker("mid-match", app_config)
    assert _said(proc) == "queued one"
    _kill(proc)
    assert store.list(sub_id) == []

    # Killed after matching committed, before delivering: the three are queued, once.
    proc = _worker("after-match", app_config)
    assert _said(proc) == "matched 3"
    _kill(proc)
    assert notify.match(hub) == 0  # the cursor moved with the notifications
    queued = store.list(sub_id)
    assert [r["status"] for r in queued] == ["pending"] * 3
    assert len({r["change_seq"] for r in queued}) == 3

    # Killed while the first POST is on the wire: it stays pending and goes again.
    receiver.hold = threading.Event()
    proc = _worker("deliver", app_config)
    [first] = receiver.wait_for(1)
    _kill(proc)
    receiver.hold.set()
    receiver.hold = None
    assert {r["status"] for r in store.list(sub_id)} == {"pending"}
    assert notify.deliver(hub)["sent"] == 3

    ids = [p["headers"]["X-Hub-Notification-Id"] for p in receiver.posts]
    expected = [notify.notification_id(sub_id, r["change_seq"]) for r in queued]
    assert ids[0] == first["headers"]["X-Hub-Notification-Id"] == expected[0]
    assert ids[1:] == expected  # the first one again (same id), then the others
    assert [r["status"] for r in store.list(sub_id)] == ["sent"] * 3
