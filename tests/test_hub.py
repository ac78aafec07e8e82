"""Tests of tagger.hub: local folders, the Hugging Face cache offline, the missing-files error,
and failing at once when the Hub cannot be reached.

Nothing here touches the network: HF_HUB_OFFLINE is set, or HF_ENDPOINT points at a loopback
stand-in (tests/endpoints.py: a server that answers, a closed port, a black hole); registry
files are either absent or placed by hand in the Hugging Face cache layout under tmp_path.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from endpoints import answering_endpoint, black_hole_endpoint, closed_endpoint

import tagger.hub
from tagger.errors import ModelFilesMissingError
from tagger.hub import (
    check_downloadable,
    hf_cache_dir,
    hub_timeout,
    hub_unreachable,
    is_downloaded,
    is_offline,
    model_files,
    offline_env,
    offline_reason,
    require_hub_file,
)
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


@pytest.fixture
def online(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """HF_HUB_OFFLINE unset and HF_ENDPOINT at a loopback server that answers."""
    with answering_endpoint() as url:
        monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
        monkeypatch.setenv("HF_ENDPOINT", url)
        yield url


@pytest.fixture
def counted_probes(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, float]]:
    """Every probe of the Hub made during the test, by (endpoint, timeout)."""
    calls: list[tuple[str, float]] = []
    probe = tagger.hub.probe_hub

    def counted(endpoint: str, timeout: float) -> str | None:
        calls.append((endpoint, timeout))
        return probe(endpoint, timeout)

    monkeypatch.setattr(tagger.hub, "probe_hub", counted)
    tagger.hub.forget_hub_probes()
    return calls


@pytest.mark.parametrize("value", ["1", "true", "TRUE", "yes", "On", " 1 "])
def test_offline_env_truthy(value: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", value)
    assert offline_env() is True
    assert offline_reason() == "HF_HUB_OFFLINE is set"
    assert is_offline() is True


@pytest.mark.parametrize("value", ["0", "", "false", "no", "off", "2"])
def test_offline_env_falsy(value: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", value)
    assert offline_env() is False


def test_offline_env_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    assert offline_env() is False


def test_offline_never_probes_the_hub(
    monkeypatch: pytest.MonkeyPatch, counted_probes: list[tuple[str, float]]
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_ENDPOINT", closed_endpoint())
    assert is_offline() is True
    assert counted_probes == []


def test_an_answering_hub_is_online(online: str, counted_probes: list[tuple[str, float]]) -> None:
    assert hub_unreachable() is None
    assert offline_reason() is None
    assert is_offline() is False
    assert counted_probes == [(online, 3.0)]  # one probe, reused


@pytest.mark.parametrize("status", [301, 401, 404, 500])
def test_any_http_answer_means_the_hub_is_there(
    status: int, monkeypatch: pytest.MonkeyPatch, counted_probes: list[tuple[str, float]]
) -> None:
    with answering_endpoint(status) as url:
        monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
        monkeypatch.setenv("HF_ENDPOINT", url + "/")  # a trailing slash is dropped
        assert hub_unreachable() is None
    assert counted_probes == [(url, 3.0)]


def test_a_refused_connection_is_unreachable(
    monkeypatch: pytest.MonkeyPatch, counted_probes: list[tuple[str, float]]
) -> None:
    url = closed_endpoint()
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", url)
    reason = offline_reason()
    assert reason is not None
    assert reason.startswith(f"the Hub at {url} cannot be reached: ")
    assert "refused" in reason.lower()
    assert "HF_HUB_OFFLINE=1" in reason
    assert "TAGGER_HUB_TIMEOUT" in reason
    assert is_offline() is True
    assert len(counted_probes) == 1  # the answer is reused


def test_a_black_hole_is_unreachable_after_the_timeout(
    monkeypatch: pytest.MonkeyPatch, counted_probes: list[tuple[str, float]]
) -> None:
    with black_hole_endpoint() as url:
        monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
        monkeypatch.setenv("HF_ENDPOINT", url)
        monkeypatch.setenv("TAGGER_HUB_TIMEOUT", "0.5")
        reason = hub_unreachable()
    assert reason is not None
    assert f"the Hub at {url} cannot be reached: no answer within 0.5 s" in reason
    assert "wait longer than 0.5 s" in reason
    assert counted_probes == [(url, 0.5)]


def test_concurrent_callers_share_one_probe(
    monkeypatch: pytest.MonkeyPatch, counted_probes: list[tuple[str, float]]
) -> None:
    with black_hole_endpoint() as url:
        monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
        monkeypatch.setenv("HF_ENDPOINT", url)
        monkeypatch.setenv("TAGGER_HUB_TIMEOUT", "0.5")
        reasons: list[str | None] = []
        threads = [
            threading.Thread(target=lambda: reasons.append(offline_reason())) for _ in range(8)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
    assert len(reasons) == 8
    assert len(set(reasons)) == 1
    assert counted_probes == [(url, 0.5)]


def test_a_probe_is_repeated_after_its_time(
    online: str, monkeypatch: pytest.MonkeyPatch, counted_probes: list[tuple[str, float]]
) -> None:
    assert hub_unreachable() is None
    monkeypatch.setattr(tagger.hub, "PROBE_TTL", 0.0)
    assert hub_unreachable() is None
    assert counted_probes == [(online, 3.0), (online, 3.0)]


@pytest.mark.parametrize(
    ("value", "expected"), [("", 3.0), ("10", 10.0), ("0.25", 0.25), ("0", 3.0), ("soon", 3.0)]
)
def test_hub_timeout(value: str, expected: float, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TAGGER_HUB_TIMEOUT", value)
    assert hub_timeout() == expected


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


# -- registry models, online (downloads replaced by a fake; the Hub a loopback stand-in) --------
class FakeDownload:
    """Stands in for hf_hub_download: a download returns a path or fails; every call is kept.
    (Cache lookups never call it: they read the cache folder.)"""

    def __init__(self, root: Path, error: Exception | None = None) -> None:
        self.root = root
        self.error = error
        self.calls: list[tuple[str, str, dict]] = []

    def __call__(self, repo_id: str, filename: str, **kwargs):
        self.calls.append((repo_id, filename, kwargs))
        if self.error is not None:
            raise self.error
        return str(self.root / filename)


@pytest.fixture
def fake_download(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeDownload:
    import huggingface_hub

    fake = FakeDownload(tmp_path / "downloaded")
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake)
    return fake


def test_model_files_downloads_what_is_missing(
    tmp_path: Path, online: str, fake_download: FakeDownload
) -> None:
    paths = model_files(SPEC, cache_dir=tmp_path / "cache", revision="abc")
    assert paths == {name: tmp_path / "downloaded" / name for name in WD14_FILES}
    assert [(repo, name) for repo, name, _ in fake_download.calls] == [
        ("SmilingWolf/wd-vit-tagger-v3", "model.onnx"),
        ("SmilingWolf/wd-vit-tagger-v3", "selected_tags.csv"),
    ]
    assert all(kwargs["revision"] == "abc" for _, _, kwargs in fake_download.calls)
    assert all(kwargs["cache_dir"] == tmp_path / "cache" for _, _, kwargs in fake_download.calls)


def test_model_files_downloads_only_the_file_not_cached(
    model_dir: Path, tmp_path: Path, online: str, fake_download: FakeDownload
) -> None:
    snapshot = fill_hf_cache(tmp_path / "cache", model_dir, files=("model.onnx",))
    paths = model_files(SPEC, cache_dir=tmp_path / "cache")
    assert paths["model.onnx"].resolve() == (snapshot / "model.onnx").resolve()
    assert paths["selected_tags.csv"] == tmp_path / "downloaded" / "selected_tags.csv"
    assert [name for _, name, _ in fake_download.calls] == ["selected_tags.csv"]


def test_model_files_offline_never_downloads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fake_download: FakeDownload
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "yes")
    with pytest.raises(ModelFilesMissingError, match="HF_HUB_OFFLINE is set"):
        model_files(SPEC, cache_dir=tmp_path)
    assert fake_download.calls == []


def test_a_failed_download_names_the_error(
    online: str, monkeypatch: pytest.MonkeyPatch, fake_download: FakeDownload
) -> None:
    fake_download.error = OSError("no route to host")
    monkeypatch.delenv("TAGGER_HF_CACHE", raising=False)
    with pytest.raises(ModelFilesMissingError) as info:
        model_files(SPEC)
    message = str(info.value)
    assert "(OSError: no route to host)" in message
    assert "the Hugging Face cache (HF_HOME)" in message
    assert isinstance(info.value.__cause__, OSError)


@pytest.mark.parametrize("endpoint", ["closed", "black hole"])
def test_an_unreachable_hub_fails_at_once_without_downloading(
    endpoint: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    fake_download: FakeDownload,
    counted_probes: list[tuple[str, float]],
) -> None:
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("TAGGER_HUB_TIMEOUT", "0.5")
    with (
        black_hole_endpoint() if endpoint == "black hole" else _as_context(closed_endpoint())
    ) as url:
        monkeypatch.setenv("HF_ENDPOINT", url)
        with pytest.raises(ModelFilesMissingError) as info:
            model_files(SPEC, cache_dir=tmp_path)
    message = str(info.value)
    assert f"the Hub at {url} cannot be reached" in message
    assert "put model.onnx and selected_tags.csv from" in message
    assert "models/wd-vit-tagger-v3/" in message
    assert str(tmp_path) in message
    assert fake_download.calls == []  # huggingface_hub's retries never start
    assert len(counted_probes) == 1


def test_cached_files_are_used_whatever_the_hub(
    model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fake_download: FakeDownload
) -> None:
    snapshot = fill_hf_cache(tmp_path, model_dir)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", closed_endpoint())
    paths = model_files(SPEC, cache_dir=tmp_path)
    assert paths["model.onnx"].resolve() == (snapshot / "model.onnx").resolve()
    check_downloadable(SPEC, cache_dir=tmp_path)  # on disk: nothing to refuse
    assert fake_download.calls == []


def test_check_downloadable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fake_download: FakeDownload
) -> None:
    with answering_endpoint() as url:
        monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
        monkeypatch.setenv("HF_ENDPOINT", url)
        check_downloadable(SPEC, cache_dir=tmp_path)  # can be downloaded: accepted
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelFilesMissingError, match=r"model\.onnx and selected_tags\.csv"):
        check_downloadable(SPEC, cache_dir=tmp_path)
    assert fake_download.calls == []  # it never downloads


def test_require_hub_file(model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fill_hf_cache(tmp_path, model_dir, files=("model.onnx",))
    repo = "SmilingWolf/wd-vit-tagger-v3"
    kwargs = {"what": "the weights", "fix": "put them somewhere", "cache_dir": tmp_path}
    require_hub_file(repo, ("missing.bin", "model.onnx"), **kwargs)  # one of them is cached
    with pytest.raises(ModelFilesMissingError) as info:
        require_hub_file(repo, ("a.safetensors", "a.bin"), **kwargs)
    assert str(info.value) == (
        "the weights is not on disk and cannot be downloaded (HF_HUB_OFFLINE is set): "
        f"a.safetensors or a.bin from https://huggingface.co/{repo}; put them somewhere"
    )


@contextlib.contextmanager
def _as_context(value: str) -> Iterator[str]:
    yield value


# -- the command line without a network (a subprocess, HF_HUB_OFFLINE unset) ----------------------


def _run_offline_cli(args: list[str], endpoint: str, tmp_path: Path) -> subprocess.CompletedProcess:
    """Run ``tagger ARGS`` with HF_HUB_OFFLINE unset and HF_ENDPOINT at ``endpoint``."""
    env = {k: v for k, v in os.environ.items() if k != "HF_HUB_OFFLINE"}
    root = str(Path(__file__).resolve().parent.parent)
    env.update(
        HF_ENDPOINT=endpoint,
        HF_HOME=str(tmp_path / "hf-home"),
        TAGGER_HUB_TIMEOUT="1",
        TAGGER_MODELS_DIR="",
        PYTHONPATH=os.pathsep.join([root, env.get("PYTHONPATH", "")]),
    )
    return subprocess.run(
        [sys.executable, "-m", "tagger", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=300,
        check=False,
    )


@pytest.mark.parametrize("endpoint", ["closed", "black hole"])
def test_tag_without_a_network_exits_2_naming_the_files(endpoint: str, tmp_path: Path) -> None:
    from tiny import make_image

    image = make_image(tmp_path / "a.png", (20, 20), seed=1)
    args = ["tag", str(image), "--model", "wd-vit-tagger-v3", "--hf-cache", str(tmp_path / "hf")]
    with (
        black_hole_endpoint() if endpoint == "black hole" else _as_context(closed_endpoint()) as url
    ):
        done = _run_offline_cli(args, url, tmp_path)
    assert done.returncode == 2, done.stderr
    assert f"the Hub at {url} cannot be reached" in done.stderr
    assert "put model.onnx and selected_tags.csv from " in done.stderr
    assert "https://huggingface.co/SmilingWolf/wd-vit-tagger-v3" in done.stderr
    assert "models/wd-vit-tagger-v3/" in done.stderr
    assert str(tmp_path / "hf") in done.stderr
    assert "Retrying" not in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "a.txt").exists()


@pytest.mark.parametrize(
    ("model", "files"),
    [
        ("blip-base", "config.json, preprocessor_config.json, tokenizer_config.json, vocab.txt"),
        ("clip-prefix-flickr8k", "flickr8k.pt"),
    ],
)
@pytest.mark.parametrize("endpoint", ["closed", "black hole"])
def test_caption_without_a_network_exits_2_naming_the_files(
    model: str, files: str, endpoint: str, tmp_path: Path
) -> None:
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    pytest.importorskip("open_clip")
    from tiny import make_image

    image = make_image(tmp_path / "a.png", (20, 20), seed=1)
    args = ["caption", str(image), "--model", model, "--hf-cache", str(tmp_path / "hf")]
    with (
        black_hole_endpoint() if endpoint == "black hole" else _as_context(closed_endpoint()) as url
    ):
        done = _run_offline_cli(args, url, tmp_path)
    assert done.returncode == 2, done.stderr
    assert f"the Hub at {url} cannot be reached" in done.stderr
    assert files in done.stderr
    assert f"models/{model}/" in done.stderr
    assert "Retrying" not in done.stderr
    assert "Traceback" not in done.stderr
