"""The callbacks ``scripts/tagger.py`` registers with the webui."""

from __future__ import annotations

import logging
from pathlib import Path

from tagger.webui import compat

log = logging.getLogger("tagger")


def register() -> None:
    """Register the tab, the Settings section and the API with the host."""
    from tagger.webui.routes import on_app_started
    from tagger.webui.settings import register_settings
    from tagger.webui.tab import on_ui_tabs

    callbacks = compat.script_callbacks
    callbacks.on_ui_tabs(on_ui_tabs, name="tagger")
    callbacks.on_ui_settings(register_settings, name="tagger")
    callbacks.on_app_started(on_app_started, name="tagger")


def warn_other_taggers(own_root: Path) -> list[Path]:
    """Log an error naming every other installed extension with a top-level ``tagger`` package.

    When this extension loads first, the other one fails to import its own ``tagger`` modules;
    this message says why. Returns the folders found.
    """
    try:
        root = compat.extensions_dir()
    except (ImportError, AttributeError):
        return []
    found = []
    if root is None or not root.is_dir():
        return found
    for folder in sorted(root.iterdir()):
        if folder.resolve() == own_root.resolve() or folder.name.startswith("."):
            continue
        if (folder / "tagger" / "__init__.py").is_file() or (folder / "tagger" / "ui.py").is_file():
            found.append(folder)
    for folder in found:
        log.error(
            "tagger: the extension in %s also has a 'tagger' package and cannot load beside this "
            "one (%s): disable one of the two in the Extensions tab and restart the webui",
            folder,
            own_root,
        )
    return found
