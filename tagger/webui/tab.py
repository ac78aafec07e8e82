"""The Tagger tab inside the webui: the shared UI with the host's hooks.

Model work runs through the host's ``wrap_gradio_gpu_call`` (its queue lock, job state, error
and timing HTML). A batch reports to ``shared.state`` (job count, job number, current file) so the
webui's progress bar shows it, and the webui's Interrupt (``state.interrupted``) sets the engine's
cancel event: the run stops after the current model batch, with everything written kept.

The host's ``ui-config.json`` (``modules/ui_loadsave.py``) records the first value of every
labelled component at the first start and sets it on every later start, over what the code
built. The widgets whose defaults come from the Tagger settings (default tagger, captioner and
thresholds) are marked ``do_not_save_to_config``, the host's way to leave a component out of that
file, so the Settings page decides what the tab shows. Under ``--hide-ui-dir-config`` the batch
panel's folder fields are hidden and batch runs refused, as the webui's own batch tabs do.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

from tagger.ui.host import Host, Progress
from tagger.webui import compat, settings

log = logging.getLogger("tagger")


class StateProgress(Progress):
    """Progress of one batch run, written to the webui's ``shared.state``."""

    def __init__(self) -> None:
        super().__init__()
        self.state = compat.state()

    def begin(self, total: int, description: str) -> None:
        """Set the job count the progress bar divides by."""
        state = self.state
        state.job = "tagger"
        state.job_count = total
        state.job_no = 0
        state.textinfo = description
        if state.interrupted:
            self.cancel.set()

    def update(self, progress: Any) -> None:
        """One more image: advance the job number, name the file, honour Interrupt."""
        state = self.state
        while state.job_no < progress.done:
            state.nextjob()
        name = progress.current.name if progress.current is not None else ""
        state.textinfo = f"Tagger: {progress.done}/{progress.total or '?'} {name}".rstrip()
        if state.interrupted:
            self.cancel.set()

    def end(self) -> None:
        """Nothing to undo: the host's wrapper ends the job."""


def wrap_gpu(func: Callable[..., Sequence[Any]], outputs: int) -> Callable[..., Any]:
    """Wrap a handler with the host's ``wrap_gradio_gpu_call``; on error every output but the
    last (the info HTML) is left as it is."""
    import gradio as gr

    return compat.wrap_gradio_gpu_call(func, extra_outputs=[gr.update()] * (outputs - 1))


def interrupt() -> None:
    """The tab's Interrupt button: the same as the webui's."""
    compat.state().interrupt()


def webui_host() -> Host:
    """The Host the shared UI gets inside the webui."""
    hidden = "the webui was started with --hide-ui-dir-config" if compat.folders_hidden() else ""
    return Host(
        settings=settings.runtime_settings,
        wrap_gpu=wrap_gpu,
        new_progress=StateProgress,
        interrupt=interrupt,
        send_to=compat.send_to_buttons,
        infotext=compat.paste_infotext,
        is_webui=True,
        folders_disabled=hidden,
    )


def keep_out_of_ui_config(components: Sequence[Any]) -> None:
    """Mark components so the host's ``ui-config.json`` neither records nor restores them."""
    for component in components:
        component.do_not_save_to_config = True


def build_tab() -> tuple[Any, Any]:
    """The tab's Blocks and its builder (``TaggerUI``)."""
    import gradio as gr

    from tagger.ui.blocks import build_tagger_ui

    with gr.Blocks(analytics_enabled=False) as block:
        ui = build_tagger_ui(webui_host())
        keep_out_of_ui_config(ui.settings_driven())
        ui.attach_page_load(block)
    return block, ui


def on_ui_tabs() -> list[tuple[Any, str, str]]:
    """Build the Tagger tab (``script_callbacks.on_ui_tabs``)."""
    block, _ = build_tab()
    return [(block, "Tagger", "tagger")]
