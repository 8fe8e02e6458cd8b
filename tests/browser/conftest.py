"""Fixtures for the browser tests: the kurz under test, an API client, Debian's
Chromium through Playwright, and a watch on every page for script errors, CSP
violations and JavaScript dialogs (any of them fails the test).

KURZ_UI_URL and KURZ_UI_ADMIN_KEY name the server; tests/browser/run.sh sets both.
"""
import gzip
import http.client
import json
import os
import pathlib
import secrets
import time
import urllib.error
import urllib.parse
import urllib.request

import pytest
from playwright.sync_api import sync_playwright

BASE = os.environ.get("KURZ_UI_URL", "").rstrip("/")
ADMIN_KEY = os.environ.get("KURZ_UI_ADMIN_KEY", "")
ROOT = pathlib.Path(__file__).resolve().parents[2]
SHOTS = ROOT / "target" / "screenshots"
AXE_JS = pathlib.Path(os.environ.get("KURZ_UI_AXE_JS", ROOT / "target" / "browser-npm" / "axe-core" / "axe.min.js"))
CHROMIUM = os.environ.get("KURZ_UI_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
# A desktop Chrome user agent, so the test clicks count as people, not bots.
CHROME_UA = ("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
             "Chrome/148.0.0.0 Safari/537.36")
SESSION_KEY = "kurz.session"

if not BASE or not ADMIN_KEY:
    raise pytest.UsageError("set KURZ_UI_URL and KURZ_UI_ADMIN_KEY (tests/browser/run.sh does)")


def uniq(prefix="t"):
    """An alias-safe unique name (at most 10 characters)."""
    return (prefix[:3] + secrets.token_hex(4))[:10]


class Api:
    """A tiny /api/v1 client (urllib), authenticated with an API key."""

    def __init__(self, key=ADMIN_KEY):
        self.key = key

    def call(self, method, path, body=None, expect=None):
        headers = {"X-API-Key": self.key} if self.key else {}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        req = urllib.request.Request(BASE + path, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=60) as r:
                status, raw = r.status, r.read()
        except urllib.error.HTTPError as e:
            status, raw = e.code, e.read()
        if expect is not None:
            assert status in (expect if isinstance(expect, tuple) else (expect,)), f"{method} {path}: {status} {raw[:300]!r}"
        try:
            return status, json.loads(raw) if raw else None
        except ValueError:
            return status, raw

    def create(self, **fields):
        return self.call("POST", "/api/v1/urls", fields, expect=201)[1]

    def info(self, code):
        return self.call("GET", f"/api/v1/urls/{code}")

    def stats(self, code, **params):
        return self.call("GET", f"/api/v1/urls/{code}/stats?" + urllib.parse.urlencode(params), expect=200)[1]

    def bulk(self, items):
        return self.call("POST", "/api/v1/urls/bulk", {"urls": items}, expect=(201, 207))[1]

    def create_user(self, tier="pro"):
        return self.call("POST", "/api/v1/users", {"email": f"{uniq('u')}@example.com", "tier": tier}, expect=201)[1]


def raw_get(url, headers=None, method="GET"):
    """One request, redirects not followed: (status, headers dict, body)."""
    u = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(u.hostname, u.port or 80, timeout=30)
    try:
        conn.request(method, u.path + (("?" + u.query) if u.query else ""), headers=headers or {})
        r = conn.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        conn.close()


def transfer_size(url):
    """Bytes on the wire for url with Accept-Encoding: gzip (status line, headers
    and body). A body the server sends uncompressed is counted gzipped (level 6)
    as well, as the second number."""
    u = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(u.hostname, u.port or 80, timeout=30)
    try:
        conn.request("GET", u.path + (("?" + u.query) if u.query else ""), headers={"Accept-Encoding": "gzip"})
        r = conn.getresponse()
        body = r.read()
        head = len(f"HTTP/1.1 {r.status} {r.reason}\r\n") + sum(len(k) + len(v) + 4 for k, v in r.getheaders()) + 2
        enc = (r.getheader("Content-Encoding") or "").lower()
        sent = head + len(body)
        as_gzip = sent if enc in ("gzip", "br") else head + len(gzip.compress(body, 6))
        return r.status, sent, as_gzip, enc or "identity"
    finally:
        conn.close()


def sign_in(page, key=ADMIN_KEY):
    page.goto(BASE + "/app/#/signin")
    page.locator("input[name=api_key]").fill(key)
    page.locator("main form button[type=submit]").click()
    page.locator("h1", has_text="My links").wait_for()
    page.locator("#links-status:not(:empty)").wait_for()


def session_state(page):
    return page.evaluate("() => ({session: {...sessionStorage}, local: {...localStorage}})")


def wait_until(fn, timeout=10.0, interval=0.25, what="condition"):
    end = time.monotonic() + timeout
    last = None
    while time.monotonic() < end:
        last = fn()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


class Watch:
    """Collects what must never happen on a page."""

    def __init__(self):
        self.errors = []
        self.csp = []
        self.dialogs = []

    def attach(self, page):
        page.on("pageerror", lambda e: self.errors.append(str(e)))
        page.on("console", self._console)
        page.on("dialog", self._dialog)

    def _console(self, msg):
        text = msg.text
        if "Content Security Policy" in text or "Refused to" in text:
            self.csp.append(text)

    def _dialog(self, dialog):
        self.dialogs.append(f"{dialog.type}: {dialog.message}")
        dialog.dismiss()

    def check(self):
        assert not self.dialogs, f"a JavaScript dialog opened: {self.dialogs}"
        assert not self.csp, f"CSP violations: {self.csp}"
        assert not self.errors, f"uncaught page errors: {self.errors}"


@pytest.fixture(scope="session")
def browser():
    assert os.path.exists(CHROMIUM), f"{CHROMIUM} is missing (apt-get install chromium)"
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def watch():
    return Watch()


@pytest.fixture
def new_context(browser, watch):
    """new_context(**kwargs) -> a browser context whose pages are watched."""
    contexts = []

    def make(**kwargs):
        kwargs.setdefault("viewport", DESKTOP)
        kwargs.setdefault("color_scheme", "light")
        kwargs.setdefault("accept_downloads", True)
        ctx = browser.new_context(**kwargs)
        ctx.set_default_timeout(15_000)
        ctx.on("page", watch.attach)
        contexts.append(ctx)
        return ctx

    yield make
    for c in contexts:
        c.close()
    watch.check()


@pytest.fixture
def page(new_context):
    return new_context().new_page()


@pytest.fixture
def signed_in(page):
    sign_in(page)
    return page


@pytest.fixture
def api():
    return Api()


def screenshot(page, name, full_page=False):
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=full_page)
