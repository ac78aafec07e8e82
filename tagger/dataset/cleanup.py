"""Tag clean-up functions the bulk edits can apply, by name.

A clean-up function takes one caption's tags and returns the tags to keep, in order (a pure
function: same tags in, same tags out). The workbench applies them by name (``tagger dataset
edit --cleanup NAME``, the tab's clean-up picker, the API's ``cleanup`` list). The project's tag
post-processing registers its functions here with ``register_cleanup``; those built in are:

- ``underscores``: ``long_hair`` → ``long hair`` (kaomoji such as ``^_^`` kept);
- ``escape-brackets``: ``kasumi (pokemon)`` → ``kasumi \\(pokemon\\)`` for webui prompts;
- ``unescape-brackets``: the reverse;
- ``dedupe``: repeated tags dropped (any case, ``_`` or space), the first kept;
- ``empty``: blank tags dropped;
- ``less-specific``: ``shirt`` dropped beside ``white shirt`` (``tagger.cleanup``'s whole-word
  rule: ``hair`` survives ``chair``);
- ``character-tags``: the tags of a character's own look (hair, eyes, ...) dropped, for
  character LoRAs (deepghs/imgutils' rules, ``tagger.cleanup.drop_character_tags``);
- ``overlap``: tags the published Danbooru overlap table lists as covered by another tag of the
  caption dropped (the table from the Hugging Face cache, or downloaded once when allowed).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from tagger.errors import OptionsError
from tagger.tags import dedupe, escape_brackets, replace_underscores

Cleanup = Callable[[Sequence[str]], list[str]]

_REGISTRY: dict[str, tuple[Cleanup, str]] = {}


def register_cleanup(name: str, function: Cleanup, description: str = "") -> None:
    """Make ``function`` available to the bulk edits as ``name`` (a later one replaces it)."""
    _REGISTRY[name] = (function, description or (function.__doc__ or "").strip().split("\n")[0])


def cleanup_names() -> list[str]:
    """The registered names, sorted."""
    return sorted(_REGISTRY)


def describe_cleanups() -> dict[str, str]:
    """Each name with its one-line description."""
    return {name: _REGISTRY[name][1] for name in cleanup_names()}


def get_cleanup(name: str) -> Cleanup:
    """The function registered as ``name`` (``OptionsError`` naming the known ones)."""
    try:
        return _REGISTRY[name][0]
    except KeyError:
        raise OptionsError(
            f"unknown clean-up {name!r}; known: {', '.join(cleanup_names())}"
        ) from None


def underscores(tags: Sequence[str]) -> list[str]:
    """Write underscores as spaces (kaomoji kept).

    >>> underscores(["long_hair", "^_^"])
    ['long hair', '^_^']
    """
    return [replace_underscores(tag) for tag in tags]


def escape(tags: Sequence[str]) -> list[str]:
    r"""Escape brackets for webui prompts.

    >>> escape(["kasumi (pokemon)"])
    ['kasumi \\(pokemon\\)']
    """
    return [escape_brackets(tag) for tag in tags]


def unescape(tags: Sequence[str]) -> list[str]:
    r"""Remove the escapes of brackets.

    >>> unescape(["kasumi \\(pokemon\\)"])
    ['kasumi (pokemon)']
    """
    return [tag.replace("\\(", "(").replace("\\)", ")") for tag in tags]


def drop_empty(tags: Sequence[str]) -> list[str]:
    """Drop blank tags.

    >>> drop_empty(["a", " ", ""])
    ['a']
    """
    return [tag for tag in tags if tag.strip()]


register_cleanup("underscores", underscores)
register_cleanup("escape-brackets", escape)
register_cleanup("unescape-brackets", unescape)
register_cleanup("dedupe", dedupe, "Drop repeated tags (any case, _ or space), keeping the first.")
register_cleanup("empty", drop_empty)


# -- the project's tag clean-up (tagger.cleanup) ---------------------------------------------


def less_specific(tags: Sequence[str]) -> list[str]:
    """Drop a tag a more specific tag of the caption covers (``shirt`` beside ``white shirt``).

    >>> less_specific(["shirt", "white shirt", "chair", "hair"])
    ['white shirt', 'chair', 'hair']
    """
    from tagger.cleanup import drop_less_specific

    return drop_less_specific(tags)


def character_tags(tags: Sequence[str]) -> list[str]:
    """Drop the tags of a character's own look (hair, eyes, skin...), for character LoRAs.

    >>> character_tags(["1girl", "red hair", "cat ears", "chair", "closed eyes"])
    ['1girl', 'chair', 'closed eyes']
    """
    from tagger.cleanup import drop_character_tags

    return drop_character_tags(tags)


def overlap(tags: Sequence[str]) -> list[str]:
    """Drop tags the Danbooru overlap table lists as covered by another tag of the caption.

    Raises ``OptionsError`` when the table is neither in the Hugging Face cache nor downloadable,
    instead of leaving every caption as it was without a word.
    """
    from tagger.cleanup import OVERLAP_FILE, OVERLAP_REPO, drop_overlapping, load_overlap_table

    table = load_overlap_table()
    if table is None:
        raise OptionsError(
            f"clean-up 'overlap' needs the overlap table {OVERLAP_REPO}/{OVERLAP_FILE}, which is "
            "not in the Hugging Face cache and cannot be downloaded here; run once where the Hub "
            "is reachable (without HF_HUB_OFFLINE), or use 'less-specific'"
        )
    return drop_overlapping(tags, table)


register_cleanup("less-specific", less_specific)
register_cleanup("character-tags", character_tags)
register_cleanup("overlap", overlap)
