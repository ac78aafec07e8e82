"""The tab's VLM captions panel (Gradio 3.41 and 4.40): backend, model, template (editable,
its fields listed), one image or a folder with the host's progress bar.

It sits below the tab's two columns and uses the tab's own widgets for the rest: the image,
the tagger and its tag options (the tags that guide the prompt), the input folder and the batch
options. What the buttons do is ``tagger.ui.vlm_actions`` (no Gradio there).
"""

from __future__ import annotations

import html
import threading
from collections.abc import Iterator
from typing import Any

import gradio as gr

from tagger.errors import TaggerError
from tagger.ui import actions
from tagger.ui import vlm_actions as va
from tagger.ui.blocks import JS_KWARG, _supports
from tagger.vlm.options import ENDPOINTS
from tagger.vlm.templates import BUILTIN

#: The panel's value widgets, in ``PanelValues`` order.
VALUE_KEYS = tuple(va.PanelValues.__dataclass_fields__)


class VlmPanel:
    """Builds the panel under the tab and wires it to the tab's widgets."""

    def __init__(self, ui: Any) -> None:
        self.ui = ui
        self.host = ui.host
        self.widgets: dict[str, Any] = {}
        self._caption = self.on_caption
        self._folder = self.on_folder

    def build(self) -> VlmPanel:
        """Lay out the panel and wire it; returns itself."""
        settings = self.host.settings()
        w = self.widgets
        user, system = va.template_texts("dense")
        with gr.Accordion("Vision-language captions (VLM)", open=False, elem_id="tagger_vlm"):
            w["note"] = gr.Markdown(
                "Dense captions from an OpenAI-compatible endpoint (OpenAI, Gemini, OpenRouter, "
                "vLLM, llama.cpp, Ollama, LM Studio) or a local model, guided by the tagger's "
                "tags. The API key is read from an environment variable of this server; type "
                "its name, never the key. Folder runs write the caption to <stem>.caption and, "
                "when the tags guide it, the tags to the caption extension.",
                elem_id="tagger_vlm_note",
            )
            with gr.Row():
                w["backend"] = gr.Radio(
                    list(va.BACKENDS),
                    value=va.BACKENDS[0],
                    label="Backend",
                    elem_id="tagger_vlm_backend",
                )
                w["use_tags"] = gr.Checkbox(
                    value=True, label="Guide with the tagger's tags", elem_id="tagger_vlm_use_tags"
                )
            with gr.Row():
                w["url"] = gr.Textbox(
                    label="Endpoint",
                    placeholder=f"{', '.join(ENDPOINTS)} or http://host:port/v1",
                    elem_id="tagger_vlm_url",
                )
                w["model"] = gr.Textbox(
                    label="Model at the endpoint",
                    placeholder="gpt-4o-mini",
                    elem_id="tagger_vlm_model",
                )
                w["key_env"] = gr.Textbox(
                    label="Key variable",
                    placeholder="OPENAI_API_KEY (the known endpoints' default)",
                    info="The name of the environment variable that holds the key.",
                    elem_id="tagger_vlm_key_env",
                )
            local = va.local_vlm_choices(settings)
            w["local_model"] = gr.Dropdown(
                choices=local,
                value=local[0] if local else None,
                label="Local model",
                elem_id="tagger_vlm_local_model",
            )
            with gr.Row():
                w["template"] = gr.Dropdown(
                    choices=list(BUILTIN),
                    value="dense",
                    label="Template",
                    elem_id="tagger_vlm_template",
                )
                w["task"] = gr.Textbox(
                    label="Florence-2 task",
                    placeholder="<MORE_DETAILED_CAPTION>",
                    elem_id="tagger_vlm_task",
                )
                w["trigger"] = gr.Textbox(label="Trigger word", elem_id="tagger_vlm_trigger")
            w["prompt"] = gr.Textbox(
                value=user,
                lines=6,
                label="Prompt",
                info=va.FIELDS_HELP,
                elem_id="tagger_vlm_prompt",
            )
            w["system"] = gr.Textbox(
                value=system, lines=2, label="System prompt", elem_id="tagger_vlm_system"
            )
            with gr.Row():
                for key, label, value in (
                    ("max_tokens", "Max tokens", 400),
                    ("temperature", "Temperature (empty: the model's)", None),
                    ("concurrency", "Requests in flight", 4),
                    ("rpm", "Requests per minute (0: no limit)", 0),
                    ("tpm", "Tokens per minute (0: no limit)", 0),
                    ("price_input", "Price / M prompt tokens", None),
                    ("price_output", "Price / M reply tokens", None),
                ):
                    w[key] = gr.Number(value=value, label=label, elem_id=f"tagger_vlm_{key}")
            with gr.Row():
                w["caption_image"] = gr.Button(
                    "Caption the image", variant="primary", elem_id="tagger_vlm_caption_image"
                )
                w["caption_folder"] = gr.Button(
                    "Caption the input folder",
                    visible=not self.host.folders_disabled,
                    elem_id="tagger_vlm_caption_folder",
                )
            copy = {"show_copy_button": True} if _supports(gr.Textbox, "show_copy_button") else {}
            w["caption"] = gr.Textbox(
                label="VLM caption", lines=4, elem_id="tagger_vlm_caption", **copy
            )
            w["info"] = gr.HTML("", elem_id="tagger_vlm_info")
            w["summary"] = gr.HTML("", elem_id="tagger_vlm_summary")
        self._wire()
        return self

    def value_inputs(self) -> list[Any]:
        """The value widgets, in ``PanelValues`` order."""
        return [self.widgets[key] for key in VALUE_KEYS]

    def values(self, raw: Any) -> va.PanelValues:
        """The value widgets' values as ``PanelValues``."""
        return va.PanelValues(**dict(zip(VALUE_KEYS, raw, strict=True)))

    def _wire(self) -> None:
        """Connect the buttons (model work through the host's wrapper)."""
        w, ui = self.widgets, self.ui
        w["template"].change(
            self.on_template, [w["template"]], [w["prompt"], w["system"]], queue=False
        )
        tag_inputs = list(ui.tag_widgets.values())
        values = self.value_inputs()
        count = len(values)
        self._caption = self.host.wrap_gpu(self.on_caption, 2)
        w["caption_image"].click(
            self._caption,
            [ui.widgets["image"], ui.widgets["model"], *values, *tag_inputs],
            [w["caption"], w["info"]],
        )
        self._folder = self.host.wrap_gpu(self.on_folder, 2)
        batch_inputs = list(ui.batch_widgets.values())
        w["caption_folder"].click(  # the task id first: the webui's progress bar polls it
            self.on_folder_stream if self.host.stream_progress else self._folder,
            [
                ui.widgets["task_id"],
                ui.widgets["input_dir"],
                ui.widgets["model"],
                *values,
                *tag_inputs,
                *batch_inputs,
            ],
            [ui.widgets["count"], w["summary"]],
            **{JS_KWARG: "tagger_start_batch"},
        )
        self._counts = (count, len(tag_inputs))

    def on_template(self, name: str) -> tuple[str, str]:
        """The chosen built-in template's texts, into the boxes."""
        return va.template_texts(name)

    def _split(self, raw: tuple[Any, ...]) -> tuple[va.PanelValues, Any, Any]:
        """(panel values, tag options, batch options or None) from a handler's inputs."""
        count, tags = self._counts
        values = self.values(raw[:count])
        tag_options = self.ui.tag_options(raw[count : count + tags])
        rest = raw[count + tags :]
        batch = self.ui.batch_options(rest) if rest else None
        return values, tag_options, batch

    def on_caption(self, image: Any, tagger: str, *raw: Any) -> list[Any]:
        """Caption the tab's image; outputs: the caption and the info HTML."""
        try:
            values, tag_options, _ = self._split(raw)
            result = va.caption_one(
                image,
                tagger,
                values,
                tag_options,
                self.host.settings(),
                self.host.folders_disabled,
            )
        except TaggerError as exc:
            return [gr.update(), actions.error_html(exc)]
        return [result.caption or "", va.caption_html(result)]

    def on_folder(self, task_id: str, folder: str, tagger: str, *raw: Any) -> list[Any]:
        """Caption the input folder; outputs: the count line and the summary HTML
        (``task_id``: the webui's job id, read by its wrapper)."""
        if self.host.folders_disabled:
            return [gr.update(), actions.error_html(TaggerError(self.host.folders_disabled))]
        progress = self.host.new_progress()
        self.ui.current_progress = progress  # the tab's Interrupt stops this run too
        try:
            values, tag_options, batch = self._split(raw)
            summary = va.run_folder(
                folder,
                tagger,
                values,
                tag_options,
                batch,
                self.host.settings(),
                progress,
                self.host.folders_disabled,
            )
        except TaggerError as exc:
            return [gr.update(), actions.error_html(exc)]
        finally:
            self.ui.current_progress = None
        where = html.escape(actions.output_folder_text(folder, batch))
        return [f"{summary.found} images found; captions written {where}", va.summary_html(summary)]

    def on_folder_stream(self, *args: Any) -> Iterator[list[Any]]:
        """``on_folder`` (wrapped) in a thread, its progress streamed to the count line."""
        from tagger.ui.blocks import progress_text

        box: dict[str, list[Any]] = {}
        worker = threading.Thread(
            target=lambda: box.setdefault("out", list(self._folder(*args))),
            name="tagger-vlm-batch",
            daemon=True,
        )
        worker.start()
        while worker.is_alive():
            worker.join(0.5)
            snapshot = getattr(self.ui.current_progress, "latest", None)
            if worker.is_alive() and snapshot is not None:
                yield [progress_text(snapshot), gr.update()]
        yield box.get("out") or [gr.update(), actions.error_html(RuntimeError("the run failed"))]


def build_vlm_panel(ui: Any) -> VlmPanel:
    """Build the VLM panel inside the current Blocks, below the tab ``ui``."""
    return VlmPanel(ui).build()
