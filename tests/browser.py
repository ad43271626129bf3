"""A real-browser check of a self-contained HTML page (the generated report), for tests.

``visit(path)`` opens ``path`` in the system's chromium, driven by Playwright's sync API, with the
network shut: every request is routed, and only the page's own ``file://`` URL and ``data:`` /
``blob:`` / ``about:`` URLs go through; anything else (http(s), ws(s), other files) is aborted and
recorded in ``PageVisit.outside_requests``. It waits for the load, for network idle and for plotly
to finish drawing, then returns what the page did: console errors, uncaught exceptions, the URLs
it asked for, how many plotly figures rendered, and optionally a full-page screenshot and the value
of a JS expression.

No Playwright browser download is used (never ``playwright install``): the browser is the system
chromium (Debian's ``chromium`` package, which ``.ci/run`` installs), or ``$SWEEPLAB_CHROMIUM``.

Tests call ``require_browser()`` first: without a browser or without playwright it skips the test,
except where ``$CI`` is set (CI installs both): there it fails, so that CI never passes by skipping.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urldefrag

# Flags for a quiet, offline, headless chromium. Playwright adds its own defaults too (among them
# --disable-background-networking, --disable-component-update, --no-first-run, --headless).
CHROMIUM_ARGS = [
    "--no-sandbox",  # needed as root (CI); playwright passes it anyway unless chromium_sandbox=True
    "--disable-gpu",
    "--disable-dev-shm-usage",  # shared memory in /tmp: a small /dev/shm (containers) crashes tabs
    "--host-resolver-rules=MAP * ~NOTFOUND",  # even a request the route misses cannot resolve a host
    "--no-proxy-server",
    "--disable-breakpad",
    "--disable-crash-reporter",
    "--disable-domain-reliability",
    "--disable-sync",
    "--mute-audio",
]

INLINE_SCHEMES = ("data", "blob", "about")

# Plotly's write_html puts each figure in a div.plotly-graph-div; plotly.js adds .js-plotly-plot
# to it and draws its svg.main-svg layers into it. Done when every such div has drawn, or when
# plotly.js is not on the page after the load (it never loaded: nothing will draw).
_PLOTS_DONE_JS = """() => {
    const divs = document.querySelectorAll('div.plotly-graph-div, div.js-plotly-plot');
    const drawn = Array.from(divs).filter(d => d.querySelector('svg.main-svg')).length;
    return {total: divs.length, drawn: drawn, plotly: typeof window.Plotly !== 'undefined'};
}"""

_COUNT_JS = """(selector) => Array.from(document.querySelectorAll(selector))
    .filter(e => e.matches('svg.main-svg') || e.querySelector('svg.main-svg')).length"""


@dataclass
class PageVisit:
    url: str  # the page's own file:// URL
    console_errors: list[str] = field(default_factory=list)  # console messages of type "error"
    page_errors: list[str] = field(default_factory=list)  # uncaught exceptions, "Name: message"
    requests: list[str] = field(default_factory=list)  # every URL asked for (the page's own too)
    outside_requests: list[str] = field(default_factory=list)  # the ones that were blocked
    plot_divs: int = 0  # plotly figure divs on the page (drawn or not)
    svg_count: int = 0  # figures that rendered: elements of figure_selector with an svg.main-svg
    plots_settled: bool = True  # every plotly figure div drew (False: the wait gave up)
    screenshot: Path | None = None
    evaluated: Any = None  # the value of the evaluate expression, when one was given


def chromium_path() -> str | None:
    """$SWEEPLAB_CHROMIUM (a path or a command name), else ``chromium`` or ``chromium-browser``
    on PATH; None when there is none (or $SWEEPLAB_CHROMIUM is not an executable)."""
    configured = os.environ.get("SWEEPLAB_CHROMIUM")
    if configured:
        return shutil.which(configured)
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    return None


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def require_browser() -> str:
    """Skip the calling test when there is no chromium or no playwright; return chromium's path.

    Where $CI is set (CI sets CI=true, and .ci/run installs chromium, ``make test`` playwright) a
    missing browser fails the test instead. A $SWEEPLAB_CHROMIUM that is not an executable fails
    it everywhere: it is a wrong setting, not a missing browser.
    """
    import pytest

    configured = os.environ.get("SWEEPLAB_CHROMIUM")
    path = chromium_path()
    if configured and path is None:
        pytest.fail(f"SWEEPLAB_CHROMIUM={configured!r} is not an executable chromium")
    missing = []
    if path is None:
        missing.append("no chromium on PATH (apt-get install chromium, or set SWEEPLAB_CHROMIUM)")
    if importlib.util.find_spec("playwright") is None:
        missing.append("the playwright package is not installed (pip install -e '.[dev]')")
    if missing:
        reason = "browser test: " + "; ".join(missing)
        if _in_ci():
            pytest.fail(f"{reason}; CI is set, and CI installs the browser (.ci/run), so this fails")
        pytest.skip(reason)
    return path


def _same_file(url: str, own: str) -> bool:
    strip = lambda u: unquote(urldefrag(u)[0].split("?", 1)[0])  # noqa: E731
    return url.lower().startswith("file:") and strip(url) == strip(own)


def _allowed(url: str, own: str) -> bool:
    return url.split(":", 1)[0].lower() in INLINE_SCHEMES or _same_file(url, own)


def visit(
    path: Path,
    screenshot: Path | None = None,
    width: int = 1400,
    evaluate: str | None = None,
    wait_selector: str | None = None,
    timeout_ms: int = 60_000,
    figure_selector: str = "div.js-plotly-plot",
    plot_timeout_ms: int = 20_000,
    height: int = 900,
) -> PageVisit:
    """Open ``path`` offline in headless chromium and report what it did (see PageVisit).

    Order: load, network idle, ``wait_selector`` (raises when it never appears), plotly drawn (at
    most ``plot_timeout_ms``; given up early, 1 s after a page error with no figure drawing since),
    the full-page ``screenshot`` (PNG, ``width`` CSS pixels wide at scale 1), then ``evaluate``
    (a JS expression or function; its error raises). ``svg_count`` counts the elements matching
    ``figure_selector`` that are or contain an ``svg.main-svg``: one per figure with the default.
    """
    from playwright.sync_api import sync_playwright

    executable = chromium_path()
    if executable is None:
        raise RuntimeError("no chromium found: install Debian's chromium or set SWEEPLAB_CHROMIUM")
    own = Path(path).resolve().as_uri()
    result = PageVisit(url=own)
    seen: set[str] = set()

    def record(url: str) -> None:
        if url in seen:
            return
        seen.add(url)
        result.requests.append(url)
        if not _allowed(url, own):
            result.outside_requests.append(url)

    def route(r) -> None:
        url = r.request.url
        record(url)
        if _allowed(url, own):
            r.continue_()
        else:
            r.abort("blockedbyclient")

    def web_socket(ws) -> None:  # never connected to a server: the socket is closed at once
        record(ws.url)
        ws.close()

    def console(msg) -> None:
        if msg.type == "error":
            where = (msg.location or {}).get("url", "")
            result.console_errors.append(f"{msg.text} ({where})" if where and where not in msg.text else msg.text)

    with sync_playwright() as p:
        browser = context = None
        try:
            browser = p.chromium.launch(executable_path=executable, headless=True, args=CHROMIUM_ARGS)
            context = browser.new_context(
                viewport={"width": width, "height": height}, device_scale_factor=1, service_workers="block"
            )
            context.set_default_timeout(timeout_ms)
            context.route("**/*", route)
            context.route_web_socket("**/*", web_socket)
            page = context.new_page()
            page.on("request", lambda req: record(req.url))
            page.on("websocket", lambda ws: record(ws.url))
            page.on("console", console)
            page.on("pageerror", lambda err: result.page_errors.append(f"{err.name}: {err.message}"))
            page.on("crash", lambda _: result.page_errors.append("the page crashed"))

            page.goto(own, wait_until="load", timeout=timeout_ms)
            page.wait_for_load_state("networkidle", timeout=timeout_ms)
            if wait_selector:
                page.wait_for_selector(wait_selector, state="attached", timeout=timeout_ms)

            deadline = time.monotonic() + plot_timeout_ms / 1000
            last_drawn, last_progress = -1, time.monotonic()
            while True:
                state = page.evaluate(_PLOTS_DONE_JS)
                result.plot_divs = state["total"]
                if state["drawn"] == state["total"] or not state["plotly"]:
                    break
                now = time.monotonic()
                if state["drawn"] != last_drawn:
                    last_drawn, last_progress = state["drawn"], now
                if now > deadline or (result.page_errors and now - last_progress > 1.0):
                    result.plots_settled = False
                    break
                page.wait_for_timeout(100)
            if result.plot_divs and state["drawn"] < state["total"]:
                result.plots_settled = False
            result.svg_count = page.evaluate(_COUNT_JS, figure_selector)

            if screenshot is not None:
                page.screenshot(path=str(screenshot), full_page=True, type="png", timeout=timeout_ms)
                result.screenshot = Path(screenshot)
            if evaluate is not None:
                result.evaluated = page.evaluate(evaluate)
        finally:
            if context is not None:
                context.close()
            if browser is not None:
                browser.close()
    return result
