"""The host's ui-config.json against the Settings page: what the tab shows after a restart.

The stand-in's ``ui_loadsave`` records every labelled component's first value at the first start
and applies the file over the code's values at every later start, as the webui does; the tab keeps
the widgets whose defaults come from Settings out of it.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

pytest.importorskip("gradio")

SETTINGS_DRIVEN = ("Tagger", "Captioner", "General threshold", "Character threshold")
#: What the webui wrote at the first start of a tab without the marks (this extension before
#: they were added): the code's values, recorded.
OLD_UI_CONFIG = {
    "tagger/Tagger/visible": True,
    "tagger/Tagger/value": "wd-vit-tagger-v3",
    "tagger/Captioner/value": "",
    "tagger/General threshold/visible": True,
    "tagger/General threshold/value": 0.35,
    "tagger/General threshold/minimum": 0.0,
    "tagger/General threshold/maximum": 1.0,
    "tagger/General threshold/step": 0.01,
    "tagger/Character threshold/visible": True,
    "tagger/Character threshold/value": 0.85,
    "tagger/Character threshold/minimum": 0.0,
    "tagger/Character threshold/maximum": 1.0,
    "tagger/Character threshold/step": 0.01,
}


def components(demo) -> dict:
    """The page's components by elem_id."""
    return {b.elem_id: b for b in demo.blocks.values() if getattr(b, "elem_id", None)}


def install_model(webui, model_dir: Path) -> None:
    """The tiny model as the folder models/TaggerOnnx/tiny-v3."""
    shutil.copytree(model_dir, webui.root / "models" / "TaggerOnnx" / "tiny-v3")


def test_first_start_records_the_tab_but_not_what_settings_decide(webui, model_dir) -> None:
    install_model(webui, model_dir)
    webui.start()
    recorded = json.loads(webui.ui_config().read_text())
    assert recorded["tagger/Exclude tags/value"] == ""
    assert recorded["tagger/Include weights/value"] is False
    assert recorded["txt2img/Prompt/value"] == ""
    tagger_keys = {key.split("/")[1] for key in recorded if key.startswith("tagger/")}
    assert tagger_keys.isdisjoint(SETTINGS_DRIVEN)


def test_settings_defaults_win_over_an_existing_ui_config_after_restart(webui, model_dir) -> None:
    install_model(webui, model_dir)
    webui.start()  # the first start writes ui-config.json
    webui.restart()
    # The user chose defaults in Settings (saved in config.json) and one value of their own on
    # the webui's Defaults page; ui-config.json also holds what an older version recorded.
    webui.config().write_text(
        json.dumps(
            {
                "tagger_default_model": "tiny-v3",
                "tagger_general_threshold": 0.6,
                "tagger_character_threshold": 0.9,
            }
        )
    )
    saved = json.loads(webui.ui_config().read_text())
    saved.update(OLD_UI_CONFIG)
    saved["tagger/Exclude tags/value"] = "solo, hat"
    webui.ui_config().write_text(json.dumps(saved, indent=4))
    page = components(webui.start().demo)
    assert page["tagger_model"].value == "tiny-v3"
    assert page["tagger_opt_general_threshold"].value == 0.6
    assert page["tagger_opt_character_threshold"].value == 0.9
    assert page["tagger_opt_exclude_tags"].value == "solo, hat"  # the file still applies
    assert json.loads(webui.ui_config().read_text()) == saved  # nothing new to record


def test_without_the_marks_the_host_would_override_settings(webui, model_dir, monkeypatch):
    """The stand-in reproduces the webui's behaviour that made the marks necessary."""
    import tagger.webui.tab

    install_model(webui, model_dir)
    webui.config().write_text(json.dumps({"tagger_general_threshold": 0.6}))
    webui.ui_config().write_text(json.dumps(OLD_UI_CONFIG))
    monkeypatch.setattr(tagger.webui.tab, "keep_out_of_ui_config", lambda components: None)
    page = components(webui.start().demo)
    assert page["tagger_opt_general_threshold"].value == 0.35
