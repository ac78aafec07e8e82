"""Stand-in for ``modules.ui_components`` (FormRow, FormColumn, ToolButton, InputAccordion)."""

import gradio as gr


class FormRow(gr.Row):
    def get_block_name(self):
        return "row"


class FormColumn(gr.Column):
    def get_block_name(self):
        return "column"


class ToolButton(gr.Button):
    def __init__(self, *args, **kwargs):
        classes = kwargs.pop("elem_classes", [])
        super().__init__(*args, elem_classes=["tool", *classes], **kwargs)

    def get_block_name(self):
        return "button"


def InputAccordion(value, **kwargs):  # noqa: N802 - a function on Forge, a class on A1111
    return gr.Accordion(open=bool(value), **kwargs)
