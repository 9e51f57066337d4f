"""A real browser on the running app: `streamlit run app.py --server.headless true` on a free
port, driven by Playwright on Debian's chromium. Visits every page, moves a cut-off slider and
a slice slider, checks that no exception box or traceback appears and that the numbers change,
and saves a screenshot per page of this example store (GUAD_EXAMPLE_SCREENSHOTS=DIR to keep
them; the README's screenshots are of the demo, taken by tests/test_demo.py)."""

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from guad import dashboard

pytestmark = pytest.mark.browser
ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--headless", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
IDLE = "[data-testid='stApp'][data-test-script-state='notRunning']"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    if not Path(CHROMIUM).exists():
        pytest.skip("no /usr/bin/chromium (apt-get install -y chromium)")
    pytest.importorskip("playwright")
    folder = tmp_path_factory.mktemp("browser")
    db = folder / "guad.duckdb"
    dashboard.example_store(db, 600, seed=3)
    port = free_port()
    env = {**os.environ, "GUAD_DB": str(db), "GUAD_DATA_ROOT": str(folder)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true",
         "--server.port", str(port), "--server.address", "127.0.0.1",
         "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url + "/_stcore/health", timeout=2)
            break
        except OSError:
            if proc.poll() is not None:
                raise RuntimeError(proc.stdout.read().decode())
            time.sleep(0.3)
    else:
        proc.kill()
        raise RuntimeError("streamlit did not start within 60 s")
    maps_scan = sorted(p.name for p in (folder / "maps").iterdir())[0]
    yield url, maps_scan
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()


@pytest.fixture(scope="module")
def page(server):
    from playwright.sync_api import sync_playwright
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        pg = browser.new_page(viewport={"width": 1500, "height": 1900})
        yield pg
        browser.close()


@pytest.fixture(scope="module")
def shots():
    folder = Path(os.environ.get("GUAD_EXAMPLE_SCREENSHOTS") or
                  Path(os.environ.get("TMPDIR", "/tmp")) / "guad-screenshots")
    if not folder.is_absolute():
        folder = ROOT / folder
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def settle(page, timeout=30_000):
    page.wait_for_timeout(400)  # let a rerun start before waiting for it to end
    page.wait_for_selector(IDLE, timeout=timeout)
    page.wait_for_timeout(200)


def assert_clean(page):
    assert page.locator("[data-testid='stException']").count() == 0
    text = page.inner_text("body")
    assert "Traceback" not in text and "Error:" not in text.replace("st.error", "")
    assert "Page not found" not in text  # every link the app shares must resolve


def click_track(page, slider, frac):
    """Click a Streamlit slider's track at a fraction of its width (as a user drags it)."""
    box = slider.locator("[role='group'] > div").first.bounding_box()
    page.mouse.click(box["x"] + frac * box["width"], box["y"] + box["height"] / 2)
    settle(page)


def metrics_text(page) -> list[str]:
    return page.locator("[data-testid='stMetricValue']").all_inner_texts()


def test_every_page_in_a_real_browser(server, page, shots):
    url, maps_scan = server
    page.goto(url + "/")  # the default page lives at the root
    settle(page)
    page.wait_for_selector("[data-testid='stMetricValue']")
    assert_clean(page)
    before = metrics_text(page)
    slider = page.locator("[data-testid='stSidebar'] [data-testid='stSlider']").first
    for frac in (0.97, 0.02):  # one of the two ends must change something
        click_track(page, slider, frac)
        if metrics_text(page) != before:
            break
    after = metrics_text(page)
    assert after != before, (before, after)
    assert "rule=manual" in page.url and "c_cmm=" in page.url
    assert_clean(page)
    page.screenshot(path=str(shots / "1_operating_point.png"), full_page=True)

    page.goto(url + "/score-explorer")
    settle(page)
    page.wait_for_selector("[data-testid='stPlotlyChart']")
    assert_clean(page)
    page.screenshot(path=str(shots / "2_score_explorer.png"), full_page=True)

    page.goto(url + f"/case-viewer?scan={maps_scan}")
    settle(page)
    page.wait_for_selector("[data-testid='stImage']")
    assert_clean(page)
    captions = page.locator("[data-testid='stImageCaption']").all_inner_texts()
    assert len(captions) == 5
    page.screenshot(path=str(shots / "3_case_viewer.png"), full_page=True)  # largest anomaly
    sl = page.locator("[data-testid='stMain'] [data-testid='stSlider']", has_text="Slice")
    click_track(page, sl, 0.0)
    moved = page.locator("[data-testid='stImageCaption']").all_inner_texts()
    assert moved != captions and "axial 1/" in moved[0], moved
    assert "slice=0" in page.url
    assert_clean(page)

    page.goto(url + "/missed-criticals?rule=manual&c_cmm=0.3&c_fgm=0.3")
    settle(page)
    assert "critical scans would be excluded" in page.inner_text("body")
    assert_clean(page)
    page.screenshot(path=str(shots / "4_missed_criticals.png"), full_page=True)

    page.goto(url + "/score-a-scan")
    settle(page)
    assert "Score a scan" in page.inner_text("body")
    assert_clean(page)
    page.screenshot(path=str(shots / "5_score_a_scan.png"), full_page=True)
