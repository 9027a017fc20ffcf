"""post_document: retries transient failures, never retries a refusal."""

from __future__ import annotations

import pytest
import requests

from fhirhub_plugins.cda.send import post_document
from hub.outcomes import OperationOutcomeError


class FakeResponse:
    def __init__(self, status: int, text: str = ""):
        self.status_code = status
        self.text = text


class FakeSession:
    """Answers from a script: an int is an HTTP status, an exception is raised."""

    def __init__(self, *script):
        self.script = list(script)
        self.calls: list[dict] = []

    def post(self, url, data, headers, timeout):
        self.calls.append({"url": url, "data": data, "headers": headers, "timeout": timeout})
        step = self.script.pop(0)
        if isinstance(step, Exception):
            raise step
        return FakeResponse(step, "ok" if step < 300 else "refused: 缺少必填数据元")


def test_success_first_time():
    session = FakeSession(200)
    result = post_document(
        "http://platform/docs", b"<ClinicalDocument/>", 5, session=session, sleep=lambda s: None
    )
    assert (result.ok, result.status, result.attempts) == (True, 200, 1)
    assert session.calls[0]["headers"]["Content-Type"] == "application/xml; charset=UTF-8"
    assert session.calls[0]["timeout"] == 5


def test_transient_failures_are_retried_with_backoff():
    waits: list[float] = []
    session = FakeSession(503, requests.ConnectionError("reset"), requests.Timeout(), 201)
    result = post_document(
        "http://platform/docs", b"x", 5, session=session, retries=3, backoff=0.5, sleep=waits.append
    )
    assert result.attempts == 4 and result.status == 201
    assert waits == [0.5, 1.0, 2.0]


def test_refusal_is_not_retried():
    session = FakeSession(400, 200)
    with pytest.raises(OperationOutcomeError) as err:
        post_document("http://platform/docs", b"x", 5, session=session, sleep=lambda s: None)
    assert len(session.calls) == 1
    assert err.value.status == 422
    assert "HTTP 400" in err.value.issues[0]["diagnostics"]


def test_retries_exhausted_is_a_timeout_outcome():
    session = FakeSession(requests.Timeout(), requests.Timeout())
    with pytest.raises(OperationOutcomeError) as err:
        post_document(
            "http://platform/docs", b"x", 5, session=session, retries=1, sleep=lambda s: None
        )
    assert err.value.status == 504
    assert err.value.issues[0]["code"] == "timeout"


def test_gb18030_documents_say_so():
    session = FakeSession(200)
    post_document(
        "http://platform/docs",
        b"<?xml version='1.0' encoding='GB18030'?><x/>",
        5,
        session=session,
        sleep=lambda s: None,
    )
    assert session.calls[0]["headers"]["Content-Type"] == "application/xml; charset=GB18030"
