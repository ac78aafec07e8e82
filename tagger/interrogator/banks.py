"""The CLIP Interrogator's banks of terms and their cached text embeddings.

The term lists are pharmapsychotic's ``clip-interrogator`` data files (``artists.txt``,
``flavors.txt``, ``mediums.txt``, ``movements.txt``, ``negative.txt``), read from the installed
package (or a folder holding them) and never copied into this project. The library builds two
banks in code: artists become ``by X`` and ``inspired by X``, and the trending bank is 18 sites
in four phrasings.

Text embeddings are stored the library's way: a safetensors file with ``embeds`` (float16,
one L2-normalised row per term) and ``hash`` (the SHA-256 of the terms joined by ``,``, as
int8 character codes). Looked up in this order, each used only when its hash matches the terms:

1. tagger's cache, ``<cache>/<model>_<bank>-<terms hash>.safetensors``;
2. a file in the library's own naming, ``<cache>/<model>_<bank>.safetensors`` (so the cache
   folder of the clip-interrogator extension, ``models/clip-interrogator``, can be named);
3. the library's published precomputed file for that model on the Hugging Face Hub
   (``pharmapsychotic/ci-preprocess``), through huggingface_hub: from its cache when offline,
   downloaded otherwise; any failure just moves on;
4. computed now, once, and saved as 1.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from tagger.errors import MissingDependencyError, OptionsError, TaggerError

if TYPE_CHECKING:
    import numpy as np

log = logging.getLogger("tagger")

#: The 18 sites of the library's trending bank, spelled as its 0.6.0 release spells them.
TRENDING_SITES = (
    "Artstation",
    "behance",
    "cg society",
    "cgsociety",
    "deviantart",
    "dribble",
    "flickr",
    "instagram",
    "pexels",
    "pinterest",
    "pixabay",
    "pixiv",
    "polycount",
    "reddit",
    "shutterstock",
    "tumblr",
    "unsplash",
    "zbrush central",
)
#: The data file of each bank read from disk.
BANK_FILES = {
    "artists": "artists.txt",
    "flavors": "flavors.txt",
    "mediums": "mediums.txt",
    "movements": "movements.txt",
    "negative": "negative.txt",
}
PUBLISHED_REPO = "pharmapsychotic/ci-preprocess"
PACKAGE = "clip_interrogator"
INSTALL_HINT = (
    "the CLIP Interrogator's term banks come from the clip-interrogator package: "
    "pip install clip-interrogator==0.6.0 (or pass the folder holding its data files, "
    "artists.txt, flavors.txt, mediums.txt, movements.txt and negative.txt)"
)


def trending_terms() -> list[str]:
    """The library's trending bank: each site, then "trending on", "featured on" and
    "contest winner" phrasings.

    >>> terms = trending_terms()
    >>> len(terms), terms[0], terms[18], terms[-1]
    (72, 'Artstation', 'trending on Artstation', 'zbrush central contest winner')
    """
    sites = list(TRENDING_SITES)
    return [
        *sites,
        *(f"trending on {site}" for site in sites),
        *(f"featured on {site}" for site in sites),
        *(f"{site} contest winner" for site in sites),
    ]


def artist_terms(names: Sequence[str]) -> list[str]:
    """The library's artist bank: "by X" for every name, then "inspired by X".

    >>> artist_terms(["Ansel Adams", "Monet"])
    ['by Ansel Adams', 'by Monet', 'inspired by Ansel Adams', 'inspired by Monet']
    """
    return [*(f"by {name}" for name in names), *(f"inspired by {name}" for name in names)]


def read_data_file(path: Path) -> list[str]:
    """A data file's lines, stripped, as the library's ``load_list`` reads them (undecodable
    bytes replaced, blank lines kept)."""
    with open(path, encoding="utf-8", errors="replace") as handle:
        return [line.strip() for line in handle.readlines()]


def read_terms_file(path: str | os.PathLike[str]) -> list[str]:
    """A bank of your own: one term per line, strictly UTF-8; blank lines and repeats dropped.

    Raises OptionsError naming the file when it cannot be read.
    """
    from tagger.safeio import read_text_file

    file = Path(path)
    try:
        text = read_text_file(file)
    except (OSError, TaggerError) as exc:
        raise OptionsError(f"bank file {str(file)!r} cannot be read: {exc}") from exc
    if text is None:
        raise OptionsError(f"bank file {str(file)!r} does not exist")
    terms = [line.strip() for line in text.text.splitlines()]
    return list(dict.fromkeys(term for term in terms if term))


def package_data_dir() -> Path | None:
    """The data folder of the installed clip-interrogator package (found without importing
    it), or None."""
    try:
        spec = importlib.util.find_spec(PACKAGE)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(next(iter(spec.submodule_search_locations))) / "data"
    return folder if folder.is_dir() else None


#: Environment variable naming the data folder when none is given.
DATA_ENV = "TAGGER_INTERROGATOR_DATA"


def data_dir(folder: str | os.PathLike[str] | None = None) -> Path:
    """The folder the bank files are read from: ``folder``, else ``$TAGGER_INTERROGATOR_DATA``,
    else the installed package's."""
    folder = folder or os.environ.get(DATA_ENV) or None
    if folder is not None:
        path = Path(folder).expanduser()
        if not path.is_dir():
            raise OptionsError(f"clip-interrogator data folder {str(path)!r} does not exist")
        return path
    found = package_data_dir()
    if found is None:
        raise MissingDependencyError(INSTALL_HINT)
    return found


def load_bank(name: str, folder: Path) -> list[str]:
    """The terms of one of the library's banks (``artists`` ... ``trendings``, ``negative``)."""
    if name == "trendings":
        return trending_terms()
    file = folder / BANK_FILES[name]
    if not file.is_file():
        raise MissingDependencyError(f"{file} is missing: {INSTALL_HINT}")
    terms = read_data_file(file)
    return artist_terms(terms) if name == "artists" else terms


def terms_hash(terms: Sequence[str]) -> str:
    """The library's hash of a bank: SHA-256 of the terms joined by ``,``.

    >>> terms_hash(["a", "b"])[:16]
    'd8bf5d4f1a7e7296'
    """
    return hashlib.sha256(",".join(terms).encode()).hexdigest()


def hash_codes(digest: str) -> np.ndarray:
    """A hash as the library stores it: int8 character codes."""
    import numpy as np

    return np.array([ord(c) for c in digest], dtype=np.int8)


def read_embeddings(path: Path, digest: str) -> np.ndarray | None:
    """The ``embeds`` of a cache file when its hash is ``digest``, else None (unreadable
    files are logged and skipped)."""
    import numpy as np
    from safetensors.numpy import load_file

    try:
        tensors = load_file(str(path))
    except Exception as exc:
        log.warning("ignoring unreadable CLIP Interrogator cache %s: %s", path, exc)
        return None
    embeds, stored = tensors.get("embeds"), tensors.get("hash")
    if embeds is None or stored is None or not np.array_equal(stored, hash_codes(digest)):
        return None
    return embeds if embeds.ndim == 2 else None


def write_embeddings(path: Path, embeds: np.ndarray, digest: str) -> None:
    """Save embeddings in the library's layout, atomically."""
    import numpy as np
    from safetensors.numpy import save

    from tagger.safeio import atomic_write_bytes

    data = save({"embeds": np.ascontiguousarray(embeds), "hash": hash_codes(digest)})
    atomic_write_bytes(path, data)


def published_file(
    model_name: str, bank: str, hf_cache: str | os.PathLike[str] | None
) -> Path | None:
    """The library's precomputed embeddings for a named model, through huggingface_hub (its
    cache only when offline); None when there is none or it cannot be had."""
    from tagger.hub import hf_cache_dir, is_offline

    try:
        from huggingface_hub import hf_hub_download

        cache = hf_cache_dir(hf_cache)
        path = hf_hub_download(
            PUBLISHED_REPO,
            f"{model_name}_{bank}.safetensors",
            cache_dir=str(cache) if cache is not None else None,
            local_files_only=is_offline(),
        )
    except Exception as exc:  # offline, not published for this model, no network...
        log.debug("no published embeddings for %s %s: %s", model_name, bank, exc)
        return None
    return Path(path)


class EmbeddingStore:
    """Where the embeddings of one CLIP model's banks come from (see the module docstring).

    ``model_name`` is the library's sanitized name (``ViT-L-14_openai``) or, for a CLIP folder,
    the folder's name plus a digest of its files; ``published`` says whether the Hub may hold
    precomputed files for it (named open_clip models only).
    """

    def __init__(
        self,
        cache_dir: Path,
        model_name: str,
        *,
        published: bool,
        download: bool = True,
        hf_cache: str | os.PathLike[str] | None = None,
    ) -> None:
        self.cache_dir = cache_dir
        self.model_name = model_name
        self.published = published
        self.download = download
        self.hf_cache = hf_cache

    def own_file(self, bank: str, digest: str) -> Path:
        """tagger's cache file for a bank."""
        return self.cache_dir / f"{self.model_name}_{bank}-{digest[:16]}.safetensors"

    def lookup(self, bank: str, terms: Sequence[str]) -> np.ndarray | None:
        """Stored embeddings for these terms, from the first place that has them."""
        digest = terms_hash(terms)
        places: list[Callable[[], Path | None]] = [
            lambda: self.own_file(bank, digest),
            lambda: self.cache_dir / f"{self.model_name}_{bank}.safetensors",
        ]
        if self.published and self.download:
            places.append(lambda: published_file(self.model_name, bank, self.hf_cache))
        for place in places:
            path = place()
            if path is None or not path.is_file():
                continue
            embeds = read_embeddings(path, digest)
            if embeds is not None and embeds.shape[0] == len(terms):
                log.debug("CLIP Interrogator %s embeddings from %s", bank, path)
                return embeds
        return None

    def get(
        self,
        bank: str,
        terms: Sequence[str],
        compute: Callable[[Sequence[str]], np.ndarray],
    ) -> np.ndarray:
        """float16 embeddings of a bank: stored ones, else ``compute(terms)`` saved once."""
        import numpy as np

        found = self.lookup(bank, terms)
        if found is not None:
            return found
        log.info(
            "embedding %d %s terms with CLIP (once; cached in %s)", len(terms), bank, self.cache_dir
        )
        embeds = np.asarray(compute(terms), dtype=np.float16)
        try:
            write_embeddings(self.own_file(bank, terms_hash(terms)), embeds, terms_hash(terms))
        except (OSError, TaggerError) as exc:
            log.warning("cannot cache the %s embeddings in %s: %s", bank, self.cache_dir, exc)
        return embeds
