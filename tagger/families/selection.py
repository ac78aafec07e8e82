"""From one image's scores to kept tags, for vocabularies with every category.

The rules are those of ``tagger.tags.select_tags`` (strictly above the threshold, MCut,
keep / exclude, max tags), extended per category:

- a category's threshold is, in order of precedence: the chosen threshold profile of the
  model's card (``threshold_profile``), the threshold the model ships for the category
  (``model_thresholds``), then the options: ``general_threshold``, ``character_threshold``, or
  ``category_thresholds[category]`` (a category not listed uses the general threshold);
  a threshold above 1 turns the category off (kohya's convention);
- MCut per category: ``mcut_general``, ``mcut_character`` (never below
  ``character_mcut_floor``) and ``mcut_categories``;
- a per-tag threshold the model ships replaces its category's threshold for that tag (not
  under a profile or MCut);
- ratings and qualities keep every score (the caption writes the most likely one).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from tagger.errors import OptionsError
from tagger.tags import (
    TagResult,
    _by_confidence,
    _cleaned,
    _compile_patterns,
    _matches,
    _normalized,
    _position,
    mcut_threshold,
)

if TYPE_CHECKING:
    from tagger.families.vocab import Vocabulary
    from tagger.options import TagOptions

#: Categories that keep every score (one is picked when writing the caption).
PICKED = ("rating", "quality")


def profile_thresholds(vocabulary: Vocabulary, name: str) -> Mapping[str, float]:
    """The thresholds of a named profile of the model (raises ``OptionsError`` listing them).

    >>> from tagger.families.vocab import vocabulary_from_rows
    >>> v = vocabulary_from_rows([("a", "general")], profiles={"balanced": {"*": 0.55}})
    >>> dict(profile_thresholds(v, "balanced"))
    {'*': 0.55}
    """
    if name in vocabulary.profiles:
        return vocabulary.profiles[name]
    valid = ", ".join(vocabulary.profiles) or "none: this model has no threshold profiles"
    raise OptionsError(f"threshold profile {name!r} is not one of this model's: {valid}")


def base_threshold(category: str, options: TagOptions) -> float:
    """The options' threshold for a category (before profiles and shipped thresholds).

    >>> from tagger.options import TagOptions
    >>> o = TagOptions(category_thresholds={"artist": 2.0})
    >>> base_threshold("general", o), base_threshold("artist", o), base_threshold("meta", o)
    (0.35, 2.0, 0.35)
    """
    if category == "general":
        return options.general_threshold
    if category == "character":
        return options.character_threshold
    return options.category_thresholds.get(category, options.general_threshold)


def category_thresholds(
    vocabulary: Vocabulary, options: TagOptions
) -> tuple[dict[str, float], bool]:
    """Every category's threshold, and whether shipped per-tag thresholds apply.

    >>> from tagger.families.vocab import vocabulary_from_rows
    >>> from tagger.options import TagOptions
    >>> v = vocabulary_from_rows([("a", "general"), ("b", "character"), ("c", "artist")],
    ...                          category_thresholds={"general": 0.3})
    >>> category_thresholds(v, TagOptions())
    ({'general': 0.3, 'character': 0.85, 'artist': 0.35}, True)
    >>> category_thresholds(v, TagOptions(model_thresholds=False))[0]["general"]
    0.35
    """
    profile = (
        profile_thresholds(vocabulary, options.threshold_profile)
        if options.threshold_profile
        else None
    )
    thresholds: dict[str, float] = {}
    for category in vocabulary.groups():
        if category in PICKED:
            continue
        value = base_threshold(category, options)
        if profile is not None:
            value = profile.get(category, profile.get("*", value))
        elif options.model_thresholds and category in vocabulary.category_thresholds:
            value = vocabulary.category_thresholds[category]
        thresholds[category] = value
    return thresholds, profile is None and options.model_thresholds


def _mcut(category: str, options: TagOptions) -> bool:
    """Whether MCut chooses this category's threshold."""
    if category == "general":
        return options.mcut_general
    if category == "character":
        return options.mcut_character
    return category in options.mcut_categories


def select_vocabulary(
    probs: Sequence[float], vocabulary: Vocabulary, options: TagOptions
) -> TagResult:
    """The kept tags of one image, by category (``TagResult.other`` holds the further ones).

    >>> from tagger.families.vocab import vocabulary_from_rows
    >>> from tagger.options import TagOptions
    >>> v = vocabulary_from_rows([("safe", "rating"), ("1girl", "general"), ("miku", "character"),
    ...                           ("vocaloid", "copyright"), ("best_quality", "quality")])
    >>> r = select_vocabulary([0.9, 0.8, 0.9, 0.5, 0.7], v,
    ...                       TagOptions(category_thresholds={"copyright": 0.4}))
    >>> r.rating, r.general, r.character, r.other
    ({'safe': 0.9}, {'1girl': 0.8}, {'miku': 0.9}, {'copyright': {'vocaloid': 0.5}, \
'quality': {'best_quality': 0.7}})
    """
    if len(probs) != len(vocabulary.names):
        from tagger.errors import LabelsError

        raise LabelsError(
            f"model has {len(probs)} outputs but its vocabulary has {len(vocabulary.names)} "
            "tags; use the tag file that belongs to this model"
        )
    names = vocabulary.names
    keep = _compile_patterns(options.keep_tags)
    exclude = _compile_patterns(options.exclude_tags)
    thresholds, per_tag = category_thresholds(vocabulary, options)
    shipped = vocabulary.tag_thresholds if per_tag else {}
    kept: dict[str, dict[str, float]] = {}
    picked: dict[str, dict[str, float]] = {}
    for category, indices in vocabulary.groups().items():
        scores: dict[str, float] = {}
        for position in indices:
            scores.setdefault(names[position], float(probs[position]))
        if category in PICKED:
            picked[category] = scores
            continue
        threshold = thresholds[category]
        mcut = _mcut(category, options)
        if mcut:
            floor = options.character_mcut_floor if category == "character" else 0.0
            threshold = max(floor, mcut_threshold(list(scores.values())))
        chosen: dict[str, float] = {}
        if threshold <= 1.0:
            for position in indices:
                name = names[position]
                limit = threshold if mcut else shipped.get(position, threshold)
                if name not in chosen and scores[name] > limit and limit <= 1.0:
                    chosen[name] = scores[name]
        if keep:
            for name, score in scores.items():
                if name not in chosen and _matches(_normalized(name), keep):
                    chosen[name] = score
        if exclude:
            chosen = {n: s for n, s in chosen.items() if not _matches(_normalized(n), exclude)}
        kept[category] = chosen
    index = vocabulary.index
    if options.max_tags > 0:
        ranked = sorted(
            (
                (category, name, score)
                for category, group in kept.items()
                for name, score in group.items()
            ),
            key=lambda item: (-item[2], _position(index, item[1])),
        )
        best = {(category, name) for category, name, _ in ranked[: options.max_tags]}
        kept = {
            category: {n: s for n, s in group.items() if (category, n) in best}
            for category, group in kept.items()
        }
    other = {
        category: _by_confidence(group, index)
        for category, group in kept.items()
        if category not in ("general", "character") and group
    }
    if picked.get("quality"):
        other["quality"] = picked["quality"]
    rating = picked.get("rating", {})
    listed = [*rating, *(n for group in kept.values() for n in group), *other.get("quality", {})]
    result = TagResult(
        rating=dict(rating),
        character=_by_confidence(kept.get("character", {}), index),
        general=_by_confidence(kept.get("general", {}), index),
        index={name: index[name] for name in listed if name in index},
        other=other,
    )
    return _cleaned(result, options)
