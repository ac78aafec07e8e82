"""The standalone app in headless Chromium (Debian's chromium, driven by Playwright): upload an
image, interrogate, see the tags, click one into the exclude list, run a batch over a folder;
the captioner picker hidden when the captioning libraries cannot be imported."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import chromium
import pytest
from conftest import REPO
from tiny import make_image

pytest.importorskip("gradio")
pytest.importorskip("playwright.sync_api")
pytestmark = pytest.mark.skipif(not chromium.available(), reason=f"no {chromium.CHROMIUM}")


@pytest.fixture
def app_url(model_dir: Path, tmp_path: Path) -> Iterator[str]:
    """The standalone app served on 127.0.0.1 with the tiny model as its only local model."""
    from tagger.ui.app import launch
    from tagger.ui.host import RuntimeSettings

    port = chromium.free_port()
    settings = RuntimeSettings(default_model="tiny-v3", models_dirs=[model_dir.parent])
    demo = launch(settings, port=port, presets_dir=tmp_path / "presets", block=False)
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        demo.close()


@pytest.fixture
def page(app_url: str) -> Iterator[object]:
    """A Chromium page on the app."""
    with chromium.open_page(app_url, "#tagger_interrogate") as page:
        yield page


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
    page.wait_for_selector("#tagger_image img", timeout=30_000)  # the upload is done
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


#: Imported before anything else in the subprocess: the captioning libraries cannot be imported.
BLOCKER = textwrap.dedent(
    """
    import sys

    class BlockCaptioningLibraries:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in {"torch", "transformers", "open_clip"}:
                raise ImportError(f"blocked: {name}")
            return None

    sys.meta_path.insert(0, BlockCaptioningLibraries())
    """
)


def test_captioner_hidden_without_captioning_libraries(model_dir: Path, tmp_path: Path) -> None:
    """``tagger ui`` in a process where torch, transformers and open_clip cannot be imported:
    neither the captioner picker nor the caption box is on the page."""
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "sitecustomize.py").write_text(BLOCKER)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path / "site"), str(REPO)])}
    check = [sys.executable, "-c", "import torch"]
    blocked = subprocess.run(check, env=env, capture_output=True, text=True, check=False)
    assert "blocked: torch" in blocked.stderr
    port = chromium.free_port()
    command = [sys.executable, "-m", "tagger", "ui", "--port", str(port)]
    command += ["--models-dir", str(model_dir.parent), "--model", model_dir.name]
    server = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        url = chromium.wait_for_server(f"http://127.0.0.1:{port}/", server)
        with chromium.open_page(url, "#tagger_interrogate") as page:
            assert page.locator("#tagger_model").is_visible()
            assert page.locator("#tagger_captioner").is_visible() is False
            assert page.locator("#tagger_caption").is_visible() is False
    finally:
        server.terminate()
        output = server.communicate(timeout=30)[0].decode("utf-8", "replace")
    assert "Traceback" not in output, output
