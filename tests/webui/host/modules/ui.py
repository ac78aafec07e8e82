"""Stand-in for ``modules.ui``: ``create_ui`` builds the page as the webui does.

In order: ``ui_settings.register_settings`` (the extensions' ``on_ui_settings``); a txt2img and an
img2img tab holding a few of the webui's real paste fields (Prompt, Negative prompt, Steps; the
img2img init image), registered with ``infotext_utils.add_paste_fields``; the ``ui-config.json``
loader (``UiLoadsave(cmd_opts.ui_config_file)``); the Settings page; the extensions' tabs
(``on_ui_tabs``); then one root Blocks in which the paste buttons are connected and every tab is
rendered inside ``gr.Tabs(elem_id="tabs")`` and registered with the loader under its id (all but
Settings and Extensions); the file is written when the loader recorded anything new. The page's
scripts are the extension's ``javascript/*.js`` plus the webui functions its events call
(``switch_to_txt2img``, ``recalculate_prompts_txt2img``, ...).
"""

import gradio as gr

from modules import infotext_utils, script_callbacks, scripts, shared, ui_loadsave, ui_settings

JS_KWARG = "_js" if int(gr.__version__.split(".")[0]) < 4 else "js"
#: The webui functions the page's events call (javascript/ui.js in the webui).
HOST_JS = """
window.tagger_host_calls = [];
for (const tab of ["txt2img", "img2img"]) {
  window["switch_to_" + tab] = function () {
    window.tagger_host_calls.push("switch_to_" + tab);
    const buttons = Array.from(document.querySelectorAll("#tabs button"));
    const button = buttons.find((b) => b.textContent.trim() === tab);
    if (button) button.click();
    return [];
  };
  window["recalculate_prompts_" + tab] = function () { return []; };
}
window.gradioApp = function () { return document; };
"""
settings = ui_settings.UiSettings()
extension_javascript = []  # test-only: paths of the extensions' javascript/*.js for the page


def create_txt2img_like(tabname, with_image):
    with gr.Blocks(analytics_enabled=False) as interface:
        init_img = (
            gr.Image(label="Image for img2img", elem_id=f"{tabname}_image") if with_image else None
        )
        prompt = gr.Textbox(label="Prompt", elem_id=f"{tabname}_prompt", lines=3)
        negative = gr.Textbox(label="Negative prompt", elem_id=f"{tabname}_neg_prompt", lines=3)
        steps = gr.Slider(
            minimum=1,
            maximum=150,
            step=1,
            value=20,
            label="Sampling steps",
            elem_id=f"{tabname}_steps",
        )
    fields = [(prompt, "Prompt"), (negative, "Negative prompt"), (steps, "Steps")]
    infotext_utils.add_paste_fields(tabname, init_img, fields)
    (scripts.scripts_img2img if with_image else scripts.scripts_txt2img).initialize_scripts(
        with_image
    )
    return interface


def create_ui():
    settings.register_settings()
    txt2img_interface = create_txt2img_like("txt2img", with_image=False)
    img2img_interface = create_txt2img_like("img2img", with_image=True)

    loadsave = ui_loadsave.UiLoadsave(shared.cmd_opts.ui_config_file)
    ui_settings_from_file = loadsave.ui_settings.copy()
    settings.create_ui()

    interfaces = [
        (txt2img_interface, "txt2img", "txt2img"),
        (img2img_interface, "img2img", "img2img"),
    ]
    interfaces += script_callbacks.ui_tabs_callback()
    interfaces += [(settings.interface, "Settings", "settings")]

    with gr.Blocks(analytics_enabled=False, title="Stable Diffusion") as demo:
        infotext_utils.connect_paste_params_buttons()
        with gr.Tabs(elem_id="tabs") as tabs:
            for interface, label, ifid in interfaces:
                with gr.TabItem(label, id=ifid, elem_id=f"tab_{ifid}"):
                    interface.render()
                if ifid not in ["extensions", "settings"]:
                    loadsave.add_block(interface, ifid)
            loadsave.add_component(f"webui/Tabs@{tabs.elem_id}", tabs)
        script = HOST_JS + "\n".join(_read(path) for path in extension_javascript)
        demo.load(None, None, None, **{JS_KWARG: "() => {\n" + script + "\n}"})

    if ui_settings_from_file != loadsave.ui_settings:
        loadsave.dump_defaults()
    demo.ui_loadsave = loadsave
    return demo


def _read(path):
    with open(path, encoding="utf8") as file:
        return file.read()
