"""Widget descriptions derived from the option models (no Gradio here).

Every field of ``TagOptions`` and ``BatchOptions`` becomes one ``FieldSpec``: its key (the field
name, snake_case, also the preset key and the element id suffix), a label, the kind of widget,
bounds and choices. The Gradio builder turns specs into widgets and ``to_widget``/``from_widget``
convert values between the model and what a widget holds (lists as comma-separated text,
replacement maps in kohya's ``a,b;c,d`` syntax). Works with pydantic 1.10 and 2.x.
"""

from __future__ import annotations

import typing
from dataclasses import dataclass
from typing import Any

from tagger.errors import OptionsError
from tagger.option_text import parse_replacements, split_list
from tagger.options import PYDANTIC_V2, StrictModel, dump, field_names, parse

#: Kinds of widget: slider (bounded float), number (int), checkbox, choice (Literal), text
#: (str), list (comma-separated list of str), mapping (dict[str, str] as ``a,b;c,d``).
KINDS = ("slider", "number", "checkbox", "choice", "text", "list", "mapping")


@dataclass(frozen=True)
class FieldSpec:
    """How one option field is shown and edited."""

    key: str
    label: str
    kind: str
    description: str
    default: Any
    choices: tuple[str, ...] = ()
    minimum: float | None = None
    maximum: float | None = None
    optional: bool = False


def label_of(key: str) -> str:
    """A human label from a field name.

    >>> label_of("general_threshold"), label_of("mcut_general"), label_of("character_mcut_floor")
    ('General threshold', 'MCut general', 'Character MCut floor')
    """
    words = key.split("_")
    text = " ".join(words)
    text = text[0].upper() + text[1:]
    for word, fixed in (("mcut", "MCut"), ("Mcut", "MCut"), ("Jsonl", "JSONL"), ("json", "JSON")):
        text = text.replace(word, fixed)
    return text


def _raw_field(model: type[StrictModel], key: str) -> tuple[Any, str, float | None, float | None]:
    """(annotation, description, ge, le) of a field on pydantic 1.10 or 2.x."""
    if PYDANTIC_V2:
        info = model.model_fields[key]
        ge = next((m.ge for m in info.metadata if hasattr(m, "ge")), None)
        le = next((m.le for m in info.metadata if hasattr(m, "le")), None)
        return info.annotation, info.description or "", ge, le
    # pydantic 1.10 (AUTOMATIC1111): the declared annotation, not pydantic's constrained type.
    annotation = typing.get_type_hints(model)[key]  # pragma: no cover
    info = model.__fields__[key].field_info  # pragma: no cover
    return annotation, info.description or "", info.ge, info.le  # pragma: no cover


def _kind(annotation: Any) -> tuple[str, tuple[str, ...], bool]:
    """(kind, choices, optional) of a type annotation."""
    args = typing.get_args(annotation)
    optional = type(None) in args
    if optional:
        annotation = next(a for a in args if a is not type(None))
        args = typing.get_args(annotation)
    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        return "choice", tuple(str(a) for a in args), optional
    if origin is list or annotation is list:
        return "list", (), optional
    if origin is dict or annotation is dict:
        return "mapping", (), optional
    simple = {bool: "checkbox", int: "number", float: "slider", str: "text"}
    if annotation in simple:
        return simple[annotation], (), optional
    raise TypeError(f"no widget for option type {annotation!r}")


def field_specs(model: type[StrictModel]) -> list[FieldSpec]:
    """One spec per field of ``model``, in declaration order."""
    defaults = dump(model())
    specs = []
    for key in field_names(model):
        annotation, description, ge, le = _raw_field(model, key)
        kind, choices, optional = _kind(annotation)
        if kind == "slider" and (ge is None or le is None):
            kind = "number"
        specs.append(
            FieldSpec(
                key=key,
                label=label_of(key),
                kind=kind,
                description=description,
                default=defaults[key],
                choices=choices,
                minimum=ge,
                maximum=le,
                optional=optional,
            )
        )
    return specs


def format_mapping(mapping: dict[str, Any]) -> str:
    """Write a replacement map in kohya's syntax (``,`` and ``;`` escaped with a backslash).

    >>> format_mapping({"cat ears": "animal ears", "a,b": "c"})
    'cat ears,animal ears;a\\\\,b,c'
    """

    def esc(text: str) -> str:
        return text.replace("\\", "\\\\").replace(",", "\\,").replace(";", "\\;")

    return ";".join(f"{esc(str(k))},{esc(str(v))}" for k, v in mapping.items())


def to_widget(spec: FieldSpec, value: Any) -> Any:
    """A model value as the widget holds it."""
    if spec.kind == "list":
        return ", ".join(value or [])
    if spec.kind == "mapping":
        return format_mapping(value or {})
    if spec.kind == "text":
        return "" if value is None else value
    return value


def from_widget(spec: FieldSpec, value: Any) -> Any:
    """A widget's value as the model field wants it (raises OptionsError on bad text)."""
    if spec.kind == "list":
        return split_list(value or "")
    if spec.kind == "mapping":
        try:
            return parse_replacements(value or "")
        except OptionsError as exc:
            raise OptionsError(f"{spec.label}: {exc}") from None
    if spec.kind == "text":
        text = value if value is not None else ""
        return (text.strip() or None) if spec.optional else text
    if spec.kind == "number":
        return spec.default if value is None else int(value)
    if spec.kind == "slider":
        return spec.default if value is None else float(value)
    if spec.kind == "checkbox":
        return bool(value)
    return value


def build_options(model: type[StrictModel], values: dict[str, Any]) -> Any:
    """Validate widget values (keyed by field name) into ``model``; raises OptionsError."""
    specs = {spec.key: spec for spec in field_specs(model)}
    data = {key: from_widget(specs[key], value) for key, value in values.items() if key in specs}
    try:
        return parse(model, data)
    except Exception as exc:
        if type(exc).__name__ == "ValidationError":
            raise OptionsError(f"invalid options: {exc}") from None
        raise
