"""The console's tracking pages against a real server on both metadata
backends, with data logged by the official mlflow client: experiment
rename/delete/restore, the runs table's chosen columns and paging, a run's
child runs, logged models and artifact previews (JSON, CSV, images,
MLmodel), charts of long histories drawn from the store's buckets with
zoom, and overlaid comparison charts. Changes on a server without
authentication must come from the console's own origin."""

import html
import re
import struct
import zlib

import mlflow
import pytest
import requests
from mlflow.entities import Metric

from support import unique


def same_origin(server) -> dict:
    return {"Origin": server.url}


def png(width: int = 2, height: int = 2) -> bytes:
    """A valid PNG image (red pixels), built by hand: no imaging library needed."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    rows = b"".join(b"\x00" + b"\xff\x00\x00" * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


def alert(page: str) -> str:
    match = re.search(r'role="alert">([^<]*)<', page)
    assert match, page
    return html.unescape(match.group(1))


def test_experiments_are_renamed_deleted_and_restored_from_their_page(server):
    client = mlflow.MlflowClient(tracking_uri=server.url)
    name = unique("console-exp")
    experiment = client.create_experiment(name)
    client.create_experiment(taken := unique("taken"))
    page = requests.get(f"{server.url}/experiments/{experiment}").text
    assert f'action="/experiments/{experiment}/rename"' in page and "Delete experiment" in page

    renamed = requests.post(f"{server.url}/experiments/{experiment}/rename", data={"name": f"{name}-v2", "csrf": ""},
                            headers=same_origin(server))
    assert renamed.status_code == 200 and f"{name}-v2" in renamed.text
    assert client.get_experiment(experiment).name == f"{name}-v2"
    # A name that is taken, or empty: a clear refusal, nothing changed.
    clash = requests.post(f"{server.url}/experiments/{experiment}/rename", data={"name": taken, "csrf": ""},
                          headers=same_origin(server))
    assert clash.status_code in (400, 409) and taken in alert(clash.text)
    empty = requests.post(f"{server.url}/experiments/{experiment}/rename", data={"name": "  ", "csrf": ""},
                          headers=same_origin(server))
    assert empty.status_code == 400, empty.text
    assert client.get_experiment(experiment).name == f"{name}-v2"
    # From another origin nothing happens.
    forged = requests.post(f"{server.url}/experiments/{experiment}/delete", data={"csrf": ""},
                           headers={"Origin": "https://evil.example"})
    assert forged.status_code == 403 and client.get_experiment(experiment).lifecycle_stage == "active"

    deleted = requests.post(f"{server.url}/experiments/{experiment}/delete", data={"csrf": ""},
                            headers=same_origin(server))
    assert deleted.status_code == 200 and "Restore experiment" in deleted.text and "rename" not in deleted.text
    assert client.get_experiment(experiment).lifecycle_stage == "deleted"
    listed = requests.get(f"{server.url}/", params={"deleted": "true", "filter": f"name = '{name}-v2'"}).text
    assert f"/experiments/{experiment}" in listed
    restored = requests.post(f"{server.url}/experiments/{experiment}/restore", data={"csrf": ""},
                             headers=same_origin(server))
    assert restored.status_code == 200 and "Delete experiment" in restored.text
    assert client.get_experiment(experiment).lifecycle_stage == "active"
    missing = requests.post(f"{server.url}/experiments/987654321/delete", data={"csrf": ""},
                            headers=same_origin(server))
    assert missing.status_code == 404 and alert(missing.text)


def test_the_runs_table_shows_the_chosen_columns_and_pages(server):
    client = mlflow.MlflowClient(tracking_uri=server.url)
    experiment = client.create_experiment(unique("columns"))
    for index in range(105):
        run = client.create_run(experiment, run_name=f"run-{index:03d}", tags={"team": f"t{index % 3}"})
        client.log_batch(run.info.run_id, metrics=[Metric("loss", 1.0 / (index + 1), 0, 0)],
                         params=[mlflow.entities.Param("lr", str(index))])
    url = f"{server.url}/experiments/{experiment}"
    default = requests.get(url).text
    # By default: the metrics and params found on the page.
    assert 'class="metrics"' in default and 'class="params"' in default and "tags.team" in default
    chosen = requests.get(url, params=[("col", "tags.team"), ("col", "params.lr"),
                                       ("order_by", "params.`lr` ASC")]).text
    headers = re.findall(r'<th class="(\w+)"><a [^>]*>([^<]*)</a>', chosen)
    assert headers == [("tags", "team"), ("params", "lr")], headers
    assert "<td>t0</td>" in chosen and 'class="metrics"' not in chosen
    # Sorting keeps the chosen columns in its links.
    sort_link = re.search(r'<th class="params"><a href="\?([^"]+)"', chosen).group(1)
    assert "col=tags.team" in html.unescape(sort_link) and "col=params.lr" in html.unescape(sort_link)

    first = requests.get(url).text
    assert first.count('name="runs"') == 100
    next_link = html.unescape(re.search(r'class="next" href="\?([^"]+)"', first).group(1))
    second = requests.get(f"{url}?{next_link}").text
    assert second.count('name="runs"') == 5 and "First page" in second and 'class="next"' not in second
    # A malformed order is the user's to fix, on the page.
    bad = requests.get(url, params={"order_by": "metrics.loss SIDEWAYS"})
    assert bad.status_code == 400 and alert(bad.text)


def test_a_run_page_lists_children_logged_models_and_previews_artifacts(server, tmp_path, monkeypatch):
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    monkeypatch.setenv("MLFLOW_TRACKING_URI", server.url)
    mlflow.set_tracking_uri(server.url)
    client = mlflow.MlflowClient(tracking_uri=server.url)
    experiment = client.create_experiment(unique("previews"))
    (tmp_path / "metrics.json").write_text('{"auc": [0.9, 0.95], "note": "<b>bold</b>"}')
    (tmp_path / "eval.csv").write_text("label,score\ncat,0.9\n\"dog, big\",0.8\n")
    (tmp_path / "roc.png").write_bytes(png())
    (tmp_path / "blob.bin").write_bytes(bytes(range(256)))
    with mlflow.start_run(experiment_id=experiment, run_name="parent") as parent:
        for name in ("metrics.json", "eval.csv", "roc.png", "blob.bin"):
            mlflow.log_artifact(str(tmp_path / name), artifact_path="report")
        model = LogisticRegression().fit(np.array([[0.0], [1.0], [2.0], [3.0]]), np.array([0, 0, 1, 1]))
        logged = mlflow.sklearn.log_model(model, name="model")
        children = []
        for index in range(2):
            with mlflow.start_run(experiment_id=experiment, run_name=f"child-{index}", nested=True) as child:
                children.append(child.info.run_id)
    parent_id = parent.info.run_id

    page = requests.get(f"{server.url}/runs/{parent_id}").text
    assert "Child runs" in page and all(f"/runs/{child}" in page for child in children)
    assert f"/logged-models/{logged.model_id}" in page
    child_page = requests.get(f"{server.url}/runs/{children[0]}").text
    assert f'href="/runs/{parent_id}"' in child_page and "Parent run" in child_page
    previews = dict(re.findall(r'<a href="(/artifact\?path=[^"]+)">report/([^<]+)</a>', page))
    previews = {name: html.unescape(link) for link, name in previews.items()}
    assert set(previews) == {"metrics.json", "eval.csv", "roc.png", "blob.bin"}, previews

    as_json = requests.get(server.url + previews["metrics.json"]).text
    assert "&quot;auc&quot;: [" in as_json and "&lt;b&gt;bold&lt;/b&gt;" in as_json and "<b>bold" not in as_json
    as_csv = requests.get(server.url + previews["eval.csv"]).text
    assert '<table class="csv">' in as_csv and "<th>label</th>" in as_csv and "<td>dog, big</td>" in as_csv
    as_image = requests.get(server.url + previews["roc.png"]).text
    source = html.unescape(re.search(r'<img class="preview" src="([^"]+)"', as_image).group(1))
    image = requests.get(server.url + source)
    assert image.status_code == 200 and image.headers["content-type"] == "image/png" and image.content == png()
    assert "No preview for this kind of file" in requests.get(server.url + previews["blob.bin"]).text

    # The logged model's page: its source run, its artifacts, the MLmodel previewed.
    model_page = requests.get(f"{server.url}/logged-models/{logged.model_id}").text
    assert f'href="/runs/{parent_id}"' in model_page and "MLmodel" in model_page
    mlmodel = html.unescape(re.search(r'<a href="(/artifact\?path=[^"]+MLmodel)"', model_page).group(1))
    assert "flavors:" in requests.get(server.url + mlmodel).text
    listing = requests.get(f"{server.url}/experiments/{experiment}/models").text
    assert f"/logged-models/{logged.model_id}" in listing

    # Bad input: a clear page, never a 500 or a file outside the workspace.
    for path, status in [("../../etc/passwd", 400), ("report/../../x", 400), ("", 400),
                         ("report/nothing-here.txt", 404)]:
        answer = requests.get(f"{server.url}/artifact", params={"path": path})
        assert answer.status_code == status and alert(answer.text), (path, answer.status_code, answer.text)
    unknown = requests.get(f"{server.url}/logged-models/m-{'0' * 32}")
    assert unknown.status_code == 404 and alert(unknown.text)


def test_a_long_history_is_charted_from_buckets_and_zooms(server):
    client = mlflow.MlflowClient(tracking_uri=server.url)
    experiment = client.create_experiment(unique("long-history"))
    run = client.create_run(experiment, run_name="long").info.run_id
    other = client.create_run(experiment, run_name="short").info.run_id
    points = 50_000
    for start in range(0, points, 1000):
        client.log_batch(run, metrics=[Metric("loss", 1e6 if step == 31_337 else float(step % 100), 1_000 + step, step)
                                       for step in range(start, start + 1000)])
    client.log_batch(other, metrics=[Metric("loss", 5.0, 0, step) for step in range(10)])

    page = requests.get(f"{server.url}/runs/{run}").text
    caption = re.search(r"loss — (\d+) points, drawn from (\d+)", page)
    assert caption, page
    assert int(caption.group(1)) == points and int(caption.group(2)) <= 2_000
    # The spike survives the reduction: it is the chart's top.
    assert ">1000000.0000<" in page
    zoomed = requests.get(f"{server.url}/runs/{run}", params={"from": 31_000, "to": 31_999}).text
    assert "loss — 1000 points" in zoomed and ">1000000.0000<" in zoomed and "reset zoom" in zoomed
    assert 'data-x0="31000"' in zoomed
    elsewhere = requests.get(f"{server.url}/runs/{run}", params={"from": 0, "to": 9_999}).text
    assert ">1000000.0000<" not in elsewhere and ">99.0000<" in elsewhere
    by_time = requests.get(f"{server.url}/runs/{run}", params={"axis": "time"}).text
    assert 'data-x0="1000"' in by_time and 'aria-current="true">by time' in by_time

    compared = requests.get(f"{server.url}/compare", params=[("runs", run), ("runs", other)]).text
    chart = re.search(r'<svg class="chart".*?</svg>', compared, re.S).group(0)
    assert chart.count("<polyline") == 2 and ">long</text>" in chart and ">short</text>" in chart
    too_many = requests.get(f"{server.url}/compare", params=[("runs", run)] * 1 + [("runs", f"{i:032x}") for i in range(11)])
    assert too_many.status_code == 400 and "at most 10" in alert(too_many.text)
