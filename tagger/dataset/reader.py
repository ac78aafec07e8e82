"""Reading a dataset lazily: images, their caption files and JSON sidecars, folder by folder.

A dataset is one or more folders (walked in order of the files' stems, sub-folders after the
files, hidden names skipped like everywhere in tagger) or image files. An image ``a.png`` has
the caption ``a<extension>`` (``.txt`` unless told otherwise) and the sidecar ``a.json`` beside
it. A folder's names are sorted a few thousand at a time (``tagger.dataset.runs``), so a million
files never load at once; captions are read when asked for, strictly
(``tagger.safeio.read_text_file``: UTF-8, byte order mark and line endings remembered).

A caption file with no image beside it is an *orphan* (``Entry.image`` is empty); two images
with one stem (``a.jpg``, ``a.png``) share one caption file and are marked ``shared``.
"""

# Paths stay strings here (os.path): a dataset walk handles millions of them.
# ruff: noqa: PTH110, PTH112, PTH113, PTH116, PTH118, PTH119, PTH120, PTH122

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from operator import methodcaller

from tagger.errors import OptionsError
from tagger.safeio import TextFile, read_text_file

DEFAULT_EXTENSION = ".txt"
SIDECAR_EXTENSION = ".json"
#: How tags are written back into a caption (and split: on the separator's comma).
DEFAULT_SEPARATOR = ", "


@dataclass(slots=True)
class Entry:
    """One image of a dataset (or an orphan caption) and the paths of its files."""

    image: str
    caption: str
    has_caption: bool
    sidecar: str | None
    root: str
    shared: bool = False
    #: The entry's folder relative to ``root`` with ``/`` ("" at the root), when known.
    rel_folder: str | None = None

    @property
    def is_orphan(self) -> bool:
        """A caption file without an image."""
        return not self.image

    @property
    def path(self) -> str:
        """The image, or the caption of an orphan."""
        return self.image or self.caption

    @property
    def folder(self) -> str:
        """The folder of the entry relative to its dataset root (``""`` at the root).

        >>> Entry("/d/a/x.png", "/d/a/x.txt", True, None, "/d").folder
        'a'
        """
        if self.rel_folder is not None:
            return self.rel_folder
        rel = os.path.relpath(os.path.dirname(self.path), self.root)
        return "" if rel == "." else rel.replace(os.sep, "/")

    @property
    def relative(self) -> str:
        """The entry's path relative to its root, with ``/``.

        >>> Entry("/d/a/x.png", "/d/a/x.txt", True, None, "/d").relative
        'a/x.png'
        """
        if self.rel_folder is not None:
            name = os.path.basename(self.path)
            return f"{self.rel_folder}/{name}" if self.rel_folder else name
        return os.path.relpath(self.path, self.root).replace(os.sep, "/")


def check_extension(extension: str) -> str:
    """A caption extension with its dot; refuses ``.json`` (the sidecars) and image extensions.

    >>> check_extension("caption"), check_extension(".txt")
    ('.caption', '.txt')
    """
    from tagger.batch import normalize_extension
    from tagger.image import is_image_path

    ext = normalize_extension(extension)
    if ext.lower() == SIDECAR_EXTENSION:
        raise OptionsError("caption extension .json is the JSON sidecars'; use e.g. .txt")
    if is_image_path("x" + ext):
        raise OptionsError(f"caption extension {ext} is an image extension; use e.g. .txt")
    return ext


def caption_of(image: str, extension: str = DEFAULT_EXTENSION) -> str:
    """The caption path of an image.

    >>> caption_of("/d/a.b.png", ".txt")
    '/d/a.b.txt'
    """
    return os.path.splitext(image)[0] + extension


def stem_key(name: str, extension: str) -> str:
    """``stem NUL extension`` of a file name: keys sort by stem, then by extension, so the files
    of one stem (its images, its caption ``stem<extension>``, its sidecar) are neighbours.

    >>> stem_key("a.b.png", ".txt"), stem_key("a.wd.txt", ".wd.txt"), stem_key("README", ".txt")
    ('a.b\\x00.png', 'a\\x00.wd.txt', 'README\\x00')
    """
    if name.endswith(extension):
        cut = len(name) - len(extension)
        return name[:cut] + "\0" + extension
    dot = name.rfind(".")
    return name[:dot] + "\0" + name[dot:] if dot > 0 else name + "\0"


def _stem_entries(
    prefix: str,
    stem: str,
    extensions: list[str],
    extension: str,
    known: frozenset[str],
    context: tuple[str, str | None, bool],
) -> Iterator[Entry]:
    """The entries of one stem's files (``extensions``, sorted): each image, or the caption
    alone when no image has the stem (an orphan, where ``context`` = (root, rel_folder,
    orphans) asks for them)."""
    root, rel_folder, orphans = context
    images = [e for e in extensions if e.lower() in known]
    has_caption = extension in extensions
    if not images:
        if orphans and has_caption:
            yield Entry("", prefix + stem + extension, True, None, root, False, rel_folder)
        return
    base = prefix + stem
    sidecar = base + SIDECAR_EXTENSION if SIDECAR_EXTENSION in extensions else None
    caption = base + extension
    shared = len(images) > 1
    for image in images:
        yield Entry(base + image, caption, has_caption, sidecar, root, shared, rel_folder)


def _folder_entries(
    folder: str, root: str, extension: str, orphans: bool, rel_folder: str | None = None
) -> tuple[Iterator[Entry], list[str]]:
    """The entries of one folder, in order of their stems (``stem_key``: ``a.png`` before
    ``a-1.png`` and ``a.b.png``), made one at a time, and its visible sub-folders
    (``rel_folder``: the folder relative to ``root``, with ``/``), by name. The list of
    sub-folders is filled by the time the entries are done.

    The names are sorted by ``runs.bounded_sorted``: a folder of a million files holds a few
    thousand names at a time, the rest wait sorted in a temporary file (or, where no temporary
    file can be made, are sorted in memory). A folder that cannot be listed gives no entries.
    """
    from tagger.dataset.runs import bounded_sorted
    from tagger.image import image_extensions

    known = image_extensions()
    subfolders: list[str] = []
    failed: list[OSError] = []
    prefix = folder if folder.endswith(os.sep) else folder + os.sep
    context = (root, rel_folder, orphans)
    cut, tagged = len(extension), "\0" + extension

    def scan() -> Iterator[str]:
        subfolders.clear()
        failed.clear()
        try:
            with os.scandir(folder) as listing:
                for entry in listing:
                    name = entry.name
                    if name.startswith("."):
                        continue
                    try:
                        if entry.is_dir():
                            subfolders.append(name)
                            continue
                    except OSError:
                        continue
                    # stem_key, inline (a walk makes millions of them)
                    if name.endswith(extension):
                        yield name[:-cut] + tagged
                    else:
                        dot = name.rfind(".")
                        yield name[:dot] + "\0" + name[dot:] if dot > 0 else name + "\0"
        except OSError as exc:
            failed.append(exc)
            subfolders.clear()
        subfolders.sort()

    def entries() -> Iterator[Entry]:
        try:
            keys = bounded_sorted(scan())
            first = next(keys, None)
        except OSError:  # no temporary file to sort in
            keys = iter(sorted(scan()))
            first = next(keys, None)
        if failed or first is None:
            return
        stem, _, ext = first.partition("\0")
        extensions = [ext]
        for key in keys:
            name, _, ext = key.partition("\0")
            if name == stem:
                extensions.append(ext)
                continue
            if (
                len(extensions) == 2
                and extensions[1] == extension
                and extensions[0].lower() in known
            ):
                base = prefix + stem  # the usual stem: one image and its caption
                yield Entry(
                    base + extensions[0], base + extension, True, None, root, False, rel_folder
                )
            else:
                yield from _stem_entries(prefix, stem, extensions, extension, known, context)
            stem, extensions = name, [ext]
        yield from _stem_entries(prefix, stem, extensions, extension, known, context)

    return entries(), subfolders


def iter_entries(
    paths: Sequence[str | os.PathLike[str]],
    *,
    extension: str = DEFAULT_EXTENSION,
    recursive: bool = True,
    orphans: bool = True,
) -> Iterator[Entry]:
    """Yield every image (and, with ``orphans``, every caption without an image) of ``paths``.

    Folders are walked folder by folder (files in order of their stems, then sub-folders by
    name when ``recursive``); a folder reached twice through links is read once. An image file named
    directly is one entry whose root is its folder. Raises ``OptionsError`` for a path that
    does not exist.
    """
    from tagger.image import is_image_path

    extension = check_extension(extension)
    seen: set[tuple[int, int]] = set()
    for given in paths:
        text = os.fspath(given)
        if not os.path.exists(text):
            raise OptionsError(f"dataset path {text!r} does not exist (give a folder or image)")
        if not os.path.isdir(text):
            if not is_image_path(text):
                raise OptionsError(f"{text!r} is neither a folder nor an image file")
            folder = os.path.dirname(text) or "."
            caption = caption_of(text, extension)
            sidecar = caption_of(text, SIDECAR_EXTENSION)
            yield Entry(
                text,
                caption,
                os.path.isfile(caption),
                sidecar if os.path.isfile(sidecar) else None,
                folder,
            )
            continue
        root = text
        pending = [(text, "")]
        while pending:
            folder, rel_folder = pending.pop()
            try:
                info = os.stat(folder)
            except OSError:
                continue
            if (info.st_dev, info.st_ino) in seen:
                continue
            seen.add((info.st_dev, info.st_ino))
            entries, subfolders = _folder_entries(folder, root, extension, orphans, rel_folder)
            yield from entries
            if recursive:
                pending.extend(
                    (os.path.join(folder, name), f"{rel_folder}/{name}".lstrip("/"))
                    for name in reversed(subfolders)
                )


def read_caption(entry: Entry) -> TextFile | None:
    """The entry's caption file, read strictly; None when it has none. Raises
    ``TextEncodingError`` (not UTF-8) or ``OutputError`` (a symbolic link)."""
    if not entry.has_caption:
        return None
    return read_text_file(entry.caption)


def split_tags(text: str, separator: str = DEFAULT_SEPARATOR) -> list[str]:
    """A caption's tags: split on the separator, stripped, empty pieces dropped (what
    ``tagger.writers.split_caption`` does, in fewer steps).

    >>> split_tags("1girl, solo,, long hair\\n")
    ['1girl', 'solo', 'long hair']
    """
    sep = separator.strip() or separator
    return list(filter(None, map(str.strip, text.split(sep))))


#: The printable ASCII characters (``split_tags_many`` deletes them to find any other).
_PRINTABLE_ASCII = bytes(range(0x20, 0x7F))
#: What may surround a joined caption's tags (any other whitespace is left to the slow way).
_STRIP_LAYOUT = methodcaller("strip", " \t\n")


def split_tags_many(
    texts: Sequence[str], separator: str = DEFAULT_SEPARATOR
) -> tuple[list[list[str]], bool]:
    """``[split_tags(t, separator) for t in texts]``, and whether every text is *joined*: its
    tags joined by ``separator`` in printable ASCII, with nothing before or after them but
    spaces, tabs and line breaks (how tagger writes captions).

    Joined texts, the usual case, are split in a few passes over all of them at once (a
    dataset pass splits millions of captions): where each separator is exactly ``", "``
    (its one-character core and one space) with no space before it, no empty tag and no
    line break or other control character, a plain ``split(", ")`` gives the stripped,
    non-empty tags. Any other batch is split text by text.

    >>> split_tags_many(["1girl, solo", "cat\\n"])
    ([['1girl', 'solo'], ['cat']], True)
    >>> split_tags_many(["1girl,solo", "a ,b"])
    ([['1girl', 'solo'], ['a', 'b']], False)
    """
    core = separator.strip()
    if len(core) == 1 and separator == core + " ":
        stripped = list(map(_STRIP_LAYOUT, texts))
        joined = " ".join(stripped)
        if (
            joined.isascii()
            and not joined.encode().translate(None, _PRINTABLE_ASCII)  # no control character
            and "" not in stripped
            and not joined.startswith(core)
            and " " + core not in joined  # no space before a separator, no empty tag
            and core + "  " not in joined  # nor two after one
        ):
            tags = list(map(methodcaller("split", separator), stripped))
            # every core is one of the separators split on: none is left inside a tag
            if joined.count(core) == sum(map(len, tags)) - len(tags):
                return tags, True
    return [split_tags(text, separator) for text in texts], False


def join_tags(tags: Sequence[str], separator: str = DEFAULT_SEPARATOR) -> str:
    """Tags written back as caption text.

    >>> join_tags(["trigger", "1girl"])
    'trigger, 1girl'
    """
    return separator.join(tags)
