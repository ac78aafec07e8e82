"""Tag clean-up functions the bulk edits can apply, by name.

A clean-up function takes one caption's tags and returns the tags to keep, in order (a pure
function: same tags in, same tags out). The workbench applies them by name (``tagger dataset
edit --cleanup NAME``, the tab's clean-up picker, the API's ``cleanup`` list). The project's tag
post-processing registers its functions here with ``register_cleanup``; those built in are:

- ``underscores``: ``long_hair`` → ``long hair`` (kaomoji such as ``^_^`` kept);
- ``escape-brackets``: ``kasumi (pokemon)`` → ``kasumi \\(pokemon\\)`` for webui prompts;
- ``unescape-brackets``: the reverse;
- ``dedupe``: repeated tags dropped (any case, ``_`` or space), the first kept;
- ``empty``: blank tags dropped.
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
