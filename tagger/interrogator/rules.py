"""The CLIP Interrogator's rules that need no model: prompt layout, the token limit, and how a
long bank is ranked in chunks. Each follows pharmapsychotic's ``clip-interrogator`` 0.6.0.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

#: The separator between prompt parts (the library's).
JOIN = ", "


def truncate_to_fit(text: str, at_max_len: Callable[[str], bool]) -> str:
    """Drop trailing ``, ``-separated parts until the prompt fits CLIP's context.

    As in the library, the test for each part is made on the text so far joined to the part
    *without* the separator, and the first part (the caption) is always kept.

    >>> fits = lambda text: len(text) >= 12  # a stand-in "at the limit" test
    >>> truncate_to_fit("a cat, red, blue, green", fits)
    'a cat, red'
    """
    parts = text.split(JOIN)
    out = parts[0]
    for part in parts[1:]:
        if at_max_len(out + part):
            break
        out += JOIN + part
    return out


def classic_prompt(
    caption: str | None,
    medium: str | None,
    artist: str | None,
    trending: str | None,
    movement: str | None,
    flavors: Sequence[str] | None,
    extras: Sequence[str] = (),
) -> str:
    """The classic layout: caption, "medium artist", trending site, movement, your banks' best
    terms, flavors. A part that is None (its bank left out, no caption part) is left out; an
    empty caption is a part, as in the library (the prompt then starts with ``, ``).

    With every bank, the library's layout exactly; when the caption already starts with the
    medium, the medium is dropped and the artist follows the caption after a space:

    >>> classic_prompt("a cat", "an oil painting", "by X", "trending on Y", "cubism", ["fluffy"])
    'a cat, an oil painting by X, trending on Y, cubism, fluffy'
    >>> classic_prompt("an oil painting of a cat", "an oil painting", "by X", "Y", "cubism", [])
    'an oil painting of a cat by X, Y, cubism, '
    """
    head = caption
    lead = [medium] if medium is not None else []
    if medium is not None and caption is not None and caption.startswith(medium):
        lead = []
        if artist is not None:
            head = f"{caption} {artist}"
    elif artist is not None:
        lead.append(artist)
    parts = [head] if head is not None else []
    if lead:
        parts.append(" ".join(lead))
    parts += [p for p in (trending, movement) if p is not None]
    parts += list(extras)
    if flavors is not None:
        parts.append(JOIN.join(flavors))
    return JOIN.join(parts)


def caption_and_terms(caption: str | None, terms: Sequence[str]) -> str:
    """The fast layout: the caption, then the terms (no caption part: the terms alone; an empty
    caption is kept, as in the library).

    >>> caption_and_terms("a cat", ["red", "soft"]), caption_and_terms(None, ["red"])
    ('a cat, red, soft', 'red')
    >>> caption_and_terms("", ["red"])
    ', red'
    """
    return JOIN.join(terms) if caption is None else JOIN.join([caption, *terms])


def chunk_plan(size: int, chunk_size: int) -> tuple[list[tuple[int, int]], int]:
    """How the library ranks a bank of ``size`` terms: the ``(start, stop)`` chunks and how
    many terms each chunk keeps for the final ranking. A bank no longer than ``chunk_size`` is
    one chunk ranked directly (keep 0 stands for "no second round").

    >>> chunk_plan(10, 4)
    ([(0, 4), (4, 8), (8, 10)], 1)
    >>> chunk_plan(3, 4)
    ([(0, 3)], 0)
    """
    if size <= chunk_size:
        return [(0, size)], 0
    count = math.ceil(size / chunk_size)
    keep = int(chunk_size / count)
    chunks = [
        (start, min(start + chunk_size, size)) for start in range(0, count * chunk_size, chunk_size)
    ]
    return chunks, keep
