"""Mount the HTTP API on the webui's FastAPI app (``on_app_started``) when the webui serves its
own API: with ``--api``, or ``--nowebui`` (the API alone).

The webui calls ``on_app_started`` in every start, but creates its own API only with one of those
flags (``webui.py``); the tagger's routes follow the same rule, so a webui started without them
(``--listen --gradio-auth``, say) serves no tagger route: ``--gradio-auth`` covers only Gradio's
own routes, never routes added to the app. The routes hold the webui's ``queue_lock`` while a
model runs and, with ``--api-auth user:password[,user2:password2]``, require the same HTTP Basic
credentials as the webui's own API.
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


def served_to_network() -> bool:
    """True when the webui's server may answer other machines: ``--listen``, ``--share``,
    ``--ngrok`` or ``--server-name`` (the host's ``webui_is_non_local``), or ``--nowebui`` without
    ``--server-name`` (its API server then binds every interface)."""
    if compat.flag("webui_is_non_local", False):
        return True
    return bool(compat.flag("nowebui", False)) and not compat.flag("server_name")


def on_app_started(demo: Any, app: Any) -> bool:
    """``script_callbacks.on_app_started``: mount the API when the webui serves its own (demo is
    None with ``--nowebui``); True when mounted."""
    if not compat.api_enabled():
        log.info("tagger: the HTTP API is not served: start the webui with --api to serve it")
        return False
    if not parse_api_auth(compat.flag("api_auth")) and served_to_network():
        log.warning(
            "tagger: the HTTP API is served to the network without credentials: "
            "start the webui with --api-auth user:password to require them"
        )
    return mount_api(app)
