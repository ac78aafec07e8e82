"""The batch engine on real files with the tiny model: outputs, policies, failures, streaming."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import numpy as np
import pytest
from tiny import make_image

from tagger.batch import (
    BatchRun,
    ImageItem,
    count_images,
    find_images,
    normalize_extension,
    output_base,
    run_batch,
)
from tagger.errors import OptionsError
from tagger.options import BatchOptions, TagOptions
from tagger.registry import local_spec
from tagger.wd14 import WD14Tagger


@pytest.fixture
def tagger(model_dir: Path) -> WD14Tagger:
    return WD14Tagger(local_spec(model_dir), providers="cpu").load()


def _tree(root: Path) -> dict[str, bytes]:
    """Every file under root (hidden ones included) -> its bytes."""
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and not p.is_symlink()
    }


def _images(folder: Path, count: int, *, nested: bool = True) -> list[Path]:
    paths = []
    for i in range(count):
        sub = folder / ("a/b" if nested and i % 3 == 0 else "a" if nested and i % 3 == 1 else "")
        paths.append(make_image(sub / f"img{i:02d}.png", (20 + i, 30), seed=i))
    return paths


def test_writes_beside_images_recursively(tmp_path: Path, tagger: WD14Tagger) -> None:
    paths = _images(tmp_path, 7)
    summary = run_batch([tmp_path], tagger, batch_options=BatchOptions(recursive=True))
    assert (summary.found, summary.written, summary.failed_count) == (7, 7, 0)
    for path in paths:
        text = path.with_suffix(".txt").read_text(encoding="utf-8")
        assert text.endswith("\n")
        assert text.strip()
    assert summary.tag_counts.total() == sum(
        len(p.with_suffix(".txt").read_text().split(", ")) for p in paths
    )


def test_not_recursive_takes_top_level_only(tmp_path: Path, tagger: WD14Tagger) -> None:
    _images(tmp_path, 6)
    summary = run_batch([tmp_path], tagger)
    assert summary.found == 2  # img02, img05 sit at the top


def test_output_dir_mirrors_subfolders(tmp_path: Path, tagger: WD14Tagger) -> None:
    src, out = tmp_path / "in", tmp_path / "out"
    paths = _images(src, 6)
    opts = BatchOptions(recursive=True, output_dir=str(out), caption_extension="caption")
    run_batch([src], tagger, batch_options=opts)
    for path in paths:
        assert (out / path.relative_to(src)).with_suffix(".caption").is_file()
        assert not path.with_suffix(".caption").exists()


def test_batched_equals_one_by_one(tmp_path: Path, tagger: WD14Tagger) -> None:
    one, many = tmp_path / "one", tmp_path / "many"
    _images(one, 10)
    _images(many, 10)
    run_batch(
        [one], tagger, batch_options=BatchOptions(recursive=True, batch_size=1, write_json=True)
    )
    run_batch(
        [many],
        tagger,
        batch_options=BatchOptions(recursive=True, batch_size=4, workers=3, write_json=True),
    )
    assert _tree(one) == _tree(many)


@pytest.mark.parametrize(
    ("policy", "expected"),
    [
        ("skip", "my_character, solo\n"),
        ("overwrite", None),
        ("append", "my_character, solo, {new}\n"),
        ("prepend", None),
    ],
)
def test_existing_caption_policies(tmp_path: Path, tagger: WD14Tagger, policy, expected) -> None:
    image = make_image(tmp_path / "x.png", (30, 30), seed=3)
    fresh = tmp_path / "fresh"
    make_image(fresh / "x.png", (30, 30), seed=3)
    run_batch([fresh], tagger)
    new = (fresh / "x.txt").read_text().strip().split(", ")
    image.with_suffix(".txt").write_text("my_character, solo\n", encoding="utf-8")
    summary = run_batch([tmp_path], tagger, batch_options=BatchOptions(on_existing=policy))
    text = image.with_suffix(".txt").read_text()
    if policy == "skip":
        assert (summary.skipped, summary.written, summary.tagged) == (1, 0, 0)
        assert text == expected
    elif policy == "overwrite":
        assert text.strip().split(", ") == new
    elif policy == "append":
        assert text == expected.format(new=", ".join(t for t in new if t != "solo"))
    else:
        old_left = ["my_character"] + ([] if "solo" in new else ["solo"])
        assert text == ", ".join(new + old_left) + "\n"
    if policy in ("append", "prepend"):  # a rerun changes nothing (de-duplicated)
        run_batch([tmp_path], tagger, batch_options=BatchOptions(on_existing=policy))
        assert image.with_suffix(".txt").read_text() == text


def test_rerun_skips_done_and_fills_missing_json(tmp_path: Path, tagger: WD14Tagger) -> None:
    _images(tmp_path, 4, nested=False)
    run_batch([tmp_path], tagger)
    before = _tree(tmp_path)
    again = run_batch([tmp_path], tagger)
    assert (again.skipped, again.tagged, again.written) == (4, 0, 0)
    assert _tree(tmp_path) == before
    with_json = run_batch([tmp_path], tagger, batch_options=BatchOptions(write_json=True))
    assert (with_json.tagged, with_json.written) == (4, 4)
    after = _tree(tmp_path)
    assert {k: v for k, v in after.items() if not k.endswith(".json")} == before
    record = json.loads(after["img00.json"])
    assert set(record) == {"rating", "character", "general"}
    assert len(record["rating"]) == 4


def test_manifest_lines_and_resume(tmp_path: Path, tagger: WD14Tagger) -> None:
    folder = tmp_path / "data"
    _images(folder, 5)
    manifest = folder / "metadata.jsonl"
    opts = BatchOptions(recursive=True, jsonl=str(manifest))
    run_batch([folder], tagger, batch_options=opts)
    lines = manifest.read_text(encoding="utf-8").splitlines()
    records = [json.loads(line) for line in lines]
    assert [r["file_name"] for r in records] == [
        "img02.png", "a/img01.png", "a/img04.png", "a/b/img00.png", "a/b/img03.png"
    ]  # fmt: skip
    assert all(
        r["text"] == (folder / r["file_name"]).with_suffix(".txt").read_text().strip()
        for r in records
    )
    complete = manifest.read_bytes()
    # A killed run: the last two images have no caption and the manifest ends mid-line.
    for name in ("a/b/img00", "a/b/img03"):
        (folder / f"{name}.txt").unlink()
    manifest.write_bytes(complete[: complete.index(b'{"file_name": "a/b/img00.png"') + 25])
    resumed = run_batch([folder], tagger, batch_options=opts)
    assert (resumed.skipped, resumed.written) == (3, 2)
    assert manifest.read_bytes() == complete
    # A hand-written caption kept by skip is what the manifest records for that image.
    (folder / "img02.txt").write_text("hand written, caption\n", encoding="utf-8")
    manifest.unlink()
    run_batch([folder], tagger, batch_options=opts)
    first = json.loads(manifest.read_text(encoding="utf-8").splitlines()[0])
    assert first["file_name"] == "img02.png"
    assert first["text"] == "hand written, caption"
    manifest.write_bytes(complete)
    (folder / "img02.txt").write_text(records[0]["text"] + "\n", encoding="utf-8")
    overwrite = BatchOptions(recursive=True, jsonl=str(manifest), on_existing="overwrite")
    run_batch([folder], tagger, batch_options=overwrite)
    assert manifest.read_bytes() == complete  # rewritten, not appended to


def test_broken_files_are_reported_and_counted(tmp_path: Path, tagger: WD14Tagger) -> None:
    good = [make_image(tmp_path / name, (24, 24), seed=i) for i, name in enumerate(
        ["ok.png", "画像 ü.png", "sub/ok2.jpg"]
    )]  # fmt: skip
    (tmp_path / "empty.png").write_bytes(b"")
    data = (tmp_path / "ok.png").read_bytes()
    (tmp_path / "truncated.png").write_bytes(data[: len(data) // 2])
    (tmp_path / "text.jpg").write_text("not an image")
    make_image(tmp_path / "huge.png", (300, 300), seed=9)
    (tmp_path / "dangling.png").symlink_to(tmp_path / "missing.png")
    (tmp_path / "loop1.png").symlink_to(tmp_path / "loop2.png")
    (tmp_path / "loop2.png").symlink_to(tmp_path / "loop1.png")
    (tmp_path / "sub" / "back").symlink_to(tmp_path, target_is_directory=True)  # a folder loop
    (tmp_path / "notes.txt").write_text("ignored: not an image extension")
    failures: list[tuple[Path, str]] = []
    summary = run_batch(
        [tmp_path], tagger,
        batch_options=BatchOptions(recursive=True, max_pixels=50_000),
        on_failure=lambda path, reason: failures.append((path, reason)),
    )  # fmt: skip
    reasons = {Path(path).name: reason for path, reason in summary.failed}
    assert set(reasons) == {
        "empty.png", "truncated.png", "text.jpg", "huge.png", "dangling.png", "loop1.png",
        "loop2.png",
    }  # fmt: skip
    assert "90000" in reasons["huge.png"].replace(",", "").replace(" ", "")
    assert "truncated" in reasons["truncated.png"] or "broken" in reasons["truncated.png"]
    assert "not an image" in reasons["text.jpg"]
    assert summary.written == len(good) == 3
    assert summary.failed_count == 7 == len(failures)
    for path in good:
        assert path.with_suffix(".txt").is_file()
    assert not list(tmp_path.rglob(".*tagger-tmp"))


def test_same_stem_is_a_failure_not_an_overwrite(tmp_path: Path, tagger: WD14Tagger) -> None:
    make_image(tmp_path / "a.jpg", (20, 20), seed=1)
    make_image(tmp_path / "a.png", (20, 20), seed=2)
    summary = run_batch([tmp_path], tagger)
    assert summary.written == 1
    assert summary.failed == [
        (
            str(tmp_path / "a.png"),
            f"its caption {tmp_path / 'a.txt'} is also written for {tmp_path / 'a.jpg'} (listed "
            f"first): two images would write one file (rename one, or give each input its own "
            f"--output-dir)",
        )
    ]


def test_cancel_stops_after_current_batch(tmp_path: Path, tagger: WD14Tagger) -> None:
    _images(tmp_path, 30, nested=False)
    cancel = threading.Event()
    seen = []

    def progress(p):
        seen.append(p)
        if p.written == 3:
            cancel.set()

    summary = run_batch(
        [tmp_path], tagger, batch_options=BatchOptions(batch_size=1), progress=progress,
        cancel=cancel, total=30,
    )  # fmt: skip
    assert summary.cancelled
    assert summary.written == 3
    assert len(list(tmp_path.glob("*.txt"))) == 3
    assert [p.done for p in seen] == [1, 2, 3]
    assert all(p.total == 30 for p in seen)


class _Counting:
    """Wraps a tagger, counting preprocess calls (to see how far decoding runs ahead)."""

    def __init__(self, inner: WD14Tagger, fail_on: set[int] | None = None) -> None:
        self.inner = inner
        self.preprocessed = 0
        self.fail_on = fail_on or set()
        self.forward_sizes: list[int] = []
        self._lock = threading.Lock()

    fixed_batch = property(lambda self: self.inner.fixed_batch)
    active_providers = property(lambda self: self.inner.active_providers)

    def load(self):
        return self

    def preprocess(self, image):
        with self._lock:
            self.preprocessed += 1
        return self.inner.preprocess(image)

    def forward(self, batch):
        self.forward_sizes.append(len(batch))
        marks = {int(v) for v in batch[:, 0, 0, 0]}
        if len(batch) > 1 and marks & self.fail_on:
            raise RuntimeError("simulated out-of-memory")
        if marks & self.fail_on:
            raise RuntimeError("simulated bad input")
        return self.inner.forward(batch)

    def postprocess(self, scores, options):
        return self.inner.postprocess(scores, options)


def test_decoding_stays_a_bounded_window_ahead(tmp_path: Path, tagger: WD14Tagger) -> None:
    _images(tmp_path, 60, nested=False)
    counting = _Counting(tagger)
    cancel = threading.Event()
    opts = BatchOptions(batch_size=2, workers=2)
    summary = run_batch(
        [tmp_path], counting, batch_options=opts, cancel=cancel,
        progress=lambda p: cancel.set() if p.written >= 2 else None,
    )  # fmt: skip
    assert summary.written == 2
    window = 2 * 2 + 2
    assert counting.preprocessed <= 2 + window + 1 < 60


def test_failed_batch_is_retried_one_by_one(tmp_path: Path, tagger: WD14Tagger) -> None:
    from PIL import Image

    for i in range(4):  # uniform colours; image 2 is pure white, which the fake model rejects
        Image.new("RGB", (16, 16), (255, 255, 255) if i == 2 else (i, i, i)).save(
            tmp_path / f"{i}.png"
        )
    counting = _Counting(tagger, fail_on={255})
    summary = run_batch([tmp_path], counting, batch_options=BatchOptions(batch_size=4))
    assert summary.written == 3
    assert summary.failed == [
        (str(tmp_path / "2.png"), "the model failed on it: RuntimeError: simulated bad input")
    ]
    assert counting.forward_sizes == [4, 1, 1, 1, 1]


def test_find_images_inputs(tmp_path: Path) -> None:
    _images(tmp_path, 6)
    (tmp_path / ".hidden").mkdir()
    make_image(tmp_path / ".hidden" / "h.png", (8, 8), seed=1)
    single = tmp_path / "a" / "img01.png"
    items = list(find_images([str(tmp_path / "**" / "*.png")], recursive=True))
    assert len(items) == 6
    assert all(item.root == tmp_path for item in items)
    assert list(find_images([single, single])) == [ImageItem(single, single.parent)] * 2
    assert count_images([single, single]) == 1  # one image, named twice
    assert count_images([tmp_path], recursive=True) == 6
    assert count_images([str(tmp_path / "*.png")]) == 2


def test_output_paths_and_extensions() -> None:
    assert normalize_extension("caption") == ".caption"
    with pytest.raises(OptionsError, match="not a file extension"):
        normalize_extension("a/b")
    assert output_base(Path("/x/in/a/b.png"), Path("/x/in"), Path("/out")) == Path("/out/a/b")


def test_json_extension_collision_is_refused(tmp_path: Path, tagger: WD14Tagger) -> None:
    with pytest.raises(OptionsError, match="collide"):
        BatchRun(
            [tmp_path],
            tagger,
            batch_options=BatchOptions(caption_extension=".json", write_json=True),
        )


def test_tag_options_reach_the_files(tmp_path: Path, tagger: WD14Tagger) -> None:
    make_image(tmp_path / "x.png", (30, 30), seed=5)
    opts = TagOptions(
        general_threshold=0.0,
        character_threshold=1.0,
        max_tags=3,
        additional_tags=["my_trigger"],
        rating_tag="last",
        separator=" | ",
    )
    run_batch([tmp_path], tagger, opts, BatchOptions(write_json=True))
    parts = (tmp_path / "x.txt").read_text().strip().split(" | ")
    record = json.loads((tmp_path / "x.json").read_text())
    assert parts[0] == "my_trigger"
    assert len(parts) == 5
    assert parts[-1] == max(record["rating"], key=record["rating"].get)
    assert len(record["general"]) == 3
    assert record["character"] == {}
    scores = np.array(list(record["general"].values()))
    assert (np.diff(scores) <= 0).all()


@pytest.mark.skipif(os.name != "posix", reason="symlinks")
def test_symlinked_folder_is_followed_once(tmp_path: Path, tagger: WD14Tagger) -> None:
    real = tmp_path / "real"
    make_image(real / "x.png", (20, 20), seed=1)
    (tmp_path / "link").symlink_to(real, target_is_directory=True)
    summary = run_batch([tmp_path], tagger, batch_options=BatchOptions(recursive=True))
    assert summary.found == 1


class _Probe(_Counting):
    """Records the scheduling of the threads that preprocess; can hold the decode threads."""

    def __init__(self, inner: WD14Tagger, providers: list[str] | None = None) -> None:
        super().__init__(inner)
        self.providers = providers
        self.seen: list[tuple[str, int, int]] = []  # (thread name, policy, nice)
        self.hold = threading.Event()  # set: decode threads may go on

    active_providers = property(lambda self: self.providers or self.inner.active_providers)

    def preprocess(self, image):
        tid = threading.get_native_id()
        name = threading.current_thread().name
        with self._lock:
            self.seen.append((name, os.sched_getscheduler(0), os.getpriority(os.PRIO_PROCESS, tid)))
        if name.startswith("tagger-decode"):
            self.hold.wait()
        return super().preprocess(image)


@pytest.mark.skipif(not hasattr(os, "SCHED_IDLE"), reason="Linux scheduling policies")
@pytest.mark.parametrize("gpu", [False, True], ids=["cpu-model", "gpu-model"])
def test_decode_threads_yield_the_cpu_to_the_model(
    tmp_path: Path, tagger: WD14Tagger, gpu: bool
) -> None:
    from tagger.batch import DECODE_NICENESS

    _images(tmp_path, 4, nested=False)
    probe = _Probe(tagger, ["CUDAExecutionProvider", "CPUExecutionProvider"] if gpu else None)
    probe.hold.set()
    main_policy = os.sched_getscheduler(0)
    summary = run_batch([tmp_path], probe, batch_options=BatchOptions(batch_size=1, workers=1))
    assert summary.written == 4
    assert {name.startswith("tagger-decode") for name, _, _ in probe.seen} == {True}
    if gpu:  # a GPU model waits for its images: decoding keeps a fair (niced) share
        assert {(policy, nice) for _, policy, nice in probe.seen} == {
            (os.SCHED_OTHER, DECODE_NICENESS)
        }
    else:  # a CPU model: decoding only on cycles inference leaves idle
        assert {policy for _, policy, _ in probe.seen} == {os.SCHED_IDLE}
    assert os.sched_getscheduler(0) == main_policy  # the caller's thread is untouched


def test_stalled_decode_threads_fall_back_to_the_main_thread(
    tmp_path: Path, tagger: WD14Tagger, monkeypatch: pytest.MonkeyPatch, caplog
) -> None:
    import logging

    import tagger.batch as batch_module

    _images(tmp_path / "ref", 5, nested=False)
    _images(tmp_path / "run", 5, nested=False)
    run_batch([tmp_path / "ref"], tagger, batch_options=BatchOptions(write_json=True))
    monkeypatch.setattr(batch_module, "DECODE_STALL_SECONDS", 0.05)
    probe = _Probe(tagger)  # decode threads held until the last image is written

    def release_at_the_end(progress) -> None:
        if progress.written == 5:
            probe.hold.set()

    try:
        with caplog.at_level(logging.INFO, logger="tagger"):
            summary = run_batch(
                [tmp_path / "run"],
                probe,
                batch_options=BatchOptions(write_json=True, workers=1),
                progress=release_at_the_end,
            )
    finally:
        probe.hold.set()
    assert (summary.written, summary.failed_count) == (5, 0)
    assert _tree(tmp_path / "run") == _tree(tmp_path / "ref")
    main_calls = [name for name, _, _ in probe.seen if not name.startswith("tagger-decode")]
    assert len(main_calls) == 5  # every image decoded by the main thread after the stall
    assert sum("decoding in the main thread" in r.getMessage() for r in caplog.records) == 1


def test_draft_side_applies_to_a_tagger_alone(caplog: pytest.LogCaptureFixture) -> None:
    from tagger.batch import FAST_DECODE_IGNORED, draft_side

    assert (draft_side(False, 448), draft_side(False, 0), draft_side(True, 448)) == (0, 0, 448)
    assert FAST_DECODE_IGNORED not in caplog.text
    assert draft_side(True, 0) == 0  # a captioner or CLIP sees the images: full decoding
    assert FAST_DECODE_IGNORED in caplog.text


def test_fast_decode_reads_large_jpegs_at_a_reduced_scale(
    tmp_path: Path, tagger: WD14Tagger
) -> None:
    from PIL import Image

    from tagger.image import load_image

    rng = np.random.default_rng(0)
    big = tmp_path / "in" / "big.jpg"
    big.parent.mkdir()
    Image.fromarray(rng.integers(0, 256, (300, 400, 3), dtype=np.uint8)).save(big, quality=90)
    png = make_image(tmp_path / "in" / "small.png", (300, 200), seed=3)
    side = tagger.input_size  # 32: 1/8 scale keeps both sides >= 32
    assert load_image(big, draft=side).size == (50, 38)
    assert load_image(big).size == (400, 300)
    assert load_image(png, draft=side).size == (300, 200)  # only JPEGs have a draft mode
    options = BatchOptions(write_json=True, output_dir=str(tmp_path / "fast"), fast_decode=True)
    assert run_batch([tmp_path / "in"], tagger, batch_options=options).written == 2
    full = BatchOptions(write_json=True, output_dir=str(tmp_path / "full"))
    assert run_batch([tmp_path / "in"], tagger, batch_options=full).written == 2
    fast_json = json.loads((tmp_path / "fast" / "big.json").read_text())
    expected = tagger.postprocess(
        tagger.forward(tagger.preprocess(load_image(big, draft=side))[None])[0], TagOptions()
    )
    assert fast_json["general"] == pytest.approx(expected.general, abs=1e-6)
    assert (tmp_path / "fast" / "small.json").read_bytes() == (
        tmp_path / "full" / "small.json"
    ).read_bytes()
    assert fast_json != json.loads((tmp_path / "full" / "big.json").read_text())
