"""The web console in a real browser: Debian's chromium driven by
playwright (launched with `executable_path`; playwright's own browser
download is never used). A page that logs a JavaScript error or fails a
request fails the test; every page visited is saved as a screenshot under
the test's temporary directory (its path is printed)."""

import os
import re
import shutil
from pathlib import Path

import mlflow
import pytest
from mlflow.entities import Metric
from playwright.sync_api import sync_playwright

from conftest import _tandem_bin
from support import unique
from test_auth import AuthServer


def chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    assert path, "chromium is not installed (scripts/test installs Debian's chromium)"
    return path


class Watched:
    """A page whose JavaScript errors and failed requests are collected."""

    def __init__(self, page, shots: Path):
        self.page, self.shots, self.problems, self.count = page, shots, [], 0
        page.on("pageerror", lambda error: self.problems.append(f"JavaScript error: {error}"))
        page.on("console", lambda message: message.type == "error" and self.problems.append(
            f"console error: {message.text}"))
        page.on("requestfailed", lambda request: self.problems.append(
            f"request failed: {request.url} {request.failure}"))

    def shot(self, name: str):
        self.count += 1
        self.page.screenshot(path=str(self.shots / f"{self.count:02d}-{name}.png"), full_page=True)

    def check(self):
        assert not self.problems, self.problems


@pytest.fixture
def console(tmp_path):
    server = AuthServer(_tandem_bin(), tmp_path / "server")
    yield server
    server.stop()


def test_a_team_uses_the_console(console, tmp_path):
    shots = tmp_path / "screenshots"
    shots.mkdir()
    print(f"screenshots in {shots}")
    # What the client logged, and the link it prints for a run.
    os.environ["MLFLOW_TRACKING_TOKEN"] = console.admin_token
    try:
        client = mlflow.MlflowClient(tracking_uri=console.url)
        experiment = client.create_experiment(unique("browser"))
        runs = []
        for lr in ("0.1", "0.01"):
            run = client.create_run(experiment, run_name=f"lr-{lr}").info.run_id
            client.log_param(run, "lr", lr)
            client.log_batch(run, metrics=[Metric("loss", 1.0 / (step + 1) + float(lr), 0, step)
                                           for step in range(500)])
            (tmp_path / "notes.txt").write_text(f"learning rate {lr}")
            client.log_artifact(run, str(tmp_path / "notes.txt"))
            runs.append(run)
    finally:
        os.environ.pop("MLFLOW_TRACKING_TOKEN", None)
    console.cli("user", "create", "viewer", "--password-stdin", "--role", "Reader@default", stdin="viewer-pass-1\n")

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium(), args=["--no-sandbox"])
        try:
            context = browser.new_context(accept_downloads=True)
            watched = Watched(context.new_page(), shots)
            page = watched.page

            # Sign in: the link the client printed leads to the sign-in page,
            # then to the run.
            printed = f"{console.url}/#/experiments/{experiment}/runs/{runs[0]}"
            page.goto(printed)
            page.wait_for_url(re.compile(r"/login"))
            watched.shot("sign-in")
            page.fill("input[name=username]", "admin")
            page.fill("input[name=password]", "wrong-password")
            page.click("button[type=submit]")
            page.wait_for_selector("p.error")
            assert "Wrong username or password" in page.inner_text("p.error")
            page.fill("input[name=token]", console.admin_token)
            page.click("button[type=submit]")
            page.wait_for_load_state()

            # Experiments, then the runs table: filter and sort.
            page.goto(f"{console.url}/")
            page.click(f"a[href='/experiments/{experiment}']")
            page.wait_for_selector("table.runs")
            watched.shot("runs")
            assert page.locator("table.runs tbody tr").count() == 2
            page.fill("input[name=filter]", "params.lr = '0.01'")
            page.click("form.search button")
            page.wait_for_load_state()
            assert page.locator("table.runs tbody tr").count() == 1
            page.goto(f"{console.url}/experiments/{experiment}")
            page.click("th.metrics a")  # sort by loss
            page.wait_for_load_state()
            names = page.locator("table.runs tbody td:nth-child(2)").all_inner_texts()
            assert sorted(names) == ["lr-0.01", "lr-0.1"]

            # The link the client printed opens the run; its chart is drawn.
            page.goto(printed)
            page.wait_for_url(re.compile(f"/runs/{runs[0]}$"))
            page.wait_for_selector("svg.chart polyline")
            watched.shot("run")
            assert "500 points" in page.inner_text("figure.metric figcaption")
            with page.expect_download() as download:
                page.click("table.artifacts a[download]")
            assert Path(download.value.path()).read_text() == "learning rate 0.1"
            # Drag across the chart to zoom: the page comes back with the range.
            box = page.locator("svg.chart").first.bounding_box()
            page.mouse.move(box["x"] + box["width"] * 0.4, box["y"] + box["height"] / 2)
            page.mouse.down()
            page.mouse.move(box["x"] + box["width"] * 0.6, box["y"] + box["height"] / 2, steps=5)
            page.mouse.up()
            page.wait_for_url(re.compile(r"from=\d+&to=\d+"))
            page.wait_for_selector("text=reset zoom")
            watched.shot("run-zoomed")
            zoomed = int(re.search(r"(\d+) points", page.inner_text("figure.metric figcaption")).group(1))
            assert 0 < zoomed < 500, zoomed
            # The artifact's preview page shows its text.
            page.click("table.artifacts td:first-child a")
            page.wait_for_selector("pre.preview")
            assert "learning rate 0.1" in page.inner_text("pre.preview")
            watched.shot("artifact-preview")

            # Compare the two runs.
            page.goto(f"{console.url}/experiments/{experiment}")
            for checkbox in page.locator("input[name=runs]").all():
                checkbox.check()
            page.click("form#compare button")
            page.wait_for_selector("table.compare")
            watched.shot("compare")
            assert page.locator("tr.differs").count() >= 2

            # Delete and recover a run.
            page.goto(f"{console.url}/runs/{runs[1]}")
            page.click("text=Delete run")
            page.wait_for_selector("text=Restore run")
            watched.shot("deleted-run")
            page.click("text=Restore run")
            page.wait_for_selector("text=Delete run")

            # The deployment page (a region on its own says so).
            page.goto(f"{console.url}/deployment")
            assert "runs on its own" in page.inner_text("main")
            watched.shot("deployment")
            watched.check()
            context.close()

            # A Reader is offered no write buttons.
            reader_context = browser.new_context()
            reader = Watched(reader_context.new_page(), shots)
            reader.page.goto(f"{console.url}/login")
            reader.page.fill("input[name=username]", "viewer")
            reader.page.fill("input[name=password]", "viewer-pass-1")
            reader.page.click("button[type=submit]")
            reader.page.wait_for_load_state()
            reader.page.goto(f"{console.url}/runs/{runs[0]}")
            reader.page.wait_for_selector("svg.chart")
            reader.shot("reader-run")
            assert reader.page.locator("text=Delete run").count() == 0
            reader.page.goto(f"{console.url}/")
            assert reader.page.locator("form.create").count() == 0
            reader.check()
            reader_context.close()
        finally:
            browser.close()


def test_a_planned_failover_from_the_console_under_a_writing_client(tmp_path):
    import threading
    import time

    import requests

    from cluster import Etcd, make_cluster, start_gateway

    shots = tmp_path / "screenshots"
    shots.mkdir()
    etcd = Etcd(tmp_path)
    etcd.start()
    token_file = tmp_path / "admin.token"
    cluster = make_cluster(_tandem_bin(), tmp_path, witness=etcd,
                           env={"TANDEM_AUTH": "1", "TANDEM_ADMIN_TOKEN_FILE": str(token_file)})
    gateway = None
    stop = threading.Event()
    written, errors = [], []
    try:
        deadline = time.monotonic() + 20
        while not (token_file.exists() and requests.get(
                f"{cluster.primary.url}/api/tandem/v1/whoami",
                headers={"Authorization": f"Bearer {token_file.read_text().strip()}"}).status_code == 200):
            assert time.monotonic() < deadline, cluster.log_tail(cluster.primary)
            time.sleep(0.05)
        token = token_file.read_text().strip()
        gateway = start_gateway(_tandem_bin(), cluster.deployment, tmp_path / "gateway.log")
        os.environ["MLFLOW_TRACKING_TOKEN"] = token
        client = mlflow.MlflowClient(tracking_uri=gateway.url)
        run = client.create_run(client.create_experiment(unique("failover-console"))).info.run_id

        def write():
            step = 0
            while not stop.is_set() and step < 2000:
                try:
                    client.log_metric(run, "loss", 1.0 / (step + 1), step=step)
                    written.append(step)
                except Exception as error:  # noqa: BLE001 - every failure is reported below
                    errors.append(repr(error))
                step += 1

        writer = threading.Thread(target=write)
        writer.start()
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=chromium(), args=["--no-sandbox"])
            try:
                watched = Watched(browser.new_context().new_page(), shots)
                page = watched.page
                page.on("dialog", lambda dialog: dialog.accept())
                page.goto(f"{gateway.url}/login")
                page.fill("input[name=token]", token)
                page.click("button[type=submit]")
                page.wait_for_load_state()
                page.goto(f"{gateway.url}/deployment")
                page.wait_for_selector("text=Primary: eastus")
                # RPO per class against max_rpo, the witness, and the gateway's own view.
                page.wait_for_selector("text=Recovery point per class")
                page.wait_for_selector("text=The gateway sends writes to eastus")
                assert "etcd" in page.inner_text("#deployment")
                watched.shot("deployment-before")
                page.click("text=Fail over to westus")
                page.wait_for_selector("#failover-outcome.done", timeout=30_000)
                assert "westus is primary" in page.inner_text("#failover-outcome")
                page.wait_for_selector("text=Primary: westus", timeout=30_000)
                page.wait_for_selector("text=The gateway sends writes to westus", timeout=30_000)
                watched.shot("deployment-after")
                watched.check()
            finally:
                browser.close()
        stop.set()
        writer.join(timeout=60)
        assert not errors, errors[:3]
        assert written, "the client wrote nothing"
        # Every acknowledged write is at the new primary.
        history = {metric.step for metric in client.get_metric_history(run, "loss")}
        assert set(written) <= history, len(set(written) - history)
    finally:
        stop.set()
        os.environ.pop("MLFLOW_TRACKING_TOKEN", None)
        if gateway is not None:
            gateway.stop()
        cluster.close()
        etcd.stop()
