"""Every import from the host, in one place (AUTOMATIC1111 1.10 and Forge).

Names used here exist in both hosts with the same signatures (see the host notes in docs/webui.md):
``modules.script_callbacks``, ``modules.shared``, ``modules.call_queue``, ``modules.paths`` and
``modules.infotext_utils`` (``modules.generation_parameters_copypaste`` before webui 1.8).
``InputAccordion`` is a class on A1111 and a function on Forge: it is never ``isinstance``'d.

Where the extension depends on what the host does (not only on its names), the rule is stated
next to the code that relies on it, with the host function it comes from.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

from modules import call_queue, script_callbacks, shared

__all__ = [
    "call_queue",
    "cmd_opts",
    "infotext_utils",
    "models_path",
    "opts",
    "paste_infotext",
    "queue_lock",
    "script_callbacks",
    "send_to_buttons",
    "shared",
    "state",
    "wrap_gradio_gpu_call",
]


def infotext_utils() -> ModuleType:
    """The host's paste-parameters module, under its current or its pre-1.8 name."""
    try:
        return importlib.import_module("modules.infotext_utils")
    except ImportError:
        return importlib.import_module("modules.generation_parameters_copypaste")


def opts() -> Any:
    """The host's options (``shared.opts``)."""
    return shared.opts


def cmd_opts() -> Any:
    """The host's parsed command line (``shared.cmd_opts``)."""
    return shared.cmd_opts


def state() -> Any:
    """The host's job state (``shared.state``): progress bar and Interrupt button."""
    return shared.state


def flag(name: str, default: Any = None) -> Any:
    """One of the webui's command-line flags (``shared.cmd_opts``), by its attribute name."""
    return getattr(shared.cmd_opts, name, default)


def api_enabled() -> bool:
    """True when the webui serves its own API: ``--api``, or ``--nowebui`` (the API alone).

    ``webui.py`` creates the host's API only then, while ``on_app_started`` runs in every case.
    """
    return bool(flag("api", False) or flag("nowebui", False))


def folders_hidden() -> bool:
    """True under ``--hide-ui-dir-config``: the webui hides and refuses folder settings and
    folder fields (its own batch img2img and extras batch refuse to run)."""
    return bool(flag("hide_ui_dir_config", False))


def hide_dirs() -> dict[str, Any]:
    """The component arguments the host gives every setting that names a folder
    (``shared.hide_dirs``: ``{"visible": False}`` under ``--hide-ui-dir-config``).

    A setting registered with them is hidden on the Settings page and, since
    ``Options.__setattr__`` refuses a setting whose ``component_args`` say ``visible: False``,
    cannot be changed by the page or the API while the flag is on.
    """
    found = getattr(shared, "hide_dirs", None)
    return found if isinstance(found, dict) else {"visible": not folders_hidden()}


def restrict_folder_option(key: str) -> None:
    """Add a setting to the host's ``restricted_opts``: the settings ``--hide-ui-dir-config``
    freezes, beside the webui's own output folders."""
    restricted = getattr(shared, "restricted_opts", None)
    if isinstance(restricted, set):
        restricted.add(key)


def queue_lock() -> Any:
    """The lock shared by image generation and every model user."""
    return call_queue.queue_lock


def wrap_gradio_gpu_call(func: Any, extra_outputs: list[Any] | None = None) -> Any:
    """The host's wrapper for model work (queue lock, job state, error and timing HTML)."""
    return call_queue.wrap_gradio_gpu_call(func, extra_outputs=extra_outputs)


def models_path() -> Path:
    """The webui's ``models`` folder."""
    try:
        from modules import paths

        return Path(paths.models_path)
    except (ImportError, AttributeError):
        return Path(shared.models_path)


def extensions_dir() -> Path | None:
    """The webui's ``extensions`` folder (None when the host does not say)."""
    from modules import paths

    folder = getattr(paths, "extensions_dir", None)
    return Path(folder) if folder else None


def quote_infotext_value(text: str) -> str:
    """A value as the host reads it back from an infotext's settings line: JSON-quoted when it
    holds ``,``, ``:``, ``"`` or a line break, or starts or ends with a space (the host quotes the
    first three, ``infotext_utils.quote``, and reads a value in double quotes as JSON), else as it
    is.

    >>> quote_infotext_value("wd-vit-tagger-v3"), quote_infotext_value("a, b")
    ('wd-vit-tagger-v3', '"a, b"')
    """
    if any(char in text for char in ',:"\n') or text != text.strip():
        return json.dumps(text, ensure_ascii=False)
    return text


def paste_infotext(prompt: str, parameters: Mapping[str, str]) -> str:
    r"""The text a "Send to" button hands the host so that exactly ``prompt`` is pasted.

    The host reads the sent text as an infotext (``infotext_utils.parse_generation_parameters``):
    its last line is taken as the settings line, and dropped from the prompt, when its
    ``key: value`` pattern matches 3 or more times, which a weighted prompt such as
    ``(1girl:0.99), (solo:0.97), (smile:0.8)`` does. So a settings line of the tagger's own
    (``parameters``, at least 3 entries, keys no txt2img/img2img field reads) always follows the
    prompt: the host takes it as the settings line and pastes every line above it as the prompt.

    >>> paste_infotext("(cat:0.9), (dog:0.8), (sky:0.7)", {"Tagger": "m", "A": "1", "B": "2"})
    '(cat:0.9), (dog:0.8), (sky:0.7)\nTagger: m, A: 1, B: 2'
    """
    if len(parameters) < 3:
        raise ValueError(f"a settings line needs 3 entries or more, not {dict(parameters)}")
    line = ", ".join(
        f"{key}: {quote_infotext_value(str(value))}" for key, value in parameters.items()
    )
    return f"{prompt.strip()}\n{line}"


def send_to_buttons(text_component: Any, image_component: Any) -> dict[str, Any]:
    """ "Send to txt2img/img2img" buttons that paste an infotext (``paste_infotext``) from
    ``text_component`` and the image into img2img."""
    infotext = infotext_utils()
    buttons = infotext.create_buttons(["txt2img", "img2img"])
    for tabname, button in buttons.items():
        infotext.register_paste_params_button(
            infotext.ParamBinding(
                paste_button=button,
                tabname=tabname,
                source_text_component=text_component,
                source_image_component=image_component,
            )
        )
    return buttons
