"""What the tab's VLM panel does, without Gradio: options from the panel's values, one image,
a folder with the host's progress bar, and the reports.

The panel's values arrive as a ``PanelValues``; ``vlm_options`` turns them into ``VlmOptions``
(the prompt box's text becomes the template when it differs from the built-in one chosen). Under
the webui's ``--hide-ui-dir-config`` (``folders_disabled``) only the known endpoints, with their
usual key variables, may be used: the tab then names no server variable of its own.
"""

from __future__ import annotations

import html
import logging
from dataclasses import dataclass
from typing import Any

from tagger.errors import OptionsError
from tagger.options import BatchOptions, CaptionOptions, OutputOptions, TagOptions, dump, parse
from tagger.registry import VLM_API_KEY
from tagger.ui.host import Progress, RuntimeSettings
from tagger.vlm.options import ENDPOINTS, VlmOptions
from tagger.vlm.templates import BUILTIN, FIELDS, resolve_template

log = logging.getLogger("tagger")

BACKENDS = ("OpenAI-compatible endpoint", "Local model")
FIELDS_HELP = (
    "Fields: "
    + ", ".join(f"{{{name}}}" for name in FIELDS)
    + (". A line whose fields are all empty is left out; {{ and }} are literal braces.")
)


@dataclass
class PanelValues:
    """The VLM panel's widget values."""

    backend: str = BACKENDS[0]
    url: str = ""
    model: str = ""
    key_env: str = ""
    local_model: str = ""
    template: str = "dense"
    prompt: str = ""
    system: str = ""
    task: str = ""
    max_tokens: float = 400
    temperature: float | None = None
    concurrency: float = 4
    rpm: float = 0
    tpm: float = 0
    price_input: float | None = None
    price_output: float | None = None
    use_tags: bool = True
    trigger: str = ""


def local_vlm_choices(settings: RuntimeSettings) -> list[str]:
    """Local VLM folders and the registry's local VLMs (not the endpoint captioner)."""
    from tagger.registry import list_captioners
    from tagger.vlm import is_vlm_family

    return [
        spec.key
        for spec in list_captioners(settings.models_dirs)
        if is_vlm_family(spec.family) and spec.family != "vlm-api"
    ]


def template_texts(name: str) -> tuple[str, str]:
    """(user prompt, system prompt) of a built-in template, for the panel's boxes."""
    template = BUILTIN.get(name) or BUILTIN["dense"]
    return template.user, template.system


def _number(value: Any) -> float | None:
    """A number box's value (None when empty)."""
    if value is None or value == "":
        return None
    return float(value)


def vlm_options(values: PanelValues, folders_disabled: str = "") -> VlmOptions:
    """``VlmOptions`` from the panel (OptionsError naming the bad value)."""
    user, system = template_texts(values.template)
    data: dict[str, Any] = {
        "template": values.template if values.template in BUILTIN else "dense",
        "max_tokens": int(_number(values.max_tokens) or 400),
        "concurrency": int(_number(values.concurrency) or 1),
        "rpm": _number(values.rpm) or 0.0,
        "tpm": _number(values.tpm) or 0.0,
        "trigger": (values.trigger or "").strip(),
    }
    prompt = (values.prompt or "").strip()
    if prompt and prompt != user.strip():
        data["prompt"] = prompt
    if (values.system or "").strip() != system.strip():
        data["system_prompt"] = values.system or ""
    for name in ("temperature", "price_input", "price_output"):
        number = _number(getattr(values, name))
        if number is not None:
            data[name] = number
    if (values.task or "").strip():
        data["task"] = values.task.strip()
    if values.backend == BACKENDS[0]:
        url, env = (values.url or "").strip(), (values.key_env or "").strip()
        if folders_disabled and (url.lower() not in ENDPOINTS or env):
            raise OptionsError(
                f"only the known endpoints ({', '.join(ENDPOINTS)}) with their usual key "
                f"variables can be used here: {folders_disabled}"
            )
        data.update(url=url or None, model=(values.model or "").strip() or None)
        data["key_env"] = env or None
    try:
        options = parse(VlmOptions, data)
    except Exception as exc:
        if type(exc).__name__ == "ValidationError":
            raise OptionsError(f"invalid VLM options: {exc}") from None
        raise
    resolve_template(options.template, options.prompt, options.system_prompt, options.reply)
    return options


def captioner_name(values: PanelValues) -> str:
    """The captioner the panel runs."""
    if values.backend == BACKENDS[0]:
        return VLM_API_KEY
    if not (values.local_model or "").strip():
        raise OptionsError("pick a local model (or choose the endpoint backend)")
    return values.local_model.strip()


def load_vlm(values: PanelValues, settings: RuntimeSettings, folders_disabled: str = "") -> Any:
    """The panel's captioner (cached; loaded)."""
    from tagger.captioners import get_captioner
    from tagger.registry import resolve_captioner

    spec = resolve_captioner(captioner_name(values), settings.models_dirs)
    return get_captioner(
        spec, vlm=vlm_options(values, folders_disabled), **settings.torch_model_kwargs()
    )


def caption_one(
    image: Any,
    tagger_name: str,
    values: PanelValues,
    tag_options: TagOptions,
    settings: RuntimeSettings,
    folders_disabled: str = "",
) -> Any:
    """Caption one image (a ``VlmCaption``), tag-guided with the tab's tagger when asked."""
    from tagger.image import load_image
    from tagger.ui.actions import load_tagger

    if image is None:
        raise OptionsError("no image: upload, paste or drop an image first")
    rgb = load_image(image)
    captioner = load_vlm(values, settings, folders_disabled)
    tags = None
    if values.use_tags and captioner.wants_tags:
        tags = load_tagger(tagger_name, settings).tag_batch([rgb], tag_options)[0]
    return captioner.caption_image(rgb, tags=tags, tag_options=tag_options, fields={})


def run_folder(
    folder: str,
    tagger_name: str,
    values: PanelValues,
    tag_options: TagOptions,
    batch_options: BatchOptions,
    settings: RuntimeSettings,
    progress: Progress,
    folders_disabled: str = "",
) -> Any:
    """Caption every image of ``folder`` with the VLM (tag-guided: the tab's tagger runs in the
    same pass and its tags are written too, beside the captions); returns the ``Summary``."""
    from tagger.batch import BatchRun, DeferredModel, check_inputs
    from tagger.interrogate import Interrogator
    from tagger.ui.actions import load_tagger

    text = (folder or "").strip()
    if not text:
        raise OptionsError("no input folder given")
    check_inputs([text])
    captioner = load_vlm(values, settings, folders_disabled)  # bad options stop here
    guided = bool(values.use_tags and captioner.wants_tags)
    if batch_options.caption_extension == ".txt" and not guided:
        batch_options = parse(
            BatchOptions, {**dump(batch_options), "caption_extension": ".caption"}
        )

    def build() -> Any:
        tagger = load_tagger(tagger_name, settings) if guided else None
        return Interrogator(tagger, captioner, CaptionOptions(), tag_options=tag_options)

    run = BatchRun(
        [text],
        DeferredModel(build, ("tags", "caption") if guided else ("caption",)),
        tag_options,
        batch_options,
        progress=progress.update,
        cancel=progress.cancel,
        output_options=OutputOptions(template="separate"),
    )
    total = run.prepare().total
    progress.begin(total, f"VLM captions for {total} images in {text}")
    try:
        return run.run()
    finally:
        progress.end()


def caption_html(result: Any) -> str:
    """The info box after one image: the prompt sent, the tokens, or why there is no caption."""
    from tagger.vlm.usage import usage_line

    parts = []
    if result.failure:
        parts.append(f"<p class='tagger_error'>No caption: {html.escape(result.failure)}</p>")
    parts.append(
        "<details class='tagger_vlm_prompt'><summary>Prompt sent</summary>"
        f"<pre>{html.escape(result.prompt)}</pre></details>"
    )
    line = usage_line(result.usage)
    if line:
        parts.append(f"<p class='tagger_vlm_usage'>{html.escape(line)}</p>")
    return "<div class='tagger_vlm_result'>" + "".join(parts) + "</div>"


def summary_html(summary: Any) -> str:
    """The end-of-run report: the tab's, plus the tokens and cost."""
    from tagger.ui.actions import summary_html as tag_summary
    from tagger.vlm.usage import usage_line

    line = usage_line(summary.usage)
    extra = f"<p class='tagger_vlm_usage'>{html.escape(line)}</p>" if line else ""
    return tag_summary(summary) + extra
