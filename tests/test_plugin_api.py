"""The plugin API: the hub knows no adapter by name, adapters know only ``hub.plugin_api``."""

from __future__ import annotations

import re
from pathlib import Path
from types import SimpleNamespace

import click
import pytest
from click.testing import CliRunner

from hub import hookimpl
from hub import outbound
from hub.plugins import get_plugin_manager

ROOT = Path(__file__).resolve().parents[1]
_IMPORT = re.compile(r"^\s*(?:from|import) +([\w.]+)", re.M)


def _imports(folder: Path) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for path in folder.rglob("*.py"):
        for name in _IMPORT.findall(path.read_text(encoding="utf-8")):
            found.setdefault(name, set()).add(str(path.relative_to(ROOT)))
    return found


def test_hub_imports_no_adapter():
    wrong = {
        name: files
        for name, files in _imports(ROOT / "hub").items()
        if name.split(".")[0] in ("fhirhub_plugins", "plugins")
    }
    assert wrong == {}


@pytest.mark.parametrize("folder", ["plugins", "examples"])
def test_plugins_import_only_the_plugin_api(folder):
    wrong = {
        name: files
        for name, files in _imports(ROOT / folder).items()
        if name.split(".")[0] == "hub" and name != "hub.plugin_api"
    }
    assert wrong == {}


def test_plugin_api_exports_what_it_lists():
    from hub import plugin_api

    assert all(hasattr(plugin_api, name) for name in plugin_api.__all__)
    assert plugin_api.resident_id.parse("370202195003120834").birth_date.isoformat() == (
        "1950-03-12"
    )
    assert plugin_api.split_chinese_name("欧阳修") == ("欧阳", "修")


class Pigeon:
    """A transport of its own: ``kind: pigeon``."""

    def __init__(self):
        self.sent: list[bytes] = []

    @hookimpl
    def send_outbound(self, site, body, content_type, timeout):
        if site.outbound.get("kind") != "pigeon":
            return None
        self.sent.append(body)
        return b"coo"


def test_hook_send_outbound():
    pigeon = Pigeon()
    pm = get_plugin_manager(load_entry_points=False, extra=[pigeon])
    site = SimpleNamespace(name="loft", outbound={"kind": "pigeon"})
    assert outbound.send(site, b"hello", "text/plain", pm=pm) == b"coo"
    assert pigeon.sent == [b"hello"]
    # A kind no installed plugin sends is a clear error, retried and dead-lettered.
    bare = get_plugin_manager(load_entry_points=False)
    with pytest.raises(ValueError, match="unknown outbound kind 'pigeon'"):
        outbound.send(site, b"hello", "text/plain", pm=bare)


def test_hook_send_outbound_mllp_over_a_real_socket():
    from fhirhub_plugins.hl7v2 import MLLPServer
    from fhirhub_plugins.hl7v2 import make_ack

    answers = iter(["AA", "AE"])
    server = MLLPServer(("127.0.0.1", 0), lambda raw: make_ack(raw, next(answers))).start()
    try:
        pm = get_plugin_manager(only=["hl7v2"])
        site = SimpleNamespace(
            name="his", outbound={"kind": "mllp", "host": "127.0.0.1", "port": server.port}
        )
        body = b"MSH|^~\\&|HUB|HUB|HIS|H|20240101||ADT^A08|1|P|2.5\rPID|1||1\r"
        assert b"MSA|AA|1" in outbound.send(site, body, "application/hl7-v2", pm=pm)
        with pytest.raises(ValueError, match="negative acknowledgement AE"):
            outbound.send(site, body, "application/hl7-v2", pm=pm)
    finally:
        server.stop()


def test_hook_register_cli_commands(monkeypatch):
    from hub.cli import _HubGroup

    @click.group(cls=_HubGroup)
    def fresh():
        """A ``hub`` without commands of its own but ``export``."""

    @fresh.group()
    def export():
        """Reports."""

    runner = CliRunner()
    monkeypatch.setenv("HUB_LOAD_PLUGINS", "va_registry")
    listed = runner.invoke(fresh, ["--help"])
    assert "export" in listed.output and "mllp" not in listed.output
    # The registry's ``export`` group joins the existing one.
    assert "veterans-report" in runner.invoke(fresh, ["export", "--help"]).output
    # The real ``hub`` has the HL7 v2 adapter's listener and sender.
    from hub.cli import cli

    monkeypatch.delenv("HUB_LOAD_PLUGINS")
    out = runner.invoke(cli, ["mllp", "--help"]).output
    assert "serve" in out and "send" in out


class Acme:
    """A plugin adapter the hub has never heard of."""

    @hookimpl
    def register_adapters(self):
        from hub.plugin_api import Adapter

        return [Adapter("acme", "acme-text", "txt", example=("hello", "input.txt", "hi {name}"))]

    @hookimpl
    def map_inbound(self, message, context):
        if message.format != "acme-text":
            return None
        context.warn("greeting only", "line 1")
        return {"resourceType": "Bundle", "type": "transaction", "entry": []}


def test_hook_register_adapters(tmp_path):
    from hub.plugins import adapter_format
    from hub.scaffold import scaffold_site

    pm = get_plugin_manager(load_entry_points=False, extra=[Acme()])
    assert adapter_format(pm, "acme") == "acme-text"
    folder = scaffold_site("acme-site", "acme", tmp_path, pm=pm)
    assert "adapter: acme\n" in (folder / "site.yaml").read_text(encoding="utf-8")
    case = folder / "cases" / "hello"
    assert (case / "input.txt").read_text(encoding="utf-8") == "hi acme-site"
    # The golden files are what the adapter made of the example, mapped with its format.
    assert "greeting only" in (case / "expected-outcome.json").read_text(encoding="utf-8")


def test_scaffolded_placeholders_are_well_formed_and_marked(tmp_path):
    from hub.scaffold import scaffold_site

    folder = scaffold_site("new-clinic", "hl7v2", tmp_path)
    manifest = (folder / "site.yaml").read_text(encoding="utf-8")
    for oid in re.findall(r"urn:oid:(\S+)", manifest):
        assert re.fullmatch(r"[0-2](\.(0|[1-9][0-9]*))+", oid), oid
    for line in manifest.splitlines():
        if "FILL" in line or "urn:oid:2.16.156.10011.0.99" in line:
            assert "FILL-IN" in line, line


class Counting:
    """Parses ``count`` payloads (counting the parses) and maps what was parsed."""

    def __init__(self):
        self.parses = 0

    @hookimpl
    def parse(self, fmt, body, site, settings):
        if fmt != "count":
            return None
        self.parses += 1
        return body.decode().split(",")

    @hookimpl
    def map_inbound(self, message, context):
        if message.format != "count":
            return None
        context.info(f"{len(message.parsed)} item(s)", "line 1")
        return {"resourceType": "Bundle", "type": "transaction", "entry": []}


def test_hook_parse():
    from hub.ingest.pipeline import map_payload

    plugin = Counting()
    pm = get_plugin_manager(load_entry_points=False, extra=[plugin])
    _, issues = map_payload(pm, {}, None, b"a,b,c", fmt="count")
    assert plugin.parses == 1 and issues[0]["diagnostics"] == "3 item(s)"
    # A receiver that parsed already (the MLLP listener) hands its parse over: no second parse.
    _, issues = map_payload(pm, {}, None, b"a,b,c", fmt="count", parsed=["x"])
    assert plugin.parses == 1 and issues[0]["diagnostics"] == "1 item(s)"


def test_hl7v2_parse_hook_refuses_with_a_location():
    from hub.outcomes import OperationOutcomeError

    pm = get_plugin_manager(only=["hl7v2"])
    with pytest.raises(OperationOutcomeError) as err:
        pm.hook.parse(fmt="hl7v2", body=b"PID|1\r", site=None, settings={})
    assert err.value.issues
