"""The CLIP Interrogator and reranking from the command line: ``tagger caption`` and ``tagger tag
--captioner`` write the package's exact prompts (and Analyze) into real files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("open_clip")
pytest.importorskip("transformers")
pytest.importorskip("clip_interrogator")

from PIL import Image  # noqa: E402

from tagger.cli import build_parser, main  # noqa: E402

pytestmark = [
    pytest.mark.filterwarnings("ignore:.*torch.cuda.amp.autocast:FutureWarning"),
    pytest.mark.filterwarnings("ignore:CUDA is not available:UserWarning"),
]
CHUNK, INTERMEDIATE = 64, 32


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    from tiny_interrogator import one_torch_thread

    with one_torch_thread():
        yield


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    rng = np.random.default_rng(11)
    where = tmp_path / "images"
    where.mkdir()
    for index in range(3):
        pixels = rng.integers(0, 256, (40 + 6 * index, 44, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(where / f"p{index}.png")
    return where


def ci_flags(
    ci_clip_dir: Path, ci_data_dir: Path, cache: Path, blip_dir: Path, mode: str
) -> list[str]:
    return [
        "--ci-mode", mode, "--ci-clip-model", str(ci_clip_dir), "--ci-caption-model", str(blip_dir),
        "--ci-caption-decoding", "library", "--ci-data", str(ci_data_dir), "--ci-cache", str(cache),
        "--ci-chunk-size", str(CHUNK), "--ci-intermediate-count", str(INTERMEDIATE),
        "--ci-no-download", "--device", "cpu", "--no-progress",
    ]  # fmt: skip


@pytest.fixture(scope="module")
def package(ci_clip_dir: Path, ci_data_dir: Path, blip_dir: Path, tmp_path_factory):
    from tiny_interrogator import package_interrogator
    from transformers import BlipForConditionalGeneration, BlipProcessor

    from tagger.captioners.openclip import load_clip

    clip = load_clip(str(ci_clip_dir), None, device=torch.device("cpu"), half=False)
    return package_interrogator(
        clip,
        ci_data_dir,
        tmp_path_factory.mktemp("pkg"),
        caption_model=BlipForConditionalGeneration.from_pretrained(blip_dir).eval(),
        caption_processor=BlipProcessor.from_pretrained(blip_dir),
        chunk_size=CHUNK,
        intermediate=INTERMEDIATE,
    )


def expected(package, mode: str, image: Image.Image) -> str:
    method = {
        "classic": package.interrogate_classic,
        "fast": package.interrogate_fast,
        "best": package.interrogate,
        "negative": package.interrogate_negative,
    }[mode]
    return method(image.convert("RGB"))


@pytest.mark.parametrize("mode", ["classic", "fast", "best", "negative"])
def test_tagger_caption_writes_the_packages_prompts(
    folder, ci_clip_dir, ci_data_dir, blip_dir, package, tmp_path: Path, mode: str
) -> None:
    flags = ci_flags(ci_clip_dir, ci_data_dir, tmp_path / "cache", blip_dir, mode)
    status = main(["caption", str(folder), "--model", "clip-interrogator", *flags, "--json"])
    assert status == 0
    for path in sorted(folder.glob("*.png")):
        prompt = path.with_suffix(".caption").read_text("utf-8").rstrip("\n")
        with Image.open(path) as image:
            assert prompt == expected(package, mode, image), path.name
        sidecar = json.loads(path.with_suffix(".json").read_text("utf-8"))
        assert sidecar["caption"] == prompt
        assert sidecar["interrogator"]["mode"] == mode
        assert sidecar["interrogator"]["clip_model"] == str(ci_clip_dir)
        if mode != "negative":
            with Image.open(path) as image:
                assert sidecar["interrogator"]["caption"] == package.generate_caption(
                    image.convert("RGB")
                )


def test_analyze_goes_into_the_sidecar(
    folder, ci_clip_dir, ci_data_dir, blip_dir, package, tmp_path: Path
) -> None:
    flags = ci_flags(ci_clip_dir, ci_data_dir, tmp_path / "cache", blip_dir, "fast")
    manifest = tmp_path / "meta.jsonl"
    assert (
        main(
            [
                "caption",
                str(folder),
                "--model",
                "clip-interrogator",
                *flags,
                "--ci-analyze",
                "--json",
                "--jsonl",
                str(manifest),
            ]
        )
        == 0
    )
    lines = [json.loads(x) for x in manifest.read_text("utf-8").splitlines()]
    for path, line in zip(sorted(folder.glob("*.png")), lines, strict=True):
        analysis = json.loads(path.with_suffix(".json").read_text("utf-8"))["interrogator"][
            "analyze"
        ]
        assert line["interrogator"]["analyze"] == analysis
        with Image.open(path) as image:
            features = package.image_to_features(image.convert("RGB"))
        for key, table in (
            ("medium", package.mediums),
            ("flavor", package.flavors),
            ("artist", package.artists),
        ):
            top = table.rank(features, 5)
            sims = package.similarities(features, top)
            assert list(analysis[key]) == list(dict.fromkeys(top))
            assert list(analysis[key].values()) == pytest.approx(
                list(dict(zip(top, sims, strict=True)).values()), abs=1e-6
            )


def test_tagger_tag_with_the_interrogator_as_captioner(
    folder, model_dir, ci_clip_dir, ci_data_dir, blip_dir, package, tmp_path: Path
) -> None:
    flags = ci_flags(ci_clip_dir, ci_data_dir, tmp_path / "cache", blip_dir, "classic")
    status = main(
        [
            "tag",
            str(folder),
            "--model",
            str(model_dir),
            "--captioner",
            "clip-interrogator",
            *flags,
            "--caption-template",
            "separate",
        ]
    )
    assert status == 0
    for path in sorted(folder.glob("*.png")):
        with Image.open(path) as image:
            caption = path.with_suffix(".caption").read_text("utf-8").rstrip("\n")
            assert caption == expected(package, "classic", image)
        assert path.with_suffix(".txt").is_file()  # the tags


def test_interrogator_flags_build_the_options(tmp_path: Path) -> None:
    from tagger.cli.captioner_flags import interrogator_options

    bank = tmp_path / "palette.txt"
    bank.write_text("sepia\nteal and orange\n", encoding="utf-8")
    args = build_parser().parse_args(
        [
            "caption",
            "x",
            "--model",
            "clip-interrogator",
            "--no-artists",
            "--no-trending",
            "--ci-bank",
            str(bank),
            "--ci-max-flavors",
            "12",
            "--ci-low-vram",
            "--ci-mode",
            "negative",
        ]
    )
    options = interrogator_options(args)
    assert options.skip_categories == ["artists", "trendings"]
    assert options.extra_banks == {"palette": ["sepia", "teal and orange"]}
    assert (options.max_flavors, options.low_vram, options.mode) == (12, True, "negative")


def test_bad_interrogator_flags_stop_the_run(folder, blip_dir, tmp_path: Path, capsys) -> None:
    assert main(["caption", str(folder), "--model", str(blip_dir), "--ci-mode", "fast"]) == 2
    assert "--ci-mode configure the CLIP Interrogator" in capsys.readouterr().err
    with pytest.raises(SystemExit) as stop:
        main(["caption", str(folder), "--model", "clip-interrogator", "--ci-skip", "painters"])
    assert stop.value.code == 2
    assert "unknown bank painters" in capsys.readouterr().err
    status = main(
        [
            "caption",
            str(folder),
            "--model",
            "clip-interrogator",
            "--ci-bank",
            str(tmp_path / "none.txt"),
        ]
    )
    assert status == 2
    assert "does not exist" in capsys.readouterr().err
    assert (
        main(
            ["caption", str(folder), "--model", "clip-interrogator", "--ci-clip-model", "ViT-L-14"]
        )
        == 2
    )
    assert "names no pretrained weights" in capsys.readouterr().err
    assert not list(folder.glob("*.caption"))  # nothing written by any of them


def test_tagger_caption_rerank(folder, blip_dir, itm_dir, tmp_path: Path) -> None:
    status = main(
        [
            "caption",
            str(folder),
            "--model",
            str(blip_dir),
            "--rerank",
            "itm",
            "--rerank-itm-model",
            str(itm_dir),
            "--rerank-candidates",
            "3",
            "--num-beams",
            "3",
            "--max-length",
            "6",
            "--device",
            "cpu",
            "--no-progress",
        ]
    )
    assert status == 0
    for path in sorted(folder.glob("*.png")):
        sidecar = json.loads(
            path.with_suffix(".json").read_text("utf-8")
        )  # --rerank turned --json on
        candidates = sidecar["candidates"]
        best = max(candidates, key=lambda c: c["itm"])
        written = path.with_suffix(".caption").read_text("utf-8").rstrip("\n")
        assert sidecar["caption"] == best["caption"] == written
        assert sidecar["rerank"]["by"] == "itm"
    assert main(["caption", str(folder), "--model", str(blip_dir), "--rerank-candidates", "3"]) == 2
