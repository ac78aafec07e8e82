"""Local model folders of every family: which family a folder is, and which file plays which
role in it.

A folder is recognised by the files it holds, most specific first: ``tagger.json`` (a
declared ONNX classifier), ``preprocess.json`` beside ``selected_tags.csv`` (PixAI's export),
``tag_mapping.json`` (cl_tagger), a Camie ``*metadata.json``, ``tags-selected.csv``
(Z3D-E621), ``classes.json`` (ML-Danbooru), and last ``model.onnx`` + ``selected_tags.csv``
(SmilingWolf's layout: WD14, also IdolSankaku's files). Only file names are looked at here.
"""

from __future__ import annotations

import fnmatch
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tagger.errors import ModelLoadError, ModelNotFoundError
from tagger.families.spec import FAMILIES, Family, declared_family, family

DECLARED_CONFIG = "tagger.json"


def _names(folder: Path) -> list[str]:
    """The file names in a folder, sorted (empty when it cannot be listed)."""
    try:
        return sorted(entry.name for entry in os.scandir(folder) if entry.is_file())
    except OSError:
        return []


def match_file(names: list[str], candidates: tuple[str, ...]) -> str | None:
    """The first candidate present in ``names``; a pattern (``*.onnx``) must match exactly one.

    >>> match_file(["a.onnx", "tags.csv"], ("model.onnx", "*.onnx"))
    'a.onnx'
    >>> match_file(["a.onnx", "b.onnx"], ("*.onnx",)) is None
    True
    """
    for candidate in candidates:
        if any(char in candidate for char in "*?["):
            found = fnmatch.filter(names, candidate)
            if len(found) == 1:
                return found[0]
        elif candidate in names:
            return candidate
    return None


def detect_family(folder: str | os.PathLike[str]) -> str | None:
    """The family of a local model folder, or None when it is no tagger folder.

    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as d:
    ...     for name in ("model.onnx", "tag_mapping.json"):
    ...         _ = Path(d, name).write_text("x")
    ...     detect_family(d)
    'cl_tagger'
    """
    names = _names(Path(folder))
    if not names:
        return None
    if DECLARED_CONFIG in names:
        return "onnx"
    has_graph = any(name.endswith(".onnx") for name in names)
    if not has_graph:
        return None
    if "preprocess.json" in names and "selected_tags.csv" in names:
        return "pixai"
    for name in ("cl_tagger", "camie", "z3d", "mldanbooru"):
        spec = FAMILIES[name]
        if match_file(names, spec.files["labels"]) and match_file(names, spec.files["model"]):
            if name == "mldanbooru" and "selected_tags.csv" in names:
                continue
            return name
    if "model.onnx" in names and "selected_tags.csv" in names:
        return "wd14"
    return None


def read_declared(folder: Path) -> Family:
    """The family a folder's ``tagger.json`` declares."""
    source = str(folder / DECLARED_CONFIG)
    try:
        config = json.loads((folder / DECLARED_CONFIG).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"{source}: cannot be read as JSON ({exc})") from None
    if not isinstance(config, Mapping):
        raise ModelLoadError(f"{source}: expected a JSON object")
    return declared_family(config, source)


def folder_roles(folder: Path, fam: Family) -> dict[str, str]:
    """Each role's file name in a local folder (``model`` and ``labels`` must be there)."""
    names = _names(folder)
    roles: dict[str, str] = {}
    for role, candidates in fam.files.items():
        found = match_file(names, candidates)
        if found is not None:
            roles[role] = found
        elif role in ("model", "labels"):
            raise ModelNotFoundError(
                f"{str(folder)!r} is not a {fam.title} folder: it lacks {' or '.join(candidates)}"
            )
    return roles


def family_folder_settings(folder: Path, name: str) -> tuple[tuple[str, object], ...]:
    """``ModelSpec.settings`` of a local family folder: the file of each role."""
    fam = read_declared(folder) if name == "onnx" else family(name)
    roles = folder_roles(folder, fam)
    return tuple((f"{role}_file", file) for role, file in sorted(roles.items()))


def spec_roles(settings: Mapping[str, Any], files: tuple[str, ...]) -> dict[str, str]:
    """Each role's entry of ``ModelSpec.files``, from the ``<role>_file`` settings.

    >>> spec_roles({"model_file": "a/m.onnx", "labels_file": "a/t.json"}, ("a/m.onnx", "a/t.json"))
    {'model': 'a/m.onnx', 'labels': 'a/t.json'}
    """
    roles = {}
    for key, value in settings.items():
        if key.endswith("_file") and isinstance(value, str):
            if value not in files:
                raise ModelLoadError(f"setting {key} names {value!r}, which is not in the files")
            roles[key[: -len("_file")]] = value
    if "model" not in roles or "labels" not in roles:
        raise ModelLoadError("a family model needs model_file and labels_file settings")
    return roles
