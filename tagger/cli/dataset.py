"""``tagger dataset``: review, edit and clean a tagged dataset (the workbench's command line).

``stats``, ``edit``, ``undo``, ``check`` and ``report`` over ``PATH...`` (folders or images), each
with ``--json`` for scripts. Exit status as elsewhere: 0 done, 1 some files could not be read or
written (each listed), 2 bad arguments or nothing to do; ``check --fail-on-findings`` exits 1
when a check found something.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from tagger.cli import EXIT_FAILED, EXIT_OK
from tagger.cli.common import non_negative, tag_list


def pair(text: str) -> tuple[str, str]:
    """argparse type: ``OLD=NEW`` (``=`` inside a side written ``\\=``)."""
    parts = text.replace("\\=", "\0").split("=")
    if len(parts) != 2 or not parts[0].strip():
        raise argparse.ArgumentTypeError(f"{text!r} is not OLD=NEW")
    return parts[0].replace("\0", "="), parts[1].replace("\0", "=")


def add_command(sub: Any) -> None:
    """Register ``tagger dataset`` and its actions."""
    dataset = sub.add_parser(
        "dataset",
        help="review, edit and clean a tagged dataset (stats, edit, undo, check, report)",
        description="The dataset workbench: statistics of the captions, journaled bulk edits "
        "with undo, checks of the images, and an HTML report.",
    )
    actions = dataset.add_subparsers(dest="action", required=True)
    _stats(actions)
    _edit(actions)
    _undo(actions)
    _check(actions)
    _report(actions)


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("paths", nargs="+", metavar="PATH", help="Dataset folders or images.")
    parser.add_argument(
        "--caption-extension", default=".txt", help="Extension of captions (default: .txt)."
    )
    parser.add_argument(
        "--no-recursive",
        dest="recursive",
        action="store_false",
        help="Only the folders named, not their sub-folders (default: recursive).",
    )
    parser.add_argument(
        "--caption-separator",
        dest="separator",
        default=", ",
        help="Text between tags when a caption is written (default: ', ').",
    )
    parser.add_argument("--json", action="store_true", help="Print JSON.")


def _stats(actions: Any) -> None:
    stats = actions.add_parser("stats", help="tag frequency, co-occurrence, caption lengths")
    _common(stats)
    stats.add_argument(
        "--tag",
        dest="tags",
        action="append",
        default=[],
        help="Also list the tags occurring with this tag and its images (repeatable).",
    )
    stats.add_argument(
        "--top", type=non_negative, default=30, help="Tags listed (0: all; default 30)."
    )
    stats.add_argument(
        "--examples", type=int, default=20, help="Example paths per finding (-1: all)."
    )
    stats.add_argument(
        "--token-limit", type=non_negative, default=75, help="Flag captions above (75)."
    )
    stats.set_defaults(handler=run_stats)


def _edit(actions: Any) -> None:
    edit = actions.add_parser(
        "edit",
        help="bulk-edit captions (journaled; --dry-run shows the diff)",
        description="Edit every caption (or those matching --where); the parts given apply in "
        "this order: rename, replace, remove, cleanup, dedupe, order, max-tags, add-last, "
        "add-first, trigger. Tags match in any case, with _ or space, * and ? wildcards.",
    )
    _common(edit)
    edit.add_argument("--rename", type=pair, action="append", default=[], metavar="OLD=NEW")
    edit.add_argument(
        "--replace",
        type=pair,
        action="append",
        default=[],
        metavar="OLD=NEW",
        help="Replace text inside tags (exact).",
    )
    edit.add_argument("--remove", type=tag_list, action="append", default=[], metavar="TAGS")
    from tagger.dataset.cleanup import cleanup_names

    edit.add_argument(
        "--cleanup",
        action="append",
        default=[],
        metavar="NAME",
        help=f"A tag clean-up function (repeatable): {', '.join(cleanup_names())}.",
    )
    edit.add_argument("--dedupe", action="store_true", help="Drop repeated tags.")
    edit.add_argument(
        "--order",
        choices=["none", "frequency", "alphabetical", "reverse", "shuffle"],
        default="none",
    )
    edit.add_argument("--keep-first", type=non_negative, default=0, metavar="N")
    edit.add_argument("--seed", type=int, default=0)
    edit.add_argument("--max-tags", type=non_negative, default=0, metavar="N")
    edit.add_argument("--add-first", type=tag_list, action="append", default=[], metavar="TAGS")
    edit.add_argument("--add-last", type=tag_list, action="append", default=[], metavar="TAGS")
    edit.add_argument("--trigger", default="", help="Put this word first in every caption.")
    edit.add_argument("--where", default="", help="Only captions matching this filter.")
    edit.add_argument("--dry-run", action="store_true", help="Show the diff; write nothing.")
    edit.add_argument(
        "--journal", metavar="DIR", help="Journal folder (default: PATH/.tagger/journal)."
    )
    edit.add_argument("--no-fsync", dest="fsync", action="store_false")
    edit.set_defaults(handler=run_edit)


def _undo(actions: Any) -> None:
    undo = actions.add_parser("undo", help="undo the last edit (or --id ID); --list the journal")
    undo.add_argument("paths", nargs="+", metavar="PATH", help="The dataset folder edited.")
    undo.add_argument("--id", dest="ident", help="The journal to undo (a prefix is enough).")
    undo.add_argument("--list", action="store_true", help="List the journals; undo nothing.")
    undo.add_argument(
        "--force", action="store_true", help="Restore files changed since the edit too."
    )
    undo.add_argument("--dry-run", action="store_true", help="Say what would be restored.")
    undo.add_argument(
        "--journal", metavar="DIR", help="Journal folder (default: PATH/.tagger/journal)."
    )
    undo.add_argument("--json", action="store_true", help="Print JSON.")
    undo.set_defaults(handler=run_undo)


def _check_options(parser: argparse.ArgumentParser) -> None:
    from tagger.dataset.options import CheckOptions

    defaults = CheckOptions()
    group = parser.add_argument_group("checks")
    group.add_argument(
        "--checks",
        type=tag_list,
        default=None,
        help=f"Checks to run, comma-separated, or all (default: {','.join(defaults.checks)}).",
    )
    for name in (
        "hash_distance",
        "min_side",
        "max_aspect",
        "text_area",
        "text_chars",
        "text_score",
        "ocr_side",
        "clip_model",
        "clip_pretrained",
        "clip_similarity",
        "outlier_sigma",
        "mismatch_score",
        "scorer",
        "workers",
    ):
        value = getattr(defaults, name)
        kind = type(value) if value is not None else str
        group.add_argument(
            "--" + name.replace("_", "-"),
            dest=name,
            type=kind,
            default=None,
            help=f"(default: {value})",
        )


def _check(actions: Any) -> None:
    check = actions.add_parser("check", help="find duplicates, broken, small, text images...")
    _common(check)
    _check_options(check)
    check.add_argument(
        "--trash",
        type=tag_list,
        default=[],
        metavar="CHECKS",
        help="Move what these checks found into PATH/.tagger/trash (journaled: undo restores "
        "it). Duplicates keep the first image of each group.",
    )
    check.add_argument("--report", metavar="FILE", help="Also write the HTML report here.")
    check.add_argument("--fail-on-findings", action="store_true", help="Exit 1 on findings.")
    check.set_defaults(handler=run_check)


def _report(actions: Any) -> None:
    report = actions.add_parser("report", help="write one self-contained HTML report")
    _common(report)
    _check_options(report)
    report.add_argument("--output", "-o", default="dataset-report.html", metavar="FILE")
    report.add_argument("--page-size", type=non_negative, default=48, help="Findings a page.")
    report.set_defaults(handler=run_report)


# -- handlers -----------------------------------------------------------------------------------


def dataset_options(args: argparse.Namespace) -> Any:
    """The DatasetOptions of the flags."""
    from tagger.dataset.options import DatasetOptions

    return DatasetOptions(
        caption_extension=args.caption_extension,
        recursive=args.recursive,
        separator=args.separator,
    )


def check_options(args: argparse.Namespace) -> Any:
    """The CheckOptions of the flags (defaults where a flag is not given)."""
    from tagger.dataset.options import CheckOptions
    from tagger.options import field_names, parse

    values = {
        name: getattr(args, name)
        for name in field_names(CheckOptions)
        if getattr(args, name, None) is not None
    }
    return parse(CheckOptions, values)


def _print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, ensure_ascii=False))


def stats_of(args: argparse.Namespace, **extra: Any) -> Any:
    """``dataset_stats`` over the command's paths with its dataset options (``extra``: the
    statistics' own options)."""
    from tagger.dataset.stats import dataset_stats

    options = dataset_options(args)
    return dataset_stats(
        args.paths,
        extension=options.caption_extension,
        recursive=options.recursive,
        separator=options.separator,
        **extra,
    )


def run_stats(args: argparse.Namespace) -> int:
    """``tagger dataset stats``."""
    stats = stats_of(
        args, cooccurrence=args.tags, token_limit=args.token_limit, examples=args.examples
    )
    data = stats.to_dict(top=0 if args.json else args.top)
    if args.json:
        _print_json(data)
    else:
        print_stats(data, args.top)
    return EXIT_FAILED if data["unreadable_captions"]["count"] else EXIT_OK


def print_stats(data: dict[str, Any], top: int) -> None:
    """The statistics as text."""
    print(
        f"{data['images']} images, {data['captioned']} with a caption, "
        f"{data['unique_tags']} distinct tags ({data['tag_total']} in all)"
    )
    if data["frequency"]:
        print("\nMost frequent tags (images):")
        width = max(len(tag) for tag, _ in data["frequency"][: top or None])
        for tag, count in data["frequency"][: top or None]:
            print(f"  {tag:<{width}}  {count}")
    if len(data["per_folder"]) > 1:
        print("\nPer folder:")
        for folder, info in data["per_folder"].items():
            best = ", ".join(f"{t} ({n})" for t, n in info["frequency"][:5])
            print(f"  {folder or '.'}: {info['images']} images; {best}")
    for tag, info in data["cooccurrence"].items():
        together = ", ".join(f"{t} ({n})" for t, n in info["with"][: top or None])
        print(f"\n{tag}: on {info['images']['count']} images; with {together or 'nothing'}")
        for path in info["images"]["examples"]:
            print(f"  {path}")
    tokens = data["tokens"]
    exact = "" if tokens["exact"] else " (estimated: no CLIP tokenizer found)"
    print(f"\nCaption length in CLIP tokens{exact}:")
    for start, count in tokens["histogram"]:
        print(f"  {start:>4}-{start + 4:<4} {count}")
    over = tokens["over_limit"]
    if over["count"]:
        print(f"  {over['count']} captions over {tokens['limit']} tokens, e.g.:")
        for path, n in over["examples"]:
            print(f"    {path} ({n})")
    for key, title in (
        ("untagged", "images without tags"),
        ("repeated_tags", "captions repeating a tag"),
        ("orphan_captions", "captions without an image"),
        ("shared_captions", "images sharing one caption file"),
        ("unreadable_captions", "captions that cannot be read"),
    ):
        info = data[key]
        if info["count"]:
            print(f"\n{info['count']} {title}:")
            for item in info["examples"]:
                print(f"  {item if isinstance(item, str) else ': '.join(map(str, item))}")
    once = data["once"]
    if once["count"]:
        shown = ", ".join(f"{t} ({p})" for t, p in once["examples"][:10])
        print(f"\n{once['count']} tags on one image only: {shown}")
    if data["variants"]:
        print("\nTags written several ways:")
        for key, forms in list(data["variants"].items())[:20]:
            print(f"  {key}: {' | '.join(forms)}")


def edit_spec(args: argparse.Namespace) -> Any:
    """The EditSpec of the flags."""
    from tagger.dataset.options import EditSpec

    flat = lambda lists: [tag for part in lists for tag in part]  # noqa: E731
    return EditSpec(
        rename=dict(args.rename),
        replace=dict(args.replace),
        remove=flat(args.remove),
        cleanup=args.cleanup,
        dedupe=args.dedupe,
        order=args.order,
        keep_first=args.keep_first,
        seed=args.seed,
        max_tags=args.max_tags,
        add_first=flat(args.add_first),
        add_last=flat(args.add_last),
        trigger=args.trigger,
    )


def run_edit(args: argparse.Namespace) -> int:
    """``tagger dataset edit``."""
    from tagger.dataset.edits import run_edit as edit

    result = edit(
        args.paths,
        edit_spec(args),
        dataset_options(args),
        dry_run=args.dry_run,
        where=args.where,
        journal_folder=args.journal,
        fsync=args.fsync,
        diffs=-1 if args.dry_run else 0,
    )
    if args.json:
        _print_json(result.to_dict())
    else:
        if args.dry_run:
            sys.stdout.write(result.diff())
        verb = "would change" if args.dry_run else "changed"
        print(
            f"{result.description}: {verb} {result.changed} of {result.examined} captions "
            f"({result.unchanged} unchanged, {result.skipped} not matching or gone, "
            f"{len(result.failed)} failed)",
            file=sys.stderr if args.dry_run else sys.stdout,
        )
        if result.journal:
            print(f"journal {result.journal}: undo with tagger dataset undo {args.paths[0]}")
        for path, reason in result.failed:
            shown = reason if reason.startswith(path) else f"{path}: {reason}"
            print(f"failed: {shown}", file=sys.stderr)
    return EXIT_FAILED if result.failed else EXIT_OK


def run_undo(args: argparse.Namespace) -> int:
    """``tagger dataset undo``."""
    from tagger.dataset.journal import journal_dir, list_journals, undo

    where = journal_dir(args.paths, args.journal)
    if args.list:
        journals = [j.summary() for j in list_journals(where)]
        if args.json:
            _print_json(journals)
        for info in journals if not args.json else []:
            print(
                f"{info['id']}  {info['state']:<8} {info.get('files', 0):>6} files  "
                f"{info['description']}"
            )
        return EXIT_OK
    result = undo(where, args.ident, force=args.force, dry_run=args.dry_run)
    if args.json:
        _print_json(result.to_dict())
    else:
        verb = "would restore" if args.dry_run else "restored"
        print(
            f"journal {result.journal}: {verb} {result.restored} files, {result.unchanged} "
            f"already as before, {len(result.conflicts)} conflicts, {len(result.failed)} failed"
        )
        for path, reason in [*result.conflicts, *result.failed]:
            print(f"  {path}: {reason}", file=sys.stderr)
    return EXIT_FAILED if result.conflicts or result.failed else EXIT_OK


def _progress_bar(args: argparse.Namespace) -> Any:
    """A tqdm bar on stderr, off for --json or when stderr is not a terminal."""
    if getattr(args, "json", False) or not sys.stderr.isatty():
        return None
    from tqdm import tqdm

    return tqdm(unit="img", file=sys.stderr)


def checks_of(args: argparse.Namespace) -> Any:
    """Run the checks of the flags, with a progress bar."""
    from tagger.dataset.checks import run_checks

    bar = _progress_bar(args)

    def progress(done: int, total: int | None) -> None:
        if bar is not None:
            bar.update(done - bar.n)

    try:
        return run_checks(args.paths, check_options(args), dataset_options(args), progress=progress)
    finally:
        if bar is not None:
            bar.close()


def run_check(args: argparse.Namespace) -> int:
    """``tagger dataset check``."""
    from tagger.dataset.fixes import trash_findings

    result = checks_of(args)
    data = result.to_dict()
    if args.report:
        from tagger.dataset.report import write_report

        write_report(args.report, stats_of(args), result, paths=args.paths)
    trashed: dict[str, Any] | None = None
    if args.trash:
        trashed = trash_findings(args.paths, result, args.trash, dataset_options(args))
        data["trash"] = trashed
    if args.json:
        _print_json(data)
    else:
        print_findings(data)
        if trashed is not None:
            print(
                f"\nmoved {len(trashed['moved'])} files to the trash (journal "
                f"{trashed['journal']}: undo with tagger dataset undo {args.paths[0]})"
            )
        if args.report:
            print(f"report: {args.report}")
    failed = bool(trashed and trashed["failed"])
    if failed or (args.fail_on_findings and data["findings"]):
        return EXIT_FAILED
    return EXIT_OK


def print_findings(data: dict[str, Any]) -> None:
    """Findings as text, by check."""
    print(f"{data['images']} images checked")
    by_check: dict[str, list[dict[str, Any]]] = {}
    for finding in data["findings"]:
        by_check.setdefault(finding["check"], []).append(finding)
    for name in data["checks"]:
        if name in data["skipped"]:
            print(f"\n{name}: skipped: {data['skipped'][name]}")
            continue
        found = by_check.get(name, [])
        print(f"\n{name}: {len(found)} found")
        for finding in found:
            group = f"[{finding['group']}] " if finding["group"] is not None else ""
            print(f"  {group}{finding['path']}: {finding['detail']}")


def run_report(args: argparse.Namespace) -> int:
    """``tagger dataset report``."""
    from tagger.dataset.report import write_report

    stats = stats_of(args)
    result = checks_of(args)
    write_report(args.output, stats, result, paths=args.paths, page_size=args.page_size or 48)
    if args.json:
        _print_json({"report": args.output, "images": result.images})
    else:
        print(f"report: {args.output} ({result.images} images, {len(result.findings)} findings)")
    return EXIT_OK
