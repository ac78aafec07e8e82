"""Fixing what the checks found: moving images (with their caption and sidecar) to the trash.

Nothing is deleted: files go to ``<dataset>/.tagger/trash/`` under their relative path, in one
journaled move (``tagger.dataset.journal.move_to_trash``), and ``undo`` brings them back. For
the duplicate checks the first image of each group stays and the others move.
"""

from __future__ import annotations

# ruff: noqa: PTH110, PTH112, PTH118, PTH120
import os
from collections.abc import Iterable, Sequence
from typing import Any

from tagger.dataset.checks import CheckResult, expand_checks
from tagger.dataset.journal import journal_dir, move_to_trash
from tagger.dataset.options import DatasetOptions
from tagger.dataset.reader import SIDECAR_EXTENSION, caption_of

GROUP_CHECKS = ("duplicates", "near_duplicates", "clip_duplicates")


def companions(image: str, dataset: DatasetOptions) -> list[str]:
    """An image with its caption and sidecar, those that exist.

    >>> companions("/no/such/a.png", DatasetOptions())
    ['/no/such/a.png']
    """
    files = [image]
    for extension in (dataset.caption_extension, SIDECAR_EXTENSION):
        other = caption_of(image, extension)
        if other != image and os.path.lexists(other):
            files.append(other)
    return files


def to_trash(result: CheckResult, checks: Iterable[str]) -> list[str]:
    """The relative paths the named checks' findings would move (first of a group kept)."""
    names = set(expand_checks(checks))
    chosen: list[str] = []
    for finding in result.findings:
        if finding.check not in names:
            continue
        if finding.check in GROUP_CHECKS:
            if finding.detail.endswith("similar images") or finding.detail == "the first copy":
                continue
            if "images alike in CLIP" in finding.detail:
                continue
        elif finding.check == "captions" and finding.detail != "a caption file without an image":
            continue
        chosen.append(finding.path)
    return list(dict.fromkeys(chosen))


def trash_images(
    paths: Sequence[str | os.PathLike[str]],
    relative: Sequence[str],
    dataset: DatasetOptions | None = None,
    *,
    journal_folder: str | None = None,
    description: str = "move to trash",
) -> dict[str, Any]:
    """Move images (relative to the dataset root, ``paths[0]``) and their caption and sidecar
    into the trash; returns ``{"journal", "moved", "failed"}``."""
    dataset = dataset or DatasetOptions()
    root = os.fspath(paths[0])
    base = root if os.path.isdir(root) else os.path.dirname(root)
    files: list[str] = []
    for rel in relative:
        image = os.path.join(base, rel)
        if rel.endswith(dataset.caption_extension) and not os.path.exists(image):
            continue
        files.extend(companions(image, dataset))
    journal, failed, moved = move_to_trash(
        files, base, journal_dir(paths, journal_folder), description
    )
    return {"journal": journal, "moved": moved, "failed": [[p, r] for p, r in failed]}


def trash_findings(
    paths: Sequence[str | os.PathLike[str]],
    result: CheckResult,
    checks: Iterable[str],
    dataset: DatasetOptions | None = None,
    *,
    journal_folder: str | None = None,
) -> dict[str, Any]:
    """Move what the named checks found into the trash (see ``to_trash``)."""
    names = list(checks)
    chosen = to_trash(result, names)
    return trash_images(
        paths,
        chosen,
        dataset,
        journal_folder=journal_folder,
        description="trash what these checks found: " + ", ".join(names),
    )
