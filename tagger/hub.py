"""Model files on disk: local folders as they are, registry models through huggingface_hub.

Downloads go to the Hugging Face cache, or to a cache folder the user chose (``--hf-cache``,
``TAGGER_HF_CACHE``). Offline (``HF_HUB_OFFLINE=1``) or without a network, files already in the
cache are used; a missing file fails at once with a message that names the files and the folder
to put them in.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from tagger.errors import MissingDependencyError, ModelFilesMissingError
from tagger.registry import ModelSpec

log = logging.getLogger("tagger")


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


def is_offline() -> bool:
    """True when huggingface_hub is told not to use the network (``HF_HUB_OFFLINE``)."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}


def _missing_message(spec: ModelSpec, cache: Path | None, revision: str | None, why: str) -> str:
    """Explain which files are missing and the two ways to provide them."""
    files = " and ".join(spec.files)
    where = cache or "the Hugging Face cache (HF_HOME)"
    return (
        f"model {spec.key!r} is not on disk and cannot be downloaded ({why}). "
        f"Either put {files} from https://huggingface.co/{spec.repo_id} (revision {revision}) "
        f"into a folder such as models/{spec.key}/ and pass that folder with --model, "
        f"or download it once with network access into {where}."
    )


def model_files(
    spec: ModelSpec,
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    revision: str | None = None,
) -> dict[str, Path]:
    """Return the local path of each of the model's files, downloading registry files if needed.

    Local folders are returned as they are. For registry models every file is first looked up in
    the cache only; the network is used only for files that are missing and only when allowed.
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
    paths: dict[str, Path] = {}
    for name in spec.files:
        try:
            paths[name] = Path(
                hf_hub_download(
                    spec.repo_id, name, revision=rev, cache_dir=cache, local_files_only=True
                )
            )
            continue
        except Exception:  # not cached (the error type differs between hub versions)
            pass
        if is_offline():
            raise ModelFilesMissingError(
                _missing_message(spec, cache, rev, "HF_HUB_OFFLINE is set")
            )
        log.info("downloading %s/%s (revision %s)", spec.repo_id, name, rev)
        try:
            paths[name] = Path(
                hf_hub_download(spec.repo_id, name, revision=rev, cache_dir=cache, etag_timeout=10)
            )
        except Exception as exc:
            raise ModelFilesMissingError(
                _missing_message(spec, cache, rev, f"{type(exc).__name__}: {exc}")
            ) from exc
    return paths


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
