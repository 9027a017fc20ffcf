"""Dashboard pages through the Flask test client, on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import io

import openpyxl
import orjson
from sqlalchemy import insert
from sqlalchemy import select

from hub.storage import schema as s
from hub.storage.db import writing
from tests.ui.conftest import csrf_of
from tests.ui.conftest import login


def audit_events(hub) -> list[dict]:
    with hub.engine.connect() as conn:
        return [orjson.loads(c) for (c,) in conn.execute(select(s.audit_event.c.content))]


def test_pages_need_a_login_and_wrong_passwords_are_refused(client, audited_hub):
    page = client.get("/ui/gaps?period=2025")
    assert page.status_code == 302 and "/ui/login" in page.headers["Location"]
    assert login(client, "admin", "wrong password").status_code == 401
    assert login(client, "nobody", "wrong password").status_code == 401
    failed = [e for e in audit_events(audited_hub) if e["outcome"] == "4"]
    assert len(failed) == 2


def test_account_locks_after_repeated_failures(client, audited_hub):
    for _ in range(5):
        login(client, "township", "wrong password")
    refused = login(client, "township")  # right password, but locked
    assert refused.status_code == 401
    assert "锁定" in refused.text or "locked" in refused.text


def test_post_without_csrf_token_is_rejected(admin):
    assert admin.post("/ui/refresh?jurisdiction=370203&period=2025").status_code == 400


def test_overview_shows_the_indicators_and_charts(admin, audited_hub):
    page = admin.get("/ui/?jurisdiction=370203&period=2025&lang=en")
    assert page.status_code == 200
    html = page.text
    assert 'id="kpi-people">5<' in html
    assert html.count("<svg") == 4  # completeness, overdue, colours, trend
    assert 'data-indicator="record-creation-rate"' in html
    assert "50.00%" in html  # 5 records of 10 residents (statistics)
    assert "statistics: yearbook 2025" in html
    assert "370203001" in html and "370203002" in html  # drill-down to townships
    assert any(
        e["subtype"][0]["code"] == "search" and e["agent"][0]["who"]["display"] == "admin"
        for e in audit_events(audited_hub)
    )


def test_language_chinese_by_default_english_on_request(client, audited_hub):
    login(client, "admin")
    # an English browser still gets Chinese labels until English is chosen
    zh = client.get("/ui/?period=2025", headers={"Accept-Language": "en-US,en;q=0.9"})
    assert "各项规则完成率" in zh.text and "高血压患者规范管理率" in zh.text
    en = client.get("/ui/?period=2025&lang=en")
    assert "Completeness by rule" in en.text
    assert "Completeness by rule" in client.get("/ui/?period=2025").text  # remembered


def test_gap_list_filters_sorts_and_pages(admin):
    page = admin.get("/ui/gaps?jurisdiction=370203&period=2025&rule=hypertension&lang=en")
    assert 'id="total">1<' in page.text and 'data-patient="pb"' in page.text
    assert "face-to-face follow-up no. 3 — 2025-09-30" in page.text
    overdue = admin.get("/ui/gaps?jurisdiction=370203&period=2025&overdue=1")
    assert 'data-patient="pa"' not in overdue.text
    by_age = admin.get("/ui/gaps?jurisdiction=370203&period=2025&sort=age").text
    assert by_age.index('data-patient="pb"') < by_age.index('data-patient="pe"')  # 75 before 45


def test_exports_csv_with_bom_and_xlsx(admin, audited_hub):
    csv_resp = admin.get("/ui/gaps?jurisdiction=370203&period=2025&lang=en&format=csv")
    assert csv_resp.data.startswith(b"\xef\xbb\xbf")
    lines = csv_resp.data.decode("utf-8-sig").splitlines()
    assert lines[0].startswith("Name,Age,Sex")
    assert len(lines) == 1 + 2  # B and E have gaps; A, C and D are complete
    xlsx = admin.get("/ui/gaps?jurisdiction=370203&period=2025&format=xlsx")
    sheet = openpyxl.load_workbook(io.BytesIO(xlsx.data)).active
    assert sheet.max_row == 3
    assert any(e["subtype"][0]["code"] == "export" for e in audit_events(audited_hub))


def test_jurisdiction_scope_is_enforced(client, audited_hub):
    login(client, "township")
    own = client.get("/ui/?period=2025")
    assert own.status_code == 200 and 'id="kpi-people">2<' in own.text
    assert client.get("/ui/?jurisdiction=370203&period=2025").status_code == 403
    assert client.get("/ui/person/pa").status_code == 200
    assert client.get("/ui/person/pc").status_code == 403  # township 002
    assert client.get("/ui/inbox").status_code == 403  # not an integration engineer


def test_person_timeline_masks_the_resident_id(admin, audited_hub):
    page = admin.get("/ui/person/pb?lang=en")
    assert page.status_code == 200
    assert "370203********1012" in page.text and "370203195003121012" not in page.text
    assert page.text.index("2025-06-01") < page.text.index("2025-03-01")  # newest first
    assert "face-to-face follow-up no. 3 — 2025-09-30" in page.text
    reads = [e for e in audit_events(audited_hub) if e["subtype"][0]["code"] == "read"]
    assert reads[-1]["entity"] == [{"what": {"reference": "Patient/pb"}}]


def test_inbox_and_dead_letters(client, audited_hub):
    now = dt.datetime.now(dt.UTC)
    rows = [
        {
            "site": "his-a",
            "source_key": f"MSG{n}",
            "payload_hash": f"h{n}",
            "format": "hl7v2",
            "received_at": now,
            "body": f"MSH|^~\\&|HIS|{n}".encode(),
            "status": status,
            "attempts": n,
            "outcome": orjson.dumps(
                {
                    "resourceType": "OperationOutcome",
                    "issue": [
                        {
                            "severity": "error",
                            "code": "invalid",
                            "diagnostics": "PID-8 unknown",
                            "expression": ["PID-8"],
                        }
                    ],
                }
            ).decode()
            if status != "done"
            else None,
        }
        for n, status in enumerate(["done", "failed", "quarantined", "pending"])
    ]
    with writing(audited_hub.engine) as conn:
        conn.execute(insert(s.inbox), rows)
    login(client, "engineer")
    dead = client.get("/ui/inbox?dead=1")
    assert dead.status_code == 200 and 'id="total">2<' in dead.text
    assert "MSG1" in dead.text and "MSG0" not in dead.text
    item_id = int(dead.text.split('data-id="')[1].split('"')[0])
    item = client.get(f"/ui/inbox/{item_id}")
    assert "PID-8 unknown" in item.text and "MSH|" in item.text
    exported = client.get("/ui/inbox?dead=1&format=csv").data.decode("utf-8-sig").splitlines()
    assert len(exported) == 3


def test_refresh_reruns_the_audit(admin, audited_hub):
    token = csrf_of(admin)
    done = admin.post("/ui/refresh?jurisdiction=370203&period=2025", data={"csrf_token": token})
    assert done.status_code == 302
    with audited_hub.engine.connect() as conn:
        count = conn.execute(
            select(s.audit_person.c.patient_id).where(s.audit_person.c.period == "2025")
        ).all()
    assert len(count) == 5


def test_logout_ends_the_session(admin):
    token = csrf_of(admin)
    admin.post("/ui/logout", data={"csrf_token": token})
    assert admin.get("/ui/?period=2025").status_code == 302


def test_indicator_jurisdiction_and_timeline_exports(admin):
    rows = admin.get("/ui/?jurisdiction=370203&period=2025&format=csv&lang=en")
    lines = rows.data.decode("utf-8-sig").splitlines()
    assert lines[0].startswith("id,Indicator,Numerator,Denominator,Rate")
    assert "record-creation-rate,health-record creation rate,5,10.0,50.0" in rows.data.decode()
    children = admin.get("/ui/?jurisdiction=370203&period=2025&format=xlsx&list=children")
    sheet = openpyxl.load_workbook(io.BytesIO(children.data)).active
    assert [c.value for c in sheet[2]] == ["370203001", 2, 1, 1]
    timeline = admin.get("/ui/person/pb?format=csv").data.decode("utf-8-sig").splitlines()
    assert len(timeline) == 1 + 3  # condition and two follow-ups


def test_outbound_deliveries_and_dead_letters(client, audited_hub):
    now = dt.datetime.now(dt.UTC)
    rows = [
        {
            "site": "county",
            "change_seq": n,
            "message_key": f"DOC{n}",
            "body": b"<ClinicalDocument/>",
            "status": status,
            "attempts": 5 if status == "dead" else 1,
            "next_attempt_at": now,
            "created_at": now,
            "last_error": "HTTP 503" if status == "dead" else None,
        }
        for n, status in enumerate(["sent", "dead", "pending"])
    ]
    with writing(audited_hub.engine) as conn:
        conn.execute(insert(s.delivery), rows)
    login(client, "engineer")
    dead = client.get("/ui/deliveries?status=dead")
    assert 'id="total">1<' in dead.text and "DOC1" in dead.text and "HTTP 503" in dead.text
    item_id = int(dead.text.split('data-id="')[1].split('"')[0])
    assert "ClinicalDocument" in client.get(f"/ui/deliveries/{item_id}").text
    sheet = openpyxl.load_workbook(io.BytesIO(client.get("/ui/deliveries?format=xlsx").data)).active
    assert sheet.max_row == 4


def test_overview_opens_on_the_latest_audited_period(admin, audited_hub):
    """Without ?period= the overview shows the period that ends last among those audited."""
    from hub.completeness import batch
    from hub.completeness.periods import Period

    half = Period(dt.date(2025, 1, 1), dt.date(2025, 6, 30))
    batch.run_audit(audited_hub.engine, half, "370203", as_of=dt.date(2025, 7, 1))
    page = admin.get("/ui/?jurisdiction=370203").text
    assert "<h1>" in page and " · 2025</h1>" in page.replace("\n", "")
