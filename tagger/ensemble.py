"""Ensembles: several taggers in one run, their scores merged per tag.

``Ensemble`` has the batch engine's model shape. Each image is decoded once and prepared for
every member in the decode threads (members with the same preprocessing and side share one
input); each batch runs all members at the same time (onnxruntime releases the GIL, so the
members' inference overlaps); ``postprocess`` merges the scores over the union of the members'
vocabularies (``union_vocabulary``) and keeps each member's own kept tags for the JSON sidecar
(``{"models": {key: {"general": {...}, ...}}}``).

Merge modes (``merge_scores``, ``merge_votes``, pure functions):

- ``mean``: the mean of the scores of the members that know the tag; thresholds, MCut and the
  other tag options then apply to the merged scores;
- ``max``: the highest of those scores;
- ``votes``: a tag is kept when at least ``min_votes`` members keep it under their own
  thresholds (default: a majority of the members); its score is the mean score.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from tagger.errors import OptionsError

if TYPE_CHECKING:
    import numpy as np
    from PIL import Image

    from tagger.batch import ImageResult
    from tagger.families.vocab import Vocabulary
    from tagger.options import TagOptions
    from tagger.tags import Labels, TagResult

MODES = ("mean", "max", "votes")


def merge_scores(per_model: Sequence[Mapping[str, float]], mode: str) -> dict[str, float]:
    """Merge per-model scores by tag over the union of the names (first-seen order): the
    ``mean`` or ``max`` of the scores of the models that have the tag.

    >>> merge_scores([{"a": 0.2, "b": 0.8}, {"b": 0.4, "c": 0.6}], "mean")
    {'a': 0.2, 'b': 0.6000000000000001, 'c': 0.6}
    >>> merge_scores([{"a": 0.2, "b": 0.8}, {"b": 0.4, "c": 0.6}], "max")
    {'a': 0.2, 'b': 0.8, 'c': 0.6}
    """
    if mode not in ("mean", "max"):
        raise OptionsError(f"merge mode {mode!r} is not mean or max")
    merged: dict[str, list[float]] = {}
    for scores in per_model:
        for name, score in scores.items():
            merged.setdefault(name, []).append(float(score))
    if mode == "max":
        return {name: max(values) for name, values in merged.items()}
    return {name: sum(values) / len(values) for name, values in merged.items()}


def merge_votes(kept: Sequence[Sequence[str]], min_votes: int) -> dict[str, int]:
    """Tags kept by at least ``min_votes`` models, with their vote counts (first-seen order).

    >>> merge_votes([["a", "b"], ["b", "c"], ["b", "a"]], 2)
    {'a': 2, 'b': 3}
    """
    votes: dict[str, int] = {}
    for names in kept:
        for name in dict.fromkeys(names):
            votes[name] = votes.get(name, 0) + 1
    return {name: count for name, count in votes.items() if count >= min_votes}


def majority(count: int) -> int:
    """The smallest majority of ``count`` voters.

    >>> majority(2), majority(3), majority(4)
    (2, 2, 3)
    """
    return count // 2 + 1


def _category_rows(labels: Labels) -> list[tuple[str, str | None]]:
    """``(name, category)`` of every tag of a member, in its model order."""
    groups = labels.groups() if hasattr(labels, "groups") else {
        "rating": labels.rating, "general": labels.general, "character": labels.character,
    }  # fmt: skip
    category: dict[int, str] = {}
    for name, indices in groups.items():
        for position in indices:
            category.setdefault(position, name)
    return [(name, category.get(i)) for i, name in enumerate(labels.names)]


def union_vocabulary(members: Sequence[Labels]) -> tuple[Vocabulary, list[np.ndarray]]:
    """The union of the members' vocabularies (first member's order, then each new name), each
    tag in the category of the first member that has it; and, per member, the union position
    of each of its outputs (a name a model lists twice keeps its first score)."""
    import numpy as np

    from tagger.families.vocab import vocabulary_from_rows

    rows: list[tuple[str, str | None]] = []
    where: dict[str, int] = {}
    positions: list[np.ndarray] = []
    for labels in members:
        mine = []
        for name, category in _category_rows(labels):
            if name not in where:
                where[name] = len(rows)
                rows.append((name, category))
            mine.append(where[name])
        positions.append(np.asarray(mine, dtype=np.int64))
    return vocabulary_from_rows(rows), positions


class Ensemble:
    """Several taggers as one batch model (see the module's docstring)."""

    outputs = ("tags",)

    def __init__(self, members: Sequence[Any], mode: str = "mean", min_votes: int = 0) -> None:
        if len(members) < 2:
            raise OptionsError("an ensemble needs at least two models")
        if mode not in MODES:
            raise OptionsError(f"ensemble mode {mode!r} is not one of {', '.join(MODES)}")
        keys = [member.spec.key for member in members]
        if len(set(keys)) != len(keys):
            raise OptionsError(f"an ensemble names each model once, got {', '.join(keys)}")
        if min_votes < 0 or min_votes > len(members):
            raise OptionsError(f"--min-votes {min_votes} is outside 0..{len(members)}")
        self.members = list(members)
        self.mode = mode
        self.min_votes = min_votes or majority(len(members))
        self.keys = keys
        self._union: Vocabulary | None = None
        self._positions: list[np.ndarray] = []
        self._shared: list[int] = []  # member -> the member whose input it reuses
        self._pool: ThreadPoolExecutor | None = None

    # -- the engine's model shape ----------------------------------------------------------------
    @property
    def fixed_batch(self) -> int | None:
        """None: members with a fixed batch size run their batches themselves."""
        return None

    @property
    def active_providers(self) -> list[str]:
        """Where the members run."""
        out: list[str] = []
        for member in self.members:
            out += [p for p in member.active_providers if p not in out]
        return out

    @property
    def labels(self) -> Vocabulary:
        """The union vocabulary (after loading)."""
        if self._union is None:
            self.load()
        assert self._union is not None
        return self._union

    def load(self) -> Ensemble:
        """Load every member (at the same time) and build the union vocabulary."""
        if self._union is not None:
            return self
        with ThreadPoolExecutor(len(self.members), thread_name_prefix="tagger-load") as pool:
            list(pool.map(lambda member: member.load(), self.members))
        self._union, self._positions = union_vocabulary([m.labels for m in self.members])
        seen: dict[Any, int] = {}
        self._shared = []
        for number, member in enumerate(self.members):
            key = (repr(getattr(member, "preprocessing", "wd14")), member.input_size)
            self._shared.append(seen.setdefault(key, number))
        self._pool = ThreadPoolExecutor(len(self.members), thread_name_prefix="tagger-member")
        return self

    def close(self) -> None:
        """Stop the member threads (the members stay loaded)."""
        if self._pool is not None:
            self._pool.shutdown(wait=False)
            self._pool = None
        self._union = None

    def unload(self) -> None:
        """Unload every member."""
        for member in self.members:
            member.unload()
        if self._pool is not None:
            self._pool.shutdown(wait=False)
            self._pool = None
        self._union = None

    def preprocess(self, image: Image.Image) -> list[np.ndarray | None]:
        """Each member's input (None where it shares an earlier member's)."""
        self.load()
        return [
            member.preprocess(image) if self._shared[number] == number else None
            for number, member in enumerate(self.members)
        ]

    def collate(self, items: Sequence[list[Any]]) -> list[np.ndarray | None]:
        """Stack each member's inputs."""
        import numpy as np

        return [
            np.stack([item[number] for item in items]) if self._shared[number] == number else None
            for number in range(len(self.members))
        ]

    def forward(self, batch: list[np.ndarray | None]) -> list[list[np.ndarray]]:
        """Run every member on the batch at the same time; one list of score rows per image."""
        self.load()
        assert self._pool is not None
        inputs = [batch[self._shared[number]] for number in range(len(self.members))]
        futures = [
            self._pool.submit(member.forward, array)
            for member, array in zip(self.members, inputs, strict=True)
        ]
        results = [future.result() for future in futures]
        count = len(results[0])
        return [[scores[row] for scores in results] for row in range(count)]

    def merged_probs(self, rows: Sequence[np.ndarray]) -> np.ndarray:
        """The members' scores merged over the union vocabulary (``mean`` or ``max``)."""
        import numpy as np

        size = len(self.labels.names)
        if self.mode == "max":
            merged = np.full(size, -np.inf, dtype=np.float64)
            for scores, positions in zip(rows, self._positions, strict=True):
                np.maximum.at(merged, positions, np.asarray(scores, dtype=np.float64))
            return merged
        total = np.zeros(size, dtype=np.float64)
        count = np.zeros(size, dtype=np.float64)
        for scores, positions in zip(rows, self._positions, strict=True):
            first = np.unique(positions, return_index=True)[1]
            np.add.at(total, positions[first], np.asarray(scores, dtype=np.float64)[first])
            np.add.at(count, positions[first], 1.0)
        return total / count

    def postprocess(self, rows: Sequence[np.ndarray], options: TagOptions) -> ImageResult:
        """Merged kept tags, with each member's own kept tags for the JSON sidecar."""
        from tagger.batch import ImageResult
        from tagger.writers import rounded

        own = [
            member.postprocess(scores, options)
            for member, scores in zip(self.members, rows, strict=True)
        ]
        probs = self.merged_probs(rows)
        if self.mode == "votes":
            tags = self._voted(own, probs, options)
        else:
            tags = self.labels.select(probs.tolist(), options)
        models = {key: _record(result, rounded) for key, result in zip(self.keys, own, strict=True)}
        return ImageResult(tags=tags, extra={"models": models})

    def _voted(self, own: Sequence[TagResult], probs: np.ndarray, options: TagOptions) -> Any:
        """The tags at least ``min_votes`` members kept, scored by their mean."""
        from tagger.families.selection import PICKED
        from tagger.tags import TagResult, _by_confidence, _cleaned

        union = self.labels
        kept = [
            [
                *r.general,
                *r.character,
                *(n for c, g in r.other.items() if c not in PICKED for n in g),
            ]
            for r in own
        ]
        chosen = merge_votes(kept, self.min_votes)
        index = union.index
        groups: dict[str, dict[str, float]] = {}
        picked: dict[str, dict[str, float]] = {}
        for category, indices in union.groups().items():
            scores = {union.names[i]: float(probs[i]) for i in indices}
            if category in PICKED:
                picked[category] = scores
            else:
                groups[category] = _by_confidence(
                    {n: s for n, s in scores.items() if n in chosen}, index
                )
        other = {c: g for c, g in groups.items() if c not in ("general", "character") and g}
        if picked.get("quality"):
            other["quality"] = picked["quality"]
        names = [*picked.get("rating", {}), *(n for g in groups.values() for n in g)]
        result = TagResult(
            rating=picked.get("rating", {}),
            character=groups.get("character", {}),
            general=groups.get("general", {}),
            index={name: index[name] for name in names if name in index},
            other=other,
        )
        return _cleaned(result, options)


def _record(result: TagResult, rounded: Any) -> dict[str, Any]:
    """One member's kept tags by category, for the sidecar."""
    record = {
        "rating": rounded(result.rating),
        "character": rounded(result.character),
        "general": rounded(result.general),
    }
    record.update({category: rounded(scores) for category, scores in result.other.items()})
    return record
