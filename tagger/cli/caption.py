"""``tagger caption``: caption images with BLIP or CLIP-prefix GPT-2 and write caption files.

Flag names follow kohya-ss sd-scripts' ``make_captions.py`` where the idea is the same
(``--batch-size``, ``--num-beams``, ``--top-p``, ``--max-length``, ``--min-length``,
``--beam-search``, ``--seed``, ``--caption-extension`` default ``.caption``, ``--recursive``),
and its underscore spellings are read too (``tagger.cli.kohya``).
"""

from __future__ import annotations

import argparse
from typing import Any

from tagger.cli import kohya
from tagger.cli.captioner_flags import add_captioner_flags
from tagger.cli.common import (
    add_batch_options,
    add_decoding_options,
    add_engine_options,
    add_hf_cache_option,
    add_models_dir_option,
    add_progress_option,
    caption_options_from_args,
    kohya_epilog,
    non_negative,
    options_from_args,
    ray_config,
    run_engine,
    run_ray_engine,
)
from tagger.cli.vlm_flags import add_vlm_options, build_captioner, captioner_name
from tagger.errors import OptionsError
from tagger.options import OutputOptions
from tagger.registry import DEFAULT_CAPTIONER

#: What ``tagger caption`` writes unless --caption-extension says otherwise (kohya's default).
CAPTION_EXTENSION = ".caption"


def add_command(sub: Any) -> None:
    """Register ``tagger caption``."""
    cap = sub.add_parser(
        "caption",
        help="caption images with BLIP, CLIP-prefix GPT-2, the CLIP Interrogator or a "
        "vision-language model; writes "
        f"<stem>{CAPTION_EXTENSION}",
        description="Caption images (files, folders, globs) and write caption files.",
        epilog=kohya_epilog("make_captions.py"),
        kohya_spellings=kohya.CAPTION,
    )
    cap.add_argument("paths", nargs="+", metavar="PATH", help="Image files, folders or globs.")
    g = cap.add_argument_group("model")
    g.add_argument(
        "--model",
        default=DEFAULT_CAPTIONER,
        help=f"Captioner key, local folder name or folder (default: {DEFAULT_CAPTIONER}).",
    )
    add_models_dir_option(g)
    add_hf_cache_option(g)
    g.add_argument("--revision", help="Hub revision to use instead of the pinned one.")
    g.add_argument("--device", default="auto", help="auto, cpu, cuda or mps (default: auto).")
    g.add_argument("--device-id", type=non_negative, default=0, help="GPU index (default: 0).")
    add_decoding_options(cap)
    add_vlm_options(cap)
    add_captioner_flags(cap)
    add_batch_options(cap, defaults={"caption_extension": CAPTION_EXTENSION})
    add_engine_options(cap)
    add_progress_option(cap)
    cap.set_defaults(handler=run, top_tags=0)


def run(args: argparse.Namespace) -> int:
    """Run ``tagger caption``."""
    from tagger.batch import DeferredModel, check_inputs
    from tagger.interrogate import Interrogator

    args.model = captioner_name(args.model, args, DEFAULT_CAPTIONER)
    if args.engine == "ray":
        if args.dry_run is not None:
            raise OptionsError("--dry-run runs with the local engine: leave --engine ray out")
        config, _ = ray_config(args, None)
        return run_ray_engine(args, config, OutputOptions())
    if args.parquet:
        raise OptionsError("--parquet needs --engine ray")
    tag_options, batch_options = options_from_args(args)
    options = caption_options_from_args(args)
    check_inputs(args.paths)
    build_captioner(args.model, args, device=args.device, revision=args.revision)  # checks flags

    # The model is built after the run is planned: nothing loads for a run that cannot write.
    def build() -> Interrogator:
        captioner = build_captioner(args.model, args, device=args.device, revision=args.revision)
        return Interrogator(None, captioner, options, tag_options=tag_options)

    model = DeferredModel(build, ("caption",))
    if args.dry_run is not None:
        from tagger.cli.vlm_flags import run_dry

        return run_dry(args, model, tag_options, batch_options, OutputOptions())
    return run_engine(args, model, tag_options, batch_options, OutputOptions())
