"""What the shared UI needs from whoever serves it (the webui or the standalone app).

The UI never asks the host for anything itself: the webui glue (``tagger.webui``) and the
standalone app (``tagger.ui.app``) each fill a ``Host`` and pass it in, as adetailer's
``WebuiInfo`` does.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tagger.registry import DEFAULT_MODEL


@dataclass
class RuntimeSettings:
    """Where models come from and run, and the defaults the tab starts with."""

    default_model: str = DEFAULT_MODEL
    default_captioner: str = ""
    general_threshold: float = 0.35
    character_threshold: float = 0.85
    models_dirs: list[Path] = field(default_factory=list)
    hf_cache: str | None = None
    providers: str = "auto"
    device_id: int = 0
    batch_size: int = 0
    unload_after_run: bool = False
    allowed_dirs: list[Path] = field(default_factory=list)
    half: bool = True
    #: The tagger's precision: "fp32" (the published graph) or "fp16" (``tagger.fp16``).
    precision: str = "fp32"

    def torch_model_kwargs(self) -> dict[str, Any]:
        """Where a torch model (captioner, scorer) loads and runs: the keyword arguments of
        ``get_captioner`` and ``get_scorer``."""
        from tagger.captioners.common import torch_device_for

        return {
            "device": torch_device_for(self.providers),
            "device_id": self.device_id,
            "half": self.half,
            "cache_dir": self.hf_cache,
            "models_dirs": self.models_dirs,
        }


class Progress:
    """Progress and cancel of one batch run, as the host shows them.

    The engine's progress callback is ``update``; ``cancel`` is the engine's cancel event, set
    by ``interrupt`` (a button) or by the host's own interrupt state (webui).
    """

    def __init__(self) -> None:
        self.cancel = threading.Event()
        #: The last snapshot received (a ``tagger.batch.Progress``), for hosts that poll.
        self.latest: Any = None

    def begin(self, total: int, description: str) -> None:
        """A run of ``total`` images starts."""

    def update(self, progress: Any) -> None:
        """One more image is done (``progress`` is a ``tagger.batch.Progress``)."""

    def end(self) -> None:
        """The run is over."""


def _call_unwrapped(func: Callable[..., Sequence[Any]], outputs: int) -> Callable[..., Any]:
    """No wrapping: the function is called as it is."""
    return func


@dataclass
class Host:
    """Hooks the UI calls; the defaults describe a plain standalone app."""

    settings: Callable[[], RuntimeSettings] = RuntimeSettings
    presets_dir: Path | None = None
    #: Wrap a handler that runs a model. The handler returns a list whose last item is an HTML
    #: string (the info box); ``outputs`` is the number of outputs.
    wrap_gpu: Callable[[Callable[..., Sequence[Any]], int], Callable[..., Any]] = _call_unwrapped
    #: A fresh progress bridge for one batch run.
    new_progress: Callable[[], Progress] = Progress
    #: Ask the running batch to stop after its current model batch.
    interrupt: Callable[[], None] | None = None
    #: Create "Send to txt2img/img2img" buttons for a text (and image) component (webui only).
    send_to: Callable[[Any, Any], None] | None = None
    #: The text the send-to buttons' text component holds for a prompt and the parameters that
    #: made it (the webui reads it as an infotext); None: the prompt itself.
    infotext: Callable[[str, Mapping[str, str]], str] | None = None
    #: Why the tab may not name server folders ("" when it may): the batch panel's folder
    #: fields are hidden and batch runs refused (the webui's ``--hide-ui-dir-config``).
    folders_disabled: str = ""
    #: True inside the webui.
    is_webui: bool = False
    #: Show a batch's progress on the page by streaming updates (the standalone app; the webui
    #: has its own progress bar).
    stream_progress: bool = False
