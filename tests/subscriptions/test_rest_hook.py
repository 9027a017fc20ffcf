"""rest-hook Subscriptions created through fhirpy, notified to a real HTTP receiver."""

from __future__ import annotations

import datetime as dt

import orjson
import pytest
from fhirpy.base.exceptions import OperationOutcome
from lxml import etree

from hub.codesystems import RESTRICTED
from hub.codesystems import VETERAN_SENSITIVITY
from hub.security import clients
from hub.storage.db import writing
from hub.storage.subscriptions import SubscriptionStore
from hub.subscriptions import notify
from tests.fixtures import authed_client
from tests.subscriptions.conftest import drain
from tests.subscriptions.conftest import observation
from tests.subscriptions.conftest import subscription


def _create(fhir, body: dict):
    sub = fhir.resource("Subscription", **{k: v for k, v in body.items() if k != "resourceType"})
    sub.save()
    return sub


def test_a_matching_write_is_posted_with_its_payload_and_headers(fhir, hub, receiver):
    sub = _create(
        fhir,
        subscription(
            receiver.url + "/hook",
            payload="application/fhir+json",
            header=["Authorization: Bearer partner-secret", "X-Ward: 3"],
        ),
    )
    assert sub["status"] == "active"  # requested, checked, activated
    matching = fhir.resource("Observation", **observation())
    matching.save()
    fhir.resource("Observation", **observation(code="29463-7")).save()  # other criteria
    counts = drain(hub)
    assert counts["queued"] == 1 and counts["sent"] == 1
    [post] = receiver.wait_for(1)
    assert post["path"] == "/hook"
    assert post["headers"]["Content-Type"] == "application/fhir+json"
    assert post["headers"]["Authorization"] == "Bearer partner-secret"
    assert post["headers"]["X-Ward"] == "3"
    assert (
        post["headers"]["X-Hub-Notification-Id"]
        == f"{sub.id}-" + (post["headers"]["X-Hub-Notification-Id"].rsplit("-", 1)[1])
    )
    body = orjson.loads(post["body"])
    assert (body["resourceType"], body["id"], body["meta"]["versionId"]) == (
        "Observation",
        matching.id,
        "1",
    )
    assert drain(hub) == {"queued": 0, "sent": 0, "retry": 0, "dead": 0, "dropped": 0}


def test_without_payload_the_notification_is_an_empty_post(fhir, hub, receiver):
    _create(fhir, subscription(receiver.url + "/hook"))
    fhir.resource("Observation", **observation()).save()
    drain(hub)
    [post] = receiver.wait_for(1)
    assert post["body"] == b""


def test_xml_payload(fhir, hub, receiver):
    _create(fhir, subscription(receiver.url + "/hook", payload="application/fhir+xml"))
    obs = fhir.resource("Observation", **observation())
    obs.save()
    drain(hub)
    [post] = receiver.wait_for(1)
    assert post["headers"]["Content-Type"] == "application/fhir+xml"
    root = etree.fromstring(post["body"])
    assert etree.QName(root).localname == "Observation"
    assert root.find("{http://hl7.org/fhir}id").get("value") == obs.id


def test_updates_and_criteria_on_other_parameters(fhir, hub, receiver):
    _create(fhir, subscription(receiver.url + "/hook", criteria="Observation?status=amended"))
    obs = fhir.resource("Observation", **observation())
    obs.save()
    drain(hub)
    assert receiver.posts == []  # final does not match
    obs["status"] = "amended"
    obs.save()
    drain(hub)
    assert len(receiver.wait_for(1)) == 1


def test_changes_before_the_subscription_are_not_notified(fhir, hub, receiver):
    fhir.resource("Observation", **observation()).save()
    _create(fhir, subscription(receiver.url + "/hook"))
    assert drain(hub)["queued"] == 0
    assert receiver.posts == []


@pytest.mark.parametrize(
    ("change", "expression", "status"),
    [
        ({"criteria": "Observation?nonsense-param=1"}, "Subscription.criteria", 400),
        ({"criteria": "NoSuchType?code=1"}, "Subscription.criteria", 400),
        ({"criteria": "Observation?_count=5"}, "Subscription.criteria", 400),
        ({"criteria": "Observation?date=notadate"}, "Subscription.criteria", 400),
        (
            {"channel": {"type": "email", "endpoint": "mailto:a@b"}},
            "Subscription.channel.type",
            400,
        ),
        (
            {"channel": {"type": "rest-hook", "endpoint": "http://169.254.169.254/latest"}},
            "Subscription.channel.endpoint",
            422,
        ),
        (
            {"channel": {"type": "rest-hook", "endpoint": "file:///etc/passwd"}},
            "Subscription.channel.endpoint",
            422,
        ),
        ({"channel": {"type": "websocket"}}, "Subscription.channel.type", 400),
    ],
)
def test_invalid_subscriptions_are_refused_naming_the_field(
    client, receiver, change, expression, status
):
    body = {**subscription(receiver.url + "/hook"), **change}
    got = client.post("/fhir/Subscription", json=body)
    assert got.status_code == status, got.get_json()
    oo = got.get_json()
    assert oo["resourceType"] == "OperationOutcome"
    assert expression in oo["issue"][0]["expression"]


def test_refused_through_fhirpy_too(fhir, receiver):
    with pytest.raises(OperationOutcome) as raised:
        _create(fhir, subscription("http://elsewhere.example/hook"))
    assert "Subscription.channel.endpoint" in str(raised.value)


def test_an_endpoint_no_longer_allowed_is_not_posted_to(fhir, hub, receiver, app):
    sub = _create(fhir, subscription(receiver.url + "/hook"))
    fhir.resource("Observation", **observation()).save()
    app.config["SUBSCRIPTION_ENDPOINTS"] = "https://partner.example/"
    hub.config["SUBSCRIPTION_ENDPOINTS"] = "https://partner.example/"
    hub.config["SUBSCRIPTION_MAX_ATTEMPTS"] = 1
    counts = drain(hub)
    assert counts["dead"] == 1
    assert receiver.posts == []
    stored = fhir.reference("Subscription", sub.id).to_resource()
    assert stored["status"] == "error"
    assert "not allowed" in stored["error"]


def test_failures_back_off_then_set_the_subscription_to_error(fhir, hub, receiver):
    hub.config["SUBSCRIPTION_MAX_ATTEMPTS"] = 3
    hub.config["SUBSCRIPTION_RETRY_SECONDS"] = 10
    receiver.fail = 100
    sub = _create(fhir, subscription(receiver.url + "/hook"))
    fhir.resource("Observation", **observation()).save()
    assert notify.match(hub) == 1
    now = dt.datetime.now(dt.UTC)
    assert notify.deliver(hub, now=now)["retry"] == 1
    assert notify.deliver(hub, now=now + dt.timedelta(seconds=9))["retry"] == 0  # backing off
    assert len(receiver.posts) == 1
    assert notify.deliver(hub, now=now + dt.timedelta(seconds=11))["retry"] == 1
    [row] = SubscriptionStore(hub.engine).list(sub.id)
    assert row["attempts"] == 2 and "HTTP 503" in row["last_error"]
    # the second retry waits twice as long (20 s after the second failure)
    later = dt.datetime.fromisoformat(row["next_attempt_at"])
    assert later - (now + dt.timedelta(seconds=11)) == dt.timedelta(seconds=20)
    assert notify.deliver(hub, now=later)["dead"] == 1
    assert len(receiver.posts) == 3
    stored = fhir.reference("Subscription", sub.id).to_resource()
    assert stored["status"] == "error"
    assert "HTTP 503" in stored["error"]
    # in error, later changes are not notified
    fhir.resource("Observation", **observation()).save()
    assert drain(hub)["queued"] == 0
    # the partner fixes its endpoint and asks again: active, error cleared
    receiver.fail = 0
    stored["status"] = "requested"
    stored.save()
    assert stored["status"] == "active" and "error" not in stored
    fhir.resource("Observation", **observation()).save()
    assert drain(hub)["sent"] == 1


def test_a_retry_succeeds(fhir, hub, receiver):
    receiver.fail = 1
    _create(fhir, subscription(receiver.url + "/hook"))
    fhir.resource("Observation", **observation()).save()
    notify.match(hub)
    assert notify.deliver(hub)["retry"] == 1
    later = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=1)
    assert notify.deliver(hub, now=later)["sent"] == 1
    first, second = receiver.wait_for(2)
    ids = {p["headers"]["X-Hub-Notification-Id"] for p in (first, second)}
    assert len(ids) == 1  # the same notification, sent again


def test_off_is_not_delivered(fhir, hub, receiver):
    sub = _create(fhir, subscription(receiver.url + "/hook"))
    fhir.resource("Observation", **observation()).save()
    notify.match(hub)  # queued while active
    sub["status"] = "off"
    sub.save()
    fhir.resource("Observation", **observation()).save()
    counts = drain(hub)
    assert counts["queued"] == 0 and counts["sent"] == 0 and counts["dropped"] == 1
    assert receiver.posts == []


def test_deletions_match_nothing(fhir, hub, receiver):
    _create(fhir, subscription(receiver.url + "/hook"))
    obs = fhir.resource("Observation", **observation())
    obs.save()
    drain(hub)
    obs.delete()
    assert drain(hub)["queued"] == 0
    assert len(receiver.posts) == 1


def test_the_owner_is_notified_only_of_what_it_may_read(app, hub, receiver, client):
    owner = authed_client(
        app, "system/Subscription.cruds system/Observation.rs", labels=(), subject="ward-app"
    )
    got = owner.post("/fhir/Subscription", json=subscription(receiver.url + "/hook"))
    assert got.status_code == 201, got.get_json()
    plain = client.post("/fhir/Observation", json=observation()).get_json()["id"]
    labelled = observation(meta={"security": [VETERAN_SENSITIVITY, RESTRICTED]})
    hidden = client.post("/fhir/Observation", json=labelled).get_json()["id"]
    assert owner.get(f"/fhir/Observation/{hidden}").status_code == 404
    drain(hub)
    notified = [p["headers"]["X-Hub-Notification-Id"] for p in receiver.posts]
    assert len(notified) == 1
    [row] = SubscriptionStore(hub.engine).list(got.get_json()["id"])
    assert row["res_id"] == plain


def test_an_owner_without_read_scope_on_the_type_hears_nothing(app, hub, receiver, client):
    owner = authed_client(app, "system/Subscription.cruds system/Patient.rs", subject="p-app")
    got = owner.post("/fhir/Subscription", json=subscription(receiver.url + "/hook"))
    assert got.status_code == 201, got.get_json()
    client.post("/fhir/Observation", json=observation())
    assert drain(hub)["queued"] == 0


def test_a_large_batch_is_matched_exactly(client, hub, receiver):
    """More changes than one matching search takes (ids in chunks), two Subscriptions."""
    heart = client.post("/fhir/Subscription", json=subscription(receiver.url + "/hook"))
    weight = client.post(
        "/fhir/Subscription",
        json=subscription(receiver.url + "/hook", "Observation?code=http://loinc.org|29463-7"),
    )
    written = {"8867-4": [], "29463-7": []}
    for i in range(250):
        code = "8867-4" if i % 3 else "29463-7"
        written[code].append(client.post("/fhir/Observation", json=observation(code)).get_json())
    assert notify.match(hub) == 250
    store = SubscriptionStore(hub.engine)
    for sub, code in ((heart, "8867-4"), (weight, "29463-7")):
        rows = store.list(sub.get_json()["id"])
        assert [r["res_id"] for r in rows] == [o["id"] for o in written[code]]


def test_a_revoked_clients_subscriptions_hear_nothing(app, hub, receiver, client):
    with writing(hub.engine) as conn:
        registered, _ = clients.add_client(
            conn, "ward-dashboard", "system/Subscription.cruds system/Observation.rs", None, ["*"]
        )
    owner = authed_client(
        app,
        "system/Subscription.cruds system/Observation.rs",
        kind="client",
        subject=registered.client_id,
    )
    got = owner.post("/fhir/Subscription", json=subscription(receiver.url + "/hook"))
    assert got.status_code == 201, got.get_json()
    client.post("/fhir/Observation", json=observation())
    assert notify.match(hub) == 1  # queued while the client was registered
    with writing(hub.engine) as conn:
        assert clients.revoke_client(conn, "ward-dashboard")
    client.post("/fhir/Observation", json=observation())
    counts = drain(hub)
    assert counts["queued"] == 0 and counts["sent"] == 0 and counts["dropped"] == 1
    assert receiver.posts == []


def test_hub_worker_delivers(client, receiver, database_url, tmp_path):
    """The `hub worker` command runs the Subscriptions' round."""
    from click.testing import CliRunner

    from hub.cli import cli

    sub = client.post(
        "/fhir/Subscription",
        json=subscription(receiver.url + "/hook", payload="application/fhir+json"),
    ).get_json()
    obs = client.post("/fhir/Observation", json=observation()).get_json()
    env = {
        "HUB_DATABASE_URL": database_url,
        "HUB_INSTANCE_PATH": str(tmp_path),
        "HUB_LOAD_ENTRY_POINTS": "false",
        "HUB_SUBSCRIPTION_ENDPOINTS": receiver.url + "/hook",
    }
    result = CliRunner().invoke(cli, ["worker", "--once"], env=env)
    assert result.exit_code == 0, result.output
    [post] = receiver.wait_for(1)
    assert post["headers"]["X-Hub-Notification-Id"].startswith(f"{sub['id']}-")
    assert orjson.loads(post["body"])["id"] == obs["id"]
