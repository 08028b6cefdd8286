"""The viewer at GET / and the offline /docs, in a real browser: Debian's headless chromium driven by Selenium.

Skipped where chromium or chromedriver is missing, unless REDSEG_REQUIRE_BROWSER=1 (set by .ci/run,
which installs them). The screenshot is kept in $REDSEG_TEST_ARTIFACTS (default test-artifacts/).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from model.checkpoint import DEFAULT_CHECKPOINT
from model.config import ALL_LESIONS, LESION_NAMES
from model.screening.overlay import LESION_COLOURS
from tests.dicom_files import photograph, sample_rgb, to_bytes
from tests.service.helpers import ROOT, SAMPLE, make_settings, png, running_server, serve_in_thread, tiny_checkpoint

TOKEN = "viewer-test-token"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
ARTIFACTS = Path(os.environ.get("REDSEG_TEST_ARTIFACTS", ROOT / "test-artifacts"))
INFERENCE_TIMEOUT_S = 300

pytestmark = pytest.mark.slow  # a browser and the bundled model on the full-size sample: about 50 s

if not (CHROMIUM and CHROMEDRIVER):
    if os.environ.get("REDSEG_REQUIRE_BROWSER") == "1":
        pytest.fail("REDSEG_REQUIRE_BROWSER=1 but chromium or chromedriver is missing (apt-get install chromium chromium-driver)")
    pytest.skip("chromium and chromedriver are not installed", allow_module_level=True)

from selenium import webdriver  # noqa: E402
from selenium.webdriver.chrome.options import Options  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402


@pytest.fixture(scope="module")
def bundled_server() -> Iterator[str]:
    """The bundled model behind a token, as `make serve` runs it."""
    env = {"REDSEG_CHECKPOINT": str(DEFAULT_CHECKPOINT), "REDSEG_DEVICE": "cpu", "REDSEG_API_TOKEN": TOKEN}
    with running_server(env, timeout_s=180) as (base_url, _):
        yield base_url


@pytest.fixture(scope="module")
def browser() -> Iterator[webdriver.Chrome]:
    options = Options()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1000"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def status(driver: webdriver.Chrome) -> tuple[str, str]:
    element = driver.find_element(By.ID, "status")
    return element.get_attribute("data-state"), driver.find_element(By.ID, "message").text


def choose(driver: webdriver.Chrome, path: Path) -> tuple[str, str]:
    """Choose a file in the page and wait until the page reports the outcome."""
    driver.find_element(By.ID, "file").send_keys(str(path))
    WebDriverWait(driver, INFERENCE_TIMEOUT_S).until(lambda d: status(d)[0] in ("done", "error"))
    return status(driver)


def test_docs_work_offline(browser: webdriver.Chrome, bundled_server: str):
    browser.get(f"{bundled_server}/docs")
    title = WebDriverWait(browser, 30).until(lambda d: d.find_elements(By.CSS_SELECTOR, ".swagger-ui .info .title"))
    assert "RedSeg" in title[0].text
    assert "/segment" in browser.find_element(By.CSS_SELECTOR, ".swagger-ui").text


def test_viewer_errors_then_segments_a_photograph(browser: webdriver.Chrome, bundled_server: str, tmp_path: Path):
    browser.get(bundled_server)
    assert browser.title == "RedSeg viewer"

    state, message = choose(browser, SAMPLE)
    assert state == "error" and "API token" in message  # 401 without the token

    browser.find_element(By.ID, "token").send_keys(TOKEN)
    text = tmp_path / "notes.txt"
    text.write_text("not a photograph")
    state, message = choose(browser, text)
    assert state == "error" and message.startswith("Not a supported image"), message  # 415

    state, message = choose(browser, SAMPLE)
    assert state == "done", message
    shown = {
        lesion: int(browser.find_element(By.CSS_SELECTOR, f'tr[data-lesion="{lesion}"] .count').text)
        for lesion in ("MA", "HE", "EX", "SE")
    }
    answer = httpx.post(
        f"{bundled_server}/segment",
        params={"outputs": "none"},
        files={"image": (SAMPLE.name, SAMPLE.read_bytes(), "image/jpeg")},
        headers={"Authorization": f"Bearer {TOKEN}"},
        timeout=INFERENCE_TIMEOUT_S,
    ).json()
    assert shown == {lesion: answer["screening"]["lesions"][lesion]["count"] for lesion in ("MA", "HE", "EX", "SE")}
    assert "not a grade" in browser.find_element(By.ID, "disclaimer").text
    risk = answer["screening"]["macular_oedema"]  # the bundled model carries a risk-of-macular-oedema score
    assert browser.find_element(By.ID, "oedema-risk").text == f"Macular oedema risk {risk['score']:.2f}"
    assert f"ROC AUC {risk['validation']['roc_auc']:.2f}" in browser.find_element(By.ID, "oedema-validation").text
    links = [a.get_attribute("download") for a in browser.find_elements(By.CSS_SELECTOR, "#downloads a")]
    assert links == [f"IDRiD_05_{lesion}_{kind}.png" for lesion in ("MA", "HE", "EX", "SE") for kind in ("mask", "prob")]
    overlay_pixels = browser.execute_script(
        "const c = document.getElementById('layer-HE'); const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;"
        "let n = 0; for (let i = 3; i < d.length; i += 4) n += d[i] > 0; return [c.width, c.height, n];"
    )
    assert overlay_pixels == [4288, 2848, answer["lesions"]["HE"]["area_pixels"]]

    browser.find_element(By.ID, "actual").click()
    assert "scale(1)" in browser.find_element(By.ID, "stage").get_attribute("style")
    browser.find_element(By.ID, "fit").click()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    assert browser.save_screenshot(str(ARTIFACTS / "viewer.png"))


def test_viewer_takes_a_dicom_photograph(browser: webdriver.Chrome, bundled_server: str, tmp_path: Path):
    """The drop zone names DICOM, the file chooser offers .dcm, and the lesions are drawn on grey (a
    browser cannot draw a DICOM file itself)."""
    browser.get(bundled_server)
    assert "DICOM" in browser.find_element(By.ID, "drop").text
    assert ".dcm" in browser.find_element(By.ID, "file").get_attribute("accept").split(",")
    browser.execute_script("document.getElementById('token-box').open = true")
    token = browser.find_element(By.ID, "token")
    token.clear()  # the page may keep the previous test's token for the session
    token.send_keys(TOKEN)
    dicom = tmp_path / "fundus.dcm"
    dicom.write_bytes(to_bytes(photograph(sample_rgb(1072, 712), "jpeg")))
    state, message = choose(browser, dicom)
    assert state == "done" and "1072x712" in message, message
    assert "DICOM" in browser.find_element(By.ID, "hint").text


def test_viewer_shows_every_lesion_of_a_four_lesion_model(browser: webdriver.Chrome, tmp_path: Path):
    """A layer (name, colour, show/hide), a mask canvas, a summary row and downloads for MA, HE, EX and SE."""
    checkpoint = tiny_checkpoint(tmp_path / "four.safetensors", exudates=True)
    photo = tmp_path / "small.png"
    photo.write_bytes(png(sample_rgb(300, 200)))
    with serve_in_thread(make_settings(checkpoint)) as base_url:
        browser.get(base_url)
        state, message = choose(browser, photo)
        assert state == "done", message
        labels = [label.text for label in browser.find_elements(By.CSS_SELECTOR, "#lesion-layers label")]
        assert labels == [f"{LESION_NAMES[lesion]} ({lesion})" for lesion in ALL_LESIONS]
        swatches = [s.value_of_css_property("background-color") for s in browser.find_elements(By.CSS_SELECTOR, ".swatch")]
        assert swatches == [f"rgba({', '.join(map(str, LESION_COLOURS[lesion]))}, 1)" for lesion in ALL_LESIONS]
        rows = [row.get_attribute("data-lesion") for row in browser.find_elements(By.CSS_SELECTOR, "#lesion-table tbody tr")]
        assert rows == list(ALL_LESIONS)
        canvases = browser.find_elements(By.CSS_SELECTOR, "#stage canvas.layer")
        assert [c.get_attribute("id") for c in canvases] == [f"layer-{lesion}" for lesion in reversed(ALL_LESIONS)]
        assert {(c.get_attribute("width"), c.get_attribute("height")) for c in canvases} == {("300", "200")}
        browser.find_element(By.ID, "show-EX").click()
        assert browser.execute_script("return document.getElementById('layer-EX').hidden") is True
        links = [a.get_attribute("download") for a in browser.find_elements(By.CSS_SELECTOR, "#downloads a")]
        assert links == [f"small_{lesion}_{kind}.png" for lesion in ALL_LESIONS for kind in ("mask", "prob")]
