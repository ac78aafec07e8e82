"""Plain re-statements of each tagger family's published preprocessing (reference code, not
tagger's): the tests compare tagger's inputs and scores with these.

Sources: cl_tagger — the author's Space (celll1/tagutl spaces/app.py ``preprocess_image``);
Camie v2 — the model's app ``preprocess_image`` (as its users restate it: aspect fit with
LANCZOS, (124, 116, 104) padding, ToTensor + ImageNet Normalize); PixAI — deepghs/imgutils'
pillow stage runner (``PillowResize``, ``PillowToTensor``, normalize) on the export's
preprocess.json; IdolSankaku NCHW — deepghs/realutils ``_prepare_image_for_tagging``;
ML-Danbooru — deepghs/imgutils ``_resize_align`` + ``_to_tensor``; Z3D-E621 — the model's app
``prepare_image_e621``.
"""

from __future__ import annotations

import numpy as np
from PIL import Image


def cl_tagger(image: Image.Image, size: int) -> np.ndarray:
    """celll1/tagutl spaces/app.py: pil_pad_square -> resize BICUBIC -> /255 -> CHW -> BGR ->
    (x - 0.5) / 0.5."""
    width, height = image.size
    if width != height:
        new_size = max(width, height)
        padded = Image.new(image.mode, (new_size, new_size), (255, 255, 255))
        padded.paste(image, ((new_size - width) // 2, (new_size - height) // 2))
        image = padded
    resized = image.resize((size, size), Image.BICUBIC)
    array = np.array(resized, dtype=np.float32) / 255.0
    array = array.transpose(2, 0, 1)
    array = array[::-1, :, :]
    mean = np.array([0.5, 0.5, 0.5], dtype=np.float32).reshape(3, 1, 1)
    std = np.array([0.5, 0.5, 0.5], dtype=np.float32).reshape(3, 1, 1)
    return (array - mean) / std


def camie(image: Image.Image, size: int) -> np.ndarray:
    """Camie v2's preprocess_image: fit the longer side (int truncation), LANCZOS, centre on a
    (124, 116, 104) canvas, /255, ImageNet normalisation, CHW."""
    width, height = image.size
    aspect = width / height
    if aspect > 1:
        new_w, new_h = size, int(size / aspect)
    else:
        new_h, new_w = size, int(size * aspect)
    resized = image.resize((new_w, new_h), Image.Resampling.LANCZOS)
    canvas = Image.new("RGB", (size, size), (124, 116, 104))
    canvas.paste(resized, ((size - new_w) // 2, (size - new_h) // 2))
    array = np.array(canvas, dtype=np.float32).transpose((2, 0, 1)) / 255.0
    mean = np.array([0.485, 0.456, 0.406], dtype=np.float32)
    std = np.array([0.229, 0.224, 0.225], dtype=np.float32)
    for channel in range(3):
        array[channel] = (array[channel] - mean[channel]) / std[channel]
    return array.astype(np.float32)


def pixai_stages(image: Image.Image, size: int) -> np.ndarray:
    """imgutils' stages for resize [size, size] bilinear (antialias), to_tensor, normalize
    0.5 / 0.5."""
    if image.size != (size, size):
        image = image.resize((size, size), Image.BILINEAR, reducing_gap=None)
    array = np.array(image, copy=True).transpose((2, 0, 1)).astype(np.float32) / 255
    mean = np.asarray([0.5, 0.5, 0.5], dtype=np.float32)[:, None, None]
    std = np.asarray([0.5, 0.5, 0.5], dtype=np.float32)[:, None, None]
    return (array - mean) / std


def idolsankaku_nchw(image: Image.Image, size: int) -> np.ndarray:
    """realutils _prepare_image_for_tagging: white square, BICUBIC when the side differs,
    BGR, CHW, / 127.5 - 1."""
    max_dim = max(image.size)
    padded = Image.new("RGB", (max_dim, max_dim), (255, 255, 255))
    padded.paste(image, ((max_dim - image.size[0]) // 2, (max_dim - image.size[1]) // 2))
    if max_dim != size:
        padded = padded.resize((size, size), Image.BICUBIC)
    array = np.asarray(padded, dtype=np.float32)
    array = array[:, :, ::-1].transpose((2, 0, 1))
    return array / 127.5 - 1.0


def mldanbooru(image: Image.Image, size: int) -> np.ndarray:
    """imgutils _resize_align(keep_ratio=False, align=4) with BILINEAR, then _to_tensor."""
    target = ((size // 4) * 4, (size // 4) * 4)
    resized = image.resize(target, resample=Image.BILINEAR)
    array = np.array(resized, dtype=np.uint8, copy=True)
    array = array.reshape((resized.size[1], resized.size[0], len(resized.getbands())))
    return array.transpose((2, 0, 1)).astype(np.float32) / 255


def z3d(image: Image.Image, size: int) -> np.ndarray:
    """prepare_image_e621: white square, BICUBIC when the side differs, float32, BGR, HWC."""
    max_dim = max(image.size)
    padded = Image.new("RGB", (max_dim, max_dim), (255, 255, 255))
    padded.paste(image, ((max_dim - image.size[0]) // 2, (max_dim - image.size[1]) // 2))
    if max_dim != size:
        padded = padded.resize((size, size), Image.BICUBIC)
    array = np.asarray(padded, dtype=np.float32)
    return array[:, :, ::-1]


def declared(image: Image.Image, size: int) -> np.ndarray:
    """A tagger.json of stretch, bilinear, RGB, NCHW, 0..1, ImageNet mean/std."""
    resized = image.resize((size, size), Image.BILINEAR)
    array = np.asarray(resized, dtype=np.float32) / 255.0
    mean = np.asarray([0.485, 0.456, 0.406], dtype=np.float32)
    std = np.asarray([0.229, 0.224, 0.225], dtype=np.float32)
    return ((array - mean) / std).transpose(2, 0, 1)


def sigmoid(values: np.ndarray) -> np.ndarray:
    """1 / (1 + exp(-x)), as kohya-ss and the families' apps apply it to logits."""
    return 1 / (1 + np.exp(-values))
