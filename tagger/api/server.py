"""``tagger serve``: the HTTP API on its own, served by uvicorn (loopback by default)."""

from __future__ import annotations

import argparse
import logging
import os
from collections.abc import Iterable
from typing import Any

from tagger import __version__
from tagger.errors import MissingDependencyError

log = logging.getLogger("tagger")

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000


def create_app(
    *,
    models_dirs: Iterable[str | os.PathLike[str]] = (),
    hf_cache: str | os.PathLike[str] | None = None,
    providers: str = "auto",
    device_id: int = 0,
    allowed_dirs: Iterable[str | os.PathLike[str]] = (),
    max_pixels: int | None = None,
    max_body_bytes: int | None = None,
    max_decodes: int | None = None,
) -> Any:
    """A FastAPI app with the tagger API mounted (no lock: requests run side by side); the
    limits are ``mount``'s."""
    try:
        from fastapi import FastAPI
    except ImportError as exc:
        raise MissingDependencyError(
            "the HTTP API needs FastAPI and uvicorn: pip install 'tagger[api]'"
        ) from exc
    from tagger.api import mount

    app = FastAPI(
        title="tagger",
        version=__version__,
        description="Tag images with WD14 taggers. Routes under /tagger/v1; docs at /docs.",
    )
    mount(
        app,
        models_dirs=models_dirs,
        hf_cache=hf_cache,
        providers=providers,
        device_id=device_id,
        allowed_dirs=allowed_dirs,
        max_pixels=max_pixels,
        max_body_bytes=max_body_bytes,
        max_decodes=max_decodes,
    )
    return app


def cmd_serve(args: argparse.Namespace) -> int:
    """Run ``tagger serve`` until interrupted."""
    from tagger.runtime import parse_providers

    parse_providers(args.device)  # an unknown device name stops here, before serving
    app = create_app(
        models_dirs=args.models_dir or (),
        hf_cache=args.hf_cache,
        providers=args.device,
        device_id=args.device_id,
        allowed_dirs=args.allow_dir or (),
        max_pixels=args.max_pixels,
        max_body_bytes=args.max_body_bytes,
        max_decodes=args.max_decodes,
    )
    try:
        import uvicorn
    except ImportError as exc:
        raise MissingDependencyError(
            "tagger serve needs uvicorn: pip install 'tagger[api]'"
        ) from exc
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        log.warning(
            "serving on %s: other machines can reach this API%s",
            args.host,
            " and its batch jobs" if args.allow_dir else "",
        )
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level)
    return 0


def _positive(text: str) -> int:
    """A whole number of at least 1 (argparse type)."""
    try:
        value = int(text.replace("_", "").replace(",", ""))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be at least 1")
    return value


def add_serve_command(sub: Any) -> None:
    """Add ``tagger serve`` to the command line's sub-commands."""
    serve = sub.add_parser(
        "serve",
        help="serve the HTTP API (/tagger/v1) with uvicorn; needs the [api] extra",
        description=(
            "Serve the HTTP API: the older tagger extensions' /tagger/v1/interrogate routes and "
            "the full routes beside them. Binds to the loopback address unless --host is given."
        ),
    )
    serve.add_argument("--host", default=DEFAULT_HOST, help=f"Address (default {DEFAULT_HOST}).")
    serve.add_argument("--port", type=int, default=DEFAULT_PORT, help="Port (default 8000).")
    serve.add_argument(
        "--models-dir",
        action="append",
        metavar="DIR",
        help="Folder of local model folders (repeatable; default: $TAGGER_MODELS_DIR and models/).",
    )
    serve.add_argument(
        "--allow-dir",
        action="append",
        metavar="DIR",
        help="A folder batch jobs may read and write (repeatable; none: batch jobs refused).",
    )
    serve.add_argument("--hf-cache", metavar="DIR", help="Hugging Face cache folder.")
    serve.add_argument(
        "--device",
        default="auto",
        help="Execution providers: auto, cpu, cuda, rocm, directml, coreml, openvino, tensorrt.",
    )
    serve.add_argument("--device-id", type=int, default=0, help="GPU index (default 0).")
    limits = serve.add_argument_group("limits (memory under hostile input)")
    limits.add_argument(
        "--max-pixels",
        type=_positive,
        metavar="N",
        help="Largest image accepted, in pixels (default 16777216 = 4096x4096); larger ones "
        "get 413 before they are decoded.",
    )
    limits.add_argument(
        "--max-body-bytes",
        type=_positive,
        metavar="N",
        help="Largest request body, in bytes (default: 4 x --max-pixels + 1 MiB, the largest "
        "uncompressed RGB image in base64: 68157440); larger ones get 413 before being read.",
    )
    limits.add_argument(
        "--max-decodes",
        type=_positive,
        metavar="N",
        help="Images decoded at once, in that many threads (default: as many images of "
        "--max-pixels as fit in 1 GiB, at most one per core: 2 for the default limit).",
    )
    serve.add_argument(
        "--log-level",
        default="info",
        choices=["critical", "error", "warning", "info", "debug"],
        help="uvicorn's log level.",
    )
    serve.set_defaults(handler=cmd_serve)
