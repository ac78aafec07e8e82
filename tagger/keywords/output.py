"""How keyphrases are written: as tags, after the tagger's (pure functions)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from tagger.options import TagOptions, dump, parse
from tagger.tags import TagResult, caption_tags, dedupe, normalize_tag, tag_matches


def keyword_result(keywords: Mapping[str, float]) -> TagResult:
    """Keyphrases as a TagResult of general tags whose model order is the extractor's order.

    >>> keyword_result({"dog": 0.6, "grass": 0.7}).index
    {'dog': 0, 'grass': 1}
    """
    return TagResult({}, {}, dict(keywords), {name: i for i, name in enumerate(keywords)})


def with_keywords(
    tags: Sequence[str],
    keywords: Mapping[str, float],
    options: TagOptions,
    *,
    alone: bool,
    names: Sequence[str] = (),
) -> list[str]:
    """The tag texts of a caption file with keyphrases, in the extractor's order.

    ``alone`` (no tagger in the run): the keyphrases are the caption's tags, with the
    additional and always-first tags as ``caption_tags`` writes them. Otherwise they follow the
    tagger's ``tags`` (written texts; ``names`` their raw names), leaving out a keyphrase that
    names a tag already there. Replacements, brackets and weights apply as to model tags.

    >>> with_keywords(["1girl"], {"red hat": 0.5, "1girl": 0.4}, TagOptions(), alone=False)
    ['1girl', 'red hat']
    >>> with_keywords([], {"red hat": 0.5}, TagOptions(additional_tags=["me"]), alone=True)
    ['me', 'red hat']
    """
    data = {**dump(options), "order": "model", "character_tags_first": False}
    if not alone:
        data.update(additional_tags=[], always_first_tags=[], rating_tag="none")
        seen = {normalize_tag(name) for name in [*tags, *names]}
        keywords = {k: v for k, v in keywords.items() if normalize_tag(k) not in seen}
    texts = caption_tags(keyword_result(keywords), parse(TagOptions, data))
    return texts if alone else dedupe([*tags, *texts])


def drop_excluded(
    keywords: Sequence[tuple[str, float]], exclude: Sequence[str]
) -> dict[str, float]:
    """Keyphrases minus those matching the exclude list (as tags match it), order kept.

    >>> drop_excluded([("a dog", 0.7), ("picture", 0.5)], ["pict*"])
    {'a dog': 0.7}
    """
    return {name: score for name, score in keywords if not tag_matches(name, exclude)}
