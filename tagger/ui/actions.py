"""What the tab's buttons do, without Gradio: tag one image, count and run a folder, report.

Each function takes plain values and option models and returns plain values, so the webui tab,
the standalone app and the tests share them.
"""

from __future__ import annotations

import html
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tagger.batch import Summary, check_inputs, count_images
from tagger.errors import OptionsError
from tagger.options import BatchOptions, TagOptions, dump, parse
from tagger.registry import ModelSpec, list_models, resolve_model
from tagger.ui.host import Progress, RuntimeSettings

log = logging.getLogger("tagger")

TAGGER_FAMILY = "wd14"


@dataclass
class Interrogation:
    """The result of tagging one image, ready for the result widgets."""

    prompt: str
    rating: dict[str, float]
    character: dict[str, float]
    general: dict[str, float]
    caption: str


def tagger_choices(settings: RuntimeSettings) -> list[str]:
    """Names offered in the tagger picker: local WD14 folders first, then the registry."""
    return [spec.key for spec in list_models(settings.models_dirs) if spec.family == TAGGER_FAMILY]


def captioner_choices(settings: RuntimeSettings) -> list[str]:
    """Names offered in the captioner picker: local captioner folders, then the registry's;
    none when the captioning libraries (torch, transformers) are not installed."""
    import importlib.util

    from tagger.registry import list_captioners

    if any(importlib.util.find_spec(name) is None for name in ("torch", "transformers")):
        return []
    return [spec.key for spec in list_captioners(settings.models_dirs)]


def load_tagger(name: str, settings: RuntimeSettings) -> Any:
    """Resolve and load (or reuse) the named tagger on the configured device."""
    from tagger.cache import get_tagger

    spec: ModelSpec = resolve_model(name or settings.default_model, settings.models_dirs)
    if spec.family != TAGGER_FAMILY:
        raise OptionsError(f"{spec.key!r} is a {spec.family} model, not a tagger")
    return get_tagger(
        spec,
        providers=settings.providers,
        device_id=settings.device_id,
        cache_dir=settings.hf_cache,
        precision=settings.precision,
    )


def caption_image(image: Any, name: str, settings: RuntimeSettings) -> str:
    """Caption one RGB image with the named captioner, on the configured device."""
    from tagger.captioners import get_captioner
    from tagger.captioners.common import torch_device_for
    from tagger.options import CaptionOptions

    options = CaptionOptions(half=settings.half)
    captioner = get_captioner(
        name,
        device=torch_device_for(settings.providers),
        device_id=settings.device_id,
        half=options.half,
        cache_dir=settings.hf_cache,
        models_dirs=settings.models_dirs,
    )
    return captioner.caption([image], options)[0]


def interrogate(
    image: Any,
    model: str,
    captioner: str | None,
    options: TagOptions,
    settings: RuntimeSettings,
) -> Interrogation:
    """Tag (and optionally caption) one image: a PIL image, a path or bytes."""
    from tagger.cache import unload_all
    from tagger.image import load_image
    from tagger.tags import format_tags

    if image is None:
        raise OptionsError("no image: upload, paste or drop an image first")
    rgb = load_image(image)
    try:
        tagger = load_tagger(model, settings)
        result = tagger.tag_batch([rgb], options)[0]
        caption = caption_image(rgb, captioner, settings) if captioner else ""
    finally:
        if settings.unload_after_run:
            unload_all()
    return Interrogation(
        prompt=format_tags(result, options),
        rating=dict(result.rating),
        character=dict(result.character),
        general=dict(result.general),
        caption=caption,
    )


def count_folder(folder: str, recursive: bool) -> int:
    """How many images a batch over ``folder`` would read (raises OptionsError if missing)."""
    text = (folder or "").strip()
    if not text:
        raise OptionsError("no input folder given")
    check_inputs([text])
    return count_images([text], recursive)


def count_text(folder: str, recursive: bool) -> str:
    """The image count as a short sentence for the page (never raises)."""
    if not (folder or "").strip():
        return ""
    try:
        count = count_folder(folder, recursive)
    except OptionsError as exc:
        return str(exc)
    where = "in it and its sub-folders" if recursive else "in it"
    return f"{count} image{'s' if count != 1 else ''} found {where}"


def run_folder(
    folder: str,
    model: str,
    tag_options: TagOptions,
    batch_options: BatchOptions,
    settings: RuntimeSettings,
    progress: Progress,
) -> Summary:
    """Tag every image of ``folder`` and write the outputs; ``progress`` shows and cancels."""
    from tagger.batch import BatchRun
    from tagger.cache import unload_all

    total = count_folder(folder, batch_options.recursive)
    if batch_options.batch_size == 0 and settings.batch_size:
        # The Settings page's batch size applies when the tab leaves it at 0 (automatic).
        batch_options = parse(
            BatchOptions, {**dump(batch_options), "batch_size": settings.batch_size}
        )
    tagger = load_tagger(model, settings)
    progress.begin(total, f"Tagging {total} images in {folder}")
    try:
        run = BatchRun(
            [folder.strip()],
            tagger,
            tag_options,
            batch_options,
            progress=progress.update,
            cancel=progress.cancel,
            total=total,
        )
        summary = run.run()
    finally:
        progress.end()
        if settings.unload_after_run:
            unload_all()
    log.info(
        "batch %s: %d found, %d written, %d skipped, %d failed%s",
        folder,
        summary.found,
        summary.written,
        summary.skipped,
        summary.failed_count,
        " (interrupted)" if summary.cancelled else "",
    )
    return summary


def summary_html(summary: Summary, top: int = 20) -> str:
    """The end-of-run report for the page: counts, most frequent tags, failures with reasons."""
    state = "Interrupted" if summary.cancelled else "Done"
    where = ", ".join(p.replace("ExecutionProvider", "") for p in summary.providers) or "-"
    parts = [
        f"<div class='tagger_summary'><p class='tagger_summary_counts'><b>{state}</b>: "
        f"{summary.found} found, {summary.written} written, {summary.skipped} skipped, "
        f"{summary.failed_count} failed in {summary.elapsed:.1f}s "
        f"({summary.images_per_second:.2f} images/s, batch {summary.batch_size}, on "
        f"{html.escape(where)})</p>"
    ]
    if summary.tag_counts:
        items = "".join(
            f"<li><span class='tagger_tag'>{html.escape(name)}</span> {count}</li>"
            for name, count in summary.most_common(top)
        )
        parts.append(f"<p>Most frequent tags:</p><ol class='tagger_top_tags'>{items}</ol>")
    if summary.failed_count:
        items = "".join(
            f"<li><code>{html.escape(path)}</code>: {html.escape(reason)}</li>"
            for path, reason in summary.failed[:200]
        )
        more = summary.failed_count - min(len(summary.failed), 200)
        tail = f"<li>... and {more} more (see the console)</li>" if more > 0 else ""
        parts.append(
            f"<p>Failed ({summary.failed_count}):</p><ul class='tagger_failures'>{items}{tail}</ul>"
        )
    parts.append("</div>")
    return "".join(parts)


def error_html(exc: BaseException) -> str:
    """An error for the info box."""
    text = f"{type(exc).__name__}: {exc}"
    return f"<div class='tagger_error'>{html.escape(text)}</div>"


def output_folder_text(folder: str, batch_options: BatchOptions) -> str:
    """Where the captions of a batch go, in words."""
    if batch_options.output_dir:
        return str(Path(batch_options.output_dir))
    return f"beside the images in {folder}"
