"""Output files: caption text, JSON sidecars and the JSONL manifest.

Every file is written through ``tagger.safeio``: a temporary file created exclusively in the
target's folder and renamed over the target, so a run that is killed never leaves half a file
and a symbolic link cannot redirect a write. The manifest is the one file appended to in place
(so a killed run keeps the lines of the images it finished); it is opened without following a
link, and rewritten through the same writer when lines must be replaced.
"""

from __future__ import annotations

import json
import logging
import os
import stat
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

from tagger.errors import OutputError
from tagger.safeio import AtomicFile, atomic_write_text, link_error, open_nofollow
from tagger.tags import dedupe

log = logging.getLogger("tagger")

__all__ = [
    "Manifest",
    "atomic_write_text",
    "merge_caption",
    "rounded",
    "sidecar_json",
    "split_caption",
]


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


def _record_name(line: bytes) -> str | None:
    """The ``file_name`` of a manifest line, or None for a line that is not a record."""
    try:
        name = json.loads(line.decode("utf-8", errors="replace")).get("file_name")
    except (ValueError, AttributeError):
        return None
    return name if isinstance(name, str) else None


def _lines(handle: IO[bytes]) -> Iterator[bytes]:
    """Every line of a file, a last line without its line ending included."""
    for line in handle:
        if line.strip():
            yield line if line.endswith(b"\n") else line + b"\n"


class Manifest:
    """A JSONL file with one line per image (the layout of a Hugging Face ``metadata.jsonl``).

    With ``resume=True`` the lines already there are kept and ``done`` holds their
    ``file_name`` values (a last line without a line ending is read like any other); new lines
    are appended and flushed one by one, so a killed run keeps what it finished. An image written
    again replaces its old line: when the run ends (``close``), the file is rewritten through the
    safe writer with only the last line of each image, in the original order. Lines that are not
    records (hand edits, a line cut by a kill) are kept as they are. Without ``resume`` the
    file starts empty: it is written under a temporary name and replaces the old one on
    ``close``. Nothing is opened for writing before the first line, so a run that writes no
    image leaves the file as it was.
    """

    def __init__(self, path: str | os.PathLike[str], *, resume: bool, fsync: bool = True) -> None:
        self.path = Path(path)
        self.root = self.path.parent.resolve()
        self.resume = resume
        self.fsync = fsync
        self.done: set[str] = set()
        self._again: set[str] = set()  # names with more than one line in the file
        self._atomic: AtomicFile | None = None
        self._handle: IO[bytes] | None = None
        self._unterminated = False
        self._cut_at: int | None = None
        if resume:
            self._load_existing()

    def _load_existing(self) -> None:
        """Read the file's records (never through a symbolic link)."""
        handle = open_nofollow(self.path)
        if handle is None:
            return
        with handle:
            line, name, offset = b"", None, 0
            for line in handle:
                offset += len(line)
                name = _record_name(line)
                if name is None:
                    continue
                if name in self.done:
                    self._again.add(name)
                self.done.add(name)
        if line and not line.endswith(b"\n"):
            # a record without its line ending is a record; anything else there is the
            # unfinished line of a killed run, cut before the next line is appended
            self._unterminated = True
            self._cut_at = offset - len(line) if name is None else None

    def _open(self) -> IO[bytes]:
        """The handle lines go to: the file itself (resume) or a new temporary file."""
        if self._handle is not None:
            return self._handle
        if not self.resume:
            self._atomic = AtomicFile(self.path, fsync=self.fsync)
            self._handle = self._atomic.handle
            return self._handle
        flags = os.O_RDWR | os.O_APPEND | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0)
        flags |= getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(self.path, flags, 0o666)
        except OSError:
            if self.path.is_symlink():
                raise link_error(self.path) from None
            raise
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise OutputError(str(self.path), "is not a regular file")
        self._handle = os.fdopen(fd, "a+b")
        if self._cut_at is not None:
            log.warning("%s: cutting an unfinished last line (left by a killed run)", self.path)
            self._handle.truncate(self._cut_at)
        elif self._unterminated:  # a last record without its line ending stays a line
            self._handle.write(b"\n")
        return self._handle

    def file_name(self, image: Path) -> str:
        """The image's ``file_name``: relative to the manifest's folder, with forward slashes."""
        absolute = Path(os.path.abspath(image))
        try:
            return Path(os.path.relpath(absolute, self.root)).as_posix()
        except ValueError:  # another drive on Windows
            return absolute.as_posix()

    def write(self, record: Mapping[str, Any]) -> None:
        """Append one record as a line and flush it (an image already listed is replaced when
        the manifest is closed)."""
        handle = self._open()
        handle.write((json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8"))
        handle.flush()
        name = record.get("file_name")
        if isinstance(name, str):
            if name in self.done:
                self._again.add(name)
            self.done.add(name)

    def close(self) -> None:
        """Finish the file: rename a new one into place, or drop replaced lines. A manifest
        that was never written to is left as it was."""
        handle, self._handle = self._handle, None
        if handle is None:
            return
        if self._atomic is not None:
            self._atomic.commit()
            return
        try:
            handle.flush()
            if self.fsync:
                os.fsync(handle.fileno())
            if self._again:
                self._compact(handle)
        finally:
            handle.close()

    def _compact(self, handle: IO[bytes]) -> None:
        """Rewrite the file keeping only the last line of each image listed more than once."""
        handle.seek(0)
        remaining = Counter(
            name for name in map(_record_name, _lines(handle)) if name in self._again
        )
        handle.seek(0)
        with AtomicFile(self.path, fsync=self.fsync) as out:
            for line in _lines(handle):
                name = _record_name(line)
                if name in remaining:
                    remaining[name] -= 1
                    if remaining[name]:
                        continue  # a later line replaces this one
                out.write(line)
        self._again.clear()
