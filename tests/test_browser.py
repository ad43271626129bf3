"""The real-browser harness (tests/browser.py) on small pages written here.

The integration tests start the system chromium (skipped without one, failed without one in CI)."""

from __future__ import annotations

import struct

import pytest

from browser import chromium_path, require_browser, visit

CDN = "https://cdn.plot.ly/plotly-2.0.0.min.js"
IMAGE = "http://example.com/x.png"


def png_size(path) -> tuple[int, int]:
    data = path.read_bytes()[:24]
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR", "not a PNG"
    return struct.unpack(">II", data[16:24])


@pytest.fixture
def browser():
    return require_browser()


# -- without a browser -------------------------------------------------------------------------

def test_chromium_path_prefers_the_setting(tmp_path, monkeypatch):
    exe = tmp_path / "my-chromium"
    exe.write_text("#!/bin/sh\n")
    exe.chmod(0o755)
    monkeypatch.setenv("SWEEPLAB_CHROMIUM", str(exe))
    assert chromium_path() == str(exe)
    monkeypatch.setenv("SWEEPLAB_CHROMIUM", str(tmp_path / "absent"))
    assert chromium_path() is None
    with pytest.raises(pytest.fail.Exception, match="SWEEPLAB_CHROMIUM"):
        require_browser()


def test_a_missing_browser_skips_but_fails_in_ci(tmp_path, monkeypatch):
    monkeypatch.delenv("SWEEPLAB_CHROMIUM", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))  # no chromium on it
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="no chromium"):
        require_browser()
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI"):
        require_browser()


# -- in chromium -------------------------------------------------------------------------------

@pytest.mark.integration
def test_an_inline_plotly_figure_renders_offline(tmp_path, browser):
    import plotly.graph_objects as go

    page = tmp_path / "figure.html"
    fig = go.Figure(go.Scatter(x=[1, 2, 3], y=[3, 1, 2], name="loss"), layout={"title": {"text": "a figure"}})
    fig.write_html(page, include_plotlyjs=True, full_html=True)
    shot = tmp_path / "figure.png"

    seen = visit(page, screenshot=shot, width=1400, wait_selector=".plotly-graph-div",
                 evaluate="document.querySelectorAll('.js-plotly-plot .scatterlayer .trace').length")

    assert seen.console_errors == [] and seen.page_errors == []
    assert seen.outside_requests == []
    assert seen.requests[0] == page.resolve().as_uri()
    assert seen.plot_divs == 1 and seen.svg_count == 1 and seen.plots_settled
    assert seen.evaluated == 1
    assert seen.screenshot == shot and shot.exists()
    width, height = png_size(shot)
    assert width == 1400 and height >= 400


@pytest.mark.integration
def test_outside_requests_are_blocked_and_reported(tmp_path, browser):
    (tmp_path / "sibling.js").write_text("window.sibling = true;")
    page = tmp_path / "cdn.html"
    page.write_text(
        f'<!doctype html><html><head><script src="{CDN}"></script><script src="sibling.js"></script></head>'
        f'<body><div id="plot" class="plotly-graph-div"></div><img src="{IMAGE}">'
        '<img src="data:image/gif;base64,R0lGODlhAQABAAAAACw=">'
        '<script>Plotly.newPlot("plot", [{y: [1, 2]}]);</script></body></html>'
    )

    seen = visit(page, evaluate="[typeof window.Plotly, window.sibling === true]")

    assert CDN in seen.outside_requests and IMAGE in seen.outside_requests
    assert (tmp_path / "sibling.js").as_uri() in seen.outside_requests  # only the page's own file
    assert not any(u.startswith("data:") for u in seen.outside_requests)
    assert seen.evaluated == ["undefined", False]  # neither script ran: both were blocked
    assert any(CDN in e for e in seen.console_errors)
    assert any("Plotly is not defined" in e for e in seen.page_errors)
    assert seen.plot_divs == 1 and seen.svg_count == 0 and not seen.plots_settled


@pytest.mark.integration
def test_an_inline_exception_is_a_page_error(tmp_path, browser):
    page = tmp_path / "throws.html"
    page.write_text('<!doctype html><html><body><p>hi</p><script>throw new TypeError("boom");</script>'
                    "<script>new WebSocket('wss://example.com/live');</script></body></html>")

    seen = visit(page)

    assert seen.page_errors == ["TypeError: boom"]
    assert seen.outside_requests == ["wss://example.com/live"]
    assert seen.plot_divs == 0 and seen.svg_count == 0 and seen.plots_settled
