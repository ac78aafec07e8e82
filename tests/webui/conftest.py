"""Fixtures for the webui glue: the stand-in host on sys.path, removed after each test."""

from __future__ import annotations

import importlib
import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import pytest

HOST_DIR = Path(__file__).parent / "host"
REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "tagger.py"


def _purge() -> None:
    """Forget the stand-in host and everything imported from it."""
    for name in list(sys.modules):
        if name in ("modules", "launch", "install", "webui") or name.startswith(
            ("modules.", "tagger.webui")
        ):
            del sys.modules[name]


class Webui(SimpleNamespace):
    """The stand-in host's modules, and starts of the stand-in webui with this extension."""

    def __init__(self, root: Path) -> None:
        super().__init__(root=root, demos=[])
        self._load()

    def _load(self) -> None:
        for name in ("shared", "script_callbacks", "call_queue"):
            setattr(self, name, importlib.import_module(f"modules.{name}"))
        if importlib.util.find_spec("gradio") is not None:  # the paste chain builds buttons
            self.infotext_utils = importlib.import_module("modules.infotext_utils")

    def start(self, *argv: str, serve: bool = False) -> Any:
        """Start the webui with these flags and this extension (``webui.start``)."""
        started = importlib.import_module("webui").start(argv, scripts=[SCRIPT], serve=serve)
        if started.demo is not None:
            self.demos.append(started.demo)
        return started

    def restart(self) -> None:
        """A new webui process: every host module and the extension's glue imported afresh
        (``config.json``, ``ui-config.json`` and the other files under ``root`` stay)."""
        self.check_no_reported_errors()
        self.close()
        _purge()
        self._load()

    def config(self) -> Path:
        """The webui's config.json (the saved Settings)."""
        return self.root / "config.json"

    def ui_config(self) -> Path:
        """The webui's ui-config.json (the saved values of the tabs' components)."""
        return self.root / "ui-config.json"

    def check_no_reported_errors(self) -> None:
        """No callback raised (the host reports those and goes on)."""
        reported = self.script_callbacks.reported
        assert reported == [], "\n".join(text for _, text in reported)

    def close(self) -> None:
        """Stop serving every page started."""
        for demo in self.demos:
            demo.close()
        self.demos.clear()


@pytest.fixture
def webui(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Webui]:
    """The stand-in host (``modules``) with a webui folder under tmp_path."""
    data = tmp_path / "webui"
    (data / "models" / "TaggerOnnx").mkdir(parents=True)
    (data / "extensions").mkdir()
    monkeypatch.setenv("TAGGER_TEST_WEBUI_DATA", str(data))
    _purge()
    sys.path.insert(0, str(HOST_DIR))
    host = None
    try:
        host = Webui(data)
        yield host
        host.check_no_reported_errors()
    finally:
        if host is not None:
            host.close()
        sys.path.remove(str(HOST_DIR))
        _purge()


@pytest.fixture
def launch_module() -> Iterator[ModuleType]:
    """The stand-in ``launch`` module (``is_installed`` / ``run_pip``)."""
    _purge()
    sys.path.insert(0, str(HOST_DIR))
    try:
        module = importlib.import_module("launch")
        module.installed.clear()
        module.pip_calls.clear()
        yield module
    finally:
        sys.path.remove(str(HOST_DIR))
        _purge()
