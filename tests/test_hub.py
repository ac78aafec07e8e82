"""Tests of tagger.hub: local folders, the Hugging Face cache offline, and the missing-files error.

Nothing here touches the network: HF_HUB_OFFLINE is set, and registry files are either absent or
placed by hand in the Hugging Face cache layout under tmp_path.
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import pytest

from tagger.errors import ModelFilesMissingError
from tagger.hub import hf_cache_dir, is_downloaded, is_offline, model_files
from tagger.registry import REGISTRY, WD14_FILES, local_spec

COMMIT = "0123456789abcdef0123456789abcdef01234567"
SPEC = REGISTRY["wd-vit-tagger-v3"]


def fill_hf_cache(cache: Path, model_dir: Path, files: tuple[str, ...] = WD14_FILES) -> Path:
    """Lay out ``cache`` as huggingface_hub does for SmilingWolf/wd-vit-tagger-v3 at ``main``."""
    repo = cache / "models--SmilingWolf--wd-vit-tagger-v3"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(COMMIT, encoding="utf-8")
    snapshot = repo / "snapshots" / COMMIT
    snapshot.mkdir(parents=True)
    for name in files:
        shutil.copyfile(model_dir / name, snapshot / name)
    return snapshot


# -- hf_cache_dir / is_offline ------------------------------------------------------------------
def test_hf_cache_dir_prefers_the_argument(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TAGGER_HF_CACHE", str(tmp_path / "env"))
    assert hf_cache_dir(tmp_path / "arg") == tmp_path / "arg"
    assert hf_cache_dir(str(tmp_path / "arg")) == tmp_path / "arg"


def test_hf_cache_dir_reads_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TAGGER_HF_CACHE", str(tmp_path / "env"))
    assert hf_cache_dir() == tmp_path / "env"
    assert hf_cache_dir(None) == tmp_path / "env"


def test_hf_cache_dir_expands_the_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("TAGGER_HF_CACHE", raising=False)
    assert hf_cache_dir("~/hf") == tmp_path / "hf"


def test_hf_cache_dir_defaults_to_none(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TAGGER_HF_CACHE", raising=False)
    assert hf_cache_dir() is None
    monkeypatch.setenv("TAGGER_HF_CACHE", "")
    assert hf_cache_dir() is None


@pytest.mark.parametrize("value", ["1", "true", "TRUE", "yes", "On", " 1 "])
def test_is_offline_truthy(value: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", value)
    assert is_offline() is True


@pytest.mark.parametrize("value", ["0", "", "false", "no", "off", "2"])
def test_is_offline_falsy(value: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", value)
    assert is_offline() is False


def test_is_offline_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    assert is_offline() is False


# -- local folders ------------------------------------------------------------------------------
def test_model_files_of_a_local_folder(model_dir: Path) -> None:
    spec = local_spec(model_dir)
    assert model_files(spec) == {
        "model.onnx": model_dir.resolve() / "model.onnx",
        "selected_tags.csv": model_dir.resolve() / "selected_tags.csv",
    }


def test_is_downloaded_of_a_local_folder(model_dir: Path, tmp_path: Path) -> None:
    assert is_downloaded(local_spec(model_dir)) is True
    folder = tmp_path / "copy"
    shutil.copytree(model_dir, folder)
    spec = local_spec(folder)
    (folder / "model.onnx").unlink()
    assert is_downloaded(spec) is False


# -- registry models, offline -------------------------------------------------------------------
def test_missing_registry_files_offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelFilesMissingError) as info:
        model_files(SPEC, cache_dir=tmp_path)
    message = str(info.value)
    assert "model.onnx and selected_tags.csv" in message
    assert "https://huggingface.co/SmilingWolf/wd-vit-tagger-v3" in message
    assert "(revision main)" in message
    assert str(tmp_path) in message
    assert "HF_HUB_OFFLINE is set" in message
    assert "models/wd-vit-tagger-v3/" in message
    assert isinstance(info.value, FileNotFoundError)


def test_missing_registry_files_name_the_env_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TAGGER_HF_CACHE", str(tmp_path / "env-cache"))
    with pytest.raises(ModelFilesMissingError, match="env-cache"):
        model_files(REGISTRY["wd-v1-4-moat-tagger-v2"])


def test_missing_v2_files_name_the_v2_revision(tmp_path: Path) -> None:
    with pytest.raises(ModelFilesMissingError) as info:
        model_files(REGISTRY["wd-v1-4-moat-tagger-v2"], cache_dir=tmp_path)
    message = str(info.value)
    assert "SmilingWolf/wd-v1-4-moat-tagger-v2" in message
    assert "(revision v2.0)" in message


def test_missing_files_name_the_requested_revision(tmp_path: Path) -> None:
    with pytest.raises(ModelFilesMissingError) as info:
        model_files(SPEC, cache_dir=tmp_path, revision="v9.9")
    assert "(revision v9.9)" in str(info.value)


def test_model_files_from_the_hf_cache_offline(model_dir: Path, tmp_path: Path) -> None:
    snapshot = fill_hf_cache(tmp_path, model_dir)
    paths = model_files(SPEC, cache_dir=tmp_path)
    assert set(paths) == {"model.onnx", "selected_tags.csv"}
    assert Path(paths["model.onnx"]).resolve() == (snapshot / "model.onnx").resolve()
    assert Path(paths["selected_tags.csv"]).resolve() == (snapshot / "selected_tags.csv").resolve()
    assert paths["model.onnx"].read_bytes() == (model_dir / "model.onnx").read_bytes()


def test_model_files_from_the_env_cache(
    model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    snapshot = fill_hf_cache(tmp_path, model_dir)
    monkeypatch.setenv("TAGGER_HF_CACHE", str(tmp_path))
    paths = model_files(SPEC)
    assert Path(paths["model.onnx"]).resolve() == (snapshot / "model.onnx").resolve()


def test_model_files_at_a_revision_not_in_the_cache(model_dir: Path, tmp_path: Path) -> None:
    fill_hf_cache(tmp_path, model_dir)
    with pytest.raises(ModelFilesMissingError):
        model_files(SPEC, cache_dir=tmp_path, revision="v2.0")


def test_model_files_at_a_pinned_commit(model_dir: Path, tmp_path: Path) -> None:
    snapshot = fill_hf_cache(tmp_path, model_dir)
    paths = model_files(SPEC, cache_dir=tmp_path, revision=COMMIT)
    assert Path(paths["selected_tags.csv"]).resolve() == (snapshot / "selected_tags.csv").resolve()


def test_model_files_with_one_file_cached(model_dir: Path, tmp_path: Path) -> None:
    fill_hf_cache(tmp_path, model_dir, files=("model.onnx",))
    with pytest.raises(ModelFilesMissingError, match=r"selected_tags\.csv"):
        model_files(SPEC, cache_dir=tmp_path)


def test_is_downloaded_from_the_hf_cache(model_dir: Path, tmp_path: Path) -> None:
    fill_hf_cache(tmp_path, model_dir)
    assert is_downloaded(SPEC, cache_dir=tmp_path) is True


@pytest.mark.parametrize("present", ["model.onnx", "selected_tags.csv"])
def test_is_downloaded_with_one_file_missing(present: str, model_dir: Path, tmp_path: Path) -> None:
    fill_hf_cache(tmp_path, model_dir, files=(present,))
    assert is_downloaded(SPEC, cache_dir=tmp_path) is False


def test_is_downloaded_with_an_empty_cache(tmp_path: Path) -> None:
    assert is_downloaded(SPEC, cache_dir=tmp_path) is False


def test_is_downloaded_reads_the_spec_revision(model_dir: Path, tmp_path: Path) -> None:
    fill_hf_cache(tmp_path, model_dir)
    other = dataclasses.replace(SPEC, revision="v2.0")
    assert is_downloaded(other, cache_dir=tmp_path) is False


def test_is_downloaded_reads_the_env_cache(
    model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fill_hf_cache(tmp_path, model_dir)
    monkeypatch.setenv("TAGGER_HF_CACHE", str(tmp_path))
    assert is_downloaded(SPEC) is True
    monkeypatch.setenv("TAGGER_HF_CACHE", str(tmp_path / "elsewhere"))
    assert is_downloaded(SPEC) is False


# -- registry models, online (huggingface_hub replaced by a fake: no network) ---------------------
class FakeDownload:
    """Stands in for hf_hub_download: nothing is cached; a download returns a path or fails."""

    def __init__(self, root: Path, error: Exception | None = None) -> None:
        self.root = root
        self.error = error
        self.calls: list[tuple[str, str, dict]] = []

    def __call__(self, repo_id: str, filename: str, **kwargs):
        self.calls.append((repo_id, filename, kwargs))
        if kwargs.get("local_files_only"):
            raise FileNotFoundError(f"{filename} is not cached")
        if self.error is not None:
            raise self.error
        return str(self.root / filename)


def test_model_files_downloads_what_is_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import huggingface_hub

    fake = FakeDownload(tmp_path / "downloaded")
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake)
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    paths = model_files(SPEC, cache_dir=tmp_path / "cache", revision="abc")
    assert paths == {name: tmp_path / "downloaded" / name for name in WD14_FILES}
    assert [(repo, name, kwargs.get("local_files_only")) for repo, name, kwargs in fake.calls] == [
        ("SmilingWolf/wd-vit-tagger-v3", "model.onnx", True),
        ("SmilingWolf/wd-vit-tagger-v3", "model.onnx", None),
        ("SmilingWolf/wd-vit-tagger-v3", "selected_tags.csv", True),
        ("SmilingWolf/wd-vit-tagger-v3", "selected_tags.csv", None),
    ]
    assert all(kwargs["revision"] == "abc" for _, _, kwargs in fake.calls)
    assert all(kwargs["cache_dir"] == tmp_path / "cache" for _, _, kwargs in fake.calls)


def test_model_files_offline_never_downloads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import huggingface_hub

    fake = FakeDownload(tmp_path)
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake)
    monkeypatch.setenv("HF_HUB_OFFLINE", "yes")
    with pytest.raises(ModelFilesMissingError, match="HF_HUB_OFFLINE is set"):
        model_files(SPEC, cache_dir=tmp_path)
    assert [kwargs.get("local_files_only") for _, _, kwargs in fake.calls] == [True]


def test_a_failed_download_names_the_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub

    fake = FakeDownload(tmp_path, error=OSError("no route to host"))
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake)
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.delenv("TAGGER_HF_CACHE", raising=False)
    with pytest.raises(ModelFilesMissingError) as info:
        model_files(SPEC)
    message = str(info.value)
    assert "(OSError: no route to host)" in message
    assert "the Hugging Face cache (HF_HOME)" in message
    assert isinstance(info.value.__cause__, OSError)
