"""Read arbitrary image files into RGB images composited on white.

``load_image`` opens a path, bytes or a PIL image; refuses images with more pixels than a
limit before decoding them; takes the first frame of animations; applies the EXIF orientation;
and turns every failure (missing file, not an image, truncated data) into ``ImageLoadError``.
``to_rgb_on_white`` converts any Pillow mode to RGB: alpha is composited on white exactly as in
SmilingWolf's wd-tagger app, and 16-bit/32-bit/float greyscale is scaled to 8 bits instead of
being clipped.

Pillow and NumPy are imported inside the functions that use them, and no process-wide Pillow
state (``Image.MAX_IMAGE_PIXELS``, ``ImageFile.LOAD_TRUNCATED_IMAGES``) is changed.
"""

from __future__ import annotations

import functools
import importlib
import io
import logging
import os
import re
import struct
import threading
from pathlib import Path, PurePath
from types import ModuleType
from typing import TYPE_CHECKING, TypeAlias

from tagger.errors import ImageLoadError, ImageTooLargeError, OptionsError

if TYPE_CHECKING:
    import numpy as np
    from PIL import Image

log = logging.getLogger("tagger")

DEFAULT_MAX_PIXELS = 178_956_970
"""Default pixel limit: Pillow's own error threshold (twice its default ``MAX_IMAGE_PIXELS``)."""

ImageSource: TypeAlias = "str | os.PathLike[str] | bytes | Image.Image"
"""What ``load_image`` accepts: a file path, the bytes of a file, or a PIL image."""

_ALPHA_MODES = frozenset({"RGBA", "LA", "PA", "RGBa", "La"})
_SIXTEEN_BIT_MODES = frozenset({"I;16", "I;16B", "I;16L", "I;16N"})
_HIGH_BIT_MODES = _SIXTEEN_BIT_MODES | {"I", "F"}

# Formats Pillow registers but that are stubs needing an external handler (BUFR, GRIB, HDF5,
# WMF outside Windows), need a program (EPS: Ghostscript), are save-only (PDF) or are not
# pictures in practice (FITS astronomy data, MPEG).
_EXCLUDED_FORMATS = frozenset({"BUFR", "GRIB", "HDF5", "FITS", "MPEG", "WMF", "EPS", "PDF"})

# Formats with no opener of their own, opened by another format's: Pillow's JPEG opener returns
# an MPO image for multi-picture files.
_OPENED_BY = {"MPO": "JPEG"}

# What Pillow's decoders raise on malformed data besides OSError.
_DECODE_ERRORS: tuple[type[Exception], ...] = (
    OSError,
    ValueError,
    SyntaxError,
    EOFError,
    struct.error,
    IndexError,
    ZeroDivisionError,
)

_plugins_lock = threading.Lock()
_plugins: tuple[str, ...] | None = None


# --- optional format plugins -------------------------------------------------------------------


def _pillow_has_native_avif() -> bool:
    """Whether this Pillow decodes AVIF itself (Pillow >= 11.3 built with libavif)."""
    from PIL import features

    return "avif" in features.modules and bool(features.check_module("avif"))


def _import_plugin(name: str) -> ModuleType | None:
    """Import an optional plugin module; ``None`` when it is not installed or fails to import."""
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name != name:
            log.warning("format plugin %s is installed but cannot be imported: %s", name, exc)
        return None
    except Exception as exc:  # a broken install (missing shared library...) must not stop us
        log.warning("format plugin %s is installed but cannot be imported: %s", name, exc)
        return None


def _register_heif(native_avif: bool) -> bool:
    """Register pillow-heif's HEIF opener (and its AVIF opener where Pillow has none)."""
    module = _import_plugin("pillow_heif")
    if module is None:
        return False
    try:
        module.register_heif_opener()
        register_avif = getattr(module, "register_avif_opener", None)
        if register_avif is not None and not native_avif:
            register_avif()
    except Exception as exc:
        log.warning("format plugin pillow_heif failed to register: %s", exc)
        return False
    return True


def _register_plugins() -> tuple[str, ...]:
    """Import every installed optional plugin once; return the names that registered."""
    native_avif = _pillow_has_native_avif()
    names: list[str] = []
    if _register_heif(native_avif):
        names.append("pillow_heif")
    # Importing pillow_avif registers it; it would replace Pillow's own AVIF plugin, so it is
    # only used with a Pillow built without AVIF.
    if not native_avif and _import_plugin("pillow_avif") is not None:
        names.append("pillow_avif")
    if _import_plugin("pillow_jxl") is not None:
        names.append("pillow_jxl")
    return tuple(names)


def register_format_plugins() -> tuple[str, ...]:
    """Register the optional Pillow format plugins that are installed, once per process.

    Tries ``pillow_heif`` (HEIF/HEIC, and AVIF where Pillow lacks it), ``pillow_avif`` and
    ``pillow_jxl`` (JPEG XL). Returns the names of the plugins that registered; later calls
    return the same tuple without importing anything again.
    """
    global _plugins
    with _plugins_lock:
        if _plugins is None:
            _plugins = _register_plugins()
        return _plugins


# --- file types --------------------------------------------------------------------------------


@functools.cache
def image_extensions() -> frozenset[str]:
    """Lowercase extensions (with the dot) of the formats Pillow and its plugins can open."""
    register_format_plugins()
    from PIL import Image

    return frozenset(
        extension.lower()
        for extension, format_name in Image.registered_extensions().items()
        if _OPENED_BY.get(format_name, format_name) in Image.OPEN
        and format_name not in _EXCLUDED_FORMATS
    )


def is_image_path(path: str | os.PathLike[str]) -> bool:
    """Whether a file name has an extension (any case) of a format Pillow can open."""
    return PurePath(os.fspath(path)).suffix.lower() in image_extensions()


# --- conversion to RGB on white ----------------------------------------------------------------


def _has_alpha(image: Image.Image) -> bool:
    """Whether an image carries transparency: an alpha band, an RGBA palette or a ``tRNS``."""
    if image.mode in _ALPHA_MODES or "transparency" in image.info:
        return True
    palette = image.palette if image.mode == "P" else None
    return palette is not None and palette.mode.endswith("A")


def _to_rgba(image: Image.Image) -> Image.Image:
    """Convert an image with transparency to straight-alpha RGBA (may return ``image``)."""
    from PIL import Image

    if image.mode == "RGBA":
        return image
    if image.mode == "La":
        # Pillow cannot convert premultiplied "La" directly; "RGBa" it can un-premultiply.
        luminance, alpha = image.split()
        return Image.merge("RGBa", (luminance, luminance, luminance, alpha)).convert("RGBA")
    return image.convert("RGBA")


def _composite_on_white(rgba: Image.Image) -> Image.Image:
    """Composite an RGBA image on white, exactly as SmilingWolf's wd-tagger app does."""
    from PIL import Image

    canvas = Image.new("RGBA", rgba.size, (255, 255, 255))
    canvas.alpha_composite(rgba)
    return canvas.convert("RGB")


def _round_div_257(values: np.ndarray) -> np.ndarray:
    """Map 0..65535 to 0..255 as ``round(v / 257)`` (no ties: 257 is odd), as uint8."""
    import numpy as np

    wide = values.astype(np.int64)
    return ((2 * wide + 257) // 514).astype(np.uint8)


def _scale_int32(values: np.ndarray) -> np.ndarray:
    """Scale mode "I" values to uint8: 8-bit data as is, 16-bit data / 257, else by the maximum."""
    import numpy as np

    wide = np.clip(values.astype(np.int64), 0, None)
    top = int(wide.max()) if wide.size else 0
    if top <= 255:
        return wide.astype(np.uint8)
    if top <= 65535:
        return _round_div_257(wide)
    return np.rint(wide * (255.0 / top)).astype(np.uint8)


def _scale_float(values: np.ndarray) -> np.ndarray:
    """Scale mode "F" values to uint8: 0..1 data times 255, anything else clipped to 0..255."""
    import numpy as np

    clean = np.nan_to_num(values.astype(np.float64), nan=0.0, posinf=255.0, neginf=0.0)
    if clean.size and clean.max() <= 1.0:
        clean = clean * 255.0
    return np.clip(np.rint(clean), 0, 255).astype(np.uint8)


def _high_bit_to_l(values: np.ndarray, mode: str) -> np.ndarray:
    """Scale the pixel values of an "I;16*", "I" or "F" image to 8-bit greyscale."""
    if mode in _SIXTEEN_BIT_MODES:
        return _round_div_257(values)
    if mode == "I":
        return _scale_int32(values)
    return _scale_float(values)


def _high_bit_to_rgb(image: Image.Image) -> Image.Image:
    """Convert a 16-bit, 32-bit or float greyscale image to RGB, keeping a ``tRNS`` colour key.

    Pillow's own ``convert`` clips these values to 0..255 (16-bit images come out white).
    """
    import numpy as np
    from PIL import Image

    values = np.asarray(image)
    grey = Image.fromarray(_high_bit_to_l(values, image.mode))
    transparency = image.info.get("transparency")
    if isinstance(transparency, int) and image.mode != "F":
        alpha = Image.fromarray(np.where(values == transparency, 0, 255).astype(np.uint8))
        return _composite_on_white(Image.merge("LA", (grey, alpha)).convert("RGBA"))
    return grey.convert("RGB")


def _to_rgb(image: Image.Image, *, copy: bool) -> Image.Image:
    """Convert any mode to RGB on white; return ``image`` itself when RGB unless ``copy``."""
    if image.mode in _HIGH_BIT_MODES:
        return _high_bit_to_rgb(image)
    if _has_alpha(image):
        return _composite_on_white(_to_rgba(image))
    if image.mode == "RGB":
        return image.copy() if copy else image
    try:
        return image.convert("RGB")
    except ValueError as exc:
        raise ValueError(f"cannot convert image mode {image.mode!r} to RGB: {exc}") from exc


def to_rgb_on_white(image: Image.Image) -> Image.Image:
    """Return a new RGB image: transparency composited on white, any other mode converted.

    Alpha (RGBA, LA, PA, RGBa, La, or a ``transparency`` key) is composited exactly as in
    SmilingWolf's app; 16-bit and 32-bit integer and float greyscale are scaled to 8 bits.
    The caller's image is never returned or changed. Raises ``ValueError`` for a mode Pillow
    cannot convert.
    """
    return _to_rgb(image, copy=True)


# --- loading -----------------------------------------------------------------------------------


def _source_name(source: ImageSource) -> str:
    """How errors name a source: the path, ``"<bytes>"`` or ``"<PIL image>"``."""
    if isinstance(source, bytes):
        return "<bytes>"
    if isinstance(source, (str, os.PathLike)):
        return str(os.fspath(source))
    return "<PIL image>"


def _os_reason(exc: OSError, path: str | None) -> str:
    """The OS's reason for a failed open, naming the target of a broken symbolic link."""
    reason = exc.strerror or str(exc) or type(exc).__name__
    if path is not None and isinstance(exc, FileNotFoundError):
        link = Path(path)
        if link.is_symlink():
            reason += f" (broken symbolic link to {link.readlink()})"
    return reason


def _is_empty(source: str | bytes) -> bool:
    """Whether a path names an empty file, or bytes are empty."""
    if isinstance(source, bytes):
        return not source
    try:
        return Path(source).stat().st_size == 0
    except OSError:
        return False


def _not_an_image_reason(source: str | bytes) -> str:
    """Reason for data Pillow cannot identify."""
    if _is_empty(source):
        return "empty file (0 bytes), not an image"
    plugins = ", ".join(register_format_plugins()) or "none"
    return f"not an image Pillow can read (format plugins installed: {plugins})"


def _too_large_reason(width: int, height: int, limit: int) -> str:
    """Reason for an image over ``max_pixels``."""
    return (
        f"has {width}\N{MULTIPLICATION SIGN}{height} = {width * height} pixels, "
        f"over the limit of {limit}; "
        "raise max_pixels (--max-pixels) if the file is trusted"
    )


def _bomb_reason(exc: Exception) -> str:
    """Reason for Pillow's own ``DecompressionBombError`` (its global limit, not ours)."""
    from PIL import Image

    found = re.search(r"\((\d+) pixels\)", str(exc))
    size = f"has {found.group(1)} pixels" if found else "has too many pixels"
    limit = 2 * (Image.MAX_IMAGE_PIXELS or 0)
    return (
        f"{size}, over the limit of {limit} set by Pillow (twice PIL.Image.MAX_IMAGE_PIXELS, "
        "checked before max_pixels); raise max_pixels (--max-pixels) and "
        "PIL.Image.MAX_IMAGE_PIXELS if the file is trusted"
    )


def _open(source: str | bytes, name: str) -> Image.Image:
    """``Image.open`` a path or bytes, turning every failure into ``ImageLoadError``."""
    from PIL import Image, UnidentifiedImageError

    try:
        return Image.open(io.BytesIO(source) if isinstance(source, bytes) else source)
    except UnidentifiedImageError:
        raise ImageLoadError(name, _not_an_image_reason(source)) from None
    except Image.DecompressionBombError as exc:
        raise ImageTooLargeError(name, _bomb_reason(exc)) from exc
    except OSError as exc:
        if exc.errno is None:  # raised by a format plugin on bad data, not by the OS
            raise ImageLoadError(name, f"cannot read: {str(exc) or type(exc).__name__}") from exc
        path = None if isinstance(source, bytes) else source
        raise ImageLoadError(name, _os_reason(exc, path)) from exc
    except _DECODE_ERRORS as exc:
        raise ImageLoadError(name, f"cannot read: {str(exc) or type(exc).__name__}") from exc


def _check_pixels(image: Image.Image, name: str, max_pixels: int) -> None:
    """Refuse an image with more than ``max_pixels`` pixels (read from its header)."""
    width, height = image.size
    if width * height > max_pixels:
        raise ImageTooLargeError(name, _too_large_reason(width, height, max_pixels))


def _orient(image: Image.Image, *, owned: bool) -> Image.Image:
    """Apply the EXIF orientation: in place on our own image, on a copy of the caller's.

    A malformed EXIF block is ignored (the pixels are fine), leaving the image as stored.
    """
    from PIL import ImageOps

    try:
        if owned:
            ImageOps.exif_transpose(image, in_place=True)
            return image
        return ImageOps.exif_transpose(image)
    except (*_DECODE_ERRORS, KeyError, TypeError) as exc:
        log.debug("ignoring unreadable EXIF orientation: %s", exc)
        return image if owned else image.copy()


def _decode(
    image: Image.Image, name: str, max_pixels: int, *, owned: bool, draft: int = 0
) -> Image.Image:
    """Check the size, pick frame 0 (own images), decode, orient and convert to RGB."""
    from PIL import Image

    _check_pixels(image, name, max_pixels)
    try:
        if owned:
            image.seek(0)
            if draft > 0 and image.format == "JPEG":
                # libjpeg's DCT scaling: the largest of 1/2, 1/4, 1/8 keeping both sides >= draft.
                image.draft(None, (draft, draft))
        image.load()
    except Image.DecompressionBombError as exc:
        raise ImageTooLargeError(name, _bomb_reason(exc)) from exc
    except _DECODE_ERRORS as exc:
        raise ImageLoadError(name, f"cannot decode: {str(exc) or type(exc).__name__}") from exc
    oriented = _orient(image, owned=owned)
    try:
        # ``oriented`` is ours either way: the caller's image was copied by ``_orient``.
        return _to_rgb(oriented, copy=False)
    except ValueError as exc:
        raise ImageLoadError(name, str(exc)) from exc


def load_image(
    source: ImageSource, *, max_pixels: int = DEFAULT_MAX_PIXELS, draft: int = 0
) -> Image.Image:
    """Load an image as a decoded RGB image composited on white.

    ``source`` is a file path, the bytes of an image file, or a PIL image (used at its
    current frame and never changed). Files are refused before decoding when they have more
    than ``max_pixels`` pixels (``ImageTooLargeError``); animations give their first frame; the
    EXIF orientation is applied. Anything unreadable raises ``ImageLoadError`` naming the
    source and the reason.

    ``draft`` > 0 decodes a JPEG file at a reduced scale (1/2, 1/4 or 1/8, the smallest that
    keeps both sides at least ``draft``): much faster for large photos, but the pixels are not
    those of a full decode resized afterwards. 0 (the default) always decodes in full.
    """
    from PIL import Image

    if max_pixels < 1:
        raise OptionsError(f"max_pixels must be at least 1, got {max_pixels}")
    register_format_plugins()
    name = _source_name(source)
    if isinstance(source, Image.Image):
        return _decode(source, name, max_pixels, owned=False)
    if not isinstance(source, (str, bytes, os.PathLike)):
        raise TypeError(f"cannot load an image from {type(source).__name__}")
    path_or_data = source if isinstance(source, bytes) else os.fspath(source)
    with _open(path_or_data, name) as image:  # closes the file, keeps the decoded pixels
        return _decode(image, name, max_pixels, owned=True, draft=draft)
