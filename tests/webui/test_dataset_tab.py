"""The Dataset sub-tab inside the stand-in webui: its own Send to txt2img/img2img buttons, which
paste exactly the selected image's caption, and its folder fields hidden under
``--hide-ui-dir-config``."""

from __future__ import annotations

import importlib.util

import pytest

needs_gradio = pytest.mark.skipif(
    importlib.util.find_spec("gradio") is None, reason="the tab needs Gradio"
)


@needs_gradio
def test_dataset_subtab_has_send_to_buttons_of_its_own(webui) -> None:
    started = webui.start()
    by_id = {getattr(b, "elem_id", None): b for b in started.demo.blocks.values()}
    assert "tagger_dataset_tab" in by_id
    bindings = [
        b
        for b in webui.infotext_utils.registered_param_bindings
        if b.source_text_component.elem_id == "tagger_ds_paste_text"
    ]
    assert [b.tabname for b in bindings] == ["txt2img", "img2img"]
    assert {b.source_image_component.elem_id for b in bindings} == {"tagger_ds_image"}
    assert {b.source_text_component.visible for b in bindings} == {False}


@needs_gradio
@pytest.mark.parametrize(
    "caption",
    ["1girl, solo, long hair", "(1girl:0.99), (solo:0.97), (smile:0.8)", "re:zero, a: b, c: d", ""],
)
def test_send_to_pastes_exactly_the_caption(webui, caption: str) -> None:
    from tagger.ui.dataset import DatasetUI
    from tagger.webui.tab import webui_host

    ui = DatasetUI(webui_host())
    text = ui.on_paste_text(caption, "sub/a: b.png", ".txt")
    parsed = webui.infotext_utils.parse_generation_parameters(text)
    assert parsed["Prompt"] == caption
    assert parsed["Negative prompt"] == ""


@needs_gradio
def test_hide_ui_dir_config_hides_the_dataset_folder(webui, tmp_path) -> None:
    started = webui.start("--hide-ui-dir-config")
    by_id = {getattr(b, "elem_id", None): b for b in started.demo.blocks.values()}
    assert by_id["tagger_ds_note"].visible is True
    from tagger.ui.dataset import DatasetUI
    from tagger.webui.tab import webui_host

    ui = DatasetUI(webui_host())
    out = ui.on_load(str(tmp_path), ".txt", True, "")
    assert "not available" in out[2]
    assert "--hide-ui-dir-config" in out[2]
