"""``hub demo`` shows a county built from raw feeds, audited, on the dashboard's first screen."""

from __future__ import annotations

import datetime as dt

import pytest

from hub.completeness import batch
from hub.storage.db import writing
from tests.ui.conftest import PASSWORD
from tests.ui.conftest import cheap_hashes  # noqa: F401 (autouse fixture)
from tests.ui.conftest import login


@pytest.fixture
def app_config(app_config):
    app_config["PLUGINS"] = [
        "fhirhub_plugins.hl7v2",
        "fhirhub_plugins.cda",
        "fhirhub_plugins.va_registry",
    ]
    return app_config


def test_demo_county_comes_from_raw_feeds_and_opens_on_its_audit(app, client):
    from hub.app import get_hub
    from hub.demo import COUNTY
    from hub.demo import load_county
    from hub.security.users import create_user

    the_hub = get_hub(app)
    counts = load_county(the_hub, people=40)
    assert not [k for k in counts if k.endswith(("failed", "quarantined"))], counts
    assert any(k.startswith("county-platform") for k in counts)
    assert any(k.startswith("county-hospital-a") for k in counts)
    year = str(dt.date.today().year - 1)
    with the_hub.engine.connect() as conn:
        assert batch.summary_periods(conn, COUNTY) == [year]
        summary = batch.read_summary(conn, year, COUNTY)
    assert summary["people"] >= 30
    # a realistic county: some records complete, some with gaps
    assert 0 < summary["with-gaps"] < summary["people"]
    with writing(the_hub.engine) as conn:
        create_user(conn, "manager", PASSWORD, ["archive-manager"], jurisdiction=COUNTY)
    assert login(client, "manager").status_code == 302
    page = client.get("/ui/")
    assert page.status_code == 200
    assert f"{year}" in page.text
    assert str(int(summary["people"])) in page.text
