"""CLIP-prefix GPT-2 captioners: ClipCap (Mokady et al.) and Huynh et al.'s Flickr models.

An image is embedded by an open_clip CLIP (L2-normalised when the checkpoint was trained so),
mapped to ``prefix_length`` GPT-2 input embeddings, and GPT-2 continues the text:

- greedy (default): the reference ``generate2`` loop -- arg-max each step, stop after the "."
  token or 67 tokens -- with a key/value cache instead of recomputing the whole sequence;
- beam search (``num_beams`` > 1): the reference ``generate_beam`` (length-normalised scores,
  finished beams padded with token 0 at no cost), also cached;
- nucleus sampling (``sample``) with a seed.

All three run a whole batch at once (the prefix has the same length for every image).
Checkpoints are the original ``.pt`` state dicts (``clip_project.*`` + ``gpt.*``; the stale
``attn.bias``/``attn.masked_bias`` buffers of old files are dropped) or ``.safetensors``, read
without executing pickled code.
"""

from __future__ import annotations

import functools
import inspect
import json
import logging
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tagger.captioners.base import Captioner, load_error, missing_files
from tagger.captioners.common import load_state_dict, require
from tagger.errors import ModelFilesMissingError, ModelLoadError
from tagger.hub import model_files
from tagger.options import CaptionOptions
from tagger.registry import CLIPCAP_CONFIG, GPT2_TOKENIZER_FILES, GPT2_TOKENIZER_REPO, ModelSpec

if TYPE_CHECKING:
    import torch
    from PIL import Image

log = logging.getLogger("tagger")

REFERENCE_MAX_TOKENS = 67
STOP_TEXT = "."
_STALE_KEY = re.compile(r"^gpt\.transformer\.h\.\d+\.attn\.(bias|masked_bias)$")
CHECKPOINT_NAMES = ("model.safetensors", "model.pt")


@dataclass(frozen=True)
class ClipCapConfig:
    """What a CLIP-prefix checkpoint needs besides its weights (``clipcap.json``)."""

    checkpoint: str = ""
    mapper: str = "mlp"
    prefix_length: int = 10
    prefix_size: int = 512
    normalize: bool = False
    clip_model: str = "ViT-B-32"
    clip_pretrained: str | None = "openai"
    clip_length: int = 10
    num_layers: int = 8
    gpt2: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_mapping(cls, data: dict[str, Any], source: str) -> ClipCapConfig:
        """Validate a config dict (unknown keys and a wrong mapper are errors)."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ModelLoadError(f"{source}: unknown keys {unknown}; known: {sorted(known)}")
        config = cls(**data)
        if config.mapper not in {"mlp", "transformer"}:
            raise ModelLoadError(
                f"{source}: mapper {config.mapper!r} is not 'mlp' or 'transformer'"
            )
        return config


def read_config(spec: ModelSpec) -> ClipCapConfig:
    """The config of a registry entry (its settings) or of a folder (``clipcap.json``)."""
    if spec.path is not None and (spec.path / CLIPCAP_CONFIG).is_file():
        file = spec.path / CLIPCAP_CONFIG
        try:
            data = json.loads(file.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ModelLoadError(f"{file}: not readable JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise ModelLoadError(f"{file}: must hold a JSON object")
        return ClipCapConfig.from_mapping(data, str(file))
    return ClipCapConfig.from_mapping(dict(spec.settings), spec.key)


def drop_stale_keys(state: dict[str, Any]) -> dict[str, Any]:
    """Remove the ``gpt.transformer.h.N.attn.bias``/``masked_bias`` buffers old files carry.

    >>> sorted(drop_stale_keys({"gpt.transformer.h.0.attn.bias": 0,
    ...     "gpt.transformer.h.0.attn.c_attn.bias": 1}))
    ['gpt.transformer.h.0.attn.c_attn.bias']
    """
    return {key: value for key, value in state.items() if not _STALE_KEY.match(key)}


def gpt2_config(state: dict[str, Any], overrides: dict[str, Any]) -> Any:
    """A GPT2Config with the sizes read from the checkpoint (heads: 12, or ``overrides``)."""
    transformers = require("transformers")
    wte = state.get("gpt.transformer.wte.weight")
    wpe = state.get("gpt.transformer.wpe.weight")
    if wte is None or wpe is None:
        raise ModelLoadError(
            "the checkpoint holds no GPT-2 (no gpt.transformer.wte/wpe weights); a CLIP-prefix "
            "checkpoint is the full ClipCaptionModel state dict"
        )
    layers = {int(key.split(".")[3]) for key in state if key.startswith("gpt.transformer.h.")}
    values: dict[str, Any] = {
        "vocab_size": wte.shape[0],
        "n_embd": wte.shape[1],
        "n_positions": wpe.shape[0],
        "n_layer": max(layers) + 1 if layers else 0,
        "n_head": 12,
        "bos_token_id": wte.shape[0] - 1,  # <|endoftext|>, the last GPT-2 token
        "eos_token_id": wte.shape[0] - 1,
    }
    values.update(overrides)
    return transformers.GPT2Config(**values)


def build_mapper(config: ClipCapConfig, state: dict[str, Any], dim: int) -> Any:
    """The mapping network that fits the checkpoint (MLP sizes read from its shapes)."""
    from tagger.captioners import clipcap_nn

    if config.mapper == "mlp":
        indices = sorted(
            int(m.group(1))
            for key in state
            if (m := re.match(r"^clip_project\.model\.(\d+)\.weight$", key))
        )
        if not indices:
            raise ModelLoadError(
                "mapper 'mlp' but the checkpoint has no clip_project.model.N weights (is it a "
                'transformer-mapper checkpoint? set "mapper": "transformer")'
            )
        shapes = [state[f"clip_project.model.{i}.weight"].shape for i in indices]
        sizes = [shapes[0][1], *(shape[0] for shape in shapes)]
        if sizes[0] != config.prefix_size:
            raise ModelLoadError(
                f"the mapper takes {sizes[0]}-d CLIP embeddings but prefix_size is "
                f"{config.prefix_size} (ViT-B/32: 512, ViT-L/14: 768)"
            )
        return clipcap_nn.MLPMapper(sizes)
    return clipcap_nn.TransformerMapper(
        config.prefix_size, dim, config.prefix_length, config.clip_length, config.num_layers
    )


def build_model(config: ClipCapConfig, state: dict[str, Any]) -> Any:
    """A ClipCaptionModel holding ``state`` (strict apart from GPT-2's tied lm_head)."""
    transformers = require("transformers")
    from tagger.captioners import clipcap_nn

    state = drop_stale_keys(state)
    gpt = transformers.GPT2LMHeadModel(gpt2_config(state, config.gpt2))
    mapper = build_mapper(config, state, gpt.config.n_embd)
    model = clipcap_nn.ClipCaptionModel(gpt, mapper, config.prefix_length)
    try:
        result = model.load_state_dict(state, strict=False)
    except RuntimeError as exc:  # shape mismatch
        raise ModelLoadError(f"the checkpoint does not fit its config: {exc}") from exc
    missing = [k for k in result.missing_keys if k != "gpt.lm_head.weight"]
    if missing or result.unexpected_keys:
        raise ModelLoadError(
            f"the checkpoint does not fit a {config.mapper} ClipCaptionModel: missing "
            f"{missing[:5]}, unexpected {list(result.unexpected_keys)[:5]}"
        )
    if "gpt.lm_head.weight" in result.missing_keys:
        gpt.tie_weights()
    return model.eval()


# -- decoding -------------------------------------------------------------------------------------


def _reorder(past: Any, rows: torch.Tensor) -> Any:
    """Select cache rows (beam search): Cache objects and legacy tuples alike."""
    if past is None:
        return None
    if hasattr(past, "reorder_cache"):
        past.reorder_cache(rows)
        return past
    return tuple(tuple(t.index_select(0, rows.to(t.device)) for t in layer) for layer in past)


@functools.cache
def cache_keyword(model_class: type) -> str:
    """The name a GPT-2 ``forward`` takes and returns its key/value cache by: ``cache`` from
    transformers 5 (the old name still works there, warns, and is being removed), else
    ``past_key_values`` (4.x)."""
    parameters = inspect.signature(model_class.forward).parameters
    return "cache" if "cache" in parameters else "past_key_values"


def new_cache(gpt: Any) -> Any:
    """The cache for a model's first call: None where the model builds its own Cache object
    (transformers 5) or takes tuples (4.30 and other 4.x without Cache support), an empty
    ``DynamicCache`` for the 4.x models that take one (there, tuples are deprecated)."""
    if cache_keyword(type(gpt)) == "cache" or not getattr(gpt, "_supports_cache_class", False):
        return None
    try:
        from transformers import DynamicCache
    except ImportError:  # pragma: no cover - 4.x before Cache objects
        return None
    return DynamicCache()


def _step(gpt: Any, embeds: torch.Tensor, past: Any) -> tuple[torch.Tensor, Any]:
    """One GPT-2 call on new input embeddings; returns last-position logits and the cache.

    ``past`` is what the previous call returned (``new_cache`` for the first): a Cache object
    where transformers has them, the legacy tuples on the 4.x versions without.
    """
    keyword = cache_keyword(type(gpt))
    out = gpt(inputs_embeds=embeds, use_cache=True, **{keyword: past})
    return out.logits[:, -1, :].float(), getattr(out, keyword)


def cut_at_stop(ids: Sequence[int], stop_id: int) -> list[int]:
    """Tokens up to and including the first stop token.

    >>> cut_at_stop([5, 7, 13, 9], 13)
    [5, 7, 13]
    """
    out: list[int] = []
    for token in ids:
        out.append(int(token))
        if token == stop_id:
            break
    return out


def greedy_decode(
    gpt: Any,
    prefix: torch.Tensor,
    stop_id: int,
    max_tokens: int = REFERENCE_MAX_TOKENS,
    choose: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> list[list[int]]:
    """Arg-max decoding from ``[N, L, D]`` prefix embeddings, with a key/value cache.

    Row by row this is the reference ``generate2``: each step takes the arg-max of the last
    logits (its nucleus masking never removes the arg-max, so it is plain greedy), stops after the
    stop token or ``max_tokens`` tokens. ``choose`` replaces arg-max (sampling).
    """
    torch = require("torch")
    wte = gpt.get_input_embeddings()
    rows = prefix.shape[0]
    finished = torch.zeros(rows, dtype=torch.bool, device=prefix.device)
    chosen: list[torch.Tensor] = []
    with torch.inference_mode():
        logits, past = _step(gpt, prefix, new_cache(gpt))
        for step in range(max_tokens):
            token = logits.argmax(-1) if choose is None else choose(logits)
            chosen.append(token)
            finished |= token == stop_id
            if bool(finished.all()) or step == max_tokens - 1:
                break
            logits, past = _step(gpt, wte(token).unsqueeze(1), past)
    ids = torch.stack(chosen, dim=1).tolist()
    return [cut_at_stop(row, stop_id) for row in ids]


def beam_decode(
    gpt: Any,
    prefix: torch.Tensor,
    stop_id: int,
    beam_size: int = 5,
    max_tokens: int = REFERENCE_MAX_TOKENS,
    temperature: float = 1.0,
) -> list[list[list[int]]]:
    """The reference ``generate_beam`` for each of ``N`` prefixes, batched and cached.

    Returns, per image, every beam's tokens (up to its length) best first by length-normalised
    log-probability.
    """
    torch = require("torch")
    wte = gpt.get_input_embeddings()
    images, k = prefix.shape[0], beam_size
    device = prefix.device
    with torch.inference_mode():
        logits, past = _step(gpt, prefix.repeat_interleave(k, dim=0), new_cache(gpt))
        logp = (logits / temperature).softmax(-1).log()
        vocab = logp.shape[-1]
        scores, first = logp.view(images, k, vocab)[:, 0].topk(k, dim=-1)
        scores = scores.reshape(-1)
        tokens = first.reshape(-1, 1)
        lengths = torch.ones(images * k, device=device)
        stopped = tokens[:, 0] == stop_id
        offsets = (torch.arange(images, device=device) * k).unsqueeze(1)
        for _ in range(1, max_tokens):
            if bool(stopped.all()):
                break
            logits, past = _step(gpt, wte(tokens[:, -1]).unsqueeze(1), past)
            logp = (logits / temperature).softmax(-1).log()
            logp[stopped] = float("-inf")
            logp[stopped, 0] = 0.0
            total = scores[:, None] + logp
            lengths[~stopped] += 1
            average = total / lengths[:, None]
            best, flat = average.view(images, k * vocab).topk(k, dim=-1)
            rows = (offsets + torch.div(flat, vocab, rounding_mode="floor")).reshape(-1)
            token = (flat % vocab).reshape(-1)
            lengths = lengths[rows]
            tokens = torch.cat((tokens[rows], token.unsqueeze(1)), dim=1)
            past = _reorder(past, rows)
            scores = best.reshape(-1) * lengths
            stopped = stopped[rows] | (token == stop_id)
    final = (scores / lengths).view(images, k)
    ids, sizes = tokens.tolist(), lengths.long().tolist()
    out: list[list[list[int]]] = []
    for image in range(images):
        order = torch.argsort(final[image], descending=True, stable=True).tolist()
        out.append([ids[image * k + i][: sizes[image * k + i]] for i in order])
    return out


def nucleus_chooser(
    top_p: float, temperature: float, seed: int | None
) -> Callable[[torch.Tensor], torch.Tensor]:
    """A ``choose`` function for ``greedy_decode`` that samples from the top-p nucleus."""
    torch = require("torch")
    generator = torch.Generator()
    if seed is not None:
        generator.manual_seed(seed)
    else:
        generator.seed()

    def choose(logits: torch.Tensor) -> torch.Tensor:
        probs = (logits.float().cpu() / temperature).softmax(-1)
        ordered, index = probs.sort(dim=-1, descending=True)
        before = ordered.cumsum(-1) - ordered  # mass of the tokens ranked above each one
        ordered[before >= top_p] = 0.0  # the first token is always kept
        pick = torch.multinomial(ordered, 1, generator=generator)
        return index.gather(-1, pick).squeeze(-1).to(logits.device)

    return choose


# -- the captioner --------------------------------------------------------------------------


def gpt2_tokenizer(folders: Iterable[Path | None], cache_dir: Any) -> Any:
    """The stock GPT-2 tokenizer: ``vocab.json`` and ``merges.txt`` from the first of ``folders``
    that holds both, else the ``gpt2`` files downloaded (or found in the Hugging Face cache)."""
    transformers = require("transformers")
    for folder in folders:
        if folder is not None and all((folder / n).is_file() for n in GPT2_TOKENIZER_FILES):
            files = {name: folder / name for name in GPT2_TOKENIZER_FILES}
            break
    else:
        tokenizer_spec = ModelSpec(
            key="gpt2-tokenizer",
            family="tokenizer",
            repo_id=GPT2_TOKENIZER_REPO,
            revision="main",
            files=GPT2_TOKENIZER_FILES,
        )
        files = model_files(tokenizer_spec, cache_dir=cache_dir)
    return transformers.GPT2Tokenizer(str(files["vocab.json"]), str(files["merges.txt"]))


class ClipCapCaptioner(Captioner):
    """A CLIP-prefix GPT-2 captioner (registry entry or local folder)."""

    family = "clipcap"
    default_beams = 1
    default_max_tokens = REFERENCE_MAX_TOKENS

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.config: ClipCapConfig | None = None
        self.model: Any = None
        self.clip: Any = None
        self.tokenizer: Any = None
        self.stop_id = 13

    # -- loading ------------------------------------------------------------------------------
    def _checkpoint(self, config: ClipCapConfig) -> Path:
        """The checkpoint file: in the folder, or downloaded for a registry entry."""
        spec = self.spec
        if spec.path is not None:
            names = [config.checkpoint] if config.checkpoint else list(CHECKPOINT_NAMES)
            for name in names:
                if (spec.path / name).is_file():
                    return spec.path / name
            found = sorted(spec.path.glob("*.pt")) + sorted(spec.path.glob("*.safetensors"))
            if found and not config.checkpoint:
                return found[0]
            raise ModelFilesMissingError(
                f"{spec.path}: no checkpoint ({' or '.join(names)}); put the .pt/.safetensors "
                f'file there and name it in {CLIPCAP_CONFIG} as "checkpoint"'
            )
        if spec.repo_id is None:
            raise ModelFilesMissingError(
                f"captioner {spec.key!r} has no download: put {spec.files[0]} in a folder "
                f"models/{spec.key}/ (or pass that folder with --model/--captioner)"
            )
        return model_files(spec, cache_dir=self.cache_dir, revision=self.revision)[spec.files[0]]

    def _tokenizer(self) -> Any:
        """GPT-2 tokenizer: the folder's vocab.json + merges.txt, else the stock gpt2 files."""
        return gpt2_tokenizer((self.spec.path,), self.cache_dir)

    def _load(self) -> None:
        """Read config, checkpoint, tokenizer and CLIP."""
        from tagger.captioners.openclip import load_clip

        config = read_config(self.spec)
        checkpoint = self._checkpoint(config)
        state = load_state_dict(checkpoint)
        try:
            model = build_model(config, state)
        except ModelLoadError as exc:
            raise ModelLoadError(f"{checkpoint}: {exc}") from exc
        try:
            tokenizer = self._tokenizer()
        except (ModelFilesMissingError, ModelLoadError):
            raise
        except OSError as exc:
            raise missing_files(self.spec, exc, " and the gpt2 tokenizer") from exc
        except Exception as exc:
            raise load_error(self.spec, exc) from exc
        stop = tokenizer.encode(STOP_TEXT)
        clip = load_clip(
            config.clip_model,
            config.clip_pretrained,
            device=self.device,
            half=self.half,
            cache_dir=self.cache_dir,
            base=self.spec.path,
        )
        self.config, self.tokenizer, self.clip = config, tokenizer, clip
        self.stop_id = stop[0] if stop else self.stop_id
        self.model = model.to(self.device)

    def _release(self) -> None:
        self.model = self.clip = self.tokenizer = self.config = None

    # -- the three steps --------------------------------------------------------------------------
    def preprocess(self, image: Image.Image) -> torch.Tensor:
        """One RGB image -> CLIP input ``[3, S, S]``."""
        self.load()
        return self.clip.preprocess(image)

    def prefix(self, batch: torch.Tensor) -> torch.Tensor:
        """CLIP images ``[N, 3, S, S]`` -> GPT-2 prefix embeddings ``[N, L, D]`` (float32)."""
        torch = require("torch")
        features = self.clip.encode_images(batch)
        if self.config is not None and self.config.normalize:
            features = features / features.norm(dim=-1, keepdim=True)
        with torch.inference_mode():
            return self.model.prefix_embeddings(features.float())

    def forward(self, batch: torch.Tensor, options: CaptionOptions) -> list[list[int]]:
        """Decode a batch: greedy (reference generate2), beams (generate_beam) or sampling."""
        self.load()
        prefix = self.prefix(batch)
        gpt, limit = self.model.gpt, self.max_tokens(options)
        if options.sample:
            choose = nucleus_chooser(options.top_p, options.temperature, options.seed)
            return greedy_decode(gpt, prefix, self.stop_id, limit, choose)
        if self.beams(options) > 1:
            beams = beam_decode(gpt, prefix, self.stop_id, self.beams(options), limit)
            return [image[0] for image in beams]
        return greedy_decode(gpt, prefix, self.stop_id, limit)

    def postprocess(self, ids: Sequence[int], options: CaptionOptions) -> str:
        """Token ids -> text (the stop "." kept, as the reference decodes it), stripped."""
        return self.tokenizer.decode(list(ids)).strip()
