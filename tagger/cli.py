"""The command line: ``tagger tag``, ``tagger models`` (also ``python -m tagger``).

Flag names follow kohya-ss sd-scripts' ``tag_images_by_wd14_tagger.py`` where the idea is the
same (``--general-threshold``, ``--undesired-tags``, ``--caption-extension``...), so dataset
builders can switch without relearning. Exit status: 0 when every image was written (or already
done), 1 when some images failed, 2 when the run could not start (bad arguments, unknown or
unavailable model), 130 when interrupted.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from typing import Any

from tagger import __version__
from tagger.errors import OptionsError, TaggerError
from tagger.options import BatchOptions, TagOptions, dump, field_names, parse

log = logging.getLogger("tagger")

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


def split_list(text: str) -> list[str]:
    """Split a comma-separated list, dropping blanks.

    >>> split_list("1girl, solo,,  smile ")
    ['1girl', 'solo', 'smile']
    """
    return [part.strip() for part in text.split(",") if part.strip()]


def parse_replacements(text: str) -> dict[str, str]:
    """Parse kohya's ``--tag-replacement`` syntax: ``src,dst;src2,dst2`` (``\\,`` ``\\;`` escape).

    >>> parse_replacements("cat ears,animal ears;a\\\\,b,c")
    {'cat ears': 'animal ears', 'a,b': 'c'}
    """
    pairs: dict[str, str] = {}
    for chunk in _split_escaped(text, ";"):
        if not chunk.strip():
            continue
        parts = _split_escaped(chunk, ",")
        if len(parts) != 2:
            raise argparse.ArgumentTypeError(
                f"tag replacement {chunk!r} is not 'source,replacement' (escape commas as \\,)"
            )
        source, target = (_unescape(p).strip() for p in parts)
        if not source:
            raise argparse.ArgumentTypeError(f"tag replacement {chunk!r} has an empty source")
        pairs[source] = target
    return pairs


def _split_escaped(text: str, separator: str) -> list[str]:
    """Split on ``separator`` unless it is preceded by a backslash (escapes are kept)."""
    parts, current, escaped = [], [], False
    for char in text:
        if escaped:
            current.append("\\" + char)
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == separator:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    if escaped:
        current.append("\\")
    parts.append("".join(current))
    return parts


def _unescape(text: str) -> str:
    """Remove the backslash of ``\\,`` and ``\\;``."""
    return text.replace("\\,", ",").replace("\\;", ";")


def _probability(text: str) -> float:
    """argparse type: a float in 0..1."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{value} is outside 0..1")
    return value


def _non_negative(text: str) -> int:
    """argparse type: an integer >= 0."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{value} is negative")
    return value


def _describe(model: type, name: str) -> str:
    """The field's description and default, for --help."""
    info = model.model_fields[name] if hasattr(model, "model_fields") else model.__fields__[name]
    description = getattr(info, "description", None) or info.field_info.description
    default = dump(model())[name]
    return f"{description} (default: {default!r})" if default not in ([], {}, None) else description


def _add_tag_options(parser: argparse.ArgumentParser) -> None:
    """Flags for every TagOptions field (dest = the field name)."""
    d = lambda name: _describe(TagOptions, name)  # noqa: E731
    g = parser.add_argument_group("tags (how scores become caption text)")
    g.add_argument("--general-threshold", type=_probability, help=d("general_threshold"))
    g.add_argument("--character-threshold", type=_probability, help=d("character_threshold"))
    g.add_argument(
        "--thresh",
        type=_probability,
        help="Default for both thresholds when they are not given (kohya's --thresh).",
    )
    g.add_argument("--mcut-general", action="store_true", default=None, help=d("mcut_general"))
    g.add_argument("--mcut-character", action="store_true", default=None, help=d("mcut_character"))
    g.add_argument("--character-mcut-floor", type=_probability, help=d("character_mcut_floor"))
    g.add_argument("--max-tags", type=_non_negative, help=d("max_tags"))
    g.add_argument(
        "--undesired-tags",
        "--exclude-tags",
        dest="exclude_tags",
        type=split_list,
        help=d("exclude_tags") + " Comma-separated.",
    )
    g.add_argument("--keep-tags", type=split_list, help=d("keep_tags") + " Comma-separated.")
    g.add_argument(
        "--additional-tags",
        "--add-tags",
        dest="additional_tags",
        type=split_list,
        help=d("additional_tags") + " Comma-separated.",
    )
    g.add_argument(
        "--tag-replacement",
        dest="replace_tags",
        type=parse_replacements,
        help="Replace tags: 'source,replacement;source2,replacement2' (escape , and ; with \\).",
    )
    g.add_argument(
        "--always-first-tags", type=split_list, help=d("always_first_tags") + " Comma-separated."
    )
    g.add_argument(
        "--character-tags-first",
        action="store_true",
        default=None,
        help=d("character_tags_first"),
    )
    g.add_argument(
        "--use-rating-tags",
        dest="rating_tag",
        action="store_const",
        const="first",
        help="Write the most likely rating tag first.",
    )
    g.add_argument(
        "--use-rating-tags-as-last-tag",
        dest="rating_tag",
        action="store_const",
        const="last",
        help="Write the most likely rating tag last.",
    )
    g.add_argument(
        "--remove-underscore",
        dest="replace_underscores",
        action="store_true",
        default=None,
        help=d("replace_underscores"),
    )
    g.add_argument(
        "--keep-underscore",
        dest="replace_underscores",
        action="store_false",
        help="Write tags with underscores, as the model names them.",
    )
    g.add_argument(
        "--escape-brackets", action="store_true", default=None, help=d("escape_brackets")
    )
    g.add_argument(
        "--weights",
        dest="include_weights",
        action="store_true",
        default=None,
        help=d("include_weights"),
    )
    g.add_argument("--order", choices=["confidence", "alphabetical", "model"], help=d("order"))
    g.add_argument("--caption-separator", dest="separator", help=d("separator"))


def _add_batch_options(parser: argparse.ArgumentParser) -> None:
    """Flags for every BatchOptions field (dest = the field name)."""
    d = lambda name: _describe(BatchOptions, name)  # noqa: E731
    g = parser.add_argument_group("batch (which files are read and written)")
    g.add_argument("--recursive", action="store_true", default=None, help=d("recursive"))
    g.add_argument("--output-dir", help=d("output_dir"))
    g.add_argument("--caption-extension", help=d("caption_extension"))
    g.add_argument(
        "--on-existing", choices=["skip", "overwrite", "append", "prepend"], help=d("on_existing")
    )
    g.add_argument(
        "--append-tags",
        dest="on_existing",
        action="store_const",
        const="append",
        help="Same as --on-existing append (kohya's flag).",
    )
    g.add_argument(
        "--json", dest="write_json", action="store_true", default=None, help=d("write_json")
    )
    g.add_argument("--jsonl", metavar="FILE", help=d("jsonl"))
    g.add_argument("--batch-size", type=_non_negative, help=d("batch_size"))
    g.add_argument("--workers", type=_non_negative, help=d("workers"))
    g.add_argument("--max-pixels", type=_non_negative, help=d("max_pixels"))
    g.add_argument("--fast-decode", action="store_true", default=None, help=d("fast_decode"))
    g.add_argument(
        "--no-fsync",
        dest="fsync",
        action="store_false",
        default=None,
        help="Do not flush each file to the disk before it replaces the old one: faster on slow "
        "disks; an interrupted run still never leaves half a file, but a power cut may.",
    )


def _add_model_options(parser: argparse.ArgumentParser) -> None:
    """Flags that choose the model and where it runs."""
    from tagger.registry import DEFAULT_MODEL

    g = parser.add_argument_group("model")
    g.add_argument(
        "--model",
        default=DEFAULT_MODEL,
        help=f"Registry key, local model name or model folder (default: {DEFAULT_MODEL}).",
    )
    g.add_argument(
        "--models-dir",
        action="append",
        metavar="DIR",
        help="Folder of local model folders (repeatable; default: $TAGGER_MODELS_DIR and models/).",
    )
    g.add_argument(
        "--hf-cache",
        metavar="DIR",
        help="Hugging Face cache folder for registry models (default: $TAGGER_HF_CACHE or HF's).",
    )
    g.add_argument("--revision", help="Hub revision to use instead of the pinned one.")
    g.add_argument(
        "--device",
        default="auto",
        help="Execution providers: auto, cpu, cuda, rocm, directml, coreml, openvino, tensorrt "
        "(comma-separated for several). A requested GPU that cannot run is an error.",
    )
    g.add_argument("--device-id", type=_non_negative, default=0, help="GPU index (default 0).")
    g.add_argument(
        "--threads",
        type=_non_negative,
        default=0,
        help="onnxruntime intra-op threads (default 0: onnxruntime decides).",
    )
    g.add_argument(
        "--fp16",
        action="store_true",
        help="Run the tagger on a float16 copy of the model (converted once, cached; needs "
        "the onnx package). For GPU providers: faster there, slower on the CPU; scores drift "
        "slightly (docs/benchmarks.md).",
    )


def _add_tag_command(sub: Any) -> None:
    """``tagger tag``."""
    tag = sub.add_parser(
        "tag",
        help="tag images and write <stem>.txt beside each (or under --output-dir)",
        description="Tag images (files, folders, glob patterns) and write caption files.",
    )
    tag.add_argument("paths", nargs="+", metavar="PATH", help="Image files, folders or globs.")
    _add_model_options(tag)
    _add_tag_options(tag)
    _add_batch_options(tag)
    tag.add_argument("--no-progress", action="store_true", help="No progress bar.")
    tag.add_argument(
        "--top-tags",
        type=_non_negative,
        default=10,
        help="How many frequent tags the summary lists.",
    )
    add_engine_options(tag)
    _add_combined_options(tag)
    tag.set_defaults(handler=cmd_tag)


def add_engine_options(parser: argparse.ArgumentParser) -> None:
    """``--engine``, ``--ray-address`` and ``--parquet`` (``tag`` and ``caption``)."""
    g = parser.add_argument_group("engine")
    g.add_argument(
        "--engine",
        choices=["local", "ray"],
        default="local",
        help="local: this process; ray: a Ray cluster (pip install 'tagger[ray]').",
    )
    g.add_argument(
        "--ray-address",
        metavar="ADDRESS",
        help="Ray cluster for --engine ray: 'auto', 'ray://HOST:10001' (default: a local one).",
    )
    g.add_argument(
        "--parquet",
        metavar="PATH|URI",
        help="With --engine ray: also write each image's record to this Parquet file "
        "(a local path or s3://, gs:// URI).",
    )


def _add_models_command(sub: Any) -> None:
    """``tagger models``."""
    models = sub.add_parser("models", help="list registry, local and downloaded models")
    models.add_argument("--models-dir", action="append", metavar="DIR")
    models.add_argument("--hf-cache", metavar="DIR")
    models.add_argument("--json", action="store_true", help="Print JSON.")
    models.set_defaults(handler=cmd_models)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``tagger`` command: one sub-command per ``COMMANDS`` entry."""
    parser = argparse.ArgumentParser(
        prog="tagger", description="Tag images with WD14 taggers and write caption files."
    )
    parser.add_argument("--version", action="version", version=f"tagger {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="More logging.")
    sub = parser.add_subparsers(dest="command", required=True)
    for add_command in COMMANDS:
        add_command(sub)
    return parser


def options_from_args(args: argparse.Namespace) -> tuple[TagOptions, BatchOptions]:
    """Build the option models from parsed flags: a flag left out keeps the model's default."""
    values = vars(args)
    thresh = values.get("thresh")
    tag_data: dict[str, Any] = {
        name: values[name] for name in field_names(TagOptions) if values.get(name) is not None
    }
    if thresh is not None:
        tag_data.setdefault("general_threshold", thresh)
        tag_data.setdefault("character_threshold", thresh)
    batch_data = {
        name: values[name] for name in field_names(BatchOptions) if values.get(name) is not None
    }
    return parse(TagOptions, tag_data), parse(BatchOptions, batch_data)


class _Bar:
    """tqdm progress on stderr, fed by the engine's progress callback."""

    def __init__(self, total: int | None, enabled: bool) -> None:
        from tqdm import tqdm

        self._tqdm = tqdm(total=total, unit="img", disable=not enabled, dynamic_ncols=True)
        self._done = 0

    def update(self, progress: Any) -> None:
        """Advance to the engine's count."""
        step = progress.done - self._done
        if step > 0:
            self._tqdm.update(step)
            self._done = progress.done
            self._tqdm.set_postfix(
                written=progress.written,
                skipped=progress.skipped,
                failed=progress.failed,
                refresh=False,
            )

    def write(self, text: str) -> None:
        """Print a line without breaking the bar."""
        self._tqdm.write(text, file=sys.stderr)

    def close(self) -> None:
        """Finish the bar."""
        self._tqdm.close()


def _print_summary(summary: Any, top: int) -> None:
    """The end-of-run report, on stderr."""
    out = sys.stderr
    where = ", ".join(p.replace("ExecutionProvider", "") for p in summary.providers) or "-"
    state = "interrupted" if summary.cancelled else "done"
    print(
        f"{state}: {summary.found} found, {summary.written} written, {summary.skipped} skipped, "
        f"{summary.failed_count} failed in {summary.elapsed:.1f}s "
        f"({summary.images_per_second:.2f} images/s, batch {summary.batch_size}, on {where})",
        file=out,
    )
    if top and summary.tag_counts:
        tags = ", ".join(f"{name} ({count})" for name, count in summary.most_common(top))
        print(f"most frequent tags: {tags}", file=out)
    if summary.failed_count:
        print(f"failed images ({summary.failed_count}):", file=out)
        for path, reason in summary.failed[:50]:
            print(f"  {path}: {reason}", file=out)
        if summary.failed_count > 50:
            print(f"  ... and {summary.failed_count - 50} more (listed above)", file=out)


def cmd_tag(args: argparse.Namespace) -> int:
    """Run ``tagger tag``."""
    from tagger.batch import check_inputs
    from tagger.cache import get_tagger
    from tagger.cli_caption import combined_model
    from tagger.registry import resolve_model

    if getattr(args, "engine", "local") == "ray":
        return cmd_tag_ray(args)
    if getattr(args, "parquet", None):
        raise OptionsError("--parquet needs --engine ray")
    tag_options, batch_options = options_from_args(args)
    check_inputs(args.paths)
    spec = resolve_model(args.model, args.models_dir)
    model = get_tagger(
        spec,
        providers=args.device,
        device_id=args.device_id,
        threads=args.threads,
        cache_dir=args.hf_cache,
        revision=args.revision,
        precision="fp16" if args.fp16 else "fp32",
    )
    model, output_options = combined_model(args, model)
    return _run_engine(args, model, tag_options, batch_options, output_options)


def _run_engine(
    args: argparse.Namespace,
    model: Any,
    tag_options: TagOptions,
    batch_options: BatchOptions,
    output_options: Any = None,
) -> int:
    """Run the batch engine with a progress bar and Ctrl-C handling; returns the exit status."""
    from tagger.batch import BatchRun, count_images

    total = count_images(args.paths, batch_options.recursive)
    if total == 0:
        log.warning("no images found in %s", ", ".join(args.paths))
    return run_with_progress(
        lambda **hooks: BatchRun(
            args.paths, model, tag_options, batch_options, output_options=output_options, **hooks
        ),
        total,
        args,
        "interrupt: finishing the current batch (press Ctrl-C again to stop now)",
    )


def run_with_progress(
    make_run: Callable[..., Any], total: int | None, args: argparse.Namespace, on_interrupt: str
) -> int:
    """Run a batch with a progress bar, failures printed as they happen, Ctrl-C to stop after
    the current batch (twice: at once), the summary, and the exit status.

    ``make_run(progress=, on_failure=, cancel=, total=)`` builds the run (anything with a
    ``run()`` returning a ``Summary``).
    """
    bar = _Bar(total, enabled=not args.no_progress)
    cancel = threading.Event()

    def interrupted(signum: int, frame: Any) -> None:
        if cancel.is_set():
            raise KeyboardInterrupt
        bar.write(on_interrupt)
        cancel.set()

    previous = signal.signal(signal.SIGINT, interrupted)
    try:
        run = make_run(
            progress=bar.update,
            on_failure=lambda path, reason: bar.write(f"failed: {path}: {reason}"),
            cancel=cancel,
            total=total,
        )
        summary = run.run()
    finally:
        signal.signal(signal.SIGINT, previous)
        bar.close()
    _print_summary(summary, args.top_tags)
    if summary.cancelled:
        return EXIT_INTERRUPTED
    return EXIT_FAILED if summary.failed_count else EXIT_OK


def _quiet_ray_data() -> None:
    """Ray Data's console shows warnings only (it reports every dataset at INFO); its log files
    keep everything. The notice that its progress bars are off is dropped: ours is shown."""
    try:
        import ray.data  # noqa: F401  (configures the "ray.data" logger)
    except ImportError:
        return
    for handler in logging.getLogger("ray.data").handlers:
        if isinstance(handler, logging.StreamHandler) and not isinstance(
            handler, logging.FileHandler
        ):
            handler.setLevel(logging.WARNING)
            handler.addFilter(lambda record: "Progress bars disabled" not in record.getMessage())


def cmd_tag_ray(args: argparse.Namespace) -> int:
    """Run ``tagger tag --engine ray``: the same outputs and summary, on a Ray cluster."""
    from tagger.cli_caption import ray_config
    from tagger.ray_engine import ModelConfig
    from tagger.registry import resolve_model

    tagger = ModelConfig(
        resolve_model(args.model, args.models_dir),
        providers=args.device,
        device_id=args.device_id,
        threads=args.threads,
        cache_dir=args.hf_cache,
        revision=args.revision,
        precision="fp16" if args.fp16 else "fp32",
    )
    config, output_options = ray_config(args, tagger)
    return run_ray_engine(args, config, output_options)


def run_ray_engine(args: argparse.Namespace, config: Any, output_options: Any = None) -> int:
    """Run ``--engine ray`` with a model config (``tag`` and ``caption``); the exit status."""
    from tagger.batch import check_inputs, count_images
    from tagger.ray_engine import RayBatchRun, is_uri

    tag_options, batch_options = options_from_args(args)
    if not log.isEnabledFor(logging.INFO):
        _quiet_ray_data()
    local = [path for path in args.paths if not is_uri(path)]
    if local:
        check_inputs(local)
    total = None if len(local) < len(args.paths) else count_images(local, batch_options.recursive)
    return run_with_progress(
        lambda **hooks: RayBatchRun(
            args.paths,
            config,
            tag_options,
            batch_options,
            output_options=output_options,
            address=args.ray_address,
            parquet=args.parquet,
            **hooks,
        ),
        total,
        args,
        "interrupt: stopping after the results already received",
    )


def cmd_models(args: argparse.Namespace) -> int:
    """Run ``tagger models``: registry and local models, and whether each is on disk."""
    from tagger.hub import is_downloaded
    from tagger.registry import list_captioners, list_models

    rows = []
    for spec in [*list_models(args.models_dir), *list_captioners(args.models_dir)]:
        rows.append(
            {
                "key": spec.key,
                "family": spec.family,
                "source": str(spec.path)
                if spec.path
                else f"{spec.repo_id}@{spec.revision}"
                if spec.repo_id
                else f"no download: put {', '.join(spec.files)} in models/{spec.key}/",
                "on_disk": is_downloaded(spec, cache_dir=args.hf_cache),
                "description": spec.description,
            }
        )
    if args.json:
        print(json.dumps(rows, indent=2))
        return EXIT_OK
    width = max(len(row["key"]) for row in rows)
    for row in rows:
        mark = "on disk " if row["on_disk"] else "download"
        print(f"{row['key']:<{width}}  {mark}  {row['source']}")
    return EXIT_OK


def _add_serve_command(sub: Any) -> None:
    """``tagger serve`` (the HTTP API; FastAPI is imported only when it runs)."""
    from tagger.api.server import add_serve_command

    add_serve_command(sub)


def _add_ui_command(sub: Any) -> None:
    """``tagger ui``: the Tagger tab as a standalone Gradio app (needs the ``ui`` extra)."""
    ui = sub.add_parser(
        "ui",
        help="serve the Tagger tab as a web page (pip install 'tagger[ui]')",
        description="Serve the webui extension's Tagger tab as a standalone Gradio app.",
    )
    ui.add_argument(
        "--host",
        default="127.0.0.1",
        help="Address to listen on (default 127.0.0.1: this machine only; 0.0.0.0 for all).",
    )
    ui.add_argument("--port", type=_non_negative, default=7861, help="Port (default 7861).")
    ui.add_argument("--presets-dir", metavar="DIR", help="Where presets are saved.")
    _add_model_options(ui)
    ui.set_defaults(handler=cmd_ui)


def cmd_ui(args: argparse.Namespace) -> int:
    """Run ``tagger ui``."""
    import importlib.util
    from pathlib import Path

    from tagger.errors import MissingDependencyError
    from tagger.registry import default_models_dirs

    if importlib.util.find_spec("gradio") is None:
        raise MissingDependencyError("tagger ui needs Gradio: pip install 'tagger[ui]'")
    from tagger.ui.app import launch
    from tagger.ui.host import RuntimeSettings

    dirs = [Path(d) for d in args.models_dir] if args.models_dir else default_models_dirs()
    settings = RuntimeSettings(
        default_model=args.model,
        models_dirs=dirs,
        hf_cache=args.hf_cache,
        providers=args.device,
        device_id=args.device_id,
        precision="fp16" if args.fp16 else "fp32",
    )
    launch(settings, host=args.host, port=args.port, presets_dir=args.presets_dir)
    return EXIT_OK


def _add_combined_options(parser: argparse.ArgumentParser) -> None:
    """``tagger tag --captioner`` / ``--clip-filter`` flags (defined with the caption command)."""
    from tagger.cli_caption import add_combined_options

    add_combined_options(parser)


def _add_caption_command(sub: Any) -> None:
    """``tagger caption``."""
    from tagger.cli_caption import add_caption_command

    add_caption_command(sub)


#: Each entry adds one sub-command (its parser, with ``handler`` set to the function to run).
COMMANDS = [
    _add_tag_command,
    _add_models_command,
    _add_caption_command,
    _add_serve_command,
    _add_ui_command,
]


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``tagger`` command; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    level = logging.WARNING - 10 * min(args.verbose, 2)
    logging.basicConfig(level=level, format="tagger: %(levelname)s: %(message)s")
    try:
        return args.handler(args)
    except TaggerError as exc:
        print(f"tagger: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("tagger: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:
        if _is_validation_error(exc):
            print(f"tagger: error: {exc}", file=sys.stderr)
            return EXIT_USAGE
        raise


def _is_validation_error(exc: Exception) -> bool:
    """True for pydantic's ValidationError (options out of range)."""
    return type(exc).__name__ == "ValidationError" and "pydantic" in type(exc).__module__


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
