"""What a run does with files already there: users' captions, links, encodings, the manifest."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tiny import make_image

from tagger.batch import BatchRun, run_batch
from tagger.options import BatchOptions, TagOptions
from tagger.registry import local_spec
from tagger.wd14 import WD14Tagger


@pytest.fixture
def tagger(model_dir: Path) -> WD14Tagger:
    return WD14Tagger(local_spec(model_dir), providers="cpu").load()


def _tags_alone(tagger: WD14Tagger, tmp: Path, seed: int) -> list[str]:
    """The tags an image gets when it has no caption yet."""
    image = make_image(tmp / "alone" / "x.png", (24, 24), seed=seed)
    run_batch([image], tagger)
    return image.with_suffix(".txt").read_text(encoding="utf-8").strip().split(", ")


# -- links -----------------------------------------------------------------------------------


@pytest.mark.parametrize("policy", ["skip", "overwrite", "append", "prepend"])
def test_an_existing_caption_that_is_a_link_fails_its_image_and_stays(
    tmp_path: Path, tagger: WD14Tagger, policy: str
) -> None:
    make_image(tmp_path / "ds" / "x.png", (24, 24), seed=1)
    make_image(tmp_path / "ds" / "y.png", (24, 24), seed=2)
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    link = tmp_path / "ds" / "x.txt"
    link.symlink_to(victim)
    options = BatchOptions(on_existing=policy, write_json=True)
    summary = run_batch([tmp_path / "ds"], tagger, batch_options=options)
    assert (summary.written, summary.failed_count) == (1, 1)
    path, reason = summary.failed[0]
    assert path == str(tmp_path / "ds" / "x.png")
    assert reason.startswith(f"{link}: is a symbolic link; tagger never")
    assert link.is_symlink()
    assert victim.read_text() == "precious\n"
    assert not (tmp_path / "ds" / "x.json").exists()  # nothing of that image was written
    assert (tmp_path / "ds" / "y.txt").is_file()


# -- encodings, byte order marks, line endings -----------------------------------------------


@pytest.mark.parametrize("policy", ["append", "prepend", "skip"])
@pytest.mark.parametrize(
    "data",
    ["café, naïve\n".encode("latin-1"), "猫耳, 少女\n".encode("shift_jis")],
    ids=["latin-1", "shift-jis"],
)
def test_a_caption_that_is_not_utf8_is_never_rewritten(
    tmp_path: Path, tagger: WD14Tagger, data: bytes, policy: str
) -> None:
    make_image(tmp_path / "x.png", (24, 24), seed=1)
    caption = tmp_path / "x.txt"
    caption.write_bytes(data)
    manifest = tmp_path / "metadata.jsonl"
    options = BatchOptions(on_existing=policy, write_json=True, jsonl=str(manifest))
    summary = run_batch([tmp_path / "x.png"], tagger, batch_options=options)
    assert (summary.written, summary.failed_count) == (0, 1)
    reason = summary.failed[0][1]
    assert reason.startswith(f"{caption}: is not UTF-8 text (byte 0x")
    assert "leaves it untouched" in reason
    assert caption.read_bytes() == data
    assert not (tmp_path / "x.json").exists()
    assert not manifest.exists()


def test_overwrite_replaces_a_caption_in_another_encoding(
    tmp_path: Path, tagger: WD14Tagger
) -> None:
    make_image(tmp_path / "x.png", (24, 24), seed=1)
    (tmp_path / "x.txt").write_bytes("café\r\n".encode("latin-1"))
    summary = run_batch([tmp_path], tagger, batch_options=BatchOptions(on_existing="overwrite"))
    assert summary.written == 1
    expected = ", ".join(_tags_alone(tagger, tmp_path, seed=1))
    assert (tmp_path / "x.txt").read_bytes() == f"{expected}\r\n".encode()  # its line ending


@pytest.mark.parametrize("policy", ["append", "prepend"])
def test_a_bom_stays_first_and_tags_are_not_doubled(
    tmp_path: Path, tagger: WD14Tagger, policy: str
) -> None:
    tags = _tags_alone(tagger, tmp_path, seed=3)
    make_image(tmp_path / "ds" / "x.png", (24, 24), seed=3)
    caption = tmp_path / "ds" / "x.txt"
    caption.write_bytes(b"\xef\xbb\xbf" + f"my_character, {tags[0]}\r\n".encode())
    run_batch([tmp_path / "ds"], tagger, batch_options=BatchOptions(on_existing=policy))
    data = caption.read_bytes()
    assert data.startswith(b"\xef\xbb\xbf")
    assert data.count(b"\xef\xbb\xbf") == 1
    assert data.endswith(b"\r\n")
    assert data.count(b"\r\n") == 1
    merged = data[3:-2].decode().split(", ")
    if policy == "append":
        assert merged == ["my_character", *tags]
    else:
        assert merged == [*tags, "my_character"]


def test_line_endings_of_a_multi_line_caption_are_kept(tmp_path: Path, tagger: WD14Tagger) -> None:
    tags = _tags_alone(tagger, tmp_path, seed=4)
    make_image(tmp_path / "ds" / "x.png", (24, 24), seed=4)
    caption = tmp_path / "ds" / "x.txt"
    caption.write_bytes(b"a girl on a beach\r\nmy_character")  # no final line ending
    options = BatchOptions(on_existing="append")
    run_batch([tmp_path / "ds"], tagger, tag_options=TagOptions(), batch_options=options)
    expected = "a girl on a beach\r\nmy_character, " + ", ".join(tags)
    assert caption.read_bytes() == expected.encode()


# -- the manifest ----------------------------------------------------------------------------


def _records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


def test_a_redone_image_replaces_its_manifest_line(tmp_path: Path, tagger: WD14Tagger) -> None:
    for index in range(3):
        make_image(tmp_path / f"x{index}.png", (24, 24), seed=index)
    manifest = tmp_path / "metadata.jsonl"
    options = BatchOptions(jsonl=str(manifest))
    run_batch([tmp_path], tagger, batch_options=options)
    first = manifest.read_bytes()
    (tmp_path / "x1.txt").write_text("a hand edit\n")
    (tmp_path / "x0.txt").unlink()  # redone: its line is replaced, not added
    summary = run_batch([tmp_path], tagger, batch_options=options)
    assert (summary.written, summary.skipped) == (1, 2)
    records = _records(manifest)
    assert sorted(r["file_name"] for r in records) == ["x0.png", "x1.png", "x2.png"]
    assert len(manifest.read_bytes().splitlines()) == 3
    assert {r["file_name"]: r for r in records}["x0.png"] == _records_from(first)["x0.png"]
    # a third run with nothing to do leaves the file byte for byte
    before = manifest.read_bytes()
    run_batch([tmp_path], tagger, batch_options=options)
    assert manifest.read_bytes() == before


def _records_from(data: bytes) -> dict[str, dict]:
    return {r["file_name"]: r for r in (json.loads(line) for line in data.splitlines())}


def test_a_last_record_without_a_line_ending_is_read(tmp_path: Path, tagger: WD14Tagger) -> None:
    for index in range(2):
        make_image(tmp_path / f"x{index}.png", (24, 24), seed=index)
    manifest = tmp_path / "metadata.jsonl"
    options = BatchOptions(jsonl=str(manifest))
    run_batch([tmp_path], tagger, batch_options=options)
    complete = manifest.read_bytes()
    manifest.write_bytes(complete.rstrip(b"\n"))  # a hand-edited file, last line unterminated
    summary = run_batch([tmp_path], tagger, batch_options=options)
    assert (summary.written, summary.skipped) == (0, 2)  # both lines count as done
    assert manifest.read_bytes() == complete.rstrip(b"\n")  # nothing written: left as it was
    make_image(tmp_path / "x2.png", (24, 24), seed=2)
    run_batch([tmp_path], tagger, batch_options=options)
    assert [r["file_name"] for r in _records(manifest)] == ["x0.png", "x1.png", "x2.png"]
    assert manifest.read_bytes().startswith(complete)


def test_lines_that_are_not_records_are_kept(tmp_path: Path, tagger: WD14Tagger) -> None:
    make_image(tmp_path / "x0.png", (24, 24), seed=0)
    manifest = tmp_path / "metadata.jsonl"
    manifest.write_bytes(b'{"note": "made by hand"}\n{"file_name": "x0.png", "text": "old"}\n')
    (tmp_path / "x0.txt").write_text("old\n")
    (tmp_path / "x0.json").unlink(missing_ok=True)
    run = BatchRun([tmp_path], tagger, batch_options=BatchOptions(jsonl=str(manifest)))
    assert run.run().skipped == 1
    assert manifest.read_bytes().startswith(b'{"note": "made by hand"}\n')


def test_overwrite_starts_the_manifest_afresh_only_when_something_is_written(
    tmp_path: Path, model_dir: Path
) -> None:
    make_image(tmp_path / "x0.png", (24, 24), seed=0)
    manifest = tmp_path / "metadata.jsonl"
    manifest.write_bytes(b'{"file_name": "old.png", "text": "kept"}\n')
    broken = tmp_path / "broken-model"
    broken.mkdir()
    (broken / "model.onnx").write_bytes(b"not a model")
    (broken / "selected_tags.csv").write_bytes((model_dir / "selected_tags.csv").read_bytes())
    options = BatchOptions(on_existing="overwrite", jsonl=str(manifest))
    with pytest.raises(Exception, match="model"):
        run_batch(
            [tmp_path], WD14Tagger(local_spec(broken), providers="cpu"), batch_options=options
        )
    assert manifest.read_bytes() == b'{"file_name": "old.png", "text": "kept"}\n'
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "broken-model",
        "metadata.jsonl",
        "x0.png",
    ]
    run_batch([tmp_path], WD14Tagger(local_spec(model_dir), providers="cpu"), batch_options=options)
    assert [r["file_name"] for r in _records(manifest)] == ["x0.png"]
