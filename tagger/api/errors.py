"""From errors to HTTP replies, and the request body limit, in one place.

Every route of the API answers errors as ``{"detail": "what is wrong", "errors": [...]}``: the
core's errors by the table ``STATUS``, invalid requests (missing or mistyped fields, numbers out
of range, malformed JSON) with 422 and one entry per problem (the rejected value is not echoed
back), anything unexpected with a 500 that names no internals (the traceback goes to the
server's log).

The same route class limits the request body before anything reads it: a ``Content-Length``
over the limit is answered 413 at once, without reading a byte of the body; a body sent without
one (chunked) is read chunk by chunk and refused as soon as the running count passes the limit.
Only then do FastAPI and the route's dependencies see the request. The bodies held at once are
bounded too (``BodyGate``): a request waits, before its body is read, until the bytes it
declares (the limit, for a chunked body) fit beside those of the requests being served, so
many large bodies at once cannot exhaust memory either. This is done by the routes' own
``route_class``, so mounting the API on the webui's app changes nothing for the webui's other
routes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

from tagger.api.jobs import JobNotFoundError, TooManyJobsError
from tagger.errors import (
    ImageLoadError,
    ImageTooLargeError,
    MissingDependencyError,
    ModelFilesMissingError,
    ModelLoadError,
    ModelNotFoundError,
    OptionsError,
    PathNotAllowedError,
    ProviderError,
    TaggerError,
)

log = logging.getLogger("tagger")


class BodyTooLargeError(TaggerError):
    """A request body is larger than the server accepts."""


def body_too_large(limit: int, size: int | None = None) -> BodyTooLargeError:
    """The error for a body over ``limit`` bytes (``size``: its declared length, if known)."""
    told = f" ({size:,} bytes)" if size is not None else ""
    return BodyTooLargeError(
        f"the request body{told} is larger than this server accepts ({limit:,} bytes); send a "
        "smaller image (the server's owner sets the limit with tagger serve --max-body-bytes N, "
        "or mount(max_body_bytes=N))"
    )


#: Status of each error, most specific first (the first matching class wins).
STATUS: tuple[tuple[type[Exception], int], ...] = (
    (BodyTooLargeError, 413),  # over the body limit
    (ImageTooLargeError, 413),  # over the pixel or size limit
    (ImageLoadError, 422),  # invalid base64, bytes that are not an image
    (ModelNotFoundError, 404),  # unknown model: the message lists the valid ones
    (JobNotFoundError, 404),
    (PathNotAllowedError, 403),  # batch job outside the allowed folders, or jobs turned off
    (OptionsError, 422),  # an option the core cannot use (relative path, missing input, ...)
    (TooManyJobsError, 429),
    (ModelFilesMissingError, 503),  # offline and not on disk: the message says where to put them
    (ProviderError, 503),  # the server's GPU setup cannot run the model
    (MissingDependencyError, 503),
    (ModelLoadError, 503),  # the server's model files do not load: the message says why
    (TaggerError, 500),
)

#: The statuses the API's routes may answer with, documented in the OpenAPI schema.
DOCUMENTED = {
    403: "A path outside the allowed folders, or batch jobs turned off.",
    404: "Unknown model (the message lists the valid ones) or job.",
    413: "The request body is larger than the server's limit, or the image has more pixels "
    "than its limit (the message names the limit).",
    422: "Invalid request: missing or mistyped fields, numbers out of range, malformed JSON, "
    "invalid base64, bytes that are not an image.",
    429: "Too many batch jobs running.",
    503: "The model's files are not on the server and cannot be downloaded, do not load (a "
    "selected_tags.csv that does not match its model.onnx...), or its device cannot start; "
    "the message says which and how to fix it.",
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


def _declared_length(headers: Any) -> int | None:
    """The request's ``Content-Length`` as a number, or None when absent or unreadable."""
    value = headers.get("content-length")
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        return None


def body_reservation(method: str, headers: Any, limit: int) -> int:
    """The bytes a request's body may take, known before reading it: its ``Content-Length``,
    else ``limit`` for a chunked body, else 0 (no body).

    >>> body_reservation("POST", {"content-length": "1200"}, 10_000)
    1200
    >>> body_reservation("POST", {"transfer-encoding": "chunked"}, 10_000)
    10000
    >>> body_reservation("GET", {}, 10_000)
    0
    """
    declared = _declared_length(headers)
    if declared is not None:
        return max(0, declared)
    return limit if "transfer-encoding" in headers else 0


class BodyGate:
    """Bytes of request bodies held at once, at most ``capacity``: a request waits (without
    blocking the event loop or holding a thread) until its reservation fits. Works on any
    event loop (a lock and short sleeps, no loop-bound primitives)."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._held = 0
        self._lock = threading.Lock()
        #: The most bytes held at once since the gate was made (for tests and benchmarks).
        self.peak = 0

    @property
    def held(self) -> int:
        """Bytes reserved now."""
        with self._lock:
            return self._held

    def _take(self, amount: int) -> bool:
        with self._lock:
            if self._held and self._held + amount > self.capacity:
                return False
            self._held += amount
            self.peak = max(self.peak, self._held)
            return True

    @contextlib.asynccontextmanager
    async def hold(self, amount: int) -> AsyncIterator[None]:
        """Reserve ``amount`` bytes (at most the capacity) while the block runs."""
        amount = min(amount, self.capacity)
        if amount <= 0:
            yield
            return
        while not self._take(amount):
            await asyncio.sleep(0.01)
        try:
            yield
        finally:
            with self._lock:
                self._held -= amount


async def read_limited_body(request: Any, limit: int) -> None:
    """Read a request's body within ``limit`` bytes, or raise ``BodyTooLargeError`` before
    reading more than that: at once for a declared length over the limit, else as soon as the
    streamed chunks add up to more. The body is kept on the request, where FastAPI reads it."""
    declared = _declared_length(request.headers)
    if declared is not None and declared > limit:
        raise body_too_large(limit, declared)
    chunks: list[bytes] = []
    total = 0
    async for chunk in request.stream():
        total += len(chunk)
        if total > limit:
            raise body_too_large(limit)
        chunks.append(chunk)
    request._body = b"".join(chunks)  # Starlette's cache of the body, read by request.body()


def make_route_class(max_body_bytes: int | None = None, gate: BodyGate | None = None) -> type:
    """An ``APIRoute`` whose handler limits the body (``max_body_bytes``; None: no limit) and
    the bodies held at once (``gate``), and answers every error as described above."""
    from fastapi.exceptions import HTTPException, RequestValidationError
    from fastapi.responses import JSONResponse
    from fastapi.routing import APIRoute
    from starlette.exceptions import HTTPException as StarletteHTTPException
    from starlette.requests import ClientDisconnect

    class TaggerRoute(APIRoute):
        """A route of the tagger API."""

        def get_route_handler(self) -> Callable[[Any], Coroutine[Any, Any, Any]]:
            handler = super().get_route_handler()

            async def guarded(request: Any) -> Any:
                try:
                    if max_body_bytes is None:
                        return await handler(request)
                    amount = body_reservation(request.method, request.headers, max_body_bytes)
                    if amount > max_body_bytes:
                        raise body_too_large(max_body_bytes, amount)
                    async with gate.hold(amount) if gate else contextlib.nullcontext():
                        await read_limited_body(request, max_body_bytes)
                        return await handler(request)
                except BodyTooLargeError as exc:
                    # The rest of the body is never read: the server closes the connection.
                    return JSONResponse(
                        {"detail": str(exc)}, status_code=413, headers={"Connection": "close"}
                    )
                except ClientDisconnect:  # nobody is left to read a reply
                    return JSONResponse({"detail": "the client closed the connection"}, 400)
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
