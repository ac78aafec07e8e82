"""Stand-in for ``modules.ui_settings``: the Settings page's registration and its components.

``register_settings`` runs the extensions' ``on_ui_settings`` callbacks (the webui does it at the
start of ``ui.create_ui``, so also with ``--nowebui``, whose API builds the UI once). Each setting
becomes the component ``create_setting_component`` makes: ``info.component`` (else Textbox /
Number / Checkbox from the default's type) with ``info.component_args`` (a dict, or a callable
returning one) spread into it, so ``shared.hide_dirs`` hides a folder setting under
``--hide-ui-dir-config``. ``run_settings`` is the Apply button: ``opts.set`` for each, then save.
"""

import gradio as gr

from modules import script_callbacks, shared
from modules.shared import opts


def create_setting_component(key):
    def fun():
        return opts.data[key] if key in opts.data else opts.data_labels[key].default

    info = opts.data_labels[key]
    t = type(info.default)
    args = info.component_args() if callable(info.component_args) else info.component_args
    if info.component is not None:
        comp = info.component
    elif t == str:  # noqa: E721 - as the webui
        comp = gr.Textbox
    elif t == int:  # noqa: E721 - as the webui
        comp = gr.Number
    elif t == bool:  # noqa: E721 - as the webui
        comp = gr.Checkbox
    else:
        raise Exception(f"bad options item type: {t} for key {key}")
    return comp(label=info.label, value=fun(), elem_id=f"setting_{key}", **(args or {}))


class UiSettings:
    components = None
    component_dict = None

    def register_settings(self):
        script_callbacks.ui_settings_callback()

    def create_ui(self):
        self.components = []
        self.component_dict = {}
        shared.settings_components = self.component_dict
        with gr.Blocks(analytics_enabled=False) as self.interface:
            for key, item in opts.data_labels.items():
                if item.section is None or item.section[0] is None:
                    continue
                component = create_setting_component(key)
                self.component_dict[key] = component
                self.components.append(component)

    def run_settings(self, *args):
        changed = []
        for key, value in zip(self.component_dict, args, strict=True):
            assert opts.same_type(value, opts.data_labels[key].default), (
                f"Bad value for setting {key}"
            )
            if opts.set(key, value):
                changed.append(key)
        opts.save(shared.config_filename)
        return changed
