"""What the sub-commands share: the model, tag, batch, decoding and engine flags, the option models
built from parsed flags, the progress runner (with Ctrl-C handling), the summary, and logging.

Every flag that sets an options-model field has that field's name as its ``dest`` and states the
model's default in its help, so the help is what runs.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import signal
import socket
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NoReturn

from tagger.cli import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK
from tagger.errors import OptionsError
from tagger.option_text import parse_replacements, split_list
from tagger.options import (
    BatchOptions,
    CaptionOptions,
    ClipFilterOptions,
    OutputOptions,
    TagOptions,
    dump,
    field_names,
    parse,
)

log = logging.getLogger("tagger")

#: ``--top-tags all``: the summary lists every tag.
ALL_TAGS = -1

_UNSET: Any = object()


# -- argparse types ------------------------------------------------------------------------------


def probability(text: str) -> float:
    """argparse type: a float in 0..1."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{value} is outside 0..1")
    return value


def non_negative(text: str) -> int:
    """argparse type: an integer >= 0."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{value} is negative")
    return value


def count_or_all(text: str) -> int:
    """argparse type: an integer >= 0, or ``all`` (``ALL_TAGS``)."""
    return ALL_TAGS if text.strip().lower() == "all" else non_negative(text)


def tag_list(text: str) -> list[str]:
    """argparse type: a comma-separated list (``split_list``)."""
    return split_list(text)


def replacements(text: str) -> dict[str, str]:
    """argparse type: kohya's ``a,b;c,d`` replacement syntax (``parse_replacements``); a bad text
    becomes argparse's usage error with the parser's message."""
    try:
        return parse_replacements(text)
    except OptionsError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


# -- help texts ---------------------------------------------------------------------------------


def describe(model: type, name: str, note: str = "", default: Any = _UNSET) -> str:
    """A field's description (plus ``note``) and its default, for --help.

    The default is the model's, unless the command sets another (``default``); empty lists, maps
    and None are not stated.
    """
    info = model.model_fields[name] if hasattr(model, "model_fields") else model.__fields__[name]
    description = getattr(info, "description", None) or info.field_info.description
    value = dump(model())[name] if default is _UNSET else default
    text = f"{description} {note}" if note else description
    return f"{text} (default: {value!r})" if value not in ([], {}, None) else text


# -- flags -------------------------------------------------------------------------------------


def add_tag_options(parser: argparse.ArgumentParser) -> None:
    """Flags for every TagOptions field (dest = the field name)."""
    d = lambda name, note="": describe(TagOptions, name, note)  # noqa: E731
    strict = "Strictly above: kohya's script keeps scores >= its threshold."
    g = parser.add_argument_group("tags (how scores become caption text)")
    g.add_argument("--general-threshold", type=probability, help=d("general_threshold", strict))
    g.add_argument("--character-threshold", type=probability, help=d("character_threshold", strict))
    g.add_argument(
        "--thresh",
        type=probability,
        help="Default for both thresholds when they are not given (kohya's --thresh).",
    )
    g.add_argument("--mcut-general", action="store_true", default=None, help=d("mcut_general"))
    g.add_argument("--mcut-character", action="store_true", default=None, help=d("mcut_character"))
    g.add_argument("--character-mcut-floor", type=probability, help=d("character_mcut_floor"))
    g.add_argument("--max-tags", type=non_negative, help=d("max_tags"))
    g.add_argument(
        "--undesired-tags",
        "--exclude-tags",
        dest="exclude_tags",
        type=tag_list,
        help=d("exclude_tags") + " Comma-separated.",
    )
    g.add_argument("--keep-tags", type=tag_list, help=d("keep_tags") + " Comma-separated.")
    g.add_argument(
        "--additional-tags",
        "--add-tags",
        dest="additional_tags",
        type=tag_list,
        help=d("additional_tags") + " Comma-separated.",
    )
    g.add_argument(
        "--tag-replacement",
        dest="replace_tags",
        type=replacements,
        help="Replace tags: 'source,replacement;source2,replacement2' (escape , and ; with \\).",
    )
    g.add_argument(
        "--always-first-tags", type=tag_list, help=d("always_first_tags") + " Comma-separated."
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
    importlib.import_module("tagger.cli.families").add_family_options(parser)


def add_batch_options(
    parser: argparse.ArgumentParser, defaults: Mapping[str, Any] | None = None
) -> None:
    """Flags for every BatchOptions field (dest = the field name).

    ``defaults`` replaces the model's default of some fields for this command (``tagger caption``
    writes ``.caption`` files): the parser uses it and the help states it.
    """
    defaults = dict(defaults or {})
    unknown = set(defaults) - set(field_names(BatchOptions))
    if unknown:
        raise ValueError(f"not BatchOptions fields: {sorted(unknown)}")
    d = lambda name: describe(BatchOptions, name, default=defaults.get(name, _UNSET))  # noqa: E731
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
    g.add_argument("--batch-size", type=non_negative, help=d("batch_size"))
    g.add_argument("--workers", type=non_negative, help=d("workers"))
    g.add_argument("--max-pixels", type=non_negative, help=d("max_pixels"))
    g.add_argument("--fast-decode", action="store_true", default=None, help=d("fast_decode"))
    g.add_argument(
        "--no-fsync",
        dest="fsync",
        action="store_false",
        default=None,
        help="Do not flush each file to the disk before it replaces the old one: faster on slow "
        "disks; an interrupted run still never leaves half a file, but a power cut may.",
    )
    if defaults:
        parser.set_defaults(**defaults)


def add_model_options(parser: argparse.ArgumentParser) -> None:
    """Flags that choose the tagger model and where it runs."""
    from tagger.registry import DEFAULT_MODEL

    g = parser.add_argument_group("model")
    g.add_argument(
        "--model",
        default=DEFAULT_MODEL,
        action=importlib.import_module("tagger.cli.families").ModelAction,
        help=f"Registry key, local model name or model folder (default: {DEFAULT_MODEL}); "
        "repeat it to run an ensemble.",
    )
    add_models_dir_option(g)
    add_hf_cache_option(g)
    g.add_argument("--revision", help="Hub revision to use instead of the pinned one.")
    g.add_argument(
        "--device",
        default="auto",
        help="Execution providers: auto, cpu, cuda, rocm, directml, coreml, openvino, tensorrt "
        "(comma-separated for several). A requested GPU that cannot run is an error "
        "(default: auto).",
    )
    g.add_argument("--device-id", type=non_negative, default=0, help="GPU index (default: 0).")
    g.add_argument(
        "--threads",
        type=non_negative,
        default=0,
        help="onnxruntime intra-op threads, 0: onnxruntime decides (default: 0).",
    )
    g.add_argument(
        "--fp16",
        action="store_true",
        help="Run the tagger on a float16 copy of the model (converted once, cached; needs "
        "the onnx package). For GPU providers: faster there, slower on the CPU; scores drift "
        "slightly (docs/benchmarks.md).",
    )


def add_models_dir_option(parser: Any) -> None:
    """``--models-dir DIR`` (repeatable)."""
    parser.add_argument(
        "--models-dir",
        action="append",
        metavar="DIR",
        help="Folder of local model folders (repeatable; default: $TAGGER_MODELS_DIR and models/).",
    )


def add_hf_cache_option(parser: Any) -> None:
    """``--hf-cache DIR``."""
    parser.add_argument(
        "--hf-cache",
        metavar="DIR",
        help="Hugging Face cache folder for registry models (default: $TAGGER_HF_CACHE or HF's).",
    )


def add_engine_options(parser: argparse.ArgumentParser) -> None:
    """``--engine``, ``--ray-address`` and ``--parquet`` (``tag`` and ``caption``)."""
    g = parser.add_argument_group("engine")
    g.add_argument(
        "--engine",
        choices=["local", "ray"],
        default="local",
        help="local: this process; ray: a Ray cluster, pip install 'tagger[ray]' (default: local).",
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


def add_progress_option(parser: argparse.ArgumentParser) -> None:
    """``--no-progress``."""
    parser.add_argument("--no-progress", action="store_true", help="No progress bar.")


def add_decoding_options(parser: argparse.ArgumentParser, *, prefix: str = "") -> None:
    """CaptionOptions flags (dest = the field name). ``prefix`` avoids clashes in ``tag``."""
    d = lambda name, note="": describe(CaptionOptions, name, note)  # noqa: E731
    g = parser.add_argument_group("caption decoding")
    g.add_argument(
        "--caption-prompt" if prefix else "--prompt",
        dest="prompt",
        help=d("prompt"),
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
    g.add_argument(f"--{prefix}top-p", dest="top_p", type=float, help=d("top_p"))
    g.add_argument(f"--{prefix}temperature", dest="temperature", type=float, help=d("temperature"))
    g.add_argument(f"--{prefix}seed", dest="seed", type=int, help=d("seed"))
    g.add_argument(
        f"--{prefix}max-length",
        f"--{prefix}max-new-tokens",
        dest="max_new_tokens",
        type=int,
        help="Most new tokens. Default: 40 for BLIP, 67 for CLIP-prefix. Unlike kohya's "
        "--max_length the prompt is not counted.",
    )
    g.add_argument(
        f"--{prefix}min-length",
        f"--{prefix}min-new-tokens",
        dest="min_new_tokens",
        type=int,
        help=d("min_new_tokens"),
    )
    g.add_argument(
        f"--{prefix}repetition-penalty",
        dest="repetition_penalty",
        type=float,
        help=d("repetition_penalty"),
    )
    g.add_argument(
        f"--{prefix}no-repeat-ngram-size",
        dest="no_repeat_ngram_size",
        type=int,
        help=d("no_repeat_ngram_size"),
    )
    g.add_argument(f"--{prefix}candidates", dest="candidates", type=int, help=d("candidates"))
    g.add_argument(
        f"--{prefix}no-cut-at-period",
        dest="cut_at_period",
        action="store_false",
        default=None,
        help="SBG: write the sampled caption whole, not cut at its first '.'.",
    )
    g.add_argument(
        "--no-half",
        dest="half",
        action="store_false",
        default=None,
        help="fp32 on CUDA (by default captioners run in fp16 there).",
    )


# -- option models from flags -------------------------------------------------------------------


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


def caption_options_from_args(args: argparse.Namespace) -> CaptionOptions:
    """CaptionOptions from parsed flags (flags left out keep the defaults)."""
    values = vars(args)
    data = {n: values[n] for n in field_names(CaptionOptions) if values.get(n) is not None}
    if values.get("caption_batch_size") is not None:
        data["batch_size"] = values["caption_batch_size"]
    return parse(CaptionOptions, data)


#: ``--clip-*`` flag dest -> ClipFilterOptions field.
CLIP_FLAGS = {
    "clip_threshold": "threshold",
    "clip_model": "model",
    "clip_pretrained": "pretrained",
    "clip_template": "template",
    "clip_cache": "cache_dir",
    "clip_mode": "mode",
    "clip_categories": "categories",
}


def clip_options(args: argparse.Namespace) -> ClipFilterOptions:
    """ClipFilterOptions from the ``--clip-*`` flags."""
    data: dict[str, Any] = {}
    for flag, field in CLIP_FLAGS.items():
        value = getattr(args, flag, None)
        if value is not None and value != "" and value != []:
            data[field] = value
    return parse(ClipFilterOptions, data)


def output_options_from_args(args: argparse.Namespace) -> OutputOptions:
    """OutputOptions from ``--caption-template`` / ``--caption-file-extension``."""
    values = vars(args)
    data = {n: values[n] for n in field_names(OutputOptions) if values.get(n) is not None}
    return parse(OutputOptions, data)


def ray_config(args: argparse.Namespace, tagger: Any) -> tuple[Any, OutputOptions]:
    """The model config for ``--engine ray``: the tagger's ``ModelConfig`` (or None, for
    ``tagger caption``) alone, or an ``InterrogatorConfig`` with the captioner / CLIP filter the
    flags ask for. Paths and names are resolved here, so a bad one fails before Ray starts."""
    from tagger.captioners.common import torch_device_for
    from tagger.cli.captioner_flags import captioner_spec
    from tagger.ray_engine import CaptionerConfig, ClipFilterConfig, InterrogatorConfig

    output = output_options_from_args(args)
    captioner_name = args.model if tagger is None else getattr(args, "captioner", None)
    if tagger is not None and not captioner_name and not getattr(args, "clip_mode", None):
        return tagger, output
    options = caption_options_from_args(args)
    device = args.device if tagger is None else torch_device_for(args.device)
    captioner = None
    if captioner_name:
        from tagger.cli.vlm_flags import vlm_config

        spec = captioner_spec(captioner_name, args)
        captioner = CaptionerConfig(
            spec,
            device=device,
            device_id=args.device_id,
            half=options.half,
            cache_dir=args.hf_cache,
            revision=args.revision if tagger is None else None,
            **vlm_config(args, spec, device),
        )
    clip_filter = None
    if tagger is not None and args.clip_mode:
        clip_filter = ClipFilterConfig(
            dump(clip_options(args)),
            device=device,
            device_id=args.device_id,
            half=options.half,
            hf_cache=args.hf_cache,
        )
    config = InterrogatorConfig(tagger, captioner, dump(options), clip_filter)
    if captioner is not None and captioner.vlm is not None:
        captioner.build(device="cpu")  # a bad VLM flag stops the run before Ray starts
    return config, output


# -- running a batch ----------------------------------------------------------------------------


class _Bar:
    """tqdm progress on stderr, fed by the engine's progress callback."""

    def __init__(self, total: int | None, enabled: bool) -> None:
        from tqdm import tqdm

        self._tqdm = tqdm(total=total, unit="img", disable=not enabled, dynamic_ncols=True)
        self._done = 0
        self.enabled = enabled
        self.last: Any = None  # the engine's latest Progress

    def update(self, progress: Any) -> None:
        """Advance to the engine's count."""
        self.last = progress
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


def print_summary(summary: Any, top: int) -> None:
    """The end-of-run report, on stderr (``top``: how many frequent tags; ``ALL_TAGS``: all)."""
    out = sys.stderr
    where = ", ".join(p.replace("ExecutionProvider", "") for p in summary.providers) or "-"
    state = "interrupted" if summary.cancelled else "done"
    print(
        f"{state}: {summary.found} found, {summary.written} written, {summary.skipped} skipped, "
        f"{summary.failed_count} failed in {summary.elapsed:.1f}s "
        f"({summary.images_per_second:.2f} images/s, batch {summary.batch_size}, on {where})",
        file=out,
    )
    if getattr(summary, "usage", None):
        from tagger.vlm.usage import usage_line

        print(usage_line(summary.usage), file=out)
    if top and summary.tag_counts:
        common = summary.most_common(None if top == ALL_TAGS else top)
        tags = ", ".join(f"{name} ({count})" for name, count in common)
        print(f"most frequent tags: {tags}", file=out)
    if summary.failed_count:
        print(f"failed images ({summary.failed_count}):", file=out)
        for path, reason in summary.failed[:50]:
            print(f"  {path}: {reason}", file=out)
        if summary.failed_count > 50:
            print(f"  ... and {summary.failed_count - 50} more (listed above)", file=out)


def no_images_message(paths: Sequence[str], recursive: bool) -> str:
    """The warning for a run that found no image; it names --recursive when sub-folders (or a
    ``**`` pattern) hold images that only a recursive run reads."""
    from tagger.batch import find_images

    where = ", ".join(paths)
    if not recursive and next(iter(find_images(paths, recursive=True)), None) is not None:
        return f"no images found in {where}; sub-folders hold images: add --recursive to tag them"
    return f"no images found in {where}"


def run_engine(
    args: argparse.Namespace,
    model: Any,
    tag_options: TagOptions,
    batch_options: BatchOptions,
    output_options: Any = None,
) -> int:
    """Run the batch engine with a progress bar and Ctrl-C handling; returns the exit status.

    The run is planned first (``BatchRun.prepare``: output places, colliding outputs, the total),
    so outputs that cannot be written stop it with exit status 2 before ``model`` (a
    ``DeferredModel``) is loaded.
    """
    from tagger.batch import BatchRun

    run = BatchRun(args.paths, model, tag_options, batch_options, output_options=output_options)
    return run_prepared(
        run, args, "interrupt: finishing the current batch (press Ctrl-C again to stop now)"
    )


def run_prepared(run: Any, args: argparse.Namespace, on_interrupt: str, local: Any = None) -> int:
    """Plan ``run`` (a ``BatchRun``), then run it with ``run_with_progress``."""
    total = run.prepare().total
    if total == 0:
        log.warning(
            "%s",
            no_images_message(local if local is not None else args.paths, run.options.recursive),
        )

    def attach(**hooks: Any) -> Any:
        for name, value in hooks.items():
            setattr(run, name, value)
        return run

    return run_with_progress(attach, total, args, on_interrupt)


def run_with_progress(
    make_run: Callable[..., Any], total: int | None, args: argparse.Namespace, on_interrupt: str
) -> int:
    """Run a batch with a progress bar, failures printed as they happen, Ctrl-C to stop after
    the current batch (twice: at once, see ``InterruptWatch``), the summary, and the exit status.

    ``make_run(progress=, on_failure=, cancel=, total=)`` builds the run (anything with a
    ``run()`` returning a ``Summary``).
    """
    bar = _Bar(total, enabled=not args.no_progress)
    cancel = threading.Event()
    finished = threading.Event()
    watch = InterruptWatch(lambda: stop_at_once(bar))

    def interrupted(signum: int, frame: Any) -> None:
        if not cancel.is_set() and not finished.is_set():
            bar.write(on_interrupt)
            cancel.set()
        else:  # a second Ctrl-C, or one during the summary: stop now
            watch.fire()

    # The handler and the watcher stay until the summary and the frequency file are written:
    # a second Ctrl-C that lands while a cancelled run winds down still stops it at once
    # instead of meeting Python's default handler half-way through the summary.
    previous = signal.signal(signal.SIGINT, interrupted)
    try:
        run = make_run(
            progress=bar.update,
            on_failure=lambda path, reason: bar.write(f"failed: {path}: {reason}"),
            cancel=cancel,
            total=total,
        )
        summary = run.run()
        finished.set()
        bar.close()
        print_summary(summary, args.top_tags)
        importlib.import_module("tagger.cli.families").write_frequencies(args, summary)
    finally:
        signal.signal(signal.SIGINT, previous)
        watch.stop()
        bar.close()
    if summary.cancelled:
        return EXIT_INTERRUPTED
    return EXIT_FAILED if summary.failed_count else EXIT_OK


def stop_at_once(bar: _Bar) -> None:
    """The second Ctrl-C: end the process now with status 130.

    Called from the watcher thread, so it never waits for the main thread (which may be inside
    the model or decoding) or for a lock it may hold: one line straight to file descriptor 2,
    then ``os._exit``. Every output file is written to a temporary name and renamed, so the
    files already there are whole; a rerun with ``--on-existing skip`` finishes the rest.
    """
    counts = ""
    if bar.last is not None:
        p = bar.last
        counts = f" ({p.written} written, {p.skipped} skipped, {p.failed} failed so far)"
    line = f"\ntagger: stopped at once{counts}; rerun to finish the rest\n"
    try:
        os.write(2, line.encode("utf-8", "replace"))
    except OSError:
        pass
    os._exit(EXIT_INTERRUPTED)


class InterruptWatch:
    """Call ``on_second`` from a thread as soon as a second SIGINT arrives.

    Python runs signal handlers in the main thread between bytecodes, so a handler waits while
    the main thread is inside onnxruntime or torch, and a KeyboardInterrupt raised there then
    waits for the decode threads. The signal module's wakeup fd is written by the C-level
    handler at once: a thread reading it sees each signal when it arrives. ``seen`` counts the
    SIGINTs it saw (it stays 0 where no wakeup fd can be set, outside the main thread).

    The main thread's own handler may see the second SIGINT before this thread has read it
    (when the main thread was running Python code): both call ``fire``, which runs
    ``on_second`` once, whoever comes first.
    """

    def __init__(self, on_second: Callable[[], None]) -> None:
        self.seen = 0
        self._on_second = on_second
        self._fired = threading.Lock()
        self._writer: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._previous = -1
        try:
            reader, writer = socket.socketpair()
        except OSError:
            return
        writer.setblocking(False)
        try:
            self._previous = signal.set_wakeup_fd(writer.fileno(), warn_on_full_buffer=False)
        except (ValueError, OSError):
            reader.close()
            writer.close()
            return
        self._writer = writer
        self._thread = threading.Thread(
            target=self._watch, args=(reader,), name="tagger-interrupt", daemon=True
        )
        self._thread.start()

    def _watch(self, reader: socket.socket) -> None:
        """Read signal numbers until the writer closes; the second SIGINT calls on_second."""
        with reader:
            while True:
                try:
                    data = reader.recv(64)
                except OSError:
                    return
                if not data:  # the writer was closed: the run is over
                    return
                self.seen += data.count(int(signal.SIGINT))
                if self.seen >= 2:
                    self.fire()
                    return

    def fire(self) -> None:
        """Run ``on_second``, the first time only (from any thread; never waits)."""
        if self._fired.acquire(blocking=False):
            self._on_second()

    def stop(self) -> None:
        """Stop watching and put the previous wakeup fd back."""
        if self._writer is None or self._thread is None:
            return
        signal.set_wakeup_fd(self._previous)
        self._writer.close()
        self._thread.join()
        self._writer = None


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


def run_ray_engine(args: argparse.Namespace, config: Any, output_options: Any = None) -> int:
    """Run ``--engine ray`` with a model config (``tag`` and ``caption``); the exit status."""
    from tagger.batch import check_inputs
    from tagger.ray_engine import RayBatchRun, is_uri

    tag_options, batch_options = options_from_args(args)
    if not log.isEnabledFor(logging.INFO):
        _quiet_ray_data()
    local = [path for path in args.paths if not is_uri(path)]
    if local:
        check_inputs(local)
    run = RayBatchRun(
        args.paths,
        config,
        tag_options,
        batch_options,
        output_options=output_options,
        address=args.ray_address,
        parquet=args.parquet,
    )
    return run_prepared(
        run,
        args,
        "interrupt: stopping after the results already received (press Ctrl-C again to stop now)",
        local=local,
    )


# -- logging ------------------------------------------------------------------------------------

_CONSOLE = (sys.stderr, sys.stdout, sys.__stderr__, sys.__stdout__)


def shown_by_its_own_logger(record: logging.LogRecord) -> bool:
    """True when a console handler below the root logger has already printed ``record``.

    Some libraries (huggingface_hub, for one) give their logger its own stderr handler and
    still let records propagate to the root logger, so a root handler would print each of
    their warnings a second time.
    """
    root = logging.getLogger()
    logger: logging.Logger | None = logging.getLogger(record.name)
    while logger is not None and logger is not root:
        for handler in logger.handlers:
            stream = getattr(handler, "stream", None)
            if (
                isinstance(handler, logging.StreamHandler)
                and not isinstance(handler, logging.FileHandler)
                and any(stream is console for console in _CONSOLE if console is not None)
                and record.levelno >= handler.level
            ):
                return True
        if not logger.propagate:
            return False
        logger = logger.parent
    return False


def configure_logging(verbosity: int) -> Callable[[], None]:
    """Print log records on stderr as ``tagger: LEVEL: message``, each once; returns a function
    that puts the logging configuration back as it was.

    ``verbosity`` 0 shows warnings, 1 info, 2 and more debug. Records a library's own console
    handler already printed are not printed again (``shown_by_its_own_logger``).
    """
    level = logging.WARNING - 10 * min(max(verbosity, 0), 2)
    root = logging.getLogger()
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("tagger: %(levelname)s: %(message)s"))
    handler.addFilter(lambda record: not shown_by_its_own_logger(record))
    previous = root.level
    root.addHandler(handler)
    root.setLevel(level)

    def restore() -> None:
        root.removeHandler(handler)
        root.setLevel(previous)

    return restore


def add_verbose_option(parser: argparse.ArgumentParser, dest: str = "verbose") -> None:
    """``-v`` / ``--verbose`` (repeatable), before or after the sub-command."""
    parser.add_argument(
        "-v", "--verbose", dest=dest, action="count", default=0, help="More logging (-vv: debug)."
    )


# -- the parser ---------------------------------------------------------------------------------


class CommandParser(argparse.ArgumentParser):
    """An ArgumentParser that first rewrites kohya-ss spellings (``kohya_spellings``, see
    ``tagger.cli.kohya``) into this tool's flags; a refused one is a usage error (exit 2)."""

    def __init__(self, *args: Any, kohya_spellings: Mapping[str, Any] | None = None, **kw: Any):
        super().__init__(*args, **kw)
        self.kohya_spellings = dict(kohya_spellings or {})

    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        """Translate kohya spellings, then parse; the notes they give are kept in the result's
        ``kohya_notes`` (printed once logging is set up)."""
        if not self.kohya_spellings:
            return super().parse_known_args(args, namespace)
        from tagger.cli.kohya import translate

        argv = sys.argv[1:] if args is None else list(args)
        try:
            argv, notes = translate(argv, self.kohya_spellings)
        except OptionsError as exc:
            self.error(str(exc))
        parsed, extras = super().parse_known_args(argv, namespace)
        parsed.kohya_notes = [*getattr(parsed, "kohya_notes", []), *notes]
        return parsed, extras

    def error(self, message: str) -> NoReturn:
        """A usage error: the message and where the flags are listed (not the whole usage,
        which for ``tagger tag`` runs to forty lines and hides the message); exit status 2."""
        self.exit(2, f"{self.prog}: error: {message}\n(see '{self.prog} --help')\n")


def kohya_epilog(script: str) -> str:
    """The --help footer of a command that reads kohya-ss spellings."""
    return (
        f"kohya-ss {script} spellings (--batch_size, --caption_extension, ...) are accepted "
        "too; docs/kohya.md lists each one and how it differs."
    )


def add_clip_options(parser: argparse.ArgumentParser, *, categories: bool = True) -> None:
    """The ``--clip-*`` flags of the CLIP relevance filter (``tag`` and ``keywords``, which has
    no tag categories)."""
    c = lambda name, note="": describe(ClipFilterOptions, name, note)  # noqa: E731
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
    if categories:
        f.add_argument("--clip-categories", type=tag_list, help=c("categories", "Comma-separated."))
    f.add_argument("--clip-cache", metavar="DIR", help=c("cache_dir"))
