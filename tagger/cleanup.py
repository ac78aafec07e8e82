"""Tag clean-up: fewer redundant tags, character LoRA clean-up, blacklists, run frequencies.

Small pure functions on tag names (raw ``long_hair`` or written ``long hair``, any case). Tags
are compared by whole words, never by substring: a tag is split into words on spaces and
underscores, and the last word also matches in its singular and plural form. So ``hair``
survives ``chair`` and ``tail`` survives ``ponytail``, while ``cat ear`` and ``cat ears`` are
the same tag.

- ``drop_less_specific``: drop a tag whose words appear, in order and contiguous, inside a
  more specific kept tag (``shirt`` beside ``white shirt``, ``long_hair`` beside
  ``very_long_hair``);
- ``drop_overlapping``: drop a tag the published Danbooru overlap table lists as covered by a
  kept tag (``load_overlap_table``: downloaded once through huggingface_hub, cached, used from
  the cache when offline, skipped with a warning when neither is possible);
- ``drop_character_tags`` / ``is_character_tag``: deepghs/imgutils' published rules for tags
  that describe a character's own look (eyes, hair, skin, horns, ...), with its whitelist
  (``holding ...``, ``closed eyes``, ...);
- ``drop_blacklisted``: a user's blacklist with the same whole-word matching;
- ``tag_frequencies``: a run's tags sorted by how often they were written.
"""

from __future__ import annotations

import functools
import json
import logging
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tagger.options import TagOptions
    from tagger.tags import TagResult

log = logging.getLogger("tagger")

#: Where the Danbooru overlap table is published (a Hugging Face dataset).
OVERLAP_REPO = "alea31415/tag_filtering"
OVERLAP_FILE = "overlap_tags_simplified.json"

_SPLIT = re.compile(r"[\s_]+")
_VOWELS = frozenset("aeiou")

Words = tuple[str, ...]


# ------------------------------------------------------------------------------------- words


def split_words(tag: str) -> Words:
    """A tag's words: lower case, split on spaces and underscores.

    >>> split_words("Very_long hair"), split_words("  ")
    (('very', 'long', 'hair'), ())
    """
    return tuple(word.lower() for word in _SPLIT.split(tag.strip()) if word)


@functools.lru_cache(maxsize=1 << 14)
def singular(word: str) -> str:
    """An English word's singular form by the regular rules (unchanged when already singular).

    >>> [singular(w) for w in ("eyes", "bangs", "glasses", "ponies", "hair", "dress", "pubis")]
    ['eye', 'bang', 'glass', 'pony', 'hair', 'dress', 'pubis']
    """
    if len(word) > 3 and word.endswith("ies"):
        return word[:-3] + "y"
    if word.endswith(("sses", "ches", "shes", "xes", "zes")):
        return word[:-2]
    if len(word) > 2 and word.endswith("s") and not word.endswith(("ss", "us", "is")):
        return word[:-1]
    return word


@functools.lru_cache(maxsize=1 << 14)
def plural(word: str) -> str:
    """An English word's plural form by the regular rules.

    >>> [plural(w) for w in ("eye", "glass", "pony", "day", "ear", "eyelash", "eyes")]
    ['eyes', 'glasses', 'ponies', 'days', 'ears', 'eyelashes', 'eyes']
    """
    if word.endswith("s") and singular(word) != word:  # already a plural (eyes, twintails)
        return word
    if word.endswith(("s", "x", "z", "ch", "sh")):
        return word + "es"
    if len(word) > 1 and word.endswith("y") and word[-2] not in _VOWELS:
        return word[:-1] + "ies"
    return word + "s"


def forms(words: Words, *, inflect: bool = True) -> frozenset[Words]:
    """The word tuples a tag matches: as written, and with its last word singular and plural.

    >>> sorted(forms(("cat", "ears")))
    [('cat', 'ear'), ('cat', 'ears')]
    """
    if not words or not inflect:
        return frozenset({words})
    last = words[-1]
    return frozenset({words, (*words[:-1], singular(last)), (*words[:-1], plural(last))})


def same_tag(a: str, b: str) -> bool:
    """True when two tags are the same words (any case, spaces or underscores, singular or plural).

    >>> same_tag("cat_ears", "Cat Ear"), same_tag("hair", "chair")
    (True, False)
    """
    return bool(forms(split_words(a)) & forms(split_words(b)))


def _contains(outer: Words, inner: Words) -> bool:
    """True when ``inner`` (any form of its last word) appears contiguously inside ``outer``."""
    size = len(inner)
    if not size or size >= len(outer):
        return False
    wanted = forms(inner)
    return any(outer[i : i + size] in wanted for i in range(len(outer) - size + 1))


# -------------------------------------------------------------------------------- specificity


def is_less_specific(tag: str, other: str) -> bool:
    """True when ``other`` is a more specific form of ``tag``: ``tag``'s words appear in order,
    contiguous, inside ``other``'s longer word list.

    >>> is_less_specific("shirt", "white_shirt"), is_less_specific("long_hair", "very_long_hair")
    (True, True)
    >>> is_less_specific("hair", "chair"), is_less_specific("tail", "ponytail")
    (False, False)
    >>> is_less_specific("breast", "large_breasts"), is_less_specific("hair", "hair")
    (True, False)
    """
    return _contains(split_words(other), split_words(tag))


def drop_less_specific(tags: Sequence[str]) -> list[str]:
    """Drop every tag a more specific tag of the list covers (``is_less_specific``); the others
    keep their order.

    >>> drop_less_specific(["shirt", "white_shirt", "chair", "hair", "long_hair",
    ...                     "very_long_hair", "tail", "ponytail"])
    ['white_shirt', 'chair', 'very_long_hair', 'tail', 'ponytail']
    """
    words = [split_words(tag) for tag in tags]
    return [
        tag
        for tag, mine in zip(tags, words, strict=True)
        if not any(_contains(theirs, mine) for theirs in words)
    ]


def drop_overlapping(tags: Sequence[str], table: Mapping[str, Sequence[str]]) -> list[str]:
    """Drop every tag the overlap ``table`` (tag -> tags that cover it, underscore names) lists
    as covered by another tag of the list.

    >>> drop_overlapping(["1girl", "breasts", "medium_breasts", "hat"],
    ...                  {"breasts": ["medium_breasts", "large_breasts"], "hat": ["witch_hat"]})
    ['1girl', 'medium_breasts', 'hat']
    """
    present = {"_".join(split_words(tag)) for tag in tags}
    return [
        tag
        for tag in tags
        if not (set(table.get("_".join(split_words(tag)), ())) & (present - {tag}))
    ]


@functools.lru_cache(maxsize=4)
def load_overlap_table(cache_dir: str | None = None) -> dict[str, list[str]] | None:
    """The published Danbooru overlap table, or None when it is neither cached nor downloadable.

    The cache is looked at first (``HF_HUB_OFFLINE`` respected); a download happens only when
    allowed; a missing table logs one warning and clean-up goes on with the word rule alone.
    """
    from tagger.hub import hf_cache_dir, is_offline

    try:
        from huggingface_hub import hf_hub_download
    except ImportError:  # pragma: no cover - a hard dependency
        return None
    cache = hf_cache_dir(cache_dir)
    path = None
    for local_only in (True, False):
        if not local_only and is_offline():
            break
        try:
            path = hf_hub_download(
                OVERLAP_REPO,
                OVERLAP_FILE,
                repo_type="dataset",
                cache_dir=cache,
                local_files_only=local_only,
            )
            break
        except Exception as exc:  # not cached / no network (types differ between versions)
            reason = f"{type(exc).__name__}: {exc}".splitlines()[0]
    if path is None:
        log.warning(
            "the Danbooru overlap table (%s, %s) is not on disk and cannot be downloaded "
            "(%s); dropping less specific tags by the word rule only",
            OVERLAP_REPO,
            OVERLAP_FILE,
            "HF_HUB_OFFLINE is set" if is_offline() else reason,
        )
        return None
    with open(path, encoding="utf-8") as handle:
        data = json.load(handle)
    return {str(k): [str(v) for v in values] for k, values in data.items()}


# -------------------------------------------------------------------------- character tags

#: deepghs/imgutils' rules for character-intrinsic tags (imgutils.tagging.character): a tag is
#: one when its last words are one of ``CHARACTER_SUFFIXES`` (singular or plural) or its first
#: words one of ``CHARACTER_PREFIXES``, unless it is whitelisted.
CHARACTER_SUFFIXES: tuple[str, ...] = (
    "eyes", "skin", "hair", "bun", "bangs", "cut", "sidelocks", "twintails", "braid", "braids",
    "afro", "ahoge", "drill", "drills", "bald", "dreadlocks", "side up", "ponytail", "updo",
    "beard", "mustache", "pointy ears", "ear", "horn", "tail", "wing", "ornament", "hairband",
    "pupil", "bow", "eyewear", "headwear", "ribbon", "crown", "cap", "hat", "hairclip",
    "breast", "mole", "halo", "earrings", "animal ear fluff", "hair flower", "glasses", "fang",
    "female", "girl", "boy", "male", "beret", "heterochromia", "headdress", "headgear",
    "eyepatch", "headphones", "eyebrows", "eyelashes", "sunglasses", "hair intakes",
    "scrunchie", "ear_piercing", "head", "on face", "on head", "on hair", "headband",
    "hair rings", "under_mouth", "freckles", "lip", "eyeliner", "eyeshadow", "tassel",
    "over one eye", "drill", "drill hair",
)  # fmt: skip
CHARACTER_PREFIXES: tuple[str, ...] = ("hair over", "hair between", "facial")
CHARACTER_WHITELIST_SUFFIXES: tuple[str, ...] = (
    "anal_hair", "anal_tail", "arm_behind_head", "arm_hair", "arm_under_breasts",
    "arms_behind_head", "bird_on_head", "blood_in_hair", "breasts_on_glass", "breasts_on_head",
    "cat_on_head", "closed_eyes", "clothed_female_nude_female", "clothed_female_nude_male",
    "clothed_male_nude_female", "clothes_between_breasts", "cream_on_face", "drying_hair",
    "empty_eyes", "face_to_breasts", "facial", "food_on_face", "food_on_head", "game_boy",
    "grabbing_another's_hair", "grabbing_own_breast", "gun_to_head", "half-closed_eyes",
    "head_between_breasts", "heart_in_eye", "multiple_boys", "multiple_girls",
    "object_on_breast", "object_on_head", "paint_splatter_on_face", "parted_lips",
    "penis_on_face", "person_on_head", "pokemon_on_head", "pubic_hair", "rabbit_on_head",
    "rice_on_face", "severed_head", "star_in_eye", "sticker_on_face", "tentacles_on_male",
    "tying_hair",
)  # fmt: skip
CHARACTER_WHITELIST_PREFIXES: tuple[str, ...] = (
    "holding", "hand on", "hands on", "hand to", "hands to", "hand in", "hands in",
    "hand over", "hands over", "futa with", "futa on", "cum on", "covering", "adjusting",
    "rubbing", "sitting", "shading", "playing", "cutting",
)  # fmt: skip
CHARACTER_WHITELIST_WORDS: tuple[str, ...] = ("drill",)


@functools.lru_cache(maxsize=8)
def _pool(entries: tuple[str, ...], inflect: bool) -> dict[int, frozenset[Words]]:
    """Word tuples of a rule list, by length."""
    pool: dict[int, set[Words]] = {}
    for entry in entries:
        for item in forms(split_words(entry), inflect=inflect):
            pool.setdefault(len(item), set()).add(item)
    return {length: frozenset(items) for length, items in pool.items()}


def _ends_with(words: Words, entries: tuple[str, ...]) -> bool:
    """True when the tag's last words are one of ``entries`` (last word singular or plural)."""
    for length, items in _pool(entries, True).items():
        if length <= len(words) and forms(words[len(words) - length :]) & items:
            return True
    return False


def _starts_with(words: Words, entries: tuple[str, ...]) -> bool:
    """True when the tag's first words are exactly one of ``entries``."""
    return any(
        length <= len(words) and words[:length] in items
        for length, items in _pool(entries, False).items()
    )


def is_character_tag(tag: str) -> bool:
    """True for a tag that describes a character's own look (imgutils' rules).

    >>> [is_character_tag(t) for t in ("red hair", "red_hair", "cat ears", "cat ear")]
    [True, True, True, True]
    >>> [is_character_tag(t) for t in ("chair", "hear", "dress", "closed_eyes", "holding_hat")]
    [False, False, False, False, False]
    """
    words = split_words(tag)
    if not words:
        return False
    if forms(words) & _pool(CHARACTER_WHITELIST_WORDS, True).get(len(words), frozenset()):
        return False
    if _ends_with(words, CHARACTER_WHITELIST_SUFFIXES) or _starts_with(
        words, CHARACTER_WHITELIST_PREFIXES
    ):
        return False
    return _ends_with(words, CHARACTER_SUFFIXES) or _starts_with(words, CHARACTER_PREFIXES)


def drop_character_tags(tags: Sequence[str]) -> list[str]:
    """Drop the character-intrinsic tags (``is_character_tag``), for character LoRAs.

    >>> drop_character_tags(["1girl", "solo", "red_hair", "cat ears", "chair", "hear"])
    ['1girl', 'solo', 'chair', 'hear']
    """
    return [tag for tag in tags if not is_character_tag(tag)]


def drop_blacklisted(tags: Sequence[str], blacklist: Iterable[str]) -> list[str]:
    """Drop the tags that are a blacklist entry (whole words, any case, singular or plural).

    >>> drop_blacklisted(["cosplay", "no_eyewear", "red_hair", "chairs"], ["Cosplay", "chair"])
    ['no_eyewear', 'red_hair']
    """
    banned: set[Words] = set()
    for entry in blacklist:
        banned |= forms(split_words(entry))
    banned.discard(())
    return [tag for tag in tags if not (forms(split_words(tag)) & banned)]


# ----------------------------------------------------------------------------- whole results


def _keep(scores: Mapping[str, float], names: Iterable[str]) -> dict[str, float]:
    """The scores of ``names``, in the scores' order."""
    wanted = set(names)
    return {name: score for name, score in scores.items() if name in wanted}


def clean_result(result: TagResult, options: TagOptions, table: Any = "load") -> TagResult:
    """Apply the clean-up options to one image's kept tags.

    ``drop_overlap`` and ``drop_character_tags`` act on general tags (characters, copyrights
    and artists are never less specific versions of each other); the blacklist on every
    category but ratings. ``table`` is the overlap table (``"load"``: ``load_overlap_table``).
    """
    from dataclasses import replace

    general = dict(result.general)
    if options.drop_overlap:
        names = drop_less_specific(list(general))
        overlap = load_overlap_table() if table == "load" else table
        if overlap:
            names = drop_overlapping(names, overlap)
        general = _keep(general, names)
    if options.drop_character_tags:
        general = _keep(general, drop_character_tags(list(general)))
    character = dict(result.character)
    other = {category: dict(scores) for category, scores in result.other.items()}
    if options.blacklist:
        general = _keep(general, drop_blacklisted(list(general), options.blacklist))
        character = _keep(character, drop_blacklisted(list(character), options.blacklist))
        other = {
            category: _keep(scores, drop_blacklisted(list(scores), options.blacklist))
            for category, scores in other.items()
        }
    return replace(result, general=general, character=character, other=other)


def tag_frequencies(counts: Mapping[str, int]) -> list[tuple[str, int]]:
    """A run's tags, most frequent first (ties by name), as kohya's ``--frequency_tags`` lists.

    >>> tag_frequencies({"solo": 2, "1girl": 3, "hat": 2})
    [('1girl', 3), ('hat', 2), ('solo', 2)]
    """
    return sorted(counts.items(), key=lambda item: (-item[1], item[0]))


def frequencies_csv(counts: Mapping[str, int]) -> str:
    """``tag,count`` CSV text of ``tag_frequencies`` (for ``--frequency-tags FILE``).

    >>> print(frequencies_csv({"a,b": 1, "solo": 2}), end="")
    tag,count
    solo,2
    "a,b",1
    """
    import csv
    import io

    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["tag", "count"])
    writer.writerows(tag_frequencies(counts))
    return buffer.getvalue()
