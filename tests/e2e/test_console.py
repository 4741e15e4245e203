"""The web console over HTTP, as a browser uses it: sign-in with a session
cookie, the experiments and runs pages (filter, sort), a run with its
charts and artifacts, comparison, delete and restore guarded by CSRF, what a
Reader is not offered, and clear pages for bad input. (Browser-driven tests
with chromium are still to come; these check the pages' HTML and the
session's rules.)"""

import re

import mlflow
import pytest
import requests

from support import unique
from test_auth import AuthServer, bearer


@pytest.fixture
def console(tmp_path):
    from conftest import _tandem_bin

    server = AuthServer(_tandem_bin(), tmp_path)
    yield server
    server.stop()


def sign_in(server, **form) -> requests.Session:
    browser = requests.Session()
    answer = browser.post(f"{server.url}/login", data=form, allow_redirects=False)
    assert answer.status_code == 303, answer.text
    return browser


def csrf_of(page: str) -> str:
    match = re.search(r'name="csrf" value="([0-9a-f]*)"', page)
    assert match, page
    return match.group(1)


def test_sign_in_pages_and_the_session_rules(console, tmp_path):
    # Anonymous visitors are sent to the sign-in page, and back after it.
    answer = requests.get(f"{console.url}/experiments/0", allow_redirects=False)
    assert answer.status_code == 303 and answer.headers["location"].startswith("/login?next=%2Fexperiments%2F0")
    wrong = requests.post(f"{console.url}/login", data={"username": "admin", "password": "nope"},
                          allow_redirects=False)
    assert wrong.status_code == 303 and "error=Wrong+username+or+password" in wrong.headers["location"]

    browser = requests.Session()
    signed = browser.post(f"{console.url}/login", data={"token": console.admin_token, "next": "/"},
                          allow_redirects=False)
    cookie = signed.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and console.admin_token not in cookie
    # An open redirect is refused: `next` stays on this server.
    elsewhere = requests.post(f"{console.url}/login", data={"token": console.admin_token,
                                                           "next": "https://evil.example/"}, allow_redirects=False)
    assert elsewhere.headers["location"] == "/"

    # Data for the pages, logged by the official client.
    with_token = {"MLFLOW_TRACKING_TOKEN": console.admin_token}
    import os
    os.environ.update(with_token)
    try:
        client = mlflow.MlflowClient(tracking_uri=console.url)
        experiment = client.create_experiment(unique("console"))
        runs = []
        for lr in ("0.1", "0.01"):
            run = client.create_run(experiment, run_name=f"lr-{lr}").info.run_id
            client.log_param(run, "lr", lr)
            from mlflow.entities import Metric
            client.log_batch(run, metrics=[Metric("loss", 1.0 / (step + 1) + float(lr), 0, step)
                                           for step in range(1000)])
            (tmp_path / "notes.txt").write_text(f"learning rate {lr}")
            client.log_artifact(run, str(tmp_path / "notes.txt"))
            runs.append(run)
    finally:
        os.environ.pop("MLFLOW_TRACKING_TOKEN", None)

    home = browser.get(f"{console.url}/").text
    assert "Experiments" in home and f"/experiments/{experiment}" in home
    table = browser.get(f"{console.url}/experiments/{experiment}").text
    assert "lr-0.1" in table and "lr-0.01" in table and ">loss<" in table
    filtered = browser.get(f"{console.url}/experiments/{experiment}",
                           params={"filter": "params.lr = '0.01'"}).text
    assert "lr-0.01" in filtered and "lr-0.1<" not in filtered
    ordered = browser.get(f"{console.url}/experiments/{experiment}",
                          params={"order_by": "metrics.`loss` ASC"}).text
    assert ordered.index("lr-0.01") < ordered.index("lr-0.1<")
    bad = browser.get(f"{console.url}/experiments/{experiment}", params={"filter": "metrics.loss <<< 3"})
    assert bad.status_code == 400 and "Invalid search" in bad.text and 'role="alert"' in bad.text

    page = browser.get(f"{console.url}/runs/{runs[0]}").text
    assert "<polyline" in page and "1000 points" in page and ">lr<" in page
    link = re.search(r'href="(/api/2\.0/mlflow-artifacts/artifacts/[^"]+notes\.txt)"', page).group(1)
    assert browser.get(f"{console.url}{link}").text == "learning rate 0.1"
    compared = browser.get(f"{console.url}/compare", params=[("runs", runs[0]), ("runs", runs[1])]).text
    assert 'class="differs"' in compared and "param lr" in compared

    # A change needs the form's CSRF token.
    refused = browser.post(f"{console.url}/runs/{runs[1]}/delete", data={"csrf": "0" * 32})
    assert refused.status_code == 403 and "security token" in refused.text
    deleted = browser.post(f"{console.url}/runs/{runs[1]}/delete", data={"csrf": csrf_of(page)})
    assert deleted.status_code == 200 and "Restore run" in deleted.text
    restored = browser.post(f"{console.url}/runs/{runs[1]}/restore", data={"csrf": csrf_of(page)})
    assert "Delete run" in restored.text

    # Unknown ids: a page that says so.
    missing = browser.get(f"{console.url}/runs/{'0' * 32}")
    assert missing.status_code == 404 and 'role="alert"' in missing.text

    # A Reader sees the run and no button that changes it; a forged post is refused.
    console.cli("user", "create", "viewer", "--password-stdin", "--role", "Reader@default", stdin="viewer-pass-1\n")
    reader = sign_in(console, username="viewer", password="viewer-pass-1")
    seen = reader.get(f"{console.url}/runs/{runs[0]}").text
    assert "lr-0.1" in seen and "Delete run" not in seen and 'action="/experiments"' not in reader.get(
        f"{console.url}/").text
    forged = reader.post(f"{console.url}/runs/{runs[0]}/delete", data={"csrf": csrf_of(page)})
    assert forged.status_code == 403 and "Not allowed" in forged.text

    # Signing out revokes the session's token: the cookie no longer works.
    out = browser.post(f"{console.url}/logout", data={"csrf": csrf_of(page)}, allow_redirects=False)
    assert out.status_code == 303
    stale = requests.get(f"{console.url}/", cookies={"tandem_session": signed.cookies.get("tandem_session")},
                         allow_redirects=False)
    assert stale.status_code == 303 and "session+has+ended" in stale.headers["location"]
    assert requests.get(f"{console.url}/api/tandem/v1/whoami",
                        headers=bearer(signed.cookies.get("tandem_session"))).status_code == 401
    # The console's script is refused without a Basic challenge (a browser
    # would pop up its own dialog over the page); the mlflow client gets one.
    plain = requests.get(f"{console.url}/api/tandem/v1/workspaces")
    assert plain.status_code == 401 and plain.headers["www-authenticate"] == 'Basic realm="mlflow"'
    scripted = requests.get(f"{console.url}/api/tandem/v1/workspaces", headers={"X-Tandem-Console": "1"})
    assert scripted.status_code == 401 and "www-authenticate" not in scripted.headers


def test_the_deep_links_the_client_prints_and_an_open_servers_changes(server):
    """Without authentication the console is open, and a change must come
    from its own origin; the script maps the client's `#/…` links."""
    script = requests.get(f"{server.url}/console.js").text
    assert "#\\/experiments\\/([^/]+)\\/runs\\/" in script
    client = mlflow.MlflowClient(tracking_uri=server.url)
    experiment = client.create_experiment(unique("open"))
    run = client.create_run(experiment).info.run_id
    assert requests.get(f"{server.url}/runs/{run}").status_code == 200
    no_origin = requests.post(f"{server.url}/runs/{run}/delete", data={"csrf": ""})
    assert no_origin.status_code == 403
    other = requests.post(f"{server.url}/runs/{run}/delete", data={"csrf": ""}, headers={"Origin": "https://evil.example"})
    assert other.status_code == 403 and client.get_run(run).info.lifecycle_stage == "active"
    host = server.url.removeprefix("http://")
    same = requests.post(f"{server.url}/runs/{run}/delete", data={"csrf": ""}, headers={"Origin": server.url})
    assert same.status_code == 200, (host, same.text)
    assert client.get_run(run).info.lifecycle_stage == "deleted"


def test_the_registry_pages_and_the_history_the_mlflow_ui_charts_with(server):
    from mlflow.entities import Metric

    client = mlflow.MlflowClient(tracking_uri=server.url, registry_uri=server.url)
    experiment = client.create_experiment(unique("registry-pages"))
    runs = [client.create_run(experiment).info.run_id for _ in range(2)]
    for index, run in enumerate(runs):
        client.log_batch(run, metrics=[Metric("loss", float(step) + index, 0, step) for step in range(0, 1000 + index)])
    # MLflow's UI charts with get-history-bulk-interval: sampled steps, each
    # run's ends kept, in MLflow's shape.
    url = f"{server.url}/ajax-api/2.0/mlflow/metrics/get-history-bulk-interval"
    answer = requests.get(url, params=[("run_ids", runs[0]), ("run_ids", runs[1]), ("metric_key", "loss"),
                                       ("max_results", "10")])
    assert answer.status_code == 200, answer.text
    points = answer.json()["metrics"]
    assert {point["run_id"] for point in points} == set(runs)
    steps = {point["step"] for point in points}
    assert {0, 999, 1000} <= steps and len(points) <= 2 * 14, (len(points), sorted(steps))
    assert set(points[0]) >= {"key", "value", "timestamp", "step", "run_id"}
    ranged = requests.get(url, params={"run_ids": runs[0], "metric_key": "loss", "start_step": 100,
                                       "end_step": 200, "max_results": 5}).json()["metrics"]
    assert all(100 <= point["step"] <= 200 for point in ranged) and ranged
    for params, message in [({"run_ids": runs[0], "metric_key": "loss", "start_step": 5, "end_step": 1},
                             "end_step must be greater"),
                            ({"run_ids": runs[0], "metric_key": "loss", "start_step": 5}, "both must be specified"),
                            ({"run_ids": runs[0], "metric_key": "loss", "max_results": 0}, "between 1 and 2500"),
                            ({"metric_key": "loss"}, "run_ids")]:
        refused = requests.get(url, params=params)
        assert refused.status_code == 400 and message in refused.json()["message"], refused.text
    too_many = requests.get(url, params=[("run_ids", "a" * 32)] * 101 + [("metric_key", "loss")])
    assert too_many.status_code == 400 and "at most 100 run_ids" in too_many.text

    # The registry's pages: models, a model's versions, a version.
    name = unique("clf")
    client.create_registered_model(name, description="a classifier")
    version = client.create_model_version(name, f"runs:/{runs[0]}/model", run_id=runs[0])
    client.set_registered_model_alias(name, "champion", version.version)
    listing = requests.get(f"{server.url}/models").text
    assert f"/models/{name}" in listing
    model_page = requests.get(f"{server.url}/models/{name}").text
    assert "a classifier" in model_page and "@champion" in model_page and f"/runs/{runs[0]}" in model_page
    version_page = requests.get(f"{server.url}/models/{name}/versions/{version.version}").text
    assert f"{name} v{version.version}" in version_page
    missing = requests.get(f"{server.url}/models/{name}/versions/99")
    assert missing.status_code == 404 and 'role="alert"' in missing.text
    # The client's registry link (`#/models/<name>/versions/<v>`) is mapped by the script.
    assert "#\\/models\\/([^/]+)\\/versions\\/" in requests.get(f"{server.url}/console.js").text


def test_deleted_items_with_their_time_left_and_the_audit_trail(console):
    import os

    os.environ["MLFLOW_TRACKING_TOKEN"] = console.admin_token
    try:
        client = mlflow.MlflowClient(tracking_uri=console.url)
        experiment = client.create_experiment(unique("deleted"))
        keep, drop = (client.create_run(experiment, run_name=name).info.run_id for name in ("keep-me", "drop-me"))
        client.delete_run(keep)
        client.delete_run(drop)
        check_deleted_and_audit(console, client, keep, drop)
    finally:
        os.environ.pop("MLFLOW_TRACKING_TOKEN", None)


def test_a_deleted_model_whose_name_was_taken_is_recovered_under_a_new_name(console):
    import os

    os.environ["MLFLOW_TRACKING_TOKEN"] = console.admin_token
    try:
        client = mlflow.MlflowClient(tracking_uri=console.url, registry_uri=console.url)
        name = unique("reused")
        client.create_registered_model(name, description="the first")
        client.delete_registered_model(name)
        client.create_registered_model(name, description="the second")
        browser = sign_in(console, token=console.admin_token)
        page = browser.get(f"{console.url}/deleted").text
        kept = re.search(r'action="/deleted/registered_model/([^"]+)/recover"', page)
        assert kept and 'name="as"' in page, page
        csrf = csrf_of(page)
        # Its name is taken: refused, saying how to go on; nothing changes.
        refused = browser.post(f"{console.url}/deleted/registered_model/{kept.group(1)}/recover", data={"csrf": csrf})
        assert refused.status_code == 400 and "new name" in refused.text, refused.text
        assert client.get_registered_model(name).description == "the second"
        recovered = browser.post(f"{console.url}/deleted/registered_model/{kept.group(1)}/recover",
                                 data={"csrf": csrf, "as": f"{name}-first"})
        assert recovered.status_code == 200, recovered.text
        assert client.get_registered_model(f"{name}-first").description == "the first"
        assert client.get_registered_model(name).description == "the second"
    finally:
        os.environ.pop("MLFLOW_TRACKING_TOKEN", None)


def check_deleted_and_audit(console, client, keep: str, drop: str):
    browser = sign_in(console, token=console.admin_token)
    page = browser.get(f"{console.url}/deleted").text
    assert "keep-me" in page and "drop-me" in page and re.search(r"1[34] d \d+ h", page), page
    csrf = csrf_of(page)
    recovered = browser.post(f"{console.url}/deleted/run/{keep}/recover", data={"csrf": csrf})
    assert recovered.status_code == 200 and "keep-me" not in recovered.text
    assert client.get_run(keep).info.lifecycle_stage == "active"
    purged = browser.post(f"{console.url}/deleted/run/{drop}/purge", data={"csrf": csrf})
    assert purged.status_code == 200 and "drop-me" not in purged.text
    gone = browser.get(f"{console.url}/runs/{drop}")
    assert gone.status_code == 404
    unknown = browser.post(f"{console.url}/deleted/spaceship/{drop}/purge", data={"csrf": csrf})
    assert unknown.status_code == 404 and 'role="alert"' in unknown.text

    # The audit trail names who did it; it is for operators.
    audit = browser.get(f"{console.url}/audit").text
    assert "run_purged" in audit and "run_restored" in audit and ">admin<" in audit
    console.cli("user", "create", "owner", "--password-stdin", "--role", "Contributor@default",
                stdin="owner-pass-1\n")
    contributor = sign_in(console, username="owner", password="owner-pass-1")
    assert contributor.get(f"{console.url}/audit").status_code == 403
    # A Contributor sees deleted items but is not offered recover or purge.
    client.delete_run(keep)
    listed = contributor.get(f"{console.url}/deleted").text
    assert "keep-me" in listed and "<button>Recover</button>" not in listed and ">Purge<" not in listed
    forged = contributor.post(f"{console.url}/deleted/run/{keep}/recover", data={"csrf": "x"})
    assert forged.status_code == 403 and "Not allowed" in forged.text
