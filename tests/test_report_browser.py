"""report.html in a real browser (headless Chromium over the DevTools pipe): no network requests, no failed loads,
no script errors, every chart decoded, no sideways scrolling at phone width, and a hostile name shown as text.

Skipped only when no Chromium is installed. Screenshots land in the test's temp folder (laptop and phone width).
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import select
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from reports import write_report
from test_reports import EVIL, flat_baseline, make_result

CHROMIUM = next((p for p in (shutil.which("chromium"), shutil.which("chromium-browser"), shutil.which("google-chrome"),
                             "/usr/bin/chromium") if p and os.path.exists(p)), None)
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no chromium/chrome executable on this machine")
TIMEOUT = 30.0


def _high(fds: tuple[int, int]) -> tuple[int, int]:
    """The same pipe ends moved to fd numbers >= 10, so the child's dup2 onto 3 and 4 cannot clobber them."""
    out = []
    for fd in fds:
        out.append(fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10))
        os.close(fd)
    return out[0], out[1]


class DevTools:
    """A minimal Chrome DevTools Protocol client over ``--remote-debugging-pipe`` (fd 3 in, fd 4 out, NUL-framed
    JSON): commands return their result; events are kept in ``events`` for the test to inspect."""

    def __init__(self, profile: Path):
        cmd_r, self._cmd_w = _high(os.pipe())
        self._res_r, res_w = _high(os.pipe())

        def child_fds():                  # the child's fds 3 and 4 are the pipe ends chromium expects
            os.dup2(cmd_r, 3)
            os.dup2(res_w, 4)

        self.proc = subprocess.Popen(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--no-first-run", "--disable-extensions", "--disable-sync",
             "--hide-scrollbars", "--remote-debugging-pipe", f"--user-data-dir={profile}", "about:blank"],
            pass_fds=(3, 4), preexec_fn=child_fds, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(cmd_r)
        os.close(res_w)
        self._buffer = b""
        self._next_id = 0
        self.events: list[dict] = []
        self.session: str | None = None

    def _read_message(self, deadline: float) -> dict:
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._res_r], [], [], left)[0]:
                raise TimeoutError("chromium did not answer in time")
            chunk = os.read(self._res_r, 1 << 20)
            if not chunk:
                raise RuntimeError("chromium closed the DevTools pipe")
            self._buffer += chunk
        raw, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(raw)

    def send(self, method: str, params: dict | None = None, *, browser: bool = False) -> dict:
        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params or {}}
        if self.session and not browser:
            message["sessionId"] = self.session
        os.write(self._cmd_w, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + TIMEOUT
        while True:
            reply = self._read_message(deadline)
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            if "method" in reply:
                self.events.append(reply)

    def wait_for(self, method: str) -> dict:
        deadline = time.monotonic() + TIMEOUT
        while True:
            for event in self.events:
                if event["method"] == method:
                    return event
            self.events.append(self._read_message(deadline))

    def evaluate(self, expression: str):
        result = self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True,
                                                "awaitPromise": True})
        if "exceptionDetails" in result:
            raise RuntimeError(f"evaluate failed: {result['exceptionDetails']}")
        return result["result"].get("value")

    def open_page(self) -> None:
        target = self.send("Target.createTarget", {"url": "about:blank"}, browser=True)["targetId"]
        self.session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True},
                                 browser=True)["sessionId"]
        for domain in ("Page", "Runtime", "Network", "Log"):
            self.send(f"{domain}.enable")

    def screenshot(self, path: Path, width: int, mobile: bool = False) -> None:
        """Full-page PNG at ``width`` CSS pixels."""
        self.send("Emulation.setDeviceMetricsOverride", {"width": width, "height": 900, "deviceScaleFactor": 1,
                                                         "mobile": mobile})
        height = int(self.evaluate("document.documentElement.scrollHeight"))
        shot = self.send("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True,
                                                    "clip": {"x": 0, "y": 0, "width": width, "height": height,
                                                             "scale": 1}})
        path.write_bytes(base64.b64decode(shot["data"]))

    def close(self) -> None:
        try:
            self.send("Browser.close", browser=True)
        except (RuntimeError, TimeoutError, OSError):
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self._cmd_w)
        os.close(self._res_r)


IMAGES = "[...document.images].map(i => ({alt: i.alt, complete: i.complete, w: i.naturalWidth, h: i.naturalHeight}))"


def load_in_browser(page: Path, shots: Path) -> dict:
    """Open ``page`` in headless Chromium; return what the page did and looked like, screenshots in ``shots``."""
    tools = DevTools(shots / "profile")
    try:
        tools.open_page()
        tools.send("Emulation.setDeviceMetricsOverride", {"width": 1280, "height": 900, "deviceScaleFactor": 1,
                                                          "mobile": False})
        tools.send("Page.navigate", {"url": page.resolve().as_uri()})
        tools.wait_for("Page.loadEventFired")
        out = {
            "images": tools.evaluate(IMAGES),
            "decoded": tools.evaluate("Promise.all([...document.images].map(i => i.decode().then(() => true, "
                                      "() => false)))"),
            "scripts": tools.evaluate("document.scripts.length"),
            "h1": tools.evaluate("document.querySelector('h1').textContent"),
            "sections": tools.evaluate("[...document.querySelectorAll('h2')].map(h => h.textContent)"),
        }
        tools.screenshot(shots / "report-laptop.png", 1280)
        tools.screenshot(shots / "report-phone.png", 390, mobile=True)
        out["phone_overflow"] = tools.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        out["events"] = list(tools.events)
        return out
    finally:
        tools.close()


@pytest.fixture(scope="module")
def browsed(tmp_path_factory) -> tuple[dict, Path]:
    folder = tmp_path_factory.mktemp("browser-report")
    result = make_result(name=EVIL)
    manifest = {"manifest_version": 1, "data": {"rows": 500, "sha256": "ab" * 32}, "seed": 42,
                "packages": {"python": "3.11"}, "command": ["lstmbt", "backtest", "--name", EVIL]}
    page = write_report(result, folder, baselines=[flat_baseline()], manifest=manifest)
    return load_in_browser(page, folder), folder


def test_the_page_makes_no_request_and_logs_no_error(browsed):
    seen, _ = browsed
    methods = [e["method"] for e in seen["events"]]
    requests = [e["params"]["request"]["url"] for e in seen["events"] if e["method"] == "Network.requestWillBeSent"]
    assert not [u for u in requests if not u.startswith(("file:", "data:"))], "the page fetched from the network"
    assert "Network.loadingFailed" not in methods
    assert "Runtime.exceptionThrown" not in methods
    errors = [e["params"]["entry"] for e in seen["events"]
              if e["method"] == "Log.entryAdded" and e["params"]["entry"]["level"] == "error"]
    assert not errors, errors
    assert seen["scripts"] == 0


def test_every_chart_is_decoded_with_a_real_size(browsed):
    seen, _ = browsed
    assert len(seen["images"]) == 9
    assert all(seen["decoded"])
    for image in seen["images"]:
        assert image["complete"] and image["w"] > 500 and image["h"] > 100, image


def test_a_script_tag_in_the_strategy_name_is_shown_as_text(browsed):
    seen, _ = browsed
    assert EVIL in seen["h1"] and seen["scripts"] == 0
    assert "Reproducibility" in seen["sections"]


def test_the_page_fits_a_phone_width_and_screenshots_are_saved(browsed):
    seen, folder = browsed
    assert seen["phone_overflow"] <= 0                      # wide tables scroll inside their box, not the page
    for name in ("report-laptop.png", "report-phone.png"):
        shot = folder / name
        assert shot.stat().st_size > 10_000, name
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
