"""HTTP Basic authentication for the routes (the webui's ``--api-auth``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def basic_auth_dependencies(credentials: Mapping[str, str]) -> tuple[Any, ...]:
    """FastAPI dependencies that require one of ``credentials`` (user -> password) through HTTP
    Basic, as the webui's own API does; none when ``credentials`` is empty."""
    if not credentials:
        return ()
    from secrets import compare_digest

    from fastapi import Depends, HTTPException
    from fastapi.security import HTTPBasic

    allowed = dict(credentials)

    # No annotation on ``creds``: string annotations (``from __future__``) of a local name are
    # not resolvable by FastAPI 0.94; Depends alone is enough.
    def check(creds=Depends(HTTPBasic())):  # noqa: B008
        expected = allowed.get(creds.username)
        if expected is not None and compare_digest(creds.password, expected):
            return True
        raise HTTPException(
            status_code=401,
            detail="Incorrect username or password",
            headers={"WWW-Authenticate": "Basic"},
        )

    return (Depends(check),)
