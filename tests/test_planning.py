"""Output planning over the whole run: each file written by one image, each image tagged once."""

from __future__ import annotations

import doctest
import json
from pathlib import Path

import pytest
from tiny import make_image

from tagger import planning
from tagger.batch import BatchRun, run_batch
from tagger.options import BatchOptions
from tagger.registry import local_spec
from tagger.wd14 import WD14Tagger


@pytest.fixture
def tagger(model_dir: Path) -> WD14Tagger:
    return WD14Tagger(local_spec(model_dir), providers="cpu").load()


def _manifest(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def _caption_alone(tagger: WD14Tagger, image: Path, tmp: Path) -> str:
    """The caption this image gets when it is tagged on its own."""
    alone = tmp / "alone"
    alone.mkdir(exist_ok=True)
    copy = alone / image.name
    copy.write_bytes(image.read_bytes())
    run_batch([copy], tagger)
    return copy.with_suffix(".txt").read_text(encoding="utf-8").strip()


def test_doctests() -> None:
    assert doctest.testmod(planning).failed == 0


def test_two_input_folders_into_one_output_folder(tmp_path: Path, tagger: WD14Tagger) -> None:
    first = make_image(tmp_path / "ds" / "a" / "x.png", (24, 24), seed=1)
    second = make_image(tmp_path / "ds" / "b" / "x.png", (24, 24), seed=2)
    out, manifest = tmp_path / "out", tmp_path / "out" / "metadata.jsonl"
    options = BatchOptions(output_dir=str(out), jsonl=str(manifest))
    summary = run_batch(
        [tmp_path / "ds" / "a", tmp_path / "ds" / "b"], tagger, batch_options=options
    )
    assert (summary.found, summary.written, summary.failed_count) == (2, 1, 1)
    assert summary.failed == [
        (
            str(second),
            f"its caption {out / 'x.txt'} is also written for {first} (listed first): two images "
            f"would write one file (rename one, or give each input its own --output-dir)",
        )
    ]
    expected = _caption_alone(tagger, first, tmp_path)
    assert (out / "x.txt").read_text(encoding="utf-8").strip() == expected
    records = _manifest(manifest)
    assert [r["file_name"] for r in records] == ["../ds/a/x.png"]
    assert records[0]["text"] == expected  # the line of an image carries its own caption


def test_a_glob_matching_two_images_with_one_stem(tmp_path: Path, tagger: WD14Tagger) -> None:
    make_image(tmp_path / "ds" / "a.jpg", (24, 24), seed=1)
    make_image(tmp_path / "ds" / "a.png", (24, 24), seed=2)
    summary = run_batch([str(tmp_path / "ds" / "*")], tagger)
    assert (summary.found, summary.written, summary.failed_count) == (2, 1, 1)
    assert summary.failed[0][0] == str(tmp_path / "ds" / "a.png")
    assert "is also written for" in summary.failed[0][1]


def test_names_differing_in_case_are_one_output(tmp_path: Path, tagger: WD14Tagger) -> None:
    make_image(tmp_path / "A.png", (24, 24), seed=1)
    make_image(tmp_path / "a.jpg", (24, 24), seed=2)
    summary = run_batch([tmp_path], tagger)
    assert (summary.written, summary.failed_count) == (1, 1)
    assert sorted(p.name for p in tmp_path.glob("*.txt")) == ["A.txt"]


def test_an_image_named_by_several_inputs_is_tagged_once(
    tmp_path: Path, tagger: WD14Tagger
) -> None:
    folder = tmp_path / "dir"
    for index in range(3):
        make_image(folder / f"x{index}.png", (24, 24), seed=index)
    link = tmp_path / "link"
    link.symlink_to(folder)  # another route to the same folder
    manifest = tmp_path / "metadata.jsonl"
    inputs = [folder, folder / "x1.png", str(folder / "*.png"), link, link / "x2.png"]
    summary = run_batch(inputs, tagger, batch_options=BatchOptions(jsonl=str(manifest)))
    assert (summary.found, summary.written, summary.skipped, summary.failed_count) == (3, 3, 0, 0)
    assert [r["file_name"] for r in _manifest(manifest)] == [
        "dir/x0.png",
        "dir/x1.png",
        "dir/x2.png",
    ]
    run = BatchRun(inputs, tagger)
    assert run.prepare().total == 3
    assert (run.plan.listed, run.plan.repeated) == (8, 5)


def test_the_same_image_mirrored_two_ways_is_tagged_once(
    tmp_path: Path, tagger: WD14Tagger
) -> None:
    image = make_image(tmp_path / "ds" / "sub" / "x.png", (24, 24), seed=1)
    out = tmp_path / "out"
    options = BatchOptions(output_dir=str(out), recursive=True)
    summary = run_batch([tmp_path / "ds", image], tagger, batch_options=options)
    assert (summary.found, summary.written) == (1, 1)
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.txt")) == ["sub/x.txt"]


def test_an_output_that_is_an_input_image_fails_its_image(
    tmp_path: Path, tagger: WD14Tagger
) -> None:
    png = make_image(tmp_path / "x.png", (24, 24), seed=1)
    jpg = make_image(tmp_path / "x.jpg", (24, 24), seed=2)
    before = png.read_bytes(), jpg.read_bytes()
    summary = run_batch([tmp_path], tagger, batch_options=BatchOptions(caption_extension=".png"))
    assert summary.written == 0
    assert sorted(summary.failed) == [
        (str(jpg), f"its caption {png} would overwrite the image {png}"),
        (str(png), f"its caption {png} would overwrite the image {png}"),
    ]
    assert (png.read_bytes(), jpg.read_bytes()) == before


def test_a_caption_that_is_the_manifest_fails_its_image(tmp_path: Path, tagger: WD14Tagger) -> None:
    make_image(tmp_path / "a.png", (24, 24), seed=1)
    image = make_image(tmp_path / "metadata.png", (24, 24), seed=2)
    manifest = tmp_path / "metadata.jsonl"
    options = BatchOptions(caption_extension=".jsonl", jsonl=str(manifest))
    summary = run_batch([tmp_path], tagger, batch_options=options)
    assert summary.written == 1
    assert summary.failed == [
        (str(image), f"its caption {manifest} would overwrite the --jsonl manifest")
    ]
    assert [r["file_name"] for r in _manifest(manifest)] == ["a.png"]


def test_hash_collisions_never_fail_an_image(
    tmp_path: Path, tagger: WD14Tagger, monkeypatch: pytest.MonkeyPatch
) -> None:
    for index in range(4):
        make_image(tmp_path / "ds" / f"x{index}.png", (24, 24), seed=index)
    make_image(tmp_path / "ds" / "x0.jpg", (24, 24), seed=9)
    monkeypatch.setattr(planning, "path_hash", lambda key: 7)  # every key collides
    run = BatchRun([tmp_path / "ds", tmp_path / "ds" / "x1.png"], tagger)
    plan = run.prepare()
    assert (plan.total, plan.repeated, plan.conflicts) == (5, 1, 1)
    summary = run.run()
    assert (summary.written, summary.failed_count) == (4, 1)
    assert summary.failed[0][0] == str(tmp_path / "ds" / "x0.png")  # x0.jpg is listed first


def test_conflicts_are_found_before_the_model_loads(tmp_path: Path, model_dir: Path) -> None:
    make_image(tmp_path / "a.jpg", (24, 24), seed=1)
    make_image(tmp_path / "a.png", (24, 24), seed=2)
    model = WD14Tagger(local_spec(model_dir), providers="cpu")
    run = BatchRun([tmp_path], model)
    plan = run.prepare()
    assert (plan.total, plan.conflicts) == (2, 1)
    assert run.total == 2
    assert not model.loaded  # nothing loaded, nothing run
