"""The Dataset sub-tab in headless Chromium (Debian's chromium, driven by Playwright) on real
photos: load a folder, filter (typed, and by clicking a tag in the All tags pane), open an image,
edit its caption with the autocomplete, bulk-rename with a preview, undo every change (the files
equal the originals byte for byte), run checks and move a finding to the trash and back."""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import chromium
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from dataset_util import CAPTIONS, COCO, PHOTOS
from trees import tree

pytest.importorskip("gradio")
pytest.importorskip("playwright.sync_api")
pytestmark = pytest.mark.skipif(not chromium.available(), reason=f"no {chromium.CHROMIUM}")

FIELD = "#{0} textarea, #{0} input"


def build(folder: Path) -> Path:
    """The photos with their captions, an identical copy and a truncated file."""
    folder.mkdir(parents=True)
    for name in PHOTOS:
        shutil.copy(COCO / name, folder / name)
        (folder / name).with_suffix(".txt").write_text(CAPTIONS[name], encoding="utf-8")
    shutil.copy(COCO / PHOTOS[0], folder / "copy.jpg")
    data = (COCO / PHOTOS[3]).read_bytes()
    (folder / "cut.jpg").write_bytes(data[: len(data) // 2])
    return folder


def user_files(folder: Path) -> dict[str, bytes]:
    return {k: v for k, v in tree(folder).items() if not k.startswith(".tagger/")}


@pytest.fixture
def page(model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[object]:
    """A Chromium page on the standalone app (thumbnails cached under tmp_path)."""
    from tagger.ui.app import launch
    from tagger.ui.host import RuntimeSettings

    monkeypatch.setenv("TAGGER_CACHE_DIR", str(tmp_path / "cache"))
    port = chromium.free_port()
    settings = RuntimeSettings(default_model="tiny-v3", models_dirs=[model_dir.parent])
    demo = launch(settings, port=port, presets_dir=tmp_path / "presets", block=False)
    try:
        with chromium.open_page(f"http://127.0.0.1:{port}/", "#tagger_interrogate") as page:
            yield page
    finally:
        demo.close()


def undo_and_wait(p: Any, expected: str) -> None:
    """Click Undo and wait for its own message (each names its journal, so an earlier undo's
    message with the same count never passes for this one)."""
    diff = "document.querySelector('#tagger_ds_diff textarea').value"
    before = p.evaluate(f"() => {diff}")
    p.click("#tagger_ds_undo")
    p.wait_for_function(
        f"([old, text]) => {diff} !== old && {diff}.includes(text)",
        arg=[before, expected],
        timeout=30_000,
    )


def shot(page: object, name: str) -> None:
    """A screenshot into $TAGGER_SCREENSHOTS (for the README), when it is set."""
    where = os.environ.get("TAGGER_SCREENSHOTS")
    if where:
        page.screenshot(path=str(Path(where) / name), full_page=True)  # type: ignore[attr-defined]


def wait_text(page: object, selector: str, text: str) -> None:
    page.wait_for_selector(f"{selector}:has-text({text!r})", timeout=30_000)  # type: ignore[attr-defined]


def test_filter_edit_bulk_rename_undo_and_checks(page: object, tmp_path: Path) -> None:
    p = page
    folder = build(tmp_path / "dataset")
    original = user_files(folder)
    p.click("#tagger_dataset_tab-button, button:has-text('Dataset')")
    p.fill(FIELD.format("tagger_ds_folder"), str(folder))
    p.click("#tagger_ds_load")
    wait_text(p, "#tagger_ds_status", "10 images in")
    wait_text(p, "#tagger_ds_page", "Page 1 of 1 (10 images)")
    assert p.locator("#tagger_ds_gallery .thumbnail-item").count() == 10
    assert p.locator("#tagger_results").is_visible() is False  # the sub-tab takes the width

    # a typed filter
    p.fill(FIELD.format("tagger_ds_filter"), "tag:outdoors AND NOT tag:boat")
    p.press(FIELD.format("tagger_ds_filter"), "Enter")
    wait_text(p, "#tagger_ds_status", "; 4 shown")
    assert p.locator("#tagger_ds_gallery .thumbnail-item").count() == 4
    # a tag clicked in the All tags pane becomes the filter
    p.click("#tagger_ds_tags_html .tagger_ds_tag[data-tag='lake']")
    wait_text(p, "#tagger_ds_status", "; 1 shown")
    assert p.locator(FIELD.format("tagger_ds_filter")).input_value() == 'tag:"lake"'
    p.fill(FIELD.format("tagger_ds_filter"), "tag:outdoors")
    p.press(FIELD.format("tagger_ds_filter"), "Enter")
    wait_text(p, "#tagger_ds_status", "; 5 shown")
    shot(p, "dataset_tab.png")

    # open the first image, edit its caption with the autocomplete, save
    p.locator("#tagger_ds_gallery .thumbnail-item").first.click()
    selected = PHOTOS[1]  # the first photo tagged outdoors
    p.wait_for_function(
        "name => document.querySelector('#tagger_ds_selected textarea').value === name",
        arg=selected,
        timeout=30_000,
    )
    caption = p.locator("#tagger_ds_caption textarea")
    assert caption.input_value() == CAPTIONS[selected]
    caption.click()
    caption.press("End")
    caption.type(", riv")
    p.wait_for_selector("#tagger_ds_suggest li:has-text('river')", timeout=10_000)
    caption.press("Tab")
    assert caption.input_value() == CAPTIONS[selected] + ", river, "
    p.click("#tagger_ds_save")
    wait_text(p, "#tagger_ds_status", f"Saved {selected}")
    saved = (folder / selected).with_suffix(".txt").read_text(encoding="utf-8")
    assert saved == CAPTIONS[selected] + ", river"

    # bulk rename over the filtered images: preview first (nothing written), then apply
    p.click("#tagger_ds_bulk >> text=Bulk edit")
    p.fill(FIELD.format("tagger_ds_rename"), "outdoors=outside")
    p.click("#tagger_ds_preview")
    diff = p.locator("#tagger_ds_diff textarea")
    p.wait_for_function(
        "() => document.querySelector('#tagger_ds_diff textarea').value.includes('Would change')",
        timeout=30_000,
    )
    text = diff.input_value()
    assert "Would change 5 of 8 captions." in text  # the 5 the filter shows
    assert "-boat, river, city, outdoors\n+boat, river, city, outside\n" in text
    assert (folder / PHOTOS[2]).with_suffix(".txt").read_text() == CAPTIONS[PHOTOS[2]]
    shot(p, "dataset_bulk_preview.png")
    p.click("#tagger_ds_apply")
    p.wait_for_function(
        "() => document.querySelector('#tagger_ds_diff textarea').value.startsWith('Changed 5')",
        timeout=30_000,
    )
    assert (folder / PHOTOS[2]).with_suffix(".txt").read_text() == "boat, river, city, outside"
    assert (folder / PHOTOS[0]).with_suffix(".txt").read_text() == CAPTIONS[PHOTOS[0]]

    # undo the rename, then the hand edit: every file is the original again
    undo_and_wait(p, "restored 5")
    undo_and_wait(p, "restored 1")
    assert user_files(folder) == original

    # checks: the copy and the broken file; the copy goes to the trash and comes back
    p.click("#tagger_ds_checks >> text=Checks")
    p.click("#tagger_ds_run")
    wait_text(p, "#tagger_ds_check_status", "10 images checked")
    status = p.locator("#tagger_ds_check_status").first.inner_text()  # 3.41: the id twice
    assert "duplicates 2" in status
    assert "broken 1" in status
    findings = p.locator("#tagger_ds_findings .thumbnail-item")
    assert findings.count() == 2
    shot(p, "dataset_checks.png")
    findings.nth(1).click()
    p.wait_for_function(
        "() => document.querySelector('#tagger_ds_finding textarea').value === 'copy.jpg'",
        timeout=30_000,
    )
    p.click("#tagger_ds_trash")
    wait_text(p, "#tagger_ds_check_status", "Moved copy.jpg to the trash")
    assert not (folder / "copy.jpg").exists()
    assert (folder / ".tagger" / "trash" / "copy.jpg").read_bytes() == original["copy.jpg"]
    undo_and_wait(p, "restored 1")
    assert user_files(folder) == original
