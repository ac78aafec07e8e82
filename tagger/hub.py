"""Model files on disk: local folders as they are, registry models through huggingface_hub.

Downloads go to the Hugging Face cache, or to a cache folder the user chose (``--hf-cache``,
``TAGGER_HF_CACHE``). Files already in the cache are always used without the network. A file
that is missing is downloaded only when downloads can happen: not with ``HF_HUB_OFFLINE=1``, and
not when the Hub (``HF_ENDPOINT``, by default https://huggingface.co) does not answer one quick
request (``TAGGER_HUB_TIMEOUT`` seconds, 3 by default). Otherwise it fails at once with a
message that names the files and the folder to put them in, instead of waiting through
huggingface_hub's retries (about 23 s for a refused connection, minutes when nothing answers).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path

from tagger.errors import MissingDependencyError, ModelFilesMissingError
from tagger.registry import ModelSpec

log = logging.getLogger("tagger")

DEFAULT_ENDPOINT = "https://huggingface.co"
#: Seconds the Hub gets to answer the probe (connection and the first reply), unless
#: ``TAGGER_HUB_TIMEOUT`` says otherwise.
DEFAULT_HUB_TIMEOUT = 3.0
#: Seconds a probe's answer is reused (a server probes at most this often).
PROBE_TTL = 60.0

_probe_lock = threading.Lock()
_probes: dict[tuple[str, float], tuple[float, str | None]] = {}
_probe_locks: dict[tuple[str, float], threading.Lock] = {}


def hf_cache_dir(cache_dir: str | os.PathLike[str] | None = None) -> Path | None:
    """Return the cache folder to use: the argument, ``$TAGGER_HF_CACHE``, or None (HF's own)."""
    chosen = cache_dir or os.environ.get("TAGGER_HF_CACHE")
    return Path(chosen).expanduser() if chosen else None


def tagger_cache_dir(name: str) -> Path:
    """Folder ``name`` of tagger's own cache: ``$TAGGER_CACHE_DIR/<name>``, else
    ``$XDG_CACHE_HOME/tagger/<name>`` or ``~/.cache/tagger/<name>`` (not created here)."""
    root = os.environ.get("TAGGER_CACHE_DIR")
    if root:
        return Path(root).expanduser() / name
    base = os.environ.get("XDG_CACHE_HOME") or Path("~/.cache").expanduser()
    return Path(base) / "tagger" / name


def offline_env() -> bool:
    """True when huggingface_hub is told not to use the network (``HF_HUB_OFFLINE``)."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}


def hub_endpoint() -> str:
    """The Hub's address: ``$HF_ENDPOINT`` (a mirror, a private Hub), else huggingface.co."""
    return (os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).strip().rstrip("/")


def hub_timeout() -> float:
    """Seconds the Hub gets to answer the probe: ``$TAGGER_HUB_TIMEOUT``, else 3.

    An unreadable or non-positive value falls back to the default (with a warning).
    """
    text = os.environ.get("TAGGER_HUB_TIMEOUT", "").strip()
    if not text:
        return DEFAULT_HUB_TIMEOUT
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not value > 0:
        log.warning(
            "TAGGER_HUB_TIMEOUT=%r is not a number of seconds above 0; using %s",
            text,
            DEFAULT_HUB_TIMEOUT,
        )
        return DEFAULT_HUB_TIMEOUT
    return value


def _head(url: str, timeout: float) -> str | None:
    """Send one HEAD request; None when any HTTP reply came back, else why not.

    Redirects are not followed (a redirect is an answer), and the proxy settings of the
    environment (``HTTPS_PROXY``...) are used, as huggingface_hub uses them.
    """
    import urllib.error
    import urllib.request

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args: object, **kwargs: object) -> None:
            return None

    opener = urllib.request.build_opener(NoRedirect())
    request = urllib.request.Request(url, method="HEAD", headers={"User-Agent": "tagger"})
    try:
        with opener.open(request, timeout=timeout):
            return None
    except urllib.error.HTTPError:  # 3xx, 4xx, 5xx: the Hub is there
        return None
    except urllib.error.URLError as exc:
        reason = exc.reason
        return str(getattr(reason, "strerror", None) or reason)
    except TimeoutError:
        return f"no answer within {timeout:g} s"
    except OSError as exc:
        return str(exc.strerror or exc) or type(exc).__name__
    except Exception as exc:  # a malformed HF_ENDPOINT, an unexpected reply
        return f"{type(exc).__name__}: {exc}"


def probe_hub(endpoint: str, timeout: float) -> str | None:
    """Ask ``endpoint`` for one reply; None when it answers within ``timeout`` seconds, else
    why it cannot be reached. Never takes much longer than ``timeout``, even when the name
    lookup hangs (the request runs in a thread that is left behind)."""
    outcome: list[str | None] = []
    worker = threading.Thread(
        target=lambda: outcome.append(_head(endpoint + "/", timeout)),
        name="tagger-hub-probe",
        daemon=True,
    )
    worker.start()
    worker.join(timeout + 0.5)
    if not outcome:
        return f"no answer within {timeout:g} s"
    reason = outcome[0]
    if reason is not None and "timed out" in reason.lower():
        return f"no answer within {timeout:g} s"
    return reason


def hub_unreachable() -> str | None:
    """Why the Hub cannot be reached now (``"the Hub at URL cannot be reached: reason"``), or
    None when it answers. One probe per endpoint and timeout, reused for ``PROBE_TTL``
    seconds; concurrent callers wait for the same probe."""
    key = (hub_endpoint(), hub_timeout())
    with _probe_lock:
        lock = _probe_locks.setdefault(key, threading.Lock())
    with lock:
        known = _probes.get(key)
        if known is not None and time.monotonic() - known[0] < PROBE_TTL:
            return known[1]
        reason = probe_hub(*key)
        message = None
        if reason is not None:
            message = (
                f"the Hub at {key[0]} cannot be reached: {reason}; set HF_HUB_OFFLINE=1 to "
                f"skip this check, or TAGGER_HUB_TIMEOUT to wait longer than {key[1]:g} s"
            )
            log.debug("%s", message)
        _probes[key] = (time.monotonic(), message)
        return message


def forget_hub_probes() -> None:
    """Forget every probe's answer (the next download probes the Hub again)."""
    with _probe_lock:
        _probes.clear()


def offline_reason() -> str | None:
    """Why downloads cannot happen now, or None: ``"HF_HUB_OFFLINE is set"``, or the Hub does
    not answer (see ``hub_unreachable``)."""
    if offline_env():
        return "HF_HUB_OFFLINE is set"
    return hub_unreachable()


def is_offline() -> bool:
    """True when downloads cannot happen now: ``HF_HUB_OFFLINE`` is set, or the Hub did not
    answer a quick request. Loaders use it to read only the cache (``local_files_only``), so
    they fail or succeed at once instead of waiting through huggingface_hub's retries."""
    return offline_reason() is not None


def missing_message(
    spec: ModelSpec, cache: Path | None, revision: str | None, why: str, what: str = "model"
) -> str:
    """Explain which files are missing and the two ways to provide them."""
    files = " and ".join(spec.files)
    where = cache or "the Hugging Face cache (HF_HOME)"
    flag = "--captioner/--model" if what == "captioner" else "--model"
    return (
        f"{what} {spec.key!r} is not on disk and cannot be downloaded ({why}). "
        f"Either put {files} from https://huggingface.co/{spec.repo_id} (revision {revision}) "
        f"into a folder such as models/{spec.key}/ and pass that folder with {flag}, "
        f"or download it once with network access into {where}."
    )


def _cached(spec: ModelSpec, name: str, cache: Path | None, revision: str | None) -> Path | None:
    """The cached path of one of a registry model's files, or None (reads the cache folder
    only: no request, not even the one huggingface_hub makes to build its headers)."""
    from huggingface_hub import try_to_load_from_cache

    try:
        found = try_to_load_from_cache(spec.repo_id, name, cache_dir=cache, revision=revision)
    except Exception:  # an unreadable cache folder counts as not cached
        return None
    return Path(found) if isinstance(found, str) else None


def model_files(
    spec: ModelSpec,
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    revision: str | None = None,
) -> dict[str, Path]:
    """Return the local path of each of the model's files, downloading registry files if needed.

    Local folders are returned as they are. For registry models every file is first looked up in
    the cache only; the network is used only for files that are missing and only when downloads
    can happen (``offline_reason``); otherwise ``ModelFilesMissingError`` names the files at once.
    """
    if spec.path is not None:
        return {name: spec.path / name for name in spec.files}
    try:
        from huggingface_hub import hf_hub_download
    except ImportError as exc:  # pragma: no cover - a hard dependency
        raise MissingDependencyError(
            "huggingface_hub is needed to download registry models: pip install huggingface_hub"
        ) from exc
    cache = hf_cache_dir(cache_dir)
    rev = revision or spec.revision
    found = {name: _cached(spec, name, cache, rev) for name in spec.files}
    missing = [name for name, path in found.items() if path is None]
    if missing:
        why = offline_reason()
        if why is not None:
            raise ModelFilesMissingError(missing_message(spec, cache, rev, why))
    paths: dict[str, Path] = {}
    for name in spec.files:
        cached = found[name]
        if cached is not None:
            paths[name] = cached
            continue
        log.info("downloading %s/%s (revision %s)", spec.repo_id, name, rev)
        try:
            paths[name] = Path(
                hf_hub_download(spec.repo_id, name, revision=rev, cache_dir=cache, etag_timeout=10)
            )
        except Exception as exc:
            raise ModelFilesMissingError(
                missing_message(spec, cache, rev, f"{type(exc).__name__}: {exc}")
            ) from exc
    return paths


def check_downloadable(
    spec: ModelSpec,
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    revision: str | None = None,
) -> None:
    """Raise ``ModelFilesMissingError`` (naming the files) when a registry model is not all on
    disk and cannot be downloaded now; return quietly when it is on disk or downloads can
    happen. Never downloads (a server checks this before accepting a job)."""
    if spec.path is not None or spec.repo_id is None:
        return
    cache = hf_cache_dir(cache_dir)
    rev = revision or spec.revision
    if all(_cached(spec, name, cache, rev) is not None for name in spec.files):
        return
    why = offline_reason()
    if why is not None:
        raise ModelFilesMissingError(missing_message(spec, cache, rev, why))


def require_hub_file(
    repo_id: str,
    candidates: tuple[str, ...],
    *,
    what: str,
    fix: str,
    cache_dir: str | os.PathLike[str] | None = None,
    revision: str | None = None,
) -> None:
    """For a loader that downloads through huggingface_hub itself (open_clip's weights): raise
    ``ModelFilesMissingError`` at once when none of ``candidates`` (alternative names of one
    file) of ``repo_id`` is in the cache and downloads cannot happen now, instead of letting
    the loader wait through huggingface_hub's retries. ``what`` names the file for the
    message, ``fix`` says how to provide it."""
    from huggingface_hub import try_to_load_from_cache

    cache = Path(cache_dir).expanduser() if cache_dir else None  # the loader's own cache
    for name in candidates:
        try:
            found = try_to_load_from_cache(repo_id, name, cache_dir=cache, revision=revision)
        except Exception:
            found = None
        if isinstance(found, str):
            return
    why = offline_reason()
    if why is not None:
        files = " or ".join(candidates)
        raise ModelFilesMissingError(
            f"{what} is not on disk and cannot be downloaded ({why}): {files} from "
            f"https://huggingface.co/{repo_id}; {fix}"
        )


def is_downloaded(spec: ModelSpec, *, cache_dir: str | os.PathLike[str] | None = None) -> bool:
    """True when all of a model's files are on disk (never touches the network)."""
    if spec.path is not None:
        return all((spec.path / name).is_file() for name in spec.files)
    if spec.repo_id is None:  # no download (a file the user places in a folder)
        return False
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:  # pragma: no cover
        return False
    cache = hf_cache_dir(cache_dir)
    for name in spec.files:
        found = try_to_load_from_cache(spec.repo_id, name, cache_dir=cache, revision=spec.revision)
        if not isinstance(found, str):
            return False
    return True
