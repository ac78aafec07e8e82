"""The tab's VLM panel without Gradio (``tagger.ui.vlm_actions``): its values as options, one
image tag-guided by the tab's tagger, a folder with the host's progress and Interrupt."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("openai")

from PIL import Image
from tiny import make_image
from vlm_server import FakeVlm, default_text

from tagger.errors import OptionsError
from tagger.options import BatchOptions, TagOptions
from tagger.ui import vlm_actions as va
from tagger.ui.host import Progress, RuntimeSettings
from tagger.vlm.templates import BUILTIN

KEY_ENV = "TAGGER_TEST_TAB_VLM_KEY"


@pytest.fixture
def server() -> Iterator[FakeVlm]:
    """A fake endpoint."""
    fake = FakeVlm().start()
    yield fake
    fake.stop()


def panel(server: FakeVlm, **changes: object) -> va.PanelValues:
    """Panel values pointing at the fake endpoint."""
    user, system = va.template_texts("dense")
    values = va.PanelValues(url=server.url, model="m", key_env=KEY_ENV, prompt=user, system=system)
    for name, value in changes.items():
        setattr(values, name, value)
    return values


class Recorder(Progress):
    """A host progress bridge that records what it is told."""

    def __init__(self) -> None:
        super().__init__()
        self.begun: tuple[int, str] | None = None
        self.updates: list[int] = []
        self.ended = False

    def begin(self, total: int, description: str) -> None:
        self.begun = (total, description)

    def update(self, progress: object) -> None:
        self.latest = progress
        self.updates.append(progress.done)

    def end(self) -> None:
        self.ended = True


def test_panel_values_become_options(server: FakeVlm) -> None:
    options = va.vlm_options(panel(server, temperature=0.3, price_input=2, concurrency=8.0))
    assert (options.url, options.model, options.key_env) == (server.url, "m", KEY_ENV)
    assert (options.prompt, options.system_prompt, options.template) == (None, None, "dense")
    assert (options.temperature, options.price_input, options.concurrency) == (0.3, 2.0, 8)
    own = va.vlm_options(panel(server, prompt="Describe {name}", system=""))
    assert (own.prompt, own.system_prompt) == ("Describe {name}", "")
    booru = va.vlm_options(panel(server, template="booru-tags", prompt=BUILTIN["booru-tags"].user))
    assert (booru.template, booru.prompt) == ("booru-tags", None)
    with pytest.raises(OptionsError, match="unknown field"):
        va.vlm_options(panel(server, prompt="Describe {colour}"))


def test_hidden_folders_allow_only_known_endpoints(server: FakeVlm) -> None:
    reason = "the webui was started with --hide-ui-dir-config"
    with pytest.raises(OptionsError, match="only the known endpoints"):
        va.vlm_options(panel(server), reason)
    with pytest.raises(OptionsError, match="only the known endpoints"):
        va.vlm_options(panel(server, url="openai", key_env="HOME"), reason)
    assert va.vlm_options(panel(server, url="openai", key_env=""), reason).key_env is None


def test_one_image_is_tag_guided_by_the_tabs_tagger(
    server: FakeVlm, model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(KEY_ENV, "sk-tab-0000000000")
    settings = RuntimeSettings(models_dirs=[model_dir.parent], providers="cpu")
    image = Image.open(make_image(tmp_path / "one.png", (40, 30), seed=4))
    options = TagOptions(general_threshold=0.2)
    result = va.caption_one(image, model_dir.name, panel(server), options, settings)
    (record,) = server.requests
    assert result.caption == default_text(record.image_id)
    from tagger.ui.actions import interrogate

    tags = interrogate(image, model_dir.name, None, options, settings).prompt
    assert f"contradict them: {tags}\n" in record.user_text
    assert "Prompt sent" in va.caption_html(result)
    assert "tokens: " in va.caption_html(result)
    plain = va.caption_one(image, model_dir.name, panel(server, use_tags=False), options, settings)
    assert plain.prompt == BUILTIN["dense"].user.split("\n")[0]


def test_folder_run_reports_progress_and_stops_on_interrupt(
    server: FakeVlm, model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(KEY_ENV, "sk-tab-0000000000")
    folder = tmp_path / "data"
    for i in range(6):
        make_image(folder / f"img{i}.png", (30, 30 + i), seed=i)
    settings = RuntimeSettings(models_dirs=[model_dir.parent], providers="cpu")
    progress = Recorder()
    values = panel(server, concurrency=2)
    batch = BatchOptions(batch_size=2)
    summary = va.run_folder(
        str(folder), model_dir.name, values, TagOptions(), batch, settings, progress
    )
    assert (summary.written, summary.failed_count) == (6, 0)
    assert progress.begun == (6, f"VLM captions for 6 images in {folder}")
    assert progress.updates == [1, 2, 3, 4, 5, 6]
    assert progress.ended
    for i in range(6):  # tags beside, the caption in .caption
        assert (folder / f"img{i}.txt").exists()
        assert (folder / f"img{i}.caption").read_text().startswith("A photo of image ")
    assert "tokens: " in va.summary_html(summary)
    # Interrupt: the run stops after the batch in progress; a second run finishes the rest.
    other = tmp_path / "more"
    for i in range(8):
        make_image(other / f"img{i}.png", (30, 30 + i), seed=10 + i)
    stopper = Recorder()
    stopper.update = lambda p: stopper.cancel.set() if p.done >= 2 else None  # type: ignore
    summary = va.run_folder(
        str(other), model_dir.name, panel(server, use_tags=False), TagOptions(), batch,
        settings, stopper,
    )  # fmt: skip
    assert summary.cancelled
    # the batches already sent (an endpoint keeps two in flight) are written, nothing more
    assert 2 <= summary.written <= 2 + 2 * 2 < 8
    written = sorted(p.name for p in other.glob("*.caption"))
    assert written == [f"img{i}.caption" for i in range(summary.written)]
    assert not list(other.glob("*.txt"))  # no tags: the prompt was not tag-guided
    summary = va.run_folder(
        str(other), model_dir.name, panel(server, use_tags=False), TagOptions(), batch,
        settings, Recorder(),
    )  # fmt: skip
    assert (summary.written, summary.skipped) == (8 - len(written), len(written))
