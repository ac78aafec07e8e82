"""CLIP for the dataset checks: image embeddings, near duplicates by embedding, outliers, and
the image-text scores of the caption mismatch check.

The mismatch check asks a *scorer* how well each caption describes its image. The built-in
one, ``clip``, is the cosine similarity of CLIP's L2-normalised image and text embeddings (the
same CLIP the tag filter uses, ``tagger.captioners.clip_filter``). Other image-text scorers (BLIP
image-text matching, for one) plug in with ``register_scorer(name, factory)``: ``factory(options)``
returns an object with ``score(images, texts) -> list[float]`` (PIL images, caption texts, one
score each, higher is a better match); ``CheckOptions.scorer`` picks one by name.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from tagger.dataset.options import CheckOptions
from tagger.errors import OptionsError

if TYPE_CHECKING:
    import numpy as np
    from PIL import Image

    from tagger.dataset.checks import CheckResult, Facts

#: Images per CLIP batch.
CLIP_BATCH = 16


class ImageTextScorer(Protocol):
    """What the mismatch check needs from a scorer."""

    def score(self, images: Sequence[Image.Image], texts: Sequence[str]) -> list[float]: ...


_SCORERS: dict[str, Callable[[CheckOptions], ImageTextScorer]] = {}


def register_scorer(name: str, factory: Callable[[CheckOptions], ImageTextScorer]) -> None:
    """Make an image-text scorer available to the mismatch check as ``name``."""
    _SCORERS[name] = factory


def scorer_names() -> list[str]:
    """``clip`` and the registered scorers."""
    return sorted({"clip", *_SCORERS})


class ClipEmbedder:
    """L2-normalised CLIP image and text embeddings (open_clip, through ``ClipFilter``)."""

    batch_size = CLIP_BATCH

    def __init__(self, options: CheckOptions) -> None:
        from tagger.captioners.clip_filter import ClipFilter
        from tagger.options import ClipFilterOptions

        self.filter = ClipFilter(
            ClipFilterOptions(model=options.clip_model, pretrained=options.clip_pretrained),
            device="cpu",
        )

    def embed(self, images: Sequence[Image.Image]) -> list[np.ndarray]:
        """One embedding per image."""
        import torch

        self.filter.load()
        batch = torch.stack([self.filter.preprocess(image.convert("RGB")) for image in images])
        return list(self.filter.image_embeddings(batch))

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        """``[N, D]`` text embeddings."""
        return self.filter.encode_texts(list(texts))

    def score(self, images: Sequence[Image.Image], texts: Sequence[str]) -> list[float]:
        """Cosine similarity of each image with its text."""
        import numpy as np

        vectors = np.stack(self.embed(images))
        return [float(v) for v in (vectors * self.embed_texts(texts)).sum(axis=1)]


def similar_pairs(vectors: np.ndarray, threshold: float, block: int = 2048) -> np.ndarray:
    """Pairs ``(i, j)`` (i < j) of rows with cosine similarity at least ``threshold`` (rows are
    L2-normalised), computed block by block: ``[k, 2]`` int64.

    >>> import numpy as np
    >>> v = np.array([[1, 0], [0.99, 0.141], [0, 1]], dtype=np.float32)
    >>> similar_pairs(v / np.linalg.norm(v, axis=1, keepdims=True), 0.95).tolist()
    [[0, 1]]
    """
    import numpy as np

    found = []
    for start in range(0, len(vectors), block):
        sims = vectors[start : start + block] @ vectors.T
        rows, cols = np.nonzero(sims >= threshold)
        rows = rows + start
        keep = rows < cols
        if keep.any():
            found.append(np.stack([rows[keep], cols[keep]], axis=1))
    if not found:
        return np.zeros((0, 2), dtype=np.int64)
    return np.concatenate(found).astype(np.int64)


def outlier_scores(vectors: np.ndarray) -> np.ndarray:
    """Each row's cosine distance from the normalised mean of all rows (the centroid).

    >>> import numpy as np
    >>> outlier_scores(np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])).round(3).tolist()
    [0.106, 0.106, 0.553]
    """
    import numpy as np

    centroid = vectors.mean(axis=0)
    norm = float(np.linalg.norm(centroid)) or 1.0
    return 1.0 - vectors @ (centroid / norm)


def get_scorer(name: str, options: CheckOptions, clip: ClipEmbedder) -> ImageTextScorer:
    """The scorer called ``name`` (``clip`` reuses the embedder of the pass)."""
    if name == "clip":
        return clip
    factory = _SCORERS.get(name)
    if factory is None:
        raise OptionsError(
            f"unknown image-text scorer {name!r}; known: {', '.join(scorer_names())}"
        )
    return factory(options)


def clip_findings(
    result: CheckResult,
    facts: list[Facts],
    indices: list[int],
    embeddings: list[np.ndarray],
    active: list[str],
    options: CheckOptions,
    clip: ClipEmbedder,
    *,
    scorer: Any = None,
) -> None:
    """The CLIP checks over the pass's embeddings (``indices[k]`` is the fact of row k)."""
    import numpy as np

    from tagger.dataset.checks import Finding
    from tagger.dataset.neardup import groups

    vectors = np.stack(embeddings).astype(np.float32)
    add = result.findings.append
    if "clip_duplicates" in active:
        pairs = similar_pairs(vectors, options.clip_similarity)
        for number, members in enumerate(groups(len(vectors), pairs), start=1):
            first = facts[indices[members[0]]].entry.relative
            for k, row in enumerate(members):
                similarity = float(vectors[members[0]] @ vectors[row])
                detail = (
                    f"{len(members)} images alike in CLIP"
                    if k == 0
                    else f"CLIP similarity {similarity:.3f} with {first}"
                )
                add(
                    Finding(
                        "clip_duplicates",
                        facts[indices[row]].entry.relative,
                        detail,
                        round(similarity, 5),
                        number,
                    )
                )
    if "outliers" in active and len(vectors) >= 3:
        distances = outlier_scores(vectors)
        result.scores["outliers"] = [round(float(d), 5) for d in distances]
        limit = float(distances.mean() + options.outlier_sigma * distances.std())
        for row, distance in enumerate(distances.tolist()):
            if distance > limit:
                detail = f"CLIP distance {distance:.3f} from the dataset's centroid > {limit:.3f}"
                add(Finding("outliers", facts[indices[row]].entry.relative, detail, distance))
    if "mismatch" in active:
        _mismatch(result, facts, indices, vectors, options, clip, scorer)


def _mismatch(
    result: CheckResult,
    facts: list[Facts],
    indices: list[int],
    vectors: np.ndarray,
    options: CheckOptions,
    clip: ClipEmbedder,
    scorer: Any,
) -> None:
    """Score each caption against its image; flag those below ``mismatch_score``."""
    from tagger.dataset.checks import Finding

    rows = [(row, facts[i]) for row, i in enumerate(indices) if facts[i].caption]
    if not rows:
        return
    chosen = scorer if scorer is not None else get_scorer(options.scorer, options, clip)
    texts = [fact.caption or "" for _, fact in rows]
    if chosen is clip:  # the images' embeddings are there already
        import numpy as np

        scores: list[float] = []
        for start in range(0, len(rows), 256):
            part = rows[start : start + 256]
            text_vectors = clip.embed_texts(texts[start : start + 256])
            image_vectors = np.stack([vectors[row] for row, _ in part])
            scores.extend(float(s) for s in (image_vectors * text_vectors).sum(axis=1))
    else:
        from tagger.image import load_image

        scores = []
        for start in range(0, len(rows), CLIP_BATCH):
            part = rows[start : start + CLIP_BATCH]
            images = [load_image(fact.entry.image) for _, fact in part]
            scores.extend(chosen.score(images, texts[start : start + CLIP_BATCH]))
    result.scores["mismatch"] = [round(s, 5) for s in scores]
    for (_, fact), score in zip(rows, scores, strict=True):
        if score < options.mismatch_score:
            shown = fact.caption if len(fact.caption or "") <= 60 else fact.caption[:57] + "..."  # type: ignore[index]
            detail = f"image-text score {score:.3f} < {options.mismatch_score:g}: {shown}"
            result.findings.append(Finding("mismatch", fact.entry.relative, detail, score))
