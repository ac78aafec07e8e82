"""The tab's actions (no Gradio needed) with other tagger families: the picker lists them, one
image and a folder are tagged with the family's preprocessing; the category boxes' text."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import tiny_families as tf
from tiny import make_image

from tagger.cache import get_tagger
from tagger.image import load_image
from tagger.options import BatchOptions, TagOptions
from tagger.registry import local_spec
from tagger.ui import actions
from tagger.ui.categories import box_values, boxes_text
from tagger.ui.host import Progress, RuntimeSettings


@pytest.fixture
def settings(tmp_path: Path) -> RuntimeSettings:
    models = tmp_path / "models"
    tf.make_camie(models / "camie")
    tf.make_cl_tagger(models / "cl")
    return RuntimeSettings(models_dirs=[models], providers="cpu")


def test_picker_lists_every_family(settings: RuntimeSettings) -> None:
    choices = actions.tagger_choices(settings)
    assert choices[:2] == ["camie", "cl"]
    assert "pixai-tagger-v0.9" in choices
    assert "camie-tagger-v2" in choices


def test_single_image_shows_further_categories(settings: RuntimeSettings, tmp_path: Path) -> None:
    image = make_image(tmp_path / "a.png", (40, 30), seed=2)
    options = TagOptions(general_threshold=0.0, category_thresholds={"copyright": 0.0})
    result = actions.interrogate(str(image), "cl", None, options, settings)
    tagger = get_tagger(local_spec(settings.models_dirs[0] / "cl"), providers="cpu")
    scores = tagger.forward(tagger.preprocess(load_image(image))[None])[0]
    expected = tagger.postprocess(scores, options)
    assert "vocaloid" in result.general  # copyright tags are listed with the general ones
    assert result.general["vocaloid"] == pytest.approx(expected.other["copyright"]["vocaloid"])
    assert "vocaloid" in result.prompt


def test_folder_run_with_a_family(settings: RuntimeSettings, tmp_path: Path) -> None:
    folder = tmp_path / "data"
    for i in range(2):
        make_image(folder / f"{i}.png", (36, 28), seed=i)
    summary = actions.run_folder(
        str(folder),
        "camie",
        TagOptions(category_thresholds={"year": 0.0}),
        BatchOptions(write_json=True),
        settings,
        Progress(),
    )
    assert summary.written == 2
    assert "year" in json.loads((folder / "0.json").read_text())


def test_category_boxes_text_round_trip() -> None:
    text = boxes_text([0.5, None, 2, "", None, 0.3])
    assert text == "copyright,0.5;meta,2.0;species,0.3"
    from tagger.option_text import parse_replacements

    mapping = {k: float(v) for k, v in parse_replacements(text).items()}
    assert box_values(mapping) == [0.5, None, 2.0, None, None, 0.3]


def test_category_thresholds_widget_round_trip() -> None:
    from tagger.ui.form import build_options, field_specs, to_widget

    spec = next(s for s in field_specs(TagOptions) if s.key == "category_thresholds")
    assert spec.kind == "mapping"
    text = to_widget(spec, {"copyright": 0.5, "year": 2.0})
    assert text == "copyright,0.5;year,2.0"
    options = build_options(TagOptions, {"category_thresholds": text})
    assert options.category_thresholds == {"copyright": 0.5, "year": 2.0}
