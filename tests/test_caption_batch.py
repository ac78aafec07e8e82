"""Caption + tags in one run: the batch engine's templates, sidecars, the CLIP filter, the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from tiny import make_image

from tagger.batch import BatchRun
from tagger.captioners import get_captioner
from tagger.captioners.clip_filter import ClipFilter
from tagger.cli import main
from tagger.errors import OptionsError
from tagger.interrogate import Interrogator
from tagger.options import BatchOptions, CaptionOptions, ClipFilterOptions, OutputOptions
from tagger.registry import local_spec
from tagger.wd14 import WD14Tagger

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("open_clip")

CAPTION = CaptionOptions(max_new_tokens=6, min_new_tokens=2)


def _images(folder: Path, count: int = 3) -> list[Path]:
    return [make_image(folder / f"img{i}.png", (30 + 5 * i, 24), seed=i) for i in range(count)]


def _read(path: Path) -> str:
    text = path.read_text(encoding="utf-8")
    assert text.endswith("\n")
    return text[:-1]


@pytest.fixture
def parts(model_dir: Path, blip_dir: Path):
    tagger = WD14Tagger(local_spec(model_dir), providers="cpu").load()
    captioner = get_captioner(str(blip_dir), device="cpu")
    return tagger, captioner


def test_templates_combine_the_tag_and_caption_runs(tmp_path: Path, parts) -> None:
    tagger, captioner = parts
    images = _images(tmp_path / "in")
    runs = {}
    for name, model, output in (
        ("tags", tagger, None),
        ("caption", Interrogator(None, captioner, CAPTION), None),
        ("ct", Interrogator(tagger, captioner, CAPTION), OutputOptions()),
        (
            "tc",
            Interrogator(tagger, captioner, CAPTION),
            OutputOptions(template="tags_then_caption"),
        ),
        ("sep", Interrogator(tagger, captioner, CAPTION), OutputOptions(template="separate")),
    ):
        out = tmp_path / name
        options = BatchOptions(output_dir=str(out), write_json=True, jsonl=str(out / "m.jsonl"))
        summary = BatchRun(
            [tmp_path / "in"], model, batch_options=options, output_options=output
        ).run()
        assert (summary.written, summary.failed_count) == (3, 0)
        runs[name] = out
    for image in images:
        stem = image.stem
        tags = _read(runs["tags"] / f"{stem}.txt")
        caption = _read(runs["caption"] / f"{stem}.txt")
        assert tags
        assert caption
        assert "," not in caption
        assert _read(runs["ct"] / f"{stem}.txt") == f"{caption}, {tags}"
        assert _read(runs["tc"] / f"{stem}.txt") == f"{tags}, {caption}"
        assert _read(runs["sep"] / f"{stem}.txt") == tags
        assert _read(runs["sep"] / f"{stem}.caption") == caption
        tag_json = json.loads((runs["tags"] / f"{stem}.json").read_text())
        assert "caption" not in tag_json
        both = json.loads((runs["ct"] / f"{stem}.json").read_text())
        assert both == {**tag_json, "caption": caption}
        assert json.loads((runs["caption"] / f"{stem}.json").read_text()) == {"caption": caption}
    lines = [json.loads(x) for x in (runs["ct"] / "m.jsonl").read_text().splitlines()]
    assert [line["caption"] for line in lines] == [
        _read(runs["caption"] / f"{image.stem}.txt") for image in images
    ]
    assert lines[0]["text"] == _read(runs["ct"] / "img0.txt")
    assert set(lines[0]) == {"file_name", "text", "rating", "character", "general", "caption"}


def test_fast_decode_is_refused_for_a_captioner_with_a_warning(
    tmp_path: Path, parts, caplog: pytest.LogCaptureFixture
) -> None:
    from tagger.batch import FAST_DECODE_IGNORED

    tagger, captioner = parts
    for i in range(2):  # JPEGs large enough that a reduced-scale decode would apply
        make_image(tmp_path / "in" / f"{i}.jpg", (240, 200), seed=i)
    model = Interrogator(tagger, captioner, CAPTION)
    trees = {}
    for fast in (False, True):
        out = tmp_path / f"out-{fast}"
        options = BatchOptions(output_dir=str(out), write_json=True, fast_decode=fast)
        caplog.clear()
        BatchRun([tmp_path / "in"], model, batch_options=options).run()
        assert (FAST_DECODE_IGNORED in caplog.text) == fast
        trees[fast] = {p.name: p.read_bytes() for p in sorted(out.iterdir())}
    assert len(trees[True]) == 4
    assert trees[True] == trees[False]  # decoded in full: the same files


def test_separate_files_resume_and_collisions(tmp_path: Path, parts) -> None:
    tagger, captioner = parts
    images = _images(tmp_path, 2)
    model = Interrogator(tagger, captioner, CAPTION)
    output = OutputOptions(template="separate")
    BatchRun([tmp_path], model, output_options=output).run()
    images[1].with_suffix(".caption").unlink()
    summary = BatchRun([tmp_path], model, output_options=output).run()
    assert (summary.skipped, summary.written) == (1, 1)
    assert images[1].with_suffix(".caption").exists()
    with pytest.raises(OptionsError, match="collides"):
        BatchRun([tmp_path], model, output_options=OutputOptions(template="separate",
                 caption_file_extension=".txt"))  # fmt: skip


class FixedClip(ClipFilter):
    """CLIP stand-in: every image embeds to e0; tags in SEEN embed to e0, others to e1."""

    SEEN = frozenset({"solo", "smile", "hat", "sky", "long hair"})

    def load(self) -> FixedClip:
        return self

    def preprocess(self, image):
        return torch.zeros(1)

    def image_embeddings(self, batch):
        return np.tile(np.array([1.0, 0.0], np.float32), (len(batch), 1))

    def encode_texts(self, texts):
        return np.array(
            [
                [1.0, 0.0] if t.removeprefix("a photo of ") in self.SEEN else [0.0, 1.0]
                for t in texts
            ],
            np.float32,
        )


def test_clip_filter_in_a_run(tmp_path: Path, parts) -> None:
    tagger, _ = parts
    images = _images(tmp_path / "in", 4)
    base = BatchOptions(output_dir=str(tmp_path / "plain"), write_json=True)
    BatchRun([tmp_path / "in"], tagger, batch_options=base).run()
    clip = FixedClip(ClipFilterOptions(cache_dir=str(tmp_path / "cache")))
    model = Interrogator(tagger, None, None, clip)
    options = BatchOptions(output_dir=str(tmp_path / "filtered"), write_json=True)
    BatchRun([tmp_path / "in"], model, batch_options=options).run()
    assert list((tmp_path / "cache").glob("*.npy"))  # the tagger's vocabulary, cached
    dropped_any = False
    for image in images:
        plain = json.loads((tmp_path / "plain" / f"{image.stem}.json").read_text())
        filtered = json.loads((tmp_path / "filtered" / f"{image.stem}.json").read_text())
        seen = {t for t in plain["general"] if t.replace("_", " ") in FixedClip.SEEN}
        assert filtered["general"] == {t: s for t, s in plain["general"].items() if t in seen}
        assert filtered["character"] == plain["character"]
        assert filtered["clip"] == {t: (1.0 if t in seen else 0.0) for t in plain["general"]}
        dropped_any |= len(seen) < len(plain["general"])
        text = _read(tmp_path / "filtered" / f"{image.stem}.txt")
        assert all(t in FixedClip.SEEN or t in [c.replace("_", " ") for c in plain["character"]]
                   for t in text.split(", ") if t)  # fmt: skip
    assert dropped_any


def test_cli_caption_end_to_end(tmp_path: Path, blip_dir: Path, clipcap_dir: Path) -> None:
    images = _images(tmp_path / "in", 2)
    code = main(["caption", str(tmp_path / "in"), "--model", str(blip_dir), "--no-progress",
                 "--max-length", "6", "--json", "--batch-size", "2"])  # fmt: skip
    assert code == 0
    for image in images:
        caption = _read(image.with_suffix(".caption"))
        assert caption
        assert json.loads(image.with_suffix(".json").read_text()) == {"caption": caption}
    code = main(["caption", str(tmp_path / "in"), "--model", clipcap_dir.name, "--models-dir",
                 str(clipcap_dir.parent), "--no-progress", "--output-dir", str(tmp_path / "cc"),
                 "--max-length", "10", "--num-beams", "5"])  # fmt: skip
    assert code == 0
    assert len(list((tmp_path / "cc").glob("*.caption"))) == 2
    assert main(["caption", str(tmp_path / "in"), "--model", "no-such-model", "--no-progress",
                 "--models-dir", str(tmp_path)]) == 2  # fmt: skip


def test_cli_tag_with_captioner_and_clip_filter(
    tmp_path: Path, model_dir: Path, blip_dir: Path, clip_dir: Path
) -> None:
    images = _images(tmp_path / "in", 2)
    code = main(["tag", str(tmp_path / "in"), "--model", str(model_dir), "--device", "cpu",
                 "--no-progress", "--captioner", str(blip_dir), "--caption-template", "separate",
                 "--caption-max-length", "6", "--json", "--clip-filter", "mcut",
                 "--clip-model", str(clip_dir),
                 "--clip-cache", str(tmp_path / "cache")])  # fmt: skip
    assert code == 0
    for image in images:
        record = json.loads(image.with_suffix(".json").read_text())
        assert record["caption"] == _read(image.with_suffix(".caption"))
        assert set(record["clip"]) >= set(record["general"])
        assert _read(image.with_suffix(".txt")) or record["general"] == {}
