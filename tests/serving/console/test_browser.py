"""The web console in a real browser: Debian's headless Chromium, driven through
Selenium and its ``chromedriver``, against a real ``modelhost serve`` with auth on and a
populated registry (a model with two versions and a canary under way, traffic, a run
with a metric history, keys of each role).

Checked on every page, at 1280x800 and at 390x844: it loads with no error in the
browser's console (a script error, a content-security-policy violation or a failed
load all land there), every request it made answered 200, its main element is there and
nothing overflows the window sideways. Then a deployer rolls the canary back from the
deployment page (confirming the dialog) and the API serves only the stable version,
and a viewer sees no action button.

``make system-deps`` installs Chromium and chromedriver. Without them the test is
skipped, except under ``CI=true``, where it fails. With ``MODELHOST_UI_SCREENSHOTS=DIR``
each page's screenshot is written there (docs/images holds the ones docs/ui.md shows).
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.serving.server import ServerProcess, server_env

from modelhost import Client

pytestmark = pytest.mark.slow

SIZES = {"desktop": (1280, 800), "phone": (390, 844)}
# Each page and the element (a CSS selector) that says it rendered.
PAGES = [
    ("models", "/ui/models", "#models"),
    ("model", "/ui/models/iris", "#versions"),
    ("compare", "/ui/models/iris/compare?a=1.0.0&b=1.1.0", "#metric-diff"),
    ("deployment", "/ui/deployments/iris", "#events"),
    ("monitoring", "/ui/monitoring/iris?window=1h", "#report"),
    ("runs", "/ui/runs", "#runs"),
    ("run-compare", "/ui/runs/compare?run={run_a}&run={run_b}", "#metric-charts"),
    ("audit", "/ui/audit", '#chain[data-verified="ok"]'),  # loaded after the page
    ("keys", "/ui/keys", "#keys"),
    ("not-found", "/ui/models/no-such-model", "#error"),
]


def _need(program: str) -> str:
    path = shutil.which(program)
    if path is None:
        reason = (f"Debian's {program} is not installed; 'make system-deps' installs it "
                  "(as root, or with sudo)")
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{reason}: under CI=true this test must run, not skip")
        pytest.skip(reason)
    return path


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A served, populated registry and the keys of each role."""
    from sklearn.datasets import load_iris, load_wine
    from sklearn.linear_model import LogisticRegression

    root = tmp_path_factory.mktemp("console")
    home = root / "home"
    client = Client(home=home)
    X, y = load_iris(return_X_y=True, as_frame=True)
    for C, accuracy, version in ((0.05, 0.91, "1.0.0"), (1.0, 0.97, "1.1.0")):
        client.register_model(LogisticRegression(C=C, max_iter=500).fit(X, y), name="iris",
                              version=version, input_example=X.head(3),
                              metrics={"accuracy": accuracy}, reference_data=X)
    wine_X, wine_y = load_wine(return_X_y=True, as_frame=True)  # a second model to list
    client.register_model(LogisticRegression(max_iter=5000).fit(wine_X, wine_y), name="wine",
                          input_example=wine_X.head(3), metrics={"accuracy": 0.96},
                          description="Wine cultivar from 13 chemical measurements")
    client.transition_stage("wine", "1.0.0", "staging")
    client.transition_stage("wine", "1.0.0", "production")
    client.transition_stage("iris", "1.0.0", "staging")
    client.transition_stage("iris", "1.0.0", "production")
    client.registry.set_tags("iris", {"team": "fraud"})
    data = root / "iris.csv"
    X.assign(target=y).to_csv(data, index=False)
    with client.tracking.start_run("iris-tuning", name="lr-c1") as run:
        run_a = run.run_id
        run.log_dataset(data, name="iris-train")
        run.log_params({"C": "1.0", "solver": "lbfgs"})
        for step in range(8):
            run.log_metric("loss", 1.0 / (step + 1), step=step)
    with client.tracking.start_run("iris-tuning", name="lr-c005") as run:
        run_b = run.run_id
        run.log_params({"C": "0.05", "solver": "lbfgs"})
        for step in range(8):
            run.log_metric("loss", 1.4 / (step + 1), step=step)
    keys = {role: client.keys.create(name=f"{role}-key", role=role).secret
            for role in ("admin", "deployer", "viewer")}
    client.deploy("iris", "1.1.0", strategy="canary", steps=[50, 100],
                  step_duration_s=3600)
    client.close()

    server = ServerProcess(args=[], log_dir=root, env=server_env(
        home, MODELHOST_AUTH="required", MODELHOST_MONITOR_FLUSH_S="0.5"))
    server.start()
    try:
        headers = {"Authorization": f"Bearer {keys['admin']}"}
        with httpx.Client(base_url=server.base_url, headers=headers, timeout=30) as http:
            for i in range(40):  # drawn from the training data: no drift
                rows = X.sample(20, random_state=i).to_dict(orient="records")
                response = http.post("/v1/models/iris/predict", json={"inputs": rows},
                                     headers={"X-Routing-Key": f"user-{i}"})
                assert response.status_code == 200, response.text
        yield {"url": server.base_url, "keys": keys, "server": server,
               "runs": {"run_a": run_a, "run_b": run_b}}
    finally:
        server.kill()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    chromium = _need("chromium")
    chromedriver = _need("chromedriver")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--disable-dev-shm-usage", "--hide-scrollbars",
                 "--force-device-scale-factor=1"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(chromedriver), options=options)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


def _sign_in(driver: Any, url: str, key: str) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver.delete_all_cookies()
    driver.get(f"{url}/ui/models")
    assert "/ui/login" in driver.current_url  # not signed in: the login form
    driver.find_element(By.ID, "key").send_keys(key)
    driver.find_element(By.CSS_SELECTOR, "#login button").click()
    # The click returns before the form's answer has loaded: wait for the models page.
    WebDriverWait(driver, 30).until(lambda d: d.current_url.endswith("/ui/models")
                                    and d.find_elements(By.ID, "models"))
    driver.get_log("browser")  # what the login page said is not the next page's


def _size(driver: Any, width: int, height: int) -> None:
    # The window's inner size, whatever the browser's frame takes.
    driver.set_window_size(width, height)
    inner = driver.execute_script("return [window.innerWidth, window.innerHeight]")
    driver.set_window_size(width * 2 - inner[0], height * 2 - inner[1])


def _check_page(driver: Any, url: str, path: str, marker: str, *,
                status: int = 200) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(url + path)
    WebDriverWait(driver, 20).until(
        lambda d: d.find_elements(By.CSS_SELECTOR, marker)
        and d.find_element(By.CSS_SELECTOR, marker).is_displayed())
    problems = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"
                and not (status == 404 and "404" in e["message"]
                         and path in e["message"])]
    assert problems == [], f"{path}: {problems}"
    statuses = driver.execute_script(
        "return [performance.getEntriesByType('navigation')[0].responseStatus]"
        ".concat(performance.getEntriesByType('resource').map("
        "e => e.name + ' ' + e.responseStatus))")
    assert statuses[0] == status, f"{path}: {statuses}"
    failed = [s for s in statuses[1:] if not s.endswith(" 200")]
    assert failed == [], f"{path}: {failed}"
    overflow = driver.execute_script(
        "return document.documentElement.scrollWidth - window.innerWidth")
    if overflow > 1:  # name the widest elements that stick out
        culprits = driver.execute_script(
            "return [...document.querySelectorAll('main *')].filter("
            "e => e.getBoundingClientRect().right > window.innerWidth + 1).slice(-5).map("
            "e => e.tagName + '.' + e.className + '#' + e.id + ' '"
            " + Math.round(e.getBoundingClientRect().right))")
        raise AssertionError(f"{path} is {overflow} px wider than the window: {culprits}")


def test_every_page_loads_cleanly_at_both_sizes(site: dict[str, Any], browser: Any) -> None:
    url = site["url"]
    _sign_in(browser, url, site["keys"]["admin"])
    shots = os.environ.get("MODELHOST_UI_SCREENSHOTS")
    for size, (width, height) in SIZES.items():
        _size(browser, width, height)
        for name, path, marker in PAGES:
            path = path.format(**site["runs"])
            _check_page(browser, url, path, marker,
                        status=404 if name == "not-found" else 200)
            if shots and size == "desktop":
                _shoot(browser, Path(shots) / f"ui-{name}.png", width)
                _size(browser, width, height)
    if shots:
        browser.get(url + "/ui/deployments/iris")
        _shoot(browser, Path(shots) / "ui-deployment-phone.png", SIZES["phone"][0])


def _shoot(driver: Any, path: Path, width: int) -> None:
    """A screenshot of the whole page (up to 2,400 px tall) at ``width``."""
    height = driver.execute_script("return document.documentElement.scrollHeight")
    _size(driver, width, min(int(height), 2400))
    driver.save_screenshot(str(path))


def test_live_part_of_the_deployment_page_refreshes(site: dict[str, Any],
                                                     browser: Any) -> None:
    from selenium.webdriver.support.ui import WebDriverWait

    url = site["url"]
    _sign_in(browser, url, site["keys"]["viewer"])
    browser.get(url + "/ui/deployments/iris")
    # htmx replaces #live every 2 s: a marker set on the old element disappears.
    browser.execute_script("document.getElementById('live').dataset.old = '1'")
    WebDriverWait(browser, 10).until(lambda d: d.execute_script(
        "const e = document.getElementById('live'); return e && !e.dataset.old"))
    assert [e for e in browser.get_log("browser") if e["level"] == "SEVERE"] == []


def test_a_viewer_sees_no_action(site: dict[str, Any], browser: Any) -> None:
    from selenium.webdriver.common.by import By

    url = site["url"]
    _sign_in(browser, url, site["keys"]["viewer"])
    browser.get(url + "/ui/deployments/iris")
    assert browser.find_element(By.ID, "state").text == "progressing"
    assert browser.find_elements(By.CSS_SELECTOR, "#actions button") == []
    assert browser.find_elements(By.LINK_TEXT, "API keys") == []
    browser.get(url + "/ui/keys")
    assert "not allow" in browser.find_element(By.ID, "error").text


def test_a_rollback_from_the_deployment_page_changes_what_the_api_serves(
        site: dict[str, Any], browser: Any) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    url, keys = site["url"], site["keys"]
    headers = {"Authorization": f"Bearer {keys['deployer']}"}
    with httpx.Client(base_url=url, headers=headers, timeout=30) as http:
        before = http.get("/v1/deployments/iris").json()
        assert before["state"] == "progressing" and before["candidate"] == "1.1.0"

        _sign_in(browser, url, keys["deployer"])
        browser.get(url + "/ui/deployments/iris")
        browser.find_element(By.ID, "action-rollback").click()
        WebDriverWait(browser, 10).until(expected_conditions.alert_is_present())
        alert = browser.switch_to.alert
        assert "Rollback" in alert.text
        alert.accept()
        WebDriverWait(browser, 10).until(
            lambda d: d.find_element(By.ID, "state").text == "rolled back")

        after = http.get("/v1/deployments/iris").json()
        assert after["state"] == "rolled_back" and after["weights"] == {"1.0.0": 1.0}
        rows = [{"sepal length (cm)": 5.1, "sepal width (cm)": 3.5,
                 "petal length (cm)": 1.4, "petal width (cm)": 0.2}]
        time.sleep(1.5)  # every worker reads the routing each 0.5 s (server_env)
        served: set[str] = set()
        for i in range(30):  # every routing key now lands on the stable version
            response = http.post("/v1/models/iris/predict", json={"inputs": rows},
                                 headers={"X-Routing-Key": f"user-{i}",
                                          "Authorization": f"Bearer {keys['admin']}"})
            if response.status_code == 200:
                served.add(response.headers["x-model-version"])
        assert served == {"1.0.0"}
        audit = http.get("/v1/audit", params={"limit": 20},
                         headers={"Authorization": f"Bearer {keys['admin']}"}).json()
    entries = audit if isinstance(audit, list) else audit.get("entries", [])
    assert any("rollback" in e["action"] and "deployer-key" in e["actor"] for e in entries)
    assert [e for e in browser.get_log("browser") if e["level"] == "SEVERE"] == []


def test_serve_refuses_to_start_when_the_home_cannot_keep_the_secret(
        tmp_path: Path) -> None:
    """A clear refusal at start, not a trace in every worker: here the secret's path is
    taken by a folder."""
    import subprocess

    from tests.serving.server import MODELHOST

    home = tmp_path / "home"
    Client(home=home).close()
    (home / "console-secret").mkdir()
    done = subprocess.run([str(MODELHOST), "serve", "--port", "0"], env=server_env(home),
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode != 0, done.stderr
    assert "MODELHOST_CONSOLE_SECRET" in done.stderr and "Traceback" not in done.stderr
    assert "modelhost serving on" not in done.stderr
    assert [p.name for p in home.iterdir() if p.name.startswith(".console-secret")] == []
