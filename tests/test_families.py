"""Tagger families: folder detection, vocabulary formats, each family's preprocessing against a
plain re-statement of its published code, scores through onnxruntime, categories and
thresholds (tiny models built in the session)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import reference_families as ref
import tiny_families as tf
from PIL import Image

from tagger.cache import get_tagger
from tagger.errors import LabelsError, ModelLoadError, OptionsError
from tagger.families.layouts import detect_family
from tagger.families.model import FamilyTagger
from tagger.families.vocab import load_tags_csv, load_thresholds
from tagger.image import load_image
from tagger.options import TagOptions
from tagger.registry import REGISTRY, local_spec, resolve_model

BUILDERS = {
    "pixai": (tf.make_pixai, ref.pixai_stages),
    "cl_tagger": (tf.make_cl_tagger, ref.cl_tagger),
    "camie": (tf.make_camie, ref.camie),
    "z3d": (tf.make_z3d, ref.z3d),
    "mldanbooru": (tf.make_mldanbooru, ref.mldanbooru),
    "onnx": (tf.make_declared, ref.declared),
}
#: Families whose graph ends in logits (the reference applies the sigmoid).
LOGITS = {"cl_tagger", "camie", "mldanbooru", "onnx"}


def _image(size: tuple[int, int], seed: int) -> Image.Image:
    """A random-block RGB image (content varies across the frame)."""
    rng = np.random.default_rng(seed)
    blocks = rng.integers(0, 256, size=(5, 7, 3), dtype=np.uint8)
    return Image.fromarray(blocks, "RGB").resize(size, Image.NEAREST)


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("families")
    made = {name: build(root / name) for name, (build, _) in BUILDERS.items()}
    made["idolsankaku"] = tf.make_idolsankaku_nchw(root / "idolsankaku")
    return made


def test_folders_are_detected_by_their_files(folders: dict[str, Path]) -> None:
    found = {name: detect_family(path) for name, path in folders.items()}
    assert found == {
        "pixai": "pixai",
        "cl_tagger": "cl_tagger",
        "camie": "camie",
        "z3d": "z3d",
        "mldanbooru": "mldanbooru",
        "onnx": "onnx",
        "idolsankaku": "wd14",  # SmilingWolf's file names: WD14 layout
    }
    assert local_spec(folders["camie"]).family == "camie"
    assert resolve_model(str(folders["cl_tagger"])).family == "cl_tagger"


@pytest.mark.parametrize("name", sorted(BUILDERS))
@pytest.mark.parametrize("shape", [(32, 32), (50, 23), (17, 40), (64, 96)])
def test_preprocessing_and_scores_equal_the_reference(
    folders: dict[str, Path], name: str, shape: tuple[int, int]
) -> None:
    _, reference = BUILDERS[name]
    tagger = get_tagger(local_spec(folders[name]), providers="cpu")
    image = _image(shape, seed=shape[0])
    ours = tagger.preprocess(image)
    theirs = reference(image, 32)
    assert ours.shape == theirs.shape
    np.testing.assert_array_equal(ours, theirs)
    session = ort.InferenceSession(str(tagger.spec.path / tagger.spec.setting("model_file")))
    output = tagger._output
    expected = session.run([output], {session.get_inputs()[0].name: theirs[None]})[0][0]
    if name in LOGITS:
        expected = ref.sigmoid(expected)
    np.testing.assert_allclose(tagger.forward(ours[None])[0], expected, rtol=0, atol=1e-6)


def test_idolsankaku_nchw_export_uses_its_own_preprocessing(folders: dict[str, Path]) -> None:
    spec = REGISTRY["idolsankaku-swinv2-tagger-v1"]
    from dataclasses import replace

    local = replace(spec, path=folders["idolsankaku"], files=("model.onnx", "selected_tags.csv"))
    tagger = FamilyTagger(local, providers="cpu").load()
    image = _image((40, 25), 3)
    np.testing.assert_array_equal(tagger.preprocess(image), ref.idolsankaku_nchw(image, 32))
    result = tagger.tag_batch([image], TagOptions(general_threshold=0.0))[0]
    assert list(result.rating) == ["safe", "questionable", "explicit"]


def test_wd14_layout_family_uses_the_wd_path(tmp_path: Path) -> None:
    import tiny

    from tagger.wd14 import prepare_image

    folder = tiny.make_model_dir(tmp_path / "wd")
    spec = replace_family(local_spec(folder), "idolsankaku")
    tagger = FamilyTagger(spec, providers="cpu").load()
    image = _image((30, 45), 9)
    np.testing.assert_array_equal(tagger.preprocess(image), prepare_image(image, 32))


def replace_family(spec, family):
    from dataclasses import replace

    return replace(
        spec,
        family=family,
        settings=(("model_file", "model.onnx"), ("labels_file", "selected_tags.csv")),
    )


def test_transparent_images_are_composited_on_white_first(
    folders: dict[str, Path], tmp_path: Path
) -> None:
    rgba = Image.new("RGBA", (20, 30), (255, 0, 0, 0))
    rgba.paste((0, 0, 255, 255), (5, 5, 15, 25))
    path = tmp_path / "a.png"
    rgba.save(path)
    loaded = load_image(path)
    white = Image.new("RGB", rgba.size, (255, 255, 255))
    white.paste(rgba, mask=rgba.split()[3])
    tagger = get_tagger(local_spec(folders["camie"]), providers="cpu")
    np.testing.assert_array_equal(tagger.preprocess(loaded), ref.camie(white, 32))


# ----------------------------------------------------------------------- categories and thresholds


def test_cl_tagger_routes_every_category(folders: dict[str, Path]) -> None:
    tagger = get_tagger(local_spec(folders["cl_tagger"]), providers="cpu")
    labels = tagger.labels
    assert labels.rating == (0, 1)
    assert labels.general == (2, 3, 4)
    assert labels.character == (5,)
    assert dict(labels.other) == {
        "copyright": (6,),
        "artist": (7,),
        "meta": (8,),
        "quality": (9, 10),
        "model": (11,),
    }
    scores = tagger.forward(tagger.preprocess(_image((32, 32), 1))[None])[0]
    options = TagOptions(
        general_threshold=0.0,
        character_threshold=0.0,
        category_thresholds={"copyright": 0.0, "artist": 1.5, "meta": 0.0, "model": 0.0},
    )
    result = tagger.postprocess(scores, options)
    assert set(result.general) == {"1girl", "solo", "long_hair"}
    assert set(result.character) == {"hatsune_miku"}
    assert "artist" not in result.other  # a threshold above 1 turns the category off
    assert set(result.other) == {"copyright", "meta", "model", "quality"}
    assert result.other["quality"] == {
        "masterpiece": pytest.approx(float(scores[9])),
        "best_quality": pytest.approx(float(scores[10])),
    }


def test_category_threshold_is_strict_and_exact() -> None:
    from tagger.families.selection import select_vocabulary
    from tagger.families.vocab import vocabulary_from_rows

    v = vocabulary_from_rows(
        [("1girl", "general"), ("vocaloid", "copyright"), ("x_artist", "artist")]
    )
    probs = [0.5, 0.4, 0.4]
    r = select_vocabulary(probs, v, TagOptions(category_thresholds={"copyright": 0.4}))
    assert r.general == {"1girl": 0.5}
    assert r.other == {"artist": {"x_artist": 0.4}}  # artist uses the general 0.35; 0.4 > 0.4 no


def test_mcut_per_category() -> None:
    from tagger.families.selection import select_vocabulary
    from tagger.families.vocab import vocabulary_from_rows

    v = vocabulary_from_rows([(f"a{i}", "artist") for i in range(4)])
    probs = [0.9, 0.85, 0.3, 0.2]
    r = select_vocabulary(probs, v, TagOptions(mcut_categories=["artist"]))
    assert r.other == {"artist": {"a0": 0.9, "a1": 0.85}}  # MCut threshold 0.575


def test_pixai_ships_per_category_thresholds(folders: dict[str, Path]) -> None:
    tagger = get_tagger(local_spec(folders["pixai"]), providers="cpu")
    assert dict(tagger.labels.category_thresholds) == {"general": 0.3, "character": 0.85}
    scores = tagger.forward(tagger.preprocess(_image((32, 32), 4))[None])[0]
    general = {n: float(scores[i]) for i, n in enumerate(tf.GENERAL)}
    ours = tagger.postprocess(scores, TagOptions()).general
    assert ours == {n: s for n, s in sorted(general.items(), key=lambda x: -x[1]) if s > 0.3}
    off = tagger.postprocess(scores, TagOptions(model_thresholds=False)).general
    assert set(off) == {n for n, s in general.items() if s > 0.35}


def test_per_tag_thresholds(tmp_path: Path) -> None:
    path = tmp_path / "selected_tags.csv"
    path.write_text("name,category\n1girl,0\nsolo,0\n", encoding="utf-8")
    (tmp_path / "t.csv").write_text("name,threshold\nsolo,0.9\n", encoding="utf-8")
    v = load_thresholds(tmp_path / "t.csv", load_tags_csv(path))
    assert dict(v.tag_thresholds) == {1: 0.9}
    r = v.select([0.5, 0.8], TagOptions())
    assert r.general == {"1girl": 0.5}  # solo needs > 0.9
    assert v.select([0.5, 0.8], TagOptions(model_thresholds=False)).general == {
        "solo": 0.8,
        "1girl": 0.5,
    }
    (tmp_path / "bad.csv").write_text("name,threshold\nnope,0.9\n", encoding="utf-8")
    with pytest.raises(LabelsError, match="row 2: tag 'nope' is not in the model's tags"):
        load_thresholds(tmp_path / "bad.csv", v)


def test_camie_profiles(folders: dict[str, Path]) -> None:
    tagger = get_tagger(local_spec(folders["camie"]), providers="cpu")
    assert set(tagger.labels.profiles) == {
        "micro_optimized",
        "macro_optimized",
        "balanced",
        "overall",
    }
    scores = tagger.forward(tagger.preprocess(_image((40, 30), 2))[None])[0]
    result = tagger.postprocess(scores, TagOptions(threshold_profile="micro_optimized"))
    kept = {
        **result.general,
        **result.character,
        **{n: s for c, g in result.other.items() for n, s in g.items()},
    }
    expected = {
        name: float(scores[i])
        for i, (name, cat) in enumerate(tf.CAMIE_TAGS)
        if cat != "rating" and scores[i] > 0.614
    }
    assert kept == pytest.approx(expected)
    with pytest.raises(OptionsError, match="'fast' is not one of this model's: micro_optimized"):
        tagger.postprocess(scores, TagOptions(threshold_profile="fast"))


def test_quality_tag_and_character_expand_in_captions() -> None:
    from tagger.families.vocab import vocabulary_from_rows
    from tagger.tags import format_tags

    v = vocabulary_from_rows(
        [
            ("general", "rating"),
            ("masterpiece", "quality"),
            ("normal_quality", "quality"),
            ("1girl", "general"),
            ("kasumi_(pokemon)", "character"),
            ("pokemon", "copyright"),
        ]
    )
    options = TagOptions(
        rating_tag="first",
        quality_tag="last",
        character_tags_first=True,
        character_tag_expand=True,
        category_thresholds={"copyright": 0.5},
    )
    result = v.select([0.9, 0.8, 0.1, 0.95, 0.99, 0.6], options)
    assert format_tags(result, options) == "general, kasumi, pokemon, 1girl, masterpiece"


def test_vocabulary_errors_name_the_file_and_row(tmp_path: Path) -> None:
    from tagger.families.vocab import load_camie_metadata, load_tag_mapping

    bad = tmp_path / "tag_mapping.json"
    bad.write_text('{"0": {"tag": "a", "category": "General"}, "2": {"tag": "b"}}')
    with pytest.raises(LabelsError, match=r"tag indices must run 0\.\.1"):
        load_tag_mapping(bad)
    meta = tmp_path / "m.json"
    meta.write_text('{"model_info": {}}')
    with pytest.raises(LabelsError, match="not a Camie metadata file"):
        load_camie_metadata(meta)
    csv_file = tmp_path / "tags.csv"
    csv_file.write_text("name,category\n1girl,x\n")
    with pytest.raises(LabelsError, match="row 2: category 'x' of tag '1girl' is not an integer"):
        load_tags_csv(csv_file)


def test_mismatched_files_are_refused(tmp_path: Path) -> None:
    folder = tf.make_cl_tagger(tmp_path / "cl")
    mapping = json.loads((folder / "tag_mapping.json").read_text())
    mapping.pop(str(len(mapping) - 1))
    (folder / "tag_mapping.json").write_text(json.dumps(mapping))
    with pytest.raises(ModelLoadError, match="has 12 scores but the tag file lists 11 tags"):
        FamilyTagger(local_spec(folder), providers="cpu").load()


def test_declared_config_errors(tmp_path: Path) -> None:
    folder = tf.make_declared(tmp_path / "net")
    config = json.loads((folder / "tagger.json").read_text())
    config["colour"] = "rgb"
    (folder / "tagger.json").write_text(json.dumps(config))
    with pytest.raises(ModelLoadError, match="unknown keys colour"):
        FamilyTagger(local_spec(folder), providers="cpu").load()


def test_gated_repository_message(monkeypatch: pytest.MonkeyPatch) -> None:
    from tagger.errors import ModelFilesMissingError

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    spec = REGISTRY["pixai-tagger-v0.9"]
    with pytest.raises(ModelFilesMissingError, match=r"gated repository .* set HF_TOKEN=<token>"):
        FamilyTagger(spec, providers="cpu").load()


def test_z3d_reads_e621_categories(folders: dict[str, Path]) -> None:
    tagger = get_tagger(local_spec(folders["z3d"]), providers="cpu")
    labels = tagger.labels
    assert labels.general == (0, 1)
    assert dict(labels.other) == {"species": (2,), "artist": (3,), "meta": (4,)}
    assert labels.rating == ()
    scores = tagger.forward(tagger.preprocess(_image((30, 30), 5))[None])[0]
    result = tagger.postprocess(scores, TagOptions(general_threshold=0.0))
    assert set(result.other) == {"species", "artist", "meta"}  # all use the general threshold


def test_mldanbooru_tags_are_general(folders: dict[str, Path]) -> None:
    tagger = get_tagger(local_spec(folders["mldanbooru"]), providers="cpu")
    assert tagger.labels.general == tuple(range(len(tf.GENERAL)))
    assert tagger.labels.rating == ()
