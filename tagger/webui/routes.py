"""Mount the HTTP API on the webui's FastAPI app (``on_app_started``; also with ``--nowebui``).

The routes hold the webui's ``queue_lock`` while a model runs and, when the webui was started with
``--api-auth user:password[,user2:password2]``, require the same HTTP Basic credentials as the
webui's own API.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from tagger.webui import compat, settings

log = logging.getLogger("tagger")


def parse_api_auth(text: str | None) -> dict[str, str]:
    """``user:password,user2:password2`` (the webui's ``--api-auth``) as a dict.

    >>> parse_api_auth("a:b,c:d:e")
    {'a': 'b', 'c': 'd:e'}
    """
    credentials: dict[str, str] = {}
    for item in (text or "").split(","):
        if ":" in item:
            user, password = item.strip().split(":", 1)
            credentials[user] = password
    return credentials


def auth_dependencies(api_auth: str | None) -> tuple[Any, ...]:
    """FastAPI dependencies checking the ``--api-auth`` credentials, as the webui's API does
    (none when ``--api-auth`` is not set)."""
    credentials = parse_api_auth(api_auth)
    if not credentials:
        return ()
    from tagger.api.auth import basic_auth_dependencies

    return basic_auth_dependencies(credentials)


def mount_api(app: Any, mount: Callable[..., Any] | None = None) -> bool:
    """Mount ``tagger.api`` on ``app``; False (with a warning) when it is not available."""
    if mount is None:
        try:
            from tagger.api import mount
        except ImportError as exc:
            log.warning("tagger: the HTTP API is not available (%s); the tab still works", exc)
            return False
    runtime = settings.runtime_settings()
    mount(
        app,
        lock=compat.queue_lock(),
        dependencies=auth_dependencies(getattr(compat.cmd_opts(), "api_auth", None)),
        models_dirs=tuple(runtime.models_dirs),
        hf_cache=runtime.hf_cache,
        providers=runtime.providers,
        device_id=runtime.device_id,
        allowed_dirs=tuple(runtime.allowed_dirs),
    )
    return True


def on_app_started(demo: Any, app: Any) -> None:
    """``script_callbacks.on_app_started``: mount the API (demo is None with ``--nowebui``)."""
    mount_api(app)
