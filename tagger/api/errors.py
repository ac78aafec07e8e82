"""From errors to HTTP replies, in one place.

Every route of the API answers errors as ``{"detail": "what is wrong", "errors": [...]}``: the
core's errors by the table ``STATUS``, invalid requests (missing or mistyped fields, numbers out
of range, malformed JSON) with 422 and one entry per problem (the rejected value is not echoed
back), anything unexpected with a 500 that names no internals (the traceback goes to the
server's log). This is done by the routes' own ``route_class``, so mounting the API on the
webui's app changes nothing for the webui's other routes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine
from typing import Any

from tagger.api.jobs import JobNotFoundError, TooManyJobsError
from tagger.errors import (
    ImageFailedError,
    ImageLoadError,
    ImageTooLargeError,
    MissingDependencyError,
    ModelFilesMissingError,
    ModelLoadError,
    ModelNotFoundError,
    OptionsError,
    PathNotAllowedError,
    ProviderError,
    RunAbortedError,
    TaggerError,
)

log = logging.getLogger("tagger")

#: Status of each error, most specific first (the first matching class wins).
STATUS: tuple[tuple[type[Exception], int], ...] = (
    (ImageTooLargeError, 413),  # over the pixel or size limit
    (ImageLoadError, 422),  # invalid base64, bytes that are not an image
    (ModelNotFoundError, 404),  # unknown model: the message lists the valid ones
    (JobNotFoundError, 404),
    (PathNotAllowedError, 403),  # batch job outside the allowed folders, or jobs turned off
    (OptionsError, 422),  # an option the core cannot use (relative path, missing input, ...)
    (TooManyJobsError, 429),
    (ModelFilesMissingError, 503),  # offline and not on disk: the message says where to put them
    (ProviderError, 503),  # the server's GPU setup cannot run the model
    (RunAbortedError, 503),  # the server's VLM endpoint refused its key or lacks the model
    (MissingDependencyError, 503),
    (ImageFailedError, 422),  # /caption: the VLM gave no caption for this image (the reason)
    (ModelLoadError, 500),  # the server's model files are broken
    (TaggerError, 500),
)

#: The statuses the API's routes may answer with, documented in the OpenAPI schema.
DOCUMENTED = {
    403: "A path outside the allowed folders, or batch jobs turned off (or a VLM endpoint "
    "this server does not have).",
    404: "Unknown model (the message lists the valid ones) or job.",
    413: "The image has more pixels than the limit, or the file is too large.",
    422: "Invalid request: missing or mistyped fields, numbers out of range, malformed JSON, "
    "invalid base64, bytes that are not an image (or, on /caption, a VLM that gave no caption).",
    429: "Too many batch jobs running.",
    503: "The model's files are not on the server and cannot be downloaded, or its device "
    "cannot start (or the server's VLM endpoint refused its key or lacks the model).",
}


def status_of(exc: Exception) -> int:
    """The HTTP status for an exception the routes let through (500 when unknown)."""
    for cls, status in STATUS:
        if isinstance(exc, cls):
            return status
    if type(exc).__name__ == "ValidationError" and "pydantic" in type(exc).__module__:
        return 422
    return 500


def error_body(exc: Exception) -> tuple[int, dict[str, Any]]:
    """Status and JSON body for an exception; unexpected ones are logged with their traceback."""
    status = status_of(exc)
    if status == 422 and not isinstance(exc, TaggerError):  # pydantic, inside a route
        return 422, validation_body(exc.errors())  # type: ignore[attr-defined]
    if status == 500 and not isinstance(exc, TaggerError):
        log.error("tagger API: unexpected error", exc_info=exc)
        return 500, {"detail": "internal error in the tagger API; the server's log has details"}
    return status, {"detail": str(exc)}


def _loc(loc: Any) -> list[str | int]:
    """A validation error's location as JSON values."""
    return [part if isinstance(part, (str, int)) else str(part) for part in loc or ()]


def _message(error: dict[str, Any]) -> str:
    """One validation error as text: ``body.threshold: <problem>``."""
    kind = str(error.get("type", ""))
    if kind in {"json_invalid", "value_error.jsondecode"}:
        ctx = error.get("ctx") or {}
        reason = ctx.get("error") or ctx.get("msg") or error.get("msg", "")
        return f"the request body is not valid JSON: {reason}"
    where = ".".join(str(part) for part in _loc(error.get("loc")))
    return f"{where}: {error.get('msg', 'invalid')}" if where else str(error.get("msg"))


def validation_body(errors: list[dict[str, Any]]) -> dict[str, Any]:
    """The 422 body for pydantic / FastAPI validation errors (input values are not echoed)."""
    items = [
        {"loc": _loc(e.get("loc")), "msg": str(e.get("msg", "")), "type": str(e.get("type", ""))}
        for e in errors
    ]
    detail = "; ".join(_message(e) for e in errors) or "invalid request"
    return {"detail": f"invalid request: {detail}", "errors": items}


def make_route_class() -> type:
    """An ``APIRoute`` whose handler answers every error as described above."""
    from fastapi.exceptions import HTTPException, RequestValidationError
    from fastapi.responses import JSONResponse
    from fastapi.routing import APIRoute
    from starlette.exceptions import HTTPException as StarletteHTTPException

    class TaggerRoute(APIRoute):
        """A route of the tagger API."""

        def get_route_handler(self) -> Callable[[Any], Coroutine[Any, Any, Any]]:
            handler = super().get_route_handler()

            async def guarded(request: Any) -> Any:
                try:
                    return await handler(request)
                except (HTTPException, StarletteHTTPException) as exc:
                    if exc.status_code == 400:  # FastAPI could not parse the body at all
                        body = {
                            "detail": f"invalid request: the request body cannot be read as "
                            f"JSON ({exc.detail})",
                            "errors": [],
                        }
                        return JSONResponse(body, status_code=422)
                    raise  # authentication (the host's dependency) and the like
                except RequestValidationError as exc:
                    return JSONResponse(validation_body(list(exc.errors())), status_code=422)
                except Exception as exc:
                    status, body = error_body(exc)
                    return JSONResponse(body, status_code=status)

            return guarded

    return TaggerRoute
