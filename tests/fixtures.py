"""Shared fixtures: an app per test on each backend, a live HTTP server, clients.

Registered for ``tests/`` and ``conformance/`` alike by the project's top-level
``conftest.py`` (``pytest_plugins``), so kit tests use the same app and client.

The ``backend`` fixture runs a test on the embedded SQLite default and on the
real PostgreSQL named by ``HUB_TEST_POSTGRES_URL`` (default: the local server's
``test`` database). Each pytest-xdist worker gets a PostgreSQL schema of its
own. Outside CI an unreachable PostgreSQL skips those tests; in CI (``CI`` set)
it fails them, so a green CI run always covered both backends.
"""

from __future__ import annotations

import os
import threading
import uuid
from pathlib import Path

import pytest
from sqlalchemy import create_engine
from sqlalchemy import text
from sqlalchemy.engine import make_url
from werkzeug.serving import make_server

from hub.app import create_app
from hub.app import get_hub
from hub.storage.db import writing
from hub.storage.schema import metadata

PG_URL = os.environ.get(
    "HUB_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
SHARED = Path(__file__).resolve().parents[2] / "shared"
SAMPLES = Path(os.environ.get("HUB_SAMPLES_DIR", SHARED / "samples"))
# Third-party reference data (not shipped with the project) lives beside it.
if SAMPLES.is_dir():
    os.environ.setdefault("HUB_REFERENCE_SAMPLES", str(SAMPLES))


def _pg_reachable() -> str | None:
    try:
        engine = create_engine(PG_URL)
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        engine.dispose()
    except Exception as err:  # noqa: BLE001 - any failure means "not reachable", reported below
        return str(err).splitlines()[0]
    return None


@pytest.fixture(scope="session")
def pg_schema_url(worker_id: str):
    """A PostgreSQL URL whose search_path is a fresh schema for this test worker."""
    problem = _pg_reachable()
    if problem:
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL is required in CI but unreachable: {problem}")
        pytest.skip(f"PostgreSQL unreachable: {problem}")
    schema = f"hubtest_{worker_id}_{uuid.uuid4().hex[:8]}"
    admin = create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    url = make_url(PG_URL).update_query_dict({"options": f"-csearch_path={schema}"})
    yield url.render_as_string(hide_password=False)
    with admin.connect() as conn:
        conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    admin.dispose()


@pytest.fixture(scope="session")
def worker_id(request) -> str:
    # pytest-xdist provides this fixture; without xdist there is one worker.
    return getattr(request.config, "workerinput", {}).get("workerid", "main")


def _truncate_all(url: str) -> None:
    engine = create_engine(url)
    with writing(engine) as conn:
        names = [
            r[0]
            for r in conn.execute(
                text("SELECT tablename FROM pg_tables WHERE schemaname = current_schema()")
            )
        ]
        tables = [t.name for t in metadata.sorted_tables if t.name in names]
        if tables:
            conn.execute(
                text("TRUNCATE " + ", ".join(f'"{t}"' for t in tables) + " RESTART IDENTITY")
            )
    engine.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def backend(request) -> str:
    return request.param


@pytest.fixture
def database_url(backend: str, tmp_path: Path, request) -> str:
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / 'hub.db'}"
    url = request.getfixturevalue("pg_schema_url")
    _truncate_all(url)
    return url


@pytest.fixture
def app_config(database_url: str, tmp_path: Path) -> dict:
    """The test app's configuration; tests may change it before ``app`` is built."""
    return {
        "TESTING": True,
        "DATABASE_URL": database_url,
        "LOAD_ENTRY_POINTS": False,
        "INSTANCE_PATH": str(tmp_path),
        # Tests fire requests faster than any site; tests/test_security_*.py turn it on.
        "RATE_LIMIT_PER_SECOND": 0,
    }


@pytest.fixture
def app(app_config: dict):
    application = create_app(app_config)
    yield application
    get_hub(application).close()


@pytest.fixture
def hub(app):
    return get_hub(app)


FULL_SCOPES = "system/*.cruds"


def mint_token(
    app, scopes: str = FULL_SCOPES, labels=("*",), site=None, subject="test", **claims
) -> str:
    """A token signed by ``app``'s keys (kind ``user``: no client row needed)."""
    return get_hub(app).security.mint(
        subject, scopes, kind=claims.pop("kind", "user"), site=site, grants=labels, **claims
    )


@pytest.fixture
def auth_headers(app):
    """``auth_headers(scopes, labels, site=...)`` -> an ``Authorization`` header dict."""

    def make(scopes: str = FULL_SCOPES, labels=("*",), **kw) -> dict[str, str]:
        return {"Authorization": f"Bearer {mint_token(app, scopes, labels, **kw)}"}

    return make


@pytest.fixture
def auth_token(app) -> str:
    """A full-scope bearer token accepted by ``app`` (and by ``live_server``, which serves it)."""
    return mint_token(app)


@pytest.fixture
def anon_client(app):
    """A test client that sends no token."""
    return app.test_client()


def authed_client(app, scopes: str = FULL_SCOPES, labels=("*",), **kw):
    """A test client of ``app`` that sends a token on every request."""
    c = app.test_client()
    c.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {mint_token(app, scopes, labels, **kw)}"
    return c


@pytest.fixture
def client(app):
    """A test client sending a token with every scope and every label grant."""
    return authed_client(app)


@pytest.fixture
def runner(app):
    return app.test_cli_runner()


class LiveServer:
    def __init__(self, app):
        self.server = make_server("127.0.0.1", 0, app, threaded=True)
        self.port = self.server.socket.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.fhir = self.url + "/fhir"
        # A full-scope token; ``headers`` goes on every request a test makes.
        self.token = mint_token(app)
        self.headers = {"Authorization": f"Bearer {self.token}"}
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.thread.join(timeout=10)

    def session(self):
        """A ``requests`` session that sends the token."""
        import requests

        s = requests.Session()
        s.headers.update(self.headers)
        return s


@pytest.fixture
def live_server(app):
    """The app served over real HTTP on a loopback port (threaded)."""
    with LiveServer(app) as server:
        yield server


def synthea_bundle_paths() -> list[Path]:
    return sorted((SAMPLES / "synthea").glob("*.json"))


@pytest.fixture(scope="session")
def kit_hub(tmp_path_factory):
    """One hub for all conformance kit cases (SQLite; the installed adapters, as deployed).

    Mapping a case never reads the database, and whether the hub stores or
    refuses a case does not depend on the cases before it, so the cases share
    it instead of paying for an app each.
    """
    folder = tmp_path_factory.mktemp("kits")
    application = create_app(
        {
            "TESTING": True,
            "DATABASE_URL": f"sqlite:///{folder / 'hub.db'}",
            "LOAD_ENTRY_POINTS": True,
            "INSTANCE_PATH": str(folder),
        }
    )
    yield get_hub(application)
    get_hub(application).close()


def adt_a04(n: int, control_prefix: str = "W") -> bytes:
    """An HL7 v2 ADT A04 of person ``n`` from the county hospital's HIS (each ``n`` its own
    person, resident and visit, so that stored versions do not depend on message order)."""
    return (
        f"MSH|^~\\&|WINNING_HIS|XRMYY|FHIRHUB|HUB|20240315083000||ADT^A04^ADT_A01"
        f"|{control_prefix}{n:05d}|P|2.5|||AL|NE|CHN|UNICODE UTF-8\r"
        "EVN|A04|20240315083000\r"
        f"PID|1||MRN{n:05d}^^^XRMYY^MR||王^{n}||19700101|F\r"
        f"PV1|1|O|||||||||||||||||V{control_prefix}{n:05d}\r"
    ).encode()
