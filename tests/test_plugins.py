"""The plugin system: hooks documented and tested, per-app managers, and each hook at work."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from hub import hookimpl
from hub import hookspecs
from hub.operations import Operation
from hub.plugins import get_plugin_manager
from hub.plugins import plugin_info
from tests.fixtures import authed_client

ROOT = Path(__file__).resolve().parents[1]
HOOK_NAMES = sorted(
    name for name in dir(hookspecs) if hasattr(getattr(hookspecs, name), "fhirhub_spec")
)


def test_hook_names_found():
    assert {"map_inbound", "validate_resource", "handle_exception"} <= set(HOOK_NAMES)


@pytest.mark.parametrize("name", HOOK_NAMES)
def test_plugin_hooks_are_documented(name):
    doc = (ROOT / "docs" / "plugin_hooks.md").read_text(encoding="utf-8")
    assert f"\n## {name}\n" in doc
    assert getattr(hookspecs, name).__doc__.strip()


@pytest.mark.parametrize("name", HOOK_NAMES)
def test_plugin_hooks_have_tests(name):
    pattern = re.compile(rf"def test_hook_{name}\b")
    sources = [p.read_text(encoding="utf-8") for p in (ROOT / "tests").rglob("test_*.py")]
    assert any(pattern.search(s) for s in sources), f"no test_hook_{name}"


def test_plugin_managers_are_per_app():
    a = get_plugin_manager(load_entry_points=False)
    b = get_plugin_manager(load_entry_points=False)

    class Extra:
        @hookimpl
        def register_code_maps(self):
            return []

    a.register(Extra())
    assert len(a.get_plugins()) == len(b.get_plugins()) + 1


def test_plugin_info_lists_hooks():
    pm = get_plugin_manager(load_entry_points=False)
    info = {p["name"]: p for p in plugin_info(pm)}
    assert "handle_exception" in info["hub.default_outcomes"]["hooks"]


class Rejector:
    """Rejects Patients without a birth date."""

    @hookimpl
    def validate_resource(self, resource, site):
        if resource.get("resourceType") == "Patient" and "birthDate" not in resource:
            return [
                {
                    "severity": "error",
                    "code": "required",
                    "diagnostics": "birth date needed",
                    "expression": ["Patient.birthDate"],
                }
            ]
        return [{"severity": "warning", "code": "informational", "diagnostics": "looked at it"}]


@pytest.fixture
def plugin_app(app_config, request):
    from hub.app import create_app
    from hub.app import get_hub

    app_config["PLUGINS"] = request.param
    application = create_app(app_config)
    yield application
    get_hub(application).close()


@pytest.mark.parametrize("plugin_app", [[Rejector()]], indirect=True)
def test_hook_validate_resource(plugin_app):
    client = authed_client(plugin_app)
    resp = client.post("/fhir/Patient", json={"resourceType": "Patient"})
    assert resp.status_code == 422
    assert resp.get_json()["issue"][0]["expression"] == ["Patient.birthDate"]
    ok = client.post(
        "/fhir/Patient",
        json={"resourceType": "Patient", "birthDate": "2000-01-01"},
        headers={"Prefer": "return=OperationOutcome"},
    )
    assert ok.status_code == 201
    assert any(i["diagnostics"] == "looked at it" for i in ok.get_json()["issue"])


class Boom:
    @hookimpl
    def handle_exception(self, exception):
        return {
            "resourceType": "OperationOutcome",
            "issue": [
                {
                    "severity": "fatal",
                    "code": "exception",
                    "diagnostics": "custom: " + type(exception).__name__,
                }
            ],
        }

    @hookimpl
    def register_operations(self):
        def explode(call):
            raise ZeroDivisionError("internal")

        def hello(call):
            from hub.fhir.service import Result

            return Result(
                200,
                {
                    "resourceType": "Parameters",
                    "parameter": [
                        {"name": "greeting", "valueString": f"hello {call.param('name', 'world')}"}
                    ],
                },
            )

        return [
            Operation("explode", explode, levels=("system",)),
            Operation(
                "hello",
                hello,
                levels=("type",),
                types=("Patient",),
                definition="http://example.org/OperationDefinition/hello",
            ),
        ]


@pytest.mark.parametrize("plugin_app", [[Boom()]], indirect=True)
def test_hook_handle_exception(plugin_app):
    resp = authed_client(plugin_app).get("/fhir/$explode")
    assert resp.status_code == 500
    assert resp.get_json()["issue"][0]["diagnostics"] == "custom: ZeroDivisionError"


@pytest.mark.parametrize("plugin_app", [[Boom()]], indirect=True)
def test_hook_register_operations(plugin_app):
    client = authed_client(plugin_app)
    resp = client.get("/fhir/Patient/$hello?name=张三")
    assert resp.status_code == 200
    assert resp.get_json()["parameter"][0]["valueString"] == "hello 张三"
    post = client.post(
        "/fhir/Patient/$hello",
        json={"resourceType": "Parameters", "parameter": [{"name": "name", "valueString": "李四"}]},
    )
    assert post.get_json()["parameter"][0]["valueString"] == "hello 李四"
    assert client.get("/fhir/Observation/$hello").status_code == 404
    cs = client.get("/fhir/metadata").get_json()
    patient = next(r for r in cs["rest"][0]["resource"] if r["type"] == "Patient")
    hello_op = next(o for o in patient["operation"] if o["name"] == "hello")
    # The statement names the hub's own definition, which builds on the declared canonical.
    assert hello_op["definition"] == "http://localhost/fhir/OperationDefinition/hello"
    definition = client.get("/fhir/OperationDefinition/hello").get_json()
    assert definition["url"] == hello_op["definition"]
    assert definition["base"] == "http://example.org/OperationDefinition/hello"
    assert (definition["code"], definition["resource"]) == ("hello", ["Patient"])
    assert any(o["name"] == "explode" for o in cs["rest"][0]["operation"])


class ExtraMaps:
    def __init__(self, folder):
        self.folder = folder

    @hookimpl
    def register_code_maps(self):
        return [str(self.folder)]


def test_hook_register_code_maps(app_config, tmp_path):
    from hub.app import create_app
    from hub.app import get_hub

    folder = tmp_path / "maps"
    folder.mkdir()
    (folder / "blood.yaml").write_text(
        "id: test-blood-type\nsource: urn:local\ntarget: urn:abo\nunmapped: error\nmap:\n  '1': A\n  '2': B\n",
        encoding="utf-8",
    )
    app_config["PLUGINS"] = [ExtraMaps(folder)]
    application = create_app(app_config)
    try:
        cmap = get_hub(application).code_maps["test-blood-type"]
        assert cmap.lookup("2").code == "B"
        (folder / "again.yaml").write_text("id: test-blood-type\nmap: {}\n", encoding="utf-8")
        with pytest.raises(ValueError, match="defined twice"):
            create_app(app_config)
    finally:
        get_hub(application).close()
