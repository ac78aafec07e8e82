"""What the tab's buttons do, without Gradio: tag one image, count and run a folder, report.

Each function takes plain values and option models and returns plain values, so the webui tab,
the standalone app and the tests share them.
"""

from __future__ import annotations

import html
import importlib.util
import logging
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tagger.batch import Summary, check_inputs, count_images
from tagger.errors import ModelFilesMissingError, OptionsError
from tagger.options import BatchOptions, TagOptions, dump, parse
from tagger.registry import ModelSpec, list_models, resolve_model
from tagger.ui.host import Progress, RuntimeSettings

log = logging.getLogger("tagger")

TAGGER_FAMILY = "wd14"
#: The libraries each captioner family imports (all in the ``caption`` extra).
CAPTIONER_LIBRARIES = {
    "blip": ("torch", "transformers"),
    "clipcap": ("torch", "transformers", "open_clip"),
    "sbg": ("torch", "transformers", "open_clip"),
    "clip-interrogator": ("torch", "transformers", "open_clip"),
}


@dataclass
class Interrogation:
    """The result of tagging one image, ready for the result widgets."""

    prompt: str
    rating: dict[str, float]
    character: dict[str, float]
    general: dict[str, float]
    caption: str


def tagger_choices(settings: RuntimeSettings) -> list[str]:
    """Names offered in the tagger picker: local tagger folders first, then the registry."""
    from tagger.families import is_tagger_family

    return [spec.key for spec in list_models(settings.models_dirs) if is_tagger_family(spec.family)]


def library_available(name: str) -> bool:
    """True when the top-level module ``name`` is imported already or can be found (without
    importing it). A module set to None in ``sys.modules`` (a blocked import) or whose lookup
    fails (an import hook refusing it, a broken install) counts as absent."""
    if name in sys.modules:
        return sys.modules[name] is not None
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def missing_libraries(family: str) -> list[str]:
    """The libraries a captioner family needs that are not available.

    >>> missing_libraries("no-such-family") == [n for n in ("torch", "transformers")
    ...     if not library_available(n)]
    True
    """
    needed = CAPTIONER_LIBRARIES.get(family, CAPTIONER_LIBRARIES["blip"])
    return [name for name in needed if not library_available(name)]


def captioner_choices(settings: RuntimeSettings) -> list[str]:
    """Names offered in the captioner picker: local captioner folders, then the registry's,
    each only when the libraries its family imports are available (none without torch and
    transformers: the tab then hides the picker and the caption box)."""
    from tagger.registry import list_captioners

    usable = {family: not missing_libraries(family) for family in CAPTIONER_LIBRARIES}
    if not any(usable.values()):
        return []
    return [
        spec.key
        for spec in list_captioners(settings.models_dirs)
        if usable.get(spec.family, not missing_libraries(spec.family))
        and spec.family != "vlm-api"  # an endpoint needs the VLM panel's options
    ]


def models_folders_text(settings: RuntimeSettings) -> str:
    """The folders the tab looks for model folders in, for a message."""
    folders = [str(folder) for folder in settings.models_dirs]
    return ", ".join(folders) if folders else "(none configured)"


def missing_reason(exc: BaseException) -> str:
    """Why a download could not happen, in a few words."""
    from tagger.hub import is_offline

    if is_offline():
        return "HF_HUB_OFFLINE is set"
    cause = exc.__cause__
    if cause is not None and str(cause):
        return f"{type(cause).__name__}: {str(cause).splitlines()[0]}"
    return "no network access"


def missing_model_message(
    kind: str, spec: ModelSpec, settings: RuntimeSettings, exc: BaseException
) -> str:
    """What to do in the tab when a registry model's files are neither on disk nor downloadable.

    The core's message speaks of command-line flags; in the tab a model is a folder inside one
    of the models folders (picked after "Refresh models"), or a download with network access.
    """
    from tagger.hub import hf_cache_dir

    folders = models_folders_text(settings)
    files = " and ".join(spec.files)
    place = (
        f"in a folder named {spec.key} inside one of the models folders ({folders}), "
        "then press Refresh models and pick it"
    )
    if spec.repo_id is None:
        return f"{kind} {spec.key!r} has no download: put {files} {place}."
    source = f"https://huggingface.co/{spec.repo_id} (revision {spec.revision})"
    if kind == "tagger":
        put = f"put {files} from {source} {place}"
    else:
        put = f"save {source} as docs/captioners.md says, {place}"
    cache = hf_cache_dir(settings.hf_cache) or "the Hugging Face cache (HF_HOME)"
    return (
        f"{kind} {spec.key!r} is not on disk and cannot be downloaded ({missing_reason(exc)}). "
        f"Either {put}; or let it download once with network access, into {cache}."
    )


def load_tagger(name: str, settings: RuntimeSettings) -> Any:
    """Resolve and load (or reuse) the named tagger on the configured device."""
    from tagger.cache import get_tagger

    spec: ModelSpec = resolve_model(name or settings.default_model, settings.models_dirs)
    from tagger.families import is_tagger_family

    if not is_tagger_family(spec.family):
        raise OptionsError(f"{spec.key!r} is a {spec.family} model, not a tagger")
    try:
        return get_tagger(
            spec,
            providers=settings.providers,
            device_id=settings.device_id,
            cache_dir=settings.hf_cache,
            precision=settings.precision,
        )
    except ModelFilesMissingError as exc:
        if spec.path is not None:  # a local folder: the core's message names its files
            raise
        raise ModelFilesMissingError(missing_model_message("tagger", spec, settings, exc)) from exc


def caption_image(image: Any, name: str, settings: RuntimeSettings) -> str:
    """Caption one RGB image with the named captioner, on the configured device."""
    from tagger.captioners import get_captioner
    from tagger.options import CaptionOptions
    from tagger.registry import resolve_captioner

    options = CaptionOptions(half=settings.half)
    spec = resolve_captioner(name, settings.models_dirs)
    try:
        captioner = get_captioner(spec, **settings.torch_model_kwargs())
    except ModelFilesMissingError as exc:
        if spec.path is not None:
            raise
        raise ModelFilesMissingError(
            missing_model_message("captioner", spec, settings, exc)
        ) from exc
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
        general={  # further categories (copyright, artist, meta...) shown with the general tags
            **result.general,
            **{n: v for c, g in result.other.items() if c != "quality" for n, v in g.items()},
        },
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
    from tagger.batch import BatchRun, DeferredModel
    from tagger.cache import unload_all

    if not (folder or "").strip():
        raise OptionsError("no input folder given")
    check_inputs([folder.strip()])
    if batch_options.batch_size == 0 and settings.batch_size:
        # The Settings page's batch size applies when the tab leaves it at 0 (automatic).
        batch_options = parse(
            BatchOptions, {**dump(batch_options), "batch_size": settings.batch_size}
        )
    resolve_model(model or settings.default_model, settings.models_dirs)  # unknown: stops here
    run = BatchRun(
        [folder.strip()],
        DeferredModel(lambda: load_tagger(model, settings)),  # loaded once the run is planned
        tag_options,
        batch_options,
        progress=progress.update,
        cancel=progress.cancel,
    )
    total = run.prepare().total  # outputs that cannot be written stop here, before any model
    progress.begin(total, f"Tagging {total} images in {folder}")
    try:
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


def doctor_text() -> str:
    """``tagger doctor``'s report (onnxruntime build and providers, the CUDA/cuDNN libraries its
    CUDA provider needs and where each resolves, torch's CUDA/cuDNN, the fix), as text."""
    from tagger.doctor import collect

    return collect().format()
