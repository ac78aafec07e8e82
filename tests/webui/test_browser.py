"""The standalone app in headless Chromium (Debian's chromium, driven by Playwright): upload an
image, interrogate, see the tags, click one into the exclude list, run a batch over a folder."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from tiny import make_image

pytest.importorskip("gradio")
playwright_api = pytest.importorskip("playwright.sync_api")
CHROMIUM = os.environ.get("TAGGER_CHROMIUM", "/usr/bin/chromium")
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"no {CHROMIUM}")


def free_port() -> int:
    """A port nobody listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def app_url(model_dir: Path, tmp_path: Path) -> Iterator[str]:
    """The standalone app served on 127.0.0.1 with the tiny model as its only local model."""
    from tagger.ui.app import launch
    from tagger.ui.host import RuntimeSettings

    port = free_port()
    settings = RuntimeSettings(default_model="tiny-v3", models_dirs=[model_dir.parent])
    demo = launch(settings, port=port, presets_dir=tmp_path / "presets", block=False)
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        demo.close()


@pytest.fixture
def page(app_url: str) -> Iterator[object]:
    """A Chromium page on the app."""
    with playwright_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1200})
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(app_url)
        page.wait_for_selector("#tagger_interrogate", timeout=60_000)
        page.wait_for_function("window.tagger_loaded === true", timeout=30_000)
        yield page
        shots = os.environ.get("TAGGER_SCREENSHOTS")
        if shots:
            page.screenshot(path=str(Path(shots) / "tagger_end.png"), full_page=True)
        browser.close()
        assert errors == []


def test_interrogate_and_batch_in_the_browser(page, tmp_path: Path, model_dir: Path) -> None:
    from PIL import Image

    from tagger.cache import get_tagger
    from tagger.options import TagOptions
    from tagger.registry import local_spec
    from tagger.tags import format_tags

    image_path = make_image(tmp_path / "upload.png", (64, 48), seed=5)
    expected = get_tagger(local_spec(model_dir)).tag_batch(
        [Image.open(image_path).convert("RGB")], TagOptions()
    )[0]
    page.set_input_files("#tagger_image input[type=file]", str(image_path))
    page.click("#tagger_interrogate")
    prompt = page.locator("#tagger_prompt textarea")
    page.wait_for_function(
        "document.querySelector('#tagger_prompt textarea').value.length > 0", timeout=60_000
    )
    assert prompt.input_value() == format_tags(expected, TagOptions())
    first_tag = next(iter(expected.general))
    tag = page.locator(f"#tagger_general [data-testid='{first_tag}-confidence-set']")
    tag.wait_for(timeout=30_000)
    shots = os.environ.get("TAGGER_SCREENSHOTS")
    if shots:
        page.screenshot(path=str(Path(shots) / "tagger_single.png"), full_page=True)

    # Clicking a tag adds it to the exclude list (the accordion's textbox).
    tag.click()
    exclude = page.locator("#tagger_opt_exclude_tags textarea")
    assert exclude.input_value() == first_tag
    page.click("#tagger_interrogate")
    page.wait_for_function(
        "tag => !document.querySelector('#tagger_prompt textarea').value.split(', ')"
        ".includes(tag.replaceAll('_', ' '))",
        arg=first_tag,
        timeout=60_000,
    )

    # Batch over a folder: count first, then Start, then the summary and the caption files.
    folder = tmp_path / "batch"
    for i in range(3):
        make_image(folder / f"b{i}.png", (30 + i * 9, 40), seed=10 + i)
    (folder / "bad.png").write_bytes(b"broken")
    page.click("#tagger_batch_tab-button, button:has-text('Batch from folder')")
    page.fill("#tagger_input_dir textarea, #tagger_input_dir input", str(folder))
    page.press("#tagger_input_dir textarea, #tagger_input_dir input", "Enter")
    page.wait_for_selector("#tagger_count:has-text('4 images found')", timeout=30_000)
    page.click("#tagger_start")
    page.wait_for_selector("#tagger_summary .tagger_summary", timeout=60_000)
    summary = page.locator("#tagger_summary .tagger_summary").first.inner_text()
    assert "Done: 4 found, 3 written, 0 skipped, 1 failed" in summary
    assert "bad.png" in summary
    assert "Most frequent tags" in summary
    if shots:
        page.screenshot(path=str(Path(shots) / "tagger_batch.png"), full_page=True)
    for i in range(3):
        caption = (folder / f"b{i}.txt").read_text(encoding="utf-8")
        assert first_tag.replace("_", " ") not in caption.strip().split(", ")
