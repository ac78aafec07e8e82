"""``tagger keywords``: KeyBERT keyphrases of captions, written as tags (BLIP -> KeyBERT -> CLIP).

The captions are read from the caption files beside the images (``--from-captions .caption``),
or written first by a captioner (``--captioner``, BLIP large by default). ``--clip-filter`` keeps
only the keyphrases CLIP sees in the image. Outputs are those of ``tagger tag``: ``<stem>.txt``,
``--json`` sidecars (``"keywords"``, ``"caption"``, ``"clip"``) and a ``--jsonl`` manifest.
"""

from __future__ import annotations

import argparse
from typing import Any

from tagger.cli.common import (
    add_batch_options,
    add_clip_options,
    add_decoding_options,
    add_hf_cache_option,
    add_models_dir_option,
    add_progress_option,
    caption_options_from_args,
    clip_options,
    count_or_all,
    describe,
    non_negative,
    options_from_args,
    run_engine,
    tag_list,
)
from tagger.cli.keyword_flags import (
    add_keyword_options,
    keyword_extractor,
    keyword_options_from_args,
)
from tagger.errors import OptionsError
from tagger.options import OutputOptions, TagOptions
from tagger.registry import DEFAULT_CAPTIONER


def add_command(sub: Any) -> None:
    """Register ``tagger keywords``."""

    t = lambda name, note="": describe(TagOptions, name, note)  # noqa: E731
    kw = sub.add_parser(
        "keywords",
        help="KeyBERT keyphrases of captions as tags; writes <stem>.txt",
        description="Extract keyphrases from each image's caption (read from caption files or "
        "written first by a captioner) and write them as tags; --clip-filter keeps those CLIP "
        "sees in the image.",
    )
    kw.add_argument("paths", nargs="+", metavar="PATH", help="Image files, folders or globs.")
    g = kw.add_argument_group("captions")
    g.add_argument(
        "--from-captions",
        metavar="EXT",
        help="Read each image's caption from <stem>EXT beside it (e.g. .caption) instead of "
        "captioning the image.",
    )
    g.add_argument(
        "--captioner",
        metavar="KEY|DIR",
        help=f"Caption the images first with this model; {DEFAULT_CAPTIONER} unless this or "
        "--from-captions is given.",
    )
    g.add_argument(
        "--caption-file-extension",
        metavar="EXT",
        help="Also write each new caption to <stem>EXT (e.g. .caption); by default it goes into "
        "the JSON sidecar and the manifest only.",
    )
    g.add_argument(
        "--caption-batch-size", type=int, help="Images per captioner run (default: --batch-size)."
    )
    add_decoding_options(kw, prefix="caption-")
    add_keyword_options(kw)
    add_clip_options(kw, categories=False)
    m = kw.add_argument_group("models")
    add_models_dir_option(m)
    add_hf_cache_option(m)
    m.add_argument(
        "--device", default="auto", help="auto, cpu, cuda or mps for every model (default: auto)."
    )
    m.add_argument("--device-id", type=non_negative, default=0, help="GPU index (default: 0).")
    f = kw.add_argument_group("tags (how keyphrases are written)")
    f.add_argument(
        "--exclude-tags",
        "--undesired-tags",
        dest="exclude_tags",
        type=tag_list,
        help=t("exclude_tags") + " Comma-separated.",
    )
    f.add_argument(
        "--keep-tags",
        type=tag_list,
        help="Keyphrases never dropped by the CLIP filter. Comma-separated.",
    )
    f.add_argument(
        "--additional-tags",
        dest="additional_tags",
        type=tag_list,
        help=t("additional_tags") + " Comma-separated.",
    )
    f.add_argument("--caption-separator", dest="separator", help=t("separator"))
    f.add_argument(
        "--weights",
        dest="include_weights",
        action="store_true",
        default=None,
        help="Write keyphrases as (phrase:0.71), with KeyBERT's score.",
    )
    f.add_argument(
        "--escape-brackets", action="store_true", default=None, help=t("escape_brackets")
    )
    add_batch_options(kw)
    add_progress_option(kw)
    kw.add_argument(
        "--top-tags",
        type=count_or_all,
        default=10,
        help="How many frequent keyphrases the summary lists, or 'all' (default: 10).",
    )
    kw.set_defaults(handler=run)


def build_model(args: argparse.Namespace) -> Any:
    """The KeywordPipeline for the flags (called once the run is planned)."""
    from tagger.captioners.common import torch_device_for
    from tagger.keywords.pipeline import KeywordPipeline

    options = caption_options_from_args(args)
    device = torch_device_for(args.device)
    inner = None
    if not args.from_captions:
        from tagger.captioners import get_captioner
        from tagger.interrogate import Interrogator

        captioner = get_captioner(
            args.captioner or DEFAULT_CAPTIONER,
            device=device,
            device_id=args.device_id,
            half=options.half,
            cache_dir=args.hf_cache,
            models_dirs=args.models_dir,
        )
        inner = Interrogator(None, captioner, options)
    clip_filter = None
    if args.clip_mode:
        from tagger.captioners.clip_filter import ClipFilter

        clip_filter = ClipFilter(
            clip_options(args),
            device=device,
            device_id=args.device_id,
            half=options.half,
            hf_cache=args.hf_cache,
        )
    return KeywordPipeline(
        keyword_extractor(args),
        inner,
        clip_filter=clip_filter,
        caption_extension=args.from_captions,
        write_caption=bool(args.caption_file_extension),
    )


def check_args(args: argparse.Namespace, extension: str) -> None:
    """Refuse combinations that cannot run, before anything loads."""
    from tagger.batch import normalize_extension
    from tagger.keywords.extract import check_options

    check_options(keyword_options_from_args(args))
    if args.from_captions:
        source = normalize_extension(args.from_captions)
        if args.captioner or args.caption_file_extension:
            raise OptionsError(
                "--from-captions reads the captions: leave out --captioner and "
                "--caption-file-extension"
            )
        if source in (extension, ".json"):
            raise OptionsError(
                f"--from-captions {source} is also what this run writes: write the keyphrases "
                f"elsewhere with --caption-extension (e.g. .tags) or read another extension"
            )


def run(args: argparse.Namespace) -> int:
    """Run ``tagger keywords``."""
    from tagger.batch import DeferredModel, check_inputs, normalize_extension
    from tagger.options import BatchOptions, dump, parse

    tag_options, batch_options = options_from_args(args)
    check_inputs(args.paths)
    check_args(args, normalize_extension(batch_options.caption_extension))
    if args.from_captions and not batch_options.batch_size:  # KeyBERT batches the captions
        size = keyword_options_from_args(args).batch_size
        batch_options = parse(BatchOptions, {**dump(batch_options), "batch_size": min(size, 1024)})
    output = OutputOptions(template="separate")
    if args.caption_file_extension:
        output = OutputOptions(
            template="separate", caption_file_extension=args.caption_file_extension
        )
    outputs = ("tags", "caption") if args.caption_file_extension else ("tags",)
    model = DeferredModel(lambda: build_model(args), outputs)
    return run_engine(args, model, tag_options, batch_options, output)
