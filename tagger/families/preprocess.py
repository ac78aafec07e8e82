"""Image preprocessing of every tagger family, as one declarative description.

A family's preprocessing is a ``Preprocess`` value (how the RGB image becomes the model's
input: square padding or aspect-keeping fit, pad colour, resize filter, channel order, layout,
value range, mean/std) or a list of stages read from the model's own ``preprocess.json``
(PixAI's export: ``resize``, ``center_crop``, ``to_tensor``, ``normalize``). ``prepare`` applies
it to one image. Images arrive as RGB with any alpha already composited on white
(``tagger.image.load_image``), as every reference implementation does.

Only NumPy and Pillow are used, and only inside the functions.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tagger.errors import ModelLoadError

if TYPE_CHECKING:
    import numpy as np
    from PIL import Image

#: How the image is brought to the model's square side.
GEOMETRIES = ("pad_then_resize", "fit_then_pad", "stretch", "stages")
#: Value ranges: 0..255 as it is, 0..1 (then mean/std when given), or x / 127.5 - 1.
VALUE_RANGES = ("0..255", "0..1", "-1..1")
FILTERS = ("nearest", "bilinear", "bicubic", "lanczos", "box", "hamming")


@dataclass(frozen=True)
class Preprocess:
    """How one family turns an RGB image into its input.

    - ``geometry``: ``pad_then_resize`` (pad to a square of the longer side, content centred,
      then resize: WD14, cl_tagger, Z3D, IdolSankaku), ``fit_then_pad`` (resize the longer side
      to the model's side keeping the aspect ratio, then centre on a square: Camie),
      ``stretch`` (resize to the square, aspect not kept, each side floored to a multiple of
      ``align``: ML-Danbooru), ``stages`` (the model's own preprocess.json stages).
    - ``pad_colour``: RGB of the padding; ``resample``: the Pillow filter;
      ``resize_always``: resize even when the padded side equals the model's side.
    - ``channels``: ``RGB`` or ``BGR``; ``layout``: ``NHWC`` or ``NCHW``.
    - ``value_range`` and ``mean``/``std`` (applied on the 0..1 scale).
    """

    geometry: str = "pad_then_resize"
    pad_colour: tuple[int, int, int] = (255, 255, 255)
    resample: str = "bicubic"
    resize_always: bool = False
    channels: str = "BGR"
    layout: str = "NHWC"
    value_range: str = "0..255"
    mean: tuple[float, float, float] | None = None
    std: tuple[float, float, float] | None = None
    align: int = 1

    def __post_init__(self) -> None:
        checks = (
            ("geometry", self.geometry, GEOMETRIES),
            ("value_range", self.value_range, VALUE_RANGES),
            ("resample", self.resample, FILTERS),
            ("channels", self.channels, ("RGB", "BGR")),
            ("layout", self.layout, ("NHWC", "NCHW")),
        )
        for name, value, valid in checks:
            if value not in valid:
                raise ModelLoadError(
                    f"preprocess {name} {value!r} is not one of {', '.join(valid)}"
                )
        if (self.mean is None) != (self.std is None):
            raise ModelLoadError("preprocess mean and std go together: give both or neither")
        if self.mean is not None and self.value_range != "0..1":
            raise ModelLoadError(
                "preprocess mean/std apply on the 0..1 range: set value_range 0..1"
            )

    @property
    def is_wd14(self) -> bool:
        """True for SmilingWolf's preprocessing (served by ``tagger.wd14.prepare_image``)."""
        return self == WD14_PREPROCESS


#: SmilingWolf's reference preprocessing (WD14, Z3D-E621, IdolSankaku's NHWC files).
WD14_PREPROCESS = Preprocess()


def resample_filter(name: str) -> int:
    """The Pillow filter constant of a filter name.

    >>> from PIL import Image
    >>> resample_filter("bicubic") == Image.BICUBIC
    True
    """
    from PIL import Image

    table = {
        "nearest": Image.NEAREST,
        "bilinear": Image.BILINEAR,
        "bicubic": Image.BICUBIC,
        "lanczos": Image.LANCZOS,
        "box": Image.BOX,
        "hamming": Image.HAMMING,
    }
    if name not in table:
        raise ModelLoadError(f"resize filter {name!r} is not one of {', '.join(table)}")
    return table[name]


def fit_size(width: int, height: int, side: int) -> tuple[int, int]:
    """The size that fits ``side`` on the longer edge, the shorter edge truncated (Camie).

    >>> fit_size(1000, 500, 512), fit_size(300, 600, 512), fit_size(7, 7, 512)
    ((512, 256), (256, 512), (512, 512))
    """
    aspect = width / height
    if aspect > 1:
        return side, int(side / aspect)
    return int(side * aspect), side


def stretch_size(side: int, align: int) -> tuple[int, int]:
    """The stretched square size, each edge floored to a multiple of ``align`` (ML-Danbooru).

    >>> stretch_size(448, 4), stretch_size(450, 4)
    ((448, 448), (448, 448))
    """
    edge = (side // align) * align
    return edge, edge


def _geometry(image: Image.Image, pre: Preprocess, side: int) -> Image.Image:
    """Pad / fit / stretch the RGB image to the model's square."""
    from PIL import Image

    resample = resample_filter(pre.resample)
    width, height = image.size
    if pre.geometry == "pad_then_resize":
        longest = max(width, height)
        square = image
        if width != height:
            square = Image.new("RGB", (longest, longest), pre.pad_colour)
            square.paste(image, ((longest - width) // 2, (longest - height) // 2))
        if longest != side or pre.resize_always:
            square = square.resize((side, side), resample)
        return square
    if pre.geometry == "fit_then_pad":
        fitted = image.resize(fit_size(width, height, side), resample)
        canvas = Image.new("RGB", (side, side), pre.pad_colour)
        canvas.paste(fitted, ((side - fitted.width) // 2, (side - fitted.height) // 2))
        return canvas
    return image.resize(stretch_size(side, pre.align), resample)


def prepare(image: Image.Image, pre: Preprocess, side: int) -> np.ndarray:
    """One RGB image -> the model's input for that image (no batch axis).

    SmilingWolf's preprocessing is served by ``tagger.wd14.prepare_image`` (the tested,
    faster path); every other description runs the geometry, then the value steps.
    """
    if image.mode != "RGB":
        raise ValueError(f"prepare needs an RGB image, got mode {image.mode!r}")
    import numpy as np

    from tagger.wd14 import prepare_image

    if pre.is_wd14:
        return prepare_image(image, side)
    if pre.geometry == "stages":
        raise ModelLoadError("a stages preprocessing needs its stages: use prepare_stages")
    square = _wd_square(image, side) if _is_wd_geometry(pre) else _geometry(image, pre, side)
    return _finish(np.asarray(square), pre, bgr=False)


def _wd_square(image: Image.Image, side: int) -> Image.Image:
    """SmilingWolf's square (white padding, bicubic), by ``tagger.wd14``'s tested path."""
    from PIL import Image

    from tagger.wd14 import _resize_wide, pad_to_square

    width, height = image.size
    if max(width, height) == side:
        return pad_to_square(image)
    if width == height:
        return image.resize((side, side), Image.BICUBIC)
    if width > height:
        return _resize_wide(image, side)
    return pad_to_square(image).resize((side, side), Image.BICUBIC)


def _is_wd_geometry(pre: Preprocess) -> bool:
    """True when the square is SmilingWolf's: white padding, then bicubic. (Pillow returns an
    unchanged copy when resizing to the same size, so ``resize_always`` makes no difference.)"""
    return (
        pre.geometry == "pad_then_resize"
        and pre.pad_colour == (255, 255, 255)
        and pre.resample == "bicubic"
    )


def _finish(array: np.ndarray, pre: Preprocess, bgr: bool) -> np.ndarray:
    """Channel order, layout, value range and mean/std of an HWC 0..255 square (8-bit or
    float32; ``bgr``: its channels are BGR). One copy into the model's layout, then the value
    steps in place: the same float32 operations, in the same order, as the reference code."""
    import numpy as np

    if (pre.channels == "BGR") != bgr:
        array = array[:, :, ::-1]
    height, width = array.shape[:2]
    if pre.layout == "NCHW":  # one pass: 8-bit (or float) HWC -> float32 CHW
        out = np.empty((3, height, width), dtype=np.float32)
        for channel in range(3):
            out[channel] = array[:, :, channel]
        planes = [out[channel] for channel in range(3)]
    else:
        out = np.array(array, dtype=np.float32, order="C", copy=True)
        planes = [out[:, :, channel] for channel in range(3)]
    if pre.value_range == "0..1":
        out /= 255.0
        if pre.mean is not None and pre.std is not None:
            mean = np.asarray(pre.mean, dtype=np.float32)
            std = np.asarray(pre.std, dtype=np.float32)
            if pre.channels == "BGR":  # mean and std are given in RGB order
                mean, std = mean[::-1], std[::-1]
            if len(set(pre.mean)) == 1 and len(set(pre.std)) == 1:  # one value: whole array
                out -= mean[0]
                out /= std[0]
            else:
                for plane, m, d in zip(planes, mean, std, strict=True):
                    plane -= m
                    plane /= d
    elif pre.value_range == "-1..1":
        out /= 127.5
        out -= 1.0
    return out


# -------------------------------------------------------------------------------- stages


def check_stages(stages: Any, source: str) -> list[dict[str, Any]]:
    """Validate the ``stages`` of a preprocess.json; raises ``ModelLoadError`` naming the bad one.

    >>> check_stages([{"type": "to_tensor"}], "preprocess.json")
    [{'type': 'to_tensor'}]
    """
    if not isinstance(stages, Sequence) or isinstance(stages, str | bytes) or not stages:
        raise ModelLoadError(f"{source}: 'stages' must be a non-empty list of stages")
    known = {"resize", "center_crop", "to_tensor", "normalize", "convert_rgb"}
    checked = []
    for number, stage in enumerate(stages):
        if not isinstance(stage, Mapping) or stage.get("type") not in known:
            kind = stage.get("type") if isinstance(stage, Mapping) else stage
            raise ModelLoadError(
                f"{source}: stage {number} ({kind!r}) is not one of {', '.join(sorted(known))}"
            )
        checked.append(dict(stage))
    return checked


def _resize_stage(image: Image.Image, stage: Mapping[str, Any]) -> Image.Image:
    """torchvision-style resize: an int matches the shorter side, ``[h, w]`` is exact."""
    from PIL import Image

    size = stage["size"]
    resample = resample_filter(str(stage.get("interpolation", "bilinear")).lower())
    width, height = image.size
    if isinstance(size, int) or len(size) == 1:
        short = size if isinstance(size, int) else size[0]
        if width < height:
            target = (short, int(short * height / width))
        else:
            target = (int(short * width / height), short)
        limit = stage.get("max_size")
        if limit is not None and max(target) > limit:
            w, h = target
            target = (int(limit * w / h), limit) if h > w else (limit, int(limit * h / w))
    else:
        target = (int(size[1]), int(size[0]))
    if target == (width, height):
        return image
    if resample in {Image.BILINEAR, Image.BICUBIC}:
        gap = None if stage.get("antialias", True) else 1.0
        return image.resize(target, resample, reducing_gap=gap)
    return image.resize(target, resample)


def _crop_stage(image: Image.Image, stage: Mapping[str, Any]) -> Image.Image:
    """Centre crop to ``size`` (padding with black first when the image is smaller)."""
    from PIL import Image

    size = stage["size"]
    crop_h, crop_w = (size, size) if isinstance(size, int) else (size[0], size[-1])
    width, height = image.size
    if width < crop_w or height < crop_h:
        grown = Image.new(image.mode, (max(width, crop_w), max(height, crop_h)), (0, 0, 0))
        grown.paste(image, (max(crop_w - width, 0) // 2, max(crop_h - height, 0) // 2))
        image, (width, height) = grown, grown.size
    left, top = (width - crop_w) // 2, (height - crop_h) // 2
    return image.crop((left, top, left + crop_w, top + crop_h))


def prepare_stages(image: Image.Image, stages: Sequence[Mapping[str, Any]]) -> np.ndarray:
    """Run preprocess.json stages on one RGB image; the result is a CHW float32 array.

    Stage semantics follow the ONNX exports' own stage runner: ``resize`` (``size`` int: the
    shorter side, aspect kept; ``[h, w]``: exact; Pillow filter by name; ``antialias``),
    ``center_crop``, ``to_tensor`` (HWC uint8 -> CHW float 0..1), ``normalize``
    (``(x - mean) / std`` per channel).
    """
    import numpy as np

    value: Any = image
    for stage in stages:
        kind = stage["type"]
        if kind == "convert_rgb":
            value = value.convert("RGB")
        elif kind == "resize":
            value = _resize_stage(value, stage)
        elif kind == "center_crop":
            value = _crop_stage(value, stage)
        elif kind == "to_tensor":  # one copy into CHW float32, then / 255 in place
            value = np.ascontiguousarray(
                np.asarray(value, dtype=np.float32).transpose((2, 0, 1)), dtype=np.float32
            )
            value /= 255
        elif kind == "normalize":  # per channel, in place: (x - mean) / std
            mean = np.asarray(stage["mean"], dtype=np.float32)
            std = np.asarray(stage["std"], dtype=np.float32)
            for channel in range(value.shape[0]):
                value[channel] -= mean[channel]
                value[channel] /= std[channel]
    if not isinstance(value, np.ndarray):
        raise ModelLoadError("preprocess.json stages must end in an array: add a to_tensor stage")
    return np.ascontiguousarray(value, dtype=np.float32)


def stages_side(stages: Sequence[Mapping[str, Any]]) -> int | None:
    """The square side a stages list produces, when its last resize or crop fixes one.

    >>> stages_side([{"type": "resize", "size": [448, 448]}, {"type": "to_tensor"}])
    448
    """
    side = None
    for stage in stages:
        if stage["type"] in {"resize", "center_crop"}:
            size = stage["size"]
            if isinstance(size, int):
                side = size if stage["type"] == "center_crop" else None
            elif len(size) == 2 and size[0] == size[1]:
                side = int(size[0])
    return side
