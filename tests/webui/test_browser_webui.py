"""The Tagger tab inside the stand-in webui's page, in headless Chromium: after a restart the tab
shows the Settings' defaults over an existing ui-config.json, a preset saved in the page is
listed after a browser reload, and "Send to txt2img" pastes a weighted prompt into txt2img."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import chromium
import pytest
from tiny import make_image

pytest.importorskip("gradio")
pytest.importorskip("playwright.sync_api")
pytestmark = pytest.mark.skipif(not chromium.available(), reason=f"no {chromium.CHROMIUM}")

SETTINGS = {
    "tagger_default_model": "tiny-v3",
    "tagger_general_threshold": 0.2,
    "tagger_character_threshold": 0.7,
}


@pytest.fixture
def served(webui, model_dir: Path, tmp_path: Path, monkeypatch) -> str:
    """The webui's second start: Settings saved in config.json, a ui-config.json holding what an
    older version of the tab recorded at the first start; the page served on 127.0.0.1."""
    import tagger.ui.blocks

    monkeypatch.setattr(tagger.ui.blocks, "default_presets_dir", lambda: tmp_path / "presets")
    shutil.copytree(model_dir, webui.root / "models" / "TaggerOnnx" / "tiny-v3")
    webui.start()
    webui.restart()
    recorded = json.loads(webui.ui_config().read_text())
    recorded.update(
        {
            "tagger/Tagger/value": "wd-vit-tagger-v3",
            "tagger/General threshold/value": 0.35,
            "tagger/Character threshold/value": 0.85,
        }
    )
    webui.ui_config().write_text(json.dumps(recorded, indent=4))
    webui.config().write_text(json.dumps(SETTINGS))
    return webui.start("--port", str(chromium.free_port()), serve=True).url


def open_tagger_tab(page) -> None:
    """Click the webui's "Tagger" tab button."""
    page.locator("#tabs button").filter(has_text=re.compile(r"^\s*Tagger\s*$")).first.click()
    page.wait_for_selector("#tagger_interrogate", state="visible", timeout=30_000)


def number_of(page, elem_id: str) -> float:
    """A slider's number box."""
    return float(page.locator(f"#{elem_id} input[type=number]").input_value())


def preset_choices(page) -> list[str]:
    """Open the preset dropdown and read its options."""
    page.click("#tagger_preset input")
    options = page.locator("ul.options li")
    options.first.wait_for(timeout=10_000)
    names = [text.strip() for text in options.all_inner_texts()]
    page.keyboard.press("Escape")
    return names


def test_the_tab_in_the_webui_page(served: str, tmp_path: Path, model_dir: Path) -> None:
    from PIL import Image

    from tagger.cache import get_tagger
    from tagger.options import TagOptions
    from tagger.registry import local_spec
    from tagger.tags import format_tags

    with chromium.open_page(served, "#tagger_interrogate") as page:
        open_tagger_tab(page)
        # Settings' defaults, not what ui-config.json recorded before.
        assert page.locator("#tagger_model input").input_value() == "tiny-v3"
        assert number_of(page, "tagger_opt_general_threshold") == 0.2
        assert number_of(page, "tagger_opt_character_threshold") == 0.7

        # A preset saved in this page is listed after a reload of the page.
        page.click("#tagger_presets")
        page.fill("#tagger_preset_name textarea, #tagger_preset_name input", "after reload")
        page.click("#tagger_preset_save")
        page.wait_for_selector("#tagger_info:has-text('Saved preset after reload')")
        assert (tmp_path / "presets" / "after reload.json").is_file()
        page.reload()
        page.wait_for_function("window.tagger_loaded === true", timeout=30_000)
        open_tagger_tab(page)
        page.click("#tagger_presets")
        assert preset_choices(page) == ["after reload"]

        # Send to txt2img with weights: the prompt arrives as it is.
        image_path = make_image(tmp_path / "upload.png", (64, 48), seed=5)
        options = TagOptions(general_threshold=0.2, character_threshold=0.7, include_weights=True)
        result = get_tagger(local_spec(model_dir)).tag_batch(
            [Image.open(image_path).convert("RGB")], options
        )[0]
        expected = format_tags(result, options)
        assert expected.count(":") >= 3  # enough weights for the host to misread it
        page.set_input_files("#tagger_image input[type=file]", str(image_path))
        page.wait_for_selector("#tagger_image img", timeout=30_000)
        page.click("#tagger_tag_options")
        page.check("#tagger_opt_include_weights input[type=checkbox]")
        page.click("#tagger_interrogate")
        page.wait_for_function(
            "document.querySelector('#tagger_prompt textarea').value.length > 0", timeout=60_000
        )
        assert page.locator("#tagger_prompt textarea").input_value() == expected
        # the host names every Send to txt2img button txt2img_tab (the Dataset sub-tab has one too)
        page.click("#txt2img_tab:visible")
        page.wait_for_function(
            "text => document.querySelector('#txt2img_prompt textarea').value === text",
            arg=expected,
            timeout=30_000,
        )
        assert page.evaluate("window.tagger_host_calls") == ["switch_to_txt2img"]
        assert page.locator("#txt2img_prompt textarea").is_visible()
