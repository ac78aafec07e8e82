"""Output files: caption text, JSON sidecars and the JSONL manifest, all written safely.

Every file is written to a temporary name in the target folder and renamed over the target, so a
run that is killed never leaves half a file: a reader sees the old file or the new one.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TextIO

from tagger.tags import dedupe

TMP_SUFFIX = ".tagger-tmp"


def temp_path(path: Path) -> Path:
    """The temporary name a file is written under before it is renamed to ``path``.

    It is hidden and fixed per target, so a rerun after a kill reuses (and so removes) it.

    >>> temp_path(Path("a/b.txt")).as_posix()
    'a/.b.txt.tagger-tmp'
    """
    return path.with_name(f".{path.name}{TMP_SUFFIX}")


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` through a temporary file and an atomic rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(path)
    try:
        with open(tmp, "w", encoding="utf-8", newline="\n") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        try:
            tmp.unlink()
        except OSError:
            pass
        raise


def split_caption(text: str, separator: str = ", ") -> list[str]:
    """Split caption text into its tags on the separator (stripped), dropping empty pieces.

    >>> split_caption("1girl, solo,, smile\\n")
    ['1girl', 'solo', 'smile']
    """
    sep = separator.strip() or separator
    return [piece.strip() for piece in text.split(sep) if piece.strip()]


def merge_caption(existing: str, new_tags: Sequence[str], mode: str, separator: str = ", ") -> str:
    """Combine an existing caption with new tags without duplicates (``append`` or ``prepend``).

    Tags compare as the exclude list does (any case, spaces or underscores), and the first
    occurrence is kept, so hand-written tags keep their spelling.

    >>> merge_caption("my_character, solo", ["1girl", "solo"], "append")
    'my_character, solo, 1girl'
    >>> merge_caption("my_character, solo", ["1girl", "solo"], "prepend")
    '1girl, solo, my_character'
    """
    old = split_caption(existing, separator)
    if mode == "append":
        merged = dedupe([*old, *new_tags])
    elif mode == "prepend":
        merged = dedupe([*new_tags, *old])
    else:
        raise ValueError(f"merge mode must be 'append' or 'prepend', not {mode!r}")
    return separator.join(merged)


def rounded(scores: Mapping[str, float], digits: int = 6) -> dict[str, float]:
    """Scores rounded for JSON output (6 digits: far below any threshold step)."""
    return {name: round(float(score), digits) for name, score in scores.items()}


def sidecar_json(record: Mapping[str, Any]) -> str:
    """Serialise a sidecar record: UTF-8 text, names kept as they are, stable layout."""
    return json.dumps(record, ensure_ascii=False, indent=2) + "\n"


class Manifest:
    """A JSONL file with one line per image (the layout of a Hugging Face ``metadata.jsonl``).

    With ``resume=True`` the lines already there are kept (a partial last line, left by a killed
    run, is cut off) and ``done`` holds their ``file_name`` values; otherwise the file starts
    empty. Each line is flushed as soon as it is written.
    """

    def __init__(self, path: str | os.PathLike[str], *, resume: bool) -> None:
        self.path = Path(path)
        self.root = self.path.parent.resolve()
        self.done: set[str] = set()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if resume and self.path.exists():
            self._load_existing()
        mode = "a" if resume else "w"
        # Kept open for the whole run and closed by close(); one line is flushed per image.
        self._handle: TextIO = open(self.path, mode, encoding="utf-8", newline="\n")  # noqa: SIM115

    def _load_existing(self) -> None:
        """Read the finished lines and cut any unfinished tail."""
        data = self.path.read_bytes()
        end = data.rfind(b"\n") + 1
        if end != len(data):
            with open(self.path, "r+b") as handle:
                handle.truncate(end)
        for line in data[:end].decode("utf-8", errors="replace").splitlines():
            try:
                name = json.loads(line).get("file_name")
            except (ValueError, AttributeError):
                continue
            if isinstance(name, str):
                self.done.add(name)

    def file_name(self, image: Path) -> str:
        """The image's ``file_name``: relative to the manifest's folder, with forward slashes."""
        absolute = Path(os.path.abspath(image))
        try:
            return Path(os.path.relpath(absolute, self.root)).as_posix()
        except ValueError:  # another drive on Windows
            return absolute.as_posix()

    def write(self, record: Mapping[str, Any]) -> None:
        """Append one record as a line and flush it."""
        self._handle.write(json.dumps(record, ensure_ascii=False) + "\n")
        self._handle.flush()
        name = record.get("file_name")
        if isinstance(name, str):
            self.done.add(name)

    def close(self) -> None:
        """Close the file."""
        self._handle.close()
