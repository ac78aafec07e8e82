"""The tagger families, as declarative descriptions read from each model's card and code.

A ``Family`` says which files a model folder holds (by role), how its vocabulary is read, how
images are prepared, which output holds the scores and whether a sigmoid is still to be
applied, and the threshold profiles of its card. ``FAMILIES`` lists them; registry entries
(``tagger.registry``) name a family and the files of one published model.

Sources, per family (what the preprocessing restates; tests re-state the same code):

- ``pixai``: deepghs/pixai-tagger-v0.9-onnx, read by deepghs/imgutils ``tagging/pixai.py``: the
  export's own ``preprocess.json`` stages, output ``prediction`` (sigmoid applied), per-category
  ``thresholds.csv``.
- ``cl_tagger``: cella110n/cl_tagger, the author's Space (celll1/tagutl ``spaces/app.py``):
  alpha on white, white square padding, bicubic to 448, 0..1, BGR, CHW, (x - 0.5) / 0.5,
  sigmoid on the logits; ``tag_mapping.json`` with eight categories. kohya-ss sd-scripts reads
  the same files (area/Lanczos resize instead of bicubic).
- ``camie``: Camais03/camie-tagger-v2 (the model's app, as restated by its users' code):
  longest side to 512 with Lanczos, centred on a (124, 116, 104) square, 0..1, ImageNet
  mean/std, RGB, CHW; the refined output's logits, sigmoid; the card's threshold profiles.
- ``z3d``: toynya/Z3D-E621-Convnext's app: SmilingWolf's preprocessing, ``tags-selected.csv``,
  output ``predictions_sigmoid``.
- ``idolsankaku``: deepghs/idolsankaku-*-tagger-v1: SmilingWolf's layout and preprocessing;
  the NCHW re-export (deepghs/realutils ``tagging/idolsankaku.py``) takes the same image as
  BGR, CHW, x / 127.5 - 1.
- ``mldanbooru``: deepghs/ml-danbooru-onnx, read by deepghs/imgutils ``tagging/mldanbooru.py``:
  stretched to 448 (edges floored to multiples of 4) with bilinear, RGB, 0..1, CHW, sigmoid.
- ``onnx``: any classifier, described by a ``tagger.json`` in its folder (``declared``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from tagger.errors import ModelLoadError
from tagger.families.preprocess import WD14_PREPROCESS, Preprocess

#: Label formats and the loader each uses (``tagger.families.vocab``).
LABEL_FORMATS = ("tags_csv", "tag_mapping", "camie", "classes")
ACTIVATIONS = ("none", "sigmoid")


@dataclass(frozen=True)
class Family:
    """One tagger family. File roles: ``model`` (the ONNX graph), ``labels``, and optionally
    ``stages`` (a preprocess.json) and ``thresholds`` (a thresholds.csv); each role lists the
    names a local folder may use, first match wins (``*.onnx``: the folder's only graph)."""

    name: str
    title: str
    files: Mapping[str, tuple[str, ...]]
    label_format: str
    preprocess: Preprocess | None = WD14_PREPROCESS
    nchw_preprocess: Preprocess | None = None
    category_map: str = "danbooru"
    outputs: tuple[str, ...] = ()
    activation: str = "none"
    default_side: int = 448
    profiles: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    categories: tuple[str, ...] = ("rating", "general", "character")
    notes: str = ""

    def __post_init__(self) -> None:
        if self.label_format not in LABEL_FORMATS:
            raise ModelLoadError(f"family {self.name}: label format {self.label_format!r}")
        if self.activation not in ACTIVATIONS:
            raise ModelLoadError(f"family {self.name}: activation {self.activation!r}")


#: Camie v2's card: micro-F1, macro-F1, balanced and overall presets (one threshold for all
#: categories).
CAMIE_PROFILES: dict[str, dict[str, float]] = {
    "micro_optimized": {"*": 0.614},
    "macro_optimized": {"*": 0.492},
    "balanced": {"*": 0.55},
    "overall": {"*": 0.5},
}
CL_TAGGER_PREPROCESS = Preprocess(
    geometry="pad_then_resize",
    resample="bicubic",
    resize_always=True,
    channels="BGR",
    layout="NCHW",
    value_range="0..1",
    mean=(0.5, 0.5, 0.5),
    std=(0.5, 0.5, 0.5),
)
CAMIE_PREPROCESS = Preprocess(
    geometry="fit_then_pad",
    pad_colour=(124, 116, 104),
    resample="lanczos",
    channels="RGB",
    layout="NCHW",
    value_range="0..1",
    mean=(0.485, 0.456, 0.406),
    std=(0.229, 0.224, 0.225),
)
IDOLSANKAKU_NCHW = Preprocess(channels="BGR", layout="NCHW", value_range="-1..1")
MLDANBOORU_PREPROCESS = Preprocess(
    geometry="stretch", resample="bilinear", channels="RGB", layout="NCHW", value_range="0..1",
    align=4,
)  # fmt: skip
#: PixAI's export without its preprocess.json: the original model's transforms (resize to
#: 448 x 448, to tensor, normalise with 0.5 / 0.5).
PIXAI_FALLBACK = Preprocess(
    geometry="stretch", resample="bilinear", channels="RGB", layout="NCHW", value_range="0..1",
    mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5),
)  # fmt: skip

FAMILIES: dict[str, Family] = {
    family.name: family
    for family in (
        Family(
            "pixai",
            "PixAI tagger",
            {
                "model": ("model.onnx",),
                "labels": ("selected_tags.csv",),
                "stages": ("preprocess.json",),
                "thresholds": ("thresholds.csv",),
            },
            "tags_csv",
            preprocess=PIXAI_FALLBACK,
            outputs=("prediction", "output"),
            categories=("general", "character"),
        ),
        Family(
            "cl_tagger",
            "cl_tagger",
            {"model": ("model_optimized.onnx", "model.onnx"), "labels": ("tag_mapping.json",)},
            "tag_mapping",
            preprocess=CL_TAGGER_PREPROCESS,
            activation="sigmoid",
            categories=(
                "rating",
                "general",
                "character",
                "copyright",
                "artist",
                "meta",
                "quality",
                "model",
            ),
        ),
        Family(
            "camie",
            "Camie tagger v2",
            {
                "model": ("camie-tagger-v2.onnx", "model.onnx", "*.onnx"),
                "labels": ("camie-tagger-v2-metadata.json", "metadata.json", "*metadata.json"),
            },
            "camie",
            preprocess=CAMIE_PREPROCESS,
            outputs=("refined_predictions", "#last"),
            activation="sigmoid",
            default_side=512,
            profiles=CAMIE_PROFILES,
            categories=("rating", "general", "character", "copyright", "artist", "meta", "year"),
        ),
        Family(
            "z3d",
            "Z3D-E621-ConvNext",
            {"model": ("model.onnx",), "labels": ("tags-selected.csv",)},
            "tags_csv",
            category_map="e621",
            outputs=("predictions_sigmoid",),
            categories=("general",),
        ),
        Family(
            "idolsankaku",
            "IdolSankaku tagger",
            {"model": ("model.onnx",), "labels": ("selected_tags.csv",)},
            "tags_csv",
            nchw_preprocess=IDOLSANKAKU_NCHW,
            outputs=("output",),
        ),
        Family(
            "mldanbooru",
            "ML-Danbooru",
            {
                "model": ("ml_caformer_m36_dec-5-97527.onnx", "model.onnx", "*.onnx"),
                "labels": ("classes.json", "mldanbooru_tags.csv"),
            },
            "classes",
            preprocess=MLDANBOORU_PREPROCESS,
            outputs=("output",),
            activation="sigmoid",
            categories=("general",),
        ),
    )
}


def family(name: str) -> Family:
    """The family called ``name`` (raises ``ModelLoadError`` listing the valid ones).

    >>> family("camie").default_side
    512
    """
    if name in FAMILIES:
        return FAMILIES[name]
    raise ModelLoadError(f"unknown tagger family {name!r}: use one of {', '.join(FAMILIES)}")


# ------------------------------------------------------------------------ declared classifiers

#: ``tagger.json`` keys of a declared ONNX classifier (family ``onnx``).
DECLARED_KEYS = (
    "model", "labels", "label_format", "category_map", "side", "geometry", "pad_colour",
    "resample", "channels", "layout", "value_range", "mean", "std", "align", "output",
    "activation", "thresholds", "profiles",
)  # fmt: skip


def declared_family(config: Mapping[str, Any], source: str) -> Family:
    """The ``Family`` a ``tagger.json`` declares; unknown keys and bad values are errors naming
    the key.

    >>> f = declared_family({"model": "net.onnx", "labels": "labels.txt", "side": 224,
    ...                      "layout": "NCHW", "channels": "RGB", "value_range": "0..1",
    ...                      "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5],
    ...                      "activation": "sigmoid"}, "tagger.json")
    >>> f.default_side, f.preprocess.layout, f.files["labels"]
    (224, 'NCHW', ('labels.txt',))
    """
    unknown = sorted(set(config) - set(DECLARED_KEYS))
    if unknown:
        raise ModelLoadError(
            f"{source}: unknown keys {', '.join(unknown)}; the keys are {', '.join(DECLARED_KEYS)}"
        )
    for required in ("model", "labels"):
        if not isinstance(config.get(required), str):
            raise ModelLoadError(f"{source}: '{required}' must name a file in the folder")
    labels = str(config["labels"])
    default_format = (
        "tag_mapping" if labels.endswith("tag_mapping.json")
        else "tags_csv" if labels.endswith(".csv") else "classes"
    )  # fmt: skip
    pre_keys = ("geometry", "resample", "channels", "layout", "value_range", "align")
    try:
        preprocess = Preprocess(
            **{key: config[key] for key in pre_keys if key in config},
            **({"pad_colour": tuple(config["pad_colour"])} if "pad_colour" in config else {}),
            **({"mean": tuple(config["mean"])} if "mean" in config else {}),
            **({"std": tuple(config["std"])} if "std" in config else {}),
        )
        files = {"model": (str(config["model"]),), "labels": (labels,)}
        if isinstance(config.get("thresholds"), str):
            files["thresholds"] = (config["thresholds"],)
        return Family(
            "onnx",
            "declared ONNX classifier",
            files,
            str(config.get("label_format", default_format)),
            preprocess=preprocess,
            category_map=str(config.get("category_map", "danbooru")),
            outputs=(str(config["output"]),) if config.get("output") else (),
            activation=str(config.get("activation", "none")),
            default_side=int(config.get("side", 448)),
            profiles=dict(config.get("profiles") or {}),
        )
    except (TypeError, ValueError) as exc:
        raise ModelLoadError(f"{source}: {exc}") from None
    except ModelLoadError as exc:
        raise ModelLoadError(f"{source}: {exc}") from None


def describe_preprocess(pre: Preprocess | None) -> str:
    """A one-line summary of a preprocessing, for ``tagger models --families``.

    >>> describe_preprocess(CAMIE_PREPROCESS)
    'fit_then_pad (124, 116, 104), lanczos, RGB NCHW 0..1 mean/std'
    >>> describe_preprocess(WD14_PREPROCESS)
    'pad_then_resize (255, 255, 255), bicubic, BGR NHWC 0..255'
    """
    if pre is None:
        return "the model's preprocess.json stages"
    norm = " mean/std" if pre.mean is not None else ""
    return (
        f"{pre.geometry} {pre.pad_colour}, {pre.resample}, {pre.channels} {pre.layout} "
        f"{pre.value_range}{norm}"
    )


def family_rows() -> list[dict[str, Any]]:
    """Every family with its categories, files and preprocessing (``tagger models --families``)."""
    rows = [
        {
            "family": "wd14",
            "title": "SmilingWolf WD14 (v1.4, v2, v3)",
            "categories": ["rating", "general", "character"],
            "files": ["model.onnx", "selected_tags.csv"],
            "preprocess": describe_preprocess(WD14_PREPROCESS),
        }
    ]
    for fam in FAMILIES.values():
        pre = fam.preprocess if fam.name != "pixai" else None
        rows.append(
            {
                "family": fam.name,
                "title": fam.title,
                "categories": list(fam.categories),
                "files": [" | ".join(names) for names in fam.files.values()],
                "preprocess": describe_preprocess(pre),
            }
        )
    rows.append(
        {
            "family": "onnx",
            "title": "any ONNX classifier",
            "categories": ["as its labels file says"],
            "files": ["tagger.json", "the graph and labels it names"],
            "preprocess": "as tagger.json declares",
        }
    )
    return rows
