"""Option values written as text: comma-separated lists and kohya's tag replacement syntax.

The command line, the webui tab and presets read these texts into ``TagOptions`` fields. A bad
text raises ``OptionsError`` naming the piece that is wrong; each edge turns it into its own
message (argparse's usage error, ``gr.Error``).
"""

from __future__ import annotations

from tagger.errors import OptionsError


def split_list(text: str) -> list[str]:
    """Split a comma-separated list, dropping blanks.

    >>> split_list("1girl, solo,,  smile ")
    ['1girl', 'solo', 'smile']
    """
    return [part.strip() for part in text.split(",") if part.strip()]


def parse_replacements(text: str) -> dict[str, str]:
    """Parse kohya's ``--tag-replacement`` syntax: ``src,dst;src2,dst2`` (``\\,`` ``\\;`` escape).

    >>> parse_replacements("cat ears,animal ears;a\\\\,b,c")
    {'cat ears': 'animal ears', 'a,b': 'c'}
    """
    pairs: dict[str, str] = {}
    for chunk in _split_escaped(text, ";"):
        if not chunk.strip():
            continue
        parts = _split_escaped(chunk, ",")
        if len(parts) != 2:
            raise OptionsError(
                f"tag replacement {chunk!r} is not 'source,replacement' (escape commas as \\,)"
            )
        source, target = (_unescape(p).strip() for p in parts)
        if not source:
            raise OptionsError(f"tag replacement {chunk!r} has an empty source")
        pairs[source] = target
    return pairs


def _split_escaped(text: str, separator: str) -> list[str]:
    """Split on ``separator`` unless it is preceded by a backslash (escapes are kept)."""
    parts, current, escaped = [], [], False
    for char in text:
        if escaped:
            current.append("\\" + char)
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == separator:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    if escaped:
        current.append("\\")
    parts.append("".join(current))
    return parts


def _unescape(text: str) -> str:
    """Remove the backslash of ``\\,`` and ``\\;``."""
    return text.replace("\\,", ",").replace("\\;", ";")
