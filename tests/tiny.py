"""Tiny WD14-shaped models built in the test session (no downloads, no files in git).

The graph has the real input/output conventions (one NHWC float32 0..255 input, one output of
sigmoid scores, one per CSV row) and random weights, so every score is a real onnxruntime result
that depends on the image's content and layout.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

RATINGS = ["general", "sensitive", "questionable", "explicit"]
GENERAL = [
    "1girl",
    "solo",
    "long_hair",
    "smile",
    "simple_background",
    "white_background",
    "^_^",
    "open_mouth",
    "blue_eyes",
    "short_hair",
    "hat",
    "outdoors",
    "sky",
    "tree",
    "cat_ears",
    "looking_at_viewer",
]
CHARACTER = ["hatsune_miku", "kasumi_(pokemon)", "kafuu_chino", "hakurei_reimu", "remilia_scarlet"]
POOL = 4  # the image is average-pooled to POOL x POOL before the linear head


def write_labels(path: Path, copyright_row: bool = True) -> list[tuple[str, int]]:
    """Write a selected_tags.csv with ratings, general and character rows (SmilingWolf layout)."""
    rows = [(name, 9) for name in RATINGS] + [(name, 0) for name in GENERAL]
    rows += [(name, 4) for name in CHARACTER]
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["tag_id", "name", "category", "count"])
        for i, (name, category) in enumerate(rows):
            writer.writerow([1000 + i, name, category, 5000 - i])
    return rows


def build_wd14_onnx(
    path: Path,
    n_tags: int,
    *,
    size: int = 32,
    fixed_batch: int | None = None,
    seed: int = 0,
    input_name: str = "input_1:0",
) -> None:
    """Save a tiny WD14-conventions ONNX model: [N, size, size, 3] -> sigmoid [N, n_tags]."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    features = 3 * POOL * POOL
    weight = rng.normal(0.0, 2.0, size=(features, n_tags)).astype(np.float32)
    bias = rng.normal(0.0, 1.0, size=(n_tags,)).astype(np.float32)
    batch = fixed_batch if fixed_batch else "batch"
    kernel = size // POOL
    nodes = [
        helper.make_node("Transpose", [input_name], ["nchw"], perm=[0, 3, 1, 2]),
        helper.make_node(
            "AveragePool",
            ["nchw"],
            ["pooled"],
            kernel_shape=[kernel, kernel],
            strides=[kernel, kernel],
        ),
        helper.make_node("Flatten", ["pooled"], ["flat"], axis=1),
        helper.make_node("Mul", ["flat", "scale"], ["scaled"]),
        helper.make_node("Sub", ["scaled", "half"], ["centred"]),
        helper.make_node("MatMul", ["centred", "weight"], ["logits0"]),
        helper.make_node("Add", ["logits0", "bias"], ["logits"]),
        helper.make_node("Sigmoid", ["logits"], ["predictions_sigmoid"]),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny_wd14",
        [helper.make_tensor_value_info(input_name, TensorProto.FLOAT, [batch, size, size, 3])],
        [helper.make_tensor_value_info("predictions_sigmoid", TensorProto.FLOAT, [batch, n_tags])],
        initializer=[
            numpy_helper.from_array(np.array(1 / 255, dtype=np.float32), "scale"),
            numpy_helper.from_array(np.array(0.5, dtype=np.float32), "half"),
            numpy_helper.from_array(weight, "weight"),
            numpy_helper.from_array(bias, "bias"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def make_model_dir(
    folder: Path, *, size: int = 32, fixed_batch: int | None = None, seed: int = 0
) -> Path:
    """A model folder (model.onnx + selected_tags.csv) ready for --model DIR."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = write_labels(folder / "selected_tags.csv")
    build_wd14_onnx(folder / "model.onnx", len(rows), size=size, fixed_batch=fixed_batch, seed=seed)
    return folder


def make_image(path: Path, size: tuple[int, int], seed: int, mode: str = "RGB") -> Path:
    """Save a random-block image (content varies across the frame so pooling sees it)."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    blocks = rng.integers(0, 256, size=(6, 6, 4), dtype=np.uint8)
    image = Image.fromarray(blocks, "RGBA").resize(size, Image.NEAREST)
    if mode != "RGBA":
        image = image.convert(mode)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)
    return path
