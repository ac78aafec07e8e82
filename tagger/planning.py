"""Output planning: every file a run writes belongs to one image, decided before any model work.

A run's inputs can name one image several times (``dir dir/x.png 'dir/*.png'``), and different
images can map to one output file: ``a.jpg`` and ``a.png`` in one folder, ``ds/a/x.png`` and
``ds/b/x.png`` written into one ``--output-dir``, a caption extension that is an image's own
extension, a caption that is the ``--jsonl`` manifest. ``plan_outputs`` walks the inputs once
before the model loads and decides, for the whole run:

- an image named more than once (the same file: the same real folder and name) is tagged once,
  the first time it is listed;
- when two different images would write one file, the first listed writes it and every later one
  fails with a reason naming the file and the first image; an output that is an input image or
  a file the run itself writes (the manifest) fails its image the same way.

Paths compare by their real folder (symbolic links resolved, so two routes to one folder are one
folder) and, for outputs, case-insensitively (``A.txt`` and ``a.txt`` are one file on Windows and
macOS, and a dataset moves between systems).

Memory stays small for millions of images: the walk keeps 8-byte hashes of each path, and only
the images whose hashes repeat are walked again and compared by their full paths, so a hash
collision can never fail an image wrongly.
"""

from __future__ import annotations

import hashlib
import os
from array import array
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tagger.batch import ImageItem

#: What an output file is called in a reason, by its position in ``outputs(item)``.
ItemOutputs = Callable[["ImageItem"], Sequence[tuple[str, Path]]]


def path_hash(key: str) -> int:
    """A 64-bit hash of a path key (stable across runs and processes).

    >>> path_hash("/data/a.txt") == path_hash("/data/a.txt"), path_hash("a") != path_hash("b")
    (True, True)
    """
    return int.from_bytes(
        hashlib.blake2b(key.encode("utf-8", "surrogatepass"), digest_size=8).digest(), "little"
    )


class FolderKeys:
    """Path keys: the real path of a file's folder (computed once per folder) and its name."""

    def __init__(self) -> None:
        self._real: dict[str, str] = {}

    def exact(self, path: Path) -> str:
        """The file's real folder joined with its name (the name itself is not resolved: two
        links to one image are two images with outputs of their own)."""
        parent = os.fspath(path.parent)
        real = self._real.get(parent)
        if real is None:
            real = os.path.realpath(parent or ".")
            self._real[parent] = real
        return os.path.join(real, path.name)  # noqa: PTH118  (strings: millions of keys)

    def folded(self, path: Path) -> str:
        """``exact`` compared case-insensitively."""
        return self.exact(path).casefold()


#: A verdict: the image is processed (``PROCESS``), left out as a repeat (None), or fails.
PROCESS = ""


@dataclass
class Plan:
    """What the planning walk decided.

    ``total`` counts the images to process (each file once), ``listed`` every item the inputs
    named. ``verdicts`` holds, for the items that needed a decision (``(path, root)``), one
    verdict per time the walk yields that item: ``PROCESS``, None (it repeats an image listed
    before: left out) or the reason it fails. Walk the items again with ``walker()``.
    """

    total: int = 0
    listed: int = 0
    verdicts: dict[tuple[str, str], list[str | None]] = field(default_factory=dict)

    @property
    def repeated(self) -> int:
        """Inputs that named an image already listed."""
        return sum(v is None for found in self.verdicts.values() for v in found)

    @property
    def conflicts(self) -> int:
        """Images that fail because another image writes one of their files."""
        return sum(bool(v) for found in self.verdicts.values() for v in found)

    def walker(self) -> Callable[[ImageItem], ImageItem | None]:
        """A function for one more walk over the same items, in the same order: it returns
        each item as the run should see it (None for a repeat, ``conflict`` set for an image
        that may not write)."""
        seen: dict[tuple[str, str], int] = {}

        def apply(item: ImageItem) -> ImageItem | None:
            if not self.verdicts:
                return item
            key = _item_key(item)
            found = self.verdicts.get(key)
            if found is None:
                return item
            index = seen.get(key, 0)
            seen[key] = index + 1
            # an occurrence the planning walk did not see (a file added since) is a repeat
            verdict = found[index] if index < len(found) else None
            if verdict is None:
                return None
            return replace(item, conflict=verdict) if verdict else item

        return apply


def _item_key(item: ImageItem) -> tuple[str, str]:
    return os.fspath(item.path), os.fspath(item.root)


def _repeats(values: array[int]) -> set[int]:
    """The values that occur more than once."""
    import numpy as np

    if len(values) < 2:
        return set()
    data = np.sort(np.frombuffer(values, dtype=np.uint64))
    same = data[1:] == data[:-1]
    return {int(v) for v in np.unique(data[1:][same])}


def _common(first: array[int], second: array[int]) -> set[int]:
    """The values found in both arrays."""
    import numpy as np

    if not len(first) or not len(second):
        return set()
    a = np.frombuffer(first, dtype=np.uint64)
    b = np.frombuffer(second, dtype=np.uint64)
    return {int(v) for v in np.intersect1d(a, b)}


@dataclass
class _Candidate:
    """An image whose paths may collide, with its full keys."""

    item: ImageItem
    identity: str
    image: str  # folded
    outputs: list[tuple[str, Path, str]]  # (what, path, folded key)


def plan_outputs(
    items: Callable[[], Iterable[ImageItem]],
    outputs: ItemOutputs,
    *,
    reserved: Mapping[Path, str] | None = None,
    identity: Callable[[ImageItem], str | None] | None = None,
) -> Plan:
    """Plan a run: walk ``items()`` (a fresh iterator each call), and decide which images repeat
    and which may not write their ``outputs(item)`` (``(what, path)`` pairs, e.g.
    ``("caption", Path("a.txt"))``). ``reserved`` names files the run writes itself (the
    manifest: ``{path: "the --jsonl manifest"}``); ``identity`` names an image when it returns
    a string (object-store URIs), else its real folder and name do."""
    keys = FolderKeys()

    def ident(item: ImageItem) -> str:
        named = identity(item) if identity is not None else None
        return named if named is not None else keys.exact(item.path)

    reserved_keys = {keys.folded(path): what for path, what in (reserved or {}).items()}
    reserved_hashes = array("Q", (path_hash(key) for key in reserved_keys))
    identities, images, claims = array("Q"), array("Q"), array("Q")
    plan = Plan()
    for item in items():
        plan.listed += 1
        identities.append(path_hash(ident(item)))
        images.append(path_hash(keys.folded(item.path)))
        for _, path in outputs(item):
            claims.append(path_hash(keys.folded(path)))
    same_image = _repeats(identities)
    suspect_claims = _repeats(claims) | _common(claims, images) | _common(claims, reserved_hashes)
    suspect_images = _common(images, claims)
    if same_image or suspect_claims:
        candidates = _candidates(
            items, outputs, ident, keys, same_image, suspect_claims, suspect_images
        )
        plan.verdicts = _resolve(candidates, reserved_keys)
    plan.total = plan.listed - plan.repeated
    return plan


def _candidates(
    items: Callable[[], Iterable[ImageItem]],
    outputs: ItemOutputs,
    ident: Callable[[ImageItem], str],
    keys: FolderKeys,
    same_image: set[int],
    suspect_claims: set[int],
    suspect_images: set[int],
) -> list[_Candidate]:
    """Walk again and keep the full keys of the images whose hashes repeat."""
    found: list[_Candidate] = []
    for item in items():
        identity = ident(item)
        image = keys.folded(item.path)
        named = [(what, path, keys.folded(path)) for what, path in outputs(item)]
        if (
            path_hash(identity) in same_image
            or path_hash(image) in suspect_images
            or any(path_hash(key) in suspect_claims for _, _, key in named)
        ):
            found.append(_Candidate(item, identity, image, named))
    return found


def _resolve(
    candidates: list[_Candidate], reserved: Mapping[str, str]
) -> dict[tuple[str, str], list[str | None]]:
    """Decide, in listing order, which candidates repeat and which may not write."""
    images: dict[str, Path] = {}
    for candidate in candidates:
        images.setdefault(candidate.image, candidate.item.path)
    seen: set[str] = set()
    owners: dict[str, Path] = {}
    verdicts: dict[tuple[str, str], list[str | None]] = {}
    for candidate in candidates:
        found = verdicts.setdefault(_item_key(candidate.item), [])
        if candidate.identity in seen:
            found.append(None)
            continue
        seen.add(candidate.identity)
        reason = _conflict(candidate, owners, images, reserved)
        found.append(reason if reason is not None else PROCESS)
        if reason is None:
            for _, _, folded in candidate.outputs:
                owners[folded] = candidate.item.path
    return verdicts


def _conflict(
    candidate: _Candidate,
    owners: Mapping[str, Path],
    images: Mapping[str, Path],
    reserved: Mapping[str, str],
) -> str | None:
    """Why a candidate may not write its outputs, or None."""
    for what, path, folded in candidate.outputs:
        if folded in reserved:
            return f"its {what} {path} would overwrite {reserved[folded]}"
        if folded in owners:
            return (
                f"its {what} {path} is also written for {owners[folded]} (listed first): two "
                f"images would write one file (rename one, or give each input its own "
                f"--output-dir)"
            )
        if folded in images:
            return f"its {what} {path} would overwrite the image {images[folded]}"
    return None
