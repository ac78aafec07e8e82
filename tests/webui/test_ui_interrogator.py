"""The tab's CLIP Interrogator section: its widgets, Generate (with the caption's ITM score),
Analyze and Batch against the clip-interrogator package on tiny models, and Send to txt2img
carrying the prompt through the stand-in webui's paste parser."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("gradio")
torch = pytest.importorskip("torch")
pytest.importorskip("open_clip")
pytest.importorskip("transformers")
pytest.importorskip("clip_interrogator")

from PIL import Image  # noqa: E402

pytestmark = [
    pytest.mark.filterwarnings("ignore:.*torch.cuda.amp.autocast:FutureWarning"),
    pytest.mark.filterwarnings("ignore:CUDA is not available:UserWarning"),
]


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    from tiny_interrogator import one_torch_thread

    with one_torch_thread():
        yield


@pytest.fixture(scope="module")
def models(tmp_path_factory, ci_clip_dir: Path, blip_dir: Path, itm_dir: Path) -> Path:
    folder = tmp_path_factory.mktemp("models")
    shutil.copytree(ci_clip_dir, folder / "ci-clip")
    shutil.copytree(blip_dir, folder / "tiny-blip")
    shutil.copytree(itm_dir, folder / "tiny-itm")
    return folder


@pytest.fixture(scope="module")
def settings(models: Path, ci_data_dir: Path, tmp_path_factory):
    from tagger.ui.host import RuntimeSettings

    patch = pytest.MonkeyPatch()
    patch.setenv("TAGGER_INTERROGATOR_DATA", str(ci_data_dir))
    patch.setenv("TAGGER_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
    yield RuntimeSettings(models_dirs=[models], providers="cpu")
    patch.undo()


@pytest.fixture(scope="module")
def package(models: Path, ci_data_dir: Path, tmp_path_factory):
    from tiny_interrogator import package_interrogator

    from tagger.captioners.openclip import load_clip

    clip = load_clip(str(models / "ci-clip"), None, device=torch.device("cpu"), half=False)
    return package_interrogator(
        clip, ci_data_dir, tmp_path_factory.mktemp("pkg"), chunk_size=2048, intermediate=2048
    )


@pytest.fixture(scope="module")
def picture() -> Image.Image:
    rng = np.random.default_rng(5)
    return Image.fromarray(rng.integers(0, 256, (38, 42, 3), dtype=np.uint8))


@pytest.fixture(scope="module")
def section(settings):
    import gradio as gr

    from tagger.ui.host import Host
    from tagger.ui.interrogator import build_interrogator_ui

    with gr.Blocks():
        return build_interrogator_ui(Host(settings=lambda: settings))


def test_the_standalone_app_has_the_section(settings) -> None:
    from tagger.ui.app import build_app

    demo = build_app(settings)
    ids = {getattr(block, "elem_id", None) for block in demo.blocks.values()} - {None}
    assert {
        "tagger_ci", "tagger_ci_image", "tagger_ci_mode", "tagger_ci_clip_model",
        "tagger_ci_caption_model", "tagger_ci_generate", "tagger_ci_prompt", "tagger_ci_caption",
        "tagger_ci_score", "tagger_ci_analyze", "tagger_ci_medium", "tagger_ci_flavor",
        "tagger_ci_input_dir", "tagger_ci_start", "tagger_ci_batch_caption_extension",
    } <= ids  # fmt: skip
    clip = next(
        b for b in demo.blocks.values() if getattr(b, "elem_id", None) == "tagger_ci_clip_model"
    )
    names = [c[0] if isinstance(c, (tuple, list)) else c for c in clip.choices]
    assert names[:4] == [
        "ci-clip",
        "ViT-L-14/openai",
        "ViT-H-14/laion2b_s32b_b79k",
        "ViT-bigG-14/laion2b_s39b_b160k",
    ]
    assert "clip-interrogator" in [
        c[0] if isinstance(c, (tuple, list)) else c
        for c in next(
            b for b in demo.blocks.values() if getattr(b, "elem_id", None) == "tagger_captioner"
        ).choices
    ]


@pytest.mark.parametrize("mode", ["best", "fast", "classic", "negative"])
def test_generate_gives_the_packages_prompt_and_scores_the_caption(
    section, package, picture, models, mode: str
) -> None:
    prompt, caption, score, info = section.on_generate(
        picture, mode, "ci-clip", "tiny-blip", [], True, "tiny-itm"
    )
    assert info == ""
    if mode == "negative":
        assert caption == ""
        assert prompt == package.interrogate_negative(picture)
        return
    # the caption part is the tab's BLIP captioner; the prompt is the package's for that caption
    from tagger.captioners import get_captioner

    assert caption == get_captioner(str(models / "tiny-blip"), device="cpu").caption([picture])[0]
    method = {
        "best": package.interrogate,
        "fast": package.interrogate_fast,
        "classic": package.interrogate_classic,
    }
    assert prompt == method[mode](picture, caption=caption)
    from transformers import BlipForImageTextRetrieval, BlipProcessor

    model = BlipForImageTextRetrieval.from_pretrained(models / "tiny-itm").eval()
    inputs = BlipProcessor.from_pretrained(models / "tiny-itm")(
        images=picture, text=caption, return_tensors="pt"
    )
    with torch.no_grad():
        itm = model(**inputs).itm_score.softmax(dim=-1)[0, 1].item()
    assert f"ITM <b>{itm:.3f}</b>" in score


def test_analyze_gives_the_extensions_rankings(section, package, picture) -> None:
    labels = section.on_analyze(picture, "best", "ci-clip", "tiny-blip", ["artists"])
    assert labels[-1] == ""
    features = package.image_to_features(picture)
    for key, table, got in zip(
        ("medium", "artist", "movement", "trending", "flavor"),
        (package.mediums, package.artists, package.movements, package.trendings, package.flavors),
        labels[:5],
        strict=True,
    ):
        if key == "artist":
            assert got == {}  # left out
            continue
        top = table.rank(features, 5)
        assert got == dict(zip(top, package.similarities(features, top), strict=True))


def test_batch_writes_the_prompts(section, package, picture, tmp_path: Path) -> None:
    folder = tmp_path / "set"
    folder.mkdir()
    picture.save(folder / "a.png")
    picture.transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(folder / "b.png")
    widgets = {
        "recursive": False,
        "output_dir": "",
        "caption_extension": ".txt",
        "on_existing": "skip",
        "write_json": True,
    }
    values = [widgets[key] for key in section.batch_widgets]
    (summary,) = section.on_batch(str(folder), "fast", "ci-clip", "none", [], *values)
    assert "2 written" in summary
    for name in ("a", "b"):
        with Image.open(folder / f"{name}.png") as image:
            rgb = image.convert("RGB")
        prompt = (folder / f"{name}.txt").read_text("utf-8").rstrip("\n")
        single = section.on_generate(rgb, "fast", "ci-clip", "none", [], False, "")[0]
        assert prompt == single  # the batch writes what Generate shows
        assert prompt.split(", ")[0] in package.interrogate_fast(rgb, caption="x").split(", ")


def test_errors_show_in_the_info_box(section) -> None:
    *_, info = section.on_generate(None, "fast", "ci-clip", "none", [], False, "")
    assert "no image" in info
    *_, info = section.on_generate(
        Image.new("RGB", (8, 8)), "fast", "ViT-L-14", "none", [], False, ""
    )
    assert "names no pretrained weights" in info


def test_send_to_txt2img_pastes_the_prompt_exactly(webui, settings) -> None:
    """The stand-in webui reads what the section's paste box holds as generation parameters:
    its prompt is the interrogator's prompt, unchanged."""
    from tagger.ui.host import Host
    from tagger.ui.interrogator import InterrogatorUI
    from tagger.webui.compat import paste_infotext

    parse = webui.infotext_utils.parse_generation_parameters
    ui = InterrogatorUI(Host(settings=lambda: settings, infotext=paste_infotext))
    for prompt in (
        "a cat on a sofa, by Anna Bruno, trending on artstation, cubism, soft: light",
        "a: b, c: d, e: f, g: h",
        "",
    ):
        text = ui.on_prompt_change(prompt, "best", "ViT-L-14/openai", "blip-large")
        assert parse(text)["Prompt"] == prompt
        assert parse(text)["CLIP Interrogator"] == "best"
