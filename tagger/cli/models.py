"""``tagger models``: the registry's and the local models, and whether each is on disk."""

from __future__ import annotations

import argparse
import json
from typing import Any

from tagger.cli import EXIT_OK
from tagger.cli.common import add_hf_cache_option, add_models_dir_option

#: The availability column: the files are there / huggingface_hub can fetch them / neither.
ON_DISK, DOWNLOAD, MISSING = "on disk", "download", "missing"


def add_command(sub: Any) -> None:
    """Register ``tagger models``."""
    models = sub.add_parser(
        "models",
        help="list registry, local and downloaded models",
        description="List the registry's and the local models (taggers, then captioners), "
        "local folders first. The second column says whether a model's files are on disk, "
        "can be downloaded on first use, or are missing (put them where the last column says).",
    )
    add_models_dir_option(models)
    add_hf_cache_option(models)
    models.add_argument("--json", action="store_true", help="Print JSON.")
    models.add_argument(
        "--families",
        action="store_true",
        help="List the tagger families instead: categories, files and preprocessing.",
    )
    models.set_defaults(handler=run)


def availability(on_disk: bool, downloadable: bool) -> str:
    """The availability column: ``on disk``, ``download`` or ``missing``.

    >>> availability(False, True), availability(False, False), availability(True, False)
    ('download', 'missing', 'on disk')
    """
    if on_disk:
        return ON_DISK
    return DOWNLOAD if downloadable else MISSING


def model_row(spec: Any, hf_cache: str | None) -> dict[str, Any]:
    """One listed model: key, family, where its files come from, and whether they are there."""
    from tagger.hub import is_downloaded

    downloadable = spec.path is None and spec.repo_id is not None
    if spec.family == "clip-interrogator":  # made of other models, fetched when it runs
        return {
            "key": spec.key,
            "family": spec.family,
            "source": "its CLIP and caption models (--ci-clip-model, --ci-caption-model) and "
            "the clip-interrogator package's banks",
            "on_disk": False,
            "downloadable": True,
            "availability": DOWNLOAD,
            "description": spec.description,
        }
    if spec.path:
        source = str(spec.path)
    elif spec.repo_id:
        source = f"{spec.repo_id}@{spec.revision}"
    elif spec.family == "vlm-api":  # tagger.vlm: a model behind an endpoint, no files
        source = "no files: a model behind an OpenAI-compatible endpoint (--vlm-url)"
    else:
        source = f"no download: put {', '.join(spec.files)} in models/{spec.key}/"
    on_disk = is_downloaded(spec, cache_dir=hf_cache)
    return {
        "key": spec.key,
        "family": spec.family,
        "source": source,
        "on_disk": on_disk,
        "downloadable": downloadable,
        "availability": availability(on_disk, downloadable),
        "description": spec.description,
    }


def run(args: argparse.Namespace) -> int:
    """Run ``tagger models``."""
    from tagger.registry import list_captioners, list_models

    if getattr(args, "families", False):
        from tagger.families.spec import family_rows

        families = family_rows()
        if args.json:
            print(json.dumps(families, indent=2))
            return EXIT_OK
        for row in families:
            print(f"{row['family']:<12} {row['title']}")
            print(f"{'':<12} categories: {', '.join(row['categories'])}")
            print(f"{'':<12} files: {', '.join(row['files'])}")
            print(f"{'':<12} preprocessing: {row['preprocess']}")
        return EXIT_OK
    specs = [*list_models(args.models_dir), *list_captioners(args.models_dir)]
    rows = [model_row(spec, args.hf_cache) for spec in specs]
    if args.json:
        print(json.dumps(rows, indent=2))
        return EXIT_OK
    width = max(len(row["key"]) for row in rows)
    column = max(len(state) for state in (ON_DISK, DOWNLOAD, MISSING))
    for row in rows:
        print(f"{row['key']:<{width}}  {row['availability']:<{column}}  {row['source']}")
    return EXIT_OK
