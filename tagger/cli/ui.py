"""``tagger ui``: the Tagger tab as a standalone Gradio app (needs the ``ui`` extra)."""

from __future__ import annotations

import argparse
from typing import Any

from tagger.cli import EXIT_OK
from tagger.cli.common import add_model_options, non_negative


def add_command(sub: Any) -> None:
    """Register ``tagger ui``."""
    ui = sub.add_parser(
        "ui",
        help="serve the Tagger tab as a web page (pip install 'tagger[ui]')",
        description="Serve the webui extension's Tagger tab as a standalone Gradio app.",
    )
    ui.add_argument(
        "--host",
        default="127.0.0.1",
        help="Address to listen on: 127.0.0.1 is this machine only, 0.0.0.0 all "
        "(default: 127.0.0.1).",
    )
    ui.add_argument("--port", type=non_negative, default=7861, help="Port (default: 7861).")
    ui.add_argument("--presets-dir", metavar="DIR", help="Where presets are saved.")
    add_model_options(ui)
    ui.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Run ``tagger ui``."""
    import importlib.util
    from pathlib import Path

    from tagger.errors import MissingDependencyError
    from tagger.registry import default_models_dirs

    if importlib.util.find_spec("gradio") is None:
        raise MissingDependencyError("tagger ui needs Gradio: pip install 'tagger[ui]'")
    from tagger.ui.app import launch
    from tagger.ui.host import RuntimeSettings

    dirs = [Path(d) for d in args.models_dir] if args.models_dir else default_models_dirs()
    settings = RuntimeSettings(
        default_model=args.model,
        models_dirs=dirs,
        hf_cache=args.hf_cache,
        providers=args.device,
        device_id=args.device_id,
        precision="fp16" if args.fp16 else "fp32",
    )
    launch(settings, host=args.host, port=args.port, presets_dir=args.presets_dir)
    return EXIT_OK
