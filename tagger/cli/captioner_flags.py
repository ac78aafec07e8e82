"""Flags that configure a caption run's captioner, shared by ``tagger caption`` and ``tagger
tag --captioner``: the CLIP Interrogator's options (``--ci-*``, for ``clip-interrogator``) and
reranking (``--rerank``: several candidate captions, the best-matching one kept).

``captioner_spec(name, args)`` turns a captioner name and these flags into the spec every engine
runs (the local one and Ray's actors alike).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from tagger.cli.common import describe, non_negative, tag_list
from tagger.errors import OptionsError
from tagger.interrogator.options import CATEGORIES, MODES, InterrogatorOptions
from tagger.options import field_names, parse

#: ``--ci-*`` flag dest -> InterrogatorOptions field.
CI_FLAGS = {
    "ci_mode": "mode",
    "ci_clip_model": "clip_model",
    "ci_caption_model": "caption_model",
    "ci_caption_decoding": "caption_decoding",
    "ci_skip": "skip_categories",
    "ci_min_flavors": "min_flavors",
    "ci_max_flavors": "max_flavors",
    "ci_classic_flavors": "classic_flavors",
    "ci_chunk_size": "chunk_size",
    "ci_intermediate_count": "intermediate_count",
    "ci_analyze": "analyze",
    "ci_low_vram": "low_vram",
}
#: Flags that say where the interrogator's files are (not options of a prompt).
CI_PLACES = ("ci_bank", "ci_data", "ci_cache", "ci_no_download")
RERANK_FLAGS = {
    "rerank": "by",
    "rerank_candidates": "candidates",
    "rerank_source": "source",
    "rerank_captioners": "captioners",
    "rerank_itm_model": "itm_model",
    "rerank_clip_model": "clip_model",
    "rerank_clip_pretrained": "clip_pretrained",
}


class _Skip(argparse.Action):
    """``--no-artists`` / ``--no-trending``: add a bank to ``--ci-skip``."""

    def __call__(self, parser: Any, namespace: Any, values: Any, option: Any = None) -> None:
        current = list(getattr(namespace, self.dest, None) or [])
        if self.const not in current:
            current.append(self.const)
        setattr(namespace, self.dest, current)


class _Rerank(argparse.Action):
    """``--rerank itm|clip``: also turns on the JSON sidecars, where the candidates go."""

    def __call__(self, parser: Any, namespace: Any, values: Any, option: Any = None) -> None:
        setattr(namespace, self.dest, values)
        namespace.write_json = True


def _skip_list(text: str) -> list[str]:
    """argparse type: banks to leave out."""
    names = tag_list(text)
    unknown = [name for name in names if name not in CATEGORIES]
    if unknown:
        raise argparse.ArgumentTypeError(
            f"unknown bank {', '.join(unknown)}: use {', '.join(CATEGORIES)}"
        )
    return names


def add_captioner_flags(parser: argparse.ArgumentParser) -> None:
    """The ``--ci-*`` and ``--rerank*`` flags."""
    from tagger.scoring.rerank import RerankOptions

    d = lambda name, note="": describe(InterrogatorOptions, name, note)  # noqa: E731
    g = parser.add_argument_group(
        "CLIP Interrogator (with --model / --captioner clip-interrogator)"
    )
    g.add_argument("--ci-mode", choices=MODES, help=d("mode"))
    g.add_argument("--ci-clip-model", metavar="ARCH/PRETRAINED|DIR", help=d("clip_model"))
    g.add_argument("--ci-caption-model", metavar="KEY|DIR|none", help=d("caption_model"))
    g.add_argument("--ci-caption-decoding", choices=["run", "library"], help=d("caption_decoding"))
    g.add_argument(
        "--ci-skip", type=_skip_list, metavar="BANKS", help=d("skip_categories", "Comma-separated.")
    )
    g.add_argument(
        "--no-artists",
        dest="ci_skip",
        action=_Skip,
        nargs=0,
        const="artists",
        help="Leave the artists out (the same as --ci-skip artists).",
    )
    g.add_argument(
        "--no-trending",
        dest="ci_skip",
        action=_Skip,
        nargs=0,
        const="trendings",
        help="Leave the trending sites out (the same as --ci-skip trendings).",
    )
    g.add_argument(
        "--ci-bank",
        action="append",
        metavar="FILE",
        help="A bank of your own: a text file, one term per line, named by the file's stem "
        "(repeatable).",
    )
    g.add_argument("--ci-min-flavors", type=non_negative, help=d("min_flavors"))
    g.add_argument("--ci-max-flavors", type=non_negative, help=d("max_flavors"))
    g.add_argument("--ci-classic-flavors", type=non_negative, help=d("classic_flavors"))
    g.add_argument("--ci-chunk-size", type=non_negative, help=d("chunk_size"))
    g.add_argument("--ci-intermediate-count", type=non_negative, help=d("intermediate_count"))
    g.add_argument("--ci-analyze", action="store_true", default=None, help=d("analyze"))
    g.add_argument("--ci-low-vram", action="store_true", default=None, help=d("low_vram"))
    g.add_argument(
        "--ci-data",
        metavar="DIR",
        help="Folder of clip-interrogator's data files; without it, $TAGGER_INTERROGATOR_DATA "
        "or the installed package's.",
    )
    g.add_argument(
        "--ci-cache",
        metavar="DIR",
        help="Folder of cached bank embeddings; without it, ~/.cache/tagger/clip-interrogator "
        "($TAGGER_CACHE_DIR/clip-interrogator). clip-interrogator-ext's models/clip-interrogator "
        "can be named here: its files are read too.",
    )
    g.add_argument(
        "--ci-no-download",
        action="store_true",
        help="Never download the library's precomputed bank embeddings (compute them).",
    )
    r = lambda name, note="": describe(RerankOptions, name, note)  # noqa: E731
    k = parser.add_argument_group("reranking (several candidate captions, the best one kept)")
    k.add_argument(
        "--rerank",
        choices=["itm", "clip"],
        action=_Rerank,
        help="Write several candidate captions and keep the one that matches the image best: "
        "itm (BLIP image-text matching) or clip (CLIP similarity). Turns on --json: the "
        "sidecar lists every candidate with its scores.",
    )
    k.add_argument("--rerank-candidates", type=non_negative, help=r("candidates"))
    k.add_argument("--rerank-source", choices=["beams", "samples", "captioners"], help=r("source"))
    k.add_argument(
        "--rerank-captioners",
        type=tag_list,
        metavar="KEYS",
        help=r("captioners", "Comma-separated."),
    )
    k.add_argument("--rerank-itm-model", metavar="KEY|DIR", help=r("itm_model"))
    k.add_argument("--rerank-clip-model", help=r("clip_model"))
    k.add_argument("--rerank-clip-pretrained", help=r("clip_pretrained"))


def _given(args: argparse.Namespace, flags: Any) -> dict[str, Any]:
    """The fields of the flags that were given."""
    out = {}
    for flag, name in flags.items():
        value = getattr(args, flag, None)
        if value is not None:
            out[name] = value
    return out


def interrogator_options(args: argparse.Namespace) -> InterrogatorOptions:
    """InterrogatorOptions from the ``--ci-*`` flags (``--ci-bank`` files read here)."""
    from tagger.interrogator.banks import read_terms_file

    data = _given(args, CI_FLAGS)
    banks: dict[str, list[str]] = {}
    for file in getattr(args, "ci_bank", None) or []:
        name = Path(file).stem
        if name in banks:
            raise OptionsError(f"two --ci-bank files are named {name!r}; rename one")
        banks[name] = read_terms_file(file)
    if banks:
        data["extra_banks"] = banks
    unknown = set(data) - set(field_names(InterrogatorOptions))
    assert not unknown, unknown
    return parse(InterrogatorOptions, data)


def captioner_spec(name: str, args: argparse.Namespace) -> Any:
    """The spec of the captioner ``name`` configured by these flags."""
    from tagger.interrogator.captioner import FAMILY, interrogator_spec
    from tagger.registry import resolve_captioner

    dirs = getattr(args, "models_dir", None)
    spec = resolve_captioner(name, dirs)
    ci_given = [f for f in (*CI_FLAGS, *CI_PLACES) if getattr(args, f, None) not in (None, False)]
    if spec.family == FAMILY:
        spec = interrogator_spec(
            spec,
            interrogator_options(args),
            data_dir=getattr(args, "ci_data", None),
            cache_dir=getattr(args, "ci_cache", None),
            download=not getattr(args, "ci_no_download", False),
            models_dirs=dirs or (),
        )
    elif ci_given:
        flags = ", ".join("--" + f.replace("_", "-") for f in ci_given)
        raise OptionsError(
            f"{flags} configure the CLIP Interrogator: caption with clip-interrogator"
        )
    if getattr(args, "rerank", None) is None:
        if any(getattr(args, f, None) is not None for f in RERANK_FLAGS if f != "rerank"):
            raise OptionsError("the --rerank-* flags need --rerank itm or --rerank clip")
        return spec
    from tagger.scoring.rerank import RerankOptions, rerank_spec

    given = _given(args, RERANK_FLAGS)
    if given.get("captioners") and "source" not in given:
        given["source"] = "captioners"
    options = parse(RerankOptions, given)
    others = [resolve_captioner(other, dirs) for other in options.captioners]
    if others and options.source != "captioners":
        raise OptionsError("--rerank-captioners needs --rerank-source captioners")
    return rerank_spec([spec, *others], options, models_dirs=dirs or ())
