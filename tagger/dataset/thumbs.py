"""Thumbnails of dataset images, cached on disk so a gallery page opens at once the next time.

A thumbnail is a JPEG no larger than ``side`` on its long side, stored in tagger's cache
(``$TAGGER_CACHE_DIR/thumbs`` or ``~/.cache/tagger/thumbs``) under a hash of the image's real
path, size, modification time and the side: an image that changes gets a new thumbnail, and
the cache never needs to be cleared by hand for correctness. Written through the safe writer
(without ``fsync``: a cache file lost in a power cut is simply made again).
"""

# Paths stay strings here (os.path): a dataset walk handles millions of them.
# ruff: noqa: PTH116

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path

from tagger.errors import ImageLoadError
from tagger.safeio import atomic_write_bytes

DEFAULT_SIDE = 256
QUALITY = 85


def default_cache_dir() -> Path:
    """``$TAGGER_CACHE_DIR/thumbs`` or ``~/.cache/tagger/thumbs``."""
    from tagger.hub import tagger_cache_dir

    return tagger_cache_dir("thumbs")


def thumb_path(image: str | os.PathLike[str], side: int, cache: Path) -> Path:
    """Where the thumbnail of ``image`` at ``side`` is cached (``OSError`` when the image is
    gone)."""
    info = os.stat(image)
    key = f"{os.path.realpath(image)}\0{info.st_size}\0{info.st_mtime_ns}\0{side}"
    digest = hashlib.blake2b(key.encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()
    return cache / digest[:2] / f"{digest}.jpg"


def make_thumbnail(image: str | os.PathLike[str], side: int = DEFAULT_SIDE) -> bytes:
    """The JPEG bytes of a thumbnail (``ImageLoadError`` for an image that does not decode)."""
    from tagger.image import load_image

    picture = load_image(image, draft=side)
    picture.thumbnail((side, side))
    out = io.BytesIO()
    picture.save(out, format="JPEG", quality=QUALITY)
    return out.getvalue()


def thumbnail(
    image: str | os.PathLike[str], side: int = DEFAULT_SIDE, cache: Path | None = None
) -> Path | None:
    """The cached thumbnail file of ``image`` (made now when missing); None when the image is
    gone or does not decode."""
    folder = cache or default_cache_dir()
    try:
        path = thumb_path(image, side, folder)
    except OSError:
        return None
    if path.is_file():
        return path
    try:
        data = make_thumbnail(image, side)
    except (ImageLoadError, OSError):
        return None
    try:
        atomic_write_bytes(path, data, fsync=False)
    except OSError:  # a cache folder that cannot be written: no thumbnail
        return None
    return path
