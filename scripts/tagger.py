"""Tagger webui extension: check the environment, register the tab, settings and API.

Everything else lives in the ``tagger`` package next to this folder (``tagger/webui/`` is the only
code that touches the webui).
"""

from __future__ import annotations

import sys
from pathlib import Path

EXTENSION_ROOT = Path(__file__).resolve().parent.parent


def _package_folder(module: object) -> Path | None:
    """The extension folder a ``tagger`` package was imported from."""
    file = getattr(module, "__file__", None)
    if file:
        return Path(file).resolve().parent.parent
    paths = list(getattr(module, "__path__", []) or [])
    return Path(paths[0]).resolve().parent if paths else None


def check_tagger_package() -> None:
    """Stop when another extension's top-level ``tagger`` package won the import.

    toriato's and picobyte's WD14 tagger extensions (and their forks) also ship a package named
    ``tagger``; Python keeps the first one imported for every extension.
    """
    module = sys.modules.get("tagger")
    if module is None:
        import tagger as module
    folder = _package_folder(module)
    if folder != EXTENSION_ROOT:
        raise RuntimeError(
            f"tagger: another extension's 'tagger' package is already loaded, from {folder}. "
            f"This extension ({EXTENSION_ROOT}) cannot run beside it: disable one of the two "
            "in the Extensions tab (or move its folder out of extensions/) and restart the webui."
        )


check_tagger_package()

from tagger.webui import entry  # noqa: E402  (only after the check above)

entry.warn_other_taggers(EXTENSION_ROOT)
entry.register()
