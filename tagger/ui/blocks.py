"""The Tagger tab as Gradio blocks, shared by the webui and the standalone app.

Written for Gradio 3.41 (AUTOMATIC1111 1.10) and 4.40 (Forge) alike: plain constructor
arguments, ``gr.update``, ``elem_id``/``elem_classes`` (all prefixed ``tagger_``) and CSS; no
``.style()``. Option widgets are generated from ``TagOptions`` and ``BatchOptions``
(``tagger.ui.form``) and keyed by field name, so presets, the API and the command line share one
vocabulary.
"""

from __future__ import annotations

import html
import inspect
import logging
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import gradio as gr

from tagger.errors import OptionsError, TaggerError
from tagger.options import BatchOptions, TagOptions, dump
from tagger.ui import actions
from tagger.ui.categories import add_category_boxes
from tagger.ui.dataset import build_dataset_tab
from tagger.ui.form import FieldSpec, build_options, field_specs, to_widget
from tagger.ui.host import Host
from tagger.ui.presets import default_presets_dir, list_presets, load_preset, save_preset

log = logging.getLogger("tagger")

GRADIO_MAJOR = int(gr.__version__.split(".", 1)[0])
#: The keyword of an event listener's browser-side function (renamed in Gradio 4).
JS_KWARG = "_js" if GRADIO_MAJOR < 4 else "js"
#: Tag options shown above the accordion.
THRESHOLD_KEYS = ("general_threshold", "character_threshold")
MCUT_KEYS = ("mcut_general", "mcut_character")
MAIN_TAG_KEYS = THRESHOLD_KEYS + MCUT_KEYS
#: Batch options tucked into a closed accordion (tuning, rarely changed).
ADVANCED_BATCH_KEYS = ("batch_size", "workers", "max_pixels", "fast_decode")
#: Batch options that name server paths (hidden with the input folder when the host says so).
FOLDER_KEYS = ("output_dir", "jsonl")
ROOT = Path(__file__).resolve().parents[2]
#: How list and mapping fields are typed into a textbox.
KIND_HINTS = {
    "list": " Comma-separated.",
    "mapping": " Write source,replacement;source2,replacement2 (escape , and ; with \\).",
}


def _supports(component: Any, argument: str) -> bool:
    """True when this Gradio's component constructor takes ``argument``."""
    return argument in inspect.signature(component.__init__).parameters


def make_widget(spec: FieldSpec, prefix: str, value: Any = None, visible: bool = True) -> Any:
    """One Gradio widget for an option field (``elem_id`` = prefix + field name)."""
    value = to_widget(spec, spec.default if value is None else value)
    info = spec.description + KIND_HINTS.get(spec.kind, "")
    common = {
        "label": spec.label,
        "elem_id": f"{prefix}{spec.key}",
        "info": info,
        "visible": visible,
    }
    if spec.kind == "slider":
        return gr.Slider(
            minimum=spec.minimum, maximum=spec.maximum, step=0.01, value=value, **common
        )
    if spec.kind == "number":
        return gr.Number(value=value, precision=0, **common)
    if spec.kind == "checkbox":
        return gr.Checkbox(value=bool(value), **common)
    if spec.kind == "choice":
        return gr.Radio(choices=list(spec.choices), value=value, **common)
    return gr.Textbox(value=value, lines=1, max_lines=4, **common)


class TaggerUI:
    """Builds the tab inside the current ``gr.Blocks`` and wires its events."""

    def __init__(self, host: Host) -> None:
        self.host = host
        self.tag_specs = field_specs(TagOptions)
        self.batch_specs = field_specs(BatchOptions)
        self.widgets: dict[str, Any] = {}
        self.tag_widgets: dict[str, Any] = {}
        self.batch_widgets: dict[str, Any] = {}
        self.presets_dir = host.presets_dir or default_presets_dir()
        self.current_progress: Any = None
        self._single: Callable[..., Any] = self.on_interrogate
        self._batch: Callable[..., Any] = self.on_batch
        self.dataset: Any = None

    # -- option values --------------------------------------------------------------------
    def tag_options(self, values: Sequence[Any]) -> TagOptions:
        """Tag widget values (in ``tag_widgets`` order) as a TagOptions."""
        return build_options(TagOptions, dict(zip(self.tag_widgets, values, strict=True)))

    def batch_options(self, values: Sequence[Any]) -> BatchOptions:
        """Batch widget values (in ``batch_widgets`` order) as a BatchOptions."""
        return build_options(BatchOptions, dict(zip(self.batch_widgets, values, strict=True)))

    # -- layout -----------------------------------------------------------------------------
    def build(self) -> dict[str, Any]:
        """Lay out the tab and wire it; returns the components by key."""
        settings = self.host.settings()
        defaults = {
            "general_threshold": settings.general_threshold,
            "character_threshold": settings.character_threshold,
        }
        w = self.widgets
        with gr.Row(elem_id="tagger_tab", elem_classes=["tagger_tab"]):
            with gr.Column(scale=1, elem_id="tagger_left"):
                with gr.Tabs(elem_id="tagger_modes"):
                    with gr.Tab("Single image", elem_id="tagger_single_tab"):
                        w["image"] = gr.Image(
                            label="Image",
                            type="pil",
                            image_mode="RGBA",
                            elem_id="tagger_image",
                        )
                        with gr.Row():
                            w["interrogate"] = gr.Button(
                                "Interrogate", variant="primary", elem_id="tagger_interrogate"
                            )
                            w["auto_interrogate"] = gr.Checkbox(
                                label="Interrogate when the image changes",
                                value=False,
                                elem_id="tagger_auto_interrogate",
                            )
                    with gr.Tab("Batch from folder", elem_id="tagger_batch_tab"):
                        self._build_batch()
                    with gr.Tab("Dataset", elem_id="tagger_dataset_tab"):
                        self.dataset = build_dataset_tab(self.host)
                self._build_models(settings)
                for row in (THRESHOLD_KEYS, MCUT_KEYS):
                    with gr.Row(elem_classes=["tagger_thresholds"]):
                        for spec in self.tag_specs:
                            if spec.key in row:
                                self.tag_widgets[spec.key] = make_widget(
                                    spec, "tagger_opt_", defaults.get(spec.key)
                                )
                with gr.Accordion("Tag options", open=False, elem_id="tagger_tag_options"):
                    for spec in self.tag_specs:
                        if spec.key not in MAIN_TAG_KEYS:
                            self.tag_widgets[spec.key] = make_widget(spec, "tagger_opt_")
                            if spec.key == "category_thresholds":  # one box per category
                                add_category_boxes(self.tag_widgets[spec.key])
                self._build_presets()
                self._build_doctor()
            with gr.Column(scale=1, elem_id="tagger_results"):
                self._build_results()
        # Keep the declaration order of the model, whatever the layout order.
        self.tag_widgets = {s.key: self.tag_widgets[s.key] for s in self.tag_specs}
        self._wire()
        from tagger.ui.vlm import build_vlm_panel  # VLM captions, below the tab (tagger.vlm)

        self.vlm_panel = build_vlm_panel(self)
        from tagger.ui.interrogator import build_interrogator_ui

        self.interrogator = build_interrogator_ui(self.host)  # its own section, below
        return w

    def _build_batch(self) -> None:
        """The batch panel: folder, count, batch options, Start / Interrupt, summary. When the
        host disallows folders, the folder fields and the buttons are hidden and a note says
        why (the handlers refuse too: a hidden field can still be sent)."""
        w = self.widgets
        refused = self.host.folders_disabled
        folders = not refused
        w["folders_note"] = gr.Markdown(
            f"Batch from folder is not available: {refused}." if refused else "",
            visible=bool(refused),
            elem_id="tagger_folders_note",
        )
        w["input_dir"] = gr.Textbox(
            label="Input folder",
            placeholder="path/to/images",
            visible=folders,
            elem_id="tagger_input_dir",
        )
        w["count"] = gr.Markdown("", elem_id="tagger_count")
        with gr.Group(elem_id="tagger_batch_options"):
            for spec in self.batch_specs:
                if spec.key not in ADVANCED_BATCH_KEYS:
                    visible = folders or spec.key not in FOLDER_KEYS
                    self.batch_widgets[spec.key] = make_widget(spec, "tagger_batch_", None, visible)
        with gr.Accordion("Speed and limits", open=False, elem_id="tagger_batch_advanced"):
            for spec in self.batch_specs:
                if spec.key in ADVANCED_BATCH_KEYS:
                    self.batch_widgets[spec.key] = make_widget(spec, "tagger_batch_")
        self.batch_widgets = {s.key: self.batch_widgets[s.key] for s in self.batch_specs}
        w["task_id"] = gr.Textbox(visible=False, elem_id="tagger_task_id")
        with gr.Row():
            w["start"] = gr.Button(
                "Start", variant="primary", visible=folders, elem_id="tagger_start"
            )
            w["stop"] = gr.Button("Interrupt", visible=folders, elem_id="tagger_interrupt")
        w["batch_progress"] = gr.HTML("", elem_id="tagger_batch_progress")
        w["summary"] = gr.HTML("", elem_id="tagger_summary")

    def _build_models(self, settings: Any) -> None:
        """Tagger and captioner pickers, refresh and unload."""
        w = self.widgets
        taggers = actions.tagger_choices(settings)
        captioners = actions.captioner_choices(settings)
        default = settings.default_model if settings.default_model in taggers else None
        with gr.Row(elem_id="tagger_models"):
            w["model"] = gr.Dropdown(
                choices=taggers,
                value=default or (taggers[0] if taggers else None),
                label="Tagger",
                elem_id="tagger_model",
            )
            w["captioner"] = gr.Dropdown(
                choices=["", *captioners],
                value=settings.default_captioner
                if settings.default_captioner in captioners
                else "",
                label="Captioner",
                visible=bool(captioners),
                elem_id="tagger_captioner",
            )
        with gr.Row(elem_id="tagger_model_buttons"):
            w["refresh"] = gr.Button("Refresh models", elem_id="tagger_refresh")
            w["unload"] = gr.Button("Unload models", elem_id="tagger_unload")

    def _build_presets(self) -> None:
        """Preset picker, name, save and load."""
        w = self.widgets
        with gr.Accordion("Presets", open=False, elem_id="tagger_presets"):
            with gr.Row():
                w["preset"] = gr.Dropdown(
                    choices=list_presets(self.presets_dir),
                    label="Preset",
                    elem_id="tagger_preset",
                )
                w["preset_name"] = gr.Textbox(
                    label="Save as", placeholder="name", elem_id="tagger_preset_name"
                )
            with gr.Row():
                w["preset_load"] = gr.Button("Load preset", elem_id="tagger_preset_load")
                w["preset_save"] = gr.Button("Save preset", elem_id="tagger_preset_save")

    def _build_doctor(self) -> None:
        """The ``tagger doctor`` report: onnxruntime's GPU provider beside torch, and the fix."""
        w = self.widgets
        with gr.Accordion("GPU check (tagger doctor)", open=False, elem_id="tagger_doctor"):
            w["doctor_run"] = gr.Button("Check the GPU setup", elem_id="tagger_doctor_run")
            w["doctor"] = gr.Textbox(
                label="Report",
                lines=12,
                max_lines=40,
                interactive=False,
                show_label=True,
                elem_id="tagger_doctor_report",
            )

    def _build_results(self) -> None:
        """Prompt, send-to, labels, caption and the info box."""
        w = self.widgets
        copy = {"show_copy_button": True} if _supports(gr.Textbox, "show_copy_button") else {}
        w["prompt"] = gr.Textbox(
            label="Prompt",
            lines=4,
            interactive=True,
            elem_id="tagger_prompt",
            **copy,
        )
        if self.host.send_to is not None:
            # What the send-to buttons paste: the prompt as the host reads it (Host.infotext).
            w["paste_text"] = gr.Textbox(visible=False, elem_id="tagger_paste_text")
            with gr.Row(elem_id="tagger_send_to"):
                self.host.send_to(w["paste_text"], w["image"])
        w["caption"] = gr.Textbox(
            label="Caption",
            lines=2,
            visible=bool(actions.captioner_choices(self.host.settings())),
            elem_id="tagger_caption",
            **copy,
        )
        from tagger.ui.keywords import build_keyword_box

        build_keyword_box(self)  # KeyBERT keyphrases of the caption (hidden without keybert)
        w["info"] = gr.HTML("", elem_id="tagger_info")
        w["rating"] = gr.Label(label="Rating", elem_id="tagger_rating")
        w["character"] = gr.Label(
            label="Character tags (click to exclude)", elem_id="tagger_character"
        )
        w["general"] = gr.Label(label="General tags (click to exclude)", elem_id="tagger_general")

    # -- events ------------------------------------------------------------------------------
    def _wire(self) -> None:
        """Connect buttons to handlers."""
        w = self.widgets
        tag_inputs = list(self.tag_widgets.values())
        batch_inputs = list(self.batch_widgets.values())
        results = [w["prompt"], w["rating"], w["character"], w["general"], w["caption"], w["info"]]
        single = self.host.wrap_gpu(self.on_interrogate, len(results))
        self._single = single
        w["interrogate"].click(
            single, [w["image"], w["model"], w["captioner"], *tag_inputs], results
        )
        w["image"].change(
            self.on_image_change,
            [w["image"], w["auto_interrogate"], w["model"], w["captioner"], *tag_inputs],
            results,
        )
        if "paste_text" in w:
            w["prompt"].change(
                self.on_prompt_change,
                [w["prompt"], w["model"], *(self.tag_widgets[key] for key in THRESHOLD_KEYS)],
                [w["paste_text"]],
                queue=False,
            )
        count_inputs = [w["input_dir"], self.batch_widgets["recursive"]]
        for event in (w["input_dir"].blur, w["input_dir"].submit):
            event(self.on_count, count_inputs, [w["count"]], queue=False)
        self.batch_widgets["recursive"].change(
            self.on_count, count_inputs, [w["count"]], queue=False
        )
        batch = self.host.wrap_gpu(self.on_batch, 2)
        self._batch = batch
        w["start"].click(
            self.on_batch_stream if self.host.stream_progress else batch,
            [w["task_id"], w["input_dir"], w["model"], *tag_inputs, *batch_inputs],
            [w["count"], w["summary"]],
            **{JS_KWARG: "tagger_start_batch"},
        )
        w["stop"].click(self.on_interrupt, [], [], queue=False)
        unload = self.host.wrap_gpu(self.on_unload, 1)
        w["unload"].click(unload, [], [w["info"]])
        w["refresh"].click(self.on_refresh, [], self.refresh_outputs(), queue=False)
        option_outputs = [
            w["model"],
            w["captioner"],
            w["auto_interrogate"],
            *tag_inputs,
            *batch_inputs,
        ]
        w["preset_save"].click(
            self.on_preset_save,
            [
                w["preset_name"],
                w["model"],
                w["captioner"],
                w["auto_interrogate"],
                *tag_inputs,
                *batch_inputs,
            ],
            [w["preset"], w["info"]],
        )
        w["preset_load"].click(self.on_preset_load, [w["preset"]], [*option_outputs, w["info"]])
        w["doctor_run"].click(self.on_doctor, [], [w["doctor"]])

    def refresh_outputs(self) -> list[Any]:
        """What "Refresh models" updates: the pickers and the caption box."""
        w = self.widgets
        return [w["model"], w["captioner"], w["caption"]]

    def settings_driven(self) -> list[Any]:
        """The widgets whose initial values come from the host's settings (default tagger and
        captioner, default thresholds)."""
        w = self.widgets
        return [w["model"], w["captioner"], *(self.tag_widgets[key] for key in THRESHOLD_KEYS)]

    def attach_page_load(self, blocks: Any) -> None:
        """On every page load (a browser reload too), list the presets and models on disk now:
        the page's first values were read when the tab was built. Call inside ``blocks``."""
        w = self.widgets
        blocks.load(self.on_page_load, [], [*self.refresh_outputs(), w["preset"]], queue=False)

    def _split(self, values: Sequence[Any]) -> tuple[TagOptions, BatchOptions]:
        """Tag and batch widget values, in that order, as option models."""
        count = len(self.tag_widgets)
        return self.tag_options(values[:count]), self.batch_options(values[count:])

    def on_interrogate(self, image: Any, model: str, captioner: str, *tag_values: Any) -> list[Any]:
        """Tag one image; the last output is the info HTML."""
        keep = [gr.update()] * 5
        try:
            options = self.tag_options(tag_values)
            result = actions.interrogate(image, model, captioner, options, self.host.settings())
        except TaggerError as exc:
            return [*keep, actions.error_html(exc)]
        return [result.prompt, result.rating, result.character, result.general, result.caption, ""]

    def on_image_change(
        self, image: Any, auto: bool, model: str, captioner: str, *tag_values: Any
    ) -> list[Any]:
        """Interrogate on image change when the option is on (only then is the model wrapper,
        with its queue lock, entered)."""
        if not auto or image is None:
            return [gr.update()] * 6
        return list(self._single(image, model, captioner, *tag_values))

    def on_prompt_change(self, prompt: str, model: str, general: float, character: float) -> str:
        """The send-to text for the prompt as it is now (edited or just interrogated)."""
        text = prompt or ""
        if self.host.infotext is None:
            return text
        parameters = {
            "Tagger": str(model or ""),
            "Tagger general threshold": f"{float(general):g}",
            "Tagger character threshold": f"{float(character):g}",
        }
        return self.host.infotext(text, parameters)

    def check_folders(self) -> None:
        """Refuse folder work when the host disallows folders (raises OptionsError)."""
        if self.host.folders_disabled:
            raise OptionsError(f"batch from folder is not available: {self.host.folders_disabled}")

    def on_count(self, folder: str, recursive: bool) -> str:
        """The image count under the folder field (never raises)."""
        try:
            self.check_folders()
        except OptionsError as exc:
            return str(exc)
        return actions.count_text(folder, recursive)

    def on_batch(self, task_id: str, folder: str, model: str, *values: Any) -> list[Any]:
        """Run a folder; outputs: the count line and the summary HTML."""
        try:
            self.check_folders()
        except OptionsError as exc:
            return [gr.update(), actions.error_html(exc)]
        progress = self.host.new_progress()
        self.current_progress = progress
        try:
            tag_options, batch_options = self._split(values)
            total = actions.count_folder(folder, batch_options.recursive)
            summary = actions.run_folder(
                folder, model, tag_options, batch_options, self.host.settings(), progress
            )
        except TaggerError as exc:
            return [gr.update(), actions.error_html(exc)]
        finally:
            self.current_progress = None
        where = html.escape(actions.output_folder_text(folder, batch_options))
        count = f"{total} image{'s' if total != 1 else ''} found; captions written {where}"
        return [count, actions.summary_html(summary)]

    def on_batch_stream(self, *args: Any) -> Iterator[list[Any]]:
        """Run ``on_batch`` (wrapped) in a thread and stream its progress to the count line."""
        box: dict[str, list[Any]] = {}

        def work() -> None:
            box["out"] = list(self._batch(*args))

        worker = threading.Thread(target=work, name="tagger-batch", daemon=True)
        worker.start()
        while worker.is_alive():
            worker.join(0.5)
            progress = self.current_progress
            snapshot = getattr(progress, "latest", None)
            if worker.is_alive() and snapshot is not None:
                yield [progress_text(snapshot), gr.update()]
        yield box.get("out") or [gr.update(), actions.error_html(RuntimeError("the run failed"))]

    def on_interrupt(self) -> None:
        """Stop the running batch after its current model batch."""
        if self.host.interrupt is not None:
            self.host.interrupt()
        elif self.current_progress is not None:
            self.current_progress.cancel.set()

    def on_doctor(self) -> str:
        """The ``tagger doctor`` report as text (the same as the command prints)."""
        from tagger.ui.actions import doctor_text

        return doctor_text()

    def on_unload(self) -> list[str]:
        """Unload every model."""
        from tagger.cache import unload_all

        count = unload_all()
        return [f"<div class='tagger_note'>Unloaded {count} model(s).</div>"]

    def on_refresh(self) -> tuple[Any, Any, Any]:
        """Re-read the model folders (and whether the captioning libraries are there)."""
        settings = self.host.settings()
        captioners = actions.captioner_choices(settings)
        return (
            gr.update(choices=actions.tagger_choices(settings)),
            gr.update(choices=["", *captioners], visible=bool(captioners)),
            gr.update(visible=bool(captioners)),
        )

    def on_page_load(self) -> tuple[Any, ...]:
        """``on_refresh`` and the preset list, for a page (re)load."""
        return (*self.on_refresh(), gr.update(choices=list_presets(self.presets_dir)))

    def on_preset_save(
        self, name: str, model: str, captioner: str, auto: bool, *values: Any
    ) -> list[Any]:
        """Save every option as a preset."""
        try:
            tag_options, batch_options = self._split(values)
            path = save_preset(
                self.presets_dir,
                name,
                model=model,
                captioner=captioner or None,
                auto_interrogate=auto,
                tag_options=tag_options,
                batch_options=batch_options,
            )
        except (TaggerError, OSError) as exc:
            return [gr.update(), actions.error_html(exc)]
        return [
            gr.update(choices=list_presets(self.presets_dir), value=path.stem),
            f"<div class='tagger_note'>Saved preset {html.escape(path.stem)} "
            f"to {html.escape(str(path))}.</div>",
        ]

    def on_preset_load(self, name: str) -> list[Any]:
        """Apply a preset to every option widget."""
        count = 3 + len(self.tag_widgets) + len(self.batch_widgets)
        try:
            preset = load_preset(self.presets_dir, name or "")
        except TaggerError as exc:
            return [*([gr.update()] * count), actions.error_html(exc)]
        tags = dump(preset["tag_options"])
        batch = dump(preset["batch_options"])
        values: list[Any] = [
            preset["model"] or gr.update(),
            preset["captioner"] or "",
            preset["auto_interrogate"],
            *(to_widget(spec, tags[spec.key]) for spec in self.tag_specs),
            *(to_widget(spec, batch[spec.key]) for spec in self.batch_specs),
        ]
        return [*values, f"<div class='tagger_note'>Loaded preset {html.escape(name)}.</div>"]


def progress_text(progress: Any) -> str:
    """A running batch's progress in one line.

    >>> from tagger.batch import Progress
    >>> progress_text(Progress(3, 10, 2, 0, 1, None))
    'Running: 3/10 images (2 written, 0 skipped, 1 failed)'
    """
    total = progress.total if progress.total is not None else "?"
    return (
        f"Running: {progress.done}/{total} images ({progress.written} written, "
        f"{progress.skipped} skipped, {progress.failed} failed)"
    )


def read_asset(name: str) -> str:
    """The text of ``javascript/tagger.js`` or ``style.css`` from the extension folder."""
    return (ROOT / name).read_text(encoding="utf-8")


def build_tagger_ui(host: Host) -> TaggerUI:
    """Build the tab inside the current ``gr.Blocks``; returns the builder (its ``widgets``)."""
    ui = TaggerUI(host)
    ui.build()
    return ui


def wrap_with_lock(lock: Any) -> Callable[[Callable[..., Sequence[Any]], int], Callable[..., Any]]:
    """A ``Host.wrap_gpu`` for the standalone app: hold ``lock``, turn errors into info HTML."""

    def wrap(func: Callable[..., Sequence[Any]], outputs: int) -> Callable[..., Any]:
        def run(*args: Any) -> list[Any]:
            with lock:
                try:
                    return list(func(*args))
                except Exception as exc:
                    log.exception("tagger: %s failed", getattr(func, "__name__", "handler"))
                    return [*([gr.update()] * (outputs - 1)), actions.error_html(exc)]

        run.__name__ = getattr(func, "__name__", "run")
        return run

    return wrap
