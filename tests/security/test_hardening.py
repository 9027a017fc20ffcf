"""Rate limits, ID masking in logs, security headers, CSRF, size limits, error bodies."""

from __future__ import annotations

import logging

import pytest
from flask import Flask

from hub.security import csrf
from hub.security.logmask import MaskIdNumbers
from hub.security.logmask import mask_resource_ids
from hub.security.logmask import mask_text
from hub.security.ratelimit import RateLimiter


class FakeClock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_token_bucket():
    clock = FakeClock()
    limiter = RateLimiter(rate=2, burst=3, clock=clock)
    assert [limiter.take("a") for _ in range(3)] == [0, 0, 0]
    assert limiter.take("a") == pytest.approx(0.5)
    assert limiter.take("b") == 0  # buckets are per client
    clock.now += 0.5
    assert limiter.take("a") == 0
    assert RateLimiter(rate=0, burst=1).take("a") == 0  # 0 turns limiting off


@pytest.mark.parametrize("backend", ["sqlite"])
def test_rate_limit_answers_429(app_config):
    from hub.app import create_app
    from hub.app import get_hub
    from tests.fixtures import authed_client

    app_config.update(RATE_LIMIT_PER_SECOND=0.001, RATE_LIMIT_BURST=2)
    app = create_app(app_config)
    try:
        client = authed_client(app)
        statuses = [client.get("/fhir/Patient/_history").status_code for _ in range(3)]
        assert statuses == [200, 200, 429]
        resp = client.get("/fhir/Patient/_history")
        assert int(resp.headers["Retry-After"]) >= 1
        assert resp.get_json()["issue"][0]["code"] == "throttled"
        other = authed_client(app, subject="someone-else")
        assert other.get("/fhir/Patient/_history").status_code == 200
        anon = app.test_client()
        tries = [anon.post("/auth/token", data={"grant_type": "x"}).status_code for _ in range(3)]
        assert tries == [400, 400, 429]  # secret guessing is throttled per address
    finally:
        get_hub(app).close()


def test_id_numbers_are_masked_in_log_lines(caplog):
    logger = logging.getLogger("hub.test-masking")
    handler = logging.Handler()
    records = []
    handler.emit = records.append
    handler.addFilter(MaskIdNumbers())
    logger.addHandler(handler)
    try:
        logger.warning("lookup %s failed", "identifier=11010519491231002X")
        logger.warning("15 digits 110105491231002 and 19 digits 1101051949123100211 kept")
    finally:
        logger.removeHandler(handler)
    assert records[0].getMessage() == "lookup identifier=110105********002X failed"
    assert "110105491231002" in records[1].getMessage()
    assert "1101051949123100211" in records[1].getMessage()


def test_mask_text_and_exports():
    assert mask_text("a 11010519491231002X b") == "a 110105********002X b"
    patient = {
        "resourceType": "Patient",
        "identifier": [
            {"system": "urn:oid:2.16.156.10011.1.3", "value": "11010519491231002X"},
            {"system": "urn:mrn", "value": "12345"},
        ],
    }
    masked = mask_resource_ids(patient, entitled=False)
    assert masked["identifier"][0]["value"] == "110105********002X"
    assert masked["identifier"][1]["value"] == "12345"
    assert patient["identifier"][0]["value"] == "11010519491231002X"  # not changed in place
    assert mask_resource_ids(patient, entitled=True) is patient


def test_security_headers(app, client):
    @app.get("/ui/ping")
    def ping():
        return "pong"

    ui = client.get("/ui/ping")
    assert "frame-ancestors 'none'" in ui.headers["Content-Security-Policy"]
    assert ui.headers["X-Frame-Options"] == "DENY"
    assert ui.headers["Cache-Control"] == "no-store"
    api = client.get("/fhir/metadata")
    assert api.headers["X-Content-Type-Options"] == "nosniff"
    assert "X-Frame-Options" not in api.headers


def test_csrf_protect():
    app = Flask("csrf-test")
    app.secret_key = "test"
    app.jinja_env.globals["csrf_token"] = csrf.token

    @app.get("/form")
    def form():
        return csrf.token()

    @app.post("/form")
    def submit():
        return "ok"

    app.before_request(csrf.protect)
    c = app.test_client()
    token = c.get("/form").get_data(as_text=True)
    assert c.post("/form", data={}).status_code == 400
    assert c.post("/form", data={"csrf_token": "forged"}).status_code == 400
    assert c.post("/form", data={"csrf_token": token}).status_code == 200
    assert c.post("/form", headers={"X-CSRF-Token": token}).status_code == 200
    other = app.test_client()
    other.get("/form")
    assert other.post("/form", data={"csrf_token": token}).status_code == 400


@pytest.mark.parametrize("backend", ["sqlite"])
def test_too_large_body_is_413_outcome(app_config):
    from hub.app import create_app
    from hub.app import get_hub
    from tests.fixtures import authed_client

    app_config["MAX_CONTENT_LENGTH"] = 1000
    app = create_app(app_config)
    try:
        resp = authed_client(app).post(
            "/fhir/Patient",
            data=b'{"resourceType":"Patient","text":"' + b"x" * 2000 + b'"}',
            content_type="application/fhir+json",
        )
        assert resp.status_code == 413
        assert resp.get_json()["resourceType"] == "OperationOutcome"
    finally:
        get_hub(app).close()


def test_unexpected_errors_reveal_no_internals(app, client):
    @app.get("/fhir/boom-test")
    def boom():
        raise RuntimeError("secret internal detail at /srv/hub/db.py line 3")

    resp = client.get("/fhir/boom-test")
    assert resp.status_code == 500
    text = resp.get_data(as_text=True)
    assert "secret internal detail" not in text and "Traceback" not in text
