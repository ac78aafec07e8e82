"""BLIP image-text matching against a direct ``BlipForImageTextRetrieval`` call, reranking, and
``tagger score`` over folders (real files, the tiny ITM model)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from PIL import Image  # noqa: E402

from tagger.cli import main  # noqa: E402

TEXTS = ["a dog on the grass", "a red car in the street", "two people sitting", "blue sky"]


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    from tiny_interrogator import one_torch_thread

    with one_torch_thread():
        yield


@pytest.fixture(scope="module")
def pictures() -> list[Image.Image]:
    rng = np.random.default_rng(3)
    return [
        Image.fromarray(rng.integers(0, 256, (30 + 4 * i, 34 + 3 * i, 3), dtype=np.uint8))
        for i in range(4)
    ]


@pytest.fixture(scope="module")
def direct(itm_dir: Path):
    from transformers import BlipForImageTextRetrieval, BlipProcessor

    return BlipForImageTextRetrieval.from_pretrained(itm_dir).eval(), BlipProcessor.from_pretrained(
        itm_dir
    )


def direct_scores(direct, image: Image.Image, texts: list[str]) -> tuple[list[float], list[float]]:
    """ITM probabilities and ITC cosines of one image with texts, by the model's own forward."""
    model, processor = direct
    inputs = processor(images=[image] * len(texts), text=texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        itm = model(**inputs, use_itm_head=True).itm_score.softmax(dim=-1)[:, 1]
        itc = model(**inputs, use_itm_head=False).itm_score.diagonal()
    return itm.tolist(), itc.tolist()


def test_itm_and_itc_equal_a_direct_call(itm_dir: Path, direct, pictures) -> None:
    from tagger.scoring import get_scorer

    scorer = get_scorer(str(itm_dir), device="cpu")
    got = scorer.score_images(pictures, [TEXTS] * len(pictures))
    for image, row in zip(pictures, got, strict=True):
        itm, itc = direct_scores(direct, image, TEXTS)
        assert [s.itm for s in row] == pytest.approx(itm, abs=1e-6)
        assert [s.itc for s in row] == pytest.approx(itc, abs=1e-6)
    # one image, each text alone: the same values as in a batch
    alone = [scorer.score_images(pictures[:1], [[t]])[0][0] for t in TEXTS]
    assert [s.itm for s in alone] == pytest.approx([s.itm for s in got[0]], abs=1e-6)
    assert all(0.0 <= s.itm <= 1.0 and -1.0 <= s.itc <= 1.0 for row in got for s in row)
    assert len({round(s.itm, 6) for s in got[0]}) > 1  # the scores depend on the text


def test_scorer_names_and_errors(itm_dir: Path, blip_dir: Path, tmp_path: Path) -> None:
    from tagger.errors import ModelFilesMissingError, ModelNotFoundError
    from tagger.scoring.itm import itm_models, resolve_itm

    assert resolve_itm("blip-itm-base-coco").repo_id == "Salesforce/blip-itm-base-coco"
    assert resolve_itm("blip-itm-large").repo_id == "Salesforce/blip-itm-large-coco"
    assert resolve_itm(str(itm_dir)).path == itm_dir.resolve()
    assert resolve_itm(itm_dir.name, [itm_dir.parent]).key == itm_dir.name
    assert itm_models([itm_dir.parent])[0].key == itm_dir.name
    with pytest.raises(ModelNotFoundError, match="not a BLIP image-text matching folder"):
        resolve_itm(str(blip_dir))  # a captioning BLIP
    with pytest.raises(ModelNotFoundError, match="unknown scorer"):
        resolve_itm("nope", [])
    from tagger.scoring import get_scorer

    with pytest.raises(ModelFilesMissingError, match="blip-itm-base-coco"):
        get_scorer("blip-itm-base-coco", device="cpu", cache_dir=tmp_path)


def test_an_itm_folder_is_not_a_captioner(itm_dir: Path) -> None:
    from tagger.registry import list_captioners

    assert itm_dir.name not in [s.key for s in list_captioners([itm_dir.parent])]


# -- reranking -------------------------------------------------------------------------------


def test_best_index_is_the_first_argmax() -> None:
    from tagger.scoring.rerank import best_index

    assert best_index([0.1, 0.9, 0.3]) == 1
    assert best_index([0.5, 0.5, 0.2]) == 0  # a tie: the first
    assert best_index([0.2]) == 0
    with pytest.raises(ValueError, match="no candidates"):
        best_index([])


def _rerank(blip_dir: Path, itm_dir: Path, **values):
    from tagger.captioners import get_captioner
    from tagger.registry import resolve_captioner
    from tagger.scoring.rerank import RerankOptions, rerank_spec

    sources = [resolve_captioner(str(blip_dir)), *values.pop("others", [])]
    spec = rerank_spec(sources, RerankOptions(itm_model=str(itm_dir), **values))
    return get_captioner(spec, device="cpu")


def test_rerank_keeps_the_best_scoring_beam(
    blip_dir: Path, itm_dir: Path, direct, pictures
) -> None:
    from tagger.options import CaptionOptions

    captioner = _rerank(blip_dir, itm_dir, candidates=4, source="beams")
    options = CaptionOptions(num_beams=4, min_new_tokens=2, max_new_tokens=8)
    rows = captioner.forward(
        captioner.collate([captioner.preprocess(p) for p in pictures]), options
    )
    blip = captioner.parts[0]
    for image, row in zip(pictures, rows, strict=True):
        texts = [c["caption"] for c in row["candidates"]]
        assert 1 <= len(texts) <= 4
        assert len(set(texts)) == len(texts)  # repeats scored once
        # the beams are BLIP's own 4 best, in beam order
        pixels = blip.collate([blip.preprocess(image)])
        kwargs = blip.generate_kwargs(options)
        encoded = blip.processor.tokenizer(options.prompt, return_tensors="pt")
        with torch.no_grad():
            out = blip.model.generate(
                pixel_values=pixels,
                input_ids=encoded["input_ids"],
                attention_mask=torch.ones_like(encoded["input_ids"]),
                **kwargs,
                num_return_sequences=4,
            )
        beams = list(dict.fromkeys(blip.postprocess(r.tolist(), options) for r in out))
        assert texts == beams
        itm, itc = direct_scores(direct, image, texts)
        assert [c["itm"] for c in row["candidates"]] == pytest.approx(itm, abs=2e-6)
        assert [c["itc"] for c in row["candidates"]] == pytest.approx(itc, abs=2e-6)
        assert row["caption"] == texts[int(np.argmax(itm))]
        details = captioner.details(row, options)
        assert details["rerank"] == {"by": "itm", "model": str(itm_dir), "source": "beams"}


def test_rerank_samples_ties_and_a_single_candidate(
    blip_dir: Path, itm_dir: Path, pictures, monkeypatch
) -> None:
    from tagger.options import CaptionOptions

    captioner = _rerank(blip_dir, itm_dir, candidates=3, source="samples")
    options = CaptionOptions(seed=5, max_new_tokens=6)
    batch = captioner.collate([captioner.preprocess(p) for p in pictures[:2]])
    rows = captioner.forward(batch, options)
    blip = captioner.parts[0]
    for k in range(3):  # sample k is the captioner's own sample with seed 5 + k
        drawn = CaptionOptions(seed=5 + k, max_new_tokens=6, sample=True)
        texts = [blip.postprocess(r, drawn) for r in blip.forward(batch["part0"], drawn)]
        for row, text in zip(rows, texts, strict=True):
            assert text in [c["caption"] for c in row["candidates"]]
    # every candidate scores the same: the first one is kept
    from tagger.scoring.itm import PairScore

    monkeypatch.setattr(
        captioner.scorer,
        "score",
        lambda pixels, texts: [[PairScore(0.5, 0.1)] * len(t) for t in texts],
    )
    for row in captioner.forward(batch, options):
        assert row["caption"] == row["candidates"][0]["caption"]
    one = _rerank(blip_dir, itm_dir, candidates=1, source="samples")
    (row,) = one.forward(one.collate([one.preprocess(pictures[0])]), options)
    assert len(row["candidates"]) == 1
    assert row["caption"] == row["candidates"][0]["caption"]


def test_rerank_several_captioners_and_by_clip(
    blip_dir: Path, clipcap_dir: Path, itm_dir: Path, clip_dir: Path, pictures
) -> None:
    from tagger.options import CaptionOptions
    from tagger.registry import resolve_captioner

    captioner = _rerank(
        blip_dir, itm_dir, source="captioners", others=[resolve_captioner(str(clipcap_dir))]
    )
    (row,) = captioner.forward(
        captioner.collate([captioner.preprocess(pictures[0])]), CaptionOptions()
    )
    assert [c["source"] for c in row["candidates"]][:1] == [blip_dir.name]
    assert {c["source"] for c in row["candidates"]} <= {blip_dir.name, clipcap_dir.name}
    by_clip = _rerank(
        blip_dir, itm_dir, source="beams", by="clip", clip_model=str(clip_dir), clip_pretrained=""
    )
    (row,) = by_clip.forward(by_clip.collate([by_clip.preprocess(pictures[0])]), CaptionOptions())
    scores = [c["clip"] for c in row["candidates"]]
    assert row["caption"] == row["candidates"][int(np.argmax(scores))]["caption"]
    from tagger.errors import OptionsError
    from tagger.scoring.rerank import beam_candidates

    class Vlm:  # a captioner family without beams
        family = "vlm"
        spec = resolve_captioner(str(blip_dir))

        def beams(self, options):
            return 1

    with pytest.raises(OptionsError, match="gives no beams"):
        beam_candidates(Vlm(), None, CaptionOptions(), 2)


# -- tagger score --------------------------------------------------------------------------------


@pytest.fixture
def dataset(tmp_path: Path, pictures) -> Path:
    folder = tmp_path / "set"
    (folder / "sub").mkdir(parents=True)
    for index, (image, text) in enumerate(zip(pictures, TEXTS, strict=True)):
        where = folder / "sub" if index == 3 else folder
        image.save(where / f"img{index}.png")
        (where / f"img{index}.txt").write_text(text + "\n", encoding="utf-8")
    return folder


def test_tagger_score_writes_scores_and_reports_the_worst(
    dataset: Path, itm_dir: Path, direct, pictures, capsys
) -> None:
    existing = dataset / "img0.json"
    existing.write_text(json.dumps({"general": {"dog": 0.9}}), encoding="utf-8")
    captions_before = {p: p.read_bytes() for p in dataset.rglob("*.txt")}
    status = main(
        [
            "score",
            str(dataset),
            "--recursive",
            "--model",
            str(itm_dir),
            "--device",
            "cpu",
            "--json",
            "--jsonl",
            str(dataset / "scores.jsonl"),
            "--worst",
            "2",
            "--below",
            "0.999",
            "--below-list",
            str(dataset / "below.txt"),
            "--no-progress",
            "--batch-size",
            "3",
        ]
    )
    out = capsys.readouterr().out
    assert status == 0
    assert {
        p: p.read_bytes() for p in dataset.rglob("*.txt") if p.name != "below.txt"
    } == captions_before
    expected = {}
    for index, image in enumerate(pictures):
        itm, itc = direct_scores(direct, image, [TEXTS[index]])
        expected[f"img{index}"] = (itm[0], itc[0])
    sidecars = {p.stem: json.loads(p.read_text("utf-8")) for p in dataset.rglob("img*.json")}
    assert sorted(sidecars) == sorted(expected)
    for stem, (itm, itc) in expected.items():
        score = sidecars[stem]["score"]
        assert score["itm"] == pytest.approx(itm, abs=2e-6)
        assert score["itc"] == pytest.approx(itc, abs=2e-6)
        assert score["model"] == itm_dir.name
    assert sidecars["img0"]["general"] == {"dog": 0.9}  # the tag run's scores are kept
    lines = [json.loads(x) for x in (dataset / "scores.jsonl").read_text("utf-8").splitlines()]
    assert [line["file_name"] for line in lines] == [
        "img0.png",
        "img1.png",
        "img2.png",
        "sub/img3.png",
    ]
    assert [line["text"] for line in lines] == TEXTS
    worst = sorted(expected, key=lambda s: expected[s][0])[:2]
    report = out.splitlines()
    assert report[0] == "worst 2 of 4 by itm:"
    shown = [re.search(r"(\S+)\.png: ", line).group(1).rsplit("/", 1)[-1] for line in report[1:3]]
    assert shown == worst
    below = [s for s in expected if expected[s][0] < 0.999]
    listed = (dataset / "below.txt").read_text("utf-8").splitlines()
    assert sorted(Path(p).stem for p in listed) == sorted(below)


def test_tagger_score_skips_unchanged_and_fails_missing_captions(
    dataset: Path, itm_dir: Path, capsys, monkeypatch
) -> None:
    args = [
        "score",
        str(dataset),
        "--model",
        str(itm_dir),
        "--device",
        "cpu",
        "--json",
        "--no-progress",
    ]
    assert main(args) == 0
    first = (dataset / "img1.json").read_text("utf-8")
    (dataset / "img2.txt").write_text("a new caption\n", encoding="utf-8")
    (dataset / "img0.txt").unlink()
    from tagger.scoring.itm import ItmScorer

    calls = []
    original = ItmScorer.score
    monkeypatch.setattr(
        ItmScorer, "score", lambda self, p, t: calls.append(t) or original(self, p, t)
    )
    status = main([*args, "--on-existing", "skip"])
    captured = capsys.readouterr()
    assert status == 1  # img0 has no caption any more
    assert "no caption file" in captured.err
    assert calls == [[["a new caption"]]]  # only the edited caption is scored again
    assert (dataset / "img1.json").read_text("utf-8") == first
    assert "worst 2 of 2 by itm" in captured.out  # skipped images are reported too


def test_tagger_score_refuses_bad_input(dataset: Path, itm_dir: Path, capsys) -> None:
    assert main(["score", str(dataset), "--model", str(itm_dir), "--below-list", "x"]) == 2
    assert "--below-list needs --below" in capsys.readouterr().err
    assert main(["score", str(dataset), "--model", "nope"]) == 2
    assert "unknown scorer" in capsys.readouterr().err
    (dataset / "img1.json").write_text("[1, 2]", encoding="utf-8")
    status = main(
        [
            "score",
            str(dataset),
            "--model",
            str(itm_dir),
            "--device",
            "cpu",
            "--json",
            "--no-progress",
        ]
    )
    assert status == 1
    assert "not a JSON object; left as it is" in capsys.readouterr().err
    assert (dataset / "img1.json").read_text("utf-8") == "[1, 2]"
