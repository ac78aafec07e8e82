"""Bulk edits of a dataset's captions, with a dry run (the diff) and a journal for ``undo``.

An edit (``EditSpec``) is applied to each caption's tags as pure functions, in this order:
rename, replace, remove, clean-up functions, de-duplicate, reorder (keeping the first
``keep_first`` in place), ``max_tags``, ``add_last``, ``add_first``, the trigger word. A caption
whose tags come out the same is not touched. Tags compare as everywhere in tagger: any case,
``_`` or space, ``*`` and ``?`` wildcards.

``run_edit`` goes folder by folder. Without ``dry_run`` it holds the folder's lock
(``tagger.safeio.folder_lock``, which tagging runs hold too) while it reads that folder's
captions, writes the journal part of what will change, and writes the new captions through the
safe writer, keeping each file's byte order mark, line endings and final line ending. With
``dry_run`` nothing is written and the result holds the unified diff of every change.
"""

# Paths stay strings here (os.path): a dataset walk handles millions of them.
# ruff: noqa: PTH119, PTH120

from __future__ import annotations

import difflib
import hashlib
import os
import random
import re
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tagger.dataset.cleanup import get_cleanup
from tagger.dataset.filters import Record, compile_filter
from tagger.dataset.journal import Change, Journal, journal_dir, sha256
from tagger.dataset.options import DatasetOptions, EditSpec
from tagger.dataset.reader import Entry, iter_entries, join_tags, split_tags
from tagger.errors import OptionsError, OutputError
from tagger.safeio import (
    NEW_FILE_STYLE,
    atomic_write_bytes,
    decode_text,
    encode_text,
    folder_lock,
    read_bytes_nofollow,
)
from tagger.tags import dedupe, normalize_tag, tag_matches

#: Captions per journal part (and per hold of a folder's lock).
CHUNK = 2000
#: Diffs kept in a result (the counts are always complete).
DEFAULT_DIFFS = 200


# -- the edit on one caption's tags -----------------------------------------------------------


def _rename_rule(old: str, new: str) -> Callable[[str], str | None]:
    """The new name of a tag when ``old`` matches it, else None."""
    pattern = normalize_tag(old)
    if "*" not in pattern and "?" not in pattern:
        return lambda tag: new.strip() if normalize_tag(tag) == pattern else None
    regex = re.compile(
        "".join("(.*)" if ch == "*" else "(.)" if ch == "?" else re.escape(ch) for ch in pattern)
        + r"\Z"
    )
    wildcards = pattern.count("*")

    def rename(tag: str) -> str | None:
        match = regex.match(normalize_tag(tag))
        if match is None:
            return None
        if wildcards == 1 and new.count("*") == 1:
            star = next(g for ch, g in zip(_wild(pattern), match.groups(), strict=True) if ch)
            return new.replace("*", star).strip()
        return new.strip()

    return rename


def _wild(pattern: str) -> list[bool]:
    """For each wildcard of a pattern in order: True for ``*``, False for ``?``."""
    return [ch == "*" for ch in pattern if ch in "*?"]


def rename_tags(tags: Sequence[str], rules: Mapping[str, str]) -> list[str]:
    """Rename tags by ``rules`` (the first matching rule wins); a rename to an empty name drops
    the tag, and a name already present merges into it (the first kept).

    >>> rename_tags(["Long_Hair", "solo", "long hair"], {"long hair": "hair"})
    ['hair', 'solo']
    >>> rename_tags(["blue_hair", "red hair", "hat"], {"* hair": "* fur"})
    ['blue fur', 'red fur', 'hat']
    """
    compiled = [_rename_rule(old, new) for old, new in rules.items() if old.strip()]
    if not compiled:
        return list(tags)
    out: list[str] = []
    renamed: set[int] = set()
    for tag in tags:
        for rule in compiled:
            new = rule(tag)
            if new is not None:
                if new:
                    renamed.add(len(out))
                    out.append(new)
                break
        else:
            out.append(tag)
    if not renamed:
        return out
    return dedupe(out)


def replace_text(tags: Sequence[str], rules: Mapping[str, str]) -> list[str]:
    """Replace text inside each tag (exact, case-sensitive); tags left empty are dropped.

    >>> replace_text(["long hair", "hairband"], {"hair": "fur"})
    ['long fur', 'furband']
    """
    out = []
    for tag in tags:
        for old, new in rules.items():
            if old:
                tag = tag.replace(old, new)
        if tag.strip():
            out.append(tag.strip())
    return out


def remove_tags(tags: Sequence[str], patterns: Sequence[str]) -> list[str]:
    """Drop the tags matching any pattern.

    >>> remove_tags(["long_hair", "short hair", "solo"], ["*_hair"])
    ['solo']
    """
    if not any(p.strip() for p in patterns):
        return list(tags)
    return [tag for tag in tags if not tag_matches(tag, patterns)]


def add_missing(tags: Sequence[str], new: Sequence[str], *, first: bool) -> list[str]:
    """Add the tags of ``new`` that are missing, at the start or the end (in their order).

    >>> add_missing(["a", "b"], ["c", "A"], first=True)
    ['c', 'a', 'b']
    """
    present = {normalize_tag(tag) for tag in tags}
    missing = [t.strip() for t in dedupe([t for t in new if t.strip()])]
    missing = [t for t in missing if normalize_tag(t) not in present]
    return [*missing, *tags] if first else [*tags, *missing]


def put_first(tags: Sequence[str], trigger: str) -> list[str]:
    """The trigger word first: moved there when present (any spelling), added otherwise.

    >>> put_first(["1girl", "My_Trigger"], "my trigger")
    ['My_Trigger', '1girl']
    """
    word = trigger.strip()
    if not word:
        return list(tags)
    key = normalize_tag(word)
    found = [t for t in tags if normalize_tag(t) == key]
    rest = [t for t in tags if normalize_tag(t) != key]
    return [found[0] if found else word, *rest]


def shuffle_seed(seed: int, path: str) -> int:
    """The per-file seed of a shuffle: the same file shuffles the same way again.

    >>> shuffle_seed(0, "a.txt") == shuffle_seed(0, "a.txt") != shuffle_seed(1, "a.txt")
    True
    """
    digest = hashlib.blake2b(f"{seed}\0{path}".encode("utf-8", "surrogatepass"), digest_size=8)
    return int.from_bytes(digest.digest(), "little")


def reorder(
    tags: Sequence[str],
    order: str,
    keep_first: int = 0,
    *,
    frequency: Mapping[str, int] | None = None,
    seed: int = 0,
) -> list[str]:
    """The tags after the first ``keep_first`` in a new order (the first ones stay).

    ``frequency``: most frequent first (ties alphabetical), counted by ``normalize_tag``;
    ``alphabetical`` compares ``normalize_tag`` text; ``shuffle`` uses ``seed``.

    >>> reorder(["t", "b", "a", "c"], "alphabetical", 1)
    ['t', 'a', 'b', 'c']
    >>> reorder(["a", "b", "c"], "frequency", frequency={"c": 5, "a": 2, "b": 2})
    ['c', 'a', 'b']
    """
    head, tail = list(tags[:keep_first]), list(tags[keep_first:])
    if order == "none":
        return [*head, *tail]
    if order == "alphabetical":
        tail.sort(key=normalize_tag)
    elif order == "reverse":
        tail.reverse()
    elif order == "frequency":
        counts = frequency or {}
        tail.sort(key=lambda t: (-counts.get(normalize_tag(t), 0), normalize_tag(t)))
    elif order == "shuffle":
        random.Random(seed).shuffle(tail)
    else:
        raise OptionsError(
            f"order {order!r} is not one of none, frequency, alphabetical, reverse, shuffle"
        )
    return [*head, *tail]


def apply_spec(
    tags: Sequence[str],
    spec: EditSpec,
    *,
    frequency: Mapping[str, int] | None = None,
    path: str = "",
) -> list[str]:
    """One caption's tags after the edit (see the module's order).

    >>> spec = EditSpec(rename={"long_hair": "long hair"}, remove=["solo"], trigger="ohwx")
    >>> apply_spec(["1girl", "long_hair", "solo"], spec)
    ['ohwx', '1girl', 'long hair']
    """
    out = list(tags)
    if spec.rename:
        out = rename_tags(out, spec.rename)
    if spec.replace:
        out = replace_text(out, spec.replace)
    if spec.remove:
        out = remove_tags(out, spec.remove)
    for name in spec.cleanup:
        out = list(get_cleanup(name)(out))
    if spec.dedupe:
        out = dedupe(out)
    if spec.order != "none":
        seed = shuffle_seed(spec.seed, path) if spec.order == "shuffle" else 0
        out = reorder(out, spec.order, spec.keep_first, frequency=frequency, seed=seed)
    if spec.max_tags and len(out) > spec.max_tags:
        out = out[: max(spec.max_tags, spec.keep_first)]
    if spec.add_last:
        out = add_missing(out, spec.add_last, first=False)
    if spec.add_first:
        out = add_missing(out, spec.add_first, first=True)
    if spec.trigger:
        out = put_first(out, spec.trigger)
    return out


def check_spec(spec: EditSpec) -> None:
    """Refuse an edit that does nothing or names an unknown clean-up (``OptionsError``).

    Each clean-up runs once on an empty caption here, so one that cannot run (``overlap``
    without its table) fails before any file changes.
    """
    for name in spec.cleanup:
        get_cleanup(name)([])
    empty = EditSpec()
    if spec == empty or (
        spec.order == "none"
        and not any(
            [
                spec.rename,
                spec.replace,
                spec.remove,
                spec.cleanup,
                spec.dedupe,
                spec.max_tags,
                spec.add_last,
                spec.add_first,
                spec.trigger.strip(),
            ]
        )
    ):
        raise OptionsError(
            "the edit changes nothing: give at least one of rename, replace, remove, cleanup, "
            "dedupe, order, max_tags, add_first, add_last, trigger"
        )


def describe_spec(spec: EditSpec) -> str:
    """A one-line description of an edit, for journals and listings.

    >>> describe_spec(EditSpec(rename={"a": "b"}, trigger="t"))
    'rename a -> b; trigger t'
    """
    parts = []
    parts += [f"rename {old} -> {new}" for old, new in spec.rename.items()]
    parts += [f"replace {old!r} -> {new!r}" for old, new in spec.replace.items()]
    if spec.remove:
        parts.append("remove " + ", ".join(spec.remove))
    if spec.cleanup:
        parts.append("cleanup " + ", ".join(spec.cleanup))
    if spec.dedupe:
        parts.append("dedupe")
    if spec.order != "none":
        keep = f" (keep first {spec.keep_first})" if spec.keep_first else ""
        parts.append(f"order {spec.order}{keep}")
    if spec.max_tags:
        parts.append(f"max {spec.max_tags} tags")
    if spec.add_last:
        parts.append("add last " + ", ".join(spec.add_last))
    if spec.add_first:
        parts.append("add first " + ", ".join(spec.add_first))
    if spec.trigger:
        parts.append(f"trigger {spec.trigger}")
    return "; ".join(parts)


# -- over a dataset ---------------------------------------------------------------------------


@dataclass
class FileChange:
    """A caption an edit changes: its path and the text before and after."""

    path: str
    before: str
    after: str

    def diff(self, root: str = "") -> str:
        """The unified diff of the caption (paths relative to ``root``)."""
        name = os.path.relpath(self.path, root) if root else self.path
        lines = difflib.unified_diff(
            self.before.splitlines(keepends=True) or ["\n"],
            self.after.splitlines(keepends=True) or ["\n"],
            f"a/{name}",
            f"b/{name}",
            n=0,
        )
        return "".join(line if line.endswith("\n") else line + "\n" for line in lines)


@dataclass
class EditResult:
    """What an edit did (or, with ``dry_run``, would do)."""

    description: str
    dry_run: bool
    journal: str | None = None
    examined: int = 0
    changed: int = 0
    unchanged: int = 0
    skipped: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)
    changes: list[FileChange] = field(default_factory=list)
    root: str = ""

    def diff(self) -> str:
        """The unified diff of the changes kept in the result."""
        return "".join(change.diff(self.root) for change in self.changes)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON values (the kept changes with their before/after text)."""
        return {
            "description": self.description,
            "dry_run": self.dry_run,
            "journal": self.journal,
            "examined": self.examined,
            "changed": self.changed,
            "unchanged": self.unchanged,
            "skipped": self.skipped,
            "failed": [[p, r] for p, r in self.failed],
            "changes": [
                {"path": c.path, "before": c.before, "after": c.after} for c in self.changes
            ],
        }


def _chunks(entries: Iterable[Entry]) -> Iterator[list[Entry]]:
    """Entries with a caption, grouped by folder, at most ``CHUNK`` at a time."""
    current: list[Entry] = []
    folder = None
    for entry in entries:
        if entry.is_orphan or not entry.has_caption:
            continue
        where = os.path.dirname(entry.caption)
        if current and (where != folder or len(current) >= CHUNK):
            yield current
            current = []
        folder = where
        current.append(entry)
    if current:
        yield current


def caption_frequency(entries: Iterable[Entry], separator: str) -> Counter[str]:
    """Images per tag (by ``normalize_tag``) over the entries' captions, unreadable ones
    skipped: what ``order=frequency`` sorts by."""
    from tagger.safeio import read_text_file

    counts: Counter[str] = Counter()
    for entry in entries:
        if entry.is_orphan or not entry.has_caption:
            continue
        try:
            text = read_text_file(entry.caption)
        except (OutputError, OSError):
            continue
        if text is not None:
            counts.update({normalize_tag(t) for t in split_tags(text.text, separator)})
    return counts


def run_edit(
    paths: Sequence[str | os.PathLike[str]],
    spec: EditSpec,
    dataset: DatasetOptions | None = None,
    *,
    dry_run: bool = False,
    where: str = "",
    journal_folder: str | None = None,
    entries: Callable[[], Iterable[Entry]] | None = None,
    fsync: bool = True,
    diffs: int = DEFAULT_DIFFS,
    check: Callable[[str], None] | None = None,
) -> EditResult:
    """Apply ``spec`` to the captions of the dataset (``entries()``, else the walk of
    ``paths``), or only to those matching the filter ``where``.

    Returns the counts, the failures (a caption that is not UTF-8 or is a link is left as it
    is and listed) and up to ``diffs`` changes (all with -1). ``check`` is called with each
    caption path before it is read (the HTTP API's allow-list; it raises to refuse).
    """
    dataset = dataset or DatasetOptions()
    check_spec(spec)
    match = compile_filter(where)

    def walk() -> Iterable[Entry]:
        if entries is not None:
            return entries()
        return iter_entries(paths, extension=dataset.caption_extension, recursive=dataset.recursive)

    frequency = caption_frequency(walk(), dataset.separator) if spec.order == "frequency" else None
    description = describe_spec(spec) + (f" where {where}" if where else "")
    result = EditResult(description, dry_run)
    result.root = os.fspath(paths[0]) if paths else ""
    journal: Journal | None = None
    if not dry_run:
        journal = Journal.create(
            journal_dir(paths, journal_folder) if paths else Path(journal_folder or "."),
            "edit",
            description,
            {"spec": spec_dict(spec), "where": where, "paths": [os.fspath(p) for p in paths]},
        )
        result.journal = journal.id
    try:
        for chunk in _chunks(walk()):
            folder = os.path.dirname(chunk[0].caption) or "."
            if dry_run:
                _edit_chunk(
                    chunk, spec, dataset, match, frequency, result, None, fsync, diffs, check
                )
            else:
                with folder_lock(folder):
                    _edit_chunk(
                        chunk, spec, dataset, match, frequency, result, journal, fsync, diffs, check
                    )
    finally:
        if journal is not None:
            if journal.meta["parts"]:
                journal.finish(
                    changed=result.changed, unchanged=result.unchanged, failed=len(result.failed)
                )
            else:  # nothing was written: no journal to undo
                journal.discard()
                result.journal = None
    return result


def failure_reason(exc: BaseException) -> str:
    """Why a caption was left alone, without the tagging run's advice (``--on-existing``
    does not apply to edits).

    >>> failure_reason(OSError("x.txt: not UTF-8; or use --on-existing overwrite to replace it"))
    'x.txt: not UTF-8'
    """
    text = str(exc)
    for advice in (" or use --on-existing overwrite to replace it", "; or use --on-existing"):
        text = text.split(advice)[0]
    return text.rstrip("; ")


def spec_dict(spec: EditSpec) -> dict[str, Any]:
    """The edit as plain JSON values."""
    from tagger.options import dump

    return dump(spec)


def _edit_chunk(
    chunk: list[Entry],
    spec: EditSpec,
    dataset: DatasetOptions,
    match: Callable[[Record], bool],
    frequency: Mapping[str, int] | None,
    result: EditResult,
    journal: Journal | None,
    fsync: bool,
    diffs: int,
    check: Callable[[str], None] | None,
) -> None:
    """Read, edit, journal and write one folder's chunk of captions."""
    from tagger.dataset.tokens import token_counter

    count = token_counter().count
    planned: list[tuple[Change, bytes]] = []
    done: set[str] = set()
    separator = dataset.separator
    for entry in chunk:
        if entry.caption in done:  # a caption two images share is edited once
            continue
        done.add(entry.caption)
        result.examined += 1
        try:
            if check is not None:
                check(entry.caption)
            data = read_bytes_nofollow(entry.caption)
            if data is None:
                result.skipped += 1
                continue
            text = decode_text(data, entry.caption)
        except (OutputError, OSError, PermissionError) as exc:
            result.failed.append((entry.caption, failure_reason(exc)))
            continue
        tags = split_tags(text.text, separator)
        record = Record(
            entry.relative, tags, text.text.strip(), tokens=lambda t=text.text: count(t)
        )
        if not match(record):
            result.skipped += 1
            continue
        new = apply_spec(tags, spec, frequency=frequency, path=entry.relative)
        if new == tags:
            result.unchanged += 1
            continue
        after_text = join_tags(new, separator)
        after = encode_text(after_text, text.style)
        if after == data:
            result.unchanged += 1
            continue
        result.changed += 1
        if diffs < 0 or len(result.changes) < diffs:
            result.changes.append(FileChange(entry.caption, text.text.strip(), after_text))
        planned.append((Change("write", entry.caption, data, sha256(after)), after))
    if journal is None or not planned:
        return
    journal.record([change for change, _ in planned])
    for change, after in planned:
        try:
            atomic_write_bytes(change.path, after, fsync=fsync)
        except (OutputError, OSError) as exc:
            result.changed -= 1
            result.failed.append((change.path, str(exc)))


def write_caption(
    image: str,
    text: str,
    dataset: DatasetOptions | None = None,
    *,
    journal_folder: str | os.PathLike[str],
    expected: bytes | None = None,
    fsync: bool = True,
) -> str | None:
    """Write one caption by hand (the tab's editor), journaled like a bulk edit.

    ``text`` becomes the caption of ``image`` (its tags re-joined with the separator; the file's
    byte order mark and line endings kept; a new file when it had none). With ``expected``
    (the bytes the editor started from; ``b""`` for no file), a caption changed meanwhile by
    someone else is refused (``OutputError``) instead of overwritten. Returns the journal id,
    or None when nothing changed.
    """
    from tagger.dataset.reader import caption_of

    dataset = dataset or DatasetOptions()
    caption = caption_of(image, dataset.caption_extension)
    tags = split_tags(text, dataset.separator)
    new_text = join_tags(tags, dataset.separator)
    with folder_lock(os.path.dirname(caption) or "."):
        data = read_bytes_nofollow(caption)
        if expected is not None and (data or b"") != expected:
            raise OutputError(
                caption, "was changed by someone else since it was opened; reload it first"
            )
        style = decode_text(data, caption).style if data is not None else NEW_FILE_STYLE
        after = encode_text(new_text, style)
        if data == after:
            return None
        journal = Journal.create(
            Path(journal_folder), "caption", f"edit caption of {os.path.basename(image)}", {}
        )
        journal.record([Change("write", caption, data, sha256(after))])
        atomic_write_bytes(caption, after, fsync=fsync)
        journal.finish(changed=1, unchanged=0, failed=0)
    return journal.id
