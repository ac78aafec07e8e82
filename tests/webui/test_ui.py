"""The shared UI: widgets derived from the option models, presets, the standalone app."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tagger.errors import OptionsError
from tagger.options import BatchOptions, TagOptions, dump, field_names
from tagger.ui.form import build_options, field_specs, from_widget, to_widget
from tagger.ui.presets import list_presets, load_preset, save_preset

EXPECTED_KINDS = {
    "general_threshold": "slider",
    "character_threshold": "slider",
    "mcut_general": "checkbox",
    "max_tags": "number",
    "exclude_tags": "list",
    "replace_tags": "mapping",
    "rating_tag": "choice",
    "order": "choice",
    "separator": "text",
}


def test_every_option_field_has_a_widget_spec() -> None:
    specs = {spec.key: spec for spec in field_specs(TagOptions)}
    assert list(specs) == field_names(TagOptions)
    assert {k: specs[k].kind for k in EXPECTED_KINDS} == EXPECTED_KINDS
    assert specs["general_threshold"].minimum == 0.0
    assert specs["general_threshold"].maximum == 1.0
    assert specs["rating_tag"].choices == ("none", "first", "last")
    assert specs["mcut_general"].label == "MCut general"
    batch = {spec.key: spec for spec in field_specs(BatchOptions)}
    assert list(batch) == field_names(BatchOptions)
    assert batch["output_dir"].kind == "text"
    assert batch["output_dir"].optional is True
    assert batch["on_existing"].choices == ("skip", "overwrite", "append", "prepend")


@pytest.mark.parametrize("model", [TagOptions, BatchOptions])
def test_defaults_round_trip_through_widgets(model) -> None:
    values = {spec.key: to_widget(spec, spec.default) for spec in field_specs(model)}
    assert dump(build_options(model, values)) == dump(model())


def test_widget_text_becomes_option_values() -> None:
    specs = {spec.key: spec for spec in field_specs(TagOptions)}
    assert from_widget(specs["exclude_tags"], " solo,, long hair ") == ["solo", "long hair"]
    mapping = {"cat ears": "animal ears", "a,b": "c;d"}
    text = to_widget(specs["replace_tags"], mapping)
    assert from_widget(specs["replace_tags"], text) == mapping
    with pytest.raises(OptionsError, match="Replace tags"):
        from_widget(specs["replace_tags"], "only-one-part")
    with pytest.raises(OptionsError, match="invalid options"):
        build_options(TagOptions, {"general_threshold": 1.5})
    batch = {spec.key: spec for spec in field_specs(BatchOptions)}
    assert from_widget(batch["output_dir"], "  ") is None


def test_presets_save_and_load_every_option(tmp_path: Path) -> None:
    tags = TagOptions(general_threshold=0.5, exclude_tags=["solo"], replace_tags={"a": "b"})
    batch = BatchOptions(recursive=True, on_existing="append", caption_extension=".caption")
    path = save_preset(
        tmp_path,
        "my preset",
        model="wd-vit-tagger-v3",
        captioner=None,
        auto_interrogate=True,
        tag_options=tags,
        batch_options=batch,
    )
    data = json.loads(path.read_text())
    assert set(data["tag_options"]) == set(field_names(TagOptions))
    assert set(data["batch_options"]) == set(field_names(BatchOptions))
    assert list_presets(tmp_path) == ["my preset"]
    loaded = load_preset(tmp_path, "my preset")
    assert loaded["model"] == "wd-vit-tagger-v3"
    assert loaded["auto_interrogate"] is True
    assert dump(loaded["tag_options"]) == dump(tags)
    assert dump(loaded["batch_options"]) == dump(batch)


def test_bad_presets_are_refused(tmp_path: Path) -> None:
    with pytest.raises(OptionsError, match="not usable"):
        save_preset(
            tmp_path,
            "../escape",
            model=None,
            captioner=None,
            auto_interrogate=False,
            tag_options=TagOptions(),
            batch_options=BatchOptions(),
        )
    (tmp_path / "old.json").write_text(json.dumps({"tag_options": {"threshold": 0.3}}))
    with pytest.raises(OptionsError, match="invalid options"):
        load_preset(tmp_path, "old")
    (tmp_path / "odd.json").write_text(json.dumps({"colour": "red"}))
    with pytest.raises(OptionsError, match="unknown keys"):
        load_preset(tmp_path, "odd")
    with pytest.raises(OptionsError, match="does not exist"):
        load_preset(tmp_path, "missing")


def test_standalone_app_has_the_tab_without_send_to(model_dir: Path) -> None:
    pytest.importorskip("gradio")
    from tagger.ui.app import build_app
    from tagger.ui.host import RuntimeSettings

    demo = build_app(RuntimeSettings(models_dirs=[model_dir.parent]))
    ids = {getattr(block, "elem_id", None) for block in demo.blocks.values()} - {None}
    assert {"tagger_image", "tagger_interrogate", "tagger_prompt", "tagger_general",
            "tagger_input_dir", "tagger_start", "tagger_summary", "tagger_opt_exclude_tags",
            "tagger_batch_caption_extension", "tagger_preset"} <= ids  # fmt: skip
    assert all(i.startswith("tagger_") for i in ids)
    assert "txt2img_tab" not in ids
    model = next(b for b in demo.blocks.values() if getattr(b, "elem_id", None) == "tagger_model")
    choices = [c[0] if isinstance(c, (tuple, list)) else c for c in model.choices]
    assert choices[0] == "tiny-v3"  # local models first
    captioner = next(
        b for b in demo.blocks.values() if getattr(b, "elem_id", None) == "tagger_captioner"
    )
    from tagger.ui.actions import captioner_choices
    from tagger.ui.host import RuntimeSettings

    # Shown only when the captioning libraries are installed (they are not in the host pins).
    assert captioner.visible is bool(captioner_choices(RuntimeSettings()))


def test_captioning_without_torch_raises_a_clear_error() -> None:
    import importlib.util

    from tagger.errors import MissingDependencyError
    from tagger.ui.actions import caption_image
    from tagger.ui.host import RuntimeSettings

    if importlib.util.find_spec("torch") is not None:
        pytest.skip("torch is installed: tests/test_captioners.py captions through the tab")
    with pytest.raises(MissingDependencyError, match="tagger\\[caption\\]"):
        caption_image(None, "blip-base", RuntimeSettings())


def test_ui_command_is_in_the_cli() -> None:
    from tagger.cli import build_parser

    args = build_parser().parse_args(["ui", "--port", "9000", "--models-dir", "m"])
    assert (args.host, args.port, args.models_dir, args.device) == (
        "127.0.0.1",
        9000,
        ["m"],
        "auto",
    )


def test_ui_command_passes_fp16_to_the_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("gradio")
    import tagger.ui.app
    from tagger.cli import main

    seen = {}
    monkeypatch.setattr(tagger.ui.app, "launch", lambda settings, **kw: seen.update(s=settings))
    assert main(["ui", "--device", "cpu"]) == 0
    assert seen["s"].precision == "fp32"
    assert main(["ui", "--fp16", "--device", "cpu"]) == 0
    assert seen["s"].precision == "fp16"


def test_settings_batch_size_applies_when_the_tab_says_automatic(model_dir: Path, tmp_path):
    from tiny import make_image

    from tagger.ui.actions import run_folder
    from tagger.ui.host import Progress, RuntimeSettings

    for i in range(4):
        make_image(tmp_path / f"i{i}.png", (20 + i, 30), seed=i)
    settings = RuntimeSettings(batch_size=3)
    seen: list[int] = []

    class Record(Progress):
        def update(self, progress) -> None:
            seen.append(progress.done)

    summary = run_folder(
        str(tmp_path), str(model_dir), TagOptions(), BatchOptions(), settings, Record()
    )
    assert (summary.batch_size, summary.written, seen) == (3, 4, [1, 2, 3, 4])
    summary = run_folder(
        str(tmp_path),
        str(model_dir),
        TagOptions(),
        BatchOptions(batch_size=2, on_existing="overwrite"),
        settings,
        Record(),
    )
    assert (summary.batch_size, summary.written) == (2, 4)


def test_layering_only_tagger_webui_imports_the_host() -> None:
    """``modules`` is imported only under tagger/webui/; gradio only there and in tagger/ui/."""
    import ast

    root = Path(__file__).resolve().parents[2] / "tagger"
    offenders = []
    for path in root.rglob("*.py"):
        relative = path.relative_to(root).as_posix()
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            for name in names:
                top = name.split(".")[0]
                if top == "modules" and not relative.startswith("webui/"):
                    offenders.append((relative, name))
                if top == "gradio" and not relative.startswith(("webui/", "ui/")):
                    offenders.append((relative, name))
    assert offenders == []


def test_gradio_free_ui_modules_import_without_gradio_or_host() -> None:
    import subprocess
    import sys
    import textwrap

    code = textwrap.dedent(
        """
        import importlib, sys

        class Block:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in {"modules", "gradio", "launch", "fastapi"}:
                    raise ImportError(f"blocked: {name}")
                return None

        sys.meta_path.insert(0, Block())
        for name in ["tagger.ui", "tagger.ui.form", "tagger.ui.presets", "tagger.ui.host",
                     "tagger.ui.actions"]:
            importlib.import_module(name)
        print("ok")
        """
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"


def test_standalone_batch_streams_progress_then_the_summary(model_dir: Path, tmp_path) -> None:
    gr = pytest.importorskip("gradio")
    from tiny import make_image

    from tagger.ui.app import standalone_host
    from tagger.ui.blocks import TaggerUI, progress_text
    from tagger.ui.form import to_widget
    from tagger.ui.host import RuntimeSettings

    for i in range(5):
        make_image(tmp_path / "in" / f"i{i}.png", (20 + i, 30), seed=i)
    host, _ = standalone_host(RuntimeSettings(models_dirs=[]), tmp_path / "presets")
    with gr.Blocks():
        ui = TaggerUI(host)
        ui.build()
    values = [to_widget(s, s.default) for s in [*ui.tag_specs, *ui.batch_specs]]
    updates = list(ui.on_batch_stream("", str(tmp_path / "in"), str(model_dir), *values))
    count, summary = updates[-1]
    assert count.startswith("5 images found")
    assert "<b>Done</b>: 5 found, 5 written, 0 skipped, 0 failed" in summary
    assert all(u[0].startswith("Running: ") for u in updates[:-1])
    from tagger.batch import Progress

    assert progress_text(Progress(3, None, 2, 0, 1, None)) == (
        "Running: 3/? images (2 written, 0 skipped, 1 failed)"
    )


def test_tagger_ui_command_serves_the_page_on_localhost(model_dir: Path) -> None:
    pytest.importorskip("gradio")
    import socket
    import subprocess
    import sys
    import time
    import urllib.request

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    command = [sys.executable, "-m", "tagger", "ui", "--port", str(port)]
    command += ["--models-dir", str(model_dir.parent), "--model", model_dir.name]
    server = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        body = ""
        for _ in range(240):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as reply:
                    body = reply.read().decode("utf-8", "replace")
                    break
            except OSError:
                if server.poll() is not None:
                    break
                time.sleep(0.5)
        assert "tagger_interrogate" in body, server.stdout.read().decode() if server.poll() else ""
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_preset_buttons_save_and_restore_every_widget(tmp_path) -> None:
    gr = pytest.importorskip("gradio")
    from tagger.ui.app import standalone_host
    from tagger.ui.blocks import TaggerUI
    from tagger.ui.form import to_widget
    from tagger.ui.host import RuntimeSettings

    host, _ = standalone_host(RuntimeSettings(models_dirs=[]), tmp_path / "presets")
    with gr.Blocks():
        ui = TaggerUI(host)
        ui.build()
    custom = {"general_threshold": 0.5, "exclude_tags": ["solo", "hat"], "order": "model"}
    custom_batch = {"recursive": True, "caption_extension": ".caption"}
    values = [to_widget(s, custom.get(s.key, s.default)) for s in ui.tag_specs]
    values += [to_widget(s, custom_batch.get(s.key, s.default)) for s in ui.batch_specs]
    choices, note = ui.on_preset_save("set one", "wd-vit-tagger-v3", "", True, *values)
    assert choices["value"] == "set one"
    assert "Saved preset set one" in note
    loaded = ui.on_preset_load("set one")
    assert loaded[:3] == ["wd-vit-tagger-v3", "", True]
    assert loaded[3:-1] == values
    assert "Loaded preset" in loaded[-1]
    bad = ui.on_preset_load("nope")
    assert "does not exist" in bad[-1]


def test_captioners_are_offered_only_with_their_libraries(monkeypatch) -> None:
    import importlib.util
    import sys

    from tagger.registry import list_captioners
    from tagger.ui.actions import captioner_choices
    from tagger.ui.host import RuntimeSettings

    settings = RuntimeSettings(models_dirs=[])
    every = [spec.key for spec in list_captioners([])]
    blip = [spec.key for spec in list_captioners([]) if spec.family == "blip"]
    if all(importlib.util.find_spec(n) for n in ("torch", "transformers", "open_clip")):
        assert captioner_choices(settings) == every
        monkeypatch.setitem(sys.modules, "open_clip", None)  # a blocked import
        assert captioner_choices(settings) == blip
        monkeypatch.delitem(sys.modules, "open_clip")
    monkeypatch.setitem(sys.modules, "torch", None)
    assert captioner_choices(settings) == []


def test_a_library_whose_lookup_fails_counts_as_absent(monkeypatch) -> None:
    import sys

    from tagger.ui.actions import library_available

    class Refuse:
        def find_spec(self, name, path=None, target=None):
            if name == "tagger_test_refused":
                raise ImportError(f"blocked: {name}")
            return

    monkeypatch.setattr(sys, "meta_path", [Refuse(), *sys.meta_path])
    assert library_available("tagger_test_refused") is False
    assert library_available("json") is True
    assert library_available("tagger_test_not_installed_anywhere") is False


def test_offline_tagger_error_speaks_of_the_tab(tmp_path: Path) -> None:
    from tagger.errors import ModelFilesMissingError
    from tagger.ui.actions import load_tagger
    from tagger.ui.host import RuntimeSettings

    models = tmp_path / "models"
    settings = RuntimeSettings(models_dirs=[models], hf_cache=str(tmp_path / "hf"))
    with pytest.raises(ModelFilesMissingError) as error:
        load_tagger("wd-vit-tagger-v3", settings)
    assert str(error.value) == (
        "tagger 'wd-vit-tagger-v3' is not on disk and cannot be downloaded (HF_HUB_OFFLINE is "
        "set). Either put model.onnx and selected_tags.csv from "
        "https://huggingface.co/SmilingWolf/wd-vit-tagger-v3 (revision main) in a folder named "
        f"wd-vit-tagger-v3 inside one of the models folders ({models}), then press Refresh "
        f"models and pick it; or let it download once with network access, into {tmp_path / 'hf'}."
    )
    assert "--model" in str(error.value.__cause__)  # the core's message, kept as the cause


def test_offline_captioner_error_speaks_of_the_tab(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from PIL import Image

    from tagger.errors import ModelFilesMissingError
    from tagger.ui.actions import caption_image
    from tagger.ui.host import RuntimeSettings

    settings = RuntimeSettings(models_dirs=[tmp_path / "m"], hf_cache=str(tmp_path / "hf"))
    image = Image.new("RGB", (32, 32))
    with pytest.raises(ModelFilesMissingError) as error:
        caption_image(image, "blip-base", settings)
    text = str(error.value)
    assert text.startswith("captioner 'blip-base' is not on disk and cannot be downloaded")
    assert (
        f"in a folder named blip-base inside one of the models folders ({tmp_path / 'm'})" in text
    )
    assert "press Refresh models" in text
    assert "--model" not in text
    with pytest.raises(ModelFilesMissingError) as error:
        caption_image(image, "clipcap-coco", settings)
    assert str(error.value) == (
        "captioner 'clipcap-coco' has no download: put coco_weights.pt in a folder named "
        f"clipcap-coco inside one of the models folders ({tmp_path / 'm'}), then press Refresh "
        "models and pick it."
    )


def test_refresh_shows_the_captioner_only_with_its_libraries(monkeypatch, tmp_path) -> None:
    gr = pytest.importorskip("gradio")
    import sys

    from tagger.ui.actions import captioner_choices
    from tagger.ui.app import standalone_host
    from tagger.ui.blocks import TaggerUI
    from tagger.ui.host import RuntimeSettings

    host, _ = standalone_host(RuntimeSettings(models_dirs=[]), tmp_path / "presets")
    with gr.Blocks():
        ui = TaggerUI(host)
        ui.build()
    shown = bool(captioner_choices(RuntimeSettings(models_dirs=[])))
    _, captioner, caption = ui.on_refresh()
    assert (captioner["visible"], caption["visible"]) == (shown, shown)
    monkeypatch.setitem(sys.modules, "torch", None)
    _, captioner, caption = ui.on_refresh()
    assert (captioner["visible"], caption["visible"], captioner["choices"]) == (False, False, [""])
    *_, presets = ui.on_page_load()
    assert presets["choices"] == []
    (tmp_path / "presets").mkdir()
    (tmp_path / "presets" / "copied.json").write_text("{}")
    *_, presets = ui.on_page_load()
    assert presets["choices"] == ["copied"]


def test_the_gpu_check_shows_the_doctor_report(model_dir: Path) -> None:
    pytest.importorskip("gradio")
    import subprocess
    import sys

    from tagger.ui.app import build_app
    from tagger.ui.host import RuntimeSettings

    demo = build_app(RuntimeSettings(models_dirs=[model_dir.parent]))
    ids = {getattr(block, "elem_id", None) for block in demo.blocks.values()}
    assert {"tagger_doctor", "tagger_doctor_run", "tagger_doctor_report"} <= ids
    from tagger.ui.actions import doctor_text

    shown = doctor_text()
    printed = subprocess.run(
        [sys.executable, "-m", "tagger", "doctor"], capture_output=True, text=True, check=False
    ).stdout
    assert shown.strip() == printed.strip()
    assert "onnxruntime" in shown
