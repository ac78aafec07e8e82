"""Stand-in for ``modules.infotext_utils`` (also ``modules.generation_parameters_copypaste``).

The paste chain behaves as the webui's: ``register_paste_params_button`` records a binding;
``connect_paste_params_buttons`` (called by ``ui.create_ui`` inside the page's Blocks) wires the
button to ``paste_func``, which reads the source text component as an infotext with
``parse_generation_parameters`` and fills the destination tab's paste fields from it.

``parse_generation_parameters`` restates the webui's rules that decide what lands in the prompt:
the text is stripped and split into lines; the LAST line is the settings line when
``re_param`` finds 3 or more ``key: value`` matches in it (and is then not part of the prompt);
lines from one starting with ``Negative prompt:`` on are the negative prompt; every other line is
the prompt (each line stripped, joined with newlines). Settings values in double quotes are JSON
strings; ``WxH`` values give ``key-1`` / ``key-2``. The webui then adds fixed defaults for fields
the text does not name (``Clip skip``: ``"1"``, ...), of which two are kept here.
"""

import json
import os
import re
import sys

import gradio as gr

from modules import shared
from modules.paths_internal import data_path

re_param_code = r'\s*(\w[\w \-/]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)'
re_param = re.compile(re_param_code)
re_imagesize = re.compile(r"^(\d+)x(\d+)$")
type_of_gr_update = type(gr.update())
JS_KWARG = "_js" if int(gr.__version__.split(".")[0]) < 4 else "js"


class ParamBinding:
    def __init__(
        self,
        paste_button,
        tabname,
        source_text_component=None,
        source_image_component=None,
        source_tabname=None,
        override_settings_component=None,
        paste_field_names=None,
    ):
        self.paste_button = paste_button
        self.tabname = tabname
        self.source_text_component = source_text_component
        self.source_image_component = source_image_component
        self.source_tabname = source_tabname
        self.override_settings_component = override_settings_component
        self.paste_field_names = paste_field_names or []


paste_fields = {}
registered_param_bindings = []


def quote(text):
    if "," not in str(text) and "\n" not in str(text) and ":" not in str(text):
        return text
    return json.dumps(text, ensure_ascii=False)


def unquote(text):
    if len(text) == 0 or text[0] != '"' or text[-1] != '"':
        return text
    try:
        return json.loads(text)
    except Exception:
        return text


def add_paste_fields(tabname, init_img, fields, override_settings_component=None):
    paste_fields[tabname] = {
        "init_img": init_img,
        "fields": fields,
        "override_settings_component": override_settings_component,
    }


def create_buttons(tabs_list):
    buttons = {}
    for tab in tabs_list:
        buttons[tab] = gr.Button(f"Send to {tab}", elem_id=f"{tab}_tab")
    return buttons


def register_paste_params_button(binding: ParamBinding):
    registered_param_bindings.append(binding)


def connect_paste_params_buttons():
    for binding in registered_param_bindings:
        destination_image_component = paste_fields[binding.tabname]["init_img"]
        fields = paste_fields[binding.tabname]["fields"]
        if binding.source_image_component and destination_image_component:
            binding.paste_button.click(
                fn=lambda x: x,
                inputs=[binding.source_image_component],
                outputs=[destination_image_component],
                show_progress=False,
            )
        if binding.source_text_component is not None and fields is not None:
            connect_paste(
                binding.paste_button, fields, binding.source_text_component, None, binding.tabname
            )
        binding.paste_button.click(
            fn=None,
            inputs=None,
            outputs=None,
            show_progress=False,
            **{JS_KWARG: f"switch_to_{binding.tabname}"},
        )


def parse_generation_parameters(x: str, skip_fields=None):
    res = {}
    prompt = ""
    negative_prompt = ""
    done_with_prompt = False

    *lines, lastline = x.strip().split("\n")
    if len(re_param.findall(lastline)) < 3:
        lines.append(lastline)
        lastline = ""

    for line in lines:
        line = line.strip()
        if line.startswith("Negative prompt:"):
            done_with_prompt = True
            line = line[16:].strip()
        if done_with_prompt:
            negative_prompt += ("" if negative_prompt == "" else "\n") + line
        else:
            prompt += ("" if prompt == "" else "\n") + line

    for k, v in re_param.findall(lastline):
        try:
            if v[0] == '"' and v[-1] == '"':
                v = unquote(v)
            m = re_imagesize.match(v)
            if m is not None:
                res[f"{k}-1"] = m.group(1)
                res[f"{k}-2"] = m.group(2)
            else:
                res[k] = v
        except Exception:
            print(f'Error parsing "{k}: {v}"')

    res["Prompt"] = prompt
    res["Negative prompt"] = negative_prompt
    if "Clip skip" not in res:
        res["Clip skip"] = "1"
    if "Hires prompt" not in res:
        res["Hires prompt"] = ""
    for key in skip_fields or []:
        res.pop(key, None)
    return res


def connect_paste(button, paste_fields, input_comp, override_settings_component, tabname):
    def paste_func(prompt):
        if (
            not prompt
            and not shared.cmd_opts.hide_ui_dir_config
            and not shared.cmd_opts.no_prompt_history
        ):
            filename = os.path.join(data_path, "params.txt")
            try:
                with open(filename, encoding="utf8") as file:
                    prompt = file.read()
            except OSError:
                pass

        params = parse_generation_parameters(prompt)
        res = []
        for output, key in paste_fields:
            v = key(params) if callable(key) else params.get(key, None)
            if v is None:
                res.append(gr.update())
            elif isinstance(v, type_of_gr_update):
                res.append(v)
            else:
                try:
                    valtype = type(output.value)
                    if valtype == bool and v == "False":  # noqa: E721 - as the webui
                        val = False
                    elif valtype == int:  # noqa: E721 - as the webui
                        val = float(v)
                    else:
                        val = valtype(v)
                    res.append(gr.update(value=val))
                except Exception:
                    res.append(gr.update())
        return res

    button.click(
        fn=paste_func,
        inputs=[input_comp],
        outputs=[x[0] for x in paste_fields],
        show_progress=False,
    )
    button.click(
        fn=None,
        inputs=[],
        outputs=[],
        show_progress=False,
        **{JS_KWARG: f"recalculate_prompts_{tabname}"},
    )


sys.modules["modules.generation_parameters_copypaste"] = sys.modules[__name__]
