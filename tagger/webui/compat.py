"""Every import from the host, in one place (AUTOMATIC1111 1.10 and Forge).

Names used here exist in both hosts with the same signatures (see the host notes in the README):
``modules.script_callbacks``, ``modules.shared``, ``modules.call_queue``, ``modules.paths`` and
``modules.infotext_utils`` (``modules.generation_parameters_copypaste`` before webui 1.8).
``InputAccordion`` is a class on A1111 and a function on Forge: it is never ``isinstance``'d.
"""

from __future__ import annotations

import importlib
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


def send_to_buttons(text_component: Any, image_component: Any) -> dict[str, Any]:
    """ "Send to txt2img/img2img" buttons that paste the prompt (and the image into img2img)."""
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
