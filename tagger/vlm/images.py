"""Images as an endpoint receives them: resized, encoded, as a base64 data URL.

The image is reduced (never enlarged) so that its longest side is at most ``side`` (Lanczos),
transparency is composited on white (JPEG has none; models read white backgrounds as the
tagger does), and it is encoded as JPEG (quality 90), PNG or WebP (quality 90).
"""

from __future__ import annotations

import base64
import io
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from PIL import Image

JPEG_QUALITY = 90
MIME = {"jpeg": "image/jpeg", "png": "image/png", "webp": "image/webp"}


@dataclass(frozen=True)
class EncodedImage:
    """An image ready to send: its bytes, format and size."""

    data: bytes
    format: str
    width: int
    height: int

    @property
    def data_url(self) -> str:
        """``data:image/...;base64,...``, as ``image_url`` takes it."""
        encoded = base64.b64encode(self.data).decode("ascii")
        return f"data:{MIME[self.format]};base64,{encoded}"

    def describe(self) -> str:
        """A short description for previews and logs (never the bytes).

        >>> EncodedImage(b"x" * 2048, "jpeg", 640, 480).describe()
        'image/jpeg 640x480, 2.0 KiB'
        """
        return f"{MIME[self.format]} {self.width}x{self.height}, {len(self.data) / 1024:.1f} KiB"


def fit_side(width: int, height: int, side: int) -> tuple[int, int]:
    """The size of an image reduced so that its longest side is at most ``side`` (0: as it is).

    >>> fit_side(4000, 3000, 1024), fit_side(500, 300, 1024), fit_side(4000, 3000, 0)
    ((1024, 768), (500, 300), (4000, 3000))
    """
    if side <= 0 or max(width, height) <= side:
        return width, height
    scale = side / max(width, height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def flatten(image: Image.Image) -> Image.Image:
    """An RGB copy, transparency composited on white."""
    from PIL import Image as PILImage

    if image.mode in ("RGBA", "LA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        white = PILImage.new("RGBA", rgba.size, (255, 255, 255, 255))
        return PILImage.alpha_composite(white, rgba).convert("RGB")
    return image.convert("RGB")


def encode_image(image: Image.Image, side: int = 1024, fmt: str = "jpeg") -> EncodedImage:
    """Resize and encode an image for a request."""
    from PIL import Image as PILImage

    if fmt not in MIME:
        raise ValueError(f"image format {fmt!r} is not one of {', '.join(MIME)}")
    rgb = flatten(image)
    size = fit_side(rgb.width, rgb.height, side)
    if size != rgb.size:
        rgb = rgb.resize(size, PILImage.Resampling.LANCZOS)
    buffer = io.BytesIO()
    if fmt == "jpeg":
        rgb.save(buffer, format="JPEG", quality=JPEG_QUALITY)
    elif fmt == "webp":
        rgb.save(buffer, format="WEBP", quality=JPEG_QUALITY)
    else:
        rgb.save(buffer, format="PNG")
    return EncodedImage(buffer.getvalue(), fmt, rgb.width, rgb.height)


def image_tokens(width: int, height: int, detail: str | None = None) -> int:
    """An estimate of the prompt tokens an image costs: OpenAI's published rule (low detail 85;
    else the image scaled to fit 2048 x 2048, then its short side to 768, and 170 per 512-pixel
    tile plus 85). Other backends count differently; the limiter learns their real counts.

    >>> image_tokens(1024, 1024), image_tokens(512, 512), image_tokens(4096, 2048, "low")
    (765, 255, 85)
    """
    if detail == "low":
        return 85
    scale = min(1.0, 2048 / max(width, height))
    w, h = width * scale, height * scale
    scale = min(1.0, 768 / min(w, h))
    w, h = w * scale, h * scale
    return 85 + 170 * math.ceil(w / 512) * math.ceil(h / 512)
