"""Helpers of the HTTP API tests: apps on tiny models, request images, expected replies.

Expected values are computed here straight from ``WD14Tagger`` and the tiny model's label lists,
not through ``tagger.api``.
"""

from __future__ import annotations

import base64
import contextlib
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tiny import CHARACTER, GENERAL, RATINGS, make_image

from tagger.image import load_image
from tagger.registry import local_spec
from tagger.wd14 import WD14Tagger

HUB_COMMIT = "0123456789abcdef0123456789abcdef01234567"


def make_app(**kwargs: Any) -> Any:
    """A FastAPI app with the tagger API mounted (CPU unless told otherwise)."""
    from fastapi import FastAPI

    from tagger.api import mount

    app = FastAPI()
    kwargs.setdefault("providers", "cpu")
    mount(app, **kwargs)
    return app


def client(app: Any) -> Any:
    """A TestClient that returns 5xx replies instead of raising the server's exceptions."""
    from fastapi.testclient import TestClient

    return TestClient(app, raise_server_exceptions=False)


def b64(path: Path) -> str:
    """A file's bytes as base64 text."""
    return base64.b64encode(path.read_bytes()).decode("ascii")


def sample_image(folder: Path, seed: int = 3, size: tuple[int, int] = (40, 30)) -> Path:
    """A PNG with content that gives varied scores."""
    return make_image(folder / f"sample{seed}.png", size, seed=seed)


def direct_probs(model_dir: Path, image_path: Path) -> dict[str, float]:
    """Every score of the tiny model for an image, by tag name, computed with WD14Tagger."""
    tagger = WD14Tagger(local_spec(model_dir), providers="cpu").load()
    image = load_image(image_path.read_bytes())
    row = tagger.forward(tagger.preprocess(image)[None])[0]
    names = [*RATINGS, *GENERAL, *CHARACTER]  # the order tiny.write_labels uses
    return {name: float(value) for name, value in zip(names, row.tolist(), strict=True)}


def expected_toriato(probs: dict[str, float], threshold: float) -> list[tuple[str, float]]:
    """toriato's caption: ratings, then tags with score >= threshold, best first (stable)."""
    tags = [(name, probs[name]) for name in [*GENERAL, *CHARACTER]]
    kept = sorted((pair for pair in tags if pair[1] >= threshold), key=lambda p: -p[1])
    return [*((name, probs[name]) for name in RATINGS), *kept]


def expected_picobyte_tags(probs: dict[str, float], threshold: float) -> dict[str, float]:
    """picobyte's tags: score > threshold, model order."""
    order = sorted([*GENERAL, *CHARACTER], key=[*RATINGS, *GENERAL, *CHARACTER].index)
    return {name: probs[name] for name in order if probs[name] > threshold}


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width`` x ``height`` (no real pixel data): a pixel bomb."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\x00"))
        + chunk(b"IEND", b"")
    )


def fake_hub_cache(cache: Path, repo_id: str, revision: str, model_dir: Path) -> Path:
    """Lay a model folder's files out as huggingface_hub's cache holds a download of
    ``repo_id`` at ``revision`` (so a registry key loads offline)."""
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    snapshot = repo / "snapshots" / HUB_COMMIT
    snapshot.mkdir(parents=True, exist_ok=True)
    for name in ("model.onnx", "selected_tags.csv"):
        (snapshot / name).write_bytes((model_dir / name).read_bytes())
    (repo / "refs").mkdir(exist_ok=True)
    (repo / "refs" / revision).write_text(HUB_COMMIT)
    return cache


def free_port() -> int:
    """A loopback port nobody listens on now."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def served(app: Any) -> Iterator[str]:
    """Serve ``app`` with a real uvicorn server on loopback in a thread; yields its URL."""
    import threading
    import time

    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        for _ in range(400):
            if server.started:
                break
            time.sleep(0.05)
        assert server.started, "uvicorn did not start"
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(30)


def solid_png(width: int, height: int, mode: str = "RGB") -> bytes:
    """A PNG of one colour: a few kB however many pixels it decodes to."""
    import io

    from PIL import Image

    image = Image.new(mode, (width, height), (200, 30, 90, 128)[: len(mode)] if mode != "L" else 90)
    buffer = io.BytesIO()
    image.save(buffer, "PNG", compress_level=9)
    return buffer.getvalue()
