"""The console's continuity page in a real browser (Debian chromium driven
by playwright): a repository's backups listed, one verified, one restored
as a new workspace with its progress shown and the result linked; the
conflicts section; an operator-only page (a Reader is refused). In a
deployment: the replicas verified from the page. A JavaScript error or a
failed request fails the test; screenshots are saved under the test's
temporary directory."""

import os

import mlflow
import requests
from playwright.sync_api import sync_playwright

from conftest import _tandem_bin
from support import unique
from test_auth import bearer
from test_console_browser import Watched, chromium, console  # noqa: F401 - the fixture


def sign_in(page, url, token):
    page.goto(f"{url}/login")
    page.fill("input[name=token]", token)
    page.click("button[type=submit]")
    page.wait_for_load_state()


def test_backups_are_listed_verified_and_restored_from_the_console(console, tmp_path):
    shots = tmp_path / "screenshots"
    shots.mkdir()
    print(f"screenshots in {shots}")
    os.environ["MLFLOW_TRACKING_TOKEN"] = console.admin_token
    try:
        client = mlflow.MlflowClient(tracking_uri=console.url)
        name = unique("kept")
        experiment = client.create_experiment(name)
        run = client.create_run(experiment).info.run_id
        client.log_metric(run, "loss", 0.25)
    finally:
        os.environ.pop("MLFLOW_TRACKING_TOKEN", None)
    repository = f"file://{tmp_path}/repo"
    made = requests.post(f"{console.url}/api/tandem/v1/backups", json={"to": repository},
                         headers=bearer(console.admin_token))
    assert made.status_code == 200 and '"result"' in made.text, made.text
    console.cli("user", "create", "viewer", "--password-stdin", "--role", "Reader@default", stdin="viewer-pass-1\n")

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium(), args=["--no-sandbox"])
        try:
            watched = Watched(browser.new_context().new_page(), shots)
            page = watched.page
            page.on("dialog", lambda dialog: dialog.accept("restored-copy") if dialog.type == "prompt"
                    else dialog.accept())
            sign_in(page, console.url, console.admin_token)
            page.click("a[href='/continuity']")
            page.wait_for_selector("text=No conflict")
            assert "no replicas to compare" in page.inner_text("#verify-section")
            page.fill("#repository", repository)
            page.click("#backups-form button")
            page.wait_for_selector("#backups table")
            watched.shot("backups")
            page.click("#backups button:has-text('Verify')")
            page.wait_for_selector("#backups-outcome .done", timeout=30_000)
            assert "all present and intact" in page.inner_text("#backups-outcome")
            page.click("#backups button:has-text('Restore default')")
            page.wait_for_selector("#backups-outcome >> text=Restored restored-copy", timeout=60_000)
            assert page.is_visible("#restore-progress")
            watched.shot("restored")
            page.click("#backups-outcome a")
            page.wait_for_load_state()
            page.wait_for_selector(f"text={name}")
            watched.check()
            # The repository is remembered for the next visit.
            page.goto(f"{console.url}/continuity")
            page.wait_for_selector("#backups table")
            # A repository the server is not configured for is refused, said on the page.
            page.fill("#repository", "file:///etc")
            page.click("#backups-form button")
            page.wait_for_selector("#backups .error")
            assert "file:///etc" in page.inner_text("#backups") or "not" in page.inner_text("#backups")

            reader = browser.new_context().new_page()
            reader.goto(f"{console.url}/login")
            reader.fill("input[name=username]", "viewer")
            reader.fill("input[name=password]", "viewer-pass-1")
            reader.click("button[type=submit]")
            reader.wait_for_load_state()
            answer = reader.goto(f"{console.url}/continuity")
            assert answer.status == 403 and "Not allowed" in reader.inner_text("main")
        finally:
            browser.close()
    restored = requests.get(f"{console.url}/api/tandem/v1/workspaces/restored-copy",
                            headers=bearer(console.admin_token))
    assert restored.status_code == 200, restored.text
    os.environ["MLFLOW_TRACKING_TOKEN"] = console.admin_token
    try:
        copy = mlflow.MlflowClient(tracking_uri=f"{console.url}/w/restored-copy")
        assert copy.get_experiment_by_name(name) is not None
    finally:
        os.environ.pop("MLFLOW_TRACKING_TOKEN", None)


def test_the_replicas_are_verified_from_the_console(tmp_path):
    from cluster import make_cluster

    shots = tmp_path / "screenshots"
    shots.mkdir()
    cluster = make_cluster(_tandem_bin(), tmp_path)
    try:
        client = mlflow.MlflowClient(tracking_uri=cluster.primary.url)
        run = client.create_run(client.create_experiment(unique("verified"))).info.run_id
        client.log_metric(run, "loss", 0.5)
        cluster.wait_caught_up()
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=chromium(), args=["--no-sandbox"])
            try:
                watched = Watched(browser.new_context().new_page(), shots)
                page = watched.page
                page.goto(f"{cluster.primary.url}/continuity")
                page.wait_for_selector("#verify >> text=No verification")
                page.click("#verify-now")
                page.wait_for_selector("#verify .done", timeout=60_000)
                assert "Equal:" in page.inner_text("#verify")
                page.wait_for_selector("#divergence >> text=Nothing in quarantine")
                # The doctor's verdict and every check, asked of both regions.
                page.wait_for_selector("#doctor >> text=A failover would", timeout=30_000)
                checks = page.locator("#doctor table tr").count() - 1
                assert checks >= 9, page.inner_text("#doctor")
                # This deployment has no witness: the doctor says a failover would not succeed,
                # and why, on a highlighted row.
                assert "NOT succeed now: witness failed" in page.inner_text("#doctor")
                assert page.locator("#doctor tr.bad").count() == 1
                watched.shot("continuity-deployment")
                watched.check()
            finally:
                browser.close()
    finally:
        cluster.close()
