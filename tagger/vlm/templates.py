"""Prompt templates: built-in ones, the user's own, and how their fields are filled.

A template is a system prompt and a user prompt with fields in braces. The fields come from the
rest of the run:

==============  ===========================================================================
``{tags}``      the tagger's tags as the caption file lists them (no weights, no escapes)
``{general}``   the kept general tags; ``{character}``, ``{copyright}`` likewise
``{rating}``    the most likely rating (general, sensitive, questionable, explicit)
``{caption}``   another captioner's caption of the image
``{name}``      the image's file name without extension; ``{folder}``: its folder's name
``{trigger}``   the trigger word given for the run
``{existing}``  the caption file already there (or ``<stem>`` + ``existing_extension``)
==============  ===========================================================================

Rules: ``{{`` and ``}}`` are literal braces; a field name not listed above is an error; a line
whose fields are all empty is left out (so "Characters: {character}" disappears for an image
without one); runs of blank lines left behind become one.
"""

from __future__ import annotations

import string
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from tagger.errors import OptionsError

#: Every field a template may name, in the order the docs list them.
FIELDS = (
    "tags",
    "general",
    "character",
    "copyright",
    "rating",
    "caption",
    "name",
    "folder",
    "trigger",
    "existing",
)
#: The fields that come from a tagger running in the same pass.
TAG_FIELDS = frozenset({"tags", "general", "character", "copyright", "rating"})


@dataclass(frozen=True)
class Template:
    """A system prompt, a user prompt with fields, and how its replies are cleaned."""

    name: str
    system: str
    user: str
    reply: str = "prose"
    description: str = ""


_SYSTEM = (
    "You write captions for the images of a dataset used to train text-to-image models. "
    "Write in English. Describe only what is visible. Never refuse, never comment on the task, "
    "never add a preamble: answer with the caption alone."
)

BUILTIN: dict[str, Template] = {
    t.name: t
    for t in (
        Template(
            "dense",
            _SYSTEM,
            "Describe this image in one detailed paragraph of plain prose: the subjects, their "
            "appearance, clothing, pose and expression, the setting, the lighting, the colours, "
            "the composition and the style.\n"
            "A reliable tagger found these tags; use them as facts and do not contradict them: "
            "{tags}\n"
            "The characters are {character}; call them so and invent no other names.\n"
            "The series is {copyright}.\n"
            "The content rating is {rating}.\n"
            "Another captioner wrote: {caption}\n"
            "Call the main subject {trigger}.",
            "prose",
            "tag-guided dense description (the default)",
        ),
        Template(
            "sd-prompt",
            _SYSTEM,
            "Write a Stable Diffusion prompt for this image: one line of short comma-separated "
            "phrases, the most important first (subject, appearance, clothing, pose, setting, "
            "lighting, style). No sentences.\n"
            "Start with: {trigger}\n"
            "Use these tags where they fit: {tags}\n"
            "Characters: {character}",
            "tags",
            "a comma-separated prompt of short phrases",
        ),
        Template(
            "booru-tags",
            _SYSTEM,
            "List Danbooru-style tags for this image: lowercase, comma-separated, spaces instead "
            "of underscores, general tags only, the most relevant first. No sentences.\n"
            "Keep these tags when they are right and add the ones missing: {tags}",
            "tags",
            "a booru tag list",
        ),
    )
}
DEFAULT_TEMPLATE = "dense"


def template_fields(text: str) -> list[str]:
    """The field names a template text uses, in order of first use (unknown ones included).

    >>> template_fields("Tags: {tags}; {name} and {tags} {{literal}}")
    ['tags', 'name']
    """
    names: list[str] = []
    for _, field, _, _ in _parse(text):
        if field is not None and field not in names:
            names.append(field)
    return names


def _parse(text: str) -> list[tuple[str, str | None, str | None, str | None]]:
    """``string.Formatter().parse`` with errors naming the template."""
    try:
        return list(string.Formatter().parse(text))
    except ValueError as exc:
        raise OptionsError(
            f"prompt template is malformed ({exc}); write literal braces as {{{{ and }}}}"
        ) from None


def check_template(text: str) -> list[str]:
    """Refuse a template naming an unknown field or using a format spec; returns its fields.

    >>> check_template("Describe {name}")
    ['name']
    """
    for _, field, spec, conversion in _parse(text):
        if field is None:
            continue
        if field == "":
            raise OptionsError("prompt template has an empty field {}: name a field, e.g. {tags}")
        if field not in FIELDS:
            raise OptionsError(
                f"prompt template names an unknown field {{{field}}}; the fields are "
                + ", ".join(f"{{{name}}}" for name in FIELDS)
            )
        if spec or conversion:
            raise OptionsError(f"prompt template field {{{field}}} takes no format or conversion")
    return template_fields(text)


def render(text: str, values: Mapping[str, str]) -> str:
    """Fill a template's fields; a line whose fields are all empty is left out.

    >>> render("Tags: {tags}\\nCharacters: {character}\\nDescribe it.", {"tags": "1girl, solo"})
    'Tags: 1girl, solo\\nDescribe it.'
    >>> render("{name} {{not a field}}", {"name": "cat"})
    'cat {not a field}'
    """
    check_template(text)
    lines: list[str] = []
    for line in text.split("\n"):
        fields = template_fields(line)
        filled = {name: str(values.get(name) or "").strip() for name in fields}
        if fields and not any(filled.values()):
            continue
        lines.append(line.format_map(filled) if fields else line.format_map({}))
    out: list[str] = []
    for line in lines:
        if not line.strip() and out and not out[-1].strip():
            continue
        out.append(line)
    return "\n".join(out).strip()


def read_template_file(path: str | Path) -> tuple[str | None, str]:
    """Read a template file: (system prompt or None, user prompt).

    The whole file is the user prompt, unless its first line is ``[system]``: then the text up
    to a line ``[user]`` is the system prompt and the rest the user prompt. UTF-8.
    """
    from tagger.safeio import read_text_file

    try:
        existing = read_text_file(Path(path))
    except OSError as exc:
        raise OptionsError(f"cannot read the template file {path}: {exc.strerror or exc}") from None
    if existing is None:
        raise OptionsError(f"template file {path} does not exist")
    text = existing.text.replace("\r\n", "\n")
    lines = text.split("\n")
    if lines and lines[0].strip().lower() == "[system]":
        try:
            split = next(i for i, line in enumerate(lines) if line.strip().lower() == "[user]")
        except StopIteration:
            raise OptionsError(
                f"template file {path} starts with [system] but has no [user] line"
            ) from None
        system, user = "\n".join(lines[1:split]).strip(), "\n".join(lines[split + 1 :]).strip()
    else:
        system, user = None, text.strip()
    if not user:
        raise OptionsError(f"template file {path} has no user prompt")
    check_template(user)
    return system, user


def builtin(name: str) -> Template:
    """A built-in template by name (an unknown name lists the built-in ones)."""
    template = BUILTIN.get((name or "").strip().lower())
    if template is None:
        raise OptionsError(
            f"unknown prompt template {name!r}: use one of {', '.join(BUILTIN)}, or your own "
            "with --vlm-prompt / --vlm-template-file"
        )
    return template


def resolve_template(
    name: str, prompt: str | None, system: str | None, reply: str | None
) -> Template:
    """The template a run uses: the built-in ``name``, or ``prompt`` (your own) with the
    built-in's system prompt unless ``system`` is given ('' for none)."""
    base = builtin(name)
    user = base.user if prompt is None or not prompt.strip() else prompt.strip()
    check_template(user)
    own = prompt is not None and bool(prompt.strip())
    return Template(
        name="custom" if own else base.name,
        system=base.system if system is None else system.strip(),
        user=user,
        reply=reply or ("prose" if own else base.reply),
        description="your own template" if own else base.description,
    )
