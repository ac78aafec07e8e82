"""Tests of tagger.image: loading arbitrary files into RGB images composited on white."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile

from tagger import image as image_module
from tagger.errors import ImageLoadError, ImageTooLargeError, OptionsError
from tagger.image import (
    DEFAULT_MAX_PIXELS,
    image_extensions,
    is_image_path,
    load_image,
    register_format_plugins,
    to_rgb_on_white,
)

WHITE = (255, 255, 255)


# --- helpers -----------------------------------------------------------------------------------


def reference_on_white(image: Image.Image) -> Image.Image:
    """SmilingWolf's wd-tagger compositing, applied to ``image.convert("RGBA")``."""
    rgba = image.convert("RGBA")
    canvas = Image.new("RGBA", rgba.size, (255, 255, 255))
    canvas.alpha_composite(rgba)
    return canvas.convert("RGB")


def rgba_4x4() -> Image.Image:
    """A 4x4 RGBA image with opaque, half-transparent, faint and invisible pixels."""
    pixels = [
        (255, 0, 0, 255),
        (255, 0, 0, 128),
        (0, 255, 0, 1),
        (0, 0, 255, 0),
        (10, 20, 30, 200),
        (200, 100, 50, 64),
        (0, 0, 0, 254),
        (255, 255, 255, 17),
    ] * 2
    image = Image.new("RGBA", (4, 4))
    image.putdata(pixels)
    return image


def pixels(image: Image.Image) -> list[tuple[int, ...]]:
    """All pixels of an image, row by row."""
    width, height = image.size
    return [image.getpixel((x, y)) for y in range(height) for x in range(width)]


def assert_same_pixels(actual: Image.Image, expected: Image.Image) -> None:
    """Mode RGB, same size, same bytes."""
    assert actual.mode == "RGB"
    assert expected.mode == "RGB"
    assert actual.size == expected.size
    assert actual.tobytes() == expected.tobytes()


def noise(size: tuple[int, int] = (64, 64)) -> Image.Image:
    """An incompressible RGB image, so that cutting its file in half cuts the pixel data."""
    rng = np.random.default_rng(0)
    return Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))


def save(image: Image.Image, path: Path, **params: object) -> Path:
    """Save an image to ``path`` and return the path."""
    image.save(path, **params)
    return path


def symlink(target: Path, link: Path) -> None:
    """Make a symbolic link, or skip the test where the platform cannot."""
    try:
        link.symlink_to(target)
    except (OSError, NotImplementedError) as exc:
        pytest.skip(f"cannot create symbolic links here: {exc}")


# --- import cost -------------------------------------------------------------------------------


def test_import_does_not_load_pillow_or_numpy() -> None:
    code = (
        "import tagger.image, sys; assert 'PIL' not in sys.modules and 'numpy' not in sys.modules"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr


# --- to_rgb_on_white: every mode ---------------------------------------------------------------


def test_rgb_is_copied_with_same_pixels() -> None:
    source = rgba_4x4().convert("RGB")
    result = to_rgb_on_white(source)
    assert result is not source
    assert_same_pixels(result, source)


def test_rgba_partial_alpha_matches_reference() -> None:
    source = rgba_4x4()
    before = source.tobytes()
    result = to_rgb_on_white(source)
    assert_same_pixels(result, reference_on_white(source))
    assert result.getpixel((0, 0)) == (255, 0, 0)
    assert result.getpixel((3, 0)) == WHITE
    assert source.tobytes() == before
    assert source.mode == "RGBA"


def test_la_matches_reference() -> None:
    source = Image.new("LA", (4, 4))
    source.putdata([(v * 16, a) for v, a in zip(range(16), [0, 1, 128, 255] * 4, strict=True)])
    result = to_rgb_on_white(source)
    assert_same_pixels(result, reference_on_white(source))
    assert result.getpixel((0, 0)) == WHITE
    assert result.getpixel((3, 0)) == (48, 48, 48)


def test_p_with_transparency_index_matches_reference() -> None:
    source = Image.new("P", (4, 4))
    source.putpalette([255, 0, 0, 0, 255, 0, 0, 0, 255] + [0] * (253 * 3))
    source.putdata([0, 1, 2, 1] * 4)
    source.info["transparency"] = 1
    result = to_rgb_on_white(source)
    assert_same_pixels(result, reference_on_white(source))
    assert result.getpixel((0, 0)) == (255, 0, 0)
    assert result.getpixel((1, 0)) == WHITE
    assert result.getpixel((2, 0)) == (0, 0, 255)


def test_p_with_bytes_transparency_matches_reference() -> None:
    source = Image.new("P", (4, 4))
    source.putpalette([255, 0, 0, 0, 255, 0, 0, 0, 255] + [0] * (253 * 3))
    source.putdata([0, 1, 2, 1] * 4)
    source.info["transparency"] = bytes([255, 128, 0])
    result = to_rgb_on_white(source)
    assert_same_pixels(result, reference_on_white(source))
    assert result.getpixel((2, 0)) == WHITE


def test_p_with_rgba_palette_matches_reference() -> None:
    source = Image.new("P", (4, 4))
    source.putpalette([255, 0, 0, 255, 0, 255, 0, 100, 0, 0, 255, 0], "RGBA")
    source.putdata([0, 1, 2, 1] * 4)
    assert "transparency" not in source.info
    result = to_rgb_on_white(source)
    assert_same_pixels(result, reference_on_white(source))
    assert result.getpixel((0, 0)) == (255, 0, 0)
    assert result.getpixel((2, 0)) == WHITE


def test_p_without_transparency() -> None:
    source = Image.new("P", (4, 4))
    source.putpalette([255, 0, 0, 0, 255, 0, 0, 0, 255] + [0] * (253 * 3))
    source.putdata([0, 1, 2, 0] * 4)
    result = to_rgb_on_white(source)
    assert result.mode == "RGB"
    assert pixels(result)[:4] == [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 0, 0)]


def test_pa_matches_reference() -> None:
    source = Image.new("PA", (4, 4))
    source.putpalette([255, 0, 0, 0, 255, 0, 0, 0, 255] + [0] * (253 * 3))
    source.putdata([(0, 255), (1, 128), (2, 0), (1, 1)] * 4)
    result = to_rgb_on_white(source)
    assert_same_pixels(result, reference_on_white(source))
    assert result.getpixel((0, 0)) == (255, 0, 0)
    assert result.getpixel((2, 0)) == WHITE


def test_premultiplied_rgba_matches_reference() -> None:
    source = rgba_4x4().convert("RGBa")
    result = to_rgb_on_white(source)
    assert_same_pixels(result, reference_on_white(source))
    assert result.getpixel((3, 0)) == WHITE


def test_premultiplied_la() -> None:
    straight = rgba_4x4().convert("LA")
    source = straight.convert("La")
    result = to_rgb_on_white(source)
    assert result.mode == "RGB"
    # Pillow cannot convert "La" itself: un-premultiplying loses at most a level or two.
    expected = np.asarray(reference_on_white(straight), dtype=np.int16)
    assert np.abs(np.asarray(result, dtype=np.int16) - expected).max() <= 2
    assert result.getpixel((0, 0)) == reference_on_white(straight).getpixel((0, 0))
    assert result.getpixel((3, 0)) == WHITE


def test_cmyk() -> None:
    source = Image.new("CMYK", (4, 4))
    source.putdata([(0, 0, 0, 0), (255, 0, 0, 0), (0, 0, 0, 255), (0, 255, 255, 0)] * 4)
    result = to_rgb_on_white(source)
    assert result.mode == "RGB"
    assert pixels(result)[:4] == [WHITE, (0, 255, 255), (0, 0, 0), (255, 0, 0)]


@pytest.mark.parametrize("mode", ["YCbCr", "LAB", "HSV"])
def test_colour_spaces_convert_to_rgb(mode: str) -> None:
    source = Image.new("RGB", (4, 4), (200, 30, 90)).convert(mode)
    result = to_rgb_on_white(source)
    assert result.mode == "RGB"
    assert result.size == (4, 4)
    assert result.getpixel((0, 0)) == source.convert("RGB").getpixel((0, 0))


def test_hsv_red() -> None:
    result = to_rgb_on_white(Image.new("HSV", (4, 4), (0, 255, 255)))
    assert result.getpixel((2, 2)) == (255, 0, 0)


@pytest.mark.parametrize("mode", ["I;16", "I;16B", "I;16L", "I;16N"])
def test_sixteen_bit_scales_by_257(mode: str) -> None:
    values = [0, 255, 256, 257, 12345, 32768, 40000, 65535] * 2
    source = Image.new(mode, (4, 4))
    source.putdata(values)
    result = to_rgb_on_white(source)
    assert result.mode == "RGB"
    assert [pixel[0] for pixel in pixels(result)] == [round(v / 257) for v in values]
    assert result.getpixel((2, 1)) == (round(40000 / 257),) * 3
    assert all(r == g == b for r, g, b in pixels(result))


def test_sixteen_bit_mid_value() -> None:
    source = Image.fromarray(np.full((4, 4), 30000, dtype=np.uint16))
    assert source.mode == "I;16"
    assert to_rgb_on_white(source).getpixel((1, 1)) == (round(30000 / 257),) * 3


def test_sixteen_bit_transparency_key() -> None:
    source = Image.fromarray(np.array([[0, 1000], [65535, 1000]], dtype=np.uint16))
    source.info["transparency"] = 1000
    result = to_rgb_on_white(source)
    assert pixels(result) == [(0, 0, 0), WHITE, WHITE, WHITE]
    source.info["transparency"] = 0
    assert to_rgb_on_white(source).getpixel((1, 0)) == (round(1000 / 257),) * 3


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ([0, 1, 200, 255], [0, 1, 200, 255]),  # 8-bit data kept
        ([0, 257, 32768, 65535], [0, 1, 128, 255]),  # 16-bit data / 257
        ([0, 100_000, 200_000, 400_000], [0, 64, 128, 255]),  # wider: scaled by the maximum
        ([-5, 0, 10, 255], [0, 0, 10, 255]),  # negatives clipped
    ],
)
def test_int32_scaling(values: list[int], expected: list[int]) -> None:
    source = Image.new("I", (4, 4))
    source.putdata(values * 4)
    result = to_rgb_on_white(source)
    assert [pixel[0] for pixel in pixels(result)[:4]] == expected


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ([0.0, 0.25, 0.5, 1.0], [0, 64, 128, 255]),  # 0..1 data times 255
        ([-3.0, 10.4, 254.6, 300.0], [0, 10, 255, 255]),  # else clipped to 0..255
        ([float("nan"), 0.5, 1.0, 0.0], [0, 128, 255, 0]),  # NaN is black
    ],
)
def test_float_scaling(values: list[float], expected: list[int]) -> None:
    source = Image.new("F", (4, 4))
    source.putdata(values * 4)
    result = to_rgb_on_white(source)
    assert result.mode == "RGB"
    assert [pixel[0] for pixel in pixels(result)[:4]] == expected


def test_bilevel() -> None:
    source = Image.new("1", (4, 4))
    source.putdata([0, 255, 0, 255] * 4)
    result = to_rgb_on_white(source)
    assert pixels(result)[:4] == [(0, 0, 0), WHITE, (0, 0, 0), WHITE]


def test_greyscale() -> None:
    source = Image.new("L", (4, 4))
    source.putdata(list(range(0, 256, 16)))
    result = to_rgb_on_white(source)
    assert pixels(result) == [(v, v, v) for v in range(0, 256, 16)]


@pytest.mark.parametrize(("mode", "color"), [("L", 7), ("RGB", (1, 2, 3))])
def test_transparency_key_on_greyscale_and_rgb(mode: str, color: object) -> None:
    source = Image.new(mode, (4, 4), color)
    source.putpixel((0, 0), 9 if mode == "L" else (9, 9, 9))
    source.info["transparency"] = color
    result = to_rgb_on_white(source)
    assert_same_pixels(result, reference_on_white(source))
    assert result.getpixel((1, 1)) == WHITE
    assert result.getpixel((0, 0)) == (9, 9, 9)


# --- load_image: files in every mode -----------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "suffix"),
    [
        (rgba_4x4, ".png"),
        (lambda: rgba_4x4().convert("LA"), ".png"),
        (lambda: rgba_4x4().convert("RGB"), ".png"),
        (lambda: rgba_4x4().convert("L"), ".png"),
        (lambda: rgba_4x4().convert("RGB").convert("CMYK"), ".tif"),
        (lambda: rgba_4x4().convert("RGB").convert("1"), ".png"),
    ],
)
def test_load_file_matches_conversion(tmp_path: Path, make: object, suffix: str) -> None:
    source = make()  # type: ignore[operator]
    path = save(source, tmp_path / f"image{suffix}")
    with Image.open(path) as stored:
        stored.load()
        expected = to_rgb_on_white(stored)
    result = load_image(path)
    assert_same_pixels(result, expected)
    if source.mode in ("RGBA", "LA"):
        assert_same_pixels(result, reference_on_white(source))


def test_load_png_with_transparency_index(tmp_path: Path) -> None:
    source = Image.new("P", (4, 4))
    source.putpalette([255, 0, 0, 0, 255, 0] + [0] * (254 * 3))
    source.putdata([0, 1] * 8)
    path = save(source, tmp_path / "p.png", transparency=1)
    result = load_image(path)
    assert_same_pixels(result, reference_on_white(source_with_trns(source, 1)))
    assert pixels(result)[:2] == [(255, 0, 0), WHITE]


def source_with_trns(image: Image.Image, index: int) -> Image.Image:
    """A copy of a P image with a transparency index."""
    copy = image.copy()
    copy.info["transparency"] = index
    return copy


def test_load_sixteen_bit_png(tmp_path: Path) -> None:
    values = np.array([[0, 1000, 30000, 65535]] * 4, dtype=np.uint16)
    path = save(Image.fromarray(values), tmp_path / "deep.png")
    result = load_image(path)
    assert result.mode == "RGB"
    assert [pixel[0] for pixel in pixels(result)[:4]] == [0, 4, round(30000 / 257), 255]


def test_load_float_tiff(tmp_path: Path) -> None:
    values = np.array([[0.0, 0.5, 1.0, 0.25]] * 4, dtype=np.float32)
    path = save(Image.fromarray(values), tmp_path / "float.tif")
    result = load_image(path)
    assert [pixel[0] for pixel in pixels(result)[:4]] == [0, 128, 255, 64]


def test_path_string_and_pathlike(tmp_path: Path) -> None:
    path = save(rgba_4x4(), tmp_path / "a.png")
    assert load_image(str(path)).tobytes() == load_image(path).tobytes()


def test_unicode_file_name(tmp_path: Path) -> None:
    path = save(Image.new("RGB", (4, 4), (1, 2, 3)), tmp_path / "画像 ü.png")
    result = load_image(path)
    assert result.getpixel((3, 3)) == (1, 2, 3)


def test_unicode_file_name_in_error(tmp_path: Path) -> None:
    path = tmp_path / "画像 ü.png"
    path.write_text("not an image", encoding="utf-8")
    with pytest.raises(ImageLoadError) as caught:
        load_image(path)
    assert caught.value.source == str(path)
    assert "画像 ü.png" in str(caught.value)


# --- orientation and animation -----------------------------------------------------------------


def oriented_image() -> Image.Image:
    """A 4x2 image, green with red at the top left and blue at the bottom right."""
    image = Image.new("RGB", (4, 2), (0, 255, 0))
    image.putpixel((0, 0), (255, 0, 0))
    image.putpixel((3, 1), (0, 0, 255))
    return image


@pytest.mark.parametrize(
    ("orientation", "red_at", "blue_at"),
    [
        (6, (1, 0), (0, 3)),  # stored rotated: shown turned 90 degrees clockwise
        (8, (0, 3), (1, 0)),  # shown turned 90 degrees counter-clockwise
        (3, (3, 1), (0, 0)),  # upside down
        (1, (0, 0), (3, 1)),  # as stored
    ],
)
def test_exif_orientation_png(
    tmp_path: Path, orientation: int, red_at: tuple[int, int], blue_at: tuple[int, int]
) -> None:
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = save(oriented_image(), tmp_path / "oriented.png", exif=exif)
    result = load_image(path)
    assert result.size == ((2, 4) if orientation in (6, 8) else (4, 2))
    assert result.getpixel(red_at) == (255, 0, 0)
    assert result.getpixel(blue_at) == (0, 0, 255)


def test_exif_orientation_jpeg_swaps_size(tmp_path: Path) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6
    path = save(Image.new("RGB", (40, 20), (90, 90, 90)), tmp_path / "o.jpg", exif=exif)
    assert load_image(path).size == (20, 40)
    assert load_image(path.read_bytes()).size == (20, 40)


def test_exif_orientation_of_pil_input_leaves_it_alone(tmp_path: Path) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6
    path = save(oriented_image(), tmp_path / "o.png", exif=exif)
    with Image.open(path) as opened:
        result = load_image(opened)
        assert opened.size == (4, 2)
        assert opened.getexif()[0x0112] == 6
    assert result.size == (2, 4)


def test_animated_gif_gives_first_frame(tmp_path: Path) -> None:
    colours = [(255, 0, 0), (0, 255, 0), (0, 0, 255)]
    frames = [Image.new("RGB", (4, 4), colour) for colour in colours]
    path = tmp_path / "anim.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=50, loop=0)
    with Image.open(path) as check:
        assert check.n_frames == 3
    result = load_image(path)
    assert result.mode == "RGB"
    assert set(pixels(result)) == {(255, 0, 0)}


def test_animated_png_gives_first_frame(tmp_path: Path) -> None:
    frames = [Image.new("RGBA", (4, 4), (0, 0, 255, 255)), Image.new("RGBA", (4, 4), (0,) * 4)]
    path = tmp_path / "anim.png"
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=50)
    assert set(pixels(load_image(path))) == {(0, 0, 255)}


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc/self/fd")
def test_multi_frame_file_is_closed(tmp_path: Path) -> None:
    frames = [Image.new("RGB", (4, 4), (i, i, i)) for i in (0, 100)]
    path = tmp_path / "closed.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:])
    load_image(path)
    fd_dir = Path("/proc/self/fd")
    open_targets = []
    for fd in fd_dir.iterdir():
        try:
            open_targets.append(fd.readlink())
        except OSError:
            continue
    assert path not in open_targets


# --- sources -----------------------------------------------------------------------------------


def test_bytes_input() -> None:
    buffer = io.BytesIO()
    rgba_4x4().save(buffer, "PNG")
    result = load_image(buffer.getvalue())
    assert_same_pixels(result, reference_on_white(rgba_4x4()))


def test_pil_input_not_mutated() -> None:
    source = rgba_4x4()
    before = (source.mode, source.size, source.tobytes(), dict(source.info))
    result = load_image(source)
    assert result is not source
    assert (source.mode, source.size, source.tobytes(), dict(source.info)) == before
    assert_same_pixels(result, reference_on_white(source))


def test_pil_rgb_input_is_copied() -> None:
    source = Image.new("RGB", (4, 4), (5, 6, 7))
    result = load_image(source)
    assert result is not source
    result.putpixel((0, 0), (0, 0, 0))
    assert source.getpixel((0, 0)) == (5, 6, 7)


def test_rgb_file_result_is_independent(tmp_path: Path) -> None:
    path = save(Image.new("RGB", (4, 4), (5, 6, 7)), tmp_path / "rgb.png")
    first = load_image(path)
    first.putpixel((0, 0), (0, 0, 0))
    assert load_image(path).getpixel((0, 0)) == (5, 6, 7)


def test_unsupported_source_type() -> None:
    with pytest.raises(TypeError, match="int"):
        load_image(42)  # type: ignore[arg-type]


def test_max_pixels_must_be_positive() -> None:
    with pytest.raises(OptionsError, match="max_pixels"):
        load_image(Image.new("RGB", (1, 1)), max_pixels=0)


# --- size limit --------------------------------------------------------------------------------


def test_default_limit() -> None:
    assert DEFAULT_MAX_PIXELS == 178_956_970


def test_too_large_file(tmp_path: Path) -> None:
    path = save(Image.new("RGB", (4, 4)), tmp_path / "big.png")
    with pytest.raises(ImageTooLargeError) as caught:
        load_image(path, max_pixels=10)
    error = caught.value
    assert isinstance(error, ImageLoadError)
    assert error.source == str(path)
    assert "4\N{MULTIPLICATION SIGN}4 = 16 pixels" in error.reason
    assert "10" in error.reason
    assert "max_pixels" in error.reason
    assert load_image(path, max_pixels=16).size == (4, 4)


@pytest.mark.parametrize("kind", ["bytes", "pil"])
def test_too_large_other_sources(kind: str) -> None:
    image = Image.new("RGB", (4, 4))
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    source = buffer.getvalue() if kind == "bytes" else image
    with pytest.raises(ImageTooLargeError) as caught:
        load_image(source, max_pixels=10)
    assert caught.value.source == ("<bytes>" if kind == "bytes" else "<PIL image>")
    assert "16" in caught.value.reason
    assert "10" in caught.value.reason


def test_pillow_decompression_bomb_becomes_too_large(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = save(Image.new("RGB", (4, 4)), tmp_path / "bomb.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 4)  # Pillow refuses over 2 x 4 = 8 pixels
    with pytest.raises(ImageTooLargeError) as caught:
        load_image(path)
    assert caught.value.source == str(path)
    assert "16 pixels" in caught.value.reason
    assert "8" in caught.value.reason
    assert "MAX_IMAGE_PIXELS" in caught.value.reason


def test_pillow_global_limit_is_not_changed(tmp_path: Path) -> None:
    before = Image.MAX_IMAGE_PIXELS
    path = save(Image.new("RGB", (4, 4)), tmp_path / "a.png")
    load_image(path, max_pixels=10**12)
    assert before == Image.MAX_IMAGE_PIXELS
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


# --- unreadable files --------------------------------------------------------------------------


def load_error(source: object) -> ImageLoadError:
    """The ImageLoadError that loading ``source`` raises."""
    with pytest.raises(ImageLoadError) as caught:
        load_image(source)  # type: ignore[arg-type]
    assert not isinstance(caught.value, ImageTooLargeError)
    return caught.value


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.png"
    path.write_bytes(b"")
    error = load_error(path)
    assert error.source == str(path)
    assert "empty file" in error.reason


def test_empty_bytes() -> None:
    error = load_error(b"")
    assert error.source == "<bytes>"
    assert "empty" in error.reason


@pytest.mark.parametrize(("fmt", "suffix"), [("PNG", ".png"), ("JPEG", ".jpg")])
def test_truncated_file(tmp_path: Path, fmt: str, suffix: str) -> None:
    buffer = io.BytesIO()
    noise().save(buffer, fmt)
    data = buffer.getvalue()
    path = tmp_path / f"cut{suffix}"
    path.write_bytes(data[: len(data) // 2])
    error = load_error(path)
    assert error.source == str(path)
    assert "truncated" in error.reason
    assert "truncated" in str(error)
    assert str(path) in str(error)


def test_truncated_bytes() -> None:
    buffer = io.BytesIO()
    noise().save(buffer, "PNG")
    data = buffer.getvalue()
    error = load_error(data[: len(data) // 2])
    assert error.source == "<bytes>"
    assert "truncated" in error.reason


def test_corrupt_pixel_data(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    noise().save(buffer, "PNG")
    data = bytearray(buffer.getvalue())
    start = data.index(b"IDAT") + 8
    data[start : start + 200] = bytes(200)  # zeroed zlib stream
    path = tmp_path / "corrupt.png"
    path.write_bytes(bytes(data))
    error = load_error(path)
    assert error.reason.startswith("cannot decode")


def test_text_file_named_png(tmp_path: Path) -> None:
    path = tmp_path / "notes.png"
    path.write_text("these are not pixels\n" * 10, encoding="utf-8")
    error = load_error(path)
    assert "not an image Pillow can read" in error.reason
    assert "format plugins installed:" in error.reason


def test_text_bytes() -> None:
    error = load_error(b"hello, world")
    assert error.source == "<bytes>"
    assert "not an image" in error.reason


def test_directory(tmp_path: Path) -> None:
    folder = tmp_path / "folder.png"
    folder.mkdir()
    error = load_error(folder)
    assert error.source == str(folder)
    assert "directory" in error.reason.lower() or "denied" in error.reason.lower()


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "missing.png"
    error = load_error(path)
    assert error.source == str(path)
    assert "No such file" in error.reason or "cannot find" in error.reason


def test_dangling_symlink(tmp_path: Path) -> None:
    link = tmp_path / "dangling.png"
    symlink(tmp_path / "gone.png", link)
    error = load_error(link)
    assert error.source == str(link)
    assert "No such file" in error.reason
    assert "broken symbolic link" in error.reason
    assert "gone.png" in error.reason


def test_symlink_loop(tmp_path: Path) -> None:
    first, second = tmp_path / "a.png", tmp_path / "b.png"
    symlink(second, first)
    symlink(first, second)
    error = load_error(first)
    assert error.source == str(first)
    assert "symbolic links" in error.reason.lower() or "loop" in error.reason.lower()


@pytest.mark.skipif(
    not hasattr(os, "geteuid") or os.geteuid() == 0, reason="needs a non-root POSIX user"
)
def test_unreadable_file(tmp_path: Path) -> None:
    path = save(Image.new("RGB", (4, 4)), tmp_path / "secret.png")
    path.chmod(0)
    try:
        error = load_error(path)
    finally:
        path.chmod(0o600)
    assert "Permission denied" in error.reason


def test_closed_pil_image(tmp_path: Path) -> None:
    path = save(noise(), tmp_path / "n.png")
    opened = Image.open(path)
    opened.close()
    error = load_error(opened)
    assert error.source == "<PIL image>"


def test_broken_exif_is_ignored(tmp_path: Path) -> None:
    path = save(Image.new("RGB", (4, 2), (1, 2, 3)), tmp_path / "e.png")
    with Image.open(path) as opened:
        opened.load()
        opened.info["exif"] = b"Exif\x00\x00garbage that is no TIFF header"
        result = load_image(opened)
    assert result.size == (4, 2)
    assert result.getpixel((0, 0)) == (1, 2, 3)


# --- file types --------------------------------------------------------------------------------


def test_image_extensions() -> None:
    extensions = image_extensions()
    assert isinstance(extensions, frozenset)
    assert {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif"} <= extensions
    assert ".pdf" not in extensions
    assert ".eps" not in extensions
    assert all(ext.startswith(".") and ext == ext.lower() for ext in extensions)
    assert image_extensions() is extensions


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("a.png", True),
        ("A.PNG", True),
        ("photo.JpEg", True),
        ("dir.d/x.webp", True),
        ("notes.txt", False),
        ("doc.pdf", False),
        ("png", False),
        ("archive.png.zip", False),
    ],
)
def test_is_image_path(name: str, expected: bool) -> None:
    assert is_image_path(name) is expected
    assert is_image_path(Path(name)) is expected


def test_register_format_plugins_is_idempotent() -> None:
    first = register_format_plugins()
    assert isinstance(first, tuple)
    assert register_format_plugins() is first


def test_register_format_plugins_registers_installed_plugins(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[str] = []
    heif = types.ModuleType("pillow_heif")
    heif.register_heif_opener = lambda: calls.append("heif")  # type: ignore[attr-defined]
    heif.register_avif_opener = lambda: calls.append("avif")  # type: ignore[attr-defined]
    jxl = types.ModuleType("pillow_jxl")
    monkeypatch.setitem(sys.modules, "pillow_heif", heif)
    monkeypatch.setitem(sys.modules, "pillow_jxl", jxl)
    monkeypatch.setitem(sys.modules, "pillow_avif", None)  # None: import raises ImportError
    monkeypatch.setattr(image_module, "_plugins", None)
    names = register_format_plugins()
    assert "pillow_heif" in names
    assert "pillow_jxl" in names
    assert "pillow_avif" not in names
    assert calls[0] == "heif"
    assert register_format_plugins() is names
    assert calls.count("heif") == 1


def test_broken_plugin_does_not_stop_loading(monkeypatch: pytest.MonkeyPatch) -> None:
    heif = types.ModuleType("pillow_heif")

    def broken() -> None:
        raise RuntimeError("libheif missing")

    heif.register_heif_opener = broken  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "pillow_heif", heif)
    monkeypatch.setattr(image_module, "_plugins", None)
    assert "pillow_heif" not in register_format_plugins()
    assert load_image(Image.new("RGB", (1, 1))).size == (1, 1)


def test_mpo_is_an_image_extension() -> None:
    assert ".mpo" in image_extensions()


def test_cut_header_is_a_data_error_not_an_os_error(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    noise().save(buffer, "JPEG")
    path = tmp_path / "header.jpg"
    path.write_bytes(buffer.getvalue()[:300])
    error = load_error(path)
    assert error.reason.startswith("cannot ")
