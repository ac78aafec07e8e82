"""Selective Blind Guessing: label files read without running code, keyword selection equal to
the published algorithm, generation equal to transformers' text-generation pipeline, the CLIP
rerank, the cached text embeddings, and the CLI end to end on a tiny model folder."""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import pytest
import reference_sbg
from tiny_sbg import ENCYCLOPEDIA, LABELS, make_sbg_dir

from tagger.captioners import get_captioner
from tagger.captioners.sbg import SbgCaptioner, fetch_file, rerank, sha256_of
from tagger.captioners.sbg_vocab import (
    build_hierarchy,
    convert_to_json,
    load_plain_pickle,
    read_data_file,
    select_keywords,
    softmax100,
    validate_encyclopedia,
    validate_labels,
)
from tagger.cli import main
from tagger.errors import ModelFilesMissingError, ModelLoadError, UnsafeCheckpointError
from tagger.options import CaptionOptions
from tagger.registry import resolve_captioner

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("open_clip")

SEEDS = range(6)


@pytest.fixture(scope="module")
def sbg_dir(tmp_path_factory: pytest.TempPathFactory, clip_dir: Path) -> Path:
    return make_sbg_dir(tmp_path_factory.mktemp("captioners") / "tiny-sbg", clip_dir)


@pytest.fixture(autouse=True)
def _own_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TAGGER_CACHE_DIR", str(tmp_path / "cache"))


def images(count: int, size: int = 40) -> list:
    from PIL import Image

    generator = torch.Generator().manual_seed(7)
    out = []
    for _ in range(count):
        pixels = (torch.rand(size, size, 3, generator=generator) * 255).to(torch.uint8).numpy()
        out.append(Image.fromarray(pixels))
    return out


def loaded(sbg_dir: Path) -> SbgCaptioner:
    captioner = get_captioner(str(sbg_dir), device="cpu")
    assert isinstance(captioner, SbgCaptioner)
    return captioner


# -- label files ---------------------------------------------------------------------------------


class Payload:
    """Unpickling this would create the marker folder."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (str(self.marker),))


def test_a_pickle_that_would_run_code_is_refused_without_running(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    bad = tmp_path / "all_labels.pkl"
    bad.write_bytes(pickle.dumps([("dog", "NOUN", 3), Payload(marker)]))
    with pytest.raises(UnsafeCheckpointError, match=r"refused to load.*(posix|os)\.mkdir"):
        load_plain_pickle(bad)
    assert not marker.exists()
    pickle.loads(bad.read_bytes())  # the payload is real: plain pickle runs it
    assert marker.is_dir()


def test_the_captioner_refuses_a_folder_with_a_code_pickle(
    tmp_path: Path, clip_dir: Path, sbg_dir: Path
) -> None:
    import shutil

    folder = tmp_path / "bad-sbg"
    shutil.copytree(sbg_dir, folder)
    marker = tmp_path / "ran"
    (folder / "encyclopedia.pkl").write_bytes(pickle.dumps({"scenery": Payload(marker)}))
    with pytest.raises(UnsafeCheckpointError, match=r"encyclopedia\.pkl"):
        get_captioner(str(folder), device="cpu")
    assert not marker.exists()


def test_plain_pickles_and_json_twins_load_alike(tmp_path: Path, sbg_dir: Path) -> None:
    labels = read_data_file(sbg_dir / "all_labels.pkl")
    assert labels == LABELS
    assert read_data_file(sbg_dir / "encyclopedia.pkl") == ENCYCLOPEDIA
    target = convert_to_json(sbg_dir / "encyclopedia.pkl", tmp_path / "encyclopedia.json")
    assert json.loads(target.read_text(encoding="utf-8")) == ENCYCLOPEDIA
    assert validate_labels(read_data_file(sbg_dir / "all_labels.pkl"), "x") == LABELS


def test_malformed_label_files_name_what_is_wrong() -> None:
    with pytest.raises(ModelLoadError, match=r"label 1 is \('dog',\)"):
        validate_labels([("a", "NOUN", 1), ("dog",)], "labels")
    bad = {k: v for k, v in ENCYCLOPEDIA.items() if k != "time"}
    with pytest.raises(ModelLoadError, match="'time' must be a dict"):
        validate_encyclopedia(bad, "enc")
    with pytest.raises(ModelLoadError, match="human"):
        validate_encyclopedia({**ENCYCLOPEDIA, "human": [1, 2]}, "enc")


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_plain_data_loads_in_every_pickle_protocol(tmp_path: Path, protocol: int) -> None:
    file = tmp_path / "data.pkl"
    data = {"labels": LABELS, "encyclopedia": ENCYCLOPEDIA, "none": None, "f": 1.5}
    file.write_bytes(pickle.dumps(data, protocol=protocol))
    assert load_plain_pickle(file) == data


# -- keyword selection ---------------------------------------------------------------------------


def _reference_encoder(captioner: SbgCaptioner):
    clip = captioner.clip

    def encode(texts: list[str]):
        features = clip.model.encode_text(clip.tokenizer(texts))
        return features / features.norm(dim=-1, keepdim=True)

    return encode


@pytest.mark.parametrize("seed", SEEDS)
def test_keyword_selection_equals_the_published_algorithm(sbg_dir: Path, seed: int) -> None:
    captioner = loaded(sbg_dir)
    image = images(len(SEEDS))[seed]
    batch = captioner.collate([captioner.preprocess(image)])
    embedding = captioner.image_embeddings(batch)
    ours = captioner.select((captioner.embeddings @ embedding.T)[:, 0])
    with torch.no_grad():
        img = torch.from_numpy(embedding)
        expected = reference_sbg.select_keywords(
            img, _reference_encoder(captioner), LABELS, ENCYCLOPEDIA
        )
    assert [word for word, _ in ours.keywords] == expected


def _synthetic(boost: dict[str, float], texts: list[str], dim: int = 24, seed: int = 0):
    """Random unit text embeddings, an image embedding, and texts pulled towards the image by
    ``boost`` (so a test decides which prompt wins each group)."""
    generator = torch.Generator().manual_seed(seed)
    image = torch.nn.functional.normalize(torch.randn(1, dim, generator=generator), dim=-1)
    table = {}
    for text in texts:
        vector = torch.randn(dim, generator=generator) * 0.05
        vector = vector + boost.get(text, 0.0) * image[0]
        table[text] = torch.nn.functional.normalize(vector, dim=-1)

    def encode(items: list[str]):
        if not items:
            return torch.zeros(0, dim)
        return torch.stack([table[t] for t in items])

    return image, encode


BRANCHES = {
    "people, animal, indoor": {
        "picture of people and animal.": 1.0,
        "picture of indoor.": 1.0,
        "picture of rural landscape.": 0.2,
        "activity is holding.": 1.0,
    },
    "plant, empty subclasses": {
        "picture of plant.": 1.0,
        "picture of rural landscape.": 1.0,
        "picture of food.": 1.0,
        "picture during evening.": 1.0,
    },
    "animal only, activity": {
        "picture of animal and some object.": 1.0,
        "picture of bird.": 1.0,
        "activity is leisure activity.": 1.0,
        "dog": 0.8,
    },
}


@pytest.mark.parametrize("case", list(BRANCHES))
def test_every_branch_of_the_hierarchy_matches_the_published_code(case: str) -> None:
    hierarchy = build_hierarchy(LABELS, ENCYCLOPEDIA)
    image, encode = _synthetic(BRANCHES[case], hierarchy.texts())

    def score(texts):
        similarities = (encode(list(texts)) @ image[0]).tolist()
        return softmax100(similarities)

    ours = select_keywords(score, hierarchy)
    expected = reference_sbg.select_keywords(image, encode, LABELS, ENCYCLOPEDIA)
    assert [word for word, _ in ours.keywords] == expected
    if case.startswith("people"):
        assert "indoor" in ours.branches["landscape"]
        assert "weather" not in ours.branches  # indoor: no weather
        assert ours.branches["activity"]
    if case.startswith("plant"):
        assert ours.branches["landscape"] == ["rural landscape"]  # no members
        assert "activity" not in ours.branches  # no people, no animal


# -- generation and rerank ---------------------------------------------------------------------


def test_generation_equals_the_text_generation_pipeline(sbg_dir: Path) -> None:
    from transformers import pipeline

    captioner = loaded(sbg_dir)
    prompt = "dog, grass, run ###"
    generator = pipeline(
        "text-generation", model=captioner.generator, tokenizer=captioner.tokenizer, device="cpu"
    )
    for seed in (0, 3):
        options = CaptionOptions(seed=seed, candidates=4)
        ours = captioner.candidates(prompt, options)
        torch.manual_seed(seed)
        raw, finished = reference_sbg.generate_candidates(
            generator, captioner.tokenizer.eos_token_id, prompt, 4, max_length=40
        )
        assert ours == raw
        assert [t.strip().split(".")[0].strip() + " ." for t in ours] == finished


def test_candidates_in_one_batch_equal_the_pipeline_drawing_them_together(sbg_dir: Path) -> None:
    """The published code draws each candidate in its own call; one call of N draws from the
    same distribution, and a seed fixes them."""
    captioner = loaded(sbg_dir)
    options = CaptionOptions(seed=11, candidates=3)
    assert captioner.candidates("dog ###", options) == captioner.candidates("dog ###", options)


def test_rerank_picks_the_clip_argmax(sbg_dir: Path) -> None:
    captioner = loaded(sbg_dir)
    picture = images(1)[0]
    (result,) = captioner.forward(
        captioner.collate([captioner.preprocess(picture)]), CaptionOptions(seed=5, candidates=5)
    )
    clip = captioner.clip
    with torch.no_grad():
        image = clip.model.encode_image(clip.preprocess(picture).unsqueeze(0))
        image = image / image.norm(dim=-1, keepdim=True)
        texts = [text for text, _, _ in result.candidates]
        features = clip.model.encode_text(clip.tokenizer(texts))
        features = features / features.norm(dim=-1, keepdim=True)
        similarities = (features @ image[0]).tolist()
    best = max(range(len(texts)), key=lambda i: similarities[i])
    assert result.caption == texts[best]
    assert [sim for _, sim, _ in result.candidates] == pytest.approx(similarities, abs=1e-5)
    assert sum(p for _, _, p in result.candidates) == pytest.approx(1.0)
    assert result.prompt == ", ".join(word for word, _ in result.keywords) + " ###"


def test_rerank_ties_go_to_the_first() -> None:
    assert rerank(["a .", "b .", "a ."], [0.3, 0.3, 0.3])[0] == "a ."
    assert rerank(["x ."], [0.1])[1] == [("x .", 0.1, 1.0)]


def test_post_processing_is_an_option(sbg_dir: Path) -> None:
    captioner = loaded(sbg_dir)
    batch = captioner.collate([captioner.preprocess(images(1)[0])])
    cut = captioner.forward(batch, CaptionOptions(seed=2))[0]
    raw = captioner.forward(batch, CaptionOptions(seed=2, cut_at_period=False))[0]
    assert all(text.endswith(" .") and text.count(".") == 1 for text, _, _ in cut.candidates)
    drawn = captioner.candidates(cut.prompt, CaptionOptions(seed=2))
    assert [text for text, _, _ in raw.candidates] == [t.strip() for t in drawn]


def test_an_image_gets_the_same_caption_in_any_batch(sbg_dir: Path) -> None:
    captioner = loaded(sbg_dir)
    pictures = images(3)
    together = captioner.caption(pictures, CaptionOptions(seed=4, batch_size=3))
    alone = [captioner.caption([p], CaptionOptions(seed=4))[0] for p in pictures]
    assert together == alone


# -- text embeddings cache ------------------------------------------------------------------------


def test_vocabulary_embeddings_are_computed_once_and_cached(
    sbg_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    captioner = loaded(sbg_dir)
    file = captioner.cache_file(captioner.texts)
    assert file.is_file()
    assert file.is_relative_to(tmp_path / "cache" / "sbg")
    first = captioner.embeddings.copy()
    assert first.shape[0] == len(captioner.texts) > 100
    captioner.unload()

    def refuse(self, texts):  # a second load must not encode the vocabulary again
        raise AssertionError("encoded again")

    monkeypatch.setattr(SbgCaptioner, "encode_texts", refuse)
    captioner.load()
    assert (captioner.embeddings == first).all()


# -- registry, files, errors ---------------------------------------------------------------------


def test_registry_entry_and_folders(tmp_path: Path, sbg_dir: Path) -> None:
    spec = resolve_captioner("sbg-flickr8k", [])
    assert spec.family == "sbg"
    assert spec.repo_id == "Anshler/selective-blind-guessing"
    assert resolve_captioner("sbg", []).key == "sbg-flickr8k"
    settings = dict(spec.settings)
    assert "dc0668edb47028a12641947d91bbab3f51c0b3c5" in settings["files_url"]
    assert resolve_captioner(str(sbg_dir), []).family == "sbg"
    import shutil

    named = tmp_path / "models" / "sbg-flickr8k"
    shutil.copytree(sbg_dir, named)
    (named / "sbg.json").unlink()  # the extension's own layout, without sbg.json
    local = resolve_captioner("sbg-flickr8k", [tmp_path / "models"])
    assert local.path == named.resolve()
    assert local.family == "sbg"


def test_offline_registry_model_names_the_files_and_where_they_go(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelFilesMissingError, match=r"all_labels.pkl.*HF_HUB_OFFLINE.*raw\."):
        get_captioner("sbg-flickr8k", device="cpu")


def test_published_files_are_checked_by_sha256(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    source = tmp_path / "published.pkl"
    source.write_bytes(pickle.dumps(LABELS))
    digest = sha256_of(source)
    url = source.as_uri()
    got = fetch_file(url, tmp_path / "cache" / "a.pkl", digest)
    assert got.read_bytes() == source.read_bytes()
    with pytest.raises(ModelLoadError, match="not the published"):
        fetch_file(url, tmp_path / "cache" / "b.pkl", "0" * 64)
    assert not (tmp_path / "cache" / "b.pkl").exists()


def test_sbg_json_with_unknown_keys_is_an_error(tmp_path: Path, sbg_dir: Path) -> None:
    import shutil

    folder = tmp_path / "odd"
    shutil.copytree(sbg_dir, folder)
    (folder / "sbg.json").write_text('{"clip_modle": "x"}', encoding="utf-8")
    with pytest.raises(ModelLoadError, match="unknown keys \\['clip_modle'\\]"):
        get_captioner(str(folder), device="cpu")


# -- end to end ----------------------------------------------------------------------------------


def _write_images(folder: Path, count: int) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, image in enumerate(images(count)):
        path = folder / f"img{i}.png"
        image.save(path)
        paths.append(path)
    return paths


def test_cli_caption_writes_the_caption_keywords_and_candidates(
    tmp_path: Path, sbg_dir: Path
) -> None:
    paths = _write_images(tmp_path / "in", 3)
    argv = ["caption", str(tmp_path / "in"), "--model", str(sbg_dir), "--json", "--no-progress"]
    assert main([*argv, "--device", "cpu", "--batch-size", "2"]) == 0
    captioner = loaded(sbg_dir)
    from PIL import Image

    for path in paths:
        caption = path.with_suffix(".caption").read_text(encoding="utf-8").strip()
        data = json.loads(path.with_suffix(".json").read_text(encoding="utf-8"))
        assert data["caption"] == caption
        sbg = data["sbg"]
        assert len(sbg["candidates"]) == 5
        best = max(sbg["candidates"], key=lambda c: c["probability"])
        assert best["caption"] == caption
        (expected,) = captioner.forward(
            captioner.collate([captioner.preprocess(Image.open(path).convert("RGB"))]),
            CaptionOptions(),
        )
        assert caption == expected.caption
        assert list(sbg["keywords"]) == [word for word, _ in expected.keywords]
        assert sbg["prompt"].endswith(" ###")


def test_cli_seed_and_candidates(tmp_path: Path, sbg_dir: Path) -> None:
    _write_images(tmp_path / "in", 2)
    runs = {}
    for name, extra in {"a": [], "b": [], "c": ["--seed", "9", "--candidates", "2"]}.items():
        out = tmp_path / name
        argv = ["caption", str(tmp_path / "in"), "--model", str(sbg_dir), "--output-dir", str(out)]
        assert main([*argv, "--json", "--no-progress", "--device", "cpu", *extra]) == 0
        runs[name] = [json.loads((out / f"img{i}.json").read_text()) for i in range(2)]
    assert runs["a"] == runs["b"]
    assert [len(r["sbg"]["candidates"]) for r in runs["c"]] == [2, 2]


def test_tag_with_the_sbg_captioner(tmp_path: Path, sbg_dir: Path, model_dir: Path) -> None:
    _write_images(tmp_path / "in", 2)
    argv = ["tag", str(tmp_path / "in"), "--model", str(model_dir), "--captioner", str(sbg_dir)]
    assert main([*argv, "--json", "--no-progress", "--caption-template", "separate"]) == 0
    data = json.loads((tmp_path / "in" / "img0.json").read_text())
    assert "general" in data
    assert data["sbg"]["candidates"]
    assert data["caption"] == (tmp_path / "in" / "img0.caption").read_text("utf-8").strip()


def test_the_tab_offers_and_runs_sbg(tmp_path: Path, sbg_dir: Path) -> None:
    import shutil

    from tagger.ui import actions
    from tagger.ui.host import RuntimeSettings

    models = tmp_path / "models"
    shutil.copytree(sbg_dir, models / "my-sbg")
    settings = RuntimeSettings(providers="cpu", models_dirs=[models])
    choices = actions.captioner_choices(settings)
    assert "my-sbg" in choices
    assert "sbg-flickr8k" in choices
    picture = images(1)[0]
    caption = actions.caption_image(picture, "my-sbg", settings)
    captioner = get_captioner(str(models / "my-sbg"), device="cpu")
    assert caption == captioner.caption([picture], CaptionOptions())[0]
