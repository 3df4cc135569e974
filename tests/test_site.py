"""The site in a real browser: built from the committed outputs (no notebook runs), served over HTTP,
and loaded page by page in headless Chromium, which must find every internal link's target, every
image decoded, every formula typeset by the site's own MathJax, and nothing fetched from elsewhere."""

from __future__ import annotations

import functools
import importlib.util
import http.server
import re
import shutil
import subprocess
import sys
import threading
import time
import urllib.parse
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM, DRIVER = shutil.which("chromium"), shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(not (CHROMIUM and DRIVER), reason="needs Debian's chromium and chromium-driver (make setup)")


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("site") / "html"
    result = subprocess.run([sys.executable, str(ROOT / "site" / "build.py"), "--out", str(out)], capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    return out


@pytest.fixture(scope="module")
def server(site):
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(site))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    httpd.shutdown()


@pytest.fixture(scope="module")
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1280,1600"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    yield driver
    driver.quit()


def pages(site: Path) -> list[str]:
    """Every page of the site (not the theme's template fragments under _static)."""
    return sorted(str(p.relative_to(site)) for p in site.rglob("*.html")
                  if p.name not in {"genindex.html", "search.html"} and "_static" not in p.relative_to(site).parts)


def test_the_site_has_a_landing_page_every_chapter_the_figures_and_the_pdf(site):
    rendered = sorted(p.stem for p in (ROOT / "notebooks" / "rendered").glob("*.ipynb"))
    assert {"index.html", "figures.html", "provenance.html"} <= set(pages(site))
    assert "gap tables" in (site / "provenance.html").read_text(), "the provenance page shows the appendix's table"
    assert {f"chapters/{stem}.html" for stem in rendered} <= set(pages(site))
    landing = (site / "index.html").read_text()
    assert all(f"chapters/{stem}.html" in landing for stem in rendered), "the landing page must link every chapter"
    assert re.search(r'href="[^"]*amortgap\.pdf"', landing), "the landing page must link the PDF"
    spec = importlib.util.spec_from_file_location("site_build", ROOT / "site" / "build.py")
    build = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(build)
    amortization_gap = build.macros(ROOT / "paper" / "generated")["TabFfgTestAmort"]
    assert re.search(rf"amortization gap [a-z ]*{re.escape(amortization_gap)} nats", landing), (
        "the abstract's numbers must be filled in")


def wait_for_mathjax(browser, timeout: float = 30) -> None:
    """Until MathJax 2 has typeset the page (its queue empty), or ``timeout`` seconds."""
    done = "return !!(window.MathJax && MathJax.Hub && MathJax.isReady && MathJax.Hub.queue.pending === 0 && !MathJax.Hub.queue.running);"
    deadline = time.monotonic() + timeout
    while not browser.execute_script(done):
        assert time.monotonic() < deadline, f"MathJax did not finish on {browser.current_url}"
        time.sleep(0.2)


def test_every_page_loads_with_math_typeset_images_decoded_and_nothing_from_elsewhere(site, server, browser):
    checked_math = 0
    for page in pages(site):
        browser.get(server + page)
        assert "404" not in browser.title, page
        has_math = browser.execute_script("return document.querySelectorAll('.math').length") > 0
        if has_math:
            wait_for_mathjax(browser)
            typeset = browser.execute_script("return document.querySelectorAll('.MathJax_CHTML').length")
            raw = browser.execute_script("return document.querySelector('article').innerText")
            assert typeset > 0, f"{page}: no formula typeset"
            assert "\\(" not in raw and "\\[" not in raw, f"{page}: a formula left as raw TeX"
            checked_math += 1
        broken = browser.execute_script(
            "return [...document.images].filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.src)")
        assert not broken, f"{page}: images not shown: {broken}"
        foreign = browser.execute_script(
            "return performance.getEntriesByType('resource').map(e => e.name).filter(u => !u.startsWith(location.origin))")
        assert not foreign, f"{page}: fetched from outside the site: {foreign}"
    assert checked_math >= 3, "the chapters' formulas were not found"


def test_no_internal_link_is_broken(site):
    """Every relative href of every page names a file of the site, and its #fragment an id there."""
    ids: dict[Path, set[str]] = {}

    def ids_of(path: Path) -> set[str]:
        if path not in ids:
            ids[path] = set(re.findall(r'\sid="([^"]+)"', path.read_text(errors="replace")))
        return ids[path]

    broken = []
    for page in pages(site):
        for href in re.findall(r'\shref="([^"]+)"', (site / page).read_text()):
            parts = urllib.parse.urlsplit(href)
            if parts.scheme or parts.netloc or href.startswith("mailto:"):
                continue
            target = (site / page).parent / urllib.parse.unquote(parts.path) if parts.path else site / page
            target = target / "index.html" if target.is_dir() else target
            if not target.resolve().is_file():
                broken.append(f"{page} -> {href}")
            elif parts.fragment and target.suffix == ".html" and parts.fragment not in ids_of(target.resolve()):
                broken.append(f"{page} -> {href} (no such anchor)")
    assert not broken, "\n".join(broken)


def test_the_link_check_can_fail(site, tmp_path):
    """A page with a link to a missing file and one to a missing anchor is caught."""
    copy = tmp_path / "site"
    shutil.copytree(site, copy)
    page = copy / "figures.html"
    page.write_text(page.read_text().replace("</body>", '<a href="chapters/missing.html">x</a><a href="index.html#nowhere">y</a></body>'))
    with pytest.raises(AssertionError, match="missing.html") as caught:
        test_no_internal_link_is_broken(copy)
    assert "nowhere" in str(caught.value)


def test_a_screenshot_of_the_landing_page(server, browser):
    """Writes build/site-landing.png (for the notes) and checks the headline figure is on screen."""
    browser.get(server + "index.html")
    if browser.execute_script("return document.querySelectorAll('.math').length") > 0:
        wait_for_mathjax(browser)
    shown = browser.execute_script("return [...document.images].filter(i => i.naturalWidth > 0 && i.getBoundingClientRect().top < 1600).length")
    assert shown >= 1, "the headline figure is not on the first screen"
    (ROOT / "build").mkdir(exist_ok=True)
    assert browser.save_screenshot(str(ROOT / "build" / "site-landing.png"))
