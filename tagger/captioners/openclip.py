"""open_clip CLIP models for the CLIP-prefix captioners and the CLIP relevance filter.

A CLIP model is named in one of three ways:

- an open_clip architecture and pretrained tag (``ViT-L-14`` + ``openai``): open_clip downloads
  the weights through the Hugging Face Hub (or reads its cache offline);
- an architecture and a local weight file (``ViT-B-32`` + ``clip/ViT-B-32.safetensors``);
- a folder in the Hub's open_clip layout: ``open_clip_config.json`` (``{"model_cfg": ...,
  "preprocess_cfg": ...}``) and ``open_clip_model.safetensors`` (or
  ``open_clip_pytorch_model.bin``).

Local weight files are read with ``tagger.captioners.common.load_state_dict`` (safetensors or
``torch.load(weights_only=True)``), never as an arbitrary pickle. Works with open_clip 2.20+.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tagger.captioners.common import load_state_dict, require
from tagger.errors import ModelFilesMissingError, ModelLoadError

if TYPE_CHECKING:
    import torch
    from PIL import Image

log = logging.getLogger("tagger")

CLIP_CONFIG = "open_clip_config.json"
CLIP_WEIGHTS = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")
OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)


@dataclass
class ClipModel:
    """A loaded CLIP: the model, its image transform and tokenizer, and where it runs."""

    name: str
    model: Any
    transform: Any
    tokenizer: Any
    device: torch.device
    dtype: torch.dtype

    def preprocess(self, image: Image.Image) -> torch.Tensor:
        """One RGB image -> ``[3, S, S]`` float32 (resize short side, centre crop, CLIP norm)."""
        return self.transform(image)

    def encode_images(self, batch: torch.Tensor) -> torch.Tensor:
        """``[N, 3, S, S]`` -> ``[N, D]`` float32 image embeddings (not normalised)."""
        torch = require("torch")
        with torch.inference_mode():
            features = self.model.encode_image(batch.to(self.device, self.dtype))
        return features.float()

    def encode_texts(self, texts: list[str]) -> torch.Tensor:
        """Texts -> ``[N, D]`` float32 text embeddings (not normalised)."""
        torch = require("torch")
        tokens = self.tokenizer(texts).to(self.device)
        with torch.inference_mode():
            features = self.model.encode_text(tokens)
        return features.float()


def _folder_weights(folder: Path) -> Path:
    """The weight file of an open_clip folder."""
    for name in CLIP_WEIGHTS:
        if (folder / name).is_file():
            return folder / name
    found = sorted(folder.glob("*.safetensors"))
    if found:
        return found[0]
    raise ModelFilesMissingError(
        f"CLIP folder {str(folder)!r} has no weights: put {' or '.join(CLIP_WEIGHTS)} next to "
        f"{CLIP_CONFIG}"
    )


def _register_config(folder: Path) -> tuple[str, dict[str, Any]]:
    """Register a folder's model config with open_clip under a unique name; returns
    (name, preprocess config)."""
    open_clip = require("open_clip")
    try:
        data = json.loads((folder / CLIP_CONFIG).read_text(encoding="utf-8"))
        model_cfg = data["model_cfg"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ModelLoadError(
            f"{folder / CLIP_CONFIG}: not an open_clip config ({{'model_cfg': ...}}): {exc}"
        ) from exc
    digest = hashlib.sha1(json.dumps(model_cfg, sort_keys=True).encode()).hexdigest()[:12]
    name = f"tagger-local-{digest}"
    configs = (
        open_clip.factory._MODEL_CONFIGS
    )  # the registry open_clip's own add_model_config fills
    configs[name] = model_cfg
    return name, dict(data.get("preprocess_cfg") or {})


def _transform(model: Any, preprocess_cfg: dict[str, Any]) -> Any:
    """The evaluation image transform of a model (open_clip's own)."""
    open_clip = require("open_clip")
    size = preprocess_cfg.get("size") or model.visual.image_size
    mean = tuple(
        preprocess_cfg.get("mean") or getattr(model.visual, "image_mean", None) or OPENAI_MEAN
    )
    std = tuple(preprocess_cfg.get("std") or getattr(model.visual, "image_std", None) or OPENAI_STD)
    return open_clip.image_transform(size, is_train=False, mean=mean, std=std)


def _require_weights(
    open_clip: Any, model: str, pretrained: str | None, cache_dir: str | os.PathLike[str] | None
) -> None:
    """Fail at once when open_clip would download a tag's weights from the Hub and cannot
    (``tagger.hub.require_hub_file``) instead of waiting through the Hub client's retries."""
    from tagger.hub import require_hub_file

    hub_name = (open_clip.get_pretrained_cfg(model, pretrained or "") or {}).get("hf_hub")
    if not pretrained or not hub_name:
        return
    repo_id, file = os.path.split(hub_name)
    file = file or CLIP_WEIGHTS[1]
    names = (CLIP_WEIGHTS[0], file) if file == CLIP_WEIGHTS[1] else (file,)
    require_hub_file(
        repo_id,
        names,
        what=f"CLIP {model} ({pretrained})",
        cache_dir=cache_dir,
        fix=f"run once with network access, or put an open_clip folder ({CLIP_CONFIG} + "
        f"{CLIP_WEIGHTS[0]}) in the model folder and name it in clipcap.json",
    )


def load_clip(
    model: str,
    pretrained: str | None = None,
    *,
    device: torch.device,
    half: bool = True,
    cache_dir: str | os.PathLike[str] | None = None,
    base: Path | None = None,
) -> ClipModel:
    """Load a CLIP model (see the module docstring for the three ways of naming one).

    Relative folder and file names are looked up under ``base`` (a captioner folder) first.
    """
    torch = require("torch")
    open_clip = require("open_clip")
    dtype = torch.float16 if half and device.type == "cuda" else torch.float32

    def local(name: str | None) -> Path | None:
        if not name:
            return None
        for root in ([base] if base is not None else []) + [Path.cwd()]:
            path = (root / name).expanduser()
            if path.exists():
                return path
        path = Path(name).expanduser()
        return path if path.is_absolute() and path.exists() else None

    folder = local(model)
    weight_file = local(pretrained)
    try:
        if folder is not None and folder.is_dir():
            name, preprocess_cfg = _register_config(folder)
            clip = open_clip.create_model(name, pretrained=None, device="cpu")
            state = load_state_dict(_folder_weights(folder))
        elif weight_file is not None and weight_file.is_file():
            name, preprocess_cfg = model, {}
            clip = open_clip.create_model(model, pretrained=None, device="cpu")
            state = load_state_dict(weight_file)
        else:
            name, preprocess_cfg, state = model, {}, None
            _require_weights(open_clip, model, pretrained, cache_dir)
            clip = open_clip.create_model(
                model,
                pretrained=pretrained or None,
                device="cpu",
                cache_dir=str(cache_dir) if cache_dir else None,
            )
    except (ModelLoadError, ModelFilesMissingError):
        raise
    except Exception as exc:
        text = f"{type(exc).__name__}: {exc}"
        if pretrained and ("download" in text.lower() or "offline" in text.lower()):
            raise ModelFilesMissingError(
                f"CLIP {model} ({pretrained}) is not on disk and cannot be downloaded ({text}); "
                f"run once with network access, or put an open_clip folder ({CLIP_CONFIG} + "
                f"{CLIP_WEIGHTS[0]}) in the model folder and name it in clipcap.json"
            ) from exc
        raise ModelLoadError(f"CLIP {model!r} could not be created: {text}") from exc
    if state is not None:
        try:
            clip.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            raise ModelLoadError(
                f"CLIP weights do not fit {model!r}: {str(exc).splitlines()[0]}"
            ) from exc
    clip = clip.to(device, dtype).eval()
    return ClipModel(
        name=name,
        model=clip,
        transform=_transform(clip, preprocess_cfg),
        tokenizer=open_clip.get_tokenizer(name),
        device=device,
        dtype=dtype,
    )
