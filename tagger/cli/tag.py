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
from tagger.cli.captioner_flags import add_captioner_flags
from tagger.cli.common import (
    add_batch_options,
    add_clip_options,
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
)
from tagger.cli.vlm_flags import add_vlm_options, build_captioner, captioner_name
from tagger.errors import OptionsError
from tagger.options import OutputOptions
from tagger.registry import DEFAULT_CAPTIONER


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
    add_tag_keyword_options(tag)
    tag.set_defaults(handler=run)


def add_tag_keyword_options(parser: argparse.ArgumentParser) -> None:
    """``--keywords`` and the KeyBERT flags (``tagger.cli.keyword_flags``)."""
    from tagger.cli.keyword_flags import add_keyword_options

    parser.add_argument(
        "--keywords",
        action="store_true",
        help="Also write KeyBERT keyphrases of each image's caption as tags (the captioner: "
        "--captioner, default blip-large); --clip-filter filters them too. Needs the keywords "
        "extra.",
    )
    add_keyword_options(parser)


def add_combined_options(parser: argparse.ArgumentParser) -> None:
    """``tagger tag`` flags for a caption in the same run and for the CLIP filter."""
    o = lambda name, note="": describe(OutputOptions, name, note)  # noqa: E731
    g = parser.add_argument_group("caption in the same run")
    g.add_argument(
        "--captioner",
        metavar="KEY|DIR",
        help="Also caption each image with this BLIP / CLIP-prefix / VLM captioner (vlm-api "
        "with --vlm-url; --vlm-url alone implies it).",
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
    add_vlm_options(parser)
    add_captioner_flags(parser)
    add_clip_options(parser)


def combined_model(args: argparse.Namespace, tagger: Any) -> tuple[Any, OutputOptions]:
    """The tagger alone, or an Interrogator with the captioner / CLIP filter the flags ask for."""
    output = output_options_from_args(args)
    keywords = getattr(args, "keywords", False)
    if not (getattr(args, "captioner", None) or getattr(args, "clip_mode", None) or keywords):
        return tagger, output
    from tagger.captioners.clip_filter import ClipFilter
    from tagger.captioners.common import torch_device_for
    from tagger.interrogate import Interrogator

    options = caption_options_from_args(args)
    captioner = None
    name = args.captioner or (DEFAULT_CAPTIONER if keywords else None)
    if name:
        captioner = build_captioner(name, args, device=torch_device_for(args.device))
    clip_filter = None
    if args.clip_mode:
        clip_filter = ClipFilter(
            clip_options(args),
            device=torch_device_for(args.device),
            device_id=args.device_id,
            half=options.half,
            hf_cache=args.hf_cache,
        )
    tag_options, _ = options_from_args(args)
    model: Any = Interrogator(tagger, captioner, options, clip_filter, tag_options=tag_options)
    if keywords:
        from tagger.cli.keyword_flags import keyword_extractor
        from tagger.keywords.pipeline import KeywordPipeline

        model = KeywordPipeline(keyword_extractor(args), model)
    return model, output


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

    if hasattr(args, "captioner"):
        args.captioner = captioner_name(args.captioner, args, None)
    names = model_names(args, model_name(args))
    if len(names) > 1 and (getattr(args, "engine", "local") == "ray" or args.captioner):
        raise OptionsError(
            "an ensemble (--model given several times) runs on the local engine and without "
            "--captioner; run those separately"
        )
    if len(names) > 1 and args.clip_mode:
        raise OptionsError("the CLIP filter takes one tagger: drop --clip-filter or extra --model")
    if len(names) > 1 and getattr(args, "keywords", False):
        raise OptionsError("--keywords takes one tagger: drop --keywords or the extra --model")
    if getattr(args, "engine", "local") == "ray":
        if getattr(args, "keywords", False):
            raise OptionsError("--keywords runs on the local engine: leave out --engine ray")
        if getattr(args, "dry_run", None) is not None:
            raise OptionsError("--dry-run runs with the local engine: leave --engine ray out")
        return run_ray(args)
    if getattr(args, "parquet", None):
        raise OptionsError("--parquet needs --engine ray")
    resolve_thresholds(args)
    tag_options, batch_options = options_from_args(args)
    check_inputs(args.paths)
    specs = [resolve_model(name, args.models_dir) for name in names]
    output_options = output_options_from_args(args)
    if getattr(args, "captioner", None):  # a bad captioner or VLM flag stops the run here
        from tagger.captioners.common import torch_device_for

        build_captioner(args.captioner, args, device=torch_device_for(args.device))

    def build() -> Any:  # after the run is planned: nothing loads for a run that cannot write
        taggers = [get_tagger(spec, **tagger_settings(args)) for spec in specs]
        if len(taggers) > 1:
            from tagger.ensemble import Ensemble

            return Ensemble(taggers, args.ensemble, args.min_votes)
        return combined_model(args, taggers[0])[0]

    with_caption = getattr(args, "captioner", None) or getattr(args, "keywords", False)
    outputs = ("tags", "caption") if with_caption else ("tags",)
    model = DeferredModel(build, outputs)
    if getattr(args, "dry_run", None) is not None:
        from tagger.cli.vlm_flags import run_dry

        return run_dry(args, model, tag_options, batch_options, output_options)
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
