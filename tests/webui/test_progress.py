"""A real batch over the tiny model, run from the tab inside the stand-in webui: progress goes to
``shared.state``, the webui's Interrupt stops the run after the current batch."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tiny import make_image

pytest.importorskip("gradio")


def build_tab(webui):
    """The tab's builder inside a Blocks, with the webui's host hooks."""
    import gradio as gr

    from tagger.ui.blocks import TaggerUI
    from tagger.webui.tab import webui_host

    host = webui_host()
    with gr.Blocks():
        ui = TaggerUI(host)
        ui.build()
    return ui, host


def default_values(ui, **overrides) -> list:
    """Widget values for every tag and batch option (defaults, with overrides)."""
    from tagger.ui.form import to_widget

    values = []
    for spec in [*ui.tag_specs, *ui.batch_specs]:
        values.append(to_widget(spec, overrides.get(spec.key, spec.default)))
    return values


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """Six images and one broken file."""
    images = tmp_path / "images"
    for i in range(6):
        make_image(images / f"img{i}.png", (40 + i * 7, 30 + i * 5), seed=i)
    (images / "broken.jpg").write_bytes(b"not an image")
    return images


def test_batch_reports_progress_to_state(webui, model_dir: Path, folder: Path) -> None:
    ui, host = build_tab(webui)
    state = webui.shared.state
    run = host.wrap_gpu(ui.on_batch, 2)
    values = default_values(ui, batch_size=2, write_json=True)
    count, summary = run("task(abc)", str(folder), str(model_dir), *values)
    assert webui.call_queue.tasks == ["task(abc)"]
    assert count.startswith("7 images found; captions written beside the images in")
    assert "<b>Done</b>: 7 found, 6 written, 0 skipped, 1 failed" in summary
    assert "broken.jpg" in summary
    assert "Time taken" in summary  # the host's wrapper appended its stats to the last output
    assert [(no, total) for no, total, _ in state.history] == [(i, 7) for i in range(1, 8)]
    assert all(text.startswith("Tagger: ") for _, _, text in state.history[1:])
    assert state.job_count == 0  # the host's wrapper ended the job
    for i in range(6):
        assert (folder / f"img{i}.txt").read_text(encoding="utf-8").strip()
        assert set(json.loads((folder / f"img{i}.json").read_text())) == {
            "rating",
            "character",
            "general",
        }


def test_interrupt_stops_after_the_current_batch(webui, model_dir: Path, folder: Path) -> None:
    ui, host = build_tab(webui)
    state = webui.shared.state
    original = state.nextjob

    def nextjob() -> None:
        original()
        if state.job_no == 3:  # the webui's Interrupt button, pressed during the second batch
            state.interrupt()

    state.nextjob = nextjob
    run = host.wrap_gpu(ui.on_batch, 2)
    values = default_values(ui, batch_size=2)
    _, summary = run("task(x)", str(folder), str(model_dir), *values)
    # broken.jpg comes first (job 1), then the batch img0+img1 (jobs 2, 3): Interrupt during
    # that batch lets it finish and write, and nothing after it starts.
    assert "<b>Interrupted</b>: 7 found, 2 written, 0 skipped, 1 failed" in summary
    assert sorted(p.name for p in folder.glob("*.txt")) == ["img0.txt", "img1.txt"]
    assert not list(folder.glob(".*"))  # no temporary files left behind
    assert state.interrupted is False  # the host's wrapper reset it


def test_tab_interrupt_button_sets_host_state(webui) -> None:
    ui, _ = build_tab(webui)
    ui.on_interrupt()
    assert webui.shared.state.interrupted is True


def test_single_image_through_host_wrapper(webui, model_dir: Path, tmp_path: Path) -> None:
    from PIL import Image

    from tagger.options import TagOptions
    from tagger.registry import local_spec
    from tagger.tags import format_tags
    from tagger.wd14 import WD14Tagger

    ui, host = build_tab(webui)
    path = make_image(tmp_path / "one.png", (64, 48), seed=3)
    image = Image.open(path)
    run = host.wrap_gpu(ui.on_interrogate, 6)
    tag_values = default_values(ui)[: len(ui.tag_specs)]
    prompt, rating, _, general, caption, info = run(image, str(model_dir), "", *tag_values)
    tagger = WD14Tagger(local_spec(model_dir)).load()
    expected = tagger.tag_batch([Image.open(path).convert("RGB")], TagOptions())[0]
    assert prompt == format_tags(expected, TagOptions())
    assert general == expected.general
    assert rating == expected.rating
    assert caption == ""
    assert info.startswith("<div class='performance'>")
    # No image: the info box says so, the results stay as they were.
    out = run(None, str(model_dir), "", *tag_values)
    import gradio as gr

    assert list(out[:5]) == [gr.update()] * 5
    assert "no image" in out[5]


def test_auto_interrogate_on_image_change(webui, model_dir: Path, tmp_path: Path) -> None:
    import gradio as gr
    from PIL import Image

    ui, _ = build_tab(webui)
    image = Image.open(make_image(tmp_path / "a.png", (30, 30), seed=1))
    tag_values = default_values(ui)[: len(ui.tag_specs)]
    off = ui.on_image_change(image, False, str(model_dir), "", *tag_values)
    assert off == [gr.update()] * 6  # nothing runs, the host's wrapper is not entered
    assert webui.shared.state.job_count == 0
    on = ui.on_image_change(image, True, str(model_dir), "", *tag_values)
    assert on[0]
    assert on[0] == ui.on_interrogate(image, str(model_dir), "", *tag_values)[0]
    assert "Time taken" in on[5]
