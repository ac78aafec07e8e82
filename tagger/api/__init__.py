"""The HTTP API: ``/tagger/v1`` routes on a FastAPI app (the webui's, or ``tagger serve``'s).

``mount(app, ...)`` adds the routes; it is the only entry point the webui and the standalone
server call. FastAPI is imported only when ``mount`` runs, so ``import tagger.api`` stays cheap
and works without the ``api`` extra installed.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Sequence
from typing import Any

log = logging.getLogger("tagger")

__all__ = ["STATE_ATTRIBUTE", "mount"]

#: ``app.state`` attribute holding the mounted API (its service and jobs); also the marker
#: that keeps a second ``mount`` on the same app from registering the routes twice.
STATE_ATTRIBUTE = "tagger_api"


def mount(
    app: Any,
    *,
    lock: Any = None,
    dependencies: Sequence[Any] = (),
    models_dirs: Iterable[str | os.PathLike[str]] = (),
    hf_cache: str | os.PathLike[str] | None = None,
    providers: str | list[str] | None = "auto",
    device_id: int = 0,
    allowed_dirs: Iterable[str | os.PathLike[str]] = (),
    max_pixels: int | None = None,
    max_body_bytes: int | None = None,
    max_decodes: int | None = None,
) -> None:
    """Add the tagger routes under ``/tagger/v1`` to a FastAPI ``app``.

    - ``lock``: a context manager (the webui's ``queue_lock``) held while a model loads or runs
      (for batch jobs: per batch, so other work can interleave).
    - ``dependencies``: FastAPI dependencies added to every route (``Depends(...)`` objects or
      plain callables), e.g. the webui's ``--api-auth`` check.
    - ``models_dirs``: folders of local model folders (empty: ``$TAGGER_MODELS_DIR`` and the
      project's ``models/``); ``hf_cache``: Hugging Face cache folder for registry models.
    - ``providers`` / ``device_id``: where models run (``"auto"``, ``"cpu"``, ``"cuda"``, ...).
    - ``allowed_dirs``: the only server folders batch jobs may read and write; empty refuses
      every batch job (403).
    - ``max_pixels``: the largest image accepted, in pixels (None: 4096 x 4096 = 16,777,216);
      larger ones get 413 before they are decoded.
    - ``max_body_bytes``: the largest request body (None: the largest uncompressed 8-bit RGB
      image ``max_pixels`` admits, in base64, plus 1 MiB: 65 MiB by default); larger ones get
      413 before the body is read.
    - ``max_decodes``: how many images are decoded at once, each in one of that many threads
      (None: as many images of ``max_pixels`` as fit in 1 GiB, at most one per core).

    The OpenAI-compatible endpoints VLM requests may use come from ``$TAGGER_VLM_ENDPOINTS``
    (';'-separated ``openai`` or ``NAME=URL[,KEY_VARIABLE]``), or from
    ``tagger.api.vlm_routes.configure_endpoints(app, specs)`` after mounting.

    Calling it again on the same app does nothing (the routes are registered once).
    """
    if getattr(app.state, STATE_ATTRIBUTE, None) is not None:
        log.debug("tagger API already mounted on this app")
        return
    from tagger.api.interrogator import include as include_interrogator_routes
    from tagger.api.jobs import JobManager
    from tagger.api.paths import AllowList
    from tagger.api.routes import Api, build_router
    from tagger.api.service import HTTP_MAX_PIXELS, Limits, TaggerService

    limits = Limits(
        max_pixels=HTTP_MAX_PIXELS if max_pixels is None else max_pixels,
        max_body_bytes=max_body_bytes or 0,
        max_decodes=max_decodes or 0,
    )
    service = TaggerService(
        lock=lock,
        models_dirs=models_dirs,
        hf_cache=hf_cache,
        providers=providers,
        device_id=device_id,
        limits=limits,
    )
    api = Api(service=service, jobs=JobManager(service, AllowList(allowed_dirs)))
    app.include_router(build_router(api, dependencies))
    from tagger.api.vlm_routes import build_vlm_router, configure_endpoints

    configure_endpoints(service, None)
    app.include_router(build_vlm_router(api, dependencies))
    include_interrogator_routes(app, api, dependencies)
    app.openapi_schema = None  # regenerate the schema with the new routes
    setattr(app.state, STATE_ATTRIBUTE, api)
    log.info(
        "tagger API mounted at /tagger/v1 (images up to %s pixels, bodies up to %s bytes, "
        "%d full-size decodes at once; batch jobs %s)",
        f"{limits.max_pixels:,}",
        f"{limits.max_body_bytes:,}",
        limits.max_decodes,
        "allowed in " + ", ".join(str(r) for r in api.jobs.allow.roots)
        if api.jobs.allow.enabled
        else "turned off: no allowed folders",
    )
