"""The R4 websocket binding: bind, bound, then a ping per notification."""

from __future__ import annotations

import socket

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from hub.subscriptions import notify
from tests.fixtures import mint_token
from tests.subscriptions.conftest import drain
from tests.subscriptions.conftest import observation


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def app_config(app_config):
    app_config["SUBSCRIPTION_WEBSOCKET_PORT"] = _free_port()
    return app_config


@pytest.fixture
def endpoint(hub):
    ws = notify.start_websocket(hub)
    yield ws
    ws.stop()


def _bearer(app, scopes: str = "system/*.cruds") -> dict[str, str]:
    return {"Authorization": f"Bearer {mint_token(app, scopes)}"}


def _websocket_subscription(fhir):
    sub = fhir.resource(
        "Subscription",
        status="requested",
        reason="Live heart rate",
        criteria="Observation?code=http://loinc.org|8867-4",
        channel={"type": "websocket"},
    )
    sub.save()
    return sub


def test_bind_then_a_ping_per_notification(fhir, app, hub, endpoint, app_config):
    sub = _websocket_subscription(fhir)
    assert sub["status"] == "active"
    url = f"ws://127.0.0.1:{app_config['SUBSCRIPTION_WEBSOCKET_PORT']}/"
    with connect(url, additional_headers=_bearer(app)) as ws:
        ws.send(f"bind {sub.id}")
        assert ws.recv(timeout=10) == f"bound {sub.id}"
        fhir.resource("Observation", **observation()).save()
        fhir.resource("Observation", **observation(code="29463-7")).save()
        fhir.resource("Observation", **observation()).save()
        assert drain(hub)["sent"] == 2
        assert ws.recv(timeout=10) == f"ping {sub.id}"
        assert ws.recv(timeout=10) == f"ping {sub.id}"
        with pytest.raises(TimeoutError):
            ws.recv(timeout=0.2)  # the non-matching one sent nothing


def test_binds_the_hub_refuses(fhir, app, hub, endpoint, app_config, receiver):
    url = f"ws://127.0.0.1:{app_config['SUBSCRIPTION_WEBSOCKET_PORT']}/"
    rest = fhir.resource(
        "Subscription",
        status="active",
        reason="rest",
        criteria="Observation?status=final",
        channel={"type": "rest-hook", "endpoint": receiver.url + "/hook"},
    )
    rest.save()
    off = _websocket_subscription(fhir)
    off["status"] = "off"
    off.save()
    with connect(url, additional_headers=_bearer(app)) as ws:
        for message, answer in [
            ("bind no-such-id", "error Subscription/no-such-id is not known"),
            (f"bind {rest.id}", f"error Subscription/{rest.id} has no websocket channel"),
            (f"bind {off.id}", f"error Subscription/{off.id} is off"),
            ("bind ../../x", "error not a Subscription id"),
            ("hello", "error send: bind <subscription-id>"),
        ]:
            ws.send(message)
            assert ws.recv(timeout=10) == answer


def test_binding_needs_a_token_that_may_read_the_subscription(fhir, app, hub, endpoint, app_config):
    sub = _websocket_subscription(fhir)
    url = f"ws://127.0.0.1:{app_config['SUBSCRIPTION_WEBSOCKET_PORT']}/"
    for headers in ({}, {"Authorization": "Bearer not-a-token"}):
        with connect(url, additional_headers=headers) as ws:
            with pytest.raises(ConnectionClosed) as closed:
                ws.send(f"bind {sub.id}")
                ws.recv(timeout=10)
            assert closed.value.rcvd.code == 1008
    # A valid token without read access to Subscriptions learns nothing of this one.
    with connect(url, additional_headers=_bearer(app, "system/Observation.rs")) as ws:
        ws.send(f"bind {sub.id}")
        assert ws.recv(timeout=10) == f"error Subscription/{sub.id} is not known"
        fhir.resource("Observation", **observation()).save()
        assert drain(hub)["sent"] == 1
        with pytest.raises(TimeoutError):
            ws.recv(timeout=0.2)  # no ping reached the refused connection


def test_the_capability_statement_names_the_websocket_endpoint(client, app_config):
    cs = client.get("/fhir/metadata").get_json()
    [rest] = cs["rest"]
    [ext] = rest["extension"]
    assert ext == {
        "url": "http://hl7.org/fhir/StructureDefinition/capabilitystatement-websocket",
        "valueUri": f"ws://127.0.0.1:{app_config['SUBSCRIPTION_WEBSOCKET_PORT']}/",
    }
    [entry] = [r for r in rest["resource"] if r["type"] == "Subscription"]
    assert {"create", "read", "update", "delete", "search-type"} <= {
        i["code"] for i in entry["interaction"]
    }
    assert "rest-hook" in entry["documentation"]


def test_without_a_websocket_port_no_extension(client, hub):
    hub.config["SUBSCRIPTION_WEBSOCKET_PORT"] = 0
    cs = client.get("/fhir/metadata").get_json()
    assert "extension" not in cs["rest"][0]


def test_a_second_worker_leaves_the_taken_port_to_the_first(hub, endpoint, app_config):
    from hub.kernel import Hub

    second = Hub(dict(hub.config), app_config["INSTANCE_PATH"])
    try:
        assert notify.start_websocket(second) is None
        assert second.subscription_websocket is None
    finally:
        second.close()
