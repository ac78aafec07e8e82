"""Fixtures for the webui glue: the stand-in host on sys.path, removed after each test."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType, SimpleNamespace

import pytest

HOST_DIR = Path(__file__).parent / "host"
REPO = Path(__file__).resolve().parents[2]


def _purge() -> None:
    """Forget the stand-in host and everything imported from it."""
    for name in list(sys.modules):
        if name in ("modules", "launch", "install") or name.startswith(
            ("modules.", "tagger.webui")
        ):
            del sys.modules[name]


@pytest.fixture
def webui(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[SimpleNamespace]:
    """The stand-in host (``modules``) with a webui folder under tmp_path."""
    data = tmp_path / "webui"
    (data / "models" / "TaggerOnnx").mkdir(parents=True)
    (data / "extensions").mkdir()
    monkeypatch.setenv("TAGGER_TEST_WEBUI_DATA", str(data))
    _purge()
    sys.path.insert(0, str(HOST_DIR))
    try:
        modules = SimpleNamespace(
            root=data,
            shared=importlib.import_module("modules.shared"),
            script_callbacks=importlib.import_module("modules.script_callbacks"),
            call_queue=importlib.import_module("modules.call_queue"),
            infotext_utils=importlib.import_module("modules.infotext_utils"),
        )
        yield modules
    finally:
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
