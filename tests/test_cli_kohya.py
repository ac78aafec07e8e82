"""kohya-ss sd-scripts spellings: each reaches exactly what the dashed flag does, or is refused
with a message naming this tool's flag."""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from tiny import make_image

from tagger.cli import build_parser, kohya
from tagger.cli.common import (
    ALL_TAGS,
    caption_options_from_args,
    options_from_args,
)
from tagger.cli.tag import model_name
from tagger.errors import OptionsError
from tagger.options import dump

# Every flag of finetune/tag_images_by_wd14_tagger.py and finetune/make_captions.py
# (kohya-ss/sd-scripts, setup_parser), by name.
KOHYA_TAGGER_FLAGS = [
    "--repo_id", "--model_dir", "--force_download", "--batch_size", "--max_data_loader_n_workers",
    "--output_path", "--caption_extention", "--caption_extension", "--thresh",
    "--general_threshold", "--character_threshold", "--meta_threshold", "--model_threshold",
    "--copyright_threshold", "--artist_threshold", "--recursive", "--remove_underscore", "--debug",
    "--undesired_tags", "--frequency_tags", "--onnx", "--append_tags", "--use_rating_tags",
    "--use_rating_tags_as_last_tag", "--use_quality_tags", "--use_quality_tags_as_last_tag",
    "--character_tags_first", "--always_first_tags", "--caption_separator", "--tag_replacement",
    "--character_tag_expand",
]  # fmt: skip
KOHYA_CAPTION_FLAGS = [
    "--caption_weights", "--caption_extention", "--caption_extension", "--beam_search",
    "--batch_size", "--max_data_loader_n_workers", "--num_beams", "--top_p", "--max_length",
    "--min_length", "--seed", "--debug", "--recursive",
]  # fmt: skip


def _command(name: str) -> argparse.ArgumentParser:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices[name]


@pytest.mark.parametrize(
    ("command", "flags", "table"),
    [("tag", KOHYA_TAGGER_FLAGS, kohya.TAG), ("caption", KOHYA_CAPTION_FLAGS, kohya.CAPTION)],
)
def test_every_kohya_flag_is_read_or_refused(command, flags, table) -> None:
    known = _command(command)._option_string_actions
    for flag in flags:
        assert flag in table or flag in known, flag
        spelling = table.get(flag)
        if spelling is not None and spelling.into:
            assert spelling.into[0] in known, (flag, spelling.into)
    assert not [flag for flag in table if flag not in flags]  # no invented kohya flags


def _parse(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(list(argv))


def _same_namespace(kohya_args: argparse.Namespace, dashed: argparse.Namespace) -> None:
    left = {k: v for k, v in vars(kohya_args).items() if k != "kohya_notes"}
    right = {k: v for k, v in vars(dashed).items() if k != "kohya_notes"}
    assert left == right


# (kohya argv, the same with this tool's flags, namespace dest, exact value it holds)
TAG_CASES = [
    (["--general_threshold", "0.5"], ["--general-threshold", "0.5"], "general_threshold", 0.5),
    (["--general_threshold=0.25"], ["--general-threshold=0.25"], "general_threshold", 0.25),
    (["--character_threshold", "0.7"], ["--character-threshold", "0.7"], "character_threshold",
     0.7),
    (["--undesired_tags", "a, b_c"], ["--undesired-tags", "a, b_c"], "exclude_tags",
     ["a", "b_c"]),
    (["--remove_underscore"], ["--remove-underscore"], "replace_underscores", True),
    (["--append_tags"], ["--append-tags"], "on_existing", "append"),
    (["--use_rating_tags"], ["--use-rating-tags"], "rating_tag", "first"),
    (["--use_rating_tags_as_last_tag"], ["--use-rating-tags-as-last-tag"], "rating_tag", "last"),
    (["--character_tags_first"], ["--character-tags-first"], "character_tags_first", True),
    (["--always_first_tags", "1girl,1boy"], ["--always-first-tags", "1girl,1boy"],
     "always_first_tags", ["1girl", "1boy"]),
    (["--caption_separator", " | "], ["--caption-separator", " | "], "separator", " | "),
    (["--tag_replacement", "a,b;c\\,d,e"], ["--tag-replacement", "a,b;c\\,d,e"], "replace_tags",
     {"a": "b", "c,d": "e"}),
    (["--caption_extension", ".cap"], ["--caption-extension", ".cap"], "caption_extension",
     ".cap"),
    (["--caption_extention", ".cap"], ["--caption-extension", ".cap"], "caption_extension",
     ".cap"),
    (["--batch_size", "8"], ["--batch-size", "8"], "batch_size", 8),
    (["--max_data_loader_n_workers", "3"], ["--workers", "3"], "workers", 3),
    (["--model_dir", "m"], ["--models-dir", "m"], "models_dir", ["m"]),
    (["--repo_id", "SmilingWolf/wd-vit-tagger-v3"], ["--repo-id", "SmilingWolf/wd-vit-tagger-v3"],
     "repo_id", "SmilingWolf/wd-vit-tagger-v3"),
    (["--frequency_tags"], ["--top-tags", "all"], "top_tags", ALL_TAGS),
    (["--debug"], ["-v"], "command_verbose", 1),
    (["--thresh", "0.4"], ["--thresh", "0.4"], "thresh", 0.4),
    (["--recursive"], ["--recursive"], "recursive", True),
    (["--meta_threshold", "0.5"], ["--meta-threshold", "0.5"], "category_thresholds",
     {"meta": 0.5}),
    (["--copyright_threshold=1.1"], ["--copyright-threshold=1.1"], "category_thresholds",
     {"copyright": 1.1}),
    (["--artist_threshold", "0.2", "--model_threshold", "0.9"],
     ["--artist-threshold", "0.2", "--model-threshold", "0.9"], "category_thresholds",
     {"artist": 0.2, "model": 0.9}),
    (["--use_quality_tags"], ["--use-quality-tags"], "quality_tag", "first"),
    (["--use_quality_tags_as_last_tag"], ["--use-quality-tags-as-last-tag"], "quality_tag",
     "last"),
    (["--character_tag_expand"], ["--character-tag-expand"], "character_tag_expand", True),
]  # fmt: skip


@pytest.mark.parametrize(("spelled", "dashed", "dest", "value"), TAG_CASES)
def test_tag_spelling_reaches_the_dashed_flags_value(spelled, dashed, dest, value) -> None:
    kohya_args = _parse("tag", "images", *spelled)
    dashed_args = _parse("tag", "images", *dashed)
    assert getattr(kohya_args, dest) == value
    assert kohya_args.paths == ["images"]
    _same_namespace(kohya_args, dashed_args)
    assert options_from_args(kohya_args) == options_from_args(dashed_args)


CAPTION_CASES = [
    (["--beam_search"], ["--beam-search"], "sample", False),
    (["--num_beams", "4"], ["--num-beams", "4"], "num_beams", 4),
    (["--top_p", "0.8"], ["--top-p", "0.8"], "top_p", 0.8),
    (["--max_length", "30"], ["--max-length", "30"], "max_new_tokens", 30),
    (["--min_length", "7"], ["--min-length", "7"], "min_new_tokens", 7),
    (["--seed", "3"], ["--seed", "3"], "seed", 3),
    (["--batch_size", "2"], ["--batch-size", "2"], "batch_size", 2),
    (["--max_data_loader_n_workers", "1"], ["--workers", "1"], "workers", 1),
    (["--caption_extension", ".txt"], ["--caption-extension", ".txt"], "caption_extension", ".txt"),
    (["--caption_extention", ".txt"], ["--caption-extension", ".txt"], "caption_extension", ".txt"),
    (["--debug"], ["--verbose"], "command_verbose", 1),
]  # fmt: skip


@pytest.mark.parametrize(("spelled", "dashed", "dest", "value"), CAPTION_CASES)
def test_caption_spelling_reaches_the_dashed_flags_value(spelled, dashed, dest, value) -> None:
    kohya_args = _parse("caption", "images", *spelled)
    dashed_args = _parse("caption", "images", *dashed)
    assert getattr(kohya_args, dest) == value
    _same_namespace(kohya_args, dashed_args)
    assert caption_options_from_args(kohya_args) == caption_options_from_args(dashed_args)
    assert options_from_args(kohya_args) == options_from_args(dashed_args)


def test_kohya_spellings_are_not_in_help() -> None:
    for name in ("tag", "caption"):
        parser = _command(name)
        assert "docs/kohya.md" in parser.format_help()  # the footer says they are accepted
        table = kohya.TAG if name == "tag" else kohya.CAPTION
        shown = {s for a in parser._actions if a.help != argparse.SUPPRESS
                 for s in a.option_strings}  # fmt: skip
        assert not shown & set(table)
        assert "--repo-id" not in shown
        assert [flag for flag in table if flag in parser.format_usage()] == []


def test_harmless_spellings_change_nothing() -> None:
    args = _parse("tag", "images", "--onnx", "--batch-size", "2")
    plain = _parse("tag", "images", "--batch-size", "2")
    assert args.paths == ["images"]  # a dropped flag's value is not taken for a path
    _same_namespace(args, plain)
    assert args.kohya_notes == []


@pytest.mark.parametrize(
    ("command", "flag", "names"),
    [
        ("tag", "--force_download", "--hf-cache"),
        ("tag", "--output_path", "--jsonl"),
        ("caption", "--caption_weights", "--model"),
    ],
)
def test_refused_spellings_exit_2_naming_this_tools_flag(command, flag, names, capsys) -> None:
    with pytest.raises(SystemExit) as stop:
        _parse(command, "images", flag, "x.json")
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert f"{flag} (kohya-ss) is not supported" in err
    assert names in err


def test_after_double_dash_nothing_is_translated() -> None:
    assert kohya.translate(["--batch_size", "2", "--", "--batch_size"], kohya.TAG) == (
        ["--batch-size", "2", "--", "--batch_size"],
        [],
    )
    assert kohya.translate(["--batch_sizes", "2"], kohya.TAG) == (["--batch_sizes", "2"], [])


def test_repo_id_names_a_registry_model_or_kohyas_download_folder(
    tmp_path: Path, model_dir: Path
) -> None:
    assert kohya.model_for_repo_id("SmilingWolf/wd-v1-4-convnext-tagger-v2", None) == (
        "wd-v1-4-convnext-tagger-v2"
    )
    kohya_dir = tmp_path / "wd14_tagger_model"
    shutil.copytree(model_dir, kohya_dir / "SmilingWolf_wd-vit-tagger-v3")
    found = kohya.model_for_repo_id("SmilingWolf/wd-vit-tagger-v3", [kohya_dir])
    assert found == str(kohya_dir / "SmilingWolf_wd-vit-tagger-v3")
    with pytest.raises(OptionsError, match="--model"):
        kohya.model_for_repo_id("someone/other-tagger", [kohya_dir])
    with pytest.raises(OptionsError, match="owner/name"):
        kohya.model_for_repo_id("SmilingWolf/wd-vit-tagger-v3/sub", None)
    assert kohya.model_for_repo_id("cella110n/cl_tagger/cl_tagger_1_02", None) == ("cl-tagger-1.02")
    both = _parse("tag", "x", "--repo_id", "SmilingWolf/wd-vit-tagger-v3", "--model", "tiny")
    with pytest.raises(OptionsError, match="not both"):
        model_name(both)


def test_a_kohya_command_line_writes_what_the_dashed_one_does(
    tmp_path: Path, model_dir: Path
) -> None:
    """The kohya spellings of a typical run, end to end: same files, byte for byte."""
    kohya_dir = tmp_path / "wd14_tagger_model"
    shutil.copytree(model_dir, kohya_dir / "SmilingWolf_wd-vit-tagger-v3")
    for name in ("kohya", "dashed"):
        for i in range(3):
            make_image(tmp_path / name / f"img{i}.png", (40, 30), seed=i)
    spelled = [
        "tag", str(tmp_path / "kohya"), "--repo_id", "SmilingWolf/wd-vit-tagger-v3",
        "--model_dir", str(kohya_dir), "--onnx", "--batch_size", "2", "--thresh", "0.3",
        "--general_threshold", "0.2", "--remove_underscore", "--undesired_tags", "solo",
        "--caption_extension", ".cap", "--use_rating_tags", "--character_tags_first",
        "--always_first_tags", "1girl", "--tag_replacement", "smile,smiling",
        "--frequency_tags", "--max_data_loader_n_workers", "1", "--no-progress",
    ]  # fmt: skip
    dashed = [
        "tag", str(tmp_path / "dashed"), "--model", str(kohya_dir / "SmilingWolf_wd-vit-tagger-v3"),
        "--batch-size", "2", "--thresh", "0.3", "--general-threshold", "0.2",
        "--remove-underscore", "--undesired-tags", "solo", "--caption-extension", ".cap",
        "--use-rating-tags", "--character-tags-first", "--always-first-tags", "1girl",
        "--tag-replacement", "smile,smiling", "--top-tags", "all", "--workers", "1",
        "--no-progress",
    ]  # fmt: skip
    runs = {}
    for name, argv in (("kohya", spelled), ("dashed", dashed)):
        done = subprocess.run(
            [sys.executable, "-m", "tagger", *argv], capture_output=True, text=True, check=False
        )
        assert done.returncode == 0, done.stderr
        runs[name] = done.stderr
    for i in range(3):
        left = (tmp_path / "kohya" / f"img{i}.cap").read_text(encoding="utf-8")
        right = (tmp_path / "dashed" / f"img{i}.cap").read_text(encoding="utf-8")
        assert left == right
        assert "solo" not in left.split(", ")
    freq_kohya = [line for line in runs["kohya"].splitlines() if line.startswith("most frequent")]
    freq_dashed = [line for line in runs["dashed"].splitlines() if line.startswith("most frequent")]
    assert freq_kohya == freq_dashed
    assert len(freq_kohya) == 1


def test_threshold_spellings_give_the_same_tag_options() -> None:
    spelled = _parse("tag", "x", "--thresh", "0.5", "--character_threshold", "0.9")
    tag, _ = options_from_args(spelled)
    assert (tag.general_threshold, tag.character_threshold) == (0.5, 0.9)
    dashed = _parse("tag", "x", "--general-threshold", "0.5", "--character-threshold", "0.9")
    assert dump(tag) == dump(options_from_args(dashed)[0])


def test_doctests() -> None:
    import doctest

    import tagger.cli.kohya
    import tagger.cli.models
    import tagger.option_text

    for module in (tagger.cli.kohya, tagger.cli.models, tagger.option_text):
        result = doctest.testmod(module)
        assert result.failed == 0, module.__name__
        assert result.attempted > 0, module.__name__
