"""Exceptions raised by the core.

Each names the bad value and, where there is one, the fix. The edges (command line, webui,
HTTP) translate them into exit codes, ``gr.Error`` and HTTP statuses; nothing in the core prints.
"""

from __future__ import annotations


class TaggerError(Exception):
    """Base class of every error the core raises on purpose."""


class OptionsError(TaggerError, ValueError):
    """An option has a value the core cannot use."""


class ImageLoadError(TaggerError):
    """An image could not be read or decoded.

    ``source`` names the file (or ``"<bytes>"`` / ``"<PIL image>"``), ``reason`` says why.
    """

    def __init__(self, source: str, reason: str) -> None:
        super().__init__(f"{source}: {reason}")
        self.source = source
        self.reason = reason


class ImageTooLargeError(ImageLoadError):
    """An image has more pixels than the configured limit (a decompression-bomb guard)."""


class OutputError(TaggerError):
    """An output file cannot be written safely (it is a symbolic link or a folder, say).

    ``path`` names the file, ``reason`` says why; the batch engine fails that image with it.
    """

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


class TextEncodingError(OutputError):
    """A user's text file (an existing caption) is not valid UTF-8; it is never rewritten."""


class ModelNotFoundError(TaggerError, LookupError):
    """A model key or folder names no known model."""


class ModelFilesMissingError(TaggerError, FileNotFoundError):
    """A model's files are not on disk and cannot be downloaded (offline, or no network)."""


class ModelLoadError(TaggerError):
    """A model's files are present but could not be loaded (corrupt file, wrong layout)."""


class LabelsError(ModelLoadError):
    """A ``selected_tags.csv`` is malformed or does not match its model."""


class PathNotAllowedError(TaggerError, PermissionError):
    """A path lies outside the folders a server's owner allowed (or none are allowed)."""


class ProviderError(TaggerError):
    """A requested execution provider (GPU backend) is not usable in this environment."""


class MissingDependencyError(TaggerError, ImportError):
    """An optional library needed for this feature is not installed."""


class UnsafeCheckpointError(ModelLoadError):
    """A checkpoint would run code when unpickled (or holds objects other than tensors)."""


class ImageFailedError(TaggerError):
    """A model gave no usable result for one image (a refused, empty or unreadable reply, a
    request that kept failing). The batch engine fails that image with ``reason`` and adds
    ``usage`` (tokens spent on it anyway) to the run's totals; nothing is written for it."""

    def __init__(self, reason: str, usage: dict[str, float] | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.usage = usage or {}


class RunAbortedError(TaggerError):
    """The model cannot go on for any image (an endpoint refused the key or does not know the
    model): the run stops, keeping every file written so far."""
