"""WD14 taggers (SmilingWolf's ONNX models): preprocess -> forward -> postprocess.

Preprocessing is the one of SmilingWolf's wd-tagger app, so scores match the reference:
the RGB image (alpha already composited on white by ``tagger.image``) is padded to a white square
with the content centred, resized with bicubic to the model's side when it differs, converted to
float32 0..255 and reordered RGB -> BGR; images are stacked NHWC.
"""

from __future__ import annotations

import logging
import os
import threading
from typing import TYPE_CHECKING, Any

from tagger.errors import ModelLoadError
from tagger.hub import model_files
from tagger.options import TagOptions
from tagger.registry import ModelSpec
from tagger.tags import Labels, TagResult, load_labels, tag_scores

if TYPE_CHECKING:
    import numpy as np
    from PIL import Image

log = logging.getLogger("tagger")


def pad_to_square(image: Image.Image) -> Image.Image:
    """Centre an RGB image on a white square canvas whose side is its longer side.

    Offsets are floored, so an odd remainder leaves the extra white column/row right/bottom,
    as in the reference app.
    """
    from PIL import Image

    width, height = image.size
    side = max(width, height)
    if width == height:
        return image
    canvas = Image.new("RGB", (side, side), (255, 255, 255))
    canvas.paste(image, ((side - width) // 2, (side - height) // 2))
    return canvas


def _resize_wide(image: Image.Image, size: int) -> Image.Image:
    """Pad-and-resize a wide image (width >= height) without building the padded square.

    Pillow resamples separably: a horizontal pass into an 8-bit intermediate, then a vertical
    pass. Padding a wide image adds only rows of white above and below, and a horizontal pass
    leaves a white row white, so resampling the content rows horizontally, padding that narrow
    intermediate, and running the vertical pass gives the reference result pixel for pixel
    (tests compare the two on random shapes) at about half the cost for large photos.
    """
    from PIL import Image

    width, height = image.size
    rows = image.resize((size, height), Image.BICUBIC)  # horizontal pass only
    canvas = Image.new("RGB", (size, width), (255, 255, 255))
    canvas.paste(rows, (0, (width - height) // 2))
    return canvas.resize((size, size), Image.BICUBIC)  # vertical pass only


def prepare_image(image: Image.Image, size: int) -> np.ndarray:
    """Turn an RGB image into the model's input for one image: float32 BGR ``[size, size, 3]``.

    The result equals the reference app's: white square padding, bicubic resize to ``size``
    when the side differs, RGB -> BGR.
    """
    import numpy as np
    from PIL import Image

    if image.mode != "RGB":
        raise ValueError(f"prepare_image needs an RGB image, got mode {image.mode!r}")
    width, height = image.size
    if max(width, height) == size:
        square = pad_to_square(image)
    elif width == height:
        square = image.resize((size, size), Image.BICUBIC)
    elif width > height:
        square = _resize_wide(image, size)
    else:
        square = pad_to_square(image).resize((size, size), Image.BICUBIC)
    array = np.asarray(square, dtype=np.float32)
    return np.ascontiguousarray(array[:, :, ::-1])


class WD14Tagger:
    """A loaded (or loadable) WD14 model.

    Construction is cheap; ``load()`` reads the labels, opens the onnxruntime session and reads the
    input side and batch dimension from the model. ``tag_batch`` runs the three steps.
    ``precision="fp16"`` runs a float16 copy of the graph (``tagger.fp16``; for GPU providers,
    scores drift slightly); the default ``"fp32"`` runs the published graph.
    """

    family = "wd14"

    def __init__(
        self,
        spec: ModelSpec,
        *,
        providers: str | list[str] | None = None,
        device_id: int = 0,
        threads: int = 0,
        cache_dir: str | os.PathLike[str] | None = None,
        revision: str | None = None,
        precision: str = "fp32",
    ) -> None:
        from tagger.fp16 import check_precision

        self.spec = spec
        self.precision = check_precision(precision)
        self.providers = providers
        self.device_id = device_id
        self.threads = threads
        self.cache_dir = cache_dir
        self.revision = revision
        self._session: Any = None
        self._labels: Labels | None = None
        self._input_name = ""
        self._input_size = spec.input_size
        self._fixed_batch: int | None = None
        self._lock = threading.Lock()

    # -- lifetime -------------------------------------------------------------------------
    @property
    def loaded(self) -> bool:
        """True once ``load()`` has succeeded and until ``unload()``."""
        return self._session is not None

    def load(self) -> WD14Tagger:
        """Load labels and session (once; later calls return at once). Returns self."""
        with self._lock:
            if self._session is not None:
                return self
            from tagger.runtime import create_session

            files = model_files(self.spec, cache_dir=self.cache_dir, revision=self.revision)
            labels = load_labels(files["selected_tags.csv"])
            graph = files["model.onnx"]
            if self.precision == "fp16":
                from tagger.fp16 import fp16_model

                graph = fp16_model(graph)
            session = create_session(
                graph,
                self.providers,
                device_id=self.device_id,
                threads=self.threads,
            )
            self._configure(session, labels)
            self._labels = labels
            self._session = session
            if self.precision == "fp16" and session.get_providers() == ["CPUExecutionProvider"]:
                log.warning(
                    "%s runs in float16 on the CPU: slower than float32 there, and the scores "
                    "drift; --fp16 is meant for GPU providers",
                    self.spec.key,
                )
            log.info(
                "loaded %s (%s, input %d, batch %s, %d tags) on %s",
                self.spec.key,
                self.precision,
                self._input_size,
                self._fixed_batch or "dynamic",
                len(labels.names),
                ", ".join(session.get_providers()),
            )
        return self

    def _configure(self, session: Any, labels: Labels) -> None:
        """Read input name, side and batch dimension from the session and check the output size."""
        inputs = session.get_inputs()
        if len(inputs) != 1 or len(inputs[0].shape) != 4:
            raise ModelLoadError(
                f"{self.spec.key}: expected one NHWC image input, got "
                f"{[(i.name, i.shape) for i in inputs]}"
            )
        shape = inputs[0].shape
        batch, height, width, channels = shape
        if channels not in (3, None) and not isinstance(channels, str):
            raise ModelLoadError(f"{self.spec.key}: input {shape} is not NHWC with 3 channels")
        if isinstance(height, int) and height > 0:
            if isinstance(width, int) and width != height:
                raise ModelLoadError(f"{self.spec.key}: input {shape} is not square")
            self._input_size = height
        self._fixed_batch = batch if isinstance(batch, int) and batch > 0 else None
        self._input_name = inputs[0].name
        outputs = session.get_outputs()
        count = outputs[0].shape[-1] if outputs and outputs[0].shape else None
        if isinstance(count, int) and count != len(labels.names):
            raise ModelLoadError(
                f"{self.spec.key}: the model has {count} outputs but selected_tags.csv lists "
                f"{len(labels.names)} tags; the two files come from different models"
            )

    def unload(self) -> None:
        """Drop the session (and the GPU memory it holds)."""
        with self._lock:
            self._session = None
            self._labels = None

    # -- properties read from the model ------------------------------------------------------
    @property
    def input_size(self) -> int:
        """Side of the square input image, read from the model."""
        return self._input_size

    @property
    def fixed_batch(self) -> int | None:
        """The model's fixed batch size (v2 files: 1), or None when the batch axis is dynamic."""
        return self._fixed_batch

    @property
    def labels(self) -> Labels:
        """The model's labels (loads the model first if needed)."""
        labels = self._labels if self._labels is not None else self.load()._labels
        if labels is None:  # unloaded by another thread in between
            raise ModelLoadError(f"{self.spec.key} was unloaded while in use")
        return labels

    @property
    def active_providers(self) -> list[str]:
        """The providers the session runs on (empty before loading)."""
        return list(self._session.get_providers()) if self._session is not None else []

    # -- the three steps -------------------------------------------------------------------
    def preprocess(self, image: Image.Image) -> np.ndarray:
        """One RGB image -> ``[S, S, 3]`` float32 BGR (CPU, pure; thread-safe).

        The side is read from the model, so an unloaded tagger is loaded first.
        """
        if self._session is None:
            self.load()
        return prepare_image(image, self._input_size)

    def forward(self, batch: np.ndarray) -> np.ndarray:
        """Run the model on ``[N, S, S, 3]`` and return ``[N, tags]`` scores (already sigmoid)."""
        import numpy as np

        self.load()
        session = self._session
        if self._fixed_batch is not None and batch.shape[0] != self._fixed_batch:
            step, count = self._fixed_batch, batch.shape[0]
            if count % step:  # fill the last run by repeating the last image, then drop those
                filler = np.repeat(batch[-1:], step - count % step, axis=0)
                batch = np.concatenate([batch, filler], axis=0)
            parts = [
                session.run(None, {self._input_name: batch[i : i + step]})[0]
                for i in range(0, batch.shape[0], step)
            ]
            return np.concatenate(parts, axis=0)[:count]
        return session.run(None, {self._input_name: batch})[0]

    def postprocess(self, scores: np.ndarray, options: TagOptions) -> TagResult:
        """One image's scores -> kept tags by category (plain Python)."""
        return tag_scores(scores.tolist(), self.labels, options)

    def tag_batch(self, images: list[Image.Image], options: TagOptions) -> list[TagResult]:
        """Tag RGB images in one model run."""
        import numpy as np

        if not images:
            return []
        batch = np.stack([self.preprocess(image) for image in images])
        return [self.postprocess(row, options) for row in self.forward(batch)]
