"""How a model's reply becomes a caption, and which replies are refused.

``clean_reply`` applies these rules, in order:

1. Reasoning is dropped: ``<think>...</think>`` (also ``<thinking>``, ``<reasoning>``) blocks,
   everything before a lone closing tag, and an opening tag never closed (with what follows).
2. A reply wrapped in a Markdown code fence keeps only the fenced text.
3. Markdown is removed: heading marks, ``**bold**`` / ``__bold__`` / ``*italic*`` marks,
   leading list bullets.
4. Lead-ins are dropped: a first line or sentence ending in ``:`` that speaks of the answer
   ("Here is a detailed caption:", "Sure! Here's the description:", "Caption:"), and openers such
   as "Sure!", "Certainly." or "Of course," before it.
5. Sign-offs are dropped: a last sentence offering more help ("Let me know if ...", "I hope this
   helps", "Feel free to ...").
6. Matching quotes around the whole reply are removed.
7. ``prose`` replies become one paragraph (lines joined with spaces, runs of spaces collapsed);
   ``tags`` replies become one comma-separated list (lines, bullets and commas split, blanks and
   repeats dropped).

Then ``rejection`` says why a cleaned reply must not be written: empty, a refusal ("I'm sorry,
but I can't ...", "I cannot help with that"), or (``check_language``) mostly outside the Latin
script.
"""

from __future__ import annotations

import re
import unicodedata

_REASONING = ("think", "thinking", "reasoning")
_FENCE = re.compile(r"^\s*```[\w+-]*[ \t]*\n(.*?)\n?```\s*$", re.DOTALL)
_HEADING = re.compile(r"^\s{0,3}#{1,6}\s*", re.MULTILINE)
_BULLET = re.compile(r"^\s*(?:[-*+\u2022]|\d+[.)])\s+", re.MULTILINE)
_EMPHASIS = (
    re.compile(r"\*\*(.+?)\*\*", re.DOTALL),
    re.compile(r"__(.+?)__", re.DOTALL),
    re.compile(r"(?<![\w*])\*(?!\s)(.+?)(?<!\s)\*(?![\w*])", re.DOTALL),
)
_OPENER = re.compile(
    r"^\s*(?:sure|certainly|of course|absolutely|okay|ok|alright|great)\b[!.,:]*\s*",
    re.IGNORECASE,
)
_LEAD_WORDS = re.compile(
    r"\b(here|caption|description|describ\w*|prompt|tags?|summary|answer|image|picture)\b",
    re.IGNORECASE,
)
_SIGN_OFF = re.compile(
    r"(?:^|(?<=[.!?])\s+)(?:let me know\b|i hope (?:this|that|it) helps\b|feel free to\b|"
    r"if you (?:need|want|would like)\b|would you like\b|is there anything else\b)"
    r"[^.!?]*[.!?]?\s*$",
    re.IGNORECASE,
)
_QUOTES = {'"': '"', "'": "'", "\u201c": "\u201d", "\u2018": "\u2019", "`": "`"}
_REFUSAL = re.compile(
    r"^\s*(?:(?:i'?m|i am) sorry\b|sorry\b|i apologi[sz]e\b|unfortunately,? i\b|as an ai\b|"
    r"i (?:can ?not|can't|won't|will not|must decline|do not feel comfortable|"
    r"don't feel comfortable)\b|"
    r"(?:i'?m|i am) (?:unable|not able|not comfortable|not allowed|afraid i can)\b)",
    re.IGNORECASE,
)
_LEAD_MAX = 160


def strip_reasoning(text: str) -> str:
    """Drop reasoning blocks (rule 1).

    >>> strip_reasoning("<think>the user wants a caption</think>A red car.")
    'A red car.'
    >>> strip_reasoning("still thinking</think> A dog."), strip_reasoning("<think>never closed")
    (' A dog.', '')
    """
    for tag in _REASONING:
        text = re.sub(rf"<{tag}>.*?</{tag}>", "", text, flags=re.DOTALL | re.IGNORECASE)
        closing = re.search(rf"</{tag}>", text, flags=re.IGNORECASE)
        if closing is not None:
            text = text[closing.end() :]
        opening = re.search(rf"<{tag}>", text, flags=re.IGNORECASE)
        if opening is not None:
            text = text[: opening.start()]
    return text


def strip_fence(text: str) -> str:
    """Keep the inside of a reply wrapped in a code fence (rule 2).

    >>> strip_fence("```text\\nA cat on a mat.\\n```")
    'A cat on a mat.'
    """
    match = _FENCE.match(text)
    return match.group(1) if match else text


def strip_markdown(text: str) -> str:
    """Remove heading marks, emphasis and bullets (rule 3).

    >>> strip_markdown("## Caption\\n**A cat** sits on a *red* mat.")
    'Caption\\nA cat sits on a red mat.'
    """
    text = _HEADING.sub("", text)
    for pattern in _EMPHASIS:
        text = pattern.sub(r"\1", text)
    return _BULLET.sub("", text)


def strip_lead_in(text: str) -> str:
    """Drop openers and a lead-in line or sentence ending in ':' (rule 4).

    >>> strip_lead_in("Sure! Here is a detailed caption of the image: A cat sleeps.")
    'A cat sleeps.'
    >>> strip_lead_in("Caption:\\nA cat sleeps.")
    'A cat sleeps.'
    >>> strip_lead_in("A cat sleeps: it is tired.")
    'A cat sleeps: it is tired.'
    """
    text = _OPENER.sub("", text.lstrip(), count=1)
    stripped = text.lstrip()
    colon = stripped.find(":")
    if 0 < colon <= _LEAD_MAX:
        head = stripped[:colon]
        one_line = "\n" not in head.strip()
        if one_line and _LEAD_WORDS.search(head) and not re.search(r"[.!?]\s", head):
            rest = stripped[colon + 1 :].lstrip()
            if rest:
                return rest
    return stripped


def strip_sign_off(text: str) -> str:
    """Drop a closing sentence offering more help (rule 5).

    >>> strip_sign_off("A cat sleeps. Let me know if you need anything else!")
    'A cat sleeps.'
    """
    previous = None
    while previous != text:
        previous = text
        text = _SIGN_OFF.sub("", text.rstrip()).rstrip()
    return text


def strip_quotes(text: str) -> str:
    """Remove one pair of matching quotes around the whole text (rule 6).

    >>> strip_quotes('"A cat sleeps."')
    'A cat sleeps.'
    """
    text = text.strip()
    if len(text) >= 2 and _QUOTES.get(text[0]) == text[-1]:
        inner = text[1:-1]
        if text[0] not in inner and text[-1] not in inner:
            return inner.strip()
    return text


def one_paragraph(text: str) -> str:
    """Lines joined with spaces, runs of whitespace collapsed (rule 7, prose).

    >>> one_paragraph("A cat.\\n\\n  It sleeps.")
    'A cat. It sleeps.'
    """
    return " ".join(text.split())


def tag_list(text: str) -> str:
    """Lines, bullets and commas split into one comma-separated list, blanks and repeats
    (any case) dropped (rule 7, tags).

    >>> tag_list("- 1girl\\n- Solo, smile\\n1girl")
    '1girl, Solo, smile'
    """
    seen: set[str] = set()
    items: list[str] = []
    for part in re.split(r"[,\n;]", _BULLET.sub("", text)):
        item = " ".join(part.split()).strip(" .")
        if item and item.lower() not in seen:
            seen.add(item.lower())
            items.append(item)
    return ", ".join(items)


def clean_reply(text: str | None, reply: str = "prose") -> str:
    """A model's reply as caption text, by the rules of this module.

    >>> clean_reply("<think>hmm</think>Here's a caption:\\n\\n**A red car** parked.\\n\\n"
    ...             "I hope this helps!")
    'A red car parked.'
    >>> clean_reply("Tags:\\n- car\\n- red\\n- car", "tags")
    'car, red'
    """
    text = strip_reasoning(text or "")
    text = strip_fence(text.strip())
    text = strip_markdown(text)
    text = strip_lead_in(text)
    text = strip_sign_off(text)
    text = strip_quotes(text)
    return tag_list(text) if reply == "tags" else one_paragraph(text)


def latin_share(text: str) -> float:
    """The share of letters in ``text`` that are Latin script (1.0 when there is no letter).

    >>> latin_share("A red car"), latin_share("赤い車 car")
    (1.0, 0.5)
    """
    letters = [c for c in text if c.isalpha()]
    if not letters:
        return 1.0
    latin = sum(1 for c in letters if unicodedata.name(c, "").startswith("LATIN"))
    return latin / len(letters)


def is_refusal(text: str) -> bool:
    """True when a (cleaned) reply opens as a refusal.

    >>> is_refusal("I'm sorry, but I can't help with that."), is_refusal("A sorry-looking dog.")
    (True, False)
    """
    return _REFUSAL.match(text.replace("\u2019", "'")) is not None


def rejection(text: str, *, check_language: bool = True, min_latin: float = 0.8) -> str | None:
    """Why a cleaned reply is not a caption (None: it is one).

    >>> rejection(""), rejection("I cannot describe this image."), rejection("A cat.")
    ('empty reply', 'refused: "I cannot describe this image."', None)
    """
    if not text.strip():
        return "empty reply"
    if is_refusal(text):
        shown = text if len(text) <= 120 else text[:117] + "..."
        return f'refused: "{shown}"'
    if check_language and latin_share(text) < min_latin:
        return (
            f"reply is not in the Latin script ({latin_share(text):.0%} Latin letters; the model "
            "may have answered in the language of text in the image)"
        )
    return None
