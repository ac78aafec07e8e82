"""The ``--vlm-*`` flags of ``tagger caption`` and ``tagger tag`` (``tagger.vlm``), the
``VlmOptions`` built from them, and ``--dry-run``.

Every flag's ``dest`` is ``vlm_`` + its ``VlmOptions`` field, so the decoding flags of BLIP and
CLIP-prefix (``--prompt``, ``--seed``...) keep their own. There is no flag for the API key:
``--vlm-key-env`` names the environment variable it is read from.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from tagger.cli.common import describe, non_negative
from tagger.errors import OptionsError
from tagger.options import field_names, parse
from tagger.vlm.options import VlmOptions

PREFIX = "vlm_"
#: How many requests ``--dry-run`` shows when no number is given.
DRY_RUN_DEFAULT = 3


def positive_float(text: str) -> float:
    """argparse type: a number >= 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{value} is negative")
    return value


def add_vlm_options(parser: argparse.ArgumentParser) -> None:
    """The VLM flags (dest ``vlm_<field>``) and ``--dry-run``."""
    d = lambda name, note="": describe(VlmOptions, name, note)  # noqa: E731
    g = parser.add_argument_group(
        "vision-language model (VLM) captions: --model/--captioner vlm-api (any OpenAI-"
        "compatible endpoint; implied by --vlm-url), florence2-*, joycaption-beta-one, qwen2*-vl-*"
    )
    g.add_argument("--vlm-url", metavar="URL|NAME", dest="vlm_url", help=d("url"))
    g.add_argument("--vlm-model", metavar="NAME", dest="vlm_model", help=d("model"))
    g.add_argument("--vlm-key-env", metavar="VAR", dest="vlm_key_env", help=d("key_env"))
    g.add_argument("--vlm-template", metavar="NAME", dest="vlm_template", help=d("template"))
    g.add_argument(
        "--vlm-template-file",
        metavar="FILE",
        dest="vlm_template_file",
        help="Read your own template from FILE (UTF-8; a first line [system] starts a system "
        "prompt that ends at a line [user]).",
    )
    g.add_argument("--vlm-prompt", metavar="TEXT", dest="vlm_prompt", help=d("prompt"))
    g.add_argument(
        "--vlm-system", metavar="TEXT", dest="vlm_system_prompt", help=d("system_prompt")
    )
    g.add_argument("--vlm-reply", choices=["prose", "tags"], dest="vlm_reply", help=d("reply"))
    g.add_argument("--vlm-trigger", metavar="WORD", dest="vlm_trigger", help=d("trigger"))
    g.add_argument(
        "--vlm-existing-extension",
        metavar="EXT",
        dest="vlm_existing_extension",
        help=d("existing_extension"),
    )
    g.add_argument("--vlm-task", metavar="TOKEN", dest="vlm_task", help=d("task"))
    g.add_argument("--vlm-max-tokens", type=int, dest="vlm_max_tokens", help=d("max_tokens"))
    g.add_argument(
        "--vlm-token-field",
        choices=["max_tokens", "max_completion_tokens"],
        dest="vlm_token_field",
        help=d("token_field"),
    )
    g.add_argument("--vlm-temperature", type=float, dest="vlm_temperature", help=d("temperature"))
    g.add_argument("--vlm-top-p", type=float, dest="vlm_top_p", help=d("top_p"))
    g.add_argument("--vlm-seed", type=int, dest="vlm_seed", help=d("seed"))
    g.add_argument("--concurrency", type=int, dest="vlm_concurrency", help=d("concurrency"))
    g.add_argument("--rpm", type=positive_float, dest="vlm_rpm", help=d("rpm"))
    g.add_argument("--tpm", type=positive_float, dest="vlm_tpm", help=d("tpm"))
    g.add_argument("--vlm-retries", type=non_negative, dest="vlm_retries", help=d("retries"))
    g.add_argument("--vlm-timeout", type=float, dest="vlm_timeout", help=d("timeout"))
    g.add_argument(
        "--vlm-image-side", type=non_negative, dest="vlm_image_side", help=d("image_side")
    )
    g.add_argument(
        "--vlm-image-format",
        choices=["jpeg", "png", "webp"],
        dest="vlm_image_format",
        help=d("image_format"),
    )
    g.add_argument(
        "--vlm-detail", choices=["auto", "low", "high"], dest="vlm_detail", help=d("detail")
    )
    g.add_argument(
        "--price-input", type=positive_float, dest="vlm_price_input", help=d("price_input")
    )
    g.add_argument(
        "--price-output", type=positive_float, dest="vlm_price_output", help=d("price_output")
    )
    g.add_argument(
        "--vlm-any-language",
        dest="vlm_check_language",
        action="store_false",
        default=None,
        help="Keep replies in any script (by default a reply mostly outside the Latin script "
        "fails its image).",
    )
    g.add_argument(
        "--vlm-dtype",
        choices=["auto", "float16", "bfloat16", "float32"],
        dest="vlm_dtype",
        help=d("dtype"),
    )
    g.add_argument(
        "--vlm-guide",
        metavar="KEY|DIR",
        dest="vlm_guide",
        help="A BLIP / CLIP-prefix captioner whose caption fills the prompt's {caption}.",
    )
    g.add_argument(
        "--dry-run",
        nargs="?",
        type=non_negative,
        const=DRY_RUN_DEFAULT,
        metavar="N",
        help=f"Print the first N requests ({DRY_RUN_DEFAULT} when N is left out) without "
        "sending them or writing anything.",
    )


def vlm_options_from_args(args: argparse.Namespace) -> VlmOptions:
    """``VlmOptions`` from the parsed flags (flags left out keep the defaults)."""
    from tagger.vlm.templates import read_template_file

    values = vars(args)
    data: dict[str, Any] = {
        name: values[PREFIX + name]
        for name in field_names(VlmOptions)
        if values.get(PREFIX + name) is not None
    }
    template_file = values.get("vlm_template_file")
    if template_file:
        if data.get("prompt"):
            raise OptionsError("give --vlm-prompt or --vlm-template-file, not both")
        system, user = read_template_file(template_file)
        data["prompt"] = user
        if system is not None and "system_prompt" not in data:
            data["system_prompt"] = system
    return parse(VlmOptions, data)


def captioner_name(name: str | None, args: argparse.Namespace, default: str | None) -> str | None:
    """The captioner to run: ``name``, or ``vlm-api`` when ``--vlm-url`` is given and ``name``
    is left at ``default``."""
    from tagger.registry import VLM_API_KEY

    if getattr(args, "vlm_url", None) and (name is None or name == default):
        return VLM_API_KEY
    return name


def build_captioner(
    name: str, args: argparse.Namespace, *, device: str | None, revision: str | None = None
) -> Any:
    """The (not yet loaded) captioner ``name`` with the VLM options and guide of the flags."""
    from tagger.captioners import get_captioner
    from tagger.cli.captioner_flags import captioner_spec
    from tagger.vlm import is_vlm_family

    spec = captioner_spec(name, args)  # the CLIP Interrogator's and --rerank's flags too
    common: dict[str, Any] = {
        "device": device,
        "device_id": args.device_id,
        "half": args.half is not False,
        "cache_dir": args.hf_cache,
        "models_dirs": args.models_dir,
    }
    if not is_vlm_family(spec.family):
        if getattr(args, "vlm_guide", None):
            raise OptionsError(f"--vlm-guide applies to VLM captioners, not {spec.key}")
        return get_captioner(spec, revision=revision, load=False, **common)
    guide = None
    if args.vlm_guide:
        guide = get_captioner(args.vlm_guide, load=False, **common)
        if is_vlm_family(guide.spec.family):
            raise OptionsError("--vlm-guide takes a BLIP or CLIP-prefix captioner, not a VLM")
    return get_captioner(
        spec, revision=revision, load=False, vlm=vlm_options_from_args(args), guide=guide, **common
    )


def print_dry_run(previews: list[tuple[Any, Any]]) -> None:
    """Print ``--dry-run``'s requests on stdout."""
    import json

    out = sys.stdout
    print(f"dry run: {len(previews)} request(s); nothing is sent and nothing is written", file=out)
    for path, preview in previews:
        print(f"\n--- {path} ({preview.image})", file=out)
        if preview.system:
            print(f"[system]\n{preview.system}", file=out)
        print(f"[user]\n{preview.user}", file=out)
        print(f"[request]\n{json.dumps(preview.request, indent=2, ensure_ascii=False)}", file=out)


def run_dry(
    args: argparse.Namespace, model: Any, tag_options: Any, batch_options: Any, output: Any
) -> int:
    """``--dry-run``: plan the run, print its first requests, send and write nothing."""
    from tagger.batch import BatchRun
    from tagger.cli import EXIT_OK
    from tagger.vlm.dryrun import preview_run

    run = BatchRun(args.paths, model, tag_options, batch_options, output_options=output)
    previews = preview_run(run, model.build(), args.dry_run)
    if not previews:
        print("dry run: no image needs a request (all done, or none found)", file=sys.stdout)
        return EXIT_OK
    print_dry_run(previews)
    return EXIT_OK


def vlm_config(args: argparse.Namespace, spec: Any, device: str | None) -> dict[str, Any]:
    """``CaptionerConfig`` fields for ``--engine ray``: the VLM options and guide (none for
    other captioners)."""
    from tagger.options import dump
    from tagger.vlm import is_vlm_family

    if not is_vlm_family(spec.family):
        return {}
    config: dict[str, Any] = {"vlm": dump(vlm_options_from_args(args))}
    if getattr(args, "vlm_guide", None):
        from tagger.ray_engine import CaptionerConfig
        from tagger.registry import resolve_captioner

        config["guide"] = CaptionerConfig(
            resolve_captioner(args.vlm_guide, args.models_dir),
            device=device,
            device_id=args.device_id,
            half=args.half is not False,
            cache_dir=args.hf_cache,
        )
    return config
