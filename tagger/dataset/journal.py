"""The journal of the workbench's changes, and ``undo``, which restores every file byte for byte.

Each change to a dataset (a bulk edit, a caption edited by hand, files moved to the trash) is
one journal: a folder ``<dataset>/.tagger/journal/<id>/`` (hidden, so no tagger walk and no
trainer sees it) holding ``meta.json`` (what was done, when, and its state) and numbered parts,
one JSON line per file:

- ``{"op": "write", "path": ..., "before": <base64 of the old bytes, or null: no file>,
  "after": <SHA-256 of the new bytes>}``;
- ``{"op": "move", "path": ..., "to": ...}``: a file moved (to the trash).

A part is written (through the safe writer, flushed to the disk) *before* any of its files
change, while the files' folder is locked, so an edit that is killed half-way is still undone
exactly: the files it had not reached still hold their ``before`` bytes and are left alone.

``undo`` walks a journal backwards. A file is restored only when it still holds what the change
wrote (its SHA-256 is ``after``); one changed since (a later edit, a tagging run, a hand edit)
is reported as a conflict and kept, unless ``force`` is given, so an undo never loses later
work either. The journal is then marked ``undone`` (``partly`` while conflicts are left; the
next undo picks it again) and is not replayed twice.
"""

# Paths stay strings here (os.path): a dataset walk handles millions of them.
# ruff: noqa: PTH108, PTH118, PTH119, PTH120

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tagger.errors import OptionsError, OutputError
from tagger.safeio import (
    atomic_write_bytes,
    atomic_write_text,
    folder_lock,
    move_file,
    read_bytes_nofollow,
)

#: The workbench's folder inside a dataset (journals, trash).
STATE_DIR = ".tagger"
JOURNAL_DIR = "journal"
TRASH_DIR = "trash"
META = "meta.json"


def sha256(data: bytes) -> str:
    """Hex SHA-256 of bytes.

    >>> sha256(b"")[:12]
    'e3b0c44298fc'
    """
    return hashlib.sha256(data).hexdigest()


def dataset_root(paths: Sequence[str | os.PathLike[str]]) -> Path:
    """The folder a dataset's journals and trash live in: the first folder given (an image
    file's own folder).

    >>> str(dataset_root(["/no/such/a.png"]))
    '/no/such'
    """
    if not paths:
        raise OptionsError("no dataset path given")
    first = Path(os.fspath(paths[0]))
    return first if first.is_dir() else first.parent


def journal_dir(paths: Sequence[str | os.PathLike[str]], override: str | None = None) -> Path:
    """Where the journals of a dataset are: ``override``, else ``<root>/.tagger/journal``."""
    if override:
        return Path(override)
    return dataset_root(paths) / STATE_DIR / JOURNAL_DIR


def new_id() -> str:
    """A journal id that sorts by time: ``20240131-235959-<microseconds>-<4 hex>``."""
    now = time.time()
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(now))
    return f"{stamp}-{int(now % 1 * 1e6):06d}-{secrets.token_hex(2)}"


@dataclass
class Change:
    """One file's change, as recorded."""

    op: str
    path: str
    before: bytes | None = None
    after: str | None = None
    to: str | None = None

    def to_json(self) -> str:
        """The journal line."""
        record: dict[str, Any] = {"op": self.op, "path": self.path}
        if self.op == "write":
            record["before"] = None if self.before is None else base64.b64encode(self.before)
            if record["before"] is not None:
                record["before"] = record["before"].decode("ascii")
            record["after"] = self.after
        else:
            record["to"] = self.to
        return json.dumps(record, ensure_ascii=False)

    @classmethod
    def from_json(cls, line: str) -> Change:
        """A change from its journal line."""
        record = json.loads(line)
        before = record.get("before")
        return cls(
            op=record["op"],
            path=record["path"],
            before=None if before is None else base64.b64decode(before),
            after=record.get("after"),
            to=record.get("to"),
        )


class Journal:
    """A journal being written (``Journal.create``) or read (``Journal.open``)."""

    def __init__(self, folder: Path, meta: dict[str, Any]) -> None:
        self.folder = folder
        self.meta = meta

    # -- writing -------------------------------------------------------------------------------
    @classmethod
    def create(cls, where: Path, kind: str, description: str, details: dict[str, Any]) -> Journal:
        """Start a journal under ``where`` (its ``meta.json`` says ``applying``)."""
        ident = new_id()
        folder = where / ident
        while folder.exists():
            ident = new_id()
            folder = where / ident
        meta = {
            "id": ident,
            "kind": kind,
            "description": description,
            "details": details,
            "created": time.time(),
            "state": "applying",
            "parts": 0,
            "files": 0,
        }
        journal = cls(folder, meta)
        journal.save()
        return journal

    def save(self) -> None:
        """Write ``meta.json`` (atomically)."""
        atomic_write_text(self.folder / META, json.dumps(self.meta, indent=2) + "\n")

    def record(self, changes: Sequence[Change]) -> None:
        """Write one part (before any of its files change)."""
        if not changes:
            return
        self.meta["parts"] += 1
        self.meta["files"] += len(changes)
        body = "".join(change.to_json() + "\n" for change in changes)
        atomic_write_bytes(self.folder / f"part-{self.meta['parts']:06d}.jsonl", body.encode())

    def finish(self, **counts: Any) -> None:
        """Mark the journal complete, with the edit's counts."""
        self.meta["state"] = "done"
        self.meta.update(counts)
        self.save()

    def discard(self) -> None:
        """Remove a journal that recorded nothing (its own folder only)."""
        if self.meta["parts"]:
            raise ValueError(f"journal {self.id} recorded changes; it is kept")
        (self.folder / META).unlink(missing_ok=True)
        try:
            self.folder.rmdir()
        except OSError:
            pass

    # -- reading -------------------------------------------------------------------------------
    @classmethod
    def open(cls, folder: Path) -> Journal:
        """A journal from its folder (``OptionsError`` when it is not one)."""
        try:
            meta = json.loads((folder / META).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise OptionsError(f"{folder} is not a readable journal: {exc}") from None
        return cls(folder, meta)

    @property
    def id(self) -> str:
        """The journal's id."""
        return str(self.meta["id"])

    def parts(self) -> list[Path]:
        """The part files, in order."""
        return sorted(self.folder.glob("part-*.jsonl"))

    def changes(self, *, backwards: bool = False) -> Iterator[Change]:
        """Every recorded change, in order (or last first); one part in memory at a time."""
        parts = self.parts()
        for part in reversed(parts) if backwards else parts:
            lines = [line for line in part.read_text(encoding="utf-8").split("\n") if line.strip()]
            for line in reversed(lines) if backwards else lines:
                yield Change.from_json(line)

    def summary(self) -> dict[str, Any]:
        """The meta data for listings."""
        return dict(self.meta)


def list_journals(where: Path) -> list[Journal]:
    """Every journal under ``where``, oldest first."""
    if not where.is_dir():
        return []
    found = []
    for folder in sorted(where.iterdir()):
        if (folder / META).is_file():
            try:
                found.append(Journal.open(folder))
            except OptionsError:
                continue
    return sorted(found, key=lambda j: (float(j.meta.get("created", 0)), j.id))


def find_journal(where: Path, ident: str | None) -> Journal:
    """The journal ``ident`` (a unique prefix is enough), or the newest not undone."""
    journals = list_journals(where)
    if ident:
        matches = [j for j in journals if j.id.startswith(ident)]
        if len(matches) != 1:
            known = ", ".join(j.id for j in journals[-5:]) or "none"
            what = "no journal" if not matches else "several journals"
            raise OptionsError(f"{what} match {ident!r} in {where} (latest: {known})")
        return matches[0]
    for journal in reversed(journals):
        if journal.meta.get("state") != "undone":
            return journal
    raise OptionsError(f"nothing to undo: no journal in {where} that is not undone yet")


@dataclass
class UndoResult:
    """What an undo did."""

    journal: str
    restored: int = 0
    unchanged: int = 0
    conflicts: list[tuple[str, str]] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    dry_run: bool = False

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON values."""
        return {
            "journal": self.journal,
            "restored": self.restored,
            "unchanged": self.unchanged,
            "conflicts": [[p, r] for p, r in self.conflicts],
            "failed": [[p, r] for p, r in self.failed],
            "dry_run": self.dry_run,
        }


def _undo_write(change: Change, force: bool, dry_run: bool) -> str:
    """Restore one written file; returns ``restored``, ``unchanged`` or raises _ConflictError."""
    current = read_bytes_nofollow(change.path)
    if current == change.before:
        return "unchanged"
    if (current is None or sha256(current) != change.after) and not force:
        state = "it was removed" if current is None else "it was changed"
        raise _ConflictError(f"{state} after this edit; kept as it is (use --force to restore)")
    if dry_run:
        return "restored"
    if change.before is None:
        if current is not None:
            os.unlink(change.path)
    else:
        atomic_write_bytes(change.path, change.before)
    return "restored"


def _undo_move(change: Change, force: bool, dry_run: bool) -> str:
    """Move a file back from where it was moved."""
    assert change.to is not None
    if os.path.lexists(change.path):
        if not os.path.lexists(change.to):
            return "unchanged"
        raise _ConflictError(f"a file is at its place again; the moved copy stays at {change.to}")
    if not os.path.lexists(change.to):
        raise _ConflictError(f"the moved file {change.to} is gone")
    if not dry_run:
        move_file(change.to, change.path)
    return "restored"


class _ConflictError(Exception):
    """A file that may not be restored."""


def undo(
    where: Path, ident: str | None = None, *, force: bool = False, dry_run: bool = False
) -> UndoResult:
    """Undo one journal (the newest not undone when ``ident`` is None); see the module doc."""
    journal = find_journal(where, ident)
    if journal.meta.get("state") == "undone" and not force:
        raise OptionsError(f"journal {journal.id} is already undone")
    result = UndoResult(journal.id, dry_run=dry_run)
    for change in journal.changes(backwards=True):
        with folder_lock(os.path.dirname(change.path) or "."):
            try:
                if change.op == "write":
                    state = _undo_write(change, force, dry_run)
                elif change.op == "move":
                    state = _undo_move(change, force, dry_run)
                else:
                    raise _ConflictError(f"unknown journal operation {change.op!r}")
            except _ConflictError as exc:
                result.conflicts.append((change.path, str(exc)))
                continue
            except (OutputError, OSError) as exc:
                result.failed.append((change.path, str(exc)))
                continue
        if state == "restored":
            result.restored += 1
        else:
            result.unchanged += 1
    if not dry_run:
        # with conflicts left, it stays the journal a plain undo (or --force) picks next
        journal.meta["state"] = "undone" if not (result.conflicts or result.failed) else "partly"
        journal.meta["undone"] = time.time()
        journal.meta["undo"] = result.to_dict()
        journal.save()
    return result


def trash_root(root: str | os.PathLike[str]) -> Path:
    """The dataset's trash folder: ``<root>/.tagger/trash`` (hidden: no walk sees it)."""
    return Path(root) / STATE_DIR / TRASH_DIR


def move_to_trash(
    files: Sequence[str],
    root: str | os.PathLike[str],
    where: Path,
    description: str,
) -> tuple[str | None, list[tuple[str, str]], list[str]]:
    """Move files (an image and its caption and sidecar, typically) into the dataset's trash,
    keeping their path relative to ``root``; journaled under ``where`` so ``undo`` moves them
    back. Returns (journal id or None, failures, moved paths). A name already in the trash gets
    a numbered suffix; files outside ``root`` are refused.
    """
    base = os.path.realpath(root)
    trash = trash_root(root)
    plans: list[Change] = []
    failed: list[tuple[str, str]] = []
    for path in dict.fromkeys(files):
        real = os.path.realpath(os.path.dirname(path) or ".")
        if not (real == base or real.startswith(base + os.sep)):
            failed.append((path, f"is outside the dataset folder {root}"))
            continue
        if not os.path.lexists(path):
            continue
        relative = os.path.relpath(os.path.join(real, os.path.basename(path)), base)
        target = trash / relative
        number = 1
        while os.path.lexists(target) or any(c.to == str(target) for c in plans):
            target = trash / f"{relative}.{number}"
            number += 1
        plans.append(Change("move", path, to=str(target)))
    if not plans:
        return None, failed, []
    journal = Journal.create(where, "trash", description, {"files": [c.path for c in plans]})
    journal.record(plans)
    moved = []
    for change in plans:
        assert change.to is not None
        with folder_lock(os.path.dirname(change.path) or "."):
            try:
                move_file(change.path, change.to)
            except OSError as exc:
                failed.append((change.path, str(exc)))
                continue
        moved.append(change.path)
    journal.finish(changed=len(moved), unchanged=0, failed=len(failed))
    return journal.id, failed, moved
