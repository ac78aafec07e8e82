"""Debian's Chromium driven by Playwright, for the browser tests (never ``playwright install``)."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

CHROMIUM = os.environ.get("TAGGER_CHROMIUM", "/usr/bin/chromium")
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def available() -> bool:
    """True when the browser is installed."""
    return Path(CHROMIUM).exists()


def free_port() -> int:
    """A port nobody listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_server(url: str, process: Any, attempts: int = 240) -> str:
    """Wait until ``url`` answers (or ``process`` exits: AssertionError with its output)."""
    import time
    import urllib.request

    for _ in range(attempts):
        try:
            with urllib.request.urlopen(url, timeout=2):
                return url
        except OSError:
            if process.poll() is not None:
                break
            time.sleep(0.5)
    output = process.stdout.read().decode("utf-8", "replace") if process.poll() is not None else ""
    raise AssertionError(f"{url} did not answer: {output}")


@contextmanager
def open_page(url: str, ready: str) -> Iterator[Any]:
    """A Chromium page on ``url``, once ``ready`` (a selector) is in the page; page errors
    (uncaught exceptions in the page's scripts) fail the test when the page closes."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1200})
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(url)
        page.wait_for_selector(ready, state="attached", timeout=60_000)
        page.wait_for_function("window.tagger_loaded === true", timeout=30_000)
        try:
            yield page
        finally:
            shots = os.environ.get("TAGGER_SCREENSHOTS")
            if shots:
                page.screenshot(path=str(Path(shots) / "tagger_end.png"), full_page=True)
            browser.close()
        assert errors == []
