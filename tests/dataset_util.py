"""A dataset with planted faults, built from the COCO photos in tests/data/coco (see its README).

``faulty_dataset(root)`` returns the folder and what was planted where, so the checks' tests can
compare what they find with what is there.
"""

from __future__ import annotations

import shutil
from pathlib import Path

COCO = Path(__file__).parent / "data" / "coco"
#: The photos that show no text (the OCR check must stay quiet on them).
PHOTOS = [
    "000000000790.jpg",
    "000000037666.jpg",
    "000000063217.jpg",
    "000000072258.jpg",
    "000000078499.jpg",
    "000000113488.jpg",
    "000000125870.jpg",
    "000000174375.jpg",
]
#: A photo of a street sign with text.
SIGN = "000000107438.jpg"
CAPTIONS = {
    "000000000790.jpg": "family, table, cake, indoors",
    "000000037666.jpg": "child, road, leaves, outdoors",
    "000000063217.jpg": "boat, river, city, outdoors",
    "000000072258.jpg": "toothbrush, holder, from above",
    "000000078499.jpg": "horse, grass, hill, lake, outdoors",
    "000000113488.jpg": "subway, station, train",
    "000000125870.jpg": "airport, airplane, outdoors",
    "000000174375.jpg": "tennis, clay court, outdoors",
    "000000107438.jpg": "bicycle, traffic light, sign, outdoors",
}


def render_text(path: Path, text: str, size: tuple[int, int] = (480, 240)) -> Path:
    """A poster: dark text on a light background (Pillow's scalable default font)."""
    from PIL import Image, ImageDraw, ImageFont

    image = Image.new("RGB", size, (245, 240, 230))
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=44)
    for row, line in enumerate(text.split("\n")):
        draw.text((24, 30 + row * 64), line, fill=(20, 20, 40), font=font)
    image.save(path, quality=90)
    return path


def noise(width: int, height: int, seed: int) -> object:
    """A seeded noise image."""
    import numpy as np
    from PIL import Image

    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    return Image.fromarray(pixels)


def faulty_dataset(root: Path, text: bool = False) -> tuple[Path, dict[str, list[str]]]:
    """The photos with captions, plus planted faults; returns (folder, planted names by check).

    ``text`` also adds the sign photo and a rendered poster (for the OCR check; needs Pillow's
    scalable default font, Pillow >= 10.1).
    """
    from PIL import Image

    folder = root / "dataset"
    (folder / "more").mkdir(parents=True)
    for name in PHOTOS:
        shutil.copy(COCO / name, folder / name)
        (folder / name).with_suffix(".txt").write_text(CAPTIONS[name], encoding="utf-8")
    planted: dict[str, list[str]] = {}
    # an identical copy in a sub-folder
    shutil.copy(COCO / PHOTOS[0], folder / "more" / "copy.jpg")
    planted["duplicates"] = [PHOTOS[0], "more/copy.jpg"]
    # a resized copy and a re-encoded copy
    photo = Image.open(COCO / PHOTOS[1])
    photo.resize((photo.width * 3 // 5, photo.height * 3 // 5)).save(folder / "more" / "small.jpg")
    Image.open(COCO / PHOTOS[2]).save(folder / "more" / "lossy.jpg", quality=35)
    planted["near_duplicates"] = [PHOTOS[1], "more/small.jpg", PHOTOS[2], "more/lossy.jpg"]
    # broken files: a truncated JPEG, a text file named like an image
    data = (COCO / PHOTOS[3]).read_bytes()
    (folder / "cut.jpg").write_bytes(data[: len(data) // 2])
    (folder / "not-an-image.png").write_bytes(b"this is not a PNG file\n")
    planted["broken"] = ["cut.jpg", "not-an-image.png"]
    # tiny and extreme images (noise: no photo's near duplicate)
    noise(48, 32, 1).save(folder / "tiny.jpg")
    noise(960, 120, 2).save(folder / "banner.jpg")
    planted["small"] = ["tiny.jpg", "banner.jpg"]
    planted["aspect"] = ["banner.jpg"]
    if text:
        shutil.copy(COCO / SIGN, folder / SIGN)
        render_text(folder / "poster.jpg", "BIG SALE\n50% OFF TODAY")
        planted["text"] = [SIGN, "poster.jpg"]
    return folder, planted


def text_dataset(root: Path) -> tuple[Path, list[str]]:
    """Four photos without text, the sign photo and a rendered poster; returns (folder, the
    names with text)."""
    folder = root / "text"
    folder.mkdir(parents=True)
    for name in PHOTOS[:4]:
        shutil.copy(COCO / name, folder / name)
    shutil.copy(COCO / SIGN, folder / SIGN)
    render_text(folder / "poster.jpg", "BIG SALE\n50% OFF TODAY")
    return folder, [SIGN, "poster.jpg"]
