"""Flags for the other tagger families, every category, ensembles and tag clean-up.

``tagger tag`` (through ``add_tag_options``) gets:

- kohya-ss's per-category thresholds (``--copyright-threshold``, ``--artist-threshold``,
  ``--meta-threshold``, ``--model-threshold``; a value above 1 turns the category off) and
  ``--category-threshold NAME=VALUE`` for any other (year, species, ...), ``--mcut-categories``,
  ``--use-quality-tags`` / ``--use-quality-tags-as-last-tag``, ``--character-tag-expand``,
  ``--threshold-profile`` (Camie's presets) and ``--no-model-thresholds``;
- clean-up: ``--drop-overlap``, ``--drop-character-tags``, ``--blacklist``;
- ``--model`` repeated for an ensemble, ``--ensemble mean|max|votes`` and ``--min-votes``;
- ``--frequency-tags`` (kohya's: every tag of the run with its count) and
  ``--frequency-file FILE`` (the same as ``tag,count`` CSV).
"""

from __future__ import annotations

import argparse
from typing import Any

from tagger.errors import OptionsError

#: kohya's per-category threshold flags.
KOHYA_CATEGORIES = ("copyright", "artist", "meta", "model")


def threshold_value(text: str) -> float:
    """argparse type: a threshold from 0 up (above 1 turns the category off)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value >= 0.0:
        raise argparse.ArgumentTypeError(f"{value} is negative")
    return value


def category_pair(text: str) -> tuple[str, float]:
    """argparse type: ``NAME=VALUE`` for ``--category-threshold``.

    >>> category_pair("year=0.5")
    ('year', 0.5)
    """
    name, sep, value = text.partition("=")
    if not sep or not name.strip():
        raise argparse.ArgumentTypeError(f"{text!r} is not NAME=VALUE (e.g. year=0.5)")
    return name.strip().lower(), threshold_value(value)


class CategoryThreshold(argparse.Action):
    """Store one category's threshold into ``category_thresholds`` (a dict)."""

    def __init__(self, *args: Any, category: str | None = None, **kwargs: Any) -> None:
        self.category = category
        super().__init__(*args, **kwargs)

    def __call__(self, parser: Any, namespace: Any, values: Any, option: Any = None) -> None:
        name, value = (self.category, values) if self.category else values
        current = dict(getattr(namespace, "category_thresholds", None) or {})
        current[name] = value
        namespace.category_thresholds = current


class ModelAction(argparse.Action):
    """``--model`` given once sets the model; each further one adds an ensemble member."""

    def __call__(self, parser: Any, namespace: Any, values: Any, option: Any = None) -> None:
        if getattr(namespace, "_model_given", False):
            namespace.extra_models = [*getattr(namespace, "extra_models", []), values]
        else:
            namespace.model = values
            namespace._model_given = True


def add_family_options(parser: argparse.ArgumentParser) -> None:
    """Category, clean-up, ensemble and frequency flags (dest = the TagOptions field)."""
    from tagger.cli.common import describe, tag_list
    from tagger.options import TagOptions

    d = lambda name, note="": describe(TagOptions, name, note)  # noqa: E731
    g = parser.add_argument_group("every category (PixAI, cl_tagger, Camie, ... taggers)")
    for category in KOHYA_CATEGORIES:
        g.add_argument(
            f"--{category}-threshold",
            dest="category_thresholds",
            action=CategoryThreshold,
            category=category,
            type=threshold_value,
            metavar="T",
            help=f"Keep {category} tags scoring above T; unset, they use the general "
            "threshold; above 1 turns them off (kohya's flag).",
        )
    g.add_argument(
        "--category-threshold",
        dest="category_thresholds",
        action=CategoryThreshold,
        type=category_pair,
        metavar="NAME=T",
        help=d("category_thresholds", "Repeatable, e.g. year=0.5 or species=0.3."),
    )
    g.add_argument(
        "--mcut-categories", type=tag_list, help=d("mcut_categories", "Comma-separated.")
    )
    g.add_argument(
        "--use-quality-tags",
        dest="quality_tag",
        action="store_const",
        const="first",
        help="Write the most likely quality tag first (kohya's flag).",
    )
    g.add_argument(
        "--use-quality-tags-as-last-tag",
        dest="quality_tag",
        action="store_const",
        const="last",
        help="Write the most likely quality tag last.",
    )
    g.add_argument(
        "--character-tag-expand", action="store_true", default=None, help=d("character_tag_expand")
    )
    g.add_argument("--threshold-profile", metavar="NAME", help=d("threshold_profile"))
    g.add_argument(
        "--no-model-thresholds",
        dest="model_thresholds",
        action="store_false",
        default=None,
        help="Ignore the thresholds a model ships (PixAI's thresholds.csv); also implied by "
        "--general-threshold / --character-threshold / --thresh.",
    )
    c = parser.add_argument_group("tag clean-up")
    c.add_argument("--drop-overlap", action="store_true", default=None, help=d("drop_overlap"))
    c.add_argument(
        "--drop-character-tags", action="store_true", default=None, help=d("drop_character_tags")
    )
    c.add_argument("--blacklist", type=tag_list, help=d("blacklist", "Comma-separated."))
    c.add_argument(
        "--frequency-tags",
        dest="top_tags",
        action="store_const",
        const=-1,
        default=argparse.SUPPRESS,
        help="List every tag of the run with its count in the summary (kohya's flag).",
    )
    c.add_argument(
        "--frequency-file",
        metavar="FILE",
        help="Also write every tag of the run with its count, most frequent first, as CSV.",
    )
    e = parser.add_argument_group("ensembles (--model given several times)")
    e.add_argument(
        "--ensemble",
        choices=["mean", "max", "votes"],
        default="mean",
        help="How the models' scores merge per tag over the union of their vocabularies: mean "
        "or max of the scores of the models that know the tag, or votes (kept when at least "
        "--min-votes models keep it by their own thresholds) (default: 'mean').",
    )
    e.add_argument(
        "--min-votes",
        type=int,
        default=0,
        metavar="N",
        help="With --ensemble votes: how many models must keep a tag; 0 means a majority "
        "(default: 0).",
    )


def resolve_thresholds(args: argparse.Namespace) -> None:
    """A threshold given on the command line wins over the model's shipped ones."""
    explicit = any(
        getattr(args, name, None) is not None
        for name in ("general_threshold", "character_threshold", "thresh")
    )
    if explicit and getattr(args, "model_thresholds", None) is None:
        args.model_thresholds = False


def model_names(args: argparse.Namespace, first: str) -> list[str]:
    """Every model named on the command line (more than one: an ensemble)."""
    names = [first, *getattr(args, "extra_models", [])]
    if (
        len(names) > 1
        and getattr(args, "captioner", None) is None
        and args.ensemble not in ("mean", "max", "votes")
    ):  # pragma: no cover - argparse restricts the choices
        raise OptionsError(f"--ensemble {args.ensemble!r}")
    return names


def write_frequencies(args: argparse.Namespace, summary: Any) -> None:
    """``--frequency-file``: the run's tag counts as CSV (through the safe writer)."""
    target = getattr(args, "frequency_file", None)
    if not target:
        return
    from tagger.cleanup import frequencies_csv
    from tagger.safeio import atomic_write_text

    atomic_write_text(target, frequencies_csv(summary.tag_counts))
