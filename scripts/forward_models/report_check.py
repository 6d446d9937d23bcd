"""Open a Snakemake HTML report in headless Chromium: it must render and every figure must load."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

# Snakemake embeds results as data URIs with parameters: data:image/png;charset=utf8;filename=x.png;base64,...
IMAGE = re.compile(r"data:image/(?:png|gif|jpeg)(?:;[a-z]+=[^;,\"]*)*;base64,[A-Za-z0-9+/=]+")
# Chromium in a closed network: no background traffic, no sandbox (root in containers).
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]


def find_chromium() -> str | None:
    return next(
        (p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None
    )


def check_report(
    report: str | Path, screenshot: str | Path | None = None, browser: str | None = None
) -> dict:
    """Load ``report``; return counts. Raises AssertionError if the app or any image fails."""
    from playwright.sync_api import sync_playwright

    report = Path(report).resolve()
    html = report.read_text()
    uris = sorted(set(IMAGE.findall(html)))
    browser = browser or find_chromium()
    if browser is None:
        raise RuntimeError("no Chromium found (Debian: apt-get install chromium)")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=browser, args=FLAGS)
        page = b.new_page(viewport={"width": 1400, "height": 900})
        errors = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(report.as_uri())
        page.wait_for_function(
            "document.querySelector('#app') && document.querySelector('#app').children.length > 0",
            timeout=60_000,
        )
        text = page.inner_text("body")
        if screenshot:
            page.screenshot(path=str(screenshot), full_page=True)
        widths = page.evaluate(
            """async (uris) => Promise.all(uris.map(u => new Promise(done => {
                   const img = new Image();
                   img.onload = () => done(img.naturalWidth);
                   img.onerror = () => done(0);
                   img.src = u;
               })))""",
            uris,
        )
        b.close()
    broken = [i for i, w in enumerate(widths) if not w]
    assert not errors, f"{report}: JavaScript errors: {errors}"
    assert uris, f"{report}: no embedded images"
    assert not broken, (
        f"{report}: {len(broken)} of {len(uris)} embedded images do not load in Chromium"
    )
    return {"images": len(uris), "text": text}
