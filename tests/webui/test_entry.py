"""The entry script inside the stand-in webui: what each start (flags) registers and serves.

Every start goes through the stand-in's ``webui.start(argv)``, which follows the real
``webui.py``: the webui's own API exists only with ``--api`` or ``--nowebui``, the tagger's
routes follow it, and the Settings the extension registers are protected as the webui protects
its own folder settings.
"""

from __future__ import annotations

import json
import logging
import runpy
import shutil
import sys
import types
from pathlib import Path

import pytest
from conftest import REPO, SCRIPT

pytest.importorskip("gradio")

FOLDER_SETTINGS = ("tagger_models_dir", "tagger_hf_cache", "tagger_api_allowed_dirs")


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


def client(app):
    from fastapi.testclient import TestClient

    return TestClient(app)


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
    # Folder settings: as the webui's own output folders (hide_dirs, restricted_opts), and
    # out of the API's reach (restrict_api); nothing else is.
    folders = {k for k in keys if labels[k].restrict_api}
    assert folders == set(FOLDER_SETTINGS)
    assert all(labels[k].component_args is webui.shared.hide_dirs for k in folders)
    assert folders <= webui.shared.restricted_opts
    assert "(requires" not in labels["tagger_general_threshold"].comment_after
    assert "after Reload UI" in labels["tagger_general_threshold"].comment_after
    assert "reads it at start" in labels["tagger_api_allowed_dirs"].comment_after


def test_tab_is_built_with_send_to_buttons(webui, model_dir: Path) -> None:
    import gradio as gr

    run_script()
    tabs = webui.script_callbacks.ui_tabs_callback()
    assert len(tabs) == 1
    block, label, elem_id = tabs[0]
    assert isinstance(block, gr.Blocks)
    assert (label, elem_id) == ("Tagger", "tagger")
    every = webui.infotext_utils.registered_param_bindings
    # the CLIP Interrogator section has send-to buttons of its own (its prompt and image)
    ci = [b for b in every if b.source_text_component.elem_id == "tagger_ci_paste_text"]
    assert [b.tabname for b in ci] == ["txt2img", "img2img"]
    assert {b.source_image_component.elem_id for b in ci} == {"tagger_ci_image"}
    bindings = [  # and the Dataset sub-tab's own: tests/webui/test_dataset_tab.py
        b
        for b in every
        if b not in ci and b.source_text_component.elem_id != "tagger_ds_paste_text"
    ]
    assert [b.tabname for b in bindings] == ["txt2img", "img2img"]
    # The text the host parses is the hidden infotext box, not the prompt box itself.
    assert {b.source_text_component.elem_id for b in bindings} == {"tagger_paste_text"}
    assert {b.source_text_component.visible for b in bindings} == {False}
    assert {b.source_image_component.elem_id for b in bindings} == {"tagger_image"}
    assert [b.paste_button.elem_id for b in bindings] == ["txt2img_tab", "img2img_tab"]


@pytest.mark.parametrize(
    ("argv", "served"),
    [
        ((), False),
        (("--listen", "--gradio-auth", "alice:secret"), False),
        (("--share",), False),
        (("--api",), True),
        (("--nowebui",), True),
        (("--api", "--listen", "--gradio-auth", "alice:secret"), True),
    ],
)
def test_api_is_served_only_when_the_webui_serves_its_own(webui, argv, served) -> None:
    started = webui.start(*argv)
    http = client(started.app)
    reply = http.get("/tagger/v1/interrogators")
    assert reply.status_code == (200 if served else 404)
    # The webui's own API follows the same flags (the stand-in's webui.py).
    assert (http.get("/sdapi/v1/options").status_code == 200) is served
    if "--gradio-auth" in argv:
        # --gradio-auth guards Gradio's own routes, never the routes added to the app.
        assert http.get("/config").status_code == 401


@pytest.mark.parametrize("argv", [("--nowebui",), ("--api",)])
def test_api_auth_guards_the_tagger_routes(webui, argv, model_dir: Path) -> None:
    shutil.copytree(model_dir, webui.root / "models" / "TaggerOnnx" / "my-tagger")
    started = webui.start(*argv, "--api-auth", "alice:secret,bob:pw")
    http = client(started.app)
    assert http.get("/tagger/v1/interrogators").status_code == 401
    assert http.get("/tagger/v1/interrogators", auth=("alice", "wrong")).status_code == 401
    reply = http.get("/tagger/v1/interrogators", auth=("alice", "secret"))
    assert reply.status_code == 200
    assert "my-tagger" in reply.json()["models"]
    assert http.get("/tagger/v1/interrogators", auth=("bob", "pw")).status_code == 200
    # The webui's own routes ask for the same credentials.
    assert http.get("/sdapi/v1/options").status_code == 401


def test_api_auth_dependency_checks_credentials(webui) -> None:
    from fastapi import FastAPI

    from tagger.webui.routes import auth_dependencies, parse_api_auth

    assert parse_api_auth("a:b,c:d:e") == {"a": "b", "c": "d:e"}
    assert auth_dependencies(None) == ()
    app = FastAPI()
    app.get("/x", dependencies=list(auth_dependencies("alice:secret,bob:pw:x")))(lambda: "ok")
    http = client(app)
    assert http.get("/x").status_code == 401
    assert http.get("/x", auth=("alice", "wrong")).status_code == 401
    assert http.get("/x", auth=("alice", "secret")).json() == "ok"
    assert http.get("/x", auth=("bob", "pw:x")).json() == "ok"


def test_nowebui_builds_the_ui_once_but_the_api_does_not_need_it(webui, monkeypatch) -> None:
    """--nowebui: the webui's API constructor builds the UI (on_ui_settings and on_ui_tabs run)
    before app_started(None, app); the tagger's routes are mounted from app_started alone."""
    import tagger.webui.tab

    built = []
    original = tagger.webui.tab.on_ui_tabs
    monkeypatch.setattr(tagger.webui.tab, "on_ui_tabs", lambda: built.append(1) or original())
    started = webui.start("--nowebui")
    assert started.demo is None
    assert built == [1]
    assert client(started.app).get("/tagger/v1/interrogators").status_code == 200


def test_api_gets_the_host_lock_flags_and_settings(webui, monkeypatch) -> None:
    calls = fake_api(monkeypatch)
    webui.config().write_text(
        json.dumps({"tagger_api_allowed_dirs": "/data/a\n/data/b", "tagger_hf_cache": "/c/hf"})
    )
    started = webui.start(
        "--nowebui", "--use-cpu", "interrogate", "--device-id", "1", "--api-auth", "alice:s"
    )
    assert len(calls) == 1
    args, kwargs = calls[0]
    assert args == (started.app,)
    assert kwargs["lock"] is webui.call_queue.queue_lock
    assert kwargs["providers"] == "cpu"
    assert kwargs["device_id"] == 1
    assert kwargs["hf_cache"] == "/c/hf"
    assert kwargs["allowed_dirs"] == (Path("/data/a"), Path("/data/b"))
    assert webui.root / "models" / "TaggerOnnx" in kwargs["models_dirs"]
    assert REPO / "models" in kwargs["models_dirs"]
    assert len(kwargs["dependencies"]) == 1


@pytest.mark.parametrize(
    ("argv", "warned"),
    [
        (("--api",), False),
        (("--api", "--listen"), True),
        (("--api", "--listen", "--api-auth", "a:b"), False),
        (("--nowebui",), True),  # its API server binds every interface
        (("--listen",), False),  # no API at all
    ],
)
def test_api_without_credentials_on_the_network_is_logged(webui, caplog, argv, warned) -> None:
    with caplog.at_level(logging.INFO, logger="tagger"):
        webui.start(*argv)
    assert ("served to the network without credentials" in caplog.text) is warned


def test_app_started_without_api_package_warns(webui, monkeypatch, caplog) -> None:
    monkeypatch.setitem(sys.modules, "tagger.api", None)  # import tagger.api -> ImportError
    with caplog.at_level(logging.WARNING, logger="tagger"):
        webui.start("--nowebui")
    assert "the HTTP API is not available" in caplog.text


def test_folder_settings_refused_through_the_webui_api(webui) -> None:
    """A1111's POST /sdapi/v1/options sets every key with is_api=True: restrict_api settings
    stay; the Settings page (is_api=False) can change them."""
    started = webui.start("--api")
    http = client(started.app)
    wanted = dict.fromkeys(FOLDER_SETTINGS, "/")
    reply = http.post("/sdapi/v1/options", json={**wanted, "tagger_general_threshold": 0.5})
    assert reply.status_code == 200
    saved = json.loads(webui.config().read_text())
    assert saved["tagger_general_threshold"] == 0.5  # the route works for other settings
    assert {key: saved[key] for key in FOLDER_SETTINGS} == dict.fromkeys(FOLDER_SETTINGS, "")
    from tagger.webui import settings

    assert settings.runtime_settings().allowed_dirs == []
    assert all(webui.shared.opts.set(key, "/srv/data") for key in FOLDER_SETTINGS)
    assert settings.runtime_settings().allowed_dirs == [Path("/srv/data")]


def test_forge_options_route_needs_hide_ui_dir_config(webui) -> None:
    """Forge's set_config passes is_api=False, so restrict_api does not hold there; the hidden
    component arguments of --hide-ui-dir-config do, on both hosts."""
    from modules import sysinfo

    webui.start()
    sysinfo.set_config({"tagger_api_allowed_dirs": "/"})
    assert webui.shared.opts.data["tagger_api_allowed_dirs"] == "/"
    webui.restart()
    webui.start("--hide-ui-dir-config")
    assert webui.shared.opts.data["tagger_api_allowed_dirs"] == "/"  # saved before: kept
    sysinfo.set_config(dict.fromkeys(FOLDER_SETTINGS, "/elsewhere"))
    assert [webui.shared.opts.data[key] for key in FOLDER_SETTINGS] == ["", "", "/"]
    assert not webui.shared.opts.set("tagger_models_dir", "/x")  # the Settings page too


def test_hide_ui_dir_config_hides_folder_settings_and_fields(webui, model_dir, tmp_path) -> None:
    from tiny import make_image

    started = webui.start("--hide-ui-dir-config")
    components = webui.shared.settings_components
    assert {key: components[key].visible for key in FOLDER_SETTINGS} == dict.fromkeys(
        FOLDER_SETTINGS, False
    )
    assert components["tagger_general_threshold"].visible is True
    by_id = {getattr(b, "elem_id", None): b for b in started.demo.blocks.values()}
    hidden = ["tagger_input_dir", "tagger_batch_output_dir", "tagger_batch_jsonl", "tagger_start"]
    assert [by_id[i].visible for i in hidden] == [False] * len(hidden)
    assert by_id["tagger_folders_note"].visible is True
    assert by_id["tagger_batch_recursive"].visible is True

    # The handlers refuse too: a hidden field's value can still be sent to the server.
    import gradio as gr

    from tagger.ui.form import to_widget
    from tagger.webui.tab import build_tab

    with gr.Blocks():
        _, ui = build_tab()
    host = ui.host
    values = [to_widget(s, s.default) for s in [*ui.tag_specs, *ui.batch_specs]]
    images = tmp_path / "images"
    make_image(images / "a.png", (30, 30), seed=1)
    assert "--hide-ui-dir-config" in ui.on_count(str(images), False)
    run = host.wrap_gpu(ui.on_batch, 2)
    _, summary = run("task(x)", str(images), str(model_dir), *values)
    assert "not available: the webui was started with --hide-ui-dir-config" in summary
    assert list(images.iterdir()) == [images / "a.png"]


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
