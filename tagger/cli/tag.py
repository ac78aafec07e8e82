"""``tagger tag``: tag images and write caption files (with a caption and the CLIP filter in the
same run on request).

Flag names follow kohya-ss sd-scripts' ``tag_images_by_wd14_tagger.py`` where the idea is the
same (``--general-threshold``, ``--undesired-tags``, ``--caption-extension``...), and its
underscore spellings are read too (``tagger.cli.kohya``).
"""

from __future__ import annotations

import argparse
from typing import Any

from tagger.cli import kohya
from tagger.cli.captioner_flags import add_captioner_flags, captioner_spec
from tagger.cli.common import (
    add_batch_options,
    add_decoding_options,
    add_engine_options,
    add_model_options,
    add_progress_option,
    add_tag_options,
    caption_options_from_args,
    clip_options,
    count_or_all,
    describe,
    kohya_epilog,
    options_from_args,
    output_options_from_args,
    ray_config,
    run_engine,
    run_ray_engine,
    tag_list,
)
from tagger.errors import OptionsError
from tagger.options import ClipFilterOptions, OutputOptions


def add_command(sub: Any) -> None:
    """Register ``tagger tag``."""
    tag = sub.add_parser(
        "tag",
        help="tag images and write <stem>.txt beside each (or under --output-dir)",
        description="Tag images (files, folders, glob patterns) and write caption files.",
        epilog=kohya_epilog("tag_images_by_wd14_tagger.py"),
        kohya_spellings=kohya.TAG,
    )
    tag.add_argument("paths", nargs="+", metavar="PATH", help="Image files, folders or globs.")
    add_model_options(tag)
    tag.add_argument("--repo-id", help=argparse.SUPPRESS)  # kohya's --repo_id (resolved in run)
    add_tag_options(tag)
    add_batch_options(tag)
    add_progress_option(tag)
    tag.add_argument(
        "--top-tags",
        type=count_or_all,
        default=10,
        help="How many frequent tags the summary lists, or 'all' (default: 10).",
    )
    add_engine_options(tag)
    add_combined_options(tag)
    tag.set_defaults(handler=run)


def add_combined_options(parser: argparse.ArgumentParser) -> None:
    """``tagger tag`` flags for a caption in the same run and for the CLIP filter."""
    o = lambda name, note="": describe(OutputOptions, name, note)  # noqa: E731
    c = lambda name, note="": describe(ClipFilterOptions, name, note)  # noqa: E731
    g = parser.add_argument_group("caption in the same run")
    g.add_argument(
        "--captioner",
        metavar="KEY|DIR",
        help="Also caption each image with this BLIP / CLIP-prefix model.",
    )
    g.add_argument(
        "--caption-template",
        dest="template",
        choices=["caption_then_tags", "tags_then_caption", "separate"],
        help=o("template"),
    )
    g.add_argument(
        "--caption-file-extension",
        help=o("caption_file_extension"),
    )
    g.add_argument(
        "--caption-batch-size",
        type=int,
        help="Images per captioner run (default: --batch-size).",
    )
    add_decoding_options(parser, prefix="caption-")
    add_captioner_flags(parser)
    f = parser.add_argument_group("CLIP relevance filter")
    f.add_argument(
        "--clip-filter",
        nargs="?",
        const="absolute",
        choices=["absolute", "mcut"],
        dest="clip_mode",
        help="Drop tags CLIP scores low: 'absolute' (--clip-threshold) or per-image 'mcut'; "
        "the flag alone is 'absolute'.",
    )
    f.add_argument("--clip-threshold", type=float, help=c("threshold"))
    f.add_argument("--clip-model", help=c("model"))
    f.add_argument("--clip-pretrained", help=c("pretrained"))
    f.add_argument("--clip-template", help=c("template"))
    f.add_argument("--clip-categories", type=tag_list, help=c("categories", "Comma-separated."))
    f.add_argument("--clip-cache", metavar="DIR", help=c("cache_dir"))


def combined_model(args: argparse.Namespace, tagger: Any) -> tuple[Any, OutputOptions]:
    """The tagger alone, or an Interrogator with the captioner / CLIP filter the flags ask for."""
    output = output_options_from_args(args)
    if not getattr(args, "captioner", None) and not getattr(args, "clip_mode", None):
        return tagger, output
    from tagger.captioners import get_captioner
    from tagger.captioners.clip_filter import ClipFilter
    from tagger.captioners.common import torch_device_for
    from tagger.interrogate import Interrogator

    options = caption_options_from_args(args)
    captioner = None
    if args.captioner:
        captioner = get_captioner(
            captioner_spec(args.captioner, args),
            device=torch_device_for(args.device),
            device_id=args.device_id,
            half=options.half,
            cache_dir=args.hf_cache,
            models_dirs=args.models_dir,
        )
    clip_filter = None
    if args.clip_mode:
        clip_filter = ClipFilter(
            clip_options(args),
            device=torch_device_for(args.device),
            device_id=args.device_id,
            half=options.half,
            hf_cache=args.hf_cache,
        )
    return Interrogator(tagger, captioner, options, clip_filter), output


def model_name(args: argparse.Namespace) -> str:
    """``--model``, or the model kohya's ``--repo_id`` names (``kohya.model_for_repo_id``)."""
    from tagger.registry import DEFAULT_MODEL

    if not getattr(args, "repo_id", None):
        return args.model
    if args.model != DEFAULT_MODEL:
        raise OptionsError("give --model or kohya's --repo_id, not both")
    return kohya.model_for_repo_id(args.repo_id, args.models_dir)


def tagger_settings(args: argparse.Namespace) -> dict[str, Any]:
    """Where and how the tagger runs, from the model flags (``get_tagger`` / ``ModelConfig``)."""
    return {
        "providers": args.device,
        "device_id": args.device_id,
        "threads": args.threads,
        "cache_dir": args.hf_cache,
        "revision": args.revision,
        "precision": "fp16" if args.fp16 else "fp32",
    }


def run(args: argparse.Namespace) -> int:
    """Run ``tagger tag``."""
    from tagger.batch import DeferredModel, check_inputs
    from tagger.cache import get_tagger
    from tagger.cli.families import model_names, resolve_thresholds
    from tagger.registry import resolve_model

    names = model_names(args, model_name(args))
    if len(names) > 1 and (getattr(args, "engine", "local") == "ray" or args.captioner):
        raise OptionsError(
            "an ensemble (--model given several times) runs on the local engine and without "
            "--captioner; run those separately"
        )
    if len(names) > 1 and args.clip_mode:
        raise OptionsError("the CLIP filter takes one tagger: drop --clip-filter or extra --model")
    if getattr(args, "engine", "local") == "ray":
        return run_ray(args)
    if getattr(args, "parquet", None):
        raise OptionsError("--parquet needs --engine ray")
    resolve_thresholds(args)
    tag_options, batch_options = options_from_args(args)
    check_inputs(args.paths)
    specs = [resolve_model(name, args.models_dir) for name in names]
    output_options = output_options_from_args(args)

    def build() -> Any:  # after the run is planned: nothing loads for a run that cannot write
        taggers = [get_tagger(spec, **tagger_settings(args)) for spec in specs]
        if len(taggers) > 1:
            from tagger.ensemble import Ensemble

            return Ensemble(taggers, args.ensemble, args.min_votes)
        return combined_model(args, taggers[0])[0]

    outputs = ("tags", "caption") if getattr(args, "captioner", None) else ("tags",)
    model = DeferredModel(build, outputs)
    return run_engine(args, model, tag_options, batch_options, output_options)


def run_ray(args: argparse.Namespace) -> int:
    """Run ``tagger tag --engine ray``: the same outputs and summary, on a Ray cluster."""
    from tagger.ray_engine import ModelConfig
    from tagger.registry import resolve_model

    spec = resolve_model(model_name(args), args.models_dir)
    if spec.family != "wd14":
        raise OptionsError(
            f"--engine ray runs WD14 models; {spec.key} is a {spec.family} model: use the "
            "local engine (the default)"
        )
    tagger = ModelConfig(spec, **tagger_settings(args))
    config, output_options = ray_config(args, tagger)
    return run_ray_engine(args, config, output_options)
