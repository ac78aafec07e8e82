"""``tagger caption`` and the ``tagger tag --captioner/--clip-filter`` flags.

Flag names follow kohya-ss sd-scripts' ``make_captions.py`` where the idea is the same
(``--batch-size``, ``--num-beams``, ``--top-p``, ``--max-length``, ``--min-length``,
``--beam-search``, ``--seed``, ``--caption-extension`` default ``.caption``, ``--recursive``).
"""

from __future__ import annotations

import argparse
from typing import Any

from tagger.errors import OptionsError
from tagger.options import CaptionOptions, ClipFilterOptions, OutputOptions, field_names, parse
from tagger.registry import DEFAULT_CAPTIONER


def _add_decoding_options(parser: argparse.ArgumentParser, *, prefix: str = "") -> None:
    """CaptionOptions flags (dest = the field name). ``prefix`` avoids clashes in ``tag``."""
    g = parser.add_argument_group("caption decoding")
    g.add_argument(
        "--caption-prompt" if prefix else "--prompt",
        dest="prompt",
        help="BLIP conditional prompt, stripped from the output (default 'a picture of'; '' "
        "for unconditional).",
    )
    g.add_argument(
        f"--{prefix}num-beams",
        dest="num_beams",
        type=int,
        help="Beams (1: greedy). Default: 3 for BLIP, 1 (greedy, the reference) for CLIP-prefix.",
    )
    g.add_argument(
        f"--{prefix}beam-search",
        dest="sample",
        action="store_false",
        default=None,
        help="Beam search / greedy decoding (the default; kohya's flag).",
    )
    g.add_argument(
        f"--{prefix}sample",
        dest="sample",
        action="store_true",
        help="Nucleus sampling (kohya's default without --beam-search) with --top-p and --seed.",
    )
    g.add_argument(f"--{prefix}top-p", dest="top_p", type=float, help="Sampling mass (0.9).")
    g.add_argument(f"--{prefix}temperature", dest="temperature", type=float, help="(1.0).")
    g.add_argument(f"--{prefix}seed", dest="seed", type=int, help="Sampling seed (42).")
    g.add_argument(
        f"--{prefix}max-length",
        f"--{prefix}max-new-tokens",
        dest="max_new_tokens",
        type=int,
        help="Most new tokens (default: 40 BLIP, 67 CLIP-prefix). Unlike kohya's --max_length "
        "the prompt is not counted.",
    )
    g.add_argument(
        f"--{prefix}min-length",
        f"--{prefix}min-new-tokens",
        dest="min_new_tokens",
        type=int,
        help="BLIP: fewest new tokens (5).",
    )
    g.add_argument(
        f"--{prefix}repetition-penalty",
        dest="repetition_penalty",
        type=float,
        help="BLIP: repeated-token penalty (1.2; 1.0 = none).",
    )
    g.add_argument(
        f"--{prefix}no-repeat-ngram-size",
        dest="no_repeat_ngram_size",
        type=int,
        help="BLIP: never repeat an n-gram of this size (3; 0 = allowed).",
    )
    g.add_argument(
        "--no-half",
        dest="half",
        action="store_false",
        default=None,
        help="fp32 on CUDA (default: fp16 on CUDA).",
    )


def caption_options_from_args(args: argparse.Namespace) -> CaptionOptions:
    """CaptionOptions from parsed flags (flags left out keep the defaults)."""
    values = vars(args)
    data = {n: values[n] for n in field_names(CaptionOptions) if values.get(n) is not None}
    if values.get("caption_batch_size") is not None:
        data["batch_size"] = values["caption_batch_size"]
    return parse(CaptionOptions, data)


def add_caption_command(sub: Any) -> None:
    """Register ``tagger caption``."""
    from tagger.cli import _add_batch_options, add_engine_options

    cap = sub.add_parser(
        "caption",
        help="caption images with BLIP or CLIP-prefix GPT-2; writes <stem>.caption",
        description="Caption images (files, folders, globs) and write caption files.",
    )
    cap.add_argument("paths", nargs="+", metavar="PATH", help="Image files, folders or globs.")
    g = cap.add_argument_group("model")
    g.add_argument(
        "--model",
        default=DEFAULT_CAPTIONER,
        help=f"Captioner key, local folder name or folder (default: {DEFAULT_CAPTIONER}).",
    )
    g.add_argument("--models-dir", action="append", metavar="DIR")
    g.add_argument("--hf-cache", metavar="DIR", help="Hugging Face cache folder.")
    g.add_argument("--revision", help="Hub revision to use instead of the pinned one.")
    g.add_argument("--device", default="auto", help="auto, cpu, cuda or mps (torch).")
    g.add_argument("--device-id", type=int, default=0, help="GPU index (default 0).")
    _add_decoding_options(cap)
    _add_batch_options(cap)
    add_engine_options(cap)
    cap.add_argument("--no-progress", action="store_true", help="No progress bar.")
    cap.set_defaults(handler=cmd_caption, caption_extension=".caption", top_tags=0)


def add_combined_options(parser: argparse.ArgumentParser) -> None:
    """``tagger tag`` flags for a caption in the same run and for the CLIP filter."""
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
        help="caption then tags (default), tags then caption, or separate files.",
    )
    g.add_argument(
        "--caption-file-extension",
        help="Extension of the caption file with --caption-template separate (.caption).",
    )
    g.add_argument(
        "--caption-batch-size", type=int, help="Images per captioner run (default: --batch-size)."
    )
    _add_decoding_options(parser, prefix="caption-")
    f = parser.add_argument_group("CLIP relevance filter")
    f.add_argument(
        "--clip-filter",
        nargs="?",
        const="absolute",
        choices=["absolute", "mcut"],
        dest="clip_mode",
        help="Drop tags CLIP scores low: 'absolute' (--clip-threshold) or per-image 'mcut'.",
    )
    f.add_argument("--clip-threshold", type=float, help="Similarity kept (default 0.2).")
    f.add_argument("--clip-model", help="open_clip model or CLIP folder (default ViT-B-32).")
    f.add_argument("--clip-pretrained", help="open_clip tag or weight file (default openai).")
    f.add_argument("--clip-template", help="Text template, {} is the tag ('a photo of {}').")
    f.add_argument(
        "--clip-categories", help="Comma-separated categories filtered (default general)."
    )
    f.add_argument("--clip-cache", metavar="DIR", help="Folder for cached text embeddings.")


def _clip_options(args: argparse.Namespace) -> ClipFilterOptions:
    """ClipFilterOptions from the ``--clip-*`` flags."""
    from tagger.cli import split_list

    names = {
        "clip_threshold": "threshold",
        "clip_model": "model",
        "clip_pretrained": "pretrained",
        "clip_template": "template",
        "clip_cache": "cache_dir",
        "clip_mode": "mode",
    }
    data: dict[str, Any] = {
        field: getattr(args, flag) for flag, field in names.items() if getattr(args, flag, None)
    }
    if getattr(args, "clip_threshold", None) is not None:
        data["threshold"] = args.clip_threshold
    if getattr(args, "clip_categories", None):
        data["categories"] = split_list(args.clip_categories)
    return parse(ClipFilterOptions, data)


def output_options_from_args(args: argparse.Namespace) -> OutputOptions:
    """OutputOptions from ``--caption-template`` / ``--caption-file-extension``."""
    values = vars(args)
    data = {n: values[n] for n in field_names(OutputOptions) if values.get(n) is not None}
    return parse(OutputOptions, data)


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
            args.captioner,
            device=torch_device_for(args.device),
            device_id=args.device_id,
            half=options.half,
            cache_dir=args.hf_cache,
            models_dirs=args.models_dir,
        )
    clip_filter = None
    if args.clip_mode:
        clip_filter = ClipFilter(
            _clip_options(args),
            device=torch_device_for(args.device),
            device_id=args.device_id,
            half=options.half,
            hf_cache=args.hf_cache,
        )
    return Interrogator(tagger, captioner, options, clip_filter), output


def ray_config(args: argparse.Namespace, tagger: Any) -> tuple[Any, OutputOptions]:
    """``combined_model`` for ``--engine ray``: the tagger's ``ModelConfig`` (or None, for
    ``tagger caption``) alone, or an ``InterrogatorConfig`` with the captioner / CLIP filter the
    flags ask for. Paths and names are resolved here, so a bad one fails before Ray starts."""
    from tagger.captioners.common import torch_device_for
    from tagger.options import dump
    from tagger.ray_engine import CaptionerConfig, ClipFilterConfig, InterrogatorConfig
    from tagger.registry import resolve_captioner

    output = output_options_from_args(args)
    captioner_name = args.model if tagger is None else getattr(args, "captioner", None)
    if tagger is not None and not captioner_name and not getattr(args, "clip_mode", None):
        return tagger, output
    options = caption_options_from_args(args)
    device = args.device if tagger is None else torch_device_for(args.device)
    captioner = None
    if captioner_name:
        captioner = CaptionerConfig(
            resolve_captioner(captioner_name, args.models_dir),
            device=device,
            device_id=args.device_id,
            half=options.half,
            cache_dir=args.hf_cache,
            revision=args.revision if tagger is None else None,
        )
    clip_filter = None
    if tagger is not None and args.clip_mode:
        clip_filter = ClipFilterConfig(
            dump(_clip_options(args)),
            device=device,
            device_id=args.device_id,
            half=options.half,
            hf_cache=args.hf_cache,
        )
    config = InterrogatorConfig(tagger, captioner, dump(options), clip_filter)
    return config, output


def cmd_caption(args: argparse.Namespace) -> int:
    """Run ``tagger caption``."""
    from tagger.batch import check_inputs
    from tagger.captioners import get_captioner
    from tagger.cli import _run_engine, options_from_args, run_ray_engine
    from tagger.interrogate import Interrogator

    if args.engine == "ray":
        config, _ = ray_config(args, None)
        return run_ray_engine(args, config, OutputOptions())
    if args.parquet:
        raise OptionsError("--parquet needs --engine ray")
    tag_options, batch_options = options_from_args(args)
    options = caption_options_from_args(args)
    check_inputs(args.paths)
    captioner = get_captioner(
        args.model,
        device=args.device,
        device_id=args.device_id,
        half=options.half,
        cache_dir=args.hf_cache,
        revision=args.revision,
        models_dirs=args.models_dir,
    )
    model = Interrogator(None, captioner, options)
    return _run_engine(args, model, tag_options, batch_options, OutputOptions())
