"""The report pages and the mock's /docs, rendered in a real browser (headless Chromium over the
DevTools protocol): no broken image or link, no console error, the findings above the fold, the
page no wider than 1280 px, and Swagger UI loaded with no network beyond the mock.

Needs Debian's `chromium` (`.ci/run` installs it when missing); skipped, loudly, where it is not
installed. No downloaded browser builds.
"""

from __future__ import annotations

import asyncio
import base64
import json
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, AsyncIterator
from urllib.parse import urlparse

import aiohttp
import pytest

from harness.report import build_report
from harness.report.trend import build_trend
from mock_orders_api.config import MockConfig
from mock_orders_api.server import MockProcess

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
WIDTH, HEIGHT = 1280, 800
# Root (CI) needs --no-sandbox; the rest keep a headless run from phoning home or using a GPU.
_FLAGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
          "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-default-apps",
          "--hide-scrollbars", "--remote-debugging-port=0", f"--window-size={WIDTH},{HEIGHT}"]

pytestmark = pytest.mark.skipif(
    CHROMIUM is None,
    reason="BROWSER TESTS SKIPPED: no `chromium` on PATH (Debian: apt-get install -y chromium; .ci/run does this)",
)

_PAGE_STATE = """(() => {
  const imgs = [...document.images].map(i => ({src: i.src.slice(0, 60), ok: i.complete && i.naturalWidth > 0}));
  const links = [...document.querySelectorAll('a[href]')].map(a => a.getAttribute('href'));
  const f = document.getElementById('findings');
  const r = f ? f.getBoundingClientRect() : null;
  return JSON.stringify({imgs, links, width: document.documentElement.scrollWidth,
    findings: r ? {top: r.top, bottom: r.bottom, text: f.innerText} : null,
    ids: [...document.querySelectorAll('[id]')].map(e => e.id)});
})()"""


@dataclass
class Page:
    """What one page load showed: console errors, failed requests, and the state `_PAGE_STATE` reads."""

    errors: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    state: dict[str, Any] = field(default_factory=dict)
    settled: bool = False
    screenshot: bytes = b""


class _Cdp:
    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self._ws, self._id, self.events = ws, 0, []  # type: ignore[var-annotated]

    async def call(self, method: str, **params: Any) -> dict[str, Any]:
        self._id += 1
        await self._ws.send_json({"id": self._id, "method": method, "params": params})
        while True:
            msg = await self._ws.receive_json(timeout=30)
            if msg.get("id") == self._id:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})
            self.events.append(msg)

    async def wait_for(self, method: str, timeout: float = 30.0) -> None:
        if any(e.get("method") == method for e in self.events):
            return
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            msg = await self._ws.receive_json(timeout=deadline - time.monotonic())
            self.events.append(msg)
            if msg.get("method") == method:
                return
        raise TimeoutError(method)


@pytest.fixture(scope="module")
def chromium() -> Any:
    """A headless Chromium with a fresh profile; yields its DevTools HTTP endpoint."""
    profile = tempfile.mkdtemp(prefix="race-harness-chromium-")
    proc = subprocess.Popen([CHROMIUM, *_FLAGS, f"--user-data-dir={profile}", "about:blank"],  # type: ignore[list-item]
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        port_file = Path(profile) / "DevToolsActivePort"
        deadline = time.monotonic() + 30
        while not (port_file.exists() and port_file.read_text().strip()):
            if time.monotonic() > deadline or proc.poll() is not None:
                pytest.fail(f"chromium did not start (exit {proc.poll()})")
            time.sleep(0.1)
        yield f"http://127.0.0.1:{port_file.read_text().split()[0]}"
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        shutil.rmtree(profile, ignore_errors=True)


async def _open(endpoint: str) -> AsyncIterator[tuple[aiohttp.ClientSession, str]]:
    async with aiohttp.ClientSession() as http:
        async with http.put(f"{endpoint}/json/new?about:blank") as r:
            target = await r.json()
        try:
            yield http, target["webSocketDebuggerUrl"]
        finally:
            async with http.get(f"{endpoint}/json/close/{target['id']}"):
                pass


async def load(endpoint: str, url: str, *, settle_js: str | None = None, scroll_to: str | None = None) -> Page:
    """Load `url` at 1280x800 and report what the browser saw; `settle_js`: an expression to wait for
    (true) after the load event; `scroll_to`: a CSS selector to scroll into view before the screenshot."""
    page = Page()
    async for http, ws_url in _open(endpoint):
        async with http.ws_connect(ws_url, max_msg_size=0) as ws:
            cdp = _Cdp(ws)
            for domain in ("Page", "Runtime", "Log", "Network"):
                await cdp.call(f"{domain}.enable")
            await cdp.call("Emulation.setDeviceMetricsOverride", width=WIDTH, height=HEIGHT, deviceScaleFactor=1,
                           mobile=False)
            await cdp.call("Page.navigate", url=url)
            await cdp.wait_for("Page.loadEventFired")
            if settle_js:
                for _ in range(100):
                    result = await cdp.call("Runtime.evaluate", expression=settle_js, returnByValue=True)
                    page.settled = bool(result["result"].get("value"))
                    if page.settled:
                        break
                    await asyncio.sleep(0.1)
            page.state = json.loads((await cdp.call("Runtime.evaluate", expression=_PAGE_STATE,
                                                    returnByValue=True))["result"]["value"])
            if scroll_to:
                await cdp.call("Runtime.evaluate", expression=f"document.querySelector({json.dumps(scroll_to)})"
                                                              ".scrollIntoView({block: 'start'})")
            page.screenshot = base64.b64decode((await cdp.call("Page.captureScreenshot", format="png"))["data"])
            for e in cdp.events:
                m, p = e.get("method"), e.get("params", {})
                if m == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
                    page.errors.append(json.dumps(p.get("args"))[:300])
                elif m == "Runtime.exceptionThrown":
                    page.errors.append(json.dumps(p.get("exceptionDetails"))[:300])
                elif m == "Log.entryAdded" and p["entry"].get("level") == "error":
                    page.errors.append(p["entry"].get("text", "")[:300])
                elif m == "Network.loadingFailed":
                    page.failed.append(f"{p.get('errorText')} {p.get('requestId')}")
                elif m == "Network.requestWillBeSent":
                    page.requests.append(p["request"]["url"])
    return page


def assert_sound(page: Page, folder: Path) -> None:
    """No console error, no failed load, every image decoded, every link resolving, width <= 1280,
    the findings box entirely inside the first 800 px."""
    assert page.errors == [] and page.failed == []
    assert page.state["imgs"] and all(i["ok"] for i in page.state["imgs"]), page.state["imgs"]
    for href in page.state["links"]:
        if href.startswith("#"):
            assert href[1:] in page.state["ids"], href
        else:
            assert urlparse(href).scheme == "" and (folder / href).exists(), f"broken link {href}"
    assert page.state["width"] <= WIDTH
    f = page.state["findings"]
    assert f is not None and 0 <= f["top"] and f["bottom"] <= HEIGHT, f
    assert f["text"].strip()


@pytest.fixture(scope="module")
def run_dirs(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Two simulated runs of the ticket scenario (a few seconds each), reported."""
    from harness.builtin_scenarios import DEFAULT_SCENARIO
    from harness.core.scenario import load_scenario
    from harness.sim.run import run_simulated

    out = tmp_path_factory.mktemp("runs")
    dirs = []
    for seed in (1, 2):
        scenario = load_scenario(DEFAULT_SCENARIO).with_overrides(trials_per_offset=2, seed=seed)
        run_dir, _ = run_simulated(scenario, out, workers=1)
        build_report(run_dir)
        dirs.append(run_dir)
    return dirs


def test_report_renders_in_chromium(chromium: str, run_dirs: list[Path]) -> None:
    run_dir = run_dirs[0]
    page = asyncio.run(load(chromium, (run_dir / "report.html").as_uri()))
    assert_sound(page, run_dir)
    assert "Ticket reproduced" in page.state["findings"]["text"]


def test_trend_renders_in_chromium(chromium: str, run_dirs: list[Path], tmp_path: Path) -> None:
    trend = build_trend(run_dirs, tmp_path)
    page = asyncio.run(load(chromium, trend.html.as_uri()))
    assert_sound(page, tmp_path)


def test_mock_docs_load_swagger_ui_offline(chromium: str) -> None:
    with MockProcess(MockConfig()) as mock:
        # Swagger UI rendered the document's operations: its script ran and read /openapi.json.
        page = asyncio.run(load(chromium, f"{mock.url}/docs",
                                settle_js="document.querySelectorAll('.opblock').length > 0"))
    assert page.settled, "Swagger UI did not render any operation"
    assert page.errors == [] and page.failed == []
    # Everything came from the mock itself: nothing from a CDN.
    assert page.requests and all(r.startswith((mock.url, "data:")) for r in page.requests), page.requests
