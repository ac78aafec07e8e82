"""The entry script registers the tab, the Settings section and the API with the host."""

from __future__ import annotations

import logging
import runpy
import sys
import types
from pathlib import Path

import pytest
from conftest import REPO

SCRIPT = REPO / "scripts" / "tagger.py"

pytest.importorskip("gradio")


def run_script() -> dict:
    """Load scripts/tagger.py as the host does (extension root first on sys.path)."""
    sys.path.insert(0, str(REPO))
    try:
        return runpy.run_path(str(SCRIPT), run_name="tagger_script")
    finally:
        sys.path.remove(str(REPO))


def fake_api(monkeypatch: pytest.MonkeyPatch) -> list[tuple[tuple, dict]]:
    """Replace ``tagger.api.mount`` with a recorder of its calls."""
    import tagger.api

    calls: list[tuple[tuple, dict]] = []
    monkeypatch.setattr(tagger.api, "mount", lambda *args, **kwargs: calls.append((args, kwargs)))
    return calls


def test_script_registers_tab_settings_and_api(webui) -> None:
    run_script()
    names = {
        key: [(c.name, c.callback.__name__) for c in items]
        for key, items in webui.script_callbacks.callback_map.items()
    }
    assert names["callbacks_ui_tabs"] == [("tagger", "on_ui_tabs")]
    assert names["callbacks_ui_settings"] == [("tagger", "register_settings")]
    assert names["callbacks_app_started"] == [("tagger", "on_app_started")]


def test_settings_section(webui) -> None:
    from tagger.webui.settings import SETTINGS

    run_script()
    webui.script_callbacks.ui_settings_callback()
    labels = webui.shared.opts.data_labels
    keys = [key for key in labels if key.startswith("tagger_")]
    assert keys == [s.key for s in SETTINGS]
    assert {labels[k].section for k in keys} == {("tagger", "Tagger")}
    assert webui.shared.opts.tagger_general_threshold == 0.35
    assert webui.shared.opts.tagger_default_model == "wd-vit-tagger-v3"
    choices = labels["tagger_default_model"].component_args()["choices"]
    assert "wd-vit-tagger-v3" in choices


def test_tab_is_built_with_send_to_buttons(webui, model_dir: Path) -> None:
    import gradio as gr

    run_script()
    tabs = webui.script_callbacks.ui_tabs_callback()
    assert len(tabs) == 1
    block, label, elem_id = tabs[0]
    assert isinstance(block, gr.Blocks)
    assert (label, elem_id) == ("Tagger", "tagger")
    bindings = webui.infotext_utils.registered_param_bindings
    assert [b.tabname for b in bindings] == ["txt2img", "img2img"]
    assert {b.source_text_component.elem_id for b in bindings} == {"tagger_prompt"}
    assert {b.source_image_component.elem_id for b in bindings} == {"tagger_image"}
    assert [b.paste_button.elem_id for b in bindings] == ["txt2img_tab", "img2img_tab"]


def test_app_started_mounts_api_with_host_lock_auth_and_settings(webui, monkeypatch) -> None:
    calls = fake_api(monkeypatch)
    cmd = webui.shared.cmd_opts
    monkeypatch.setattr(cmd, "use_cpu", ["interrogate"])
    monkeypatch.setattr(cmd, "device_id", "1")
    monkeypatch.setattr(cmd, "api_auth", "alice:secret")
    webui.shared.opts.data["tagger_api_allowed_dirs"] = "/data/a\n/data/b"
    webui.shared.opts.data["tagger_hf_cache"] = "/cache/hf"
    run_script()
    app = object()
    # --nowebui: no tab, no Settings page; app_started still mounts the API.
    webui.script_callbacks.app_started_callback(None, app)
    assert len(calls) == 1
    args, kwargs = calls[0]
    assert args == (app,)
    assert kwargs["lock"] is webui.call_queue.queue_lock
    assert kwargs["providers"] == "cpu"
    assert kwargs["device_id"] == 1
    assert kwargs["hf_cache"] == "/cache/hf"
    assert kwargs["allowed_dirs"] == (Path("/data/a"), Path("/data/b"))
    assert webui.root / "models" / "TaggerOnnx" in kwargs["models_dirs"]
    assert REPO / "models" in kwargs["models_dirs"]
    assert len(kwargs["dependencies"]) == 1


def test_nowebui_serves_interrogators_with_the_local_model(webui, monkeypatch, model_dir) -> None:
    """With --nowebui --api-auth: the real API on the host's app lists models/TaggerOnnx/."""
    import shutil

    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    shutil.copytree(model_dir, webui.root / "models" / "TaggerOnnx" / "my-tagger")
    monkeypatch.setattr(webui.shared.cmd_opts, "api_auth", "alice:secret")
    run_script()
    app = FastAPI()
    webui.script_callbacks.app_started_callback(None, app)
    client = TestClient(app)
    assert client.get("/tagger/v1/interrogators").status_code == 401
    reply = client.get("/tagger/v1/interrogators", auth=("alice", "secret"))
    assert reply.status_code == 200
    assert "my-tagger" in reply.json()["models"]


def test_api_auth_dependency_checks_credentials(webui) -> None:
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    from tagger.webui.routes import auth_dependencies

    assert auth_dependencies(None) == ()
    app = FastAPI()
    app.get("/x", dependencies=list(auth_dependencies("alice:secret,bob:pw:x")))(lambda: "ok")
    client = TestClient(app)
    assert client.get("/x").status_code == 401
    assert client.get("/x", auth=("alice", "wrong")).status_code == 401
    assert client.get("/x", auth=("alice", "secret")).json() == "ok"
    assert client.get("/x", auth=("bob", "pw:x")).json() == "ok"


def test_app_started_without_api_package_warns(webui, monkeypatch, caplog) -> None:
    monkeypatch.setitem(sys.modules, "tagger.api", None)  # import tagger.api -> ImportError
    run_script()
    with caplog.at_level(logging.WARNING, logger="tagger"):
        webui.script_callbacks.app_started_callback(None, object())
    assert "the HTTP API is not available" in caplog.text


def test_another_tagger_package_stops_with_its_folder(webui, monkeypatch, tmp_path) -> None:
    other = tmp_path / "stable-diffusion-webui-wd14-tagger"
    (other / "tagger").mkdir(parents=True)
    (other / "tagger" / "__init__.py").write_text("")
    module = types.ModuleType("tagger")
    module.__file__ = str(other / "tagger" / "__init__.py")
    monkeypatch.setitem(sys.modules, "tagger", module)
    with pytest.raises(RuntimeError) as error:
        run_script()
    assert f"already loaded, from {other}" in str(error.value)
    assert "disable one of the two" in str(error.value)
    assert webui.script_callbacks.callback_map["callbacks_ui_tabs"] == []


def test_other_tagger_extension_is_named_in_the_log(webui, caplog) -> None:
    other = webui.root / "extensions" / "stable-diffusion-webui-wd14-tagger"
    (other / "tagger").mkdir(parents=True)
    (other / "tagger" / "ui.py").write_text("")
    (webui.root / "extensions" / "sd-webui-unrelated" / "scripts").mkdir(parents=True)
    with caplog.at_level(logging.ERROR, logger="tagger"):
        run_script()
    assert str(other) in caplog.text
    assert "sd-webui-unrelated" not in caplog.text


def test_host_flags_choose_device(webui, monkeypatch) -> None:
    from tagger.webui import settings

    cmd = webui.shared.cmd_opts
    assert settings.providers() == "auto"
    assert settings.device_id() == 0
    assert settings.half_precision() is True
    monkeypatch.setattr(cmd, "use_cpu", ["all"])
    assert settings.providers() == "cpu"
    monkeypatch.setattr(cmd, "use_cpu", ["sd"])
    webui.shared.opts.data["tagger_providers"] = "cuda"
    assert settings.providers() == "cuda"
    monkeypatch.setattr(cmd, "device_id", "2")
    assert settings.device_id() == 2
    webui.shared.opts.data["tagger_device_id"] = 1
    assert settings.device_id() == 1
    monkeypatch.setattr(cmd, "no_half", True)
    assert settings.half_precision() is False
