"""Stand-in for ``modules.ui_loadsave``: the webui's ``ui-config.json``.

As in the webui (A1111 1.10.1 and Forge): when the page is built, every labelled Slider, Radio,
Checkbox, Textbox, Number and Dropdown of a tab (and every Button, by its text) is registered
under ``<tab id>/<label>/<field>`` (the label only: nested layouts do not add to the path).
For each of ``visible`` (only while the component is visible), ``value`` (and ``minimum``,
``maximum``, ``step`` of a Slider): a value saved in the file replaces the component's (a
Dropdown's or Radio's only when it is one of its choices); with nothing saved, the component's
current value is recorded. The file is written when anything new was recorded, so the first
start writes every tab's initial values and each later start applies them over what the code
built. A component with ``do_not_save_to_config = True`` is neither read nor recorded: that is
how an extension keeps a value of its own (a default taken from Settings) out of the file.
"""

import json
import os

import gradio as gr

from modules.ui_components import ToolButton


def radio_choices(comp):
    return [x[0] if isinstance(x, tuple) else x for x in getattr(comp, "choices", [])]


class UiLoadsave:
    def __init__(self, filename):
        self.filename = filename
        self.ui_settings = {}
        self.component_mapping = {}
        self.error_loading = False
        self.finalized_ui = False
        try:
            self.ui_settings = self.read_from_file()
        except FileNotFoundError:
            pass
        except Exception as e:
            self.error_loading = True
            print(f"loading settings: {e}")

    def add_component(self, path, x):
        assert not self.finalized_ui

        def apply_field(obj, field, condition=None, init_field=None):
            key = f"{path}/{field}"
            if getattr(obj, "custom_script_source", None) is not None:
                key = f"customscript/{obj.custom_script_source}/{key}"
            if getattr(obj, "do_not_save_to_config", False):
                return
            saved_value = self.ui_settings.get(key, None)
            if saved_value is None:
                value_in_gradio = getattr(obj, field)
                if isinstance(obj, gr.Textbox) and field == "value" and value_in_gradio is None:
                    value_in_gradio = ""
                self.ui_settings[key] = value_in_gradio
            elif condition and not condition(saved_value):
                pass
            else:
                if isinstance(obj, gr.Textbox) and field == "value":
                    saved_value = str(saved_value)
                elif isinstance(obj, gr.Number) and field == "value":
                    try:
                        saved_value = float(saved_value)
                    except ValueError:
                        return
                setattr(obj, field, saved_value)
                if init_field is not None:
                    init_field(saved_value)
            if field == "value" and key not in self.component_mapping:
                self.component_mapping[key] = obj

        kinds = [
            gr.Slider,
            gr.Radio,
            gr.Checkbox,
            gr.Textbox,
            gr.Number,
            gr.Dropdown,
            ToolButton,
            gr.Button,
        ]
        if type(x) in kinds and x.visible:
            apply_field(x, "visible")
        if type(x) == gr.Slider:  # noqa: E721 - the webui compares exact types
            apply_field(x, "value")
            apply_field(x, "minimum")
            apply_field(x, "maximum")
            apply_field(x, "step")
        if type(x) == gr.Radio:  # noqa: E721
            apply_field(x, "value", lambda val: val in radio_choices(x))
        if type(x) == gr.Checkbox:  # noqa: E721
            apply_field(x, "value")
        if type(x) == gr.Textbox:  # noqa: E721
            apply_field(x, "value")
        if type(x) == gr.Number:  # noqa: E721
            apply_field(x, "value")
        if type(x) == gr.Dropdown:  # noqa: E721

            def check_dropdown(val):
                choices = radio_choices(x)
                if getattr(x, "multiselect", False):
                    return all(value in choices for value in val)
                return val in choices

            apply_field(x, "value", check_dropdown, getattr(x, "init_field", None))

        def check_tab_id(tab_id):
            tab_items = list(filter(lambda e: isinstance(e, gr.TabItem), x.children))
            if type(tab_id) == str:  # noqa: E721
                return tab_id in [t.id for t in tab_items]
            if type(tab_id) == int:  # noqa: E721
                return 0 <= tab_id < len(tab_items)
            return False

        if type(x) == gr.Tabs:  # noqa: E721
            apply_field(x, "selected", check_tab_id)

    def add_block(self, x, path=""):
        if hasattr(x, "children"):
            if isinstance(x, gr.Tabs) and x.elem_id is not None:
                self.add_component(f"{path}/Tabs@{x.elem_id}", x)
            for c in x.children:
                self.add_block(c, path)
        elif x.label is not None:
            self.add_component(f"{path}/{x.label}", x)
        elif isinstance(x, gr.Button) and x.value is not None:
            self.add_component(f"{path}/{x.value}", x)

    def read_from_file(self):
        with open(self.filename, encoding="utf8") as file:
            return json.load(file)

    def write_to_file(self, current_ui_settings):
        with open(self.filename, "w", encoding="utf8") as file:
            json.dump(current_ui_settings, file, indent=4, ensure_ascii=False)

    def dump_defaults(self):
        if self.error_loading and os.path.exists(self.filename):
            return
        self.write_to_file(self.ui_settings)
