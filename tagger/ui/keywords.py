"""The tab's *Keyphrases* box: KeyBERT keyphrases of the caption, CLIP-filtered on request.

Shown under the caption when keybert and sentence-transformers can be imported. ``keyphrases``
is the button's work without Gradio (the tests call it); ``build_keyword_box`` lays the box out
inside the tab and wires it.
"""

from __future__ import annotations

from typing import Any

from tagger.ui.host import RuntimeSettings

#: What the box needs besides the caption libraries.
KEYWORD_LIBRARIES = ("keybert", "sentence_transformers")


def keywords_available() -> bool:
    """True when the keyphrase libraries can be imported (found without importing them)."""
    from tagger.ui.actions import library_available

    return all(library_available(name) for name in (*KEYWORD_LIBRARIES, "torch"))


def keyphrases(
    image: Any,
    caption: str,
    settings: RuntimeSettings,
    *,
    model: str = "all-MiniLM-L6-v2",
    top_n: int = 5,
    mmr: bool = False,
    clip_filter: bool = False,
    clip_threshold: float = 0.2,
) -> str:
    """The keyphrases of ``caption`` (the caption box's text) as comma-separated tags; with
    ``clip_filter``, only those CLIP sees in ``image``."""
    from tagger.captioners.common import torch_device_for
    from tagger.errors import OptionsError
    from tagger.image import load_image
    from tagger.keywords.options import KeywordOptions
    from tagger.keywords.single import image_keywords
    from tagger.options import CaptionOptions, ClipFilterOptions

    if not (caption or "").strip():
        raise OptionsError("no caption: pick a captioner and interrogate, or type a caption")
    options = KeywordOptions(model=model or "all-MiniLM-L6-v2", top_n=int(top_n))
    if mmr:
        options = KeywordOptions(model=options.model, top_n=options.top_n, method="mmr")
    clip = ClipFilterOptions(threshold=float(clip_threshold)) if clip_filter else None
    if clip is not None and image is None:
        raise OptionsError("the CLIP filter needs the image: upload one")
    result = image_keywords(
        load_image(image) if image is not None else None,
        caption.strip(),
        caption_options=CaptionOptions(half=settings.half),
        options=options,
        clip=clip,
        device=torch_device_for(settings.providers),
        device_id=settings.device_id,
        hf_cache=settings.hf_cache,
        models_dirs=settings.models_dirs,
    )
    return result.text


def build_keyword_box(ui: Any) -> None:
    """Add the *Keyphrases* accordion under the tab's caption box and wire its button."""
    import gradio as gr

    w = ui.widgets
    with gr.Accordion(
        "Keyphrases (KeyBERT)",
        open=False,
        visible=keywords_available(),
        elem_id="tagger_keywords",
    ):
        with gr.Row():
            w["keyword_model"] = gr.Textbox(
                value="all-MiniLM-L6-v2", label="Keyword model", elem_id="tagger_keyword_model"
            )
            w["keyword_top_n"] = gr.Number(
                value=5, precision=0, label="Keyphrases", elem_id="tagger_keyword_top_n"
            )
        with gr.Row():
            w["keyword_mmr"] = gr.Checkbox(label="Diverse (MMR)", elem_id="tagger_keyword_mmr")
            w["keyword_clip"] = gr.Checkbox(
                label="Keep only what CLIP sees", elem_id="tagger_keyword_clip"
            )
            w["keyword_threshold"] = gr.Slider(
                minimum=-1.0,
                maximum=1.0,
                step=0.01,
                value=0.2,
                label="CLIP threshold",
                elem_id="tagger_keyword_threshold",
            )
        w["keyword_button"] = gr.Button("Extract keyphrases", elem_id="tagger_keyword_button")
        w["keywords"] = gr.Textbox(label="Keyphrases", lines=2, elem_id="tagger_keyword_text")

    def on_click(image: Any, caption: str, model: str, top_n: Any, mmr: bool, clip: bool, cut: Any):
        from tagger.errors import TaggerError

        try:
            return keyphrases(
                image,
                caption,
                ui.host.settings(),
                model=model,
                top_n=int(top_n or 5),
                mmr=mmr,
                clip_filter=clip,
                clip_threshold=float(cut),
            )
        except TaggerError as exc:
            raise gr.Error(str(exc)) from exc

    inputs = [w["image"], w["caption"], w["keyword_model"], w["keyword_top_n"]]
    inputs += [w["keyword_mmr"], w["keyword_clip"], w["keyword_threshold"]]
    w["keyword_button"].click(on_click, inputs, [w["keywords"]])
