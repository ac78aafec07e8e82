"""Stand-in for ``modules.cmd_args``: the webui's command-line flags an extension looks at.

Same flag names, destinations and defaults as AUTOMATIC1111 1.10.1 (Forge accepts the same
ones); the many flags nothing here reads are left out.
"""

import argparse
import os

from modules.paths_internal import data_path

parser = argparse.ArgumentParser()
parser.add_argument("--skip-install", action="store_true")
parser.add_argument("--no-half", action="store_true")
parser.add_argument(
    "--precision", type=str, choices=["full", "half", "autocast"], default="autocast"
)
parser.add_argument("--share", action="store_true")
parser.add_argument("--ngrok", type=str, default=None)
parser.add_argument("--enable-insecure-extension-access", action="store_true")
parser.add_argument("--use-cpu", nargs="+", default=[], type=str.lower)
parser.add_argument("--listen", action="store_true")
parser.add_argument("--port", type=int, default=None)
parser.add_argument("--hide-ui-dir-config", action="store_true", default=False)
parser.add_argument("--ui-config-file", type=str, default=os.path.join(data_path, "ui-config.json"))
parser.add_argument("--freeze-settings", action="store_true", default=False)
parser.add_argument("--freeze-settings-in-sections", type=str, default=None)
parser.add_argument("--freeze-specific-settings", type=str, default=None)
parser.add_argument("--ui-settings-file", type=str, default=os.path.join(data_path, "config.json"))
parser.add_argument("--gradio-auth", type=str, default=None)
parser.add_argument("--api", action="store_true")
parser.add_argument("--api-auth", type=str, default=None)
parser.add_argument("--nowebui", action="store_true")
parser.add_argument("--device-id", type=str, default=None)
parser.add_argument("--server-name", type=str, default=None)
parser.add_argument("--no-prompt-history", action="store_true")
