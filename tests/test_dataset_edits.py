"""Bulk edits of real caption files: exact results, dry runs that write nothing, and undo that
restores every byte (byte order marks, CRLF, no final newline, shared captions, hand edits made
after the edit kept as conflicts); a tagging run and an edit at the same time lose nothing."""

from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path

import pytest
from tiny import make_image
from trees import tree

from tagger.dataset.edits import (
    apply_spec,
    check_spec,
    rename_tags,
    reorder,
    run_edit,
    write_caption,
)
from tagger.dataset.journal import journal_dir, list_journals, undo
from tagger.dataset.options import DatasetOptions, EditSpec
from tagger.errors import OptionsError, OutputError

#: Caption bytes with every layout a user's files have.
CAPTIONS = {
    "a.txt": b"1girl, long_hair, solo, smile",
    "b.txt": b"\xef\xbb\xbfcat, solo, Long Hair\r\n",  # BOM and CRLF
    "c.txt": b"dog, outdoors, solo, dog\n",  # a repeated tag, LF
    "sub/d.txt": b"1girl, blue_eyes, very_long_hair\n",
    "sub/e.txt": b"",  # empty caption
}


def build(root: Path) -> Path:
    """A dataset: one image per caption above, an untagged image, a Latin-1 caption."""
    folder = root / "ds"
    for seed, name in enumerate(CAPTIONS):
        make_image(folder / Path(name).with_suffix(".png"), (24, 20), seed=seed)
        (folder / name).write_bytes(CAPTIONS[name])
    make_image(folder / "untagged.png", (24, 20), seed=9)
    make_image(folder / "latin.png", (24, 20), seed=10)
    (folder / "latin.txt").write_bytes(b"caf\xe9, solo")
    return folder


def files(folder: Path) -> dict[str, bytes]:
    """Every file of the dataset except the workbench's own folder."""
    return {k: v for k, v in tree(folder).items() if not k.startswith(".tagger/")}


# -- pure functions ---------------------------------------------------------------------------


def test_rename_exact_wildcard_merge_and_drop() -> None:
    assert rename_tags(["Long_Hair", "solo"], {"long hair": "hair"}) == ["hair", "solo"]
    assert rename_tags(["blue_hair", "red hair", "hat"], {"* hair": "* fur"}) == [
        "blue fur",
        "red fur",
        "hat",
    ]
    assert rename_tags(["long hair", "hair"], {"long hair": "hair"}) == ["hair"]  # merged
    assert rename_tags(["a", "b"], {"a": ""}) == ["b"]  # renamed to nothing: dropped
    assert rename_tags(["chair", "hair"], {"hair": "fur"}) == ["chair", "fur"]  # whole tags


def test_order_of_the_parts_and_every_option() -> None:
    tags = ["solo", "long_hair", "1girl", "solo", "smile", "cat"]
    spec = EditSpec(
        rename={"long_hair": "long hair"},
        replace={"smile": "smiling"},
        remove=["cat"],
        cleanup=["underscores"],
        dedupe=True,
        order="alphabetical",
        keep_first=1,
        max_tags=3,
        add_last=["end"],
        add_first=["start", "solo"],
        trigger="ohwx",
    )
    # rename, replace, remove -> solo, long hair, 1girl, solo, smiling; dedupe -> solo, long
    # hair, 1girl, smiling; alphabetical after the first -> solo, 1girl, long hair, smiling;
    # max 3 -> solo, 1girl, long hair; add_last end; add_first start (solo is there); trigger
    assert apply_spec(tags, spec) == ["ohwx", "start", "solo", "1girl", "long hair", "end"]


def test_reorders() -> None:
    tags = ["t", "b", "c", "a"]
    assert reorder(tags, "reverse", 1) == ["t", "a", "c", "b"]
    frequency = {"a": 1, "b": 3, "c": 3}
    assert reorder(tags, "frequency", 1, frequency=frequency) == ["t", "b", "c", "a"]
    once = reorder(tags, "shuffle", 1, seed=5)
    assert once == reorder(tags, "shuffle", 1, seed=5)
    assert once[0] == "t"
    assert sorted(once) == sorted(tags)


def test_an_edit_that_does_nothing_or_names_an_unknown_cleanup_is_refused() -> None:
    with pytest.raises(OptionsError, match="changes nothing"):
        check_spec(EditSpec())
    with pytest.raises(OptionsError, match="unknown clean-up 'nope'; known: character-tags, "):
        check_spec(EditSpec(cleanup=["nope"]))


# -- over real files ------------------------------------------------------------------------------

EDITS = [
    EditSpec(rename={"long hair": "long_hair"}),
    EditSpec(rename={"*_hair": "hair"}),
    EditSpec(replace={"o": "0"}),
    EditSpec(remove=["solo", "dog"]),
    EditSpec(add_first=["new"], add_last=["last"]),
    EditSpec(trigger="ohwx"),
    EditSpec(order="alphabetical"),
    EditSpec(order="frequency", keep_first=1),
    EditSpec(order="shuffle", keep_first=1, seed=3),
    EditSpec(dedupe=True),
    EditSpec(cleanup=["underscores", "escape-brackets"]),
    EditSpec(cleanup=["less-specific", "character-tags"]),
    EditSpec(max_tags=2),
]


@pytest.mark.parametrize("spec", EDITS, ids=lambda s: s.__class__.__name__)
def test_every_edit_round_trips_through_undo_byte_for_byte(tmp_path: Path, spec: EditSpec) -> None:
    folder = build(tmp_path)
    before = files(folder)
    preview = run_edit([folder], spec, dry_run=True, diffs=-1)
    assert files(folder) == before  # a dry run writes nothing
    assert not (folder / ".tagger").exists()
    result = run_edit([folder], spec, diffs=-1)
    after = files(folder)
    assert result.changed == preview.changed > 0
    assert {c.path for c in result.changes} == {c.path for c in preview.changes}
    for change in result.changes:  # what the preview showed is what was written
        name = os.path.relpath(change.path, folder)
        assert after[name] != before[name]
        text = after[name].decode("utf-8-sig").replace("\r\n", "\n").strip()
        assert text == change.after
    # the Latin-1 caption is listed as failed and left alone
    assert [Path(p).name for p, _ in result.failed] == ["latin.txt"]
    assert after["latin.txt"] == before["latin.txt"]
    # layouts kept: BOM + CRLF stays BOM + CRLF, no final newline stays none
    if after["b.txt"] != before["b.txt"]:
        assert after["b.txt"].startswith(b"\xef\xbb\xbf")
        assert after["b.txt"].endswith(b"\r\n")
    if after["a.txt"] != before["a.txt"]:
        assert not after["a.txt"].endswith(b"\n")
    done = undo(journal_dir([folder]))
    assert done.restored == result.changed
    assert not done.conflicts
    assert files(folder) == before


def test_edit_results_are_exact(tmp_path: Path) -> None:
    folder = build(tmp_path)
    run_edit([folder], EditSpec(rename={"long hair": "long_hair"}, trigger="ohwx", dedupe=True))
    assert (folder / "a.txt").read_bytes() == b"ohwx, 1girl, long_hair, solo, smile"
    assert (folder / "b.txt").read_bytes() == b"\xef\xbb\xbfohwx, cat, solo, long_hair\r\n"
    assert (folder / "c.txt").read_bytes() == b"ohwx, dog, outdoors, solo\n"
    assert (folder / "sub/e.txt").read_bytes() == b"ohwx\n"  # an empty file: the new layout
    assert not (folder / "untagged.txt").exists()  # edits change captions, never create them


def test_where_limits_the_edit_to_matching_captions(tmp_path: Path) -> None:
    folder = build(tmp_path)
    result = run_edit([folder], EditSpec(trigger="x"), where="tag:1girl AND NOT path:sub/")
    assert result.changed == 1
    assert (folder / "a.txt").read_bytes().startswith(b"x, ")
    assert not (folder / "sub/d.txt").read_bytes().startswith(b"x, ")


def test_the_projects_tag_cleanup_functions_edit_the_files(tmp_path: Path) -> None:
    folder = build(tmp_path)
    make_image(folder / "f.png", (24, 20), seed=11)
    (folder / "f.txt").write_bytes(b"shirt, white_shirt, chair, hair, long_hair\n")
    before = files(folder)
    run_edit([folder], EditSpec(cleanup=["less-specific"]))
    assert (folder / "f.txt").read_bytes() == b"white_shirt, chair, long_hair\n"
    run_edit([folder], EditSpec(cleanup=["character-tags"]))
    assert (folder / "b.txt").read_bytes() == b"\xef\xbb\xbfcat, solo\r\n"
    assert (folder / "sub/d.txt").read_bytes() == b"1girl\n"
    assert (folder / "f.txt").read_bytes() == b"white_shirt, chair\n"
    assert (folder / "a.txt").read_bytes() == b"1girl, solo, smile"
    assert undo(journal_dir([folder])).restored == 4  # the newest edit: a, b, d, f
    assert undo(journal_dir([folder])).restored == 1
    assert files(folder) == before


def _overlap_cache(root: Path, table: dict[str, list[str]]) -> Path:
    """A Hugging Face cache holding the overlap table, laid out as huggingface_hub keeps it."""
    import json

    repo = root / "datasets--alea31415--tag_filtering"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("0" * 40)
    snapshot = repo / "snapshots" / ("0" * 40)
    snapshot.mkdir(parents=True)
    (snapshot / "overlap_tags_simplified.json").write_text(json.dumps(table))
    return root


def test_overlap_cleanup_uses_the_cached_table_and_without_it_changes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tagger.cleanup import load_overlap_table

    folder = build(tmp_path)
    before = files(folder)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TAGGER_HF_CACHE", str(tmp_path / "empty-cache"))
    load_overlap_table.cache_clear()
    try:
        with pytest.raises(OptionsError, match="overlap table alea31415/tag_filtering"):
            run_edit([folder], EditSpec(cleanup=["overlap"]))
        assert files(folder) == before
        assert not list_journals(journal_dir([folder]))
        cache = _overlap_cache(tmp_path / "cache", {"solo": ["1girl"], "dog": ["cat"]})
        monkeypatch.setenv("TAGGER_HF_CACHE", str(cache))
        load_overlap_table.cache_clear()
        result = run_edit([folder], EditSpec(cleanup=["overlap"]))
    finally:
        load_overlap_table.cache_clear()
    assert result.changed == 1  # solo beside 1girl goes (a.txt); c.txt has dog but no cat
    assert (folder / "a.txt").read_bytes() == b"1girl, long_hair, smile"
    assert (folder / "sub/d.txt").read_bytes() == before["sub/d.txt"]
    assert (folder / "c.txt").read_bytes() == before["c.txt"]
    undo(journal_dir([folder]))
    assert files(folder) == before


def test_undo_keeps_files_changed_after_the_edit_unless_forced(tmp_path: Path) -> None:
    folder = build(tmp_path)
    before = files(folder)
    run_edit([folder], EditSpec(trigger="ohwx"))
    (folder / "a.txt").write_bytes(b"edited by hand later")
    where = journal_dir([folder])
    dry = undo(where, dry_run=True)
    assert dry.restored == 4
    assert [Path(p).name for p, _ in dry.conflicts] == ["a.txt"]
    assert (folder / "b.txt").read_bytes() != before["b.txt"]  # the dry run restored nothing
    done = undo(where)
    assert done.restored == 4
    assert len(done.conflicts) == 1
    assert (folder / "a.txt").read_bytes() == b"edited by hand later"
    assert (folder / "b.txt").read_bytes() == before["b.txt"]
    assert list_journals(where)[-1].meta["state"] == "partly"
    forced = undo(where, force=True)
    assert forced.restored == 1
    assert forced.unchanged == 4
    assert files(folder) == before
    with pytest.raises(OptionsError, match="nothing to undo"):
        undo(where)


def test_undo_goes_back_one_journal_at_a_time(tmp_path: Path) -> None:
    folder = build(tmp_path)
    first = files(folder)
    run_edit([folder], EditSpec(trigger="one"))
    second = files(folder)
    run_edit([folder], EditSpec(trigger="two"))
    where = journal_dir([folder])
    assert [j.meta["state"] for j in list_journals(where)] == ["done", "done"]
    undo(where)
    assert files(folder) == second
    undo(where)
    assert files(folder) == first


def test_an_edit_killed_halfway_is_undone_exactly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import tagger.dataset.edits as edits

    folder = build(tmp_path)
    before = files(folder)
    real = edits.atomic_write_bytes
    calls = {"n": 0}

    def dies(path: str, data: bytes, **kwargs: object) -> None:
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt  # the process stops between two files
        real(path, data, **kwargs)

    monkeypatch.setattr(edits, "atomic_write_bytes", dies)
    with pytest.raises(KeyboardInterrupt):
        run_edit([folder], EditSpec(trigger="ohwx"))
    monkeypatch.setattr(edits, "atomic_write_bytes", real)
    assert files(folder) != before
    result = undo(journal_dir([folder]))
    assert result.restored == 1
    assert result.unchanged >= 1
    assert not result.conflicts
    assert files(folder) == before


def test_shared_caption_is_edited_once(tmp_path: Path) -> None:
    folder = tmp_path / "ds"
    make_image(folder / "x.png", (20, 20), seed=1)
    make_image(folder / "x.jpg", (20, 20), seed=2)
    (folder / "x.txt").write_text("a, b", encoding="utf-8")
    result = run_edit([folder], EditSpec(add_last=["c"]))
    assert result.changed == 1
    assert (folder / "x.txt").read_text(encoding="utf-8") == "a, b, c"


def test_caption_written_by_hand_is_journaled_and_refused_when_stale(tmp_path: Path) -> None:
    folder = build(tmp_path)
    before = files(folder)
    where = journal_dir([folder])
    start = (folder / "b.txt").read_bytes()
    ident = write_caption(
        str(folder / "b.png"), "cat,  solo ,new", journal_folder=where, expected=start
    )
    assert ident is not None
    assert (folder / "b.txt").read_bytes() == b"\xef\xbb\xbfcat, solo, new\r\n"
    new = write_caption(str(folder / "untagged.png"), "fresh", journal_folder=where, expected=b"")
    assert new is not None
    assert (folder / "untagged.txt").read_bytes() == b"fresh\n"
    with pytest.raises(OutputError, match="changed by someone else"):
        write_caption(str(folder / "b.png"), "other", journal_folder=where, expected=start)
    assert (
        write_caption(str(folder / "a.png"), "1girl, long_hair, solo, smile", journal_folder=where)
        is None
    )  # nothing changed
    undo(where)
    assert not (folder / "untagged.txt").exists()
    undo(where)
    assert files(folder) == before


def test_symbolic_link_captions_are_never_written_through(tmp_path: Path) -> None:
    folder = build(tmp_path)
    outside = tmp_path / "outside.txt"
    outside.write_bytes(b"secret, solo")
    (folder / "c.txt").unlink()
    (folder / "c.txt").symlink_to(outside)
    result = run_edit([folder], EditSpec(trigger="ohwx"))
    assert any(p.endswith("c.txt") and "symbolic link" in r for p, r in result.failed)
    assert outside.read_bytes() == b"secret, solo"


def test_concurrent_edit_and_tag_runs_never_lose_a_write(tmp_path: Path, model_dir: Path) -> None:
    """``tagger tag --on-existing append`` and a bulk edit over the same 120 captions at once:
    every caption ends with both the edit's trigger word and the run's tags."""
    from tagger.batch import run_batch
    from tagger.options import BatchOptions, TagOptions
    from tagger.registry import local_spec
    from tagger.wd14 import WD14Tagger

    folder = tmp_path / "ds"
    for i in range(120):
        make_image(folder / f"i{i:03d}.png", (20, 18), seed=i)
        (folder / f"i{i:03d}.txt").write_text(f"hand_tag_{i}", encoding="utf-8")
    model = WD14Tagger(local_spec(model_dir), providers="cpu")
    options = TagOptions(general_threshold=0.0, character_threshold=0.0, max_tags=2)
    errors: list[BaseException] = []

    def tag_run() -> None:
        try:
            run_batch([folder], model, options, BatchOptions(on_existing="append", batch_size=4))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    runner = threading.Thread(target=tag_run)
    runner.start()
    edits = 0
    while runner.is_alive() or not edits:  # edits keep running while the tagger writes
        run_edit([folder], EditSpec(trigger="ohwx"), fsync=False)
        edits += 1
    runner.join()
    run_edit([folder], EditSpec(trigger="ohwx"), fsync=False)  # the captions tagged last
    assert errors == []
    for i in range(120):
        tags = (folder / f"i{i:03d}.txt").read_text(encoding="utf-8").split(", ")
        assert tags[0] == "ohwx", tags
        assert f"hand_tag_{i}" in tags, tags
        assert len(tags) == 4, tags  # trigger, the hand tag and the run's two tags


def test_sha_of_the_written_bytes_is_what_the_journal_says(tmp_path: Path) -> None:
    folder = build(tmp_path)
    run_edit([folder], EditSpec(trigger="ohwx"))
    journal = list_journals(journal_dir([folder]))[-1]
    changes = list(journal.changes())
    assert len(changes) == journal.meta["files"] == 5
    for change in changes:
        assert change.after == hashlib.sha256(Path(change.path).read_bytes()).hexdigest()
        assert change.before == CAPTIONS[os.path.relpath(change.path, folder)]


def test_dataset_options_are_used(tmp_path: Path) -> None:
    folder = tmp_path / "ds"
    make_image(folder / "a.png", (20, 20), seed=1)
    (folder / "a.caption").write_text("x | y", encoding="utf-8")
    (folder / "a.txt").write_text("not the caption", encoding="utf-8")
    dataset = DatasetOptions(caption_extension=".caption", separator=" | ")
    # split on the separator's stripped text ("|") and joined with " | "
    run_edit([folder], EditSpec(add_last=["z"]), dataset)
    assert (folder / "a.caption").read_text(encoding="utf-8") == "x | y | z"
    assert (folder / "a.txt").read_text(encoding="utf-8") == "not the caption"


def test_move_file_never_replaces_what_is_at_the_target(tmp_path: Path) -> None:
    from tagger.safeio import move_file

    source, target = tmp_path / "a.jpg", tmp_path / "trash" / "sub" / "a.jpg"
    source.write_bytes(b"image")
    move_file(source, target)  # the target's folders are made
    assert target.read_bytes() == b"image"
    assert not source.exists()
    source.write_bytes(b"other")
    with pytest.raises(FileExistsError, match="nothing was moved"):
        move_file(source, target)
    target.unlink()
    target.symlink_to(tmp_path / "missing")  # a dangling link is something too
    with pytest.raises(FileExistsError):
        move_file(source, target)
    assert source.read_bytes() == b"other"
    assert target.is_symlink()
