"""``FamilyTagger``: any tagger family run with the same steps as ``WD14Tagger``.

``load()`` finds the model's files (a local folder, or the registry's files through
huggingface_hub), reads the vocabulary in its family's format with the thresholds and profiles
it ships, opens the onnxruntime session and reads the input side and layout from the graph.
``preprocess`` prepares one image the family's way, ``forward`` runs a batch and returns
probabilities (a sigmoid is applied for families whose graph ends in logits), ``postprocess``
selects the kept tags of every category (``tagger.families.selection``).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tagger.errors import ModelFilesMissingError, ModelLoadError
from tagger.families.layouts import read_declared, spec_roles
from tagger.families.preprocess import Preprocess, check_stages, prepare, prepare_stages
from tagger.families.spec import Family, family
from tagger.families.vocab import (
    Vocabulary,
    load_camie_metadata,
    load_classes,
    load_tag_mapping,
    load_tags_csv,
    load_thresholds,
    with_thresholds,
)
from tagger.wd14 import WD14Tagger

if TYPE_CHECKING:
    import numpy as np
    from PIL import Image

log = logging.getLogger("tagger")

#: The environment variable huggingface_hub reads a token from (gated repositories).
TOKEN_VARIABLE = "HF_TOKEN"


def read_vocabulary(fam: Family, paths: dict[str, Path]) -> Vocabulary:
    """The vocabulary of a family model from its files (``labels``, optional ``thresholds``),
    with the family's threshold profiles."""
    labels = paths["labels"]
    if fam.label_format == "tags_csv" or labels.suffix == ".csv":
        vocabulary = load_tags_csv(labels, fam.category_map)
    elif fam.label_format == "tag_mapping":
        vocabulary = load_tag_mapping(labels)
    elif fam.label_format == "camie":
        vocabulary = load_camie_metadata(labels)
    else:
        vocabulary = load_classes(labels)
    if "thresholds" in paths:
        vocabulary = load_thresholds(paths["thresholds"], vocabulary)
    if fam.profiles:
        vocabulary = with_thresholds(vocabulary, profiles=fam.profiles)
    return vocabulary


def read_stages(path: Path) -> list[dict[str, Any]]:
    """The stages of a ``preprocess.json``."""
    import json

    source = str(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"{source}: cannot be read as JSON ({exc})") from None
    stages = data.get("stages") if isinstance(data, dict) else None
    return check_stages(stages, source)


def sigmoid(values: np.ndarray) -> np.ndarray:
    """The logistic function, float32, without overflow warnings for large logits."""
    import numpy as np

    with np.errstate(over="ignore"):
        return (1.0 / (1.0 + np.exp(-values))).astype(np.float32)


def gated_message(spec: Any, exc: BaseException) -> str | None:
    """The message for a gated repository (accept its terms, then set a token), or None."""
    text = f"{type(exc).__name__}: {exc}"
    cause = exc.__cause__
    if cause is not None:
        text += f" {type(cause).__name__}: {cause}"
    if not (spec.setting("gated", False) or "GatedRepo" in text or " 401" in text):
        return None
    return (
        f"model {spec.key!r} comes from the gated repository {spec.repo_id}: accept its terms "
        f"at https://huggingface.co/{spec.repo_id} (it asks for contact details), create a "
        f"read token at https://huggingface.co/settings/tokens and set {TOKEN_VARIABLE}=<token> "
        "(or run 'huggingface-cli login'); or put its files in a local folder and pass it "
        "with --model"
    )


class FamilyTagger(WD14Tagger):
    """A model of any tagger family; construction is cheap, ``load()`` does the work."""

    family = "family"

    def __init__(self, spec: Any, **kwargs: Any) -> None:
        super().__init__(spec, **kwargs)
        self.family = spec.family
        self._family: Family | None = None
        self._pre: Preprocess | None = None
        self._stages: list[dict[str, Any]] | None = None
        self._output = ""

    def _files(self) -> tuple[Family, dict[str, Path]]:
        """The family description and the local path of each role's file."""
        from tagger.hub import model_files

        spec = self.spec
        fam = (
            read_declared(spec.path) if spec.family == "onnx" and spec.path else family(spec.family)
        )
        try:
            paths = model_files(spec, cache_dir=self.cache_dir, revision=self.revision)
        except ModelFilesMissingError as exc:
            message = gated_message(spec, exc)
            if message is None:
                raise
            raise ModelFilesMissingError(f"{message}. ({exc})") from exc
        roles = spec_roles(dict(spec.settings), spec.files)
        return fam, {role: Path(paths[name]) for role, name in roles.items()}

    def load(self) -> FamilyTagger:
        """Read the vocabulary and open the session (once). Returns self."""
        with self._lock:
            if self._session is not None:
                return self
            from tagger.runtime import create_session

            fam, paths = self._files()
            vocabulary = read_vocabulary(fam, paths)
            stages = read_stages(paths["stages"]) if "stages" in paths else None
            graph: Any = paths["model"]
            if self.precision == "fp16":
                from tagger.fp16 import fp16_model

                graph = fp16_model(graph)
            session = create_session(
                graph, self.providers, device_id=self.device_id, threads=self.threads
            )
            self._family, self._stages = fam, stages
            self._configure(session, vocabulary)
            self._labels = vocabulary
            self._session = session
            log.info(
                "loaded %s (%s family, input %d %s, batch %s, %d tags) on %s",
                self.spec.key,
                fam.name,
                self._input_size,
                self._pre.layout if self._pre else "stages",
                self._fixed_batch or "dynamic",
                len(vocabulary.names),
                ", ".join(session.get_providers()),
            )
        return self

    def _configure(self, session: Any, labels: Any) -> None:
        """Input name, layout, side and batch axis; the output holding the scores."""
        fam = self._family
        assert fam is not None
        inputs = session.get_inputs()
        if len(inputs) != 1 or len(inputs[0].shape) != 4:
            raise ModelLoadError(
                f"{self.spec.key}: expected one image input [N, H, W, 3] or [N, 3, H, W], got "
                f"{[(i.name, i.shape) for i in inputs]}"
            )
        shape = inputs[0].shape
        layout = "NCHW" if shape[1] == 3 else "NHWC" if shape[3] == 3 else None
        if layout is None:
            raise ModelLoadError(f"{self.spec.key}: input {shape} has no 3-channel axis")
        height = shape[2] if layout == "NCHW" else shape[1]
        pre = fam.preprocess
        if self._stages is None:
            if pre is None or pre.layout != layout:
                pre = fam.nchw_preprocess if layout == "NCHW" else None
            if pre is None or pre.layout != layout:
                raise ModelLoadError(
                    f"{self.spec.key}: the {fam.title} family reads "
                    f"{fam.preprocess.layout if fam.preprocess else '?'} input, but this graph "
                    f"takes {layout} {shape}; use the files this family publishes"
                )
        self._pre = pre if self._stages is None else None
        self._input_size = height if isinstance(height, int) and height > 0 else fam.default_side
        batch = shape[0]
        self._fixed_batch = batch if isinstance(batch, int) and batch > 0 else None
        self._input_name = inputs[0].name
        outputs = session.get_outputs()
        names = [output.name for output in outputs]
        chosen = next((name for name in fam.outputs if name in names), None)
        if chosen is None and "#last" in fam.outputs:
            chosen = names[-1]
        self._output = chosen or names[0]
        found = outputs[names.index(self._output)]
        count = found.shape[-1] if found.shape else None
        if isinstance(count, int) and count != len(labels.names):
            raise ModelLoadError(
                f"{self.spec.key}: output {self._output!r} has {count} scores but the tag file "
                f"lists {len(labels.names)} tags; the two files come from different models"
            )

    @property
    def preprocessing(self) -> Preprocess | list[dict[str, Any]] | None:
        """The preprocessing in use: a ``Preprocess`` or the model's stages (after loading)."""
        return self._stages if self._stages is not None else self._pre

    def preprocess(self, image: Image.Image) -> np.ndarray:
        """One RGB image -> the model's input for it (CPU, pure; thread-safe)."""
        if self._session is None:
            self.load()
        if self._stages is not None:
            return prepare_stages(image, self._stages)
        assert self._pre is not None
        return prepare(image, self._pre, self._input_size)

    def _run(self, batch: np.ndarray) -> np.ndarray:
        """One session run on a batch the graph accepts."""
        return self._session.run([self._output], {self._input_name: batch})[0]

    def forward(self, batch: np.ndarray) -> np.ndarray:
        """Run ``[N, ...]`` images; returns ``[N, tags]`` probabilities."""
        import numpy as np

        self.load()
        fam = self._family
        if self._fixed_batch is not None and batch.shape[0] != self._fixed_batch:
            step, count = self._fixed_batch, batch.shape[0]
            if count % step:
                filler = np.repeat(batch[-1:], step - count % step, axis=0)
                batch = np.concatenate([batch, filler], axis=0)
            parts = [self._run(batch[i : i + step]) for i in range(0, batch.shape[0], step)]
            scores = np.concatenate(parts, axis=0)[:count]
        else:
            scores = self._run(batch)
        scores = scores.reshape(scores.shape[0], -1)
        return sigmoid(scores) if fam is not None and fam.activation == "sigmoid" else scores


def preprocessor(model: WD14Tagger) -> Any:
    """A loaded tagger's preprocessing as a plain function of the image (no model reference):
    what a batch job's decode threads run while the model may be unloaded and reloaded."""
    import functools

    from tagger.wd14 import prepare_image

    model.load()
    if isinstance(model, FamilyTagger):
        if model._stages is not None:
            return functools.partial(prepare_stages, stages=model._stages)
        return functools.partial(prepare, pre=model._pre, side=model.input_size)
    return functools.partial(prepare_image, size=model.input_size)
