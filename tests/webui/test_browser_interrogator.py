"""The CLIP Interrogator section of the standalone app in headless Chromium: open it, upload an
image, Generate, and see the package's prompt for the shown caption, with the caption's ITM
score; then Analyze."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import chromium
import pytest

pytest.importorskip("gradio")
pytest.importorskip("playwright.sync_api")
torch = pytest.importorskip("torch")
pytest.importorskip("open_clip")
pytest.importorskip("clip_interrogator")
pytestmark = [
    pytest.mark.skipif(not chromium.available(), reason=f"no {chromium.CHROMIUM}"),
    pytest.mark.filterwarnings("ignore:.*torch.cuda.amp.autocast:FutureWarning"),
    pytest.mark.filterwarnings("ignore:CUDA is not available:UserWarning"),
]


@pytest.fixture
def app(
    tmp_path: Path, ci_clip_dir: Path, ci_data_dir: Path, blip_dir: Path, itm_dir: Path, monkeypatch
) -> Iterator[tuple[str, Path]]:
    from tagger.ui.app import launch
    from tagger.ui.host import RuntimeSettings

    models = tmp_path / "models"
    for source, name in ((ci_clip_dir, "ci-clip"), (blip_dir, "tiny-blip"), (itm_dir, "tiny-itm")):
        shutil.copytree(source, models / name)
    monkeypatch.setenv("TAGGER_INTERROGATOR_DATA", str(ci_data_dir))
    monkeypatch.setenv("TAGGER_CACHE_DIR", str(tmp_path / "cache"))
    port = chromium.free_port()
    settings = RuntimeSettings(models_dirs=[models], providers="cpu")
    demo = launch(settings, port=port, presets_dir=tmp_path / "presets", block=False)
    try:
        yield f"http://127.0.0.1:{port}/", models
    finally:
        demo.close()


def test_generate_and_analyze_in_the_browser(app, tmp_path: Path, ci_data_dir: Path) -> None:
    from PIL import Image
    from tiny import make_image
    from tiny_interrogator import package_interrogator

    from tagger.captioners.openclip import load_clip

    url, models = app
    image_path = make_image(tmp_path / "upload.png", (48, 40), seed=9)
    picture = Image.open(image_path).convert("RGB")
    clip = load_clip(str(models / "ci-clip"), None, device=torch.device("cpu"), half=False)
    package = package_interrogator(
        clip, ci_data_dir, tmp_path / "pkg", chunk_size=2048, intermediate=2048
    )
    with chromium.open_page(url, "#tagger_interrogate") as page:
        page.click("#tagger_ci button, #tagger_ci .label-wrap")  # open the accordion
        page.wait_for_selector("#tagger_ci_generate", state="visible", timeout=30_000)
        page.set_input_files("#tagger_ci_image input[type=file]", str(image_path))
        page.wait_for_selector("#tagger_ci_image img", timeout=30_000)
        page.click("#tagger_ci_mode label:has-text('fast')")
        for field, value in (
            ("clip_model", "ci-clip"),
            ("caption_model", "tiny-blip"),
            ("scorer", "tiny-itm"),
        ):
            box = page.locator(f"#tagger_ci_{field} input")
            box.fill(value)
            box.press("Enter")
        page.click("#tagger_ci_score_caption input")
        page.click("#tagger_ci_generate")
        page.wait_for_function(
            "document.querySelector('#tagger_ci_prompt textarea').value.length > 0", timeout=120_000
        )
        prompt = page.locator("#tagger_ci_prompt textarea").input_value()
        caption = page.locator("#tagger_ci_caption textarea").input_value()
        assert caption
        assert prompt == package.interrogate_fast(picture, caption=caption)
        page.wait_for_selector("#tagger_ci_score .tagger_ci_score", timeout=60_000)
        assert "ITM" in page.locator("#tagger_ci_score").inner_text()
        page.click("#tagger_ci_analyze_tab-button, button:has-text('Analyze')")
        page.click("#tagger_ci_analyze")
        features = package.image_to_features(picture)
        best = package.mediums.rank(features, 1)[0]
        page.wait_for_function(
            "term => document.querySelector('#tagger_ci_medium').innerText.includes(term)",
            arg=best,
            timeout=120_000,
        )
        flavor = package.flavors.rank(features, 1)[0]
        assert flavor in page.locator("#tagger_ci_flavor").inner_text()
