"""The CLIP Interrogator's part of the Tagger tab: Prompt (with the caption's BLIP ITM score and
Send to txt2img / img2img), Analyze, and Batch, as clip-interrogator-ext offers them.

The plain functions (``interrogate``, ``analyze``, ``score_caption``, ``run_folder``, the
choice lists) take values and option models and need no Gradio; ``InterrogatorUI`` lays out
the widgets (Gradio 3.41 and 4.x) and wires them to those functions. Model work goes through
the host's ``wrap_gpu`` (the webui's queue lock), as the rest of the tab.
"""

from __future__ import annotations

import html
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tagger.errors import ModelFilesMissingError, OptionsError, TaggerError
from tagger.interrogator.options import (
    CATEGORIES,
    DEFAULT_CAPTION_MODEL,
    DEFAULT_CLIP,
    NO_CAPTION,
    InterrogatorOptions,
)
from tagger.options import BatchOptions, CaptionOptions, dump, parse
from tagger.ui.host import Progress, RuntimeSettings

log = logging.getLogger("tagger")

PROMPT_MODES = ("best", "fast", "classic", "negative")
BATCH_MODES = ("caption", "best", "fast", "classic", "negative")
#: The CLIP models clip-interrogator-ext recommends (SD 1.x, SD 2.x, SDXL), offered first.
RECOMMENDED_CLIP = (
    "ViT-L-14/openai",
    "ViT-H-14/laion2b_s32b_b79k",
    "ViT-bigG-14/laion2b_s39b_b160k",
)
ANALYZE_LABELS = (
    ("medium", "Medium"),
    ("artist", "Artist"),
    ("movement", "Movement"),
    ("trending", "Trending"),
    ("flavor", "Flavor"),
)
#: What the batch writes unless told otherwise: clip-interrogator-ext's <stem>.txt.
BATCH_EXTENSION = ".txt"


# -- plain functions ------------------------------------------------------------------------


def available() -> bool:
    """True when the interrogator's libraries can be imported (torch, transformers, open_clip)."""
    from tagger.ui.actions import library_available

    return all(library_available(name) for name in ("torch", "transformers", "open_clip"))


def clip_choices(settings: RuntimeSettings) -> list[str]:
    """CLIP models to offer: CLIP folders in the models folders, the recommended ones, then
    every open_clip pretrained model."""
    from tagger.captioners.openclip import CLIP_CONFIG

    local = [
        child.name
        for folder in settings.models_dirs
        if Path(folder).is_dir()
        for child in sorted(Path(folder).iterdir())
        if (child / CLIP_CONFIG).is_file()
    ]
    rest: list[str] = []
    try:
        import open_clip

        rest = ["/".join(pair) for pair in open_clip.list_pretrained()]
    except ImportError:
        pass
    return list(dict.fromkeys([*local, *RECOMMENDED_CLIP, *rest]))


def caption_model_choices(settings: RuntimeSettings) -> list[str]:
    """Captioners for the caption part ('none' first)."""
    from tagger.ui.actions import captioner_choices

    return [NO_CAPTION, *(c for c in captioner_choices(settings) if c != "clip-interrogator")]


def scorer_choices(settings: RuntimeSettings) -> list[str]:
    """BLIP image-text matching models: local folders, then the registry's."""
    from tagger.scoring.itm import itm_models

    return [spec.key for spec in itm_models(settings.models_dirs)]


def build_options(
    mode: str, clip_model: str, caption_model: str, skip: Sequence[str] | None
) -> InterrogatorOptions:
    """The interrogator's options from the widgets (raises OptionsError on a bad value)."""
    try:
        return parse(
            InterrogatorOptions,
            {
                "mode": mode or "best",
                "clip_model": (clip_model or DEFAULT_CLIP).strip(),
                "caption_model": (caption_model or NO_CAPTION).strip(),
                "skip_categories": list(skip or []),
            },
        )
    except Exception as exc:
        if type(exc).__name__ == "ValidationError":
            raise OptionsError(f"invalid interrogator options: {exc}") from exc
        raise


def get_interrogator(
    options: InterrogatorOptions, settings: RuntimeSettings, *, allow_paths: bool = True
) -> Any:
    """The loaded interrogator on the configured device (``allow_paths`` False: CLIP and
    caption models only by name, as when the host hides its folders)."""
    from tagger.captioners import get_captioner
    from tagger.interrogator.captioner import interrogator_spec
    from tagger.registry import resolve_captioner

    spec = interrogator_spec(
        resolve_captioner("clip-interrogator", settings.models_dirs),
        options,
        models_dirs=settings.models_dirs,
        allow_paths=allow_paths,
    )
    return get_captioner(spec, **settings.torch_model_kwargs())


def _image(image: Any) -> Any:
    """An RGB PIL image from what the image widget holds."""
    from tagger.image import load_image

    if image is None:
        raise OptionsError("no image: upload, paste or drop an image first")
    return load_image(image)


def interrogate(
    image: Any, options: InterrogatorOptions, settings: RuntimeSettings, *, allow_paths: bool = True
) -> dict[str, Any]:
    """One image's prompt and the caption part's caption."""
    from tagger.cache import unload_all

    rgb = _image(image)
    try:
        record = get_interrogator(options, settings, allow_paths=allow_paths).interrogate(
            [rgb], CaptionOptions(half=settings.half)
        )[0]
    finally:
        if settings.unload_after_run:
            unload_all()
    return {"prompt": record["prompt"], "caption": record["caption"]}


def analyze(
    image: Any, options: InterrogatorOptions, settings: RuntimeSettings, *, allow_paths: bool = True
) -> dict[str, dict[str, float]]:
    """One image's Analyze (the top 5 of each bank)."""
    return get_interrogator(options, settings, allow_paths=allow_paths).analyze(_image(image))


def score_caption(
    image: Any, caption: str, model: str, settings: RuntimeSettings
) -> dict[str, float]:
    """The caption's BLIP ITM probability and ITC cosine."""
    from tagger.scoring import get_scorer

    if not caption.strip():
        raise OptionsError("no caption to score")
    scorer = get_scorer(model, **settings.torch_model_kwargs())
    score = scorer.score_images([_image(image)], [[caption.strip()]])[0][0]
    return {"itm": score.itm, "itc": score.itc}


def run_folder(
    folder: str,
    options: InterrogatorOptions,
    batch_options: BatchOptions,
    settings: RuntimeSettings,
    progress: Progress,
) -> Any:
    """Write every image's prompt in ``folder`` (the batch engine: planned, resumable, each
    failure reported); returns the run's ``Summary``."""
    from tagger.batch import BatchRun, DeferredModel, check_inputs
    from tagger.cache import unload_all
    from tagger.interrogate import Interrogator

    text = (folder or "").strip()
    if not text:
        raise OptionsError("no input folder given")
    check_inputs([text])
    caption_options = CaptionOptions(half=settings.half)
    run = BatchRun(
        [text],
        DeferredModel(
            lambda: Interrogator(None, get_interrogator(options, settings), caption_options),
            ("caption",),
        ),
        None,
        batch_options,
        progress=progress.update,
        cancel=progress.cancel,
    )
    total = run.prepare().total
    progress.begin(total, f"CLIP Interrogator: {total} images in {text}")
    try:
        return run.run()
    finally:
        progress.end()
        if settings.unload_after_run:
            unload_all()


def score_html(score: dict[str, float], model: str) -> str:
    """The caption's score for the page.

    >>> score_html({"itm": 0.8731, "itc": 0.4122}, "itm")
    "<div class='tagger_ci_score'>ITM <b>0.873</b> · ITC 0.412 <span>(itm)</span></div>"
    """
    return (
        f"<div class='tagger_ci_score'>ITM <b>{score['itm']:.3f}</b> · ITC {score['itc']:.3f} "
        f"<span>({html.escape(model)})</span></div>"
    )


def friendly(exc: BaseException, settings: RuntimeSettings) -> BaseException:
    """The tab's wording for files that are neither on disk nor downloadable."""
    if isinstance(exc, ModelFilesMissingError):
        from tagger.ui.actions import models_folders_text

        return ModelFilesMissingError(
            f"{exc} In the tab: put model folders in one of the models folders "
            f"({models_folders_text(settings)}) and press Refresh models."
        )
    return exc


# -- the widgets ------------------------------------------------------------------------------


class InterrogatorUI:
    """Builds the CLIP Interrogator section inside the current Blocks and wires it."""

    def __init__(self, host: Any) -> None:
        self.host = host
        self.widgets: dict[str, Any] = {}
        self.batch_widgets: dict[str, Any] = {}
        #: Models may be named by path unless the host hides its folders.
        self.allow_paths = not host.folders_disabled

    def build(self) -> dict[str, Any]:
        """Lay out the section; returns its components by key."""
        import gradio as gr

        from tagger.ui.blocks import make_widget
        from tagger.ui.form import field_specs

        settings = self.host.settings()
        w = self.widgets
        shown = available()
        custom = _custom_values(gr.Dropdown)
        with gr.Accordion("CLIP Interrogator", open=False, visible=shown, elem_id="tagger_ci"):
            with gr.Row():
                w["image"] = gr.Image(label="Image", type="pil", elem_id="tagger_ci_image")
                with gr.Column():
                    w["mode"] = gr.Radio(
                        list(PROMPT_MODES), value="best", label="Mode", elem_id="tagger_ci_mode"
                    )
                    w["clip_model"] = gr.Dropdown(
                        clip_choices(settings) if shown else [DEFAULT_CLIP],
                        value=DEFAULT_CLIP,
                        label="CLIP model",
                        elem_id="tagger_ci_clip_model",
                        **custom,
                    )
                    captions = caption_model_choices(settings) if shown else [NO_CAPTION]
                    w["caption_model"] = gr.Dropdown(
                        captions,
                        value=DEFAULT_CAPTION_MODEL
                        if DEFAULT_CAPTION_MODEL in captions
                        else NO_CAPTION,
                        label="Caption model",
                        elem_id="tagger_ci_caption_model",
                        **custom,
                    )
                    w["skip"] = gr.CheckboxGroup(
                        list(CATEGORIES), value=[], label="Leave out", elem_id="tagger_ci_skip"
                    )
            with gr.Tabs(elem_id="tagger_ci_tabs"):
                with gr.Tab("Prompt", elem_id="tagger_ci_prompt_tab"):
                    w["generate"] = gr.Button(
                        "Generate", variant="primary", elem_id="tagger_ci_generate"
                    )
                    w["prompt"] = gr.Textbox(label="Prompt", lines=3, elem_id="tagger_ci_prompt")
                    if self.host.send_to is not None:
                        w["paste_text"] = gr.Textbox(visible=False, elem_id="tagger_ci_paste_text")
                        with gr.Row(elem_id="tagger_ci_send_to"):
                            self.host.send_to(w["paste_text"], w["image"])
                    with gr.Row():
                        w["caption"] = gr.Textbox(
                            label="Caption", lines=1, elem_id="tagger_ci_caption"
                        )
                        w["score"] = gr.HTML("", elem_id="tagger_ci_score")
                    with gr.Row():
                        w["score_caption"] = gr.Checkbox(
                            label="Score the caption (BLIP image-text matching)",
                            value=False,
                            elem_id="tagger_ci_score_caption",
                        )
                        scorers = scorer_choices(settings) if shown else []
                        w["scorer"] = gr.Dropdown(
                            scorers,
                            value=scorers[0] if scorers else None,
                            label="ITM model",
                            elem_id="tagger_ci_scorer",
                            **custom,
                        )
                with gr.Tab("Analyze", elem_id="tagger_ci_analyze_tab"):
                    w["analyze"] = gr.Button(
                        "Analyze", variant="primary", elem_id="tagger_ci_analyze"
                    )
                    with gr.Row():
                        for key, label in ANALYZE_LABELS:
                            w[f"analyze_{key}"] = gr.Label(
                                label=label, num_top_classes=5, elem_id=f"tagger_ci_{key}"
                            )
                with gr.Tab("Batch", elem_id="tagger_ci_batch_tab"):
                    refused = self.host.folders_disabled
                    w["batch_note"] = gr.Markdown(
                        f"Batch from folder is not available: {refused}." if refused else "",
                        visible=bool(refused),
                    )
                    w["input_dir"] = gr.Textbox(
                        label="Input folder", visible=not refused, elem_id="tagger_ci_input_dir"
                    )
                    w["batch_mode"] = gr.Radio(
                        list(BATCH_MODES),
                        value="fast",
                        label="Mode",
                        elem_id="tagger_ci_batch_mode",
                    )
                    keys = (
                        "recursive",
                        "output_dir",
                        "caption_extension",
                        "on_existing",
                        "write_json",
                    )
                    for spec in field_specs(BatchOptions):
                        if spec.key in keys:
                            value = BATCH_EXTENSION if spec.key == "caption_extension" else None
                            visible = not refused or spec.key != "output_dir"
                            self.batch_widgets[spec.key] = make_widget(
                                spec, "tagger_ci_batch_", value, visible
                            )
                    with gr.Row():
                        w["start"] = gr.Button(
                            "Start",
                            variant="primary",
                            visible=not refused,
                            elem_id="tagger_ci_start",
                        )
                        w["stop"] = gr.Button(
                            "Interrupt", visible=not refused, elem_id="tagger_ci_interrupt"
                        )
                    w["summary"] = gr.HTML("", elem_id="tagger_ci_summary")
            w["info"] = gr.HTML("", elem_id="tagger_ci_info")
        self._wire()
        return w

    def _wire(self) -> None:
        w = self.widgets
        shared = [w["mode"], w["clip_model"], w["caption_model"], w["skip"]]
        prompt_out = [w["prompt"], w["caption"], w["score"], w["info"]]
        generate = self.host.wrap_gpu(self.on_generate, len(prompt_out))
        w["generate"].click(
            generate, [w["image"], *shared, w["score_caption"], w["scorer"]], prompt_out
        )
        if "paste_text" in w:
            w["prompt"].change(
                self.on_prompt_change,
                [w["prompt"], w["mode"], w["clip_model"], w["caption_model"]],
                [w["paste_text"]],
                queue=False,
            )
        labels = [w[f"analyze_{key}"] for key, _ in ANALYZE_LABELS]
        analyze_run = self.host.wrap_gpu(self.on_analyze, len(labels) + 1)
        w["analyze"].click(analyze_run, [w["image"], *shared], [*labels, w["info"]])
        batch = self.host.wrap_gpu(self.on_batch, 1)
        w["start"].click(
            batch,
            [
                w["input_dir"],
                w["batch_mode"],
                w["clip_model"],
                w["caption_model"],
                w["skip"],
                *self.batch_widgets.values(),
            ],
            [w["summary"]],
        )
        w["stop"].click(self.on_interrupt, [], [], queue=False)

    # -- handlers (plain values in, plain values out; the last output is the info HTML) ------
    def on_generate(
        self,
        image: Any,
        mode: str,
        clip_model: str,
        caption_model: str,
        skip: Any,
        score: bool,
        scorer: str,
    ) -> list[Any]:
        """The prompt, the caption and (when asked) its ITM score."""
        import gradio as gr

        settings = self.host.settings()
        try:
            options = build_options(mode, clip_model, caption_model, skip)
            result = interrogate(image, options, settings, allow_paths=self.allow_paths)
            shown = ""
            if score and result["caption"]:
                if not scorer:
                    raise OptionsError("pick an ITM model to score the caption")
                shown = score_html(
                    score_caption(image, result["caption"], scorer, settings), scorer
                )
        except TaggerError as exc:
            from tagger.ui.actions import error_html

            return [gr.update(), gr.update(), gr.update(), error_html(friendly(exc, settings))]
        return [result["prompt"], result["caption"], shown, ""]

    def on_prompt_change(self, prompt: str, mode: str, clip_model: str, caption_model: str) -> str:
        """What Send to txt2img / img2img paste: the prompt, as the host reads it (followed by a
        settings line no txt2img field reads, so that the prompt is pasted exactly)."""
        text = prompt or ""
        if self.host.infotext is None:
            return text
        parameters = {
            "CLIP Interrogator": str(mode or ""),
            "CLIP model": str(clip_model or ""),
            "Caption model": str(caption_model or ""),
        }
        return self.host.infotext(text, parameters)

    def on_analyze(
        self, image: Any, mode: str, clip_model: str, caption_model: str, skip: Any
    ) -> list[Any]:
        """The five Analyze labels ({term: similarity} each)."""
        import gradio as gr

        settings = self.host.settings()
        try:
            options = build_options(mode, clip_model, NO_CAPTION, skip)
            result = analyze(image, options, settings, allow_paths=self.allow_paths)
        except TaggerError as exc:
            from tagger.ui.actions import error_html

            return [*([gr.update()] * len(ANALYZE_LABELS)), error_html(friendly(exc, settings))]
        return [*(result.get(key, {}) for key, _ in ANALYZE_LABELS), ""]

    def on_batch(
        self, folder: str, mode: str, clip_model: str, caption_model: str, skip: Any, *values: Any
    ) -> list[Any]:
        """Run a folder; the output is the summary HTML."""
        from tagger.ui.actions import error_html, summary_html
        from tagger.ui.form import build_options as batch_from_widgets

        settings = self.host.settings()
        if self.host.folders_disabled:
            return [
                error_html(
                    OptionsError(
                        f"batch from folder is not available: {self.host.folders_disabled}"
                    )
                )
            ]
        progress = self.host.new_progress()
        try:
            options = build_options(mode, clip_model, caption_model, skip)
            widgets = dict(zip(self.batch_widgets, values, strict=True))
            batch = batch_from_widgets(BatchOptions, widgets)
            if settings.batch_size and not batch.batch_size:
                batch = parse(BatchOptions, {**dump(batch), "batch_size": settings.batch_size})
            summary = run_folder(folder, options, batch, settings, progress)
        except TaggerError as exc:
            return [error_html(friendly(exc, settings))]
        return [summary_html(summary)]

    def on_interrupt(self) -> None:
        """Stop the running batch after its current model batch."""
        if self.host.interrupt is not None:
            self.host.interrupt()


def _custom_values(component: Any) -> dict[str, Any]:
    """``allow_custom_value=True`` where this Gradio's Dropdown takes it (a name typed in)."""
    import inspect

    if "allow_custom_value" in inspect.signature(component.__init__).parameters:
        return {"allow_custom_value": True}
    return {}


def build_interrogator_ui(host: Any) -> InterrogatorUI:
    """Build the section inside the current Blocks; returns the builder (its ``widgets``)."""
    ui = InterrogatorUI(host)
    ui.build()
    return ui
