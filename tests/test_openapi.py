"""The OpenAPI document against the CapabilityStatement, both walked; and it is valid OpenAPI 3.

Every resource type, interaction, search parameter and operation the statement lists is a
path and method in the document, and the document has nothing the statement does not claim.
"""

from __future__ import annotations

import pytest
from openapi_spec_validator import validate

# Interaction -> (path suffix after /{type}, method).
TYPE_INTERACTIONS = {
    "read": ("/{id}", "get"),
    "vread": ("/{id}/_history/{vid}", "get"),
    "update": ("/{id}", "put"),
    "patch": ("/{id}", "patch"),
    "delete": ("/{id}", "delete"),
    "history-instance": ("/{id}/_history", "get"),
    "history-type": ("/_history", "get"),
    "create": ("", "post"),
    "search-type": ("", "get"),
}


@pytest.fixture(scope="module")
def both(tmp_path_factory):
    """One hub's statement, OperationDefinitions and document (the slow part, done once)."""
    from hub.app import create_app
    from hub.app import get_hub
    from tests.fixtures import authed_client

    tmp = tmp_path_factory.mktemp("openapi")
    app = create_app(
        {
            "TESTING": True,
            "DATABASE_URL": f"sqlite:///{tmp / 'hub.db'}",
            "LOAD_ENTRY_POINTS": False,
            "INSTANCE_PATH": str(tmp),
            "PLUGINS": ["fhirhub_plugins.cda"],  # an adapter's operations are listed too
            "RATE_LIMIT_PER_SECOND": 0,
        }
    )
    client = authed_client(app)
    statement = client.get("/fhir/metadata").get_json()
    doc = app.test_client().get("/fhir/openapi.json").get_json()  # no token needed
    definitions = {}
    for entry in [statement["rest"][0], *statement["rest"][0]["resource"]]:
        for op in entry.get("operation") or ():
            def_id = op["definition"].rsplit("/", 1)[1]
            if def_id not in definitions:
                definitions[def_id] = client.get(f"/fhir/OperationDefinition/{def_id}").get_json()
    yield statement, doc, definitions
    get_hub(app).close()


def _claimed(statement: dict, definitions: dict) -> set[tuple[str, str]]:
    """(path, method) of everything the statement claims, from the statement alone."""
    rest = statement["rest"][0]
    out = {("/metadata", "get")}
    system = {i["code"] for i in rest["interaction"]}
    if {"transaction", "batch"} & system:
        out.add(("/", "post"))
    if "search-system" in system:
        out |= {("/", "get"), ("/_search", "get"), ("/_search", "post")}
    if "history-system" in system:
        out.add(("/_history", "get"))

    def operations(prefix: str, ops, level: str) -> None:
        for op in ops or ():
            definition = definitions[op["definition"].rsplit("/", 1)[1]]
            if not definition[level]:
                continue
            out.add((f"{prefix}/${op['name']}", "post"))
            if not definition["affectsState"]:
                out.add((f"{prefix}/${op['name']}", "get"))

    operations("", rest.get("operation"), "system")
    for entry in rest["resource"]:
        t = entry["type"]
        codes = {i["code"] for i in entry["interaction"]}
        for code in codes:
            suffix, method = TYPE_INTERACTIONS[code]
            out.add((f"/{t}{suffix}", method))
        if "search-type" in codes:
            out.add((f"/{t}/_search", "post"))
        if "update" in codes and entry["conditionalUpdate"]:
            out.add((f"/{t}", "put"))
        if "delete" in codes and entry["conditionalDelete"] != "not-supported":
            out.add((f"/{t}", "delete"))
        operations(f"/{t}", entry.get("operation"), "type")
        operations(f"/{t}/{{id}}", entry.get("operation"), "instance")
    return out


def test_document_is_valid_openapi_3(both):
    _, doc, _ = both
    validate(doc)  # raises on any violation of the OpenAPI 3.0 schema and its rules
    ids = [op["operationId"] for item in doc["paths"].values() for op in item.values()]
    assert len(ids) == len(set(ids))


def test_document_and_statement_list_the_same_paths(both):
    statement, doc, definitions = both
    documented = {(path, method) for path, item in doc["paths"].items() for method in item}
    claimed = _claimed(statement, definitions)
    # Operations an adapter declares POST-only are documented without GET.
    post_only = {
        (p, m)
        for p, m in claimed - documented
        if m == "get" and "$" in p and (p, "post") in documented
    }
    assert claimed - documented - post_only == set()
    assert documented - claimed == set()
    assert len(documented) > 2000  # every type, not a sample


def test_every_search_parameter_is_a_query_parameter(both):
    statement, doc, _ = both
    for entry in statement["rest"][0]["resource"]:
        names = {p["name"] for p in entry.get("searchParam") or ()}
        if not names:
            continue
        t = entry["type"]
        query = {p.get("name") for p in doc["paths"][f"/{t}"]["get"]["parameters"]}
        assert names <= query, (t, names - query)
        form = doc["paths"][f"/{t}/_search"]["post"]["requestBody"]["content"]
        assert names <= set(form["application/x-www-form-urlencoded"]["schema"]["properties"])
        if "put" in doc["paths"][f"/{t}"]:  # conditional update: the same criteria
            assert names <= {p.get("name") for p in doc["paths"][f"/{t}"]["put"]["parameters"]}


def test_binary_takes_and_returns_raw_content(both):
    _, doc, _ = both
    create = doc["paths"]["/Binary"]["post"]["requestBody"]["$ref"].rsplit("/", 1)[1]
    assert "*/*" in doc["components"]["requestBodies"][create]["content"]
    read = doc["paths"]["/Binary/{id}"]["get"]["responses"]["200"]["$ref"].rsplit("/", 1)[1]
    assert "*/*" in doc["components"]["responses"][read]["content"]
    assert doc["paths"]["/metadata"]["get"]["security"] == []
