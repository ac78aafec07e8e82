"""kohya-ss sd-scripts' flag spellings (``--general_threshold``, ``--batch_size``, ...).

Dataset builders switching from ``finetune/tag_images_by_wd14_tagger.py`` and
``finetune/make_captions.py`` type underscores. Each command's parser translates those spellings
into this tool's flags before parsing (so they never show in --help, and reach exactly the same
option as the dashed flag), accepts the few that change nothing here, and refuses the ones this
tool has no meaning for with a message naming what to use instead. docs/kohya.md lists them all.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from tagger.errors import OptionsError


@dataclass(frozen=True)
class Spelling:
    """What one kohya flag becomes.

    ``into``: the tokens it is replaced with (its value, if any, follows unchanged); empty: the
    flag is accepted and dropped. ``value``: kohya's flag takes a value (dropped with the flag
    when ``into`` is empty). ``refuse``: why it is refused and what to use instead. ``note``: a
    warning printed when it is used.
    """

    into: tuple[str, ...] = ()
    value: bool = False
    refuse: str | None = None
    note: str | None = None


def same(flag: str) -> Spelling:
    """A kohya flag that is this tool's ``flag`` (its value, if any, follows)."""
    return Spelling((flag,))


#: Flags both kohya scripts have.
SHARED: dict[str, Spelling] = {
    "--batch_size": same("--batch-size"),
    "--max_data_loader_n_workers": same("--workers"),
    "--caption_extension": same("--caption-extension"),
    "--caption_extention": same("--caption-extension"),  # kohya keeps its old misspelling
    "--debug": same("--verbose"),
}

#: ``tag_images_by_wd14_tagger.py`` -> ``tagger tag``.
TAG: dict[str, Spelling] = {
    **SHARED,
    "--repo_id": same("--repo-id"),
    "--model_dir": same("--models-dir"),
    "--general_threshold": same("--general-threshold"),
    "--character_threshold": same("--character-threshold"),
    "--undesired_tags": same("--undesired-tags"),
    "--remove_underscore": same("--remove-underscore"),
    "--append_tags": same("--append-tags"),
    "--use_rating_tags": same("--use-rating-tags"),
    "--use_rating_tags_as_last_tag": same("--use-rating-tags-as-last-tag"),
    "--character_tags_first": same("--character-tags-first"),
    "--always_first_tags": same("--always-first-tags"),
    "--caption_separator": same("--caption-separator"),
    "--tag_replacement": same("--tag-replacement"),
    "--frequency_tags": Spelling(("--top-tags", "all")),
    "--onnx": Spelling(),  # tagger always runs the ONNX model
    "--meta_threshold": same("--meta-threshold"),
    "--model_threshold": same("--model-threshold"),
    "--copyright_threshold": same("--copyright-threshold"),
    "--artist_threshold": same("--artist-threshold"),
    "--force_download": Spelling(
        refuse="tagger has no forced download: huggingface_hub checks the cached files; to "
        "fetch them again, remove the model from the Hugging Face cache (huggingface_hub's "
        "'hf cache' commands) or point --hf-cache at an empty folder"
    ),
    "--output_path": Spelling(
        refuse="tagger writes one caption file per image (beside it, or under --output-dir) "
        "and, with --jsonl FILE, a manifest with one line per image; kohya's single JSON file "
        "is not written"
    ),
    "--use_quality_tags": same("--use-quality-tags"),
    "--use_quality_tags_as_last_tag": same("--use-quality-tags-as-last-tag"),
    "--character_tag_expand": same("--character-tag-expand"),
}

#: ``make_captions.py`` -> ``tagger caption``.
CAPTION: dict[str, Spelling] = {
    **SHARED,
    "--beam_search": same("--beam-search"),
    "--num_beams": same("--num-beams"),
    "--top_p": same("--top-p"),
    "--max_length": same("--max-length"),
    "--min_length": same("--min-length"),
    "--caption_weights": Spelling(
        refuse="tagger loads BLIP from a transformers folder or the Hub, not the original "
        ".pth file: --model blip-large, blip-base or a folder (see docs/captioners.md)"
    ),
}


def translate(
    argv: Sequence[str], spellings: Mapping[str, Spelling]
) -> tuple[list[str], list[str]]:
    """Rewrite kohya spellings in ``argv`` into this tool's flags; returns the new argv and the
    notes to print. Raises OptionsError for a refused flag. Tokens after ``--`` are kept.

    >>> translate(["x", "--general_threshold", "0.5", "--batch_size=4", "--onnx"], TAG)
    (['x', '--general-threshold', '0.5', '--batch-size=4'], [])
    """
    out: list[str] = []
    notes: list[str] = []
    index = 0
    while index < len(argv):
        token = argv[index]
        if token == "--":
            out.extend(argv[index:])
            break
        name, equals, inline = token.partition("=")
        spelling = spellings.get(name) if token.startswith("--") else None
        index += 1
        if spelling is None:
            out.append(token)
            continue
        if spelling.refuse:
            raise OptionsError(f"{name} (kohya-ss) is not supported: {spelling.refuse}")
        if spelling.note:
            notes.append(f"{name} {spelling.note}")
        if spelling.into:
            out.append(spelling.into[0] + equals + inline)
            out.extend(spelling.into[1:])
        elif spelling.value and not equals:
            index += 1  # the flag's value goes with it
    return out, notes


def model_for_repo_id(repo_id: str, models_dirs: Iterable[str | os.PathLike[str]] | None) -> str:
    """kohya's ``--repo_id`` as this tool's ``--model``.

    The folder kohya downloads it to, ``<--model_dir>/<owner>_<name>``, when it holds the ONNX
    model (``--onnx`` downloads); else the registry key of that repository (downloaded into the
    Hugging Face cache). Anything else is an OptionsError naming ``--model``.
    """
    from tagger.registry import is_wd14_folder, registry_models

    text = repo_id.strip().strip("/")
    if text.count("/") >= 2:  # kohya's owner/name/subdir: a cl_tagger-style release
        for spec in registry_models():
            model = str(spec.setting("model_file", ""))
            if spec.repo_id and f"{spec.repo_id}/{model.rpartition('/')[0]}".lower() == (
                text.lower()
            ):
                return spec.key
    if text.count("/") != 1:
        raise OptionsError(
            f"--repo_id {repo_id!r}: tagger reads SmilingWolf-layout repositories "
            "(owner/name with model.onnx and selected_tags.csv); pass a registry key or a "
            "folder holding those two files with --model"
        )
    for folder in models_dirs or ():
        candidate = Path(folder).expanduser() / text.replace("/", "_")
        if is_wd14_folder(candidate):
            return str(candidate)
    for spec in registry_models():
        if spec.repo_id is not None and spec.repo_id.lower() == text.lower():
            return spec.key
    raise OptionsError(
        f"--repo_id {repo_id!r} is not a model tagger knows: pass --model with a registry key "
        "('tagger models' lists them) or a folder holding model.onnx and selected_tags.csv"
    )
