"""``--dry-run``: the first requests of a planned run, built as the run would build them, never
sent.

The run is planned with the engine's own rules (``BatchRun.prepare``: images done are skipped,
colliding outputs left out), so the images shown are the ones the run would send first. For
tag-guided prompts the tagger (and the CLIP filter, and a guide captioner) run on them; the VLM
itself does not load, so no key is needed and no request leaves the machine. Nothing is written.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from tagger.errors import OptionsError

if TYPE_CHECKING:
    from tagger.batch import BatchRun
    from tagger.vlm.base import PromptPreview


def first_pending(run: BatchRun, count: int) -> list[tuple[Any, Any]]:
    """The first ``count`` images the run would send: (item, targets) pairs."""
    plan = run.prepare()
    apply = plan.walker()
    picked: list[tuple[Any, Any]] = []
    try:
        for listed in run.items():
            if len(picked) >= count:
                break
            item = apply(listed)
            if item is None or item.conflict is not None:
                continue
            targets = run.targets(item)
            if run.is_done(item, targets):
                continue
            picked.append((item, targets))
    finally:
        run._close_manifest()
    return picked


def preview_run(run: BatchRun, model: Any, count: int) -> list[tuple[Path, PromptPreview]]:
    """The requests of the first ``count`` images of ``run`` with ``model`` (an
    ``Interrogator`` whose captioner is a VLM), without sending them."""
    from tagger.image import load_image
    from tagger.vlm.base import VlmCaptioner

    captioner = getattr(model, "captioner", None)
    if not isinstance(captioner, VlmCaptioner):
        raise OptionsError("--dry-run shows VLM requests: caption with a VLM (--vlm-url ...)")
    picked = first_pending(run, count)
    if not picked:
        return []
    model.load(captioner=False)
    if captioner.guide is not None:
        captioner.guide.load()
    inputs = []
    for item, targets in picked:
        image = load_image(item.path, max_pixels=run.options.max_pixels)
        context = captioner.item_context(item.path, targets.caption_file or targets.caption)
        inputs.append(model.preprocess(image, context))
    batch = model.collate(inputs)
    if model.tagger is not None and captioner.wants_tags:
        rows = [{} for _ in picked]
        for row, scores in zip(rows, model.tagger.forward(batch["tags"]), strict=True):
            row["scores"] = scores
        if model.clip_filter is not None:
            for row, embedding in zip(
                rows, model.clip_filter.image_embeddings(batch["clip"]), strict=True
            ):
                row["clip"] = embedding
        results = [model._tags(row, model.tag_options)[1] for row in rows]
        captioner.add_tags(batch["caption"], results, model.tag_options)
    captioner._fill_guide(batch["caption"], model.caption_options)
    previews = captioner.preview(batch["caption"])
    return [(item.path, preview) for (item, _), preview in zip(picked, previews, strict=True)]
