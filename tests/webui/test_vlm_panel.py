"""The tab's VLM panel in Gradio 3.41 / 4.40: built below the tab from the shared blocks, its
template picker fills the prompt, and in headless Chromium a caption and a folder run through
an OpenAI-compatible endpoint on loopback (the fake one of the tests)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import chromium
import pytest
from tiny import make_image

pytest.importorskip("gradio")

from tagger.ui.host import Host, RuntimeSettings
from tagger.vlm.templates import BUILTIN

KEY_ENV = "TAGGER_TEST_BROWSER_VLM_KEY"


def build(settings: RuntimeSettings, **host: object) -> object:
    """The tab (with its VLM panel) in a Blocks; returns the TaggerUI."""
    import gradio as gr

    from tagger.ui.blocks import build_tagger_ui

    with gr.Blocks():
        return build_tagger_ui(Host(settings=lambda: settings, **host))


def test_panel_is_built_below_the_tab(model_dir: Path) -> None:
    ui = build(RuntimeSettings(models_dirs=[model_dir.parent]))
    panel = ui.vlm_panel
    ids = {getattr(w, "elem_id", "") for w in panel.widgets.values()}
    names = ["backend", "url", "model", "key_env", "template", "prompt", "system"]
    names += ["caption_image", "caption_folder", "caption"]
    expected = {f"tagger_vlm_{name}" for name in names}
    assert expected <= ids
    assert all(i.startswith("tagger_vlm") for i in ids)
    assert panel.on_template("booru-tags") == (
        BUILTIN["booru-tags"].user,
        BUILTIN["booru-tags"].system,
    )
    assert "{tags}" in panel.widgets["prompt"].info
    from dataclasses import astuple

    from tagger.ui.form import to_widget
    from tagger.ui.vlm_actions import PanelValues

    tags = [to_widget(spec, spec.default) for spec in ui.tag_specs]
    info = panel.on_caption(None, "tiny-v3", *astuple(PanelValues()), *tags)[1]
    assert "no image" in info


def test_hidden_folders_hide_the_folder_run(model_dir: Path) -> None:
    reason = "the webui was started with --hide-ui-dir-config"
    ui = build(RuntimeSettings(models_dirs=[model_dir.parent]), folders_disabled=reason)
    button = ui.vlm_panel.widgets["caption_folder"]
    assert getattr(button, "visible", True) is False


def pick(page: object, elem_id: str, value: str) -> None:
    """Choose a value in a dropdown (Gradio 3 and 4 both list them as ``ul.options li``)."""
    page.click(f"#{elem_id} input")
    option = page.locator("ul.options li", has_text=value).first
    option.wait_for(timeout=10_000)
    option.click()


@pytest.fixture
def endpoint() -> Iterator[object]:
    """The tests' fake OpenAI-compatible server."""
    pytest.importorskip("openai")
    from vlm_server import FakeVlm

    fake = FakeVlm().start()
    yield fake
    fake.stop()


@pytest.mark.skipif(not chromium.available(), reason=f"no {chromium.CHROMIUM}")
def test_caption_an_image_and_a_folder_in_the_browser(
    endpoint: object, model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("playwright.sync_api")
    from vlm_server import default_text

    from tagger.ui.app import launch

    monkeypatch.setenv(KEY_ENV, "sk-browser-000000000000")
    port = chromium.free_port()
    settings = RuntimeSettings(default_model="tiny-v3", models_dirs=[model_dir.parent])
    demo = launch(settings, port=port, presets_dir=tmp_path / "presets", block=False)
    try:
        with chromium.open_page(f"http://127.0.0.1:{port}/", "#tagger_interrogate") as page:
            page.click("#tagger_vlm .label-wrap, #tagger_vlm > button, #tagger_vlm")
            page.wait_for_selector("#tagger_vlm_url textarea, #tagger_vlm_url input")
            pick(page, "tagger_vlm_template", "booru-tags")
            page.wait_for_function(
                "t => document.querySelector('#tagger_vlm_prompt textarea').value === t",
                arg=BUILTIN["booru-tags"].user,
                timeout=20_000,
            )
            pick(page, "tagger_vlm_template", "dense")
            page.fill("#tagger_vlm_url textarea, #tagger_vlm_url input", endpoint.url)
            page.fill("#tagger_vlm_model textarea, #tagger_vlm_model input", "m")
            page.fill("#tagger_vlm_key_env textarea, #tagger_vlm_key_env input", KEY_ENV)
            image = make_image(tmp_path / "upload.png", (64, 48), seed=5)
            page.set_input_files("#tagger_image input[type=file]", str(image))
            page.wait_for_selector("#tagger_image img", timeout=30_000)
            page.click("#tagger_vlm_caption_image")
            page.wait_for_function(
                "document.querySelector('#tagger_vlm_caption textarea').value.length > 0",
                timeout=60_000,
            )
            (record,) = endpoint.requests
            caption = page.locator("#tagger_vlm_caption textarea").input_value()
            assert caption == default_text(record.image_id)
            assert "contradict them: " in record.user_text  # guided by the tab's tagger
            assert "Prompt sent" in page.inner_html("#tagger_vlm_info")
            # A folder: the progress line, then the summary with the tokens.
            folder = tmp_path / "data"
            for i in range(4):
                make_image(folder / f"img{i}.png", (32, 30 + i), seed=i)
            page.click("#tagger_batch_tab-button, button:has-text('Batch from folder')")
            page.fill("#tagger_input_dir textarea, #tagger_input_dir input", str(folder))
            page.click("#tagger_vlm_caption_folder")
            page.wait_for_function(
                "document.querySelector('#tagger_vlm_summary').innerText.includes('tokens:')",
                timeout=60_000,
            )
            summary = page.inner_text("#tagger_vlm_summary")
            assert "4 found, 4 written" in summary
            assert len(list(folder.glob("*.caption"))) == 4
            assert len(list(folder.glob("*.txt"))) == 4
    finally:
        demo.close()


def test_folder_run_reports_to_the_webuis_state(
    webui: object,
    endpoint: object,
    model_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import gradio as gr

    from tagger.ui.blocks import TaggerUI
    from tagger.ui.form import to_widget
    from tagger.ui.vlm_actions import PanelValues
    from tagger.webui.tab import webui_host

    monkeypatch.setenv(KEY_ENV, "sk-webui-000000000000")
    host = webui_host()
    with gr.Blocks():
        ui = TaggerUI(host)
        ui.build()
    folder = tmp_path / "data"
    for i in range(5):
        make_image(folder / f"img{i}.png", (32, 30 + i), seed=i)
    values = PanelValues(url=endpoint.url, model="m", key_env=KEY_ENV, use_tags=False)
    values.prompt, values.system = BUILTIN["dense"].user, BUILTIN["dense"].system
    from dataclasses import astuple

    tags = [to_widget(spec, spec.default) for spec in ui.tag_specs]
    batch = [to_widget(spec, spec.default) for spec in ui.batch_specs]
    run = host.wrap_gpu(ui.vlm_panel.on_folder, 2)
    count, summary = run("task(vlm)", str(folder), str(model_dir), *astuple(values), *tags, *batch)
    assert webui.call_queue.tasks == ["task(vlm)"]
    assert count.startswith("5 images found; captions written beside the images in")
    assert "5 found, 5 written" in summary
    assert "tokens: " in summary
    state = webui.shared.state
    assert [(no, total) for no, total, _ in state.history] == [(i, 5) for i in range(1, 6)]
    assert len(list(folder.glob("*.caption"))) == 5
