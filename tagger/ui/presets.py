"""Presets: every option of the tab saved as JSON in a presets folder, keyed by field names.

A preset file is ``{"model": ..., "captioner": ..., "auto_interrogate": ...,
"tag_options": {TagOptions fields}, "batch_options": {BatchOptions fields}}``. Loading validates
through the option models, so a preset from an older version with a removed field fails with a
message naming it instead of half-applying.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

from tagger.errors import OptionsError
from tagger.options import BatchOptions, TagOptions, dump, parse
from tagger.writers import atomic_write_text

PRESET_KEYS = ("model", "captioner", "auto_interrogate", "tag_options", "batch_options")
_NAME = re.compile(r"^[\w][\w .()-]{0,99}$")


def default_presets_dir() -> Path:
    """``presets/`` next to the ``tagger`` package (the extension's own folder)."""
    return Path(__file__).resolve().parents[2] / "presets"


def preset_path(folder: str | os.PathLike[str], name: str) -> Path:
    """The file of preset ``name`` (letters, digits, space, ``._()-``; no folders)."""
    text = (name or "").strip()
    if text.endswith(".json"):
        text = text[: -len(".json")]
    if not _NAME.match(text):
        raise OptionsError(
            f"preset name {name!r} is not usable: use letters, digits, spaces and ._()- only"
        )
    return Path(folder) / f"{text}.json"


def list_presets(folder: str | os.PathLike[str]) -> list[str]:
    """Names of the presets in ``folder``, sorted."""
    path = Path(folder)
    if not path.is_dir():
        return []
    return sorted(p.stem for p in path.glob("*.json") if p.is_file())


def save_preset(
    folder: str | os.PathLike[str],
    name: str,
    *,
    model: str | None,
    captioner: str | None,
    auto_interrogate: bool,
    tag_options: TagOptions,
    batch_options: BatchOptions,
) -> Path:
    """Write a preset (atomically) and return its path."""
    path = preset_path(folder, name)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {
        "model": model,
        "captioner": captioner,
        "auto_interrogate": bool(auto_interrogate),
        "tag_options": dump(tag_options),
        "batch_options": dump(batch_options),
    }
    atomic_write_text(path, json.dumps(data, indent=2, ensure_ascii=False) + "\n")
    return path


def load_preset(folder: str | os.PathLike[str], name: str) -> dict[str, Any]:
    """Read and validate a preset; returns the same keys with option models as values."""
    path = preset_path(folder, name)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise OptionsError(f"preset {name!r} does not exist in {path.parent}") from None
    except (OSError, ValueError) as exc:
        raise OptionsError(f"preset {path} cannot be read: {exc}") from None
    if not isinstance(data, dict):
        raise OptionsError(f"preset {path} is not a JSON object")
    unknown = sorted(set(data) - set(PRESET_KEYS))
    if unknown:
        raise OptionsError(f"preset {path} has unknown keys {unknown}; known: {list(PRESET_KEYS)}")
    try:
        tag_options = parse(TagOptions, data.get("tag_options") or {})
        batch_options = parse(BatchOptions, data.get("batch_options") or {})
    except Exception as exc:
        if type(exc).__name__ == "ValidationError":
            raise OptionsError(f"preset {path} has invalid options: {exc}") from None
        raise
    return {
        "model": data.get("model"),
        "captioner": data.get("captioner"),
        "auto_interrogate": bool(data.get("auto_interrogate", False)),
        "tag_options": tag_options,
        "batch_options": batch_options,
    }
