"""The kernel's shape: no import cycles, every setting declared once and documented."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from hub import config

ROOT = Path(__file__).resolve().parent.parent


def test_the_hub_modules_form_no_import_cycle():
    # Counts every import, those inside functions too (tools/import_cycles.py).
    run = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "import_cycles.py"), str(ROOT / "hub")],
        capture_output=True,
        text=True,
    )
    assert run.stdout == ""
    assert run.returncode == 0


def test_the_cycle_finder_reports_a_cycle_through_a_function_level_import(tmp_path):
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("from pkg import b\n")
    (package / "b.py").write_text("def f():\n    from pkg.a import x\n")
    (package / "c.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg import a\n"
    )
    run = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "import_cycles.py"), str(package)],
        capture_output=True,
        text=True,
    )
    assert run.stdout == "cycle of 2 modules: pkg.a pkg.b\n"
    assert run.returncode == 1


def test_the_settings_reference_is_generated_from_the_declarations():
    docs = (ROOT / "docs" / "settings.md").read_text(encoding="utf-8")
    assert docs == config.reference()
    for name in ("HUB_INSTANCE_PATH", "HUB_DATABASE_URL", "HUB_IDENTITY_KEY", "HUB_POOL_SIZE"):
        assert f"`{name}`" in docs


def test_every_setting_the_hub_reads_is_declared():
    # Reads of app/hub configuration by name, anywhere in the hub and its plugins.
    read = set()
    pattern = re.compile(
        r"""(?:config|setting\(\w+,)\s*(?:\.get\(|\[)\s*["']([A-Z][A-Z0-9_]+)["']"""
    )
    for folder in ("hub", "plugins"):
        for path in (ROOT / folder).rglob("*.py"):
            read.update(pattern.findall(path.read_text(encoding="utf-8")))
    # Options only a Python caller (tests, the conformance runner) can give.
    read -= {"PLUGINS", "LOAD_ENTRY_POINTS"}
    assert read - set(config.BY_NAME) == set()


def test_each_setting_has_a_default_of_its_type_and_help():
    for s in config.SETTINGS:
        assert s.help.strip(), s.name
        assert isinstance(s.default, s.type) or (s.type is float and isinstance(s.default, int))


def test_the_import_contracts_hold():
    # .importlinter: the web layer alone imports Flask, storage imports nothing above it,
    # the hub never imports the adapters, the adapters use only hub.plugin_api.
    lint = Path(sys.executable).parent / "lint-imports"
    run = subprocess.run([str(lint)], cwd=ROOT, capture_output=True, text=True)
    assert "0 broken" in run.stdout, run.stdout
    assert run.returncode == 0
