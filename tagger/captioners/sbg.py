"""Selective Blind Guessing captioner (Huynh et al. 2024, the "SBG 8k" model).

Per image: one CLIP image embedding; keyword selection (``tagger.captioners.sbg_vocab``) from the
similarities with the vocabulary's and the hierarchy's text embeddings, which are computed once
per CLIP and cached on disk; the prompt ``kw1, kw2, ... ###``; ``candidates`` captions sampled by
the fine-tuned GPT-2 in one ``generate`` call (seeded per image, so an image's caption does not
depend on the batch it ran in); each cut at its first "." and ended with " ." (on by default);
and the candidate CLIP finds closest to the image. The keywords and every candidate with its
CLIP score go into the JSON sidecar.

Sampling is the published pipeline's: ``pipeline("text-generation")`` with the checkpoint's
``task_specific_params`` (``do_sample``), transformers' defaults (top-k 50, top-p 1.0,
temperature 1.0) and ``max_length`` 256 (prompt included).
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import threading
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tagger.captioners.base import Captioner, load_error, missing_files
from tagger.captioners.common import require
from tagger.captioners.sbg_vocab import (
    LABEL_POS,
    Hierarchy,
    Selection,
    build_hierarchy,
    clean_up_spaces,
    finish_caption,
    prompt_text,
    ranked,
    read_data_file,
    select_keywords,
    softmax100,
    validate_encyclopedia,
    validate_labels,
)
from tagger.errors import ModelFilesMissingError, ModelLoadError
from tagger.hub import model_files, offline_env, tagger_cache_dir
from tagger.options import CaptionOptions
from tagger.registry import SBG_CONFIG, ModelSpec

if TYPE_CHECKING:
    import numpy as np
    import torch
    from PIL import Image

log = logging.getLogger("tagger")

TEXT_BATCH = 256
#: Seeding and sampling use torch's global generator: one image at a time, so concurrent
#: requests (the HTTP API) keep each image's draws reproducible.
_SAMPLING = threading.Lock()
GENERATOR_FILES = ("config.json", "model.safetensors")


@dataclass(frozen=True)
class SbgConfig:
    """What an SBG model needs besides its weights (``sbg.json``; every key optional)."""

    labels: str = "all_labels.pkl"
    encyclopedia: str = "encyclopedia.pkl"
    generator: str = "top_hierarchy"
    clip_model: str = "ViT-L-14"
    clip_pretrained: str | None = "openai"
    top_labels: int = 1000
    parts_of_speech: tuple[str, ...] = LABEL_POS
    cumulative: float = 0.5
    tertiary_limit: int = 100
    separator: str = "###"
    max_length: int = 256
    top_k: int = 50
    top_p: float = 1.0
    #: Registry entries: where the label files are published, and their SHA-256.
    files_url: str | None = None
    labels_sha256: str | None = None
    encyclopedia_sha256: str | None = None
    generator_files: tuple[str, ...] = GENERATOR_FILES

    @classmethod
    def from_mapping(cls, data: dict[str, Any], source: str) -> SbgConfig:
        """Validate a config dict (unknown keys are errors naming the known ones)."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ModelLoadError(f"{source}: unknown keys {unknown}; known: {sorted(known)}")
        values = dict(data)
        for name in ("parts_of_speech", "generator_files"):
            if name in values:
                values[name] = tuple(values[name])
        config = cls(**values)
        if config.top_labels < 1 or not 0.0 < config.cumulative <= 1.0:
            raise ModelLoadError(f"{source}: top_labels must be >= 1 and cumulative in (0, 1]")
        return config


def read_config(spec: ModelSpec) -> SbgConfig:
    """The config of a folder (``sbg.json``, or the defaults) or of a registry entry."""
    file = spec.path / SBG_CONFIG if spec.path is not None else None
    if file is not None and file.is_file():
        try:
            data = json.loads(file.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ModelLoadError(f"{file}: not readable JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise ModelLoadError(f"{file}: must hold a JSON object")
        settings = {k: v for k, v in spec.settings if k not in data}
        return SbgConfig.from_mapping({**settings, **data}, str(file))
    return SbgConfig.from_mapping(dict(spec.settings), spec.key)


# -- published files -------------------------------------------------------------------------------


def sha256_of(path: Path) -> str:
    """The SHA-256 of a file, hex."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fetch_file(url: str, target: Path, sha256: str | None) -> Path:
    """``target``, downloaded from ``url`` first when it is not there (checked against
    ``sha256``; a file that does not match is never kept). Offline (``HF_HUB_OFFLINE``) a
    missing file is an error naming the URL and the file to put in its place."""
    from tagger.safeio import atomic_write_bytes

    if target.is_file() and (sha256 is None or sha256_of(target) == sha256):
        return target
    if offline_env():  # the files are on GitHub: whether the Hub answers says nothing
        raise ModelFilesMissingError(
            f"{target.name} is not on disk and HF_HUB_OFFLINE is set: download {url} once "
            f"with network access (it is saved as {target}), or put the file in the model "
            f"folder (see docs/keyword-pipelines.md, Files and sbg.json)"
        )
    log.info("downloading %s", url)
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            data = response.read()
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise ModelFilesMissingError(
            f"cannot download {url} ({exc}); put {target.name} in the model folder instead"
        ) from exc
    digest = hashlib.sha256(data).hexdigest()
    if sha256 is not None and digest != sha256:
        raise ModelLoadError(
            f"{url} has SHA-256 {digest}, not the published {sha256}: the file changed or the "
            f"download was corrupted; nothing was saved"
        )
    atomic_write_bytes(target, data)
    return target


def default_cache_dir() -> Path:
    """``$TAGGER_CACHE_DIR/sbg`` or ``~/.cache/tagger/sbg``: published label files and the
    cached CLIP text embeddings."""
    return tagger_cache_dir("sbg")


# -- results ---------------------------------------------------------------------------------------


@dataclass
class SbgResult:
    """One image's SBG output: the caption and how it was chosen."""

    caption: str
    keywords: list[tuple[str, float]]
    prompt: str
    candidates: list[tuple[str, float, float]] = field(default_factory=list)
    prime: str = ""
    branches: dict[str, list[str]] = field(default_factory=dict)

    def sidecar(self) -> dict[str, Any]:
        """What goes into ``<stem>.json`` under ``"sbg"``: the keywords with their CLIP
        probabilities, the prompt, and every candidate with its CLIP similarity (cosine) and
        probability (softmax over the candidates); the caption is the most probable."""
        return {
            "sbg": {
                "keywords": {word: round(prob, 6) for word, prob in self.keywords},
                "prompt": self.prompt,
                "candidates": [
                    {"caption": text, "similarity": round(sim, 6), "probability": round(p, 6)}
                    for text, sim, p in self.candidates
                ],
                "prime": self.prime,
                "hierarchy": self.branches,
            }
        }


def rerank(
    candidates: Sequence[str], similarities: Sequence[float]
) -> tuple[str, list[tuple[str, float, float]]]:
    """The candidate CLIP finds closest (the published softmax-then-sort: the first of equal
    best), and every candidate with its similarity and probability.

    >>> rerank(["a dog .", "a cat ."], [0.21, 0.25])[0]
    'a cat .'
    """
    probs = softmax100(list(similarities))
    best = ranked(list(candidates), probs)[0][0]
    return best, list(zip(candidates, similarities, probs, strict=True))


# -- the captioner ---------------------------------------------------------------------------------


class SbgCaptioner(Captioner):
    """Selective Blind Guessing: CLIP keywords -> GPT-2 candidates -> CLIP rerank."""

    family = "sbg"
    default_beams = 1
    default_max_tokens = 256

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.config: SbgConfig | None = None
        self.hierarchy: Hierarchy | None = None
        self.clip: Any = None
        self.generator: Any = None
        self.tokenizer: Any = None
        self.texts: list[str] = []
        self.index: dict[str, int] = {}
        self.embeddings: np.ndarray | None = None

    # -- files -----------------------------------------------------------------------------------
    def _data_file(self, name: str, sha256: str | None) -> Path:
        """A label file: in the folder (``name``, or its ``.json`` twin), else downloaded."""
        config = self.config
        assert config is not None
        if self.spec.path is not None:
            for candidate in (name, str(Path(name).with_suffix(".json"))):
                if (self.spec.path / candidate).is_file():
                    return self.spec.path / candidate
            if not config.files_url:
                raise ModelFilesMissingError(
                    f"{self.spec.path}: no {name} (or {Path(name).with_suffix('.json').name}); "
                    f"put the SBG label files there (see docs/keyword-pipelines.md, Files and "
                    f"sbg.json)"
                )
        if not config.files_url:
            raise ModelFilesMissingError(f"captioner {self.spec.key!r}: no {name} and no download")
        cache = Path(self.cache_dir).expanduser() / "sbg" if self.cache_dir else default_cache_dir()
        return fetch_file(config.files_url + name, cache / name, sha256)

    def _generator_dir(self) -> Path:
        """The fine-tuned GPT-2 folder: in the model folder, or downloaded from the Hub."""
        config = self.config
        assert config is not None
        if self.spec.path is not None:
            folder = self.spec.path / config.generator
            if (folder / "config.json").is_file():
                return folder
            if self.spec.repo_id is None:
                raise ModelFilesMissingError(
                    f"{folder}: no GPT-2 generator (config.json + model.safetensors, a "
                    f"transformers save folder); put it there"
                )
        generator = ModelSpec(
            key=self.spec.key,
            family="sbg-generator",
            repo_id=self.spec.repo_id,
            revision=self.spec.revision,
            files=config.generator_files,
        )
        paths = model_files(generator, cache_dir=self.cache_dir, revision=self.revision)
        return paths[config.generator_files[0]].parent

    def _tokenizer(self, generator: Path) -> Any:
        """The stock GPT-2 tokenizer the generator was trained with: ``vocab.json`` and
        ``merges.txt`` from the model folder or the generator folder, else downloaded."""
        from tagger.captioners.clipcap import gpt2_tokenizer

        return gpt2_tokenizer((self.spec.path, generator), self.cache_dir)

    def _load(self) -> None:
        """Read the config, the label files, the generator, the tokenizer and CLIP, then the
        vocabulary's text embeddings (from the cache when there)."""
        from tagger.captioners.openclip import load_clip

        self.config = config = read_config(self.spec)
        labels_file = self._data_file(config.labels, config.labels_sha256)
        encyclopedia_file = self._data_file(config.encyclopedia, config.encyclopedia_sha256)
        labels = validate_labels(read_data_file(labels_file), str(labels_file))
        encyclopedia = validate_encyclopedia(
            read_data_file(encyclopedia_file), str(encyclopedia_file)
        )
        self.hierarchy = build_hierarchy(
            labels,
            encyclopedia,
            top=config.top_labels,
            parts_of_speech=config.parts_of_speech,
            tertiary_limit=config.tertiary_limit,
        )
        transformers = require("transformers")
        generator_dir = self._generator_dir()
        try:
            generator = transformers.GPT2LMHeadModel.from_pretrained(str(generator_dir))
            tokenizer = self._tokenizer(generator_dir)
        except (ModelFilesMissingError, ModelLoadError):
            raise
        except OSError as exc:
            if self.spec.path is None:
                raise missing_files(self.spec, exc, " (the SBG generator)") from exc
            raise load_error(self.spec, exc) from exc
        except Exception as exc:
            raise load_error(self.spec, exc) from exc
        self.clip = load_clip(
            config.clip_model,
            config.clip_pretrained,
            device=self.device,
            half=self.half,
            cache_dir=self.cache_dir,
            base=self.spec.path,
        )
        self.generator = generator.to(self.device).eval()  # float32: the published dtype
        self.tokenizer = tokenizer
        self.texts = self.hierarchy.texts()
        self.index = {text: row for row, text in enumerate(self.texts)}
        self.embeddings = self._text_embeddings(self.texts)

    def _release(self) -> None:
        self.clip = self.generator = self.tokenizer = self.hierarchy = None
        self.embeddings, self.texts, self.index = None, [], {}

    # -- text embeddings ------------------------------------------------------------------------
    def clip_id(self) -> str:
        """What identifies the CLIP's text embeddings: name, tag, weight files (size, mtime)."""
        config = self.config
        assert config is not None
        parts = [config.clip_model, str(config.clip_pretrained)]
        for name in (config.clip_model, config.clip_pretrained):
            if not name:
                continue
            path = Path(name).expanduser()
            if not path.is_absolute() and self.spec.path is not None:
                path = self.spec.path / name
            files = sorted(path.iterdir()) if path.is_dir() else [path] if path.is_file() else []
            parts += [f"{f.name}:{f.stat().st_size}:{int(f.stat().st_mtime)}" for f in files]
        return "\n".join(parts)

    def cache_file(self, texts: Sequence[str]) -> Path:
        """The ``.npy`` file of these texts' embeddings under this CLIP."""
        digest = hashlib.sha256(
            (self.clip_id() + "\n\n" + "\n".join(texts)).encode("utf-8")
        ).hexdigest()[:20]
        assert self.config is not None
        stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(self.config.clip_model).name)[:40]
        return default_cache_dir() / f"{stem}-{digest}.npy"

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        """Texts -> ``[N, D]`` L2-normalised float32 CLIP text embeddings."""
        import numpy as np

        out = []
        for start in range(0, len(texts), TEXT_BATCH):
            features = self.clip.encode_texts(list(texts[start : start + TEXT_BATCH]))
            features = features / features.norm(dim=-1, keepdim=True)
            out.append(features.cpu().numpy().astype(np.float32))
        return np.concatenate(out) if out else np.zeros((0, 0), dtype=np.float32)

    def _text_embeddings(self, texts: Sequence[str]) -> np.ndarray:
        """The vocabulary's embeddings: read from the cache, else computed once and saved."""
        import numpy as np

        from tagger.safeio import AtomicFile

        file = self.cache_file(texts)
        if file.is_file():
            try:
                cached = np.load(file, allow_pickle=False)
                if cached.ndim == 2 and cached.shape[0] == len(texts):
                    return cached
            except (OSError, ValueError) as exc:
                log.warning("ignoring unreadable SBG text cache %s: %s", file, exc)
        log.info("embedding %d SBG vocabulary texts with CLIP %s", len(texts), self.clip.name)
        embeddings = self.encode_texts(texts)
        with AtomicFile(file) as out:
            np.save(out.handle, embeddings, allow_pickle=False)
        return embeddings

    # -- the three steps --------------------------------------------------------------------------
    def preprocess(self, image: Image.Image) -> torch.Tensor:
        """One RGB image -> CLIP input ``[3, S, S]``."""
        self.load()
        return self.clip.preprocess(image)

    def image_embeddings(self, batch: torch.Tensor) -> np.ndarray:
        """``[N, 3, S, S]`` -> ``[N, D]`` L2-normalised float32 image embeddings."""
        features = self.clip.encode_images(batch)
        features = features / features.norm(dim=-1, keepdim=True)
        return features.cpu().numpy()

    def select(self, similarities: np.ndarray) -> Selection:
        """Keyword selection from one image's similarities with every vocabulary text."""
        assert self.hierarchy is not None
        assert self.config is not None
        index = self.index

        def score(texts: Sequence[str]) -> list[float]:
            return softmax100([float(similarities[index[text]]) for text in texts])

        return select_keywords(score, self.hierarchy, self.config.cumulative)

    def candidates(self, prompt: str, options: CaptionOptions) -> list[str]:
        """``options.candidates`` texts sampled after ``prompt`` in one generate call (seeded
        with ``options.seed``), each the text after the separator up to the next one."""
        torch = require("torch")
        config = self.config
        assert config is not None
        encoded = self.tokenizer(prompt, return_tensors="pt")
        ids = encoded["input_ids"].to(self.device)
        positions = int(getattr(self.generator.config, "n_positions", 1024))
        if ids.shape[1] >= positions:
            raise ModelLoadError(
                f"the prompt has {ids.shape[1]} tokens, more than the generator's {positions} "
                f"positions: lower top_labels or cumulative in sbg.json"
            )
        new_tokens = max(1, min(config.max_length, positions) - ids.shape[1])
        if options.max_new_tokens:
            new_tokens = min(new_tokens, options.max_new_tokens)
        eos = self.tokenizer.eos_token_id
        with _SAMPLING, torch.inference_mode():
            if options.seed is not None:
                torch.manual_seed(options.seed)
            out = self.generator.generate(
                input_ids=ids,
                attention_mask=torch.ones_like(ids),
                do_sample=True,
                top_k=config.top_k,
                top_p=config.top_p,
                temperature=options.temperature,
                num_beams=1,
                max_new_tokens=new_tokens,
                num_return_sequences=options.candidates,
                pad_token_id=eos,
                eos_token_id=eos,
            )
        texts = [
            clean_up_spaces(
                self.tokenizer.decode(
                    row[ids.shape[1] :].tolist(),
                    skip_special_tokens=True,
                    clean_up_tokenization_spaces=False,
                )
            )
            for row in out
        ]
        return [text.split(config.separator)[0] for text in texts]

    def forward(self, batch: torch.Tensor, options: CaptionOptions) -> list[SbgResult]:  # type: ignore[override]
        """SBG on a batch: images encoded together, then per image the keywords, the sampled
        candidates and the CLIP rerank."""
        import numpy as np

        self.load()
        assert self.config is not None
        assert self.embeddings is not None
        images = self.image_embeddings(batch)
        similarities = self.embeddings @ images.T  # [texts, images]
        results: list[SbgResult] = []
        for column, image in enumerate(images):
            selection = self.select(similarities[:, column])
            words = [word for word, _ in selection.keywords]
            prompt = prompt_text(words, self.config.separator)
            raw = self.candidates(prompt, options)
            finished = [finish_caption(t) if options.cut_at_period else t.strip() for t in raw]
            texts = self.encode_texts(finished)
            best, scored = rerank(finished, [float(s) for s in texts @ np.asarray(image)])
            results.append(
                SbgResult(
                    best, selection.keywords, prompt, scored, selection.prime, selection.branches
                )
            )
        return results

    def postprocess(self, ids: Any, options: CaptionOptions) -> str:
        """The chosen caption."""
        return ids.caption

    def details(self, raw: Any, options: CaptionOptions) -> dict[str, Any]:
        """The keywords and candidates of one image, for ``<stem>.json``."""
        return raw.sidecar()
