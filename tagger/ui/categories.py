"""One threshold box per further category (copyright, artist, meta, model, year, species) in
the Tagger tab, feeding ``TagOptions.category_thresholds``.

The boxes write the options' mapping field (``copyright,0.5;artist,2``), so presets, the API
and the command line see the same value; an empty box leaves its category on the general
threshold, a value above 1 turns it off.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

#: The categories that get a box, in the order shown.
BOX_CATEGORIES: tuple[str, ...] = ("copyright", "artist", "meta", "model", "year", "species")


def boxes_text(values: Sequence[Any], categories: Sequence[str] = BOX_CATEGORIES) -> str:
    """The mapping text of the boxes' values (empty boxes left out).

    >>> boxes_text([0.5, None, 2, "", None, 0.3])
    'copyright,0.5;meta,2.0;species,0.3'
    """
    pairs = []
    for category, value in zip(categories, values, strict=True):
        if value is None or value == "":
            continue
        pairs.append(f"{category},{float(value)!r}")
    return ";".join(pairs)


def box_values(
    mapping: Mapping[str, float], categories: Sequence[str] = BOX_CATEGORIES
) -> list[float | None]:
    """Each box's value for a ``category_thresholds`` mapping (a preset being loaded).

    >>> box_values({"artist": 2.0})
    [None, 2.0, None, None, None, None]
    """
    return [mapping.get(category) for category in categories]


def add_category_boxes(target: Any) -> dict[str, Any]:
    """Under the ``category_thresholds`` field (``target``), one number box per category; a
    change in any box rewrites the field. Returns the boxes by category."""
    import gradio as gr

    boxes: dict[str, Any] = {}
    with gr.Row(elem_id="tagger_category_boxes", elem_classes=["tagger_thresholds"]):
        for category in BOX_CATEGORIES:
            boxes[category] = gr.Number(
                value=None,
                label=f"{category.capitalize()} threshold",
                info="Empty: the general threshold; above 1: off.",
                elem_id=f"tagger_category_{category}",
            )
    inputs = list(boxes.values())
    for box in inputs:
        box.change(lambda *values: boxes_text(values), inputs, [target], queue=False)
    return boxes
