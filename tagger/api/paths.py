"""The folders HTTP batch jobs may read and write: nothing outside them, nothing by default.

A path is allowed when it is absolute, has no ``..`` component, and its real path (every symbolic
link resolved) lies inside the real path of an allowed folder. Inputs, ``output_dir`` and the
JSONL manifest are checked when a job starts; each image and each file it would write is checked
again before it is read (``item_check``), so a symbolic link inside an allowed folder cannot lead
a job outside. (A link created or swapped while a job runs is not guarded against: the allowed
folders must not be writable by people who may not read the rest of the disk.)
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path, PurePath

from tagger.batch import ImageItem, Targets
from tagger.errors import OptionsError, PathNotAllowedError

_GLOB_CHARS = frozenset("*?[")


def _real(path: str | os.PathLike[str]) -> Path:
    """The real path: absolute, symbolic links resolved (missing tails kept as written)."""
    return Path(os.path.realpath(os.fspath(path)))


class AllowList:
    """The allowed folders, resolved once when the API is mounted."""

    def __init__(self, folders: Iterable[str | os.PathLike[str]]) -> None:
        self.roots: tuple[Path, ...] = tuple(
            _real(Path(os.fspath(folder)).expanduser()) for folder in folders
        )

    @property
    def enabled(self) -> bool:
        """False when no folder is allowed (batch jobs are refused)."""
        return bool(self.roots)

    def contains(self, real: Path) -> bool:
        """True when an already resolved path lies in (or is) an allowed folder."""
        return any(real == root or real.is_relative_to(root) for root in self.roots)

    def _describe(self) -> str:
        """The allowed folders, for messages."""
        return ", ".join(str(root) for root in self.roots)

    def require_enabled(self) -> None:
        """Refuse batch jobs when no folder is allowed."""
        if not self.enabled:
            raise PathNotAllowedError(
                "batch jobs are turned off: this server allows no folders (its owner can allow "
                "some with tagger serve --allow-dir DIR, or in the webui's tagger settings)"
            )

    def check(self, path: str, what: str, *, pattern: bool = False) -> Path:
        """Return the checked path (as given) or raise ``PathNotAllowedError`` / ``OptionsError``.

        With ``pattern`` a glob pattern is checked up to its first wildcard; what it matches is
        checked image by image when the job runs.
        """
        self.require_enabled()
        text = os.fspath(path)
        if not text or "\x00" in text:
            raise OptionsError(f"{what} {text!r} is not a path")
        pure = PurePath(text)
        if not pure.is_absolute():
            raise OptionsError(
                f"{what} {text!r} is not an absolute path: give the full path of a folder "
                f"inside the allowed folders ({self._describe()})"
            )
        if ".." in pure.parts:
            raise PathNotAllowedError(f"{what} {text!r} contains '..': give a direct path")
        fixed: list[str] = []
        for part in pure.parts:
            if pattern and _GLOB_CHARS.intersection(part):
                break
            fixed.append(part)
        if not self.contains(_real(Path(*fixed))):
            raise PathNotAllowedError(
                f"{what} {text!r} is outside the folders this server allows ({self._describe()})"
            )
        return Path(text)

    def item_check(self, item: ImageItem, targets: Targets) -> str | None:
        """The batch engine's per-image check: why an image may not be read or written, or None.

        The image's real path, the real folder of every file it would write, and the real
        target of an existing output that is a symbolic link must all be allowed.
        """
        if not self.contains(_real(item.path)):
            return "it leads outside the allowed folders (a symbolic link); not read"
        for target in (targets.caption, targets.json):
            if target is None:
                continue
            if not self.contains(_real(target.parent)):
                return f"its output {target.name} would be written outside the allowed folders"
            if os.path.lexists(target) and not self.contains(_real(target)):
                return f"its output {target.name} is a link leading outside the allowed folders"
        return None
