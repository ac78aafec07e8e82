"""Tiny random-weight models of every tagger family, in each family's input/output layout and
label format (no downloads, nothing in git).

Each graph is ``[optional NHWC->NCHW] -> AveragePool -> Flatten -> MatMul -> Add -> [Sigmoid]``
with the family's input layout, input name and output names, so every score is a real
onnxruntime result that depends on the image's pixels, their layout and their value range.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

POOL = 4
RATINGS = ["general", "sensitive", "questionable", "explicit"]
GENERAL = ["1girl", "solo", "long_hair", "very_long_hair", "shirt", "white_shirt", "chair", "hair"]
CHARACTER = ["hatsune_miku", "kasumi_(pokemon)"]


def build_onnx(
    path: Path,
    n_tags: int,
    *,
    size: int = 32,
    layout: str = "NHWC",
    input_name: str = "input",
    outputs: tuple[str, ...] = ("output",),
    sigmoid: bool = True,
    dynamic_size: bool = False,
    fixed_batch: int | None = None,
    seed: int = 0,
) -> None:
    """Save a tiny classifier. Every output name gets the same scores (``sigmoid`` applies to
    the last one only when there are several: ``logits`` ... ``prediction``)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    weight = rng.normal(0.0, 2.0, size=(3 * POOL * POOL, n_tags)).astype(np.float32)
    bias = rng.normal(0.0, 1.0, size=(n_tags,)).astype(np.float32)
    batch: int | str = fixed_batch or "batch"
    side: int | str = "side" if dynamic_size else size
    shape = [batch, side, side, 3] if layout == "NHWC" else [batch, 3, side, side]
    kernel = size // POOL
    nodes = []
    source = input_name
    if layout == "NHWC":
        nodes.append(helper.make_node("Transpose", [input_name], ["nchw"], perm=[0, 3, 1, 2]))
        source = "nchw"
    nodes += [
        helper.make_node(
            "AveragePool", [source], ["pooled"], kernel_shape=[kernel, kernel],
            strides=[kernel, kernel],
        ),
        helper.make_node("Flatten", ["pooled"], ["flat"], axis=1),
        helper.make_node("Mul", ["flat", "scale"], ["scaled"]),
        helper.make_node("MatMul", ["scaled", "weight"], ["logits0"]),
        helper.make_node("Add", ["logits0", "bias"], ["raw"]),
    ]  # fmt: skip
    for number, name in enumerate(outputs):
        last = number == len(outputs) - 1
        op = "Sigmoid" if sigmoid and (last or len(outputs) == 1) else "Identity"
        nodes.append(helper.make_node(op, ["raw"], [name]))
    scale = 1 / 255 if layout == "NHWC" else 1.0
    graph = helper.make_graph(
        nodes,
        "tiny_family",
        [helper.make_tensor_value_info(input_name, TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, [batch, n_tags]) for n in outputs],
        initializer=[
            numpy_helper.from_array(np.array(scale, dtype=np.float32), "scale"),
            numpy_helper.from_array(weight, "weight"),
            numpy_helper.from_array(bias, "bias"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def _csv(path: Path, header: list[str], rows: list[list[object]]) -> None:
    """Write a CSV file."""
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)


def make_pixai(folder: Path, *, size: int = 32, seed: int = 1, stages: bool = True) -> Path:
    """deepghs/pixai-tagger-v0.9-onnx's layout: model.onnx (input ``input`` NCHW; outputs
    embedding, logits, prediction), selected_tags.csv (general 0, character 4, ``ips``),
    preprocess.json, thresholds.csv (per category)."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = [(name, 0) for name in GENERAL] + [(name, 4) for name in CHARACTER]
    _csv(
        folder / "selected_tags.csv",
        ["tag_id", "name", "category", "count", "ips"],
        [
            [i, name, cat, 100 - i, json.dumps(["vocaloid"] if name == "hatsune_miku" else [])]
            for i, (name, cat) in enumerate(rows)
        ],
    )
    _csv(
        folder / "thresholds.csv",
        ["category", "name", "threshold"],
        [[0, "general", 0.3], [4, "character", 0.85]],
    )
    if stages:
        (folder / "preprocess.json").write_text(
            json.dumps(
                {
                    "stages": [
                        {"type": "resize", "size": [size, size], "interpolation": "bilinear",
                         "max_size": None, "antialias": True},
                        {"type": "to_tensor"},
                        {"type": "normalize", "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5]},
                    ]
                }
            )
        )  # fmt: skip
    build_onnx(
        folder / "model.onnx", len(rows), size=size, layout="NCHW",
        outputs=("embedding", "logits", "prediction"), seed=seed,
    )  # fmt: skip
    return folder


CL_CATEGORIES = [
    ("general", "Rating"),
    ("sensitive", "Rating"),
    ("1girl", "General"),
    ("solo", "General"),
    ("long_hair", "General"),
    ("hatsune_miku", "Character"),
    ("vocaloid", "Copyright"),
    ("some_artist", "Artist"),
    ("highres", "Meta"),
    ("masterpiece", "Quality"),
    ("best_quality", "Quality"),
    ("sdxl", "Model"),
]


def make_cl_tagger(folder: Path, *, size: int = 32, seed: int = 2) -> Path:
    """cella110n/cl_tagger's layout: model_optimized.onnx (NCHW, logits) + tag_mapping.json."""
    folder.mkdir(parents=True, exist_ok=True)
    mapping = {str(i): {"tag": tag, "category": cat} for i, (tag, cat) in enumerate(CL_CATEGORIES)}
    (folder / "tag_mapping.json").write_text(json.dumps(mapping))
    build_onnx(
        folder / "model_optimized.onnx", len(CL_CATEGORIES), size=size, layout="NCHW",
        sigmoid=False, seed=seed,
    )  # fmt: skip
    return folder


CAMIE_TAGS = [
    ("general", "rating"),
    ("explicit", "rating"),
    ("1girl", "general"),
    ("red_hair", "general"),
    ("chair", "general"),
    ("hatsune_miku", "character"),
    ("vocaloid", "copyright"),
    ("some_artist", "artist"),
    ("highres", "meta"),
    ("year_2024", "year"),
]


def make_camie(folder: Path, *, size: int = 32, seed: int = 3) -> Path:
    """Camais03/camie-tagger-v2's layout: camie-tagger-v2.onnx (NCHW; outputs initial and
    refined logits) + camie-tagger-v2-metadata.json."""
    folder.mkdir(parents=True, exist_ok=True)
    metadata = {
        "model_info": {"img_size": size},
        "dataset_info": {
            "total_tags": len(CAMIE_TAGS),
            "tag_mapping": {
                "idx_to_tag": {str(i): tag for i, (tag, _) in enumerate(CAMIE_TAGS)},
                "tag_to_category": dict(CAMIE_TAGS),
            },
        },
    }
    (folder / "camie-tagger-v2-metadata.json").write_text(json.dumps(metadata))
    build_onnx(
        folder / "camie-tagger-v2.onnx", len(CAMIE_TAGS), size=size, layout="NCHW",
        outputs=("initial_predictions", "refined_predictions"), sigmoid=False, seed=seed,
    )  # fmt: skip
    return folder


def make_z3d(folder: Path, *, size: int = 32, seed: int = 4) -> Path:
    """toynya/Z3D-E621-Convnext's layout: model.onnx (NHWC, ``predictions_sigmoid``) +
    tags-selected.csv (name, e621 category numbers)."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = [("anthro", 0), ("fur", 0), ("canine", 5), ("some_artist", 1), ("comic", 7)]
    _csv(folder / "tags-selected.csv", ["name", "category"], [list(r) for r in rows])
    build_onnx(
        folder / "model.onnx", len(rows), size=size, input_name="input_1:0",
        outputs=("predictions_sigmoid",), seed=seed,
    )  # fmt: skip
    return folder


def make_mldanbooru(folder: Path, *, size: int = 32, seed: int = 5) -> Path:
    """deepghs/ml-danbooru-onnx's layout: the CAFormer graph (NCHW, dynamic side, logits) +
    classes.json."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "classes.json").write_text(json.dumps(GENERAL))
    build_onnx(
        folder / "ml_caformer_m36_dec-5-97527.onnx", len(GENERAL), size=size, layout="NCHW",
        sigmoid=False, seed=seed,
    )  # fmt: skip
    return folder


def make_idolsankaku_nchw(folder: Path, *, size: int = 32, seed: int = 6) -> Path:
    """The NCHW re-export of IdolSankaku (realutils): model.onnx (input ``input``, output
    ``output``, sigmoid) + selected_tags.csv (ratings 9, general 0, character 4)."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = [("safe", 9), ("questionable", 9), ("explicit", 9), ("1girl", 0), ("asian", 0)]
    rows += [("hatsune_miku", 4)]
    _csv(folder / "selected_tags.csv", ["tag_id", "name", "category", "count"],
         [[i, n, c, 1] for i, (n, c) in enumerate(rows)])  # fmt: skip
    build_onnx(folder / "model.onnx", len(rows), size=size, layout="NCHW", seed=seed)
    return folder


def make_declared(folder: Path, *, size: int = 32, seed: int = 7) -> Path:
    """Any ONNX classifier with a tagger.json: NCHW, RGB, 0..1 with mean/std, labels.txt."""
    folder.mkdir(parents=True, exist_ok=True)
    names = ["cat", "dog", "bird"]
    (folder / "labels.txt").write_text("\n".join(names) + "\n")
    (folder / "tagger.json").write_text(
        json.dumps(
            {
                "model": "net.onnx", "labels": "labels.txt", "side": size, "geometry": "stretch",
                "resample": "bilinear", "channels": "RGB", "layout": "NCHW",
                "value_range": "0..1", "mean": [0.485, 0.456, 0.406],
                "std": [0.229, 0.224, 0.225], "activation": "sigmoid",
            }
        )
    )  # fmt: skip
    build_onnx(folder / "net.onnx", len(names), size=size, layout="NCHW", sigmoid=False, seed=seed)
    return folder
