"""The dashboard in a real headless Chromium against a live server (SQLite and PostgreSQL).

Skipped when Chromium or chromedriver is missing, except in CI (``CI`` set),
where that is a failure: ``.ci/run`` installs them.
"""

from __future__ import annotations

import os
import shutil

import pytest

from hub.ui import charts
from tests.ui.conftest import PASSWORD
from tests.ui.png import colour_counts
from tests.ui.png import has_colour

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")


@pytest.fixture
def browser(tmp_path):
    missing = [n for n, p in (("chromium", CHROMIUM), ("chromedriver", DRIVER)) if not p]
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        missing.append("selenium")
    if missing:
        if os.environ.get("CI"):
            pytest.fail(f"CI needs {', '.join(missing)} for the browser tests")
        pytest.skip(f"{', '.join(missing)} not installed")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--window-size=1280,900",
        "--lang=zh-CN",
        f"--user-data-dir={tmp_path / 'profile'}",
    ):
        options.add_argument(arg)
    options.add_experimental_option("prefs", {"intl.accept_languages": "zh-CN,zh"})
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


def log_in(driver, base: str, username: str = "admin") -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(base + "/ui/?jurisdiction=370203&period=2025")
    assert "/ui/login" in driver.current_url
    driver.find_element(By.ID, "username").send_keys(username)
    driver.find_element(By.ID, "password").send_keys(PASSWORD)
    driver.find_element(By.ID, "login").click()
    WebDriverWait(driver, 30).until(lambda d: "/ui/login" not in d.current_url)


def test_overview_renders_charts_in_chromium(browser, audited_hub, live_server):
    from selenium.webdriver.common.by import By

    log_in(browser, live_server.url)
    assert browser.current_url.endswith("/ui/?jurisdiction=370203&period=2025")
    assert browser.find_element(By.ID, "kpi-people").text == "5"
    assert "各项规则完成率" in browser.page_source  # Chinese from the browser's language
    # Each chart is drawn: element screenshots carry the chart's own colours.
    bars = browser.find_element(By.CSS_SELECTOR, "#chart-completeness svg").screenshot_as_png
    assert has_colour(colour_counts(bars), charts.BAR)
    ring = browser.find_element(By.CSS_SELECTOR, "#chart-colours svg").screenshot_as_png
    counts = colour_counts(ring)
    # Ring segments are large; legend swatches (every colour) are 256 pixels.
    assert has_colour(counts, charts.COLOURS["orange"], minimum=1000)  # A, B: hypertension
    assert has_colour(counts, charts.COLOURS["none"], minimum=1000)
    assert not has_colour(counts, charts.COLOURS["red"], minimum=1000)  # nobody is red
    overdue = browser.find_element(By.CSS_SELECTOR, "#chart-overdue svg").screenshot_as_png
    assert has_colour(colour_counts(overdue), charts.OVERDUE)
    page = colour_counts(browser.get_screenshot_as_png())
    assert len(page) > 20, "the page screenshot is blank"


def test_drill_down_from_chart_to_list_to_person(browser, audited_hub, live_server):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    log_in(browser, live_server.url)
    browser.get(live_server.url + "/ui/?jurisdiction=370203&period=2025&lang=en")
    # The hypertension bar links to the people with hypertension gaps.
    link = browser.find_element(By.CSS_SELECTOR, '#chart-completeness a[href*="rule=hypertension"]')
    browser.get(live_server.url + link.get_dom_attribute("href"))
    rows = browser.find_elements(By.CSS_SELECTOR, "#people tr[data-patient]")
    assert [r.get_attribute("data-patient") for r in rows] == ["pb"]
    rows[0].find_element(By.TAG_NAME, "a").click()
    WebDriverWait(browser, 30).until(lambda d: "/ui/person/" in d.current_url)
    assert "/ui/person/pb" in browser.current_url
    assert browser.find_element(By.ID, "resident-id").text == "370203********1012"
    dates = [
        r.find_element(By.TAG_NAME, "td").text
        for r in browser.find_elements(By.CSS_SELECTOR, "#timeline tr[data-ref]")
    ]
    assert dates == sorted(dates, reverse=True) and "2025-06-01" in dates


# Draws each character with the element's computed font on a canvas and returns its
# alpha channel: a missing glyph is the same empty box (tofu) for every character.
GLYPHS_JS = """
const family = getComputedStyle(document.querySelector(arguments[0])).fontFamily;
return Array.from(arguments[1]).map(ch => {
  const c = document.createElement('canvas');
  c.width = c.height = 48;
  const x = c.getContext('2d');
  x.font = '40px ' + family;
  x.textBaseline = 'top';
  x.fillText(ch, 4, 4);
  const d = x.getImageData(0, 0, 48, 48).data;
  return Array.from(d.filter((_, i) => i % 4 === 3)).join(',');
});
"""


def test_chinese_labels_render_as_glyphs_not_boxes(browser, audited_hub, live_server):
    """Every character of a Chinese indicator label has its own glyph (fonts-noto-cjk)."""
    from selenium.webdriver.common.by import By

    log_in(browser, live_server.url)
    label = browser.find_element(
        By.CSS_SELECTOR, '#indicators tr[data-indicator="hypertension-standard-management-rate"] td'
    ).text.splitlines()[0]
    assert label == "高血压患者规范管理率"  # Chinese by default
    glyphs = browser.execute_script(GLYPHS_JS, "#indicators td", label)
    assert all(any(v != "0" for v in g.split(",")) for g in glyphs), "a character drew nothing"
    assert len(set(glyphs)) == len(set(label)), "characters render as identical boxes (no CJK font)"
    # The charts' SVG text uses the same stack.
    family = browser.execute_script(
        "return getComputedStyle(document.querySelector('#chart-completeness svg text')).fontFamily"
    )
    assert "Noto Sans CJK SC" in family
