"""``tagger score``: how well each image's existing caption file matches it (BLIP image-text
matching), into ``<stem>.json`` / the manifest, with a report of the worst-matching captions.

Nothing is moved or deleted: ``--below T`` lists the images whose caption scores under ``T``
(on the terminal, and in ``--below-list FILE``), for you to look at.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from tagger.cli.common import (
    add_hf_cache_option,
    add_models_dir_option,
    add_progress_option,
    describe,
    non_negative,
    options_from_args,
    run_prepared,
)
from tagger.options import BatchOptions


def add_command(sub: Any) -> None:
    """Register ``tagger score``."""
    from tagger.scoring.itm import DEFAULT_SCORER

    score = sub.add_parser(
        "score",
        help="score existing captions against their images (BLIP image-text matching)",
        description="Score each image's caption file with BLIP's image-text matching (ITM, a "
        "match probability) and contrastive similarity (ITC, a cosine); report the worst. "
        "Caption files are only read; nothing is moved or deleted.",
    )
    score.add_argument("paths", nargs="+", metavar="PATH", help="Image files, folders or globs.")
    g = score.add_argument_group("model")
    g.add_argument(
        "--model",
        default=DEFAULT_SCORER,
        help=f"BLIP ITM model: blip-itm-base-coco, blip-itm-large-coco, a folder name under a "
        f"models folder, or a folder (default: {DEFAULT_SCORER}).",
    )
    add_models_dir_option(g)
    add_hf_cache_option(g)
    g.add_argument("--device", default="auto", help="auto, cpu, cuda or mps (default: auto).")
    g.add_argument("--device-id", type=non_negative, default=0, help="GPU index (default: 0).")
    g.add_argument(
        "--no-half", dest="half", action="store_false", help="fp32 on CUDA (fp16 by default)."
    )
    d = lambda name: describe(BatchOptions, name)  # noqa: E731
    b = score.add_argument_group("files")
    b.add_argument(
        "--captions",
        dest="caption_extension",
        default=".txt",
        metavar="EXT",
        help="Extension of the caption files scored (default: .txt).",
    )
    b.add_argument(
        "--recursive", action="store_true", default=None, help="Also score images in sub-folders."
    )
    b.add_argument(
        "--output-dir",
        help="Where the caption files and sidecars are, mirroring sub-folders "
        "(default: beside each image).",
    )
    b.add_argument(
        "--json",
        dest="write_json",
        action="store_true",
        default=None,
        help="Write the scores into <stem>.json (its other keys are kept).",
    )
    b.add_argument(
        "--jsonl", metavar="FILE", help="A manifest: one line per image with its scores."
    )
    b.add_argument(
        "--on-existing",
        choices=["skip", "overwrite"],
        default="overwrite",
        help="skip: keep (and report) a sidecar's score when the caption and model are "
        "unchanged; overwrite: score again (default: overwrite).",
    )
    b.add_argument("--batch-size", type=non_negative, help=d("batch_size"))
    b.add_argument("--workers", type=non_negative, help=d("workers"))
    b.add_argument("--max-pixels", type=non_negative, help=d("max_pixels"))
    r = score.add_argument_group("report")
    r.add_argument(
        "--worst",
        type=non_negative,
        default=10,
        metavar="N",
        help="List the N worst-matching images, 0 for none (default: 10).",
    )
    r.add_argument(
        "--below",
        type=float,
        metavar="T",
        help="Also list every image scoring below T (ITM probability, or ITC with --sort itc).",
    )
    r.add_argument(
        "--below-list",
        metavar="FILE",
        help="With --below: write those images' paths to FILE, one a line.",
    )
    r.add_argument(
        "--sort",
        choices=["itm", "itc"],
        default="itm",
        help="Rank by the ITM probability or the ITC cosine (default: itm).",
    )
    add_progress_option(score)
    score.set_defaults(handler=run, top_tags=0)


def run(args: argparse.Namespace) -> int:
    """Run ``tagger score``."""
    from tagger.batch import DeferredModel, check_inputs
    from tagger.errors import OptionsError
    from tagger.scoring import get_scorer
    from tagger.scoring.itm import resolve_itm
    from tagger.scoring.run import ScoreModel, ScoreReport, ScoreRun

    if args.below_list and args.below is None:
        raise OptionsError("--below-list needs --below T")
    _, batch_options = options_from_args(args)
    check_inputs(args.paths)
    spec = resolve_itm(args.model, args.models_dir)
    report = ScoreReport(args.worst, args.below, args.sort)

    def build() -> ScoreModel:
        scorer = get_scorer(
            spec,
            device=args.device,
            device_id=args.device_id,
            half=args.half,
            cache_dir=args.hf_cache,
            models_dirs=args.models_dir,
            load=False,
        )
        return ScoreModel(scorer)

    run = ScoreRun(
        args.paths,
        DeferredModel(build, ("score",)),
        None,
        batch_options,
        report=report,
        model_key=spec.key,
    )
    status = run_prepared(
        run, args, "interrupt: finishing the current batch (Ctrl-C again stops now)"
    )
    print_report(report)
    if args.below_list:
        write_below_list(report, args.below_list)
    return status


def print_report(report: Any) -> None:
    """The worst captions, and those below the threshold, on standard output."""
    out = sys.stdout
    worst = report.worst_items()
    if worst:
        print(f"worst {len(worst)} of {report.count} by {report.sort}:", file=out)
        for item in worst:
            print(
                f"  {item.itm:.4f} itm  {item.itc:+.4f} itc  {item.path}: {item.caption}", file=out
            )
    if report.below is not None:
        below = report.below_items()
        print(f"{len(below)} of {report.count} below {report.sort} {report.below:g}:", file=out)
        for item in below:
            print(f"  {item.value:.4f}  {item.path}", file=out)


def write_below_list(report: Any, path: str) -> None:
    """The images below the threshold, one path a line, through the safe writer."""
    from tagger.safeio import atomic_write_text

    lines = [item.path for item in report.below_items()]
    atomic_write_text(path, "".join(f"{line}\n" for line in lines))
