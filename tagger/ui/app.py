"""``tagger ui``: the Tagger tab as a standalone Gradio app (no webui; no send-to buttons)."""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

from tagger.ui.host import Host, Progress, RuntimeSettings

log = logging.getLogger("tagger")


class LogProgress(Progress):
    """Progress of a standalone run: logged every tenth of the run, cancelled by the button."""

    def __init__(self) -> None:
        super().__init__()
        self.total = 0
        self._next = 0

    def begin(self, total: int, description: str) -> None:
        """Log the start."""
        self.total = total
        self._next = max(1, total // 10)
        log.info("%s", description)

    def update(self, progress: Any) -> None:
        """Keep the snapshot for the page; log every tenth."""
        self.latest = progress
        if progress.done >= self._next:
            log.info("%d/%d images", progress.done, self.total)
            self._next += max(1, self.total // 10)


def standalone_host(
    settings: RuntimeSettings, presets_dir: str | Path | None = None
) -> tuple[Host, dict[str, Any]]:
    """A Host for the standalone app; the dict holds the run in progress (for Interrupt)."""
    from tagger.ui.blocks import wrap_with_lock

    running: dict[str, Any] = {}

    def new_progress() -> Progress:
        progress = LogProgress()
        running["progress"] = progress
        return progress

    def interrupt() -> None:
        progress = running.get("progress")
        if progress is not None:
            progress.cancel.set()

    host = Host(
        settings=lambda: settings,
        presets_dir=Path(presets_dir) if presets_dir else None,
        wrap_gpu=wrap_with_lock(threading.Lock()),
        new_progress=new_progress,
        interrupt=interrupt,
        send_to=None,
        is_webui=False,
        stream_progress=True,
    )
    return host, running


def build_app(settings: RuntimeSettings, presets_dir: str | Path | None = None) -> Any:
    """The standalone ``gr.Blocks`` app with the tab, its script and its style."""
    import gradio as gr

    from tagger.ui.blocks import JS_KWARG, build_tagger_ui, read_asset

    host, _ = standalone_host(settings, presets_dir)
    css = read_asset("style.css")
    with gr.Blocks(title="Tagger", css=css, analytics_enabled=False) as demo:
        ui = build_tagger_ui(host)
        ui.attach_page_load(demo)
        scripts = [read_asset(f"javascript/{name}") for name in ("tagger.js", "tagger_dataset.js")]
        script = "() => {\n" + "\n".join(scripts) + "\n}"
        demo.load(None, None, None, **{JS_KWARG: script})
    return demo


def launch(
    settings: RuntimeSettings,
    *,
    host: str = "127.0.0.1",
    port: int = 7861,
    presets_dir: str | Path | None = None,
    block: bool = True,
) -> Any:
    """Serve the app on ``host:port`` (127.0.0.1 by default: only this machine can reach it)."""
    demo = build_app(settings, presets_dir)
    demo.queue()
    demo.launch(
        server_name=host,
        server_port=port,
        prevent_thread_lock=not block,
        show_api=False,
        inbrowser=False,
    )
    return demo
