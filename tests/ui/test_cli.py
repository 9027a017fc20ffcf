"""``hub ui create-user`` run as a user runs it."""

from __future__ import annotations

from hub.app import create_app
from hub.app import get_hub
from hub.ui import accounts
from tests.test_cli import run_hub


def test_create_user_then_log_in(tmp_path):
    url = f"sqlite:///{tmp_path / 'hub.db'}"
    extra = {"HUB_DATABASE_URL": url}
    done = run_hub(
        "ui",
        "create-user",
        "wang",
        "--role",
        "archive-manager",
        "--jurisdiction",
        "370203001",
        "--password",
        "correct horse",
        env_extra=extra,
        tmp_path=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    weak = run_hub(
        "ui",
        "create-user",
        "li",
        "--role",
        "admin",
        "--password",
        "short",
        env_extra=extra,
        tmp_path=tmp_path,
    )
    assert weak.returncode == 2 and "10 characters" in weak.stderr
    app = create_app(
        {"DATABASE_URL": url, "LOAD_ENTRY_POINTS": False, "INSTANCE_PATH": str(tmp_path)}
    )
    with get_hub(app).engine.begin() as conn:
        user = accounts.backend().verify_password(conn, "wang", "correct horse")
    assert user.roles == ("archive-manager",) and user.jurisdiction == "370203001"
    get_hub(app).close()
