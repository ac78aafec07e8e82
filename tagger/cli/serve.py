"""``tagger serve``: the HTTP API, defined with the server (``tagger.api.server``); FastAPI and
uvicorn are imported only when it runs."""

from __future__ import annotations

from typing import Any


def add_command(sub: Any) -> None:
    """Register ``tagger serve``."""
    from tagger.api.server import add_serve_command

    add_serve_command(sub)
