"""Random-weight ONNX models with the real WD v3 architectures and conventions, for benchmarks.

Built directly with ``onnx.helper`` (no torch): ViT-B/16 and ConvNeXt-Base at 448 px with the
real tag count, NHWC float32 0..255 BGR input, sigmoid output. The compute per image matches the
real models (about 157 and 123 GFLOPs); the weights are random, so only speed and memory are
meaningful. The head bias lets about 30 general tags per image pass 0.35, so post-processing
and caption writing do realistic work.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

OPSET = 17


class GraphBuilder:
    """Collects nodes and random initialisers with unique names."""

    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        self.nodes: list = []
        self.inits: list = []
        self.count = 0

    def name(self, prefix: str) -> str:
        """A fresh tensor name."""
        self.count += 1
        return f"{prefix}_{self.count}"

    def const(self, array: np.ndarray, prefix: str = "c") -> str:
        """Add an initialiser and return its name."""
        from onnx import numpy_helper

        name = self.name(prefix)
        self.inits.append(numpy_helper.from_array(np.asarray(array), name))
        return name

    def weight(self, shape: tuple[int, ...], std: float = 0.02) -> str:
        """A random normal float32 initialiser."""
        return self.const(self.rng.normal(0, std, size=shape).astype(np.float32), "w")

    def node(self, op: str, inputs: list[str], **attrs) -> str:
        """Add a node with one output and return the output's name."""
        from onnx import helper

        out = self.name(op.lower())
        self.nodes.append(helper.make_node(op, inputs, [out], **attrs))
        return out

    def linear(self, x: str, fan_in: int, fan_out: int) -> str:
        """x @ W + b."""
        y = self.node("MatMul", [x, self.weight((fan_in, fan_out))])
        return self.node("Add", [y, self.const(np.zeros(fan_out, np.float32))])

    def layer_norm(self, x: str, dim: int) -> str:
        """LayerNormalization over the last axis."""
        gamma = self.const(np.ones(dim, np.float32))
        beta = self.const(np.zeros(dim, np.float32))
        return self.node("LayerNormalization", [x, gamma, beta], axis=-1, epsilon=1e-6)

    def gelu(self, x: str) -> str:
        """Exact GELU: 0.5 x (1 + erf(x / sqrt 2))."""
        scaled = self.node("Mul", [x, self.const(np.float32(1 / np.sqrt(2)))])
        erf = self.node("Erf", [scaled])
        one_plus = self.node("Add", [erf, self.const(np.float32(1.0))])
        half = self.node("Mul", [x, self.const(np.float32(0.5))])
        return self.node("Mul", [half, one_plus])

    def head(self, features: str, dim: int, n_tags: int, hot: np.ndarray) -> str:
        """Tag head with a bias that makes the ``hot`` tags likely, then sigmoid."""
        bias = np.full(n_tags, -4.0, np.float32)
        bias[hot] = 0.6
        bias[:4] = 0.0  # ratings
        logits = self.node("MatMul", [features, self.weight((dim, n_tags), std=0.02)])
        logits = self.node("Add", [logits, self.const(bias)])
        return logits

    def save(self, path: Path, x: str, y: str, size: int, n_tags: int) -> None:
        """Finish the graph: sigmoid output, NHWC input, write to ``path``."""
        import onnx
        from onnx import TensorProto, helper

        self.nodes.append(helper.make_node("Sigmoid", [y], ["predictions_sigmoid"]))
        graph = helper.make_graph(
            self.nodes,
            path.stem,
            [helper.make_tensor_value_info(x, TensorProto.FLOAT, ["batch", size, size, 3])],
            [
                helper.make_tensor_value_info(
                    "predictions_sigmoid", TensorProto.FLOAT, ["batch", n_tags]
                )
            ],
            initializer=self.inits,
        )
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
        model.ir_version = 8
        onnx.save(model, str(path), save_as_external_data=False)


def _normalised_nchw(g: GraphBuilder, x: str) -> str:
    """NHWC 0..255 -> NCHW -1..1 (the models do their own normalisation)."""
    nchw = g.node("Transpose", [x], perm=[0, 3, 1, 2])
    scaled = g.node("Mul", [nchw, g.const(np.float32(1 / 127.5))])
    return g.node("Sub", [scaled, g.const(np.float32(1.0))])


def build_vit(path: Path, n_tags: int, hot: np.ndarray, size: int = 448, seed: int = 0) -> None:
    """ViT-B/16: patch 16, width 768, depth 12, 12 heads, MLP 3072, mean-pooled tokens."""
    g = GraphBuilder(seed)
    dim, heads, depth, patch = 768, 12, 12, 16
    tokens = (size // patch) ** 2
    x_in = "input_1:0"
    x = _normalised_nchw(g, x_in)
    x = g.node(
        "Conv",
        [x, g.weight((dim, 3, patch, patch)), g.const(np.zeros(dim, np.float32))],
        strides=[patch, patch],
    )
    x = g.node("Reshape", [x, g.const(np.array([0, dim, tokens], np.int64))])
    x = g.node("Transpose", [x], perm=[0, 2, 1])
    x = g.node("Add", [x, g.weight((1, tokens, dim))])
    head_dim = dim // heads
    for _ in range(depth):
        h = g.layer_norm(x, dim)
        qkv = g.linear(h, dim, 3 * dim)
        qkv = g.node("Reshape", [qkv, g.const(np.array([0, tokens, 3, heads, head_dim], np.int64))])
        qkv = g.node("Transpose", [qkv], perm=[2, 0, 3, 1, 4])
        q, k, v = (
            g.node("Gather", [qkv, g.const(np.array(i, np.int64))], axis=0) for i in range(3)
        )
        kt = g.node("Transpose", [k], perm=[0, 1, 3, 2])
        att = g.node("MatMul", [q, kt])
        att = g.node("Mul", [att, g.const(np.float32(head_dim**-0.5))])
        att = g.node("Softmax", [att], axis=-1)
        out = g.node("MatMul", [att, v])
        out = g.node("Transpose", [out], perm=[0, 2, 1, 3])
        out = g.node("Reshape", [out, g.const(np.array([0, tokens, dim], np.int64))])
        x = g.node("Add", [x, g.linear(out, dim, dim)])
        h = g.layer_norm(x, dim)
        h = g.linear(g.gelu(g.linear(h, dim, 4 * dim)), 4 * dim, dim)
        x = g.node("Add", [x, h])
    x = g.layer_norm(x, dim)
    pooled = g.node("ReduceMean", [x], axes=[1], keepdims=0)
    g.save(path, x_in, g.head(pooled, dim, n_tags, hot), size, n_tags)


def build_convnext(
    path: Path, n_tags: int, hot: np.ndarray, size: int = 448, seed: int = 1
) -> None:
    """ConvNeXt-Base: depths (3, 3, 27, 3), widths (128, 256, 512, 1024)."""
    g = GraphBuilder(seed)
    depths, dims = (3, 3, 27, 3), (128, 256, 512, 1024)
    x_in = "input_1:0"
    x = _normalised_nchw(g, x_in)

    def channels_ln(t: str, dim: int) -> str:
        nhwc = g.node("Transpose", [t], perm=[0, 2, 3, 1])
        return g.node("Transpose", [g.layer_norm(nhwc, dim)], perm=[0, 3, 1, 2])

    x = g.node(
        "Conv",
        [x, g.weight((dims[0], 3, 4, 4)), g.const(np.zeros(dims[0], np.float32))],
        strides=[4, 4],
    )
    x = channels_ln(x, dims[0])
    for stage, (depth, dim) in enumerate(zip(depths, dims, strict=True)):
        if stage > 0:
            x = channels_ln(x, dims[stage - 1])
            x = g.node(
                "Conv",
                [x, g.weight((dim, dims[stage - 1], 2, 2)), g.const(np.zeros(dim, np.float32))],
                strides=[2, 2],
            )
        for _ in range(depth):
            h = g.node(
                "Conv",
                [x, g.weight((dim, 1, 7, 7)), g.const(np.zeros(dim, np.float32))],
                pads=[3, 3, 3, 3],
                group=dim,
            )
            h = g.node("Transpose", [h], perm=[0, 2, 3, 1])
            h = g.layer_norm(h, dim)
            h = g.linear(g.gelu(g.linear(h, dim, 4 * dim)), 4 * dim, dim)
            h = g.node("Mul", [h, g.const(np.full(dim, 1e-6, np.float32))])
            h = g.node("Transpose", [h], perm=[0, 3, 1, 2])
            x = g.node("Add", [x, h])
    pooled = g.node("ReduceMean", [x], axes=[2, 3], keepdims=0)
    pooled = g.layer_norm(pooled, dims[-1])
    g.save(path, x_in, g.head(pooled, dims[-1], n_tags, hot), size, n_tags)


def hot_general_tags(tags_csv: Path, count: int = 30, seed: int = 0) -> np.ndarray:
    """Indices of ``count`` general (category 0) tags, chosen at random."""
    with open(tags_csv, encoding="utf-8") as handle:
        categories = [int(row["category"]) for row in csv.DictReader(handle)]
    general = np.array([i for i, c in enumerate(categories) if c == 0])
    return np.random.default_rng(seed).choice(general, size=count, replace=False)


def make_wd_model(folder: Path, arch: str, tags_csv: Path) -> Path:
    """A model folder (model.onnx + the real selected_tags.csv) for ``arch`` (vit, convnext)."""
    import shutil

    folder.mkdir(parents=True, exist_ok=True)
    model = folder / "model.onnx"
    if not model.exists():
        with open(tags_csv, encoding="utf-8") as handle:
            n_tags = sum(1 for _ in csv.DictReader(handle))
        build = {"vit": build_vit, "convnext": build_convnext}[arch]
        tmp = folder / "model.onnx.partial"
        build(tmp, n_tags, hot_general_tags(tags_csv))
        tmp.replace(model)
    shutil.copyfile(tags_csv, folder / "selected_tags.csv")
    return folder
