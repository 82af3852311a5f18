"""The app in a real browser: headless Chromium (Debian's package) driven by Selenium through chromedriver.

Uploads the example pair in the Changer tab, reads the result from the page and saves a screenshot
(into $ZOO_SCREENSHOTS when set, else pytest's temporary folder). `.ci/run` installs chromium and
chromium-driver with apt when they are missing; without them this test skips and says why.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from app_server import ROOT, serve_app

import zoo

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install -e '.[dev]')")
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

CHROMIUM = os.environ.get("CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = os.environ.get("CHROMEDRIVER") or shutil.which("chromedriver")
pytestmark = [
    pytest.mark.skipif(not (CHROMIUM and CHROMEDRIVER), reason="no chromium/chromedriver on this machine "
                       "(apt-get install -y chromium chromium-driver, as .ci/run does; or set CHROMIUM and CHROMEDRIVER)"),
    pytest.mark.skipif("changer" not in {zoo.card(name).demo for name in zoo.list()},
                       reason="no changer model installed"),
]
WAIT_SECONDS = 60


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                     "--window-size=1400,1900"):
        options.add_argument(argument)
    with serve_app(tmp_path_factory.mktemp("app") / "app.log") as url:
        driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
        try:
            driver.get(url)
            yield driver
        finally:
            driver.quit()


def open_tab(driver, title: str) -> None:
    tabs = WebDriverWait(driver, WAIT_SECONDS).until(lambda d: d.find_elements(By.CSS_SELECTOR, "button[role=tab]"))
    next(tab for tab in tabs if tab.text.strip() == title).click()


def screenshot_folder(tmp_path: Path) -> Path:
    folder = Path(os.environ.get("ZOO_SCREENSHOTS", tmp_path))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def test_changer_in_the_browser(page, tmp_path):
    open_tab(page, "Changer")
    wait = WebDriverWait(page, WAIT_SECONDS)
    image_a, image_b = sorted((ROOT / "zoo" / "examples" / "pair").glob("*.jpg"))
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#changer-a input[type=file]"))[0].send_keys(str(image_a))
    page.find_element(By.CSS_SELECTOR, "#changer-b input[type=file]").send_keys(str(image_b))
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#changer-a img, #changer-b img")) == 2)
    page.find_element(By.CSS_SELECTOR, "#changer-run").click()
    latency = wait.until(lambda d: d.find_element(By.CSS_SELECTOR, "#changer-latency").text.strip() or None)
    page.execute_script("window.scrollTo(0, 0)")
    shot = screenshot_folder(tmp_path) / "changer.png"
    page.save_screenshot(str(shot))

    # The example pair's true change: displacement+rotation, angle +20° (zoo/examples/README.md).
    heading = page.find_element(By.CSS_SELECTOR, "#changer-class h2, #changer-class .output-class").text
    assert heading == "displacement+rotation"
    params = page.find_element(By.CSS_SELECTOR, "#changer-params textarea").get_attribute("value")
    assert 15 < float(params.split("angle ")[1].split("°")[0]) < 25
    assert latency.split(" · ")[0] in ("CPU", "CUDA") and latency.endswith(" ms")
    assert page.find_element(By.CSS_SELECTOR, "#changer-strip img").get_attribute("src")
    assert shot.stat().st_size > 10_000


def test_every_tab_opens(page):
    for title in ("Car or plane", "CIFAR-10", "Models", "Changer"):
        open_tab(page, title)
        panel = WebDriverWait(page, WAIT_SECONDS).until(
            lambda d: next((p for p in d.find_elements(By.CSS_SELECTOR, "[role=tabpanel]") if p.is_displayed()), None))
        assert panel.text.strip()
    open_tab(page, "Models")
    models_text = page.find_element(By.TAG_NAME, "body").text
    assert all(name in models_text for name in zoo.list())


def test_the_apis_docs_upload_an_image_with_the_network_cut_off(tmp_path):
    """`zoo serve`'s /docs in Chromium that can resolve no name but the loopback: Swagger UI loads from the
    server itself, and its form sends a file to the predict route and shows zoo's answer."""
    pytest.importorskip("fastapi")
    from selenium.webdriver.chrome.service import Service
    from test_serve import start

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                     "--window-size=1300,1800", "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"):
        options.add_argument(argument)
    cat = ROOT / "zoo" / "examples" / "cifar10" / "cat.jpg"
    for url in start(log=tmp_path / "serve.log"):
        driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
        try:
            driver.get(f"{url}/docs")
            wait = WebDriverWait(driver, WAIT_SECONDS)
            wait.until(lambda d: [e for e in d.find_elements(By.CSS_SELECTOR, ".opblock") if "predict" in e.text])[0].click()
            wait.until(lambda d: d.find_element(By.CSS_SELECTOR, ".try-out__btn")).click()
            wait.until(lambda d: d.find_elements(By.XPATH, "//button[contains(., 'Add string item')]"))[0].click()
            wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "input[type=file]"))[0].send_keys(str(cat))
            driver.find_element(By.CSS_SELECTOR, "input[placeholder=name]").send_keys("cnn")
            driver.find_element(By.CSS_SELECTOR, ".execute").click()
            answer = wait.until(lambda d: next((e.text for e in d.find_elements(By.CSS_SELECTOR, ".response-col_description pre")
                                                if '"predictions"' in e.text), None))
        finally:
            driver.quit()
    assert f'"label": "{zoo.load("cnn", device="cpu").predict(cat).label}"' in answer
