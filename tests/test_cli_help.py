"""Help texts are true: every default a sub-command's --help states is the value a run gets."""

from __future__ import annotations

import argparse
import ast
import os
import re
from typing import Any

import pytest

from tagger.captioners.blip import BlipCaptioner
from tagger.captioners.clip_filter import default_cache_dir
from tagger.captioners.clipcap import ClipCapCaptioner
from tagger.cli import COMMANDS, build_parser
from tagger.cli.captioner_flags import CI_FLAGS, RERANK_FLAGS, interrogator_options
from tagger.cli.common import (
    CLIP_FLAGS,
    caption_options_from_args,
    clip_options,
    options_from_args,
    output_options_from_args,
)
from tagger.cli.keyword_flags import KEYWORD_FLAGS, keyword_options_from_args
from tagger.options import dump
from tagger.scoring.rerank import RerankOptions

DEFAULT = re.compile(r"\(default:? ((?:[^()]|\([^()]*\))*)\)")

#: Defaults stated in words, each checked by hand here: dest -> (the words, why they are true).
DESCRIBED = {
    "models_dir": "$TAGGER_MODELS_DIR and models/",  # registry.default_models_dirs
    "hf_cache": "$TAGGER_HF_CACHE or HF's",  # hub.hf_cache_dir
    "ray_address": "a local one",  # ray.init() without an address
    "output_dir": "beside each image",  # batch.output_base
    "caption_batch_size": "--batch-size",  # CaptionOptions.batch_size 0: the run's batch size
    "allow_dir": None,  # tagger serve: no folder allowed unless given
    # tagger serve's limits: the words are checked against tagger.api.service.Limits below
    "max_body_bytes": "4 x --max-pixels + 1 MiB, the largest uncompressed RGB image in "
    "base64: 68157440",
    "max_decodes": "as many images of --max-pixels as fit in 1 GiB, at most one per core: 2 "
    "for the default limit",
}


def _commands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


def _effective(command: str) -> dict[str, Any]:
    """What a run of ``command`` without flags gets, by dest."""
    argv = [command, "images"] if command in ("tag", "caption", "keywords", "score") else [command]
    if command == "dataset":  # its actions' defaults: tests/test_dataset_cli.py
        argv = [command, "stats", "images"]
    args = build_parser().parse_args(argv)
    values = dict(vars(args))
    if command in ("tag", "caption", "keywords"):
        tag, batch = options_from_args(args)
        values.update(dump(caption_options_from_args(args)))
        values.update(dump(tag))
        values.update(dump(batch))  # BatchOptions.batch_size is --batch-size
    if command in ("tag", "caption"):  # the --ci-* and --rerank-* flags
        ci = dump(interrogator_options(args))  # the CLIP Interrogator's --ci-* flags
        values.update({flag: ci[field] for flag, field in CI_FLAGS.items()})
        rerank = dump(RerankOptions())  # --rerank-* (a run without --rerank has the defaults)
        values.update({flag: rerank[field] for flag, field in RERANK_FLAGS.items()})
    if command == "score":
        values.update(dump(options_from_args(args)[1]))
    if command in ("tag", "caption"):  # the --vlm-* flags: VlmOptions, dest vlm_<field>
        from tagger.cli.vlm_flags import PREFIX, vlm_options_from_args

        values.update({PREFIX + k: v for k, v in dump(vlm_options_from_args(args)).items()})
    if command in ("tag", "keywords"):
        clip = dump(clip_options(args))
        values.update({flag: clip[field] for flag, field in CLIP_FLAGS.items()})
        values.update(dump(output_options_from_args(args)))
        keywords = dump(keyword_options_from_args(args))
        values.update({flag: keywords[field] for flag, field in KEYWORD_FLAGS.items()})
        values["ngram_range"] = (keywords["ngram_min"], keywords["ngram_max"])
    return values


def _stated(text: str) -> Any:
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def test_every_command_is_listed() -> None:
    assert list(_commands()) == list(COMMANDS)


@pytest.mark.parametrize("command", COMMANDS)
def test_stated_defaults_are_the_real_ones(command: str) -> None:
    effective = _effective(command)
    checked = 0
    for action in _commands()[command]._actions:
        if not action.help or action.help == argparse.SUPPRESS:
            continue
        for match in DEFAULT.finditer(action.help):
            stated = match.group(1)
            if action.dest in DESCRIBED:
                assert stated == DESCRIBED[action.dest], (action.dest, stated)
                continue
            if action.dest == "clip_cache":
                assert stated == "~/.cache/tagger/clip"
                continue
            if command == "serve" and action.dest == "max_pixels":
                assert stated == "16777216 = 4096x4096"
                checked += 1
                continue
            value = effective[action.dest]
            assert _stated(stated) == value or stated == str(value), (action.dest, stated, value)
            checked += 1
    assert checked > 0 or command in ("models", "doctor", "dataset")  # these state none


def test_the_serve_limits_stated_are_the_limits() -> None:
    from tagger.api.service import Limits, default_max_decodes

    limits = Limits()
    assert limits.max_pixels == 16777216 == 4096 * 4096
    assert limits.max_body_bytes == 4 * limits.max_pixels + 2**20 == 68157440
    assert default_max_decodes(limits.max_pixels) == min(2, os.cpu_count() or 1)


def test_words_about_captioner_defaults_are_the_captioners() -> None:
    helps = {a.dest: a.help for a in _commands()["caption"]._actions}
    beams = (BlipCaptioner.default_beams, ClipCapCaptioner.default_beams)
    assert "Default: {} for BLIP, {} (greedy".format(*beams) in helps["num_beams"]
    assert (
        f"Default: {BlipCaptioner.default_max_tokens} for BLIP, "
        f"{ClipCapCaptioner.default_max_tokens} for CLIP-prefix" in helps["max_new_tokens"]
    )
    assert str(default_cache_dir()).endswith("/tagger/clip")


def test_caption_help_says_caption_where_that_is_the_default() -> None:
    caption = _commands()["caption"]
    text = " ".join(caption.format_help().split())
    assert "Extension of caption files, e.g. .txt or .caption. (default: '.caption')" in text
    assert _effective("caption")["caption_extension"] == ".caption"
    assert _effective("tag")["caption_extension"] == ".txt"


def test_threshold_help_says_how_it_differs_from_kohya() -> None:
    text = " ".join(_commands()["tag"].format_help().split())
    assert (
        "Keep general tags scoring above this. Strictly above: kohya's script keeps scores >= "
        "its threshold. (default: 0.35)"
    ) in text
