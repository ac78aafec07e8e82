"""The "Tagger" section of the webui's Settings page, and the runtime settings read from it.

Settings are read from ``shared.opts.data`` with the defaults below, so they work before the
Settings page registers them. The webui's own flags win where they apply: ``--use-cpu
all|interrogate`` runs the models on the CPU, ``--device-id`` picks the GPU unless a Tagger device
is set, ``--no-half`` / ``--precision full`` keep float32 models.

Settings that name folders (models, Hugging Face cache, the folders the API may tag in) are
protected as the webui protects its own: ``restrict_api`` (the webui's ``POST /sdapi/v1/options``
leaves them unchanged: ``Options.set(..., is_api=True)`` refuses them), the host's ``hide_dirs``
component arguments (hidden, and refused by ``Options.__setattr__``, under
``--hide-ui-dir-config``) and the host's ``restricted_opts``.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tagger.registry import DEFAULT_MODEL, default_models_dirs
from tagger.ui.host import RuntimeSettings
from tagger.webui import compat

log = logging.getLogger("tagger")

SECTION = ("tagger", "Tagger")
#: Where the older tagger extensions' users keep their ONNX models, under the webui's models/.
WEBUI_MODELS_SUBDIR = "TaggerOnnx"
PROVIDER_CHOICES = ["auto", "cpu", "cuda", "rocm", "directml", "coreml", "openvino", "tensorrt"]


@dataclass(frozen=True)
class Setting:
    """One Settings entry: key, default, label, widget kind and its arguments."""

    key: str
    default: Any
    label: str
    widget: str = "auto"  # auto (from the default's type), slider, model, providers
    comment: str = ""
    #: Names folders on the server: protected from the API and by ``--hide-ui-dir-config``.
    folder: bool = False
    #: Read when the tab is built: a change shows after the webui's "Reload UI".
    tab_default: bool = False
    #: Read by the HTTP API when it is mounted: a change reaches the API after a restart.
    api_at_start: bool = False


SETTINGS: tuple[Setting, ...] = (
    Setting("tagger_default_model", DEFAULT_MODEL, "Default tagger", "model", tab_default=True),
    Setting(
        "tagger_default_captioner", "", "Default captioner (empty: tags only)", tab_default=True
    ),
    Setting(
        "tagger_general_threshold",
        0.35,
        "Default general tag threshold",
        "slider",
        tab_default=True,
    ),
    Setting(
        "tagger_character_threshold",
        0.85,
        "Default character tag threshold",
        "slider",
        tab_default=True,
    ),
    Setting(
        "tagger_models_dir",
        "",
        "Extra models folder (one sub-folder a model)",
        comment="models/TaggerOnnx and the extension's models/ are always searched",
        folder=True,
        api_at_start=True,
    ),
    Setting(
        "tagger_hf_cache",
        "",
        "Hugging Face cache folder for downloaded models (empty: HF's default)",
        folder=True,
        api_at_start=True,
    ),
    Setting(
        "tagger_providers",
        "auto",
        "Execution providers (auto, cpu, cuda, rocm, directml, coreml, openvino, tensorrt; "
        "comma-separated for several)",
        "providers",
        comment="--use-cpu all or interrogate forces cpu",
        api_at_start=True,
    ),
    Setting(
        "tagger_device_id",
        -1,
        "GPU index (-1: the webui's --device-id, else 0)",
        api_at_start=True,
    ),
    Setting("tagger_batch_size", 0, "Batch size (0: 1 on CPU, 32 on GPU)"),
    Setting("tagger_unload_after_run", False, "Unload models after each run"),
    Setting(
        "tagger_api_allowed_dirs",
        "",
        "Folders the API may tag in batch (one per line or ; separated; empty: none)",
        folder=True,
        api_at_start=True,
    ),
)
DEFAULTS = {setting.key: setting.default for setting in SETTINGS}


def _component(setting: Setting) -> tuple[Any, Any]:
    """(component, component_args) for one setting; folder settings get the host's
    ``hide_dirs`` (the same dict object, as the webui's own folder settings do)."""
    import gradio as gr

    if setting.widget == "slider":
        return gr.Slider, {"minimum": 0.0, "maximum": 1.0, "step": 0.01}
    if setting.widget == "model":
        return gr.Dropdown, lambda: {"choices": model_choices()}
    if setting.folder:
        return None, compat.hide_dirs()
    return None, None


def comment_html(setting: Setting) -> str:
    """The grey note after a setting's label."""
    notes = [setting.comment] if setting.comment else []
    if setting.tab_default:
        notes.append("the tab shows it after Reload UI")
    if setting.api_at_start:
        notes.append("the HTTP API reads it at start and at Reload UI")
    if setting.folder:
        notes.append("not changeable through the webui's API; hidden by --hide-ui-dir-config")
    return "".join(f"<span class='info'>({note})</span>" for note in notes)


def model_choices() -> list[str]:
    """Tagger names for the default-model dropdown."""
    from tagger.ui.actions import tagger_choices

    return tagger_choices(runtime_settings())


def register_settings() -> None:
    """Add the "Tagger" section (``on_ui_settings``)."""
    opts = compat.opts()
    for setting in SETTINGS:
        component, component_args = _component(setting)
        info = compat.shared.OptionInfo(
            setting.default,
            setting.label,
            component,
            component_args,
            section=SECTION,
            comment_after=comment_html(setting),
            restrict_api=setting.folder,
        )
        opts.add_option(setting.key, info)
        if setting.folder:
            compat.restrict_folder_option(setting.key)


def value(key: str) -> Any:
    """A Tagger setting's value: the saved one, else its default (coerced to the default's type)."""
    default = DEFAULTS[key]
    data = getattr(compat.opts(), "data", None) or {}
    raw = data.get(key, default)
    try:
        if isinstance(default, bool):
            return bool(raw)
        if isinstance(default, (int, float)):
            return type(default)(raw)
        return "" if raw is None else str(raw)
    except (TypeError, ValueError):
        log.warning("setting %s has an unusable value %r; using %r", key, raw, default)
        return default


def split_dirs(text: str) -> list[Path]:
    """Folders from a setting: one per line, or separated by ``;`` (or os.pathsep)."""
    parts = text.replace("\n", ";").replace(os.pathsep, ";").split(";")
    return [Path(part.strip()).expanduser() for part in parts if part.strip()]


def models_dirs() -> list[Path]:
    """Local model folders: the setting's folder, models/TaggerOnnx, $TAGGER_MODELS_DIR and the
    extension's models/."""
    dirs = split_dirs(value("tagger_models_dir"))
    dirs.append(compat.models_path() / WEBUI_MODELS_SUBDIR)
    for folder in default_models_dirs():
        if folder not in dirs:
            dirs.append(folder)
    return dirs


def providers() -> str:
    """Execution providers: CPU when the webui runs interrogation on the CPU."""
    use_cpu = getattr(compat.cmd_opts(), "use_cpu", None) or []
    if isinstance(use_cpu, str):
        use_cpu = [use_cpu]
    if {"all", "interrogate"} & {str(item).lower() for item in use_cpu}:
        return "cpu"
    return value("tagger_providers").strip() or "auto"


def device_id() -> int:
    """The GPU index: the Tagger setting, else the webui's ``--device-id``, else 0."""
    chosen = value("tagger_device_id")
    if chosen >= 0:
        return chosen
    flag = getattr(compat.cmd_opts(), "device_id", None)
    try:
        return int(flag) if flag not in (None, "") else 0
    except ValueError:
        log.warning("--device-id %r is not a GPU index; using 0", flag)
        return 0


def half_precision() -> bool:
    """False when the webui was started with ``--no-half`` or ``--precision full``."""
    cmd = compat.cmd_opts()
    return not (getattr(cmd, "no_half", False) or getattr(cmd, "precision", "") == "full")


def runtime_settings() -> RuntimeSettings:
    """Everything the tab and the API need, read now (so Settings changes apply at once)."""
    return RuntimeSettings(
        default_model=value("tagger_default_model") or DEFAULT_MODEL,
        default_captioner=value("tagger_default_captioner"),
        general_threshold=value("tagger_general_threshold"),
        character_threshold=value("tagger_character_threshold"),
        models_dirs=models_dirs(),
        hf_cache=value("tagger_hf_cache").strip() or None,
        providers=providers(),
        device_id=device_id(),
        batch_size=max(0, value("tagger_batch_size")),
        unload_after_run=value("tagger_unload_after_run"),
        allowed_dirs=split_dirs(value("tagger_api_allowed_dirs")),
        half=half_precision(),
    )
