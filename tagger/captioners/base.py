"""The captioner shape shared by BLIP and CLIP-prefix GPT-2.

Every captioner is preprocess (CPU, pure: one PIL image -> one tensor) -> forward (device,
inference mode: a stacked batch -> raw token ids) -> postprocess (plain Python: ids -> text),
plus ``load``/``unload``. ``caption`` runs the three steps over a list of images.
"""

from __future__ import annotations

import gc
import logging
import os
import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Self, TypeVar

from tagger.captioners.common import device_label, pick_device, require
from tagger.errors import ModelFilesMissingError, ModelLoadError
from tagger.options import CaptionOptions
from tagger.registry import ModelSpec

if TYPE_CHECKING:
    import torch
    from PIL import Image

log = logging.getLogger("tagger")
T = TypeVar("T")


class TorchModel:
    """A torch model of a spec: device, dtype and lifetime (``load`` once, ``unload`` giving its
    memory back); subclasses fill in ``_load`` and ``_release``."""

    #: What the log calls it ("loaded captioner blip-base on torch-cpu").
    kind = "model"

    def __init__(
        self,
        spec: ModelSpec,
        *,
        device: str | None = "auto",
        device_id: int = 0,
        half: bool = True,
        cache_dir: str | os.PathLike[str] | None = None,
        revision: str | None = None,
    ) -> None:
        self.spec = spec
        self.device_name = device
        self.device_id = device_id
        self.half = half
        self.cache_dir = cache_dir
        self.revision = revision
        self.device: torch.device | None = None
        self._loaded = False
        self._lock = threading.RLock()

    # -- lifetime -------------------------------------------------------------------------------
    @property
    def loaded(self) -> bool:
        """True once ``load()`` has succeeded and until ``unload()``."""
        return self._loaded

    def load(self) -> Self:
        """Load the model on its device (once; later calls return at once). Returns self."""
        with self._lock:
            if self._loaded:
                return self
            self.device = pick_device(self.device_name, self.device_id)
            self._load()
            self._loaded = True
            log.info("loaded %s %s on %s", self.kind, self.spec.key, self.device)
        return self

    def _load(self) -> None:
        """Family-specific loading (device already chosen)."""
        raise NotImplementedError

    def _release(self) -> None:
        """Drop the family's modules."""
        raise NotImplementedError

    def unload(self) -> None:
        """Drop the model and give its (GPU) memory back."""
        with self._lock:
            if not self._loaded:
                return
            self._release()
            self._loaded = False
            gc.collect()
            torch = require("torch")
            if torch.cuda.is_available():
                torch.cuda.empty_cache()

    @property
    def dtype(self) -> torch.dtype:
        """float16 on CUDA when ``half`` is set, else float32."""
        torch = require("torch")
        if self.half and self.device is not None and self.device.type == "cuda":
            return torch.float16
        return torch.float32

    @property
    def active_providers(self) -> list[str]:
        """Where the model runs, e.g. ``["torch-cpu"]`` (empty before loading)."""
        return [device_label(self.device)] if self.device is not None else []

    def _pretrained(self, load: Callable[[str, dict[str, Any]], T]) -> T:
        """``load(source, kwargs)`` for ``from_pretrained`` calls: the spec's folder, or its Hub
        repository with ``hub_kwargs`` (pinned revision, cache, offline). A Hub model whose
        files cannot be had raises ``ModelFilesMissingError``, any other failure
        ``ModelLoadError``."""
        from tagger.hub import is_offline

        if self.spec.path is not None:
            source, kwargs = str(self.spec.path), {}
        else:
            source, kwargs = self.spec.repo_id, hub_kwargs(self, offline=is_offline())
        try:
            return load(source, kwargs)  # type: ignore[arg-type]
        except OSError as exc:
            if self.spec.path is None:
                raise missing_files(self.spec, exc) from exc
            raise load_error(self.spec, exc) from exc
        except Exception as exc:
            raise load_error(self.spec, exc) from exc


class Captioner(TorchModel):
    """Base class: device, dtype, lifetime and batching; subclasses fill in the three steps."""

    kind = "captioner"
    family = ""
    #: Defaults for the CaptionOptions fields left as None.
    default_beams = 1
    default_max_tokens = 40

    # -- what the batch engine reads ----------------------------------------------------------
    @property
    def fixed_batch(self) -> int | None:
        """Captioners take any batch size."""
        return None

    def beams(self, options: CaptionOptions) -> int:
        """The number of beams for these options (the family's default when unset)."""
        return options.num_beams or self.default_beams

    def max_tokens(self, options: CaptionOptions) -> int:
        """The most new tokens for these options (the family's default when unset)."""
        return options.max_new_tokens or self.default_max_tokens

    # -- the three steps ------------------------------------------------------------------------
    def preprocess(self, image: Image.Image) -> torch.Tensor:
        """One RGB image -> one CPU tensor (thread-safe)."""
        raise NotImplementedError

    def forward(self, batch: torch.Tensor, options: CaptionOptions) -> list[list[int]]:
        """A stacked ``[N, ...]`` batch -> one list of generated token ids per image."""
        raise NotImplementedError

    def postprocess(self, ids: Sequence[int], options: CaptionOptions) -> str:
        """Generated token ids -> caption text."""
        raise NotImplementedError

    def details(self, raw: Any, options: CaptionOptions) -> dict[str, Any] | None:
        """What else one image's ``forward`` output tells, for its JSON sidecar and manifest
        line (the CLIP Interrogator's caption part, reranked candidates); None by default."""
        return None

    def collate(self, tensors: Sequence[torch.Tensor]) -> torch.Tensor:
        """Stack preprocessed images into a batch."""
        torch = require("torch")
        return torch.stack(list(tensors))

    def caption(
        self, images: Sequence[Image.Image], options: CaptionOptions | None = None
    ) -> list[str]:
        """Caption RGB PIL images, ``options.batch_size`` at a time (0: all in one run)."""
        options = options or CaptionOptions()
        self.load()
        step = options.batch_size or len(images) or 1
        captions: list[str] = []
        for start in range(0, len(images), step):
            chunk = [
                self.preprocess(image.convert("RGB")) for image in images[start : start + step]
            ]
            ids = self.forward(self.collate(chunk), options)
            captions.extend(self.postprocess(row, options) for row in ids)
        return captions


def hub_kwargs(captioner: TorchModel, *, offline: bool) -> dict[str, Any]:
    """from_pretrained keyword arguments for a registry model (revision, cache, offline)."""
    from tagger.hub import hf_cache_dir

    cache = hf_cache_dir(captioner.cache_dir)
    kwargs: dict[str, Any] = {"revision": captioner.revision or captioner.spec.revision}
    if cache is not None:
        kwargs["cache_dir"] = str(cache)
    if offline:
        kwargs["local_files_only"] = True
    return kwargs


def missing_files(spec: ModelSpec, exc: Exception, what: str = "") -> ModelFilesMissingError:
    """The error for a registry captioner whose files cannot be had: why (offline, the Hub
    not answering, or the loader's error), the files, and where to put them."""
    from tagger.hub import offline_reason

    first = str(exc).splitlines()[0] if str(exc) else ""
    why = offline_reason() or f"{type(exc).__name__}: {first}"
    files = ", ".join(spec.files)
    if spec.family == "blip":
        files += " and the weights (model.safetensors or pytorch_model.bin)"
    return ModelFilesMissingError(
        f"captioner {spec.key!r} is not on disk and cannot be downloaded ({why}). Either put "
        f"{files} from https://huggingface.co/{spec.repo_id} (revision {spec.revision}){what} "
        f"into a folder such as models/{spec.key}/ (see docs/captioners.md) and "
        f"pass that folder with --model/--captioner, or download it once with network access."
    )


def load_error(spec: ModelSpec, exc: Exception) -> ModelLoadError:
    """The error for a captioner whose files are there but do not load."""
    return ModelLoadError(
        f"captioner {spec.key!r} could not be loaded: {type(exc).__name__}: {exc}"
    )
