"""The Tandem API's OpenAPI document, generated from the handlers, is a
valid OpenAPI 3.1 document; every operation it lists is routed; and what
the server answers matches the schemas it documents, so a client generated
from it works."""

import requests
from openapi_schema_validator import OAS31Validator
from openapi_spec_validator import validate

from cluster import make_cluster
from conftest import _tandem_bin
from support import unique

DOC = "/api/tandem/v1/openapi.json"


def fetch_doc(url: str) -> dict:
    response = requests.get(f"{url}{DOC}", timeout=10)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")
    return response.json()


def response_schema(doc: dict, path: str, method: str, status: int) -> dict:
    """The documented JSON schema of one response, with the document's
    components resolvable from it."""
    content = doc["paths"][path][method]["responses"][str(status)]["content"]["application/json"]
    return {**content["schema"], "components": doc["components"]}


def check(doc: dict, path: str, method: str, response: requests.Response) -> dict:
    schema = response_schema(doc, path, method, response.status_code)
    body = response.json()
    OAS31Validator(schema).validate(body)
    return body


def fill(template: str) -> str:
    out, rest = "", template
    while "{" in rest:
        before, _, after = rest.partition("{")
        _, _, rest = after.partition("}")
        out += before + "nothing-here"
    return out + rest


def assert_every_operation_is_routed(url: str, doc: dict) -> int:
    """Each documented (method, path) reaches a handler: the router's own
    refusals are 405, or 404 with an empty body."""
    count = 0
    for template, item in doc["paths"].items():
        for method in ("get", "post", "put", "patch", "delete"):
            if method not in item:
                continue
            count += 1
            # Streams the replication journal forever: the status is enough.
            response = requests.request(method, f"{url}{fill(template)}", timeout=10, stream=True)
            status = response.status_code
            body = b"" if status == 200 else response.content
            response.close()
            assert status != 405, f"{method.upper()} {template}: 405"
            assert not (status == 404 and not body.strip()), f"{method.upper()} {template}: unrouted 404"
    return count


def test_a_region_serves_a_valid_document_its_answers_match(server):
    doc = fetch_doc(server.url)
    validate(doc)  # raises on any violation of the OpenAPI 3.1 schema
    assert doc["info"]["title"] == "Tandem API"
    assert {tag["name"] for tag in doc["tags"]} >= {"workspaces", "retention", "files", "journal", "backups"}
    for path, item in doc["paths"].items():
        assert path.startswith("/api/tandem/v1/"), path
        assert "*" not in path, path
        for method, operation in item.items():
            assert operation.get("tags"), f"{method} {path} has no tag"
            assert "200" in operation["responses"] or "201" in operation["responses"], f"{method} {path}"
    assert assert_every_operation_is_routed(server.url, doc) >= 20

    # Answers, successful and failed, match the documented schemas.
    name = unique("openapi")
    created = requests.post(f"{server.url}/api/tandem/v1/workspaces", json={"name": name}, timeout=10)
    assert created.status_code == 201, created.text
    assert check(doc, "/api/tandem/v1/workspaces", "post", created)["workspace"]["name"] == name
    listed = requests.get(f"{server.url}/api/tandem/v1/workspaces", timeout=10)
    assert name in [w["name"] for w in check(doc, "/api/tandem/v1/workspaces", "get", listed)["workspaces"]]
    taken = requests.post(f"{server.url}/api/tandem/v1/workspaces", json={"name": name}, timeout=10)
    assert check(doc, "/api/tandem/v1/workspaces", "post", taken)["error_code"] == "RESOURCE_ALREADY_EXISTS"
    unknown = requests.post(f"{server.url}/api/tandem/v1/workspaces", json={"name": "x", "colour": 1}, timeout=10)
    assert unknown.status_code == 400
    check(doc, "/api/tandem/v1/workspaces", "post", unknown)

    put = requests.put(f"{server.url}/api/tandem/v1/workspaces/{name}/files/notes/a.txt", data=b"hello", timeout=10)
    written = check(doc, "/api/tandem/v1/workspaces/{workspace}/files/{path}", "put", put)
    assert written["file"]["size"] == 5
    files = requests.get(f"{server.url}/api/tandem/v1/workspaces/{name}/files", timeout=10)
    assert check(doc, "/api/tandem/v1/workspaces/{workspace}/files", "get", files)["bytes"] == 5

    deleted = requests.delete(f"{server.url}/api/tandem/v1/workspaces/{name}", timeout=10)
    check(doc, "/api/tandem/v1/workspaces/{name}", "delete", deleted)
    purged = requests.post(f"{server.url}/api/tandem/v1/workspaces/{name}/purge", timeout=10)
    assert check(doc, "/api/tandem/v1/workspaces/{name}/purge", "post", purged)["purged"] is True
    gc = requests.get(f"{server.url}/api/tandem/v1/gc", timeout=10)
    check(doc, "/api/tandem/v1/gc", "get", gc)


def test_a_deployment_documents_replication_and_failover(tmp_path):
    cluster = make_cluster(_tandem_bin(), tmp_path, regions=2)
    try:
        for region in cluster.regions:
            doc = fetch_doc(region.url)
            validate(doc)
            assert "/api/tandem/v1/failover" in doc["paths"]
            assert "/api/tandem/v1/regions" in doc["paths"]
            assert "/api/tandem/v1/replication/journal" in doc["paths"]
            assert assert_every_operation_is_routed(region.url, doc) >= 30
        regions = requests.get(f"{cluster.primary.url}/api/tandem/v1/regions", timeout=10)
        check(doc, "/api/tandem/v1/regions", "get", regions)
    finally:
        cluster.close()
