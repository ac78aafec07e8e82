"""Stand-in for ``modules.scripts``: only whether the txt2img/img2img script runners are set up.

The webui's API (``api.Api.__init__``) builds the whole UI once when they are not, which is why
``on_ui_settings`` and ``on_ui_tabs`` run with ``--nowebui`` too.
"""


class ScriptRunner:
    def __init__(self):
        self.scripts = []

    def initialize_scripts(self, is_img2img):
        self.scripts.append("img2img" if is_img2img else "txt2img")


scripts_txt2img = ScriptRunner()
scripts_img2img = ScriptRunner()
